/*
 * vlm.c - the VLM refiner (see vlm.h for one job, step by step).
 */
#include "refiner/vlm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proto/http_util.h"
#include "proto/log.h"
#include "proto/wire.h"
#include "refiner/card.h"
#include "refiner/image_source.h"
#include "refiner/vlm_answer.h"
#include "refiner/vlm_http.h"
#include "refiner/vlm_prompt.h"
#include "refiner/vlm_rate.h"
#include "refiner/weight.h"

#define MIN_ATTEMPT_MS         250 /* no attempt starts with less time than this left */
#define IMAGE_TOKENS_ESTIMATE  800 /* per image; gpt-4o bills 255-765 for a tile set */
#define ANSWER_TOKENS_ESTIMATE 250
#define STATS_LOG_EVERY        100 /* jobs between two totals lines */

struct vlm {
        struct vlm_config cfg; /* url, model, key, user_agent point to the copies below */
        char *endpoint;        /* resolved .../chat/completions */
        char *model;
        char *key; /* NULL when none; wiped on destroy */
        char identity[VLM_MODEL_MAX + 32];
        struct vlm_http *http;
        struct vlm_rate rate;
        struct vlm_stats stats;
        uint64_t rng;
};

/* The state of one vlm_refine call. */
struct job {
        const struct st_raw_record *r;
        int64_t deadline; /* monotonic ms */
        char *card_text;
        struct vlm_image images[VLM_MAX_IMAGES];
        size_t n_images;  /* sent */
        size_t n_skipped; /* wanted but skipped */
        double temperature;
        char *body; /* malloc'd request of this temperature */
        size_t body_len;
        uint64_t estimate;      /* tokens, for the rate limit */
        long retry_after_ms;    /* of the last answer, -1 when none */
        unsigned attempts;      /* requests sent */
        bool interrupted;       /* a signal cut a wait short */
        struct chat_usage used; /* summed over attempts */
        struct st_error why;    /* the last failure */
};

void vlm_config_defaults(struct vlm_config *c)
{
        memset(c, 0, sizeof(*c));
        c->timeout_ms = 20000;
        c->deadline_ms = 25000;
        c->concurrency = 4;
        c->max_retries = 2;
        c->retry_base_ms = 1000;
        c->user_agent = VLM_HTTP_USER_AGENT;
}

/* ---- configuration ---- */

static int check_config(const struct vlm_config *c, struct st_error *err)
{
        if (!c->url || (strncasecmp(c->url, "http://", 7) && strncasecmp(c->url, "https://", 8)))
                return st_fail(err, ST_EINVAL, "vlm url: need an http:// or https:// URL");
        if (!http_util_printable_ascii(c->url))
                return st_fail(err, ST_EINVAL, "vlm url: control or non-ASCII characters");
        if (!c->model || !*c->model || strlen(c->model) > VLM_MODEL_MAX ||
            !http_util_printable_ascii(c->model))
                return st_fail(err, ST_EINVAL, "vlm model: need 1 to %d printable ASCII bytes",
                               VLM_MODEL_MAX);
        if (c->key && (strlen(c->key) > VLM_KEY_MAX || !http_util_printable_ascii(c->key)))
                return st_fail(err, ST_EINVAL, "vlm key: over %d bytes or not printable ASCII",
                               VLM_KEY_MAX);
        if (c->timeout_ms <= 0 || c->deadline_ms <= 0)
                return st_fail(err, ST_EINVAL, "vlm timeout and deadline must be > 0 ms");
        return 0;
}

