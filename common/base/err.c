/* err.c - error lines and whole-value parsing (see err.h). */
#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies src into dst (cap bytes) with control bytes written as C escapes
 * ("\n", "\t", "\x01"), so a value quoted from input (a label holding a
 * newline, say) cannot break the message's one line; cut at cap. */
static void one_line(char *dst, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        char esc[5] = {(char)*p, 0};
        if (*p < 0x20 || *p == 0x7f) {
            const char *named = *p == '\n' ? "\\n" : *p == '\r' ? "\\r" : *p == '\t' ? "\\t" : NULL;
            if (named)
                memcpy(esc, named, 3);
            else
                esc[0] = '\\', esc[1] = 'x', esc[2] = hex[*p >> 4], esc[3] = hex[*p & 15];
        }
        size_t n = strlen(esc);
        if (o + n >= cap)
            break;
        memcpy(dst + o, esc, n);
        o += n;
    }
    dst[o] = 0;
}

int pl_errf(pl_err *e, const char *fmt, ...)
{
    if (e) {
        char raw[PL_ERR_LEN];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        one_line(e->msg, sizeof e->msg, raw);
    }
    return -1;
}

int pl_parse_long(const char *s, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

int pl_parse_float(const char *s, float *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || v != v)
        return -1;
    *out = v;
    return 0;
}
