/*
 * crawler_cmd.c - `stylus crawler`: a worker that takes crawl jobs and
 * answers them with its source's driver (crawler/civitai.h for "civitai",
 * crawler/hf.h for "hf").  Each source has its own fetcher, so each keeps
 * its own per-host rate and token; both share the validator cache
 * (--cache, crawler/validator_cache.h).
 *
 * Crawl JOB payload (proto/wire.h, plus the keys of issue 4):
 *   key     type            meaning
 *   source  str             "civitai" or "hf"
 *   cursor  str | nil       page of the pass; nil = its first page
 *   pass    str, optional   "full" (absent too) or "incremental"
 *   check   [str], optional ids to verify, 1..DRIVER_MAX_CHECK_IDS; the job is a
 *                           check, cursor and pass are ignored
 *   by_hash [str], optional civitai only: 1..CIVITAI_MAX_HASHES file SHA256s (64 hex
 *                           digits) whose owning version to ask for; cursor and pass
 *                           are ignored; not with check
 * RESULT payload:
 *   source       str
 *   records      [raw_record]  built this time
 *   next_cursor  str | nil     nil: the pass is done (always nil for a check)
 *   skipped      uint          listed but not crawlable
 *   unchanged    [str]         only when not empty: ids known unchanged without
 *                              sending them (a 304, an HF repo at the same sha)
 *   gone         [str]         checks only (maybe empty): ids whose model is gone
 *   stop         bool          incremental passes only: this page was known
 *                              ground, do not go on to next_cursor
 *   canonical    {str: str|nil} by_hash jobs only: each hash as given -> the record
 *                              id of the version Civitai answers for it
 *                              ("civitai:<modelId>@<versionId>"), nil on 404/410;
 *                              records is then empty, next_cursor nil, skipped 0
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crawler/civitai.h"
#include "crawler/fetch.h"
#include "crawler/hf.h"
#include "crawler/validator_cache.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/log.h"
#include "proto/wire.h"

#define TOKEN_MAX            512
#define HF_DEFAULT_RATE      1.5           /* under the Hub's 500 API calls per 5 minutes per IP */
#define CACHE_MAX_AGE_S      (30L * 86400) /* --cache-max-age default */
#define CACHE_PRUNE_EVERY_MS (86400L * 1000) /* a long-running worker prunes daily */

struct crawler {
        struct fetcher *civitai_fetcher;
        struct fetcher *hf_fetcher;
        struct civitai_source civitai;
        struct hf_source hf;
        struct validator_cache *cache; /* --cache, or NULL */
        long cache_max_age_s;          /* --cache-max-age; 0: keep everything */
        int64_t pruned_at;             /* wire_now_ms() of the last prune */
};

/* Prune the validator cache when it has not been for a day (and at start). */
static void prune_cache(struct crawler *c)
{
        struct st_error err = {0};
        size_t removed = 0;

        if (!c->cache || !c->cache_max_age_s ||
            (c->pruned_at && wire_now_ms() - c->pruned_at < CACHE_PRUNE_EVERY_MS))
                return;
        c->pruned_at = wire_now_ms();
        if (validator_cache_prune(c->cache, c->cache_max_age_s, &removed, &err))
                log_warn("%s", st_error_text(&err, err.code));
        else if (removed)
                log_info("validator cache: removed %zu entries unused for %ld s", removed,
                         c->cache_max_age_s);
}

/* What one crawl job asks for. */
struct crawl_request {
        char *source;
        char *cursor; /* NULL: the first page */
        enum crawl_pass pass;
        char **check; /* n_check ids, or NULL: a page of a pass */
        size_t n_check;
        char **by_hash; /* n_by_hash SHA256s, or NULL */
        size_t n_by_hash;
};

