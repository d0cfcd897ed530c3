/*
 * hf.h - the Hugging Face driver: one /api/models listing page in, one
 * st_raw_record per LoRA repo out, completed from the repo's model card.
 *
 * Wire facts (reference: huggingface/hub-docs docs/hub/api.md,
 * rate-limits.md; huggingface_hub hf_api.py list_models, _pagination.py):
 *   GET <base>/api/models?filter=lora&pipeline_tag=text-to-image&full=true
 *       &sort=createdAt&direction=-1&limit=<n>
 *     -> [repo...]; full=true adds author, sha, lastModified, gated,
 *        disabled, siblings[{rfilename}] to the default item.  The next page
 *        is the URL of `Link: <...>; rel="next"`, which keeps every
 *        parameter; the last page has no Link.  No total count.
 *   GET <base>/<user>/<repo>/resolve/<sha>/README.md
 *     -> the model card (see hf_card.h); gated repos answer 401 without a
 *        token, unknown ones 401 too, a missing file 404.
 *   GET <base>/api/models/<user>/<repo>
 *     -> the repo's info: the listing item's keys (sha, siblings, gated ...)
 *        and more; 404 for a deleted repo (401 on the Hub for a missing or
 *        private one)
 *   Anonymous quota: 500 API calls and 3000 resolver calls per 5-minute
 *   window per IP; every answer carries `RateLimit` and `RateLimit-Policy`
 *   headers, and over the quota 429 without Retry-After: the fetcher reads
 *   them (fetch.h, ratelimit.h) and waits for the window instead.
 *
 * Which repos (two listings, one crawl pass; the cursor says which):
 *   1. HF_LISTING_LORA_TAG: filter=lora & pipeline_tag=text-to-image -- the
 *      repos the Hub tags "lora" (it derives tags from the card), i.e.
 *      almost every diffusers/AutoTrain/ai-toolkit LoRA.  We do not filter
 *      on base_model:adapter:<id> tags: their exact form is unverified and
 *      one listing per base model would multiply the calls.
 *   2. HF_LISTING_LORA_NAME: search=lora & pipeline_tag=text-to-image --
 *      repos with "lora" in their id, keeping only those *without* the lora
 *      tag (a card with broken YAML gets no tags), so no repo is produced
 *      twice in a pass.  Listing 1's last page hands over to listing 2's
 *      first; listing 2's last page ends the pass.
 *   A full pass sorts both by createdAt, newest first: creation dates never
 *   change, so a pass does not reshuffle under the cursor the way
 *   trendingScore would.  An incremental pass sorts both by lastModified,
 *   newest first (a new commit brings a repo to the top); a page of it
 *   where every record is known ends the listing: listing 1 hands over to
 *   listing 2 at once, listing 2 sets stop.
 *
 * With a validator cache (validator_cache.h):
 *   - a listing page is asked for with If-None-Match / If-Modified-Since
 *     when the cache has its validators; a 304 gives the page's record ids
 *     in unchanged and the cached next cursor, and no request more;
 *   - each repo's entry ("hf:repo:<repo>") holds the sha it was built at
 *     and the README read at that sha.  A repo listed at the same sha is
 *     rebuilt from the listing and the cached README without a request: the
 *     README at a fixed sha never changes, only the listing's stats can, so
 *     the record goes to unchanged when its content hash is the one the
 *     cache knows and is sent otherwise.  A repo at a new sha fetches its
 *     README at that sha with If-None-Match: the old README's ETag (a git
 *     blob id), and a 304 reuses the cached README.
 *
 * Checks (hf_check): for each id hf:<repo>@<sha>, GET /api/models/<repo>
 * (once per repo): 404, 410 or 401 -> gone; a different sha -> the old id
 * is gone and the new revision's record is returned; the same sha -> its
 * record, built as on a page; a repo that answers but is no longer
 * crawlable (gated, private, disabled, no .safetensors) -> gone.
 *
 * Per repo (every listing key optional except id and sha; a key of the
 * wrong type counts as absent):
 *   skipped, recorded in skipped[] with the reason and counted in
 *   n_skipped_gated, README never fetched: gated != false ("gated:auto",
 *   "gated:manual", "gated"), disabled == true ("disabled"), private ==
 *   true ("private").  Skipped and counted in n_skipped: no .safetensors
 *   among the siblings; in listing 2, tagged lora.  Dropped and counted in
 *   n_errors (logged): not an object, id not "user/repo" of
 *   [A-Za-z0-9._-] (at most 96 each, no ".."), sha not 40 hex digits.
 *
 * Field mapping (listing item m; card c, hf_card.h; c wins when it has the
 * field):
 *   id            "hf:<m.id>@<m.sha>"            source   "hf"
 *   name          c.title (first "# " heading), else m.id's repo part
 *                 prettified ("rim-light_lora" -> "Rim Light LoRA")
 *   version_name  NULL (the sha is the version)    type   "LORA"
 *   base_model_raw c.base_model[0], else the listing tag
 *                 base_model:adapter:<id>, else base_model:<id>
 *   base_model    st_base_model_normalize(base_model_raw), "other" if none
 *   card_html     c.body: the README markdown after the front matter
 *   card_url      "<base>/<m.id>"                 creator  m.author
 *   tags          c.tags, else m.tags without base_model:* and region:*;
 *                 plus "license:<c.license>" when the card names one
 *   trained_words [c.instance_prompt]
 *   nsfw          tag "not-for-all-audiences" in m.tags or c.tags
 *   stats         downloads: m.downloads (last 30 days); likes: m.likes
 *   files         m.siblings[] ending in .safetensors (any case):
 *                 name = rfilename, download_url = <base>/<m.id>/resolve/
 *                 <sha>/<rfilename, percent-encoded per segment>, size =
 *                 siblings[].size and sha256 = siblings[].lfs.sha256 when
 *                 the listing has them (expand with blobs), else 0 / NULL
 *   images        c.widget[] with output.url (at most HF_MAX_IMAGES): url
 *                 resolved like files when repo-relative, kept when
 *                 http(s)://, dropped otherwise (other schemes, "..",
 *                 absolute paths); prompt = text.  With no such widget:
 *                 the image siblings (.png .jpg .jpeg .webp), no prompt.
 *   created_at    m.createdAt                   updated_at  m.lastModified
 *   etag          the README's ETag             content_hash st_raw_record_hash()
 *
 * The card (hf_crawl_page): README 404 -> the record stays as the listing
 * made it.  A README that cannot be read as it is (over HF_README_MAX_BODY,
 * a bad redirect) -> the same, counted in n_errors and logged.  Any other
 * README failure (network, timeout, 401, 429, 5xx after the fetcher's
 * retries) -> the record is dropped, counted in n_errors and n_dropped and
 * logged; the next pass tries it again (a degraded record would replace a
 * good one in the catalog).  A card whose front matter is malformed or over
 * a limit -> counted in n_errors and logged, and the record is kept with
 * what the listing and the card's markdown body give (title, card_html; no
 * instance_prompt, widgets or card base_model).  The cache remembers a
 * repo only when its README outcome is final (read, 304, or none), and a
 * listing page only when none of its READMEs failed or was unusable.
 *
 * Limits: a listing page may hold HF_MAX_JSON_VALUES JSON values
 * (ST_ETOOBIG) and yields at most HF_MAX_RECORDS records; URLs and short
 * strings of ST_LIMIT_STRING bytes or more count as absent; arrays keep
 * their first ST_LIMIT_ARRAY entries.
 *
 * Ownership: everything a function here returns lives in the arena passed
 * in, until arena_release().  Thread rules: none beyond the fetcher's; the
 * parsers are pure functions.
 */
