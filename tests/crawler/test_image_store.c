/*
 * test_image_store.c - the content-addressed image store: put and find,
 * one file for the same bytes from two URLs, leftover temp files ignored
 * and cleaned, truncated / corrupt / oversized / planted files treated as
 * absent and repaired by the next put, the size cap, hostile URLs and
 * sha256 strings, an unwritable store, writers racing in four processes,
 * and trimming to a size cap, oldest first.  Each test works in its own fresh directory under /tmp.
 */
#include "crawler/image_store.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

#define PNG_MAGIC "\x89PNG\r\n\x1a\n"

/* A "PNG" of len bytes (the magic, then bytes derived from seed): enough for the store. */
static unsigned char *make_png(unsigned seed, size_t len)
{
        unsigned char *p = malloc(len);
        size_t i;

        memcpy(p, PNG_MAGIC, 8);
        for (i = 8; i < len; i++)
                p[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 8));
        return p;
}

/* A fresh directory for one test; its store lives in <dir>/store. */
static void fresh_dir(char dir[64], char store[96])
{
        snprintf(dir, 64, "/tmp/test_image_store.XXXXXX");
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                exit(1);
        }
        snprintf(store, 96, "%s/store", dir);
}

static void remove_dir(const char *dir)
{
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", dir);
}

static int write_raw(const char *path, const void *data, size_t len)
{
        FILE *f = fopen(path, "wb");

        if (!f)
                return -1;
        if (len && fwrite(data, 1, len, f) != len) {
                fclose(f);
                return -1;
        }
        return fclose(f);
}

/* The bytes of path equal data[len]? */
static int file_equals(const char *path, const void *data, size_t len)
{
        unsigned char *buf = malloc(len + 1);
        FILE *f = fopen(path, "rb");
        size_t got;

        if (!f) {
                free(buf);
                return 0;
        }
        got = fread(buf, 1, len + 1, f);
        fclose(f);
        got = got == len && memcmp(buf, data, len) == 0;
        free(buf);
        return (int)got;
}

static int usage_of(struct image_store *s, struct image_store_usage *u)
{
        struct st_error err = {0};

        return image_store_usage(s, u, &err);
}

static int test_put_and_find(void)
{
        char dir[64], root[96], path[256], sha[SHA256_HEX_SIZE];
        unsigned char *png = make_png(1, 5000);
        struct image_store *s = NULL;
        struct image_store_entry e, f;
        struct image_store_usage u;
        struct st_error err = {0};
        const unsigned char *data;
        struct arena a;
        size_t len;

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        CHECK(image_store_max_bytes(s) == IMAGE_STORE_DEFAULT_MAX_BYTES);
        CHECK(strcmp(image_store_dir(s), root) == 0);
        sha256_hex(png, 5000, sha);
        CHECK(image_store_lookup_url(s, "https://img.example/1.png", &e, &err) == ST_ENOTFOUND);
        CHECK(image_store_put(s, "https://img.example/1.png", png, 5000, NULL, &e, &err) == 0);
        CHECK(strcmp(e.sha256, sha) == 0 && e.size == 5000);
        snprintf(path, sizeof(path), "%s/sha256/%.2s/%s", root, sha, sha);
        CHECK(strcmp(e.path, path) == 0);
        CHECK(file_equals(path, png, 5000));

        CHECK(image_store_lookup_url(s, "https://img.example/1.png", &f, &err) == 0);
        CHECK(strcmp(f.sha256, sha) == 0 && f.size == 5000 && strcmp(f.path, path) == 0);
        CHECK(image_store_lookup_url(s, "https://img.example/1.PNG", &f, &err) == ST_ENOTFOUND);
        CHECK(image_store_find(s, sha, &f, &err) == 0 && f.size == 5000);

        arena_init(&a, 1 << 20);
        CHECK(image_store_read(s, sha, 5000, &a, &data, &len, &err) == 0);
        CHECK(len == 5000 && memcmp(data, png, 5000) == 0);
        CHECK(image_store_read(s, sha, 4999, &a, &data, &len, &err) == ST_ETOOBIG && len == 5000);
        arena_release(&a);

        CHECK(usage_of(s, &u) == 0);
        CHECK(u.images == 1 && u.bytes == 5000 && u.urls == 1 && u.temp == 0);
        /* A second handle, read-only, sees the same. */
        image_store_close(&s);
        CHECK(s == NULL);
        CHECK(image_store_open(root, IMAGE_STORE_READ, 0, &s, &err) == 0);
        CHECK(image_store_lookup_url(s, "https://img.example/1.png", &f, &err) == 0);
        CHECK(image_store_put(s, "https://img.example/2.png", png, 5000, NULL, &e, &err) == ST_EIO);
        image_store_close(&s);
        image_store_close(&s); /* NULL is fine */
        free(png);
        remove_dir(dir);
        return 0;
}

