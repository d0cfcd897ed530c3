/*
 * test_vlm.c - the VLM refiner against tests/fixtures/vlm_server.py, a
 * server speaking OpenAI's chat-completions wire format, started here with
 * fork/exec and stopped by PID.  One case per behaviour of the server: good
 * answers (plain, JSON mode, fenced, in prose), malformed output of every
 * kind (kept as the card doc after the retries), errors that are retried
 * until they stop (429 with Retry-After, 500, 503, timeouts, truncated
 * bodies), errors that are not (400, 401), the key kept out of every
 * message, the deadline, the token-rate limit, the <lora:..:w> override,
 * description cleaning, a signal during a wait.  The server checks what it
 * receives (data URLs, "Prompt:" parts, no negative prompts, the key) and
 * the test reads its counters at GET /__stats.
 */
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/card.h"
#include "refiner/vlm.h"
#include "refiner/vlm_answer.h"
#include "refiner/vlm_http.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

#define KEY   "sk-test-6f1d0c9a2b"
#define MODEL "test-vlm"

static struct arena arena;
static pid_t server_pid;
static char base[64];    /* http://127.0.0.1:PORT */
static char workdir[64]; /* holds the port file */

/* ---- the test server ---- */

static bool server_start(void)
{
        const char *fixtures = getenv("STYLUS_FIXTURES");
        char script[1024], port_file[128], port[16] = "";
        FILE *f;
        int i;

        snprintf(script, sizeof(script), "%s/vlm_server.py",
                 fixtures ? fixtures : "tests/fixtures");
        snprintf(workdir, sizeof(workdir), "/tmp/stylus-test-vlm-XXXXXX");
        if (!mkdtemp(workdir))
                return false;
        snprintf(port_file, sizeof(port_file), "%s/port", workdir);
        server_pid = fork();
        if (server_pid == 0) {
                execl("/usr/bin/python3", "python3", script, "--port", "0", "--port-file",
                      port_file, "--key", KEY, "--sleep-ms", "3000", (char *)NULL);
                _exit(127);
        }
        for (i = 0; i < 400 && server_pid > 0; i++) {
                f = fopen(port_file, "r");
                if (f) {
                        if (!fgets(port, sizeof(port), f))
                                port[0] = '\0';
                        fclose(f);
                        break;
                }
                if (waitpid(server_pid, NULL, WNOHANG) == server_pid) {
                        server_pid = 0;
                        break;
                }
                usleep(50000);
        }
        unlink(port_file);
        rmdir(workdir);
        if (!port[0]) {
                fprintf(stderr, "the VLM test server did not start (%s)\n", script);
                return false;
        }
        port[strcspn(port, "\n")] = '\0';
        snprintf(base, sizeof(base), "http://127.0.0.1:%s", port);
        return true;
}

static void server_stop(void)
{
        if (server_pid <= 0)
                return;
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = 0;
}

/* GET path of the server as JSON (caller decrefs), or NULL. */
static json_t *server_json(const char *path)
{
        struct vlm_http *h = NULL;
        struct vlm_http_request req = {0};
        char url[128];
        json_t *j = NULL;

        snprintf(url, sizeof(url), "%s%s", base, path);
        req.url = url;
        req.max_body = 1 << 20;
        req.timeout_ms = 5000;
        if (vlm_http_new(VLM_HTTP_USER_AGENT, &h, NULL) == 0 && vlm_http_run(h, &req, 1, 1) == 0 &&
            req.error.code == 0 && req.status == 200)
                j = json_loadb(req.body, req.body_len, 0, NULL);
        vlm_http_request_release(&req);
        vlm_http_destroy(&h);
        return j;
}

static long long stat_of(const char *key)
{
        json_t *j = server_json("/__stats");
        long long v = json_integer_value(json_object_get(j, key));

        json_decref(j);
        return v;
}

/* Requests the server had for a card title. */
static long long requests_for(const char *title)
{
        json_t *j = server_json("/__stats");
        long long v = json_integer_value(json_object_get(json_object_get(j, "titles"), title));

        json_decref(j);
        return v;
}

