/*
 * catalog_backup_cmd.c - `stylus catalog backup`: a live, compact copy of
 * a catalog's LMDB environment (mdb_env_copy2 with MDB_CP_COMPACT).  It runs
 * inside one read transaction, so the running catalog keeps writing and the
 * copy is a consistent snapshot of one moment.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "ops/commands.h"

static void usage(FILE *f)
{
        fputs(
            "usage: stylus catalog backup --data DIR PATH\n"
            "\n"
            "Copy the catalog in DIR to the new directory PATH while it runs: a compact,\n"
            "consistent snapshot (free pages left out).  Start a catalog on PATH to\n"
            "restore it.\n"
            "\n"
            "examples:\n"
            "  stylus catalog backup --data /var/lib/stylus/catalog /backup/catalog-$(date +%F)\n",
            f);
}

int cmd_catalog_backup(int argc, char **argv)
{
        static const struct option opts[] = {
            {"data", required_argument, NULL, 'd'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *data = NULL, *dest;
        char path[4096];
        MDB_env *env;
        int c, rc;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                switch (c) {
                case 'd':
                        data = optarg;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (!data || optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        dest = argv[optind];
        if (mkdir(dest, 0755) != 0) {
                fprintf(stderr, "stylus catalog backup: cannot create %s: %s\n", dest,
                        strerror(errno));
                return 1;
        }
        rc = mdb_env_create(&env);
        if (!rc) {
                mdb_env_set_maxdbs(env, 64);
                rc = mdb_env_open(env, data, MDB_RDONLY | MDB_NOTLS, 0644);
                if (!rc)
                        rc = mdb_env_copy2(env, dest, MDB_CP_COMPACT);
                mdb_env_close(env);
        }
        if (rc) {
                fprintf(stderr, "stylus catalog backup: %s -> %s: %s\n", data, dest,
                        mdb_strerror(rc));
                /* Leave no half copy that looks like a catalog. */
                snprintf(path, sizeof(path), "%s/data.mdb", dest);
                unlink(path);
                rmdir(dest);
                return 1;
        }
        printf("backed up %s to %s\n", data, dest);
        return 0;
}
