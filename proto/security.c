#include "proto/security.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "proto/log.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define LINE_MAX_LEN 256

struct zap {
        pthread_t thread;
        void *sock; /* REP bound to ZAP_ENDPOINT, used only by the thread */
        atomic_bool stop;
        const struct security *s;
};

static void wipe(void *p, size_t n)
{
        volatile unsigned char *b = p;

        while (n--)
                *b++ = 0;
}

static bool valid_z85_key(const char *k, size_t len)
{
        unsigned char raw[32];
        char tmp[SECURITY_KEY_LEN + 1];

        if (len != SECURITY_KEY_LEN)
                return false;
        memcpy(tmp, k, len);
        tmp[len] = '\0';
        return zmq_z85_decode(raw, tmp) != NULL;
}

/* Copy the key after "name=" on a line of f into out; false when absent. */
static bool read_field(const char *text, const char *name, char out[SECURITY_KEY_LEN + 1])
{
        size_t nlen = strlen(name);
        const char *p = text;

        while (p && *p) {
                const char *end = strchr(p, '\n');
                size_t len = end ? (size_t)(end - p) : strlen(p);

                while (len && (p[len - 1] == '\r' || p[len - 1] == ' '))
                        len--;
                if (len > nlen && !strncmp(p, name, nlen) && p[nlen] == '=' &&
                    valid_z85_key(p + nlen + 1, len - nlen - 1)) {
                        memcpy(out, p + nlen + 1, SECURITY_KEY_LEN);
                        out[SECURITY_KEY_LEN] = '\0';
                        return true;
                }
                p = end ? end + 1 : NULL;
        }
        return false;
}

/* Read a small file into buf; ST_EIO or ST_ETOOBIG naming only the path. */
static int slurp(const char *path, char *buf, size_t size, struct st_error *err)
{
        FILE *f = fopen(path, "r");
        size_t n;

        if (!f)
                return st_fail(err, ST_EIO, "cannot read key file %s: %s", path, strerror(errno));
        n = fread(buf, 1, size - 1, f);
        if (n == size - 1 && fgetc(f) != EOF) {
                fclose(f);
                return st_fail(err, ST_ETOOBIG, "key file %s is too big", path);
        }
        fclose(f);
        buf[n] = '\0';
        return 0;
}

static int load_keypair(struct security *s, const char *path, struct st_error *err)
{
        char buf[LINE_MAX_LEN * 4];
        int rc = slurp(path, buf, sizeof(buf), err);

        if (rc)
                return rc;
        if (!read_field(buf, "public", s->public_key) || !read_field(buf, "secret", s->secret_key))
                rc = st_fail(err, ST_EPARSE, "%s is not a keypair file (stylus keygen makes one)",
                             path);
        wipe(buf, sizeof(buf));
        s->has_keypair = rc == 0;
        return rc;
}

