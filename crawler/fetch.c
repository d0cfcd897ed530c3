/*
 * fetch.c - libcurl multi driver behind fetch.h.
 *
 * One run keeps a job per request.  A job is WAITING (queued, or backing off
 * until not_before), ACTIVE (its easy handle is in the multi handle) or DONE.
 * The loop starts every WAITING job whose time has come and whose origin has
 * a free slot and whose origin's next_start has passed, lets curl work, and
 * turns each finished transfer into DONE or back into WAITING for a retry.
 * Origins (struct host) outlive runs so the rate limit holds across them.
 */
#include "crawler/fetch.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "crawler/address_guard.h"
#include "proto/log.h"

#define HEADER_VALUE_MAX 8192 /* longer ETag / Link / Last-Modified values are ignored */
#define BODY_FIRST_ALLOC 16384
#define HOSTS_MAX        256 /* idle origins are forgotten past this many */
#define POLL_MAX_MS      1000

enum job_state { JOB_WAITING, JOB_ACTIVE, JOB_DONE };

struct host {
        char *origin;       /* "scheme://host:port", lowercase */
        unsigned active;    /* transfers running now */
        int64_t next_start; /* monotonic ms before which no request may start */
        long quota;         /* last RateLimit-Policy quota seen, -1 unknown */
};

struct job {
        struct fetch_request *req;
        enum job_state state;
        CURL *easy;
        struct curl_slist *headers;
        char *origin;       /* of req->url, malloc'd */
        int64_t not_before; /* monotonic ms */
        size_t body_cap;    /* bytes allocated for result.body */
        size_t max_body;
        bool too_big;               /* the write callback refused the body */
        char *link_next;            /* raw Link rel="next" target of the current response */
        char *ratelimit;            /* raw RateLimit value of the current response */
        char *ratelimit_policy;     /* raw RateLimit-Policy value of the current response */
        struct address_guard guard; /* what the current attempt refused to connect to */
        char errbuf[CURL_ERROR_SIZE];
};

struct fetcher {
        struct fetcher_config cfg; /* user_agent, token, token_origin point to copies below */
        char *user_agent;
        char *token;
        char *token_origin; /* origin form of cfg.token_origin */
        CURLM *multi;
        CURL **pool; /* idle easy handles, at most cfg.max_total */
        size_t n_pool;
        struct host *hosts;
        size_t n_hosts;
        unsigned active; /* transfers running now, all origins */
        uint64_t rng;
};

void fetcher_config_defaults(struct fetcher_config *c)
{
        memset(c, 0, sizeof(*c));
        c->user_agent = FETCHER_DEFAULT_USER_AGENT;
        c->max_per_host = 2;
        c->max_total = 16;
        c->rate_per_host = 1.0;
        c->connect_timeout_ms = 10000;
        c->total_timeout_ms = 120000;
        c->low_speed_bytes = 100;
        c->low_speed_time_s = 30;
        c->max_redirects = 3;
        c->max_retries = 3;
        c->retry_base_ms = 1000;
        c->retry_max_ms = 30000;
        c->retry_after_max_ms = 60000;
        c->ratelimit_max_wait_ms = 300000;
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t next_random(struct fetcher *f)
{
        /* xorshift64*: jitter only, not security. */
        f->rng ^= f->rng >> 12;
        f->rng ^= f->rng << 25;
        f->rng ^= f->rng >> 27;
        return f->rng * 2685821657736338717ull;
}

static bool is_http_scheme(const char *scheme)
{
        return strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
}

/*
 * "scheme://host:port" of an http(s) URL, lowercase, malloc'd; NULL when the
 * URL does not parse or has another scheme.
 */
static char *url_origin(const char *url)
{
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL, *out = NULL;
        size_t len;

        if (!u)
                return NULL;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
                goto out_url;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || !is_http_scheme(scheme))
                goto out_url;
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
                goto out_url;
        len = strlen(scheme) + strlen(host) + strlen(port) + 5;
        out = malloc(len);
        if (!out)
                goto out_url;
        snprintf(out, len, "%s://%s:%s", scheme, host, port);
        for (char *p = out; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char)(*p - 'A' + 'a');
out_url:
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return out;
}

