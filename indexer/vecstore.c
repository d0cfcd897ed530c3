/*
 * vecstore.c - a shard's vector store in its own LMDB environment (see
 * vecstore.h for the interface).
 *
 * On-disk layout, format 1.  Five named databases in one environment.
 * Integers in values are little-endian; row and block keys are big-endian so
 * that LMDB's byte order is numeric order.  Vectors are float32 in host byte
 * order, because search reads them in place: like LMDB's own file, a store
 * moves only between machines of the same byte order.
 *
 *   "meta"    key (ASCII)    value
 *             "format"       u32      1
 *             "dim"          u32      floats per vector, 1..VECSTORE_MAX_DIM
 *             "model"        bytes    embedding model name, no NUL, < VECSTORE_MAX_MODEL
 *             "applied_seq"  u64      changelog sequence of the last committed batch
 *             "rows"         u32      rows allocated = next new row (tombstones included)
 *             "live"         u32      rows not tombstoned
 *
 *   "ids"     doc id (bytes, no NUL, 1..VECSTORE_MAX_ID-1)  ->  u32 row
 *             kept after a delete, so a returning id gets its row back
 *
 *   "rows"    u32 BE row  ->  offset  size  field
 *                             0       1     base model code (enum vecstore_base)
 *                             1       1     flags: bit 0 nsfw, bit 1 deleted
 *                             2       n     doc id, no NUL
 *
 *   "docs"    doc id  ->  metadata blob (opaque; the msgpack StylusDoc)
 *             present only while the doc is live
 *
 *   "blocks"  u32 BE block  ->  VECSTORE_BLOCK_ROWS * dim float32
 *             row r is at block r / VECSTORE_BLOCK_ROWS, float offset
 *             (r % VECSTORE_BLOCK_ROWS) * dim; rows past "rows" and
 *             tombstoned rows are all zero.  Values this big live on
 *             LMDB overflow pages: contiguous, and 16-byte aligned in the map.
 *
 * Invariants: every row below "rows" has a "rows" entry and lies in a stored
 * block; ids[id] == r exactly when rows[r] names id; "live" counts rows
 * without the deleted flag; docs[id] exists exactly when id's row is live.
 *
 * In memory the store keeps each row's base code and flags (2 bytes a row)
 * so search filters without touching "rows".  A batch works on a copy of
 * that table and on dirty copies of the blocks it changes, which go into the
 * transaction when the batch commits or too many are held.
 */
#include "indexer/vecstore.h"

#include <cblas.h>
#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FORMAT_VERSION 1

#define FLAG_NSFW    0x01
#define FLAG_DELETED 0x02

#define ROW_HEADER 2 /* bytes before the id in a "rows" value */

#define DIRTY_BYTES_MAX (64u << 20) /* block copies one batch may hold before flushing */

struct row_attr {
        uint8_t base;  /* enum vecstore_base */
        uint8_t flags; /* FLAG_* */
};

/* Counters and per-row attributes, either committed or of the open batch. */
struct state {
        uint64_t applied_seq;
        uint32_t rows;          /* rows allocated */
        uint32_t live;          /* rows not deleted */
        struct row_attr *attrs; /* rows entries */
        size_t cap;             /* entries allocated in attrs */
};

/* A changed copy of one block, written into the transaction at flush. */
struct dirty_block {
        uint32_t block;
        float *data; /* VECSTORE_BLOCK_ROWS * dim floats, malloc'd */
};

/* A candidate in the top-k heap. */
struct slot {
        float score;
        uint32_t row;
};

struct vecstore {
        MDB_env *env;
        MDB_dbi meta, ids, rows, docs, blocks;
        int dim;
        size_t block_bytes;
        struct state committed;
        struct state pending; /* valid while txn != NULL */
        MDB_txn *txn;         /* the open batch, or NULL */
        struct dirty_block *dirty;
        size_t n_dirty, max_dirty;
        float *scores;     /* VECSTORE_BLOCK_ROWS, scratch for search */
        struct slot *heap; /* VECSTORE_MAX_K, scratch for search */
        struct st_error err;
};

/* ---- encoding ---- */

