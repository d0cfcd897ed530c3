/*
 * vlm_answer.c - the chat-completion envelope and the model's answer (see
 * vlm_answer.h for the rules).  jansson does the JSON; this file finds the
 * object in the model's text and checks every value.
 */
#include "refiner/vlm_answer.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "proto/http_util.h"
#include "refiner/html_text.h"
#include "refiner/weight.h"

#define QUOTE_MAX 60 /* bytes of a hostile value quoted in an error */

/*
 * s[0..n) for an error message: printable ASCII kept, anything else '?', at
 * most QUOTE_MAX bytes ("..." when cut).  Model output can hold control
 * characters that would forge log lines; they never reach a message.
 */
static void quote(char *dst, size_t size, const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i, keep = n < QUOTE_MAX ? n : QUOTE_MAX;

        if (keep > size - 4)
                keep = size - 4;
        for (i = 0; i < keep; i++)
                dst[i] = u[i] >= 0x20 && u[i] < 0x7f ? s[i] : '?';
        if (keep < n) /* room was kept for the mark: keep <= size - 4 */
                memcpy(dst + i, "...", 3), i += 3;
        dst[i] = '\0';
}

/*
 * The error.message (or error string) of a parsed error body, control
 * characters made spaces, cut to fit out[size]; false when there is none.
 */
static bool error_text(const json_t *root, char *out, size_t size)
{
        const json_t *e = json_object_get(root, "error");
        const json_t *m = json_is_object(e) ? json_object_get(e, "message") : e;
        size_t n, i;

        out[0] = '\0';
        if (!json_is_string(m))
                return false;
        n = text_cut(json_string_value(m), json_string_length(m), size - 1);
        memcpy(out, json_string_value(m), n);
        out[n] = '\0';
        for (i = 0; i < n; i++)
                if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                        out[i] = ' ';
        return n > 0;
}

/* ---- envelope ---- */

static void read_usage(const json_t *root, struct vlm_usage *usage)
{
        const json_t *u = json_object_get(root, "usage");
        const json_t *p = json_object_get(u, "prompt_tokens");
        const json_t *c = json_object_get(u, "completion_tokens");

        memset(usage, 0, sizeof(*usage));
        if (json_is_integer(p) && json_integer_value(p) >= 0) {
                usage->prompt_tokens = (uint64_t)json_integer_value(p);
                usage->known = true;
        }
        if (json_is_integer(c) && json_integer_value(c) >= 0) {
                usage->completion_tokens = (uint64_t)json_integer_value(c);
                usage->known = true;
        }
}

/* Text parts of a content array joined, in a; NULL with *rc set on error. */
static char *join_parts(const json_t *parts, struct arena *a, int *rc)
{
        size_t total = 0, pos = 0, i;
        const json_t *part, *text;
        char *out;

        json_array_foreach(parts, i, part)
        {
                text = json_object_get(part, "text");
                if (json_is_string(text))
                        total += json_string_length(text);
        }
        if (total > VLM_CONTENT_MAX) {
                *rc = ST_ETOOBIG;
                return NULL;
        }
        out = arena_alloc(a, total + 1);
        if (!out) {
                *rc = ST_ENOMEM;
                return NULL;
        }
        json_array_foreach(parts, i, part)
        {
                text = json_object_get(part, "text");
                if (!json_is_string(text))
                        continue;
                memcpy(out + pos, json_string_value(text), json_string_length(text));
                pos += json_string_length(text);
        }
        out[pos] = '\0';
        return out;
}

/* Why there is no content: the server's error or the model's refusal, quoted. */
static int no_content(const json_t *root, const json_t *message, struct st_error *err)
{
        const json_t *refusal = json_object_get(message, "refusal");
        char why[QUOTE_MAX + 4];
        char text[256];

        if (json_is_string(refusal)) {
                quote(why, sizeof(why), json_string_value(refusal), json_string_length(refusal));
                return st_fail(err, ST_EMISSING, "answer has no content: refusal '%s'", why);
        }
        if (error_text(root, text, sizeof(text))) {
                quote(why, sizeof(why), text, strlen(text));
                return st_fail(err, ST_EMISSING, "answer is an error: '%s'", why);
        }
        return st_fail(err, ST_EMISSING, "answer has no choices[0].message.content");
}

