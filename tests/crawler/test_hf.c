/*
 * test_hf.c - the Hugging Face driver: listing pages and model cards in the
 * Hub's real shapes, hostile cards (YAML bombs, non-UTF-8, oversize), and
 * full crawls of the fixture server's HF part (tests/fixtures/server.py,
 * started here on a loopback port it picks and stopped by pid).
 */
#include "crawler/hf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define BASE     "https://huggingface.co"
#define CRAWLED  "2026-01-02T03:04:05Z"
#define ARENA_MB (64u << 20)
#define SHA_A    "d13cdc5961fef413b0535b4c36b8660e95e458ed"
#define SHA_B    "9966660ece7f5708db8cef8c681942c5aef02638"
#define LFS_SHA  "A5F58EB1C3D1E2F3A4B5C6D7E8F90123456789ABCDEF0123456789ABCDEF0123"

/* Every record must survive the msgpack codec with the hash it carries: that is what ships. */
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

static size_t find(const struct hf_page *p, const char *id)
{
        for (size_t i = 0; i < p->n_records; i++)
                if (strcmp(p->records[i].id, id) == 0)
                        return i;
        fprintf(stderr, "%s not on the page\n", id);
        exit(1);
}

static int parse_card(const char *md, struct arena *a, struct hf_card *card, struct st_error *err)
{
        return hf_parse_card(md, strlen(md), a, card, err);
}

/* ---- listing pages ---- */

/* full=true items as the Hub sends them, plus every way an item can be unusable. */
static const char listing[] =
    "["
    "{\"_id\":\"66b\",\"id\":\"alice/ink-sdxl-lora\",\"author\":\"alice\",\"sha\":\"" SHA_A "\","
    " \"lastModified\":\"2024-08-13T19:41:10.000Z\",\"private\":false,\"gated\":false,"
    " \"disabled\":false,\"downloads\":18234,\"likes\":212,\"trendingScore\":2,"
    " \"tags\":[\"text-to-image\",\"lora\",\"base_model:stabilityai/stable-diffusion-xl-base-1.0\","
    "  \"base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0\",\"license:openrail++\","
    "  \"region:us\"],"
    " \"pipeline_tag\":\"text-to-image\",\"library_name\":\"diffusers\","
    " \"createdAt\":\"2024-02-11T22:51:05.000Z\","
    " \"siblings\":[{\"rfilename\":\".gitattributes\"},{\"rfilename\":\"README.md\"},"
    "  {\"rfilename\":\"image_0.png\"},"
    "  {\"rfilename\":\"ink lora.safetensors\",\"size\":1234,"
    "   \"lfs\":{\"sha256\":\"" LFS_SHA "\",\"size\":1234}},"
    "  {\"rfilename\":\"ckpt/step 500.SafeTensors\"},{\"rfilename\":\"../evil.safetensors\"},"
    "  {\"rfilename\":\"a//b.safetensors\"},{\"rfilename\":7}]},"
    "{\"id\":\"gate/keeper-lora\",\"sha\":\"" SHA_B "\",\"gated\":\"auto\",\"tags\":[\"lora\"],"
    " \"siblings\":[{\"rfilename\":\"README.md\"},{\"rfilename\":\"w.safetensors\"}]},"
    "{\"id\":\"gate/manual-lora\",\"sha\":\"" SHA_B "\",\"gated\":\"manual\",\"tags\":[],"
    " \"siblings\":[{\"rfilename\":\"w.safetensors\"}]},"
    "{\"id\":\"gone/disabled-lora\",\"sha\":\"" SHA_B "\",\"disabled\":true,\"tags\":[\"lora\"]},"
    "{\"id\":\"priv/secret-lora\",\"sha\":\"" SHA_B "\",\"private\":true,\"tags\":[\"lora\"]},"
    "{\"id\":\"bin/only-bin-lora\",\"sha\":\"" SHA_B "\",\"tags\":[\"lora\"],"
    " \"siblings\":[{\"rfilename\":\"README.md\"},{\"rfilename\":\"pytorch_lora_weights.bin\"}]},"
    "{\"id\":\"noreadme/x_lora\",\"sha\":\"" SHA_B "\",\"downloads\":-5,\"likes\":\"many\","
    " \"tags\":[\"not-for-all-audiences\",\"base_model:finetune:foo/bar\"],"
    " \"siblings\":[{\"rfilename\":\"w.safetensors\"}]},"
    "{\"id\":\"bad id/x\",\"sha\":\"" SHA_B "\"},"
    "{\"id\":\"../x\",\"sha\":\"" SHA_B "\"},"
    "{\"id\":\"noslash\",\"sha\":\"" SHA_B "\"},"
    "{\"id\":\"u/nosha\"},"
    "{\"id\":\"u/shortsha\",\"sha\":\"abc\"},"
    "\"a string\",null,42"
    "]";

