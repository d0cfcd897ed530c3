/*
 * refiner_cmd.c - `stylus refiner`: a worker that turns raw records into
 * StylusDocs, with a VLM over an OpenAI-compatible endpoint when --vlm-url
 * is given (refiner/vlm.h), else with the built-in card refiner
 * (refiner/card.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/doc.h"
#include "proto/http_util.h"
#include "proto/log.h"
#include "proto/wire.h"
#include "refiner/card.h"
#include "refiner/image_source.h"
#include "refiner/vlm.h"

struct refiner {
        struct vlm *vlm; /* NULL: the card refiner */
        FILE *docs_out;  /* --docs-out, or NULL */
};

/* Append d as one JSON line to f; a failure is logged, the job goes on. */
static void write_doc(FILE *f, const struct st_doc *d)
{
        char *json = NULL;
        size_t len;

        if (st_doc_to_json(d, &json, &len) != 0 || fwrite(json, 1, len, f) != len ||
            fputc('\n', f) == EOF || fflush(f) != 0)
                log_warn("%s: could not append the doc to --docs-out", d->id);
        free(json);
}

static int refine_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                      struct st_error *err)
{
        struct refiner *rf = ctx;
        const msgpack_object *o = wire_get(payload, "record");
        struct st_raw_record r;
        struct st_doc d;
        int rc;

        if (!o)
                return st_fail(err, ST_EMISSING, "refine job without a record");
        rc = st_raw_record_from_object(o, a, &r, err);
        if (rc)
                return rc;
        rc = rf->vlm ? vlm_refine(rf->vlm, &r, a, &d, err) : card_refine(&r, a, &d, err);
        if (rc)
                return rc;
        if (rf->docs_out)
                write_doc(rf->docs_out, &d);
        msgpack_pack_map(pk, 1);
        wire_pack_key(pk, "doc");
        return st_doc_pack(pk, &d);
}

static void usage(FILE *f)
{
        fputs(
            "usage: stylus refiner [--connect ENDPOINT] [--max-jobs N] [--docs-out FILE]\n"
            "                      [--vlm-url URL --vlm-model NAME [--vlm-key-file FILE]\n"
            "                       [--vlm-json-mode] [--vlm-timeout-ms MS] [--vlm-deadline-ms "
            "MS]\n"
            "                       [--vlm-concurrency N] [--vlm-tokens-per-min N]\n"
            "                       [--image-store DIR] [--allow-private]]\n"
            "\n"
            "Run a refiner worker: take refine jobs from the catalog and write a StylusDoc\n"
            "for each raw record (description, task category, recommended weight, trigger\n"
            "words).  With --vlm-url a vision language model reads the card text and up to\n"
            "10 example images with their prompts (OpenAI-compatible /v1/chat/completions:\n"
            "OpenAI, vLLM, llama.cpp server, Ollama); when it fails after its retries the\n"
            "card doc is kept with the reason in refine_error.  Without --vlm-url the\n"
            "built-in card refiner works offline.\n"
            "\n"
            "  --connect ENDPOINT      catalog broker (default tcp://127.0.0.1:5555)\n"
            "  --max-jobs N            exit after N jobs (default: run until stopped)\n"
            "  --docs-out FILE         also append every doc made to FILE, one JSON a line\n"
            "  --vlm-url URL           VLM endpoint: base URL (https://api.openai.com/v1),\n"
            "                          bare origin (/v1/chat/completions is added) or the\n"
            "                          full .../chat/completions URL\n"
            "  --vlm-model NAME        model name sent in each request (required with --vlm-url)\n"
            "  --vlm-key-file FILE     file holding the API key (else $STYLUS_VLM_KEY; servers\n"
            "                          without keys need neither); never logged\n"
            "  --vlm-json-mode         send response_format {\"type\":\"json_object\"} (for\n"
            "                          servers that support it; answers are parsed leniently\n"
            "                          either way)\n"
            "  --vlm-timeout-ms MS     one HTTP request (default 20000)\n"
            "  --vlm-deadline-ms MS    one job: image downloads, retries, waits (default 25000;\n"
            "                          keep it under the catalog's --lease-ms)\n"
            "  --vlm-concurrency N     HTTP transfers at once within a job: the image downloads\n"
            "                          (default 4).  A worker sends one request at a time to\n"
            "                          the VLM; run more workers for more\n"
            "  --vlm-tokens-per-min N  token-rate limit of this worker (default: none)\n"
            "  --image-store DIR       read example images from this image store (stylus\n"
            "                          images --store DIR; local or shared) by their sha256;\n"
            "                          images it lacks are downloaded (docs/images.md)\n"
            "  --allow-private         let image downloads reach private, loopback and\n"
            "                          link-local addresses (tests, LAN mirrors); the VLM\n"
            "                          endpoint itself may always be anywhere\n"
            "\n"
            "examples:\n"
            "  stylus refiner\n"
            "  stylus refiner --connect tcp://catalog.lan:5555\n"
            "  STYLUS_VLM_KEY=sk-... stylus refiner --vlm-url https://api.openai.com/v1 \\\n"
            "      --vlm-model gpt-4o --vlm-json-mode --vlm-tokens-per-min 30000\n"
            "  stylus refiner --vlm-url http://gpu1.lan:8000/v1 --vlm-model "
            "Qwen/Qwen2.5-VL-7B-Instruct \\\n"
            "      --image-store /mnt/stylus/images\n"
            "  stylus refiner --vlm-url http://127.0.0.1:11434/v1 --vlm-model qwen2.5vl:7b \\\n"
            "      --vlm-timeout-ms 120000 --vlm-deadline-ms 280000   # catalog --lease-ms "
            "300000\n",
            f);
}

