/*
 * html_text.c - card HTML to plain text: libxml2 builds the tree (its HTML
 * parser recovers from anything), an iterative walk writes lines into a
 * bounded buffer, a line that turns out to be boilerplate is taken back.
 *
 * The walk never recurses, so a deeply nested card cannot exhaust the stack.
 * Line breaks are not written when an element asks for them but remembered
 * as "pending" and written before the next text, which is what collapses
 * empty paragraphs and keeps breaks off the start and end of the output.
 */
#include "refiner/html_text.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlversion.h>
#include <libxml/xmlerror.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/doc.h"
#include "proto/utf8.h"

#define PARSE_OPTIONS                                                                              \
        (HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |       \
         HTML_PARSE_NODEFDTD | HTML_PARSE_COMPACT)

/* Lines longer than this carry real content even when they mention Patreon. */
#define BOILERPLATE_MAX_LINE 300
/*
 * Room past max_out in the working buffer.  When the buffer fills, the open
 * line began before max_out and so is longer than BOILERPLATE_MAX_LINE (it
 * cannot be boilerplate), or began after max_out (it will be cut anyway).
 */
#define LINE_SLACK       (BOILERPLATE_MAX_LINE + 2 + 2 * MAX_INDENT_LEVEL + 2 + 64)
#define MAX_INDENT_LEVEL 8

enum pending { BREAK_NONE, BREAK_LINE, BREAK_PARA };

enum element_kind {
        EL_INLINE, /* not in the table: text flows through */
        EL_SKIP,   /* dropped with everything inside */
        EL_LINE,   /* ends a line */
        EL_PARA,   /* ends a paragraph: a blank line, or a line break inside lists */
        EL_LIST,
        EL_ITEM,
        EL_PRE,
        EL_CELL, /* table cell: a space between cells */
        EL_LINK,
};

static const struct {
        const char *name;
        enum element_kind kind;
} elements[] = {
    /* Not text a reader sees. */
    {"script", EL_SKIP},
    {"style", EL_SKIP},
    {"noscript", EL_SKIP},
    {"iframe", EL_SKIP},
    {"svg", EL_SKIP},
    {"template", EL_SKIP},
    {"object", EL_SKIP},
    {"embed", EL_SKIP},
    {"head", EL_SKIP},
    {"math", EL_SKIP},
    /* Line breaks. */
    {"br", EL_LINE},
    {"div", EL_LINE},
    {"tr", EL_LINE},
    {"dt", EL_LINE},
    {"dd", EL_LINE},
    {"figcaption", EL_LINE},
    {"caption", EL_LINE},
    {"summary", EL_LINE},
    /* Paragraphs. */
    {"p", EL_PARA},
    {"h1", EL_PARA},
    {"h2", EL_PARA},
    {"h3", EL_PARA},
    {"h4", EL_PARA},
    {"h5", EL_PARA},
    {"h6", EL_PARA},
    {"blockquote", EL_PARA},
    {"hr", EL_PARA},
    {"table", EL_PARA},
    {"section", EL_PARA},
    {"article", EL_PARA},
    {"header", EL_PARA},
    {"footer", EL_PARA},
    {"figure", EL_PARA},
    {"details", EL_PARA},
    {"main", EL_PARA},
    {"aside", EL_PARA},
    {"dl", EL_PARA},
    /* The rest. */
    {"ul", EL_LIST},
    {"ol", EL_LIST},
    {"menu", EL_LIST},
    {"li", EL_ITEM},
    {"pre", EL_PRE},
    {"td", EL_CELL},
    {"th", EL_CELL},
    {"a", EL_LINK},
};

/*
 * A short line (or a line linking somewhere) that contains one of these asks
 * the reader for money or follows; it says nothing about what the adapter
 * does and would only pollute descriptions and embeddings.  "tip" alone is
 * not listed: "Tip: use with ..." is usage advice.  The same table is matched
 * against link targets, so "ko-fi" catches https://ko-fi.com/...
 */
