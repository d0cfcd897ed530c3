#include "query/fanout.h"

#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "proto/log.h"
#include "proto/wire.h"

struct replica {
        char endpoint[256];
        void *sock; /* DEALER, connected */
};

struct shard_group {
        struct replica replicas[FANOUT_MAX_REPLICAS];
        size_t n;
        size_t next; /* replica to try first: the last one that answered */
};

struct fanout {
        void *ctx;
        const struct security *sec; /* borrowed: the caller keeps it for f's life */
        struct shard_group shards[FANOUT_MAX_SHARDS];
        size_t n_shards;
        long deadline_ms;
        uint64_t req_id;
};

static void *connect_replica(void *ctx, const char *endpoint, const struct security *sec,
                             struct st_error *err)
{
        void *s = wire_socket(ctx, ZMQ_DEALER);
        int on = 1;

        if (!s) {
                st_fail(err, ST_EIO, "cannot make a socket");
                return NULL;
        }
        /* Queue nothing for a replica that is not connected: fail over instead. */
        zmq_setsockopt(s, ZMQ_IMMEDIATE, &on, sizeof(on));
        if (security_client(sec, s, endpoint, err))
                goto fail;
        if (zmq_connect(s, endpoint)) {
                st_fail(err, ST_EINVAL, "cannot connect to %s: %s", endpoint,
                        zmq_strerror(zmq_errno()));
                goto fail;
        }
        return s;
fail:
        zmq_close(s);
        return NULL;
}

static int add_group(struct fanout *f, const char *list, const struct security *sec,
                     struct st_error *err)
{
        struct shard_group *g = &f->shards[f->n_shards];
        const char *p = list;

        while (*p) {
                const char *end = strchr(p, ',');
                size_t len = end ? (size_t)(end - p) : strlen(p);
                struct replica *r;

                if (g->n == FANOUT_MAX_REPLICAS || len == 0 || len >= sizeof(r->endpoint))
                        return st_fail(err, ST_EINVAL, "bad replica list for shard %zu: %s",
                                       f->n_shards, list);
                r = &g->replicas[g->n];
                memcpy(r->endpoint, p, len);
                r->endpoint[len] = '\0';
                r->sock = connect_replica(f->ctx, r->endpoint, sec, err);
                if (!r->sock)
                        return ST_EINVAL;
                g->n++;
                p += len + (end ? 1 : 0);
        }
        if (g->n == 0)
                return st_fail(err, ST_EINVAL, "shard %zu has no replica", f->n_shards);
        f->n_shards++;
        return 0;
}

int fanout_new(const char *const *shards, size_t n_shards, long deadline_ms,
               const struct security *sec, struct fanout **out, struct st_error *err)
{
        struct fanout *f;
        int rc = 0;

        if (n_shards == 0 || n_shards > FANOUT_MAX_SHARDS)
                return st_fail(err, ST_EINVAL, "need 1..%d shards", FANOUT_MAX_SHARDS);
        f = calloc(1, sizeof(*f));
        if (!f)
                return st_fail(err, ST_ENOMEM, "out of memory");
        f->ctx = zmq_ctx_new();
        f->sec = sec;
        f->deadline_ms = deadline_ms;
        for (size_t i = 0; i < n_shards && !rc; i++)
                rc = add_group(f, shards[i], sec, err);
        if (rc) {
                fanout_destroy(&f);
                return rc;
        }
        *out = f;
        return 0;
}

void fanout_destroy(struct fanout **fp)
{
        struct fanout *f = *fp;

        if (!f)
                return;
        for (size_t i = 0; i < FANOUT_MAX_SHARDS; i++)
                for (size_t j = 0; j < f->shards[i].n; j++)
                        if (f->shards[i].replicas[j].sock)
                                zmq_close(f->shards[i].replicas[j].sock);
        zmq_ctx_term(f->ctx);
        free(f);
        *fp = NULL;
}

