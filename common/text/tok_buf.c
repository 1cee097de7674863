/* tok_buf.c - growable buffers, piece lists and the byte hash (tok_buf.h). */
#include "tok_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *tok_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q) {
        fprintf(stderr, "tokenizer: out of memory (%zu bytes)\n", size);
        abort();
    }
    return q;
}

char *tok_xstrndup(const char *s, size_t n)
{
    char *d = tok_xrealloc(NULL, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void tok_buf_reserve(tok_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->p = tok_xrealloc(b->p, cap);
    b->cap = cap;
}

void tok_buf_add(tok_buf *b, const void *p, size_t n)
{
    tok_buf_reserve(b, n);
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

void tok_buf_free(tok_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void tok_pieces_clear(tok_pieces *l)
{
    l->b.len = 0;
    l->n = 0;
}

void tok_pieces_push(tok_pieces *l, size_t off, size_t len, int at0)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = tok_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (tok_piece){off, len, at0};
}

void tok_pieces_add(tok_pieces *l, const char *s, size_t n, int at0)
{
    size_t off = l->b.len;
    tok_buf_add(&l->b, s, n);
    tok_pieces_push(l, off, n, at0);
}

void tok_pieces_free(tok_pieces *l)
{
    tok_buf_free(&l->b);
    free(l->v);
    memset(l, 0, sizeof *l);
}

void tok_buf_add_chain(tok_buf *b, const char *const *names, const void *v, size_t n,
                       size_t stride)
{
    if (n == 0)
        tok_buf_add(b, "none", 4);
    for (size_t k = 0; k < n; k++) {
        int kind;
        memcpy(&kind, (const char *)v + k * stride, sizeof kind);
        if (k)
            tok_buf_add(b, " > ", 3);
        tok_buf_add(b, names[kind], strlen(names[kind]));
    }
}

static inline uint64_t tok_mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    h ^= h >> 32;
    return h;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = tok_mix(h ^ w) + 0x9e3779b97f4a7c15ULL;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return tok_mix(h ^ w ^ ((uint64_t)n << 56));
}

void tok_ids_push(uint32_t **ids, size_t *n, size_t *cap, uint32_t id)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *ids = tok_xrealloc(*ids, *cap * sizeof **ids);
    }
    (*ids)[(*n)++] = id;
}
