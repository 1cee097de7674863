/* tok_pretok.c - pre-tokenizer chain (tok_pretok.h).
 *
 * Every splitting pre-tokenizer first marks its string as a sequence of
 * ranges covering it, each a match of its pattern or not (a character
 * predicate marks each matching character on its own, as the tokenizers
 * crate does), then applies the behaviour to the marks, then drops empty
 * pieces.  ByteLevel and Metaspace also rewrite the text of their pieces. */
#include "tok_pretok.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tok_utf8.h"

/* ---- GPT-2 byte <-> character map ---------------------------------------
 * Printable bytes '!'..'~', 0xA1..0xAC, 0xAE..0xFF stand for themselves; the
 * other 68 bytes map, in increasing order, to U+0100..U+0143. */
static char tok_bl_utf8[256][2];
static unsigned char tok_bl_len[256];
static pthread_once_t tok_bl_once = PTHREAD_ONCE_INIT;

static int tok_bl_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

static void tok_bl_init(void)
{
    unsigned next = 256;
    for (unsigned b = 0; b < 256; b++) {
        uint32_t cp = tok_bl_printable(b) ? b : next++;
        char u[4];
        tok_bl_len[b] = (unsigned char)tok_utf8_encode(cp, u);
        memcpy(tok_bl_utf8[b], u, tok_bl_len[b]);
    }
}

const char *tok_bytelevel_char(unsigned char b, size_t *len)
{
    pthread_once(&tok_bl_once, tok_bl_init);
    *len = tok_bl_len[b];
    return tok_bl_utf8[b];
}

int tok_bytelevel_byte(uint32_t cp)
{
    if (cp < 256)
        return tok_bl_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33)
        return (int)(cp - 256);            /* bytes 0x00..0x20 */
    if (cp < 256 + 33 + 34)
        return (int)(cp - 256 - 33 + 0x7F); /* bytes 0x7F..0xA0 */
    if (cp == 256 + 67)
        return 0xAD;
    return -1;
}

/* Where a stage writes its pieces.  The last stage of a chain hands them
 * to the sink whenever they pass TOK_PRE_FLUSH bytes, so a long text never
 * exists as one list of pre-tokens. */
#define TOK_PRE_FLUSH (64 * 1024)
typedef struct {
    tok_pieces *l;
    tok_pre_sink sink;   /* NULL: keep all */
    void *ctx;
    int failed;
    pl_err *e;
} tok_out;

static void tok_out_check(tok_out *o)
{
    if (!o->sink || o->l->b.len < TOK_PRE_FLUSH || o->failed)
        return;
    o->failed = o->sink(o->ctx, o->l, o->e) != 0;
    tok_pieces_clear(o->l);
}

/* Appends s[0..n) to out with every byte replaced by its character. */
static void tok_bl_emit(const char *s, size_t n, int at0, tok_out *o)
{
    tok_pieces *out = o->l;
    tok_buf *b = &out->b;
    tok_buf_reserve(b, 2 * n);
    size_t off = b->len;
    char *d = b->p + off;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        d[0] = tok_bl_utf8[c][0];
        d[1] = tok_bl_utf8[c][1];
        d += tok_bl_len[c];
    }
    b->len = (size_t)(d - b->p);
    tok_pieces_push(out, off, b->len - off, at0);
    tok_out_check(o);
}

/* ---- marks and behaviours ------------------------------------------------ */

static void tok_mark_push(tok_pretok_scratch *s, size_t a, size_t b, int m)
{
    if (s->n_marks == s->cap_marks) {
        s->cap_marks = s->cap_marks ? 2 * s->cap_marks : 256;
        s->marks = tok_xrealloc(s->marks, s->cap_marks * sizeof *s->marks);
    }
    s->marks[s->n_marks++] = (tok_mark){a, b, m};
}

static int tok_marks_regex(const tok_regex *r, tok_rx_scratch *x, tok_pretok_scratch *s,
                           const char *str, size_t n, pl_err *e)
{
    size_t prev = 0, pos = 0;
    s->n_marks = 0;
    while (pos <= n) {
        size_t ms, me;
        int rc = tok_regex_find(r, x, str, n, pos, &ms, &me, e);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (ms > prev)
            tok_mark_push(s, prev, ms, 0);
        tok_mark_push(s, ms, me, 1);
        prev = me;
        if (me == ms) {
            if (me >= n)
                break;
            pos = me + tok_utf8_len((unsigned char)str[me]);
        } else
            pos = me;
    }
    if (prev < n)
        tok_mark_push(s, prev, n, 0);
    return 0;
}

static void tok_marks_pred(tok_pretok_scratch *s, const char *str, size_t n,
                           int (*pred)(uint32_t))
{
    size_t last = 0;
    s->n_marks = 0;
    for (size_t i = 0; i < n;) {
        size_t at = i;
        if (pred(tok_utf8_next(str, &i))) {
            if (last < at)
                tok_mark_push(s, last, at, 0);
            tok_mark_push(s, at, i, 1);
            last = i;
        }
    }
    if (last < n)
        tok_mark_push(s, last, n, 0);
}

