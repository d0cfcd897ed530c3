/*
 * test_vlm_prompt.c - what the VLM refiner sends: the card text ("Title;
 * Tags; Trigger Words; Description" with the HTML stripped and cut), image
 * prompts without negative prompts, and the chat-completions body (read
 * back with jansson: keys, part order, base64 data URLs, JSON mode, the
 * image cap, escaping).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/vlm_prompt.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static struct arena arena;

static bool str_is(const char *got, const char *want)
{
        if (got && strcmp(got, want) == 0)
                return true;
        fprintf(stderr, "want \"%s\"\ngot  \"%s\"\n", want, got ? got : "(null)");
        return false;
}

static void test_card_text(void)
{
        static char *tags[] = {"style", "ink", "traditional art"};
        static char *words[] = {"inkwash", "sumi-e"};
        struct st_raw_record r = {0};
        struct st_strv tw = {words, 2}, none = {NULL, 0};
        struct st_error err = {0};
        char *text, *html;
        size_t i;

        r.id = "civitai:1@2";
        r.source = "civitai";
        r.name = "Ink Wash";
        r.card_html = "<p><strong>Ink wash</strong> style.</p><p>Recommended weight: 0.6-0.8</p>"
                      "<script>x()</script>";
        r.tags = (struct st_strv){tags, 3};
        CHECK(vlm_card_text(&r, &tw, &arena, &text, &err) == 0);
        CHECK(str_is(text, "Title: Ink Wash; Tags: style, ink, traditional art; Trigger Words: "
                           "inkwash, sumi-e; Description: Ink wash style.\n\n"
                           "Recommended weight: 0.6-0.8"));

        r.card_html = NULL;
        r.tags = none;
        CHECK(vlm_card_text(&r, &none, &arena, &text, &err) == 0);
        CHECK(str_is(text, "Title: Ink Wash; Tags: (none); Trigger Words: (none); Description: "
                           "(none)"));

        /* a long card is cut at VLM_CARD_TEXT_MAX bytes of description */
        html = malloc(20001);
        for (i = 0; i < 20000; i++)
                html[i] = i % 10 == 9 ? ' ' : 'a';
        html[20000] = '\0';
        r.card_html = html;
        CHECK(vlm_card_text(&r, &none, &arena, &text, &err) == 0);
        CHECK(strlen(strstr(text, "Description: ") + 13) <= VLM_CARD_TEXT_MAX);
        CHECK(strlen(strstr(text, "Description: ") + 13) > VLM_CARD_TEXT_MAX / 2);
        free(html);
}

static void test_image_prompt(void)
{
        char long_prompt[3001];

        CHECK(str_is(vlm_image_prompt_text("1girl, ink wash, mountains", &arena),
                     "Prompt: 1girl, ink wash, mountains"));
        CHECK(str_is(vlm_image_prompt_text(NULL, &arena), "Prompt: (not given)"));
        CHECK(str_is(vlm_image_prompt_text(" \n ", &arena), "Prompt: (not given)"));
        /* an A1111 parameter block loses its negative prompt and settings */
        CHECK(str_is(vlm_image_prompt_text("a cat, ink wash <lora:ink:0.7>\nNegative prompt: "
                                           "ugly, blurry\nSteps: 20, Sampler: Euler a",
                                           &arena),
                     "Prompt: a cat, ink wash <lora:ink:0.7>"));
        CHECK(
            str_is(vlm_image_prompt_text("a cat, NEGATIVE PROMPT: ugly", &arena), "Prompt: a cat"));
        CHECK(str_is(vlm_image_prompt_text("a cat\nSteps: 20, CFG scale: 7", &arena),
                     "Prompt: a cat"));
        memset(long_prompt, 'x', sizeof(long_prompt) - 1);
        long_prompt[sizeof(long_prompt) - 1] = '\0';
        CHECK(strlen(vlm_image_prompt_text(long_prompt, &arena)) ==
              strlen("Prompt: ") + VLM_IMAGE_PROMPT_MAX);
}

static const json_t *user_parts(const json_t *body)
{
        return json_object_get(json_array_get(json_object_get(body, "messages"), 1), "content");
}

static const char *part_text(const json_t *parts, size_t i)
{
        return json_string_value(json_object_get(json_array_get(parts, i), "text"));
}