static const char *const boilerplate_phrases[] = {
    /* Money. */
    "ko-fi",
    "kofi",
    "patreon",
    "buy me a coffee",
    "buymeacoffee",
    "paypal",
    "donate",
    "donation",
    "tip me",
    "tip jar",
    "leave a tip",
    "support me",
    "support my work",
    "fanbox",
    /* Follows. */
    "follow me",
    "subscribe",
    "discord.gg",
    "discord.com/invite",
    "join my discord",
    "join our discord",
    "twitter",
    "x.com/",
    "instagram",
    "tiktok",
};

/* A bounded, growable byte buffer (malloc'd; the result is copied to the arena). */
struct textbuf {
        char *p;
        size_t len;
        size_t cap; /* bytes allocated */
        size_t max; /* hard maximum of len */
        bool full;  /* an append hit max; what follows is not needed */
};

struct walk {
        struct textbuf out;
        int err;                        /* first error, stops the walk */
        int list_depth;                 /* open ul/ol */
        int pre_depth;                  /* open pre: newlines in text are line breaks */
        enum pending pending;           /* break to write before the next text */
        bool pending_space;             /* whitespace seen since the last text */
        bool item_pending;              /* a list item began; its "- " comes with its first text */
        int item_depth;                 /* list depth of that item */
        bool line_open;                 /* text written since the last break */
        size_t line_undo;               /* out.len before the open line's break and prefix */
        enum pending line_undo_pending; /* pending before the open line was written */
        size_t line_text;               /* out.len where the open line's text begins */
        bool line_links_social;         /* the open (or next) line links to a boilerplate site */
};

