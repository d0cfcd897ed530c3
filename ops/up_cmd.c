/*
 * up_cmd.c - `stylus up`: a whole cluster on this machine over loopback.
 * Starts the catalog, one worker of each stage, one shard and a query node
 * (HTTP and ZeroMQ fronts) as child processes on free ports, shows the
 * pipeline's progress, and stops every child it started (SIGTERM, then
 * SIGKILL after 5 s).
 *
 * With --demo it first starts the bundled fixture server (a stand-in for
 * Civitai that speaks its wire format, tests/fixtures/server.py), crawls it,
 * waits until every adapter is refined, embedded and served, asks a few
 * sample prompts, and exits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "ops/commands.h"
#include "proto/log.h"
#include "proto/wire.h"
#include "proto/worker.h"

#ifndef STYLUS_SOURCE_DIR
#define STYLUS_SOURCE_DIR "."
#endif

#define MAX_CHILDREN 16
#define ARGV_MAX     16

struct cluster {
        pid_t pids[MAX_CHILDREN];
        const char *names[MAX_CHILDREN];
        size_t n;
        char self[4096];
        char catalog[64], shard[64], http[64];
        char zmq[64]; /* the query node's ZeroMQ front (query/zmq_front.h) */
};

static const char *const demo_prompts[][2] = {
    {"a corgi dog in watercolor style", "sd15"},
    {"a samurai in armor on a snowy mountain", "sdxl"},
    {"cyberpunk city street at night, neon lights", "sdxl"},
};

static int free_port(void)
{
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0)
                return -1;
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
                port = ntohs(sa.sin_port);
        close(fd);
        return port;
}

/* Start argv as a child whose output goes to log (appended); returns its pid. */
static pid_t spawn(struct cluster *c, const char *name, char *const argv[], const char *log)
{
        pid_t pid;

        if (c->n == MAX_CHILDREN)
                return -1;
        pid = fork();
        if (pid == 0) {
                int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);
                        dup2(fd, STDERR_FILENO);
                        close(fd);
                }
                execv(argv[0], argv);
                _exit(127);
        }
        if (pid > 0) {
                c->pids[c->n] = pid;
                c->names[c->n] = name;
                c->n++;
        }
        return pid;
}

static void stop_all(struct cluster *c)
{
        for (size_t i = c->n; i-- > 0;)
                kill(c->pids[i], SIGTERM);
        for (size_t i = c->n; i-- > 0;) {
                int waited = 0;

                while (waitpid(c->pids[i], NULL, WNOHANG) == 0 && waited < 5000) {
                        struct timespec ts = {0, 50 * 1000000};

                        nanosleep(&ts, NULL);
                        waited += 50;
                }
                if (waited >= 5000) {
                        kill(c->pids[i], SIGKILL);
                        waitpid(c->pids[i], NULL, 0);
                }
        }
        c->n = 0;
}

/* A child that exited early is a failed cluster: name it. */
static const char *dead_child(struct cluster *c)
{
        for (size_t i = 0; i < c->n; i++) {
                if (waitpid(c->pids[i], NULL, WNOHANG) == c->pids[i]) {
                        c->pids[i] = c->pids[--c->n];
                        return c->names[i];
                }
        }
        return NULL;
}

static int parse_port(const char *s)
{
        char *end;
        long v = strtol(s, &end, 10);

        return end != s && v > 0 && v < 65536 ? (int)v : -1;
}

static void sleep_ms(long ms)
{
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
}

/* Start the fixture server and read the port it chose. */
static int start_fixtures(struct cluster *c, const char *fixtures, const char *dir, char *url,
                          size_t url_size)
{
        char server[4096], portfile[4096], logf[4096], buf[16] = "";
        char *argv[] = {"/usr/bin/python3", server,   "--port",         "0", "--port-file",
                        portfile,           "--data", (char *)fixtures, NULL};

        snprintf(server, sizeof(server), "%s/server.py", fixtures);
        snprintf(portfile, sizeof(portfile), "%s/fixture.port", dir);
        snprintf(logf, sizeof(logf), "%s/fixture-server.log", dir);
        unlink(portfile);
        if (spawn(c, "fixture server", argv, logf) < 0)
                return ST_EIO;
        for (int i = 0; i < 200; i++) {
                FILE *f = fopen(portfile, "r");

                if (f) {
                        size_t n = fread(buf, 1, sizeof(buf) - 1, f);

                        fclose(f);
                        buf[n] = '\0';
                        if (parse_port(buf) > 0) {
                                snprintf(url, url_size, "http://127.0.0.1:%d", parse_port(buf));
                                return 0;
                        }
                }
                if (dead_child(c))
                        return ST_EIO;
                sleep_ms(50);
        }
        return ST_ETIMEOUT;
}

