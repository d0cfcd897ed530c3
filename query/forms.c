/* forms.c - composer results as A1111, ComfyUI, diffusers and JSON (see forms.h). */
#include "query/forms.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/utf8.h"

/* ---- a growable string with a hard maximum and a sticky error ---- */

struct buf {
        char *p;
        size_t len;
        size_t cap;
        int rc; /* first error; later appends are no-ops */
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
        char *p;
        size_t cap;

        if (b->rc)
                return;
        if (n > FORMS_MAX_OUTPUT - b->len) {
                b->rc = ST_ETOOBIG;
                return;
        }
        if (b->len + n + 1 > b->cap) {
                cap = b->cap ? b->cap * 2 : 256;
                if (cap < b->len + n + 1)
                        cap = b->len + n + 1;
                p = realloc(b->p, cap);
                if (!p) {
                        b->rc = ST_ENOMEM;
                        return;
                }
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
        buf_add(b, s, strlen(s));
}

static void buf_weight(struct buf *b, double w)
{
        char tmp[32];
        int n = snprintf(tmp, sizeof(tmp), "%.2f", w);

        buf_add(b, tmp, n > 0 ? (size_t)n : 0);
}

/* Hand the string over to *out, or free it and return the error. */
static int buf_finish(struct buf *b, char **out)
{
        buf_add(b, "", 0);
        if (b->rc) {
                free(b->p);
                *out = NULL;
                return b->rc;
        }
        *out = b->p;
        return 0;
}

/* ---- names ---- */

static bool active(const struct composer_result *r, size_t image, size_t j)
{
        return r->masks[image * r->n_adapters + j];
}

static double weight(const struct composer_result *r, size_t image, size_t j)
{
        return r->weights[image * r->n_adapters + j];
}

/* Last path component of a file name ("dir/x.safetensors" -> "x.safetensors"). */
static const char *base_name(const char *path)
{
        const char *slash = strrchr(path, '/'), *back = strrchr(path, '\\');

        if (back && (!slash || back > slash))
                slash = back;
        return slash ? slash + 1 : path;
}

/* A byte that a file name on Linux, macOS or Windows, or A1111's <lora:NAME:W>, cannot hold. */
static bool bad_name_byte(unsigned char ch)
{
        return ch < 0x20 || ch == 0x7f || strchr("/\\:*?\"<>|", ch) != NULL;
}

/*
 * Append s[0..len) as part of a file name: bytes bad_name_byte() refuses
 * become '_', at most max bytes, not cut inside a UTF-8 sequence.
 */
static void name_part(struct buf *b, const char *s, size_t len, size_t max)
{
        len = utf8_fit(s, len, max);
        for (size_t i = 0; i < len; i++) {
                char c = bad_name_byte((unsigned char)s[i]) ? '_' : s[i];

                buf_add(b, &c, 1);
        }
}

/* The extension of the primary file (".safetensors" when it has none of 1-15 letters or digits). */
static void file_ext(struct buf *b, const struct st_doc *d)
{
        const struct st_file *f = composer_primary_file(d);
        const char *base = f && f->name ? base_name(f->name) : "";
        const char *dot = strrchr(base, '.');
        size_t n = dot && dot > base ? strlen(dot + 1) : 0;

        for (size_t i = 0; i < n; i++)
                if (!((dot[1 + i] >= 'a' && dot[1 + i] <= 'z') ||
                      (dot[1 + i] >= 'A' && dot[1 + i] <= 'Z') ||
                      (dot[1 + i] >= '0' && dot[1 + i] <= '9')))
                        n = 0;
        if (n == 0 || n > 15)
                buf_str(b, ".safetensors");
        else
                buf_add(b, dot, n + 1);
}

static bool hf_repo(const struct st_doc *d, struct buf *repo, struct buf *revision);

/*
 * The stem of the name to save an adapter's file under: a Hugging Face
 * adapter's repo as "owner__name" (their files are often all called
 * pytorch_lora_weights), else the primary file's base name without its
 * extension, else the adapter's name.  At most NAME_STEM_MAX bytes; never
 * empty, never starting with '.'.
 */
#define NAME_STEM_MAX 120
static void file_stem(struct buf *b, const struct st_doc *d)
{
        const struct st_file *f = composer_primary_file(d);
        struct buf repo = {0}, revision = {0};
        size_t start = b->len;

        if (hf_repo(d, &repo, &revision)) {
                char *slash = strchr(repo.p, '/');

                if (slash) {
                        name_part(b, repo.p, (size_t)(slash - repo.p), NAME_STEM_MAX / 2);
                        buf_str(b, "__");
                        name_part(b, slash + 1, strlen(slash + 1), NAME_STEM_MAX / 2);
                } else {
                        name_part(b, repo.p, repo.len, NAME_STEM_MAX);
                }
        } else if (f && f->name && *base_name(f->name)) {
                const char *base = base_name(f->name), *dot = strrchr(base, '.');

                name_part(b, base, dot && dot > base ? (size_t)(dot - base) : strlen(base),
                          NAME_STEM_MAX);
        } else if (d->name) {
                name_part(b, d->name, strlen(d->name), NAME_STEM_MAX);
        }
        if (!b->rc)
                b->rc = repo.rc ? repo.rc : revision.rc;
        free(repo.p);
        free(revision.p);
        if (b->rc)
                return;
        if (b->len == start)
                buf_str(b, "lora");
        else if (b->p[start] == '.')
                b->p[start] = '_';
}

/* Stem and extension of d's file, whatever other adapters an answer has. */
static char *plain_name(const struct st_doc *d, int *rc)
{
        struct buf b = {0};
        char *s = NULL;

        file_stem(&b, d);
        file_ext(&b, d);
        if (buf_finish(&b, &s) && !*rc)
                *rc = ST_ENOMEM;
        return s;
}

int forms_save_as(const struct st_doc *d, char **out)
{
        int rc = 0;

        *out = plain_name(d, &rc);
        return rc;
}

/*
 * The name to save adapter j's file under, which the A1111, ComfyUI and
 * local diffusers forms all use: plain_name(), and when another adapter of
 * the result has the same one (ignoring case), "-" and j's version (what
 * follows '@' in its id, at most 12 bytes) before the extension, so that
 * two files never overwrite each other in one folder.  With ext false,
 * without the extension (A1111's NAME).
 */
static void save_as(struct buf *b, const struct composer_result *r, size_t j, bool ext)
{
        const struct st_doc *d = r->adapters[j].doc;
        char *mine = plain_name(d, &b->rc);
        bool clash = false;

        for (size_t i = 0; mine && i < r->n_adapters && !clash; i++) {
                char *other = i == j ? NULL : plain_name(r->adapters[i].doc, &b->rc);

                clash = other && strcasecmp(mine, other) == 0;
                free(other);
        }
        free(mine);
        file_stem(b, d);
        if (clash) {
                const char *at = d->id ? strrchr(d->id, '@') : NULL;
                char tmp[32];

                buf_str(b, "-");
                if (at && at[1]) {
                        name_part(b, at + 1, strlen(at + 1), 12);
                } else {
                        snprintf(tmp, sizeof(tmp), "%zu", j);
                        buf_str(b, tmp);
                }
        }
        if (ext)
                file_ext(b, d);
}

/* save_as() as a new string (NULL: out of memory, noted in *rc). */
static char *save_as_string(const struct composer_result *r, size_t j, bool ext, int *rc)
{
        struct buf b = {0};
        char *s = NULL;

        save_as(&b, r, j, ext);
        if (buf_finish(&b, &s) && !*rc)
                *rc = ST_ENOMEM;
        return s;
}

/* ---- A1111 ---- */

int forms_a1111(const struct composer_result *r, const char *prompt, size_t image, char **out)
{
        struct buf b = {0};

        *out = NULL;
        if (image >= r->n_images)
                return ST_EINVAL;
        for (const char *p = prompt; *p; p++) {
                char c = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;

                buf_add(&b, &c, 1);
        }
        for (size_t j = 0; j < r->n_adapters; j++) {
                if (!active(r, image, j))
                        continue;
                buf_str(&b, ", <lora:");
                save_as(&b, r, j, false);
                buf_str(&b, ":");
                buf_weight(&b, weight(r, image, j));
                buf_str(&b, ">");
        }
        return buf_finish(&b, out);
}

/* ---- JSON helpers: sticky ST_ENOMEM in *rc ---- */

/* A JSON string of s (not valid UTF-8: non-ASCII bytes become '?'); NULL gives null. */
static json_t *text(const char *s)
{
        json_t *v;
        char *copy;

        if (!s)
                return json_null();
        v = json_string(s);
        if (v)
                return v;
        copy = strdup(s);
        if (!copy)
                return NULL;
        for (char *p = copy; *p; p++)
                if ((unsigned char)*p >= 0x80)
                        *p = '?';
        v = json_string(copy);
        free(copy);
        return v;
}

static void put(json_t *o, const char *key, json_t *v, int *rc)
{
        if (!v || json_object_set_new(o, key, v)) {
                if (!*rc)
                        *rc = ST_ENOMEM;
        }
}

static void push(json_t *arr, json_t *v, int *rc)
{
        if (!v || json_array_append_new(arr, v)) {
                if (!*rc)
                        *rc = ST_ENOMEM;
        }
}

static json_t *string_array(const struct st_strv *v, int *rc)
{
        json_t *arr = json_array();

        for (size_t i = 0; arr && i < v->n; i++)
                push(arr, text(v->v[i]), rc);
        return arr;
}

/* ---- ComfyUI ---- */

static json_t *link(const char *node, int output)
{
        return json_pack("[si]", node, output);
}

static json_t *lora_loader(const struct composer_result *r, size_t image, size_t j,
                           const char *prev, int *rc)
{
        json_t *node = json_object(), *inputs = json_object(), *meta = json_object();
        const struct st_doc *d = r->adapters[j].doc;
        char *name = save_as_string(r, j, true, rc);

        if (!node || !inputs || !meta || !name) {
                json_decref(node);
                json_decref(inputs);
                json_decref(meta);
                free(name);
                *rc = *rc ? *rc : ST_ENOMEM;
                return NULL;
        }
        put(inputs, "lora_name", text(name), rc);
        put(inputs, "strength_model", json_real(weight(r, image, j)), rc);
        put(inputs, "strength_clip", json_real(weight(r, image, j)), rc);
        put(inputs, "model", link(prev, 0), rc);
        put(inputs, "clip", link(prev, 1), rc);
        put(meta, "title", text(d->name ? d->name : name), rc);
        put(node, "class_type", json_string("LoraLoader"), rc);
        put(node, "_meta", meta, rc);
        put(node, "inputs", inputs, rc);
        free(name);
        return node;
}

int forms_comfyui(const struct composer_result *r, size_t image, const char *checkpoint_node,
                  json_t **out)
{
        char prev[32], id[32];
        json_t *graph;
        int rc = 0, node_id = FORMS_COMFYUI_FIRST_NODE;

        *out = NULL;
        if (!checkpoint_node)
                checkpoint_node = FORMS_COMFYUI_CHECKPOINT;
        if (image >= r->n_images || strlen(checkpoint_node) >= sizeof(prev))
                return ST_EINVAL;
        snprintf(prev, sizeof(prev), "%s", checkpoint_node);
        graph = json_object();
        if (!graph)
                return ST_ENOMEM;
        for (size_t j = 0; j < r->n_adapters && !rc; j++) {
                if (!active(r, image, j))
                        continue;
                snprintf(id, sizeof(id), "%d", node_id++);
                put(graph, id, lora_loader(r, image, j, prev, &rc), &rc);
                snprintf(prev, sizeof(prev), "%s", id);
        }
        if (rc) {
                json_decref(graph);
                return rc;
        }
        *out = graph;
        return 0;
}

/* ---- diffusers ---- */

/* s as a double-quoted Python literal; control bytes, quote and backslash escaped. */
static void py_quote(struct buf *b, const char *s)
{
        buf_str(b, "\"");
        for (; s && *s; s++) {
                unsigned char ch = (unsigned char)*s;
                char esc[8];

                if (ch == '"' || ch == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char)ch;
                        buf_add(b, esc, 2);
                } else if (ch < 0x20 || ch == 0x7f) {
                        snprintf(esc, sizeof(esc), "\\x%02x", ch);
                        buf_add(b, esc, 4);
                } else {
                        buf_add(b, s, 1);
                }
        }
        buf_str(b, "\"");
}