static int test_dedupe(void)
{
        char dir[64], root[96];
        unsigned char *png = make_png(2, 3000), *other = make_png(3, 3000);
        struct image_store *s = NULL;
        struct image_store_entry e1, e2, e3;
        struct image_store_usage u;
        struct st_error err = {0};
        struct stat before, after;

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        CHECK(image_store_put(s, "https://a.example/x.png", png, 3000, NULL, &e1, &err) == 0);
        CHECK(stat(e1.path, &before) == 0);
        CHECK(image_store_put(s, "https://b.example/copy-of-x.png", png, 3000, NULL, &e2, &err) ==
              0);
        CHECK(strcmp(e1.sha256, e2.sha256) == 0 && strcmp(e1.path, e2.path) == 0);
        /* The intact file was kept, not written again. */
        CHECK(stat(e2.path, &after) == 0 && after.st_ino == before.st_ino);
        CHECK(usage_of(s, &u) == 0 && u.images == 1 && u.bytes == 3000 && u.urls == 2);
        CHECK(image_store_lookup_url(s, "https://b.example/copy-of-x.png", &e3, &err) == 0);
        CHECK(strcmp(e3.sha256, e1.sha256) == 0);
        /* Content only (no URL), and other bytes: a second file. */
        CHECK(image_store_put(s, NULL, other, 3000, NULL, &e3, &err) == 0);
        CHECK(strcmp(e3.sha256, e1.sha256) != 0);
        CHECK(usage_of(s, &u) == 0 && u.images == 2 && u.bytes == 6000 && u.urls == 2);
        /* A URL whose image changed points at the new bytes. */
        CHECK(image_store_put(s, "https://a.example/x.png", other, 3000, NULL, &e2, &err) == 0);
        CHECK(image_store_lookup_url(s, "https://a.example/x.png", &e1, &err) == 0);
        CHECK(strcmp(e1.sha256, e3.sha256) == 0);
        CHECK(usage_of(s, &u) == 0 && u.images == 2 && u.urls == 2 && u.temp == 0);
        image_store_close(&s);
        free(png);
        free(other);
        remove_dir(dir);
        return 0;
}

static int set_age(const char *path, long seconds)
{
        struct timeval tv[2];

        gettimeofday(&tv[0], NULL);
        tv[0].tv_sec -= seconds;
        tv[1] = tv[0];
        return utimes(path, tv);
}