static void test_listing_tag(void)
{
        struct arena a;
        struct hf_page p;
        struct st_error err = {0, ""};
        const struct st_raw_record *r;
        const struct hf_repo *repo;
        size_t i;

        arena_init(&a, ARENA_MB);
        CHECK(hf_parse_models_page(listing, strlen(listing), BASE "/", HF_LISTING_LORA_TAG, CRAWLED,
                                   &a, &p, &err) == 0);
        CHECK(p.n_items == 15);
        CHECK(p.n_records == 2);
        CHECK(p.n_skipped == 1); /* only a .bin */
        CHECK(p.n_errors == 8);  /* 5 bad ids or shas, 3 non-objects */
        CHECK(p.next_cursor == NULL);
        CHECK(p.n_skipped_gated == 4);
        CHECK_STR(p.skipped[0].repo_id, "gate/keeper-lora");
        CHECK_STR(p.skipped[0].reason, "gated:auto");
        CHECK_STR(p.skipped[1].reason, "gated:manual");
        CHECK_STR(p.skipped[2].repo_id, "gone/disabled-lora");
        CHECK_STR(p.skipped[2].reason, "disabled");
        CHECK_STR(p.skipped[3].reason, "private");

        i = find(&p, "hf:alice/ink-sdxl-lora@" SHA_A);
        r = &p.records[i];
        repo = &p.repos[i];
        CHECK_STR(repo->repo_id, "alice/ink-sdxl-lora");
        CHECK_STR(repo->sha, SHA_A);
        CHECK_STR(repo->readme_url, BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/README.md");
        CHECK(repo->lora_tagged);
        CHECK_STR(r->source, "hf");
        CHECK_STR(r->name, "Ink Sdxl LoRA");
        CHECK(r->version_name == NULL);
        CHECK_STR(r->type, "LORA");
        CHECK_STR(r->base_model, "sdxl");
        CHECK_STR(r->base_model_raw, "stabilityai/stable-diffusion-xl-base-1.0");
        CHECK(r->card_html == NULL);
        CHECK_STR(r->card_url, BASE "/alice/ink-sdxl-lora");
        CHECK_STR(r->creator, "alice");
        CHECK(r->tags.n == 3); /* base_model:* and region:* left out */
        CHECK_STR(r->tags.v[0], "text-to-image");
        CHECK_STR(r->tags.v[2], "license:openrail++");
        CHECK(r->trained_words.n == 0);
        CHECK(!r->nsfw);
        CHECK(r->stats.downloads == 18234 && r->stats.likes == 212 && r->stats.rating == 0.0);
        CHECK(r->n_files == 2);
        CHECK_STR(r->files[0].name, "ink lora.safetensors");
        CHECK_STR(r->files[0].download_url,
                  BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/ink%20lora.safetensors");
        CHECK(r->files[0].size == 1234);
        CHECK_STR(r->files[0].sha256,
                  "a5f58eb1c3d1e2f3a4b5c6d7e8f90123456789abcdef0123456789abcdef0123");
        CHECK_STR(r->files[1].download_url,
                  BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/ckpt/step%20500.SafeTensors");
        CHECK(r->files[1].size == 0 && r->files[1].sha256 == NULL);
        CHECK(r->n_images == 1);
        CHECK_STR(r->images[0].url, BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/image_0.png");
        CHECK(r->images[0].prompt == NULL);
        CHECK_STR(r->created_at, "2024-02-11T22:51:05.000Z");
        CHECK_STR(r->updated_at, "2024-08-13T19:41:10.000Z");
        CHECK_STR(r->crawled_at, CRAWLED);
        check_roundtrip(r);

        i = find(&p, "hf:noreadme/x_lora@" SHA_B);
        r = &p.records[i];
        CHECK(p.repos[i].readme_url == NULL && !p.repos[i].lora_tagged);
        CHECK_STR(r->name, "X LoRA");
        CHECK_STR(r->creator, "noreadme"); /* no author: the id's user */
        CHECK(r->nsfw);
        CHECK_STR(r->base_model, "other"); /* a finetune tag is not the adapter's base */
        CHECK(r->base_model_raw == NULL);
        CHECK(r->stats.downloads == 0 && r->stats.likes == 0);
        CHECK(r->n_images == 0 && r->n_files == 1);
        check_roundtrip(r);
        arena_release(&a);
}

/* Listing 2 keeps only what listing 1 cannot see: repos without the lora tag. */
static void test_listing_name(void)
{
        struct arena a;
        struct hf_page p;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(hf_parse_models_page(listing, strlen(listing), BASE, HF_LISTING_LORA_NAME, CRAWLED,
                                   &a, &p, &err) == 0);
        CHECK(p.n_records == 1);
        CHECK_STR(p.records[0].id, "hf:noreadme/x_lora@" SHA_B);
        CHECK(p.n_skipped == 5); /* alice, keeper, disabled, private, bin: all tagged lora */
        CHECK(p.n_skipped_gated == 1);
        CHECK_STR(p.skipped[0].repo_id, "gate/manual-lora");
        CHECK(p.n_errors == 8);
        arena_release(&a);
}

static void expect_page_error(const char *json, size_t len, int want)
{
        struct arena a;
        struct hf_page p;
        struct st_error err = {0, ""};
        int rc;

        arena_init(&a, ARENA_MB);
        rc = hf_parse_models_page(json, len, BASE, HF_LISTING_LORA_TAG, CRAWLED, &a, &p, &err);
        if (rc != want) {
                fprintf(stderr, "page '%.40s': got %d (%s), want %d\n", json, rc, err.msg, want);
                exit(1);
        }
        CHECK(err.code == want && err.msg[0]);
        CHECK(p.n_records == 0);
        arena_release(&a);
}

static void test_bad_pages(void)
{
        size_t n = HF_MAX_JSON_VALUES + 10, len = 0;
        char *bomb = malloc(2 * n + 8);
        struct arena a;
        struct hf_page p;
        struct st_error err = {0, ""};

        expect_page_error("", 0, ST_EPARSE);
        expect_page_error("[{\"id\":", 7, ST_EPARSE);
        expect_page_error("\xff\xfe[]", 4, ST_EPARSE);
        expect_page_error("{}", 2, ST_ETYPE);
        expect_page_error("{\"items\":[]}", 12, ST_ETYPE);
        expect_page_error("\"x\"", 3, ST_ETYPE);
        CHECK(bomb);
        bomb[len++] = '[';
        for (size_t i = 0; i < n; i++) {
                bomb[len++] = '0';
                bomb[len++] = ',';
        }
        bomb[len++] = '0';
        bomb[len++] = ']';
        expect_page_error(bomb, len, ST_ETOOBIG);
        free(bomb);
        arena_init(&a, ARENA_MB);
        CHECK(hf_parse_models_page("[]", 2, BASE, HF_LISTING_LORA_TAG, CRAWLED, &a, &p, &err) == 0);
        CHECK(p.n_items == 0 && p.n_records == 0);
        arena_release(&a);
        arena_init(&a, 2048);
        CHECK(hf_parse_models_page(listing, strlen(listing), BASE, HF_LISTING_LORA_TAG, CRAWLED, &a,
                                   &p, &err) == ST_ENOMEM);
        arena_release(&a);
}

static void test_urls(void)
{
        struct arena a;

        arena_init(&a, 1 << 20);
        CHECK_STR(
            hf_models_url(&a, "https://huggingface.co/", HF_LISTING_LORA_TAG, CRAWL_PASS_FULL, 0),
            "https://huggingface.co/api/models?filter=lora&pipeline_tag=text-to-image"
            "&full=true&sort=createdAt&direction=-1&limit=25");
        CHECK_STR(
            hf_models_url(&a, "http://127.0.0.1:8080", HF_LISTING_LORA_NAME, CRAWL_PASS_FULL, 1000),
            "http://127.0.0.1:8080/api/models?search=lora&pipeline_tag=text-to-image"
            "&full=true&sort=createdAt&direction=-1&limit=1000");
        CHECK(strstr(hf_models_url(&a, BASE, HF_LISTING_LORA_TAG, CRAWL_PASS_FULL, 1001),
                     "&limit=25"));
        arena_release(&a);
}

/* ---- model cards ---- */

static const char card_full[] = "---\n"
                                "license: openrail++\n"
                                "library_name: diffusers\n"
                                "tags:\n"
                                "- text-to-image\n"
                                "- lora\n"
                                "- template:sd-lora\n"
                                "base_model: stabilityai/stable-diffusion-xl-base-1.0\n"
                                "instance_prompt: \"  in the style of wtrclr \"\n"
                                "model-index: [{name: x, results: [{task: {type: t}}]}]\n"
                                "widget:\n"
                                "- text: a lighthouse on a cliff in the style of wtrclr\n"
                                "  output:\n"
                                "    url: image_0.png\n"
                                "- text: no picture for this one\n"
                                "- text: ' '\n"
                                "  output: {url: ./images/ex 1.png}\n"
                                "- text: hosted elsewhere\n"
                                "  output:\n"
                                "    url: https://cdn.example.org/a.png\n"
                                "- text: escapes the repo\n"
                                "  output: {url: ../../other/repo/x.png}\n"
                                "- text: another scheme\n"
                                "  output: {url: 'javascript:alert(1)'}\n"
                                "- just a string\n"
                                "---\n"
                                "\n"
                                "# Watercolor SDXL LoRA #\n"
                                "\n"
                                "<Gallery />\n"
                                "\n"
                                "## Model description\n"
                                "\n"
                                "Soft watercolor washes.\n"
                                "\n";

static void test_card_full(void)
{
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(card_full, &a, &c, &err) == 0);
        CHECK(c.has_front_matter);
        CHECK(c.base_models.n == 1);
        CHECK_STR(c.base_models.v[0], "stabilityai/stable-diffusion-xl-base-1.0");
        CHECK_STR(c.instance_prompt, "in the style of wtrclr");
        CHECK(c.tags.n == 3);
        CHECK_STR(c.tags.v[2], "template:sd-lora");
        CHECK_STR(c.license, "openrail++");
        CHECK(c.n_widgets == 6); /* the bare string is not a widget */
        CHECK_STR(c.widgets[0].text, "a lighthouse on a cliff in the style of wtrclr");
        CHECK_STR(c.widgets[0].url, "image_0.png");
        CHECK_STR(c.widgets[1].text, "no picture for this one");
        CHECK(c.widgets[1].url == NULL);
        CHECK(c.widgets[2].text == NULL); /* " ": the diffusers scripts' blank prompt */
        CHECK_STR(c.widgets[2].url, "./images/ex 1.png");
        CHECK_STR(c.widgets[3].url, "https://cdn.example.org/a.png");
        CHECK_STR(c.title, "Watercolor SDXL LoRA");
        CHECK_STR(c.body, "# Watercolor SDXL LoRA #\n\n<Gallery />\n\n## Model description\n\n"
                          "Soft watercolor washes.");
        arena_release(&a);
}

/* base_model as a list (the Hub allows it), tags as one string, CRLF and a BOM. */
static void test_card_list_base_model(void)
{
        static const char card[] = "\xEF\xBB\xBF\r\n---\r\n"
                                   "base_model:\r\n"
                                   "- stable-diffusion-v1-5/stable-diffusion-v1-5\r\n"
                                   "- runwayml/stable-diffusion-v1-5\r\n"
                                   "tags: lora\r\n"
                                   "---\r\n"
                                   "```py\r\n# a comment, not a title\r\n```\r\n"
                                   "#NoSpaceIsNoHeading\r\n"
                                   "# C# Sprites\r\n";
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(card, &a, &c, &err) == 0);
        CHECK(c.base_models.n == 2);
        CHECK_STR(c.base_models.v[0], "stable-diffusion-v1-5/stable-diffusion-v1-5");
        CHECK_STR(c.base_models.v[1], "runwayml/stable-diffusion-v1-5");
        CHECK(c.tags.n == 1);
        CHECK_STR(c.tags.v[0], "lora");
        CHECK_STR(c.title, "C# Sprites");
        CHECK(c.n_widgets == 0 && c.instance_prompt == NULL && c.license == NULL);
        arena_release(&a);
}

static void test_card_without_front_matter(void)
{
        static const char card[] = "# Plain Card\n\n--- \nnot: front matter\n---\n";
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(card, &a, &c, &err) == 0);
        CHECK(!c.has_front_matter);
        CHECK_STR(c.title, "Plain Card");
        CHECK_STR(c.body, "# Plain Card\n\n--- \nnot: front matter\n---");
        CHECK(c.base_models.n == 0 && c.tags.n == 0);
        CHECK(parse_card("", &a, &c, &err) == 0);
        CHECK(c.body == NULL && c.title == NULL && !c.has_front_matter);
        CHECK(parse_card("---\n---\n", &a, &c, &err) == 0); /* empty front matter */
        CHECK(c.has_front_matter && c.body == NULL);
        CHECK(parse_card("---\n# only a comment\n---\nbody", &a, &c, &err) == 0);
        CHECK_STR(c.body, "body");
        arena_release(&a);
}

/* Absent, null and mistyped values read as absent. */
static void test_card_null_and_mistyped(void)
{
        static const char card[] = "---\n"
                                   "base_model: null\n"
                                   "tags: ~\n"
                                   "license: ''\n"
                                   "instance_prompt: [a, b]\n"
                                   "widget: not a list\n"
                                   "base_model: second/ignored\n"
                                   "---\n";
        static const char quoted_null[] = "---\nbase_model: 'null'\ninstance_prompt: 42\n---\n";
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(card, &a, &c, &err) == 0);
        CHECK(c.base_models.n == 0 && c.tags.n == 0 && c.license == NULL);
        CHECK(c.instance_prompt == NULL && c.n_widgets == 0);
        CHECK(parse_card(quoted_null, &a, &c, &err) == 0);
        CHECK_STR(c.base_models.v[0], "null"); /* quoted: a string */
        CHECK_STR(c.instance_prompt, "42");
        arena_release(&a);
}

