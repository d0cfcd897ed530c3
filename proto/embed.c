/*
 * embed.c - "stylus-hash-v1", the built-in offline embedder (see embed.h).
 *
 * Pipeline for one text:
 *   1. bytes: ASCII letters lowercased, digits kept, bytes >= 0x80 (UTF-8)
 *      kept as word characters, everything else separates words;
 *   2. words: stop words and boilerplate dropped (list below), then light
 *      stemming (stem() below) of pure ASCII words;
 *   3. features, each hashed with a type seed into a signed bucket:
 *        feature                         weight
 *        word unigram                    1.0  x tf(word)
 *        word bigram (same phrase)       0.5  x tf(bigram)
 *        3- and 4-grams of "^word$"      0.5 / n-grams in the word, x tf(word)
 *      where tf(x) = 1 + ln(count of x in the text) (sublinear);
 *      n-grams count UTF-8 code points, not bytes;
 *   4. L2-normalize (a text without usable words stays all zero).
 *
 * Hash: FNV-1a 64 over the feature bytes, seeded per feature type, then the
 * murmur3 fmix64 finalizer so every bit is usable.  Bucket = high 32 bits
 * scaled to dim; sign = lowest bit.
 *
 * Determinism: only + - * / and sqrt (all correctly rounded by IEEE 754) touch
 * the floats; ln is computed here rather than by libm, whose results may
 * differ in the last bit between versions and CPUs.
 */
#include "proto/embed.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_NAME "stylus-hash-v1"

/* A bigram does not span these: they end a phrase or a comma-separated tag. */
#define PHRASE_BREAKS ",;.:!?|()[]{}<>\"\n\r\t"

#define WEIGHT_UNIGRAM 1.0
#define WEIGHT_BIGRAM  0.5
#define WEIGHT_NGRAMS  0.5 /* shared by all character n-grams of one word */

#define DESCRIPTION_MAX 2000 /* bytes of description in embed_doc_text() */

enum feature_seed {
        SEED_UNIGRAM = 0x75,
        SEED_BIGRAM = 0x62,
        SEED_NGRAM = 0x63,
};

/*
 * Words that say nothing about what an adapter does.  Sorted (bsearch).
 *  - English function words: they match every text equally.
 *  - Our own field labels (title, description, tags, trigger, words): every
 *    doc text has them.
 *  - Prompt and catalog boilerplate: quality boosters (masterpiece, best,
 *    quality, highly, absurdres, 8k, score ...), adapter kinds (lora,
 *    locon, lycoris, dora, adapter, model, checkpoint, version), training talk (epoch,
 *    steps, weight, strength, trained) and base model names (sd, sdxl, xl,
 *    flux, illustrious, noobai): base models are a filter, not a meaning.
 *    "pony" stays: it is also a subject.  "style", "art", "realistic" stay:
 *    they tell styles from characters.
 * Checked before stemming, so plurals are listed where they occur.  Single
 * letters ("a", "i") are dropped by is_noise().
 */
static const char *const stop_words[] = {
    "4k",          "8k",          "about",       "absurdres",   "adapter",  "adapters",   "after",
    "again",       "all",         "also",        "am",          "an",       "and",        "any",
    "are",         "as",          "at",          "be",          "been",     "before",     "being",
    "best",        "both",        "but",         "by",          "can",      "checkpoint", "could",
    "description", "did",         "diffusion",   "do",          "does",     "dora",       "during",
    "each",        "epoch",       "epochs",      "etc",         "flux",     "flux1",      "for",
    "from",        "had",         "has",         "have",        "having",   "hd",         "he",
    "her",         "here",        "hers",        "high",        "highly",   "highres",    "him",
    "his",         "how",         "if",          "illustrious", "in",       "into",       "is",
    "it",          "its",         "just",        "locon",       "loha",     "lokr",       "lora",
    "loras",       "lycoris",     "masterpiece", "may",         "me",       "might",      "model",
    "models",      "more",        "most",        "must",        "my",       "noobai",     "nor",
    "not",         "of",          "off",         "on",          "only",     "onto",       "or",
    "other",       "our",         "ours",        "out",         "over",     "own",        "per",
    "quality",     "recommended", "resolution",  "same",        "score",    "sd",         "sd1",
    "sd15",        "sd2",         "sd21",        "sd3",         "sdxl",     "she",        "should",
    "so",          "some",        "stable",      "step",        "steps",    "strength",   "such",
    "tag",         "tags",        "than",        "that",        "the",      "their",      "theirs",
    "them",        "then",        "there",       "these",       "they",     "this",       "those",
    "title",       "to",          "too",         "trained",     "training", "trigger",    "uhd",
    "ultra",       "under",       "up",          "us",          "use",      "used",       "using",
    "ver",         "version",     "versions",    "very",        "via",      "was",        "we",
    "weight",      "weights",     "were",        "what",        "when",     "where",      "which",
    "while",       "who",         "whom",        "whose",       "why",      "will",       "with",
    "without",     "word",        "words",       "would",       "xl",       "you",        "your",
    "yours",
};

