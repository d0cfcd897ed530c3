/* service.c - the query node's requests (see service.h). */
#include "query/service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/log.h"
#include "proto/wire.h"
#include "query/composer.h"
#include "query/composer_llm.h"
#include "query/fanout.h"
#include "query/forms.h"
#include "query/request.h"

#define QUERY_ARENA ((size_t)256 << 20)

/*
 * One lane: what a request needs for itself (the fan-out sockets, the
 * embeddings client and the LLM client are single-threaded), so that up to
 * n_lanes requests run at once, each on its own lane.
 */
struct lane {
        struct fanout *fanout;
        struct embedder_choice embedder;
        struct composer_llm *llm; /* NULL: the rule composer only */
        bool busy;
        struct embed_http_stats embed_seen; /* the lane's clients' counters, copied by */
        struct composer_llm_stats llm_seen; /* the lane's own request, under the lock */
};

struct service {
        pthread_mutex_t lock; /* guards the lanes' busy flags and seen counters, and below */
        pthread_cond_t freed; /* a lane became free */
        _Atomic int64_t llm_cooldown; /* the LLM endpoint's rest after a 429, shared by the lanes */
        struct composer_llm_config llm_cfg; /* the caller's, with llm_cooldown */
        struct lane *lanes;
        int n_lanes;
        uint64_t requests, errors, composed, partial;
        double seconds; /* summed time of the requests handled */
};

/* What one request did, for the counters. */
struct outcome {
        bool error, composed, partial;
};

static int open_lane(struct lane *l, const struct service_config *cfg,
                     const struct composer_llm_config *llm_cfg, bool first, struct st_error *err)
{
        if (embedder_choice_open(&l->embedder, cfg->embed, cfg->dim, EMBEDDER_DEADLINE_QUERY_MS,
                                 err))
                return err->code ? err->code : ST_EINVAL;
        if (fanout_new(cfg->shards, cfg->n_shards, cfg->deadline_ms, cfg->security, &l->fanout,
                       err))
                return err->code ? err->code : ST_EINVAL;
        if (cfg->composer && composer_llm_new(llm_cfg, &l->llm, err))
                return err->code ? err->code : ST_EINVAL;
        if (l->llm && first)
                log_info("composing with %s at %s", composer_llm_model(l->llm),
                         composer_llm_endpoint(l->llm));
        return 0;
}

static void close_lane(struct lane *l)
{
        composer_llm_destroy(&l->llm);
        fanout_destroy(&l->fanout);
        embedder_choice_close(&l->embedder); /* safe on a lane that never opened it */
}

int service_open(const struct service_config *cfg, struct service **out, struct st_error *err)
{
        struct service *s = calloc(1, sizeof(*s));
        int n = cfg->lanes > 0 ? cfg->lanes : 1, rc = 0;

        *out = NULL;
        if (!s)
                return st_fail(err, ST_ENOMEM, "query node: out of memory");
        if (n > SERVICE_MAX_LANES) {
                free(s);
                return st_fail(err, ST_EINVAL, "query node: at most %d lanes", SERVICE_MAX_LANES);
        }
        s->lanes = calloc((size_t)n, sizeof(*s->lanes));
        if (!s->lanes || pthread_mutex_init(&s->lock, NULL) != 0) {
                free(s->lanes);
                free(s);
                return st_fail(err, ST_ENOMEM, "query node: out of memory");
        }
        if (pthread_cond_init(&s->freed, NULL) != 0) {
                pthread_mutex_destroy(&s->lock);
                free(s->lanes);
                free(s);
                return st_fail(err, ST_ENOMEM, "query node: cannot make a condition variable");
        }
        atomic_init(&s->llm_cooldown, 0);
        if (cfg->composer) {
                s->llm_cfg = *cfg->composer;
                s->llm_cfg.cooldown_until = &s->llm_cooldown;
        }
        for (; s->n_lanes < n && !rc; s->n_lanes++)
                rc = open_lane(&s->lanes[s->n_lanes], cfg, &s->llm_cfg, s->n_lanes == 0, err);
        if (rc) {
                service_close(&s);
                return rc;
        }
        *out = s;
        return 0;
}

