/*
 * wire.h - the ZeroMQ messages between stylus processes, and helpers to
 * send, receive and read them.
 *
 * Every message is a multipart ZeroMQ message:
 *
 *   frame  content             notes
 *   0      identity            only on a ROUTER socket (added/removed by ZeroMQ)
 *   1      "STY1"              protocol name and version; anything else is dropped
 *   2      command             one of the ASCII words below
 *   3      body                one msgpack map, or absent for bodyless commands
 *
 * Workers (crawler, refiner, indexer) hold a DEALER connected to the
 * catalog's ROUTER.  Shards hold a DEALER to the catalog for SYNC, and a
 * ROUTER of their own for QUERY.
 *
 * Worker <-> catalog (job broker)
 *   command    from     body keys (type)                 meaning
 *   READY      worker   stage (str), idle (bool)         one credit: send me one job of stage
 *   JOB        catalog  job_id (uint), stage (str),      a leased job; payload by stage:
 *                       payload (map)                      crawl  {source, cursor, pass
 *                                                                  ("incremental"; absent: full)}
 *                                                                 or {source, check: [ids]}: verify
 *                                                                  those ids with the source
 *                                                                 or {source, by_hash: [sha256]}:
 *                                                                  ask which version owns each file
 *                                                          images {record: raw_record}
 *                                                          refine {record: raw_record}
 *                                                          embed  {doc: st_doc}
 *   RESULT     worker   job_id, stage, ok (bool),        result of a job; payload when ok:
 *                       error (str, when !ok),             crawl  {source, records [raw_record],
 *                       payload (map, when ok)                     next_cursor (str|nil),
 *                                                                  skipped (uint), and optional
 *                                                                  unchanged [ids] (not rebuilt:
 *                                                                  a 304 or the same HF sha),
 *                                                                  gone [ids] (404/410: they are
 *                                                                  tombstoned), stop (bool: an
 *                                                                  incremental pass reached known
 *                                                                  ground and ends), canonical
 *                                                                  {sha256: id | nil} (by_hash)}
 *                                                          images {id, content_hash, images
 *                                                                  [{url, sha256 | error, bytes}]}
 *                                                          refine {doc: st_doc}
 *                                                          embed  {id, content_hash, model (str),
 *                                                                  dim (uint), vector (bin f32 LE)}
 *   HEARTBEAT  worker   stage (str), idle (bool),        liveness, every WIRE_HEARTBEAT_MS; a
 *                       job_id (uint, when busy)           busy worker's extends that job's lease
 *   NACK       worker   job_id, stage                    hand back a job not started (no failure)
 *   HEARTBEAT  catalog  (none)                           liveness, every WIRE_HEARTBEAT_MS
 *
 * Anyone <-> catalog
 *   STATUS     client   (none)                               ask for counters
 *   STATUS     catalog  records, docs, vectors, dead,        counters (uint) and jobs per stage:
 *                       head_seq, workers, sources {name:    jobs {stage: {pending, leased}};
 *                       {cursor, done, kind, pages,          dead_letters: the first 20;
 *                       passes}}, jobs, dead_letters         changelog {low_seq, tombstones,
 *                       [{stage, job_id, error}], changelog  subscribers {name: {seq, shard,
 *                                                            shards, seen (unix s)}}}
 *   REQUEUE    client   stage (str, optional)                dead letters back in their queues
 *   REQUEUED   catalog  requeued (uint) or error (str)       how many went back
 *   SYNC       shard    from_seq (uint), max (uint),         changelog entries after from_seq that
 *                       shard (uint), shards (uint),         belong to shard (hash(id) mod shards);
 *                       subscriber (str, optional)           a named subscriber's from_seq is kept:
 *                                                            compaction spares what it still needs
 *   CHANGES    catalog  entries [{seq, op ("put"|"del"), id,  at most max scanned; doc (bin msgpack
 *                       doc (bin), vector (bin), model}],    st_doc), vector, model only for "put"
 *                       last_seq (uint), head_seq (uint),    last_seq: last entry scanned;
 *                       resnapshot (bool), low_seq (uint)    resnapshot: entries after from_seq
 *                                                            were compacted (up to low_seq): take
 *                                                            a snapshot, then follow from its head
 *   SNAPSHOT   shard    after (str, "" first), max, shard,   current docs of the shard by id, as
 *                       shards, subscriber (optional)        "put" entries after id `after`
 *   SNAPSHOT   catalog  entries [put entries as in CHANGES], at most max ids scanned; next: the
 *                       next (str|nil), head_seq (uint)      `after` of the next page, nil at the
 *                                                            end; follow the changelog from the
 *                                                            head_seq of the first page
 *
 * Query node <-> shard
 *   QUERY      query    req_id (uint), model (str),          top-k by inner product; base_model
 *                       vector (bin f32 LE), k (uint),       (str, optional), allow_nsfw and
 *                       base_model, allow_nsfw (bool),       blocked ids filter the rows
 *                       blocked ([str], optional)
 *   HITS       shard    req_id, ok (bool), error (str),      hits best first; doc is the stored
 *                       hits [{id, score (float), doc (bin)}] msgpack st_doc
 *   STATUS     shard    count, applied_seq, head_seq,        (reply of a shard to STATUS); batched:
 *                       queries, batched, model, shard [I,N] queries answered in sgemm batches
 *   DOC        query    req_id (uint), id (str)              one doc by id
 *   DOC        shard    req_id, ok (bool), error (str, when  found: this shard holds the doc; doc
 *                       !ok), found (bool), doc (bin, when   is the stored msgpack st_doc
 *                       found)
 *
 * Limits: a frame is at most WIRE_MAX_FRAME bytes (ZMQ_MAXMSGSIZE); larger
 * messages make ZeroMQ drop the peer's connection.  Malformed messages are
 * dropped with a logged warning; they never stop a process.
 */
