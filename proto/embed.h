/*
 * embed.h - the built-in offline text embedder, shared by the indexer (which
 * embeds docs) and the query node (which embeds prompts and topics).
 *
 * Model "stylus-hash-v1": lowercase, split into word tokens, drop stop words,
 * then hash word unigrams, word bigrams and character n-grams of each word
 * (signed feature hashing) into dim float buckets, sublinear term weights,
 * L2-normalize.  Deterministic: the same text gives the same vector on any
 * machine.  A text with no usable token gives the zero vector.
 *
 * Optionally with IDF weights learned from a catalog (`stylus idf`, see
 * "IDF tables" below): each feature's weight is multiplied by the inverse
 * document frequency of its hash bucket before the sum and normalization, so
 * words every adapter has ("style", "character") count less than the words
 * that tell adapters apart ("corgi", "ukiyo").  The model name then becomes
 * "stylus-hash-v1+idf-<first 8 hex digits of the table's SHA-256>/<dim>":
 * shards and query nodes compare names, so a node with another table or
 * none is refused.
 *
 * Thread rules: a struct embedder and an IDF table are read-only after
 * embedder_init() / embedder_set_idf() and the table's load, and may be
 * shared by threads.  An IDF counter belongs to one thread.
 */
#ifndef STYLUS_EMBED_H
#define STYLUS_EMBED_H

#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define EMBED_DEFAULT_DIM 384
#define EMBED_MAX_DIM     4096
#define EMBED_MAX_TEXT    (1u << 20) /* longer input is embedded by its first MiB */

struct embed_idf;

struct embedder {
        int dim;                     /* output floats */
        char model[64];              /* "stylus-hash-v1/<dim>", stored with every index */
        const struct embed_idf *idf; /* NULL: no IDF weights; borrowed, see embedder_set_idf */
};

/* Set up for dim in 1..EMBED_MAX_DIM, without IDF weights; ST_EINVAL otherwise. */
int embedder_init(struct embedder *e, int dim);

/*
 * Weigh features by the IDF table t from now on, and name the model
 * "stylus-hash-v1+idf-<8 hex>/<dim>"; t NULL goes back to no weights and
 * "stylus-hash-v1/<dim>".  t is borrowed: it must outlive every use of e.
 */
void embedder_set_idf(struct embedder *e, const struct embed_idf *t);

/* Embed len bytes of UTF-8 text into out[e->dim], L2-normalized (or all zero). */
int embedder_embed(const struct embedder *e, const char *text, size_t len, float *out);

/* One feature of a text before hashing into buckets: its 64-bit hash and weight. */
struct embed_feature {
        uint64_t hash;
        float weight;
};

#define EMBED_MAX_SPARSE_TEXT 65536 /* bytes; longer is ST_ETOOBIG */

/*
 * The sparse form of a text: the same features as embedder_embed() (word
 * unigrams, bigrams, character n-grams) kept apart instead of summed into
 * dim buckets, merged, L2-normalized, sorted by hash.  Two sparse forms
 * compare with no bucket collisions, which matters for short texts such as
 * prompt topics and adapter names.  *out is in a (*n features).  Never
 * IDF-weighted: the composer's topic matching and its thresholds were tuned
 * on these weights, and the IDF measurement (docs/embeddings.md, "Built-in
 * embedder quality") is of retrieval only.
 */
int embed_sparse(const char *text, size_t len, struct arena *a, struct embed_feature **out,
                 size_t *n);

/* Cosine of two sparse forms (both normalized): the dot product of equal features. */
float embed_sparse_dot(const struct embed_feature *x, size_t nx, const struct embed_feature *y,
                       size_t ny);

/*
 * The text a doc is embedded from, after the paper: "Title: ..; Description:
 * ..; Tags: ..; Trigger words: ..;" (trigger words are our addition: users
 * type them).  Allocated in a.
 */
int embed_doc_text(const struct st_doc *d, struct arena *a, char **text);

