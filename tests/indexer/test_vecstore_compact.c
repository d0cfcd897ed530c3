/*
 * test_vecstore_compact.c - compaction of tombstones in the shard vector
 * store (vecstore_compact(), vecstore_dead()).  A store of random docs with
 * about 40% of them deleted is compacted in several small steps; after each
 * step every search (exact and int8, with base model, NSFW and blocked-id
 * filters) must give exactly the ids and scores it gave before compaction,
 * and match a naive scan kept by the test.  Then: the row count shrinks to
 * the live count (and on disk: rows, ids and blocks), the vacated rows of
 * the last block are zero, metadata follows the moved docs, a deleted id
 * put again gets a new row, compaction survives close and reopen, a step
 * with nothing to do does nothing, misuse is refused, and a step that fails
 * (memory map full, on a copy of the store with no free pages) leaves the
 * store as it was.  Every store lives in a fresh mkdtemp directory that is
 * removed at the end.
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

#define DIM       16
#define N_DOCS    10000
#define N_QUERIES 12
#define K         100
#define STEP      700 /* max_moves of one compaction step */
#define TOLERANCE 1e-4
#define MODEL     "compact-test"

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_vecstore_compact.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

/* ---- helpers ---- */

static uint64_t rng_state = 0x3C6EF372FE94F82BULL;

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

static size_t block_count(size_t rows)
{
        return (rows + VECSTORE_BLOCK_ROWS - 1) / VECSTORE_BLOCK_ROWS;
}

/* What the store should hold, by doc number d (id "doc-<d>"), not by row. */
struct mirror {
        size_t n;
        float *vecs; /* n * DIM */
        int *base;
        int *nsfw;
        int *deleted;
};

static int mirror_init(struct mirror *m, size_t n)
{
        m->n = n;
        m->vecs = malloc(n * DIM * sizeof(float));
        m->base = calloc(n, sizeof(int));
        m->nsfw = calloc(n, sizeof(int));
        m->deleted = calloc(n, sizeof(int));
        if (!m->vecs || !m->base || !m->nsfw || !m->deleted)
                return -1;
        for (size_t d = 0; d < n; d++) {
                random_unit(m->vecs + d * DIM, DIM);
                m->base[d] = (int)(next_random() % VECSTORE_BASE_COUNT);
                m->nsfw[d] = next_random() % 4 == 0;
        }
        return 0;
}

static void mirror_release(struct mirror *m)
{
        free(m->vecs);
        free(m->base);
        free(m->nsfw);
        free(m->deleted);
}

static void doc_id(char *out, size_t size, size_t d)
{
        snprintf(out, size, "doc-%zu", d);
}

/* The doc number of an id "doc-<d>"; (size_t)-1 if it is not one. */
static size_t doc_number(const char *id)
{
        char *end;
        unsigned long d;

        if (strncmp(id, "doc-", 4) != 0)
                return (size_t)-1;
        d = strtoul(id + 4, &end, 10);
        return *end == '\0' ? (size_t)d : (size_t)-1;
}

/* Metadata of doc d: its id and base code, so a blob that moved to the wrong doc shows. */
static size_t doc_meta(char *out, size_t size, const struct mirror *m, size_t d)
{
        return (size_t)snprintf(out, size, "meta of doc-%zu base %d", d, m->base[d]);
}

static int put_doc(struct vecstore *vs, const struct mirror *m, size_t d)
{
        char id[32], meta[64];
        size_t len = doc_meta(meta, sizeof(meta), m, d);

        doc_id(id, sizeof(id), d);
        return vecstore_put(vs, id, m->vecs + d * DIM, m->base[d], m->nsfw[d] != 0, meta, len);
}

static int delete_doc(struct vecstore *vs, struct mirror *m, size_t d)
{
        char id[32];

        doc_id(id, sizeof(id), d);
        m->deleted[d] = 1;
        return vecstore_delete(vs, id);
}

/* A filter as the test states it: blocked by doc number, turned into rows per search. */
struct spec {
        uint32_t base_models;
        bool allow_nsfw;
        const size_t *blocked; /* doc numbers */
        size_t n_blocked;
};

static int blocked_doc(const struct spec *s, size_t d)
{
        for (size_t i = 0; i < s->n_blocked; i++)
                if (s->blocked[i] == d)
                        return 1;
        return 0;
}