static int read_content(const json_t *root, struct arena *a, char **content, struct st_error *err)
{
        const json_t *choices = json_object_get(root, "choices");
        const json_t *message, *c;
        int rc = 0;

        if (choices && !json_is_array(choices))
                return st_fail(err, ST_ETYPE, "answer: choices is %s, not an array",
                               http_util_json_type_name(choices));
        message = json_object_get(json_array_get(choices, 0), "message");
        c = json_object_get(message, "content");
        if (!c || json_is_null(c))
                return no_content(root, message, err);
        if (json_is_string(c)) {
                if (json_string_length(c) > VLM_CONTENT_MAX)
                        return st_fail(err, ST_ETOOBIG, "answer content of %zu bytes, limit %zu",
                                       json_string_length(c), VLM_CONTENT_MAX);
                *content = arena_strndup(a, json_string_value(c), json_string_length(c));
        } else if (json_is_array(c)) {
                *content = join_parts(c, a, &rc);
        } else {
                return st_fail(err, ST_ETYPE, "answer: content is %s", http_util_json_type_name(c));
        }
        if (rc == ST_ETOOBIG)
                return st_fail(err, rc, "answer content over %zu bytes", VLM_CONTENT_MAX);
        if (!*content)
                return st_fail(err, ST_ENOMEM, "answer content: arena full");
        return 0;
}

int vlm_completion_parse(const char *body, size_t len, struct arena *a, char **content,
                         struct vlm_usage *usage, struct st_error *err)
{
        char why[QUOTE_MAX + 4];
        json_error_t jerr;
        json_t *root;
        int rc;

        if (!body || !a || !content || !usage)
                return st_fail(err, ST_EINVAL, "vlm_completion_parse: NULL argument");
        memset(usage, 0, sizeof(*usage));
        *content = NULL;
        if (len > VLM_ANSWER_MAX_BODY)
                return st_fail(err, ST_ETOOBIG, "answer of %zu bytes, limit %zu", len,
                               VLM_ANSWER_MAX_BODY);
        root = json_loadb(body, len, 0, &jerr);
        if (!root) {
                quote(why, sizeof(why), jerr.text, strlen(jerr.text));
                return st_fail(err, ST_EPARSE, "answer is not JSON: %s at byte %d", why,
                               jerr.position);
        }
        if (!json_is_object(root)) {
                rc = st_fail(err, ST_ETYPE, "answer is %s, not an object",
                             http_util_json_type_name(root));
                goto out;
        }
        read_usage(root, usage);
        rc = read_content(root, a, content, err);
out:
        json_decref(root);
        return rc;
}

/* ---- the model's answer ---- */

/* The first JSON object in text: bare, fenced or in prose; NULL when there is none. */
static json_t *find_object(const char *text, size_t len)
{
        const char *p = text, *end = text + len;
        json_error_t jerr;
        json_t *v;
        int tries;

        for (tries = 0; tries < VLM_ANSWER_CANDIDATES; tries++) {
                p = memchr(p, '{', (size_t)(end - p));
                if (!p)
                        return NULL;
                v = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK, &jerr);
                if (json_is_object(v))
                        return v;
                json_decref(v);
                p++;
        }
        return NULL;
}

/* Length of a character to drop at s (n bytes left), 0 to keep it. */
static size_t control_length(const unsigned char *s, size_t n)
{
        if (s[0] < 0x20)
                return s[0] == '\n' ? 0 : 1;
        if (s[0] == 0x7f)
                return 1;
        if (n >= 2 && s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)
                return 2; /* C1 controls */
        if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
            (s[2] == 0x8e || s[2] == 0x8f || (s[2] >= 0xaa && s[2] <= 0xae)))
                return 3; /* LRM, RLM, bidi embeddings and overrides */
        if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 && s[2] >= 0xa6 && s[2] <= 0xa9)
                return 3; /* bidi isolates */
        return 0;
}

static bool is_space(char c)
{
        return c == ' ' || c == '\n';
}

/* s[0..n) without control characters, trimmed and cut, in a; NULL when the arena is full. */
static char *clean_description(const char *s, size_t n, struct arena *a)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, w = 0, drop, start = 0;
        char *out = arena_alloc(a, n + 1);

        if (!out)
                return NULL;
        while (i < n) {
                drop = control_length(u + i, n - i);
                if (drop == 1 && u[i] == '\t')
                        out[w++] = ' ';
                if (drop) {
                        i += drop;
                        continue;
                }
                out[w++] = s[i++];
        }
        while (w > 0 && is_space(out[w - 1]))
                w--;
        while (start < w && is_space(out[start]))
                start++;
        w = start + text_cut(out + start, w - start, VLM_DESCRIPTION_MAX);
        out[w] = '\0';
        return out + start;
}

