/*
 * civitai.c - Civitai /api/v1/models and /api/v1/images pages to raw_records.
 * The field mapping is the table in civitai.h.
 */
#include "crawler/civitai.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crawler/driver.h"
#include "proto/log.h"
#include "proto/utf8.h"

#define IMAGES_PER_CALL 10

/* One page being parsed: where to allocate, and whether that ever failed. */
struct parser {
        struct arena *a;
        bool out_of_memory;
};

/* What every version of one model shares. */
struct model {
        json_int_t id;
        char *name;
        char *type;
        char *creator;
        const char *description; /* borrowed from the JSON */
        struct st_strv tags;
        bool nsfw;
        json_t *nsfw_level;
        json_t *stats;
};

/* ---- small helpers ---- */

static size_t base_length(const char *base_url)
{
        size_t len = strlen(base_url);

        while (len > 0 && base_url[len - 1] == '/')
                len--;
        return len;
}

static void *note_alloc(struct parser *p, void *ptr)
{
        if (!ptr)
                p->out_of_memory = true;
        return ptr;
}

/* Value of a string member no longer than a short string may be; NULL otherwise. */
static const char *short_string(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);

        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) >= ST_LIMIT_STRING)
                return NULL;
        return json_string_value(v);
}

static char *copy_short(struct parser *p, const json_t *obj, const char *key)
{
        const char *s = short_string(obj, key);

        return s ? note_alloc(p, arena_strdup(p->a, s)) : NULL;
}

/* Copy of s cut to fit ST_LIMIT_TEXT, never inside a UTF-8 sequence. */
static char *copy_text(struct parser *p, const char *s, size_t len)
{
        len = utf8_fit(s, len, ST_LIMIT_TEXT - 1);
        return note_alloc(p, arena_strndup(p->a, s, len));
}

static const char *text_member(const json_t *obj, const char *key, size_t *len)
{
        const json_t *v = json_object_get(obj, key);

        if (!json_is_string(v) || json_string_length(v) == 0)
                return NULL;
        *len = strlen(json_string_value(v)); /* stops at an embedded NUL */
        return json_string_value(v);
}

/* A positive integer id. */
static bool get_id(const json_t *v, json_int_t *out)
{
        if (!json_is_integer(v) || json_integer_value(v) <= 0)
                return false;
        *out = json_integer_value(v);
        return true;
}

static bool get_count(const json_t *obj, const char *key, double *out)
{
        const json_t *v = json_object_get(obj, key);
        double d;

        if (!json_is_number(v))
                return false;
        d = json_number_value(v);
        if (!isfinite(d) || d < 0)
                return false;
        *out = d;
        return true;
}

/* A stats key from the version's stats, else from the model's. */
static bool get_stat(const json_t *version_stats, const json_t *model_stats, const char *key,
                     double *out)
{
        return get_count(version_stats, key, out) || get_count(model_stats, key, out);
}

/* Rounded, and at most INT64_MAX: the codecs (and JSON) carry no more. */
static uint64_t to_u64(double d)
{
        if (d >= 9223372036854774784.0)
                return INT64_MAX;
        return (uint64_t)(d + 0.5);
}

/* Strings of a JSON array, or the "name" of its objects; others are dropped. */
static struct st_strv copy_strings(struct parser *p, const json_t *arr)
{
        struct st_strv sv = {NULL, 0};
        size_t n = json_array_size(arr), i;
        json_t *v;

        if (n == 0)
                return sv;
        if (n > ST_LIMIT_ARRAY)
                n = ST_LIMIT_ARRAY;
        sv.v = note_alloc(p, arena_calloc(p->a, n, sizeof(*sv.v)));
        if (!sv.v)
                return sv;
        json_array_foreach(arr, i, v)
        {
                const char *s = NULL;

                if (sv.n == n)
                        break;
                if (json_is_string(v) && json_string_length(v) > 0 &&
                    json_string_length(v) < ST_LIMIT_STRING)
                        s = json_string_value(v);
                else if (json_is_object(v))
                        s = short_string(v, "name");
                if (s)
                        sv.v[sv.n++] = note_alloc(p, arena_strdup(p->a, s));
        }
        return sv;
}

static bool is_hex64(const char *s)
{
        size_t i;

        for (i = 0; s[i]; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                      (s[i] >= 'A' && s[i] <= 'F')))
                        return false;
        return i == 64;
}

static char *copy_sha256(struct parser *p, const json_t *hashes)
{
        const char *s = short_string(hashes, "SHA256");
        char *out;

        if (!s || !is_hex64(s))
                return NULL;
        out = note_alloc(p, arena_strdup(p->a, s));
        for (char *c = out; c && *c; c++)
                if (*c >= 'A' && *c <= 'F')
                        *c = (char)(*c - 'A' + 'a');
        return out;
}

/* Parse a page: an object with an "items" array (value cap: driver_load_json). */
static int load_page(const char *json, size_t len, const char *what, json_t **root, json_t **items,
                     struct st_error *err)
{
        char label[32];
        int rc;

        snprintf(label, sizeof(label), "civitai %s page", what);
        rc = driver_load_json(json, len, CIVITAI_MAX_JSON_VALUES, label, root, err);
        if (rc)
                return rc;
        if (!json_is_object(*root)) {
                json_decref(*root);
                *root = NULL;
                return st_fail(err, ST_ETYPE, "civitai %s page: top level is not an object", what);
        }
        *items = json_object_get(*root, "items");
        if (!json_is_array(*items)) {
                json_decref(*root);
                *root = NULL;
                return st_fail(err, ST_ETYPE, "civitai %s page: 'items' is not an array", what);
        }
        return 0;
}

