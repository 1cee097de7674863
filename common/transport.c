/* transport.c - see transport.h. */
#include "transport.h"

#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "metrics.h"

/* Sleeps a little between polls: 20 us at first, up to 1 ms, so that an
 * idle rank leaves the core to the others (oversubscribed runs). */
static void backoff(int *round)
{
    long ns = *round < 50 ? 0 : *round < 200 ? 20000 : 1000000;
    if (ns) {
        struct timespec ts = {0, ns};
        nanosleep(&ts, NULL);
    }
    (*round)++;
}

static int grow(ps_buf *b, size_t n)
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

int tp_recv(MPI_Comm c, int src, int tag, ps_buf *b, double timeout, int *src_out,
            int *tag_out, double *waited, pl_err *e)
{
    double t0 = metrics_now();
    int flag = 0, round = 0;
    MPI_Status st;
    for (;;) {
        MPI_Iprobe(src, tag, c, &flag, &st);
        if (flag)
            break;
        if (metrics_now() - t0 > timeout) {
            if (src == MPI_ANY_SOURCE)
                return pl_errf(e, "no message from any peer within %.0f s (--timeout)", timeout);
            return pl_errf(e, "no message from rank %d within %.0f s (--timeout)", src, timeout);
        }
        backoff(&round);
    }
    if (waited)
        *waited = metrics_now() - t0;
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

void tp_isend(MPI_Comm c, int dst, int tag, const ps_buf *b, MPI_Request *req)
{
    MPI_Isend(b->data, (int)b->len, MPI_BYTE, dst, tag, c, req);
}

int tp_wait(MPI_Request *reqs, int n, double timeout, const char *what, pl_err *e)
{
    double t0 = metrics_now();
    int round = 0, done = 0;
    for (;;) {
        MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (done)
            return 0;
        if (metrics_now() - t0 > timeout)
            return pl_errf(e, "%s: not delivered within %.0f s (--timeout)", what, timeout);
        backoff(&round);
    }
}
