/*
 * scan_kernel.h - the inner loops of a vector store scan (indexer/vecstore.c):
 * int8 codes of vectors, their interleaved block layout, the kernels that
 * score them against quantized queries, and the threshold test of the top-K
 * selection.
 *
 * Codes: a vector v of dim floats becomes code_dim = dim rounded up to a
 * multiple of 4 int8 codes in -127..127 (padding 0) and one float scale, with
 * v[i] ~= scale * code[i]; scale = max |v[i]| / 127 (0 for the zero vector).
 * -128 never occurs, so |code| fits 7 bits (the AVX2 kernel relies on it).
 *
 * Code area layout: rows are interleaved by groups of SCAN_GROUP_ROWS = 16
 * rows and quads of 4 dimensions, so that one 64-byte load holds the same 4
 * dimensions of 16 rows (one AVX-512 register, two AVX2 registers):
 *
 *   byte offset of (row r, dim i) = (r / 16) * code_dim * 16
 *                                 + (i / 4) * 64 + (r % 16) * 4 + (i % 4)
 *
 * A group is code_dim * 16 contiguous bytes, so the codes of rows from any
 * multiple of 16 on start at a plain offset.
 *
 * Score of row r for query q (same formula in every kernel, evaluated left to
 * right, so every kernel gives bit-identical floats):
 *   (float)(sum over i of code_r[i] * qcode[i]) * row_scale[r] * qscale
 * The integer sum is exact; (float) rounds only when |sum| >= 2^24.
 *
 * Kernels: "portable" (plain C, any CPU), "avx2", "avx512vnni" (x86-64 with
 * those extensions, picked at run time from CPUID; built with per-function
 * target attributes, so the build itself needs no -m flags).
 *
 * Thread rules: everything here is pure (no state); any thread may call it.
 */
#ifndef STYLUS_SCAN_KERNEL_H
#define STYLUS_SCAN_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define SCAN_GROUP_ROWS 16 /* rows interleaved in one code group */
#define SCAN_TILE_ROWS  64 /* kernels score rows in multiples of this */

/* Queries quantized for the int8 kernels. */
struct scan_queries {
        const int8_t *codes; /* n * code_dim codes, query j at j * code_dim */
        const float *scales; /* n scales */
        const int32_t *sums; /* n sums of the codes (a kernel may need them) */
        size_t n;            /* queries */
};

struct scan_kernel {
        const char *name;
        /*
         * scores[j * stride + r] = score of row r for query j, for r < rows
         * (a multiple of SCAN_TILE_ROWS) and j < q->n.  area holds the codes
         * of those rows (layout above), row_scales their scales.
         */
        void (*score_int8)(const int8_t *area, const float *row_scales, size_t code_dim,
                           size_t rows, const struct scan_queries *q, float *scores, size_t stride);
        /* Bit j (j < 64) set when scores[j] >= threshold (never for NaN). */
        uint64_t (*at_least)(const float *scores, float threshold);
};

/* Codes per vector of dim floats: dim rounded up to a multiple of 4. */
size_t scan_code_dim(int dim);

/* Quantize v (dim finite floats) into codes (scan_code_dim(dim) bytes) and *scale. */
void scan_quantize(const float *v, int dim, int8_t *codes, float *scale);

/* Write the codes (code_dim bytes) of row into a code area (layout above). */
void scan_put_codes(int8_t *area, size_t code_dim, size_t row, const int8_t *codes);

/* Read them back. */
void scan_get_codes(const int8_t *area, size_t code_dim, size_t row, int8_t *codes);

/* The fastest kernel this CPU runs; never NULL. */
const struct scan_kernel *scan_kernel_best(void);

/* The kernel of that name if this CPU runs it, else NULL. */
const struct scan_kernel *scan_kernel_find(const char *name);

#endif
