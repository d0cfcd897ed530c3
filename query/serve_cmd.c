/*
 * serve_cmd.c - `stylus serve`: the query node's HTTP front (libmicrohttpd).
 *
 *   method  path            body                       answer
 *   POST    /v1/compose     query/request.h            adapter set (query/forms.h), 200
 *   POST    /v1/retrieve    same                       {"candidates":[{id,name,score,...}]}
 *   GET     /healthz        -                          {"ok":true,"shards":N}
 *   GET     /metrics        -                          Prometheus text
 *
 * Errors are {"error":{"code":"...","message":"..."}} with 400 (bad request),
 * 404, 405, 413 (body over limit), 500 (a shard serves another embedding
 * model: the message names both), 502 (the embeddings endpoint failed), 503
 * (no shard answered, or the endpoint rate-limits us), 504 (the endpoint
 * timed out).  All requests run on the one internal polling thread, which
 * owns the fan-out sockets and the embeddings client.
 *
 * The prompt is embedded by the embedder the --embed-* flags choose
 * (indexer/embedder_choice.h): it must be the index's model, whose name goes
 * in every QUERY.  The composer's topic matching uses the built-in sparse
 * features whatever the choice (query/composer.c).
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "indexer/embedder_choice.h"
#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/embed.h"
#include "proto/log.h"
#include "proto/wire.h"
#include "query/composer.h"
#include "query/fanout.h"
#include "query/forms.h"
#include "query/request.h"

#define MAX_SHARD_ARGS FANOUT_MAX_SHARDS
#define QUERY_ARENA    ((size_t)256 << 20)

struct server {
        struct security security;
        struct fanout *fanout;
        struct embedder_choice embedder;
        uint64_t requests, errors, composed, partial;
        double seconds; /* summed request time of compose and retrieve */
};

