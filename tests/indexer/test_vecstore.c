/*
 * test_vecstore.c - the shard vector store against a naive scan kept beside
 * it, in both search modes (exact and int8 with re-rank): batches of puts,
 * top-k with filters (base model, NSFW, blocked rows) and tombstones, batched
 * queries against single ones, helper threads, exact ties, replace, reopen, migration of
 * a format 1 store, dim/model mismatch, a full memory map, misuse.  Every
 * store lives in a fresh mkdtemp directory that is removed at the end.
 *
 * int8 mode is held to the same answers as the naive scan: on these random
 * vectors a true top-k row never falls below the 4k + 64 re-ranked
 * candidates (test_recall.c measures how often it can).
 */
#include "indexer/vecstore.h"

#include <dirent.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_DOCS    10000
#define N_QUERIES 50
#define K         150
#define TOLERANCE 1e-4

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_vecstore.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

/* ---- helpers ---- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t next_random(void)
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

static void random_unit(float *v, int dim)
{
        double norm = 0.0;

        for (int i = 0; i < dim; i++) {
                v[i] = (float)((double)(next_random() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
                norm += (double)v[i] * v[i];
        }
        norm = sqrt(norm);
        for (int i = 0; i < dim; i++)
                v[i] = (float)(v[i] / norm);
}

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

static void store_path(char *out, size_t size, const char *root, const char *name)
{
        snprintf(out, size, "%s/%s", root, name);
}

/* What the store should hold, kept by the test: row r is doc "doc-<r>". */
struct mirror {
        int dim;
        size_t n;
        float *vecs; /* n * dim */
        int *base;
        int *nsfw;
        int *deleted;
};

static int mirror_init(struct mirror *m, int dim, size_t n)
{
        m->dim = dim;
        m->n = n;
        m->vecs = malloc(n * (size_t)dim * sizeof(float));
        m->base = calloc(n, sizeof(int));
        m->nsfw = calloc(n, sizeof(int));
        m->deleted = calloc(n, sizeof(int));
        return m->vecs && m->base && m->nsfw && m->deleted ? 0 : -1;
}

static void mirror_release(struct mirror *m)
{
        free(m->vecs);
        free(m->base);
        free(m->nsfw);
        free(m->deleted);
}

static void doc_id(char *out, size_t size, size_t row)
{
        snprintf(out, size, "doc-%zu", row);
}

static int put_doc(struct vecstore *vs, const struct mirror *m, size_t row)
{
        char id[32];

        doc_id(id, sizeof(id), row);
        return vecstore_put(vs, id, m->vecs + row * (size_t)m->dim, m->base[row], m->nsfw[row] != 0,
                            id, strlen(id));
}

struct scored {
        double score;
        uint32_t row;
};

static int compare_scored(const void *a, const void *b)
{
        const struct scored *x = a, *y = b;

        if (x->score != y->score)
                return x->score > y->score ? -1 : 1;
        return (x->row > y->row) - (x->row < y->row);
}

static int compare_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

static int passes(const struct mirror *m, size_t row, const struct vecstore_filter *f)
{
        uint32_t r = (uint32_t)row;

        if (m->deleted[row])
                return 0;
        if (!f)
                return 1;
        if (f->n_blocked && bsearch(&r, f->blocked, f->n_blocked, sizeof(r), compare_u32))
                return 0;
        if (f->base_models && !(f->base_models & (1u << m->base[row])))
                return 0;
        return f->allow_nsfw || !m->nsfw[row];
}

/* Naive top-k over the mirror; returns how many. */
static size_t naive_search(const struct mirror *m, const float *q, size_t k,
                           const struct vecstore_filter *f, struct scored *all)
{
        size_t n = 0;

        for (size_t r = 0; r < m->n; r++) {
                double s = 0.0;

                if (!passes(m, r, f))
                        continue;
                for (int i = 0; i < m->dim; i++)
                        s += (double)q[i] * m->vecs[r * (size_t)m->dim + i];
                all[n].score = s;
                all[n].row = (uint32_t)r;
                n++;
        }
        qsort(all, n, sizeof(*all), compare_scored);
        return n < k ? n : k;
}

static double naive_score(const struct mirror *m, const float *q, size_t row)
{
        double s = 0.0;

        for (int i = 0; i < m->dim; i++)
                s += (double)q[i] * m->vecs[row * (size_t)m->dim + i];
        return s;
}

/*
 * Compare hits with the naive scan: same count, scores within TOLERANCE
 * position by position, same ids except where two scores tie within
 * TOLERANCE.
 */
static void compare_hits(const struct mirror *m, const float *q, size_t k,
                         const struct vecstore_filter *f, const struct vecstore_hit *hits, size_t n,
                         struct scored *all)
{
        size_t want = naive_search(m, q, k, f, all);
        int ok = 1;

