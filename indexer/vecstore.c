/*
 * vecstore.c - a shard's vector store in its own LMDB environment (see
 * vecstore.h for the interface, docs/search.md for the search modes).
 *
 * On-disk layout, format 2.  Six named databases in one environment.
 * Integers in values are little-endian; row and block keys are big-endian so
 * that LMDB's byte order is numeric order.  Vectors and scales are float32 in
 * host byte order, because search reads them in place: like LMDB's own file,
 * a store moves only between machines of the same byte order.
 *
 *   "meta"    key (ASCII)    value
 *             "format"       u32      2 (1: no "blocks_i8"; migrated at open)
 *             "dim"          u32      floats per vector, 1..VECSTORE_MAX_DIM
 *             "model"        bytes    embedding model name, no NUL, < VECSTORE_MAX_MODEL
 *             "applied_seq"  u64      changelog sequence of the last committed batch
 *             "rows"         u32      rows allocated = next new row (tombstones included)
 *             "live"         u32      rows not tombstoned; "rows" - "live" = tombstones
 *
 *   "ids"     doc id (bytes, no NUL, 1..VECSTORE_MAX_ID-1)  ->  u32 row
 *             kept after a delete, so a returning id gets its row back,
 *             until compaction reclaims the row and drops the entry
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
 *             tombstoned rows are all zero.
 *
 *   "blocks_i8"  u32 BE block  ->  offset  size                       field
 *                                  0       VECSTORE_BLOCK_ROWS * 4    float32 scale per row
 *                                  16384   VECSTORE_BLOCK_ROWS * cd   int8 codes, cd = dim
 *                                                                     rounded up to a multiple
 *                                                                     of 4, interleaved by 16
 *                                                                     rows (indexer/scan_kernel.h)
 *             exactly the codes scan_quantize() gives for the float32
 *             block of the same number (zero rows: scale 0, codes 0).
 *
 * Block values this big live on LMDB overflow pages: contiguous, and 16-byte
 * aligned in the map (search checks, and reads them with unaligned loads).
 *
 * Invariants: every row below "rows" has a "rows" entry and lies in a stored
 * block of both kinds; ids[id] == r exactly when rows[r] names id; "live"
 * counts rows without the deleted flag; docs[id] exists exactly when id's
 * row is live; "blocks_i8"[b] encodes "blocks"[b].
 *
 * Format 1 is format 2 without "blocks_i8".  Opening one migrates it: the
 * open's write transaction encodes every float32 block and sets "format" to
 * 2, so a crash leaves either format 1 or a complete format 2.
 *
 * Compaction (vecstore_compact()) keeps format 2 and adds no key: it leaves
 * a store that meets every invariant above with a smaller "rows", which any
 * format 2 reader, older builds included, reads correctly, so the format
 * number stays.  One write transaction moves the last live rows into the
 * lowest tombstoned rows (the "rows" entry, the "ids" entry, the float32
 * vector; the int8 block is re-encoded from it; "docs" is keyed by id and
 * does not move), deletes the "ids" entry of each tombstone it overwrites
 * or drops, deletes the "rows" entries past the new "rows", zeroes the
 * vacated rows of the last block kept and deletes the blocks past it.
 *
 * In memory the store keeps each row's base code and flags (2 bytes a row),
 * and the same facts as bitmaps (live, nsfw, one per base code), so search
 * filters 64 rows with a few word operations and never touches "rows".  A
 * batch works on a copy of those and on dirty copies of the float32 blocks
 * it changes, which go into the transaction, together with their int8
 * encoding, when the batch commits or too many are held.
 *
 * Search (vecstore_search_batch()): queries go in chunks of BATCH_QUERIES.
 * For each block, a bitmap of the rows the filter allows; blocks with none
 * are skipped.  Exact mode scores a block with one sgemv or sgemm; int8 mode
 * scores SPAN_ROWS rows at a time with the scan kernel, its helper threads
 * taking blocks as they go.  Each query keeps a top-k of its best rows
 * (struct topk: k exact, 4k + 64 int8 candidates); the kernel's threshold
 * test against the top-k's threshold skips most rows 64 at a time.  int8
 * candidates are merged across threads, then the whole batch's are sorted
 * by row and re-ranked by cblas_sdot against their float32 rows in address
 * order (struct scan_plan has the phases).
 */
#include "indexer/vecstore.h"

#include <cblas.h>
#include <errno.h>
#include <lmdb.h>
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "indexer/scan_kernel.h"

#define FORMAT_VERSION 2
#define FORMAT_NO_INT8 1 /* the format migrated at open */

#define FLAG_NSFW    0x01
#define FLAG_DELETED 0x02

#define ROW_HEADER 2 /* bytes before the id in a "rows" value */

#define DIRTY_BYTES_MAX (64u << 20) /* block copies one batch may hold before flushing */

#define BATCH_QUERIES  32   /* queries scored together: one sgemm, one int8 pass */
#define SPAN_ROWS      1024 /* rows an int8 pass scores before selecting (scores stay in L2) */
#define RERANK_FACTOR  4    /* int8 mode re-ranks RERANK_FACTOR * k + RERANK_MARGIN rows */
#define RERANK_MARGIN  64
#define BLOCK_WORDS    (VECSTORE_BLOCK_ROWS / 64) /* bitmap words per block */
#define MAX_CANDIDATES (RERANK_FACTOR * VECSTORE_MAX_K + RERANK_MARGIN)
#define RERANK_AHEAD   4   /* candidates whose rows a re-rank prefetches ahead */
#define SCORE_RUN      256 /* candidates a thread takes at a time to re-rank */
#define PIVOT_SAMPLE   16  /* slots sampled to pick a quickselect pivot */

_Static_assert(MAX_CANDIDATES <= 0xffff && BATCH_QUERIES <= 0xffff,
               "a candidate's query and index fit 16 bits each in struct scan_plan's keys");

/* The bitmaps of a state: word w of map m is bits[w * MAPS + m]. */
enum { MAP_LIVE, MAP_NSFW, MAP_BASE, MAPS = MAP_BASE + VECSTORE_BASE_COUNT };

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
        uint64_t *bits;         /* cap / 64 words per map (MAP_*); 0 past rows */
        size_t cap;             /* entries allocated in attrs; a multiple of 64 */
};

/* A changed copy of one block, written into the transaction at flush. */
struct dirty_block {
        uint32_t block;
        float *data; /* VECSTORE_BLOCK_ROWS * dim floats, malloc'd */
};

/*
 * A candidate row and its score as one unsigned integer, so that ranking two
 * candidates is one comparison: larger is better.  High 32 bits: the score's
 * bits made order-preserving (negative floats flipped, -0 taken as +0);
 * low 32 bits: the row complemented, so that of equal scores the lower row
 * ranks first.  Scores in slots are never NaN.
 */
struct slot {
        uint64_t key;
};

/*
 * The best cap candidates offered, kept loosely: candidates at or above the
 * threshold go into a buffer of 2 * cap; a full buffer is cut back to its
 * best cap by quickselect, whose worst becomes the threshold.  Amortized
 * O(1) per candidate, where a heap pays a sift per insertion.  The result
 * depends only on the set offered, not on the order.  The threshold is at
 * most the cap-th best score offered, so it may also be raised to another
 * top-k's over a subset of the same rows (raise_threshold()).
 */
struct topk {
        struct slot *slots; /* 2 * cap */
        struct slot *spare; /* 2 * cap, scratch of a cut; may be shared by the top-ks of a thread */
        size_t n;           /* slots used */
        size_t cap;         /* candidates wanted */
        float threshold;    /* -INFINITY until the first cut or raise */
};

/*
 * Where the threads of an int8 search meet between its phases: each passes
 * once all have arrived, and the last to arrive first runs the phase's
 * serial step, if any.
 */
struct gate {
        pthread_mutex_t lock;
        pthread_cond_t opened;
        int expected;   /* threads taking part */
        int arrived;    /* in the current phase */
        unsigned phase; /* phases opened so far */
};