static void pack_query(const struct fanout_query *q, uint64_t req_id, msgpack_sbuffer *sb)
{
        msgpack_packer pk;

        msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 5 + (q->base_model != NULL) + (q->n_blocked > 0));
        wire_pack_kv_u64(&pk, "req_id", req_id);
        wire_pack_kv_str(&pk, "model", q->model);
        wire_pack_kv_bin(&pk, "vector", q->vector, (size_t)q->dim * sizeof(float));
        wire_pack_kv_u64(&pk, "k", q->k);
        wire_pack_kv_bool(&pk, "allow_nsfw", q->allow_nsfw);
        if (q->base_model)
                wire_pack_kv_str(&pk, "base_model", q->base_model);
        if (q->n_blocked) {
                wire_pack_key(&pk, "blocked");
                msgpack_pack_array(&pk, q->n_blocked);
                for (size_t i = 0; i < q->n_blocked; i++) {
                        size_t len = strlen(q->blocked[i]);

                        msgpack_pack_str(&pk, len);
                        msgpack_pack_str_body(&pk, q->blocked[i], len);
                }
        }
}

/*
 * One request sent to a replica of every shard: command out, reply the
 * command that answers it; take() reads each answer's body (the req_id
 * already checked) and returns 0, 1 to end the whole request at once, or an
 * error to end it with.
 */
struct fan_call {
        const char *command;
        const char *reply;
        int (*take)(struct fanout *f, size_t g, size_t r, const msgpack_object *body, void *ctx,
                    struct st_error *err);
        void *ctx;
};

/* Per shard during one request: which replica holds it, and since when. */
struct pending {
        size_t replica;
        size_t tried;
        int64_t sent_at;
        bool done;
};

