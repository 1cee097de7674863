/* tok_normalize.c - normalizer chain (tok_normalize.h).  Each step reads one
 * buffer and writes the other; Rust semantics of the tokenizers crate:
 * Lowercase is char::to_lowercase per code point (no final-sigma rule),
 * StripAccents only drops Mn code points (files put NFD before it), Prepend
 * does nothing to an empty string, BertNormalizer runs clean_text, CJK
 * spacing, strip_accents (NFD + drop Mn; null follows lowercase), lowercase. */
#include "tok_normalize.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_utf8.h"

static int tok_norm_unicode(int flags, const char *in, size_t n, tok_buf *out, pl_err *e)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, &dst,
                                        (utf8proc_option_t)(UTF8PROC_STABLE | flags));
    if (len < 0)
        return pl_errf(e, "Unicode normalization: %s", utf8proc_errmsg(len));
    tok_buf_add(out, dst, (size_t)len);
    free(dst);
    return 0;
}

static void tok_norm_lower(const char *in, size_t n, tok_buf *out)
{
    tok_buf_reserve(out, n);
    for (size_t i = 0; i < n;) {
        if ((unsigned char)in[i] < 0x80) {
            char c = in[i++];
            tok_buf_addc(out, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
            continue;
        }
        tok_lower_cp(tok_utf8_next(in, &i), out);
    }
}

static void tok_norm_drop_mn(const char *in, size_t n, tok_buf *out)
{
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t c = tok_utf8_next(in, &i);
        if (!tok_is_mark_nonspacing(c))
            tok_buf_add(out, in + at, i - at);
    }
}

static void tok_norm_strip(const tok_norm *z, const char *in, size_t n, tok_buf *out)
{
    size_t a = 0, b = n;
    if (z->strip_left)
        while (a < b) {
            size_t i = a;
            if (!tok_is_whitespace(tok_utf8_next(in, &i)))
                break;
            a = i;
        }
    if (z->strip_right)
        while (b > a) {
            size_t s = b - 1;
            while (s > a && ((unsigned char)in[s] & 0xC0) == 0x80)
                s--;
            size_t i = s;
            if (!tok_is_whitespace(tok_utf8_next(in, &i)))
                break;
            b = s;
        }
    tok_buf_add(out, in + a, b - a);
}

/* clean_text and handle_chinese_chars in one pass. */
static void tok_norm_bert_clean(const tok_norm *z, const char *in, size_t n, tok_buf *out)
{
    for (size_t i = 0; i < n;) {
        size_t at = i;
        uint32_t c = tok_utf8_next(in, &i);
        if (z->clean_text) {
            if (c == 0 || c == 0xFFFD || tok_is_bert_control(c))
                continue;
            if (tok_is_whitespace(c)) {
                tok_buf_addc(out, ' ');
                continue;
            }
        }
        if (z->chinese && tok_is_cjk(c)) {
            tok_buf_addc(out, ' ');
            tok_buf_add(out, in + at, i - at);
            tok_buf_addc(out, ' ');
        } else
            tok_buf_add(out, in + at, i - at);
    }
}

static void tok_swap(tok_buf *a, tok_buf *b)
{
    tok_buf t = *a;
    *a = *b;
    *b = t;
}

/* One step: in -> out (out is empty on entry). */
static int tok_norm_step(const tok_norm *z, tok_rx_scratch *x, const char *in, size_t n,
                         tok_buf *out, tok_buf *aux, pl_err *e)
{
    switch (z->kind) {
    case TN_NFC: return tok_norm_unicode(UTF8PROC_COMPOSE, in, n, out, e);
    case TN_NFD: return tok_norm_unicode(UTF8PROC_DECOMPOSE, in, n, out, e);
    case TN_NFKC: return tok_norm_unicode(UTF8PROC_COMPOSE | UTF8PROC_COMPAT, in, n, out, e);
    case TN_NFKD: return tok_norm_unicode(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, in, n, out, e);
    case TN_LOWERCASE: tok_norm_lower(in, n, out); break;
    case TN_STRIP_ACCENTS: tok_norm_drop_mn(in, n, out); break;
    case TN_REPLACE:
        return tok_regex_replace(&z->pattern, x, in, n, z->content, z->content_len, out, e);
    case TN_PREPEND:
        if (n)
            tok_buf_add(out, z->content, z->content_len);
        tok_buf_add(out, in, n);
        break;
    case TN_STRIP: tok_norm_strip(z, in, n, out); break;
    case TN_BERT:
        /* clean/CJK -> out; NFD + drop Mn and lowercase bounce through aux */
        tok_norm_bert_clean(z, in, n, out);
        if (z->strip_accents) {
            aux->len = 0;
            if (tok_norm_unicode(UTF8PROC_DECOMPOSE, out->p ? out->p : "", out->len, aux, e) != 0)
                return -1;
            out->len = 0;
            tok_norm_drop_mn(aux->p, aux->len, out);
        }
        if (z->lowercase) {
            aux->len = 0;
            tok_norm_lower(out->p, out->len, aux);
            tok_swap(out, aux);
        }
        break;
    }
    return 0;
}

int tok_norms_apply(const tok_norms *c, tok_rx_scratch *x, const char *in, size_t n,
                    tok_buf *out, tok_buf *tmp, pl_err *e)
{
    out->len = 0;
    if (c->n == 0) {
        tok_buf_add(out, in, n);
        return 0;
    }
    tok_buf aux = {0};
    for (size_t k = 0; k < c->n; k++) {
        tmp->len = 0;
        const char *src = k == 0 ? in : out->p;
        size_t len = k == 0 ? n : out->len;
        if (tok_norm_step(&c->v[k], x, src, len, tmp, &aux, e) != 0) {
            tok_buf_free(&aux);
            return -1;
        }
        tok_swap(out, tmp);
    }
    tok_buf_free(&aux);
    if (!out->p)
        tok_buf_reserve(out, 0);
    return 0;
}

static const char *const tok_norm_names[] = {
    "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents", "Replace", "Prepend", "Strip",
    "BertNormalizer"};

void tok_norms_describe(const tok_norms *c, tok_buf *out)
{
    tok_buf_add_chain(out, tok_norm_names, c->v, c->n, sizeof *c->v);
}

void tok_norms_free(tok_norms *c)
{
    for (size_t k = 0; k < c->n; k++) {
        tok_regex_free(&c->v[k].pattern);
        free(c->v[k].content);
    }
    free(c->v);
    memset(c, 0, sizeof *c);
}
