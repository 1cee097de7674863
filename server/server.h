/* server.h - the server role: adapter weights and optimizer state of the
 * tensors this server owns, and the update of one step.
 *
 * Update of step t (0-based) from the workers' summed gradients G over n
 * tokens:  g = G / n;  c = clip factor from the global norm of g (all servers);
 * p <- optimizer(p, c*g, lr(t)).  A step whose global norm is not finite is
 * skipped: adapter and optimizer state stay as they were.  g is clipped in
 * place (it is the server's scratch). */
#ifndef PSLORA_SERVER_H
#define PSLORA_SERVER_H

#include <stddef.h>

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

/* Divides the owned ranges of g by ntok in place and returns their squared norm. */
double server_scale(const server *s, float *g, long ntok);
/* Applies the update of `step` with the scaled gradient g and the global
 * squared norm; returns 1 when applied, 0 when skipped (non-finite). */
int server_apply(server *s, float *g, double global_sq_norm, long step);

/* Assigns tensors to n servers: a deterministic greedy balance of element
 * counts (largest first, ties by id, to the least loaded server, ties by
 * the lower server).  owner[id] receives the server index. */
void server_assign(const lora_layout *L, int n_servers, int *owner);

#endif
