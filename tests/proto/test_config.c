/*
 * test_config.c - the config file: sections, keys, values (quoted, true,
 * false, repeated), comments, CRLF, the flags a section gives, every
 * refusal with its line, and config_load() on a real file.
 */
#include "proto/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what, int line)
{
        if (!ok) {
                fprintf(stderr, "test_config.c:%d: check failed: %s\n", line, what);
                failures++;
        }
}

#define CHECK(x) check((x), #x, __LINE__)

static int parse(const char *text, struct config *c, struct st_error *err)
{
        memset(err, 0, sizeof(*err));
        return config_parse(text, strlen(text), c, err);
}

static void test_good(void)
{
        static const char text[] = "# a cluster\r\n"
                                   "[serve]\r\n"
                                   "  shard = tcp://a:5600,tcp://b:5600  \r\n"
                                   "shard=tcp://c:5601\n"
                                   "; another comment\n"
                                   "\n"
                                   "listen = \"0.0.0.0:8080\"\n"
                                   "insecure = true\n"
                                   "nsfw = false\n"
                                   "[crawler]\n"
                                   "contact = ops team <ops@example.org>\n"
                                   "empty =\n";
        struct config c;
        struct st_error err;
        char *argv[16];
        int argc = 0;

        CHECK(parse(text, &c, &err) == 0);
        CHECK(c.n == 7);
        if (c.n != 7)
                return;
        CHECK(!strcmp(c.entries[0].section, "serve") && !strcmp(c.entries[0].key, "shard") &&
              !strcmp(c.entries[0].value, "tcp://a:5600,tcp://b:5600") && c.entries[0].line == 3);
        CHECK(!strcmp(c.entries[2].value, "0.0.0.0:8080")); /* quotes taken off */
        CHECK(!strcmp(c.entries[5].section, "crawler") &&
              !strcmp(c.entries[5].value, "ops team <ops@example.org>"));
        CHECK(!strcmp(c.entries[6].value, ""));
        CHECK(config_flags(&c, "serve", argv, &argc, 16, &err) == 0);
        CHECK(argc == 7);
        if (argc == 7) {
                CHECK(!strcmp(argv[0], "--shard") && !strcmp(argv[1], "tcp://a:5600,tcp://b:5600"));
                CHECK(!strcmp(argv[2], "--shard") && !strcmp(argv[3], "tcp://c:5601"));
                CHECK(!strcmp(argv[4], "--listen") && !strcmp(argv[5], "0.0.0.0:8080"));
                CHECK(!strcmp(argv[6], "--insecure")); /* true: the flag alone; false: none */
        }
        argc = 0;
        CHECK(config_flags(&c, "serve", argv, &argc, 6, &err) == ST_ETOOBIG);
        argc = 0;
        CHECK(config_flags(&c, "shard", argv, &argc, 16, &err) == 0 && argc == 0);
        config_release(&c);
        CHECK(c.entries == NULL && c.n == 0);
}

static void test_refused(void)
{
        static const struct {
                const char *text;
                int rc;
                const char *in_message;
        } cases[] = {
            {"key = value\n", ST_EPARSE, "line 1: a key before any [section]"},
            {"[s]\nno equals sign\n", ST_EPARSE, "line 2"},
            {"[S]\n", ST_EPARSE, "line 1: a section"},
            {"[a b]\n", ST_EPARSE, "line 1"},
            {"[]\n", ST_EPARSE, "line 1"},
            {"[s\n", ST_EPARSE, "line 1"},
            {"[s]\n-x = 1\n", ST_EPARSE, "line 2: a key"},
            {"[s]\nKey = 1\n", ST_EPARSE, "line 2: a key"},
            {"[s]\nk = \"open\n", ST_EPARSE, "line 2: unterminated quote"},
            {"[s]\nk = \"\n", ST_EPARSE, "line 2: unterminated quote"},
            {"[s]\nk = a\x01z\n", ST_EPARSE, "line 2: a control byte"},
        };
        struct config c;
        struct st_error err;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int rc = parse(cases[i].text, &c, &err);

                CHECK(rc == cases[i].rc);
                CHECK(strstr(err.msg, cases[i].in_message) != NULL);
                if (rc != cases[i].rc || !strstr(err.msg, cases[i].in_message))
                        fprintf(stderr, "  case %zu: %d %s\n", i, rc, err.msg);
                CHECK(c.entries == NULL);
        }
        /* A NUL inside a line, and the limits. */
        CHECK(config_parse("[s]\nk = a\0b\n", 11, &c, &err) == ST_EPARSE);
        {
                size_t big = CONFIG_MAX_BYTES + 1, len;
                char *text = malloc(big + 64);

                CHECK(text != NULL);
                if (!text)
                        return;
                memset(text, '#', big);
                CHECK(config_parse(text, big, &c, &err) == ST_ETOOBIG);
                len = (size_t)snprintf(text, 64, "[s]\nk = ");
                memset(text + len, 'v', CONFIG_MAX_VALUE + 1);
                CHECK(config_parse(text, len + CONFIG_MAX_VALUE + 1, &c, &err) == ST_ETOOBIG);
                len = (size_t)snprintf(text, 64, "[s]\n");
                for (int i = 0; i <= CONFIG_MAX_ENTRIES; i++)
                        len += (size_t)snprintf(text + len, big + 64 - len, "k=v\n");
                CHECK(config_parse(text, len, &c, &err) == ST_ETOOBIG);
                free(text);
        }
}

static void test_load(void)
{
        char path[] = "/tmp/stylus-test-config-XXXXXX";
        int fd = mkstemp(path);
        struct config c;
        struct st_error err = {0};

        CHECK(fd >= 0);
        if (fd < 0)
                return;
        CHECK(write(fd, "[status]\nconnect = tcp://h:1\n", 29) == 29);
        close(fd);
        CHECK(config_load(path, &c, &err) == 0 && c.n == 1 &&
              !strcmp(c.entries[0].value, "tcp://h:1"));
        config_release(&c);
        fd = open(path, O_WRONLY | O_TRUNC);
        CHECK(fd >= 0 && write(fd, "[status]\nbad\n", 13) == 13);
        if (fd >= 0)
                close(fd);
        CHECK(config_load(path, &c, &err) == ST_EPARSE);
        CHECK(strstr(err.msg, path) && strstr(err.msg, "line 2")); /* the file and the line */
        unlink(path);
        CHECK(config_load(path, &c, &err) == ST_EIO && strstr(err.msg, path));
}

int main(void)
{
        test_good();
        test_refused();
        test_load();
        if (failures) {
                fprintf(stderr, "test_config: %d checks failed\n", failures);
                return 1;
        }
        printf("test_config: ok\n");
        return 0;
}
