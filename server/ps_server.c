/* ps_server.c - the server rank's loops (see ps_server.h). */
#include "ps_server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "metrics.h"
#include "msg.h"
#include "transport.h"

/* Three views of the tensors for the messages (msg_layout): `lay` the
 * server's packed own tensors (server.h: s->at), `olay` the other servers'
 * tensors packed in id order (what rank 0 receives for a checkpoint),
 * `flay` the adapter's flat layout (the final gather). */
typedef struct {
    server *s;
    const ps_server_env *env;
    const train_config *t;
    msg_layout lay, olay, flay;
    size_t *numel, *ooff, *foff;
    size_t n_other;           /* floats of the tensors other servers own */
    unsigned char *mine;      /* tensors this server owns */
    msg_buf in, out, scratch;
    tp_batch pushes;          /* BSP: one buffer per worker, all received at once */
    float *gsum, *gtmp;       /* packed like s->params (n_own) */
    MPI_Request *reqs;
    double t_last;            /* when the previous update went out */
} srv;

/* The gradient sum and scratch (freed around rank 0's checkpoints). */
static int srv_grads(srv *v, pl_err *e)
{
    size_t n = v->s->n_own ? v->s->n_own : 1;
    v->gsum = calloc(n, sizeof(float));
    v->gtmp = calloc(n, sizeof(float));
    return v->gsum && v->gtmp ? 0 : pl_errf(e, "rank %d: out of memory", v->env->rank);
}

static int srv_init(srv *v, server *s, const ps_server_env *env, pl_err *e)
{
    memset(v, 0, sizeof *v);
    v->s = s, v->env = env, v->t = s->t;
    const lora_layout *L = s->L;
    int nt = lora_n_tensors(L);
    v->numel = malloc((size_t)(nt + 1) * sizeof(size_t));
    v->ooff = malloc((size_t)(nt + 1) * sizeof(size_t));
    v->foff = malloc((size_t)(nt + 1) * sizeof(size_t));
    v->mine = malloc((size_t)nt + 1);
    v->reqs = malloc((size_t)env->W * sizeof(MPI_Request));
    if (!v->numel || !v->ooff || !v->foff || !v->mine || !v->reqs)
        return pl_errf(e, "rank %d: out of memory", env->rank);
    if (tp_batch_init(&v->pushes, env->W, e) != 0)
        return -1;
    for (int id = 0; id < nt; id++) {
        v->numel[id] = lora_tensor_numel(L, id);
        v->foff[id] = lora_tensor_offset(L, id);
        v->mine[id] = env->owner[id] == env->rank;
        v->ooff[id] = v->n_other;
        if (!v->mine[id])
            v->n_other += v->numel[id];
    }
    v->lay = (msg_layout){nt, v->numel, s->at};
    v->olay = (msg_layout){nt, v->numel, v->ooff};
    v->flay = (msg_layout){nt, v->numel, v->foff};
    return srv_grads(v, e);
}

static void srv_free(srv *v)
{
    free(v->numel), free(v->ooff), free(v->foff), free(v->mine), free(v->gsum), free(v->gtmp);
    free(v->reqs);
    v->gsum = v->gtmp = NULL;
    msg_buf_free(&v->in), msg_buf_free(&v->out), msg_buf_free(&v->scratch);
    tp_batch_free(&v->pushes);
}

/* gsum += gtmp (both packed). */
static void add_owned(srv *v)
{
    for (size_t i = 0; i < v->s->n_own; i++)
        v->gsum[i] += v->gtmp[i];
}

/* Sends the owned slices of the adapter to every worker (one encoding). */
static int send_update(srv *v, long version, long step, int stop, int tag, pl_err *e)
{
    msg_update_hdr h = {version, step, stop};
    if (msg_encode_update_flat(&v->out, &h, &v->lay, v->mine, v->s->params, e) != 0)
        return -1;
    int S = v->env->S, W = v->env->W;
    for (int wi = 0; wi < W; wi++)
        tp_isend(v->env->world, S + wi, tag, &v->out, &v->reqs[wi]);
    return tp_wait(v->reqs, W, (double)v->t->timeout, "adapter update to the workers", e);
}

/* Per-step figures rank 0 collects from the pushes. */
typedef struct {
    double loss, t_compute, t_compute_max, t_comm, t_wait, stale_sum, stale_max, bytes_in;
    long tokens, pushes;
    int nonfinite;
} step_acc;

