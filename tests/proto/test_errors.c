/*
 * test_errors.c - the error table: a name for every code, "unknown error"
 * for the rest, and st_fail / st_error_text.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "proto/errors.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

static int test_strerror(void)
{
        static const struct {
                int code;
                const char *name;
        } codes[] = {
            {ST_OK, "success"},
            {ST_ENOMEM, "out of memory"},
            {ST_EINVAL, "invalid argument"},
            {ST_ETOOBIG, "input too big"},
            {ST_EPARSE, "malformed input"},
            {ST_ETYPE, "wrong type"},
            {ST_ETRUNC, "input truncated"},
            {ST_EIO, "I/O error"},
            {ST_EDB, "database error"},
            {ST_ENET, "network error"},
            {ST_EHTTP, "unacceptable HTTP status"},
            {ST_ETIMEOUT, "timed out"},
            {ST_ENOTFOUND, "not found"},
            {ST_EPROTO, "protocol error"},
            {ST_EDIM, "dimension or model mismatch"},
            {ST_EAGAIN, "try again later"},
            {ST_EMISSING, "required field missing"},
        };
        static const int unknown[] = {1, 42, ST_EMISSING - 1, -1000, INT_MIN, INT_MAX};
        size_t i;

        for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                if (strcmp(st_strerror(codes[i].code), codes[i].name) != 0) {
                        fprintf(stderr, "st_strerror(%d) = %s, want %s\n", codes[i].code,
                                st_strerror(codes[i].code), codes[i].name);
                        return 1;
                }
        }
        for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
                CHECK(strcmp(st_strerror(unknown[i]), "unknown error") == 0);
        return 0;
}

static int test_fail(void)
{
        struct st_error err = {0};
        char long_field[400];

        CHECK(st_fail(NULL, ST_EPARSE, "no error to fill") == ST_EPARSE);
        CHECK(strcmp(st_error_text(&err, ST_ETRUNC), "input truncated") == 0);
        CHECK(strcmp(st_error_text(NULL, ST_EIO), "I/O error") == 0);

        CHECK(st_fail(&err, ST_ETYPE, "field '%s': expected %s", "name", "string") == ST_ETYPE);
        CHECK(err.code == ST_ETYPE);
        CHECK(strcmp(err.msg, "field 'name': expected string") == 0);
        CHECK(strcmp(st_error_text(&err, ST_ETYPE), err.msg) == 0);

        /* Long messages are cut to fit and stay terminated. */
        memset(long_field, 'f', sizeof(long_field) - 1);
        long_field[sizeof(long_field) - 1] = '\0';
        CHECK(st_fail(&err, ST_ETOOBIG, "field '%s'", long_field) == ST_ETOOBIG);
        CHECK(strlen(err.msg) == sizeof(err.msg) - 1);
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_strerror();
        failed |= test_fail();
        if (failed)
                return 1;
        printf("test_errors: ok\n");
        return 0;
}
