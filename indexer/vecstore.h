/*
 * vecstore.h - a shard's vector store: the embedding of every doc the shard
 * owns, its base model and NSFW flag for filtering, and the opaque metadata
 * blob (the msgpack StylusDoc) returned with each hit.  One store is one LMDB
 * environment in its own directory; one shard server process opens one.
 * The on-disk layout is the table at the top of vecstore.c; docs/search.md
 * has the search modes and their measured speed and recall.
 *
 * Rows: every doc id gets a row number, which stays the same until a
 * compaction (below) renumbers rows.  Vectors live in blocks of
 * VECSTORE_BLOCK_ROWS rows, each block one contiguous LMDB value that search
 * reads in place through the memory map (no copy).  Every block is stored
 * twice: float32, and int8 codes with one scale per row (a quarter of the
 * bytes), kept in sync by every commit.  Scores are inner products, so put
 * unit vectors to get cosine.
 *
 * Search modes (vecstore_set_scan()):
 *   VECSTORE_SCAN_INT8   (default) scan the int8 codes, keep the best
 *                        4k + 64 rows by int8 score, re-rank those by their
 *                        float32 inner product.  Returned scores are exact;
 *                        a true top-k row is missed only when its int8 score
 *                        ranks below 4k + 64 others (recall@150 against
 *                        exact measured 0.9996 to 1.0 on random and
 *                        catalog-shaped vectors up to 1M rows:
 *                        docs/search.md).
 *   VECSTORE_SCAN_EXACT  float32 inner product with every row: OpenBLAS
 *                        sgemv for one query, sgemm for a batch.
 * Filters (base model, NSFW, blocked rows) are bitmaps applied during the
 * scan, in both modes, so a filtered search still returns up to k hits.
 *
 * Writes come in batches: vecstore_begin(), any number of vecstore_put() and
 * vecstore_delete(), then vecstore_commit() with the changelog sequence the
 * batch brings the store up to.  A batch is one LMDB write transaction, so a
 * crash keeps either all of it, applied sequence included, or none of it.
 * Searches while a batch is open see the last committed batch.  A commit
 * rewrites every block the batch touched (VECSTORE_BLOCK_ROWS * dim * 5
 * bytes: 7.5 MiB at dim 384), so apply a changelog in batches of many docs,
 * not one commit per doc.
 *
 * Deletes are tombstones: the row keeps its number, its vector is zeroed and
 * search skips it; if the id is put again it gets the same row back, unless
 * a compaction has reclaimed the row in between.
 *
 * Compaction (vecstore_compact()) reclaims tombstones in steps the caller
 * bounds: each step is one write transaction that moves live rows from the
 * end of the store into the lowest tombstoned rows and drops the dead rows
 * left at the end, so the row count and the blocks shrink.  A reclaimed
 * tombstone's id is forgotten: if it is put again it gets a new row.  A
 * moved doc keeps its id, vector, base model, NSFW flag and metadata, so
 * searches return the same ids and scores after a step as before it; only
 * row numbers change.  Row numbers (hits' rows, blocked lists from
 * vecstore_rows_of_ids()) are therefore valid until the next compaction
 * step: recompute them after one.  A step rewrites the blocks it moves rows
 * into (like a commit), so cost grows with max_moves; docs/search.md has
 * the measured cost.
 *
 * Formats: this build writes format 2.  vecstore_open() migrates a format 1
 * store (no int8 blocks) in place, in one write transaction, by encoding its
 * float32 blocks; other formats are ST_EDB with both numbers in the message.
 *
 * Errors: 0 or a negative ST_E* code (proto/errors.h); vecstore_last_error()
 * has the message of the last failure on a store.
 *   ST_EINVAL  bad argument, or call out of order (put with no batch open,
 *              begin with one open).  The store and any open batch are
 *              unchanged.
 *   ST_EDIM    vecstore_open(): the directory holds another dim or model.
 *   ST_EAGAIN  the memory map filled up.  The map has been grown and the
 *              batch discarded: begin again and replay it.
 *   ST_ETOOBIG the batch touched more pages than one LMDB transaction may
 *              hold (it was discarded): commit smaller batches; or a store
 *              reached 2^32 rows.
 *   ST_EDB     LMDB failed, or the files break an invariant of the format,
 *              or they are of a format this build does not read.
 *   ST_ENOMEM  out of memory.
 *   ST_ENOTFOUND  vecstore_get_meta(): no live doc with that id.
 * Any error from put, delete or commit other than ST_EINVAL discards the
 * whole batch (an LMDB write transaction cannot go on after a failure).
 * vecstore_compact() errors likewise discard the whole step: the store is
 * as before it.
 *
 * Thread rules: a store has one owner thread, which makes every call (the
 * shard server is single-threaded).  It may be handed to another thread
 * between calls while no batch is open.  Do not open the same directory
 * twice in one process (an LMDB rule); other processes may read it.  An int8
 * search may run helper threads (vecstore_set_threads()); they only read the
 * mapped blocks, write their own scratch, and end before the call returns.
 */
