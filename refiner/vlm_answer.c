/*
 * vlm_answer.c - the model's answer (see vlm_answer.h for the rules).
 * jansson does the JSON and proto/chat_completion.c the envelope and
 * finding the object in the model's text; this file checks every value.
 */
#include "refiner/vlm_answer.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "proto/chat_completion.h"
#include "proto/http_util.h"
#include "refiner/html_text.h"
#include "refiner/weight.h"

/* ---- the model's answer ---- */

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
        char name[32], quoted[CHAT_QUOTE_SIZE];
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
                chat_quote(quoted, sizeof(quoted), s, n);
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
        char quoted[CHAT_QUOTE_SIZE];
        json_t *o;
        int rc;

        if (!content || !a || !out)
                return st_fail(err, ST_EINVAL, "vlm_answer_parse: NULL argument");
        memset(out, 0, sizeof(*out));
        if (len > VLM_CONTENT_MAX)
                return st_fail(err, ST_ETOOBIG, "answer text of %zu bytes, limit %zu", len,
                               VLM_CONTENT_MAX);
        o = chat_find_object(content, len);
        if (!o) {
                chat_quote(quoted, sizeof(quoted), content, len);
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
