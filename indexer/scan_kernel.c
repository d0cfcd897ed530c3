/*
 * scan_kernel.c - int8 codes and the scan kernels of the vector store (see
 * scan_kernel.h for the layout and the score formula).
 *
 * Why three kernels: a scan is bound by memory bandwidth for one query and by
 * arithmetic for a batch.  int8 codes are a quarter of the bytes of float32,
 * and AVX-512 VNNI does 64 int8 multiply-adds per instruction (vpdpbusd)
 * where an AVX2 float FMA does 8: that is what makes int8 batches fast.
 *
 *   kernel       per 64-byte load (16 rows x 4 dims) and query
 *   avx512vnni   1 vpdpbusd (u8 x s8): the row codes are made unsigned with
 *                x ^ 0x80 = x + 128, and 128 * sum(query codes) is taken
 *                off the total
 *   avx2         2 x (vpsignb, vpmaddubsw, vpmaddwd, vpaddd): |q| * (x *
 *                sign q); pairs of 7-bit products cannot saturate int16
 *   portable     plain loops
 *
 * Tiles: each kernel keeps several rows and queries in registers so that one
 * load serves many multiply-adds: 64 rows x 4 queries (or x 1 for the last
 * queries of a batch) in avx512vnni, 16 rows x 4 (or 1) in avx2.
 */
#include "indexer/scan_kernel.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SCAN_X86 1
#include <immintrin.h>
#endif

#define QUAD 4 /* dimensions per interleaved quad */
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif

size_t scan_code_dim(int dim)
{
        return ((size_t)dim + QUAD - 1) / QUAD * QUAD;
}

void scan_quantize(const float *v, int dim, int8_t *codes, float *scale)
{
        size_t code_dim = scan_code_dim(dim);
        float max = 0.0f, inv;

        for (int i = 0; i < dim; i++)
                max = fmaxf(max, fabsf(v[i]));
        memset(codes, 0, code_dim);
        *scale = max / 127.0f;
        if (max == 0.0f)
                return;
        inv = 127.0f / max;
        for (int i = 0; i < dim; i++) {
                float x = v[i] * inv;
                int c = (int)(x + (x >= 0.0f ? 0.5f : -0.5f));

                codes[i] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
        }
}

static size_t code_offset(size_t code_dim, size_t row, size_t i)
{
        return row / SCAN_GROUP_ROWS * code_dim * SCAN_GROUP_ROWS +
               i / QUAD * (QUAD * SCAN_GROUP_ROWS) + row % SCAN_GROUP_ROWS * QUAD + i % QUAD;
}

void scan_put_codes(int8_t *area, size_t code_dim, size_t row, const int8_t *codes)
{
        for (size_t i = 0; i < code_dim; i += QUAD)
                memcpy(area + code_offset(code_dim, row, i), codes + i, QUAD);
}

void scan_get_codes(const int8_t *area, size_t code_dim, size_t row, int8_t *codes)
{
        for (size_t i = 0; i < code_dim; i += QUAD)
                memcpy(codes + i, area + code_offset(code_dim, row, i), QUAD);
}

/* ---- portable ---- */

static void portable_score_int8(const int8_t *area, const float *row_scales, size_t code_dim,
                                size_t rows, const struct scan_queries *q, float *scores,
                                size_t stride)
{
        size_t group_bytes = code_dim * SCAN_GROUP_ROWS;

        for (size_t g = 0; g < rows / SCAN_GROUP_ROWS; g++) {
                const int8_t *group = area + g * group_bytes;

                for (size_t j = 0; j < q->n; j++) {
                        const int8_t *qc = q->codes + j * code_dim;
                        int32_t acc[SCAN_GROUP_ROWS] = {0};
                        float *out = scores + j * stride + g * SCAN_GROUP_ROWS;

                        for (size_t d = 0; d < code_dim; d += QUAD) {
                                const int8_t *c = group + d * SCAN_GROUP_ROWS;

                                for (size_t r = 0; r < SCAN_GROUP_ROWS; r++)
                                        for (size_t b = 0; b < QUAD; b++)
                                                acc[r] += c[r * QUAD + b] * qc[d + b];
                        }
                        for (size_t r = 0; r < SCAN_GROUP_ROWS; r++)
                                out[r] = (float)acc[r] * row_scales[g * SCAN_GROUP_ROWS + r] *
                                         q->scales[j];
                }
        }
}