static void acc_push(step_acc *a, const msg_push_hdr *h, size_t bytes)
{
    a->loss += h->loss_sum;
    a->tokens += h->tokens;
    a->nonfinite |= h->nonfinite;
    a->t_compute += h->t_compute;
    if (h->t_compute > a->t_compute_max)
        a->t_compute_max = h->t_compute;
    a->t_comm += h->t_comm;
    a->t_wait += h->t_wait;
    double st = (double)(h->step - h->version);
    a->stale_sum += st;
    if (st > a->stale_max)
        a->stale_max = st;
    a->bytes_in += (double)bytes;
    a->pushes++;
}

/* Fills a metrics row of `done` steps from the accumulated pushes. */
static void make_row(const srv *v, const step_acc *a, long done, double bytes_push,
                     double bytes_pull, metrics_row *row)
{
    double now = clock_now(), n = a->pushes ? (double)a->pushes : 1;
    *row = (metrics_row){.step = done, .val_loss = NAN, .lr = opt_lr(&v->t->opt, done - 1)};
    row->loss = a->tokens ? a->loss / (double)a->tokens : NAN;   /* null: no counted target */
    row->tokens = a->tokens;
    row->epoch = trainconf_epoch(v->t, done, v->env->W);
    row->bytes_push = bytes_push, row->bytes_pull = bytes_pull;
    row->t_compute = a->t_compute / n, row->t_compute_max = a->t_compute_max;
    row->t_comm = a->t_comm / n, row->t_wait = a->t_wait / n;
    row->t_step = now - v->t_last;
    row->tokens_per_s = row->t_step > 0 ? (double)a->tokens / row->t_step : 0;
    row->stale_max = a->stale_max, row->stale_mean = a->stale_sum / n;
    row->skipped = v->s->skipped;
}

/* Rank 0: the validation loss worker 0 computed after `done` steps. */
static int recv_eval(srv *v, long done, double *val, pl_err *e)
{
    int S = v->env->S;
    if (tp_recv(v->env->world, S, TP_TAG_CTRL, &v->in, (double)v->t->timeout, NULL, NULL, NULL,
                e) != 0)
        return -1;
    msg_control c;
    if (msg_decode_control(&v->scratch, v->in.data, v->in.len, S, &c, e) != 0)
        return -1;
    if (c.kind == MSG_CTRL_ERROR)
        return pl_errf(e, "rank %d: %s", S, c.message);
    if (c.kind != MSG_CTRL_EVALUATE || c.step != done)
        return pl_errf(e, "rank %d: expected the evaluation of step %ld", S, done);
    *val = c.value;
    if (v->env->on_eval)
        v->env->on_eval(v->env->ctx, done, c.value, c.count);
    return 0;
}

static int eval_due(const train_config *t, long done)
{
    return t->val && (done % t->eval_every == 0 || done == t->steps);
}

/* One BSP step: pushes received all at once but summed in worker-rank
 * order (so the sum does not depend on which arrived first), global clip,
 * update, send. */
static int bsp_step(srv *v, long step, pl_err *e)
{
    server *s = v->s;
    int S = v->env->S, W = v->env->W;
    step_acc a = {0};
    tp_batch_start(&v->pushes, v->env->world, S, TP_TAG_PUSH, (double)v->t->timeout);
    for (int wi = 0; wi < W; wi++) {
        msg_push_hdr h;
        msg_expect x = {&v->lay, v->mine, step, step, s->version, s->version};
        const msg_buf *in = &v->pushes.buf[wi];
        if (tp_batch_wait(&v->pushes, wi, NULL, e) != 0 ||
            msg_decode_push(&v->scratch, in->data, in->len, S + wi, &x, &h,
                           wi ? v->gtmp : v->gsum, e) != 0)
            return -1;
        if (wi)
            add_owned(v);
        acc_push(&a, &h, in->len);
    }
    double red[2] = {server_scale(s, v->gsum, a.tokens), (double)a.nonfinite};
    MPI_Request q;
    MPI_Iallreduce(MPI_IN_PLACE, red, 2, MPI_DOUBLE, MPI_SUM, v->env->servers, &q);
    if (tp_wait(&q, 1, (double)v->t->timeout, "gradient norm from the other servers", e) != 0)
        return -1;
    double sq = red[1] > 0 ? NAN : red[0];
    if (a.tokens > 0)   /* no counted target in the global batch: nothing to apply */
        server_apply(s, v->gsum, sq, step);
    if (send_update(v, s->version, step, step == v->t->steps - 1, TP_TAG_UPDATE, e) != 0)
        return -1;
    double bytes[2] = {a.bytes_in, (double)v->out.len * W}, tot[2];
    MPI_Ireduce(bytes, tot, 2, MPI_DOUBLE, MPI_SUM, 0, v->env->servers, &q);
    if (tp_wait(&q, 1, (double)v->t->timeout, "byte counts from the other servers", e) != 0)
        return -1;
    if (v->env->rank != 0)
        return 0;
    metrics_row row;
    make_row(v, &a, step + 1, tot[0], tot[1], &row);
    row.grad_norm = sqrt(sq);
    v->t_last = clock_now();
    if (eval_due(v->t, step + 1) && recv_eval(v, step + 1, &row.val_loss, e) != 0)
        return -1;
    if (v->env->on_step)
        v->env->on_step(v->env->ctx, &row);
    if (s->consecutive_skips >= v->t->max_skips)
        return pl_errf(e, "%ld consecutive steps with non-finite loss or gradients (--max-skips)",
                       s->consecutive_skips);
    return 0;
}

