/*
 * test_arena.c - the arena allocator: the hard limit, alignment, zeroing,
 * string copies, and reuse after release.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/arena.h"

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
                        return 1;                                                                  \
                }                                                                                  \
        } while (0)

static int test_limit(void)
{
        struct arena a;
        size_t total = 0;
        int i;

        arena_init(&a, 100000);
        CHECK(arena_alloc(&a, 200000) == NULL);
        CHECK(arena_alloc(&a, 100000) == NULL); /* chunk overhead counts too */
        for (i = 0; i < 100000; i++) {
                if (!arena_alloc(&a, 1000))
                        break;
                total += 1000;
                CHECK(a.used <= a.limit);
        }
        CHECK(total > 50000 && total <= 100000);
        CHECK(a.used <= a.limit);
        arena_release(&a);
        CHECK(a.used == 0 && a.head == NULL);
        /* Reusable after release, with the same limit. */
        CHECK(arena_alloc(&a, 50000) != NULL);
        arena_release(&a);

        arena_init(&a, 0);
        CHECK(arena_alloc(&a, 1) == NULL);
        CHECK(arena_strdup(&a, "x") == NULL);
        arena_release(&a);
        return 0;
}

static int test_alignment_and_zeroing(void)
{
        struct arena a;
        unsigned char *p;
        size_t i;
        int n;

        arena_init(&a, 1 << 20);
        for (n = 0; n < 100; n++) {
                p = arena_alloc(&a, (size_t)n);
                CHECK(p && (uintptr_t)p % 16 == 0);
                memset(p, 0xab, (size_t)n);
        }
        p = arena_calloc(&a, 300, 7);
        CHECK(p);
        for (i = 0; i < 300 * 7; i++)
                CHECK(p[i] == 0);
        CHECK(arena_calloc(&a, SIZE_MAX / 2, 4) == NULL);
        CHECK(arena_calloc(&a, 1 << 20, 1 << 20) == NULL);
        arena_release(&a);
        return 0;
}

static int test_strings(void)
{
        static const char not_terminated[4] = {'a', 'b', 'c', 'd'};
        struct arena a;
        char *s;

        arena_init(&a, 1 << 20);
        s = arena_strndup(&a, not_terminated, 3);
        CHECK(s && strcmp(s, "abc") == 0);
        s = arena_strndup(&a, not_terminated, 0);
        CHECK(s && s[0] == '\0');
        s = arena_strdup(&a, "héllo");
        CHECK(s && strcmp(s, "héllo") == 0);
        CHECK(arena_strdup(&a, NULL) == NULL);
        s = arena_printf(&a, "%s:%d@%05.1f", "civitai", 42, 3.14159);
        CHECK(s && strcmp(s, "civitai:42@003.1") == 0);
        arena_release(&a);

        arena_init(&a, 64);
        CHECK(arena_printf(&a, "%0200d", 1) == NULL);
        arena_release(&a);
        return 0;
}

/* Sizes near SIZE_MAX must fail cleanly, not overflow the limit check. */
static int test_huge(void)
{
        struct arena a;
        int failed = 0;

        arena_init(&a, 1 << 20);
        if (arena_alloc(&a, SIZE_MAX - 31) || arena_alloc(&a, SIZE_MAX) ||
            arena_calloc(&a, SIZE_MAX / 2, 4)) {
                printf("test_huge: an impossible allocation succeeded\n");
                failed = 1;
        }
        if (!arena_alloc(&a, 100)) {
                printf("test_huge: a small allocation failed afterwards\n");
                failed = 1;
        }
        arena_release(&a);
        return failed;
}

int main(void)
{
        int failed = 0;

        failed |= test_limit();
        failed |= test_alignment_and_zeroing();
        failed |= test_strings();
        failed |= test_huge();
        if (failed)
                return 1;
        printf("test_arena: ok\n");
        return 0;
}