/* Next key line of text (skipping blanks and comments) into key; false at the end. */
static bool next_key(const char **p, char key[SECURITY_KEY_LEN + 1], bool *bad)
{
        while (**p) {
                const char *line = *p, *end = strchr(line, '\n');
                size_t len = end ? (size_t)(end - line) : strlen(line);

                *p = end ? end + 1 : line + len;
                while (len && (line[0] == ' ' || line[0] == '\t')) {
                        line++;
                        len--;
                }
                while (len &&
                       (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
                        len--;
                if (len == 0 || line[0] == '#')
                        continue;
                if (!valid_z85_key(line, len)) {
                        *bad = true;
                        return false;
                }
                memcpy(key, line, SECURITY_KEY_LEN);
                key[SECURITY_KEY_LEN] = '\0';
                return true;
        }
        return false;
}

static int load_allow(struct security *s, const char *path, struct st_error *err)
{
        size_t size = (size_t)SECURITY_MAX_ALLOW * (SECURITY_KEY_LEN + 64);
        char *buf = malloc(size), key[SECURITY_KEY_LEN + 1];
        const char *p;
        bool bad = false;
        int rc;

        if (!buf)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = slurp(path, buf, size, err);
        s->allow = rc ? NULL : calloc(SECURITY_MAX_ALLOW, sizeof(*s->allow));
        if (!rc && !s->allow)
                rc = st_fail(err, ST_ENOMEM, "out of memory");
        for (p = buf; !rc && next_key(&p, key, &bad);) {
                if (s->n_allow == SECURITY_MAX_ALLOW) {
                        rc = st_fail(err, ST_ETOOBIG, "%s: more than %d keys", path,
                                     SECURITY_MAX_ALLOW);
                        break;
                }
                zmq_z85_decode(s->allow[s->n_allow++], key);
        }
        if (!rc && bad)
                rc = st_fail(err, ST_EPARSE, "%s: a line is not a public key", path);
        free(buf);
        return rc;
}

static int load_public(char out[SECURITY_KEY_LEN + 1], const char *path, struct st_error *err)
{
        char buf[LINE_MAX_LEN];
        const char *p = buf;
        bool bad = false;
        int rc = slurp(path, buf, sizeof(buf), err);

        if (rc)
                return rc;
        if (!read_field(buf, "public", out) && !next_key(&p, out, &bad))
                return st_fail(err, ST_EPARSE, "%s holds no public key", path);
        return 0;
}

static const char *pick(const char *flag, const char *env)
{
        const char *v;

        if (flag)
                return flag;
        v = getenv(env);
        return v && *v ? v : NULL;
}

int security_load(struct security *s, const char *key_file, const char *server_key_file,
                  const char *allow_file, struct st_error *err)
{
        int rc = 0;

        memset(s, 0, sizeof(*s));
        key_file = pick(key_file, "STYLUS_CURVE_KEY");
        server_key_file = pick(server_key_file, "STYLUS_CURVE_SERVER_KEY");
        allow_file = pick(allow_file, "STYLUS_CURVE_ALLOW");
        if (key_file)
                rc = load_keypair(s, key_file, err);
        if (!rc && server_key_file) {
                rc = load_public(s->server_key, server_key_file, err);
                s->has_server_key = rc == 0;
        }
        if (!rc && allow_file)
                rc = load_allow(s, allow_file, err);
        if (rc)
                security_release(s);
        return rc;
}

bool security_insecure(void)
{
        const char *v = getenv("STYLUS_INSECURE");

        return v && *v && strcmp(v, "0");
}

/* Plaintext on endpoint: only on loopback, and only when asked for. */
static int plaintext(const char *endpoint, const char *keys, struct st_error *err)
{
        if (!security_is_loopback(endpoint))
                return st_fail(err, ST_EINVAL,
                               "%s is not a loopback address: give %s; plaintext is for loopback "
                               "only",
                               endpoint, keys);
        if (!security_insecure())
                return st_fail(err, ST_EINVAL,
                               "%s would be plaintext: give %s, or --insecure to run without "
                               "encryption on this machine",
                               endpoint, keys);
        return 0;
}

bool security_is_loopback(const char *endpoint)
{
        static const char *const local[] = {"ipc://", "inproc://", "tcp://127.",
                                            "tcp://localhost:", "tcp://[::1]:"};

        for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++)
                if (!strncmp(endpoint, local[i], strlen(local[i])))
                        return true;
        return false;
}

static bool allowed(const struct security *s, const unsigned char *key)
{
        unsigned char own[32];

        if (zmq_z85_decode(own, s->public_key) && !memcmp(own, key, 32))
                return true;
        for (size_t i = 0; i < s->n_allow; i++)
                if (!memcmp(s->allow[i], key, 32))
                        return true;
        return false;
}

/* Answer one ZAP request (RFC 27): 200 for an allowed CURVE key, 400 otherwise. */
static void zap_answer(struct zap *z)
{
        zmq_msg_t frames[7];
        int n = 0, more = 1;
        bool ok = false;
        char address[64] = "?";

        while (more && n < 7) {
                zmq_msg_init(&frames[n]);
                if (zmq_msg_recv(&frames[n], z->sock, 0) < 0) {
                        zmq_msg_close(&frames[n]);
                        break;
                }
                more = zmq_msg_more(&frames[n]);
                n++;
        }
        while (more) { /* more frames than RFC 27 has: drain, refuse */
                zmq_msg_t extra;

                zmq_msg_init(&extra);
                zmq_msg_recv(&extra, z->sock, 0);
                more = zmq_msg_more(&extra);
                zmq_msg_close(&extra);
                n = 0;
        }
        if (n == 7 && zmq_msg_size(&frames[5]) == 5 &&
            !memcmp(zmq_msg_data(&frames[5]), "CURVE", 5) && zmq_msg_size(&frames[6]) == 32)
                ok = allowed(z->s, zmq_msg_data(&frames[6]));
        if (n >= 4 && zmq_msg_size(&frames[3]) < sizeof(address)) {
                memcpy(address, zmq_msg_data(&frames[3]), zmq_msg_size(&frames[3]));
                address[zmq_msg_size(&frames[3])] = '\0';
        }
        if (!ok)
                log_warn("refused a connection from %s: its CURVE key is not allowed", address);
        zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
        if (n >= 2)
                zmq_send(z->sock, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), ZMQ_SNDMORE);
        else
                zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
        zmq_send(z->sock, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(z->sock, ok ? "OK" : "key not allowed", ok ? 2 : 15, ZMQ_SNDMORE);
        zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
        zmq_send(z->sock, "", 0, 0);
        for (int i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
}

static void *zap_thread(void *arg)
{
        struct zap *z = arg;

        while (!atomic_load(&z->stop)) {
                zmq_pollitem_t item = {z->sock, 0, ZMQ_POLLIN, 0};

                if (zmq_poll(&item, 1, 100) > 0)
                        zap_answer(z);
        }
        zmq_close(z->sock);
        return NULL;
}

static int start_zap(struct security *s, void *ctx, struct st_error *err)
{
        struct zap *z;
        int linger = 0;

        if (s->zap)
                return 0;
        z = calloc(1, sizeof(*z));
        if (!z)
                return st_fail(err, ST_ENOMEM, "out of memory");
        z->s = s;
        atomic_init(&z->stop, false);
        z->sock = zmq_socket(ctx, ZMQ_REP);
        if (!z->sock || zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
                if (z->sock)
                        zmq_close(z->sock);
                free(z);
                return st_fail(err, ST_EIO, "cannot start the CURVE authenticator: %s",
                               zmq_strerror(zmq_errno()));
        }
        zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof(linger));
        if (pthread_create(&z->thread, NULL, zap_thread, z) != 0) {
                zmq_close(z->sock);
                free(z);
                return st_fail(err, ST_EIO, "cannot start the CURVE authenticator thread");
        }
        s->zap = z;
        return 0;
}

int security_copy(struct security *to, const struct security *from, struct st_error *err)
{
        *to = *from;
        to->zap = NULL;
        to->allow = NULL;
        if (!from->allow)
                return 0;
        to->allow = malloc((from->n_allow ? from->n_allow : 1) * sizeof(*to->allow));
        if (!to->allow) {
                security_release(to);
                return st_fail(err, ST_ENOMEM, "out of memory");
        }
        memcpy(to->allow, from->allow, from->n_allow * sizeof(*to->allow));
        return 0;
}

void security_release(struct security *s)
{
        if (s->zap) {
                atomic_store(&s->zap->stop, true);
                pthread_join(s->zap->thread, NULL);
                free(s->zap);
        }
        free(s->allow);
        wipe(s, sizeof(*s));
}

int security_server(struct security *s, void *ctx, void *sock, const char *endpoint,
                    struct st_error *err)
{
        int on = 1;
        int rc;

        if (!s->has_keypair)
                return plaintext(endpoint,
                                 "a CURVE keypair (--curve-key) and an allow list (--curve-allow)",
                                 err);
        if (!s->allow)
                return st_fail(err, ST_EINVAL,
                               "a CURVE server needs an allow list (--curve-allow)");
        rc = start_zap(s, ctx, err);
        if (rc)
                return rc;
        if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "stylus", 6) ||
            zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof(on)) ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->secret_key, SECURITY_KEY_LEN))
                return st_fail(err, ST_EINVAL, "cannot enable CURVE: %s",
                               zmq_strerror(zmq_errno()));
        return 0;
}

