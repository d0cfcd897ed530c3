/*
 * test_card.c - the offline card refiner on a hand-built, Civitai-like raw
 * record: every doc field, then one rule at a time (task from tags, from the
 * title, from the description; weight from prompts, card text, default;
 * trigger word cleanup; description fallback and cut; errors).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/card.h"
#include "refiner/weight.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static struct arena arena;

static char *tags_style[] = {"style", "ink", "traditional art"};
static char *words_messy[] = {"inkwash, ink wash painting", " Inkwash ", "",      "monochrome,,",
                              "INK WASH PAINTING",          "  ",        "sumi-e"};
static struct st_file files[] = {
    {"ink_wash_xl_v2_preview.png", 120000, NULL, "https://civitai.com/api/download/x.png"},
    {"ink_wash_xl_v2.safetensors", 228458692,
     "5e2b6b5d3c2f8f1c6f4a3f3a9b1e0d7c2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d",
     "https://civitai.com/api/download/models/67890"},
};
static struct st_image images[] = {
    {"https://image.civitai.com/a.jpeg", "1girl, ink wash painting, inkwash, mountains", NULL},
    {"https://image.civitai.com/b.jpeg", NULL, NULL},
};

/* A Civitai-like record of a style LoRA; tests change one field at a time. */
static struct st_raw_record sample(void)
{
        struct st_raw_record r = {0};

        r.id = "civitai:12345@67890";
        r.source = "civitai";
        r.name = "Ink Wash Painting Style";
        r.version_name = "v2.0";
        r.type = "LORA";
        r.base_model = "sdxl";
        r.base_model_raw = "SDXL 1.0";
        r.card_html = "<p><strong>Ink wash painting</strong> (sumi-e) style for SDXL.</p>"
                      "<p>Recommended weight: 0.6-0.8. CFG 5-7, Clip skip 2.</p>"
                      "<ul><li><p>Trigger: <code>inkwash</code></p></li>"
                      "<li><p>Works with most checkpoints</p></li></ul>"
                      "<p>If you like it, support me on "
                      "<a href=\"https://ko-fi.com/inky\">Ko-fi</a> &#10084;</p>"
                      "<script>track()</script>";
        r.card_url = "https://civitai.com/models/12345";
        r.creator = "inky";
        r.tags.v = tags_style;
        r.tags.n = 3;
        r.trained_words.v = words_messy;
        r.trained_words.n = 7;
        r.nsfw = false;
        r.stats.downloads = 15230;
        r.stats.likes = 1204;
        r.stats.rating = 4.9;
        r.files = files;
        r.n_files = 2;
        r.images = images;
        r.n_images = 2;
        r.created_at = "2024-03-01T10:00:00Z";
        r.updated_at = "2024-03-05T12:30:00Z";
        r.crawled_at = "2026-01-10T08:00:00Z";
        r.etag = "W/\"abc\"";
        r.content_hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
        return r;
}

static struct st_doc refine(const struct st_raw_record *r)
{
        struct st_error err = {0};
        struct st_doc d;
        int rc = card_refine(r, &arena, &d, &err);

        if (rc) {
                fprintf(stderr, "card_refine: %s\n", st_error_text(&err, rc));
                failures++;
                memset(&d, 0, sizeof(d));
        }
        return d;
}

static bool near(double a, double b)
{
        return fabs(a - b) < 1e-9;
}

static bool str_is(const char *got, const char *want)
{
        if (got && strcmp(got, want) == 0)
                return true;
        fprintf(stderr, "want \"%s\"\ngot  \"%s\"\n", want, got ? got : "(null)");
        return false;
}

