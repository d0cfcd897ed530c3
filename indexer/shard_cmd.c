/*
 * shard_cmd.c - `stylus shard I/N`: a shard server.  It owns the docs whose
 * wire_id_hash(id) mod N == I, keeps their vectors in its own LMDB
 * (indexer/vecstore.h), follows the catalog's changelog with SYNC requests
 * from its last applied sequence, and answers QUERY on its ROUTER socket
 * (proto/wire.h).  Any number of replicas may serve the same I/N; each has
 * its own --data and subscriber name (--name), under which the catalog
 * keeps its position so compaction never drops entries it still needs.
 *
 * Snapshots (zguide's Clone): when the catalog answers a SYNC with
 * resnapshot (the entries after our position were compacted away: a new
 * replica, or one that was gone longer than the catalog's subscriber TTL),
 * the shard empties its store and copies every current doc of its share
 * with SNAPSHOT requests, page by page (each page one batch committed at
 * applied seq 0, so a crash in the middle starts the snapshot over), then
 * follows the changelog from the head_seq of the first page.  While it
 * copies it does not answer QUERY: query nodes fail over to a replica.
 *
 * Deletes leave tombstones; when they are a tenth of the rows or more, the
 * shard compacts the store a step at a time (vecstore_compact(), up to
 * COMPACT_MOVES rows a step) in loops where no query waits.
 *
 * Queries are batched without waiting: each loop drains every QUERY already
 * queued on the ROUTER (up to QUERY_BATCH_MAX), groups those with the same k
 * and filter (base model, NSFW, blocked ids) and answers each group with one
 * vecstore_search_batch() (one sgemm or one int8 pass over the blocks for up
 * to 32 queries); a query alone in its group takes vecstore_search() at once,
 * so a lone query waits for nothing.  Every query gets its own HITS reply.
 *
 * QUERY may carry "blocked" (array of doc ids never to return); a shard
 * turns them into rows with vecstore_rows_of_ids().
 *
 * DOC asks for one doc by id (GET /v1/adapters/{id} of a query node, which
 * asks every shard): the reply says whether this shard holds it.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "indexer/vecstore.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/doc.h"
#include "proto/embed.h"
#include "proto/log.h"
#include "proto/security.h"
#include "proto/wire.h"

#define SYNC_BATCH      1000
#define SYNC_IDLE_MS    500  /* pause between polls once caught up */
#define SYNC_TIMEOUT_MS 5000 /* resend a SYNC that got no answer */
#define COMPACT_MOVES   1024 /* rows one compaction step may move (about 50 ms at dim 384) */

#define QUERY_BATCH_MAX   64                 /* QUERY messages drained per loop */
#define QUERY_MAX_BLOCKED 4096               /* blocked ids one QUERY may carry */
#define BATCH_ARENA       ((size_t)96 << 20) /* parsed queries and hits of one batch */
#define REPLY_ARENA       ((size_t)64 << 20) /* metadata of one reply */

struct shard {
        struct vecstore *vs;
        struct embedder embedder;             /* for the model name and dim only */
        uint64_t index, count;                /* I and N */
        const char *data;                     /* store directory */
        char name[512];                       /* subscriber name towards the catalog */
        bool snapshotting;                    /* copying a snapshot: SNAPSHOT pages, no queries */
        char snap_after[ST_LIMIT_STRING + 1]; /* last id copied */
        uint64_t snap_seq;                    /* head_seq of the first page */
        bool snap_started;                    /* the first page came (snap_seq is set) */
        uint64_t dropped;                     /* queries not answered while snapshotting */
        uint64_t compacted;                   /* rows reclaimed by compaction */
        uint64_t other_model;                 /* changelog vectors of another model, skipped */
        void *catalog;                        /* DEALER to the catalog */
        void *router;                         /* ROUTER for queries */
        bool sync_pending;
        int64_t sync_sent, next_sync;
        uint64_t head_seq;     /* catalog head as last heard */
        uint64_t queries;      /* answered */
        uint64_t batched;      /* of those, answered in a batch of two or more */
        struct query *waiting; /* QUERY_BATCH_MAX drained messages */
};