void service_close(struct service **sp)
{
        struct service *s = *sp;

        if (!s)
                return;
        for (int i = 0; i < s->n_lanes; i++)
                close_lane(&s->lanes[i]);
        pthread_cond_destroy(&s->freed);
        pthread_mutex_destroy(&s->lock);
        free(s->lanes);
        free(s);
        *sp = NULL;
}

const char *service_model(const struct service *s)
{
        return s->lanes[0].embedder.model;
}

int service_dim(const struct service *s)
{
        return s->lanes[0].embedder.dim;
}

int service_lanes(const struct service *s)
{
        return s->n_lanes;
}

static unsigned status_of(int code)
{
        switch (code) {
        case ST_ETOOBIG:
                return 413;
        case ST_EAGAIN:
                return 503;
        case ST_ENOTFOUND:
                return 404;
        case ST_EDIM:
                return 500;
        case ST_ENOMEM:
                return 500;
        default:
                return 400;
        }
}

/* Status of a failure of the embedder (an endpoint's, when one is configured). */
static unsigned embed_status(int code)
{
        switch (code) {
        case ST_EAGAIN:
                return 503;
        case ST_ETIMEOUT:
                return 504;
        case ST_ENOMEM:
        case ST_EINVAL:
                return 500;
        default:
                return 502;
        }
}

/*
 * Embed the prompt and fan out; candidates and coverage on success, else
 * the error and, when it is not status_of()'s, *status.
 */
static int retrieve(struct lane *l, const struct compose_request *req, struct arena *a,
                    struct composer_candidate **cand, size_t *n, double *coverage, unsigned *status,
                    struct st_error *err)
{
        float *vec = arena_calloc(a, (size_t)l->embedder.dim, sizeof(float));
        const char *prompt = req->prompt;
        struct st_error why = {0};
        struct fanout_query q = {
            .vector = vec,
            .dim = l->embedder.dim,
            .model = l->embedder.model,
            .k = (size_t)req->k,
            .base_model = req->base_model,
            .allow_nsfw = req->allow_nsfw,
            .blocked = req->blocked,
            .n_blocked = req->n_blocked,
        };
        int rc;

        if (!vec)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = embedder_choice_embed(&l->embedder, &prompt, 1, vec, &why);
        if (rc) {
                *status = embed_status(rc);
                log_warn("cannot embed a prompt: %s", st_error_text(&why, rc));
                return st_fail(err, rc, "cannot embed the prompt with %s: %s", l->embedder.model,
                               st_error_text(&why, rc));
        }
        return fanout_search(l->fanout, &q, a, cand, n, coverage, err);
}

/* Add coverage to a JSON answer made by the composer's formatter. */
static json_t *with_coverage(const char *answer, double coverage)
{
        json_t *j = json_loads(answer, 0, NULL);

        if (!j)
                return NULL;
        json_object_set_new(j, "partial", json_boolean(coverage < 1.0));
        json_object_set_new(j, "coverage", json_real(coverage));
        return j;
}

static json_t *candidates_json(const struct composer_candidate *cand, size_t n, double coverage)
{
        json_t *j = json_array();

        for (size_t i = 0; j && i < n; i++)
                json_array_append_new(
                    j, json_pack("{s:s,s:s,s:f,s:s?,s:s?,s:b}", "id", cand[i].doc->id, "name",
                                 cand[i].doc->name, "score", (double)cand[i].score, "task",
                                 cand[i].doc->task, "base_model", cand[i].doc->base_model, "nsfw",
                                 cand[i].doc->nsfw));
        return j ? json_pack("{s:o,s:b,s:f}", "candidates", j, "partial", coverage < 1.0,
                             "coverage", coverage)
                 : NULL;
}

json_t *service_error_json(int code, const char *message)
{
        return json_pack("{s:{s:s,s:s}}", "error", "code", st_strerror(code), "message", message);
}

/* SERVICE_ADAPTER: the doc of the id in body, from whichever shard holds it. */
static int adapter(struct lane *l, const char *body, size_t len, struct arena *a, json_t **out,
                   struct st_error *err)
{
        struct st_doc doc;
        char *id, *text = NULL, *name = NULL;
        size_t text_len = 0;
        double coverage;
        int rc;

