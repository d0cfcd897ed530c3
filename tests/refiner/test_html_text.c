/*
 * test_html_text.c - card HTML to text: structure, entities, boilerplate,
 * skipped elements, truncation, and hostile input (garbage, malformed,
 * deeply nested, oversized).  Also shows that libxml2 prints nothing.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/html_text.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static struct arena arena;

/* Text of html with max_out bytes, or NULL (and a message) on error. */
static char *text_of(const char *html, size_t max_out)
{
        struct st_error err = {0};
        char *out = NULL;
        int rc = html_to_text(html, strlen(html), max_out, &arena, &out, &err);

        if (rc) {
                fprintf(stderr, "html_to_text: %s\n", st_error_text(&err, rc));
                return NULL;
        }
        return out;
}

static bool text_is(const char *html, const char *want)
{
        char *got = text_of(html, 100000);

        if (got && strcmp(got, want) == 0)
                return true;
        fprintf(stderr, "for  %s\nwant \"%s\"\ngot  \"%s\"\n", html, want, got ? got : "(error)");
        return false;
}

static bool valid_utf8(const char *s, size_t n)
{
        const unsigned char *u = (const unsigned char *)s;
        size_t i = 0, k, need;

        while (i < n) {
                if (u[i] < 0x80)
                        need = 0;
                else if (u[i] >= 0xC2 && u[i] <= 0xDF)
                        need = 1;
                else if (u[i] >= 0xE0 && u[i] <= 0xEF)
                        need = 2;
                else if (u[i] >= 0xF0 && u[i] <= 0xF4)
                        need = 3;
                else
                        return false;
                if (need > n - i - 1)
                        return false;
                for (k = 1; k <= need; k++)
                        if ((u[i + k] & 0xC0) != 0x80)
                                return false;
                i += need + 1;
        }
        return true;
}

static void test_entities(void)
{
        char *out;

        CHECK(text_is(
            "<p>Fish &amp; Chips &lt;3 &quot;&eacute;t&eacute;&quot; &#x1F600;&nbsp;end</p>",
            "Fish & Chips <3 \"\xC3\xA9t\xC3\xA9\" \xF0\x9F\x98\x80 end"));
        CHECK(text_is("a&nbsp;&nbsp; &nbsp;b", "a b"));
        /* An external entity is not HTML: nothing is fetched or expanded. */
        out = text_of("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><p>&e;ok</p>", 1000);
        CHECK(out && strstr(out, "&e;ok") && !strstr(out, "root:"));
}

static void test_structure(void)
{
        CHECK(
            text_is("<h1>Title</h1><p>One <b>bold</b> <i>word</i>.</p><p>Two\n   lines\tjoined</p>",
                    "Title\n\nOne bold word.\n\nTwo lines joined"));
        CHECK(text_is("a<br>b<br><br><br>c<hr>d", "a\nb\nc\n\nd"));
        CHECK(text_is("<p></p><p> </p><div><p>x</p></div><p></p><p>y</p>", "x\n\ny"));
        CHECK(text_is("<table><tr><td>a</td><td>b</td></tr><tr><th>c</th></tr></table>", "a b\nc"));
        CHECK(text_is("<pre>line1\n   line2\n\n\nline3</pre>", "line1\nline2\nline3"));
        CHECK(text_is("<blockquote>quoted</blockquote>after", "quoted\n\nafter"));
}

static void test_nested_lists(void)
{
        /* Civitai's editor wraps list items in <p>; that must not break items apart. */
        CHECK(text_is("<p>Intro</p><ul><li><p>One</p></li><li>Two<ul><li>Two A</li>"
                      "<li><p>Two B</p></li></ul></li></ul><p>After</p>",
                      "Intro\n\n- One\n- Two\n  - Two A\n  - Two B\n\nAfter"));
        CHECK(text_is("<ol><li>first</li><li></li><li>third</li></ol>", "- first\n- third"));
        CHECK(text_is("<li>stray item</li>", "- stray item"));
}

static void test_boilerplate(void)
{
        char long_para[1024];

        CHECK(text_is("<p>A watercolor style.</p>"
                      "<p>If you like my work, support me on "
                      "<a href=\"https://ko-fi.com/x\">Ko-fi</a>!</p>"
                      "<ul><li><a href=\"https://twitter.com/me\">my page</a></li>"
                      "<li>Use at 0.7</li><li>Follow me on Instagram</li></ul>"
                      "<p>Join <a href='https://discord.gg/abc'>here</a></p>"
                      "<p>Buy Me A Coffee: buymeacoffee.com/inky</p>"
                      "<p><a href=\"https://www.patreon.com/inky\"><img src=x></a></p>"
                      "<p>Tip: use with high CFG.</p>",
                      "A watercolor style.\n\n- Use at 0.7\n\nTip: use with high CFG."));
        /* Words that only contain a phrase are not boilerplate. */
        CHECK(text_is("<p>Photos of the fox.com/ ... no</p><p>Kofikofi</p>",
                      "Photos of the fox.com/ ... no\n\nKofikofi"));
        /* A long paragraph is content even when it mentions Patreon. */
        snprintf(long_para, sizeof(long_para),
                 "<p>%s This LoRA was trained on 200 hand-picked images and early versions were "
                 "shared with Patreon supporters first.</p>",
                 "Watercolor landscapes with soft edges, paper grain, granulating pigments and "
                 "wet-in-wet blooms, suitable for book illustration, postcards and calm scenes of "
                 "villages, rivers, mountains and gardens in every season of the year.");
        CHECK(strstr(text_of(long_para, 100000), "Patreon supporters") != NULL);
}

