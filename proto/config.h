/*
 * config.h - the stylus config file: INI-like sections of flags, one
 * section per subcommand, read by the stylus binary (ops/main_cmd.c), which
 * puts a section's flags before the ones typed on the command line (so
 * those win).
 *
 *   # comment (also ';'), blank lines ignored
 *   [crawler]                    a section: the subcommand its keys are for
 *   connect = tcp://10.0.0.5:5555
 *   contact = ops@example.org    value: the rest of the line, trimmed;
 *   rate = "2"                   optional double quotes around it
 *   allow-private = true         true: the flag alone (--allow-private);
 *   nsfw = false                 false: left out
 *   shard = tcp://a:5600         a key given twice: the flag twice
 *   shard = tcp://b:5601
 *
 * Limits: the file at most CONFIG_MAX_BYTES, CONFIG_MAX_ENTRIES entries; a
 * section or key name 1..CONFIG_MAX_NAME bytes of [a-z0-9-] (a key does not
 * start with '-'); a value at most CONFIG_MAX_VALUE bytes, no control bytes
 * but tab.  Lines end with LF or CRLF.  A key before any section, a
 * malformed line, an unterminated quote: ST_EPARSE naming the line.
 * Other errors: ST_ETOOBIG (a limit), ST_ENOMEM.
 *
 * Secrets (API keys, CURVE secret keys) do not belong in it: it holds the
 * paths of the files that hold them (--embed-key-file, --curve-key ...).
 *
 * Ownership: config_parse() fills a struct config whose strings live in its
 * own allocations; config_release() frees them.  Thread rules: none.
 */
#ifndef STYLUS_PROTO_CONFIG_H
#define STYLUS_PROTO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/errors.h"

#define CONFIG_MAX_BYTES   (64u << 10)
#define CONFIG_MAX_ENTRIES 1024
#define CONFIG_MAX_NAME    64
#define CONFIG_MAX_VALUE   4096

struct config_entry {
        const char *section;            /* "crawler" */
        const char *key;                /* "connect" */
        const char *value;              /* "tcp://...", "true" or "false" as written */
        int line;                       /* 1-based, for messages */
        char flag[CONFIG_MAX_NAME + 3]; /* "--connect" */
};

struct config {
        struct config_entry *entries;
        size_t n;
        char *text; /* the parsed copy the strings point into */
};

/* Parse len bytes of text (need not be NUL-terminated) into *c; on error *c is empty. */
int config_parse(const char *text, size_t len, struct config *c, struct st_error *err);

/* Read and parse the file at path; errors name the path (and the line). */
int config_load(const char *path, struct config *c, struct st_error *err);

void config_release(struct config *c);

/*
 * The command-line words of section's entries, in file order: "--key value"
 * or "--key" (value true), none for false; appended to argv from *argc on
 * (room for max words; ST_ETOOBIG when more).  The words point into c, and
 * are not to be written.
 */
int config_flags(const struct config *c, const char *section, char **argv, int *argc, int max,
                 struct st_error *err);

#endif
