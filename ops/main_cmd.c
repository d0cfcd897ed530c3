/*
 * main_cmd.c - the stylus binary: one subcommand per role.
 *
 * Every command also takes --insecure (plaintext ZeroMQ on loopback) and
 * --config FILE (or STYLUS_CONFIG): the flags of the file's [command]
 * section (proto/config.h) go before the ones on the command line, which
 * win.  Both become environment variables, so the processes a command
 * starts (stylus up) inherit them.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/commands.h"
#include "proto/config.h"

#define MAX_ARGS 4096 /* command-line words, the config file's included */

struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};

static const struct command commands[] = {
    {"up", cmd_up, "run a whole cluster on this machine (--demo: on bundled data)"},
    {"catalog", cmd_catalog, "catalog coordinator: LMDB store and job broker"},
    {"crawler", cmd_crawler, "crawler worker: Civitai and Hugging Face pages to raw records"},
    {"images", cmd_images, "images worker: example images into a content-addressed store"},
    {"refiner", cmd_refiner, "refiner worker: raw records to StylusDocs"},
    {"indexer", cmd_indexer, "indexer worker: StylusDocs to embeddings"},
    {"embed", cmd_embed, "embed texts as the indexer does; one JSON line per text"},
    {"idf", cmd_idf, "learn IDF weights for the built-in embedder from a catalog"},
    {"shard", cmd_shard, "shard server: follows the changelog, answers top-K"},
    {"serve", cmd_serve, "query node: HTTP /v1/compose over the shards"},
    {"ask", cmd_ask, "ask a query node which adapters suit a prompt"},
    {"status", cmd_status, "print the catalog's counters and queues"},
    {"keygen", cmd_keygen, "make a CURVE keypair for a cluster process"},
    {"export", cmd_export, "export the StylusDocs as a dataset (JSONL + .npy + card)"},
    {"requeue", cmd_requeue, "put a catalog's dead letters back in their queues"},
};

static void usage(FILE *f)
{
        fputs("usage: stylus <command> [options]   (stylus <command> --help for details)\n\n"
              "commands:\n",
              f);
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-8s  %s\n", commands[i].name, commands[i].summary);
        fputs(
            "\nevery command also takes --insecure: plaintext ZeroMQ, allowed on loopback only\n"
            "(or set STYLUS_INSECURE=1); without it every socket needs CURVE keys (stylus keygen)\n"
            "and --config FILE (or STYLUS_CONFIG=FILE): flags from the file's [command] section,\n"
            "before the command line's (docs/operations.md, \"Config file\")\n"
            "\nexamples:\n"
            "  stylus up --demo\n"
            "  stylus --config /etc/stylus.ini crawler\n"
            "  stylus ask \"a corgi in watercolor style\" --base-model sd15\n",
            f);
}

/*
 * --insecure, accepted by every command: plaintext ZeroMQ on loopback
 * (proto/security.h).  It is taken out of argv and becomes STYLUS_INSECURE=1
 * so that processes a command starts (stylus up) inherit it.
 */
static int take_insecure(int argc, char **argv)
{
        int out = 1;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--insecure"))
                        setenv("STYLUS_INSECURE", "1", 1);
                else
                        argv[out++] = argv[i];
        }
        argv[out] = NULL;
        return out;
}

/*
 * --config FILE or --config=FILE, anywhere: taken out of argv, the path set
 * as STYLUS_CONFIG.  Returns the new argc, or -1 (no FILE after it).
 */
static int take_config(int argc, char **argv)
{
        int out = 1;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--config")) {
                        if (i + 1 == argc)
                                return -1;
                        setenv("STYLUS_CONFIG", argv[++i], 1);
                } else if (!strncmp(argv[i], "--config=", 9)) {
                        setenv("STYLUS_CONFIG", argv[i] + 9, 1);
                } else {
                        argv[out++] = argv[i];
                }
        }
        argv[out] = NULL;
        return out;
}

static bool is_command(const char *name)
{
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(name, commands[i].name))
                        return true;
        return false;
}

/*
 * argv with the flags of the config file's [argv[1]] section put after the
 * command name, into out (room for MAX_ARGS + 1); argv itself when there
 * is no config.  A section that names no command is an error (a typo
 * would silently do nothing).  Returns the argc of the result, or -1.
 */
static int with_config(int argc, char **argv, struct config *c, char **out)
{
        const char *path = getenv("STYLUS_CONFIG");
        struct st_error err = {0};
        int n = 2;

        if (!path || !path[0] || argc < 2)
                return argc;
        if (config_load(path, c, &err)) {
                fprintf(stderr, "stylus: %s\n", err.msg);
                return -1;
        }
        for (size_t i = 0; i < c->n; i++)
                if (!is_command(c->entries[i].section)) {
                        fprintf(stderr, "stylus: config %s: line %d: [%s] is no command\n", path,
                                c->entries[i].line, c->entries[i].section);
                        return -1;
                }
        out[0] = argv[0];
        out[1] = argv[1];
        if (config_flags(c, argv[1], out, &n, MAX_ARGS, &err) || n + argc - 2 > MAX_ARGS) {
                fprintf(stderr, "stylus: config %s: too many flags\n", path);
                return -1;
        }
        for (int i = 2; i < argc; i++)
                out[n++] = argv[i];
        out[n] = NULL;
        return n;
}

static int dispatch(int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
                usage(stdout);
                return 0;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[1], commands[i].name))
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "stylus: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}

int main(int argc, char **argv)
{
        static char *merged[MAX_ARGS + 1];
        struct config config = {0};
        int rc;

        argc = take_config(take_insecure(argc, argv), argv);
        if (argc < 0) {
                fprintf(stderr, "stylus: --config needs a file\n");
                return 2;
        }
        argc = with_config(argc, argv, &config, merged);
        if (argc < 0) {
                config_release(&config);
                return 2;
        }
        if (config.entries)
                argv = merged;
        argc = take_insecure(argc, argv); /* the file may say insecure = true */
        rc = dispatch(argc, argv);
        config_release(&config);
        return rc;
}
