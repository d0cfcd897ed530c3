/* config.c - the stylus config file (see config.h). */
#include "proto/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_byte(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Whether s[0..len) is a section or key name. */
static bool is_name(const char *s, size_t len)
{
        if (len == 0 || len > CONFIG_MAX_NAME)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!name_byte(s[i]))
                        return false;
        return true;
}

static char *trim(char *s, char *end)
{
        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
                end--;
        *end = '\0';
        return s;
}

/* One "key = value" line (NUL-terminated, trimmed, not a comment) into e. */
static int parse_entry(char *line, int n, struct config_entry *e, struct st_error *err)
{
        char *eq = strchr(line, '='), *key, *value;
        size_t len;

        if (!eq)
                return st_fail(err, ST_EPARSE, "line %d: expected key = value or [section]", n);
        key = trim(line, eq);
        value = trim(eq + 1, eq + 1 + strlen(eq + 1));
        if (!is_name(key, strlen(key)) || key[0] == '-')
                return st_fail(err, ST_EPARSE, "line %d: a key is 1..%d of a-z, 0-9 and '-'", n,
                               CONFIG_MAX_NAME);
        len = strlen(value);
        if (len > 0 && value[0] == '"') {
                if (len < 2 || value[len - 1] != '"')
                        return st_fail(err, ST_EPARSE, "line %d: unterminated quote", n);
                value[len - 1] = '\0';
                value++;
                len -= 2;
        }
        if (len > CONFIG_MAX_VALUE)
                return st_fail(err, ST_ETOOBIG, "line %d: value over %d bytes", n,
                               CONFIG_MAX_VALUE);
        for (size_t i = 0; i < len; i++)
                if (((unsigned char)value[i] < 0x20 && value[i] != '\t') || value[i] == 0x7f)
                        return st_fail(err, ST_EPARSE, "line %d: a control byte in the value", n);
        e->key = key;
        e->value = value;
        e->line = n;
        snprintf(e->flag, sizeof(e->flag), "--%s", key);
        return 0;
}

/* Parse the lines of c->text (len bytes, NUL-terminated by the caller). */
static int parse_lines(struct config *c, size_t len, struct st_error *err)
{
        const char *section = NULL;
        char *p = c->text, *end = c->text + len;
        int n = 0, rc;

        while (p < end) {
                char *nl = memchr(p, '\n', (size_t)(end - p)), *stop = nl ? nl : end, *line;

                n++;
                if (stop > p && stop[-1] == '\r')
                        stop--;
                if (memchr(p, '\0', (size_t)(stop - p)))
                        return st_fail(err, ST_EPARSE, "line %d: a NUL byte", n);
                line = trim(p, stop);
                p = nl ? nl + 1 : end;
                if (!line[0] || line[0] == '#' || line[0] == ';')
                        continue;
                if (line[0] == '[') {
                        size_t l = strlen(line);

                        if (line[l - 1] != ']' || !is_name(line + 1, l - 2))
                                return st_fail(err, ST_EPARSE,
                                               "line %d: a section is [name], name 1..%d of "
                                               "a-z, 0-9 and '-'",
                                               n, CONFIG_MAX_NAME);
                        line[l - 1] = '\0';
                        section = line + 1;
                        continue;
                }
                if (!section)
                        return st_fail(err, ST_EPARSE, "line %d: a key before any [section]", n);
                if (c->n == CONFIG_MAX_ENTRIES)
                        return st_fail(err, ST_ETOOBIG, "more than %d entries", CONFIG_MAX_ENTRIES);
                if ((rc = parse_entry(line, n, &c->entries[c->n], err)))
                        return rc;
                c->entries[c->n++].section = section;
        }
        return 0;
}

int config_parse(const char *text, size_t len, struct config *c, struct st_error *err)
{
        int rc;

        memset(c, 0, sizeof(*c));
        if (len > CONFIG_MAX_BYTES)
                return st_fail(err, ST_ETOOBIG, "over %u bytes", CONFIG_MAX_BYTES);
        c->text = malloc(len + 1);
        c->entries = calloc(CONFIG_MAX_ENTRIES, sizeof(*c->entries));
        if (!c->text || !c->entries) {
                config_release(c);
                return st_fail(err, ST_ENOMEM, "out of memory");
        }
        memcpy(c->text, text, len);
        c->text[len] = '\0';
        rc = parse_lines(c, len, err);
        if (rc)
                config_release(c);
        return rc;
}

int config_load(const char *path, struct config *c, struct st_error *err)
{
        char *buf = malloc(CONFIG_MAX_BYTES + 1);
        FILE *f = fopen(path, "rb");
        size_t len = 0;
        int rc;

        memset(c, 0, sizeof(*c));
        if (!buf || !f) {
                rc = !buf ? st_fail(err, ST_ENOMEM, "config %s: out of memory", path)
                          : st_fail(err, ST_EIO, "config %s: %s", path, strerror(errno));
                goto out;
        }
        len = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
        if (ferror(f)) {
                rc = st_fail(err, ST_EIO, "config %s: cannot read", path);
                goto out;
        }
        rc = config_parse(buf, len, c, err);
        if (rc) {
                char why[sizeof(err->msg)];

                snprintf(why, sizeof(why), "%s", st_error_text(err, rc));
                st_fail(err, rc, "config %s: %s", path, why);
        }
out:
        if (f)
                fclose(f);
        free(buf);
        return rc;
}

void config_release(struct config *c)
{
        free(c->entries);
        free(c->text);
        memset(c, 0, sizeof(*c));
}

int config_flags(const struct config *c, const char *section, char **argv, int *argc, int max,
                 struct st_error *err)
{
        for (size_t i = 0; i < c->n; i++) {
                const struct config_entry *e = &c->entries[i];
                bool flag_only = !strcmp(e->value, "true");
                int words = flag_only ? 1 : 2;

                if (strcmp(e->section, section) || !strcmp(e->value, "false"))
                        continue;
                if (*argc + words > max)
                        return st_fail(err, ST_ETOOBIG, "[%s]: too many flags", section);
                argv[(*argc)++] = (char *)e->flag;
                if (!flag_only)
                        argv[(*argc)++] = (char *)e->value;
        }
        return 0;
}