static void put_be32(unsigned char *b, uint32_t v)
{
        b[0] = (unsigned char)(v >> 24);
        b[1] = (unsigned char)(v >> 16);
        b[2] = (unsigned char)(v >> 8);
        b[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *b)
{
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static void put_le(unsigned char *b, uint64_t v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *b, size_t n)
{
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v |= (uint64_t)b[i] << (8 * i);
        return v;
}

static MDB_val text_val(const char *s)
{
        MDB_val v = {strlen(s), (void *)(uintptr_t)s};

        return v;
}

/* ---- base models ---- */

static const char *const base_names[VECSTORE_BASE_COUNT] = {
    "sd15", "sd21", "sdxl", "pony", "illustrious", "noobai", "flux1", "sd3", "other",
};

int vecstore_base_code(const char *normalized)
{
        for (int i = 0; normalized && i < VECSTORE_BASE_COUNT; i++)
                if (strcmp(normalized, base_names[i]) == 0)
                        return i;
        return VECSTORE_BASE_OTHER;
}

/* ---- errors ---- */

/* Record an LMDB failure as an ST_E* code with context. */
static int db_fail(struct vecstore *vs, int rc, const char *what)
{
        if (rc == MDB_MAP_FULL)
                return st_fail(&vs->err, ST_EAGAIN, "%s: memory map full; batch discarded", what);
        if (rc == MDB_TXN_FULL)
                return st_fail(&vs->err, ST_ETOOBIG, "%s: batch too large for one transaction",
                               what);
        if (rc == ENOMEM)
                return st_fail(&vs->err, ST_ENOMEM, "%s: out of memory", what);
        return st_fail(&vs->err, ST_EDB, "%s: %s", what, mdb_strerror(rc));
}

static int corrupt(struct vecstore *vs, const char *what, uint64_t n)
{
        return st_fail(&vs->err, ST_EDB, "vector store damaged: %s (%llu)", what,
                       (unsigned long long)n);
}

/* ---- state ---- */

static int state_reserve(struct state *s, size_t n)
{
        size_t cap = s->cap ? s->cap : 1024;
        struct row_attr *p;

        if (n <= s->cap)
                return 0;
        while (cap < n)
                cap *= 2;
        p = realloc(s->attrs, cap * sizeof(*p));
        if (!p)
                return ST_ENOMEM;
        s->attrs = p;
        s->cap = cap;
        return 0;
}

static int state_copy(struct state *dst, const struct state *src)
{
        *dst = *src;
        dst->attrs = NULL;
        dst->cap = 0;
        if (state_reserve(dst, src->rows) < 0)
                return ST_ENOMEM;
        if (src->rows)
                memcpy(dst->attrs, src->attrs, src->rows * sizeof(*src->attrs));
        return 0;
}

static void state_release(struct state *s)
{
        free(s->attrs);
        memset(s, 0, sizeof(*s));
}

/* ---- batches ---- */

static void drop_dirty(struct vecstore *vs)
{
        for (size_t i = 0; i < vs->n_dirty; i++)
                free(vs->dirty[i].data);
        vs->n_dirty = 0;
}

/* Double the map after MDB_MAP_FULL; only legal with no transaction open. */
static void grow_map(struct vecstore *vs)
{
        MDB_envinfo info;

        if (mdb_env_info(vs->env, &info) == 0)
                mdb_env_set_mapsize(vs->env, info.me_mapsize * 2);
}

void vecstore_abort(struct vecstore *vs)
{
        if (!vs->txn)
                return;
        mdb_txn_abort(vs->txn);
        vs->txn = NULL;
        drop_dirty(vs);
        state_release(&vs->pending);
}

/* An LMDB call failed inside the batch: discard it and report. */
static int batch_fail(struct vecstore *vs, int rc, const char *what)
{
        vecstore_abort(vs);
        if (rc == MDB_MAP_FULL)
                grow_map(vs);
        return db_fail(vs, rc, what);
}

/* Write every dirty block into the transaction and free the copies. */
static int flush_dirty(struct vecstore *vs)
{
        for (size_t i = 0; i < vs->n_dirty; i++) {
                unsigned char key[4];
                MDB_val k = {4, key}, v = {vs->block_bytes, NULL};
                int rc;

                put_be32(key, vs->dirty[i].block);
                rc = mdb_put(vs->txn, vs->blocks, &k, &v, MDB_RESERVE);
                if (rc)
                        return batch_fail(vs, rc, "write vector block");
                memcpy(v.mv_data, vs->dirty[i].data, vs->block_bytes);
        }
        drop_dirty(vs);
        return 0;
}

/* A writable copy of block b in the batch: the stored one, or zeros if new. */
static int dirty_block(struct vecstore *vs, uint32_t b, float **data)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v;
        struct dirty_block *d;
        int rc;

        for (size_t i = 0; i < vs->n_dirty; i++) {
                if (vs->dirty[i].block == b) {
                        *data = vs->dirty[i].data;
                        return 0;
                }
        }
        if (vs->n_dirty == vs->max_dirty && (rc = flush_dirty(vs)) < 0)
                return rc;
        d = &vs->dirty[vs->n_dirty];
        d->block = b;
        d->data = malloc(vs->block_bytes);
        if (!d->data) {
                vecstore_abort(vs);
                return st_fail(&vs->err, ST_ENOMEM, "vector block copy: out of memory");
        }
        vs->n_dirty++;
        put_be32(key, b);
        rc = mdb_get(vs->txn, vs->blocks, &k, &v);
        if (rc == MDB_NOTFOUND) {
                memset(d->data, 0, vs->block_bytes);
        } else if (rc) {
                return batch_fail(vs, rc, "read vector block");
        } else if (v.mv_size != vs->block_bytes) {
                vecstore_abort(vs);
                return corrupt(vs, "block size", v.mv_size);
        } else {
                memcpy(d->data, v.mv_data, vs->block_bytes);
        }
        *data = d->data;
        return 0;
}

static int set_row_vector(struct vecstore *vs, uint32_t row, const float *vec)
{
        float *data = NULL;
        float *dst;
        int rc = dirty_block(vs, row / VECSTORE_BLOCK_ROWS, &data);

        if (rc < 0)
                return rc;
        dst = data + (size_t)(row % VECSTORE_BLOCK_ROWS) * (size_t)vs->dim;
        if (vec)
                memcpy(dst, vec, (size_t)vs->dim * sizeof(*dst));
        else
                memset(dst, 0, (size_t)vs->dim * sizeof(*dst));
        return 0;
}

int vecstore_begin(struct vecstore *vs)
{
        int rc;

        if (vs->txn)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_begin: a batch is already open");
        rc = mdb_txn_begin(vs->env, NULL, 0, &vs->txn);
        if (rc == MDB_MAP_RESIZED) {
                /* Another process grew the map: adopt its size. */
                mdb_env_set_mapsize(vs->env, 0);
                rc = mdb_txn_begin(vs->env, NULL, 0, &vs->txn);
        }
        if (rc) {
                vs->txn = NULL;
                return db_fail(vs, rc, "begin batch");
        }
        if (state_copy(&vs->pending, &vs->committed) < 0) {
                mdb_txn_abort(vs->txn);
                vs->txn = NULL;
                return st_fail(&vs->err, ST_ENOMEM, "begin batch: out of memory");
        }
        return 0;
}

static int check_id(struct vecstore *vs, const char *id)
{
        size_t len = id ? strnlen(id, VECSTORE_MAX_ID) : 0;

        if (len == 0 || len >= VECSTORE_MAX_ID)
                return st_fail(&vs->err, ST_EINVAL, "doc id empty or over %d bytes",
                               VECSTORE_MAX_ID - 1);
        return 0;
}

static int check_vector(struct vecstore *vs, const float *v, const char *what)
{
        if (!v)
                return st_fail(&vs->err, ST_EINVAL, "%s: no vector", what);
        for (int i = 0; i < vs->dim; i++)
                if (!isfinite(v[i]))
                        return st_fail(&vs->err, ST_EINVAL, "%s: component %d not finite", what, i);
        return 0;
}

/* Row of id in the batch: *found 0 when the id never had one. */
static int find_row(struct vecstore *vs, const char *id, uint32_t *row, int *found)
{
        MDB_val k = text_val(id), v;
        int rc = mdb_get(vs->txn, vs->ids, &k, &v);

        *found = 0;
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc)
                return batch_fail(vs, rc, "look up doc id");
        if (v.mv_size != 4 || (*row = (uint32_t)get_le(v.mv_data, 4)) >= vs->pending.rows) {
                vecstore_abort(vs);
                return corrupt(vs, "row of an id", v.mv_size);
        }
        *found = 1;
        return 0;
}

