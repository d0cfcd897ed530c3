/*
 * serve_cmd.c - `stylus serve`: the query node's HTTP front (libmicrohttpd)
 * over query/service.h, which has the requests, answers and errors.
 *
 *   method  path            body                       answer
 *   POST    /v1/compose     query/request.h            adapter set (query/forms.h), 200
 *   POST    /v1/retrieve    same                       {"candidates":[{id,name,score,...}]}
 *   GET     /v1/adapters/{id}  -                       {"adapter": StylusDoc, "save_as"}
 *   GET     /healthz        -                          {"ok":true}
 *   GET     /metrics        -                          Prometheus text
 *
 * Errors are {"error":{"code":"...","message":"..."}} with service.h's
 * statuses, and 404 (no such path), 405 (wrong method), 413 (body over
 * COMPOSE_REQUEST_MAX_BODY).  libmicrohttpd runs the requests on a pool of
 * --lanes polling threads, as many as the service has lanes.
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
#include "query/fanout.h"
#include "query/request.h"
#include "query/service.h"
#include "query/zmq_front.h"

#define MAX_SHARD_ARGS FANOUT_MAX_SHARDS
#define ADAPTERS       "/v1/adapters/" /* GET /v1/adapters/{id} */

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

static enum MHD_Result send_error(struct service *svc, struct MHD_Connection *conn, unsigned status,
                                  int code, const char *message)
{
        service_count_error(svc);
        return send_json(conn, status, service_error_json(code, message));
}

static enum MHD_Result run_request(struct service *svc, struct MHD_Connection *conn,
                                   enum service_op op, const struct upload *up)
{
        json_t *answer = NULL;
        unsigned status = service_handle(svc, op, up->data, up->len, &answer);

        if (!answer)
                return send_text(conn, 500, "text/plain", "out of memory", 13);
        return send_json(conn, status, answer);
}

static enum MHD_Result metrics(struct service *svc, struct MHD_Connection *conn)
{
        char buf[4096];

