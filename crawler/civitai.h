/*
 * civitai.h - the Civitai driver: one /api/v1/models page in, one
 * st_raw_record per model *version* of every LoRA-like model out.
 *
 * Wire facts (docs/reference: developer.civitai.com, models.md, images.md):
 *   GET <base>/api/v1/models?limit=..&types=LORA&types=LoCon&types=DoRA
 *       &nsfw=true&sort=Newest[&cursor=<opaque>]
 *     -> {"items":[model...], "metadata":{"nextCursor":"..", "nextPage":".."}}
 *     the last page has no metadata.nextCursor.
 *   GET <base>/api/v1/images?modelVersionId=<id>&limit=10
 *     -> {"items":[{"url":..,"meta":{"prompt":..}|null}...], "metadata":{..}}
 *
 * Field mapping (model m, version v; every key optional except m.id, m.name
 * and v.id; a key of the wrong type counts as absent):
 *   id            "civitai:<m.id>@<v.id>"
 *   name          m.name              version_name  v.name
 *   type          m.type; only LORA, LoCon, DoRA (any case) are kept, other
 *                 models are counted in n_skipped
 *   base_model    st_base_model_normalize(v.baseModel), "other" when absent
 *   base_model_raw v.baseModel
 *   card_html     m.description, then "\n" and v.description when present
 *   card_url      "<base>/models/<m.id>?modelVersionId=<v.id>"
 *   creator       m.creator.username
 *   tags          m.tags: strings or {"name": ..} objects
 *   trained_words v.trainedWords
 *   nsfw          m.nsfw == true, or nsfwLevel > 1 (v's, else m's)
 *   stats         downloads: downloadCount; likes: thumbsUpCount;
 *                 rating: 5*up/(up+down) when both thumbs counts are present,
 *                 else rating (2023 shape) -- each key from v.stats, else m.stats
 *   files         v.files[]: name, size = round(sizeKB * 1024),
 *                 sha256 = lowercase hashes.SHA256 (64 hex, else NULL), downloadUrl
 *   images        v.images[] with a url, at most CIVITAI_MAX_IMAGES: url, meta.prompt;
 *                 when images are listed, none has a prompt and not all say
 *                 hasMeta: false, the version goes into need_images
 *   created_at    v.createdAt, else v.publishedAt
 *   updated_at    v.updatedAt, else v.publishedAt, else v.createdAt
 *   content_hash  st_raw_record_hash()
 * Limits: a short string over ST_LIMIT_STRING counts as absent (an over-long
 * name makes the item an error); card_html and prompts are cut at
 * ST_LIMIT_TEXT - 1 bytes on a UTF-8 boundary; arrays keep their first
 * ST_LIMIT_ARRAY entries; a page yields at most CIVITAI_MAX_RECORDS records
 * and its JSON may hold at most CIVITAI_MAX_JSON_VALUES values (ST_ETOOBIG).
 *
 * Ownership: everything a function here returns lives in the arena passed
 * in, until arena_release().  Thread rules: none beyond the fetcher's; the
 * parsers are pure functions.
 */
#ifndef STYLUS_CRAWLER_CIVITAI_H
#define STYLUS_CRAWLER_CIVITAI_H

#include <stddef.h>
#include <stdint.h>

#include "crawler/fetch.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define CIVITAI_MAX_IMAGES      10      /* example images kept per version */
#define CIVITAI_MAX_RECORDS     10000   /* records per page */
#define CIVITAI_MAX_JSON_VALUES 2000000 /* values in one page's JSON */
#define CIVITAI_MODELS_MAX_BODY (32u << 20)
#define CIVITAI_IMAGES_MAX_BODY (4u << 20)

struct civitai_source {
        const char *base_url; /* "https://civitai.com" or a mirror; no trailing "/api" */
        const char *token;    /* optional API key; sent as Bearer to base_url's origin only */
        int page_limit;       /* models per page, 1..100; 0 = 100 */
};

struct civitai_page {
        struct st_raw_record *records; /* n_records, in page order */
        size_t n_records;
        uint64_t *need_images;      /* version ids whose listed images lack prompts */
        size_t *need_images_record; /* index in records of each need_images[i] */
        size_t n_need_images;
        char *next_cursor;      /* metadata.nextCursor, NULL on the last page */
        size_t n_items;         /* models on the page */
        size_t n_skipped;       /* models not LORA/LoCon/DoRA, or without versions */
        size_t n_errors;        /* models or versions dropped as malformed, or whose
                                   images call failed (logged; the next pass retries) */
        size_t n_images_filled; /* records whose images came from /api/v1/images */
};

/*
 * URL of one models page: "<base>/api/v1/models?limit=<limit>&types=LORA
 * &types=LoCon&types=DoRA&nsfw=true&sort=Newest[&cursor=<percent-encoded>]".
 * limit outside 1..100 means 100.  NSFW adapters are crawled and flagged;
 * the query node filters them.  NULL when the arena is full.
 */
char *civitai_models_url(struct arena *a, const char *base_url, const char *cursor, int limit);

/* URL of the example images of one version: "<base>/api/v1/images?modelVersionId=<id>&limit=10". */
char *civitai_images_url(struct arena *a, const char *base_url, uint64_t version_id);

/*
 * Parse len bytes of a models page (the caller has bounded len) into *out,
 * allocating in a; crawled_at (RFC 3339) is stamped on every record.  A
 * malformed item is skipped, counted in out->n_errors and logged; the page
 * goes on.  Returns 0, ST_EPARSE (not JSON), ST_ETYPE (top level not an
 * object, or items not an array), ST_ETOOBIG (over CIVITAI_MAX_JSON_VALUES)
 * or ST_ENOMEM (arena full).  *out is zeroed first.
 */
int civitai_parse_models_page(const char *json, size_t len, const char *base_url,
                              const char *crawled_at, struct arena *a, struct civitai_page *out,
                              struct st_error *err);

/*
 * Parse an /api/v1/images page: the first max items that have a url and a
 * meta.prompt, as an array in a.  Same errors as civitai_parse_models_page.
 */
int civitai_parse_images_page(const char *json, size_t len, struct arena *a,
                              struct st_image **images, size_t *n, size_t max,
                              struct st_error *err);

/*
 * Crawl one models page through f: fetch it (cursor NULL = first page), parse
 * it, then fetch the images of every need_images version in one concurrent
 * run and give those records the prompted images (a failed images call is
 * logged and the record keeps the images it had); content hashes are
 * recomputed.  Returns 0 or the models page's fetch error (ST_ENET,
 * ST_EHTTP, ST_EAGAIN, ST_ETOOBIG, ST_EPROTO ...) or a parse error, with
 * context in err.  Call from the fetcher's thread.
 */
int civitai_crawl_page(struct fetcher *f, const struct civitai_source *src, const char *cursor,
                       struct arena *a, struct civitai_page *out, struct st_error *err);

#endif
