/* tok_normalize.h - the normalizers of tokenizer.json (NFC, NFD, NFKC, NFKD,
 * Lowercase, StripAccents, Replace, Prepend, Strip, BertNormalizer), applied
 * in order as a flat chain (a Sequence is flattened when loaded).  Unicode
 * forms and case mapping come from utf8proc. */
#ifndef PSLORA_TOK_NORMALIZE_H
#define PSLORA_TOK_NORMALIZE_H

#include <stddef.h>

#include "err.h"
#include "tok_buf.h"
#include "tok_regex.h"

typedef enum {
    TN_NFC, TN_NFD, TN_NFKC, TN_NFKD, TN_LOWERCASE, TN_STRIP_ACCENTS, TN_REPLACE, TN_PREPEND,
    TN_STRIP, TN_BERT
} tok_norm_kind;

typedef struct {
    tok_norm_kind kind;
    tok_regex pattern;      /* Replace */
    char *content;          /* Replace: replacement; Prepend: the prefix */
    size_t content_len;
    int strip_left, strip_right;                     /* Strip */
    int clean_text, chinese, strip_accents, lowercase; /* BertNormalizer */
} tok_norm;

typedef struct {
    tok_norm *v;
    size_t n;
} tok_norms;

/* out = the chain applied to in[0..n) (valid UTF-8).  tmp is scratch. */
int tok_norms_apply(const tok_norms *c, tok_rx_scratch *x, const char *in, size_t n,
                    tok_buf *out, tok_buf *tmp, pl_err *e);
/* A short name of the chain for tok_describe ("NFC > Lowercase"). */
void tok_norms_describe(const tok_norms *c, tok_buf *out);
void tok_norms_free(tok_norms *c);

#endif
