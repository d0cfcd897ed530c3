/*
 * catalog_cmd.c - `stylus catalog`: the coordinator process.  Owns the
 * catalog LMDB (ops/catalog_store.h) and runs the job broker on one ROUTER
 * socket: workers say READY and get a leased JOB; a RESULT is applied in one
 * write transaction; a lease that expires puts its job back; a job that
 * fails max-attempts times goes to the dead-letter list.  The same socket
 * answers STATUS and the shards' SYNC requests (messages: proto/wire.h).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "ops/catalog_store.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/log.h"
#include "proto/security.h"
#include "proto/wire.h"
#include "proto/worker.h"

#define MAX_WORKERS     1024
#define MAX_SOURCES     8
#define MAX_BATCH       256   /* messages handled per group commit */
#define MAX_HOLD_LEASES 20    /* a job held this many lease periods is taken back: a hung worker */
#define MAX_SUBSCRIBERS 256   /* changelog subscribers remembered between flushes */
#define COMPACT_MAX     10000 /* changelog entries deleted per step */
#define SUB_REFRESH_MS  60000 /* a subscriber's "seen" is rewritten at least this often */

/* A changelog subscriber (shard replica) as heard in its SYNC requests. */
struct subscriber {
        char name[256];
        uint64_t shard, shards, seq;
        uint64_t stored_seq; /* seq last written to the store */
        int64_t stored_at;   /* when it was written (0: never) */
};

struct worker_slot {
        unsigned char identity[WIRE_MAX_IDENTITY];
        size_t identity_len;
        enum catalog_stage stage;
        uint32_t credit; /* jobs it may still be sent (proto/worker.h) */
        int64_t last_seen;
};

/* A job the broker is tracking: leased to a worker, or failed and backing off. */
struct job_state {
        enum catalog_stage stage;
        uint64_t job_id;
        int64_t lease_until; /* 0 when not leased */
        int64_t leased_at;   /* heartbeats extend a lease up to MAX_HOLD_LEASES leases */
        int64_t not_before;  /* retry backoff after a failure */
        int attempts;
        unsigned char holder[WIRE_MAX_IDENTITY]; /* the worker holding the lease */
        size_t holder_len;
};

static bool held_by(const struct job_state *j, const struct wire_msg *m)
{
        return j->lease_until && j->holder_len == m->identity_len &&
               !memcmp(j->holder, m->identity, m->identity_len);
}

struct broker {
        struct catalog *cat;
        void *sock;
        struct worker_slot workers[MAX_WORKERS];
        size_t n_workers;
        struct job_state *jobs;
        size_t n_jobs, cap_jobs;
        long lease_ms;
        int max_attempts;
        int64_t last_heartbeat;
        uint64_t results;
        int64_t store_pause_until; /* no dispatch before: the store failed to commit */
        long store_backoff_ms;
        struct subscriber subs[MAX_SUBSCRIBERS];
        size_t n_subs;
        uint64_t subscriber_ttl; /* seconds a silent subscriber keeps holding compaction back */
        long compact_every_ms;   /* between changelog compaction steps */
        size_t rotate;           /* where dispatch() starts looking among equals */
};

static struct job_state *job_find(struct broker *b, enum catalog_stage s, uint64_t id)
{
        for (size_t i = 0; i < b->n_jobs; i++)
                if (b->jobs[i].stage == s && b->jobs[i].job_id == id)
                        return &b->jobs[i];
        return NULL;
}

static struct job_state *job_track(struct broker *b, enum catalog_stage s, uint64_t id)
{
        struct job_state *j = job_find(b, s, id);

        if (j)
                return j;
        if (b->n_jobs == b->cap_jobs) {
                size_t cap = b->cap_jobs ? b->cap_jobs * 2 : 64;
                struct job_state *p = realloc(b->jobs, cap * sizeof(*p));

                if (!p)
                        return NULL;
                b->jobs = p;
                b->cap_jobs = cap;
        }
        j = &b->jobs[b->n_jobs++];
        memset(j, 0, sizeof(*j));
        j->stage = s;
        j->job_id = id;
        return j;
}

static void job_forget(struct broker *b, struct job_state *j)
{
        *j = b->jobs[--b->n_jobs];
}

static bool job_busy(void *ctx, enum catalog_stage s, uint64_t id)
{
        struct broker *b = ctx;
        struct job_state *j = job_find(b, s, id);
        int64_t now = wire_now_ms();

        return j && (j->lease_until > now || j->not_before > now);
}

