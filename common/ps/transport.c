/* transport.c - see transport.h. */
#include "transport.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

/* Between polls: spin 50 rounds, then sleep 20 us for 150 rounds, then sleep
 * 1% of the time waited so far, at least 20 us and at most 10 ms.  An idle
 * rank so leaves the core to the others (oversubscribed runs: a server
 * waiting out a 4 s step wakes 100 times a second, not 1000), and the
 * delay it adds when the message comes is at most 1% of what it had waited
 * already. */
static void backoff(int *round, double waited)
{
    double s = waited * 0.01;
    s = s < 2e-5 ? 2e-5 : s > 1e-2 ? 1e-2 : s;
    long ns = *round < 50 ? 0 : *round < 200 ? 20000 : (long)(s * 1e9);
    if (ns) {
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
    }
    (*round)++;
}

static int grow(msg_buf *b, size_t n)
{
    if (b->cap >= n)
        return 0;
    unsigned char *d = realloc(b->data, n);
    if (!d)
        return -1;
    b->data = d;
    b->cap = n;
    return 0;
}

int tp_recv(MPI_Comm c, int src, int tag, msg_buf *b, double timeout, int *src_out,
            int *tag_out, double *waited, pl_err *e)
{
    double t0 = clock_now();
    int flag = 0, round = 0;
    MPI_Status st;
    for (;;) {
        MPI_Iprobe(src, tag, c, &flag, &st);
        if (flag)
            break;
        if (clock_now() - t0 > timeout) {
            if (src == MPI_ANY_SOURCE)
                return pl_errf(e, "no message from any peer within %.0f s (--timeout)", timeout);
            return pl_errf(e, "no message from rank %d within %.0f s (--timeout)", src, timeout);
        }
        backoff(&round, clock_now() - t0);
    }
    if (waited)
        *waited = clock_now() - t0;
    int count;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (grow(b, (size_t)count + 1) != 0)
        return pl_errf(e, "out of memory receiving %d bytes from rank %d", count, st.MPI_SOURCE);
    MPI_Recv(b->data, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, c, MPI_STATUS_IGNORE);
    b->len = (size_t)count;
    if (src_out)
        *src_out = st.MPI_SOURCE;
    if (tag_out)
        *tag_out = st.MPI_TAG;
    return 0;
}

enum { TP_BATCH_WAITING, TP_BATCH_POSTED, TP_BATCH_DONE };

int tp_batch_init(tp_batch *b, int n, pl_err *e)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->buf = calloc((size_t)n + 1, sizeof *b->buf);
    b->req = calloc((size_t)n + 1, sizeof *b->req);
    b->state = calloc((size_t)n + 1, 1);
    if (!b->buf || !b->req || !b->state)
        return pl_errf(e, "out of memory for %d receive buffers", n);
    return 0;
}

void tp_batch_free(tp_batch *b)
{
    for (int i = 0; b->buf && i < b->n; i++)
        msg_buf_free(&b->buf[i]);
    free(b->buf), free(b->req), free(b->state);
    memset(b, 0, sizeof *b);
}

void tp_batch_start(tp_batch *b, MPI_Comm c, int first, int tag, double timeout)
{
    b->comm = c, b->first = first, b->tag = tag, b->timeout = timeout;
    memset(b->state, TP_BATCH_WAITING, (size_t)b->n);
}

/* One round over the batch: posts the receive of every message that has
 * shown, completes those that have arrived.  Returns how many are still in
 * flight (posted, not complete), or -1 when a buffer could not grow. */
static int batch_poll(tp_batch *b, int *bad)
{
    int flying = 0;
    for (int i = 0; i < b->n; i++) {
        if (b->state[i] == TP_BATCH_WAITING) {
            int flag = 0, count;
            MPI_Message m;
            MPI_Status st;
            MPI_Improbe(b->first + i, b->tag, b->comm, &flag, &m, &st);
            if (!flag)
                continue;
            MPI_Get_count(&st, MPI_BYTE, &count);
            if (grow(&b->buf[i], (size_t)count + 1) != 0) {
                *bad = i;
                return -1;
            }
            MPI_Imrecv(b->buf[i].data, count, MPI_BYTE, &m, &b->req[i]);
            b->buf[i].len = (size_t)count;
            b->state[i] = TP_BATCH_POSTED;
        }
        if (b->state[i] == TP_BATCH_POSTED) {
            int done = 0;
            MPI_Test(&b->req[i], &done, MPI_STATUS_IGNORE);
            if (done)
                b->state[i] = TP_BATCH_DONE;
            else
                flying++;
        }
    }
    return flying;
}

int tp_batch_wait(tp_batch *b, int i, double *waited, pl_err *e)
{
    double t0 = clock_now();
    int round = 0, bad = -1;
    while (b->state[i] != TP_BATCH_DONE) {
        int flying = batch_poll(b, &bad);
        if (flying < 0)
            return pl_errf(e, "out of memory receiving a message from rank %d", b->first + bad);
        if (b->state[i] == TP_BATCH_DONE)
            break;
        if (b->state[i] == TP_BATCH_POSTED && waited) {
            *waited = clock_now() - t0;   /* there; now its bytes move */
            waited = NULL;
        }
        if (clock_now() - t0 > b->timeout) {
            if (b->state[i] == TP_BATCH_WAITING)
                return pl_errf(e, "no message from rank %d within %.0f s (--timeout)",
                               b->first + i, b->timeout);
            return pl_errf(e, "message from rank %d not received in full within %.0f s (--timeout)",
                           b->first + i, b->timeout);
        }
        /* Bytes in flight move only while this rank calls MPI (no progress
         * thread), as in a blocking MPI_Recv: yield, do not sleep. */
        if (flying > 0)
            sched_yield();
        else
            backoff(&round, clock_now() - t0);
    }
    if (waited)
        *waited = clock_now() - t0;
    return 0;
}

void tp_isend(MPI_Comm c, int dst, int tag, const msg_buf *b, MPI_Request *req)
{
    MPI_Isend(b->data, (int)b->len, MPI_BYTE, dst, tag, c, req);
}

int tp_wait(MPI_Request *reqs, int n, double timeout, const char *what, pl_err *e)
{
    double t0 = clock_now();
    int round = 0, done = 0;
    for (;;) {
        MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (done)
            return 0;
        if (clock_now() - t0 > timeout)
            return pl_errf(e, "%s: not delivered within %.0f s (--timeout)", what, timeout);
        backoff(&round, clock_now() - t0);
    }
}