/* ---- records and runs ---- */

static char *image_url(const char *name)
{
        return arena_printf(&arena, "%s/images/%s", base, name);
}

static struct st_file files[] = {
    {"inkwash_v2.safetensors", 151000000, NULL, "https://example.org/dl/1"},
};

static int records;

/* A style LoRA whose card states 0.6-0.8 and whose title carries the server mode. */
static struct st_raw_record record(const char *title)
{
        static char *tags[] = {"style", "ink"};
        static char *words[] = {"inkwash"};
        struct st_raw_record r = {0};
        struct st_image *im = arena_calloc(&arena, 2, sizeof(*im));

        im[0].url = image_url("a.png");
        im[0].prompt = "1girl, ink wash painting, mountains\nNegative prompt: lowres, ugly\n"
                       "Steps: 20, Sampler: Euler a";
        im[1].url = image_url("b.png");
        r.id = arena_printf(&arena, "civitai:%d@1", ++records);
        r.source = "civitai";
        r.name = (char *)title;
        r.type = "LORA";
        r.base_model = "sdxl";
        r.card_html = "<p>Ink wash painting style.</p><p>Recommended weight: 0.6-0.8</p>";
        r.tags = (struct st_strv){tags, 2};
        r.trained_words = (struct st_strv){words, 1};
        r.files = files;
        r.n_files = 1;
        r.images = im;
        r.n_images = 2;
        r.content_hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
        return r;
}

static struct vlm_config config(void)
{
        struct vlm_config c;

        vlm_config_defaults(&c);
        c.url = arena_printf(&arena, "%s/v1", base);
        c.model = MODEL;
        c.key = KEY;
        c.retry_base_ms = 20;
        c.timeout_ms = 5000;
        c.deadline_ms = 20000;
        return c;
}

struct outcome {
        int rc;
        struct st_error err;
        struct st_doc doc;
        struct vlm_stats stats;
};

/* Refine r with a fresh VLM refiner of configuration c. */
static struct outcome run(const struct vlm_config *c, const struct st_raw_record *r)
{
        struct outcome o;
        struct vlm *v = NULL;

        memset(&o, 0, sizeof(o));
        o.rc = vlm_new(c, &v, &o.err);
        if (o.rc == 0)
                o.rc = vlm_refine(v, r, &arena, &o.doc, &o.err);
        if (o.rc)
                fprintf(stderr, "%s: %s\n", r->name, st_error_text(&o.err, o.rc));
        if (v)
                vlm_get_stats(v, &o.stats);
        vlm_destroy(&v);
        return o;
}

static bool has(const char *s, const char *part)
{
        if (s && strstr(s, part))
                return true;
        fprintf(stderr, "'%s' not in '%s'\n", part, s ? s : "(null)");
        return false;
}

static bool is_vlm_doc(const struct outcome *o)
{
        if (o->rc == 0 && o->doc.refined_by && strcmp(o->doc.refined_by, "vlm:" MODEL "@p1") == 0 &&
            !o->doc.refine_error)
                return true;
        fprintf(stderr, "not a VLM doc: refined_by %s, refine_error %s\n",
                o->doc.refined_by ? o->doc.refined_by : "(null)",
                o->doc.refine_error ? o->doc.refine_error : "(null)");
        return false;
}

/* The card doc kept after a failure, with the reason in refine_error. */
static bool is_card_doc(const struct outcome *o, const struct st_raw_record *r, const char *why)
{
        struct st_doc card;

        if (o->rc != 0 || card_refine(r, &arena, &card, NULL) != 0)
                return false;
        return has(o->doc.refined_by, "card") && strcmp(o->doc.refined_by, "card") == 0 &&
               has(o->doc.refine_error, "vlm:" MODEL "@p1: ") && has(o->doc.refine_error, why) &&
               strcmp(o->doc.description, card.description) == 0 &&
               strcmp(o->doc.task, card.task) == 0 &&
               o->doc.recommended_weight == card.recommended_weight &&
               !strstr(o->doc.refine_error, KEY);
}

