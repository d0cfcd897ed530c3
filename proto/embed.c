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
 *   4. with an IDF table (embed.h), each feature's weight times the IDF of
 *      its table bucket;
 *   5. L2-normalize (a text without usable words stays all zero).
 *
 * Hash: FNV-1a 64 over the feature bytes, seeded per feature type, then the
 * murmur3 fmix64 finalizer so every bit is usable.  Bucket = high 32 bits
 * scaled to dim; sign = lowest bit; IDF table bucket = the bits above the
 * sign, modulo the table's size.
 *
 * Determinism: only + - * / and sqrt (all correctly rounded by IEEE 754) touch
 * the floats; ln is computed here rather than by libm, whose results may
 * differ in the last bit between versions and CPUs.
 */
#include "proto/embed.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/sha256.h"
#include "proto/utf8.h"

#define MODEL_NAME   EMBED_IDF_HASHING
#define IDF_MODEL    MODEL_NAME "+idf-"
#define IDF_NAME_HEX 8 /* hex digits of the table's SHA-256 in the model name */

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

/* A table: see the format in embed.h. */
struct embed_idf {
        uint32_t buckets; /* a power of two */
        uint32_t min_df;
        uint64_t docs;
        char sha[SHA256_HEX_SIZE]; /* of the file */
        float *weight;             /* [buckets] */
};

/* A table in the making: document frequencies. */
struct embed_idf_counter {
        uint32_t buckets;
        uint64_t docs;
        uint32_t *df;   /* [buckets] */
        uint32_t *seen; /* [buckets]: 1 + the doc that last counted the bucket */
};

static size_t idf_bucket(uint64_t m, uint32_t buckets)
{
        return (size_t)((m >> 1) & (buckets - 1));
}

/*
 * Where features go: dim hashed buckets (the dense embedding), a list of the
 * features themselves (the sparse form, embed_sparse()), or a counter of
 * document frequencies (embed_idf_counter_add()).
 */
struct sink {
        float *dense; /* dim floats, or NULL */
        int dim;
        const struct embed_idf *idf;  /* weights for dense, or NULL */
        struct embed_feature *sparse; /* room for cap features when dense is NULL */
        size_t n, cap;
        struct embed_idf_counter *counter; /* instead of both when set */
};

static void count_feature(struct embed_idf_counter *c, uint64_t m)
{
        size_t b = idf_bucket(m, c->buckets);
        uint32_t doc = (uint32_t)c->docs + 1;

        if (c->seen[b] != doc) {
                c->seen[b] = doc;
                c->df[b]++;
        }
}