/* s inside a Python comment: control bytes (a newline would end it) become '?'. */
static void py_comment(struct buf *b, const char *s)
{
        for (; s && *s; s++) {
                char c = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;

                buf_add(b, &c, 1);
        }
}

/* The diffusers adapter name of r->adapters[j], "a<j>", quoted for code or bare for comments. */
static void adapter_var(struct buf *b, size_t j, bool quoted)
{
        char tmp[32];
        int n = snprintf(tmp, sizeof(tmp), quoted ? "\"a%zu\"" : "a%zu", j);

        buf_add(b, tmp, (size_t)n);
}

/* "hf:user/repo@sha" -> repo and revision, copied into the buffers given. */
static bool hf_repo(const struct st_doc *d, struct buf *repo, struct buf *revision)
{
        const char *id = d->id, *at;

        if (!id || strncmp(id, "hf:", 3) != 0 || !d->source || strcmp(d->source, "hf") != 0)
                return false;
        id += 3;
        at = strchr(id, '@');
        buf_add(repo, id, at ? (size_t)(at - id) : strlen(id));
        if (at)
                buf_str(revision, at + 1);
        return repo->len > 0;
}

/*
 * One adapter: a comment naming it, then its load_lora_weights() call, from
 * the Hub for Hugging Face adapters, else from the local "loras" folder.
 */