/* Counters of the pipeline, from the catalog's and the shard's STATUS. */
struct progress {
        uint64_t pages, records, docs, vectors, head, dead;
        uint64_t pending, leased, shard_docs, shard_seq;
        bool sources_done;
};

static int status_of(void *ctx, const char *endpoint, struct wire_msg *m)
{
        return wire_request(ctx, NULL, endpoint, "STATUS", NULL, 0, 2000, m);
}

static int read_progress(void *ctx, struct cluster *c, struct progress *p)
{
        struct wire_msg m;
        const msgpack_object *o;
        int rc = status_of(ctx, c->catalog, &m);

        memset(p, 0, sizeof(*p));
        if (rc)
                return rc;
        wire_get_u64(&m.body.data, "records", &p->records);
        wire_get_u64(&m.body.data, "docs", &p->docs);
        wire_get_u64(&m.body.data, "vectors", &p->vectors);
        wire_get_u64(&m.body.data, "head_seq", &p->head);
        wire_get_u64(&m.body.data, "dead", &p->dead);
        p->sources_done = true;
        o = wire_get(&m.body.data, "sources");
        for (uint32_t i = 0; o && o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
                bool done = false;
                uint64_t pages = 0;

                wire_get_bool(&o->via.map.ptr[i].val, "done", &done);
                wire_get_u64(&o->via.map.ptr[i].val, "pages", &pages);
                p->sources_done &= done;
                p->pages += pages;
        }
        o = wire_get(&m.body.data, "jobs");
        for (uint32_t i = 0; o && o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
                uint64_t v = 0;

                wire_get_u64(&o->via.map.ptr[i].val, "pending", &v);
                p->pending += v;
                v = 0;
                wire_get_u64(&o->via.map.ptr[i].val, "leased", &v);
                p->leased += v;
        }
        wire_msg_release(&m);
        rc = status_of(ctx, c->shard, &m);
        if (rc)
                return rc;
        wire_get_u64(&m.body.data, "count", &p->shard_docs);
        wire_get_u64(&m.body.data, "applied_seq", &p->shard_seq);
        wire_msg_release(&m);
        return 0;
}

/* Wait until crawl, refine, embed and the shard are all done; print progress. */
static int wait_pipeline(struct cluster *c, long timeout_s, volatile sig_atomic_t *stop)
{
        void *ctx = zmq_ctx_new();
        struct progress p, last = {0};
        int64_t start = wire_now_ms();
        const char *dead;
        int rc = ST_ETIMEOUT;

        while (!*stop && wire_now_ms() - start < timeout_s * 1000) {
                if ((dead = dead_child(c)) != NULL) {
                        fprintf(stderr, "stylus up: the %s exited; see its log\n", dead);
                        rc = ST_EIO;
                        break;
                }
                if (read_progress(ctx, c, &p) == 0) {
                        if (memcmp(&p, &last, sizeof(p)))
                                printf(
                                    "[%5.1fs] crawl %llu pages, %llu adapters | refined %llu | "
                                    "embedded %llu | shard %llu docs | queued %llu, leased %llu, "
                                    "dead %llu\n",
                                    (double)(wire_now_ms() - start) / 1000.0,
                                    (unsigned long long)p.pages, (unsigned long long)p.records,
                                    (unsigned long long)p.docs, (unsigned long long)p.vectors,
                                    (unsigned long long)p.shard_docs, (unsigned long long)p.pending,
                                    (unsigned long long)p.leased, (unsigned long long)p.dead);
                        fflush(stdout);
                        last = p;
                        if (p.sources_done && p.pages > 0 && p.pending == 0 && p.leased == 0 &&
                            p.shard_seq >= p.head) {
                                rc = 0;
                                break;
                        }
                }
                sleep_ms(250);
        }
        zmq_ctx_term(ctx);
        return rc;
}

static void ask(struct cluster *c, const char *prompt, const char *base)
{
        char server[96];
        char *argv[ARGV_MAX] = {c->self, "ask", (char *)prompt, "--server", server};
        size_t n = 5;
        pid_t pid;

        snprintf(server, sizeof(server), "http://%s", c->http);
        if (base) {
                argv[n++] = "--base-model";
                argv[n++] = (char *)base;
        }
        argv[n] = NULL;
        printf("\n$ stylus ask \"%s\"%s%s\n", prompt, base ? " --base-model " : "",
               base ? base : "");
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
                execv(c->self, argv);
                _exit(127);
        }
        if (pid > 0)
                waitpid(pid, NULL, 0);
}