/* Resolve a Link target against the URL it came from; NULL unless http(s). */
static char *resolve_url(const char *base, const char *ref)
{
        CURLU *u = curl_url();
        char *full = NULL, *out = NULL;

        if (!u)
                return NULL;
        if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, ref, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
                char *origin = url_origin(full);

                if (origin)
                        out = strdup(full);
                free(origin);
        }
        curl_free(full);
        curl_url_cleanup(u);
        return out;
}

static int copy_string(char **dst, const char *src)
{
        if (!src)
                return 0;
        *dst = strdup(src);
        return *dst ? 0 : ST_ENOMEM;
}

static int check_config(const struct fetcher_config *c, struct st_error *err)
{
        if (!c->user_agent || !c->user_agent[0])
                return st_fail(err, ST_EINVAL, "fetcher: user_agent is required");
        if (c->max_per_host < 1 || c->max_total < 1)
                return st_fail(err, ST_EINVAL, "fetcher: max_per_host and max_total must be >= 1");
        if (!(c->rate_per_host >= 0.0))
                return st_fail(err, ST_EINVAL, "fetcher: rate_per_host must be >= 0");
        if (c->connect_timeout_ms < 0 || c->total_timeout_ms < 0 || c->low_speed_bytes < 0 ||
            c->low_speed_time_s < 0)
                return st_fail(err, ST_EINVAL, "fetcher: timeouts must be >= 0");
        if (c->token && !c->token_origin)
                return st_fail(err, ST_EINVAL, "fetcher: token needs token_origin");
        return 0;
}

int fetcher_new(const struct fetcher_config *c, struct fetcher **out, struct st_error *err)
{
        struct fetcher *f;
        int rc;

        rc = check_config(c, err);
        if (rc)
                return rc;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return st_fail(err, ST_ENOMEM, "fetcher: curl_global_init failed");
        f = calloc(1, sizeof(*f));
        if (!f) {
                rc = st_fail(err, ST_ENOMEM, "fetcher: out of memory");
                goto out_global;
        }
        f->cfg = *c;
        f->cfg.token = NULL;
        f->cfg.token_origin = NULL;
        if (copy_string(&f->user_agent, c->user_agent) || copy_string(&f->token, c->token)) {
                rc = st_fail(err, ST_ENOMEM, "fetcher: out of memory");
                goto out_fetcher;
        }
        if (c->token) {
                f->token_origin = url_origin(c->token_origin);
                if (!f->token_origin) {
                        rc = st_fail(err, ST_EINVAL, "fetcher: token_origin is not an http(s) URL");
                        goto out_fetcher;
                }
        }
        f->pool = calloc(c->max_total, sizeof(*f->pool));
        f->multi = curl_multi_init();
        if (!f->pool || !f->multi) {
                rc = st_fail(err, ST_ENOMEM, "fetcher: out of memory");
                goto out_fetcher;
        }
        f->rng = (uint64_t)now_ms() * 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid() ^
                 (uint64_t)(uintptr_t)f;
        if (!f->rng)
                f->rng = 1;
        *out = f;
        return 0;

out_fetcher:
        fetcher_destroy(&f);
        return rc;
out_global:
        curl_global_cleanup();
        return rc;
}

void fetcher_destroy(struct fetcher **fp)
{
        struct fetcher *f = fp ? *fp : NULL;

        if (!f)
                return;
        for (size_t i = 0; i < f->n_pool; i++)
                curl_easy_cleanup(f->pool[i]);
        free(f->pool);
        if (f->multi)
                curl_multi_cleanup(f->multi);
        for (size_t i = 0; i < f->n_hosts; i++)
                free(f->hosts[i].origin);
        free(f->hosts);
        if (f->token) {
                explicit_bzero(f->token, strlen(f->token));
                free(f->token);
        }
        free(f->token_origin);
        free(f->user_agent);
        free(f);
        *fp = NULL;
        curl_global_cleanup();
}

