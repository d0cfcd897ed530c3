#include "proto/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char role_name[32] = "stylus";
static enum log_level min_level = LOG_INFO;

void log_setup(const char *role, enum log_level min)
{
        snprintf(role_name, sizeof(role_name), "%s", role);
        min_level = min;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
        static const char *const names[] = {"debug", "info", "warn", "error"};
        char line[2048];
        char stamp[32];
        struct tm tm;
        time_t now = time(NULL);
        va_list ap;
        int n;

        if (level < min_level)
                return;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        n = snprintf(line, sizeof(line), "%s %s %s: ", stamp, role_name, names[level]);
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        /* One write per line so lines of concurrent processes do not interleave. */
        fprintf(stderr, "%s\n", line);
}
