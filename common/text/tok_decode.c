/* tok_decode.c - decoder chain (tok_decode.h). */
#include "tok_decode.h"

#include <stdlib.h>
#include <string.h>

#include "tok_pretok.h"
#include "tok_utf8.h"

/* ByteLevel: all tokens back to bytes (a token with a character outside the
 * byte map keeps its own UTF-8), then one lossy UTF-8 string. */
static void tok_dec_bytelevel(const tok_pieces *in, tok_pieces *out, tok_buf *aux)
{
    aux->len = 0;
    for (size_t t = 0; t < in->n; t++) {
        const char *s = tok_piece_str(in, t);
        size_t n = in->v[t].len, mark = aux->len, i = 0;
        int b = 0;
        while (i < n && b >= 0) {
            b = tok_bytelevel_byte(tok_utf8_next(s, &i));
            if (b >= 0)
                tok_buf_addc(aux, (char)b);
        }
        if (b < 0) {
            aux->len = mark;
            tok_buf_add(aux, s, n);
        }
    }
    size_t off = out->b.len;
    tok_utf8_lossy(aux->p ? aux->p : "", aux->len, &out->b);
    tok_pieces_push(out, off, out->b.len - off, 0);
}

static void tok_dec_metaspace(const tok_dec *d, const tok_pieces *in, tok_pieces *out)
{
    for (size_t t = 0; t < in->n; t++) {
        const char *s = tok_piece_str(in, t);
        size_t n = in->v[t].len, off = out->b.len;
        for (size_t i = 0; i < n;) {
            if (n - i >= d->repl_len && memcmp(s + i, d->repl, d->repl_len) == 0) {
                if (!(t == 0 && d->drop_first))
                    tok_buf_addc(&out->b, ' ');
                i += d->repl_len;
            } else {
                size_t k = tok_utf8_len((unsigned char)s[i]);
                tok_buf_add(&out->b, s + i, k);
                i += k;
            }
        }
        tok_pieces_push(out, off, out->b.len - off, 0);
    }
}

/* Replaces every from by to in [s, s+n) appended to b. */
static void tok_replace_lit(const char *s, size_t n, const char *from, const char *to,
                            tok_buf *b)
{
    tok_regex lit = {.code = NULL, .src = (char *)from, .len = strlen(from)};
    tok_regex_replace(&lit, NULL, s, n, to, strlen(to), b, NULL);
}

