/* msgpack_json.c - bounded msgpack <-> JSON conversion (see msgpack_json.h). */
#include "proto/msgpack_json.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- checking the shape of the input before msgpack-c unpacks it ---- */

/* The part of the input not read yet. */
struct input {
        const unsigned char *p;
        size_t left;
        size_t len; /* of the whole input, for messages */
};

/*
 * Layout of a value after its first byte: a big-endian length field of
 * `field` bytes (or, in fix types, `count` inside the byte), `fixed` bytes,
 * then either a body of that many bytes (`body`) or that many times
 * `per_unit` values (arrays 1, maps 2).
 */
struct shape {
        size_t field;
        size_t count;
        size_t fixed;
        bool body;
        size_t per_unit;
};

static struct shape shape_of(unsigned char b)
{
        struct shape s = {0, 0, 0, false, 0};

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
                return s; /* fixint, nil, bool */
        if (b <= 0x8f) {  /* fixmap */
                s.count = b & 0x0f;
                s.per_unit = 2;
        } else if (b <= 0x9f) { /* fixarray */
                s.count = b & 0x0f;
                s.per_unit = 1;
        } else if (b <= 0xbf) { /* fixstr */
                s.count = b & 0x1f;
                s.body = true;
        } else if (b <= 0xc6) { /* bin 8/16/32 */
                s.field = (size_t)1 << (b - 0xc4);
                s.body = true;
        } else if (b <= 0xc9) { /* ext 8/16/32: type byte, data */
                s.field = (size_t)1 << (b - 0xc7);
                s.fixed = 1;
                s.body = true;
        } else if (b <= 0xcb) { /* float 32/64 */
                s.fixed = b == 0xca ? 4 : 8;
        } else if (b <= 0xd3) { /* uint 8..64, int 8..64 */
                s.fixed = (size_t)1 << ((b - 0xcc) & 3);
        } else if (b <= 0xd8) { /* fixext 1..16: type byte, data */
                s.fixed = 1 + ((size_t)1 << (b - 0xd4));
        } else if (b <= 0xdb) { /* str 8/16/32 */
                s.field = (size_t)1 << (b - 0xd9);
                s.body = true;
        } else if (b <= 0xdd) { /* array 16/32 */
                s.field = (size_t)2 << (b - 0xdc);
                s.per_unit = 1;
        } else { /* map 16/32 */
                s.field = (size_t)2 << (b - 0xde);
                s.per_unit = 2;
        }
        return s;
}

