/*
 * test_doc.c - task names, base model normalization and the content hash
 * of a raw record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/doc.h"
#include "proto/sha256.h"
#include "doc_fixture.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

static int test_task_names(void)
{
        int t;

        for (t = 0; t < ST_TASK_COUNT; t++)
                CHECK(st_task_from_name(st_task_name((enum st_task)t)) == (enum st_task)t);
        CHECK(strcmp(st_task_name(ST_TASK_CONCEPT), "concept") == 0);
        CHECK(strcmp(st_task_name(ST_TASK_OTHER), "other") == 0);
        CHECK(strcmp(st_task_name(ST_TASK_COUNT), "other") == 0);
        CHECK(st_task_from_name("Celebrity") == ST_TASK_CELEBRITY);
        CHECK(st_task_from_name("VEHICLE") == ST_TASK_VEHICLE);
        CHECK(st_task_from_name("styles") == ST_TASK_COUNT);
        CHECK(st_task_from_name("") == ST_TASK_COUNT);
        CHECK(st_task_from_name(NULL) == ST_TASK_COUNT);
        return 0;
}

static int test_base_models(void)
{
        static const struct {
                const char *published;
                const char *normalized;
        } cases[] = {
            {"SD 1.4", "sd15"},
            {"SD 1.5", "sd15"},
            {"sd 1.5", "sd15"},
            {"SD 1.5 LCM", "sd15"},
            {"SD 1.5 Hyper", "sd15"},
            {"SD 2.0", "sd21"},
            {"SD 2.0 768", "sd21"},
            {"SD 2.1", "sd21"},
            {"SD 2.1 768", "sd21"},
            {"SDXL 0.9", "sdxl"},
            {"SDXL 1.0", "sdxl"},
            {"SDXL Turbo", "sdxl"},
            {"SDXL Lightning", "sdxl"},
            {"SDXL Hyper", "sdxl"},
            {"Pony", "pony"},
            {"Illustrious", "illustrious"},
            {"NoobAI", "noobai"},
            {"Flux.1 D", "flux1"},
            {"Flux.1 S", "flux1"},
            {"Flux.1 Kontext", "flux1"},
            {"SD 3", "sd3"},
            {"SD 3.5", "sd3"},
            {"SD 3.5 Large", "sd3"},
            {"SD 3.5 Medium", "sd3"},
            {"runwayml/stable-diffusion-v1-5", "sd15"},
            {"stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"},
            {"CompVis/stable-diffusion-v1-4", "sd15"},
            {"compvis/Stable-Diffusion-V1-4", "sd15"},
            {"stabilityai/stable-diffusion-2-1", "sd21"},
            {"stabilityai/stable-diffusion-xl-base-1.0", "sdxl"},
            {"black-forest-labs/FLUX.1-dev", "flux1"},
            {"black-forest-labs/FLUX.1-schnell", "flux1"},
            {"stabilityai/stable-diffusion-3.5-large", "sd3"},
            {"SD 1.55", "other"},
            {"SDXLX", "other"},
            {"Hunyuan 1", "other"},
            {"Other", "other"},
            {"", "other"},
            {"some/random-model", "other"},
        };
        size_t i;

        for (i = 0; i < NELEM(cases); i++) {
                const char *got = st_base_model_normalize(cases[i].published);

                if (strcmp(got, cases[i].normalized) != 0) {
                        fprintf(stderr, "normalize(\"%s\") = %s, want %s\n", cases[i].published,
                                got, cases[i].normalized);
                        return 1;
                }
        }
        CHECK(strcmp(st_base_model_normalize(NULL), "other") == 0);
        return 0;
}

/* The hash is SHA-256 of the msgpack encoding without the three crawl fields. */
static int test_hash_definition(void)
{
        struct st_raw_record r;
        char hash[65], want[65];
        char *buf;
        size_t len, i;

        fixture_raw_record(&r);
        CHECK(st_raw_record_hash(&r, hash) == 0);
        CHECK(strlen(hash) == 64);
        for (i = 0; i < 64; i++)
                CHECK((hash[i] >= '0' && hash[i] <= '9') || (hash[i] >= 'a' && hash[i] <= 'f'));
        r.crawled_at = NULL;
        r.etag = NULL;
        r.content_hash = NULL;
        CHECK(st_raw_record_to_msgpack(&r, &buf, &len) == 0);
        sha256_hex(buf, len, want);
        free(buf);
        CHECK(strcmp(hash, want) == 0);
        return 0;
}

static int test_hash_stable(void)
{
        struct st_raw_record r;
        char before[65], after[65];

        fixture_raw_record(&r);
        CHECK(st_raw_record_hash(&r, before) == 0);
        r.crawled_at = "2030-12-31T23:59:59Z";
        r.etag = NULL;
        r.content_hash = before;
        CHECK(st_raw_record_hash(&r, after) == 0);
        CHECK(strcmp(before, after) == 0);
        return 0;
}

/* Changing any content field changes the hash. */
static int test_hash_sensitive(void)
{
        static char *other_tags[] = {"style", "anime", "水彩", "ghibly"};
        struct st_file file = {"f", 1, NULL, NULL};
        struct st_image image = {"u", "p", NULL};
        struct st_raw_record base, r;
        char want[65], got[65];
        int i;

        fixture_raw_record(&base);
        CHECK(st_raw_record_hash(&base, want) == 0);
        for (i = 0; i < 12; i++) {
                r = base;
                switch (i) {
                case 0:
                        r.name = "Studio Ghibli";
                        break;
                case 1:
                        r.version_name = NULL;
                        break;
                case 2:
                        r.card_html = "";
                        break;
                case 3:
                        r.tags.v = other_tags;
                        break;
                case 4:
                        r.trained_words.n--;
                        break;
                case 5:
                        r.nsfw = false;
                        break;
                case 6:
                        r.stats.downloads++;
                        break;
                case 7:
                        r.stats.rating = 4.86;
                        break;
                case 8:
                        r.files = &file;
                        r.n_files = 1;
                        break;
                case 9:
                        r.images = &image;
                        r.n_images = 1;
                        break;
                case 10:
                        r.updated_at = "2024-05-06T07:08:10.123Z";
                        break;
                case 11:
                        r.tags = r.trained_words;
                        break;
                }
                CHECK(st_raw_record_hash(&r, got) == 0);
                if (strcmp(want, got) == 0) {
                        fprintf(stderr, "change %d did not change the hash\n", i);
                        return 1;
                }
        }
        return 0;
}

int main(void)
{
        int failed = 0;

        failed |= test_task_names();
        failed |= test_base_models();
        failed |= test_hash_definition();
        failed |= test_hash_stable();
        failed |= test_hash_sensitive();
        if (failed)
                return 1;
        printf("test_doc: ok\n");
        return 0;
}
