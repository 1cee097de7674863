/* tok_regex.h - the patterns of Split, Replace and the regex pre-tokenizers:
 * a literal string (memmem) or a PCRE2 regex compiled with UTF and UCP (and
 * JIT when available), searched with per-thread match data. */
#ifndef PSLORA_TOK_REGEX_H
#define PSLORA_TOK_REGEX_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

#include "err.h"
#include "tok_buf.h"

typedef struct {
    pcre2_code *code;   /* NULL for a literal */
    int jit;
    char *src;          /* the pattern or literal as the file writes it */
    size_t len;
} tok_regex;

/* Per-thread search scratch (lives in tok_state). */
typedef struct {
    pcre2_match_data *md;
    pcre2_match_context *mc;
    pcre2_jit_stack *js;
} tok_rx_scratch;

/* literal != 0: src is matched as plain bytes.  Errors name where (e.g.
 * "tok.json: pre_tokenizer.pattern.Regex") with PCRE2's message and offset. */
int tok_regex_compile(tok_regex *r, const char *src, size_t len, int literal, const char *where,
                      pl_err *e);
void tok_regex_free(tok_regex *r);

/* Finds the first match in s[0..n) starting at or after byte start (s is valid
 * UTF-8).  1 with [*ms, *me), 0 when there is none, -1 when PCRE2 gave up
 * (resource limit), with the reason in e. */
int tok_regex_find(const tok_regex *r, tok_rx_scratch *x, const char *s, size_t n,
                   size_t start, size_t *ms, size_t *me, pl_err *e);

/* Appends in[0..n) to out with every match replaced by content (an empty
 * match inserts content and the search steps over one character). */
int tok_regex_replace(const tok_regex *r, tok_rx_scratch *x, const char *in, size_t n,
                      const char *content, size_t content_len, tok_buf *out, pl_err *e);

void tok_rx_scratch_free(tok_rx_scratch *x);

#endif
