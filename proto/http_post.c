/* http_post.c - one JSON POST over libcurl (see http_post.h). */
#include "proto/http_post.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/http_util.h"

int http_post_setup(CURL *e, const char *url, const char *user_agent)
{
        if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK)
                return ST_EINVAL;
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L); /* the key goes nowhere else */
        curl_easy_setopt(e, CURLOPT_USERAGENT, user_agent);
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
        struct http_post_reply *r = user;
        size_t n = size * nmemb;
        curl_off_t announced = -1;
        int rc;

        curl_easy_getinfo(r->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
        rc = http_util_body_append(&r->body, &r->len, &r->cap, r->max, data, n, announced);
        if (rc == ST_ETOOBIG)
                r->too_big = true;
        return rc ? 0 : n; /* 0: curl fails the transfer with CURLE_WRITE_ERROR */
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
        struct http_post_reply *r = user;
        size_t n = size * nmemb;

        http_util_header_retry_after(data, n, r->retry_after_max_ms, time(NULL), curl_getdate,
                                     &r->retry_after_ms);
        return n;
}

/* Wipe and free a header list that may hold the key. */
static void free_headers(struct curl_slist *list)
{
        for (struct curl_slist *p = list; p; p = p->next)
                explicit_bzero(p->data, strlen(p->data));
        curl_slist_free_all(list);
}

/* The request headers, the key among them; NULL when out of memory. */
static struct curl_slist *make_headers(const char *key)
{
        static const char *const fixed[] = {"Content-Type: application/json",
                                            "Accept: application/json", "Expect:"};
        struct curl_slist *list = NULL, *next;
        size_t len;
        char *line;

        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
                next = curl_slist_append(list, fixed[i]);
                if (!next)
                        goto fail;
                list = next;
        }
        if (!key)
                return list;
        len = strlen(key) + sizeof("Authorization: Bearer ");
        line = malloc(len);
        if (!line)
                goto fail;
        snprintf(line, len, "Authorization: Bearer %s", key);
        next = curl_slist_append(list, line);
        explicit_bzero(line, len);
        free(line);
        if (!next)
                goto fail;
        return next;
fail:
        free_headers(list);
        return NULL;
}

static int curl_code_error(CURLcode c)
{
        switch (c) {
        case CURLE_OPERATION_TIMEDOUT:
                return ST_ETIMEOUT;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
                return ST_ETRUNC;
        case CURLE_UNSUPPORTED_PROTOCOL:
                return ST_EPROTO;
        case CURLE_OUT_OF_MEMORY:
                return ST_ENOMEM;
        case CURLE_URL_MALFORMAT:
                return ST_EINVAL;
        default:
                return ST_ENET;
        }
}

/* Printable bytes of s into out[size], cut. */
static void printable(char *out, size_t size, const char *s)
{
        size_t n = 0;

        for (; *s && n + 1 < size; s++)
                out[n++] = *s >= 0x20 && *s < 0x7f ? *s : '?';
        out[n] = '\0';
}

int http_post(CURL *e, const char *key, const char *body, size_t len, long timeout_ms,
              struct http_post_reply *r, struct st_error *why)
{
        struct curl_slist *headers = make_headers(key);
        char errbuf[CURL_ERROR_SIZE] = "";
        const char *ctype = NULL;
        CURLcode code;

        http_post_reply_release(r);
        r->status = 0;
        r->too_big = false;
        r->retry_after_ms = -1;
        r->content_type[0] = '\0';
        if (!headers)
                return st_fail(why, ST_ENOMEM, "out of memory");
        r->easy = e;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                         r->connect_max_ms > 0 && r->connect_max_ms < timeout_ms ? r->connect_max_ms
                                                                                 : timeout_ms);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
        code = curl_easy_perform(e);
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
        curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ctype);
        if (ctype)
                printable(r->content_type, sizeof(r->content_type), ctype);
        /* Nothing of this request may outlive it in the handle. */
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
        free_headers(headers);
        r->easy = NULL;
        if (r->too_big)
                return st_fail(why, ST_ETOOBIG, "response over its cap of %zu bytes", r->max);
        if (code == CURLE_OK)
                return 0;
        return st_fail(why, curl_code_error(code), "%s",
                       errbuf[0] ? errbuf : curl_easy_strerror(code));
}

void http_post_reply_release(struct http_post_reply *r)
{
        free(r->body);
        r->body = NULL;
        r->len = 0;
        r->cap = 0;
}
