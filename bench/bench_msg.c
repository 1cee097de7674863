/* bench_msg.c - cost of the GradPush codec against a plain memcpy.
 *
 * For pushes of 1M and 10M floats (split into 64 tensors, as an adapter is),
 * times with warmed-up buffers, best of 20:
 *   memcpy         the payload bytes from one buffer to another
 *   encode         msg_encode_push_flat into a reused msg_buf
 *   decode         msg_decode_push without a destination (unpack + validate)
 *   decode+copy    msg_decode_push into the flat vector (what a server does)
 * and prints a table in ms, GB/s of payload, and multiples of memcpy.
 * encode must be about one memcpy (the floats are copied once, straight from
 * the caller's vector); decode+copy about two (unpack, then into dst).
 * Usage: bench_msg [reps]   (no MPI needed) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msg.h"

#define N_TENSORS 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    size_t numel[N_TENSORS], offset[N_TENSORS];
    msg_layout L;
    float *grad, *dst;
    msg_buf out, scratch;
    msg_expect x;
    msg_push_hdr h;
} bench;

/* n floats split into N_TENSORS near-equal tensors; buffers touched once. */
static int bench_init(bench *b, size_t n)
{
    memset(b, 0, sizeof *b);
    size_t off = 0;
    for (int i = 0; i < N_TENSORS; i++) {
        b->numel[i] = n / N_TENSORS + ((size_t)i < n % N_TENSORS);
        b->offset[i] = off;
        off += b->numel[i];
    }
    b->L = (msg_layout){N_TENSORS, b->numel, b->offset};
    b->grad = malloc(n * sizeof(float));
    b->dst = malloc(n * sizeof(float));
    if (!b->grad || !b->dst)
        return -1;
    for (size_t i = 0; i < n; i++) {
        b->grad[i] = (float)(i % 1000) * 1e-3f - 0.5f;
        b->dst[i] = 0;
    }
    b->x = (msg_expect){&b->L, NULL, 1, 1, 1, 1};
    b->h = (msg_push_hdr){.step = 1, .version = 1, .rank = 1, .tokens = 4096, .loss_sum = 1234.5,
                         .sq_norm = 0.5, .t_compute = 0.1, .t_comm = 0.01, .t_wait = 0.001};
    return 0;
}

static void bench_free(bench *b)
{
    free(b->grad);
    free(b->dst);
    msg_buf_free(&b->out);
    msg_buf_free(&b->scratch);
}

enum { OP_MEMCPY, OP_ENCODE, OP_DECODE, OP_DECODE_COPY, N_OPS };
static const char *op_name[N_OPS] = {"memcpy", "encode", "decode", "decode+copy"};

/* Runs one operation once; -1 on a codec error (printed). */
static int run_op(bench *b, int op, size_t n)
{
    pl_err e;
    msg_push_hdr g;
    int rc = 0;
    switch (op) {
    case OP_MEMCPY:
        memcpy(b->dst, b->grad, n * sizeof(float));
        break;
    case OP_ENCODE:
        rc = msg_encode_push_flat(&b->out, &b->h, &b->L, NULL, b->grad, &e);
        break;
    case OP_DECODE:
        rc = msg_decode_push(&b->scratch, b->out.data, b->out.len, 1, &b->x, &g, NULL, &e);
        break;
    case OP_DECODE_COPY:
        rc = msg_decode_push(&b->scratch, b->out.data, b->out.len, 1, &b->x, &g, b->dst, &e);
        break;
    }
    if (rc)
        fprintf(stderr, "bench_msg: %s\n", e.msg);
    return rc;
}

/* Best time of each operation over reps rounds; the operations take turns
 * within a round so that a busy spell of the machine hits them all alike.
 * One warm-up round first.  -1 on a codec error. */
static int best_of(bench *b, size_t n, int reps, double *best)
{
    for (int op = 0; op < N_OPS; op++) {
        if (run_op(b, op, n))
            return -1;
        best[op] = 1e30;
    }
    for (int r = 0; r < reps; r++)
        for (int op = 0; op < N_OPS; op++) {
            double t0 = now();
            if (run_op(b, op, n))
                return -1;
            double t = now() - t0;
            if (t < best[op])
                best[op] = t;
        }
    return 0;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1)
        reps = 1;
    const size_t sizes[] = {1u << 20, 10u << 20};
    printf("GradPush codec, %d tensors, best of %d\n", N_TENSORS, reps);
    printf("%10s %12s %10s %10s %9s\n", "floats", "op", "ms", "GB/s", "x memcpy");
    for (int s = 0; s < 2; s++) {
        size_t n = sizes[s];
        bench b;
        if (bench_init(&b, n)) {
            fprintf(stderr, "bench_msg: out of memory\n");
            return 1;
        }
        double t[N_OPS];
        if (best_of(&b, n, reps, t))
            return 1;
        if (memcmp(b.dst, b.grad, n * sizeof(float)) != 0) {
            fprintf(stderr, "bench_msg: decoded floats differ\n");
            return 1;
        }
        for (int op = 0; op < N_OPS; op++)
            printf("%10zu %12s %10.3f %10.2f %9.2f\n", n, op_name[op], t[op] * 1e3,
                   (double)(n * sizeof(float)) / t[op] * 1e-9, t[op] / t[OP_MEMCPY]);
        printf("%10s %12s %10zu bytes on the wire (payload %zu)\n", "", "message", b.out.len,
               n * sizeof(float));
        bench_free(&b);
    }
    return 0;
}
