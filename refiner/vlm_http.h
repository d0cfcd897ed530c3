/*
 * vlm_http.h - the refiner's HTTP client: a batch of GET or POST requests
 * run at once over one libcurl multi handle, with hard caps.  It carries
 * the VLM refiner's two kinds of traffic: the example image downloads of a
 * job (many GETs, a few at a time) and the chat completion (one POST).
 *
 * Usage:
 *
 *	struct vlm_http *h;
 *	struct vlm_http_request req = {.url = "http://127.0.0.1:8000/v1/chat/completions",
 *				       .post_body = json, .post_len = strlen(json),
 *				       .max_body = 1u << 20, .timeout_ms = 20000};
 *
 *	if (vlm_http_new(VLM_HTTP_USER_AGENT, &h, &err) == 0 &&
 *	    vlm_http_run(h, &req, 1, 1) == 0 && req.error.code == 0 && req.status == 200)
 *		use(req.body, req.body_len);
 *	vlm_http_request_release(&req);
 *	vlm_http_destroy(&h);
 *
 * What it does not do: retries, backoff and rate limits (the caller decides,
 * from status and retry_after_ms, see refiner/vlm.c).  Connections are kept
 * open between runs, so one worker talks to its endpoint over one connection.
 *
 * Safety: http and https only, on the first URL and on every redirect;
 * redirects only when asked (at most VLM_HTTP_MAX_REDIRECTS); a response
 * over max_body fails with ST_ETOOBIG whatever Content-Length says.  The
 * bearer value goes into one header only; the header copies are wiped after
 * the transfer, and it never appears in an error message or a log line.
 *
 * Private addresses: a request marked public_only (its URL came from
 * fetched content: an example image) never connects to a private, loopback
 * or link-local address, on any hop (crawler/address_guard.h).  Such
 * requests run over their own connection cache, in which every connection
 * was opened under that check, so an image URL naming the VLM endpoint's
 * host (often on the LAN) cannot ride on the endpoint's open connection.
 *
 * Thread rules: a vlm_http belongs to the thread that made it; vlm_http_run
 * blocks that thread until every request of the batch has finished.
 */
#ifndef STYLUS_REFINER_VLM_HTTP_H
#define STYLUS_REFINER_VLM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/errors.h"

#define VLM_HTTP_USER_AGENT                                                                        \
        "stylus-catalog/0.1 (LoRA catalog refiner; +https://github.com/stylus-catalog)"
#define VLM_HTTP_MAX_REDIRECTS      3
#define VLM_HTTP_RETRY_AFTER_MAX_MS 3600000L /* a longer Retry-After counts as this */

/*
 * One request.  The caller fills the inputs (borrowed until vlm_http_run
 * returns) and zeroes the outputs before the first run.
 *
 * error.code after the run:
 *   0             a whole response arrived, whatever its status (look at
 *                 status); a 2xx also had the content type asked for
 *   ST_EINVAL     URL unparsable or not http/https; max_body or timeout_ms 0;
 *                 public_only and every address of a hop was private,
 *                 loopback or link-local (the message names the address)
 *   ST_ETOOBIG    body over max_body
 *   ST_EPROTO     2xx with another content type; a redirect to another
 *                 protocol or more than VLM_HTTP_MAX_REDIRECTS of them
 *   ST_ETRUNC     the connection closed before the whole body came
 *   ST_ETIMEOUT   timeout_ms passed
 *   ST_ENET       connect, DNS, TLS or another transfer failure
 *   ST_ENOMEM     out of memory
 */
struct vlm_http_request {
        const char *url;
        const char *post_body; /* sent as an application/json POST; NULL makes a GET */
        size_t post_len;
        const char *bearer;    /* "Authorization: Bearer <bearer>" when not NULL; never logged */
        const char *accept;    /* prefix a 2xx Content-Type must have (any case), or NULL */
        size_t max_body;       /* response cap in bytes, > 0 */
        long timeout_ms;       /* whole transfer including connect, > 0 */
        bool follow_redirects; /* else a 3xx is returned as it is */
        bool public_only;      /* URL from fetched content: public addresses only */

        struct st_error error;
        long status; /* HTTP status of the last response, 0 when none came */
        char *body;  /* body_len bytes + a NUL, malloc'd; NULL when empty */
        size_t body_len;
        char content_type[128]; /* of the last response, "" when none or too long */
        long retry_after_ms;    /* Retry-After of the last response, -1 when absent */
};

struct vlm_http;

/*
 * Make a client that sends user_agent (copied).  Returns 0, ST_EINVAL
 * (NULL argument) or ST_ENOMEM.
 */
int vlm_http_new(const char *user_agent, struct vlm_http **out, struct st_error *err);

/* Close every connection and free h; *h becomes NULL.  NULL is fine. */
void vlm_http_destroy(struct vlm_http **h);

/*
 * Run the n requests, at most max_in_flight (>= 1) at a time, and return
 * when all have finished; each outcome is in its request.  The requests of
 * one run are all public_only or all not (ST_EINVAL otherwise).  Returns 0
 * (even when requests failed) or ST_ENOMEM / ST_EIO when the run itself
 * broke down, in which case unfinished requests carry that error.  Earlier
 * results in the requests are released first.
 */
int vlm_http_run(struct vlm_http *h, struct vlm_http_request *reqs, size_t n,
                 unsigned max_in_flight);

/* Free what a run put in r's outputs and zero them; the inputs are untouched. */
void vlm_http_request_release(struct vlm_http_request *r);

#endif
