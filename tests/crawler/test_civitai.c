/*
 * test_civitai.c - the Civitai driver: pages in the real wire shapes (current
 * and 2023), hostile pages, URLs, and a full crawl of the fixture server
 * (tests/fixtures/server.py, started here on a loopback port it picks).
 */
#include "crawler/civitai.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crawler/validator_cache.h"
#include "fixture_server.h"
#include "proto/log.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

#define CHECK_STR(got, want)                                                                       \
        do {                                                                                       \
                const char *g_ = (got), *w_ = (want);                                              \
                if (!g_ || strcmp(g_, w_) != 0) {                                                  \
                        fprintf(stderr, "%s:%d: %s is '%s', want '%s'\n", __FILE__, __LINE__,      \
                                #got, g_ ? g_ : "(null)", w_);                                     \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

#define BASE     "https://civitai.com"
#define CRAWLED  "2026-01-02T03:04:05Z"
#define ARENA_MB (64u << 20)

static int parse(const char *json, struct arena *a, struct civitai_page *page, struct st_error *err)
{
        return civitai_parse_models_page(json, strlen(json), BASE, CRAWLED, a, page, err);
}

/* Every record must survive the msgpack codec: that is what the crawler ships. */
static void check_roundtrip(const struct st_raw_record *r)
{
        struct arena a;
        struct st_raw_record back;
        struct st_error err = {0, ""};
        char *buf, hash[65];
        size_t len;

        arena_init(&a, ARENA_MB);
        CHECK(st_raw_record_to_msgpack(r, &buf, &len) == 0);
        if (st_raw_record_from_msgpack(buf, len, &a, &back, &err) != 0) {
                fprintf(stderr, "record %s does not decode: %s\n", r->id, err.msg);
                exit(1);
        }
        CHECK_STR(back.id, r->id);
        CHECK(st_raw_record_hash(r, hash) == 0);
        CHECK_STR(r->content_hash, hash);
        free(buf);
        arena_release(&a);
}

static const struct st_raw_record *find(const struct civitai_page *p, const char *id)
{
        for (size_t i = 0; i < p->n_records; i++)
                if (strcmp(p->records[i].id, id) == 0)
                        return &p->records[i];
        return NULL;
}

static bool needs_images(const struct civitai_page *p, uint64_t version)
{
        for (size_t i = 0; i < p->n_need_images; i++)
                if (p->need_images[i] == version)
                        return true;
        return false;
}

/* Current shape (models.md): thumbs stats, nsfwLevel, uppercase hashes, cursor. */
static const char current_page[] =
    "{\"items\":["
    "{\"id\":827184,\"name\":\"WAI Checkpoint\",\"type\":\"Checkpoint\",\"nsfw\":false,"
    " \"modelVersions\":[{\"id\":2514310,\"name\":\"v16.0\",\"baseModel\":\"Illustrious\"}]},"
    "{\"id\":100,\"name\":\"Ink Style\",\"description\":\"<p>Ink <b>style</b></p>\","
    " \"type\":\"LORA\",\"nsfw\":false,\"nsfwLevel\":1,\"availability\":\"Public\","
    " \"stats\":{\"downloadCount\":5000,\"thumbsUpCount\":90,\"thumbsDownCount\":10},"
    " \"creator\":{\"username\":\"inker\",\"image\":null},\"tags\":[\"style\",\"ink\"],"
    " \"modelVersions\":["
    "  {\"id\":201,\"name\":\"v2\",\"baseModel\":\"SDXL 1.0\",\"baseModelType\":\"Standard\","
    "   \"description\":\"<p>v2 notes</p>\",\"publishedAt\":\"2025-12-18T09:16:12.062Z\","
    "   \"trainedWords\":[\"inkstyle\",\"sumi-e\"],\"nsfwLevel\":1,"
    "   \"stats\":{\"downloadCount\":3000,\"thumbsUpCount\":60,\"thumbsDownCount\":20},"
    "   \"files\":[{\"id\":1,\"name\":\"ink_v2.safetensors\",\"type\":\"Model\","
    "     \"sizeKB\":18432.5,\"hashes\":{\"AutoV2\":\"A5F58EB1C3\",\"SHA256\":"
    "     \"A5F58EB1C3D1E2F3A4B5C6D7E8F90123456789ABCDEF0123456789ABCDEF0123\"},"
    "     \"downloadUrl\":\"https://civitai.com/api/download/models/201\",\"primary\":true}],"
    "   \"images\":[{\"url\":\"https://image.civitai.com/x/a/width=450/1.jpeg\",\"nsfwLevel\":1,"
    "     \"meta\":{\"prompt\":\"ink drawing of a cat, inkstyle\",\"seed\":1}},"
    "     {\"url\":\"https://image.civitai.com/x/b/width=450/2.jpeg\",\"meta\":null}]},"
    "  {\"id\":200,\"name\":\"v1\",\"baseModel\":\"SD 1.5\",\"nsfwLevel\":4,"
    "   \"files\":[],\"images\":[{\"url\":\"https://image.civitai.com/x/c/3.jpeg\"}]}]},"
    "{\"id\":300,\"name\":\"Knight Armor\",\"type\":\"LoCon\",\"nsfw\":true,"
    " \"tags\":[{\"name\":\"clothing\"},{\"name\":\"armor\"},{\"id\":7}],"
    " \"modelVersions\":[{\"id\":301,\"baseModel\":\"Pony\",\"images\":["
    "   {\"url\":\"https://image.civitai.com/x/d/4.jpeg\",\"hasMeta\":false,\"meta\":null}]}]},"
    "{\"id\":400,\"name\":\"Emb\",\"type\":\"TextualInversion\",\"modelVersions\":[{\"id\":401}]}"
    "],\"metadata\":{\"nextCursor\":\"75363|932023|257749\","
    "\"nextPage\":\"https://civitai.com/api/v1/models?cursor=75363%7C932023%7C257749\"}}";

static void test_current_shape(void)
{
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};
        const struct st_raw_record *r;

        arena_init(&a, ARENA_MB);
        CHECK(parse(current_page, &a, &p, &err) == 0);
        CHECK(p.n_items == 4);
        CHECK(p.n_records == 3);
        CHECK(p.n_skipped == 2);
        CHECK(p.n_errors == 0);
        CHECK_STR(p.next_cursor, "75363|932023|257749");

        r = find(&p, "civitai:100@201");
        CHECK(r);
        CHECK_STR(r->source, "civitai");
        CHECK_STR(r->name, "Ink Style");
        CHECK_STR(r->version_name, "v2");
        CHECK_STR(r->type, "LORA");
        CHECK_STR(r->base_model, "sdxl");
        CHECK_STR(r->base_model_raw, "SDXL 1.0");
        CHECK_STR(r->card_html, "<p>Ink <b>style</b></p>\n<p>v2 notes</p>");
        CHECK_STR(r->card_url, "https://civitai.com/models/100?modelVersionId=201");
        CHECK_STR(r->creator, "inker");
        CHECK(r->tags.n == 2);
        CHECK_STR(r->tags.v[1], "ink");
        CHECK(r->trained_words.n == 2);
        CHECK_STR(r->trained_words.v[0], "inkstyle");
        CHECK(!r->nsfw);
        CHECK(r->stats.downloads == 3000); /* the version's count wins */
        CHECK(r->stats.likes == 60);
        CHECK(r->stats.rating > 3.749 && r->stats.rating < 3.751);
        CHECK(r->n_files == 1);
        CHECK_STR(r->files[0].name, "ink_v2.safetensors");
        CHECK(r->files[0].size == 18874880); /* 18432.5 KiB */
        CHECK_STR(r->files[0].sha256,
                  "a5f58eb1c3d1e2f3a4b5c6d7e8f90123456789abcdef0123456789abcdef0123");
        CHECK_STR(r->files[0].download_url, "https://civitai.com/api/download/models/201");
        CHECK(r->n_images == 2);
        CHECK_STR(r->images[0].prompt, "ink drawing of a cat, inkstyle");
        CHECK(r->images[1].prompt == NULL);
        CHECK_STR(r->created_at, "2025-12-18T09:16:12.062Z");
        CHECK_STR(r->updated_at, "2025-12-18T09:16:12.062Z");
        CHECK_STR(r->crawled_at, CRAWLED);
        CHECK(r->content_hash && strlen(r->content_hash) == 64);
        CHECK(!needs_images(&p, 201));

        r = find(&p, "civitai:100@200");
        CHECK(r);
        CHECK_STR(r->base_model, "sd15");
        CHECK(r->nsfw);                    /* nsfwLevel 4 on the version */
        CHECK(r->stats.downloads == 5000); /* no version stats: the model's */
        CHECK(r->stats.rating > 4.49 && r->stats.rating < 4.51);
        CHECK_STR(r->card_html, "<p>Ink <b>style</b></p>");
        CHECK(r->n_files == 0 && r->n_images == 1);
        CHECK(needs_images(&p, 200));

        r = find(&p, "civitai:300@301");
        CHECK(r);
        CHECK_STR(r->type, "LoCon");
        CHECK_STR(r->base_model, "pony");
        CHECK(r->nsfw);
        CHECK(r->tags.n == 2);
        CHECK_STR(r->tags.v[0], "clothing");
        CHECK(r->card_html == NULL && r->version_name == NULL && r->created_at == NULL);
        CHECK(!needs_images(&p, 301)); /* hasMeta: false, nothing to ask for */
        CHECK(p.n_need_images == 1);
        CHECK(strcmp(p.records[p.need_images_record[0]].id, "civitai:100@200") == 0);
        for (size_t i = 0; i < p.n_records; i++)
                check_roundtrip(&p.records[i]);
        arena_release(&a);
}

/* The 2023 wiki shape: rating/ratingCount, createdAt/updatedAt, paging metadata. */
static const char old_page[] =
    "{\"items\":[{\"id\":3036,\"name\":\"CharTurner\",\"description\":\"turnarounds\","
    "\"type\":\"LORA\",\"poi\":false,\"nsfw\":false,\"allowNoCredit\":true,"
    "\"creator\":{\"username\":\"mousewrites\",\"image\":null},\"tags\":[\"character\"],"
    "\"stats\":{\"downloadCount\":11000,\"favoriteCount\":900,\"commentCount\":12,"
    "\"ratingCount\":40,\"rating\":4.63},"
    "\"modelVersions\":[{\"id\":8387,\"modelId\":3036,\"name\":\"V2 - SD 2.1\","
    "\"createdAt\":\"2023-01-26T05:02:52.497Z\",\"updatedAt\":\"2023-01-27T00:00:00.000Z\","
    "\"trainedWords\":[\"A character turnaround of a\"],\"baseModel\":\"SD 2.1\","
    "\"earlyAccessTimeFrame\":0,\"description\":null,"
    "\"stats\":{\"downloadCount\":7000,\"ratingCount\":20,\"rating\":4.5},"
    "\"files\":[{\"name\":\"charturnerv2.pt\",\"id\":7870,\"sizeKB\":0.29,\"type\":\"Model\","
    "\"metadata\":{\"fp\":\"fp16\",\"size\":\"full\",\"format\":\"PickleTensor\"},"
    "\"pickleScanResult\":\"Success\",\"virusScanResult\":\"Success\","
    "\"hashes\":{\"AutoV2\":\"9A1E9C8F1B\",\"SHA256\":\"not-a-sha\",\"CRC32\":\"A1B2C3D4\"},"
    "\"downloadUrl\":\"https://civitai.com/api/download/models/8387\",\"primary\":true}],"
    "\"images\":[{\"url\":\"https://imagecache.civitai.com/xG1nkqKTMzGDvpLrqFT7WA/u/"
    "width=450/95915.jpeg\",\"nsfw\":false,\"width\":1024,\"height\":512,\"hash\":\"UBF\","
    "\"meta\":{\"prompt\":\"A character turnaround of a knight\",\"negativePrompt\":\"bad\","
    "\"seed\":1,\"steps\":20,\"sampler\":\"Euler a\",\"cfgScale\":7,\"Size\":\"1024x512\"}}]}]}],"
    "\"metadata\":{\"totalItems\":1,\"currentPage\":1,\"pageSize\":100,\"totalPages\":1,"
    "\"nextPage\":null}}";

static void test_old_shape(void)
{
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};
        const struct st_raw_record *r;

        arena_init(&a, ARENA_MB);
        CHECK(parse(old_page, &a, &p, &err) == 0);
        CHECK(p.n_records == 1 && p.n_errors == 0 && p.n_skipped == 0);
        CHECK(p.next_cursor == NULL); /* no nextCursor: last page */
        r = &p.records[0];
        CHECK_STR(r->id, "civitai:3036@8387");
        CHECK_STR(r->base_model, "sd21");
        CHECK(r->stats.downloads == 7000);
        CHECK(r->stats.likes == 0);
        CHECK(r->stats.rating > 4.49 && r->stats.rating < 4.51);
        CHECK_STR(r->card_html, "turnarounds"); /* description null: model's only */
        CHECK(r->files[0].size == 297);
        CHECK(r->files[0].sha256 == NULL); /* not 64 hex digits */
        CHECK_STR(r->created_at, "2023-01-26T05:02:52.497Z");
        CHECK_STR(r->updated_at, "2023-01-27T00:00:00.000Z");
        CHECK_STR(r->images[0].prompt, "A character turnaround of a knight");
        CHECK(p.n_need_images == 0);
        check_roundtrip(r);
        arena_release(&a);
}

/* Only ids and names are required; wrong types count as absent. */
static void test_minimal_and_malformed_items(void)
{
        static const char page[] =
            "{\"items\":["
            "{\"id\":5,\"name\":\"Bare\",\"type\":\"DoRA\",\"modelVersions\":[{\"id\":6}]},"
            "{\"id\":\"7\",\"name\":\"string "
            "id\",\"type\":\"LORA\",\"modelVersions\":[{\"id\":8}]},"
            "{\"id\":9,\"type\":\"LORA\",\"modelVersions\":[{\"id\":10}]},"
            "{\"id\":11,\"name\":\"bad parts\",\"type\":\"LORA\",\"tags\":\"x\",\"stats\":[],"
            " \"creator\":\"someone\",\"nsfw\":\"yes\",\"modelVersions\":["
            "  {\"name\":\"no id\"},{\"id\":-3},7,"
            "  "
            "{\"id\":12,\"files\":{\"name\":\"f\"},\"images\":\"none\",\"trainedWords\":[1,\"w\","
            "null],"
            "   \"baseModel\":42,\"stats\":{\"downloadCount\":-5,\"thumbsUpCount\":\"many\"}}]},"
            "{\"id\":13,\"name\":\"no versions\",\"type\":\"LORA\"},"
            "{\"id\":14,\"name\":\"versions not array\",\"type\":\"LORA\",\"modelVersions\":{}},"
            "\"not an object\",null"
            "],\"metadata\":{\"nextCursor\":12345}}";
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};
        const struct st_raw_record *r;

        arena_init(&a, ARENA_MB);
        CHECK(parse(page, &a, &p, &err) == 0);
        CHECK(p.n_items == 8);
        CHECK(p.n_records == 2);
        /* string id, no name, 3 bad versions, 2 non-objects */
        CHECK(p.n_errors == 7);
        CHECK(p.n_skipped == 2);
        CHECK_STR(p.next_cursor, "12345");

        r = find(&p, "civitai:5@6");
        CHECK(r);
        CHECK_STR(r->type, "DoRA");
        CHECK_STR(r->base_model, "other");
        CHECK(r->base_model_raw == NULL && r->creator == NULL && r->card_html == NULL);
        CHECK(r->stats.downloads == 0 && r->stats.likes == 0 && r->stats.rating == 0.0);
        CHECK(r->tags.n == 0 && r->n_files == 0 && r->n_images == 0);
        CHECK(!needs_images(&p, 6)); /* no images listed */

        r = find(&p, "civitai:11@12");
        CHECK(r);
        CHECK(!r->nsfw && r->tags.n == 0 && r->creator == NULL);
        CHECK(r->n_files == 0 && r->n_images == 0 && r->base_model_raw == NULL);
        CHECK(r->trained_words.n == 1);
        CHECK_STR(r->trained_words.v[0], "w");
        CHECK(r->stats.downloads == 0 && r->stats.likes == 0);
        for (size_t i = 0; i < p.n_records; i++)
                check_roundtrip(&p.records[i]);
        arena_release(&a);
}