static void load_line(struct buf *b, const struct composer_result *r, size_t j)
{
        const struct st_doc *d = r->adapters[j].doc;
        const struct st_file *f = composer_primary_file(d);
        struct buf repo = {0}, revision = {0}, file = {0};
        bool hub = hf_repo(d, &repo, &revision) && f && f->name;

        save_as(&file, r, j, true);
        buf_str(b, "# ");
        adapter_var(b, j, false);
        buf_str(b, ": ");
        py_comment(b, d->name);
        if (hub) {
                buf_str(b, "\npipe.load_lora_weights(");
                py_quote(b, repo.p);
                buf_str(b, ", weight_name=");
                py_quote(b, f->name);
                if (revision.len) {
                        buf_str(b, ", revision=");
                        py_quote(b, revision.p);
                }
        } else {
                buf_str(b, ", download ");
                py_comment(b, f && f->download_url ? f->download_url : "(no URL)");
                buf_str(b, " to loras/");
                py_comment(b, file.p);
                buf_str(b, "\npipe.load_lora_weights(\"loras\", weight_name=");
                py_quote(b, file.p);
        }
        buf_str(b, ", adapter_name=");
        adapter_var(b, j, true);
        buf_str(b, ")\n");
        if (!b->rc)
                b->rc = repo.rc ? repo.rc : revision.rc ? revision.rc : file.rc;
        free(repo.p);
        free(revision.p);
        free(file.p);
}

