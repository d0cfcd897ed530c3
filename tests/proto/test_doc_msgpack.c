/*
 * test_doc_msgpack.c - the msgpack codec of st_raw_record and st_doc: round
 * trips, packing next to other values, and hostile input (truncation,
 * trailing bytes, lying lengths, wrong types, limits, NUL and bad UTF-8).
 */
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/doc.h"
#include "doc_fixture.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

#define ARENA_LIMIT (64u << 20)

static int test_raw_record_round_trip(void)
{
        struct st_raw_record in, out;
        struct st_error err = {0};
        struct arena a;
        char *buf, *buf2;
        size_t len, len2;

        fixture_raw_record(&in);
        CHECK(st_raw_record_to_msgpack(&in, &buf, &len) == 0);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_msgpack(buf, len, &a, &out, &err) == 0);
        CHECK(same_raw_record(&in, &out));
        CHECK(st_raw_record_to_msgpack(&out, &buf2, &len2) == 0);
        CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
        free(buf);
        free(buf2);
        arena_release(&a);
        return 0;
}

static int test_doc_round_trip(void)
{
        struct st_doc in, out;
        struct st_error err = {0};
        struct arena a;
        char *buf;
        size_t len;

        fixture_doc(&in);
        CHECK(st_doc_to_msgpack(&in, &buf, &len) == 0);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_doc_from_msgpack(buf, len, &a, &out, &err) == 0);
        CHECK(same_doc(&in, &out));
        free(buf);
        arena_release(&a);
        return 0;
}

/* The packer API writes one map that can sit among other values of a message. */
static int test_pack_in_message(void)
{
        struct st_raw_record r = {0}, out;
        struct st_doc d, dout;
        struct st_error err = {0};
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        msgpack_unpacked u;
        struct arena a;
        size_t off = 0;

        r.id = "hf:a/b@c";
        r.source = "hf";
        r.name = "b";
        fixture_doc(&d);
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        CHECK(msgpack_pack_array(&pk, 3) == 0);
        CHECK(st_raw_record_pack(&pk, &r) == 0);
        CHECK(st_doc_pack(&pk, &d) == 0);
        CHECK(msgpack_pack_int(&pk, 7) == 0);

        msgpack_unpacked_init(&u);
        CHECK(msgpack_unpack_next(&u, sbuf.data, sbuf.size, &off) == MSGPACK_UNPACK_SUCCESS);
        CHECK(u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 3);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_object(&u.data.via.array.ptr[0], &a, &out, &err) == 0);
        CHECK(same_raw_record(&r, &out));
        CHECK(st_doc_from_object(&u.data.via.array.ptr[1], &a, &dout, &err) == 0);
        CHECK(same_doc(&d, &dout));
        CHECK(st_doc_from_object(&u.data.via.array.ptr[2], &a, &dout, &err) == ST_ETYPE);
        arena_release(&a);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sbuf);
        return 0;
}

static int test_truncated_and_trailing(void)
{
        struct st_raw_record r, out;
        struct st_doc d, dout;
        struct st_error err;
        struct arena a;
        char *buf, *doc_buf, *longer;
        size_t len, doc_len, i;

        fixture_raw_record(&r);
        fixture_doc(&d);
        CHECK(st_raw_record_to_msgpack(&r, &buf, &len) == 0);
        CHECK(st_doc_to_msgpack(&d, &doc_buf, &doc_len) == 0);
        arena_init(&a, ARENA_LIMIT);
        for (i = 0; i < len; i++) {
                CHECK(st_raw_record_from_msgpack(buf, i, &a, &out, &err) == ST_ETRUNC);
                arena_release(&a);
        }
        for (i = 0; i < doc_len; i++) {
                CHECK(st_doc_from_msgpack(doc_buf, i, &a, &dout, &err) == ST_ETRUNC);
                arena_release(&a);
        }

        /* One byte of garbage, then a second record, after the first. */
        longer = malloc(2 * len);
        CHECK(longer);
        memcpy(longer, buf, len);
        memcpy(longer + len, buf, len);
        CHECK(st_raw_record_from_msgpack(longer, len + 1, &a, &out, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, "trailing"));
        CHECK(st_raw_record_from_msgpack(longer, 2 * len, &a, &out, &err) == ST_EPARSE);
        arena_release(&a);
        free(longer);
        free(buf);
        free(doc_buf);
        return 0;
}

