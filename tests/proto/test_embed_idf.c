/*
 * test_embed_idf.c - IDF tables for the built-in embedder: the weights a
 * tiny corpus gives, a rare word outweighing a common one, the model name
 * following the table, the file surviving a save and load, and every kind
 * of bad file refused with a clear error; then the --embed-idf flag of
 * indexer/embedder_choice.h.
 */
#include "proto/embed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "indexer/embedder_choice.h"
#include "proto/sha256.h"

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_embed_idf.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static const char *const corpus[] = {
    "Title: Corgi; Tags: dog, style",
    "Title: Shiba; Tags: dog, style",
    "Title: Pug; Tags: dog, style",
    "Title: Watercolor; Tags: painting, style",
};
#define CORPUS_DOCS (sizeof(corpus) / sizeof(corpus[0]))

static struct embed_idf *table_of(const char *const *docs, size_t n, uint32_t min_df)
{
        struct embed_idf_counter *c = NULL;
        struct embed_idf *t = NULL;

        if (embed_idf_counter_new(EMBED_IDF_DEFAULT_BUCKETS, &c))
                return NULL;
        for (size_t i = 0; i < n; i++)
                CHECK(embed_idf_counter_add(c, docs[i], strlen(docs[i])) == 0);
        CHECK(embed_idf_counter_docs(c) == n);
        CHECK(embed_idf_counter_finish(c, min_df, &t) == 0);
        embed_idf_counter_destroy(&c);
        CHECK(c == NULL);
        return t;
}

static int near(float x, double want)
{
        return fabs((double)x - want) < 1e-5;
}

static float dot(const float *a, const float *b, int dim)
{
        double s = 0.0;

        for (int i = 0; i < dim; i++)
                s += (double)a[i] * b[i];
        return (float)s;
}

static float similarity(const struct embedder *e, const char *x, const char *y)
{
        float a[EMBED_DEFAULT_DIM], b[EMBED_DEFAULT_DIM];

        if (embedder_embed(e, x, strlen(x), a) || embedder_embed(e, y, strlen(y), b))
                return -2.0f;
        return dot(a, b, e->dim);
}

/* idf = ln((N + 1) / (max(df, min_df) + 1)) + 1, N = 4 docs. */
static void test_weights(void)
{
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1);
        struct embed_idf *t2 = table_of(corpus, CORPUS_DOCS, 2);
        struct embed_idf_info info;

        CHECK(t && t2);
        if (!t || !t2)
                return;
        embed_idf_get_info(t, &info);
        CHECK(info.docs == 4 && info.min_df == 1 && info.buckets == EMBED_IDF_DEFAULT_BUCKETS);
        CHECK(strlen(info.sha) == 64);
        CHECK(near(embed_idf_word_weight(t, "style"), 1.0));                /* df 4 */
        CHECK(near(embed_idf_word_weight(t, "dog"), log(5.0 / 4.0) + 1.0)); /* df 3 */
        CHECK(near(embed_idf_word_weight(t, "corgi"), log(5.0 / 2.0) + 1.0));
        CHECK(near(embed_idf_word_weight(t, "Corgis"), log(5.0 / 2.0) + 1.0)); /* stemmed */
        CHECK(near(embed_idf_word_weight(t, "ramen"), log(5.0 / 2.0) + 1.0));  /* unseen */
        CHECK(embed_idf_word_weight(t, "the") == 0.0f);                        /* stop word */
        /* min_df 2: the rarest count as seen twice. */
        CHECK(near(embed_idf_word_weight(t2, "corgi"), log(5.0 / 3.0) + 1.0));
        CHECK(near(embed_idf_word_weight(t2, "dog"), log(5.0 / 4.0) + 1.0));
        embed_idf_destroy(&t);
        embed_idf_destroy(&t2);
        CHECK(t == NULL);
        embed_idf_destroy(&t); /* twice is fine */
}

static void test_rare_outweighs_common(void)
{
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1);
        struct embedder plain, weighted;
        float common, rare;

        CHECK(t != NULL);
        if (!t)
                return;
        CHECK(embedder_init(&plain, EMBED_DEFAULT_DIM) == 0);
        CHECK(embedder_init(&weighted, EMBED_DEFAULT_DIM) == 0);
        embedder_set_idf(&weighted, t);
        CHECK(embed_idf_word_weight(t, "corgi") > embed_idf_word_weight(t, "style"));
        /* "corgi style": the plain embedder leans on neither word; IDF leans on corgi. */
        rare = similarity(&weighted, "corgi style", "corgi");
        common = similarity(&weighted, "corgi style", "style");
        CHECK(rare > common + 0.2f);
        CHECK(rare > similarity(&plain, "corgi style", "corgi"));
        CHECK(common < similarity(&plain, "corgi style", "style"));
        /* Still unit length, and still zero for a text of stop words. */
        CHECK(fabsf(similarity(&weighted, "corgi style", "corgi style") - 1.0f) < 1e-5f);
        CHECK(similarity(&weighted, "the and of", "corgi") == 0.0f);
        embed_idf_destroy(&t);
}