#ifndef STYLUS_CRAWLER_HF_H
#define STYLUS_CRAWLER_HF_H

#include <stdbool.h>
#include <stddef.h>

#include "crawler/driver.h"
#include "crawler/fetch.h"
#include "crawler/hf_card.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define HF_DEFAULT_PAGE_LIMIT 25   /* repos per page: 1 + 25 calls fit a 30 s job lease at 1.5/s */
#define HF_MAX_PAGE_LIMIT     1000 /* the Hub's commonly cited cap (unverified) */
#define HF_MAX_IMAGES         10   /* example images kept per repo */
#define HF_MAX_RECORDS        HF_MAX_PAGE_LIMIT
#define HF_MAX_JSON_VALUES    2000000
#define HF_MODELS_MAX_BODY    (32u << 20)
#define HF_README_MAX_BODY    (1u << 20)

enum hf_listing {
        HF_LISTING_LORA_TAG,  /* filter=lora: repos the Hub tags lora */
        HF_LISTING_LORA_NAME, /* search=lora: repos named *lora* that lack the tag */
};

struct hf_source {
        const char *base_url; /* "https://huggingface.co" or a mirror, no trailing path */
        const char *token;    /* optional access token; sent as Bearer to base_url only */
        int page_limit;       /* repos per listing page, 1..1000; 0 = HF_DEFAULT_PAGE_LIMIT */
        struct validator_cache *cache; /* or NULL: no conditional requests, no stop */
};

/* Where a record came from: what hf_crawl_page needs to complete it. */
struct hf_repo {
        char *repo_id;    /* "user/repo" */
        char *sha;        /* 40 hex digits: every file is read at this revision */
        char *readme_url; /* <base>/<repo>/resolve/<sha>/README.md; NULL when not listed */
        bool lora_tagged; /* the listing's tags include "lora" */
};

/* A repo listed but not crawled, and why. */
struct hf_skip {
        char *repo_id;
        char *reason; /* "gated:auto", "gated:manual", "gated", "disabled" or "private" */
};

