/*
 * test_security.c - CURVE keys, allow lists and the loopback rule of
 * proto/security.h, over real ZeroMQ sockets on 127.0.0.1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "proto/security.h"
#include "proto/wire.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        printf("%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);            \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static char dir[] = "/tmp/stylus-security-XXXXXX";

static const char *path(const char *name)
{
        static char buf[8][256];
        static int i;

        i = (i + 1) % 8;
        snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
        return buf[i];
}

static void write_file(const char *p, const char *text)
{
        FILE *f = fopen(p, "w");

        if (f) {
                fputs(text, f);
                fclose(f);
        }
}

static void slurp(const char *p, char *buf, size_t size)
{
        FILE *f = fopen(p, "r");
        size_t n = f ? fread(buf, 1, size - 1, f) : 0;

        buf[n] = '\0';
        if (f)
                fclose(f);
}

/* Bind a CURVE server on a free port; its endpoint goes to ep. */
static void *server(void *ctx, struct security *s, char *ep, size_t size)
{
        struct st_error err = {0};
        void *sock = wire_socket(ctx, ZMQ_ROUTER);

        CHECK(security_server(s, ctx, sock, "tcp://127.0.0.1:0", &err) == 0);
        CHECK(zmq_bind(sock, "tcp://127.0.0.1:0") == 0);
        zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &size);
        return sock;
}

/* Whether a client with keys c gets an answer from the server within 1 s. */
static bool talks(void *ctx, void *srv, const struct security *c, const char *ep)
{
        struct st_error err = {0};
        void *cli = wire_socket(ctx, ZMQ_DEALER);
        struct wire_msg m;
        bool ok = false;

        CHECK(security_client(c, cli, ep, &err) == 0);
        zmq_connect(cli, ep);
        wire_send(cli, NULL, 0, "PING", NULL, 0);
        if (wire_wait(srv, 1000) > 0 && wire_recv(srv, true, ZMQ_DONTWAIT, &m) == 0) {
                wire_send(srv, m.identity, m.identity_len, "PONG", NULL, 0);
                wire_msg_release(&m);
                if (wire_wait(cli, 1000) > 0 && wire_recv(cli, false, ZMQ_DONTWAIT, &m) == 0) {
                        ok = !strcmp(m.command, "PONG");
                        wire_msg_release(&m);
                }
        }
        zmq_close(cli);
        return ok;
}

static void test_keygen_and_load(void)
{
        char pub[SECURITY_KEY_LEN + 1], text[512];
        struct security s;
        struct st_error err = {0};
        struct stat st;

        CHECK(security_keygen(path("a"), pub, &err) == 0);
        CHECK(strlen(pub) == SECURITY_KEY_LEN);
        CHECK(stat(path("a.key"), &st) == 0 && (st.st_mode & 0777) == 0600);
        CHECK(security_keygen(path("a"), pub, &err) == ST_EIO); /* never overwrites */
        CHECK(security_load(&s, path("a.key"), path("a.pub"), NULL, &err) == 0);
        CHECK(s.has_keypair && s.has_server_key && !strcmp(s.public_key, pub));
        security_release(&s);

        /* Errors name the file, never a key. */
        slurp(path("a.key"), text, sizeof(text));
        write_file(path("bad.key"), "public=short\nsecret=alsoshort\n");
        CHECK(security_load(&s, path("bad.key"), NULL, NULL, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, "bad.key") != NULL);
        CHECK(security_load(&s, path("missing.key"), NULL, NULL, &err) == ST_EIO);
        write_file(path("bad.allow"), "# comment\nnot-a-key\n");
        CHECK(security_load(&s, NULL, NULL, path("bad.allow"), &err) == ST_EPARSE);
        {
                char secret[SECURITY_KEY_LEN + 1] = "";
                const char *at = strstr(text, "secret=");

                CHECK(at != NULL);
                if (at)
                        snprintf(secret, sizeof(secret), "%s", at + 7);
                CHECK(strlen(secret) == SECURITY_KEY_LEN && strstr(err.msg, secret) == NULL);
        }
}

