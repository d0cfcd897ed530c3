/*
 * main_cmd.c - the stylus binary: one subcommand per role.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/commands.h"

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
            "\nexamples:\n"
            "  stylus up --demo\n"
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

int main(int argc, char **argv)
{
        argc = take_insecure(argc, argv);
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