int vlm_new(const struct vlm_config *c, struct vlm **out, struct st_error *err)
{
        struct vlm *v;
        int rc;

        if (!c || !out)
                return st_fail(err, ST_EINVAL, "vlm_new: NULL argument");
        rc = check_config(c, err);
        if (rc)
                return rc;
        v = calloc(1, sizeof(*v));
        if (!v)
                return st_fail(err, ST_ENOMEM, "vlm_new: out of memory");
        v->cfg = *c;
        v->endpoint = http_util_endpoint(c->url, "/chat/completions");
        v->model = strdup(c->model);
        v->key = c->key && *c->key ? strdup(c->key) : NULL;
        if (!v->endpoint || !v->model || (c->key && *c->key && !v->key)) {
                rc = st_fail(err, ST_ENOMEM, "vlm_new: out of memory");
                goto out_free;
        }
        rc = vlm_http_new(c->user_agent ? c->user_agent : VLM_HTTP_USER_AGENT, &v->http, err);
        if (rc)
                goto out_free;
        v->cfg.url = v->endpoint;
        v->cfg.model = v->model;
        v->cfg.key = v->key;
        v->cfg.user_agent = NULL; /* copied by vlm_http */
        if (v->cfg.concurrency == 0)
                v->cfg.concurrency = 1;
        snprintf(v->identity, sizeof(v->identity), "vlm:%s@%s", v->model, VLM_PROMPT_VERSION);
        vlm_rate_init(&v->rate, c->tokens_per_min, wire_now_ms());
        v->rng = (uint64_t)wire_now_ms() * 6364136223846793005ull ^ (uint64_t)getpid();
        if (!v->rng)
                v->rng = 1;
        *out = v;
        return 0;
out_free:
        vlm_destroy(&v);
        return rc;
}

void vlm_destroy(struct vlm **v)
{
        if (!v || !*v)
                return;
        vlm_http_destroy(&(*v)->http);
        if ((*v)->key) {
                explicit_bzero((*v)->key, strlen((*v)->key));
                free((*v)->key);
        }
        free((*v)->endpoint);
        free((*v)->model);
        free(*v);
        *v = NULL;
}

const char *vlm_identity(const struct vlm *v)
{
        return v->identity;
}

const char *vlm_endpoint(const struct vlm *v)
{
        return v->endpoint;
}

void vlm_get_stats(const struct vlm *v, struct vlm_stats *out)
{
        *out = v->stats;
}

void vlm_log_stats(const struct vlm *v)
{
        const struct vlm_stats *s = &v->stats;

        log_info("%s totals: %llu jobs, %llu vlm docs, %llu card fallbacks; %llu requests "
                 "(%llu retries, %llu rate limited, %llu server errors, %llu timeouts, %llu "
                 "malformed); %llu images sent, %llu skipped; tokens %llu prompt + %llu "
                 "completion; %llu ms waiting for the token limit",
                 v->identity, (unsigned long long)s->jobs, (unsigned long long)s->vlm_docs,
                 (unsigned long long)s->card_docs, (unsigned long long)s->requests,
                 (unsigned long long)s->retries, (unsigned long long)s->rate_limited,
                 (unsigned long long)s->server_errors, (unsigned long long)s->timeouts,
                 (unsigned long long)s->malformed, (unsigned long long)s->images_sent,
                 (unsigned long long)s->images_skipped, (unsigned long long)s->prompt_tokens,
                 (unsigned long long)s->completion_tokens, (unsigned long long)s->rate_wait_ms);
}

/* ---- time ---- */

static int64_t left_ms(const struct job *j)
{
        return j->deadline - wire_now_ms();
}

/* Sleep ms; false when a signal cut it short (the process is stopping). */
static bool pause_ms(struct job *j, int64_t ms)
{
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

        if (ms <= 0)
                return true;
        if (nanosleep(&ts, NULL) == 0)
                return true;
        if (errno == EINTR)
                j->interrupted = true;
        return !j->interrupted;
}

/* Backoff before retry number n (1, 2 ...): retry_base_ms doubling, jitter in [d/2, d]. */
static int64_t backoff_ms(struct vlm *v, unsigned n)
{
        int64_t d = (int64_t)v->cfg.retry_base_ms << (n - 1 < 16 ? n - 1 : 16);

        v->rng ^= v->rng >> 12;
        v->rng ^= v->rng << 25;
        v->rng ^= v->rng >> 27;
        return d / 2 + (int64_t)((v->rng * 2685821657736338717ull) % (uint64_t)(d / 2 + 1));
}

