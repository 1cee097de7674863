/* tok_wordpiece.c - WordPiece and WordLevel models (tok_wordpiece.h). */
#include "tok_wordpiece.h"

#include <stdlib.h>
#include <string.h>

#include "tok_utf8.h"

static int tok_wp_unk(const tok_wordpiece *m, uint32_t **ids, size_t *nids, size_t *cap,
                      pl_err *e)
{
    if (m->unk_id < 0)
        return pl_errf(e, "unk_token \"%s\" is not in the vocabulary", m->unk ? m->unk : "");
    tok_ids_push(ids, nids, cap, (uint32_t)m->unk_id);
    return 0;
}

int tok_wordpiece_encode(const tok_wordpiece *m, const tok_vocab *v, tok_buf *key,
                         const char *w, size_t n, uint32_t **ids, size_t *nids, size_t *cap,
                         pl_err *e)
{
    size_t chars = 0;
    for (size_t i = 0; i < n; i += tok_utf8_len((unsigned char)w[i]))
        chars++;
    if (chars > m->max_chars)
        return tok_wp_unk(m, ids, nids, cap, e);
    size_t first = *nids;
    for (size_t start = 0; start < n;) {
        size_t end = n;
        /* no token is longer than the longest one in the vocabulary */
        size_t pre = start ? m->prefix_len : 0;
        size_t room = v->max_len > pre ? v->max_len - pre : 0;
        if (end - start > room) {
            end = start + room;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80)
                end--;
        }
        int64_t found = -1;
        while (end > start) {
            key->len = 0;
            if (start > 0)
                tok_buf_add(key, m->prefix, m->prefix_len);
            tok_buf_add(key, w + start, end - start);
            found = tok_vocab_get(v, key->p, key->len);
            if (found >= 0)
                break;
            end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80)
                end--;
        }
        if (found < 0) {
            *nids = first; /* the whole word is unknown */
            return tok_wp_unk(m, ids, nids, cap, e);
        }
        tok_ids_push(ids, nids, cap, (uint32_t)found);
        start = end;
    }
    return 0;
}

int tok_wordlevel_encode(const tok_wordpiece *m, const tok_vocab *v, const char *w, size_t n,
                         uint32_t **ids, size_t *nids, size_t *cap, pl_err *e)
{
    int64_t id = tok_vocab_get(v, w, n);
    if (id >= 0) {
        tok_ids_push(ids, nids, cap, (uint32_t)id);
        return 0;
    }
    return tok_wp_unk(m, ids, nids, cap, e);
}

void tok_wordpiece_free(tok_wordpiece *m)
{
    free(m->unk);
    free(m->prefix);
    memset(m, 0, sizeof *m);
}