/* ---- SSP / ASP ----
 *
 * Replies go out without waiting for their delivery: a server blocked on
 * delivering an update to one worker while that worker is blocked pushing
 * to another server, blocked in turn on a third rank, is a cycle of
 * rendezvous sends nobody receives (seen with 2 servers and 2 workers
 * under ASP).  So each worker's reply has its own buffer and request, the
 * server keeps receiving while they travel, and a buffer is reused only
 * after its request completed: a worker takes the reply to step t before it
 * pushes step t + 1, so that wait is short. */

typedef struct {
    long *clock;     /* pushes received per worker */
    long *pending;   /* step awaiting a reply, -1 none */
    long replies;
    msg_buf *out;    /* [W] the reply to each worker, in flight */
    MPI_Request *req;   /* [W] its send, MPI_REQUEST_NULL when none */
} async_state;

static long min_clock(const async_state *st, int W)
{
    long m = st->clock[0];
    for (int i = 1; i < W; i++)
        if (st->clock[i] < m)
            m = st->clock[i];
    return m;
}

/* Replies to every waiting worker whose bound now holds: the adapter sent
 * as version = min clock, so the worker computes step t+1 on a version
 * >= t+1-s (SSP) or any version (ASP). */
static int async_replies(srv *v, async_state *st, pl_err *e)
{
    int S = v->env->S, W = v->env->W;
    long mc = min_clock(st, W);
    for (int wi = 0; wi < W; wi++) {
        long t = st->pending[wi];
        if (t < 0 || (v->t->sync == SYNC_SSP && mc < t + 1 - v->t->staleness))
            continue;
        msg_update_hdr h = {mc, t, t == v->t->steps - 1};
        if (tp_wait(&st->req[wi], 1, (double)v->t->timeout, "adapter update", e) != 0 ||
            msg_encode_update_flat(&st->out[wi], &h, &v->lay, v->mine, v->s->params, e) != 0)
            return -1;
        tp_isend(v->env->world, S + wi, TP_TAG_UPDATE, &st->out[wi], &st->req[wi]);
        st->pending[wi] = -1;
        st->replies++;
    }
    return 0;
}

/* Applies one push at once: its own mean gradient, clipped by its own norm. */
static int async_push(srv *v, async_state *st, int src, step_acc *a, pl_err *e)
{
    int wi = src - v->env->S;
    msg_push_hdr h;
    msg_expect x = {&v->lay, v->mine, st->clock[wi], st->clock[wi], 0, v->t->steps};
    if (msg_decode_push(&v->scratch, v->in.data, v->in.len, src, &x, &h, v->gtmp, e) != 0)
        return -1;
    server_scale(v->s, v->gtmp, h.tokens);
    if (h.tokens > 0)   /* no counted target: nothing to apply */
        server_apply(v->s, v->gtmp, h.nonfinite ? NAN : h.sq_norm, h.step);
    st->clock[wi]++;
    st->pending[wi] = h.step;
    acc_push(a, &h, v->in.len);
    return async_replies(v, st, e);
}

static void async_free(async_state *st, int W)
{
    for (int wi = 0; st->out && wi < W; wi++)
        msg_buf_free(&st->out[wi]);
    free(st->clock), free(st->pending), free(st->out), free(st->req);
}