        CHECK(n == want);
        for (size_t i = 0; i < n && i < want && ok; i++) {
                char id[32];

                doc_id(id, sizeof(id), hits[i].row);
                ok = strcmp(hits[i].id, id) == 0 && passes(m, hits[i].row, f) &&
                     fabs(hits[i].score - all[i].score) <= TOLERANCE &&
                     fabs(naive_score(m, q, hits[i].row) - hits[i].score) <= TOLERANCE &&
                     (hits[i].row == all[i].row ||
                      fabs(naive_score(m, q, hits[i].row) - all[i].score) <= TOLERANCE) &&
                     (i == 0 || hits[i - 1].score > hits[i].score ||
                      (hits[i - 1].score == hits[i].score && hits[i - 1].row < hits[i].row));
                if (!ok)
                        fprintf(stderr, "hit %zu: row %u '%s' %f, naive row %u %f\n", i,
                                hits[i].row, hits[i].id, hits[i].score, all[i].row, all[i].score);
        }
        CHECK(ok);
}

/* One search compared with the naive scan; returns the number of hits. */
static size_t compare_search(struct vecstore *vs, const struct mirror *m, const float *q, size_t k,
                             const struct vecstore_filter *f, struct vecstore_hit *hits,
                             struct scored *all)
{
        size_t n = 0;

        CHECK(vecstore_search(vs, q, k, f, hits, &n) == 0);
        compare_hits(m, q, k, f, hits, n, all);
        return n;
}

/* Two answers to one query: the same rows in the same order, scores within TOLERANCE. */
static int same_hits(const struct vecstore_hit *a, size_t na, const struct vecstore_hit *b,
                     size_t nb)
{
        if (na != nb)
                return 0;
        for (size_t i = 0; i < na; i++)
                if (a[i].row != b[i].row || strcmp(a[i].id, b[i].id) != 0 ||
                    fabsf(a[i].score - b[i].score) > TOLERANCE)
                        return 0;
        return 1;
}

/*
 * nq queries as one batch: each equal to its single search and to the naive
 * scan.  batch_hits has room for nq * k.
 */
static void compare_batch(struct vecstore *vs, const struct mirror *m, const float *queries,
                          size_t nq, size_t k, const struct vecstore_filter *f,
                          struct vecstore_hit *batch_hits, struct vecstore_hit *hits,
                          struct scored *all)
{
        size_t *n_hits = calloc(nq, sizeof(*n_hits));
        int same = 1;

        CHECK(n_hits != NULL);
        if (!n_hits)
                return;
        CHECK(vecstore_search_batch(vs, queries, nq, k, f, batch_hits, n_hits) == 0);
        for (size_t j = 0; j < nq; j++) {
                const float *q = queries + j * (size_t)m->dim;
                size_t n = 0;

                CHECK(vecstore_search(vs, q, k, f, hits, &n) == 0);
                same &= same_hits(batch_hits + j * k, n_hits[j], hits, n);
                compare_hits(m, q, k, f, batch_hits + j * k, n_hits[j], all);
        }
        CHECK(same);
        free(n_hits);
}

/* ---- tests ---- */

static const char *scan_name(enum vecstore_scan scan)
{
        return scan == VECSTORE_SCAN_EXACT ? "exact" : "int8";
}

/*
 * Fill a store with N_DOCS random docs in four batches and check search in
 * one mode: single and batched, filtered, with tombstones, after replace,
 * re-put and reopen.
 */
