/*
 * test_weight.c - recommended weight from card text and from <lora:NAME:W>
 * tags: every accepted form, the numbers that must be ignored, and the tag
 * choice with and without a name hint.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proto/errors.h"
#include "refiner/weight.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static bool near(double a, double b)
{
        return fabs(a - b) < 1e-9;
}

/* Whether the card text states weight want (want < 0: states none). */
static bool text_gives(const char *text, double want)
{
        double w = -1;
        int rc = weight_from_text(text, strlen(text), &w);

        if (want < 0 ? (rc == ST_ENOTFOUND && near(w, WEIGHT_DEFAULT)) : (rc == 0 && near(w, want)))
                return true;
        fprintf(stderr, "for \"%s\": want %g, got rc %d w %g\n", text, want, rc, w);
        return false;
}

static bool prompt_gives(const char *prompt, const char *hint, double want)
{
        double w = -99;
        int rc = weight_from_prompt(prompt, hint, &w);

        if (want < -50 ? rc == ST_ENOTFOUND : (rc == 0 && near(w, want)))
                return true;
        fprintf(stderr, "for \"%s\" hint %s: want %g, got rc %d w %g\n", prompt ? prompt : "NULL",
                hint ? hint : "NULL", want, rc, w);
        return false;
}

static void test_single_numbers(void)
{
        CHECK(text_gives("Recommended weight: 0.7", 0.7));
        CHECK(text_gives("WEIGHT: 0.75", 0.75));
        CHECK(text_gives("Use at 0.6 for subtle results.", 0.6));
        CHECK(text_gives("LoRA weight 1", 1.0));
        CHECK(text_gives("Lora strength = 1.2.", 1.2));
        CHECK(text_gives("use at .7", 0.7));
        CHECK(text_gives("0.9 strength works best", 0.9));
        CHECK(text_gives("Recommended: <b>0.8</b>", 0.8));
        CHECK(text_gives("Multiplier (0.65)", 0.65));
        CHECK(text_gives("Scale: 0.5", 0.5));
        CHECK(text_gives("Works best at 1.1", 1.1));
}

static void test_ranges(void)
{
        CHECK(text_gives("weight 0.6-0.8", 0.7));
        CHECK(text_gives("weight 0.6 - 0.8", 0.7));
        CHECK(text_gives("weight 0.6~0.8", 0.7));
        CHECK(text_gives("weight 0.6 ~ 0.8", 0.7));
        CHECK(text_gives("weight 0.6 to 0.8", 0.7));
        CHECK(text_gives("weight 0.6\xE2\x80\x93"
                         "0.8",
                         0.7)); /* en dash */
        CHECK(text_gives("weight 0.6 \xE2\x80\x93 0.8", 0.7));
        CHECK(text_gives("weight 0.6\xE2\x80\x94"
                         "0.8",
                         0.7)); /* em dash */
        CHECK(text_gives("weight 0.6\xEF\xBD\x9E"
                         "0.8",
                         0.7)); /* fullwidth tilde */
        CHECK(text_gives("Strength 0.5 TO 1.0", 0.75));
        CHECK(text_gives("0.6-0.8 is the recommended weight", 0.7));
        CHECK(text_gives("Use it at 1-1.2", 1.1));
        /* "to" that is not a separator leaves a single number. */
        CHECK(text_gives("Use weight 0.7 to get soft lines", 0.7));
        CHECK(text_gives("weight 0.7 tomorrow", 0.7));
        /* A range with an end beyond the weight range is not a weight range. */
        CHECK(text_gives("weight 0.5-3", -1));
}

static void test_ignored_numbers(void)
{
        CHECK(text_gives("A lovely style LoRA with no numbers.", -1));
        CHECK(text_gives("", -1));
        CHECK(text_gives("weight 3", -1));
        CHECK(text_gives("weight 0.01", -1));
        CHECK(text_gives("weight -0.5", -1));
        CHECK(text_gives("strength 70%", -1));
        CHECK(text_gives("weight 5, but 0.9 is recommended", 0.9));
        /* Versions and base models. */
        CHECK(text_gives("Trained on SD 1.5, use weight 0.7", 0.7));
        CHECK(text_gives("Version v1.5: recommended weight 0.9", 0.9));
        CHECK(text_gives("Recommended: SDXL 1.0", -1));
        CHECK(text_gives("Recommended base: sd1.5", -1));
        CHECK(text_gives("recommended version 1.2", -1));
        CHECK(text_gives("weight for v2 is 1.1", 1.1));
        CHECK(text_gives("Weights 1.2.3 are old", -1));
        /* Other settings. */
        CHECK(text_gives("Recommended settings: Steps 20, CFG 7, Clip skip 2, weight 0.65", 0.65));
        CHECK(text_gives("Recommended: CFG scale 1.5", -1));
        CHECK(text_gives("Denoising strength 0.4", -1));
        CHECK(text_gives("Hires upscale 1.5, lora strength 1", 1.0));
        CHECK(text_gives("Recommended: DPM++ 2M Karras, 1.5x upscale", -1));
        CHECK(text_gives("Recommended resolution 512x768, weight 1.2", 1.2));
        CHECK(text_gives("Recommended: 2 steps", -1));
        CHECK(text_gives("Recommended ratio 16:9 and 1:1", -1));
        CHECK(text_gives("Recommended date 2023-05-01", -1));
        /* A number far from any weight word, or on another line, is not a weight. */
        CHECK(text_gives("There are 1.5 reasons to like this, and that's all we will say about the "
                         "weight",
                         -1));
        CHECK(text_gives("weight:\n0.7", -1));
        CHECK(text_gives("weight (see below)\n\n1. step one", -1));
}

