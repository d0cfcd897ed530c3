/*
 * hf.c - Hugging Face /api/models listing pages and model cards to
 * raw_records.  The listings and the field mapping are the tables in hf.h.
 */
#include "crawler/hf.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "crawler/driver.h"
#include "proto/log.h"

#define REPO_PART_MAX 96 /* the Hub's limit on a user or repo name */
#define SHA_LENGTH    40

/* One page (or one card) being turned into records. */
struct parser {
        struct arena *a;
        const char *base_url;
        int base_len; /* base_url without trailing slashes */
        enum hf_listing listing;
        const char *crawled_at;
        bool out_of_memory;
};

static void *note_alloc(struct parser *p, void *ptr)
{
        if (!ptr)
                p->out_of_memory = true;
        return ptr;
}

static char *copy(struct parser *p, const char *s)
{
        return s ? note_alloc(p, arena_strdup(p->a, s)) : NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), k = strlen(suffix);

        return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* ---- URLs ---- */

static const char *listing_param(enum hf_listing listing)
{
        return listing == HF_LISTING_LORA_NAME ? "search=lora" : "filter=lora";
}

char *hf_models_url(struct arena *a, const char *base_url, enum hf_listing listing,
                    enum crawl_pass pass, int limit)
{
        if (limit < 1 || limit > HF_MAX_PAGE_LIMIT)
                limit = HF_DEFAULT_PAGE_LIMIT;
        return arena_printf(a,
                            "%.*s/api/models?%s&pipeline_tag=text-to-image&full=true"
                            "&sort=%s&direction=-1&limit=%d",
                            driver_base_length(base_url), base_url, listing_param(listing),
                            pass == CRAWL_PASS_INCREMENTAL ? "lastModified" : "createdAt", limit);
}

/* Does the query (starting at its '?') hold the parameter pair "k=v"? */
static bool has_param(const char *query, const char *pair)
{
        size_t n = strlen(pair);

        for (const char *p = query; p; p = strchr(p + 1, '&'))
                if (strncmp(p + 1, pair, n) == 0 && (p[1 + n] == '&' || p[1 + n] == '\0'))
                        return true;
        return false;
}

/* Is url a page of one of our listings under base_url?  Which one, in *listing. */
static bool cursor_listing(const char *base_url, const char *url, enum hf_listing *listing)
{
        static const char path[] = "/api/models?";
        int n = driver_base_length(base_url);
        const char *query;

        if (strncmp(url, base_url, (size_t)n) != 0 || strncmp(url + n, path, sizeof(path) - 1))
                return false;
        query = url + n + sizeof(path) - 2;
        if (has_param(query, listing_param(HF_LISTING_LORA_TAG)))
                *listing = HF_LISTING_LORA_TAG;
        else if (has_param(query, listing_param(HF_LISTING_LORA_NAME)))
                *listing = HF_LISTING_LORA_NAME;
        else
                return false;
        return true;
}

/*
 * A repo-relative path as a URL path: each segment percent-encoded, '/'
 * kept.  NULL when it is not a plain relative path (empty, absolute, an
 * empty, "." or ".." segment, a control character) or the arena is full.
 */
static char *encode_path(struct parser *p, const char *path)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t len = strlen(path), o = 0, segment = 0;
        char *out;

        if (len == 0 || len >= ST_LIMIT_STRING)
                return NULL;
        out = note_alloc(p, arena_alloc(p->a, len * 3 + 1));
        if (!out)
                return NULL;
        for (size_t i = 0; i <= len; i++) {
                unsigned char c = (unsigned char)path[i];

                if (c == '/' || c == '\0') {
                        size_t n = i - segment;

                        if (n == 0 || (n == 1 && path[segment] == '.') ||
                            (n == 2 && path[segment] == '.' && path[segment + 1] == '.'))
                                return NULL;
                        segment = i + 1;
                        out[o++] = (char)c;
                } else if (c < 0x20 || c == 0x7F) {
                        return NULL;
                } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
                        out[o++] = (char)c;
                } else {
                        out[o++] = '%';
                        out[o++] = hex[c >> 4];
                        out[o++] = hex[c & 15];
                }
        }
        return out;
}

/* "<base>/<repo>/resolve/<sha>/<path>", or NULL (see encode_path; or too long). */
static char *resolve_url(struct parser *p, const struct hf_repo *repo, const char *path)
{
        char *encoded = encode_path(p, path), *url;

        if (!encoded)
                return NULL;
        url = note_alloc(p, arena_printf(p->a, "%.*s/%s/resolve/%s/%s", p->base_len, p->base_url,
                                         repo->repo_id, repo->sha, encoded));
        return url && strlen(url) < ST_LIMIT_STRING ? url : NULL;
}

/* A widget's output.url as an image URL: absolute http(s) kept, repo-relative resolved. */
static char *widget_image_url(struct parser *p, const struct hf_repo *repo, const char *url)
{
        const char *colon = strchr(url, ':'), *slash = strchr(url, '/');

        if (strncasecmp(url, "https://", 8) == 0 || strncasecmp(url, "http://", 7) == 0)
                return copy(p, url);
        if (colon && (!slash || colon < slash))
                return NULL; /* data:, javascript: and other schemes */
        while (strncmp(url, "./", 2) == 0)
                url += 2;
        return resolve_url(p, repo, url);
}

/* ---- the listing item ---- */

static bool valid_repo_part(const char *s, size_t n)
{
        if (n == 0 || n > REPO_PART_MAX)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];

                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.'))
                        return false;
                if (c == '.' && i + 1 < n && s[i + 1] == '.')
                        return false;
        }
        return true;
}

static bool valid_repo_id(const char *id)
{
        const char *slash = id ? strchr(id, '/') : NULL;

        return slash && valid_repo_part(id, (size_t)(slash - id)) &&
               valid_repo_part(slash + 1, strlen(slash + 1));
}

