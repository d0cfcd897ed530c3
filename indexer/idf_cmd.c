/*
 * idf_cmd.c - `stylus idf`: learn the built-in embedder's IDF table from a
 * catalog.  Reads every doc of the catalog store (read-only, one consistent
 * snapshot, safe beside a running catalog), counts in how many docs each
 * feature bucket occurs in the text the indexer embeds (embed_doc_text()),
 * and writes the table (format and formula: proto/embed.h, "IDF tables").
 * Prints the model name an embedder with that table has, for the shards'
 * --embed-model.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/catalog_store.h"
#include "ops/commands.h"
#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/embed.h"

#define PROGRESS_EVERY 10000       /* docs between progress lines */
#define DOC_ARENA      (64u << 20) /* one doc decoded, with its text */

struct idf_run {
        struct embed_idf_counter *counter;
        struct arena a;
        size_t bad; /* docs that would not decode: skipped */
};

static int count_doc(void *ctx, const void *doc, size_t doc_len, const void *vector,
                     size_t vector_len)
{
        struct idf_run *r = ctx;
        struct st_doc d;
        char *text;
        int rc;

        (void)vector;
        (void)vector_len;
        arena_release(&r->a);
        if (st_doc_from_msgpack(doc, doc_len, &r->a, &d, NULL) ||
            embed_doc_text(&d, &r->a, &text)) {
                r->bad++;
                return 0;
        }
        rc = embed_idf_counter_add(r->counter, text, strlen(text));
        if (rc)
                return rc;
        if (embed_idf_counter_docs(r->counter) % PROGRESS_EVERY == 0)
                fprintf(stderr, "stylus idf: %llu docs counted\n",
                        (unsigned long long)embed_idf_counter_docs(r->counter));
        return 0;
}

static void usage(FILE *f)
{
        fprintf(
            f,
            "usage: stylus idf --catalog-data DIR --out FILE [--min-df N] [--buckets B]\n"
            "                  [--dim D]\n"
            "\n"
            "Learn IDF weights for the built-in embedder from the docs of the catalog\n"
            "store in DIR (read-only: safe beside a running catalog) and write them to\n"
            "FILE.  Then give --embed-idf FILE to the indexer, the query node and\n"
            "`stylus embed`, and the printed model name to the shards' --embed-model.\n"
            "\n"
            "  --catalog-data DIR  the catalog's --data directory\n"
            "  --out FILE          the table to write (replaced atomically)\n"
            "  --min-df N          rarer features weigh as if in N docs (default 1)\n"
            "  --buckets B         table size, a power of two in %u..%u (default %u)\n"
            "  --dim D             the dimension of the printed model name (default %d)\n"
            "\n"
            "Prints the model name (stylus-hash-v1+idf-<sha>/<dim>) on stdout, counts\n"
            "and progress on stderr.\n"
            "\n"
            "examples:\n"
            "  stylus idf --catalog-data /var/lib/stylus/catalog --out idf.bin\n"
            "  M=$(stylus idf --catalog-data data/catalog --out idf.bin)\n"
            "  stylus shard 0/1 --data s0 --catalog tcp://127.0.0.1:5555 --embed-model \"$M\" \\\n"
            "      --embed-dim 384\n"
            "  stylus serve --shard tcp://127.0.0.1:5600 --embed-idf idf.bin\n",
            EMBED_IDF_MIN_BUCKETS, EMBED_IDF_MAX_BUCKETS, EMBED_IDF_DEFAULT_BUCKETS,
            EMBED_DEFAULT_DIM);
}

/* s as a number in min..max, or -1. */
static long long number(const char *s, long long min, long long max)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        return errno || end == s || *end || v < min || v > max ? -1 : v;
}

/* Count the docs of the catalog in dir into a table; 0 or 1 (reported). */
static int build(const char *dir, uint32_t buckets, uint32_t min_df, struct embed_idf **out,
                 size_t *bad)
{
        struct idf_run r = {0};
        struct catalog *cat = NULL;
        struct st_error err = {0};
        int rc, status = 1;

        if (catalog_open_readonly(dir, &cat, &err)) {
                fprintf(stderr, "stylus idf: %s\n", st_error_text(&err, err.code));
                return 1;
        }
        if (embed_idf_counter_new(buckets, &r.counter)) {
                fprintf(stderr, "stylus idf: out of memory\n");
                goto out_catalog;
        }
        arena_init(&r.a, DOC_ARENA);
        rc = catalog_each_doc(cat, count_doc, &r);
        arena_release(&r.a);
        if (rc) {
                fprintf(stderr, "stylus idf: reading %s: %s\n", dir, st_strerror(rc));
                goto out_counter;
        }
        if (embed_idf_counter_docs(r.counter) == 0) {
                fprintf(stderr, "stylus idf: the catalog in %s has no readable docs\n", dir);
                goto out_counter;
        }
        if (embed_idf_counter_finish(r.counter, min_df, out)) {
                fprintf(stderr, "stylus idf: out of memory\n");
                goto out_counter;
        }
        *bad = r.bad;
        status = 0;
out_counter:
        embed_idf_counter_destroy(&r.counter);
out_catalog:
        catalog_close(&cat);
        return status;
}

int cmd_idf(int argc, char **argv)
{
        static const struct option opts[] = {
            {"catalog-data", required_argument, NULL, 'd'},
            {"out", required_argument, NULL, 'o'},
            {"min-df", required_argument, NULL, 'm'},
            {"buckets", required_argument, NULL, 'b'},
            {"dim", required_argument, NULL, 'D'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *dir = NULL, *path = NULL;
        long long min_df = 1, buckets = EMBED_IDF_DEFAULT_BUCKETS, dim = EMBED_DEFAULT_DIM;
        struct embed_idf *table = NULL;
        struct embed_idf_info info;
        struct embedder e;
        struct st_error err = {0};
        size_t bad = 0;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        dir = optarg;
                        break;
                case 'o':
                        path = optarg;
                        break;
                case 'm':
                        min_df = number(optarg, 1, UINT32_MAX);
                        break;
                case 'b':
                        buckets = number(optarg, EMBED_IDF_MIN_BUCKETS, EMBED_IDF_MAX_BUCKETS);
                        if (buckets > 0 && (buckets & (buckets - 1)))
                                buckets = -1;
                        break;
                case 'D':
                        dim = number(optarg, 1, EMBED_MAX_DIM);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!dir || !path || optind != argc || min_df < 0 || buckets < 0 || dim < 0) {
                usage(stderr);
                return 2;
        }
        if (build(dir, (uint32_t)buckets, (uint32_t)min_df, &table, &bad))
                return 1;
        if (embed_idf_save(table, path, &err)) {
                fprintf(stderr, "stylus idf: %s\n", st_error_text(&err, err.code));
                embed_idf_destroy(&table);
                return 1;
        }
        embed_idf_get_info(table, &info);
        embedder_init(&e, (int)dim);
        embedder_set_idf(&e, table);
        fprintf(stderr,
                "stylus idf: %llu docs (%zu unreadable, skipped), %u buckets, min_df %u, "
                "sha256 %s: wrote %s\n",
                (unsigned long long)info.docs, bad, info.buckets, info.min_df, info.sha, path);
        printf("%s\n", e.model);
        embed_idf_destroy(&table);
        return 0;
}
