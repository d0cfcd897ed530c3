/*
 * refiner_cmd.c - `stylus refiner`: a worker that turns raw records into
 * StylusDocs with the built-in card refiner (refiner/card.h).
 */
#include <stdlib.h>
#include <string.h>

#include "ops/commands.h"
#include "proto/cli.h"
#include "proto/doc.h"
#include "proto/wire.h"
#include "refiner/card.h"

static int refine_job(void *ctx, const msgpack_object *payload, struct arena *a, msgpack_packer *pk,
                      struct st_error *err)
{
        const msgpack_object *o = wire_get(payload, "record");
        struct st_raw_record r;
        struct st_doc d;
        int rc;

        (void)ctx;
        if (!o)
                return st_fail(err, ST_EMISSING, "refine job without a record");
        rc = st_raw_record_from_object(o, a, &r, err);
        if (rc)
                return rc;
        rc = card_refine(&r, a, &d, err);
        if (rc)
                return rc;
        msgpack_pack_map(pk, 1);
        wire_pack_key(pk, "doc");
        return st_doc_pack(pk, &d);
}

static void usage(FILE *f)
{
        fputs("usage: stylus refiner [--connect ENDPOINT] [--max-jobs N]\n"
              "\n"
              "Run a refiner worker: take refine jobs from the catalog and write a StylusDoc\n"
              "for each raw record with the built-in card refiner (description from the\n"
              "card HTML, trigger words, recommended weight, task category).\n"
              "\n"
              "  --connect ENDPOINT  catalog broker (default tcp://127.0.0.1:5555)\n"
              "  --max-jobs N        exit after N jobs (default: run until stopped)\n"
              "\n"
              "examples:\n"
              "  stylus refiner\n"
              "  stylus refiner --connect tcp://catalog.lan:5555\n",
              f);
}

int cmd_refiner(int argc, char **argv)
{
        static const struct option opts[] = {
            {"connect", required_argument, NULL, 'c'},
            {"max-jobs", required_argument, NULL, 'n'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *endpoint = "tcp://127.0.0.1:5555";
        long max_jobs = 0;
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        endpoint = optarg;
                        break;
                case 'n':
                        max_jobs = strtol(optarg, NULL, 10);
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        return cli_run_worker("refiner", endpoint, "refine", refine_job, NULL, max_jobs);
}
