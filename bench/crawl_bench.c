/*
 * crawl_bench.c - pages per second of the crawler's fetcher against the
 * fixture server (tests/fixtures/server.py --latency-ms L), as a ratio of
 * the bound the politeness limits allow.  Run it through crawl_bench.sh.
 *
 * A "page" is one GET of the Civitai listing
 *   <base>/api/v1/models?limit=<L>&types=LORA&types=LoCon&types=DoRA&nsfw=true
 *   &sort=Newest[&cursor=C]
 * (civitai_models_url), answered 200 and parsed by civitai_parse_models_page;
 * no /api/v1/images calls.  Two figures:
 *
 *   chain  the crawl's own order: each page's metadata.nextCursor gives the
 *          next page, so one request is in flight at a time and the bound
 *          is 1 / latency pages/s (20 at 50 ms);
 *   fanout the chain's page URLs, known in advance, fetched again `rounds`
 *          times in one fetcher_run with max_per_host transfers at once: the
 *          bound is max_per_host / latency (80 at 4 and 50 ms).
 *
 *   crawl_bench BASE_URL LATENCY_MS MAX_PER_HOST PAGE_LIMIT ROUNDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crawler/civitai.h"
#include "crawler/fetch.h"
#include "proto/arena.h"

#define MAX_PAGES  4096
#define ARENA_SIZE (64u << 20)

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_fetcher(unsigned max_per_host, struct fetcher **f)
{
        struct fetcher_config cfg;
        struct st_error err = {0, ""};

        fetcher_config_defaults(&cfg);
        cfg.user_agent = "stylus-catalog-bench/0.1 (+https://github.com/stylus-catalog)";
        cfg.max_per_host = max_per_host;
        cfg.rate_per_host = 0;
        cfg.max_retries = 0; /* a retry would hide a failure inside the figure */
        if (fetcher_new(&cfg, f, &err)) {
                fprintf(stderr, "crawl_bench: %s\n", err.msg);
                return 1;
        }
        return 0;
}

/* Follow the cursor chain from the first page; store each page's URL in urls[]. */
static int run_chain(struct fetcher *f, const char *base, int limit, struct arena *a, char **urls,
                     size_t *n_pages)
{
        const char *cursor = NULL;
        size_t n = 0;

        do {
                struct fetch_request req = {.content_type = "application/json",
                                            .max_body = CIVITAI_MODELS_MAX_BODY};
                struct civitai_page page;
                struct st_error err = {0, ""};

                if (n == MAX_PAGES) {
                        fprintf(stderr, "crawl_bench: more than %d pages\n", MAX_PAGES);
                        return 1;
                }
                req.url = urls[n] = civitai_models_url(a, base, cursor, limit);
                if (!req.url || fetcher_run(f, &req, 1) || req.result.error.code) {
                        fprintf(stderr, "crawl_bench: page %zu: %s\n", n, req.result.error.msg);
                        fetch_request_release(&req);
                        return 1;
                }
                if (civitai_parse_models_page(req.result.body, req.result.body_len, base,
                                              "2026-01-01T00:00:00Z", a, &page, &err)) {
                        fprintf(stderr, "crawl_bench: page %zu: %s\n", n, err.msg);
                        fetch_request_release(&req);
                        return 1;
                }
                fetch_request_release(&req);
                cursor = page.next_cursor;
                n++;
        } while (cursor);
        *n_pages = n;
        return 0;
}

/* Fetch every URL `rounds` times in one run; count the pages that came back 200. */
static int run_fanout(struct fetcher *f, char **urls, size_t n, int rounds, size_t *ok)
{
        size_t total = n * (size_t)rounds;
        struct fetch_request *reqs = calloc(total, sizeof(*reqs));

        if (!reqs)
                return 1;
        for (size_t i = 0; i < total; i++) {
                reqs[i].url = urls[i % n];
                reqs[i].content_type = "application/json";
                reqs[i].max_body = CIVITAI_MODELS_MAX_BODY;
        }
        *ok = 0;
        if (fetcher_run(f, reqs, total) == 0)
                for (size_t i = 0; i < total; i++)
                        *ok += reqs[i].result.error.code == 0 && reqs[i].result.status == 200;
        for (size_t i = 0; i < total; i++)
                fetch_request_release(&reqs[i]);
        free(reqs);
        return *ok == total ? 0 : 1;
}

int main(int argc, char **argv)
{
        static char *urls[MAX_PAGES];
        struct fetcher *f = NULL;
        struct arena a;
        double latency_s, t0, chain_s, fan_s, chain_bound, fan_bound;
        unsigned per_host;
        size_t n = 0, ok = 0;
        int limit, rounds, rc = 1;

        if (argc != 6) {
                fprintf(stderr, "usage: crawl_bench BASE_URL LATENCY_MS MAX_PER_HOST PAGE_LIMIT "
                                "ROUNDS\n");
                return 2;
        }
        latency_s = strtod(argv[2], NULL) / 1000.0;
        per_host = (unsigned)strtoul(argv[3], NULL, 10);
        limit = (int)strtol(argv[4], NULL, 10);
        rounds = (int)strtol(argv[5], NULL, 10);
        if (latency_s <= 0 || per_host < 1 || limit < 1 || rounds < 1)
                return 2;
        arena_init(&a, ARENA_SIZE);
        if (make_fetcher(per_host, &f))
                goto out_arena;
        t0 = now_s();
        if (run_chain(f, argv[1], limit, &a, urls, &n))
                goto out_fetcher;
        chain_s = now_s() - t0;
        t0 = now_s();
        if (run_fanout(f, urls, n, rounds, &ok)) {
                fprintf(stderr, "crawl_bench: fanout: %zu of %zu pages\n", ok, n * (size_t)rounds);
                goto out_fetcher;
        }
        fan_s = now_s() - t0;
        chain_bound = 1.0 / latency_s;
        fan_bound = per_host / latency_s;
        printf("page = GET /api/v1/models?limit=%d&types=LORA&types=LoCon&types=DoRA&nsfw=true"
               "&sort=Newest[&cursor=..], 200, parsed\n",
               limit);
        printf("chain : %4zu pages in %6.2f s = %6.1f pages/s; bound 1/%.0f ms = %5.1f; "
               "ratio %.2f\n",
               n, chain_s, (double)n / chain_s, latency_s * 1000, chain_bound,
               (double)n / chain_s / chain_bound);
        printf("fanout: %4zu pages in %6.2f s = %6.1f pages/s; bound %u/%.0f ms = %5.1f; "
               "ratio %.2f (goal >= 0.90)\n",
               ok, fan_s, (double)ok / fan_s, per_host, latency_s * 1000, fan_bound,
               (double)ok / fan_s / fan_bound);
        rc = 0;
out_fetcher:
        fetcher_destroy(&f);
out_arena:
        arena_release(&a);
        return rc;
}