static bool is_word_char(unsigned char c)
{
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char ascii_lower(unsigned char c)
{
        return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

static bool is_space(unsigned char c)
{
        return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Length (1-4) of the valid UTF-8 sequence at s, 0 if s[0..n) starts with an invalid one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
        uint32_t cp;
        size_t need, i;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xC2 && s[0] <= 0xDF) {
                need = 2;
                cp = s[0] & 0x1Fu;
        } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
                need = 3;
                cp = s[0] & 0x0Fu;
        } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
                need = 4;
                cp = s[0] & 0x07u;
        } else {
                return 0;
        }
        if (n < need)
                return 0;
        for (i = 1; i < need; i++) {
                if ((s[i] & 0xC0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3Fu);
        }
        if (need == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
                return 0;
        if (need == 4 && (cp < 0x10000 || cp > 0x10FFFF))
                return 0;
        return need;
}

static bool match_ci(const char *text, const char *phrase, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (ascii_lower((unsigned char)text[i]) != (unsigned char)phrase[i])
                        return false;
        return true;
}

bool text_find_phrase(const char *text, size_t len, const char *phrase, size_t *at)
{
        size_t m = phrase ? strlen(phrase) : 0;
        bool word_start, word_end;
        size_t i, e;

        if (!text || m == 0 || m > len)
                return false;
        word_start = is_word_char((unsigned char)phrase[0]);
        word_end = is_word_char((unsigned char)phrase[m - 1]);
        for (i = 0; i + m <= len; i++) {
                if (word_start && i > 0 && is_word_char((unsigned char)text[i - 1]))
                        continue;
                if (!match_ci(text + i, phrase, m))
                        continue;
                e = i + m;
                if (!word_end || e == len || !is_word_char((unsigned char)text[e]) ||
                    (ascii_lower((unsigned char)text[e]) == 's' &&
                     (e + 1 == len || !is_word_char((unsigned char)text[e + 1])))) {
                        if (at)
                                *at = i;
                        return true;
                }
        }
        return false;
}

/* Whether a sentence ends just before text[i]: "x. " or a CJK full stop. */
static bool sentence_ends_at(const char *text, size_t i)
{
        static const char *const cjk_stops[] = {"\xE3\x80\x82", "\xEF\xBC\x81", "\xEF\xBC\x9F"};
        size_t k;

        if (text[i] == '\n')
                return true;
        if (is_space((unsigned char)text[i]) && i > 0 &&
            (text[i - 1] == '.' || text[i - 1] == '!' || text[i - 1] == '?'))
                return true;
        for (k = 0; k < sizeof(cjk_stops) / sizeof(cjk_stops[0]); k++)
                if (i >= 3 && memcmp(text + i - 3, cjk_stops[k], 3) == 0)
                        return true;
        return false;
}

size_t text_cut(const char *text, size_t len, size_t max)
{
        size_t cut, i;

        if (len > max) {
                cut = utf8_fit(text, len, max);
                len = cut;
                for (i = cut; i > 0 && i >= max / 2; i--) {
                        if (sentence_ends_at(text, i)) {
                                len = i;
                                break;
                        }
                }
                for (i = cut; len == cut && i > 0 && i >= max / 2; i--) {
                        if (is_space((unsigned char)text[i])) {
                                len = i;
                                break;
                        }
                }
        }
        while (len > 0 && is_space((unsigned char)text[len - 1]))
                len--;
        return len;
}

static int buf_put(struct textbuf *b, const char *s, size_t n)
{
        size_t cap;
        char *p;

        if (b->full)
                return 0;
        if (n > b->max - b->len) {
                n = b->max - b->len;
                b->full = true;
        }
        if (n > b->cap - b->len) {
                cap = b->cap ? b->cap : 1024;
                while (cap - b->len < n)
                        cap *= 2;
                if (cap > b->max)
                        cap = b->max;
                p = realloc(b->p, cap);
                if (!p)
                        return ST_ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        if (n > 0)
                memcpy(b->p + b->len, s, n);
        b->len += n;
        return 0;
}

static void put(struct walk *w, const char *s, size_t n)
{
        if (!w->err)
                w->err = buf_put(&w->out, s, n);
}

static bool is_boilerplate(const char *text, size_t len)
{
        size_t i;

        for (i = 0; i < sizeof(boilerplate_phrases) / sizeof(boilerplate_phrases[0]); i++)
                if (text_find_phrase(text, len, boilerplate_phrases[i], NULL))
                        return true;
        return false;
}

/* Close the open line; take it back if it is boilerplate. */
static void end_line(struct walk *w)
{
        size_t n;

        if (!w->line_open)
                return;
        n = w->out.len - w->line_text;
        if (!w->out.full && n <= BOILERPLATE_MAX_LINE &&
            (w->line_links_social || is_boilerplate(w->out.p + w->line_text, n))) {
                w->out.len = w->line_undo;
                w->pending = w->line_undo_pending;
        }
        w->line_open = false;
        w->line_links_social = false;
        w->pending_space = false;
}

static void request_break(struct walk *w, enum pending level)
{
        end_line(w);
        if (level > w->pending)
                w->pending = level;
}

/* Paragraph breaks inside lists are line breaks, so items stay together. */
static enum pending para_break(const struct walk *w)
{
        return w->list_depth > 0 ? BREAK_LINE : BREAK_PARA;
}

static void open_line(struct walk *w)
{
        static const char spaces[] = "                ";
        int depth;

        w->line_undo = w->out.len;
        w->line_undo_pending = w->pending;
        if (w->out.len > 0)
                put(w, "\n\n", w->pending == BREAK_PARA ? 2 : 1);
        if (w->item_pending) {
                depth = w->item_depth < 1 ? 1 : w->item_depth;
                if (depth > MAX_INDENT_LEVEL)
                        depth = MAX_INDENT_LEVEL;
                put(w, spaces, 2 * (size_t)(depth - 1));
                put(w, "- ", 2);
                w->item_pending = false;
        }
        w->line_text = w->out.len;
        w->line_open = true;
        w->pending = BREAK_NONE;
        w->pending_space = false;
}

/* Append one character (n bytes at s) of text. */
static void put_char(struct walk *w, const char *s, size_t n)
{
        if (!w->line_open)
                open_line(w);
        else if (w->pending_space)
                put(w, " ", 1);
        w->pending_space = false;
        put(w, s, n);
}

static void put_text(struct walk *w, const char *s, size_t len)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, n;

        while (i < len && !w->err && !w->out.full) {
                n = utf8_len(u + i, len - i);
                if (n == 0) {
                        put_char(w, "\xEF\xBF\xBD", 3);
                        i++;
                        continue;
                }
                if (n == 1 && u[i] == '\n' && w->pre_depth > 0)
                        request_break(w, BREAK_LINE);
                else if ((n == 1 && (u[i] < 0x20 || u[i] == 0x7F || u[i] == ' ')) ||
                         (n == 2 && u[i] == 0xC2 && u[i + 1] == 0xA0))
                        w->pending_space = w->line_open;
                else
                        put_char(w, s + i, n);
                i += n;
        }
}

static enum element_kind kind_of(const xmlNode *node)
{
        size_t i;

        if (node->type != XML_ELEMENT_NODE || !node->name)
                return EL_INLINE;
        for (i = 0; i < sizeof(elements) / sizeof(elements[0]); i++)
                if (strcmp((const char *)node->name, elements[i].name) == 0)
                        return elements[i].kind;
        return EL_INLINE;
}

static bool links_social(xmlNode *node)
{
        xmlChar *href = xmlGetNoNsProp(node, (const xmlChar *)"href");
        bool social;

        if (!href)
                return false;
        social = is_boilerplate((const char *)href, strlen((const char *)href));
        xmlFree(href);
        return social;
}

/* Start a node; true when its children should be walked. */
static bool enter(struct walk *w, xmlNode *node)
{
        if (node->type == XML_TEXT_NODE || node->type == XML_CDATA_SECTION_NODE) {
                if (node->content)
                        put_text(w, (const char *)node->content,
                                 strlen((const char *)node->content));
                return false;
        }
        if (node->type != XML_ELEMENT_NODE)
                return false;
        switch (kind_of(node)) {
        case EL_SKIP:
                return false;
        case EL_LINE:
                request_break(w, BREAK_LINE);
                break;
        case EL_PARA:
                request_break(w, para_break(w));
                break;
        case EL_LIST:
                request_break(w, para_break(w));
                w->list_depth++;
                break;
        case EL_ITEM:
                request_break(w, BREAK_LINE);
                w->item_pending = true;
                w->item_depth = w->list_depth;
                break;
        case EL_PRE:
                request_break(w, para_break(w));
                w->pre_depth++;
                break;
        case EL_CELL:
                w->pending_space = w->line_open;
                break;
        case EL_LINK:
                if (links_social(node))
                        w->line_links_social = true;
                break;
        case EL_INLINE:
                break;
        }
        return true;
}

static void leave(struct walk *w, xmlNode *node)
{
        switch (kind_of(node)) {
        case EL_LINE:
                request_break(w, BREAK_LINE);
                break;
        case EL_PARA:
                request_break(w, para_break(w));
                break;
        case EL_LIST:
                if (w->list_depth > 0)
                        w->list_depth--;
                request_break(w, para_break(w));
                break;
        case EL_ITEM:
                request_break(w, BREAK_LINE);
                w->item_pending = false;
                break;
        case EL_PRE:
                if (w->pre_depth > 0)
                        w->pre_depth--;
                request_break(w, para_break(w));
                break;
        case EL_LINK:
                /* A link that added no text to a line says nothing about the next one. */
                if (!w->line_open)
                        w->line_links_social = false;
                break;
        case EL_SKIP:
        case EL_CELL:
        case EL_INLINE:
                break;
        }
}

/* Depth-first walk of the document without recursion. */
static void walk_tree(struct walk *w, xmlDoc *doc)
{
        xmlNode *node = doc->children;

        while (node && !w->err && !w->out.full) {
                if (enter(w, node) && node->children) {
                        node = node->children;
                        continue;
                }
                for (;;) {
                        leave(w, node);
                        if (node->next) {
                                node = node->next;
                                break;
                        }
                        node = node->parent;
                        if (!node || node == (xmlNode *)doc) {
                                node = NULL;
                                break;
                        }
                }
        }
        if (!w->out.full)
                end_line(w);
}

/*
 * Copy of the input that libxml2 can read without complaint: invalid UTF-8
 * becomes U+FFFD (else libxml2 passes raw bytes through or switches the whole
 * document to Latin-1), NUL and other control characters become spaces.
 */
static char *sanitize(const char *html, size_t len, size_t *out_len)
{
        const unsigned char *u = (const unsigned char *)html;
        char *clean = malloc(3 * len + 1);
        size_t i = 0, o = 0, n;

        if (!clean)
                return NULL;
        while (i < len) {
                n = utf8_len(u + i, len - i);
                if (n == 0) {
                        memcpy(clean + o, "\xEF\xBF\xBD", 3);
                        o += 3;
                        i++;
                } else if (n == 1 && (u[i] < 0x20 || u[i] == 0x7F) && u[i] != '\n' &&
                           u[i] != '\t' && u[i] != '\r') {
                        clean[o++] = ' ';
                        i++;
                } else {
                        memcpy(clean + o, u + i, n);
                        o += n;
                        i += n;
                }
        }
        clean[o] = '\0';
        *out_len = o;
        return clean;
}

/* libxml2 2.12 made the error argument const. */
#if LIBXML_VERSION >= 21200
static void quiet_structured(void *ctx, const xmlError *error)
#else
static void quiet_structured(void *ctx, xmlErrorPtr error)
#endif
{
        (void)ctx;
        (void)error;
}

static void quiet_generic(void *ctx, const char *msg, ...)
{
        (void)ctx;
        (void)msg;
}

/* Parse with libxml2's error output silenced for this thread, then restored. */
static xmlDoc *parse_quietly(const char *html, size_t len)
{
        xmlStructuredErrorFunc old_structured;
        xmlGenericErrorFunc old_generic;
        void *old_structured_ctx, *old_generic_ctx;
        xmlDoc *doc;

        xmlInitParser();
        old_structured = xmlStructuredError;
        old_structured_ctx = xmlStructuredErrorContext;
        old_generic = xmlGenericError;
        old_generic_ctx = xmlGenericErrorContext;
        xmlSetStructuredErrorFunc(NULL, quiet_structured);
        xmlSetGenericErrorFunc(NULL, quiet_generic);
        doc = htmlReadMemory(html, (int)len, NULL, "UTF-8", PARSE_OPTIONS);
        xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
        xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
        return doc;
}

int html_to_text(const char *html, size_t len, size_t max_out, struct arena *a, char **out,
                 struct st_error *err)
{
        struct walk w = {0};
        char *clean = NULL;
        size_t clean_len = 0, keep;
        xmlDoc *doc = NULL;
        int rc = 0;

        if (!out || !a || (!html && len > 0))
                return st_fail(err, ST_EINVAL, "html_to_text: NULL argument");
        *out = NULL;
        if (len > ST_LIMIT_TEXT)
                return st_fail(err, ST_ETOOBIG, "card html: %zu bytes, limit %zu", len,
                               (size_t)ST_LIMIT_TEXT);
        if (max_out > ST_LIMIT_TEXT)
                max_out = ST_LIMIT_TEXT;
        w.out.max = max_out + LINE_SLACK;
        if (len > 0) {
                clean = sanitize(html, len, &clean_len);
                if (!clean) {
                        rc = st_fail(err, ST_ENOMEM, "card html: out of memory");
                        goto out;
                }
                doc = parse_quietly(clean, clean_len);
                if (doc)
                        walk_tree(&w, doc);
                if (w.err) {
                        rc = st_fail(err, w.err, "card html: out of memory");
                        goto out_doc;
                }
        }
        keep = w.out.p ? text_cut(w.out.p, w.out.len, max_out) : 0;
        *out = arena_strndup(a, w.out.p ? w.out.p : "", keep);
        if (!*out)
                rc = st_fail(err, ST_ENOMEM, "card text: arena limit");
out_doc:
        xmlFreeDoc(doc);
        free(clean);
out:
        free(w.out.p);
        return rc;
}