/* Pack a JSON value as msgpack: the hostile records of doc_fixture.h are JSON. */
static void pack_json(msgpack_packer *pk, json_t *j)
{
        const char *key;
        json_t *value;
        size_t i;

        switch (json_typeof(j)) {
        case JSON_OBJECT:
                msgpack_pack_map(pk, json_object_size(j));
                json_object_foreach(j, key, value)
                {
                        msgpack_pack_str_with_body(pk, key, strlen(key));
                        pack_json(pk, value);
                }
                break;
        case JSON_ARRAY:
                msgpack_pack_array(pk, json_array_size(j));
                json_array_foreach(j, i, value) pack_json(pk, value);
                break;
        case JSON_STRING:
                msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
                break;
        case JSON_INTEGER:
                msgpack_pack_int64(pk, json_integer_value(j));
                break;
        case JSON_REAL:
                msgpack_pack_double(pk, json_real_value(j));
                break;
        case JSON_TRUE:
                msgpack_pack_true(pk);
                break;
        case JSON_FALSE:
                msgpack_pack_false(pk);
                break;
        case JSON_NULL:
                msgpack_pack_nil(pk);
                break;
        }
}

/* Decode sbuf as a raw record, or a doc when doc is true; err gets the message. */
static int decode(const msgpack_sbuffer *sbuf, bool doc, struct st_error *err)
{
        struct st_raw_record r;
        struct st_doc d;
        struct arena a;
        int rc;

        err->msg[0] = '\0';
        arena_init(&a, ARENA_LIMIT);
        if (doc)
                rc = st_doc_from_msgpack(sbuf->data, sbuf->size, &a, &d, err);
        else
                rc = st_raw_record_from_msgpack(sbuf->data, sbuf->size, &a, &r, err);
        arena_release(&a);
        return rc;
}

/* Pack text as msgpack and decode it as a raw record, or a doc. */
static int decode_json_as_msgpack(const char *text, bool doc, struct st_error *err)
{
        json_error_t jerr;
        json_t *root = json_loads(text, 0, &jerr);
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        int rc;

        if (!root) {
                fprintf(stderr, "bad test JSON %s: %s\n", text, jerr.text);
                return 1;
        }
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        pack_json(&pk, root);
        rc = decode(&sbuf, doc, err);
        msgpack_sbuffer_destroy(&sbuf);
        json_decref(root);
        return rc;
}

static int test_bad_records(void)
{
        const struct bad_record *cases;
        struct st_error err;
        size_t n, i;

        cases = fixture_bad_records(&n);
        for (i = 0; i < n; i++) {
                CHECK(decode_json_as_msgpack(cases[i].json, false, &err) == cases[i].code);
                CHECK(strstr(err.msg, cases[i].field));
                CHECK(decode_json_as_msgpack(cases[i].json, true, &err) == cases[i].code);
                CHECK(strstr(err.msg, cases[i].field));
        }
        return 0;
}

static int test_bad_fields(void)
{
        const struct bad_field *cases;
        struct st_error err;
        char json[256];
        char field[64];
        size_t n, i;

        cases = fixture_bad_raw_record_fields(&n);
        for (i = 0; i < n; i++) {
                snprintf(json, sizeof(json),
                         "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"%s\":%s}", cases[i].key,
                         cases[i].value);
                snprintf(field, sizeof(field), "'%s", cases[i].key);
                CHECK(decode_json_as_msgpack(json, false, &err) == ST_ETYPE);
                CHECK(strstr(err.msg, field));
        }
        cases = fixture_bad_doc_fields(&n);
        for (i = 0; i < n; i++) {
                snprintf(json, sizeof(json),
                         "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"%s\":%s}", cases[i].key,
                         cases[i].value);
                snprintf(field, sizeof(field), "'%s", cases[i].key);
                CHECK(decode_json_as_msgpack(json, true, &err) == ST_ETYPE);
                CHECK(strstr(err.msg, field));
        }
        return 0;
}

/* Start a map of n + 3 entries, the first three id, source and name. */
static void begin_record(msgpack_sbuffer *sbuf, msgpack_packer *pk, size_t n)
{
        msgpack_sbuffer_init(sbuf);
        msgpack_packer_init(pk, sbuf, msgpack_sbuffer_write);
        msgpack_pack_map(pk, n + 3);
        msgpack_pack_str_with_body(pk, "id", 2);
        msgpack_pack_str_with_body(pk, "i", 1);
        msgpack_pack_str_with_body(pk, "source", 6);
        msgpack_pack_str_with_body(pk, "s", 1);
        msgpack_pack_str_with_body(pk, "name", 4);
        msgpack_pack_str_with_body(pk, "n", 1);
}

static void pack_key(msgpack_packer *pk, const char *key)
{
        msgpack_pack_str_with_body(pk, key, strlen(key));
}

/* Decode a record with one extra key holding the string s of len bytes. */
static int decode_with_string(const char *key, const char *s, size_t len, struct st_error *err)
{
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        int rc;

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, key);
        msgpack_pack_str_with_body(&pk, s, len);
        rc = decode(&sbuf, false, err);
        msgpack_sbuffer_destroy(&sbuf);
        return rc;
}

