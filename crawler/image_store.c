/*
 * image_store.c - the content-addressed image store of image_store.h.
 *
 * Every read goes through open_regular() (no symlinks, no FIFOs, fstat on
 * the descriptor actually read) and hash_file(); every write goes through
 * write_file() (temp file, fsync, rename).
 */
#include "crawler/image_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK     65536
#define URL_ENTRY_LEN  (SHA256_HEX_SIZE) /* 64 hex digits and a newline */
#define DIR_NAME_SPARE 160               /* bytes a path adds after DIR */

struct image_store {
        char *dir; /* without trailing slashes */
        size_t max_bytes;
        enum image_store_mode mode;
};

/* ---- names and paths ---- */

bool image_store_valid_sha(const char *sha)
{
        size_t i;

        if (!sha)
                return false;
        for (i = 0; i < SHA256_HEX_SIZE - 1; i++)
                if (!((sha[i] >= '0' && sha[i] <= '9') || (sha[i] >= 'a' && sha[i] <= 'f')))
                        return false;
        return sha[i] == '\0';
}

/* DIR/<kind>/<first 2 digits of hex>/<hex>, or with subdir_only DIR/<kind>/<first 2 digits>. */
static void store_path(const struct image_store *s, const char *kind, const char *hex,
                       bool subdir_only, char out[IMAGE_STORE_PATH_MAX])
{
        if (subdir_only)
                snprintf(out, IMAGE_STORE_PATH_MAX, "%s/%s/%.2s", s->dir, kind, hex);
        else
                snprintf(out, IMAGE_STORE_PATH_MAX, "%s/%s/%.2s/%s", s->dir, kind, hex, hex);
}

