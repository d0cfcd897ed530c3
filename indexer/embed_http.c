/*
 * embed_http.c - the embeddings client of embed_http.h.
 *
 * A call is cut into batches; each batch is one request body, sent with
 * retries (run_batch) one attempt at a time (attempt) over one libcurl easy
 * handle kept for the life of the client, so its connection is reused.  The
 * answer is read by the pure embed_response_parse().
 */
#include "indexer/embed_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proto/embed.h"
#include "proto/http_post.h"
#include "proto/http_util.h"
#include "proto/log.h"
#include "proto/wire.h"

#define CONNECT_MAX_MS 10000L
#define MIN_ATTEMPT_MS 250 /* no attempt starts with less time than this left */

struct embed_http {
        struct embed_http_config cfg; /* url, model, key, user_agent point to the copies below */
        char *endpoint;               /* resolved .../embeddings */
        char *model;
        char *key; /* NULL when none; wiped on destroy */
        char *user_agent;
        char *body_head; /* request body up to and including "input":[ */
        CURL *easy;      /* kept between requests, and with it the connection */
        struct embed_http_stats stats;
        uint64_t rng;
};

void embed_http_config_defaults(struct embed_http_config *c)
{
        memset(c, 0, sizeof(*c));
        c->batch = EMBED_HTTP_DEFAULT_BATCH;
        c->max_request_bytes = EMBED_HTTP_REQUEST_BYTES;
        c->timeout_ms = 30000;
        c->deadline_ms = 120000;
        c->max_attempts = 6;
        c->retry_base_ms = 1000;
        c->retry_max_ms = 30000;
        c->user_agent = EMBED_HTTP_USER_AGENT;
}

/* ---- text ---- */

/* Length of the valid UTF-8 sequence at p (left bytes remain), 0 when invalid. */
static size_t utf8_sequence(const unsigned char *p, size_t left)
{
        size_t n, i;
        unsigned long c;

        if (p[0] < 0x80)
                return 1;
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 2;
        else if (p[0] >= 0xe0 && p[0] <= 0xef)
                n = 3;
        else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                n = 4;
        else
                return 0;
        if (left < n)
                return 0;
        for (i = 1; i < n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
        if (n == 3) {
                c = ((p[0] & 0x0ful) << 12) | ((p[1] & 0x3ful) << 6) | (p[2] & 0x3ful);
                if (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))
                        return 0;
        } else if (n == 4) {
                c = ((p[0] & 0x07ul) << 18) | ((p[1] & 0x3ful) << 12) | ((p[2] & 0x3ful) << 6) |
                    (p[3] & 0x3ful);
                if (c < 0x10000 || c > 0x10ffff)
                        return 0;
        }
        return n;
}

/*
 * text as a JSON string (malloc'd, *len bytes): cut to EMBED_HTTP_MAX_TEXT
 * bytes on a character boundary, each byte of an invalid UTF-8 sequence
 * replaced by '?' (jansson, rightly, refuses invalid UTF-8).
 */
