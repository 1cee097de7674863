/* node_shared.c - the node's shared bf16 weights (see node_shared.h). */
#include "node_shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "transport.h"

enum { NS_IDLE, NS_PRIVATE, NS_SHARED };

static double mb(size_t bytes) { return (double)bytes / 1e6; }

/* Waits for a node collective at most --timeout; past it, as train_ps does
 * for its own collectives, names what it waited for and ends the job. */
static void node_wait(ns_node *n, MPI_Request *q, const char *what)
{
    pl_err e;
    if (tp_wait(q, 1, n->timeout, what, &e) != 0) {
        fprintf(stderr, "pslora train: rank %d: %s\n", n->world_rank, e.msg);
        MPI_Abort(n->world, 1);
    }
}

/* 1 when the window's backing file fits, else 0 with the reason in e.
 * Open MPI keeps a shared window in a file of its backing directory (MCA
 * osc_sm_backing_directory, default /dev/shm) that node rank 0 creates;
 * when it cannot, the other ranks wait inside MPI_Win_allocate_shared
 * forever (Open MPI 4.1), so the room is looked at first.  Other MPIs: 1. */
static int room_for(size_t bytes, pl_err *e)
{
#ifdef OPEN_MPI
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    struct statvfs sv;
    if (!dir || !*dir)
        dir = "/dev/shm";
    if (statvfs(dir, &sv) != 0 || access(dir, W_OK) != 0) {
        pl_errf(e, "Open MPI's window directory %s (osc_sm_backing_directory): %s", dir,
                strerror(errno));
        return 0;
    }
    double free_b = (double)sv.f_bavail * (double)sv.f_frsize;
    if (free_b < (double)bytes + 16e6) {   /* a margin for Open MPI's other segments */
        pl_errf(e, "Open MPI's window directory %s has %.1f MB free, the weights need %.1f MB",
                dir, free_b / 1e6, mb(bytes));
        return 0;
    }
#else
    (void)bytes, (void)e;
#endif
    return 1;
}

/* The size agreement: every worker of the node says how many bytes it asks
 * to share (0: none); *lo and *hi become the smallest and largest asked,
 * n->filler the world rank of node rank 0.  Returns node rank 0's verdict
 * on the room for them (room_for; 0 when it asked for none). */
static int agree(ns_node *n, long long want, long long *lo, long long *hi, pl_err *why)
{
    int first = n->node_rank == 0;
    pl_err no_room = {""};
    long long room = first && want > 0 ? room_for((size_t)want, &no_room) : 0;
    long long mine[4] = {want, -want, first ? n->world_rank : -1, room}, all[4];
    MPI_Request q;
    MPI_Iallreduce(mine, all, 4, MPI_LONG_LONG, MPI_MAX, n->node, &q);
    node_wait(n, &q, "start-up: the bf16 weights' size on this node");
    *hi = all[0], *lo = -all[1], n->filler = (int)all[2];
    n->state = NS_PRIVATE;
    if (*lo == *hi && *lo > 0 && !all[3]) {   /* the sizes agree, the room does not */
        if (first)
            *why = no_room;
        else
            pl_errf(why, "rank %d found no room for the shared window (see its warning)",
                    n->filler);
    }
    return (int)all[3];
}

/* The window: all of it on node rank 0.  0 when every worker of the node
 * has it and sees rank 0's base (*base); else -1 with the reason in e. */
static int window_open(ns_node *n, size_t bytes, void **base, pl_err *e)
{
    void *mine = NULL;
    MPI_Aint size = 0;
    int unit, len, st[2] = {0, 0}, all[2];   /* created, usable */
    char why[MPI_MAX_ERROR_STRING] = "";
    int rc = MPI_Win_allocate_shared(n->node_rank == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL,
                                     n->node, &mine, &n->win);
    if (rc == MPI_SUCCESS) {
        st[0] = 1;
        MPI_Win_set_errhandler(n->win, MPI_ERRORS_RETURN);
        rc = MPI_Win_shared_query(n->win, 0, &size, &unit, base);
    }
    st[1] = rc == MPI_SUCCESS && *base && (size_t)size >= bytes;
    if (rc != MPI_SUCCESS)
        MPI_Error_string(rc, why, &len);
    MPI_Request q;
    MPI_Iallreduce(st, all, 2, MPI_INT, MPI_MIN, n->node, &q);
    node_wait(n, &q, "start-up: the bf16 weights' shared window");
    /* a window only some ranks made cannot be freed collectively: it stays,
     * unused (no MPI is known to fail on some ranks only) */
    n->win_kept = all[0];
    if (all[1])
        return 0;
    if (all[0]) {
        MPI_Win_free(&n->win);
        n->win_kept = 0;
    }
    if (why[0])
        return pl_errf(e, "MPI_Win_allocate_shared of %.1f MB failed (%s)", mb(bytes), why);
    return pl_errf(e, "the shared window of %.1f MB could not be set up on %s", mb(bytes),
                   st[1] ? "another worker" : "this rank");
}

