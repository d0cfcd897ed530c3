/*
 * test_shard.c - a real `stylus shard` process answering bursts of QUERY
 * messages: the test fills a shard store in its own format (the shard then
 * only serves it: its --catalog points at a loopback port where nothing
 * listens), starts $STYLUS_BIN shard on a free loopback port, sends a burst
 * of queries in several groups (two filters, two k, and one malformed query)
 * without waiting, then the same queries one at a time, and checks:
 *   - every query gets exactly one HITS reply, the malformed one an error;
 *   - the burst's answers equal the one-at-a-time answers (ids in order,
 *     scores within TOLERANCE), and honour their filter and k;
 *   - STATUS counts the queries and shows some were answered in batches;
 *   - DOC finds a doc by id and says when it has none.
 * Once with the default int8 scan and once with --scan exact.  The shard is
 * stopped with SIGTERM at the end, whatever happened.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "indexer/vecstore.h"
#include "proto/embed.h"
#include "proto/wire.h"

#define DIM       384
#define DOCS      20000
#define BURST     40 /* queries in the burst, the malformed one included */
#define BAD_QUERY 17 /* req_id of the malformed one */
#define TOLERANCE 1e-4
#define REPLY_MS  30000

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_shard.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static uint64_t rng_state = 0x6A09E667F3BCC909ULL;

static uint64_t next_random(void)
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

static void random_unit(float *v)
{
        double norm = 0.0;

        for (int i = 0; i < DIM; i++) {
                v[i] = (float)((double)(next_random() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
                norm += (double)v[i] * v[i];
        }
        for (int i = 0; i < DIM; i++)
                v[i] = (float)(v[i] / sqrt(norm));
}

static void remove_tree(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *e;

        if (!d) {
                unlink(path);
                return;
        }
        while ((e = readdir(d))) {
                char sub[4096];

                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
}

/* A loopback TCP port nobody listens on right now. */
static int free_port(void)
{
        struct sockaddr_in a = {0};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0)
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

/* The shard's docs: doc-<r> with base model r % 3 (sd15, sd21, sdxl), none NSFW. */
static int fill_store(const char *dir, const char *model, const float *vecs)
{
        struct vecstore *vs = NULL;
        int rc = vecstore_open(dir, DIM, model, &vs, NULL);

        if (rc == 0)
                rc = vecstore_begin(vs);
        for (size_t r = 0; r < DOCS && rc == 0; r++) {
                char id[32];

                snprintf(id, sizeof(id), "doc-%zu", r);
                rc = vecstore_put(vs, id, vecs + r * DIM, (int)(r % 3), false, id, strlen(id));
        }
        if (rc == 0)
                rc = vecstore_commit(vs, 1);
        vecstore_close(&vs);
        return rc;
}

struct query {
        uint64_t req_id;
        uint64_t k;
        const char *base_model; /* NULL: no filter */
        const float *vector;
};

/* Query i of the burst: three groups by filter and k. */
static struct query burst_query(size_t i, const float *queries)
{
        struct query q = {i, 50, NULL, queries + i * DIM};

        if (i % 3 == 1)
                q.base_model = "sdxl";
        if (i % 5 == 4)
                q.k = 10;
        return q;
}

static void send_query(void *sock, const char *model, const struct query *q, int malformed)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, malformed ? 4 : q->base_model ? 6 : 5);
        wire_pack_kv_u64(&pk, "req_id", q->req_id);
        wire_pack_kv_str(&pk, "model", model);
        wire_pack_kv_u64(&pk, "k", q->k);
        wire_pack_kv_bool(&pk, "allow_nsfw", true);
        if (!malformed)
                wire_pack_kv_bin(&pk, "vector", q->vector, DIM * sizeof(float));
        if (!malformed && q->base_model)
                wire_pack_kv_str(&pk, "base_model", q->base_model);
        CHECK(wire_send(sock, NULL, 0, "QUERY", sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb);
}

/* One HITS reply, as read from the wire. */
struct answer {
        int seen;
        int ok;
        size_t n;
        char ids[50][32];
        double scores[50];
};

/* Read one HITS reply into answers[req_id]; 0, or -1 on timeout or a bad reply. */
static int read_answer(void *sock, struct answer *answers, size_t n_answers)
{
        struct wire_msg m;
        const msgpack_object *hits;
        uint64_t req_id = 0;
        bool ok = false;
        struct answer *a;

        if (wire_wait(sock, REPLY_MS) != 1 || wire_recv(sock, false, 0, &m) != 0)
                return -1;
        if (strcmp(m.command, "HITS") || wire_get_u64(&m.body.data, "req_id", &req_id) ||
            req_id >= n_answers || wire_get_bool(&m.body.data, "ok", &ok)) {
                wire_msg_release(&m);
                return -1;
        }
        a = &answers[req_id];
        a->seen++;
        a->ok = ok;
        hits = wire_get(&m.body.data, "hits");
        for (uint32_t i = 0;
             ok && hits && hits->type == MSGPACK_OBJECT_ARRAY && i < hits->via.array.size && i < 50;
             i++) {
                const msgpack_object *h = &hits->via.array.ptr[i];
                const char *id;
                size_t len;

                if (wire_get_bytes(h, "id", &id, &len) || len >= sizeof(a->ids[0]) ||
                    wire_get_double(h, "score", &a->scores[i]))
                        break;
                memcpy(a->ids[i], id, len);
                a->ids[i][len] = '\0';
                a->n = i + 1;
        }
        wire_msg_release(&m);
        return 0;
}

/* STATUS counter of the shard, or -1. */
static long long shard_status(void *sock, const char *key)
{
        struct wire_msg m;
        uint64_t v = 0;
        long long out = -1;

        if (wire_send(sock, NULL, 0, "STATUS", NULL, 0) || wire_wait(sock, 5000) != 1 ||
            wire_recv(sock, false, 0, &m) != 0)
                return -1;
        if (!strcmp(m.command, "STATUS") && wire_get_u64(&m.body.data, key, &v) == 0)
                out = (long long)v;
        wire_msg_release(&m);
        return out;
}

/*
 * DOC for id (NULL: a body without one): 1 found (its stored metadata, the
 * id itself here, must equal want), 0 not found, -1 refused or no answer.
 */
static int doc_lookup(void *sock, uint64_t req_id, const char *id, const char *want)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct wire_msg m;
        uint64_t got_id = 0;
        bool ok = false, found = false;
        const char *doc = NULL;
        size_t len = 0;
        int out = -1;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, id ? 2 : 1);
        wire_pack_kv_u64(&pk, "req_id", req_id);
        if (id)
                wire_pack_kv_str(&pk, "id", id);
        CHECK(wire_send(sock, NULL, 0, "DOC", sb.data, sb.size) == 0);
        msgpack_sbuffer_destroy(&sb);
        if (wire_wait(sock, REPLY_MS) != 1 || wire_recv(sock, false, 0, &m) != 0)
                return -1;
        CHECK(!strcmp(m.command, "DOC") && wire_get_u64(&m.body.data, "req_id", &got_id) == 0 &&
              got_id == req_id);
        wire_get_bool(&m.body.data, "ok", &ok);
        wire_get_bool(&m.body.data, "found", &found);
        if (ok && found && wire_get_bytes(&m.body.data, "doc", &doc, &len) == 0)
                out = len == strlen(want) && memcmp(doc, want, len) == 0 ? 1 : -1;
        else if (ok && !found)
                out = 0;
        wire_msg_release(&m);
        return out;
}