static void set_adapters_line(struct buf *b, const struct composer_result *r, size_t image)
{
        bool first = true;

        buf_str(b, "pipe.set_adapters([");
        for (size_t j = 0; j < r->n_adapters; j++) {
                if (!active(r, image, j))
                        continue;
                buf_str(b, first ? "" : ", ");
                adapter_var(b, j, true);
                first = false;
        }
        buf_str(b, "], adapter_weights=[");
        first = true;
        for (size_t j = 0; j < r->n_adapters; j++) {
                if (!active(r, image, j))
                        continue;
                buf_str(b, first ? "" : ", ");
                buf_weight(b, weight(r, image, j));
                first = false;
        }
        buf_str(b, "])\n");
}

int forms_diffusers(const struct composer_result *r, char **out)
{
        struct buf b = {0};
        char tmp[64];

        if (r->n_adapters == 0) {
                buf_str(&b, "# stylus-catalog: no adapter matched this prompt\n");
                return buf_finish(&b, out);
        }
        for (size_t j = 0; j < r->n_adapters; j++)
                load_line(&b, r, j);
        set_adapters_line(&b, r, 0);
        for (size_t i = 1; i < r->n_images; i++) {
                snprintf(tmp, sizeof(tmp), "# image %zu: ", i);
                buf_str(&b, tmp);
                set_adapters_line(&b, r, i);
        }
        return buf_finish(&b, out);
}