static bool valid_sha(const char *s)
{
        size_t i;

        for (i = 0; s && s[i]; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return i == SHA_LENGTH;
}

static bool has_tag(const json_t *tags, const char *tag)
{
        size_t i;
        const json_t *t;

        json_array_foreach(tags, i, t)
        {
                if (json_is_string(t) && strcasecmp(json_string_value(t), tag) == 0)
                        return true;
        }
        return false;
}

static bool strv_has(const struct st_strv *sv, const char *s)
{
        for (size_t i = 0; i < sv->n; i++)
                if (strcasecmp(sv->v[i], s) == 0)
                        return true;
        return false;
}

/* Repo id and sha of an item; false when it has no usable ones (logged). */
static bool read_repo(struct parser *p, const json_t *item, size_t index, struct hf_repo *repo)
{
        const char *id = driver_json_string(item, "id");
        const char *sha = driver_json_string(item, "sha");
        const json_t *siblings = json_object_get(item, "siblings");
        size_t i;
        const json_t *s;

        memset(repo, 0, sizeof(*repo));
        if (!json_is_object(item) || !valid_repo_id(id)) {
                log_warn("hf: item %zu dropped: no user/repo id", index);
                return false;
        }
        if (!valid_sha(sha)) {
                log_warn("hf: %s dropped: no 40-hex sha", id);
                return false;
        }
        repo->repo_id = copy(p, id);
        repo->sha = copy(p, sha);
        repo->lora_tagged = has_tag(json_object_get(item, "tags"), "lora");
        json_array_foreach(siblings, i, s)
        {
                const char *name = driver_json_string(s, "rfilename");

                if (name && strcmp(name, "README.md") == 0) {
                        repo->readme_url = resolve_url(p, repo, name);
                        break;
                }
        }
        return true;
}

/* Why the repo must not be crawled, or NULL. */
static char *skip_reason(struct parser *p, const json_t *item)
{
        const json_t *gated = json_object_get(item, "gated");

        if (json_is_true(json_object_get(item, "disabled")))
                return copy(p, "disabled");
        if (json_is_true(json_object_get(item, "private")))
                return copy(p, "private");
        if (!gated || json_is_false(gated) || json_is_null(gated))
                return NULL;
        if (json_is_string(gated) && (strcmp(json_string_value(gated), "auto") == 0 ||
                                      strcmp(json_string_value(gated), "manual") == 0))
                return note_alloc(p, arena_printf(p->a, "gated:%s", json_string_value(gated)));
        return copy(p, "gated");
}

/* "rim-light_lora" -> "Rim Light LoRA". */
static char *pretty_name(struct parser *p, const char *repo_id)
{
        char *name = copy(p, strchr(repo_id, '/') + 1), *word;

        if (!name)
                return NULL;
        for (char *c = name; *c; c++)
                if (*c == '-' || *c == '_')
                        *c = ' ';
        for (word = name; *word; word++) {
                if (*word == ' ' || (word > name && word[-1] != ' '))
                        continue;
                if (strncasecmp(word, "lora", 4) == 0 && (word[4] == ' ' || word[4] == '\0'))
                        memcpy(word, "LoRA", 4);
                else if (*word >= 'a' && *word <= 'z')
                        *word = (char)(*word - 'a' + 'A');
        }
        return name;
}

/* Listing tags without the machine ones (base_model:*, region:*). */
static struct st_strv listing_tags(struct parser *p, const json_t *tags)
{
        struct st_strv sv = {NULL, 0};
        size_t n = json_array_size(tags), i;
        const json_t *t;

        if (n == 0)
                return sv;
        if (n > ST_LIMIT_ARRAY)
                n = ST_LIMIT_ARRAY;
        sv.v = note_alloc(p, arena_calloc(p->a, n, sizeof(*sv.v)));
        if (!sv.v)
                return sv;
        json_array_foreach(tags, i, t)
        {
                const char *s = json_string_value(t);

                if (sv.n == n)
                        break;
                if (!s || !*s || strlen(s) >= ST_LIMIT_STRING ||
                    json_string_length(t) != strlen(s) || strncmp(s, "base_model:", 11) == 0 ||
                    strncmp(s, "region:", 7) == 0)
                        continue;
                sv.v[sv.n++] = copy(p, s);
        }
        return sv;
}

/* The adapter's base model from the listing tags: base_model:adapter:<id>, else base_model:<id>. */
static const char *listing_base_model(const json_t *tags)
{
        const char *plain = NULL;
        size_t i;
        const json_t *t;

        json_array_foreach(tags, i, t)
        {
                const char *s = json_string_value(t);

                if (!s || strncmp(s, "base_model:", 11) != 0 || strlen(s) >= ST_LIMIT_STRING)
                        continue;
                s += 11;
                if (strncmp(s, "adapter:", 8) == 0 && s[8])
                        return s + 8;
                if (!plain && *s && !strchr(s, ':'))
                        plain = s;
        }
        return plain;
}

static uint64_t count_member(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);
        double d;

        if (json_is_integer(v))
                return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
        if (!json_is_real(v))
                return 0;
        d = json_real_value(v);
        if (!isfinite(d) || d < 0)
                return 0;
        return d >= 9223372036854774784.0 ? INT64_MAX : (uint64_t)(d + 0.5);
}

static char *lfs_sha256(struct parser *p, const json_t *sibling)
{
        const char *s = driver_json_string(json_object_get(sibling, "lfs"), "sha256");
        char *out;

        if (!s || strlen(s) != 64 || strspn(s, "0123456789abcdefABCDEF") != 64)
                return NULL;
        out = copy(p, s);
        for (char *c = out; c && *c; c++)
                if (*c >= 'A' && *c <= 'F')
                        *c = (char)(*c - 'A' + 'a');
        return out;
}

static bool is_image_name(const char *name)
{
        return ends_with(name, ".png") || ends_with(name, ".jpg") || ends_with(name, ".jpeg") ||
               ends_with(name, ".webp");
}

static size_t count_siblings(const json_t *siblings, const char *suffix)
{
        size_t n = 0, i;
        const json_t *s;

        json_array_foreach(siblings, i, s)
        {
                const char *name = driver_json_string(s, "rfilename");

                if (name && (suffix ? ends_with(name, suffix) : is_image_name(name)))
                        n++;
        }
        return n;
}

