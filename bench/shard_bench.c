/*
 * shard_bench.c - how fast a shard's vector store answers top-150 queries,
 * on the same vectors bench/faiss_bench.py gives FAISS.  Run by
 * bench/run_search_bench.sh, which builds it against the build tree's
 * static libraries; see docs/search.md for the figures.
 *
 * One run is one data set:
 *   1. make the vectors (--data random: components uniform in [-1, 1],
 *      normalized; --data catalog: tests/indexer/catalog_vectors.h) and the
 *      queries (random: 64 random unit vectors; catalog: the 15 fixture
 *      prompts), and write them as DIR/base.npy and DIR/queries.npy
 *      (float32, C order) for the FAISS side;
 *   2. put them into a store in DIR/store (commits of PUT_BATCH docs);
 *   3. measure the machine's read bandwidth: a STREAM-like sum over a
 *      buffer far larger than the caches, 8 streams per thread, with 1 and
 *      2 threads;
 *   4. for 1 and 2 threads (openblas_set_num_threads + vecstore_set_threads),
 *      exact and int8 modes, batches of 1 and 32 queries (cycling through the
 *      queries): queries/s, best of up to 3 slices over --seconds (measure());
 *   5. recall@150 of int8 against exact over the queries.
 * Results go to stdout and, as tab-separated lines, to --out:
 *   qps        ours  DATA ROWS THREADS MODE BATCH QPS
 *   recall     ours  DATA ROWS int8 RECALL
 *   bandwidth  THREADS GBPS
 */
#include <cblas.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "indexer/scan_kernel.h"
#include "indexer/vecstore.h"
#include "tests/indexer/catalog_vectors.h"

#define DIM            384
#define K              150
#define RANDOM_QUERIES 64
#define PUT_BATCH      32768
#define STREAM_BYTES   ((size_t)1 << 30)
#define STREAMS        8 /* concurrent read streams per thread in the bandwidth test */
#define MAX_THREADS    2

static double now(void)
{
        struct timespec t;

        clock_gettime(CLOCK_MONOTONIC, &t);
        return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t state = 0x853C49E6748FEA9BULL;

static void random_unit(float *v)
{
        double norm = 0.0;

        for (int i = 0; i < DIM; i++) {
                v[i] = (float)((double)(catalog_random(&state) >> 11) / 9007199254740992.0 * 2.0 -
                               1.0);
                norm += (double)v[i] * v[i];
        }
        for (int i = 0; i < DIM; i++)
                v[i] = (float)(v[i] / sqrt(norm));
}

/* float32 C-order array of rows x DIM as a .npy file (format 1.0). */
static int write_npy(const char *path, const float *v, size_t rows)
{
        char header[128];
        int len =
            snprintf(header, sizeof(header),
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %d), }", rows, DIM);
        FILE *f = fopen(path, "wb");
        int ok;

        if (!f) {
                perror(path);
                return -1;
        }
        while ((10 + len + 1) % 64)
                header[len++] = ' ';
        header[len++] = '\n';
        ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fputc(len & 0xff, f) != EOF &&
             fputc(len >> 8, f) != EOF && fwrite(header, 1, (size_t)len, f) == (size_t)len &&
             fwrite(v, sizeof(float) * DIM, rows, f) == rows;
        if (fclose(f) != 0 || !ok) {
                perror(path);
                return -1;
        }
        return 0;
}

/* The catalog data set: cards replicated to rows, the prompts as queries. */
static int make_catalog(const char *fixtures, size_t rows, float *base, float **queries, size_t *nq)
{
        char **texts = NULL, **prompts = NULL;
        size_t n_texts = 0, n_prompts = 0;
        struct embedder e;
        float *cards = NULL;
        int rc = -1;

        if (embedder_init(&e, DIM) || catalog_texts(fixtures, &texts, &n_texts) ||
            catalog_prompts(fixtures, &prompts, &n_prompts))
                goto out;
        cards = malloc(n_texts * DIM * sizeof(float));
        *queries = malloc(n_prompts * DIM * sizeof(float));
        if (!cards || !*queries || catalog_embed(&e, texts, n_texts, cards) ||
            catalog_embed(&e, prompts, n_prompts, *queries))
                goto out;
        catalog_replicate(cards, n_texts, DIM, rows, CATALOG_NOISE, base);
        *nq = n_prompts;
        rc = 0;
out:
        free(cards);
        catalog_free_strings(prompts, n_prompts);
        catalog_free_strings(texts, n_texts);
        return rc;
}

