/* tok_post.c - post-processors (tok_post.h). */
#include "tok_post.h"

#include <stdlib.h>
#include <string.h>

void tok_post_add_item(tok_post *p, int is_a, const uint32_t *ids, size_t k)
{
    p->items = tok_xrealloc(p->items, (p->n + 1) * sizeof *p->items);
    tok_tpl_item *it = &p->items[p->n++];
    it->is_a = is_a;
    it->n = is_a ? 0 : k;
    it->ids = NULL;
    if (!is_a && k) {
        it->ids = tok_xrealloc(NULL, k * sizeof *ids);
        memcpy(it->ids, ids, k * sizeof *ids);
    }
}

void tok_posts_apply(const tok_posts *p, uint32_t **ids, size_t *n, size_t *cap, size_t base)
{
    for (size_t k = 0; k < p->n; k++) {
        const tok_post *pp = &p->v[k];
        if (pp->kind == TPP_BYTELEVEL)
            continue;
        size_t len = *n - base;
        uint32_t *seq = tok_xrealloc(NULL, (len ? len : 1) * sizeof *seq);
        if (len)
            memcpy(seq, *ids + base, len * sizeof *seq);
        *n = base;
        for (size_t i = 0; i < pp->n; i++) {
            const tok_tpl_item *it = &pp->items[i];
            const uint32_t *src = it->is_a ? seq : it->ids;
            size_t m = it->is_a ? len : it->n;
            for (size_t j = 0; j < m; j++)
                tok_ids_push(ids, n, cap, src[j]);
        }
        free(seq);
    }
}

static const char *const tok_post_names[] = {"TemplateProcessing", "BertProcessing",
                                             "RobertaProcessing", "ByteLevel"};

void tok_posts_describe(const tok_posts *p, tok_buf *out)
{
    tok_buf_add_chain(out, tok_post_names, p->v, p->n, sizeof *p->v);
}

void tok_posts_free(tok_posts *p)
{
    for (size_t k = 0; k < p->n; k++) {
        for (size_t i = 0; i < p->v[k].n; i++)
            free(p->v[k].items[i].ids);
        free(p->v[k].items);
    }
    free(p->v);
    memset(p, 0, sizeof *p);
}
