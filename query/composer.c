/*
 * composer.c - the rule composer.  What it does, step by step (this block is
 * the product's promise; keep it true):
 *
 * (a) Filter.  A candidate is left out, and counted in result.excluded, when
 *     - its base model is not the requested one.  Compatibility is exact
 *       match of the normalized name, case-insensitive:
 *
 *         requested      accepts adapters for
 *         sd15           sd15
 *         sd21           sd21
 *         sdxl           sdxl
 *         pony           pony
 *         illustrious    illustrious
 *         noobai         noobai
 *         flux1          flux1
 *         sd3            sd3
 *         other          other
 *         (none)         the base model of the best retrieved candidate that
 *                        passes the other rules below: adapters of different
 *                        base models cannot share one image
 *
 *       Pony, Illustrious and NoobAI share the SDXL architecture, so their
 *       adapters load on each other, but they were trained far apart and an
 *       adapter made for one usually degrades the others: we stay
 *       conservative and never cross families.  A doc without base model
 *       only matches "any".
 *     - it is NSFW and allow_nsfw is not set;
 *     - it is a character or celebrity adapter (task, or a tag, named
 *       "character" or "celebrity") and neither allow_characters is set nor
 *       the prompt names it: its name, or one of its trigger words (or one
 *       comma-separated part of one), appears in the prompt as whole words,
 *       case-insensitive.  This is the paper's block_characters rule with the
 *       obvious exception: a user who asks for "hatsune miku" wants her;
 *     - it has no file to download;
 *     - its rating (0..5: Civitai's share of thumbs up, times 5) is below
 *       min_rating (default 4.25, i.e. over 15% thumbs down) and it has at
 *       least COMPOSER_MIN_LIKES likes, so that the rating means something:
 *       people who tried it found it wanting (the paper's quality filter).
 *       No rating (the Hub has none) passes.
 *
 * (b) Topics.  The prompt is cut into pieces at , ; . : | ! ? ( ) [ ] { } and
 *     newlines, and before the words of separator_words below ("and", "with",
 *     "in", "wearing", "riding", "on", "at", "of", ..., and verbs of action
 *     such as "fighting" or "leaping").  Leading and trailing
 *     stop words and numbers are trimmed from each piece ("a corgi" ->
 *     "corgi"); a piece with nothing left is dropped, and a piece equal to an
 *     earlier one (case-insensitive) is merged into it.  A topic's text is the
 *     prompt's own words, as the user wrote them (paper: topics come from the
 *     prompt's words).  At most COMPOSER_MAX_TOPICS topics; later pieces are
 *     ignored.
 *
 * (c) Scores.  Each topic is put in the embedder's sparse form (the same
 *     word and character n-gram features, without hashing them into a few
 *     hundred buckets: short texts would collide, "night" would resemble
 *     "horses"); each remaining candidate likewise from a short text
 *     "name; tags; trigger words"
 *     (first DOC_TEXT_TAGS tags and DOC_TEXT_TRIGGERS trigger words, at most
 *     DOC_TEXT_MAX bytes): not the long description, which would blur the
 *     match with everything the card mentions.  For topic t and candidate c:
 *
 *       topic(t, c)  = cosine(embed(t), embed(c))
 *       retrieval(c) = retrieval cosine of the whole prompt, clamped to 0..1
 *       popularity(c)= min(1, log10(1 + downloads) / 6)   (1M downloads = 1)
 *       score(t, c)  = 0.70 topic + 0.20 retrieval + 0.10 popularity
 *
 *     The topic term dominates (the adapter must do what that part of the
 *     prompt asks); retrieval breaks ties using the whole prompt; popularity
 *     is a small prior for adapters many people found worth downloading.
 *
 * (d) Choice.  Each candidate goes to its best topic only (highest topic(t,c);
 *     ties to the earlier topic) and is kept when topic(t,c) >= 0.20
 *     (MIN_TOPIC_COSINE) and score(t,c) >= min_score (default 0.25), and,
 *     for an adapter that draws one kind of thing (task animal or vehicle),
 *     when the topic names that thing: one of its tags (but the task's name)
 *     or trigger words, singular or plural, as whole words (a "Night Owl"
 *     adapter is no answer to the topic "night"; "a corgi" keeps "Corgi
 *     Dog").  Others left out count as weak_match.  Kept
 *     candidates are taken best score first (ties: better retrieval rank
 *     first) and accepted unless: its topic cosine is below RELATIVE_TOPIC
 *     (0.70) of the best topic cosine any candidate reached for that topic (a
 *     "red sports car" adapter is no answer to "red fox" when a fox adapter
 *     is there); the same model (id before '@') or the same
 *     file (sha256) was already accepted; its topic already has
 *     max_per_topic adapters; it is a style adapter and max_style were
 *     already accepted.  A topic that gets no adapter stays in the result
 *     with an empty list (as in the paper).  Adapters are listed grouped by
 *     topic, best first.  The limits (same model or file, max_per_topic,
 *     max_style), (e) and (f) are composer_assemble(), which the LLM
 *     composer (composer_llm.c) uses as well, with (a) composer_eligible().
 *
 * (e) Weights (paper section 3.4 and its code):
 *       weight = recommended_weight x 0.8 / (adapters of that topic active
 *                on that image), rounded to 2 decimals,
 *     where a recommended_weight that is not a number or <= 0 counts as the
 *     paper's default 0.8, and one above 2 as 2.
 *
 * (f) Masks.  Image 0 applies every chosen adapter.  Each further image
 *     switches off exactly one adapter of a topic that has two or more, so
 *     no adapter of one topic blocks the others on every image (paper 3.4,
 *     one mask per topic).  The (topic, adapter) choices are shuffled with a
 *     generator seeded by the FNV-1a hash of the prompt, and image i uses
 *     choice (i - 1) mod count: the same prompt always gives the same masks,
 *     every choice appears before one repeats.  Without such a topic, every
 *     image applies every adapter.  Weights are recomputed per image by (e).
 */