/* Files: every .safetensors sibling whose path makes a URL. */
static void read_files(struct parser *p, const struct hf_repo *repo, const json_t *siblings,
                       struct st_raw_record *r)
{
        size_t n = count_siblings(siblings, ".safetensors"), i;
        const json_t *s;

        if (n == 0)
                return;
        if (n > ST_LIMIT_ARRAY)
                n = ST_LIMIT_ARRAY;
        r->files = note_alloc(p, arena_calloc(p->a, n, sizeof(*r->files)));
        if (!r->files)
                return;
        json_array_foreach(siblings, i, s)
        {
                const char *name = driver_json_string(s, "rfilename");
                struct st_file *file = &r->files[r->n_files];

                if (r->n_files == n)
                        break;
                if (!name || !ends_with(name, ".safetensors"))
                        continue;
                file->download_url = resolve_url(p, repo, name);
                if (!file->download_url)
                        continue;
                file->name = copy(p, name);
                file->size = count_member(s, "size");
                file->sha256 = lfs_sha256(p, s);
                r->n_files++;
        }
}

/* Images of a card-less record: the image siblings, without prompts. */
static void read_sibling_images(struct parser *p, const struct hf_repo *repo,
                                const json_t *siblings, struct st_raw_record *r)
{
        size_t n = count_siblings(siblings, NULL), i;
        const json_t *s;

        if (n == 0)
                return;
        if (n > HF_MAX_IMAGES)
                n = HF_MAX_IMAGES;
        r->images = note_alloc(p, arena_calloc(p->a, n, sizeof(*r->images)));
        if (!r->images)
                return;
        json_array_foreach(siblings, i, s)
        {
                const char *name = driver_json_string(s, "rfilename");

                if (r->n_images == n)
                        break;
                if (!name || !is_image_name(name))
                        continue;
                r->images[r->n_images].url = resolve_url(p, repo, name);
                if (r->images[r->n_images].url)
                        r->n_images++;
        }
}

static void set_base_model(struct parser *p, const char *raw, struct st_raw_record *r)
{
        r->base_model_raw = copy(p, raw);
        r->base_model = copy(p, st_base_model_normalize(raw));
}

/* r from the listing item alone; false when the arena is full. */
static bool listing_record(struct parser *p, const json_t *item, const struct hf_repo *repo,
                           struct st_raw_record *r)
{
        const json_t *tags = json_object_get(item, "tags");
        const json_t *siblings = json_object_get(item, "siblings");
        const char *author = driver_json_string(item, "author");

        memset(r, 0, sizeof(*r));
        r->id = note_alloc(p, arena_printf(p->a, "hf:%s@%s", repo->repo_id, repo->sha));
        r->source = "hf";
        r->name = pretty_name(p, repo->repo_id);
        r->type = "LORA";
        set_base_model(p, listing_base_model(tags), r);
        r->card_url =
            note_alloc(p, arena_printf(p->a, "%.*s/%s", p->base_len, p->base_url, repo->repo_id));
        r->creator =
            author ? copy(p, author)
                   : note_alloc(p, arena_strndup(p->a, repo->repo_id, strcspn(repo->repo_id, "/")));
        r->tags = listing_tags(p, tags);
        r->nsfw = has_tag(tags, "not-for-all-audiences");
        r->stats.downloads = count_member(item, "downloads");
        r->stats.likes = count_member(item, "likes");
        read_files(p, repo, siblings, r);
        read_sibling_images(p, repo, siblings, r);
        r->created_at = copy(p, driver_json_string(item, "createdAt"));
        r->updated_at = copy(p, driver_json_string(item, "lastModified"));
        r->crawled_at = copy(p, p->crawled_at);
        return !p->out_of_memory;
}

static void add_skip(struct hf_page *out, const struct hf_repo *repo, char *reason)
{
        struct hf_skip *s = &out->skipped[out->n_skipped_gated++];

        s->repo_id = repo->repo_id;
        s->reason = reason;
        log_info("hf: %s skipped: %s", repo->repo_id, reason);
}

static void parse_repo(struct parser *p, const json_t *item, size_t index, struct hf_page *out)
{
        struct hf_repo repo;
        struct st_raw_record r;
        char *reason;
        int rc;

        if (!read_repo(p, item, index, &repo)) {
                out->n_errors++;
                return;
        }
        if (p->listing == HF_LISTING_LORA_NAME && repo.lora_tagged) {
                log_debug("hf: %s skipped: tagged lora, so in the tag listing", repo.repo_id);
                out->n_skipped++;
                return;
        }
        reason = skip_reason(p, item);
        if (reason) {
                add_skip(out, &repo, reason);
                return;
        }
        if (!listing_record(p, item, &repo, &r))
                return;
        if (r.n_files == 0) {
                log_debug("hf: %s skipped: no .safetensors file", repo.repo_id);
                out->n_skipped++;
                return;
        }
        rc = driver_seal_record(p->a, &r);
        if (rc) {
                if (rc == ST_ENOMEM)
                        p->out_of_memory = true;
                log_warn("hf: %s dropped: %s", r.id, st_strerror(rc));
                out->n_errors++;
                return;
        }
        out->records[out->n_records] = r;
        out->repos[out->n_records] = repo;
        out->n_records++;
}

/* The records of every repo of the array root, into out (zeroed by the caller). */
static int parse_items(struct parser *p, const json_t *root, struct hf_page *out,
                       struct st_error *err)
{
        const json_t *item;
        size_t i, n;

