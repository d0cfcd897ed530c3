/*
 * test_forms.c - the forms of a composer result (A1111 prompt, ComfyUI
 * LoraLoader chain, diffusers snippet, the JSON answer) and the parser of
 * the POST /v1/compose body, including hostile bodies.
 */
#include "query/forms.h"
#include "query/request.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_forms.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static int contains(const char *s, const char *part)
{
        return s && strstr(s, part) != NULL;
}

/* ---- a small result, made by hand so every number is known ---- */

static struct st_file files[] = {
    {"corgi_dog_v1.safetensors", 1000, "aa01", "https://civitai.test/api/download/models/1"},
    {"loras/Fluffy:Corgi.safetensors", 2000, "aa02", "https://civitai.test/api/download/models/2"},
    {"watercolor_v3.safetensors", 3000, "bb01",
     "https://huggingface.test/someone/watercolor/resolve/0f1e/watercolor_v3.safetensors"},
};

static char *corgi_tw[] = {"corgi"};

static struct st_doc docs[] = {
    {.id = "civitai:101@1",
     .source = "civitai",
     .name = "Corgi Dog",
     .base_model = "sd15",
     .task = "animal",
     .trigger_words = {corgi_tw, 1},
     .recommended_weight = 0.8,
     .files = &files[0],
     .n_files = 1,
     .card_url = "https://civitai.test/models/101"},
    {.id = "civitai:102@1",
     .source = "civitai",
     .name = "Fluffy Corgi Puppy",
     .base_model = "sd15",
     .task = "animal",
     .recommended_weight = 1.0,
     .files = &files[1],
     .n_files = 1},
    {.id = "hf:someone/watercolor@0f1e",
     .source = "hf",
     .name = "Watercolor",
     .base_model = "sd15",
     .task = "style",
     .recommended_weight = 0.7,
     .files = &files[2],
     .n_files = 1},
};

static size_t corgi_adapters[] = {0, 1};
static size_t style_adapters[] = {2};
static size_t no_adapters[1];

static struct composer_topic topics[] = {
    {"Corgi", corgi_adapters, 2},
    {"Watercolor style", style_adapters, 1},
    {"umbrella", no_adapters, 0},
};

static struct composer_adapter adapters[] = {
    {&docs[0], 0, 0.32, 0.7f, "matches topic 'Corgi' (0.70)"},
    {&docs[1], 0, 0.40, 0.6f, "matches topic 'Corgi' (0.60)"},
    {&docs[2], 1, 0.56, 0.8f, "matches topic 'Watercolor style' (0.80)"},
};

/* Image 0 applies all; image 1 switches the first corgi adapter off. */
static bool masks[] = {true, true, true, false, true, true};
static double weights[] = {0.32, 0.40, 0.56, 0.0, 0.80, 0.56};

static const struct composer_result result = {
    .composer = "rules",
    .topics = topics,
    .n_topics = 3,
    .adapters = adapters,
    .n_adapters = 3,
    .n_images = 2,
    .masks = masks,
    .weights = weights,
    .excluded = {.nsfw = 1, .base_model = 2},
};

static const char *prompt = "A Corgi in Watercolor style with an umbrella";

/* ---- forms ---- */

static void test_a1111(void)
{
        char *s = NULL;

        CHECK(forms_a1111(&result, prompt, 0, &s) == 0);
        CHECK(s && strcmp(s, "a corgi in watercolor style with an umbrella, "
                             "<lora:corgi_dog_v1:0.32>, <lora:Fluffy_Corgi:0.40>, "
                             "<lora:someone__watercolor:0.56>") == 0);
        free(s);
        CHECK(forms_a1111(&result, prompt, 1, &s) == 0);
        CHECK(s && strcmp(s, "a corgi in watercolor style with an umbrella, "
                             "<lora:Fluffy_Corgi:0.80>, <lora:someone__watercolor:0.56>") == 0);
        free(s);
        CHECK(forms_a1111(&result, prompt, 2, &s) == ST_EINVAL);
        CHECK(s == NULL);
}

