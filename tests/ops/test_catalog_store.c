/*
 * test_catalog_store.c - the catalog's LMDB store (ops/catalog_store.h)
 * driven the way the broker drives it: a source is started, crawl pages
 * come back as RESULT payloads built from hand-made raw records, refine and
 * embed results follow, and the store is checked through its STATUS and
 * CHANGES bodies.  Covers repeated and stale results, malformed payloads,
 * dead letters, the changelog per shard, hostile records (over-long ids,
 * records too big to read back, records over 1 MiB) and a reopen.  Each
 * store lives in a fresh mkdtemp directory that is removed at the end.
 */
#include "ops/catalog_store.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/wire.h"

#define ARENA_LIMIT (64u << 20)
#define VECTOR_DIM  4
#define EMBED_MODEL "test-embed"

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_catalog_store.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

/* ---- helpers ---- */

static void remove_tree(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *e;

        if (!d) {
                unlink(path);
                return;
        }
        while ((e = readdir(d))) {
                char sub[4096];

                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                        continue;
                snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
                remove_tree(sub);
        }
        closedir(d);
        rmdir(path);
}

/* A msgpack body being built, and its unpacked form once finished. */
struct body {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_unpacked u;
};

static void body_init(struct body *b)
{
        msgpack_sbuffer_init(&b->sb);
        msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
        msgpack_unpacked_init(&b->u);
}

static void body_release(struct body *b)
{
        msgpack_sbuffer_destroy(&b->sb);
        msgpack_unpacked_destroy(&b->u);
}

/* Empty b for a new body. */
static void body_reset(struct body *b)
{
        body_release(b);
        body_init(b);
}

/* Unpack what was packed into b: exactly one value. */
static const msgpack_object *body_unpack(struct body *b)
{
        size_t off = 0;
        msgpack_unpack_return r = msgpack_unpack_next(&b->u, b->sb.data, b->sb.size, &off);

        CHECK(r == MSGPACK_UNPACK_SUCCESS && off == b->sb.size);
        return &b->u.data;
}

/* A valid raw record; the strings are borrowed. */
static void make_record(struct st_raw_record *r, char *id, char *source, char *card)
{
        static char *tags[] = {"style", "watercolor"};
        static char *words[] = {"wtrclr"};

        memset(r, 0, sizeof(*r));
        r->id = id;
        r->source = source;
        r->name = id;
        r->version_name = "v1";
        r->type = "LORA";
        r->base_model = "sdxl";
        r->base_model_raw = "SDXL 1.0";
        r->card_html = card;
        r->card_url = "https://civitai.example/models/1";
        r->tags = (struct st_strv){tags, 2};
        r->trained_words = (struct st_strv){words, 1};
        r->stats = (struct st_stats){100, 7, 4.5};
        r->created_at = "2024-01-01T00:00:00Z";
        r->updated_at = "2024-02-01T00:00:00Z";
        r->crawled_at = "2025-01-01T00:00:00Z";
}

/* The RESULT payload of a crawl job: {source, records, next_cursor}. */
static const msgpack_object *crawl_payload(struct body *b, const char *source,
                                           const struct st_raw_record *records, size_t n,
                                           const char *next_cursor)
{
        body_reset(b);
        msgpack_pack_map(&b->pk, 3);
        wire_pack_kv_str(&b->pk, "source", source);
        wire_pack_key(&b->pk, "records");
        msgpack_pack_array(&b->pk, n);
        for (size_t i = 0; i < n; i++)
                CHECK(st_raw_record_pack(&b->pk, &records[i]) == 0);
        wire_pack_kv_str(&b->pk, "next_cursor", next_cursor);
        return body_unpack(b);
}

/* The RESULT payload of a refine job: {doc} for id refined from content_hash. */
static const msgpack_object *doc_payload(struct body *b, char *id, char *content_hash)
{
        struct st_doc d;

        memset(&d, 0, sizeof(d));
        d.id = id;
        d.source = "civitai";
        d.name = id;
        d.base_model = "sdxl";
        d.task = "style";
        d.description = "paints in watercolor";
        d.recommended_weight = 0.8;
        d.refined_by = "card";
        d.content_hash = content_hash;
        body_reset(b);
        msgpack_pack_map(&b->pk, 1);
        wire_pack_key(&b->pk, "doc");
        CHECK(st_doc_pack(&b->pk, &d) == 0);
        return body_unpack(b);
}

/* The RESULT payload of an embed job: {id, content_hash, model, dim, vector}. */
static const msgpack_object *vector_payload(struct body *b, const char *id,
                                            const char *content_hash)
{
        static const float v[VECTOR_DIM] = {0.5f, -0.5f, 0.5f, -0.5f};

        body_reset(b);
        msgpack_pack_map(&b->pk, 5);
        wire_pack_kv_str(&b->pk, "id", id);
        wire_pack_kv_str(&b->pk, "content_hash", content_hash);
        wire_pack_kv_str(&b->pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b->pk, "dim", VECTOR_DIM);
        wire_pack_kv_bin(&b->pk, "vector", v, sizeof(v));
        return body_unpack(b);
}

static bool never_busy(void *ctx, enum catalog_stage s, uint64_t job_id)
{
        (void)ctx;
        (void)s;
        (void)job_id;
        return false;
}

/* Busy callback context: these job ids are leased. */
struct busy_list {
        uint64_t ids[8];
        size_t n;
};

static bool listed_busy(void *ctx, enum catalog_stage s, uint64_t job_id)
{
        struct busy_list *l = ctx;

        (void)s;
        for (size_t i = 0; i < l->n; i++)
                if (l->ids[i] == job_id)
                        return true;
        return false;
}

/* Pack the next free job of stage s into b; *payload is its payload map. */
static int next_job(struct catalog *c, enum catalog_stage s, catalog_job_busy busy, void *ctx,
                    struct body *b, uint64_t *job_id, const msgpack_object **payload)
{
        uint64_t id_in_body = 0;
        const msgpack_object *job;
        char stage[16] = "";
        const char *p = NULL;
        size_t len = 0;
        int rc;

        body_reset(b);
        rc = catalog_pack_next_job(c, s, busy ? busy : never_busy, ctx, &b->pk, job_id);
        *payload = NULL;
        if (rc)
                return rc;
        job = body_unpack(b);
        CHECK(wire_get_u64(job, "job_id", &id_in_body) == 0 && id_in_body == *job_id);
        CHECK(wire_get_bytes(job, "stage", &p, &len) == 0 && len < sizeof(stage));
        if (p && len < sizeof(stage))
                memcpy(stage, p, len);
        CHECK(!strcmp(stage, catalog_stage_name(s)));
        *payload = wire_get(job, "payload");
        CHECK(*payload && (*payload)->type == MSGPACK_OBJECT_MAP);
        return 0;
}

/* True when o is a str equal to s (or nil when s is NULL). */
static bool str_is(const msgpack_object *o, const char *s)
{
        if (!o)
                return false;
        if (!s)
                return o->type == MSGPACK_OBJECT_NIL;
        return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
               !memcmp(o->via.str.ptr, s, o->via.str.size);
}

/* ---- reading STATUS ---- */

/* The STATUS body of c, unpacked into b. */
static const msgpack_object *status(struct catalog *c, struct body *b)
{
        size_t leased[STAGE_COUNT] = {0};

        body_reset(b);
        CHECK(catalog_pack_status(c, leased, 0, &b->pk) == 0);
        return body_unpack(b);
}

static uint64_t status_u64(struct catalog *c, const char *key)
{
        struct body b;
        uint64_t v = UINT64_MAX;

        body_init(&b);
        CHECK(wire_get_u64(status(c, &b), key, &v) == 0);
        body_release(&b);
        return v;
}

static uint64_t pending(struct catalog *c, enum catalog_stage s)
{
        struct body b;
        uint64_t v = UINT64_MAX;
        const msgpack_object *jobs;

        body_init(&b);
        jobs = wire_get(status(c, &b), "jobs");
        CHECK(wire_get_u64(wire_get(jobs, catalog_stage_name(s)), "pending", &v) == 0);
        body_release(&b);
        return v;
}

/* The state of one source in STATUS. */
struct source_view {
        bool found, done;
        uint64_t pages, passes;
        char cursor[64]; /* "" when nil */
};

