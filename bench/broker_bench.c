/*
 * broker_bench.c - job round trips per second through the catalog's broker,
 * and write transactions per second of its store.
 *
 *   broker_bench STYLUS_BIN N_JOBS WORKERS...   (each worker count with a credit
 *                                              window of 1 and of 2: proto/worker.h)
 *
 * 1. Store: N_JOBS crawl records are applied in one transaction, then one
 *    refine result per record is applied in its own write transaction
 *    (catalog_apply_doc, the broker's path minus ZeroMQ): txn/s.
 * 2. Broker: for each worker count W, a fresh `stylus catalog` process gets
 *    N_JOBS records (one crawl RESULT), then W refine workers (threads
 *    running proto/worker.c's loop, each its own DEALER) take the N_JOBS
 *    refine jobs and answer each with a minimal doc: JOB out, RESULT in,
 *    applied in one LMDB transaction.  Round trips/s = N_JOBS / wall time.
 *
 * Built by bench/run_broker_bench.sh against the build tree's libraries.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "ops/catalog_store.h"
#include "proto/doc.h"
#include "proto/wire.h"
#include "proto/worker.h"

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill_record(struct st_raw_record *r, char *id, size_t n)
{
        static char *tags[] = {"style", "watercolor"};

        memset(r, 0, sizeof(*r));
        snprintf(id, 64, "civitai:%zu@%zu", n, n + 1000000);
        r->id = id;
        r->source = "civitai";
        r->name = "Bench Adapter";
        r->type = "LORA";
        r->base_model = "sdxl";
        r->card_html = "<p>A watercolor style for benchmarks.</p>";
        r->tags.v = tags;
        r->tags.n = 2;
}

/* A crawl RESULT payload {source, records, next_cursor: nil} with n records. */
static void pack_crawl(msgpack_sbuffer *sb, size_t n)
{
        msgpack_packer pk;
        char id[64];

        msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_str(&pk, "source", "civitai");
        wire_pack_kv_str(&pk, "next_cursor", NULL);
        wire_pack_key(&pk, "records");
        msgpack_pack_array(&pk, n);
        for (size_t i = 0; i < n; i++) {
                struct st_raw_record r;

                fill_record(&r, id, i);
                st_raw_record_pack(&pk, &r);
        }
}

/* The refine handler: a minimal doc for the record (the broker's cost, not the refiner's). */
static int refine(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                  struct st_error *err)
{
        const msgpack_object *o = wire_get(payload, "record");
        struct st_raw_record r;
        struct st_doc d;
        int rc;

        (void)ctx;
        if (!o)
                return st_fail(err, ST_EMISSING, "no record");
        rc = st_raw_record_from_object(o, a, &r, err);
        if (rc)
                return rc;
        memset(&d, 0, sizeof(d));
        d.id = r.id;
        d.source = r.source;
        d.name = r.name;
        d.base_model = r.base_model;
        d.task = "style";
        d.description = "bench";
        d.recommended_weight = 0.8;
        d.refined_by = "card";
        d.content_hash = r.content_hash;
        msgpack_pack_map(pk, 1);
        wire_pack_key(pk, "doc");
        return st_doc_pack(pk, &d);
}

static double bench_store(size_t n)
{
        char dir[] = "/tmp/stylus-broker-bench-XXXXXX", cmd[128];
        struct catalog *c;
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        msgpack_sbuffer sb;
        msgpack_unpacked u;
        msgpack_packer pk;
        size_t off = 0;
        uint64_t crawl_job = 1;
        double t0, t;

        if (!mkdtemp(dir) || catalog_open(dir, &c, &err) ||
            catalog_start_source(c, "civitai", false, false, &err)) {
                fprintf(stderr, "store: %s\n", err.msg);
                exit(1);
        }
        msgpack_sbuffer_init(&sb);
        pack_crawl(&sb, n);
        msgpack_unpacked_init(&u);
        msgpack_unpack_next(&u, sb.data, sb.size, &off);
        if (catalog_apply_crawl(c, crawl_job, &u.data, &counts, &err) || counts.added != n) {
                fprintf(stderr, "store: crawl not applied: %s\n", err.msg);
                exit(1);
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&sb);
        /* Refine jobs got ids 2..n+1 (the crawl job was 1). */
        t0 = now_s();
        for (size_t i = 0; i < n; i++) {
                struct arena a;
                struct st_raw_record r;
                char id[64], hash[65];
                msgpack_sbuffer doc;
                msgpack_object_kv dummy;

                (void)dummy;
                arena_init(&a, 1 << 20);
                fill_record(&r, id, i);
                st_raw_record_hash(&r, hash);
                r.content_hash = hash;
                msgpack_sbuffer_init(&doc);
                msgpack_packer_init(&pk, &doc, msgpack_sbuffer_write);
                {
                        struct st_doc d = {.id = r.id,
                                           .source = r.source,
                                           .name = r.name,
                                           .content_hash = hash,
                                           .refined_by = "card",
                                           .recommended_weight = 0.8};

                        msgpack_pack_map(&pk, 1);
                        wire_pack_key(&pk, "doc");
                        st_doc_pack(&pk, &d);
                }
                off = 0;
                msgpack_unpacked_init(&u);
                msgpack_unpack_next(&u, doc.data, doc.size, &off);
                if (catalog_apply_doc(c, i + 2, &u.data, &err)) {
                        fprintf(stderr, "store: %s\n", err.msg);
                        exit(1);
                }
                msgpack_unpacked_destroy(&u);
                msgpack_sbuffer_destroy(&doc);
                arena_release(&a);
        }
        t = now_s() - t0;
        catalog_close(&c);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd))
                fprintf(stderr, "could not remove %s\n", dir);
        return (double)n / t;
}

