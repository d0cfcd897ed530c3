/*
 * test_validator_cache.c - the crawler's validator cache (validator_cache.h)
 * in a temporary directory: entries round-trip, replace each other
 * atomically, leave no temporary file, and every kind of damage (a
 * truncated file, garbage, another key in the file, another version, a
 * file over the cap) reads as a miss; pruning removes what no pass used.
 */
#include "crawler/validator_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "proto/sha256.h"
#include "proto/wire.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define PAGE   "https://civitai.com/api/v1/models?limit=100&types=LORA&sort=Newest"

static char root[256];

/* The file an entry of key lives in (validator_cache.h: <dir>/<hh>/<sha256 hex>). */
static void entry_file(const char *dir, const char *key, char *out, size_t size)
{
        char hex[SHA256_HEX_SIZE];

        sha256_hex(key, strlen(key), hex);
        snprintf(out, size, "%s/%.2s/%s", dir, hex, hex);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
        FILE *f = fopen(path, "wb");

        CHECK(f);
        CHECK(fwrite(data, 1, len, f) == len);
        fclose(f);
}

/* Temporary files left in the folder of key's entry (a write leaves none). */
static int temporaries_beside(const char *dir, const char *key)
{
        char path[512], hex[SHA256_HEX_SIZE];
        struct dirent *e;
        int n = 0;
        DIR *d;

        sha256_hex(key, strlen(key), hex);
        snprintf(path, sizeof(path), "%s/%.2s", dir, hex);
        d = opendir(path);
        CHECK(d);
        while ((e = readdir(d)))
                n += strstr(e->d_name, ".tmp.") != NULL;
        closedir(d);
        return n;
}

static void test_roundtrip(void)
{
        struct validator_record records[2] = {{"civitai:1@10", HASH_A, HASH_B},
                                              {"civitai:2@20", HASH_B, HASH_A}};
        struct validator_entry page = {.etag = "W/\"abc\"",
                                       .last_modified = "Wed, 21 Oct 2015 07:28:00 GMT",
                                       .next_cursor = "100|42",
                                       .records = records,
                                       .n_records = 2};
        struct validator_entry got;
        struct validator_cache *c = NULL;
        struct st_error err = {0, ""};
        char dir[300];
        struct arena a;

        /* The directory and its parents are made. */
        snprintf(dir, sizeof(dir), "%s/deep/er/cache/", root);
        CHECK(validator_cache_open(dir, &c, &err) == 0);
        arena_init(&a, 1 << 20);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        CHECK(validator_cache_put(c, PAGE, &page, &err) == 0);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == 0);
        CHECK(strcmp(got.etag, "W/\"abc\"") == 0);
        CHECK(strcmp(got.last_modified, "Wed, 21 Oct 2015 07:28:00 GMT") == 0);
        CHECK(strcmp(got.next_cursor, "100|42") == 0);
        CHECK(!got.revision && !got.has_body && !got.body);
        CHECK(got.n_records == 2);
        CHECK(strcmp(got.records[1].id, "civitai:2@20") == 0);
        CHECK(strcmp(got.records[1].content_hash, HASH_B) == 0);
        CHECK(strcmp(got.records[1].stable_hash, HASH_A) == 0);

        /* An item entry with a README body holding NULs and no validators; it replaces nothing. */
        {
                static const char body[] = "---\nbase_model: x\n---\n\0binary";
                struct validator_entry item = {.revision =
                                                   "d13cdc5961fef413b0535b4c36b8660e95e458ed",
                                               .records = records,
                                               .n_records = 1,
                                               .has_body = true,
                                               .body = (char *)body,
                                               .body_len = sizeof(body) - 1};

                CHECK(validator_cache_put(c, "hf:repo:u/r", &item, &err) == 0);
                CHECK(validator_cache_get(c, "hf:repo:u/r", &a, &got) == 0);
                CHECK(got.has_body && got.body_len == sizeof(body) - 1);
                CHECK(memcmp(got.body, body, got.body_len) == 0 && got.body[got.body_len] == '\0');
                CHECK(!got.etag && !got.next_cursor && got.n_records == 1);
                CHECK(strcmp(got.revision, item.revision) == 0);
                /* An empty README is a README. */
                item.body = NULL;
                item.body_len = 0;
                CHECK(validator_cache_put(c, "hf:repo:u/r", &item, &err) == 0);
                CHECK(validator_cache_get(c, "hf:repo:u/r", &a, &got) == 0);
                CHECK(got.has_body && got.body_len == 0);
        }

        /* Replacing: the new entry wins, and no temporary file is left beside it. */
        page.etag = NULL;
        page.next_cursor = NULL;
        page.n_records = 0;
        CHECK(validator_cache_put(c, PAGE, &page, &err) == 0);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == 0);
        CHECK(!got.etag && got.last_modified && !got.next_cursor && got.n_records == 0);
        CHECK(temporaries_beside(dir, PAGE) == 0);

        /* Forget. */
        CHECK(validator_cache_remove(c, PAGE) == 0);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        CHECK(validator_cache_remove(c, PAGE) == 0);

        /* Bad keys and records. */
        CHECK(validator_cache_put(c, "", &page, &err) == ST_EINVAL);
        {
                struct validator_record bad = {"x", NULL, HASH_A};

                page.records = &bad;
                page.n_records = 1;
                CHECK(validator_cache_put(c, PAGE, &page, &err) == ST_EINVAL);
        }
        arena_release(&a);
        validator_cache_destroy(&c);
        CHECK(c == NULL);
        validator_cache_destroy(&c);
}

