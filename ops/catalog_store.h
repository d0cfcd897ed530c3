/*
 * catalog_store.h - the catalog's LMDB store: raw records, docs, vectors,
 * per-stage job queues, dead letters, source cursors and the changelog.
 * The on-disk layout is the table at the top of catalog_store.c.
 *
 * The store is the only writer of its environment.  Every apply function is
 * one LMDB write transaction: it commits whole or not at all, so a crash at
 * any instant loses nothing accepted and half-applies nothing.  Applying a
 * result twice is harmless: a result whose job is no longer queued was
 * applied already and is ignored, and all writes are upserts keyed by id +
 * content hash.
 *
 * The catalog_pack_* functions need a packer writing to a msgpack_sbuffer.
 *
 * Thread rules: one thread owns a struct catalog.
 */
#ifndef STYLUS_CATALOG_STORE_H
#define STYLUS_CATALOG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/doc.h"
#include "proto/errors.h"

/* Stage numbers are stored in dead-letter keys: append, never renumber. */
enum catalog_stage { STAGE_CRAWL, STAGE_REFINE, STAGE_EMBED, STAGE_IMAGES, STAGE_COUNT };

struct catalog;

/* "crawl", "refine", "embed", "images"; catalog_stage_from_name gives STAGE_COUNT for others. */
const char *catalog_stage_name(enum catalog_stage s);
enum catalog_stage catalog_stage_from_name(const char *name);

/*
 * Open or create the store in directory dir (created if missing).  The map
 * starts at 1 GiB of address space (or map_size bytes with
 * catalog_open_sized) and doubles whenever a write finds it full: the write
 * is aborted, the map grown, the write run again.  Stale reader slots of
 * dead processes are cleared at open and by catalog_check_readers().
 */
int catalog_open(const char *dir, struct catalog **out, struct st_error *err);
int catalog_open_sized(const char *dir, size_t map_size, struct catalog **out,
                       struct st_error *err);

/*
 * Open an existing store for reading only, beside the running catalog (for
 * export and inspection): it never writes.  ST_ENOTFOUND when dir holds no
 * catalog.
 */
int catalog_open_readonly(const char *dir, struct catalog **out, struct st_error *err);

/*
 * Called with each doc's msgpack bytes and its vector record's msgpack bytes
 * (NULL, 0 when not embedded yet); both borrowed for the call.  A nonzero
 * return stops the walk and is returned.
 */
typedef int (*catalog_doc_fn)(void *ctx, const void *doc, size_t doc_len, const void *vector,
                              size_t vector_len);

/* Walk every doc in id order inside one read transaction (a consistent snapshot). */
int catalog_each_doc(struct catalog *c, catalog_doc_fn fn, void *ctx);

/*
 * Group commit: between catalog_batch_begin() and catalog_batch_commit(),
 * every write function runs in a nested transaction of one batch
 * transaction: each stays all-or-nothing on its own, and the batch reaches
 * the disk with one sync.  Nothing is durable before the commit returns 0;
 * a batch that fails (ST_EAGAIN when the map had to grow, ST_EDB) is dropped
 * whole, and the jobs whose results it held are still queued, so they run
 * again.  Readers see the batch only after it commits.
 */
int catalog_batch_begin(struct catalog *c, struct st_error *err);
int catalog_batch_commit(struct catalog *c, struct st_error *err);

/*
 * Put the dead letters of stage (or of every stage when stage < 0) back in
 * their queues under their own job ids; *n says how many.
 */
int catalog_requeue_dead(struct catalog *c, int stage, size_t *n, struct st_error *err);

/* Jobs of stage s waiting in the queue (leased ones included). */
size_t catalog_pending(struct catalog *c, enum catalog_stage s);

/*
 * One step of a re-refine sweep: walking docs in id order after `after` (a
 * NUL-terminated id, "" to start; updated in place), queue a refine job for
 * each doc whose refined_by is not `want` or that carries a refine_error
 * (the VLM failed and the card doc stands in), at most max per call.  The
 * old doc keeps serving until its new one arrives.  *done when the walk
 * reached the last doc.
 */
int catalog_requeue_stale(struct catalog *c, const char *want, char *after, size_t after_size,
                          size_t max, size_t *queued, bool *done, struct st_error *err);

/*
 * The same for embeddings: queue an embed job for each doc without a vector
 * made by `model` (the indexers' model name, e.g. stylus-hash-v1/384).  The
 * old vector keeps serving until the new one arrives; shards of the old
 * model ignore the new vectors, shards of the new model the old ones
 * (docs/embeddings.md: changing the model).
 */
int catalog_requeue_embed(struct catalog *c, const char *model, char *after, size_t after_size,
                          size_t max, size_t *queued, bool *done, struct st_error *err);

/* Clear reader slots left by processes that died; returns how many. */
int catalog_check_readers(struct catalog *c);

/* Close and NULL *c. */
void catalog_close(struct catalog **c);

/*
 * Make sure source is being crawled: if it has no pending crawl job and its
 * pass is not done, queue one from its saved cursor.  With restart, a done
 * source starts a new pass from the beginning: incremental (newest first,
 * ends where the source has nothing new) or full (every page; when it ends,
 * the records it did not list are checked, and those the source no longer
 * has are tombstoned).
 */
int catalog_start_source(struct catalog *c, const char *source, bool restart, bool incremental,
                         struct st_error *err);

