/*
 * status_cmd.c - `stylus status`: ask a catalog (or a shard) for its
 * counters and print them as JSON, or as Prometheus text (ops/prom_text.h).
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <zmq.h>

#include "ops/commands.h"
#include "ops/prom_text.h"
#include "proto/wire.h"

static void usage(FILE *f)
{
        fputs("usage: stylus status [--connect ENDPOINT] [--timeout-ms MS] [--prometheus]\n"
              "\n"
              "Print the counters of a catalog coordinator (records, docs, vectors, job\n"
              "queues, crawl cursors) or of a shard server, as JSON.\n"
              "\n"
              "  --connect ENDPOINT  catalog or shard endpoint (default tcp://127.0.0.1:5555)\n"
              "  --timeout-ms MS     give up after MS (default 3000)\n"
              "  --prometheus        print Prometheus text instead (gauges stylus_catalog_*\n"
              "                      or stylus_shard_*), e.g. for node_exporter's textfile\n"
              "                      collector\n"
              "CURVE keys for endpoints beyond loopback come from STYLUS_CURVE_KEY and\n"
              "STYLUS_CURVE_SERVER_KEY (paths of key files; see stylus keygen).\n"
              "\n"
              "examples:\n"
              "  stylus status\n"
              "  stylus status --connect tcp://10.0.0.5:5555\n"
              "  stylus status --prometheus > /var/lib/node_exporter/stylus.prom.$$ &&\n"
              "      mv /var/lib/node_exporter/stylus.prom.$$ /var/lib/node_exporter/stylus.prom\n",
              f);
}

int cmd_status(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"timeout-ms", required_argument, NULL, 't'},
            {"prometheus", no_argument, NULL, 'p'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555";
        bool prometheus = false;
        long timeout = 3000;
        struct wire_msg m;
        struct security sec;
        struct st_error err = {0};
        void *ctx;
        char *json;
        int c, rc;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 't':
                        timeout = strtol(optarg, NULL, 10);
                        break;
                case 'p':
                        prometheus = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        ctx = zmq_ctx_new();
        if (security_load(&sec, NULL, NULL, NULL, &err)) {
                fprintf(stderr, "stylus status: %s\n", err.msg);
                zmq_ctx_term(ctx);
                return 1;
        }
        rc = wire_request(ctx, &sec, endpoint, "STATUS", NULL, 0, timeout, &m);
        security_release(&sec);
        if (rc) {
                fprintf(stderr, "stylus status: %s: %s\n", endpoint, st_strerror(rc));
                zmq_ctx_term(ctx);
                return 1;
        }
        if (prometheus) {
                rc = m.has_body ? prom_write_status(&m.body.data, stdout, &err)
                                : st_fail(&err, ST_EPROTO, "a STATUS answer without a body");
                if (rc)
                        fprintf(stderr, "stylus status: %s: %s\n", endpoint, err.msg);
        } else {
                json = m.has_body ? wire_to_json(&m.body.data, 2) : NULL;
                printf("%s\n", json ? json : "{}");
                free(json);
        }
        wire_msg_release(&m);
        zmq_ctx_term(ctx);
        return rc ? 1 : 0;
}

static void requeue_usage(FILE *f)
{
        fputs("usage: stylus requeue [--connect ENDPOINT] [--stage crawl|refine|embed]\n"
              "\n"
              "Put a catalog's dead letters (jobs that failed --max-attempts times; `stylus\n"
              "status` lists them) back in their queues, all or one stage's.\n"
              "\n"
              "examples:\n"
              "  stylus requeue\n"
              "  stylus requeue --connect tcp://10.0.0.5:5555 --stage refine\n",
              f);
}

int cmd_requeue(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"stage", required_argument, NULL, 's'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555", *stage = NULL;
        struct security sec;
        struct st_error err = {0};
        struct wire_msg m;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        void *ctx;
        char *json;
        int c, rc;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 's':
                        stage = optarg;
                        break;
                case 'h':
                        requeue_usage(stdout);
                        return 0;
                default:
                        requeue_usage(stderr);
                        return 2;
                }
        }
        if (security_load(&sec, NULL, NULL, NULL, &err)) {
                fprintf(stderr, "stylus requeue: %s\n", err.msg);
                return 1;
        }
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, stage ? 1 : 0);
        if (stage)
                wire_pack_kv_str(&pk, "stage", stage);
        ctx = zmq_ctx_new();
        rc = wire_request(ctx, &sec, endpoint, "REQUEUE", sb.data, sb.size, 5000, &m);
        msgpack_sbuffer_destroy(&sb);
        security_release(&sec);
        if (rc) {
                fprintf(stderr, "stylus requeue: %s: %s\n", endpoint, st_strerror(rc));
                zmq_ctx_term(ctx);
                return 1;
        }
        json = m.has_body ? wire_to_json(&m.body.data, 0) : NULL;
        printf("%s\n", json ? json : "{}");
        rc = m.has_body && wire_get(&m.body.data, "error") ? 1 : 0;
        free(json);
        wire_msg_release(&m);
        zmq_ctx_term(ctx);
        return rc;
}