static int fill_store(struct vecstore *vs, const float *base, size_t rows)
{
        int rc = 0;

        for (size_t first = 0; first < rows && rc == 0; first += PUT_BATCH) {
                rc = vecstore_begin(vs);
                for (size_t r = first; r < rows && r < first + PUT_BATCH && rc == 0; r++) {
                        char id[32];

                        snprintf(id, sizeof(id), "doc-%zu", r);
                        rc = vecstore_put(vs, id, base + r * DIM, (int)(r % VECSTORE_BASE_COUNT),
                                          false, NULL, 0);
                }
                if (rc == 0)
                        rc = vecstore_commit(vs, first + 1);
        }
        if (rc)
                fprintf(stderr, "fill store: %s (%s)\n", st_strerror(rc), vecstore_last_error(vs));
        return rc;
}

/* ---- bandwidth ---- */

struct stream_part {
        const uint64_t *words;
        size_t n;
        uint64_t sum;
        pthread_t thread;
};

/*
 * Sum n words as STREAMS sequential streams at once: one stream per core
 * leaves DRAM bandwidth unused (25 GB/s against 35 with 8 on this machine),
 * as the scans read several streams too (rows of 4 code groups; OpenBLAS).
 */
static void *stream_read(void *arg)
{
        struct stream_part *p = arg;
        size_t per = p->n / STREAMS / 8 * 8;
        uint64_t s[STREAMS] = {0};

        for (size_t i = 0; i < per; i += 8)
                for (size_t k = 0; k < STREAMS; k++) {
                        const uint64_t *w = p->words + k * per + i;

                        s[k] += w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
                }
        p->sum = 0;
        for (size_t k = 0; k < STREAMS; k++)
                p->sum += s[k];
        return NULL;
}

/* Best of 5 passes reading STREAM_BYTES with threads threads, in GB/s. */
static double bandwidth(const uint64_t *buf, int threads)
{
        struct stream_part parts[MAX_THREADS];
        size_t words = STREAM_BYTES / sizeof(uint64_t);
        double best = 0.0;

        for (int pass = 0; pass < 5; pass++) {
                double t0 = now(), t;

                for (int i = 0; i < threads; i++) {
                        parts[i].words = buf + words / (size_t)threads * (size_t)i;
                        parts[i].n = words / (size_t)threads;
                        if (i > 0)
                                pthread_create(&parts[i].thread, NULL, stream_read, &parts[i]);
                }
                stream_read(&parts[0]);
                for (int i = 1; i < threads; i++)
                        pthread_join(parts[i].thread, NULL);
                t = now() - t0;
                if (parts[0].sum == 42)
                        fputc(' ', stderr); /* keeps the sum alive */
                if (STREAM_BYTES / t / 1e9 > best)
                        best = STREAM_BYTES / t / 1e9;
        }
        return best;
}

/* ---- search ---- */

/*
 * Queries/s of batches of batch queries cycling through qs: after a warm-up
 * query, timed slices of at least seconds / 3 (and one batch) until seconds
 * have passed, at most 3; the best slice counts, so a burst of load from
 * another process costs one slice, not the figure.  faiss_bench.py measures
 * the same way.
 */
static double measure(struct vecstore *vs, const float *qs, size_t nq, size_t batch, double seconds,
                      struct vecstore_hit *hits, size_t *n_hits, float *buf)
{
        size_t next = 0;
        double best = 0.0, total = 0.0;

