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
 * Thread rules: a struct embedder is read-only after embedder_init() and may
 * be shared by threads.
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

struct embedder {
        int dim;        /* output floats */
        char model[64]; /* "stylus-hash-v1/<dim>", stored with every index */
};

/* Set up for dim in 1..EMBED_MAX_DIM; ST_EINVAL otherwise. */
int embedder_init(struct embedder *e, int dim);

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
 * prompt topics and adapter names.  *out is in a (*n features).
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

#endif
