/* metrics.h - OUT/metrics.jsonl rows and the progress line.
 *
 * One JSON object per logged step ("type": "step") and per evaluation
 * ("type": "eval"), written with cJSON and flushed at once so a killed run
 * keeps every row it logged. */
#ifndef PSLORA_METRICS_H
#define PSLORA_METRICS_H

#include <stdio.h>

#include "err.h"

typedef struct {
    long step;             /* steps done after this one (1-based) */
    double epoch;          /* epochs done after it: entries read / entries per epoch */
    double loss;           /* mean train loss of the step */
    double val_loss;       /* NaN when not evaluated at this step */
    double lr;
    double tokens_per_s;   /* over the step's wall time */
    long tokens;           /* counted targets of the step (all workers) */
    double bytes_push, bytes_pull;   /* all workers together */
    double t_compute, t_comm, t_wait, t_step;   /* seconds; means over the workers */
    double t_compute_max;  /* the slowest worker's compute (0: take t_compute) */
    double stale_max, stale_mean;    /* SSP/ASP: versions behind; 0 under BSP */
    long skipped;          /* non-finite steps skipped so far */
    double grad_norm;
} metrics_row;

typedef struct {
    FILE *f;
} metrics_log;

/* Opens OUT/metrics.jsonl (append keeps a resumed run's history). */
int metrics_open(metrics_log *m, const char *out_dir, int append, pl_err *e);
void metrics_step(metrics_log *m, const metrics_row *r);
void metrics_eval(metrics_log *m, long step, double val_loss, long tokens);

/* The run's totals, as the summary line prints them.  Memory: peak resident
 * set (getrusage ru_maxrss) in MB, the largest over all ranks, over the
 * server ranks and over the worker ranks (one process: all three its own). */
typedef struct {
    long steps, tokens;
    double bytes_per_step;
    size_t trained_params;
    double mem_mb, mem_server_mb, mem_worker_mb;
} metrics_summary_row;

/* {"type":"summary","steps_done":..,"tokens_total":..,"bytes_per_step":..,
 *  "trained_params":..,"mem_rank_mb":..,"mem_server_mb":..,"mem_worker_mb":..}
 * No "step" key: a resumed run drops it with the rows past its checkpoint. */
void metrics_summary(metrics_log *m, const metrics_summary_row *s);
void metrics_close(metrics_log *m);

/* "step 10/100 loss 3.2100 val 3.3000 lr 2e-04 epoch 0.50 tok/s 1234 eta 0:12"
 * on stderr. */
void metrics_progress(const metrics_row *r, long total_steps, double elapsed_s);

#endif
