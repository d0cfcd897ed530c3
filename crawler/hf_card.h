/*
 * hf_card.h - a Hugging Face model card (the repo's README.md): its YAML
 * front matter, read with libyaml, and its markdown body.
 *
 * Card layout (huggingface_hub's REGEX_YAML_BLOCK, docs/hub/model-cards):
 *
 *   [UTF-8 BOM][blank lines]---            opening line, exactly "---"
 *   license: openrail++                    front matter: one YAML mapping
 *   base_model: stabilityai/...            (str, or a list of str)
 *   instance_prompt: in the style of x
 *   tags: [lora, ...]                      (str, or a list of str)
 *   widget:                                list of {text, output: {url}}
 *   - text: a lighthouse
 *     output: {url: image_0.png}           repo-relative or absolute
 *   ---                                    closing line, exactly "---"
 *   # Title                                markdown body; its first "# " heading
 *   ...                                    outside code fences is the title
 *
 * A card whose first non-blank line is not "---" has no front matter: all
 * of it is the body.  Line ends may be LF or CRLF.
 *
 * Keys read (any other key is ignored; a key of another type than shown, a
 * plain null / ~ / empty value, or a short string of ST_LIMIT_STRING bytes
 * or more, counts as absent; of duplicate keys the first wins):
 *   base_model      str | [str]      -> base_models
 *   instance_prompt str              -> instance_prompt
 *   tags            str | [str]      -> tags
 *   license         str              -> license
 *   widget          [{text: str, output: {url: str}}] -> widgets (text cut
 *                   below ST_LIMIT_TEXT; an item without output.url keeps
 *                   url NULL; items past HF_CARD_MAX_WIDGETS are dropped)
 *
 * Hostile input: the front matter may be at most HF_CARD_MAX_FRONT_MATTER
 * bytes, HF_CARD_MAX_NODES YAML nodes and HF_CARD_MAX_DEPTH levels of
 * nesting (else ST_ETOOBIG).  Aliases (*name) are never expanded: an alias
 * node counts as absent, so an alias bomb costs one node per alias written.
 * The front matter must be UTF-8 (libyaml's reader checks; else ST_EPARSE);
 * the body is copied with invalid UTF-8 replaced by U+FFFD and NULs dropped,
 * cut below ST_LIMIT_TEXT bytes.
 *
 * Ownership: every pointer in a struct hf_card lives in the arena passed to
 * hf_parse_card, until arena_release().  Thread rules: pure function.
 */
#ifndef STYLUS_CRAWLER_HF_CARD_H
#define STYLUS_CRAWLER_HF_CARD_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"

#define HF_CARD_MAX_FRONT_MATTER (64u << 10) /* bytes of YAML */
#define HF_CARD_MAX_NODES        16384       /* scalars, lists, maps and aliases */
#define HF_CARD_MAX_DEPTH        32          /* nested lists and maps */
#define HF_CARD_MAX_WIDGETS      ST_LIMIT_IMAGES
#define HF_CARD_MAX_TITLE        256 /* bytes; a longer first heading is no title */

struct hf_widget {
        char *text; /* the example prompt, NULL when blank */
        char *url;  /* output.url as written (not resolved), NULL when absent */
};

struct hf_card {
        bool has_front_matter;      /* the card opened with a "---" line */
        struct st_strv base_models; /* in card order */
        char *instance_prompt;
        struct st_strv tags;
        char *license;
        struct hf_widget *widgets; /* n_widgets, in card order */
        size_t n_widgets;
        char *title; /* first "# " heading of the body, trimmed; NULL if none */
        char *body;  /* markdown after the front matter; NULL when blank */
};

/*
 * Parse len bytes of a model card into *out (zeroed first), allocating in a.
 * Returns:
 *   0            front matter read (or the card has none)
 *   ST_EPARSE    malformed YAML, front matter never closed, or not UTF-8
 *   ST_ETYPE     the front matter is not a mapping
 *   ST_ETOOBIG   front matter over one of the limits above
 *   ST_ENOMEM    arena full; *out is unspecified
 * On ST_EPARSE, ST_ETYPE and ST_ETOOBIG out->body and out->title are still
 * set (an unclosed front matter leaves the whole card as the body) and the
 * front-matter fields are empty, so a caller can keep the card text; err
 * says what was wrong, with a line and column for YAML errors.
 */
int hf_parse_card(const char *markdown, size_t len, struct arena *a, struct hf_card *out,
                  struct st_error *err);

#endif
