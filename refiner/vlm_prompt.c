/*
 * vlm_prompt.c - the VLM request (see vlm_prompt.h for its shape).
 */
#include "refiner/vlm_prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "refiner/html_text.h"

#define LIST_MAX 1000 /* bytes of tags, or of trigger words, in the card text */

static const char system_text[] =
    "You describe Stable Diffusion LoRA adapters for a search catalog. "
    "You answer with one JSON object.";

/*
 * The paper's refiner prompt (Table 2) rewritten for a JSON answer: images
 * over card, one task, the common effect, the weight rules, the limits.
 * Keep it under 4095 bytes (the longest literal ISO C promises).
 */
static const char instruction[] =
    "Above are the model card of a LoRA adapter for Stable Diffusion (title, tags, trigger "
    "words, description) and example images it generated, each followed by its prompt.\n"
    "\n"
    "Describe what the adapter does, so that a search engine finds it for the right prompts:\n"
    "1. The images are the ground truth. When the card and the images disagree, trust the "
    "images.\n"
    "2. Decide which one task the adapter serves: concept, style, pose, action, character, "
    "celebrity, clothing, background, building, vehicle or animal. Use other only when none "
    "fits.\n"
    "3. Describe the effect the adapter has in common across the images: subject, style, "
    "colors, composition, and what to use it for. Plain English, at most 150 words. No "
    "training details (steps, epochs, datasets), no links, no user names.\n"
    "4. Find the recommended weight. If the card states one, use it; if it states a range, "
    "use the middle of the range; a <lora:NAME:WEIGHT> tag in an example prompt overrides "
    "the card. If nothing is stated, use 0.8. It is a number from 0.05 to 2.0.\n"
    "\n"
    "Answer with one JSON object and nothing else, with exactly these keys:\n"
    "{\"task\": \"<one task>\", \"description\": \"<description>\", "
    "\"recommended_weight\": <number>}\n"
    "\n"
    "Example answer:\n"
    "{\"task\": \"style\", \"description\": \"Turns any subject into a loose watercolor "
    "painting: soft washes, visible paper grain and pigment bleeding at the edges, in pastel "
    "tones. Works for portraits, animals and landscapes; add the trigger word wtrclr.\", "
    "\"recommended_weight\": 0.6}";

const char *vlm_instruction(void)
{
        return instruction;
}

/* ---- card text ---- */

/* The non-empty strings of v joined by ", ", cut like a description to max bytes, in a. */
static char *join_list(const struct st_strv *v, size_t max, struct arena *a)
{
        size_t total = 0, pos = 0, i, n;
        char *buf;

        for (i = 0; v && v->v && i < v->n; i++)
                total += v->v[i] ? strlen(v->v[i]) + 2 : 0;
        buf = arena_alloc(a, total + 1);
        if (!buf)
                return NULL;
        for (i = 0; v && v->v && i < v->n; i++) {
                if (!v->v[i] || !*v->v[i])
                        continue;
                if (pos > 0) {
                        memcpy(buf + pos, ", ", 2);
                        pos += 2;
                }
                n = strlen(v->v[i]);
                memcpy(buf + pos, v->v[i], n);
                pos += n;
        }
        buf[text_cut(buf, pos, max)] = '\0';
        return buf;
}

int vlm_card_text(const struct st_raw_record *r, const struct st_strv *trigger_words,
                  struct arena *a, char **out, struct st_error *err)
{
        const char *html;
        char *text, *tags, *words;
        int rc;

        if (!r || !a || !out || !r->name)
                return st_fail(err, ST_EINVAL, "vlm_card_text: NULL argument");
        html = r->card_html ? r->card_html : "";
        rc = html_to_text(html, strlen(html), VLM_CARD_TEXT_MAX, a, &text, err);
        if (rc)
                return rc;
        tags = join_list(&r->tags, LIST_MAX, a);
        words = join_list(trigger_words, LIST_MAX, a);
        if (!tags || !words)
                return st_fail(err, ST_ENOMEM, "%s: card text: arena full", r->id);
        *out = arena_printf(a, "Title: %s; Tags: %s; Trigger Words: %s; Description: %s", r->name,
                            *tags ? tags : "(none)", *words ? words : "(none)",
                            *text ? text : "(none)");
        if (!*out)
                return st_fail(err, ST_ENOMEM, "%s: card text: arena full", r->id);
        return 0;
}

/* Offset of the first case-insensitive match of needle in s[0..len), or len. */
static size_t find_ci(const char *s, size_t len, const char *needle)
{
        size_t m = strlen(needle), i;

        for (i = 0; i + m <= len; i++)
                if (strncasecmp(s + i, needle, m) == 0)
                        return i;
        return len;
}

char *vlm_image_prompt_text(const char *prompt, struct arena *a)
{
        size_t len, cut;

        if (!prompt)
                return arena_strdup(a, "Prompt: (not given)");
        len = strlen(prompt);
        cut = find_ci(prompt, len, "negative prompt:");
        len = cut < len ? cut : len;
        cut = find_ci(prompt, len, "\nSteps: ");
        len = cut < len ? cut : len;
        while (len > 0 &&
               (prompt[len - 1] == ' ' || prompt[len - 1] == '\n' || prompt[len - 1] == '\r' ||
                prompt[len - 1] == '\t' || prompt[len - 1] == ','))
                len--;
        while (len > 0 && (*prompt == ' ' || *prompt == '\n' || *prompt == '\t')) {
                prompt++;
                len--;
        }
        if (len == 0)
                return arena_strdup(a, "Prompt: (not given)");
        len = text_cut(prompt, len, VLM_IMAGE_PROMPT_MAX);
        return arena_printf(a, "Prompt: %.*s", (int)len, prompt);
}

