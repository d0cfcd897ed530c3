/*
 * fuzz_html_text.c - card HTML to text, the weight parsers and the card
 * refiner on arbitrary bytes.  Besides not crashing, every result must keep
 * its promises: text within max_out bytes and valid UTF-8, card weights in
 * WEIGHT_MIN..WEIGHT_MAX.  A broken promise aborts, which the fuzzer reports.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "refiner/card.h"
#include "refiner/html_text.h"
#include "refiner/weight.h"

#define FUZZ_ARENA_LIMIT (32u << 20)

static bool valid_utf8(const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, k, need;

        while (i < n) {
                if (u[i] < 0x80)
                        need = 0;
                else if (u[i] >= 0xC2 && u[i] <= 0xDF)
                        need = 1;
                else if (u[i] >= 0xE0 && u[i] <= 0xEF)
                        need = 2;
                else if (u[i] >= 0xF0 && u[i] <= 0xF4)
                        need = 3;
                else
                        return false;
                if (need > n - i - 1)
                        return false;
                for (k = 1; k <= need; k++)
                        if ((u[i + k] & 0xC0) != 0x80)
                                return false;
                i += need + 1;
        }
        return true;
}

static void check_text(const char *html, size_t size, size_t max_out, struct arena *a)
{
        char *out = NULL;
        double w;

        if (html_to_text(html, size, max_out, a, &out, NULL) != 0) {
                if (size <= ST_LIMIT_TEXT)
                        abort();
                return;
        }
        if (!out || strlen(out) > max_out || !valid_utf8(out, strlen(out)))
                abort();
        if (weight_from_text(out, strlen(out), &w) == 0 && (w < WEIGHT_MIN || w > WEIGHT_MAX))
                abort();
}

static void check_card(char *text, struct arena *a)
{
        struct st_image image = {"https://example.com/a.png", text, NULL};
        struct st_file file = {"fuzz.safetensors", 1, NULL, NULL};
        char *words[] = {text};
        struct st_raw_record r = {0};
        struct st_doc d;

        r.id = "civitai:1@1";
        r.source = "civitai";
        r.name = text;
        r.card_html = text;
        r.tags.v = words;
        r.tags.n = 1;
        r.trained_words.v = words;
        r.trained_words.n = 1;
        r.files = &file;
        r.n_files = 1;
        r.images = &image;
        r.n_images = 1;
        if (card_refine(&r, a, &d, NULL) != 0)
                return;
        /* Records hold valid UTF-8 (the decoders check); then so must the doc. */
        if (!d.description || strlen(d.description) > CARD_DESCRIPTION_MAX ||
            (valid_utf8(text, strlen(text)) && !valid_utf8(d.description, strlen(d.description))))
                abort();
        if (!(d.recommended_weight >= WEIGHT_MIN && d.recommended_weight <= WEIGHT_MAX))
                abort();
        if (!d.task || st_task_from_name(d.task) == ST_TASK_COUNT)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *html = (const char *)data;
        struct arena a;
        char *text;
        double w;

        arena_init(&a, FUZZ_ARENA_LIMIT);
        check_text(html, size, ST_LIMIT_TEXT, &a);
        check_text(html, size, size > 0 ? data[0] : 0, &a);
        check_text(html, size, CARD_DESCRIPTION_MAX, &a);
        if (weight_from_text(html, size, &w) == 0 && (w < WEIGHT_MIN || w > WEIGHT_MAX))
                abort();
        if (text_cut(html, size, size / 2) > size / 2)
                abort();

        /* The prompt parser and the card refiner take NUL-terminated strings. */
        text = arena_strndup(&a, html, size);
        if (text) {
                (void)weight_from_prompt(text, "fuzz.safetensors", &w);
                (void)weight_from_prompt(text, NULL, &w);
                (void)weight_from_prompt_match(text, text, &w);
                check_card(text, &a);
        }
        arena_release(&a);
        return 0;
}