/* Count a failed attempt: back off exponentially, or bury the job. */
static void job_failed(struct broker *b, struct job_state *j, const char *why)
{
        struct st_error err = {0};
        int64_t delay = 1000L << (j->attempts < 5 ? j->attempts : 5);

        j->attempts++;
        j->lease_until = 0;
        if (j->attempts < b->max_attempts) {
                j->not_before = wire_now_ms() + delay;
                log_warn("%s job %llu failed (attempt %d): %s", catalog_stage_name(j->stage),
                         (unsigned long long)j->job_id, j->attempts, why);
                return;
        }
        log_error("%s job %llu dead after %d attempts: %s", catalog_stage_name(j->stage),
                  (unsigned long long)j->job_id, j->attempts, why);
        if (catalog_bury_job(b->cat, j->stage, j->job_id, why, &err))
                log_error("cannot bury job: %s", err.msg);
        job_forget(b, j);
}

static struct worker_slot *worker_find(struct broker *b, const struct wire_msg *m)
{
        for (size_t i = 0; i < b->n_workers; i++)
                if (b->workers[i].identity_len == m->identity_len &&
                    !memcmp(b->workers[i].identity, m->identity, m->identity_len))
                        return &b->workers[i];
        return NULL;
}

/* Whether id is the job_id or one of the job_ids of a HEARTBEAT body. */
static bool names_job(const msgpack_object *body, uint64_t id)
{
        const msgpack_object *ids = wire_get(body, "job_ids");
        uint64_t one;

        if (!wire_get_u64(body, "job_id", &one) && one == id)
                return true;
        if (!ids || ids->type != MSGPACK_OBJECT_ARRAY)
                return false;
        for (uint32_t i = 0; i < ids->via.array.size; i++)
                if (ids->via.array.ptr[i].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    ids->via.array.ptr[i].via.u64 == id)
                        return true;
        return false;
}

#define MAX_CREDIT 64 /* jobs one worker may be owed */

/*
 * READY adds credit; a HEARTBEAT extends the lease of every job it names and,
 * when it says how many more the worker could take (free), sets the credit
 * to that minus the jobs leased to it that it does not name yet (in flight).
 */
static void on_ready(struct broker *b, const struct wire_msg *m, bool ready)
{
        struct worker_slot *w = worker_find(b, m);
        const msgpack_object *body = &m->body.data;
        struct arena a;
        char *stage = NULL;
        enum catalog_stage s;
        uint64_t n;

        arena_init(&a, 4096);
        if (!m->has_body || wire_get_str(body, "stage", &a, &stage) ||
            (s = catalog_stage_from_name(stage)) == STAGE_COUNT) {
                log_warn("%s without a known stage dropped", m->command);
                goto out;
        }
        if (!w) {
                if (b->n_workers == MAX_WORKERS) {
                        log_warn("worker table full; ignoring a worker");
                        goto out;
                }
                w = &b->workers[b->n_workers++];
                memcpy(w->identity, m->identity, m->identity_len);
                w->identity_len = m->identity_len;
                /* READY brings its credit; a bare idle heartbeat (a catalog restart) one. */
                w->credit = ready ? 0 : 1;
                log_info("%s worker joined (%zu workers)", stage, b->n_workers);
        }
        w->stage = s;
        w->last_seen = wire_now_ms();
        if (ready) {
                if (wire_get_u64(body, "credit", &n))
                        n = 1;
                w->credit = w->credit + n > MAX_CREDIT ? MAX_CREDIT : (uint32_t)(w->credit + n);
                goto out;
        }
        {
                uint64_t in_flight = 0;
                bool idle = true;

                for (size_t i = 0; i < b->n_jobs; i++) {
                        struct job_state *j = &b->jobs[i];

                        if (j->stage != s || !held_by(j, m))
                                continue;
                        if (!names_job(body, j->job_id)) {
                                in_flight++;
                                continue;
                        }
                        if (w->last_seen - j->leased_at < MAX_HOLD_LEASES * b->lease_ms)
                                j->lease_until = w->last_seen + b->lease_ms;
                }
                wire_get_bool(body, "idle", &idle);
                if (!wire_get_u64(body, "free", &n))
                        w->credit = n > in_flight
                                        ? (uint32_t)(n - in_flight > MAX_CREDIT ? MAX_CREDIT
                                                                                : n - in_flight)
                                        : 0;
                else if (!idle)
                        w->credit = 0; /* an older worker: busy means no credit */
        }
out:
        arena_release(&a);
}

