/*
 * fuzz_idf_file.c - what an IDF table file may hold (proto/embed.h,
 * embed_idf_parse()), on arbitrary bytes.  A file is refused with a negative
 * code and a one-line printable message, or accepted; then the table must
 * keep the header's promises: a power-of-two bucket count in range, a
 * SHA-256 of 64 hex digits, every word weight in 1..EMBED_IDF_MAX_WEIGHT,
 * and an embedder using it must give finite unit-length (or zero) vectors
 * and an "stylus-hash-v1+idf-" model name.  A broken promise aborts, which
 * the fuzzer reports.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/embed.h"
#include "proto/errors.h"

#define DIM 16

static void check_message(const struct st_error *err)
{
        if (!err->msg[0])
                abort();
        for (const char *p = err->msg; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        abort();
}

static void check_table(const struct embed_idf *t)
{
        static const char *const texts[] = {"a corgi in watercolor style", "pixel art, dragon",
                                            "the of and", "桜 hanami ✨"};
        struct embed_idf_info info;
        struct embedder e;
        float v[DIM];

        embed_idf_get_info(t, &info);
        if (info.buckets < EMBED_IDF_MIN_BUCKETS || info.buckets > EMBED_IDF_MAX_BUCKETS ||
            (info.buckets & (info.buckets - 1)) || info.docs == 0 || info.min_df == 0 ||
            strlen(info.sha) != 64 || strspn(info.sha, "0123456789abcdef") != 64)
                abort();
        if (embedder_init(&e, DIM))
                abort();
        embedder_set_idf(&e, t);
        if (strncmp(e.model, "stylus-hash-v1+idf-", 19) || strcmp(e.model + 27, "/16"))
                abort();
        for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
                float w = embed_idf_word_weight(t, texts[i]);
                double sum = 0.0;

                if (w != 0.0f && !(w >= 1.0f && w <= EMBED_IDF_MAX_WEIGHT))
                        abort();
                if (embedder_embed(&e, texts[i], strlen(texts[i]), v))
                        abort();
                for (int j = 0; j < DIM; j++) {
                        if (!isfinite(v[j]))
                                abort();
                        sum += (double)v[j] * v[j];
                }
                if (sum != 0.0 && fabs(sum - 1.0) > 1e-3)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct embed_idf *t = NULL;
        struct st_error err = {0};
        int rc = embed_idf_parse(data ? data : (const uint8_t *)"", size, &t, &err);

        if (rc > 0 || (rc == 0) != (t != NULL))
                abort();
        if (rc < 0)
                check_message(&err);
        else
                check_table(t);
        embed_idf_destroy(&t);
        return 0;
}