static void test_search_matches_naive(const char *root, int dim, enum vecstore_scan scan)
{
        char dir[4096], model[64];
        struct vecstore *vs = NULL;
        struct st_error err = {0, ""};
        struct mirror m = {0};
        struct vecstore_hit *hits = calloc(VECSTORE_MAX_K, sizeof(*hits));
        struct vecstore_hit *again = calloc(VECSTORE_MAX_K, sizeof(*again));
        struct vecstore_hit *batch = calloc((size_t)N_QUERIES * K, sizeof(*batch));
        struct scored *all = calloc(N_DOCS, sizeof(*all));
        float *queries = malloc((size_t)N_QUERIES * (size_t)dim * sizeof(float));
        static const uint32_t deleted_rows[] = {0, 17, 4095, 4096, 9999, 5000};
        /* Sorted; 4096 is also deleted, 10000 is past the last row. */
        static const uint32_t blocked_rows[] = {1, 63, 64, 4096, 4097, 8191, 9998, 10000};
        struct vecstore_filter sdxl_safe = {.base_models = 1u << VECSTORE_BASE_SDXL};
        struct vecstore_filter pony_or_other = {.base_models = (1u << VECSTORE_BASE_PONY) |
                                                               (1u << VECSTORE_BASE_OTHER),
                                                .allow_nsfw = true};
        struct vecstore_filter safe = {.allow_nsfw = false};
        struct vecstore_filter blocked = {.allow_nsfw = true};
        struct vecstore_filter blocked_safe_sd15 = {.base_models = 1u << VECSTORE_BASE_SD15};
        size_t n;

        CHECK(hits && again && batch && all && queries && mirror_init(&m, dim, N_DOCS) == 0);
        if (!hits || !again || !batch || !all || !queries || !m.vecs)
                goto out;
        snprintf(model, sizeof(model), "test-model/%d", dim);
        snprintf(dir, sizeof(dir), "%s/dim%d-%s", root, dim, scan_name(scan));
        for (size_t r = 0; r < N_DOCS; r++) {
                random_unit(m.vecs + r * (size_t)dim, dim);
                m.base[r] = (int)(next_random() % VECSTORE_BASE_COUNT);
                m.nsfw[r] = next_random() % 5 == 0;
        }
        for (int i = 0; i < N_QUERIES; i++)
                random_unit(queries + (size_t)i * (size_t)dim, dim);
        /* Some blocked rows are the best hit of a query. */
        memcpy(queries, m.vecs + 63 * (size_t)dim, (size_t)dim * sizeof(float));
        memcpy(queries + (size_t)dim, m.vecs + 4097 * (size_t)dim, (size_t)dim * sizeof(float));
        blocked.blocked = blocked_safe_sd15.blocked = blocked_rows;
        blocked.n_blocked = blocked_safe_sd15.n_blocked = sizeof(blocked_rows) / sizeof(uint32_t);

        CHECK(vecstore_open(dir, dim, model, &vs, &err) == 0);
        if (!vs)
                goto out;
        vecstore_set_scan(vs, scan);
        CHECK(vecstore_count(vs) == 0 && vecstore_applied_seq(vs) == 0);
        for (size_t b = 0; b < 4; b++) {
                int rc = 0;

                CHECK(vecstore_begin(vs) == 0);
                for (size_t r = b * N_DOCS / 4; r < (b + 1) * N_DOCS / 4 && rc == 0; r++)
                        rc = put_doc(vs, &m, r);
                CHECK(rc == 0);
                CHECK(vecstore_commit(vs, 100 + b) == 0);
        }
        CHECK(vecstore_count(vs) == N_DOCS);
        CHECK(vecstore_applied_seq(vs) == 103);

        for (int i = 0; i < N_QUERIES; i++)
                CHECK(compare_search(vs, &m, queries + (size_t)i * (size_t)dim, K, NULL, hits,
                                     all) == K);
        /* A batch of N_QUERIES: more than one chunk of 32. */
        compare_batch(vs, &m, queries, N_QUERIES, K, NULL, batch, hits, all);

        /* Tombstones never come back, even with the largest k. */
        CHECK(vecstore_begin(vs) == 0);
        for (size_t i = 0; i < sizeof(deleted_rows) / sizeof(deleted_rows[0]); i++) {
                char id[32];

                doc_id(id, sizeof(id), deleted_rows[i]);
                CHECK(vecstore_delete(vs, id) == 0);
                CHECK(vecstore_delete(vs, id) == 0);
                m.deleted[deleted_rows[i]] = 1;
        }
        CHECK(vecstore_delete(vs, "no-such-doc") == 0);
        CHECK(vecstore_commit(vs, 104) == 0);
        CHECK(vecstore_count(vs) == N_DOCS - 6);
        for (size_t i = 0; i < sizeof(deleted_rows) / sizeof(deleted_rows[0]); i++) {
                /* Its own vector as the query: it would be the best hit if it were live. */
                const float *q = m.vecs + deleted_rows[i] * (size_t)dim;

                CHECK(vecstore_search(vs, q, VECSTORE_MAX_K, NULL, hits, &n) == 0);
                CHECK(n == VECSTORE_MAX_K);
                for (size_t j = 0; j < n; j++)
                        CHECK(!m.deleted[hits[j].row]);
                compare_search(vs, &m, q, K, NULL, hits, all);
        }

        /* Filters, single and batched. */
        for (int i = 0; i < 10; i++) {
                const float *q = queries + (size_t)i * (size_t)dim;

                compare_search(vs, &m, q, K, &sdxl_safe, hits, all);
                compare_search(vs, &m, q, K, &pony_or_other, hits, all);
                compare_search(vs, &m, q, K, &safe, hits, all);
                compare_search(vs, &m, q, K, &blocked, hits, all);
                compare_search(vs, &m, q, K, &blocked_safe_sd15, hits, all);
        }
        compare_batch(vs, &m, queries, 10, K, &sdxl_safe, batch, hits, all);
        compare_batch(vs, &m, queries, 10, K, &blocked, batch, hits, all);
        /* A blocked row that is the best match is not returned. */
        CHECK(vecstore_search(vs, queries, 1, &blocked, hits, &n) == 0);
        CHECK(n == 1 && hits[0].row != 63);
        CHECK(vecstore_search(vs, queries, 1, NULL, hits, &n) == 0);
        CHECK(n == 1 && hits[0].row == 63);

        /* Replace keeps the row and the count. */
        random_unit(m.vecs + 42 * (size_t)dim, dim);
        m.base[42] = VECSTORE_BASE_FLUX1;
        CHECK(vecstore_begin(vs) == 0);
        CHECK(put_doc(vs, &m, 42) == 0);
        CHECK(vecstore_commit(vs, 105) == 0);
        CHECK(vecstore_count(vs) == N_DOCS - 6);
        CHECK(vecstore_search(vs, m.vecs + 42 * (size_t)dim, 1, NULL, hits, &n) == 0);
        CHECK(n == 1 && hits[0].row == 42 && strcmp(hits[0].id, "doc-42") == 0 &&
              fabsf(hits[0].score - 1.0f) < 1e-4f);

        /* A deleted id put again gets its row back. */
        m.deleted[17] = 0;
        CHECK(vecstore_begin(vs) == 0);
        CHECK(put_doc(vs, &m, 17) == 0);
        CHECK(vecstore_commit(vs, 106) == 0);
        CHECK(vecstore_count(vs) == N_DOCS - 5);
        CHECK(vecstore_search(vs, m.vecs + 17 * (size_t)dim, 1, NULL, hits, &n) == 0);
        CHECK(n == 1 && hits[0].row == 17);

        /* Reopen: same answers, same applied seq. */
        CHECK(vecstore_search(vs, queries, K, &safe, hits, &n) == 0);
        vecstore_close(&vs);
        CHECK(vs == NULL);
        CHECK(vecstore_open(dir, dim, model, &vs, &err) == 0);
        if (!vs)
                goto out;
        vecstore_set_scan(vs, scan);
        CHECK(vecstore_applied_seq(vs) == 106);
        CHECK(vecstore_count(vs) == N_DOCS - 5);
        CHECK(vecstore_search(vs, queries, K, &safe, again, &n) == 0);
        CHECK(n == K);
        for (size_t i = 0; i < n; i++)
                CHECK(hits[i].score == again[i].score && hits[i].row == again[i].row &&
                      strcmp(hits[i].id, again[i].id) == 0);
        for (int i = 0; i < N_QUERIES; i += 5)
                compare_search(vs, &m, queries + (size_t)i * (size_t)dim, K, NULL, hits, all);
        compare_batch(vs, &m, queries, N_QUERIES, K, &blocked_safe_sd15, batch, hits, all);
        vecstore_close(&vs);

        /* Another dim or model: ST_EDIM, with both named. */
        CHECK(vecstore_open(dir, dim + 1, model, &vs, &err) == ST_EDIM && vs == NULL);
        CHECK(err.code == ST_EDIM && strstr(err.msg, model) != NULL);
        CHECK(vecstore_open(dir, dim, "other-model", &vs, &err) == ST_EDIM && vs == NULL);
        CHECK(strstr(err.msg, "other-model") != NULL);
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(queries);
        free(all);
        free(batch);
        free(again);
        free(hits);
}

