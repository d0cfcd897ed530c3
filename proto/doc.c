/*
 * doc.c - task names, base model normalization and the content hash of a
 * raw record.  The codecs live in doc_msgpack.c and doc_json.c.
 */
#include "proto/doc.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/sha256.h"

static const char *const task_names[ST_TASK_COUNT] = {
    [ST_TASK_CONCEPT] = "concept",     [ST_TASK_STYLE] = "style",
    [ST_TASK_POSE] = "pose",           [ST_TASK_ACTION] = "action",
    [ST_TASK_CHARACTER] = "character", [ST_TASK_CELEBRITY] = "celebrity",
    [ST_TASK_CLOTHING] = "clothing",   [ST_TASK_BACKGROUND] = "background",
    [ST_TASK_BUILDING] = "building",   [ST_TASK_VEHICLE] = "vehicle",
    [ST_TASK_ANIMAL] = "animal",       [ST_TASK_OTHER] = "other",
};

const char *st_task_name(enum st_task t)
{
        if ((unsigned)t >= ST_TASK_COUNT)
                return task_names[ST_TASK_OTHER];
        return task_names[t];
}

enum st_task st_task_from_name(const char *name)
{
        int t;

        if (!name)
                return ST_TASK_COUNT;
        for (t = 0; t < ST_TASK_COUNT; t++) {
                if (strcasecmp(name, task_names[t]) == 0)
                        return (enum st_task)t;
        }
        return ST_TASK_COUNT;
}

/*
 * Published base model names, matched case-insensitively as a prefix that
 * ends the name or is followed by a space, '-' or '_': "SD 1.5" covers
 * "SD 1.5 LCM" and "SD 1.5 Hyper" but not "SD 1.55".  First match wins.
 */
static const struct {
        const char *prefix;
        const char *normalized;
} base_models[] = {
    /* Civitai baseModel values. */
    {"sd 1.4", "sd15"},
    {"sd 1.5", "sd15"},
    {"sd 2.0", "sd21"},
    {"sd 2.1", "sd21"},
    {"sdxl", "sdxl"},
    {"pony", "pony"},
    {"illustrious", "illustrious"},
    {"noobai", "noobai"},
    {"flux.1", "flux1"},
    {"sd 3", "sd3"},
    {"sd 3.5", "sd3"},
    /* Hugging Face base_model repo ids. */
    {"runwayml/stable-diffusion-v1-5", "sd15"},
    {"stable-diffusion-v1-5/stable-diffusion-v1-5", "sd15"},
    {"CompVis/stable-diffusion-v1-4", "sd15"},
    {"stabilityai/stable-diffusion-2", "sd21"}, /* -2, -2-1, -2-1-base */
    {"stabilityai/stable-diffusion-xl-base", "sdxl"},
    {"stabilityai/sdxl-turbo", "sdxl"},
    {"black-forest-labs/FLUX.1", "flux1"},
    {"stabilityai/stable-diffusion-3", "sd3"},
    {"stabilityai/stable-diffusion-3.5", "sd3"},
};

static bool matches(const char *published, const char *prefix)
{
        size_t n = strlen(prefix);
        char next;

        if (strncasecmp(published, prefix, n) != 0)
                return false;
        next = published[n];
        return next == '\0' || next == ' ' || next == '-' || next == '_';
}

const char *st_base_model_normalize(const char *published)
{
        size_t i;

        if (!published)
                return "other";
        for (i = 0; i < sizeof(base_models) / sizeof(base_models[0]); i++) {
                if (matches(published, base_models[i].prefix))
                        return base_models[i].normalized;
        }
        return "other";
}

/*
 * The msgpack encoding is canonical (fixed key order, NULL strings left out),
 * so hashing it with the three crawl-dependent fields set to NULL gives the
 * same digest for the same content.
 */
int st_raw_record_hash(const struct st_raw_record *r, char out[65])
{
        struct st_raw_record content = *r;
        char *buf;
        size_t len;
        int rc;

        content.crawled_at = NULL;
        content.etag = NULL;
        content.content_hash = NULL;
        rc = st_raw_record_to_msgpack(&content, &buf, &len);
        if (rc)
                return rc;
        sha256_hex(buf, len, out);
        free(buf);
        return 0;
}
