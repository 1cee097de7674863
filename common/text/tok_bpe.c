/* tok_bpe.c - BPE model (tok_bpe.h). */
#include "tok_bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_utf8.h"

#define TOK_CACHE_WORD 256        /* longest word cached, bytes (as the crate) */
#define TOK_CACHE_ENTRIES 65536   /* cache cleared when it reaches this */
#define TOK_LONG_WORD 64          /* symbols beyond which a word is cut at safe gaps */

/* The pairs of code points that stand next to each other in some token. */
static void tok_bpe_adjacency(tok_bpe *m, const tok_vocab *v)
{
    for (uint32_t id = 0; id < v->size; id++) {
        size_t n, i = 0;
        const char *s = tok_vocab_str(v, id, &n);
        if (!s || tok_utf8_check(s, n) != n)
            continue;
        uint32_t prev = tok_utf8_next(s, &i);
        while (i < n) {
            uint32_t c = tok_utf8_next(s, &i);
            tok_pairmap_put(&m->adjacent, prev, c, 0, 0);
            prev = c;
        }
    }
}

/* Whether a byte-fallback or the unk token appears in some merge. */
static int tok_bpe_special_merges(const tok_bpe *m)
{
    for (size_t i = 0; i <= m->merges.mask; i++) {
        const tok_pairslot *p = &m->merges.slot[i];
        if (!p->key)
            continue;
        uint32_t a = (uint32_t)((p->key - 1) >> 32), b = (uint32_t)(p->key - 1);
        if ((int64_t)a == m->unk_id || (int64_t)b == m->unk_id)
            return 1;
        for (int k = 0; k < 256; k++)
            if (m->byte_ids[k] >= 0 && ((uint32_t)m->byte_ids[k] == a || (uint32_t)m->byte_ids[k] == b))
                return 1;
    }
    return 0;
}

void tok_bpe_finish(tok_bpe *m, const tok_vocab *v)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int64_t id = tok_vocab_get(v, name, 6);
        m->byte_ids[b] = (int32_t)id;
    }
    m->char_ids = tok_xrealloc(NULL, TOK_BPE_CHARS * sizeof *m->char_ids);
    for (uint32_t c = 0; c < TOK_BPE_CHARS; c++) {
        char u[4];
        size_t k = tok_utf8_encode(c, u);
        m->char_ids[c] = (c >= 0xD800 && c < 0xE000) ? -1 : (int32_t)tok_vocab_get(v, u, k);
    }
    tok_bpe_adjacency(m, v);
    m->special_merges = m->merges.slot ? tok_bpe_special_merges(m) : 0;
}

int tok_bpe_add_merge(tok_bpe *m, const tok_vocab *v, const char *a, size_t na, const char *b,
                      size_t nb, uint32_t rank, const char *where, pl_err *e)
{
    int64_t ia = tok_vocab_get(v, a, na), ib = tok_vocab_get(v, b, nb);
    if (ia < 0)
        return pl_errf(e, "%s: \"%.*s\" is not in the vocabulary", where, (int)na, a);
    if (ib < 0)
        return pl_errf(e, "%s: \"%.*s\" is not in the vocabulary", where, (int)nb, b);
    /* the merged token drops b's continuing_subword_prefix */
    size_t skip = m->prefix_len <= nb ? m->prefix_len : nb;
    char stack[256];
    size_t nm = na + nb - skip;
    char *merged = nm <= sizeof stack ? stack : tok_xrealloc(NULL, nm);
    memcpy(merged, a, na);
    memcpy(merged + na, b + skip, nb - skip);
    int64_t id = tok_vocab_get(v, merged, nm);
    if (id < 0) {
        pl_errf(e, "%s: merged token \"%.*s\" is not in the vocabulary", where, (int)nm, merged);
        if (merged != stack)
            free(merged);
        return -1;
    }
    if (merged != stack)
        free(merged);
    tok_pairmap_put(&m->merges, (uint32_t)ia, (uint32_t)ib, rank, (uint32_t)id);
    m->n_merges++;
    return 0;
}

/* ---- heap of candidate merges, smallest (rank, pos) on top --------------- */

static int tok_merge_less(const tok_merge *a, const tok_merge *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void tok_heap_push(tok_bpe_scratch *s, size_t *n, tok_merge x)
{
    if (*n == s->cap_heap) {
        s->cap_heap = s->cap_heap ? 2 * s->cap_heap : 256;
        s->heap = tok_xrealloc(s->heap, s->cap_heap * sizeof *s->heap);
    }
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_merge_less(&x, &s->heap[p]))
            break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = x;
}

