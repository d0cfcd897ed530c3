/*
 * fanout.h - the query node's retrieval: send one QUERY (proto/wire.h) to a
 * replica of every shard, wait for the HITS up to a deadline, fail over to
 * the shard's next replica when one does not answer, and merge the hits into
 * one ranked candidate list.  When a shard has no live replica the answer is
 * partial: coverage says what fraction of the shards answered.
 *
 * Thread rules: one thread at a time uses a fanout and its sockets; it may
 * be created in one thread and handed to another before first use.
 */
#ifndef STYLUS_FANOUT_H
#define STYLUS_FANOUT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "proto/security.h"
#include "query/composer.h"

#define FANOUT_MAX_SHARDS   64
#define FANOUT_MAX_REPLICAS 8

struct fanout;

/*
 * shards[i] is a comma-separated list of replica endpoints of shard i,
 * e.g. "tcp://10.0.0.1:5600,tcp://10.0.0.2:5600".  sec gives the CURVE keys
 * (proto/security.h); endpoints beyond loopback need them.  sec is
 * borrowed: keep it until fanout_destroy().
 */
int fanout_new(const char *const *shards, size_t n_shards, long deadline_ms,
               const struct security *sec, struct fanout **out, struct st_error *err);
void fanout_destroy(struct fanout **f);

struct fanout_query {
        const float *vector; /* dim floats */
        int dim;
        const char *model;      /* embedding model; shards refuse another */
        size_t k;               /* candidates wanted */
        const char *base_model; /* normalized filter or NULL */
        bool allow_nsfw;
        const char *const *blocked; /* doc ids never to return (n_blocked of them) */
        size_t n_blocked;
};

/*
 * Retrieve the best k candidates.  Docs are decoded into a; *cand is an
 * arena array sorted by score, best first.  *coverage is answered shards ÷
 * shards.  ST_EAGAIN when no shard answered; ST_EDIM when a shard refuses
 * the query: for an embedding model mismatch err names both models (the
 * shard's is asked with a STATUS request, up to 500 ms).
 */
int fanout_search(struct fanout *f, const struct fanout_query *q, struct arena *a,
                  struct composer_candidate **cand, size_t *n, double *coverage,
                  struct st_error *err);

/*
 * Look up one doc by id on every shard (the query node need not know which
 * shard owns it), decoded into *doc with its strings in a.  *coverage is
 * 1.0 when found, else answered shards / shards.  ST_ENOTFOUND when every
 * shard answered and none holds it, ST_EAGAIN when it is not on the shards
 * that answered but some did not.
 */
int fanout_get_doc(struct fanout *f, const char *id, struct arena *a, struct st_doc *doc,
                   double *coverage, struct st_error *err);

#endif