/* A drained QUERY, parsed, waiting for its answer. */
struct query {
        struct wire_msg msg; /* held until answered: its identity addresses the reply */
        uint64_t req_id;
        size_t k;
        struct vecstore_filter filter;
        const float *vector; /* dim floats, in the batch arena */
        bool answered;
};

static void send_sync(struct shard *s)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        const char *command = s->snapshotting ? "SNAPSHOT" : "SYNC";

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4 + (*s->name != '\0'));
        if (s->snapshotting)
                wire_pack_kv_str(&pk, "after", s->snap_after);
        else
                wire_pack_kv_u64(&pk, "from_seq", vecstore_applied_seq(s->vs));
        wire_pack_kv_u64(&pk, "max", SYNC_BATCH);
        wire_pack_kv_u64(&pk, "shard", s->index);
        wire_pack_kv_u64(&pk, "shards", s->count);
        if (*s->name)
                wire_pack_kv_str(&pk, "subscriber", s->name);
        if (wire_send(s->catalog, NULL, 0, command, sb.data, sb.size) == 0) {
                s->sync_pending = true;
                s->sync_sent = wire_now_ms();
        }
        msgpack_sbuffer_destroy(&sb);
}

/* Apply one changelog entry to the open batch; bad entries are skipped. */
static int apply_entry(struct shard *s, const msgpack_object *e, struct arena *a)
{
        struct st_doc d;
        char *op = NULL, *id = NULL, *model = NULL;
        const char *doc, *vec;
        size_t doc_len, vec_len;

        if (wire_get_str(e, "op", a, &op) || wire_get_str(e, "id", a, &id))
                return ST_EPROTO;
        if (strcmp(op, "put"))
                return vecstore_delete(s->vs, id);
        if (wire_get_bytes(e, "doc", &doc, &doc_len) || wire_get_bytes(e, "vector", &vec, &vec_len))
                return ST_EPROTO;
        if (wire_get_str(e, "model", a, &model) || strcmp(model, s->embedder.model)) {
                /* Another model (the catalog is re-embedding): the shards of that model take it. */
                if (s->other_model++ % 1000 == 0)
                        log_warn("%s: vector of model %s skipped; this shard serves %s (%llu so "
                                 "far)",
                                 id, model ? model : "?", s->embedder.model,
                                 (unsigned long long)s->other_model);
                return 0;
        }
        if (vec_len != (size_t)s->embedder.dim * sizeof(float)) {
                log_error("%s: vector of %zu bytes; this shard serves %s with dim %d", id, vec_len,
                          s->embedder.model, s->embedder.dim);
                return ST_EDIM;
        }
        if (st_doc_from_msgpack(doc, doc_len, a, &d, NULL))
                return ST_EPROTO;
        /* vec may be unaligned inside the message: copy before use. */
        {
                float *v = arena_alloc(a, vec_len);

                if (!v)
                        return ST_ENOMEM;
                memcpy(v, vec, vec_len);
                return vecstore_put(s->vs, id, v, vecstore_base_code(d.base_model), d.nsfw, doc,
                                    doc_len);
        }
}

/*
 * Empty the store for a snapshot: close it, remove its files, open it anew.
 * A crash in between leaves no store or an empty one: both start over.
 */
static int wipe_store(struct shard *s)
{
        struct st_error err = {0};
        char path[PATH_MAX];
        static const char *const files[] = {"data.mdb", "lock.mdb"};

        vecstore_close(&s->vs);
        for (size_t i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", s->data, files[i]);
                if (unlink(path) && errno != ENOENT) {
                        log_error("cannot remove %s for a snapshot: %s", path, strerror(errno));
                        return ST_EIO;
                }
        }
        if (vecstore_open(s->data, s->embedder.dim, s->embedder.model, &s->vs, &err)) {
                log_error("%s", st_error_text(&err, err.code));
                return err.code ? err.code : ST_EDB;
        }
        return 0;
}

