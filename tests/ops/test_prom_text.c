/*
 * test_prom_text.c - STATUS answers of a catalog and of a shard as
 * Prometheus text: names, collection labels, escaping, grouping under one
 * TYPE line per name, what is left out, and refusals.
 */
#include "ops/prom_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire.h"

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_prom_text.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

/* prom_write_status() of the packed map in sb, as a malloc'd string (NULL on error). */
static char *render(const msgpack_sbuffer *sb, int *rc)
{
        msgpack_unpacked u;
        struct st_error err = {0};
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        msgpack_unpacked_init(&u);
        *rc = -1;
        if (f && msgpack_unpack_next(&u, sb->data, sb->size, NULL) == MSGPACK_UNPACK_SUCCESS)
                *rc = prom_write_status(&u.data, f, &err);
        if (f)
                fclose(f);
        msgpack_unpacked_destroy(&u);
        if (*rc) {
                free(text);
                return NULL;
        }
        return text;
}

static void pack_stage(msgpack_packer *pk, const char *stage, uint64_t pending, uint64_t leased)
{
        wire_pack_key(pk, stage);
        msgpack_pack_map(pk, 2);
        wire_pack_kv_u64(pk, "pending", pending);
        wire_pack_kv_u64(pk, "leased", leased);
}

static void test_catalog(void)
{
        static const char want[] =
            "# TYPE stylus_catalog_changelog_low_seq gauge\n"
            "stylus_catalog_changelog_low_seq 40\n"
            "# TYPE stylus_catalog_changelog_subscribers_seq gauge\n"
            "stylus_catalog_changelog_subscribers_seq{subscriber=\"s\\\"0\\\\a\\n\"} 51\n"
            "# TYPE stylus_catalog_docs gauge\n"
            "stylus_catalog_docs 254\n"
            "# TYPE stylus_catalog_jobs_leased gauge\n"
            "stylus_catalog_jobs_leased{stage=\"crawl\"} 1\n"
            "stylus_catalog_jobs_leased{stage=\"refine\"} 2\n"
            "# TYPE stylus_catalog_jobs_pending gauge\n"
            "stylus_catalog_jobs_pending{stage=\"crawl\"} 0\n"
            "stylus_catalog_jobs_pending{stage=\"refine\"} 12\n"
            "# TYPE stylus_catalog_rate gauge\n"
            "stylus_catalog_rate 0.5\n"
            "# TYPE stylus_catalog_sources_done gauge\n"
            "stylus_catalog_sources_done{source=\"civitai\"} 1\n"
            "# TYPE stylus_catalog_sources_pages gauge\n"
            "stylus_catalog_sources_pages{source=\"civitai\"} 22\n"
            "# TYPE stylus_catalog_weird_key_ gauge\n"
            "stylus_catalog_weird_key_ -3\n";
        msgpack_sbuffer sb;
        msgpack_packer pk;
        char *text;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 8);
        wire_pack_kv_u64(&pk, "docs", 254);
        wire_pack_key(&pk, "jobs");
        msgpack_pack_map(&pk, 2);
        pack_stage(&pk, "crawl", 0, 1);
        pack_stage(&pk, "refine", 12, 2);
        wire_pack_key(&pk, "sources");
        msgpack_pack_map(&pk, 1);
        wire_pack_key(&pk, "civitai");
        msgpack_pack_map(&pk, 3);
        wire_pack_kv_str(&pk, "cursor", "abc"); /* a string: left out */
        wire_pack_kv_bool(&pk, "done", true);
        wire_pack_kv_u64(&pk, "pages", 22);
        wire_pack_key(&pk, "dead_letters"); /* an array: left out */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 1);
        wire_pack_kv_u64(&pk, "job_id", 7);
        wire_pack_key(&pk, "changelog");
        msgpack_pack_map(&pk, 2);
        wire_pack_kv_u64(&pk, "low_seq", 40);
        wire_pack_key(&pk, "subscribers");
        msgpack_pack_map(&pk, 1);
        wire_pack_key(&pk, "s\"0\\a\n"); /* escaped in the label */
        msgpack_pack_map(&pk, 1);
        wire_pack_kv_u64(&pk, "seq", 51);
        wire_pack_key(&pk, "rate");
        msgpack_pack_double(&pk, 0.5);
        wire_pack_key(&pk, "weird.key!");
        msgpack_pack_int64(&pk, -3);
        msgpack_pack_nil(&pk); /* a non-string key: left out */
        msgpack_pack_uint64(&pk, 9);
        text = render(&sb, &rc);
        CHECK(rc == 0 && text);
        if (text && strcmp(text, want) != 0)
                fprintf(stderr, "got:\n%s\nwant:\n%s\n", text, want);
        CHECK(text && strcmp(text, want) == 0);
        free(text);
        msgpack_sbuffer_destroy(&sb);
}

static void test_shard(void)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        char *text;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        wire_pack_kv_u64(&pk, "count", 127);
        wire_pack_kv_bool(&pk, "snapshotting", false);
        wire_pack_kv_str(&pk, "model", "stylus-hash-v1/384");
        wire_pack_key(&pk, "shard");
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, 2);
        text = render(&sb, &rc);
        CHECK(rc == 0 && text &&
              strcmp(text, "# TYPE stylus_shard_count gauge\n"
                           "stylus_shard_count{shard=\"1/2\"} 127\n"
                           "# TYPE stylus_shard_snapshotting gauge\n"
                           "stylus_shard_snapshotting{shard=\"1/2\"} 0\n") == 0);
        free(text);
        msgpack_sbuffer_destroy(&sb);
}

static void test_refused(void)
{
        msgpack_sbuffer sb;
        msgpack_packer pk;
        int rc;

        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 0);
        CHECK(render(&sb, &rc) == NULL && rc == ST_ETYPE);
        msgpack_sbuffer_clear(&sb);
        /* Nested deeper than PROM_MAX_DEPTH. */
        for (int i = 0; i < PROM_MAX_DEPTH + 2; i++) {
                msgpack_pack_map(&pk, 1);
                wire_pack_key(&pk, "a");
        }
        msgpack_pack_uint64(&pk, 1);
        CHECK(render(&sb, &rc) == NULL && rc == ST_ETOOBIG);
        msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
        test_catalog();
        test_shard();
        test_refused();
        if (failures) {
                fprintf(stderr, "test_prom_text: %d checks failed\n", failures);
                return 1;
        }
        printf("test_prom_text: ok\n");
        return 0;
}