static void test_full_record(void)
{
        struct st_raw_record r = sample();
        struct st_doc d = refine(&r);

        /* Identity fields are the record's own (borrowed, not copied). */
        CHECK(d.id == r.id && d.source == r.source && d.name == r.name);
        CHECK(d.version_name == r.version_name && d.type == r.type);
        CHECK(str_is(d.base_model, "sdxl"));
        CHECK(d.tags.v == r.tags.v && d.tags.n == 3);
        CHECK(d.nsfw == false);
        CHECK(d.stats.downloads == 15230 && d.stats.likes == 1204 && near(d.stats.rating, 4.9));
        CHECK(d.files == files && d.n_files == 2 && d.images == images && d.n_images == 2);
        CHECK(d.card_url == r.card_url && d.created_at == r.created_at);
        CHECK(d.updated_at == r.updated_at && d.crawled_at == r.crawled_at);
        CHECK(d.content_hash == r.content_hash);

        CHECK(str_is(d.description, "Ink wash painting (sumi-e) style for SDXL.\n\n"
                                    "Recommended weight: 0.6-0.8. CFG 5-7, Clip skip 2.\n\n"
                                    "- Trigger: inkwash\n"
                                    "- Works with most checkpoints"));
        CHECK(d.trigger_words.n == 4);
        if (d.trigger_words.n == 4) {
                CHECK(str_is(d.trigger_words.v[0], "inkwash"));
                CHECK(str_is(d.trigger_words.v[1], "ink wash painting"));
                CHECK(str_is(d.trigger_words.v[2], "monochrome"));
                CHECK(str_is(d.trigger_words.v[3], "sumi-e"));
        }
        CHECK(near(d.recommended_weight, 0.7));
        CHECK(str_is(d.task, "style"));
        CHECK(str_is(d.refined_by, "card"));
        CHECK(d.embedding_model == NULL);
}

static enum st_task task_of(const char *name, char **tags, size_t n_tags, const char *html)
{
        struct st_raw_record r = sample();
        struct st_doc d;

        r.name = (char *)name;
        r.tags.v = tags;
        r.tags.n = n_tags;
        r.card_html = (char *)html;
        d = refine(&r);
        return st_task_from_name(d.task);
}

static void test_task(void)
{
        char *character[] = {"anime", "character", "style"};
        char *celebrity[] = {"woman", "CELEBRITY", "character"};
        char *clothing[] = {"girl", "outfit"};
        char *slider[] = {"tool", "slider", "style"};
        char *generic[] = {"anime", "sdxl", "woman", "cute"};

        /* From tags, by table priority. */
        CHECK(task_of("Asuka", character, 3, NULL) == ST_TASK_CHARACTER);
        CHECK(task_of("Some Actress", celebrity, 3, NULL) == ST_TASK_CELEBRITY);
        CHECK(task_of("Maid", clothing, 2, NULL) == ST_TASK_CLOTHING);
        CHECK(task_of("Age", slider, 3, NULL) == ST_TASK_CONCEPT);
        /* Tags say nothing: the title decides. */
        CHECK(task_of("Steampunk Airship", generic, 4, "<p>Big airships.</p>") == ST_TASK_VEHICLE);
        CHECK(task_of("Ghibli Style", generic, 4, NULL) == ST_TASK_STYLE);
        CHECK(task_of("Dynamic Poses Pack", generic, 4, NULL) == ST_TASK_POSE);
        CHECK(task_of("Cute Cats", NULL, 0, NULL) == ST_TASK_ANIMAL);
        CHECK(task_of("Catalina", NULL, 0, "<p>A woman.</p>") == ST_TASK_OTHER);
        /* Nor the title: the description's earliest keyword. */
        CHECK(task_of("Retro Futurism", generic, 4,
                      "<p>Retro futurist landscapes, works with any character.</p>") ==
              ST_TASK_BACKGROUND);
        CHECK(task_of("Zeta", NULL, 0, "<p>Nothing to see.</p>") == ST_TASK_OTHER);
}

static double weight_of(const char *prompt0, const char *prompt1, const char *html)
{
        struct st_raw_record r = sample();
        struct st_image imgs[2] = {{"https://image.civitai.com/a.jpeg", (char *)prompt0, NULL},
                                   {"https://image.civitai.com/b.jpeg", (char *)prompt1, NULL}};
        struct st_doc d;

        r.images = imgs;
        r.card_html = (char *)html;
        d = refine(&r);
        return d.recommended_weight;
}

