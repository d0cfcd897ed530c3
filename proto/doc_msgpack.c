/*
 * doc_msgpack.c - msgpack codec of st_raw_record and st_doc.  The field
 * rules live here only: doc_json.c converts JSON to and from msgpack objects
 * and calls the functions below.
 *
 * Encoding (canonical; st_raw_record_hash() depends on it):
 *   value                  msgpack type         when
 *   the record             map, str keys        keys in the order of the doc.h table
 *   str fields             str                  left out when NULL
 *   [str] fields           array of str         always, maybe empty
 *   nsfw                   true / false         always
 *   stats                  map {downloads: uint, likes: uint, rating: float 64}   always
 *   recommended_weight     float 64             always (st_doc)
 *   files                  array of map {name: str, size: uint, sha256: str,
 *                          download_url: str}   always; size always, str when not NULL
 *   images                 array of map {url: str, prompt: str, sha256: str}
 *                                               always; str when not NULL
 *
 * Decoding takes more than encoding writes: nil means absent, uint fields
 * take an integral float, float fields take any integer, unknown keys are
 * ignored and the first of duplicate keys wins.  It rejects strings that are
 * not UTF-8 or hold a NUL (ST_EPARSE), negative or fractional uints and
 * non-finite floats (ST_ETYPE), uints over INT64_MAX (ST_ETOOBIG; JSON cannot
 * carry them) and everything over the ST_LIMIT_* of doc.h (ST_ETOOBIG), so a
 * decoded record can always be written as JSON.
 */
#include "proto/doc.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

/* ---- decoding ---- */

/* Decoding state of one map; the first error sticks and later reads do nothing. */
struct reader {
        const msgpack_object_map *map;
        const char *path; /* prefix of field names in errors: "" or "files[2]." */
        struct arena *a;
        struct st_error *err;
        int rc;
};

static const char *type_name(msgpack_object_type t)
{
        switch (t) {
        case MSGPACK_OBJECT_NIL:
                return "nil";
        case MSGPACK_OBJECT_BOOLEAN:
                return "bool";
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                return "integer";
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                return "float";
        case MSGPACK_OBJECT_STR:
                return "string";
        case MSGPACK_OBJECT_ARRAY:
                return "array";
        case MSGPACK_OBJECT_MAP:
                return "map";
        case MSGPACK_OBJECT_BIN:
                return "bin";
        case MSGPACK_OBJECT_EXT:
                return "ext";
        }
        return "unknown";
}

static void fail(struct reader *rd, int code, const char *name, const char *what)
{
        rd->rc = st_fail(rd->err, code, "field '%s%s': %s", rd->path, name, what);
}

static void fail_type(struct reader *rd, const char *name, const char *expected,
                      const msgpack_object *o)
{
        rd->rc = st_fail(rd->err, ST_ETYPE, "field '%s%s': expected %s, got %s", rd->path, name,
                         expected, type_name(o->type));
}

/* Value of key in the map, or NULL when absent or nil. */
static const msgpack_object *lookup(const struct reader *rd, const char *key)
{
        size_t len = strlen(key);
        uint32_t i;

        for (i = 0; i < rd->map->size; i++) {
                const msgpack_object *k = &rd->map->ptr[i].key;
                const msgpack_object *v = &rd->map->ptr[i].val;

                if (k->type != MSGPACK_OBJECT_STR || k->via.str.size != len ||
                    memcmp(k->via.str.ptr, key, len) != 0)
                        continue;
                return v->type == MSGPACK_OBJECT_NIL ? NULL : v;
        }
        return NULL;
}

