/*
 * fuzz_vlm_answer.c - what a VLM server and its model may send, on
 * arbitrary bytes: the chat.completion envelope, the model's answer, the
 * error-body reader.  Besides not crashing, every accepted answer must keep
 * the promises of vlm_answer.h: a task of the list, a weight in
 * WEIGHT_MIN..WEIGHT_MAX, a non-empty description of at most
 * VLM_DESCRIPTION_MAX bytes without control characters; every error message
 * free of line breaks.  A broken promise aborts, which the fuzzer reports.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/arena.h"
#include "proto/doc.h"
#include "proto/errors.h"
#include "refiner/vlm_answer.h"
#include "refiner/weight.h"

#define FUZZ_ARENA_LIMIT (32u << 20)

static void check_answer(const char *text, size_t len, struct arena *a)
{
        struct st_error err = {0};
        struct vlm_answer ans;
        const unsigned char *p;
        int rc = vlm_answer_parse(text, len, a, &ans, &err);

        if (rc) {
                if (rc > 0 || strchr(err.msg, '\n') || strchr(err.msg, '\r'))
                        abort();
                return;
        }
        if (ans.task >= ST_TASK_COUNT || !(ans.weight >= WEIGHT_MIN && ans.weight <= WEIGHT_MAX))
                abort();
        if (!ans.description || !*ans.description || strlen(ans.description) > VLM_DESCRIPTION_MAX)
                abort();
        for (p = (const unsigned char *)ans.description; *p; p++)
                if ((*p < 0x20 && *p != '\n') || *p == 0x7f)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *bytes = (const char *)data;
        struct st_error err = {0};
        struct chat_usage usage;
        struct arena a;
        char *content = NULL, msg[128];

        arena_init(&a, FUZZ_ARENA_LIMIT);
        /* the bytes as a whole HTTP body, then as the model's own text */
        if (chat_completion_parse(bytes, size, &a, &content, &usage, &err) == 0) {
                if (!content)
                        abort();
                check_answer(content, strlen(content), &a);
        } else if (strchr(err.msg, '\n')) {
                abort();
        }
        check_answer(bytes, size, &a);
        if (chat_error_message(bytes, size, msg, sizeof(msg)) &&
            (strlen(msg) >= sizeof(msg) || strchr(msg, '\n')))
                abort();
        arena_release(&a);
        return 0;
}
