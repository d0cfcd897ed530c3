/*
 * test_wire.c - the ZeroMQ message helpers of proto/wire.h over real
 * sockets (inproc:// and tcp://127.0.0.1 on a port the kernel picks):
 * commands with and without a body both ways, identities on a ROUTER,
 * every kind of malformed message (dropped with ST_EPROTO, the socket still
 * usable after), the wire_get_* accessors on mistyped values, wire_request
 * with and without an answer, wire_to_json and wire_id_hash.
 */
#include "proto/wire.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#define WAIT_MS 5000 /* generous: only a broken socket takes this long */

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_wire.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

/* ---- helpers ---- */

struct frame {
        const char *data;
        size_t len;
};

#define FRAME(s) ((struct frame){(s), sizeof(s) - 1})

/* Send raw frames as one multipart message, bypassing wire_send. */
static void send_frames(void *sock, const struct frame *f, size_t n)
{
        for (size_t i = 0; i < n; i++)
                CHECK(zmq_send(sock, f[i].data, f[i].len, i + 1 < n ? ZMQ_SNDMORE : 0) ==
                      (int)f[i].len);
}

/* Wait for one message and receive it. */
static int recv_msg(void *sock, bool router, struct wire_msg *m)
{
        int ready = wire_wait(sock, WAIT_MS);

        CHECK(ready == 1);
        if (ready != 1) {
                memset(m, 0, sizeof(*m));
                msgpack_unpacked_init(&m->body);
                return ST_ETIMEOUT;
        }
        return wire_recv(sock, router, ZMQ_DONTWAIT, m);
}

/* A body {n: n, s: s}. */
static void pack_body(msgpack_sbuffer *sb, uint64_t n, const char *s)
{
        msgpack_packer pk;

        msgpack_sbuffer_init(sb);
        msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "n", n);
        wire_pack_kv_str(&pk, "s", s);
}

/* A connected ROUTER/DEALER pair on endpoint; *endpoint_out gets the bound address. */
static void make_pair(void *ctx, const char *endpoint, void **router, void **dealer,
                      const char *dealer_id, char *endpoint_out, size_t out_len)
{
        size_t len = out_len;

        *router = wire_socket(ctx, ZMQ_ROUTER);
        *dealer = wire_socket(ctx, ZMQ_DEALER);
        CHECK(*router && *dealer);
        CHECK(zmq_bind(*router, endpoint) == 0);
        CHECK(zmq_getsockopt(*router, ZMQ_LAST_ENDPOINT, endpoint_out, &len) == 0);
        if (dealer_id)
                CHECK(zmq_setsockopt(*dealer, ZMQ_ROUTING_ID, dealer_id, strlen(dealer_id)) == 0);
        CHECK(zmq_connect(*dealer, endpoint_out) == 0);
}

/* ---- round trips ---- */