static struct source_view source_status(struct catalog *c, const char *name)
{
        struct source_view sv = {0};
        struct body b;
        const msgpack_object *src, *cur;

        body_init(&b);
        src = wire_get(wire_get(status(c, &b), "sources"), name);
        sv.found = src != NULL;
        if (src) {
                CHECK(wire_get_bool(src, "done", &sv.done) == 0);
                CHECK(wire_get_u64(src, "pages", &sv.pages) == 0);
                CHECK(wire_get_u64(src, "passes", &sv.passes) == 0);
                cur = wire_get(src, "cursor");
                CHECK(cur && (cur->type == MSGPACK_OBJECT_NIL || cur->type == MSGPACK_OBJECT_STR));
                if (cur && cur->type == MSGPACK_OBJECT_STR && cur->via.str.size < sizeof(sv.cursor))
                        memcpy(sv.cursor, cur->via.str.ptr, cur->via.str.size);
        }
        body_release(&b);
        return sv;
}

/* The whole STATUS as JSON (malloc'd): equal texts mean nothing changed. */
static char *status_json(struct catalog *c)
{
        struct body b;
        char *s;

        body_init(&b);
        s = wire_to_json(status(c, &b), 0);
        CHECK(s != NULL);
        body_release(&b);
        return s;
}

/* The CHANGES body for (from_seq, max, shard, shards) as JSON (malloc'd). */
static char *changes_json(struct catalog *c, uint64_t from_seq, size_t max, uint64_t shard,
                          uint64_t shards)
{
        struct body b;
        char *s;

        body_init(&b);
        CHECK(catalog_pack_changes(c, from_seq, max, shard, shards, &b.pk) == 0);
        s = wire_to_json(body_unpack(&b), 0);
        CHECK(s != NULL);
        body_release(&b);
        return s;
}

static bool same_text(char *a, char *b)
{
        bool same = a && b && !strcmp(a, b);

        if (!same)
                fprintf(stderr, "  before: %s\n  after:  %s\n", a ? a : "(null)", b ? b : "(null)");
        free(a);
        free(b);
        return same;
}

/*
 * Play refiner and indexer: turn every queued refine job into a doc of the
 * record it carries, then every embed job into a vector.  Returns how many
 * vectors were applied.
 */
static size_t drain(struct catalog *c)
{
        struct body job, result;
        struct st_error err = {0};
        struct arena a;
        const msgpack_object *payload;
        uint64_t job_id;
        size_t vectors = 0;

        body_init(&job);
        body_init(&result);
        arena_init(&a, ARENA_LIMIT);
        while (next_job(c, STAGE_REFINE, NULL, NULL, &job, &job_id, &payload) == 0) {
                struct st_raw_record r;
                int rc = st_raw_record_from_object(wire_get(payload, "record"), &a, &r, &err);

                CHECK(rc == 0 && r.content_hash != NULL);
                if (rc || !r.content_hash)
                        break;
                rc = catalog_apply_doc(c, job_id, doc_payload(&result, r.id, r.content_hash), &err);
                CHECK(rc == 0);
                arena_release(&a);
                if (rc) {
                        fprintf(stderr, "  apply doc: %s\n", st_error_text(&err, rc));
                        break;
                }
        }
        while (next_job(c, STAGE_EMBED, NULL, NULL, &job, &job_id, &payload) == 0) {
                const msgpack_object *doc = wire_get(payload, "doc");
                char *id = NULL, *hash = NULL;
                int rc;

                CHECK(wire_get_str(doc, "id", &a, &id) == 0);
                CHECK(wire_get_str(doc, "content_hash", &a, &hash) == 0);
                if (!id || !hash)
                        break;
                rc = catalog_apply_vector(c, job_id, vector_payload(&result, id, hash), &err);
                CHECK(rc == 0);
                arena_release(&a);
                if (rc) {
                        fprintf(stderr, "  apply vector: %s\n", st_error_text(&err, rc));
                        break;
                }
                vectors++;
        }
        arena_release(&a);
        body_release(&job);
        body_release(&result);
        return vectors;
}

/* Hash of a record as the store computes it. */
static void record_hash(const struct st_raw_record *r, char out[65])
{
        CHECK(st_raw_record_hash(r, out) == 0);
}

/* ---- sources and crawl pages ---- */

static char id_a[] = "civitai:1@11", id_b[] = "civitai:2@21", id_c[] = "civitai:3@31";
static char card_1[] = "<p>watercolor</p>", card_2[] = "<p>watercolor, now brighter</p>";
/* Content hashes the sections below share: A, B, C as first crawled, C as changed. */
static char hash_a[65], hash_b[65], hash_c_old[65], hash_c_new[65];
/* Refine jobs of the first page, in record order, and of the changed C. */
static uint64_t refine_a, refine_b, refine_c_old;

/* Each malformed crawl payload fails with ST_EPROTO and leaves the store as it was. */
static void check_malformed_crawls(struct catalog *c, uint64_t job_id)
{
        struct catalog_crawl_counts counts;
        struct st_error err = {0};
        struct st_raw_record r;
        struct body b;
        char *before = status_json(c);

        body_init(&b);
        make_record(&r, id_a, "civitai", card_1);

        /* records missing */
        msgpack_pack_map(&b.pk, 2);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_kv_str(&b.pk, "next_cursor", NULL);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);
        CHECK(err.msg[0] != '\0');

        /* records not an array */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_key(&b.pk, "records");
        CHECK(st_raw_record_pack(&b.pk, &r) == 0);
        wire_pack_kv_str(&b.pk, "next_cursor", NULL);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);

        /* source not a string */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_u64(&b.pk, "source", 7);
        wire_pack_key(&b.pk, "records");
        msgpack_pack_array(&b.pk, 1);
        CHECK(st_raw_record_pack(&b.pk, &r) == 0);
        wire_pack_kv_str(&b.pk, "next_cursor", NULL);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);

        /* source missing */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 2);
        wire_pack_key(&b.pk, "records");
        msgpack_pack_array(&b.pk, 1);
        CHECK(st_raw_record_pack(&b.pk, &r) == 0);
        wire_pack_kv_str(&b.pk, "next_cursor", "p2");
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);

        /* next_cursor neither str nor nil: must not read as "pass done" */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_key(&b.pk, "records");
        msgpack_pack_array(&b.pk, 1);
        CHECK(st_raw_record_pack(&b.pk, &r) == 0);
        wire_pack_kv_u64(&b.pk, "next_cursor", 2);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);

        /* payload not a map, and no payload at all */
        body_reset(&b);
        msgpack_pack_array(&b.pk, 0);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == ST_EPROTO);
        CHECK(catalog_apply_crawl(c, job_id, NULL, &counts, &err) == ST_EPROTO);

        CHECK(same_text(before, status_json(c)));
        body_release(&b);
}

