/*
 * vlm_http.c - libcurl multi driver behind vlm_http.h.
 *
 * A run keeps one slot per request: its easy handle while it is in the multi
 * handle, its headers, and the growing body.  The loop adds requests while
 * fewer than max_in_flight run, lets curl work, and turns each finished
 * transfer into a result.  The multi handles outlive runs, and with them
 * the connection caches, so a worker's requests to its endpoint reuse one
 * connection.  public_only requests have their own multi handle: its cache
 * holds only connections opened under the address guard.
 */
#include "refiner/vlm_http.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crawler/address_guard.h"
#include "proto/http_util.h"

#define POLL_MAX_MS    1000
#define CONNECT_MAX_MS 10000L

struct vlm_http {
        CURLM *multi;        /* requests to URLs the operator gave (the VLM endpoint) */
        CURLM *public_multi; /* public_only requests: every connection passed the guard */
        char *user_agent;
};

/* The state of one request while it runs. */
struct slot {
        struct vlm_http_request *req;
        CURL *easy;
        struct curl_slist *headers;
        size_t body_cap; /* bytes allocated for req->body */
        bool too_big;    /* the write callback refused the body */
        bool done;
        struct address_guard guard; /* what a public_only transfer refused to connect to */
        char errbuf[CURL_ERROR_SIZE];
};

int vlm_http_new(const char *user_agent, struct vlm_http **out, struct st_error *err)
{
        struct vlm_http *h;

        if (!user_agent || !out)
                return st_fail(err, ST_EINVAL, "vlm_http_new: NULL argument");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return st_fail(err, ST_ENOMEM, "curl_global_init failed");
        h = calloc(1, sizeof(*h));
        if (!h)
                goto out_global;
        h->user_agent = strdup(user_agent);
        h->multi = curl_multi_init();
        h->public_multi = curl_multi_init();
        if (!h->user_agent || !h->multi || !h->public_multi)
                goto out_free;
        *out = h;
        return 0;
out_free:
        if (h->multi)
                curl_multi_cleanup(h->multi);
        if (h->public_multi)
                curl_multi_cleanup(h->public_multi);
        free(h->user_agent);
        free(h);
out_global:
        curl_global_cleanup();
        return st_fail(err, ST_ENOMEM, "vlm_http_new: out of memory");
}

void vlm_http_destroy(struct vlm_http **h)
{
        if (!h || !*h)
                return;
        curl_multi_cleanup((*h)->multi);
        curl_multi_cleanup((*h)->public_multi);
        free((*h)->user_agent);
        free(*h);
        *h = NULL;
        curl_global_cleanup();
}

void vlm_http_request_release(struct vlm_http_request *r)
{
        free(r->body);
        memset(&r->error, 0, sizeof(r->error));
        r->status = 0;
        r->body = NULL;
        r->body_len = 0;
        r->content_type[0] = '\0';
        r->retry_after_ms = -1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
        struct slot *s = user;
        struct vlm_http_request *r = s->req;
        size_t n = size * nmemb;
        curl_off_t announced = -1;
        int rc;

        curl_easy_getinfo(s->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
        rc = http_util_body_append(&r->body, &r->body_len, &s->body_cap, r->max_body, data, n,
                                   announced);
        if (rc == ST_ETOOBIG)
                s->too_big = true;
        return rc ? 0 : n; /* 0: curl fails the transfer with CURLE_WRITE_ERROR */
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
        struct slot *s = user;
        size_t n = size * nmemb;

        http_util_header_retry_after(data, n, VLM_HTTP_RETRY_AFTER_MAX_MS, time(NULL), curl_getdate,
                                     &s->req->retry_after_ms);
        return n;
}

static bool is_http_url(const char *url)
{
        CURLU *u = curl_url();
        char *scheme = NULL;
        bool ok = false;

        if (!u)
                return false;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK)
                ok = strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0;
        curl_free(scheme);
        curl_url_cleanup(u);
        return ok;
}

/* Wipe and free a header list that may hold the bearer value. */
static void free_headers(struct curl_slist *list)
{
        struct curl_slist *p;

        for (p = list; p; p = p->next)
                memset(p->data, 0, strlen(p->data));
        curl_slist_free_all(list);
}

static struct curl_slist *add_header(struct curl_slist *list, const char *line, bool *ok)
{
        struct curl_slist *next = curl_slist_append(list, line);

        if (!next)
                *ok = false;
        return next ? next : list;
}

/* Headers of a request; NULL with *ok false when out of memory. */
static struct curl_slist *make_headers(const struct vlm_http_request *r, bool *ok)
{
        struct curl_slist *list = NULL;
        size_t len;
        char *line;

        *ok = true;
        list = add_header(list, "Expect:", ok); /* no 100-continue wait on big POSTs */
        if (r->post_body)
                list = add_header(list, "Content-Type: application/json", ok);
        if (r->bearer) {
                len = strlen(r->bearer) + sizeof("Authorization: Bearer ");
                line = malloc(len);
                if (!line) {
                        *ok = false;
                        return list;
                }
                snprintf(line, len, "Authorization: Bearer %s", r->bearer);
                list = add_header(list, line, ok);
                memset(line, 0, len);
                free(line);
        }
        return list;
}

/* Configure s->easy for s->req; 0 or the error to report for the request. */
static int setup(struct vlm_http *h, struct slot *s)
{
        const struct vlm_http_request *r = s->req;
        CURL *e = s->easy;
        bool ok;

        s->headers = make_headers(r, &ok);
        if (!ok)
                return ST_ENOMEM;
        curl_easy_setopt(e, CURLOPT_URL, r->url);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, r->follow_redirects ? 1L : 0L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)VLM_HTTP_MAX_REDIRECTS);
        curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         r->timeout_ms < CONNECT_MAX_MS ? r->timeout_ms : CONNECT_MAX_MS);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, s);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, s);
        if (r->public_only) {
                curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, address_guard_open_socket);
                curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &s->guard);
        }
        if (r->post_body) {
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->post_body);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->post_len);
        }
        return 0;
}