        out->n_items = json_array_size(root);
        n = out->n_items < HF_MAX_RECORDS ? out->n_items : HF_MAX_RECORDS;
        if (n > 0) {
                out->records = arena_calloc(p->a, n, sizeof(*out->records));
                out->repos = arena_calloc(p->a, n, sizeof(*out->repos));
                out->skipped = arena_calloc(p->a, n, sizeof(*out->skipped));
                p->out_of_memory = !out->records || !out->repos || !out->skipped;
        }
        json_array_foreach(root, i, item)
        {
                if (p->out_of_memory)
                        break;
                if (i == n) {
                        log_warn("hf: repos past %d on one page dropped", HF_MAX_RECORDS);
                        out->n_errors += out->n_items - n;
                        break;
                }
                parse_repo(p, item, i, out);
        }
        return p->out_of_memory ? st_fail(err, ST_ENOMEM, "hf models page: arena full") : 0;
}

int hf_parse_models_page(const char *json, size_t len, const char *base_url,
                         enum hf_listing listing, const char *crawled_at, struct arena *a,
                         struct hf_page *out, struct st_error *err)
{
        struct parser p = {a, base_url, driver_base_length(base_url), listing, crawled_at, false};
        json_t *root;
        int rc;

        memset(out, 0, sizeof(*out));
        rc = driver_load_json(json, len, HF_MAX_JSON_VALUES, "hf models page", &root, err);
        if (rc)
                return rc;
        if (json_is_array(root))
                rc = parse_items(&p, root, out, err);
        else
                rc = st_fail(err, ST_ETYPE, "hf models page: top level is not an array");
        json_decref(root);
        return rc;
}

/* ---- the card ---- */

static void apply_tags(struct parser *p, const struct hf_card *card, struct st_raw_record *r)
{
        size_t n = card->tags.n ? card->tags.n : r->tags.n;
        char **v;

        if (card->tags.n)
                r->tags = card->tags;
        r->nsfw = r->nsfw || strv_has(&card->tags, "not-for-all-audiences");
        if (!card->license || n >= ST_LIMIT_ARRAY)
                return;
        v = note_alloc(p, arena_calloc(p->a, n + 1, sizeof(*v)));
        if (!v)
                return;
        if (n)
                memcpy(v, r->tags.v, n * sizeof(*v));
        v[n] = note_alloc(p, arena_printf(p->a, "license:%s", card->license));
        r->tags.v = v;
        r->tags.n = v[n] && strlen(v[n]) < ST_LIMIT_STRING && !strv_has(&r->tags, v[n]) ? n + 1 : n;
}

static void apply_widgets(struct parser *p, const struct hf_repo *repo, const struct hf_card *card,
                          struct st_raw_record *r)
{
        struct st_image *images;
        size_t n = 0;

        if (card->n_widgets == 0)
                return;
        images = note_alloc(p, arena_calloc(p->a, HF_MAX_IMAGES, sizeof(*images)));
        if (!images)
                return;
        for (size_t i = 0; i < card->n_widgets && n < HF_MAX_IMAGES; i++) {
                const struct hf_widget *w = &card->widgets[i];

                if (!w->url)
                        continue;
                images[n].url = widget_image_url(p, repo, w->url);
                images[n].prompt = w->text;
                if (images[n].url)
                        n++;
        }
        if (n > 0) {
                r->images = images;
                r->n_images = n;
        }
}

int hf_apply_card(struct arena *a, const char *base_url, const struct hf_repo *repo,
                  const struct hf_card *card, struct st_raw_record *r, struct st_error *err)
{
        struct parser p = {a,    base_url, driver_base_length(base_url), HF_LISTING_LORA_TAG,
                           NULL, false};
        int rc;

        if (card->title)
                r->name = card->title;
        if (card->body)
                r->card_html = card->body;
        if (card->base_models.n > 0)
                set_base_model(&p, card->base_models.v[0], r);
        if (card->instance_prompt) {
                r->trained_words.v = note_alloc(&p, arena_calloc(a, 1, sizeof(char *)));
                if (r->trained_words.v) {
                        r->trained_words.v[0] = card->instance_prompt;
                        r->trained_words.n = 1;
                }
        }
        apply_tags(&p, card, r);
        apply_widgets(&p, repo, card, r);
        if (p.out_of_memory)
                return st_fail(err, ST_ENOMEM, "hf: %s: arena full", repo->repo_id);
        rc = driver_seal_record(a, r);
        if (rc)
                return st_fail(err, rc, "hf: %s: record not sealed: %s", repo->repo_id,
                               st_strerror(rc));
        return 0;
}

/* ---- crawling ---- */

/* Where the pass goes after this page: the Link target, else listing 2, else the end. */
static int next_cursor(struct arena *a, const struct hf_source *src, enum hf_listing listing,
                       enum crawl_pass pass, const char *next_url, struct hf_page *out,
                       struct st_error *err)
{
        enum hf_listing next_listing;

        if (next_url) {
                if (!cursor_listing(src->base_url, next_url, &next_listing) ||
                    next_listing != listing)
                        return st_fail(err, ST_EPROTO,
                                       "hf: Link rel=next leaves %.*s/api/models: %.200s",
                                       driver_base_length(src->base_url), src->base_url, next_url);
                out->next_cursor = arena_strdup(a, next_url);
        } else if (listing == HF_LISTING_LORA_TAG) {
                out->next_cursor =
                    hf_models_url(a, src->base_url, HF_LISTING_LORA_NAME, pass, src->page_limit);
        } else {
                return 0;
        }
        return out->next_cursor ? 0 : st_fail(err, ST_ENOMEM, "hf: arena full");
}

/* A README failure that retrying will not cure: too big, a bad redirect. */
static bool unreadable_as_is(int code)
{
        return code == ST_ETOOBIG || code == ST_EPROTO || code == ST_EINVAL;
}

enum readme_state {
        README_NONE,     /* the repo has none (404, or not listed): record from the listing */
        README_BODY,     /* read (or cached at this sha): body holds it */
        README_UNUSABLE, /* cannot be read as it is (too big, a bad redirect): listing alone */
        README_FAILED,   /* not read this time (network, 401, 429, 5xx): record dropped */
};