void fetch_request_release(struct fetch_request *r)
{
        struct fetch_result *res = &r->result;

        free(res->body);
        free(res->content_type);
        free(res->etag);
        free(res->last_modified);
        free(res->next_url);
        memset(res, 0, sizeof(*res));
}

/* ---- origins ---- */

static void forget_idle_hosts(struct fetcher *f, int64_t now)
{
        size_t kept = 0;

        for (size_t i = 0; i < f->n_hosts; i++) {
                if (f->hosts[i].active == 0 && f->hosts[i].next_start <= now) {
                        free(f->hosts[i].origin);
                        continue;
                }
                f->hosts[kept++] = f->hosts[i];
        }
        f->n_hosts = kept;
}

/* The host entry of origin, added if new; NULL when out of memory. */
static struct host *find_host(struct fetcher *f, const char *origin)
{
        struct host *grown;

        for (size_t i = 0; i < f->n_hosts; i++)
                if (strcmp(f->hosts[i].origin, origin) == 0)
                        return &f->hosts[i];
        if (f->n_hosts >= HOSTS_MAX)
                forget_idle_hosts(f, now_ms());
        grown = realloc(f->hosts, (f->n_hosts + 1) * sizeof(*grown));
        if (!grown)
                return NULL;
        f->hosts = grown;
        grown = &f->hosts[f->n_hosts];
        grown->origin = strdup(origin);
        if (!grown->origin)
                return NULL;
        grown->active = 0;
        grown->next_start = 0;
        grown->quota = -1;
        f->n_hosts++;
        return grown;
}

/* ---- curl callbacks ---- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct job *j = userdata;
        struct fetch_result *res = &j->req->result;
        size_t len = size * nmemb;

        if (len > j->max_body - res->body_len) {
                j->too_big = true;
                return 0;
        }
        if (res->body_len + len + 1 > j->body_cap) {
                size_t cap = j->body_cap ? j->body_cap : BODY_FIRST_ALLOC;
                char *grown;

                while (cap < res->body_len + len + 1)
                        cap *= 2;
                if (cap > j->max_body + 1)
                        cap = j->max_body + 1;
                grown = realloc(res->body, cap);
                if (!grown)
                        return 0;
                res->body = grown;
                j->body_cap = cap;
        }
        memcpy(res->body + res->body_len, data, len);
        res->body_len += len;
        res->body[res->body_len] = '\0';
        return len;
}

/* Does the rel="..." parameter list of one Link entry contain "next"? */
static bool rel_is_next(const char *params, size_t len)
{
        const char *end = params + len, *p = params;

        while (p < end) {
                const char *word;

                while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
                        p++;
                if ((size_t)(end - p) < 4 || strncasecmp(p, "rel=", 4) != 0) {
                        while (p < end && *p != ';')
                                p++;
                        continue;
                }
                p += 4;
                if (p < end && *p == '"')
                        p++;
                while (p < end && *p != '"' && *p != ';') {
                        while (p < end && *p == ' ')
                                p++;
                        word = p;
                        while (p < end && *p != ' ' && *p != '"' && *p != ';')
                                p++;
                        if (p - word == 4 && strncasecmp(word, "next", 4) == 0)
                                return true;
                }
                while (p < end && *p != ';')
                        p++;
        }
        return false;
}