/* ---- cases ---- */

static void test_good(void)
{
        const char *title = "Ink Wash Good";
        struct st_raw_record r = record(title);
        struct vlm_config c = config();
        struct st_image im[6];
        struct outcome o;

        /* two good images, then four that must be skipped */
        im[0] = r.images[0];
        im[1] = r.images[1];
        im[2] = (struct st_image){image_url("big.png"), "huge", NULL};
        im[3] = (struct st_image){image_url("page.html"), "a web page", NULL};
        im[4] = (struct st_image){image_url("missing.png"), "gone", NULL};
        im[5] = (struct st_image){image_url("clip.mp4"), "a video", NULL};
        r.images = im;
        r.n_images = 6;
        o = run(&c, &r);
        CHECK(is_vlm_doc(&o));
        CHECK(o.doc.task && strcmp(o.doc.task, "style") == 0);
        CHECK(o.doc.recommended_weight == 0.7);
        CHECK(has(o.doc.description, "Ink Wash Good changes the look"));
        CHECK(has(o.doc.description, "Across the 2 example images"));
        CHECK(o.doc.id == r.id && o.doc.trigger_words.n == 1);
        CHECK(o.stats.jobs == 1 && o.stats.vlm_docs == 1 && o.stats.card_docs == 0);
        CHECK(o.stats.requests == 1 && o.stats.retries == 0);
        CHECK(o.stats.images_sent == 2 && o.stats.images_skipped == 4);
        CHECK(o.stats.prompt_tokens > 0 && o.stats.completion_tokens > 0);
        CHECK(requests_for(title) == 1);
}

static void test_json_mode(void)
{
        struct st_raw_record r = record("Ink Wash JSON mode");
        struct vlm_config c = config();
        long long before = stat_of("json_mode");
        struct outcome o;

        c.json_mode = true;
        o = run(&c, &r);
        CHECK(is_vlm_doc(&o));
        CHECK(stat_of("json_mode") == before + 1);
}

static void test_lenient_forms(void)
{
        static const char *titles[] = {"Ink fenced [[vlm:fenced]]", "Ink prose [[vlm:prose]]"};
        struct vlm_config c = config();
        size_t i;

        for (i = 0; i < 2; i++) {
                struct st_raw_record r = record(titles[i]);
                struct outcome o = run(&c, &r);

                CHECK(is_vlm_doc(&o));
                CHECK(o.doc.recommended_weight == 0.7 && strcmp(o.doc.task, "style") == 0);
                CHECK(o.stats.requests == 1 && o.stats.malformed == 0);
        }
}

/* Malformed output every time: three requests, then the card doc. */
static void test_malformed(void)
{
        static const struct {
                const char *title, *why;
        } cases[] = {
            {"Ink [[vlm:wrong_types]]", "'task' is an integer, not a string"},
            {"Ink [[vlm:unknown_task]]", "task 'portrait' is not a task category"},
            {"Ink [[vlm:absurd_weight]]", "recommended_weight 50 is outside 0.05..2"},
            {"Ink [[vlm:missing_key]]", "answer has no 'recommended_weight'"},
            {"Ink [[vlm:not_json]]", "no JSON object in the answer"},
            {"Ink [[vlm:refusal]]", "refusal 'I can't help with that request.'"},
            {"Ink [[vlm:length]]", "no JSON object in the answer"},
            {"Ink [[vlm:body_not_json]]", "answer is not JSON"},
            {"Ink [[vlm:huge]]", "response over 1048576 bytes"},
        };
        struct vlm_config c = config();
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct st_raw_record r = record(cases[i].title);
                struct outcome o = run(&c, &r);

                CHECK(is_card_doc(&o, &r, cases[i].why));
                CHECK(has(o.doc.refine_error, "(3 requests)"));
                CHECK(o.stats.requests == 3 && o.stats.retries == 2);
                CHECK(o.stats.card_docs == 1 && o.stats.vlm_docs == 0 && o.stats.jobs == 1);
                CHECK(requests_for(cases[i].title) == 3);
        }
}

