/*
 * validator_cache.h - what a crawler worker remembers between passes so it
 * can ask "has this changed?" instead of fetching and building everything
 * again: HTTP validators (ETag, Last-Modified) of the pages it fetched, and
 * what each page and each model produced.  Local to one worker (`stylus
 * crawler --cache DIR`); losing it costs requests, never correctness.
 *
 * Two kinds of entries, one file each, under a string key:
 *   page  key = the page URL as fetched.  etag / last_modified of the
 *         response, next_cursor (the cursor after the page, NULL on the
 *         last page) and records: every record id the page stood for.
 *         Enough to answer a 304 without the body.
 *   item  key = "civitai:model:<modelId>" or "hf:repo:<user>/<repo>".
 *         records: the model's versions as
 *         last built, with their hashes.  For a Hugging Face repo also
 *         revision (the sha it was built at) and the README as read at
 *         that sha: has_body, body, and etag / last_modified of the
 *         README response (sent as If-None-Match when the sha moves on).
 *
 * On disk (DIR/<hh>/<hex>, hex = sha256 of the key, hh its first two
 * digits): one msgpack map, written to a temporary file in the same folder
 * and renamed over the old one, so a reader sees the old entry or the new
 * one, never a mix.  Nothing is fsync'd: after a crash an entry may be
 * missing or damaged, and either reads as a miss.
 *
 *   map key        type            notes
 *   v              uint            format version, VALIDATOR_CACHE_VERSION;
 *                                  another version reads as a miss
 *   key            str             the entry's key; another key (a hash
 *                                  collision) reads as a miss
 *   etag           str | nil       as the server sent it, quotes kept
 *   last_modified  str | nil       as the server sent it
 *   next           str | nil       page: the next cursor
 *   revision       str | nil       hf item: the repo sha
 *   records        [[id, content_hash, stable_hash] ...]
 *                                  hashes are 64 hex (st_raw_record_hash;
 *                                  stable_hash leaves stats out)
 *   body           bin | nil       hf item: the README, nil when the repo
 *                                  has none (404, or not listed)
 *   stored_at      uint            unix seconds of the write (for people)
 *
 * Limits: a key of at most VALIDATOR_CACHE_MAX_KEY bytes; a file of at
 * most VALIDATOR_CACHE_MAX_ENTRY bytes (a bigger one reads as a miss, and
 * put refuses with ST_ETOOBIG).
 *
 * A hit (validator_cache_get) sets the file's mtime to now, so that
 * validator_cache_prune() removes only entries no pass has used for a while:
 * pages past the end of a catalog, repos and models that went away.
 *
 * Thread rules: a validator_cache belongs to one thread.  Several
 * processes may share DIR: writes are atomic renames, the last one wins.
 */
#ifndef STYLUS_CRAWLER_VALIDATOR_CACHE_H
#define STYLUS_CRAWLER_VALIDATOR_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/errors.h"

#define VALIDATOR_CACHE_VERSION   1
#define VALIDATOR_CACHE_MAX_KEY   4096
#define VALIDATOR_CACHE_MAX_ENTRY (4u << 20)

struct validator_record {
        char *id;           /* record id */
        char *content_hash; /* st_raw_record_hash() */
        char *stable_hash;  /* the same with stats zeroed: moves only when the content does */
};

/* One entry; which fields mean something depends on its kind (above). */
struct validator_entry {
        char *etag;          /* or NULL */
        char *last_modified; /* or NULL */
        char *next_cursor;   /* page: cursor after it, NULL on the last page */
        char *revision;      /* hf item: the sha the records were built at, or NULL */
        struct validator_record *records;
        size_t n_records;
        bool has_body; /* hf item: body holds the README (else the repo has none) */
        char *body;    /* body_len bytes + a NUL */
        size_t body_len;
};

struct validator_cache;

/*
 * Open (creating it and its parents when missing) the cache in dir.
 * Returns 0, ST_EINVAL (dir empty or too long), ST_EIO (cannot be made or
 * is not a writable directory; err names it) or ST_ENOMEM.
 */
int validator_cache_open(const char *dir, struct validator_cache **out, struct st_error *err);

/* Free c; *c becomes NULL.  NULL is fine.  Entries stay on disk. */
void validator_cache_destroy(struct validator_cache **c);

/*
 * Read the entry of key into *out (zeroed first), its strings and arrays
 * in a.  Returns 0, ST_ENOTFOUND (no entry, or one that is damaged, too
 * big, of another version or another key: all misses), or ST_ENOMEM
 * (arena full).
 */
int validator_cache_get(struct validator_cache *c, const char *key, struct arena *a,
                        struct validator_entry *out);

/*
 * Write e as the entry of key, replacing any.  Returns 0, ST_EINVAL (key
 * empty or over VALIDATOR_CACHE_MAX_KEY), ST_ETOOBIG, ST_ENOMEM or ST_EIO
 * (err says what failed); on error the old entry, if any, is untouched.
 */
int validator_cache_put(struct validator_cache *c, const char *key, const struct validator_entry *e,
                        struct st_error *err);

/* Forget the entry of key.  Returns 0 (also when there was none) or ST_EIO. */
int validator_cache_remove(struct validator_cache *c, const char *key);

/*
 * Remove the entries (and leftover temp files) not written or read for
 * max_age_s seconds; *removed counts them.  Costs one stat per file.
 * Returns 0, or ST_EIO when DIR cannot be read.
 */
int validator_cache_prune(struct validator_cache *c, long max_age_s, size_t *removed,
                          struct st_error *err);

#endif
