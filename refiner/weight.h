/*
 * weight.h - the recommended LoRA weight, read the way the paper's refiner
 * prompt asks for it: default 0.8; a range gives its mean; a <lora:NAME:W>
 * tag in an example prompt overrides what the card says.
 *
 * Two sources:
 *   card text    "Recommended weight: 0.7", "strength 0.6-0.8", "use at
 *                0.6 to 0.8", "0.6~0.8 works best" ...  Only numbers near a
 *                weight word count, and not numbers that are something else
 *                ("SD 1.5", "v1.5", "CFG 7", "Clip skip 2", "denoising
 *                strength 0.4", "512x768", "20 steps").
 *   prompts      A1111 / Forge syntax <lora:NAME:W>, <lora:NAME:W:...>,
 *                <lyco:NAME:W>.
 *
 * All functions are pure: no allocation, any thread.
 */
#ifndef STYLUS_REFINER_WEIGHT_H
#define STYLUS_REFINER_WEIGHT_H

#include <stddef.h>

#include "proto/errors.h"

#define WEIGHT_DEFAULT 0.8
#define WEIGHT_MIN     0.05
#define WEIGHT_MAX     2.0

/* w limited to WEIGHT_MIN..WEIGHT_MAX; NaN gives WEIGHT_DEFAULT. */
double weight_clamp(double w);

/*
 * The first weight stated in text[0..len) (need not be NUL-terminated): a
 * number or a range (separators "-", "~", "to", en and em dash, each with or
 * without spaces; a range gives its mean) that stands within a few words of
 * weight, strength, recommended, scale, multiplier, "use at", "best at", on
 * the same line, and lies in WEIGHT_MIN..WEIGHT_MAX (each end of a range in
 * 0..WEIGHT_MAX).
 * Returns 0 with *w set, or ST_ENOTFOUND with *w = WEIGHT_DEFAULT;
 * ST_EINVAL when w is NULL.
 */
int weight_from_text(const char *text, size_t len, double *w);

/*
 * Weight of a <lora:NAME:W> (or <lora:NAME:W:...>, <lyco:NAME:W>) tag in a
 * NUL-terminated prompt.  With several tags, the first whose NAME equals
 * lora_name_hint wins, else the first tag.  Names are compared
 * case-insensitively by their stem: directories and a .safetensors, .ckpt,
 * .pt, .pth or .bin extension are ignored, so the hint may be a file name.
 * W is returned as written (it may be negative or above WEIGHT_MAX); tags
 * without a number are skipped.  lora_name_hint may be NULL.
 * Returns 0 with *w set, ST_ENOTFOUND when there is no tag (or prompt is
 * NULL), ST_EINVAL when w is NULL.
 */
int weight_from_prompt(const char *prompt, const char *lora_name_hint, double *w);

/*
 * Like weight_from_prompt() but only a tag whose NAME equals lora_name
 * counts; ST_ENOTFOUND otherwise.  Lets a caller prefer a matching tag in any
 * of several prompts over the first tag of the first prompt.
 */
int weight_from_prompt_match(const char *prompt, const char *lora_name, double *w);

#endif