/* What one crawl job produced, whatever the source; points into the job's arena. */
struct crawl_result {
        const char *next_cursor; /* NULL: the pass is done */
        size_t n_skipped;
        struct st_raw_record *records;
        size_t n_records;
        char **unchanged;
        size_t n_unchanged;
        char **gone; /* checks only */
        size_t n_gone;
        char **hashes;    /* by_hash jobs only: n_hashes hashes as given ... */
        char **canonical; /* ... and the record id each resolved to, or NULL */
        size_t n_hashes;
        bool is_check;
        bool is_by_hash;
        bool has_stop; /* incremental passes only */
        bool stop;
};

static const char *pass_name(enum crawl_pass pass)
{
        return pass == CRAWL_PASS_INCREMENTAL ? "incremental" : "full";
}

static int crawl_civitai(struct crawler *c, const struct crawl_request *job, struct arena *a,
                         struct crawl_result *res, struct st_error *err)
{
        const char *cursor = job->cursor;
        struct civitai_page page;
        int rc =
            civitai_crawl_page(c->civitai_fetcher, &c->civitai, cursor, job->pass, a, &page, err);

        if (rc)
                return rc;
        log_info("civitai %s page %s: %s%zu models, %zu adapters, %zu unchanged, %zu skipped, "
                 "%zu errors, next %s%s",
                 pass_name(job->pass), cursor ? cursor : "(first)",
                 page.not_modified ? "304, " : "", page.n_items, page.n_records, page.n_unchanged,
                 page.n_skipped, page.n_errors,
                 page.next_cursor ? page.next_cursor : "(none: pass done)",
                 page.stop ? " (stop: known ground)" : "");
        *res = (struct crawl_result){.next_cursor = page.next_cursor,
                                     .n_skipped = page.n_skipped,
                                     .records = page.records,
                                     .n_records = page.n_records,
                                     .unchanged = page.unchanged,
                                     .n_unchanged = page.n_unchanged,
                                     .has_stop = job->pass == CRAWL_PASS_INCREMENTAL,
                                     .stop = page.stop};
        return 0;
}

static int crawl_hf(struct crawler *c, const struct crawl_request *job, struct arena *a,
                    struct crawl_result *res, struct st_error *err)
{
        const char *cursor = job->cursor;
        struct hf_page page;
        int rc = hf_crawl_page(c->hf_fetcher, &c->hf, cursor, job->pass, a, &page, err);

        if (rc)
                return rc;
        log_info("hf %s page %s: %s%zu repos, %zu adapters (%zu with cards, %zu from the "
                 "cache), %zu unchanged, %zu skipped, %zu gated/disabled/private, %zu errors, "
                 "next %s%s",
                 pass_name(job->pass), cursor ? cursor : "(first)",
                 page.not_modified ? "304, " : "", page.n_items, page.n_records, page.n_cards,
                 page.n_cached_cards, page.n_unchanged, page.n_skipped, page.n_skipped_gated,
                 page.n_errors, page.next_cursor ? page.next_cursor : "(none: pass done)",
                 page.stop ? " (stop: known ground)" : "");
        *res = (struct crawl_result){.next_cursor = page.next_cursor,
                                     .n_skipped = page.n_skipped + page.n_skipped_gated,
                                     .records = page.records,
                                     .n_records = page.n_records,
                                     .unchanged = page.unchanged,
                                     .n_unchanged = page.n_unchanged,
                                     .has_stop = job->pass == CRAWL_PASS_INCREMENTAL,
                                     .stop = page.stop};
        return 0;
}

static int check_ids(struct crawler *c, const struct crawl_request *job, struct arena *a,
                     struct crawl_result *res, struct st_error *err)
{
        struct driver_check found;
        int rc;

        if (strcmp(job->source, "civitai") == 0)
                rc = civitai_check(c->civitai_fetcher, &c->civitai, job->check, job->n_check, a,
                                   &found, err);
        else
                rc = hf_check(c->hf_fetcher, &c->hf, job->check, job->n_check, a, &found, err);
        if (rc)
                return rc;
        log_info("%s check of %zu ids: %zu present, %zu gone, %zu not verified", job->source,
                 job->n_check, found.n_records, found.n_gone, found.n_unverified);
        *res = (struct crawl_result){.records = found.records,
                                     .n_records = found.n_records,
                                     .gone = found.gone,
                                     .n_gone = found.n_gone,
                                     .is_check = true};
        return 0;
}

