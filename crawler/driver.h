/*
 * driver.h - what every source driver does to a fetched page and to the
 * records it makes: load JSON under a value cap, copy untrusted text into a
 * record field, seal a finished record with its content hash, stamp the
 * crawl time, and compare a record with what the validator cache knows.
 * hf.c uses these; civitai.c still has private copies of the first, third
 * and fourth (to be moved over).  Also the kinds of crawl job every driver
 * serves: a page of a full or an incremental pass, and a check of ids.
 *
 * Ownership: strings returned here live in the arena passed in.  Thread
 * rules: pure functions, callable from any thread.
 */
#ifndef STYLUS_CRAWLER_DRIVER_H
#define STYLUS_CRAWLER_DRIVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "crawler/fetch.h"
#include "crawler/validator_cache.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

/* What kind of pass a page belongs to (the crawl job's `pass`). */
enum crawl_pass {
        CRAWL_PASS_FULL,        /* every page, in the source's stable order */
        CRAWL_PASS_INCREMENTAL, /* newest or last modified first; a page where every record is
                                   known (driver_record_known) ends the pass: `stop` */
};

/* At most this many ids in one check job (the catalog sends at most 50). */
#define DRIVER_MAX_CHECK_IDS 50

/*
 * What a check job found about the ids it was given.  Each id is in exactly
 * one place: among records (its model is there and the record was built
 * again), in gone (its model answered 404 or 410, no longer has that
 * version, or is no longer eligible), or counted in n_unverified (its
 * record could not be built this time; logged; the catalog keeps it).  A
 * Hugging Face repo at a new sha puts the old id in gone and the new
 * revision's record among records.  Everything lives in the job's arena.
 */
struct driver_check {
        struct st_raw_record *records;
        size_t n_records;
        char **gone;
        size_t n_gone;
        size_t n_unverified;
};

/*
 * Parse len bytes of JSON (any top-level type; embedded NULs allowed inside
 * strings) into *root, which the caller json_decref()s.  Before jansson
 * builds anything, the values are counted roughly (commas + openers + 1) so
 * a hostile page cannot make a tree many times its size.  Returns 0,
 * ST_ETOOBIG (more than max_values) or ST_EPARSE; err names `what`.
 */
int driver_load_json(const char *json, size_t len, size_t max_values, const char *what,
                     json_t **root, struct st_error *err);

/*
 * The value of a string member of obj (NULL when obj is not an object) when
 * it is 1 to ST_LIMIT_STRING - 1 bytes long and holds no NUL; NULL
 * otherwise, so an absent, mistyped or over-long value reads as absent.
 * Borrowed from obj.
 */
const char *driver_json_string(const json_t *obj, const char *key);

/*
 * Copy len bytes of untrusted text as a record text field: invalid UTF-8
 * becomes U+FFFD, NUL bytes are dropped, and the copy is cut below max bytes
 * (max >= 4) at a character boundary.  NULL only when the arena is full.
 */
char *driver_copy_text(struct arena *a, const char *s, size_t len, size_t max);

/*
 * Set r->content_hash (st_raw_record_hash) once r is complete.  Returns 0,
 * ST_ETOOBIG when r encodes to more than ST_LIMIT_RECORD (no role would
 * decode it), ST_ENOMEM, or the codec's error; r->content_hash is left
 * untouched on error.
 */
int driver_seal_record(struct arena *a, struct st_raw_record *r);

/* The current time as RFC 3339 UTC ("2026-01-02T03:04:05Z") into out[32]. */
void driver_utc_now(char out[32]);

/* Length of base_url without its trailing slashes, for "%.*s/path" formats. */
int driver_base_length(const char *base_url);

/*
 * The content hash of r with its stats (downloads, likes, rating) left out,
 * into out[65]: it moves only when what the record says changes, not when
 * it gets more popular.  Returns 0 or the codec's error.
 */
int driver_stable_hash(const struct st_raw_record *r, char out[65]);

/*
 * Does the cache's item entry know r as it is: the same id with the same
 * content hash, or the same stable hash (a change of stats only)?
 */
bool driver_record_known(const struct validator_entry *item, const struct st_raw_record *r,
                         const char *stable_hash);

/* ---- the validator cache, as every driver uses it (NULL cache: all misses, nothing kept) ---- */

/*
 * The cache entry of a page URL when it holds a validator to send: 0 and
 * *e filled, ST_ENOTFOUND (no cache, no entry, no validator) or ST_ENOMEM.
 */
int driver_cached_page(struct validator_cache *c, const char *url, struct arena *a,
                       struct validator_entry *e);

/* Ask for req's URL conditionally with e's validators (borrowed until the run ends). */
void driver_make_conditional(struct fetch_request *req, const struct validator_entry *e);

/* The record ids of e as an array in a (for `unchanged`).  Returns 0 or ST_ENOMEM. */
int driver_entry_ids(struct arena *a, const struct validator_entry *e, char ***ids, size_t *n);

/* vr for record r: its id, content hash and stable hash, in a.  0, ST_ENOMEM or codec error. */
int driver_validator_record(struct arena *a, const struct st_raw_record *r,
                            struct validator_record *vr);

/*
 * Remember a page that answered 200: the validators of res, the cursor
 * after it and the n records it stands for.  Nothing is written when res
 * has no validator; a write that fails is logged (a cache may fail).
 */
void driver_remember_page(struct validator_cache *c, const char *url,
                          const struct fetch_result *res, const char *next_cursor,
                          const struct validator_record *records, size_t n);

/* Write e under key; a failure is logged, not returned. */
void driver_cache_put(struct validator_cache *c, const char *key, const struct validator_entry *e);

/*
 * Does entry old hold exactly these n records with these content hashes
 * (so writing them again would change nothing but the date)?
 */
bool driver_entry_same(const struct validator_entry *old, const struct validator_record *vr,
                       size_t n);

#endif
