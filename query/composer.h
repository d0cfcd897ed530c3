/*
 * composer.h - the built-in rule composer: for a prompt and the top-K
 * candidate adapters from the shards, choose which adapters to apply, at
 * which weight, on which image (Stylus paper sections 4 and 5, done by rules
 * instead of an LLM).  Every step and formula is described at the top of
 * composer.c; every chosen adapter carries a reason saying why it was chosen.
 *
 * The LLM composer (query/composer_llm.h) chooses by other means but shares
 * the filters (composer_eligible) and the limits, weights and masks
 * (composer_assemble), so both answer in the same composer_result.
 *
 * Usage:
 *
 *	struct composer_options opt;
 *	struct composer_result res;
 *
 *	composer_options_default(&opt);
 *	opt.base_model = "sdxl";
 *	rc = composer_run(prompt, candidates, n, &opt, &embedder, &arena, &res, &err);
 *
 * Ownership: everything in a composer_result lives in the arena passed to
 * composer_run() and is valid until arena_release(); doc pointers are
 * borrowed from the candidates, which must outlive the result.
 *
 * Thread rules: composer_run() keeps no state; it may run on any thread with
 * its own arena.  The embedder may be shared.
 */
#ifndef STYLUS_QUERY_COMPOSER_H
#define STYLUS_QUERY_COMPOSER_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/embed.h"
#include "proto/errors.h"

#define COMPOSER_MAX_PROMPT         2000 /* bytes; longer is ST_ETOOBIG */
#define COMPOSER_MAX_CANDIDATES     1000 /* more is ST_ETOOBIG */
#define COMPOSER_MAX_TOPICS         32   /* prompt pieces after the 32nd are ignored */
#define COMPOSER_MAX_IMAGES         16
#define COMPOSER_MAX_PER_TOPIC      8     /* upper bound of max_per_topic */
#define COMPOSER_DEFAULT_MIN_RATING 4.25f /* of 5: over 15% thumbs down */
#define COMPOSER_MIN_LIKES          10    /* likes before a rating counts */

/* One retrieved adapter; candidates come sorted by score, best first. */
struct composer_candidate {
        const struct st_doc *doc; /* borrowed, never NULL */
        float score;              /* retrieval cosine of prompt and doc, -1..1 */
};

struct composer_options {
        const char
            *base_model;       /* normalized ("sdxl"); only docs with this exact base; NULL = any */
        int n_images;          /* 1..COMPOSER_MAX_IMAGES, default 1 */
        bool allow_nsfw;       /* default false */
        bool allow_characters; /* character/celebrity adapters even when not named; default false */
        int max_per_topic;     /* 0..COMPOSER_MAX_PER_TOPIC adapters per topic, default 3 */
        int max_style;         /* style adapters over all topics, >= 0, default 2 */
        float min_score;       /* lowest blended score an adapter may have, default 0.25 */
        float min_rating;      /* 0..5; rated lower (and liked by enough) is left out;
                                  0: no rule; default COMPOSER_DEFAULT_MIN_RATING */
};

struct composer_topic {
        const char *text; /* words of the prompt, as the user wrote them */
        size_t *adapters; /* indexes into composer_result.adapters, best first */
        size_t n_adapters;
};

struct composer_adapter {
        const struct st_doc *doc; /* borrowed from the candidate */
        size_t topic;             /* index into composer_result.topics */
        double weight;            /* on image 0, where every adapter is active; 2 decimals */
        float score;              /* blended score that chose it (composer.c, step c) */
        const char *reason;       /* "matches topic 'corgi' (0.71: topic 0.82, ...)" */
};

