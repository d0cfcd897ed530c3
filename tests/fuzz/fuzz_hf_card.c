/*
 * fuzz_hf_card.c - the Hugging Face parsers: the model card (YAML front
 * matter with libyaml, markdown body) and the /api/models listing page.  No
 * input may crash them; every card field must respect its limits; and every
 * record they make, before and after a card is applied, must be accepted by
 * the msgpack decoder with the content hash it carries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crawler/hf.h"
#include "proto/log.h"

#define FUZZ_ARENA_LIMIT (64u << 20)
#define BASE             "https://huggingface.co"

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

static void check_card(const struct hf_card *c)
{
        if (c->n_widgets > HF_CARD_MAX_WIDGETS || c->base_models.n > ST_LIMIT_ARRAY ||
            c->tags.n > ST_LIMIT_ARRAY)
                abort();
        if (c->body && strlen(c->body) >= ST_LIMIT_TEXT)
                abort();
        if (c->title && strlen(c->title) >= HF_CARD_MAX_TITLE)
                abort();
        for (size_t i = 0; i < c->base_models.n; i++)
                if (!c->base_models.v[i] || strlen(c->base_models.v[i]) >= ST_LIMIT_STRING)
                        abort();
}

/* A listing record for a fixed repo, to apply fuzzed cards to. */
static const char listing[] =
    "[{\"id\":\"u/"
    "r-lora\",\"sha\":\"d13cdc5961fef413b0535b4c36b8660e95e458ed\",\"tags\":[\"lora\"],"
    "\"siblings\":[{\"rfilename\":\"README.md\"},{\"rfilename\":\"w.safetensors\"}]}]";

static void apply_to_listing_record(const struct hf_card *card, struct arena *a)
{
        struct hf_page page;

        if (hf_parse_models_page(listing, sizeof(listing) - 1, BASE, HF_LISTING_LORA_TAG,
                                 "2026-01-01T00:00:00Z", a, &page, NULL) != 0 ||
            page.n_records != 1)
                abort();
        if (hf_apply_card(a, BASE, &page.repos[0], card, &page.records[0], NULL) == 0)
                check_record(&page.records[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *text = (const char *)data;
        struct hf_card card;
        struct hf_page page;
        struct arena a;
        int rc;

        log_setup("fuzz", LOG_ERROR);
        arena_init(&a, FUZZ_ARENA_LIMIT);
        rc = hf_parse_card(text, size, &a, &card, NULL);
        if (rc != ST_ENOMEM) {
                check_card(&card);
                apply_to_listing_record(&card, &a);
        }
        arena_release(&a);
        for (int listing_kind = 0; listing_kind < 2; listing_kind++) {
                if (hf_parse_models_page(text, size, BASE, (enum hf_listing)listing_kind,
                                         "2026-01-01T00:00:00Z", &a, &page, NULL) == 0) {
                        for (size_t i = 0; i < page.n_records; i++)
                                check_record(&page.records[i]);
                        if (page.n_records + page.n_skipped_gated > page.n_items)
                                abort();
                }
                arena_release(&a);
        }
        return 0;
}