static void expect_card_error(const char *card, int want, const char *body)
{
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};
        int rc;

        arena_init(&a, ARENA_MB);
        rc = parse_card(card, &a, &c, &err);
        if (rc != want) {
                fprintf(stderr, "card '%.40s': got %d (%s), want %d\n", card, rc, err.msg, want);
                exit(1);
        }
        CHECK(err.code == want && err.msg[0]);
        CHECK(c.base_models.n == 0 && c.tags.n == 0 && c.n_widgets == 0);
        CHECK(c.instance_prompt == NULL && c.license == NULL);
        if (body)
                CHECK_STR(c.body, body);
        arena_release(&a);
}

/* The fixture's malformed card: an error, but the body and title survive. */
static void test_card_malformed(void)
{
        static const char card[] = "---\n"
                                   "license: openrail++\n"
                                   "tags:\n"
                                   "- lora\n"
                                   " - text-to-image\n"
                                   "base_model: [stabilityai/stable-diffusion-xl-base-1.0\n"
                                   "instance_prompt: \"gothic cathedral interior\n"
                                   "widget:\n"
                                   "- text: gothic cathedral interior with candles\n"
                                   "---\n"
                                   "\n"
                                   "# Gothic Cathedral LoRA\n"
                                   "\n"
                                   "Pointed arches.\n";
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(card, &a, &c, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, "line "));
        CHECK_STR(c.title, "Gothic Cathedral LoRA");
        CHECK_STR(c.body, "# Gothic Cathedral LoRA\n\nPointed arches.");
        CHECK(c.base_models.n == 0 && c.tags.n == 0 && c.license == NULL);
        arena_release(&a);

        expect_card_error("---\nlicense: mit\n# T\n", ST_EPARSE, "---\nlicense: mit\n# T");
        expect_card_error("---\n- a\n- b\n---\nbody", ST_ETYPE, "body");
        expect_card_error("---\njust words\n---\nbody", ST_ETYPE, "body");
        expect_card_error("---\nlicense: \"\xff\"\n---\nbody", ST_EPARSE, "body");
        expect_card_error("---\nlicense: \"\xc0\xaf\"\n---\nbody", ST_EPARSE, "body");
        expect_card_error("---\na: [\n---\nbody", ST_EPARSE, "body");
        expect_card_error("---\na: b: c\n---\n", ST_EPARSE, NULL);
}

