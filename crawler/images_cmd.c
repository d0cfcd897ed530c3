/*
 * images_cmd.c - `stylus images`: a worker that downloads the example
 * images of one raw record per job into the content-addressed image store
 * (crawler/image_store.h), with the crawler's polite fetcher
 * (crawler/fetch.h, every image URL public_only).
 *
 * Job and result (stage "images"; proto/wire.h carries them):
 *
 *   JOB payload     record (map)      the raw_record (proto/doc.h)
 *   RESULT payload  id (str)          the record's id
 *                   content_hash (str) the record's content_hash as the job
 *                                     carried it (computed when absent), so
 *                                     the catalog can tell a stale result
 *                   images (array)    one map per image of the record, in
 *                                     its order:
 *                     url (str)         the image's URL ("" when it had none)
 *                     sha256 (str)      64 lowercase hex; absent on failure
 *                     bytes (uint)      size of the stored image; 0 on failure
 *                     error (str)       why it failed; absent on success
 *
 * A URL the store already has costs no request.  A per-image failure (HTTP
 * status, not an image, over the cap, a refused private address, a network
 * error after the fetcher's retries) is reported in its slot and the job
 * succeeds; the job fails, so the catalog retries it, only when the batch
 * itself broke down: the store cannot be written (the error names the
 * directory), the fetcher's run failed, or the record cannot be decoded.
 *
 * With --store-max-bytes the worker trims the store (image_store_trim(),
 * oldest images first) at start and whenever it has stored a twentieth of
 * the cap since the last trim; --trim does one trim and exits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crawler/fetch.h"
#include "crawler/image_store.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/doc.h"
#include "proto/log.h"
#include "proto/utf8.h"
#include "proto/wire.h"

#define IMAGES_DEFAULT_CONCURRENCY 8
#define IMAGES_DEFAULT_RATE        2.0    /* requests per second per image host */
#define IMAGES_TIMEOUT_MS          60000L /* one attempt of one image */
#define IMAGES_ERROR_MAX           240    /* bytes of a slot's error text */
#define IMAGES_TRIM_EVERY          20     /* trim after storing cap / this bytes */

struct images_worker {
        struct image_store *store;
        struct fetcher *fetcher;
        uint64_t jobs, stored, already, failed; /* counters, logged at exit */
        uint64_t cap;                           /* --store-max-bytes; 0: no cap */
        uint64_t put_bytes;                     /* stored since the last trim */
};

/* Trim the store to its cap and log what went; false when the trim failed. */
static bool trim_store(struct images_worker *w)
{
        struct image_store_trim t;
        struct st_error err = {0};

        w->put_bytes = 0;
        if (image_store_trim(w->store, w->cap, IMAGE_STORE_TRIM_MIN_AGE_S, &t, &err)) {
                log_warn("%s", st_error_text(&err, err.code));
                return false;
        }
        if (t.removed || t.young)
                log_info("image store %s: %llu images, %llu bytes over a cap of %llu: removed the "
                         "%llu oldest (%llu bytes) and %llu URL entries%s",
                         image_store_dir(w->store), (unsigned long long)t.images,
                         (unsigned long long)t.bytes, (unsigned long long)w->cap,
                         (unsigned long long)t.removed, (unsigned long long)t.removed_bytes,
                         (unsigned long long)t.urls_removed,
                         t.young ? "; still over: the rest is younger than 10 minutes" : "");
        return true;
}

/* One image of the job's record: what the result says about it. */
struct slot {
        const char *url;
        long request; /* index of its fetch request, -1 when none is needed */
        struct image_store_entry entry;
        const char *error; /* in the arena; NULL on success */
};

/* Set slot's error to a copy of what, cut at IMAGES_ERROR_MAX bytes on a UTF-8 boundary. */
static int slot_fail(struct slot *sl, struct arena *a, const char *what)
{
        size_t len = utf8_fit(what, strnlen(what, IMAGES_ERROR_MAX + 1), IMAGES_ERROR_MAX);

        sl->error = arena_strndup(a, what, len);
        return sl->error ? 0 : ST_ENOMEM;
}