static int async_run(srv *v, pl_err *e)
{
    int S = v->env->S, W = v->env->W, root = v->env->rank == 0;
    async_state st = {calloc((size_t)W, sizeof(long)), malloc((size_t)W * sizeof(long)), 0,
                      calloc((size_t)W, sizeof(msg_buf)), malloc((size_t)W * sizeof(MPI_Request))};
    if (!st.clock || !st.pending || !st.out || !st.req) {
        async_free(&st, W);
        return pl_errf(e, "out of memory");
    }
    long start = v->env->start;
    for (int i = 0; i < W; i++)
        st.pending[i] = -1, st.clock[i] = start, st.req[i] = MPI_REQUEST_NULL;
    st.replies = (long)W * start;
    long evals_left = 0, rows = start;
    for (long d = start + 1; root && d <= v->t->steps; d++)
        evals_left += eval_due(v->t, d);
    step_acc a = {0};
    double pending_val = NAN;
    int rc = 0;
    while (rc == 0 && (st.replies < (long)W * v->t->steps || evals_left > 0)) {
        int src, tag;
        rc = tp_recv(v->env->world, MPI_ANY_SOURCE, MPI_ANY_TAG, &v->in, (double)v->t->timeout,
                     &src, &tag, NULL, e);
        if (rc)
            break;
        if (tag == TP_TAG_CTRL && root && src == S) {
            msg_control c;
            rc = msg_decode_control(&v->scratch, v->in.data, v->in.len, src, &c, e);
            if (!rc && c.kind == MSG_CTRL_EVALUATE) {
                pending_val = c.value;
                evals_left--;
                if (v->env->on_eval)
                    v->env->on_eval(v->env->ctx, c.step, c.value, c.count);
            } else if (!rc)
                rc = pl_errf(e, "rank %d: %s", src, c.message);
            continue;
        }
        if (tag != TP_TAG_PUSH || src < S) {
            rc = pl_errf(e, "rank %d: unexpected message (tag %d)", src, tag);
            break;
        }
        rc = async_push(v, &st, src, &a, e);
        if (rc == 0 && root && a.pushes == W) {   /* a row per W pushes */
            metrics_row row;
            /* every reply has the size of the first update (v->out) */
            make_row(v, &a, ++rows, a.bytes_in, (double)v->out.len * W, &row);
            row.val_loss = pending_val;
            pending_val = NAN;
            v->t_last = clock_now();
            if (v->env->on_step)
                v->env->on_step(v->env->ctx, &row);
            memset(&a, 0, sizeof a);
        }
        if (rc == 0 && v->s->consecutive_skips >= v->t->max_skips)
            rc = pl_errf(e, "%ld consecutive non-finite pushes (--max-skips)",
                         v->s->consecutive_skips);
    }
    /* every reply delivered before the checkpoint and the final gather */
    if (rc == 0)
        rc = tp_wait(st.req, W, (double)v->t->timeout, "adapter update", e);
    async_free(&st, W);
    return rc;
}

/* Receives from servers 1..S-1 (rank 0) `k` messages each, their owned
 * slices of the arrays dst[0..k), laid out by lay, of step range [lo, hi]. */
static int recv_slices(srv *v, int tag, const msg_layout *lay, float *const *dst, int k,
                       long lo, long hi, pl_err *e)
{
    unsigned char *theirs = malloc((size_t)v->lay.n_tensors + 1);
    int rc = theirs ? 0 : pl_errf(e, "out of memory");
    for (int r = 1; r < v->env->S && rc == 0; r++) {
        for (int id = 0; id < v->lay.n_tensors; id++)
            theirs[id] = v->env->owner[id] == r;
        msg_expect x = {lay, theirs, lo, hi, 0, 1L << 62};
        for (int i = 0; i < k && rc == 0; i++) {
            msg_update_hdr h;
            rc = tp_recv(v->env->world, r, tag, &v->in, (double)v->t->timeout, NULL, NULL, NULL,
                         e);
            if (rc == 0)
                rc = msg_decode_update(&v->scratch, v->in.data, v->in.len, r, &x, &h, dst[i], e);
        }
    }
    free(theirs);
    return rc;
}

/* Servers 1..S-1 (rank != 0): their owned slices of the arrays src[0..k) to rank 0. */
static int send_slices(srv *v, int tag, float *const *src, int k, long step, const char *what,
                       pl_err *e)
{
    for (int i = 0; i < k; i++) {
        msg_update_hdr h = {v->s->version, step, tag == TP_TAG_FINAL};
        if (msg_encode_update_flat(&v->out, &h, &v->lay, v->mine, src[i], e) != 0)
            return -1;
        tp_isend(v->env->world, 0, tag, &v->out, &v->reqs[0]);
        if (tp_wait(v->reqs, 1, (double)v->t->timeout, what, e) != 0)
            return -1;
    }
    return 0;
}