static void test_model_name(void)
{
        static const char *const other[] = {"Title: Koi; Tags: fish", "Title: Pond"};
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1);
        struct embed_idf *same = table_of(corpus, CORPUS_DOCS, 1);
        struct embed_idf *diff = table_of(other, 2, 1);
        struct embed_idf_info info;
        struct embedder e, f;
        char want[64];

        CHECK(t && same && diff);
        if (!t || !same || !diff)
                goto out;
        embed_idf_get_info(t, &info);
        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(strcmp(e.model, "stylus-hash-v1/384") == 0 && e.idf == NULL);
        embedder_set_idf(&e, t);
        snprintf(want, sizeof(want), "stylus-hash-v1+idf-%.8s/384", info.sha);
        CHECK(strcmp(e.model, want) == 0);
        CHECK(strlen(e.model) < sizeof(e.model));
        /* The same docs give the same table: the name is reproducible. */
        CHECK(embedder_init(&f, EMBED_DEFAULT_DIM) == 0);
        embedder_set_idf(&f, same);
        CHECK(strcmp(e.model, f.model) == 0);
        /* Another table, another name; the dim stays in the name. */
        embedder_set_idf(&f, diff);
        CHECK(strcmp(e.model, f.model) != 0);
        CHECK(embedder_init(&f, EMBED_MAX_DIM) == 0);
        embedder_set_idf(&f, t);
        CHECK(strstr(f.model, "/4096") != NULL && strncmp(f.model, want, 27) == 0);
        /* Back to no table. */
        embedder_set_idf(&e, NULL);
        CHECK(strcmp(e.model, "stylus-hash-v1/384") == 0 && e.idf == NULL);
out:
        embed_idf_destroy(&t);
        embed_idf_destroy(&same);
        embed_idf_destroy(&diff);
}

static void test_counter_errors(void)
{
        struct embed_idf_counter *c = NULL;
        struct embed_idf *t = NULL;

        CHECK(embed_idf_counter_new(100, &c) == ST_EINVAL && c == NULL); /* not a power of 2 */
        CHECK(embed_idf_counter_new(32, &c) == ST_EINVAL);
        CHECK(embed_idf_counter_new(EMBED_IDF_MAX_BUCKETS * 2u, &c) == ST_EINVAL);
        CHECK(embed_idf_counter_new(EMBED_IDF_MIN_BUCKETS, &c) == 0);
        CHECK(embed_idf_counter_finish(c, 1, &t) == ST_EINVAL && t == NULL); /* no docs */
        CHECK(embed_idf_counter_add(c, "", 0) == 0); /* an empty doc still counts */
        CHECK(embed_idf_counter_finish(c, 0, &t) == ST_EINVAL);
        CHECK(embed_idf_counter_finish(c, 1, &t) == 0 && t != NULL);
        if (t)
                CHECK(embed_idf_word_weight(t, "anything") == 1.0f); /* N = 1: all weigh 1 */
        embed_idf_destroy(&t);
        embed_idf_counter_destroy(&c);
        embed_idf_counter_destroy(&c);
}

/* ---- files ---- */

static char dir[] = "/tmp/test_embed_idf.XXXXXX";

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
        FILE *f = fopen(path, "rb");
        long n;

        if (!f)
                return -1;
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        rewind(f);
        *buf = malloc((size_t)n + 1);
        *len = *buf ? fread(*buf, 1, (size_t)n, f) : 0;
        fclose(f);
        return *buf && *len == (size_t)n ? 0 : -1;
}

static int write_all(const char *path, const unsigned char *buf, size_t len)
{
        FILE *f = fopen(path, "wb");
        int rc;

        if (!f)
                return -1;
        rc = fwrite(buf, 1, len, f) == len ? 0 : -1;
        return fclose(f) ? -1 : rc;
}

/* Put a valid digest back after editing, as a careful forger would. */
static void reseal(unsigned char *buf, size_t len)
{
        struct sha256 h;

        sha256_init(&h);
        sha256_update(&h, buf, 64);
        sha256_update(&h, buf + EMBED_IDF_HEADER, len - EMBED_IDF_HEADER);
        sha256_final(&h, buf + 64);
}

/* Parse buf[len]: the code, and the message in err. */
static int parse(const unsigned char *buf, size_t len, struct st_error *err)
{
        struct embed_idf *t = NULL;
        int rc;

        memset(err, 0, sizeof(*err));
        rc = embed_idf_parse(buf, len, &t, err);
        CHECK((rc == 0) == (t != NULL));
        embed_idf_destroy(&t);
        return rc;
}

