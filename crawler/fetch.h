/*
 * fetch.h - the crawler's polite HTTP client: many GET requests at once over
 * one libcurl multi handle, with per-host limits, retries and hard caps.
 *
 * Usage:
 *
 *	struct fetcher_config cfg;
 *	struct fetcher *f;
 *	struct fetch_request req = {.url = "https://civitai.com/api/v1/models",
 *				    .max_body = 32u << 20,
 *				    .content_type = "application/json"};
 *
 *	fetcher_config_defaults(&cfg);
 *	if (fetcher_new(&cfg, &f, &err) == 0 && fetcher_run(f, &req, 1) == 0 &&
 *	    req.result.error.code == 0)
 *		use(req.result.body, req.result.body_len);
 *	fetch_request_release(&req);
 *	fetcher_destroy(&f);
 *
 * Politeness (DESIGN.md "Principles"):
 *   - at most max_per_host transfers to one origin (scheme, host, port) at
 *     once; the rest of a run waits in a queue;
 *   - at least 1/rate_per_host seconds between two request starts to one
 *     origin, across runs of the same fetcher (retries count as requests);
 *   - 429, 500, 502, 503, 504 and transport failures are retried up to
 *     max_retries times: after Retry-After when the server sends one (capped
 *     at retry_after_max_ms, and then the whole origin pauses that long);
 *     for a 429 without Retry-After, after the RateLimit header's reset
 *     time t (see below); else after an exponential backoff (retry_base_ms
 *     doubling up to retry_max_ms, with jitter in [d/2, d]);
 *   - a response whose RateLimit header (ratelimit.h; the Hugging Face Hub
 *     sends it) says the window is nearly used up -- at most
 *     max(2, max_per_host) requests or 5% of the quota left -- pauses its
 *     origin until the window resets (t seconds, at least 1, capped at
 *     ratelimit_max_wait_ms), so the quota is never overrun; the quota of a
 *     RateLimit-Policy header is remembered per origin.  One pause per
 *     origin: the Hub's "api" and "resolvers" windows share huggingface.co;
 *   - a descriptive User-Agent with a contact on every request.
 * The limits count the origin of the URL asked for; a redirect to another
 * host (a CDN) is not counted against that host.
 *
 * Safety: only http and https, on the first URL and on every redirect;
 * bodies over max_body fail with ST_ETOOBIG whatever Content-Length says;
 * at most max_redirects redirects.  A request marked public_only (its URL
 * came from fetched content: an image or file URL) never connects to a
 * private, loopback or link-local address, on any hop (address_guard.h),
 * unless the fetcher has allow_private; API URLs the operator configured
 * are not marked and are exempt.  Bearer tokens are kept in memory only,
 * sent only to their origin (never after a redirect to another host), and
 * never logged or copied into an error message.
 *
 * Thread rules: a fetcher belongs to the thread that made it; fetcher_run
 * blocks that thread until every request of the run has finished.
 */
#ifndef STYLUS_CRAWLER_FETCH_H
#define STYLUS_CRAWLER_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#include "crawler/ratelimit.h"
#include "proto/errors.h"

/* Sent when the configuration does not name another; ops sets a real contact. */
#define FETCHER_DEFAULT_USER_AGENT                                                                 \
        "stylus-catalog/0.1 (LoRA catalog crawler; +https://github.com/stylus-catalog)"

/* Body cap of a request whose max_body is 0. */
#define FETCH_DEFAULT_MAX_BODY (8u << 20)

struct fetcher_config {
        const char *user_agent;      /* required, copied; name + version + contact URL */
        unsigned max_per_host;       /* transfers at once to one origin, >= 1 (2) */
        unsigned max_total;          /* transfers at once over all origins, >= 1 (16) */
        double rate_per_host;        /* request starts per second per origin; 0 = no limit (1) */
        long connect_timeout_ms;     /* per attempt (10000) */
        long total_timeout_ms;       /* per attempt, whole transfer; 0 = none (120000) */
        long low_speed_bytes;        /* abort an attempt slower than this many bytes/s ... (100) */
        long low_speed_time_s;       /* ... for this many seconds; 0 = never (30) */
        unsigned max_redirects;      /* followed per attempt (3) */
        unsigned max_retries;        /* extra attempts after the first (3) */
        unsigned retry_base_ms;      /* first backoff (1000) */
        unsigned retry_max_ms;       /* backoff cap (30000) */
        unsigned retry_after_max_ms; /* cap on a server's Retry-After (60000) */
        unsigned ratelimit_max_wait_ms; /* cap on a wait for a RateLimit window to reset
                                           (300000: the Hub's 5-minute window) */
        const char *token;              /* optional bearer token, copied; never logged */
        const char *token_origin;       /* URL of the token's origin; required with token */
        bool allow_private;             /* public_only requests may reach private, loopback and
                                        link-local addresses (false); for tests and LAN mirrors */
};