/* inputs[key] of a ComfyUI node is the link [node, output]. */
static int linked(json_t *node, const char *key, const char *from, int output)
{
        json_t *l = json_object_get(json_object_get(node, "inputs"), key);

        return json_is_array(l) && json_array_size(l) == 2 &&
               json_is_string(json_array_get(l, 0)) &&
               strcmp(json_string_value(json_array_get(l, 0)), from) == 0 &&
               json_integer_value(json_array_get(l, 1)) == output;
}

static const char *input_string(json_t *node, const char *key)
{
        return json_string_value(json_object_get(json_object_get(node, "inputs"), key));
}

static double input_real(json_t *node, const char *key)
{
        return json_real_value(json_object_get(json_object_get(node, "inputs"), key));
}

static void test_comfyui(void)
{
        struct composer_result empty = result;
        json_t *g = NULL, *n100, *n101, *n102;

        CHECK(forms_comfyui(&result, 0, NULL, &g) == 0);
        CHECK(json_object_size(g) == 3);
        n100 = json_object_get(g, "100");
        n101 = json_object_get(g, "101");
        n102 = json_object_get(g, "102");
        CHECK(n100 && n101 && n102);
        CHECK(strcmp(json_string_value(json_object_get(n100, "class_type")), "LoraLoader") == 0);
        CHECK(linked(n100, "model", "4", 0) && linked(n100, "clip", "4", 1));
        CHECK(linked(n101, "model", "100", 0) && linked(n101, "clip", "100", 1));
        CHECK(linked(n102, "model", "101", 0) && linked(n102, "clip", "101", 1));
        CHECK(strcmp(input_string(n100, "lora_name"), "corgi_dog_v1.safetensors") == 0);
        CHECK(strcmp(input_string(n101, "lora_name"), "Fluffy_Corgi.safetensors") == 0);
        CHECK(strcmp(input_string(n102, "lora_name"), "someone__watercolor.safetensors") == 0);
        CHECK(input_real(n100, "strength_model") == 0.32);
        CHECK(input_real(n100, "strength_clip") == 0.32);
        CHECK(input_real(n102, "strength_model") == 0.56);
        json_decref(g);

        /* Image 1: two nodes, from a caller's checkpoint node. */
        CHECK(forms_comfyui(&result, 1, "7", &g) == 0);
        CHECK(json_object_size(g) == 2);
        CHECK(linked(json_object_get(g, "100"), "model", "7", 0));
        CHECK(input_real(json_object_get(g, "100"), "strength_model") == 0.80);
        CHECK(linked(json_object_get(g, "101"), "clip", "100", 1));
        json_decref(g);

        empty.n_adapters = 0;
        empty.masks = NULL;
        empty.weights = NULL;
        CHECK(forms_comfyui(&empty, 0, NULL, &g) == 0);
        CHECK(json_is_object(g) && json_object_size(g) == 0);
        json_decref(g);
        CHECK(forms_comfyui(&result, 5, NULL, &g) == ST_EINVAL);
}

static void test_diffusers(void)
{
        char *s = NULL;

        CHECK(forms_diffusers(&result, &s) == 0);
        if (!s)
                return;
        if (getenv("VERBOSE"))
                printf("%s", s);
        CHECK(contains(s,
                       "pipe.load_lora_weights(\"loras\", weight_name=\"corgi_dog_v1.safetensors\","
                       " adapter_name=\"a0\")\n"));
        CHECK(contains(s, "weight_name=\"Fluffy_Corgi.safetensors\", adapter_name=\"a1\")\n"));
        CHECK(contains(s, " to loras/Fluffy_Corgi.safetensors\n"));
        CHECK(contains(s, "https://civitai.test/api/download/models/1"));
        CHECK(contains(s, "pipe.load_lora_weights(\"someone/watercolor\", "
                          "weight_name=\"watercolor_v3.safetensors\", revision=\"0f1e\", "
                          "adapter_name=\"a2\")\n"));
        CHECK(contains(s, "\npipe.set_adapters([\"a0\", \"a1\", \"a2\"], "
                          "adapter_weights=[0.32, 0.40, 0.56])\n"));
        CHECK(contains(s, "# image 1: pipe.set_adapters([\"a1\", \"a2\"], "
                          "adapter_weights=[0.80, 0.56])\n"));
        free(s);
}