static uint64_t load_be(const unsigned char *p, size_t n)
{
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static int truncated(const struct input *in, struct st_error *err)
{
        return st_fail(err, ST_ETRUNC, "msgpack: input of %zu bytes ends inside a value", in->len);
}

/* Take n bytes (n <= in->left). */
static void take(struct input *in, size_t n)
{
        in->p += n;
        in->left -= n;
}

/*
 * Step over one value at depth (0: the top).  A container may declare no
 * more elements than there are bytes left, since each takes one at least:
 * msgpack-c allocates the declared count before reading the elements.
 */
static int skip(struct input *in, int depth, struct st_error *err)
{
        struct shape s;
        uint64_t n;
        int rc;

        if (in->left == 0)
                return truncated(in, err);
        if (*in->p == 0xc1)
                return st_fail(err, ST_EPARSE, "msgpack: byte 0xc1 at offset %zu",
                               in->len - in->left);
        s = shape_of(*in->p);
        take(in, 1);
        if (s.field > in->left)
                return truncated(in, err);
        n = s.field ? load_be(in->p, s.field) : s.count;
        take(in, s.field);
        if (s.fixed > in->left)
                return truncated(in, err);
        take(in, s.fixed);
        if (s.body) {
                if (n > in->left)
                        return truncated(in, err);
                take(in, (size_t)n);
                return 0;
        }
        if (s.per_unit == 0)
                return 0;
        if (depth == MSGPACK_JSON_MAX_DEPTH)
                return st_fail(err, ST_EPARSE, "msgpack: arrays and maps nested deeper than %d",
                               MSGPACK_JSON_MAX_DEPTH);
        if (n * s.per_unit > in->left)
                return truncated(in, err);
        for (uint64_t i = 0; i < n * s.per_unit; i++) {
                rc = skip(in, depth + 1, err);
                if (rc)
                        return rc;
        }
        return 0;
}

int msgpack_json_unpack(const char *buf, size_t len, size_t max_len, msgpack_unpacked *u,
                        struct st_error *err)
{
        struct input in = {(const unsigned char *)buf, len, len};
        size_t off = 0;
        int rc;

        msgpack_unpacked_init(u);
        if (len > max_len)
                return st_fail(err, ST_ETOOBIG, "msgpack: %zu bytes, limit %zu", len, max_len);
        rc = skip(&in, 0, err);
        if (rc)
                return rc;
        if (in.left)
                return st_fail(err, ST_EPARSE, "msgpack: %zu bytes after the value", in.left);
        switch (msgpack_unpack_next(u, buf, len, &off)) {
        case MSGPACK_UNPACK_SUCCESS:
        case MSGPACK_UNPACK_EXTRA_BYTES:
                return 0;
        case MSGPACK_UNPACK_CONTINUE:
                return truncated(&in, err);
        case MSGPACK_UNPACK_NOMEM_ERROR:
                return st_fail(err, ST_ENOMEM, "msgpack: out of memory");
        default:
                return st_fail(err, ST_EPARSE, "msgpack: malformed");
        }
}

/* ---- msgpack objects to JSON ---- */

/* Where the conversion is, for error messages: "$", "$.tags[2]". */
struct walk {
        struct st_error *err;
        char path[128];
        size_t len;
};

/* Append text to the path, cut to fit; returns the length to go back to. */
static size_t path_push(struct walk *w, const char *text)
{
        size_t mark = w->len;
        int n = snprintf(w->path + w->len, sizeof(w->path) - w->len, "%s", text);

        w->len += n < 0 ? 0 : (size_t)n;
        if (w->len >= sizeof(w->path))
                w->len = sizeof(w->path) - 1;
        return mark;
}

static void path_pop(struct walk *w, size_t mark)
{
        w->len = mark;
        w->path[mark] = '\0';
}

/* ".key" with the key cut to 32 bytes and anything but printable ASCII shown as '?'. */
static size_t path_push_key(struct walk *w, const char *key, size_t len)
{
        char text[34];
        size_t n = len < 32 ? len : 32;

        text[0] = '.';
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)key[i];

                text[1 + i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
        text[1 + n] = '\0';
        return path_push(w, text);
}

static size_t path_push_index(struct walk *w, uint32_t i)
{
        char text[16];

        snprintf(text, sizeof(text), "[%u]", i);
        return path_push(w, text);
}

static int refuse(struct walk *w, int code, const char *what)
{
        return st_fail(w->err, code, "msgpack at %s: %s", w->path, what);
}

/* A JSON string of the bytes; ST_EPARSE when they are not UTF-8. */
static int string(struct walk *w, const char *p, size_t len, const char *what, json_t **out)
{
        char why[64];

        *out = json_stringn(p, len);
        if (*out)
                return 0;
        /* json_stringn() fails on bad UTF-8 and on lack of memory: tell them apart. */
        *out = json_stringn_nocheck(p, len);
        if (!*out)
                return refuse(w, ST_ENOMEM, "out of memory");
        json_decref(*out);
        *out = NULL;
        snprintf(why, sizeof(why), "%s that is not UTF-8", what);
        return refuse(w, ST_EPARSE, why);
}

static int convert(struct walk *w, const msgpack_object *o, int depth, json_t **out);

static int array(struct walk *w, const msgpack_object *o, int depth, json_t **out)
{
        json_t *a = json_array(), *v;
        int rc = 0;

        if (!a)
                return refuse(w, ST_ENOMEM, "out of memory");
        for (uint32_t i = 0; !rc && i < o->via.array.size; i++) {
                size_t mark = path_push_index(w, i);

                rc = convert(w, &o->via.array.ptr[i], depth + 1, &v);
                if (!rc && json_array_append_new(a, v))
                        rc = refuse(w, ST_ENOMEM, "out of memory");
                path_pop(w, mark);
        }
        if (rc) {
                json_decref(a);
                return rc;
        }
        *out = a;
        return 0;
}

/* Add one key and value to the object m; keys must be UTF-8 str given once. */
static int member(struct walk *w, json_t *m, const msgpack_object_kv *kv, int depth)
{
        const char *key;
        size_t len, mark;
        json_t *k, *v;
        int rc;

        if (kv->key.type != MSGPACK_OBJECT_STR)
                return refuse(w, ST_ETYPE, "a map key that is not a str");
        key = kv->key.via.str.ptr;
        len = kv->key.via.str.size;
        rc = string(w, key, len, "a key", &k);
        if (rc)
                return rc;
        json_decref(k);
        mark = path_push_key(w, key, len);
        if (json_object_getn(m, key, len))
                rc = refuse(w, ST_EPARSE, "key given twice");
        if (!rc)
                rc = convert(w, &kv->val, depth + 1, &v);
        if (!rc && json_object_setn_new_nocheck(m, key, len, v))
                rc = refuse(w, ST_ENOMEM, "out of memory");
        path_pop(w, mark);
        return rc;
}

static int map(struct walk *w, const msgpack_object *o, int depth, json_t **out)
{
        json_t *m = json_object();
        int rc = 0;

        if (!m)
                return refuse(w, ST_ENOMEM, "out of memory");
        for (uint32_t i = 0; !rc && i < o->via.map.size; i++)
                rc = member(w, m, &o->via.map.ptr[i], depth);
        if (rc) {
                json_decref(m);
                return rc;
        }
        *out = m;
        return 0;
}

/* depth: arrays and maps around o. */
static int convert(struct walk *w, const msgpack_object *o, int depth, json_t **out)
{
        *out = NULL;
        switch (o->type) {
        case MSGPACK_OBJECT_NIL:
                *out = json_null();
                return 0;
        case MSGPACK_OBJECT_BOOLEAN:
                *out = json_boolean(o->via.boolean);
                return 0;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                if (o->via.u64 > INT64_MAX)
                        return refuse(w, ST_ETOOBIG, "integer over 2^63-1");
                *out = json_integer((json_int_t)o->via.u64);
                break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                *out = json_integer(o->via.i64);
                break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                if (!isfinite(o->via.f64))
                        return refuse(w, ST_ETYPE, "float that is NaN or infinite");
                *out = json_real(o->via.f64);
                break;
        case MSGPACK_OBJECT_STR:
                return string(w, o->via.str.ptr, o->via.str.size, "a str", out);
        case MSGPACK_OBJECT_ARRAY:
        case MSGPACK_OBJECT_MAP:
                if (depth == MSGPACK_JSON_MAX_DEPTH)
                        return refuse(w, ST_EPARSE, "arrays and maps nested too deep");
                if (o->type == MSGPACK_OBJECT_ARRAY)
                        return array(w, o, depth, out);
                return map(w, o, depth, out);
        case MSGPACK_OBJECT_BIN:
                return refuse(w, ST_ETYPE, "bin value (JSON has no bytes; send a str)");
        case MSGPACK_OBJECT_EXT:
                return refuse(w, ST_ETYPE, "ext value");
        default:
                return refuse(w, ST_ETYPE, "value of an unknown type");
        }
        return *out ? 0 : refuse(w, ST_ENOMEM, "out of memory");
}

int msgpack_json_from_object(const msgpack_object *o, json_t **out, struct st_error *err)
{
        struct walk w = {err, "$", 1};

        return convert(&w, o, 0, out);
}

int msgpack_json_decode(const char *buf, size_t len, size_t max_len, json_t **out,
                        struct st_error *err)
{
        msgpack_unpacked u;
        int rc = msgpack_json_unpack(buf, len, max_len, &u, err);

        *out = NULL;
        if (rc == 0)
                rc = msgpack_json_from_object(&u.data, out, err);
        msgpack_unpacked_destroy(&u);
        return rc;
}

/* ---- JSON to msgpack ---- */

static int write_failed(struct st_error *err)
{
        return st_fail(err, ST_EIO, "msgpack: the writer failed");
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len, struct st_error *err)
{
        if (len > UINT32_MAX)
                return st_fail(err, ST_ETOOBIG, "JSON string of %zu bytes", len);
        if (msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len))
                return write_failed(err);
        return 0;
}