/* Apply entries (put/del) to the store in one batch committed at seq; counts puts. */
static int apply_entries(struct shard *s, const msgpack_object *entries, uint64_t after,
                         uint64_t seq, size_t *put)
{
        struct arena a;
        uint64_t eseq;
        int rc;

        *put = 0;
        arena_init(&a, (size_t)1 << 30);
        rc = vecstore_begin(s->vs);
        for (uint32_t i = 0; i < entries->via.array.size && !rc; i++) {
                const msgpack_object *e = &entries->via.array.ptr[i];
                int erc;

                if (wire_get_u64(e, "seq", &eseq) || (after && eseq <= after))
                        continue;
                erc = apply_entry(s, e, &a);
                if (erc == ST_EPROTO)
                        log_warn("skipped a malformed changelog entry %llu",
                                 (unsigned long long)eseq);
                else if (erc)
                        rc = erc;
                else
                        (*put)++;
        }
        if (!rc)
                rc = vecstore_commit(s->vs, seq);
        else
                vecstore_abort(s->vs);
        arena_release(&a);
        if (rc)
                log_error("cannot apply changes: %s (%s)", st_strerror(rc),
                          vecstore_last_error(s->vs));
        return rc;
}

static void start_snapshot(struct shard *s, uint64_t low)
{
        log_warn("the catalog compacted its changelog past our seq %llu (up to %llu): taking a "
                 "snapshot",
                 (unsigned long long)vecstore_applied_seq(s->vs), (unsigned long long)low);
        if (wipe_store(s)) {
                s->next_sync = wire_now_ms() + SYNC_TIMEOUT_MS;
                return;
        }
        s->snapshotting = true;
        s->snap_after[0] = '\0';
        s->snap_started = false;
        s->next_sync = 0;
}

static void on_snapshot(struct shard *s, const msgpack_object *body)
{
        const msgpack_object *entries = wire_get(body, "entries");
        const msgpack_object *next = wire_get(body, "next");
        uint64_t head = 0;
        size_t put = 0;
        bool last;

        s->sync_pending = false;
        if (!s->snapshotting || !entries || entries->type != MSGPACK_OBJECT_ARRAY || !next ||
            (next->type != MSGPACK_OBJECT_NIL &&
             (next->type != MSGPACK_OBJECT_STR || next->via.str.size > ST_LIMIT_STRING)) ||
            wire_get_u64(body, "head_seq", &head))
                return;
        if (!s->snap_started) {
                s->snap_seq = head;
                s->snap_started = true;
        }
        last = next->type == MSGPACK_OBJECT_NIL;
        /* Pages commit at seq 0 (a crash starts over); the last one at the first page's head. */
        if (apply_entries(s, entries, 0, last ? s->snap_seq : 0, &put)) {
                s->next_sync = wire_now_ms() + SYNC_TIMEOUT_MS;
                return;
        }
        if (last) {
                s->snapshotting = false;
                log_info("snapshot done: %zu docs, following the changelog from seq %llu",
                         vecstore_count(s->vs), (unsigned long long)s->snap_seq);
        } else {
                memcpy(s->snap_after, next->via.str.ptr, next->via.str.size);
                s->snap_after[next->via.str.size] = '\0';
        }
        s->next_sync = 0;
}

static void on_changes(struct shard *s, const msgpack_object *body)
{
        const msgpack_object *entries = wire_get(body, "entries");
        uint64_t last = 0, applied = vecstore_applied_seq(s->vs), low = 0;
        size_t put = 0;
        bool resnapshot = false;

        s->sync_pending = false;
        if (s->snapshotting || !entries || entries->type != MSGPACK_OBJECT_ARRAY ||
            wire_get_u64(body, "last_seq", &last))
                return;
        wire_get_u64(body, "head_seq", &s->head_seq);
        if (!wire_get_bool(body, "resnapshot", &resnapshot) && resnapshot) {
                wire_get_u64(body, "low_seq", &low);
                start_snapshot(s, low);
                return;
        }
        if (last <= applied) {
                s->next_sync = wire_now_ms() + SYNC_IDLE_MS;
                return; /* nothing new, or an answer to an older SYNC */
        }
        if (apply_entries(s, entries, applied, last, &put)) {
                s->next_sync = wire_now_ms() + SYNC_TIMEOUT_MS;
                return;
        }
        if (put)
                log_info("applied %zu changes up to seq %llu (%zu docs)", put,
                         (unsigned long long)last, vecstore_count(s->vs));
        /* Behind the head: ask again at once; caught up: poll at leisure. */
        s->next_sync = wire_now_ms() + (last < s->head_seq ? 0 : SYNC_IDLE_MS);
}