static void tok_emit_range(const char *str, size_t a, size_t b, int at0, tok_out *o)
{
    if (b > a) {
        tok_pieces_add(o->l, str + a, b - a, at0 && a == 0);
        tok_out_check(o);
    }
}

/* Applies behaviour bh (after inverting the marks if invert) and appends the
 * non-empty pieces to out. */
static void tok_marks_emit(tok_pretok_scratch *s, tok_behavior bh, int invert, const char *str,
                           int at0, tok_out *out)
{
    tok_mark *m = s->marks;
    size_t n = s->n_marks;
    if (invert)
        for (size_t i = 0; i < n; i++)
            m[i].m = !m[i].m;
    size_t ps = 0, pe = 0; /* pending range */
    int have = 0, prev_m = 0;
    for (size_t i = 0; i < n; i++) {
        switch (bh) {
        case TB_REMOVED:
            if (!m[i].m)
                tok_emit_range(str, m[i].s, m[i].e, at0, out);
            break;
        case TB_ISOLATED:
            tok_emit_range(str, m[i].s, m[i].e, at0, out);
            break;
        case TB_MERGED_WITH_NEXT:
            if (m[i].m && i + 1 < n && !m[i + 1].m) {
                tok_emit_range(str, m[i].s, m[i + 1].e, at0, out);
                i++;
            } else
                tok_emit_range(str, m[i].s, m[i].e, at0, out);
            break;
        case TB_MERGED_WITH_PREVIOUS:
        case TB_CONTIGUOUS: {
            int join = bh == TB_CONTIGUOUS ? m[i].m == prev_m : m[i].m && !prev_m;
            if (join && have)
                pe = m[i].e;
            else {
                if (have)
                    tok_emit_range(str, ps, pe, at0, out);
                ps = m[i].s;
                pe = m[i].e;
                have = 1;
            }
            prev_m = m[i].m;
            break;
        }
        }
    }
    if (have)
        tok_emit_range(str, ps, pe, at0, out);
}

/* ---- the pre-tokenizers ------------------------------------------------- */

static int tok_pre_bytelevel(const tok_pretok *p, tok_rx_scratch *x, tok_pretok_scratch *s,
                             const char *str, size_t n, int at0, tok_out *out, pl_err *e)
{
    if (p->add_prefix_space && str[0] != ' ') {
        s->work.len = 0;
        tok_buf_addc(&s->work, ' ');
        tok_buf_add(&s->work, str, n);
        str = s->work.p;
        n = s->work.len;
    }
    if (!p->use_regex) {
        tok_bl_emit(str, n, at0, out);
        return 0;
    }
    /* Isolated split: every match and every gap between them is a piece. */
    size_t prev = 0, pos = 0;
    while (pos < n) {
        size_t ms, me;
        int rc = tok_regex_find(&p->pattern, x, str, n, pos, &ms, &me, e);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        if (ms > prev)
            tok_bl_emit(str + prev, ms - prev, at0 && prev == 0, out);
        if (me > ms)
            tok_bl_emit(str + ms, me - ms, at0 && ms == 0, out);
        prev = me;
        pos = me > ms ? me : me + tok_utf8_len((unsigned char)str[me]);
    }
    if (prev < n)
        tok_bl_emit(str + prev, n - prev, at0 && prev == 0, out);
    return 0;
}

/* Metaspace: spaces become the replacement, which is prepended (scheme
 * permitting) unless the result already starts with it; then, with split,
 * each replacement character starts a new piece (MergedWithNext). */
static void tok_pre_metaspace(const tok_pretok *p, tok_pretok_scratch *s, const char *str,
                              size_t n, int at0, tok_out *out)
{
    tok_buf *w = &s->work;
    w->len = 0;
    int starts = str[0] == ' ' || (n >= p->repl_len && memcmp(str, p->repl, p->repl_len) == 0);
    if (!starts && (p->prepend == TPS_ALWAYS || (p->prepend == TPS_FIRST && at0)))
        tok_buf_add(w, p->repl, p->repl_len);
    for (size_t i = 0; i < n; i++) {
        if (str[i] == ' ')
            tok_buf_add(w, p->repl, p->repl_len);
        else
            tok_buf_addc(w, str[i]);
    }
    if (!p->split) {
        tok_emit_range(w->p, 0, w->len, at0, out);
        return;
    }
    /* split on each replacement character, MergedWithNext */
    s->n_marks = 0;
    size_t last = 0;
    for (size_t i = 0; i + p->repl_len <= w->len;) {
        if (memcmp(w->p + i, p->repl, p->repl_len) == 0) {
            if (last < i)
                tok_mark_push(s, last, i, 0);
            tok_mark_push(s, i, i + p->repl_len, 1);
            i += p->repl_len;
            last = i;
        } else
            i += tok_utf8_len((unsigned char)w->p[i]);
    }
    if (last < w->len)
        tok_mark_push(s, last, w->len, 0);
    tok_marks_emit(s, TB_MERGED_WITH_NEXT, 0, w->p, at0, out);
}

