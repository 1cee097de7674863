/* trainconf.h - the settings of a training run (`pslora train` flags).
 *
 * Shared by the CLI, the worker and the server roles: the Hello handshake
 * compares the fingerprint of these settings across ranks, run.json records
 * them, and trainer_state.json keeps those that a resume must not change. */
#ifndef PSLORA_TRAINCONF_H
#define PSLORA_TRAINCONF_H

#include "err.h"
#include "model.h"
#include "model_bf16.h"
#include "optim.h"

typedef enum { SYNC_BSP, SYNC_SSP, SYNC_ASP } sync_mode;

typedef struct {
    const char *model_dir, *data, *val, *out, *targets, *init_adapter, *resume;
    const char *sync_name, *optimizer, *schedule, *compute, *fp32_matmul;
    long rank, batch, seq, steps, seed, servers, staleness, checkpoint_every, eval_every,
        eval_batches, threads, log_every, keep_checkpoints, max_skips, timeout;
    long global_batch;  /* --global-batch G: sequences per step over all workers, each of
                         * W takes G/W (trainconf_set_workers); 0: W x --batch */
    long epochs;        /* --epochs E (0: --steps counts); steps = ceil(E*N / (W*B)) */
    unsigned long epoch_entries;   /* N: entries of one epoch (trainconf_resolve_data) */
    float alpha, dropout;
    int rslora;
    int shuffle;        /* -1 default (on for sample data), 0 --no-shuffle, 1 --shuffle */
    int pack;           /* --pack: samples concatenated into full rows */
    int eval_every_given;
    int full;                     /* --full: train the model's weights (full.h) */
    const char *full_include;     /* --full-include: biases, norms ("") */
    unsigned full_bits;           /* ... parsed (FULL_*) */
    model_compute compute_mode;   /* --compute as decided on this rank (auto: bf16 only with AMX) */
    model_matmul matmul_mode;     /* --fp32-matmul as decided on this rank (fp32 compute only) */
    const char *task_name;        /* --task mlm|cls (bert; NULL: the config's head) */
    model_task task;              /* ... parsed (TASK_NONE when not given) */
    long num_labels;              /* --num-labels K (bert cls; 0: the config's) */
    long mask_id;                 /* --mask-id (bert mlm, encbatch.h) */
    const char *special_ids;      /* --special-ids (bert mlm) */
    sync_mode sync;
    opt_config opt;
} train_config;

/* Parses `pslora train` flags into t (defaults applied, cross-flag checks
 * done).  Returns 0, 1 for --help, -1 on a usage error (message in e). */
int trainconf_parse(train_config *t, int argc, char **argv, pl_err *e);

/* With --global-batch G: batch = G / n_workers, a usage error (-1) when W
 * does not divide G.  Without it, nothing to do.  Every rank calls it once
 * the world size is known, before trainconf_resolve_data. */
int trainconf_set_workers(train_config *t, int n_workers, pl_err *e);

/* 1 when the result depends on the worker count, so that a resume must keep
 * it: without --global-batch (each worker reads --batch), or with dropout
 * (each worker draws its mask from its own index). */
int trainconf_fixes_workers(const train_config *t);

/* Opens --data (tokens not checked: the workers do) to count the entries
 * of an epoch (epoch_entries, dataset.h) and, with --epochs E, sets
 * steps = ceil(E*N / (n_workers*batch)): every entry of the E epochs is
 * visited (the last step may run into epoch E+1).  Every rank calls it. */
int trainconf_resolve_data(train_config *t, int n_workers, pl_err *e);

/* Epochs done after `done` steps: done*W*B / N (metrics and progress). */
double trainconf_epoch(const train_config *t, long done, int n_workers);

/* 1 when the run's fp32 products go through oneDNN: fp32 compute and
 * --fp32-matmul deciding onednn. */
int trainconf_fp32_onednn(const train_config *t);

/* Key/value pairs of every setting that must agree across ranks (the Hello
 * fingerprint), written into keys/vals (at most max); returns the count. */
int trainconf_fingerprint(const train_config *t, char keys[][32], char vals[][256], int max);

/* 1 for the fingerprint keys a resumed run may change (--steps, --servers,
 * --resume); with --global-batch the fingerprint holds G instead of --batch,
 * and the worker count only when trainconf_fixes_workers; the cadence flags (--checkpoint-every, --eval-every, --log-every,
 * --keep-checkpoints, --timeout, --max-skips, --threads) are not in the
 * fingerprint at all.  Everything else in it fixes the result. */
int trainconf_resume_may_change(const char *key);

/* Writes OUT/run.json: every flag, versions, world size. */
int trainconf_write_run_json(const train_config *t, int world, int n_workers, pl_err *e);

const char *sync_name(sync_mode s);

/* Loads --model for compute c (a worker: --compute; a server: fp32):
 * model_load_in (model_bf16.h), or with --task / --num-labels the BERT head
 * they ask for (fp32 only; a model other than bert is refused).  A worker's
 * fp32 model then runs through oneDNN when --fp32-matmul decided so
 * (model_use_onednn_fp32; with_bwd is the worker's mark). */
int trainconf_load_model(const train_config *t, model *m, model_compute c, int with_bwd,
                         const model_bf16_store *store, pl_err *e);

struct lora_layout_s;
struct model_config_s;
/* The adapter of the run: from --init-adapter (its r, alpha, targets and
 * rslora win over the flags) or fresh from the flags with PEFT's init drawn
 * from --seed.  *params (malloc'd) may be NULL when only the layout is wanted. */
int trainconf_adapter(const train_config *t, const struct model_config_s *c,
                      struct lora_layout_s *L, float **params, pl_err *e);

/* What the run trains: the adapter (trainconf_adapter), or with --full the
 * model's own weights, laid out on m (full.h; m's weights are not attached
 * here).  *params (malloc'd) holds the initial values.  A BERT cls model
 * also trains its classifier (PEFT's modules_to_save): from --init-adapter
 * when it holds one, else the checkpoint's, else drawn as transformers
 * does from --seed (lora_init_classifier). */
int trainconf_trained(const train_config *t, model *m, struct lora_layout_s *L, float **params,
                      pl_err *e);

#endif