static int curl_code_error(CURLcode c)
{
        switch (c) {
        case CURLE_OPERATION_TIMEDOUT:
                return ST_ETIMEOUT;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
                return ST_ETRUNC;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_TOO_MANY_REDIRECTS:
                return ST_EPROTO;
        case CURLE_OUT_OF_MEMORY:
                return ST_ENOMEM;
        case CURLE_URL_MALFORMAT:
                return ST_EINVAL;
        default:
                return ST_ENET;
        }
}

/* Fill the outputs of a finished transfer. */
static void finish(struct slot *s, CURLcode code)
{
        struct vlm_http_request *r = s->req;
        const char *ctype = NULL;
        int rc;

        s->done = true;
        curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(s->easy, CURLINFO_CONTENT_TYPE, &ctype);
        if (ctype && strlen(ctype) < sizeof(r->content_type))
                memcpy(r->content_type, ctype, strlen(ctype) + 1);
        if (s->too_big) {
                st_fail(&r->error, ST_ETOOBIG, "%s: response over %zu bytes", r->url, r->max_body);
        } else if (code != CURLE_OK && s->guard.refused) {
                st_fail(&r->error, ST_EINVAL,
                        "%s: refused to connect to %s, not a public address (--allow-private)",
                        r->url, s->guard.address);
        } else if (code != CURLE_OK) {
                rc = curl_code_error(code);
                st_fail(&r->error, rc, "%s: %s", r->url,
                        s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
        } else if (r->status >= 200 && r->status < 300 && r->accept &&
                   strncasecmp(r->content_type, r->accept, strlen(r->accept)) != 0) {
                st_fail(&r->error, ST_EPROTO, "%s: content type '%s', expected %s", r->url,
                        r->content_type, r->accept);
        }
        if (r->error.code) {
                free(r->body);
                r->body = NULL;
                r->body_len = 0;
        }
}

/* Start the request of slot s on multi; false when it failed at once (its error is set). */
static bool start(struct vlm_http *h, CURLM *multi, struct slot *s)
{
        struct vlm_http_request *r = s->req;
        int rc;

        if (!r->url || !is_http_url(r->url)) {
                st_fail(&r->error, ST_EINVAL, "%s: not an http(s) URL",
                        r->url ? r->url : "(no URL)");
                return false;
        }
        if (r->max_body == 0 || r->timeout_ms <= 0) {
                st_fail(&r->error, ST_EINVAL, "%s: max_body and timeout_ms must be set", r->url);
                return false;
        }
        s->easy = curl_easy_init();
        if (!s->easy) {
                st_fail(&r->error, ST_ENOMEM, "%s: curl_easy_init failed", r->url);
                return false;
        }
        rc = setup(h, s);
        if (!rc && curl_multi_add_handle(multi, s->easy) != CURLM_OK)
                rc = ST_ENOMEM;
        if (rc) {
                st_fail(&r->error, rc, "%s: cannot start the transfer", r->url);
                return false;
        }
        return true;
}

static void slot_release(CURLM *multi, struct slot *s)
{
        if (s->easy) {
                curl_multi_remove_handle(multi, s->easy);
                curl_easy_cleanup(s->easy);
                s->easy = NULL;
        }
        free_headers(s->headers);
        s->headers = NULL;
}

/* Collect finished transfers; returns how many finished. */
static size_t reap(CURLM *multi)
{
        struct slot *s;
        CURLMsg *msg;
        char *private;
        int left;
        size_t n = 0;

        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &private);
                s = (struct slot *)private;
                finish(s, msg->data.result);
                slot_release(multi, s);
                n++;
        }
        return n;
}

int vlm_http_run(struct vlm_http *h, struct vlm_http_request *reqs, size_t n,
                 unsigned max_in_flight)
{
        struct slot *slots;
        size_t next = 0, running = 0, i;
        CURLM *multi;
        int still, rc = 0;

        if (!h || (!reqs && n))
                return ST_EINVAL;
        for (i = 1; i < n; i++)
                if (reqs[i].public_only != reqs[0].public_only)
                        return ST_EINVAL;
        multi = n > 0 && reqs[0].public_only ? h->public_multi : h->multi;
        if (max_in_flight == 0)
                max_in_flight = 1;
        slots = calloc(n ? n : 1, sizeof(*slots));
        if (!slots)
                return ST_ENOMEM;
        for (i = 0; i < n; i++) {
                vlm_http_request_release(&reqs[i]);
                slots[i].req = &reqs[i];
        }
        while (next < n || running > 0) {
                while (next < n && running < max_in_flight) {
                        if (start(h, multi, &slots[next])) {
                                running++;
                        } else {
                                slots[next].done = true;
                                slot_release(multi, &slots[next]);
                        }
                        next++;
                }
                if (running == 0)
                        continue;
                if (curl_multi_perform(multi, &still) != CURLM_OK) {
                        rc = ST_EIO;
                        break;
                }
                running -= reap(multi);
                if (running == 0 || (next < n && running < max_in_flight))
                        continue;
                if (curl_multi_poll(multi, NULL, 0, POLL_MAX_MS, NULL) != CURLM_OK) {
                        rc = ST_EIO;
                        break;
                }
        }
        for (i = 0; i < n; i++) {
                if (slots[i].done)
                        continue;
                slot_release(multi, &slots[i]);
                st_fail(&reqs[i].error, rc, "transfer abandoned: curl multi failed");
        }
        free(slots);
        return rc;
}