/* Remember the target of rel="next" in a Link header value: `<url>; rel="next", ...`. */
static int parse_link(struct job *j, const char *v, size_t len)
{
        const char *end = v + len, *p = v;

        while (p < end) {
                const char *url, *url_end, *params;
                bool quoted = false;

                while (p < end && *p != '<')
                        p++;
                if (p == end)
                        break;
                url = ++p;
                while (p < end && *p != '>')
                        p++;
                if (p == end)
                        break;
                url_end = p++;
                params = p;
                while (p < end && (quoted || *p != ',')) {
                        if (*p == '"')
                                quoted = !quoted;
                        p++;
                }
                if (rel_is_next(params, (size_t)(p - params))) {
                        free(j->link_next);
                        j->link_next = strndup(url, (size_t)(url_end - url));
                        return j->link_next ? 0 : ST_ENOMEM;
                }
        }
        return 0;
}

static int set_header_value(char **dst, const char *v, size_t len)
{
        free(*dst);
        *dst = strndup(v, len);
        return *dst ? 0 : ST_ENOMEM;
}

/* Headers of every response, redirects included; a status line starts afresh. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct job *j = userdata;
        struct fetch_result *res = &j->req->result;
        size_t len = size * nmemb, name_len;
        const char *colon, *v, *end = data + len;
        int rc = 0;

        if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                free(res->etag);
                free(res->last_modified);
                free(j->link_next);
                free(j->ratelimit);
                free(j->ratelimit_policy);
                res->etag = res->last_modified = j->link_next = NULL;
                j->ratelimit = j->ratelimit_policy = NULL;
                return len;
        }
        colon = memchr(data, ':', len);
        if (!colon)
                return len;
        name_len = (size_t)(colon - data);
        v = colon + 1;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        if ((size_t)(end - v) > HEADER_VALUE_MAX) {
                log_debug("fetch: ignoring a %zu-byte header value", (size_t)(end - v));
                return len;
        }
        if (name_len == 4 && strncasecmp(data, "etag", 4) == 0)
                rc = set_header_value(&res->etag, v, (size_t)(end - v));
        else if (name_len == 13 && strncasecmp(data, "last-modified", 13) == 0)
                rc = set_header_value(&res->last_modified, v, (size_t)(end - v));
        else if (name_len == 4 && strncasecmp(data, "link", 4) == 0)
                rc = parse_link(j, v, (size_t)(end - v));
        else if (name_len == 9 && strncasecmp(data, "ratelimit", 9) == 0)
                rc = set_header_value(&j->ratelimit, v, (size_t)(end - v));
        else if (name_len == 16 && strncasecmp(data, "ratelimit-policy", 16) == 0)
                rc = set_header_value(&j->ratelimit_policy, v, (size_t)(end - v));
        return rc ? 0 : len;
}

/* ---- starting a transfer ---- */

static CURL *take_easy(struct fetcher *f)
{
        if (f->n_pool > 0) {
                CURL *e = f->pool[--f->n_pool];

                curl_easy_reset(e);
                return e;
        }
        return curl_easy_init();
}

static void give_easy(struct fetcher *f, CURL *e)
{
        if (f->n_pool < f->cfg.max_total)
                f->pool[f->n_pool++] = e;
        else
                curl_easy_cleanup(e);
}

static int add_header(struct curl_slist **list, const char *name, const char *value)
{
        size_t len = strlen(name) + strlen(value) + 3;
        struct curl_slist *grown;
        char *line = malloc(len);

        if (!line)
                return ST_ENOMEM;
        snprintf(line, len, "%s: %s", name, value);
        grown = curl_slist_append(*list, line);
        free(line);
        if (!grown)
                return ST_ENOMEM;
        *list = grown;
        return 0;
}

static int build_headers(struct job *j)
{
        const struct fetch_request *r = j->req;
        int rc = 0;

        if (r->if_none_match)
                rc = add_header(&j->headers, "If-None-Match", r->if_none_match);
        if (!rc && r->if_modified_since)
                rc = add_header(&j->headers, "If-Modified-Since", r->if_modified_since);
        return rc;
}