static int write_row(struct vecstore *vs, uint32_t row, const char *id, struct row_attr a)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v = {ROW_HEADER + strlen(id), NULL};
        unsigned char *p;
        int rc;

        put_be32(key, row);
        rc = mdb_put(vs->txn, vs->rows, &k, &v, MDB_RESERVE);
        if (rc)
                return batch_fail(vs, rc, "write row");
        p = v.mv_data;
        p[0] = a.base;
        p[1] = a.flags;
        memcpy(p + ROW_HEADER, id, v.mv_size - ROW_HEADER);
        vs->pending.attrs[row] = a;
        return 0;
}

/* A new row for id: number it, map the id to it. */
static int new_row(struct vecstore *vs, const char *id, uint32_t *row)
{
        MDB_val k = text_val(id), v;
        unsigned char le[4];
        int rc;

        if (vs->pending.rows == UINT32_MAX) {
                vecstore_abort(vs);
                return st_fail(&vs->err, ST_ETOOBIG, "vector store full (2^32 rows)");
        }
        if (state_reserve(&vs->pending, (size_t)vs->pending.rows + 1) < 0) {
                vecstore_abort(vs);
                return st_fail(&vs->err, ST_ENOMEM, "row table: out of memory");
        }
        *row = vs->pending.rows;
        put_le(le, *row, 4);
        v.mv_size = 4;
        v.mv_data = le;
        rc = mdb_put(vs->txn, vs->ids, &k, &v, 0);
        if (rc)
                return batch_fail(vs, rc, "write doc id");
        vs->pending.rows++;
        return 0;
}

