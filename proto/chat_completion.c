/*
 * chat_completion.c - the chat-completion envelope, the JSON object in a
 * model's text and error bodies (see chat_completion.h).  Moved here from
 * refiner/vlm_answer.c so the refiner and the query node's composer read
 * their endpoints' answers the same way.
 */
#include "proto/chat_completion.h"

#include <string.h>

#include "proto/http_util.h"
#include "proto/utf8.h"

void chat_quote(char *dst, size_t size, const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i, keep = n < CHAT_QUOTE_MAX ? n : CHAT_QUOTE_MAX;

        if (keep > size - 4)
                keep = size - 4;
        for (i = 0; i < keep; i++)
                dst[i] = u[i] >= 0x20 && u[i] < 0x7f ? s[i] : '?';
        if (keep < n) { /* room was kept for the mark: keep <= size - 4 */
                memcpy(dst + i, "...", 3);
                i += 3;
        }
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
        n = utf8_fit(json_string_value(m), json_string_length(m), size - 1);
        memcpy(out, json_string_value(m), n);
        out[n] = '\0';
        for (i = 0; i < n; i++)
                if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                        out[i] = ' ';
        return n > 0;
}

static void read_usage(const json_t *root, struct chat_usage *usage)
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
        if (total > CHAT_CONTENT_MAX) {
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
        char why[CHAT_QUOTE_SIZE];
        char text[256];

        if (json_is_string(refusal)) {
                chat_quote(why, sizeof(why), json_string_value(refusal),
                           json_string_length(refusal));
                return st_fail(err, ST_EMISSING, "answer has no content: refusal '%s'", why);
        }
        if (error_text(root, text, sizeof(text))) {
                chat_quote(why, sizeof(why), text, strlen(text));
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
                if (json_string_length(c) > CHAT_CONTENT_MAX)
                        return st_fail(err, ST_ETOOBIG, "answer content of %zu bytes, limit %zu",
                                       json_string_length(c), CHAT_CONTENT_MAX);
                *content = arena_strndup(a, json_string_value(c), json_string_length(c));
        } else if (json_is_array(c)) {
                *content = join_parts(c, a, &rc);
        } else {
                return st_fail(err, ST_ETYPE, "answer: content is %s", http_util_json_type_name(c));
        }
        if (rc == ST_ETOOBIG)
                return st_fail(err, rc, "answer content over %zu bytes", CHAT_CONTENT_MAX);
        if (!*content)
                return st_fail(err, ST_ENOMEM, "answer content: arena full");
        return 0;
}

int chat_completion_parse(const char *body, size_t len, struct arena *a, char **content,
                          struct chat_usage *usage, struct st_error *err)
{
        char why[CHAT_QUOTE_SIZE];
        json_error_t jerr;
        json_t *root;
        int rc;

        if (!body || !a || !content || !usage)
                return st_fail(err, ST_EINVAL, "chat_completion_parse: NULL argument");
        memset(usage, 0, sizeof(*usage));
        *content = NULL;
        if (len > CHAT_MAX_BODY)
                return st_fail(err, ST_ETOOBIG, "answer of %zu bytes, limit %zu", len,
                               CHAT_MAX_BODY);
        root = json_loadb(body, len, 0, &jerr);
        if (!root) {
                chat_quote(why, sizeof(why), jerr.text, strlen(jerr.text));
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

json_t *chat_find_object(const char *text, size_t len)
{
        const char *p = text, *end = text + len;
        json_error_t jerr;
        json_t *v;
        int tries;

        for (tries = 0; tries < CHAT_OBJECT_TRIES; tries++) {
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

bool chat_error_message(const char *body, size_t len, char *out, size_t size)
{
        json_t *root;
        bool found;

        if (!out || size == 0)
                return false;
        out[0] = '\0';
        if (!body || len > CHAT_MAX_BODY)
                return false;
        root = json_loadb(body, len, 0, NULL);
        found = root && error_text(root, out, size);
        json_decref(root);
        return found;
}