static void reply_error(struct shard *s, const struct wire_msg *m, uint64_t req_id, const char *why)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_u64(&pk, "req_id", req_id);
        wire_pack_kv_bool(&pk, "ok", false);
        wire_pack_kv_str(&pk, "error", why);
        wire_send(s->router, m->identity, m->identity_len, "HITS", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
}

static void reply_hits(struct shard *s, struct query *q, const struct vecstore_hit *hits, size_t n)
{
        struct arena a;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        arena_init(&a, REPLY_ARENA);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_u64(&pk, "req_id", q->req_id);
        wire_pack_kv_bool(&pk, "ok", true);
        wire_pack_key(&pk, "hits");
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; i < n; i++) {
                void *meta = NULL;
                size_t len = 0;

                vecstore_get_meta(s->vs, hits[i].id, &a, &meta, &len);
                msgpack_pack_map(&pk, 3);
                wire_pack_kv_str(&pk, "id", hits[i].id);
                wire_pack_key(&pk, "score");
                msgpack_pack_float(&pk, hits[i].score);
                wire_pack_kv_bin(&pk, "doc", meta, len);
        }
        wire_send(s->router, q->msg.identity, q->msg.identity_len, "HITS", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        arena_release(&a);
        q->answered = true;
        s->queries++;
}

/* The rows of the optional "blocked" id array of a QUERY body, in a. */
static int parse_blocked(struct shard *s, const msgpack_object *b, struct arena *a,
                         struct vecstore_filter *f)
{
        const msgpack_object *list = wire_get(b, "blocked");
        const char **ids;
        uint32_t *rows;
        size_t n, found = 0;

        if (!list || list->type == MSGPACK_OBJECT_NIL)
                return 0;
        if (list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size > QUERY_MAX_BLOCKED)
                return ST_EINVAL;
        n = list->via.array.size;
        ids = arena_calloc(a, n + 1, sizeof(*ids));
        rows = arena_calloc(a, n + 1, sizeof(*rows));
        if (!ids || !rows)
                return ST_ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const msgpack_object *o = &list->via.array.ptr[i];

                if (o->type != MSGPACK_OBJECT_STR)
                        return ST_EINVAL;
                ids[i] = arena_strndup(a, o->via.str.ptr, o->via.str.size);
                if (!ids[i])
                        return ST_ENOMEM;
        }
        if (vecstore_rows_of_ids(s->vs, ids, n, rows, &found))
                return ST_EINVAL;
        f->blocked = rows;
        f->n_blocked = found;
        return 0;
}

/* Read a QUERY; on a bad one, reply with the error and mark it answered. */
static void parse_query(struct shard *s, struct query *q, struct arena *a)
{
        const msgpack_object *b = &q->msg.body.data;
        uint64_t k = 0;
        char *model = NULL, *base = NULL;
        const char *vec;
        size_t vec_len;
        float *v;

        memset(&q->filter, 0, sizeof(q->filter));
        q->req_id = 0;
        q->answered = false;
        if (wire_get_u64(b, "req_id", &q->req_id) || wire_get_u64(b, "k", &k) ||
            wire_get_str(b, "model", a, &model) || wire_get_bytes(b, "vector", &vec, &vec_len)) {
                reply_error(s, &q->msg, q->req_id, "QUERY needs req_id, k, model and vector");
                q->answered = true;
                return;
        }
        if (strcmp(model, s->embedder.model) ||
            vec_len != (size_t)s->embedder.dim * sizeof(float)) {
                reply_error(s, &q->msg, q->req_id,
                            "embedding model mismatch: this shard serves another model");
                q->answered = true;
                return;
        }
        wire_get_bool(b, "allow_nsfw", &q->filter.allow_nsfw);
        if (!wire_get_str(b, "base_model", a, &base))
                q->filter.base_models = 1u << vecstore_base_code(base);
        q->k = k == 0 || k > VECSTORE_MAX_K ? VECSTORE_MAX_K : (size_t)k;
        /* vec may be unaligned inside the message: copy before use. */
        v = arena_alloc(a, vec_len);
        if (!v || parse_blocked(s, b, a, &q->filter)) {
                reply_error(s, &q->msg, q->req_id, v ? "bad blocked ids" : "out of memory");
                q->answered = true;
                return;
        }
        memcpy(v, vec, vec_len);
        q->vector = v;
}

