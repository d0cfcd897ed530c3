/*
 * test_embed.c - the built-in embedder "stylus-hash-v1": deterministic,
 * normalized, zero for stop words only, ranks texts by shared meaning, folds
 * plurals and -ing/-ed, works at any dim and for long input; and the doc text
 * it is fed from.
 */
#include "proto/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_embed.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static float dot(const float *a, const float *b, int dim)
{
        double s = 0.0;

        for (int i = 0; i < dim; i++)
                s += (double)a[i] * b[i];
        return (float)s;
}

static int embed(const struct embedder *e, const char *text, float *out)
{
        return embedder_embed(e, text, strlen(text), out);
}

/* Cosine of two texts (vectors are unit length or zero). */
static float similarity(const struct embedder *e, const char *x, const char *y)
{
        float *a = calloc((size_t)e->dim, sizeof(*a));
        float *b = calloc((size_t)e->dim, sizeof(*b));
        float s = -2.0f;

        if (a && b && embed(e, x, a) == 0 && embed(e, y, b) == 0)
                s = dot(a, b, e->dim);
        free(a);
        free(b);
        return s;
}

static void test_init(void)
{
        struct embedder e;

        CHECK(embedder_init(&e, 0) == ST_EINVAL);
        CHECK(embedder_init(&e, EMBED_MAX_DIM + 1) == ST_EINVAL);
        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(e.dim == EMBED_DEFAULT_DIM);
        CHECK(strcmp(e.model, "stylus-hash-v1/384") == 0);
        CHECK(embedder_init(&e, 1) == 0 && strcmp(e.model, "stylus-hash-v1/1") == 0);
}

static void test_deterministic_and_normalized(void)
{
        const char *text = "Watercolor Dream - painting style; Tags: style, watercolor";
        struct embedder e;
        float a[EMBED_DEFAULT_DIM], b[EMBED_DEFAULT_DIM];

        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(embed(&e, text, a) == 0);
        CHECK(embed(&e, text, b) == 0);
        CHECK(memcmp(a, b, sizeof(a)) == 0);
        CHECK(fabsf(dot(a, a, e.dim) - 1.0f) < 1e-5f);
        /* Case and punctuation do not matter. */
        CHECK(embed(&e, "WATERCOLOR dream -- Painting STYLE. style, watercolor", b) == 0);
        CHECK(fabsf(dot(a, b, e.dim) - 1.0f) < 1e-5f);
}

static void test_zero_vector(void)
{
        struct embedder e;
        float v[64];
        int zero = 1;

        CHECK(embedder_init(&e, 64) == 0);
        v[0] = 1.0f;
        CHECK(embed(&e, "the of a", v) == 0);
        for (int i = 0; i < 64; i++)
                zero = zero && v[i] == 0.0f;
        CHECK(zero);
        CHECK(embed(&e, "masterpiece, best quality, highly, 8k, LoRA v2 (1.2)", v) == 0);
        for (int i = 0; i < 64; i++)
                zero = zero && v[i] == 0.0f;
        CHECK(zero);
        /* "detailed" is not boilerplate: detail-enhancer adapters answer to it. */
        CHECK(embed(&e, "highly detailed", v) == 0);
        for (int i = 0; i < 64; i++)
                zero = zero && v[i] == 0.0f;
        CHECK(!zero);
        CHECK(embedder_embed(&e, NULL, 0, v) == 0 && v[0] == 0.0f);
        CHECK(embedder_embed(&e, NULL, 5, v) == ST_EINVAL);
}