/* The README of one record: where it comes from and what it turned out to be. */
struct readme {
        struct validator_entry item; /* the repo's cache entry; zeroed when none */
        char *key;                   /* "hf:repo:<repo>"; NULL without a cache */
        bool from_cache;             /* built at this sha before: the cached README, no request */
        struct fetch_request *req;   /* its request, or NULL */
        enum readme_state state;
        const char *body;
        size_t body_len;
        const char *etag;          /* of the README response, remembered with it */
        const char *last_modified; /* likewise */
};

/* What a page's records tell the cache. */
struct page_memory {
        struct validator_record *vr; /* every record the page stands for, sent or unchanged */
        size_t n_vr;
        bool all_known; /* the page has records and the cache knew each one */
        bool complete;  /* no README failed or was unusable: the page may be remembered */
};

/* What becomes of a record once its card is read. */
enum fate { FATE_SEND, FATE_DROP, FATE_UNCHANGED };

/* Decide where repo's README comes from; a request takes the slot reqs[*n]. */
static int plan_readme(const struct hf_source *src, struct arena *a, const struct hf_repo *repo,
                       struct readme *rd, struct fetch_request *reqs, size_t *n)
{
        if (src->cache) {
                rd->key = arena_printf(a, "hf:repo:%s", repo->repo_id);
                if (!rd->key || validator_cache_get(src->cache, rd->key, a, &rd->item) == ST_ENOMEM)
                        return ST_ENOMEM;
        }
        if (rd->item.revision && strcmp(rd->item.revision, repo->sha) == 0) {
                rd->from_cache = true;
                return 0;
        }
        if (!repo->readme_url) {
                rd->state = README_NONE;
                return 0;
        }
        rd->req = &reqs[(*n)++];
        rd->req->url = repo->readme_url;
        rd->req->max_body = HF_README_MAX_BODY;
        rd->req->token = src->token;
        /* A new sha often keeps the README: its blob ETag then answers 304. */
        if (rd->item.has_body)
                driver_make_conditional(rd->req, &rd->item);
        return 0;
}

static void use_cached_readme(struct readme *rd)
{
        rd->state = rd->item.has_body ? README_BODY : README_NONE;
        rd->body = rd->item.body;
        rd->body_len = rd->item.body_len;
        rd->etag = rd->item.etag;
        rd->last_modified = rd->item.last_modified;
}

/* What the README turned out to be, after the run. */
static void settle_readme(struct readme *rd)
{
        const struct fetch_result *res = rd->req ? &rd->req->result : NULL;

        if (rd->from_cache) {
                use_cached_readme(rd);
                return;
        }
        if (!res)
                return;
        if (res->error.code == 0 && res->status == 304) {
                if (rd->item.has_body)
                        use_cached_readme(rd);
                else
                        rd->state = README_FAILED; /* a 304 we did not ask for */
        } else if (res->error.code == 0) {
                rd->state = README_BODY;
                rd->body = res->body ? res->body : "";
                rd->body_len = res->body_len;
                rd->etag = res->etag;
                rd->last_modified = res->last_modified;
        } else if (res->error.code == ST_ENOTFOUND) {
                rd->state = README_NONE;
        } else {
                rd->state = unreadable_as_is(res->error.code) ? README_UNUSABLE : README_FAILED;
        }
}

/*
 * Complete record i from its README: 0 to keep it, 1 to drop it, ST_ENOMEM
 * when the arena is full.  Every failure is counted and logged.
 */
static int finish_record(struct arena *a, const char *base_url, const struct readme *rd,
                         struct hf_page *out, size_t i)
{
        const struct hf_repo *repo = &out->repos[i];
        struct st_raw_record *r = &out->records[i];
        struct st_raw_record listing = *r; /* to fall back to */
        const char *why = rd->req ? rd->req->result.error.msg : "";
        struct st_error cerr = {0, ""};
        struct hf_card card;
        bool partial;
        int rc;

        switch (rd->state) {
        case README_NONE:
                if (rd->req || rd->from_cache)
                        log_info("hf: %s: no README; record from the listing alone", repo->repo_id);
                return 0;
        case README_UNUSABLE:
                log_warn("hf: %s: README unusable, record from the listing alone: %s",
                         repo->repo_id, why);
                out->n_errors++;
                return 0;
        case README_FAILED:
                log_warn("hf: %s: README not read, left for the next pass: %s", repo->repo_id,
                         why[0] ? why : "304 without a cached README");
                out->n_errors++;
                out->n_dropped++;
                return 1;
        case README_BODY:
                break;
        }
        rc = hf_parse_card(rd->body, rd->body_len, a, &card, &cerr);
        if (rc == ST_ENOMEM)
                return rc;
        partial = rc != 0;
        if (partial)
                log_warn("hf: %s: %s; record kept with the listing and the card text",
                         repo->repo_id, cerr.msg);
        rc = hf_apply_card(a, base_url, repo, &card, r, &cerr);
        if (rc == ST_ENOMEM)
                return rc;
        if (rc) {
                log_warn("hf: %s; record kept from the listing alone", cerr.msg);
                *r = listing;
                partial = true;
        } else {
                if (rd->etag && strlen(rd->etag) < ST_LIMIT_STRING)
                        r->etag = arena_strdup(a, rd->etag);
                out->n_cards++;
                out->n_cached_cards += rd->from_cache || (rd->req && rd->req->result.status == 304);
        }
        out->n_errors += partial;
        return 0;
}

/* The repo's entry after this crawl: its sha, its record, and the README as read. */
static void remember_repo(struct validator_cache *c, const struct hf_repo *repo,
                          const struct readme *rd, struct validator_record *vr)
{
        struct validator_entry e = {0};

        if (rd->from_cache && driver_entry_same(&rd->item, vr, 1))
                return; /* nothing new to write */
        e.revision = repo->sha;
        e.records = vr;
        e.n_records = 1;
        e.etag = (char *)rd->etag;
        e.last_modified = (char *)rd->last_modified;
        e.has_body = rd->state == README_BODY;
        e.body = (char *)rd->body;
        e.body_len = rd->body_len;
        driver_cache_put(c, rd->key, &e);
}

