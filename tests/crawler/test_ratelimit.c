/*
 * test_ratelimit.c - the RateLimit / RateLimit-Policy reader (ratelimit.h):
 * the Hub's own headers, the draft's spelling variants, several policies,
 * and garbage, which must never give a number that was not written.
 */
#include "crawler/ratelimit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        exit(1);                                                                   \
                }                                                                                  \
        } while (0)

/* Parse two C strings (either may be NULL) and compare with the four expected values. */
static void expect(const char *limit, const char *policy, int rc, long r, long t, long q, long w)
{
        struct ratelimit rl;
        int got = ratelimit_parse(limit, limit ? strlen(limit) : 0, policy,
                                  policy ? strlen(policy) : 0, &rl);

        if (got != rc || rl.remaining != r || rl.reset_s != t || rl.quota != q ||
            rl.window_s != w) {
                fprintf(stderr,
                        "RateLimit: %s / RateLimit-Policy: %s\n  got rc %d r %ld t %ld q %ld w %ld,"
                        " want rc %d r %ld t %ld q %ld w %ld\n",
                        limit ? limit : "(none)", policy ? policy : "(none)", got, rl.remaining,
                        rl.reset_s, rl.quota, rl.window_s, rc, r, t, q, w);
                exit(1);
        }
}

static void test_hub_headers(void)
{
        /* As documented in hub-docs rate-limits.md. */
        expect("\"api\";r=489;t=189", "\"fixed window\";\"api\";q=500;w=300", 0, 489, 189, 500,
               300);
        expect("\"api\";r=0;t=12", "\"fixed window\";\"api\";q=1000;w=300", 0, 0, 12, 1000, 300);
        /* The resolvers window has its own name. */
        expect("\"resolvers\";r=2999;t=299", "\"fixed window\";\"resolvers\";q=3000;w=300", 0, 2999,
               299, 3000, 300);
        /* Only one of the two headers. */
        expect("\"api\";r=5;t=1", NULL, 0, 5, 1, -1, -1);
        expect(NULL, "\"fixed window\";\"api\";q=500;w=300", ST_EPARSE, -1, -1, 500, 300);
        expect(NULL, NULL, ST_EPARSE, -1, -1, -1, -1);
}

static void test_spelling_variants(void)
{
        /* Spaces and tabs around everything, upper-case keys, quoted numbers. */
        expect("  \"api\" ; r = 7 ;\tt=3  ", " \"api\" ; Q=\"50\" ; W = 60", 0, 7, 3, 50, 60);
        expect("\"api\";R=\"7\";T=\"3\"", NULL, 0, 7, 3, -1, -1);
        /* Token names and no name at all. */
        expect("api;r=7;t=3", "api;q=10;w=60", 0, 7, 3, 10, 60);
        expect("r=7;t=3", "q=10;w=60", 0, 7, 3, 10, 60);
        /* A fraction: r and q round down, t and w up (waiting longer is the safe side). */
        expect("\"api\";r=7.9;t=2.1", "\"api\";q=10.5;w=59.5", 0, 7, 3, 10, 60);
        expect("\"api\";r=7.0;t=2.000", NULL, 0, 7, 2, -1, -1);
        /* Unknown parameters (the draft's pk partition key) and order do not matter. */
        expect("\"api\";t=30;pk=:cHJvZ3JhbW1lcg==:;r=4", NULL, 0, 4, 30, -1, -1);
        /* A comma inside a quoted name does not split. */
        expect("\"a, b\";r=4;t=5", "\"a, b\";q=8;w=9", 0, 4, 5, 8, 9);
        /* An escaped quote inside a name. */
        expect("\"a\\\"b\";r=4;t=5", "\"a\\\"b\";q=8;w=9", 0, 4, 5, 8, 9);
}