/* ---- URLs ---- */

static char *percent_encode(struct arena *a, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t len = strlen(s), o = 0;
        char *out;

        if (len > (SIZE_MAX - 1) / 3)
                return NULL;
        out = arena_alloc(a, len * 3 + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];

                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~') {
                        out[o++] = (char)c;
                } else {
                        out[o++] = '%';
                        out[o++] = hex[c >> 4];
                        out[o++] = hex[c & 15];
                }
        }
        out[o] = '\0';
        return out;
}

char *civitai_models_url(struct arena *a, const char *base_url, const char *cursor, int limit)
{
        int base = (int)base_length(base_url);
        char *encoded;

        if (limit < 1 || limit > 100)
                limit = 100;
        if (!cursor)
                return arena_printf(a,
                                    "%.*s/api/v1/models?limit=%d&types=LORA&types=LoCon&types=DoRA"
                                    "&nsfw=true&sort=Newest",
                                    base, base_url, limit);
        encoded = percent_encode(a, cursor);
        if (!encoded)
                return NULL;
        return arena_printf(a,
                            "%.*s/api/v1/models?limit=%d&types=LORA&types=LoCon&types=DoRA"
                            "&nsfw=true&sort=Newest&cursor=%s",
                            base, base_url, limit, encoded);
}

char *civitai_images_url(struct arena *a, const char *base_url, uint64_t version_id)
{
        return arena_printf(a, "%.*s/api/v1/images?modelVersionId=%llu&limit=%d",
                            (int)base_length(base_url), base_url, (unsigned long long)version_id,
                            IMAGES_PER_CALL);
}

char *civitai_model_url(struct arena *a, const char *base_url, uint64_t model_id)
{
        return arena_printf(a, "%.*s/api/v1/models/%llu", (int)base_length(base_url), base_url,
                            (unsigned long long)model_id);
}

char *civitai_by_hash_url(struct arena *a, const char *base_url, const char *hash)
{
        return arena_printf(a, "%.*s/api/v1/model-versions/by-hash/%s", (int)base_length(base_url),
                            base_url, hash);
}

/* ---- one version ---- */

static void parse_files(struct parser *p, const json_t *version, struct st_raw_record *r)
{
        const json_t *files = json_object_get(version, "files");
        size_t n = json_array_size(files), i;
        json_t *fj;

        if (n == 0)
                return;
        if (n > ST_LIMIT_ARRAY)
                n = ST_LIMIT_ARRAY;
        r->files = note_alloc(p, arena_calloc(p->a, n, sizeof(*r->files)));
        if (!r->files)
                return;
        json_array_foreach(files, i, fj)
        {
                struct st_file *file;
                double kb;

                if (r->n_files == n)
                        break;
                if (!json_is_object(fj))
                        continue;
                file = &r->files[r->n_files++];
                file->name = copy_short(p, fj, "name");
                if (get_count(fj, "sizeKB", &kb))
                        file->size = to_u64(kb * 1024.0);
                file->sha256 = copy_sha256(p, json_object_get(fj, "hashes"));
                file->download_url = copy_short(p, fj, "downloadUrl");
        }
}

/* The prompt of an image item (meta.prompt), copied; NULL when it has none. */
static char *image_prompt(struct parser *p, const json_t *image)
{
        size_t len = 0;
        const char *s = text_member(json_object_get(image, "meta"), "prompt", &len);

        return s && len > 0 ? copy_text(p, s, len) : NULL;
}

/* Up to max images with a url (and a prompt when need_prompt); returns how many. */
static size_t collect_images(struct parser *p, const json_t *arr, bool need_prompt, size_t max,
                             struct st_image **out)
{
        size_t n = json_array_size(arr), i, kept = 0;
        json_t *ij;

        *out = NULL;
        if (n == 0 || max == 0)
                return 0;
        if (n > max)
                n = max;
        *out = note_alloc(p, arena_calloc(p->a, n, sizeof(**out)));
        if (!*out)
                return 0;
        json_array_foreach(arr, i, ij)
        {
                const char *url = short_string(ij, "url");
                char *prompt;

                if (kept == n)
                        break;
                if (!url)
                        continue;
                prompt = image_prompt(p, ij);
                if (need_prompt && !prompt)
                        continue;
                (*out)[kept].url = note_alloc(p, arena_strdup(p->a, url));
                (*out)[kept].prompt = prompt;
                kept++;
        }
        return kept;
}

/*
 * Should the images API be asked for this version's prompts?  Only when it
 * lists images, none with a prompt, and not every one says hasMeta: false.
 */
static bool images_call_worthwhile(const struct st_raw_record *r, const json_t *version)
{
        const json_t *images = json_object_get(version, "images"), *ij;
        bool maybe = false;
        size_t i;

        for (i = 0; i < r->n_images; i++)
                if (r->images[i].prompt)
                        return false;
        json_array_foreach(images, i, ij)
        {
                if (short_string(ij, "url") && !json_is_false(json_object_get(ij, "hasMeta")))
                        maybe = true;
        }
        return maybe;
}

static void fill_stats(const json_t *version, const struct model *m, struct st_raw_record *r)
{
        const json_t *vs = json_object_get(version, "stats");
        double downloads, up, down, rating;

        if (get_stat(vs, m->stats, "downloadCount", &downloads))
                r->stats.downloads = to_u64(downloads);
        if (get_stat(vs, m->stats, "thumbsUpCount", &up)) {
                r->stats.likes = to_u64(up);
                if (get_stat(vs, m->stats, "thumbsDownCount", &down) && up + down > 0) {
                        r->stats.rating = 5.0 * up / (up + down);
                        return;
                }
        }
        if (get_stat(vs, m->stats, "rating", &rating))
                r->stats.rating = rating > 5.0 ? 5.0 : rating;
}