/* A DEALER and a ROUTER talk both ways, with and without a body. */
static void test_round_trip(void *ctx, const char *endpoint)
{
        char bound[256];
        void *router, *dealer;
        msgpack_sbuffer sb;
        struct wire_msg m;
        struct arena a;
        uint64_t n = 0;
        char *s = NULL;
        unsigned char identity[WIRE_MAX_IDENTITY];
        size_t identity_len;

        make_pair(ctx, endpoint, &router, &dealer, NULL, bound, sizeof(bound));
        CHECK(strncmp(bound, endpoint, 6) == 0);
        arena_init(&a, 1 << 16);

        /* Nothing waiting yet. */
        CHECK(wire_recv(router, true, ZMQ_DONTWAIT, &m) == ST_EAGAIN);

        /* Without a body. */
        CHECK(wire_send(dealer, NULL, 0, "STATUS", NULL, 0) == 0);
        CHECK(recv_msg(router, true, &m) == 0);
        CHECK(!strcmp(m.command, "STATUS"));
        CHECK(!m.has_body && m.body.data.type == MSGPACK_OBJECT_NIL);
        CHECK(m.identity_len > 0); /* ZeroMQ made one up */
        identity_len = m.identity_len;
        memcpy(identity, m.identity, identity_len);
        wire_msg_release(&m);

        /* With a body; its strings stay valid until release. */
        pack_body(&sb, 42, "hello");
        CHECK(wire_send(dealer, NULL, 0, "READY", sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb);
        CHECK(recv_msg(router, true, &m) == 0);
        CHECK(!strcmp(m.command, "READY") && m.has_body);
        CHECK(m.identity_len == identity_len && !memcmp(m.identity, identity, identity_len));
        CHECK(wire_get_u64(&m.body.data, "n", &n) == 0 && n == 42);
        CHECK(wire_get_str(&m.body.data, "s", &a, &s) == 0 && s && !strcmp(s, "hello"));
        wire_msg_release(&m);

        /* Back from the ROUTER, addressed by identity; a DEALER sees no identity. */
        pack_body(&sb, 7, "job");
        CHECK(wire_send(router, identity, identity_len, "JOB", sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb);
        CHECK(recv_msg(dealer, false, &m) == 0);
        CHECK(!strcmp(m.command, "JOB") && m.has_body && m.identity_len == 0);
        CHECK(wire_get_u64(&m.body.data, "n", &n) == 0 && n == 7);
        wire_msg_release(&m);
        CHECK(wire_send(router, identity, identity_len, "HEARTBEAT", NULL, 0) == 0);
        CHECK(recv_msg(dealer, false, &m) == 0);
        CHECK(!strcmp(m.command, "HEARTBEAT") && !m.has_body);
        wire_msg_release(&m);

        /* Releasing twice is harmless. */
        wire_msg_release(&m);
        arena_release(&a);
        zmq_close(dealer);
        zmq_close(router);
}

/* Two DEALERs with chosen identities: the ROUTER tells them apart and answers each. */
static void test_identities(void *ctx)
{
        char bound[256];
        void *router, *one, *two;
        struct wire_msg m;
        size_t len = sizeof(bound);

        make_pair(ctx, "inproc://identities", &router, &one, "worker-1", bound, sizeof(bound));
        two = wire_socket(ctx, ZMQ_DEALER);
        CHECK(zmq_setsockopt(two, ZMQ_ROUTING_ID, "worker-2", 8) == 0);
        CHECK(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, bound, &len) == 0);
        CHECK(zmq_connect(two, bound) == 0);

        CHECK(wire_send(two, NULL, 0, "READY", NULL, 0) == 0);
        CHECK(recv_msg(router, true, &m) == 0);
        CHECK(m.identity_len == 8 && !memcmp(m.identity, "worker-2", 8));
        wire_msg_release(&m);
        CHECK(wire_send(one, NULL, 0, "READY", NULL, 0) == 0);
        CHECK(recv_msg(router, true, &m) == 0);
        CHECK(m.identity_len == 8 && !memcmp(m.identity, "worker-1", 8));
        wire_msg_release(&m);

        CHECK(wire_send(router, (const unsigned char *)"worker-2", 8, "TWO", NULL, 0) == 0);
        CHECK(wire_send(router, (const unsigned char *)"worker-1", 8, "ONE", NULL, 0) == 0);
        /* An unknown identity is dropped by the ROUTER, not an error. */
        CHECK(wire_send(router, (const unsigned char *)"nobody", 6, "LOST", NULL, 0) == 0);
        CHECK(recv_msg(one, false, &m) == 0 && !strcmp(m.command, "ONE"));
        wire_msg_release(&m);
        CHECK(recv_msg(two, false, &m) == 0 && !strcmp(m.command, "TWO"));
        wire_msg_release(&m);
        CHECK(wire_wait(one, 0) == 0 && wire_wait(two, 0) == 0);

        zmq_close(two);
        zmq_close(one);
        zmq_close(router);
}

/* ---- malformed messages ---- */

/*
 * Send one malformed message and then a good one: the first is dropped with
 * ST_EPROTO, the second arrives whole, so the bad one was fully drained.
 */
static void expect_dropped(void *from, void *to, bool to_router, const struct frame *f, size_t n,
                           const char *what)
{
        struct wire_msg m;
        msgpack_sbuffer sb;
        uint64_t v = 0;
        int rc;

        send_frames(from, f, n);
        pack_body(&sb, 99, "after");
        if (to_router) {
                CHECK(wire_send(from, NULL, 0, "GOOD", sb.data, sb.size) == 0);
        } else {
                /* from is a ROUTER: f[0] is the identity. */
                CHECK(wire_send(from, (const unsigned char *)f[0].data, f[0].len, "GOOD", sb.data,
                                sb.size) == 0);
        }
        msgpack_sbuffer_destroy(&sb);

        rc = recv_msg(to, to_router, &m);
        if (rc != ST_EPROTO)
                fprintf(stderr, "  %s: got %d (%s)\n", what, rc, st_strerror(rc));
        CHECK(rc == ST_EPROTO);
        CHECK(!m.has_body && m.frame == NULL);
        wire_msg_release(&m);

        rc = recv_msg(to, to_router, &m);
        if (rc != 0 || strcmp(m.command, "GOOD"))
                fprintf(stderr, "  after %s: got %d, command '%s'\n", what, rc, m.command);
        CHECK(rc == 0 && !strcmp(m.command, "GOOD"));
        CHECK(wire_get_u64(&m.body.data, "n", &v) == 0 && v == 99);
        wire_msg_release(&m);
}

static void test_malformed(void *ctx)
{
        /* {"a": 1} */
        static const char map[] = "\x81\xa1\x61\x01";
        static const char map_trailing[] = "\x81\xa1\x61\x01\x01";
        static const char map_truncated[] = "\x82\xa1\x61\x01";
        static const char array[] = "\x93\x01\x02\x03";
        static const char never_used[] = "\xc1";
        char bound[256];
        void *router, *dealer;
        struct wire_msg m;

        make_pair(ctx, "inproc://malformed", &router, &dealer, "peer", bound, sizeof(bound));

        {
                struct frame f[] = {FRAME("STY2"), FRAME("READY")};
                expect_dropped(dealer, router, true, f, 2, "wrong protocol");
        }
        {
                struct frame f[] = {FRAME("READY")};
                expect_dropped(dealer, router, true, f, 1, "no protocol frame");
        }
        {
                struct frame f[] = {FRAME("STY1")};
                expect_dropped(dealer, router, true, f, 1, "missing command");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("")};
                expect_dropped(dealer, router, true, f, 2, "empty command");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("ABCDEFGHIJKLMNOP")};
                expect_dropped(dealer, router, true, f, 2, "command too long");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(never_used)};
                expect_dropped(dealer, router, true, f, 3, "body not msgpack");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME("")};
                expect_dropped(dealer, router, true, f, 3, "empty body");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(array)};
                expect_dropped(dealer, router, true, f, 3, "body not a map");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(map_trailing)};
                expect_dropped(dealer, router, true, f, 3, "trailing bytes");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(map_truncated)};
                expect_dropped(dealer, router, true, f, 3, "truncated body");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(map), FRAME("extra")};
                expect_dropped(dealer, router, true, f, 4, "extra frame");
        }
        {
                struct frame f[] = {FRAME("STY1"), FRAME("READY"), FRAME(map),
                                    FRAME("x"),    FRAME("y"),     FRAME("z")};
                expect_dropped(dealer, router, true, f, 6, "many extra frames");
        }

        /* The same rules on the DEALER side (no identity frame). */
        {
                struct frame f[] = {FRAME("peer"), FRAME("STY1")};
                expect_dropped(router, dealer, false, f, 2, "dealer: missing command");
        }
        {
                struct frame f[] = {FRAME("peer"), FRAME("STY1"), FRAME("JOB"), FRAME(array)};
                expect_dropped(router, dealer, false, f, 4, "dealer: body not a map");
        }
        {
                struct frame f[] = {FRAME("peer"), FRAME("HTTP"), FRAME("JOB"), FRAME(map)};
                expect_dropped(router, dealer, false, f, 4, "dealer: wrong protocol");
        }

        /* The longest command that fits is fine; a good body after all that too. */
        {
                struct frame f[] = {FRAME("STY1"), FRAME("ABCDEFGHIJKLMNO"), FRAME(map)};
                uint64_t v = 0;

                send_frames(dealer, f, 3);
                CHECK(recv_msg(router, true, &m) == 0);
                CHECK(!strcmp(m.command, "ABCDEFGHIJKLMNO") && m.has_body);
                CHECK(wire_get_u64(&m.body.data, "a", &v) == 0 && v == 1);
                wire_msg_release(&m);
        }
        CHECK(wire_wait(router, 0) == 0 && wire_wait(dealer, 0) == 0);
        zmq_close(dealer);
        zmq_close(router);
}

