/*
 * test_doc_json.c - the JSON codec of st_raw_record and st_doc: round trips,
 * the exact encoding, and hostile input (truncation, wrong types, limits,
 * nesting, NUL bytes).
 */
#include <jansson.h>
#include <math.h>
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
        struct st_raw_record in, out, again;
        struct st_error err = {0};
        struct arena a;
        char *json, *json2;
        size_t len, len2;

        fixture_raw_record(&in);
        CHECK(st_raw_record_to_json(&in, &json, &len) == 0);
        CHECK(strlen(json) == len);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_json(json, len, &a, &out, &err) == 0);
        CHECK(same_raw_record(&in, &out));
        /* Encoding what was decoded gives the same bytes. */
        CHECK(st_raw_record_to_json(&out, &json2, &len2) == 0);
        CHECK(len2 == len && memcmp(json, json2, len) == 0);
        CHECK(st_raw_record_from_json(json2, len2, &a, &again, &err) == 0);
        CHECK(same_raw_record(&in, &again));
        free(json);
        free(json2);
        arena_release(&a);
        return 0;
}

static int test_doc_round_trip(void)
{
        struct st_doc in, out;
        struct st_error err = {0};
        struct arena a;
        char *json;
        size_t len;

        fixture_doc(&in);
        CHECK(st_doc_to_json(&in, &json, &len) == 0);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_doc_from_json(json, len, &a, &out, &err) == 0);
        CHECK(same_doc(&in, &out));
        free(json);
        arena_release(&a);
        return 0;
}

/* NULL strings are left out; arrays, nsfw, stats and the weight always written. */
static int test_minimal_encoding(void)
{
        static const char want_raw[] =
            "{\"id\":\"civitai:1@2\",\"source\":\"civitai\",\"name\":\"n\",\"tags\":[],"
            "\"trained_words\":[],\"nsfw\":false,\"stats\":{\"downloads\":0,\"likes\":0,"
            "\"rating\":0.0},\"files\":[],\"images\":[]}";
        static const char want_doc[] =
            "{\"id\":\"civitai:1@2\",\"source\":\"civitai\",\"name\":\"n\","
            "\"trigger_words\":[],\"recommended_weight\":0.0,\"tags\":[],\"nsfw\":false,"
            "\"stats\":{\"downloads\":0,\"likes\":0,\"rating\":0.0},\"files\":[],"
            "\"images\":[]}";
        struct st_raw_record r = {0}, back;
        struct st_doc d = {0}, dback;
        struct st_error err = {0};
        struct arena a;
        char *json;
        size_t len;

        r.id = "civitai:1@2";
        r.source = "civitai";
        r.name = "n";
        CHECK(st_raw_record_to_json(&r, &json, &len) == 0);
        CHECK(strcmp(json, want_raw) == 0);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_json(json, len, &a, &back, &err) == 0);
        CHECK(same_raw_record(&r, &back));
        CHECK(back.tags.n == 0 && back.n_files == 0 && back.version_name == NULL);
        free(json);

        d.id = r.id;
        d.source = r.source;
        d.name = r.name;
        CHECK(st_doc_to_json(&d, &json, &len) == 0);
        CHECK(strcmp(json, want_doc) == 0);
        CHECK(st_doc_from_json(json, len, &a, &dback, &err) == 0);
        CHECK(same_doc(&d, &dback));
        free(json);
        arena_release(&a);
        return 0;
}

/* Every proper prefix of a valid encoding is malformed JSON. */
static int test_truncated(void)
{
        struct st_raw_record r, out;
        struct st_doc d, dout;
        struct st_error err;
        struct arena a;
        char *json, *doc_json;
        size_t len, doc_len, i;

        fixture_raw_record(&r);
        fixture_doc(&d);
        CHECK(st_raw_record_to_json(&r, &json, &len) == 0);
        CHECK(st_doc_to_json(&d, &doc_json, &doc_len) == 0);
        arena_init(&a, ARENA_LIMIT);
        for (i = 0; i < len; i++) {
                err.msg[0] = '\0';
                CHECK(st_raw_record_from_json(json, i, &a, &out, &err) == ST_EPARSE);
                CHECK(strstr(err.msg, "line") && strstr(err.msg, "column"));
                arena_release(&a);
        }
        for (i = 0; i < doc_len; i++) {
                CHECK(st_doc_from_json(doc_json, i, &a, &dout, &err) == ST_EPARSE);
                arena_release(&a);
        }
        free(json);
        free(doc_json);
        return 0;
}

