/*
 * keygen_cmd.c - `stylus keygen PREFIX`: make a CURVE keypair for a
 * process of the cluster (proto/security.h): PREFIX.key (secret, 0600) and
 * PREFIX.pub (public, to put in the servers' allow file).
 */
#include <getopt.h>
#include <stdio.h>

#include "ops/commands.h"
#include "proto/security.h"

static void usage(FILE *f)
{
        fputs("usage: stylus keygen PREFIX\n"
              "\n"
              "Make a CURVE keypair: PREFIX.key (keypair, mode 0600, keep it secret) and\n"
              "PREFIX.pub (public key).  Servers (catalog, shards) load theirs with\n"
              "--curve-key and list the public keys of the processes that may connect in\n"
              "an allow file (--curve-allow); clients load theirs with --curve-key and the\n"
              "server's public key with --curve-server-key.  Endpoints that are not on\n"
              "loopback always need these keys.\n"
              "\n"
              "examples:\n"
              "  stylus keygen /etc/stylus/server\n"
              "  stylus keygen worker1 && cat worker1.pub >> /etc/stylus/allow\n",
              f);
}

int cmd_keygen(int argc, char **argv)
{
        static const struct option opts[] = {
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        char pub[SECURITY_KEY_LEN + 1];
        struct st_error err = {0};
        int c;

        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (c == 'h') {
                        usage(stdout);
                        return 0;
                }
                usage(stderr);
                return 2;
        }
        if (optind != argc - 1) {
                usage(stderr);
                return 2;
        }
        if (security_keygen(argv[optind], pub, &err)) {
                fprintf(stderr, "stylus keygen: %s\n", err.msg);
                return 1;
        }
        printf("wrote %s.key and %s.pub; public key %s\n", argv[optind], argv[optind], pub);
        return 0;
}
