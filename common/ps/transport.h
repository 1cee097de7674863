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

/* Starts a send of b (which must stay untouched until tp_wait returns). */
void tp_isend(MPI_Comm c, int dst, int tag, const msg_buf *b, MPI_Request *req);
/* Waits for n requests, at most timeout seconds; the error names what. */
int tp_wait(MPI_Request *reqs, int n, double timeout, const char *what, pl_err *e);

#endif