/* Length of the UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates), 0 if invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
        size_t n, i;
        uint32_t cp;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                n = 2;
                cp = s[0] & 0x1f;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                n = 3;
                cp = s[0] & 0x0f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                n = 4;
                cp = s[0] & 0x07;
        } else {
                return 0;
        }
        if (n > left)
                return 0;
        for (i = 1; i < n; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return n;
}

static int utf8_valid(const char *s, size_t len)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;

        while (i < len) {
                size_t n = utf8_sequence(p + i, len - i);

                if (n == 0)
                        return 0;
                i += n;
        }
        return 1;
}

/* Copy the string o into the arena after checking its type, size and bytes. */
static void copy_string(struct reader *rd, const char *name, const msgpack_object *o, size_t limit,
                        char **out)
{
        char what[64];

        if (o->type != MSGPACK_OBJECT_STR) {
                fail_type(rd, name, "string", o);
                return;
        }
        if (o->via.str.size > limit) {
                snprintf(what, sizeof(what), "string of %u bytes, limit %zu", o->via.str.size,
                         limit);
                fail(rd, ST_ETOOBIG, name, what);
                return;
        }
        if (memchr(o->via.str.ptr, '\0', o->via.str.size)) {
                fail(rd, ST_EPARSE, name, "NUL byte in string");
                return;
        }
        if (!utf8_valid(o->via.str.ptr, o->via.str.size)) {
                fail(rd, ST_EPARSE, name, "invalid UTF-8");
                return;
        }
        *out = arena_strndup(rd->a, o->via.str.ptr, o->via.str.size);
        if (!*out)
                fail(rd, ST_ENOMEM, name, "arena full");
}

static void read_string(struct reader *rd, const char *key, size_t limit, bool required, char **out)
{
        const msgpack_object *o;

        if (rd->rc)
                return;
        o = lookup(rd, key);
        if (o)
                copy_string(rd, key, o, limit, out);
        else if (required)
                fail(rd, ST_EMISSING, key, "required");
}

static void read_bool(struct reader *rd, const char *key, bool *out)
{
        const msgpack_object *o;

        if (rd->rc)
                return;
        o = lookup(rd, key);
        if (!o)
                return;
        if (o->type != MSGPACK_OBJECT_BOOLEAN) {
                fail_type(rd, key, "bool", o);
                return;
        }
        *out = o->via.boolean;
}

/* A count or size: a non-negative integer, also written as an integral float. */
static void read_uint(struct reader *rd, const char *key, uint64_t *out)
{
        const msgpack_object *o;
        double d;

        if (rd->rc)
                return;
        o = lookup(rd, key);
        if (!o)
                return;
        switch (o->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                if (o->via.u64 > INT64_MAX) {
                        fail(rd, ST_ETOOBIG, key, "integer over 2^63-1");
                        return;
                }
                *out = o->via.u64;
                return;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                d = o->via.f64;
                if (!(d >= 0 && d < 9223372036854775808.0 && d == floor(d))) {
                        fail(rd, ST_ETYPE, key, "expected a non-negative integer");
                        return;
                }
                *out = (uint64_t)d;
                return;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                fail(rd, ST_ETYPE, key, "expected a non-negative integer");
                return;
        default:
                fail_type(rd, key, "integer", o);
                return;
        }
}

static void read_double(struct reader *rd, const char *key, double *out)
{
        const msgpack_object *o;
        double d;

        if (rd->rc)
                return;
        o = lookup(rd, key);
        if (!o)
                return;
        switch (o->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                d = (double)o->via.u64;
                break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                d = (double)o->via.i64;
                break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                d = o->via.f64;
                break;
        default:
                fail_type(rd, key, "number", o);
                return;
        }
        if (!isfinite(d)) {
                fail(rd, ST_ETYPE, key, "expected a finite number");
                return;
        }
        *out = d;
}

/* The array at key, checked against limit; NULL when absent or on error. */
static const msgpack_object_array *read_array(struct reader *rd, const char *key, size_t limit)
{
        const msgpack_object *o;
        char what[64];

        if (rd->rc)
                return NULL;
        o = lookup(rd, key);
        if (!o)
                return NULL;
        if (o->type != MSGPACK_OBJECT_ARRAY) {
                fail_type(rd, key, "array", o);
                return NULL;
        }
        if (o->via.array.size > limit) {
                snprintf(what, sizeof(what), "%u elements, limit %zu", o->via.array.size, limit);
                fail(rd, ST_ETOOBIG, key, what);
                return NULL;
        }
        return &o->via.array;
}

