/*
 * composer_llm.c - the LLM composer (see composer_llm.h for one request,
 * step by step).  The HTTP call is one libcurl easy transfer over a handle
 * kept between requests (one connection to the endpoint); the envelope is
 * read by proto/chat_completion.h, the answer and the grounding here, the
 * weights and masks by composer_assemble().
 */
#include "query/composer_llm.h"

#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proto/chat_completion.h"
#include "proto/http_post.h"
#include "proto/http_util.h"
#include "proto/log.h"
#include "proto/utf8.h"
#include "proto/wire.h"

#define CONNECT_MAX_MS  3000L
#define TRIGGERS_SHOWN  8
#define REF_DIGITS_MAX  6
#define LINE_MAX_BYTES  (16 + 2 * COMPOSER_LLM_NAME_MAX + 32 + COMPOSER_LLM_DESCRIPTION + 16)
#define PROMPT_MAX_SENT 4096 /* bytes of the user's prompt; composer_run allows 2000 */

/*
 * The instructions: the paper's composer prompt (stylus/composer.py) in
 * short, with refs instead of list positions and a JSON shape that a
 * json_object response format can carry.
 */
static const char system_prompt[] =
    "You are the composer of a text-to-image system that recommends LoRA adapters. "
    "Part 1: split the user's image prompt into fine-grained, orthogonal topics, taken "
    "only from the prompt's own words, that together cover all of its keywords (at most 8 "
    "topics). Part 2: for each topic choose 0 to 3 adapters from the candidate list that "
    "render exactly that topic well. Use each adapter at most once over all topics. Reject "
    "adapters broader or narrower than the topic, a specific character when the topic is "
    "generic, and anything NSFW. Choose at most 2 style adapters in total. Name adapters "
    "only by their refs from the list (c1, c2, ...). Keep a topic without a good adapter, "
    "with an empty list. Answer with one JSON object and nothing else: "
    "{\"topics\":[{\"topic\":\"<words of the prompt>\",\"adapters\":[\"c1\"]}]}";

struct composer_llm {
        char *endpoint; /* resolved .../chat/completions */
        char *model;
        char *key; /* NULL when none; wiped on destroy */
        long deadline_ms;
        size_t max_candidates;
        CURL *easy;
        _Atomic int64_t own_cooldown;    /* used when the config shares none */
        _Atomic int64_t *cooldown_until; /* monotonic ms; no call before it (429 + Retry-After) */
        struct composer_llm_stats stats;
};

void composer_llm_config_defaults(struct composer_llm_config *c)
{
        memset(c, 0, sizeof(*c));
        c->deadline_ms = COMPOSER_LLM_DEADLINE_MS;
        c->max_candidates = COMPOSER_LLM_CANDIDATES;
}

/* ---- configuration ---- */

static int check_config(const struct composer_llm_config *c, struct st_error *err)
{
        if (!c->url || (strncasecmp(c->url, "http://", 7) && strncasecmp(c->url, "https://", 8)))
                return st_fail(err, ST_EINVAL, "composer url: need an http:// or https:// URL");
        if (!http_util_printable_ascii(c->url))
                return st_fail(err, ST_EINVAL, "composer url: control or non-ASCII characters");
        if (!c->model || !*c->model || strlen(c->model) > COMPOSER_LLM_MODEL_MAX ||
            !http_util_printable_ascii(c->model))
                return st_fail(err, ST_EINVAL, "composer model: need 1 to %d printable ASCII bytes",
                               COMPOSER_LLM_MODEL_MAX);
        if (c->deadline_ms <= 0 || c->deadline_ms > 3600000L)
                return st_fail(err, ST_EINVAL, "composer timeout: %ld ms not in 1..3600000",
                               c->deadline_ms);
        if (c->max_candidates < 1 || c->max_candidates > COMPOSER_LLM_MAX_CANDIDATES)
                return st_fail(err, ST_EINVAL, "composer candidates: %zu not in 1..%d",
                               c->max_candidates, COMPOSER_LLM_MAX_CANDIDATES);
        return 0;
}

/* The key of c into l->key (NULL when none); 0 or ST_EINVAL / ST_ENOMEM. */
static int load_key(struct composer_llm *l, const struct composer_llm_config *c,
                    struct st_error *err)
{
        char key[COMPOSER_LLM_KEY_MAX + 1];
        int rc = http_util_read_key(c->key_file, COMPOSER_LLM_KEY_ENV, key, sizeof(key), err);