static void test_sources_and_crawl(struct catalog *c)
{
        struct catalog_crawl_counts counts;
        struct st_error err = {0};
        struct st_raw_record page[4];
        struct busy_list busy = {{0}, 0};
        struct body b, job;
        struct source_view sv;
        const msgpack_object *payload, *record;
        uint64_t crawl_1, crawl_2, crawl_3, id;

        body_init(&b);
        body_init(&job);

        /* An empty store: no jobs, no source. */
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &id, &payload) == ST_ENOTFOUND);
        CHECK(status_u64(c, "records") == 0);
        CHECK(!source_status(c, "civitai").found);

        /* Starting a source queues one crawl job from the beginning, however often. */
        CHECK(catalog_start_source(c, "civitai", false, false, &err) == 0);
        CHECK(catalog_start_source(c, "civitai", false, false, &err) == 0);
        CHECK(pending(c, STAGE_CRAWL) == 1);
        sv = source_status(c, "civitai");
        CHECK(sv.found && !sv.done && sv.pages == 0 && sv.cursor[0] == '\0');
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &crawl_1, &payload) == 0);
        CHECK(str_is(wire_get(payload, "source"), "civitai"));
        CHECK(str_is(wire_get(payload, "cursor"), NULL));

        check_malformed_crawls(c, crawl_1);

        /* Page 1: three new records, one refine job each, the next page queued. */
        make_record(&page[0], id_a, "civitai", card_1);
        make_record(&page[1], id_b, "civitai", card_1);
        make_record(&page[2], id_c, "civitai", card_1);
        record_hash(&page[0], hash_a);
        record_hash(&page[1], hash_b);
        record_hash(&page[2], hash_c_old);
        CHECK(catalog_apply_crawl(c, crawl_1, crawl_payload(&b, "civitai", page, 3, "page-2"),
                                  &counts, &err) == 0);
        CHECK(counts.added == 3 && counts.changed == 0 && counts.unchanged == 0 &&
              counts.rejected == 0);
        CHECK(status_u64(c, "records") == 3);
        CHECK(pending(c, STAGE_REFINE) == 3);
        CHECK(pending(c, STAGE_CRAWL) == 1);
        sv = source_status(c, "civitai");
        CHECK(!sv.done && sv.pages == 1 && sv.passes == 0 && !strcmp(sv.cursor, "page-2"));

        /* The same result again (a worker retried): nothing happens. */
        {
                char *before = status_json(c);

                CHECK(catalog_apply_crawl(c, crawl_1,
                                          crawl_payload(&b, "civitai", page, 3, "page-2"), &counts,
                                          &err) == 0);
                CHECK(counts.added == 0 && counts.changed == 0 && counts.unchanged == 0);
                CHECK(same_text(before, status_json(c)));
        }

        /* The next page's job carries the saved cursor. */
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &crawl_2, &payload) == 0);
        CHECK(crawl_2 > crawl_1);
        CHECK(str_is(wire_get(payload, "cursor"), "page-2"));

        /* Refine jobs come oldest first, skipping the busy ones, with the stored record. */
        CHECK(next_job(c, STAGE_REFINE, NULL, NULL, &job, &refine_a, &payload) == 0);
        record = wire_get(payload, "record");
        CHECK(str_is(wire_get(record, "id"), id_a));
        CHECK(str_is(wire_get(record, "content_hash"), hash_a));
        busy.ids[busy.n++] = refine_a;
        CHECK(next_job(c, STAGE_REFINE, listed_busy, &busy, &job, &refine_b, &payload) == 0);
        CHECK(refine_b > refine_a);
        CHECK(str_is(wire_get(wire_get(payload, "record"), "id"), id_b));
        busy.ids[busy.n++] = refine_b;
        CHECK(next_job(c, STAGE_REFINE, listed_busy, &busy, &job, &refine_c_old, &payload) == 0);
        CHECK(refine_c_old > refine_b);
        CHECK(str_is(wire_get(wire_get(payload, "record"), "id"), id_c));
        busy.ids[busy.n++] = refine_c_old;
        CHECK(next_job(c, STAGE_REFINE, listed_busy, &busy, &job, &id, &payload) == ST_ENOTFOUND);

        /*
         * Page 2, the last: A as before, B crawled again later (crawled_at and
         * etag do not count), C with a new card, and one invalid record.
         */
        page[1].crawled_at = "2025-06-01T00:00:00Z";
        page[1].etag = "W/\"2\"";
        page[2].card_html = card_2;
        record_hash(&page[2], hash_c_new);
        CHECK(strcmp(hash_c_old, hash_c_new) != 0);
        make_record(&page[3], "civitai:4@41", "civitai", card_1);
        page[3].name = NULL;
        CHECK(catalog_apply_crawl(c, crawl_2, crawl_payload(&b, "civitai", page, 4, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == 0 && counts.changed == 1 && counts.unchanged == 2 &&
              counts.rejected == 1);
        CHECK(status_u64(c, "records") == 3);
        CHECK(pending(c, STAGE_REFINE) == 4);
        CHECK(pending(c, STAGE_CRAWL) == 0);
        sv = source_status(c, "civitai");
        CHECK(sv.done && sv.pages == 2 && sv.passes == 1 && sv.cursor[0] == '\0');

        /* A finished source stays finished unless restarted; a restart begins anew. */
        CHECK(catalog_start_source(c, "civitai", false, false, &err) == 0);
        CHECK(pending(c, STAGE_CRAWL) == 0);
        CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
        CHECK(pending(c, STAGE_CRAWL) == 1);
        CHECK(!source_status(c, "civitai").done);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &crawl_3, &payload) == 0);
        CHECK(str_is(wire_get(payload, "cursor"), NULL));
        CHECK(catalog_apply_crawl(c, crawl_3, crawl_payload(&b, "civitai", NULL, 0, NULL), &counts,
                                  &err) == 0);
        sv = source_status(c, "civitai");
        CHECK(sv.done && sv.pages == 3 && sv.passes == 2);
        CHECK(pending(c, STAGE_REFINE) == 4);

        body_release(&job);
        body_release(&b);
}

/* ---- refine and embed results ---- */

