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
        if (len >= ST_LIMIT_TEXT) {
                len = ST_LIMIT_TEXT - 1;
                while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
                        len--;
        }
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

int civitai_parse_models_page(const char *json, size_t len, const char *base_url,
                              const char *crawled_at, struct arena *a, struct civitai_page *out,
                              struct st_error *err)
{
        struct parser p = {a, false};
        json_t *root, *items, *item;
        size_t i;
        int rc;

        memset(out, 0, sizeof(*out));
        rc = load_page(json, len, "models", &root, &items, err);
        if (rc)
                return rc;
        rc = allocate_page(&p, items, out);
        if (rc) {
                st_fail(err, rc, "civitai models page: arena full");
                goto out_root;
        }
        out->n_items = json_array_size(items);
        json_array_foreach(items, i, item)
        {
                parse_model(&p, item, i, base_url, crawled_at, out);
                if (p.out_of_memory)
                        break;
        }
        out->next_cursor = next_cursor(&p, root);
        if (p.out_of_memory)
                rc = st_fail(err, ST_ENOMEM, "civitai models page: arena full");
out_root:
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

static int fetch_models_page(struct fetcher *f, const struct civitai_source *src,
                             const char *cursor, struct arena *a, struct civitai_page *out,
                             struct st_error *err)
{
        struct fetch_request req = {0};
        char crawled_at[32];
        int rc;

        req.url = civitai_models_url(a, src->base_url, cursor, src->page_limit);
        if (!req.url)
                return st_fail(err, ST_ENOMEM, "civitai: arena full");
        req.max_body = CIVITAI_MODELS_MAX_BODY;
        req.content_type = "application/json";
        req.token = src->token;
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
        driver_utc_now(crawled_at);
        rc = civitai_parse_models_page(req.result.body, req.result.body_len, src->base_url,
                                       crawled_at, a, out, err);
out_req:
        fetch_request_release(&req);
        return rc;
}

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

int civitai_crawl_page(struct fetcher *f, const struct civitai_source *src, const char *cursor,
                       struct arena *a, struct civitai_page *out, struct st_error *err)
{
        int rc;

        memset(out, 0, sizeof(*out));
        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "civitai: no base_url");
        rc = fetch_models_page(f, src, cursor, a, out, err);
        if (rc)
                return rc;
        if (out->n_need_images == 0)
                return 0;
        return fill_images(f, src, a, out, err);
}
