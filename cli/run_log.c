/* run_log.c - output directory, metrics and summary of a training run. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "outdir.h"
#include "train.h"

int run_begin(run_log *r, const train_config *t, int world, int n_workers, pl_err *e)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    r->last_val = NAN;
    if (!t->resume && outdir_in_use(t->out))
        return pl_errf(e, "--out: %s already exists and is not empty (use --resume %s to continue it)",
                       t->out, t->out);
    if (mkdir(t->out, 0755) != 0 && errno != EEXIST)
        return pl_errf(e, "--out: cannot create %s: %s", t->out, strerror(errno));
    if (trainconf_write_run_json(t, world, n_workers, e) != 0)
        return -1;
    if (metrics_open(&r->log, t->out, t->resume != NULL, e) != 0)
        return -1;
    r->t_start = metrics_now();
    return 0;
}

void run_step(run_log *r, metrics_row *row)
{
    r->steps_done = row->step;
    r->tokens += row->tokens;
    r->last_loss = row->loss;
    r->bytes_total += row->bytes_push + row->bytes_pull;
    if (!isnan(row->val_loss))
        r->last_val = row->val_loss;
    int logged = row->step % r->t->log_every == 0 || row->step == r->t->steps;
    if (logged || !isnan(row->val_loss))
        metrics_step(&r->log, row);
    if (logged)
        metrics_progress(row, r->t->steps, metrics_now() - r->t_start);
}

int run_finish(run_log *r, const lora_layout *L, const model_config *c, const float *params,
               pl_err *e)
{
    metrics_close(&r->log);
    if (lora_save_peft(r->t->out, L, c, params, r->t->model_dir, e) != 0)
        return -1;
    double secs = metrics_now() - r->t_start;
    double steps = r->steps_done > 0 ? (double)r->steps_done : 1;
    char val[48] = "";
    if (!isnan(r->last_val))
        snprintf(val, sizeof val, " final val_loss %.4f", r->last_val);
    printf("done: steps %ld tokens %ld tokens/s %.0f bytes/step %.0f final loss %.4f%s\n",
           r->steps_done, r->tokens, secs > 0 ? (double)r->tokens / secs : 0,
           r->bytes_total / steps, r->last_loss, val);
    printf("adapter written to %s\n", r->t->out);
    return 0;
}