static int passes(const struct mirror *m, size_t d, const struct spec *s)
{
        if (d >= m->n || m->deleted[d] || blocked_doc(s, d))
                return 0;
        if (s->base_models && !(s->base_models & (1u << m->base[d])))
                return 0;
        return s->allow_nsfw || !m->nsfw[d];
}

static double naive_score(const struct mirror *m, const float *q, size_t d)
{
        double s = 0.0;

        for (int i = 0; i < DIM; i++)
                s += (double)q[i] * m->vecs[d * DIM + i];
        return s;
}

static int compare_desc(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x < y) - (x > y);
}

/* The best k scores of the docs s allows, best first, into best; returns how many. */
static size_t naive_search(const struct mirror *m, const float *q, size_t k, const struct spec *s,
                           double *best)
{
        size_t n = 0;

        for (size_t d = 0; d < m->n; d++)
                if (passes(m, d, s))
                        best[n++] = naive_score(m, q, d);
        qsort(best, n, sizeof(*best), compare_desc);
        return n < k ? n : k;
}

/* The rows of s's blocked ids, as a shard makes them for each query. */
static int blocked_rows(struct vecstore *vs, const struct spec *s, uint32_t *rows, size_t *n)
{
        const char *ids[17];
        char names[16][32];

        if (s->n_blocked > 16)
                return -1;
        for (size_t i = 0; i < s->n_blocked; i++) {
                doc_id(names[i], sizeof(names[i]), s->blocked[i]);
                ids[i] = names[i];
        }
        /* "no-such-doc" is skipped; deleted ids may or may not still have a row. */
        ids[s->n_blocked] = "no-such-doc";
        return vecstore_rows_of_ids(vs, ids, s->n_blocked + 1, rows, n);
}

/* Search with spec s; check the hits against the naive scan.  Returns the hit count. */
static size_t search_checked(struct vecstore *vs, const struct mirror *m, const float *q,
                             const struct spec *s, struct vecstore_hit *hits, double *best)
{
        uint32_t rows[17];
        struct vecstore_filter f = {.base_models = s->base_models, .allow_nsfw = s->allow_nsfw};
        size_t n = 0, want;
        int ok = 1;

        CHECK(blocked_rows(vs, s, rows, &f.n_blocked) == 0);
        f.blocked = rows;
        CHECK(vecstore_search(vs, q, K, &f, hits, &n) == 0);
        want = naive_search(m, q, K, s, best);
        CHECK(n == want);
        for (size_t i = 0; i < n && i < want && ok; i++) {
                size_t d = doc_number(hits[i].id);
                const char *id = hits[i].id;
                uint32_t row = 0;
                size_t n_rows = 0;

                ok = passes(m, d, s) && fabs(naive_score(m, q, d) - hits[i].score) <= TOLERANCE &&
                     fabs(best[i] - hits[i].score) <= TOLERANCE &&
                     (i == 0 || hits[i - 1].score >= hits[i].score);
                /* The hit's row is the one its id maps to now. */
                ok = ok && vecstore_rows_of_ids(vs, &id, 1, &row, &n_rows) == 0 && n_rows == 1 &&
                     row == hits[i].row;
                if (!ok)
                        fprintf(stderr, "hit %zu: row %u '%s' %f, naive %f\n", i, hits[i].row,
                                hits[i].id, hits[i].score, best[i]);
        }
        CHECK(ok);
        return n;
}

/* Two answers are the same: ids in the same order, bit-identical scores. */
static int same_answer(const struct vecstore_hit *a, size_t na, const struct vecstore_hit *b,
                       size_t nb)
{
        if (na != nb)
                return 0;
        for (size_t i = 0; i < na; i++)
                if (strcmp(a[i].id, b[i].id) != 0 || a[i].score != b[i].score)
                        return 0;
        return 1;
}

/*
 * Every search the test makes: N_QUERIES queries x the specs x both modes.
 * The first call records the answers; later calls must give the same.
 */
struct answers {
        struct vecstore_hit *hits; /* searches * K */
        size_t *n;                 /* per search */
        size_t searches;
        int recorded;
};

static const size_t blocked_docs[] = {3, 4, 5, 777, 4096, 9999};

