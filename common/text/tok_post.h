/* tok_post.h - post-processors for encode(add_special_tokens=True) of one
 * sequence: TemplateProcessing's "single" template, BertProcessing
 * ([CLS] $A [SEP]) and RobertaProcessing (<s> $A </s>) become templates when
 * loaded; ByteLevel only moves offsets, so it leaves the ids alone.  A
 * Sequence applies its processors in order, each wrapping the previous
 * result. */
#ifndef PSLORA_TOK_POST_H
#define PSLORA_TOK_POST_H

#include <stddef.h>
#include <stdint.h>

#include "tok_buf.h"

typedef struct {
    int is_a;          /* 1: the sequence itself ($A) */
    uint32_t *ids;     /* else: the special token's ids */
    size_t n;
} tok_tpl_item;

typedef enum { TPP_TEMPLATE, TPP_BERT, TPP_ROBERTA, TPP_BYTELEVEL } tok_post_kind;

typedef struct {
    tok_post_kind kind;
    tok_tpl_item *items;   /* empty for ByteLevel */
    size_t n;
} tok_post;

typedef struct {
    tok_post *v;
    size_t n;
} tok_posts;

/* Rewrites ids[base..*n) through the processors. */
void tok_posts_apply(const tok_posts *p, uint32_t **ids, size_t *n, size_t *cap, size_t base);
/* Appends a template item (is_a, or a copy of ids[0..k)). */
void tok_post_add_item(tok_post *p, int is_a, const uint32_t *ids, size_t k);
void tok_posts_describe(const tok_posts *p, tok_buf *out);
void tok_posts_free(tok_posts *p);

#endif