static char *card_html(struct parser *p, const struct model *m, const json_t *version)
{
        size_t mlen, vlen = 0;
        const char *vdesc = text_member(version, "description", &vlen);
        char *joined, *out;

        if (!vdesc)
                return m->description ? copy_text(p, m->description, strlen(m->description)) : NULL;
        if (!m->description)
                return copy_text(p, vdesc, vlen);
        mlen = strlen(m->description);
        joined = malloc(mlen + 1 + vlen);
        if (!joined)
                return note_alloc(p, NULL);
        memcpy(joined, m->description, mlen);
        joined[mlen] = '\n';
        memcpy(joined + mlen + 1, vdesc, vlen);
        out = copy_text(p, joined, mlen + 1 + vlen);
        free(joined);
        return out;
}

static bool version_nsfw(const struct model *m, const json_t *version)
{
        const json_t *level = json_object_get(version, "nsfwLevel");

        if (!json_is_integer(level))
                level = m->nsfw_level;
        return m->nsfw || (json_is_integer(level) && json_integer_value(level) > 1);
}

static void fill_dates(struct parser *p, const json_t *version, struct st_raw_record *r)
{
        const char *created = short_string(version, "createdAt");
        const char *updated = short_string(version, "updatedAt");
        const char *published = short_string(version, "publishedAt");

        if (!created)
                created = published;
        if (!updated)
                updated = published ? published : created;
        r->created_at = created ? note_alloc(p, arena_strdup(p->a, created)) : NULL;
        r->updated_at = updated ? note_alloc(p, arena_strdup(p->a, updated)) : NULL;
}

/*
 * Hash r into r->content_hash; false when the record cannot be encoded or
 * its encoding is over ST_LIMIT_RECORD, which no decoder would take.
 */
static bool stamp_hash(struct parser *p, struct st_raw_record *r)
{
        char hash[65], *encoded;
        size_t len;
        int rc = st_raw_record_to_msgpack(r, &encoded, &len);

        if (rc == 0) {
                free(encoded);
                if (len > ST_LIMIT_RECORD)
                        rc = ST_ETOOBIG;
        }
        if (rc == 0)
                rc = st_raw_record_hash(r, hash);
        if (rc) {
                log_warn("civitai: %s: record dropped: %s", r->id, st_strerror(rc));
                return false;
        }
        r->content_hash = note_alloc(p, arena_strdup(p->a, hash));
        return r->content_hash != NULL;
}

/* Fill r from version vid of m; false when it cannot be encoded or the arena is full. */
static bool parse_version(struct parser *p, const struct model *m, const json_t *version,
                          json_int_t vid, const char *base_url, const char *crawled_at,
                          struct st_raw_record *r)
{
        const char *base_model;
        int base = (int)base_length(base_url);

        memset(r, 0, sizeof(*r));
        r->id = note_alloc(
            p, arena_printf(p->a, "civitai:%lld@%lld", (long long)m->id, (long long)vid));
        r->source = "civitai";
        r->name = m->name;
        r->version_name = copy_short(p, version, "name");
        r->type = m->type;
        r->base_model_raw = copy_short(p, version, "baseModel");
        base_model = r->base_model_raw ? st_base_model_normalize(r->base_model_raw) : "other";
        r->base_model = note_alloc(p, arena_strdup(p->a, base_model));
        r->card_html = card_html(p, m, version);
        r->card_url = note_alloc(p, arena_printf(p->a, "%.*s/models/%lld?modelVersionId=%lld", base,
                                                 base_url, (long long)m->id, (long long)vid));
        r->creator = m->creator;
        r->tags = m->tags;
        r->trained_words = copy_strings(p, json_object_get(version, "trainedWords"));
        r->nsfw = version_nsfw(m, version);
        fill_stats(version, m, r);
        parse_files(p, version, r);
        r->n_images = collect_images(p, json_object_get(version, "images"), false,
                                     CIVITAI_MAX_IMAGES, &r->images);
        fill_dates(p, version, r);
        r->crawled_at = note_alloc(p, arena_strdup(p->a, crawled_at));
        if (p->out_of_memory)
                return false;
        return stamp_hash(p, r);
}

/* ---- one model ---- */

static bool eligible_type(const char *type)
{
        return type && (strcasecmp(type, "LORA") == 0 || strcasecmp(type, "LoCon") == 0 ||
                        strcasecmp(type, "DoRA") == 0);
}

/* Model fields shared by its versions; false when the item is malformed (logged). */
static bool read_model(struct parser *p, const json_t *item, size_t index, struct model *m)
{
        const json_t *nsfw = json_object_get(item, "nsfw");
        size_t len = 0;

        memset(m, 0, sizeof(*m));
        if (!json_is_object(item) || !get_id(json_object_get(item, "id"), &m->id)) {
                log_warn("civitai: item %zu skipped: no integer id", index);
                return false;
        }
        m->name = copy_short(p, item, "name");
        if (!m->name) {
                log_warn("civitai: model %lld skipped: no usable name", (long long)m->id);
                return false;
        }
        m->type = copy_short(p, item, "type");
        m->creator = copy_short(p, json_object_get(item, "creator"), "username");
        m->description = text_member(item, "description", &len);
        m->tags = copy_strings(p, json_object_get(item, "tags"));
        m->nsfw = json_is_true(nsfw);
        m->nsfw_level = json_object_get(item, "nsfwLevel");
        m->stats = json_object_get(item, "stats");
        return true;
}

