/*
 * vlm_prompt.h - what the VLM refiner sends: the paper's refiner input
 * (Stylus §3.1, Table 2) as an OpenAI chat-completions request.
 *
 * Request body (POST <base>/chat/completions; OpenAI, vLLM, llama.cpp
 * server and Ollama all take this shape):
 *
 *   key              value
 *   model            the configured model name
 *   temperature      0 (a retry after malformed output uses VLM_RETRY_TEMPERATURE)
 *   max_tokens       VLM_MAX_TOKENS (the paper rejects longer outputs)
 *   response_format  {"type":"json_object"}, only in JSON mode (--vlm-json-mode)
 *   messages[0]      {"role":"system", "content": a one-line role statement}
 *   messages[1]      {"role":"user", "content": parts, in this order:
 *                      {"type":"text","text": card text}
 *                      per image (at most VLM_MAX_IMAGES):
 *                        {"type":"image_url","image_url":{"url":"data:<type>;base64,<bytes>"}}
 *                        {"type":"text","text":"Prompt: <its prompt>"}
 *                      {"type":"text","text": the instruction, vlm_instruction()}}
 *
 * Card text: "Title: <name>; Tags: <a, b>; Trigger Words: <x, y>;
 * Description: <card HTML as text, cut at VLM_CARD_TEXT_MAX bytes>".
 * Image prompts leave out negative prompts on purpose (they confused the
 * paper's VLM): the record carries positive prompts only, and a pasted
 * A1111 parameter block is cut at "Negative prompt:" or a "Steps:" line.
 *
 * The instruction asks for one JSON object {task, description,
 * recommended_weight}; refiner/vlm_answer.h reads it.  Changing the
 * instruction means a new VLM_PROMPT_VERSION, which makes the catalog
 * refine every doc again (docs/refiner.md, "Re-refining").
 *
 * Ownership: strings returned in an arena live until arena_release(); the
 * request body is malloc'd and the caller frees it.  Pure functions; any
 * thread.
 */
#ifndef STYLUS_REFINER_VLM_PROMPT_H
#define STYLUS_REFINER_VLM_PROMPT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define VLM_PROMPT_VERSION    "p1"
#define VLM_MAX_IMAGES        10                 /* example images per request, as in the paper */
#define VLM_CARD_TEXT_MAX     4000               /* bytes of card description in the card text */
#define VLM_IMAGE_PROMPT_MAX  1000               /* bytes of one image prompt */
#define VLM_MAX_TOKENS        1000               /* max_tokens of the answer */
#define VLM_RETRY_TEMPERATURE 0.4                /* after malformed output, so the retry differs */
#define VLM_REQUEST_MAX       ((size_t)32 << 20) /* body cap: 10 images of 2 MB in base64 fit */

/* One example image to send: its bytes and the text that follows it. */
struct vlm_image {
        const char *media_type;    /* "image/png" ... */
        const unsigned char *data; /* len bytes */
        size_t len;
        const char *prompt_text; /* "Prompt: ...", from vlm_image_prompt_text() */
};

struct vlm_request {
        const char *model;     /* printable ASCII */
        bool json_mode;        /* send response_format json_object */
        double temperature;    /* 0 .. 2 */
        const char *card_text; /* from vlm_card_text() */
        const struct vlm_image *images;
        size_t n_images; /* at most VLM_MAX_IMAGES are sent */
};

/*
 * The card text of r; trigger_words are the cleaned ones of the card doc.
 * Errors: ST_EINVAL (NULL argument), ST_ETOOBIG (card_html over
 * ST_LIMIT_TEXT), ST_ENOMEM (arena).
 */
int vlm_card_text(const struct st_raw_record *r, const struct st_strv *trigger_words,
                  struct arena *a, char **out, struct st_error *err);

/* "Prompt: <prompt>" with negative prompt and parameters cut; NULL prompt gives
 * "Prompt: (not given)".  NULL when the arena is full. */
char *vlm_image_prompt_text(const char *prompt, struct arena *a);

/* The fixed instruction of VLM_PROMPT_VERSION (a static string). */
const char *vlm_instruction(void);

/*
 * The request body as JSON in *body (malloc'd, NUL-terminated, caller
 * frees), *len bytes.  Errors: ST_EINVAL (NULL argument or model),
 * ST_ETOOBIG (over VLM_REQUEST_MAX), ST_ENOMEM.
 */
int vlm_request_body(const struct vlm_request *q, char **body, size_t *len, struct st_error *err);

#endif
