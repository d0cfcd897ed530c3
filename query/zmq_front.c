/* zmq_front.c - the query node's ZeroMQ front (see zmq_front.h). */
#include "query/zmq_front.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#include "proto/log.h"
#include "proto/msgpack_json.h"
#include "proto/wire.h"
#include "query/request.h"

#define WORKER_POLL_MS 100 /* how soon an idle worker sees the front stopping */

/* One received message: its frames. */
struct message {
        zmq_msg_t frames[ZMQ_FRONT_MAX_FRAMES];
        size_t n;
};

struct zmq_front {
        struct service *svc;      /* borrowed */
        struct security security; /* a copy: its ZAP handler runs on ctx */
        void *ctx;
        void *router;    /* clients; used by the front thread only */
        void *backend;   /* ROUTER to the workers; used by the front thread only */
        void *stop_recv; /* PAIR, used by the front thread only: a message means stop */
        void *stop_send; /* PAIR, used by the owner only */
        pthread_t thread;
        pthread_t workers[SERVICE_MAX_LANES];
        int n_workers; /* started */
        bool thread_started;
        atomic_bool stopping; /* workers end once they see it */
        char backend_endpoint[64];
        /* The front thread's: idle workers (their routing ids), and requests waiting for one. */
        char idle[SERVICE_MAX_LANES][8];
        int n_idle;
        struct message *pending; /* ring of ZMQ_FRONT_MAX_PENDING */
        size_t pending_first, n_pending;
};

/* ---- one request ---- */

/* An error answer in the HTTP API's shape, counted by the service. */
static unsigned refuse(struct zmq_front *f, unsigned status, int code, const char *message,
                       json_t **answer)
{
        service_count_error(f->svc);
        *answer = service_error_json(code, message);
        return status;
}

/* The op of a request: "compose" when absent or null. */
static int op_of(const json_t *req, enum service_op *op)
{
        const json_t *v = json_object_get(req, "op");

        *op = SERVICE_COMPOSE;
        if (!v || json_is_null(v) ||
            (json_is_string(v) && !strcmp(json_string_value(v), "compose")))
                return 0;
        if (json_is_string(v) && !strcmp(json_string_value(v), "retrieve")) {
                *op = SERVICE_RETRIEVE;
                return 0;
        }
        if (json_is_string(v) && !strcmp(json_string_value(v), "adapter")) {
                *op = SERVICE_ADAPTER;
                return 0;
        }
        return ST_EINVAL;
}

/* The id of a request map, if it has one: *id is NULL, or a new JSON scalar. */
static int id_of(const msgpack_object *map, json_t **id, struct st_error *err)
{
        *id = NULL;
        for (uint32_t i = 0; i < map->via.map.size; i++) {
                const msgpack_object_kv *kv = &map->via.map.ptr[i];

                if (kv->key.type != MSGPACK_OBJECT_STR || kv->key.via.str.size != 2 ||
                    memcmp(kv->key.via.str.ptr, "id", 2))
                        continue;
                if (kv->val.type == MSGPACK_OBJECT_ARRAY || kv->val.type == MSGPACK_OBJECT_MAP)
                        return st_fail(err, ST_ETYPE, "id must be nil, bool, int, float or str");
                return msgpack_json_from_object(&kv->val, id, err);
        }
        return 0;
}

/* Run the request as the HTTP front would: its JSON body, less op and id. */
static unsigned run(struct zmq_front *f, json_t *req, json_t **answer)
{
        enum service_op op;
        unsigned status;
        char *body;

        if (op_of(req, &op))
                return refuse(f, 400, ST_EINVAL,
                              "op must be \"compose\", \"retrieve\" or \"adapter\"", answer);
        if (op == SERVICE_ADAPTER) {
                const json_t *id = json_object_get(req, "adapter");

                if (!json_is_string(id))
                        return refuse(f, 400, ST_EINVAL, "adapter: the adapter id, a str", answer);
                return service_handle(f->svc, op, json_string_value(id), json_string_length(id),
                                      answer);
        }
        json_object_del(req, "op");
        json_object_del(req, "id");
        body = json_dumps(req, JSON_COMPACT);
        if (!body)
                return refuse(f, 500, ST_ENOMEM, "out of memory", answer);
        status = service_handle(f->svc, op, body, strlen(body), answer);
        free(body);
        return status;
}