static void usage(FILE *f)
{
        fputs("usage: stylus up [--demo] [--data DIR] [--civitai-url URL] [--fixtures DIR]\n"
              "                 [--hf-url URL] [--http PORT] [--timeout S]\n"
              "\n"
              "Run a one-machine cluster over loopback: catalog, crawler, images worker\n"
              "(example images into DIR/images), refiner, indexer, one shard and a query\n"
              "node answering HTTP and ZeroMQ (msgpack, docs/zmq.md) on free ports, each\n"
              "its own process (logs in DIR/*.log).\n"
              "Without --demo it runs until Ctrl-C.  Everything stays on 127.0.0.1, in\n"
              "plaintext (stylus up implies --insecure).\n"
              "\n"
              "  --demo             crawl the bundled fixture catalog from a local test server,\n"
              "                     wait until it is indexed, ask sample prompts, stop\n"
              "  --data DIR         where stores and logs go (default ./stylus-data)\n"
              "  --civitai-url URL  Civitai to crawl without --demo (default https://civitai.com)\n"
              "  --hf-url URL       Hugging Face to crawl without --demo\n"
              "                     (default https://huggingface.co)\n"
              "  --fixtures DIR     fixture catalog for --demo (default: the source tree's)\n"
              "  --http PORT        query node port (default: a free one)\n"
              "  --timeout S        give up on the demo pipeline after S seconds (default 300)\n"
              "\n"
              "examples:\n"
              "  stylus up --demo\n"
              "  stylus up --data /var/lib/stylus --http 8080\n",
              f);
}

static void path_in(char *out, size_t size, const char *dir, const char *name)
{
        snprintf(out, size, "%s/%s", dir, name);
}

/* Start catalog, workers, shard and query node; ports are chosen here. */
static int start_roles(struct cluster *c, const char *dir, const char *civitai, const char *hf,
                       int http_port)
{
        char cat_dir[4096], shard_dir[4096], image_dir[4096], logs[7][4096];
        char listen[64];
        int p1 = free_port(), p2 = free_port(), p3 = free_port();

        if (p1 < 0 || p2 < 0 || p3 < 0 || http_port < 0)
                return ST_EIO;
        snprintf(c->catalog, sizeof(c->catalog), "tcp://127.0.0.1:%d", p1);
        snprintf(c->shard, sizeof(c->shard), "tcp://127.0.0.1:%d", p2);
        snprintf(c->http, sizeof(c->http), "127.0.0.1:%d", http_port);
        snprintf(c->zmq, sizeof(c->zmq), "tcp://127.0.0.1:%d", p3);
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", http_port);
        path_in(cat_dir, sizeof(cat_dir), dir, "catalog");
        path_in(shard_dir, sizeof(shard_dir), dir, "shard-0");
        path_in(logs[0], sizeof(logs[0]), dir, "catalog.log");
        path_in(logs[1], sizeof(logs[1]), dir, "crawler.log");
        path_in(logs[2], sizeof(logs[2]), dir, "refiner.log");
        path_in(logs[3], sizeof(logs[3]), dir, "indexer.log");
        path_in(logs[4], sizeof(logs[4]), dir, "shard-0.log");
        path_in(logs[5], sizeof(logs[5]), dir, "serve.log");
        path_in(logs[6], sizeof(logs[6]), dir, "images.log");
        path_in(image_dir, sizeof(image_dir), dir, "images");
        {
                char *a_cat[] = {c->self,    "catalog", "--data",   cat_dir, "--bind",   c->catalog,
                                 "--source", "civitai", "--source", "hf",    "--images", NULL};
                char *a_images[] = {c->self,   "images", "--catalog", c->catalog,        "--store",
                                    image_dir, "--rate", "0",         "--allow-private", NULL};
                char *a_crawl[ARGV_MAX] = {c->self,    "crawler",       "--connect",
                                           c->catalog, "--civitai-url", (char *)civitai,
                                           "--hf-url", (char *)hf};
                size_t n = 8;
                char *a_refine[] = {c->self, "refiner", "--connect", c->catalog, NULL};
                char *a_index[] = {c->self, "indexer", "--connect", c->catalog, NULL};
                char *a_shard[] = {c->self,  "shard",  "0/1",       "--data",   shard_dir,
                                   "--bind", c->shard, "--catalog", c->catalog, NULL};
                char *a_serve[] = {c->self, "serve",        "--shard", c->shard, "--listen",
                                   listen,  "--zmq-listen", c->zmq,    NULL};

                /* Real services get the polite default rates; a local stand-in need not. */
                if (!strncmp(civitai, "http://127.", 11)) {
                        a_crawl[n++] = "--rate";
                        a_crawl[n++] = "0";
                }
                if (!strncmp(hf, "http://127.", 11)) {
                        a_crawl[n++] = "--hf-rate";
                        a_crawl[n++] = "0";
                }
                /* A local stand-in serves its own images and files from loopback. */
                if (!strncmp(civitai, "http://127.", 11) || !strncmp(hf, "http://127.", 11))
                        a_crawl[n++] = "--allow-private";
                else
                        a_images[6] = NULL; /* real sources: polite rate, public addresses */
                a_crawl[n] = NULL;
                if (spawn(c, "catalog", a_cat, logs[0]) < 0 ||
                    spawn(c, "crawler", a_crawl, logs[1]) < 0 ||
                    spawn(c, "images", a_images, logs[6]) < 0 ||
                    spawn(c, "refiner", a_refine, logs[2]) < 0 ||
                    spawn(c, "indexer", a_index, logs[3]) < 0 ||
                    spawn(c, "shard", a_shard, logs[4]) < 0 ||
                    spawn(c, "query node", a_serve, logs[5]) < 0)
                        return ST_EIO;
        }
        return 0;
}