/* Decode text with both decoders; both must give code with field in the message. */
static int expect_both(const char *json, int code, const char *field)
{
        struct st_raw_record r;
        struct st_doc d;
        struct st_error err = {0};
        struct arena a;
        int rc;

        arena_init(&a, ARENA_LIMIT);
        rc = st_raw_record_from_json(json, strlen(json), &a, &r, &err);
        if (rc != code || (field && !strstr(err.msg, field))) {
                fprintf(stderr, "raw_record %s: got %d '%s', want %d '%s'\n", json, rc, err.msg,
                        code, field ? field : "");
                arena_release(&a);
                return 1;
        }
        err.msg[0] = '\0';
        rc = st_doc_from_json(json, strlen(json), &a, &d, &err);
        arena_release(&a);
        if (rc != code || (field && !strstr(err.msg, field))) {
                fprintf(stderr, "doc %s: got %d '%s', want %d '%s'\n", json, rc, err.msg, code,
                        field ? field : "");
                return 1;
        }
        return 0;
}

static int test_bad_records(void)
{
        const struct bad_record *cases;
        size_t n, i;

        cases = fixture_bad_records(&n);
        for (i = 0; i < n; i++)
                CHECK(expect_both(cases[i].json, cases[i].code, cases[i].field) == 0);
        return 0;
}

/* Fields of only one record type: wrong types there, ignored by the other decoder. */
static int test_bad_fields(void)
{
        const struct bad_field *cases;
        struct st_raw_record r;
        struct st_doc d;
        struct st_error err = {0};
        struct arena a;
        char json[256];
        char field[64];
        size_t n, i;

        arena_init(&a, ARENA_LIMIT);
        cases = fixture_bad_raw_record_fields(&n);
        for (i = 0; i < n; i++) {
                snprintf(json, sizeof(json),
                         "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"%s\":%s}", cases[i].key,
                         cases[i].value);
                snprintf(field, sizeof(field), "'%s", cases[i].key);
                CHECK(st_raw_record_from_json(json, strlen(json), &a, &r, &err) == ST_ETYPE);
                CHECK(strstr(err.msg, field));
                CHECK(st_doc_from_json(json, strlen(json), &a, &d, &err) == 0);
        }
        cases = fixture_bad_doc_fields(&n);
        for (i = 0; i < n; i++) {
                snprintf(json, sizeof(json),
                         "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"%s\":%s}", cases[i].key,
                         cases[i].value);
                snprintf(field, sizeof(field), "'%s", cases[i].key);
                CHECK(st_doc_from_json(json, strlen(json), &a, &d, &err) == ST_ETYPE);
                CHECK(strstr(err.msg, field));
                CHECK(st_raw_record_from_json(json, strlen(json), &a, &r, &err) == 0);
        }
        arena_release(&a);
        return 0;
}

/* Lenient forms: null is absent, integral reals count, ints are floats, unknown keys. */
static int test_lenient(void)
{
        static const char json[] =
            "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"version_name\":null,"
            "\"tags\":null,\"stats\":{\"downloads\":12.0,\"likes\":1e3,\"rating\":4},"
            "\"files\":[{\"size\":0},{\"size\":9223372036854775807}],"
            "\"recommended_weight\":1,\"extra\":{\"deep\":[1,[2,{\"x\":null}]]},"
            "\"name\":\"last wins\"}";
        struct st_raw_record r;
        struct st_doc d;
        struct st_error err = {0};
        struct arena a;

        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_json(json, strlen(json), &a, &r, &err) == 0);
        CHECK(r.version_name == NULL && r.tags.n == 0);
        CHECK(r.stats.downloads == 12 && r.stats.likes == 1000 && r.stats.rating == 4.0);
        CHECK(r.n_files == 2 && r.files[1].size == 9223372036854775807ULL);
        CHECK(r.files[0].name == NULL);
        CHECK(strcmp(r.name, "last wins") == 0);
        CHECK(st_doc_from_json(json, strlen(json), &a, &d, &err) == 0);
        CHECK(d.recommended_weight == 1.0);
        arena_release(&a);
        return 0;
}