/* ---- reading values ---- */

static void test_accessors(void)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
        const msgpack_object *o;
        struct arena a;
        size_t off = 0, len = 0;
        const char *p = NULL;
        uint64_t u64 = 0;
        double d = 0;
        bool b = false;
        char *s = NULL;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 12);
        wire_pack_kv_u64(&pk, "u", 5);
        wire_pack_key(&pk, "neg");
        msgpack_pack_int64(&pk, -3);
        wire_pack_key(&pk, "f");
        msgpack_pack_double(&pk, 1.5);
        wire_pack_kv_bool(&pk, "t", true);
        wire_pack_kv_str(&pk, "s", "text");
        wire_pack_key(&pk, "nul");
        msgpack_pack_str(&pk, 3);
        msgpack_pack_str_body(&pk, "a\0b", 3);
        wire_pack_kv_bin(&pk, "bin", "\x00\x01\x02", 3);
        wire_pack_kv_str(&pk, "nil", NULL);
        wire_pack_key(&pk, "arr");
        msgpack_pack_array(&pk, 0);
        wire_pack_key(&pk, "map");
        msgpack_pack_map(&pk, 0);
        msgpack_pack_uint64(&pk, 1); /* a key that is not a string */
        msgpack_pack_uint64(&pk, 2);
        wire_pack_key(&pk, "f32");
        msgpack_pack_float(&pk, 0.25f);

        msgpack_unpacked_init(&u);
        CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
        o = &u.data;
        arena_init(&a, 1 << 16);

        /* wire_get */
        CHECK(wire_get(o, "u") != NULL);
        CHECK(wire_get(o, "missing") == NULL);
        CHECK(wire_get(o, "") == NULL);
        CHECK(wire_get(NULL, "u") == NULL);
        CHECK(wire_get(wire_get(o, "arr"), "u") == NULL);                /* not a map */
        CHECK(wire_get(wire_get(o, "s"), "u") == NULL);                  /* not a map */
        CHECK(wire_get(wire_get(o, "map"), "u") == NULL);                /* empty map */
        CHECK(wire_get(o, "ni") == NULL && wire_get(o, "nill") == NULL); /* prefix, longer */
        CHECK(wire_get(o, "nil") && wire_get(o, "nil")->type == MSGPACK_OBJECT_NIL);

        /* u64 */
        CHECK(wire_get_u64(o, "u", &u64) == 0 && u64 == 5);
        CHECK(wire_get_u64(o, "neg", &u64) == ST_ETYPE);
        CHECK(wire_get_u64(o, "f", &u64) == ST_ETYPE);
        CHECK(wire_get_u64(o, "s", &u64) == ST_ETYPE);
        CHECK(wire_get_u64(o, "nil", &u64) == ST_ETYPE);
        CHECK(wire_get_u64(o, "missing", &u64) == ST_EMISSING);
        CHECK(u64 == 5); /* untouched by the failures */

        /* bool */
        CHECK(wire_get_bool(o, "t", &b) == 0 && b);
        CHECK(wire_get_bool(o, "u", &b) == ST_ETYPE);
        CHECK(wire_get_bool(o, "s", &b) == ST_ETYPE);
        CHECK(wire_get_bool(o, "nil", &b) == ST_ETYPE);
        CHECK(wire_get_bool(o, "missing", &b) == ST_EMISSING);

        /* double takes any number */
        CHECK(wire_get_double(o, "f", &d) == 0 && d == 1.5);
        CHECK(wire_get_double(o, "f32", &d) == 0 && d == 0.25);
        CHECK(wire_get_double(o, "u", &d) == 0 && d == 5.0);
        CHECK(wire_get_double(o, "neg", &d) == 0 && d == -3.0);
        CHECK(wire_get_double(o, "t", &d) == ST_ETYPE);
        CHECK(wire_get_double(o, "s", &d) == ST_ETYPE);
        CHECK(wire_get_double(o, "missing", &d) == ST_EMISSING);

        /* str: copied and terminated; an embedded NUL is refused */
        CHECK(wire_get_str(o, "s", &a, &s) == 0 && s && !strcmp(s, "text"));
        CHECK(wire_get_str(o, "nul", &a, &s) == ST_EPARSE);
        CHECK(wire_get_str(o, "bin", &a, &s) == ST_ETYPE);
        CHECK(wire_get_str(o, "u", &a, &s) == ST_ETYPE);
        CHECK(wire_get_str(o, "nil", &a, &s) == ST_ETYPE);
        CHECK(wire_get_str(o, "missing", &a, &s) == ST_EMISSING);
        {
                /* an arena with no room left */
                struct arena tiny;

                arena_init(&tiny, 8);
                CHECK(wire_get_str(o, "s", &tiny, &s) == ST_ENOMEM);
                arena_release(&tiny);
        }

        /* bytes: bin or str, borrowed */
        CHECK(wire_get_bytes(o, "bin", &p, &len) == 0 && len == 3 && !memcmp(p, "\0\1\2", 3));
        CHECK(wire_get_bytes(o, "nul", &p, &len) == 0 && len == 3 && !memcmp(p, "a\0b", 3));
        CHECK(wire_get_bytes(o, "u", &p, &len) == ST_ETYPE);
        CHECK(wire_get_bytes(o, "arr", &p, &len) == ST_ETYPE);
        CHECK(wire_get_bytes(o, "missing", &p, &len) == ST_EMISSING);

        /* Every accessor on something that is not a map: absent. */
        CHECK(wire_get_u64(wire_get(o, "arr"), "u", &u64) == ST_EMISSING);
        CHECK(wire_get_str(NULL, "s", &a, &s) == ST_EMISSING);

        arena_release(&a);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
}