/*
 * Answer one request body: the status, *answer (an object, NULL only when
 * memory ran out) and *id (the request's id or NULL).
 */
static unsigned answer_body(struct zmq_front *f, const char *body, size_t len, json_t **answer,
                            json_t **id)
{
        struct st_error err = {0};
        msgpack_unpacked u;
        json_t *req = NULL;
        unsigned status;
        int rc;

        *id = NULL;
        if (len > COMPOSE_REQUEST_MAX_BODY)
                return refuse(f, 413, ST_ETOOBIG, "request over 64 KiB", answer);
        rc = msgpack_json_unpack(body, len, COMPOSE_REQUEST_MAX_BODY, &u, &err);
        if (!rc && u.data.type != MSGPACK_OBJECT_MAP)
                rc = st_fail(&err, ST_ETYPE, "a request is a msgpack map");
        if (!rc)
                rc = id_of(&u.data, id, &err);
        if (!rc)
                rc = msgpack_json_from_object(&u.data, &req, &err);
        msgpack_unpacked_destroy(&u);
        if (rc)
                return refuse(f, rc == ST_ENOMEM ? 500 : 400, rc, st_error_text(&err, rc), answer);
        status = run(f, req, answer);
        json_decref(req);
        return status;
}

/* The reply map: {status, id, answer's keys...} as msgpack (malloc'd). */
static int reply_of(unsigned status, json_t *answer, json_t *id, char **out, size_t *len)
{
        struct st_error err = {0};
        json_t *reply = json_pack("{s:i}", "status", (json_int_t)status);
        int rc = ST_ENOMEM;

        if (!reply)
                return rc;
        if (id && json_object_set(reply, "id", id))
                goto out;
        if (answer && json_object_update_missing(reply, answer))
                goto out;
        rc = msgpack_json_encode(reply, ZMQ_FRONT_MAX_REPLY, out, len, &err);
        if (rc)
                log_warn("cannot send a reply: %s", st_error_text(&err, rc));
out:
        json_decref(reply);
        return rc;
}

/* The reply to one request frame (malloc'd msgpack); NULL only when memory ran out. */
static char *reply_to(struct zmq_front *f, const char *body, size_t len, size_t *reply_len)
{
        json_t *answer = NULL, *id = NULL, *failure;
        unsigned status = answer_body(f, body, len, &answer, &id);
        char *reply = NULL;

        if (reply_of(status, answer, id, &reply, reply_len)) {
                failure = service_error_json(ST_ENOMEM, "cannot encode the answer");
                if (reply_of(500, failure, id, &reply, reply_len))
                        reply = NULL;
                json_decref(failure);
        }
        json_decref(answer);
        json_decref(id);
        return reply;
}

/* ---- frames ---- */

static bool more(void *sock)
{
        int v = 0;
        size_t len = sizeof(v);

        return zmq_getsockopt(sock, ZMQ_RCVMORE, &v, &len) == 0 && v;
}

static void message_release(struct message *m)
{
        for (size_t i = 0; i < m->n; i++)
                zmq_msg_close(&m->frames[i]);
        m->n = 0;
}

/*
 * Receive one whole message; ST_EPROTO (the rest drained) when it has more
 * than ZMQ_FRONT_MAX_FRAMES frames or no frame after the identity.
 */
static int receive(void *sock, struct message *m)
{
        bool again = true;

        m->n = 0;
        while (again && m->n < ZMQ_FRONT_MAX_FRAMES) {
                zmq_msg_init(&m->frames[m->n]);
                if (zmq_msg_recv(&m->frames[m->n], sock, ZMQ_DONTWAIT) < 0) {
                        zmq_msg_close(&m->frames[m->n]);
                        message_release(m);
                        return errno == EAGAIN ? ST_EAGAIN : ST_EIO;
                }
                m->n++;
                again = more(sock);
        }
        if (!again && m->n >= 2)
                return 0;
        while (more(sock)) {
                zmq_msg_t extra;

                zmq_msg_init(&extra);
                zmq_msg_recv(&extra, sock, 0);
                zmq_msg_close(&extra);
        }
        message_release(m);
        return ST_EPROTO;
}

