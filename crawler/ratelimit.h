/*
 * ratelimit.h - the IETF draft RateLimit headers
 * (draft-ietf-httpapi-ratelimit-headers), as the Hugging Face Hub sends them
 * (hub-docs docs/hub/rate-limits.md):
 *
 *   RateLimit: "api";r=<remaining>;t=<seconds until the window resets>
 *   RateLimit-Policy: "fixed window";"api";q=<quota>;w=<window seconds>
 *
 * Grammar accepted (tolerant: the Hub's policy header is not valid
 * Structured Fields syntax, and proxies reformat headers):
 *   header  = member *( "," member )           commas inside quotes do not split
 *   member  = piece *( ";" piece )             optional spaces and tabs anywhere
 *   piece   = quoted-string                    a policy name ("api"); the last
 *                                              one in a member names it
 *           / key "=" number                   key r, t, q or w (any case); number
 *                                              is digits, optionally quoted and
 *                                              with a fraction (r and q are
 *                                              rounded down, t and w up); it
 *                                              must end the piece: "1e3" is
 *                                              garbage, not 1
 *           / anything else                    ignored (unknown keys, tokens,
 *                                              unclosed quotes end the member)
 * Numbers above RATELIMIT_MAX_VALUE are ignored.  When RateLimit lists
 * several policies, the one with the fewest requests remaining is taken;
 * the quota is the RateLimit-Policy member of the same name, else the first
 * member that has a q.  At most RATELIMIT_MAX_MEMBERS members are read.
 *
 * Thread rules: pure functions, callable from any thread.
 */
#ifndef STYLUS_CRAWLER_RATELIMIT_H
#define STYLUS_CRAWLER_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/errors.h"

#define RATELIMIT_MAX_VALUE   1000000000L /* larger numbers are garbage */
#define RATELIMIT_MAX_MEMBERS 16
#define RATELIMIT_MAX_NAME    64 /* bytes of a policy name compared; longer names are cut */

/* What the two headers of one response said; -1 for anything they did not. */
struct ratelimit {
        long remaining; /* r: requests left in the current window */
        long reset_s;   /* t: seconds until the window resets */
        long quota;     /* q: requests allowed per window */
        long window_s;  /* w: length of the window in seconds */
};

/* Every field -1. */
void ratelimit_init(struct ratelimit *rl);

/*
 * Parse the RateLimit value (limit, limit_len bytes, may be NULL) and the
 * RateLimit-Policy value (policy, may be NULL) of one response into *out
 * (ratelimit_init first).  Returns 0 when remaining and reset_s were both
 * found, else ST_EPARSE; *out holds whatever was found either way (a
 * quota alone is worth remembering).  Never reads past the given lengths.
 */
int ratelimit_parse(const char *limit, size_t limit_len, const char *policy, size_t policy_len,
                    struct ratelimit *out);

/*
 * Is the window nearly used up: remaining <= margin, or remaining at most
 * 5% of the quota (quota from rl, else known_quota; either may be -1)?
 * False when remaining is unknown.
 */
bool ratelimit_is_low(const struct ratelimit *rl, long known_quota, long margin);

#endif
