/*
 * fuzz_compose_request.c - compose_request_parse() on arbitrary bytes: it
 * must return 0 or a negative ST_E* code, never crash or leak, and on
 * success hand back a request inside its documented ranges.
 */
#include "query/request.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct compose_request req;
        struct st_error err = {0};
        struct arena a;
        int rc;

        arena_init(&a, 1u << 20);
        rc = compose_request_parse((const char *)data, size, &a, &req, &err);
        if (rc > 0)
                abort();
        if (rc == 0 &&
            (!req.prompt || !req.prompt[0] || strlen(req.prompt) > COMPOSE_REQUEST_MAX_PROMPT ||
             req.n_images < 1 || req.n_images > COMPOSE_REQUEST_MAX_IMAGES || req.k < 1 ||
             req.k > COMPOSE_REQUEST_MAX_K))
                abort();
        arena_release(&a);
        return 0;
}
