/* train.h - the training loops and what they share: the output directory,
 * metrics, progress line, final adapter and summary line. */
#ifndef PSLORA_TRAIN_H
#define PSLORA_TRAIN_H

#include <mpi.h>

#include "checkpoint.h"
#include "lora.h"
#include "metrics.h"
#include "msg.h"
#include "trainconf.h"

/* One process doing both roles (world size 1). */
int train_local(const train_config *t);
/* The parameter server: ranks 0..S-1 servers, the rest workers. */
int train_ps(const train_config *t, MPI_Comm comm);

typedef struct {
    const train_config *t;
    metrics_log log;
    double t_start;
    long steps_done, tokens;
    double last_loss, last_val;
    double bytes_total;
    double rss_mb;      /* the largest peak resident memory of any rank (set before run_finish) */
    double rss_server_mb, rss_worker_mb;   /* the same over the server / worker ranks */
} run_log;

/* This process's peak resident memory in MB (getrusage). */
double run_peak_rss_mb(void);

/* Creates OUT (refused when it holds files, unless resuming), writes
 * run.json and opens metrics.jsonl.  Resuming at step `start`, the metrics
 * rows past `start` (logged by the killed run after its checkpoint) are
 * dropped first, so that the history reads as one run.  Call after every
 * input was checked. */
int run_begin(run_log *r, const train_config *t, int world, int n_workers, long start,
              pl_err *e);
/* Logs a step: metrics row (every --log-every steps and at evaluations) and progress. */
void run_step(run_log *r, metrics_row *row);
/* Writes the final adapter into OUT (with --full the model m, whose trained
 * weights must hold params: a Hugging Face model directory), the summary
 * record of metrics.jsonl, and prints the summary line. */
int run_finish(run_log *r, const lora_layout *L, const model *m, const float *params,
               pl_err *e);

/* The run's fingerprint as a checkpoint records it: the Hello entries
 * (fp_build) plus "workers" (the batch geometry is workers x --batch). */
typedef struct {
    msg_hello h;
    ckpt_kv *kv;
    int n;
} run_fp;

int run_fingerprint(run_fp *f, const train_config *t, const model *m, const lora_layout *L,
                    int workers, pl_err *e);
void run_fingerprint_free(run_fp *f);

/* "pslora train: warning: <line>" on stderr (server_resume's warn). */
void run_warn(const char *line);

#endif