        if (vecstore_search_batch(vs, qs, 1, K, NULL, hits, n_hits)) {
                fprintf(stderr, "search: %s\n", vecstore_last_error(vs));
                return 0.0;
        }
        for (int slice = 0; slice < 3 && (slice == 0 || total < seconds); slice++) {
                double t0 = now(), elapsed;
                size_t done = 0;

                do {
                        for (size_t j = 0; j < batch; j++, next = (next + 1) % nq)
                                memcpy(buf + j * DIM, qs + next * DIM, DIM * sizeof(float));
                        if (vecstore_search_batch(vs, buf, batch, K, NULL, hits, n_hits)) {
                                fprintf(stderr, "search: %s\n", vecstore_last_error(vs));
                                return 0.0;
                        }
                        done += batch;
                } while (now() - t0 < seconds / 3);
                elapsed = now() - t0;
                total += elapsed;
                if ((double)done / elapsed > best)
                        best = (double)done / elapsed;
        }
        return best;
}

static double recall(struct vecstore *vs, const float *qs, size_t nq, struct vecstore_hit *exact,
                     struct vecstore_hit *int8, size_t *n_exact, size_t *n_int8)
{
        size_t found = 0, total = 0;

        vecstore_set_scan(vs, VECSTORE_SCAN_EXACT);
        if (vecstore_search_batch(vs, qs, nq, K, NULL, exact, n_exact))
                return -1.0;
        vecstore_set_scan(vs, VECSTORE_SCAN_INT8);
        if (vecstore_search_batch(vs, qs, nq, K, NULL, int8, n_int8))
                return -1.0;
        for (size_t j = 0; j < nq; j++) {
                for (size_t a = 0; a < n_exact[j]; a++)
                        for (size_t b = 0; b < n_int8[j]; b++)
                                found += exact[j * K + a].row == int8[j * K + b].row;
                total += n_exact[j];
        }
        return (double)found / (double)total;
}