        service_metrics(svc, buf, sizeof(buf));
        return send_text(conn, 200, "text/plain; version=0.0.4", buf, strlen(buf));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **state)
{
        struct service *svc = cls;
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
        if (post && up->too_big)
                return send_error(svc, conn, 413, ST_ETOOBIG, "request body over 64 KiB");
        if (!strcmp(url, "/v1/compose") || !strcmp(url, "/v1/retrieve")) {
                if (!post)
                        return send_error(svc, conn, 405, ST_EINVAL, "use POST");
                return run_request(svc, conn,
                                   !strcmp(url, "/v1/compose") ? SERVICE_COMPOSE : SERVICE_RETRIEVE,
                                   up);
        }
        if (!strncmp(url, ADAPTERS, strlen(ADAPTERS))) {
                struct upload id = {(char *)url + strlen(ADAPTERS), strlen(url) - strlen(ADAPTERS),
                                    false};

                if (post)
                        return send_error(svc, conn, 405, ST_EINVAL, "use GET");
                return run_request(svc, conn, SERVICE_ADAPTER, &id);
        }
        if (!strcmp(url, "/healthz"))
                return send_json(conn, 200, json_pack("{s:b}", "ok", 1));
        if (!strcmp(url, "/metrics"))
                return metrics(svc, conn);
        return send_error(svc, conn, 404, ST_ENOTFOUND, "no such endpoint");
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
        fputs(
            "usage: stylus serve --shard ENDPOINT[,REPLICA...]... [--listen ADDR:PORT]\n"
            "                    [--zmq-listen ENDPOINT] [--lanes N] [--dim N] [--deadline-ms MS]\n"
            "                    [--curve-key F --curve-server-key F [--curve-allow F]]\n"
            "                    [--embed-url URL --embed-model NAME --embed-dim D\n"
            "                     [--embed-key-file F] ...]\n"
            "                    [--composer-url URL --composer-model NAME\n"
            "                     [--composer-key-file F] [--composer-timeout-ms MS]]\n"
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
            "  --zmq-listen ENDPOINT  also answer the same requests as msgpack maps on a\n"
            "                     ZeroMQ ROUTER (docs/zmq.md), e.g. tcp://127.0.0.1:5700;\n"
            "                     CURVE (--curve-key, --curve-allow) unless on loopback\n"
            "                     with --insecure\n"
            "  --dim N            dimension of the built-in embedder (default 384)\n"
            "  --deadline-ms MS   time allowed for the shards (default 2000)\n"
            "  --lanes N          requests answered at once, HTTP and ZeroMQ together\n"
            "                     (default 4, at most 64); each lane has its own sockets\n"
            "                     to the shards and its own HTTP clients\n"
            "  --curve-key F      this node's CURVE keypair (or STYLUS_CURVE_KEY)\n"
            "  --curve-server-key F  the shards' public key (or STYLUS_CURVE_SERVER_KEY);\n"
            "                     needed for shards that are not on loopback\n"
            "  --curve-allow F    client keys the ZeroMQ front accepts (or STYLUS_CURVE_ALLOW)\n",
            f);
        fputs(EMBEDDER_CHOICE_USAGE, f);
        fputs(
            "                       (here --embed-deadline-ms defaults to 10000: a caller waits)\n"
            "  --composer-url URL   compose with one LLM call to an OpenAI-compatible\n"
            "                       /v1/chat/completions endpoint (docs/composer.md); on any\n"
            "                       failure the built-in rule composer answers\n"
            "  --composer-model NAME  the LLM (required with --composer-url)\n"
            "  --composer-key-file F  file holding the API key (else $STYLUS_COMPOSER_KEY);\n"
            "                       never logged\n"
            "  --composer-timeout-ms MS  the LLM call, connect included (default 10000)\n"
            "\n"
            "examples:\n"
            "  stylus serve --shard tcp://127.0.0.1:5600\n"
            "  stylus serve --shard tcp://a:5600,tcp://b:5600 --shard tcp://c:5601 "
            "--listen 0.0.0.0:8080\n"
            "  stylus --insecure serve --shard tcp://127.0.0.1:5600 "
            "--zmq-listen tcp://127.0.0.1:5700\n"
            "  STYLUS_EMBED_KEY=sk-... stylus serve --shard tcp://127.0.0.1:5600 \\\n"
            "      --embed-url https://api.openai.com/v1 --embed-model text-embedding-3-small \\\n"
            "      --embed-dim 1536\n"
            "  STYLUS_COMPOSER_KEY=sk-... stylus serve --shard tcp://127.0.0.1:5600 \\\n"
            "      --composer-url https://api.openai.com/v1 --composer-model gpt-4o\n",
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
            {"lanes", required_argument, NULL, 'L'},
            {"curve-key", required_argument, NULL, 'K'},
            {"curve-server-key", required_argument, NULL, 'S'},
            {"curve-allow", required_argument, NULL, 'A'},
            {"zmq-listen", required_argument, NULL, 'z'},
            {"composer-url", required_argument, NULL, 'u'},
            {"composer-model", required_argument, NULL, 'm'},
            {"composer-key-file", required_argument, NULL, 'k'},
            {"composer-timeout-ms", required_argument, NULL, 'o'},
            {"help", no_argument, NULL, 'h'},
            EMBEDDER_CHOICE_OPTIONS,
            {NULL, 0, NULL, 0},
        };
        static volatile sig_atomic_t stop;
        struct service_config cfg = {0};
        struct service *svc = NULL;
        struct security security = {0};
        struct st_error err = {0};
        struct embedder_flags ef;
        struct composer_llm_config llm;
        struct sockaddr_in sa;
        struct MHD_Daemon *d;
        const char *shards[MAX_SHARD_ARGS];
        const char *listen = "127.0.0.1:8080";
        const char *curve_key = NULL, *curve_server_key = NULL, *curve_allow = NULL;
        const char *zmq_listen = NULL;
        struct zmq_front *front = NULL;
        size_t n_shards = 0;
        long dim = EMBED_DEFAULT_DIM, deadline = 2000, lanes = SERVICE_DEFAULT_LANES;
        bool dim_given = false;
        int c, rc;

        embedder_flags_init(&ef);
        composer_llm_config_defaults(&llm);
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
                case 'L':
                        lanes = strtol(optarg, NULL, 10);
                        break;
                case 'K':
                        curve_key = optarg;
                        break;
                case 'S':
                        curve_server_key = optarg;
                        break;
                case 'A':
                        curve_allow = optarg;
                        break;
                case 'z':
                        zmq_listen = optarg;
                        break;
                case 'u':
                        llm.url = optarg;
                        break;
                case 'm':
                        llm.model = optarg;
                        break;
                case 'k':
                        llm.key_file = optarg;
                        break;
                case 'o':
                        llm.deadline_ms = strtol(optarg, NULL, 10);
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
            dim > EMBED_MAX_DIM || lanes < 1 || lanes > SERVICE_MAX_LANES || optind < argc) {
                usage(stderr);
                return 2;
        }
        if (!llm.url != !llm.model || (!llm.url && llm.key_file) || llm.deadline_ms <= 0) {
                fprintf(stderr, "stylus serve: --composer-url and --composer-model go together "
                                "(with an optional key file and a timeout > 0)\n");
                return 2;
        }
        if (dim_given && ef.url) {
                fprintf(stderr,
                        "stylus serve: --dim is the built-in embedder's; give --embed-dim\n");
                return 2;
        }
        log_setup("serve", LOG_INFO);
        cfg.shards = shards;
        cfg.n_shards = n_shards;
        cfg.deadline_ms = deadline;
        cfg.security = &security;
        cfg.embed = &ef;
        cfg.dim = (int)dim;
        cfg.composer = llm.url ? &llm : NULL;
        cfg.lanes = (int)lanes;
        if (security_load(&security, curve_key, curve_server_key, curve_allow, &err) ||
            service_open(&cfg, &svc, &err)) {
                fprintf(stderr, "stylus serve: %s\n", st_error_text(&err, err.code));
                security_release(&security);
                return 1;
        }
        /* One polling thread per lane: a slow request (an LLM call) holds up only its own. */
        d = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, svc,
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
            NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)(256 << 10), MHD_OPTION_THREAD_POOL_SIZE, (unsigned)lanes, MHD_OPTION_END);
        if (!d) {
                log_error("cannot listen on %s", listen);
                service_close(&svc);
                security_release(&security);
                return 1;
        }
        if (zmq_listen && zmq_front_start(svc, zmq_listen, &security, &front, &err)) {
                log_error("ZeroMQ front: %s", st_error_text(&err, err.code));
                MHD_stop_daemon(d);
                service_close(&svc);
                security_release(&security);
                return 1;
        }
        if (front)
                log_info("query node answers msgpack requests on %s", zmq_listen);
        log_info("query node on http://%s over %zu shard(s), embedding model %s (%d dims), %d "
                 "lanes",
                 listen, n_shards, service_model(svc), service_dim(svc), service_lanes(svc));
        worker_stop_on_signals(&stop);
        while (!stop)
                pause();
        zmq_front_stop(&front);
        MHD_stop_daemon(d);
        service_close(&svc);
        security_release(&security);
        log_info("query node stopped");
        return 0;
}
