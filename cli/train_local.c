/* train_local.c - both roles in one process (no mpirun).
 *
 * The same worker and server code as under mpirun, with the messages
 * replaced by direct calls: 1 server + 1 worker give the same adapter. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cli.h"
#include "server.h"
#include "train.h"
#include "worker.h"

/* Validation at the steps --eval-every names and at the end. */
static double maybe_validate(worker *w, const train_config *t, long done, run_log *r)
{
    if (!w->has_val || !(done % t->eval_every == 0 || done == t->steps))
        return NAN;
    double v;
    long n;
    pl_err e;
    if (worker_validate(w, &v, &n, &e) != 0) {
        cli_fail("train", e.msg, 1);
        return NAN;
    }
    metrics_eval(&r->log, done, v, n);
    return v;
}

/* --resume: the newest checkpoint into s; *start its step (0 without one). */
static int resume(server *s, const server_ckpt *c, const train_config *t, long *start, pl_err *e)
{
    char dir[4200];
    *start = 0;
    return t->resume ? server_resume(s, c, start, dir, sizeof dir, run_warn, e) : 0;
}

int train_local(const train_config *t)
{
    pl_err e;
    worker w;
    server s;
    run_fp fp;
    if (worker_init(&w, t, NULL, &e) != 0)
        return cli_fail("train", e.msg, 1);
    float *sp = malloc(w.L.n_params * sizeof(float) + 1);
    if (!sp || server_init(&s, t, &w.L, sp, NULL, &e) != 0) {
        worker_free(&w);
        return cli_fail("train", sp ? e.msg : "out of memory", 1);
    }
    memcpy(s.params, w.params, w.L.n_params * sizeof(float));
    if (run_fingerprint(&fp, t, &w.m, &w.L, 1, &e) != 0) {
        server_free(&s);
        worker_free(&w);
        return cli_fail("train", e.msg, 1);
    }
    server_ckpt ck = {t->out, &w.m.cfg, fp.kv, fp.n, 1, &w.m};
    run_log r = {0};
    long start;
    int status = 1;
    if (resume(&s, &ck, t, &start, &e) != 0 || run_begin(&r, t, 1, 1, start, &e) != 0)
        goto done;
    memcpy(w.params, s.params, w.L.n_params * sizeof(float));
    for (long step = start; step < t->steps; step++) {
        metrics_row row = {.step = step + 1, .val_loss = NAN, .lr = opt_lr(&t->opt, step)};
        double t0 = clock_now();
        long ntok;
        double loss = worker_compute(&w, step, 0, 1, &ntok);
        if (model_acts_error(w.acts)) {
            pl_errf(&e, "%s", model_acts_error(w.acts));
            goto done;
        }
        worker_test_hooks(&w, step, 0);
        double t1 = clock_now();
        double sq = server_scale(&s, w.grad, ntok);
        if (!worker_grad_finite(&w, loss))
            sq = NAN;
        if (ntok > 0)   /* no counted target: nothing to apply (server.h) */
            server_apply(&s, w.grad, sq, step);
        memcpy(w.params, s.params, w.L.n_params * sizeof(float));
        row.loss = ntok ? loss / (double)ntok : NAN;
        row.tokens = ntok;
        row.epoch = trainconf_epoch(t, step + 1, 1);
        row.grad_norm = sqrt(sq);
        row.skipped = s.skipped;
        row.t_compute = t1 - t0;
        row.t_step = clock_now() - t0;
        row.tokens_per_s = (double)ntok / row.t_step;
        row.val_loss = maybe_validate(&w, t, step + 1, &r);
        run_step(&r, &row);
        if (s.consecutive_skips >= t->max_skips) {
            pl_errf(&e, "%ld consecutive steps with non-finite loss or gradients (--max-skips)",
                    s.consecutive_skips);
            goto done;
        }
        if (server_checkpoint_due(t, step + 1) && server_checkpoint(&s, &ck, step + 1, &e) != 0)
            goto done;
    }
    r.rss_mb = r.rss_server_mb = r.rss_worker_mb = run_peak_rss_mb();   /* both roles */
    if (run_finish(&r, &w.L, &w.m, s.params, &e) != 0)
        goto done;
    status = 0;
done:
    if (status)
        cli_fail("train", e.msg, 1);
    if (status && r.log.f)
        metrics_close(&r.log);
    run_fingerprint_free(&fp);
    server_free(&s);
    worker_free(&w);
    return status;
}
