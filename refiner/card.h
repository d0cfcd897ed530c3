/*
 * card.h - the offline card refiner: a StylusDoc from a raw_record without a
 * VLM, deriving what the paper's refiner asks the VLM for from the card text
 * and the example prompts.
 *
 *   description        card HTML as text (html_to_text), cut to
 *                      CARD_DESCRIPTION_MAX bytes like the paper's composer
 *                      cuts raw descriptions; when the card has no text,
 *                      "<name>: <tag>, <tag>, ..." (or just the name).
 *   trigger_words      trained_words split at commas, trimmed, empty ones
 *                      dropped, de-duplicated ignoring ASCII case, first
 *                      spelling kept; at most ST_LIMIT_ARRAY.
 *   recommended_weight a <lora:NAME:W> tag in an example prompt (one naming
 *                      the primary file in any prompt first, else the first
 *                      tag of the first prompt that has one), else a tag in
 *                      the card text, else the weight the card text states,
 *                      else WEIGHT_DEFAULT; clamped to WEIGHT_MIN..WEIGHT_MAX.
 *   task               the first category of the task table found among the
 *                      tags (whole tag, any case), else in the title, else in
 *                      the description (whole words); else "other".
 *   refined_by         "card"; embedding_model NULL.
 * Every other field is the record's own.  The primary file is the first
 * .safetensors file, else the first file.
 *
 * Ownership: out borrows from r: its identity strings, tags, stats, files
 * and images point into r's storage, so r's arena must outlive out (the
 * usual case: both live in the job's arena).  The new strings and the
 * trigger word array are allocated in a.
 *
 * Thread rules: any thread; nothing is shared.
 */
#ifndef STYLUS_REFINER_CARD_H
#define STYLUS_REFINER_CARD_H

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define CARD_DESCRIPTION_MAX 1000 /* bytes, the paper's composer limit */

/*
 * Refine r into *out.  Errors: ST_EINVAL (NULL argument), ST_EMISSING (r has
 * no id, source or name), ST_ETOOBIG (card_html over ST_LIMIT_TEXT),
 * ST_ENOMEM (arena limit).  On error *out is unspecified.
 */
int card_refine(const struct st_raw_record *r, struct arena *a, struct st_doc *out,
                struct st_error *err);

/*
 * The weight of a <lora:NAME:W> tag in r's example prompts, by the rule
 * above (a tag naming the primary file in any prompt, else the first tag of
 * the first prompt that has one), clamped.  Returns 0 with *w set, or
 * ST_ENOTFOUND.  The VLM refiner applies it too: such a tag overrides what
 * the VLM answers.  Pure; any thread.
 */
int card_prompt_weight(const struct st_raw_record *r, double *w);

#endif
