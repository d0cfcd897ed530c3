/*
 * test_vecstore.c - the shard vector store against a naive scan kept beside
 * it: batches of puts, exact top-k with filters and tombstones, replace,
 * reopen, dim/model mismatch, a full memory map, misuse.  Every store lives
 * in a fresh mkdtemp directory that is removed at the end.
 */
#include "indexer/vecstore.h"

#include <dirent.h>
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

static int passes(const struct mirror *m, size_t row, const struct vecstore_filter *f)
{
        if (m->deleted[row])
                return 0;
        if (!f)
                return 1;
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
 * Search and compare with the naive scan: same count, scores within
 * TOLERANCE position by position, same ids except where two scores tie
 * within TOLERANCE.  Returns the number of positions compared.
 */
static size_t compare_search(struct vecstore *vs, const struct mirror *m, const float *q, size_t k,
                             const struct vecstore_filter *f, struct vecstore_hit *hits,
                             struct scored *all)
{
        size_t n = 0, want = naive_search(m, q, k, f, all);
        int ok = 1;

        CHECK(vecstore_search(vs, q, k, f, hits, &n) == 0);
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
        return n;
}

/* ---- tests ---- */

/* Fill a store with N_DOCS random docs in four batches and check search. */
static void test_search_matches_naive(const char *root, int dim)
{
        char dir[4096], model[64];
        struct vecstore *vs = NULL;
        struct st_error err = {0, ""};
        struct mirror m = {0};
        struct vecstore_hit *hits = calloc(VECSTORE_MAX_K, sizeof(*hits));
        struct vecstore_hit *again = calloc(VECSTORE_MAX_K, sizeof(*again));
        struct scored *all = calloc(N_DOCS, sizeof(*all));
        float *queries = malloc((size_t)N_QUERIES * (size_t)dim * sizeof(float));
        static const uint32_t deleted_rows[] = {0, 17, 4095, 4096, 9999, 5000};
        struct vecstore_filter sdxl_safe = {1u << VECSTORE_BASE_SDXL, false};
        struct vecstore_filter pony_or_other = {
            (1u << VECSTORE_BASE_PONY) | (1u << VECSTORE_BASE_OTHER), true};
        struct vecstore_filter safe = {0, false};
        size_t n;

        CHECK(hits && again && all && queries && mirror_init(&m, dim, N_DOCS) == 0);
        if (!hits || !again || !all || !queries || !m.vecs)
                goto out;
        snprintf(model, sizeof(model), "test-model/%d", dim);
        snprintf(dir, sizeof(dir), "%s/dim%d", root, dim);
        for (size_t r = 0; r < N_DOCS; r++) {
                random_unit(m.vecs + r * (size_t)dim, dim);
                m.base[r] = (int)(next_random() % VECSTORE_BASE_COUNT);
                m.nsfw[r] = next_random() % 5 == 0;
        }
        for (int i = 0; i < N_QUERIES; i++)
                random_unit(queries + (size_t)i * (size_t)dim, dim);

        CHECK(vecstore_open(dir, dim, model, &vs, &err) == 0);
        if (!vs)
                goto out;
        CHECK(vecstore_count(vs) == 0 && vecstore_applied_seq(vs) == 0);
        for (size_t batch = 0; batch < 4; batch++) {
                int rc = 0;

                CHECK(vecstore_begin(vs) == 0);
                for (size_t r = batch * N_DOCS / 4; r < (batch + 1) * N_DOCS / 4 && rc == 0; r++)
                        rc = put_doc(vs, &m, r);
                CHECK(rc == 0);
                CHECK(vecstore_commit(vs, 100 + batch) == 0);
        }
        CHECK(vecstore_count(vs) == N_DOCS);
        CHECK(vecstore_applied_seq(vs) == 103);

        for (int i = 0; i < N_QUERIES; i++)
                CHECK(compare_search(vs, &m, queries + (size_t)i * (size_t)dim, K, NULL, hits,
                                     all) == K);

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
                for (size_t j = 0; j < n; j++)
                        CHECK(!m.deleted[hits[j].row]);
                compare_search(vs, &m, q, K, NULL, hits, all);
        }

        /* Filters. */
        for (int i = 0; i < 10; i++) {
                const float *q = queries + (size_t)i * (size_t)dim;

                compare_search(vs, &m, q, K, &sdxl_safe, hits, all);
                compare_search(vs, &m, q, K, &pony_or_other, hits, all);
                compare_search(vs, &m, q, K, &safe, hits, all);
        }

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
        CHECK(vecstore_applied_seq(vs) == 106);
        CHECK(vecstore_count(vs) == N_DOCS - 5);
        CHECK(vecstore_search(vs, queries, K, &safe, again, &n) == 0);
        CHECK(n == K);
        for (size_t i = 0; i < n; i++)
                CHECK(hits[i].score == again[i].score && hits[i].row == again[i].row &&
                      strcmp(hits[i].id, again[i].id) == 0);
        for (int i = 0; i < N_QUERIES; i += 5)
                compare_search(vs, &m, queries + (size_t)i * (size_t)dim, K, NULL, hits, all);
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
        free(again);
        free(hits);
}

static void test_small_and_empty(const char *root)
{
        char dir[4096];
        struct vecstore *vs = NULL;
        struct vecstore_hit hits[VECSTORE_MAX_K];
        float v[8], q[8];
        struct arena a;
        void *meta = NULL;
        size_t n = 99, len = 0;

        store_path(dir, sizeof(dir), root, "small");
        CHECK(vecstore_open(dir, 8, "m", &vs, NULL) == 0);
        if (!vs)
                return;
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
                struct vecstore_filter f = {1u << VECSTORE_BASE_SDXL, true};

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
        v[0] = INFINITY;
        CHECK(vecstore_search(vs, v, 1, NULL, &hit, &n) == ST_EINVAL);
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
        test_search_matches_naive(root, 64);
        test_search_matches_naive(root, 384);
        test_small_and_empty(root);
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