static const struct spec specs[] = {
    {.allow_nsfw = true},
    {.allow_nsfw = false},
    {.base_models = 1u << VECSTORE_BASE_SDXL, .allow_nsfw = true},
    {.base_models = (1u << VECSTORE_BASE_PONY) | (1u << VECSTORE_BASE_OTHER)},
    {.allow_nsfw = true, .blocked = blocked_docs, .n_blocked = 6},
    {.base_models = 1u << VECSTORE_BASE_SD15, .blocked = blocked_docs, .n_blocked = 6},
};

#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

static void search_all(struct vecstore *vs, const struct mirror *m, const float *queries,
                       struct answers *a, struct vecstore_hit *hits, double *best)
{
        static const enum vecstore_scan modes[] = {VECSTORE_SCAN_EXACT, VECSTORE_SCAN_INT8};
        size_t i = 0;
        int same = 1;

        for (size_t mode = 0; mode < 2; mode++) {
                vecstore_set_scan(vs, modes[mode]);
                for (size_t s = 0; s < N_SPECS; s++) {
                        for (size_t j = 0; j < N_QUERIES; j++, i++) {
                                size_t n =
                                    search_checked(vs, m, queries + j * DIM, &specs[s], hits, best);

                                if (!a->recorded) {
                                        memcpy(a->hits + i * K, hits, n * sizeof(*hits));
                                        a->n[i] = n;
                                } else if (!same_answer(a->hits + i * K, a->n[i], hits, n)) {
                                        fprintf(stderr, "%s spec %zu query %zu changed\n",
                                                mode ? "int8" : "exact", s, j);
                                        same = 0;
                                }
                        }
                }
        }
        CHECK(same);
        a->recorded = 1;
        vecstore_set_scan(vs, VECSTORE_SCAN_INT8);
}

/* Live docs: metadata right, row in 0..count-1, each row once.  Deleted docs: no metadata. */
static void check_docs(struct vecstore *vs, const struct mirror *m, int reclaimed)
{
        size_t count = vecstore_count(vs);
        unsigned char *seen = calloc(count ? count : 1, 1);
        struct arena a;
        int meta_ok = 1, rows_ok = 1;

        CHECK(seen != NULL);
        if (!seen)
                return;
        arena_init(&a, 1 << 20);
        for (size_t d = 0; d < m->n; d++) {
                char id[32], want[64];
                const char *name = id;
                size_t want_len = doc_meta(want, sizeof(want), m, d), len = 0, n_rows = 0;
                void *meta = NULL;
                uint32_t row = 0;
                int rc;

                doc_id(id, sizeof(id), d);
                rc = vecstore_get_meta(vs, id, &a, &meta, &len);
                CHECK(vecstore_rows_of_ids(vs, &name, 1, &row, &n_rows) == 0);
                if (m->deleted[d]) {
                        meta_ok &= rc == ST_ENOTFOUND;
                        /* After a full compaction no deleted id keeps a row. */
                        rows_ok &= !reclaimed || n_rows == 0;
                        continue;
                }
                meta_ok &= rc == 0 && len == want_len && memcmp(meta, want, len) == 0;
                rows_ok &= n_rows == 1 && (!reclaimed || (row < count && !seen[row]));
                if (n_rows == 1 && row < count)
                        seen[row] = 1;
        }
        CHECK(meta_ok);
        CHECK(rows_ok);
        arena_release(&a);
        free(seen);
}

/* Entries of database name in the closed store at dir; -1 on failure. */
static long db_entries(MDB_txn *txn, const char *name)
{
        MDB_dbi dbi;
        MDB_stat st;

        if (mdb_dbi_open(txn, name, 0, &dbi) || mdb_stat(txn, dbi, &st))
                return -1;
        return (long)st.ms_entries;
}

/*
 * The closed store at dir as LMDB holds it: rows live entries in "rows" and
 * "ids" (no forgotten id left), the blocks for rows and no more, the rows
 * past the end of the last block zero.
 */
