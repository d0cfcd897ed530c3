/*
 * test_vlm_answer.c - reading what a VLM answered: the chat.completion
 * envelope (content as a string or text parts, usage, refusals, server
 * errors, junk) and the model's JSON answer (bare, fenced, in prose; every
 * validation rule: types, task list, weight range, description cleaning and
 * cut, missing keys).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/vlm_answer.h"

static int failures;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        failures++;                                                                \
                }                                                                                  \
        } while (0)

static struct arena arena;

static int parse(const char *content, struct vlm_answer *ans, struct st_error *err)
{
        memset(err, 0, sizeof(*err));
        return vlm_answer_parse(content, strlen(content), &arena, ans, err);
}

static bool has(const char *s, const char *part)
{
        if (s && strstr(s, part))
                return true;
        fprintf(stderr, "'%s' not in '%s'\n", part, s ? s : "(null)");
        return false;
}

static void test_bare_fenced_prose(void)
{
        static const char *forms[] = {
            "{\"task\": \"style\", \"description\": \"Ink wash.\", \"recommended_weight\": 0.7}",
            "Sure! Here it is:\n```json\n{\n  \"task\": \"style\",\n  \"description\": \"Ink "
            "wash.\",\n  \"recommended_weight\": 0.7\n}\n```\nAnything else?",
            "```\n{\"task\":\"style\",\"description\":\"Ink "
            "wash.\",\"recommended_weight\":0.7}\n```",
            "My answer is {\"task\": \"Style \", \"description\": \" Ink wash. \", "
            "\"recommended_weight\": 0.7} as requested.",
            /* a brace in the prose before the object does not stop the search */
            "Use {curly} braces: {\"task\": \"style\", \"description\": \"Ink wash.\", "
            "\"recommended_weight\": 0.7}",
        };
        struct vlm_answer ans;
        struct st_error err;
        size_t i;

        for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
                int rc = parse(forms[i], &ans, &err);

                if (rc)
                        fprintf(stderr, "form %zu: %s\n", i, st_error_text(&err, rc));
                CHECK(rc == 0);
                CHECK(ans.task == ST_TASK_STYLE);
                CHECK(ans.description && strcmp(ans.description, "Ink wash.") == 0);
                CHECK(ans.weight == 0.7);
        }
}

