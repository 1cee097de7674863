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
 * place (it is the server's scratch).
 *
 * Storage is per server: params, m and v hold only the tensors this server
 * owns, packed in tensor-id order (tensor id at at[id]), n_own floats each,
 * so a server's memory shrinks as 1/S with S servers.  A server owning every
 * tensor (one server, one process) has the adapter's own flat layout
 * (at[id] = lora_tensor_offset).  Gradients passed to server_scale and
 * server_apply are in the same packed layout. */
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
    float *params;           /* the owned tensors, packed: tensor id at at[id] */
    float *m, *v;            /* their optimizer state, same layout */
    size_t n_own;            /* floats in params, m and v */
    size_t *at;              /* per tensor id: its start in params (owned ids only) */
    unsigned char *owned;    /* per tensor id */
    long version;            /* updates applied */
    long updates;            /* optimizer step count t (for bias correction) */
    long skipped, consecutive_skips;
} server;

/* Takes ownership of params, the whole flat adapter (L's layout), and keeps
 * only the owned tensors (freeing params when it packs them).  owned == NULL
 * means every tensor. */
int server_init(server *s, const train_config *t, const lora_layout *L, float *params,
                const unsigned char *owned, pl_err *e);
void server_free(server *s);
/* Copies the owned tensors of the packed vector x into full (L's flat layout). */
void server_unpack(const server *s, const float *x, float *full);
/* After the final gather: full (the whole adapter, taken over) replaces the
 * state; m and v are dropped; s owns every tensor from then on. */
void server_gathered(server *s, float *full);

/* Divides g (packed) by ntok in place and returns its squared norm
 * (ntok = 0: g, which is 0 then, stays 0). */
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
    struct model_s *model;                /* --full: the model the checkpoint writes (its
                                             trained weights are pointed at the state) */
} server_ckpt;

/* 1 when a checkpoint is due after `done` steps: every --checkpoint-every
 * steps and after the last step. */
int server_checkpoint_due(const train_config *t, long done);

/* Where a checkpoint's tensors are: per tensor id, its weights, m and v. */
typedef struct {
    float **p, **m, **v;
} server_views;

/* Writes OUT/checkpoints/step-<done> (all or nothing) from the views x of
 * every tensor (rank 0 points them into its own state and what it received
 * from the other servers).  --full: c->model's trained weights are pointed
 * at x->p for the save (and re-attached to its trained vector, if it has
 * one, after it). */
int server_checkpoint_views(const server *s, const server_ckpt *c, long done,
                            const server_views *x, pl_err *e);
/* server_checkpoint_views from s's own state; s must own every tensor. */
int server_checkpoint(const server *s, const server_ckpt *c, long done, pl_err *e);
/* Allocates x's arrays (free with server_views_free) pointing at the owned
 * tensors of s; the others NULL. */
int server_views_own(const server *s, server_views *x, pl_err *e);
void server_views_free(server_views *x);

/* Loads the checkpoint directory dir into s (its owned tensors, the counters)
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