int vecstore_put(struct vecstore *vs, const char *id, const float *vec, int base_model_code,
                 bool nsfw, const void *meta, size_t meta_len)
{
        struct row_attr a = {(uint8_t)base_model_code, nsfw ? FLAG_NSFW : 0};
        MDB_val k, v;
        uint32_t row = 0;
        int found, rc;

        if (!vs->txn)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_put: no batch open");
        if ((rc = check_id(vs, id)) < 0 || (rc = check_vector(vs, vec, id)) < 0)
                return rc;
        if (base_model_code < 0 || base_model_code >= VECSTORE_BASE_COUNT)
                return st_fail(&vs->err, ST_EINVAL, "%s: base model code %d", id, base_model_code);
        if (meta_len > VECSTORE_MAX_META || (!meta && meta_len > 0))
                return st_fail(&vs->err, ST_EINVAL, "%s: metadata of %zu bytes", id, meta_len);
        if ((rc = find_row(vs, id, &row, &found)) < 0)
                return rc;
        if (!found && (rc = new_row(vs, id, &row)) < 0)
                return rc;
        if (!found || (vs->pending.attrs[row].flags & FLAG_DELETED))
                vs->pending.live++;
        if ((rc = write_row(vs, row, id, a)) < 0 || (rc = set_row_vector(vs, row, vec)) < 0)
                return rc;
        k = text_val(id);
        v.mv_size = meta_len;
        v.mv_data = (void *)(uintptr_t)(meta ? meta : ""); /* LMDB copies from it even if empty */
        rc = mdb_put(vs->txn, vs->docs, &k, &v, 0);
        if (rc)
                return batch_fail(vs, rc, "write doc metadata");
        return 0;
}

int vecstore_delete(struct vecstore *vs, const char *id)
{
        struct row_attr a;
        MDB_val k;
        uint32_t row = 0;
        int found, rc;

        if (!vs->txn)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_delete: no batch open");
        if ((rc = check_id(vs, id)) < 0 || (rc = find_row(vs, id, &row, &found)) < 0)
                return rc;
        if (!found || (vs->pending.attrs[row].flags & FLAG_DELETED))
                return 0;
        a = vs->pending.attrs[row];
        a.flags |= FLAG_DELETED;
        if ((rc = write_row(vs, row, id, a)) < 0 || (rc = set_row_vector(vs, row, NULL)) < 0)
                return rc;
        k = text_val(id);
        rc = mdb_del(vs->txn, vs->docs, &k, NULL);
        if (rc && rc != MDB_NOTFOUND)
                return batch_fail(vs, rc, "delete doc metadata");
        vs->pending.live--;
        return 0;
}

static int put_meta_u(struct vecstore *vs, MDB_txn *txn, const char *name, uint64_t value,
                      size_t bytes)
{
        unsigned char buf[8];
        MDB_val k = text_val(name), v = {bytes, buf};

        put_le(buf, value, bytes);
        return mdb_put(txn, vs->meta, &k, &v, 0);
}

