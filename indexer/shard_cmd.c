/*
 * shard_cmd.c - `stylus shard I/N`: a shard server.  It owns the docs whose
 * wire_id_hash(id) mod N == I, keeps their vectors in its own LMDB
 * (indexer/vecstore.h), follows the catalog's changelog with SYNC requests
 * from its last applied sequence (a new shard starts from 0, which is its
 * snapshot), and answers QUERY on its ROUTER socket (proto/wire.h).
 * Any number of replicas may serve the same I/N; each has its own --data.
 */
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "indexer/vecstore.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/doc.h"
#include "proto/embed.h"
#include "proto/log.h"
#include "proto/wire.h"

#define SYNC_BATCH      1000
#define SYNC_IDLE_MS    500  /* pause between polls once caught up */
#define SYNC_TIMEOUT_MS 5000 /* resend a SYNC that got no answer */

struct shard {
        struct vecstore *vs;
        struct embedder embedder; /* for the model name and dim only */
        uint64_t index, count;    /* I and N */
        void *catalog;            /* DEALER to the catalog */
        void *router;             /* ROUTER for queries */
        bool sync_pending;
        int64_t sync_sent, next_sync;
        uint64_t head_seq; /* catalog head as last heard */
        uint64_t queries;
};

static void send_sync(struct shard *s)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_u64(&pk, "from_seq", vecstore_applied_seq(s->vs));
        wire_pack_kv_u64(&pk, "max", SYNC_BATCH);
        wire_pack_kv_u64(&pk, "shard", s->index);
        wire_pack_kv_u64(&pk, "shards", s->count);
        if (wire_send(s->catalog, NULL, 0, "SYNC", sb.data, sb.size) == 0) {
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
        if (wire_get_str(e, "model", a, &model) || strcmp(model, s->embedder.model) ||
            vec_len != (size_t)s->embedder.dim * sizeof(float)) {
                log_error("%s: vector of model %s, %zu bytes; this shard serves %s", id,
                          model ? model : "?", vec_len, s->embedder.model);
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

static void on_changes(struct shard *s, const msgpack_object *body)
{
        const msgpack_object *entries = wire_get(body, "entries");
        uint64_t last = 0, applied = vecstore_applied_seq(s->vs), seq;
        struct arena a;
        size_t put = 0;
        int rc = 0;

        s->sync_pending = false;
        if (!entries || entries->type != MSGPACK_OBJECT_ARRAY ||
            wire_get_u64(body, "last_seq", &last))
                return;
        wire_get_u64(body, "head_seq", &s->head_seq);
        if (last <= applied) {
                s->next_sync = wire_now_ms() + SYNC_IDLE_MS;
                return; /* nothing new, or an answer to an older SYNC */
        }
        arena_init(&a, (size_t)1 << 30);
        rc = vecstore_begin(s->vs);
        for (uint32_t i = 0; i < entries->via.array.size && !rc; i++) {
                const msgpack_object *e = &entries->via.array.ptr[i];
                int erc;

                if (wire_get_u64(e, "seq", &seq) || seq <= applied)
                        continue;
                erc = apply_entry(s, e, &a);
                if (erc == ST_EPROTO)
                        log_warn("skipped a malformed changelog entry %llu",
                                 (unsigned long long)seq);
                else if (erc)
                        rc = erc;
                else
                        put++;
        }
        if (!rc)
                rc = vecstore_commit(s->vs, last);
        else
                vecstore_abort(s->vs);
        arena_release(&a);
        if (rc) {
                log_error("cannot apply changes: %s (%s)", st_strerror(rc),
                          vecstore_last_error(s->vs));
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

static void on_query(struct shard *s, const struct wire_msg *m)
{
        static struct vecstore_hit hits[VECSTORE_MAX_K];
        const msgpack_object *b = &m->body.data;
        struct vecstore_filter f = {0, false};
        struct arena a;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        uint64_t req_id = 0, k = 0;
        char *model = NULL, *base = NULL;
        const char *vec;
        size_t vec_len, n = 0;
        float *q;

        arena_init(&a, (size_t)64 << 20);
        if (wire_get_u64(b, "req_id", &req_id) || wire_get_u64(b, "k", &k) ||
            wire_get_str(b, "model", &a, &model) || wire_get_bytes(b, "vector", &vec, &vec_len)) {
                reply_error(s, m, req_id, "QUERY needs req_id, k, model and vector");
                goto out;
        }
        if (strcmp(model, s->embedder.model) ||
            vec_len != (size_t)s->embedder.dim * sizeof(float)) {
                reply_error(s, m, req_id,
                            "embedding model mismatch: this shard serves another model");
                goto out;
        }
        wire_get_bool(b, "allow_nsfw", &f.allow_nsfw);
        if (!wire_get_str(b, "base_model", &a, &base))
                f.base_models = 1u << vecstore_base_code(base);
        if (k == 0 || k > VECSTORE_MAX_K)
                k = VECSTORE_MAX_K;
        q = arena_alloc(&a, vec_len);
        if (!q) {
                reply_error(s, m, req_id, "out of memory");
                goto out;
        }
        memcpy(q, vec, vec_len);
        if (vecstore_search(s->vs, q, (size_t)k, &f, hits, &n)) {
                reply_error(s, m, req_id, "search failed");
                goto out;
        }
        s->queries++;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_u64(&pk, "req_id", req_id);
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
        wire_send(s->router, m->identity, m->identity_len, "HITS", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
out:
        arena_release(&a);
}

static void on_status(struct shard *s, const struct wire_msg *m)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 6);
        wire_pack_kv_u64(&pk, "count", vecstore_count(s->vs));
        wire_pack_kv_u64(&pk, "applied_seq", vecstore_applied_seq(s->vs));
        wire_pack_kv_u64(&pk, "head_seq", s->head_seq);
        wire_pack_kv_u64(&pk, "queries", s->queries);
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
        fputs(
            "usage: stylus shard I/N --data DIR [--bind ENDPOINT] [--catalog ENDPOINT] [--dim N]\n"
            "\n"
            "Run shard server I of N: follow the catalog's changelog for the docs this\n"
            "shard owns (hash(id) mod N == I), store their vectors in DIR, and answer\n"
            "top-K queries from query nodes.  Several replicas may serve the same I/N.\n"
            "\n"
            "  --data DIR         shard store directory (created if missing)\n"
            "  --bind ENDPOINT    ROUTER endpoint for queries (default tcp://127.0.0.1:5600)\n"
            "  --catalog ENDPOINT catalog coordinator (default tcp://127.0.0.1:5555)\n"
            "  --dim N            embedding dimension (default 384)\n"
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

static void serve(struct shard *s, volatile sig_atomic_t *stop)
{
        while (!*stop) {
                zmq_pollitem_t items[2] = {{s->router, 0, ZMQ_POLLIN, 0},
                                           {s->catalog, 0, ZMQ_POLLIN, 0}};
                struct wire_msg m;
                int64_t now;

                zmq_poll(items, 2, 100);
                while (wire_recv(s->router, true, ZMQ_DONTWAIT, &m) == 0) {
                        if (!strcmp(m.command, "QUERY") && m.has_body)
                                on_query(s, &m);
                        else if (!strcmp(m.command, "STATUS"))
                                on_status(s, &m);
                        wire_msg_release(&m);
                }
                while (wire_recv(s->catalog, false, ZMQ_DONTWAIT, &m) == 0) {
                        if (!strcmp(m.command, "CHANGES") && m.has_body)
                                on_changes(s, &m.body.data);
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
            {"data", required_argument, NULL, 'd'},    {"bind", required_argument, NULL, 'b'},
            {"catalog", required_argument, NULL, 'c'}, {"dim", required_argument, NULL, 'm'},
            {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct shard s = {0};
        struct st_error err = {0};
        const char *data = NULL, *bind = "tcp://127.0.0.1:5600";
        const char *catalog = "tcp://127.0.0.1:5555";
        long dim = EMBED_DEFAULT_DIM;
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
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc - 1 || parse_shard(argv[optind], &s.index, &s.count) || !data ||
            dim <= 0 || dim > EMBED_MAX_DIM || embedder_init(&s.embedder, (int)dim)) {
                usage(stderr);
                return 2;
        }
        log_setup("shard", LOG_INFO);
        worker_stop_on_signals(&stop);
        if (vecstore_open(data, s.embedder.dim, s.embedder.model, &s.vs, &err)) {
                log_error("%s", st_error_text(&err, err.code));
                return 1;
        }
        ctx = zmq_ctx_new();
        s.router = wire_socket(ctx, ZMQ_ROUTER);
        s.catalog = wire_socket(ctx, ZMQ_DEALER);
        if (zmq_bind(s.router, bind) || zmq_connect(s.catalog, catalog)) {
                log_error("cannot bind %s or connect %s: %s", bind, catalog,
                          zmq_strerror(zmq_errno()));
                goto out;
        }
        log_info("shard %llu/%llu on %s, %zu docs, applied seq %llu", (unsigned long long)s.index,
                 (unsigned long long)s.count, bind, vecstore_count(s.vs),
                 (unsigned long long)vecstore_applied_seq(s.vs));
        serve(&s, &stop);
        rc = 0;
out:
        zmq_close(s.router);
        zmq_close(s.catalog);
        zmq_ctx_term(ctx);
        vecstore_close(&s.vs);
        return rc;
}
