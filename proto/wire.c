#include "proto/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <zmq.h>

#include "proto/log.h"

void *wire_socket(void *ctx, int type)
{
        void *s = zmq_socket(ctx, type);
        int linger = 0;
        int64_t max = WIRE_MAX_FRAME;

        if (!s)
                return NULL;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max));
        return s;
}

static int send_frame(void *sock, const void *p, size_t len, int flags)
{
        if (zmq_send(sock, p, len, flags) < 0)
                return errno == EAGAIN ? ST_EAGAIN : ST_EIO;
        return 0;
}

int wire_send(void *sock, const unsigned char *identity, size_t identity_len, const char *command,
              const char *body, size_t body_len)
{
        int flags = identity ? ZMQ_DONTWAIT : 0;
        int rc;

        if (identity) {
                rc = send_frame(sock, identity, identity_len, flags | ZMQ_SNDMORE);
                if (rc)
                        return rc;
        }
        rc = send_frame(sock, WIRE_PROTOCOL, strlen(WIRE_PROTOCOL), flags | ZMQ_SNDMORE);
        if (rc)
                return rc;
        if (!body)
                return send_frame(sock, command, strlen(command), flags);
        rc = send_frame(sock, command, strlen(command), flags | ZMQ_SNDMORE);
        if (rc)
                return rc;
        return send_frame(sock, body, body_len, flags);
}

static bool more(void *sock)
{
        int v = 0;
        size_t len = sizeof(v);

        zmq_getsockopt(sock, ZMQ_RCVMORE, &v, &len);
        return v != 0;
}

static void drain(void *sock)
{
        zmq_msg_t f;

        while (more(sock)) {
                zmq_msg_init(&f);
                zmq_msg_recv(&f, sock, 0);
                zmq_msg_close(&f);
        }
}

/* Receive one frame into f; ST_EPROTO if the message ended before it. */
static int recv_frame(void *sock, zmq_msg_t *f, int flags, bool first)
{
        if (!first && !more(sock))
                return ST_EPROTO;
        zmq_msg_init(f);
        if (zmq_msg_recv(f, sock, first ? flags : 0) < 0) {
                zmq_msg_close(f);
                return errno == EAGAIN ? ST_EAGAIN : ST_EIO;
        }
        return 0;
}

int wire_recv(void *sock, bool router, int flags, struct wire_msg *m)
{
        zmq_msg_t f;
        size_t len;
        int rc;

        memset(m, 0, sizeof(*m));
        msgpack_unpacked_init(&m->body);
        if (router) {
                rc = recv_frame(sock, &f, flags, true);
                if (rc)
                        return rc;
                len = zmq_msg_size(&f);
                if (len > WIRE_MAX_IDENTITY)
                        len = WIRE_MAX_IDENTITY;
                memcpy(m->identity, zmq_msg_data(&f), len);
                m->identity_len = len;
                zmq_msg_close(&f);
        }
        rc = recv_frame(sock, &f, flags, !router);
        if (rc)
                return rc;
        len = zmq_msg_size(&f);
        rc = len == strlen(WIRE_PROTOCOL) && !memcmp(zmq_msg_data(&f), WIRE_PROTOCOL, len);
        zmq_msg_close(&f);
        if (!rc)
                goto bad;
        if (recv_frame(sock, &f, 0, false))
                goto bad;
        len = zmq_msg_size(&f);
        if (len == 0 || len >= sizeof(m->command)) {
                zmq_msg_close(&f);
                goto bad;
        }
        memcpy(m->command, zmq_msg_data(&f), len);
        zmq_msg_close(&f);
        if (!more(sock))
                return 0;
        if (recv_frame(sock, &f, 0, false))
                goto bad;
        {
                /* Unpacked strings point into the frame: keep a copy as long as the message. */
                size_t off = 0, size = zmq_msg_size(&f);
                msgpack_unpack_return r;

                m->frame = malloc(size ? size : 1);
                if (!m->frame) {
                        zmq_msg_close(&f);
                        goto bad;
                }
                memcpy(m->frame, zmq_msg_data(&f), size);
                zmq_msg_close(&f);
                r = msgpack_unpack_next(&m->body, m->frame, size, &off);
                if (r != MSGPACK_UNPACK_SUCCESS || off != size ||
                    m->body.data.type != MSGPACK_OBJECT_MAP)
                        goto bad;
        }
        m->has_body = true;
        if (more(sock))
                goto bad;
        return 0;
bad:
        drain(sock);
        wire_msg_release(m);
        log_warn("dropped a malformed message (command '%.15s')", m->command);
        return ST_EPROTO;
}