static void check_malformed_docs(struct catalog *c, uint64_t job_id)
{
        struct st_error err = {0};
        struct body b;
        char *before = status_json(c);

        body_init(&b);
        msgpack_pack_map(&b.pk, 0);
        CHECK(catalog_apply_doc(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        body_reset(&b);
        msgpack_pack_map(&b.pk, 1);
        wire_pack_kv_str(&b.pk, "doc", "not a map");
        CHECK(catalog_apply_doc(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        /* a doc without content_hash cannot be matched to its record */
        CHECK(catalog_apply_doc(c, job_id, doc_payload(&b, id_a, NULL), &err) == ST_EPROTO);
        /* a doc without id */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 1);
        wire_pack_key(&b.pk, "doc");
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_kv_str(&b.pk, "name", "x");
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        CHECK(catalog_apply_doc(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        CHECK(catalog_apply_doc(c, job_id, NULL, &err) == ST_EPROTO);
        CHECK(same_text(before, status_json(c)));
        body_release(&b);
}

static void check_malformed_vectors(struct catalog *c, uint64_t job_id)
{
        static const float v[VECTOR_DIM] = {1, 2, 3, 4};
        struct st_error err = {0};
        struct body b;
        char *before = status_json(c);

        body_init(&b);
        /* dim says 4, vector holds 3 floats */
        msgpack_pack_map(&b.pk, 5);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        wire_pack_kv_str(&b.pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b.pk, "dim", VECTOR_DIM);
        wire_pack_kv_bin(&b.pk, "vector", v, 3 * sizeof(float));
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        /* a dim so large that dim * 4 wraps around to the vector's size */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 5);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        wire_pack_kv_str(&b.pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b.pk, "dim", (UINT64_C(1) << 62) + VECTOR_DIM);
        wire_pack_kv_bin(&b.pk, "vector", v, sizeof(v));
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        /* dim 0 and an empty vector */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 5);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        wire_pack_kv_str(&b.pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b.pk, "dim", 0);
        wire_pack_kv_bin(&b.pk, "vector", v, 0);
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        /* no model; vector of the wrong type; content_hash of the wrong type */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 4);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        wire_pack_kv_u64(&b.pk, "dim", VECTOR_DIM);
        wire_pack_kv_bin(&b.pk, "vector", v, sizeof(v));
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        body_reset(&b);
        msgpack_pack_map(&b.pk, 5);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_str(&b.pk, "content_hash", hash_a);
        wire_pack_kv_str(&b.pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b.pk, "dim", VECTOR_DIM);
        wire_pack_kv_u64(&b.pk, "vector", 16);
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        body_reset(&b);
        msgpack_pack_map(&b.pk, 5);
        wire_pack_kv_str(&b.pk, "id", id_a);
        wire_pack_kv_u64(&b.pk, "content_hash", 1);
        wire_pack_kv_str(&b.pk, "model", EMBED_MODEL);
        wire_pack_kv_u64(&b.pk, "dim", VECTOR_DIM);
        wire_pack_kv_bin(&b.pk, "vector", v, sizeof(v));
        CHECK(catalog_apply_vector(c, job_id, body_unpack(&b), &err) == ST_EPROTO);
        CHECK(catalog_apply_vector(c, job_id, NULL, &err) == ST_EPROTO);
        CHECK(same_text(before, status_json(c)));
        body_release(&b);
}

static void test_docs_and_vectors(struct catalog *c)
{
        struct st_error err = {0};
        struct body b, job;
        const msgpack_object *payload, *doc;
        uint64_t embed_a, embed_b, id;

        body_init(&b);
        body_init(&job);
        CHECK(status_u64(c, "docs") == 0);
        check_malformed_docs(c, refine_a);

        /* A doc of the record's current version is kept and queues its embedding. */
        CHECK(catalog_apply_doc(c, refine_a, doc_payload(&b, id_a, hash_a), &err) == 0);
        CHECK(status_u64(c, "docs") == 1);
        CHECK(pending(c, STAGE_EMBED) == 1);
        CHECK(pending(c, STAGE_REFINE) == 3);
        {
                char *before = status_json(c);

                CHECK(catalog_apply_doc(c, refine_a, doc_payload(&b, id_a, hash_a), &err) == 0);
                CHECK(same_text(before, status_json(c)));
        }

        /* A doc refined from C's first version arrives after C changed: dropped. */
        CHECK(catalog_apply_doc(c, refine_c_old, doc_payload(&b, id_c, hash_c_old), &err) == 0);
        CHECK(status_u64(c, "docs") == 1);
        CHECK(pending(c, STAGE_EMBED) == 1);
        CHECK(pending(c, STAGE_REFINE) == 2);

        /* The embed job carries the stored doc. */
        CHECK(next_job(c, STAGE_EMBED, NULL, NULL, &job, &embed_a, &payload) == 0);
        doc = wire_get(payload, "doc");
        CHECK(str_is(wire_get(doc, "id"), id_a));
        CHECK(str_is(wire_get(doc, "content_hash"), hash_a));
        check_malformed_vectors(c, embed_a);

        /* A vector of the current version: stored, one changelog entry. */
        CHECK(catalog_head_seq(c) == 0);
        CHECK(catalog_apply_vector(c, embed_a, vector_payload(&b, id_a, hash_a), &err) == 0);
        CHECK(status_u64(c, "vectors") == 1);
        CHECK(catalog_head_seq(c) == 1);
        CHECK(status_u64(c, "head_seq") == 1);
        CHECK(pending(c, STAGE_EMBED) == 0);
        CHECK(catalog_apply_vector(c, embed_a, vector_payload(&b, id_a, hash_a), &err) == 0);
        CHECK(catalog_head_seq(c) == 1);

        /* A vector for an old version of B: dropped, its job done. */
        CHECK(catalog_apply_doc(c, refine_b, doc_payload(&b, id_b, hash_b), &err) == 0);
        CHECK(next_job(c, STAGE_EMBED, NULL, NULL, &job, &embed_b, &payload) == 0);
        CHECK(catalog_apply_vector(c, embed_b, vector_payload(&b, id_b, hash_c_old), &err) == 0);
        CHECK(status_u64(c, "vectors") == 1);
        CHECK(catalog_head_seq(c) == 1);
        CHECK(pending(c, STAGE_EMBED) == 0);
        CHECK(next_job(c, STAGE_EMBED, NULL, NULL, &job, &id, &payload) == ST_ENOTFOUND);

        /* What is left (C's new version) goes all the way through. */
        CHECK(drain(c) == 1);
        CHECK(status_u64(c, "docs") == 3);
        CHECK(status_u64(c, "vectors") == 2);
        CHECK(catalog_head_seq(c) == 2);
        CHECK(pending(c, STAGE_REFINE) == 0);
        body_release(&job);
        body_release(&b);
}

/* ---- the changelog by shard ---- */

#define N_HF 20

/* Every id that has a vector after test_docs_and_vectors and the hf crawl. */
static char hf_ids[N_HF][64];

static void answer_checks(struct catalog *c);

static void crawl_hf(struct catalog *c)
{
        struct catalog_crawl_counts counts;
        struct st_error err = {0};
        struct st_raw_record page[N_HF];
        const msgpack_object *payload;
        struct body b, job;
        uint64_t job_id;

        body_init(&b);
        body_init(&job);
        for (int i = 0; i < N_HF; i++) {
                snprintf(hf_ids[i], sizeof(hf_ids[i]), "hf:user%d/lora-%d@abc%d", i % 3, i, i);
                make_record(&page[i], hf_ids[i], "hf", card_1);
        }
        answer_checks(c); /* records the last civitai pass did not list */
        CHECK(catalog_start_source(c, "hf", false, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(str_is(wire_get(payload, "source"), "hf"));
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "hf", page, N_HF, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == N_HF);
        CHECK(drain(c) == N_HF);
        body_release(&job);
        body_release(&b);
}

/* Check one CHANGES body; count its entries per id into seen (indexed like ids). */
static void check_changes(const msgpack_object *changes, uint64_t shard, uint64_t shards,
                          char *const ids[], size_t n_ids, int seen[], uint64_t from_seq)
{
        const msgpack_object *entries = wire_get(changes, "entries");
        uint64_t prev = from_seq;

        CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY);
        if (!entries || entries->type != MSGPACK_OBJECT_ARRAY)
                return;
        for (uint32_t i = 0; i < entries->via.array.size; i++) {
                const msgpack_object *e = &entries->via.array.ptr[i];
                struct st_error err = {0};
                struct arena a;
                struct st_doc d;
                const char *p;
                size_t len;
                uint64_t seq = 0;
                char *id = NULL;

                arena_init(&a, ARENA_LIMIT);
                CHECK(wire_get_u64(e, "seq", &seq) == 0 && seq > prev);
                prev = seq;
                CHECK(str_is(wire_get(e, "op"), "put"));
                CHECK(wire_get_str(e, "id", &a, &id) == 0);
                CHECK(id && wire_id_hash(id) % shards == shard);
                CHECK(wire_get_bytes(e, "doc", &p, &len) == 0 &&
                      st_doc_from_msgpack(p, len, &a, &d, &err) == 0 && id && !strcmp(d.id, id));
                CHECK(wire_get_bytes(e, "vector", &p, &len) == 0 &&
                      len == VECTOR_DIM * sizeof(float));
                CHECK(str_is(wire_get(e, "model"), EMBED_MODEL));
                for (size_t k = 0; id && k < n_ids; k++)
                        if (!strcmp(ids[k], id))
                                seen[k]++;
                arena_release(&a);
        }
}

static void test_changes(struct catalog *c)
{
        char *ids[2 + N_HF];
        size_t n_ids = 0;
        struct body b;
        uint64_t head, last = 0, head_in_body = 0;
        const msgpack_object *changes;

        crawl_hf(c);
        ids[n_ids++] = id_a;
        ids[n_ids++] = id_c;
        for (int i = 0; i < N_HF; i++)
                ids[n_ids++] = hf_ids[i];
        head = catalog_head_seq(c);
        CHECK(head == n_ids);
        body_init(&b);

        /* Each shard of 1, 3 and 4 gets exactly its ids, each once. */
        for (uint64_t shards = 1; shards <= 4; shards += shards == 1 ? 2 : 1) {
                int seen[2 + N_HF] = {0};

                for (uint64_t shard = 0; shard < shards; shard++) {
                        body_reset(&b);
                        CHECK(catalog_pack_changes(c, 0, 1000, shard, shards, &b.pk) == 0);
                        changes = body_unpack(&b);
                        CHECK(wire_get_u64(changes, "last_seq", &last) == 0 && last == head);
                        CHECK(wire_get_u64(changes, "head_seq", &head_in_body) == 0 &&
                              head_in_body == head);
                        check_changes(changes, shard, shards, ids, n_ids, seen, 0);
                }
                for (size_t k = 0; k < n_ids; k++)
                        CHECK(seen[k] == 1);
        }

        /* max bounds the scan; last_seq says where it stopped. */
        {
                int seen[2 + N_HF] = {0};
                const msgpack_object *entries;

                body_reset(&b);
                CHECK(catalog_pack_changes(c, 0, 5, 0, 1, &b.pk) == 0);
                changes = body_unpack(&b);
                entries = wire_get(changes, "entries");
                CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY &&
                      entries->via.array.size == 5);
                CHECK(wire_get_u64(changes, "last_seq", &last) == 0 && last == 5);
                check_changes(changes, 0, 1, ids, n_ids, seen, 0);

                body_reset(&b);
                CHECK(catalog_pack_changes(c, 5, 1000, 0, 1, &b.pk) == 0);
                changes = body_unpack(&b);
                entries = wire_get(changes, "entries");
                CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY &&
                      entries->via.array.size == head - 5);
                check_changes(changes, 0, 1, ids, n_ids, seen, 5);
                for (size_t k = 0; k < n_ids; k++)
                        CHECK(seen[k] == 1);
        }

        /* Caught up: nothing, and last_seq stays. */
        body_reset(&b);
        CHECK(catalog_pack_changes(c, head, 1000, 0, 1, &b.pk) == 0);
        changes = body_unpack(&b);
        CHECK(wire_get(changes, "entries") && wire_get(changes, "entries")->via.array.size == 0);
        CHECK(wire_get_u64(changes, "last_seq", &last) == 0 && last == head);

        /* A shard that does not exist. */
        body_reset(&b);
        CHECK(catalog_pack_changes(c, 0, 1000, 3, 3, &b.pk) == ST_EINVAL);
        CHECK(catalog_pack_changes(c, 0, 1000, 0, 0, &b.pk) == ST_EINVAL);

        /* A record that changes after it was served: a new "put" at the head. */
        {
                struct catalog_crawl_counts counts;
                struct st_error err = {0};
                struct st_raw_record r;
                struct body job;
                const msgpack_object *payload, *entries;
                uint64_t job_id;
                char new_hash[65];
                const char *p;
                size_t len;

                body_init(&job);
                make_record(&r, id_a, "civitai", card_2);
                record_hash(&r, new_hash);
                CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
                CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
                CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", &r, 1, NULL),
                                          &counts, &err) == 0);
                CHECK(counts.changed == 1);
                CHECK(drain(c) == 1);
                CHECK(catalog_head_seq(c) == head + 1);
                body_reset(&b);
                CHECK(catalog_pack_changes(c, head, 1000, 0, 1, &b.pk) == 0);
                entries = wire_get(body_unpack(&b), "entries");
                CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY &&
                      entries->via.array.size == 1);
                if (entries && entries->type == MSGPACK_OBJECT_ARRAY &&
                    entries->via.array.size == 1) {
                        struct arena a;
                        struct st_doc d;

                        arena_init(&a, ARENA_LIMIT);
                        CHECK(str_is(wire_get(entries->via.array.ptr, "id"), id_a));
                        CHECK(wire_get_bytes(entries->via.array.ptr, "doc", &p, &len) == 0 &&
                              st_doc_from_msgpack(p, len, &a, &d, NULL) == 0 &&
                              !strcmp(d.content_hash, new_hash));
                        arena_release(&a);
                }
                body_release(&job);
        }
        body_release(&b);
}