/* A hostile name or file cannot break out of a comment or a string literal. */
static void test_diffusers_escaping(void)
{
        struct st_file evil_file = {"x\"); import os #\n.safetensors", 1, NULL,
                                    "https://e.test/\nimport os"};
        struct st_doc evil = docs[0];
        struct composer_adapter ad = adapters[0];
        size_t only[] = {0};
        struct composer_topic topic = {"t", only, 1};
        bool mask[] = {true};
        double weight[] = {0.64};
        struct composer_result r = {.composer = "rules",
                                    .topics = &topic,
                                    .n_topics = 1,
                                    .adapters = &ad,
                                    .n_adapters = 1,
                                    .n_images = 1,
                                    .masks = mask,
                                    .weights = weight};
        char *s = NULL;

        evil.name = "Evil\nimport os";
        evil.files = &evil_file;
        ad.doc = &evil;
        CHECK(forms_diffusers(&r, &s) == 0);
        CHECK(s && !contains(s, "\nimport os"));
        CHECK(contains(s, "weight_name=\"x_); import os #_.safetensors\""));
        free(s);
        CHECK(forms_a1111(&r, "p", 0, &s) == 0);
        CHECK(s && strcmp(s, "p, <lora:x_); import os #_:0.64>") == 0);
        free(s);

        /* From the Hub the file's own name goes into a string literal, escaped. */
        evil.id = "hf:a/b@c";
        evil.source = "hf";
        CHECK(forms_diffusers(&r, &s) == 0);
        CHECK(s && !contains(s, "\nimport os"));
        CHECK(contains(s, "weight_name=\"x\\\"); import os #\\x0a.safetensors\", revision=\"c\""));
        free(s);
}

/* forms_a1111() of a one-image result of docs d[0..n), all active: the names it gives. */
static char *a1111_of(struct st_doc *d, size_t n)
{
        struct composer_adapter ad[8];
        size_t idx[8];
        bool mask[8];
        double weight[8];
        struct composer_topic topic = {"t", idx, n};
        struct composer_result r = {.composer = "rules",
                                    .topics = &topic,
                                    .n_topics = 1,
                                    .adapters = ad,
                                    .n_adapters = n,
                                    .n_images = 1,
                                    .masks = mask,
                                    .weights = weight};
        char *s = NULL;

        for (size_t i = 0; i < n && i < 8; i++) {
                ad[i] = adapters[0];
                ad[i].doc = &d[i];
                idx[i] = i;
                mask[i] = true;
                weight[i] = 0.5;
        }
        return forms_a1111(&r, "p", 0, &s) == 0 ? s : NULL;
}

/*
 * The one name per adapter (save_as): clashes get the version, case
 * ignored; long names cut at a UTF-8 boundary; a leading dot, odd
 * extensions, Hub repos without an owner, adapters without a file name.
 */