static void check_disk(const char *dir, size_t rows)
{
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi blocks;
        int rc = mdb_env_create(&env);

        CHECK(rc == 0);
        if (rc)
                return;
        rc = mdb_env_set_maxdbs(env, 8);
        if (!rc)
                rc = mdb_env_open(env, dir, MDB_RDONLY, 0644);
        if (!rc)
                rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
        CHECK(rc == 0);
        if (rc) {
                mdb_env_close(env);
                return;
        }
        CHECK(db_entries(txn, "rows") == (long)rows);
        CHECK(db_entries(txn, "ids") == (long)rows);
        CHECK(db_entries(txn, "blocks") == (long)block_count(rows));
        CHECK(db_entries(txn, "blocks_i8") == (long)block_count(rows));
        if (rows % VECSTORE_BLOCK_ROWS && mdb_dbi_open(txn, "blocks", 0, &blocks) == 0) {
                unsigned char key[4];
                uint32_t last = (uint32_t)(block_count(rows) - 1);
                MDB_val k = {4, key}, v;
                int zero = 1;

                key[0] = (unsigned char)(last >> 24);
                key[1] = (unsigned char)(last >> 16);
                key[2] = (unsigned char)(last >> 8);
                key[3] = (unsigned char)last;
                CHECK(mdb_get(txn, blocks, &k, &v) == 0);
                CHECK(v.mv_size == (size_t)VECSTORE_BLOCK_ROWS * DIM * sizeof(float));
                for (size_t i = rows % VECSTORE_BLOCK_ROWS * DIM * sizeof(float);
                     i < v.mv_size && zero; i++)
                        zero = ((const unsigned char *)v.mv_data)[i] == 0;
                CHECK(zero);
        }
        mdb_txn_abort(txn);
        mdb_env_close(env);
}

/* Compact in steps of STEP until no tombstone is left; each step reclaims what it promises. */
static void compact_fully(struct vecstore *vs, const struct mirror *m, const float *queries,
                          struct answers *a, struct vecstore_hit *hits, double *best)
{
        size_t count = vecstore_count(vs), steps = 0;
        uint64_t seq = vecstore_applied_seq(vs);

        while (vecstore_dead(vs) > 0 && steps++ < 100) {
                size_t dead = vecstore_dead(vs), moved = 99999;

                CHECK(vecstore_compact(vs, STEP, &moved) == 0);
                CHECK(moved <= STEP);
                CHECK(vecstore_dead(vs) == dead - (dead < STEP ? dead : STEP));
                CHECK(vecstore_count(vs) == count);
                CHECK(vecstore_applied_seq(vs) == seq);
                search_all(vs, m, queries, a, hits, best);
        }
        CHECK(vecstore_dead(vs) == 0);
}

/* ---- tests ---- */