/* s as a number in min..max; false when it is not one. */
static bool parse_number(const char *s, long long min, long long max, long long *out)
{
        char *end;

        errno = 0;
        *out = strtoll(s, &end, 10);
        return errno == 0 && end != s && *end == '\0' && *out >= min && *out <= max;
}

/* Set one numeric vlm option from optarg; false when it is not a number in range. */
static bool numeric_option(int c, struct vlm_config *vc)
{
        long long v;

        switch (c) {
        case 'T':
                if (!parse_number(optarg, 1, 3600000, &v))
                        return false;
                vc->timeout_ms = (long)v;
                return true;
        case 'D':
                if (!parse_number(optarg, 1, 3600000, &v))
                        return false;
                vc->deadline_ms = (long)v;
                return true;
        case 'C':
                if (!parse_number(optarg, 1, 64, &v))
                        return false;
                vc->concurrency = (unsigned)v;
                return true;
        default: /* 'R' */
                if (!parse_number(optarg, 0, INT64_MAX, &v))
                        return false;
                vc->tokens_per_min = (uint64_t)v;
                return true;
        }
}

/* Where images come from (before the worker thread starts); false, logged, on error. */
static bool configure_images(const struct image_source_config *ic)
{
        struct st_error err = {0};

        if (image_source_configure(ic, &err) != 0) {
                log_error("--image-store: %s", st_error_text(&err, err.code));
                return false;
        }
        if (ic->store_dir)
                log_info("reading example images from the image store %s when it has them",
                         ic->store_dir);
        return true;
}

static void log_image_stats(const struct image_source_config *ic)
{
        struct image_source_stats st;

        image_source_get_stats(&st);
        log_info("images: %llu read from the store%s, %llu store misses, %llu downloads",
                 (unsigned long long)st.from_store, ic->store_dir ? "" : " (none configured)",
                 (unsigned long long)st.store_misses, (unsigned long long)st.downloads);
}