static void expect_error(const char *json, size_t len, int want)
{
        struct arena a;
        struct civitai_page p;
        struct st_image *images;
        size_t n;
        struct st_error err = {0, ""};
        int rc;

        arena_init(&a, ARENA_MB);
        rc = civitai_parse_models_page(json, len, BASE, CRAWLED, &a, &p, &err);
        if (rc != want) {
                fprintf(stderr, "models page '%.40s': got %d (%s), want %d\n", json, rc, err.msg,
                        want);
                exit(1);
        }
        CHECK(err.code == want && err.msg[0]);
        CHECK(p.n_records == 0);
        rc = civitai_parse_images_page(json, len, &a, &images, &n, 10, &err);
        CHECK(rc == want && n == 0 && images == NULL);
        arena_release(&a);
}

static void test_bad_pages(void)
{
        static const char nul_inside[] = "{\"items\":[]}\0garbage";

        expect_error("", 0, ST_EPARSE);
        expect_error("{\"items\":[", 10, ST_EPARSE);
        expect_error("{\"items\":[{\"id\":1,}]}", 21, ST_EPARSE);
        expect_error("\xff\xfe{}", 4, ST_EPARSE);
        expect_error(nul_inside, sizeof(nul_inside) - 1, ST_EPARSE);
        expect_error("[]", 2, ST_ETYPE);
        expect_error("42", 2, ST_ETYPE);
        expect_error("\"items\"", 7, ST_ETYPE);
        expect_error("{}", 2, ST_ETYPE);
        expect_error("{\"items\":{}}", 12, ST_ETYPE);
        expect_error("{\"items\":\"[]\"}", 14, ST_ETYPE);
        expect_error("{\"items\":null}", 14, ST_ETYPE);
}