/*
 * An int8 search, shared by its threads.  The threads take work as they go
 * (blocks, then queries, then runs of candidates): a thread that the
 * machine delays holds up no fixed share.  Phases, with a gate after each:
 *   scan    every block for every query: each thread keeps its own top
 *           candidates per query (struct share), the thresholds shared;
 *   merge   per query, the shares' candidates into the first share's
 *           top-k, cut to the best cap, listed as keys; then (serial) all
 *           queries' keys in one array sorted by row;
 *   score   runs of that array: the exact float32 score of each candidate,
 *           rows in address order, a row that several queries want read
 *           once;
 *   rank    per query, the best k by exact score, sorted.
 */
struct scan_plan {
        const struct state *state;
        const struct vecstore_filter *filter;
        const struct scan_kernel *kernel;
        const unsigned char *const *blocks; /* "blocks_i8" values by block */
        const unsigned char *const *floats; /* "blocks" values by block, for re-ranking */
        uint32_t n_blocks;
        int dim;
        size_t code_dim;
        struct scan_queries queries;
        const float *vectors; /* the queries in float32, queries.n * dim */
        size_t cap;           /* candidates kept per query */
        int shares;           /* threads at work, the caller's included */
        struct share *all;    /* the shares */
        struct topk *ranked;  /* queries.n re-ranked results, filled by the shares */
        uint64_t *keys;       /* 2 * queries.n * cap: candidates, row << 32 | query << 16 | index */
        size_t n_keys;        /* keys sorted (after the merge) */
        float *dots;          /* queries.n * cap: exact scores, candidate c of j at j * cap + c */
        atomic_uint next_block;                /* scan: the next block */
        atomic_size_t next_merge;              /* merge: the next query */
        atomic_size_t next_key;                /* score: the next run of keys */
        atomic_size_t next_rank;               /* rank: the next query */
        atomic_uint thresholds[BATCH_QUERIES]; /* per query: raise_threshold() */
        struct gate gate;
};

/* One thread's part of an int8 search, and its own buffers. */
struct share {
        struct scan_plan *plan;
        float *scores;                   /* BATCH_QUERIES * SPAN_ROWS */
        struct topk tops[BATCH_QUERIES]; /* candidates of each query */
        struct slot *spare;              /* 2 * MAX_CANDIDATES: the cuts of this thread's top-ks */
        pthread_t thread;
        bool started;
};

/* Buffers of a search, kept between searches and grown on demand. */
struct scratch {
        float *scores; /* score_floats: int8 scans use threads * BATCH_QUERIES *
                                 SPAN_ROWS, exact ones BATCH_QUERIES * VECSTORE_BLOCK_ROWS */
        size_t score_floats;
        struct slot *slots; /* n_slots: 2 * cap per query and thread */
        size_t n_slots;
        struct slot *spare; /* 2 * MAX_CANDIDATES per thread: struct share */
        size_t spare_threads;
        struct slot *ranked;          /* 2 * VECSTORE_MAX_K per query of a batch: re-ranked hits */
        const unsigned char **blocks; /* block_cap, "blocks_i8" values in the search's txn */
        const unsigned char **floats; /* block_cap, "blocks" values in the search's txn */
        size_t block_cap;
        uint64_t *keys; /* n_keys: 2 * BATCH_QUERIES * max(cap, k), candidates or hits by row */
        size_t n_keys;
        float *dots; /* n_dots: BATCH_QUERIES * cap, exact scores of candidates */
        size_t n_dots;
        int8_t *codes;        /* BATCH_QUERIES * code_dim */
        float *scales;        /* BATCH_QUERIES */
        int32_t *sums;        /* BATCH_QUERIES */
        struct share *shares; /* VECSTORE_MAX_THREADS */
};

struct vecstore {
        MDB_env *env;
        MDB_dbi meta, ids, rows, docs, blocks, blocks_i8;
        int dim;
        size_t block_bytes;    /* float32 block value */
        size_t code_dim;       /* int8 codes per row */
        size_t i8_block_bytes; /* int8 block value */
        struct state committed;
        struct state pending; /* valid while txn != NULL */
        MDB_txn *txn;         /* the open batch, or NULL */
        struct dirty_block *dirty;
        size_t n_dirty, max_dirty;
        enum vecstore_scan scan;
        int threads;
        const struct scan_kernel *kernel;
        struct scratch scratch;
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
        uint64_t *bits;

        if (n <= s->cap)
                return 0;
        while (cap < n)
                cap *= 2;
        p = realloc(s->attrs, cap * sizeof(*p));
        if (!p)
                return ST_ENOMEM;
        s->attrs = p;
        bits = realloc(s->bits, cap / 64 * MAPS * sizeof(*bits));
        if (!bits)
                return ST_ENOMEM;
        memset(bits + s->cap / 64 * MAPS, 0, (cap - s->cap) / 64 * MAPS * sizeof(*bits));
        s->bits = bits;
        s->cap = cap;
        return 0;
}

static int state_copy(struct state *dst, const struct state *src)
{
        *dst = *src;
        dst->attrs = NULL;
        dst->bits = NULL;
        dst->cap = 0;
        if (state_reserve(dst, src->rows) < 0)
                return ST_ENOMEM;
        if (src->rows == 0) /* compaction can empty a store that had rows */
                return 0;
        memcpy(dst->attrs, src->attrs, src->rows * sizeof(*src->attrs));
        memcpy(dst->bits, src->bits, (src->rows + 63) / 64 * MAPS * sizeof(*src->bits));
        return 0;
}

static void state_release(struct state *s)
{
        free(s->attrs);
        free(s->bits);
        memset(s, 0, sizeof(*s));
}

/* Record row's attributes, in the table and the bitmaps; row < s->cap. */
static void set_attr(struct state *s, uint32_t row, struct row_attr a)
{
        uint64_t *w = s->bits + (size_t)row / 64 * MAPS;
        uint64_t bit = (uint64_t)1 << (row % 64);

        s->attrs[row] = a;
        for (int m = 0; m < MAPS; m++)
                w[m] &= ~bit;
        if (a.flags & FLAG_DELETED)
                return;
        w[MAP_LIVE] |= bit;
        w[MAP_BASE + a.base] |= bit;
        if (a.flags & FLAG_NSFW)
                w[MAP_NSFW] |= bit;
}

/* ---- batches ---- */

/* Free the dirty copies of blocks first and up (0: all of them). */
static void drop_dirty(struct vecstore *vs, uint32_t first)
{
        size_t kept = 0;

        for (size_t i = 0; i < vs->n_dirty; i++) {
                if (vs->dirty[i].block < first)
                        vs->dirty[kept++] = vs->dirty[i];
                else
                        free(vs->dirty[i].data);
        }
        vs->n_dirty = kept;
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
        drop_dirty(vs, 0);
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

/* The "blocks_i8" value of a float32 block into out (i8_block_bytes). */
static void encode_block(const struct vecstore *vs, const float *block, unsigned char *out)
{
        int8_t codes[VECSTORE_MAX_DIM];
        int8_t *area = (int8_t *)(out + VECSTORE_BLOCK_ROWS * sizeof(float));

        for (size_t r = 0; r < VECSTORE_BLOCK_ROWS; r++) {
                float scale;

                scan_quantize(block + r * (size_t)vs->dim, vs->dim, codes, &scale);
                memcpy(out + r * sizeof(float), &scale, sizeof(float));
                scan_put_codes(area, vs->code_dim, r, codes);
        }
}

/* Write block b, float32 data and its int8 encoding, into txn; an LMDB code. */
static int write_block(struct vecstore *vs, MDB_txn *txn, uint32_t b, const float *data)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v = {vs->block_bytes, NULL};
        int rc;

        put_be32(key, b);
        rc = mdb_put(txn, vs->blocks, &k, &v, MDB_RESERVE);
        if (rc)
                return rc;
        memcpy(v.mv_data, data, vs->block_bytes);
        v.mv_size = vs->i8_block_bytes;
        v.mv_data = NULL;
        rc = mdb_put(txn, vs->blocks_i8, &k, &v, MDB_RESERVE);
        if (rc)
                return rc;
        encode_block(vs, data, v.mv_data);
        return 0;
}