static int test_temp_files(void)
{
        char dir[64], root[96], old[160], young[160], sha[SHA256_HEX_SIZE];
        unsigned char *png = make_png(4, 2000);
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct image_store_usage u;
        struct st_error err = {0};
        size_t removed = 99;

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        CHECK(image_store_put(s, "https://a.example/t.png", png, 2000, NULL, &e, &err) == 0);
        image_store_close(&s);
        /* What a writer killed mid-put leaves: half an image in tmp/. */
        snprintf(old, sizeof(old), "%s/tmp/put.crashed", root);
        snprintf(young, sizeof(young), "%s/tmp/put.running", root);
        CHECK(write_raw(old, png, 1000) == 0 && set_age(old, 2 * IMAGE_STORE_TMP_MAX_AGE_S) == 0);
        CHECK(write_raw(young, png, 700) == 0);
        /* Opening for writing removes the old one only: the young one may be another writer's. */
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        CHECK(access(old, F_OK) != 0 && access(young, F_OK) == 0);
        CHECK(usage_of(s, &u) == 0 && u.images == 1 && u.urls == 1 && u.temp == 1);
        /* Temp files are never found as images. */
        sha256_hex(png, 700, sha);
        CHECK(image_store_find(s, sha, &e, &err) == ST_ENOTFOUND);
        CHECK(image_store_lookup_url(s, "https://a.example/t.png", &e, &err) == 0);
        CHECK(image_store_clean_tmp(s, 0, &removed, &err) == 0 && removed == 1);
        CHECK(access(young, F_OK) != 0);
        /* Puts leave nothing behind in tmp/. */
        CHECK(image_store_put(s, "https://a.example/t2.png", png, 1999, NULL, &e, &err) == 0);
        CHECK(usage_of(s, &u) == 0 && u.temp == 0 && u.images == 2);
        image_store_close(&s);
        CHECK(image_store_open(root, IMAGE_STORE_READ, 0, &s, &err) == 0);
        CHECK(image_store_clean_tmp(s, 0, &removed, &err) == ST_EINVAL);
        image_store_close(&s);
        free(png);
        remove_dir(dir);
        return 0;
}

/*
 * The store must answer ST_ENOTFOUND for url (and, when the content file is
 * the damaged one, for sha), then a put must repair it.
 */
static int absent_then_repaired(struct image_store *s, const char *url, const char *sha,
                                const unsigned char *png, size_t len, bool content_damaged)
{
        struct image_store_entry e;
        struct st_error err = {0};
        const unsigned char *data;
        struct arena a;
        size_t got;

        CHECK(image_store_lookup_url(s, url, &e, &err) == ST_ENOTFOUND && err.msg[0]);
        if (content_damaged) {
                CHECK(image_store_find(s, sha, &e, &err) == ST_ENOTFOUND);
                arena_init(&a, 1 << 20);
                CHECK(image_store_read(s, sha, 1 << 20, &a, &data, &got, &err) == ST_ENOTFOUND);
                arena_release(&a);
        }
        CHECK(image_store_put(s, url, png, len, NULL, &e, &err) == 0);
        CHECK(image_store_lookup_url(s, url, &e, &err) == 0 && strcmp(e.sha256, sha) == 0);
        CHECK(file_equals(e.path, png, len));
        return 0;
}