        if (len == 0 || len > COMPOSE_REQUEST_MAX_ID || memchr(body, '\0', len))
                return st_fail(err, ST_EINVAL, "an adapter id is 1..%d bytes",
                               COMPOSE_REQUEST_MAX_ID);
        id = arena_strndup(a, body, len);
        if (!id)
                return st_fail(err, ST_ENOMEM, "out of memory");
        rc = fanout_get_doc(l->fanout, id, a, &doc, &coverage, err);
        if (rc == 0 && (st_doc_to_json(&doc, &text, &text_len) || forms_save_as(&doc, &name)))
                rc = st_fail(err, ST_ENOMEM, "cannot build the answer");
        if (rc == 0) {
                json_t *j = json_loadb(text, text_len, 0, NULL);

                *out = j ? json_pack("{s:o,s:s}", "adapter", j, "save_as", name) : NULL;
                if (!*out)
                        rc = st_fail(err, ST_ENOMEM, "cannot build the answer");
        }
        free(text);
        free(name);
        return rc;
}

/* One request on lane l (the lock not held); what it did goes in *o. */
static unsigned handle(struct lane *l, enum service_op op, const char *body, size_t len,
                       json_t **answer, struct outcome *o)
{
        struct st_error err = {0};
        struct compose_request req;
        struct composer_options opt;
        struct composer_result res;
        struct composer_candidate *cand = NULL;
        struct arena a;
        size_t n = 0;
        double coverage = 0;
        char *text = NULL;
        json_t *j = NULL;
        unsigned status = 0;
        int rc;

        arena_init(&a, QUERY_ARENA);
        if (op == SERVICE_ADAPTER) {
                rc = adapter(l, body, len, &a, &j, &err);
                goto out;
        }
        rc = compose_request_parse(body ? body : "", len, &a, &req, &err);
        if (!rc)
                rc = retrieve(l, &req, &a, &cand, &n, &coverage, &status, &err);
        o->partial = rc == 0 && coverage < 1.0;
        if (!rc && op == SERVICE_RETRIEVE) {
                if (!(j = candidates_json(cand, n, coverage)))
                        rc = st_fail(&err, ST_ENOMEM, "cannot build the answer");
        } else if (!rc) {
                composer_options_default(&opt);
                opt.base_model = req.base_model;
                opt.n_images = req.n_images;
                opt.allow_nsfw = req.allow_nsfw;
                opt.allow_characters = req.allow_characters;
                if (req.min_rating >= 0)
                        opt.min_rating = (float)req.min_rating;
                rc = l->llm ? composer_llm_run(l->llm, req.prompt, cand, n, &opt,
                                               &l->embedder.builtin, &a, &res, &err)
                            : composer_run(req.prompt, cand, n, &opt, &l->embedder.builtin, &a,
                                           &res, &err);
                if (!rc)
                        rc = composer_result_to_json(&res, req.prompt, req.format, &text);
                if (!rc && !(j = with_coverage(text, coverage)))
                        rc = st_fail(&err, ST_ENOMEM, "cannot build the answer");
                o->composed = rc == 0;
        }
out:
        free(text);
        arena_release(&a);
        if (rc) {
                o->error = true;
                *answer = service_error_json(rc, st_error_text(&err, rc));
                return status ? status : status_of(rc);
        }
        *answer = j;
        return 200;
}

/* A free lane, marked busy; waits while every lane is. Lock held. */
static struct lane *take_lane(struct service *s)
{
        for (;;) {
                for (int i = 0; i < s->n_lanes; i++)
                        if (!s->lanes[i].busy) {
                                s->lanes[i].busy = true;
                                return &s->lanes[i];
                        }
                pthread_cond_wait(&s->freed, &s->lock);
        }
}