/* The crate's wordpiece::cleanup, one replacement after the other. */
static void tok_dec_cleanup(tok_buf *s, tok_buf *aux)
{
    static const char *const pairs[][2] = {
        {" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
        {" 'm", "'m"}, {" do not", " don't"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        aux->len = 0;
        tok_replace_lit(s->p ? s->p : "", s->len, pairs[k][0], pairs[k][1], aux);
        tok_buf t = *s;
        *s = *aux;
        *aux = t;
    }
}

static void tok_dec_wordpiece(const tok_dec *d, const tok_pieces *in, tok_pieces *out,
                              tok_buf *aux)
{
    tok_buf one = {0};
    for (size_t t = 0; t < in->n; t++) {
        const char *s = tok_piece_str(in, t);
        size_t n = in->v[t].len;
        one.len = 0;
        if (t != 0 && n >= d->text_len && memcmp(s, d->text, d->text_len) == 0) {
            s += d->text_len;
            n -= d->text_len;
        } else if (t != 0)
            tok_buf_addc(&one, ' ');
        tok_buf_add(&one, s, n);
        if (d->cleanup)
            tok_dec_cleanup(&one, aux);
        tok_pieces_add(out, one.p, one.len, 0);
    }
    tok_buf_free(&one);
}

static int tok_hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Flushes pending byte tokens: their UTF-8 string, or one U+FFFD each. */
static void tok_dec_flush_bytes(tok_buf *bytes, tok_pieces *out)
{
    if (!bytes->len)
        return;
    if (tok_utf8_check(bytes->p, bytes->len) == bytes->len)
        tok_pieces_add(out, bytes->p, bytes->len, 0);
    else
        for (size_t i = 0; i < bytes->len; i++)
            tok_pieces_add(out, "\xEF\xBF\xBD", 3, 0);
    bytes->len = 0;
}

static void tok_dec_bytefallback(const tok_pieces *in, tok_pieces *out, tok_buf *aux)
{
    aux->len = 0;
    for (size_t t = 0; t < in->n; t++) {
        const char *s = tok_piece_str(in, t);
        size_t n = in->v[t].len;
        int hi = n == 6 ? tok_hexval(s[3]) : -1, lo = n == 6 ? tok_hexval(s[4]) : -1;
        if (n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hi >= 0 && lo >= 0) {
            tok_buf_addc(aux, (char)(hi * 16 + lo));
            continue;
        }
        tok_dec_flush_bytes(aux, out);
        tok_pieces_add(out, s, n, 0);
    }
    tok_dec_flush_bytes(aux, out);
}

/* Strip: up to start leading and stop trailing copies of the character. */
static void tok_dec_strip(const tok_dec *d, const tok_pieces *in, tok_pieces *out)
{
    for (size_t t = 0; t < in->n; t++) {
        const char *s = tok_piece_str(in, t);
        size_t n = in->v[t].len, a = 0, b = n;
        for (size_t k = 0; k < d->start && a < n; k++) {
            size_t i = a;
            if (tok_utf8_next(s, &i) != d->strip_cp)
                break;
            a = i;
        }
        for (size_t k = 0; k < d->stop && b > a; k++) {
            size_t p = b - 1;
            while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80)
                p--;
            size_t i = p;
            if (tok_utf8_next(s, &i) != d->strip_cp)
                break;
            b = p;
        }
        tok_pieces_add(out, s + a, b - a, 0);
    }
}

static int tok_dec_one(const tok_dec *d, tok_rx_scratch *x, const tok_pieces *in,
                       tok_pieces *out, tok_buf *aux, pl_err *e)
{
    switch (d->kind) {
    case TD_BYTELEVEL: tok_dec_bytelevel(in, out, aux); break;
    case TD_METASPACE: tok_dec_metaspace(d, in, out); break;
    case TD_WORDPIECE: tok_dec_wordpiece(d, in, out, aux); break;
    case TD_BYTEFALLBACK: tok_dec_bytefallback(in, out, aux); break;
    case TD_FUSE: {
        size_t off = out->b.len;
        for (size_t t = 0; t < in->n; t++)
            tok_buf_add(&out->b, tok_piece_str(in, t), in->v[t].len);
        tok_pieces_push(out, off, out->b.len - off, 0);
        break;
    }
    case TD_STRIP: tok_dec_strip(d, in, out); break;
    case TD_REPLACE:
    case TD_BPE:
        for (size_t t = 0; t < in->n; t++) {
            size_t off = out->b.len;
            const char *s = tok_piece_str(in, t);
            if (d->kind == TD_REPLACE) {
                if (tok_regex_replace(&d->pattern, x, s, in->v[t].len, d->text, d->text_len,
                                      &out->b, e) != 0)
                    return -1;
            } else
                tok_replace_lit(s, in->v[t].len, d->text, t + 1 == in->n ? "" : " ", &out->b);
            tok_pieces_push(out, off, out->b.len - off, 0);
        }
        break;
    }
    return 0;
}

int tok_decs_apply(const tok_decs *c, tok_rx_scratch *x, tok_pieces *io, tok_pieces *tmp,
                   tok_buf *out, pl_err *e)
{
    tok_buf aux = {0};
    int rc = 0;
    for (size_t k = 0; k < c->n && rc == 0; k++) {
        tok_pieces_clear(tmp);
        rc = tok_dec_one(&c->v[k], x, io, tmp, &aux, e);
        tok_pieces t = *io;
        *io = *tmp;
        *tmp = t;
    }
    tok_buf_free(&aux);
    if (rc)
        return -1;
    out->len = 0;
    for (size_t t = 0; t < io->n; t++) {
        if (t && !c->present)
            tok_buf_addc(out, ' ');
        tok_buf_add(out, tok_piece_str(io, t), io->v[t].len);
    }
    tok_buf_reserve(out, 0);
    out->p[out->len] = 0;
    return 0;
}

static const char *const tok_dec_names[] = {"ByteLevel", "Metaspace", "WordPiece",
                                            "ByteFallback", "Fuse", "Strip", "Replace",
                                            "BPEDecoder"};

void tok_decs_describe(const tok_decs *c, tok_buf *out)
{
    tok_buf_add_chain(out, tok_dec_names, c->v, c->n, sizeof *c->v);
}

void tok_decs_free(tok_decs *c)
{
    for (size_t k = 0; k < c->n; k++) {
        free(c->v[k].text);
        tok_regex_free(&c->v[k].pattern);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}