/* Zeroed room for n elements of size bytes; NULL (not an error) when n is 0. */
static void *alloc_elements(struct reader *rd, const char *key, size_t n, size_t size)
{
        void *p;

        if (n == 0)
                return NULL;
        p = arena_calloc(rd->a, n, size);
        if (!p)
                fail(rd, ST_ENOMEM, key, "arena full");
        return p;
}

static void read_strv(struct reader *rd, const char *key, struct st_strv *out)
{
        const msgpack_object_array *array = read_array(rd, key, ST_LIMIT_ARRAY);
        char name[64];
        uint32_t i;

        if (!array)
                return;
        out->v = alloc_elements(rd, key, array->size, sizeof(*out->v));
        for (i = 0; i < array->size && !rd->rc; i++) {
                snprintf(name, sizeof(name), "%s[%u]", key, i);
                copy_string(rd, name, &array->ptr[i], ST_LIMIT_STRING, &out->v[i]);
        }
        if (!rd->rc)
                out->n = array->size;
}

/*
 * Start sub on the map o, called name in errors; path must outlive sub.
 * False, with the error in rd, when o is not a map.
 */
static bool enter_map(struct reader *rd, const char *name, const msgpack_object *o, char *path,
                      size_t path_size, struct reader *sub)
{
        if (o->type != MSGPACK_OBJECT_MAP) {
                fail_type(rd, name, "map", o);
                return false;
        }
        snprintf(path, path_size, "%s%s.", rd->path, name);
        *sub = (struct reader){&o->via.map, path, rd->a, rd->err, 0};
        return true;
}

static void read_stats(struct reader *rd, const char *key, struct st_stats *out)
{
        const msgpack_object *o;
        struct reader sub;
        char path[80];

        if (rd->rc)
                return;
        o = lookup(rd, key);
        if (!o || !enter_map(rd, key, o, path, sizeof(path), &sub))
                return;
        read_uint(&sub, "downloads", &out->downloads);
        read_uint(&sub, "likes", &out->likes);
        read_double(&sub, "rating", &out->rating);
        rd->rc = sub.rc;
}

static void read_files(struct reader *rd, const char *key, struct st_file **files, size_t *n)
{
        const msgpack_object_array *array = read_array(rd, key, ST_LIMIT_ARRAY);
        struct reader sub;
        char name[64];
        char path[80];
        uint32_t i;

        if (!array)
                return;
        *files = alloc_elements(rd, key, array->size, sizeof(**files));
        for (i = 0; i < array->size && !rd->rc; i++) {
                struct st_file *f = &(*files)[i];

                snprintf(name, sizeof(name), "%s[%u]", key, i);
                if (!enter_map(rd, name, &array->ptr[i], path, sizeof(path), &sub))
                        return;
                read_string(&sub, "name", ST_LIMIT_STRING, false, &f->name);
                read_uint(&sub, "size", &f->size);
                read_string(&sub, "sha256", ST_LIMIT_STRING, false, &f->sha256);
                read_string(&sub, "download_url", ST_LIMIT_STRING, false, &f->download_url);
                rd->rc = sub.rc;
        }
        if (!rd->rc)
                *n = array->size;
}