static void add_feature(struct sink *s, uint64_t h, double weight)
{
        uint64_t m = fmix64(h);
        size_t bucket = (size_t)(((m >> 32) * (uint64_t)s->dim) >> 32);

        if (s->counter) {
                count_feature(s->counter, m);
        } else if (s->dense) {
                if (s->idf)
                        weight *= s->idf->weight[idf_bucket(m, s->idf->buckets)];
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
        e->idf = NULL;
        snprintf(e->model, sizeof(e->model), "%s/%d", MODEL_NAME, dim);
        return 0;
}

void embedder_set_idf(struct embedder *e, const struct embed_idf *t)
{
        e->idf = t;
        if (t)
                snprintf(e->model, sizeof(e->model), "%s%.*s/%d", IDF_MODEL, IDF_NAME_HEX, t->sha,
                         e->dim);
        else
                snprintf(e->model, sizeof(e->model), "%s/%d", MODEL_NAME, e->dim);
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
        struct sink s = {.dense = out, .dim = e->dim, .idf = e->idf};
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
        put_field(b, "Description: ", desc,
                  desc ? utf8_fit(desc, strnlen(desc, DESCRIPTION_MAX + 1), DESCRIPTION_MAX) : 0);
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

/* ---- IDF tables ---- */

static const char idf_magic[8] = {'S', 'T', 'Y', 'L', 'I', 'D', 'F', '\n'};

#define IDF_VERSION     1u
#define IDF_OFF_SHA     64
#define IDF_HASHING_LEN 32
#define IDF_MAX_FILE    (EMBED_IDF_HEADER + 4 * (size_t)EMBED_IDF_MAX_BUCKETS)

static void put_u32(unsigned char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
        for (int i = 0; i < 8; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
        uint32_t v = 0;

        for (int i = 0; i < 4; i++)
                v |= (uint32_t)p[i] << (8 * i);
        return v;
}

static uint64_t get_u64(const unsigned char *p)
{
        uint64_t v = 0;

        for (int i = 0; i < 8; i++)
                v |= (uint64_t)p[i] << (8 * i);
        return v;
}

static int valid_buckets(uint32_t b)
{
        return b >= EMBED_IDF_MIN_BUCKETS && b <= EMBED_IDF_MAX_BUCKETS && (b & (b - 1)) == 0;
}

/* The digest of a whole file of len bytes: every byte but the digest's own. */
static void file_digest(const unsigned char *file, size_t len,
                        unsigned char digest[SHA256_DIGEST_SIZE])
{
        struct sha256 h;

        sha256_init(&h);
        sha256_update(&h, file, IDF_OFF_SHA);
        sha256_update(&h, file + EMBED_IDF_HEADER, len - EMBED_IDF_HEADER);
        sha256_final(&h, digest);
}

static void hex_of(const unsigned char digest[SHA256_DIGEST_SIZE], char hex[SHA256_HEX_SIZE])
{
        static const char digits[] = "0123456789abcdef";

        for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
                hex[2 * i] = digits[digest[i] >> 4];
                hex[2 * i + 1] = digits[digest[i] & 15];
        }
        hex[2 * SHA256_DIGEST_SIZE] = '\0';
}

/* The file's bytes (malloc'd, you own them), digest included. */
static int encode(const struct embed_idf *t, unsigned char **out, size_t *len)
{
        size_t n = EMBED_IDF_HEADER + 4 * (size_t)t->buckets;
        unsigned char *p = calloc(1, n);

        if (!p)
                return ST_ENOMEM;
        memcpy(p, idf_magic, sizeof(idf_magic));
        put_u32(p + 8, IDF_VERSION);
        put_u32(p + 12, t->buckets);
        put_u64(p + 16, t->docs);
        put_u32(p + 24, t->min_df);
        memcpy(p + 32, EMBED_IDF_HASHING, strlen(EMBED_IDF_HASHING));
        for (uint32_t b = 0; b < t->buckets; b++) {
                uint32_t bits;

                memcpy(&bits, &t->weight[b], sizeof(bits));
                put_u32(p + EMBED_IDF_HEADER + 4 * (size_t)b, bits);
        }
        file_digest(p, n, p + IDF_OFF_SHA);
        *out = p;
        *len = n;
        return 0;
}

static struct embed_idf *idf_new(uint32_t buckets)
{
        struct embed_idf *t = calloc(1, sizeof(*t));

        if (t) {
                t->buckets = buckets;
                t->weight = malloc((size_t)buckets * sizeof(*t->weight));
        }
        if (t && !t->weight) {
                free(t);
                t = NULL;
        }
        return t;
}

void embed_idf_destroy(struct embed_idf **t)
{
        if (!*t)
                return;
        free((*t)->weight);
        free(*t);
        *t = NULL;
}

/* The bytes of p[n] up to a NUL as text, others than printable ASCII as '?': out[n + 1]. */
static void printable(const unsigned char *p, size_t n, char *out)
{
        size_t i;

        for (i = 0; i < n && p[i]; i++)
                out[i] = p[i] >= 0x20 && p[i] <= 0x7e ? (char)p[i] : '?';
        out[i] = '\0';
}

/* Header fields, checked in the order a reader of a bad file wants to hear about them. */
static int parse_header(const unsigned char *p, size_t len, uint32_t *buckets, struct st_error *err)
{
        static const char want[IDF_HASHING_LEN] = EMBED_IDF_HASHING;
        uint32_t version;
        size_t need;

        if (len < EMBED_IDF_HEADER)
                return st_fail(err, ST_ETRUNC, "IDF table truncated: %zu bytes, the header is %u",
                               len, EMBED_IDF_HEADER);
        if (memcmp(p, idf_magic, sizeof(idf_magic)))
                return st_fail(err, ST_EPARSE, "not an IDF table (no STYLIDF magic)");
        version = get_u32(p + 8);
        if (version != IDF_VERSION)
                return st_fail(err, ST_EPARSE, "IDF table version %u; this build reads %u", version,
                               IDF_VERSION);
        if (memcmp(p + 32, want, IDF_HASHING_LEN)) {
                char id[IDF_HASHING_LEN + 1];

                printable(p + 32, IDF_HASHING_LEN, id);
                return st_fail(err, ST_EPARSE,
                               "IDF table made for another feature hashing ('%s'), not '%s'", id,
                               EMBED_IDF_HASHING);
        }
        *buckets = get_u32(p + 12);
        if (!valid_buckets(*buckets))
                return st_fail(err, ST_EPARSE,
                               "IDF table has %u buckets; need a power of two in %u..%u", *buckets,
                               EMBED_IDF_MIN_BUCKETS, EMBED_IDF_MAX_BUCKETS);
        need = EMBED_IDF_HEADER + 4 * (size_t)*buckets;
        if (len < need)
                return st_fail(err, ST_ETRUNC, "IDF table truncated: %zu bytes of %zu", len, need);
        if (len > need)
                return st_fail(err, ST_EPARSE, "IDF table has %zu bytes after its %u weights",
                               len - need, *buckets);
        if (get_u64(p + 16) == 0 || get_u32(p + 24) == 0 || get_u32(p + 28) != 0)
                return st_fail(err, ST_EPARSE,
                               "IDF table header: docs and min_df must be >= 1, reserved 0");
        return 0;
}

int embed_idf_parse(const void *bytes, size_t len, struct embed_idf **out, struct st_error *err)
{
        const unsigned char *p = bytes;
        unsigned char digest[SHA256_DIGEST_SIZE];
        struct embed_idf *t;
        uint32_t buckets = 0;
        int rc;

        *out = NULL;
        if (!p && len > 0)
                return st_fail(err, ST_EINVAL, "IDF table: no bytes");
        rc = parse_header(p, len, &buckets, err);
        if (rc)
                return rc;
        file_digest(p, len, digest);
        if (memcmp(digest, p + IDF_OFF_SHA, sizeof(digest)))
                return st_fail(err, ST_EPARSE, "IDF table corrupt: its SHA-256 does not match");
        t = idf_new(buckets);
        if (!t)
                return st_fail(err, ST_ENOMEM, "IDF table: out of memory");
        t->docs = get_u64(p + 16);
        t->min_df = get_u32(p + 24);
        hex_of(digest, t->sha);
        for (uint32_t b = 0; b < buckets; b++) {
                uint32_t bits = get_u32(p + EMBED_IDF_HEADER + 4 * (size_t)b);
                float w;

                memcpy(&w, &bits, sizeof(w));
                /* written this way, NaN fails too */
                if (!(w >= 1.0f && w <= EMBED_IDF_MAX_WEIGHT)) {
                        embed_idf_destroy(&t);
                        return st_fail(err, ST_EPARSE, "IDF table weight %u is %g, not in 1..%g", b,
                                       (double)w, (double)EMBED_IDF_MAX_WEIGHT);
                }
                t->weight[b] = w;
        }
        *out = t;
        return 0;
}

int embed_idf_load(const char *path, struct embed_idf **out, struct st_error *err)
{
        unsigned char *buf = NULL;
        struct stat st;
        size_t len;
        FILE *f;
        int rc;

        *out = NULL;
        f = fopen(path, "rb");
        if (!f)
                return st_fail(err, ST_EIO, "IDF table %s: %s", path, strerror(errno));
        if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
                rc = st_fail(err, ST_EIO, "IDF table %s: not a regular file", path);
                goto out_file;
        }
        if ((uintmax_t)st.st_size > IDF_MAX_FILE) {
                rc = st_fail(err, ST_ETOOBIG, "IDF table %s: %jd bytes, at most %zu", path,
                             (intmax_t)st.st_size, (size_t)IDF_MAX_FILE);
                goto out_file;
        }
        len = (size_t)st.st_size;
        buf = malloc(len ? len : 1);
        if (!buf) {
                rc = st_fail(err, ST_ENOMEM, "IDF table %s: out of memory", path);
                goto out_file;
        }
        if (fread(buf, 1, len, f) != len) {
                rc = st_fail(err, ST_EIO, "IDF table %s: read failed", path);
                goto out_buf;
        }
        rc = embed_idf_parse(buf, len, out, err);
        if (rc && err) {
                struct st_error why = *err;

                st_fail(err, rc, "%s: %s", path, why.msg);
        }
out_buf:
        free(buf);
out_file:
        fclose(f);
        return rc;
}

int embed_idf_save(const struct embed_idf *t, const char *path, struct st_error *err)
{
        char tmp[4096];
        unsigned char *buf;
        size_t len;
        FILE *f;
        int rc = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
                return st_fail(err, ST_EINVAL, "IDF table: path too long");
        if (encode(t, &buf, &len))
                return st_fail(err, ST_ENOMEM, "IDF table: out of memory");
        f = fopen(tmp, "wb");
        if (!f) {
                rc = st_fail(err, ST_EIO, "%s: %s", tmp, strerror(errno));
                goto out_buf;
        }
        if (fwrite(buf, 1, len, f) != len || fflush(f) || fsync(fileno(f)))
                rc = st_fail(err, ST_EIO, "%s: %s", tmp, strerror(errno));
        if (fclose(f) && !rc)
                rc = st_fail(err, ST_EIO, "%s: %s", tmp, strerror(errno));
        if (!rc && rename(tmp, path))
                rc = st_fail(err, ST_EIO, "%s: %s", path, strerror(errno));
        if (rc)
                unlink(tmp);
out_buf:
        free(buf);
        return rc;
}

void embed_idf_get_info(const struct embed_idf *t, struct embed_idf_info *info)
{
        info->buckets = t->buckets;
        info->min_df = t->min_df;
        info->docs = t->docs;
        memcpy(info->sha, t->sha, sizeof(info->sha));
}

float embed_idf_word_weight(const struct embed_idf *t, const char *text)
{
        size_t len = strnlen(text, EMBED_MAX_SPARSE_TEXT);
        char *buf = malloc(len ? len : 1);
        struct word *words = malloc((len / 2 + 1) * sizeof(*words));
        float w = 0.0f;

        if (buf && words && split_words(text, len, buf, words) > 0)
                w = t->weight[idf_bucket(fmix64(words[0].hash), t->buckets)];
        free(words);
        free(buf);
        return w;
}

int embed_idf_counter_new(uint32_t buckets, struct embed_idf_counter **out)
{
        struct embed_idf_counter *c;

        *out = NULL;
        if (!valid_buckets(buckets))
                return ST_EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return ST_ENOMEM;
        c->buckets = buckets;
        c->df = calloc(buckets, sizeof(*c->df));
        c->seen = calloc(buckets, sizeof(*c->seen));
        if (!c->df || !c->seen) {
                embed_idf_counter_destroy(&c);
                return ST_ENOMEM;
        }
        *out = c;
        return 0;
}

void embed_idf_counter_destroy(struct embed_idf_counter **c)
{
        if (!*c)
                return;
        free((*c)->df);
        free((*c)->seen);
        free(*c);
        *c = NULL;
}

int embed_idf_counter_add(struct embed_idf_counter *c, const char *text, size_t len)
{
        struct sink s = {.dim = 1, .counter = c};
        int rc;

        if (!text && len > 0)
                return ST_EINVAL;
        if (c->docs >= UINT32_MAX - 1)
                return ST_ETOOBIG; /* seen[] stamps are doc numbers + 1 */
        rc = featurize(text, len > EMBED_MAX_TEXT ? EMBED_MAX_TEXT : len, &s);
        if (!rc)
                c->docs++;
        return rc;
}

uint64_t embed_idf_counter_docs(const struct embed_idf_counter *c)
{
        return c->docs;
}

int embed_idf_counter_finish(const struct embed_idf_counter *c, uint32_t min_df,
                             struct embed_idf **out)
{
        struct embed_idf *t;
        unsigned char *file;
        size_t len;

        *out = NULL;
        if (c->docs == 0 || min_df == 0)
                return ST_EINVAL;
        t = idf_new(c->buckets);
        if (!t)
                return ST_ENOMEM;
        t->docs = c->docs;
        t->min_df = min_df;
        for (uint32_t b = 0; b < c->buckets; b++) {
                uint64_t df = c->df[b] > min_df ? c->df[b] : min_df;

                if (df > c->docs)
                        df = c->docs;
                t->weight[b] = (float)(portable_ln((double)(c->docs + 1) / (double)(df + 1)) + 1.0);
        }
        if (encode(t, &file, &len)) {
                embed_idf_destroy(&t);
                return ST_ENOMEM;
        }
        hex_of(file + IDF_OFF_SHA, t->sha);
        free(file);
        *out = t;
        return 0;
}