/* Write every dirty block into the transaction and free the copies. */
static int flush_dirty(struct vecstore *vs)
{
        for (size_t i = 0; i < vs->n_dirty; i++) {
                int rc = write_block(vs, vs->txn, vs->dirty[i].block, vs->dirty[i].data);

                if (rc)
                        return batch_fail(vs, rc, "write vector block");
        }
        drop_dirty(vs, 0);
        return 0;
}

/* The batch's copy of block b, or NULL if it has none. */
static float *find_dirty(const struct vecstore *vs, uint32_t b)
{
        for (size_t i = 0; i < vs->n_dirty; i++)
                if (vs->dirty[i].block == b)
                        return vs->dirty[i].data;
        return NULL;
}

/* A writable copy of block b in the batch: the stored one, or zeros if new. */
static int dirty_block(struct vecstore *vs, uint32_t b, float **data)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v;
        struct dirty_block *d;
        int rc;

        if ((*data = find_dirty(vs, b)))
                return 0;
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
        set_attr(&vs->pending, row, a);
        return 0;
}

/* ids[id] = row in the batch; an LMDB code. */
static int put_id_row(struct vecstore *vs, const char *id, uint32_t row)
{
        MDB_val k = text_val(id), v;
        unsigned char le[4];

        put_le(le, row, 4);
        v.mv_size = 4;
        v.mv_data = le;
        return mdb_put(vs->txn, vs->ids, &k, &v, 0);
}

/* A new row for id: number it, map the id to it. */
static int new_row(struct vecstore *vs, const char *id, uint32_t *row)
{
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
        rc = put_id_row(vs, id, *row);
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

size_t vecstore_dead(const struct vecstore *vs)
{
        return vs->committed.rows - vs->committed.live;
}

/* ---- search ---- */

/* A score (not NaN) as an unsigned integer of the same order. */
static uint32_t score_bits(float score)
{
        uint32_t bits;

        score = score == 0.0f ? 0.0f : score; /* -0 ranks as +0 */
        memcpy(&bits, &score, sizeof(bits));
        return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

static float bits_score(uint32_t bits)
{
        float score;

        bits = bits & 0x80000000u ? bits & 0x7fffffffu : ~bits;
        memcpy(&score, &bits, sizeof(score));
        return score;
}

static struct slot make_slot(float score, uint32_t row)
{
        struct slot s;

        s.key = (uint64_t)score_bits(score) << 32 | (uint32_t)~row;
        return s;
}

static float slot_score(struct slot s)
{
        return bits_score((uint32_t)(s.key >> 32));
}

static uint32_t slot_row(struct slot s)
{
        return ~(uint32_t)s.key;
}

/*
 * Copy a[0..n) into out[0..n), those better than pivot first (in no order),
 * and return how many they are.  Each slot is written at both ends and one
 * end advances: no branch (the scores are random to the branch predictor),
 * and no load of a slot just stored, which would chain the iterations.
 */
static size_t split(const struct slot *a, size_t n, struct slot pivot, struct slot *out)
{
        size_t lo = 0, hi = n - 1;

        for (size_t i = 0; i < n; i++) {
                struct slot x = a[i];
                size_t up = x.key > pivot.key;

                out[lo] = x;
                out[hi] = x;
                lo += up;
                hi -= up ^ 1;
        }
        return lo;
}

/*
 * Index of a pivot for keeping the best m of a[0..n) (0 < m < n): the
 * element of about rank m in a sorted sample of PIVOT_SAMPLE, so that one
 * split lands near m; median of three for short ranges.
 */
static size_t pick_pivot(const struct slot *a, size_t n, size_t m)
{
        size_t at[PIVOT_SAMPLE], count = n < 4 * PIVOT_SAMPLE ? 3 : PIVOT_SAMPLE, pick;

        for (size_t i = 0; i < count; i++) {
                size_t j = i;

                at[i] = (2 * i + 1) * n / (2 * count); /* evenly spread */
                for (; j > 0 && a[at[j - 1]].key < a[at[j]].key; j--) {
                        size_t t = at[j];

                        at[j] = at[j - 1];
                        at[j - 1] = t;
                }
        }
        if (count == 3)
                return at[1];
        pick = m * count / n; /* the sample is best first */
        return at[pick < count ? pick : count - 1];
}

/*
 * Reorder a[0..n) so that a[0..m) are its m best, in no order: quickselect
 * with a sampled pivot, each pass split out of place into spare (room for
 * n) and copied back.  Rows are distinct, so no two slots are equal.
 */
static void keep_best(struct slot *a, size_t n, size_t m, struct slot *spare)
{
        size_t lo = 0, hi = n;

        while (m > lo && m < hi) {
                struct slot *r = a + lo, pivot;
                size_t len = hi - lo, at = pick_pivot(r, len, m - lo), up;

                pivot = r[at];
                r[at] = r[len - 1];
                up = split(r, len - 1, pivot, spare);
                spare[len - 1] = spare[up]; /* the pivot between the two sides */
                spare[up] = pivot;
                memcpy(r, spare, len * sizeof(*r));
                if (m <= lo + up)
                        hi = lo + up;
                else
                        lo += up + 1;
        }
}

/* Best first. */
static int compare_slots(const void *a, const void *b)
{
        const struct slot *x = a, *y = b;

        return (x->key < y->key) - (x->key > y->key);
}

/* Start an empty top-k over slots and spare, which have room for 2 * cap each. */
static void topk_init(struct topk *t, struct slot *slots, struct slot *spare, size_t cap)
{
        t->slots = slots;
        t->spare = spare;
        t->n = 0;
        t->cap = cap;
        t->threshold = -INFINITY;
}

/*
 * Keep the best cap; the worst kept is the new threshold, unless another
 * thread's (raise_threshold()) is higher already.
 */
static void topk_compact(struct topk *t)
{
        struct slot worst;

        keep_best(t->slots, t->n, t->cap, t->spare);
        t->n = t->cap;
        worst = t->slots[0];
        for (size_t i = 1; i < t->n; i++)
                worst.key = t->slots[i].key < worst.key ? t->slots[i].key : worst.key;
        if (slot_score(worst) > t->threshold)
                t->threshold = slot_score(worst);
}

/* Put c, which passed the threshold, into the buffer. */
static void topk_push(struct topk *t, struct slot c)
{
        t->slots[t->n++] = c;
        if (t->n == 2 * t->cap)
                topk_compact(t);
}

/* Offer row with score; below the threshold it cannot be among the best cap. */
static void topk_add(struct topk *t, float score, uint32_t row)
{
        if (score >= t->threshold && t->cap > 0) /* NaN fails the test too */
                topk_push(t, make_slot(score, row));
}

/* Offer a slot of another top-k. */
static void topk_add_slot(struct topk *t, struct slot c)
{
        if (slot_score(c) >= t->threshold && t->cap > 0)
                topk_push(t, c);
}

/* The best cap (or all, if fewer) in t->slots[0..t->n), in no order. */
static void topk_cut(struct topk *t)
{
        if (t->n > t->cap) {
                keep_best(t->slots, t->n, t->cap, t->spare);
                t->n = t->cap;
        }
}

/* The same, best first. */
static void topk_sort(struct topk *t)
{
        topk_cut(t);
        qsort(t->slots, t->n, sizeof(*t->slots), compare_slots);
}

static uint32_t block_count(uint32_t rows)
{
        return (uint32_t)(((uint64_t)rows + VECSTORE_BLOCK_ROWS - 1) / VECSTORE_BLOCK_ROWS);
}

/* Rows of block b a scan scores: those allocated, rounded up to SCAN_TILE_ROWS. */
static size_t scan_rows(const struct state *s, uint32_t b)
{
        size_t rows = s->rows - (size_t)b * VECSTORE_BLOCK_ROWS;

        rows = (rows + SCAN_TILE_ROWS - 1) / SCAN_TILE_ROWS * SCAN_TILE_ROWS;
        return rows < VECSTORE_BLOCK_ROWS ? rows : VECSTORE_BLOCK_ROWS;
}

static uint64_t any_bits(const uint64_t *words, size_t n)
{
        uint64_t any = 0;

        for (size_t w = 0; w < n; w++)
                any |= words[w];
        return any;
}

/* Clear the blocked rows of block b in allow. */
static void clear_blocked(const struct vecstore_filter *f, uint32_t b, uint64_t *allow)
{
        uint64_t first = (uint64_t)b * VECSTORE_BLOCK_ROWS;
        size_t lo = 0, hi = f->n_blocked;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (f->blocked[mid] < first)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        for (; lo < f->n_blocked && f->blocked[lo] < first + VECSTORE_BLOCK_ROWS; lo++) {
                uint32_t r = (uint32_t)(f->blocked[lo] - first);

                allow[r / 64] &= ~((uint64_t)1 << (r % 64));
        }
}

/* The rows of block b that f allows, as BLOCK_WORDS bitmap words; 0 when none. */
static int block_mask(const struct state *s, const struct vecstore_filter *f, uint32_t b,
                      uint64_t *allow)
{
        size_t first = (size_t)b * BLOCK_WORDS, used = ((size_t)s->rows + 63) / 64;

        for (size_t w = 0; w < BLOCK_WORDS; w++) {
                const uint64_t *m = s->bits + (first + w) * MAPS;
                uint64_t bits, base = 0;

                if (first + w >= used) {
                        allow[w] = 0;
                        continue;
                }
                bits = m[MAP_LIVE];
                if (f && !f->allow_nsfw)
                        bits &= ~m[MAP_NSFW];
                if (f && f->base_models) {
                        for (int c = 0; c < VECSTORE_BASE_COUNT; c++)
                                if (f->base_models & (1u << c))
                                        base |= m[MAP_BASE + c];
                        bits &= base;
                }
                allow[w] = bits;
        }
        if (f && f->n_blocked)
                clear_blocked(f, b, allow);
        return any_bits(allow, BLOCK_WORDS) != 0;
}

/*
 * A query's threshold shared by the threads of an int8 scan, as score_bits():
 * the highest any thread's top-k has reached.  Each thread's is the cap-th
 * best score of the rows it has seen, at most that of all rows, so every
 * thread may skip rows below the highest: the threads together keep no more
 * candidates than one thread would, and the merged result is the same.
 */
static void raise_threshold(struct topk *t, atomic_uint *shared)
{
        uint32_t seen = atomic_load_explicit(shared, memory_order_relaxed), mine;

        if (bits_score(seen) > t->threshold)
                t->threshold = bits_score(seen);
        mine = score_bits(t->threshold);
        while (seen < mine && !atomic_compare_exchange_weak_explicit(
                                  shared, &seen, mine, memory_order_relaxed, memory_order_relaxed))
                ;
}

/*
 * Offer the allowed rows among words * 64 scores (row first is scores[0]) to
 * t, whose threshold other threads share through shared (NULL: no others).
 * The kernel's threshold test skips, 64 at a time, the rows that cannot make
 * the cut, and NaN scores always.
 */
static void select_rows(const struct scan_kernel *kernel, const float *scores,
                        const uint64_t *allow, size_t words, uint32_t first, struct topk *t,
                        atomic_uint *shared)
{
        if (shared)
                raise_threshold(t, shared);
        for (size_t w = 0; w < words; w++) {
                uint64_t m = allow[w];

                if (!m)
                        continue;
                m &= kernel->at_least(scores + w * 64, t->threshold);
                while (m) {
                        unsigned j = (unsigned)__builtin_ctzll(m);

                        m &= m - 1;
                        topk_add(t, scores[w * 64 + j], first + (uint32_t)(w * 64 + j));
                }
        }
        if (shared)
                raise_threshold(t, shared);
}

/* The value of block b in dbi (bytes long, float-aligned), valid until txn ends. */
static int get_block(struct vecstore *vs, MDB_txn *txn, MDB_dbi dbi, uint32_t b, size_t bytes,
                     const unsigned char **out)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v;
        int rc;

        put_be32(key, b);
        rc = mdb_get(txn, dbi, &k, &v);
        if (rc == MDB_NOTFOUND)
                return corrupt(vs, "missing block", b);
        if (rc)
                return db_fail(vs, rc, "read vector block");
        if (v.mv_size != bytes || (uintptr_t)v.mv_data % alignof(float))
                return corrupt(vs, "block size or alignment", v.mv_size);
        *out = v.mv_data;
        return 0;
}

/* Exact mode: the top-k tops[j] of nq queries from float32 blocks, sgemv or sgemm. */
static int scan_exact(struct vecstore *vs, MDB_txn *txn, const float *q, size_t nq,
                      const struct vecstore_filter *f, struct topk *tops)
{
        uint32_t blocks = block_count(vs->committed.rows);
        float *scores = vs->scratch.scores;
        uint64_t allow[BLOCK_WORDS];

        for (uint32_t b = 0; b < blocks; b++) {
                const unsigned char *block;
                const float *data;
                size_t rows;
                int rc;

                if (!block_mask(&vs->committed, f, b, allow))
                        continue;
                rc = get_block(vs, txn, vs->blocks, b, vs->block_bytes, &block);
                if (rc < 0)
                        return rc;
                data = (const float *)(const void *)block;
                rows = scan_rows(&vs->committed, b);
                if (nq == 1)
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, vs->dim, 1.0f, data,
                                    vs->dim, q, 1, 0.0f, scores, 1);
                else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq,
                                    (blasint)rows, vs->dim, 1.0f, q, vs->dim, data, vs->dim, 0.0f,
                                    scores, VECSTORE_BLOCK_ROWS);
                for (size_t j = 0; j < nq; j++)
                        select_rows(vs->kernel, scores + j * VECSTORE_BLOCK_ROWS, allow, rows / 64,
                                    b * VECSTORE_BLOCK_ROWS, &tops[j], NULL);
        }
        return 0;
}