/* Servers 1..S-1 send their final slices to rank 0, which assembles the
 * whole adapter (server_gathered) after dropping its gradient buffers and
 * optimizer state, so that the whole adapter is the only full-size array. */
static int gather_final(srv *v, pl_err *e)
{
    server *s = v->s;
    if (v->env->rank != 0)
        return send_slices(v, TP_TAG_FINAL, &s->params, 1, v->t->steps, "final adapter to rank 0",
                           e);
    free(v->gsum), free(v->gtmp), free(s->m), free(s->v);
    v->gsum = v->gtmp = s->m = s->v = NULL;
    msg_buf_free(&v->out);   /* rank 0 sends nothing more */
    float *full = malloc(s->L->n_params * sizeof *full + 1);
    if (!full)
        return pl_errf(e, "out of memory for the final adapter");
    server_unpack(s, s->params, full);
    int rc = recv_slices(v, TP_TAG_FINAL, &v->flay, &full, 1, 0, v->t->steps, e);
    server_gathered(s, full);
    return rc;
}

/* Rank 0's checkpoint views: its own tensors in place, the others' in
 * o[0..3) (params, m, v packed by olay). */
static int ckpt_views(srv *v, float *const *o, server_views *x, pl_err *e)
{
    if (server_views_own(v->s, x, e) != 0)
        return -1;
    for (int id = 0; id < v->lay.n_tensors; id++)
        if (!v->mine[id])
            x->p[id] = o[0] + v->ooff[id], x->m[id] = o[1] + v->ooff[id],
            x->v[id] = o[2] + v->ooff[id];
    return 0;
}

/* Servers 1..S-1 send rank 0 their slices of the adapter, m and v; rank 0
 * receives them into buffers of the other servers' tensors (its gradient
 * buffers and update encoding freed meanwhile, so that with 2 servers its
 * peak stays at its steady size) and
 * writes the checkpoint of `done` steps from its own state and those. */
static int checkpoint(srv *v, long done, pl_err *e)
{
    server *s = v->s;
    float *arr[3] = {s->params, s->m, s->v};
    if (v->env->rank != 0)
        return send_slices(v, TP_TAG_CKPT, arr, 3, done, "checkpoint state to rank 0", e);
    free(v->gsum), free(v->gtmp);   /* idle until the next step: room for the others' */
    v->gsum = v->gtmp = NULL;
    msg_buf_free(&v->out);           /* delivered; the next update grows it again */
    float *o[3] = {0};
    int rc = 0;
    for (int k = 0; k < 3 && rc == 0; k++)
        if (!(o[k] = malloc(v->n_other * sizeof(float) + 1)))
            rc = pl_errf(e, "out of memory for the checkpoint");
    if (rc == 0)
        rc = recv_slices(v, TP_TAG_CKPT, &v->olay, o, 3, done, done, e);
    server_views x = {0};
    if (rc == 0)
        rc = ckpt_views(v, o, &x, e);
    if (rc == 0 && v->env->ckpt)
        rc = server_checkpoint_views(s, v->env->ckpt, done, &x, e);
    server_views_free(&x);
    free(o[0]), free(o[1]), free(o[2]);
    return rc == 0 ? srv_grads(v, e) : rc;
}

int ps_server_run(server *s, const ps_server_env *env, pl_err *e)
{
    srv v;
    const train_config *t = s->t;
    long start = env->start;
    int rc = srv_init(&v, s, env, e);
    /* the adapter of step `start`; async versions count in steps (min clock) */
    if (rc == 0)
        rc = send_update(&v, t->sync == SYNC_BSP ? s->version : start, start, 0, TP_TAG_UPDATE, e);
    v.t_last = clock_now();
    for (long step = start; rc == 0 && t->sync == SYNC_BSP && step < t->steps; step++) {
        rc = bsp_step(&v, step, e);
        if (rc == 0 && server_checkpoint_due(t, step + 1))
            rc = checkpoint(&v, step + 1, e);
    }
    if (rc == 0 && t->sync != SYNC_BSP && start < t->steps) {
        rc = async_run(&v, e);
        if (rc == 0)
            rc = checkpoint(&v, t->steps, e);
    }
    if (rc == 0)
        rc = gather_final(&v, e);
    srv_free(&v);
    return rc;
}
