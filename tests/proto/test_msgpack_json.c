/*
 * test_msgpack_json.c - msgpack <-> JSON conversion: round trips both ways,
 * every type, and every refusal of proto/msgpack_json.h with its code and
 * the place it names.
 */
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msgpack_json.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

#define LIMIT (64u << 10)

/* Decode len bytes and expect code; on refusal the message must contain where (if not NULL). */
static int decodes_to(const char *buf, size_t len, int code, const char *where)
{
        struct st_error err = {0};
        json_t *j = NULL;
        int rc = msgpack_json_decode(buf, len, LIMIT, &j, &err);

        if (rc != code || (rc && j) || (!rc && !j)) {
                fprintf(stderr, "decode: got %d (%s), want %d\n", rc, err.msg, code);
                json_decref(j);
                return 1;
        }
        if (rc && where && !strstr(err.msg, where)) {
                fprintf(stderr, "decode: message '%s' does not name '%s'\n", err.msg, where);
                return 1;
        }
        json_decref(j);
        return 0;
}

#define REFUSED(bytes, code, where) CHECK(decodes_to(bytes, sizeof(bytes) - 1, code, where) == 0)

static int test_json_round_trip(void)
{
        const char *text =
            "{\"prompt\":\"a corgi \\u00e9\\u4e2d\",\"n\":-3,\"big\":9223372036854775807,"
            "\"small\":-9223372036854775808,\"w\":0.25,\"t\":true,\"f\":false,"
            "\"none\":null,\"list\":[1,[2,[]],{}],\"\":\"\",\"nul\":\"a\\u0000b\"}";
        struct st_error err = {0};
        json_t *in = json_loads(text, JSON_ALLOW_NUL, NULL), *out = NULL;
        char *buf;
        size_t len;

        CHECK(in);
        CHECK(msgpack_json_encode(in, LIMIT, &buf, &len, &err) == 0);
        CHECK(msgpack_json_decode(buf, len, LIMIT, &out, &err) == 0);
        CHECK(json_equal(in, out));
        /* Keys keep their order, so encoding again gives the same bytes. */
        {
                char *again;
                size_t again_len;

                CHECK(msgpack_json_encode(out, LIMIT, &again, &again_len, &err) == 0);
                CHECK(again_len == len && memcmp(again, buf, len) == 0);
                free(again);
        }
        free(buf);
        json_decref(in);
        json_decref(out);
        return 0;
}

static int test_msgpack_types(void)
{
        /* {"u":uint64 5,"i":int8 -1,"f":float32 1.5,"s":str8 "hi","a":[nil,true]} */
        static const char bytes[] = "\x85\xa1u\xcf\0\0\0\0\0\0\0\x05\xa1i\xd0\xff\xa1"
                                    "f\xca\x3f\xc0\0\0\xa1s\xd9\x02hi\xa1"
                                    "a\x92\xc0\xc3";
        struct st_error err = {0};
        json_t *j = NULL, *want;
        char *buf;
        size_t len;

        CHECK(msgpack_json_decode(bytes, sizeof(bytes) - 1, LIMIT, &j, &err) == 0);
        want = json_pack("{s:i,s:i,s:f,s:s,s:[n,b]}", "u", 5, "i", -1, "f", 1.5, "s", "hi", "a", 1);
        CHECK(json_equal(j, want));
        /* Back in msgpack: smallest ints, float 64, fixstr. */
        CHECK(msgpack_json_encode(j, LIMIT, &buf, &len, &err) == 0);
        CHECK(len == 28 && !memcmp(buf,
                                   "\x85\xa1u\x05\xa1i\xff\xa1"
                                   "f\xcb\x3f\xf8\0\0\0\0\0\0\xa1s\xa2hi\xa1"
                                   "a\x92\xc0\xc3",
                                   len));
        free(buf);
        json_decref(j);
        json_decref(want);
        return 0;
}

/* A value in a packer next to others: msgpack_json_pack() appends. */
static int test_pack_in_message(void)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
        struct st_error err = {0};
        json_t *j = json_pack("{s:s}", "prompt", "x");

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "status", 6);
        msgpack_pack_int(&pk, 200);
        msgpack_pack_str_with_body(&pk, "request", 7);
        CHECK(msgpack_json_pack(&pk, j, &err) == 0);
        CHECK(msgpack_json_unpack(sb.data, sb.size, LIMIT, &u, &err) == 0);
        CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 2);
        CHECK(u.data.via.map.ptr[1].val.type == MSGPACK_OBJECT_MAP);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        json_decref(j);
        return 0;
}