struct hf_page {
        struct st_raw_record *records; /* n_records, in listing order */
        struct hf_repo *repos;         /* repos[i] is where records[i] came from */
        size_t n_records;
        struct hf_skip *skipped; /* n_skipped_gated entries */
        size_t n_skipped_gated;  /* gated, disabled or private repos (logged) */
        char *next_cursor;       /* next listing URL (set by hf_crawl_page); NULL: pass done */
        size_t n_items;          /* repos on the listing page */
        size_t n_skipped;        /* no .safetensors file; or tagged lora in listing 2 */
        size_t n_errors;         /* repos dropped or only partly read (logged) */
        size_t n_cards;          /* records completed from their README */
        size_t n_cached_cards;   /* ... of which from the cache (same sha, or a README 304) */
        size_t n_dropped;        /* records left out for the next pass (README not read;
                                    also in n_errors) */
        char **unchanged;        /* ids known unchanged: a listing 304, or rebuilt at the same
                                    sha with the same content hash */
        size_t n_unchanged;
        bool not_modified; /* the listing answered 304; records is empty */
        bool stop;         /* incremental pass: every record of listing 2's page is known */
};

/*
 * URL of the first page of a listing (see "Which repos" above) for a pass,
 * e.g. "<base>/api/models?filter=lora&pipeline_tag=text-to-image&full=true
 * &sort=createdAt&direction=-1&limit=25" (sort=lastModified for an
 * incremental pass).  limit outside 1..1000 means HF_DEFAULT_PAGE_LIMIT.
 * NULL when the arena is full.
 */
char *hf_models_url(struct arena *a, const char *base_url, enum hf_listing listing,
                    enum crawl_pass pass, int limit);

/*
 * Parse len bytes of a listing page of the given listing (the caller has
 * bounded len) into *out (zeroed first), allocating in a: one record per
 * eligible repo, as far as the listing tells (the card is applied later),
 * with crawled_at (RFC 3339) stamped and the content hash set.  A malformed
 * repo is skipped, counted in out->n_errors and logged; the page goes on.
 * out->next_cursor stays NULL.  Returns 0, ST_EPARSE (not JSON), ST_ETYPE
 * (top level not an array), ST_ETOOBIG (over HF_MAX_JSON_VALUES) or
 * ST_ENOMEM (arena full).
 */
int hf_parse_models_page(const char *json, size_t len, const char *base_url,
                         enum hf_listing listing, const char *crawled_at, struct arena *a,
                         struct hf_page *out, struct st_error *err);

/*
 * Complete record r, made by hf_parse_models_page from repo, with its parsed
 * card (the field mapping above) and seal it again.  Returns 0, ST_ETOOBIG
 * (the record would not fit ST_LIMIT_RECORD) or ST_ENOMEM; on error r is
 * unspecified (keep a copy to fall back to).
 */
int hf_apply_card(struct arena *a, const char *base_url, const struct hf_repo *repo,
                  const struct hf_card *card, struct st_raw_record *r, struct st_error *err);

/*
 * Crawl one listing page of a pass through f: fetch cursor (NULL = the
 * first page of listing 1 for the pass; else a URL this function returned
 * as next_cursor, which must be a <base>/api/models URL of one of the
 * listings, or ST_EINVAL), conditionally when the cache has its
 * validators; parse it, then read the README of every record (from the
 * cache, or in one concurrent fetcher_run) and apply the cards, as
 * described above.  next_cursor is the Link rel="next" URL, or listing 2's
 * first page after listing 1's last (or after a known page of an
 * incremental pass), or NULL after listing 2's last.  Returns 0 or the
 * listing's fetch error (ST_ENET, ST_EHTTP, ST_EAGAIN, ST_ETOOBIG, ST_EPROTO
 * ...), ST_EPROTO for a next link outside <base>/api/models or a 304 to a
 * request that was not conditional, a parse error, ST_ENOMEM, or the error
 * of a README run that broke down, with context in err.  The token goes
 * only to URLs under base_url.  Call from the fetcher's thread.
 */
int hf_crawl_page(struct fetcher *f, const struct hf_source *src, const char *cursor,
                  enum crawl_pass pass, struct arena *a, struct hf_page *out, struct st_error *err);

/*
 * Check n ids (1..DRIVER_MAX_CHECK_IDS, each hf:<user>/<repo>@<sha>) as
 * described above, into *out (struct driver_check, driver.h).  Returns 0,
 * ST_EINVAL (an id of another form, or too many), or the first error of an
 * info request other than 404/410/401 (ST_ENET, ST_ETIMEOUT, ST_EHTTP,
 * ST_EAGAIN ...) or of its JSON, so the catalog tries the job again.
 */
int hf_check(struct fetcher *f, const struct hf_source *src, char *const *ids, size_t n,
             struct arena *a, struct driver_check *out, struct st_error *err);

#endif
