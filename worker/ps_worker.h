/* ps_worker.h - a worker rank under mpirun.
 *
 * Per step: compute the gradient of the summed loss on this worker's
 * micro-batch, push each server the slices it owns (GradPush), then take
 * the new adapter from every server (AdapterUpdate).  Worker 0 also
 * evaluates the validation loss at the --eval-every steps and sends it to
 * rank 0.  A worker waits up to 2 x --timeout for an update (the servers
 * wait --timeout for each push and so name a stuck worker first). */
#ifndef PSLORA_PS_WORKER_H
#define PSLORA_PS_WORKER_H

#include <mpi.h>

#include "worker.h"

typedef struct {
    MPI_Comm world;
    int S, W, rank;
    const int *owner;     /* tensor id -> server */
    long start;           /* first step (0, or the checkpoint's step on --resume) */
} ps_worker_env;

int ps_worker_run(worker *w, const ps_worker_env *env, pl_err *e);

#endif