/* ---- the JSON answer ---- */

static double round_to(double x, double unit)
{
        return round(x / unit) * unit;
}

static json_t *adapter_json(const struct composer_result *r, size_t j, int *rc)
{
        const struct composer_adapter *ad = &r->adapters[j];
        const struct st_doc *d = ad->doc;
        const struct st_file *f = composer_primary_file(d);
        json_t *o = json_object();
        char *local;

        if (!o)
                return NULL;
        local = save_as_string(r, j, true, rc);
        put(o, "id", text(d->id), rc);
        put(o, "name", text(d->name), rc);
        put(o, "task", text(d->task), rc);
        put(o, "topic", text(r->topics[ad->topic].text), rc);
        put(o, "weight", json_real(ad->weight), rc);
        put(o, "score", json_real(round_to(ad->score, 0.001)), rc);
        put(o, "reason", text(ad->reason), rc);
        put(o, "trigger_words", string_array(&d->trigger_words, rc), rc);
        put(o, "base_model", text(d->base_model), rc);
        put(o, "download_url", text(f ? f->download_url : NULL), rc);
        put(o, "sha256", text(f ? f->sha256 : NULL), rc);
        put(o, "file_name", text(f ? f->name : NULL), rc);
        put(o, "save_as", local ? text(local) : NULL, rc);
        free(local);
        put(o, "card_url", text(d->card_url), rc);
        return o;
}

static json_t *topics_json(const struct composer_result *r, int *rc)
{
        json_t *arr = json_array();

        for (size_t t = 0; arr && t < r->n_topics; t++) {
                const struct composer_topic *topic = &r->topics[t];
                json_t *o = json_object(), *ids = json_array();

                for (size_t k = 0; ids && k < topic->n_adapters; k++)
                        push(ids, text(r->adapters[topic->adapters[k]].doc->id), rc);
                if (o) {
                        put(o, "topic", text(topic->text), rc);
                        put(o, "adapters", ids, rc);
                } else {
                        json_decref(ids);
                }
                push(arr, o, rc);
        }
        return arr;
}

static json_t *image_json(const struct composer_result *r, const char *prompt, size_t image,
                          int *rc)
{
        json_t *o = json_object(), *ids = json_array(), *weights = json_array();
        char *a1111 = NULL;
        int err;

        for (size_t j = 0; ids && weights && j < r->n_adapters; j++) {
                if (!active(r, image, j))
                        continue;
                push(ids, text(r->adapters[j].doc->id), rc);
                push(weights, json_real(weight(r, image, j)), rc);
        }
        if ((err = forms_a1111(r, prompt, image, &a1111)) && !*rc)
                *rc = err;
        if (!o) {
                json_decref(ids);
                json_decref(weights);
                free(a1111);
                return NULL;
        }
        put(o, "adapters", ids, rc);
        put(o, "weights", weights, rc);
        put(o, "a1111_prompt", a1111 ? text(a1111) : NULL, rc);
        free(a1111);
        return o;
}