#ifndef STYLUS_VECSTORE_H
#define STYLUS_VECSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define VECSTORE_BLOCK_ROWS  4096            /* rows per vector block */
#define VECSTORE_MAX_K       1000            /* most hits one search returns */
#define VECSTORE_MAX_ID      256             /* bytes of a doc id, NUL included */
#define VECSTORE_MAX_DIM     4096            /* floats per vector */
#define VECSTORE_MAX_MODEL   64              /* bytes of a model name, NUL included */
#define VECSTORE_MAX_META    ST_LIMIT_RECORD /* bytes of one metadata blob */
#define VECSTORE_MAP_SIZE    (64ULL << 30)   /* address space reserved at open */
#define VECSTORE_MAX_THREADS 64              /* helper threads one search may use */

/*
 * Base model codes, stored per row and used in filters (bit 1u << code).
 *   code  normalized name
 *   0     sd15
 *   1     sd21
 *   2     sdxl
 *   3     pony
 *   4     illustrious
 *   5     noobai
 *   6     flux1
 *   7     sd3
 *   8     other
 * Codes are on disk: append new ones, never renumber.
 */
enum vecstore_base {
        VECSTORE_BASE_SD15,
        VECSTORE_BASE_SD21,
        VECSTORE_BASE_SDXL,
        VECSTORE_BASE_PONY,
        VECSTORE_BASE_ILLUSTRIOUS,
        VECSTORE_BASE_NOOBAI,
        VECSTORE_BASE_FLUX1,
        VECSTORE_BASE_SD3,
        VECSTORE_BASE_OTHER,
        VECSTORE_BASE_COUNT
};

/* Code of a normalized base model name (table above); NULL or unknown names give "other". */
int vecstore_base_code(const char *normalized);

struct vecstore;

/* Which rows a search may return. */
struct vecstore_filter {
        uint32_t base_models;    /* bit (1u << code) per allowed base model; 0 allows all */
        bool allow_nsfw;         /* false skips rows put with nsfw */
        const uint32_t *blocked; /* rows never returned, ascending (vecstore_rows_of_ids()) */
        size_t n_blocked;        /* entries in blocked (0: blocked may be NULL) */
};

/* How a search scores rows (see the top of this file). */
enum vecstore_scan {
        VECSTORE_SCAN_INT8,  /* int8 codes, best 4k + 64 re-ranked in float32 (default) */
        VECSTORE_SCAN_EXACT, /* float32 inner product with every row */
};

struct vecstore_hit {
        float score;              /* inner product of the query and the row */
        uint32_t row;             /* row number, stable until the next compaction step */
        char id[VECSTORE_MAX_ID]; /* doc id, NUL-terminated copy */
};

/*
 * Open the store in directory dir (created if missing, its parent must
 * exist), or create an empty one, for vectors of dim floats made by model
 * (e.g. embedder.model).  A store created with another dim or model gives
 * ST_EDIM with both named in err.  On success *out is yours; release it with
 * vecstore_close().  err may be NULL.
 */
int vecstore_open(const char *dir, int dim, const char *model, struct vecstore **out,
                  struct st_error *err);

/* The same with the initial map size in bytes (small machines, tests); it grows on demand. */
int vecstore_open_sized(const char *dir, int dim, const char *model, size_t map_size,
                        struct vecstore **out, struct st_error *err);

/* Abort any open batch, close the store, set *vs to NULL.  NULL or *vs NULL is fine. */
void vecstore_close(struct vecstore **vs);

/* Start a batch (one LMDB write transaction). */
int vecstore_begin(struct vecstore *vs);

/*
 * Insert or replace doc id: its vector (dim floats, finite), base model code,
 * NSFW flag and metadata blob (meta_len bytes, copied; at most
 * VECSTORE_MAX_META).  A replaced doc keeps its row.
 */
int vecstore_put(struct vecstore *vs, const char *id, const float *vec, int base_model_code,
                 bool nsfw, const void *meta, size_t meta_len);

/* Tombstone doc id; an id that is absent or already deleted is fine. */
int vecstore_delete(struct vecstore *vs, const char *id);

/*
 * Make the batch durable, recording applied_seq (the changelog sequence the
 * store is now up to; it may not go below the stored one: ST_EINVAL, batch
 * still open).  After any other result no batch is open.
 */
int vecstore_commit(struct vecstore *vs, uint64_t applied_seq);