/* The counters of s into "meta". */
static int put_counters(struct vecstore *vs, MDB_txn *txn, const struct state *s)
{
        int rc = put_meta_u(vs, txn, "applied_seq", s->applied_seq, 8);

        if (!rc)
                rc = put_meta_u(vs, txn, "rows", s->rows, 4);
        if (!rc)
                rc = put_meta_u(vs, txn, "live", s->live, 4);
        return rc;
}

int vecstore_commit(struct vecstore *vs, uint64_t applied_seq)
{
        int rc;

        if (!vs->txn)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_commit: no batch open");
        if (applied_seq < vs->committed.applied_seq)
                return st_fail(&vs->err, ST_EINVAL, "applied seq %llu below stored %llu",
                               (unsigned long long)applied_seq,
                               (unsigned long long)vs->committed.applied_seq);
        if ((rc = flush_dirty(vs)) < 0)
                return rc;
        vs->pending.applied_seq = applied_seq;
        rc = put_counters(vs, vs->txn, &vs->pending);
        if (rc)
                return batch_fail(vs, rc, "write counters");
        rc = mdb_txn_commit(vs->txn);
        vs->txn = NULL; /* freed by commit, whatever the result */
        if (rc) {
                state_release(&vs->pending);
                if (rc == MDB_MAP_FULL)
                        grow_map(vs);
                return db_fail(vs, rc, "commit batch");
        }
        state_release(&vs->committed);
        vs->committed = vs->pending;
        memset(&vs->pending, 0, sizeof(vs->pending));
        return 0;
}

uint64_t vecstore_applied_seq(const struct vecstore *vs)
{
        return vs->committed.applied_seq;
}

size_t vecstore_count(const struct vecstore *vs)
{
        return vs->committed.live;
}

/* ---- search ---- */

/* a ranks below b: lower score, or the same score and a later row. */
static int worse(struct slot a, struct slot b)
{
        return a.score < b.score || (a.score == b.score && a.row > b.row);
}

static void sift_down(struct slot *h, size_t n, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                struct slot t;

                if (l < n && worse(h[l], h[m]))
                        m = l;
                if (r < n && worse(h[r], h[m]))
                        m = r;
                if (m == i)
                        return;
                t = h[i];
                h[i] = h[m];
                h[m] = t;
                i = m;
        }
}

static void sift_up(struct slot *h, size_t i)
{
        while (i > 0) {
                size_t p = (i - 1) / 2;
                struct slot t;

                if (!worse(h[i], h[p]))
                        return;
                t = h[i];
                h[i] = h[p];
                h[p] = t;
                i = p;
        }
}

/* Keep the k best of the candidates offered; the heap root is the worst kept. */
static void offer(struct slot *h, size_t *n, size_t k, struct slot c)
{
        if (*n < k) {
                h[*n] = c;
                sift_up(h, (*n)++);
        } else if (worse(h[0], c)) {
                h[0] = c;
                sift_down(h, k, 0);
        }
}

/* Sort the heap in place, best first: pop the worst to the end repeatedly. */
static void heap_sort(struct slot *h, size_t n)
{
        while (n > 1) {
                struct slot t = h[0];

                h[0] = h[--n];
                h[n] = t;
                sift_down(h, n, 0);
        }
}

static int allowed(struct row_attr a, const struct vecstore_filter *f)
{
        if (a.flags & FLAG_DELETED)
                return 0;
        if (!f)
                return 1;
        if (f->base_models && !(f->base_models & (1u << a.base)))
                return 0;
        return f->allow_nsfw || !(a.flags & FLAG_NSFW);
}

/* Score every row of block b and offer the allowed ones to the heap. */
static int scan_block(struct vecstore *vs, MDB_txn *txn, uint32_t b, const float *q,
                      const struct vecstore_filter *f, size_t k, size_t *n)
{
        unsigned char key[4];
        MDB_val kv = {4, key}, v;
        uint32_t first = b * VECSTORE_BLOCK_ROWS;
        uint32_t rows = vs->committed.rows - first;
        int rc;

        if (rows > VECSTORE_BLOCK_ROWS)
                rows = VECSTORE_BLOCK_ROWS;
        put_be32(key, b);
        rc = mdb_get(txn, vs->blocks, &kv, &v);
        if (rc == MDB_NOTFOUND)
                return corrupt(vs, "missing block", b);
        if (rc)
                return db_fail(vs, rc, "read vector block");
        if (v.mv_size != vs->block_bytes || (uintptr_t)v.mv_data % alignof(float))
                return corrupt(vs, "block size or alignment", v.mv_size);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, vs->dim, 1.0f, v.mv_data, vs->dim,
                    q, 1, 0.0f, vs->scores, 1);
        for (uint32_t i = 0; i < rows; i++) {
                struct slot c = {vs->scores[i], first + i};

                if (allowed(vs->committed.attrs[first + i], f))
                        offer(vs->heap, n, k, c);
        }
        return 0;
}

