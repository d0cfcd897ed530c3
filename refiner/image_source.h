/*
 * image_source.h - where the refiner gets the bytes of a record's example
 * images.  Today it downloads each image's url; once the crawler keeps
 * images in a content-addressed store (by st_image.sha256), this is the one
 * function that changes.
 *
 * Rules: only http and https URLs (redirects followed, at most
 * VLM_HTTP_MAX_REDIRECTS, http(s) only); the response must be 2xx with a
 * raster image Content-Type (image/png, image/jpeg, image/webp, image/gif;
 * SVG, video and everything else is skipped: VLM APIs refuse them); at most
 * IMAGE_SOURCE_MAX_BYTES bytes, larger images are skipped like the paper's
 * OpenAI path skips images of 2 MB or more.  A skipped image is not an
 * error of the job: its slot says why, and the refiner goes on without it.
 *
 * Thread rules: those of the vlm_http passed in.
 */
#ifndef STYLUS_REFINER_IMAGE_SOURCE_H
#define STYLUS_REFINER_IMAGE_SOURCE_H

#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/vlm_http.h"

#define IMAGE_SOURCE_MAX_BYTES ((size_t)2 << 20)

/* One image's bytes, or why there are none. */
struct image_bytes {
        struct st_error error;     /* code 0: data holds the image; else why it was skipped */
        const char *media_type;    /* "image/png" ..., lowercase, no parameters; in the arena */
        const unsigned char *data; /* len bytes in the arena */
        size_t len;
};

/*
 * Get the bytes of images[0..n) into out[0..n), at most concurrency
 * downloads at a time, each within timeout_ms; the bytes are copied into a.
 * Per-image failures are in out[i].error: ST_EINVAL (no URL, not http(s)),
 * ST_EHTTP (a status other than 2xx), ST_EPROTO (not a raster image),
 * ST_ETOOBIG (over IMAGE_SOURCE_MAX_BYTES), ST_ENET, ST_ETIMEOUT, ST_ETRUNC.
 * Returns 0, or ST_ENOMEM (malloc or the arena) / ST_EIO when the batch
 * itself broke down.
 */
int image_source_get(struct vlm_http *http, const struct st_image *images, size_t n,
                     unsigned concurrency, long timeout_ms, struct arena *a,
                     struct image_bytes *out);

#endif