static void test_validation(void)
{
        static const struct {
                const char *content;
                int code;
                const char *says;
        } bad[] = {
            {"I cannot help with that.", ST_EPARSE, "no JSON object"},
            {"", ST_EPARSE, "no JSON object"},
            {"{\"task\": \"style\", \"description\": \"x\"", ST_EPARSE, "no JSON object"},
            {"[{\"task\": \"style\"}]", ST_EMISSING, "'description'"},
            {"{\"task\": 3, \"description\": [\"x\"], \"recommended_weight\": \"0.8\"}", ST_ETYPE,
             "'task' is an integer"},
            {"{\"task\": \"style\", \"description\": [\"x\"], \"recommended_weight\": 0.8}",
             ST_ETYPE, "'description' is an array"},
            {"{\"task\": \"style\", \"description\": \"x\", \"recommended_weight\": \"0.8\"}",
             ST_ETYPE, "'recommended_weight' is a string, not a number"},
            {"{\"task\": \"portrait\", \"description\": \"x\", \"recommended_weight\": 0.8}",
             ST_EINVAL, "task 'portrait'"},
            {"{\"task\": \"celebrity/character\", \"description\": \"x\", "
             "\"recommended_weight\": 0.8}",
             ST_EINVAL, "not a task category"},
            {"{\"task\": \"style\", \"description\": \"x\", \"recommended_weight\": 50}", ST_EINVAL,
             "recommended_weight 50 is outside"},
            {"{\"task\": \"style\", \"description\": \"x\", \"recommended_weight\": 0.01}",
             ST_EINVAL, "outside"},
            {"{\"task\": \"style\", \"description\": \"x\", \"recommended_weight\": -1}", ST_EINVAL,
             "outside"},
            {"{\"task\": \"style\", \"description\": \"x\"}", ST_EMISSING,
             "no 'recommended_weight'"},
            {"{\"task\": null, \"description\": \"x\", \"recommended_weight\": 1}", ST_EMISSING,
             "no 'task'"},
            {"{\"task\": \"style\", \"description\": \" \\u0001\\n \", \"recommended_weight\": 1}",
             ST_EMISSING, "description is empty"},
            /* a hostile value is quoted without its control characters */
            {"{\"task\": \"x\\n2026 refiner error: forged\", \"description\": \"x\", "
             "\"recommended_weight\": 1}",
             ST_EINVAL, "task 'x?2026 refiner error: forged'"},
        };
        struct vlm_answer ans;
        struct st_error err;
        size_t i;
        int rc;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                rc = parse(bad[i].content, &ans, &err);
                if (rc != bad[i].code)
                        fprintf(stderr, "case %zu: got %s (%s)\n", i, st_strerror(rc), err.msg);
                CHECK(rc == bad[i].code);
                CHECK(has(err.msg, bad[i].says));
                CHECK(!strchr(err.msg, '\n'));
        }
        /* weights at both ends of the range and integers are fine; "other" is a task */
        CHECK(parse("{\"task\":\"other\",\"description\":\"x\",\"recommended_weight\":2}", &ans,
                    &err) == 0 &&
              ans.weight == 2.0 && ans.task == ST_TASK_OTHER);
        CHECK(parse("{\"task\":\"animal\",\"description\":\"x\",\"recommended_weight\":0.05}", &ans,
                    &err) == 0 &&
              ans.weight == 0.05);
}

static bool valid_utf8(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        int more = 0;

        for (; *p; p++) {
                if (more) {
                        if ((*p & 0xc0) != 0x80)
                                return false;
                        more--;
                } else if (*p >= 0xf0) {
                        more = 3;
                } else if (*p >= 0xe0) {
                        more = 2;
                } else if (*p >= 0xc0) {
                        more = 1;
                } else if (*p >= 0x80) {
                        return false;
                }
        }
        return more == 0;
}

static void test_description_cleaning(void)
{
        char content[64 << 10];
        struct vlm_answer ans;
        struct st_error err;
        size_t pos;
        int i;

        /* C0 (but newline), DEL, C1 and bidi controls go; a tab becomes a space */
        CHECK(parse("{\"task\":\"style\",\"recommended_weight\":0.8,\"description\":"
                    "\"Ink\\u0001 wash\\u0007 painting\\u001b[31m with\\u0085 soft\\u202e "
                    "edges\\u007f\\tand\\u200f grain.\\r\\n\"}",
                    &ans, &err) == 0);
        CHECK(ans.description &&
              strcmp(ans.description, "Ink wash painting[31m with soft edges and grain.") == 0);
        /* newlines inside are kept */
        CHECK(
            parse("{\"task\":\"style\",\"recommended_weight\":0.8,\"description\":\"a.\\n\\nb.\"}",
                  &ans, &err) == 0 &&
            strcmp(ans.description, "a.\n\nb.") == 0);

        /* a long multi-byte description is cut under the limit on a character boundary */
        pos = (size_t)snprintf(content, sizeof(content),
                               "{\"task\":\"style\",\"recommended_weight\":0.8,\"description\":\"");
        for (i = 0; i < 1500; i++)
                pos += (size_t)snprintf(content + pos, sizeof(content) - pos, "Ωmega✨水彩");
        snprintf(content + pos, sizeof(content) - pos, "\"}");
        CHECK(parse(content, &ans, &err) == 0);
        CHECK(ans.description && strlen(ans.description) <= VLM_DESCRIPTION_MAX);
        CHECK(ans.description && strlen(ans.description) > VLM_DESCRIPTION_MAX - 12);
        CHECK(ans.description && valid_utf8(ans.description));
}