static int resolve_hashes(struct crawler *c, const struct crawl_request *job, struct arena *a,
                          struct crawl_result *res, struct st_error *err)
{
        char **ids = arena_calloc(a, job->n_by_hash, sizeof(*ids));
        size_t found = 0;
        int rc;

        if (!ids)
                return st_fail(err, ST_ENOMEM, "crawl job: arena full");
        rc = civitai_resolve_hashes(c->civitai_fetcher, &c->civitai, job->by_hash, job->n_by_hash,
                                    a, ids, err);
        if (rc)
                return rc;
        for (size_t i = 0; i < job->n_by_hash; i++)
                found += ids[i] != NULL;
        log_info("civitai by_hash of %zu hashes: %zu owned by a version, %zu unknown",
                 job->n_by_hash, found, job->n_by_hash - found);
        *res = (struct crawl_result){.hashes = job->by_hash,
                                     .canonical = ids,
                                     .n_hashes = job->n_by_hash,
                                     .is_by_hash = true};
        return 0;
}

/* Does hashes[i] repeat an earlier one? */
static bool repeated(char *const *hashes, size_t i)
{
        for (size_t j = 0; j < i; j++)
                if (strcmp(hashes[j], hashes[i]) == 0)
                        return true;
        return false;
}

/* Each distinct hash once: a msgpack map must not repeat a key. */
static void pack_canonical(msgpack_packer *pk, const struct crawl_result *res)
{
        size_t distinct = 0;

        for (size_t i = 0; i < res->n_hashes; i++)
                distinct += !repeated(res->hashes, i);
        wire_pack_key(pk, "canonical");
        msgpack_pack_map(pk, distinct);
        for (size_t i = 0; i < res->n_hashes; i++) {
                if (repeated(res->hashes, i))
                        continue;
                wire_pack_str(pk, res->hashes[i]);
                wire_pack_str(pk, res->canonical[i]);
        }
}

static void pack_ids(msgpack_packer *pk, const char *key, char *const *ids, size_t n)
{
        wire_pack_key(pk, key);
        msgpack_pack_array(pk, n);
        for (size_t i = 0; i < n; i++)
                wire_pack_str(pk, ids[i]);
}

static int pack_result(msgpack_packer *pk, const char *source, const struct crawl_result *res,
                       struct st_error *err)
{
        char stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        int rc;

        gmtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        msgpack_pack_map(pk, 4 + (res->n_unchanged > 0) + res->is_check + res->has_stop +
                                 res->is_by_hash);
        wire_pack_kv_str(pk, "source", source);
        wire_pack_kv_str(pk, "next_cursor", res->next_cursor);
        wire_pack_kv_u64(pk, "skipped", res->n_skipped);
        wire_pack_key(pk, "records");
        msgpack_pack_array(pk, res->n_records);
        for (size_t i = 0; i < res->n_records; i++) {
                if (!res->records[i].crawled_at)
                        res->records[i].crawled_at = stamp;
                rc = st_raw_record_pack(pk, &res->records[i]);
                if (rc)
                        return st_fail(err, rc, "cannot encode %s", res->records[i].id);
        }
        if (res->n_unchanged > 0)
                pack_ids(pk, "unchanged", res->unchanged, res->n_unchanged);
        if (res->is_check)
                pack_ids(pk, "gone", res->gone, res->n_gone);
        if (res->has_stop)
                wire_pack_kv_bool(pk, "stop", res->stop);
        if (res->is_by_hash)
                pack_canonical(pk, res);
        return 0;
}