/*
 * Compare each kept record with its repo's cache entry: a record rebuilt
 * from the cached README at the sha the cache knows, with the content hash
 * it knows, moves to unchanged (when allow_unchanged).  Repos whose README
 * outcome is final are remembered.  Fills mem.
 */
static int remember_cards(const struct hf_source *src, struct arena *a, struct hf_page *out,
                          const struct readme *rds, enum fate *fate, bool allow_unchanged,
                          struct page_memory *mem)
{
        mem->vr = arena_calloc(a, out->n_records + 1, sizeof(*mem->vr));
        out->unchanged = arena_calloc(a, out->n_records + 1, sizeof(*out->unchanged));
        if (!mem->vr || !out->unchanged)
                return ST_ENOMEM;
        mem->all_known = out->n_records > 0;
        mem->complete = true;
        for (size_t i = 0; i < out->n_records; i++) {
                const struct readme *rd = &rds[i];
                struct st_raw_record *r = &out->records[i];
                struct validator_record *vr = &mem->vr[mem->n_vr];
                bool known;
                int rc;

                mem->complete =
                    mem->complete && rd->state != README_FAILED && rd->state != README_UNUSABLE;
                if (fate[i] == FATE_DROP) {
                        mem->all_known = false;
                        continue;
                }
                rc = driver_validator_record(a, r, vr);
                if (rc == ST_ENOMEM)
                        return rc;
                if (rc) {
                        mem->all_known = mem->complete = false;
                        continue;
                }
                mem->n_vr++;
                known = driver_record_known(&rd->item, r, vr->stable_hash);
                mem->all_known = mem->all_known && known;
                if (allow_unchanged && rd->from_cache && known &&
                    driver_entry_same(&rd->item, vr, 1)) {
                        fate[i] = FATE_UNCHANGED;
                        out->unchanged[out->n_unchanged++] = r->id;
                }
                if (rd->state == README_BODY || rd->state == README_NONE)
                        remember_repo(src->cache, &out->repos[i], rd, vr);
        }
        return 0;
}

/* Remove the records that are not sent, keeping the order of the rest. */
static void compact(struct hf_page *out, const enum fate *fate)
{
        size_t kept = 0;

        for (size_t i = 0; i < out->n_records; i++) {
                if (fate[i] != FATE_SEND)
                        continue;
                out->records[kept] = out->records[i];
                out->repos[kept] = out->repos[i];
                kept++;
        }
        out->n_records = kept;
}

/*
 * Complete every record of out from its README -- the cached one when the
 * cache built the repo at this sha, else fetched (conditionally when the
 * cache has the README of an older sha), all in one concurrent run -- then
 * compare with the cache (remember_cards) when there is one.
 */
static int read_cards(struct fetcher *f, const struct hf_source *src, struct arena *a,
                      struct hf_page *out, bool allow_unchanged, struct page_memory *mem,
                      struct st_error *err)
{
        size_t n = 0, n_records = out->n_records;
        struct fetch_request *reqs;
        struct readme *rds;
        enum fate *fate;
        int rc = 0;

        memset(mem, 0, sizeof(*mem));
        reqs = calloc(n_records, sizeof(*reqs));
        rds = calloc(n_records, sizeof(*rds));
        fate = calloc(n_records, sizeof(*fate));
        if (!reqs || !rds || !fate) {
                rc = st_fail(err, ST_ENOMEM, "hf: out of memory");
                goto out_free;
        }
        for (size_t i = 0; i < n_records; i++) {
                rc = plan_readme(src, a, &out->repos[i], &rds[i], reqs, &n);
                if (rc) {
                        st_fail(err, rc, "hf: arena full");
                        goto out_reqs;
                }
        }
        rc = n > 0 ? fetcher_run(f, reqs, n) : 0;
        if (rc) {
                st_fail(err, rc, "hf: README fetches broke down: %s", st_strerror(rc));
                goto out_reqs;
        }
        for (size_t i = 0; i < n_records; i++) {
                settle_readme(&rds[i]);
                rc = finish_record(a, src->base_url, &rds[i], out, i);
                if (rc < 0) {
                        st_fail(err, rc, "hf: arena full");
                        goto out_reqs;
                }
                fate[i] = rc == 1 ? FATE_DROP : FATE_SEND;
                rc = 0;
        }
        if (src->cache) {
                rc = remember_cards(src, a, out, rds, fate, allow_unchanged, mem);
                if (rc) {
                        st_fail(err, rc, "hf: arena full");
                        goto out_reqs;
                }
        }
        compact(out, fate);
out_reqs:
        for (size_t k = 0; k < n; k++)
                fetch_request_release(&reqs[k]);
out_free:
        free(fate);
        free(rds);
        free(reqs);
        return rc;
}

/* An incremental page where everything is known: on to listing 2, or the end of the pass. */
static int end_incremental(struct arena *a, const struct hf_source *src, enum hf_listing listing,
                           struct hf_page *out, struct st_error *err)
{
        if (listing == HF_LISTING_LORA_NAME) {
                out->stop = true;
                return 0;
        }
        out->next_cursor = hf_models_url(a, src->base_url, HF_LISTING_LORA_NAME,
                                         CRAWL_PASS_INCREMENTAL, src->page_limit);
        return out->next_cursor ? 0 : st_fail(err, ST_ENOMEM, "hf: arena full");
}

/* A 304: the page stands for the records the cache says and goes on where it said. */
static int answer_from_cache(const struct validator_entry *cached, struct arena *a,
                             struct hf_page *out, struct page_memory *mem, struct st_error *err)
{
        if (driver_entry_ids(a, cached, &out->unchanged, &out->n_unchanged))
                return st_fail(err, ST_ENOMEM, "hf: arena full");
        out->next_cursor = cached->next_cursor;
        out->not_modified = true;
        mem->all_known = out->n_unchanged > 0;
        return 0;
}

/* Fetch and build a listing page that answered 200, and remember it. */
static int build_page(struct fetcher *f, const struct hf_source *src, enum hf_listing listing,
                      enum crawl_pass pass, const struct fetch_request *req, struct arena *a,
                      struct hf_page *out, struct page_memory *mem, struct st_error *err)
{
        char crawled_at[32];
        int rc;

