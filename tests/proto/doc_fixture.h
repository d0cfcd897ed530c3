/*
 * doc_fixture.h - sample records, field-by-field comparison and hostile
 * inputs shared by test_doc.c, test_doc_json.c and test_doc_msgpack.c.
 * Functions are static inline so each test uses only what it needs.
 */
#ifndef STYLUS_TEST_DOC_FIXTURE_H
#define STYLUS_TEST_DOC_FIXTURE_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proto/doc.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A raw record with every field set, unicode, and a file size past 2^53. */
static inline void fixture_raw_record(struct st_raw_record *r)
{
        static char *tags[] = {"style", "anime", "水彩", "ghibli"};
        static char *words[] = {"ghibli style", "watercolor", ""};
        static struct st_file files[] = {
            {"ghibli_v2.safetensors", 151108832,
             "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
             "https://civitai.com/api/download/models/12345"},
            {"ghibli_v2_big.safetensors", 9007199254740993ULL, NULL, NULL},
        };
        static struct st_image images[] = {
            {"https://image.civitai.com/x/a.jpeg",
             "1girl, ghibli style, <lora:ghibli:0.8>, \"quoted\"\nnew line", NULL},
            {"https://image.civitai.com/x/b.jpeg", NULL,
             "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"},
        };

        memset(r, 0, sizeof(*r));
        r->id = "civitai:6526@12345";
        r->source = "civitai";
        r->name = "Studio Ghibli スタイル 🎨";
        r->version_name = "v2.0";
        r->type = "LORA";
        r->base_model = "sd15";
        r->base_model_raw = "SD 1.5";
        r->card_html = "<p>Trained on <b>Ghibli</b> stills &amp; café scenes. ☃</p>";
        r->card_url = "https://civitai.com/models/6526";
        r->creator = "someone_ü";
        r->tags = (struct st_strv){tags, NELEM(tags)};
        r->trained_words = (struct st_strv){words, NELEM(words)};
        r->nsfw = true;
        r->stats = (struct st_stats){123456789012ULL, 42, 4.87};
        r->files = files;
        r->n_files = NELEM(files);
        r->images = images;
        r->n_images = NELEM(images);
        r->created_at = "2023-02-01T10:00:00Z";
        r->updated_at = "2024-05-06T07:08:09.123Z";
        r->crawled_at = "2025-01-01T00:00:00Z";
        r->etag = "W/\"abc\"";
        r->content_hash = "0000000000000000000000000000000000000000000000000000000000000000";
}

/* A doc with every field set. */
static inline void fixture_doc(struct st_doc *d)
{
        static char *words[] = {"ghibli style"};
        static char *tags[] = {"style", "アニメ"};
        static struct st_file files[] = {
            {"ghibli_v2.safetensors", 151108832, NULL, "https://example.org/f"},
        };
        static struct st_image images[] = {
            {"https://example.org/i.png", "a castle in the sky", NULL},
        };

        memset(d, 0, sizeof(*d));
        d->id = "hf:user/repo@0123abcd";
        d->source = "hf";
        d->name = "Ghibli";
        d->version_name = "main";
        d->type = "LoCon";
        d->base_model = "sdxl";
        d->task = "style";
        d->description = "A watercolor style. Use ghibli style at 0.8.\n—Ωmega";
        d->trigger_words = (struct st_strv){words, NELEM(words)};
        d->recommended_weight = -0.75;
        d->tags = (struct st_strv){tags, NELEM(tags)};
        d->nsfw = false;
        d->stats = (struct st_stats){7, 0, 0.1};
        d->files = files;
        d->n_files = NELEM(files);
        d->images = images;
        d->n_images = NELEM(images);
        d->card_url = "https://huggingface.co/user/repo";
        d->refined_by = "qwen2-vl-7b/p3";
        d->embedding_model = "clip-vit-l-14";
        d->created_at = "2024-01-01T00:00:00Z";
        d->updated_at = "2024-01-02T00:00:00Z";
        d->crawled_at = "2024-01-03T00:00:00Z";
        d->content_hash = "fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9";
}

static inline bool same_string(const char *field, const char *a, const char *b)
{
        if ((!a && !b) || (a && b && strcmp(a, b) == 0))
                return true;
        fprintf(stderr, "field '%s' differs: '%.60s' vs '%.60s'\n", field, a ? a : "(null)",
                b ? b : "(null)");
        return false;
}

static inline bool same_strv(const char *field, const struct st_strv *a, const struct st_strv *b)
{
        size_t i;

        if (a->n != b->n) {
                fprintf(stderr, "field '%s' differs: %zu vs %zu strings\n", field, a->n, b->n);
                return false;
        }
        for (i = 0; i < a->n; i++) {
                if (!same_string(field, a->v[i], b->v[i]))
                        return false;
        }
        return true;
}

static inline bool same_number(const char *field, double a, double b)
{
        if (a == b)
                return true;
        fprintf(stderr, "field '%s' differs: %.17g vs %.17g\n", field, a, b);
        return false;
}