/* Every damaged or foreign file reads as a miss, never as an entry. */
static void test_damage(void)
{
        struct validator_record records[1] = {{"hf:u/r@x", HASH_A, HASH_B}};
        struct validator_entry e = {.etag = "\"e\"", .records = records, .n_records = 1}, got;
        struct validator_cache *c = NULL;
        struct st_error err = {0, ""};
        char dir[300], file[512], *bytes;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        struct arena a;
        struct stat st;
        FILE *f;

        snprintf(dir, sizeof(dir), "%s/damage", root);
        CHECK(validator_cache_open(dir, &c, &err) == 0);
        arena_init(&a, 1 << 20);
        CHECK(validator_cache_put(c, PAGE, &e, &err) == 0);
        entry_file(dir, PAGE, file, sizeof(file));
        CHECK(stat(file, &st) == 0 && st.st_size > 10);

        /* Truncated. */
        bytes = malloc((size_t)st.st_size);
        f = fopen(file, "rb");
        CHECK(f && fread(bytes, 1, (size_t)st.st_size, f) == (size_t)st.st_size);
        fclose(f);
        write_bytes(file, bytes, (size_t)st.st_size / 2);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        /* Trailing bytes. */
        write_bytes(file, bytes, (size_t)st.st_size);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == 0);
        {
                char *longer = malloc((size_t)st.st_size + 1);

                memcpy(longer, bytes, (size_t)st.st_size);
                longer[st.st_size] = '\x01';
                write_bytes(file, longer, (size_t)st.st_size + 1);
                free(longer);
        }
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        free(bytes);
        /* Garbage, and empty. */
        write_bytes(file, "\xc1\xc1garbage", 9);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        write_bytes(file, "", 0);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);

        /* Well-formed, but the entry of another key (a hash collision), or another version. */
        for (int variant = 0; variant < 3; variant++) {
                msgpack_sbuffer_init(&sb);
                msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                msgpack_pack_map(&pk, 3);
                wire_pack_kv_u64(
                    &pk, "v", variant == 1 ? VALIDATOR_CACHE_VERSION + 1 : VALIDATOR_CACHE_VERSION);
                wire_pack_kv_str(&pk, "key", variant == 0 ? "another key" : PAGE);
                wire_pack_key(&pk, "records");
                if (variant == 2)
                        wire_pack_str(&pk, "not an array");
                else
                        msgpack_pack_array(&pk, 0);
                write_bytes(file, sb.data, sb.size);
                msgpack_sbuffer_destroy(&sb);
                CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
                CHECK(got.n_records == 0 && !got.etag);
        }

        /* Over the cap: a miss, and put refuses to write one. */
        f = fopen(file, "wb");
        CHECK(f && fseek(f, VALIDATOR_CACHE_MAX_ENTRY + 1, SEEK_SET) == 0 && fputc(0, f) == 0);
        fclose(f);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOTFOUND);
        {
                struct validator_entry big = {.has_body = true,
                                              .body = calloc(VALIDATOR_CACHE_MAX_ENTRY, 1),
                                              .body_len = VALIDATOR_CACHE_MAX_ENTRY};

                CHECK(big.body);
                CHECK(validator_cache_put(c, PAGE, &big, &err) == ST_ETOOBIG);
                free(big.body);
        }

        /* An arena too small to hold the entry: ST_ENOMEM, not a miss. */
        CHECK(validator_cache_put(c, PAGE, &e, &err) == 0);
        arena_release(&a);
        arena_init(&a, 64);
        CHECK(validator_cache_get(c, PAGE, &a, &got) == ST_ENOMEM);
        arena_release(&a);
        validator_cache_destroy(&c);
}