int security_client(const struct security *s, void *sock, const char *endpoint,
                    struct st_error *err)
{
        if (!s || !s->has_keypair || !s->has_server_key)
                return plaintext(endpoint,
                                 "a CURVE keypair (--curve-key) and the server's public key "
                                 "(--curve-server-key)",
                                 err);
        if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, s->server_key, SECURITY_KEY_LEN) ||
            zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, s->public_key, SECURITY_KEY_LEN) ||
            zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->secret_key, SECURITY_KEY_LEN))
                return st_fail(err, ST_EINVAL, "cannot enable CURVE: %s",
                               zmq_strerror(zmq_errno()));
        return 0;
}

static int write_new(const char *path, mode_t mode, const char *text, struct st_error *err)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
        size_t len = strlen(text);

        if (fd < 0)
                return st_fail(err, ST_EIO, "cannot create %s: %s", path, strerror(errno));
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) != 0) {
                close(fd);
                unlink(path);
                return st_fail(err, ST_EIO, "cannot write %s", path);
        }
        close(fd);
        return 0;
}

int security_keygen(const char *prefix, char public_key[SECURITY_KEY_LEN + 1], struct st_error *err)
{
        char pub[SECURITY_KEY_LEN + 1], sec[SECURITY_KEY_LEN + 1];
        char path[4096], text[160];
        int rc;

        if (!zmq_has("curve"))
                return st_fail(err, ST_EINVAL, "this libzmq has no CURVE support");
        if (zmq_curve_keypair(pub, sec) != 0)
                return st_fail(err, ST_EIO, "cannot make a keypair: %s", zmq_strerror(zmq_errno()));
        snprintf(path, sizeof(path), "%s.key", prefix);
        snprintf(text, sizeof(text), "public=%s\nsecret=%s\n", pub, sec);
        rc = write_new(path, 0600, text, err);
        wipe(sec, sizeof(sec));
        wipe(text, sizeof(text));
        if (rc)
                return rc;
        snprintf(path, sizeof(path), "%s.pub", prefix);
        snprintf(text, sizeof(text), "%s\n", pub);
        rc = write_new(path, 0644, text, err);
        if (!rc)
                memcpy(public_key, pub, sizeof(pub));
        return rc;
}