static void add_record(struct civitai_page *out, const struct st_raw_record *r, json_int_t vid,
                       bool need_images)
{
        size_t i = out->n_records++;

        out->records[i] = *r;
        if (need_images) {
                out->need_images[out->n_need_images] = (uint64_t)vid;
                out->need_images_record[out->n_need_images] = i;
                out->n_need_images++;
        }
}

static void parse_model(struct parser *p, const json_t *item, size_t index, const char *base_url,
                        const char *crawled_at, struct civitai_page *out)
{
        struct model m;
        const json_t *versions, *v;
        size_t i;

        if (!read_model(p, item, index, &m)) {
                out->n_errors++;
                return;
        }
        versions = json_object_get(item, "modelVersions");
        if (!eligible_type(m.type) || json_array_size(versions) == 0) {
                log_debug("civitai: model %lld skipped: type %s, %zu versions", (long long)m.id,
                          m.type ? m.type : "(none)", json_array_size(versions));
                out->n_skipped++;
                return;
        }
        json_array_foreach(versions, i, v)
        {
                struct st_raw_record r;
                json_int_t vid;

                if (out->n_records == CIVITAI_MAX_RECORDS) {
                        log_warn("civitai: model %lld: versions past %d records dropped",
                                 (long long)m.id, CIVITAI_MAX_RECORDS);
                        out->n_errors++;
                        return;
                }
                if (!json_is_object(v) || !get_id(json_object_get(v, "id"), &vid)) {
                        log_warn("civitai: model %lld: version without an integer id skipped",
                                 (long long)m.id);
                        out->n_errors++;
                        continue;
                }
                if (!parse_version(p, &m, v, vid, base_url, crawled_at, &r)) {
                        if (p->out_of_memory)
                                return;
                        out->n_errors++;
                        continue;
                }
                add_record(out, &r, vid, images_call_worthwhile(&r, v));
        }
}

static size_t count_versions(const json_t *items)
{
        size_t n = 0, i;
        const json_t *item;

        json_array_foreach(items, i, item)
        {
                n += json_array_size(json_object_get(item, "modelVersions"));
                if (n >= CIVITAI_MAX_RECORDS)
                        return CIVITAI_MAX_RECORDS;
        }
        return n;
}

static char *next_cursor(struct parser *p, const json_t *root)
{
        const json_t *meta = json_object_get(root, "metadata");
        const json_t *c = json_object_get(meta, "nextCursor");

        if (json_is_integer(c))
                return note_alloc(p, arena_printf(p->a, "%lld", (long long)json_integer_value(c)));
        return copy_short(p, meta, "nextCursor");
}

static int allocate_page(struct parser *p, const json_t *items, struct civitai_page *out)
{
        size_t n = count_versions(items);

        if (n == 0)
                return 0;
        out->records = arena_calloc(p->a, n, sizeof(*out->records));
        out->need_images = arena_calloc(p->a, n, sizeof(*out->need_images));
        out->need_images_record = arena_calloc(p->a, n, sizeof(*out->need_images_record));
        if (!out->records || !out->need_images || !out->need_images_record)
                return ST_ENOMEM;
        return 0;
}

/* The records of every model in items, into out (zeroed by the caller). */
static int parse_items(struct parser *p, const json_t *items, const char *base_url,
                       const char *crawled_at, struct civitai_page *out, struct st_error *err)
{
        const json_t *item;
        size_t i;

        if (allocate_page(p, items, out))
                return st_fail(err, ST_ENOMEM, "civitai models page: arena full");
        out->n_items = json_array_size(items);
        json_array_foreach(items, i, item)
        {
                parse_model(p, item, i, base_url, crawled_at, out);
                if (p->out_of_memory)
                        return st_fail(err, ST_ENOMEM, "civitai models page: arena full");
        }
        return 0;
}

int civitai_parse_models_page(const char *json, size_t len, const char *base_url,
                              const char *crawled_at, struct arena *a, struct civitai_page *out,
                              struct st_error *err)
{
        struct parser p = {a, false};
        json_t *root, *items;
        int rc;

        memset(out, 0, sizeof(*out));
        rc = load_page(json, len, "models", &root, &items, err);
        if (rc)
                return rc;
        rc = parse_items(&p, items, base_url, crawled_at, out, err);
        if (rc == 0) {
                out->next_cursor = next_cursor(&p, root);
                if (p.out_of_memory)
                        rc = st_fail(err, ST_ENOMEM, "civitai models page: arena full");
        }
        json_decref(root);
        return rc;
}

int civitai_parse_images_page(const char *json, size_t len, struct arena *a,
                              struct st_image **images, size_t *n, size_t max, struct st_error *err)
{
        struct parser p = {a, false};
        json_t *root, *items;
        int rc;

        *images = NULL;
        *n = 0;
        rc = load_page(json, len, "images", &root, &items, err);
        if (rc)
                return rc;
        *n = collect_images(&p, items, true, max, images);
        if (p.out_of_memory) {
                *images = NULL;
                *n = 0;
                rc = st_fail(err, ST_ENOMEM, "civitai images page: arena full");
        }
        json_decref(root);
        return rc;
}

/* ---- crawling ---- */

/*
 * Give record r the prompted images of one /api/v1/images response: 1 when
 * it got them, 0 when it keeps its own (the answer had none with a prompt),
 * IMAGES_FAILED when the call or its answer failed (logged), ST_ENOMEM when
 * the arena is full.
 */
