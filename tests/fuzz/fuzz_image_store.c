/*
 * fuzz_image_store.c - what the image store reads from disk, on arbitrary
 * bytes: a URL entry file (DIR/urls/..), a content file under its own
 * sha256 and under another one, and the magic-byte sniffer.  Besides not
 * crashing, every answer must keep the promises of image_store.h: a lookup
 * either fails with ST_ENOTFOUND or names a file whose bytes hash to its
 * name; a content file is found only under the sha256 of its bytes and
 * only within the cap; a put succeeds only for a raster image, which is
 * then found.  A broken promise aborts, which the fuzzer reports.
 *
 * The store lives in one directory under /tmp per process, removed at exit.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crawler/image_store.h"

#define FUZZ_CAP ((size_t)64 << 10) /* a small cap, so the fuzzer reaches it */

static char root[64];
static struct image_store *store;

static void remove_store(void)
{
        char cmd[128];

        image_store_close(&store);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", root);
}

static void open_store(void)
{
        struct st_error err = {0};

        snprintf(root, sizeof(root), "/tmp/fuzz_image_store.XXXXXX");
        if (!mkdtemp(root) || image_store_open(root, IMAGE_STORE_WRITE, FUZZ_CAP, &store, &err))
                abort();
        atexit(remove_store);
}

/* Write data as the file DIR/<kind>/<aa>/<name>. */
static void plant(const char *kind, const char *name, const uint8_t *data, size_t size)
{
        char path[256];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s/%.2s", root, kind, name);
        mkdir(path, 0755);
        snprintf(path, sizeof(path), "%s/%s/%.2s/%s", root, kind, name, name);
        f = fopen(path, "wb");
        if (!f)
                abort();
        if (size)
                fwrite(data, 1, size, f);
        fclose(f);
}

/* A found entry must name a file whose bytes hash to its name. */
static void check_found(const struct image_store_entry *e)
{
        struct image_store_entry again;
        struct st_error err = {0};

        if (!image_store_valid_sha(e->sha256) || e->size == 0 || e->size > FUZZ_CAP)
                abort();
        if (image_store_find(store, e->sha256, &again, &err) != 0 || again.size != e->size)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *url = "https://fuzz.example/image.png";
        char key[SHA256_HEX_SIZE], sha[SHA256_HEX_SIZE], other[SHA256_HEX_SIZE];
        struct image_store_entry e;
        struct st_error err = {0};
        const char *type;
        int rc;

        if (!store)
                open_store();
        /* the bytes as the URL entry of url */
        sha256_hex(url, strlen(url), key);
        plant("urls", key, data, size);
        rc = image_store_lookup_url(store, url, &e, &err);
        if (rc == 0)
                check_found(&e);
        else if (rc != ST_ENOTFOUND)
                abort();
        /* the bytes as a content file, under its own name and under another */
        sha256_hex(data, size, sha);
        plant("sha256", sha, data, size);
        rc = image_store_find(store, sha, &e, &err);
        if ((rc == 0) != (size >= 1 && size <= FUZZ_CAP) || (rc != 0 && rc != ST_ENOTFOUND))
                abort();
        memcpy(other, sha, sizeof(other));
        other[0] = other[0] == '0' ? '1' : '0';
        plant("sha256", other, data, size);
        if (image_store_find(store, other, &e, &err) != ST_ENOTFOUND)
                abort();
        /* the sniffer, and a put: accepted only as a raster image, then found */
        type = image_store_media_type(data, size);
        rc = image_store_put(store, url, data, size, NULL, &e, &err);
        if (rc == 0) {
                if (!type)
                        abort();
                check_found(&e);
                if (image_store_lookup_url(store, url, &e, &err) != 0 || strcmp(e.sha256, sha))
                        abort();
        } else if (rc != ST_EINVAL && rc != ST_ETOOBIG && rc != ST_EPROTO) {
                abort();
        }
        return 0;
}
