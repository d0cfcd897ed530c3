/*
 * composer_llm.h - the LLM composer: one call to an OpenAI-compatible chat
 * endpoint splits the prompt into topics and picks 0-3 adapters per topic
 * from the candidates (Stylus paper section 3.3), with the rule composer
 * (composer.h) as its floor.  docs/composer.md is the user's manual.
 *
 * One request, composer_llm_run():
 *   1. composer_eligible(): the rule composer's filters (base model, NSFW,
 *      characters, files).  No eligible candidate: rules, no call.
 *   2. The first max_candidates eligible ones (retrieval order) are offered
 *      under short refs "c1", "c2", ...: name, task, trigger words and the
 *      description cut to COMPOSER_LLM_DESCRIPTION bytes, one line each
 *      (composer_llm_request_body()).
 *   3. ONE POST <url>/chat/completions, temperature 0, response_format
 *      {"type":"json_object"}, within deadline_ms; no retry (a caller is
 *      waiting, the rules answer at once).
 *   4. The answer, {"topics":[{"topic":"...","adapters":["c7",...]}]}, is
 *      read by composer_llm_parse_answer() (rules there) and grounded by
 *      composer_llm_ground(): refs become candidates, and composer_assemble()
 *      gives the paper's weights (refiner weight x 0.8 / adapters in the
 *      topic) and masks.  result.composer is the model name; each adapter's
 *      reason "chosen by <model> for topic '<topic>'", its score the
 *      retrieval score (0..1).
 *   5. Any failure (connect, timeout, HTTP error, 429, an unreadable answer,
 *      no usable adapter although candidates were offered) answers with the
 *      rule composer instead, result.fallback saying why in at most
 *      COMPOSER_LLM_REASON_MAX printable ASCII bytes.  A 429 with
 *      Retry-After (at most COMPOSER_LLM_COOLDOWN_MAX_MS) makes the
 *      requests until then fall back without a call.
 *
 * Secrets: the key (key_file, else $STYLUS_COMPOSER_KEY) is read once at
 * composer_llm_new, sent only in the Authorization header of requests to
 * the endpoint (no redirects), wiped at destroy; it never reaches a log
 * line, an error, a fallback reason or the stats.  A server message that
 * quotes it is withheld.
 *
 * Thread rules: a composer_llm belongs to one thread at a time (the query
 * node's service lock); composer_llm_new reads the environment, call it
 * before starting threads.  The pure functions at the bottom may be called
 * from any thread.
 */
#ifndef STYLUS_QUERY_COMPOSER_LLM_H
#define STYLUS_QUERY_COMPOSER_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/embed.h"
#include "proto/errors.h"
#include "query/composer.h"

#define COMPOSER_LLM_KEY_ENV "STYLUS_COMPOSER_KEY"
#define COMPOSER_LLM_USER_AGENT                                                                    \
        "stylus-catalog/0.1 (LoRA composer; +https://github.com/stylus-catalog)"
#define COMPOSER_LLM_MODEL_MAX       200  /* bytes of a model name, printable ASCII */
#define COMPOSER_LLM_KEY_MAX         4096 /* bytes of a key */
#define COMPOSER_LLM_DEADLINE_MS     10000L
#define COMPOSER_LLM_CANDIDATES      60  /* candidates offered by default */
#define COMPOSER_LLM_MAX_CANDIDATES  200 /* upper bound of max_candidates */
#define COMPOSER_LLM_MAX_TOPICS      8   /* topics kept from an answer; later ones ignored */
#define COMPOSER_LLM_MAX_PER_TOPIC   3   /* refs kept per topic; later ones cut */
#define COMPOSER_LLM_TOPIC_MAX       100 /* bytes of a topic's text kept */
#define COMPOSER_LLM_DESCRIPTION     200 /* bytes of a description offered */
#define COMPOSER_LLM_NAME_MAX        120 /* bytes of a name, and of the trigger words, offered */
#define COMPOSER_LLM_MAX_BODY        ((size_t)256 << 10) /* bytes of the HTTP answer */
#define COMPOSER_LLM_MAX_CONTENT     ((size_t)64 << 10)  /* bytes of the model's text */
#define COMPOSER_LLM_REASON_MAX      200                 /* bytes of a fallback reason */
#define COMPOSER_LLM_COOLDOWN_MAX_MS 300000L             /* a longer Retry-After counts as this */

struct composer_llm_config {
        /*
         * Endpoint, http or https, as vlm.h's url: a base URL
         * ("https://api.openai.com/v1"), a bare origin (/v1 is added) or a
         * URL already ending in "/chat/completions".
         */
        const char *url;
        const char *model;    /* 1..COMPOSER_LLM_MODEL_MAX printable ASCII bytes */
        const char *key_file; /* file holding the key; NULL: $STYLUS_COMPOSER_KEY or none */
        long deadline_ms;     /* the one call, connect included (COMPOSER_LLM_DEADLINE_MS) */
        size_t
            max_candidates; /* offered, 1..COMPOSER_LLM_MAX_CANDIDATES (COMPOSER_LLM_CANDIDATES) */
        /*
         * Where the clients of one endpoint keep the time (wire_now_ms) before
         * which none may call it, after a 429 with Retry-After; shared by every
         * client made with it (NULL: each client its own).  Borrowed.
         */
        _Atomic int64_t *cooldown_until;
};