static int test_not_an_object(void)
{
        static const char *const inputs[] = {"[]", "42", "\"s\"", "null", "true", "[{\"id\":1}]"};
        size_t i;

        for (i = 0; i < NELEM(inputs); i++)
                CHECK(expect_both(inputs[i], ST_ETYPE, "object") == 0);
        CHECK(expect_both("", ST_EPARSE, "line") == 0);
        CHECK(expect_both("{\"id\":\"i\"} {}", ST_EPARSE, "line") == 0);
        CHECK(expect_both("{\"id\":\"i\",}", ST_EPARSE, "line") == 0);
        return 0;
}

static int test_nul_and_utf8(void)
{
        static const char raw_nul[] = "{\"id\":\"a\0b\",\"source\":\"s\",\"name\":\"n\"}";
        struct st_raw_record r;
        struct st_error err = {0};
        struct arena a;

        CHECK(expect_both("{\"id\":\"a\\u0000b\",\"source\":\"s\",\"name\":\"n\"}", ST_EPARSE,
                          NULL) == 0);
        CHECK(expect_both("{\"id\":\"a\",\"source\":\"s\",\"name\":\"\xff\xfe\"}", ST_EPARSE,
                          NULL) == 0);
        CHECK(expect_both("{\"id\":\"a\",\"source\":\"s\",\"name\":\"\\ud800\"}", ST_EPARSE,
                          NULL) == 0);
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_json(raw_nul, sizeof(raw_nul) - 1, &a, &r, &err) == ST_EPARSE);
        arena_release(&a);
        return 0;
}

/* A record whose key holds a string of len bytes of 'x', as JSON text. */
static char *with_string(const char *key, size_t len)
{
        json_t *root = json_pack("{s:s, s:s, s:s}", "id", "i", "source", "s", "name", "n");
        char *s = malloc(len + 1);
        char *text;

        memset(s, 'x', len);
        s[len] = '\0';
        json_object_set_new(root, key, json_string(s));
        text = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        free(s);
        return text;
}

/* A record whose key holds an array of n copies of element, as JSON text. */
static char *with_array(const char *key, size_t n, json_t *element)
{
        json_t *root = json_pack("{s:s, s:s, s:s}", "id", "i", "source", "s", "name", "n");
        json_t *array = json_array();
        char *text;
        size_t i;

        for (i = 0; i < n; i++)
                json_array_append(array, element);
        json_object_set_new(root, key, array);
        json_decref(element);
        text = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        return text;
}

/* Decode text as a raw record, or a doc when doc is true, and free it. */
static int decode_text(char *text, bool doc)
{
        struct st_raw_record r;
        struct st_doc d;
        struct st_error err = {0};
        struct arena a;
        int rc;

        arena_init(&a, ARENA_LIMIT);
        if (doc)
                rc = st_doc_from_json(text, strlen(text), &a, &d, &err);
        else
                rc = st_raw_record_from_json(text, strlen(text), &a, &r, &err);
        arena_release(&a);
        free(text);
        return rc;
}

static int test_limits(void)
{
        char *big;
        struct st_raw_record r;
        struct st_error err = {0};
        struct arena a;

        CHECK(decode_text(with_string("name", ST_LIMIT_STRING), false) == 0);
        CHECK(decode_text(with_string("name", ST_LIMIT_STRING + 1), false) == ST_ETOOBIG);
        CHECK(decode_text(with_string("etag", ST_LIMIT_STRING + 1), false) == ST_ETOOBIG);
        CHECK(decode_text(with_string("card_html", ST_LIMIT_STRING + 1), false) == 0);
        CHECK(decode_text(with_string("card_html", ST_LIMIT_TEXT), false) == 0);
        CHECK(decode_text(with_string("card_html", ST_LIMIT_TEXT + 1), false) == ST_ETOOBIG);
        CHECK(decode_text(with_string("description", ST_LIMIT_TEXT), true) == 0);
        CHECK(decode_text(with_string("description", ST_LIMIT_TEXT + 1), true) == ST_ETOOBIG);
        CHECK(decode_text(with_string("task", ST_LIMIT_STRING + 1), true) == ST_ETOOBIG);

        CHECK(decode_text(with_array("tags", ST_LIMIT_ARRAY, json_string("t")), false) == 0);
        CHECK(decode_text(with_array("tags", ST_LIMIT_ARRAY + 1, json_string("t")), false) ==
              ST_ETOOBIG);
        CHECK(decode_text(with_array("trigger_words", ST_LIMIT_ARRAY + 1, json_string("t")),
                          true) == ST_ETOOBIG);
        CHECK(decode_text(with_array("files", ST_LIMIT_ARRAY + 1, json_object()), false) ==
              ST_ETOOBIG);
        CHECK(decode_text(with_array("images", ST_LIMIT_IMAGES, json_object()), false) == 0);
        CHECK(decode_text(with_array("images", ST_LIMIT_IMAGES + 1, json_object()), true) ==
              ST_ETOOBIG);

        /* A tag of ST_LIMIT_STRING + 1 bytes and an image prompt over ST_LIMIT_TEXT. */
        big = calloc(1, ST_LIMIT_TEXT + 2);
        CHECK(big);
        memset(big, 'p', ST_LIMIT_TEXT + 1);
        CHECK(decode_text(with_array("images", 1, json_pack("{s:s}", "prompt", big)), false) ==
              ST_ETOOBIG);
        big[ST_LIMIT_STRING + 1] = '\0';
        CHECK(decode_text(with_array("tags", 1, json_string(big)), false) == ST_ETOOBIG);
        CHECK(decode_text(with_array("images", 1, json_pack("{s:s}", "url", big)), false) ==
              ST_ETOOBIG);
        free(big);

        /* The whole input is checked before parsing. */
        big = malloc(ST_LIMIT_RECORD + 1);
        CHECK(big);
        memset(big, ' ', ST_LIMIT_RECORD + 1);
        big[0] = '{';
        big[ST_LIMIT_RECORD] = '}';
        arena_init(&a, ARENA_LIMIT);
        CHECK(st_raw_record_from_json(big, ST_LIMIT_RECORD + 1, &a, &r, &err) == ST_ETOOBIG);
        arena_release(&a);
        free(big);
        return 0;
}