unsigned service_handle(struct service *s, enum service_op op, const char *body, size_t len,
                        json_t **answer)
{
        struct outcome o = {0};
        struct lane *l = NULL;
        int64_t t0 = wire_now_ms();
        unsigned status;

        *answer = NULL;
        if (len > COMPOSE_REQUEST_MAX_BODY) {
                o.error = true;
                *answer = service_error_json(ST_ETOOBIG, "request body over 64 KiB");
                status = 413;
        } else {
                pthread_mutex_lock(&s->lock);
                l = take_lane(s);
                pthread_mutex_unlock(&s->lock);
                status = handle(l, op, body, len, answer, &o);
        }
        pthread_mutex_lock(&s->lock);
        s->requests++;
        s->errors += o.error;
        s->composed += o.composed;
        s->partial += o.partial;
        s->seconds += (double)(wire_now_ms() - t0) / 1000.0;
        if (l) {
                if (l->embedder.http)
                        embed_http_get_stats(l->embedder.http, &l->embed_seen);
                if (l->llm)
                        composer_llm_get_stats(l->llm, &l->llm_seen);
                l->busy = false;
                pthread_cond_signal(&s->freed);
        }
        pthread_mutex_unlock(&s->lock);
        return *answer ? status : 500;
}

void service_count_error(struct service *s)
{
        pthread_mutex_lock(&s->lock);
        s->requests++;
        s->errors++;
        pthread_mutex_unlock(&s->lock);
}

/* The embeddings clients' counters summed over the lanes, when they have one; "" otherwise. */
static void embed_metrics(const struct service *s, char *buf, size_t size)
{
        struct embed_http_stats st = {0};

        buf[0] = '\0';
        if (!s->lanes[0].embedder.http)
                return;
        for (int i = 0; i < s->n_lanes; i++) {
                st.requests += s->lanes[i].embed_seen.requests;
                st.retries += s->lanes[i].embed_seen.retries;
                st.rate_limited += s->lanes[i].embed_seen.rate_limited;
                st.failures += s->lanes[i].embed_seen.failures;
        }
        snprintf(buf, size,
                 "# TYPE stylus_embed_requests_total counter\n"
                 "stylus_embed_requests_total %llu\n"
                 "# TYPE stylus_embed_retries_total counter\n"
                 "stylus_embed_retries_total %llu\n"
                 "# TYPE stylus_embed_rate_limited_total counter\n"
                 "stylus_embed_rate_limited_total %llu\n"
                 "# TYPE stylus_embed_failures_total counter\n"
                 "stylus_embed_failures_total %llu\n",
                 (unsigned long long)st.requests, (unsigned long long)st.retries,
                 (unsigned long long)st.rate_limited, (unsigned long long)st.failures);
}

/* The LLM composers' counters summed over the lanes (zero without an LLM composer). */
static void composer_metrics(const struct service *s, char *buf, size_t size)
{
        struct composer_llm_stats st = {0};

        for (int i = 0; i < s->n_lanes; i++) {
                st.calls += s->lanes[i].llm_seen.calls;
                st.fallbacks += s->lanes[i].llm_seen.fallbacks;
                st.seconds += s->lanes[i].llm_seen.seconds;
        }
        snprintf(buf, size,
                 "# TYPE stylus_composer_llm_calls_total counter\n"
                 "stylus_composer_llm_calls_total %llu\n"
                 "# TYPE stylus_composer_llm_fallbacks_total counter\n"
                 "stylus_composer_llm_fallbacks_total %llu\n"
                 "# TYPE stylus_composer_llm_seconds_total counter\n"
                 "stylus_composer_llm_seconds_total %.3f\n",
                 (unsigned long long)st.calls, (unsigned long long)st.fallbacks, st.seconds);
}

void service_metrics(struct service *s, char *buf, size_t size)
{
        char embed[768], composer[512];

        pthread_mutex_lock(&s->lock);
        embed_metrics(s, embed, sizeof(embed));
        composer_metrics(s, composer, sizeof(composer));
        snprintf(buf, size,
                 "# TYPE stylus_query_requests_total counter\n"
                 "stylus_query_requests_total %llu\n"
                 "# TYPE stylus_query_errors_total counter\n"
                 "stylus_query_errors_total %llu\n"
                 "# TYPE stylus_query_composed_total counter\n"
                 "stylus_query_composed_total %llu\n"
                 "# TYPE stylus_query_partial_total counter\n"
                 "stylus_query_partial_total %llu\n"
                 "# TYPE stylus_query_seconds_total counter\n"
                 "stylus_query_seconds_total %.3f\n%s%s",
                 (unsigned long long)s->requests, (unsigned long long)s->errors,
                 (unsigned long long)s->composed, (unsigned long long)s->partial, s->seconds, embed,
                 composer);
        pthread_mutex_unlock(&s->lock);
}
