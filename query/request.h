/*
 * request.h - the body of POST /v1/compose, parsed and checked.
 *
 * Body: one JSON object, at most COMPOSE_REQUEST_MAX_BODY bytes.
 *
 *   key               type    required  range / values              default
 *   prompt            string  yes       1..2000 bytes               -
 *   base_model        string  no        base model name, <= 64 B    NULL (any)
 *   n_images          int     no        1..16                       1
 *   k                 int     no        1..1000                     150
 *   allow_nsfw        bool    no                                    false
 *   allow_characters  bool    no                                    false
 *   format            string  no        json|a1111|comfyui|diffusers NULL (all forms)
 *   min_rating        number  no        0..5 (0: no rating rule)     4.25
 *   blocked           [string] no       adapter ids never to return, none
 *                                       <= 512 ids of 1..255 bytes
 *
 * A key whose value is null counts as absent, as does an empty base_model.
 * Unknown keys are ignored (forward compatible); a key given twice is
 * malformed.  base_model is a normalized name (sd15, sd21, sdxl, pony,
 * illustrious, noobai, flux1, sd3, other; any case) or a published one that
 * st_base_model_normalize() knows ("SDXL 1.0"); the request holds the
 * normalized name.  Any other name is ST_EINVAL: it would match no adapter.
 *
 * Errors, each with the field named in err:
 *   ST_ETOOBIG   body over the limit, prompt or base_model too long, too many
 *                blocked ids
 *   ST_EPARSE    not JSON, or a key given twice
 *   ST_ETRUNC    JSON that ends early
 *   ST_ETYPE     body not an object, a field of the wrong type (n_images 2.0
 *                is not an int)
 *   ST_EMISSING  no prompt
 *   ST_EINVAL    a number out of range, an empty prompt, an unknown format
 *                or base model
 *   ST_ENOMEM    the arena is full
 *
 * Thread rules: none; the parser keeps no state.
 */
#ifndef STYLUS_QUERY_REQUEST_H
#define STYLUS_QUERY_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/errors.h"

#define COMPOSE_REQUEST_MAX_BODY       (64u << 10)
#define COMPOSE_REQUEST_MAX_PROMPT     2000
#define COMPOSE_REQUEST_MAX_BASE_MODEL 64
#define COMPOSE_REQUEST_MAX_IMAGES     16
#define COMPOSE_REQUEST_MAX_K          1000
#define COMPOSE_REQUEST_DEFAULT_K      150
#define COMPOSE_REQUEST_MAX_BLOCKED    512
#define COMPOSE_REQUEST_MAX_ID         255 /* bytes of an adapter id */

struct compose_request {
        const char *prompt;     /* in the arena, NUL-free, never NULL after success */
        const char *base_model; /* static normalized name ("sdxl"); NULL = any */
        int n_images;           /* 1..16 */
        int k;                  /* candidates to retrieve, 1..1000 */
        bool allow_nsfw;
        bool allow_characters;
        const char *format;   /* static "json", "a1111", "comfyui", "diffusers", or NULL */
        double min_rating;    /* 0..5, or -1 when not given (the composer's default) */
        const char **blocked; /* n_blocked ids in the arena, none retrieved or composed */
        size_t n_blocked;
};

/*
 * Parse len bytes of body (need not be NUL-terminated) into *req; strings are
 * copied into a.  On error *req is unspecified.
 */
int compose_request_parse(const char *body, size_t len, struct arena *a,
                          struct compose_request *req, struct st_error *err);

#endif