static void test_save_as(void)
{
        struct st_file f[] = {
            {"style.safetensors", 1, NULL, NULL}, {"dir/STYLE.safetensors", 1, NULL, NULL},
            {"style.safetensors", 1, NULL, NULL}, {".hidden.pt", 1, NULL, NULL},
            {"odd.tar gz", 1, NULL, NULL},        {"", 1, NULL, NULL},
        };
        struct st_doc d[6];
        char long_name[300], *s;

        for (size_t i = 0; i < 6; i++) {
                d[i] = docs[0];
                d[i].files = &f[i];
        }
        d[0].id = "civitai:1@11";
        d[1].id = "civitai:2@22";
        d[2].id = "hf:solo@0123abcd";
        d[2].source = "hf";
        d[3].id = "civitai:4@44";
        d[4].id = "civitai:5@55";
        d[5].id = "civitai:6@66";
        d[5].name = "No File: Name";
        s = a1111_of(d, 6);
        CHECK(s &&
              strcmp(s, "p, <lora:style-11:0.50>, <lora:STYLE-22:0.50>, <lora:solo:0.50>, "
                        "<lora:_hidden:0.50>, <lora:odd:0.50>, <lora:No File_ Name:0.50>") == 0);
        free(s);

        /* Without the clash, no suffix. */
        s = a1111_of(d + 1, 2);
        CHECK(s && strcmp(s, "p, <lora:STYLE:0.50>, <lora:solo:0.50>") == 0);
        free(s);

        /* 140 two-byte characters: the stem stops at 120 bytes, whole characters. */
        for (size_t i = 0; i < 140; i++)
                memcpy(long_name + 2 * i, "\xc3\xa9", 2);
        memcpy(long_name + 280, ".safetensors", 13);
        f[0].name = long_name;
        s = a1111_of(d, 1);
        CHECK(s && strlen(s) == strlen("p, <lora::0.50>") + 120);
        CHECK(s && strncmp(s + strlen("p, <lora:"), long_name, 120) == 0);
        free(s);
}

/* ---- the JSON answer ---- */

static int has_keys(json_t *o, const char *const *keys, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!json_object_get(o, keys[i])) {
                        fprintf(stderr, "missing key %s\n", keys[i]);
                        return 0;
                }
        return 1;
}

static void test_json(void)
{
        static const char *const top[] = {"prompt", "composer", "topics", "adapters",
                                          "images", "excluded", "forms"};
        static const char *const adapter[] = {
            "id",     "name",      "task",          "topic",      "weight",
            "score",  "reason",    "trigger_words", "base_model", "download_url",
            "sha256", "file_name", "save_as",       "card_url"};
        json_t *root, *a0, *img1, *forms;
        json_error_t je;
        char *s = NULL;

        CHECK(composer_result_to_json(&result, prompt, NULL, &s) == 0);
        root = s ? json_loads(s, 0, &je) : NULL;
        CHECK(json_is_object(root));
        if (!root)
                goto out;
        CHECK(has_keys(root, top, sizeof(top) / sizeof(*top)));
        CHECK(strcmp(json_string_value(json_object_get(root, "prompt")), prompt) == 0);
        CHECK(strcmp(json_string_value(json_object_get(root, "composer")), "rules") == 0);
        CHECK(json_array_size(json_object_get(root, "topics")) == 3);
        CHECK(json_array_size(json_object_get(json_array_get(json_object_get(root, "topics"), 2),
                                              "adapters")) == 0);
        CHECK(json_array_size(json_object_get(root, "adapters")) == 3);
        a0 = json_array_get(json_object_get(root, "adapters"), 0);
        CHECK(has_keys(a0, adapter, sizeof(adapter) / sizeof(*adapter)));
        CHECK(json_real_value(json_object_get(a0, "weight")) == 0.32);
        CHECK(strcmp(json_string_value(json_object_get(a0, "sha256")), "aa01") == 0);
        CHECK(strcmp(json_string_value(json_object_get(
                         json_array_get(json_object_get(root, "adapters"), 2), "save_as")),
                     "someone__watercolor.safetensors") == 0);
        CHECK(strcmp(json_string_value(json_array_get(json_object_get(a0, "trigger_words"), 0)),
                     "corgi") == 0);
        CHECK(json_is_null(
            json_object_get(json_array_get(json_object_get(root, "adapters"), 1), "card_url")));
        CHECK(json_array_size(json_object_get(root, "images")) == 2);
        img1 = json_array_get(json_object_get(root, "images"), 1);
        CHECK(json_array_size(json_object_get(img1, "adapters")) == 2);
        CHECK(json_real_value(json_array_get(json_object_get(img1, "weights"), 0)) == 0.80);
        CHECK(contains(json_string_value(json_object_get(img1, "a1111_prompt")),
                       "<lora:Fluffy_Corgi:0.80>"));
        CHECK(json_integer_value(
                  json_object_get(json_object_get(root, "excluded"), "base_model")) == 2);
        CHECK(json_is_integer(json_object_get(json_object_get(root, "excluded"), "low_rating")));
        forms = json_object_get(root, "forms");
        CHECK(json_is_string(json_object_get(forms, "a1111")));
        CHECK(json_object_size(json_object_get(forms, "comfyui")) == 3);
        CHECK(json_is_string(json_object_get(forms, "diffusers")));
        /* Weights are written short: 0.32, not 0.32000000000000001. */
        CHECK(contains(s, "\"weight\":0.32,"));
out:
        json_decref(root);
        free(s);
}

