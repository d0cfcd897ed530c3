/*
 * html_text.h - model-card HTML to plain text, the way a reader sees it.
 *
 * Civitai descriptions are HTML fragments from a rich-text editor
 * (<p>, <ul><li><p>, <a>, <strong> ...); Hugging Face cards arrive as HTML
 * rendered from Markdown.  The paper strips tags with BeautifulSoup's
 * get_text(); we do a little better, because the text is what the composer
 * and the embedder read:
 *
 *   - block elements (p, div, br, li, h1-h6, tr, ul, ol, blockquote, pre, hr
 *     and a few more) end a line; paragraphs, headings and top-level lists are
 *     separated by one blank line, never more;
 *   - list items start with "- ", nested items are indented two spaces a level;
 *   - script, style, noscript, iframe, svg, template, object and head are
 *     skipped with everything inside them;
 *   - runs of whitespace (including &nbsp; and control characters) collapse to
 *     one space; lines carry no leading or trailing spaces;
 *   - boilerplate lines are dropped: a short line whose text or links ask for
 *     donations or follows (Ko-fi, Patreon, Discord invites, Twitter/X ...);
 *   - invalid UTF-8 in the input becomes U+FFFD, so the output is valid UTF-8.
 *
 * Thread rules: any thread may call these functions.  libxml2's error output is
 * silenced for the calling thread during the parse and restored afterwards.
 */
#ifndef STYLUS_REFINER_HTML_TEXT_H
#define STYLUS_REFINER_HTML_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/arena.h"
#include "proto/errors.h"

/*
 * Convert len bytes of HTML (need not be NUL-terminated) into plain text of at
 * most max_out bytes, cut with text_cut().  max_out is capped at ST_LIMIT_TEXT.
 * *out is NUL-terminated and allocated in a; it is "" for empty input, for
 * input with no text, and for input libxml2 cannot make a tree of.
 *
 * Errors: ST_EINVAL (NULL out or a, or NULL html with len > 0), ST_ETOOBIG
 * (len > ST_LIMIT_TEXT), ST_ENOMEM (malloc or the arena limit).
 */
int html_to_text(const char *html, size_t len, size_t max_out, struct arena *a, char **out,
                 struct st_error *err);

/*
 * Length of the longest prefix of text[0..len) to keep when it must fit in max
 * bytes: all of it when len <= max; otherwise the end of the last sentence
 * (". ", "! ", "? " or a line break) in the second half of the budget, else the
 * last word boundary in the second half, else the last whole UTF-8 character.
 * Trailing whitespace is not counted.  Never cuts inside a UTF-8 sequence.
 */
size_t text_cut(const char *text, size_t len, size_t max);

/*
 * Whether text[0..len) contains phrase (ASCII, lowercase) case-insensitively
 * as whole words: the match must not start inside a word and, when the
 * phrase ends with a letter or digit, must not end inside one, except for a
 * plural "s" ("cat" matches "Cats", not "category").  The offset of the first
 * match goes to *at when at is not NULL.  Used by the boilerplate filter, the
 * weight parser and the card refiner's keyword tables.
 */
bool text_find_phrase(const char *text, size_t len, const char *phrase, size_t *at);

#endif
