/*
 * weight.c - recommended weight from card text and from <lora:NAME:W> tags.
 *
 * Card text is scanned for numbers; a number (or range) counts when a weight
 * word stands near it on the same line and no "other setting" word stands
 * right before or after it.  Numbers glued to letters or to other numbers
 * ("v1.5", "2M", "512x768", "1.2.3", "16:9", "70%") are never weights.
 */
#include "refiner/weight.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "refiner/html_text.h"

#define WORD_BEFORE_BYTES 48  /* a weight word may end this far before the number */
#define WORD_AFTER_BYTES  24  /* ... or start this far after it ("0.7 is recommended") */
#define CONTEXT_WORDS     2   /* words before a number checked against other_words */
#define MAX_INT_DIGITS    6   /* longer integers are not weights; stops overflow */
#define MAX_NAME          512 /* longest NAME in <lora:NAME:W> */

/* Words that make a nearby number a weight statement. */
static const char *const weight_words[] = {
    "weight",     "strength", "recommended", "recommend", "scale",
    "multiplier", "use at",   "use it at",   "best at",
};

/*
 * One of these among the CONTEXT_WORDS words before a number, or as the word
 * right after it, makes the number another setting: a version or base model
 * ("SD 1.5", "SDXL 1.0"), a sampler setting ("CFG 7", "Clip skip 2",
 * "denoising strength 0.4"), a size ("512 x 768") or a training parameter
 * ("10 epochs").
 */
static const char *const other_words[] = {
    "v",       "ver",         "version",  "sd",       "sdxl",       "xl",        "flux",
    "pony",    "illustrious", "cfg",      "guidance", "steps",      "step",      "sampler",
    "seed",    "clip",        "skip",     "eta",      "denoise",    "denoising", "hires",
    "highres", "upscale",     "upscaler", "upscaled", "resolution", "res",       "px",
    "pixels",  "x",           "width",    "height",   "epoch",      "epochs",    "repeats",
    "batch",   "dim",         "alpha",    "rank",     "lr",         "images",    "image",
};