struct catalog_crawl_counts {
        size_t added;      /* new ids */
        size_t changed;    /* known ids whose content hash changed */
        size_t unchanged;  /* same content hash: no work queued */
        size_t rejected;   /* records that failed validation */
        size_t gone;       /* ids the source answered 404/410 for: tombstoned */
        size_t checks;     /* ids queued for a check with the source */
        size_t duplicates; /* records found to be re-uploads of another (never indexed) */
};

/*
 * Apply the RESULT payload of crawl job job_id ({source, records,
 * next_cursor, and optionally unchanged [ids], gone [ids], stop}): store new
 * and changed records and queue their next stage, mark listed ids seen,
 * tombstone gone ids, save the cursor, queue the next page or end the pass
 * (stop ends an incremental pass early), delete the job.  A check job (one
 * with check: [ids]) moves no cursor.
 */
int catalog_apply_crawl(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                        struct catalog_crawl_counts *counts, struct st_error *err);

/*
 * Apply a refine RESULT ({doc}): the doc is stored and an embed job queued
 * only when its content_hash is the record's current one (a stale result of
 * an older record version is dropped).  Deletes the job.
 */
int catalog_apply_doc(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                      struct st_error *err);

/*
 * Apply an embed RESULT ({id, content_hash, model, dim, vector}): store the
 * vector, append a "put" to the changelog, delete the job.  Stale results
 * are dropped as above.
 */
int catalog_apply_vector(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                         struct st_error *err);

/* Move a job that keeps failing to the dead-letter list with its last error. */
int catalog_bury_job(struct catalog *c, enum catalog_stage s, uint64_t job_id, const char *why,
                     struct st_error *err);

/* Asks whether a job is busy (leased or backing off); ctx is the caller's. */
typedef bool (*catalog_job_busy)(void *ctx, enum catalog_stage s, uint64_t job_id);

/*
 * Find the oldest job of stage s that busy() does not reject and pack the
 * JOB body for it into pk: {job_id, stage, payload} with the record (refine)
 * or doc (embed) the job needs.  ST_ENOTFOUND when no job is free.  pk's
 * sbuffer must be empty on entry (a job whose item is gone is skipped by
 * rewinding it).
 */
int catalog_pack_next_job(struct catalog *c, enum catalog_stage s, catalog_job_busy busy, void *ctx,
                          msgpack_packer *pk, uint64_t *job_id);

/* Pack the STATUS body (see proto/wire.h); leased[s] comes from the broker. */
int catalog_pack_status(struct catalog *c, const size_t leased[STAGE_COUNT], size_t workers,
                        msgpack_packer *pk);

/*
 * Pack the CHANGES body for a SYNC request: changelog entries after from_seq
 * that belong to shard `shard` of `shards`, scanning at most max entries.
 */
int catalog_pack_changes(struct catalog *c, uint64_t from_seq, size_t max, uint64_t shard,
                         uint64_t shards, msgpack_packer *pk);

/* Highest changelog sequence number (0 when empty). */
uint64_t catalog_head_seq(struct catalog *c);

/*
 * Pack the SNAPSHOT reply for a subscriber that must (re)build its copy
 * (proto/wire.h): the current doc and vector of every id after `after` ("" to
 * start) that belongs to shard of shards, as "put" entries, scanning at most
 * max ids; next is the id to continue after (nil when done); head_seq the
 * changelog head when this page was read.  A subscriber follows the
 * changelog from the head_seq of its first page once it has every page:
 * changes made while it copies come to it that way (zguide's Clone).
 */
int catalog_pack_snapshot(struct catalog *c, const char *after, size_t max, uint64_t shard,
                          uint64_t shards, msgpack_packer *pk);

/*
 * Record that subscriber `name` (a shard replica) has applied the changelog
 * up to seq; compaction keeps every entry after the lowest such seq.
 */
int catalog_note_subscriber(struct catalog *c, const char *name, uint64_t shard, uint64_t shards,
                            uint64_t seq, struct st_error *err);

/*
 * Compaction: forget subscribers silent for ttl seconds, then delete (at
 * most max) changelog entries that every remaining subscriber has applied;
 * with none registered, every entry goes.  The "low_seq" mark rises with
 * them: a SYNC from below it gets resnapshot (catalog_pack_changes()).
 */
int catalog_compact_changelog(struct catalog *c, uint64_t ttl, size_t max, size_t *deleted,
                              size_t *dropped, struct st_error *err);

/* Pack {low_seq, tombstones, subscribers {name: {seq, shard, shards, seen}}} for STATUS. */
int catalog_pack_subscribers(struct catalog *c, msgpack_packer *pk);

/*
 * The images stage: when on, a new or changed record with images gets an
 * images job before its refine job (default off: straight to refine).
 */
void catalog_set_images(struct catalog *c, bool on);

/*
 * Apply an images RESULT ({id, content_hash, images: [{url, sha256, bytes,
 * error}]}): the record's images get their sha256, its refine job is
 * queued, the job deleted; *stored counts the images that got a hash.
 */
int catalog_apply_images(struct catalog *c, uint64_t job_id, const msgpack_object *payload,
                         size_t *stored, struct st_error *err);

/*
 * Delete the queued jobs that catalog_pack_next_job() found referring to
 * a record or doc that is gone (tombstoned since they were queued).
 */
int catalog_drop_orphans(struct catalog *c, struct st_error *err);

#endif
