/* tok_added.c - added-token matching (tok_added.h). */
#include "tok_added.h"

#include <stdlib.h>
#include <string.h>

#include "tok_utf8.h"

static void tok_trie_add(tok_trie *t, const char *s, size_t n, int32_t tok)
{
    if (n == 0)
        return; /* an empty token never matches */
    if (t->n_nodes == 0) {
        t->term = tok_xrealloc(NULL, sizeof *t->term);
        t->term[0] = -1;
        t->n_nodes = t->cap_nodes = 1;
    }
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const tok_pairslot *p = tok_pairmap_get(&t->edge, node, c);
        if (p) {
            node = p->id;
            continue;
        }
        uint32_t child = (uint32_t)t->n_nodes++;
        if (t->n_nodes > t->cap_nodes) {   /* doubling, not a realloc per node */
            t->cap_nodes = 2 * t->n_nodes;
            t->term = tok_xrealloc(t->term, t->cap_nodes * sizeof *t->term);
        }
        t->term[child] = -1;
        tok_pairmap_put(&t->edge, node, c, 0, child);
        node = child;
    }
    /* a repeated string keeps its first token, as the crate's trie does */
    if (t->term[node] < 0)
        t->term[node] = tok;
    t->first[(unsigned char)s[0]] = 1;
    t->empty = 0;
}

void tok_added_build(tok_added *a)
{
    a->raw.empty = a->norm.empty = 1;
    for (size_t i = 0; i < a->n; i++) {
        tok_added_token *k = &a->v[i];
        tok_trie_add(k->normalized ? &a->norm : &a->raw, k->match, k->match_len, (int32_t)i);
    }
}

/* Longest token starting at s[i]: its index and end, or -1. */
static int32_t tok_trie_longest(const tok_trie *t, const char *s, size_t n, size_t i,
                                size_t *end)
{
    uint32_t node = 0;
    int32_t best = -1;
    for (size_t j = i; j < n; j++) {
        const tok_pairslot *p = tok_pairmap_get(&t->edge, node, (unsigned char)s[j]);
        if (!p)
            break;
        node = p->id;
        if (t->term[node] >= 0) {
            best = t->term[node];
            *end = j + 1;
        }
    }
    return best;
}

static void tok_seg_push(tok_segs *l, size_t s, size_t e, int32_t tok)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = tok_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = (tok_seg){s, e, tok};
}

static uint32_t tok_cp_before(const char *s, size_t at)
{
    size_t i = at - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    return tok_utf8_next(s, &i);
}

/* single_word: the match may not touch a word character on either side. */
static int tok_single_word_ok(const char *s, size_t n, size_t ms, size_t me)
{
    if (ms > 0 && tok_is_word(tok_cp_before(s, ms)))
        return 0;
    if (me < n) {
        size_t i = me;
        if (tok_is_word(tok_utf8_next(s, &i)))
            return 0;
    }
    return 1;
}

void tok_added_split(const tok_added *a, int normalized, const char *s, size_t n,
                     tok_segs *segs)
{
    const tok_trie *t = normalized ? &a->norm : &a->raw;
    segs->n = 0;
    size_t done = 0; /* text before this is emitted */
    size_t i = 0;
    while (!t->empty && i < n) {
        if (!t->first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        size_t me = 0;
        int32_t k = tok_trie_longest(t, s, n, i, &me);
        if (k < 0) {
            i++;
            continue;
        }
        const tok_added_token *tk = &a->v[k];
        size_t ms = i;
        if (tk->single_word && !tok_single_word_ok(s, n, ms, me)) {
            i = me; /* the matcher moves past a discarded match */
            continue;
        }
        if (tk->lstrip) {
            while (ms > done) {
                size_t p = ms - 1;
                while (p > done && ((unsigned char)s[p] & 0xC0) == 0x80)
                    p--;
                size_t q = p;
                if (!tok_is_whitespace(tok_utf8_next(s, &q)))
                    break;
                ms = p;
            }
        }
        if (tk->rstrip) {
            while (me < n) {
                size_t q = me;
                if (!tok_is_whitespace(tok_utf8_next(s, &q)))
                    break;
                me = q;
            }
        }
        if (ms > done)
            tok_seg_push(segs, done, ms, -1);
        tok_seg_push(segs, ms, me, k);
        done = i = me;
    }
    if (done < n)
        tok_seg_push(segs, done, n, -1);
}

static void tok_trie_free(tok_trie *t)
{
    tok_pairmap_free(&t->edge);
    free(t->term);
    memset(t, 0, sizeof *t);
}

void tok_added_free(tok_added *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->v[i].content);
        free(a->v[i].match);
    }
    free(a->v);
    tok_trie_free(&a->raw);
    tok_trie_free(&a->norm);
    memset(a, 0, sizeof *a);
}

void tok_segs_free(tok_segs *s)
{
    free(s->v);
    memset(s, 0, sizeof *s);
}