static int test_refusals(void)
{
        REFUSED("", ST_ETRUNC, "ends inside");
        REFUSED("\x81\xa1x", ST_ETRUNC, NULL);                     /* map without its value */
        REFUSED("\xdd\xff\xff\xff\xff\xc0", ST_ETRUNC, NULL);      /* array32 of 4G values */
        REFUSED("\xdb\x00\x01\x00\x00xx", ST_ETRUNC, NULL);        /* str32 longer than input */
        REFUSED("\xc0\xc0", ST_EPARSE, "after the value");         /* two values */
        REFUSED("\xc1", ST_EPARSE, "0xc1");                        /* never used */
        REFUSED("\x81\xa1k\xc4\x01z", ST_ETYPE, "$.k: bin");       /* bin */
        REFUSED("\x91\xd4\x01\x02", ST_ETYPE, "$[0]: ext");        /* fixext 1 */
        REFUSED("\xc7\x01\x05z", ST_ETYPE, "ext");                 /* ext 8 */
        REFUSED("\x81\x01\xc0", ST_ETYPE, "not a str");            /* int key */
        REFUSED("\x81\xa1k\xa2\xc3\x28", ST_EPARSE, "$.k: a str"); /* bad UTF-8 value */
        REFUSED("\x81\xa2\xed\xa0\xc0", ST_EPARSE, "a key that");  /* surrogate in a key */
        REFUSED("\x82\xa1k\xc0\xa1k\xc3", ST_EPARSE, "twice");     /* duplicate key */
        REFUSED("\xcf\x80\0\0\0\0\0\0\0", ST_ETOOBIG, "2^63");     /* uint64 over int64 */
        REFUSED("\xcb\x7f\xf8\0\0\0\0\0\0", ST_ETYPE, "NaN");      /* NaN */
        REFUSED("\xca\x7f\x80\0\0", ST_ETYPE, "infinite");         /* float32 +inf */
        /* Control characters are valid UTF-8: accepted. */
        CHECK(decodes_to("\x91\x81\xa4\x01\x0a\x1b\x7f\x90", 8, ST_OK, NULL) == 0);
        return 0;
}

/* n arrays nested in one another around nil. */
static char *nested(size_t n)
{
        char *b = malloc(n + 1);

        memset(b, 0x91, n);
        b[n] = (char)0xc0;
        return b;
}

static int test_depth(void)
{
        struct st_error err = {0};
        char *b = nested(MSGPACK_JSON_MAX_DEPTH);
        json_t *j = NULL, *deep;
        char *buf;
        size_t len;

        CHECK(decodes_to(b, MSGPACK_JSON_MAX_DEPTH + 1, ST_OK, NULL) == 0);
        free(b);
        b = nested(MSGPACK_JSON_MAX_DEPTH + 1);
        CHECK(decodes_to(b, MSGPACK_JSON_MAX_DEPTH + 2, ST_EPARSE, "nested deeper") == 0);
        free(b);
        b = nested(100);
        CHECK(decodes_to(b, 101, ST_EPARSE, "nested deeper") == 0);
        free(b);
        /* An empty array is one level too. */
        CHECK(decodes_to("\x91\x91\x90", 3, ST_OK, NULL) == 0);
        /* msgpack objects made elsewhere are checked the same way. */
        {
                msgpack_object o[MSGPACK_JSON_MAX_DEPTH + 1];

                for (int i = 0; i <= MSGPACK_JSON_MAX_DEPTH; i++) {
                        o[i].type = MSGPACK_OBJECT_ARRAY;
                        o[i].via.array.size = i < MSGPACK_JSON_MAX_DEPTH ? 1 : 0;
                        o[i].via.array.ptr = i < MSGPACK_JSON_MAX_DEPTH ? &o[i + 1] : NULL;
                }
                CHECK(msgpack_json_from_object(&o[0], &j, &err) == ST_EPARSE);
                CHECK(j == NULL && strstr(err.msg, "nested too deep"));
                CHECK(msgpack_json_from_object(&o[1], &j, &err) == 0);
        }
        /* Encoding refuses what decoding would. */
        deep = j;
        CHECK(msgpack_json_encode(deep, LIMIT, &buf, &len, &err) == 0);
        free(buf);
        deep = json_array();
        json_array_append_new(deep, j);
        CHECK(msgpack_json_encode(deep, LIMIT, &buf, &len, &err) == ST_ETOOBIG);
        CHECK(buf == NULL && strstr(err.msg, "deeper"));
        json_decref(deep);
        return 0;
}

static int test_limits(void)
{
        struct st_error err = {0};
        json_t *j = json_pack("{s:s%}", "prompt", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40);
        json_t *back = NULL;
        char *buf;
        size_t len;

        /* {"prompt": 40 bytes}: 1 + 7 + 2 + 40 = 50 bytes. */
        CHECK(msgpack_json_encode(j, 50, &buf, &len, &err) == 0 && len == 50);
        CHECK(msgpack_json_decode(buf, len, 49, &back, &err) == ST_ETOOBIG && !back);
        CHECK(strstr(err.msg, "limit 49"));
        CHECK(msgpack_json_decode(buf, len, 50, &back, &err) == 0);
        CHECK(json_equal(j, back));
        free(buf);
        CHECK(msgpack_json_encode(j, 49, &buf, &len, &err) == ST_ETOOBIG && !buf);
        CHECK(strstr(err.msg, "over 49 bytes"));
        json_decref(j);
        json_decref(back);
        return 0;
}

/* Paths in messages are cut and keep only printable ASCII. */
static int test_paths(void)
{
        static const char bytes[] = "\x81\xa3\x01z\x7f\x91\x81\xd9\x28"
                                    "0123456789012345678901234567890123456789"
                                    "\xc4\x00";
        struct st_error err = {0};
        json_t *j = NULL;

        CHECK(msgpack_json_decode(bytes, sizeof(bytes) - 1, LIMIT, &j, &err) == ST_ETYPE);
        CHECK(strstr(err.msg, "$.?z?[0].01234567890123456789012345678901: bin"));
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_json_round_trip();
        failed |= test_msgpack_types();
        failed |= test_pack_in_message();
        failed |= test_refusals();
        failed |= test_depth();
        failed |= test_limits();
        failed |= test_paths();
        if (failed)
                return 1;
        printf("test_msgpack_json: ok\n");
        return 0;
}