static void test_envelope(void)
{
        static const char good[] =
            "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
            "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"{\\\"a\\\""
            ":1}\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":812,"
            "\"completion_tokens\":95,\"total_tokens\":907}}";
        static const char parts[] =
            "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"a\\\"\"},"
            "{\"type\":\"text\",\"text\":\":1}\"}]}}]}";
        static const struct {
                const char *body;
                int code;
                const char *says;
        } bad[] = {
            {"<html>502 Bad Gateway</html>", ST_EPARSE, "not JSON"},
            {"[1,2]", ST_ETYPE, "not an object"},
            {"{\"choices\":{}}", ST_ETYPE, "choices is an object"},
            {"{\"choices\":[]}", ST_EMISSING, "no choices[0].message.content"},
            {"{\"choices\":[{\"message\":{\"content\":null,\"refusal\":\"I can't.\"}}]}",
             ST_EMISSING, "refusal 'I can't.'"},
            {"{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}", ST_EMISSING,
             "'overloaded'"},
            {"{\"choices\":[{\"message\":{\"content\":42}}]}", ST_ETYPE, "content is an integer"},
            {"{\"choices\":[{\"message\":{\"content\":\"x\"", ST_EPARSE, "not JSON"},
        };
        struct chat_usage u;
        struct st_error err = {0};
        const char *body;
        char *content;
        size_t i;
        int rc;

        CHECK(chat_completion_parse(good, strlen(good), &arena, &content, &u, &err) == 0);
        CHECK(content && strcmp(content, "{\"a\":1}") == 0);
        CHECK(u.known && u.prompt_tokens == 812 && u.completion_tokens == 95);
        CHECK(chat_completion_parse(parts, strlen(parts), &arena, &content, &u, &err) == 0);
        CHECK(content && strcmp(content, "{\"a\":1}") == 0);
        CHECK(!u.known);
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&err, 0, sizeof(err));
                rc = chat_completion_parse(bad[i].body, strlen(bad[i].body), &arena, &content, &u,
                                           &err);
                if (rc != bad[i].code)
                        fprintf(stderr, "case %zu: got %s (%s)\n", i, st_strerror(rc), err.msg);
                CHECK(rc == bad[i].code);
                CHECK(has(err.msg, bad[i].says));
        }
        /* usage counts even when the content is unusable */
        body = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5}}";
        CHECK(chat_completion_parse(body, strlen(body), &arena, &content, &u, &err) == ST_EMISSING);
        CHECK(u.known && u.prompt_tokens == 5);
        CHECK(chat_completion_parse("{}", VLM_ANSWER_MAX_BODY + 1, &arena, &content, &u, &err) ==
              ST_ETOOBIG);
}

static bool error_message(const char *body, char *msg, size_t size)
{
        return chat_error_message(body, strlen(body), msg, size);
}

static void test_error_message(void)
{
        char msg[32];

        CHECK(
            error_message("{\"error\":{\"message\":\"Rate limit\\nreached\"}}", msg, sizeof(msg)));
        CHECK(strcmp(msg, "Rate limit reached") == 0);
        CHECK(error_message("{\"error\":\"model not found\"}", msg, sizeof(msg)));
        CHECK(strcmp(msg, "model not found") == 0);
        CHECK(!error_message("<html>", msg, sizeof(msg)) && msg[0] == '\0');
        CHECK(error_message("{\"error\":{\"message\":\"a very long message that does not fit "
                            "in the buffer at all\"}}",
                            msg, sizeof(msg)));
        CHECK(strlen(msg) < sizeof(msg));
}

int main(void)
{
        arena_init(&arena, 64u << 20);
        test_bare_fenced_prose();
        test_validation();
        test_description_cleaning();
        test_envelope();
        test_error_message();
        arena_release(&arena);
        if (failures)
                fprintf(stderr, "%d checks failed\n", failures);
        return failures ? 1 : 0;
}