static char *repeat(const char *unit, size_t times, const char *head, const char *tail)
{
        size_t ulen = strlen(unit), hlen = strlen(head), tlen = strlen(tail);
        char *s = malloc(hlen + ulen * times + tlen + 1);

        CHECK(s);
        memcpy(s, head, hlen);
        for (size_t i = 0; i < times; i++)
                memcpy(s + hlen + i * ulen, unit, ulen);
        memcpy(s + hlen + ulen * times, tail, tlen + 1);
        return s;
}

/* Bombs and oversize input stop at the limits, with the body kept. */
static void test_card_hostile(void)
{
        static const char laughs[] = "---\n"
                                     "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                                     "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                                     "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                                     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                                     "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                                     "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                                     "tags: *g\n"
                                     "base_model: &m stabilityai/stable-diffusion-xl-base-1.0\n"
                                     "instance_prompt: *m\n"
                                     "license: \"zero\\0byte\"\n"
                                     "---\n"
                                     "body\n";
        struct arena a;
        struct hf_card c;
        struct st_error err = {0, ""};
        char *closing, *deep, *wide, *huge, *bad_body, *long_title;

        arena_init(&a, ARENA_MB);
        CHECK(parse_card(laughs, &a, &c, &err) == 0); /* aliases are never expanded */
        CHECK(c.tags.n == 0 && c.instance_prompt == NULL && c.license == NULL);
        CHECK_STR(c.base_models.v[0], "stabilityai/stable-diffusion-xl-base-1.0");
        arena_release(&a);

        closing = repeat("]", HF_CARD_MAX_DEPTH, "x", "\n---\nbody");
        deep = repeat("[", HF_CARD_MAX_DEPTH, "---\na: ", closing);
        expect_card_error(deep, ST_ETOOBIG, "body"); /* the map and 32 lists: 33 levels */
        wide = repeat("x,", HF_CARD_MAX_NODES, "---\na: [", "x]\n---\nbody");
        CHECK(strlen(wide) < HF_CARD_MAX_FRONT_MATTER);
        expect_card_error(wide, ST_ETOOBIG, "body");
        huge = repeat("# padding padding padding\n", HF_CARD_MAX_FRONT_MATTER / 20, "---\n",
                      "license: mit\n---\nbody");
        expect_card_error(huge, ST_ETOOBIG, "body");

        arena_init(&a, ARENA_MB);
        bad_body =
            repeat("\xe2\x82\xac\xff\xc3", ST_LIMIT_TEXT / 2, "---\nlicense: mit\n---\n# T\n", "");
        CHECK(hf_parse_card(bad_body, strlen(bad_body), &a, &c, &err) == 0);
        CHECK_STR(c.license, "mit");
        CHECK(strlen(c.body) < ST_LIMIT_TEXT);
        CHECK(strncmp(c.body, "# T\n\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd\xe2\x82\xac", 16) == 0);
        CHECK(hf_parse_card("# A\0B\n", 6, &a, &c, &err) == 0);
        CHECK_STR(c.body, "# AB");
        long_title = repeat("t", HF_CARD_MAX_TITLE, "# ", "\n");
        CHECK(hf_parse_card(long_title, strlen(long_title), &a, &c, &err) == 0);
        CHECK(c.title == NULL && c.body);
        CHECK(parse_card(card_full, &a, &c, &err) == 0);
        arena_release(&a);

        arena_init(&a, 1024);
        CHECK(parse_card(card_full, &a, &c, &err) == ST_ENOMEM);
        arena_release(&a);
        free(closing);
        free(deep);
        free(wide);
        free(huge);
        free(bad_body);
        free(long_title);
}