static tok_merge tok_heap_pop(tok_bpe_scratch *s, size_t *n)
{
    tok_merge top = s->heap[0], x = s->heap[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && tok_merge_less(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!tok_merge_less(&s->heap[c], &x))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (*n)
        s->heap[i] = x;
    return top;
}

/* cp: the character the symbol stands for, TOK_NO_CP for byte-fallback and
 * unk symbols. */
static void tok_sym_add(tok_bpe_scratch *s, size_t *n, uint32_t id, uint32_t len, uint32_t cp)
{
    if (*n == s->cap_sym) {
        s->cap_sym = s->cap_sym ? 2 * s->cap_sym : 256;
        s->sym = tok_xrealloc(s->sym, s->cap_sym * sizeof *s->sym);
    }
    s->sym[*n] = (tok_sym){(int32_t)*n - 1, (int32_t)*n + 1, id, len, cp};
    (*n)++;
}

/* Word::merge_all on symbols [lo, hi): lowest rank first, leftmost among
 * equal ranks; heap entries made stale by an earlier merge are skipped. */
static void tok_bpe_merge_range(const tok_bpe *m, tok_bpe_scratch *s, size_t lo, size_t hi)
{
    size_t nh = 0;
    tok_sym *sym = s->sym;
    sym[lo].prev = -1;
    sym[hi - 1].next = -1;
    for (size_t i = lo; i + 1 < hi; i++) {
        const tok_pairslot *p = tok_pairmap_get(&m->merges, sym[i].id, sym[i + 1].id);
        if (p)
            tok_heap_push(s, &nh, (tok_merge){p->rank, (uint32_t)i, p->id});
    }
    while (nh) {
        tok_merge top = tok_heap_pop(s, &nh);
        tok_sym *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next == -1)
            continue;
        tok_sym right = sym[cur->next];
        const tok_pairslot *p = tok_pairmap_get(&m->merges, cur->id, right.id);
        if (!p || p->id != top.id)
            continue;
        sym[cur->next].len = 0;
        cur->id = top.id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0)
            sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            p = tok_pairmap_get(&m->merges, sym[cur->prev].id, cur->id);
            if (p)
                tok_heap_push(s, &nh, (tok_merge){p->rank, (uint32_t)cur->prev, p->id});
        }
        if (cur->next >= 0) {
            p = tok_pairmap_get(&m->merges, cur->id, sym[cur->next].id);
            if (p)
                tok_heap_push(s, &nh, (tok_merge){p->rank, top.pos, p->id});
        }
    }
}

/* 1 when no merge can ever join symbols i and i+1: no vocabulary token has
 * their characters next to each other (a merged token spanning the gap
 * would), or one is a byte-fallback / unk symbol and those take part in no
 * merge. */
static int tok_bpe_gap_safe(const tok_bpe *m, const tok_sym *a, const tok_sym *b)
{
    if (a->cp == TOK_NO_CP || b->cp == TOK_NO_CP)
        return !m->special_merges;
    return !tok_pairmap_get(&m->adjacent, a->cp, b->cp);
}

/* Long words (Llama's whole text when there is no pre-tokenizer) are cut at
 * gaps no merge can cross and each part merged alone: the same merges in
 * the same order, with heaps that stay small. */
static void tok_bpe_merge_all(const tok_bpe *m, tok_bpe_scratch *s, size_t nsym)
{
    if (nsym == 0)
        return;
    size_t lo = 0;
    if (nsym > TOK_LONG_WORD)
        for (size_t i = 0; i + 1 < nsym; i++)
            if (tok_bpe_gap_safe(m, &s->sym[i], &s->sym[i + 1])) {
                tok_bpe_merge_range(m, s, lo, i + 1);
                lo = i + 1;
            }
    tok_bpe_merge_range(m, s, lo, nsym);
}

/* Looks up the vocabulary entry of one character (with prefix / suffix). */
static int64_t tok_bpe_char_id(const tok_bpe *m, const tok_vocab *v, tok_bpe_scratch *s,
                               const char *c, size_t k, uint32_t cp, int first, int last)
{
    int pre = !first && m->prefix_len, suf = last && m->suffix_len;
    if (!pre && !suf) {
        if (cp < TOK_BPE_CHARS)
            return m->char_ids[cp];
        return tok_vocab_get(v, c, k);
    }
    s->key.len = 0;
    if (pre)
        tok_buf_add(&s->key, m->prefix, m->prefix_len);
    tok_buf_add(&s->key, c, k);
    if (suf)
        tok_buf_add(&s->key, m->suffix, m->suffix_len);
    return tok_vocab_get(v, s->key.p, s->key.len);
}

/* The symbols of w before merging (merge_word of the crate).  -1 when an
 * unknown character needs an unk_token that the vocabulary lacks. */