static bool same_search(const struct query *x, const struct query *y)
{
        const struct vecstore_filter *f = &x->filter, *g = &y->filter;

        return x->k == y->k && f->base_models == g->base_models && f->allow_nsfw == g->allow_nsfw &&
               f->n_blocked == g->n_blocked &&
               (f->n_blocked == 0 ||
                memcmp(f->blocked, g->blocked, f->n_blocked * sizeof(*f->blocked)) == 0);
}

/* Answer the queries from first on that share its search: one batch, or one search. */
static void answer_group(struct shard *s, struct query *qs, size_t n, size_t first, struct arena *a)
{
        size_t dim = (size_t)s->embedder.dim, k = qs[first].k, m = 0;
        size_t *members = arena_calloc(a, n, sizeof(*members));
        size_t *n_hits = arena_calloc(a, n, sizeof(*n_hits));
        float *vectors;
        struct vecstore_hit *hits;
        int rc;

        if (!members || !n_hits)
                goto out_nomem;
        for (size_t i = first; i < n; i++)
                if (!qs[i].answered && same_search(&qs[first], &qs[i]))
                        members[m++] = i;
        vectors = arena_alloc(a, m * dim * sizeof(*vectors));
        hits = arena_calloc(a, m * k, sizeof(*hits));
        if (!vectors || !hits)
                goto out_nomem;
        for (size_t i = 0; i < m; i++)
                memcpy(vectors + i * dim, qs[members[i]].vector, dim * sizeof(*vectors));
        if (m == 1)
                rc = vecstore_search(s->vs, vectors, k, &qs[first].filter, hits, n_hits);
        else
                rc = vecstore_search_batch(s->vs, vectors, m, k, &qs[first].filter, hits, n_hits);
        for (size_t i = 0; i < m; i++) {
                struct query *q = &qs[members[i]];

                if (rc) {
                        reply_error(s, &q->msg, q->req_id, "search failed");
                        q->answered = true;
                } else {
                        reply_hits(s, q, hits + i * k, n_hits[i]);
                }
        }
        if (rc)
                log_error("search failed: %s (%s)", st_strerror(rc), vecstore_last_error(s->vs));
        else if (m > 1)
                s->batched += m;
        return;
out_nomem:
        reply_error(s, &qs[first].msg, qs[first].req_id, "out of memory");
        qs[first].answered = true;
}

/* Answer n drained QUERY messages, batching those that share k and filter; release them. */
static void answer_queries(struct shard *s, struct query *qs, size_t n)
{
        struct arena a;

        arena_init(&a, BATCH_ARENA);
        for (size_t i = 0; i < n; i++)
                parse_query(s, &qs[i], &a);
        for (size_t i = 0; i < n; i++)
                if (!qs[i].answered)
                        answer_group(s, qs, n, i, &a);
        for (size_t i = 0; i < n; i++)
                wire_msg_release(&qs[i].msg);
        arena_release(&a);
}

