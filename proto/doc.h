/*
 * doc.h - the two records every role shares: the raw_record a crawler makes
 * from one adapter *version* on Civitai or Hugging Face, and the StylusDoc
 * the refiner writes from it (see DESIGN.md, "Data model").
 *
 * Ownership: every pointer inside a record points into the struct arena the
 * record was decoded or built in; the record lives until arena_release().
 * Strings are NUL-terminated UTF-8; absent optional strings are NULL; absent
 * arrays have n == 0.
 *
 * Limits (ST_LIMIT_*) are enforced by every decoder; exceeding one is
 * ST_ETOOBIG with the field named in the st_error.
 *
 * Codecs (implemented in doc_json.c and doc_msgpack.c):
 *   JSON    - for HTTP and export; object keys are the field names below.
 *   msgpack - for ZeroMQ and LMDB; a map with the same keys as the JSON.
 * Unknown keys are ignored on decode (forward compatible); a known key with
 * the wrong type is ST_ETYPE; a missing required key (id, source, name) is
 * ST_EMISSING.
 *
 * Field table (JSON / msgpack key : type : notes)
 *   raw_record                       st_doc
 *   id            str  required      id            str  required
 *   source        str  required      source        str  required
 *   name          str  required      name          str  required
 *   version_name  str                version_name  str
 *   type          str  LORA|LoCon..  type          str
 *   base_model    str  normalized    base_model    str  normalized (sd15, sdxl ...)
 *   base_model_raw str as published  task          str  one of st_task names
 *   card_html     str  description   description   str  plain text
 *   card_url      str                card_url      str
 *   creator       str                trigger_words [str]
 *   tags          [str]              recommended_weight float
 *   trained_words [str]              tags          [str]
 *   nsfw          bool               nsfw          bool
 *   stats         map {downloads:uint, likes:uint, rating:float}  (both)
 *   files         [map {name, size:uint, sha256, download_url}]   (both)
 *   images        [map {url, prompt, sha256}]                     (both)
 *   created_at, updated_at, crawled_at  str RFC 3339            (both)
 *   etag          str                refined_by    str  "card" or "vlm:<model>@<prompt version>"
 *   content_hash  str 64 hex         refine_error  str  why the VLM refine failed (doc is card's)
 *                                    embedding_model str
 *                                    content_hash  str  of the raw record
 */
#ifndef STYLUS_DOC_H
#define STYLUS_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/arena.h"
#include "proto/errors.h"

#define ST_LIMIT_STRING 4096       /* any short string field */
#define ST_LIMIT_TEXT   262144     /* card_html, description, prompts */
#define ST_LIMIT_ARRAY  1024       /* tags, trigger words, files */
#define ST_LIMIT_IMAGES 64         /* images per record */
#define ST_LIMIT_RECORD (4u << 20) /* one encoded record */

struct st_strv {
        char **v; /* n strings */
        size_t n;
};

struct st_file {
        char *name;
        uint64_t size; /* bytes */
        char *sha256;  /* lowercase hex or NULL */
        char *download_url;
};

struct st_image {
        char *url;
        char *prompt; /* generation prompt, NULL when unknown */
        char *sha256; /* of the stored bytes, NULL until downloaded */
};

struct st_stats {
        uint64_t downloads;
        uint64_t likes;
        double rating; /* 0..5, 0 when unknown */
};

struct st_raw_record {
        char *id;             /* civitai:<modelId>@<versionId> or hf:<user>/<repo>@<sha> */
        char *source;         /* "civitai" or "hf" */
        char *name;           /* model title */
        char *version_name;   /* version label, e.g. "v2.0" */
        char *type;           /* LORA, LoCon, DoRA ... as published */
        char *base_model;     /* normalized: sd15, sd21, sdxl, pony, illustrious, flux1, other */
        char *base_model_raw; /* as published: "SD 1.5", "SDXL 1.0" ... */
        char *card_html;      /* model description, HTML as published */
        char *card_url;       /* human page of the model */
        char *creator;
        struct st_strv tags;
        struct st_strv trained_words;
        bool nsfw;
        struct st_stats stats;
        struct st_file *files;
        size_t n_files;
        struct st_image *images;
        size_t n_images;
        char *created_at;
        char *updated_at;
        char *crawled_at;
        char *etag;
        char *content_hash; /* st_raw_record_hash(), 64 lowercase hex */
};