#define IMAGES_FAILED 2
static int apply_images(struct arena *a, struct fetch_request *req, struct st_raw_record *r)
{
        struct parser p = {a, false};
        struct st_error perr = {0, ""};
        struct st_image *images, *old_images;
        size_t n, old_n;
        char *old_hash;
        int rc;

        if (req->result.error.code) {
                log_warn("civitai: %s: images call failed: %s", r->id, req->result.error.msg);
                return IMAGES_FAILED;
        }
        rc = civitai_parse_images_page(req->result.body, req->result.body_len, a, &images, &n,
                                       CIVITAI_MAX_IMAGES, &perr);
        if (rc == ST_ENOMEM)
                return rc;
        if (rc) {
                log_warn("civitai: %s: %s", r->id, perr.msg);
                return IMAGES_FAILED;
        }
        if (n == 0)
                return 0;
        old_images = r->images;
        old_n = r->n_images;
        old_hash = r->content_hash;
        r->images = images;
        r->n_images = n;
        if (!stamp_hash(&p, r)) {
                r->images = old_images;
                r->n_images = old_n;
                r->content_hash = old_hash;
                return p.out_of_memory ? ST_ENOMEM : 0;
        }
        return 1;
}

/* Remove the records whose id was cleared, keeping the order of the rest. */
static void drop_unnamed(struct civitai_page *out)
{
        size_t j = 0;

        for (size_t i = 0; i < out->n_records; i++)
                if (out->records[i].id)
                        out->records[j++] = out->records[i];
        out->n_records = j;
}

static int fill_images(struct fetcher *f, const struct civitai_source *src, struct arena *a,
                       struct civitai_page *out, struct st_error *err)
{
        size_t n = out->n_need_images;
        struct fetch_request *reqs;
        int rc = 0;

        reqs = calloc(n, sizeof(*reqs));
        if (!reqs)
                return st_fail(err, ST_ENOMEM, "civitai: out of memory");
        for (size_t i = 0; i < n; i++) {
                reqs[i].url = civitai_images_url(a, src->base_url, out->need_images[i]);
                if (!reqs[i].url) {
                        rc = st_fail(err, ST_ENOMEM, "civitai: arena full");
                        goto out_reqs;
                }
                reqs[i].max_body = CIVITAI_IMAGES_MAX_BODY;
                reqs[i].content_type = "application/json";
                reqs[i].token = src->token;
        }
        rc = fetcher_run(f, reqs, n);
        if (rc) {
                /* The whole page runs again later rather than store records without prompts. */
                rc = st_fail(err, rc, "civitai: images calls broke down: %s", st_strerror(rc));
                goto out_reqs;
        }
        for (size_t i = 0; i < n; i++) {
                struct st_raw_record *r = &out->records[out->need_images_record[i]];
                int applied = apply_images(a, &reqs[i], r);

                if (applied < 0) {
                        rc = st_fail(err, applied, "civitai: arena full");
                        goto out_reqs;
                }
                if (applied == IMAGES_FAILED) {
                        /*
                         * A record without its prompts would differ from the true one
                         * and replace it; leave it out: the next pass takes it again.
                         */
                        r->id = NULL;
                        out->n_errors++;
                        out->n_dropped++;
                        continue;
                }
                out->n_images_filled += (size_t)applied;
        }
        drop_unnamed(out);
out_reqs:
        for (size_t i = 0; i < n; i++)
                fetch_request_release(&reqs[i]);
        free(reqs);
        return rc;
}

/* ---- the validator cache ---- */

/* Length of "civitai:<modelId>" at the start of a record id. */
static size_t model_part(const char *id)
{
        return strcspn(id, "@");
}

static bool same_model(const char *a, const char *b)
{
        size_t n = model_part(a);

        return n == model_part(b) && strncmp(a, b, n) == 0;
}

/* "civitai:model:<modelId>" of a record id "civitai:<modelId>@<versionId>". */
static char *model_key(struct arena *a, const char *record_id)
{
        static const char prefix[] = "civitai:";
        size_t n = model_part(record_id);

        if (n < sizeof(prefix) || strncmp(record_id, prefix, sizeof(prefix) - 1) != 0)
                return NULL;
        return arena_printf(a, "civitai:model:%.*s", (int)(n - (sizeof(prefix) - 1)),
                            record_id + sizeof(prefix) - 1);
}

/*
 * Compare the n records of one model with its item entry, write the entry
 * when they differ, and give vr[i] the hashes of r[i].  True when every
 * record is known (driver_record_known).
 */
static bool remember_model(struct validator_cache *c, struct arena *a,
                           const struct st_raw_record *r, size_t n, struct validator_record *vr)
{
        struct validator_entry old, fresh = {0};
        char *key = model_key(a, r[0].id);
        bool known = true;

        if (!key)
                return false;
        for (size_t i = 0; i < n; i++)
                if (driver_validator_record(a, &r[i], &vr[i]))
                        return false;
        if (validator_cache_get(c, key, a, &old))
                memset(&old, 0, sizeof(old));
        for (size_t i = 0; i < n; i++)
                known = known && driver_record_known(&old, &r[i], vr[i].stable_hash);
        if (!driver_entry_same(&old, vr, n)) {
                fresh.records = vr;
                fresh.n_records = n;
                driver_cache_put(c, key, &fresh);
        }
        return known;
}

/*
 * Let the cache learn every model of out (its records are grouped by
 * model, in page order); vr gets each record's hashes.  True when the page
 * has records and every one is known.
 */
