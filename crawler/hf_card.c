/*
 * hf_card.c - model card = YAML front matter + markdown body; see hf_card.h.
 *
 * The front matter is read in two steps: libyaml's events become a small
 * tree in the arena (bounded by node count and depth, aliases kept as
 * leaves that are never expanded), then the few keys we use are looked up
 * in that tree.  Walking a tree keeps the key rules in one readable place;
 * the limits keep the tree small whatever the input.
 */
#include "crawler/hf_card.h"

#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "crawler/driver.h"

/* ---- splitting the card ---- */

struct parts {
        bool has_front_matter;
        bool closed;      /* the front matter has its closing "---" line */
        const char *yaml; /* front matter text, without the delimiter lines */
        size_t yaml_len;
        const char *body; /* everything after the closing line (or the whole card) */
        size_t body_len;
};

static bool is_space(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Index just past the line starting at i (its '\n' included), or len. */
static size_t next_line(const char *s, size_t len, size_t i)
{
        const char *nl = memchr(s + i, '\n', len - i);

        return nl ? (size_t)(nl - s) + 1 : len;
}

/* If the line at i is exactly "---" (CRLF, LF or the end after it), the index past it; else 0. */
static size_t delimiter_line(const char *s, size_t len, size_t i)
{
        if (len - i < 3 || memcmp(s + i, "---", 3) != 0)
                return 0;
        i += 3;
        if (i < len && s[i] == '\r')
                i++;
        if (i == len)
                return i;
        return s[i] == '\n' ? i + 1 : 0;
}

static void split_card(const char *s, size_t len, struct parts *p)
{
        size_t i = 0, start, line;

        memset(p, 0, sizeof(*p));
        p->body = s;
        p->body_len = len;
        if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
                i = 3;
        while (i < len && is_space(s[i]))
                i++;
        start = delimiter_line(s, len, i);
        if (!start)
                return;
        p->has_front_matter = true;
        p->yaml = s + start;
        p->yaml_len = len - start;
        for (line = start; line < len; line = next_line(s, len, line)) {
                size_t end = delimiter_line(s, len, line);

                if (end) {
                        p->closed = true;
                        p->yaml_len = line - start;
                        p->body = s + end;
                        p->body_len = len - end;
                        return;
                }
        }
}

/* ---- body and title ---- */

/* s[0..*len) without leading and trailing whitespace. */
static const char *trim(const char *s, size_t *len)
{
        while (*len > 0 && is_space(s[0])) {
                s++;
                (*len)--;
        }
        while (*len > 0 && is_space(s[*len - 1]))
                (*len)--;
        return s;
}

/* A fence line opens or closes a code block: three backticks or tildes. */
static char fence_char(const char *line, size_t n)
{
        if (n >= 3 && (line[0] == '`' || line[0] == '~') && line[1] == line[0] &&
            line[2] == line[0])
                return line[0];
        return 0;
}

/* The text of an ATX "# Title" line (closing #s removed), or NULL. */
static const char *heading_text(const char *line, size_t n, size_t *len)
{
        if (n < 2 || line[0] != '#' || (line[1] != ' ' && line[1] != '\t'))
                return NULL;
        *len = n - 2;
        line = trim(line + 2, len);
        if (*len > 0 && line[*len - 1] == '#') {
                size_t k = *len;

                while (k > 0 && line[k - 1] == '#')
                        k--;
                if (k == 0 || line[k - 1] == ' ' || line[k - 1] == '\t') {
                        *len = k;
                        line = trim(line, len);
                }
        }
        return line;
}

/* The first "# " heading of the body outside code fences, if it is a usable title. */
static char *find_title(struct arena *a, const char *body, bool *out_of_memory)
{
        size_t len = strlen(body), i = 0;
        char fence = 0;

        while (i < len) {
                size_t end = next_line(body, len, i), n = end - i, indent = 0, title_len;
                const char *line = body + i, *title;
                char c, *copy;

                i = end;
                while (indent < 3 && indent < n && line[indent] == ' ')
                        indent++;
                line += indent;
                n -= indent;
                c = fence_char(line, n);
                if (c && (!fence || fence == c)) {
                        fence = fence ? 0 : c;
                        continue;
                }
                if (fence)
                        continue;
                title = heading_text(line, n, &title_len);
                if (!title)
                        continue;
                if (title_len == 0 || title_len >= HF_CARD_MAX_TITLE)
                        return NULL;
                copy = arena_strndup(a, title, title_len);
                *out_of_memory = copy == NULL;
                return copy;
        }
        return NULL;
}

static int read_body(struct arena *a, const struct parts *p, struct hf_card *out)
{
        size_t len = p->body_len;
        const char *s = trim(p->body, &len);
        bool out_of_memory = false;

        if (len == 0)
                return 0;
        out->body = driver_copy_text(a, s, len, ST_LIMIT_TEXT);
        if (!out->body)
                return ST_ENOMEM;
        out->title = find_title(a, out->body, &out_of_memory);
        return out_of_memory ? ST_ENOMEM : 0;
}

/* ---- YAML events to a bounded tree ---- */

enum node_kind { NODE_SCALAR, NODE_SEQUENCE, NODE_MAPPING, NODE_ALIAS };

struct node {
        enum node_kind kind;
        char *text; /* scalar value, NUL-terminated; NULL for other kinds */
        size_t len; /* bytes of text; more than strlen when the YAML wrote "\0" */
        bool plain; /* scalar written without quotes: "", null and ~ mean no value */
        struct node *parent;
        struct node *first; /* children; a mapping's alternate key, value, key, ... */
        struct node *last;
        struct node *next; /* next sibling */
};

struct tree {
        struct arena *a;
        struct node *root;
        struct node *open; /* innermost list or map still being read */
        size_t n_nodes;
        size_t depth;
};

static int add_node(struct tree *t, enum node_kind kind, const yaml_event_t *e,
                    struct st_error *err)
{
        struct node *n;

        if (++t->n_nodes > HF_CARD_MAX_NODES)
                return st_fail(err, ST_ETOOBIG, "card front matter: more than %d YAML nodes",
                               HF_CARD_MAX_NODES);
        n = arena_calloc(t->a, 1, sizeof(*n));
        if (!n)
                return st_fail(err, ST_ENOMEM, "card front matter: arena full");
        n->kind = kind;
        if (kind == NODE_SCALAR) {
                n->len = e->data.scalar.length;
                n->plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
                n->text = arena_strndup(t->a, (const char *)e->data.scalar.value, n->len);
                if (!n->text)
                        return st_fail(err, ST_ENOMEM, "card front matter: arena full");
        }
        if (!t->open) {
                if (!t->root)
                        t->root = n;
        } else {
                n->parent = t->open;
                if (t->open->last)
                        t->open->last->next = n;
                else
                        t->open->first = n;
                t->open->last = n;
        }
        if (kind == NODE_SEQUENCE || kind == NODE_MAPPING) {
                if (++t->depth > HF_CARD_MAX_DEPTH)
                        return st_fail(err, ST_ETOOBIG, "card front matter: nested deeper than %d",
                                       HF_CARD_MAX_DEPTH);
                t->open = n;
        }
        return 0;
}

static int take_event(struct tree *t, const yaml_event_t *e, struct st_error *err)
{
        switch (e->type) {
        case YAML_SCALAR_EVENT:
                return add_node(t, NODE_SCALAR, e, err);
        case YAML_ALIAS_EVENT:
                return add_node(t, NODE_ALIAS, e, err);
        case YAML_SEQUENCE_START_EVENT:
                return add_node(t, NODE_SEQUENCE, e, err);
        case YAML_MAPPING_START_EVENT:
                return add_node(t, NODE_MAPPING, e, err);
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
                if (t->open) {
                        t->open = t->open->parent;
                        t->depth--;
                }
                return 0;
        default:
                return 0;
        }
}

static int yaml_failure(const yaml_parser_t *parser, struct st_error *err)
{
        const char *problem = parser->problem ? parser->problem : "malformed YAML";

        if (parser->error == YAML_MEMORY_ERROR)
                return st_fail(err, ST_ENOMEM, "card front matter: out of memory");
        if (parser->error == YAML_READER_ERROR)
                return st_fail(err, ST_EPARSE, "card front matter: byte %zu: %s",
                               parser->problem_offset, problem);
        return st_fail(err, ST_EPARSE, "card front matter: line %zu column %zu: %s%s%s",
                       parser->problem_mark.line + 1, parser->problem_mark.column + 1, problem,
                       parser->context ? " " : "", parser->context ? parser->context : "");
}

/* Build the tree of the first YAML document in yaml[0..len). */
static int build_tree(const char *yaml, size_t len, struct tree *t, struct st_error *err)
{
        yaml_parser_t parser;
        yaml_event_t event;
        bool done = false;
        int rc = 0;

        if (!yaml_parser_initialize(&parser))
                return st_fail(err, ST_ENOMEM, "card front matter: out of memory");
        yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
        yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
        while (!done && rc == 0) {
                if (!yaml_parser_parse(&parser, &event)) {
                        rc = yaml_failure(&parser, err);
                        break;
                }
                done = event.type == YAML_DOCUMENT_END_EVENT || event.type == YAML_STREAM_END_EVENT;
                rc = take_event(t, &event, err);
                yaml_event_delete(&event);
        }
        yaml_parser_delete(&parser);
        return rc;
}

/* ---- reading the keys ---- */

struct reader {
        struct arena *a;
        bool out_of_memory;
};

/* The value of key in a mapping node (the first if repeated), or NULL. */
static const struct node *member(const struct node *map, const char *key)
{
        size_t key_len = strlen(key);

        if (!map || map->kind != NODE_MAPPING)
                return NULL;
        for (const struct node *k = map->first; k && k->next; k = k->next->next)
                if (k->kind == NODE_SCALAR && k->len == key_len &&
                    memcmp(k->text, key, key_len) == 0)
                        return k->next;
        return NULL;
}

/* The trimmed text of a scalar that has a value, or NULL (*len set). */
static const char *scalar_value(const struct node *n, size_t *len)
{
        const char *s;

        if (!n || n->kind != NODE_SCALAR)
                return NULL;
        *len = n->len;
        s = trim(n->text, len);
        if (*len == 0)
                return NULL;
        if (n->plain &&
            ((*len == 1 && s[0] == '~') || (*len == 4 && strncasecmp(s, "null", 4) == 0)))
                return NULL;
        return s;
}

/* A short string: a value under ST_LIMIT_STRING bytes without NULs. */
static char *short_string(struct reader *r, const struct node *n)
{
        size_t len;
        const char *s = scalar_value(n, &len);
        char *copy;

        if (!s || len >= ST_LIMIT_STRING || memchr(s, '\0', len))
                return NULL;
        copy = arena_strndup(r->a, s, len);
        if (!copy)
                r->out_of_memory = true;
        return copy;
}

static char *text(struct reader *r, const struct node *n)
{
        size_t len;
        const char *s = scalar_value(n, &len);
        char *copy;

        if (!s)
                return NULL;
        copy = driver_copy_text(r->a, s, len, ST_LIMIT_TEXT);
        if (!copy)
                r->out_of_memory = true;
        return copy;
}

/* A str or a list of str; other list items are dropped. */
static struct st_strv strings(struct reader *r, const struct node *n)
{
        struct st_strv sv = {NULL, 0};
        size_t cap = 0;

        if (n && n->kind == NODE_SCALAR)
                cap = 1;
        else if (n && n->kind == NODE_SEQUENCE)
                for (const struct node *c = n->first; c && cap < ST_LIMIT_ARRAY; c = c->next)
                        cap++;
        if (cap == 0)
                return sv;
        sv.v = arena_calloc(r->a, cap, sizeof(*sv.v));
        if (!sv.v) {
                r->out_of_memory = true;
                return sv;
        }
        if (n->kind == NODE_SCALAR) {
                sv.v[0] = short_string(r, n);
                sv.n = sv.v[0] != NULL;
                return sv;
        }
        for (const struct node *c = n->first; c && sv.n < cap; c = c->next) {
                char *s = short_string(r, c);

                if (s)
                        sv.v[sv.n++] = s;
        }
        return sv;
}

static void read_widgets(struct reader *r, const struct node *list, struct hf_card *out)
{
        size_t cap = 0;

        if (!list || list->kind != NODE_SEQUENCE)
                return;
        for (const struct node *c = list->first; c && cap < HF_CARD_MAX_WIDGETS; c = c->next)
                cap++;
        if (cap == 0)
                return;
        out->widgets = arena_calloc(r->a, cap, sizeof(*out->widgets));
        if (!out->widgets) {
                r->out_of_memory = true;
                return;
        }
        for (const struct node *c = list->first; c && out->n_widgets < cap; c = c->next) {
                struct hf_widget *w = &out->widgets[out->n_widgets];

                if (c->kind != NODE_MAPPING)
                        continue;
                w->text = text(r, member(c, "text"));
                w->url = short_string(r, member(member(c, "output"), "url"));
                if (w->text || w->url)
                        out->n_widgets++;
        }
}

static int read_front_matter(const char *yaml, size_t len, struct arena *a, struct hf_card *out,
                             struct st_error *err)
{
        struct tree t = {a, NULL, NULL, 0, 0};
        struct reader r = {a, false};
        const struct node *root;
        size_t root_len;
        int rc = build_tree(yaml, len, &t, err);

        if (rc)
                return rc;
        root = t.root;
        if (!root || (root->kind == NODE_SCALAR && !scalar_value(root, &root_len)))
                return 0; /* empty front matter */
        if (root->kind != NODE_MAPPING)
                return st_fail(err, ST_ETYPE, "card front matter: not a mapping");
        out->base_models = strings(&r, member(root, "base_model"));
        out->instance_prompt = short_string(&r, member(root, "instance_prompt"));
        out->tags = strings(&r, member(root, "tags"));
        out->license = short_string(&r, member(root, "license"));
        read_widgets(&r, member(root, "widget"), out);
        if (r.out_of_memory)
                return st_fail(err, ST_ENOMEM, "card front matter: arena full");
        return 0;
}

static void clear_front_matter(struct hf_card *out)
{
        memset(&out->base_models, 0, sizeof(out->base_models));
        memset(&out->tags, 0, sizeof(out->tags));
        out->instance_prompt = NULL;
        out->license = NULL;
        out->widgets = NULL;
        out->n_widgets = 0;
}

int hf_parse_card(const char *markdown, size_t len, struct arena *a, struct hf_card *out,
                  struct st_error *err)
{
        struct parts parts;
        int rc;

        memset(out, 0, sizeof(*out));
        split_card(markdown, len, &parts);
        out->has_front_matter = parts.has_front_matter;
        if (read_body(a, &parts, out))
                return st_fail(err, ST_ENOMEM, "card: arena full");
        if (!parts.has_front_matter)
                return 0;
        if (!parts.closed)
                return st_fail(err, ST_EPARSE, "card: front matter opened by --- is never closed");
        if (parts.yaml_len > HF_CARD_MAX_FRONT_MATTER)
                return st_fail(err, ST_ETOOBIG, "card: front matter of %zu bytes, limit %u",
                               parts.yaml_len, HF_CARD_MAX_FRONT_MATTER);
        rc = read_front_matter(parts.yaml, parts.yaml_len, a, out, err);
        if (rc)
                clear_front_matter(out);
        return rc;
}