struct word {
        uint64_t hash; /* of the stemmed word, SEED_UNIGRAM */
        uint32_t off;  /* stemmed bytes at buf + off */
        uint32_t len;
        uint32_t phrase; /* words of one phrase may form bigrams */
};

/* ---- hashing ---- */

static uint64_t fnv_init(unsigned seed)
{
        return (0xcbf29ce484222325ULL ^ seed) * 0x100000001b3ULL;
}

static uint64_t fnv_bytes(uint64_t h, const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char)p[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
        for (int i = 0; i < 8; i++) {
                h ^= (v >> (8 * i)) & 0xff;
                h *= 0x100000001b3ULL;
        }
        return h;
}

static uint64_t fmix64(uint64_t h)
{
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        h ^= h >> 33;
        h *= 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 33;
        return h;
}

/*
 * Where features go: dim hashed buckets (the dense embedding), or a list of
 * the features themselves (the sparse form, embed_sparse()).
 */
struct sink {
        float *dense; /* dim floats, or NULL */
        int dim;
        struct embed_feature *sparse; /* room for cap features when dense is NULL */
        size_t n, cap;
};

static void add_feature(struct sink *s, uint64_t h, double weight)
{
        uint64_t m = fmix64(h);
        size_t bucket = (size_t)(((m >> 32) * (uint64_t)s->dim) >> 32);

        if (s->dense) {
                s->dense[bucket] += (float)((m & 1) ? -weight : weight);
        } else if (s->n < s->cap) {
                s->sparse[s->n].hash = m;
                s->sparse[s->n].weight = (float)weight;
                s->n++;
        }
}

/* ---- arithmetic ---- */

/* Natural log for x >= 1 with + - * / only: x = m * 2^e, ln m by atanh series. */
static double portable_ln(double x)
{
        const double ln2 = 0.69314718055994530942;
        int e;
        double m = frexp(x, &e); /* exact: x = m * 2^e, m in [0.5, 1) */
        double t, t2, term, sum = 0.0;

        if (m < 0.70710678118654752440) {
                m *= 2.0;
                e--;
        }
        t = (m - 1.0) / (m + 1.0); /* |t| <= 0.172 */
        t2 = t * t;
        term = t;
        for (int k = 1; k < 40; k += 2) {
                sum += term / k;
                term *= t2;
        }
        return 2.0 * sum + e * ln2;
}

static double sublinear(size_t count)
{
        return 1.0 + portable_ln((double)count);
}

/* ---- words ---- */

