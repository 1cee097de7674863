/* tok_vocab.h - a model vocabulary: token string -> id through a hash map,
 * id -> token string through an array (ids may have holes). */
#ifndef PSLORA_TOK_VOCAB_H
#define PSLORA_TOK_VOCAB_H

#include <stdint.h>

#include "tok_map.h"

/* Ids at or above this are refused: the id tables are arrays. */
#define TOK_MAX_ID (1u << 24)

typedef struct {
    tok_strmap map;
    size_t *off;      /* id -> offset of its string in map.keys, SIZE_MAX for a hole */
    uint32_t *len;
    uint32_t size;    /* largest id + 1 */
    uint32_t cap;     /* entries allocated in off/len (doubling: ids come one by one) */
    uint32_t count;   /* number of distinct strings */
    size_t max_len;   /* longest token in bytes */
} tok_vocab;

/* Adds token -> id (a repeated token keeps its last id, as a JSON object
 * read in order does).  id must be < TOK_MAX_ID (the loader checks). */
void tok_vocab_add(tok_vocab *v, const char *s, size_t n, uint32_t id);
static inline int64_t tok_vocab_get(const tok_vocab *v, const char *s, size_t n)
{
    uint64_t id;
    return tok_strmap_get(&v->map, s, n, &id) ? (int64_t)id : -1;
}
/* The string of id, or NULL for a hole / an id past the end. */
const char *tok_vocab_str(const tok_vocab *v, uint32_t id, size_t *len);
void tok_vocab_free(tok_vocab *v);

#endif
