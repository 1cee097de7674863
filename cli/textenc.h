/* textenc.h - text <-> token ids for the subcommands (tokenize, eval --text,
 * generate): the "bytes" tokenizer (one token per byte) or a real one from
 * common/text, and whole files encoded in parallel over line-safe chunks with
 * a progress line.
 *
 * A text file is one document: its ids are those of
 * encode(text, add_special_tokens) of the whole file.  Chunks are encoded
 * independently only when that provably gives the same ids (the rule is in
 * textenc.c, te_split_rule, and docs/tokenizers.md); otherwise the file is
 * encoded in one piece. */
#ifndef PSLORA_TEXTENC_H
#define PSLORA_TEXTENC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

typedef struct {
    tokenizer *tok;
    char *path;             /* as given ("bytes", a directory or a tokenizer.json) */
    int bytes;              /* the bytes tokenizer: no special tokens, ids 0..255 */
    int split_safe;         /* chunks ending in "X\n" before "Y" may be encoded apart */
    const char *why_whole;  /* why not, when split_safe is 0 */
    int affix_known;        /* add_special = prefix + ids + suffix, probed */
    uint32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;
} te_tokenizer;

/* path: "bytes", a model directory (tokenizer.json, or vocab.json +
 * merges.txt, or vocab.txt) or a tokenizer.json. */
int te_open(te_tokenizer *t, const char *path, pl_err *e);
/* The tokenizer of a model directory when it has one, else bytes; *real says which. */
int te_open_model(te_tokenizer *t, const char *dir, int *real, pl_err *e);
void te_close(te_tokenizer *t);
size_t te_vocab_size(const te_tokenizer *t);
/* Refuses a tokenizer whose ids could reach model_vocab or beyond; what
 * names the model ("model/config.json"). */
int te_check_vocab(const te_tokenizer *t, long model_vocab, const char *what, pl_err *e);

typedef struct {
    int add_special, replace_invalid;
    int threads;            /* <= 0: omp_get_max_threads() */
} te_opts;

/* Encodes the file at path (memory-mapped) into a heap array *ids of *n ids.
 * Progress on stderr when it is a terminal or the input is long. */
int te_encode_file(const te_tokenizer *t, const char *path, const te_opts *o, uint32_t **ids,
                   size_t *n, pl_err *e);
/* Encodes text[0..len) in one piece, appending to *ids (n, cap as tok_encode). */
int te_encode(const te_tokenizer *t, const char *text, size_t len, int add_special,
              uint32_t **ids, size_t *n, size_t *cap, pl_err *e);
/* Decodes ids into a heap text (NUL-terminated, *len bytes); every id must
 * be below te_vocab_size. */
int te_decode(const te_tokenizer *t, const uint32_t *ids, size_t n, int skip_special,
              char **text, size_t *len, pl_err *e);

#endif
