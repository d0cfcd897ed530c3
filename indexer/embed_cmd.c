/*
 * embed_cmd.c - `stylus embed TEXT...`: embed texts with the embedder the
 * --embed-* flags choose (indexer/embedder_choice.h) and print one JSON line
 * per text, {"model": NAME, "dim": D, "vector": [floats]}, in the order
 * given.  For operators (is the endpoint up, does it give the dimension the
 * index expects, what does the built-in make of a text) and for tests.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "indexer/embedder_choice.h"
#include "ops/commands.h"
#include "proto/log.h"

static void usage(FILE *f)
{
        fputs("usage: stylus embed [--dim N] [--embed-url URL --embed-model NAME --embed-dim D\n"
              "                    [--embed-key-file F] [--embed-batch N] ...] TEXT...\n"
              "\n"
              "Embed each TEXT and print one JSON line per text, in order:\n"
              "  {\"model\": NAME, \"dim\": D, \"vector\": [D floats, L2-normalized]}\n"
              "with the built-in offline embedder (default) or an OpenAI-compatible\n"
              "/v1/embeddings endpoint, exactly as the indexer and the query node do.\n"
              "Exit status 1 with the reason on stderr when the endpoint fails.\n"
              "\n"
              "  --dim N              dimension of the built-in embedder (default 384)\n"
              "  -q, --quiet          no log lines on stderr, only errors\n",
              f);
        fputs(EMBEDDER_CHOICE_USAGE, f);
        fputs(
            "\n"
            "examples:\n"
            "  stylus embed \"a corgi in watercolor style\"\n"
            "  STYLUS_EMBED_KEY=sk-... stylus embed --embed-url https://api.openai.com/v1 \\\n"
            "      --embed-model text-embedding-3-small --embed-dim 1536 \"pixel art\" "
            "\"ukiyo-e\"\n"
            "  stylus embed --embed-url http://127.0.0.1:11434 --embed-model nomic-embed-text \\\n"
            "      --embed-dim 768 \"a gothic cathedral\" | jq .dim\n",
            f);
}

/* One output line: model, dim and the vector v[dim]. */
static int print_vector(const char *model_json, int dim, const float *v)
{
        int i;

        printf("{\"model\":%s,\"dim\":%d,\"vector\":[", model_json, dim);
        for (i = 0; i < dim; i++)
                printf("%s%.9g", i ? "," : "", (double)v[i]);
        fputs("]}\n", stdout);
        return ferror(stdout) ? -1 : 0;
}

static int embed_and_print(struct embedder_choice *e, char **texts, size_t n)
{
        struct st_error err = {0};
        json_t *m = json_string(e->model);
        char *model_json = m ? json_dumps(m, JSON_ENCODE_ANY) : NULL;
        float *vectors = calloc(n * (size_t)e->dim, sizeof(float));
        int status = 1;
        size_t i;

        json_decref(m);
        if (!model_json || !vectors) {
                fputs("stylus embed: out of memory\n", stderr);
                goto out;
        }
        if (embedder_choice_embed(e, (const char *const *)texts, n, vectors, &err)) {
                fprintf(stderr, "stylus embed: %s\n", st_error_text(&err, err.code));
                goto out;
        }
        for (i = 0; i < n; i++)
                if (print_vector(model_json, e->dim, vectors + i * (size_t)e->dim))
                        goto out;
        status = fflush(stdout) ? 1 : 0;
out:
        free(vectors);
        free(model_json);
        return status;
}

int cmd_embed(int argc, char **argv)
{
        static const struct option opts[] = {
            {"dim", required_argument, NULL, 'd'},
            {"quiet", no_argument, NULL, 'q'},
            {"help", no_argument, NULL, 'h'},
            EMBEDDER_CHOICE_OPTIONS,
            {NULL, 0, NULL, 0},
        };
        struct embedder_choice e;
        struct embedder_flags ef;
        struct st_error err = {0};
        long dim = EMBED_DEFAULT_DIM;
        bool dim_given = false, quiet = false;
        int c, rc;

        embedder_flags_init(&ef);
        while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
                rc = embedder_flags_take(&ef, c, optarg, &err);
                if (rc < 0)
                        goto bad_usage;
                if (rc > 0)
                        continue;
                switch (c) {
                case 'd':
                        dim = strtol(optarg, NULL, 10);
                        dim_given = true;
                        break;
                case 'q':
                        quiet = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        goto bad_usage;
                }
        }
        if (optind >= argc) {
                st_fail(&err, ST_EINVAL, "no TEXT to embed");
                goto bad_usage;
        }
        if (dim <= 0 || dim > EMBED_MAX_DIM) {
                st_fail(&err, ST_EINVAL, "--dim must be 1..%d", EMBED_MAX_DIM);
                goto bad_usage;
        }
        if (dim_given && ef.url) {
                st_fail(&err, ST_EINVAL, "--dim is the built-in embedder's; give --embed-dim");
                goto bad_usage;
        }
        log_setup("embed", quiet ? LOG_ERROR : LOG_INFO);
        if (embedder_choice_open(&e, &ef, (int)dim, EMBEDDER_DEADLINE_WORKER_MS, &err)) {
                fprintf(stderr, "stylus embed: %s\n", st_error_text(&err, err.code));
                return 2;
        }
        rc = embed_and_print(&e, argv + optind, (size_t)(argc - optind));
        embedder_choice_close(&e);
        return rc;
bad_usage:
        if (err.code)
                fprintf(stderr, "stylus embed: %s\n", err.msg);
        usage(stderr);
        return 2;
}
