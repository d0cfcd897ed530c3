/*
 * ratelimit.c - a tolerant reader of the RateLimit and RateLimit-Policy
 * headers; the grammar is at the top of ratelimit.h.
 */
#include "crawler/ratelimit.h"

#include <string.h>
#include <strings.h>

#define LOW_PERCENT 5 /* remaining at most this share of the quota is low */

/* One comma-separated member of a header: a policy and its parameters. */
struct member {
        char name[RATELIMIT_MAX_NAME + 1]; /* last quoted string of the member, cut */
        bool has_name;
        long r, t, q, w; /* -1 when absent */
};

/* The part of a header value still to read. */
struct cursor {
        const char *p;
        const char *end;
};

static bool at_end(const struct cursor *c)
{
        return c->p >= c->end;
}

static void skip_space(struct cursor *c)
{
        while (!at_end(c) && (*c->p == ' ' || *c->p == '\t'))
                c->p++;
}

/*
 * A quoted string at c->p (on the opening quote) into name, cut to fit;
 * backslash escapes the next byte.  False when it never closes.
 */
static bool read_quoted(struct cursor *c, struct member *m)
{
        size_t n = 0;

        c->p++;
        while (!at_end(c) && *c->p != '"') {
                if (*c->p == '\\' && c->p + 1 < c->end)
                        c->p++;
                if (n < RATELIMIT_MAX_NAME)
                        m->name[n++] = *c->p;
                c->p++;
        }
        if (at_end(c))
                return false;
        c->p++;
        m->name[n] = '\0';
        m->has_name = true;
        return true;
}

/*
 * A number: digits, an optional fraction, optionally in quotes.  The
 * fraction rounds up when round_up.  False (nothing usable) for no digits,
 * a value over RATELIMIT_MAX_VALUE or an unclosed quote.
 */
static bool read_number(struct cursor *c, bool round_up, long *out)
{
        bool quoted = !at_end(c) && *c->p == '"', big = false, fraction = false;
        const char *digits;
        long v = 0;

        if (quoted)
                c->p++;
        digits = c->p;
        for (; !at_end(c) && *c->p >= '0' && *c->p <= '9'; c->p++) {
                v = v * 10 + (*c->p - '0');
                if (v > RATELIMIT_MAX_VALUE) {
                        big = true;
                        v = RATELIMIT_MAX_VALUE;
                }
        }
        if (c->p == digits)
                return false;
        if (!at_end(c) && *c->p == '.') {
                for (c->p++; !at_end(c) && *c->p >= '0' && *c->p <= '9'; c->p++)
                        fraction = fraction || *c->p != '0';
        }
        if (quoted) {
                if (at_end(c) || *c->p != '"')
                        return false;
                c->p++;
        }
        if (fraction && round_up)
                v++;
        *out = v;
        return !big && v <= RATELIMIT_MAX_VALUE;
}

/* The field of m that key names (r, t, q, w in any case), or NULL. */
static long *field(struct member *m, const char *key, size_t len, bool *round_up)
{
        if (len != 1)
                return NULL;
        switch (*key) {
        case 'r':
        case 'R':
                *round_up = false;
                return &m->r;
        case 't':
        case 'T':
                *round_up = true;
                return &m->t;
        case 'q':
        case 'Q':
                *round_up = false;
                return &m->q;
        case 'w':
        case 'W':
                *round_up = true;
                return &m->w;
        default:
                return NULL;
        }
}

/* A key=number parameter; unknown keys and bad numbers are left alone. */
static void read_parameter(struct cursor *c, struct member *m)
{
        const char *key = c->p;
        size_t len;
        bool round_up = false;
        long *slot, v;

        while (!at_end(c) && *c->p != '=' && *c->p != ';' && *c->p != ',' && *c->p != ' ' &&
               *c->p != '\t' && *c->p != '"')
                c->p++;
        len = (size_t)(c->p - key);
        skip_space(c);
        if (at_end(c) || *c->p != '=')
                return;
        c->p++;
        skip_space(c);
        slot = field(m, key, len, &round_up);
        if (!read_number(c, round_up, &v))
                return;
        skip_space(c);
        /* "1e3", "5x": a number must end the parameter, or it is not the number meant. */
        if (slot && (at_end(c) || *c->p == ';' || *c->p == ','))
                *slot = v;
}