static const char *part_url(const json_t *parts, size_t i)
{
        return json_string_value(
            json_object_get(json_object_get(json_array_get(parts, i), "image_url"), "url"));
}

static json_t *body_of(const struct vlm_request *q)
{
        struct st_error err = {0};
        char *body = NULL;
        size_t len = 0;
        json_t *j = NULL;
        int rc = vlm_request_body(q, &body, &len, &err);

        if (rc)
                fprintf(stderr, "vlm_request_body: %s\n", st_error_text(&err, rc));
        CHECK(rc == 0);
        if (body) {
                CHECK(strlen(body) == len);
                j = json_loadb(body, len, 0, NULL);
                CHECK(j != NULL);
        }
        free(body);
        return j;
}

static void test_body(void)
{
        static const unsigned char bytes[] = "foob";
        struct vlm_image images[12];
        struct vlm_request q = {"gpt-\"4o\"", false, 0.0, "Title: a\x01\"b\"; Tags: (none)",
                                images,       2};
        const json_t *parts;
        json_t *j;
        size_t i;

        for (i = 0; i < 12; i++) {
                images[i].media_type = i % 2 ? "image/jpeg" : "image/png";
                images[i].data = bytes;
                images[i].len = i % 5; /* "", "f", "fo", "foo", "foob": every padding */
                images[i].prompt_text = "Prompt: a cat";
        }
        j = body_of(&q);
        CHECK(str_is(json_string_value(json_object_get(j, "model")), "gpt-\"4o\""));
        CHECK(json_number_value(json_object_get(j, "temperature")) == 0.0);
        CHECK(json_integer_value(json_object_get(j, "max_tokens")) == VLM_MAX_TOKENS);
        CHECK(json_object_get(j, "response_format") == NULL);
        CHECK(str_is(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "messages"), 0), "role")),
                     "system"));
        parts = user_parts(j);
        CHECK(json_array_size(parts) == 1 + 2 * 2 + 1);
        CHECK(str_is(part_text(parts, 0), "Title: a\x01\"b\"; Tags: (none)"));
        CHECK(str_is(part_url(parts, 1), "data:image/png;base64,"));
        CHECK(str_is(part_text(parts, 2), "Prompt: a cat"));
        CHECK(str_is(part_url(parts, 3), "data:image/jpeg;base64,Zg=="));
        CHECK(str_is(part_text(parts, 5), vlm_instruction()));
        CHECK(strstr(vlm_instruction(), "JSON") != NULL);
        json_decref(j);

        /* JSON mode, a retry temperature, and no more than VLM_MAX_IMAGES images */
        q.json_mode = true;
        q.temperature = VLM_RETRY_TEMPERATURE;
        q.n_images = 12;
        j = body_of(&q);
        CHECK(str_is(
            json_string_value(json_object_get(json_object_get(j, "response_format"), "type")),
            "json_object"));
        CHECK(json_number_value(json_object_get(j, "temperature")) == VLM_RETRY_TEMPERATURE);
        parts = user_parts(j);
        CHECK(json_array_size(parts) == 1 + 2 * VLM_MAX_IMAGES + 1);
        CHECK(str_is(part_url(parts, 5), "data:image/png;base64,Zm8="));
        CHECK(str_is(part_url(parts, 7), "data:image/jpeg;base64,Zm9v"));
        CHECK(str_is(part_url(parts, 9), "data:image/png;base64,Zm9vYg=="));
        json_decref(j);
}

static void test_body_errors(void)
{
        struct vlm_request q = {"", false, 0.0, "Title: a", NULL, 0};
        struct st_error err = {0};
        char *body = NULL;
        size_t len;

        CHECK(vlm_request_body(&q, &body, &len, &err) == ST_EINVAL && !body);
        q.model = "m";
        q.card_text = NULL;
        CHECK(vlm_request_body(&q, &body, &len, &err) == ST_EINVAL && !body);
}

int main(void)
{
        arena_init(&arena, 64u << 20);
        test_card_text();
        test_image_prompt();
        test_body();
        test_body_errors();
        arena_release(&arena);
        if (failures)
                fprintf(stderr, "%d checks failed\n", failures);
        return failures ? 1 : 0;
}