/* One thread's share of an int8 scan: score spans, keep each query's candidates. */
static void scan_share(struct share *sh)
{
        struct scan_plan *p = sh->plan;
        uint64_t allow[BLOCK_WORDS];
        uint32_t b;

        while ((b = atomic_fetch_add(&p->next_block, 1)) < p->n_blocks) {
                const unsigned char *v = p->blocks[b];
                const float *scales = (const float *)(const void *)v;
                const int8_t *area = (const int8_t *)(v + VECSTORE_BLOCK_ROWS * sizeof(float));
                size_t rows;

                if (!block_mask(p->state, p->filter, b, allow))
                        continue;
                rows = scan_rows(p->state, b);
                for (size_t s = 0; s < rows; s += SPAN_ROWS) {
                        size_t n = rows - s < SPAN_ROWS ? rows - s : SPAN_ROWS;

                        if (!any_bits(allow + s / 64, n / 64))
                                continue;
                        p->kernel->score_int8(area + s * p->code_dim, scales + s, p->code_dim, n,
                                              &p->queries, sh->scores, SPAN_ROWS);
                        for (size_t j = 0; j < p->queries.n; j++)
                                select_rows(p->kernel, sh->scores + j * SPAN_ROWS, allow + s / 64,
                                            n / 64, b * VECSTORE_BLOCK_ROWS + (uint32_t)s,
                                            &sh->tops[j], p->shares > 1 ? &p->thresholds[j] : NULL);
                }
        }
        for (size_t j = 0; j < p->queries.n; j++)
                topk_cut(&sh->tops[j]);
}

/* Wait for the other threads; the last to arrive runs last(arg) (if not NULL) first. */
static void gate_pass(struct gate *g, void (*last)(void *), void *arg)
{
        pthread_mutex_lock(&g->lock);
        if (++g->arrived == g->expected) {
                if (last)
                        last(arg);
                g->arrived = 0;
                g->phase++;
                pthread_cond_broadcast(&g->opened);
        } else {
                unsigned phase = g->phase;

                while (g->phase == phase)
                        pthread_cond_wait(&g->opened, &g->lock);
        }
        pthread_mutex_unlock(&g->lock);
}

/* The float32 vector of row. */
static const float *row_vector(const struct scan_plan *p, uint32_t row)
{
        const unsigned char *block = p->floats[row / VECSTORE_BLOCK_ROWS];

        return (const float *)(const void *)block +
               (size_t)(row % VECSTORE_BLOCK_ROWS) * (size_t)p->dim;
}

/*
 * The prefetch helpers are always inlined: to the compiler a function that
 * only prefetches has no effect, and it may drop the calls.
 */
