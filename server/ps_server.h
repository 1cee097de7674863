/* ps_server.h - a server rank under mpirun.
 *
 * BSP: for step t, receive every worker's GradPush in worker-rank order, sum
 * the owned slices in that order, divide by the step's tokens, clip by the
 * global norm (an allreduce over the server ranks), update, and send the new
 * version to every worker.
 * SSP/ASP: apply each push as it arrives (its own mean and its own norm for
 * clipping); reply to a worker's push of step t once every worker has pushed
 * at least t+1-s steps (SSP) or at once (ASP).  See docs/parameter-server.md.
 *
 * Each server keeps only the tensors it owns (server.h), its gradient sum
 * and scratch packed the same way.
 * Checkpoints (server_checkpoint_due): servers 1..S-1 send rank 0 their
 * slices of the adapter and of m and v (TP_TAG_CKPT), rank 0 writes them
 * with its own (never assembling a whole m or v).
 * Collectives among the servers wait at most --timeout seconds too.
 *
 * Rank 0 also writes the metrics and the final adapter. */
#ifndef PSLORA_PS_SERVER_H
#define PSLORA_PS_SERVER_H

#include <mpi.h>

#include "server.h"
#include "trainconf.h"

struct run_log_s;

typedef struct {
    MPI_Comm world, servers;  /* servers: ranks 0..S-1 */
    int S, W, rank;
    const int *owner;         /* tensor id -> server */
    /* rank 0 only: write a metrics row / an eval row (may be NULL elsewhere) */
    void (*on_step)(void *ctx, void *row);
    void (*on_eval)(void *ctx, long step, double val, long ntok);
    void *ctx;
    long start;               /* first step (0, or the checkpoint's on --resume) */
    const server_ckpt *ckpt;  /* rank 0: where and what checkpoints record */
} ps_server_env;

/* Runs the server role from env->start to the end; the final adapter is
 * gathered on rank 0 into s->params (server_gathered: the flat vector).
 * 0 or -1 (+ e naming the peer at fault). */
int ps_server_run(server *s, const ps_server_env *env, pl_err *e);

#endif
