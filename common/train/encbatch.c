/* encbatch.c - an encoder's batches (see encbatch.h). */
#include "encbatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tokenizer.h"

/* "0,100,101" into b->specials. */
static int parse_specials(enc_batch *b, const char *list, int vocab, pl_err *e)
{
    const char *s = list;
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || (*end && *end != ',') || v < 0 || v >= vocab)
            return pl_errf(e, "--special-ids: '%s' is not a list of ids below the vocabulary %d",
                           list, vocab);
        if (n == EB_MAX_SPECIALS)
            return pl_errf(e, "--special-ids: more than %d ids", EB_MAX_SPECIALS);
        b->specials[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    b->mlm.special = b->specials, b->mlm.n_special = n;
    return 0;
}

/* The tokenizer file of dir that tok_load reads for a BERT model, or NULL. */
static const char *tokenizer_file(const char *dir, char *path, size_t cap)
{
    static const char *const names[] = {"tokenizer.json", "vocab.txt"};
    for (int i = 0; i < 2; i++)
        if (snprintf(path, cap, "%s/%s", dir, names[i]) < (int)cap && access(path, R_OK) == 0)
            return path;
    return NULL;
}

/* r->specials: the special added tokens of t (read from file), comma-separated. */
static int special_list(eb_mask_ids *r, const tokenizer *t, const char *file, pl_err *e)
{
    size_t len = 0;
    int n = 0;
    r->specials[0] = 0;
    for (uint32_t id = 0; id < tok_vocab_size(t); id++) {
        if (!tok_is_special(t, id))
            continue;
        if (++n > EB_MAX_SPECIALS)
            return pl_errf(e, "%s: more than %d special tokens: give --special-ids", file,
                           EB_MAX_SPECIALS);
        len += (size_t)snprintf(r->specials + len, sizeof r->specials - len, "%s%u",
                                n > 1 ? "," : "", id);
    }
    return 0;
}

int eb_mask_ids_resolve(eb_mask_ids *r, const char *model_dir, long mask_id, const char *specials,
                        pl_err *e)
{
    char path[4200];
    const char *file = mask_id < 0 || !specials ? tokenizer_file(model_dir, path, sizeof path)
                                                : NULL;
    r->mask_id = mask_id >= 0 ? mask_id : EB_DEFAULT_MASK_ID;
    snprintf(r->specials, sizeof r->specials, "%s", specials ? specials : EB_DEFAULT_SPECIALS);
    if (!file)
        return 0;
    tokenizer *t;
    if (tok_load(&t, model_dir, e) != 0)   /* reads file: tokenizer.json first */
        return -1;
    int rc = 0;
    if (mask_id < 0 && (r->mask_id = tok_token_to_id(t, "[MASK]")) < 0)
        rc = pl_errf(e, "%s: no [MASK] token: give --mask-id", file);
    if (rc == 0 && !specials)
        rc = special_list(r, t, file, e);
    tok_free(t);
    return rc;
}

int eb_init(enc_batch *b, int B, int T, model_task task, long mask_id, const char *specials,
            int vocab, uint64_t seed, pl_err *e)
{
    memset(b, 0, sizeof *b);
    b->B = B, b->T = T, b->task = task, b->seed = seed;
    if (task == TASK_MLM) {
        if (mask_id < 0 || mask_id >= vocab)
            return pl_errf(e, "--mask-id: %ld is not below the vocabulary %d", mask_id, vocab);
        b->mlm = (mlm_spec){.mask_id = (int32_t)mask_id, .vocab = vocab, .prob = 0.15};
        if (parse_specials(b, specials, vocab, e) != 0 || mlm_spec_check(&b->mlm, e) != 0)
            return -1;
    }
    size_t BT = (size_t)B * T;
    b->inp = malloc(BT * sizeof *b->inp), b->types = malloc(BT * sizeof *b->types);
    b->len = malloc((size_t)B * sizeof *b->len), b->tgt = malloc(BT * sizeof *b->tgt);
    b->tmp = malloc((size_t)T * sizeof *b->tmp);
    if (!b->inp || !b->types || !b->len || !b->tgt || !b->tmp) {
        eb_free(b);
        return pl_errf(e, "out of memory for an encoder batch of %d x %d", B, T);
    }
    return 0;
}

void eb_free(enc_batch *b)
{
    free(b->inp), free(b->types), free(b->len), free(b->tgt), free(b->tmp);
    b->inp = b->types = b->len = b->tgt = b->tmp = NULL;
}

/* Row i's targets once its tokens are in: the label (cls), or the masking
 * of its real tokens drawn from (seed, epoch, entry) (mlm).  Returns the
 * targets that count. */
static long row_targets(enc_batch *b, int i, int has_label, int32_t label, long epoch,
                        size_t entry)
{
    if (b->task == TASK_CLS) {
        b->tgt[i] = has_label ? label : -1;
        return has_label;
    }
    int T = b->T, n = b->len[i];
    int32_t *inp = b->inp + (size_t)i * T, *tgt = b->tgt + (size_t)i * T;
    memcpy(b->tmp, inp, (size_t)T * sizeof *inp);
    int k = mlm_mask_row(&b->mlm, b->tmp, n, b->seed, epoch, (uint64_t)entry, inp, tgt);
    for (int j = n; j < T; j++)
        tgt[j] = -1;
    return k > 0 ? k : 0;
}

long eb_fill(enc_batch *b, dataset *d, uint64_t first, long step, FILE *order)
{
    long counted = 0, epoch;
    size_t entry;
    for (int i = 0; i < b->B; i++) {
        size_t at = (size_t)i * b->T;
        int32_t label;
        int has = ds_enc_row(d, first + (uint64_t)i, b->inp + at, b->types + at, &b->len[i],
                             &label, &epoch, &entry);
        counted += row_targets(b, i, has, label, epoch, entry);
        if (order)
            fprintf(order, "%ld %ld %zu\n", step, epoch, entry);
    }
    return counted;
}

long eb_fill_ordered(enc_batch *b, const dataset *d, size_t k0, size_t n)
{
    long counted = 0;
    for (int i = 0; i < b->B; i++) {
        size_t at = (size_t)i * b->T, k = k0 + (size_t)i;
        int32_t label = -1;
        int has = 0;
        if (k < n) {
            has = ds_enc_row_ordered(d, k, b->inp + at, b->types + at, &b->len[i], &label);
        } else {   /* past the last entry: one padding token, nothing counts */
            memset(b->inp + at, 0, (size_t)b->T * sizeof *b->inp);
            memset(b->types + at, 0, (size_t)b->T * sizeof *b->types);
            b->len[i] = 1;
        }
        if (k < n || b->task == TASK_CLS)
            counted += row_targets(b, i, has, label, 0, k);
        else
            for (int j = 0; j < b->T; j++)
                b->tgt[at + j] = -1;
    }
    return counted;
}