/* Fill hit ids from "rows". */
static int name_hits(struct vecstore *vs, MDB_txn *txn, struct vecstore_hit *hits, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char key[4];
                MDB_val k = {4, key}, v;
                int rc;

                hits[i].score = vs->heap[i].score;
                hits[i].row = vs->heap[i].row;
                put_be32(key, hits[i].row);
                rc = mdb_get(txn, vs->rows, &k, &v);
                if (rc)
                        return db_fail(vs, rc, "read row");
                if (v.mv_size <= ROW_HEADER || v.mv_size - ROW_HEADER >= VECSTORE_MAX_ID)
                        return corrupt(vs, "row size", v.mv_size);
                memcpy(hits[i].id, (char *)v.mv_data + ROW_HEADER, v.mv_size - ROW_HEADER);
                hits[i].id[v.mv_size - ROW_HEADER] = '\0';
        }
        return 0;
}

int vecstore_search(struct vecstore *vs, const float *q, size_t k, const struct vecstore_filter *f,
                    struct vecstore_hit *hits, size_t *n_hits)
{
        uint32_t blocks = (uint32_t)(((uint64_t)vs->committed.rows + VECSTORE_BLOCK_ROWS - 1) /
                                     VECSTORE_BLOCK_ROWS);
        MDB_txn *txn;
        size_t n = 0;
        int rc;

