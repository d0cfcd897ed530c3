/*
 * test_scan_kernel.c - the int8 codes and scan kernels: quantization bounds,
 * the interleaved layout round trip, and every kernel this CPU runs against
 * a naive integer dot product (same floats, bit for bit), with extreme
 * codes, dims that are not a multiple of 4, and query counts that exercise
 * the 4-query tiles, their prefetch of the next tile and the 1-query
 * remainder.  Then the threshold test.
 */
#include "indexer/scan_kernel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_scan_kernel.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static uint64_t rng_state = 0x243F6A8885A308D3ULL;

static uint64_t next_random(void)
{
        uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

static float uniform(void)
{
        return (float)((double)(next_random() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_quantize(void)
{
        static const int dims[] = {1, 3, 4, 5, 384, 1023};
        int8_t codes[1024 + 4];
        float v[1024], scale = -1.0f;

        for (size_t t = 0; t < sizeof(dims) / sizeof(dims[0]); t++) {
                int dim = dims[t];
                size_t code_dim = scan_code_dim(dim);
                float max = 0.0f;
                int saw_max = 0;

                CHECK(code_dim % 4 == 0 && code_dim >= (size_t)dim && code_dim < (size_t)dim + 4);
                for (int i = 0; i < dim; i++) {
                        v[i] = uniform() * 3.0f;
                        max = fmaxf(max, fabsf(v[i]));
                }
                memset(codes, 0x55, sizeof(codes));
                scan_quantize(v, dim, codes, &scale);
                CHECK(scale == max / 127.0f);
                for (int i = 0; i < dim; i++) {
                        CHECK(codes[i] >= -127 && codes[i] <= 127);
                        CHECK(fabsf(codes[i] * scale - v[i]) <= scale * 0.5001f);
                        saw_max |= codes[i] == 127 || codes[i] == -127;
                }
                CHECK(saw_max);
                for (size_t i = (size_t)dim; i < code_dim; i++)
                        CHECK(codes[i] == 0); /* padding */
        }
        memset(v, 0, sizeof(v));
        scan_quantize(v, 8, codes, &scale);
        CHECK(scale == 0.0f);
        for (int i = 0; i < 8; i++)
                CHECK(codes[i] == 0);
        v[0] = -2.0f;
        v[1] = 2.0f;
        scan_quantize(v, 2, codes, &scale);
        CHECK(codes[0] == -127 && codes[1] == 127 && codes[2] == 0 && codes[3] == 0);
}

static void test_layout(void)
{
        enum { ROWS = 64, CODE_DIM = 12 };
        static int8_t area[ROWS * CODE_DIM], codes[CODE_DIM], back[CODE_DIM];
        int distinct = 1;

        for (size_t r = 0; r < ROWS; r++) {
                for (size_t i = 0; i < CODE_DIM; i++)
                        codes[i] = (int8_t)((r * CODE_DIM + i) % 251 - 125);
                scan_put_codes(area, CODE_DIM, r, codes);
        }
        for (size_t r = 0; r < ROWS; r++) {
                scan_get_codes(area, CODE_DIM, r, back);
                for (size_t i = 0; i < CODE_DIM; i++)
                        distinct &= back[i] == (int8_t)((r * CODE_DIM + i) % 251 - 125);
        }
        CHECK(distinct);
        /* The table of scan_kernel.h: row 17, dim 6 -> group 1, quad 1, lane 1, byte 2. */
        CHECK(area[1 * CODE_DIM * 16 + 1 * 64 + 1 * 4 + 2] ==
              (int8_t)((17 * CODE_DIM + 6) % 251 - 125));
}

/* Every kernel against a naive dot product, for one shape. */
static void check_kernels(int dim, size_t rows, size_t nq)
{
        size_t code_dim = scan_code_dim(dim);
        int8_t *area = calloc(rows * code_dim, 1), *qcodes = calloc(nq * code_dim, 1);
        int8_t *row = calloc(code_dim, 1);
        float *row_scales = malloc(rows * sizeof(float)), *qscales = malloc(nq * sizeof(float));
        int32_t *sums = calloc(nq, sizeof(int32_t));
        float *want = malloc(nq * rows * sizeof(float)), *got = malloc(nq * rows * sizeof(float));
        static const char *const names[] = {"portable", "avx2", "avx512vnni"};
        struct scan_queries q;

        CHECK(area && qcodes && row && row_scales && qscales && sums && want && got);
        if (!area || !qcodes || !row || !row_scales || !qscales || !sums || !want || !got)
                goto out;
        for (size_t r = 0; r < rows; r++) {
                for (int i = 0; i < dim; i++) {
                        uint64_t x = next_random();

                        /* A share of extreme codes: the saturation cases. */
                        row[i] = (int8_t)(x % 8 == 0 ? (x & 8 ? 127 : -127) : (int)(x % 255) - 127);
                }
                scan_put_codes(area, code_dim, r, row);
                row_scales[r] = r % 7 == 0 ? 0.0f : (float)(r + 1) / 1000.0f;
        }
        for (size_t j = 0; j < nq; j++) {
                for (int i = 0; i < dim; i++) {
                        uint64_t x = next_random();
                        int8_t c =
                            (int8_t)(x % 4 == 0 ? (x & 4 ? 127 : -127) : (int)(x % 255) - 127);

                        qcodes[j * code_dim + (size_t)i] = c;
                        sums[j] += c;
                }
                qscales[j] = 0.5f + (float)j;
        }
        for (size_t j = 0; j < nq; j++) {
                for (size_t r = 0; r < rows; r++) {
                        int32_t dot = 0;

                        scan_get_codes(area, code_dim, r, row);
                        for (size_t i = 0; i < code_dim; i++)
                                dot += row[i] * qcodes[j * code_dim + i];
                        want[j * rows + r] = (float)dot * row_scales[r] * qscales[j];
                }
        }
        q.codes = qcodes;
        q.scales = qscales;
        q.sums = sums;
        q.n = nq;
        for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
                const struct scan_kernel *k = scan_kernel_find(names[t]);
                size_t bad = 0;

                if (!k)
                        continue;
                memset(got, 0xff, nq * rows * sizeof(float));
                k->score_int8(area, row_scales, code_dim, rows, &q, got, rows);
                for (size_t i = 0; i < nq * rows; i++)
                        bad += memcmp(&got[i], &want[i], sizeof(float)) != 0;
                if (bad)
                        fprintf(stderr, "kernel %s dim %d rows %zu nq %zu: %zu scores differ\n",
                                k->name, dim, rows, nq, bad);
                CHECK(bad == 0);
        }
out:
        free(area);
        free(qcodes);
        free(row);
        free(row_scales);
        free(qscales);
        free(sums);
        free(want);
        free(got);
}

static void test_kernels(void)
{
        static const int dims[] = {1, 4, 7, 64, 384};
        static const size_t queries[] = {1, 3, 4, 5, 9};

        CHECK(scan_kernel_find("portable") != NULL);
        CHECK(scan_kernel_find("no-such-kernel") == NULL);
        CHECK(scan_kernel_best() != NULL);
        printf("test_scan_kernel: best kernel on this CPU: %s\n", scan_kernel_best()->name);
        for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++)
                for (size_t n = 0; n < sizeof(queries) / sizeof(queries[0]); n++)
                        check_kernels(dims[d], d % 2 ? 64 : 192, queries[n]);
        /*
         * Batches whose 4-query passes prefetch the next 64-row tile (the
         * first four passes of a tile), with odd dims and a remainder.
         */
        check_kernels(383, 256, 16);
        check_kernels(386, 128, 17);
        check_kernels(5, 320, 31);
        check_kernels(384, 4096, 32);
}

static void test_at_least(void)
{
        static const char *const names[] = {"portable", "avx2", "avx512vnni"};
        float s[64];

        for (int j = 0; j < 64; j++)
                s[j] = (float)(j % 9) - 4.0f;
        s[5] = NAN;
        s[63] = 1.0f;
        for (size_t t = 0; t < sizeof(names) / sizeof(names[0]); t++) {
                const struct scan_kernel *k = scan_kernel_find(names[t]);
                uint64_t want = 0;

                if (!k)
                        continue;
                for (int j = 0; j < 64; j++)
                        want |= (uint64_t)(s[j] >= 1.0f) << j;
                CHECK(k->at_least(s, 1.0f) == want);
                CHECK((k->at_least(s, 1.0f) >> 63) == 1);           /* equal counts */
                CHECK(((k->at_least(s, -INFINITY) >> 5) & 1) == 0); /* NaN never */
                CHECK(k->at_least(s, -INFINITY) == ~((uint64_t)1 << 5));
                CHECK(k->at_least(s, INFINITY) == 0);
        }
}

int main(void)
{
        test_quantize();
        test_layout();
        test_kernels();
        test_at_least();
        if (failures) {
                fprintf(stderr, "test_scan_kernel: %d checks failed\n", failures);
                return 1;
        }
        printf("test_scan_kernel: ok\n");
        return 0;
}