#include "query/composer.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/utf8.h"

#define MIN_TOPIC_COSINE   0.20f
#define RELATIVE_TOPIC     0.70f /* of the best topic cosine in the same topic */
#define BLEND_TOPIC        0.70f
#define BLEND_RETRIEVAL    0.20f
#define BLEND_POPULARITY   0.10f
#define POPULARITY_DECADES 6.0
#define WEIGHT_BASE        0.8
#define WEIGHT_DEFAULT     0.8
#define WEIGHT_MAX         2.0
#define DOC_TEXT_MAX       1024
#define DOC_TEXT_TAGS      16
#define DOC_TEXT_TRIGGERS  8
#define NAMED_TRIGGERS     16 /* trigger words looked for in the prompt */
#define NAMED_MIN_LEN      3  /* shorter names match too much by chance */
#define SUBJECT_WORD_MAX   64 /* longer tags are not looked for with a plural ending */
#define REASON_TOPIC_MAX   60 /* topic bytes quoted in a reason */

static const char *const separator_words[] = {
    "and",
    "with",
    "in",
    "wearing",
    "riding",
    "on",
    "at",
    "of",
    "holding",
    "under",
    "over",
    "near",
    "beside",
    "behind",
    "by",
    "from",
    "inside",
    "into",
    "through",
    "against",
    "while",
    "above",
    "below",
    "between",
    "among",
    "around",
    "across",
    "along",
    "amid",
    "versus",
    "vs",
    "plus",
    "featuring",
    "using",
    /* Verbs of action start a new topic: "a knight fighting a dragon" is two. */
    "fighting",
    "battling",
    "attacking",
    "guarding",
    "chasing",
    "hunting",
    "eating",
    "drinking",
    "reading",
    "playing",
    "standing",
    "sitting",
    "lying",
    "walking",
    "running",
    "leaping",
    "jumping",
    "flying",
    "swimming",
    "dancing",
    "driving",
    "speeding",
    "climbing",
    "crossing",
    "facing",
    "looking",
    "sleeping",
    "casting",
};

static const char *const stop_words[] = {
    "a",      "an",   "the",  "some", "this", "that", "these", "those", "is",    "are",  "was",
    "were",   "be",   "been", "it",   "its",  "his",  "her",   "their", "my",    "your", "our",
    "very",   "to",   "for",  "as",   "has",  "have", "there", "here",  "then",  "so",   "just",
    "really", "also", "or",   "but",  "both", "each", "which", "who",   "whose", "what",
};

/* ---- text helpers ---- */

static bool word_byte(unsigned char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch >= 0x80 || ch == '-' || ch == '\'' || ch == '_';
}

static bool hard_separator(unsigned char ch)
{
        return ch != '\0' && strchr(",;.:|!?()[]{}\n\r", ch) != NULL;
}

static bool word_in(const char *const *list, size_t n, const char *w, size_t len)
{
        for (size_t i = 0; i < n; i++)
                if (strlen(list[i]) == len && strncasecmp(list[i], w, len) == 0)
                        return true;
        return false;
}