static void test_open_errors(void)
{
        struct validator_cache *c = NULL;
        struct st_error err = {0, ""};
        char path[300];

        CHECK(validator_cache_open("", &c, &err) == ST_EINVAL && !c);
        CHECK(validator_cache_open(NULL, &c, &err) == ST_EINVAL && !c);
        /* A file where the directory should be. */
        snprintf(path, sizeof(path), "%s/plain-file", root);
        write_bytes(path, "x", 1);
        CHECK(validator_cache_open(path, &c, &err) == ST_EIO && !c);
        CHECK(strstr(err.msg, "plain-file"));
}

/* Set path's times to seconds ago. */
static void age(const char *path, long seconds)
{
        struct timespec t[2];

        clock_gettime(CLOCK_REALTIME, &t[0]);
        t[0].tv_sec -= seconds;
        t[1] = t[0];
        CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
}

/*
 * Prune: of three entries and a stray temp file all two days old, the one
 * read since (a hit refreshes it) stays; a day's limit removes the other
 * two and the temp file; what was just written stays.
 */
static void test_prune(void)
{
        static const char *keys[] = {"hf:repo:a/one", "hf:repo:b/two", "hf:repo:c/three"};
        struct validator_record records[1] = {{"civitai:1@10", HASH_A, HASH_B}};
        struct validator_entry e = {.etag = "\"x\"", .records = records, .n_records = 1}, got;
        struct validator_cache *c = NULL;
        struct st_error err = {0, ""};
        char dir[300], path[600], temp[700];
        size_t removed = 99;
        struct arena a;

        snprintf(dir, sizeof(dir), "%s/prune", root);
        CHECK(validator_cache_open(dir, &c, &err) == 0);
        arena_init(&a, 1 << 20);
        for (int i = 0; i < 3; i++) {
                CHECK(validator_cache_put(c, keys[i], &e, &err) == 0);
                entry_file(dir, keys[i], path, sizeof(path));
                age(path, 2 * 86400);
        }
        entry_file(dir, keys[0], path, sizeof(path));
        snprintf(temp, sizeof(temp), "%s.tmp.1.1", path);
        write_bytes(temp, "x", 1);
        age(temp, 2 * 86400);
        CHECK(validator_cache_get(c, keys[1], &a, &got) == 0); /* used now */
        CHECK(validator_cache_prune(c, 86400, &removed, &err) == 0);
        CHECK(removed == 3);
        CHECK(validator_cache_get(c, keys[0], &a, &got) == ST_ENOTFOUND);
        CHECK(validator_cache_get(c, keys[1], &a, &got) == 0);
        CHECK(validator_cache_get(c, keys[2], &a, &got) == ST_ENOTFOUND);
        CHECK(access(temp, F_OK) != 0);
        CHECK(validator_cache_put(c, keys[2], &e, &err) == 0);
        CHECK(validator_cache_prune(c, 86400, &removed, &err) == 0 && removed == 0);
        arena_release(&a);
        validator_cache_destroy(&c);
}

static void remove_tree(const char *path)
{
        char cmd[600];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
        CHECK(system(cmd) == 0);
}

int main(void)
{
        snprintf(root, sizeof(root), "/tmp/test_validator_cache.%d", (int)getpid());
        remove_tree(root);
        CHECK(mkdir(root, 0700) == 0);
        test_roundtrip();
        test_damage();
        test_open_errors();
        test_prune();
        remove_tree(root);
        printf("test_validator_cache: ok\n");
        return 0;
}