/* Discard the open batch, if any. */
void vecstore_abort(struct vecstore *vs);

/* Changelog sequence of the last committed batch (0 for a new store). */
uint64_t vecstore_applied_seq(const struct vecstore *vs);

/* Live (not deleted) docs as of the last committed batch. */
size_t vecstore_count(const struct vecstore *vs);

/*
 * Tombstoned rows as of the last commit or compaction step, i.e. rows that
 * vecstore_compact() can still reclaim.  No I/O.
 */
size_t vecstore_dead(const struct vecstore *vs);

/*
 * One compaction step, with no batch open (else ST_EINVAL), in one LMDB
 * write transaction: reclaims up to max_moves rows (> 0, else ST_EINVAL)
 * from the end of the store.  A live last row moves into the lowest
 * tombstoned row, whose id is forgotten; a tombstoned last row is dropped
 * with its id.  Each counts one against max_moves, so a step does bounded
 * work; *moved is set to the rows moved (0 on error).  Call it until
 * vecstore_dead() is 0: every successful step reclaims
 * min(max_moves, vecstore_dead()) rows, and a store without tombstones is
 * left alone (no transaction, *moved 0).  The applied sequence is kept.
 * Row numbers change: see "Compaction" at the top.  Errors: ST_EAGAIN
 * (map grown; call again), ST_ETOOBIG (use a smaller max_moves), ST_EDB,
 * ST_ENOMEM; after any error the store is as it was before the call.
 */
int vecstore_compact(struct vecstore *vs, size_t max_moves, size_t *moved);

/*
 * The k best live rows for query q (dim floats, finite) by inner product,
 * among the rows filter f allows (f NULL allows all).  hits has room for k
 * (k <= VECSTORE_MAX_K, else ST_EINVAL); *n_hits is set to the number found
 * (< k when fewer rows qualify).  Hits are sorted by score, best first; equal
 * scores by row.  Sees the last committed batch.  ST_EINVAL also for a
 * non-finite query or blocked rows out of order.
 */
int vecstore_search(struct vecstore *vs, const float *q, size_t k, const struct vecstore_filter *f,
                    struct vecstore_hit *hits, size_t *n_hits);

/*
 * The same for nq queries at once (queries: nq * dim floats, query i at
 * i * dim), all with the same k and filter, in one pass over the blocks: an
 * sgemm, or one int8 pass, per VECSTORE_BLOCK_ROWS rows and 32 queries.
 * hits has room for nq * k; the hits of query i are hits[i * k ...],
 * n_hits[i] of them (n_hits has room for nq; all 0 after an error).  Each
 * query gets what vecstore_search() gives it: the same rows; in exact mode
 * scores may differ in the last bits (sgemm and sgemv round differently).
 * Errors as vecstore_search(), and ST_EINVAL for queries NULL with nq > 0.
 */
int vecstore_search_batch(struct vecstore *vs, const float *queries, size_t nq, size_t k,
                          const struct vecstore_filter *f, struct vecstore_hit *hits,
                          size_t *n_hits);

/* Choose how searches score rows; takes effect at the next search. */
void vecstore_set_scan(struct vecstore *vs, enum vecstore_scan scan);

/*
 * Threads an int8 search may use, the caller's included (1..VECSTORE_MAX_THREADS,
 * else ST_EINVAL).  Default: OpenBLAS's thread count at open (OPENBLAS_NUM_THREADS,
 * else the cores), so one setting governs both modes.  The exact scan runs
 * in OpenBLAS, whose threads openblas_set_num_threads() sets for the process.
 */
int vecstore_set_threads(struct vecstore *vs, int threads);

/*
 * Rows of the ids that have one (live, or deleted and not yet reclaimed by
 * a compaction; other ids are skipped), ascending and without repeats, into
 * rows (room for n): the blocked list of a filter.  *n_rows is set to the
 * count.  Sees the last commit; the list stays valid until the next
 * compaction step, which renumbers rows: make it again after one.
 * ST_EINVAL for an empty or over-long id, ST_EDB if LMDB fails.
 */
int vecstore_rows_of_ids(struct vecstore *vs, const char *const *ids, size_t n, uint32_t *rows,
                         size_t *n_rows);

/*
 * Metadata blob of live doc id, copied into a (valid until arena_release):
 * *meta and *len.  ST_ENOTFOUND when the id is absent or deleted, ST_ENOMEM
 * when a is full.
 */
int vecstore_get_meta(struct vecstore *vs, const char *id, struct arena *a, void **meta,
                      size_t *len);

/* Message of the last failure on vs ("" if none); valid until the next call. */
const char *vecstore_last_error(const struct vecstore *vs);

#endif