/* Failures that stop: retried until a good answer. */
static void test_retried(void)
{
        static const struct {
                const char *title;
                long requests;
        } cases[] = {
            {"Ink [[vlm:wrong_types:1]]", 2}, {"Ink [[vlm:r429:1]]", 2},
            {"Ink [[vlm:r500:2]]", 3},        {"Ink [[vlm:r503:1]]", 2},
            {"Ink [[vlm:truncated:1]]", 2},   {"Ink [[vlm:timeout:1]]", 2},
            {"Ink [[vlm:huge:2]]", 3},
        };
        struct vlm_config c = config();
        size_t i;

        c.timeout_ms = 1000; /* the server sleeps 3 s in timeout mode */
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct st_raw_record r = record(cases[i].title);
                struct outcome o = run(&c, &r);

                CHECK(is_vlm_doc(&o));
                CHECK(o.doc.recommended_weight == 0.7);
                CHECK(o.stats.requests == (uint64_t)cases[i].requests);
                CHECK(o.stats.retries == (uint64_t)cases[i].requests - 1);
                CHECK(requests_for(cases[i].title) == cases[i].requests);
        }
}

static void test_counted_failures(void)
{
        struct vlm_config c = config();
        struct st_raw_record r;
        struct outcome o;

        r = record("Ink [[vlm:r429:1]] counted");
        o = run(&c, &r);
        CHECK(o.stats.rate_limited == 1 && o.stats.server_errors == 0);
        r = record("Ink [[vlm:r500]] always");
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "HTTP 500: The server had an error"));
        CHECK(o.stats.server_errors == 3 && o.stats.requests == 3);
        r = record("Ink [[vlm:timeout]] always");
        c.timeout_ms = 600;
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "timed out"));
        CHECK(o.stats.timeouts == 3 && o.stats.requests == 3);
        r = record("Ink [[vlm:wrong_types:1]] counted");
        o = run(&c, &r);
        CHECK(o.stats.malformed == 1 && o.stats.vlm_docs == 1);
}

/* Failures no retry can fix: one request, then the card doc; the key in no message. */
static void test_not_retried(void)
{
        struct vlm_config c = config();
        long long auth_before = stat_of("auth_failures");
        struct st_raw_record r;
        struct outcome o;

        r = record("Ink [[vlm:r400]]");
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "HTTP 400: Invalid 'messages': unsupported content."));
        CHECK(o.stats.requests == 1 && requests_for("Ink [[vlm:r400]]") == 1);

        r = record("Ink [[vlm:echo_key]]");
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "HTTP 400: (message withheld: it quoted the key)"));

        r = record("Ink wrong key");
        c.key = "sk-wrong-key-123456";
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "HTTP 401: the endpoint refused the key"));
        CHECK(!strstr(o.doc.refine_error, "sk-wrong"));
        CHECK(o.stats.requests == 1);
        CHECK(stat_of("auth_failures") == auth_before + 1);
}

/* A Retry-After that would pass the deadline is not waited for. */
static void test_deadline(void)
{
        struct st_raw_record r = record("Ink [[vlm:r429]] deadline");
        struct vlm_config c = config();
        struct outcome o;

        c.deadline_ms = 1200; /* the server asks for 1 s */
        o = run(&c, &r);
        CHECK(is_card_doc(&o, &r, "HTTP 429: Rate limit reached for requests; no retry"));
        CHECK(has(o.doc.refine_error, "would pass the job deadline"));
        CHECK(o.stats.requests == 1);
}