static void read_images(struct reader *rd, const char *key, struct st_image **images, size_t *n)
{
        const msgpack_object_array *array = read_array(rd, key, ST_LIMIT_IMAGES);
        struct reader sub;
        char name[64];
        char path[80];
        uint32_t i;

        if (!array)
                return;
        *images = alloc_elements(rd, key, array->size, sizeof(**images));
        for (i = 0; i < array->size && !rd->rc; i++) {
                struct st_image *im = &(*images)[i];

                snprintf(name, sizeof(name), "%s[%u]", key, i);
                if (!enter_map(rd, name, &array->ptr[i], path, sizeof(path), &sub))
                        return;
                read_string(&sub, "url", ST_LIMIT_STRING, false, &im->url);
                read_string(&sub, "prompt", ST_LIMIT_TEXT, false, &im->prompt);
                read_string(&sub, "sha256", ST_LIMIT_STRING, false, &im->sha256);
                rd->rc = sub.rc;
        }
        if (!rd->rc)
                *n = array->size;
}

static int start_record(const msgpack_object *o, struct arena *a, struct st_error *err,
                        struct reader *rd)
{
        if (o->type != MSGPACK_OBJECT_MAP)
                return st_fail(err, ST_ETYPE, "record: expected a map, got %s", type_name(o->type));
        *rd = (struct reader){&o->via.map, "", a, err, 0};
        return 0;
}

int st_raw_record_from_object(const msgpack_object *o, struct arena *a, struct st_raw_record *r,
                              struct st_error *err)
{
        struct reader rd;

        memset(r, 0, sizeof(*r));
        if (start_record(o, a, err, &rd))
                return ST_ETYPE;
        read_string(&rd, "id", ST_LIMIT_STRING, true, &r->id);
        read_string(&rd, "source", ST_LIMIT_STRING, true, &r->source);
        read_string(&rd, "name", ST_LIMIT_STRING, true, &r->name);
        read_string(&rd, "version_name", ST_LIMIT_STRING, false, &r->version_name);
        read_string(&rd, "type", ST_LIMIT_STRING, false, &r->type);
        read_string(&rd, "base_model", ST_LIMIT_STRING, false, &r->base_model);
        read_string(&rd, "base_model_raw", ST_LIMIT_STRING, false, &r->base_model_raw);
        read_string(&rd, "card_html", ST_LIMIT_TEXT, false, &r->card_html);
        read_string(&rd, "card_url", ST_LIMIT_STRING, false, &r->card_url);
        read_string(&rd, "creator", ST_LIMIT_STRING, false, &r->creator);
        read_strv(&rd, "tags", &r->tags);
        read_strv(&rd, "trained_words", &r->trained_words);
        read_bool(&rd, "nsfw", &r->nsfw);
        read_stats(&rd, "stats", &r->stats);
        read_files(&rd, "files", &r->files, &r->n_files);
        read_images(&rd, "images", &r->images, &r->n_images);
        read_string(&rd, "created_at", ST_LIMIT_STRING, false, &r->created_at);
        read_string(&rd, "updated_at", ST_LIMIT_STRING, false, &r->updated_at);
        read_string(&rd, "crawled_at", ST_LIMIT_STRING, false, &r->crawled_at);
        read_string(&rd, "etag", ST_LIMIT_STRING, false, &r->etag);
        read_string(&rd, "content_hash", ST_LIMIT_STRING, false, &r->content_hash);
        return rd.rc;
}

int st_doc_from_object(const msgpack_object *o, struct arena *a, struct st_doc *d,
                       struct st_error *err)
{
        struct reader rd;