/* ---- tombstones, checks, incremental passes, images, compaction, snapshots ---- */

/* A crawl RESULT with optional unchanged/gone lists and stop. */
static const msgpack_object *crawl_payload_ex(struct body *b, const char *source,
                                              const struct st_raw_record *records, size_t n,
                                              const char *next_cursor, const char *unchanged,
                                              const char *gone, bool stop)
{
        body_reset(b);
        msgpack_pack_map(&b->pk, 3 + !!unchanged + !!gone + stop);
        wire_pack_kv_str(&b->pk, "source", source);
        wire_pack_key(&b->pk, "records");
        msgpack_pack_array(&b->pk, n);
        for (size_t i = 0; i < n; i++)
                CHECK(st_raw_record_pack(&b->pk, &records[i]) == 0);
        wire_pack_kv_str(&b->pk, "next_cursor", next_cursor);
        if (unchanged) {
                wire_pack_key(&b->pk, "unchanged");
                msgpack_pack_array(&b->pk, 1);
                wire_pack_str(&b->pk, unchanged);
        }
        if (gone) {
                wire_pack_key(&b->pk, "gone");
                msgpack_pack_array(&b->pk, 1);
                wire_pack_str(&b->pk, gone);
        }
        if (stop)
                wire_pack_kv_bool(&b->pk, "stop", true);
        return body_unpack(b);
}

static uint64_t changelog_u64(struct catalog *c, const char *key)
{
        struct body b;
        uint64_t v = UINT64_MAX;

        body_init(&b);
        CHECK(wire_get_u64(wire_get(status(c, &b), "changelog"), key, &v) == 0);
        body_release(&b);
        return v;
}

/* Apply every queued check job as answered with nothing gone. */
static void answer_checks(struct catalog *c)
{
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body job, result;
        const msgpack_object *payload;
        uint64_t job_id;

        body_init(&job);
        body_init(&result);
        while (next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0) {
                if (!wire_get(payload, "check"))
                        break;
                CHECK(catalog_apply_crawl(c, job_id,
                                          crawl_payload(&result, "civitai", NULL, 0, NULL), &counts,
                                          &err) == 0);
        }
        body_release(&job);
        body_release(&result);
}

/* Whether the CHANGES from seq 0 hold a "del" of id. */
static bool has_del(struct catalog *c, const char *id)
{
        char *json = changes_json(c, 0, 1000, 0, 1), want[128];
        bool found;

        snprintf(want, sizeof(want), "\"id\": \"%s\", \"op\": \"del\"", id);
        found = json && strstr(json, want);
        if (!found && json && !strstr(json, "\"op\": \"del\""))
                fprintf(stderr, "  no del in %s\n", json);
        free(json);
        return found;
}

static void test_tombstones(struct catalog *c)
{
        static char ida[] = "tsrc:41@411", idb[] = "tsrc:42@421", idc[] = "tsrc:43@431";
        struct st_raw_record page[3];
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body b, job;
        const msgpack_object *payload, *checked;
        uint64_t job_id, pages;

        body_init(&b);
        body_init(&job);
        make_record(&page[0], ida, "tsrc", card_1);
        make_record(&page[1], idb, "tsrc", card_1);
        make_record(&page[2], idc, "tsrc", card_1);
        CHECK(catalog_start_source(c, "tsrc", false, false, &err) == 0);
        CHECK(source_status(c, "tsrc").found);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(wire_get(payload, "pass") == NULL); /* the first pass is full */
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "tsrc", page, 3, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == 3 && counts.checks == 0);
        CHECK(drain(c) == 3);
        CHECK(pending(c, STAGE_CRAWL) == 0);

        /* A second full pass lists A, says B is unchanged (a 304), misses C. */
        CHECK(catalog_start_source(c, "tsrc", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id,
                                  crawl_payload_ex(&b, "tsrc", page, 1, NULL, idb, NULL, false),
                                  &counts, &err) == 0);
        CHECK(counts.unchanged == 2 && counts.checks == 1);
        CHECK(pending(c, STAGE_REFINE) == 0);
        pages = source_status(c, "tsrc").pages;
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        checked = wire_get(payload, "check");
        CHECK(checked && checked->type == MSGPACK_OBJECT_ARRAY && checked->via.array.size == 1 &&
              str_is(&checked->via.array.ptr[0], idc));
        CHECK(str_is(wire_get(payload, "source"), "tsrc"));
        /* The source answers 404 for C: a tombstone, a "del" for the shards. */
        CHECK(catalog_apply_crawl(c, job_id,
                                  crawl_payload_ex(&b, "tsrc", NULL, 0, NULL, NULL, idc, false),
                                  &counts, &err) == 0);
        CHECK(counts.gone == 1);
        CHECK(source_status(c, "tsrc").pages == pages); /* a check moves no cursor */
        CHECK(changelog_u64(c, "tombstones") == 1);
        CHECK(has_del(c, idc));
        CHECK(pending(c, STAGE_CRAWL) == 0);
        /* Gone again, or never known: nothing happens. */
        {
                uint64_t head = catalog_head_seq(c);

                CHECK(catalog_start_source(c, "tsrc", true, false, &err) == 0);
                CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
                CHECK(catalog_apply_crawl(
                          c, job_id, crawl_payload_ex(&b, "tsrc", page, 2, NULL, NULL, idc, false),
                          &counts, &err) == 0);
                CHECK(catalog_head_seq(c) == head);
                CHECK(counts.checks == 0);
        }

        /* Incremental: the job says so; stop ends the pass; no checks follow. */
        CHECK(catalog_start_source(c, "tsrc", true, true, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(str_is(wire_get(payload, "pass"), "incremental"));
        CHECK(catalog_apply_crawl(c, job_id,
                                  crawl_payload_ex(&b, "tsrc", page, 1, "more", NULL, NULL, true),
                                  &counts, &err) == 0);
        CHECK(source_status(c, "tsrc").done);
        CHECK(pending(c, STAGE_CRAWL) == 0);

        /* Back from the dead: C listed again is new again. */
        CHECK(catalog_start_source(c, "tsrc", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "tsrc", page, 3, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == 1 && counts.checks == 0);
        CHECK(changelog_u64(c, "tombstones") == 0);
        CHECK(drain(c) == 1);
        body_release(&job);
        body_release(&b);
}

static void test_supersede_and_orphans(struct catalog *c)
{
        static char v1[] = "hf:u/style@1111", v2[] = "hf:u/style@2222", other[] = "hf:u/style2@1";
        struct st_raw_record r[2];
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body b, job;
        const msgpack_object *payload;
        uint64_t job_id, records;

        body_init(&b);
        body_init(&job);
        make_record(&r[0], v1, "hf", card_1);
        make_record(&r[1], other, "hf", card_1);
        CHECK(catalog_start_source(c, "hf", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "hf", r, 2, NULL), &counts, &err) ==
              0);
        CHECK(drain(c) == 2);
        answer_checks(c);
        records = status_u64(c, "records");
        /* A new commit of u/style: the old one is tombstoned before refining starts. */
        make_record(&r[0], v2, "hf", card_2);
        CHECK(catalog_start_source(c, "hf", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "hf", r, 2, NULL), &counts, &err) ==
              0);
        CHECK(counts.added == 1 && counts.unchanged == 1);
        CHECK(status_u64(c, "records") == records);
        CHECK(has_del(c, v1));
        CHECK(!has_del(c, other));
        CHECK(drain(c) == 1);

        /* A refine job whose record went away is dropped, not handed out. */
        make_record(&r[0], v1, "hf", card_1);
        CHECK(catalog_start_source(c, "hf", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "hf", r, 1, NULL), &counts, &err) ==
              0);
        CHECK(pending(c, STAGE_REFINE) == 1); /* v1 is back, v2 superseded... by an older one */
        answer_checks(c);
        CHECK(catalog_start_source(c, "hf", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id,
                                  crawl_payload_ex(&b, "hf", NULL, 0, NULL, NULL, v1, false),
                                  &counts, &err) == 0);
        CHECK(counts.gone == 1);
        CHECK(next_job(c, STAGE_REFINE, NULL, NULL, &job, &job_id, &payload) == ST_ENOTFOUND);
        CHECK(catalog_drop_orphans(c, &err) == 0);
        CHECK(pending(c, STAGE_REFINE) == 0);
        answer_checks(c);
        body_release(&job);
        body_release(&b);
}