int cmd_up(int argc, char **argv)
{
        static const struct option opts[] = {
            {"demo", no_argument, NULL, 'D'},
            {"data", required_argument, NULL, 'd'},
            {"civitai-url", required_argument, NULL, 'u'},
            {"hf-url", required_argument, NULL, 'H'},
            {"fixtures", required_argument, NULL, 'f'},
            {"http", required_argument, NULL, 'p'},
            {"timeout", required_argument, NULL, 't'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct cluster c = {0};
        const char *dir = "stylus-data", *civitai = "https://civitai.com";
        const char *hf = "https://huggingface.co";
        const char *fixtures = STYLUS_SOURCE_DIR "/tests/fixtures";
        char fixture_url[128];
        long timeout = 300;
        int demo = 0, http_port = 0, opt, rc = 1;
        ssize_t n;
        int64_t t0 = wire_now_ms();

        while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (opt) {
                case 'D':
                        demo = 1;
                        break;
                case 'd':
                        dir = optarg;
                        break;
                case 'H':
                        hf = optarg;
                        break;
                case 'u':
                        civitai = optarg;
                        break;
                case 'f':
                        fixtures = optarg;
                        break;
                case 'p':
                        http_port = parse_port(optarg);
                        break;
                case 't':
                        timeout = strtol(optarg, NULL, 10);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind != argc || http_port < 0 || timeout <= 0) {
                usage(stderr);
                return 2;
        }
        if (http_port == 0)
                http_port = free_port();
        n = readlink("/proc/self/exe", c.self, sizeof(c.self) - 1);
        if (n <= 0) {
                fprintf(stderr, "stylus up: cannot find my own binary\n");
                return 1;
        }
        c.self[n] = '\0';
        if (mkdir(dir, 0755) && errno != EEXIST) {
                fprintf(stderr, "stylus up: cannot create %s: %s\n", dir, strerror(errno));
                return 1;
        }
        worker_stop_on_signals(&stop);
        /* Every role binds and connects on 127.0.0.1 only: plaintext there, as --insecure. */
        setenv("STYLUS_INSECURE", "1", 1);
        if (demo) {
                if (start_fixtures(&c, fixtures, dir, fixture_url, sizeof(fixture_url))) {
                        fprintf(stderr, "stylus up: the fixture server did not start (%s/%s)\n",
                                dir, "fixture-server.log");
                        goto out;
                }
                civitai = hf = fixture_url; /* it serves both wire formats */
                printf("fixture catalog (Civitai and Hugging Face wire formats) at %s\n",
                       fixture_url);
        }
        if (start_roles(&c, dir, civitai, hf, http_port)) {
                fprintf(stderr, "stylus up: cannot start the roles\n");
                goto out;
        }
        printf("cluster up: catalog %s, shard %s, query node http://%s and %s (msgpack)\n"
               "logs in %s/\n",
               c.catalog, c.shard, c.http, c.zmq, dir);
        fflush(stdout);
        if (!demo) {
                while (!stop && !dead_child(&c))
                        sleep_ms(200);
                rc = stop ? 0 : 1;
                goto out;
        }
        if (wait_pipeline(&c, timeout, &stop)) {
                fprintf(stderr, "stylus up: the pipeline did not finish; see %s/*.log\n", dir);
                goto out;
        }
        printf("pipeline done in %.1f s\n", (double)(wire_now_ms() - t0) / 1000.0);
        for (size_t i = 0; i < sizeof(demo_prompts) / sizeof(demo_prompts[0]); i++)
                ask(&c, demo_prompts[i][0], demo_prompts[i][1]);
        printf("\ndemo done in %.1f s; stopping the cluster\n",
               (double)(wire_now_ms() - t0) / 1000.0);
        rc = 0;
out:
        stop_all(&c);
        return rc;
}
