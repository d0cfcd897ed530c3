/*
 * driver.h - what every source driver does to a fetched page and to the
 * records it makes: load JSON under a value cap, copy untrusted text into a
 * record field, seal a finished record with its content hash, stamp the
 * crawl time.  hf.c uses these; civitai.c still has private copies of the
 * first, third and fourth (to be moved over).
 *
 * Ownership: strings returned here live in the arena passed in.  Thread
 * rules: pure functions, callable from any thread.
 */
#ifndef STYLUS_CRAWLER_DRIVER_H
#define STYLUS_CRAWLER_DRIVER_H

#include <jansson.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

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

#endif
