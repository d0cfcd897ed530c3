/*
 * embedder_choice.c - the built-in embedder or an embeddings endpoint, by
 * the --embed-* flags (see embedder_choice.h).
 */
#include "indexer/embedder_choice.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "indexer/vecstore.h"
#include "proto/http_util.h"
#include "proto/log.h"

#define BUILTIN_PREFIX "stylus-hash-"

_Static_assert(EMBED_HTTP_MODEL_MAX < VECSTORE_MAX_MODEL, "a model name must fit the vecstore");

void embedder_flags_init(struct embedder_flags *f)
{
        memset(f, 0, sizeof(*f));
}

/* s as a number in min..max; false when it is not one. */
static bool parse_number(const char *s, long long min, long long max, long long *out)
{
        char *end;

        errno = 0;
        *out = strtoll(s, &end, 10);
        return errno == 0 && end != s && *end == '\0' && *out >= min && *out <= max;
}

static int bad_number(const char *flag, const char *arg, long long min, long long max,
                      struct st_error *err)
{
        return st_fail(err, ST_EINVAL, "%s %.40s: need a number in %lld..%lld", flag, arg, min,
                       max);
}

int embedder_flags_take(struct embedder_flags *f, int opt, const char *arg, struct st_error *err)
{
        long long v;

        switch (opt) {
        case EMBED_OPT_URL:
                f->url = arg;
                return 1;
        case EMBED_OPT_IDF:
                f->idf_file = arg;
                return 1; /* the built-in's: not one of the flags that need --embed-url */
        case EMBED_OPT_MODEL:
                f->model = arg;
                break;
        case EMBED_OPT_DIM:
                if (!parse_number(arg, 1, EMBED_MAX_DIM, &v))
                        return bad_number("--embed-dim", arg, 1, EMBED_MAX_DIM, err);
                f->dim = (int)v;
                break;
        case EMBED_OPT_KEY_FILE:
                f->key_file = arg;
                break;
        case EMBED_OPT_BATCH:
                if (!parse_number(arg, 1, EMBED_HTTP_MAX_BATCH, &v))
                        return bad_number("--embed-batch", arg, 1, EMBED_HTTP_MAX_BATCH, err);
                f->batch = (unsigned)v;
                break;
        case EMBED_OPT_SEND_DIM:
                f->send_dim = true;
                break;
        case EMBED_OPT_TIMEOUT:
                if (!parse_number(arg, 1, 3600000, &v))
                        return bad_number("--embed-timeout-ms", arg, 1, 3600000, err);
                f->timeout_ms = (long)v;
                break;
        case EMBED_OPT_DEADLINE:
                if (!parse_number(arg, 1, 3600000, &v))
                        return bad_number("--embed-deadline-ms", arg, 1, 3600000, err);
                f->deadline_ms = (long)v;
                break;
        default:
                return 0;
        }
        f->others = true;
        return 1;
}

static int check_flags(const struct embedder_flags *f, struct st_error *err)
{
        if (f->url && f->idf_file)
                return st_fail(err, ST_EINVAL,
                               "--embed-idf weighs the built-in embedder; not with --embed-url");
        if (!f->url)
                return f->others ? st_fail(err, ST_EINVAL, "--embed-* flags need --embed-url") : 0;
        if (!f->model || !*f->model)
                return st_fail(err, ST_EINVAL, "--embed-url needs --embed-model");
        if (f->dim == 0)
                return st_fail(err, ST_EINVAL, "--embed-url needs --embed-dim");
        if (strncmp(f->model, BUILTIN_PREFIX, strlen(BUILTIN_PREFIX)) == 0)
                return st_fail(err, ST_EINVAL,
                               "--embed-model %.63s: names starting '%s' are the built-in "
                               "embedder's",
                               f->model, BUILTIN_PREFIX);
        return 0;
}

static int open_http(struct embedder_choice *c, const struct embedder_flags *f,
                     long default_deadline_ms, struct st_error *err)
{
        struct embed_http_config cfg;
        char key[EMBED_HTTP_KEY_MAX + 2];
        int rc;

        embed_http_config_defaults(&cfg);
        cfg.url = f->url;
        cfg.model = f->model;
        cfg.dim = f->dim;
        cfg.send_dimensions = f->send_dim;
        cfg.batch = f->batch ? f->batch : cfg.batch;
        cfg.timeout_ms = f->timeout_ms ? f->timeout_ms : cfg.timeout_ms;
        cfg.deadline_ms = f->deadline_ms ? f->deadline_ms : default_deadline_ms;
        rc = http_util_read_key(f->key_file, EMBEDDER_KEY_ENV, key, sizeof(key), err);
        if (rc)
                return rc;
        cfg.key = key[0] ? key : NULL;
        rc = embed_http_new(&cfg, &c->http, err);
        explicit_bzero(key, sizeof(key));
        if (rc)
                return rc;
        c->model = embed_http_model(c->http);
        c->dim = f->dim;
        log_info("embedding with %s (%d dims) at %s, %s key", c->model, c->dim,
                 embed_http_endpoint(c->http), cfg.key ? "with a" : "without a");
        return 0;
}

/* The built-in with the IDF table at path. */
static int open_idf(struct embedder_choice *c, const char *path, struct st_error *err)
{
        struct embed_idf_info info;
        int rc = embed_idf_load(path, &c->idf, err);

        if (rc)
                return rc;
        embedder_set_idf(&c->builtin, c->idf);
        c->model = c->builtin.model;
        embed_idf_get_info(c->idf, &info);
        log_info("embedding with %s: the built-in with IDF table %s (%llu docs, %u buckets)",
                 c->model, path, (unsigned long long)info.docs, info.buckets);
        return 0;
}

int embedder_choice_open(struct embedder_choice *c, const struct embedder_flags *f, int builtin_dim,
                         long default_deadline_ms, struct st_error *err)
{
        int rc;

        memset(c, 0, sizeof(*c));
        if (embedder_init(&c->builtin, builtin_dim))
                return st_fail(err, ST_EINVAL, "the built-in embedder's dimension must be 1..%d",
                               EMBED_MAX_DIM);
        c->model = c->builtin.model;
        c->dim = c->builtin.dim;
        rc = check_flags(f, err);
        if (rc)
                return rc;
        if (f->url)
                return open_http(c, f, default_deadline_ms, err);
        if (f->idf_file)
                return open_idf(c, f->idf_file, err);
        return 0;
}

int embedder_choice_embed(struct embedder_choice *c, const char *const *texts, size_t n, float *out,
                          struct st_error *err)
{
        size_t i;
        int rc;

        if (c->http)
                return embed_http_embed(c->http, texts, n, out, err);
        for (i = 0; i < n; i++) {
                rc = embedder_embed(&c->builtin, texts[i], strlen(texts[i]),
                                    out + i * (size_t)c->dim);
                if (rc)
                        return st_fail(err, rc, "%s: cannot embed text %zu: %s", c->model, i,
                                       st_strerror(rc));
        }
        return 0;
}

void embedder_choice_close(struct embedder_choice *c)
{
        embed_http_destroy(&c->http);
        embedder_set_idf(&c->builtin, NULL);
        embed_idf_destroy(&c->idf);
        c->model = c->builtin.model;
        c->dim = c->builtin.dim;
}