/* Body accumulated across upload callbacks of one request. */
struct upload {
        char *data;
        size_t len;
        bool too_big;
};

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type,
                                 const char *text, size_t len)
{
        struct MHD_Response *r =
            MHD_create_response_from_buffer(len, (void *)text, MHD_RESPMEM_MUST_COPY);
        enum MHD_Result ret;

        MHD_add_response_header(r, "Content-Type", type);
        ret = MHD_queue_response(conn, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *j)
{
        char *s = json_dumps(j, JSON_COMPACT);
        enum MHD_Result ret;

        json_decref(j);
        if (!s)
                return send_text(conn, 500, "text/plain", "out of memory", 13);
        ret = send_text(conn, status, "application/json", s, strlen(s));
        free(s);
        return ret;
}

static enum MHD_Result send_error(struct server *srv, struct MHD_Connection *conn, unsigned status,
                                  int code, const char *message)
{
        srv->errors++;
        return send_json(
            conn, status,
            json_pack("{s:{s:s,s:s}}", "error", "code", st_strerror(code), "message", message));
}

static unsigned status_of(int code)
{
        switch (code) {
        case ST_ETOOBIG:
                return 413;
        case ST_EAGAIN:
                return 503;
        case ST_EDIM:
                return 500;
        case ST_ENOMEM:
                return 500;
        default:
                return 400;
        }
}

/* HTTP status of a failure of the embedder (an endpoint's, when one is configured). */
static unsigned embed_status(int code)
{
        switch (code) {
        case ST_EAGAIN:
                return 503;
        case ST_ETIMEOUT:
                return 504;
        case ST_ENOMEM:
        case ST_EINVAL:
                return 500;
        default:
                return 502;
        }
}

/*
 * Embed the prompt and fan out; candidates and coverage on success, else
 * the error and, when it is not status_of()'s, *status.
 */
static int retrieve(struct server *srv, const struct compose_request *req, struct arena *a,
                    struct composer_candidate **cand, size_t *n, double *coverage, unsigned *status,
                    struct st_error *err)
{
        float *vec = arena_calloc(a, (size_t)srv->embedder.dim, sizeof(float));
        const char *prompt = req->prompt;
        struct st_error why = {0};
        struct fanout_query q = {
            .vector = vec,
            .dim = srv->embedder.dim,
            .model = srv->embedder.model,
            .k = (size_t)req->k,
            .base_model = req->base_model,
            .allow_nsfw = req->allow_nsfw,
        };
        int rc;

        if (!vec)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = embedder_choice_embed(&srv->embedder, &prompt, 1, vec, &why);
        if (rc) {
                *status = embed_status(rc);
                log_warn("cannot embed a prompt: %s", st_error_text(&why, rc));
                return st_fail(err, rc, "cannot embed the prompt with %s: %s", srv->embedder.model,
                               st_error_text(&why, rc));
        }
        rc = fanout_search(srv->fanout, &q, a, cand, n, coverage, err);
        if (rc == 0 && *coverage < 1.0)
                srv->partial++;
        return rc;
}

/* Add coverage to a JSON answer made by the composer's formatter. */
static json_t *with_coverage(const char *answer, double coverage)
{
        json_t *j = json_loads(answer, 0, NULL);

        if (!j)
                return NULL;
        json_object_set_new(j, "partial", json_boolean(coverage < 1.0));
        json_object_set_new(j, "coverage", json_real(coverage));
        return j;
}

static enum MHD_Result compose(struct server *srv, struct MHD_Connection *conn,
                               const struct upload *up, bool compose_too)
{
        struct st_error err = {0};
        struct compose_request req;
        struct composer_options opt;
        struct composer_result res;
        struct composer_candidate *cand;
        struct arena a;
        size_t n;
        double coverage = 0;
        char *answer = NULL;
        json_t *j = NULL;
        int64_t t0 = wire_now_ms();
        enum MHD_Result ret;
        unsigned status = 0;
        int rc;

        arena_init(&a, QUERY_ARENA);
        rc = compose_request_parse(up->data ? up->data : "", up->len, &a, &req, &err);
        if (!rc)
                rc = retrieve(srv, &req, &a, &cand, &n, &coverage, &status, &err);
        if (!rc && !compose_too) {
                j = json_array();
                for (size_t i = 0; i < n; i++)
                        json_array_append_new(
                            j, json_pack("{s:s,s:s,s:f,s:s?,s:s?,s:b}", "id", cand[i].doc->id,
                                         "name", cand[i].doc->name, "score", (double)cand[i].score,
                                         "task", cand[i].doc->task, "base_model",
                                         cand[i].doc->base_model, "nsfw", cand[i].doc->nsfw));
                j = json_pack("{s:o,s:b,s:f}", "candidates", j, "partial", coverage < 1.0,
                              "coverage", coverage);
        } else if (!rc) {
                composer_options_default(&opt);
                opt.base_model = req.base_model;
                opt.n_images = req.n_images;
                opt.allow_nsfw = req.allow_nsfw;
                opt.allow_characters = req.allow_characters;
                rc =
                    composer_run(req.prompt, cand, n, &opt, &srv->embedder.builtin, &a, &res, &err);
                if (!rc)
                        rc = composer_result_to_json(&res, req.prompt, req.format, &answer);
                if (!rc && !(j = with_coverage(answer, coverage)))
                        rc = st_fail(&err, ST_ENOMEM, "cannot build the answer");
                srv->composed += rc == 0;
        }
        srv->seconds += (double)(wire_now_ms() - t0) / 1000.0;
        if (rc)
                ret = send_error(srv, conn, status ? status : status_of(rc), rc,
                                 st_error_text(&err, rc));
        else
                ret = send_json(conn, 200, j);
        free(answer);
        arena_release(&a);
        return ret;
}

/* The embeddings client's counters, when there is one; "" otherwise. */
static void embed_metrics(const struct server *srv, char *buf, size_t size)
{
        struct embed_http_stats st;

        buf[0] = '\0';
        if (!srv->embedder.http)
                return;
        embed_http_get_stats(srv->embedder.http, &st);
        snprintf(buf, size,
                 "# TYPE stylus_embed_requests_total counter\n"
                 "stylus_embed_requests_total %llu\n"
                 "# TYPE stylus_embed_retries_total counter\n"
                 "stylus_embed_retries_total %llu\n"
                 "# TYPE stylus_embed_rate_limited_total counter\n"
                 "stylus_embed_rate_limited_total %llu\n"
                 "# TYPE stylus_embed_failures_total counter\n"
                 "stylus_embed_failures_total %llu\n",
                 (unsigned long long)st.requests, (unsigned long long)st.retries,
                 (unsigned long long)st.rate_limited, (unsigned long long)st.failures);
}

static enum MHD_Result metrics(struct server *srv, struct MHD_Connection *conn)
{
        char buf[2048], embed[768];
        int len;

        embed_metrics(srv, embed, sizeof(embed));
        len = snprintf(buf, sizeof(buf),
                       "# TYPE stylus_query_requests_total counter\n"
                       "stylus_query_requests_total %llu\n"
                       "# TYPE stylus_query_errors_total counter\n"
                       "stylus_query_errors_total %llu\n"
                       "# TYPE stylus_query_composed_total counter\n"
                       "stylus_query_composed_total %llu\n"
                       "# TYPE stylus_query_partial_total counter\n"
                       "stylus_query_partial_total %llu\n"
                       "# TYPE stylus_query_seconds_total counter\n"
                       "stylus_query_seconds_total %.3f\n%s",
                       (unsigned long long)srv->requests, (unsigned long long)srv->errors,
                       (unsigned long long)srv->composed, (unsigned long long)srv->partial,
                       srv->seconds, embed);

        return send_text(conn, 200, "text/plain; version=0.0.4", buf, (size_t)len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **state)
{
        struct server *srv = cls;
        struct upload *up = *state;
        bool post = !strcmp(method, "POST");

        (void)version;
        if (post && !up) {
                up = calloc(1, sizeof(*up));
                if (!up)
                        return MHD_NO;
                *state = up;
                return MHD_YES;
        }
        if (post && *data_size) {
                if (!up->too_big && up->len + *data_size <= COMPOSE_REQUEST_MAX_BODY) {
                        char *p = realloc(up->data, up->len + *data_size + 1);

                        if (!p)
                                return MHD_NO;
                        memcpy(p + up->len, data, *data_size);
                        up->data = p;
                        up->len += *data_size;
                        up->data[up->len] = '\0';
                } else {
                        up->too_big = true;
                }
                *data_size = 0;
                return MHD_YES;
        }
        srv->requests++;
        if (post && up->too_big)
                return send_error(srv, conn, 413, ST_ETOOBIG, "request body over 64 KiB");
        if (!strcmp(url, "/v1/compose") || !strcmp(url, "/v1/retrieve")) {
                if (!post)
                        return send_error(srv, conn, 405, ST_EINVAL, "use POST");
                return compose(srv, conn, up, !strcmp(url, "/v1/compose"));
        }
        if (!strcmp(url, "/healthz"))
                return send_json(conn, 200, json_pack("{s:b}", "ok", 1));
        if (!strcmp(url, "/metrics"))
                return metrics(srv, conn);
        return send_error(srv, conn, 404, ST_ENOTFOUND, "no such endpoint");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **state,
                         enum MHD_RequestTerminationCode toe)
{
        struct upload *up = *state;

        (void)cls;
        (void)conn;
        (void)toe;
        if (up) {
                free(up->data);
                free(up);
                *state = NULL;
        }
}

static void usage(FILE *f)
{
        fputs("usage: stylus serve --shard ENDPOINT[,REPLICA...]... [--listen ADDR:PORT]\n"
              "                    [--dim N] [--deadline-ms MS] [--curve-key F --curve-server-key "
              "F]\n"
              "                    [--embed-url URL --embed-model NAME --embed-dim D\n"
              "                     [--embed-key-file F] ...]\n"
              "\n"
              "Run a query node: HTTP POST /v1/compose embeds the prompt, asks one replica\n"
              "of every shard for its top-K, and composes an adapter set with weights and\n"
              "ready-made A1111 / ComfyUI / diffusers forms.  The prompt must be embedded\n"
              "by the index's model: the built-in one (default) or the endpoint the\n"
              "indexers use (--embed-*, same model and dimension); a shard serving another\n"
              "model makes every query fail with a 500 naming both models.\n"
              "\n"
              "  --shard LIST       one shard: its replica endpoints, comma-separated\n"
              "                     (repeat once per shard, in shard order)\n"
              "  --listen ADDR:PORT HTTP address (default 127.0.0.1:8080)\n"
              "  --dim N            dimension of the built-in embedder (default 384)\n"
              "  --deadline-ms MS   time allowed for the shards (default 2000)\n"
              "  --curve-key F      this node's CURVE keypair (or STYLUS_CURVE_KEY)\n"
              "  --curve-server-key F  the shards' public key (or STYLUS_CURVE_SERVER_KEY);\n"
              "                     needed for shards that are not on loopback\n",
              f);
        fputs(EMBEDDER_CHOICE_USAGE, f);
        fputs(
            "                       (default here 10000: a caller is waiting)\n"
            "\n"
            "examples:\n"
            "  stylus serve --shard tcp://127.0.0.1:5600\n"
            "  stylus serve --shard tcp://a:5600,tcp://b:5600 --shard tcp://c:5601 "
            "--listen 0.0.0.0:8080\n"
            "  STYLUS_EMBED_KEY=sk-... stylus serve --shard tcp://127.0.0.1:5600 \\\n"
            "      --embed-url https://api.openai.com/v1 --embed-model text-embedding-3-small \\\n"
            "      --embed-dim 1536\n",
            f);
}

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
        char host[64];
        const char *colon = strrchr(s, ':');
        long port;

        if (!colon || (size_t)(colon - s) >= sizeof(host))
                return ST_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = strtol(colon + 1, NULL, 10);
        memset(sa, 0, sizeof(*sa));
        sa->sin_family = AF_INET;
        sa->sin_port = htons((uint16_t)port);
        if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                return ST_EINVAL;
        return 0;
}

int cmd_serve(int argc, char **argv)
{
        static const struct option opts[] = {
            {"shard", required_argument, NULL, 's'},
            {"listen", required_argument, NULL, 'l'},
            {"dim", required_argument, NULL, 'd'},
            {"deadline-ms", required_argument, NULL, 't'},
            {"curve-key", required_argument, NULL, 'K'},
            {"curve-server-key", required_argument, NULL, 'S'},
            {"help", no_argument, NULL, 'h'},
            EMBEDDER_CHOICE_OPTIONS,
            {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct server srv = {0};
        struct st_error err = {0};
        struct embedder_flags ef;
        struct sockaddr_in sa;
        struct MHD_Daemon *d;
        const char *shards[MAX_SHARD_ARGS];
        const char *listen = "127.0.0.1:8080";
        const char *curve_key = NULL, *curve_server_key = NULL;
        size_t n_shards = 0;
        long dim = EMBED_DEFAULT_DIM, deadline = 2000;
        bool dim_given = false;
        int c, rc;

        embedder_flags_init(&ef);
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                rc = embedder_flags_take(&ef, c, optarg, &err);
                if (rc < 0) {
                        fprintf(stderr, "stylus serve: %s\n", err.msg);
                        usage(stderr);
                        return 2;
                }
                if (rc > 0)
                        continue;
                switch (c) {
                case 's':
                        if (n_shards == MAX_SHARD_ARGS) {
                                fprintf(stderr, "stylus serve: too many shards\n");
                                return 2;
                        }
                        shards[n_shards++] = optarg;
                        break;
                case 'l':
                        listen = optarg;
                        break;
                case 'd':
                        dim = strtol(optarg, NULL, 10);
                        dim_given = true;
                        break;
                case 't':
                        deadline = strtol(optarg, NULL, 10);
                        break;
                case 'K':
                        curve_key = optarg;
                        break;
                case 'S':
                        curve_server_key = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (n_shards == 0 || deadline <= 0 || parse_listen(listen, &sa) || dim <= 0 ||
            dim > EMBED_MAX_DIM || optind < argc) {
                usage(stderr);
                return 2;
        }
        if (dim_given && ef.url) {
                fprintf(stderr,
                        "stylus serve: --dim is the built-in embedder's; give --embed-dim\n");
                return 2;
        }
        log_setup("serve", LOG_INFO);
        if (embedder_choice_open(&srv.embedder, &ef, (int)dim, EMBEDDER_DEADLINE_QUERY_MS, &err)) {
                fprintf(stderr, "stylus serve: %s\n", st_error_text(&err, err.code));
                return 2;
        }
        if (security_load(&srv.security, curve_key, curve_server_key, NULL, &err) ||
            fanout_new(shards, n_shards, deadline, &srv.security, &srv.fanout, &err)) {
                log_error("%s", err.msg);
                security_release(&srv.security);
                embedder_choice_close(&srv.embedder);
                return 1;
        }
        d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, &srv,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
            NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)(256 << 10), MHD_OPTION_END);
        if (!d) {
                log_error("cannot listen on %s", listen);
                fanout_destroy(&srv.fanout);
                security_release(&srv.security);
                embedder_choice_close(&srv.embedder);
                return 1;
        }
        log_info("query node on http://%s over %zu shard(s), embedding model %s (%d dims)", listen,
                 n_shards, srv.embedder.model, srv.embedder.dim);
        worker_stop_on_signals(&stop);
        while (!stop)
                pause();
        MHD_stop_daemon(d);
        fanout_destroy(&srv.fanout);
        security_release(&srv.security);
        embedder_choice_close(&srv.embedder);
        log_info("query node stopped after %llu requests", (unsigned long long)srv.requests);
        return 0;
}