/* File extensions dropped from LoRA names before comparing them. */
static const char *const model_extensions[] = {".safetensors", ".ckpt", ".pth", ".pt", ".bin"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_letter(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t';
}

double weight_clamp(double w)
{
        if (isnan(w))
                return WEIGHT_DEFAULT;
        if (w < WEIGHT_MIN)
                return WEIGHT_MIN;
        if (w > WEIGHT_MAX)
                return WEIGHT_MAX;
        return w;
}

/* Unsigned decimal at s[i..len): "7", "0.75", ".5", "1."; *end is past it. */
static bool parse_decimal(const char *s, size_t len, size_t i, double *v, size_t *end)
{
        double value = 0, scale = 0.1;
        size_t int_digits = 0, frac_digits = 0;

        for (; i < len && is_digit(s[i]); i++, int_digits++)
                value = value * 10 + (s[i] - '0');
        if (int_digits > MAX_INT_DIGITS)
                value = 1e9;
        if (i + 1 < len && s[i] == '.' && is_digit(s[i + 1])) {
                for (i++; i < len && is_digit(s[i]); i++, frac_digits++, scale /= 10)
                        value += (s[i] - '0') * scale;
        }
        if (int_digits == 0 && frac_digits == 0)
                return false;
        *v = value;
        *end = i;
        return true;
}

/* Whether a number may start at s[i]: not glued to a word, a number or a sign. */
static bool number_starts(const char *s, size_t len, size_t i)
{
        char prev = i > 0 ? s[i - 1] : ' ';
        bool digit_before = i > 1 && is_digit(s[i - 2]);

        if (!(is_digit(s[i]) || (s[i] == '.' && i + 1 < len && is_digit(s[i + 1]))))
                return false;
        if (is_letter(prev) || is_digit(prev) || prev == '.' || prev == '_' || prev == '-' ||
            prev == '+')
                return false;
        /* The second half of "16:9", "512*768", "1/2", "3,5". */
        return !((prev == ':' || prev == '*' || prev == '/' || prev == ',') && digit_before);
}

/* Whether a number may end at s[e]: not glued to a unit, a word or another number. */
static bool number_ends(const char *s, size_t len, size_t e)
{
        char c = e < len ? s[e] : ' ';
        bool digit_next = e + 1 < len && is_digit(s[e + 1]);

        if (is_letter(c) || is_digit(c) || c == '%' || c == '_')
                return false;
        if ((c == '.' || c == ':' || c == '*' || c == '/' || c == ',') && digit_next)
                return false;
        return !(e + 1 < len && (unsigned char)c == 0xC3 && (unsigned char)s[e + 1] == 0x97);
}

/* Index after a range separator (with the blanks around it) at s[i..), or 0. */
static size_t range_separator(const char *s, size_t len, size_t i)
{
        static const char *const wide[] = {"\xE2\x80\x93", "\xE2\x80\x94", "\xEF\xBD\x9E",
                                           "\xE3\x80\x9C"}; /* en, em dash, wide tildes */
        size_t k;

        while (i < len && is_blank(s[i]))
                i++;
        if (i >= len)
                return 0;
        if (s[i] == '-' || s[i] == '~') {
                i++;
        } else if (i + 2 < len && strncasecmp(s + i, "to", 2) == 0 && !is_letter(s[i + 2])) {
                i += 2;
        } else {
                for (k = 0; k < COUNT(wide); k++)
                        if (i + 3 <= len && memcmp(s + i, wide[k], 3) == 0)
                                break;
                if (k == COUNT(wide))
                        return 0;
                i += 3;
        }
        while (i < len && is_blank(s[i]))
                i++;
        return i;
}

/*
 * The value written at s[i]: a number, or the mean of a range, in the weight
 * range.  *end is past what was read, so the scan can continue after it.
 */
static bool read_value(const char *s, size_t len, size_t i, double *v, size_t *end)
{
        double lo, hi;
        size_t e, j;

        if (!parse_decimal(s, len, i, &lo, &e)) {
                *end = i + 1;
                return false;
        }
        *end = e;
        if (!number_ends(s, len, e))
                return false;
        j = range_separator(s, len, e);
        if (j > 0 && j < len && parse_decimal(s, len, j, &hi, &j)) {
                *end = j;
                if (!number_ends(s, len, j) || lo > WEIGHT_MAX || hi > WEIGHT_MAX)
                        return false;
                *v = (lo + hi) / 2;
        } else {
                *v = lo;
        }
        return *v >= WEIGHT_MIN && *v <= WEIGHT_MAX;
}

static bool is_other_word(const char *word, size_t n)
{
        size_t k;

        for (k = 0; k < COUNT(other_words); k++)
                if (strlen(other_words[k]) == n && strncasecmp(word, other_words[k], n) == 0)
                        return true;
        return false;
}

/* Whether one of the CONTEXT_WORDS words before s[i] (same phrase) names another setting. */
static bool other_setting_before(const char *s, size_t i)
{
        size_t end;
        int k;

        for (k = 0; k < CONTEXT_WORDS; k++) {
                while (i > 0 && s[i - 1] != '\0' && strchr(" \t:=([*\"'@", s[i - 1]))
                        i--;
                end = i;
                while (i > 0 && is_letter(s[i - 1]))
                        i--;
                if (i == end)
                        return false;
                if (is_other_word(s + i, end - i))
                        return true;
        }
        return false;
}

/* Whether the word right after s[e] names another setting ("20 steps", "512 x 512"). */
static bool other_setting_after(const char *s, size_t len, size_t e)
{
        size_t start;

        while (e < len && is_blank(s[e]))
                e++;
        start = e;
        while (e < len && is_letter(s[e]))
                e++;
        return e > start && is_other_word(s + start, e - start);
}

static bool has_weight_word(const char *s, size_t n)
{
        size_t k;

        for (k = 0; k < COUNT(weight_words); k++)
                if (text_find_phrase(s, n, weight_words[k], NULL))
                        return true;
        return false;
}

/* Whether a weight word stands near s[start..end) on the same line. */
static bool near_weight_word(const char *s, size_t len, size_t start, size_t end)
{
        size_t from = start, to = end;

        while (from > 0 && s[from - 1] != '\n' && start - from < WORD_BEFORE_BYTES)
                from--;
        while (to < len && s[to] != '\n' && to - end < WORD_AFTER_BYTES)
                to++;
        return has_weight_word(s + from, start - from) || has_weight_word(s + end, to - end);
}

int weight_from_text(const char *text, size_t len, double *w)
{
        size_t i, end;
        double v;

        if (!w)
                return ST_EINVAL;
        *w = WEIGHT_DEFAULT;
        if (!text)
                return ST_ENOTFOUND;
        for (i = 0; i < len; i++) {
                if (!number_starts(text, len, i))
                        continue;
                if (read_value(text, len, i, &v, &end) && near_weight_word(text, len, i, end) &&
                    !other_setting_before(text, i) && !other_setting_after(text, len, end)) {
                        *w = v;
                        return 0;
                }
                i = end - 1;
        }
        return ST_ENOTFOUND;
}

/* One <lora:NAME:W> tag: NAME is name[0..name_len), not terminated. */
struct lora_tag {
        const char *name;
        size_t name_len;
        double weight;
};

/* Next tag at or after p[*pos] (len bytes in all); *pos moves past it. */
static bool next_tag(const char *p, size_t len, size_t *pos, struct lora_tag *t)
{
        size_t i = *pos, name, name_end, num;
        double v, sign;

        for (; i < len; i++) {
                if (p[i] != '<' || len - i < 6)
                        continue;
                if (strncasecmp(p + i + 1, "lora:", 5) != 0 &&
                    strncasecmp(p + i + 1, "lyco:", 5) != 0)
                        continue;
                name = i + 6;
                for (name_end = name; name_end < len && !strchr(":<>\n", p[name_end]);)
                        name_end++;
                if (name_end == len || p[name_end] != ':' || name_end == name ||
                    name_end - name > MAX_NAME)
                        continue;
                num = name_end + 1;
                while (num < len && is_blank(p[num]))
                        num++;
                sign = 1;
                if (num < len && (p[num] == '-' || p[num] == '+'))
                        sign = p[num++] == '-' ? -1 : 1;
                if (!parse_decimal(p, len, num, &v, &num))
                        continue;
                while (num < len && is_blank(p[num]))
                        num++;
                if (num == len || (p[num] != ':' && p[num] != '>'))
                        continue;
                t->name = p + name;
                t->name_len = name_end - name;
                t->weight = sign * v;
                *pos = num;
                return true;
        }
        *pos = len;
        return false;
}

/* Narrow s[0..*n) to the stem of a model name: no directory, no extension, no blanks. */
static const char *name_stem(const char *s, size_t *n)
{
        size_t i, ext;

        for (i = *n; i > 0; i--) {
                if (s[i - 1] == '/' || s[i - 1] == '\\') {
                        s += i;
                        *n -= i;
                        break;
                }
        }
        for (i = 0; i < COUNT(model_extensions); i++) {
                ext = strlen(model_extensions[i]);
                if (*n > ext && strncasecmp(s + *n - ext, model_extensions[i], ext) == 0) {
                        *n -= ext;
                        break;
                }
        }
        while (*n > 0 && is_blank(s[0])) {
                s++;
                (*n)--;
        }
        while (*n > 0 && is_blank(s[*n - 1]))
                (*n)--;
        return s;
}

static bool same_name(const char *a, size_t a_len, const char *b, size_t b_len)
{
        a = name_stem(a, &a_len);
        b = name_stem(b, &b_len);
        return a_len == b_len && a_len > 0 && strncasecmp(a, b, a_len) == 0;
}

int weight_from_prompt_match(const char *prompt, const char *lora_name, double *w)
{
        struct lora_tag t;
        size_t pos = 0, len;

        if (!w)
                return ST_EINVAL;
        if (!prompt || !lora_name)
                return ST_ENOTFOUND;
        len = strlen(prompt);
        while (next_tag(prompt, len, &pos, &t)) {
                if (same_name(t.name, t.name_len, lora_name, strlen(lora_name))) {
                        *w = t.weight;
                        return 0;
                }
        }
        return ST_ENOTFOUND;
}

int weight_from_prompt(const char *prompt, const char *lora_name_hint, double *w)
{
        struct lora_tag t;
        size_t pos = 0;

        if (!w)
                return ST_EINVAL;
        if (!prompt)
                return ST_ENOTFOUND;
        if (lora_name_hint && weight_from_prompt_match(prompt, lora_name_hint, w) == 0)
                return 0;
        if (!next_tag(prompt, strlen(prompt), &pos, &t))
                return ST_ENOTFOUND;
        *w = t.weight;
        return 0;
}