/* uint64 compared exactly, not through a double. */
static inline bool same_uint(const char *field, uint64_t a, uint64_t b)
{
        if (a == b)
                return true;
        fprintf(stderr, "field '%s' differs: %llu vs %llu\n", field, (unsigned long long)a,
                (unsigned long long)b);
        return false;
}

static inline bool same_stats(const struct st_stats *a, const struct st_stats *b)
{
        return same_uint("stats.downloads", a->downloads, b->downloads) &&
               same_uint("stats.likes", a->likes, b->likes) &&
               same_number("stats.rating", a->rating, b->rating);
}

static inline bool same_files(const struct st_file *a, size_t na, const struct st_file *b,
                              size_t nb)
{
        size_t i;

        if (!same_uint("n_files", na, nb))
                return false;
        for (i = 0; i < na; i++) {
                if (!same_string("files.name", a[i].name, b[i].name) ||
                    !same_uint("files.size", a[i].size, b[i].size) ||
                    !same_string("files.sha256", a[i].sha256, b[i].sha256) ||
                    !same_string("files.download_url", a[i].download_url, b[i].download_url))
                        return false;
        }
        return true;
}

static inline bool same_images(const struct st_image *a, size_t na, const struct st_image *b,
                               size_t nb)
{
        size_t i;

        if (!same_uint("n_images", na, nb))
                return false;
        for (i = 0; i < na; i++) {
                if (!same_string("images.url", a[i].url, b[i].url) ||
                    !same_string("images.prompt", a[i].prompt, b[i].prompt) ||
                    !same_string("images.sha256", a[i].sha256, b[i].sha256))
                        return false;
        }
        return true;
}

static inline bool same_raw_record(const struct st_raw_record *a, const struct st_raw_record *b)
{
        return same_string("id", a->id, b->id) && same_string("source", a->source, b->source) &&
               same_string("name", a->name, b->name) &&
               same_string("version_name", a->version_name, b->version_name) &&
               same_string("type", a->type, b->type) &&
               same_string("base_model", a->base_model, b->base_model) &&
               same_string("base_model_raw", a->base_model_raw, b->base_model_raw) &&
               same_string("card_html", a->card_html, b->card_html) &&
               same_string("card_url", a->card_url, b->card_url) &&
               same_string("creator", a->creator, b->creator) &&
               same_strv("tags", &a->tags, &b->tags) &&
               same_strv("trained_words", &a->trained_words, &b->trained_words) &&
               same_uint("nsfw", a->nsfw, b->nsfw) && same_stats(&a->stats, &b->stats) &&
               same_files(a->files, a->n_files, b->files, b->n_files) &&
               same_images(a->images, a->n_images, b->images, b->n_images) &&
               same_string("created_at", a->created_at, b->created_at) &&
               same_string("updated_at", a->updated_at, b->updated_at) &&
               same_string("crawled_at", a->crawled_at, b->crawled_at) &&
               same_string("etag", a->etag, b->etag) &&
               same_string("content_hash", a->content_hash, b->content_hash);
}

static inline bool same_doc(const struct st_doc *a, const struct st_doc *b)
{
        return same_string("id", a->id, b->id) && same_string("source", a->source, b->source) &&
               same_string("name", a->name, b->name) &&
               same_string("version_name", a->version_name, b->version_name) &&
               same_string("type", a->type, b->type) &&
               same_string("base_model", a->base_model, b->base_model) &&
               same_string("task", a->task, b->task) &&
               same_string("description", a->description, b->description) &&
               same_strv("trigger_words", &a->trigger_words, &b->trigger_words) &&
               same_number("recommended_weight", a->recommended_weight, b->recommended_weight) &&
               same_strv("tags", &a->tags, &b->tags) && same_uint("nsfw", a->nsfw, b->nsfw) &&
               same_stats(&a->stats, &b->stats) &&
               same_files(a->files, a->n_files, b->files, b->n_files) &&
               same_images(a->images, a->n_images, b->images, b->n_images) &&
               same_string("card_url", a->card_url, b->card_url) &&
               same_string("refined_by", a->refined_by, b->refined_by) &&
               same_string("embedding_model", a->embedding_model, b->embedding_model) &&
               same_string("created_at", a->created_at, b->created_at) &&
               same_string("updated_at", a->updated_at, b->updated_at) &&
               same_string("crawled_at", a->crawled_at, b->crawled_at) &&
               same_string("content_hash", a->content_hash, b->content_hash);
}

/*
 * Hostile records written as JSON, for both codecs (test_doc_msgpack.c
 * packs the same JSON as msgpack): the error code the raw_record and doc
 * decoders must return and a part of the message, the field's name.
 */
struct bad_record {
        const char *json;
        int code;
        const char *field;
};