static char *repeat(const char *unit, size_t times)
{
        size_t ulen = strlen(unit);
        char *s = malloc(ulen * times + 1);

        CHECK(s);
        for (size_t i = 0; i < times; i++)
                memcpy(s + i * ulen, unit, ulen);
        s[ulen * times] = '\0';
        return s;
}

/* Strings past the limits: short ones vanish, text is cut on a UTF-8 boundary. */
static void test_huge_strings(void)
{
        char *long_name = repeat("n", ST_LIMIT_STRING + 10);
        char *long_desc = repeat("\xc3\xa9", ST_LIMIT_TEXT); /* 2 bytes each */
        char *many_tags = repeat("\"t\",", ST_LIMIT_ARRAY + 50);
        char *page;
        size_t cap = strlen(long_name) * 4 + strlen(long_desc) * 2 + strlen(many_tags) + 1024;
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};
        const struct st_raw_record *r;
        int len;

        page = malloc(cap);
        CHECK(page);
        len =
            snprintf(page, cap,
                     "{\"items\":["
                     "{\"id\":1,\"name\":\"%s\",\"type\":\"LORA\",\"modelVersions\":[{\"id\":2}]},"
                     "{\"id\":3,\"name\":\"ok\",\"type\":\"LORA\",\"description\":\"%s\","
                     " \"tags\":[%s\"%s\",\"last\"],"
                     " \"modelVersions\":[{\"id\":4,\"name\":\"%s\",\"description\":\"tail\","
                     "  \"images\":[{\"url\":\"%s\",\"meta\":{\"prompt\":\"p\"}},"
                     "   {\"url\":\"https://i/1.png\",\"meta\":{\"prompt\":\"%s\"}}]}]}"
                     "]}",
                     long_name, long_desc, many_tags, long_name, long_name, long_name, long_desc);
        CHECK(len > 0 && (size_t)len < cap);
        arena_init(&a, ARENA_MB);
        CHECK(civitai_parse_models_page(page, (size_t)len, BASE, CRAWLED, &a, &p, &err) == 0);
        CHECK(p.n_records == 1 && p.n_errors == 1);
        r = &p.records[0];
        CHECK(r->version_name == NULL);
        CHECK(strlen(r->card_html) < ST_LIMIT_TEXT);
        CHECK(strlen(r->card_html) % 2 == 0); /* no half "é" */
        CHECK(r->tags.n == ST_LIMIT_ARRAY);
        CHECK(r->n_images == 1); /* the image with the huge url is dropped */
        CHECK(strlen(r->images[0].prompt) < ST_LIMIT_TEXT);
        check_roundtrip(r);
        arena_release(&a);
        free(page);
        free(long_name);
        free(long_desc);
        free(many_tags);
}

