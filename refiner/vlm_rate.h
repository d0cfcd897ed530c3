/*
 * vlm_rate.h - a token-rate limit for the VLM endpoint: at most
 * tokens_per_min model tokens a minute from one refiner worker.
 *
 * A token bucket: it holds up to tokens_per_min tokens and refills
 * continuously at tokens_per_min a minute.  Before a request, the caller
 * asks how long to wait until the bucket holds the request's estimated
 * tokens (at most a full bucket, so one big request is never blocked
 * forever); after the answer it charges the tokens the server says were
 * used (usage.total), which may take the bucket below zero, so the next
 * request waits off the debt.  Time is passed in (milliseconds of a
 * monotonic clock), which keeps the object pure and its tests exact.
 *
 * Thread rules: one owner thread; no allocation.
 */
#ifndef STYLUS_REFINER_VLM_RATE_H
#define STYLUS_REFINER_VLM_RATE_H

#include <stdint.h>

struct vlm_rate {
        double per_ms;   /* refill, tokens per millisecond; 0 = no limit */
        double capacity; /* tokens_per_min */
        double balance;  /* tokens available now; negative after an overrun */
        int64_t last_ms; /* clock of the last refill */
};

/* Start full at now_ms; tokens_per_min 0 means no limit. */
void vlm_rate_init(struct vlm_rate *r, uint64_t tokens_per_min, int64_t now_ms);

/* Milliseconds to wait at now_ms before a request of need tokens may start; 0 = go. */
int64_t vlm_rate_wait_ms(struct vlm_rate *r, uint64_t need, int64_t now_ms);

/* Take used tokens out of the bucket at now_ms. */
void vlm_rate_charge(struct vlm_rate *r, uint64_t used, int64_t now_ms);

#endif