/*
 * Look each image up in the store, and plan one request per URL still
 * missing (a URL twice in the record is fetched once).  Returns the number
 * of requests in *n_requests.
 */
static int plan(struct images_worker *w, const struct st_raw_record *r, struct arena *a,
                struct slot *slots, struct fetch_request *reqs, size_t *n_requests)
{
        struct st_error why;
        size_t i, j, m = 0;
        int rc = 0;

        for (i = 0; i < r->n_images && !rc; i++) {
                struct slot *sl = &slots[i];

                sl->url = r->images[i].url ? r->images[i].url : "";
                sl->request = -1;
                if (!*sl->url) {
                        rc = slot_fail(sl, a, "image has no URL");
                        continue;
                }
                if (image_store_lookup_url(w->store, sl->url, &sl->entry, &why) == 0)
                        continue;
                log_debug("%s: not in the store: %s", sl->url, why.msg);
                for (j = 0; j < i; j++)
                        if (slots[j].request >= 0 && strcmp(slots[j].url, sl->url) == 0)
                                break;
                if (j < i) {
                        sl->request = slots[j].request;
                        continue;
                }
                sl->request = (long)m;
                reqs[m] = (struct fetch_request){
                    .url = sl->url,
                    .max_body = image_store_max_bytes(w->store),
                    .content_type = "image/",
                    .public_only = true,
                };
                m++;
        }
        *n_requests = m;
        return rc;
}

/*
 * Store what request req of slot sl brought.  Per-image failures go into
 * the slot; ST_EIO / ST_ENOMEM (the store or the arena broke down) are
 * returned with err set.
 */
static int store_one(struct images_worker *w, struct slot *sl, const struct fetch_request *req,
                     struct arena *a, struct st_error *err)
{
        char what[IMAGES_ERROR_MAX + 16];
        struct st_error e = {0};
        int rc;

        if (req->result.error.code)
                return slot_fail(sl, a, st_error_text(&req->result.error, req->result.error.code));
        if (!req->result.body) {
                snprintf(what, sizeof(what), "GET %s: empty body", sl->url);
                return slot_fail(sl, a, what);
        }
        rc = image_store_put(w->store, sl->url, req->result.body, req->result.body_len, NULL,
                             &sl->entry, &e);
        if (rc == ST_EIO || rc == ST_ENOMEM) {
                *err = e;
                return rc;
        }
        if (rc) {
                snprintf(what, sizeof(what), "GET %s: %s", sl->url, st_error_text(&e, rc));
                return slot_fail(sl, a, what);
        }
        w->put_bytes += sl->entry.size;
        return 0;
}

static void pack_result(msgpack_packer *pk, const struct st_raw_record *r, const char *content_hash,
                        const struct slot *slots)
{
        size_t i;

        msgpack_pack_map(pk, 3);
        wire_pack_kv_str(pk, "id", r->id);
        wire_pack_kv_str(pk, "content_hash", content_hash);
        wire_pack_key(pk, "images");
        msgpack_pack_array(pk, r->n_images);
        for (i = 0; i < r->n_images; i++) {
                const struct slot *sl = &slots[i];

                msgpack_pack_map(pk, 3);
                wire_pack_kv_str(pk, "url", sl->url);
                if (sl->error) {
                        wire_pack_kv_u64(pk, "bytes", 0);
                        wire_pack_kv_str(pk, "error", sl->error);
                } else {
                        wire_pack_kv_str(pk, "sha256", sl->entry.sha256);
                        wire_pack_kv_u64(pk, "bytes", sl->entry.size);
                }
        }
}

/* Fetch the planned requests and store each answer; the slots say how each image went. */
static int fetch_and_store(struct images_worker *w, struct slot *slots, size_t n,
                           struct fetch_request *reqs, size_t m, struct arena *a,
                           struct st_error *err)
{
        size_t i;
        int rc = 0;

