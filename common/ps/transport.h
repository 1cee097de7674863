/* transport.h - MPI point-to-point with deadlines.
 *
 * Every message is a byte buffer (one pslora.Envelope).  Receives poll with
 * MPI_Iprobe so that no rank waits forever on a dead or stuck peer: past the
 * deadline the error names the rank waited for.  Tags separate the streams. */
#ifndef PSLORA_TRANSPORT_H
#define PSLORA_TRANSPORT_H

#include <mpi.h>

#include "err.h"
#include "msg.h"

/* TP_TAG_CKPT: servers 1..S-1 send rank 0 their slices of the adapter, m and
 * v (three AdapterUpdates, in that order) for a checkpoint. */
enum { TP_TAG_HELLO = 11, TP_TAG_PUSH, TP_TAG_UPDATE, TP_TAG_CTRL, TP_TAG_FINAL, TP_TAG_CKPT };

/* Receives one message from src (or MPI_ANY_SOURCE) with tag (or
 * MPI_ANY_TAG) into b (grown as needed; b->len = its size).  *waited
 * receives the seconds spent before the message was there.  Fails after
 * timeout seconds with "no message from rank 3 within 600 s". */
int tp_recv(MPI_Comm c, int src, int tag, msg_buf *b, double timeout, int *src_out,
            int *tag_out, double *waited, pl_err *e);

/* Receiving one message of a tag from each of n consecutive ranks
 * first .. first+n-1 (a server's pushes, a worker's updates) with all of
 * them moving at once.  Open MPI moves a large message's bulk only once its
 * receive is posted, so receiving them one after another in rank order
 * would pull from one sender's link at a time; here every receive is posted
 * (MPI_Improbe, then MPI_Imrecv into that source's own buffer) as soon as
 * its message shows, while the caller waits for message i.  The caller
 * still takes the messages in rank order (tp_batch_wait for i = 0, 1, ...),
 * so what it computes from them does not depend on their arrival order.
 * The buffers grow as needed and are kept from one batch to the next. */
typedef struct {
    MPI_Comm comm;
    int first, n, tag;
    double timeout;          /* seconds, for each tp_batch_wait */
    msg_buf *buf;            /* [n] buf[i]: the message of rank first+i */
    MPI_Request *req;        /* [n] its receive, once posted */
    unsigned char *state;    /* [n] TP_BATCH_* */
} tp_batch;

int tp_batch_init(tp_batch *b, int n, pl_err *e);
void tp_batch_free(tp_batch *b);
/* Begins a batch: nothing of it received yet. */
void tp_batch_start(tp_batch *b, MPI_Comm c, int first, int tag, double timeout);
/* Waits until buf[i] holds the message of rank first+i, posting the other
 * receives meanwhile.  *waited (may be NULL) receives the seconds before
 * it was there.  Fails after timeout seconds with "no message from rank 3
 * within 600 s (--timeout)", as tp_recv does. */
int tp_batch_wait(tp_batch *b, int i, double *waited, pl_err *e);

/* Starts a send of b (which must stay untouched until tp_wait returns). */
void tp_isend(MPI_Comm c, int dst, int tag, const msg_buf *b, MPI_Request *req);
/* Waits for n requests, at most timeout seconds; the error names what. */
int tp_wait(MPI_Request *reqs, int n, double timeout, const char *what, pl_err *e);

#endif