/* Fill a store of dim 32 from a mirror of n random docs, one batch. */
static struct vecstore *small_store(const char *dir, struct mirror *m, size_t n)
{
        struct vecstore *vs = NULL;
        int rc;

        if (mirror_init(m, 32, n) < 0 || vecstore_open(dir, 32, "m32", &vs, NULL) < 0)
                return NULL;
        for (size_t r = 0; r < n; r++) {
                random_unit(m->vecs + r * 32, 32);
                m->base[r] = (int)(r % 3);
        }
        rc = vecstore_begin(vs);
        for (size_t r = 0; r < n && rc == 0; r++)
                rc = put_doc(vs, m, r);
        if (rc == 0)
                rc = vecstore_commit(vs, 1);
        if (rc < 0)
                vecstore_close(&vs);
        return vs;
}

/* Helper threads split the blocks: any count gives the same answers. */
static void test_threads(const char *root)
{
        enum { DOCS = 5 * VECSTORE_BLOCK_ROWS + 100, NQ = 7 };
        char dir[4096];
        struct mirror m = {0};
        struct vecstore *vs;
        struct vecstore_hit *one = calloc(NQ * K, sizeof(*one));
        struct vecstore_hit *many = calloc(NQ * K, sizeof(*many));
        struct scored *all = calloc(DOCS, sizeof(*all));
        size_t n_one[NQ], n_many[NQ];
        float q[NQ * 32];
        static const int threads[] = {2, 3, 6, 9, VECSTORE_MAX_THREADS};

        store_path(dir, sizeof(dir), root, "threads");
        vs = small_store(dir, &m, DOCS);
        CHECK(vs && one && many && all);
        if (!vs || !one || !many || !all)
                goto out;
        for (int j = 0; j < NQ; j++)
                random_unit(q + j * 32, 32);
        CHECK(vecstore_set_threads(vs, 1) == 0);
        CHECK(vecstore_search_batch(vs, q, NQ, K, NULL, one, n_one) == 0);
        for (int j = 0; j < NQ; j++)
                compare_hits(&m, q + j * 32, K, NULL, one + j * K, n_one[j], all);
        for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
                int same = 1;

                CHECK(vecstore_set_threads(vs, threads[t]) == 0);
                CHECK(vecstore_search_batch(vs, q, NQ, K, NULL, many, n_many) == 0);
                for (int j = 0; j < NQ; j++)
                        same &= same_hits(one + j * K, n_one[j], many + j * K, n_many[j]);
                CHECK(same);
        }
        CHECK(vecstore_set_threads(vs, 0) == ST_EINVAL);
        CHECK(vecstore_set_threads(vs, VECSTORE_MAX_THREADS + 1) == ST_EINVAL);
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(all);
        free(many);
        free(one);
}