        if (m > 0) {
                rc = fetcher_run(w->fetcher, reqs, m);
                if (rc)
                        return st_fail(err, rc, "image downloads broke down: %s", st_strerror(rc));
        }
        for (i = 0; i < n && !rc; i++) {
                if (slots[i].request < 0 || slots[i].error)
                        continue;
                rc = store_one(w, &slots[i], &reqs[slots[i].request], a, err);
        }
        if (rc == ST_ENOMEM && !err->msg[0])
                st_fail(err, rc, "job memory full");
        return rc;
}

/* Count and log how the images of one job went. */
static void account(struct images_worker *w, const struct st_raw_record *r,
                    const struct slot *slots, size_t fetched)
{
        size_t i, failed = 0, already = 0;

        for (i = 0; i < r->n_images; i++) {
                if (slots[i].error)
                        failed++;
                else if (slots[i].request < 0)
                        already++;
        }
        w->jobs++;
        w->failed += failed;
        w->already += already;
        w->stored += r->n_images - failed - already;
        log_info("%s: %zu images: %zu newly stored from %zu downloads, %zu already stored, "
                 "%zu failed",
                 r->id, r->n_images, r->n_images - failed - already, fetched, already, failed);
}

static int images_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                      struct st_error *err)
{
        struct images_worker *w = ctx;
        const msgpack_object *o = wire_get(payload, "record");
        struct fetch_request *reqs = NULL;
        struct st_raw_record r;
        struct slot *slots;
        char hash[SHA256_HEX_SIZE];
        const char *content_hash;
        size_t m = 0, i;
        int rc;

        if (!o)
                return st_fail(err, ST_EMISSING, "images job without a record");
        rc = st_raw_record_from_object(o, a, &r, err);
        if (rc)
                return rc;
        content_hash = r.content_hash;
        if (!content_hash) {
                rc = st_raw_record_hash(&r, hash);
                if (rc)
                        return st_fail(err, rc, "%s: cannot hash the record", r.id);
                content_hash = hash;
        }
        slots = arena_calloc(a, r.n_images ? r.n_images : 1, sizeof(*slots));
        if (r.n_images)
                reqs = calloc(r.n_images, sizeof(*reqs));
        if (!slots || (r.n_images && !reqs)) {
                free(reqs);
                return st_fail(err, ST_ENOMEM, "%s: out of memory", r.id);
        }
        rc = plan(w, &r, a, slots, reqs, &m);
        if (!rc)
                rc = fetch_and_store(w, slots, r.n_images, reqs, m, a, err);
        else
                st_fail(err, rc, "%s: job memory full", r.id);
        for (i = 0; i < m; i++)
                fetch_request_release(&reqs[i]);
        free(reqs);
        if (rc)
                return rc;
        account(w, &r, slots, m);
        pack_result(pk, &r, content_hash, slots);
        if (w->cap && w->put_bytes >= w->cap / IMAGES_TRIM_EVERY)
                trim_store(w);
        return 0;
}