static uint64_t portable_at_least(const float *scores, float threshold)
{
        uint64_t mask = 0;

        for (unsigned j = 0; j < 64; j++)
                mask |= (uint64_t)(scores[j] >= threshold) << j;
        return mask;
}

static const struct scan_kernel portable = {"portable", portable_score_int8, portable_at_least};

#ifdef SCAN_X86

/* Four query codes as one int32, for a broadcast. */
static inline int32_t load_quad(const int8_t *p)
{
        int32_t v;

        memcpy(&v, p, sizeof(v));
        return v;
}

/* ---- avx2 ---- */

/* 8 scores from 8 int32 sums. */
__attribute__((target("avx2"))) static inline void avx2_store(__m256i acc, const float *row_scales,
                                                              float qscale, float *out)
{
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(row_scales));

        _mm256_storeu_ps(out, _mm256_mul_ps(f, _mm256_set1_ps(qscale)));
}

/* One group (16 rows, two registers) against queries j .. j + nt - 1 (nt <= 4). */
__attribute__((target("avx2"), always_inline)) static inline void
avx2_tile(const int8_t *group, size_t code_dim, const struct scan_queries *q, size_t j, size_t nt,
          const float *row_scales, float *scores, size_t stride)
{
        const __m256i ones = _mm256_set1_epi16(1);
        __m256i acc[4][2];

#pragma GCC unroll 4
        for (size_t t = 0; t < nt; t++)
                acc[t][0] = acc[t][1] = _mm256_setzero_si256();
        for (size_t d = 0; d < code_dim; d += QUAD) {
                const int8_t *c = group + d * SCAN_GROUP_ROWS;
                __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)c);
                __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(c + 32));

#pragma GCC unroll 4
                for (size_t t = 0; t < nt; t++) {
                        __m256i qs =
                            _mm256_set1_epi32(load_quad(q->codes + (j + t) * code_dim + d));
                        __m256i qa = _mm256_abs_epi8(qs);
                        __m256i p0 = _mm256_maddubs_epi16(qa, _mm256_sign_epi8(lo, qs));
                        __m256i p1 = _mm256_maddubs_epi16(qa, _mm256_sign_epi8(hi, qs));

                        acc[t][0] = _mm256_add_epi32(acc[t][0], _mm256_madd_epi16(p0, ones));
                        acc[t][1] = _mm256_add_epi32(acc[t][1], _mm256_madd_epi16(p1, ones));
                }
        }
#pragma GCC unroll 4
        for (size_t t = 0; t < nt; t++) {
                float *out = scores + (j + t) * stride;

                avx2_store(acc[t][0], row_scales, q->scales[j + t], out);
                avx2_store(acc[t][1], row_scales + 8, q->scales[j + t], out + 8);
        }
}

__attribute__((target("avx2"))) static void
avx2_score_int8(const int8_t *area, const float *row_scales, size_t code_dim, size_t rows,
                const struct scan_queries *q, float *scores, size_t stride)
{
        size_t group_bytes = code_dim * SCAN_GROUP_ROWS;

        for (size_t g = 0; g < rows / SCAN_GROUP_ROWS; g++) {
                const int8_t *group = area + g * group_bytes;
                const float *rs = row_scales + g * SCAN_GROUP_ROWS;
                float *out = scores + g * SCAN_GROUP_ROWS;
                size_t j = 0;

                for (; j + 4 <= q->n; j += 4)
                        avx2_tile(group, code_dim, q, j, 4, rs, out, stride);
                for (; j < q->n; j++)
                        avx2_tile(group, code_dim, q, j, 1, rs, out, stride);
        }
}

__attribute__((target("avx2"))) static uint64_t avx2_at_least(const float *scores, float threshold)
{
        __m256 t = _mm256_set1_ps(threshold);
        uint64_t mask = 0;

        for (unsigned j = 0; j < 64; j += 8) {
                __m256 ge = _mm256_cmp_ps(_mm256_loadu_ps(scores + j), t, _CMP_GE_OQ);

                mask |= (uint64_t)(unsigned)_mm256_movemask_ps(ge) << j;
        }
        return mask;
}

static const struct scan_kernel avx2 = {"avx2", avx2_score_int8, avx2_at_least};