static bool all_digits(const char *w, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (w[i] < '0' || w[i] > '9')
                        return false;
        return true;
}

/* Whether the len bytes at s appear in text as whole words, case-insensitive. */
static bool phrase_in(const char *text, const char *s, size_t len)
{
        size_t tlen = strlen(text);

        while (len && (s[0] == ' ' || s[0] == '\t')) {
                s++;
                len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        if (len < NAMED_MIN_LEN || len > tlen)
                return false;
        for (size_t i = 0; i + len <= tlen; i++) {
                if (i > 0 && word_byte((unsigned char)text[i - 1]))
                        continue;
                if (word_byte((unsigned char)text[i + len]))
                        continue;
                if (strncasecmp(text + i, s, len) == 0)
                        return true;
        }
        return false;
}

/* Whether in(text, part) holds for a trigger word of d or a comma-separated part of one. */
static bool trigger_in(const struct st_doc *d, const char *text,
                       bool (*in)(const char *text, const char *s, size_t len))
{
        size_t n = d->trigger_words.n < NAMED_TRIGGERS ? d->trigger_words.n : NAMED_TRIGGERS;

        for (size_t i = 0; i < n; i++) {
                const char *p = d->trigger_words.v[i];

                while (p && *p) {
                        size_t len = strcspn(p, ",");

                        if (in(text, p, len))
                                return true;
                        p += len;
                        if (*p == ',')
                                p++;
                }
        }
        return false;
}

/* Whether the prompt names the doc: its name or a comma-part of a trigger word. */
static bool named_in_prompt(const struct st_doc *d, const char *prompt)
{
        if (d->name && phrase_in(prompt, d->name, strlen(d->name)))
                return true;
        return trigger_in(d, prompt, phrase_in);
}

static bool has_tag(const struct st_doc *d, const char *tag)
{
        for (size_t i = 0; i < d->tags.n; i++)
                if (d->tags.v[i] && strcasecmp(d->tags.v[i], tag) == 0)
                        return true;
        return false;
}

static bool task_is(const struct st_doc *d, const char *task)
{
        return d->task && strcasecmp(d->task, task) == 0;
}

/* Whether the word at w (len bytes), or its plural with -s / -es, is in text as whole words. */
static bool word_or_plural_in(const char *text, const char *w, size_t len)
{
        char plural[SUBJECT_WORD_MAX + 3];

        while (len && (w[len - 1] == ' ' || w[len - 1] == '\t'))
                len--;
        if (phrase_in(text, w, len))
                return true;
        if (len > SUBJECT_WORD_MAX)
                return false;
        memcpy(plural, w, len);
        memcpy(plural + len, "s", 2);
        if (phrase_in(text, plural, len + 1))
                return true;
        memcpy(plural + len, "es", 3);
        return phrase_in(text, plural, len + 2);
}

/*
 * Whether topic asks for the subject an animal or vehicle adapter draws: one
 * of its tags (but its task's own name) or trigger words (or a
 * comma-separated part of one) is in the topic, singular or plural.
 */
static bool names_subject(const char *topic, const struct st_doc *d)
{
        for (size_t i = 0; i < d->tags.n; i++) {
                const char *t = d->tags.v[i];

                if (t && !task_is(d, t) && word_or_plural_in(topic, t, strlen(t)))
                        return true;
        }
        return trigger_in(d, topic, word_or_plural_in);
}

/* An adapter that draws one kind of thing: it answers only a topic that asks for that thing. */
static bool is_subject(const struct st_doc *d)
{
        return task_is(d, "animal") || task_is(d, "vehicle");
}

static bool is_character(const struct st_doc *d)
{
        return task_is(d, "character") || task_is(d, "celebrity") || has_tag(d, "character") ||
               has_tag(d, "celebrity");
}

/* ---- (a) filter ---- */

enum verdict { KEEP, OUT_BASE, OUT_NSFW, OUT_CHARACTER, OUT_NO_FILES, OUT_RATING };

static enum verdict filter(const struct st_doc *d, const char *prompt,
                           const struct composer_options *o, bool *named)
{
        *named = named_in_prompt(d, prompt);
        if (o->base_model && (!d->base_model || strcasecmp(d->base_model, o->base_model) != 0))
                return OUT_BASE;
        if (d->nsfw && !o->allow_nsfw)
                return OUT_NSFW;
        if (is_character(d) && !o->allow_characters && !*named)
                return OUT_CHARACTER;
        if (!composer_primary_file(d))
                return OUT_NO_FILES;
        if (d->stats.rating > 0 && d->stats.rating < o->min_rating &&
            d->stats.likes >= COMPOSER_MIN_LIKES)
                return OUT_RATING;
        return KEEP;
}

/* ---- (b) topics ---- */

struct topic_cut {
        const char *start; /* first content word of the piece, NULL when none yet */
        const char *end;   /* one past its last content word */
};

static int add_topic(struct topic_cut *cut, struct arena *a, struct composer_topic *topics,
                     size_t *n, struct st_error *err)
{
        size_t len;

        if (!cut->start || *n == COMPOSER_MAX_TOPICS)
                goto out;
        len = (size_t)(cut->end - cut->start);
        for (size_t i = 0; i < *n; i++)
                if (strlen(topics[i].text) == len &&
                    strncasecmp(topics[i].text, cut->start, len) == 0)
                        goto out;
        topics[*n].text = arena_strndup(a, cut->start, len);
        if (!topics[*n].text)
                return st_fail(err, ST_ENOMEM, "composer: no memory for topic");
        (*n)++;
out:
        cut->start = NULL;
        return 0;
}

static int split_topics(const char *prompt, struct arena *a, struct composer_topic *topics,
                        size_t *n, struct st_error *err)
{
        struct topic_cut cut = {NULL, NULL};
        const char *p = prompt;
        int rc;

        *n = 0;
        while (*p) {
                const char *w = p;
                size_t len;

                if (!word_byte((unsigned char)*p)) {
                        if (hard_separator((unsigned char)*p) &&
                            (rc = add_topic(&cut, a, topics, n, err)))
                                return rc;
                        p++;
                        continue;
                }
                while (word_byte((unsigned char)*p))
                        p++;
                len = (size_t)(p - w);
                if (word_in(separator_words, sizeof(separator_words) / sizeof(*separator_words), w,
                            len)) {
                        if ((rc = add_topic(&cut, a, topics, n, err)))
                                return rc;
                } else if (!all_digits(w, len) &&
                           !word_in(stop_words, sizeof(stop_words) / sizeof(*stop_words), w, len)) {
                        if (!cut.start)
                                cut.start = w;
                        cut.end = p;
                }
        }
        return add_topic(&cut, a, topics, n, err);
}

/* ---- (c) scores ---- */

static void append(char *buf, size_t *len, const char *s)
{
        size_t room = DOC_TEXT_MAX - 1 - *len;
        size_t n = s ? strlen(s) : 0;

        if (n > room)
                n = room;
        memcpy(buf + *len, s ? s : "", n);
        *len += n;
        buf[*len] = '\0';
}

static void append_list(char *buf, size_t *len, const struct st_strv *v, size_t max)
{
        for (size_t i = 0; i < v->n && i < max; i++) {
                if (i)
                        append(buf, len, ", ");
                append(buf, len, v->v[i]);
        }
}

/* The short text a candidate is matched on: "name; tags; trigger words". */
static size_t doc_text(const struct st_doc *d, char buf[DOC_TEXT_MAX])
{
        size_t len = 0;

        buf[0] = '\0';
        append(buf, &len, d->name);
        append(buf, &len, "; ");
        append_list(buf, &len, &d->tags, DOC_TEXT_TAGS);
        append(buf, &len, "; ");
        append_list(buf, &len, &d->trigger_words, DOC_TEXT_TRIGGERS);
        return len;
}

static float popularity(const struct st_doc *d)
{
        double p = log10(1.0 + (double)d->stats.downloads) / POPULARITY_DECADES;

        return p > 1.0 ? 1.0f : (float)p;
}

static float clamp01(float x)
{
        if (!(x > 0)) /* also NaN */
                return 0;
        return x > 1 ? 1 : x;
}

/* One kept candidate with its best topic. */
struct pick {
        size_t cand;
        size_t topic;
        float score;
        float topic_cos;
        float retrieval;
        float popularity;
        bool named;
};

static int by_score(const void *x, const void *y)
{
        const struct pick *p = x, *q = y;

        if (p->score != q->score)
                return p->score > q->score ? -1 : 1;
        return p->cand < q->cand ? -1 : p->cand > q->cand;
}

/* ---- (d) choice ---- */

/* Length of the model part of an id ("civitai:12@34" -> "civitai:12"). */
static size_t model_key_len(const char *id)
{
        return strcspn(id, "@");
}

static bool same_adapter(const struct st_doc *x, const struct st_doc *y)
{
        const struct st_file *fx = composer_primary_file(x), *fy = composer_primary_file(y);
        size_t kx, ky;

        if (fx && fy && fx->sha256 && fy->sha256 && strcasecmp(fx->sha256, fy->sha256) == 0)
                return true;
        if (!x->id || !y->id)
                return false;
        kx = model_key_len(x->id);
        ky = model_key_len(y->id);
        return kx == ky && strncmp(x->id, y->id, kx) == 0;
}

/* ---- (e) weights ---- */

static double adapter_weight(const struct st_doc *d, size_t active_in_topic)
{
        double w = d->recommended_weight;

        if (!isfinite(w) || w <= 0)
                w = WEIGHT_DEFAULT;
        if (w > WEIGHT_MAX)
                w = WEIGHT_MAX;
        return round(w * WEIGHT_BASE / (double)active_in_topic * 100.0) / 100.0;
}

/* ---- (f) masks ---- */

static uint64_t fnv1a(const char *s)
{
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++) {
                h ^= (unsigned char)*s;
                h *= 1099511628211ull;
        }
        return h;
}