static void test_arguments(void)
{
        double w = 0;

        CHECK(weight_from_text(NULL, 0, &w) == ST_ENOTFOUND && near(w, WEIGHT_DEFAULT));
        CHECK(weight_from_text("weight 0.7", 10, NULL) == ST_EINVAL);
        /* Only len bytes are read. */
        CHECK(weight_from_text("weight 0.75", 10, &w) == 0 && near(w, 0.7));
        CHECK(weight_from_prompt("<lora:a:0.5>", NULL, NULL) == ST_EINVAL);
        CHECK(weight_from_prompt_match("<lora:a:0.5>", "a", NULL) == ST_EINVAL);
}

static void test_lora_tags(void)
{
        const char *two = "masterpiece, <lora:add_detail:0.5>, <lora:inkStyle_v2:0.9>, 1girl";

        CHECK(prompt_gives("masterpiece, <lora:inkStyle:0.7>, 1girl", NULL, 0.7));
        CHECK(prompt_gives("masterpiece, <lora:inkStyle:0.7>, 1girl", "other", 0.7));
        CHECK(prompt_gives(two, NULL, 0.5));
        CHECK(prompt_gives(two, "nothing_like_it.safetensors", 0.5));
        CHECK(prompt_gives(two, "inkStyle_v2.safetensors", 0.9));
        CHECK(prompt_gives(two, "INKSTYLE_V2", 0.9));
        CHECK(prompt_gives(two, "models/Lora/inkStyle_v2.ckpt", 0.9));
        CHECK(prompt_gives("<lora:inkStyle:0.8:lbw=OUTD>", NULL, 0.8));
        CHECK(prompt_gives("<lora:inkStyle:0.8:0.6>", NULL, 0.8));
        CHECK(prompt_gives("<lyco:foo:0.6>", NULL, 0.6));
        CHECK(prompt_gives("<LORA:Foo:1>", "foo", 1.0));
        CHECK(prompt_gives("<lora:foo: 0.7 >", NULL, 0.7));
        CHECK(prompt_gives("<lora:slider:-2>", NULL, -2.0));
        CHECK(prompt_gives("<lora:dir/foo.safetensors:0.4> <lora:bar:0.3>", "foo", 0.4));
        CHECK(prompt_gives("a <lora:foo> b <lora:bar:0.3>", NULL, 0.3));
        CHECK(prompt_gives("<lora:foo>", NULL, -99));
        CHECK(prompt_gives("<lora:foo:abc>", NULL, -99));
        CHECK(prompt_gives("<lora:foo:0.5", NULL, -99));
        CHECK(prompt_gives("<lora::0.5>", NULL, -99));
        CHECK(prompt_gives("<hypernet:foo:0.5>", NULL, -99));
        CHECK(prompt_gives("no tags at all", NULL, -99));
        CHECK(prompt_gives("", NULL, -99));
        CHECK(prompt_gives(NULL, "foo", -99));
        CHECK(prompt_gives("<<<lora:<lora:x:0.25>", NULL, 0.25));
}

static void test_prompt_match(void)
{
        double w = 0;

        CHECK(weight_from_prompt_match("<lora:a:0.5> <lora:b:0.6>", "b", &w) == 0 && near(w, 0.6));
        CHECK(weight_from_prompt_match("<lora:a:0.5>", "b", &w) == ST_ENOTFOUND);
        CHECK(weight_from_prompt_match("<lora:a:0.5>", NULL, &w) == ST_ENOTFOUND);
        CHECK(weight_from_prompt_match(NULL, "a", &w) == ST_ENOTFOUND);
}

static void test_clamp(void)
{
        CHECK(near(weight_clamp(5), WEIGHT_MAX));
        CHECK(near(weight_clamp(0), WEIGHT_MIN));
        CHECK(near(weight_clamp(-2), WEIGHT_MIN));
        CHECK(near(weight_clamp(0.7), 0.7));
        CHECK(near(weight_clamp(NAN), WEIGHT_DEFAULT));
}

int main(void)
{
        test_single_numbers();
        test_ranges();
        test_ignored_numbers();
        test_arguments();
        test_lora_tags();
        test_prompt_match();
        test_clamp();
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("test_weight: ok\n");
        return 0;
}