/* Random puts, 40% deleted, compacted in steps: same answers throughout. */
static void test_compact_search(const char *root)
{
        char dir[4096];
        struct vecstore *vs = NULL;
        struct st_error err = {0, ""};
        struct mirror m = {0};
        struct answers a = {0};
        struct vecstore_hit *hits = calloc(K, sizeof(*hits));
        double *best = calloc(N_DOCS + 1, sizeof(*best));
        float queries[N_QUERIES * DIM];
        size_t dead = 0, live, moved = 99;
        int rc = 0;

        a.searches = 2 * N_SPECS * N_QUERIES;
        a.hits = calloc(a.searches * K, sizeof(*a.hits));
        a.n = calloc(a.searches, sizeof(*a.n));
        CHECK(hits && best && a.hits && a.n && mirror_init(&m, N_DOCS) == 0);
        if (!hits || !best || !a.hits || !a.n || !m.deleted)
                goto out;
        for (size_t j = 0; j < N_QUERIES; j++)
                random_unit(queries + j * DIM, DIM);
        /* A blocked doc that is some query's best hit. */
        memcpy(queries, m.vecs + 777 * DIM, DIM * sizeof(float));
        snprintf(dir, sizeof(dir), "%s/search", root);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, &err) == 0);
        if (!vs)
                goto out;

        /* Three batches of puts, then one of deletes: ~40% of the docs, all over the rows. */
        for (size_t b = 0; b < 3 && rc == 0; b++) {
                rc = vecstore_begin(vs);
                for (size_t d = b * N_DOCS / 3; d < (b + 1) * N_DOCS / 3 && rc == 0; d++)
                        rc = put_doc(vs, &m, d);
                if (rc == 0)
                        rc = vecstore_commit(vs, 10 + b);
        }
        CHECK(rc == 0);
        CHECK(vecstore_begin(vs) == 0);
        for (size_t d = 0; d < N_DOCS && rc == 0; d++)
                if (next_random() % 5 < 2 || d == 4 || d == N_DOCS - 1)
                        rc = delete_doc(vs, &m, d), dead++;
        CHECK(rc == 0 && vecstore_commit(vs, 20) == 0);
        live = N_DOCS - dead;
        CHECK(vecstore_count(vs) == live && vecstore_dead(vs) == dead);
        CHECK(dead > N_DOCS * 35 / 100 && dead < N_DOCS * 45 / 100);
        search_all(vs, &m, queries, &a, hits, best);
        check_docs(vs, &m, 0);

        compact_fully(vs, &m, queries, &a, hits, best);
        CHECK(vecstore_count(vs) == live);
        check_docs(vs, &m, 1);

        /* Nothing left to do: no change, no transaction. */
        CHECK(vecstore_compact(vs, STEP, &moved) == 0 && moved == 0);
        CHECK(vecstore_count(vs) == live && vecstore_applied_seq(vs) == 20);
        search_all(vs, &m, queries, &a, hits, best);

        /* Reopen: the compacted store as it was, on disk too. */
        vecstore_close(&vs);
        check_disk(dir, live);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, &err) == 0);
        if (!vs)
                goto out;
        CHECK(vecstore_count(vs) == live && vecstore_dead(vs) == 0);
        CHECK(vecstore_applied_seq(vs) == 20);
        search_all(vs, &m, queries, &a, hits, best);
        check_docs(vs, &m, 1);

        /* A deleted id put again gets a new row, at the end. */
        {
                const char *id = "doc-4";
                uint32_t row = 0;
                size_t n = 0;

                CHECK(m.deleted[4]);
                m.deleted[4] = 0;
                CHECK(vecstore_begin(vs) == 0 && put_doc(vs, &m, 4) == 0 &&
                      vecstore_commit(vs, 21) == 0);
                CHECK(vecstore_count(vs) == live + 1 && vecstore_dead(vs) == 0);
                CHECK(vecstore_rows_of_ids(vs, &id, 1, &row, &n) == 0 && n == 1 && row == live);
                CHECK(vecstore_search(vs, m.vecs + 4 * DIM, 1, NULL, hits, &n) == 0);
                CHECK(n == 1 && strcmp(hits[0].id, "doc-4") == 0 && hits[0].row == live);
                live++;
        }

        /* Delete again, some of it at the very end; compact after a reopen. */
        CHECK(vecstore_begin(vs) == 0);
        rc = 0;
        dead = 0;
        for (size_t d = 0; d < N_DOCS && rc == 0; d++)
                if (!m.deleted[d] && (next_random() % 10 == 0 || d == 4))
                        rc = delete_doc(vs, &m, d), dead++;
        CHECK(rc == 0 && vecstore_commit(vs, 22) == 0);
        live -= dead;
        CHECK(vecstore_dead(vs) == dead && vecstore_count(vs) == live);
        vecstore_close(&vs);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, &err) == 0);
        if (!vs)
                goto out;
        CHECK(vecstore_dead(vs) == dead);
        a.recorded = 0;
        search_all(vs, &m, queries, &a, hits, best);
        compact_fully(vs, &m, queries, &a, hits, best);
        check_docs(vs, &m, 1);
        vecstore_close(&vs);
        check_disk(dir, live);
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(a.n);
        free(a.hits);
        free(best);
        free(hits);
}