        *n_hits = 0;
        if (k > VECSTORE_MAX_K)
                return st_fail(&vs->err, ST_EINVAL, "k %zu over %d", k, VECSTORE_MAX_K);
        if ((rc = check_vector(vs, q, "query")) < 0)
                return rc;
        if (k == 0 || vs->committed.live == 0)
                return 0;
        rc = mdb_txn_begin(vs->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return db_fail(vs, rc, "begin search");
        for (uint32_t b = 0; b < blocks; b++)
                if ((rc = scan_block(vs, txn, b, q, f, k, &n)) < 0)
                        goto out_txn;
        heap_sort(vs->heap, n);
        rc = name_hits(vs, txn, hits, n);
        if (rc == 0)
                *n_hits = n;
out_txn:
        mdb_txn_abort(txn);
        return rc;
}

int vecstore_get_meta(struct vecstore *vs, const char *id, struct arena *a, void **meta,
                      size_t *len)
{
        MDB_txn *txn;
        MDB_val k, v;
        int rc;

        if ((rc = check_id(vs, id)) < 0)
                return rc;
        rc = mdb_txn_begin(vs->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return db_fail(vs, rc, "begin read");
        k = text_val(id);
        rc = mdb_get(txn, vs->docs, &k, &v);
        if (rc == MDB_NOTFOUND) {
                rc = st_fail(&vs->err, ST_ENOTFOUND, "no live doc %s", id);
                goto out_txn;
        }
        if (rc) {
                rc = db_fail(vs, rc, "read doc metadata");
                goto out_txn;
        }
        *meta = arena_alloc(a, v.mv_size);
        if (!*meta) {
                rc = st_fail(&vs->err, ST_ENOMEM, "doc metadata of %zu bytes: arena full",
                             v.mv_size);
                goto out_txn;
        }
        memcpy(*meta, v.mv_data, v.mv_size);
        *len = v.mv_size;
out_txn:
        mdb_txn_abort(txn);
        return rc;
}

const char *vecstore_last_error(const struct vecstore *vs)
{
        return vs->err.msg;
}

/* ---- open and close ---- */

static int get_meta_u(struct vecstore *vs, MDB_txn *txn, const char *name, size_t bytes,
                      uint64_t *value)
{
        MDB_val k = text_val(name), v;
        int rc = mdb_get(txn, vs->meta, &k, &v);

        if (rc)
                return rc == MDB_NOTFOUND ? corrupt(vs, name, 0) : db_fail(vs, rc, name);
        if (v.mv_size != bytes)
                return corrupt(vs, name, v.mv_size);
        *value = get_le(v.mv_data, bytes);
        return 0;
}

/* A new store: write "meta". */
static int init_meta(struct vecstore *vs, MDB_txn *txn, const char *model)
{
        MDB_val k = text_val("model"), v = text_val(model);
        int rc = put_meta_u(vs, txn, "format", FORMAT_VERSION, 4);

        if (!rc)
                rc = put_meta_u(vs, txn, "dim", (uint64_t)vs->dim, 4);
        if (!rc)
                rc = mdb_put(txn, vs->meta, &k, &v, 0);
        if (!rc)
                rc = put_counters(vs, txn, &vs->committed);
        return rc ? db_fail(vs, rc, "initialize store") : 0;
}

/* An existing store: same format, dim and model; load the counters. */
static int check_meta(struct vecstore *vs, MDB_txn *txn, const char *dir, const char *model,
                      uint64_t format)
{
        MDB_val k = text_val("model"), v;
        uint64_t dim = 0, seq = 0, rows = 0, live = 0;
        int rc;

        if (format != FORMAT_VERSION)
                return st_fail(&vs->err, ST_EDB, "%s: store format %llu, this build reads %d", dir,
                               (unsigned long long)format, FORMAT_VERSION);
        if ((rc = get_meta_u(vs, txn, "dim", 4, &dim)) < 0)
                return rc;
        rc = mdb_get(txn, vs->meta, &k, &v);
        if (rc)
                return rc == MDB_NOTFOUND ? corrupt(vs, "model", 0) : db_fail(vs, rc, "model");
        if (dim != (uint64_t)vs->dim || v.mv_size != strlen(model) ||
            memcmp(v.mv_data, model, v.mv_size) != 0)
                return st_fail(&vs->err, ST_EDIM,
                               "%s holds dim %llu model '%.*s', asked for dim %d model '%s'", dir,
                               (unsigned long long)dim, (int)(v.mv_size < 64 ? v.mv_size : 64),
                               (const char *)v.mv_data, vs->dim, model);
        if ((rc = get_meta_u(vs, txn, "applied_seq", 8, &seq)) < 0 ||
            (rc = get_meta_u(vs, txn, "rows", 4, &rows)) < 0 ||
            (rc = get_meta_u(vs, txn, "live", 4, &live)) < 0)
                return rc;
        vs->committed.applied_seq = seq;
        vs->committed.rows = (uint32_t)rows;
        vs->committed.live = (uint32_t)live;
        return 0;
}

/* The in-memory row table from "rows", checking the invariants it can. */
static int load_rows(struct vecstore *vs, MDB_txn *txn)
{
        struct state *s = &vs->committed;
        MDB_cursor *c;
        MDB_val k, v;
        uint32_t expect = 0, live = 0;
        int rc;

        if (state_reserve(s, s->rows) < 0)
                return st_fail(&vs->err, ST_ENOMEM, "row table: out of memory");
        rc = mdb_cursor_open(txn, vs->rows, &c);
        if (rc)
                return db_fail(vs, rc, "open rows cursor");
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                const unsigned char *p = v.mv_data;

                if (k.mv_size != 4 || get_be32(k.mv_data) != expect || expect >= s->rows)
                        break;
                if (v.mv_size <= ROW_HEADER || p[0] >= VECSTORE_BASE_COUNT)
                        break;
                s->attrs[expect].base = p[0];
                s->attrs[expect].flags = p[1];
                live += !(p[1] & FLAG_DELETED);
                expect++;
        }
        mdb_cursor_close(c);
        if (rc != MDB_NOTFOUND && rc != 0)
                return db_fail(vs, rc, "read rows");
        if (rc == 0 || expect != s->rows)
                return corrupt(vs, "row table", expect);
        if (live != s->live)
                return corrupt(vs, "live count", live);
        return 0;
}

static int open_dbs(struct vecstore *vs, MDB_txn *txn)
{
        int rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &vs->meta);

        if (!rc)
                rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &vs->ids);
        if (!rc)
                rc = mdb_dbi_open(txn, "rows", MDB_CREATE, &vs->rows);
        if (!rc)
                rc = mdb_dbi_open(txn, "docs", MDB_CREATE, &vs->docs);
        if (!rc)
                rc = mdb_dbi_open(txn, "blocks", MDB_CREATE, &vs->blocks);
        return rc ? db_fail(vs, rc, "open databases") : 0;
}