static void put32(unsigned char *p, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                p[i] = (unsigned char)(v >> (8 * i));
}

static void test_save_load(void)
{
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1), *back = NULL;
        struct embed_idf_info a, b;
        struct st_error err = {0};
        char path[256];
        unsigned char *buf = NULL;
        size_t len = 0;

        CHECK(t != NULL);
        if (!t)
                return;
        snprintf(path, sizeof(path), "%s/idf.bin", dir);
        CHECK(embed_idf_save(t, path, &err) == 0);
        CHECK(embed_idf_load(path, &back, &err) == 0 && back != NULL);
        CHECK(read_all(path, &buf, &len) == 0);
        CHECK(len == EMBED_IDF_HEADER + 4 * (size_t)EMBED_IDF_DEFAULT_BUCKETS);
        CHECK(buf && memcmp(buf, "STYLIDF\n", 8) == 0);
        if (back) {
                struct embedder x, y;
                float vx[EMBED_DEFAULT_DIM], vy[EMBED_DEFAULT_DIM];

                embed_idf_get_info(t, &a);
                embed_idf_get_info(back, &b);
                CHECK(strcmp(a.sha, b.sha) == 0 && a.docs == b.docs && a.min_df == b.min_df);
                CHECK(embedder_init(&x, EMBED_DEFAULT_DIM) == 0);
                CHECK(embedder_init(&y, EMBED_DEFAULT_DIM) == 0);
                embedder_set_idf(&x, t);
                embedder_set_idf(&y, back);
                CHECK(strcmp(x.model, y.model) == 0);
                CHECK(embedder_embed(&x, "corgi style", 11, vx) == 0);
                CHECK(embedder_embed(&y, "corgi style", 11, vy) == 0);
                CHECK(memcmp(vx, vy, sizeof(vx)) == 0);
        }
        free(buf);
        embed_idf_destroy(&back);
        embed_idf_destroy(&t);
}

static void test_bad_files(void)
{
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1), *back = NULL;
        struct st_error err;
        char path[256], bad[256];
        unsigned char *buf = NULL, *copy = NULL;
        size_t len = 0;
        float nan_weight = NAN;
        uint32_t bits;

        snprintf(path, sizeof(path), "%s/good.bin", dir);
        snprintf(bad, sizeof(bad), "%s/bad.bin", dir);
        CHECK(t && embed_idf_save(t, path, NULL) == 0 && read_all(path, &buf, &len) == 0);
        if (!buf)
                goto out;
        copy = malloc(len);
        CHECK(parse(buf, len, &err) == 0);

        /* Truncated anywhere: in the header, in the weights, by one byte. */
        CHECK(parse(buf, 0, &err) == ST_ETRUNC && strstr(err.msg, "truncated"));
        CHECK(parse(buf, 50, &err) == ST_ETRUNC);
        CHECK(parse(buf, EMBED_IDF_HEADER, &err) == ST_ETRUNC);
        CHECK(parse(buf, len - 1, &err) == ST_ETRUNC && strstr(err.msg, "truncated"));

        /* One flipped bit in a weight: the checksum catches it. */
        memcpy(copy, buf, len);
        copy[EMBED_IDF_HEADER + 1000] ^= 0x10;
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "SHA-256"));
        /* ... and in the header's doc count. */
        memcpy(copy, buf, len);
        copy[16] ^= 1;
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "SHA-256"));

        /* Not ours, or not this version, or another hashing. */
        memcpy(copy, buf, len);
        copy[0] = 'X';
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "magic"));
        memcpy(copy, buf, len);
        put32(copy + 8, 2);
        reseal(copy, len);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "version 2"));
        memcpy(copy, buf, len);
        memcpy(copy + 32, "stylus-hash-v2\n", 15);
        reseal(copy, len);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "stylus-hash-v2?"));

        /* Wrong size: a bucket count the data does not have, or not a power of two. */
        memcpy(copy, buf, len);
        put32(copy + 12, EMBED_IDF_DEFAULT_BUCKETS / 2);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "after its"));
        put32(copy + 12, EMBED_IDF_DEFAULT_BUCKETS * 2);
        CHECK(parse(copy, len, &err) == ST_ETRUNC);
        put32(copy + 12, 384);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "power of two"));

        /* Sealed but impossible: a NaN weight, a weight below 1, no docs. */
        memcpy(copy, buf, len);
        memcpy(&bits, &nan_weight, sizeof(bits));
        put32(copy + EMBED_IDF_HEADER + 8, bits);
        reseal(copy, len);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "weight 2"));
        memcpy(copy, buf, len);
        put32(copy + EMBED_IDF_HEADER, 0); /* 0.0f */
        reseal(copy, len);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "weight 0"));
        memcpy(copy, buf, len);
        memset(copy + 16, 0, 8);
        reseal(copy, len);
        CHECK(parse(copy, len, &err) == ST_EPARSE && strstr(err.msg, "docs"));

        /* From a file, the error names it. */
        memcpy(copy, buf, len);
        CHECK(write_all(bad, copy, len / 2) == 0);
        CHECK(embed_idf_load(bad, &back, &err) == ST_ETRUNC && back == NULL);
        CHECK(strstr(err.msg, bad) && strstr(err.msg, "truncated"));
        CHECK(write_all(bad, (const unsigned char *)"", 0) == 0);
        CHECK(embed_idf_load(bad, &back, &err) == ST_ETRUNC);
        unlink(bad);
        CHECK(embed_idf_load(bad, &back, &err) == ST_EIO && strstr(err.msg, bad));
        CHECK(embed_idf_load(dir, &back, &err) != 0 && back == NULL); /* a directory */