/*
 * Exact ties everywhere: 15 distinct vectors (7 directions, their negatives,
 * zero) each repeated on hundreds of rows across blocks, so every cut of a
 * top-k falls inside a run of equal scores, negative and zero ones
 * included.  Both modes, single and batched, 1 and 3 threads, must give the
 * naive order: score, then row ascending; int8 mode the same rows batched as
 * single (its scores come from the same dot product either way).
 */
static void test_ties(const char *root, enum vecstore_scan scan)
{
        enum { DOCS = 3 * VECSTORE_BLOCK_ROWS + 50, DIM = 24, NQ = 6, DIRS = 7 };
        static const size_t ks[] = {1, 3, K, VECSTORE_MAX_K};
        char dir[4096], name[64];
        struct mirror m = {0};
        struct vecstore *vs = NULL;
        struct vecstore_hit *hits = calloc(NQ * VECSTORE_MAX_K, sizeof(*hits));
        struct vecstore_hit *one = calloc(VECSTORE_MAX_K, sizeof(*one));
        struct scored *all = calloc(DOCS, sizeof(*all));
        float dirs[DIRS * DIM], q[NQ * DIM];
        size_t n_hits[NQ];
        int rc;

        snprintf(name, sizeof(name), "ties-%s", scan_name(scan));
        store_path(dir, sizeof(dir), root, name);
        CHECK(hits && one && all && mirror_init(&m, DIM, DOCS) == 0 &&
              vecstore_open(dir, DIM, "m24", &vs, NULL) == 0);
        if (!hits || !one || !all || !m.vecs || !vs)
                goto out;
        for (int d = 0; d < DIRS; d++)
                random_unit(dirs + d * DIM, DIM);
        for (size_t r = 0; r < DOCS; r++) {
                float sign = r % 3 == 0 ? -1.0f : 1.0f;

                for (int i = 0; i < DIM; i++)
                        m.vecs[r * DIM + (size_t)i] =
                            r % 11 == 0 ? 0.0f : sign * dirs[(r % DIRS) * DIM + (size_t)i];
        }
        for (int j = 0; j < NQ - 1; j++)
                random_unit(q + j * DIM, DIM);
        for (int i = 0; i < DIM; i++)
                q[(NQ - 1) * DIM + i] = -dirs[i]; /* best: the negated rows of direction 0 */
        rc = vecstore_begin(vs);
        for (size_t r = 0; r < DOCS && rc == 0; r++)
                rc = put_doc(vs, &m, r);
        CHECK(rc == 0 && vecstore_commit(vs, 1) == 0);
        vecstore_set_scan(vs, scan);
        for (int t = 1; t <= 3; t += 2) {
                CHECK(vecstore_set_threads(vs, t) == 0);
                for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++) {
                        size_t k = ks[i];

                        CHECK(vecstore_search_batch(vs, q, NQ, k, NULL, hits, n_hits) == 0);
                        for (int j = 0; j < NQ; j++) {
                                compare_hits(&m, q + j * DIM, k, NULL, hits + (size_t)j * k,
                                             n_hits[j], all);
                                CHECK(compare_search(vs, &m, q + j * DIM, k, NULL, one, all) ==
                                      n_hits[j]);
                                /* exact: sgemm and sgemv may break a tie differently */
                                CHECK(scan == VECSTORE_SCAN_EXACT ||
                                      same_hits(one, n_hits[j], hits + (size_t)j * k, n_hits[j]));
                        }
                }
        }
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(all);
        free(one);
        free(hits);
}

/* Blocked rows from ids: sorted, deduplicated, unknown ids skipped. */
static void test_rows_of_ids(const char *root)
{
        char dir[4096];
        struct mirror m = {0};
        struct vecstore *vs;
        const char *ids[] = {"doc-9", "doc-2", "nope", "doc-9", "doc-0"};
        const char *bad[] = {"doc-1", ""};
        uint32_t rows[5];
        size_t n = 99;

        store_path(dir, sizeof(dir), root, "rows-of-ids");
        vs = small_store(dir, &m, 10);
        CHECK(vs != NULL);
        if (!vs)
                goto out;
        CHECK(vecstore_rows_of_ids(vs, ids, 5, rows, &n) == 0);
        CHECK(n == 3 && rows[0] == 0 && rows[1] == 2 && rows[2] == 9);
        CHECK(vecstore_rows_of_ids(vs, ids, 0, rows, &n) == 0 && n == 0);
        CHECK(vecstore_rows_of_ids(vs, bad, 2, rows, &n) == ST_EINVAL && n == 0);
out:
        vecstore_close(&vs);
        mirror_release(&m);
}

