/*
 * fuzz_msgpack_json.c - proto/msgpack_json.h on arbitrary bytes, read both
 * as msgpack and as JSON text.  Nothing may crash or leak; a decoded value
 * must encode, decode again to an equal value and encode to the same bytes
 * (one canonical form); an encoded JSON value must decode to an equal one.
 * A broken property aborts, which libFuzzer and the replay driver report.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msgpack_json.h"

#define FUZZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what, int rc, const struct st_error *err)
{
        fprintf(stderr, "msgpack_json property broken: %s: %s\n", what, st_error_text(err, rc));
        abort();
}

/* j encodes; the bytes decode to a value equal to j; returns the bytes (caller frees). */
static char *round_trip(const json_t *j, size_t *len)
{
        struct st_error err = {0};
        json_t *back = NULL;
        char *buf;
        int rc = msgpack_json_encode(j, 4 * FUZZ_MAX_INPUT, &buf, len, &err);

        if (rc)
                broken("encode", rc, &err);
        rc = msgpack_json_decode(buf, *len, 4 * FUZZ_MAX_INPUT, &back, &err);
        if (rc)
                broken("decode what was encoded", rc, &err);
        if (!json_equal((json_t *)j, back))
                broken("decoded value differs", ST_EINVAL, NULL);
        json_decref(back);
        return buf;
}

static void as_msgpack(const uint8_t *data, size_t size)
{
        struct st_error err = {0};
        json_t *j = NULL, *again = NULL;
        char *first, *second;
        size_t first_len, second_len;
        int rc = msgpack_json_decode((const char *)data, size, FUZZ_MAX_INPUT, &j, &err);

        if (rc > 0 || (rc && j) || (!rc && !j))
                broken("decode result", rc, &err);
        if (rc)
                return;
        first = round_trip(j, &first_len);
        if (msgpack_json_decode(first, first_len, 4 * FUZZ_MAX_INPUT, &again, &err))
                broken("decode again", ST_EINVAL, &err);
        second = round_trip(again, &second_len);
        if (first_len != second_len || memcmp(first, second, first_len))
                broken("not one canonical form", ST_EINVAL, NULL);
        free(first);
        free(second);
        json_decref(j);
        json_decref(again);
}

/* JSON nested deeper than msgpack_json takes is refused, never half-written. */
static void as_json(const uint8_t *data, size_t size)
{
        struct st_error err = {0};
        json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        char *buf;
        size_t len;
        int rc;

        if (!j)
                return;
        rc = msgpack_json_encode(j, 4 * FUZZ_MAX_INPUT, &buf, &len, &err);
        if (rc == ST_ETOOBIG && !buf)
                goto out;
        if (rc)
                broken("encode JSON", rc, &err);
        free(buf);
        free(round_trip(j, &len));
out:
        json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > FUZZ_MAX_INPUT)
                return 0;
        as_msgpack(data, size);
        as_json(data, size);
        return 0;
}