        driver_utc_now(crawled_at);
        rc = hf_parse_models_page(req->result.body, req->result.body_len, src->base_url, listing,
                                  crawled_at, a, out, err);
        if (rc == 0)
                rc = next_cursor(a, src, listing, pass, req->result.next_url, out, err);
        if (rc == 0 && out->n_records > 0)
                rc = read_cards(f, src, a, out, true, mem, err);
        else
                mem->complete = true;
        if (rc == 0 && mem->complete)
                driver_remember_page(src->cache, req->url, &req->result, out->next_cursor, mem->vr,
                                     mem->n_vr);
        return rc;
}

int hf_crawl_page(struct fetcher *f, const struct hf_source *src, const char *cursor,
                  enum crawl_pass pass, struct arena *a, struct hf_page *out, struct st_error *err)
{
        enum hf_listing listing = HF_LISTING_LORA_TAG;
        struct page_memory mem = {0};
        struct validator_entry cached;
        struct fetch_request req = {0};
        bool conditional;
        int rc;

        memset(out, 0, sizeof(*out));
        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "hf: no base_url");
        if (cursor && !cursor_listing(src->base_url, cursor, &listing))
                return st_fail(err, ST_EINVAL, "hf: cursor is not a listing of %.*s/api/models",
                               driver_base_length(src->base_url), src->base_url);
        req.url = cursor ? cursor : hf_models_url(a, src->base_url, listing, pass, src->page_limit);
        if (!req.url)
                return st_fail(err, ST_ENOMEM, "hf: arena full");
        req.max_body = HF_MODELS_MAX_BODY;
        req.content_type = "application/json";
        req.token = src->token;
        rc = driver_cached_page(src->cache, req.url, a, &cached);
        if (rc == ST_ENOMEM)
                return st_fail(err, rc, "hf: arena full");
        conditional = rc == 0;
        if (conditional)
                driver_make_conditional(&req, &cached);
        rc = fetcher_run(f, &req, 1);
        if (rc) {
                st_fail(err, rc, "hf: fetcher failed on %s", req.url);
                goto out_req;
        }
        if (req.result.error.code) {
                rc = req.result.error.code;
                if (err)
                        *err = req.result.error;
                goto out_req;
        }
        if (req.result.status == 304)
                rc = conditional ? answer_from_cache(&cached, a, out, &mem, err)
                                 : st_fail(err, ST_EPROTO,
                                           "hf: 304 to %s, asked without a "
                                           "validator",
                                           req.url);
        else
                rc = build_page(f, src, listing, pass, &req, a, out, &mem, err);
        if (rc == 0 && pass == CRAWL_PASS_INCREMENTAL && mem.all_known)
                rc = end_incremental(a, src, listing, out, err);
out_req:
        fetch_request_release(&req);
        return rc;
}

/* ---- checks ---- */

/* "hf:<user>/<repo>@<sha>" into repo and sha (in a): 0, ST_EINVAL or ST_ENOMEM. */
static int parse_check_id(struct arena *a, const char *id, char **repo, char **sha)
{
        const char *at = strrchr(id, '@');

        if (strncmp(id, "hf:", 3) != 0 || !at || at < id + 3)
                return ST_EINVAL;
        *repo = arena_strndup(a, id + 3, (size_t)(at - id - 3));
        *sha = arena_strdup(a, at + 1);
        if (!*repo || !*sha)
                return ST_ENOMEM;
        return valid_repo_id(*repo) && valid_sha(*sha) ? 0 : ST_EINVAL;
}

/* The distinct repos of a check and what their requests brought back. */
struct check_repos {
        char **ids; /* n distinct repo ids */
        size_t n;
        size_t *of;                 /* of[i]: index in ids of the check's id i */
        char **shas;                /* shas[i]: the sha of the check's id i */
        struct fetch_request *reqs; /* reqs[k]: GET /api/models/<ids[k]> (malloc'd) */
        json_t **roots;             /* roots[k]: its model info (borrowed), NULL when gone */
        json_t *items;              /* every info that answered, as a listing page */
        bool *placed;               /* placed[k]: repo k's record is in the answer */
};

static int plan_check(struct arena *a, char *const *ids, size_t n, struct check_repos *m,
                      struct st_error *err)
{
        m->ids = arena_calloc(a, n, sizeof(*m->ids));
        m->of = arena_calloc(a, n, sizeof(*m->of));
        m->shas = arena_calloc(a, n, sizeof(*m->shas));
        m->roots = arena_calloc(a, n, sizeof(*m->roots));
        m->placed = arena_calloc(a, n, sizeof(*m->placed));
        if (!m->ids || !m->of || !m->shas || !m->roots || !m->placed)
                return st_fail(err, ST_ENOMEM, "hf: arena full");
        for (size_t i = 0; i < n; i++) {
                char *repo;
                size_t k;
                int rc = parse_check_id(a, ids[i], &repo, &m->shas[i]);

                if (rc == ST_ENOMEM)
                        return st_fail(err, rc, "hf: arena full");
                if (rc)
                        return st_fail(err, rc, "hf check: '%.80s' is not hf:<user>/<repo>@<sha>",
                                       ids[i]);
                for (k = 0; k < m->n && strcmp(m->ids[k], repo) != 0; k++)
                        ;
                if (k == m->n)
                        m->ids[m->n++] = repo;
                m->of[i] = k;
        }
        return 0;
}

/* A repo the Hub no longer shows: 404 or 410, or 401 (its answer for a missing repo). */
static bool repo_gone(const struct fetch_result *res)
{
        return res->error.code == ST_ENOTFOUND || (res->error.code && res->status == 401);
}

/* GET every repo's info at once; 0 when each answered 200 (loaded) or is gone, else its error. */
static int fetch_infos(struct fetcher *f, const struct hf_source *src, struct arena *a,
                       struct check_repos *m, struct st_error *err)
{
        int base = driver_base_length(src->base_url), rc;