static void usage(void)
{
        fputs("usage: shard_bench --dir DIR --out FILE --data random|catalog --rows N\n"
              "                   [--fixtures DIR] [--seconds S]\n",
              stderr);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
            {"dir", required_argument, NULL, 'd'},
            {"out", required_argument, NULL, 'o'},
            {"data", required_argument, NULL, 't'},
            {"rows", required_argument, NULL, 'r'},
            {"fixtures", required_argument, NULL, 'f'},
            {"seconds", required_argument, NULL, 's'},
            {NULL, 0, NULL, 0},
        };
        const char *dir = NULL, *out = NULL, *data = NULL, *fixtures = "tests/fixtures";
        size_t rows = 0, nq = RANDOM_QUERIES, max_nq = 64;
        double seconds = 2.0, t0;
        char path[4096];
        float *base = NULL, *qs = NULL, *buf = NULL;
        uint64_t *stream = NULL;
        struct vecstore *vs = NULL;
        struct vecstore_hit *hits = NULL, *hits2 = NULL;
        size_t *n_hits = NULL, *n_hits2 = NULL;
        struct st_error err = {0, ""};
        double gbps[MAX_THREADS + 1] = {0};
        FILE *res = NULL;
        int c, rc = 1;

        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        dir = optarg;
                        break;
                case 'o':
                        out = optarg;
                        break;
                case 't':
                        data = optarg;
                        break;
                case 'r':
                        rows = strtoull(optarg, NULL, 10);
                        break;
                case 'f':
                        fixtures = optarg;
                        break;
                case 's':
                        seconds = strtod(optarg, NULL);
                        break;
                default:
                        usage();
                        return 2;
                }
        }
        if (!dir || !out || !data || rows < 1000 ||
            (strcmp(data, "random") && strcmp(data, "catalog"))) {
                usage();
                return 2;
        }
        base = malloc(rows * DIM * sizeof(float));
        buf = malloc(32 * DIM * sizeof(float));
        hits = calloc(max_nq * K, sizeof(*hits));
        hits2 = calloc(max_nq * K, sizeof(*hits2));
        n_hits = calloc(max_nq, sizeof(*n_hits));
        n_hits2 = calloc(max_nq, sizeof(*n_hits2));
        res = fopen(out, "a");
        if (!base || !buf || !hits || !hits2 || !n_hits || !n_hits2 || !res) {
                fprintf(stderr, "out of memory, or cannot open %s\n", out);
                goto out;
        }

        t0 = now();
        if (!strcmp(data, "random")) {
                qs = malloc(nq * DIM * sizeof(float));
                if (!qs)
                        goto out;
                for (size_t r = 0; r < rows; r++)
                        random_unit(base + r * DIM);
                for (size_t j = 0; j < nq; j++)
                        random_unit(qs + j * DIM);
        } else if (make_catalog(fixtures, rows, base, &qs, &nq)) {
                fprintf(stderr, "cannot build the catalog data set from %s\n", fixtures);
                goto out;
        }
        snprintf(path, sizeof(path), "%s/base.npy", dir);
        if (write_npy(path, base, rows))
                goto out;
        snprintf(path, sizeof(path), "%s/queries.npy", dir);
        if (write_npy(path, qs, nq))
                goto out;
        printf("%s %zu: vectors made and written in %.1f s\n", data, rows, now() - t0);

        t0 = now();
        snprintf(path, sizeof(path), "%s/store", dir);
        if (vecstore_open(path, DIM, "bench", &vs, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                goto out;
        }
        if (fill_store(vs, base, rows))
                goto out;
        printf("%s %zu: store filled in %.1f s (int8 kernel %s)\n", data, rows, now() - t0,
               scan_kernel_best()->name);
        free(base);
        base = NULL;

        stream = malloc(STREAM_BYTES);
        if (!stream)
                goto out;
        memset(stream, 1, STREAM_BYTES);
        for (int t = 1; t <= MAX_THREADS; t++) {
                gbps[t] = bandwidth(stream, t);
                printf("memory read bandwidth, %d thread%s: %.1f GB/s\n", t, t > 1 ? "s" : "",
                       gbps[t]);
                fprintf(res, "bandwidth\t%d\t%.2f\n", t, gbps[t]);
        }
        free(stream);
        stream = NULL;

        for (int t = 1; t <= MAX_THREADS; t++) {
                openblas_set_num_threads(t);
                vecstore_set_threads(vs, t);
                for (int m = 0; m < 2; m++) {
                        enum vecstore_scan scan = m ? VECSTORE_SCAN_INT8 : VECSTORE_SCAN_EXACT;
                        const char *mode = m ? "int8" : "exact";
                        double bytes = (double)rows * (m ? scan_code_dim(DIM) + 4 : DIM * 4);

                        vecstore_set_scan(vs, scan);
                        for (size_t batch = 1; batch <= 32; batch += 31) {
                                double qps = measure(vs, qs, nq, batch, seconds, hits, n_hits, buf);

                                printf("ours  %-7s %7zu rows  %d thr  %-5s batch %2zu: %8.1f q/s",
                                       data, rows, t, mode, batch, qps);
                                if (batch == 1)
                                        printf("  (scan %.1f GB/s = %.0f%% of %.1f)",
                                               bytes * qps / 1e9,
                                               100.0 * bytes * qps / 1e9 / gbps[t], gbps[t]);
                                printf("\n");
                                fprintf(res, "qps\tours\t%s\t%zu\t%d\t%s\t%zu\t%.2f\n", data, rows,
                                        t, mode, batch, qps);
                                fflush(stdout);
                        }
                }
        }
        {
                double r = recall(vs, qs, nq, hits, hits2, n_hits, n_hits2);

                printf("ours  %-7s %7zu rows  recall@%d of int8 vs exact: %.4f (%zu queries)\n",
                       data, rows, K, r, nq);
                fprintf(res, "recall\tours\t%s\t%zu\tint8\t%.4f\n", data, rows, r);
        }
        rc = 0;
out:
        if (res)
                fclose(res);
        vecstore_close(&vs);
        free(stream);
        free(n_hits2);
        free(n_hits);
        free(hits2);
        free(hits);
        free(buf);
        free(qs);
        free(base);
        return rc;
}