static void test_loopback_rule(void)
{
        struct security none;
        struct st_error err = {0};
        void *ctx = zmq_ctx_new();
        void *sock = zmq_socket(ctx, ZMQ_ROUTER);

        CHECK(security_load(&none, NULL, NULL, NULL, &err) == 0 || getenv("STYLUS_CURVE_KEY"));
        CHECK(security_is_loopback("tcp://127.0.0.1:5555"));
        CHECK(security_is_loopback("ipc:///tmp/x"));
        CHECK(!security_is_loopback("tcp://10.0.0.1:5555"));
        CHECK(!security_is_loopback("tcp://*:5555"));
        CHECK(!security_is_loopback("tcp://127example.com:1")); /* no such trick */
        /* Without --insecure (STYLUS_INSECURE) even loopback needs keys. */
        unsetenv("STYLUS_INSECURE");
        CHECK(!security_insecure());
        CHECK(security_server(&none, ctx, sock, "tcp://127.0.0.1:1", &err) == ST_EINVAL);
        CHECK(strstr(err.msg, "--insecure") != NULL);
        CHECK(security_client(&none, sock, "tcp://127.0.0.1:1", &err) == ST_EINVAL);
        CHECK(security_client(NULL, sock, "ipc:///tmp/x", &err) == ST_EINVAL);
        setenv("STYLUS_INSECURE", "0", 1);
        CHECK(!security_insecure());
        /* With it: plaintext on loopback, and still never beyond. */
        setenv("STYLUS_INSECURE", "1", 1);
        CHECK(security_insecure());
        CHECK(security_server(&none, ctx, sock, "tcp://127.0.0.1:1", &err) == 0);
        CHECK(security_client(NULL, sock, "tcp://127.0.0.1:1", &err) == 0);
        CHECK(security_server(&none, ctx, sock, "tcp://0.0.0.0:5555", &err) == ST_EINVAL);
        CHECK(strstr(err.msg, "not a loopback address") != NULL);
        CHECK(security_client(&none, sock, "tcp://10.1.2.3:5555", &err) == ST_EINVAL);
        security_release(&none);
        zmq_close(sock);
        zmq_ctx_term(ctx);
}

static void test_allow_list(void)
{
        char pub_w1[SECURITY_KEY_LEN + 1], pub_tmp[SECURITY_KEY_LEN + 1], allow[128], ep[128];
        struct security srv_keys, w1, w2, no_keys;
        struct st_error err = {0};
        void *ctx = zmq_ctx_new();
        void *srv;

        CHECK(security_keygen(path("server"), pub_tmp, &err) == 0);
        CHECK(security_keygen(path("w1"), pub_w1, &err) == 0);
        CHECK(security_keygen(path("w2"), pub_tmp, &err) == 0);
        snprintf(allow, sizeof(allow), "# workers\n%s\n", pub_w1);
        write_file(path("allow"), allow);
        CHECK(security_load(&srv_keys, path("server.key"), NULL, path("allow"), &err) == 0);
        CHECK(security_load(&w1, path("w1.key"), path("server.pub"), NULL, &err) == 0);
        CHECK(security_load(&w2, path("w2.key"), path("server.pub"), NULL, &err) == 0);
        memset(&no_keys, 0, sizeof(no_keys));

        srv = server(ctx, &srv_keys, ep, sizeof(ep));
        CHECK(talks(ctx, srv, &w1, ep));       /* on the list */
        CHECK(!talks(ctx, srv, &w2, ep));      /* valid keys, not on the list */
        CHECK(!talks(ctx, srv, &no_keys, ep)); /* plaintext to a CURVE server */
        CHECK(talks(ctx, srv, &w1, ep));       /* refusals did not break the server */

        zmq_close(srv);
        security_release(&w1);
        security_release(&w2);
        security_release(&srv_keys); /* stops the ZAP thread before the context ends */
        zmq_ctx_term(ctx);
}

int main(void)
{
        char cmd[300];

        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        test_keygen_and_load();
        test_loopback_rule();
        test_allow_list();
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                printf("could not remove %s\n", dir);
        if (failures) {
                printf("test_security: %d checks failed\n", failures);
                return 1;
        }
        printf("test_security: ok\n");
        return 0;
}