/* Set "format" of a closed store and drop "blocks_i8": what format 1 looked like. */
static int make_format(const char *dir, uint32_t format, int drop_int8)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi meta, i8;
        unsigned char le[4] = {(unsigned char)format, (unsigned char)(format >> 8), 0, 0};
        MDB_val k = {6, "format"}, v = {4, le};
        int rc = mdb_env_create(&env);

        if (rc)
                return rc;
        rc = mdb_env_set_maxdbs(env, 8);
        if (!rc)
                rc = mdb_env_set_mapsize(env, 64u << 20);
        if (!rc)
                rc = mdb_env_open(env, dir, 0, 0644);
        if (!rc)
                rc = mdb_txn_begin(env, NULL, 0, &txn);
        if (rc) {
                mdb_env_close(env);
                return rc;
        }
        rc = mdb_dbi_open(txn, "meta", 0, &meta);
        if (!rc)
                rc = mdb_put(txn, meta, &k, &v, 0);
        if (!rc && drop_int8) {
                rc = mdb_dbi_open(txn, "blocks_i8", 0, &i8);
                if (!rc)
                        rc = mdb_drop(txn, i8, 1);
        }
        if (rc)
                mdb_txn_abort(txn);
        else
                rc = mdb_txn_commit(txn);
        mdb_env_close(env);
        return rc;
}

/* A format 1 store is migrated at open; an unknown format is refused. */
static void test_formats(const char *root)
{
        enum { DOCS = VECSTORE_BLOCK_ROWS + 500 };
        char dir[4096];
        struct mirror m = {0};
        struct vecstore *vs;
        struct st_error err = {0, ""};
        struct vecstore_hit *exact = calloc(K, sizeof(*exact));
        struct vecstore_hit *hits = calloc(K, sizeof(*hits));
        struct scored *all = calloc(DOCS, sizeof(*all));
        size_t n_exact = 0, n = 0;
        float q[32];

        store_path(dir, sizeof(dir), root, "formats");
        vs = small_store(dir, &m, DOCS);
        CHECK(vs && exact && hits && all);
        if (!vs || !exact || !hits || !all)
                goto out;
        random_unit(q, 32);
        vecstore_set_scan(vs, VECSTORE_SCAN_EXACT);
        CHECK(vecstore_search(vs, q, K, NULL, exact, &n_exact) == 0 && n_exact == K);
        vecstore_close(&vs);

        CHECK(make_format(dir, 1, 1) == 0);
        CHECK(vecstore_open(dir, 32, "m32", &vs, &err) == 0);
        if (!vs)
                goto out;
        /* int8 search reads the migrated blocks; it agrees with the exact answer. */
        CHECK(vecstore_search(vs, q, K, NULL, hits, &n) == 0);
        CHECK(same_hits(exact, n_exact, hits, n));
        compare_hits(&m, q, K, NULL, hits, n, all);
        /* Writes after the migration keep both kinds of blocks. */
        random_unit(m.vecs + 7 * 32, 32);
        CHECK(vecstore_begin(vs) == 0 && put_doc(vs, &m, 7) == 0 && vecstore_commit(vs, 2) == 0);
        CHECK(vecstore_search(vs, m.vecs + 7 * 32, 1, NULL, hits, &n) == 0);
        CHECK(n == 1 && hits[0].row == 7);
        vecstore_close(&vs);
        CHECK(vecstore_open(dir, 32, "m32", &vs, &err) == 0); /* format 2 now: opens as is */
        CHECK(vs && vecstore_applied_seq(vs) == 2);
        vecstore_close(&vs);

        CHECK(make_format(dir, 99, 0) == 0);
        CHECK(vecstore_open(dir, 32, "m32", &vs, &err) == ST_EDB && vs == NULL);
        CHECK(strstr(err.msg, "format 99") != NULL && strstr(err.msg, "format 2") != NULL);
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(all);
        free(hits);
        free(exact);
}