static void test_skipped_elements(void)
{
        CHECK(text_is("<p>Hello<script>alert('x')</script> world</p>"
                      "<style>p{color:red}</style><noscript>nojs</noscript>"
                      "<iframe src=\"https://example.com\">frame</iframe>"
                      "<svg><text>svgtext</text></svg><template>tpl</template><p>Bye</p>",
                      "Hello world\n\nBye"));
        CHECK(text_is("<html><head><title>T</title><style>x</style></head><body>b</body></html>",
                      "b"));
        CHECK(text_is("<p>a<!-- comment -->b</p>", "ab"));
}

static void test_truncation(void)
{
        char html[8192], *out;
        const char *full;
        size_t i, n;

        /* Sentence boundary. */
        out = text_of("<p>First sentence here. Second sentence is a bit longer than that.</p>", 40);
        CHECK(out && strcmp(out, "First sentence here.") == 0);

        /* Word boundary in multi-byte text: a prefix of the full text, cut before a space. */
        n = (size_t)snprintf(html, sizeof(html), "<p>");
        for (i = 0; i < 100; i++)
                n += (size_t)snprintf(html + n, sizeof(html) - n,
                                      "h\xC3\xA9llo w\xC3\xB6rld \xC3\xBCn\xC3\xAF"
                                      "code ");
        snprintf(html + n, sizeof(html) - n, "</p>");
        full = text_of(html, 100000);
        for (i = 1; i < 120; i++) {
                out = text_of(html, i);
                CHECK(out && strlen(out) <= i);
                CHECK(out && valid_utf8(out, strlen(out)));
                CHECK(out && strncmp(full, out, strlen(out)) == 0);
                /* Words are at most 8 bytes, so from 16 bytes on a space is in reach. */
                CHECK(out && (i < 16 || full[strlen(out)] == ' '));
        }

        /* No spaces at all (CJK): cut at a character boundary. */
        n = (size_t)snprintf(html, sizeof(html), "<p>");
        for (i = 0; i < 200; i++)
                n += (size_t)snprintf(html + n, sizeof(html) - n, "\xE6\x97\xA5\xE6\x9C\xAC");
        snprintf(html + n, sizeof(html) - n, "</p>");
        for (i = 1; i < 40; i++) {
                out = text_of(html, i);
                CHECK(out && strlen(out) == i / 3 * 3);
        }
        /* A CJK full stop ends a sentence. */
        out = text_of("<p>\xE6\x97\xA5\xE6\x9C\xAC\xE3\x80\x82\xE6\x97\xA5\xE6\x9C\xAC"
                      "\xE6\x97\xA5\xE6\x9C\xAC</p>",
                      14);
        CHECK(out && strcmp(out, "\xE6\x97\xA5\xE6\x9C\xAC\xE3\x80\x82") == 0);

        out = text_of("<p>anything</p>", 0);
        CHECK(out && strcmp(out, "") == 0);
        CHECK(text_cut("abc def", 7, 7) == 7);
        CHECK(text_cut("abc def  ", 9, 100) == 7);
        CHECK(text_cut("abcdef ghijkl", 13, 10) == 6);
}

static void test_empty(void)
{
        char *out = (char *)"unset";

        CHECK(html_to_text(NULL, 0, 100, &arena, &out, NULL) == 0 && strcmp(out, "") == 0);
        CHECK(text_is("", ""));
        CHECK(text_is("   \n\t ", ""));
        CHECK(text_is("<p></p><div> </div><br><hr>", ""));
        CHECK(text_is("<script>only()</script>", ""));
        CHECK(html_to_text(NULL, 5, 100, &arena, &out, NULL) == ST_EINVAL);
        CHECK(html_to_text("x", 1, 100, &arena, NULL, NULL) == ST_EINVAL);
}

static void test_malformed(void)
{
        char *out;

        CHECK(text_is("<p><b>unclosed", "unclosed"));
        CHECK(text_is("</p></div>text</b>", "text"));
        out = text_of("<div><p>a</div>b</p><<<>>>&&&<a href=<p>c", 1000);
        CHECK(out && strchr(out, 'a') && strchr(out, 'b'));
        out = text_of("<p attr=\"unterminated>tail", 1000);
        CHECK(out != NULL);
        out = text_of("<![CDATA[x]]><?php echo 1; ?><!DOCTYPE html><x:y>z</x:y>", 1000);
        CHECK(out && strchr(out, 'z'));
}