static void test_images_stage(struct catalog *c)
{
        static char id[] = "civitai:51@511", url0[] = "https://img.example/a.png",
                    url1[] = "https://img.example/b.png";
        static const char sha[] =
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        struct st_image images[2] = {{url0, "a cat", NULL}, {url1, NULL, NULL}};
        struct st_raw_record r;
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body b, job;
        struct arena a;
        const msgpack_object *payload;
        uint64_t job_id;
        char hash[65];
        size_t stored = 0;

        body_init(&b);
        body_init(&job);
        arena_init(&a, ARENA_LIMIT);
        make_record(&r, id, "civitai", card_1);
        r.images = images;
        r.n_images = 2;
        record_hash(&r, hash);
        catalog_set_images(c, true);
        CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", &r, 1, "next"), &counts,
                                  &err) == 0);
        CHECK(pending(c, STAGE_IMAGES) == 1 && pending(c, STAGE_REFINE) == 0);
        CHECK(next_job(c, STAGE_IMAGES, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(wire_get(payload, "record") != NULL);
        /* A result for another version of the record is dropped. */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_str(&b.pk, "id", id);
        wire_pack_kv_str(&b.pk, "content_hash", hash);
        wire_pack_key(&b.pk, "images");
        msgpack_pack_array(&b.pk, 2);
        msgpack_pack_map(&b.pk, 3);
        wire_pack_kv_str(&b.pk, "url", url0);
        wire_pack_kv_str(&b.pk, "sha256", sha);
        wire_pack_kv_u64(&b.pk, "bytes", 1234);
        msgpack_pack_map(&b.pk, 2);
        wire_pack_kv_str(&b.pk, "url", url1);
        wire_pack_kv_str(&b.pk, "error", "HTTP 404");
        CHECK(catalog_apply_images(c, job_id, body_unpack(&b), &stored, &err) == 0);
        CHECK(stored == 1);
        CHECK(pending(c, STAGE_IMAGES) == 0 && pending(c, STAGE_REFINE) == 1);
        CHECK(next_job(c, STAGE_REFINE, NULL, NULL, &job, &job_id, &payload) == 0);
        {
                struct st_raw_record got;

                CHECK(st_raw_record_from_object(wire_get(payload, "record"), &a, &got, &err) == 0);
                CHECK(got.n_images == 2 && got.images[0].sha256 &&
                      !strcmp(got.images[0].sha256, sha) && !got.images[1].sha256);
                /* The content hash stays the crawled one: a re-crawl finds it unchanged. */
                CHECK(got.content_hash && !strcmp(got.content_hash, hash));
        }
        CHECK(drain(c) == 1);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", &r, 1, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.unchanged == 1 && pending(c, STAGE_IMAGES) == 0);
        answer_checks(c);
        /* Malformed images results are protocol errors. */
        body_reset(&b);
        msgpack_pack_map(&b.pk, 1);
        wire_pack_kv_str(&b.pk, "id", id);
        CHECK(catalog_apply_images(c, 1, body_unpack(&b), &stored, &err) == ST_EPROTO);
        catalog_set_images(c, false);
        arena_release(&a);
        body_release(&job);
        body_release(&b);
}

/* Every id a paged snapshot of shard/shards returns, counted. */
static size_t snapshot_count(struct catalog *c, uint64_t shard, uint64_t shards, uint64_t *head)
{
        char after[256] = "";
        size_t n = 0, pages = 0;

        for (;;) {
                struct body b;
                const msgpack_object *o, *next, *entries;

                body_init(&b);
                CHECK(catalog_pack_snapshot(c, after, 2, shard, shards, &b.pk) == 0);
                o = body_unpack(&b);
                entries = wire_get(o, "entries");
                next = wire_get(o, "next");
                CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY);
                CHECK(wire_get_u64(o, "head_seq", head) == 0);
                for (uint32_t i = 0; entries && i < entries->via.array.size; i++) {
                        CHECK(str_is(wire_get(&entries->via.array.ptr[i], "op"), "put"));
                        CHECK(wire_get(&entries->via.array.ptr[i], "vector") != NULL);
                        n++;
                }
                pages++;
                if (!next || next->type != MSGPACK_OBJECT_STR || pages > 1000) {
                        body_release(&b);
                        break;
                }
                memcpy(after, next->via.str.ptr, next->via.str.size);
                after[next->via.str.size] = '\0';
                body_release(&b);
        }
        return n;
}

static void test_compaction(struct catalog *c)
{
        struct st_error err = {0};
        struct body b;
        const msgpack_object *o;
        uint64_t head = catalog_head_seq(c), snap_head = 0, low;
        size_t deleted = 0, dropped = 0, total;
        bool resnapshot = false;

        body_init(&b);
        CHECK(head > 4);
        /* One subscriber behind at head - 3: only entries it has applied go. */
        CHECK(catalog_note_subscriber(c, "replica-a", 0, 1, head - 3, &err) == 0);
        CHECK(catalog_note_subscriber(c, "replica-b", 0, 1, head, &err) == 0);
        CHECK(catalog_compact_changelog(c, 3600, 100000, &deleted, &dropped, &err) == 0);
        CHECK(dropped == 0 && deleted > 0 && deleted <= head - 3);
        CHECK(changelog_u64(c, "low_seq") == head - 3);
        /* replica-a still follows; a newcomer from 0 must take a snapshot. */
        CHECK(catalog_pack_changes(c, head - 3, 1000, 0, 1, &b.pk) == 0);
        o = body_unpack(&b);
        CHECK(wire_get_bool(o, "resnapshot", &resnapshot) != 0 || !resnapshot);
        CHECK(wire_get(o, "entries")->via.array.size == 3);
        body_reset(&b);
        CHECK(catalog_pack_changes(c, 0, 1000, 0, 1, &b.pk) == 0);
        o = body_unpack(&b);
        CHECK(wire_get_bool(o, "resnapshot", &resnapshot) == 0 && resnapshot);
        CHECK(wire_get_u64(o, "low_seq", &low) == 0 && low == head - 3);
        /* A snapshot has every current vector, split across shards without overlap. */
        total = snapshot_count(c, 0, 1, &snap_head);
        CHECK(total == status_u64(c, "vectors"));
        if (total != status_u64(c, "vectors"))
                fprintf(stderr, "  snapshot %zu, vectors %llu, docs %llu\n", total,
                        (unsigned long long)status_u64(c, "vectors"),
                        (unsigned long long)status_u64(c, "docs"));
        CHECK(snap_head == head);
        CHECK(snapshot_count(c, 0, 2, &snap_head) + snapshot_count(c, 1, 2, &snap_head) == total);
        body_reset(&b);
        CHECK(catalog_pack_snapshot(c, "", 10, 2, 2, &b.pk) == ST_EINVAL);
        /* Subscribers silent past the TTL stop holding entries back. */
        sleep(2);
        CHECK(catalog_compact_changelog(c, 1, 100000, &deleted, &dropped, &err) == 0);
        CHECK(dropped == 2);
        CHECK(changelog_u64(c, "low_seq") == head);
        body_reset(&b);
        CHECK(catalog_pack_changes(c, head, 1000, 0, 1, &b.pk) == 0);
        o = body_unpack(&b);
        CHECK(wire_get_bool(o, "resnapshot", &resnapshot) != 0 || !resnapshot);
        body_release(&b);
}

