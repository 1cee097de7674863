/* tok_utf8.h - UTF-8 decoding, validation and repair, and the character
 * classes the Hugging Face components test (Rust's char::is_whitespace,
 * BERT's punctuation / control / CJK tests, char::is_numeric), answered from
 * utf8proc's Unicode tables where a category is involved. */
#ifndef PSLORA_TOK_UTF8_H
#define PSLORA_TOK_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "tok_buf.h"

/* Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 if the bytes
 * there do not start one; *cp gets the code point.  *bad gets how many bytes
 * form the maximal ill-formed prefix when 0 is returned (>= 1). */
int tok_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad);

/* Fast decode of already validated UTF-8: code point at s, advances *i. */
static inline uint32_t tok_utf8_next(const char *s, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s + *i;
    if (u[0] < 0x80) {
        *i += 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *i += 2;
        return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *i += 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *i += 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
           ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
}

/* Byte length of the character starting with lead byte c (valid UTF-8). */
static inline size_t tok_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Writes cp as UTF-8 into out, returns its length. */
size_t tok_utf8_encode(uint32_t cp, char out[4]);
static inline void tok_buf_addcp(tok_buf *b, uint32_t cp)
{
    char u[4];
    tok_buf_add(b, u, tok_utf8_encode(cp, u));
}

/* Offset of the first byte that is not part of valid UTF-8, or n. */
size_t tok_utf8_check(const char *s, size_t n);
/* Appends s with each byte that is not part of valid UTF-8 replaced by U+FFFD. */
void tok_utf8_replace_bytes(const char *s, size_t n, tok_buf *out);
/* Appends s as Rust's String::from_utf8_lossy: each maximal ill-formed
 * subsequence becomes one U+FFFD. */
void tok_utf8_lossy(const char *s, size_t n, tok_buf *out);

int tok_is_whitespace(uint32_t cp);  /* Unicode White_Space (Rust char::is_whitespace) */
int tok_is_bert_punct(uint32_t cp);  /* ASCII punctuation or a P* category */
int tok_is_numeric(uint32_t cp);     /* N* categories (Rust char::is_numeric) */
int tok_is_cjk(uint32_t cp);         /* BERT's "Chinese character" blocks */
int tok_is_bert_control(uint32_t cp);/* Cc/Cf/Co/Cs except \t \n \r */
int tok_is_word(uint32_t cp);        /* regex \w: letters, marks, Nd, Pc, ZWJ/ZWNJ */
int tok_is_mark_nonspacing(uint32_t cp);
/* Rust char::to_lowercase of cp into b (U+0130 lowers to two code points). */
void tok_lower_cp(uint32_t cp, tok_buf *b);

#endif