static void test_garbage(void)
{
        char buf[4096], *out;
        unsigned seed = 12345;
        struct st_error err;
        size_t i;
        int round;

        for (round = 0; round < 50; round++) {
                for (i = 0; i < sizeof(buf); i++) {
                        seed = seed * 1103515245u + 12345u;
                        buf[i] = (char)(seed >> 16);
                        if (round % 2 && (seed >> 8) % 7 == 0)
                                buf[i] = "<>/&;p "[(seed >> 20) % 7];
                }
                out = NULL;
                CHECK(html_to_text(buf, sizeof(buf), 2000, &arena, &out, &err) == 0);
                CHECK(out && strlen(out) <= 2000 && valid_utf8(out, strlen(out)));
        }
        /* Invalid UTF-8 and NUL bytes become U+FFFD and spaces. */
        out = NULL;
        CHECK(html_to_text("<p>a\xFF"
                           "b\0c\xC3</p>",
                           13, 100, &arena, &out, &err) == 0);
        CHECK(out && strcmp(out, "a\xEF\xBF\xBD"
                                 "b c\xEF\xBF\xBD") == 0);
}

static void test_limits(void)
{
        const char *sentence = "<p>some text that is longer than the 64-byte limit of the tiny "
                               "arena used here</p>";
        size_t big = 300 * 1024, i;
        char *html = malloc(big), *out = NULL;
        struct st_error err = {0};
        struct arena small;

        CHECK(html != NULL);
        if (!html)
                return;
        for (i = 0; i < big; i++)
                html[i] = "<p>word </p>"[i % 12];
        CHECK(html_to_text(html, big, 1000, &arena, &out, &err) == ST_ETOOBIG);
        CHECK(err.code == ST_ETOOBIG && strstr(err.msg, "limit"));
        CHECK(html_to_text(html, ST_LIMIT_TEXT, 1000, &arena, &out, &err) == 0);
        CHECK(out && strlen(out) <= 1000);

        /* Deep nesting neither recurses nor crashes. */
        for (i = 0; i + 5 <= ST_LIMIT_TEXT; i += 5)
                memcpy(html + i, "<div>", 5);
        memcpy(html + i - 5, "deep!", 5);
        CHECK(html_to_text(html, i, 1000, &arena, &out, &err) == 0);
        for (i = 0; i + 4 <= ST_LIMIT_TEXT; i += 4)
                memcpy(html + i, "<li>", 4);
        CHECK(html_to_text(html, i, 1000, &arena, &out, &err) == 0);

        /* The arena limit is an error, not a crash. */
        arena_init(&small, 64);
        CHECK(html_to_text(sentence, strlen(sentence), 1000, &small, &out, &err) == ST_ENOMEM);
        arena_release(&small);
        free(html);
}

static void test_phrases(void)
{
        size_t at = 99;

        CHECK(text_find_phrase("Two Cats here", 13, "cat", &at) && at == 4);
        CHECK(!text_find_phrase("category", 8, "cat", NULL));
        CHECK(!text_find_phrase("bobcat", 6, "cat", NULL));
        CHECK(text_find_phrase("see x.com/me", 12, "x.com/", NULL));
        CHECK(!text_find_phrase("fox.com/me", 10, "x.com/", NULL));
        CHECK(text_find_phrase("Buy me a coffee!", 16, "buy me a coffee", NULL));
        CHECK(!text_find_phrase("", 0, "a", NULL));
}

/* libxml2 must not write to stderr, whatever the input. */
static void test_quiet(void)
{
        char path[] = "/tmp/test_html_text_XXXXXX", *out;
        int fd = mkstemp(path), saved = dup(2);
        long size;
        FILE *f;

        CHECK(fd >= 0 && saved >= 0);
        if (fd < 0 || saved < 0)
                return;
        fflush(stderr);
        dup2(fd, 2);
        (void)text_of("<p><b>unclosed</i></p><a href=\"x\"<<>>&bogus;\xFF<!DOCTYPE", 1000);
        (void)text_of("<meta charset=\"iso-8859-1\"><p>\xE9t\xE9</p>", 1000);
        out = text_of("<html><html><body><body><head><x:y:z>", 1000);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        f = fdopen(fd, "r");
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
        unlink(path);
        CHECK(out != NULL);
        CHECK(size == 0);
}

int main(void)
{
        arena_init(&arena, 64u << 20);
        test_entities();
        test_structure();
        test_nested_lists();
        test_boilerplate();
        test_skipped_elements();
        test_truncation();
        test_empty();
        test_malformed();
        test_garbage();
        test_limits();
        test_phrases();
        test_quiet();
        arena_release(&arena);
        if (failures) {
                fprintf(stderr, "%d checks failed\n", failures);
                return 1;
        }
        printf("test_html_text: ok\n");
        return 0;
}