/* The token-rate limit: the second job would wait past its deadline. */
static void test_token_limit(void)
{
        struct st_raw_record r1 = record("Ink tokens one"), r2 = record("Ink tokens two");
        struct vlm_config c = config();
        struct vlm *v = NULL;
        struct vlm_stats s;
        struct st_doc d1, d2;

        c.tokens_per_min = 60;
        CHECK(vlm_new(&c, &v, NULL) == 0);
        if (!v)
                return;
        CHECK(vlm_refine(v, &r1, &arena, &d1, NULL) == 0);
        CHECK(d1.refined_by && strcmp(d1.refined_by, "vlm:" MODEL "@p1") == 0);
        CHECK(vlm_refine(v, &r2, &arena, &d2, NULL) == 0);
        CHECK(d2.refined_by && strcmp(d2.refined_by, "card") == 0);
        CHECK(has(d2.refine_error, "token rate limit: would wait"));
        CHECK(has(d2.refine_error, "(0 requests)"));
        vlm_get_stats(v, &s);
        CHECK(s.requests == 1 && s.jobs == 2 && s.vlm_docs == 1 && s.card_docs == 1);
        CHECK(requests_for("Ink tokens two") == 0);
        vlm_destroy(&v);
        CHECK(v == NULL);
}

/* A <lora:NAME:W> tag in an example prompt wins over the VLM's weight. */
static void test_lora_override(void)
{
        struct st_raw_record r = record("Ink lora override");
        struct vlm_config c = config();
        struct outcome o;

        r.images[1].prompt = "a crane, ink wash <lora:inkwash_v2:0.9>";
        o = run(&c, &r);
        CHECK(is_vlm_doc(&o));
        CHECK(o.doc.recommended_weight == 0.9);
}

static void test_cleaning(void)
{
        struct vlm_config c = config();
        struct st_raw_record r;
        struct outcome o;
        struct st_doc back;
        char *buf = NULL;
        size_t n, len = 0;

        r = record("Ink [[vlm:ctrl]]");
        o = run(&c, &r);
        CHECK(is_vlm_doc(&o));
        CHECK(o.doc.description &&
              strcmp(o.doc.description, "Ink wash painting[31m with soft edges and grain.") == 0);

        r = record("Ink [[vlm:long]]");
        o = run(&c, &r);
        CHECK(is_vlm_doc(&o));
        n = o.doc.description ? strlen(o.doc.description) : 0;
        CHECK(n > 1000 && n <= VLM_DESCRIPTION_MAX);
        /* the cut ends on a whole character: the doc encodes (the codec checks UTF-8) */
        CHECK(o.rc == 0 && st_doc_to_msgpack(&o.doc, &buf, &len) == 0);
        CHECK(buf && st_doc_from_msgpack(buf, len, &arena, &back, NULL) == 0);
        free(buf);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
        (void)sig;
        alarms++;
}

/* A signal during a wait gives the job back (ST_EAGAIN) instead of a degraded doc. */
static void test_interrupted(void)
{
        struct st_raw_record r = record("Ink [[vlm:r429]] interrupted");
        struct vlm_config c = config();
        struct sigaction sa;
        struct outcome o;
        pid_t pinger;

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_alarm; /* no SA_RESTART: nanosleep returns EINTR */
        sigaction(SIGALRM, &sa, NULL);
        pinger = fork();
        if (pinger == 0) {
                for (;;) {
                        usleep(50000);
                        kill(getppid(), SIGALRM);
                }
        }
        o = run(&c, &r); /* the 1 s Retry-After wait is cut short */
        kill(pinger, SIGKILL);
        waitpid(pinger, NULL, 0);
        signal(SIGALRM, SIG_IGN);
        CHECK(o.rc == ST_EAGAIN);
        CHECK(has(o.err.msg, "interrupted by a signal"));
        CHECK(alarms > 0);
}

