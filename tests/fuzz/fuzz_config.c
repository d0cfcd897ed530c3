/*
 * fuzz_config.c - config_parse() on arbitrary bytes: 0 or a negative ST_E*
 * code, never a crash or a leak; on success every entry has a valid section
 * and key name, a value without control bytes (tab aside), and the flags of
 * any section come out as "--key" words.
 */
#include "proto/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_name(const char *s)
{
        size_t len = strlen(s);

        if (len == 0 || len > CONFIG_MAX_NAME)
                return 0;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config c;
        struct st_error err = {0};
        char *argv[2 * CONFIG_MAX_ENTRIES];
        int argc = 0, rc = config_parse((const char *)data, size, &c, &err);

        if (rc > 0)
                abort();
        if (rc < 0)
                return 0;
        for (size_t i = 0; i < c.n; i++) {
                const struct config_entry *e = &c.entries[i];

                if (!valid_name(e->section) || !valid_name(e->key) || e->key[0] == '-' ||
                    strlen(e->value) > CONFIG_MAX_VALUE || strncmp(e->flag, "--", 2) ||
                    strcmp(e->flag + 2, e->key))
                        abort();
                for (const char *p = e->value; *p; p++)
                        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
                                abort();
        }
        if (c.n &&
            config_flags(&c, c.entries[0].section, argv, &argc, 2 * CONFIG_MAX_ENTRIES, &err))
                abort();
        for (int i = 0; i < argc; i++)
                if (!argv[i])
                        abort();
        config_release(&c);
        return 0;
}
