/*
 * forms.h - a composer_result in the forms users paste into their tools:
 * an A1111/Forge prompt, a ComfyUI API-workflow fragment, a diffusers
 * snippet, and the JSON answer of POST /v1/compose that carries them all.
 *
 * JSON answer (composer_result_to_json), one object:
 *
 *   key              type      meaning
 *   prompt           string    the prompt as received
 *   composer         string    "rules", or the model name of the LLM composer that chose
 *   composer_fallback string|null why the LLM composer fell back to the rules
 *                              (composer_llm.h; printable ASCII, at most 200 bytes);
 *                              null when it did not or there is no LLM composer
 *   base_model       string|null the requested base model, or the one the composer chose
 *   topics           [object]  in prompt order, empty ones kept:
 *     .topic         string      words of the prompt
 *     .adapters      [string]    adapter ids chosen for it, best first
 *   adapters         [object]  every chosen adapter, grouped by topic:
 *     .id            string      "civitai:<model>@<version>" or "hf:<repo>@<sha>"
 *     .name          string
 *     .task          string|null concept, style, ... (doc.h st_task)
 *     .topic         string      the topic it serves
 *     .weight        number      on image 0 (all active), 2 decimals
 *     .score         number      blended score that chose it (composer.c)
 *     .reason        string      why it was chosen
 *     .trigger_words [string]
 *     .base_model    string|null
 *     .download_url  string|null of the primary file (composer_primary_file)
 *     .sha256        string|null of the primary file
 *     .file_name     string|null of the primary file, as its source names it
 *     .save_as       string      the name the forms expect the file under (below)
 *     .card_url      string|null
 *   images           [object]  one per image, n_images in all:
 *     .adapters      [string]    ids applied on this image
 *     .weights       [number]    their weights, same order
 *     .a1111_prompt  string      forms_a1111() of this image
 *   excluded         object    candidates left out, by rule (composer.h):
 *                              base_model, nsfw, character, no_files,
 *                              low_rating, duplicate, weak_match, topic_full,
 *                              style_limit
 *   forms            object    for image 0; which keys depends on format:
 *     .a1111         string      forms_a1111()
 *     .comfyui       object      forms_comfyui(), checkpoint node "4"
 *     .diffusers     string      forms_diffusers()
 *
 *   format     "forms" holds
 *   NULL       a1111, comfyui, diffusers
 *   "json"     (no "forms" key)
 *   "a1111"    a1111 only; likewise "comfyui", "diffusers"
 *
 * The file name the forms use (save_as): the A1111 prompt names a LoRA by
 * its file name without extension, ComfyUI's LoraLoader by its file name,
 * and the diffusers snippet loads non-Hub adapters from "loras/<name>", so
 * all three use one name per adapter, the JSON's save_as:
 *   - Hugging Face: "<owner>__<repo>" and the primary file's extension
 *     (Hub LoRA files are mostly all "pytorch_lora_weights.safetensors");
 *   - otherwise (Civitai): the primary file's base name, as downloaded;
 *   - bytes no file system or A1111 prompt takes (/ \ : * ? " < > | and
 *     control bytes) become '_', a leading '.' too; the stem is cut to 120 bytes at
 *     a UTF-8 boundary; an extension that is not 1-15 letters or digits
 *     becomes ".safetensors";
 *   - when two adapters of one answer would get the same name (ignoring
 *     case), each gets "-<version>" (what follows '@' in its id) before the
 *     extension.
 * Save each download_url under save_as in the tool's LoRA folder.
 *
 * Ownership: every output is malloc'd (json_t: a new reference); the caller
 * frees it (json_decref).  Thread rules: none; no state is kept.
 * Errors: ST_ENOMEM, ST_EINVAL (image out of range, unknown format),
 * ST_ETOOBIG (an output over FORMS_MAX_OUTPUT bytes).
 */
#ifndef STYLUS_QUERY_FORMS_H
#define STYLUS_QUERY_FORMS_H

#include <jansson.h>
#include <stddef.h>

#include "query/composer.h"

#define FORMS_MAX_OUTPUT         (4u << 20) /* bytes of one string form or JSON answer */
#define FORMS_COMFYUI_CHECKPOINT "4"        /* CheckpointLoaderSimple of ComfyUI's default graph */
#define FORMS_COMFYUI_FIRST_NODE 100        /* id of the first LoraLoader node */

/*
 * A1111/Forge prompt of one image: the prompt lowercased, then
 * ", <lora:NAME:W>" for each adapter active on that image, W with 2
 * decimals: "a corgi in watercolor style, <lora:corgi_v2:0.64>".
 */
int forms_a1111(const struct composer_result *r, const char *prompt, size_t image, char **out);

/*
 * ComfyUI API-workflow fragment of one image: a chain of LoraLoader nodes
 * with ids "100", "101", ..., the first fed by checkpoint_node (NULL =
 * FORMS_COMFYUI_CHECKPOINT) outputs 0 (MODEL) and 1 (CLIP), each next one by
 * the previous.  Merge it into a workflow and feed the sampler's model and
 * the text encoders' clip from the last node.  No adapter: an empty object.
 *
 *   {"100": {"class_type": "LoraLoader", "_meta": {"title": "..."},
 *            "inputs": {"lora_name": "corgi_v2.safetensors",
 *                       "strength_model": 0.64, "strength_clip": 0.64,
 *                       "model": ["4", 0], "clip": ["4", 1]}}, "101": ...}
 */
int forms_comfyui(const struct composer_result *r, size_t image, const char *checkpoint_node,
                  json_t **out);

/*
 * diffusers snippet (Python) for a pipeline named `pipe`: one
 * load_lora_weights() per adapter, adapter names "a0", "a1", ... by index in
 * r->adapters, then set_adapters() with image 0's weights and, as comments,
 * the set_adapters() call of every further image.  Hugging Face adapters
 * load from their repo at the pinned revision; others (Civitai) from a local
 * "loras" folder, with the download URL in a comment, because
 * load_lora_weights() takes a repo id or a path, not a URL.  Every string
 * from the catalog is escaped as a Python literal or stripped of control
 * bytes in comments, so a hostile file name cannot inject code.
 */
int forms_diffusers(const struct composer_result *r, char **out);

/*
 * The name to save d's primary file under, as the forms use it when no
 * other adapter of the answer has the same (save_as above, without the
 * "-<version>" of a clash); *out is malloc'd.  ST_ENOMEM.
 */
int forms_save_as(const struct st_doc *d, char **out);

/* The JSON answer described above, compact; *out is malloc'd. */
int composer_result_to_json(const struct composer_result *r, const char *prompt, const char *format,
                            char **out);

#endif
