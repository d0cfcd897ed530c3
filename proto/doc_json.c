/*
 * doc_json.c - JSON codec of st_raw_record and st_doc.
 *
 * JSON is converted to and from msgpack objects so that the field rules
 * (types, limits, required keys) exist once, in doc_msgpack.c:
 *   decode  json_loadb -> json_t -> msgpack_object (in a msgpack_zone, strings
 *           borrowed from the json_t) -> st_*_from_object
 *   encode  st_*_pack -> msgpack bytes -> msgpack_object -> json_t -> json_dumpb
 *
 *   JSON            msgpack           JSON            msgpack
 *   object          map               integer         int
 *   array           array             real            float 64
 *   string          str               true / false    bool
 *   null            nil
 *
 * jansson refuses \u0000 (JSON_ALLOW_NUL is off), invalid UTF-8, integers
 * beyond long long and nesting deeper than 2048: all ST_EPARSE.  Duplicate
 * keys are accepted and the last one wins; refusing them buys nothing.
 */
#include "proto/doc.h"

#include <stdlib.h>

#include <jansson.h>
#include <msgpack.h>

/* ---- decoding ---- */

/* A parsed JSON record: the json_t owns the strings the msgpack objects point to. */
struct parsed {
        json_t *root;
        msgpack_zone *zone; /* holds the arrays and maps of object */
        msgpack_object object;
};

static int object_from_json(json_t *j, msgpack_zone *z, msgpack_object *o);

static int array_from_json(json_t *j, msgpack_zone *z, msgpack_object *o)
{
        size_t n = json_array_size(j);
        size_t i;
        int rc;

        o->type = MSGPACK_OBJECT_ARRAY;
        o->via.array.size = (uint32_t)n; /* n < ST_LIMIT_RECORD */
        o->via.array.ptr = NULL;
        if (n == 0)
                return 0;
        o->via.array.ptr = msgpack_zone_malloc(z, n * sizeof(msgpack_object));
        if (!o->via.array.ptr)
                return ST_ENOMEM;
        for (i = 0; i < n; i++) {
                rc = object_from_json(json_array_get(j, i), z, &o->via.array.ptr[i]);
                if (rc)
                        return rc;
        }
        return 0;
}

static int map_from_json(json_t *j, msgpack_zone *z, msgpack_object *o)
{
        size_t n = json_object_size(j);
        msgpack_object_kv *kv;
        void *it;
        int rc;

        o->type = MSGPACK_OBJECT_MAP;
        o->via.map.size = (uint32_t)n; /* n < ST_LIMIT_RECORD */
        o->via.map.ptr = NULL;
        if (n == 0)
                return 0;
        kv = msgpack_zone_malloc(z, n * sizeof(*kv));
        if (!kv)
                return ST_ENOMEM;
        o->via.map.ptr = kv;
        for (it = json_object_iter(j); it; it = json_object_iter_next(j, it), kv++) {
                kv->key.type = MSGPACK_OBJECT_STR;
                kv->key.via.str.ptr = json_object_iter_key(it);
                kv->key.via.str.size = (uint32_t)json_object_iter_key_len(it);
                rc = object_from_json(json_object_iter_value(it), z, &kv->val);
                if (rc)
                        return rc;
        }
        return 0;
}

/* Recursion depth is bounded by jansson's nesting limit. */
static int object_from_json(json_t *j, msgpack_zone *z, msgpack_object *o)
{
        json_int_t i;

        switch (json_typeof(j)) {
        case JSON_OBJECT:
                return map_from_json(j, z, o);
        case JSON_ARRAY:
                return array_from_json(j, z, o);
        case JSON_STRING:
                o->type = MSGPACK_OBJECT_STR;
                o->via.str.ptr = json_string_value(j);
                o->via.str.size = (uint32_t)json_string_length(j);
                return 0;
        case JSON_INTEGER:
                i = json_integer_value(j);
                o->type = i < 0 ? MSGPACK_OBJECT_NEGATIVE_INTEGER : MSGPACK_OBJECT_POSITIVE_INTEGER;
                if (i < 0)
                        o->via.i64 = i;
                else
                        o->via.u64 = (uint64_t)i;
                return 0;
        case JSON_REAL:
                o->type = MSGPACK_OBJECT_FLOAT64;
                o->via.f64 = json_real_value(j);
                return 0;
        case JSON_TRUE:
        case JSON_FALSE:
                o->type = MSGPACK_OBJECT_BOOLEAN;
                o->via.boolean = json_is_true(j);
                return 0;
        case JSON_NULL:
                o->type = MSGPACK_OBJECT_NIL;
                return 0;
        }
        return ST_EPARSE;
}

