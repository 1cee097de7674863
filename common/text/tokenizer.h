/* tokenizer.h - text <-> token ids as Hugging Face `tokenizers` does it,
 * driven by a model's tokenizer.json (or GPT-2's vocab.json + merges.txt, or
 * BERT's vocab.txt), plus the "bytes" tokenizer (one token per byte).
 *
 * A loaded tokenizer is read-only: several threads may encode with it at
 * once, each through its own tok_state (regex match data, the BPE word
 * cache, buffers).  Errors come back as one line in a pl_err. */
#ifndef PSLORA_TOKENIZER_H
#define PSLORA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef struct tokenizer tokenizer;
typedef struct tok_state tok_state;

/* path: "bytes", a model directory (tokenizer.json, else vocab.json +
 * merges.txt, else vocab.txt), or a tokenizer.json file. */
int tok_load(tokenizer **t, const char *path, pl_err *e);
/* The same from tokenizer.json text in memory; label names it in messages. */
int tok_load_json(tokenizer **t, const char *json, size_t len, const char *label, pl_err *e);
void tok_free(tokenizer *t);
/* Largest id + 1 over the vocabulary, the added tokens and the special
 * tokens of the post-processor. */
uint32_t tok_vocab_size(const tokenizer *t);

tok_state *tok_state_new(const tokenizer *t);
void tok_state_free(tok_state *s);

/* Encodes text[0..len) as HF encode(text, add_special_tokens=add_special).
 * Appends the ids to *ids (realloc'd, *n and *cap updated).  Invalid UTF-8:
 * -1 with "byte offset N: invalid UTF-8" in e, unless replace_invalid != 0,
 * in which case each bad byte becomes U+FFFD first.  The bytes tokenizer
 * takes any bytes. */
int tok_encode(const tokenizer *t, tok_state *s, const char *text, size_t len, int add_special,
               int replace_invalid, uint32_t **ids, size_t *n, size_t *cap, pl_err *e);

/* Decodes ids as HF decode(ids, skip_special_tokens=skip_special); *text is
 * malloc'd and NUL-terminated (*len excludes the NUL).  An id >= the vocab
 * size: -1 naming it. */
int tok_decode(const tokenizer *t, const uint32_t *ids, size_t n, int skip_special, char **text,
               size_t *len, pl_err *e);

/* 1 when a text may be cut just after a "\n" between two printable ASCII
 * characters and its pieces encoded apart (special tokens aside) with the
 * ids of the whole: every stage of the tokenizer restarts there (the rule is
 * in tok_chunk.c).  0 with *why saying which stage forbids it. */
int tok_chunk_safe(const tokenizer *t, const char **why);

/* One paragraph for `pslora inspect`: model type, vocab size, special
 * tokens, normalizer, pre-tokenizer, decoder and post-processor chains. */
void tok_describe(const tokenizer *t, FILE *f);

/* id of a token string (added tokens first, then the vocabulary), or -1. */
int64_t tok_token_to_id(const tokenizer *t, const char *token);

/* The string of id (an added token's content or the vocabulary entry), or
 * NULL for an id with no token; *len gets its length. */
const char *tok_id_to_token(const tokenizer *t, uint32_t id, size_t *len);
/* 1 when id is a special added token. */
int tok_is_special(const tokenizer *t, uint32_t id);

#endif
