/* utf8.c - cutting text without cutting a character (see utf8.h). */
#include "proto/utf8.h"

size_t utf8_fit(const char *s, size_t n, size_t max)
{
        if (n <= max)
                return n;
        while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
                max--;
        return max;
}
