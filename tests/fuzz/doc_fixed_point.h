/*
 * doc_fixed_point.h - the property both doc fuzz targets check: a record a
 * decoder accepted encodes to JSON and msgpack, both decode again, and the
 * result encodes to the same msgpack bytes (one canonical form).  A broken
 * property aborts, which libFuzzer and the replay driver report as a crash.
 */
#ifndef STYLUS_TEST_DOC_FIXED_POINT_H
#define STYLUS_TEST_DOC_FIXED_POINT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/doc.h"

#define FUZZ_ARENA_LIMIT (64u << 20)

static inline void fixed_point_fail(const char *what, int rc, const struct st_error *err)
{
        fprintf(stderr, "fixed point broken: %s: %s\n", what, st_error_text(err, rc));
        abort();
}

static inline void fixed_point_same(const char *what, const char *a, size_t na, const char *b,
                                    size_t nb)
{
        if (na != nb || memcmp(a, b, na) != 0)
                fixed_point_fail(what, ST_EINVAL, NULL);
}

static inline void fixed_point_raw_record(const struct st_raw_record *r)
{
        struct st_raw_record from_json, from_msgpack;
        struct st_error err = {0};
        struct arena a;
        char *packed, *json, *again;
        size_t plen, jlen, alen;
        int rc;

        arena_init(&a, FUZZ_ARENA_LIMIT);
        if ((rc = st_raw_record_to_msgpack(r, &packed, &plen)) != 0)
                fixed_point_fail("raw_record to msgpack", rc, NULL);
        if ((rc = st_raw_record_to_json(r, &json, &jlen)) != 0)
                fixed_point_fail("raw_record to JSON", rc, NULL);
        if ((rc = st_raw_record_from_msgpack(packed, plen, &a, &from_msgpack, &err)) != 0)
                fixed_point_fail("raw_record from own msgpack", rc, &err);
        if ((rc = st_raw_record_from_json(json, jlen, &a, &from_json, &err)) != 0)
                fixed_point_fail("raw_record from own JSON", rc, &err);
        free(json);

        if ((rc = st_raw_record_to_msgpack(&from_msgpack, &again, &alen)) != 0)
                fixed_point_fail("raw_record to msgpack again", rc, NULL);
        fixed_point_same("raw_record msgpack after msgpack", packed, plen, again, alen);
        free(again);
        if ((rc = st_raw_record_to_msgpack(&from_json, &again, &alen)) != 0)
                fixed_point_fail("raw_record to msgpack after JSON", rc, NULL);
        fixed_point_same("raw_record msgpack after JSON", packed, plen, again, alen);
        free(again);
        free(packed);
        arena_release(&a);
}

static inline void fixed_point_doc(const struct st_doc *d)
{
        struct st_doc from_json, from_msgpack;
        struct st_error err = {0};
        struct arena a;
        char *packed, *json, *again;
        size_t plen, jlen, alen;
        int rc;

        arena_init(&a, FUZZ_ARENA_LIMIT);
        if ((rc = st_doc_to_msgpack(d, &packed, &plen)) != 0)
                fixed_point_fail("doc to msgpack", rc, NULL);
        if ((rc = st_doc_to_json(d, &json, &jlen)) != 0)
                fixed_point_fail("doc to JSON", rc, NULL);
        if ((rc = st_doc_from_msgpack(packed, plen, &a, &from_msgpack, &err)) != 0)
                fixed_point_fail("doc from own msgpack", rc, &err);
        if ((rc = st_doc_from_json(json, jlen, &a, &from_json, &err)) != 0)
                fixed_point_fail("doc from own JSON", rc, &err);
        free(json);

        if ((rc = st_doc_to_msgpack(&from_msgpack, &again, &alen)) != 0)
                fixed_point_fail("doc to msgpack again", rc, NULL);
        fixed_point_same("doc msgpack after msgpack", packed, plen, again, alen);
        free(again);
        if ((rc = st_doc_to_msgpack(&from_json, &again, &alen)) != 0)
                fixed_point_fail("doc to msgpack after JSON", rc, NULL);
        fixed_point_same("doc msgpack after JSON", packed, plen, again, alen);
        free(again);
        free(packed);
        arena_release(&a);
}

#endif
