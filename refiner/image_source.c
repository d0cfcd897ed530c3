/*
 * image_source.c - example image bytes by download (see image_source.h).
 */
#include "refiner/image_source.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

int image_source_get(struct vlm_http *http, const struct st_image *images, size_t n,
                     unsigned concurrency, long timeout_ms, struct arena *a,
                     struct image_bytes *out)
{
        struct vlm_http_request *reqs;
        size_t i;
        int rc = 0;

        memset(out, 0, n * sizeof(*out));
        if (n == 0)
                return 0;
        reqs = calloc(n, sizeof(*reqs));
        if (!reqs)
                return ST_ENOMEM;
        for (i = 0; i < n; i++) {
                reqs[i].url = images[i].url;
                reqs[i].accept = "image/";
                reqs[i].max_body = IMAGE_SOURCE_MAX_BYTES;
                reqs[i].timeout_ms = timeout_ms;
                reqs[i].follow_redirects = true;
        }
        rc = vlm_http_run(http, reqs, n, concurrency);
        for (i = 0; i < n && !rc; i++)
                rc = take(&reqs[i], a, &out[i]);
        for (i = 0; i < n; i++)
                vlm_http_request_release(&reqs[i]);
        free(reqs);
        return rc;
}