/* Fill c with the defaults shown in parentheses above (no token). */
void fetcher_config_defaults(struct fetcher_config *c);

/*
 * What a finished request produced.  All pointers are malloc'd and owned by
 * the request until fetch_request_release(); absent values are NULL.
 */
struct fetch_result {
        struct st_error error; /* error.code 0: transfer done with status 2xx or 304 */
        long status;           /* last HTTP status, 0 when no response arrived */
        char *body;            /* body_len bytes + a NUL; NULL when empty (e.g. 304) */
        size_t body_len;
        char *content_type;         /* Content-Type of the final response */
        char *etag;                 /* ETag, as sent (quotes kept) */
        char *last_modified;        /* Last-Modified, as sent */
        char *next_url;             /* absolute URL of Link rel="next", http(s) only */
        long retry_after_s;         /* Retry-After of the last response, 0 if none */
        struct ratelimit ratelimit; /* RateLimit(-Policy) of the last response; -1s if none */
        unsigned attempts;          /* transfers made, 1 + retries */
};

/*
 * One GET.  The caller fills the inputs (borrowed until fetcher_run
 * returns) and zeroes result before the first run.
 *
 * result.error.code after the run:
 *   0             status 2xx (and content type as expected) or 304
 *   ST_EINVAL     URL unparsable or not http/https; or, for a public_only
 *                 request, every address of a hop was private, loopback or
 *                 link-local (not retried; the message names the address)
 *   ST_ETOOBIG    body over max_body
 *   ST_EPROTO     2xx with another content type; redirect to a disallowed
 *                 protocol; too many redirects
 *   ST_ENOTFOUND  status 404 or 410
 *   ST_EAGAIN     still 429 after max_retries retries
 *   ST_EHTTP      any other status (body kept: APIs explain errors there)
 *   ST_ENET       connect, DNS, TLS or transfer failure after the retries
 *   ST_ETIMEOUT   connect, total or low-speed timeout after the retries
 *   ST_ENOMEM     out of memory
 */
struct fetch_request {
        const char *url;
        size_t max_body;               /* bytes; 0 = FETCH_DEFAULT_MAX_BODY */
        const char *content_type;      /* expected prefix of a 2xx Content-Type, or NULL */
        const char *if_none_match;     /* sent as If-None-Match, or NULL */
        const char *if_modified_since; /* sent as If-Modified-Since, or NULL */
        const char *token;             /* bearer token for this URL's origin only, or NULL */
        bool public_only;              /* URL from fetched content: public addresses only */
        struct fetch_result result;
};

struct fetcher;

/*
 * Make a fetcher from c (which is copied).  Returns 0, ST_EINVAL for a bad
 * configuration (err names the field) or ST_ENOMEM.  *out is set on success.
 */
int fetcher_new(const struct fetcher_config *c, struct fetcher **out, struct st_error *err);

/* Close every connection, wipe the token and free f; *f becomes NULL. NULL is fine. */
void fetcher_destroy(struct fetcher **f);

/*
 * Run the n requests concurrently under the limits above and return when all
 * have finished; each request's outcome is in its result.  Returns 0 (even
 * when requests failed), or ST_ENOMEM / ST_EIO when the run itself broke
 * down, in which case the requests not yet finished carry that error.
 * Results of an earlier run are released first.
 */
int fetcher_run(struct fetcher *f, struct fetch_request *reqs, size_t n);

/* Free what the run put in r->result and zero it; the inputs are untouched. */
void fetch_request_release(struct fetch_request *r);

#endif