static int is_word_byte(unsigned char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

struct stop_key {
        const char *p; /* not NUL-terminated */
        size_t len;
};

static int compare_stop(const void *key, const void *elem)
{
        const struct stop_key *k = key;
        const char *s = *(const char *const *)elem;
        int c = strncmp(k->p, s, k->len);

        if (c == 0 && s[k->len] != '\0')
                return -1; /* the key is a proper prefix of s */
        return c;
}

static int is_stop_word(const char *p, size_t len)
{
        struct stop_key key = {p, len};

        return bsearch(&key, stop_words, sizeof(stop_words) / sizeof(stop_words[0]),
                       sizeof(stop_words[0]), compare_stop) != NULL;
}

static int all_digits(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (p[i] < '0' || p[i] > '9')
                        return 0;
        return 1;
}

static int all_letters(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (p[i] < 'a' || p[i] > 'z')
                        return 0;
        return 1;
}

/*
 * Noise that a list cannot hold: single letters (fragments of "artist's"),
 * one- or two-digit numbers (prompt weights "1.2", versions "1.5") and
 * version tags "v2", "v15".  Longer numbers ("2077", "1990") carry meaning.
 */
static int is_noise(const char *p, size_t len)
{
        if (len == 1 && p[0] >= 'a' && p[0] <= 'z')
                return 1;
        if (len <= 2 && all_digits(p, len))
                return 1;
        return len >= 2 && p[0] == 'v' && all_digits(p + 1, len - 1);
}

static int ends_with(const char *p, size_t len, const char *suffix)
{
        size_t n = strlen(suffix);

        return len >= n && memcmp(p + len - n, suffix, n) == 0;
}

static int is_vowel(char c)
{
        return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

static int has_vowel(const char *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (is_vowel(p[i]))
                        return 1;
        return 0;
}

/*
 * Light stemming of a lowercase ASCII word, in place; returns the new length.
 * Aims at word families, not dictionary forms: corgis, corgi -> corgi;
 * painting, painted, paint -> paint; dresses, dress -> dress; puppies, puppy
 * -> puppi; movies, movie -> movi; dancing, dance -> danc; running -> run.
 * Every rule keeps at least three letters, so short words stay whole.
 */
static size_t stem(char *p, size_t len)
{
        /* plurals */
        if (len > 4 && ends_with(p, len, "ies"))
                len -= 2; /* puppies -> puppi, like puppy below */
        else if (len > 3 && p[len - 1] == 's' && !ends_with(p, len, "ss") &&
                 !ends_with(p, len, "us"))
                len -= 1; /* not dress, octopus; but corgis, bikinis (iris -> iri) */
        /* -ing, -ed: only when a syllable remains (king, red, speed stay) */
        if (len > 5 && ends_with(p, len, "ing") && has_vowel(p, len - 3))
                len -= 3;
        else if (len > 4 && ends_with(p, len, "ed") && p[len - 3] != 'e' && has_vowel(p, len - 2))
                len -= 2;
        /* running -> runn -> run; but fall, kiss, buzz keep their pairs */
        if (len > 3 && p[len - 1] == p[len - 2] && !is_vowel(p[len - 1]) && p[len - 1] != 'l' &&
            p[len - 1] != 's' && p[len - 1] != 'z')
                len -= 1;
        /* silent e: dance, danced, dancing all end as danc */
        if (len > 3 && p[len - 1] == 'e')
                len -= 1;
        /* city, cities -> citi; day, boy keep y after a vowel */
        if (len > 3 && p[len - 1] == 'y' && !is_vowel(p[len - 2]))
                p[len - 1] = 'i';
        return len;
}

/*
 * Lowercase text into buf and cut it into words (stop words and noise
 * dropped, ASCII words stemmed in buf).  Returns the number of words.
 */
static size_t split_words(const char *text, size_t len, char *buf, struct word *words)
{
        size_t n = 0, i = 0;
        uint32_t phrase = 0;

        for (size_t j = 0; j < len; j++)
                buf[j] = (char)lower((unsigned char)text[j]);
        while (i < len) {
                size_t start, wlen;

                if (!is_word_byte((unsigned char)buf[i])) {
                        if (strchr(PHRASE_BREAKS, buf[i]) && buf[i] != '\0')
                                phrase++;
                        i++;
                        continue;
                }
                start = i;
                while (i < len && is_word_byte((unsigned char)buf[i]))
                        i++;
                wlen = i - start;
                if (is_stop_word(buf + start, wlen) || is_noise(buf + start, wlen))
                        continue;
                if (all_letters(buf + start, wlen))
                        wlen = stem(buf + start, wlen);
                words[n].off = (uint32_t)start;
                words[n].len = (uint32_t)wlen;
                words[n].phrase = phrase;
                words[n].hash = fnv_bytes(fnv_init(SEED_UNIGRAM), buf + start, wlen);
                n++;
        }
        return n;
}

/* ---- features ---- */

/* Offset of the code point after the one at off (stray continuation bytes skipped). */
static size_t next_code_point(const char *p, size_t len, size_t off)
{
        off++;
        while (off < len && ((unsigned char)p[off] & 0xC0) == 0x80)
                off++;
        return off;
}

static size_t count_code_points(const char *p, size_t len)
{
        size_t n = 0;

        for (size_t off = 0; off < len; off = next_code_point(p, len, off))
                n++;
        return n;
}

/*
 * Character n-grams (n code points) of "^word$", each weighted w.
 * Unit 0 is '^', unit m-1 is '$', unit u in between is code point u-1.
 */
static void add_ngrams(struct sink *out, const char *p, size_t len, size_t n, double w)
{
        size_t m = count_code_points(p, len) + 2;
        size_t first = 0; /* byte offset of code point u-1, for u >= 1 */

        for (size_t u = 0; u + n <= m; u++) {
                uint64_t h = fnv_u64(fnv_init(SEED_NGRAM), n);
                size_t units = n, off = first;

                if (u == 0) {
                        h = fnv_bytes(h, "^", 1);
                        units--;
                }
                for (; units > 0; units--) {
                        size_t end;

                        if (off >= len) {
                                h = fnv_bytes(h, "$", 1);
                                break;
                        }
                        end = next_code_point(p, len, off);
                        h = fnv_bytes(h, p + off, end - off);
                        off = end;
                }
                add_feature(out, h, w);
                if (u > 0)
                        first = next_code_point(p, len, first);
        }
}

static size_t ngram_count(size_t code_points, size_t n)
{
        size_t m = code_points + 2;

        return m >= n ? m - n + 1 : 0;
}

static void add_word(struct sink *out, const char *p, size_t len, uint64_t hash, size_t count)
{
        double tf = sublinear(count);
        size_t cps = count_code_points(p, len);
        size_t grams = ngram_count(cps, 3) + ngram_count(cps, 4);

        add_feature(out, hash, WEIGHT_UNIGRAM * tf);
        add_ngrams(out, p, len, 3, WEIGHT_NGRAMS * tf / (double)grams);
        add_ngrams(out, p, len, 4, WEIGHT_NGRAMS * tf / (double)grams);
}

static int compare_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return (x > y) - (x < y);
}

static int compare_word(const void *a, const void *b)
{
        return compare_u64(&((const struct word *)a)->hash, &((const struct word *)b)->hash);
}

/* Unigrams and n-grams, once per distinct word with its count; sorts words. */
static void add_words(struct sink *out, const char *buf, struct word *words, size_t n)
{
        qsort(words, n, sizeof(*words), compare_word);
        for (size_t i = 0; i < n;) {
                size_t j = i + 1;

                while (j < n && words[j].hash == words[i].hash)
                        j++;
                add_word(out, buf + words[i].off, words[i].len, words[i].hash, j - i);
                i = j;
        }
}

/* Bigrams of neighbouring words in one phrase, once per distinct pair; needs text order. */
static void add_bigrams(struct sink *out, const struct word *words, size_t n, uint64_t *pairs)
{
        size_t np = 0;

        for (size_t i = 0; i + 1 < n; i++) {
                if (words[i].phrase != words[i + 1].phrase)
                        continue;
                pairs[np++] =
                    fnv_u64(fnv_u64(fnv_init(SEED_BIGRAM), words[i].hash), words[i + 1].hash);
        }
        qsort(pairs, np, sizeof(*pairs), compare_u64);
        for (size_t i = 0; i < np;) {
                size_t j = i + 1;

                while (j < np && pairs[j] == pairs[i])
                        j++;
                add_feature(out, pairs[i], WEIGHT_BIGRAM * sublinear(j - i));
                i = j;
        }
}

static void normalize(float *out, int dim)
{
        double sum = 0.0;

        for (int i = 0; i < dim; i++)
                sum += (double)out[i] * out[i];
        if (sum == 0.0)
                return;
        sum = sqrt(sum);
        for (int i = 0; i < dim; i++)
                out[i] = (float)(out[i] / sum);
}

int embedder_init(struct embedder *e, int dim)
{
        if (dim < 1 || dim > EMBED_MAX_DIM)
                return ST_EINVAL;
        e->dim = dim;
        snprintf(e->model, sizeof(e->model), "%s/%d", MODEL_NAME, dim);
        return 0;
}

/* Feed every feature of len bytes of text (len <= EMBED_MAX_TEXT) into out. */
static int featurize(const char *text, size_t len, struct sink *out)
{
        char *buf = NULL;
        struct word *words = NULL;
        uint64_t *pairs = NULL;
        size_t n;
        int rc = 0;

        if (len == 0)
                return 0;
        /* Words are separated by at least one byte: at most (len + 1) / 2 of them. */
        buf = malloc(len);
        words = malloc((len + 1) / 2 * sizeof(*words));
        pairs = malloc((len + 1) / 2 * sizeof(*pairs));
        if (!buf || !words || !pairs) {
                rc = ST_ENOMEM;
                goto out_free;
        }
        n = split_words(text, len, buf, words);
        add_bigrams(out, words, n, pairs);
        add_words(out, buf, words, n);
out_free:
        free(pairs);
        free(words);
        free(buf);
        return rc;
}

int embedder_embed(const struct embedder *e, const char *text, size_t len, float *out)
{
        struct sink s = {.dense = out, .dim = e->dim};
        int rc;

        if (e->dim < 1 || e->dim > EMBED_MAX_DIM || (!text && len > 0))
                return ST_EINVAL;
        memset(out, 0, (size_t)e->dim * sizeof(*out));
        if (len > EMBED_MAX_TEXT)
                len = EMBED_MAX_TEXT;
        rc = featurize(text, len, &s);
        if (!rc)
                normalize(out, e->dim);
        return rc;
}

static int compare_feature(const void *a, const void *b)
{
        const struct embed_feature *x = a, *y = b;

        return (x->hash > y->hash) - (x->hash < y->hash);
}

int embed_sparse(const char *text, size_t len, struct arena *a, struct embed_feature **out,
                 size_t *n)
{
        /* Per word: a unigram and at most len 3-grams and len 4-grams; plus one bigram. */
        struct sink s = {.dim = 1};
        double sum = 0.0;
        size_t m = 0;
        int rc;

        *out = NULL;
        *n = 0;
        if (!text && len > 0)
                return ST_EINVAL;
        if (len > EMBED_MAX_SPARSE_TEXT)
                return ST_ETOOBIG;
        s.cap = 4 * len + 8;
        s.sparse = arena_alloc(a, s.cap * sizeof(*s.sparse));
        if (!s.sparse)
                return ST_ENOMEM;
        rc = featurize(text, len, &s);
        if (rc)
                return rc;
        /* Merge equal features, then L2-normalize. */
        qsort(s.sparse, s.n, sizeof(*s.sparse), compare_feature);
        for (size_t i = 0; i < s.n; i++) {
                if (m > 0 && s.sparse[m - 1].hash == s.sparse[i].hash)
                        s.sparse[m - 1].weight += s.sparse[i].weight;
                else
                        s.sparse[m++] = s.sparse[i];
        }
        for (size_t i = 0; i < m; i++)
                sum += (double)s.sparse[i].weight * s.sparse[i].weight;
        for (size_t i = 0; i < m && sum > 0.0; i++)
                s.sparse[i].weight = (float)(s.sparse[i].weight / sqrt(sum));
        *out = s.sparse;
        *n = m;
        return 0;
}

float embed_sparse_dot(const struct embed_feature *x, size_t nx, const struct embed_feature *y,
                       size_t ny)
{
        double dot = 0.0;
        size_t i = 0, j = 0;

        while (i < nx && j < ny) {
                if (x[i].hash < y[j].hash) {
                        i++;
                } else if (x[i].hash > y[j].hash) {
                        j++;
                } else {
                        dot += (double)x[i].weight * y[j].weight;
                        i++;
                        j++;
                }
        }
        return (float)dot;
}

/* ---- doc text ---- */

/* Length of the longest prefix of s of at most max bytes that ends on a code point. */
static size_t utf8_prefix(const char *s, size_t max)
{
        size_t len = strnlen(s, max + 1);

        if (len <= max)
                return len;
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
                len--;
        return len;
}

/* A bounded string builder in an arena: measure pass (buf NULL), then write pass. */
struct text_builder {
        char *buf;
        size_t len;
};

static void put_bytes(struct text_builder *b, const char *s, size_t n)
{
        if (b->buf)
                memcpy(b->buf + b->len, s, n);
        b->len += n;
}

static void put_str(struct text_builder *b, const char *s)
{
        put_bytes(b, s, strlen(s));
}

static void put_field(struct text_builder *b, const char *label, const char *value, size_t n)
{
        if (!value || n == 0)
                return;
        if (b->len > 0)
                put_str(b, " ");
        put_str(b, label);
        put_bytes(b, value, n);
        put_str(b, ";");
}

static void put_list(struct text_builder *b, const char *label, const struct st_strv *v)
{
        int any = 0;

        for (size_t i = 0; i < v->n; i++) {
                if (!v->v[i] || !v->v[i][0])
                        continue;
                if (!any && b->len > 0)
                        put_str(b, " ");
                put_str(b, any ? ", " : label);
                put_str(b, v->v[i]);
                any = 1;
        }
        if (any)
                put_str(b, ";");
}

static void build_doc_text(const struct st_doc *d, struct text_builder *b)
{
        const char *desc = d->description;

        put_field(b, "Title: ", d->name, d->name ? strlen(d->name) : 0);
        put_field(b, "Description: ", desc, desc ? utf8_prefix(desc, DESCRIPTION_MAX) : 0);
        put_list(b, "Tags: ", &d->tags);
        put_list(b, "Trigger words: ", &d->trigger_words);
}

int embed_doc_text(const struct st_doc *d, struct arena *a, char **text)
{
        struct text_builder b = {NULL, 0};

        build_doc_text(d, &b);
        b.buf = arena_alloc(a, b.len + 1);
        if (!b.buf)
                return ST_ENOMEM;
        b.len = 0;
        build_doc_text(d, &b);
        b.buf[b.len] = '\0';
        *text = b.buf;
        return 0;
}