/* Answer DOC {req_id, id} with {req_id, ok, found, doc (bin, when found)}. */
static void on_doc(struct shard *s, const struct wire_msg *m)
{
        const msgpack_object *b = &m->body.data;
        uint64_t req_id = 0;
        char *id = NULL;
        void *meta = NULL;
        size_t len = 0;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct arena a;
        int rc;

        arena_init(&a, REPLY_ARENA);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (wire_get_u64(b, "req_id", &req_id) || wire_get_str(b, "id", &a, &id) || !id) {
                msgpack_pack_map(&pk, 3);
                wire_pack_kv_u64(&pk, "req_id", req_id);
                wire_pack_kv_bool(&pk, "ok", false);
                wire_pack_kv_str(&pk, "error", "DOC needs req_id and an id");
                goto out;
        }
        rc = vecstore_get_meta(s->vs, id, &a, &meta, &len);
        if (rc && rc != ST_ENOTFOUND) {
                msgpack_pack_map(&pk, 3);
                wire_pack_kv_u64(&pk, "req_id", req_id);
                wire_pack_kv_bool(&pk, "ok", false);
                wire_pack_kv_str(&pk, "error", st_strerror(rc));
                goto out;
        }
        msgpack_pack_map(&pk, rc ? 3 : 4);
        wire_pack_kv_u64(&pk, "req_id", req_id);
        wire_pack_kv_bool(&pk, "ok", true);
        wire_pack_kv_bool(&pk, "found", rc == 0);
        if (rc == 0)
                wire_pack_kv_bin(&pk, "doc", meta, len);
out:
        wire_send(s->router, m->identity, m->identity_len, "DOC", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        arena_release(&a);
}

static void on_status(struct shard *s, const struct wire_msg *m)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 12);
        wire_pack_kv_u64(&pk, "count", vecstore_count(s->vs));
        wire_pack_kv_u64(&pk, "dead", vecstore_dead(s->vs));
        wire_pack_kv_u64(&pk, "compacted", s->compacted);
        wire_pack_kv_bool(&pk, "snapshotting", s->snapshotting);
        wire_pack_kv_u64(&pk, "dropped", s->dropped);
        wire_pack_kv_str(&pk, "subscriber", s->name);
        wire_pack_kv_u64(&pk, "applied_seq", vecstore_applied_seq(s->vs));
        wire_pack_kv_u64(&pk, "head_seq", s->head_seq);
        wire_pack_kv_u64(&pk, "queries", s->queries);
        wire_pack_kv_u64(&pk, "batched", s->batched);
        wire_pack_kv_str(&pk, "model", s->embedder.model);
        wire_pack_key(&pk, "shard");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, s->index);
        msgpack_pack_uint64(&pk, s->count);
        wire_send(s->router, m->identity, m->identity_len, "STATUS", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
}

static void usage(FILE *f)
{
        fputs("usage: stylus shard I/N --data DIR [--bind ENDPOINT] [--catalog ENDPOINT]\n"
              "                        [--embed-model NAME] [--embed-dim N] [--name NAME]\n"
              "                        [--scan int8|exact] [--curve-key F --curve-allow F\n"
              "                        --curve-server-key F]\n"
              "\n"
              "Run shard server I of N: follow the catalog's changelog for the docs this\n"
              "shard owns (hash(id) mod N == I), store their vectors in DIR, and answer\n"
              "top-K queries from query nodes.  Several replicas may serve the same I/N.\n"
              "\n"
              "  --data DIR         shard store directory (created if missing)\n"
              "  --bind ENDPOINT    ROUTER endpoint for queries (default tcp://127.0.0.1:5600)\n"
              "  --catalog ENDPOINT catalog coordinator (default tcp://127.0.0.1:5555)\n"
              "  --embed-model NAME embedding model the vectors come from (default the built-in\n"
              "                     stylus-hash-v1); changelog entries of another model are\n"
              "                     refused, and so are queries (docs/embeddings.md)\n"
              "  --embed-dim N      embedding dimension (default 384; --dim is the same)\n"
              "  --name NAME        subscriber name the catalog keeps this replica's position\n"
              "                     under (default <hostname>:<absolute DIR>); unique per replica\n"
              "  --scan MODE        int8: int8 scan, best 4k+64 re-ranked exactly (default);\n"
              "                     exact: float32 inner product with every row\n"
              "                     (threads: OPENBLAS_NUM_THREADS, default all cores)\n"
              "  --curve-key F      CURVE keypair (or STYLUS_CURVE_KEY): the server key of the\n"
              "                     query socket and the client key towards the catalog\n"
              "  --curve-allow F    query nodes that may connect (or STYLUS_CURVE_ALLOW)\n"
              "  --curve-server-key F  the catalog's public key (or STYLUS_CURVE_SERVER_KEY)\n"
              "                     Endpoints beyond loopback need these keys.\n"
              "\n"
              "examples:\n"
              "  stylus shard 0/1 --data ./shard0\n"
              "  stylus shard 1/4 --data /srv/shard1 --bind tcp://0.0.0.0:5601 "
              "--catalog tcp://cat:5555\n",
              f);
}

