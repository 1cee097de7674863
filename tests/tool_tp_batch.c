/* tool_tp_batch.c - drives tp_batch (common/ps/transport.h) on 3 ranks
 * (test tool for tests/cli_transport.sh).
 *
 *   mpiexec -np 3 tool_tp_batch order|silent
 *
 * Rank 0 receives one message from each of ranks 1 and 2 with a tp_batch,
 * waiting for rank 1's first; rank k sends N + k bytes, byte j = (j*7 + k) % 251.
 *   order:  rank 2 sends first, and rank 1 sends only once rank 2's send has
 *           completed.  The messages are past every eager limit, so that send
 *           completes only when rank 0 has posted its receive: a receiver that
 *           took rank 1's message before posting rank 2's would wait forever
 *           (here: fail with the timeout line).  Two rounds (N = 1 MiB, then
 *           64 KiB into the same buffers); rank 0 checks every byte and length
 *           and prints "ok".
 *   silent: rank 2 sends nothing; rank 0 (timeout 1 s) must fail on it with
 *           "no message from rank 2 within 1 s (--timeout)".
 * Errors: one line "tool_tp_batch: ..." on stderr, exit 1 (MPI_Abort). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "transport.h"

enum { TAG = 77, TAG_GO = 78 };

static void die(const char *msg)
{
    fprintf(stderr, "tool_tp_batch: %s\n", msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void fill(msg_buf *b, int k, size_t n)
{
    for (size_t j = 0; j < n; j++)
        b->data[j] = (unsigned char)((j * 7 + (size_t)k) % 251);
    b->len = n;
}

/* Rank k (1 or 2): its message of one round; rank 2 then tells rank 1 to go. */
static void sender(int k, size_t n, int silent, msg_buf *b, msg_buf *go)
{
    pl_err e;
    MPI_Request r;
    if (k == 2 && silent)
        return;
    if (k == 1 && !silent && tp_recv(MPI_COMM_WORLD, 2, TAG_GO, go, 10, NULL, NULL, NULL, &e) != 0)
        die(e.msg);
    fill(b, k, n + (size_t)k);
    tp_isend(MPI_COMM_WORLD, 0, TAG, b, &r);
    if (tp_wait(&r, 1, 10, "message to rank 0", &e) != 0)
        die(e.msg);
    if (k == 2) {
        go->len = 1;
        tp_isend(MPI_COMM_WORLD, 1, TAG_GO, go, &r);
        if (tp_wait(&r, 1, 10, "go to rank 1", &e) != 0)
            die(e.msg);
    }
}

static void receiver(tp_batch *t, size_t n, double timeout)
{
    pl_err e;
    tp_batch_start(t, MPI_COMM_WORLD, 1, TAG, timeout);
    for (int i = 0; i < 2; i++) {
        if (tp_batch_wait(t, i, NULL, &e) != 0)
            die(e.msg);
        const msg_buf *b = &t->buf[i];
        if (b->len != n + (size_t)(i + 1))
            die("a message has the wrong length");
        for (size_t j = 0; j < b->len; j++)
            if (b->data[j] != (unsigned char)((j * 7 + (size_t)(i + 1)) % 251))
                die("a message has a wrong byte");
    }
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size, silent = argc == 2 && strcmp(argv[1], "silent") == 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 3 || argc != 2 || (!silent && strcmp(argv[1], "order") != 0))
        die("usage: mpiexec -np 3 tool_tp_batch order|silent");
    static unsigned char data[(1 << 20) + 2], godata[16];
    msg_buf b = {data, 0, sizeof data, NULL, 0}, go = {godata, 0, sizeof godata, NULL, 0};
    size_t rounds[2] = {1 << 20, 1 << 16};
    pl_err e;
    tp_batch t;
    if (rank == 0 && tp_batch_init(&t, 2, &e) != 0)
        die(e.msg);
    for (int r = 0; r < (silent ? 1 : 2); r++) {
        if (rank == 0)
            receiver(&t, rounds[r], silent ? 1 : 10);
        else
            sender(rank, rounds[r], silent, &b, &go);
    }
    if (rank == 0) {
        tp_batch_free(&t);
        printf("ok\n");
    }
    MPI_Finalize();
    return 0;
}