        memset(d, 0, sizeof(*d));
        if (start_record(o, a, err, &rd))
                return ST_ETYPE;
        read_string(&rd, "id", ST_LIMIT_STRING, true, &d->id);
        read_string(&rd, "source", ST_LIMIT_STRING, true, &d->source);
        read_string(&rd, "name", ST_LIMIT_STRING, true, &d->name);
        read_string(&rd, "version_name", ST_LIMIT_STRING, false, &d->version_name);
        read_string(&rd, "type", ST_LIMIT_STRING, false, &d->type);
        read_string(&rd, "base_model", ST_LIMIT_STRING, false, &d->base_model);
        read_string(&rd, "task", ST_LIMIT_STRING, false, &d->task);
        read_string(&rd, "description", ST_LIMIT_TEXT, false, &d->description);
        read_strv(&rd, "trigger_words", &d->trigger_words);
        read_double(&rd, "recommended_weight", &d->recommended_weight);
        read_strv(&rd, "tags", &d->tags);
        read_bool(&rd, "nsfw", &d->nsfw);
        read_stats(&rd, "stats", &d->stats);
        read_files(&rd, "files", &d->files, &d->n_files);
        read_images(&rd, "images", &d->images, &d->n_images);
        read_string(&rd, "card_url", ST_LIMIT_STRING, false, &d->card_url);
        read_string(&rd, "refined_by", ST_LIMIT_STRING, false, &d->refined_by);
        read_string(&rd, "refine_error", ST_LIMIT_STRING, false, &d->refine_error);
        read_string(&rd, "embedding_model", ST_LIMIT_STRING, false, &d->embedding_model);
        read_string(&rd, "created_at", ST_LIMIT_STRING, false, &d->created_at);
        read_string(&rd, "updated_at", ST_LIMIT_STRING, false, &d->updated_at);
        read_string(&rd, "crawled_at", ST_LIMIT_STRING, false, &d->crawled_at);
        read_string(&rd, "content_hash", ST_LIMIT_STRING, false, &d->content_hash);
        return rd.rc;
}

/* ---- encoding ---- */

/*
 * Encoding state of one map.  Every map is written twice by the same
 * function: first with pk NULL to count its keys for the map header, then
 * for real, so the count can never disagree with the keys.
 */
struct writer {
        msgpack_packer *pk; /* NULL while counting */
        size_t keys;
        int rc;
};

/* msgpack-c returns -1 when the packer's write callback fails; sbuffer fails only on OOM. */
static void check(struct writer *w, int ret)
{
        if (ret != 0 && w->rc == 0)
                w->rc = ST_ENOMEM;
}

static void pack_string(struct writer *w, const char *s)
{
        size_t len;

        if (!s) {
                w->rc = w->rc ? w->rc : ST_EINVAL; /* a NULL inside a string array */
                return;
        }
        len = strlen(s);
        check(w, msgpack_pack_str(w->pk, len));
        check(w, msgpack_pack_str_body(w->pk, s, len));
}

/* Count key; when writing, also pack it.  True when the value should be packed next. */
static bool begin_key(struct writer *w, const char *key)
{
        w->keys++;
        if (!w->pk || w->rc)
                return false;
        pack_string(w, key);
        return w->rc == 0;
}

/* Write item as one map whose keys fields() writes. */
static void write_map(struct writer *w, void (*fields)(struct writer *, const void *),
                      const void *item)
{
        struct writer sub = {NULL, 0, 0};

        fields(&sub, item);
        sub.pk = w->pk;
        check(&sub, msgpack_pack_map(sub.pk, sub.keys));
        sub.keys = 0;
        fields(&sub, item);
        if (sub.rc && !w->rc)
                w->rc = sub.rc;
}

static void write_string(struct writer *w, const char *key, const char *s)
{
        if (s && begin_key(w, key))
                pack_string(w, s);
}

static void write_bool(struct writer *w, const char *key, bool b)
{
        if (begin_key(w, key))
                check(w, b ? msgpack_pack_true(w->pk) : msgpack_pack_false(w->pk));
}

static void write_uint(struct writer *w, const char *key, uint64_t v)
{
        if (begin_key(w, key))
                check(w, msgpack_pack_uint64(w->pk, v));
}

static void write_double(struct writer *w, const char *key, double d)
{
        if (begin_key(w, key))
                check(w, msgpack_pack_double(w->pk, d));
}

static void write_strv(struct writer *w, const char *key, const struct st_strv *v)
{
        size_t i;

        if (!begin_key(w, key))
                return;
        check(w, msgpack_pack_array(w->pk, v->n));
        for (i = 0; i < v->n; i++)
                pack_string(w, v->v[i]);
}

