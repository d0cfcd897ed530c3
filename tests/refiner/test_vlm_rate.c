/*
 * test_vlm_rate.c - the token bucket of the VLM endpoint, on a clock the
 * test moves by hand: a full start, waits that pay off a debt, refills capped
 * at a full bucket, a request bigger than the bucket, and no limit at all.
 */
#include <stdio.h>

#include "refiner/vlm_rate.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

/* Rates of 1 and 0.5 tokens a millisecond keep the arithmetic exact in binary. */
static void test_bucket(void)
{
        struct vlm_rate r;

        vlm_rate_init(&r, 60000, 1000); /* 1 token a millisecond */
        CHECK(vlm_rate_wait_ms(&r, 50000, 1000) == 0);
        vlm_rate_charge(&r, 55000, 1000); /* 5000 left */
        CHECK(vlm_rate_wait_ms(&r, 5000, 1000) == 0);
        CHECK(vlm_rate_wait_ms(&r, 15000, 1000) == 10000); /* 10000 short */
        CHECK(vlm_rate_wait_ms(&r, 15000, 6000) == 5000);  /* half of it refilled */
        vlm_rate_charge(&r, 30000, 6000);                  /* 10000 - 30000: a debt */
        CHECK(vlm_rate_wait_ms(&r, 1000, 6000) == 21000);
        CHECK(vlm_rate_wait_ms(&r, 1000, 27000) == 0);
        /* refill stops at a full bucket */
        CHECK(vlm_rate_wait_ms(&r, 60000, 10000000) == 0);
        vlm_rate_charge(&r, 60000, 10000000);
        CHECK(vlm_rate_wait_ms(&r, 60000, 10000000) == 60000);
}

static void test_big_request(void)
{
        struct vlm_rate r;

        /* a request over the bucket waits for a full bucket, not forever */
        vlm_rate_init(&r, 30000, 0); /* 0.5 a millisecond */
        CHECK(vlm_rate_wait_ms(&r, 1000000, 0) == 0);
        vlm_rate_charge(&r, 1000000, 0); /* a debt of 970000 */
        CHECK(vlm_rate_wait_ms(&r, 1000000, 0) == (970000 + 30000) * 2);
}

static void test_no_limit(void)
{
        struct vlm_rate r;

        vlm_rate_init(&r, 0, 0);
        vlm_rate_charge(&r, 1000000, 0);
        CHECK(vlm_rate_wait_ms(&r, 1000000, 0) == 0);
}

int main(void)
{
        test_bucket();
        test_big_request();
        test_no_limit();
        if (failures)
                fprintf(stderr, "%d checks failed\n", failures);
        return failures ? 1 : 0;
}
