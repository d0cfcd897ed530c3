/*
 * export_cmd.c - `stylus export`: the catalog's StylusDocs as a dataset.
 *
 *   file              content
 *   docs.jsonl        one StylusDoc per line (proto/doc.h JSON), in id order
 *   embeddings.npy    float32 [n, dim], row i is the vector of line i of docs.jsonl;
 *                     a doc not embedded yet (or by another model) has a zero row
 *   README.md         dataset card: fields, counts, embedding model, and the
 *                     front matter that `datasets.load_dataset("json", ...)` and
 *                     the Hugging Face Hub read
 *
 * The export is one read transaction of the catalog, beside a running
 * catalog: a consistent snapshot.  Files are written under temporary names
 * and renamed at the end, so an interrupted export leaves no partial set.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ops/catalog_store.h"
#include "ops/commands.h"
#include "proto/doc.h"
#include "proto/wire.h"

#define NPY_ALIGN 64

struct export
{
        FILE *docs;    /* docs.jsonl.tmp */
        FILE *vectors; /* raw float32 rows, turned into the .npy at the end */
        size_t n, embedded;
        size_t dim;      /* of the first vector seen */
        char model[128]; /* its model */
        size_t other_model;
        size_t bad;
};

/* Vector record {model, dim, vector} of one doc: its floats, when of the export's model. */
static const char *vector_of(struct export *x, const void *rec, size_t len, size_t *dim)
{
        msgpack_unpacked u;
        size_t off = 0;
        const char *vec = NULL, *model;
        size_t vlen, mlen;
        static char copy[4096 * sizeof(float)];

        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, rec, len, &off) != MSGPACK_UNPACK_SUCCESS ||
            wire_get_bytes(&u.data, "vector", &vec, &vlen) ||
            wire_get_bytes(&u.data, "model", &model, &mlen) || vlen % sizeof(float) ||
            vlen > sizeof(copy) || mlen >= sizeof(x->model)) {
                msgpack_unpacked_destroy(&u);
                return NULL;
        }
        if (x->dim == 0) {
                x->dim = vlen / sizeof(float);
                memcpy(x->model, model, mlen);
                x->model[mlen] = '\0';
        }
        if (vlen / sizeof(float) != x->dim || strlen(x->model) != mlen ||
            memcmp(x->model, model, mlen)) {
                x->other_model++;
                msgpack_unpacked_destroy(&u);
                return NULL;
        }
        memcpy(copy, vec, vlen);
        *dim = vlen / sizeof(float);
        msgpack_unpacked_destroy(&u);
        return copy;
}

static int write_doc(void *ctx, const void *doc, size_t doc_len, const void *vector,
                     size_t vector_len)
{
        struct export *x = ctx;
        struct st_doc d;
        struct arena a;
        char *json = NULL;
        size_t len, dim = 0;
        const char *vec = vector ? vector_of(x, vector, vector_len, &dim) : NULL;
        int rc;

        arena_init(&a, (size_t)64 << 20);
        rc = st_doc_from_msgpack(doc, doc_len, &a, &d, NULL);
        if (!rc)
                rc = st_doc_to_json(&d, &json, &len);
        arena_release(&a);
        if (rc) {
                x->bad++;
                return 0; /* a doc we cannot read is counted, not exported */
        }
        if (fwrite(json, 1, len, x->docs) != len || fputc('\n', x->docs) == EOF) {
                free(json);
                return ST_EIO;
        }
        free(json);
        /* Spool: a flag byte, then the floats when there is a vector (see write_npy()). */
        if (fputc(vec ? 1 : 0, x->vectors) == EOF)
                return ST_EIO;
        if (vec) {
                x->embedded++;
                if (fwrite(vec, sizeof(float), dim, x->vectors) != dim)
                        return ST_EIO;
        }
        x->n++;
        if (x->n % 10000 == 0)
                fprintf(stderr, "exported %zu docs\n", x->n);
        return 0;
}

/*
 * The .npy file: header "{'descr': '<f4', 'fortran_order': False, 'shape':
 * (n, dim), }" padded to a multiple of 64 bytes, then the rows.  Rows were
 * spooled as a flag byte, followed by dim floats when the flag is 1; a doc
 * without a vector (flag 0) gets a zero row.
 */
static int write_npy(struct export *x, const char *path)
{
        char header[256];
        FILE *out = fopen(path, "wb");
        size_t dim = x->dim ? x->dim : 1;
        int hlen, rc = 0;
        float *row = calloc(dim, sizeof(float));

        if (!out || !row) {
                free(row);
                if (out)
                        fclose(out);
                return ST_EIO;
        }
        hlen = snprintf(header, sizeof(header),
                        "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", x->n,
                        x->dim);
        while ((10 + hlen + 1) % NPY_ALIGN)
                header[hlen++] = ' ';
        header[hlen++] = '\n';
        fwrite("\x93NUMPY\x01\x00", 1, 8, out);
        fputc(hlen & 0xff, out);
        fputc(hlen >> 8, out);
        fwrite(header, 1, (size_t)hlen, out);
        rewind(x->vectors);
        for (size_t i = 0; i < x->n && !rc; i++) {
                int flag = fgetc(x->vectors);

                memset(row, 0, dim * sizeof(float));
                if (flag == EOF || (flag == 1 && fread(row, sizeof(float), dim, x->vectors) != dim))
                        rc = ST_EIO;
                if (x->dim && fwrite(row, sizeof(float), dim, out) != dim)
                        rc = ST_EIO;
        }
        free(row);
        if (fclose(out))
                rc = ST_EIO;
        return rc;
}

