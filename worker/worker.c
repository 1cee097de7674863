/* worker.c - the worker role (see worker.h). */
#include "worker.h"

#include "full.h"
#include "vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int worker_init(worker *w, const train_config *t, const model_bf16_store *store, pl_err *e)
{
    memset(w, 0, sizeof *w);
    w->t = t;
    /* bf16: the frozen matrices are packed for forward and backward */
    if (trainconf_load_model(t, &w->m, t->compute_mode, 1, store, e) != 0)
        return -1;
    const model_config *c = &w->m.cfg;
    if (t->seq > c->n_ctx) {
        pl_errf(e, "--seq: %ld is longer than the model's context %d", t->seq, c->n_ctx);
        model_free(&w->m);   /* c points into w->m: format the line first */
        return -1;
    }
    if (trainconf_trained(t, &w->m, &w->L, &w->params, e) != 0)
        goto fail;
    lora_attach(&w->L, &w->m);
    if (w->L.full)   /* the trained weights are w->params from now on */
        full_attach(w->L.full, &w->m, w->params);
    w->encoder = c->arch == ARCH_BERT;
    ds_options o = {(int)t->seq, t->shuffle, t->pack, (uint64_t)t->seed, w->encoder};
    if (w->encoder && t->pack) {
        pl_errf(e, "--pack: an encoder (bert) reads one sample per row");
        goto fail;
    }
    if (ds_open(&w->data, t->data, (uint32_t)c->vocab, &o, "--data", e) != 0)
        goto fail;
    eb_mask_ids ids = {0};
    if (w->encoder && c->task == TASK_MLM &&
        eb_mask_ids_resolve(&ids, t->model_dir, t->mask_id, t->special_ids, e) != 0)
        goto fail;
    if (w->encoder && eb_init(&w->eb, (int)t->batch, (int)t->seq, c->task, ids.mask_id,
                              ids.specials, c->vocab, (uint64_t)t->seed, e) != 0)
        goto fail;
    if (t->val) {
        if (ds_open(&w->val, t->val, (uint32_t)c->vocab, &o, "--val", e) != 0)
            goto fail;
        w->has_val = 1;
        if (w->encoder ? eval_init_encoder(&w->ev, &w->m, &w->L, (int)t->batch, (int)t->seq,
                                           ids.mask_id, ids.specials, (uint64_t)t->seed, e)
                       : eval_init(&w->ev, &w->m, &w->L, (int)t->batch, (int)t->seq, e))
            goto fail;
    }
    worker_test_hooks_init(w);
    size_t BT = (size_t)t->batch * t->seq;
    w->acts = model_acts_new(&w->m, &w->L, (int)t->batch, (int)t->seq, 1);
    w->grad = vec_falloc(w->L.n_params);
    w->inp = malloc(BT * sizeof(int32_t));
    w->tgt = malloc(BT * sizeof(int32_t));
    if (!w->acts || !w->grad || !w->inp || !w->tgt) {
        pl_errf(e, "out of memory for a micro-batch of %ld x %ld", t->batch, t->seq);
        goto fail;
    }
    return 0;
fail:
    worker_free(w);
    return -1;
}

void worker_free(worker *w)
{
    model_acts_free(w->acts);
    eval_free(&w->ev);
    eb_free(&w->eb);
    free(w->grad);
    free(w->params);
    free(w->inp);
    free(w->tgt);
    ds_close(&w->val);
    ds_close(&w->data);
    if (w->order_log)
        fclose(w->order_log);
    lora_layout_free(&w->L);
    model_free(&w->m);
    memset(w, 0, sizeof *w);
}

/* PSLORA_TEST_ORDER_LOG: FILE.w<wi>, appended to (a resumed run goes on). */
static void worker_open_order_log(worker *w, int wi)
{
    char path[4200];
    snprintf(path, sizeof path, "%s.w%d", w->order_path, wi);
    w->order_log = fopen(path, "a");
    if (!w->order_log)
        w->order_path = NULL;
}