/* The card completes the listing's record: title, base, trigger, widgets, license tag. */
static void test_apply_card(void)
{
        struct arena a;
        struct hf_page p;
        struct hf_card c;
        struct st_error err = {0, ""};
        struct st_raw_record *r;
        char listing_hash[65];
        size_t i;

        arena_init(&a, ARENA_MB);
        CHECK(hf_parse_models_page(listing, strlen(listing), BASE, HF_LISTING_LORA_TAG, CRAWLED, &a,
                                   &p, &err) == 0);
        i = find(&p, "hf:alice/ink-sdxl-lora@" SHA_A);
        r = &p.records[i];
        memcpy(listing_hash, r->content_hash, 65);
        CHECK(parse_card(card_full, &a, &c, &err) == 0);
        CHECK(hf_apply_card(&a, BASE, &p.repos[i], &c, r, &err) == 0);
        CHECK_STR(r->name, "Watercolor SDXL LoRA");
        CHECK_STR(r->base_model, "sdxl");
        CHECK_STR(r->card_html, c.body);
        CHECK(r->trained_words.n == 1);
        CHECK_STR(r->trained_words.v[0], "in the style of wtrclr");
        CHECK(r->tags.n == 4); /* the card's 3 + license */
        CHECK_STR(r->tags.v[3], "license:openrail++");
        CHECK(r->n_images == 3); /* with output.url, in the repo or http(s) */
        CHECK_STR(r->images[0].url, BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/image_0.png");
        CHECK_STR(r->images[0].prompt, "a lighthouse on a cliff in the style of wtrclr");
        CHECK_STR(r->images[1].url,
                  BASE "/alice/ink-sdxl-lora/resolve/" SHA_A "/images/ex%201.png");
        CHECK(r->images[1].prompt == NULL);
        CHECK_STR(r->images[2].url, "https://cdn.example.org/a.png");
        CHECK(r->n_files == 2);
        CHECK(strcmp(r->content_hash, listing_hash) != 0);
        check_roundtrip(r);

        /* A list base_model: the first one; a card without widgets keeps the sibling images. */
        CHECK(parse_card("---\nbase_model: [black-forest-labs/FLUX.1-dev, x/y]\n---\n", &a, &c,
                         &err) == 0);
        CHECK(hf_apply_card(&a, BASE, &p.repos[i], &c, r, &err) == 0);
        CHECK_STR(r->base_model, "flux1");
        CHECK_STR(r->base_model_raw, "black-forest-labs/FLUX.1-dev");
        check_roundtrip(r);
        arena_release(&a);
}

/* A cursor that is not one of our listings under base_url is refused before any request. */
static void test_foreign_cursor(void)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct hf_source src = {BASE, "hf_secret", 3, NULL};
        struct st_error err = {0, ""};
        struct arena a;
        struct hf_page p;

        fetcher_config_defaults(&cfg);
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        arena_init(&a, ARENA_MB);
        CHECK(hf_crawl_page(f, &src, "https://evil.example/api/models?filter=lora", CRAWL_PASS_FULL,
                            &a, &p, &err) == ST_EINVAL);
        CHECK(!strstr(err.msg, "hf_secret"));
        CHECK(hf_crawl_page(f, &src, "https://huggingface.co.evil.example/api/models?filter=lora",
                            CRAWL_PASS_FULL, &a, &p, &err) == ST_EINVAL);
        CHECK(hf_crawl_page(f, &src, "https://huggingface.co@evil.example/api/models?filter=lora",
                            CRAWL_PASS_FULL, &a, &p, &err) == ST_EINVAL);
        CHECK(hf_crawl_page(f, &src, BASE "/api/models?filter=lorax&cursor=1", CRAWL_PASS_FULL, &a,
                            &p, &err) == ST_EINVAL);
        CHECK(hf_crawl_page(f, &src, BASE "/api/spaces?filter=lora", CRAWL_PASS_FULL, &a, &p,
                            &err) == ST_EINVAL);
        arena_release(&a);
        fetcher_destroy(&f);
}

/* ---- full crawls of the fixture server ---- */

static struct fixture_server fixture;

