/* prom_text.c - STATUS as Prometheus text (see prom_text.h). */
#include "ops/prom_text.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_BYTES   200
#define LABELS_MAX_BYTES 600

struct sample {
        char name[NAME_MAX_BYTES];
        char labels[LABELS_MAX_BYTES]; /* "" or `a="x",b="y"` */
        double value;
        size_t order; /* position found, to keep the map's order within a name */
};

struct walk {
        struct sample *samples;
        size_t n, cap;
        int rc;
        struct st_error *err;
};

/* Label name of the collection under key, or NULL when key is no collection. */
static const char *collection_label(const char *key, size_t len)
{
        static const char *const table[][2] = {
            {"jobs", "stage"}, {"sources", "source"}, {"subscribers", "subscriber"}};

        for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
                if (strlen(table[i][0]) == len && memcmp(table[i][0], key, len) == 0)
                        return table[i][1];
        return NULL;
}

/* Append s[0..len) to a name at name[*at] (room cap), '_' for bytes a name cannot hold. */
static bool name_append(char *name, size_t *at, size_t cap, const char *s, size_t len)
{
        if (*at + len + 1 > cap)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_';

                name[(*at)++] = ok ? c : '_';
        }
        name[*at] = '\0';
        return true;
}

/* Append `,label="value"` (no comma when first), value escaped. */
static bool label_append(char *labels, size_t cap, const char *label, const char *v, size_t len)
{
        size_t at = strlen(labels);
        int n = snprintf(labels + at, cap - at, "%s%s=\"", at ? "," : "", label);

        if (n < 0 || (size_t)n >= cap - at)
                return false;
        at += (size_t)n;
        for (size_t i = 0; i < len; i++) {
                const char *esc = v[i] == '\\'   ? "\\\\"
                                  : v[i] == '"'  ? "\\\""
                                  : v[i] == '\n' ? "\\n"
                                                 : NULL;
                size_t m = esc ? 2 : 1;

                if (at + m + 2 > cap)
                        return false;
                memcpy(labels + at, esc ? esc : &v[i], m);
                at += m;
        }
        labels[at++] = '"';
        labels[at] = '\0';
        return true;
}

static void add_sample(struct walk *w, const char *name, const char *labels, double value)
{
        if (w->rc)
                return;
        if (w->n == PROM_MAX_SAMPLES) {
                w->rc =
                    st_fail(w->err, ST_ETOOBIG, "status: more than %d samples", PROM_MAX_SAMPLES);
                return;
        }
        if (w->n == w->cap) {
                size_t cap = w->cap ? w->cap * 2 : 64;
                struct sample *s = realloc(w->samples, cap * sizeof(*s));

                if (!s) {
                        w->rc = st_fail(w->err, ST_ENOMEM, "status: out of memory");
                        return;
                }
                w->samples = s;
                w->cap = cap;
        }
        snprintf(w->samples[w->n].name, NAME_MAX_BYTES, "%s", name);
        snprintf(w->samples[w->n].labels, LABELS_MAX_BYTES, "%s", labels);
        w->samples[w->n].value = value;
        w->samples[w->n].order = w->n;
        w->n++;
}

static void walk_map(struct walk *w, const msgpack_object *map, const char *name,
                     const char *labels, const char *label, int depth);

/* One value at name (and labels): a sample, a map to descend, or nothing. */
static void walk_value(struct walk *w, const msgpack_object *v, const char *name,
                       const char *labels, const char *label, int depth)
{
        switch (v->type) {
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
                add_sample(w, name, labels, (double)v->via.u64);
                break;
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
                add_sample(w, name, labels, (double)v->via.i64);
                break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
                add_sample(w, name, labels, v->via.f64);
                break;
        case MSGPACK_OBJECT_BOOLEAN:
                add_sample(w, name, labels, v->via.boolean ? 1.0 : 0.0);
                break;
        case MSGPACK_OBJECT_MAP:
                walk_map(w, v, name, labels, label, depth + 1);
                break;
        default:
                break; /* strings, arrays, nil, bin: not samples */
        }
}