static void test_json_formats(void)
{
        json_t *root;
        char *s = NULL;

        CHECK(composer_result_to_json(&result, prompt, "json", &s) == 0);
        root = s ? json_loads(s, 0, NULL) : NULL;
        CHECK(root && !json_object_get(root, "forms") && json_object_get(root, "images"));
        json_decref(root);
        free(s);

        CHECK(composer_result_to_json(&result, prompt, "comfyui", &s) == 0);
        root = s ? json_loads(s, 0, NULL) : NULL;
        CHECK(json_object_size(json_object_get(root, "forms")) == 1);
        CHECK(json_is_object(json_object_get(json_object_get(root, "forms"), "comfyui")));
        json_decref(root);
        free(s);

        CHECK(composer_result_to_json(&result, prompt, "xyz", &s) == ST_EINVAL);
        CHECK(s == NULL);
}

/* A real run of the composer, end to end into JSON. */
static void test_json_from_composer(void)
{
        struct composer_candidate c[] = {{&docs[0], 0.6f}, {&docs[1], 0.5f}, {&docs[2], 0.4f}};
        struct composer_options o;
        struct composer_result r;
        struct embedder e;
        struct arena a;
        json_t *root;
        char *s = NULL;

        composer_options_default(&o);
        o.n_images = 3;
        arena_init(&a, 4u << 20);
        CHECK(embedder_init(&e, EMBED_DEFAULT_DIM) == 0);
        CHECK(composer_run(prompt, c, 3, &o, &e, &a, &r, NULL) == 0);
        CHECK(composer_result_to_json(&r, prompt, NULL, &s) == 0);
        root = s ? json_loads(s, 0, NULL) : NULL;
        CHECK(json_array_size(json_object_get(root, "images")) == 3);
        CHECK(json_array_size(json_object_get(root, "adapters")) == r.n_adapters);
        CHECK(r.n_adapters >= 2);
        json_decref(root);
        free(s);
        arena_release(&a);
}

/* ---- the request parser ---- */

static int parse(const char *body, struct arena *a, struct compose_request *req,
                 struct st_error *err)
{
        memset(err, 0, sizeof(*err));
        return compose_request_parse(body, strlen(body), a, req, err);
}

