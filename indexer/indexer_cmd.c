/*
 * indexer_cmd.c - `stylus indexer`: a worker that embeds StylusDocs with the
 * built-in offline embedder (proto/embed.h) and returns the vectors to the
 * catalog, which appends them to the changelog the shards follow.
 */
#include <stdlib.h>
#include <string.h>

#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/embed.h"
#include "proto/wire.h"

static int embed_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                     struct st_error *err)
{
        const struct embedder *e = ctx;
        const msgpack_object *o = wire_get(payload, "doc");
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
        if (!rc)
                rc = embedder_embed(e, text, strlen(text), vec);
        if (rc)
                return st_fail(err, rc, "cannot embed %s: %s", d.id, st_strerror(rc));
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
              "\n"
              "Run an indexer worker: take embed jobs from the catalog and embed each\n"
              "StylusDoc (title, description, tags, trigger words) with the built-in\n"
              "offline embedder.  Every indexer and query node of a cluster must use the\n"
              "same --dim; shards refuse vectors of another model.\n"
              "\n"
              "  --connect ENDPOINT  catalog broker (default tcp://127.0.0.1:5555)\n"
              "  --dim N             embedding dimension (default 384)\n"
              "  --max-jobs N        exit after N jobs (default: run until stopped)\n"
              "\n"
              "examples:\n"
              "  stylus indexer\n"
              "  stylus indexer --connect tcp://catalog.lan:5555 --dim 384\n",
              f);
}

int cmd_indexer(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"dim", required_argument, NULL, 'd'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555";
        struct embedder e;
        long max_jobs = 0, dim = EMBED_DEFAULT_DIM;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 'd':
                        dim = strtol(optarg, NULL, 10);
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
        if (dim <= 0 || dim > EMBED_MAX_DIM || embedder_init(&e, (int)dim)) {
                fprintf(stderr, "stylus indexer: --dim must be 1..%d\n", EMBED_MAX_DIM);
                return 2;
        }
        return cli_run_worker("indexer", endpoint, "embed", embed_job, &e, max_jobs);
}