static int pack_value(msgpack_packer *pk, json_t *j, int depth, struct st_error *err);

static int pack_object(msgpack_packer *pk, json_t *j, int depth, struct st_error *err)
{
        int rc;

        if (json_object_size(j) > UINT32_MAX)
                return st_fail(err, ST_ETOOBIG, "JSON object of %zu keys", json_object_size(j));
        if (msgpack_pack_map(pk, json_object_size(j)))
                return write_failed(err);
        for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
                rc = pack_str(pk, json_object_iter_key(it), json_object_iter_key_len(it), err);
                if (!rc)
                        rc = pack_value(pk, json_object_iter_value(it), depth + 1, err);
                if (rc)
                        return rc;
        }
        return 0;
}

static int pack_array(msgpack_packer *pk, json_t *j, int depth, struct st_error *err)
{
        size_t n = json_array_size(j);
        int rc;

        if (n > UINT32_MAX)
                return st_fail(err, ST_ETOOBIG, "JSON array of %zu values", n);
        if (msgpack_pack_array(pk, n))
                return write_failed(err);
        for (size_t i = 0; i < n; i++) {
                rc = pack_value(pk, json_array_get(j, i), depth + 1, err);
                if (rc)
                        return rc;
        }
        return 0;
}

/* depth: arrays and objects around j. */
static int pack_value(msgpack_packer *pk, json_t *j, int depth, struct st_error *err)
{
        int rc = 0;

        switch (json_typeof(j)) {
        case JSON_OBJECT:
        case JSON_ARRAY:
                if (depth == MSGPACK_JSON_MAX_DEPTH)
                        return st_fail(err, ST_ETOOBIG, "JSON nested deeper than %d",
                                       MSGPACK_JSON_MAX_DEPTH);
                if (json_is_object(j))
                        return pack_object(pk, j, depth, err);
                return pack_array(pk, j, depth, err);
        case JSON_STRING:
                return pack_str(pk, json_string_value(j), json_string_length(j), err);
        case JSON_INTEGER:
                rc = msgpack_pack_int64(pk, json_integer_value(j));
                break;
        case JSON_REAL:
                rc = msgpack_pack_double(pk, json_real_value(j));
                break;
        case JSON_TRUE:
                rc = msgpack_pack_true(pk);
                break;
        case JSON_FALSE:
                rc = msgpack_pack_false(pk);
                break;
        case JSON_NULL:
                rc = msgpack_pack_nil(pk);
                break;
        }
        return rc ? write_failed(err) : 0;
}

