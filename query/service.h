/*
 * service.h - the query node's requests, whatever front carries them: the
 * HTTP front (serve_cmd.c) and the ZeroMQ front (zmq_front.h) hand a
 * request body to service_handle() and send back the answer it makes.
 *
 *   op                  body (JSON)         answer (JSON object)
 *   SERVICE_COMPOSE     query/request.h     adapter set (query/forms.h) + partial, coverage
 *   SERVICE_RETRIEVE    query/request.h     {"candidates":[{id,name,score,task,base_model,
 *                                             nsfw}], "partial", "coverage"}
 *   SERVICE_ADAPTER     an adapter id       {"adapter": StylusDoc (proto/doc.h JSON),
 *                       (bytes, not JSON)     "save_as": forms_save_as()}
 *
 * A failure answers {"error":{"code":"...","message":"..."}} with the
 * status: 400 bad request, 404 no shard holds the adapter, 413 body over
 * COMPOSE_REQUEST_MAX_BODY, 500 a
 * shard serves another embedding model (the message names both) or out of
 * memory, 502 the embeddings endpoint failed, 503 no shard answered or the
 * endpoint rate-limits us (for an adapter: some shards did not answer and
 * the others do not hold it), 504 the endpoint timed out.
 *
 * The prompt is embedded by the embedder the --embed-* flags choose
 * (indexer/embedder_choice.h): it must be the index's model, whose name goes
 * in every QUERY.  The composer's topic matching uses the built-in sparse
 * features whatever the choice (query/composer.c).
 *
 * The composer: the rule composer (query/composer.h), or with
 * service_config.composer the LLM composer (query/composer_llm.h), which
 * falls back to the rules on any failure and says why in the answer's
 * "composer_fallback".
 *
 * Lanes: the fan-out sockets, the embeddings client and the LLM client are
 * single-threaded, so the service keeps service_config.lanes sets of them
 * (each its own sockets to every shard replica and its own HTTP
 * connections); a request takes a free lane, and waits for one when all
 * are busy.  Up to that many requests run at once.
 *
 * Thread rules: any number of threads may call service_handle() and
 * service_metrics() at once.
 */
#ifndef STYLUS_QUERY_SERVICE_H
#define STYLUS_QUERY_SERVICE_H

#include <jansson.h>
#include <stddef.h>

#include "indexer/embedder_choice.h"
#include "proto/errors.h"
#include "proto/security.h"
#include "query/composer_llm.h"

enum service_op { SERVICE_COMPOSE, SERVICE_RETRIEVE, SERVICE_ADAPTER };

#define SERVICE_MAX_LANES     64
#define SERVICE_DEFAULT_LANES 4

struct service;

struct service_config {
        const char *const *shards; /* per shard, its replica endpoints, comma-separated */
        size_t n_shards;
        long deadline_ms;                /* time allowed for the shards */
        const struct security *security; /* borrowed until service_close() */
        const struct embedder_flags *embed;
        int dim; /* the built-in embedder's dimension */
        /* The LLM composer (its key read at service_open), or NULL: the rules only. */
        const struct composer_llm_config *composer;
        int lanes; /* requests that may run at once, 1..SERVICE_MAX_LANES (0: 1) */
};

int service_open(const struct service_config *cfg, struct service **out, struct st_error *err);
void service_close(struct service **s);

/* The embedding model queries use and its dimension, and the lanes (for logs). */
const char *service_model(const struct service *s);
int service_dim(const struct service *s);
int service_lanes(const struct service *s);

/*
 * Handle one request: body is len bytes (need not be NUL-terminated).
 * *answer gets a new JSON object (the answer or the error); the return is
 * its status (200 or above).  *answer is NULL only when memory ran out
 * (status 500).
 */
unsigned service_handle(struct service *s, enum service_op op, const char *body, size_t len,
                        json_t **answer);

/* {"error":{"code":st_strerror(code),"message":message}}, a new reference (NULL: no memory). */
json_t *service_error_json(int code, const char *message);

/* Count a request another front refused before it reached service_handle(). */
void service_count_error(struct service *s);

/*
 * Prometheus text of the counters into buf (NUL-terminated, cut to size):
 * the query node's, the embeddings client's when there is one, and the
 * composer's (stylus_composer_llm_calls_total, _fallbacks_total,
 * _seconds_total; 0 without an LLM composer).
 */
void service_metrics(struct service *s, char *buf, size_t size);

#endif
