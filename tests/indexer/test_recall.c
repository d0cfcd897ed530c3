/*
 * test_recall.c - recall@150 of the int8 search mode (int8 scan, best
 * 4k + 64 re-ranked in float32) against the exact mode, asserted >=
 * MIN_RECALL, on two kinds of vectors of dim 384:
 *   random    RANDOM_ROWS random unit vectors, RANDOM_QUERIES random unit queries;
 *   catalog   the fixture catalog's cards replicated with noise to
 *             CATALOG_ROWS rows, the 15 fixture prompts as queries
 *             (tests/indexer/catalog_vectors.h; needs $STYLUS_FIXTURES).
 * Recall = |int8 top-150 ∩ exact top-150| / |exact top-150|, summed over the
 * queries.  Exact mode itself is checked against a naive scan in
 * test_vecstore.c.  The figures are printed; docs/search.md has them at
 * benchmark scale.
 */
#include "indexer/vecstore.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/indexer/catalog_vectors.h"

#define DIM            384
#define K              150
#define MIN_RECALL     0.99
#define RANDOM_ROWS    60000
#define RANDOM_QUERIES 100
#define CATALOG_ROWS   50000
#define PUT_BATCH      8192

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_recall.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static void remove_tree(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *e;

        if (!d) {
                unlink(path);
                return;
        }
        while ((e = readdir(d))) {
                char sub[4096];

                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
}

static void random_unit(uint64_t *state, float *v, int dim)
{
        double norm = 0.0;

        for (int i = 0; i < dim; i++) {
                v[i] = (float)catalog_gauss(state);
                norm += (double)v[i] * v[i];
        }
        for (int i = 0; i < dim; i++)
                v[i] = (float)(v[i] / sqrt(norm));
}

static int compare_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

/* Rows common to two hit lists. */
static size_t common_rows(const struct vecstore_hit *a, size_t na, const struct vecstore_hit *b,
                          size_t nb)
{
        uint32_t x[K], y[K];
        size_t i = 0, j = 0, n = 0;

        for (size_t t = 0; t < na; t++)
                x[t] = a[t].row;
        for (size_t t = 0; t < nb; t++)
                y[t] = b[t].row;
        qsort(x, na, sizeof(*x), compare_u32);
        qsort(y, nb, sizeof(*y), compare_u32);
        while (i < na && j < nb) {
                if (x[i] == y[j])
                        n++, i++, j++;
                else if (x[i] < y[j])
                        i++;
                else
                        j++;
        }
        return n;
}

/* Put rows vectors, PUT_BATCH per commit (an LMDB transaction has a page limit). */
static int fill(struct vecstore *vs, const float *vecs, size_t rows)
{
        int rc = 0;

        for (size_t first = 0; first < rows && rc == 0; first += PUT_BATCH) {
                rc = vecstore_begin(vs);
                for (size_t r = first; r < rows && r < first + PUT_BATCH && rc == 0; r++) {
                        char id[32];

                        snprintf(id, sizeof(id), "doc-%zu", r);
                        rc = vecstore_put(vs, id, vecs + r * DIM, (int)(r % VECSTORE_BASE_COUNT),
                                          false, NULL, 0);
                }
                if (rc == 0)
                        rc = vecstore_commit(vs, first + 1);
        }
        return rc;
}

/* Store rows vectors in dir, search nq queries both ways; the recall, or -1. */
static double measure(const char *dir, const float *vecs, size_t rows, const float *queries,
                      size_t nq, const char *what)
{
        struct vecstore *vs = NULL;
        struct vecstore_hit *exact = calloc(nq * K, sizeof(*exact));
        struct vecstore_hit *int8 = calloc(nq * K, sizeof(*int8));
        size_t *n_exact = calloc(nq, sizeof(*n_exact)), *n_int8 = calloc(nq, sizeof(*n_int8));
        size_t found = 0, total = 0;
        double recall = -1.0;
        int rc;

        if (!exact || !int8 || !n_exact || !n_int8 ||
            vecstore_open(dir, DIM, "recall", &vs, NULL) < 0)
                goto out;
        CHECK(fill(vs, vecs, rows) == 0);
        CHECK(vecstore_count(vs) == rows);
        vecstore_set_scan(vs, VECSTORE_SCAN_EXACT);
        rc = vecstore_search_batch(vs, queries, nq, K, NULL, exact, n_exact);
        CHECK(rc == 0);
        vecstore_set_scan(vs, VECSTORE_SCAN_INT8);
        rc |= vecstore_search_batch(vs, queries, nq, K, NULL, int8, n_int8);
        CHECK(rc == 0);
        if (rc)
                goto out;
        for (size_t j = 0; j < nq; j++) {
                CHECK(n_exact[j] == K && n_int8[j] == K);
                found += common_rows(exact + j * K, n_exact[j], int8 + j * K, n_int8[j]);
                total += n_exact[j];
        }
        recall = total ? (double)found / (double)total : -1.0;
        printf("test_recall: %s: %zu rows, %zu queries, recall@%d of int8 vs exact = %.4f\n", what,
               rows, nq, K, recall);
out:
        vecstore_close(&vs);
        free(n_int8);
        free(n_exact);
        free(int8);
        free(exact);
        return recall;
}

static void test_random(const char *root)
{
        char dir[4096];
        float *vecs = malloc((size_t)RANDOM_ROWS * DIM * sizeof(float));
        float *queries = malloc((size_t)RANDOM_QUERIES * DIM * sizeof(float));
        uint64_t state = 42;

        CHECK(vecs && queries);
        if (!vecs || !queries)
                goto out;
        for (size_t r = 0; r < RANDOM_ROWS; r++)
                random_unit(&state, vecs + r * DIM, DIM);
        for (size_t j = 0; j < RANDOM_QUERIES; j++)
                random_unit(&state, queries + j * DIM, DIM);
        snprintf(dir, sizeof(dir), "%s/random", root);
        CHECK(measure(dir, vecs, RANDOM_ROWS, queries, RANDOM_QUERIES, "random unit vectors") >=
              MIN_RECALL);
out:
        free(queries);
        free(vecs);
}

static void test_catalog(const char *root)
{
        const char *fixtures = getenv("STYLUS_FIXTURES");
        char dir[4096], **texts = NULL, **prompts = NULL;
        size_t n_texts = 0, n_prompts = 0;
        float *cards = NULL, *vecs = NULL, *queries = NULL;
        struct embedder e;

        CHECK(fixtures != NULL);
        if (!fixtures)
                return;
        CHECK(embedder_init(&e, DIM) == 0);
        CHECK(catalog_texts(fixtures, &texts, &n_texts) == 0 && n_texts == 231);
        CHECK(catalog_prompts(fixtures, &prompts, &n_prompts) == 0 && n_prompts == 15);
        cards = malloc(n_texts * DIM * sizeof(float));
        vecs = malloc((size_t)CATALOG_ROWS * DIM * sizeof(float));
        queries = malloc(n_prompts * DIM * sizeof(float));
        CHECK(cards && vecs && queries);
        if (!n_texts || !n_prompts || !cards || !vecs || !queries)
                goto out;
        CHECK(catalog_embed(&e, texts, n_texts, cards) == 0);
        CHECK(catalog_embed(&e, prompts, n_prompts, queries) == 0);
        catalog_replicate(cards, n_texts, DIM, CATALOG_ROWS, CATALOG_NOISE, vecs);
        snprintf(dir, sizeof(dir), "%s/catalog", root);
        CHECK(measure(dir, vecs, CATALOG_ROWS, queries, n_prompts, "catalog cards + noise") >=
              MIN_RECALL);
out:
        free(queries);
        free(vecs);
        free(cards);
        catalog_free_strings(prompts, n_prompts);
        catalog_free_strings(texts, n_texts);
}

int main(void)
{
        char root[] = "/tmp/test_recall.XXXXXX";

        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        test_random(root);
        test_catalog(root);
        remove_tree(root);
        if (failures) {
                fprintf(stderr, "test_recall: %d checks failed\n", failures);
                return 1;
        }
        printf("test_recall: ok\n");
        return 0;
}
