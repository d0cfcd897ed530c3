/*
 * vlm_rate.c - the token bucket of vlm_rate.h.
 */
#include "refiner/vlm_rate.h"

#include <math.h>

void vlm_rate_init(struct vlm_rate *r, uint64_t tokens_per_min, int64_t now_ms)
{
        r->capacity = (double)tokens_per_min;
        r->per_ms = r->capacity / 60000.0;
        r->balance = r->capacity;
        r->last_ms = now_ms;
}

static void refill(struct vlm_rate *r, int64_t now_ms)
{
        if (now_ms > r->last_ms) {
                r->balance += (double)(now_ms - r->last_ms) * r->per_ms;
                if (r->balance > r->capacity)
                        r->balance = r->capacity;
        }
        r->last_ms = now_ms;
}

int64_t vlm_rate_wait_ms(struct vlm_rate *r, uint64_t need, int64_t now_ms)
{
        double want = (double)need;

        if (r->per_ms <= 0)
                return 0;
        refill(r, now_ms);
        if (want > r->capacity)
                want = r->capacity;
        if (r->balance >= want)
                return 0;
        return (int64_t)ceil((want - r->balance) / r->per_ms);
}

void vlm_rate_charge(struct vlm_rate *r, uint64_t used, int64_t now_ms)
{
        if (r->per_ms <= 0)
                return;
        refill(r, now_ms);
        r->balance -= (double)used;
}
