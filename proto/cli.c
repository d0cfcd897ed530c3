#include "proto/cli.h"

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
        int rc;

        log_setup(role, LOG_INFO);
        worker_stop_on_signals(&stop);
        log_info("%s worker connecting to %s", stage, endpoint);
        rc = worker_run(&cfg);
        if (rc)
                log_error("worker stopped: %s", st_strerror(rc));
        return rc ? 1 : 0;
}
