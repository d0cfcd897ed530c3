/*
 * embed_http.h - a client of an OpenAI-compatible embeddings endpoint
 * (OpenAI, Azure-style proxies, vLLM, text-embeddings-inference, Ollama,
 * llama.cpp server): texts in, one L2-normalized vector of dim floats per
 * text out.
 *
 * Wire format (POST <endpoint>, Content-Type application/json):
 *
 *   request key       type          notes
 *   model             str           the configured model name
 *   input             [str]         1 .. batch texts, each cut to EMBED_HTTP_MAX_TEXT
 *                                   bytes on a UTF-8 boundary; invalid UTF-8 bytes
 *                                   become '?'
 *   encoding_format   "float"       base64 answers are not read
 *   dimensions        uint          only with send_dimensions (text-embedding-3-*
 *                                   can shorten their vectors; others refuse it)
 *
 *   response key                type     rule
 *   data                        array    exactly one entry per input text
 *   data[].index                int      0 .. n-1, each once; entries may come in any
 *                                        order, each is placed by its index
 *   data[].embedding            [num]    exactly dim finite numbers that fit a float
 *   error.message (or error,    str      an error object instead of data: the
 *     message, detail)                   server's message is quoted (cut, printable
 *                                        ASCII only) unless it quotes the key
 *   object, model, usage        -        ignored
 *
 * Vectors are L2-normalized after receipt (a server's all-zero vector stays
 * zero), so inner product = cosine, as with the built-in embedder
 * (proto/embed.h) whose index the shards scan the same way.
 *
 * One call, embed_http_embed(): the texts go out in batches of at most
 * `batch` texts and max_request_bytes of body.  Each batch gets at most
 * max_attempts attempts within deadline_ms of its start:
 *   - 408, 429, 5xx, timeouts, connection failures and resets are retried
 *     after Retry-After when the server sends one (seconds or an HTTP date),
 *     else after retry_base_ms doubling per retry up to retry_max_ms, with
 *     jitter (a delay d is drawn from [d/2, d]);
 *   - a retry whose wait would pass the deadline is not started;
 *   - any other status (400, 401, 403, 404 ...) and a 2xx whose body breaks
 *     the rules above are not retried: the same request would get the same
 *     answer (the indexer's job is retried later by the catalog's broker).
 *
 * Secrets: the key is copied at embed_http_new, sent only in the
 * Authorization header of requests to the endpoint (no redirects are
 * followed), wiped at embed_http_destroy, and never put in a log line, an
 * error message or the stats.  An error message that would quote any 8
 * bytes of the key (a server echoing it) is withheld.
 *
 * Thread rules: an embed_http belongs to one thread at a time (the indexer's
 * job threads take turns; the query node's HTTP thread owns its own).  The
 * parsing functions at the bottom are pure and may be called from any thread.
 */
#ifndef STYLUS_INDEXER_EMBED_HTTP_H
#define STYLUS_INDEXER_EMBED_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"

#define EMBED_HTTP_USER_AGENT                                                                      \
        "stylus-catalog/0.1 (LoRA catalog indexer; +https://github.com/stylus-catalog)"
#define EMBED_HTTP_MODEL_MAX       63   /* bytes of a model name (vecstore: 64 with NUL) */
#define EMBED_HTTP_KEY_MAX         4096 /* bytes of a key */
#define EMBED_HTTP_DEFAULT_BATCH   64   /* texts per request */
#define EMBED_HTTP_MAX_BATCH       2048 /* OpenAI's limit of inputs per request */
#define EMBED_HTTP_REQUEST_BYTES   ((size_t)1 << 20)   /* default body cap of one request */
#define EMBED_HTTP_MIN_REQUEST     ((size_t)256 << 10) /* smallest body cap: fits any one text */
#define EMBED_HTTP_MAX_TEXT        ((size_t)32 << 10)  /* bytes of one text sent (~8k tokens) */
#define EMBED_HTTP_BYTES_PER_NUM   40                  /* response budget per number */
#define EMBED_HTTP_BODY_SLACK      ((size_t)64 << 10)  /* response budget besides the numbers */
#define EMBED_HTTP_MAX_BODY        ((size_t)128 << 20) /* response cap, whatever n and dim */
#define EMBED_HTTP_QUOTE_MAX       120                 /* bytes of a server message quoted */
#define EMBED_HTTP_RETRY_AFTER_MAX 3600000L            /* ms; a longer Retry-After counts as this */

struct embed_http_config {
        /*
         * Endpoint, http or https: a base URL as the OpenAI SDKs take it
         * ("https://api.openai.com/v1"), to which "/embeddings" is added; a
         * bare origin ("http://127.0.0.1:8080"), to which "/v1/embeddings"
         * is added; or a URL already ending in "/embeddings".
         */
        const char *url;
        const char *model;        /* 1..EMBED_HTTP_MODEL_MAX printable ASCII bytes */
        int dim;                  /* floats per vector, 1..EMBED_MAX_DIM; checked on every answer */
        bool send_dimensions;     /* send "dimensions": dim (false) */
        const char *key;          /* bearer key, or NULL for servers without one; copied */
        unsigned batch;           /* texts per request, 1..EMBED_HTTP_MAX_BATCH (64) */
        size_t max_request_bytes; /* body cap, >= EMBED_HTTP_MIN_REQUEST (1 MiB) */
        long timeout_ms;          /* one request, connect included (30000) */
        long deadline_ms;         /* one batch: attempts and waits (120000) */
        unsigned max_attempts;    /* per batch, >= 1 (6) */
        unsigned retry_base_ms;   /* first backoff (1000) */
        unsigned retry_max_ms;    /* backoff ceiling (30000) */
        const char *user_agent;   /* (EMBED_HTTP_USER_AGENT) */
};