#define PREFETCH_HELPER __attribute__((always_inline)) static inline

/* Ask the CPU to start loading row's vector (a re-rank reads rows at random). */
PREFETCH_HELPER void prefetch_row(const struct scan_plan *p, uint32_t row)
{
        const char *v = (const char *)(const void *)row_vector(p, row);

        for (size_t off = 0; off < (size_t)p->dim * sizeof(float); off += 64)
                __builtin_prefetch(v + off);
}

/* Prefetch the row of key i, unless key i - 1 has the same row. */
PREFETCH_HELPER void prefetch_key(const struct scan_plan *p, size_t i)
{
        if (i < p->n_keys && (i == 0 || p->keys[i] >> 32 != p->keys[i - 1] >> 32))
                prefetch_row(p, (uint32_t)(p->keys[i] >> 32));
}

/* Merge phase, query j: the shares' candidates into the first's, then its keys at keys[j * cap]. */
static void merge_query(struct share *sh, size_t j)
{
        struct scan_plan *p = sh->plan;
        struct topk *t = &p->all[0].tops[j];
        uint64_t *keys = p->keys + j * p->cap;

        t->spare = sh->spare;
        for (int i = 1; i < p->shares; i++) {
                const struct topk *other = &p->all[i].tops[j];

                for (size_t c = 0; c < other->n; c++)
                        topk_add_slot(t, other->slots[c]);
        }
        topk_cut(t);
        for (size_t c = 0; c < t->n; c++)
                keys[c] = (uint64_t)slot_row(t->slots[c]) << 32 | (uint64_t)(j << 16 | c);
}

static void sort_by_row(uint64_t *keys, uint64_t *tmp, size_t n, uint32_t rows);

/* The serial end of the merge phase: every query's keys in one array, by row. */
static void sort_candidates(void *arg)
{
        struct scan_plan *p = arg;
        size_t n = 0;

        for (size_t j = 0; j < p->queries.n; j++) {
                size_t m = p->all[0].tops[j].n;

                memmove(p->keys + n, p->keys + j * p->cap, m * sizeof(*p->keys));
                n += m;
        }
        sort_by_row(p->keys, p->keys + p->queries.n * p->cap, n, p->state->rows);
        p->n_keys = n;
}

/* Score phase, keys [first, end): exact scores, prefetching rows ahead. */
static void score_keys(struct scan_plan *p, size_t first, size_t end)
{
        for (size_t i = first; i < first + RERANK_AHEAD; i++)
                prefetch_key(p, i);
        for (size_t i = first; i < end; i++) {
                uint32_t row = (uint32_t)(p->keys[i] >> 32), at = (uint32_t)p->keys[i];
                size_t j = at >> 16;

                prefetch_key(p, i + RERANK_AHEAD);
                p->dots[j * p->cap + (at & 0xffff)] =
                    cblas_sdot(p->dim, row_vector(p, row), 1, p->vectors + j * (size_t)p->dim, 1);
        }
}

/* Rank phase, query j: its best k candidates by exact score, sorted. */
static void rank_query(struct share *sh, size_t j)
{
        const struct scan_plan *p = sh->plan;
        const struct topk *t = &p->all[0].tops[j];
        struct topk *ranked = &p->ranked[j];

        ranked->spare = sh->spare;
        for (size_t c = 0; c < t->n; c++)
                topk_add(ranked, p->dots[j * p->cap + c], slot_row(t->slots[c]));
        topk_sort(ranked);
}

/* A thread's whole part of an int8 search: the phases of struct scan_plan. */
static void *share_main(void *arg)
{
        struct share *sh = arg;
        struct scan_plan *p = sh->plan;
        size_t j, first;

        scan_share(sh);
        gate_pass(&p->gate, NULL, NULL);
        while ((j = atomic_fetch_add(&p->next_merge, 1)) < p->queries.n)
                merge_query(sh, j);
        gate_pass(&p->gate, sort_candidates, p);
        while ((first = atomic_fetch_add(&p->next_key, SCORE_RUN)) < p->n_keys)
                score_keys(p, first, first + SCORE_RUN < p->n_keys ? first + SCORE_RUN : p->n_keys);
        gate_pass(&p->gate, NULL, NULL);
        while ((j = atomic_fetch_add(&p->next_rank, 1)) < p->queries.n)
                rank_query(sh, j);
        return NULL;
}

/*
 * Run the search on the plan's shares: one helper thread each but the
 * first, which is ours.  A helper that cannot start leaves its part to the
 * others (the owner has not reached a gate yet, so none opens early).
 */
static void run_shares(struct scan_plan *p)
{
        struct share *all = p->all;

        for (int i = 1; i < p->shares; i++) {
                all[i].started = pthread_create(&all[i].thread, NULL, share_main, &all[i]) == 0;
                if (!all[i].started) {
                        pthread_mutex_lock(&p->gate.lock);
                        p->gate.expected--;
                        pthread_mutex_unlock(&p->gate.lock);
                }
        }
        share_main(&all[0]);
        for (int i = 1; i < p->shares; i++)
                if (all[i].started)
                        pthread_join(all[i].thread, NULL);
}

/* Copy the doc id of a "rows" value into id (VECSTORE_MAX_ID bytes, NUL-terminated). */
static int copy_row_id(struct vecstore *vs, const MDB_val *v, char *id)
{
        if (v->mv_size <= ROW_HEADER || v->mv_size - ROW_HEADER >= VECSTORE_MAX_ID)
                return corrupt(vs, "row size", v->mv_size);
        memcpy(id, (const char *)v->mv_data + ROW_HEADER, v->mv_size - ROW_HEADER);
        id[v->mv_size - ROW_HEADER] = '\0';
        return 0;
}

/* The doc id of row, from "rows" in txn, into id (VECSTORE_MAX_ID bytes, NUL-terminated). */
static int read_row_id(struct vecstore *vs, MDB_txn *txn, uint32_t row, char *id)
{
        unsigned char key[4];
        MDB_val k = {4, key}, v;
        int rc;

        put_be32(key, row);
        rc = mdb_get(txn, vs->rows, &k, &v);
        if (rc)
                return db_fail(vs, rc, "read row");
        return copy_row_id(vs, &v, id);
}

/*
 * Sort keys[0..n) by their high 32 bits (a row), keys[i] >> 32 < rows: LSD
 * radix sort by bytes, through tmp (room for n), only the bytes rows needs.
 */
static void sort_by_row(uint64_t *keys, uint64_t *tmp, size_t n, uint32_t rows)
{
        for (unsigned shift = 32; shift < 64 && (shift == 32 || rows >> (shift - 32)); shift += 8) {
                size_t count[256] = {0}, at = 0;

                for (size_t i = 0; i < n; i++)
                        count[(keys[i] >> shift) & 0xff]++;
                for (size_t d = 0; d < 256; d++) {
                        size_t c = count[d];

                        count[d] = at;
                        at += c;
                }
                for (size_t i = 0; i < n; i++)
                        tmp[count[(keys[i] >> shift) & 0xff]++] = keys[i];
                memcpy(keys, tmp, n * sizeof(*keys));
        }
}

/*
 * Fill the hits of nq queries (hits + j * k, n_hits[j] of them) from their
 * sorted slots tops[j], ids from "rows" in txn.  The lookups go in row order
 * through one cursor, which finds a key on the leaf page it is already on
 * without descending the tree, and a row hit by several queries is read once.
 */