        if (rc)
                return rc;
        if (!http_util_printable_ascii(key))
                rc = st_fail(err, ST_EINVAL, "composer key: not printable ASCII");
        else if (key[0] && !(l->key = strdup(key)))
                rc = st_fail(err, ST_ENOMEM, "composer: out of memory");
        explicit_bzero(key, sizeof(key));
        return rc;
}

int composer_llm_new(const struct composer_llm_config *c, struct composer_llm **out,
                     struct st_error *err)
{
        struct composer_llm *l;
        int rc;

        if (!c || !out)
                return st_fail(err, ST_EINVAL, "composer_llm_new: NULL argument");
        *out = NULL;
        if ((rc = check_config(c, err)))
                return rc;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return st_fail(err, ST_ENOMEM, "curl_global_init failed");
        l = calloc(1, sizeof(*l));
        if (!l) {
                curl_global_cleanup();
                return st_fail(err, ST_ENOMEM, "composer: out of memory");
        }
        atomic_init(&l->own_cooldown, 0);
        l->cooldown_until = c->cooldown_until ? c->cooldown_until : &l->own_cooldown;
        l->deadline_ms = c->deadline_ms;
        l->max_candidates = c->max_candidates;
        l->endpoint = http_util_endpoint(c->url, "/chat/completions");
        l->model = strdup(c->model);
        l->easy = curl_easy_init();
        if (!l->endpoint || !l->model || !l->easy) {
                rc = st_fail(err, ST_ENOMEM, "composer: out of memory");
                goto out_free;
        }
        if ((rc = load_key(l, c, err)))
                goto out_free;
        if (http_post_setup(l->easy, l->endpoint, COMPOSER_LLM_USER_AGENT)) {
                rc = st_fail(err, ST_EINVAL, "composer url: libcurl refuses %s", l->endpoint);
                goto out_free;
        }
        *out = l;
        return 0;
out_free:
        composer_llm_destroy(&l);
        return rc;
}

void composer_llm_destroy(struct composer_llm **lp)
{
        struct composer_llm *l = lp ? *lp : NULL;

        if (!l)
                return;
        if (l->easy)
                curl_easy_cleanup(l->easy);
        if (l->key) {
                explicit_bzero(l->key, strlen(l->key));
                free(l->key);
        }
        free(l->endpoint);
        free(l->model);
        free(l);
        *lp = NULL;
        curl_global_cleanup();
}

const char *composer_llm_model(const struct composer_llm *l)
{
        return l->model;
}

const char *composer_llm_endpoint(const struct composer_llm *l)
{
        return l->endpoint;
}

void composer_llm_get_stats(const struct composer_llm *l, struct composer_llm_stats *out)
{
        *out = l->stats;
}

/* ---- the request ---- */

/* A fixed-size text buffer: appends past its size are cut (the sizes are computed to fit). */
struct text {
        char *s;
        size_t len, size;
};

/* Append at most max bytes of s (cut on a UTF-8 boundary), control bytes as spaces. */
static void put_clean(struct text *t, const char *s, size_t max)
{
        size_t n = s ? utf8_fit(s, strlen(s), max) : 0;

        n = utf8_fit(s ? s : "", n, t->size - 1 - t->len);
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];

                t->s[t->len++] = ch < 0x20 || ch == 0x7f ? ' ' : s[i];
        }
        t->s[t->len] = '\0';
}

/* Append s as it is (the request's own text), cut to fit. */
static void put(struct text *t, const char *s)
{
        size_t n = utf8_fit(s, strlen(s), t->size - 1 - t->len);

        memcpy(t->s + t->len, s, n);
        t->len += n;
        t->s[t->len] = '\0';
}