struct worker_thread {
        pthread_t thread;
        struct worker_config cfg;
};

static volatile sig_atomic_t stop_workers;

static void *run_worker(void *arg)
{
        struct worker_thread *w = arg;

        worker_run(&w->cfg);
        return NULL;
}

static int refine_left(void *ctx, const char *ep)
{
        struct wire_msg m;
        uint64_t pending = 1, leased = 1;
        const msgpack_object *jobs, *st;

        if (wire_request(ctx, NULL, ep, "STATUS", NULL, 0, 2000, &m))
                return -1;
        jobs = wire_get(&m.body.data, "jobs");
        st = wire_get(jobs, "refine");
        wire_get_u64(st, "pending", &pending);
        wire_get_u64(st, "leased", &leased);
        wire_msg_release(&m);
        return (int)(pending + leased);
}

static double bench_broker(const char *bin, size_t n, int workers, size_t window)
{
        char dir[] = "/tmp/stylus-broker-bench-XXXXXX", ep[64], cmd[128];
        void *ctx = zmq_ctx_new();
        struct worker_thread *w = calloc((size_t)workers, sizeof(*w));
        msgpack_sbuffer sb, res;
        msgpack_packer pk;
        struct wire_msg m;
        void *sock;
        pid_t pid;
        double t0, t;
        int left;

        if (!mkdtemp(dir) || !w)
                exit(1);
        snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
        pid = fork();
        if (pid == 0) {
                execl(bin, bin, "catalog", "--data", dir, "--bind", ep, "--lease-ms", "60000",
                      (char *)NULL);
                _exit(127);
        }
        /* Take the first crawl job by hand and answer it with n records. */
        sock = wire_socket(ctx, ZMQ_DEALER);
        zmq_connect(sock, ep);
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_str(&pk, "stage", "crawl");
        wire_pack_kv_bool(&pk, "idle", true);
        wire_send(sock, NULL, 0, "READY", sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        do {
                if (wire_wait(sock, 10000) <= 0 || wire_recv(sock, false, 0, &m)) {
                        fprintf(stderr, "broker: no crawl job\n");
                        exit(1);
                }
                if (strcmp(m.command, "JOB"))
                        wire_msg_release(&m);
        } while (strcmp(m.command, "JOB"));
        msgpack_sbuffer_init(&sb);
        pack_crawl(&sb, n);
        msgpack_sbuffer_init(&res);
        msgpack_packer_init(&pk, &res, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        {
                uint64_t job_id = 0;

                wire_get_u64(&m.body.data, "job_id", &job_id);
                wire_pack_kv_u64(&pk, "job_id", job_id);
        }
        wire_pack_kv_str(&pk, "stage", "crawl");
        wire_pack_kv_bool(&pk, "ok", true);
        wire_pack_key(&pk, "payload");
        msgpack_sbuffer_write(&res, sb.data, sb.size);
        wire_send(sock, NULL, 0, "RESULT", res.data, res.size);
        wire_msg_release(&m);
        msgpack_sbuffer_destroy(&sb);
        msgpack_sbuffer_destroy(&res);
        zmq_close(sock);
        while ((left = refine_left(ctx, ep)) != (int)n)
                usleep(20000);

        stop_workers = 0;
        t0 = now_s();
        for (int i = 0; i < workers; i++) {
                w[i].cfg = (struct worker_config){.endpoint = ep,
                                                  .stage = "refine",
                                                  .handle = refine,
                                                  .arena_limit = 1 << 24,
                                                  .stop = &stop_workers,
                                                  .window = window};
                pthread_create(&w[i].thread, NULL, run_worker, &w[i]);
        }
        while ((left = refine_left(ctx, ep)) != 0)
                usleep(left > 1000 ? 20000 : 2000);
        t = now_s() - t0;
        stop_workers = 1;
        for (int i = 0; i < workers; i++)
                pthread_join(w[i].thread, NULL);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        zmq_ctx_term(ctx);
        free(w);
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd))
                fprintf(stderr, "could not remove %s\n", dir);
        return (double)n / t;
}

int main(int argc, char **argv)
{
        size_t n;

        if (argc < 4) {
                fprintf(stderr, "usage: %s STYLUS_BIN N_JOBS WORKERS...\n", argv[0]);
                return 2;
        }
        n = strtoull(argv[2], NULL, 10);
        printf("store: %zu refine results applied, one write transaction each: %.0f txn/s\n", n,
               bench_store(n));
        for (int i = 3; i < argc; i++) {
                int workers = (int)strtol(argv[i], NULL, 10);

                for (size_t window = 1; window <= 2; window++) {
                        printf("broker: %2d workers, window %zu, %zu jobs: %.0f round trips/s\n",
                               workers, window, n, bench_broker(argv[1], n, workers, window));
                        fflush(stdout);
                }
        }
        return 0;
}
