/*
 * fuzz_civitai_page.c - the Civitai JSON parsers (models pages, images
 * pages, model-version answers of by-hash): no input may crash them, every
 * record they return must be accepted by the msgpack decoder (so the
 * crawler never ships a record another role would refuse) with the content
 * hash it carries, and a version answer gives "civitai:<m>@<v>" or nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crawler/civitai.h"
#include "proto/log.h"

#define FUZZ_ARENA_LIMIT (64u << 20)

static void check_record(const struct st_raw_record *r)
{
        struct st_raw_record back;
        struct arena a;
        char *buf, hash[65];
        size_t len;

        if (st_raw_record_to_msgpack(r, &buf, &len) != 0)
                abort();
        arena_init(&a, FUZZ_ARENA_LIMIT);
        if (st_raw_record_from_msgpack(buf, len, &a, &back, NULL) != 0)
                abort();
        if (strcmp(back.id, r->id) != 0)
                abort();
        free(buf);
        arena_release(&a);
        if (st_raw_record_hash(r, hash) != 0 || !r->content_hash || strcmp(hash, r->content_hash))
                abort();
}

static void check_version_id(const char *id)
{
        unsigned long long model, version;
        int end = 0;

        if (!id || sscanf(id, "civitai:%llu@%llu%n", &model, &version, &end) != 2 ||
            id[end] != '\0' || model == 0 || version == 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *json = (const char *)data;
        struct civitai_page page;
        struct st_image *images;
        struct arena a;
        char *id;
        size_t n;

        log_setup("fuzz", LOG_ERROR);
        arena_init(&a, FUZZ_ARENA_LIMIT);
        if (civitai_parse_models_page(json, size, "https://civitai.com", "2026-01-01T00:00:00Z", &a,
                                      &page, NULL) == 0) {
                for (size_t i = 0; i < page.n_records; i++)
                        check_record(&page.records[i]);
                for (size_t i = 0; i < page.n_need_images; i++)
                        if (page.need_images_record[i] >= page.n_records)
                                abort();
        }
        arena_release(&a);
        if (civitai_parse_images_page(json, size, &a, &images, &n, CIVITAI_MAX_IMAGES, NULL) == 0) {
                if (n > CIVITAI_MAX_IMAGES)
                        abort();
                for (size_t i = 0; i < n; i++)
                        if (!images[i].url || !images[i].prompt)
                                abort();
        }
        arena_release(&a);
        if (civitai_parse_version(json, size, &a, &id, NULL) == 0)
                check_version_id(id);
        else if (id)
                abort();
        arena_release(&a);
        return 0;
}