/* ---- avx512vnni ---- */

/* 16 scores from 16 biased int32 sums. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static inline void
vnni_store(__m512i acc, int32_t bias, const float *row_scales, float qscale, float *out)
{
        __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, _mm512_set1_epi32(bias)));

        f = _mm512_mul_ps(f, _mm512_loadu_ps(row_scales));
        _mm512_storeu_ps(out, _mm512_mul_ps(f, _mm512_set1_ps(qscale)));
}

/* The 64-byte load at quad offset d of group g of a 4-group tile, as unsigned bytes. */
__attribute__((target("avx512f,avx512bw"))) static inline __m512i
vnni_load(const int8_t *groups, size_t group_bytes, size_t g, size_t d)
{
        __m512i c = _mm512_loadu_si512(groups + g * group_bytes + d * SCAN_GROUP_ROWS);

        return _mm512_xor_si512(c, _mm512_set1_epi8(-128));
}

/*
 * Four groups (64 rows) against four queries; prefetches next (NULL: none),
 * one line per 64-byte load, i.e. one group of the next tile.  Named
 * accumulators, not an array: GCC 12 shuffles arrays of vectors between
 * registers and the stack.
 */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
vnni_tile4(const int8_t *groups, size_t code_dim, const struct scan_queries *q, size_t j,
           const float *row_scales, float *scores, size_t stride, const int8_t *next)
{
        size_t group_bytes = code_dim * SCAN_GROUP_ROWS;
        const int8_t *q0 = q->codes + j * code_dim, *q1 = q0 + code_dim;
        const int8_t *q2 = q1 + code_dim, *q3 = q2 + code_dim;
        __m512i a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33;
        __m512i acc[16];

        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = _mm512_setzero_si512();
        a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = _mm512_setzero_si512();
        for (size_t d = 0; d < code_dim; d += QUAD) {
                __m512i c0 = vnni_load(groups, group_bytes, 0, d);
                __m512i c1 = vnni_load(groups, group_bytes, 1, d);
                __m512i c2 = vnni_load(groups, group_bytes, 2, d);
                __m512i c3 = vnni_load(groups, group_bytes, 3, d);
                __m512i b = _mm512_set1_epi32(load_quad(q0 + d));

                if (next)
                        _mm_prefetch((const char *)(next + d * SCAN_GROUP_ROWS), PF_HINT);
                a00 = _mm512_dpbusd_epi32(a00, c0, b);
                a01 = _mm512_dpbusd_epi32(a01, c1, b);
                a02 = _mm512_dpbusd_epi32(a02, c2, b);
                a03 = _mm512_dpbusd_epi32(a03, c3, b);
                b = _mm512_set1_epi32(load_quad(q1 + d));
                a10 = _mm512_dpbusd_epi32(a10, c0, b);
                a11 = _mm512_dpbusd_epi32(a11, c1, b);
                a12 = _mm512_dpbusd_epi32(a12, c2, b);
                a13 = _mm512_dpbusd_epi32(a13, c3, b);
                b = _mm512_set1_epi32(load_quad(q2 + d));
                a20 = _mm512_dpbusd_epi32(a20, c0, b);
                a21 = _mm512_dpbusd_epi32(a21, c1, b);
                a22 = _mm512_dpbusd_epi32(a22, c2, b);
                a23 = _mm512_dpbusd_epi32(a23, c3, b);
                b = _mm512_set1_epi32(load_quad(q3 + d));
                a30 = _mm512_dpbusd_epi32(a30, c0, b);
                a31 = _mm512_dpbusd_epi32(a31, c1, b);
                a32 = _mm512_dpbusd_epi32(a32, c2, b);
                a33 = _mm512_dpbusd_epi32(a33, c3, b);
        }
        acc[0] = a00, acc[1] = a01, acc[2] = a02, acc[3] = a03;
        acc[4] = a10, acc[5] = a11, acc[6] = a12, acc[7] = a13;
        acc[8] = a20, acc[9] = a21, acc[10] = a22, acc[11] = a23;
        acc[12] = a30, acc[13] = a31, acc[14] = a32, acc[15] = a33;
        for (size_t t = 0; t < 4; t++)
                for (size_t g = 0; g < 4; g++)
                        vnni_store(acc[t * 4 + g], 128 * q->sums[j + t],
                                   row_scales + g * SCAN_GROUP_ROWS, q->scales[j + t],
                                   scores + (j + t) * stride + g * SCAN_GROUP_ROWS);
}