/* The value of key in o, or NULL with the error in *rc when it is absent or null. */
static const json_t *get_key(const json_t *o, const char *key, int *rc, struct st_error *err)
{
        const json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v))
                *rc = st_fail(err, ST_EMISSING, "answer has no '%s'", key);
        return v && !json_is_null(v) ? v : NULL;
}

static int wrong_type(const char *key, const json_t *v, const char *expected, struct st_error *err)
{
        return st_fail(err, ST_ETYPE, "answer: '%s' is %s, not %s", key,
                       http_util_json_type_name(v), expected);
}

/* s[0..*n) without leading and trailing ASCII whitespace. */
static const char *trim(const char *s, size_t *n)
{
        while (*n > 0 && (*s == ' ' || *s == '\n' || *s == '\t')) {
                s++;
                (*n)--;
        }
        while (*n > 0 && (s[*n - 1] == ' ' || s[*n - 1] == '\n' || s[*n - 1] == '\t'))
                (*n)--;
        return s;
}

static int read_task(const json_t *o, struct vlm_answer *out, struct st_error *err)
{
        const json_t *v;
        const char *s;
        char name[32], quoted[QUOTE_MAX + 4];
        size_t n;
        int rc = 0;

        v = get_key(o, "task", &rc, err);
        if (!v)
                return rc;
        if (!json_is_string(v))
                return wrong_type("task", v, "a string", err);
        n = json_string_length(v);
        s = trim(json_string_value(v), &n);
        out->task = ST_TASK_COUNT;
        if (n < sizeof(name)) {
                memcpy(name, s, n);
                name[n] = '\0';
                out->task = st_task_from_name(name);
        }
        if (out->task == ST_TASK_COUNT) {
                quote(quoted, sizeof(quoted), s, n);
                return st_fail(err, ST_EINVAL, "answer: task '%s' is not a task category", quoted);
        }
        return 0;
}

static int read_description(const json_t *o, struct arena *a, struct vlm_answer *out,
                            struct st_error *err)
{
        const json_t *v;
        int rc = 0;

        v = get_key(o, "description", &rc, err);
        if (!v)
                return rc;
        if (!json_is_string(v))
                return wrong_type("description", v, "a string", err);
        out->description = clean_description(json_string_value(v), json_string_length(v), a);
        if (!out->description)
                return st_fail(err, ST_ENOMEM, "answer description: arena full");
        if (!*out->description)
                return st_fail(err, ST_EMISSING, "answer: the description is empty");
        return 0;
}

static int read_weight(const json_t *o, struct vlm_answer *out, struct st_error *err)
{
        const json_t *v;
        int rc = 0;

        v = get_key(o, "recommended_weight", &rc, err);
        if (!v)
                return rc;
        if (!json_is_number(v))
                return wrong_type("recommended_weight", v, "a number", err);
        out->weight = json_number_value(v);
        if (!isfinite(out->weight) || out->weight < WEIGHT_MIN || out->weight > WEIGHT_MAX)
                return st_fail(err, ST_EINVAL, "answer: recommended_weight %g is outside %g..%g",
                               out->weight, WEIGHT_MIN, WEIGHT_MAX);
        return 0;
}

int vlm_answer_parse(const char *content, size_t len, struct arena *a, struct vlm_answer *out,
                     struct st_error *err)
{
        char quoted[QUOTE_MAX + 4];
        json_t *o;
        int rc;

        if (!content || !a || !out)
                return st_fail(err, ST_EINVAL, "vlm_answer_parse: NULL argument");
        memset(out, 0, sizeof(*out));
        if (len > VLM_CONTENT_MAX)
                return st_fail(err, ST_ETOOBIG, "answer text of %zu bytes, limit %zu", len,
                               VLM_CONTENT_MAX);
        o = find_object(content, len);
        if (!o) {
                quote(quoted, sizeof(quoted), content, len);
                return st_fail(err, ST_EPARSE, "no JSON object in the answer '%s'", quoted);
        }
        rc = read_task(o, out, err);
        if (!rc)
                rc = read_description(o, a, out, err);
        if (!rc)
                rc = read_weight(o, out, err);
        json_decref(o);
        return rc;
}

bool vlm_error_message(const char *body, size_t len, char *out, size_t size)
{
        json_t *root;
        bool found;

        if (!out || size == 0)
                return false;
        out[0] = '\0';
        if (!body || len > VLM_ANSWER_MAX_BODY)
                return false;
        root = json_loadb(body, len, 0, NULL);
        found = root && error_text(root, out, size);
        json_decref(root);
        return found;
}