static int test_damaged_files(void)
{
        const char *url = "https://a.example/d.png";
        char dir[64], root[96], sha[SHA256_HEX_SIZE], key[SHA256_HEX_SIZE];
        char path[IMAGE_STORE_PATH_MAX], good[256], entry[256];
        unsigned char *png = make_png(5, 4000), *flipped;
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct st_error err = {0};

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        CHECK(image_store_put(s, url, png, 4000, NULL, &e, &err) == 0);
        memcpy(sha, e.sha256, sizeof(sha));
        snprintf(path, sizeof(path), "%s", e.path);
        snprintf(good, sizeof(good), "%s/good-copy", dir);
        CHECK(write_raw(good, png, 4000) == 0);

        CHECK(truncate(path, 2000) == 0); /* truncated */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);
        flipped = malloc(4000);
        memcpy(flipped, png, 4000);
        flipped[3000] ^= 1;
        CHECK(write_raw(path, flipped, 4000) == 0); /* same size, one bit off */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);
        CHECK(write_raw(path, "", 0) == 0); /* empty */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);
        CHECK(unlink(path) == 0 && symlink(good, path) == 0); /* symlink to the right bytes */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);
        CHECK(unlink(path) == 0 && mkdir(path, 0755) == 0); /* a directory */
        CHECK(image_store_lookup_url(s, url, &e, &err) == ST_ENOTFOUND);
        CHECK(rmdir(path) == 0 && mkfifo(path, 0644) == 0); /* a FIFO: must not block */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);
        CHECK(unlink(path) == 0); /* gone */
        CHECK(absent_then_repaired(s, url, sha, png, 4000, true) == 0);

        /* URL entries: truncated, garbage, uppercase, too long, naming a missing image. */
        sha256_hex(url, strlen(url), key);
        snprintf(entry, sizeof(entry), "%s/urls/%.2s/%s", root, key, key);
        CHECK(write_raw(entry, sha, 64) == 0);
        CHECK(absent_then_repaired(s, url, sha, png, 4000, false) == 0);
        CHECK(write_raw(entry, "<html>not an entry</html>\n", 26) == 0);
        CHECK(absent_then_repaired(s, url, sha, png, 4000, false) == 0);
        {
                char upper[80];
                size_t i;

                for (i = 0; i < 64; i++)
                        upper[i] = (char)(sha[i] >= 'a' ? sha[i] - 32 : sha[i]);
                upper[64] = '\n';
                CHECK(write_raw(entry, upper, 65) == 0);
                CHECK(absent_then_repaired(s, url, sha, png, 4000, false) == 0);
                memcpy(upper, sha, 64);
                memcpy(upper + 64, "\n\n", 2);
                CHECK(write_raw(entry, upper, 66) == 0);
                CHECK(absent_then_repaired(s, url, sha, png, 4000, false) == 0);
                memset(upper, 'a', 64);
                upper[64] = '\n';
                CHECK(write_raw(entry, upper, 65) == 0);
                CHECK(image_store_lookup_url(s, url, &e, &err) == ST_ENOTFOUND);
                CHECK(image_store_put(s, url, png, 4000, NULL, &e, &err) == 0);
                CHECK(image_store_lookup_url(s, url, &e, &err) == 0);
        }
        image_store_close(&s);
        free(png);
        free(flipped);
        remove_dir(dir);
        return 0;
}

static int test_cap_and_content(void)
{
        char dir[64], root[96], sha[SHA256_HEX_SIZE], path[256];
        unsigned char *png = make_png(6, 1001);
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct image_store_usage u;
        struct st_error err = {0};

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, IMAGE_STORE_MAX_MAX_BYTES + 1, &s, &err) ==
              ST_EINVAL);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 1000, &s, &err) == 0);
        CHECK(image_store_put(s, "https://a.example/big", png, 1001, NULL, &e, &err) == ST_ETOOBIG);
        CHECK(image_store_put(s, "https://a.example/ok", png, 1000, NULL, &e, &err) == 0);
        CHECK(image_store_put(s, "https://a.example/html", "<html></html>", 13, NULL, &e, &err) ==
              ST_EPROTO);
        CHECK(image_store_put(s, "https://a.example/svg", "<svg xmlns=...>", 15, NULL, &e, &err) ==
              ST_EPROTO);
        CHECK(image_store_put(s, "https://a.example/empty", png, 0, NULL, &e, &err) == ST_EINVAL);
        sha256_hex(png, 999, sha);
        CHECK(image_store_put(s, "https://a.example/x", png, 998, sha, &e, &err) == ST_EINVAL);
        CHECK(image_store_put(s, "https://a.example/x", png, 999, sha, &e, &err) == 0);
        CHECK(usage_of(s, &u) == 0 && u.images == 2 && u.urls == 2 && u.temp == 0);
        CHECK(image_store_lookup_url(s, "https://a.example/big", &e, &err) == ST_ENOTFOUND);
        /* A file over the cap planted under its own (correct) name is not read. */
        sha256_hex(png, 1001, sha);
        snprintf(path, sizeof(path), "%s/sha256/%.2s", root, sha);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/sha256/%.2s/%s", root, sha, sha);
        CHECK(write_raw(path, png, 1001) == 0);
        CHECK(image_store_find(s, sha, &e, &err) == ST_ENOTFOUND && strstr(err.msg, "1001 bytes"));
        image_store_close(&s);
        free(png);
        remove_dir(dir);
        return 0;
}

