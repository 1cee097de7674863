/* server.h - the server role: adapter weights and optimizer state of the
 * tensors this server owns, and the update of one step.
 *
 * Update of step t (0-based) from the workers' summed gradients G over n
 * tokens:  g = G / n;  c = clip factor from the global norm of g (all servers);
 * p <- optimizer(p, c*g, lr(t)).  A step whose global norm is not finite is
 * skipped: adapter and optimizer state stay as they were.  A step with no
 * counted target (n = 0: every target of the global batch masked or padding)
 * is not applied either: callers skip server_apply, and it is not counted
 * as a skip (its metrics row has tokens 0 and loss null).  g is clipped in
 * place (it is the server's scratch). */
#ifndef PSLORA_SERVER_H
#define PSLORA_SERVER_H

#include <stddef.h>

#include "checkpoint.h"
#include "lora.h"
#include "optim.h"
#include "trainconf.h"

typedef struct {
    const train_config *t;
    const lora_layout *L;
    float *params;           /* full flat vector; only owned ranges are updated */
    float *m, *v;            /* optimizer state, full size (owned ranges used) */
    unsigned char *owned;    /* per tensor id */
    long version;            /* updates applied */
    long updates;            /* optimizer step count t (for bias correction) */
    long skipped, consecutive_skips;
} server;

/* Takes ownership of params.  owned == NULL means every tensor. */
int server_init(server *s, const train_config *t, const lora_layout *L, float *params,
                const unsigned char *owned, pl_err *e);
void server_free(server *s);

/* Divides the owned ranges of g by ntok in place and returns their squared
 * norm (ntok = 0: g, which is 0 then, stays 0). */
double server_scale(const server *s, float *g, long ntok);
/* Applies the update of `step` with the scaled gradient g and the global
 * squared norm; returns 1 when applied, 0 when skipped (non-finite). */
int server_apply(server *s, float *g, double global_sq_norm, long step);

/* Assigns tensors to n servers: a deterministic greedy balance of element
 * counts (largest first, ties by id, to the least loaded server, ties by
 * the lower server).  owner[id] receives the server index.  Balance: the
 * heaviest server's load exceeds the lightest's by at most the largest
 * tensor (so it is at most total/n + largest); with n >= tensors each
 * server holds at most one.  Tested in tests/test_server_assign.c. */
void server_assign(const lora_layout *L, int n_servers, int *owner);

/* ---- checkpoints (see common/io/checkpoint.h and docs/checkpoints.md) ---- */

/* What a checkpoint records besides the server's state. */
typedef struct {
    const char *out;                      /* OUT */
    const struct model_config_s *cfg;     /* for adapter_config.json */
    const ckpt_kv *fp;                    /* the run's fingerprint (+ "workers") */
    int n_fp;                             /* 0: the fingerprint is not checked on load */
    long workers;
    const struct model_s *model;          /* --full: the model the checkpoint writes, its
                                             trained weights holding the server's params */
} server_ckpt;

/* 1 when a checkpoint is due after `done` steps: every --checkpoint-every
 * steps and after the last step. */
int server_checkpoint_due(const train_config *t, long done);

/* Writes OUT/checkpoints/step-<done> (all or nothing) from s->params, s->m
 * and s->v, which must hold every tensor (rank 0 gathers them first). */
int server_checkpoint(const server *s, const server_ckpt *c, long done, pl_err *e);

/* Loads the checkpoint directory dir into s (every tensor, the counters)
 * and *step.  First checks trainer_state.json against c->fp (unless n_fp is
 * 0) and --steps: a checkpoint this run may not continue sets *refused. */
int server_load_checkpoint(server *s, const server_ckpt *c, const char *dir, long *step,
                           int *refused, pl_err *e);

/* --resume: loads the newest checkpoint of c->out that loads.  One that
 * fails to load is reported through warn(line) and the next older one is
 * tried; a refused one stops the search.  *step = 0 and dir = "" when OUT
 * is a run without checkpoints (warned too). */
int server_resume(server *s, const server_ckpt *c, long *step, char *dir, size_t len,
                  void (*warn)(const char *line), pl_err *e);

#endif
