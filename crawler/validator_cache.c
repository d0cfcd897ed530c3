/*
 * validator_cache.c - one msgpack file per entry, written atomically; the
 * layout is the table in validator_cache.h.
 */
#include "crawler/validator_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "proto/sha256.h"
#include "proto/wire.h"

#define PATH_BYTES 4096

struct validator_cache {
        char *dir;             /* without trailing slashes */
        unsigned long written; /* entries written by this process: unique temp names */
};

/* mkdir -p: make path and its missing parents. */
static int make_dirs(const char *path)
{
        char buf[PATH_BYTES];
        size_t len = strlen(path);

        if (len == 0 || len >= sizeof(buf))
                return ST_EINVAL;
        memcpy(buf, path, len + 1);
        for (size_t i = 1; i <= len; i++) {
                if (buf[i] != '/' && buf[i] != '\0')
                        continue;
                buf[i] = '\0';
                if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                        return ST_EIO;
                buf[i] = path[i];
        }
        return 0;
}

int validator_cache_open(const char *dir, struct validator_cache **out, struct st_error *err)
{
        struct validator_cache *c;
        size_t len = dir ? strlen(dir) : 0;
        struct stat st;
        int rc;

        *out = NULL;
        while (len > 1 && dir[len - 1] == '/')
                len--;
        if (len == 0 || len >= PATH_BYTES - 80)
                return st_fail(err, ST_EINVAL, "validator cache: directory name empty or too long");
        c = calloc(1, sizeof(*c));
        if (!c || !(c->dir = strndup(dir, len))) {
                free(c);
                return st_fail(err, ST_ENOMEM, "validator cache: out of memory");
        }
        rc = make_dirs(c->dir);
        if (rc == 0 &&
            (stat(c->dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(c->dir, W_OK | X_OK) != 0))
                rc = ST_EIO;
        if (rc) {
                st_fail(err, rc, "validator cache: %s is not a writable directory: %s", c->dir,
                        strerror(errno));
                validator_cache_destroy(&c);
                return rc;
        }
        *out = c;
        return 0;
}

void validator_cache_destroy(struct validator_cache **cp)
{
        struct validator_cache *c = cp ? *cp : NULL;

        if (!c)
                return;
        free(c->dir);
        free(c);
        *cp = NULL;
}

/* "<dir>/<hh>" and "<dir>/<hh>/<hex>" of key. */
static int entry_paths(const struct validator_cache *c, const char *key, char folder[PATH_BYTES],
                       char file[PATH_BYTES])
{
        char hex[SHA256_HEX_SIZE];
        size_t len = strlen(key);

        if (len == 0 || len > VALIDATOR_CACHE_MAX_KEY)
                return ST_EINVAL;
        sha256_hex(key, len, hex);
        if (snprintf(folder, PATH_BYTES, "%s/%.2s", c->dir, hex) >= PATH_BYTES ||
            snprintf(file, PATH_BYTES, "%s/%s", folder, hex) >= PATH_BYTES)
                return ST_EINVAL; /* not reached: open() keeps dir short */
        return 0;
}

/* ---- reading ---- */

/* The whole file at path, malloc'd, when it is at most the entry cap. */
static char *read_file(const char *path, size_t *len)
{
        struct stat st;
        char *buf = NULL;
        size_t got = 0;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return NULL;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
            (uint64_t)st.st_size > VALIDATOR_CACHE_MAX_ENTRY)
                goto out_fd;
        buf = malloc((size_t)st.st_size);
        if (!buf)
                goto out_fd;
        while (got < (size_t)st.st_size) {
                ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

                if (n <= 0) {
                        free(buf);
                        buf = NULL;
                        goto out_fd;
                }
                got += (size_t)n;
        }
        *len = got;
out_fd:
        close(fd);
        return buf;
}

/* An optional string: NULL when absent or nil; ST_ENOMEM, or ST_EPARSE when mistyped. */
static int optional_string(const msgpack_object *map, const char *key, struct arena *a, char **out)
{
        const msgpack_object *v = wire_get(map, key);
        int rc;

        *out = NULL;
        if (!v || v->type == MSGPACK_OBJECT_NIL)
                return 0;
        rc = wire_get_str(map, key, a, out);
        return rc == ST_ENOMEM ? rc : rc ? ST_EPARSE : 0;
}

static int copy_str(const msgpack_object *o, struct arena *a, char **out)
{
        if (o->type != MSGPACK_OBJECT_STR || memchr(o->via.str.ptr, '\0', o->via.str.size))
                return ST_EPARSE;
        *out = arena_strndup(a, o->via.str.ptr, o->via.str.size);
        return *out ? 0 : ST_ENOMEM;
}