static char *encode_text(const char *text, size_t *len)
{
        const unsigned char *p = (const unsigned char *)text;
        size_t in = strlen(text), i = 0, o = 0, n;
        char *clean = malloc((in < EMBED_HTTP_MAX_TEXT ? in : EMBED_HTTP_MAX_TEXT) + 1);
        json_t *s;
        char *out = NULL;

        if (!clean)
                return NULL;
        while (i < in) {
                n = utf8_sequence(p + i, in - i);
                if (o + (n ? n : 1) > EMBED_HTTP_MAX_TEXT)
                        break;
                if (n == 0) {
                        clean[o++] = '?';
                        i++;
                        continue;
                }
                memcpy(clean + o, p + i, n);
                o += n;
                i += n;
        }
        s = json_stringn(clean, o);
        if (s)
                out = json_dumps(s, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(s);
        free(clean);
        if (out)
                *len = strlen(out);
        return out;
}

/* Copy of s cut to size - 1 bytes with every byte that is not printable ASCII made '?'. */
static void quote(char *out, size_t size, const char *s, size_t len)
{
        size_t n = len < size - 1 ? len : size - 1, i;

        for (i = 0; i < n; i++)
                out[i] = s[i] >= 0x20 && s[i] <= 0x7e ? s[i] : '?';
        out[n] = '\0';
}

/* ---- reading an answer (pure) ---- */

size_t embed_response_max_body(size_t n, int dim)
{
        size_t numbers;

        if (dim <= 0 || n == 0)
                return EMBED_HTTP_BODY_SLACK;
        if (n > EMBED_HTTP_MAX_BODY / (size_t)dim)
                return EMBED_HTTP_MAX_BODY;
        numbers = n * (size_t)dim;
        if (numbers > (EMBED_HTTP_MAX_BODY - EMBED_HTTP_BODY_SLACK) / EMBED_HTTP_BYTES_PER_NUM)
                return EMBED_HTTP_MAX_BODY;
        return EMBED_HTTP_BODY_SLACK + numbers * EMBED_HTTP_BYTES_PER_NUM;
}

/* The message of an error body: error.message, error (a string), message or detail. */
static const json_t *error_text(const json_t *root)
{
        const json_t *e = json_object_get(root, "error");

        if (json_is_object(e))
                e = json_object_get(e, "message");
        if (!json_is_string(e))
                e = json_object_get(root, "message");
        if (!json_is_string(e))
                e = json_object_get(root, "detail");
        return json_is_string(e) ? e : NULL;
}

bool embed_error_message(const char *body, size_t len, char *out, size_t size)
{
        const json_t *m;
        json_t *root;
        bool found = false;

        if (!out || size == 0)
                return false;
        out[0] = '\0';
        if (!body || len == 0 || len > EMBED_HTTP_MAX_BODY)
                return false;
        root = json_loadb(body, len, 0, NULL);
        m = json_is_object(root) ? error_text(root) : NULL;
        if (m && json_string_length(m) > 0) {
                quote(out, size, json_string_value(m), json_string_length(m));
                found = true;
        }
        json_decref(root);
        return found;
}

/*
 * Where a JSON text that failed to parse has a bare NaN or Infinity (a
 * token outside strings, as Python's json.dumps writes them): its offset,
 * or -1.
 */
static long nonfinite_literal(const char *s, size_t len)
{
        bool in_string = false;
        size_t i;

        for (i = 0; i < len; i++) {
                if (in_string) {
                        if (s[i] == '\\')
                                i++;
                        else if (s[i] == '"')
                                in_string = false;
                        continue;
                }
                if (s[i] == '"')
                        in_string = true;
                else if ((len - i >= 3 && memcmp(s + i, "NaN", 3) == 0) ||
                         (len - i >= 8 && memcmp(s + i, "Infinity", 8) == 0))
                        return (long)i;
        }
        return -1;
}

static int not_json(const char *body, size_t len, const json_error_t *jerr, struct st_error *err)
{
        char why[80];
        long at = nonfinite_literal(body, len);

        if (at >= 0)
                return st_fail(err, ST_EPARSE,
                               "response has a non-finite number (NaN or Infinity) at byte %ld",
                               at);
        if (strstr(jerr->text, "overflow"))
                return st_fail(err, ST_EPARSE, "response has a non-finite number (%s) at byte %d",
                               jerr->text, jerr->position);
        quote(why, sizeof(why), jerr->text, strlen(jerr->text));
        return st_fail(err, ST_EPARSE, "response is not JSON: %s at byte %d", why, jerr->position);
}

/* Scale v[dim] to unit length; an all-zero vector stays zero. */
static void normalize(float *v, int dim)
{
        double sum = 0, norm;
        int i;

        for (i = 0; i < dim; i++)
                sum += (double)v[i] * (double)v[i];
        if (sum <= 0)
                return;
        norm = sqrt(sum);
        for (i = 0; i < dim; i++)
                v[i] = (float)((double)v[i] / norm);
}

/* Read entry number i (data[i]) into out, placing it by its index; seen[] marks indexes. */
static int read_entry(const json_t *entry, size_t i, size_t n, int dim, float *out, bool *seen,
                      struct st_error *err)
{
        const json_t *idx, *emb, *v;
        json_int_t k;
        size_t j;
        double x;
        float *row;

        if (!json_is_object(entry))
                return st_fail(err, ST_ETYPE, "data[%zu] is %s, not an object", i,
                               http_util_json_type_name(entry));
        idx = json_object_get(entry, "index");
        emb = json_object_get(entry, "embedding");
        if (!idx)
                return st_fail(err, ST_EMISSING, "data[%zu] has no index", i);
        if (!json_is_integer(idx))
                return st_fail(err, ST_ETYPE, "data[%zu].index is %s, not an integer", i,
                               http_util_json_type_name(idx));
        k = json_integer_value(idx);
        if (k < 0 || (unsigned long long)k >= n)
                return st_fail(err, ST_EPROTO, "data[%zu].index %lld is out of range 0..%zu", i,
                               (long long)k, n - 1);
        if (seen[k])
                return st_fail(err, ST_EPROTO, "index %lld appears twice in data", (long long)k);
        seen[k] = true;
        if (!emb)
                return st_fail(err, ST_EMISSING, "embedding %lld is missing", (long long)k);
        if (json_is_string(emb))
                return st_fail(err, ST_ETYPE,
                               "embedding %lld is a string (base64?); this client asks for "
                               "encoding_format \"float\"",
                               (long long)k);
        if (!json_is_array(emb))
                return st_fail(err, ST_ETYPE, "embedding %lld is %s, not an array", (long long)k,
                               http_util_json_type_name(emb));
        if (json_array_size(emb) != (size_t)dim)
                return st_fail(err, ST_EDIM,
                               "embedding %lld has %zu dimensions, the configured dimension is "
                               "%d",
                               (long long)k, json_array_size(emb), dim);
        row = out + (size_t)k * (size_t)dim;
        json_array_foreach(emb, j, v)
        {
                if (!json_is_number(v))
                        return st_fail(err, ST_ETYPE, "embedding %lld, value %zu is %s",
                                       (long long)k, j, http_util_json_type_name(v));
                x = json_number_value(v);
                if (!isfinite(x) || fabs(x) > FLT_MAX)
                        return st_fail(err, ST_EPARSE,
                                       "embedding %lld, value %zu is not a finite float",
                                       (long long)k, j);
                row[j] = (float)x;
        }
        normalize(row, dim);
        return 0;
}

static int read_data(const json_t *root, size_t n, int dim, float *out, struct st_error *err)
{
        const json_t *data = json_object_get(root, "data"), *entry, *e;
        char why[EMBED_HTTP_QUOTE_MAX + 1];
        bool *seen;
        size_t i;
        int rc = 0;

        if (!data || json_is_null(data)) {
                e = json_object_get(root, "error");
                if (e && !json_is_null(e)) {
                        e = error_text(root);
                        quote(why, sizeof(why), e ? json_string_value(e) : "",
                              e ? json_string_length(e) : 0);
                        return st_fail(err, ST_EHTTP, "response is an error: '%s'", why);
                }
                return st_fail(err, ST_EMISSING, "response has no data");
        }
        if (!json_is_array(data))
                return st_fail(err, ST_ETYPE, "data is %s, not an array",
                               http_util_json_type_name(data));
        if (json_array_size(data) != n)
                return st_fail(err, ST_EPROTO, "expected %zu embedding%s, got %zu", n,
                               n == 1 ? "" : "s", json_array_size(data));
        seen = calloc(n, sizeof(*seen));
        if (!seen)
                return st_fail(err, ST_ENOMEM, "out of memory");
        json_array_foreach(data, i, entry)
        {
                rc = read_entry(entry, i, n, dim, out, seen, err);
                if (rc)
                        break;
        }
        free(seen);
        return rc;
}

int embed_response_parse(const char *body, size_t len, size_t n, int dim, float *out,
                         struct st_error *err)
{
        json_error_t jerr;
        json_t *root;
        int rc;

        if (!body || !out || n == 0 || n > EMBED_HTTP_MAX_BATCH || dim <= 0 || dim > EMBED_MAX_DIM)
                return st_fail(err, ST_EINVAL, "embed_response_parse: bad argument");
        if (len > embed_response_max_body(n, dim))
                return st_fail(err, ST_ETOOBIG, "response of %zu bytes, over its cap of %zu", len,
                               embed_response_max_body(n, dim));
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return not_json(body, len, &jerr, err);
        if (!json_is_object(root))
                rc = st_fail(err, ST_ETYPE, "response is %s, not an object",
                             http_util_json_type_name(root));
        else
                rc = read_data(root, n, dim, out, err);
        json_decref(root);
        return rc;
}

/* ---- configuration ---- */

static int check_config(const struct embed_http_config *c, struct st_error *err)
{
        if (!c->url || (strncasecmp(c->url, "http://", 7) && strncasecmp(c->url, "https://", 8)))
                return st_fail(err, ST_EINVAL, "embed url: need an http:// or https:// URL");
        if (!http_util_printable_ascii(c->url))
                return st_fail(err, ST_EINVAL, "embed url: control or non-ASCII characters");
        if (!c->model || !*c->model || strlen(c->model) > EMBED_HTTP_MODEL_MAX ||
            !http_util_printable_ascii(c->model))
                return st_fail(err, ST_EINVAL, "embed model: need 1 to %d printable ASCII bytes",
                               EMBED_HTTP_MODEL_MAX);
        if (c->dim <= 0 || c->dim > EMBED_MAX_DIM)
                return st_fail(err, ST_EINVAL, "embed dim: need 1..%d", EMBED_MAX_DIM);
        if (c->key && (strlen(c->key) > EMBED_HTTP_KEY_MAX || !http_util_printable_ascii(c->key)))
                return st_fail(err, ST_EINVAL, "embed key: over %d bytes or not printable ASCII",
                               EMBED_HTTP_KEY_MAX);
        if (c->batch == 0 || c->batch > EMBED_HTTP_MAX_BATCH)
                return st_fail(err, ST_EINVAL, "embed batch: need 1..%d texts",
                               EMBED_HTTP_MAX_BATCH);
        if (c->max_request_bytes < EMBED_HTTP_MIN_REQUEST)
                return st_fail(err, ST_EINVAL, "embed request cap: need at least %zu bytes",
                               EMBED_HTTP_MIN_REQUEST);
        if (c->timeout_ms <= 0 || c->deadline_ms <= 0 || c->max_attempts == 0 ||
            c->retry_base_ms == 0 || c->retry_max_ms < c->retry_base_ms)
                return st_fail(err, ST_EINVAL,
                               "embed timeouts, attempts and backoff must be > 0 (and the "
                               "backoff ceiling >= its base)");
        return 0;
}

/* The fixed start of every request body: model, encoding, dimensions, then the input array. */
static char *make_body_head(const struct embed_http_config *c)
{
        json_t *m = json_string(c->model);
        char *model = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL;
        char *head = NULL, dims[48] = "";
        size_t size;

        json_decref(m);
        if (!model)
                return NULL;
        if (c->send_dimensions)
                snprintf(dims, sizeof(dims), "\"dimensions\":%d,", c->dim);
        size = strlen(model) + strlen(dims) +
               sizeof("{\"model\":,\"encoding_format\":\"float\",\"input\":[");
        head = malloc(size);
        if (head)
                snprintf(head, size, "{\"model\":%s,\"encoding_format\":\"float\",%s\"input\":[",
                         model, dims);
        free(model);
        return head;
}

int embed_http_new(const struct embed_http_config *c, struct embed_http **out, struct st_error *err)
{
        struct embed_http *h;
        int rc;

        if (!c || !out)
                return st_fail(err, ST_EINVAL, "embed_http_new: NULL argument");
        rc = check_config(c, err);
        if (rc)
                return rc;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return st_fail(err, ST_ENOMEM, "curl_global_init failed");
        h = calloc(1, sizeof(*h));
        if (!h) {
                curl_global_cleanup();
                return st_fail(err, ST_ENOMEM, "embed_http_new: out of memory");
        }
        h->cfg = *c;
        h->endpoint = http_util_endpoint(c->url, "/embeddings");
        h->model = strdup(c->model);
        h->key = c->key && *c->key ? strdup(c->key) : NULL;
        h->user_agent = strdup(c->user_agent ? c->user_agent : EMBED_HTTP_USER_AGENT);
        h->body_head = make_body_head(c);
        h->easy = curl_easy_init();
        if (!h->endpoint || !h->model || (c->key && *c->key && !h->key) || !h->user_agent ||
            !h->body_head || !h->easy) {
                rc = st_fail(err, ST_ENOMEM, "embed_http_new: out of memory");
                goto out_free;
        }
        if (http_post_setup(h->easy, h->endpoint, h->user_agent)) {
                rc = st_fail(err, ST_EINVAL, "embed url: libcurl refuses %s", h->endpoint);
                goto out_free;
        }
        h->cfg.url = h->endpoint;
        h->cfg.model = h->model;
        h->cfg.key = h->key;
        h->cfg.user_agent = h->user_agent;
        h->rng = (uint64_t)wire_now_ms() * 6364136223846793005ull ^ (uint64_t)getpid();
        if (!h->rng)
                h->rng = 1;
        *out = h;
        return 0;
out_free:
        embed_http_destroy(&h);
        return rc;
}

void embed_http_destroy(struct embed_http **hp)
{
        struct embed_http *h;

        if (!hp || !*hp)
                return;
        h = *hp;
        if (h->easy)
                curl_easy_cleanup(h->easy);
        if (h->key) {
                explicit_bzero(h->key, strlen(h->key));
                free(h->key);
        }
        free(h->endpoint);
        free(h->model);
        free(h->user_agent);
        free(h->body_head);
        free(h);
        *hp = NULL;
        curl_global_cleanup();
}

const char *embed_http_model(const struct embed_http *h)
{
        return h->model;
}

int embed_http_dim(const struct embed_http *h)
{
        return h->cfg.dim;
}

const char *embed_http_endpoint(const struct embed_http *h)
{
        return h->endpoint;
}

void embed_http_get_stats(const struct embed_http *h, struct embed_http_stats *out)
{
        *out = h->stats;
}

/* ---- attempts ---- */

/* Replace a message that quotes the key. */
static void scrub(const struct embed_http *h, struct st_error *e)
{
        if (http_util_quotes_key(e->msg, h->key))
                snprintf(e->msg, sizeof(e->msg), "%s (message withheld: it quoted the key)",
                         st_strerror(e->code));
}

static bool retryable_status(long status)
{
        return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* The failure of a non-2xx answer, with the server's message when it has one. */
static int http_failure(const struct embed_http *h, const struct http_post_reply *r,
                        struct st_error *why)
{
        char msg[EMBED_HTTP_QUOTE_MAX + 1];
        int code = r->status == 429 ? ST_EAGAIN : ST_EHTTP;
        const char *hint = "";

        if (r->status == 401 || r->status == 403)
                hint = " (check --embed-key-file or STYLUS_EMBED_KEY)";
        else if (r->status >= 300 && r->status <= 399)
                hint = " (redirects are not followed: give the final URL)";
        else if (r->status == 404)
                hint = " (check --embed-url)";
        if (!embed_error_message(r->body, r->len, msg, sizeof(msg)))
                return st_fail(why, code, "HTTP %ld%s", r->status, hint);
        if (http_util_quotes_key(msg, h->key))
                return st_fail(why, code, "HTTP %ld: (server message withheld: it quoted the key)",
                               r->status);
        return st_fail(why, code, "HTTP %ld: '%s'%s", r->status, msg, hint);
}

/* Read a 2xx answer; a non-JSON one names its content type. */
static int read_answer(struct embed_http *h, const struct http_post_reply *r, size_t m, float *out,
                       struct st_error *why)
{
        struct st_error e = {0};
        int rc = embed_response_parse(r->body ? r->body : "", r->len, m, h->cfg.dim, out, &e);

        if (rc == ST_EPARSE && !strstr(r->content_type, "json") && !strstr(e.msg, "non-finite"))
                return st_fail(why, rc, "%s (Content-Type '%s')", e.msg, r->content_type);
        *why = e;
        return rc;
}

/* One request and its answer; *retry says whether another attempt may help. */
static int attempt(struct embed_http *h, const char *body, size_t len, size_t m, float *out,
                   long timeout_ms, bool *retry, long *retry_after, struct st_error *why)
{
        struct http_post_reply r = {.max = embed_response_max_body(m, h->cfg.dim),
                                    .retry_after_max_ms = EMBED_HTTP_RETRY_AFTER_MAX,
                                    .connect_max_ms = CONNECT_MAX_MS};
        int rc;

        h->stats.requests++;
        rc = http_post(h->easy, h->key, body, len, timeout_ms, &r, why);
        *retry_after = r.retry_after_ms;
        *retry = false;
        if (rc) {
                h->stats.timeouts += rc == ST_ETIMEOUT;
                *retry = rc == ST_ETIMEOUT || rc == ST_ENET || rc == ST_ETRUNC;
        } else if (r.status < 200 || r.status > 299) {
                rc = http_failure(h, &r, why);
                h->stats.rate_limited += r.status == 429;
                h->stats.server_errors += r.status != 429 && retryable_status(r.status);
                *retry = retryable_status(r.status);
        } else {
                rc = read_answer(h, &r, m, out, why);
                h->stats.malformed += rc != 0 && rc != ST_ENOMEM;
        }
        if (rc)
                scrub(h, why);
        http_post_reply_release(&r);
        return rc;
}

/* Backoff before retry number n (1, 2 ...): base doubling up to the ceiling, jitter in [d/2, d]. */
static int64_t backoff_ms(struct embed_http *h, unsigned n)
{
        int64_t d = (int64_t)h->cfg.retry_base_ms << (n - 1 < 20 ? n - 1 : 20);

        if (d > (int64_t)h->cfg.retry_max_ms)
                d = h->cfg.retry_max_ms;
        h->rng ^= h->rng >> 12;
        h->rng ^= h->rng << 25;
        h->rng ^= h->rng >> 27;
        return d / 2 + (int64_t)((h->rng * 2685821657736338717ull) % (uint64_t)(d / 2 + 1));
}

/* Sleep ms; false when a signal cut it short (the process is stopping). */
static bool pause_ms(int64_t ms)
{
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

        if (ms <= 0)
                return true;
        return nanosleep(&ts, NULL) == 0 || errno != EINTR;
}

/* Send one batch body of m texts until an answer, a failure retrying cannot fix, or the deadline. */
static int run_batch(struct embed_http *h, const char *body, size_t len, size_t m, float *out,
                     struct st_error *err)
{
        int64_t deadline = wire_now_ms() + h->cfg.deadline_ms, delay, left;
        struct st_error why = {0};
        long retry_after = -1;
        unsigned n;
        bool retry = true;
        int rc = ST_ETIMEOUT;

        for (n = 0; n < h->cfg.max_attempts && retry; n++) {
                if (n > 0) {
                        delay = retry_after >= 0 ? retry_after : backoff_ms(h, n);
                        if (wire_now_ms() + delay > deadline - MIN_ATTEMPT_MS) {
                                struct st_error last = why;

                                st_fail(&why, last.code == ST_EHTTP ? ST_EAGAIN : last.code,
                                        "%s; no retry: waiting %lld ms would pass the %ld ms "
                                        "deadline",
                                        last.msg, (long long)delay, h->cfg.deadline_ms);
                                break;
                        }
                        log_warn("embeddings: %s; retry %u in %lld ms", why.msg, n,
                                 (long long)delay);
                        if (!pause_ms(delay))
                                return st_fail(err, ST_EAGAIN,
                                               "embeddings: interrupted by a signal while "
                                               "waiting to retry");
                        h->stats.retries++;
                }
                left = deadline - wire_now_ms();
                if (left < MIN_ATTEMPT_MS) {
                        if (n == 0)
                                st_fail(&why, ST_ETIMEOUT, "no time left for a request");
                        break;
                }
                rc = attempt(h, body, len, m, out,
                             left < h->cfg.timeout_ms ? (long)left : h->cfg.timeout_ms, &retry,
                             &retry_after, &why);
                if (rc == 0)
                        return 0;
        }
        return st_fail(err, why.code ? why.code : rc, "embeddings: %s (%u attempt%s)", why.msg, n,
                       n == 1 ? "" : "s");
}

/* How many of the encoded texts from first go into one request body. */
static size_t batch_size(const struct embed_http *h, const size_t *lens, size_t first, size_t n)
{
        size_t bytes = strlen(h->body_head) + sizeof("]}"), m = 0;

        while (first + m < n && m < h->cfg.batch &&
               bytes + lens[first + m] + 1 <= h->cfg.max_request_bytes) {
                bytes += lens[first + m] + 1;
                m++;
        }
        return m;
}

/* The body of a request for the m encoded texts enc[0..m-1], malloc'd. */
static char *make_body(const struct embed_http *h, char *const *enc, const size_t *lens, size_t m,
                       size_t *len)
{
        size_t head = strlen(h->body_head), size = head + 3, pos = head, i;
        char *body;

        for (i = 0; i < m; i++)
                size += lens[i] + 1;
        body = malloc(size);
        if (!body)
                return NULL;
        memcpy(body, h->body_head, head);
        for (i = 0; i < m; i++) {
                if (i)
                        body[pos++] = ',';
                memcpy(body + pos, enc[i], lens[i]);
                pos += lens[i];
        }
        memcpy(body + pos, "]}", 3);
        *len = pos + 2;
        return body;
}

int embed_http_embed(struct embed_http *h, const char *const *texts, size_t n, float *out,
                     struct st_error *err)
{
        char **enc = NULL, *body;
        size_t *lens = NULL, first = 0, m, len, i;
        int rc = 0;

        if (!h || !texts || !out || n == 0)
                return st_fail(err, ST_EINVAL, "embed_http_embed: bad argument");
        enc = calloc(n, sizeof(*enc));
        lens = calloc(n, sizeof(*lens));
        if (!enc || !lens) {
                rc = st_fail(err, ST_ENOMEM, "embeddings: out of memory");
                goto out;
        }
        for (i = 0; i < n && !rc; i++)
                if (!texts[i] || !(enc[i] = encode_text(texts[i], &lens[i])))
                        rc = st_fail(err, texts[i] ? ST_ENOMEM : ST_EINVAL,
                                     "embeddings: cannot encode text %zu", i);
        while (!rc && first < n) {
                m = batch_size(h, lens, first, n);
                if (m == 0) { /* cannot happen: one cut text fits EMBED_HTTP_MIN_REQUEST */
                        rc = st_fail(err, ST_ETOOBIG, "embeddings: text %zu over the request cap",
                                     first);
                        break;
                }
                body = make_body(h, enc + first, lens + first, m, &len);
                if (!body) {
                        rc = st_fail(err, ST_ENOMEM, "embeddings: out of memory");
                        break;
                }
                rc = run_batch(h, body, len, m, out + first * (size_t)h->cfg.dim, err);
                free(body);
                first += m;
        }
out:
        for (i = 0; enc && i < n; i++)
                free(enc[i]);
        free(enc);
        free(lens);
        if (rc)
                h->stats.failures++;
        else
                h->stats.texts += n;
        return rc;
}
