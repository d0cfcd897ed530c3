#include "proto/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN 16384
#define ALIGN     16

struct arena_chunk {
        struct arena_chunk *next;
        size_t size; /* usable bytes after the header */
        size_t off;  /* next free byte */
        max_align_t data[];
};

void arena_init(struct arena *a, size_t limit)
{
        a->head = NULL;
        a->used = 0;
        a->limit = limit;
}

void arena_release(struct arena *a)
{
        struct arena_chunk *c = a->head;

        while (c) {
                struct arena_chunk *next = c->next;
                free(c);
                c = next;
        }
        a->head = NULL;
        a->used = 0;
}

void *arena_alloc(struct arena *a, size_t size)
{
        struct arena_chunk *c = a->head;
        size_t need = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
        size_t chunk;
        void *p;

        if (size == 0)
                need = ALIGN;
        if (need < size)
                return NULL;
        if (!c || c->size - c->off < need) {
                /* Compare by subtraction: used + need could overflow. */
                size_t room = a->limit - a->used;

                if (room < sizeof(*c) || need > room - sizeof(*c))
                        return NULL;
                chunk = need > CHUNK_MIN ? need : CHUNK_MIN;
                if (chunk > room - sizeof(*c))
                        chunk = need; /* a last, smaller chunk still fits under the limit */
                c = malloc(sizeof(*c) + chunk);
                if (!c)
                        return NULL;
                c->next = a->head;
                c->size = chunk;
                c->off = 0;
                a->head = c;
                a->used += chunk + sizeof(*c);
        }
        p = (char *)c->data + c->off;
        c->off += need;
        return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
        void *p;

        if (size && n > SIZE_MAX / size)
                return NULL;
        p = arena_alloc(a, n * size);
        if (p)
                memset(p, 0, n * size);
        return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
        char *p;

        if (len == SIZE_MAX)
                return NULL;
        p = arena_alloc(a, len + 1);
        if (!p)
                return NULL;
        memcpy(p, s, len);
        p[len] = '\0';
        return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
        if (!s)
                return NULL;
        return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
        va_list ap;
        int n;
        char *p;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return NULL;
        p = arena_alloc(a, (size_t)n + 1);
        if (!p)
                return NULL;
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
        return p;
}
