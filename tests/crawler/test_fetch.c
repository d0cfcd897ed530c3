/*
 * test_fetch.c - the fetcher against a small HTTP/1.1 server that runs in a
 * thread of this test on a loopback port it picks.  The server can be slow,
 * lie, refuse, redirect and rate-limit on demand, and counts what it saw.
 *
 * Routes (every response closes its connection):
 *   /json        200 application/json, ETag "v1", Last-Modified, Link next;
 *                304 when If-None-Match is "v1"
 *   /html        200 text/html
 *   /big         200, 64 KiB, no Content-Length (the cap must still hold)
 *   /big-cl      200, Content-Length 10 MB, then a few bytes
 *   /slow        200 after 150 ms; the server tracks requests in flight
 *   /rate        200; arrival times recorded
 *   /429/<key>   429 with Retry-After: <ra> the first 2 times per key, then 200
 *   /rl/<r>      200 with RateLimit: "api";r=<r>;t=1 and RateLimit-Policy q=100, w=2
 *   /rl429/<key> 429 with RateLimit r=0;t=1 and no Retry-After the first time, then 200
 *   /503         always 503
 *   /404         404
 *   /auth        200 text/plain "auth:yes" when the bearer token came, else "auth:no"
 *   /to-same     302 to /auth;  /to-other 302 to http://localhost:<port>/auth
 *   /to-ftp      302 to ftp://;  /loop 302 to itself
 */
#include "crawler/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "crawler/address_guard.h"
#include "proto/log.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

#define TOKEN       "secret-token-0123456789"
#define MAX_KEYS    16
#define MAX_ARRIVAL 64

struct server {
        int fd;
        int port;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t idle;
        bool stop;
        int live;          /* connection threads running */
        int in_flight;     /* /slow requests being answered */
        int max_in_flight; /* highest in_flight seen */
        int requests;      /* requests answered */
        int retry_after;   /* Retry-After sent by /429 */
        char keys[MAX_KEYS][32];
        int key_hits[MAX_KEYS];
        int64_t arrivals[MAX_ARRIVAL];
        int n_arrivals;
};

struct connection {
        struct server *s;
        int fd;
};

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

static void send_all(int fd, const char *data, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

                if (n <= 0)
                        return;
                data += n;
                len -= (size_t)n;
        }
}