static inline const struct bad_record *fixture_bad_records(size_t *n)
{
#define BASE "\"id\":\"i\",\"source\":\"s\",\"name\":\"n\""
        static const struct bad_record cases[] = {
            {"{\"source\":\"s\",\"name\":\"n\"}", ST_EMISSING, "'id'"},
            {"{\"id\":\"i\",\"name\":\"n\"}", ST_EMISSING, "'source'"},
            {"{\"id\":\"i\",\"source\":\"s\"}", ST_EMISSING, "'name'"},
            {"{\"id\":null,\"source\":\"s\",\"name\":\"n\"}", ST_EMISSING, "'id'"},
            {"{\"id\":7,\"source\":\"s\",\"name\":\"n\"}", ST_ETYPE, "'id'"},
            {"{\"id\":\"i\",\"source\":[],\"name\":\"n\"}", ST_ETYPE, "'source'"},
            {"{\"id\":\"i\",\"source\":\"s\",\"name\":{}}", ST_ETYPE, "'name'"},
            {"{" BASE ",\"version_name\":1.5}", ST_ETYPE, "'version_name'"},
            {"{" BASE ",\"type\":true}", ST_ETYPE, "'type'"},
            {"{" BASE ",\"base_model\":[\"sd15\"]}", ST_ETYPE, "'base_model'"},
            {"{" BASE ",\"created_at\":20240101}", ST_ETYPE, "'created_at'"},
            {"{" BASE ",\"updated_at\":false}", ST_ETYPE, "'updated_at'"},
            {"{" BASE ",\"crawled_at\":{}}", ST_ETYPE, "'crawled_at'"},
            {"{" BASE ",\"content_hash\":0}", ST_ETYPE, "'content_hash'"},
            {"{" BASE ",\"card_url\":true}", ST_ETYPE, "'card_url'"},
            {"{" BASE ",\"tags\":\"a,b\"}", ST_ETYPE, "'tags'"},
            {"{" BASE ",\"tags\":[\"a\",3]}", ST_ETYPE, "'tags[1]'"},
            {"{" BASE ",\"tags\":[\"a\",null]}", ST_ETYPE, "'tags[1]'"},
            {"{" BASE ",\"nsfw\":\"yes\"}", ST_ETYPE, "'nsfw'"},
            {"{" BASE ",\"nsfw\":1}", ST_ETYPE, "'nsfw'"},
            {"{" BASE ",\"stats\":[1,2,3]}", ST_ETYPE, "'stats'"},
            {"{" BASE ",\"stats\":{\"downloads\":\"many\"}}", ST_ETYPE, "'stats.downloads'"},
            {"{" BASE ",\"stats\":{\"downloads\":-5}}", ST_ETYPE, "'stats.downloads'"},
            {"{" BASE ",\"stats\":{\"likes\":1.5}}", ST_ETYPE, "'stats.likes'"},
            {"{" BASE ",\"stats\":{\"likes\":9223372036854775808.0}}", ST_ETYPE, "'stats.likes'"},
            {"{" BASE ",\"stats\":{\"rating\":\"4.5\"}}", ST_ETYPE, "'stats.rating'"},
            {"{" BASE ",\"files\":{}}", ST_ETYPE, "'files'"},
            {"{" BASE ",\"files\":[\"a.safetensors\"]}", ST_ETYPE, "'files[0]'"},
            {"{" BASE ",\"files\":[{},{\"size\":-1}]}", ST_ETYPE, "'files[1].size'"},
            {"{" BASE ",\"files\":[{\"size\":\"12\"}]}", ST_ETYPE, "'files[0].size'"},
            {"{" BASE ",\"files\":[{\"name\":7}]}", ST_ETYPE, "'files[0].name'"},
            {"{" BASE ",\"files\":[{\"sha256\":[]}]}", ST_ETYPE, "'files[0].sha256'"},
            {"{" BASE ",\"files\":[{\"download_url\":{}}]}", ST_ETYPE, "'files[0].download_url'"},
            {"{" BASE ",\"images\":\"img\"}", ST_ETYPE, "'images'"},
            {"{" BASE ",\"images\":[null]}", ST_ETYPE, "'images[0]'"},
            {"{" BASE ",\"images\":[{\"url\":1}]}", ST_ETYPE, "'images[0].url'"},
            {"{" BASE ",\"images\":[{\"prompt\":[]}]}", ST_ETYPE, "'images[0].prompt'"},
            {"{" BASE ",\"images\":[{\"sha256\":true}]}", ST_ETYPE, "'images[0].sha256'"},
        };
#undef BASE
        *n = NELEM(cases);
        return cases;
}

/* Hostile values of keys only one record type has: {key, value as JSON}. */
struct bad_field {
        const char *key;
        const char *value;
};

static inline const struct bad_field *fixture_bad_raw_record_fields(size_t *n)
{
        static const struct bad_field cases[] = {
            {"base_model_raw", "1.5"},  {"card_html", "[]"},       {"creator", "{}"},
            {"trained_words", "\"w\""}, {"trained_words", "[[]]"}, {"etag", "1"},
        };
        *n = NELEM(cases);
        return cases;
}

static inline const struct bad_field *fixture_bad_doc_fields(size_t *n)
{
        static const struct bad_field cases[] = {
            {"task", "3"},
            {"description", "{}"},
            {"trigger_words", "\"w\""},
            {"trigger_words", "[1]"},
            {"recommended_weight", "\"0.8\""},
            {"recommended_weight", "[0.8]"},
            {"refined_by", "false"},
            {"embedding_model", "[]"},
        };
        *n = NELEM(cases);
        return cases;
}

#endif