/* Every doc deleted: compaction empties the store, which then takes new docs from row 0. */
static void test_compact_all_dead(const char *root)
{
        char dir[4096];
        struct vecstore *vs = NULL;
        struct vecstore_hit hit;
        float v[DIM];
        size_t n = 9, moved = 9, steps = 0;
        int rc;

        snprintf(dir, sizeof(dir), "%s/all-dead", root);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, NULL) == 0);
        if (!vs)
                return;
        rc = vecstore_begin(vs);
        for (int i = 0; i < VECSTORE_BLOCK_ROWS + 10 && rc == 0; i++) {
                char id[32];

                snprintf(id, sizeof(id), "gone-%d", i);
                random_unit(v, DIM);
                rc = vecstore_put(vs, id, v, VECSTORE_BASE_SDXL, false, NULL, 0);
        }
        CHECK(rc == 0 && vecstore_commit(vs, 1) == 0);
        rc = vecstore_begin(vs);
        for (int i = 0; i < VECSTORE_BLOCK_ROWS + 10 && rc == 0; i++) {
                char id[32];

                snprintf(id, sizeof(id), "gone-%d", i);
                rc = vecstore_delete(vs, id);
        }
        CHECK(rc == 0 && vecstore_commit(vs, 2) == 0);
        CHECK(vecstore_dead(vs) == VECSTORE_BLOCK_ROWS + 10);
        /* Only tombstones: steps drop them from the end and move nothing. */
        while (vecstore_dead(vs) > 0 && steps++ < 10) {
                CHECK(vecstore_compact(vs, 3000, &moved) == 0);
                CHECK(moved == 0);
        }
        CHECK(vecstore_dead(vs) == 0 && vecstore_count(vs) == 0);
        CHECK(steps == 2);
        random_unit(v, DIM);
        CHECK(vecstore_search(vs, v, 10, NULL, &hit, &n) == 0 && n == 0);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_put(vs, "gone-7", v, VECSTORE_BASE_SD15, true, "x", 1) == 0);
        CHECK(vecstore_commit(vs, 3) == 0);
        CHECK(vecstore_search(vs, v, 1, NULL, &hit, &n) == 0);
        CHECK(n == 1 && hit.row == 0 && strcmp(hit.id, "gone-7") == 0);
        vecstore_close(&vs);
        check_disk(dir, 1);
}

static void test_compact_misuse(const char *root)
{
        char dir[4096];
        struct vecstore *vs = NULL;
        float v[DIM];
        size_t moved = 9;

        snprintf(dir, sizeof(dir), "%s/misuse", root);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, NULL) == 0);
        if (!vs)
                return;
        /* An empty store: nothing to do. */
        CHECK(vecstore_dead(vs) == 0);
        CHECK(vecstore_compact(vs, 10, &moved) == 0 && moved == 0);
        random_unit(v, DIM);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_put(vs, "a", v, 0, false, NULL, 0) == 0);
        CHECK(vecstore_put(vs, "b", v, 0, false, NULL, 0) == 0);
        CHECK(vecstore_commit(vs, 1) == 0);
        CHECK(vecstore_begin(vs) == 0);
        CHECK(vecstore_delete(vs, "a") == 0);
        /* Not with a batch open; the batch goes on. */
        moved = 9;
        CHECK(vecstore_compact(vs, 10, &moved) == ST_EINVAL && moved == 0);
        CHECK(strstr(vecstore_last_error(vs), "batch") != NULL);
        CHECK(vecstore_commit(vs, 2) == 0);
        CHECK(vecstore_dead(vs) == 1);
        CHECK(vecstore_compact(vs, 0, &moved) == ST_EINVAL);
        CHECK(vecstore_compact(vs, 10, &moved) == 0 && moved == 1);
        CHECK(vecstore_dead(vs) == 0 && vecstore_count(vs) == 1);
        vecstore_close(&vs);
        check_disk(dir, 1);
}

/* A copy of the closed store at from in to, with no free pages (LMDB's compacting copy). */
static int tight_copy(const char *from, const char *to)
{
        MDB_env *env;
        int rc = mdb_env_create(&env);

        if (rc)
                return rc;
        rc = mdb_env_set_maxdbs(env, 8);
        if (!rc)
                rc = mdb_env_open(env, from, MDB_RDONLY, 0644);
        if (!rc && mkdir(to, 0755) < 0)
                rc = -1;
        if (!rc)
                rc = mdb_env_copy2(env, to, MDB_CP_COMPACT);
        mdb_env_close(env);
        return rc;
}

/*
 * A step that fails leaves the store as before: opened with the smallest
 * map its file allows and no free pages, the first step cannot write and
 * returns ST_EAGAIN; counts, rows and answers are unchanged, in memory and
 * on disk; a retry (the map has grown) succeeds.
 */
