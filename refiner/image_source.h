/*
 * image_source.h - where the refiner gets the bytes of a record's example
 * images: from the image store (crawler/image_store.h) when one is
 * configured and holds the image's sha256, else by downloading its url.
 *
 * From the store: an image whose st_image.sha256 is set is read from the
 * store at DIR/sha256/<2 hex>/<sha256>.  The file counts only when it is
 * intact (its bytes hash to the sha256: always checked, a few ms per image,
 * so a shared or copied store can never feed the VLM wrong bytes) and a
 * raster image by its magic bytes, which also give its media type.  An
 * intact image over IMAGE_SOURCE_MAX_BYTES is skipped (ST_ETOOBIG) without
 * a download: the URL would give the same bytes.  Anything else (no
 * sha256, absent, corrupt, unreadable: a refiner on a machine without the
 * store, or before the images worker got to the record) falls back to the
 * download.
 *
 * Downloads: only http and https URLs (redirects followed, at most
 * VLM_HTTP_MAX_REDIRECTS, http(s) only); the response must be 2xx with a
 * raster image Content-Type (image/png, image/jpeg, image/webp, image/gif;
 * SVG, video and everything else is skipped: VLM APIs refuse them); at most
 * IMAGE_SOURCE_MAX_BYTES bytes, larger images are skipped like the paper's
 * OpenAI path skips images of 2 MB or more.  Unless allow_private is
 * configured, a download never connects to a private, loopback or
 * link-local address (vlm_http.h public_only).  A skipped image is not an
 * error of the job: its slot says why, and the refiner goes on without it.
 *
 * Configuration is process-wide, because the VLM refiner (vlm.c) calls
 * image_source_get() with its own HTTP client only:
 * image_source_configure() once at start, before the first
 * image_source_get() and before any thread that calls it is started;
 * image_source_shutdown() at exit, after the last.  Without
 * image_source_configure() there is no store and downloads may reach any
 * address (library users such as tests that serve images on loopback);
 * `stylus refiner` always configures.
 *
 * Thread rules: those of the vlm_http passed in; one thread at a time
 * calls image_source_get() (the counters are plain).
 */
#ifndef STYLUS_REFINER_IMAGE_SOURCE_H
#define STYLUS_REFINER_IMAGE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/vlm_http.h"

#define IMAGE_SOURCE_MAX_BYTES ((size_t)2 << 20)

struct image_source_config {
        const char *store_dir; /* image store to read by sha256 first (opened read-only), or NULL */
        bool allow_private;    /* downloads may reach private, loopback, link-local addresses */
};

/* How images were obtained since image_source_configure(). */
struct image_source_stats {
        uint64_t from_store;   /* read from the store */
        uint64_t store_misses; /* had a sha256 the store could not give: downloaded instead */
        uint64_t downloads;    /* download attempts (any outcome) */
};

/*
 * Set the process-wide configuration (copied; the store is opened here).
 * Returns 0, or the error of image_store_open() (ST_ENOTFOUND: no such
 * directory, ST_EINVAL, ST_ENOMEM) with err naming the directory.  Calling
 * it again replaces the configuration (same thread rules).
 */
int image_source_configure(const struct image_source_config *c, struct st_error *err);

/* Close the store and go back to no configuration. */
void image_source_shutdown(void);

/* A copy of the counters. */
void image_source_get_stats(struct image_source_stats *out);

/* One image's bytes, or why there are none. */
struct image_bytes {
        struct st_error error;     /* code 0: data holds the image; else why it was skipped */
        const char *media_type;    /* "image/png" ..., lowercase, no parameters; static */
        const unsigned char *data; /* len bytes in the arena */
        size_t len;
};

/*
 * Get the bytes of images[0..n) into out[0..n): each from the store when it
 * is there, else by download, at most concurrency downloads at a time, each
 * within timeout_ms; the bytes are copied into a.  Per-image failures are
 * in out[i].error: ST_EINVAL (no URL, not http(s), a refused private
 * address), ST_EHTTP (a status other than 2xx), ST_EPROTO (not a raster
 * image), ST_ETOOBIG (over IMAGE_SOURCE_MAX_BYTES), ST_ENET, ST_ETIMEOUT,
 * ST_ETRUNC.  Returns 0, or ST_ENOMEM (malloc or the arena) / ST_EIO when
 * the batch itself broke down.
 */
int image_source_get(struct vlm_http *http, const struct st_image *images, size_t n,
                     unsigned concurrency, long timeout_ms, struct arena *a,
                     struct image_bytes *out);

#endif