int msgpack_json_pack(msgpack_packer *pk, const json_t *j, struct st_error *err)
{
        /* jansson's iterators take non-const values; nothing here changes j. */
        return pack_value(pk, (json_t *)j, 0, err);
}

/* A growing output buffer with a hard maximum; msgpack_packer's writer. */
struct out_buffer {
        char *data;
        size_t len, cap, max;
        int failure; /* ST_ETOOBIG or ST_ENOMEM once a write failed */
};

static int out_write(void *data, const char *buf, size_t len)
{
        struct out_buffer *b = data;
        size_t cap;
        char *p;

        if (len == 0)
                return 0;
        if (len > b->max - b->len) {
                b->failure = ST_ETOOBIG;
                return -1;
        }
        if (len > b->cap - b->len) {
                cap = b->cap ? b->cap : b->max < 256 ? b->max : 256;
                while (cap - b->len < len)
                        cap = cap > b->max / 2 ? b->max : cap * 2;
                p = realloc(b->data, cap);
                if (!p) {
                        b->failure = ST_ENOMEM;
                        return -1;
                }
                b->data = p;
                b->cap = cap;
        }
        memcpy(b->data + b->len, buf, len);
        b->len += len;
        return 0;
}

int msgpack_json_encode(const json_t *j, size_t max_len, char **out, size_t *len,
                        struct st_error *err)
{
        struct out_buffer b = {NULL, 0, 0, max_len, 0};
        msgpack_packer pk;
        int rc;

        *out = NULL;
        *len = 0;
        msgpack_packer_init(&pk, &b, out_write);
        rc = msgpack_json_pack(&pk, j, err);
        if (rc == ST_EIO && b.failure == ST_ETOOBIG)
                rc = st_fail(err, ST_ETOOBIG, "msgpack: output over %zu bytes", max_len);
        else if (rc == ST_EIO)
                rc = st_fail(err, ST_ENOMEM, "msgpack: out of memory");
        if (rc) {
                free(b.data);
                return rc;
        }
        *out = b.data;
        *len = b.len;
        return 0;
}