/* A job's list of 1..max strings under key (absent or nil: *out stays NULL). */
static int read_strings(const msgpack_object *payload, const char *key, size_t max, struct arena *a,
                        char ***out, size_t *n, struct st_error *err)
{
        const msgpack_object *v = wire_get(payload, key);

        if (!v || v->type == MSGPACK_OBJECT_NIL)
                return 0;
        if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size == 0 || v->via.array.size > max)
                return st_fail(err, ST_EINVAL, "crawl job: '%s' must hold 1..%zu strings", key,
                               max);
        *out = arena_calloc(a, v->via.array.size, sizeof(**out));
        if (!*out)
                return st_fail(err, ST_ENOMEM, "crawl job: arena full");
        for (uint32_t i = 0; i < v->via.array.size; i++) {
                const msgpack_object *s = &v->via.array.ptr[i];

                if (s->type != MSGPACK_OBJECT_STR || s->via.str.size == 0 ||
                    s->via.str.size >= ST_LIMIT_STRING ||
                    memchr(s->via.str.ptr, '\0', s->via.str.size))
                        return st_fail(err, ST_EINVAL, "crawl job: %s entry %u is not a string",
                                       key, (unsigned)i);
                (*out)[i] = arena_strndup(a, s->via.str.ptr, s->via.str.size);
                if (!(*out)[i])
                        return st_fail(err, ST_ENOMEM, "crawl job: arena full");
        }
        *n = v->via.array.size;
        return 0;
}

static int read_job(const msgpack_object *payload, struct arena *a, struct crawl_request *job,
                    struct st_error *err)
{
        const msgpack_object *given = wire_get(payload, "pass");
        char *pass = NULL;
        int rc;

        memset(job, 0, sizeof(*job));
        if (wire_get_str(payload, "source", a, &job->source))
                return st_fail(err, ST_EMISSING, "crawl job without a source");
        wire_get_str(payload, "cursor", a, &job->cursor); /* nil: first page */
        if (given && given->type != MSGPACK_OBJECT_NIL) { /* absent or nil: a full pass */
                if (wire_get_str(payload, "pass", a, &pass) ||
                    (strcmp(pass, "full") != 0 && strcmp(pass, "incremental") != 0))
                        return st_fail(err, ST_EINVAL,
                                       "crawl job: pass must be \"full\" or \"incremental\"");
                if (strcmp(pass, "incremental") == 0)
                        job->pass = CRAWL_PASS_INCREMENTAL;
        }
        rc = read_strings(payload, "check", DRIVER_MAX_CHECK_IDS, a, &job->check, &job->n_check,
                          err);
        if (rc == 0)
                rc = read_strings(payload, "by_hash", CIVITAI_MAX_HASHES, a, &job->by_hash,
                                  &job->n_by_hash, err);
        if (rc == 0 && job->check && job->by_hash)
                rc = st_fail(err, ST_EINVAL, "crawl job: 'check' and 'by_hash' together");
        if (rc == 0 && job->by_hash && strcmp(job->source, "civitai") != 0)
                rc = st_fail(err, ST_EINVAL, "crawl job: 'by_hash' is for source civitai only");
        return rc;
}

