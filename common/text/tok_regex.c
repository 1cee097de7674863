/* tok_regex.c - literal and PCRE2 pattern search (tok_regex.h). */
#define _GNU_SOURCE /* memmem */
#include "tok_regex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_buf.h"
#include "tok_utf8.h"

int tok_regex_compile(tok_regex *r, const char *src, size_t len, int literal, const char *where,
                      pl_err *e)
{
    memset(r, 0, sizeof *r);
    if (len == 0)
        return pl_errf(e, "%s: empty pattern", where);
    r->src = tok_xstrndup(src, len);
    r->len = len;
    if (literal)
        return 0;
    int code;
    PCRE2_SIZE off;
    r->code = pcre2_compile((PCRE2_SPTR)src, len, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!r->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        free(r->src);
        r->src = NULL;
        return pl_errf(e, "%s: regex does not compile: %s at offset %zu", where, (char *)msg,
                       (size_t)off);
    }
    r->jit = pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

void tok_regex_free(tok_regex *r)
{
    if (r->code)
        pcre2_code_free(r->code);
    free(r->src);
    memset(r, 0, sizeof *r);
}

static void tok_rx_scratch_init(tok_rx_scratch *x)
{
    if (x->md)
        return;
    x->md = pcre2_match_data_create(16, NULL);
    x->mc = pcre2_match_context_create(NULL);
    x->js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!x->md || !x->mc || !x->js) {
        fprintf(stderr, "tokenizer: out of memory (PCRE2 match data)\n");
        abort();
    }
    pcre2_jit_stack_assign(x->mc, NULL, x->js);
}

int tok_regex_find(const tok_regex *r, tok_rx_scratch *x, const char *s, size_t n,
                   size_t start, size_t *ms, size_t *me, pl_err *e)
{
    if (start > n)
        return 0;
    if (!r->code) {
        const char *p = memmem(s + start, n - start, r->src, r->len);
        if (!p)
            return 0;
        *ms = (size_t)(p - s);
        *me = *ms + r->len;
        return 1;
    }
    tok_rx_scratch_init(x);
    int rc = r->jit ? pcre2_jit_match(r->code, (PCRE2_SPTR)s, n, start, 0, x->md, x->mc)
                    : pcre2_match(r->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, x->md,
                                  x->mc);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return pl_errf(e, "regex /%s/: %s", r->src, (char *)msg);
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(x->md);
    *ms = ov[0];
    *me = ov[1];
    if (*me < *ms) /* \K in a lookahead can do this; treat as empty */
        *me = *ms;
    return 1;
}

int tok_regex_replace(const tok_regex *r, tok_rx_scratch *x, const char *in, size_t n,
                      const char *content, size_t content_len, tok_buf *out, pl_err *e)
{
    size_t pos = 0, copied = 0;
    while (pos <= n) {
        size_t ms, me;
        int rc = tok_regex_find(r, x, in, n, pos, &ms, &me, e);
        if (rc < 0)
            return -1;
        if (rc == 0)
            break;
        tok_buf_add(out, in + copied, ms - copied);
        tok_buf_add(out, content, content_len);
        copied = pos = me;
        if (me == ms) { /* empty match: step over one character */
            if (me >= n)
                break;
            size_t k = tok_utf8_len((unsigned char)in[me]);
            tok_buf_add(out, in + me, k);
            copied = pos = me + k;
        }
    }
    tok_buf_add(out, in + copied, n - copied);
    return 0;
}

void tok_rx_scratch_free(tok_rx_scratch *x)
{
    if (x->md)
        pcre2_match_data_free(x->md);
    if (x->mc)
        pcre2_match_context_free(x->mc);
    if (x->js)
        pcre2_jit_stack_free(x->js);
    memset(x, 0, sizeof *x);
}
