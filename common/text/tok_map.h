/* tok_map.h - the hash maps of the tokenizer: byte strings -> 64-bit values
 * (vocabularies, the per-thread word cache) and id pairs -> (rank, merged id)
 * (BPE merges).  Open addressing with linear probing over a power-of-two
 * table kept at most half full; keys are copied into the map's own arena. */
#ifndef PSLORA_TOK_MAP_H
#define PSLORA_TOK_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "tok_buf.h"

typedef struct {
    uint64_t hash;
    uint64_t val;
    size_t off;     /* key bytes in keys.p[off..off+len) */
    uint32_t len;
    uint32_t used;
} tok_strslot;

typedef struct {
    tok_strslot *slot;
    size_t mask, n;
    tok_buf keys;
} tok_strmap;

/* Inserts or overwrites key -> val.  Returns 1 when the key was new. */
int tok_strmap_put(tok_strmap *m, const char *key, size_t len, uint64_t val);
/* 1 and *val when present, else 0. */
int tok_strmap_get(const tok_strmap *m, const char *key, size_t len, uint64_t *val);
void tok_strmap_clear(tok_strmap *m);
void tok_strmap_free(tok_strmap *m);

typedef struct {
    uint64_t key;   /* (a << 32 | b) + 1, 0 = empty */
    uint32_t rank, id;
} tok_pairslot;

typedef struct {
    tok_pairslot *slot;
    size_t mask, n;
} tok_pairmap;

/* splitmix64's finalizer: every key bit reaches every slot bit. */
static inline size_t tok_pair_slot(uint64_t k, size_t mask)
{
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    k ^= k >> 31;
    return (size_t)k & mask;
}

void tok_pairmap_put(tok_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);
static inline const tok_pairslot *tok_pairmap_get(const tok_pairmap *m, uint32_t a, uint32_t b)
{
    if (!m->slot)
        return NULL;
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t i = tok_pair_slot(k, m->mask);
    for (;; i = (i + 1) & m->mask) {
        const tok_pairslot *s = &m->slot[i];
        if (s->key == k)
            return s;
        if (!s->key)
            return NULL;
    }
}
void tok_pairmap_free(tok_pairmap *m);

#endif
