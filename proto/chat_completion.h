/*
 * chat_completion.h - reading what an OpenAI-compatible chat endpoint
 * answered, for every client of one: the refiner's VLM (refiner/vlm.c) and
 * the query node's LLM composer (query/composer_llm.c).  All input is
 * hostile (any bytes a server or a model may send); the functions are
 * fuzzed (tests/fuzz/fuzz_vlm_answer.c, fuzz_composer_llm_answer.c).
 *
 * Envelope (an OpenAI chat.completion; extra keys are ignored):
 *   key                            type       notes
 *   choices[0].message.content     str        the model's text; also an array of
 *                                             {type:"text", text} parts, joined
 *   choices[0].message.refusal     str        quoted in the error when no content
 *   usage.prompt_tokens            uint       optional
 *   usage.completion_tokens        uint       optional
 *   error.message (or error)       str        some servers answer 200 with an error
 *
 * The model's text: one JSON object, alone, inside ```json (or ```) fences,
 * or inside prose; chat_find_object() takes the first '{' from which a
 * whole JSON object parses.
 *
 * Ownership: strings out of chat_completion_parse() live in the arena
 * passed in; a json_t from chat_find_object() is a new reference.  Pure
 * functions; any thread.
 */
#ifndef STYLUS_CHAT_COMPLETION_H
#define STYLUS_CHAT_COMPLETION_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/errors.h"

#define CHAT_MAX_BODY     ((size_t)1 << 20)   /* bytes of a chat.completion body */
#define CHAT_CONTENT_MAX  ((size_t)256 << 10) /* bytes of the model's text */
#define CHAT_OBJECT_TRIES 64 /* '{' positions tried when the text is not bare JSON */
#define CHAT_QUOTE_MAX    60 /* bytes of a hostile value quoted in an error */
#define CHAT_QUOTE_SIZE   (CHAT_QUOTE_MAX + 4) /* a buffer chat_quote() always fits in */

/* Tokens an answer reports having used. */
struct chat_usage {
        uint64_t prompt_tokens;
        uint64_t completion_tokens;
        bool known; /* false when the server sent no usage */
};

/*
 * The model's text and the token usage out of a chat.completion body of
 * len bytes (need not be NUL-terminated).  *content is NUL-terminated, in a.
 * Usage is filled even when the content is missing, so tokens are counted.
 * Errors: ST_EINVAL (NULL argument), ST_ETOOBIG (len over CHAT_MAX_BODY,
 * content over CHAT_CONTENT_MAX), ST_EPARSE (not JSON), ST_ETYPE (not an
 * object, choices not an array, content neither a string nor text parts),
 * ST_EMISSING (no choices, message or content; the error message quotes the
 * server's error.message or the model's refusal when there is one),
 * ST_ENOMEM (arena).
 */
int chat_completion_parse(const char *body, size_t len, struct arena *a, char **content,
                          struct chat_usage *usage, struct st_error *err);

/*
 * The first JSON object in text[0..len): bare, fenced or in prose, trying
 * at most CHAT_OBJECT_TRIES '{' positions; NULL when there is none.  The
 * caller owns the reference (json_decref).
 */
json_t *chat_find_object(const char *text, size_t len);

/*
 * The error.message of an OpenAI-style error body ({"error":{"message":..}}
 * or {"error":"..."}), control characters replaced by spaces, cut to fit
 * out[size] without cutting a UTF-8 character.  Returns false (out = "")
 * when there is none or the body is over CHAT_MAX_BODY.
 */
bool chat_error_message(const char *body, size_t len, char *out, size_t size);

/*
 * s[0..n) for an error message into dst[size] (size >= 4): printable ASCII
 * kept, any other byte '?', at most CHAT_QUOTE_MAX bytes, "..." when cut.
 * Model output can hold control characters that would forge log lines;
 * they never reach a message through this.
 */
void chat_quote(char *dst, size_t size, const char *s, size_t n);

#endif
