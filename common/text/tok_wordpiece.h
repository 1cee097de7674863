/* tok_wordpiece.h - the WordPiece model (greedy longest match first from
 * the left, continuation pieces carry continuing_subword_prefix, a word with
 * an unmatched rest or longer than max_input_chars_per_word is unk_token) and
 * the WordLevel model (whole word or unk_token). */
#ifndef PSLORA_TOK_WORDPIECE_H
#define PSLORA_TOK_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tok_buf.h"
#include "tok_vocab.h"

typedef struct {
    char *unk;
    int64_t unk_id;        /* -1 when unk is not in the vocabulary */
    char *prefix;          /* continuing_subword_prefix */
    size_t prefix_len;
    size_t max_chars;      /* max_input_chars_per_word */
} tok_wordpiece;

int tok_wordpiece_encode(const tok_wordpiece *m, const tok_vocab *v, tok_buf *key,
                         const char *w, size_t n, uint32_t **ids, size_t *nids, size_t *cap,
                         pl_err *e);
int tok_wordlevel_encode(const tok_wordpiece *m, const tok_vocab *v, const char *w, size_t n,
                         uint32_t **ids, size_t *nids, size_t *cap, pl_err *e);
void tok_wordpiece_free(tok_wordpiece *m);

#endif