/* An unknown key nested depth deep: within jansson's limit it is ignored. */
static int test_nesting(void)
{
        size_t depths[] = {100, 1000, 100000};
        size_t i, j, depth, len;
        char *text;
        int rc;

        for (i = 0; i < NELEM(depths); i++) {
                static const char head[] = "{\"id\":\"i\",\"source\":\"s\",\"name\":\"n\",\"x\":";

                depth = depths[i];
                len = sizeof(head) - 1 + 2 * depth + 1;
                text = malloc(len + 1);
                CHECK(text);
                memcpy(text, head, sizeof(head) - 1);
                for (j = 0; j < depth; j++) {
                        text[sizeof(head) - 1 + j] = '[';
                        text[sizeof(head) - 1 + depth + j] = ']';
                }
                text[len - 1] = '}';
                text[len] = '\0';
                rc = decode_text(text, false);
                CHECK(depth > 2048 ? rc == ST_EPARSE : rc == 0);
        }
        return 0;
}

static int test_small_arena(void)
{
        struct st_raw_record in, out;
        struct st_error err = {0};
        struct arena a;
        char *json;
        size_t len;

        fixture_raw_record(&in);
        CHECK(st_raw_record_to_json(&in, &json, &len) == 0);
        arena_init(&a, 256);
        CHECK(st_raw_record_from_json(json, len, &a, &out, &err) == ST_ENOMEM);
        arena_release(&a);
        free(json);
        return 0;
}

/* Values JSON cannot carry are refused by the encoder, not written broken. */
static int test_encode_refuses(void)
{
        struct st_file file = {"f", 9223372036854775808ULL, NULL, NULL};
        struct st_raw_record r = {0};
        char *json = NULL;
        size_t len;

        r.id = "i";
        r.source = "s";
        r.name = "n";
        r.stats.rating = NAN;
        CHECK(st_raw_record_to_json(&r, &json, &len) == ST_EINVAL);
        r.stats.rating = 0;
        r.name = "bad \xff utf-8";
        CHECK(st_raw_record_to_json(&r, &json, &len) == ST_EINVAL);
        r.name = "n";
        r.files = &file;
        r.n_files = 1;
        CHECK(st_raw_record_to_json(&r, &json, &len) == ST_EINVAL);
        CHECK(json == NULL);
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_raw_record_round_trip();
        failed |= test_doc_round_trip();
        failed |= test_minimal_encoding();
        failed |= test_truncated();
        failed |= test_bad_records();
        failed |= test_bad_fields();
        failed |= test_lenient();
        failed |= test_not_an_object();
        failed |= test_nul_and_utf8();
        failed |= test_limits();
        failed |= test_nesting();
        failed |= test_small_arena();
        failed |= test_encode_refuses();
        if (failed)
                return 1;
        printf("test_doc_json: ok\n");
        return 0;
}