static int test_string_bytes(void)
{
        static const char *const bad_utf8[] = {
            "\xff",             /* never valid */
            "\xc0\xaf",         /* overlong '/' */
            "\xed\xa0\x80",     /* surrogate */
            "\xf4\x90\x80\x80", /* over U+10FFFF */
            "\xe2\x82",         /* cut short */
            "a\x80",            /* stray continuation */
        };
        static const char good_utf8[] = "a\xc3\xa9\xe2\x98\x83\xf0\x9f\x8e\xa8\xf4\x8f\xbf\xbf";
        struct st_error err;
        size_t i;

        CHECK(decode_with_string("creator", "a\0b", 3, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, "'creator'") && strstr(err.msg, "NUL"));
        for (i = 0; i < NELEM(bad_utf8); i++) {
                CHECK(decode_with_string("creator", bad_utf8[i], strlen(bad_utf8[i]), &err) ==
                      ST_EPARSE);
                CHECK(strstr(err.msg, "UTF-8"));
        }
        CHECK(decode_with_string("creator", good_utf8, strlen(good_utf8), &err) == 0);
        CHECK(decode_with_string("creator", "", 0, &err) == 0);
        return 0;
}

/* Types JSON has no word for: bin, ext, float 32, NaN, huge uints, non-string keys. */
static int test_msgpack_types(void)
{
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        struct st_error err;

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "version_name");
        msgpack_pack_bin_with_body(&pk, "v1", 2);
        CHECK(decode(&sbuf, false, &err) == ST_ETYPE && strstr(err.msg, "bin"));
        msgpack_sbuffer_destroy(&sbuf);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "stats");
        msgpack_pack_map(&pk, 1);
        pack_key(&pk, "rating");
        msgpack_pack_double(&pk, NAN);
        CHECK(decode(&sbuf, false, &err) == ST_ETYPE && strstr(err.msg, "'stats.rating'"));
        msgpack_sbuffer_destroy(&sbuf);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "recommended_weight");
        msgpack_pack_double(&pk, -INFINITY);
        CHECK(decode(&sbuf, true, &err) == ST_ETYPE);
        msgpack_sbuffer_destroy(&sbuf);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "recommended_weight");
        msgpack_pack_float(&pk, 0.5f);
        CHECK(decode(&sbuf, true, &err) == 0);
        msgpack_sbuffer_destroy(&sbuf);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "files");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 1);
        pack_key(&pk, "size");
        msgpack_pack_uint64(&pk, UINT64_MAX);
        CHECK(decode(&sbuf, false, &err) == ST_ETOOBIG && strstr(err.msg, "'files[0].size'"));
        msgpack_sbuffer_destroy(&sbuf);

        /* Unknown keys of any type, with values of any type, are skipped. */
        begin_record(&sbuf, &pk, 3);
        msgpack_pack_int(&pk, 1);
        msgpack_pack_ext_with_body(&pk, "xy", 2, 5);
        msgpack_pack_bin_with_body(&pk, "tags", 4);
        msgpack_pack_int(&pk, 2);
        msgpack_pack_nil(&pk);
        msgpack_pack_bin_with_body(&pk, "z", 1);
        CHECK(decode(&sbuf, false, &err) == 0);
        msgpack_sbuffer_destroy(&sbuf);

        /* A record whose keys are bin, not str, has no id. */
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_bin_with_body(&pk, "id", 2);
        msgpack_pack_str_with_body(&pk, "i", 1);
        CHECK(decode(&sbuf, false, &err) == ST_EMISSING);
        msgpack_sbuffer_destroy(&sbuf);
        return 0;
}

/* Decode raw bytes as a raw record. */
static int decode_bytes(const void *bytes, size_t len)
{
        struct st_raw_record r;
        struct st_error err = {0};
        struct arena a;
        int rc;

        arena_init(&a, ARENA_LIMIT);
        rc = st_raw_record_from_msgpack(bytes, len, &a, &r, &err);
        arena_release(&a);
        return rc;
}

/* Headers that promise more than the input holds must not make msgpack-c allocate it. */
static int test_lying_lengths(void)
{
        static const unsigned char array32[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
        static const unsigned char map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0};
        static const unsigned char str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
        static const unsigned char ext32[] = {0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01};
        static const unsigned char nested[] = {0x81, 0xa1, 'x', 0xdc, 0xff, 0xff, 0x90};
        static const unsigned char never_used[] = {0x81, 0xa1, 'x', 0xc1};
        static const unsigned char top_array[] = {0x90};

        CHECK(decode_bytes(array32, sizeof(array32)) == ST_ETRUNC);
        CHECK(decode_bytes(map32, sizeof(map32)) == ST_ETRUNC);
        CHECK(decode_bytes(str32, sizeof(str32)) == ST_ETRUNC);
        CHECK(decode_bytes(ext32, sizeof(ext32)) == ST_ETRUNC);
        CHECK(decode_bytes(nested, sizeof(nested)) == ST_ETRUNC);
        CHECK(decode_bytes(never_used, sizeof(never_used)) == ST_EPARSE);
        CHECK(decode_bytes(top_array, sizeof(top_array)) == ST_ETYPE);
        CHECK(decode_bytes("", 0) == ST_ETRUNC);
        return 0;
}