/* Four groups (64 rows) against one query: four independent chains. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
vnni_tile1(const int8_t *groups, size_t code_dim, const struct scan_queries *q, size_t j,
           const float *row_scales, float *scores, size_t stride)
{
        size_t group_bytes = code_dim * SCAN_GROUP_ROWS;
        const int8_t *q0 = q->codes + j * code_dim;
        __m512i a0, a1, a2, a3;
        __m512i acc[4];

        a0 = a1 = a2 = a3 = _mm512_setzero_si512();
        for (size_t d = 0; d < code_dim; d += QUAD) {
                __m512i b = _mm512_set1_epi32(load_quad(q0 + d));

                a0 = _mm512_dpbusd_epi32(a0, vnni_load(groups, group_bytes, 0, d), b);
                a1 = _mm512_dpbusd_epi32(a1, vnni_load(groups, group_bytes, 1, d), b);
                a2 = _mm512_dpbusd_epi32(a2, vnni_load(groups, group_bytes, 2, d), b);
                a3 = _mm512_dpbusd_epi32(a3, vnni_load(groups, group_bytes, 3, d), b);
        }
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
        for (size_t g = 0; g < 4; g++)
                vnni_store(acc[g], 128 * q->sums[j], row_scales + g * SCAN_GROUP_ROWS, q->scales[j],
                           scores + j * stride + g * SCAN_GROUP_ROWS);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
vnni_score_int8(const int8_t *area, const float *row_scales, size_t code_dim, size_t rows,
                const struct scan_queries *q, float *scores, size_t stride)
{
        size_t group_bytes = code_dim * SCAN_GROUP_ROWS;

        for (size_t r = 0; r < rows; r += SCAN_TILE_ROWS) {
                const int8_t *groups = area + r / SCAN_GROUP_ROWS * group_bytes;
                size_t j = 0;

                /*
                 * A tile's first pass waits on memory and the others on
                 * arithmetic: the first four passes prefetch the next tile,
                 * a group each, to even out the reads.
                 */
                for (; j + 4 <= q->n; j += 4) {
                        const int8_t *next = groups + (4 + j / 4) * group_bytes;

                        vnni_tile4(groups, code_dim, q, j, row_scales + r, scores + r, stride,
                                   j < 16 && r + SCAN_TILE_ROWS < rows ? next : NULL);
                }
                for (; j < q->n; j++)
                        vnni_tile1(groups, code_dim, q, j, row_scales + r, scores + r, stride);
        }
}

__attribute__((target("avx512f"))) static uint64_t vnni_at_least(const float *scores,
                                                                 float threshold)
{
        __m512 t = _mm512_set1_ps(threshold);
        uint64_t mask = 0;

        for (unsigned j = 0; j < 64; j += 16)
                mask |= (uint64_t)_mm512_cmp_ps_mask(_mm512_loadu_ps(scores + j), t, _CMP_GE_OQ)
                        << j;
        return mask;
}

static const struct scan_kernel vnni = {"avx512vnni", vnni_score_int8, vnni_at_least};

static int runs(const struct scan_kernel *k)
{
        if (k == &vnni)
                return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                       __builtin_cpu_supports("avx512vnni");
        if (k == &avx2)
                return __builtin_cpu_supports("avx2");
        return 1;
}

static const struct scan_kernel *const kernels[] = {&vnni, &avx2, &portable}; /* fastest first */

#else

static int runs(const struct scan_kernel *k)
{
        (void)k;
        return 1;
}

static const struct scan_kernel *const kernels[] = {&portable};

#endif

const struct scan_kernel *scan_kernel_best(void)
{
        for (size_t i = 0; i < sizeof(kernels) / sizeof(kernels[0]); i++)
                if (runs(kernels[i]))
                        return kernels[i];
        return &portable;
}

const struct scan_kernel *scan_kernel_find(const char *name)
{
        for (size_t i = 0; name && i < sizeof(kernels) / sizeof(kernels[0]); i++)
                if (strcmp(kernels[i]->name, name) == 0 && runs(kernels[i]))
                        return kernels[i];
        return NULL;
}