/* Parse one JSON object into p, which the caller always releases. */
static int parse(const char *json, size_t len, struct parsed *p, struct st_error *err)
{
        json_error_t jerr;
        int rc;

        p->root = NULL;
        p->zone = NULL;
        if (len > ST_LIMIT_RECORD)
                return st_fail(err, ST_ETOOBIG, "record: %zu bytes, limit %u", len,
                               ST_LIMIT_RECORD);
        p->root = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
        if (!p->root)
                return st_fail(err, ST_EPARSE, "JSON line %d column %d: %s", jerr.line, jerr.column,
                               jerr.text);
        if (!json_is_object(p->root))
                return st_fail(err, ST_ETYPE, "record: expected a JSON object");
        p->zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
        if (!p->zone)
                return st_fail(err, ST_ENOMEM, "record: out of memory");
        rc = object_from_json(p->root, p->zone, &p->object);
        if (rc)
                return st_fail(err, rc, "record: %s", st_strerror(rc));
        return 0;
}

static void parsed_release(struct parsed *p)
{
        json_decref(p->root);
        msgpack_zone_free(p->zone);
}

int st_raw_record_from_json(const char *json, size_t len, struct arena *a, struct st_raw_record *r,
                            struct st_error *err)
{
        struct parsed p;
        int rc = parse(json, len, &p, err);

        if (rc == 0)
                rc = st_raw_record_from_object(&p.object, a, r, err);
        parsed_release(&p);
        return rc;
}

int st_doc_from_json(const char *json, size_t len, struct arena *a, struct st_doc *d,
                     struct st_error *err)
{
        struct parsed p;
        int rc = parse(json, len, &p, err);

        if (rc == 0)
                rc = st_doc_from_object(&p.object, a, d, err);
        parsed_release(&p);
        return rc;
}

/* ---- encoding ---- */

/*
 * JSON value of o, or NULL when JSON cannot carry it (invalid UTF-8, a
 * non-finite float, an integer over 2^63-1) or out of memory.
 */
static json_t *json_from_object(const msgpack_object *o)
{
        json_t *j;
        uint32_t i;

        switch (o->type) {
        case MSGPACK_OBJECT_NIL:
                return json_null();
        case MSGPACK_OBJECT_BOOLEAN:
                return json_boolean(o->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                return o->via.u64 > INT64_MAX ? NULL : json_integer((json_int_t)o->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                return json_integer(o->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                return json_real(o->via.f64);
        case MSGPACK_OBJECT_STR:
                return json_stringn(o->via.str.ptr, o->via.str.size);
        case MSGPACK_OBJECT_ARRAY:
                j = json_array();
                for (i = 0; j && i < o->via.array.size; i++) {
                        if (json_array_append_new(j, json_from_object(&o->via.array.ptr[i]))) {
                                json_decref(j);
                                j = NULL;
                        }
                }
                return j;
        case MSGPACK_OBJECT_MAP:
                j = json_object();
                for (i = 0; j && i < o->via.map.size; i++) {
                        const msgpack_object_kv *kv = &o->via.map.ptr[i];

                        if (kv->key.type != MSGPACK_OBJECT_STR ||
                            json_object_setn_new(j, kv->key.via.str.ptr, kv->key.via.str.size,
                                                 json_from_object(&kv->val))) {
                                json_decref(j);
                                j = NULL;
                        }
                }
                return j;
        default:
                return NULL;
        }
}

/* Write the one msgpack value in packed as compact JSON into a malloc'd string. */
static int json_from_msgpack(const char *packed, size_t packed_len, char **out, size_t *len)
{
        msgpack_unpacked u;
        json_t *root = NULL;
        char *buf;
        size_t size;
        int rc = ST_ENOMEM;

        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, packed, packed_len, NULL) != MSGPACK_UNPACK_SUCCESS)
                goto out_unpacked;
        root = json_from_object(&u.data);
        rc = ST_EINVAL;
        if (!root)
                goto out_unpacked;
        size = json_dumpb(root, NULL, 0, JSON_COMPACT);
        if (size == 0)
                goto out_root;
        rc = ST_ENOMEM;
        buf = malloc(size + 1);
        if (!buf)
                goto out_root;
        json_dumpb(root, buf, size, JSON_COMPACT);
        buf[size] = '\0';
        *out = buf;
        *len = size;
        rc = 0;
out_root:
        json_decref(root);
out_unpacked:
        msgpack_unpacked_destroy(&u);
        return rc;
}

int st_raw_record_to_json(const struct st_raw_record *r, char **out, size_t *len)
{
        char *packed;
        size_t n;
        int rc = st_raw_record_to_msgpack(r, &packed, &n);

        if (rc)
                return rc;
        rc = json_from_msgpack(packed, n, out, len);
        free(packed);
        return rc;
}

int st_doc_to_json(const struct st_doc *d, char **out, size_t *len)
{
        char *packed;
        size_t n;
        int rc = st_doc_to_msgpack(d, &packed, &n);

        if (rc)
                return rc;
        rc = json_from_msgpack(packed, n, out, len);
        free(packed);
        return rc;
}
