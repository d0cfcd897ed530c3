/*
 * image_source.c - example image bytes from the image store or by download
 * (see image_source.h).
 */
#include "refiner/image_source.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crawler/image_store.h"
#include "proto/log.h"

/* The process-wide configuration (image_source.h says when it may change). */
static struct {
        struct image_store *store; /* NULL: download only */
        bool allow_private;
        struct image_source_stats stats;
} source = {NULL, true, {0, 0, 0}};

int image_source_configure(const struct image_source_config *c, struct st_error *err)
{
        struct image_store *store = NULL;
        int rc;

        if (c->store_dir) {
                rc = image_store_open(c->store_dir, IMAGE_STORE_READ, 0, &store, err);
                if (rc)
                        return rc;
        }
        image_source_shutdown();
        source.store = store;
        source.allow_private = c->allow_private;
        return 0;
}

void image_source_shutdown(void)
{
        image_store_close(&source.store);
        source.allow_private = true;
        memset(&source.stats, 0, sizeof(source.stats));
}

void image_source_get_stats(struct image_source_stats *out)
{
        *out = source.stats;
}

/* Raster types VLM APIs take, with the spelling we send. */
static const struct {
        const char *received;
        const char *sent;
} raster_types[] = {
    {"image/png", "image/png"},   {"image/jpeg", "image/jpeg"}, {"image/jpg", "image/jpeg"},
    {"image/webp", "image/webp"}, {"image/gif", "image/gif"},
};

/* The media type to send for a Content-Type header, or NULL when not a raster image. */
static const char *raster_type(const char *content_type)
{
        size_t len = strcspn(content_type, "; \t"), i;

        for (i = 0; i < sizeof(raster_types) / sizeof(raster_types[0]); i++)
                if (strlen(raster_types[i].received) == len &&
                    strncasecmp(content_type, raster_types[i].received, len) == 0)
                        return raster_types[i].sent;
        return NULL;
}

/*
 * Read image im from the store into out; true when out is settled (the
 * image, or ST_ETOOBIG), false when it must be downloaded.  ST_ENOMEM
 * (arena full) settles it too, in *rc.
 */
static bool from_store(const struct st_image *im, struct arena *a, struct image_bytes *out, int *rc)
{
        const unsigned char *data = NULL;
        struct st_error why = {0};
        size_t len = 0;
        int got;

        if (!source.store || !im->sha256)
                return false;
        got = image_store_read(source.store, im->sha256, IMAGE_SOURCE_MAX_BYTES, a, &data, &len,
                               &why);
        if (got == ST_ENOMEM) {
                *rc = st_fail(&out->error, ST_ENOMEM, "image store: arena full");
                return true;
        }
        if (got == ST_ETOOBIG) {
                st_fail(&out->error, ST_ETOOBIG, "%s: stored image of %zu bytes, over %zu",
                        im->url ? im->url : im->sha256, len, IMAGE_SOURCE_MAX_BYTES);
                return true;
        }
        if (got == 0)
                out->media_type = image_store_media_type(data, len);
        if (got != 0 || !out->media_type) {
                log_debug("%s: not usable from the store (%s): downloading",
                          im->url ? im->url : im->sha256, got ? why.msg : "not a raster image");
                source.stats.store_misses++;
                return false;
        }
        out->data = data;
        out->len = len;
        source.stats.from_store++;
        return true;
}

/* Turn a finished download into out; ST_ENOMEM when the arena is full. */
static int take(const struct vlm_http_request *r, struct arena *a, struct image_bytes *out)
{
        unsigned char *copy;

        if (r->error.code) {
                out->error = r->error;
                return 0;
        }
        if (r->status < 200 || r->status >= 300) {
                st_fail(&out->error, ST_EHTTP, "%s: HTTP %ld", r->url, r->status);
                return 0;
        }
        out->media_type = raster_type(r->content_type);
        if (!out->media_type) {
                st_fail(&out->error, ST_EPROTO, "%s: '%s' is not a raster image", r->url,
                        r->content_type);
                return 0;
        }
        if (r->body_len == 0) {
                st_fail(&out->error, ST_ETRUNC, "%s: empty image", r->url);
                return 0;
        }
        copy = arena_alloc(a, r->body_len);
        if (!copy)
                return st_fail(&out->error, ST_ENOMEM, "%s: arena full", r->url);
        memcpy(copy, r->body, r->body_len);
        out->data = copy;
        out->len = r->body_len;
        return 0;
}

/* Download the images at which[0..m) into their out slots. */
static int download(struct vlm_http *http, const struct st_image *images, const size_t *which,
                    size_t m, unsigned concurrency, long timeout_ms, struct arena *a,
                    struct image_bytes *out)
{
        struct vlm_http_request *reqs;
        size_t i;
        int rc;

        reqs = calloc(m, sizeof(*reqs));
        if (!reqs)
                return ST_ENOMEM;
        for (i = 0; i < m; i++) {
                reqs[i].url = images[which[i]].url;
                reqs[i].accept = "image/";
                reqs[i].max_body = IMAGE_SOURCE_MAX_BYTES;
                reqs[i].timeout_ms = timeout_ms;
                reqs[i].follow_redirects = true;
                reqs[i].public_only = !source.allow_private;
        }
        source.stats.downloads += m;
        rc = vlm_http_run(http, reqs, m, concurrency);
        for (i = 0; i < m && !rc; i++)
                rc = take(&reqs[i], a, &out[which[i]]);
        for (i = 0; i < m; i++)
                vlm_http_request_release(&reqs[i]);
        free(reqs);
        return rc;
}

int image_source_get(struct vlm_http *http, const struct st_image *images, size_t n,
                     unsigned concurrency, long timeout_ms, struct arena *a,
                     struct image_bytes *out)
{
        size_t *which, m = 0, i;
        int rc = 0;

        memset(out, 0, n * sizeof(*out));
        if (n == 0)
                return 0;
        which = calloc(n, sizeof(*which));
        if (!which)
                return ST_ENOMEM;
        for (i = 0; i < n && !rc; i++)
                if (!from_store(&images[i], a, &out[i], &rc))
                        which[m++] = i;
        if (!rc && m > 0)
                rc = download(http, images, which, m, concurrency, timeout_ms, a, out);
        free(which);
        return rc;
}