static int parse_shard(const char *s, uint64_t *i, uint64_t *n)
{
        char *end;

        *i = strtoull(s, &end, 10);
        if (end == s || *end != '/')
                return ST_EINVAL;
        s = end + 1;
        *n = strtoull(s, &end, 10);
        if (end == s || *end || *n == 0 || *n > 4096 || *i >= *n)
                return ST_EINVAL;
        return 0;
}

/* One compaction step when tombstones are a tenth of the rows or more. */
static void compact_step(struct shard *s)
{
        size_t dead = vecstore_dead(s->vs), moved = 0;
        int rc;

        if (dead == 0 || dead * 10 < dead + vecstore_count(s->vs))
                return;
        rc = vecstore_compact(s->vs, COMPACT_MOVES, &moved);
        if (rc && rc != ST_EAGAIN) {
                log_error("compaction: %s (%s)", st_strerror(rc), vecstore_last_error(s->vs));
                return;
        }
        s->compacted += moved;
        if (!rc && vecstore_dead(s->vs) == 0)
                log_info("compacted: %llu tombstoned rows reclaimed, %zu docs",
                         (unsigned long long)s->compacted, vecstore_count(s->vs));
}

static void serve(struct shard *s, volatile sig_atomic_t *stop)
{
        while (!*stop) {
                zmq_pollitem_t items[2] = {{s->router, 0, ZMQ_POLLIN, 0},
                                           {s->catalog, 0, ZMQ_POLLIN, 0}};
                struct wire_msg m;
                int64_t now;

                size_t n = 0;

                zmq_poll(items, 2, 100);
                while (n < QUERY_BATCH_MAX &&
                       wire_recv(s->router, true, ZMQ_DONTWAIT, &s->waiting[n].msg) == 0) {
                        struct wire_msg *q = &s->waiting[n].msg;

                        if (!strcmp(q->command, "QUERY") && q->has_body && !s->snapshotting) {
                                n++; /* answered below, with the others waiting */
                                continue;
                        }
                        if (!strcmp(q->command, "QUERY"))
                                s->dropped++; /* copying a snapshot: a replica answers */
                        if (!strcmp(q->command, "DOC") && q->has_body && !s->snapshotting)
                                on_doc(s, q);
                        else if (!strcmp(q->command, "DOC"))
                                s->dropped++;
                        if (!strcmp(q->command, "STATUS"))
                                on_status(s, q);
                        wire_msg_release(q);
                }
                if (n)
                        answer_queries(s, s->waiting, n);
                else if (!s->snapshotting)
                        compact_step(s);
                while (wire_recv(s->catalog, false, ZMQ_DONTWAIT, &m) == 0) {
                        if (!strcmp(m.command, "CHANGES") && m.has_body)
                                on_changes(s, &m.body.data);
                        else if (!strcmp(m.command, "SNAPSHOT") && m.has_body)
                                on_snapshot(s, &m.body.data);
                        wire_msg_release(&m);
                }
                now = wire_now_ms();
                if (s->sync_pending && now - s->sync_sent > SYNC_TIMEOUT_MS)
                        s->sync_pending = false; /* lost, or the catalog restarted */
                if (!s->sync_pending && now >= s->next_sync)
                        send_sync(s);
        }
}