static int crawl_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                     struct st_error *err)
{
        struct crawler *c = ctx;
        struct crawl_request job;
        struct crawl_result res = {0};
        int rc = read_job(payload, a, &job, err);

        if (rc)
                return rc;
        prune_cache(c);
        if (strcmp(job.source, "civitai") != 0 && strcmp(job.source, "hf") != 0)
                return st_fail(err, ST_EINVAL, "this crawler has no driver for source '%.64s'",
                               job.source);
        if (job.check)
                rc = check_ids(c, &job, a, &res, err);
        else if (job.by_hash)
                rc = resolve_hashes(c, &job, a, &res, err);
        else if (strcmp(job.source, "civitai") == 0)
                rc = crawl_civitai(c, &job, a, &res, err);
        else
                rc = crawl_hf(c, &job, a, &res, err);
        if (rc)
                return rc;
        return pack_result(pk, job.source, &res, err);
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
        fputs(
            "usage: stylus crawler [--connect ENDPOINT] [--civitai-url URL]\n"
            "                      [--civitai-token-file FILE] [--max-per-host N]\n"
            "                      [--rate REQ_PER_S] [--civitai-page-limit N]\n"
            "                      [--hf-url URL] [--hf-token-file FILE]\n"
            "                      [--hf-rate REQ_PER_S] [--hf-page-limit N]\n"
            "                      [--cache DIR] [--allow-private] [--contact TEXT]\n"
            "                      [--max-jobs N]\n"
            "\n"
            "Run a crawler worker: take crawl jobs from the catalog and return one raw\n"
            "record per adapter version.  Source \"civitai\": pages of /api/v1/models\n"
            "(LORA, LoCon, DoRA; cursor pagination) with example image prompts.  Source\n"
            "\"hf\": pages of the Hugging Face /api/models LoRA listings (Link pagination),\n"
            "each repo completed from its README's YAML front matter.  A civitai job with\n"
            "by_hash asks which version owns each file SHA256 (re-uploads).\n"
            "\n"
            "  --connect ENDPOINT      catalog broker (default tcp://127.0.0.1:5555)\n"
            "  --civitai-url URL       Civitai or a mirror (default https://civitai.com)\n"
            "  --civitai-token-file F  API key file; or set STYLUS_CIVITAI_TOKEN (never logged)\n"
            "  --max-per-host N        connections at once per host (default 2)\n"
            "  --rate R                Civitai requests per second per host (default 1;\n"
            "                          0 = no limit)\n"
            "  --civitai-page-limit N  models per Civitai page, 1..100 (default 100)\n"
            "  --hf-url URL            Hugging Face or a mirror (default https://huggingface.co)\n"
            "  --hf-token-file F       access token file; or set STYLUS_HF_TOKEN (never logged)\n"
            "  --hf-rate R             Hugging Face requests per second per host (default 1.5;\n"
            "                          0 = no limit)\n"
            "  --hf-page-limit N       repos per Hugging Face listing page, 1..1000 (default 25)\n"
            "  --cache DIR             validator cache of this worker (ETags, what each page and\n"
            "                          model produced): conditional requests, unchanged ids,\n"
            "                          incremental passes that stop early (default: none)\n"
            "  --cache-max-age DUR     drop cache entries no pass used for DUR (90s, 30m, 6h,\n"
            "                          7d; default 30d; 0 keeps them): at start, then daily\n"
            "  --allow-private         let image and file downloads reach private, loopback and\n"
            "                          link-local addresses (tests, LAN mirrors); API URLs\n"
            "                          given here are always allowed\n"
            "  --contact TEXT          contact put in the User-Agent (URL or e-mail)\n"
            "  --max-jobs N            exit after N jobs (default: run until stopped)\n"
            "\n"
            "examples:\n"
            "  STYLUS_CIVITAI_TOKEN=... STYLUS_HF_TOKEN=... stylus crawler --contact "
            "ops@example.org\n"
            "  stylus crawler --civitai-url http://127.0.0.1:8000 --hf-url http://127.0.0.1:8000 "
            "\\\n"
            "                 --rate 0 --hf-rate 0 --allow-private\n",
            f);
}

/* Make the fetcher of one source: cfg plus its rate (and the fetcher-wide token, if any). */
static int make_fetcher(const struct fetcher_config *cfg, double rate, struct fetcher **out)
{
        struct fetcher_config c = *cfg;
        struct st_error err = {0, ""};

        c.rate_per_host = rate;
        if (fetcher_new(&c, out, &err)) {
                fprintf(stderr, "stylus crawler: %s\n", st_error_text(&err, err.code));
                return 1;
        }
        return 0;
}

