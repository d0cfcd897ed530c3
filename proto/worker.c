#include "proto/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "proto/log.h"
#include "proto/wire.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 32000

static volatile sig_atomic_t *signal_flag;

static void on_signal(int sig)
{
        (void)sig;
        if (signal_flag)
                *signal_flag = 1;
}

void worker_stop_on_signals(volatile sig_atomic_t *flag)
{
        struct sigaction sa;

        signal_flag = flag;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
}

static int send_body(void *sock, const char *command, msgpack_sbuffer *sb)
{
        return wire_send(sock, NULL, 0, command, sb->data, sb->size);
}

/* What the worker holds: the running job and the ones queued behind it. */
struct held {
        bool busy;
        uint64_t running;                         /* job id of the running job, when busy */
        struct wire_msg queue[WORKER_MAX_WINDOW]; /* JOBs waiting, oldest first */
        size_t n_queued;
        size_t window; /* jobs it may hold at once */
};

static size_t held_count(const struct held *h)
{
        return h->busy + h->n_queued;
}

/*
 * READY {stage, idle, credit}: credit more jobs may come.  HEARTBEAT
 * {stage, idle, free, job_id (when busy), job_ids}: free is how many more it
 * could hold now; job_ids every job it holds, whose leases go on.
 */
static int send_ready(void *sock, const char *stage, const char *command, const struct held *h,
                      size_t credit)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        bool heartbeat = !strcmp(command, "HEARTBEAT");
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, heartbeat ? 4 + h->busy : 3);
        wire_pack_kv_str(&pk, "stage", stage);
        wire_pack_kv_bool(&pk, "idle", !h->busy);
        if (!heartbeat) {
                wire_pack_kv_u64(&pk, "credit", credit);
        } else {
                wire_pack_kv_u64(&pk, "free", credit);
                if (h->busy)
                        wire_pack_kv_u64(&pk, "job_id", h->running);
                wire_pack_key(&pk, "job_ids");
                msgpack_pack_array(&pk, held_count(h));
                if (h->busy)
                        msgpack_pack_uint64(&pk, h->running);
                for (size_t i = 0; i < h->n_queued; i++) {
                        uint64_t id = 0;

                        wire_get_u64(&h->queue[i].body.data, "job_id", &id);
                        msgpack_pack_uint64(&pk, id);
                }
        }
        rc = send_body(sock, command, &sb);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

/*
 * A job running on its own thread while the main thread keeps the socket
 * and sends heartbeats that extend the job's lease.  The thread owns msg,
 * a and result until it signals on its PAIR socket; then they are the main
 * thread's again.
 */
struct running {
        pthread_t thread;
        const struct worker_config *cfg;
        struct wire_msg msg; /* the JOB */
        uint64_t job_id;
        msgpack_sbuffer result; /* the RESULT body */
        void *signal;           /* PAIR the thread says "done" on; used only by the thread */
};