static int read_records(const msgpack_object *map, struct arena *a, struct validator_entry *e)
{
        const msgpack_object *v = wire_get(map, "records");

        if (!v || v->type == MSGPACK_OBJECT_NIL)
                return 0;
        if (v->type != MSGPACK_OBJECT_ARRAY)
                return ST_EPARSE;
        if (v->via.array.size == 0)
                return 0;
        e->records = arena_calloc(a, v->via.array.size, sizeof(*e->records));
        if (!e->records)
                return ST_ENOMEM;
        for (uint32_t i = 0; i < v->via.array.size; i++) {
                const msgpack_object *r = &v->via.array.ptr[i];
                struct validator_record *out = &e->records[i];
                int rc;

                if (r->type != MSGPACK_OBJECT_ARRAY || r->via.array.size != 3)
                        return ST_EPARSE;
                rc = copy_str(&r->via.array.ptr[0], a, &out->id);
                if (!rc)
                        rc = copy_str(&r->via.array.ptr[1], a, &out->content_hash);
                if (!rc)
                        rc = copy_str(&r->via.array.ptr[2], a, &out->stable_hash);
                if (rc)
                        return rc;
        }
        e->n_records = v->via.array.size;
        return 0;
}

static int read_body(const msgpack_object *map, struct arena *a, struct validator_entry *e)
{
        const msgpack_object *v = wire_get(map, "body");

        if (!v || v->type == MSGPACK_OBJECT_NIL)
                return 0;
        if (v->type != MSGPACK_OBJECT_BIN)
                return ST_EPARSE;
        e->body = arena_alloc(a, v->via.bin.size + 1);
        if (!e->body)
                return ST_ENOMEM;
        if (v->via.bin.size)
                memcpy(e->body, v->via.bin.ptr, v->via.bin.size);
        e->body[v->via.bin.size] = '\0';
        e->body_len = v->via.bin.size;
        e->has_body = true;
        return 0;
}

/* Fill e from the decoded map; ST_EPARSE when it is not an entry of key. */
static int read_entry(const msgpack_object *map, const char *key, struct arena *a,
                      struct validator_entry *e)
{
        const msgpack_object *k = wire_get(map, "key");
        uint64_t version = 0;
        int rc;

        if (map->type != MSGPACK_OBJECT_MAP || wire_get_u64(map, "v", &version) ||
            version != VALIDATOR_CACHE_VERSION || !k || k->type != MSGPACK_OBJECT_STR ||
            k->via.str.size != strlen(key) || memcmp(k->via.str.ptr, key, k->via.str.size) != 0)
                return ST_EPARSE;
        rc = optional_string(map, "etag", a, &e->etag);
        if (!rc)
                rc = optional_string(map, "last_modified", a, &e->last_modified);
        if (!rc)
                rc = optional_string(map, "next", a, &e->next_cursor);
        if (!rc)
                rc = optional_string(map, "revision", a, &e->revision);
        if (!rc)
                rc = read_records(map, a, e);
        if (!rc)
                rc = read_body(map, a, e);
        return rc;
}

int validator_cache_get(struct validator_cache *c, const char *key, struct arena *a,
                        struct validator_entry *out)
{
        char folder[PATH_BYTES], file[PATH_BYTES];
        msgpack_unpacked up;
        size_t len = 0, off = 0;
        char *buf;
        int rc;

        memset(out, 0, sizeof(*out));
        if (entry_paths(c, key, folder, file))
                return ST_ENOTFOUND;
        buf = read_file(file, &len);
        if (!buf)
                return ST_ENOTFOUND;
        msgpack_unpacked_init(&up);
        if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
                rc = ST_EPARSE;
        else
                rc = read_entry(&up.data, key, a, out);
        msgpack_unpacked_destroy(&up);
        free(buf);
        if (rc) {
                memset(out, 0, sizeof(*out));
                return rc == ST_ENOMEM ? rc : ST_ENOTFOUND;
        }
        utimensat(AT_FDCWD, file, NULL, 0); /* used now: prune spares it */
        return 0;
}

/* ---- writing ---- */