/* Skip to the next ';' or ',' outside quotes; false when a quote never closes. */
static bool skip_garbage(struct cursor *c)
{
        bool quoted = false;

        for (; !at_end(c); c->p++) {
                if (*c->p == '"')
                        quoted = !quoted;
                else if (!quoted && (*c->p == ';' || *c->p == ','))
                        return true;
        }
        return !quoted;
}

/*
 * Read one member up to its ',' (consumed) or the end of the value.  False
 * when the member is garbage past repair (an unclosed quote): nothing
 * after it can be trusted either.
 */
static bool read_member(struct cursor *c, struct member *m)
{
        memset(m, 0, sizeof(*m));
        m->r = m->t = m->q = m->w = -1;
        for (;;) {
                skip_space(c);
                if (at_end(c))
                        return true;
                if (*c->p == ',') {
                        c->p++;
                        return true;
                }
                if (*c->p == ';') {
                        c->p++;
                        continue;
                }
                if (*c->p == '"') {
                        if (!read_quoted(c, m))
                                return false;
                } else {
                        read_parameter(c, m);
                }
                if (!skip_garbage(c))
                        return false;
        }
}

/* Members of a header value, at most max; returns how many were read. */
static size_t read_members(const char *v, size_t len, struct member *m, size_t max)
{
        struct cursor c = {v, v + len};
        size_t n = 0;

        if (!v)
                return 0;
        while (!at_end(&c) && n < max) {
                if (!read_member(&c, &m[n]))
                        break;
                n++;
        }
        return n;
}

/* The RateLimit member with the fewest requests remaining, or NULL. */
static const struct member *tightest(const struct member *m, size_t n)
{
        const struct member *best = NULL;

        for (size_t i = 0; i < n; i++)
                if (m[i].r >= 0 && (!best || m[i].r < best->r))
                        best = &m[i];
        return best;
}

/* The policy member of the same name as limit, else the first with a quota, or NULL. */
static const struct member *policy_for(const struct member *limit, const struct member *m, size_t n)
{
        const struct member *first = NULL;

        for (size_t i = 0; i < n; i++) {
                if (m[i].q < 0)
                        continue;
                if (limit && limit->has_name && m[i].has_name &&
                    strcmp(limit->name, m[i].name) == 0)
                        return &m[i];
                if (!first)
                        first = &m[i];
        }
        return first;
}

void ratelimit_init(struct ratelimit *rl)
{
        rl->remaining = rl->reset_s = rl->quota = rl->window_s = -1;
}

int ratelimit_parse(const char *limit, size_t limit_len, const char *policy, size_t policy_len,
                    struct ratelimit *out)
{
        struct member limits[RATELIMIT_MAX_MEMBERS], policies[RATELIMIT_MAX_MEMBERS];
        size_t n_limits = read_members(limit, limit_len, limits, RATELIMIT_MAX_MEMBERS);
        size_t n_policies = read_members(policy, policy_len, policies, RATELIMIT_MAX_MEMBERS);
        const struct member *l = tightest(limits, n_limits);
        const struct member *p = policy_for(l, policies, n_policies);

        ratelimit_init(out);
        if (l) {
                out->remaining = l->r;
                out->reset_s = l->t;
        }
        if (p) {
                out->quota = p->q;
                out->window_s = p->w;
        }
        return out->remaining >= 0 && out->reset_s >= 0 ? 0 : ST_EPARSE;
}

bool ratelimit_is_low(const struct ratelimit *rl, long known_quota, long margin)
{
        long quota = rl->quota >= 0 ? rl->quota : known_quota;

        if (rl->remaining < 0)
                return false;
        if (rl->remaining <= margin)
                return true;
        return quota > 0 && (long long)rl->remaining * 100 <= (long long)quota * LOW_PERCENT;
}
