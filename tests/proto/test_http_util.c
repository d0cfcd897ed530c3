/*
 * test_http_util.c - the helpers both OpenAI-compatible clients share:
 * Retry-After values and header lines, the printable check, endpoint URLs, the capped
 * response body and JSON type names.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http_util.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

#define MAX_MS 3600000L
#define DATE   "Wed, 21 Oct 2015 07:28:00 GMT"
#define DATE_T ((time_t)1445412480)

static int test_retry_after_seconds(void)
{
        time_t now = DATE_T;

        CHECK(http_util_retry_after_ms("0", MAX_MS, now, curl_getdate) == 0);
        CHECK(http_util_retry_after_ms("7", MAX_MS, now, curl_getdate) == 7000);
        CHECK(http_util_retry_after_ms(" \t 12", MAX_MS, now, curl_getdate) == 12000);
        CHECK(http_util_retry_after_ms("3600", MAX_MS, now, curl_getdate) == MAX_MS);
        CHECK(http_util_retry_after_ms("3601", MAX_MS, now, curl_getdate) == MAX_MS);
        CHECK(http_util_retry_after_ms("999999999999", MAX_MS, now, curl_getdate) == MAX_MS);
        /* strtoll saturates: still the cap, never a wrapped or negative delay */
        CHECK(http_util_retry_after_ms("99999999999999999999999999", MAX_MS, now, curl_getdate) ==
              MAX_MS);
        return 0;
}

static int test_retry_after_date(void)
{
        CHECK(curl_getdate(DATE, NULL) == DATE_T);
        CHECK(http_util_retry_after_ms(DATE, MAX_MS, DATE_T - 30, curl_getdate) == 30000);
        CHECK(http_util_retry_after_ms(" " DATE, MAX_MS, DATE_T - 30, curl_getdate) == 30000);
        CHECK(http_util_retry_after_ms(DATE, MAX_MS, DATE_T, curl_getdate) == 0);
        CHECK(http_util_retry_after_ms(DATE, MAX_MS, DATE_T + 86400, curl_getdate) == 0);
        CHECK(http_util_retry_after_ms(DATE, MAX_MS, DATE_T - 86400 * 365L, curl_getdate) ==
              MAX_MS);
        return 0;
}

static int test_retry_after_garbage(void)
{
        CHECK(http_util_retry_after_ms("", MAX_MS, DATE_T, curl_getdate) == -1);
        CHECK(http_util_retry_after_ms("soon", MAX_MS, DATE_T, curl_getdate) == -1);
        CHECK(http_util_retry_after_ms("   ", MAX_MS, DATE_T, curl_getdate) == -1);
        return 0;
}

/* Header lines as curl hands them over: CRLF included, a status line per response. */
static int test_header_retry_after(void)
{
        static const char status[] = "HTTP/1.1 429 Too Many Requests\r\n";
        static const char seconds[] = "retry-after: 5\r\n";
        static const char date[] = "Retry-After: " DATE "\r\n";
        static const char other[] = "Content-Type: application/json\r\n";
        char longer[300];
        long ms = 1234;

        http_util_header_retry_after(status, strlen(status), MAX_MS, DATE_T, curl_getdate, &ms);
        CHECK(ms == -1);
        http_util_header_retry_after(seconds, strlen(seconds), MAX_MS, DATE_T, curl_getdate, &ms);
        CHECK(ms == 5000);
        http_util_header_retry_after(other, strlen(other), MAX_MS, DATE_T, curl_getdate, &ms);
        CHECK(ms == 5000);
        http_util_header_retry_after(date, strlen(date), MAX_MS, DATE_T - 9, curl_getdate, &ms);
        CHECK(ms == 9000);
        http_util_header_retry_after(status, strlen(status), MAX_MS, DATE_T, curl_getdate, &ms);
        CHECK(ms == -1);

        /* A line of 256 bytes or more is not read. */
        memset(longer, ' ', sizeof(longer));
        memcpy(longer, "Retry-After: 5", 14);
        http_util_header_retry_after(longer, sizeof(longer), MAX_MS, DATE_T, curl_getdate, &ms);
        CHECK(ms == -1);
        return 0;
}