/* Counters since composer_llm_new; every one only grows. */
struct composer_llm_stats {
        uint64_t calls;     /* requests sent to the endpoint */
        uint64_t fallbacks; /* composer_llm_run answers made by the rules */
        double seconds;     /* time spent in the calls */
};

struct composer_llm;

/* Fill c with the defaults shown in parentheses above; url, model, key_file NULL. */
void composer_llm_config_defaults(struct composer_llm_config *c);

/*
 * Make an LLM composer from c (copied), reading the key.  Returns 0,
 * ST_EINVAL (err names the bad field: no or non-http(s) url, no or bad
 * model, an unreadable key file, a key over COMPOSER_LLM_KEY_MAX bytes or
 * not printable, deadline or max_candidates out of range) or ST_ENOMEM.
 */
int composer_llm_new(const struct composer_llm_config *c, struct composer_llm **out,
                     struct st_error *err);

/* Close the connection, wipe the key and free l; *l becomes NULL.  NULL is fine. */
void composer_llm_destroy(struct composer_llm **l);

/* The model name (result.composer of its answers) and the resolved endpoint URL. */
const char *composer_llm_model(const struct composer_llm *l);
const char *composer_llm_endpoint(const struct composer_llm *l);

/* A copy of l's counters. */
void composer_llm_get_stats(const struct composer_llm *l, struct composer_llm_stats *out);

/*
 * composer_run() done by the LLM, steps 1-5 above; same arguments, same
 * ownership, same errors (the rule composer's: bad input, arena full).  An
 * LLM failure is not an error: the rules answer and out->fallback says why.
 */
int composer_llm_run(struct composer_llm *l, const char *prompt, const struct composer_candidate *c,
                     size_t n, const struct composer_options *opt, const struct embedder *e,
                     struct arena *a, struct composer_result *out, struct st_error *err);

/* ---- the pure parts (tested and fuzzed on their own) ---- */

/*
 * The chat request for prompt offering c[offered[0]] .. c[offered[n - 1]]
 * as "c1" .. "cN", into *body (malloc'd, NUL-terminated, caller frees) of
 * *len bytes.  Every text offered is cleaned (control bytes become spaces)
 * and cut on a UTF-8 boundary.  Errors: ST_EINVAL (NULL argument, n over
 * COMPOSER_LLM_MAX_CANDIDATES, an offered index NULL doc, text that is not
 * UTF-8), ST_ENOMEM.
 */
int composer_llm_request_body(const char *model, const char *prompt,
                              const struct composer_candidate *c, const size_t *offered, size_t n,
                              char **body, size_t *len, struct st_error *err);

/* One topic of an answer. */
struct composer_llm_topic {
        const char *text;                        /* cleaned and cut, in the arena; not empty */
        size_t refs[COMPOSER_LLM_MAX_PER_TOPIC]; /* offered positions (ref "c1" is 0) */
        size_t n_refs;
};

/* A read answer, and what was dropped from it. */
struct composer_llm_answer {
        struct composer_llm_topic topics[COMPOSER_LLM_MAX_TOPICS];
        size_t n_topics;
        size_t n_refs;       /* refs kept, over all topics */
        size_t unknown_refs; /* not a ref, or a ref that was not offered (grounding) */
        size_t repeated;     /* a ref already kept for an earlier topic */
        size_t cut_refs;     /* over COMPOSER_LLM_MAX_PER_TOPIC in a topic */
        size_t bad_topics;   /* not an object, or no topic text */
        size_t extra_topics; /* over COMPOSER_LLM_MAX_TOPICS */
};

/*
 * Read the model's text (len bytes, need not be NUL-terminated; the JSON
 * object may be bare, fenced or in prose) when n_offered candidates were
 * offered.  Rules: "topics" must be an array; each entry an object whose
 * "topic" is a string (control bytes become spaces, trimmed, cut to
 * COMPOSER_LLM_TOPIC_MAX bytes; empty: the entry is skipped) and whose
 * "adapters" is an array of refs "c<k>" (any case, blanks around allowed),
 * 1 <= k <= n_offered; anything else in it is dropped.  A topic equal to an
 * earlier one (any case) adds to it.  Each ref is kept once over all topics;
 * at most COMPOSER_LLM_MAX_PER_TOPIC per topic, COMPOSER_LLM_MAX_TOPICS
 * topics.  Errors: ST_EINVAL (NULL argument), ST_ETOOBIG (len over
 * COMPOSER_LLM_MAX_CONTENT), ST_EPARSE (no JSON object), ST_EMISSING (no
 * "topics"), ST_ETYPE ("topics" not an array), ST_ENOMEM; err quotes at
 * most CHAT_QUOTE_MAX printable bytes of the text.
 */
int composer_llm_parse_answer(const char *content, size_t len, size_t n_offered, struct arena *a,
                              struct composer_llm_answer *out, struct st_error *err);

/*
 * The composer_result of answer ans from model, offered[] being the
 * candidates offered (as for composer_llm_request_body): topics in answer
 * order, then composer_assemble() under opt.  r must come from
 * composer_eligible() (base model, n_images, exclusions).  Errors:
 * ST_EINVAL (a ref past n_offered), ST_ENOMEM.
 */
int composer_llm_ground(const struct composer_llm_answer *ans, const char *model,
                        const char *prompt, const struct composer_candidate *c,
                        const size_t *offered, size_t n_offered, const struct composer_options *opt,
                        struct arena *a, struct composer_result *r, struct st_error *err);

#endif