/* The bearer token for this job: its own, else the fetcher's for a matching origin. */
static const char *token_for(const struct fetcher *f, const struct job *j)
{
        if (j->req->token)
                return j->req->token;
        if (f->token && strcmp(f->token_origin, j->origin) == 0)
                return f->token;
        return NULL;
}

static void set_options(struct fetcher *f, struct job *j)
{
        CURL *e = j->easy;
        const char *token = token_for(f, j);

        curl_easy_setopt(e, CURLOPT_URL, j->req->url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)f->cfg.max_redirects);
        curl_easy_setopt(e, CURLOPT_USERAGENT, f->user_agent);
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, f->cfg.connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, f->cfg.total_timeout_ms);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, f->cfg.low_speed_bytes);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, f->cfg.low_speed_time_s);
        curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)j->max_body);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, j);
        if (j->headers)
                curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
        if (j->req->public_only && !f->cfg.allow_private) {
                curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, address_guard_open_socket);
                curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &j->guard);
        }
        if (token) {
                /* curl sends it proactively, and only to this origin (no UNRESTRICTED_AUTH). */
                curl_easy_setopt(e, CURLOPT_HTTPAUTH, CURLAUTH_BEARER);
                curl_easy_setopt(e, CURLOPT_XOAUTH2_BEARER, token);
                curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
        }
}

static void finish_job(struct job *j, int code)
{
        j->state = JOB_DONE;
        j->req->result.error.code = code;
        if (code == 0)
                j->req->result.error.msg[0] = '\0';
}

static int start_job(struct fetcher *f, struct job *j, struct host *h, int64_t now)
{
        j->easy = take_easy(f);
        if (!j->easy)
                return ST_ENOMEM;
        j->errbuf[0] = '\0';
        j->too_big = false;
        memset(&j->guard, 0, sizeof(j->guard));
        set_options(f, j);
        if (curl_multi_add_handle(f->multi, j->easy) != CURLM_OK) {
                give_easy(f, j->easy);
                j->easy = NULL;
                return ST_EIO;
        }
        j->state = JOB_ACTIVE;
        j->req->result.attempts++;
        h->active++;
        f->active++;
        if (f->cfg.rate_per_host > 0.0)
                h->next_start = now + (int64_t)(1000.0 / f->cfg.rate_per_host);
        log_debug("fetch: GET %s (attempt %u)", j->req->url, j->req->result.attempts);
        return 0;
}

/*
 * Start every waiting job that may start now; return the ms until the next
 * one could (POLL_MAX_MS when none is due sooner).
 */
static long start_ready(struct fetcher *f, struct job *jobs, size_t n, int64_t now)
{
        int64_t wait = POLL_MAX_MS;

        for (size_t i = 0; i < n; i++) {
                struct job *j = &jobs[i];
                struct host *h;
                int64_t at;
                int rc;

                if (j->state != JOB_WAITING || f->active >= f->cfg.max_total)
                        continue;
                h = find_host(f, j->origin);
                if (!h) {
                        st_fail(&j->req->result.error, ST_ENOMEM, "GET %s: out of memory",
                                j->req->url);
                        finish_job(j, ST_ENOMEM);
                        continue;
                }
                if (h->active >= f->cfg.max_per_host)
                        continue;
                at = j->not_before > h->next_start ? j->not_before : h->next_start;
                if (at > now) {
                        if (at - now < wait)
                                wait = at - now;
                        continue;
                }
                rc = start_job(f, j, h, now);
                if (rc) {
                        st_fail(&j->req->result.error, rc, "GET %s: cannot start transfer",
                                j->req->url);
                        finish_job(j, rc);
                }
        }
        return (long)wait;
}

/* ---- finishing a transfer ---- */