/* Why candidates were left out: one count per rule, for the response. */
struct composer_excluded {
        size_t base_model;  /* base model differs from the requested one */
        size_t nsfw;        /* NSFW and allow_nsfw unset */
        size_t character;   /* character/celebrity not named in the prompt */
        size_t no_files;    /* nothing to download */
        size_t low_rating;  /* rated under min_rating by enough people */
        size_t duplicate;   /* same model or same file as a better candidate */
        size_t weak_match;  /* no topic matched well enough */
        size_t topic_full;  /* its topic already had max_per_topic adapters */
        size_t style_limit; /* max_style style adapters already chosen */
};

struct composer_result {
        const char *composer;   /* "rules", or the LLM composer's model name */
        const char *fallback;   /* why the LLM composer fell back to rules; NULL when it did not */
        const char *base_model; /* the requested one, or chosen from the candidates (step a) */
        struct composer_topic *topics;
        size_t n_topics;
        struct composer_adapter *adapters; /* grouped by topic, in topic order */
        size_t n_adapters;
        size_t n_images;
        /*
         * Row-major n_images x n_adapters: masks[i * n_adapters + j] says
         * whether adapter j is applied on image i, weights[...] at which weight
         * (0 where masked off).  NULL when n_adapters == 0.
         */
        bool *masks;
        double *weights;
        struct composer_excluded excluded;
};

/* Fill o with the defaults documented in struct composer_options. */
void composer_options_default(struct composer_options *o);

/*
 * Choose adapters for prompt from the n candidates c.  On success *out holds
 * the result (possibly with no topics or no adapters: zero candidates is not
 * an error).  Errors:
 *   ST_ETOOBIG  prompt over COMPOSER_MAX_PROMPT bytes, n over COMPOSER_MAX_CANDIDATES
 *   ST_EINVAL   an option out of range, a candidate without doc
 *   ST_ENOMEM   the arena is full
 *   any error of embedder_embed()
 * On error *out is unspecified and err says why.
 */
int composer_run(const char *prompt, const struct composer_candidate *c, size_t n,
                 const struct composer_options *opt, const struct embedder *e, struct arena *a,
                 struct composer_result *out, struct st_error *err);

/* One adapter a composer chose for a topic, before limits, weights and masks. */
struct composer_choice {
        size_t cand;        /* index into the candidates */
        size_t topic;       /* index into composer_result.topics */
        float score;        /* becomes composer_adapter.score */
        const char *reason; /* becomes composer_adapter.reason; borrowed, must outlive the result */
};

/*
 * Step (a) for any composer: check the input as composer_run() does and
 * filter the candidates.  *keep (in a) gets the indexes of the n_keep
 * eligible candidates, in retrieval order.  r gets base_model (the
 * requested one or the one step (a) picks), n_images and the exclusion
 * counts; nothing else of r is touched, so zero it first.  Errors: those of
 * composer_run() but the embedder's.
 */
int composer_eligible(const char *prompt, const struct composer_candidate *c, size_t n,
                      const struct composer_options *opt, struct arena *a, size_t **keep,
                      size_t *n_keep, struct composer_result *r, struct st_error *err);

/*
 * Steps (d)'s limits, (e) and (f) for choices[0..n_choices), most wanted
 * first: a choice is dropped, and counted in r->excluded, when the same
 * model or file was taken before it, its topic already has max_per_topic
 * adapters, or it is a style adapter and max_style were taken.  The others
 * fill r->adapters grouped by topic (topic order, then choice order) and
 * r->topics[t].adapters, and r->masks and r->weights per the paper.  r must
 * hold topics, n_topics, n_images (composer_eligible) beforehand.  Errors:
 * ST_EINVAL (a choice's topic out of range), ST_ENOMEM.
 */
int composer_assemble(const char *prompt, const struct composer_candidate *c,
                      const struct composer_choice *choices, size_t n_choices,
                      const struct composer_options *opt, struct arena *a,
                      struct composer_result *r, struct st_error *err);

/*
 * The file a user downloads for doc: the first ".safetensors" file, else the
 * first file; NULL when the doc has none.
 */
const struct st_file *composer_primary_file(const struct st_doc *doc);

#endif
