#include "proto/cli.h"

#include <stdlib.h>

#include "proto/log.h"

int cli_run_worker(const char *role, const char *endpoint, const char *stage, worker_handler handle,
                   void *ctx, long max_jobs)
{
        static volatile sig_atomic_t stop;
        struct worker_config cfg = {
            .endpoint = endpoint,
            .stage = stage,
            .handle = handle,
            .ctx = ctx,
            .arena_limit = CLI_JOB_MEMORY,
            .stop = &stop,
            .max_jobs = max_jobs,
        };
        struct security sec;
        struct st_error err = {0};
        int rc;

        log_setup(role, LOG_INFO);
        worker_stop_on_signals(&stop);
        /* Keys come from STYLUS_CURVE_KEY and STYLUS_CURVE_SERVER_KEY (file paths). */
        if (security_load(&sec, NULL, NULL, NULL, &err)) {
                log_error("%s", err.msg);
                return 1;
        }
        cfg.security = &sec;
        /* Jobs held at once (proto/worker.h): STYLUS_WORKER_WINDOW, default 2. */
        if (getenv("STYLUS_WORKER_WINDOW"))
                cfg.window = (size_t)strtoul(getenv("STYLUS_WORKER_WINDOW"), NULL, 10);
        log_info("%s worker connecting to %s", stage, endpoint);
        rc = worker_run(&cfg);
        if (rc)
                log_error("worker stopped: %s", st_strerror(rc));
        security_release(&sec);
        return rc ? 1 : 0;
}

long cli_parse_duration(const char *text)
{
        char *end;
        long v = strtol(text, &end, 10);

        if (end == text || v < 0 || v > 100L * 365 * 86400)
                return -1;
        switch (*end) {
        case '\0':
        case 's':
                break;
        case 'm':
                v *= 60;
                break;
        case 'h':
                v *= 3600;
                break;
        case 'd':
                v *= 86400;
                break;
        default:
                return -1;
        }
        return *end && end[1] ? -1 : v;
}