/* Counters since embed_http_new; every one only grows. */
struct embed_http_stats {
        uint64_t texts;         /* texts embedded */
        uint64_t requests;      /* requests sent */
        uint64_t retries;       /* of which retries */
        uint64_t rate_limited;  /* 429 answers */
        uint64_t server_errors; /* 408 and 5xx answers */
        uint64_t timeouts;      /* requests past their timeout */
        uint64_t malformed;     /* 2xx answers that broke the response rules */
        uint64_t failures;      /* embed_http_embed calls that failed */
};

struct embed_http;

/* Fill c with the defaults in parentheses above; url, model, key NULL, dim 0. */
void embed_http_config_defaults(struct embed_http_config *c);

/*
 * Make a client from c (copied).  Returns 0, ST_EINVAL (err names the bad
 * field: url not http(s), model empty, too long or not printable ASCII, dim,
 * batch, body cap, timeouts or attempts out of range, key over
 * EMBED_HTTP_KEY_MAX or not printable ASCII) or ST_ENOMEM.  No request is
 * sent.  Call from the main thread before other threads start (it calls
 * curl_global_init).
 */
int embed_http_new(const struct embed_http_config *c, struct embed_http **out,
                   struct st_error *err);

/* Close the connection, wipe the key, free h; *h becomes NULL.  NULL is fine. */
void embed_http_destroy(struct embed_http **h);

/*
 * Embed texts[0..n-1] (NUL-terminated UTF-8) into out[n * dim]: text i's
 * L2-normalized vector at out + i * dim.  Returns 0, or the error of the
 * first batch that failed (out is then undefined), err saying why and after
 * how many attempts:
 *   ST_EINVAL    NULL argument, n == 0
 *   ST_EHTTP     a status that is not retried, or the last retried one; the
 *                server's message quoted
 *   ST_EAGAIN    429 on the last attempt; a retryable status whose retry
 *                (Retry-After or backoff) would pass the deadline; or a
 *                signal interrupted a wait (the process is stopping)
 *   ST_ETIMEOUT  the last attempt timed out, or no time was left
 *   ST_ENET, ST_ETRUNC   connection failed or reset on the last attempt
 *   ST_ETOOBIG   response over its cap (embed_response_max_body)
 *   and every error of embed_response_parse() for a malformed 2xx answer.
 */
int embed_http_embed(struct embed_http *h, const char *const *texts, size_t n, float *out,
                     struct st_error *err);

/* The model name, dim and resolved endpoint of h (borrowed for h's life). */
const char *embed_http_model(const struct embed_http *h);
int embed_http_dim(const struct embed_http *h);
const char *embed_http_endpoint(const struct embed_http *h);

/* A copy of h's counters. */
void embed_http_get_stats(const struct embed_http *h, struct embed_http_stats *out);

/* ---- pure functions: reading an answer (fuzzed: tests/fuzz/fuzz_embed_response.c) ---- */

/* Response cap for n texts of dim floats: slack + n * dim * 40 bytes, at most EMBED_HTTP_MAX_BODY. */
size_t embed_response_max_body(size_t n, int dim);

/*
 * Read a 2xx embeddings answer of len bytes (need not be NUL-terminated)
 * for n texts of dim floats into out[n * dim], placing each entry by its
 * index and L2-normalizing it.  Errors (err says which entry and value):
 *   ST_EINVAL    NULL argument, n == 0 or over EMBED_HTTP_MAX_BATCH, dim out of range
 *   ST_ETOOBIG   len over embed_response_max_body(n, dim)
 *   ST_EPARSE    not JSON; a NaN or Infinity literal; a number that is not a
 *                finite float
 *   ST_ETYPE     not an object; data not an array; an entry not an object; an
 *                index not an integer; an embedding not an array of numbers
 *                (a base64 string among them)
 *   ST_EMISSING  no data; an entry without index or embedding
 *   ST_EHTTP     an error object instead of data (its message quoted)
 *   ST_EPROTO    wrong number of entries; an index out of range or repeated
 *   ST_EDIM      an embedding of another length than dim
 *   ST_ENOMEM    out of memory
 * out is undefined after an error.  Messages are one line of printable ASCII.
 */
int embed_response_parse(const char *body, size_t len, size_t n, int dim, float *out,
                         struct st_error *err);

/*
 * The server's message in an error body (error.message, error as a string,
 * message or detail), cut to size - 1 bytes and made printable ASCII, into
 * out[size]; false (out "") when there is none.
 */
bool embed_error_message(const char *body, size_t len, char *out, size_t size);

#endif
