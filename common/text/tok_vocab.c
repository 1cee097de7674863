/* tok_vocab.c - vocabulary maps (tok_vocab.h). */
#include "tok_vocab.h"

#include <stdlib.h>
#include <string.h>

void tok_vocab_add(tok_vocab *v, const char *s, size_t n, uint32_t id)
{
    if (id >= v->size) {
        uint32_t size = id + 1;
        if (size > v->cap) {   /* doubling: a realloc per id was quadratic (minutes under ASan) */
            uint32_t cap = v->cap ? v->cap : 256;
            while (cap < size)
                cap *= 2;
            v->off = tok_xrealloc(v->off, cap * sizeof *v->off);
            v->len = tok_xrealloc(v->len, cap * sizeof *v->len);
            v->cap = cap;
        }
        for (uint32_t i = v->size; i < size; i++) {
            v->off[i] = SIZE_MAX;
            v->len[i] = 0;
        }
        v->size = size;
    }
    uint64_t old;
    if (tok_strmap_get(&v->map, s, n, &old) && old != id && v->off[old] != SIZE_MAX) {
        v->off[old] = SIZE_MAX; /* the string moved to its new id */
        v->len[old] = 0;
    }
    if (tok_strmap_put(&v->map, s, n, id))
        v->count++;
    /* the key's offset in the arena: look it up again (cheap, load time) */
    tok_strslot *slot = NULL;
    uint64_t h = tok_hash(s, n);
    for (size_t i = (size_t)h & v->map.mask;; i = (i + 1) & v->map.mask) {
        slot = &v->map.slot[i];
        if (slot->used && slot->hash == h && slot->len == n &&
            memcmp(v->map.keys.p + slot->off, s, n) == 0)
            break;
    }
    v->off[id] = slot->off;
    v->len[id] = (uint32_t)n;
    if (n > v->max_len)
        v->max_len = n;
}

const char *tok_vocab_str(const tok_vocab *v, uint32_t id, size_t *len)
{
    if (id >= v->size || v->off[id] == SIZE_MAX)
        return NULL;
    *len = v->len[id];
    return v->map.keys.p + v->off[id];
}

void tok_vocab_free(tok_vocab *v)
{
    tok_strmap_free(&v->map);
    free(v->off);
    free(v->len);
    memset(v, 0, sizeof *v);
}