/*
 * Two records with one file: the first is indexed, the second held; the
 * by_hash answer names the second (later_owns) or nobody.
 */
static void by_hash_case(struct catalog *c, bool later_owns)
{
        static char first[2][32] = {"civitai:71@711", "civitai:81@811"};
        static char later[2][32] = {"civitai:72@721", "civitai:82@821"};
        static char sha[2][65] = {
            "cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34cd34",
            "ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56ef56"};
        int x = later_owns ? 0 : 1;
        struct st_file files[1] = {{"y.safetensors", 1000, sha[x], "https://y.example/dl"}};
        struct st_raw_record r[2];
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body b, job;
        const msgpack_object *payload;
        uint64_t job_id, dups = status_u64(c, "duplicates");

        body_init(&b);
        body_init(&job);
        make_record(&r[0], first[x], "civitai", card_1);
        make_record(&r[1], later[x], "civitai", card_2);
        r[0].files = r[1].files = files;
        r[0].n_files = r[1].n_files = 1;
        CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", r, 1, "next"), &counts,
                                  &err) == 0);
        CHECK(drain(c) == 1);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", &r[1], 1, NULL), &counts,
                                  &err) == 0);
        CHECK(pending(c, STAGE_REFINE) == 0); /* held */
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(wire_get(payload, "by_hash") != NULL);
        body_reset(&b);
        msgpack_pack_map(&b.pk, 4);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_key(&b.pk, "records");
        msgpack_pack_array(&b.pk, 0);
        wire_pack_kv_str(&b.pk, "next_cursor", NULL);
        wire_pack_key(&b.pk, "canonical");
        msgpack_pack_map(&b.pk, 1);
        wire_pack_kv_str(&b.pk, sha[x], later_owns ? later[x] : NULL);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == 0);
        CHECK(pending(c, STAGE_REFINE) == 1); /* the held one goes on */
        CHECK(drain(c) == 1);
        CHECK(status_u64(c, "duplicates") == dups + (later_owns ? 1 : 0));
        CHECK(has_del(c, first[x]) == later_owns);
        CHECK(!has_del(c, later[x]));
        answer_checks(c);
        body_release(&job);
        body_release(&b);
}

static void test_duplicates(struct catalog *c)
{
        static char orig[] = "civitai:61@611", dup[] = "civitai:62@621";
        static char sha[] = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";
        struct st_file files[1] = {{"x.safetensors", 1000, sha, "https://x.example/dl"}};
        struct st_raw_record r[2];
        struct st_error err = {0};
        struct catalog_crawl_counts counts;
        struct body b, job;
        const msgpack_object *payload, *hashes;
        uint64_t job_id, head;

        body_init(&b);
        body_init(&job);
        answer_checks(c);
        make_record(&r[0], orig, "civitai", card_1);
        make_record(&r[1], dup, "civitai", card_2);
        r[0].files = r[1].files = files;
        r[0].n_files = r[1].n_files = 1;
        CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", r, 2, "next"), &counts,
                                  &err) == 0);
        CHECK(drain(c) == 1); /* the second waits for the source's answer */
        /* The second record with the same file asked the source who owns it. */
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        hashes = wire_get(payload, "by_hash");
        CHECK(hashes && hashes->type == MSGPACK_OBJECT_ARRAY && hashes->via.array.size == 1 &&
              str_is(&hashes->via.array.ptr[0], sha));
        head = catalog_head_seq(c);
        body_reset(&b);
        msgpack_pack_map(&b.pk, 4);
        wire_pack_kv_str(&b.pk, "source", "civitai");
        wire_pack_key(&b.pk, "records");
        msgpack_pack_array(&b.pk, 0);
        wire_pack_kv_str(&b.pk, "next_cursor", NULL);
        wire_pack_key(&b.pk, "canonical");
        msgpack_pack_map(&b.pk, 1);
        wire_pack_kv_str(&b.pk, sha, orig);
        CHECK(catalog_apply_crawl(c, job_id, body_unpack(&b), &counts, &err) == 0);
        CHECK(counts.duplicates == 1);
        CHECK(status_u64(c, "duplicates") == 1);
        CHECK(!has_del(c, dup) && !has_del(c, orig)); /* the re-upload was never indexed */
        CHECK(catalog_head_seq(c) == head);
        CHECK(pending(c, STAGE_REFINE) == 0);
        /* The next page: the re-upload changes, and stays out of the index. */
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        r[1].card_html = card_1;
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", &r[1], 1, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.changed == 1 && counts.duplicates == 1);
        CHECK(pending(c, STAGE_REFINE) == 0);
        answer_checks(c);
        by_hash_case(c, true);  /* the source names the later upload: the earlier one goes */
        by_hash_case(c, false); /* the source knows no owner: both stay */
        body_release(&job);
        body_release(&b);
}

static void test_reembed(struct catalog *c)
{
        struct st_error err = {0};
        char after[256] = "";
        size_t queued = 0, total = 0;
        bool done = false;
        uint64_t vectors = status_u64(c, "vectors"), docs = status_u64(c, "docs");

        /* Every vector is of EMBED_MODEL: a sweep to it queues only docs without one. */
        CHECK(pending(c, STAGE_EMBED) == 0);
        CHECK(catalog_requeue_embed(c, EMBED_MODEL, after, sizeof(after), 1000, &queued, &done,
                                    &err) == 0);
        CHECK(done && queued == docs - vectors);
        CHECK(drain(c) == queued);
        vectors = status_u64(c, "vectors");
        CHECK(vectors == docs);
        /* A new model: every doc gets an embed job, a few per step. */
        after[0] = '\0';
        done = false;
        for (int steps = 0; !done && steps < 1000; steps++) {
                CHECK(catalog_requeue_embed(c, "other-model/4", after, sizeof(after), 3, &queued,
                                            &done, &err) == 0);
                CHECK(queued <= 3);
                total += queued;
        }
        CHECK(done && total == status_u64(c, "docs"));
        CHECK(pending(c, STAGE_EMBED) == total);
        CHECK(status_u64(c, "vectors") == vectors); /* old vectors serve meanwhile */
        CHECK(drain(c) == total);
}

/* ---- dead letters ---- */