static void test_compact_failure(const char *root)
{
        char dir[4096], copy[4096];
        struct vecstore *vs = NULL;
        struct mirror m = {0};
        struct answers a = {0};
        struct vecstore_hit *hits = calloc(K, sizeof(*hits));
        double *best = calloc(N_DOCS + 1, sizeof(*best));
        float queries[N_QUERIES * DIM];
        const char *probe[] = {"doc-1", "doc-2", "doc-3", "doc-5000", "doc-9998"};
        uint32_t rows_before[5], rows_after[5];
        size_t n_before = 0, n_after = 0, dead = 0, live, moved = 9;
        int rc = 0, tries = 0;

        a.searches = 2 * N_SPECS * N_QUERIES;
        a.hits = calloc(a.searches * K, sizeof(*a.hits));
        a.n = calloc(a.searches, sizeof(*a.n));
        CHECK(hits && best && a.hits && a.n && mirror_init(&m, N_DOCS) == 0);
        if (!hits || !best || !a.hits || !a.n || !m.deleted)
                goto out;
        for (size_t j = 0; j < N_QUERIES; j++)
                random_unit(queries + j * DIM, DIM);
        snprintf(dir, sizeof(dir), "%s/failure", root);
        snprintf(copy, sizeof(copy), "%s/failure-copy", root);
        CHECK(vecstore_open(dir, DIM, MODEL, &vs, NULL) == 0);
        if (!vs)
                goto out;
        rc = vecstore_begin(vs);
        for (size_t d = 0; d < N_DOCS && rc == 0; d++)
                rc = put_doc(vs, &m, d);
        if (rc == 0)
                rc = vecstore_commit(vs, 1);
        if (rc == 0)
                rc = vecstore_begin(vs);
        for (size_t d = 0; d < N_DOCS && rc == 0; d++)
                if (next_random() % 5 < 2)
                        rc = delete_doc(vs, &m, d), dead++;
        if (rc == 0)
                rc = vecstore_commit(vs, 2);
        CHECK(rc == 0);
        live = N_DOCS - dead;
        vecstore_close(&vs);

        CHECK(tight_copy(dir, copy) == 0);
        CHECK(vecstore_open_sized(copy, DIM, MODEL, 4096, &vs, NULL) == 0);
        if (!vs)
                goto out;
        search_all(vs, &m, queries, &a, hits, best);
        CHECK(vecstore_rows_of_ids(vs, probe, 5, rows_before, &n_before) == 0);
        CHECK(vecstore_compact(vs, 4096, &moved) == ST_EAGAIN && moved == 0);
        CHECK(strstr(vecstore_last_error(vs), "map full") != NULL);
        CHECK(vecstore_dead(vs) == dead && vecstore_count(vs) == live);
        CHECK(vecstore_applied_seq(vs) == 2);
        CHECK(vecstore_rows_of_ids(vs, probe, 5, rows_after, &n_after) == 0);
        CHECK(n_after == n_before && memcmp(rows_before, rows_after, n_after * 4) == 0);
        search_all(vs, &m, queries, &a, hits, best);
        check_docs(vs, &m, 0);
        vecstore_close(&vs);
        CHECK(vecstore_open(copy, DIM, MODEL, &vs, NULL) == 0);
        if (!vs)
                goto out;
        CHECK(vecstore_dead(vs) == dead && vecstore_count(vs) == live);
        CHECK(vecstore_rows_of_ids(vs, probe, 5, rows_after, &n_after) == 0);
        CHECK(n_after == n_before && memcmp(rows_before, rows_after, n_after * 4) == 0);
        search_all(vs, &m, queries, &a, hits, best);
        vecstore_close(&vs);

        /* The retry: the grown map has room. */
        CHECK(vecstore_open_sized(copy, DIM, MODEL, 4096, &vs, NULL) == 0);
        if (!vs)
                goto out;
        do
                rc = vecstore_compact(vs, 4096, &moved);
        while (rc == ST_EAGAIN && ++tries < 20);
        CHECK(rc == 0 && moved > 0 && tries > 0);
        CHECK(vecstore_dead(vs) == (dead > 4096 ? dead - 4096 : 0));
        search_all(vs, &m, queries, &a, hits, best);
out:
        vecstore_close(&vs);
        mirror_release(&m);
        free(a.n);
        free(a.hits);
        free(best);
        free(hits);
}

int main(void)
{
        char root[] = "/tmp/test_vecstore_compact.XXXXXX";

        if (!mkdtemp(root)) {
                perror("mkdtemp");
                return 1;
        }
        test_compact_misuse(root);
        test_compact_all_dead(root);
        test_compact_search(root);
        test_compact_failure(root);
        remove_tree(root);
        if (failures) {
                fprintf(stderr, "test_vecstore_compact: %d checks failed\n", failures);
                return 1;
        }
        printf("test_vecstore_compact: ok\n");
        return 0;
}