void wire_msg_release(struct wire_msg *m)
{
        free(m->frame);
        m->frame = NULL;
        msgpack_unpacked_destroy(&m->body);
        msgpack_unpacked_init(&m->body);
        m->has_body = false;
}

int wire_wait(void *sock, long timeout_ms)
{
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, timeout_ms);

        if (rc < 0)
                return errno == EINTR ? 0 : ST_EIO;
        return rc > 0;
}

const msgpack_object *wire_get(const msgpack_object *map, const char *key)
{
        size_t klen = strlen(key);

        if (!map || map->type != MSGPACK_OBJECT_MAP)
                return NULL;
        for (uint32_t i = 0; i < map->via.map.size; i++) {
                const msgpack_object *k = &map->via.map.ptr[i].key;

                if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
                    !memcmp(k->via.str.ptr, key, klen))
                        return &map->via.map.ptr[i].val;
        }
        return NULL;
}

int wire_get_u64(const msgpack_object *map, const char *key, uint64_t *out)
{
        const msgpack_object *v = wire_get(map, key);

        if (!v)
                return ST_EMISSING;
        if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                return ST_ETYPE;
        *out = v->via.u64;
        return 0;
}

int wire_get_bool(const msgpack_object *map, const char *key, bool *out)
{
        const msgpack_object *v = wire_get(map, key);

        if (!v)
                return ST_EMISSING;
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
                return ST_ETYPE;
        *out = v->via.boolean;
        return 0;
}

int wire_get_double(const msgpack_object *map, const char *key, double *out)
{
        const msgpack_object *v = wire_get(map, key);

        if (!v)
                return ST_EMISSING;
        switch (v->type) {
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                *out = v->via.f64;
                return 0;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                *out = (double)v->via.u64;
                return 0;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                *out = (double)v->via.i64;
                return 0;
        default:
                return ST_ETYPE;
        }
}

int wire_get_bytes(const msgpack_object *map, const char *key, const char **ptr, size_t *len)
{
        const msgpack_object *v = wire_get(map, key);

        if (!v)
                return ST_EMISSING;
        if (v->type == MSGPACK_OBJECT_BIN) {
                *ptr = v->via.bin.ptr;
                *len = v->via.bin.size;
                return 0;
        }
        if (v->type == MSGPACK_OBJECT_STR) {
                *ptr = v->via.str.ptr;
                *len = v->via.str.size;
                return 0;
        }
        return ST_ETYPE;
}

int wire_get_str(const msgpack_object *map, const char *key, struct arena *a, char **out)
{
        const msgpack_object *v = wire_get(map, key);

        if (!v)
                return ST_EMISSING;
        if (v->type != MSGPACK_OBJECT_STR)
                return ST_ETYPE;
        if (memchr(v->via.str.ptr, '\0', v->via.str.size))
                return ST_EPARSE;
        *out = arena_strndup(a, v->via.str.ptr, v->via.str.size);
        return *out ? 0 : ST_ENOMEM;
}

void wire_pack_str(msgpack_packer *pk, const char *s)
{
        size_t len;

        if (!s) {
                msgpack_pack_nil(pk);
                return;
        }
        len = strlen(s);
        msgpack_pack_str(pk, len);
        msgpack_pack_str_body(pk, s, len);
}

