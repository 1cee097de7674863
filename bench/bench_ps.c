/* bench_ps.c - the parameter server's exchange, point to point against
 * collectives, for adapter-sized float vectors.
 *
 *   mpirun -np P bench/bench_ps [floats...]      (rank 0 = server, rest workers)
 *
 * p2p:  each worker MPI_Isends its vector to rank 0; rank 0 receives them in
 *       worker-rank order, sums in that order, then MPI_Isends the result to
 *       every worker (what ps_server/ps_worker do, minus protobuf).
 * coll: MPI_Reduce(SUM) to rank 0 and MPI_Bcast back (summation order up to
 *       the MPI library).
 * Prints the best of 20 rounds of each, per size, in milliseconds. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static double p2p(float *buf, float *acc, float *tmp, int n, int rank, int P)
{
    double t0 = MPI_Wtime();
    if (rank == 0) {
        for (int w = 1; w < P; w++) {
            MPI_Recv(w == 1 ? acc : tmp, n, MPI_FLOAT, w, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (w > 1)
                for (int i = 0; i < n; i++)
                    acc[i] += tmp[i];
        }
        MPI_Request *r = malloc((size_t)P * sizeof *r);
        for (int w = 1; w < P; w++)
            MPI_Isend(acc, n, MPI_FLOAT, w, 2, MPI_COMM_WORLD, &r[w - 1]);
        MPI_Waitall(P - 1, r, MPI_STATUSES_IGNORE);
        free(r);
    } else {
        MPI_Send(buf, n, MPI_FLOAT, 0, 1, MPI_COMM_WORLD);
        MPI_Recv(buf, n, MPI_FLOAT, 0, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    return MPI_Wtime() - t0;
}

static double coll(float *buf, float *acc, int n, int rank)
{
    double t0 = MPI_Wtime();
    /* the server contributes zeros */
    MPI_Reduce(buf, acc, n, MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Bcast(rank == 0 ? acc : buf, n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    return MPI_Wtime() - t0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, P;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    int sizes[8] = {294912, 2359296}, ns = 2;   /* GPT-2 124M r=8 c_attn; r=16 all linears */
    if (argc > 1)
        for (ns = 0; ns < argc - 1 && ns < 8; ns++)
            sizes[ns] = atoi(argv[ns + 1]);
    if (rank == 0)
        printf("%d workers; best of 20 rounds\n%12s %10s %12s %12s\n", P - 1, "floats", "MB",
               "p2p ms", "coll ms");
    for (int s = 0; s < ns; s++) {
        int n = sizes[s];
        float *buf = calloc((size_t)n, sizeof(float)), *acc = calloc((size_t)n, sizeof(float));
        float *tmp = calloc((size_t)n, sizeof(float));
        double best_p = 1e9, best_c = 1e9;
        for (int k = 0; k < 20; k++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double a = p2p(buf, acc, tmp, n, rank, P);
            MPI_Barrier(MPI_COMM_WORLD);
            double b = coll(buf, acc, n, rank);
            MPI_Allreduce(MPI_IN_PLACE, &a, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            MPI_Allreduce(MPI_IN_PLACE, &b, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            best_p = a < best_p ? a : best_p;
            best_c = b < best_c ? b : best_c;
        }
        if (rank == 0)
            printf("%12d %10.2f %12.3f %12.3f\n", n, n * 4.0 / 1e6, best_p * 1e3, best_c * 1e3);
        free(buf), free(acc), free(tmp);
    }
    MPI_Finalize();
    return 0;
}