/* A page of millions of tiny values is refused before jansson builds it. */
static void test_value_bomb(void)
{
        size_t n = CIVITAI_MAX_JSON_VALUES + 10;
        char *page = malloc(2 * n + 32);
        size_t len = 0;
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};

        CHECK(page);
        len += (size_t)snprintf(page, 32, "{\"items\":[");
        for (size_t i = 0; i < n; i++) {
                page[len++] = '0';
                page[len++] = ',';
        }
        page[len++] = '0';
        page[len++] = ']';
        page[len++] = '}';
        arena_init(&a, ARENA_MB);
        CHECK(civitai_parse_models_page(page, len, BASE, CRAWLED, &a, &p, &err) == ST_ETOOBIG);
        arena_release(&a);
        free(page);
}

/* A full arena is ST_ENOMEM, not a crash or a half page. */
static void test_small_arena(void)
{
        struct arena a;
        struct civitai_page p;
        struct st_error err = {0, ""};

        arena_init(&a, 2048);
        CHECK(parse(current_page, &a, &p, &err) == ST_ENOMEM);
        arena_release(&a);
}

/* Same content, same hash, whenever crawled; another prompt, another hash. */
static void test_content_hash(void)
{
        struct arena a;
        struct civitai_page p1, p2;
        struct st_error err = {0, ""};
        char *changed;

        arena_init(&a, ARENA_MB);
        CHECK(parse(current_page, &a, &p1, &err) == 0);
        CHECK(civitai_parse_models_page(current_page, strlen(current_page), BASE,
                                        "2030-01-01T00:00:00Z", &a, &p2, &err) == 0);
        CHECK_STR(p1.records[0].content_hash, p2.records[0].content_hash);
        changed = strdup(current_page);
        CHECK(changed);
        memcpy(strstr(changed, "ink drawing"), "INK", 3);
        CHECK(parse(changed, &a, &p2, &err) == 0);
        CHECK(strcmp(find(&p1, "civitai:100@201")->content_hash,
                     find(&p2, "civitai:100@201")->content_hash) != 0);
        CHECK_STR(find(&p1, "civitai:100@200")->content_hash,
                  find(&p2, "civitai:100@200")->content_hash);
        free(changed);
        arena_release(&a);
}

static void test_images_page(void)
{
        static const char page[] =
            "{\"items\":["
            "{\"id\":1,\"url\":\"https://image.civitai.com/x/1.jpeg\",\"nsfw\":false,"
            " \"nsfwLevel\":\"None\",\"browsingLevel\":1,\"modelVersionIds\":[201],"
            " \"meta\":{\"prompt\":\"a castle, <lora:castle:0.7>\",\"civitaiResources\":[]}},"
            "{\"id\":2,\"url\":\"https://image.civitai.com/x/2.jpeg\",\"meta\":null},"
            "{\"id\":3,\"url\":\"https://image.civitai.com/x/3.jpeg\"},"
            "{\"id\":4,\"meta\":{\"prompt\":\"no url\"}},"
            "{\"id\":5,\"url\":\"https://image.civitai.com/x/5.jpeg\",\"meta\":{\"prompt\":\"\"}},"
            "{\"id\":6,\"url\":\"https://image.civitai.com/x/6.jpeg\",\"meta\":{\"prompt\":7}},"
            "{\"id\":7,\"url\":\"https://image.civitai.com/x/7.jpeg\",\"meta\":{\"prompt\":\"b\"}},"
            "{\"id\":8,\"url\":\"https://image.civitai.com/x/8.jpeg\",\"meta\":{\"prompt\":\"c\"}}"
            "],\"metadata\":{\"nextCursor\":\"1|1744925337225\"}}";
        struct arena a;
        struct st_image *images;
        size_t n;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(civitai_parse_images_page(page, strlen(page), &a, &images, &n, 10, &err) == 0);
        CHECK(n == 3);
        CHECK_STR(images[0].url, "https://image.civitai.com/x/1.jpeg");
        CHECK_STR(images[0].prompt, "a castle, <lora:castle:0.7>");
        CHECK(images[0].sha256 == NULL);
        CHECK_STR(images[2].prompt, "c");
        CHECK(civitai_parse_images_page(page, strlen(page), &a, &images, &n, 2, &err) == 0);
        CHECK(n == 2);
        CHECK_STR(images[1].prompt, "b");
        CHECK(civitai_parse_images_page("{\"items\":[]}", 12, &a, &images, &n, 10, &err) == 0);
        CHECK(n == 0);
        arena_release(&a);
}