static pid_t start_shard(const char *bin, const char *dir, const char *endpoint, int catalog_port,
                         const char *scan)
{
        char catalog[64];
        pid_t pid;

        snprintf(catalog, sizeof(catalog), "tcp://127.0.0.1:%d", catalog_port);
        pid = fork();
        if (pid == 0) {
                execl(bin, bin, "shard", "0/1", "--data", dir, "--bind", endpoint, "--catalog",
                      catalog, "--dim", "384", "--scan", scan, (char *)NULL);
                _exit(127);
        }
        return pid;
}

static void run(const char *bin, const char *root, const char *scan, const float *vecs,
                const float *queries)
{
        static struct answer burst[BURST], alone[BURST];
        char dir[4096], endpoint[64];
        struct embedder e;
        void *ctx = zmq_ctx_new(), *sock = NULL;
        pid_t pid = -1;
        int port = free_port(), catalog_port = free_port();
        long long count = -1, batched, queries_seen;

        memset(burst, 0, sizeof(burst));
        memset(alone, 0, sizeof(alone));
        CHECK(embedder_init(&e, DIM) == 0);
        snprintf(dir, sizeof(dir), "%s/shard-%s", root, scan);
        CHECK(fill_store(dir, e.model, vecs) == 0);
        CHECK(port > 0 && catalog_port > 0 && port != catalog_port);
        snprintf(endpoint, sizeof(endpoint), "tcp://127.0.0.1:%d", port);
        pid = start_shard(bin, dir, endpoint, catalog_port, scan);
        CHECK(pid > 0);
        if (pid <= 0)
                goto out;
        sock = wire_socket(ctx, ZMQ_DEALER);
        CHECK(zmq_connect(sock, endpoint) == 0);
        for (int i = 0; i < 100 && count != DOCS; i++) {
                count = shard_status(sock, "count");
                if (count != DOCS)
                        usleep(100000);
        }
        CHECK(count == DOCS);
        if (count != DOCS)
                goto out;

        /* DOC: one doc by id, an unknown id, a request without one. */
        CHECK(doc_lookup(sock, 1001, "doc-7", "doc-7") == 1);
        CHECK(doc_lookup(sock, 1002, "doc-19999", "doc-19999") == 1);
        CHECK(doc_lookup(sock, 1003, "doc-20000", NULL) == 0);
        CHECK(doc_lookup(sock, 1004, NULL, NULL) == -1);

        /* The burst: sent back to back, read afterwards. */
        for (size_t i = 0; i < BURST; i++) {
                struct query q = burst_query(i, queries);

                send_query(sock, e.model, &q, i == BAD_QUERY);
        }
        for (size_t i = 0; i < BURST; i++)
                CHECK(read_answer(sock, burst, BURST) == 0);
        /* The same queries one at a time. */
        for (size_t i = 0; i < BURST; i++) {
                struct query q = burst_query(i, queries);

                send_query(sock, e.model, &q, i == BAD_QUERY);
                CHECK(read_answer(sock, alone, BURST) == 0);
        }
        for (size_t i = 0; i < BURST; i++) {
                struct query q = burst_query(i, queries);
                int same = burst[i].n == alone[i].n;

                CHECK(burst[i].seen == 1 && alone[i].seen == 1);
                if (i == BAD_QUERY) {
                        CHECK(!burst[i].ok && !alone[i].ok);
                        continue;
                }
                CHECK(burst[i].ok && alone[i].ok && burst[i].n == q.k);
                for (size_t h = 0; h < burst[i].n && same; h++) {
                        long row = strtol(burst[i].ids[h] + 4, NULL, 10);

                        same = strcmp(burst[i].ids[h], alone[i].ids[h]) == 0 &&
                               fabs(burst[i].scores[h] - alone[i].scores[h]) <= TOLERANCE &&
                               (!q.base_model || row % 3 == VECSTORE_BASE_SDXL) &&
                               (h == 0 || burst[i].scores[h - 1] >= burst[i].scores[h]);
                }
                if (!same)
                        fprintf(stderr, "%s: query %zu: burst and single answers differ\n", scan,
                                i);
                CHECK(same);
        }
        /* Its own vector is the best hit of a query made from a doc. */
        CHECK(strcmp(burst[0].ids[0], "doc-0") == 0 && fabs(burst[0].scores[0] - 1.0) < 1e-4);
        queries_seen = shard_status(sock, "queries");
        batched = shard_status(sock, "batched");
        printf("test_shard: %s: %lld queries answered, %lld of them in batches\n", scan,
               queries_seen, batched);
        CHECK(queries_seen == 2 * (BURST - 1));
        CHECK(batched > 0);
out:
        if (sock)
                zmq_close(sock);
        zmq_ctx_term(ctx);
        if (pid > 0) {
                int status = 0;

                kill(pid, SIGTERM);
                waitpid(pid, &status, 0);
                CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
}

int main(void)
{
        const char *bin = getenv("STYLUS_BIN");
        char root[] = "/tmp/test_shard.XXXXXX";
        float *vecs = malloc((size_t)DOCS * DIM * sizeof(float));
        float *queries = malloc((size_t)BURST * DIM * sizeof(float));

        if (!bin || !vecs || !queries || !mkdtemp(root)) {
                fprintf(stderr, "test_shard: needs STYLUS_BIN and a temporary directory\n");
                return 1;
        }
        for (size_t r = 0; r < DOCS; r++)
                random_unit(vecs + r * DIM);
        for (size_t i = 0; i < BURST; i++)
                random_unit(queries + i * DIM);
        memcpy(queries, vecs, DIM * sizeof(float)); /* query 0 is doc-0 */
        run(bin, root, "int8", vecs, queries);
        run(bin, root, "exact", vecs, queries);
        remove_tree(root);
        free(queries);
        free(vecs);
        if (failures) {
                fprintf(stderr, "test_shard: %d checks failed\n", failures);
                return 1;
        }
        printf("test_shard: ok\n");
        return 0;
}