static void stats_fields(struct writer *w, const void *item)
{
        const struct st_stats *s = item;

        write_uint(w, "downloads", s->downloads);
        write_uint(w, "likes", s->likes);
        write_double(w, "rating", s->rating);
}

static void write_stats(struct writer *w, const char *key, const struct st_stats *s)
{
        if (begin_key(w, key))
                write_map(w, stats_fields, s);
}

static void file_fields(struct writer *w, const void *item)
{
        const struct st_file *f = item;

        write_string(w, "name", f->name);
        write_uint(w, "size", f->size);
        write_string(w, "sha256", f->sha256);
        write_string(w, "download_url", f->download_url);
}

static void write_files(struct writer *w, const char *key, const struct st_file *files, size_t n)
{
        size_t i;

        if (!begin_key(w, key))
                return;
        check(w, msgpack_pack_array(w->pk, n));
        for (i = 0; i < n; i++)
                write_map(w, file_fields, &files[i]);
}

static void image_fields(struct writer *w, const void *item)
{
        const struct st_image *im = item;

        write_string(w, "url", im->url);
        write_string(w, "prompt", im->prompt);
        write_string(w, "sha256", im->sha256);
}

static void write_images(struct writer *w, const char *key, const struct st_image *images, size_t n)
{
        size_t i;

        if (!begin_key(w, key))
                return;
        check(w, msgpack_pack_array(w->pk, n));
        for (i = 0; i < n; i++)
                write_map(w, image_fields, &images[i]);
}

static void raw_record_fields(struct writer *w, const void *item)
{
        const struct st_raw_record *r = item;

        write_string(w, "id", r->id);
        write_string(w, "source", r->source);
        write_string(w, "name", r->name);
        write_string(w, "version_name", r->version_name);
        write_string(w, "type", r->type);
        write_string(w, "base_model", r->base_model);
        write_string(w, "base_model_raw", r->base_model_raw);
        write_string(w, "card_html", r->card_html);
        write_string(w, "card_url", r->card_url);
        write_string(w, "creator", r->creator);
        write_strv(w, "tags", &r->tags);
        write_strv(w, "trained_words", &r->trained_words);
        write_bool(w, "nsfw", r->nsfw);
        write_stats(w, "stats", &r->stats);
        write_files(w, "files", r->files, r->n_files);
        write_images(w, "images", r->images, r->n_images);
        write_string(w, "created_at", r->created_at);
        write_string(w, "updated_at", r->updated_at);
        write_string(w, "crawled_at", r->crawled_at);
        write_string(w, "etag", r->etag);
        write_string(w, "content_hash", r->content_hash);
}

static void doc_fields(struct writer *w, const void *item)
{
        const struct st_doc *d = item;

        write_string(w, "id", d->id);
        write_string(w, "source", d->source);
        write_string(w, "name", d->name);
        write_string(w, "version_name", d->version_name);
        write_string(w, "type", d->type);
        write_string(w, "base_model", d->base_model);
        write_string(w, "task", d->task);
        write_string(w, "description", d->description);
        write_strv(w, "trigger_words", &d->trigger_words);
        write_double(w, "recommended_weight", d->recommended_weight);
        write_strv(w, "tags", &d->tags);
        write_bool(w, "nsfw", d->nsfw);
        write_stats(w, "stats", &d->stats);
        write_files(w, "files", d->files, d->n_files);
        write_images(w, "images", d->images, d->n_images);
        write_string(w, "card_url", d->card_url);
        write_string(w, "refined_by", d->refined_by);
        write_string(w, "refine_error", d->refine_error);
        write_string(w, "embedding_model", d->embedding_model);
        write_string(w, "created_at", d->created_at);
        write_string(w, "updated_at", d->updated_at);
        write_string(w, "crawled_at", d->crawled_at);
        write_string(w, "content_hash", d->content_hash);
}