/* "c<k>: name | task | trigger words | description" of one offered candidate. */
static void candidate_line(struct text *t, size_t k, const struct st_doc *d)
{
        char ref[32], words[COMPOSER_LLM_NAME_MAX + 1] = "";
        size_t wlen = 0;

        snprintf(ref, sizeof(ref), "c%zu: ", k + 1);
        put(t, ref);
        put_clean(t, d->name ? d->name : "(no name)", COMPOSER_LLM_NAME_MAX);
        put(t, " | ");
        put_clean(t, d->task ? d->task : "other", 32);
        put(t, " | ");
        for (size_t i = 0; i < d->trigger_words.n && i < TRIGGERS_SHOWN; i++) {
                const char *w = d->trigger_words.v[i] ? d->trigger_words.v[i] : "";
                size_t n;

                if (i && wlen + 2 >= sizeof(words) - 1)
                        break;
                if (i) {
                        memcpy(words + wlen, ", ", 2);
                        wlen += 2;
                }
                n = utf8_fit(w, strlen(w), sizeof(words) - 1 - wlen);
                memcpy(words + wlen, w, n);
                wlen += n;
                words[wlen] = '\0';
        }
        put_clean(t, words[0] ? words : "-", COMPOSER_LLM_NAME_MAX);
        put(t, " | ");
        put_clean(t, d->description ? d->description : "", COMPOSER_LLM_DESCRIPTION);
        put(t, "\n");
}

int composer_llm_request_body(const char *model, const char *prompt,
                              const struct composer_candidate *c, const size_t *offered, size_t n,
                              char **body, size_t *len, struct st_error *err)
{
        struct text t = {0};
        json_t *root;
        int rc = 0;

        if (!model || !prompt || !body || !len || (n && (!c || !offered)))
                return st_fail(err, ST_EINVAL, "composer_llm_request_body: NULL argument");
        if (n > COMPOSER_LLM_MAX_CANDIDATES)
                return st_fail(err, ST_EINVAL, "composer: %zu candidates offered, at most %d", n,
                               COMPOSER_LLM_MAX_CANDIDATES);
        *body = NULL;
        t.size = PROMPT_MAX_SENT + 128 + n * LINE_MAX_BYTES;
        t.s = malloc(t.size);
        if (!t.s)
                return st_fail(err, ST_ENOMEM, "composer: out of memory");
        t.s[0] = '\0';
        put(&t, "Prompt: ");
        put_clean(&t, prompt, PROMPT_MAX_SENT);
        put(&t, "\n\nCandidates (ref: name | task | trigger words | description):\n");
        for (size_t k = 0; k < n; k++) {
                if (!c[offered[k]].doc) {
                        rc = st_fail(err, ST_EINVAL, "composer: candidate %zu has no doc",
                                     offered[k]);
                        goto out;
                }
                candidate_line(&t, k, c[offered[k]].doc);
        }
        root =
            json_pack("{s:s, s:f, s:{s:s}, s:[{s:s, s:s}, {s:s, s:s}]}", "model", model,
                      "temperature", 0.0, "response_format", "type", "json_object", "messages",
                      "role", "system", "content", system_prompt, "role", "user", "content", t.s);
        if (!root) { /* json_pack refuses strings that are not UTF-8 */
                rc = st_fail(err, ST_EINVAL, "composer: prompt or candidate text is not UTF-8");
                goto out;
        }
        *body = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        if (!*body)
                rc = st_fail(err, ST_ENOMEM, "composer: out of memory");
        else
                *len = strlen(*body);
out:
        free(t.s);
        return rc;
}

/* ---- the answer ---- */