static bool remember_models(struct validator_cache *c, struct arena *a,
                            const struct civitai_page *out, struct validator_record *vr)
{
        bool all_known = out->n_records > 0;
        size_t start = 0;

        for (size_t i = 1; i <= out->n_records; i++) {
                bool known;

                if (i < out->n_records && same_model(out->records[i].id, out->records[start].id))
                        continue;
                known = remember_model(c, a, out->records + start, i - start, vr + start);
                all_known = all_known && known;
                start = i;
        }
        return all_known;
}

/* After a page answered 200 and was built: update the cache and decide whether to stop. */
static void remember_page(const struct civitai_source *src, struct arena *a, const char *url,
                          const struct fetch_result *res, enum crawl_pass pass,
                          struct civitai_page *out)
{
        struct validator_record *vr;
        bool all_known;

        if (!src->cache)
                return;
        vr = arena_calloc(a, out->n_records + 1, sizeof(*vr));
        if (!vr) {
                log_warn("civitai: arena full; page not cached");
                return;
        }
        all_known = remember_models(src->cache, a, out, vr);
        /* A page with records left out must be fetched in full next time. */
        if (out->n_dropped == 0)
                driver_remember_page(src->cache, url, res, out->next_cursor, vr, out->n_records);
        else
                all_known = false;
        out->stop = pass == CRAWL_PASS_INCREMENTAL && all_known;
}

/* A 304: the page stands for the records the cache says, and goes on where it said. */
static int answer_from_cache(const struct validator_entry *cached, enum crawl_pass pass,
                             struct arena *a, struct civitai_page *out, struct st_error *err)
{
        if (driver_entry_ids(a, cached, &out->unchanged, &out->n_unchanged))
                return st_fail(err, ST_ENOMEM, "civitai: arena full");
        out->next_cursor = cached->next_cursor;
        out->not_modified = true;
        out->stop = pass == CRAWL_PASS_INCREMENTAL && out->n_unchanged > 0;
        return 0;
}

/* ---- a page of a pass ---- */

int civitai_crawl_page(struct fetcher *f, const struct civitai_source *src, const char *cursor,
                       enum crawl_pass pass, struct arena *a, struct civitai_page *out,
                       struct st_error *err)
{
        struct validator_entry cached;
        struct fetch_request req = {0};
        char crawled_at[32];
        bool conditional;
        int rc;

        memset(out, 0, sizeof(*out));
        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "civitai: no base_url");
        req.url = civitai_models_url(a, src->base_url, cursor, src->page_limit);
        if (!req.url)
                return st_fail(err, ST_ENOMEM, "civitai: arena full");
        req.max_body = CIVITAI_MODELS_MAX_BODY;
        req.content_type = "application/json";
        req.token = src->token;
        rc = driver_cached_page(src->cache, req.url, a, &cached);
        if (rc == ST_ENOMEM)
                return st_fail(err, rc, "civitai: arena full");
        conditional = rc == 0;
        if (conditional)
                driver_make_conditional(&req, &cached);
        rc = fetcher_run(f, &req, 1);
        if (rc) {
                st_fail(err, rc, "civitai: fetcher failed on %s", req.url);
                goto out_req;
        }
        if (req.result.error.code) {
                rc = req.result.error.code;
                if (err)
                        *err = req.result.error;
                goto out_req;
        }
        if (req.result.status == 304) {
                rc = conditional ? answer_from_cache(&cached, pass, a, out, err)
                                 : st_fail(err, ST_EPROTO,
                                           "civitai: 304 to %s, asked without "
                                           "a validator",
                                           req.url);
                goto out_req;
        }
        driver_utc_now(crawled_at);
        rc = civitai_parse_models_page(req.result.body, req.result.body_len, src->base_url,
                                       crawled_at, a, out, err);
        if (rc == 0 && out->n_need_images > 0)
                rc = fill_images(f, src, a, out, err);
        if (rc == 0)
                remember_page(src, a, req.url, &req.result, pass, out);
out_req:
        fetch_request_release(&req);
        return rc;
}

/* ---- duplicates: which version owns a file ---- */

int civitai_parse_version(const char *json, size_t len, struct arena *a, char **record_id,
                          struct st_error *err)
{
        json_int_t id, model;
        json_t *root;
        int rc;

        *record_id = NULL;
        rc = driver_load_json(json, len, CIVITAI_VERSION_MAX_JSON_VALUES, "civitai model version",
                              &root, err);
        if (rc)
                return rc;
        if (!json_is_object(root))
                rc = st_fail(err, ST_ETYPE, "civitai model version: top level is not an object");
        else if (!get_id(json_object_get(root, "id"), &id) ||
                 !get_id(json_object_get(root, "modelId"), &model))
                rc = st_fail(err, ST_ETYPE,
                             "civitai model version: 'id' and 'modelId' must be positive integers");
        else if (!(*record_id =
                       arena_printf(a, "civitai:%lld@%lld", (long long)model, (long long)id)))
                rc = st_fail(err, ST_ENOMEM, "civitai: arena full");
        json_decref(root);
        return rc;
}

/* The index of the first of hashes[0..i] equal to hashes[i]. */
static size_t first_same(char *const *hashes, size_t i)
{
        size_t j = 0;

        while (strcmp(hashes[j], hashes[i]) != 0)
                j++;
        return j;
}

/* The record id one by-hash request answered: NULL on 404/410, else parsed. */
static int by_hash_answer(const struct fetch_request *req, const char *hash, struct arena *a,
                          char **id, struct st_error *err)
{
        struct st_error perr = {0, ""};
        int rc;

        *id = NULL;
        if (req->result.error.code == ST_ENOTFOUND)
                return 0;
        if (req->result.error.code) {
                if (err)
                        *err = req->result.error;
                return req->result.error.code;
        }
        rc = civitai_parse_version(req->result.body, req->result.body_len, a, id, &perr);
        if (rc)
                return st_fail(err, rc, "civitai by-hash %s: %s", hash, perr.msg);
        return 0;
}

