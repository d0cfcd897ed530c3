/* request.c - POST /v1/compose body; the format is the table in request.h. */
#include "query/request.h"

#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "proto/doc.h"

static const char *const formats[] = {"json", "a1111", "comfyui", "diffusers"};

/* What st_base_model_normalize() can return: the names docs carry. */
static const char *const base_models[] = {"sd15",   "sd21",  "sdxl", "pony", "illustrious",
                                          "noobai", "flux1", "sd3",  "other"};

/* The value of key, or NULL when absent or null. */
static json_t *field(json_t *root, const char *key)
{
        json_t *v = json_object_get(root, key);

        return json_is_null(v) ? NULL : v;
}

static int string_field(json_t *root, const char *key, size_t max, struct arena *a, char **out,
                        struct st_error *err)
{
        json_t *v = field(root, key);
        size_t len;

        *out = NULL;
        if (!v)
                return 0;
        if (!json_is_string(v))
                return st_fail(err, ST_ETYPE, "%s: expected a string", key);
        len = json_string_length(v);
        if (len > max)
                return st_fail(err, ST_ETOOBIG, "%s: longer than %zu bytes", key, max);
        *out = arena_strndup(a, json_string_value(v), len);
        if (!*out)
                return st_fail(err, ST_ENOMEM, "%s: no memory", key);
        return 0;
}

static int int_field(json_t *root, const char *key, int lo, int hi, int *out, struct st_error *err)
{
        json_t *v = field(root, key);
        json_int_t x;

        if (!v)
                return 0;
        if (!json_is_integer(v))
                return st_fail(err, ST_ETYPE, "%s: expected an integer", key);
        x = json_integer_value(v);
        if (x < lo || x > hi)
                return st_fail(err, ST_EINVAL, "%s: %lld not in %d..%d", key, (long long)x, lo, hi);
        *out = (int)x;
        return 0;
}

static int real_field(json_t *root, const char *key, double lo, double hi, double *out,
                      struct st_error *err)
{
        json_t *v = field(root, key);
        double x;

        if (!v)
                return 0;
        if (!json_is_number(v))
                return st_fail(err, ST_ETYPE, "%s: expected a number", key);
        x = json_number_value(v);
        if (!(x >= lo && x <= hi))
                return st_fail(err, ST_EINVAL, "%s: %g not in %g..%g", key, x, lo, hi);
        *out = x;
        return 0;
}