static int name_hits(struct vecstore *vs, MDB_txn *txn, const struct topk *tops, size_t nq,
                     size_t k, struct vecstore_hit *hits, size_t *n_hits)
{
        uint64_t *keys = vs->scratch.keys, *tmp = keys + BATCH_QUERIES * k;
        MDB_cursor *cursor;
        size_t n = 0;
        int rc = 0;

        for (size_t j = 0; j < nq; j++) {
                for (size_t i = 0; i < tops[j].n; i++) {
                        struct vecstore_hit *h = &hits[j * k + i];

                        h->score = slot_score(tops[j].slots[i]);
                        h->row = slot_row(tops[j].slots[i]);
                        keys[n++] = (uint64_t)h->row << 32 | (uint64_t)(j * k + i);
                }
                n_hits[j] = tops[j].n;
        }
        sort_by_row(keys, tmp, n, vs->committed.rows);
        rc = mdb_cursor_open(txn, vs->rows, &cursor);
        if (rc)
                return db_fail(vs, rc, "open rows cursor");
        for (size_t i = 0; i < n && rc == 0; i++) {
                uint32_t row = (uint32_t)(keys[i] >> 32);
                char *id = hits[(uint32_t)keys[i]].id;
                unsigned char key[4];
                MDB_val kv = {4, key}, v;

                if (i > 0 && row == (uint32_t)(keys[i - 1] >> 32)) {
                        memcpy(id, hits[(uint32_t)keys[i - 1]].id, VECSTORE_MAX_ID);
                        continue;
                }
                put_be32(key, row);
                rc = mdb_cursor_get(cursor, &kv, &v, MDB_SET);
                rc = rc ? db_fail(vs, rc, "read row") : copy_row_id(vs, &v, id);
        }
        mdb_cursor_close(cursor);
        return rc;
}

/* Candidates an int8 search keeps per query for re-ranking. */
static size_t candidates(size_t k)
{
        return RERANK_FACTOR * k + RERANK_MARGIN;
}

/*
 * buf (*have elements of size bytes), or a new buffer of want elements if
 * that is more; contents are not kept.  NULL (buf freed, *have 0) when out
 * of memory.
 */
static void *grow(void *buf, size_t *have, size_t want, size_t size)
{
        if (want <= *have)
                return buf;
        free(buf);
        buf = malloc(want * size);
        *have = buf ? want : 0;
        return buf;
}

/* Grow the search buffers for the store's blocks and threads, cap candidates and k hits a query. */
static int scratch_reserve(struct vecstore *vs, uint32_t blocks, size_t cap, size_t k)
{
        struct scratch *x = &vs->scratch;
        size_t threads = (size_t)vs->threads, floats = threads * BATCH_QUERIES * SPAN_ROWS;
        size_t spares = x->spare_threads * 2 * MAX_CANDIDATES, block_floats = x->block_cap;

        if (floats < (size_t)BATCH_QUERIES * VECSTORE_BLOCK_ROWS)
                floats = (size_t)BATCH_QUERIES * VECSTORE_BLOCK_ROWS;
        x->scores = grow(x->scores, &x->score_floats, floats, sizeof(*x->scores));
        x->slots =
            grow(x->slots, &x->n_slots, threads * BATCH_QUERIES * 2 * cap, sizeof(*x->slots));
        x->spare = grow(x->spare, &spares, threads * 2 * MAX_CANDIDATES, sizeof(*x->spare));
        x->spare_threads = spares / (2 * MAX_CANDIDATES);
        x->keys =
            grow(x->keys, &x->n_keys, 2 * BATCH_QUERIES * (cap > k ? cap : k), sizeof(*x->keys));
        x->dots = grow(x->dots, &x->n_dots, BATCH_QUERIES * cap, sizeof(*x->dots));
        x->floats = grow(x->floats, &block_floats, blocks, sizeof(*x->floats));
        x->blocks = grow(x->blocks, &x->block_cap, blocks, sizeof(*x->blocks));
        if (block_floats < x->block_cap)
                x->block_cap = block_floats;
        if (!x->scores || !x->slots || !x->spare || !x->keys || !x->dots || !x->floats ||
            !x->blocks)
                return st_fail(&vs->err, ST_ENOMEM, "search buffers: out of memory");
        return 0;
}

/* Set up an int8 search's threads over blocks: counters, gate, candidate buffers. */
static void plan_shares(struct vecstore *vs, struct scan_plan *p, uint32_t blocks)
{
        struct scratch *x = &vs->scratch;

        p->shares = (uint32_t)vs->threads < blocks ? vs->threads : (int)blocks;
        p->n_blocks = blocks;
        atomic_init(&p->next_block, 0);
        atomic_init(&p->next_merge, 0);
        atomic_init(&p->next_key, 0);
        atomic_init(&p->next_rank, 0);
        for (size_t j = 0; j < p->queries.n; j++)
                atomic_init(&p->thresholds[j], score_bits(-INFINITY));
        p->gate.expected = p->shares;
        p->gate.arrived = 0;
        p->gate.phase = 0;
        for (int i = 0; i < p->shares; i++) {
                struct share *sh = &p->all[i];

                sh->plan = p;
                sh->scores = x->scores + (size_t)i * BATCH_QUERIES * SPAN_ROWS;
                sh->spare = x->spare + (size_t)i * 2 * MAX_CANDIDATES;
                for (size_t j = 0; j < p->queries.n; j++)
                        topk_init(&sh->tops[j],
                                  x->slots + ((size_t)i * BATCH_QUERIES + j) * 2 * p->cap,
                                  sh->spare, p->cap);
        }
}

/* int8 mode for nq <= BATCH_QUERIES queries: scan and re-rank on the threads, then name. */
static int search_int8(struct vecstore *vs, MDB_txn *txn, const float *q, size_t nq, size_t k,
                       const struct vecstore_filter *f, struct vecstore_hit *hits, size_t *n_hits)
{
        struct scratch *x = &vs->scratch;
        uint32_t blocks = block_count(vs->committed.rows);
        struct topk ranked[BATCH_QUERIES];
        struct scan_plan plan = {
            .state = &vs->committed,
            .filter = f,
            .kernel = vs->kernel,
            .blocks = x->blocks,
            .floats = x->floats,
            .dim = vs->dim,
            .code_dim = vs->code_dim,
            .queries = {.codes = x->codes, .scales = x->scales, .sums = x->sums, .n = nq},
            .vectors = q,
            .cap = candidates(k),
            .all = x->shares,
            .ranked = ranked,
            .keys = x->keys,
            .dots = x->dots,
        };
        int rc;

        /* Helper threads may not call LMDB: look up every block first. */
        for (uint32_t b = 0; b < blocks; b++) {
                rc = get_block(vs, txn, vs->blocks_i8, b, vs->i8_block_bytes, &x->blocks[b]);
                if (rc == 0)
                        rc = get_block(vs, txn, vs->blocks, b, vs->block_bytes, &x->floats[b]);
                if (rc < 0)
                        return rc;
        }
        for (size_t j = 0; j < nq; j++) {
                int8_t *codes = x->codes + j * vs->code_dim;

                scan_quantize(q + j * (size_t)vs->dim, vs->dim, codes, &x->scales[j]);
                x->sums[j] = 0;
                for (size_t i = 0; i < vs->code_dim; i++)
                        x->sums[j] += codes[i];
                topk_init(&ranked[j], x->ranked + j * 2 * VECSTORE_MAX_K, NULL, k);
        }
        if (pthread_mutex_init(&plan.gate.lock, NULL) != 0)
                return st_fail(&vs->err, ST_ENOMEM, "search: cannot make a mutex");
        if (pthread_cond_init(&plan.gate.opened, NULL) != 0) {
                pthread_mutex_destroy(&plan.gate.lock);
                return st_fail(&vs->err, ST_ENOMEM, "search: cannot make a condition variable");
        }
        plan_shares(vs, &plan, blocks);
        run_shares(&plan);
        pthread_cond_destroy(&plan.gate.opened);
        pthread_mutex_destroy(&plan.gate.lock);
        return name_hits(vs, txn, ranked, nq, k, hits, n_hits);
}

/* Exact mode for nq <= BATCH_QUERIES queries. */
static int search_exact(struct vecstore *vs, MDB_txn *txn, const float *q, size_t nq, size_t k,
                        const struct vecstore_filter *f, struct vecstore_hit *hits, size_t *n_hits)
{
        struct topk tops[BATCH_QUERIES];
        int rc;

        for (size_t j = 0; j < nq; j++)
                topk_init(&tops[j], vs->scratch.slots + j * 2 * k, vs->scratch.spare, k);
        if ((rc = scan_exact(vs, txn, q, nq, f, tops)) < 0)
                return rc;
        for (size_t j = 0; j < nq; j++)
                topk_sort(&tops[j]);
        return name_hits(vs, txn, tops, nq, k, hits, n_hits);
}

