/* node_shared.h - one bf16 copy of the frozen weights per node, shared by
 * the worker ranks on it (an MPI-3 shared-memory window; the blocks' plain
 * copies and the lm head's packed ones: model_bf16.h, mb_train_hold).
 *
 * A model_bf16_store (common/nn/model.h) for `pslora train` under mpirun.  The
 * worker ranks of one node (MPI_Comm_split_type MPI_COMM_TYPE_SHARED over
 * the workers; servers load the model for the start-up fingerprint only and
 * hold no bf16 copy) agree on the region's size; node rank 0 allocates all
 * of it (MPI_Win_allocate_shared, the others 0 bytes) and writes the
 * copies; the others find its base (MPI_Win_shared_query), only wrap it, and
 * wait until it is written.  Node rank 0 then prints on stdout
 *
 *   bf16 weights: 247.1 MB shared by 2 ranks on this node
 *
 * When the region cannot be shared, every worker of the node keeps a
 * private copy, as one process does, and says why in one line on stderr
 * ("pslora train: warning: rank R: bf16 weights not shared on this node:
 * ...; this rank keeps a private copy"):
 *   - the node's workers do not all ask for the same size (another model or
 *     --compute on some rank, or a rank that failed to load: the start-up
 *     checks then stop the run naming the difference);
 *   - no room for the window: under Open MPI, node rank 0 first checks that
 *     its backing directory (MCA osc_sm_backing_directory as the
 *     environment gives it, else /dev/shm) is writable with room for the
 *     weights plus 16 MB, because Open MPI 4.1 leaves the other ranks
 *     waiting forever inside MPI_Win_allocate_shared when the first one
 *     cannot make the file (a directory named only in an mca-params.conf
 *     is not seen, and a failure there hangs the start-up: the call has no
 *     deadline);
 *   - MPI_Win_allocate_shared fails on every rank.
 * PSLORA_BF16_PRIVATE=1 (for tests: the private copies give the same
 * adapter) makes a rank ask for nothing; it prints "bf16 weights: X MB
 * private to rank R (PSLORA_BF16_PRIVATE)" instead.
 *
 * Every collective runs on the node's worker communicator under --timeout
 * (past it the rank names what it waited for and aborts the job), but
 * MPI_Win_allocate_shared and MPI_Win_free, which block and are entered
 * only once every worker of the node has agreed, or at the end.  Each
 * worker of the node must take part in the size agreement exactly once:
 * through the store's alloc, or through ns_settle when its load never got
 * there (fp32, or a failure before the bf16 copies). */
#ifndef PSLORA_NODE_SHARED_H
#define PSLORA_NODE_SHARED_H

#include <mpi.h>
#include <stddef.h>

#include "err.h"
#include "model.h"
#include "model_bf16.h"

typedef struct {
    MPI_Comm world, node;   /* node: this node's workers (MPI_COMM_NULL on servers) */
    int world_rank, node_rank, node_size;
    double timeout;
    int state;              /* NS_IDLE, NS_PRIVATE or NS_SHARED */
    int private_env;        /* PSLORA_BF16_PRIVATE=1 */
    MPI_Win win;
    int win_kept;           /* a window this rank must free (collectively) */
    void *own;              /* the private fallback */
    size_t bytes;
    int filler;             /* world rank of node rank 0, who writes the copies */
    model_bf16_store store;
} ns_node;

/* Collective over world: the ranks with is_worker != 0 form their node's
 * group.  timeout: --timeout, for every later collective. */
void ns_init(ns_node *n, MPI_Comm world, int is_worker, double timeout);
/* The store to load the model with (NULL on a server). */
const model_bf16_store *ns_store(ns_node *n);
/* After the worker's load, whatever its outcome: takes part in the size
 * agreement (asking for nothing) if the load did not. */
void ns_settle(ns_node *n);
/* Frees the window (collective over the node's workers: every one of them
 * calls it, after freeing its model) or the private copy, and the group. */
void ns_free(ns_node *n);

#endif
