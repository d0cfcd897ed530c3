/*
 * fuzz_composer_llm_answer.c - what an LLM endpoint may send the composer,
 * on arbitrary bytes: the bytes as a chat.completion body, then as the
 * model's own text, read by composer_llm_parse_answer() for 5 offered
 * candidates and grounded by composer_llm_ground().  Besides not crashing,
 * every accepted answer must keep the promises of composer_llm.h: at most
 * COMPOSER_LLM_MAX_TOPICS topics of 1..COMPOSER_LLM_TOPIC_MAX bytes without
 * control bytes, at most COMPOSER_LLM_MAX_PER_TOPIC refs per topic, every
 * ref offered and kept once, and weights of the paper (0 < w <= 1.6); every
 * error message free of line breaks.  A broken promise aborts.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/chat_completion.h"
#include "proto/errors.h"
#include "query/composer_llm.h"

#define FUZZ_ARENA_LIMIT (32u << 20)
#define N_OFFERED        5

static struct st_doc docs[N_OFFERED];
static struct composer_candidate cand[N_OFFERED];
static struct st_file files[N_OFFERED];
static char names[N_OFFERED][16], shas[N_OFFERED][16];

static void setup(void)
{
        static const char *const tasks[] = {"animal", "style", "style", "style", "background"};

        for (size_t i = 0; i < N_OFFERED; i++) {
                names[i][0] = (char)('a' + i);
                shas[i][0] = (char)('0' + i);
                files[i].name = names[i];
                files[i].sha256 = shas[i];
                docs[i].id = names[i];
                docs[i].name = names[i];
                docs[i].task = (char *)tasks[i];
                docs[i].recommended_weight = i == 0 ? 5.0 : 0.1 * (double)i;
                docs[i].files = &files[i];
                docs[i].n_files = 1;
                cand[i].doc = &docs[i];
                cand[i].score = 0.5f;
        }
}

static void check_answer(const struct composer_llm_answer *ans)
{
        bool seen[N_OFFERED] = {false};

        if (ans->n_topics > COMPOSER_LLM_MAX_TOPICS)
                abort();
        for (size_t t = 0; t < ans->n_topics; t++) {
                const struct composer_llm_topic *topic = &ans->topics[t];
                size_t len = strlen(topic->text);

                if (len == 0 || len > COMPOSER_LLM_TOPIC_MAX ||
                    topic->n_refs > COMPOSER_LLM_MAX_PER_TOPIC)
                        abort();
                for (size_t i = 0; i < len; i++)
                        if ((unsigned char)topic->text[i] < 0x20 || topic->text[i] == 0x7f)
                                abort();
                for (size_t k = 0; k < topic->n_refs; k++) {
                        if (topic->refs[k] >= N_OFFERED || seen[topic->refs[k]])
                                abort();
                        seen[topic->refs[k]] = true;
                }
        }
}

static void check_result(const struct composer_result *r)
{
        for (size_t j = 0; j < r->n_adapters; j++)
                if (!(r->adapters[j].weight > 0 && r->adapters[j].weight <= 1.6) ||
                    !r->adapters[j].reason)
                        abort();
}

static void check_text(const char *text, size_t len, struct arena *a)
{
        static const size_t offered[N_OFFERED] = {0, 1, 2, 3, 4};
        struct composer_llm_answer ans;
        struct composer_options opt;
        struct composer_result r = {.n_images = 2};
        struct st_error err = {0};
        int rc = composer_llm_parse_answer(text, len, N_OFFERED, a, &ans, &err);

        if (rc) {
                if (rc > 0 || strchr(err.msg, '\n') || strchr(err.msg, '\r'))
                        abort();
                return;
        }
        check_answer(&ans);
        composer_options_default(&opt);
        opt.n_images = 2;
        if (composer_llm_ground(&ans, "m", "p", cand, offered, N_OFFERED, &opt, a, &r, &err) == 0)
                check_result(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *bytes = (const char *)data;
        struct st_error err = {0};
        struct chat_usage usage;
        struct arena a;
        char *content = NULL;

        if (!docs[0].name)
                setup();
        arena_init(&a, FUZZ_ARENA_LIMIT);
        if (chat_completion_parse(bytes, size, &a, &content, &usage, &err) == 0) {
                if (!content)
                        abort();
                check_text(content, strlen(content), &a);
        } else if (strchr(err.msg, '\n')) {
                abort();
        }
        check_text(bytes, size, &a);
        arena_release(&a);
        return 0;
}