/* Send the request to the next replica of group g that accepts it. */
static bool send_next(struct fanout *f, size_t g, struct pending *p, const char *command,
                      const msgpack_sbuffer *sb)
{
        struct shard_group *grp = &f->shards[g];

        while (p->tried < grp->n) {
                size_t r = (grp->next + p->tried) % grp->n;

                p->tried++;
                if (zmq_send(grp->replicas[r].sock, WIRE_PROTOCOL, strlen(WIRE_PROTOCOL),
                             ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
                        continue;
                zmq_send(grp->replicas[r].sock, command, strlen(command), ZMQ_SNDMORE);
                zmq_send(grp->replicas[r].sock, sb->data, sb->size, 0);
                p->replica = r;
                p->sent_at = wire_now_ms();
                return true;
        }
        return false;
}

static int cmp_score(const void *x, const void *y)
{
        const struct composer_candidate *a = x, *b = y;

        return (a->score < b->score) - (a->score > b->score);
}

/* Decode the hits of one HITS reply and append them to the candidates. */
static int take_hits(const msgpack_object *body, struct arena *a, struct composer_candidate **cand,
                     size_t *n, size_t *cap, struct st_error *err)
{
        const msgpack_object *hits = wire_get(body, "hits");

        if (!hits || hits->type != MSGPACK_OBJECT_ARRAY)
                return st_fail(err, ST_EPROTO, "HITS without hits");
        for (uint32_t i = 0; i < hits->via.array.size; i++) {
                const msgpack_object *h = &hits->via.array.ptr[i];
                struct st_doc *d = arena_alloc(a, sizeof(*d));
                const char *doc;
                size_t len;
                double score;

                if (!d)
                        return st_fail(err, ST_ENOMEM, "out of memory");
                if (wire_get_double(h, "score", &score) || wire_get_bytes(h, "doc", &doc, &len) ||
                    st_doc_from_msgpack(doc, len, a, d, NULL)) {
                        log_warn("skipped a malformed hit");
                        continue;
                }
                if (*n == *cap) {
                        size_t ncap = *cap ? *cap * 2 : 256;
                        struct composer_candidate *c = arena_alloc(a, ncap * sizeof(*c));

                        if (!c)
                                return st_fail(err, ST_ENOMEM, "out of memory");
                        if (*n)
                                memcpy(c, *cand, *n * sizeof(*c));
                        *cand = c;
                        *cap = ncap;
                }
                (*cand)[*n].doc = d;
                (*cand)[*n].score = (float)score;
                (*n)++;
        }
        return 0;
}

#define STATUS_TIMEOUT_MS 500 /* asking a refusing shard which model it serves */

/* The model a replica serves, from its STATUS reply, into out[size]; "" when unknown. */
static void served_model(struct fanout *f, const struct replica *rep, char *out, size_t size)
{
        struct wire_msg m;
        struct arena tmp;
        char *model = NULL;
        size_t i;

        out[0] = '\0';
        if (wire_request(f->ctx, f->sec, rep->endpoint, "STATUS", NULL, 0,
                         f->deadline_ms < STATUS_TIMEOUT_MS ? f->deadline_ms : STATUS_TIMEOUT_MS,
                         &m))
                return;
        arena_init(&tmp, 4096);
        if (!strcmp(m.command, "STATUS") && m.has_body &&
            !wire_get_str(&m.body.data, "model", &tmp, &model) && model) {
                for (i = 0; model[i] && i + 1 < size; i++)
                        out[i] = model[i] >= 0x20 && model[i] <= 0x7e ? model[i] : '?';
                out[i] = '\0';
        }
        arena_release(&tmp);
        wire_msg_release(&m);
}

/*
 * Replica r of shard g refused the query with why: ST_EDIM, and when it is
 * an embedding model mismatch, a message naming both models (the shard's
 * from its STATUS), so the HTTP caller sees what to fix.
 */
static int refused(struct fanout *f, size_t g, size_t r, const struct fanout_query *q,
                   const char *why, struct st_error *err)
{
        char served[128];

        if (!why || !strstr(why, "model"))
                return st_fail(err, ST_EDIM, "shard %zu: %s", g, why ? why : "error");
        served_model(f, &f->shards[g].replicas[r], served, sizeof(served));
        if (!served[0])
                return st_fail(err, ST_EDIM,
                               "shard %zu: %s; this query node embeds with '%s' (%d dims)", g, why,
                               q->model, q->dim);
        return st_fail(err, ST_EDIM,
                       "embedding model mismatch: this query node embeds with '%s' (%d dims), "
                       "shard %zu serves '%s'",
                       q->model, q->dim, g, served);
}

/*
 * Read one message on replica r of group g: 0 when it is not the answer we
 * wait for (a late answer to an earlier request), else 1 (shard g done) and
 * *rc what the call's take() made of it.
 */
static int on_reply(struct fanout *f, size_t g, size_t r, const struct fan_call *c,
                    struct pending *p, int *rc, struct st_error *err)
{
        struct wire_msg m;
        uint64_t req_id = 0;

        if (wire_recv(f->shards[g].replicas[r].sock, false, ZMQ_DONTWAIT, &m))
                return 0;
        if (strcmp(m.command, c->reply) || !m.has_body ||
            wire_get_u64(&m.body.data, "req_id", &req_id) || req_id != f->req_id) {
                wire_msg_release(&m);
                return 0;
        }
        p->done = true;
        f->shards[g].next = r;
        *rc = c->take(f, g, r, &m.body.data, c->ctx, err);
        wire_msg_release(&m);
        return 1;
}

/*
 * Send c to one replica of every shard (f->req_id is the request's), fail
 * over to the next replica when one has not answered in its slice of the
 * deadline, and hand each answer to c->take().  *answered counts the shards
 * that answered.  Returns the first error a take() returned, else 0.
 */
static int fan(struct fanout *f, const struct fan_call *c, const msgpack_sbuffer *sb,
               size_t *answered, struct st_error *err)
{
        struct pending p[FANOUT_MAX_SHARDS];
        zmq_pollitem_t items[FANOUT_MAX_SHARDS * FANOUT_MAX_REPLICAS];
        size_t where[FANOUT_MAX_SHARDS * FANOUT_MAX_REPLICAS][2];
        size_t open = 0;
        int64_t start = wire_now_ms();
        int rc = 0;

        *answered = 0;
        memset(p, 0, sizeof(p));
        for (size_t g = 0; g < f->n_shards; g++) {
                if (send_next(f, g, &p[g], c->command, sb))
                        open++;
                else
                        p[g].done = true;
        }
        while (open > 0 && rc == 0 && wire_now_ms() - start < f->deadline_ms) {
                size_t ni = 0;
                int64_t now;

                for (size_t g = 0; g < f->n_shards; g++)
                        for (size_t r = 0; r < f->shards[g].n && !p[g].done; r++) {
                                items[ni] = (zmq_pollitem_t){f->shards[g].replicas[r].sock, 0,
                                                             ZMQ_POLLIN, 0};
                                where[ni][0] = g;
                                where[ni][1] = r;
                                ni++;
                        }
                if (zmq_poll(items, (int)ni, 20) < 0)
                        break;
                for (size_t i = 0; i < ni && rc == 0; i++) {
                        size_t g = where[i][0];

                        if (!(items[i].revents & ZMQ_POLLIN) || p[g].done)
                                continue;
                        if (on_reply(f, g, where[i][1], c, &p[g], &rc, err)) {
                                open--;
                                (*answered)++;
                        }
                }
                now = wire_now_ms();
                for (size_t g = 0; g < f->n_shards; g++) {
                        /* Each replica gets an equal slice of the deadline before failover. */
                        if (p[g].done || now - p[g].sent_at < f->deadline_ms / (long)f->shards[g].n)
                                continue;
                        if (!send_next(f, g, &p[g], c->command, sb)) {
                                p[g].done = true;
                                open--;
                                log_warn("shard %zu: no replica answered", g);
                        }
                }
        }
        return rc;
}

/* What a search gathers from the shards' HITS. */
struct search_state {
        const struct fanout_query *q;
        struct arena *a;
        struct composer_candidate **cand;
        size_t *n;
        size_t cap;
};

static int take_search(struct fanout *f, size_t g, size_t r, const msgpack_object *body, void *ctx,
                       struct st_error *err)
{
        struct search_state *st = ctx;
        bool ok = false;
        int rc;

        wire_get_bool(body, "ok", &ok);
        if (!ok) {
                struct arena tmp;
                char *why = NULL;

                arena_init(&tmp, 4096);
                wire_get_str(body, "error", &tmp, &why);
                rc = refused(f, g, r, st->q, why, err);
                arena_release(&tmp);
                return rc;
        }
        return take_hits(body, st->a, st->cand, st->n, &st->cap, err) ? ST_ENOMEM : 0;
}

int fanout_search(struct fanout *f, const struct fanout_query *q, struct arena *a,
                  struct composer_candidate **cand, size_t *n, double *coverage,
                  struct st_error *err)
{
        struct search_state st = {q, a, cand, n, 0};
        struct fan_call c = {"QUERY", "HITS", take_search, &st};
        msgpack_sbuffer sb;
        size_t answered = 0;
        int rc;

        *cand = NULL;
        *n = 0;
        f->req_id++;
        msgpack_sbuffer_init(&sb);
        pack_query(q, f->req_id, &sb);
        rc = fan(f, &c, &sb, &answered, err);
        msgpack_sbuffer_destroy(&sb);
        *coverage = (double)answered / (double)f->n_shards;
        if (rc < 0)
                return rc;
        if (answered == 0)
                return st_fail(err, ST_EAGAIN, "no shard answered within %ld ms", f->deadline_ms);
        qsort(*cand, *n, sizeof(**cand), cmp_score);
        if (*n > q->k)
                *n = q->k;
        return 0;
}

/* What a doc lookup gathers from the shards' DOC answers: the first doc found. */
struct doc_state {
        struct arena *a;
        struct st_doc *doc;
        bool found;
};

static int take_doc(struct fanout *f, size_t g, size_t r, const msgpack_object *body, void *ctx,
                    struct st_error *err)
{
        struct doc_state *st = ctx;
        bool ok = false, found = false;
        const char *doc;
        size_t len;

        (void)f;
        (void)r;
        wire_get_bool(body, "ok", &ok);
        wire_get_bool(body, "found", &found);
        if (!ok || !found)
                return 0; /* a shard that cannot look it up counts as not holding it */
        if (wire_get_bytes(body, "doc", &doc, &len) ||
            st_doc_from_msgpack(doc, len, st->a, st->doc, NULL)) {
                log_warn("shard %zu: a malformed doc", g);
                return 0;
        }
        st->found = true;
        (void)err;
        return 1;
}

int fanout_get_doc(struct fanout *f, const char *id, struct arena *a, struct st_doc *doc,
                   double *coverage, struct st_error *err)
{
        struct doc_state st = {a, doc, false};
        struct fan_call c = {"DOC", "DOC", take_doc, &st};
        msgpack_sbuffer sb;
        msgpack_packer pk;
        size_t answered = 0;
        int rc;

        f->req_id++;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "req_id", f->req_id);
        wire_pack_kv_str(&pk, "id", id);
        rc = fan(f, &c, &sb, &answered, err);
        msgpack_sbuffer_destroy(&sb);
        *coverage = (double)answered / (double)f->n_shards;
        if (rc < 0)
                return rc;
        if (st.found) {
                *coverage = 1.0; /* the answer is complete, whoever did not answer */
                return 0;
        }
        if (answered < f->n_shards)
                return st_fail(err, ST_EAGAIN,
                               "%s: not on the %zu of %zu shards that answered within %ld ms", id,
                               answered, f->n_shards, f->deadline_ms);
        return st_fail(err, ST_ENOTFOUND, "no adapter %s", id);
}
