/* evaluate.c - loss over shards in stream order (see evaluate.h). */
#include "evaluate.h"

#include <stdlib.h>
#include <string.h>

int eval_init(evaluator *ev, const model *m, const lora_layout *L, int B, int T, pl_err *e)
{
    ev->B = B, ev->T = T;
    ev->acts = model_acts_new(m, L, B, T, 0);
    ev->inp = malloc((size_t)B * T * sizeof(int32_t));
    ev->tgt = malloc((size_t)B * T * sizeof(int32_t));
    if (!ev->acts || !ev->inp || !ev->tgt) {
        eval_free(ev);
        return pl_errf(e, "out of memory for an evaluation batch of %d x %d", B, T);
    }
    return 0;
}

int eval_init_encoder(evaluator *ev, const model *m, const lora_layout *L, int B, int T,
                      long mask_id, const char *specials, uint64_t seed, pl_err *e)
{
    memset(ev, 0, sizeof *ev);
    const model_config *c = &m->cfg;
    ev->B = B, ev->T = T, ev->encoder = 1, ev->K = c->num_labels;
    if (c->task != TASK_CLS && c->task != TASK_MLM)
        return pl_errf(e, "a bert model without a head (BertModel): give --task mlm or cls");
    if (eb_init(&ev->eb, B, T, c->task, mask_id, specials, c->vocab, seed, e) != 0)
        return -1;
    ev->acts = model_acts_new(m, L, B, T, 0);
    ev->confusion = calloc((size_t)ev->K * ev->K, sizeof *ev->confusion);
    if (!ev->acts || !ev->confusion) {
        eval_free(ev);
        return pl_errf(e, "out of memory for an evaluation batch of %d x %d", B, T);
    }
    return 0;
}

void eval_free(evaluator *ev)
{
    eb_free(&ev->eb);
    free(ev->confusion);
    ev->confusion = NULL;
    model_acts_free(ev->acts);
    free(ev->inp);
    free(ev->tgt);
    ev->acts = NULL, ev->inp = NULL, ev->tgt = NULL;
}

/* Batches eval_run reads: whole ones of a stream, all of the samples. */
static long eval_batches(const evaluator *ev, const dataset *d, const char *what, long max,
                         pl_err *e)
{
    size_t n = ds_eval_entries(d), B = (size_t)ev->B;
    long nb = (long)(d->has_samples ? (n + B - 1) / B : n / B);
    if (nb < 1)
        return pl_errf(e, "%s: %zu sequences of %d+1 tokens make less than one batch of %d", what,
                       n, ev->T, ev->B);
    return max > 0 && max < nb ? max : nb;
}

/* One encoder batch of entries k0..: the loss sum; counts what it got right. */
static double encoder_batch(evaluator *ev, const model *m, const lora_layout *L,
                            const float *params, const dataset *d, size_t k0, long *counted)
{
    enc_batch *b = &ev->eb;
    int correct = 0;
    *counted += eb_fill_ordered(b, d, k0, ds_eval_entries(d));
    double loss = model_encoder_loss_grad(m, ev->acts, L, params, NULL, b->inp, b->types, b->len,
                                          b->tgt, 0, &correct);
    ev->correct += correct;
    const int32_t *pred = model_acts_predictions(ev->acts);
    for (int i = 0; b->task == TASK_CLS && i < b->B; i++)
        if (b->tgt[i] >= 0)
            ev->confusion[(size_t)b->tgt[i] * ev->K + pred[i]]++;
    return loss;
}

int eval_run(evaluator *ev, const model *m, const lora_layout *L, const float *params,
             const dataset *d, const char *what, long max_batches, double *loss_sum,
             long *ntok, pl_err *e)
{
    long nb = eval_batches(ev, d, what, max_batches, e), counted = 0;
    if (nb < 0)
        return -1;
    if (ev->encoder) {
        double sum = 0;
        ev->correct = 0;
        memset(ev->confusion, 0, (size_t)ev->K * ev->K * sizeof *ev->confusion);
        for (long b = 0; b < nb; b++)
            sum += encoder_batch(ev, m, L, params, d, (size_t)b * ev->B, &counted);
        if (counted == 0)
            return pl_errf(e, "%s: no target to evaluate (no labels, or nothing masked)", what);
        *loss_sum = sum, *ntok = counted;
        return 0;
    }
    size_t n = ds_eval_entries(d), T = (size_t)ev->T;
    double sum = 0;
    for (long b = 0; b < nb; b++) {
        for (size_t i = 0, k = (size_t)b * ev->B; i < (size_t)ev->B; i++, k++) {
            int32_t *inp = ev->inp + i * T, *tgt = ev->tgt + i * T;
            if (k < n)
                counted += ds_row_ordered(d, k, inp, tgt);
            else   /* past the last sample: an empty row */
                for (size_t j = 0; j < T; j++)
                    inp[j] = 0, tgt[j] = -1;
        }
        sum += model_loss_grad(m, ev->acts, L, params, NULL, ev->inp, ev->tgt, 0);
        if (model_acts_error(ev->acts))
            return pl_errf(e, "%s", model_acts_error(ev->acts));
    }
    if (counted == 0)
        return pl_errf(e, "%s: no target counts in the loss within --seq %d (every completion "
                       "is cut off?)", what, ev->T);
    *loss_sum = sum;
    *ntok = counted;
    return 0;
}