static int test_printable_ascii(void)
{
        CHECK(http_util_printable_ascii(""));
        CHECK(http_util_printable_ascii("sk-abc 123 ~!"));
        CHECK(!http_util_printable_ascii("key\n"));
        CHECK(!http_util_printable_ascii("a\tb"));
        CHECK(!http_util_printable_ascii("del\x7f"));
        CHECK(!http_util_printable_ascii("caf\xc3\xa9"));
        return 0;
}

static int endpoint_is(const char *url, const char *tail, const char *want)
{
        char *got = http_util_endpoint(url, tail);
        int ok = got && strcmp(got, want) == 0;

        if (!ok)
                fprintf(stderr, "endpoint(%s, %s) = %s, want %s\n", url, tail, got ? got : "(null)",
                        want);
        free(got);
        return ok;
}

static int test_endpoint(void)
{
        CHECK(endpoint_is("http://h:8080", "/embeddings", "http://h:8080/v1/embeddings"));
        CHECK(endpoint_is("http://h:8080/", "/embeddings", "http://h:8080/v1/embeddings"));
        CHECK(
            endpoint_is("http://h:8080/api/v1/", "/embeddings", "http://h:8080/api/v1/embeddings"));
        CHECK(endpoint_is("http://h/v1/embeddings/", "/embeddings", "http://h/v1/embeddings"));
        CHECK(endpoint_is("https://api.example.com", "/chat/completions",
                          "https://api.example.com/v1/chat/completions"));
        CHECK(endpoint_is("https://x/openai/v1/chat/completions", "/chat/completions",
                          "https://x/openai/v1/chat/completions"));
        return 0;
}

static int test_body_append(void)
{
        char *body = NULL, big[HTTP_UTIL_BODY_FIRST_ALLOC + 10];
        size_t len = 0, cap = 0;

        memset(big, 'x', sizeof(big));
        CHECK(http_util_body_append(&body, &len, &cap, 100000, "abc", 3, -1) == 0);
        CHECK(len == 3 && cap == HTTP_UTIL_BODY_FIRST_ALLOC && strcmp(body, "abc") == 0);
        CHECK(http_util_body_append(&body, &len, &cap, 100000, big, sizeof(big), 0) == 0);
        CHECK(len == 3 + sizeof(big) && cap == 2 * HTTP_UTIL_BODY_FIRST_ALLOC);
        CHECK(body[len] == '\0');
        free(body);

        /* The cap: exactly max fits, one more byte does not, nothing changes on refusal. */
        body = NULL, len = 0, cap = 0;
        CHECK(http_util_body_append(&body, &len, &cap, 5, "hello", 5, -1) == 0);
        CHECK(cap == 6 && strcmp(body, "hello") == 0);
        CHECK(http_util_body_append(&body, &len, &cap, 5, "!", 1, -1) == ST_ETOOBIG);
        CHECK(len == 5 && cap == 6 && strcmp(body, "hello") == 0);
        free(body);

        /* An announced Content-Length over the cap is refused before any byte. */
        body = NULL, len = 0, cap = 0;
        CHECK(http_util_body_append(&body, &len, &cap, 5, "a", 1, 6) == ST_ETOOBIG);
        CHECK(body == NULL && len == 0 && cap == 0);
        CHECK(http_util_body_append(&body, &len, &cap, 5, "a", 1, 5) == 0);
        free(body);
        return 0;
}

static int test_json_type_name(void)
{
        static const struct {
                const char *json;
                const char *name;
        } cases[] = {
            {"{}", "an object"}, {"[]", "an array"}, {"\"s\"", "a string"}, {"1", "an integer"},
            {"1.5", "a number"}, {"true", "a bool"}, {"false", "a bool"},   {"null", "null"},
        };
        size_t i;
        json_t *v;
        int ok;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                v = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
                CHECK(v != NULL);
                ok = strcmp(http_util_json_type_name(v), cases[i].name) == 0;
                json_decref(v);
                CHECK(ok);
        }
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_retry_after_seconds();
        failed |= test_retry_after_date();
        failed |= test_retry_after_garbage();
        failed |= test_header_retry_after();
        failed |= test_printable_ascii();
        failed |= test_endpoint();
        failed |= test_body_append();
        failed |= test_json_type_name();
        if (!failed)
                printf("http_util: all tests passed\n");
        return failed;
}
