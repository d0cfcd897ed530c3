/*
 * vlm_answer.h - reading what the VLM answered: the model's own text,
 * validated, once proto/chat_completion.h has read the chat-completions
 * envelope.  Both parsers take hostile input (any bytes a server or a model
 * may send) and are fuzzed (tests/fuzz/fuzz_vlm_answer.c).
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
#include "proto/chat_completion.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define VLM_ANSWER_MAX_BODY CHAT_MAX_BODY    /* bytes of a chat.completion body */
#define VLM_CONTENT_MAX     CHAT_CONTENT_MAX /* bytes of the model's text */
#define VLM_DESCRIPTION_MAX 2000             /* bytes of a description kept */

/* What the model said, validated. */
struct vlm_answer {
        enum st_task task;
        char *description; /* cleaned and cut, in the arena */
        double weight;     /* WEIGHT_MIN .. WEIGHT_MAX */
};

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

#endif