int st_raw_record_pack(msgpack_packer *pk, const struct st_raw_record *r)
{
        struct writer w = {pk, 0, 0};

        write_map(&w, raw_record_fields, r);
        return w.rc;
}

int st_doc_pack(msgpack_packer *pk, const struct st_doc *d)
{
        struct writer w = {pk, 0, 0};

        write_map(&w, doc_fields, d);
        return w.rc;
}

static int to_buffer(int (*pack)(msgpack_packer *, const void *), const void *record, char **out,
                     size_t *len)
{
        msgpack_sbuffer sbuf;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sbuf);
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        rc = pack(&pk, record);
        if (rc) {
                msgpack_sbuffer_destroy(&sbuf);
                return rc;
        }
        *len = sbuf.size;
        *out = msgpack_sbuffer_release(&sbuf);
        return 0;
}

static int pack_raw_record(msgpack_packer *pk, const void *record)
{
        return st_raw_record_pack(pk, record);
}

static int pack_doc(msgpack_packer *pk, const void *record)
{
        return st_doc_pack(pk, record);
}

int st_raw_record_to_msgpack(const struct st_raw_record *r, char **out, size_t *len)
{
        return to_buffer(pack_raw_record, r, out, len);
}

int st_doc_to_msgpack(const struct st_doc *d, char **out, size_t *len)
{
        return to_buffer(pack_doc, d, out, len);
}

/* ---- framing ---- */