static void test_urls(void)
{
        struct arena a;

        arena_init(&a, 1 << 20);
        CHECK_STR(civitai_models_url(&a, "https://civitai.com/", NULL, 0),
                  "https://civitai.com/api/v1/models?limit=100&types=LORA&types=LoCon"
                  "&types=DoRA&nsfw=true&sort=Newest");
        CHECK_STR(civitai_models_url(&a, "http://127.0.0.1:8080", "75363|932023|257749", 20),
                  "http://127.0.0.1:8080/api/v1/models?limit=20&types=LORA&types=LoCon"
                  "&types=DoRA&nsfw=true&sort=Newest&cursor=75363%7C932023%7C257749");
        CHECK_STR(civitai_models_url(&a, "https://civitai.com", "a b&c=d/é", 500),
                  "https://civitai.com/api/v1/models?limit=100&types=LORA&types=LoCon"
                  "&types=DoRA&nsfw=true&sort=Newest&cursor=a%20b%26c%3Dd%2F%C3%A9");
        CHECK_STR(civitai_images_url(&a, "https://civitai.com//", 2514310),
                  "https://civitai.com/api/v1/images?modelVersionId=2514310&limit=10");
        arena_release(&a);
}

/* ---- full crawl of the fixture server ---- */

struct server {
        pid_t pid;
        char base[64];
        char port_file[64];
};

static void start_server(struct server *s)
{
        const char *fixtures = getenv("STYLUS_FIXTURES");
        char script[1024];
        struct timespec pause = {0, 50 * 1000 * 1000};
        int port = 0;

        CHECK(fixtures);
        snprintf(script, sizeof(script), "%s/server.py", fixtures);
        CHECK(access(script, R_OK) == 0);
        snprintf(s->port_file, sizeof(s->port_file), "/tmp/test_civitai.%d.port", (int)getpid());
        unlink(s->port_file);
        s->pid = fork();
        CHECK(s->pid >= 0);
        if (s->pid == 0) {
                int quiet = open("/dev/null", O_WRONLY);

                prctl(PR_SET_PDEATHSIG, SIGTERM); /* even if this test dies by a signal */
                if (quiet >= 0)
                        dup2(quiet, 1);
                /* Two requests at most in flight, a little latency so they overlap, and faults. */
                execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file",
                      s->port_file, "--max-per-host-check", "2", "--latency-ms", "5", "--fault",
                      "500:9", "--fault", "429:41", (char *)NULL);
                _exit(127);
        }
        for (int i = 0; i < 200 && port <= 0; i++) {
                FILE *f = fopen(s->port_file, "r");

                if (f) {
                        if (fscanf(f, "%d", &port) != 1)
                                port = 0;
                        fclose(f);
                }
                if (port <= 0)
                        nanosleep(&pause, NULL);
        }
        if (port <= 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                fprintf(stderr, "fixture server wrote no port\n");
                exit(1);
        }
        snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", port);
}

static void stop_server(struct server *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
        unlink(s->port_file);
}

static struct server fixture;

static void stop_fixture_at_exit(void)
{
        stop_server(&fixture);
}

static json_t *get_json(struct fetcher *f, const char *u)
{
        struct fetch_request r = {.url = u, .content_type = "application/json"};
        json_t *j;

        CHECK(fetcher_run(f, &r, 1) == 0 && r.result.error.code == 0);
        j = json_loadb(r.result.body, r.result.body_len, 0, NULL);
        CHECK(j);
        fetch_request_release(&r);
        return j;
}

/* The fixture catalog's answer key (tests/fixtures/truth.json). */
static json_t *load_truth(void)
{
        char path[1024];
        json_t *truth;

        snprintf(path, sizeof(path), "%s/truth.json", getenv("STYLUS_FIXTURES"));
        truth = json_load_file(path, 0, NULL);
        CHECK(truth);
        return truth;
}

static size_t truth_count(const json_t *truth, const char *key)
{
        json_int_t n = json_integer_value(json_object_get(json_object_get(truth, "counts"), key));

        CHECK(n > 0);
        return (size_t)n;
}

/* A crawled record agrees with what the fixture generator says it published. */
static void check_against_truth(const json_t *truth, const struct st_raw_record *r)
{
        const json_t *t = json_object_get(json_object_get(truth, "adapters"), r->id);
        const char *sha;

        if (!t) {
                fprintf(stderr, "%s is not in truth.json\n", r->id);
                exit(1);
        }
        CHECK(json_is_true(json_object_get(t, "eligible")));
        CHECK_STR(r->name, json_string_value(json_object_get(t, "name")));
        CHECK_STR(r->version_name, json_string_value(json_object_get(t, "version_name")));
        CHECK_STR(r->type, json_string_value(json_object_get(t, "type")));
        CHECK_STR(r->base_model, json_string_value(json_object_get(t, "base_model")));
        CHECK_STR(r->base_model_raw, json_string_value(json_object_get(t, "base_model_raw")));
        CHECK(r->nsfw == json_is_true(json_object_get(t, "nsfw")));
        sha = json_string_value(json_object_get(t, "sha256"));
        CHECK(sha && r->n_files > 0 && r->files[0].sha256);
        CHECK(strcasecmp(r->files[0].sha256, sha) == 0);
}