/*
 * An unknown key holding arrays nested depth deep.  With the record's map
 * that is depth + 1 levels; msgpack-c stops at 32, and so does the decoder.
 */
static int test_nesting(void)
{
        size_t depths[] = {10, 31, 32, 100000};
        size_t i, depth;
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        struct st_error err;
        size_t j;
        int rc;

        for (i = 0; i < NELEM(depths); i++) {
                depth = depths[i];
                begin_record(&sbuf, &pk, 1);
                pack_key(&pk, "x");
                for (j = 0; j < depth; j++)
                        msgpack_pack_array(&pk, 1);
                msgpack_pack_nil(&pk);
                rc = decode(&sbuf, false, &err);
                msgpack_sbuffer_destroy(&sbuf);
                CHECK(depth <= 31 ? rc == 0 : rc == ST_EPARSE);
                CHECK(depth <= 31 || strstr(err.msg, "nested"));
        }
        return 0;
}

static int test_limits(void)
{
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        struct st_error err;
        char *big;
        size_t i;

        big = malloc(ST_LIMIT_RECORD + 1);
        CHECK(big);
        memset(big, 'x', ST_LIMIT_RECORD + 1);
        CHECK(decode_with_string("name", big, ST_LIMIT_STRING, &err) == 0);
        CHECK(decode_with_string("etag", big, ST_LIMIT_STRING + 1, &err) == ST_ETOOBIG);
        CHECK(strstr(err.msg, "'etag'"));
        CHECK(decode_with_string("card_html", big, ST_LIMIT_TEXT, &err) == 0);
        CHECK(decode_with_string("card_html", big, ST_LIMIT_TEXT + 1, &err) == ST_ETOOBIG);
        CHECK(decode_with_string("x", big, ST_LIMIT_RECORD - 64, &err) == 0);
        CHECK(decode_with_string("x", big, ST_LIMIT_RECORD, &err) == ST_ETOOBIG);
        CHECK(strstr(err.msg, "limit"));
        free(big);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "trained_words");
        msgpack_pack_array(&pk, ST_LIMIT_ARRAY + 1);
        for (i = 0; i < ST_LIMIT_ARRAY + 1; i++)
                msgpack_pack_str_with_body(&pk, "w", 1);
        CHECK(decode(&sbuf, false, &err) == ST_ETOOBIG && strstr(err.msg, "'trained_words'"));
        msgpack_sbuffer_destroy(&sbuf);

        begin_record(&sbuf, &pk, 1);
        pack_key(&pk, "images");
        msgpack_pack_array(&pk, ST_LIMIT_IMAGES + 1);
        for (i = 0; i < ST_LIMIT_IMAGES + 1; i++)
                msgpack_pack_map(&pk, 0);
        CHECK(decode(&sbuf, true, &err) == ST_ETOOBIG && strstr(err.msg, "'images'"));
        msgpack_sbuffer_destroy(&sbuf);
        return 0;
}

static int test_small_arena(void)
{
        struct st_doc in, out;
        struct st_error err = {0};
        struct arena a;
        char *buf;
        size_t len;

        fixture_doc(&in);
        CHECK(st_doc_to_msgpack(&in, &buf, &len) == 0);
        arena_init(&a, 512);
        CHECK(st_doc_from_msgpack(buf, len, &a, &out, &err) == ST_ENOMEM);
        arena_release(&a);
        free(buf);
        return 0;
}

/* A NULL inside a string array is a caller bug the encoder reports. */
static int test_encode_refuses(void)
{
        char *words[] = {"a", NULL};
        struct st_raw_record r = {0};
        char *buf = NULL;
        size_t len;

        r.id = "i";
        r.source = "s";
        r.name = "n";
        r.tags = (struct st_strv){words, 2};
        CHECK(st_raw_record_to_msgpack(&r, &buf, &len) == ST_EINVAL);
        CHECK(buf == NULL);
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_raw_record_round_trip();
        failed |= test_doc_round_trip();
        failed |= test_pack_in_message();
        failed |= test_truncated_and_trailing();
        failed |= test_bad_records();
        failed |= test_bad_fields();
        failed |= test_string_bytes();
        failed |= test_msgpack_types();
        failed |= test_lying_lengths();
        failed |= test_nesting();
        failed |= test_limits();
        failed |= test_small_arena();
        failed |= test_encode_refuses();
        if (failed)
                return 1;
        printf("test_doc_msgpack: ok\n");
        return 0;
}