static uint64_t splitmix64(uint64_t *state)
{
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static void image_weights(struct composer_result *r, size_t image)
{
        bool *mask = r->masks + image * r->n_adapters;
        double *weight = r->weights + image * r->n_adapters;

        for (size_t t = 0; t < r->n_topics; t++) {
                const struct composer_topic *topic = &r->topics[t];
                size_t active = 0;

                for (size_t k = 0; k < topic->n_adapters; k++)
                        active += mask[topic->adapters[k]];
                for (size_t k = 0; k < topic->n_adapters; k++) {
                        size_t j = topic->adapters[k];

                        weight[j] = mask[j] ? adapter_weight(r->adapters[j].doc, active) : 0.0;
                }
        }
}

static int build_masks(const char *prompt, struct arena *a, struct composer_result *r,
                       struct st_error *err)
{
        size_t cells = r->n_images * r->n_adapters, n_choices = 0;
        uint64_t state = fnv1a(prompt);
        size_t *choices;

        r->masks = NULL;
        r->weights = NULL;
        if (r->n_adapters == 0)
                return 0;
        r->masks = arena_calloc(a, cells, sizeof(*r->masks));
        r->weights = arena_calloc(a, cells, sizeof(*r->weights));
        choices = arena_calloc(a, r->n_adapters, sizeof(*choices));
        if (!r->masks || !r->weights || !choices)
                return st_fail(err, ST_ENOMEM, "composer: no memory for masks");
        for (size_t j = 0; j < r->n_adapters; j++)
                if (r->topics[r->adapters[j].topic].n_adapters >= 2)
                        choices[n_choices++] = j;
        for (size_t i = n_choices; i > 1; i--) {
                size_t k = (size_t)(splitmix64(&state) % i);
                size_t tmp = choices[i - 1];

                choices[i - 1] = choices[k];
                choices[k] = tmp;
        }
        for (size_t i = 0; i < r->n_images; i++) {
                for (size_t j = 0; j < r->n_adapters; j++)
                        r->masks[i * r->n_adapters + j] = true;
                if (i > 0 && n_choices > 0)
                        r->masks[i * r->n_adapters + choices[(i - 1) % n_choices]] = false;
                image_weights(r, i);
        }
        return 0;
}

/* ---- composer_run ---- */

void composer_options_default(struct composer_options *o)
{
        o->base_model = NULL;
        o->n_images = 1;
        o->allow_nsfw = false;
        o->allow_characters = false;
        o->max_per_topic = 3;
        o->max_style = 2;
        o->min_score = 0.25f;
        o->min_rating = COMPOSER_DEFAULT_MIN_RATING;
}

const struct st_file *composer_primary_file(const struct st_doc *doc)
{
        for (size_t i = 0; i < doc->n_files; i++) {
                const char *name = doc->files[i].name;
                size_t len = name ? strlen(name) : 0;

                if (len >= 12 && strcasecmp(name + len - 12, ".safetensors") == 0)
                        return &doc->files[i];
        }
        return doc->n_files ? &doc->files[0] : NULL;
}

static int check_input(const char *prompt, const struct composer_candidate *c, size_t n,
                       const struct composer_options *o, struct st_error *err)
{
        if (strnlen(prompt, COMPOSER_MAX_PROMPT + 1) > COMPOSER_MAX_PROMPT)
                return st_fail(err, ST_ETOOBIG, "prompt: longer than %d bytes",
                               COMPOSER_MAX_PROMPT);
        if (n > COMPOSER_MAX_CANDIDATES)
                return st_fail(err, ST_ETOOBIG, "composer: %zu candidates, at most %d", n,
                               COMPOSER_MAX_CANDIDATES);
        if (o->n_images < 1 || o->n_images > COMPOSER_MAX_IMAGES)
                return st_fail(err, ST_EINVAL, "n_images: %d not in 1..%d", o->n_images,
                               COMPOSER_MAX_IMAGES);
        if (o->max_per_topic < 0 || o->max_per_topic > COMPOSER_MAX_PER_TOPIC)
                return st_fail(err, ST_EINVAL, "max_per_topic: %d not in 0..%d", o->max_per_topic,
                               COMPOSER_MAX_PER_TOPIC);
        if (o->max_style < 0)
                return st_fail(err, ST_EINVAL, "max_style: %d is negative", o->max_style);
        if (isnan(o->min_score))
                return st_fail(err, ST_EINVAL, "min_score: not a number");
        if (!(o->min_rating >= 0 && o->min_rating <= 5))
                return st_fail(err, ST_EINVAL, "min_rating: not in 0..5");
        for (size_t i = 0; i < n; i++)
                if (!c[i].doc)
                        return st_fail(err, ST_EINVAL, "composer: candidate %zu has no doc", i);
        return 0;
}

/* Embed the topics into tvec[n_topics * dim]. */
/* A short text in the embedder's sparse form (no bucket collisions). */
struct sparse {
        struct embed_feature *f;
        size_t n;
};

static int embed_topics(const struct composer_result *r, struct arena *a, struct sparse *tv,
                        struct st_error *err)
{
        for (size_t t = 0; t < r->n_topics; t++) {
                const char *text = r->topics[t].text;
                int rc = embed_sparse(text, strlen(text), a, &tv[t].f, &tv[t].n);

                if (rc)
                        return st_fail(err, rc, "composer: embedding topic '%.60s': %s", text,
                                       st_strerror(rc));
        }
        return 0;
}

/* Step (c): score the eligible candidates keep[] against the topics; picks[] gets those strong enough, best first. */
static int score_candidates(const char *prompt, const struct composer_candidate *c,
                            const size_t *keep, size_t n_keep, const struct composer_options *o,
                            struct arena *a, struct composer_result *r, struct pick *picks,
                            size_t *n_picks, struct st_error *err)
{
        struct sparse *tv = arena_calloc(a, r->n_topics ? r->n_topics : 1, sizeof(*tv));
        struct sparse cv;
        char text[DOC_TEXT_MAX];
        int rc;

        *n_picks = 0;
        if (!tv)
                return st_fail(err, ST_ENOMEM, "composer: no memory for vectors");
        if ((rc = embed_topics(r, a, tv, err)))
                return rc;
        for (size_t k = 0; k < n_keep; k++) {
                size_t i = keep[k];
                const struct st_doc *d = c[i].doc;
                struct pick p = {.cand = i, .topic = 0, .topic_cos = -2.0f};

                if (r->n_topics == 0) {
                        r->excluded.weak_match++;
                        continue;
                }
                if ((rc = embed_sparse(text, doc_text(d, text), a, &cv.f, &cv.n)))
                        return st_fail(err, rc, "composer: embedding adapter %s: %s",
                                       d->id ? d->id : "?", st_strerror(rc));
                for (size_t t = 0; t < r->n_topics; t++) {
                        float cos = embed_sparse_dot(tv[t].f, tv[t].n, cv.f, cv.n);

                        if (cos > p.topic_cos) {
                                p.topic_cos = cos;
                                p.topic = t;
                        }
                }
                p.named = named_in_prompt(d, prompt);
                p.retrieval = clamp01(c[i].score);
                p.popularity = popularity(d);
                p.score = BLEND_TOPIC * p.topic_cos + BLEND_RETRIEVAL * p.retrieval +
                          BLEND_POPULARITY * p.popularity;
                if (p.topic_cos < MIN_TOPIC_COSINE || p.score < o->min_score ||
                    (is_subject(d) && !names_subject(r->topics[p.topic].text, d))) {
                        r->excluded.weak_match++;
                        continue;
                }
                picks[(*n_picks)++] = p;
        }
        qsort(picks, *n_picks, sizeof(*picks), by_score);
        return 0;
}

/* Bytes of s to quote so that at most max are shown and no UTF-8 character is cut. */
static int quote_len(const char *s, size_t max)
{
        return (int)utf8_fit(s, strnlen(s, max + 1), max);
}

static const char *reason(struct arena *a, const struct composer_topic *t, const struct pick *p)
{
        return arena_printf(a,
                            "matches topic '%.*s' (%.2f: topic %.2f, retrieval %.2f, "
                            "popularity %.2f)%s",
                            quote_len(t->text, REASON_TOPIC_MAX), t->text, p->score, p->topic_cos,
                            p->retrieval, p->popularity, p->named ? "; named in the prompt" : "");
}

/*
 * Step (d) before the limits: picks whose topic cosine is near the best of
 * their topic become choices, best score first, each with its reason.
 */
static int relative_choices(const struct composer_result *r, struct arena *a,
                            const struct pick *picks, size_t n_picks,
                            struct composer_choice *choices, size_t *n_choices, size_t *weak,
                            struct st_error *err)
{
        float best[COMPOSER_MAX_TOPICS] = {0};

        *n_choices = 0;
        for (size_t i = 0; i < n_picks; i++)
                if (picks[i].topic_cos > best[picks[i].topic])
                        best[picks[i].topic] = picks[i].topic_cos;
        for (size_t i = 0; i < n_picks; i++) {
                struct composer_choice *ch = &choices[*n_choices];

                if (picks[i].topic_cos < RELATIVE_TOPIC * best[picks[i].topic]) {
                        (*weak)++;
                        continue;
                }
                ch->cand = picks[i].cand;
                ch->topic = picks[i].topic;
                ch->score = picks[i].score;
                ch->reason = reason(a, &r->topics[picks[i].topic], &picks[i]);
                if (!ch->reason)
                        return st_fail(err, ST_ENOMEM, "composer: no memory for reasons");
                (*n_choices)++;
        }
        return 0;
}

/* Whether choice ch passes the limits of step (d) given those taken[0..n); counts it when not. */
static bool within_limits(const struct composer_candidate *c, const struct composer_options *o,
                          const struct composer_choice *ch, const struct composer_choice *taken,
                          size_t n, const size_t *per_topic, int n_style,
                          struct composer_excluded *x)
{
        const struct st_doc *d = c[ch->cand].doc;

        for (size_t k = 0; k < n; k++) {
                if (same_adapter(c[taken[k].cand].doc, d)) {
                        x->duplicate++;
                        return false;
                }
        }
        if (per_topic[ch->topic] >= (size_t)o->max_per_topic) {
                x->topic_full++;
                return false;
        }
        if (task_is(d, "style") && n_style >= o->max_style) {
                x->style_limit++;
                return false;
        }
        return true;
}

/* Lay the taken choices out grouped by topic, in their order within a topic. */
static int fill_result(const struct composer_candidate *c, struct arena *a,
                       struct composer_result *r, const size_t *per_topic,
                       const struct composer_choice *taken, size_t n_taken, struct st_error *err)
{
        size_t j = 0;

        r->adapters = arena_calloc(a, n_taken ? n_taken : 1, sizeof(*r->adapters));
        if (!r->adapters)
                return st_fail(err, ST_ENOMEM, "composer: no memory for adapters");
        for (size_t t = 0; t < r->n_topics; t++) {
                struct composer_topic *topic = &r->topics[t];

                topic->n_adapters = 0;
                topic->adapters = arena_calloc(a, per_topic[t] ? per_topic[t] : 1, sizeof(size_t));
                if (!topic->adapters)
                        return st_fail(err, ST_ENOMEM, "composer: no memory for topics");
                for (size_t k = 0; k < n_taken; k++) {
                        struct composer_adapter *ad = &r->adapters[j];

                        if (taken[k].topic != t)
                                continue;
                        ad->doc = c[taken[k].cand].doc;
                        ad->topic = t;
                        ad->score = taken[k].score;
                        ad->reason = taken[k].reason;
                        topic->adapters[topic->n_adapters++] = j++;
                }
        }
        r->n_adapters = j;
        return 0;
}

int composer_assemble(const char *prompt, const struct composer_candidate *c,
                      const struct composer_choice *choices, size_t n_choices,
                      const struct composer_options *opt, struct arena *a,
                      struct composer_result *r, struct st_error *err)
{
        struct composer_choice *taken = arena_calloc(a, n_choices ? n_choices : 1, sizeof(*taken));
        size_t *per_topic = arena_calloc(a, r->n_topics ? r->n_topics : 1, sizeof(*per_topic));
        size_t n_taken = 0;
        int n_style = 0, rc;

        assert(prompt && opt && a && r && (c || n_choices == 0));
        if (!taken || !per_topic)
                return st_fail(err, ST_ENOMEM, "composer: no memory");
        for (size_t i = 0; i < n_choices; i++) {
                const struct composer_choice *ch = &choices[i];

                if (ch->topic >= r->n_topics)
                        return st_fail(err, ST_EINVAL, "composer: choice %zu of topic %zu, of %zu",
                                       i, ch->topic, r->n_topics);
                if (!within_limits(c, opt, ch, taken, n_taken, per_topic, n_style, &r->excluded))
                        continue;
                per_topic[ch->topic]++;
                n_style += task_is(c[ch->cand].doc, "style");
                taken[n_taken++] = *ch;
        }
        if ((rc = fill_result(c, a, r, per_topic, taken, n_taken, err)))
                return rc;
        if ((rc = build_masks(prompt, a, r, err)))
                return rc;
        for (size_t j = 0; j < r->n_adapters; j++)
                r->adapters[j].weight = r->weights[j];
        return 0;
}

/*
 * Without a requested base model: the base model of the best retrieved
 * candidate that passes the other filters (NULL when none does).
 */
static const char *best_base(const char *prompt, const struct composer_candidate *c, size_t n,
                             const struct composer_options *o)
{
        for (size_t i = 0; i < n; i++) {
                bool named;

                if (c[i].doc->base_model && filter(c[i].doc, prompt, o, &named) == KEEP)
                        return c[i].doc->base_model;
        }
        return NULL;
}

int composer_eligible(const char *prompt, const struct composer_candidate *c, size_t n,
                      const struct composer_options *opt, struct arena *a, size_t **keep,
                      size_t *n_keep, struct composer_result *r, struct st_error *err)
{
        struct composer_options o;
        int rc;

        assert(prompt && opt && a && keep && n_keep && r && (c || n == 0));
        if ((rc = check_input(prompt, c, n, opt, err)))
                return rc;
        o = *opt;
        if (!o.base_model) /* adapters of different base models cannot share one image */
                o.base_model = best_base(prompt, c, n, opt);
        r->base_model = o.base_model;
        r->n_images = (size_t)opt->n_images;
        *n_keep = 0;
        *keep = arena_calloc(a, n ? n : 1, sizeof(**keep));
        if (!*keep)
                return st_fail(err, ST_ENOMEM, "composer: no memory");
        for (size_t i = 0; i < n; i++) {
                bool named;

                switch (filter(c[i].doc, prompt, &o, &named)) {
                case OUT_BASE:
                        r->excluded.base_model++;
                        break;
                case OUT_NSFW:
                        r->excluded.nsfw++;
                        break;
                case OUT_CHARACTER:
                        r->excluded.character++;
                        break;
                case OUT_NO_FILES:
                        r->excluded.no_files++;
                        break;
                case OUT_RATING:
                        r->excluded.low_rating++;
                        break;
                case KEEP:
                        (*keep)[(*n_keep)++] = i;
                        break;
                }
        }
        return 0;
}

int composer_run(const char *prompt, const struct composer_candidate *c, size_t n,
                 const struct composer_options *opt, const struct embedder *e, struct arena *a,
                 struct composer_result *out, struct st_error *err)
{
        struct composer_result r = {.composer = "rules"};
        struct composer_choice *choices;
        struct pick *picks;
        size_t n_picks, n_choices, n_keep, *keep;
        int rc;

        assert(prompt && opt && e && a && out && (c || n == 0));
        (void)e; /* topics are matched on the built-in sparse features (step c) */
        if ((rc = composer_eligible(prompt, c, n, opt, a, &keep, &n_keep, &r, err)))
                return rc;
        r.topics = arena_calloc(a, COMPOSER_MAX_TOPICS, sizeof(*r.topics));
        picks = arena_calloc(a, n_keep ? n_keep : 1, sizeof(*picks));
        choices = arena_calloc(a, n_keep ? n_keep : 1, sizeof(*choices));
        if (!r.topics || !picks || !choices)
                return st_fail(err, ST_ENOMEM, "composer: no memory");
        if ((rc = split_topics(prompt, a, r.topics, &r.n_topics, err)))
                return rc;
        if ((rc = score_candidates(prompt, c, keep, n_keep, opt, a, &r, picks, &n_picks, err)))
                return rc;
        if ((rc = relative_choices(&r, a, picks, n_picks, choices, &n_choices,
                                   &r.excluded.weak_match, err)))
                return rc;
        if ((rc = composer_assemble(prompt, c, choices, n_choices, opt, a, &r, err)))
                return rc;
        *out = r;
        return 0;
}
