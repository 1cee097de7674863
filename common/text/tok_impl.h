/* tok_impl.h - the inside of a tokenizer and of a tok_state, shared by the
 * loader (tok_json.c, tok_legacy.c) and the API (tokenizer.c).  Not for use
 * outside common/text/. */
#ifndef PSLORA_TOK_IMPL_H
#define PSLORA_TOK_IMPL_H

#include "tok_added.h"
#include "tok_bpe.h"
#include "tok_decode.h"
#include "tok_normalize.h"
#include "tok_post.h"
#include "tok_pretok.h"
#include "tok_vocab.h"
#include "tok_wordpiece.h"
#include "tokenizer.h"

typedef enum { TM_BYTES, TM_BPE, TM_WORDPIECE, TM_WORDLEVEL } tok_model_kind;

struct tokenizer {
    char *label;              /* where it came from, for messages */
    tok_model_kind kind;
    tok_vocab vocab;
    tok_bpe bpe;
    tok_wordpiece wp;         /* WordPiece and WordLevel */
    tok_norms norms;
    tok_pretoks pretoks;
    tok_decs decs;
    tok_posts posts;
    tok_added added;
    uint32_t size;            /* largest id + 1 */
    int32_t *added_of_id;     /* id -> index in added.v, -1 */
};

struct tok_state {
    const tokenizer *t;
    tok_rx_scratch rx;
    tok_buf text, norm, tmp;
    tok_segs raw, sub;
    tok_pretok_scratch pre;
    tok_bpe_scratch bpe;
};

#endif