static void respond(int fd, const char *status, const char *headers, const char *body)
{
        char head[2048];
        int n = snprintf(head, sizeof(head),
                         "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                         status, strlen(body), headers);

        send_all(fd, head, (size_t)n);
        send_all(fd, body, strlen(body));
}

/* Value of header name in the request head, copied into out; false if absent. */
static bool header(const char *req, const char *name, char *out, size_t cap)
{
        size_t len = strlen(name);

        for (const char *p = strstr(req, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
                const char *v, *end;

                if (strncasecmp(p + 2, name, len) != 0 || p[2 + len] != ':')
                        continue;
                v = p + 3 + len;
                while (*v == ' ')
                        v++;
                end = strstr(v, "\r\n");
                if (!end || (size_t)(end - v) >= cap)
                        return false;
                memcpy(out, v, (size_t)(end - v));
                out[end - v] = '\0';
                return true;
        }
        return false;
}

static int hit_key(struct server *s, const char *key)
{
        int hits = 0;

        pthread_mutex_lock(&s->lock);
        for (int i = 0; i < MAX_KEYS; i++) {
                if (s->keys[i][0] == '\0')
                        snprintf(s->keys[i], sizeof(s->keys[i]), "%.31s", key);
                if (strncmp(s->keys[i], key, sizeof(s->keys[i]) - 1) == 0) {
                        hits = ++s->key_hits[i];
                        break;
                }
        }
        pthread_mutex_unlock(&s->lock);
        return hits;
}

static void route_slow(struct server *s, int fd)
{
        pthread_mutex_lock(&s->lock);
        s->in_flight++;
        if (s->in_flight > s->max_in_flight)
                s->max_in_flight = s->in_flight;
        pthread_mutex_unlock(&s->lock);
        sleep_ms(150);
        pthread_mutex_lock(&s->lock);
        s->in_flight--;
        pthread_mutex_unlock(&s->lock);
        respond(fd, "200 OK", "Content-Type: application/json\r\n", "{\"slow\":true}");
}

static void route_big(int fd, bool honest_length)
{
        static char chunk[4096];
        const char *head;

        memset(chunk, 'x', sizeof(chunk));
        if (honest_length) {
                head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n"
                       "Content-Type: application/json\r\nConnection: close\r\n\r\n";
                send_all(fd, head, strlen(head));
                send_all(fd, chunk, 100);
                return;
        }
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        send_all(fd, head, strlen(head));
        for (int i = 0; i < 16; i++)
                send_all(fd, chunk, sizeof(chunk));
}

static void route(struct server *s, int fd, const char *req, const char *path)
{
        char value[256], extra[512];

        if (strcmp(path, "/json") == 0) {
                if (header(req, "If-None-Match", value, sizeof(value)) &&
                    strcmp(value, "\"v1\"") == 0) {
                        respond(fd, "304 Not Modified", "ETag: \"v1\"\r\n", "");
                        return;
                }
                respond(fd, "200 OK",
                        "Content-Type: application/json; charset=utf-8\r\nETag: \"v1\"\r\n"
                        "Last-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n"
                        "Link: <http://example.org/prev>; rel=\"prev\", </json?page=2>; "
                        "rel=\"next\"\r\n",
                        "{\"ok\":true}");
        } else if (strcmp(path, "/html") == 0) {
                respond(fd, "200 OK", "Content-Type: text/html\r\n", "<html></html>");
        } else if (strcmp(path, "/big") == 0 || strcmp(path, "/big-cl") == 0) {
                route_big(fd, strcmp(path, "/big-cl") == 0);
        } else if (strcmp(path, "/slow") == 0) {
                route_slow(s, fd);
        } else if (strcmp(path, "/rate") == 0) {
                pthread_mutex_lock(&s->lock);
                if (s->n_arrivals < MAX_ARRIVAL)
                        s->arrivals[s->n_arrivals++] = now_ms();
                pthread_mutex_unlock(&s->lock);
                respond(fd, "200 OK", "Content-Type: application/json\r\n", "{}");
        } else if (strncmp(path, "/429/", 5) == 0) {
                if (hit_key(s, path + 5) <= 2) {
                        snprintf(extra, sizeof(extra), "Retry-After: %d\r\n", s->retry_after);
                        respond(fd, "429 Too Many Requests", extra, "{\"error\":\"slow down\"}");
                } else {
                        respond(fd, "200 OK", "Content-Type: application/json\r\n", "{}");
                }
        } else if (strncmp(path, "/rl/", 4) == 0) {
                snprintf(extra, sizeof(extra),
                         "Content-Type: application/json\r\nRateLimit: \"api\";r=%d;t=1\r\n"
                         "RateLimit-Policy: \"fixed window\";\"api\";q=100;w=2\r\n",
                         atoi(path + 4));
                respond(fd, "200 OK", extra, "{}");
        } else if (strncmp(path, "/rl429/", 7) == 0) {
                if (hit_key(s, path + 1) <= 1)
                        respond(fd, "429 Too Many Requests",
                                "RateLimit: \"api\";r=0;t=1\r\n"
                                "RateLimit-Policy: \"fixed window\";\"api\";q=100;w=2\r\n",
                                "{\"error\":\"rate limited\"}");
                else
                        respond(fd, "200 OK", "Content-Type: application/json\r\n", "{}");
        } else if (strcmp(path, "/503") == 0) {
                respond(fd, "503 Service Unavailable", "", "busy");
        } else if (strcmp(path, "/auth") == 0) {
                bool yes = header(req, "Authorization", value, sizeof(value)) &&
                           strcmp(value, "Bearer " TOKEN) == 0;
                respond(fd, "200 OK", "Content-Type: text/plain\r\n", yes ? "auth:yes" : "auth:no");
        } else if (strcmp(path, "/to-same") == 0) {
                respond(fd, "302 Found", "Location: /auth\r\n", "");
        } else if (strcmp(path, "/to-other") == 0) {
                snprintf(extra, sizeof(extra), "Location: http://localhost:%d/auth\r\n", s->port);
                respond(fd, "302 Found", extra, "");
        } else if (strcmp(path, "/to-ftp") == 0) {
                snprintf(extra, sizeof(extra), "Location: ftp://127.0.0.1:%d/x\r\n", s->port);
                respond(fd, "302 Found", extra, "");
        } else if (strcmp(path, "/loop") == 0) {
                respond(fd, "302 Found", "Location: /loop\r\n", "");
        } else {
                respond(fd, "404 Not Found", "Content-Type: application/json\r\n",
                        "{\"error\":\"No model with id 0\"}");
        }
}

static void *serve_connection(void *arg)
{
        struct connection *c = arg;
        struct server *s = c->s;
        char req[16384] = "", path[1024];
        size_t len = 0;

        while (len < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
                ssize_t n = recv(c->fd, req + len, sizeof(req) - 1 - len, 0);

                if (n <= 0)
                        break;
                len += (size_t)n;
                req[len] = '\0';
        }
        req[len] = '\0';
        if (sscanf(req, "GET %1023s HTTP/1.1", path) == 1) {
                route(s, c->fd, req, path);
                pthread_mutex_lock(&s->lock);
                s->requests++;
                pthread_mutex_unlock(&s->lock);
        }
        close(c->fd);
        free(c);
        pthread_mutex_lock(&s->lock);
        s->live--;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static void *accept_loop(void *arg)
{
        struct server *s = arg;

        for (;;) {
                struct pollfd pfd = {s->fd, POLLIN, 0};
                struct connection *c;
                pthread_t t;
                bool stop;

                pthread_mutex_lock(&s->lock);
                stop = s->stop;
                pthread_mutex_unlock(&s->lock);
                if (stop)
                        return NULL;
                if (poll(&pfd, 1, 50) <= 0)
                        continue;
                c = malloc(sizeof(*c));
                CHECK(c);
                c->s = s;
                c->fd = accept(s->fd, NULL, NULL);
                if (c->fd < 0) {
                        free(c);
                        continue;
                }
                pthread_mutex_lock(&s->lock);
                s->live++;
                pthread_mutex_unlock(&s->lock);
                CHECK(pthread_create(&t, NULL, serve_connection, c) == 0);
                pthread_detach(t);
        }
}

static void server_start(struct server *s)
{
        struct sockaddr_in addr = {0};
        socklen_t alen = sizeof(addr);
        int one = 1;

        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->idle, NULL);
        s->retry_after = 1;
        s->fd = socket(AF_INET, SOCK_STREAM, 0);
        CHECK(s->fd >= 0);
        setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(bind(s->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(listen(s->fd, 64) == 0);
        CHECK(getsockname(s->fd, (struct sockaddr *)&addr, &alen) == 0);
        s->port = ntohs(addr.sin_port);
        CHECK(pthread_create(&s->thread, NULL, accept_loop, s) == 0);
}

static void server_stop(struct server *s)
{
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        close(s->fd);
        pthread_mutex_lock(&s->lock);
        while (s->live > 0)
                pthread_cond_wait(&s->idle, &s->lock);
        pthread_mutex_unlock(&s->lock);
}

/* ---- helpers ---- */

static struct server srv;

static char *url(const char *path)
{
        static char buf[8][256];
        static int next;
        char *u = buf[next++ % 8];

        snprintf(u, 256, "http://127.0.0.1:%d%s", srv.port, path);
        return u;
}

static struct fetcher *make_fetcher(unsigned max_per_host, double rate, unsigned retries)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct st_error err = {0, ""};

        fetcher_config_defaults(&cfg);
        cfg.user_agent = "stylus-catalog-test/0.1 (+https://example.org/contact)";
        cfg.max_per_host = max_per_host;
        cfg.rate_per_host = rate;
        cfg.max_retries = retries;
        cfg.retry_base_ms = 20;
        cfg.retry_max_ms = 100;
        cfg.connect_timeout_ms = 2000;
        cfg.total_timeout_ms = 10000;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        return f;
}

static void get(struct fetcher *f, struct fetch_request *r)
{
        CHECK(fetcher_run(f, r, 1) == 0);
}

static void expect_code(const struct fetch_request *r, int code)
{
        if (r->result.error.code != code) {
                fprintf(stderr, "GET %s: code %d (%s), want %d\n", r->url, r->result.error.code,
                        r->result.error.msg, code);
                exit(1);
        }
        if (code)
                CHECK(r->result.error.msg[0] != '\0');
}

/* ---- tests ---- */

static void test_success_and_headers(void)
{
        struct fetcher *f = make_fetcher(2, 0, 0);
        struct fetch_request r = {.url = url("/json"), .content_type = "application/json"};
        char next[256];

        get(f, &r);
        expect_code(&r, 0);
        CHECK(r.result.status == 200);
        CHECK(r.result.body_len == 11 && strcmp(r.result.body, "{\"ok\":true}") == 0);
        CHECK(strcmp(r.result.content_type, "application/json; charset=utf-8") == 0);
        CHECK(strcmp(r.result.etag, "\"v1\"") == 0);
        CHECK(strcmp(r.result.last_modified, "Wed, 21 Oct 2015 07:28:00 GMT") == 0);
        snprintf(next, sizeof(next), "http://127.0.0.1:%d/json?page=2", srv.port);
        CHECK(r.result.next_url && strcmp(r.result.next_url, next) == 0);
        CHECK(r.result.attempts == 1);

        /* Conditional GET: the same request again, now with the ETag. */
        r.if_none_match = "\"v1\"";
        get(f, &r);
        expect_code(&r, 0);
        CHECK(r.result.status == 304);
        CHECK(r.result.body == NULL && r.result.body_len == 0);
        fetch_request_release(&r);
        fetcher_destroy(&f);
        CHECK(f == NULL);
}

static void test_limits_and_refusals(void)
{
        struct fetcher *f = make_fetcher(2, 0, 2);
        struct fetch_request r[] = {
            {.url = url("/big"), .max_body = 16384},
            {.url = url("/big-cl"), .max_body = 16384},
            {.url = url("/html"), .content_type = "application/json"},
            {.url = url("/404"), .content_type = "application/json"},
            {.url = url("/to-ftp")},
            {.url = url("/loop")},
            {.url = "ftp://127.0.0.1/x"},
            {.url = "file:///etc/passwd"},
            {.url = "gopher://127.0.0.1/"},
            {.url = "not a url"},
            {.url = url("/big"), .max_body = 1 << 20},
        };
        size_t n = sizeof(r) / sizeof(r[0]);

        CHECK(fetcher_run(f, r, n) == 0);
        expect_code(&r[0], ST_ETOOBIG);
        CHECK(r[0].result.body == NULL && r[0].result.attempts == 1);
        expect_code(&r[1], ST_ETOOBIG);
        expect_code(&r[2], ST_EPROTO);
        CHECK(strstr(r[2].result.error.msg, "text/html"));
        expect_code(&r[3], ST_ENOTFOUND);
        CHECK(r[3].result.status == 404 && strstr(r[3].result.body, "No model"));
        CHECK(r[3].result.attempts == 1); /* 404 is not retried */
        expect_code(&r[4], ST_EPROTO);
        expect_code(&r[5], ST_EPROTO);
        for (size_t i = 6; i < 10; i++) {
                expect_code(&r[i], ST_EINVAL);
                CHECK(r[i].result.attempts == 0);
        }
        expect_code(&r[10], 0);
        CHECK(r[10].result.body_len == 65536);
        for (size_t i = 0; i < n; i++)
                fetch_request_release(&r[i]);
        fetcher_destroy(&f);
}

/* Twelve slow requests, two at a time at most. */
static void test_concurrency_cap(void)
{
        struct fetcher *f = make_fetcher(2, 0, 0);
        struct fetch_request r[12];
        int64_t start = now_ms(), elapsed;

        memset(r, 0, sizeof(r));
        for (size_t i = 0; i < 12; i++)
                r[i].url = url("/slow");
        pthread_mutex_lock(&srv.lock);
        srv.max_in_flight = 0;
        pthread_mutex_unlock(&srv.lock);
        CHECK(fetcher_run(f, r, 12) == 0);
        elapsed = now_ms() - start;
        for (size_t i = 0; i < 12; i++) {
                expect_code(&r[i], 0);
                fetch_request_release(&r[i]);
        }
        printf("concurrency: max in flight %d, %lld ms\n", srv.max_in_flight, (long long)elapsed);
        CHECK(srv.max_in_flight == 2);
        CHECK(elapsed >= 6 * 150 - 50);
        fetcher_destroy(&f);
}

/* rate_per_host 10/s: starts at least ~100 ms apart, also across runs. */
static void test_rate_limit(void)
{
        struct fetcher *f = make_fetcher(4, 10.0, 0);
        struct fetch_request r[4];

        memset(r, 0, sizeof(r));
        for (size_t i = 0; i < 4; i++)
                r[i].url = url("/rate");
        srv.n_arrivals = 0;
        CHECK(fetcher_run(f, r, 3) == 0);
        CHECK(fetcher_run(f, &r[3], 1) == 0);
        CHECK(srv.n_arrivals == 4);
        for (int i = 1; i < 4; i++) {
                int64_t gap = srv.arrivals[i] - srv.arrivals[i - 1];

                if (gap < 90) {
                        fprintf(stderr, "requests %d and %d only %lld ms apart\n", i - 1, i,
                                (long long)gap);
                        exit(1);
                }
        }
        for (size_t i = 0; i < 4; i++) {
                expect_code(&r[i], 0);
                fetch_request_release(&r[i]);
        }
        fetcher_destroy(&f);
}

static void test_retries(void)
{
        struct fetcher *f = make_fetcher(2, 0, 3);
        struct fetch_request r = {.url = url("/429/a")};
        int64_t start = now_ms(), elapsed;

        /* Retry-After: 1 twice, then 200. */
        get(f, &r);
        elapsed = now_ms() - start;
        expect_code(&r, 0);
        CHECK(r.result.status == 200 && r.result.attempts == 3);
        CHECK(elapsed >= 1900);
        fetch_request_release(&r);
        fetcher_destroy(&f);

        /* Retry-After past the cap waits only the cap; too few retries fail with EAGAIN. */
        {
                struct fetcher_config cfg;
                struct st_error err = {0, ""};

                fetcher_config_defaults(&cfg);
                cfg.rate_per_host = 0;
                cfg.max_retries = 1;
                cfg.retry_after_max_ms = 100;
                CHECK(fetcher_new(&cfg, &f, &err) == 0);
        }
        srv.retry_after = 3600;
        r.url = url("/429/b");
        start = now_ms();
        get(f, &r);
        elapsed = now_ms() - start;
        expect_code(&r, ST_EAGAIN);
        CHECK(r.result.status == 429 && r.result.attempts == 2 && r.result.retry_after_s == 3600);
        CHECK(elapsed >= 90 && elapsed < 3000);
        srv.retry_after = 1;
        fetch_request_release(&r);
        fetcher_destroy(&f);

        /* 503 without Retry-After: exponential backoff, then EHTTP with the body. */
        f = make_fetcher(2, 0, 2);
        r.url = url("/503");
        get(f, &r);
        expect_code(&r, ST_EHTTP);
        CHECK(r.result.status == 503 && r.result.attempts == 3);
        CHECK(r.result.body && strcmp(r.result.body, "busy") == 0);
        fetch_request_release(&r);
        fetcher_destroy(&f);
}

/* Time one GET of path through f, in ms. */
static int64_t timed_get(struct fetcher *f, const char *path, struct fetch_request *r)
{
        int64_t start = now_ms();

        memset(r, 0, sizeof(*r));
        r->url = url(path);
        get(f, r);
        return now_ms() - start;
}

/* The Hub's RateLimit headers: read, and obeyed before the quota runs out. */
static void test_ratelimit_headers(void)
{
        struct fetcher *f = make_fetcher(2, 0, 2);
        struct fetch_request r;
        int64_t elapsed;

        /* Plenty left (50 of 100): read, and no pause. */
        elapsed = timed_get(f, "/rl/50", &r);
        expect_code(&r, 0);
        CHECK(r.result.ratelimit.remaining == 50 && r.result.ratelimit.reset_s == 1);
        CHECK(r.result.ratelimit.quota == 100 && r.result.ratelimit.window_s == 2);
        fetch_request_release(&r);
        elapsed = timed_get(f, "/rate", &r);
        CHECK(elapsed < 500);
        CHECK(r.result.ratelimit.remaining == -1 && r.result.ratelimit.quota == -1);
        fetch_request_release(&r);

        /* 5 of 100 left is low: the origin waits for the window (t=1) before the next request. */
        timed_get(f, "/rl/5", &r);
        expect_code(&r, 0);
        fetch_request_release(&r);
        elapsed = timed_get(f, "/rate", &r);
        expect_code(&r, 0);
        CHECK(elapsed >= 900);
        fetch_request_release(&r);

        /* 6 of 100 is not low; 2 left is, whatever the quota. */
        timed_get(f, "/rl/6", &r);
        fetch_request_release(&r);
        CHECK(timed_get(f, "/rate", &r) < 500);
        fetch_request_release(&r);

        /* A 429 without Retry-After waits t seconds, not the (20 ms) backoff, and then succeeds. */
        elapsed = timed_get(f, "/rl429/a", &r);
        expect_code(&r, 0);
        CHECK(r.result.attempts == 2);
        CHECK(elapsed >= 900 && elapsed < 5000);
        fetch_request_release(&r);
        fetcher_destroy(&f);

        /* The wait is capped by ratelimit_max_wait_ms. */
        {
                struct fetcher_config cfg;
                struct st_error err = {0, ""};

                fetcher_config_defaults(&cfg);
                cfg.rate_per_host = 0;
                cfg.ratelimit_max_wait_ms = 100;
                CHECK(fetcher_new(&cfg, &f, &err) == 0);
        }
        timed_get(f, "/rl/0", &r);
        fetch_request_release(&r);
        elapsed = timed_get(f, "/rate", &r);
        CHECK(elapsed >= 80 && elapsed < 900);
        fetch_request_release(&r);
        fetcher_destroy(&f);
}

static void test_connection_refused(void)
{
        struct fetcher *f = make_fetcher(2, 0, 1);
        struct sockaddr_in addr = {0};
        socklen_t alen = sizeof(addr);
        struct fetch_request r = {0};
        char u[64];
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        /* A port that was free a moment ago and has no listener now. */
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
        CHECK(getsockname(fd, (struct sockaddr *)&addr, &alen) == 0);
        close(fd);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/json", ntohs(addr.sin_port));
        r.url = u;
        get(f, &r);
        expect_code(&r, ST_ENET);
        CHECK(r.result.status == 0 && r.result.attempts == 2);
        fetch_request_release(&r);
        fetcher_destroy(&f);
}

/* The token goes to its origin only, and never into logs or errors. */
static void test_token(void)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct st_error err = {0, ""};
        char origin[64], log_path[64], line[1024];
        struct fetch_request r[5];
        FILE *log_file;
        int saved_stderr;

        snprintf(origin, sizeof(origin), "http://127.0.0.1:%d/api", srv.port);
        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = 0;
        cfg.max_retries = 1;
        cfg.retry_base_ms = 10;
        cfg.token = TOKEN;
        cfg.token_origin = origin;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        memset(r, 0, sizeof(r));
        r[0].url = url("/auth");
        r[1].url = url("/to-same");
        r[2].url = url("/to-other");
        r[3].url = url("/503");
        snprintf(origin, sizeof(origin), "http://localhost:%d/auth", srv.port);
        r[4].url = origin; /* another host name: not the token's origin */

        snprintf(log_path, sizeof(log_path), "/tmp/test_fetch.%d.log", (int)getpid());
        fflush(stderr);
        saved_stderr = dup(2);
        CHECK(freopen(log_path, "w", stderr));
        log_setup("test", LOG_DEBUG);
        CHECK(fetcher_run(f, r, 5) == 0);
        fflush(stderr);
        dup2(saved_stderr, 2);
        close(saved_stderr);
        log_setup("test", LOG_ERROR);

        CHECK(strcmp(r[0].result.body, "auth:yes") == 0);
        CHECK(strcmp(r[1].result.body, "auth:yes") == 0);
        CHECK(strcmp(r[2].result.body, "auth:no") == 0);
        CHECK(strcmp(r[4].result.body, "auth:no") == 0);
        expect_code(&r[3], ST_EHTTP);
        for (size_t i = 0; i < 5; i++) {
                CHECK(!strstr(r[i].result.error.msg, TOKEN));
                fetch_request_release(&r[i]);
        }
        log_file = fopen(log_path, "r");
        CHECK(log_file);
        CHECK(fgets(line, sizeof(line), log_file)); /* something was logged at debug level */
        do
                CHECK(!strstr(line, TOKEN));
        while (fgets(line, sizeof(line), log_file));
        fclose(log_file);
        unlink(log_path);
        fetcher_destroy(&f);

        /* A per-request token, without a fetcher-wide one. */
        f = make_fetcher(2, 0, 0);
        memset(r, 0, 2 * sizeof(r[0]));
        r[0].url = url("/auth");
        r[0].token = TOKEN;
        r[1].url = url("/to-other");
        r[1].token = TOKEN;
        CHECK(fetcher_run(f, r, 2) == 0);
        CHECK(strcmp(r[0].result.body, "auth:yes") == 0);
        CHECK(strcmp(r[1].result.body, "auth:no") == 0);
        fetch_request_release(&r[0]);
        fetch_request_release(&r[1]);
        fetcher_destroy(&f);
}

static void test_bad_config(void)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct st_error err = {0, ""};

        fetcher_config_defaults(&cfg);
        cfg.max_per_host = 0;
        CHECK(fetcher_new(&cfg, &f, &err) == ST_EINVAL && f == NULL);
        fetcher_config_defaults(&cfg);
        cfg.user_agent = "";
        CHECK(fetcher_new(&cfg, &f, &err) == ST_EINVAL);
        fetcher_config_defaults(&cfg);
        cfg.token = TOKEN;
        CHECK(fetcher_new(&cfg, &f, &err) == ST_EINVAL);
        CHECK(!strstr(err.msg, TOKEN));
        cfg.token_origin = "ftp://example.org";
        CHECK(fetcher_new(&cfg, &f, &err) == ST_EINVAL);
        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = -1;
        CHECK(fetcher_new(&cfg, &f, &err) == ST_EINVAL);
        fetcher_destroy(&f);
        CHECK(fetcher_run(NULL, NULL, 0) == 0);
}

/* The public-address rule on its own: which resolved addresses are refused. */
static void test_address_guard(void)
{
        static const char *const refused[] = {
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
        };
        static const char *const allowed[] = {
            "8.8.8.8",         "1.1.1.1",        "11.0.0.1",   "126.255.255.255", "128.0.0.1",
            "169.253.1.1",     "172.15.255.255", "172.32.0.1", "192.167.1.1",     "192.169.0.1",
            "2606:4700::1111", "2001:db8::1",    "fec0::1",    "::ffff:8.8.8.8",  "::2",
        };
        struct sockaddr_storage ss;
        struct sockaddr_un unix_addr = {.sun_family = AF_UNIX};

        for (size_t k = 0; k < 2; k++) {
                const char *const *list = k ? allowed : refused;
                size_t n =
                    k ? sizeof(allowed) / sizeof(*allowed) : sizeof(refused) / sizeof(*refused);

                for (size_t i = 0; i < n; i++) {
                        memset(&ss, 0, sizeof(ss));
                        if (inet_pton(AF_INET, list[i], &((struct sockaddr_in *)&ss)->sin_addr) ==
                            1)
                                ss.ss_family = AF_INET;
                        else if (inet_pton(AF_INET6, list[i],
                                           &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
                                ss.ss_family = AF_INET6;
                        CHECK(ss.ss_family != 0);
                        if (address_guard_is_public((struct sockaddr *)&ss) != (k == 1)) {
                                fprintf(stderr, "%s: want %s\n", list[i], k ? "public" : "refused");
                                exit(1);
                        }
                }
        }
        CHECK(!address_guard_is_public((struct sockaddr *)&unix_addr));
}

static int requests_seen(void)
{
        int n;

        pthread_mutex_lock(&srv.lock);
        n = srv.requests;
        pthread_mutex_unlock(&srv.lock);
        return n;
}

/*
 * The request count once the server has been quiet for 300 ms: a connection
 * an earlier test gave up on (a timeout) may still be counted after it.
 */
static int requests_settled(void)
{
        int n = requests_seen(), quiet = 0;

        while (quiet < 6) {
                usleep(50000);
                if (requests_seen() == n) {
                        quiet++;
                } else {
                        n = requests_seen();
                        quiet = 0;
                }
        }
        return n;
}

/*
 * A public_only request (an image or file URL from a listing) never reaches
 * the loopback test server, by address or by name, and is not retried; the
 * same URL as an operator's API request goes through, and allow_private lets
 * public_only requests through too.
 */
static void test_private_addresses(void)
{
        struct fetcher *f = make_fetcher(2, 0, 2);
        struct fetch_request r[3];
        char by_name[64];
        int before = requests_settled();

        snprintf(by_name, sizeof(by_name), "http://localhost:%d/json", srv.port);
        memset(r, 0, sizeof(r));
        r[0] = (struct fetch_request){.url = url("/json"), .public_only = true};
        r[1] = (struct fetch_request){.url = by_name, .public_only = true};
        r[2] = (struct fetch_request){.url = url("/to-other"), .public_only = true};
        CHECK(fetcher_run(f, r, 3) == 0);
        for (size_t i = 0; i < 3; i++) {
                expect_code(&r[i], ST_EINVAL);
                CHECK(strstr(r[i].result.error.msg, "not a public address"));
                CHECK(r[i].result.status == 0 && r[i].result.attempts == 1);
                CHECK(strstr(r[i].result.error.msg, "127.0.0.1") ||
                      strstr(r[i].result.error.msg, "::1"));
                fetch_request_release(&r[i]);
        }
        CHECK(requests_seen() == before);

        r[0] = (struct fetch_request){.url = url("/json")}; /* the operator's URL: exempt */
        get(f, &r[0]);
        expect_code(&r[0], 0);
        fetch_request_release(&r[0]);
        fetcher_destroy(&f);

        {
                struct fetcher_config cfg;
                struct st_error err = {0, ""};

                fetcher_config_defaults(&cfg);
                cfg.user_agent = "stylus-catalog-test/0.1 (+https://example.org/contact)";
                cfg.rate_per_host = 0;
                cfg.allow_private = true;
                CHECK(fetcher_new(&cfg, &f, &err) == 0);
        }
        r[0] = (struct fetch_request){.url = url("/json"), .public_only = true};
        r[1] = (struct fetch_request){.url = url("/to-other"), .public_only = true};
        CHECK(fetcher_run(f, r, 2) == 0);
        expect_code(&r[0], 0);
        expect_code(&r[1], 0);
        CHECK(strcmp(r[1].result.body, "auth:no") == 0);
        fetch_request_release(&r[0]);
        fetch_request_release(&r[1]);
        fetcher_destroy(&f);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        log_setup("test", LOG_ERROR);
        server_start(&srv);
        test_bad_config();
        test_success_and_headers();
        test_limits_and_refusals();
        test_concurrency_cap();
        test_rate_limit();
        test_retries();
        test_ratelimit_headers();
        test_connection_refused();
        test_token();
        test_address_guard();
        test_private_addresses();
        server_stop(&srv);
        printf("test_fetch: ok\n");
        return 0;
}