/* ---- wire_request ---- */

struct responder {
        void *sock; /* a bound ROUTER, owned by the responder thread once started */
        int answered;
};

/* Answer one request with PONG {n: 1, s: <its command>}. */
static void *respond_once(void *arg)
{
        struct responder *r = arg;
        struct wire_msg m;
        msgpack_sbuffer sb;

        if (wire_wait(r->sock, WAIT_MS) == 1 && wire_recv(r->sock, true, ZMQ_DONTWAIT, &m) == 0) {
                pack_body(&sb, 1, m.command);
                if (wire_send(r->sock, m.identity, m.identity_len, "PONG", sb.data, sb.size) == 0)
                        r->answered = 1;
                msgpack_sbuffer_destroy(&sb);
                wire_msg_release(&m);
        }
        return NULL;
}

static void test_request(void *ctx)
{
        char endpoint[256];
        size_t len = sizeof(endpoint);
        void *silent = wire_socket(ctx, ZMQ_ROUTER);
        struct responder r = {wire_socket(ctx, ZMQ_ROUTER), 0};
        struct wire_msg reply, m;
        struct arena a;
        pthread_t thread;
        char *s = NULL;

        /* A peer that never answers: ST_ETIMEOUT, though the request did arrive. */
        CHECK(zmq_bind(silent, "tcp://127.0.0.1:0") == 0);
        CHECK(zmq_getsockopt(silent, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0);
        CHECK(wire_request(ctx, NULL, endpoint, "STATUS", NULL, 0, 200, &reply) == ST_ETIMEOUT);
        CHECK(recv_msg(silent, true, &m) == 0 && !strcmp(m.command, "STATUS"));
        wire_msg_release(&m);

        /* A bad endpoint. */
        CHECK(wire_request(ctx, NULL, "not an endpoint", "STATUS", NULL, 0, 200, &reply) ==
              ST_EINVAL);

        /* A peer that answers. */
        len = sizeof(endpoint);
        CHECK(zmq_bind(r.sock, "tcp://127.0.0.1:0") == 0);
        CHECK(zmq_getsockopt(r.sock, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0);
        CHECK(pthread_create(&thread, NULL, respond_once, &r) == 0);
        CHECK(wire_request(ctx, NULL, endpoint, "PING", NULL, 0, WAIT_MS, &reply) == 0);
        CHECK(!strcmp(reply.command, "PONG") && reply.has_body);
        arena_init(&a, 4096);
        CHECK(wire_get_str(&reply.body.data, "s", &a, &s) == 0 && s && !strcmp(s, "PING"));
        arena_release(&a);
        wire_msg_release(&reply);
        pthread_join(thread, NULL);
        CHECK(r.answered);

        zmq_close(r.sock);
        zmq_close(silent);
}

/* ---- JSON and hashing ---- */

static void test_to_json(void)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
        size_t off = 0;
        char *text, *indented;
        json_t *got, *want;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_str(&pk, "name", "caf\xc3\xa9");
        wire_pack_key(&pk, "jobs");
        msgpack_pack_map(&pk, 3);
        wire_pack_key(&pk, "crawl");
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "pending", 3);
        wire_pack_kv_bool(&pk, "done", false);
        wire_pack_key(&pk, "list");
        msgpack_pack_array(&pk, 6);
        msgpack_pack_int64(&pk, -2);
        msgpack_pack_double(&pk, 1.5);
        msgpack_pack_true(&pk);
        msgpack_pack_nil(&pk);
        wire_pack_str(&pk, "s");
        msgpack_pack_array(&pk, 0);
        msgpack_pack_uint64(&pk, 7); /* not a string key: left out */
        msgpack_pack_uint64(&pk, 8);
        wire_pack_kv_bin(&pk, "vector", "abcdefgh", 8);

        msgpack_unpacked_init(&u);
        CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
        text = wire_to_json(&u.data, 0);
        indented = wire_to_json(&u.data, 2);
        CHECK(text && indented);
        got = text ? json_loads(text, 0, NULL) : NULL;
        want = json_loads("{\"name\": \"caf\xc3\xa9\", \"vector\": {\"bin\": 8},"
                          " \"jobs\": {\"crawl\": {\"pending\": 3, \"done\": false},"
                          " \"list\": [-2, 1.5, true, null, \"s\", []]}}",
                          0, NULL);
        CHECK(got && want && json_equal(got, want));
        if (text && (!got || !want || !json_equal(got, want)))
                fprintf(stderr, "  got %s\n", text);
        CHECK(text && !strchr(text, '\n'));
        CHECK(indented && strchr(indented, '\n'));
        /* Keys are sorted, so equal maps give equal text. */
        CHECK(text && strstr(text, "\"jobs\"") < strstr(text, "\"name\""));
        json_decref(got);
        json_decref(want);
        free(text);
        free(indented);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);

        /* A uint past INT64_MAX must not come out negative. */
        {
                msgpack_object big = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
                msgpack_object list = {.type = MSGPACK_OBJECT_ARRAY};

                big.via.u64 = UINT64_MAX;
                list.via.array.size = 1;
                list.via.array.ptr = &big;
                text = wire_to_json(&list, 0);
                got = text ? json_loads(text, 0, NULL) : NULL;
                CHECK(got && json_is_number(json_array_get(got, 0)) &&
                      json_number_value(json_array_get(got, 0)) > 1.8e19);
                if (text && !(got && json_number_value(json_array_get(got, 0)) > 1.8e19))
                        fprintf(stderr, "  [UINT64_MAX] as JSON: %s\n", text);
                json_decref(got);
                free(text);
        }

        /*
         * Nesting deeper than the converter follows (built by hand: msgpack-c
         * does not unpack that deep) still gives valid JSON.
         */
        {
                enum { DEPTH = 200 };
                msgpack_object *nest = calloc(DEPTH + 1, sizeof(*nest));

                CHECK(nest != NULL);
                if (!nest)
                        return;
                for (int i = 0; i < DEPTH; i++) {
                        nest[i].type = MSGPACK_OBJECT_ARRAY;
                        nest[i].via.array.size = 1;
                        nest[i].via.array.ptr = &nest[i + 1];
                }
                nest[DEPTH].type = MSGPACK_OBJECT_POSITIVE_INTEGER;
                nest[DEPTH].via.u64 = 1;
                text = wire_to_json(nest, 0);
                got = text ? json_loads(text, 0, NULL) : NULL;
                CHECK(got != NULL);
                json_decref(got);
                free(text);
                free(nest);
        }
}