static void usage(FILE *f)
{
        fputs("usage: stylus images --store DIR [--catalog ENDPOINT] [--max-bytes N]\n"
              "                     [--concurrency N] [--max-per-host N] [--rate REQ_PER_S]\n"
              "                     [--allow-private] [--contact TEXT] [--max-jobs N]\n"
              "                     [--store-max-bytes SIZE [--trim]]\n"
              "\n"
              "Run an images worker: take images jobs (one raw record each) from the\n"
              "catalog, download the record's example images into a content-addressed\n"
              "store, and answer each image's sha256 and size, or why it failed.  The\n"
              "store keeps each distinct image once, at DIR/sha256/<2 hex>/<64 hex>, and\n"
              "remembers which URL gave which image, so a URL already stored costs no\n"
              "request.  Only PNG, JPEG, WebP and GIF images are kept.  Image URLs never\n"
              "reach private, loopback or link-local addresses unless --allow-private.\n"
              "Refiners on machines that see DIR read images from it (stylus refiner\n"
              "--image-store DIR); see docs/images.md.\n"
              "\n"
              "  --store DIR          the image store (made when missing)\n"
              "  --catalog ENDPOINT   catalog broker (default tcp://127.0.0.1:5555);\n"
              "                       --connect is the same\n"
              "  --max-bytes N        largest image kept, in bytes (default 8388608 = 8 MiB)\n"
              "  --concurrency N      downloads at once over all hosts (default 8)\n"
              "  --max-per-host N     downloads at once per host (default 2)\n"
              "  --rate R             requests per second per host (default 2; 0 = no limit)\n"
              "  --allow-private      let image URLs reach private, loopback and link-local\n"
              "                       addresses (tests, LAN mirrors)\n"
              "  --contact TEXT       contact put in the User-Agent (URL or e-mail)\n"
              "  --max-jobs N         exit after N jobs (default: run until stopped)\n"
              "  --store-max-bytes SIZE  keep the store's images under SIZE bytes (K, M, G, T\n"
              "                       suffixes: powers of 1024): the oldest go first, none\n"
              "                       younger than 10 minutes; checked at start and after\n"
              "                       every SIZE/20 stored\n"
              "  --trim               trim the store to --store-max-bytes once and exit\n"
              "\n"
              "CURVE keys for a catalog beyond loopback come from STYLUS_CURVE_KEY and\n"
              "STYLUS_CURVE_SERVER_KEY (paths of key files; see stylus keygen), as for\n"
              "every worker.\n"
              "\n"
              "examples:\n"
              "  stylus images --store /srv/stylus/images --contact ops@example.org\n"
              "  STYLUS_CURVE_KEY=images.key STYLUS_CURVE_SERVER_KEY=catalog.pub \\\n"
              "      stylus images --catalog tcp://catalog.lan:5555 --store /mnt/images\n"
              "  stylus images --store ./images --rate 0 --allow-private   # fixture server\n"
              "  stylus images --store /srv/stylus/images --store-max-bytes 200G --trim\n",
              f);
}

/* s as a whole number in min..max; false when it is not one. */
static bool parse_count(const char *s, long long min, long long max, long long *out)
{
        char *end;

        errno = 0;
        *out = strtoll(s, &end, 10);
        return errno == 0 && end != s && *end == '\0' && *out >= min && *out <= max;
}

/* s as a rate >= 0; false when it is not one. */
static bool parse_rate(const char *s, double *out)
{
        char *end;

        errno = 0;
        *out = strtod(s, &end);
        return errno == 0 && end != s && *end == '\0' && *out >= 0 && *out <= 1e6;
}

/* s as a size in bytes, with an optional K, M, G or T (powers of 1024); false when not one. */
static bool parse_size(const char *s, uint64_t *out)
{
        static const char units[] = "KMGT";
        char *end;
        const char *u;
        unsigned long long v;
        int shift = 0;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || *s == '-')
                return false;
        if (*end && (u = strchr(units, *end)) != NULL && end[1] == '\0') {
                shift = 10 * (int)(u - units + 1);
                end++;
        }
        if (*end || v == 0 || v > (UINT64_MAX >> shift))
                return false;
        *out = (uint64_t)v << shift;
        return true;
}

/* Log what the store holds (a walk of its directories). */
static void log_usage(const struct image_store *store)
{
        struct image_store_usage u;
        struct st_error err = {0};

        if (image_store_usage(store, &u, &err) != 0) {
                log_warn("%s", err.msg);
                return;
        }
        log_info("image store %s: %llu images, %llu bytes, %llu URLs", image_store_dir(store),
                 (unsigned long long)u.images, (unsigned long long)u.bytes,
                 (unsigned long long)u.urls);
}