static bool retryable_status(long status)
{
        return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

static int transport_error(CURLcode cc, bool too_big, bool *retry)
{
        *retry = false;
        if (too_big || cc == CURLE_FILESIZE_EXCEEDED)
                return ST_ETOOBIG;
        switch (cc) {
        case CURLE_OUT_OF_MEMORY:
                return ST_ENOMEM;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_WEIRD_SERVER_REPLY:
                return ST_EPROTO;
        case CURLE_WRITE_ERROR:
                return ST_ENOMEM; /* only on_body fails writes; it flags too_big otherwise */
        case CURLE_OPERATION_TIMEDOUT:
                *retry = true;
                return ST_ETIMEOUT;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                *retry = true;
                return ST_ENET;
        default:
                return ST_ENET;
        }
}

static bool content_type_matches(const char *got, const char *want)
{
        return got && strncasecmp(got, want, strlen(want)) == 0;
}

/* Classify a finished attempt: 0 or an error code with a message in res->error. */
static int judge(struct job *j, CURLcode cc, bool *retry)
{
        struct fetch_result *res = &j->req->result;
        const char *url = j->req->url;
        long status = res->status;
        int code;

        *retry = false;
        if (cc != CURLE_OK && j->guard.refused)
                return st_fail(&res->error, ST_EINVAL,
                               "GET %s: refused to connect to %s, not a public address "
                               "(allow_private)",
                               url, j->guard.address);
        if (cc != CURLE_OK) {
                code = transport_error(cc, j->too_big, retry);
                if (code == ST_ETOOBIG)
                        return st_fail(&res->error, code, "GET %s: body over %zu bytes", url,
                                       j->max_body);
                return st_fail(&res->error, code, "GET %s: %s", url,
                               j->errbuf[0] ? j->errbuf : curl_easy_strerror(cc));
        }
        if (status == 304)
                return 0;
        if (status >= 200 && status < 300) {
                if (j->req->content_type &&
                    !content_type_matches(res->content_type, j->req->content_type))
                        return st_fail(&res->error, ST_EPROTO,
                                       "GET %s: content type '%.64s', want '%.64s'", url,
                                       res->content_type ? res->content_type : "(none)",
                                       j->req->content_type);
                return 0;
        }
        *retry = retryable_status(status);
        if (status == 404 || status == 410)
                code = ST_ENOTFOUND;
        else if (status == 429)
                code = ST_EAGAIN;
        else
                code = ST_EHTTP;
        return st_fail(&res->error, code, "GET %s: HTTP %ld", url, status);
}

/* Collect status, headers and the Link target of the finished attempt. */
static int collect(struct job *j)
{
        struct fetch_result *res = &j->req->result;
        char *ctype = NULL, *effective = NULL;
        curl_off_t retry_after = 0;

        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &res->status);
        curl_easy_getinfo(j->easy, CURLINFO_CONTENT_TYPE, &ctype);
        curl_easy_getinfo(j->easy, CURLINFO_RETRY_AFTER, &retry_after);
        curl_easy_getinfo(j->easy, CURLINFO_EFFECTIVE_URL, &effective);
        res->retry_after_s = retry_after > 0 ? (long)retry_after : 0;
        free(res->content_type);
        res->content_type = NULL;
        if (ctype && copy_string(&res->content_type, ctype))
                return ST_ENOMEM;
        free(res->next_url);
        res->next_url = NULL;
        if (j->link_next) {
                res->next_url = resolve_url(effective ? effective : j->req->url, j->link_next);
                free(j->link_next);
                j->link_next = NULL;
        }
        ratelimit_parse(j->ratelimit, j->ratelimit ? strlen(j->ratelimit) : 0, j->ratelimit_policy,
                        j->ratelimit_policy ? strlen(j->ratelimit_policy) : 0, &res->ratelimit);
        free(j->ratelimit);
        free(j->ratelimit_policy);
        j->ratelimit = j->ratelimit_policy = NULL;
        return 0;
}