void wire_pack_key(msgpack_packer *pk, const char *key)
{
        wire_pack_str(pk, key);
}

void wire_pack_kv_str(msgpack_packer *pk, const char *key, const char *s)
{
        wire_pack_key(pk, key);
        wire_pack_str(pk, s);
}

void wire_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
        wire_pack_key(pk, key);
        msgpack_pack_uint64(pk, v);
}

void wire_pack_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
        wire_pack_key(pk, key);
        if (v)
                msgpack_pack_true(pk);
        else
                msgpack_pack_false(pk);
}

void wire_pack_kv_bin(msgpack_packer *pk, const char *key, const void *p, size_t len)
{
        wire_pack_key(pk, key);
        msgpack_pack_bin(pk, len);
        msgpack_pack_bin_body(pk, p, len);
}

uint64_t wire_id_hash(const char *id)
{
        uint64_t h = 1469598103934665603ULL;

        for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
                h ^= *p;
                h *= 1099511628211ULL;
        }
        return h;
}

int64_t wire_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int wire_request(void *ctx, const struct security *sec, const char *endpoint, const char *command,
                 const char *body, size_t body_len, long timeout_ms, struct wire_msg *reply)
{
        void *sock = wire_socket(ctx, ZMQ_DEALER);
        struct st_error err = {0};
        int rc;

        if (!sock)
                return ST_EIO;
        if (security_client(sec, sock, endpoint, &err)) {
                log_error("%s", err.msg); /* keys are never in it */
                zmq_close(sock);
                return ST_EINVAL;
        }
        if (zmq_connect(sock, endpoint) != 0) {
                zmq_close(sock);
                return ST_EINVAL;
        }
        rc = wire_send(sock, NULL, 0, command, body, body_len);
        if (!rc)
                rc = wire_wait(sock, timeout_ms);
        if (rc == 0)
                rc = ST_ETIMEOUT;
        else if (rc > 0)
                rc = wire_recv(sock, false, ZMQ_DONTWAIT, reply);
        zmq_close(sock);
        return rc;
}

static json_t *to_json(const msgpack_object *o, int depth)
{
        json_t *j;

        if (depth > 64)
                return json_null();
        switch (o->type) {
        case MSGPACK_OBJECT_BOOLEAN:
                return json_boolean(o->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                /* json_int_t is signed: a larger uint would come out negative */
                if (o->via.u64 > INT64_MAX)
                        return json_real((double)o->via.u64);
                return json_integer((json_int_t)o->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                return json_integer((json_int_t)o->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                return json_real(o->via.f64);
        case MSGPACK_OBJECT_STR:
                return json_stringn(o->via.str.ptr, o->via.str.size);
        case MSGPACK_OBJECT_BIN:
                return json_pack("{s:I}", "bin", (json_int_t)o->via.bin.size);
        case MSGPACK_OBJECT_ARRAY:
                j = json_array();
                for (uint32_t i = 0; j && i < o->via.array.size; i++)
                        json_array_append_new(j, to_json(&o->via.array.ptr[i], depth + 1));
                return j;
        case MSGPACK_OBJECT_MAP:
                j = json_object();
                for (uint32_t i = 0; j && i < o->via.map.size; i++) {
                        const msgpack_object *k = &o->via.map.ptr[i].key;
                        char key[256];

                        if (k->type != MSGPACK_OBJECT_STR || k->via.str.size >= sizeof(key))
                                continue;
                        memcpy(key, k->via.str.ptr, k->via.str.size);
                        key[k->via.str.size] = '\0';
                        json_object_set_new(j, key, to_json(&o->via.map.ptr[i].val, depth + 1));
                }
                return j;
        default:
                return json_null();
        }
}

char *wire_to_json(const msgpack_object *o, int indent)
{
        json_t *j = to_json(o, 0);
        char *s = j ? json_dumps(j, JSON_INDENT(indent) | JSON_SORT_KEYS) : NULL;

        json_decref(j);
        return s;
}
