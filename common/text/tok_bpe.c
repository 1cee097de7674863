/* tok_bpe.c - BPE model (tok_bpe.h). */
#include "tok_bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_utf8.h"

#define TOK_CACHE_WORD 256        /* longest word cached, bytes (as the crate) */
#define TOK_CACHE_ENTRIES 65536   /* cache cleared when it reaches this */

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

/* One part [lo, hi) of a long word, whose bytes start at w: its ids come
 * from the cache when the same bytes (with the same place in the word:
 * first / last decide the affixes) were merged before.  The key ends with a
 * byte that UTF-8 never uses, so it cannot meet a whole word's key. */
static void tok_bpe_merge_part(const tok_bpe *m, tok_bpe_scratch *s, size_t lo, size_t hi,
                               const char *w, size_t bytes, int first, int last)
{
    uint64_t hit;
    tok_sym *sym = s->sym;
    int cacheable = bytes < TOK_CACHE_WORD;
    if (cacheable) {
        s->key.len = 0;
        tok_buf_add(&s->key, w, bytes);
        tok_buf_addc(&s->key, (char)(0xF8 | first << 1 | last));
        if (tok_strmap_get(&s->cache, s->key.p, s->key.len, &hit)) {
            size_t k = hit & 0xFFFF, off = hit >> 16;
            for (size_t i = lo; i < hi; i++) {
                size_t j = i - lo;
                sym[i].len = j < k;
                if (j < k)
                    sym[i].id = s->cache_ids[off + j];
            }
            return;
        }
    }
    tok_bpe_merge_range(m, s, lo, hi);
    if (!cacheable)
        return;
    uint32_t ids[TOK_CACHE_WORD];
    size_t k = 0;
    for (size_t i = lo; i < hi; i++)
        if (sym[i].len)
            ids[k++] = sym[i].id;
    tok_bpe_cache_put(s, s->key.p, s->key.len, ids, k);
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

/* A word being turned into symbols.  A long word (Llama's whole text when
 * there is no pre-tokenizer) is streamed: whenever the gap before a new
 * character is one no merge can cross, the symbols so far form a part that
 * is merged alone (or taken from the cache) and emitted - the same merges in
 * the same order, with small heaps and a small symbol array. */
typedef struct {
    const tok_bpe *m;
    tok_bpe_scratch *s;
    const char *w;
    size_t nsym;       /* symbols of the current part */
    size_t part_at;    /* byte offset of the part in w */
    int stream;
    uint32_t **ids;
    size_t *nids, *cap;
} tok_word;

static void tok_word_emit(tok_word *d)
{
    for (size_t i = 0; i < d->nsym; i++)
        if (d->s->sym[i].len)
            tok_ids_push(d->ids, d->nids, d->cap, d->s->sym[i].id);
    d->nsym = 0;
}

/* Before the symbols of the character at byte at, the first being (id, cp):
 * cut here if the gap is safe. */
static void tok_word_maybe_cut(tok_word *d, size_t at, uint32_t id, uint32_t cp)
{
    if (!d->stream || d->nsym == 0)
        return;
    tok_sym next = {0, 0, id, 1, cp};
    if (!tok_bpe_gap_safe(d->m, &d->s->sym[d->nsym - 1], &next))
        return;
    tok_bpe_merge_part(d->m, d->s, 0, d->nsym, d->w + d->part_at, at - d->part_at,
                       d->part_at == 0, 0);
    tok_word_emit(d);
    d->part_at = at;
}

/* Builds the symbols of w (merge_word of the crate), streaming long words.
 * -1 when an unknown character needs an unk_token the vocabulary lacks. */
static int tok_word_symbols(tok_word *d, const tok_vocab *v, size_t n, pl_err *e)
{
    const tok_bpe *m = d->m;
    tok_bpe_scratch *s = d->s;
    const char *w = d->w;
    int64_t unk = -1; /* pending unk id */
    uint32_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t cp = tok_utf8_next(w, &i);
        size_t k = i - at;
        int64_t id = tok_bpe_char_id(m, v, s, w + at, k, cp, at == 0, i == n);
        if (id >= 0) {
            if (unk >= 0) {
                tok_sym_add(s, &d->nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
                unk = -1;
            } else
                tok_word_maybe_cut(d, at, (uint32_t)id, cp);
            tok_sym_add(s, &d->nsym, (uint32_t)id, (uint32_t)k, cp);
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
                if (unk < 0)
                    tok_word_maybe_cut(d, at, (uint32_t)m->byte_ids[(unsigned char)src[0]],
                                       TOK_NO_CP);
                for (j = 0; j < len; j++)
                    tok_sym_add(s, &d->nsym, (uint32_t)m->byte_ids[(unsigned char)src[j]], 1,
                                TOK_NO_CP);
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
                tok_sym_add(s, &d->nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
            unk = m->unk_id;
            unk_len = (uint32_t)k;
        }
    }
    if (unk >= 0)
        tok_sym_add(s, &d->nsym, (uint32_t)unk, unk_len, TOK_NO_CP);
    return 0;
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
    tok_word d = {m, s, w, 0, 0, !cacheable, ids, nids, cap};
    size_t first = *nids;
    if (tok_word_symbols(&d, v, n, e) != 0) {
        *nids = first;
        return -1;
    }
    if (d.nsym && d.stream)
        tok_bpe_merge_part(m, s, 0, d.nsym, w + d.part_at, n - d.part_at, d.part_at == 0, 1);
    else if (d.nsym)
        tok_bpe_merge_range(m, s, 0, d.nsym);
    tok_word_emit(&d);
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