/* Every name under DIR/<kind>/ is a 2-hex fan-out directory holding 64-hex files. */
static int only_hex_names(const char *root, const char *kind)
{
        char path[256], sub[600];
        struct dirent *d, *f;
        DIR *top, *inner;

        snprintf(path, sizeof(path), "%s/%s", root, kind);
        top = opendir(path);
        CHECK(top);
        while ((d = readdir(top)) != NULL) {
                if (d->d_name[0] == '.')
                        continue;
                CHECK(strlen(d->d_name) == 2 && strspn(d->d_name, "0123456789abcdef") == 2);
                snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name);
                inner = opendir(sub);
                CHECK(inner);
                while ((f = readdir(inner)) != NULL)
                        CHECK(f->d_name[0] == '.' || image_store_valid_sha(f->d_name));
                closedir(inner);
        }
        closedir(top);
        return 0;
}

static int test_hostile_names(void)
{
        static const char *const urls[] = {
            "../../../../etc/passwd",
            "/",
            ".",
            "http://a.example/../../x.png",
            "http://a.example/x.png\r\nSet-Cookie: y=1",
            "http://例え.jp/画像.png?q=%00%2F..%2F",
            "file:///etc/shadow",
        };
        char dir[64], root[96], sha[SHA256_HEX_SIZE], bad[80];
        unsigned char *png = make_png(7, 800);
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct image_store_usage u;
        struct st_error err = {0};
        const unsigned char *data;
        struct arena a;
        char *long_url;
        size_t i, len;
        DIR *d;
        struct dirent *ent;

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
                CHECK(image_store_put(s, urls[i], png, 800, NULL, &e, &err) == 0);
                CHECK(image_store_lookup_url(s, urls[i], &e, &err) == 0);
        }
        long_url = malloc(200001);
        memset(long_url, 'a', 200000);
        memcpy(long_url, "http://", 7);
        long_url[200000] = '\0';
        CHECK(image_store_put(s, long_url, png, 800, NULL, &e, &err) == 0);
        CHECK(image_store_lookup_url(s, long_url, &e, &err) == 0);
        free(long_url);
        CHECK(image_store_lookup_url(s, "", &e, &err) == ST_EINVAL);
        CHECK(image_store_lookup_url(s, NULL, &e, &err) == ST_EINVAL);
        CHECK(usage_of(s, &u) == 0 && u.images == 1 && u.urls == 8);
        CHECK(only_hex_names(root, "sha256") == 0 && only_hex_names(root, "urls") == 0);
        /* Nothing was made beside the three subdirectories. */
        d = opendir(root);
        CHECK(d);
        while ((ent = readdir(d)) != NULL)
                CHECK(ent->d_name[0] == '.' || !strcmp(ent->d_name, "sha256") ||
                      !strcmp(ent->d_name, "urls") || !strcmp(ent->d_name, "tmp"));
        closedir(d);

        /* sha256 strings from the wire never become paths unless 64 lowercase hex. */
        sha256_hex(png, 800, sha);
        arena_init(&a, 1 << 20);
        CHECK(image_store_find(s, sha, &e, &err) == 0);
        CHECK(image_store_find(s, "../../../../../../etc/passwd", &e, &err) == ST_EINVAL);
        CHECK(image_store_read(s, "../sha256/../../x", 100, &a, &data, &len, &err) == ST_EINVAL);
        CHECK(image_store_find(s, NULL, &e, &err) == ST_EINVAL);
        CHECK(image_store_find(s, "", &e, &err) == ST_EINVAL);
        for (i = 0; i < 64; i++)
                bad[i] = (char)(sha[i] >= 'a' ? sha[i] - 32 : sha[i]);
        bad[64] = '\0';
        CHECK(image_store_find(s, bad, &e, &err) == ST_EINVAL); /* uppercase */
        memcpy(bad, sha, 65);
        bad[63] = '\0';
        CHECK(image_store_find(s, bad, &e, &err) == ST_EINVAL); /* 63 digits */
        memcpy(bad, sha, 64);
        memcpy(bad + 64, "0", 2);
        CHECK(image_store_find(s, bad, &e, &err) == ST_EINVAL); /* 65 digits */
        CHECK(!image_store_valid_sha(
            "g000000000000000000000000000000000000000000000000000000000000000"));
        arena_release(&a);
        image_store_close(&s);
        free(png);
        remove_dir(dir);
        return 0;
}

