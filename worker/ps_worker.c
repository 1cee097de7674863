/* ps_worker.c - the worker rank's loop (see ps_worker.h). */
#include "ps_worker.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "msg.h"
#include "optim.h"
#include "transport.h"

typedef struct {
    worker *w;
    const ps_worker_env *env;
    msg_layout lay;
    size_t *numel, *offset;
    unsigned char **owned;   /* [S][n_tensors] */
    msg_buf *out;             /* one encoding per server */
    msg_buf scratch;
    tp_batch updates;         /* one buffer per server, all received at once */
    MPI_Request *reqs;
    double t_comm, t_wait;   /* of the last exchange (push + pull), sent with the next push */
} wrk;

static int wrk_init(wrk *v, worker *w, const ps_worker_env *env, pl_err *e)
{
    memset(v, 0, sizeof *v);
    v->w = w, v->env = env;
    int nt = lora_n_tensors(&w->L), S = env->S;
    v->numel = malloc((size_t)(nt + 1) * sizeof(size_t));
    v->offset = malloc((size_t)(nt + 1) * sizeof(size_t));
    v->owned = calloc((size_t)S, sizeof *v->owned);
    v->out = calloc((size_t)S, sizeof *v->out);
    v->reqs = malloc((size_t)S * sizeof(MPI_Request));
    if (!v->numel || !v->offset || !v->owned || !v->out || !v->reqs)
        return pl_errf(e, "rank %d: out of memory", env->rank);
    for (int id = 0; id < nt; id++) {
        v->numel[id] = lora_tensor_numel(&w->L, id);
        v->offset[id] = lora_tensor_offset(&w->L, id);
    }
    for (int s = 0; s < S; s++) {
        if (!(v->owned[s] = malloc((size_t)nt + 1)))
            return pl_errf(e, "rank %d: out of memory", env->rank);
        for (int id = 0; id < nt; id++)
            v->owned[s][id] = env->owner[id] == s;
    }
    v->lay = (msg_layout){nt, v->numel, v->offset};
    return tp_batch_init(&v->updates, S, e);
}

static void wrk_free(wrk *v)
{
    for (int s = 0; v->owned && s < v->env->S; s++) {
        free(v->owned[s]);
        msg_buf_free(&v->out[s]);
    }
    free(v->owned), free(v->out), free(v->numel), free(v->offset), free(v->reqs);
    msg_buf_free(&v->scratch);
    tp_batch_free(&v->updates);
}

/* Takes one AdapterUpdate from every server (all received at once, applied
 * in server order); *version = the oldest of them.
 * Waits up to twice --timeout: a server waits --timeout for each push, so
 * when a worker is stuck the server, which knows which one, speaks first. */
static int pull(wrk *v, long step_min, long step_max, long *version, int *stop, pl_err *e)
{
    double t0 = clock_now(), waited_total = 0;
    long vmin = -1;
    tp_batch_start(&v->updates, v->env->world, 0, TP_TAG_UPDATE, 2.0 * (double)v->w->t->timeout);
    for (int s = 0; s < v->env->S; s++) {
        double waited;
        msg_update_hdr h;
        msg_expect x = {&v->lay, v->owned[s], step_min, step_max, 0, v->w->t->steps};
        const msg_buf *in = &v->updates.buf[s];
        if (tp_batch_wait(&v->updates, s, &waited, e) != 0 ||
            msg_decode_update(&v->scratch, in->data, in->len, s, &x, &h, v->w->params, e))
            return -1;
        waited_total += waited;
        if (vmin < 0 || h.version < vmin)
            vmin = h.version;
        *stop = h.stop;
    }
    *version = vmin;
    v->t_wait = waited_total;
    v->t_comm += clock_now() - t0 - waited_total;
    return 0;
}

/* Pushes each server its slices of the gradient of `step`. */
static int push(wrk *v, long step, long version, double loss, long ntok, double t_compute,
                pl_err *e)
{
    worker *w = v->w;
    double t0 = clock_now();
    int finite = worker_grad_finite(w, loss);
    /* no counted target: a zero gradient, which the server does not apply */
    double mean_sq = ntok ? opt_sq_norm(w->grad, w->L.n_params) / ((double)ntok * (double)ntok) : 0;
    msg_push_hdr h = {.step = step, .version = version, .rank = v->env->rank, .tokens = ntok,
                     .loss_sum = loss, .nonfinite = !finite, .t_compute = t_compute,
                     .t_comm = v->t_comm, .t_wait = v->t_wait, .sq_norm = mean_sq};
    for (int s = 0; s < v->env->S; s++) {
        if (msg_encode_push_flat(&v->out[s], &h, &v->lay, v->owned[s], w->grad, e) != 0)
            return -1;
        tp_isend(v->env->world, s, TP_TAG_PUSH, &v->out[s], &v->reqs[s]);
    }
    int rc = tp_wait(v->reqs, v->env->S, (double)w->t->timeout, "gradient push", e);
    v->t_comm = clock_now() - t0;
    return rc;
}

/* Worker 0 sends rank 0 the validation loss after `done` steps. */
static int send_eval(wrk *v, long done, pl_err *e)
{
    const train_config *t = v->w->t;
    if (v->env->rank != v->env->S || !t->val || !(done % t->eval_every == 0 || done == t->steps))
        return 0;
    double val;
    long n;
    if (worker_validate(v->w, &val, &n, e) != 0)
        return -1;
    msg_control c = {.kind = MSG_CTRL_EVALUATE, .step = done, .value = val, .count = n};
    if (msg_encode_control(&v->scratch, &c, e) != 0)
        return -1;
    MPI_Request r;
    tp_isend(v->env->world, 0, TP_TAG_CTRL, &v->scratch, &r);
    return tp_wait(&r, 1, (double)t->timeout, "evaluation result to rank 0", e);
}

int ps_worker_run(worker *w, const ps_worker_env *env, pl_err *e)
{
    wrk v;
    int stop = 0, wi = env->rank - env->S;
    long version = 0;
    int rc = wrk_init(&v, w, env, e);
    if (rc == 0)   /* the adapter of step `start`: version 0, or the checkpoint's */
        rc = pull(&v, env->start, env->start, &version, &stop, e);
    for (long step = env->start; rc == 0 && step < w->t->steps; step++) {
        double t0 = clock_now();
        long ntok;
        double loss = worker_compute(w, step, wi, env->W, &ntok);
        if (model_acts_error(w->acts)) {
            rc = pl_errf(e, "%s", model_acts_error(w->acts));
            break;
        }
        worker_test_hooks(w, step, env->rank);
        rc = push(&v, step, version, loss, ntok, clock_now() - t0, e);
        if (rc == 0)
            rc = pull(&v, step, step, &version, &stop, e);
        if (rc == 0)
            rc = send_eval(&v, step + 1, e);
    }
    wrk_free(&v);
    return rc;
}
