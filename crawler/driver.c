/*
 * driver.c - helpers shared by the source drivers; see driver.h.
 */
#include "crawler/driver.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/log.h"

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Rough count of the values in a JSON text: commas + openers + 1. */
static size_t count_json_values(const char *s, size_t len)
{
        size_t n = 1;

        for (size_t i = 0; i < len; i++) {
                if (s[i] == '"') {
                        for (i++; i < len && s[i] != '"'; i++)
                                if (s[i] == '\\')
                                        i++;
                } else if (s[i] == ',' || s[i] == '[' || s[i] == '{') {
                        n++;
                }
        }
        return n;
}

int driver_load_json(const char *json, size_t len, size_t max_values, const char *what,
                     json_t **root, struct st_error *err)
{
        json_error_t jerr;

        *root = NULL;
        if (count_json_values(json, len) > max_values)
                return st_fail(err, ST_ETOOBIG, "%s: more than %zu JSON values", what, max_values);
        *root = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!*root)
                return st_fail(err, ST_EPARSE, "%s: line %d column %d: %.120s", what, jerr.line,
                               jerr.column, jerr.text);
        return 0;
}

const char *driver_json_string(const json_t *obj, const char *key)
{
        const json_t *v = json_object_get(obj, key);
        size_t len = json_string_length(v);

        if (!json_is_string(v) || len == 0 || len >= ST_LIMIT_STRING ||
            strlen(json_string_value(v)) != len)
                return NULL;
        return json_string_value(v);
}

/*
 * Length of the UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates,
 * nothing past U+10FFFF), 0 if invalid: the same rule as the msgpack decoder.
 */
static size_t utf8_sequence(const unsigned char *s, size_t left)
{
        size_t n;
        unsigned min2 = 0x80, max2 = 0xBF;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xC2 && s[0] <= 0xDF)
                n = 2;
        else if (s[0] >= 0xE0 && s[0] <= 0xEF)
                n = 3;
        else if (s[0] >= 0xF0 && s[0] <= 0xF4)
                n = 4;
        else
                return 0;
        if (left < n)
                return 0;
        if (s[0] == 0xE0)
                min2 = 0xA0;
        else if (s[0] == 0xED)
                max2 = 0x9F;
        else if (s[0] == 0xF0)
                min2 = 0x90;
        else if (s[0] == 0xF4)
                max2 = 0x8F;
        if (s[1] < min2 || s[1] > max2)
                return 0;
        for (size_t i = 2; i < n; i++)
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
        return n;
}

char *driver_copy_text(struct arena *a, const char *s, size_t len, size_t max)
{
        const unsigned char *in = (const unsigned char *)s;
        size_t i = 0, o = 0, cap;
        char *out;

        /* Each input byte yields at most 3 output bytes (one U+FFFD). */
        cap = len < (max - 1) / 3 ? len * 3 : max - 1;
        out = arena_alloc(a, cap + 1);
        if (!out)
                return NULL;
        while (i < len) {
                size_t n = in[i] ? utf8_sequence(in + i, len - i) : 0;
                const char *piece = s + i;
                size_t piece_len = n;

                if (in[i] == '\0') {
                        i++;
                        continue;
                }
                if (n == 0) {
                        piece = replacement;
                        piece_len = 3;
                        n = 1;
                }
                if (o + piece_len > cap)
                        break;
                memcpy(out + o, piece, piece_len);
                o += piece_len;
                i += n;
        }
        out[o] = '\0';
        return out;
}

int driver_seal_record(struct arena *a, struct st_raw_record *r)
{
        char hash[65], *encoded, *copy;
        size_t len;
        int rc = st_raw_record_to_msgpack(r, &encoded, &len);

        if (rc)
                return rc;
        free(encoded);
        if (len > ST_LIMIT_RECORD)
                return ST_ETOOBIG;
        rc = st_raw_record_hash(r, hash);
        if (rc)
                return rc;
        copy = arena_strdup(a, hash);
        if (!copy)
                return ST_ENOMEM;
        r->content_hash = copy;
        return 0;
}