/* Open the databases, then create "meta" or check it, in one write transaction. */
static int load(struct vecstore *vs, const char *dir, const char *model)
{
        MDB_txn *txn;
        uint64_t format = 0;
        MDB_val k = text_val("format"), v;
        int rc = mdb_txn_begin(vs->env, NULL, 0, &txn);

        if (rc)
                return db_fail(vs, rc, "begin open");
        if ((rc = open_dbs(vs, txn)) < 0)
                goto out_abort;
        rc = mdb_get(txn, vs->meta, &k, &v);
        if (rc == MDB_NOTFOUND) {
                rc = init_meta(vs, txn, model);
        } else if (rc) {
                rc = db_fail(vs, rc, "read format");
        } else {
                if (v.mv_size == 4)
                        format = get_le(v.mv_data, 4);
                rc = check_meta(vs, txn, dir, model, format);
                if (rc == 0)
                        rc = load_rows(vs, txn);
        }
        if (rc < 0)
                goto out_abort;
        rc = mdb_txn_commit(txn);
        return rc ? db_fail(vs, rc, "commit open") : 0;
out_abort:
        mdb_txn_abort(txn);
        return rc;
}

static int create_env(struct vecstore *vs, const char *dir, size_t map_size)
{
        int dead;
        int rc = mdb_env_create(&vs->env);

        if (rc) {
                vs->env = NULL;
                return db_fail(vs, rc, "create environment");
        }
        rc = mdb_env_set_maxdbs(vs->env, 5);
        if (!rc)
                rc = mdb_env_set_mapsize(vs->env, map_size);
        /* NOTLS: searches may read while the owner thread holds the batch. */
        if (!rc)
                rc = mdb_env_open(vs->env, dir, MDB_NOTLS, 0644);
        if (rc)
                return st_fail(&vs->err, rc == ENOMEM ? ST_ENOMEM : ST_EDB, "open %s: %s", dir,
                               mdb_strerror(rc));
        mdb_reader_check(vs->env, &dead); /* slots left by crashed readers */
        return 0;
}

void vecstore_close(struct vecstore **vsp)
{
        struct vecstore *vs = vsp ? *vsp : NULL;

        if (!vs)
                return;
        vecstore_abort(vs);
        if (vs->env)
                mdb_env_close(vs->env);
        state_release(&vs->committed);
        free(vs->dirty);
        free(vs->scores);
        free(vs->heap);
        free(vs);
        *vsp = NULL;
}

int vecstore_open_sized(const char *dir, int dim, const char *model, size_t map_size,
                        struct vecstore **out, struct st_error *err)
{
        struct vecstore *vs;
        int rc;

        *out = NULL;
        if (!dir || !model || !model[0] || strlen(model) >= VECSTORE_MAX_MODEL)
                return st_fail(err, ST_EINVAL, "vector store: directory or model name missing");
        if (dim < 1 || dim > VECSTORE_MAX_DIM)
                return st_fail(err, ST_EINVAL, "vector store: dim %d not in 1..%d", dim,
                               VECSTORE_MAX_DIM);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return st_fail(err, ST_EIO, "create %s: %s", dir, strerror(errno));
        vs = calloc(1, sizeof(*vs));
        if (!vs)
                return st_fail(err, ST_ENOMEM, "vector store: out of memory");
        vs->dim = dim;
        vs->block_bytes = (size_t)VECSTORE_BLOCK_ROWS * (size_t)dim * sizeof(float);
        vs->max_dirty = DIRTY_BYTES_MAX / vs->block_bytes;
        if (vs->max_dirty == 0)
                vs->max_dirty = 1;
        vs->dirty = calloc(vs->max_dirty, sizeof(*vs->dirty));
        vs->scores = malloc(VECSTORE_BLOCK_ROWS * sizeof(*vs->scores));
        vs->heap = malloc(VECSTORE_MAX_K * sizeof(*vs->heap));
        if (!vs->dirty || !vs->scores || !vs->heap) {
                rc = st_fail(&vs->err, ST_ENOMEM, "vector store: out of memory");
                goto out_close;
        }
        if ((rc = create_env(vs, dir, map_size)) < 0 || (rc = load(vs, dir, model)) < 0)
                goto out_close;
        *out = vs;
        return 0;
out_close:
        if (err)
                *err = vs->err;
        vecstore_close(&vs);
        return rc;
}

int vecstore_open(const char *dir, int dim, const char *model, struct vecstore **out,
                  struct st_error *err)
{
        return vecstore_open_sized(dir, dim, model, VECSTORE_MAP_SIZE, out, err);
}