/* Forget the body and headers of a failed attempt before the next one. */
static void reset_result(struct job *j)
{
        struct fetch_result *res = &j->req->result;
        unsigned attempts = res->attempts;

        fetch_request_release(j->req);
        ratelimit_init(&res->ratelimit);
        res->attempts = attempts;
        j->body_cap = 0;
}

static int64_t backoff_ms(struct fetcher *f, struct job *j)
{
        unsigned retry = j->req->result.attempts; /* 1 for the first retry */
        uint64_t d = f->cfg.retry_base_ms;

        for (unsigned i = 1; i < retry && d < f->cfg.retry_max_ms; i++)
                d *= 2;
        if (d > f->cfg.retry_max_ms)
                d = f->cfg.retry_max_ms;
        if (d < 2)
                return (int64_t)d;
        return (int64_t)(d / 2 + next_random(f) % (d / 2 + 1));
}

/* Until the RateLimit window resets: t seconds, at least 1, capped. */
static int64_t window_wait_ms(const struct fetcher *f, const struct ratelimit *rl)
{
        int64_t wait = rl->reset_s > 0 ? (int64_t)rl->reset_s * 1000 : 1000;

        return wait > f->cfg.ratelimit_max_wait_ms ? f->cfg.ratelimit_max_wait_ms : wait;
}

static void pause_host(struct host *h, int64_t until)
{
        if (h && h->next_start < until)
                h->next_start = until;
}

/*
 * Remember the origin's quota, and pause the origin until the window resets
 * when the response says it is nearly used up: the next request would risk
 * a 429 that waiting avoids.
 */
static void obey_ratelimit(struct fetcher *f, struct job *j, struct host *h, int64_t now)
{
        const struct ratelimit *rl = &j->req->result.ratelimit;
        long margin = f->cfg.max_per_host > 2 ? (long)f->cfg.max_per_host : 2;
        int64_t wait;

        if (!h)
                return;
        if (rl->quota > 0)
                h->quota = rl->quota;
        if (!ratelimit_is_low(rl, h->quota, margin))
                return;
        wait = window_wait_ms(f, rl);
        log_info("fetch: %s: %ld requests left of %ld in this window; pausing %s for %lld ms",
                 j->req->url, rl->remaining, rl->quota >= 0 ? rl->quota : h->quota, h->origin,
                 (long long)wait);
        pause_host(h, now + wait);
}

static void schedule_retry(struct fetcher *f, struct job *j, struct host *h, int64_t now)
{
        struct fetch_result *res = &j->req->result;
        int64_t delay;

        if (res->retry_after_s > 0) {
                delay = (int64_t)res->retry_after_s * 1000;
                if (delay > f->cfg.retry_after_max_ms)
                        delay = f->cfg.retry_after_max_ms;
                /* The server asked the whole origin to wait, not just this request. */
                pause_host(h, now + delay);
        } else if (res->status == 429 && res->ratelimit.reset_s >= 0) {
                /* The Hub's 429 carries no Retry-After; its RateLimit says when to come back. */
                delay = window_wait_ms(f, &res->ratelimit);
                pause_host(h, now + delay);
        } else {
                delay = backoff_ms(f, j);
        }
        log_info("fetch: %s; retry %u/%u in %lld ms", res->error.msg, res->attempts,
                 f->cfg.max_retries, (long long)delay);
        reset_result(j);
        j->not_before = now + delay;
        j->state = JOB_WAITING;
}

static void end_transfer(struct fetcher *f, struct job *j, CURLcode cc)
{
        struct host *h = find_host(f, j->origin);
        int64_t now = now_ms();
        bool retry = false;
        int code;

        code = collect(j);
        if (code)
                st_fail(&j->req->result.error, code, "GET %s: out of memory", j->req->url);
        else
                code = judge(j, cc, &retry);
        curl_multi_remove_handle(f->multi, j->easy);
        give_easy(f, j->easy);
        j->easy = NULL;
        if (h && h->active > 0)
                h->active--;
        f->active--;
        obey_ratelimit(f, j, h, now);
        if (code && retry && j->req->result.attempts <= f->cfg.max_retries) {
                schedule_retry(f, j, h, now);
                return;
        }
        if (code == ST_ETOOBIG) {
                free(j->req->result.body);
                j->req->result.body = NULL;
                j->req->result.body_len = 0;
        }
        if (code)
                log_debug("fetch: %s", j->req->result.error.msg);
        finish_job(j, code);
}