static json_t *excluded_json(const struct composer_excluded *x)
{
        return json_pack("{sI sI sI sI sI sI sI sI sI}", "base_model", (json_int_t)x->base_model,
                         "nsfw", (json_int_t)x->nsfw, "character", (json_int_t)x->character,
                         "no_files", (json_int_t)x->no_files, "low_rating",
                         (json_int_t)x->low_rating, "duplicate", (json_int_t)x->duplicate,
                         "weak_match", (json_int_t)x->weak_match, "topic_full",
                         (json_int_t)x->topic_full, "style_limit", (json_int_t)x->style_limit);
}

static json_t *string_form(int err, char *s, int *rc)
{
        json_t *v = NULL;

        if (err && !*rc)
                *rc = err;
        if (!err)
                v = text(s);
        free(s);
        return v;
}

static json_t *forms_json(const struct composer_result *r, const char *prompt, const char *format,
                          int *rc)
{
        json_t *o = json_object(), *comfy = NULL;
        char *s = NULL;
        int err;

        if (!o)
                return NULL;
        if (!format || strcmp(format, "a1111") == 0) {
                err = forms_a1111(r, prompt, 0, &s);
                put(o, "a1111", string_form(err, s, rc), rc);
        }
        if (!format || strcmp(format, "comfyui") == 0) {
                if ((err = forms_comfyui(r, 0, NULL, &comfy)) && !*rc)
                        *rc = err;
                put(o, "comfyui", comfy, rc);
        }
        if (!format || strcmp(format, "diffusers") == 0) {
                err = forms_diffusers(r, &s);
                put(o, "diffusers", string_form(err, s, rc), rc);
        }
        return o;
}

static bool known_format(const char *format)
{
        static const char *const names[] = {"json", "a1111", "comfyui", "diffusers"};

        for (size_t i = 0; format && i < sizeof(names) / sizeof(*names); i++)
                if (strcmp(format, names[i]) == 0)
                        return true;
        return !format;
}

int composer_result_to_json(const struct composer_result *r, const char *prompt, const char *format,
                            char **out)
{
        json_t *root, *adapters = NULL, *images = NULL;
        int rc = 0;

        *out = NULL;
        if (!known_format(format))
                return ST_EINVAL;
        root = json_object();
        if (!root)
                return ST_ENOMEM;
        put(root, "prompt", text(prompt), &rc);
        put(root, "composer", text(r->composer), &rc);
        put(root, "composer_fallback", text(r->fallback), &rc);
        put(root, "base_model", text(r->base_model), &rc);
        put(root, "topics", topics_json(r, &rc), &rc);
        adapters = json_array();
        for (size_t j = 0; adapters && j < r->n_adapters; j++)
                push(adapters, adapter_json(r, j, &rc), &rc);
        put(root, "adapters", adapters, &rc);
        images = json_array();
        for (size_t i = 0; images && i < r->n_images; i++)
                push(images, image_json(r, prompt, i, &rc), &rc);
        put(root, "images", images, &rc);
        put(root, "excluded", excluded_json(&r->excluded), &rc);
        if (!format || strcmp(format, "json") != 0)
                put(root, "forms", forms_json(r, prompt, format, &rc), &rc);
        if (!rc) {
                *out = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
                if (!*out)
                        rc = ST_ENOMEM;
                else if (strlen(*out) > FORMS_MAX_OUTPUT)
                        rc = ST_ETOOBIG;
        }
        json_decref(root);
        if (rc) {
                free(*out);
                *out = NULL;
        }
        return rc;
}
