/*
 * crawler_cmd.c - `stylus crawler`: a worker that takes crawl jobs (a
 * source and a cursor), fetches that page of the source with the Civitai
 * driver (crawler/civitai.h), and returns one raw record per adapter
 * version plus the next cursor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crawler/civitai.h"
#include "crawler/fetch.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/log.h"
#include "proto/wire.h"

#define TOKEN_MAX 512

struct crawler {
        struct fetcher *fetcher;
        struct civitai_source civitai;
};

static int crawl_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                     struct st_error *err)
{
        struct crawler *c = ctx;
        struct civitai_page page;
        char *source = NULL, *cursor = NULL;
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        int rc;

        if (wire_get_str(payload, "source", a, &source))
                return st_fail(err, ST_EMISSING, "crawl job without a source");
        if (strcmp(source, "civitai"))
                return st_fail(err, ST_EINVAL, "this crawler has no driver for source '%s'",
                               source);
        wire_get_str(payload, "cursor", a, &cursor); /* nil: first page */
        rc = civitai_crawl_page(c->fetcher, &c->civitai, cursor, a, &page, err);
        if (rc)
                return rc;
        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        log_info("page %s: %zu models, %zu adapters, %zu skipped, %zu errors, next %s",
                 cursor ? cursor : "(first)", page.n_items, page.n_records, page.n_skipped,
                 page.n_errors, page.next_cursor ? page.next_cursor : "(none: pass done)");
        msgpack_pack_map(pk, 4);
        wire_pack_kv_str(pk, "source", source);
        wire_pack_kv_str(pk, "next_cursor", page.next_cursor);
        wire_pack_kv_u64(pk, "skipped", page.n_skipped);
        wire_pack_key(pk, "records");
        msgpack_pack_array(pk, page.n_records);
        for (size_t i = 0; i < page.n_records; i++) {
                if (!page.records[i].crawled_at)
                        page.records[i].crawled_at = stamp;
                rc = st_raw_record_pack(pk, &page.records[i]);
                if (rc)
                        return st_fail(err, rc, "cannot encode %s", page.records[i].id);
        }
        return 0;
}

/* A token from the environment or a file (first line), never from a flag value. */
static int read_token(const char *env, const char *file, char *buf, size_t size)
{
        const char *v = getenv(env);
        FILE *f;
        size_t n;

        buf[0] = '\0';
        if (v && *v) {
                snprintf(buf, size, "%s", v);
                return 0;
        }
        if (!file)
                return 0;
        f = fopen(file, "r");
        if (!f)
                return ST_EIO;
        n = fread(buf, 1, size - 1, f);
        fclose(f);
        buf[n] = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        return 0;
}

static void usage(FILE *f)
{
        fputs("usage: stylus crawler [--connect ENDPOINT] [--civitai-url URL]\n"
              "                      [--civitai-token-file FILE] [--max-per-host N]\n"
              "                      [--rate REQ_PER_S] [--contact TEXT] [--max-jobs N]\n"
              "\n"
              "Run a crawler worker: take crawl jobs from the catalog, fetch pages of\n"
              "Civitai's /api/v1/models (LORA, LoCon, DoRA; cursor pagination) and return\n"
              "one raw record per adapter version, with example image prompts.\n"
              "\n"
              "  --connect ENDPOINT      catalog broker (default tcp://127.0.0.1:5555)\n"
              "  --civitai-url URL       Civitai or a mirror (default https://civitai.com)\n"
              "  --civitai-token-file F  API key file; or set STYLUS_CIVITAI_TOKEN (never logged)\n"
              "  --max-per-host N        connections at once per host (default 2)\n"
              "  --rate R                requests per second per host (default 1; 0 = no limit)\n"
              "  --contact TEXT          contact put in the User-Agent (URL or e-mail)\n"
              "  --max-jobs N            exit after N jobs (default: run until stopped)\n"
              "\n"
              "examples:\n"
              "  STYLUS_CIVITAI_TOKEN=... stylus crawler --contact ops@example.org\n"
              "  stylus crawler --civitai-url http://127.0.0.1:8000 --rate 0\n",
              f);
}

int cmd_crawler(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"civitai-url", required_argument, NULL, 'u'},
            {"civitai-token-file", required_argument, NULL, 't'},
            {"max-per-host", required_argument, NULL, 'p'},
            {"rate", required_argument, NULL, 'r'},
            {"contact", required_argument, NULL, 'a'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555", *token_file = NULL;
        const char *contact = "+https://github.com/stylus-catalog";
        struct crawler c = {.civitai = {.base_url = "https://civitai.com", .page_limit = 100}};
        struct fetcher_config cfg;
        struct st_error err = {0};
        char token[TOKEN_MAX], agent[512];
        long max_jobs = 0;
        int opt, rc;

        fetcher_config_defaults(&cfg);
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 'u':
                        c.civitai.base_url = optarg;
                        break;
                case 't':
                        token_file = optarg;
                        break;
                case 'p':
                        cfg.max_per_host = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'r':
                        cfg.rate_per_host = strtod(optarg, NULL);
                        break;
                case 'a':
                        contact = optarg;
                        break;
                case 'n':
                        max_jobs = strtol(optarg, NULL, 10);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (cfg.max_per_host == 0 || cfg.rate_per_host < 0) {
                usage(stderr);
                return 2;
        }
        if (read_token("STYLUS_CIVITAI_TOKEN", token_file, token, sizeof(token))) {
                fprintf(stderr, "stylus crawler: cannot read the token file\n");
                return 1;
        }
        snprintf(agent, sizeof(agent), "stylus-catalog/0.1 (LoRA catalog crawler; %s)", contact);
        cfg.user_agent = agent;
        if (token[0]) {
                cfg.token = token;
                cfg.token_origin = c.civitai.base_url;
                c.civitai.token = token;
        }
        if (fetcher_new(&cfg, &c.fetcher, &err)) {
                fprintf(stderr, "stylus crawler: %s\n", st_error_text(&err, err.code));
                return 1;
        }
        rc = cli_run_worker("crawler", endpoint, "crawl", crawl_job, &c, max_jobs);
        fetcher_destroy(&c.fetcher);
        memset(token, 0, sizeof(token));
        return rc;
}
