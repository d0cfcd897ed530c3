/*
 * http_util.c - helpers shared by the embeddings, VLM and LLM composer
 * HTTP clients (see http_util.h).  http_util_read_key() moved here from
 * refiner/refiner_cmd.c, http_util_quotes_key() from refiner/vlm.c.
 */
#include "proto/http_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool http_util_printable_ascii(const char *s)
{
        for (; *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        return false;
        return true;
}

char *http_util_endpoint(const char *url, const char *tail)
{
        const char *host = strstr(url, "://");
        const char *path = host ? strchr(host + 3, '/') : NULL;
        size_t len = strlen(url), tail_len = strlen(tail), size;
        char *out;

        while (len > 0 && url[len - 1] == '/')
                len--;
        if (len >= tail_len && memcmp(url + len - tail_len, tail, tail_len) == 0)
                return strndup(url, len);
        size = len + sizeof("/v1") + tail_len + 1;
        out = malloc(size);
        if (!out)
                return NULL;
        snprintf(out, size, "%.*s%s%s", (int)len, url, !path || path >= url + len ? "/v1" : "",
                 tail);
        return out;
}

long http_util_retry_after_ms(const char *value, long max_ms, time_t now,
                              time_t (*parse_date)(const char *text, const time_t *unused))
{
        const char *v = value;
        long long s;
        time_t when;

        while (*v == ' ' || *v == '\t')
                v++;
        if (*v >= '0' && *v <= '9') {
                s = strtoll(v, NULL, 10);
                if (s < 0 || s > max_ms / 1000)
                        return max_ms;
                return (long)s * 1000;
        }
        when = parse_date(v, NULL);
        if (when == -1)
                return -1;
        s = (long long)(when - now);
        if (s < 0)
                return 0;
        return s > max_ms / 1000 ? max_ms : (long)s * 1000;
}

void http_util_header_retry_after(const char *line, size_t n, long max_ms, time_t now,
                                  time_t (*parse_date)(const char *text, const time_t *unused),
                                  long *retry_after_ms)
{
        char value[256];

        if (n >= 5 && memcmp(line, "HTTP/", 5) == 0)
                *retry_after_ms = -1; /* a new response (after a redirect or a 100) */
        if (n > 12 && n < sizeof(value) && strncasecmp(line, "Retry-After:", 12) == 0) {
                memcpy(value, line + 12, n - 12);
                value[n - 12] = '\0';
                value[strcspn(value, "\r\n")] = '\0';
                *retry_after_ms = http_util_retry_after_ms(value, max_ms, now, parse_date);
        }
}

int http_util_body_append(char **body, size_t *len, size_t *cap, size_t max, const char *data,
                          size_t n, int64_t announced)
{
        size_t want;
        char *p;

        if (n > max - *len || (announced > 0 && (uint64_t)announced > (uint64_t)max))
                return ST_ETOOBIG;
        if (*len + n + 1 > *cap) {
                want = *cap ? *cap : HTTP_UTIL_BODY_FIRST_ALLOC;
                while (want < *len + n + 1)
                        want *= 2;
                if (want > max + 1)
                        want = max + 1;
                p = realloc(*body, want);
                if (!p)
                        return ST_ENOMEM;
                *body = p;
                *cap = want;
        }
        memcpy(*body + *len, data, n);
        *len += n;
        (*body)[*len] = '\0';
        return 0;
}

int http_util_read_key(const char *file, const char *env, char *buf, size_t size,
                       struct st_error *err)
{
        const char *value = env ? getenv(env) : NULL;
        size_t n, start = 0;
        FILE *f;

        buf[0] = '\0';
        if (file) {
                f = fopen(file, "r");
                if (!f)
                        return st_fail(err, ST_EINVAL, "key file %s: %s", file, strerror(errno));
                n = fread(buf, 1, size, f);
                fclose(f);
        } else if (value) {
                n = strlen(value);
                memcpy(buf, value, n < size ? n : size);
        } else {
                return 0;
        }
        if (n >= size) {
                explicit_bzero(buf, size);
                return st_fail(err, ST_EINVAL, "%s: the key is over %zu bytes", file ? file : env,
                               size - 1);
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
                         buf[n - 1] == '\t'))
                n--;
        while (start < n && (buf[start] == ' ' || buf[start] == '\t'))
                start++;
        memmove(buf, buf + start, n - start);
        buf[n - start] = '\0';
        return 0;
}

bool http_util_quotes_key(const char *msg, const char *key)
{
        char window[HTTP_UTIL_KEY_WINDOW + 1];
        size_t klen, w, i;
        bool found = false;

        if (!key || !*key || !msg)
                return false;
        klen = strlen(key);
        w = klen < HTTP_UTIL_KEY_WINDOW ? klen : HTTP_UTIL_KEY_WINDOW;
        for (i = 0; i + w <= klen && !found; i++) {
                memcpy(window, key + i, w);
                window[w] = '\0';
                found = strstr(msg, window) != NULL;
        }
        explicit_bzero(window, sizeof(window));
        return found;
}

const char *http_util_json_type_name(const json_t *v)
{
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "an object";
        case JSON_ARRAY:
                return "an array";
        case JSON_STRING:
                return "a string";
        case JSON_INTEGER:
                return "an integer";
        case JSON_REAL:
                return "a number";
        case JSON_TRUE:
        case JSON_FALSE:
                return "a bool";
        default:
                return "null";
        }
}