/* BertPreTokenizer: whitespace removed, then each punctuation char isolated. */
static void tok_pre_bert(const char *str, size_t n, int at0, tok_out *out)
{
    size_t word = 0;
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t c = tok_utf8_next(str, &i);
        int ws = tok_is_whitespace(c);
        if (ws || tok_is_bert_punct(c)) {
            tok_emit_range(str, word, at, at0, out);
            if (!ws)
                tok_emit_range(str, at, i, at0, out);
            word = i;
        }
    }
    tok_emit_range(str, word, n, at0, out);
}

static int tok_pre_one(const tok_pretok *p, tok_rx_scratch *x, tok_pretok_scratch *s,
                       const char *str, size_t n, int at0, tok_out *out, pl_err *e)
{
    switch (p->kind) {
    case TP_BYTELEVEL:
        return tok_pre_bytelevel(p, x, s, str, n, at0, out, e);
    case TP_METASPACE:
        tok_pre_metaspace(p, s, str, n, at0, out);
        return 0;
    case TP_BERT:
        tok_pre_bert(str, n, at0, out);
        return 0;
    case TP_WHITESPACE: /* keep the matches: invert, then drop the rest */
        if (tok_marks_regex(&p->pattern, x, s, str, n, e) != 0)
            return -1;
        tok_marks_emit(s, TB_REMOVED, 1, str, at0, out);
        return 0;
    case TP_WHITESPACE_SPLIT:
        tok_marks_pred(s, str, n, tok_is_whitespace);
        tok_marks_emit(s, TB_REMOVED, 0, str, at0, out);
        return 0;
    case TP_PUNCTUATION:
        tok_marks_pred(s, str, n, tok_is_bert_punct);
        tok_marks_emit(s, p->behavior, 0, str, at0, out);
        return 0;
    case TP_DIGITS:
        tok_marks_pred(s, str, n, tok_is_numeric);
        tok_marks_emit(s, p->individual_digits ? TB_ISOLATED : TB_CONTIGUOUS, 0, str, at0, out);
        return 0;
    case TP_SPLIT:
        if (tok_marks_regex(&p->pattern, x, s, str, n, e) != 0)
            return -1;
        tok_marks_emit(s, p->behavior, p->invert, str, at0, out);
        return 0;
    }
    return 0;
}

int tok_pretoks_run(const tok_pretoks *c, tok_rx_scratch *x, tok_pretok_scratch *s,
                    const char *str, size_t n, int at0, tok_pre_sink sink, void *ctx, pl_err *e)
{
    pthread_once(&tok_bl_once, tok_bl_init);
    tok_pieces *in = &s->a, *out = &s->b;
    if (c->n == 0) {
        tok_pieces_clear(out);
        tok_pieces_add(out, str, n, at0);
        return sink(ctx, out, e);
    }
    for (size_t k = 0; k < c->n; k++) {
        tok_out o = {out, k + 1 == c->n ? sink : NULL, ctx, 0, e};
        tok_pieces_clear(out);
        size_t count = k == 0 ? 1 : in->n;
        for (size_t i = 0; i < count && !o.failed; i++) {
            const char *p = k == 0 ? str : tok_piece_str(in, i);
            size_t len = k == 0 ? n : in->v[i].len;
            if (len && tok_pre_one(&c->v[k], x, s, p, len, k == 0 ? at0 : in->v[i].at0, &o,
                                   e) != 0)
                return -1;
        }
        if (o.failed || (k + 1 == c->n && sink(ctx, out, e) != 0))
            return -1;
        tok_pieces *t = in;
        in = out;
        out = t;
    }
    return 0;
}

static const char *const tok_pre_names[] = {
    "ByteLevel", "Split", "Metaspace", "BertPreTokenizer", "Whitespace", "WhitespaceSplit",
    "Punctuation", "Digits"};

void tok_pretoks_describe(const tok_pretoks *c, tok_buf *out)
{
    tok_buf_add_chain(out, tok_pre_names, c->v, c->n, sizeof *c->v);
}

void tok_pretoks_free(tok_pretoks *c)
{
    for (size_t k = 0; k < c->n; k++)
        tok_regex_free(&c->v[k].pattern);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void tok_pretok_scratch_free(tok_pretok_scratch *s)
{
    tok_pieces_free(&s->a);
    tok_pieces_free(&s->b);
    tok_buf_free(&s->work);
    free(s->marks);
    memset(s, 0, sizeof *s);
}