static void test_request(void)
{
        struct compose_request req;
        struct st_error err;
        struct arena a;

        arena_init(&a, 1u << 20);
        CHECK(parse("{\"prompt\":\"a corgi\",\"base_model\":\"SDXL\",\"n_images\":4,\"k\":50,"
                    "\"allow_nsfw\":true,\"allow_characters\":false,\"format\":\"a1111\","
                    "\"future\":{\"x\":[1,2]}}",
                    &a, &req, &err) == 0);
        CHECK(strcmp(req.prompt, "a corgi") == 0);
        CHECK(strcmp(req.base_model, "sdxl") == 0);
        CHECK(req.n_images == 4 && req.k == 50);
        CHECK(req.allow_nsfw && !req.allow_characters);
        CHECK(strcmp(req.format, "a1111") == 0);

        /* Defaults; null is absent. */
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":null,\"format\":null}", &a, &req, &err) == 0);
        CHECK(req.n_images == 1 && req.k == COMPOSE_REQUEST_DEFAULT_K);
        CHECK(req.base_model == NULL && req.format == NULL);
        CHECK(!req.allow_nsfw && !req.allow_characters);

        /* Base models: normalized names in any case, published names, nothing else. */
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":\"SDXL 1.0\"}", &a, &req, &err) == 0);
        CHECK(req.base_model && strcmp(req.base_model, "sdxl") == 0);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":\"sd15\"}", &a, &req, &err) == 0);
        CHECK(req.base_model && strcmp(req.base_model, "sd15") == 0);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":\"Pony\"}", &a, &req, &err) == 0);
        CHECK(req.base_model && strcmp(req.base_model, "pony") == 0);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":\"\"}", &a, &req, &err) == 0);
        CHECK(req.base_model == NULL);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":\"sdx1\"}", &a, &req, &err) == ST_EINVAL);
        CHECK(contains(err.msg, "base_model"));

        /* The body need not be NUL-terminated: only len bytes are read. */
        CHECK(compose_request_parse("{\"prompt\":\"x\"}garbage", 14, &a, &req, &err) == 0);
        CHECK(req.n_blocked == 0);

        /* min_rating: a number in 0..5; absent is -1 (the composer's default). */
        CHECK(req.min_rating == -1);
        CHECK(parse("{\"prompt\":\"x\",\"min_rating\":4.5}", &a, &req, &err) == 0 &&
              req.min_rating == 4.5);
        CHECK(parse("{\"prompt\":\"x\",\"min_rating\":0}", &a, &req, &err) == 0 &&
              req.min_rating == 0);
        CHECK(parse("{\"prompt\":\"x\",\"min_rating\":6}", &a, &req, &err) == ST_EINVAL);
        CHECK(contains(err.msg, "min_rating"));
        CHECK(parse("{\"prompt\":\"x\",\"min_rating\":\"high\"}", &a, &req, &err) == ST_ETYPE);

        /* Blocked ids: strings, none empty, with an embedded NUL or too many. */
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":[\"civitai:1@2\",\"hf:a/b@c\"]}", &a, &req,
                    &err) == 0);
        CHECK(req.n_blocked == 2 && strcmp(req.blocked[1], "hf:a/b@c") == 0);
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":null}", &a, &req, &err) == 0 &&
              req.n_blocked == 0);
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":\"civitai:1@2\"}", &a, &req, &err) == ST_ETYPE);
        CHECK(contains(err.msg, "blocked"));
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":[1]}", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":[\"\"]}", &a, &req, &err) == ST_EINVAL);
        CHECK(parse("{\"prompt\":\"x\",\"blocked\":[\"a\\u0000b\"]}", &a, &req, &err) == ST_EPARSE);
        {
                char body[8192];
                size_t len =
                    (size_t)snprintf(body, sizeof(body), "{\"prompt\":\"x\",\"blocked\":[");

                for (int i = 0; i <= COMPOSE_REQUEST_MAX_BLOCKED; i++)
                        len += (size_t)snprintf(body + len, sizeof(body) - len, "%s\"%d\"",
                                                i ? "," : "", i);
                snprintf(body + len, sizeof(body) - len, "]}");
                CHECK(parse(body, &a, &req, &err) == ST_ETOOBIG);
        }
        arena_release(&a);
}