const char *image_store_media_type(const void *data, size_t len)
{
        const unsigned char *d = data;

        if (len >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0)
                return "image/png";
        if (len >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
                return "image/jpeg";
        if (len >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0))
                return "image/gif";
        if (len >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
                return "image/webp";
        return NULL;
}

/* ---- reading ---- */

/* Open path for reading when it is a regular file (not a symlink, FIFO, device, directory). */
static int open_regular(const char *path, int *fd, struct stat *st, struct st_error *err)
{
        /* O_NONBLOCK: opening a planted FIFO must not wait for a writer. */
        *fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (*fd < 0)
                return st_fail(err, ST_ENOTFOUND, "%s: %s", path,
                               errno == ENOENT ? "absent" : strerror(errno));
        if (fstat(*fd, st) != 0 || !S_ISREG(st->st_mode)) {
                close(*fd);
                *fd = -1;
                return st_fail(err, ST_ENOTFOUND, "%s: not a regular file", path);
        }
        return 0;
}

/*
 * Hash the size bytes of fd into hex (and copy them to keep when not NULL);
 * false when reading fails or the file does not hold exactly size bytes.
 */
static bool hash_file(int fd, uint64_t size, unsigned char *keep, char hex[SHA256_HEX_SIZE])
{
        unsigned char chunk[READ_CHUNK];
        struct sha256 h;
        uint64_t done = 0;
        ssize_t n;

        sha256_init(&h);
        for (;;) {
                n = read(fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return false;
                if (n == 0)
                        break;
                if ((uint64_t)n > size - done)
                        return false; /* the file grew while read */
                sha256_update(&h, chunk, (size_t)n);
                if (keep)
                        memcpy(keep + done, chunk, (size_t)n);
                done += (uint64_t)n;
        }
        sha256_final_hex(&h, hex);
        return done == size;
}

/*
 * Check sha's content file and fill e.  With a, a file of at most keep_max
 * bytes is also copied into the arena (*kept; else *kept stays NULL).
 */
static int check_content(const struct image_store *s, const char *sha, struct arena *a,
                         size_t keep_max, struct image_store_entry *e, unsigned char **kept,
                         struct st_error *err)
{
        char hex[SHA256_HEX_SIZE];
        unsigned char *buf = NULL;
        struct stat st;
        int fd, rc;

        if (!image_store_valid_sha(sha))
                return st_fail(err, ST_EINVAL, "not a sha256 (64 lowercase hex digits)");
        store_path(s, "sha256", sha, false, e->path);
        rc = open_regular(e->path, &fd, &st, err);
        if (rc)
                return rc;
        if (st.st_size <= 0 || (uint64_t)st.st_size > s->max_bytes) {
                rc = st_fail(err, ST_ENOTFOUND, "%s: %lld bytes, not in 1..%zu", e->path,
                             (long long)st.st_size, s->max_bytes);
                goto out_fd;
        }
        if (a && (uint64_t)st.st_size <= keep_max) {
                buf = arena_alloc(a, (size_t)st.st_size);
                if (!buf) {
                        rc = st_fail(err, ST_ENOMEM, "%s: arena full", e->path);
                        goto out_fd;
                }
        }
        if (!hash_file(fd, (uint64_t)st.st_size, buf, hex)) {
                rc = st_fail(err, ST_ENOTFOUND, "%s: unreadable or changed while read", e->path);
                goto out_fd;
        }
        if (strcmp(hex, sha) != 0) {
                rc = st_fail(err, ST_ENOTFOUND, "%s: corrupt (its bytes hash to %.12s...)", e->path,
                             hex);
                goto out_fd;
        }
        memcpy(e->sha256, sha, SHA256_HEX_SIZE);
        e->size = (uint64_t)st.st_size;
        if (kept)
                *kept = buf;
out_fd:
        close(fd);
        return rc;
}

int image_store_find(const struct image_store *s, const char *sha, struct image_store_entry *out,
                     struct st_error *err)
{
        return check_content(s, sha, NULL, 0, out, NULL, err);
}

int image_store_read(const struct image_store *s, const char *sha, size_t max, struct arena *a,
                     const unsigned char **data, size_t *len, struct st_error *err)
{
        struct image_store_entry e;
        unsigned char *buf = NULL;
        int rc = check_content(s, sha, a, max, &e, &buf, err);

        if (rc)
                return rc;
        *len = (size_t)e.size;
        if (!buf)
                return st_fail(err, ST_ETOOBIG, "%s: %llu bytes, over %zu", e.path,
                               (unsigned long long)e.size, max);
        *data = buf;
        return 0;
}

/* The sha256 a URL entry file names, into sha; ST_ENOTFOUND when absent or malformed. */
static int read_url_entry(const char *path, char sha[SHA256_HEX_SIZE], struct st_error *err)
{
        char buf[URL_ENTRY_LEN + 1];
        struct stat st;
        size_t got = 0;
        ssize_t n;
        int fd, rc;

        rc = open_regular(path, &fd, &st, err);
        if (rc)
                return rc;
        while (got < sizeof(buf)) {
                n = read(fd, buf + got, sizeof(buf) - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        if (got != URL_ENTRY_LEN || buf[URL_ENTRY_LEN - 1] != '\n')
                return st_fail(err, ST_ENOTFOUND, "%s: malformed URL entry", path);
        memcpy(sha, buf, SHA256_HEX_SIZE - 1);
        sha[SHA256_HEX_SIZE - 1] = '\0';
        if (!image_store_valid_sha(sha))
                return st_fail(err, ST_ENOTFOUND, "%s: malformed URL entry", path);
        return 0;
}

int image_store_lookup_url(const struct image_store *s, const char *url,
                           struct image_store_entry *out, struct st_error *err)
{
        char key[SHA256_HEX_SIZE], sha[SHA256_HEX_SIZE], path[IMAGE_STORE_PATH_MAX];
        int rc;

        if (!url || !*url)
                return st_fail(err, ST_EINVAL, "no URL");
        sha256_hex(url, strlen(url), key);
        store_path(s, "urls", key, false, path);
        rc = read_url_entry(path, sha, err);
        if (rc)
                return rc;
        return check_content(s, sha, NULL, 0, out, NULL, err);
}

/* ---- writing ---- */

static int write_all(int fd, const void *data, size_t len)
{
        const char *p = data;
        ssize_t n;

        while (len > 0) {
                n = write(fd, p, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n == 0)
                                errno = EIO;
                        return -1;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* ST_EIO naming the store, the step, the path and errno's reason. */
static int io_error(const struct image_store *s, const char *step, const char *path,
                    struct st_error *err)
{
        return st_fail(err, ST_EIO, "image store %s: cannot %s %s: %s", s->dir, step, path,
                       strerror(errno));
}

/* Write len bytes to path atomically: temp file in DIR/tmp, fsync, rename (subdir made first). */
static int write_file(const struct image_store *s, const char *subdir, const char *path,
                      const void *data, size_t len, struct st_error *err)
{
        char tmp[IMAGE_STORE_PATH_MAX];
        int fd, rc;

        if (mkdir(subdir, 0755) != 0 && errno != EEXIST)
                return io_error(s, "make", subdir, err);
        snprintf(tmp, sizeof(tmp), "%s/tmp/put.XXXXXX", s->dir);
        fd = mkstemp(tmp);
        if (fd < 0)
                return io_error(s, "create a temp file in", "tmp/", err);
        (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
        if (fchmod(fd, 0644) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
                rc = io_error(s, "write", tmp, err);
                close(fd);
                goto out_tmp;
        }
        if (close(fd) != 0) { /* NFS reports write errors here */
                rc = io_error(s, "write", tmp, err);
                goto out_tmp;
        }
        if (rename(tmp, path) != 0) {
                rc = io_error(s, "rename a temp file to", path, err);
                goto out_tmp;
        }
        return 0;
out_tmp:
        unlink(tmp);
        return rc;
}

int image_store_put(const struct image_store *s, const char *url, const void *data, size_t len,
                    const char *expect_sha, struct image_store_entry *out, struct st_error *err)
{
        char sha[SHA256_HEX_SIZE], key[SHA256_HEX_SIZE], old[SHA256_HEX_SIZE];
        char entry[URL_ENTRY_LEN + 1], path[IMAGE_STORE_PATH_MAX], subdir[IMAGE_STORE_PATH_MAX];
        struct st_error ignored;
        int rc;

        if (s->mode != IMAGE_STORE_WRITE)
                return st_fail(err, ST_EIO, "image store %s: opened for reading only", s->dir);
        if (!data || len == 0)
                return st_fail(err, ST_EINVAL, "empty image");
        if (len > s->max_bytes)
                return st_fail(err, ST_ETOOBIG, "image of %zu bytes, over the cap of %zu", len,
                               s->max_bytes);
        if (!image_store_media_type(data, len))
                return st_fail(err, ST_EPROTO, "not a raster image (png, jpeg, webp, gif)");
        sha256_hex(data, len, sha);
        if (expect_sha && strcmp(sha, expect_sha) != 0)
                return st_fail(err, ST_EINVAL,
                               "the bytes hash to %.12s..., not the sha256 expected", sha);
        /* Dedupe: an intact file with these bytes is kept as it is. */
        if (check_content(s, sha, NULL, 0, out, NULL, &ignored) != 0) {
                store_path(s, "sha256", sha, true, subdir);
                store_path(s, "sha256", sha, false, path);
                rc = write_file(s, subdir, path, data, len, err);
                if (rc)
                        return rc;
        }
        memcpy(out->sha256, sha, sizeof(sha));
        out->size = len;
        store_path(s, "sha256", sha, false, out->path);
        if (!url || !*url)
                return 0;
        sha256_hex(url, strlen(url), key);
        store_path(s, "urls", key, false, path);
        if (read_url_entry(path, old, &ignored) == 0 && strcmp(old, sha) == 0)
                return 0;
        store_path(s, "urls", key, true, subdir);
        snprintf(entry, sizeof(entry), "%s\n", sha);
        return write_file(s, subdir, path, entry, URL_ENTRY_LEN, err);
}

/* ---- opening, cleaning, counting ---- */

/* mkdir -p path; ST_EIO naming the directory when it cannot be made or is not one. */
static int make_dirs(const char *path, struct st_error *err)
{
        char buf[IMAGE_STORE_PATH_MAX];
        struct stat st;
        size_t i;

        snprintf(buf, sizeof(buf), "%s", path);
        for (i = 1; buf[i]; i++) {
                if (buf[i] != '/')
                        continue;
                buf[i] = '\0';
                if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                        return st_fail(err, ST_EIO, "image store: cannot make %s: %s", buf,
                                       strerror(errno));
                buf[i] = '/';
        }
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return st_fail(err, ST_EIO, "image store: cannot make %s: %s", buf,
                               strerror(errno));
        if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
                return st_fail(err, ST_EIO, "image store: %s is not a directory", buf);
        return 0;
}

/* Make the store's directories and check that tmp/ takes a new file. */
static int prepare_for_writing(const struct image_store *s, struct st_error *err)
{
        static const char *const subdirs[] = {"sha256", "urls", "tmp"};
        char path[IMAGE_STORE_PATH_MAX];
        size_t i;
        int fd, rc;

        for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", s->dir, subdirs[i]);
                rc = make_dirs(path, err);
                if (rc)
                        return rc;
        }
        snprintf(path, sizeof(path), "%s/tmp/put.XXXXXX", s->dir);
        fd = mkstemp(path);
        if (fd < 0)
                return st_fail(err, ST_EIO, "image store %s: cannot create a file in tmp/: %s",
                               s->dir, strerror(errno));
        close(fd);
        unlink(path);
        return 0;
}

int image_store_open(const char *dir, enum image_store_mode mode, size_t max_bytes,
                     struct image_store **out, struct st_error *err)
{
        struct image_store *s;
        struct stat st;
        size_t len;
        int rc;

        if (!dir || !*dir || !out)
                return st_fail(err, ST_EINVAL, "image store: no directory");
        len = strlen(dir);
        if (len > IMAGE_STORE_PATH_MAX - DIR_NAME_SPARE)
                return st_fail(err, ST_EINVAL, "image store: directory name over %d bytes",
                               IMAGE_STORE_PATH_MAX - DIR_NAME_SPARE);
        if (max_bytes == 0)
                max_bytes = IMAGE_STORE_DEFAULT_MAX_BYTES;
        if (max_bytes > IMAGE_STORE_MAX_MAX_BYTES)
                return st_fail(err, ST_EINVAL, "image store: max_bytes over %zu",
                               IMAGE_STORE_MAX_MAX_BYTES);
        s = calloc(1, sizeof(*s));
        if (!s || !(s->dir = strdup(dir))) {
                free(s);
                return st_fail(err, ST_ENOMEM, "image store: out of memory");
        }
        while (len > 1 && s->dir[len - 1] == '/')
                s->dir[--len] = '\0';
        s->max_bytes = max_bytes;
        s->mode = mode;
        if (mode == IMAGE_STORE_WRITE) {
                rc = prepare_for_writing(s, err);
                if (!rc)
                        rc = image_store_clean_tmp(s, IMAGE_STORE_TMP_MAX_AGE_S, NULL, err);
        } else if (stat(s->dir, &st) != 0) {
                rc = st_fail(err, ST_ENOTFOUND, "image store %s: %s", s->dir, strerror(errno));
        } else if (!S_ISDIR(st.st_mode)) {
                rc = st_fail(err, ST_ENOTFOUND, "image store %s: not a directory", s->dir);
        } else {
                rc = 0;
        }
        if (rc) {
                image_store_close(&s);
                return rc;
        }
        *out = s;
        return 0;
}

void image_store_close(struct image_store **s)
{
        if (!s || !*s)
                return;
        free((*s)->dir);
        free(*s);
        *s = NULL;
}

const char *image_store_dir(const struct image_store *s)
{
        return s->dir;
}

size_t image_store_max_bytes(const struct image_store *s)
{
        return s->max_bytes;
}

int image_store_clean_tmp(const struct image_store *s, long max_age_s, size_t *removed,
                          struct st_error *err)
{
        char path[IMAGE_STORE_PATH_MAX];
        time_t now = time(NULL);
        struct dirent *d;
        struct stat st;
        size_t n = 0;
        DIR *dir;

        if (s->mode != IMAGE_STORE_WRITE)
                return st_fail(err, ST_EINVAL, "image store %s: opened for reading only", s->dir);
        snprintf(path, sizeof(path), "%s/tmp", s->dir);
        dir = opendir(path);
        if (!dir)
                return st_fail(err, ST_EIO, "image store %s: cannot read tmp/: %s", s->dir,
                               strerror(errno));
        while ((d = readdir(dir)) != NULL) {
                if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                    !S_ISREG(st.st_mode))
                        continue;
                if (max_age_s > 0 && now - st.st_mtime <= max_age_s)
                        continue;
                if (unlinkat(dirfd(dir), d->d_name, 0) == 0)
                        n++;
        }
        closedir(dir);
        if (removed)
                *removed = n;
        return 0;
}

/* Is name two lowercase hex digits? */
static bool is_fanout_name(const char *name)
{
        return strlen(name) == 2 && strspn(name, "0123456789abcdef") == 2;
}

/* Called for each well-formed regular file of a walk; nonzero stops it with that code. */
typedef int (*visit_fn)(void *ctx, int dir_fd, const char *name, const struct stat *st);

/*
 * Visit the well-formed regular files under DIR/<kind>/<aa>/: a name of 64
 * hex digits starting with its directory's two.  0, the first nonzero a
 * visit returned, or ST_EIO when DIR/<kind> cannot be read.
 */
static int walk_tree(const struct image_store *s, const char *kind, visit_fn visit, void *ctx,
                     struct st_error *err)
{
        char path[IMAGE_STORE_PATH_MAX];
        struct dirent *d, *f;
        struct stat st;
        DIR *top, *sub;
        int fd, rc = 0;

        snprintf(path, sizeof(path), "%s/%s", s->dir, kind);
        top = opendir(path);
        if (!top) {
                if (errno == ENOENT)
                        return 0;
                return st_fail(err, ST_EIO, "image store %s: cannot read %s/: %s", s->dir, kind,
                               strerror(errno));
        }
        while (!rc && (d = readdir(top)) != NULL) {
                if (!is_fanout_name(d->d_name))
                        continue;
                fd = openat(dirfd(top), d->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        continue;
                sub = fdopendir(fd);
                if (!sub) {
                        close(fd);
                        continue;
                }
                while (!rc && (f = readdir(sub)) != NULL) {
                        if (!image_store_valid_sha(f->d_name) ||
                            strncmp(f->d_name, d->d_name, 2) != 0 ||
                            fstatat(dirfd(sub), f->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                            !S_ISREG(st.st_mode))
                                continue;
                        rc = visit(ctx, dirfd(sub), f->d_name, &st);
                }
                closedir(sub);
        }
        closedir(top);
        return rc;
}

struct tally {
        uint64_t files, bytes;
};

static int count_file(void *ctx, int dir_fd, const char *name, const struct stat *st)
{
        struct tally *t = ctx;

        (void)dir_fd;
        (void)name;
        t->files++;
        t->bytes += (uint64_t)st->st_size;
        return 0;
}

int image_store_usage(const struct image_store *s, struct image_store_usage *out,
                      struct st_error *err)
{
        char path[IMAGE_STORE_PATH_MAX];
        struct dirent *d;
        struct stat st;
        DIR *dir;
        int rc;

        struct tally images = {0}, urls = {0};

        memset(out, 0, sizeof(*out));
        rc = walk_tree(s, "sha256", count_file, &images, err);
        if (!rc)
                rc = walk_tree(s, "urls", count_file, &urls, err);
        if (rc)
                return rc;
        out->images = images.files;
        out->bytes = images.bytes;
        out->urls = urls.files;
        snprintf(path, sizeof(path), "%s/tmp", s->dir);
        dir = opendir(path);
        if (!dir)
                return 0;
        while ((d = readdir(dir)) != NULL)
                if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode))
                        out->temp++;
        closedir(dir);
        return 0;
}

/* ---- trimming ---- */

/* An image file as a trim sees it. */
struct aged {
        struct timespec written; /* mtime */
        uint64_t size;
        char sha[SHA256_HEX_SIZE];
};

struct trim_list {
        struct aged *v;
        size_t n, cap;
        uint64_t bytes;
};

static int collect_image(void *ctx, int dir_fd, const char *name, const struct stat *st)
{
        struct trim_list *l = ctx;

        (void)dir_fd;
        if (l->n == IMAGE_STORE_TRIM_MAX_FILES)
                return ST_ETOOBIG;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 1024;
                struct aged *v = realloc(l->v, cap * sizeof(*v));

                if (!v)
                        return ST_ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n].written = st->st_mtim;
        l->v[l->n].size = (uint64_t)st->st_size;
        memcpy(l->v[l->n].sha, name, SHA256_HEX_SIZE);
        l->n++;
        l->bytes += (uint64_t)st->st_size;
        return 0;
}

/* Oldest written first; the name breaks ties, so the order is the same on every run. */
static int by_age(const void *a, const void *b)
{
        const struct aged *x = a, *y = b;

        if (x->written.tv_sec != y->written.tv_sec)
                return x->written.tv_sec < y->written.tv_sec ? -1 : 1;
        if (x->written.tv_nsec != y->written.tv_nsec)
                return x->written.tv_nsec < y->written.tv_nsec ? -1 : 1;
        return strcmp(x->sha, y->sha);
}

struct url_sweep {
        const struct image_store *s;
        uint64_t removed;
};

/* Remove a URL entry whose image file is gone (or that names no image). */
static int sweep_url(void *ctx, int dir_fd, const char *name, const struct stat *st)
{
        struct url_sweep *u = ctx;
        char entry[URL_ENTRY_LEN + 1], sha[SHA256_HEX_SIZE], path[IMAGE_STORE_PATH_MAX];
        struct stat image;
        ssize_t got = -1;
        int fd;

        (void)st;
        fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
                got = read(fd, entry, sizeof(entry));
                close(fd);
        }
        if (got == URL_ENTRY_LEN && entry[URL_ENTRY_LEN - 1] == '\n') {
                memcpy(sha, entry, SHA256_HEX_SIZE - 1);
                sha[SHA256_HEX_SIZE - 1] = '\0';
                if (image_store_valid_sha(sha)) {
                        store_path(u->s, "sha256", sha, false, path);
                        if (lstat(path, &image) == 0 || errno != ENOENT)
                                return 0; /* its image is there (or cannot be told gone) */
                }
        }
        if (unlinkat(dir_fd, name, 0) == 0)
                u->removed++;
        return 0;
}

int image_store_trim(const struct image_store *s, uint64_t max_total, long min_age_s,
                     struct image_store_trim *out, struct st_error *err)
{
        struct trim_list l = {0};
        struct url_sweep sweep = {s, 0};
        time_t now = time(NULL);
        char path[IMAGE_STORE_PATH_MAX];
        int rc;

        memset(out, 0, sizeof(*out));
        if (s->mode != IMAGE_STORE_WRITE)
                return st_fail(err, ST_EINVAL, "image store %s: opened for reading", s->dir);
        rc = walk_tree(s, "sha256", collect_image, &l, err);
        if (rc == ST_ETOOBIG)
                rc = st_fail(err, rc, "image store %s: over %u images to sort", s->dir,
                             IMAGE_STORE_TRIM_MAX_FILES);
        else if (rc == ST_ENOMEM)
                rc = st_fail(err, rc, "image store %s: out of memory", s->dir);
        if (rc)
                goto out;
        out->images = l.n;
        out->bytes = l.bytes;
        if (l.bytes > max_total)
                qsort(l.v, l.n, sizeof(*l.v), by_age);
        for (size_t i = 0; i < l.n && l.bytes > max_total; i++) {
                if (now - l.v[i].written.tv_sec < min_age_s) {
                        out->young = true; /* the rest is younger still */
                        break;
                }
                store_path(s, "sha256", l.v[i].sha, false, path);
                if (unlink(path) != 0)
                        continue;
                l.bytes -= l.v[i].size;
                out->removed++;
                out->removed_bytes += l.v[i].size;
        }
        if (out->removed)
                rc = walk_tree(s, "urls", sweep_url, &sweep, err);
        out->urls_removed = sweep.removed;
out:
        free(l.v);
        return rc;
}
