/*
 * utf8.h - cutting text without cutting a character.  Pure; any thread.
 */
#ifndef STYLUS_PROTO_UTF8_H
#define STYLUS_PROTO_UTF8_H

#include <stddef.h>

/*
 * How many bytes of s[0..n) to keep within max bytes: n when it fits, else
 * max backed up to the start of the UTF-8 sequence it would split (s must
 * hold at least max + 1 bytes then).  Invalid UTF-8 is cut as bytes.
 */
size_t utf8_fit(const char *s, size_t n, size_t max);

#endif
