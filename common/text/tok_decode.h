/* tok_decode.h - the decoders of tokenizer.json (ByteLevel, Metaspace,
 * WordPiece, ByteFallback, Fuse, Strip, Replace, BPEDecoder) as a flat chain
 * over the list of token strings, each mapping the list to a new list, as
 * the tokenizers crate's decode_chain; the result is the concatenation. */
#ifndef PSLORA_TOK_DECODE_H
#define PSLORA_TOK_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tok_buf.h"
#include "tok_regex.h"

typedef enum {
    TD_BYTELEVEL, TD_METASPACE, TD_WORDPIECE, TD_BYTEFALLBACK, TD_FUSE, TD_STRIP, TD_REPLACE,
    TD_BPE
} tok_dec_kind;

typedef struct {
    tok_dec_kind kind;
    char repl[4];          /* Metaspace replacement character */
    size_t repl_len;
    int drop_first;        /* Metaspace: prepend_scheme != never */
    char *text;            /* WordPiece prefix, Replace content, BPEDecoder suffix */
    size_t text_len;
    int cleanup;           /* WordPiece */
    uint32_t strip_cp;     /* Strip content */
    size_t start, stop;    /* Strip */
    tok_regex pattern;     /* Replace */
} tok_dec;

typedef struct {
    tok_dec *v;
    size_t n;
    int present;           /* 0: no decoder, tokens are joined with spaces */
} tok_decs;

/* Decodes the token strings in io (io and tmp are clobbered) into out. */
int tok_decs_apply(const tok_decs *c, tok_rx_scratch *x, tok_pieces *io, tok_pieces *tmp,
                   tok_buf *out, pl_err *e);
void tok_decs_describe(const tok_decs *c, tok_buf *out);
void tok_decs_free(tok_decs *c);

#endif
