/*
 * security.h - ZeroMQ CURVE on every socket that leaves the machine.
 *
 * Rule: every socket uses CURVE unless plaintext is asked for explicitly
 * with --insecure (a flag of every stylus command: ops/main_cmd.c turns it
 * into STYLUS_INSECURE=1, which child processes inherit), and even then only
 * on loopback (tcp://127.x.x.x, tcp://localhost, tcp://[::1], ipc://,
 * inproc://).  Any other endpoint needs CURVE keys, and there is no switch to
 * turn that off.
 *
 * Keys (make them with `stylus keygen`):
 *   keypair file   "public=<40 Z85 chars>\nsecret=<40 Z85 chars>\n", mode 0600
 *   public file    "<40 Z85 chars>\n"
 *   allow file     one public key per line; '#' starts a comment
 *
 * Every process has one keypair (--curve-key or STYLUS_CURVE_KEY).  Servers
 * (the catalog's broker, shards' query sockets) use it as their server key
 * and accept only clients whose public key is in the allow file
 * (--curve-allow or STYLUS_CURVE_ALLOW) or equals their own public key (so
 * the catalog and shards may share one server keypair).  Clients also need
 * the server's public key (--curve-server-key or STYLUS_CURVE_SERVER_KEY).
 *
 * A client with a key not on the list gets nothing: ZeroMQ drops the
 * handshake; the server logs the refusal with the peer's address and never
 * any key material.  Secret keys never reach logs, errors or metrics.
 *
 * Thread rules: security_start_zap() starts one thread per ZeroMQ context
 * that answers ZAP requests over inproc://zeromq.zap.01; everything else
 * runs in the caller's thread.
 */
#ifndef STYLUS_SECURITY_H
#define STYLUS_SECURITY_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/errors.h"

#define SECURITY_KEY_LEN   40   /* Z85 characters of a CURVE key */
#define SECURITY_MAX_ALLOW 4096 /* keys in an allow file */

struct security {
        bool has_keypair;
        char public_key[SECURITY_KEY_LEN + 1];
        char secret_key[SECURITY_KEY_LEN + 1];
        bool has_server_key;
        char server_key[SECURITY_KEY_LEN + 1];
        unsigned char (*allow)[32]; /* decoded allowed public keys, n_allow of them */
        size_t n_allow;
        struct zap *zap; /* running ZAP handler, or NULL */
};

/*
 * Load the keys named by the files (NULL: take the STYLUS_CURVE_KEY,
 * STYLUS_CURVE_SERVER_KEY, STYLUS_CURVE_ALLOW environment variables, each a
 * file path; unset: none).  A file that cannot be read or holds a malformed
 * key is an error naming the file (never its content).
 */
int security_load(struct security *s, const char *key_file, const char *server_key_file,
                  const char *allow_file, struct st_error *err);

/*
 * A copy of from with its own allow list and no ZAP handler, for a server
 * on another ZeroMQ context (a context has one ZAP handler).  Release it
 * with security_release().  ST_ENOMEM.
 */
int security_copy(struct security *to, const struct security *from, struct st_error *err);

/* Wipe the keys, stop the ZAP handler, free the allow list. */
void security_release(struct security *s);

/* Whether endpoint stays on this machine (may be plaintext with --insecure). */
bool security_is_loopback(const char *endpoint);

/* Whether plaintext was asked for: STYLUS_INSECURE set to anything but "" or "0". */
bool security_insecure(void);

/*
 * Prepare sock (not yet bound) to bind endpoint as a server: CURVE when a
 * keypair is loaded (then an allow list is required and the ZAP handler is
 * started on ctx), plaintext only with --insecure and on loopback.  ST_EINVAL
 * with a clear message otherwise.
 */
int security_server(struct security *s, void *ctx, void *sock, const char *endpoint,
                    struct st_error *err);

/* Prepare sock (not yet connected) to connect to endpoint as a client; s may be NULL (no keys). */
int security_client(const struct security *s, void *sock, const char *endpoint,
                    struct st_error *err);

/*
 * Write a new keypair: <prefix>.key (keypair, 0600) and <prefix>.pub (public
 * key).  Refuses to overwrite existing files.
 */
int security_keygen(const char *prefix, char public_key[SECURITY_KEY_LEN + 1],
                    struct st_error *err);

#endif