int cmd_shard(int argc, char **argv)
{
        static const struct option opts[] = {
            {"data", required_argument, NULL, 'd'},
            {"bind", required_argument, NULL, 'b'},
            {"catalog", required_argument, NULL, 'c'},
            {"dim", required_argument, NULL, 'm'},
            {"embed-dim", required_argument, NULL, 'm'},
            {"embed-model", required_argument, NULL, 'M'},
            {"name", required_argument, NULL, 'n'},
            {"scan", required_argument, NULL, 's'},
            {"curve-key", required_argument, NULL, 'K'},
            {"curve-allow", required_argument, NULL, 'A'},
            {"curve-server-key", required_argument, NULL, 'S'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct shard s = {0};
        struct st_error err = {0};
        const char *data = NULL, *bind = "tcp://127.0.0.1:5600";
        const char *catalog = "tcp://127.0.0.1:5555", *scan = "int8";
        const char *curve_key = NULL, *curve_allow = NULL, *curve_server = NULL;
        struct security sec = {0};
        long dim = EMBED_DEFAULT_DIM;
        const char *model = NULL, *name = NULL;
        void *ctx;
        int c, rc = 1;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        data = optarg;
                        break;
                case 'b':
                        bind = optarg;
                        break;
                case 'c':
                        catalog = optarg;
                        break;
                case 'm':
                        dim = strtol(optarg, NULL, 10);
                        break;
                case 's':
                        scan = optarg;
                        break;
                case 'M':
                        model = optarg;
                        break;
                case 'n':
                        name = optarg;
                        break;
                case 'K':
                        curve_key = optarg;
                        break;
                case 'A':
                        curve_allow = optarg;
                        break;
                case 'S':
                        curve_server = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc - 1 || parse_shard(argv[optind], &s.index, &s.count) || !data ||
            dim <= 0 || dim > EMBED_MAX_DIM || embedder_init(&s.embedder, (int)dim) ||
            (strcmp(scan, "int8") && strcmp(scan, "exact")) ||
            (model && (!*model || strlen(model) >= sizeof(s.embedder.model))) ||
            (name && (!*name || strlen(name) >= sizeof(s.name)))) {
                usage(stderr);
                return 2;
        }
        if (model)
                snprintf(s.embedder.model, sizeof(s.embedder.model), "%s", model);
        s.data = data;
        if (name) {
                snprintf(s.name, sizeof(s.name), "%s", name);
        } else {
                char host[256] = "", *abs = realpath(data, NULL);

                gethostname(host, sizeof(host) - 1);
                snprintf(s.name, sizeof(s.name), "%s:%s", host, abs ? abs : data);
                free(abs);
        }
        log_setup("shard", LOG_INFO);
        worker_stop_on_signals(&stop);
        s.waiting = calloc(QUERY_BATCH_MAX, sizeof(*s.waiting));
        if (!s.waiting) {
                log_error("out of memory");
                return 1;
        }
        if (security_load(&sec, curve_key, curve_server, curve_allow, &err)) {
                log_error("%s", err.msg);
                goto out_waiting;
        }
        if (vecstore_open(data, s.embedder.dim, s.embedder.model, &s.vs, &err)) {
                log_error("%s", st_error_text(&err, err.code));
                goto out_security;
        }
        vecstore_set_scan(s.vs, strcmp(scan, "exact") ? VECSTORE_SCAN_INT8 : VECSTORE_SCAN_EXACT);
        ctx = zmq_ctx_new();
        s.router = wire_socket(ctx, ZMQ_ROUTER);
        s.catalog = wire_socket(ctx, ZMQ_DEALER);
        if (security_server(&sec, ctx, s.router, bind, &err) ||
            security_client(&sec, s.catalog, catalog, &err)) {
                log_error("%s", err.msg);
                goto out;
        }
        if (zmq_bind(s.router, bind) || zmq_connect(s.catalog, catalog)) {
                log_error("cannot bind %s or connect %s: %s", bind, catalog,
                          zmq_strerror(zmq_errno()));
                goto out;
        }
        log_info("shard %llu/%llu on %s, %zu docs, applied seq %llu, %s scan",
                 (unsigned long long)s.index, (unsigned long long)s.count, bind,
                 vecstore_count(s.vs), (unsigned long long)vecstore_applied_seq(s.vs), scan);
        serve(&s, &stop);
        rc = 0;
out:
        zmq_close(s.router);
        zmq_close(s.catalog);
        security_release(&sec); /* its ZAP socket must close before the context ends */
        zmq_ctx_term(ctx);
        vecstore_close(&s.vs);
out_security:
        security_release(&sec);
out_waiting:
        free(s.waiting);
        return rc;
}