static int test_unwritable(void)
{
        char dir[64], root[96], path[160];
        unsigned char *png = make_png(8, 900);
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct st_error err = {0};

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_READ, 0, &s, &err) == ST_ENOTFOUND);
        CHECK(strstr(err.msg, root) != NULL);
        CHECK(image_store_open("", IMAGE_STORE_WRITE, 0, &s, &err) == ST_EINVAL);
        CHECK(image_store_open(NULL, IMAGE_STORE_READ, 0, &s, &err) == ST_EINVAL);
        /* The store's place is taken by a file. */
        CHECK(write_raw(root, "x", 1) == 0);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == ST_EIO);
        CHECK(strstr(err.msg, root) != NULL && s == NULL);
        CHECK(image_store_open(root, IMAGE_STORE_READ, 0, &s, &err) == ST_ENOTFOUND);
        CHECK(unlink(root) == 0);
        /* tmp/ breaks after open (a full or read-only disk looks the same to the caller). */
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        snprintf(path, sizeof(path), "%s/tmp", root);
        CHECK(rmdir(path) == 0 && write_raw(path, "x", 1) == 0);
        CHECK(image_store_put(s, "https://a.example/u.png", png, 900, NULL, &e, &err) == ST_EIO);
        CHECK(strstr(err.msg, root) != NULL);
        image_store_close(&s);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == ST_EIO);
        CHECK(strstr(err.msg, "tmp") != NULL);
        free(png);
        remove_dir(dir);
        return 0;
}

static int test_media_type(void)
{
        static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 0x10};
        static const unsigned char mp4[] = {0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'm', 'p', '4', '2'};

        CHECK(strcmp(image_store_media_type(PNG_MAGIC "rest", 12), "image/png") == 0);
        CHECK(strcmp(image_store_media_type(jpeg, sizeof(jpeg)), "image/jpeg") == 0);
        CHECK(strcmp(image_store_media_type("GIF87a..", 8), "image/gif") == 0);
        CHECK(strcmp(image_store_media_type("GIF89a..", 8), "image/gif") == 0);
        CHECK(strcmp(image_store_media_type("RIFF\x10\0\0\0WEBPVP8 ", 16), "image/webp") == 0);
        CHECK(image_store_media_type("RIFF\x10\0\0\0WAVEfmt ", 16) == NULL);
        CHECK(image_store_media_type(PNG_MAGIC, 7) == NULL);
        CHECK(image_store_media_type("<svg xmlns=\"http://www.w3.org/2000/svg\">", 40) == NULL);
        CHECK(image_store_media_type(mp4, sizeof(mp4)) == NULL);
        CHECK(image_store_media_type("", 0) == NULL);
        return 0;
}

/* Four processes put the same 20 images (each from its own URLs) at once. */
static int test_racing_writers(void)
{
        char dir[64], root[96], url[64];
        struct image_store *s = NULL;
        struct image_store_entry e;
        struct image_store_usage u;
        struct st_error err = {0};
        pid_t pids[4];
        int i, j, status, failed = 0;

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        for (i = 0; i < 4; i++) {
                pids[i] = fork();
                CHECK(pids[i] >= 0);
                if (pids[i] > 0)
                        continue;
                for (j = 0; j < 20; j++) {
                        unsigned char *png = make_png((unsigned)j + 100, 20000);

                        snprintf(url, sizeof(url), "https://w%d.example/%d.png", i, j);
                        if (image_store_put(s, url, png, 20000, NULL, &e, &err) != 0)
                                _exit(1);
                        free(png);
                }
                _exit(0);
        }
        for (i = 0; i < 4; i++)
                if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
                    WEXITSTATUS(status) != 0)
                        failed++;
        CHECK(failed == 0);
        CHECK(usage_of(s, &u) == 0 && u.images == 20 && u.urls == 80 && u.temp == 0);
        for (i = 0; i < 4; i++)
                for (j = 0; j < 20; j++) {
                        snprintf(url, sizeof(url), "https://w%d.example/%d.png", i, j);
                        CHECK(image_store_lookup_url(s, url, &e, &err) == 0 && e.size == 20000);
                }
        image_store_close(&s);
        remove_dir(dir);
        return 0;
}

