/* tok_bpe.h - the BPE model: a word's characters looked up in the vocabulary
 * (with continuing_subword_prefix / end_of_word_suffix, byte_fallback to
 * <0xXX> tokens, unk and fuse_unk), then merged lowest rank first, leftmost
 * first among equals, through a hash map (id a, id b) -> (rank, merged id)
 * and a binary heap, as the tokenizers crate's Word::merge_all does.  A
 * bounded per-thread cache maps recent words (<= 256 bytes) to their ids. */
#ifndef PSLORA_TOK_BPE_H
#define PSLORA_TOK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tok_map.h"
#include "tok_vocab.h"

#define TOK_BPE_CHARS 0x10000 /* code points with a direct char -> id table */

typedef struct {
    tok_pairmap merges;
    char *unk;            /* unk_token or NULL */
    int64_t unk_id;       /* -1 when unk is NULL or not in the vocabulary */
    int fuse_unk, byte_fallback, ignore_merges;
    char *prefix, *suffix;   /* NULL or "" when absent */
    size_t prefix_len, suffix_len;
    size_t n_merges;
    int32_t byte_ids[256];   /* id of "<0xXX>", -1 */
    int32_t *char_ids;       /* cp -> id of the bare one-character token, -1 */
    tok_pairmap adjacent;    /* (cp, cp) next to each other in some token */
    int special_merges;      /* some merge involves a <0xXX> or the unk token */
} tok_bpe;

#define TOK_NO_CP UINT32_MAX

typedef struct {
    int32_t prev, next;
    uint32_t id, len;
    uint32_t cp;          /* the character of an unmerged symbol, TOK_NO_CP */
} tok_sym;

typedef struct {
    uint32_t rank, pos, id;
} tok_merge;

typedef struct {
    tok_sym *sym;
    size_t cap_sym;
    tok_merge *heap;
    size_t cap_heap;
    tok_strmap cache;
    uint32_t *cache_ids;
    size_t n_cache_ids, cap_cache_ids;
    tok_buf key;
} tok_bpe_scratch;

/* Builds the char table and byte-fallback ids once the vocabulary is loaded. */
void tok_bpe_finish(tok_bpe *m, const tok_vocab *v);
/* Adds merge number rank "a b".  -1 naming the missing token when a, b or
 * their concatenation is not in the vocabulary. */
int tok_bpe_add_merge(tok_bpe *m, const tok_vocab *v, const char *a, size_t na, const char *b,
                      size_t nb, uint32_t rank, const char *where, pl_err *e);
/* Appends the ids of word w[0..n) (valid UTF-8). */
int tok_bpe_encode(const tok_bpe *m, const tok_vocab *v, tok_bpe_scratch *s, const char *w,
                   size_t n, uint32_t **ids, size_t *nids, size_t *cap, pl_err *e);
void tok_bpe_free(tok_bpe *m);
void tok_bpe_scratch_free(tok_bpe_scratch *s);

#endif