static void test_small_and_empty(const char *root, enum vecstore_scan scan)
{
        char dir[4096];
        struct vecstore *vs = NULL;
        struct vecstore_hit hits[VECSTORE_MAX_K];
        float v[8], q[8];
        struct arena a;
        void *meta = NULL;
        size_t n = 99, len = 0;

        store_path(dir, sizeof(dir), root, scan == VECSTORE_SCAN_EXACT ? "small-exact" : "small");
        CHECK(vecstore_open(dir, 8, "m", &vs, NULL) == 0);
        if (!vs)
                return;
        vecstore_set_scan(vs, scan);
        random_unit(q, 8);
        CHECK(vecstore_search(vs, q, 10, NULL, hits, &n) == 0 && n == 0);

        CHECK(vecstore_begin(vs) == 0);
        for (int i = 0; i < 5; i++) {
                char id[8];

                snprintf(id, sizeof(id), "s%d", i);
                random_unit(v, 8);
                CHECK(vecstore_put(vs, id, v, VECSTORE_BASE_SD15, false, "meta", 4) == 0);
        }
        /* The open batch is not visible yet. */
        CHECK(vecstore_search(vs, q, 10, NULL, hits, &n) == 0 && n == 0);
        CHECK(vecstore_count(vs) == 0);
        CHECK(vecstore_commit(vs, 7) == 0);

        /* k larger than the store. */
        CHECK(vecstore_search(vs, q, 150, NULL, hits, &n) == 0 && n == 5);
        CHECK(vecstore_search(vs, q, 0, NULL, hits, &n) == 0 && n == 0);
        /* A filter nothing passes. */
        {
                struct vecstore_filter f = {.base_models = 1u << VECSTORE_BASE_SDXL,
                                            .allow_nsfw = true};

                CHECK(vecstore_search(vs, q, 10, &f, hits, &n) == 0 && n == 0);
        }

        arena_init(&a, 1 << 16);
        CHECK(vecstore_get_meta(vs, "s3", &a, &meta, &len) == 0);
        CHECK(len == 4 && memcmp(meta, "meta", 4) == 0);
        CHECK(vecstore_get_meta(vs, "nope", &a, &meta, &len) == ST_ENOTFOUND);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_delete(vs, "s3") == 0);
        CHECK(vecstore_put(vs, "empty-meta", v, VECSTORE_BASE_OTHER, true, NULL, 0) == 0);
        CHECK(vecstore_commit(vs, 7) == 0);
        CHECK(vecstore_get_meta(vs, "s3", &a, &meta, &len) == ST_ENOTFOUND);
        CHECK(vecstore_get_meta(vs, "empty-meta", &a, &meta, &len) == 0 && len == 0);
        /* With k over the count, a tombstone (score 0) would show if it were not skipped. */
        CHECK(vecstore_search(vs, q, 150, NULL, hits, &n) == 0 && n == 5);
        for (size_t i = 0; i < n; i++)
                CHECK(strcmp(hits[i].id, "s3") != 0);
        arena_release(&a);

        /* Delete everything: an empty store again. */
        CHECK(vecstore_begin(vs) == 0);
        for (int i = 0; i < 5; i++) {
                char id[8];

                snprintf(id, sizeof(id), "s%d", i);
                CHECK(vecstore_delete(vs, id) == 0);
        }
        CHECK(vecstore_delete(vs, "empty-meta") == 0);
        CHECK(vecstore_commit(vs, 8) == 0);
        CHECK(vecstore_count(vs) == 0);
        CHECK(vecstore_search(vs, q, 10, NULL, hits, &n) == 0 && n == 0);
        vecstore_close(&vs);
}

static void test_misuse(const char *root)
{
        char dir[4096], long_id[VECSTORE_MAX_ID + 1];
        struct vecstore *vs = NULL;
        struct st_error err = {0, ""};
        struct vecstore_hit hit;
        float v[4] = {1, 0, 0, 0};
        size_t n;

        store_path(dir, sizeof(dir), root, "misuse");
        CHECK(vecstore_open(dir, 0, "m", &vs, &err) == ST_EINVAL && vs == NULL);
        CHECK(vecstore_open(dir, 4, "", &vs, &err) == ST_EINVAL);
        CHECK(vecstore_open("/nonexistent-parent/x", 4, "m", &vs, &err) == ST_EIO);
        CHECK(vecstore_open(dir, 4, "m", &vs, &err) == 0);
        if (!vs)
                return;
        CHECK(vecstore_put(vs, "a", v, 0, false, NULL, 0) == ST_EINVAL);
        CHECK(vecstore_delete(vs, "a") == ST_EINVAL);
        CHECK(vecstore_commit(vs, 1) == ST_EINVAL);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_begin(vs) == ST_EINVAL);
        CHECK(vecstore_put(vs, "", v, 0, false, NULL, 0) == ST_EINVAL);
        memset(long_id, 'x', VECSTORE_MAX_ID);
        long_id[VECSTORE_MAX_ID] = '\0';
        CHECK(vecstore_put(vs, long_id, v, 0, false, NULL, 0) == ST_EINVAL);
        CHECK(vecstore_put(vs, "a", v, VECSTORE_BASE_COUNT, false, NULL, 0) == ST_EINVAL);
        CHECK(vecstore_put(vs, "a", v, -1, false, NULL, 0) == ST_EINVAL);
        v[2] = NAN;
        CHECK(vecstore_put(vs, "a", v, 0, false, NULL, 0) == ST_EINVAL);
        CHECK(strstr(vecstore_last_error(vs), "not finite") != NULL);
        v[2] = 0;
        /* After ST_EINVAL the batch is still open and usable. */
        CHECK(vecstore_put(vs, "a", v, 0, false, NULL, 0) == 0);
        CHECK(vecstore_commit(vs, 5) == 0);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_commit(vs, 4) == ST_EINVAL);
        CHECK(vecstore_commit(vs, 5) == 0);
        CHECK(vecstore_search(vs, v, VECSTORE_MAX_K + 1, NULL, &hit, &n) == ST_EINVAL);
        {
                static const uint32_t unsorted[] = {3, 1};
                struct vecstore_filter f = {.blocked = unsorted, .n_blocked = 2};
                struct vecstore_filter missing = {.n_blocked = 1};

                CHECK(vecstore_search(vs, v, 1, &f, &hit, &n) == ST_EINVAL);
                CHECK(strstr(vecstore_last_error(vs), "ascending") != NULL);
                CHECK(vecstore_search(vs, v, 1, &missing, &hit, &n) == ST_EINVAL);
                f.n_blocked = 1; /* one row is in order */
                CHECK(vecstore_search(vs, v, 1, &f, &hit, &n) == 0 && n == 1);
        }
        CHECK(vecstore_search_batch(vs, NULL, 1, 1, NULL, &hit, &n) == ST_EINVAL);
        CHECK(vecstore_search_batch(vs, v, 0, 1, NULL, &hit, &n) == 0);
        v[0] = INFINITY;
        CHECK(vecstore_search(vs, v, 1, NULL, &hit, &n) == ST_EINVAL);
        {
                float two[8] = {1, 0, 0, 0, 0, 1, 0, NAN};
                size_t counts[2] = {9, 9};
                struct vecstore_hit pair[2];

                CHECK(vecstore_search_batch(vs, two, 2, 1, NULL, pair, counts) == ST_EINVAL);
                CHECK(counts[0] == 0 && counts[1] == 0);
        }
        /* Abort discards; close with a batch open aborts it. */
        v[0] = 1;
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_put(vs, "b", v, 0, false, NULL, 0) == 0);
        vecstore_abort(vs);
        vecstore_abort(vs);
        CHECK(vecstore_count(vs) == 1);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_put(vs, "c", v, 0, false, NULL, 0) == 0);
        vecstore_close(&vs);
        vecstore_close(&vs);
        CHECK(vecstore_open(dir, 4, "m", &vs, &err) == 0);
        if (!vs)
                return;
        CHECK(vecstore_count(vs) == 1 && vecstore_applied_seq(vs) == 5);
        vecstore_close(&vs);
}