/* Run the handler on the JOB and pack the RESULT body. */
static void pack_result(struct running *r)
{
        const struct worker_config *cfg = r->cfg;
        const msgpack_object *payload = wire_get(&r->msg.body.data, "payload");
        struct st_error err = {0};
        struct arena a;
        msgpack_sbuffer out;
        msgpack_packer pk;
        int rc;

        arena_init(&a, cfg->arena_limit);
        msgpack_sbuffer_init(&out);
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        rc = payload ? cfg->handle(cfg->ctx, payload, &a, &pk, &err)
                     : st_fail(&err, ST_EMISSING, "job has no payload");
        msgpack_packer_init(&pk, &r->result, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_u64(&pk, "job_id", r->job_id);
        wire_pack_kv_str(&pk, "stage", cfg->stage);
        wire_pack_kv_bool(&pk, "ok", rc == 0);
        if (rc == 0) {
                wire_pack_key(&pk, "payload");
                msgpack_sbuffer_write(&r->result, out.data, out.size);
        } else {
                wire_pack_kv_str(&pk, "error", st_error_text(&err, rc));
                log_warn("%s job %llu failed: %s", cfg->stage, (unsigned long long)r->job_id,
                         st_error_text(&err, rc));
        }
        msgpack_sbuffer_destroy(&out);
        arena_release(&a);
}

static void *job_thread(void *arg)
{
        struct running *r = arg;

        pack_result(r);
        zmq_send(r->signal, "", 0, 0);
        return NULL;
}

/* Start a JOB on its thread; false (and m released) when it cannot run. */
static bool start_job(struct running *r, const struct worker_config *cfg, struct wire_msg *m)
{
        if (wire_get_u64(&m->body.data, "job_id", &r->job_id)) {
                log_warn("JOB without job_id dropped");
                wire_msg_release(m);
                return false;
        }
        r->cfg = cfg;
        r->msg = *m; /* the thread owns the message now */
        msgpack_sbuffer_init(&r->result);
        if (pthread_create(&r->thread, NULL, job_thread, r) != 0) {
                log_error("cannot start a job thread");
                msgpack_sbuffer_destroy(&r->result);
                wire_msg_release(&r->msg);
                return false;
        }
        return true;
}

/* The job thread signalled: join it, send its RESULT, free what it used. */
static void finish_job(struct running *r, void *sock, void *done)
{
        zmq_msg_t f;

        zmq_msg_init(&f);
        zmq_msg_recv(&f, done, 0);
        zmq_msg_close(&f);
        pthread_join(r->thread, NULL);
        if (send_body(sock, "RESULT", &r->result))
                log_warn("could not send RESULT of job %llu", (unsigned long long)r->job_id);
        msgpack_sbuffer_destroy(&r->result);
        wire_msg_release(&r->msg);
}

/* A job offered while one runs (a race after a reconnect): hand it back at once. */
static void nack(void *sock, const struct worker_config *cfg, const struct wire_msg *m)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        uint64_t job_id;

        if (wire_get_u64(&m->body.data, "job_id", &job_id))
                return;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "job_id", job_id);
        wire_pack_kv_str(&pk, "stage", cfg->stage);
        send_body(sock, "NACK", &sb);
        msgpack_sbuffer_destroy(&sb);
}

static void *connect_dealer(void *ctx, const struct worker_config *cfg, const struct held *h,
                            size_t free)
{
        void *sock = wire_socket(ctx, ZMQ_DEALER);
        struct st_error err = {0};

        if (!sock)
                return NULL;
        if (security_client(cfg->security, sock, cfg->endpoint, &err)) {
                log_error("%s", err.msg);
                zmq_close(sock);
                return NULL;
        }
        if (zmq_connect(sock, cfg->endpoint) != 0) {
                log_error("cannot connect to %s: %s", cfg->endpoint, zmq_strerror(zmq_errno()));
                zmq_close(sock);
                return NULL;
        }
        /* A heartbeat first: it names the jobs held and sets the credit absolutely. */
        send_ready(sock, cfg->stage, "HEARTBEAT", h, free);
        return sock;
}

/* How many more jobs the worker may take now. */
static size_t free_slots(const struct worker_config *cfg, const struct held *h, long jobs)
{
        size_t held = held_count(h), free = held < h->window ? h->window - held : 0;

        if (*cfg->stop)
                return 0;
        if (cfg->max_jobs) {
                long left = cfg->max_jobs - jobs - (long)held;

                if (left < (long)free)
                        free = left > 0 ? (size_t)left : 0;
        }
        return free;
}

/* Start the oldest queued job, if any. */
static void start_queued(struct running *r, const struct worker_config *cfg, struct held *h)
{
        while (!h->busy && h->n_queued) {
                struct wire_msg m = h->queue[0];

                memmove(h->queue, h->queue + 1, --h->n_queued * sizeof(h->queue[0]));
                h->busy = start_job(r, cfg, &m);
                if (h->busy)
                        h->running = r->job_id;
        }
}

/* Hand back every queued job (stopping): the broker offers them to others at once. */
static void nack_queued(void *sock, const struct worker_config *cfg, struct held *h)
{
        for (size_t i = 0; i < h->n_queued; i++) {
                nack(sock, cfg, &h->queue[i]);
                wire_msg_release(&h->queue[i]);
        }
        h->n_queued = 0;
}

