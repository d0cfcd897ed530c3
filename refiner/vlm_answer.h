/*
 * vlm_answer.h - reading what the VLM answered: the chat-completions
 * envelope, then the model's own text, validated.  Both parsers take
 * hostile input (any bytes a server or a model may send) and are fuzzed
 * (tests/fuzz/fuzz_vlm_answer.c).
 *
 * Envelope (an OpenAI chat.completion; extra keys are ignored):
 *   key                            type       notes
 *   choices[0].message.content     str        the model's text; also an array of
 *                                             {type:"text", text} parts, joined
 *   choices[0].finish_reason       str        "length" is named in errors
 *   usage.prompt_tokens            uint       optional
 *   usage.completion_tokens        uint       optional
 *   error.message                  str        some servers answer 200 with an error
 *
 * Answer (the model's text): one JSON object, alone, inside ```json (or ```)
 * fences, or inside prose; the first '{' from which a whole JSON object
 * parses is taken.
 *   key                 type      rule
 *   task                str       a task name of proto/doc.h (any case, trimmed)
 *   description         str       control characters (C0 but newline, DEL, C1)
 *                                 and bidi controls removed, whitespace trimmed,
 *                                 then cut at VLM_DESCRIPTION_MAX bytes on a word
 *                                 or sentence boundary (text_cut: never inside a
 *                                 UTF-8 sequence); must not end up empty
 *   recommended_weight  number    WEIGHT_MIN .. WEIGHT_MAX (0.05 .. 2.0)
 *
 * Ownership: strings out of these functions live in the arena passed in.
 * Pure functions; any thread.
 */
#ifndef STYLUS_REFINER_VLM_ANSWER_H
#define STYLUS_REFINER_VLM_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define VLM_ANSWER_MAX_BODY   ((size_t)1 << 20)   /* bytes of a chat.completion body */
#define VLM_CONTENT_MAX       ((size_t)256 << 10) /* bytes of the model's text */
#define VLM_DESCRIPTION_MAX   2000                /* bytes of a description kept */
#define VLM_ANSWER_CANDIDATES 64 /* '{' positions tried when the text is not bare JSON */

/* Tokens an answer reports having used. */
struct vlm_usage {
        uint64_t prompt_tokens;
        uint64_t completion_tokens;
        bool known; /* false when the server sent no usage */
};

/* What the model said, validated. */
struct vlm_answer {
        enum st_task task;
        char *description; /* cleaned and cut, in the arena */
        double weight;     /* WEIGHT_MIN .. WEIGHT_MAX */
};

/*
 * The model's text and the token usage out of a chat.completion body of
 * len bytes (need not be NUL-terminated).  *content is NUL-terminated, in a.
 * Usage is filled even when the content is missing, so tokens are counted.
 * Errors: ST_EINVAL (NULL argument), ST_ETOOBIG (len over
 * VLM_ANSWER_MAX_BODY, content over VLM_CONTENT_MAX), ST_EPARSE (not JSON),
 * ST_ETYPE (not an object, choices not an array, content neither a string
 * nor text parts), ST_EMISSING (no choices, message or content; the error
 * message quotes the server's error.message or refusal when there is one),
 * ST_ENOMEM (arena).
 */
int vlm_completion_parse(const char *body, size_t len, struct arena *a, char **content,
                         struct vlm_usage *usage, struct st_error *err);

/*
 * Read and validate the model's text (len bytes, need not be
 * NUL-terminated) into *out.  Errors: ST_EINVAL (NULL argument; unknown
 * task; weight out of range), ST_ETOOBIG (len over VLM_CONTENT_MAX),
 * ST_EPARSE (no JSON object found), ST_EMISSING (a key absent, or the
 * description empty once cleaned), ST_ETYPE (a key of the wrong type),
 * ST_ENOMEM (arena).  err names the key and, for values, quotes at most a
 * few dozen bytes of them.
 */
int vlm_answer_parse(const char *content, size_t len, struct arena *a, struct vlm_answer *out,
                     struct st_error *err);

/*
 * The error.message of an OpenAI-style error body ({"error":{"message":..}}
 * or {"error":"..."}), control characters replaced by spaces, cut to fit
 * out[size].  Returns false (out = "") when there is none.
 */
bool vlm_error_message(const char *body, size_t len, char *out, size_t size);

#endif