int civitai_resolve_hashes(struct fetcher *f, const struct civitai_source *src, char *const *hashes,
                           size_t n, struct arena *a, char **ids, struct st_error *err)
{
        struct fetch_request *reqs = NULL;
        size_t *req_of, n_reqs = 0; /* req_of[i]: the request that asks hashes[i] */
        int rc = 0;

        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "civitai: no base_url");
        if (n == 0 || n > CIVITAI_MAX_HASHES)
                return st_fail(err, ST_EINVAL, "civitai by_hash: %zu hashes, want 1..%d", n,
                               CIVITAI_MAX_HASHES);
        for (size_t i = 0; i < n; i++) {
                ids[i] = NULL;
                if (!is_hex64(hashes[i]))
                        return st_fail(err, ST_EINVAL,
                                       "civitai by_hash: '%.80s' is not a SHA256 (64 hex digits)",
                                       hashes[i]);
        }
        req_of = arena_calloc(a, n, sizeof(*req_of));
        reqs = calloc(n, sizeof(*reqs));
        if (!req_of || !reqs) {
                rc = st_fail(err, ST_ENOMEM, "civitai: out of memory");
                goto out_reqs;
        }
        for (size_t i = 0; i < n; i++) {
                size_t same = first_same(hashes, i);
                struct fetch_request *req = &reqs[n_reqs];

                if (same < i) {
                        req_of[i] = req_of[same];
                        continue;
                }
                req_of[i] = n_reqs++;
                req->url = civitai_by_hash_url(a, src->base_url, hashes[i]);
                if (!req->url) {
                        rc = st_fail(err, ST_ENOMEM, "civitai: arena full");
                        goto out_reqs;
                }
                req->max_body = CIVITAI_VERSION_MAX_BODY;
                req->content_type = "application/json";
                req->token = src->token;
        }
        rc = fetcher_run(f, reqs, n_reqs);
        if (rc) {
                rc = st_fail(err, rc, "civitai: by-hash requests broke down: %s", st_strerror(rc));
                goto out_reqs;
        }
        for (size_t i = 0; i < n && rc == 0; i++)
                if (first_same(hashes, i) == i)
                        rc = by_hash_answer(&reqs[req_of[i]], hashes[i], a, &ids[i], err);
        for (size_t i = 0; i < n && rc == 0; i++)
                ids[i] = ids[first_same(hashes, i)];
out_reqs:
        for (size_t k = 0; reqs && k < n_reqs; k++)
                fetch_request_release(&reqs[k]);
        free(reqs);
        return rc;
}

/* ---- checks ---- */

/* A positive decimal integer below 2^63 at *s, advancing *s. */
static bool read_id(const char **s, uint64_t *out)
{
        uint64_t v = 0;
        const char *p = *s;

        for (; *p >= '0' && *p <= '9'; p++) {
                if (v > (INT64_MAX - 9) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*p - '0');
        }
        if (p == *s || v == 0)
                return false;
        *s = p;
        *out = v;
        return true;
}

/* "civitai:<modelId>@<versionId>". */
static bool parse_check_id(const char *id, uint64_t *model, uint64_t *version)
{
        const char *p = id;

        if (strncmp(p, "civitai:", 8) != 0)
                return false;
        p += 8;
        if (!read_id(&p, model) || *p++ != '@' || !read_id(&p, version))
                return false;
        return *p == '\0';
}

static bool has_version(const json_t *model, uint64_t version)
{
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(model, "modelVersions"), i, v)
        {
                const json_t *id = json_object_get(v, "id");

                if (json_is_integer(id) && (uint64_t)json_integer_value(id) == version)
                        return true;
        }
        return false;
}

/* The distinct models of a check and what their requests brought back. */
struct check_models {
        uint64_t *ids; /* n distinct model ids */
        size_t n;
        size_t *of;                 /* of[i]: index in ids of the check's id i */
        uint64_t *versions;         /* versions[i]: version of the check's id i */
        struct fetch_request *reqs; /* reqs[k]: GET of ids[k] (malloc'd) */
        json_t **roots; /* roots[k]: model k's JSON (borrowed from items), NULL if gone */
        json_t *items;  /* every model that answered, as a page's items */
};

static int plan_check(struct arena *a, char *const *ids, size_t n, struct check_models *m,
                      struct st_error *err)
{
        m->ids = arena_calloc(a, n, sizeof(*m->ids));
        m->of = arena_calloc(a, n, sizeof(*m->of));
        m->versions = arena_calloc(a, n, sizeof(*m->versions));
        m->roots = arena_calloc(a, n, sizeof(*m->roots));
        if (!m->ids || !m->of || !m->versions || !m->roots)
                return st_fail(err, ST_ENOMEM, "civitai: arena full");
        for (size_t i = 0; i < n; i++) {
                uint64_t model;
                size_t k;

                if (!parse_check_id(ids[i], &model, &m->versions[i]))
                        return st_fail(
                            err, ST_EINVAL,
                            "civitai check: '%.80s' is not civitai:<modelId>@<versionId>", ids[i]);
                for (k = 0; k < m->n && m->ids[k] != model; k++)
                        ;
                if (k == m->n)
                        m->ids[m->n++] = model;
                m->of[i] = k;
        }
        return 0;
}

/* GET every model at once; 0 when each answered 200 (loaded) or 404/410, else its error. */
static int fetch_models(struct fetcher *f, const struct civitai_source *src, struct arena *a,
                        struct check_models *m, struct st_error *err)
{
        int rc;