static int bool_field(json_t *root, const char *key, bool *out, struct st_error *err)
{
        json_t *v = field(root, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return st_fail(err, ST_ETYPE, "%s: expected true or false", key);
        *out = json_is_true(v);
        return 0;
}

static int format_field(json_t *root, struct arena *a, const char **out, struct st_error *err)
{
        char *name;
        int rc = string_field(root, "format", 16, a, &name, err);

        *out = NULL;
        if (rc == ST_ETOOBIG)
                return st_fail(err, ST_EINVAL,
                               "format: expected json, a1111, comfyui or diffusers");
        if (rc || !name)
                return rc;
        for (size_t i = 0; i < sizeof(formats) / sizeof(*formats); i++)
                if (strcmp(name, formats[i]) == 0)
                        *out = formats[i];
        if (!*out)
                return st_fail(err, ST_EINVAL,
                               "format: '%s' is not json, a1111, comfyui or diffusers", name);
        return 0;
}

/*
 * A normalized name ("sdxl", any case) stays; a published one ("SDXL 1.0",
 * "stabilityai/stable-diffusion-xl-base-1.0") is normalized; anything else
 * would match no doc, so it is refused rather than silently answered empty.
 */
static int base_model(const char *given, const char **out, struct st_error *err)
{
        const char *name;

        *out = NULL;
        if (!given || !given[0])
                return 0;
        name = st_base_model_normalize(given);
        for (size_t i = 0; i < sizeof(base_models) / sizeof(*base_models); i++)
                if (strcasecmp(given, base_models[i]) == 0)
                        name = base_models[i];
        if (strcmp(name, "other") == 0 && strcasecmp(given, "other") != 0)
                return st_fail(err, ST_EINVAL,
                               "base_model: '%s' is unknown; use sd15, sd21, sdxl, pony, "
                               "illustrious, noobai, flux1, sd3 or other",
                               given);
        *out = name;
        return 0;
}

/* blocked: an array of ids (strings of 1..COMPOSE_REQUEST_MAX_ID bytes), at most MAX_BLOCKED. */
static int blocked_field(json_t *root, struct arena *a, struct compose_request *req,
                         struct st_error *err)
{
        json_t *v = field(root, "blocked");
        size_t n;

        if (!v)
                return 0;
        if (!json_is_array(v))
                return st_fail(err, ST_ETYPE, "blocked: expected an array of adapter ids");
        n = json_array_size(v);
        if (n > COMPOSE_REQUEST_MAX_BLOCKED)
                return st_fail(err, ST_ETOOBIG, "blocked: %zu ids, at most %d", n,
                               COMPOSE_REQUEST_MAX_BLOCKED);
        req->blocked = arena_calloc(a, n + 1, sizeof(*req->blocked));
        if (!req->blocked)
                return st_fail(err, ST_ENOMEM, "blocked: no memory");
        for (size_t i = 0; i < n; i++) {
                json_t *id = json_array_get(v, i);
                size_t len = json_is_string(id) ? json_string_length(id) : 0;

                if (!json_is_string(id))
                        return st_fail(err, ST_ETYPE, "blocked[%zu]: expected a string", i);
                if (len == 0 || len > COMPOSE_REQUEST_MAX_ID ||
                    strlen(json_string_value(id)) != len)
                        return st_fail(err, ST_EINVAL, "blocked[%zu]: not an adapter id", i);
                req->blocked[i] = arena_strndup(a, json_string_value(id), len);
                if (!req->blocked[i])
                        return st_fail(err, ST_ENOMEM, "blocked: no memory");
        }
        req->n_blocked = n;
        return 0;
}

static int parse_error(const json_error_t *je, struct st_error *err)
{
        int code = ST_EPARSE;

        if (json_error_code(je) == json_error_premature_end_of_input)
                code = ST_ETRUNC;
        else if (json_error_code(je) == json_error_out_of_memory)
                code = ST_ENOMEM;
        return st_fail(err, code, "body: %s at line %d column %d", je->text, je->line, je->column);
}

static int parse_fields(json_t *root, struct arena *a, struct compose_request *req,
                        struct st_error *err)
{
        char *prompt, *base;
        int rc;

        if ((rc = string_field(root, "prompt", COMPOSE_REQUEST_MAX_PROMPT, a, &prompt, err)))
                return rc;
        if (!prompt)
                return st_fail(err, ST_EMISSING, "prompt: required");
        if (!prompt[0])
                return st_fail(err, ST_EINVAL, "prompt: empty");
        req->prompt = prompt;
        if ((rc = string_field(root, "base_model", COMPOSE_REQUEST_MAX_BASE_MODEL, a, &base, err)))
                return rc;
        if ((rc = base_model(base, &req->base_model, err)))
                return rc;
        if ((rc = int_field(root, "n_images", 1, COMPOSE_REQUEST_MAX_IMAGES, &req->n_images, err)))
                return rc;
        if ((rc = int_field(root, "k", 1, COMPOSE_REQUEST_MAX_K, &req->k, err)))
                return rc;
        if ((rc = bool_field(root, "allow_nsfw", &req->allow_nsfw, err)))
                return rc;
        if ((rc = bool_field(root, "allow_characters", &req->allow_characters, err)))
                return rc;
        if ((rc = real_field(root, "min_rating", 0, 5, &req->min_rating, err)))
                return rc;
        if ((rc = blocked_field(root, a, req, err)))
                return rc;
        return format_field(root, a, &req->format, err);
}

int compose_request_parse(const char *body, size_t len, struct arena *a,
                          struct compose_request *req, struct st_error *err)
{
        json_error_t je;
        json_t *root;
        int rc;

        if (len > COMPOSE_REQUEST_MAX_BODY)
                return st_fail(err, ST_ETOOBIG, "body: %zu bytes, at most %u", len,
                               COMPOSE_REQUEST_MAX_BODY);
        *req = (struct compose_request){
            .n_images = 1, .k = COMPOSE_REQUEST_DEFAULT_K, .min_rating = -1};
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!root)
                return parse_error(&je, err);
        if (!json_is_object(root)) {
                rc = st_fail(err, ST_ETYPE, "body: expected a JSON object");
                goto out_root;
        }
        rc = parse_fields(root, a, req, err);
out_root:
        json_decref(root);
        return rc;
}
