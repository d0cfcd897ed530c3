#include "proto/errors.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const names[] = {
    "success",
    "out of memory",
    "invalid argument",
    "input too big",
    "malformed input",
    "wrong type",
    "input truncated",
    "I/O error",
    "database error",
    "network error",
    "unacceptable HTTP status",
    "timed out",
    "not found",
    "protocol error",
    "dimension or model mismatch",
    "try again later",
    "required field missing",
};

const char *st_strerror(int code)
{
        size_t i = (size_t)(-(long)code);

        if (code > 0 || i >= sizeof(names) / sizeof(names[0]))
                return "unknown error";
        return names[i];
}

int st_fail(struct st_error *err, int code, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return code;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        return code;
}

const char *st_error_text(const struct st_error *err, int code)
{
        if (err && err->msg[0])
                return err->msg;
        return st_strerror(code);
}
