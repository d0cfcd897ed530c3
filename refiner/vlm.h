/*
 * vlm.h - the VLM refiner: a StylusDoc from a raw record by asking a vision
 * language model over an OpenAI-compatible /v1/chat/completions endpoint
 * (OpenAI, vLLM, llama.cpp server, Ollama), as the Stylus paper's refiner
 * does (§3.1), with the offline card refiner (card.h) as its floor.
 *
 * One job, vlm_refine():
 *   1. card_refine(r): the card doc.  Identity, tags, stats, files, images
 *      and trigger words are the card doc's in every outcome.
 *   2. The request (vlm_prompt.h): card text, then up to VLM_MAX_IMAGES
 *      example images, each inline as a base64 data URL followed by its
 *      "Prompt: ..." part, then the instruction.  Images come from
 *      image_source.h, concurrency at a time; a missing, non-image or
 *      over-2-MB image is skipped, the job goes on.
 *   3. Attempts, at most 1 + max_retries, all within deadline_ms of the
 *      job's start (image downloads and waits included):
 *        - wait for the token-rate limit (vlm_rate.h);
 *        - POST, with timeout_ms (or less when the deadline is nearer);
 *        - 2xx: read and validate the answer (vlm_answer.h); malformed
 *          output is retried, at VLM_RETRY_TEMPERATURE;
 *        - 408, 429 and 5xx, timeouts and transport errors are retried
 *          after Retry-After when the server sends one, else after
 *          retry_base_ms doubling per retry (jitter in [d/2, d]);
 *        - any other status (400, 401, 403, 404 ...) is not retried.
 *      A retry that cannot finish before the deadline is not started.
 *   4. Success: description and task from the answer; the weight from the
 *      answer unless an example prompt carries a <lora:NAME:W> tag
 *      (card_prompt_weight()), which wins; refined_by vlm_identity().
 *      Failure: the card doc, refined_by "card", refine_error
 *      "<identity>: <last error> (<n> attempts)".  A doc is never dropped.
 *
 * Secrets: the key is copied at vlm_new, sent only in the Authorization
 * header of requests to the configured endpoint (never to image hosts),
 * wiped at vlm_destroy, and never written to a log line, an error message
 * or a doc; an error body that quotes it is withheld, and 401/403 bodies
 * are never quoted.
 *
 * Thread rules: a vlm belongs to the thread that made it (the worker's).
 */
#ifndef STYLUS_REFINER_VLM_H
#define STYLUS_REFINER_VLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define VLM_MODEL_MAX 200 /* bytes of a model name */
#define VLM_KEY_MAX   4096

struct vlm_config {
        /*
         * Endpoint, http or https: a base URL as the OpenAI SDKs take it
         * ("https://api.openai.com/v1", "http://127.0.0.1:11434/v1"), to
         * which "/chat/completions" is added; a bare origin
         * ("http://127.0.0.1:8080"), to which "/v1/chat/completions" is
         * added; or a URL already ending in "/chat/completions".
         */
        const char *url;
        const char *model;       /* printable ASCII, at most VLM_MODEL_MAX bytes */
        const char *key;         /* bearer key, or NULL for servers without one; copied */
        bool json_mode;          /* send response_format {"type":"json_object"} (false) */
        long timeout_ms;         /* one HTTP request (20000) */
        long deadline_ms;        /* one job, everything included (25000) */
        unsigned concurrency;    /* HTTP transfers at once within a job, >= 1 (4) */
        uint64_t tokens_per_min; /* token-rate limit; 0 = none (0) */
        unsigned max_retries;    /* attempts after the first (2) */
        unsigned retry_base_ms;  /* first backoff; doubles per retry (1000) */
        const char *user_agent;  /* (VLM_HTTP_USER_AGENT) */
};

/* Counters since vlm_new; every one only grows. */
struct vlm_stats {
        uint64_t jobs;              /* vlm_refine calls that produced a doc */
        uint64_t vlm_docs;          /* of which refined by the VLM */
        uint64_t card_docs;         /* of which kept from the card after a VLM failure */
        uint64_t requests;          /* chat completions sent */
        uint64_t retries;           /* of which retries */
        uint64_t rate_limited;      /* 429 answers */
        uint64_t server_errors;     /* 408 and 5xx answers */
        uint64_t timeouts;          /* requests past their timeout */
        uint64_t malformed;         /* 2xx answers that failed validation */
        uint64_t images_sent;       /* example images sent */
        uint64_t images_skipped;    /* example images left out (see image_source.h) */
        uint64_t prompt_tokens;     /* usage.prompt_tokens summed */
        uint64_t completion_tokens; /* usage.completion_tokens summed */
        uint64_t rate_wait_ms;      /* time spent waiting for the token-rate limit */
};

struct vlm;

/* Fill c with the defaults shown in parentheses above; url and model NULL. */
void vlm_config_defaults(struct vlm_config *c);

/*
 * Make a VLM refiner from c (copied).  Returns 0, ST_EINVAL (err names the
 * bad field: no or non-http(s) url, no or bad model, key over VLM_KEY_MAX or
 * with control characters, timeouts <= 0) or ST_ENOMEM.
 */
int vlm_new(const struct vlm_config *c, struct vlm **out, struct st_error *err);

/* Close connections, wipe the key and free v; *v becomes NULL.  NULL is fine. */
void vlm_destroy(struct vlm **v);

/*
 * Refine r into *out, allocating in a (ownership as in card.h: out borrows
 * r's strings).  Returns 0 with a VLM doc or, after a VLM failure, the card
 * doc with refine_error set.  Errors are card_refine()'s (the record itself
 * is unusable), and ST_EAGAIN when a signal interrupted a wait: the job
 * should go back to the queue, the process is stopping.
 */
int vlm_refine(struct vlm *v, const struct st_raw_record *r, struct arena *a, struct st_doc *out,
               struct st_error *err);

/* refined_by of the docs v makes: "vlm:<model>@<VLM_PROMPT_VERSION>". */
const char *vlm_identity(const struct vlm *v);

/* The endpoint v posts to (the resolved URL). */
const char *vlm_endpoint(const struct vlm *v);

/* A copy of v's counters. */
void vlm_get_stats(const struct vlm *v, struct vlm_stats *out);

/* One log line (info) with v's counters, e.g. at exit. */
void vlm_log_stats(const struct vlm *v);

#endif