void driver_utc_now(char out[32])
{
        time_t t = time(NULL);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int driver_base_length(const char *base_url)
{
        size_t len = strlen(base_url);

        while (len > 0 && base_url[len - 1] == '/')
                len--;
        return len > INT_MAX ? INT_MAX : (int)len;
}

int driver_stable_hash(const struct st_raw_record *r, char out[65])
{
        struct st_raw_record copy = *r;

        memset(&copy.stats, 0, sizeof(copy.stats));
        return st_raw_record_hash(&copy, out);
}

bool driver_record_known(const struct validator_entry *item, const struct st_raw_record *r,
                         const char *stable_hash)
{
        for (size_t i = 0; i < item->n_records; i++) {
                const struct validator_record *v = &item->records[i];

                if (strcmp(v->id, r->id) != 0)
                        continue;
                return (r->content_hash && strcmp(v->content_hash, r->content_hash) == 0) ||
                       (stable_hash && strcmp(v->stable_hash, stable_hash) == 0);
        }
        return false;
}

int driver_cached_page(struct validator_cache *c, const char *url, struct arena *a,
                       struct validator_entry *e)
{
        int rc;

        memset(e, 0, sizeof(*e));
        if (!c)
                return ST_ENOTFOUND;
        rc = validator_cache_get(c, url, a, e);
        if (rc)
                return rc;
        return e->etag || e->last_modified ? 0 : ST_ENOTFOUND;
}

void driver_make_conditional(struct fetch_request *req, const struct validator_entry *e)
{
        req->if_none_match = e->etag;
        req->if_modified_since = e->last_modified;
}

int driver_entry_ids(struct arena *a, const struct validator_entry *e, char ***ids, size_t *n)
{
        *ids = NULL;
        *n = 0;
        if (e->n_records == 0)
                return 0;
        *ids = arena_calloc(a, e->n_records, sizeof(**ids));
        if (!*ids)
                return ST_ENOMEM;
        for (size_t i = 0; i < e->n_records; i++)
                (*ids)[i] = e->records[i].id;
        *n = e->n_records;
        return 0;
}

int driver_validator_record(struct arena *a, const struct st_raw_record *r,
                            struct validator_record *vr)
{
        char stable[65];
        int rc = driver_stable_hash(r, stable);

        if (rc)
                return rc;
        vr->id = r->id;
        vr->content_hash = r->content_hash;
        vr->stable_hash = arena_strdup(a, stable);
        return vr->stable_hash && vr->content_hash ? 0 : ST_ENOMEM;
}

void driver_cache_put(struct validator_cache *c, const char *key, const struct validator_entry *e)
{
        struct st_error err = {0, ""};

        if (c && validator_cache_put(c, key, e, &err))
                log_warn("%s (the crawl goes on without it)", err.msg);
}

void driver_remember_page(struct validator_cache *c, const char *url,
                          const struct fetch_result *res, const char *next_cursor,
                          const struct validator_record *records, size_t n)
{
        struct validator_entry e = {0};

        if (!c || (!res->etag && !res->last_modified))
                return;
        e.etag = res->etag;
        e.last_modified = res->last_modified;
        e.next_cursor = (char *)next_cursor;
        e.records = (struct validator_record *)records;
        e.n_records = n;
        driver_cache_put(c, url, &e);
}

bool driver_entry_same(const struct validator_entry *old, const struct validator_record *vr,
                       size_t n)
{
        if (old->n_records != n)
                return false;
        for (size_t i = 0; i < n; i++) {
                const struct validator_record *o = &old->records[i];

                if (strcmp(o->id, vr[i].id) != 0 ||
                    strcmp(o->content_hash, vr[i].content_hash) != 0)
                        return false;
        }
        return true;
}