static void test_similarity_order(void)
{
        const char *query = "watercolor painting style";
        const char *watercolor = "Watercolor Dream - painting style; watercolor";
        const char *cyberpunk = "cyberpunk neon city background";
        struct embedder e;

        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(similarity(&e, query, watercolor) > similarity(&e, query, cyberpunk) + 0.3f);
        CHECK(similarity(&e, "neon city at night", cyberpunk) >
              similarity(&e, "neon city at night", watercolor));
        /* A word shared in another form still counts, through n-grams and stems. */
        CHECK(similarity(&e, "a watercolour landscape", watercolor) >
              similarity(&e, "a watercolour landscape", cyberpunk));
        /* Word order matters a little (bigrams), words matter most. */
        CHECK(similarity(&e, "dog sled", "sled dog") > 0.7f);
        CHECK(similarity(&e, "dog sled", "sled dog") < 0.999f);
}

static void test_stems(void)
{
        static const char *const same[][2] = {
            {"corgis", "corgi"},    {"painting", "paint"}, {"painted", "paint"},
            {"puppies", "puppy"},   {"dresses", "dress"},  {"movies", "movie"},
            {"boxes", "box"},       {"dancing", "dance"},  {"running", "run"},
            {"styles", "style"},    {"glasses", "glass"},  {"cities", "city"},
            {"Paintings", "PAINT"}, {"posing", "pose"},    {"colored", "color"},
            {"swimming", "swim"},   {"horses", "horse"},   {"eyes", "eye"},
        };
        static const char *const different[][2] = {
            {"king", "kin"},   {"ring", "r"},    {"bus", "bu"},   {"speed", "spe"}, {"red", "r"},
            {"string", "str"}, {"dress", "dre"}, {"fall", "fal"}, {"cat", "dog"},
        };
        struct embedder e;

        CHECK(embedder_init(&e, 256) == 0);
        for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
                float s = similarity(&e, same[i][0], same[i][1]);

                if (fabsf(s - 1.0f) > 1e-5f)
                        fprintf(stderr, "stem: '%s' vs '%s' = %f\n", same[i][0], same[i][1], s);
                CHECK(fabsf(s - 1.0f) <= 1e-5f);
        }
        for (size_t i = 0; i < sizeof(different) / sizeof(different[0]); i++) {
                float s = similarity(&e, different[i][0], different[i][1]);

                if (s > 0.99f)
                        fprintf(stderr, "stem: '%s' vs '%s' = %f\n", different[i][0],
                                different[i][1], s);
                CHECK(s <= 0.99f);
        }
}

static void test_dims(void)
{
        static const int dims[] = {1, 2, 7, 64, 384, 1000, EMBED_MAX_DIM};
        const char *text = "Pixel art sprite of a knight, 16-bit game style";

        for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++) {
                struct embedder e;
                float *v = calloc((size_t)dims[i], sizeof(*v));

                CHECK(v != NULL);
                if (!v)
                        continue;
                CHECK(embedder_init(&e, dims[i]) == 0);
                CHECK(embed(&e, text, v) == 0);
                CHECK(fabsf(dot(v, v, e.dim) - 1.0f) < 1e-5f);
                free(v);
        }
}

static void test_utf8(void)
{
        struct embedder e;

        CHECK(embedder_init(&e, 128) == 0);
        CHECK(similarity(&e, "水彩画 スタイル", "水彩画") > 0.3f);
        CHECK(similarity(&e, "café au lait", "Café") > 0.3f);
        /* Invalid UTF-8 is embedded, not rejected. */
        CHECK(similarity(&e, "\xff\xfe\x80\x80 abc", "abc") > 0.0f);
}

static void test_long_input(void)
{
        static const char *const words[] = {"castle", "dragon", "forest", "the",
                                            "neon",   "armor",  "river",  "of"};
        size_t len = EMBED_MAX_TEXT + 4096, n = 0;
        char *text = malloc(len);
        struct embedder e;
        float v[EMBED_DEFAULT_DIM];

        CHECK(text != NULL);
        if (!text)
                return;
        while (n < len) {
                const char *w = words[(n / 7) % 8];
                size_t wl = strlen(w);

                for (size_t i = 0; i <= wl && n < len; i++)
                        text[n++] = i < wl ? w[i] : ' ';
        }
        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(embedder_embed(&e, text, len, v) == 0);
        CHECK(fabsf(dot(v, v, e.dim) - 1.0f) < 1e-5f);
        /* One long word: n-grams without end. */
        memset(text, 'q', len);
        CHECK(embedder_embed(&e, text, len, v) == 0);
        CHECK(fabsf(dot(v, v, e.dim) - 1.0f) < 1e-5f);
        free(text);
}