static int write_card(const struct export *x, const char *path, const char *source)
{
        FILE *f = fopen(path, "w");

        if (!f)
                return ST_EIO;
        fprintf(f,
                "---\n"
                "pretty_name: StylusDocs (stylus-catalog export)\n"
                "tags: [stable-diffusion, lora, retrieval]\n"
                "configs:\n"
                "- config_name: default\n"
                "  data_files: docs.jsonl\n"
                "---\n\n"
                "# StylusDocs\n\n"
                "One StylusDoc per adapter version (LoRA, LoCon, DoRA) from Civitai and Hugging\n"
                "Face, exported by `stylus export` from the catalog in `%s`.\n\n"
                "- docs: %zu (`docs.jsonl`, one JSON object per line, in id order)\n"
                "- embedded: %zu with `%s` (%zu dims) in `embeddings.npy`, row i = line i;\n"
                "  docs without a vector of that model have a zero row (%zu of another model)\n\n"
                "Load with `datasets.load_dataset(\"json\", data_files=\"docs.jsonl\")` and\n"
                "`numpy.load(\"embeddings.npy\")`.\n\n"
                "Fields: id, source, name, version_name, type, base_model, task, description,\n"
                "trigger_words, recommended_weight, tags, nsfw, stats {downloads, likes, rating},\n"
                "files [{name, size, sha256, download_url}], images [{url, prompt, sha256}],\n"
                "card_url, refined_by, embedding_model, created_at, updated_at, crawled_at,\n"
                "content_hash.  Each adapter keeps the license its author gave it on the page\n"
                "at card_url; this export does not relicense anything.\n",
                source, x->n, x->embedded, x->model[0] ? x->model : "(none)", x->dim,
                x->other_model);
        return fclose(f) ? ST_EIO : 0;
}

static void usage(FILE *f)
{
        fputs("usage: stylus export --data DIR --out OUTDIR\n"
              "\n"
              "Export the catalog's StylusDocs as a dataset: OUTDIR/docs.jsonl,\n"
              "OUTDIR/embeddings.npy (rows aligned with the lines) and OUTDIR/README.md (a\n"
              "dataset card).  Safe beside a running catalog: one consistent snapshot.\n"
              "\n"
              "examples:\n"
              "  stylus export --data /var/lib/stylus/catalog --out ./stylusdocs\n",
              f);
}

static void join(char *out, size_t size, const char *dir, const char *name)
{
        snprintf(out, size, "%s/%s", dir, name);
}

int cmd_export(int argc, char **argv)
{
        static const struct option opts[] = {
            {"data", required_argument, NULL, 'd'},
            {"out", required_argument, NULL, 'o'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *data = NULL, *dir = NULL;
        char docs[4096], docs_tmp[4200], npy[4096], npy_tmp[4200], card[4096];
        struct export x = {0};
        struct catalog *cat = NULL;
        struct st_error err = {0};
        int c, rc;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        data = optarg;
                        break;
                case 'o':
                        dir = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!data || !dir || optind != argc) {
                usage(stderr);
                return 2;
        }
        if (mkdir(dir, 0755) && errno != EEXIST) {
                fprintf(stderr, "stylus export: cannot create %s: %s\n", dir, strerror(errno));
                return 1;
        }
        if (catalog_open_readonly(data, &cat, &err)) {
                fprintf(stderr, "stylus export: %s\n", err.msg);
                return 1;
        }
        join(docs, sizeof(docs), dir, "docs.jsonl");
        join(npy, sizeof(npy), dir, "embeddings.npy");
        join(card, sizeof(card), dir, "README.md");
        snprintf(docs_tmp, sizeof(docs_tmp), "%s.tmp", docs);
        snprintf(npy_tmp, sizeof(npy_tmp), "%s.tmp", npy);
        x.docs = fopen(docs_tmp, "w");
        x.vectors = tmpfile();
        rc = x.docs && x.vectors ? catalog_each_doc(cat, write_doc, &x) : ST_EIO;
        if (x.docs && fclose(x.docs))
                rc = ST_EIO;
        if (!rc)
                rc = write_npy(&x, npy_tmp);
        if (!rc && (rename(docs_tmp, docs) || rename(npy_tmp, npy)))
                rc = ST_EIO;
        if (!rc)
                rc = write_card(&x, card, data);
        if (x.vectors)
                fclose(x.vectors);
        catalog_close(&cat);
        if (rc) {
                unlink(docs_tmp);
                unlink(npy_tmp);
                fprintf(stderr, "stylus export: %s\n", st_strerror(rc));
                return 1;
        }
        printf("exported %zu docs (%zu embedded with %s, %zu unreadable) to %s\n", x.n, x.embedded,
               x.model[0] ? x.model : "no model", x.bad, dir);
        return 0;
}
