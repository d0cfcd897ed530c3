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
 *   GET <base>/api/v1/models/<modelId>
 *     -> one model item, the same shape as in the list; 404 when deleted
 *   GET <base>/api/v1/model-versions/by-hash/<hash>
 *     -> the model version that owns a file with that hash (any of AutoV1,
 *        AutoV2, AutoV3, SHA256, BLAKE3, CRC32; case-insensitive):
 *        {"id": <versionId>, "modelId": <modelId>, "name": .., "files": [..],
 *        "model": {"name", "type", ..}, ..}; 404 {"error":"Model not found"}
 *        when no published version has it.  Which version answers when two
 *        uploads share a file is not documented (the fixture server gives
 *        the oldest one, as the hash was first registered to it).
 *   No ETag or Last-Modified is documented (reference: assume none); when a
 *   server sends them anyway, they are used (below).
 *
 * Passes (civitai_crawl_page): a full and an incremental pass both walk
 * sort=Newest, so a new model or version comes first.  With a validator
 * cache (validator_cache.h), a models page is asked for with If-None-Match /
 * If-Modified-Since when the cache has its validators; a 304 gives the
 * page's record ids in unchanged and the cached next cursor, and builds no
 * record.  Every page built is compared with the cache model by model
 * (item "civitai:model:<id>"), and an incremental page whose records are all
 * known (driver_record_known) sets stop.  Without validators the content
 * hash decides downstream, as before.
 *
 * Duplicates (civitai_resolve_hashes): for each SHA256, GET
 * /api/v1/model-versions/by-hash/<sha256>: the record id
 * civitai:<modelId>@<id> of the version that answers, NULL on 404 or 410.
 * The id may name a version the catalog does not hold (a Checkpoint, an
 * unpublished or uncrawled model): it is what Civitai says, no more.
 *
 * Checks (civitai_check): for each id civitai:<m>@<v>, GET /api/v1/models/<m>
 * (once per model): 404 or 410, no version v in modelVersions, or a model
 * no longer LORA/LoCon/DoRA -> gone; else the version's record, built as on
 * a page (images call included).
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

#include "crawler/driver.h"
#include "crawler/fetch.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define CIVITAI_MAX_IMAGES              10      /* example images kept per version */
#define CIVITAI_MAX_RECORDS             10000   /* records per page */
#define CIVITAI_MAX_JSON_VALUES         2000000 /* values in one page's JSON */
#define CIVITAI_MODELS_MAX_BODY         (32u << 20)
#define CIVITAI_IMAGES_MAX_BODY         (4u << 20)
#define CIVITAI_VERSION_MAX_BODY        (4u << 20) /* one /model-versions answer */
#define CIVITAI_VERSION_MAX_JSON_VALUES 200000
#define CIVITAI_MAX_HASHES              50 /* hashes in one civitai_resolve_hashes call */

struct civitai_source {
        const char *base_url; /* "https://civitai.com" or a mirror; no trailing "/api" */
        const char *token;    /* optional API key; sent as Bearer to base_url's origin only */
        int page_limit;       /* models per page, 1..100; 0 = 100 */
        struct validator_cache *cache; /* or NULL: no conditional requests, no stop */
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
        size_t n_dropped;       /* records left out for the next pass because their images
                                   call failed (also in n_errors) */
        char **unchanged;       /* after a 304: every record id the page stands for */
        size_t n_unchanged;
        bool not_modified; /* the page answered 304; records is empty */
        bool stop;         /* incremental pass: every record is known, go no further */
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

/* URL of one model: "<base>/api/v1/models/<id>". */
char *civitai_model_url(struct arena *a, const char *base_url, uint64_t model_id);

/*
 * URL of the version that owns a file hash:
 * "<base>/api/v1/model-versions/by-hash/<hash>"; hash must already be
 * URL-safe (the resolver sends only 64 hex digits).  NULL when the arena is full.
 */
char *civitai_by_hash_url(struct arena *a, const char *base_url, const char *hash);

/*
 * Parse len bytes of a /api/v1/model-versions answer (by id or by hash)
 * into *record_id, "civitai:<modelId>@<id>" in a.  id and modelId must be
 * positive JSON integers; every other key is ignored.  Returns 0,
 * ST_EPARSE (not JSON), ST_ETYPE (not an object, or id / modelId absent or
 * not a positive integer), ST_ETOOBIG (over CIVITAI_VERSION_MAX_JSON_VALUES)
 * or ST_ENOMEM; err says which.
 */
int civitai_parse_version(const char *json, size_t len, struct arena *a, char **record_id,
                          struct st_error *err);

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
 * Crawl one models page of a pass through f: fetch it (cursor NULL = first
 * page; conditionally when src->cache has its validators), parse it, then
 * fetch the images of every need_images version in one concurrent run and
 * give those records the prompted images (a record whose images call fails
 * is left out, counted in n_dropped and n_errors); content hashes are
 * recomputed.  Then the cache learns the page and its models (passes
 * above).  Returns 0 or the models page's fetch error (ST_ENET, ST_EHTTP,
 * ST_EAGAIN, ST_ETOOBIG, ST_EPROTO ... ; ST_EPROTO also for a 304 to a
 * request that was not conditional) or a parse error, with context in
 * err.  A cache that cannot be written is logged, not an error.  Call from
 * the fetcher's thread.
 */
int civitai_crawl_page(struct fetcher *f, const struct civitai_source *src, const char *cursor,
                       enum crawl_pass pass, struct arena *a, struct civitai_page *out,
                       struct st_error *err);

/*
 * Ask Civitai which version owns each of the n SHA256s (1..CIVITAI_MAX_HASHES,
 * each 64 hex digits, either case), all requests in one fetcher run under
 * the usual politeness: ids[i] becomes the record id of hashes[i]'s version
 * (civitai_parse_version), or NULL when Civitai answers 404 or 410.  ids
 * is an array of n the caller provides; the strings live in a.  A hash
 * given twice is asked once.  Returns 0; ST_EINVAL (a hash that is not 64
 * hex digits, named in err, or n out of range) before any request; or the
 * first failure of a request other than 404/410 (ST_EHTTP for a 5xx after
 * the retries, ST_ETIMEOUT, ST_ENET, ST_EAGAIN, ST_ETOOBIG ...) or of its
 * answer (civitai_parse_version), with the hash in err, so the catalog
 * tries the job again.  Call from the fetcher's thread.
 */
int civitai_resolve_hashes(struct fetcher *f, const struct civitai_source *src, char *const *hashes,
                           size_t n, struct arena *a, char **ids, struct st_error *err);

/*
 * Check n ids (1..DRIVER_MAX_CHECK_IDS, each civitai:<modelId>@<versionId>)
 * as described above, into *out (struct driver_check, driver.h).  Returns
 * 0, ST_EINVAL (an id of another form, or too many), or the first error of
 * a model request other than 404/410 (ST_ENET, ST_ETIMEOUT, ST_EHTTP,
 * ST_EAGAIN ...) or of its JSON, so the catalog tries the job again.
 */
int civitai_check(struct fetcher *f, const struct civitai_source *src, char *const *ids, size_t n,
                  struct arena *a, struct driver_check *out, struct st_error *err);

#endif