out:
        free(copy);
        free(buf);
        embed_idf_destroy(&t);
}

/* ---- --embed-idf ---- */

static int option_of(const char *name)
{
        if (!strcmp(name, "idf"))
                return EMBED_OPT_IDF;
        if (!strcmp(name, "url"))
                return EMBED_OPT_URL;
        return EMBED_OPT_MODEL;
}

/* Open c as a command given --embed-<args[0]> args[1] ... would. */
static int open_with(const char *const *args, int n, struct embedder_choice *c,
                     struct st_error *err)
{
        struct embedder_flags f;

        embedder_flags_init(&f);
        for (int i = 0; i + 1 < n; i += 2)
                CHECK(embedder_flags_take(&f, option_of(args[i]), args[i + 1], err) == 1);
        return embedder_choice_open(c, &f, EMBED_DEFAULT_DIM, EMBEDDER_DEADLINE_QUERY_MS, err);
}

static void test_choice_flag(void)
{
        struct embed_idf *t = table_of(corpus, CORPUS_DOCS, 1);
        struct embedder plain;
        struct embedder_choice c;
        struct st_error err = {0};
        char path[256], missing[256], want[64];
        const char *text = "corgi style";
        float got[EMBED_DEFAULT_DIM], direct[EMBED_DEFAULT_DIM];

        snprintf(path, sizeof(path), "%s/choice.bin", dir);
        snprintf(missing, sizeof(missing), "%s/missing.bin", dir);
        CHECK(t && embed_idf_save(t, path, NULL) == 0);
        if (!t)
                return;
        {
                const char *args[] = {"idf", path};

                CHECK(open_with(args, 2, &c, &err) == 0);
                CHECK(c.idf != NULL && c.http == NULL && c.dim == EMBED_DEFAULT_DIM);
                CHECK(strncmp(c.model, "stylus-hash-v1+idf-", 19) == 0);
                CHECK(embedder_choice_embed(&c, &text, 1, got, &err) == 0);
                CHECK(embedder_init(&plain, EMBED_DEFAULT_DIM) == 0);
                embedder_set_idf(&plain, t);
                snprintf(want, sizeof(want), "%s", plain.model);
                CHECK(strcmp(c.model, want) == 0);
                CHECK(embedder_embed(&plain, text, strlen(text), direct) == 0);
                CHECK(memcmp(got, direct, sizeof(got)) == 0);
                embedder_choice_close(&c);
                CHECK(c.idf == NULL && strcmp(c.model, "stylus-hash-v1/384") == 0);
                embedder_choice_close(&c); /* twice is fine */
        }
        {
                const char *args[] = {"idf", path, "url", "http://127.0.0.1:9", "model", "m"};

                CHECK(open_with(args, 6, &c, &err) == ST_EINVAL);
                CHECK(strstr(err.msg, "--embed-idf") && strstr(err.msg, "--embed-url"));
        }
        {
                const char *args[] = {"idf", missing};

                CHECK(open_with(args, 2, &c, &err) == ST_EIO && strstr(err.msg, missing));
        }
        unlink(path);
        embed_idf_destroy(&t);
}

int main(void)
{
        if (!mkdtemp(dir)) {
                perror("mkdtemp");
                return 1;
        }
        test_weights();
        test_rare_outweighs_common();
        test_model_name();
        test_counter_errors();
        test_save_load();
        test_bad_files();
        test_choice_flag();
        {
                char p[300];

                snprintf(p, sizeof(p), "%s/idf.bin", dir);
                unlink(p);
                snprintf(p, sizeof(p), "%s/good.bin", dir);
                unlink(p);
                rmdir(dir);
        }
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("test_embed_idf: all checks passed\n");
        return 0;
}
