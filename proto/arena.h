/*
 * arena.h - one allocator per unit of work (a fetched page, a refine job, a
 * query).  Allocations are carved from chunks and freed all at once by
 * arena_release().  Every arena has a hard byte limit set at init; an
 * allocation past it fails, so input can never grow memory without bound.
 *
 * Thread rules: an arena belongs to one thread.
 */
#ifndef STYLUS_ARENA_H
#define STYLUS_ARENA_H

#include <stddef.h>

struct arena_chunk;

struct arena {
        struct arena_chunk *head; /* newest chunk first */
        size_t used;              /* bytes handed out plus chunk overhead */
        size_t limit;             /* hard maximum of used */
};

/* Start an empty arena that may hold at most limit bytes. */
void arena_init(struct arena *a, size_t limit);

/* Free every allocation; the arena is empty and reusable afterwards. */
void arena_release(struct arena *a);

/* size bytes aligned for any type, or NULL when out of memory or over the limit. */
void *arena_alloc(struct arena *a, size_t size);

/* Zeroed array of n elements of size bytes; NULL on overflow, limit or OOM. */
void *arena_calloc(struct arena *a, size_t n, size_t size);

/* NUL-terminated copy of the first len bytes of s (which need not be terminated). */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* NUL-terminated copy of s; NULL s gives NULL. */
char *arena_strdup(struct arena *a, const char *s);

/* printf into the arena. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