int worker_run(const struct worker_config *cfg)
{
        static int instance;
        void *ctx = zmq_ctx_new();
        void *sock = NULL, *done = NULL;
        char endpoint[64];
        struct running job;
        struct held h = {0};
        long backoff = BACKOFF_MIN_MS;
        int64_t last_heard, last_sent;
        long jobs = 0;
        int rc = 0;

        if (!ctx)
                return ST_ENOMEM;
        h.window = cfg->window ? cfg->window : WORKER_DEFAULT_WINDOW;
        if (h.window > WORKER_MAX_WINDOW)
                h.window = WORKER_MAX_WINDOW;
        memset(&job, 0, sizeof(job));
        /* One PAIR for the job threads' "done", made here, used by one thread at a time. */
        snprintf(endpoint, sizeof(endpoint), "inproc://worker-done-%d", instance++);
        done = zmq_socket(ctx, ZMQ_PAIR);
        job.signal = zmq_socket(ctx, ZMQ_PAIR);
        if (!done || !job.signal || zmq_bind(done, endpoint) != 0 ||
            zmq_connect(job.signal, endpoint) != 0) {
                rc = ST_EIO;
                goto out_ctx;
        }
        sock = connect_dealer(ctx, cfg, &h, free_slots(cfg, &h, jobs));
        if (!sock) {
                rc = ST_EINVAL;
                goto out_ctx;
        }
        last_heard = last_sent = wire_now_ms();
        /* A job that runs when a stop comes is finished and its result sent first. */
        while (h.busy || (!*cfg->stop && (cfg->max_jobs == 0 || jobs < cfg->max_jobs))) {
                zmq_pollitem_t items[2] = {{sock, 0, ZMQ_POLLIN, 0}, {done, 0, ZMQ_POLLIN, 0}};
                struct wire_msg m;
                int64_t now;

                if (*cfg->stop && h.n_queued)
                        nack_queued(sock, cfg, &h);
                zmq_poll(items, 2, WIRE_HEARTBEAT_MS / 2);
                now = wire_now_ms();
                if (h.busy && (items[1].revents & ZMQ_POLLIN)) {
                        finish_job(&job, sock, done);
                        h.busy = false;
                        jobs++;
                        start_queued(&job, cfg, &h);
                        if (free_slots(cfg, &h, jobs))
                                send_ready(sock, cfg->stage, "READY", &h, 1);
                        last_sent = now;
                        continue;
                }
                if ((items[0].revents & ZMQ_POLLIN) &&
                    wire_recv(sock, false, ZMQ_DONTWAIT, &m) == 0) {
                        last_heard = now;
                        backoff = BACKOFF_MIN_MS;
                        if (strcmp(m.command, "JOB") || !m.has_body) {
                                wire_msg_release(&m);
                        } else if (!h.busy) {
                                h.busy = start_job(&job, cfg, &m);
                                if (h.busy)
                                        h.running = job.job_id;
                        } else if (free_slots(cfg, &h, jobs)) {
                                h.queue[h.n_queued++] = m; /* runs when the current one ends */
                        } else {
                                /* More than the window (a race after a reconnect): hand back. */
                                nack(sock, cfg, &m);
                                wire_msg_release(&m);
                        }
                        continue;
                }
                if (now - last_sent >= WIRE_HEARTBEAT_MS) {
                        /* The heartbeat names every job held: the broker extends their leases. */
                        send_ready(sock, cfg->stage, "HEARTBEAT", &h, free_slots(cfg, &h, jobs));
                        last_sent = now;
                }
                if (now - last_heard > (int64_t)WIRE_HEARTBEAT_MS * WIRE_LIVENESS) {
                        log_warn("catalog silent for %lld ms; reconnecting in %ld ms",
                                 (long long)(now - last_heard), backoff);
                        zmq_close(sock);
                        for (long waited = 0; waited < backoff && !*cfg->stop; waited += 100)
                                zmq_poll(NULL, 0, 100);
                        if (backoff < BACKOFF_MAX_MS)
                                backoff *= 2;
                        sock = connect_dealer(ctx, cfg, &h, free_slots(cfg, &h, jobs));
                        if (!sock) {
                                rc = ST_EIO;
                                break;
                        }
                        last_heard = last_sent = wire_now_ms();
                }
        }
        if (h.busy) { /* the socket could not be made again: still wait for the thread */
                pthread_join(job.thread, NULL);
                msgpack_sbuffer_destroy(&job.result);
                wire_msg_release(&job.msg);
        }
        for (size_t i = 0; i < h.n_queued; i++)
                wire_msg_release(&h.queue[i]);
        if (sock)
                zmq_close(sock);
out_ctx:
        if (job.signal)
                zmq_close(job.signal);
        if (done)
                zmq_close(done);
        zmq_ctx_term(ctx);
        return rc;
}