#ifndef STYLUS_WIRE_H
#define STYLUS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "proto/arena.h"
#include "proto/errors.h"
#include "proto/security.h"

#define WIRE_PROTOCOL     "STY1"
#define WIRE_MAX_FRAME    (64 << 20)
#define WIRE_MAX_IDENTITY 255
#define WIRE_HEARTBEAT_MS 1000
#define WIRE_LIVENESS     3 /* missed heartbeats before a peer counts as dead */

/*
 * A received message.  body is decoded from the body frame, whose bytes its
 * strings point into; both live until wire_msg_release().
 */
struct wire_msg {
        unsigned char identity[WIRE_MAX_IDENTITY];
        size_t identity_len; /* 0 on non-ROUTER sockets */
        char command[16];
        msgpack_unpacked body; /* body.data.type == MSGPACK_OBJECT_NIL when absent */
        bool has_body;
        char *frame; /* the body frame's bytes (malloc'd) */
};

/* Create a socket of type (ZMQ_ROUTER, ZMQ_DEALER ...) with linger 0 and frame limits. */
void *wire_socket(void *ctx, int type);

/*
 * Send command with an optional body (body NULL: no body frame).  identity
 * is needed on ROUTER sockets and must be NULL otherwise.  Non-blocking on
 * ROUTER (an unroutable or full peer drops the message), blocking otherwise.
 */
int wire_send(void *sock, const unsigned char *identity, size_t identity_len, const char *command,
              const char *body, size_t body_len);

/*
 * Receive one message; router says whether sock is a ROUTER (identity frame
 * first).  Returns 0, ST_EAGAIN when nothing is waiting (flags ZMQ_DONTWAIT),
 * ST_EPROTO for a malformed message (already drained), ST_EIO otherwise.
 */
int wire_recv(void *sock, bool router, int flags, struct wire_msg *m);

void wire_msg_release(struct wire_msg *m);

/* Wait up to timeout_ms for sock to become readable: 1 readable, 0 not, <0 error. */
int wire_wait(void *sock, long timeout_ms);

/*
 * One request and its reply over a fresh DEALER: connect to endpoint (with
 * the CURVE keys of sec, which may be NULL: proto/security.h), send command
 * with body (may be NULL), wait up to timeout_ms.  ST_ETIMEOUT when no reply
 * came; ST_EINVAL for a bad endpoint or missing keys.  Release *reply with
 * wire_msg_release().
 */
int wire_request(void *ctx, const struct security *sec, const char *endpoint, const char *command,
                 const char *body, size_t body_len, long timeout_ms, struct wire_msg *reply);

/*
 * A msgpack object as JSON text (malloc'd, caller frees): maps with str keys
 * become objects, bin becomes {"bin": <size>}.  NULL when out of memory.
 */
char *wire_to_json(const msgpack_object *o, int indent);

/* ---- reading msgpack maps; each returns NULL / an error when absent or mistyped ---- */

/* Value of key in map, or NULL (also when map is not a map). */
const msgpack_object *wire_get(const msgpack_object *map, const char *key);
int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out);
int wire_get_bool(const msgpack_object *map, const char *key, bool *out);
int wire_get_double(const msgpack_object *map, const char *key, double *out);
/* String copied into a (NUL-terminated, embedded NUL refused); ST_EMISSING if absent. */
int wire_get_str(const msgpack_object *map, const char *key, struct arena *a, char **out);
/* Borrowed pointer into the message for bin or str values. */
int wire_get_bytes(const msgpack_object *map, const char *key, const char **ptr, size_t *len);

/* ---- building bodies ---- */

/* Pack a str key followed by the value (helpers for map bodies). */
void wire_pack_key(msgpack_packer *pk, const char *key);
void wire_pack_str(msgpack_packer *pk, const char *s); /* NULL packs nil */
void wire_pack_kv_str(msgpack_packer *pk, const char *key, const char *s);
void wire_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
void wire_pack_kv_bool(msgpack_packer *pk, const char *key, bool v);
void wire_pack_kv_bin(msgpack_packer *pk, const char *key, const void *p, size_t len);

/* Stable 64-bit hash of an id (FNV-1a); shard i owns ids with hash % n == i. */
uint64_t wire_id_hash(const char *id);

/* Milliseconds of a monotonic clock. */
int64_t wire_now_ms(void);

#endif