/* A failure reason survives both codecs. */
static void test_codec(void)
{
        struct st_raw_record r = record("Ink [[vlm:r400]] codec");
        struct vlm_config c = config();
        struct outcome o = run(&c, &r);
        struct st_doc back;
        char *buf = NULL;
        size_t len = 0;

        CHECK(o.doc.refine_error != NULL);
        CHECK(st_doc_to_msgpack(&o.doc, &buf, &len) == 0);
        CHECK(buf && st_doc_from_msgpack(buf, len, &arena, &back, NULL) == 0);
        CHECK(back.refine_error && o.doc.refine_error &&
              strcmp(back.refine_error, o.doc.refine_error) == 0);
        free(buf);
        buf = NULL;
        CHECK(st_doc_to_json(&o.doc, &buf, &len) == 0);
        CHECK(buf && has(buf, "\"refine_error\":\"vlm:test-vlm@p1: HTTP 400"));
        CHECK(buf && st_doc_from_json(buf, len, &arena, &back, NULL) == 0);
        CHECK(back.refine_error && strcmp(back.refine_error, o.doc.refine_error) == 0);
        free(buf);
}

/* Configuration rules and endpoint resolution; no server needed. */
static void test_config(void)
{
        static const struct {
                const char *url, *endpoint;
        } urls[] = {
            {"https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"},
            {"http://127.0.0.1:11434/v1/", "http://127.0.0.1:11434/v1/chat/completions"},
            {"http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/chat/completions"},
            {"http://127.0.0.1:8080/", "http://127.0.0.1:8080/v1/chat/completions"},
            {"http://h/v1/chat/completions", "http://h/v1/chat/completions"},
            {"http://h/openai/deployments/x/chat/completions/",
             "http://h/openai/deployments/x/chat/completions"},
        };
        struct vlm_config c;
        struct st_error err = {0};
        struct vlm *v = NULL;
        size_t i;

        vlm_config_defaults(&c);
        c.model = "m";
        for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
                c.url = urls[i].url;
                CHECK(vlm_new(&c, &v, &err) == 0);
                CHECK(v && strcmp(vlm_endpoint(v), urls[i].endpoint) == 0);
                CHECK(v && strcmp(vlm_identity(v), "vlm:m@p1") == 0);
                vlm_destroy(&v);
        }
        c.url = "ftp://h/v1";
        CHECK(vlm_new(&c, &v, &err) == ST_EINVAL && !v && has(err.msg, "vlm url"));
        c.url = "http://h/v1";
        c.model = NULL;
        CHECK(vlm_new(&c, &v, &err) == ST_EINVAL && has(err.msg, "vlm model"));
        c.model = "m";
        c.key = "sk-abc\n";
        CHECK(vlm_new(&c, &v, &err) == ST_EINVAL && has(err.msg, "vlm key") &&
              !strstr(err.msg, "sk-abc"));
        c.key = NULL;
        c.timeout_ms = 0;
        CHECK(vlm_new(&c, &v, &err) == ST_EINVAL);
        vlm_destroy(&v); /* NULL is fine */
}

int main(void)
{
        json_t *stats;

        arena_init(&arena, 256u << 20);
        test_config();
        if (!server_start()) {
                server_stop();
                return 1;
        }
        test_good();
        test_json_mode();
        test_lenient_forms();
        test_malformed();
        test_retried();
        test_counted_failures();
        test_not_retried();
        test_deadline();
        test_token_limit();
        test_lora_override();
        test_cleaning();
        test_interrupted();
        test_codec();

        /* what the server saw: no contract violations, every image paired with a prompt */
        stats = server_json("/__stats");
        CHECK(stats != NULL);
        CHECK(json_integer_value(json_object_get(stats, "violations")) == 0);
        if (json_integer_value(json_object_get(stats, "violations")))
                json_dumpf(json_object_get(stats, "violation_messages"), stderr, 0);
        CHECK(json_integer_value(json_object_get(stats, "images")) > 0);
        CHECK(json_integer_value(json_object_get(stats, "images")) ==
              json_integer_value(json_object_get(stats, "prompt_parts")));
        CHECK(json_integer_value(json_object_get(json_object_get(stats, "models"), MODEL)) > 0);
        json_decref(stats);
        server_stop();
        arena_release(&arena);
        if (failures)
                fprintf(stderr, "%d checks failed\n", failures);
        return failures ? 1 : 0;
}
