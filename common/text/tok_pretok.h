/* tok_pretok.h - the pre-tokenizers of tokenizer.json (ByteLevel, Split,
 * Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit, Punctuation,
 * Digits) as a flat chain over a list of pieces, with the split behaviours
 * of the tokenizers crate (Removed, Isolated, MergedWithPrevious,
 * MergedWithNext, Contiguous; invert).  Also GPT-2's byte <-> character map
 * that ByteLevel uses and its decoder inverts. */
#ifndef PSLORA_TOK_PRETOK_H
#define PSLORA_TOK_PRETOK_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tok_buf.h"
#include "tok_regex.h"

typedef enum {
    TP_BYTELEVEL, TP_SPLIT, TP_METASPACE, TP_BERT, TP_WHITESPACE, TP_WHITESPACE_SPLIT,
    TP_PUNCTUATION, TP_DIGITS
} tok_pretok_kind;

typedef enum {
    TB_REMOVED, TB_ISOLATED, TB_MERGED_WITH_PREVIOUS, TB_MERGED_WITH_NEXT, TB_CONTIGUOUS
} tok_behavior;

typedef enum { TPS_NEVER, TPS_FIRST, TPS_ALWAYS } tok_prepend_scheme;

/* GPT-2's pattern, as ByteLevel's use_regex applies it.  Hugging Face runs
 * it with Oniguruma, whose \s is exactly Unicode White_Space; PCRE2's \s also
 * takes U+180E, so the property is spelled out. */
#define TOK_GPT2_PATTERN                                                            \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\p{White_Space}\\p{L}\\p{N}]+"     \
    "|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+"

/* The Whitespace pre-tokenizer's \w+|[^\w\s]+ with the Rust regex crate's
 * Unicode \w (Alphabetic, marks, Nd, Pc, Join_Control) and \s (White_Space). */
#define TOK_W "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
#define TOK_WHITESPACE_PATTERN "[" TOK_W "]+|[^" TOK_W "\\p{White_Space}]+"

typedef struct {
    tok_pretok_kind kind;
    tok_regex pattern;          /* Split; ByteLevel with use_regex; Whitespace */
    tok_behavior behavior;      /* Split, Punctuation */
    int invert;                 /* Split */
    int add_prefix_space, use_regex;   /* ByteLevel */
    char repl[4];               /* Metaspace replacement character */
    size_t repl_len;
    tok_prepend_scheme prepend; /* Metaspace */
    int split;                  /* Metaspace */
    int individual_digits;      /* Digits */
} tok_pretok;

typedef struct {
    tok_pretok *v;
    size_t n;
} tok_pretoks;

typedef struct {
    size_t s, e;
    int m;
} tok_mark;

/* Per-thread scratch of the chain. */
typedef struct {
    tok_pieces a, b;
    tok_buf work;
    tok_mark *marks;
    size_t n_marks, cap_marks;
} tok_pretok_scratch;

/* Receives the pre-tokens, in order, a batch at a time; non-zero stops. */
typedef int (*tok_pre_sink)(void *ctx, const tok_pieces *l, pl_err *e);

/* Runs the chain on str[0..n) (at0: it starts the original text) and hands
 * the resulting pre-tokens to sink. */
int tok_pretoks_run(const tok_pretoks *c, tok_rx_scratch *x, tok_pretok_scratch *s,
                    const char *str, size_t n, int at0, tok_pre_sink sink, void *ctx, pl_err *e);
void tok_pretoks_describe(const tok_pretoks *c, tok_buf *out);
void tok_pretoks_free(tok_pretoks *c);
void tok_pretok_scratch_free(tok_pretok_scratch *s);

/* ByteLevel's character for byte b as UTF-8 (1 or 2 bytes). */
const char *tok_bytelevel_char(unsigned char b, size_t *len);
/* The byte a ByteLevel character stands for, or -1. */
int tok_bytelevel_byte(uint32_t cp);

#endif