static void pack_entry(msgpack_packer *pk, const char *key, const struct validator_entry *e)
{
        msgpack_pack_map(pk, 9);
        wire_pack_kv_u64(pk, "v", VALIDATOR_CACHE_VERSION);
        wire_pack_kv_str(pk, "key", key);
        wire_pack_kv_str(pk, "etag", e->etag);
        wire_pack_kv_str(pk, "last_modified", e->last_modified);
        wire_pack_kv_str(pk, "next", e->next_cursor);
        wire_pack_kv_str(pk, "revision", e->revision);
        wire_pack_key(pk, "records");
        msgpack_pack_array(pk, e->n_records);
        for (size_t i = 0; i < e->n_records; i++) {
                msgpack_pack_array(pk, 3);
                wire_pack_str(pk, e->records[i].id);
                wire_pack_str(pk, e->records[i].content_hash);
                wire_pack_str(pk, e->records[i].stable_hash);
        }
        if (e->has_body)
                wire_pack_kv_bin(pk, "body", e->body ? e->body : "", e->body_len);
        else
                wire_pack_kv_str(pk, "body", NULL);
        wire_pack_kv_u64(pk, "stored_at", (uint64_t)time(NULL));
}

static int write_all(int fd, const char *data, size_t len)
{
        while (len > 0) {
                ssize_t n = write(fd, data, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return ST_EIO;
                data += n;
                len -= (size_t)n;
        }
        return 0;
}

int validator_cache_put(struct validator_cache *c, const char *key, const struct validator_entry *e,
                        struct st_error *err)
{
        char folder[PATH_BYTES], file[PATH_BYTES], temp[PATH_BYTES];
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int fd, rc;

        if (entry_paths(c, key, folder, file))
                return st_fail(err, ST_EINVAL, "validator cache: key empty or too long");
        for (size_t i = 0; i < e->n_records; i++)
                if (!e->records[i].id || !e->records[i].content_hash || !e->records[i].stable_hash)
                        return st_fail(err, ST_EINVAL, "validator cache: record without id/hash");
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_entry(&pk, key, e);
        if (!sb.data) {
                rc = st_fail(err, ST_ENOMEM, "validator cache: out of memory");
                goto out_buffer;
        }
        if (sb.size > VALIDATOR_CACHE_MAX_ENTRY) {
                rc = st_fail(err, ST_ETOOBIG, "validator cache: entry of %zu bytes", sb.size);
                goto out_buffer;
        }
        if (mkdir(folder, 0755) != 0 && errno != EEXIST) {
                rc = st_fail(err, ST_EIO, "validator cache: mkdir %s: %s", folder, strerror(errno));
                goto out_buffer;
        }
        if (snprintf(temp, sizeof(temp), "%s.tmp.%ld.%lu", file, (long)getpid(), c->written++) >=
            (int)sizeof(temp)) {
                rc = st_fail(err, ST_EINVAL, "validator cache: path too long");
                goto out_buffer;
        }
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) {
                rc = st_fail(err, ST_EIO, "validator cache: create %s: %s", temp, strerror(errno));
                goto out_buffer;
        }
        rc = write_all(fd, sb.data, sb.size);
        if (close(fd) != 0)
                rc = ST_EIO;
        if (!rc && rename(temp, file) != 0)
                rc = ST_EIO;
        if (rc) {
                st_fail(err, rc, "validator cache: write %s: %s", file, strerror(errno));
                unlink(temp);
        }
out_buffer:
        msgpack_sbuffer_destroy(&sb);
        return rc;
}

int validator_cache_remove(struct validator_cache *c, const char *key)
{
        char folder[PATH_BYTES], file[PATH_BYTES];

        if (entry_paths(c, key, folder, file))
                return 0;
        return unlink(file) == 0 || errno == ENOENT ? 0 : ST_EIO;
}

/* Remove the regular files of folder (fd) last modified before cutoff; count them. */
static void prune_folder(int fd, time_t cutoff, size_t *removed)
{
        DIR *d = fdopendir(fd);
        struct dirent *e;
        struct stat st;

        if (!d) {
                close(fd);
                return;
        }
        while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.' ||
                    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                    !S_ISREG(st.st_mode) || st.st_mtime >= cutoff)
                        continue;
                if (unlinkat(dirfd(d), e->d_name, 0) == 0)
                        (*removed)++;
        }
        closedir(d);
}

int validator_cache_prune(struct validator_cache *c, long max_age_s, size_t *removed,
                          struct st_error *err)
{
        time_t cutoff = time(NULL) - max_age_s;
        DIR *top = opendir(c->dir);
        struct dirent *e;

        *removed = 0;
        if (!top)
                return st_fail(err, ST_EIO, "validator cache %s: %s", c->dir, strerror(errno));
        while ((e = readdir(top)) != NULL) {
                int fd;

                if (strlen(e->d_name) != 2 || strspn(e->d_name, "0123456789abcdef") != 2)
                        continue;
                fd = openat(dirfd(top), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0)
                        prune_folder(fd, cutoff, removed);
        }
        closedir(top);
        return 0;
}