/* The server saw at most two requests at once and our User-Agent on each. */
static void check_server_stats(struct fetcher *f, const char *user_agent)
{
        char u[128];
        json_t *stats, *status;

        snprintf(u, sizeof(u), "%s/__stats", fixture.base);
        stats = get_json(f, u);
        status = json_object_get(stats, "by_status");
        printf("server: %lld requests, max %lld at once, %lld 500s, %lld 429s\n",
               (long long)json_integer_value(json_object_get(stats, "requests_total")),
               (long long)json_integer_value(json_object_get(stats, "max_concurrent_requests")),
               (long long)json_integer_value(json_object_get(status, "500")),
               (long long)json_integer_value(json_object_get(status, "429")));
        CHECK(json_integer_value(json_object_get(stats, "per_host_violations")) == 0);
        CHECK(json_integer_value(json_object_get(stats, "max_concurrent_requests")) <= 2);
        CHECK(json_integer_value(json_object_get(status, "500")) > 0); /* faults were retried */
        CHECK(json_integer_value(json_object_get(status, "429")) > 0);
        CHECK(json_object_size(json_object_get(stats, "user_agents")) == 1);
        CHECK(json_object_get(json_object_get(stats, "user_agents"), user_agent));
        json_decref(stats);
}

static void test_full_crawl(void)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct civitai_source src = {NULL, NULL, 0, NULL};
        struct st_error err = {0, ""};
        struct arena a;
        json_t *truth = load_truth();
        char **ids = NULL, *cursor = NULL;
        size_t n_ids = 0, pages = 0, filled = 0, needed = 0, prompted = 0;

        start_server(&fixture);
        atexit(stop_fixture_at_exit);
        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = 0;
        cfg.max_per_host = 2;
        cfg.retry_base_ms = 20;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        src.base_url = fixture.base;
        src.page_limit = 7; /* several pages even from a small fixture catalog */
        do {
                struct civitai_page p;
                int rc;

                arena_init(&a, ARENA_MB);
                rc = civitai_crawl_page(f, &src, cursor, CRAWL_PASS_FULL, &a, &p, &err);
                if (rc) {
                        fprintf(stderr, "crawl page %zu: %s\n", pages, st_error_text(&err, rc));
                        exit(1);
                }
                pages++;
                CHECK(p.n_errors == 0);
                needed += p.n_need_images;
                filled += p.n_images_filled;
                for (size_t i = 0; i < p.n_need_images; i++) {
                        const struct st_raw_record *r = &p.records[p.need_images_record[i]];

                        CHECK(r->n_images > 0 && r->images[0].prompt); /* from /api/v1/images */
                }
                for (size_t i = 0; i < p.n_records; i++) {
                        const struct st_raw_record *r = &p.records[i];
                        bool has_prompt = false;

                        CHECK(strcmp(r->type, "Checkpoint") != 0);
                        CHECK(strcmp(r->type, "TextualInversion") != 0);
                        CHECK(strncmp(r->id, "civitai:", 8) == 0);
                        CHECK(strncmp(r->card_url, fixture.base, strlen(fixture.base)) == 0);
                        for (size_t k = 0; k < r->n_images; k++)
                                has_prompt |= r->images[k].prompt != NULL;
                        prompted += has_prompt;
                        check_roundtrip(r);
                        check_against_truth(truth, r);
                        ids = realloc(ids, (n_ids + 1) * sizeof(*ids));
                        CHECK(ids);
                        ids[n_ids] = strdup(r->id);
                        CHECK(ids[n_ids]);
                        for (size_t k = 0; k < n_ids; k++)
                                CHECK(strcmp(ids[k], ids[n_ids]) != 0);
                        n_ids++;
                }
                free(cursor);
                cursor = p.next_cursor ? strdup(p.next_cursor) : NULL;
                arena_release(&a);
                CHECK(pages < 10000);
        } while (cursor);
        printf("full crawl: %zu pages, %zu records, %zu need the images API, %zu filled, "
               "%zu with prompts\n",
               pages, n_ids, needed, filled, prompted);
        CHECK(pages > 1);
        CHECK(n_ids == truth_count(truth, "eligible_adapters"));
        /* gen_fixtures.py: a listed image with hasMeta has its prompt in the images API. */
        CHECK(needed > 0 && filled == needed);
        check_server_stats(f, cfg.user_agent);
        json_decref(truth);
        for (size_t k = 0; k < n_ids; k++)
                free(ids[k]);
        free(ids);
        fetcher_destroy(&f);
        stop_server(&fixture);
}

