/*
 * indexer_cmd.c - `stylus indexer`: a worker that embeds StylusDocs with the
 * built-in offline embedder (proto/embed.h) or an OpenAI-compatible
 * embeddings endpoint (--embed-url, indexer/embedder_choice.h) and returns
 * the vectors to the catalog, which appends them to the changelog the
 * shards follow.  A doc the endpoint cannot embed (after the client's
 * retries) is a failed job: the broker retries it later, and buries it
 * after --max-attempts failures with the error shown by `stylus status`.
 */
#include <stdlib.h>
#include <string.h>

#include "indexer/embedder_choice.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/embed.h"
#include "proto/log.h"
#include "proto/wire.h"

static int embed_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                     struct st_error *err)
{
        struct embedder_choice *e = ctx;
        const msgpack_object *o = wire_get(payload, "doc");
        struct st_error why = {0};
        struct st_doc d;
        char *text;
        float *vec;
        int rc;

        if (!o)
                return st_fail(err, ST_EMISSING, "embed job without a doc");
        rc = st_doc_from_object(o, a, &d, err);
        if (rc)
                return rc;
        if (!d.content_hash)
                return st_fail(err, ST_EMISSING, "doc %s has no content_hash", d.id);
        vec = arena_calloc(a, (size_t)e->dim, sizeof(float));
        if (!vec)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = embed_doc_text(&d, a, &text);
        if (rc)
                return st_fail(err, rc, "cannot embed %s: %s", d.id, st_strerror(rc));
        rc = embedder_choice_embed(e, (const char *const *)&text, 1, vec, &why);
        if (rc)
                return st_fail(err, rc, "cannot embed %s: %s", d.id, st_error_text(&why, rc));
        msgpack_pack_map(pk, 5);
        wire_pack_kv_str(pk, "id", d.id);
        wire_pack_kv_str(pk, "content_hash", d.content_hash);
        wire_pack_kv_str(pk, "model", e->model);
        wire_pack_kv_u64(pk, "dim", (uint64_t)e->dim);
        wire_pack_kv_bin(pk, "vector", vec, (size_t)e->dim * sizeof(float));
        return 0;
}

static void usage(FILE *f)
{
        fputs("usage: stylus indexer [--connect ENDPOINT] [--dim N] [--max-jobs N]\n"
              "                      [--embed-url URL --embed-model NAME --embed-dim D\n"
              "                       [--embed-key-file F] [--embed-batch N] ...]\n"
              "\n"
              "Run an indexer worker: take embed jobs from the catalog and embed each\n"
              "StylusDoc (title, description, tags, trigger words) with the built-in\n"
              "offline embedder, or with an OpenAI-compatible /v1/embeddings endpoint.\n"
              "Every indexer, shard and query node of a cluster must use the same model\n"
              "and dimension; shards refuse vectors of another model (docs/embeddings.md).\n"
              "\n"
              "  --connect ENDPOINT  catalog broker (default tcp://127.0.0.1:5555)\n"
              "  --dim N             dimension of the built-in embedder (default 384)\n"
              "  --max-jobs N        exit after N jobs (default: run until stopped)\n",
              f);
        fputs(EMBEDDER_CHOICE_USAGE, f);
        fputs("\n"
              "examples:\n"
              "  stylus indexer\n"
              "  stylus indexer --connect tcp://catalog.lan:5555 --dim 384\n"
              "  STYLUS_EMBED_KEY=sk-... stylus indexer --embed-url https://api.openai.com/v1 \\\n"
              "      --embed-model text-embedding-3-small --embed-dim 1536\n"
              "  stylus indexer --embed-url http://gpu1.lan:8080 --embed-model BAAI/bge-m3 \\\n"
              "      --embed-dim 1024 --embed-batch 32\n",
              f);
}

int cmd_indexer(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"dim", required_argument, NULL, 'd'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            EMBEDDER_CHOICE_OPTIONS,
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555";
        struct embedder_choice e;
        struct embedder_flags ef;
        struct st_error err = {0};
        long max_jobs = 0, dim = EMBED_DEFAULT_DIM;
        bool dim_given = false;
        int c, rc;

        embedder_flags_init(&ef);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                rc = embedder_flags_take(&ef, c, optarg, &err);
                if (rc < 0)
                        goto bad_usage;
                if (rc > 0)
                        continue;
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 'd':
                        dim = strtol(optarg, NULL, 10);
                        dim_given = true;
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
        if (optind < argc)
                goto bad_usage;
        if (dim <= 0 || dim > EMBED_MAX_DIM) {
                fprintf(stderr, "stylus indexer: --dim must be 1..%d\n", EMBED_MAX_DIM);
                return 2;
        }
        if (dim_given && ef.url) {
                st_fail(&err, ST_EINVAL, "--dim is the built-in embedder's; give --embed-dim");
                goto bad_usage;
        }
        log_setup("indexer", LOG_INFO);
        if (embedder_choice_open(&e, &ef, (int)dim, EMBEDDER_DEADLINE_WORKER_MS, &err)) {
                fprintf(stderr, "stylus indexer: %s\n", st_error_text(&err, err.code));
                return 2;
        }
        rc = cli_run_worker("indexer", endpoint, "embed", embed_job, &e, max_jobs);
        embedder_choice_close(&e);
        return rc;
bad_usage:
        if (err.code)
                fprintf(stderr, "stylus indexer: %s\n", err.msg);
        usage(stderr);
        return 2;
}