/*
 * ---- IDF tables ----
 *
 * An IDF table holds one weight per feature bucket: a feature (see
 * embed.c) goes to bucket (fmix64 hash >> 1) mod B, where B is a power of
 * two independent of the output dim.  A few hundred buckets are too few:
 * each holds some common feature, so rare words get no weight of their own
 * (on the fixture catalog, 512 buckets have a median df of 105 of 254 docs
 * and retrieve worse than 2^18, where a bucket is about one feature; see
 * docs/embeddings.md).  One table serves every dim.  With N docs counted and df the
 * number of docs with at least one feature in the bucket:
 *
 *     idf = ln((N + 1) / (min(max(df, min_df), N) + 1)) + 1
 *
 * (smoothed IDF, as scikit-learn's; always >= 1: a feature in every doc
 * keeps weight 1).  min_df >= 1 caps the weight of the rarest features and
 * of features the catalog never had: they count as seen in min_df docs.
 *
 * File format (little-endian):
 *
 *   offset  size    field
 *   0       8       magic "STYLIDF\n"
 *   8       4       u32 version = 1
 *   12      4       u32 B, buckets: a power of two in 64..2^24
 *   16      8       u64 N, docs counted (>= 1)
 *   24      4       u32 min_df (>= 1)
 *   28      4       u32 reserved = 0
 *   32      32      feature hashing id, ASCII NUL-padded: "stylus-hash-v1"
 *   64      32      SHA-256 of bytes 0..63 followed by bytes 96..end
 *   96      4 * B   f32 weights, each finite and in 1..EMBED_IDF_MAX_WEIGHT
 *
 * The file is exactly 96 + 4 * B bytes.  The SHA-256's first 8 hex digits
 * go into the model name.
 */
#define EMBED_IDF_HASHING         "stylus-hash-v1"
#define EMBED_IDF_DEFAULT_BUCKETS (1u << 18) /* 1 MiB file */
#define EMBED_IDF_MIN_BUCKETS     64u
#define EMBED_IDF_MAX_BUCKETS     (1u << 24)
#define EMBED_IDF_MAX_WEIGHT      64.0f /* ln(N + 1) + 1 stays below it for any real N */
#define EMBED_IDF_HEADER          96u

struct embed_idf_info {
        uint32_t buckets;
        uint32_t min_df;
        uint64_t docs;
        char sha[65]; /* SHA-256 of the file, 64 lowercase hex digits */
};

/*
 * Parse the len bytes of an IDF file.  Returns 0 and a table you now own,
 * or ST_ETRUNC (shorter than its header says), ST_EPARSE (bad magic,
 * version, hashing id, bucket count, field, checksum or weight; trailing
 * bytes), ST_ENOMEM; err says which.
 */
int embed_idf_parse(const void *bytes, size_t len, struct embed_idf **out, struct st_error *err);

/* Read and parse the file at path: embed_idf_parse's errors, ST_EIO, ST_ETOOBIG. */
int embed_idf_load(const char *path, struct embed_idf **out, struct st_error *err);

/* Write t to path (a temporary file renamed over it): 0, ST_EIO or ST_ENOMEM. */
int embed_idf_save(const struct embed_idf *t, const char *path, struct st_error *err);

/* Free *t and set it to NULL; NULL is fine. */
void embed_idf_destroy(struct embed_idf **t);

void embed_idf_get_info(const struct embed_idf *t, struct embed_idf_info *info);

/*
 * The weight t gives the unigram of the first word of text, after the
 * embedder's lowercasing, stop words and stemming; 0 when text has no
 * usable word.  For inspection and tests.
 */
float embed_idf_word_weight(const struct embed_idf *t, const char *text);

/* Counts document frequencies: one counter builds one table. */
struct embed_idf_counter;

/* A counter over buckets (a power of two in the range above): 0, ST_EINVAL, ST_ENOMEM. */
int embed_idf_counter_new(uint32_t buckets, struct embed_idf_counter **out);

/*
 * Count one doc: the buckets of the features of len bytes of text (the
 * text embed_doc_text() makes).  0, ST_ENOMEM, or ST_ETOOBIG past
 * UINT32_MAX - 1 docs.
 */
int embed_idf_counter_add(struct embed_idf_counter *c, const char *text, size_t len);

/* Docs counted so far. */
uint64_t embed_idf_counter_docs(const struct embed_idf_counter *c);

/*
 * The table of the docs counted so far, with min_df >= 1: you own *out.
 * ST_EINVAL without docs or with min_df 0, ST_ENOMEM.
 */
int embed_idf_counter_finish(const struct embed_idf_counter *c, uint32_t min_df,
                             struct embed_idf **out);

/* Free *c and set it to NULL; NULL is fine. */
void embed_idf_counter_destroy(struct embed_idf_counter **c);

#endif