static void test_several_policies(void)
{
        /* The tightest window wins, with the quota of the policy of the same name. */
        expect("\"api\";r=400;t=100, \"resolvers\";r=3;t=40",
               "\"fixed window\";\"api\";q=500;w=300, \"fixed window\";\"resolvers\";q=3000;w=300",
               0, 3, 40, 3000, 300);
        expect("\"api\";r=4;t=100, \"resolvers\";r=300;t=40",
               "\"resolvers\";q=3000;w=300, \"api\";q=500;w=300", 0, 4, 100, 500, 300);
        /* No policy of that name: the first one with a quota. */
        expect("\"other\";r=4;t=10", "\"x\";w=5, \"api\";q=500;w=300", 0, 4, 10, 500, 300);
        /* Empty members are skipped. */
        expect(",,\"api\";r=4;t=10,,", ",", 0, 4, 10, -1, -1);
}

static void test_garbage(void)
{
        char many[2048] = "";

        /* Nothing that is not a plain count survives: negative, empty, letters, exponents. */
        expect("\"api\";r=-1;t=-5", NULL, ST_EPARSE, -1, -1, -1, -1);
        expect("\"api\";r=;t=", NULL, ST_EPARSE, -1, -1, -1, -1);
        expect("\"api\";r=abc;t=1e3", NULL, ST_EPARSE, -1, -1, -1, -1);
        expect("\"api\";r=5x;t=0x10", NULL, ST_EPARSE, -1, -1, -1, -1);
        expect("\"api\";r=\"5;t=1", NULL, ST_EPARSE, -1, -1, -1, -1);
        /* Over RATELIMIT_MAX_VALUE. */
        expect("\"api\";r=99999999999999999999999;t=1", "q=1000000001;w=3", ST_EPARSE, -1, -1, -1,
               -1);
        /* An unclosed quote ends the header; what came before it stands. */
        expect("\"api\";r=5;t=1, \"x;r=0;t=9", NULL, 0, 5, 1, -1, -1);
        expect("\"api;r=5;t=1", NULL, ST_EPARSE, -1, -1, -1, -1);
        /* Bytes that are no syntax at all are skipped. */
        expect("\x01\xff;r=3;t=4", NULL, 0, 3, 4, -1, -1);
        expect(";;;===;;,,==", "=;=,\"\"", ST_EPARSE, -1, -1, -1, -1);
        expect("\"api\";r==3;t=4", NULL, ST_EPARSE, -1, -1, -1, -1); /* t without r: no window */
        /* A policy name longer than RATELIMIT_MAX_NAME is cut, and still matches itself. */
        expect("\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";r="
               "1;t=2",
               "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";q="
               "9;w=8",
               0, 1, 2, 9, 8);
        /* Only the first RATELIMIT_MAX_MEMBERS members are read. */
        for (int i = 0; i < 40; i++)
                strcat(many, i == 30 ? "r=1;t=1," : "r=50;t=9,");
        expect(many, NULL, 0, 50, 9, -1, -1);
}

static void test_is_low(void)
{
        struct ratelimit rl;

        ratelimit_init(&rl);
        CHECK(!ratelimit_is_low(&rl, 500, 2)); /* nothing known */
        rl.remaining = 2;
        CHECK(ratelimit_is_low(&rl, -1, 2)); /* at the margin */
        rl.remaining = 3;
        CHECK(!ratelimit_is_low(&rl, -1, 2));
        rl.remaining = 25;
        CHECK(ratelimit_is_low(&rl, 500, 2)); /* 5% of a remembered quota */
        rl.remaining = 26;
        CHECK(!ratelimit_is_low(&rl, 500, 2));
        rl.remaining = 40;
        CHECK(!ratelimit_is_low(&rl, 500, 2));
        rl.quota = 1000; /* the response's own quota wins over the remembered one */
        CHECK(ratelimit_is_low(&rl, 500, 2));
        rl.remaining = 51;
        CHECK(!ratelimit_is_low(&rl, 500, 2));
        rl.remaining = 0;
        rl.quota = 0;
        CHECK(ratelimit_is_low(&rl, -1, 0));
}

int main(void)
{
        test_hub_headers();
        test_spelling_variants();
        test_several_policies();
        test_garbage();
        test_is_low();
        printf("test_ratelimit: ok\n");
        return 0;
}