/* Make the VLM refiner of vc with the key of key_file / $STYLUS_VLM_KEY; NULL on error. */
static struct vlm *open_vlm(struct vlm_config *vc, const char *key_file)
{
        struct st_error err = {0};
        struct vlm *v = NULL;
        char key[VLM_KEY_MAX + 1];
        bool ok = http_util_read_key(key_file, "STYLUS_VLM_KEY", key, sizeof(key), &err) == 0;

        if (!ok)
                log_error("%s", st_error_text(&err, err.code));
        vc->key = key[0] ? key : NULL;
        if (ok && vlm_new(vc, &v, &err) != 0)
                log_error("%s", st_error_text(&err, err.code));
        explicit_bzero(key, sizeof(key));
        vc->key = NULL;
        if (v)
                log_info("refining with %s at %s%s", vlm_identity(v), vlm_endpoint(v),
                         vc->json_mode ? " (JSON mode)" : "");
        return v;
}

int cmd_refiner(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"docs-out", required_argument, NULL, 'o'},
            {"vlm-url", required_argument, NULL, 'u'},
            {"vlm-model", required_argument, NULL, 'm'},
            {"vlm-key-file", required_argument, NULL, 'k'},
            {"vlm-json-mode", no_argument, NULL, 'j'},
            {"vlm-timeout-ms", required_argument, NULL, 'T'},
            {"vlm-deadline-ms", required_argument, NULL, 'D'},
            {"vlm-concurrency", required_argument, NULL, 'C'},
            {"vlm-tokens-per-min", required_argument, NULL, 'R'},
            {"image-store", required_argument, NULL, 'I'},
            {"allow-private", no_argument, NULL, 'P'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555", *docs_out = NULL, *key_file = NULL;
        struct refiner rf = {NULL, NULL};
        struct image_source_config ic = {NULL, false};
        struct vlm_config vc;
        bool vlm_flags = false;
        long long max_jobs = 0;
        int c, status;

        vlm_config_defaults(&vc);
        log_setup("refiner", LOG_INFO);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 'n':
                        if (!parse_number(optarg, 0, INT32_MAX, &max_jobs))
                                goto bad_usage;
                        break;
                case 'o':
                        docs_out = optarg;
                        break;
                case 'u':
                        vc.url = optarg;
                        break;
                case 'm':
                        vc.model = optarg;
                        vlm_flags = true;
                        break;
                case 'k':
                        key_file = optarg;
                        vlm_flags = true;
                        break;
                case 'j':
                        vc.json_mode = true;
                        vlm_flags = true;
                        break;
                case 'I':
                        ic.store_dir = optarg;
                        vlm_flags = true;
                        break;
                case 'P':
                        ic.allow_private = true;
                        vlm_flags = true;
                        break;
                case 'T':
                case 'D':
                case 'C':
                case 'R':
                        vlm_flags = true;
                        if (!numeric_option(c, &vc))
                                goto bad_usage;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        goto bad_usage;
                }
        }
        if (optind < argc)
                goto bad_usage;
        if (vlm_flags && !vc.url) {
                fputs("stylus refiner: --vlm-*, --image-store and --allow-private need "
                      "--vlm-url\n",
                      stderr);
                goto bad_usage;
        }
        if (vc.url && !configure_images(&ic))
                return 2;
        if (vc.url && !(rf.vlm = open_vlm(&vc, key_file))) {
                image_source_shutdown();
                return 2;
        }
        if (docs_out && !(rf.docs_out = fopen(docs_out, "a"))) {
                log_error("--docs-out %s: %s", docs_out, strerror(errno));
                vlm_destroy(&rf.vlm);
                image_source_shutdown();
                return 2;
        }
        status = cli_run_worker("refiner", endpoint, "refine", refine_job, &rf, (long)max_jobs);
        if (rf.vlm) {
                vlm_log_stats(rf.vlm);
                log_image_stats(&ic);
        }
        vlm_destroy(&rf.vlm);
        image_source_shutdown();
        if (rf.docs_out)
                fclose(rf.docs_out);
        return status;
bad_usage:
        usage(stderr);
        return 2;
}
