/*
 * http_post.h - one JSON POST over libcurl's easy interface, for the
 * clients of OpenAI-compatible endpoints (indexer/embed_http.c,
 * query/composer_llm.c): the handle set up once for one URL (http and https
 * only, redirects never followed so a bearer key goes nowhere else), each
 * answer's body capped, Retry-After read, and nothing of a request (the
 * header list holding the key, the reply's buffers) left in the handle
 * after it.
 *
 *	CURL *e = curl_easy_init();
 *	struct http_post_reply r = {.max = 1 << 20, .retry_after_max_ms = 60000,
 *	                            .connect_max_ms = 5000};
 *
 *	if (http_post_setup(e, url, "stylus-catalog/1.0") == 0 &&
 *	    http_post(e, key, body, len, 10000, &r, &why) == 0)
 *		... r.status, r.body ...
 *	http_post_reply_release(&r);
 *
 * curl_global_init() is the caller's (once per process, before threads).
 * Thread rules: one thread at a time per handle.
 */
#ifndef STYLUS_PROTO_HTTP_POST_H
#define STYLUS_PROTO_HTTP_POST_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "proto/errors.h"

struct http_post_reply {
        size_t max;              /* set by the caller: the body cap in bytes */
        long retry_after_max_ms; /* set by the caller: longer Retry-After values are cut */
        long connect_max_ms;     /* set by the caller: of the timeout, at most this to connect */
        long status;             /* 0 when no response came */
        char *body;              /* len bytes + NUL, malloc'd; NULL when none */
        size_t len, cap;
        bool too_big;          /* the body went over max (the transfer was stopped) */
        long retry_after_ms;   /* -1 when absent */
        char content_type[64]; /* printable bytes of Content-Type, cut; "" when absent */
        CURL *easy;            /* the handle, during the transfer */
};

/*
 * Point easy at url for POSTs: http or https only, no redirects, the user
 * agent, any content encoding, no signals.  ST_EINVAL when libcurl refuses
 * the URL.
 */
int http_post_setup(CURL *easy, const char *url, const char *user_agent);

/*
 * POST len bytes of JSON body with "Authorization: Bearer key" (key NULL:
 * none), within timeout_ms (the connect within r->connect_max_ms of it,
 * when that is shorter and not 0).  0 when a whole response arrived, whatever its status (in r);
 * else the transport failure with why filled from libcurl's message (never
 * the key): ST_ETIMEOUT, ST_ETRUNC (the connection broke), ST_ETOOBIG (the
 * body went over r->max), ST_EPROTO, ST_EINVAL, ST_ENOMEM, ST_ENET.  r's
 * body is replaced: release r between posts or after the last.
 */
int http_post(CURL *easy, const char *key, const char *body, size_t len, long timeout_ms,
              struct http_post_reply *r, struct st_error *why);

/* Free r's body; r's caller-set fields stay. */
void http_post_reply_release(struct http_post_reply *r);

#endif