static void test_doc_text(void)
{
        char *tags[] = {"style", "", "watercolor"};
        char *triggers[] = {"wcdream"};
        struct st_doc d;
        struct arena a;
        char *text = NULL;
        char *desc;

        memset(&d, 0, sizeof(d));
        arena_init(&a, 1u << 20);
        d.name = "Watercolor Dream";
        d.description = "Soft washes of color.";
        d.tags.v = tags;
        d.tags.n = 3;
        d.trigger_words.v = triggers;
        d.trigger_words.n = 1;
        CHECK(embed_doc_text(&d, &a, &text) == 0);
        CHECK(text && strcmp(text, "Title: Watercolor Dream; Description: Soft washes of color.; "
                                   "Tags: style, watercolor; Trigger words: wcdream;") == 0);

        d.description = NULL;
        d.trigger_words.n = 0;
        CHECK(embed_doc_text(&d, &a, &text) == 0);
        CHECK(text && strcmp(text, "Title: Watercolor Dream; Tags: style, watercolor;") == 0);

        memset(&d, 0, sizeof(d));
        CHECK(embed_doc_text(&d, &a, &text) == 0);
        CHECK(text && text[0] == '\0');

        /* 1999 ASCII bytes then a 3-byte character: the cut must not split it. */
        desc = arena_alloc(&a, 2100);
        CHECK(desc != NULL);
        if (desc) {
                memset(desc, 'x', 1999);
                memcpy(desc + 1999, "\xe6\xb0\xb4yyyy", 8);
                d.description = desc;
                CHECK(embed_doc_text(&d, &a, &text) == 0);
                CHECK(text && strlen(text) == strlen("Description: ;") + 1999);
        }
        arena_release(&a);
}

/* Sparse forms: the dense features without bucket collisions. */
static void test_sparse(void)
{
        struct embed_feature *x, *y, *z;
        size_t nx, ny, nz;
        struct arena a;
        float self;

        arena_init(&a, 1 << 20);
        CHECK(embed_sparse("night", 5, &a, &x, &nx) == 0 && nx > 0);
        CHECK(embed_sparse("Horses; animal, horse, equine", 29, &a, &y, &ny) == 0 && ny > 0);
        CHECK(embed_sparse("Night Owl; animal, owl, bird", 28, &a, &z, &nz) == 0);
        self = embed_sparse_dot(x, nx, x, nx);
        CHECK(self > 0.999f && self < 1.001f);
        CHECK(embed_sparse_dot(x, nx, y, ny) == 0.0f); /* nothing shared, nothing counted */
        CHECK(embed_sparse_dot(x, nx, z, nz) > 0.2f);
        for (size_t i = 1; i < nz; i++)
                CHECK(z[i - 1].hash < z[i].hash); /* sorted and merged */
        CHECK(embed_sparse("the of a", 8, &a, &x, &nx) == 0 && nx == 0);
        CHECK(embed_sparse(NULL, 0, &a, &x, &nx) == 0 && nx == 0);
        CHECK(embed_sparse(NULL, 3, &a, &x, &nx) == ST_EINVAL);
        arena_release(&a);
}

int main(void)
{
        test_init();
        test_deterministic_and_normalized();
        test_zero_vector();
        test_similarity_order();
        test_stems();
        test_dims();
        test_utf8();
        test_long_input();
        test_doc_text();
        test_sparse();
        if (failures) {
                fprintf(stderr, "test_embed: %d checks failed\n", failures);
                return 1;
        }
        printf("test_embed: ok\n");
        return 0;
}