/*
 * Trimming: five images of 1000 bytes written 50, 40, 30, 20 and 10 minutes
 * ago (image 4 also under a second URL), then a cap of 2500 bytes: the
 * three oldest go with their URL entries, the two newest stay and their
 * URLs still find them; under the cap nothing goes; images younger than
 * min_age_s are never removed; a READ store refuses.
 */
static int test_trim(void)
{
        char dir[64], root[96], urls[5][64];
        unsigned char *png[5];
        struct image_store *s = NULL, *r = NULL;
        struct image_store_entry e[5], f;
        struct image_store_usage u;
        struct image_store_trim t;
        struct st_error err = {0};

        fresh_dir(dir, root);
        CHECK(image_store_open(root, IMAGE_STORE_WRITE, 0, &s, &err) == 0);
        for (int i = 0; i < 5; i++) {
                snprintf(urls[i], sizeof(urls[i]), "https://img.example/%d.png", i);
                png[i] = make_png(100 + (unsigned)i, 1000);
                CHECK(image_store_put(s, urls[i], png[i], 1000, NULL, &e[i], &err) == 0);
                CHECK(set_age(e[i].path, (5 - i) * 600L) == 0);
        }
        CHECK(image_store_put(s, "https://mirror.example/4.png", png[4], 1000, NULL, &f, &err) ==
              0);
        CHECK(set_age(e[4].path, 600L) == 0); /* the second put left the file as it was */

        CHECK(image_store_trim(s, 5000, 0, &t, &err) == 0); /* at the cap: nothing to do */
        CHECK(t.images == 5 && t.bytes == 5000 && t.removed == 0 && t.urls_removed == 0);
        /* Everything is older than a minute: min_age_s of an hour protects all of it. */
        CHECK(image_store_trim(s, 0, 3600, &t, &err) == 0);
        CHECK(t.removed == 0 && t.young);

        CHECK(image_store_trim(s, 2500, 60, &t, &err) == 0);
        CHECK(t.removed == 3 && t.removed_bytes == 3000 && t.urls_removed == 3 && !t.young);
        CHECK(usage_of(s, &u) == 0 && u.images == 2 && u.bytes == 2000 && u.urls == 3);
        for (int i = 0; i < 3; i++)
                CHECK(image_store_lookup_url(s, urls[i], &f, &err) == ST_ENOTFOUND);
        CHECK(image_store_lookup_url(s, urls[3], &f, &err) == 0 && !strcmp(f.sha256, e[3].sha256));
        CHECK(image_store_lookup_url(s, "https://mirror.example/4.png", &f, &err) == 0);
        /* A trimmed image comes back with the next put. */
        CHECK(image_store_put(s, urls[0], png[0], 1000, NULL, &f, &err) == 0);
        CHECK(image_store_lookup_url(s, urls[0], &f, &err) == 0);

        CHECK(image_store_open(root, IMAGE_STORE_READ, 0, &r, &err) == 0);
        CHECK(image_store_trim(r, 0, 0, &t, &err) == ST_EINVAL);
        image_store_close(&r);
        image_store_close(&s);
        for (int i = 0; i < 5; i++)
                free(png[i]);
        remove_dir(dir);
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_put_and_find();
        failed |= test_dedupe();
        failed |= test_temp_files();
        failed |= test_damaged_files();
        failed |= test_cap_and_content();
        failed |= test_hostile_names();
        failed |= test_unwritable();
        failed |= test_media_type();
        failed |= test_racing_writers();
        failed |= test_trim();
        if (failed)
                return 1;
        printf("test_image_store: ok\n");
        return 0;
}