static int tok_bpe_symbols(const tok_bpe *m, const tok_vocab *v, tok_bpe_scratch *s,
                           const char *w, size_t n, size_t *nsym, pl_err *e)
{
    int64_t unk = -1; /* pending unk id */
    uint32_t unk_len = 0;
    *nsym = 0;
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t cp = tok_utf8_next(w, &i);
        size_t k = i - at;
        int64_t id = tok_bpe_char_id(m, v, s, w + at, k, cp, at == 0, i == n);
        if (id >= 0) {
            if (unk >= 0) {
                tok_sym_add(s, nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
                unk = -1;
            }
            tok_sym_add(s, nsym, (uint32_t)id, (uint32_t)k, cp);
            continue;
        }
        if (m->byte_fallback) {
            /* the bytes of the looked-up string, as the crate (with affixes) */
            const char *src = w + at;
            size_t len = k;
            if ((at != 0 && m->prefix_len) || (i == n && m->suffix_len)) {
                src = s->key.p;
                len = s->key.len;
            }
            size_t j = 0;
            while (j < len && m->byte_ids[(unsigned char)src[j]] >= 0)
                j++;
            if (j == len) {
                for (j = 0; j < len; j++)
                    tok_sym_add(s, nsym, (uint32_t)m->byte_ids[(unsigned char)src[j]], 1, TOK_NO_CP);
                continue;
            }
        }
        if (!m->unk)
            continue; /* no unk_token: the character is dropped */
        if (m->unk_id < 0)
            return pl_errf(e, "unk_token \"%s\" is not in the vocabulary", m->unk);
        if (unk >= 0 && m->fuse_unk)
            unk_len += (uint32_t)k;
        else {
            if (unk >= 0)
                tok_sym_add(s, nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
            unk = m->unk_id;
            unk_len = (uint32_t)k;
        }
    }
    if (unk >= 0)
        tok_sym_add(s, nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
    return 0;
}

static void tok_bpe_cache_put(tok_bpe_scratch *s, const char *w, size_t n, const uint32_t *ids,
                              size_t k)
{
    if (s->cache.n >= TOK_CACHE_ENTRIES) {
        tok_strmap_clear(&s->cache);
        s->n_cache_ids = 0;
    }
    if (s->n_cache_ids + k > s->cap_cache_ids) {
        s->cap_cache_ids = s->cap_cache_ids ? 2 * s->cap_cache_ids : 4096;
        while (s->cap_cache_ids < s->n_cache_ids + k)
            s->cap_cache_ids *= 2;
        s->cache_ids = tok_xrealloc(s->cache_ids, s->cap_cache_ids * sizeof *s->cache_ids);
    }
    if (k)
        memcpy(s->cache_ids + s->n_cache_ids, ids, k * sizeof *ids);
    tok_strmap_put(&s->cache, w, n, ((uint64_t)s->n_cache_ids << 16) | k);
    s->n_cache_ids += k;
}

int tok_bpe_encode(const tok_bpe *m, const tok_vocab *v, tok_bpe_scratch *s, const char *w,
                   size_t n, uint32_t **ids, size_t *nids, size_t *cap, pl_err *e)
{
    if (n == 0)
        return 0;
    uint64_t hit;
    int cacheable = n <= TOK_CACHE_WORD;
    if (cacheable && tok_strmap_get(&s->cache, w, n, &hit)) {
        size_t k = hit & 0xFFFF, off = hit >> 16;
        for (size_t i = 0; i < k; i++)
            tok_ids_push(ids, nids, cap, s->cache_ids[off + i]);
        return 0;
    }
    if (m->ignore_merges) {
        int64_t id = tok_vocab_get(v, w, n);
        if (id >= 0) {
            tok_ids_push(ids, nids, cap, (uint32_t)id);
            return 0;
        }
    }
    size_t nsym;
    if (tok_bpe_symbols(m, v, s, w, n, &nsym, e) != 0)
        return -1;
    tok_bpe_merge_all(m, s, nsym);
    size_t first = *nids;
    for (size_t i = 0; i < nsym; i++)
        if (s->sym[i].len)
            tok_ids_push(ids, nids, cap, s->sym[i].id);
    if (cacheable) /* (a word whose characters were all dropped has no ids) */
        tok_bpe_cache_put(s, w, n, *nids > first ? *ids + first : NULL, *nids - first);
    return 0;
}

void tok_bpe_free(tok_bpe *m)
{
    tok_pairmap_free(&m->merges);
    tok_pairmap_free(&m->adjacent);
    free(m->unk);
    free(m->prefix);
    free(m->suffix);
    free(m->char_ids);
    memset(m, 0, sizeof *m);
}

void tok_bpe_scratch_free(tok_bpe_scratch *s)
{
    free(s->sym);
    free(s->heap);
    tok_strmap_free(&s->cache);
    free(s->cache_ids);
    tok_buf_free(&s->key);
    memset(s, 0, sizeof *s);
}
