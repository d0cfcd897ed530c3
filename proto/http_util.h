/*
 * http_util.h - the pieces the two OpenAI-compatible HTTP clients share:
 * the embeddings client (indexer/embed_http.c), the VLM chat client
 * (refiner/vlm_http.c, refiner/vlm.c, refiner/vlm_answer.c) and the LLM
 * composer (query/composer_llm.c).  The chat-completion answer reader is
 * proto/chat_completion.h.
 *
 * Pure functions without libcurl, so that they are tested on plain bytes:
 * where curl is needed (the Content-Length a transfer announced, HTTP-date
 * parsing) the caller asks curl and passes the answer or curl's function
 * in; the POST itself is proto/http_post.h.  All functions are safe to call
 * from any thread.
 */
#ifndef STYLUS_HTTP_UTIL_H
#define STYLUS_HTTP_UTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "proto/errors.h"

#define HTTP_UTIL_BODY_FIRST_ALLOC 16384 /* bytes of a response body's first allocation */
#define HTTP_UTIL_KEY_WINDOW       8     /* bytes of a key that make a message quote it */

/* Whether every byte of s is printable ASCII (0x20..0x7e); true for "". */
bool http_util_printable_ascii(const char *s);

/*
 * The endpoint URL of a configured base url, malloc'd (caller frees), NULL
 * when out of memory.  tail is the endpoint path ("/embeddings",
 * "/chat/completions").  Trailing slashes are cut; a url already ending in
 * tail is kept; a url without a path gets "/v1" before tail:
 *   http://h:8080            -> http://h:8080/v1/embeddings
 *   http://h:8080/api/v1/    -> http://h:8080/api/v1/embeddings
 *   http://h/v1/embeddings/  -> http://h/v1/embeddings
 */
char *http_util_endpoint(const char *url, const char *tail);

/*
 * A Retry-After value (leading blanks allowed) in ms from now: delta
 * seconds, or an HTTP date read by parse_date (curl_getdate; it returns -1
 * when it cannot read the text).  A date in the past is 0; anything over
 * max_ms, or a negative or overflowing number, is max_ms; -1 when the
 * value is unreadable.  now is time(NULL) in production.
 */
long http_util_retry_after_ms(const char *value, long max_ms, time_t now,
                              time_t (*parse_date)(const char *text, const time_t *unused));

/*
 * Follow Retry-After through the response header lines (n bytes each, as
 * curl's header callback gets them, CRLF included): a status line ("HTTP/")
 * starts a new response and sets *retry_after_ms to -1; a Retry-After line
 * under 256 bytes sets it to http_util_retry_after_ms() of its value.
 * Other lines leave it as it is.
 */
void http_util_header_retry_after(const char *line, size_t n, long max_ms, time_t now,
                                  time_t (*parse_date)(const char *text, const time_t *unused),
                                  long *retry_after_ms);

/*
 * Append n bytes of data to a response body: *body holds *len bytes and a
 * NUL in *cap allocated bytes (NULL/0/0 at first; the caller frees *body)
 * and may hold at most max bytes.  announced is the Content-Length of the
 * response, <= 0 when unknown.  The first allocation is
 * HTTP_UTIL_BODY_FIRST_ALLOC bytes, then it doubles, never past max + 1.
 * Returns 0, or ST_ETOOBIG when n more bytes or the announced length pass
 * max, or ST_ENOMEM; on error the body is unchanged.
 */
int http_util_body_append(char **body, size_t *len, size_t *cap, size_t max, const char *data,
                          size_t n, int64_t announced);

/*
 * A bearer key from file (when not NULL), else from the environment
 * variable env (when set), into buf[size] without surrounding whitespace;
 * "" when neither gives one.  Returns 0, or ST_EINVAL when the file cannot
 * be read or the key is over size - 1 bytes: err names the file or the
 * variable, never the key, and buf is wiped.  Reads the environment: call
 * it before starting threads.
 */
int http_util_read_key(const char *file, const char *env, char *buf, size_t size,
                       struct st_error *err);

/*
 * Whether msg holds any HTTP_UTIL_KEY_WINDOW consecutive bytes of key (the
 * whole key when it is shorter): a server echoing the key.  Such a message
 * must be withheld, not logged.  false for a NULL or empty key.
 */
bool http_util_quotes_key(const char *msg, const char *key);

/* "an object", "an array", "a string", ...: the type of v for an error message. */
const char *http_util_json_type_name(const json_t *v);

#endif
