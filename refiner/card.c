/*
 * card.c - the offline card refiner (see card.h for the rules).
 */
#include "refiner/card.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "refiner/html_text.h"
#include "refiner/weight.h"

/*
 * Words that name a task category.  Tags must equal a term (any case);
 * the title and description must contain it as whole words.  Tags are tried
 * in table order, so the order is the priority:
 *   - a slider is a concept tool whatever it acts on;
 *   - celebrity cards are often also tagged "character", so real people first;
 *   - "character" before "style": character LoRAs carry style tags far more
 *     often than the reverse (the paper counts 42K character tags to 9K style).
 * In text the earliest match wins and the table order only breaks ties.
 */
static const struct {
        const char *term;
        enum st_task task;
} task_terms[] = {
    {"slider", ST_TASK_CONCEPT},
    {"celebrity", ST_TASK_CELEBRITY},
    {"real person", ST_TASK_CELEBRITY},
    {"actor", ST_TASK_CELEBRITY},
    {"actress", ST_TASK_CELEBRITY},
    {"character", ST_TASK_CHARACTER},
    {"anime character", ST_TASK_CHARACTER},
    {"game character", ST_TASK_CHARACTER},
    {"original character", ST_TASK_CHARACTER},
    {"style", ST_TASK_STYLE},
    {"art style", ST_TASK_STYLE},
    {"artstyle", ST_TASK_STYLE},
    {"clothing", ST_TASK_CLOTHING},
    {"outfit", ST_TASK_CLOTHING},
    {"costume", ST_TASK_CLOTHING},
    {"dress", ST_TASK_CLOTHING},
    {"armor", ST_TASK_CLOTHING},
    {"background", ST_TASK_BACKGROUND},
    {"scenery", ST_TASK_BACKGROUND},
    {"landscape", ST_TASK_BACKGROUND},
    {"environment", ST_TASK_BACKGROUND},
    {"building", ST_TASK_BUILDING},
    {"architecture", ST_TASK_BUILDING},
    {"vehicle", ST_TASK_VEHICLE},
    {"car", ST_TASK_VEHICLE},
    {"airship", ST_TASK_VEHICLE},
    {"ship", ST_TASK_VEHICLE},
    {"aircraft", ST_TASK_VEHICLE},
    {"animal", ST_TASK_ANIMAL},
    {"dog", ST_TASK_ANIMAL},
    {"cat", ST_TASK_ANIMAL},
    {"creature", ST_TASK_ANIMAL},
    {"pet", ST_TASK_ANIMAL},
    {"pose", ST_TASK_POSE},
    {"poses", ST_TASK_POSE},
    {"action", ST_TASK_ACTION},
    {"concept", ST_TASK_CONCEPT},
    {"tool", ST_TASK_CONCEPT},
    {"detail", ST_TASK_CONCEPT},
    {"lighting", ST_TASK_CONCEPT},
};

#define N_TASK_TERMS (sizeof(task_terms) / sizeof(task_terms[0]))

