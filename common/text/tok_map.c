/* tok_map.c - string and pair hash maps (tok_map.h). */
#include "tok_map.h"

#include <stdlib.h>
#include <string.h>

static void tok_strmap_grow(tok_strmap *m)
{
    size_t cap = m->slot ? 2 * (m->mask + 1) : 64;
    tok_strslot *old = m->slot;
    size_t old_cap = old ? m->mask + 1 : 0;
    m->slot = tok_xrealloc(NULL, cap * sizeof *m->slot);
    memset(m->slot, 0, cap * sizeof *m->slot);
    m->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used)
            continue;
        size_t j = (size_t)old[i].hash & m->mask;
        while (m->slot[j].used)
            j = (j + 1) & m->mask;
        m->slot[j] = old[i];
    }
    free(old);
}

static tok_strslot *tok_strmap_find(const tok_strmap *m, const char *key, size_t len,
                                    uint64_t h)
{
    for (size_t i = (size_t)h & m->mask;; i = (i + 1) & m->mask) {
        tok_strslot *s = &m->slot[i];
        if (!s->used)
            return s;
        if (s->hash == h && s->len == len && memcmp(m->keys.p + s->off, key, len) == 0)
            return s;
    }
}

int tok_strmap_put(tok_strmap *m, const char *key, size_t len, uint64_t val)
{
    if (!m->slot || 2 * (m->n + 1) > m->mask + 1)
        tok_strmap_grow(m);
    uint64_t h = tok_hash(key, len);
    tok_strslot *s = tok_strmap_find(m, key, len, h);
    if (s->used) {
        s->val = val;
        return 0;
    }
    s->used = 1;
    s->hash = h;
    s->val = val;
    s->len = (uint32_t)len;
    s->off = m->keys.len;
    tok_buf_add(&m->keys, key, len);
    m->n++;
    return 1;
}

int tok_strmap_get(const tok_strmap *m, const char *key, size_t len, uint64_t *val)
{
    if (!m->slot)
        return 0;
    tok_strslot *s = tok_strmap_find(m, key, len, tok_hash(key, len));
    if (!s->used)
        return 0;
    *val = s->val;
    return 1;
}

void tok_strmap_clear(tok_strmap *m)
{
    if (m->slot)
        memset(m->slot, 0, (m->mask + 1) * sizeof *m->slot);
    m->n = 0;
    m->keys.len = 0;
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slot);
    tok_buf_free(&m->keys);
    memset(m, 0, sizeof *m);
}

static void tok_pairmap_grow(tok_pairmap *m)
{
    size_t cap = m->slot ? 2 * (m->mask + 1) : 64;
    tok_pairslot *old = m->slot;
    size_t old_cap = old ? m->mask + 1 : 0;
    m->slot = tok_xrealloc(NULL, cap * sizeof *m->slot);
    memset(m->slot, 0, cap * sizeof *m->slot);
    m->mask = cap - 1;
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].key)
            continue;
        size_t j = tok_pair_slot(old[i].key, m->mask);
        while (m->slot[j].key)
            j = (j + 1) & m->mask;
        m->slot[j] = old[i];
    }
    free(old);
}

void tok_pairmap_put(tok_pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
    if (!m->slot || 2 * (m->n + 1) > m->mask + 1)
        tok_pairmap_grow(m);
    uint64_t k = (((uint64_t)a << 32) | b) + 1;
    size_t i = tok_pair_slot(k, m->mask);
    while (m->slot[i].key && m->slot[i].key != k)
        i = (i + 1) & m->mask;
    if (!m->slot[i].key)
        m->n++;
    m->slot[i] = (tok_pairslot){k, rank, id};
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->slot);
    memset(m, 0, sizeof *m);
}