static int check_filter(struct vecstore *vs, const struct vecstore_filter *f)
{
        if (!f || f->n_blocked == 0)
                return 0;
        if (!f->blocked)
                return st_fail(&vs->err, ST_EINVAL, "filter: %zu blocked rows and no array",
                               f->n_blocked);
        for (size_t i = 1; i < f->n_blocked; i++)
                if (f->blocked[i] < f->blocked[i - 1])
                        return st_fail(&vs->err, ST_EINVAL, "filter: blocked rows not ascending");
        return 0;
}

int vecstore_search_batch(struct vecstore *vs, const float *queries, size_t nq, size_t k,
                          const struct vecstore_filter *f, struct vecstore_hit *hits,
                          size_t *n_hits)
{
        uint32_t blocks = block_count(vs->committed.rows);
        MDB_txn *txn;
        int rc;

        for (size_t j = 0; j < nq; j++)
                n_hits[j] = 0;
        if (k > VECSTORE_MAX_K)
                return st_fail(&vs->err, ST_EINVAL, "k %zu over %d", k, VECSTORE_MAX_K);
        if (nq > 0 && !queries)
                return st_fail(&vs->err, ST_EINVAL, "no queries");
        if ((rc = check_filter(vs, f)) < 0)
                return rc;
        for (size_t j = 0; j < nq; j++)
                if ((rc = check_vector(vs, queries + j * (size_t)vs->dim, "query")) < 0)
                        return rc;
        if (nq == 0 || k == 0 || vs->committed.live == 0)
                return 0;
        rc = scratch_reserve(vs, blocks, vs->scan == VECSTORE_SCAN_EXACT ? k : candidates(k), k);
        if (rc < 0)
                return rc;
        rc = mdb_txn_begin(vs->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return db_fail(vs, rc, "begin search");
        for (size_t j = 0; j < nq && rc == 0; j += BATCH_QUERIES) {
                size_t n = nq - j < BATCH_QUERIES ? nq - j : BATCH_QUERIES;
                const float *q = queries + j * (size_t)vs->dim;

                if (vs->scan == VECSTORE_SCAN_EXACT)
                        rc = search_exact(vs, txn, q, n, k, f, hits + j * k, n_hits + j);
                else
                        rc = search_int8(vs, txn, q, n, k, f, hits + j * k, n_hits + j);
        }
        mdb_txn_abort(txn);
        if (rc < 0)
                for (size_t j = 0; j < nq; j++)
                        n_hits[j] = 0;
        return rc;
}

int vecstore_search(struct vecstore *vs, const float *q, size_t k, const struct vecstore_filter *f,
                    struct vecstore_hit *hits, size_t *n_hits)
{
        return vecstore_search_batch(vs, q, 1, k, f, hits, n_hits);
}

void vecstore_set_scan(struct vecstore *vs, enum vecstore_scan scan)
{
        vs->scan = scan == VECSTORE_SCAN_EXACT ? VECSTORE_SCAN_EXACT : VECSTORE_SCAN_INT8;
}

int vecstore_set_threads(struct vecstore *vs, int threads)
{
        if (threads < 1 || threads > VECSTORE_MAX_THREADS)
                return st_fail(&vs->err, ST_EINVAL, "threads %d not in 1..%d", threads,
                               VECSTORE_MAX_THREADS);
        vs->threads = threads;
        return 0;
}

static int compare_rows(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return (x > y) - (x < y);
}

int vecstore_rows_of_ids(struct vecstore *vs, const char *const *ids, size_t n, uint32_t *rows,
                         size_t *n_rows)
{
        MDB_txn *txn;
        size_t m = 0, kept = 0;
        int rc;

        *n_rows = 0;
        for (size_t i = 0; i < n; i++)
                if ((rc = check_id(vs, ids[i])) < 0)
                        return rc;
        rc = mdb_txn_begin(vs->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return db_fail(vs, rc, "begin read");
        for (size_t i = 0; i < n; i++) {
                MDB_val k = text_val(ids[i]), v;

                rc = mdb_get(txn, vs->ids, &k, &v);
                if (rc == MDB_NOTFOUND)
                        continue;
                if (rc) {
                        rc = db_fail(vs, rc, "look up doc id");
                        goto out_txn;
                }
                if (v.mv_size != 4) {
                        rc = corrupt(vs, "row of an id", v.mv_size);
                        goto out_txn;
                }
                rows[m++] = (uint32_t)get_le(v.mv_data, 4);
        }
        rc = 0;
        qsort(rows, m, sizeof(*rows), compare_rows);
        for (size_t i = 0; i < m; i++)
                if (kept == 0 || rows[i] != rows[kept - 1])
                        rows[kept++] = rows[i];
        *n_rows = kept;
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

/* ---- compaction ---- */

/* Lowest tombstoned row of s at or above from; s->rows when there is none. */
static uint32_t next_hole(const struct state *s, uint32_t from)
{
        size_t words = ((size_t)s->rows + 63) / 64;

        for (size_t w = from / 64; w < words; w++) {
                uint64_t dead = ~s->bits[w * MAPS + MAP_LIVE]; /* bits past rows are 0 */
                size_t row;

                if (w == from / 64)
                        dead &= ~(uint64_t)0 << (from % 64);
                if (!dead)
                        continue;
                row = w * 64 + (size_t)__builtin_ctzll(dead);
                return row < s->rows ? (uint32_t)row : s->rows;
        }
        return s->rows;
}

/* Row's float32 vector as the batch sees it, copied into out (dim floats). */
static int read_row_vector(struct vecstore *vs, uint32_t row, float *out)
{
        uint32_t b = row / VECSTORE_BLOCK_ROWS;
        size_t offset = (size_t)(row % VECSTORE_BLOCK_ROWS) * (size_t)vs->dim;
        const float *dirty = find_dirty(vs, b);
        const unsigned char *block;
        int rc;

        if (dirty) {
                memcpy(out, dirty + offset, (size_t)vs->dim * sizeof(*out));
                return 0;
        }
        rc = get_block(vs, vs->txn, vs->blocks, b, vs->block_bytes, &block);
        if (rc < 0)
                return rc;
        memcpy(out, block + offset * sizeof(*out), (size_t)vs->dim * sizeof(*out));
        return 0;
}

/* Delete key k from dbi in the batch. */
static int delete_key(struct vecstore *vs, MDB_dbi dbi, MDB_val *k, const char *what)
{
        int rc = mdb_del(vs->txn, dbi, k, NULL);

        return rc ? batch_fail(vs, rc, what) : 0;
}

static int delete_id(struct vecstore *vs, const char *id)
{
        MDB_val k = text_val(id);

        return delete_key(vs, vs->ids, &k, "forget doc id");
}

/* Delete row's "rows" entry and clear its bits; the caller then shrinks pending.rows. */
static int delete_row(struct vecstore *vs, uint32_t row)
{
        struct row_attr gone = {0, FLAG_DELETED};
        unsigned char key[4];
        MDB_val k = {4, key};

        put_be32(key, row);
        set_attr(&vs->pending, row, gone);
        return delete_key(vs, vs->rows, &k, "delete row");
}

/* The last row, a tombstone: forget its id and the row. */
static int drop_dead_row(struct vecstore *vs, uint32_t row)
{
        char id[VECSTORE_MAX_ID];
        int rc = read_row_id(vs, vs->txn, row, id);

        if (rc == 0)
                rc = delete_id(vs, id);
        if (rc == 0)
                rc = delete_row(vs, row);
        return rc;
}

/*
 * Live row src into tombstoned row dst < src: vector, attributes and id
 * move, dst's old id is forgotten, src's entry goes.  src's vector is left
 * in its block (shrink_blocks() zeroes or drops it).
 */
static int move_row(struct vecstore *vs, uint32_t src, uint32_t dst)
{
        char id[VECSTORE_MAX_ID], dead[VECSTORE_MAX_ID];
        float vec[VECSTORE_MAX_DIM];
        struct row_attr a = vs->pending.attrs[src];
        int rc;

        if ((rc = read_row_id(vs, vs->txn, dst, dead)) < 0 ||
            (rc = read_row_id(vs, vs->txn, src, id)) < 0 ||
            (rc = read_row_vector(vs, src, vec)) < 0 || (rc = delete_id(vs, dead)) < 0 ||
            (rc = set_row_vector(vs, dst, vec)) < 0 || (rc = write_row(vs, dst, id, a)) < 0)
                return rc;
        rc = put_id_row(vs, id, dst);
        if (rc)
                return batch_fail(vs, rc, "write doc id");
        return delete_row(vs, src);
}

/*
 * Rows pending.rows..old_rows-1 are gone: zero those of them still in the
 * last block kept if any moved out of it (tombstones are zero already),
 * and delete the blocks past it.
 */
static int shrink_blocks(struct vecstore *vs, uint32_t old_rows, uint32_t lowest_moved)
{
        uint32_t rows = vs->pending.rows, keep = block_count(rows), had = block_count(old_rows);
        size_t end = (size_t)keep * VECSTORE_BLOCK_ROWS;
        unsigned char key[4];
        MDB_val k = {4, key};
        int rc;

        drop_dirty(vs, keep); /* none today (only rows below keep get written); never flush them */
        if (lowest_moved < end) {
                float *data = NULL;
                size_t first = rows % VECSTORE_BLOCK_ROWS;

                if (end > old_rows)
                        end = old_rows;
                if ((rc = dirty_block(vs, keep - 1, &data)) < 0)
                        return rc;
                memset(data + first * (size_t)vs->dim, 0,
                       (end - rows) * (size_t)vs->dim * sizeof(*data));
        }
        for (uint32_t b = keep; b < had; b++) {
                put_be32(key, b);
                if ((rc = delete_key(vs, vs->blocks, &k, "delete vector block")) < 0 ||
                    (rc = delete_key(vs, vs->blocks_i8, &k, "delete int8 block")) < 0)
                        return rc;
        }
        return 0;
}

/*
 * One compaction step in one write transaction.  Each turn reclaims the
 * last row: a tombstone is dropped, a live row moves into the lowest
 * tombstone.  Both count against max_moves, so a step's work is bounded.
 */
int vecstore_compact(struct vecstore *vs, size_t max_moves, size_t *moved)
{
        struct state *p = &vs->pending;
        uint32_t old_rows, hole = 0, lowest_moved = UINT32_MAX;
        size_t n_moved = 0;
        int rc;

        *moved = 0;
        if (vs->txn)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_compact: a batch is open");
        if (max_moves == 0)
                return st_fail(&vs->err, ST_EINVAL, "vecstore_compact: max_moves is 0");
        if (vs->committed.rows == vs->committed.live)
                return 0;
        if ((rc = vecstore_begin(vs)) < 0)
                return rc;
        old_rows = p->rows;
        for (size_t turn = 0; turn < max_moves && p->rows > p->live; turn++) {
                uint32_t last = p->rows - 1;

                if (p->attrs[last].flags & FLAG_DELETED) {
                        rc = drop_dead_row(vs, last);
                } else {
                        /* A tombstone lies below the live last row, as rows > live. */
                        hole = next_hole(p, hole);
                        rc = hole < last ? move_row(vs, last, hole)
                                         : corrupt(vs, "live count against row flags", p->live);
                        lowest_moved = last;
                        n_moved++;
                }
                if (rc < 0)
                        goto out_abort;
                p->rows--;
        }
        if ((rc = shrink_blocks(vs, old_rows, lowest_moved)) < 0)
                goto out_abort;
        rc = vecstore_commit(vs, vs->committed.applied_seq);
        if (rc == 0)
                *moved = n_moved;
        return rc;
out_abort:
        vecstore_abort(vs); /* most failures have done it already */
        return rc;
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

        if (format != FORMAT_VERSION && format != FORMAT_NO_INT8)
                return st_fail(&vs->err, ST_EDB,
                               "%s: store format %llu; this build reads format %d and migrates "
                               "format %d",
                               dir, (unsigned long long)format, FORMAT_VERSION, FORMAT_NO_INT8);
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
                struct row_attr a;

                if (k.mv_size != 4 || get_be32(k.mv_data) != expect || expect >= s->rows)
                        break;
                if (v.mv_size <= ROW_HEADER || p[0] >= VECSTORE_BASE_COUNT)
                        break;
                a.base = p[0];
                a.flags = p[1];
                set_attr(s, expect, a);
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
        if (!rc)
                rc = mdb_dbi_open(txn, "blocks_i8", MDB_CREATE, &vs->blocks_i8);
        return rc ? db_fail(vs, rc, "open databases") : 0;
}

/* Format 1 to 2: encode every float32 block into "blocks_i8", then set "format". */
static int migrate(struct vecstore *vs, MDB_txn *txn)
{
        uint32_t blocks = block_count(vs->committed.rows);
        int rc;

        for (uint32_t b = 0; b < blocks; b++) {
                unsigned char key[4];
                MDB_val k = {4, key}, out = {vs->i8_block_bytes, NULL}, v;

                put_be32(key, b);
                rc = mdb_put(txn, vs->blocks_i8, &k, &out, MDB_RESERVE);
                if (rc)
                        return db_fail(vs, rc, "migrate to format 2: write int8 block");
                rc = mdb_get(txn, vs->blocks, &k, &v);
                if (rc == MDB_NOTFOUND)
                        return corrupt(vs, "missing block", b);
                if (rc)
                        return db_fail(vs, rc, "migrate to format 2: read vector block");
                if (v.mv_size != vs->block_bytes || (uintptr_t)v.mv_data % alignof(float))
                        return corrupt(vs, "block size or alignment", v.mv_size);
                encode_block(vs, v.mv_data, out.mv_data);
        }
        rc = put_meta_u(vs, txn, "format", FORMAT_VERSION, 4);
        return rc ? db_fail(vs, rc, "migrate to format 2: write format") : 0;
}

/*
 * Open the databases, then create "meta" or check it (migrating format 1),
 * in one write transaction.
 */
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
                if (rc == 0 && format == FORMAT_NO_INT8)
                        rc = migrate(vs, txn);
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
        rc = mdb_env_set_maxdbs(vs->env, 6);
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

static void scratch_release(struct scratch *x)
{
        free(x->scores);
        free(x->slots);
        free(x->spare);
        free(x->keys);
        free(x->dots);
        free(x->ranked);
        free(x->blocks);
        free(x->floats);
        free(x->codes);
        free(x->scales);
        free(x->sums);
        free(x->shares);
}

/* The fixed-size search buffers; the others grow in scratch_reserve(). */
static int scratch_init(struct scratch *x, size_t code_dim)
{
        x->ranked = malloc(BATCH_QUERIES * 2 * VECSTORE_MAX_K * sizeof(*x->ranked));
        x->codes = malloc(BATCH_QUERIES * code_dim);
        x->scales = malloc(BATCH_QUERIES * sizeof(*x->scales));
        x->sums = malloc(BATCH_QUERIES * sizeof(*x->sums));
        x->shares = calloc(VECSTORE_MAX_THREADS, sizeof(*x->shares));
        return x->ranked && x->codes && x->scales && x->sums && x->shares ? 0 : ST_ENOMEM;
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
        scratch_release(&vs->scratch);
        free(vs);
        *vsp = NULL;
}

int vecstore_open_sized(const char *dir, int dim, const char *model, size_t map_size,
                        struct vecstore **out, struct st_error *err)
{
        struct vecstore *vs;
        int threads, rc;

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
        vs->code_dim = scan_code_dim(dim);
        vs->i8_block_bytes = (size_t)VECSTORE_BLOCK_ROWS * (sizeof(float) + vs->code_dim);
        vs->max_dirty = DIRTY_BYTES_MAX / vs->block_bytes;
        if (vs->max_dirty == 0)
                vs->max_dirty = 1;
        vs->scan = VECSTORE_SCAN_INT8;
        vs->kernel = scan_kernel_best();
        threads = openblas_get_num_threads();
        vs->threads = threads < 1                      ? 1
                      : threads > VECSTORE_MAX_THREADS ? VECSTORE_MAX_THREADS
                                                       : threads;
        vs->dirty = calloc(vs->max_dirty, sizeof(*vs->dirty));
        if (!vs->dirty || scratch_init(&vs->scratch, vs->code_dim) < 0) {
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