static void test_weight(void)
{
        const char *card = "<p>Recommended weight: 0.6-0.8</p>";

        /* A tag naming the primary file wins, in any prompt. */
        CHECK(near(weight_of("<lora:add_detail:0.5> city", "<lora:ink_wash_xl_v2:1.1> a cat", card),
                   1.1));
        /* Else the first tag of any prompt, over the card. */
        CHECK(near(weight_of(NULL, "<lora:other:0.5> city", card), 0.5));
        /* Clamped. */
        CHECK(near(weight_of("<lora:ink_wash_xl_v2:3>", NULL, card), WEIGHT_MAX));
        CHECK(near(weight_of("<lora:ink_wash_xl_v2:-1>", NULL, card), WEIGHT_MIN));
        /* No tag in prompts: the card text. */
        CHECK(near(weight_of("1girl", NULL, card), 0.7));
        CHECK(
            near(weight_of(NULL, NULL, "<p>Example: &lt;lora:ink_wash_xl_v2:0.55&gt;</p>"), 0.55));
        /* Nothing anywhere: the default. */
        CHECK(near(weight_of("1girl", NULL, "<p>A style. CFG 7, SD 1.5.</p>"), WEIGHT_DEFAULT));
        CHECK(near(weight_of(NULL, NULL, NULL), WEIGHT_DEFAULT));
}

static void test_trigger_words(void)
{
        char *words[] = {NULL, "a,b", "A", " c ", ""};
        struct st_raw_record r = sample();
        struct st_doc d;

        r.trained_words.v = words;
        r.trained_words.n = 5;
        d = refine(&r);
        CHECK(d.trigger_words.n == 3);
        if (d.trigger_words.n == 3) {
                CHECK(str_is(d.trigger_words.v[0], "a"));
                CHECK(str_is(d.trigger_words.v[1], "b"));
                CHECK(str_is(d.trigger_words.v[2], "c"));
        }
        r.trained_words.v = NULL;
        r.trained_words.n = 0;
        d = refine(&r);
        CHECK(d.trigger_words.n == 0);
}

static void test_description(void)
{
        static char html[5000];
        struct st_raw_record r = sample();
        struct st_doc d;
        size_t n = 0, i;

        /* No card text: title and tags. */
        r.card_html = NULL;
        d = refine(&r);
        CHECK(str_is(d.description, "Ink Wash Painting Style: style, ink, traditional art"));
        r.card_html = "<p> </p><script>x()</script>";
        r.tags.n = 0;
        d = refine(&r);
        CHECK(str_is(d.description, "Ink Wash Painting Style"));

        /* Long cards are cut to CARD_DESCRIPTION_MAX at a word; the weight is read from all of it.
         */
        n = (size_t)snprintf(html, sizeof(html), "<p>");
        for (i = 0; i < 300; i++)
                n += (size_t)snprintf(html + n, sizeof(html) - n, "brush ");
        snprintf(html + n, sizeof(html) - n, "</p><p>Recommended weight 0.9</p>");
        r.card_html = html;
        r.images = NULL;
        r.n_images = 0;
        d = refine(&r);
        CHECK(d.description && strlen(d.description) <= CARD_DESCRIPTION_MAX);
        CHECK(d.description && strlen(d.description) > CARD_DESCRIPTION_MAX - 10);
        CHECK(d.description && d.description[strlen(d.description) - 1] == 'h');
        CHECK(near(d.recommended_weight, 0.9));
}

static void test_errors(void)
{
        struct st_raw_record r = sample();
        struct st_error err = {0};
        struct st_doc d;
        static char big[ST_LIMIT_TEXT + 2];

        CHECK(card_refine(NULL, &arena, &d, &err) == ST_EINVAL);
        CHECK(card_refine(&r, NULL, &d, &err) == ST_EINVAL);
        CHECK(card_refine(&r, &arena, NULL, &err) == ST_EINVAL);
        r.name = NULL;
        CHECK(card_refine(&r, &arena, &d, &err) == ST_EMISSING && strstr(err.msg, "name"));
        r = sample();
        r.id = NULL;
        CHECK(card_refine(&r, &arena, &d, NULL) == ST_EMISSING);
        r = sample();
        memset(big, 'a', sizeof(big) - 1);
        r.card_html = big;
        CHECK(card_refine(&r, &arena, &d, &err) == ST_ETOOBIG);
}

int main(void)
{
        arena_init(&arena, 64u << 20);
        test_full_record();
        test_task();
        test_weight();
        test_trigger_words();
        test_description();
        test_errors();
        arena_release(&arena);
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("test_card: ok\n");
        return 0;
}