static void stop_fixture_at_exit(void)
{
        fixture_server_stop(&fixture);
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

/* A URL the crawler produced answers 200 with the expected content type. */
static void check_served(struct fetcher *f, const char *url, const char *content_type)
{
        struct fetch_request r = {.url = url, .content_type = content_type};

        CHECK(fetcher_run(f, &r, 1) == 0);
        if (r.result.error.code) {
                fprintf(stderr, "GET %s: %s\n", url, r.result.error.msg);
                exit(1);
        }
        fetch_request_release(&r);
}

static json_t *load_truth(void)
{
        char path[1024];
        json_t *truth;

        snprintf(path, sizeof(path), "%s/truth.json", getenv("STYLUS_FIXTURES"));
        truth = json_load_file(path, 0, NULL);
        CHECK(truth);
        return truth;
}

/* The "# " title of a fixture README, read straight from the file. */
static void readme_title(const char *repo_id, char *out, size_t size)
{
        char path[1024], line[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/hf/readme/%.*s__%s.md", getenv("STYLUS_FIXTURES"),
                 (int)strcspn(repo_id, "/"), repo_id, strchr(repo_id, '/') + 1);
        f = fopen(path, "r");
        CHECK(f);
        out[0] = '\0';
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "# ", 2) == 0) {
                        snprintf(out, size, "%.*s", (int)strcspn(line + 2, "\n"), line + 2);
                        break;
                }
        fclose(f);
        CHECK(out[0]);
}

/* A crawled record agrees with truth.json and with the README it came from. */
static void check_against_truth(const json_t *truth, const char *base,
                                const struct st_raw_record *r)
{
        const json_t *t = json_object_get(json_object_get(truth, "adapters"), r->id);
        const char *repo, *sha, *want_base, *want_raw, *file;
        char want[512];

        if (!t) {
                fprintf(stderr, "%s is not in truth.json\n", r->id);
                exit(1);
        }
        repo = json_string_value(json_object_get(t, "repo"));
        sha = json_string_value(json_object_get(t, "sha"));
        want_base = json_string_value(json_object_get(t, "base_model"));
        want_raw = json_string_value(json_object_get(t, "base_model_raw"));
        file = json_string_value(json_object_get(t, "file_name"));
        CHECK(json_is_true(json_object_get(t, "eligible")));
        CHECK(!json_is_true(json_object_get(t, "gated")));
        CHECK_STR(r->source, "hf");
        CHECK_STR(r->type, json_string_value(json_object_get(t, "type")));
        CHECK_STR(r->base_model, want_base ? want_base : "other");
        if (want_raw)
                CHECK_STR(r->base_model_raw, want_raw);
        else
                CHECK(r->base_model_raw == NULL);
        CHECK(r->nsfw == json_is_true(json_object_get(t, "nsfw")));
        readme_title(repo, want, sizeof(want));
        CHECK_STR(r->name, want);
        snprintf(want, sizeof(want), "%s/%s", base, repo);
        CHECK_STR(r->card_url, want);
        CHECK(r->card_html && strstr(r->card_html, "## Model description"));
        CHECK(strncmp(r->card_html, "---", 3) != 0);
        CHECK(r->etag && r->etag[0] == '"');
        CHECK(r->n_files == 1);
        CHECK_STR(r->files[0].name, file);
        snprintf(want, sizeof(want), "%s/%s/resolve/%s/%s", base, repo, sha, file);
        CHECK_STR(r->files[0].download_url, want);
        CHECK((json_int_t)r->n_images == json_integer_value(json_object_get(t, "n_images")));
        if (json_is_true(json_object_get(t, "malformed_card"))) {
                CHECK(r->trained_words.n == 0); /* instance_prompt lost with the YAML */
        } else {
                CHECK(r->trained_words.n == 1);
                CHECK_STR(r->trained_words.v[0], json_string_value(json_array_get(
                                                     json_object_get(t, "trigger_words"), 0)));
                for (size_t k = 0; k < r->n_images; k++)
                        CHECK(r->images[k].prompt); /* widget images carry their prompts */
        }
        check_roundtrip(r);
}

struct crawl_totals {
        size_t pages, name_pages, items, records, skipped, gated, errors, cards;
        char *ids[64];
        size_t n_ids;
};

/* Crawl a whole pass through hf_crawl_page, checking each record against truth.json. */
static void crawl_pass(struct fetcher *f, const struct hf_source *src, const json_t *truth,
                       struct crawl_totals *t)
{
        struct st_error err = {0, ""};
        struct arena a;
        char *cursor = NULL;

        memset(t, 0, sizeof(*t));
        do {
                struct hf_page p;
                int rc;

                arena_init(&a, ARENA_MB);
                rc = hf_crawl_page(f, src, cursor, CRAWL_PASS_FULL, &a, &p, &err);
                if (rc) {
                        fprintf(stderr, "crawl page %zu: %s\n", t->pages, st_error_text(&err, rc));
                        exit(1);
                }
                t->pages++;
                t->name_pages += cursor && strstr(cursor, "search=lora") != NULL;
                t->items += p.n_items;
                t->skipped += p.n_skipped;
                t->errors += p.n_errors;
                t->cards += p.n_cards;
                for (size_t i = 0; i < p.n_skipped_gated; i++, t->gated++) {
                        CHECK_STR(p.skipped[i].repo_id, "neonworks/cyberpunk-city-sdxl-lora");
                        CHECK_STR(p.skipped[i].reason, "gated:auto");
                }
                for (size_t i = 0; i < p.n_records; i++) {
                        const struct st_raw_record *r = &p.records[i];

                        check_against_truth(truth, src->base_url, r);
                        CHECK(t->n_ids < 64);
                        for (size_t k = 0; k < t->n_ids; k++)
                                CHECK(strcmp(t->ids[k], r->id) != 0); /* exactly once */
                        t->ids[t->n_ids] = strdup(r->id);
                        CHECK(t->ids[t->n_ids]);
                        t->n_ids++;
                }
                free(cursor);
                cursor = p.next_cursor ? strdup(p.next_cursor) : NULL;
                CHECK(!p.next_cursor || cursor);
                arena_release(&a);
                CHECK(t->pages < 1000);
        } while (cursor);
        t->records = t->n_ids;
}