static void drain_messages(struct fetcher *f)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(f->multi, &left))) {
                char *job = NULL;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &job);
                if (job)
                        end_transfer(f, (struct job *)job, msg->data.result);
        }
}

/* ---- the run ---- */

static int prepare_job(struct job *j, struct fetch_request *r)
{
        memset(j, 0, sizeof(*j));
        j->req = r;
        j->state = JOB_WAITING;
        j->max_body = r->max_body ? r->max_body : FETCH_DEFAULT_MAX_BODY;
        if (j->max_body > SIZE_MAX / 4)
                j->max_body = SIZE_MAX / 4; /* room for the doubling in on_body */
        fetch_request_release(r);
        ratelimit_init(&r->result.ratelimit);
        if (!r->url)
                return st_fail(&r->result.error, ST_EINVAL, "GET: no URL");
        j->origin = url_origin(r->url);
        if (!j->origin)
                return st_fail(&r->result.error, ST_EINVAL, "GET %s: not an http(s) URL", r->url);
        if (build_headers(j))
                return st_fail(&r->result.error, ST_ENOMEM, "GET %s: out of memory", r->url);
        return 0;
}

static size_t count_pending(const struct job *jobs, size_t n)
{
        size_t pending = 0;

        for (size_t i = 0; i < n; i++)
                pending += jobs[i].state != JOB_DONE;
        return pending;
}

/* Abandon the unfinished jobs after a breakdown of the multi handle. */
static void abandon(struct fetcher *f, struct job *jobs, size_t n, int code)
{
        for (size_t i = 0; i < n; i++) {
                struct job *j = &jobs[i];

                if (j->state == JOB_ACTIVE) {
                        struct host *h = find_host(f, j->origin);

                        curl_multi_remove_handle(f->multi, j->easy);
                        give_easy(f, j->easy);
                        j->easy = NULL;
                        if (h && h->active > 0)
                                h->active--;
                        f->active--;
                }
                if (j->state != JOB_DONE) {
                        st_fail(&j->req->result.error, code, "GET %s: fetcher broke down",
                                j->req->url);
                        finish_job(j, code);
                }
        }
}

int fetcher_run(struct fetcher *f, struct fetch_request *reqs, size_t n)
{
        struct job *jobs;
        int rc = 0;

        if (n == 0)
                return 0;
        jobs = calloc(n, sizeof(*jobs));
        if (!jobs)
                return ST_ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int code = prepare_job(&jobs[i], &reqs[i]);

                if (code)
                        finish_job(&jobs[i], code);
        }
        for (;;) {
                /* A newly added handle makes curl's internal timeout 0: the poll returns at once.
                 */
                long wait = start_ready(f, jobs, n, now_ms());
                int running;

                if (count_pending(jobs, n) == 0)
                        break;
                if (curl_multi_poll(f->multi, NULL, 0, (int)wait, NULL) != CURLM_OK ||
                    curl_multi_perform(f->multi, &running) != CURLM_OK) {
                        rc = ST_EIO;
                        break;
                }
                drain_messages(f);
        }
        if (rc)
                abandon(f, jobs, n, rc);
        for (size_t i = 0; i < n; i++) {
                free(jobs[i].origin);
                free(jobs[i].link_next);
                free(jobs[i].ratelimit);
                free(jobs[i].ratelimit_policy);
                curl_slist_free_all(jobs[i].headers);
        }
        free(jobs);
        return rc;
}
