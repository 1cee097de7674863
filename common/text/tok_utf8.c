/* tok_utf8.c - UTF-8 and character classes (tok_utf8.h). */
#include "tok_utf8.h"

#include <utf8proc.h>

int tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad)
{
    unsigned char c = s[0];
    *bad = 1;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    uint32_t v = c & (need == 2 ? 0x1F : need == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < need; k++) {
        unsigned char b = k < n ? s[k] : 0;
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (k >= n || b < l || b > h) {
            *bad = k;
            return 0;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return (int)need;
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
    unsigned char *u = (unsigned char *)out;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tok_utf8_check(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII runs eight bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            __builtin_memcpy(&w, u + i, 8);
            if (w & 0x8080808080808080ULL)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t bad;
        int k = tok_utf8_decode(u + i, n - i, &cp, &bad);
        if (!k)
            return i;
        i += (size_t)k;
    }
    return n;
}

/* Shared walk: per_byte chooses one U+FFFD per bad byte or per subpart. */
static void tok_utf8_repair(const char *s, size_t n, tok_buf *out, int per_byte)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t good = tok_utf8_check(s + i, n - i);
        tok_buf_add(out, s + i, good);
        i += good;
        if (i >= n)
            break;
        uint32_t cp;
        size_t bad;
        tok_utf8_decode(u + i, n - i, &cp, &bad);
        size_t skip = per_byte ? 1 : bad;
        tok_buf_add(out, "\xEF\xBF\xBD", 3);
        i += skip;
    }
}

void tok_utf8_replace_bytes(const char *s, size_t n, tok_buf *out)
{
    tok_utf8_repair(s, n, out, 1);
}

void tok_utf8_lossy(const char *s, size_t n, tok_buf *out)
{
    tok_utf8_repair(s, n, out, 0);
}

int tok_is_whitespace(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int tok_is_bert_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

int tok_is_numeric(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

int tok_is_cjk(uint32_t c)
{
    /* the ranges of tokenizers' bert normalizer, gaps included */
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

int tok_is_bert_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r')
        return 0;
    /* Unassigned (Cn) is left out on purpose: utf8proc's tables are older
     * than Rust's, and would delete characters assigned since. */
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO ||
           k == UTF8PROC_CATEGORY_CS;
}

int tok_is_word(uint32_t c)
{
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (c == 0x200C || c == 0x200D)
        return 1;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_PC;
}

int tok_is_mark_nonspacing(uint32_t c)
{
    return c >= 0x300 && utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_MN;
}

void tok_lower_cp(uint32_t c, tok_buf *b)
{
    if (c < 0x80) {
        tok_buf_addc(b, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
        return;
    }
    if (c == 0x130) { /* SpecialCasing: İ -> i + COMBINING DOT ABOVE */
        tok_buf_add(b, "i\xCC\x87", 3);
        return;
    }
    tok_buf_addcp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
}
