/*
 * test_lora_download.c - what lora_download() refuses before any request:
 * names that are not plain file names (a path, a dot file, control bytes,
 * too long), a SHA256 that is not 64 hex digits, URLs that are not http(s);
 * and that a refused or failed download leaves no part file behind.  The
 * downloads themselves run in tests/integration/test_pipeline.py.
 */
#include "query/lora_download.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_lora_download.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

#define SHA "a9278a905f55535311577bbd7311a22b340724f5b39c43c40f64811e81782a8b"

static int get(const char *dir, const char *name, const char *url, const char *sha)
{
        struct lora_download_result r;
        struct st_error err = {0};

        return lora_download(dir, name, url, sha, "test", &r, &err);
}

static size_t entries(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *e;
        size_t n = 0;

        while (d && (e = readdir(d)) != NULL)
                n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d)
                closedir(d);
        return n;
}

int main(void)
{
        char dir[] = "/tmp/test_lora_download.XXXXXX", long_name[300];

        CHECK(mkdtemp(dir) != NULL);
        memset(long_name, 'a', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        CHECK(get(dir, "../escape.safetensors", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, "a/b.safetensors", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, "a\\b.safetensors", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, ".bashrc", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, "", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, NULL, "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, "line\nbreak.safetensors", "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, long_name, "http://127.0.0.1:9/x", SHA) == ST_EINVAL);
        CHECK(get(dir, "ok.safetensors", "http://127.0.0.1:9/x", "abc") == ST_EINVAL);
        CHECK(get(dir, "ok.safetensors", NULL, SHA) == ST_EINVAL);
        CHECK(get(dir, "ok.safetensors", "file:///etc/passwd", SHA) == ST_EINVAL);
        CHECK(get(dir, "ok.safetensors", "ftp://127.0.0.1/x", SHA) == ST_EINVAL);
        /* Nothing listens on port 9 of loopback: a network error, and no file left. */
        CHECK(get(dir, "ok.safetensors", "http://127.0.0.1:9/x", SHA) == ST_ENET);
        CHECK(entries(dir) == 0);
        CHECK(rmdir(dir) == 0);
        if (failures) {
                fprintf(stderr, "test_lora_download: %d checks failed\n", failures);
                return 1;
        }
        printf("test_lora_download: ok\n");
        return 0;
}
