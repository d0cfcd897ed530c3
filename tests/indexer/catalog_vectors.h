/*
 * catalog_vectors.h - vectors shaped like the catalog's, shared by
 * test_recall.c and bench/shard_bench.c (header only: the bench is built
 * outside CMake).
 *
 *   rows     the card text of each of the 231 models of
 *            $STYLUS_FIXTURES/civitai/models.json, "Title: <name>; Tags:
 *            <tag>, <tag>, ...;", embedded with the built-in embedder
 *            (proto/embed.h); to reach n rows, row r >= 231 is a copy of row
 *            r % 231 plus Gaussian noise of norm about CATALOG_NOISE (each
 *            component has deviation CATALOG_NOISE / sqrt(dim)), L2-normalized
 *            again.  A copy keeps cosine ~0.99 with its card: many near
 *            duplicates, as a real catalog has (re-uploads, versions,
 *            near-identical styles), and the hardest case for int8 ranking.
 *   queries  the 15 prompts of $STYLUS_FIXTURES/expected.json, embedded.
 *
 * Everything is deterministic (fixed seed), so a test or a benchmark gives
 * the same vectors on every run.  Strings and vectors are malloc'd; the
 * caller frees them.  Functions return 0 or -1 with a message on stderr.
 */
#ifndef STYLUS_TEST_CATALOG_VECTORS_H
#define STYLUS_TEST_CATALOG_VECTORS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "proto/embed.h"

#define CATALOG_NOISE 0.1  /* norm of the noise added to a copy */
#define CATALOG_TEXT  8192 /* bytes of one card text, at most */

/* Card texts of the fixture models: *texts has *n malloc'd strings. */
static int catalog_texts(const char *fixtures, char ***texts, size_t *n)
{
        char path[4096];
        json_error_t jerr;
        json_t *root, *model;
        size_t i;

        *texts = NULL;
        *n = 0;
        snprintf(path, sizeof(path), "%s/civitai/models.json", fixtures);
        root = json_load_file(path, 0, &jerr);
        if (!json_is_array(root)) {
                fprintf(stderr, "%s: %s\n", path, root ? "not an array" : jerr.text);
                json_decref(root);
                return -1;
        }
        *texts = calloc(json_array_size(root), sizeof(**texts));
        json_array_foreach(root, i, model)
        {
                const char *name = json_string_value(json_object_get(model, "name"));
                json_t *tags = json_object_get(model, "tags"), *tag;
                char *text = malloc(CATALOG_TEXT);
                size_t t, len;

                if (!*texts || !text) {
                        free(text);
                        break;
                }
                len = (size_t)snprintf(text, CATALOG_TEXT, "Title: %s; Tags:", name ? name : "");
                json_array_foreach(tags, t, tag)
                {
                        if (len < CATALOG_TEXT)
                                len += (size_t)snprintf(text + len, CATALOG_TEXT - len, "%s %s",
                                                        t ? "," : "", json_string_value(tag));
                }
                if (len < CATALOG_TEXT)
                        snprintf(text + len, CATALOG_TEXT - len, ";");
                (*texts)[(*n)++] = text;
        }
        json_decref(root);
        return *n > 0 ? 0 : -1;
}

/* The test prompts of expected.json: *prompts has *n malloc'd strings. */
static int catalog_prompts(const char *fixtures, char ***prompts, size_t *n)
{
        char path[4096];
        json_error_t jerr;
        json_t *root, *item;
        size_t i;

        *prompts = NULL;
        *n = 0;
        snprintf(path, sizeof(path), "%s/expected.json", fixtures);
        root = json_load_file(path, 0, &jerr);
        if (!json_is_array(root)) {
                fprintf(stderr, "%s: %s\n", path, root ? "not an array" : jerr.text);
                json_decref(root);
                return -1;
        }
        *prompts = calloc(json_array_size(root), sizeof(**prompts));
        json_array_foreach(root, i, item)
        {
                const char *p = json_string_value(json_object_get(item, "prompt"));

                if (!*prompts || !p || !((*prompts)[*n] = strdup(p)))
                        break;
                (*n)++;
        }
        json_decref(root);
        return *n > 0 ? 0 : -1;
}

static void catalog_free_strings(char **s, size_t n)
{
        for (size_t i = 0; s && i < n; i++)
                free(s[i]);
        free(s);
}

/* Embed n texts into out (n * e->dim floats). */
static int catalog_embed(const struct embedder *e, char **texts, size_t n, float *out)
{
        for (size_t i = 0; i < n; i++)
                if (embedder_embed(e, texts[i], strlen(texts[i]), out + i * (size_t)e->dim))
                        return -1;
        return 0;
}

static uint64_t catalog_random(uint64_t *state)
{
        uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
}

/* A standard normal deviate (Box-Muller). */
static double catalog_gauss(uint64_t *state)
{
        double u = ((double)(catalog_random(state) >> 11) + 0.5) / 9007199254740992.0;
        double v = (double)(catalog_random(state) >> 11) / 9007199254740992.0;

        return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* rows vectors from n_base cards: the cards, then copies with noise of that norm (see the top). */
static void catalog_replicate(const float *base, size_t n_base, int dim, size_t rows, double noise,
                              float *out)
{
        uint64_t state = 0x5EED0F5A11AD5ULL;
        double sigma = noise / sqrt((double)dim);

        for (size_t r = 0; r < rows; r++) {
                const float *b = base + (r % n_base) * (size_t)dim;
                float *v = out + r * (size_t)dim;
                double norm = 0.0;

                for (int i = 0; i < dim; i++) {
                        v[i] = (float)(b[i] + (r < n_base ? 0.0 : sigma * catalog_gauss(&state)));
                        norm += (double)v[i] * v[i];
                }
                norm = norm > 0.0 ? sqrt(norm) : 1.0;
                for (int i = 0; i < dim; i++)
                        v[i] = (float)(v[i] / norm);
        }
}

#endif