/* REQUEUE {stage?}: dead letters of that stage (all when absent) go back in their queues. */
static void on_requeue(struct broker *b, const struct wire_msg *m)
{
        struct st_error err = {0};
        struct arena a;
        char *stage = NULL;
        int s = -1;
        size_t n = 0;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        arena_init(&a, 4096);
        if (m->has_body && !wire_get_str(&m->body.data, "stage", &a, &stage))
                s = (int)catalog_stage_from_name(stage);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (s == STAGE_COUNT) {
                msgpack_pack_map(&pk, 1);
                wire_pack_kv_str(&pk, "error", "unknown stage");
        } else if (catalog_requeue_dead(b->cat, s, &n, &err)) {
                log_error("%s", err.msg);
                msgpack_pack_map(&pk, 1);
                wire_pack_kv_str(&pk, "error", err.msg);
        } else {
                log_info("%zu dead letters queued again", n);
                msgpack_pack_map(&pk, 1);
                wire_pack_kv_u64(&pk, "requeued", n);
        }
        wire_send(b->sock, m->identity, m->identity_len, "REQUEUED", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        arena_release(&a);
}

/* A worker hands back a job it cannot take now: free the lease, count no failure. */
static void on_nack(struct broker *b, const struct wire_msg *m)
{
        struct arena a;
        char *stage = NULL;
        uint64_t job_id;
        enum catalog_stage s;
        struct job_state *j;

        arena_init(&a, 4096);
        if (m->has_body && !wire_get_u64(&m->body.data, "job_id", &job_id) &&
            !wire_get_str(&m->body.data, "stage", &a, &stage) &&
            (s = catalog_stage_from_name(stage)) != STAGE_COUNT && (j = job_find(b, s, job_id)) &&
            held_by(j, m))
                j->lease_until = 0;
        arena_release(&a);
}

static int apply_result(struct broker *b, enum catalog_stage s, uint64_t job_id,
                        const msgpack_object *payload, struct st_error *err)
{
        struct catalog_crawl_counts counts;
        size_t stored;
        int rc;

        switch (s) {
        case STAGE_CRAWL:
                rc = catalog_apply_crawl(b->cat, job_id, payload, &counts, err);
                if (!rc)
                        log_info("crawl page: %zu new, %zu changed, %zu unchanged, %zu rejected, "
                                 "%zu gone%s",
                                 counts.added, counts.changed, counts.unchanged, counts.rejected,
                                 counts.gone, counts.checks ? "; pass ended" : "");
                if (!rc && counts.checks)
                        log_info("%zu records the pass did not list will be checked",
                                 counts.checks);
                return rc;
        case STAGE_REFINE:
                return catalog_apply_doc(b->cat, job_id, payload, err);
        case STAGE_IMAGES:
                return catalog_apply_images(b->cat, job_id, payload, &stored, err);
        default:
                return catalog_apply_vector(b->cat, job_id, payload, err);
        }
}

static void on_result(struct broker *b, const struct wire_msg *m)
{
        struct st_error err = {0};
        struct arena a;
        struct job_state *j;
        char *stage = NULL, *why = NULL;
        uint64_t job_id;
        bool ok = false;
        enum catalog_stage s;
        int rc;

        arena_init(&a, 1 << 16);
        if (!m->has_body || wire_get_u64(&m->body.data, "job_id", &job_id) ||
            wire_get_str(&m->body.data, "stage", &a, &stage) ||
            (s = catalog_stage_from_name(stage)) == STAGE_COUNT ||
            wire_get_bool(&m->body.data, "ok", &ok)) {
                log_warn("malformed RESULT dropped");
                goto out;
        }
        b->results++;
        /* Only a job this broker leased counts failures: a peer cannot bury a queued job. */
        j = job_find(b, s, job_id);
        if (!ok) {
                /* A failure counts only from the worker holding the lease now. */
                wire_get_str(&m->body.data, "error", &a, &why);
                if (j && held_by(j, m))
                        job_failed(b, j, why ? why : "worker gave no reason");
                goto out;
        }
        rc = apply_result(b, s, job_id, wire_get(&m->body.data, "payload"), &err);
        if (rc == ST_EPROTO && j) {
                job_failed(b, j, err.msg);
        } else if (rc) {
                /* Store trouble: the job stays queued and, free again, runs once more. */
                log_error("%s", st_error_text(&err, rc));
                if (j)
                        j->lease_until = 0;
        } else if (j) {
                job_forget(b, j);
        }
out:
        arena_release(&a);
}

static void reply(struct broker *b, const struct wire_msg *m, const char *command,
                  msgpack_sbuffer *sb)
{
        if (wire_send(b->sock, m->identity, m->identity_len, command, sb->data, sb->size))
                log_warn("could not answer %s", m->command);
}

static void on_status(struct broker *b, const struct wire_msg *m)
{
        size_t leased[STAGE_COUNT] = {0};
        msgpack_sbuffer sb;
        msgpack_packer pk;

        for (size_t i = 0; i < b->n_jobs; i++)
                if (b->jobs[i].lease_until)
                        leased[b->jobs[i].stage]++;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (!catalog_pack_status(b->cat, leased, b->n_workers, &pk))
                reply(b, m, "STATUS", &sb);
        msgpack_sbuffer_destroy(&sb);
}

/* Remember where a named subscriber is; written to the store by flush_subscribers(). */
static void note_subscriber(struct broker *b, const msgpack_object *body, uint64_t from,
                            uint64_t shard, uint64_t shards)
{
        const char *name;
        size_t len, i;

        if (wire_get_bytes(body, "subscriber", &name, &len) || len == 0 ||
            len >= sizeof(b->subs[0].name) || memchr(name, '\0', len))
                return;
        for (i = 0; i < b->n_subs; i++)
                if (strlen(b->subs[i].name) == len && !memcmp(b->subs[i].name, name, len))
                        break;
        if (i == b->n_subs) {
                if (b->n_subs == MAX_SUBSCRIBERS)
                        return;
                memset(&b->subs[i], 0, sizeof(b->subs[i]));
                memcpy(b->subs[i].name, name, len);
                b->subs[i].stored_seq = UINT64_MAX;
                b->n_subs++;
        }
        b->subs[i].seq = from;
        b->subs[i].shard = shard;
        b->subs[i].shards = shards;
}

/* Write subscriber positions that moved (or are due a "seen" refresh), then compact. */
static void flush_subscribers(struct broker *b, int64_t now)
{
        struct st_error err = {0};
        size_t deleted = 0, dropped = 0;

        for (size_t i = 0; i < b->n_subs; i++) {
                struct subscriber *sub = &b->subs[i];

                if (sub->seq == sub->stored_seq && now - sub->stored_at < SUB_REFRESH_MS)
                        continue;
                if (catalog_note_subscriber(b->cat, sub->name, sub->shard, sub->shards, sub->seq,
                                            &err)) {
                        log_error("%s", err.msg);
                        return;
                }
                sub->stored_seq = sub->seq;
                sub->stored_at = now;
        }
        /* Forget the in-memory copies that will not be refreshed: the store has them. */
        for (size_t i = 0; i < b->n_subs;)
                if (now - b->subs[i].stored_at > 2 * SUB_REFRESH_MS)
                        b->subs[i] = b->subs[--b->n_subs];
                else
                        i++;
        if (catalog_compact_changelog(b->cat, b->subscriber_ttl, COMPACT_MAX, &deleted, &dropped,
                                      &err))
                log_error("%s", err.msg);
        else if (deleted)
                log_info("changelog compacted: %zu entries every subscriber has applied", deleted);
}

static void on_snapshot(struct broker *b, const struct wire_msg *m)
{
        uint64_t max = 1000, shard = 0, shards = 1;
        struct arena a;
        char *after = NULL;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        arena_init(&a, 4096);
        if (!m->has_body || wire_get_str(&m->body.data, "after", &a, &after)) {
                log_warn("SNAPSHOT without after dropped");
                arena_release(&a);
                return;
        }
        wire_get_u64(&m->body.data, "max", &max);
        wire_get_u64(&m->body.data, "shard", &shard);
        wire_get_u64(&m->body.data, "shards", &shards);
        if (max == 0 || max > 10000)
                max = 10000;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (!catalog_pack_snapshot(b->cat, after, (size_t)max, shard, shards, &pk))
                reply(b, m, "SNAPSHOT", &sb);
        else
                log_warn("SNAPSHOT for shard %llu of %llu refused", (unsigned long long)shard,
                         (unsigned long long)shards);
        msgpack_sbuffer_destroy(&sb);
        arena_release(&a);
}

static void on_sync(struct broker *b, const struct wire_msg *m)
{
        uint64_t from = 0, max = 1000, shard = 0, shards = 1;
        msgpack_sbuffer sb;
        msgpack_packer pk;

        if (!m->has_body || wire_get_u64(&m->body.data, "from_seq", &from)) {
                log_warn("SYNC without from_seq dropped");
                return;
        }
        wire_get_u64(&m->body.data, "max", &max);
        wire_get_u64(&m->body.data, "shard", &shard);
        wire_get_u64(&m->body.data, "shards", &shards);
        note_subscriber(b, &m->body.data, from, shard, shards);
        if (max == 0 || max > 10000)
                max = 10000;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (!catalog_pack_changes(b->cat, from, (size_t)max, shard, shards, &pk))
                reply(b, m, "CHANGES", &sb);
        msgpack_sbuffer_destroy(&sb);
}

static void handle(struct broker *b, const struct wire_msg *m)
{
        if (!strcmp(m->command, "READY"))
                on_ready(b, m, true);
        else if (!strcmp(m->command, "HEARTBEAT"))
                on_ready(b, m, false);
        else if (!strcmp(m->command, "RESULT"))
                on_result(b, m);
        else if (!strcmp(m->command, "STATUS"))
                on_status(b, m);
        else if (!strcmp(m->command, "SYNC"))
                on_sync(b, m);
        else if (!strcmp(m->command, "SNAPSHOT"))
                on_snapshot(b, m);
        else if (!strcmp(m->command, "NACK"))
                on_nack(b, m);
        else if (!strcmp(m->command, "REQUEUE"))
                on_requeue(b, m);
        else
                log_warn("unknown command '%s' dropped", m->command);
        if (!strcmp(m->command, "RESULT")) {
                struct worker_slot *w = worker_find(b, m);
                if (w)
                        w->last_seen = wire_now_ms();
        }
}

/*
 * Re-refine sweep (--refine-as ID): docs refined by another model or prompt
 * version, or that fell back to the card, get refine jobs again, a few at a
 * time so the queue stays short and the old docs keep serving meanwhile.
 * Re-embed sweep (--embed-as MODEL): the same with embed jobs for docs
 * without a vector of MODEL.
 */
struct sweep {
        enum catalog_stage stage; /* STAGE_REFINE (--refine-as) or STAGE_EMBED (--embed-as) */
        const char *want;         /* refined_by or vector model the docs should carry */
        char after[ST_LIMIT_STRING + 1];
        bool done;
        size_t queued;
        int64_t next;
};

#define SWEEP_BATCH 64 /* refine jobs queued per step, while fewer than that wait */

static void sweep_step(struct broker *b, struct sweep *sw, int64_t now)
{
        struct st_error err = {0};
        size_t n = 0;

        sw->next = now + 1000;
        if (sw->done || catalog_pending(b->cat, sw->stage) >= SWEEP_BATCH)
                return;
        if ((sw->stage == STAGE_REFINE ? catalog_requeue_stale : catalog_requeue_embed)(
                b->cat, sw->want, sw->after, sizeof(sw->after), SWEEP_BATCH, &n, &sw->done, &err)) {
                log_error("%s", err.msg);
                return;
        }
        sw->queued += n;
        if (sw->done)
                log_info("re-%s sweep to %s done: %zu docs queued", catalog_stage_name(sw->stage),
                         sw->want, sw->queued);
}

/*
 * Commit the batch.  When the store cannot write (disk full, I/O error), the
 * dropped results' jobs are free again: pause handing out jobs, 1 s doubling
 * to 30 s, rather than spin on work that cannot be kept.
 */
static void end_batch(struct broker *b, struct st_error *err)
{
        int rc = catalog_batch_commit(b->cat, err);

        if (rc == 0) {
                b->store_backoff_ms = 0;
                return;
        }
        log_error("%s", err->msg);
        if (rc == ST_EAGAIN)
                return; /* the map grew: run the jobs again at once */
        b->store_backoff_ms = b->store_backoff_ms ? b->store_backoff_ms * 2 : 1000;
        if (b->store_backoff_ms > 30000)
                b->store_backoff_ms = 30000;
        b->store_pause_until = wire_now_ms() + b->store_backoff_ms;
}

/* STATUS and SYNC answer from the committed store. */
static bool reads_store(const struct wire_msg *m)
{
        return !strcmp(m->command, "STATUS") || !strcmp(m->command, "SYNC") ||
               !strcmp(m->command, "SNAPSHOT");
}

/* Jobs leased to worker w now. */
static size_t held_by_worker(const struct broker *b, const struct worker_slot *w)
{
        size_t n = 0;

        for (size_t i = 0; i < b->n_jobs; i++) {
                const struct job_state *j = &b->jobs[i];

                n += j->lease_until && j->holder_len == w->identity_len &&
                     !memcmp(j->holder, w->identity, w->identity_len);
        }
        return n;
}

/*
 * Hand out jobs while workers have credit and their stages have free jobs:
 * each job goes to the worker of its stage holding the fewest (ties: the
 * next in a rotating order), so a worker with room never waits while another
 * queues a second job behind its first.
 */
static void dispatch(struct broker *b)
{
        bool empty[STAGE_COUNT] = {false}; /* no free job left in the stage */
        size_t held[MAX_WORKERS], n = b->n_workers;

        if (n == 0)
                return;
        for (size_t i = 0; i < n; i++)
                held[i] = b->workers[i].credit ? held_by_worker(b, &b->workers[i]) : 0;
        b->rotate = (b->rotate + 1) % n;
        for (;;) {
                struct worker_slot *w;
                msgpack_sbuffer sb;
                msgpack_packer pk;
                uint64_t job_id;
                struct job_state *j;
                size_t best = n;

                for (size_t k = 0; k < n; k++) {
                        size_t i = (b->rotate + k) % n;

                        if (b->workers[i].credit && !empty[b->workers[i].stage] &&
                            (best == n || held[i] < held[best]))
                                best = i;
                }
                if (best == n)
                        break;
                w = &b->workers[best];
                msgpack_sbuffer_init(&sb);
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                if (catalog_pack_next_job(b->cat, w->stage, job_busy, b, &pk, &job_id)) {
                        empty[w->stage] = true;
                } else if ((j = job_track(b, w->stage, job_id)) != NULL &&
                           wire_send(b->sock, w->identity, w->identity_len, "JOB", sb.data,
                                     sb.size) == 0) {
                        j->leased_at = wire_now_ms();
                        j->lease_until = j->leased_at + b->lease_ms;
                        memcpy(j->holder, w->identity, w->identity_len);
                        j->holder_len = w->identity_len;
                        w->credit--;
                        held[best]++;
                } else {
                        w->credit = 0; /* cannot reach it now: its next heartbeat resets credit */
                }
                msgpack_sbuffer_destroy(&sb);
        }
}

static void expire(struct broker *b, int64_t now)
{
        for (size_t i = 0; i < b->n_jobs;) {
                struct job_state *j = &b->jobs[i];

                if (j->lease_until && j->lease_until <= now) {
                        size_t before = b->n_jobs;

                        job_failed(b, j, "lease expired");
                        if (b->n_jobs < before)
                                continue; /* slot i now holds another job */
                }
                i++;
        }
        for (size_t i = 0; i < b->n_workers;) {
                if (now - b->workers[i].last_seen > (int64_t)WIRE_HEARTBEAT_MS * WIRE_LIVENESS) {
                        log_info("%s worker gone", catalog_stage_name(b->workers[i].stage));
                        b->workers[i] = b->workers[--b->n_workers];
                        continue;
                }
                i++;
        }
        if (now - b->last_heartbeat >= WIRE_HEARTBEAT_MS) {
                for (size_t i = 0; i < b->n_workers; i++)
                        wire_send(b->sock, b->workers[i].identity, b->workers[i].identity_len,
                                  "HEARTBEAT", NULL, 0);
                b->last_heartbeat = now;
        }
}

static void usage(FILE *f)
{
        fputs("usage: stylus catalog --data DIR [--bind ENDPOINT] [--source NAME]...\n"
              "                      [--lease-ms MS] [--max-attempts N] [--refresh DUR]\n"
              "                      [--full-refresh DUR] [--images] [--subscriber-ttl DUR]\n"
              "                      [--compact-every DUR]\n"
              "                      [--curve-key FILE --curve-allow FILE]\n"
              "       stylus catalog backup --data DIR PATH\n"
              "\n"
              "Run the catalog coordinator: the LMDB store of raw records, docs and vectors,\n"
              "and the ZeroMQ job broker that crawler, refiner and indexer workers connect to.\n"
              "\n"
              "  --data DIR         catalog directory (created if missing)\n"
              "  --bind ENDPOINT    ROUTER endpoint (default tcp://127.0.0.1:5555)\n"
              "  --source NAME      source to crawl: civitai (default) or hf; repeatable\n"
              "  --lease-ms MS      how long a worker may hold a job (default 30000)\n"
              "  --max-attempts N   failures before a job goes to the dead letters (default 5)\n"
              "  --refresh DUR      every DUR (90, 90s, 30m, 6h, 7d), start an incremental\n"
              "                     pass (newest first, ends where nothing is new) of each\n"
              "                     source whose last pass has ended (default: off)\n"
              "  --full-refresh DUR with --refresh: make a refresh a full pass when the last\n"
              "                     full one started DUR ago (default 24h); after a full pass,\n"
              "                     records it did not list are checked with the source and\n"
              "                     tombstoned when gone (404/410)\n"
              "  --images           send crawled records with images through the images stage\n"
              "                     (stylus images workers) before they are refined\n"
              "  --subscriber-ttl DUR  a shard replica silent this long stops holding back\n"
              "                     changelog compaction (default 1h); when it returns behind\n"
              "                     the compacted entries it takes a snapshot\n"
              "  --compact-every DUR  how often the changelog is compacted (default 10s)\n"
              "  --curve-key FILE   CURVE keypair (stylus keygen; or STYLUS_CURVE_KEY); needed\n"
              "                     to bind beyond loopback\n"
              "  --curve-allow FILE public keys of the workers and shards that may connect\n"
              "                     (or STYLUS_CURVE_ALLOW)\n"
              "  --map-size BYTES   first LMDB map size (default 1 GiB; it doubles when full)\n"
              "  --refine-as ID     re-refine, a few at a time, every doc whose refined_by is\n"
              "                     not ID (e.g. vlm:gpt-4o@p1, what refiners print at start)\n"
              "                     or whose VLM refine failed\n"
              "  --embed-as MODEL   re-embed, a few at a time, every doc without a vector of\n"
              "                     MODEL (the model name indexers print at start) when the\n"
              "                     embedding model changes (docs/embeddings.md)\n"
              "\n"
              "examples:\n"
              "  stylus catalog --data /var/lib/stylus/catalog\n"
              "  stylus catalog --data ./cat --bind tcp://127.0.0.1:7000 --refresh 6h --images\n"
              "  stylus catalog --data ./cat --bind tcp://0.0.0.0:5555 --curve-key server.key "
              "--curve-allow allow\n",
              f);
}

int cmd_catalog(int argc, char **argv)
{
        static const struct option opts[] = {
            {"data", required_argument, NULL, 'd'},
            {"bind", required_argument, NULL, 'b'},
            {"source", required_argument, NULL, 's'},
            {"lease-ms", required_argument, NULL, 'l'},
            {"max-attempts", required_argument, NULL, 'm'},
            {"refresh", required_argument, NULL, 'r'},
            {"curve-key", required_argument, NULL, 'K'},
            {"curve-allow", required_argument, NULL, 'A'},
            {"map-size", required_argument, NULL, 'z'},
            {"refine-as", required_argument, NULL, 'R'},
            {"embed-as", required_argument, NULL, 'E'},
            {"full-refresh", required_argument, NULL, 'F'},
            {"images", no_argument, NULL, 'I'},
            {"subscriber-ttl", required_argument, NULL, 'T'},
            {"compact-every", required_argument, NULL, 'C'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct broker b = {.lease_ms = 30000,
                           .max_attempts = 5,
                           .subscriber_ttl = 3600,
                           .compact_every_ms = 10000};
        struct st_error err = {0};
        const char *data = NULL, *bind = "tcp://127.0.0.1:5555";
        const char *curve_key = NULL, *curve_allow = NULL;
        struct security sec = {0};
        const char *sources[MAX_SOURCES];
        size_t n_sources = 0;
        long refresh_s = 0, full_refresh_s = 86400;
        bool images = false;
        int64_t next_full = 0, next_compact = 0;
        unsigned long long map_size = (unsigned long long)1 << 30;
        int64_t next_reader_check = 0;
        struct sweep sweep = {.stage = STAGE_REFINE}, resweep = {.stage = STAGE_EMBED};
        int64_t next_refresh = 0;
        void *ctx = NULL;
        int c, rc = 1;

        if (argc > 1 && !strcmp(argv[1], "backup"))
                return cmd_catalog_backup(argc - 1, argv + 1);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        data = optarg;
                        break;
                case 'b':
                        bind = optarg;
                        break;
                case 's':
                        if (n_sources == MAX_SOURCES ||
                            (strcmp(optarg, "civitai") && strcmp(optarg, "hf"))) {
                                fprintf(stderr, "stylus catalog: unknown or too many sources: %s\n",
                                        optarg);
                                return 2;
                        }
                        sources[n_sources++] = optarg;
                        break;
                case 'l':
                        b.lease_ms = strtol(optarg, NULL, 10);
                        break;
                case 'm':
                        b.max_attempts = (int)strtol(optarg, NULL, 10);
                        break;
                case 'r':
                        refresh_s = cli_parse_duration(optarg);
                        break;
                case 'F':
                        full_refresh_s = cli_parse_duration(optarg);
                        break;
                case 'I':
                        images = true;
                        break;
                case 'C': {
                        long every = cli_parse_duration(optarg);

                        b.compact_every_ms = every > 0 ? every * 1000 : -1;
                        break;
                }
                case 'T': {
                        long ttl = cli_parse_duration(optarg);

                        b.subscriber_ttl = ttl < 0 ? 0 : (uint64_t)ttl;
                        if (ttl < 0)
                                refresh_s = -1; /* reported as a usage error below */
                        break;
                }
                case 'K':
                        curve_key = optarg;
                        break;
                case 'A':
                        curve_allow = optarg;
                        break;
                case 'z':
                        map_size = strtoull(optarg, NULL, 10);
                        break;
                case 'R':
                        sweep.want = optarg;
                        break;
                case 'E':
                        resweep.want = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!data || b.lease_ms <= 0 || b.max_attempts <= 0 || refresh_s < 0 ||
            full_refresh_s < 0 || b.compact_every_ms <= 0) {
                usage(stderr);
                return 2;
        }
        if (n_sources == 0)
                sources[n_sources++] = "civitai";
        log_setup("catalog", LOG_INFO);
        worker_stop_on_signals(&stop);
        if (security_load(&sec, curve_key, NULL, curve_allow, &err)) {
                log_error("%s", err.msg);
                return 1;
        }
        if (map_size < 65536 || catalog_open_sized(data, (size_t)map_size, &b.cat, &err)) {
                if (map_size < 65536)
                        st_fail(&err, ST_EINVAL, "--map-size must be at least 65536");
                log_error("%s", err.msg);
                security_release(&sec);
                return 1;
        }
        catalog_set_images(b.cat, images);
        for (size_t i = 0; i < n_sources; i++)
                if (catalog_start_source(b.cat, sources[i], false, false, &err))
                        log_error("%s", err.msg);
        ctx = zmq_ctx_new();
        b.sock = wire_socket(ctx, ZMQ_ROUTER);
        if (b.sock && security_server(&sec, ctx, b.sock, bind, &err)) {
                log_error("%s", err.msg);
                goto out;
        }
        if (!b.sock || zmq_bind(b.sock, bind) != 0) {
                log_error("cannot bind %s: %s", bind, zmq_strerror(zmq_errno()));
                goto out;
        }
        log_info("catalog %s serving on %s%s", data, bind, sec.has_keypair ? " (CURVE)" : "");
        next_refresh = wire_now_ms() + refresh_s * 1000;
        next_full = wire_now_ms() + full_refresh_s * 1000;
        while (!stop) {
                struct wire_msg m;
                int64_t now;

                wire_wait(b.sock, 100);
                /* Every result waiting now is applied in one batch: one sync for all. */
                if (catalog_batch_begin(b.cat, &err))
                        log_error("%s", err.msg);
                for (int n = 0; n < MAX_BATCH && !stop; n++) {
                        rc = wire_recv(b.sock, true, ZMQ_DONTWAIT, &m);
                        if (rc == ST_EAGAIN || rc == ST_EIO)
                                break;
                        if (rc == 0 && reads_store(&m)) {
                                /* A reader sees everything sent before its request. */
                                end_batch(&b, &err);
                                handle(&b, &m);
                                if (catalog_batch_begin(b.cat, &err))
                                        log_error("%s", err.msg);
                        } else if (rc == 0) {
                                handle(&b, &m);
                        }
                        wire_msg_release(&m);
                }
                end_batch(&b, &err);
                now = wire_now_ms();
                expire(&b, now);
                if (now >= b.store_pause_until) {
                        dispatch(&b);
                        if (catalog_drop_orphans(b.cat, &err))
                                log_error("%s", err.msg);
                }
                if (now >= next_compact) {
                        flush_subscribers(&b, now);
                        next_compact = now + b.compact_every_ms;
                }
                if (sweep.want && now >= sweep.next)
                        sweep_step(&b, &sweep, now);
                if (resweep.want && now >= resweep.next)
                        sweep_step(&b, &resweep, now);
                if (now >= next_reader_check) {
                        int dead = catalog_check_readers(b.cat);

                        if (dead)
                                log_warn("cleared %d reader slots of dead processes", dead);
                        next_reader_check = now + 60000;
                }
                if (refresh_s && now >= next_refresh) {
                        bool full = now >= next_full;

                        for (size_t i = 0; i < n_sources; i++)
                                catalog_start_source(b.cat, sources[i], true, !full, &err);
                        if (full)
                                next_full = now + full_refresh_s * 1000;
                        sweep.done = resweep.done = false; /* a new pass: every doc again */
                        sweep.after[0] = resweep.after[0] = '\0';
                        next_refresh = now + refresh_s * 1000;
                }
        }
        rc = 0;
        log_info("catalog stopping after %llu results", (unsigned long long)b.results);
out:
        if (b.sock)
                zmq_close(b.sock);
        security_release(&sec); /* its ZAP socket must close before the context ends */
        zmq_ctx_term(ctx);
        catalog_close(&b.cat);
        free(b.jobs);
        return rc;
}