static uint64_t load_be(const unsigned char *p, size_t n)
{
        uint64_t v = 0;
        size_t i;

        for (i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static int truncated(struct st_error *err, size_t len)
{
        return st_fail(err, ST_ETRUNC, "msgpack: input of %zu bytes ends inside a value", len);
}

/*
 * msgpack-c's unpacker nests at most 32 containers (MSGPACK_EMBED_STACK_SIZE,
 * not in its public headers) and calls deeper input "out of memory"; the
 * scan below refuses it first, as malformed.
 */
#define NESTING_MAX 32

/*
 * Layout after a header byte: a big-endian length field of field bytes (or,
 * for fix types, the length inside the byte: count), then fixed payload
 * bytes; the length counts payload bytes (body) or values (values per unit).
 */
struct header {
        size_t field;
        size_t count;
        size_t fixed;
        int body;
        size_t values;
};

/* Layout of header byte b; 0xc1, never used, is rejected by the caller. */
static struct header header_of(unsigned char b)
{
        struct header h = {0, 0, 0, 0, 0};

        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
                return h; /* fixint, nil, bool */
        if (b <= 0x8f) {  /* fixmap */
                h.count = b & 0x0f;
                h.values = 2;
        } else if (b <= 0x9f) { /* fixarray */
                h.count = b & 0x0f;
                h.values = 1;
        } else if (b <= 0xbf) { /* fixstr */
                h.count = b & 0x1f;
                h.body = 1;
        } else if (b <= 0xc6) { /* bin 8/16/32 */
                h.field = (size_t)1 << (b - 0xc4);
                h.body = 1;
        } else if (b <= 0xc9) { /* ext 8/16/32: type byte, data */
                h.field = (size_t)1 << (b - 0xc7);
                h.fixed = 1;
                h.body = 1;
        } else if (b <= 0xcb) { /* float 32/64 */
                h.fixed = b == 0xca ? 4 : 8;
        } else if (b <= 0xd3) { /* uint 8..64, int 8..64 */
                h.fixed = (size_t)1 << ((b - 0xcc) & 3);
        } else if (b <= 0xd8) { /* fixext 1..16: type byte, data */
                h.fixed = 1 + ((size_t)1 << (b - 0xd4));
        } else if (b <= 0xdb) { /* str 8/16/32 */
                h.field = (size_t)1 << (b - 0xd9);
                h.body = 1;
        } else if (b <= 0xdd) { /* array 16/32 */
                h.field = (size_t)2 << (b - 0xdc);
                h.values = 1;
        } else { /* map 16/32 */
                h.field = (size_t)2 << (b - 0xde);
                h.values = 2;
        }
        return h;
}

/*
 * Find the end of the first msgpack value in buf without building it.
 * msgpack-c allocates a declared array or map size before reading the
 * elements, so five bytes could ask for 100 GB; since every value takes at
 * least one byte, a count over the bytes left is refused here first.
 * left[d] counts the values still to come in the container at depth d;
 * pending is their sum.
 */
static int value_end(const unsigned char *buf, size_t len, size_t *end, struct st_error *err)
{
        size_t left[NESTING_MAX + 1];
        size_t pos = 0, pending = 1;
        int depth = 0;

        left[0] = 1;
        while (depth >= 0) {
                struct header h;
                uint64_t n;

                if (left[depth] == 0) {
                        depth--;
                        continue;
                }
                if (pending > len - pos)
                        return truncated(err, len);
                if (buf[pos] == 0xc1)
                        return st_fail(err, ST_EPARSE, "msgpack: byte 0xc1 at offset %zu", pos);
                h = header_of(buf[pos++]);
                left[depth]--;
                pending--;
                if (h.field > len - pos)
                        return truncated(err, len);
                n = h.field ? load_be(buf + pos, h.field) : h.count;
                pos += h.field;
                if (h.fixed > len - pos || (h.body && n > len - pos - h.fixed) ||
                    h.values * n > len - pos)
                        return truncated(err, len);
                pos += h.fixed + (h.body ? (size_t)n : 0);
                if (h.values * n == 0)
                        continue;
                if (depth == NESTING_MAX)
                        return st_fail(err, ST_EPARSE, "msgpack: nested deeper than %d",
                                       NESTING_MAX);
                left[++depth] = (size_t)(h.values * n);
                pending += left[depth];
        }
        *end = pos;
        return 0;
}

/* Unpack the one value in buf into u, which the caller always destroys. */
static int unpack_one(const char *buf, size_t len, msgpack_unpacked *u, struct st_error *err)
{
        size_t end, off = 0;
        int rc;

        msgpack_unpacked_init(u);
        if (len > ST_LIMIT_RECORD)
                return st_fail(err, ST_ETOOBIG, "record: %zu bytes, limit %u", len,
                               ST_LIMIT_RECORD);
        rc = value_end((const unsigned char *)buf, len, &end, err);
        if (rc)
                return rc;
        if (end != len)
                return st_fail(err, ST_EPARSE,
                               "msgpack: trailing data after the record (%zu bytes)", len - end);
        switch (msgpack_unpack_next(u, buf, len, &off)) {
        case MSGPACK_UNPACK_SUCCESS:
        case MSGPACK_UNPACK_EXTRA_BYTES:
                return 0;
        case MSGPACK_UNPACK_CONTINUE:
                return truncated(err, len);
        case MSGPACK_UNPACK_NOMEM_ERROR:
                return st_fail(err, ST_ENOMEM, "msgpack: out of memory");
        default:
                return st_fail(err, ST_EPARSE, "msgpack: malformed");
        }
}

int st_raw_record_from_msgpack(const char *buf, size_t len, struct arena *a,
                               struct st_raw_record *r, struct st_error *err)
{
        msgpack_unpacked u;
        int rc = unpack_one(buf, len, &u, err);

        if (rc == 0)
                rc = st_raw_record_from_object(&u.data, a, r, err);
        msgpack_unpacked_destroy(&u);
        return rc;
}

int st_doc_from_msgpack(const char *buf, size_t len, struct arena *a, struct st_doc *d,
                        struct st_error *err)
{
        msgpack_unpacked u;
        int rc = unpack_one(buf, len, &u, err);

        if (rc == 0)
                rc = st_doc_from_object(&u.data, a, d, err);
        msgpack_unpacked_destroy(&u);
        return rc;
}