static int compare_strings(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Ids of a page's records, malloc'd copies (sorted), so they outlive its arena. */
static char **copy_ids(char *const *ids, size_t n)
{
        char **out = calloc(n + 1, sizeof(*out));

        CHECK(out);
        for (size_t i = 0; i < n; i++)
                CHECK((out[i] = strdup(ids[i])));
        qsort(out, n, sizeof(*out), compare_strings);
        return out;
}

static void free_ids(char **ids, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(ids[i]);
        free(ids);
}

/*
 * With a validator cache and a server that sends validators: the same page
 * again is a 304 that stands for the same ids and cursor, and an incremental
 * pass stops there.  Then check jobs: a present id comes back as a record,
 * a deleted model and a missing version are gone, malformed ids are refused.
 */
static void test_cache_and_check(void)
{
        static const char *const args[] = {"--validators", "--max-per-host-check", "2", NULL};
        struct fixture_server server;
        struct validator_cache *cache = NULL;
        struct civitai_source src = {NULL, NULL, 20, NULL};
        struct st_error err = {0, ""};
        struct civitai_page p;
        struct driver_check found;
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        char dir[128], *next, **first_ids, *check[3], missing_version[64];
        size_t n_first;
        struct arena a;

        fixture_server_start(&server, "test_civitai_cache", args);
        snprintf(dir, sizeof(dir), "/tmp/test_civitai_cache.%d", (int)getpid());
        CHECK(validator_cache_open(dir, &cache, &err) == 0);
        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = 0;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        src.base_url = server.base;
        src.cache = cache;

        arena_init(&a, ARENA_MB);
        CHECK(civitai_crawl_page(f, &src, NULL, CRAWL_PASS_FULL, &a, &p, &err) == 0);
        CHECK(!p.not_modified && p.n_records > 0 && p.n_unchanged == 0 && !p.stop);
        n_first = p.n_records;
        {
                char **page_ids = calloc(n_first, sizeof(*page_ids));

                CHECK(page_ids);
                for (size_t i = 0; i < n_first; i++)
                        page_ids[i] = p.records[i].id;
                first_ids = copy_ids(page_ids, n_first);
                free(page_ids);
        }
        next = strdup(p.next_cursor);
        arena_release(&a);

        /* Again, as an incremental pass: 304, the same ids and cursor, and stop. */
        CHECK(civitai_crawl_page(f, &src, NULL, CRAWL_PASS_INCREMENTAL, &a, &p, &err) == 0);
        CHECK(p.not_modified && p.n_records == 0 && p.n_unchanged == n_first && p.stop);
        CHECK(p.next_cursor && strcmp(p.next_cursor, next) == 0);
        {
                char **again = copy_ids(p.unchanged, p.n_unchanged);

                for (size_t i = 0; i < n_first; i++)
                        CHECK(strcmp(again[i], first_ids[i]) == 0);
                free_ids(again, n_first);
        }
        arena_release(&a);

        /* Checks. */
        snprintf(missing_version, sizeof(missing_version), "%.*s@999999999",
                 (int)strcspn(first_ids[0], "@"), first_ids[0]);
        check[0] = first_ids[0];
        check[1] = "civitai:1@1"; /* no model 1 */
        check[2] = missing_version;
        CHECK(civitai_check(f, &src, check, 3, &a, &found, &err) == 0);
        CHECK(found.n_records == 1 && strcmp(found.records[0].id, first_ids[0]) == 0);
        check_roundtrip(&found.records[0]);
        CHECK(found.n_gone == 2 && found.n_unverified == 0);
        CHECK(strcmp(found.gone[0], "civitai:1@1") == 0);
        CHECK(strcmp(found.gone[1], missing_version) == 0);
        arena_release(&a);
        {
                static char *const bad[] = {"hf:a/b@c", "civitai:1@", "civitai:0@1", "civitai:1@2x",
                                            "civitai:99999999999999999999@1"};

                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        CHECK(civitai_check(f, &src, &bad[i], 1, &a, &found, &err) == ST_EINVAL);
                        CHECK(strstr(err.msg, bad[i]));
                        arena_release(&a);
                }
                CHECK(civitai_check(f, &src, check, 0, &a, &found, &err) == ST_EINVAL);
                CHECK(civitai_check(f, &src, check, DRIVER_MAX_CHECK_IDS + 1, &a, &found, &err) ==
                      ST_EINVAL);
        }
        free_ids(first_ids, n_first);
        free(next);
        fetcher_destroy(&f);
        validator_cache_destroy(&cache);
        fixture_server_stop(&server);
        {
                char cmd[200];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
                CHECK(system(cmd) == 0);
        }
}

/* A /model-versions answer in the documented shape (model-versions.md), trimmed. */
static const char version_answer[] =
    "{\"id\":850029,\"modelId\":537253,\"name\":\"v1.5\",\"baseModel\":\"SD 1.5\","
    "\"air\":\"urn:air:sd1:lora:civitai:537253@850029\",\"status\":\"Published\","
    "\"trainedWords\":[\"corgi\"],\"stats\":{\"downloadCount\":12},"
    "\"model\":{\"name\":\"Corgi Dog [reupload]\",\"type\":\"LORA\",\"nsfw\":false,\"poi\":false},"
    "\"files\":[{\"id\":1,\"name\":\"CorgiDog_v10.safetensors\",\"primary\":true,"
    "\"hashes\":{\"SHA256\":\"A9278A905F55535311577BBD7311A22B340724F5B39C43C40F64811E81782A8B\"}}]"
    ","
    "\"images\":[],\"downloadUrl\":\"https://civitai.com/api/download/models/850029\"}";

static void expect_version_error(const char *json, size_t len, int want)
{
        struct st_error err = {0, ""};
        struct arena a;
        char *id = (char *)"untouched";
        int rc;

        arena_init(&a, ARENA_MB);
        rc = civitai_parse_version(json, len, &a, &id, &err);
        if (rc != want) {
                fprintf(stderr, "version '%.40s': got %d (%s), want %d\n", json, rc, err.msg, want);
                exit(1);
        }
        CHECK(err.code == want && err.msg[0] && id == NULL);
        arena_release(&a);
}

/* The model-version parser: id and modelId, nothing else matters; anything odd is an error. */
static void test_parse_version(void)
{
        static const char *const bad_ids[] = {
            "{}",
            "{\"id\":850029}",
            "{\"modelId\":537253}",
            "{\"id\":\"850029\",\"modelId\":537253}",
            "{\"id\":850029,\"modelId\":null}",
            "{\"id\":850029.5,\"modelId\":537253}",
            "{\"id\":0,\"modelId\":537253}",
            "{\"id\":850029,\"modelId\":-1}",
            "{\"error\":\"Model not found\"}",
        };
        struct st_error err = {0, ""};
        struct arena a;
        char *id = NULL, *bomb;

        arena_init(&a, ARENA_MB);
        CHECK(civitai_parse_version(version_answer, strlen(version_answer), &a, &id, &err) == 0);
        CHECK_STR(id, "civitai:537253@850029");
        CHECK(civitai_parse_version("{\"modelId\":1,\"id\":9223372036854775807}", 38, &a, &id,
                                    &err) == 0);
        CHECK_STR(id, "civitai:1@9223372036854775807");
        arena_release(&a);
        for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
                expect_version_error(bad_ids[i], strlen(bad_ids[i]), ST_ETYPE);
        expect_version_error("[]", 2, ST_ETYPE);
        expect_version_error("42", 2, ST_ETYPE);
        expect_version_error("", 0, ST_EPARSE);
        expect_version_error(version_answer, strlen(version_answer) / 2, ST_EPARSE);
        expect_version_error("{\"id\":1,\"modelId\":99999999999999999999}", 38, ST_EPARSE);
        bomb = repeat("[", CIVITAI_VERSION_MAX_JSON_VALUES + 1);
        expect_version_error(bomb, strlen(bomb), ST_ETOOBIG);
        free(bomb);
        CHECK(civitai_by_hash_url(&a, "https://civitai.com/", "abc") != NULL);
        CHECK_STR(civitai_by_hash_url(&a, "https://civitai.com/", "abc"),
                  "https://civitai.com/api/v1/model-versions/by-hash/abc");
        arena_release(&a);
}