static void test_bury(struct catalog *c)
{
        struct st_error err = {0};
        struct body job;
        const msgpack_object *payload;
        uint64_t job_id;

        body_init(&job);
        CHECK(status_u64(c, "dead") == 0);
        answer_checks(c);
        CHECK(catalog_start_source(c, "hf", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_bury_job(c, STAGE_CRAWL, job_id, "fetch failed 3 times", &err) == 0);
        CHECK(status_u64(c, "dead") == 1);
        CHECK(pending(c, STAGE_CRAWL) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == ST_ENOTFOUND);
        /* Burying a job that is gone, or never was, changes nothing. */
        CHECK(catalog_bury_job(c, STAGE_CRAWL, job_id, "again", &err) == 0);
        CHECK(catalog_bury_job(c, STAGE_EMBED, 999999, "never queued", &err) == 0);
        CHECK(status_u64(c, "dead") == 1);
        body_release(&job);
}

/* ---- durability ---- */

static void test_reopen(struct catalog **c, const char *dir)
{
        struct st_error err = {0};
        struct body job;
        const msgpack_object *payload;
        char *status_before = status_json(*c);
        char *changes_before = changes_json(*c, 0, 1000, 1, 3);
        uint64_t head = catalog_head_seq(*c), job_id, crawl_before;

        body_init(&job);
        CHECK(catalog_start_source(*c, "hf", true, false, &err) == 0);
        CHECK(next_job(*c, STAGE_CRAWL, NULL, NULL, &job, &crawl_before, &payload) == 0);
        free(status_before);
        status_before = status_json(*c);

        catalog_close(c);
        CHECK(*c == NULL);
        CHECK(catalog_open(dir, c, &err) == 0);
        if (!*c) {
                free(status_before);
                free(changes_before);
                body_release(&job);
                return;
        }
        CHECK(same_text(status_before, status_json(*c)));
        CHECK(same_text(changes_before, changes_json(*c, 0, 1000, 1, 3)));
        CHECK(catalog_head_seq(*c) == head);
        /* The pending job is offered again, and new job ids keep growing. */
        CHECK(next_job(*c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(job_id == crawl_before);
        CHECK(catalog_start_source(*c, "civitai", true, false, &err) == 0);
        {
                struct busy_list busy = {{crawl_before}, 1};

                CHECK(next_job(*c, STAGE_CRAWL, listed_busy, &busy, &job, &job_id, &payload) == 0);
                CHECK(job_id > crawl_before);
                CHECK(str_is(wire_get(payload, "source"), "civitai"));
        }
        body_release(&job);
}

/* ---- hostile records ---- */

/*
 * Records the store cannot keep are rejected one by one, never failing the
 * page: an empty id and one longer than an LMDB key; a record whose encoding
 * is over ST_LIMIT_RECORD (it could never be read back).  A record over
 * 1 MiB that is within the limit goes through the whole pipeline.
 */
static void test_hostile_records(const char *dir)
{
        static char prompt[200000], huge_prompt[ST_LIMIT_TEXT];
        struct st_image images[20], huge_images[20];
        struct catalog_crawl_counts counts;
        struct st_error err = {0};
        struct st_raw_record page[5];
        struct catalog *c = NULL;
        struct body b, job;
        const msgpack_object *payload;
        char long_id[700], empty_id[] = "";
        uint64_t job_id;

        if (catalog_open(dir, &c, &err)) {
                CHECK(!"open");
                return;
        }
        body_init(&b);
        body_init(&job);
        memset(prompt, 'p', sizeof(prompt) - 1);
        memset(huge_prompt, 'q', sizeof(huge_prompt) - 1);
        for (int i = 0; i < 20; i++) {
                images[i] =
                    (struct st_image){"https://img.example/a.png", i < 6 ? prompt : NULL, NULL};
                huge_images[i] = (struct st_image){"https://img.example/b.png", huge_prompt, NULL};
        }
        memset(long_id, 'x', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        memcpy(long_id, "civitai:", 8);

        make_record(&page[0], "civitai:10@100", "civitai", card_1);
        make_record(&page[1], long_id, "civitai", card_1);
        make_record(&page[2], empty_id, "civitai", card_1);
        make_record(&page[3], "civitai:11@110", "civitai", card_1);
        page[3].images = huge_images; /* about 5 MiB */
        page[3].n_images = 20;
        make_record(&page[4], "civitai:12@120", "civitai", card_1);
        page[4].images = images; /* about 1.2 MiB */
        page[4].n_images = 20;

        CHECK(catalog_start_source(c, "civitai", false, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", page, 5, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == 2 && counts.rejected == 3);
        CHECK(status_u64(c, "records") == 2);
        CHECK(source_status(c, "civitai").done);
        CHECK(drain(c) == 2);
        CHECK(status_u64(c, "vectors") == 2);
        CHECK(catalog_head_seq(c) == 2);

        /* The same page again: the big record is unchanged, not changed anew. */
        CHECK(catalog_start_source(c, "civitai", true, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "civitai", page, 5, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.unchanged == 2 && counts.rejected == 3 && counts.added == 0 &&
              counts.changed == 0);
        CHECK(pending(c, STAGE_REFINE) == 0);
        body_release(&job);
        body_release(&b);
        catalog_close(&c);
}

/*
 * A SYNC may scan up to 10000 entries: with ids near the LMDB key limit
 * that is more id bytes than fit in one small arena, and every entry must
 * still be there.
 */
static void test_many_long_changes(const char *dir)
{
        enum { N = 2100, ID_LEN = 500 };
        struct catalog_crawl_counts counts;
        struct st_error err = {0};
        struct st_raw_record *page = calloc(N, sizeof(*page));
        char(*ids)[ID_LEN + 1] = calloc(N, sizeof(*ids));
        struct catalog *c = NULL;
        struct body b, job;
        const msgpack_object *payload, *entries;
        uint64_t job_id, last = 0;

        if (!page || !ids || catalog_open(dir, &c, &err)) {
                CHECK(!"setup");
                free(page);
                free(ids);
                return;
        }
        body_init(&b);
        body_init(&job);
        for (int i = 0; i < N; i++) {
                memset(ids[i], 'y', ID_LEN);
                snprintf(ids[i], 24, "hf:user/%06d", i);
                ids[i][strlen(ids[i])] = '-';
                make_record(&page[i], ids[i], "hf", card_1);
        }
        CHECK(catalog_start_source(c, "hf", false, false, &err) == 0);
        CHECK(next_job(c, STAGE_CRAWL, NULL, NULL, &job, &job_id, &payload) == 0);
        CHECK(catalog_apply_crawl(c, job_id, crawl_payload(&b, "hf", page, N, NULL), &counts,
                                  &err) == 0);
        CHECK(counts.added == N);
        CHECK(drain(c) == N);
        body_reset(&b);
        CHECK(catalog_pack_changes(c, 0, 10000, 0, 1, &b.pk) == 0);
        payload = body_unpack(&b);
        entries = wire_get(payload, "entries");
        CHECK(entries && entries->type == MSGPACK_OBJECT_ARRAY && entries->via.array.size == N);
        CHECK(wire_get_u64(payload, "last_seq", &last) == 0 && last == N);
        body_release(&job);
        body_release(&b);
        catalog_close(&c);
        free(page);
        free(ids);
}

/*
 * A fresh directory for the stores.  Every apply is a synced LMDB commit and
 * test_many_long_changes makes thousands, so tmpfs comes first when there is
 * one: the disk does not set the pace, and what the test checks (a close and
 * reopen included) is the same.
 */
static bool make_root(char *root, size_t size)
{
        static const char *const parents[] = {"/dev/shm", "/tmp"};

        for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
                snprintf(root, size, "%s/test_catalog_store.XXXXXX", parents[i]);
                if (mkdtemp(root))
                        return true;
        }
        return false;
}

int main(void)
{
        char root[64], dir[96];
        struct st_error err = {0};
        struct catalog *c = NULL;

        if (!make_root(root, sizeof(root))) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(dir, sizeof(dir), "%s/main", root);
        if (catalog_open(dir, &c, &err)) {
                fprintf(stderr, "catalog_open: %s\n", err.msg);
                remove_tree(root);
                return 1;
        }
        test_sources_and_crawl(c);
        test_docs_and_vectors(c);
        test_changes(c);
        test_bury(c);
        test_tombstones(c);
        test_supersede_and_orphans(c);
        test_images_stage(c);
        test_duplicates(c);
        test_reembed(c);
        test_compaction(c);
        test_reopen(&c, dir);
        catalog_close(&c);

        snprintf(dir, sizeof(dir), "%s/hostile", root);
        test_hostile_records(dir);
        snprintf(dir, sizeof(dir), "%s/long", root);
        test_many_long_changes(dir);

        remove_tree(root);
        if (failures) {
                fprintf(stderr, "test_catalog_store: %d check(s) failed\n", failures);
                return 1;
        }
        printf("test_catalog_store: ok\n");
        return 0;
}
