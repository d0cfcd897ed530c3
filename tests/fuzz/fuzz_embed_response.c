/*
 * fuzz_embed_response.c - what an embeddings server may send, on arbitrary
 * bytes: the answer reader and the error-body reader of
 * indexer/embed_http.h, for a few (texts, dim) shapes.  Besides not
 * crashing, every accepted answer must keep the header's promises: every
 * vector finite and of unit length (or all zero); every error a negative
 * code with a one-line message of printable ASCII.  A broken promise aborts,
 * which the fuzzer reports.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "indexer/embed_http.h"
#include "proto/errors.h"

static bool clean_line(const char *s)
{
        for (; *s; s++)
                if (*s == '\n' || *s == '\r')
                        return false;
        return true;
}

static void check_vectors(const float *v, size_t n, int dim)
{
        for (size_t i = 0; i < n; i++) {
                double sum = 0;

                for (int j = 0; j < dim; j++) {
                        float x = v[i * (size_t)dim + (size_t)j];

                        if (!isfinite(x))
                                abort();
                        sum += (double)x * x;
                }
                if (sum != 0 && fabs(sum - 1.0) > 1e-3)
                        abort();
        }
}

static void parse_as(const char *bytes, size_t size, size_t n, int dim)
{
        struct st_error err = {0};
        float *out = malloc(n * (size_t)dim * sizeof(float));
        int rc;

        if (!out)
                return;
        rc = embed_response_parse(bytes, size, n, dim, out, &err);
        if (rc > 0 || (rc < 0 && (!err.msg[0] || !clean_line(err.msg))))
                abort();
        if (rc == 0)
                check_vectors(out, n, dim);
        free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const struct {
                size_t n;
                int dim;
        } shapes[] = {{1, 4}, {2, 3}, {3, 8}, {1, 16}};
        const char *bytes = data ? (const char *)data : "";
        char msg[EMBED_HTTP_QUOTE_MAX + 1];

        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
                parse_as(bytes, size, shapes[i].n, shapes[i].dim);
        if (embed_error_message(bytes, size, msg, sizeof(msg))) {
                if (strlen(msg) >= sizeof(msg) || !clean_line(msg))
                        abort();
                for (const char *p = msg; *p; p++)
                        if (*p < 0x20 || *p > 0x7e)
                                abort();
        }
        return 0;
}