static long long stat_of(struct fetcher *f, const char *base, const char *group, const char *key)
{
        char u[128];
        json_t *stats;
        long long n;

        snprintf(u, sizeof(u), "%s/__stats", base);
        stats = get_json(f, u);
        n = json_integer_value(json_object_get(json_object_get(stats, group), key));
        json_decref(stats);
        return n;
}

/* 64 times c, for hashes the fixture server's faults pick out by their first digit. */
static void fill_hash(char out[65], char c)
{
        memset(out, c, 64);
        out[64] = '\0';
}

static void lowercase_hash(char out[65], const char *sha)
{
        for (int i = 0; i < 65; i++)
                out[i] = (char)(sha[i] >= 'A' && sha[i] <= 'F' ? sha[i] - 'A' + 'a' : sha[i]);
}

/*
 * By-hash against the fixture server: the re-upload's SHA256 (truth.json
 * duplicate_of) resolves to the original, in either case; an unknown hash
 * is NULL; a hash given twice is asked once; malformed hashes fail before
 * any request; a 5xx after the retries and a broken answer fail the call.
 * The server's faults hit only hashes that start with 5 (500) or b (cut
 * JSON; a known hash, sent in lowercase, so the cut answer is a 200).
 */
static void test_resolve_hashes(void)
{
        static const char *const args[] = {"--fault", "500:1:/api/v1/model-versions/by-hash/5",
                                           "--fault", "badjson:1:/api/v1/model-versions/by-hash/b",
                                           NULL};
        const char *dup_id = NULL, *original = NULL, *dup_sha = NULL, *key;
        char lower[65], unknown[65], five[65], bee[65] = "", *hashes[5], *ids[5];
        char *bad[5];
        struct fixture_server server;
        struct civitai_source src = {NULL, NULL, 0, NULL};
        struct st_error err = {0, ""};
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        json_t *truth = load_truth(), *t;
        struct arena a;
        long long asked;

        json_object_foreach(json_object_get(truth, "adapters"), key, t)
        {
                const char *sha = json_string_value(json_object_get(t, "sha256"));

                if (sha && sha[0] == 'B' && strlen(sha) == 64) /* an existing hash: a 200 */
                        lowercase_hash(bee, sha);
                if (json_is_string(json_object_get(t, "duplicate_of"))) {
                        dup_id = key;
                        original = json_string_value(json_object_get(t, "duplicate_of"));
                        dup_sha = json_string_value(json_object_get(t, "sha256"));
                }
        }
        CHECK(dup_id && original && dup_sha && strlen(dup_sha) == 64);
        CHECK(bee[0] == 'b');
        lowercase_hash(lower, dup_sha);
        fill_hash(unknown, '0');
        fill_hash(five, '5');
        fixture_server_start(&server, "test_civitai_by_hash", args);
        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = 0;
        cfg.retry_base_ms = 20;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        src.base_url = server.base;
        arena_init(&a, ARENA_MB);

        hashes[0] = (char *)dup_sha;
        hashes[1] = lower;
        hashes[2] = unknown;
        hashes[3] = (char *)dup_sha;
        CHECK(civitai_resolve_hashes(f, &src, hashes, 4, &a, ids, &err) == 0);
        CHECK_STR(ids[0], original); /* the fixture answers with the older upload */
        CHECK_STR(ids[1], original);
        CHECK(ids[2] == NULL);
        CHECK_STR(ids[3], original);
        asked = stat_of(f, server.base, "by_prefix", "/api/v1/model-versions");
        CHECK(asked == 3); /* dup_sha once */
        printf("by-hash: %s -> %s (the re-upload %s), unknown -> nil, %lld requests\n", dup_sha,
               ids[0], dup_id, asked);
        arena_release(&a);

        /* Malformed hashes and counts fail before any request. */
        lower[63] = '\0';
        bad[0] = "not-a-hash";
        bad[1] = lower; /* 63 digits */
        bad[2] = "g000000000000000000000000000000000000000000000000000000000000000";
        bad[3] = "../../models/1";
        bad[4] = "a9278a905f55535311577bbd7311a22b340724f5b39c43c40f64811e81782a8b0";
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char *one[2] = {unknown, bad[i]};

                CHECK(civitai_resolve_hashes(f, &src, one, 2, &a, ids, &err) == ST_EINVAL);
                CHECK(strstr(err.msg, bad[i]) && strstr(err.msg, "SHA256"));
                arena_release(&a);
        }
        CHECK(civitai_resolve_hashes(f, &src, hashes, 0, &a, ids, &err) == ST_EINVAL);
        CHECK(civitai_resolve_hashes(f, &src, hashes, CIVITAI_MAX_HASHES + 1, &a, ids, &err) ==
              ST_EINVAL);
        CHECK(stat_of(f, server.base, "by_prefix", "/api/v1/model-versions") == asked);

        /* A 500 after the retries, and a 200 with broken JSON, fail the whole call. */
        hashes[0] = (char *)dup_sha;
        hashes[1] = five;
        CHECK(civitai_resolve_hashes(f, &src, hashes, 2, &a, ids, &err) == ST_EHTTP);
        CHECK(strstr(err.msg, five) && strstr(err.msg, "500"));
        arena_release(&a);
        hashes[1] = bee;
        CHECK(civitai_resolve_hashes(f, &src, hashes, 2, &a, ids, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, bee) && strstr(err.msg, "by-hash"));
        arena_release(&a);
        CHECK(stat_of(f, server.base, "faults_injected", "500") == 1 + (long long)cfg.max_retries);

        fetcher_destroy(&f);
        fixture_server_stop(&server);
        json_decref(truth);
}

int main(void)
{
        log_setup("test", LOG_ERROR);
        test_urls();
        test_current_shape();
        test_old_shape();
        test_minimal_and_malformed_items();
        test_bad_pages();
        test_huge_strings();
        test_value_bomb();
        test_small_arena();
        test_content_hash();
        test_images_page();
        test_full_crawl();
        test_cache_and_check();
        test_parse_version();
        test_resolve_hashes();
        printf("test_civitai: ok\n");
        return 0;
}
