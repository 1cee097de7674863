/* cmd_train.c - `pslora train`: one process, or the parameter server under mpirun. */
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "train.h"

/* Threads per rank: --threads, else the node's cores / ranks on the node. */
static int threads_per_rank(const train_config *t, MPI_Comm world)
{
    if (t->threads > 0)
        return (int)t->threads;
    MPI_Comm node;
    int local = 1;
    MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = (int)(cores / local);
    return n < 1 ? 1 : n;
}

/* Flags are parsed before MPI starts: under mpirun only the first rank
 * (Open MPI's OMPI_COMM_WORLD_RANK) prints a usage error. */
static int first_rank(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    return !r || strcmp(r, "0") == 0;
}

int cmd_train(int argc, char **argv)
{
    train_config t;
    pl_err e;
    int rc = trainconf_parse(&t, argc, argv, &e);
    if (rc)
        return rc > 0 ? 0 : first_rank() ? cli_fail("train", e.msg, 2) : 2;
    int provided, world, rank;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    omp_set_num_threads(threads_per_rank(&t, MPI_COMM_WORLD));
    /* every rank counts the epoch the same way (servers need --steps too) */
    int workers = world == 1 ? 1 : world - (int)t.servers;
    if (trainconf_set_workers(&t, workers, &e) != 0)
        rc = rank == 0 ? cli_fail("train", e.msg, 2) : 2;   /* a usage error, as G is a flag */
    else if (trainconf_resolve_data(&t, workers, &e) != 0)
        rc = rank == 0 ? cli_fail("train", e.msg, 1) : 1;
    else if (world == 1)
        rc = train_local(&t);
    else
        rc = train_ps(&t, MPI_COMM_WORLD);
    MPI_Finalize();
    return rc;
}