static void test_id_hash(void)
{
        /*
         * Shard i owns the ids with wire_id_hash(id) % N == i, so these values
         * are a stored format: a change reassigns every shard.  (The loop is
         * FNV-1a's, but the offset basis in wire.c is 1469598103934665603,
         * not FNV's 14695981039346656037, so these are not FNV-1a vectors.)
         */
        CHECK(wire_id_hash("") == UINT64_C(0x14650fb0739d0383));
        CHECK(wire_id_hash("a") == UINT64_C(0x44bd8ad473cd9906));
        CHECK(wire_id_hash("foobar") == UINT64_C(0x88fad7c0a8ff07f2));
        CHECK(wire_id_hash("civitai:6526@12345") == UINT64_C(0x44d1ba4c7f516894));
        CHECK(wire_id_hash("civitai:1@2") != wire_id_hash("civitai:2@1"));
}

int main(void)
{
        void *ctx = zmq_ctx_new();

        if (!ctx) {
                fprintf(stderr, "zmq_ctx_new failed\n");
                return 1;
        }
        test_round_trip(ctx, "inproc://round-trip");
        test_round_trip(ctx, "tcp://127.0.0.1:0");
        test_identities(ctx);
        test_malformed(ctx);
        test_accessors();
        test_request(ctx);
        test_to_json();
        test_id_hash();
        zmq_ctx_term(ctx);
        if (failures) {
                fprintf(stderr, "test_wire: %d check(s) failed\n", failures);
                return 1;
        }
        printf("test_wire: ok\n");
        return 0;
}