static int open_cache(struct crawler *c, const char *dir)
{
        struct st_error err = {0, ""};

        if (validator_cache_open(dir, &c->cache, &err)) {
                fprintf(stderr, "stylus crawler: %s\n", st_error_text(&err, err.code));
                return 1;
        }
        c->civitai.cache = c->cache;
        c->hf.cache = c->cache;
        return 0;
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
            {"hf-url", required_argument, NULL, 'U'},
            {"hf-token-file", required_argument, NULL, 'T'},
            {"hf-rate", required_argument, NULL, 'R'},
            {"hf-page-limit", required_argument, NULL, 'L'},
            {"civitai-page-limit", required_argument, NULL, 'l'},
            {"allow-private", no_argument, NULL, 'P'},
            {"cache", required_argument, NULL, 'C'},
            {"cache-max-age", required_argument, NULL, 'G'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555", *token_file = NULL, *hf_token_file = NULL;
        const char *contact = "+https://github.com/stylus-catalog", *cache_dir = NULL;
        struct crawler c = {
            .civitai = {.base_url = "https://civitai.com", .page_limit = 100},
            .hf = {.base_url = "https://huggingface.co", .page_limit = HF_DEFAULT_PAGE_LIMIT},
            .cache_max_age_s = CACHE_MAX_AGE_S,
        };
        struct fetcher_config cfg;
        char token[TOKEN_MAX], hf_token[TOKEN_MAX], agent[512];
        double hf_rate = HF_DEFAULT_RATE;
        long max_jobs = 0;
        int opt, rc = 1;

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
                case 'U':
                        c.hf.base_url = optarg;
                        break;
                case 'T':
                        hf_token_file = optarg;
                        break;
                case 'R':
                        hf_rate = strtod(optarg, NULL);
                        break;
                case 'L':
                        c.hf.page_limit = (int)strtol(optarg, NULL, 10);
                        break;
                case 'l':
                        c.civitai.page_limit = (int)strtol(optarg, NULL, 10);
                        break;
                case 'P':
                        cfg.allow_private = true;
                        break;
                case 'G':
                        c.cache_max_age_s = cli_parse_duration(optarg);
                        if (c.cache_max_age_s < 0) {
                                fprintf(stderr,
                                        "stylus crawler: --cache-max-age: '%s' is no "
                                        "duration (90s, 30m, 6h, 7d)\n",
                                        optarg);
                                return 2;
                        }
                        break;
                case 'C':
                        cache_dir = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (cfg.max_per_host == 0 || !(cfg.rate_per_host >= 0) || !(hf_rate >= 0) ||
            c.hf.page_limit < 1 || c.hf.page_limit > HF_MAX_PAGE_LIMIT ||
            c.civitai.page_limit < 1 || c.civitai.page_limit > 100) {
                usage(stderr);
                return 2;
        }
        if (read_token("STYLUS_CIVITAI_TOKEN", token_file, token, sizeof(token)) ||
            read_token("STYLUS_HF_TOKEN", hf_token_file, hf_token, sizeof(hf_token))) {
                fprintf(stderr, "stylus crawler: cannot read a token file\n");
                goto out_tokens;
        }
        if (cache_dir && open_cache(&c, cache_dir))
                goto out_tokens;
        prune_cache(&c);
        snprintf(agent, sizeof(agent), "stylus-catalog/0.1 (LoRA catalog crawler; %s)", contact);
        cfg.user_agent = agent;
        if (hf_token[0])
                c.hf.token = hf_token; /* sent per request, only to hf.base_url (hf.h) */
        if (make_fetcher(&cfg, hf_rate, &c.hf_fetcher))
                goto out_cache;
        if (token[0]) {
                cfg.token = token;
                cfg.token_origin = c.civitai.base_url;
                c.civitai.token = token;
        }
        if (make_fetcher(&cfg, cfg.rate_per_host, &c.civitai_fetcher))
                goto out_hf;
        rc = cli_run_worker("crawler", endpoint, "crawl", crawl_job, &c, max_jobs);
        fetcher_destroy(&c.civitai_fetcher);
out_hf:
        fetcher_destroy(&c.hf_fetcher);
out_cache:
        validator_cache_destroy(&c.cache);
out_tokens:
        explicit_bzero(token, sizeof(token));
        explicit_bzero(hf_token, sizeof(hf_token));
        return rc;
}