        m->reqs = calloc(m->n, sizeof(*m->reqs));
        m->items = json_array();
        if (!m->reqs || !m->items)
                return st_fail(err, ST_ENOMEM, "civitai: out of memory");
        for (size_t k = 0; k < m->n; k++) {
                m->reqs[k].url = civitai_model_url(a, src->base_url, m->ids[k]);
                if (!m->reqs[k].url)
                        return st_fail(err, ST_ENOMEM, "civitai: arena full");
                m->reqs[k].max_body = CIVITAI_MODELS_MAX_BODY;
                m->reqs[k].content_type = "application/json";
                m->reqs[k].token = src->token;
        }
        rc = fetcher_run(f, m->reqs, m->n);
        if (rc)
                return st_fail(err, rc, "civitai: model requests broke down: %s", st_strerror(rc));
        for (size_t k = 0; k < m->n; k++) {
                const struct fetch_result *res = &m->reqs[k].result;
                json_t *root;

                if (res->error.code == ST_ENOTFOUND)
                        continue;
                if (res->error.code) {
                        if (err)
                                *err = res->error;
                        return res->error.code;
                }
                rc = driver_load_json(res->body, res->body_len, CIVITAI_MAX_JSON_VALUES,
                                      "civitai model", &root, err);
                if (rc)
                        return rc;
                if (!json_is_object(root)) {
                        json_decref(root);
                        return st_fail(err, ST_ETYPE, "civitai model %llu: not an object",
                                       (unsigned long long)m->ids[k]);
                }
                if (json_array_append_new(m->items, root)) /* frees root on failure */
                        return st_fail(err, ST_ENOMEM, "civitai: out of memory");
                m->roots[k] = root;
        }
        return 0;
}

static const struct st_raw_record *find_record(const struct civitai_page *page, const char *id)
{
        for (size_t i = 0; i < page->n_records; i++)
                if (strcmp(page->records[i].id, id) == 0)
                        return &page->records[i];
        return NULL;
}

static bool already_placed(const struct driver_check *out, const char *id)
{
        for (size_t i = 0; i < out->n_records; i++)
                if (strcmp(out->records[i].id, id) == 0)
                        return true;
        for (size_t i = 0; i < out->n_gone; i++)
                if (strcmp(out->gone[i], id) == 0)
                        return true;
        return false;
}

/* Put each checked id where it belongs (driver.h, struct driver_check). */
static void place_ids(char *const *ids, size_t n, const struct check_models *m,
                      const struct civitai_page *page, struct driver_check *out)
{
        for (size_t i = 0; i < n; i++) {
                const json_t *model = m->roots[m->of[i]];
                const struct st_raw_record *r;

                if (already_placed(out, ids[i]))
                        continue;
                if (!model || !has_version(model, m->versions[i]) ||
                    !eligible_type(short_string(model, "type"))) {
                        out->gone[out->n_gone++] = ids[i];
                        continue;
                }
                r = find_record(page, ids[i]);
                if (r) {
                        out->records[out->n_records++] = *r;
                } else {
                        log_warn("civitai check: %s: record not built this time; not verified",
                                 ids[i]);
                        out->n_unverified++;
                }
        }
}

/* The cache learns the models that answered and forgets the deleted ones. */
static void remember_check(const struct civitai_source *src, struct arena *a,
                           const struct check_models *m, const struct civitai_page *page)
{
        struct validator_record *vr;

        if (!src->cache)
                return;
        for (size_t k = 0; k < m->n; k++) {
                char *key = m->roots[k] ? NULL
                                        : arena_printf(a, "civitai:model:%llu",
                                                       (unsigned long long)m->ids[k]);

                if (key)
                        validator_cache_remove(src->cache, key);
        }
        vr = arena_calloc(a, page->n_records + 1, sizeof(*vr));
        if (vr)
                remember_models(src->cache, a, page, vr);
}

int civitai_check(struct fetcher *f, const struct civitai_source *src, char *const *ids, size_t n,
                  struct arena *a, struct driver_check *out, struct st_error *err)
{
        struct check_models m = {0};
        struct civitai_page page;
        struct parser p = {a, false};
        char crawled_at[32];
        int rc;

        memset(out, 0, sizeof(*out));
        memset(&page, 0, sizeof(page));
        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "civitai: no base_url");
        if (n == 0 || n > DRIVER_MAX_CHECK_IDS)
                return st_fail(err, ST_EINVAL, "civitai check: %zu ids, want 1..%d", n,
                               DRIVER_MAX_CHECK_IDS);
        rc = plan_check(a, ids, n, &m, err);
        if (rc == 0)
                rc = fetch_models(f, src, a, &m, err);
        if (rc)
                goto out_models;
        driver_utc_now(crawled_at);
        rc = parse_items(&p, m.items, src->base_url, crawled_at, &page, err);
        if (rc == 0 && page.n_need_images > 0)
                rc = fill_images(f, src, a, &page, err);
        if (rc)
                goto out_models;
        out->records = arena_calloc(a, n, sizeof(*out->records));
        out->gone = arena_calloc(a, n, sizeof(*out->gone));
        if (!out->records || !out->gone) {
                rc = st_fail(err, ST_ENOMEM, "civitai: arena full");
                goto out_models;
        }
        place_ids(ids, n, &m, &page, out);
        remember_check(src, a, &m, &page);
out_models:
        for (size_t k = 0; m.reqs && k < m.n; k++)
                fetch_request_release(&m.reqs[k]);
        free(m.reqs);
        json_decref(m.items);
        return rc;
}
