/*
 * fuzz_ratelimit.c - the RateLimit / RateLimit-Policy reader (ratelimit.h).
 * The input is split at its first newline: the bytes before it are the
 * RateLimit value, the bytes after it the RateLimit-Policy value (no
 * newline: both headers get the whole input).  No input may crash the
 * reader or read past either value; every number it reports is -1 or in
 * 0..RATELIMIT_MAX_VALUE; it returns 0 exactly when remaining and reset are
 * both known; and the same input always gives the same answer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crawler/ratelimit.h"

static void check_value(long v)
{
        if (v < -1 || v > RATELIMIT_MAX_VALUE)
                abort();
}

static void check(const char *limit, size_t limit_len, const char *policy, size_t policy_len)
{
        struct ratelimit a, b;
        int rc = ratelimit_parse(limit, limit_len, policy, policy_len, &a);

        check_value(a.remaining);
        check_value(a.reset_s);
        check_value(a.quota);
        check_value(a.window_s);
        if ((rc == 0) != (a.remaining >= 0 && a.reset_s >= 0))
                abort();
        if (rc != 0 && rc != ST_EPARSE)
                abort();
        if (ratelimit_parse(limit, limit_len, policy, policy_len, &b) != rc ||
            memcmp(&a, &b, sizeof(a)) != 0)
                abort();
        (void)ratelimit_is_low(&a, -1, 2);
        (void)ratelimit_is_low(&a, 500, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text = (const char *)data;
        const char *newline = memchr(text, '\n', size);
        char *limit, *policy;
        size_t limit_len, policy_len;

        if (newline) {
                limit_len = (size_t)(newline - text);
                policy_len = size - limit_len - 1;
        } else {
                limit_len = policy_len = size;
        }
        /* Exact-size copies, so ASan sees a read one byte past either value. */
        limit = malloc(limit_len ? limit_len : 1);
        policy = malloc(policy_len ? policy_len : 1);
        if (!limit || !policy)
                abort();
        memcpy(limit, text, limit_len);
        memcpy(policy, newline ? newline + 1 : text, policy_len);
        check(limit, limit_len, policy, policy_len);
        check(limit, limit_len, NULL, 0);
        check(NULL, 0, policy, policy_len);
        free(policy);
        free(limit);
        return 0;
}