/* Task categories of the paper plus "other". */
enum st_task {
        ST_TASK_CONCEPT,
        ST_TASK_STYLE,
        ST_TASK_POSE,
        ST_TASK_ACTION,
        ST_TASK_CHARACTER,
        ST_TASK_CELEBRITY,
        ST_TASK_CLOTHING,
        ST_TASK_BACKGROUND,
        ST_TASK_BUILDING,
        ST_TASK_VEHICLE,
        ST_TASK_ANIMAL,
        ST_TASK_OTHER,
        ST_TASK_COUNT
};

struct st_doc {
        char *id;
        char *source;
        char *name;
        char *version_name;
        char *type;
        char *base_model;
        char *task; /* st_task_name() of a category */
        char *description;
        struct st_strv trigger_words;
        double recommended_weight;
        struct st_strv tags;
        bool nsfw;
        struct st_stats stats;
        struct st_file *files;
        size_t n_files;
        struct st_image *images;
        size_t n_images;
        char *card_url;
        char *refined_by;      /* "card" or "vlm:<model>@<prompt version>" (refiner/vlm.h) */
        char *refine_error;    /* NULL, or why a VLM refine failed and the card doc was kept */
        char *embedding_model; /* NULL until embedded */
        char *created_at;
        char *updated_at;
        char *crawled_at;
        char *content_hash; /* of the raw record this doc was refined from */
};

/* Lowercase name of a task ("concept" ... "other"). */
const char *st_task_name(enum st_task t);

/* Task from its name, case-insensitive; ST_TASK_COUNT when unknown. */
enum st_task st_task_from_name(const char *name);

/*
 * Normalize a published base model name ("SD 1.5", "SDXL 1.0", "Pony",
 * "Illustrious", "Flux.1 D", "stabilityai/stable-diffusion-xl-base-1.0")
 * to sd15, sd21, sdxl, pony, illustrious, flux1, sd3, or "other".
 * Returns a static string.
 */
const char *st_base_model_normalize(const char *published);

/*
 * Content hash of a raw record: SHA-256 over its canonical msgpack encoding
 * with crawled_at, etag and content_hash left out, written as 64 lowercase
 * hex digits into out[65].  Same content, same hash, whenever crawled.
 */
int st_raw_record_hash(const struct st_raw_record *r, char out[65]);

/* ---- JSON codec (doc_json.c, jansson) ---- */

/* Encode as a compact JSON object; *out is malloc'd, caller frees. */
int st_raw_record_to_json(const struct st_raw_record *r, char **out, size_t *len);
int st_doc_to_json(const struct st_doc *d, char **out, size_t *len);

/*
 * Decode len bytes of JSON into *r / *d, allocating in a.  On error *r / *d
 * is unspecified and err says which field was wrong.
 */
int st_raw_record_from_json(const char *json, size_t len, struct arena *a, struct st_raw_record *r,
                            struct st_error *err);
int st_doc_from_json(const char *json, size_t len, struct arena *a, struct st_doc *d,
                     struct st_error *err);

/* ---- msgpack codec (doc_msgpack.c, msgpack-c) ---- */

struct msgpack_packer;
struct msgpack_object;

/* Append the record as one msgpack map to a packer. */
int st_raw_record_pack(struct msgpack_packer *pk, const struct st_raw_record *r);
int st_doc_pack(struct msgpack_packer *pk, const struct st_doc *d);

/* Decode from an already-unpacked msgpack object (a map), copying into a. */
int st_raw_record_from_object(const struct msgpack_object *o, struct arena *a,
                              struct st_raw_record *r, struct st_error *err);
int st_doc_from_object(const struct msgpack_object *o, struct arena *a, struct st_doc *d,
                       struct st_error *err);

/* Encode to a malloc'd buffer / decode from bytes (one map, nothing after it). */
int st_raw_record_to_msgpack(const struct st_raw_record *r, char **out, size_t *len);
int st_doc_to_msgpack(const struct st_doc *d, char **out, size_t *len);
int st_raw_record_from_msgpack(const char *buf, size_t len, struct arena *a,
                               struct st_raw_record *r, struct st_error *err);
int st_doc_from_msgpack(const char *buf, size_t len, struct arena *a, struct st_doc *d,
                        struct st_error *err);

#endif