/* Frames of the envelope: up to the first empty frame followed by another, else the identity. */
static size_t envelope_of(const struct message *m)
{
        for (size_t i = 1; i + 1 < m->n; i++)
                if (zmq_msg_size(&m->frames[i]) == 0)
                        return i + 1;
        return 1;
}

/* Send the envelope back, then the reply; a peer gone or full loses it. */
static void send_reply(void *sock, struct message *m, size_t envelope, const char *reply,
                       size_t len)
{
        for (size_t i = 0; i < envelope; i++)
                if (zmq_send(sock, zmq_msg_data(&m->frames[i]), zmq_msg_size(&m->frames[i]),
                             ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
                        return;
        zmq_send(sock, reply, len, ZMQ_DONTWAIT);
}

/* Send the frames of m from first on, the last without ZMQ_SNDMORE; false when sock refused. */
static bool send_frames(void *sock, struct message *m, size_t first)
{
        for (size_t i = first; i < m->n; i++)
                if (zmq_send(sock, zmq_msg_data(&m->frames[i]), zmq_msg_size(&m->frames[i]),
                             (i + 1 < m->n ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
                        return false;
        return true;
}

/* Hand request m (envelope and body) to worker id; m is released. */
static void dispatch(struct zmq_front *f, const char *id, struct message *m)
{
        if (zmq_send(f->backend, id, strlen(id), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            !send_frames(f->backend, m, 0))
                log_warn("could not hand a request to ZeroMQ worker %s", id);
        message_release(m);
}

/* Refuse m at once (no worker sees it) with status and why. */
static void refuse_now(struct zmq_front *f, struct message *m, size_t envelope, unsigned status,
                       int code, const char *why)
{
        json_t *answer;
        char *reply = NULL;
        size_t reply_len = 0;

        status = refuse(f, status, code, why, &answer);
        if (!reply_of(status, answer, NULL, &reply, &reply_len))
                send_reply(f->router, m, envelope, reply, reply_len);
        free(reply);
        json_decref(answer);
        message_release(m);
}

/* A client's message: to an idle worker, into the pending ring, or refused. */
static void from_client(struct zmq_front *f)
{
        struct message m;
        size_t envelope;
        char what[64];
        int rc = receive(f->router, &m);

        if (rc == ST_EPROTO)
                log_warn("dropped a message with a malformed envelope (%d frames at most)",
                         ZMQ_FRONT_MAX_FRAMES);
        if (rc)
                return;
        envelope = envelope_of(&m);
        if (m.n - envelope != 1) {
                snprintf(what, sizeof(what), "a request is one frame, not %zu", m.n - envelope);
                refuse_now(f, &m, envelope, 400, ST_EPROTO, what);
        } else if (f->n_idle > 0) {
                dispatch(f, f->idle[--f->n_idle], &m);
        } else if (f->n_pending < ZMQ_FRONT_MAX_PENDING) {
                struct message *slot =
                    &f->pending[(f->pending_first + f->n_pending++) % ZMQ_FRONT_MAX_PENDING];

                slot->n = m.n;
                for (size_t i = 0; i < m.n; i++) {
                        zmq_msg_init(&slot->frames[i]);
                        zmq_msg_move(&slot->frames[i], &m.frames[i]);
                        zmq_msg_close(&m.frames[i]);
                }
        } else {
                refuse_now(f, &m, envelope, 503, ST_EAGAIN, "too many requests waiting");
        }
}

/*
 * A worker's message: [id] "READY" when it starts, [id] envelope... reply
 * when it answered.  The reply goes to its client; the worker takes the
 * oldest waiting request, or becomes idle.
 */
static void from_worker(struct zmq_front *f)
{
        struct message m;
        char id[8];
        size_t len;

        if (receive(f->backend, &m))
                return;
        len = zmq_msg_size(&m.frames[0]);
        if (len == 0 || len >= sizeof(id) || f->n_idle == SERVICE_MAX_LANES) {
                message_release(&m);
                return;
        }
        memcpy(id, zmq_msg_data(&m.frames[0]), len);
        id[len] = '\0';
        if (m.n > 2 && !send_frames(f->router, &m, 1))
                log_warn("a client left before its reply");
        message_release(&m);
        if (f->n_pending > 0) {
                struct message *next = &f->pending[f->pending_first];

                f->pending_first = (f->pending_first + 1) % ZMQ_FRONT_MAX_PENDING;
                f->n_pending--;
                dispatch(f, id, next);
        } else {
                memcpy(f->idle[f->n_idle++], id, len + 1);
        }
}

static void *front_thread(void *arg)
{
        struct zmq_front *f = arg;
        zmq_pollitem_t items[3] = {{f->router, 0, ZMQ_POLLIN, 0},
                                   {f->backend, 0, ZMQ_POLLIN, 0},
                                   {f->stop_recv, 0, ZMQ_POLLIN, 0}};

        for (;;) {
                if (zmq_poll(items, 3, -1) < 0) {
                        if (zmq_errno() == EINTR)
                                continue;
                        log_error("ZeroMQ front stops: %s", zmq_strerror(zmq_errno()));
                        break;
                }
                if (items[2].revents & ZMQ_POLLIN)
                        break;
                if (items[1].revents & ZMQ_POLLIN)
                        from_worker(f);
                if (items[0].revents & ZMQ_POLLIN)
                        from_client(f);
        }
        while (f->n_pending > 0) {
                message_release(&f->pending[f->pending_first]);
                f->pending_first = (f->pending_first + 1) % ZMQ_FRONT_MAX_PENDING;
                f->n_pending--;
        }
        zmq_close(f->router);
        zmq_close(f->backend);
        zmq_close(f->stop_recv);
        return NULL;
}

/* A worker's routing id: its index. */
struct worker_arg {
        struct zmq_front *f;
        int index;
};

/*
 * A worker: answers the requests the front thread hands it, one at a time,
 * on a lane of the service; ends when the front is stopping.
 */
static void *worker_thread(void *arg)
{
        struct worker_arg *w = arg;
        struct zmq_front *f = w->f;
        void *sock = wire_socket(f->ctx, ZMQ_DEALER);
        char id[8];

        snprintf(id, sizeof(id), "w%d", w->index);
        free(w);
        if (!sock)
                return NULL;
        zmq_setsockopt(sock, ZMQ_ROUTING_ID, id, strlen(id));
        if (zmq_connect(sock, f->backend_endpoint) || zmq_send(sock, "READY", 5, 0) < 0) {
                zmq_close(sock);
                return NULL;
        }
        while (!atomic_load(&f->stopping)) {
                zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
                struct message m;
                size_t envelope, reply_len = 0;
                char *reply;

                if (zmq_poll(&item, 1, WORKER_POLL_MS) <= 0 || receive(sock, &m) == ST_EAGAIN)
                        continue;
                if (m.n == 0)
                        continue;
                envelope = m.n - 1; /* the front sends the envelope, then the one body frame */
                reply = reply_to(f, zmq_msg_data(&m.frames[envelope]),
                                 zmq_msg_size(&m.frames[envelope]), &reply_len);
                if (reply)
                        send_reply(sock, &m, envelope, reply, reply_len);
                else /* out of memory: say so, so that the worker counts as free again */
                        zmq_send(sock, "READY", 5, ZMQ_DONTWAIT);
                free(reply);
                message_release(&m);
        }
        zmq_close(sock);
        return NULL;
}

/* ---- start and stop ---- */

/* Sockets and thread of f; signals stay with the process's other threads. */
static int start(struct zmq_front *f, const char *endpoint, struct st_error *err)
{
        int64_t max = ZMQ_FRONT_MAX_FRAME;
        char pipe[64];

        f->router = wire_socket(f->ctx, ZMQ_ROUTER);
        f->backend = wire_socket(f->ctx, ZMQ_ROUTER);
        f->stop_recv = wire_socket(f->ctx, ZMQ_PAIR);
        f->stop_send = wire_socket(f->ctx, ZMQ_PAIR);
        if (!f->router || !f->backend || !f->stop_recv || !f->stop_send)
                return st_fail(err, ST_EIO, "cannot make ZeroMQ sockets: %s",
                               zmq_strerror(zmq_errno()));
        zmq_setsockopt(f->router, ZMQ_MAXMSGSIZE, &max, sizeof(max));
        if (security_server(&f->security, f->ctx, f->router, endpoint, err))
                return err && err->code ? err->code : ST_EINVAL;
        if (zmq_bind(f->router, endpoint))
                return st_fail(err, ST_EIO, "cannot bind %s: %s", endpoint,
                               zmq_strerror(zmq_errno()));
        snprintf(pipe, sizeof(pipe), "inproc://zmq-front-stop-%p", (void *)f);
        if (zmq_bind(f->stop_recv, pipe) || zmq_connect(f->stop_send, pipe))
                return st_fail(err, ST_EIO, "cannot make the stop pipe: %s",
                               zmq_strerror(zmq_errno()));
        snprintf(f->backend_endpoint, sizeof(f->backend_endpoint), "inproc://zmq-front-work-%p",
                 (void *)f);
        if (zmq_bind(f->backend, f->backend_endpoint))
                return st_fail(err, ST_EIO, "cannot make the workers' pipe: %s",
                               zmq_strerror(zmq_errno()));
        if (pthread_create(&f->thread, NULL, front_thread, f))
                return st_fail(err, ST_EIO, "cannot start the ZeroMQ front's thread");
        f->thread_started = true;
        /* Sockets now belong to the front thread; a failure from here on is zmq_front_stop's. */
        for (int i = 0; i < service_lanes(f->svc); i++) {
                struct worker_arg *w = malloc(sizeof(*w));

                if (!w)
                        return st_fail(err, ST_ENOMEM, "out of memory");
                w->f = f;
                w->index = i;
                if (pthread_create(&f->workers[i], NULL, worker_thread, w)) {
                        free(w);
                        return st_fail(err, ST_EIO, "cannot start a ZeroMQ worker thread");
                }
                f->n_workers++;
        }
        return 0;
}

int zmq_front_start(struct service *svc, const char *endpoint, const struct security *sec,
                    struct zmq_front **out, struct st_error *err)
{
        struct zmq_front *f = calloc(1, sizeof(*f));
        sigset_t all, old;
        int rc;

        *out = NULL;
        if (!f)
                return st_fail(err, ST_ENOMEM, "out of memory");
        f->svc = svc;
        atomic_init(&f->stopping, false);
        f->pending = calloc(ZMQ_FRONT_MAX_PENDING, sizeof(*f->pending));
        if (!f->pending) {
                free(f);
                return st_fail(err, ST_ENOMEM, "out of memory");
        }
        rc = security_copy(&f->security, sec, err);
        if (rc)
                goto out_free;
        f->ctx = zmq_ctx_new();
        if (!f->ctx) {
                rc = st_fail(err, ST_EIO, "cannot make a ZeroMQ context");
                goto out_security;
        }
        /* The front's and the ZAP handler's threads inherit a mask blocking every signal. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = start(f, endpoint, err);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc && f->thread_started) {
                zmq_front_stop(&f);
                return rc;
        }
        if (rc)
                goto out_sockets;
        *out = f;
        return 0;
out_sockets:
        if (f->router)
                zmq_close(f->router);
        if (f->backend)
                zmq_close(f->backend);
        if (f->stop_recv)
                zmq_close(f->stop_recv);
        if (f->stop_send)
                zmq_close(f->stop_send);
out_security:
        security_release(&f->security); /* its ZAP socket must close before the context ends */
        if (f->ctx)
                zmq_ctx_term(f->ctx);
out_free:
        free(f->pending);
        free(f);
        return rc;
}

void zmq_front_stop(struct zmq_front **fp)
{
        struct zmq_front *f = *fp;

        if (!f)
                return;
        atomic_store(&f->stopping, true);
        zmq_send(f->stop_send, "", 0, ZMQ_DONTWAIT);
        pthread_join(f->thread, NULL);
        for (int i = 0; i < f->n_workers; i++)
                pthread_join(f->workers[i], NULL);
        zmq_close(f->stop_send);
        free(f->pending);
        security_release(&f->security); /* its ZAP socket must close before the context ends */
        zmq_ctx_term(f->ctx);
        free(f);
        *fp = NULL;
}