static void test_request_hostile(void)
{
        struct compose_request req;
        struct st_error err;
        struct arena a;
        char *big;

        arena_init(&a, 1u << 20);
        CHECK(parse("[1,2]", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("42", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("\"prompt\"", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("", &a, &req, &err) < 0);
        CHECK(compose_request_parse(NULL, 0, &a, &req, &err) < 0);
        CHECK(parse("{}", &a, &req, &err) == ST_EMISSING);
        CHECK(contains(err.msg, "prompt"));
        CHECK(parse("{\"prompt\":42}", &a, &req, &err) == ST_ETYPE);
        CHECK(contains(err.msg, "prompt"));
        CHECK(parse("{\"prompt\":\"\"}", &a, &req, &err) == ST_EINVAL);
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":0}", &a, &req, &err) == ST_EINVAL);
        CHECK(contains(err.msg, "n_images"));
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":99}", &a, &req, &err) == ST_EINVAL);
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":2.0}", &a, &req, &err) == ST_ETYPE);
        CHECK(contains(err.msg, "n_images"));
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":\"2\"}", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("{\"prompt\":\"x\",\"n_images\":99999999999999999999}", &a, &req, &err) < 0);
        CHECK(parse("{\"prompt\":\"x\",\"k\":0}", &a, &req, &err) == ST_EINVAL);
        CHECK(parse("{\"prompt\":\"x\",\"k\":1001}", &a, &req, &err) == ST_EINVAL);
        CHECK(parse("{\"prompt\":\"x\",\"allow_nsfw\":\"yes\"}", &a, &req, &err) == ST_ETYPE);
        CHECK(contains(err.msg, "allow_nsfw"));
        CHECK(parse("{\"prompt\":\"x\",\"allow_characters\":1}", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":[]}", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("{\"prompt\":\"x\",\"format\":\"xyz\"}", &a, &req, &err) == ST_EINVAL);
        CHECK(contains(err.msg, "format"));
        CHECK(parse("{\"prompt\":\"x\",\"format\":7}", &a, &req, &err) == ST_ETYPE);
        CHECK(parse("{\"prompt\":\"a co", &a, &req, &err) == ST_ETRUNC);
        CHECK(parse("{\"prompt\":\"x\"", &a, &req, &err) == ST_ETRUNC);
        CHECK(parse("{\"prompt\":\"x\",}", &a, &req, &err) == ST_EPARSE);
        CHECK(parse("{\"prompt\":\"x\",\"prompt\":\"y\"}", &a, &req, &err) == ST_EPARSE);
        CHECK(parse("{\"prompt\":\"a\\u0000b\"}", &a, &req, &err) == ST_EPARSE);
        CHECK(parse("{\"prompt\":\"\xff\xfe\"}", &a, &req, &err) == ST_EPARSE);

        /* Size limits: prompt, base_model, body. */
        big = malloc(COMPOSE_REQUEST_MAX_BODY + 64);
        if (!big) {
                failures++;
                goto out;
        }
        snprintf(big, 32, "{\"prompt\":\"");
        memset(big + 11, 'a', COMPOSE_REQUEST_MAX_PROMPT + 1);
        snprintf(big + 11 + COMPOSE_REQUEST_MAX_PROMPT + 1, 8, "\"}");
        CHECK(parse(big, &a, &req, &err) == ST_ETOOBIG);
        snprintf(big + 11 + COMPOSE_REQUEST_MAX_PROMPT, 8, "\"}");
        CHECK(parse(big, &a, &req, &err) == 0);
        CHECK(parse("{\"prompt\":\"x\",\"base_model\":"
                    "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                    &a, &req, &err) == ST_ETOOBIG);
        memset(big, ' ', COMPOSE_REQUEST_MAX_BODY + 1);
        memcpy(big, "{\"prompt\":\"x\"}", 14);
        CHECK(compose_request_parse(big, COMPOSE_REQUEST_MAX_BODY + 1, &a, &req, &err) ==
              ST_ETOOBIG);
        CHECK(compose_request_parse(big, COMPOSE_REQUEST_MAX_BODY, &a, &req, &err) == 0);
        free(big);
out:
        arena_release(&a);
}

int main(void)
{
        test_a1111();
        test_comfyui();
        test_diffusers();
        test_diffusers_escaping();
        test_save_as();
        test_json();
        test_json_formats();
        test_json_from_composer();
        test_request();
        test_request_hostile();
        if (failures) {
                fprintf(stderr, "test_forms: %d checks failed\n", failures);
                return 1;
        }
        printf("test_forms: ok\n");
        return 0;
}