int cmd_images(int argc, char **argv)
{
        static const struct option opts[] = {
            {"catalog", required_argument, NULL, 'c'},
            {"connect", required_argument, NULL, 'c'},
            {"store", required_argument, NULL, 's'},
            {"max-bytes", required_argument, NULL, 'b'},
            {"concurrency", required_argument, NULL, 'C'},
            {"max-per-host", required_argument, NULL, 'p'},
            {"rate", required_argument, NULL, 'r'},
            {"allow-private", no_argument, NULL, 'P'},
            {"contact", required_argument, NULL, 'a'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"store-max-bytes", required_argument, NULL, 'S'},
            {"trim", no_argument, NULL, 'T'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555", *dir = NULL;
        const char *contact = "+https://github.com/stylus-catalog";
        struct images_worker w = {0};
        struct fetcher_config cfg;
        struct st_error err = {0};
        long long max_bytes = (long long)IMAGE_STORE_DEFAULT_MAX_BYTES, v, max_jobs = 0;
        char agent[512];
        bool trim_only = false;
        int opt, status;

        fetcher_config_defaults(&cfg);
        cfg.max_total = IMAGES_DEFAULT_CONCURRENCY;
        cfg.rate_per_host = IMAGES_DEFAULT_RATE;
        cfg.total_timeout_ms = IMAGES_TIMEOUT_MS;
        log_setup("images", LOG_INFO);
        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 's':
                        dir = optarg;
                        break;
                case 'b':
                        if (!parse_count(optarg, 1, (long long)IMAGE_STORE_MAX_MAX_BYTES,
                                         &max_bytes))
                                goto bad_usage;
                        break;
                case 'C':
                        if (!parse_count(optarg, 1, 256, &v))
                                goto bad_usage;
                        cfg.max_total = (unsigned)v;
                        break;
                case 'p':
                        if (!parse_count(optarg, 1, 64, &v))
                                goto bad_usage;
                        cfg.max_per_host = (unsigned)v;
                        break;
                case 'r':
                        if (!parse_rate(optarg, &cfg.rate_per_host))
                                goto bad_usage;
                        break;
                case 'P':
                        cfg.allow_private = true;
                        break;
                case 'a':
                        contact = optarg;
                        break;
                case 'n':
                        if (!parse_count(optarg, 0, INT32_MAX, &max_jobs))
                                goto bad_usage;
                        break;
                case 'S':
                        if (!parse_size(optarg, &w.cap))
                                goto bad_usage;
                        break;
                case 'T':
                        trim_only = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        goto bad_usage;
                }
        }
        if (optind < argc || !dir || (trim_only && !w.cap)) {
                if (!dir)
                        fputs("stylus images: --store DIR is required\n", stderr);
                if (trim_only && !w.cap)
                        fputs("stylus images: --trim needs --store-max-bytes\n", stderr);
                goto bad_usage;
        }
        if (image_store_open(dir, IMAGE_STORE_WRITE, (size_t)max_bytes, &w.store, &err)) {
                log_error("%s", st_error_text(&err, err.code));
                return 1;
        }
        if (w.cap && !trim_store(&w) && trim_only) {
                image_store_close(&w.store);
                return 1;
        }
        if (trim_only) {
                log_usage(w.store);
                image_store_close(&w.store);
                return 0;
        }
        snprintf(agent, sizeof(agent), "stylus-catalog/0.1 (LoRA catalog image fetcher; %s)",
                 contact);
        cfg.user_agent = agent;
        if (fetcher_new(&cfg, &w.fetcher, &err)) {
                log_error("%s", st_error_text(&err, err.code));
                image_store_close(&w.store);
                return 1;
        }
        log_usage(w.store);
        status = cli_run_worker("images", endpoint, "images", images_job, &w, (long)max_jobs);
        log_info("images totals: %llu jobs done; %llu images newly stored, %llu already stored, "
                 "%llu failed",
                 (unsigned long long)w.jobs, (unsigned long long)w.stored,
                 (unsigned long long)w.already, (unsigned long long)w.failed);
        fetcher_destroy(&w.fetcher);
        image_store_close(&w.store);
        return status;
bad_usage:
        usage(stderr);
        return 2;
}
