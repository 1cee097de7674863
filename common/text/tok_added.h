/* tok_added.h - added tokens: strings matched in the text before the model
 * runs (leftmost, longest at the leftmost position), with the options of the
 * tokenizers crate: single_word (not inside a word), lstrip / rstrip (the
 * match swallows the whitespace on its left / right), normalized (matched in
 * the normalized text rather than the raw text) and special (skipped by
 * decode(skip_special)). */
#ifndef PSLORA_TOK_ADDED_H
#define PSLORA_TOK_ADDED_H

#include <stddef.h>
#include <stdint.h>

#include "tok_buf.h"
#include "tok_map.h"

typedef struct {
    char *content;     /* as written in the file */
    size_t len;
    char *match;       /* what is searched: content, normalized when normalized */
    size_t match_len;
    uint32_t id;
    int special, single_word, lstrip, rstrip, normalized;
} tok_added_token;

/* A byte trie over the match strings of one kind (raw or normalized). */
typedef struct {
    tok_pairmap edge;       /* (node, byte) -> child node in .id */
    int32_t *term;          /* node -> token index ending here, -1 */
    size_t n_nodes, cap_nodes;
    uint8_t first[256];     /* bytes that start some token */
    int empty;              /* no token of this kind */
} tok_trie;

typedef struct {
    tok_added_token *v;
    size_t n;
    tok_trie raw, norm;
} tok_added;

/* A piece of text between matches (tok == -1) or a matched token (index). */
typedef struct {
    size_t s, e;
    int32_t tok;
} tok_seg;

typedef struct {
    tok_seg *v;
    size_t n, cap;
} tok_segs;

/* Builds the two tries once every token's match string is set. */
void tok_added_build(tok_added *a);
/* Splits s[0..n) by the raw (normalized = 0) or normalized tokens into
 * segs (cleared first); empty text pieces are left out. */
void tok_added_split(const tok_added *a, int normalized, const char *s, size_t n,
                     tok_segs *segs);
void tok_added_free(tok_added *a);
void tok_segs_free(tok_segs *s);

#endif