/* ---- preparing the request ---- */

/* Download the images and keep those that arrived; false when the arena is full. */
static bool gather_images(struct vlm *v, struct job *j, struct arena *a)
{
        const struct st_raw_record *r = j->r;
        struct st_image want[VLM_MAX_IMAGES];
        struct image_bytes got[VLM_MAX_IMAGES];
        size_t n = 0, i;
        int64_t left = left_ms(j);

        for (i = 0; r->images && i < r->n_images && n < VLM_MAX_IMAGES; i++)
                if (r->images[i].url)
                        want[n++] = r->images[i];
        if (n == 0 || left < MIN_ATTEMPT_MS)
                return true;
        if (image_source_get(v->http, want, n, v->cfg.concurrency,
                             left < v->cfg.timeout_ms ? left : v->cfg.timeout_ms, a, got))
                return false;
        for (i = 0; i < n; i++) {
                struct vlm_image *im = &j->images[j->n_images];

                if (got[i].error.code) {
                        log_debug("%s: image skipped: %s", r->id, got[i].error.msg);
                        j->n_skipped++;
                        continue;
                }
                im->media_type = got[i].media_type;
                im->data = got[i].data;
                im->len = got[i].len;
                im->prompt_text = vlm_image_prompt_text(want[i].prompt, a);
                if (!im->prompt_text)
                        return false;
                j->n_images++;
        }
        return true;
}

/* (Re)build the request body at temperature t. */
static int build_body(struct vlm *v, struct job *j, double t, struct st_error *err)
{
        struct vlm_request q = {v->model,     v->cfg.json_mode, t,
                                j->card_text, j->images,        j->n_images};

        free(j->body);
        j->body = NULL;
        j->temperature = t;
        return vlm_request_body(&q, &j->body, &j->body_len, err);
}

static uint64_t estimate_tokens(const struct job *j)
{
        size_t text = strlen(j->card_text) + strlen(vlm_instruction()), i;

        for (i = 0; i < j->n_images; i++)
                text += strlen(j->images[i].prompt_text);
        return text / 4 + j->n_images * IMAGE_TOKENS_ESTIMATE + ANSWER_TOKENS_ESTIMATE;
}

static int prepare(struct vlm *v, struct job *j, const struct st_doc *card, struct arena *a)
{
        int rc = vlm_card_text(j->r, &card->trigger_words, a, &j->card_text, &j->why);

        if (rc)
                return rc;
        if (!gather_images(v, j, a))
                return st_fail(&j->why, ST_ENOMEM, "example images: out of memory");
        v->stats.images_sent += j->n_images;
        v->stats.images_skipped += j->n_skipped;
        j->estimate = estimate_tokens(j);
        return build_body(v, j, 0.0, &j->why);
}

/* ---- one attempt ---- */

/* The failure of a non-2xx answer, the server's message quoted unless it may hold the key. */
static int http_failure(struct vlm *v, struct job *j, const struct vlm_http_request *req)
{
        char msg[160];

        if (req->status == 401 || req->status == 403)
                return st_fail(&j->why, ST_EHTTP, "HTTP %ld: the endpoint refused the key",
                               req->status);
        if (!chat_error_message(req->body, req->body_len, msg, sizeof(msg)))
                return st_fail(&j->why, ST_EHTTP, "HTTP %ld", req->status);
        if (http_util_quotes_key(msg, v->key))
                snprintf(msg, sizeof(msg), "(message withheld: it quoted the key)");
        return st_fail(&j->why, req->status == 429 ? ST_EAGAIN : ST_EHTTP, "HTTP %ld: %s",
                       req->status, msg);
}