/* s[0..n) with control bytes as spaces, trimmed, cut to COMPOSER_LLM_TOPIC_MAX; NULL if empty. */
static const char *clean_topic(const char *s, size_t n, struct arena *a, int *rc)
{
        size_t start = 0;
        char *out;

        while (start < n && ((unsigned char)s[start] <= 0x20 || s[start] == 0x7f))
                start++;
        while (n > start && ((unsigned char)s[n - 1] <= 0x20 || s[n - 1] == 0x7f))
                n--;
        n = start + utf8_fit(s + start, n - start, COMPOSER_LLM_TOPIC_MAX);
        if (n == start)
                return NULL;
        out = arena_strndup(a, s + start, n - start);
        if (!out) {
                *rc = ST_ENOMEM;
                return NULL;
        }
        for (char *p = out; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        *p = ' ';
        return out;
}

/* The offered position of ref v ("c7" -> 6), or -1 when it is no ref of the n offered. */
static long ref_position(const json_t *v, size_t n)
{
        const char *s;
        size_t len, digits;
        long k;

        if (!json_is_string(v))
                return -1;
        s = json_string_value(v);
        len = json_string_length(v);
        while (len && (*s == ' ' || *s == '\t')) {
                s++;
                len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        if (len < 2 || (s[0] != 'c' && s[0] != 'C'))
                return -1;
        digits = strspn(s + 1, "0123456789");
        if (digits != len - 1 || digits > REF_DIGITS_MAX)
                return -1;
        k = strtol(s + 1, NULL, 10);
        return k >= 1 && (size_t)k <= n ? k - 1 : -1;
}

/* The topic of ans whose text is text (any case), or NULL. */
static struct composer_llm_topic *same_topic(struct composer_llm_answer *ans, const char *text)
{
        for (size_t t = 0; t < ans->n_topics; t++)
                if (strcasecmp(ans->topics[t].text, text) == 0)
                        return &ans->topics[t];
        return NULL;
}

/* Add the refs of list to topic under the rules of composer_llm_parse_answer. */
static void take_refs(struct composer_llm_answer *ans, struct composer_llm_topic *topic,
                      const json_t *list, size_t n_offered, bool *used)
{
        const json_t *v;
        size_t i;
        long k;

        json_array_foreach(list, i, v)
        {
                k = ref_position(v, n_offered);
                if (k < 0) {
                        ans->unknown_refs++;
                } else if (used[k]) {
                        ans->repeated++;
                } else if (topic->n_refs == COMPOSER_LLM_MAX_PER_TOPIC) {
                        ans->cut_refs++;
                } else {
                        used[k] = true;
                        topic->refs[topic->n_refs++] = (size_t)k;
                        ans->n_refs++;
                }
        }
}

/* One entry of "topics". */
static int take_topic(struct composer_llm_answer *ans, const json_t *entry, size_t n_offered,
                      bool *used, struct arena *a)
{
        const json_t *name = json_object_get(entry, "topic");
        const json_t *list = json_object_get(entry, "adapters");
        struct composer_llm_topic *topic;
        const char *text;
        int rc = 0;

        if (!json_is_object(entry) || !json_is_string(name)) {
                ans->bad_topics++;
                return 0;
        }
        text = clean_topic(json_string_value(name), json_string_length(name), a, &rc);
        if (!text) {
                ans->bad_topics += rc == 0;
                return rc;
        }
        topic = same_topic(ans, text);
        if (!topic && ans->n_topics == COMPOSER_LLM_MAX_TOPICS) {
                ans->extra_topics++;
                return 0;
        }
        if (!topic) {
                topic = &ans->topics[ans->n_topics++];
                topic->text = text;
        }
        if (json_is_array(list))
                take_refs(ans, topic, list, n_offered, used);
        else if (list && !json_is_null(list))
                ans->unknown_refs++;
        return 0;
}

int composer_llm_parse_answer(const char *content, size_t len, size_t n_offered, struct arena *a,
                              struct composer_llm_answer *out, struct st_error *err)
{
        char quoted[CHAT_QUOTE_SIZE];
        const json_t *topics, *entry;
        json_t *o;
        bool *used;
        size_t i;
        int rc = 0;

        if (!content || !a || !out)
                return st_fail(err, ST_EINVAL, "composer_llm_parse_answer: NULL argument");
        memset(out, 0, sizeof(*out));
        if (len > COMPOSER_LLM_MAX_CONTENT)
                return st_fail(err, ST_ETOOBIG, "answer text of %zu bytes, limit %zu", len,
                               COMPOSER_LLM_MAX_CONTENT);
        o = chat_find_object(content, len);
        if (!o) {
                chat_quote(quoted, sizeof(quoted), content, len);
                return st_fail(err, ST_EPARSE, "no JSON object in the answer '%s'", quoted);
        }
        topics = json_object_get(o, "topics");
        if (!topics || json_is_null(topics)) {
                rc = st_fail(err, ST_EMISSING, "answer has no 'topics'");
                goto out;
        }
        if (!json_is_array(topics)) {
                rc = st_fail(err, ST_ETYPE, "answer: 'topics' is %s, not an array",
                             http_util_json_type_name(topics));
                goto out;
        }
        used = arena_calloc(a, n_offered ? n_offered : 1, sizeof(*used));
        if (!used) {
                rc = st_fail(err, ST_ENOMEM, "answer: arena full");
                goto out;
        }
        json_array_foreach(topics, i, entry)
        {
                if ((rc = take_topic(out, entry, n_offered, used, a))) {
                        st_fail(err, rc, "answer: arena full");
                        goto out;
                }
        }
out:
        json_decref(o);
        return rc;
}

/* ---- grounding ---- */

static float clamp01(float x)
{
        if (!(x > 0)) /* also NaN */
                return 0;
        return x > 1 ? 1 : x;
}

int composer_llm_ground(const struct composer_llm_answer *ans, const char *model,
                        const char *prompt, const struct composer_candidate *c,
                        const size_t *offered, size_t n_offered, const struct composer_options *opt,
                        struct arena *a, struct composer_result *r, struct st_error *err)
{
        struct composer_choice *choices;
        size_t n = 0;

        r->composer = arena_strdup(a, model);
        r->n_topics = ans->n_topics;
        r->topics = arena_calloc(a, ans->n_topics ? ans->n_topics : 1, sizeof(*r->topics));
        choices = arena_calloc(a, ans->n_refs ? ans->n_refs : 1, sizeof(*choices));
        if (!r->composer || !r->topics || !choices)
                return st_fail(err, ST_ENOMEM, "composer: no memory");
        for (size_t t = 0; t < ans->n_topics; t++) {
                const struct composer_llm_topic *topic = &ans->topics[t];

                r->topics[t].text = topic->text;
                for (size_t k = 0; k < topic->n_refs && n < ans->n_refs; k++) {
                        struct composer_choice *ch = &choices[n++];

                        if (topic->refs[k] >= n_offered)
                                return st_fail(err, ST_EINVAL, "composer: ref c%zu of %zu offered",
                                               topic->refs[k] + 1, n_offered);
                        ch->cand = offered[topic->refs[k]];
                        ch->topic = t;
                        ch->score = clamp01(c[ch->cand].score);
                        ch->reason =
                            arena_printf(a, "chosen by %s for topic '%s'", model, topic->text);
                        if (!ch->reason)
                                return st_fail(err, ST_ENOMEM, "composer: no memory");
                }
        }
        return composer_assemble(prompt, c, choices, n, opt, a, r, err);
}

/* ---- the call ---- */

/* The failure of a non-2xx answer; a 429 with Retry-After starts a cooldown. */
static int http_failure(struct composer_llm *l, const struct http_post_reply *r,
                        struct st_error *why)
{
        char msg[160], quoted[CHAT_QUOTE_SIZE];
        long rest = r->retry_after_ms;

        if (r->status == 429 && rest > 0) {
                atomic_store(l->cooldown_until, wire_now_ms() + rest);
                return st_fail(why, ST_EAGAIN, "HTTP 429: rate limited; no calls for %ld s",
                               (rest + 999) / 1000);
        }
        if (r->status == 401 || r->status == 403)
                return st_fail(why, ST_EHTTP, "HTTP %ld: the endpoint refused the key", r->status);
        if (!chat_error_message(r->body, r->len, msg, sizeof(msg)))
                return st_fail(why, ST_EHTTP, "HTTP %ld", r->status);
        if (http_util_quotes_key(msg, l->key))
                return st_fail(why, ST_EHTTP, "HTTP %ld (message withheld: it quoted the key)",
                               r->status);
        chat_quote(quoted, sizeof(quoted), msg, strlen(msg));
        return st_fail(why, r->status == 429 ? ST_EAGAIN : ST_EHTTP, "HTTP %ld: %s", r->status,
                       quoted);
}

/* Read a 2xx answer and ground it into r; 0 or why it is unusable. */
static int read_answer(struct composer_llm *l, const struct http_post_reply *rep,
                       const char *prompt, const struct composer_candidate *c,
                       const size_t *offered, size_t n, const struct composer_options *opt,
                       struct arena *a, struct composer_result *r, struct st_error *why)
{
        struct composer_llm_answer ans;
        struct chat_usage usage;
        char *content;
        int rc;

        rc = chat_completion_parse(rep->body ? rep->body : "", rep->len, a, &content, &usage, why);
        if (!rc)
                rc = composer_llm_parse_answer(content, strlen(content), n, a, &ans, why);
        if (!rc)
                rc = composer_llm_ground(&ans, l->model, prompt, c, offered, n, opt, a, r, why);
        if (!rc && r->n_adapters == 0)
                rc = st_fail(why, ST_EMISSING,
                             "no usable adapter in the answer (%zu topics, %zu refs kept, %zu "
                             "unknown, %zu repeated)",
                             ans.n_topics, ans.n_refs, ans.unknown_refs, ans.repeated);
        return rc;
}

/* Steps 2-4 of composer_llm.h; 0 with r filled, else why the LLM could not compose. */
static int ask(struct composer_llm *l, const char *prompt, const struct composer_candidate *c,
               const size_t *keep, size_t n_keep, const struct composer_options *opt,
               struct arena *a, struct composer_result *r, struct st_error *why)
{
        size_t n = n_keep < l->max_candidates ? n_keep : l->max_candidates;
        struct http_post_reply rep = {.max = COMPOSER_LLM_MAX_BODY,
                                      .retry_after_max_ms = COMPOSER_LLM_COOLDOWN_MAX_MS,
                                      .connect_max_ms = CONNECT_MAX_MS};
        int64_t t0, rest = atomic_load(l->cooldown_until) - wire_now_ms();
        char *body = NULL;
        size_t len;
        int rc;

        if (rest > 0)
                return st_fail(why, ST_EAGAIN, "rate limited: no calls for %lld more s",
                               (long long)(rest + 999) / 1000);
        if ((rc = composer_llm_request_body(l->model, prompt, c, keep, n, &body, &len, why)))
                return rc;
        t0 = wire_now_ms();
        l->stats.calls++;
        rc = http_post(l->easy, l->key, body, len, l->deadline_ms, &rep, why);
        if (rc == ST_ETIMEOUT)
                st_fail(why, rc, "no answer within %ld ms", l->deadline_ms);
        l->stats.seconds += (double)(wire_now_ms() - t0) / 1000.0;
        if (!rc && (rep.status < 200 || rep.status > 299))
                rc = http_failure(l, &rep, why);
        if (!rc)
                rc = read_answer(l, &rep, prompt, c, keep, n, opt, a, r, why);
        http_post_reply_release(&rep);
        free(body);
        return rc;
}

/* The fallback reason of why: printable ASCII, at most COMPOSER_LLM_REASON_MAX bytes, no key. */
static const char *fallback_reason(const struct composer_llm *l, const struct st_error *why, int rc,
                                   struct arena *a)
{
        char text[COMPOSER_LLM_REASON_MAX + 1];
        const char *msg = st_error_text(why, rc);
        size_t n;

        if (http_util_quotes_key(msg, l->key))
                msg = "(reason withheld: it quoted the key)";
        n = strlen(msg) < COMPOSER_LLM_REASON_MAX ? strlen(msg) : COMPOSER_LLM_REASON_MAX;
        for (size_t i = 0; i < n; i++)
                text[i] = msg[i] >= 0x20 && msg[i] < 0x7f ? msg[i] : '?';
        text[n] = '\0';
        return arena_strdup(a, text);
}

int composer_llm_run(struct composer_llm *l, const char *prompt, const struct composer_candidate *c,
                     size_t n, const struct composer_options *opt, const struct embedder *e,
                     struct arena *a, struct composer_result *out, struct st_error *err)
{
        struct composer_result r = {0};
        struct st_error why = {0};
        size_t *keep, n_keep;
        const char *reason;
        int rc, failed;

        if (!l)
                return st_fail(err, ST_EINVAL, "composer_llm_run: NULL composer");
        if ((rc = composer_eligible(prompt, c, n, opt, a, &keep, &n_keep, &r, err)))
                return rc;
        if (n_keep == 0)
                rc = st_fail(&why, ST_ENOTFOUND, "no eligible candidate to offer");
        else
                rc = ask(l, prompt, c, keep, n_keep, opt, a, &r, &why);
        if (rc == 0) {
                *out = r;
                return 0;
        }
        failed = rc;
        l->stats.fallbacks++;
        reason = fallback_reason(l, &why, failed, a);
        if (n_keep > 0)
                log_warn("composer %s: falling back to rules: %s", l->model,
                         reason ? reason : st_strerror(failed));
        if ((rc = composer_run(prompt, c, n, opt, e, a, out, err)))
                return rc;
        out->fallback = reason ? reason : st_strerror(failed);
        return 0;
}