static bool is_trim_space(char c)
{
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool ends_with_ci(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* The record's identity fields, shared with r (see "Ownership" in card.h). */
static void copy_identity(const struct st_raw_record *r, struct st_doc *d)
{
        d->id = r->id;
        d->source = r->source;
        d->name = r->name;
        d->version_name = r->version_name;
        d->type = r->type;
        d->base_model = r->base_model;
        d->tags = r->tags;
        d->nsfw = r->nsfw;
        d->stats = r->stats;
        d->files = r->files;
        d->n_files = r->n_files;
        d->images = r->images;
        d->n_images = r->n_images;
        d->card_url = r->card_url;
        d->created_at = r->created_at;
        d->updated_at = r->updated_at;
        d->crawled_at = r->crawled_at;
        d->content_hash = r->content_hash;
}

/* Append s to buf[0..*pos), never past max bytes. */
static void append(char *buf, size_t max, size_t *pos, const char *s)
{
        size_t n = strlen(s);

        if (n > max - *pos)
                n = max - *pos;
        memcpy(buf + *pos, s, n);
        *pos += n;
}

/* "<name>: <tag>, <tag>, ..." cut like a description, for cards without text. */
static char *fallback_description(const struct st_raw_record *r, struct arena *a)
{
        char buf[2 * CARD_DESCRIPTION_MAX];
        size_t pos = 0, i, sep = 0;

        append(buf, sizeof(buf), &pos, r->name);
        for (i = 0; i < r->tags.n && r->tags.v && pos < sizeof(buf); i++) {
                if (!r->tags.v[i] || !r->tags.v[i][0])
                        continue;
                if (pos > 0)
                        append(buf, sizeof(buf), &pos, sep++ ? ", " : ": ");
                append(buf, sizeof(buf), &pos, r->tags.v[i]);
        }
        return arena_strndup(a, buf, text_cut(buf, pos, CARD_DESCRIPTION_MAX));
}

/* Trim ASCII whitespace around s[0..*n). */
static const char *trim(const char *s, size_t *n)
{
        while (*n > 0 && is_trim_space(s[0])) {
                s++;
                (*n)--;
        }
        while (*n > 0 && is_trim_space(s[*n - 1]))
                (*n)--;
        return s;
}

static bool has_word(const struct st_strv *words, const char *s, size_t n)
{
        size_t i;

        for (i = 0; i < words->n; i++)
                if (strlen(words->v[i]) == n && strncasecmp(words->v[i], s, n) == 0)
                        return true;
        return false;
}

/* Upper bound of the comma-separated pieces in words, at most ST_LIMIT_ARRAY. */
static size_t count_pieces(const struct st_strv *words)
{
        size_t total = 0, i;
        const char *p;

        for (i = 0; i < words->n && words->v && total < ST_LIMIT_ARRAY; i++) {
                if (!words->v[i])
                        continue;
                total++;
                for (p = strchr(words->v[i], ','); p; p = strchr(p + 1, ','))
                        total++;
        }
        return total < ST_LIMIT_ARRAY ? total : ST_LIMIT_ARRAY;
}

/* trained_words as trigger words: split at commas, trimmed, no empties, no repeats. */
static int trigger_words(const struct st_strv *trained, struct arena *a, struct st_strv *out)
{
        size_t cap = count_pieces(trained), i, n;
        const char *p, *comma, *s;

        out->v = NULL;
        out->n = 0;
        if (cap == 0)
                return 0;
        out->v = arena_calloc(a, cap, sizeof(*out->v));
        if (!out->v)
                return ST_ENOMEM;
        for (i = 0; i < trained->n && out->n < cap; i++) {
                for (p = trained->v[i]; p && out->n < cap; p = comma ? comma + 1 : NULL) {
                        comma = strchr(p, ',');
                        n = comma ? (size_t)(comma - p) : strlen(p);
                        s = trim(p, &n);
                        if (n == 0 || has_word(out, s, n))
                                continue;
                        out->v[out->n] = arena_strndup(a, s, n);
                        if (!out->v[out->n])
                                return ST_ENOMEM;
                        out->n++;
                }
        }
        return 0;
}

/* The file a prompt's <lora:NAME:W> most likely names: first .safetensors, else first file. */
static const char *primary_file_name(const struct st_raw_record *r)
{
        size_t i;

        if (!r->files || r->n_files == 0)
                return NULL;
        for (i = 0; i < r->n_files; i++)
                if (r->files[i].name && ends_with_ci(r->files[i].name, ".safetensors"))
                        return r->files[i].name;
        return r->files[0].name;
}

/* Clamp the weight a prompt gave; 0, for the return of card_prompt_weight(). */
static int clamped(double *w)
{
        *w = weight_clamp(*w);
        return 0;
}

int card_prompt_weight(const struct st_raw_record *r, double *w)
{
        const char *hint = primary_file_name(r);
        size_t i;

        for (i = 0; hint && r->images && i < r->n_images; i++)
                if (weight_from_prompt_match(r->images[i].prompt, hint, w) == 0)
                        return clamped(w);
        for (i = 0; r->images && i < r->n_images; i++)
                if (weight_from_prompt(r->images[i].prompt, NULL, w) == 0)
                        return clamped(w);
        return ST_ENOTFOUND;
}

/* Weight rules of card.h; text is the card's full plain text (NUL-terminated). */
static double card_weight(const struct st_raw_record *r, const char *text, size_t len)
{
        const char *hint = primary_file_name(r);
        double w;

        if (card_prompt_weight(r, &w) == 0)
                return w;
        if (weight_from_prompt(text, hint, &w) == 0)
                return weight_clamp(w);
        weight_from_text(text, len, &w);
        return weight_clamp(w);
}

/* Earliest task term in text; table order breaks ties. */
static bool task_in_text(const char *text, enum st_task *task)
{
        size_t best = SIZE_MAX, at, len, k;

        if (!text)
                return false;
        len = strlen(text);
        for (k = 0; k < N_TASK_TERMS; k++) {
                if (text_find_phrase(text, len, task_terms[k].term, &at) && at < best) {
                        best = at;
                        *task = task_terms[k].task;
                }
        }
        return best != SIZE_MAX;
}

static enum st_task card_task(const struct st_raw_record *r, const char *description)
{
        enum st_task task;
        size_t k, i;

        for (k = 0; k < N_TASK_TERMS && r->tags.v; k++)
                for (i = 0; i < r->tags.n; i++)
                        if (r->tags.v[i] && strcasecmp(r->tags.v[i], task_terms[k].term) == 0)
                                return task_terms[k].task;
        if (task_in_text(r->name, &task) || task_in_text(description, &task))
                return task;
        return ST_TASK_OTHER;
}

int card_refine(const struct st_raw_record *r, struct arena *a, struct st_doc *out,
                struct st_error *err)
{
        const char *html;
        char *text;
        size_t len, keep;
        int rc;

        if (!r || !a || !out)
                return st_fail(err, ST_EINVAL, "card_refine: NULL argument");
        if (!r->id || !r->source || !r->name)
                return st_fail(err, ST_EMISSING, "raw record %s: no %s", r->id ? r->id : "(no id)",
                               !r->id       ? "id"
                               : !r->source ? "source"
                                            : "name");
        memset(out, 0, sizeof(*out));
        copy_identity(r, out);

        html = r->card_html ? r->card_html : "";
        rc = html_to_text(html, strlen(html), ST_LIMIT_TEXT, a, &text, err);
        if (rc)
                return rc;
        len = strlen(text);
        keep = text_cut(text, len, CARD_DESCRIPTION_MAX);
        out->description = keep ? arena_strndup(a, text, keep) : fallback_description(r, a);

        rc = trigger_words(&r->trained_words, a, &out->trigger_words);
        if (rc)
                return st_fail(err, rc, "%s: trigger words: arena limit", r->id);
        out->recommended_weight = card_weight(r, text, len);
        out->task = arena_strdup(a, st_task_name(card_task(r, out->description)));
        out->refined_by = arena_strdup(a, "card");
        out->embedding_model = NULL;
        if (!out->description || !out->task || !out->refined_by)
                return st_fail(err, ST_ENOMEM, "%s: card doc: arena limit", r->id);
        return 0;
}