/* ---- request body ---- */

/* A growing output buffer with a hard maximum; the first failure sticks. */
struct out {
        char *data;
        size_t len, cap, max;
        int rc;
};

static bool reserve(struct out *o, size_t more)
{
        size_t cap;
        char *p;

        if (o->rc)
                return false;
        if (more > o->max - o->len) {
                o->rc = ST_ETOOBIG;
                return false;
        }
        if (o->len + more + 1 <= o->cap)
                return true;
        cap = o->cap ? o->cap : 4096;
        while (cap < o->len + more + 1)
                cap *= 2;
        p = realloc(o->data, cap);
        if (!p) {
                o->rc = ST_ENOMEM;
                return false;
        }
        o->data = p;
        o->cap = cap;
        return true;
}

static void put_n(struct out *o, const char *s, size_t n)
{
        if (!reserve(o, n))
                return;
        memcpy(o->data + o->len, s, n);
        o->len += n;
        o->data[o->len] = '\0';
}

static void put(struct out *o, const char *s)
{
        put_n(o, s, strlen(s));
}

/* s as a JSON string, quotes included.  s is UTF-8; quotes and control bytes are escaped. */
static void put_string(struct out *o, const char *s)
{
        const char *run = s;
        char esc[8];

        put(o, "\"");
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                put_n(o, run, (size_t)(s - run));
                if (c == '"' || c == '\\')
                        snprintf(esc, sizeof(esc), "\\%c", c);
                else if (c == '\n')
                        snprintf(esc, sizeof(esc), "\\n");
                else
                        snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)c);
                put(o, esc);
                run = s + 1;
        }
        put_n(o, run, (size_t)(s - run));
        put(o, "\"");
}

static void put_base64(struct out *o, const unsigned char *p, size_t n)
{
        static const char digits[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t i, w;
        char *d;

        if (!reserve(o, (n + 2) / 3 * 4))
                return;
        d = o->data + o->len;
        for (i = 0, w = 0; i + 2 < n; i += 3) {
                d[w++] = digits[p[i] >> 2];
                d[w++] = digits[(p[i] & 3) << 4 | p[i + 1] >> 4];
                d[w++] = digits[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
                d[w++] = digits[p[i + 2] & 63];
        }
        if (i < n) {
                d[w++] = digits[p[i] >> 2];
                d[w++] = digits[(p[i] & 3) << 4 | (i + 1 < n ? p[i + 1] >> 4 : 0)];
                d[w++] = i + 1 < n ? digits[(p[i + 1] & 15) << 2] : '=';
                d[w++] = '=';
        }
        o->len += w;
        o->data[o->len] = '\0';
}

static void put_text_part(struct out *o, const char *text)
{
        put(o, "{\"type\":\"text\",\"text\":");
        put_string(o, text);
        put(o, "}");
}

static void put_image_part(struct out *o, const struct vlm_image *im)
{
        put(o, "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:");
        put(o, im->media_type);
        put(o, ";base64,");
        put_base64(o, im->data, im->len);
        put(o, "\"}}");
}

int vlm_request_body(const struct vlm_request *q, char **body, size_t *len, struct st_error *err)
{
        struct out o = {NULL, 0, 0, VLM_REQUEST_MAX, 0};
        char number[64];
        size_t i, n;

        if (!q || !body || !len || !q->model || !*q->model || !q->card_text ||
            (q->n_images && !q->images))
                return st_fail(err, ST_EINVAL, "vlm_request_body: missing or bad argument");
        n = q->n_images < VLM_MAX_IMAGES ? q->n_images : VLM_MAX_IMAGES;
        put(&o, "{\"model\":");
        put_string(&o, q->model);
        snprintf(number, sizeof(number), ",\"temperature\":%.2f,\"max_tokens\":%d", q->temperature,
                 VLM_MAX_TOKENS);
        put(&o, number);
        if (q->json_mode)
                put(&o, ",\"response_format\":{\"type\":\"json_object\"}");
        put(&o, ",\"messages\":[{\"role\":\"system\",\"content\":");
        put_string(&o, system_text);
        put(&o, "},{\"role\":\"user\",\"content\":[");
        put_text_part(&o, q->card_text);
        for (i = 0; i < n; i++) {
                put(&o, ",");
                put_image_part(&o, &q->images[i]);
                put(&o, ",");
                put_text_part(&o, q->images[i].prompt_text ? q->images[i].prompt_text
                                                           : "Prompt: (not given)");
        }
        put(&o, ",");
        put_text_part(&o, instruction);
        put(&o, "]}]}");
        if (o.rc) {
                free(o.data);
                return st_fail(err, o.rc, "VLM request: %s",
                               o.rc == ST_ETOOBIG ? "over VLM_REQUEST_MAX" : "out of memory");
        }
        *body = o.data;
        *len = o.len;
        return 0;
}
