#include "proto/worker.h"

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

static int send_ready(void *sock, const char *stage, const char *command, bool idle)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_str(&pk, "stage", stage);
        wire_pack_kv_bool(&pk, "idle", idle);
        rc = send_body(sock, command, &sb);
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

/* Run the handler on one JOB and send its RESULT. */
static void run_job(const struct worker_config *cfg, void *sock, const msgpack_object *body)
{
        struct st_error err = {0};
        struct arena a;
        msgpack_sbuffer out, res;
        msgpack_packer pk;
        uint64_t job_id;
        const msgpack_object *payload = wire_get(body, "payload");
        int rc;

        if (wire_get_u64(body, "job_id", &job_id)) {
                log_warn("JOB without job_id dropped");
                return;
        }
        arena_init(&a, cfg->arena_limit);
        msgpack_sbuffer_init(&out);
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        rc = payload ? cfg->handle(cfg->ctx, payload, &a, &pk, &err)
                     : st_fail(&err, ST_EMISSING, "job has no payload");

        msgpack_sbuffer_init(&res);
        msgpack_packer_init(&pk, &res, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_u64(&pk, "job_id", job_id);
        wire_pack_kv_str(&pk, "stage", cfg->stage);
        wire_pack_kv_bool(&pk, "ok", rc == 0);
        if (rc == 0) {
                wire_pack_key(&pk, "payload");
                msgpack_sbuffer_write(&res, out.data, out.size);
        } else {
                wire_pack_kv_str(&pk, "error", st_error_text(&err, rc));
                log_warn("%s job %llu failed: %s", cfg->stage, (unsigned long long)job_id,
                         st_error_text(&err, rc));
        }
        if (send_body(sock, "RESULT", &res))
                log_warn("could not send RESULT of job %llu", (unsigned long long)job_id);
        msgpack_sbuffer_destroy(&res);
        msgpack_sbuffer_destroy(&out);
        arena_release(&a);
}

static void *connect_dealer(void *ctx, const struct worker_config *cfg)
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
        send_ready(sock, cfg->stage, "READY", true);
        return sock;
}

int worker_run(const struct worker_config *cfg)
{
        void *ctx = zmq_ctx_new();
        void *sock;
        long backoff = BACKOFF_MIN_MS;
        int64_t last_heard, last_sent;
        long jobs = 0;
        int rc = 0;

        if (!ctx)
                return ST_ENOMEM;
        sock = connect_dealer(ctx, cfg);
        if (!sock) {
                rc = ST_EINVAL;
                goto out_ctx;
        }
        last_heard = last_sent = wire_now_ms();
        while (!*cfg->stop && (cfg->max_jobs == 0 || jobs < cfg->max_jobs)) {
                struct wire_msg m;
                int64_t now;
                int ready = wire_wait(sock, WIRE_HEARTBEAT_MS / 2);

                now = wire_now_ms();
                if (ready > 0 && wire_recv(sock, false, ZMQ_DONTWAIT, &m) == 0) {
                        last_heard = now;
                        backoff = BACKOFF_MIN_MS;
                        if (!strcmp(m.command, "JOB") && m.has_body) {
                                run_job(cfg, sock, &m.body.data);
                                jobs++;
                                send_ready(sock, cfg->stage, "READY", true);
                                last_sent = wire_now_ms();
                        }
                        wire_msg_release(&m);
                        continue;
                }
                if (now - last_sent >= WIRE_HEARTBEAT_MS) {
                        send_ready(sock, cfg->stage, "HEARTBEAT", true);
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
                        sock = connect_dealer(ctx, cfg);
                        if (!sock) {
                                rc = ST_EIO;
                                goto out_ctx;
                        }
                        last_heard = last_sent = wire_now_ms();
                }
        }
        zmq_close(sock);
out_ctx:
        zmq_ctx_term(ctx);
        return rc;
}