static void free_totals(struct crawl_totals *t)
{
        for (size_t k = 0; k < t->n_ids; k++)
                free(t->ids[k]);
        t->n_ids = 0;
}

static bool crawled(const struct crawl_totals *t, const char *prefix)
{
        for (size_t k = 0; k < t->n_ids; k++)
                if (strncmp(t->ids[k], prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

static struct fetcher *test_fetcher(void)
{
        struct fetcher_config cfg;
        struct fetcher *f = NULL;
        struct st_error err = {0, ""};

        fetcher_config_defaults(&cfg);
        cfg.rate_per_host = 0;
        cfg.max_per_host = 2;
        cfg.retry_base_ms = 20;
        cfg.retry_max_ms = 100;
        CHECK(fetcher_new(&cfg, &f, &err) == 0);
        return f;
}

static void test_full_crawl(void)
{
        static const char *const args[] = {
            "--max-per-host-check", "2", "--latency-ms", "5", "--fault", "500:4", NULL};
        struct fetcher *f;
        struct hf_source src = {NULL, NULL, 3, NULL}; /* small pages: several per listing */
        struct crawl_totals t;
        json_t *truth = load_truth(), *stats, *status;
        json_int_t resolves;
        char u[256];
        size_t hf_repos = (size_t)json_integer_value(
            json_object_get(json_object_get(truth, "counts"), "hf_repos"));

        fixture_server_start(&fixture, "test_hf", args);
        atexit(stop_fixture_at_exit);
        f = test_fetcher();
        src.base_url = fixture.base;
        crawl_pass(f, &src, truth, &t);
        printf("hf crawl: %zu pages (%zu of listing 2), %zu listed, %zu records, %zu cards, "
               "%zu skipped, %zu gated, %zu errors\n",
               t.pages, t.name_pages, t.items, t.records, t.cards, t.skipped, t.gated, t.errors);
        CHECK(hf_repos == 8);
        CHECK(t.records == hf_repos - 1); /* all but the gated one */
        CHECK(t.cards == t.records);
        CHECK(t.gated == 1);
        CHECK(t.errors == 1); /* the malformed card, kept from listing + body */
        CHECK(crawled(&t, "hf:archviz/gothic-cathedral-lora@"));
        CHECK(!crawled(&t, "hf:neonworks/"));
        CHECK(t.name_pages >= 1 && t.pages - t.name_pages >= 3); /* Link followed in both */
        CHECK(t.skipped == hf_repos - 1); /* listing 2 skips the lora-tagged */
        CHECK(t.items == 2 * hf_repos - 1);

        snprintf(u, sizeof(u), "%s/__stats", fixture.base);
        stats = get_json(f, u);
        status = json_object_get(stats, "by_status");
        resolves =
            json_integer_value(json_object_get(json_object_get(stats, "by_prefix"), "/resolve"));
        CHECK(resolves == (json_int_t)t.records); /* one README each, none for the gated */
        CHECK(json_object_get(status, "401") == NULL);
        CHECK(json_integer_value(json_object_get(status, "500")) > 0); /* faults were retried */
        CHECK(json_integer_value(json_object_get(stats, "per_host_violations")) == 0);
        json_decref(stats);

        /* The URLs the records carry are real. */
        snprintf(u, sizeof(u),
                 "%s/alice/watercolor-sdxl-lora/resolve/d13cdc5961fef413b0535b4c36b8660e95e458ed/"
                 "image_0.png",
                 fixture.base);
        check_served(f, u, "image/png");
        snprintf(u, sizeof(u),
                 "%s/alice/watercolor-sdxl-lora/resolve/d13cdc5961fef413b0535b4c36b8660e95e458ed/"
                 "pytorch_lora_weights.safetensors",
                 fixture.base);
        check_served(f, u, "application/octet-stream");
        free_totals(&t);
        fetcher_destroy(&f);
        fixture_server_stop(&fixture);
        json_decref(truth);
}

/* A README that keeps failing drops its record (for the next pass); the crawl goes on. */
static void test_crawl_readme_failure(void)
{
        static const char *const args[] = {"--fault", "500:1:/pixelsmith/", NULL};
        struct fetcher *f;
        struct hf_source src = {NULL, "hf_test_token", 0, NULL};
        struct crawl_totals t;
        json_t *truth = load_truth();

        fixture_server_start(&fixture, "test_hf_fail", args);
        f = test_fetcher();
        src.base_url = fixture.base;
        crawl_pass(f, &src, truth, &t);
        CHECK(t.pages == 2); /* default page limit: one page per listing */
        CHECK(t.records == 6);
        CHECK(!crawled(&t, "hf:pixelsmith/"));
        CHECK(t.errors == 2); /* pixelsmith's README, and the malformed card */
        CHECK(t.gated == 1);  /* skipped even with a token */
        free_totals(&t);
        fetcher_destroy(&f);
        fixture_server_stop(&fixture);
        json_decref(truth);
}

/* How many requests the fixture server counted under a /__stats by_prefix key. */
static json_int_t served(struct fetcher *f, const char *prefix)
{
        char u[256];
        json_t *stats;
        json_int_t n;

        snprintf(u, sizeof(u), "%s/__stats", fixture.base);
        stats = get_json(f, u);
        n = json_integer_value(json_object_get(json_object_get(stats, "by_prefix"), prefix));
        json_decref(stats);
        return n;
}

/* One page of a pass; the caller releases a. */
static void crawl_page(struct fetcher *f, const struct hf_source *src, const char *cursor,
                       enum crawl_pass pass, struct arena *a, struct hf_page *p)
{
        struct st_error err = {0, ""};
        int rc;

        arena_init(a, ARENA_MB);
        rc = hf_crawl_page(f, src, cursor, pass, a, p, &err);
        if (rc) {
                fprintf(stderr, "crawl %s: %s\n", cursor ? cursor : "(first)",
                        st_error_text(&err, rc));
                exit(1);
        }
}

/*
 * With a validator cache: a second full pass gets a 304 for every listing
 * page and reads no README; an incremental pass (a listing URL the cache
 * has not seen) rebuilds every repo from the cached READMEs, sends nothing
 * and leaves listing 1 after its first page.  Then checks.
 */
static void test_crawl_with_cache(void)
{
        struct validator_cache *cache = NULL;
        struct hf_source src = {NULL, NULL, 3, NULL};
        struct st_error err = {0, ""};
        struct crawl_totals t;
        struct driver_check found;
        struct fetcher *f;
        struct hf_page p;
        struct arena a;
        json_t *truth = load_truth();
        json_int_t readmes, listings;
        char dir[128], *cursor = NULL;
        size_t unchanged = 0, pages = 0;

        fixture_server_start(&fixture, "test_hf_cache", NULL);
        snprintf(dir, sizeof(dir), "/tmp/test_hf_cache.%d", (int)getpid());
        CHECK(validator_cache_open(dir, &cache, &err) == 0);
        f = test_fetcher();
        src.base_url = fixture.base;
        src.cache = cache;
        crawl_pass(f, &src, truth, &t);
        CHECK(t.records == 7 && t.cards == 7);
        free_totals(&t);
        readmes = served(f, "/resolve");
        listings = served(f, "/api/models");

        /* Full pass again: every listing page a 304 standing for its ids; no README. */
        do {
                crawl_page(f, &src, cursor, CRAWL_PASS_FULL, &a, &p);
                CHECK(p.not_modified && p.n_records == 0 && !p.stop);
                unchanged += p.n_unchanged;
                pages++;
                free(cursor);
                cursor = p.next_cursor ? strdup(p.next_cursor) : NULL;
                arena_release(&a);
        } while (cursor);
        CHECK(unchanged == 7);
        CHECK(served(f, "/resolve") == readmes);
        CHECK(served(f, "/api/models") == listings + (json_int_t)pages);

        /* Incremental: a new URL (sort=lastModified), 200, but every repo is known at its sha. */
        crawl_page(f, &src, NULL, CRAWL_PASS_INCREMENTAL, &a, &p);
        CHECK(!p.not_modified && p.n_records == 0 && p.n_unchanged > 0);
        CHECK(p.n_unchanged + p.n_skipped_gated == p.n_items); /* gated repos are no records */
        CHECK(p.n_cached_cards == p.n_unchanged && !p.stop);   /* cards from the cache */
        CHECK(p.next_cursor && strstr(p.next_cursor, "search=lora") &&
              strstr(p.next_cursor, "sort=lastModified"));
        arena_release(&a);
        CHECK(served(f, "/resolve") == readmes);

        /* Checks: present, moved on (another sha), missing; and malformed ids. */
        {
                static char *const ids[] = {
                    "hf:alice/watercolor-sdxl-lora@d13cdc5961fef413b0535b4c36b8660e95e458ed",
                    "hf:nobody/missing-lora@d13cdc5961fef413b0535b4c36b8660e95e458ed",
                    "hf:alice/watercolor-sdxl-lora@0000000000000000000000000000000000000000",
                    "hf:neonworks/"
                    "cyberpunk-city-sdxl-lora@236bb9e1e2fb7ad6f6b5cf8f7f5c81a84f7d9bd8"};
                static char *const bad[] = {"civitai:1@2", "hf:alice/watercolor-sdxl-lora",
                                            "hf:alice@d13cdc5961fef413b0535b4c36b8660e95e458ed",
                                            "hf:a/b@D13CDC5961FEF413B0535B4C36B8660E95E458ED"};

                arena_init(&a, ARENA_MB);
                CHECK(hf_check(f, &src, ids, 3, &a, &found, &err) == 0);
                CHECK(found.n_records == 1);
                CHECK_STR(found.records[0].id, ids[0]);
                check_roundtrip(&found.records[0]);
                CHECK(found.records[0].trained_words.n == 1); /* the card, from the cache */
                CHECK(found.n_gone == 2 && found.n_unverified == 0);
                CHECK_STR(found.gone[0], ids[1]);
                CHECK_STR(found.gone[1], ids[2]);
                arena_release(&a);
                /* A gated repo is there but not crawlable: gone, whatever its sha. */
                arena_init(&a, ARENA_MB);
                CHECK(hf_check(f, &src, &ids[3], 1, &a, &found, &err) == 0);
                CHECK(found.n_records == 0 && found.n_gone == 1);
                arena_release(&a);
                for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        arena_init(&a, ARENA_MB);
                        CHECK(hf_check(f, &src, &bad[i], 1, &a, &found, &err) == ST_EINVAL);
                        arena_release(&a);
                }
        }
        CHECK(served(f, "/resolve") == readmes);
        fetcher_destroy(&f);
        validator_cache_destroy(&cache);
        fixture_server_stop(&fixture);
        json_decref(truth);
        {
                char cmd[200];

                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
                CHECK(system(cmd) == 0);
        }
}

int main(void)
{
        log_setup("test", LOG_ERROR);
        test_urls();
        test_listing_tag();
        test_listing_name();
        test_bad_pages();
        test_card_full();
        test_card_list_base_model();
        test_card_without_front_matter();
        test_card_null_and_mistyped();
        test_card_malformed();
        test_card_hostile();
        test_apply_card();
        test_foreign_cursor();
        test_full_crawl();
        test_crawl_readme_failure();
        test_crawl_with_cache();
        printf("test_hf: ok\n");
        return 0;
}