/* The private copy, with the line that says why. */
static void *private_copy(ns_node *n, size_t bytes, int *must_fill, const char *why,
                          pl_err *e)
{
    if (n->private_env)
        printf("bf16 weights: %.1f MB private to rank %d (PSLORA_BF16_PRIVATE)\n", mb(bytes),
               n->world_rank);
    else
        fprintf(stderr, "pslora train: warning: rank %d: bf16 weights not shared on this node: "
                        "%s; this rank keeps a private copy\n", n->world_rank, why);
    fflush(stdout);
    n->own = aligned_alloc(64, bytes);
    if (!n->own)
        pl_errf(e, "bf16 weights: out of memory (%.1f MB)", mb(bytes));
    *must_fill = 1;
    return n->own;
}

/* model_bf16_store.alloc: bytes is a multiple of 64 (model_bf16.c). */
static void *ns_alloc(void *ctx, size_t bytes, int *must_fill, pl_err *e)
{
    ns_node *n = ctx;
    long long lo, hi;
    pl_err why = {"the workers on this node ask for different sizes (other models or "
                  "--compute, or a rank that failed to load)"};
    if (n->state != NS_IDLE) {
        pl_errf(e, "bf16 weights: the node's store was asked twice");
        return NULL;
    }
    int room = agree(n, n->private_env ? 0 : (long long)bytes, &lo, &hi, &why);
    n->bytes = bytes;
    void *base = NULL;
    if (lo == hi && lo > 0 && room && window_open(n, bytes, &base, &why) == 0) {
        n->state = NS_SHARED;
        *must_fill = n->node_rank == 0;
        return base;
    }
    return private_copy(n, bytes, must_fill, why.msg, e);
}

/* Orders this rank's memory accesses to the window against the other
 * ranks' (MPI's shared-memory model: MPI_Win_sync inside a passive-target
 * epoch; a fence on x86). */
static void win_sync(ns_node *n)
{
    MPI_Win_lock_all(MPI_MODE_NOCHECK, n->win);
    MPI_Win_sync(n->win);
    MPI_Win_unlock_all(n->win);
}

/* model_bf16_store.done: every worker of the node states its outcome; the
 * copies are complete when all succeeded. */
static int ns_done(void *ctx, int ok, pl_err *e)
{
    ns_node *n = ctx;
    if (n->state != NS_SHARED)
        return ok ? 0 : -1;
    int mine[2] = {ok, n->node_rank == 0 ? ok : 1}, all[2];
    MPI_Request q;
    win_sync(n);   /* the filler's copies out ... */
    MPI_Iallreduce(mine, all, 2, MPI_INT, MPI_MIN, n->node, &q);
    node_wait(n, &q, "start-up: the node's shared bf16 weights");
    win_sync(n);   /* ... before the readers' first load */
    if (!all[1])
        return pl_errf(e, "bf16 weights: rank %d could not write this node's shared copy",
                       n->filler);
    if (!all[0])
        return pl_errf(e, "bf16 weights: a worker on this node failed to set up its share");
    if (n->node_rank == 0) {
        printf("bf16 weights: %.1f MB shared by %d rank%s on this node\n", mb(n->bytes),
               n->node_size, n->node_size == 1 ? "" : "s");
        fflush(stdout);
    }
    return 0;
}

void ns_init(ns_node *n, MPI_Comm world, int is_worker, double timeout)
{
    const char *priv = getenv("PSLORA_BF16_PRIVATE");
    memset(n, 0, sizeof *n);
    n->world = world, n->timeout = timeout, n->win = MPI_WIN_NULL;
    n->private_env = priv && !strcmp(priv, "1");
    MPI_Comm_rank(world, &n->world_rank);
    MPI_Comm_split_type(world, is_worker ? MPI_COMM_TYPE_SHARED : MPI_UNDEFINED, n->world_rank,
                        MPI_INFO_NULL, &n->node);
    if (n->node != MPI_COMM_NULL) {
        MPI_Comm_rank(n->node, &n->node_rank);
        MPI_Comm_size(n->node, &n->node_size);
        MPI_Comm_set_errhandler(n->node, MPI_ERRORS_RETURN);
    }
    n->store = (model_bf16_store){ns_alloc, ns_done, n};
}

const model_bf16_store *ns_store(ns_node *n)
{
    return n->node != MPI_COMM_NULL ? &n->store : NULL;
}

void ns_settle(ns_node *n)
{
    long long lo, hi;
    pl_err why;
    if (n->node != MPI_COMM_NULL && n->state == NS_IDLE)
        agree(n, 0, &lo, &hi, &why);
}

void ns_free(ns_node *n)
{
    if (n->win_kept)
        MPI_Win_free(&n->win);
    free(n->own);
    if (n->node != MPI_COMM_NULL)
        MPI_Comm_free(&n->node);
    memset(n, 0, sizeof *n);
    n->node = MPI_COMM_NULL;
}