/* A map too small for the batch: ST_EAGAIN, the map grows, the replay succeeds. */
static void test_map_full(const char *root)
{
        enum { DIM = 64, DOCS = 9000 };
        char dir[4096];
        struct vecstore *vs = NULL;
        struct vecstore_hit hit;
        float *vecs = malloc((size_t)DOCS * DIM * sizeof(float));
        int rc = ST_EAGAIN, tries = 0, full = 0;
        size_t n = 0;

        store_path(dir, sizeof(dir), root, "map-full");
        CHECK(vecs != NULL);
        if (!vecs || vecstore_open_sized(dir, DIM, "m", 1 << 20, &vs, NULL) != 0) {
                CHECK(!"open with a 1 MiB map");
                goto out;
        }
        for (size_t i = 0; i < DOCS; i++)
                random_unit(vecs + i * DIM, DIM);
        while (rc == ST_EAGAIN && tries++ < 20) {
                rc = vecstore_begin(vs);
                for (size_t i = 0; i < DOCS && rc == 0; i++) {
                        char id[32];

                        doc_id(id, sizeof(id), i);
                        rc = vecstore_put(vs, id, vecs + i * DIM, 0, false, id, strlen(id));
                }
                if (rc == 0)
                        rc = vecstore_commit(vs, 1);
                full += rc == ST_EAGAIN;
        }
        CHECK(rc == 0);
        CHECK(full > 0);
        CHECK(vecstore_count(vs) == DOCS);
        CHECK(vecstore_search(vs, vecs + 1234 * DIM, 1, NULL, &hit, &n) == 0);
        CHECK(n == 1 && strcmp(hit.id, "doc-1234") == 0);
out:
        vecstore_close(&vs);
        free(vecs);
}

static void test_base_codes(void)
{
        static const char *const names[] = {"sd15",   "sd21",  "sdxl", "pony", "illustrious",
                                            "noobai", "flux1", "sd3",  "other"};

        for (int i = 0; i < VECSTORE_BASE_COUNT; i++)
                CHECK(vecstore_base_code(names[i]) == i);
        CHECK(vecstore_base_code("SDXL") == VECSTORE_BASE_OTHER);
        CHECK(vecstore_base_code("hunyuan") == VECSTORE_BASE_OTHER);
        CHECK(vecstore_base_code(NULL) == VECSTORE_BASE_OTHER);
}

int main(void)
{
        char root[] = "/tmp/test_vecstore.XXXXXX";

        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        test_base_codes();
        test_search_matches_naive(root, 64, VECSTORE_SCAN_EXACT);
        test_search_matches_naive(root, 64, VECSTORE_SCAN_INT8);
        test_search_matches_naive(root, 384, VECSTORE_SCAN_EXACT);
        test_search_matches_naive(root, 384, VECSTORE_SCAN_INT8);
        test_search_matches_naive(root, 7, VECSTORE_SCAN_INT8); /* codes padded to 8 */
        test_threads(root);
        test_ties(root, VECSTORE_SCAN_EXACT);
        test_ties(root, VECSTORE_SCAN_INT8);
        test_rows_of_ids(root);
        test_formats(root);
        test_small_and_empty(root, VECSTORE_SCAN_EXACT);
        test_small_and_empty(root, VECSTORE_SCAN_INT8);
        test_misuse(root);
        test_map_full(root);
        remove_tree(root);
        if (failures) {
                fprintf(stderr, "test_vecstore: %d checks failed\n", failures);
                return 1;
        }
        printf("test_vecstore: ok\n");
        return 0;
}