/*
 * The entries of map under name.  With label set, map is a collection: its
 * keys become that label's values and the name stays.
 */
static void walk_map(struct walk *w, const msgpack_object *map, const char *name,
                     const char *labels, const char *label, int depth)
{
        if (depth > PROM_MAX_DEPTH) {
                if (!w->rc)
                        w->rc = st_fail(w->err, ST_ETOOBIG, "status: nested deeper than %d",
                                        PROM_MAX_DEPTH);
                return;
        }
        for (uint32_t i = 0; i < map->via.map.size && !w->rc; i++) {
                const msgpack_object *k = &map->via.map.ptr[i].key;
                const msgpack_object *v = &map->via.map.ptr[i].val;
                char child[NAME_MAX_BYTES], child_labels[LABELS_MAX_BYTES];
                size_t at = strlen(name);

                if (k->type != MSGPACK_OBJECT_STR)
                        continue;
                snprintf(child, sizeof(child), "%s", name);
                snprintf(child_labels, sizeof(child_labels), "%s", labels);
                if (label) {
                        if (!label_append(child_labels, sizeof(child_labels), label, k->via.str.ptr,
                                          k->via.str.size))
                                continue; /* a label value too long to show */
                        walk_value(w, v, child, child_labels, NULL, depth);
                        continue;
                }
                if (!name_append(child, &at, sizeof(child), "_", 1) ||
                    !name_append(child, &at, sizeof(child), k->via.str.ptr, k->via.str.size))
                        continue; /* a name too long to show */
                walk_value(w, v, child, child_labels,
                           v->type == MSGPACK_OBJECT_MAP
                               ? collection_label(k->via.str.ptr, k->via.str.size)
                               : NULL,
                           depth);
        }
}

static int by_name(const void *a, const void *b)
{
        const struct sample *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* shard="I/N" when status is a shard's ("shard": [I, N]); "" otherwise. */
static const char *role_of(const msgpack_object *status, char *labels, size_t size)
{
        for (uint32_t i = 0; i < status->via.map.size; i++) {
                const msgpack_object *k = &status->via.map.ptr[i].key;
                const msgpack_object *v = &status->via.map.ptr[i].val;

                if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == 5 &&
                    memcmp(k->via.str.ptr, "shard", 5) == 0 && v->type == MSGPACK_OBJECT_ARRAY &&
                    v->via.array.size == 2 &&
                    v->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                    v->via.array.ptr[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
                        snprintf(labels, size, "shard=\"%llu/%llu\"",
                                 (unsigned long long)v->via.array.ptr[0].via.u64,
                                 (unsigned long long)v->via.array.ptr[1].via.u64);
                        return "stylus_shard";
                }
        }
        labels[0] = '\0';
        return "stylus_catalog";
}

int prom_write_status(const msgpack_object *status, FILE *out, struct st_error *err)
{
        struct walk w = {.err = err};
        char labels[64];
        const char *role;

        if (status->type != MSGPACK_OBJECT_MAP)
                return st_fail(err, ST_ETYPE, "status: not a map");
        role = role_of(status, labels, sizeof(labels));
        walk_map(&w, status, role, labels, NULL, 0);
        if (!w.rc)
                qsort(w.samples, w.n, sizeof(*w.samples), by_name);
        for (size_t i = 0; i < w.n && !w.rc; i++) {
                const struct sample *s = &w.samples[i];

                if (i == 0 || strcmp(s->name, w.samples[i - 1].name))
                        fprintf(out, "# TYPE %s gauge\n", s->name);
                fprintf(out, "%s%s%s%s ", s->name, s->labels[0] ? "{" : "", s->labels,
                        s->labels[0] ? "}" : "");
                if (s->value == (double)(int64_t)s->value && fabs(s->value) < 9007199254740992.0)
                        fprintf(out, "%lld\n", (long long)s->value); /* counters, exactly */
                else
                        fprintf(out, "%.17g\n", s->value);
        }
        if (!w.rc && (fflush(out) || ferror(out)))
                w.rc = st_fail(err, ST_EIO, "status: cannot write the metrics");
        free(w.samples);
        return w.rc;
}