static bool retryable_status(long status)
{
        return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

/* Read a 2xx answer into ans, counting its tokens; 0 or the reason it is unusable. */
static int read_answer(struct vlm *v, struct job *j, const struct vlm_http_request *req,
                       struct arena *a, struct vlm_answer *ans)
{
        struct chat_usage u;
        char *content;
        int rc;

        rc = chat_completion_parse(req->body ? req->body : "", req->body_len, a, &content, &u,
                                   &j->why);
        if (u.known) {
                j->used.prompt_tokens += u.prompt_tokens;
                j->used.completion_tokens += u.completion_tokens;
                v->stats.prompt_tokens += u.prompt_tokens;
                v->stats.completion_tokens += u.completion_tokens;
        }
        vlm_rate_charge(&v->rate, u.known ? u.prompt_tokens + u.completion_tokens : j->estimate,
                        wire_now_ms());
        if (!rc)
                rc = vlm_answer_parse(content, strlen(content), a, ans, &j->why);
        if (rc && rc != ST_ENOMEM)
                v->stats.malformed++;
        return rc;
}

/* One request and its answer; *retry says whether another attempt may help. */
static int attempt(struct vlm *v, struct job *j, struct arena *a, struct vlm_answer *ans,
                   bool *retry)
{
        struct vlm_http_request req = {0};
        int64_t left = left_ms(j);
        int rc;

        req.url = v->endpoint;
        req.post_body = j->body;
        req.post_len = j->body_len;
        req.bearer = v->key;
        req.max_body = VLM_ANSWER_MAX_BODY;
        req.timeout_ms = left < v->cfg.timeout_ms ? (long)left : v->cfg.timeout_ms;
        j->attempts++;
        v->stats.requests++;
        rc = vlm_http_run(v->http, &req, 1, 1);
        j->retry_after_ms = req.retry_after_ms;
        *retry = false;
        if (rc) {
                st_fail(&j->why, rc, "request: %s", st_strerror(rc));
        } else if (req.error.code) {
                rc = req.error.code;
                j->why = req.error;
                v->stats.timeouts += rc == ST_ETIMEOUT;
                *retry = rc == ST_ETIMEOUT || rc == ST_ENET || rc == ST_ETRUNC ||
                         rc == ST_ETOOBIG || rc == ST_EPROTO;
        } else if (req.status < 200 || req.status > 299) {
                rc = http_failure(v, j, &req);
                v->stats.rate_limited += req.status == 429;
                v->stats.server_errors += req.status != 429 && retryable_status(req.status);
                *retry = retryable_status(req.status);
        } else {
                rc = read_answer(v, j, &req, a, ans);
                *retry = rc != 0 && rc != ST_ENOMEM;
                if (*retry && j->temperature != VLM_RETRY_TEMPERATURE &&
                    build_body(v, j, VLM_RETRY_TEMPERATURE, NULL))
                        *retry = false;
        }
        vlm_http_request_release(&req);
        return rc;
}

/* Wait for the token-rate limit; false when the wait would pass the deadline. */
static bool wait_for_tokens(struct vlm *v, struct job *j)
{
        int64_t wait = vlm_rate_wait_ms(&v->rate, j->estimate, wire_now_ms());

        if (wait == 0)
                return true;
        if (wait > left_ms(j) - MIN_ATTEMPT_MS) {
                st_fail(&j->why, ST_EAGAIN,
                        "token rate limit: would wait %lld ms, past the job deadline",
                        (long long)wait);
                return false;
        }
        v->stats.rate_wait_ms += (uint64_t)wait;
        return pause_ms(j, wait);
}

/* Add to the last failure that the retry it calls for would pass the deadline. */
static void no_time_to_retry(struct job *j, int64_t delay)
{
        struct st_error last = j->why;

        st_fail(&j->why, last.code, "%s; no retry: waiting %lld ms would pass the job deadline",
                st_error_text(&last, last.code), (long long)delay);
}

/* Attempts until an answer, a failure that retrying cannot fix, or the deadline. */
static int converse(struct vlm *v, struct job *j, struct arena *a, struct vlm_answer *ans)
{
        int64_t delay;
        unsigned n;
        bool retry = true;
        int rc = ST_ETIMEOUT;

        for (n = 0; n <= v->cfg.max_retries && retry; n++) {
                if (n > 0) {
                        delay = j->retry_after_ms >= 0 ? j->retry_after_ms : backoff_ms(v, n);
                        if (delay > left_ms(j) - MIN_ATTEMPT_MS) {
                                no_time_to_retry(j, delay);
                                break;
                        }
                        if (!pause_ms(j, delay))
                                return ST_EAGAIN;
                        v->stats.retries++;
                }
                if (left_ms(j) < MIN_ATTEMPT_MS) {
                        if (n == 0)
                                st_fail(&j->why, ST_ETIMEOUT, "no time left for a request");
                        break;
                }
                if (!wait_for_tokens(v, j))
                        return j->interrupted ? ST_EAGAIN : ST_ETIMEOUT;
                rc = attempt(v, j, a, ans, &retry);
                if (rc == 0)
                        return 0;
        }
        return rc ? rc : ST_ETIMEOUT;
}

/* ---- the job ---- */

/* printable ASCII copy of s in a, everything else '?'; refine_error must stay clean UTF-8. */
static char *ascii_copy(const char *s, struct arena *a)
{
        char *out = arena_strdup(a, s);

        for (char *p = out; p && *p; p++)
                if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
                        *p = '?';
        return out;
}

static int use_answer(struct vlm *v, const struct job *j, const struct vlm_answer *ans,
                      struct arena *a, struct st_doc *out, struct st_error *err)
{
        double w;

        out->description = ans->description;
        out->task = arena_strdup(a, st_task_name(ans->task));
        out->recommended_weight = card_prompt_weight(j->r, &w) == 0 ? w : weight_clamp(ans->weight);
        out->refined_by = arena_strdup(a, v->identity);
        out->refine_error = NULL;
        if (!out->task || !out->refined_by)
                return st_fail(err, ST_ENOMEM, "%s: vlm doc: arena full", j->r->id);
        v->stats.vlm_docs++;
        log_info("%s: %s, %zu images (%zu skipped), %u request%s, %llu+%llu tokens", j->r->id,
                 v->identity, j->n_images, j->n_skipped, j->attempts, j->attempts == 1 ? "" : "s",
                 (unsigned long long)j->used.prompt_tokens,
                 (unsigned long long)j->used.completion_tokens);
        return 0;
}

/* Keep the card doc and say why the VLM did not refine it. */
static int keep_card(struct vlm *v, const struct job *j, int why, struct arena *a,
                     struct st_doc *out, struct st_error *err)
{
        char reason[sizeof(j->why.msg) + sizeof(v->identity) + 64];

        snprintf(reason, sizeof(reason), "%s: %s (%u request%s)", v->identity,
                 st_error_text(&j->why, why), j->attempts, j->attempts == 1 ? "" : "s");
        out->refine_error = ascii_copy(reason, a);
        if (!out->refine_error)
                return st_fail(err, ST_ENOMEM, "%s: refine error: arena full", j->r->id);
        v->stats.card_docs++;
        log_warn("%s: kept the card doc: %s", j->r->id, out->refine_error);
        return 0;
}

int vlm_refine(struct vlm *v, const struct st_raw_record *r, struct arena *a, struct st_doc *out,
               struct st_error *err)
{
        struct job j = {.r = r, .retry_after_ms = -1};
        struct vlm_answer ans;
        int rc;

        if (!v)
                return st_fail(err, ST_EINVAL, "vlm_refine: NULL vlm");
        rc = card_refine(r, a, out, err);
        if (rc)
                return rc;
        j.deadline = wire_now_ms() + v->cfg.deadline_ms;
        rc = prepare(v, &j, out, a);
        if (!rc)
                rc = converse(v, &j, a, &ans);
        free(j.body);
        if (j.interrupted)
                return st_fail(err, ST_EAGAIN, "%s: interrupted by a signal", r->id);
        rc = rc ? keep_card(v, &j, rc, a, out, err) : use_answer(v, &j, &ans, a, out, err);
        if (rc)
                return rc;
        if (++v->stats.jobs % STATS_LOG_EVERY == 0)
                vlm_log_stats(v);
        return 0;
}