double worker_compute(worker *w, long step, int wi, int nw, long *ntok)
{
    int B = (int)w->t->batch, T = (int)w->t->seq;
    uint64_t first = ((uint64_t)step * (uint64_t)nw + (uint64_t)wi) * (uint64_t)B;
    long counted = 0, epoch;
    size_t entry;
    if (w->order_path && !w->order_log)
        worker_open_order_log(w, wi);
    /* the dropout mask depends on the seed, the step and the worker only */
    unsigned long long dseed = (unsigned long long)w->t->seed * 0x9E3779B97F4A7C15ULL ^
                               ((unsigned long long)step << 20) ^ (unsigned long long)wi;
    if (w->encoder) {
        enc_batch *b = &w->eb;
        *ntok = eb_fill(b, &w->data, first, step, w->order_log);
        if (w->order_log)
            fflush(w->order_log);
        return model_encoder_loss_grad(&w->m, w->acts, &w->L, w->params, w->grad, b->inp,
                                       b->types, b->len, b->tgt, dseed, NULL);
    }
    for (int i = 0; i < B; i++) {
        counted += ds_row(&w->data, first + (uint64_t)i, w->inp + (size_t)i * T,
                          w->tgt + (size_t)i * T, &epoch, &entry);
        if (w->order_log)
            fprintf(w->order_log, "%ld %ld %zu\n", step, epoch, entry);
    }
    if (w->order_log)
        fflush(w->order_log);
    *ntok = counted;
    return model_loss_grad(&w->m, w->acts, &w->L, w->params, w->grad, w->inp, w->tgt, dseed);
}

int worker_validate(worker *w, double *val_loss, long *ntok, pl_err *e)
{
    *val_loss = NAN;
    *ntok = 0;
    if (!w->has_val)
        return 0;
    double sum;
    /* default: 8 batches of a stream, every sample of sample data */
    long max = w->t->eval_batches ? w->t->eval_batches : w->val.has_samples ? 0 : 8;
    if (eval_run(&w->ev, &w->m, &w->L, w->params, &w->val, w->t->val, max, &sum, ntok, e) != 0)
        return -1;
    *val_loss = sum / (double)*ntok;
    return 0;
}

int worker_grad_finite(const worker *w, double loss)
{
    if (!isfinite(loss))
        return 0;
    for (size_t i = 0; i < w->L.n_params; i++)
        if (!isfinite(w->grad[i]))
            return 0;
    return 1;
}

/* ---- test-only hooks (environment variables; see docs/checkpoints.md) ---- */

/* "N" or "N-M" (1-based metrics steps) into [*from, *to]; 0 when well formed. */
static int parse_range(const char *s, long *from, long *to)
{
    char *end;
    *from = strtol(s, &end, 10);
    *to = *from;
    if (*end == '-')
        *to = strtol(end + 1, &end, 10);
    return *end == 0 && *from >= 1 && *to >= *from ? 0 : -1;
}

void worker_test_hooks_init(worker *w)
{
    const char *ns = getenv("PSLORA_TEST_NAN_STEP"), *nr = getenv("PSLORA_TEST_NAN_RANK");
    const char *sr = getenv("PSLORA_TEST_SLOW_RANK"), *sm = getenv("PSLORA_TEST_SLOW_MS");
    w->nan_from = w->nan_to = -1;
    w->nan_rank = nr ? atoi(nr) : -1;
    if (ns && parse_range(ns, &w->nan_from, &w->nan_to) != 0)
        w->nan_from = w->nan_to = -1;
    w->slow_rank = sr ? atoi(sr) : -1;
    w->slow_s = sr && sm ? atof(sm) / 1000.0 : 0;
    const char *ol = getenv("PSLORA_TEST_ORDER_LOG");
    w->order_path = ol && *ol ? ol : NULL;   /* opened at the first step (worker index) */
    if (!(w->slow_s >= 0 && w->slow_s <= 86400))   /* NaN or absurd: off */
        w->slow_s = 0;
}

void worker_test_hooks(worker *w, long step, int rank)
{
    if (w->slow_s > 0 && rank == w->slow_rank) {
        struct timespec ts = {(time_t)w->slow_s, (long)(fmod(w->slow_s, 1.0) * 1e9)};
        nanosleep(&ts, NULL);
    }
    if (step + 1 >= w->nan_from && step + 1 <= w->nan_to &&
        (w->nan_rank < 0 || w->nan_rank == rank) && w->L.n_params)
        w->grad[0] = NAN;
}