        m->reqs = calloc(m->n, sizeof(*m->reqs));
        m->items = json_array();
        if (!m->reqs || !m->items)
                return st_fail(err, ST_ENOMEM, "hf: out of memory");
        for (size_t k = 0; k < m->n; k++) {
                m->reqs[k].url =
                    arena_printf(a, "%.*s/api/models/%s", base, src->base_url, m->ids[k]);
                if (!m->reqs[k].url)
                        return st_fail(err, ST_ENOMEM, "hf: arena full");
                m->reqs[k].max_body = HF_MODELS_MAX_BODY;
                m->reqs[k].content_type = "application/json";
                m->reqs[k].token = src->token;
        }
        rc = fetcher_run(f, m->reqs, m->n);
        if (rc)
                return st_fail(err, rc, "hf: info requests broke down: %s", st_strerror(rc));
        for (size_t k = 0; k < m->n; k++) {
                const struct fetch_result *res = &m->reqs[k].result;
                json_t *root;

                if (repo_gone(res))
                        continue;
                if (res->error.code) {
                        if (err)
                                *err = res->error;
                        return res->error.code;
                }
                rc = driver_load_json(res->body, res->body_len, HF_MAX_JSON_VALUES, "hf model info",
                                      &root, err);
                if (rc)
                        return rc;
                if (!json_is_object(root)) {
                        json_decref(root);
                        return st_fail(err, ST_ETYPE, "hf model info %s: not an object", m->ids[k]);
                }
                if (json_array_append_new(m->items, root)) /* frees root on failure */
                        return st_fail(err, ST_ENOMEM, "hf: out of memory");
                m->roots[k] = root;
        }
        return 0;
}

static ssize_t find_repo(const struct hf_page *page, const char *repo_id)
{
        for (size_t i = 0; i < page->n_records; i++)
                if (strcmp(page->repos[i].repo_id, repo_id) == 0)
                        return (ssize_t)i;
        return -1;
}

static bool already_gone(const struct driver_check *out, const char *id)
{
        for (size_t i = 0; i < out->n_gone; i++)
                if (strcmp(out->gone[i], id) == 0)
                        return true;
        return false;
}

/*
 * Put check id i where it belongs.  eligible[k]: repo k's info made a
 * record before the cards were read; a repo that answers but made none is
 * there but not crawlable (gated, private, disabled, no .safetensors).
 */
static void place_id(char *const *ids, size_t i, struct check_repos *m, const bool *eligible,
                     const struct hf_page *page, struct driver_check *out)
{
        size_t k = m->of[i];
        const json_t *info = m->roots[k];
        const char *sha = info ? driver_json_string(info, "sha") : NULL;
        ssize_t j = info ? find_repo(page, m->ids[k]) : -1;

        if (already_gone(out, ids[i]))
                return;
        if (!info || (valid_sha(sha) && (strcmp(sha, m->shas[i]) != 0 || !eligible[k]))) {
                out->gone[out->n_gone++] = ids[i];
        } else if (j < 0) {
                log_warn("hf check: %s: record not built this time; not verified", ids[i]);
                out->n_unverified++;
        }
        if (j >= 0 && !m->placed[k]) {
                out->records[out->n_records++] = page->records[j];
                m->placed[k] = true;
        }
}

/* Which repos made a record from their info alone (before the cards). */
static bool *eligible_repos(struct arena *a, const struct check_repos *m,
                            const struct hf_page *page)
{
        bool *eligible = arena_calloc(a, m->n + 1, sizeof(*eligible));

        for (size_t k = 0; eligible && k < m->n; k++)
                eligible[k] = find_repo(page, m->ids[k]) >= 0;
        return eligible;
}

int hf_check(struct fetcher *f, const struct hf_source *src, char *const *ids, size_t n,
             struct arena *a, struct driver_check *out, struct st_error *err)
{
        struct parser p = {a, NULL, 0, HF_LISTING_LORA_TAG, NULL, false};
        struct check_repos m = {0};
        struct page_memory mem;
        struct hf_page page;
        char crawled_at[32];
        bool *eligible;
        int rc;

        memset(out, 0, sizeof(*out));
        memset(&page, 0, sizeof(page));
        if (!src || !src->base_url)
                return st_fail(err, ST_EINVAL, "hf: no base_url");
        if (n == 0 || n > DRIVER_MAX_CHECK_IDS)
                return st_fail(err, ST_EINVAL, "hf check: %zu ids, want 1..%d", n,
                               DRIVER_MAX_CHECK_IDS);
        rc = plan_check(a, ids, n, &m, err);
        if (rc == 0)
                rc = fetch_infos(f, src, a, &m, err);
        if (rc)
                goto out_repos;
        driver_utc_now(crawled_at);
        p.base_url = src->base_url;
        p.base_len = driver_base_length(src->base_url);
        p.crawled_at = crawled_at;
        rc = parse_items(&p, m.items, &page, err);
        if (rc)
                goto out_repos;
        eligible = eligible_repos(a, &m, &page);
        out->records = arena_calloc(a, n, sizeof(*out->records));
        out->gone = arena_calloc(a, n, sizeof(*out->gone));
        if (!eligible || !out->records || !out->gone) {
                rc = st_fail(err, ST_ENOMEM, "hf: arena full");
                goto out_repos;
        }
        if (page.n_records > 0)
                rc = read_cards(f, src, a, &page, false, &mem, err);
        if (rc)
                goto out_repos;
        for (size_t i = 0; i < n; i++)
                place_id(ids, i, &m, eligible, &page, out);
        for (size_t k = 0; src->cache && k < m.n; k++) {
                char *key = m.roots[k] ? NULL : arena_printf(a, "hf:repo:%s", m.ids[k]);

                if (key)
                        validator_cache_remove(src->cache, key);
        }
out_repos:
        for (size_t k = 0; m.reqs && k < m.n; k++)
                fetch_request_release(&m.reqs[k]);
        free(m.reqs);
        json_decref(m.items);
        return rc;
}
