/* msg.h - the parameter server's wire messages (proto/pslora.proto) behind a
 * C API that hides protobuf-c.  Prefix msg_.
 *
 * Every MPI message is one pslora.Envelope, sent as MPI_BYTE, holding exactly
 * one of the four messages below.  A receiver that accepts several kinds on
 * one tag calls msg_peek_kind first, then the matching msg_decode_*.  Every
 * decode names the sending rank (`src`, the MPI source) in its error line.
 *
 * Hello (worker -> every server, once at start)
 *   rank, world size, protocol version (MSG_PROTOCOL_VERSION) and a
 *   fingerprint: an ordered list of (key, value) strings built with
 *   msg_hello_add / msg_hello_addf, e.g. ("model.n_layer", "12"),
 *   ("model.shape_hash", "9f0c..."), ("--rank", "8"), ("--sync", "bsp").
 *   Decode rejects: undecodable bytes, another message kind, rank != src,
 *   world < 1 or rank outside [0, world), more than MSG_HELLO_MAX_KEYS
 *   entries, an empty key, a key longer than MSG_KEY_MAX or a value longer
 *   than MSG_VALUE_MAX bytes, a control character in either, a duplicate key.
 *   msg_hello_compare(worker, server) then reports the first difference:
 *   protocol version, world size, each server key in the server's order
 *   (value differs or absent at the worker), then keys only the worker has:
 *     "rank 3: --rank differs: worker has 4, server has 8".
 *
 * GradPush (worker -> each server, every step)
 *   step, version (adapter version the gradient was computed on), worker
 *   rank, token count, loss sum (double), nonfinite flag, the squared norm of
 *   the worker's whole mean gradient (for clipping without a server
 *   exchange), the worker's compute / communication / wait seconds (for the
 *   metrics), and one TensorSlice (tensor id, packed floats) per tensor the
 *   server owns: the gradient of the summed loss over the worker's tokens.
 * AdapterUpdate (server -> every worker, every step)
 *   version after the update, step, stop flag (last update: apply, then
 *   stop), and one TensorSlice per tensor that server owns.
 *   Decode checks both against a msg_expect, in this order, and reports the
 *   first failure:
 *     undecodable bytes (also truncated buffers), another message kind,
 *     [push] worker_rank != src, step outside [step_min, step_max],
 *     version outside [version_min, version_max], [push] tokens < 0,
 *     [push] non-finite loss_sum, or sq_norm negative or non-finite, without
 *     the nonfinite flag; [push] a non-finite time;
 *     then per slice: unknown tensor id (>= n_tensors), id not owned by the
 *     receiver's view of the sender (owned mask), duplicate id, float count
 *     != the layout's element count; finally an owned id with no slice.
 *   So a valid message carries exactly the owned tensors, each once and whole.
 *   Only after every check passes are the floats copied into the flat
 *   vector dst at layout->offset[id]; a rejected message leaves dst as it was.
 *   The floats are not checked for finiteness (that is the nonfinite flag's
 *   job and the server's policy).
 *
 * Control (either direction)
 *   kind (STOP, CHECKPOINT, EVALUATE, ERROR), step, one-line message, and a
 *   result value with its count (EVALUATE: mean validation loss, tokens).
 *   Decode rejects undecodable bytes, another kind, an unknown Control kind
 *   and a negative count; the message is truncated to MSG_CTRL_MSG_LEN - 1
 *   bytes and control characters in it become '?', so it is safe to print as
 *   one line.
 *
 * Values cross bit for bit, except that a header double of -0.0 arrives as
 * +0.0 (proto3 leaves zero scalars out and protobuf-c counts -0.0 as zero);
 * the floats in slices keep every bit, NaN payloads and -0 included.
 *
 * Buffers.  Encoders write into a caller-owned msg_buf and decoders use one as
 * scratch; both only grow, so once warmed up a step allocates nothing.  The
 * encoders point protobuf-c at the caller's floats (packing them costs one
 * memcpy); the decoders unpack into the scratch arena (one memcpy) and copy
 * into dst (a second).  A msg_buf is not shared between threads.
 */
#ifndef PSLORA_MSG_H
#define PSLORA_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define MSG_PROTOCOL_VERSION 1
#define MSG_HELLO_MAX_KEYS 1024
#define MSG_KEY_MAX 128        /* bytes, without the NUL */
#define MSG_VALUE_MAX 1024
#define MSG_CTRL_MSG_LEN 256   /* including the NUL */

/* A grow-only byte buffer; {0} is an empty one.  After an encode, data[0..len)
 * is the message.  As decode scratch, data is the unpack arena.  aux holds
 * the encoder's protobuf-c structs or the decoder's per-tensor seen-mask. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
    void *aux;
    size_t aux_cap;
} msg_buf;

void msg_buf_free(msg_buf *b);

/* The adapter as the messages see it: tensor id -> element count and start in
 * the flat adapter vector (lora_tensor_numel / lora_tensor_offset). */
typedef struct {
    int n_tensors;
    const size_t *numel;    /* [n_tensors] */
    const size_t *offset;   /* [n_tensors] */
} msg_layout;

typedef enum {
    MSG_NONE = 0,
    MSG_HELLO = 1,
    MSG_PUSH = 2,
    MSG_UPDATE = 3,
    MSG_CONTROL = 4,
} msg_kind;

/* "Hello", "GradPush", "AdapterUpdate", "Control", "empty message". */
const char *msg_kind_name(msg_kind k);

/* Which message an envelope holds, from a scan of its top-level fields (no
 * unpacking).  -1 with "rank 3: undecodable message (17 bytes)" when the
 * bytes are not a well-formed envelope or hold no body. */
int msg_peek_kind(const void *bytes, size_t len, int src, msg_kind *kind, pl_err *e);

/* What a receiver accepts in a GradPush or AdapterUpdate. */
typedef struct {
    const msg_layout *layout;        /* required */
    const unsigned char *owned;     /* [n_tensors]: nonzero = the sender must
                                       send this tensor; NULL = every tensor */
    long step_min, step_max;        /* inclusive */
    long version_min, version_max;  /* inclusive */
} msg_expect;

typedef struct {
    long step;
    long version;     /* adapter version the gradient was computed on */
    int rank;         /* the worker's MPI rank */
    long tokens;      /* tokens summed into loss_sum and the gradient */
    double loss_sum;
    int nonfinite;
    double sq_norm;   /* squared L2 norm of the worker's mean gradient (all tensors) */
    double t_compute, t_comm, t_wait;   /* the worker's seconds, for the metrics */
} msg_push_hdr;

typedef struct {
    long version;     /* adapter version after this update */
    long step;
    int stop;
} msg_update_hdr;

typedef enum {
    MSG_CTRL_STOP = 1,
    MSG_CTRL_CHECKPOINT = 2,
    MSG_CTRL_EVALUATE = 3,
    MSG_CTRL_ERROR = 4,
} msg_ctrl_kind;

typedef struct {
    msg_ctrl_kind kind;
    long step;
    char message[MSG_CTRL_MSG_LEN];
    double value;     /* EVALUATE: mean validation loss (may be NaN) */
    long count;       /* EVALUATE: tokens it was measured on */
} msg_control;

/* Encodes a GradPush carrying n slices: tensor ids[i] with lens[i] floats at
 * data[i] (not copied until packing).  The ids are the caller's business;
 * -1 only on a negative id or count, a NULL data with lens > 0, a message past
 * INT_MAX bytes (MPI's count) or out of memory. */
int msg_encode_push(msg_buf *out, const msg_push_hdr *h, int n, const int *ids,
                   const float *const *data, const size_t *lens, pl_err *e);
/* Same, one slice per owned tensor (all when owned is NULL), in id order,
 * read from the flat vector at layout offsets. */
int msg_encode_push_flat(msg_buf *out, const msg_push_hdr *h, const msg_layout *L,
                        const unsigned char *owned, const float *flat, pl_err *e);
int msg_encode_update(msg_buf *out, const msg_update_hdr *h, int n, const int *ids,
                     const float *const *data, const size_t *lens, pl_err *e);
int msg_encode_update_flat(msg_buf *out, const msg_update_hdr *h, const msg_layout *L,
                          const unsigned char *owned, const float *flat, pl_err *e);
/* -1 on an unknown kind. */
int msg_encode_control(msg_buf *out, const msg_control *c, pl_err *e);

/* Decode + validate (see the top comment).  scratch is reused between calls;
 * dst is the flat vector the slices are copied into (NULL: validate only). */
int msg_decode_push(msg_buf *scratch, const void *bytes, size_t len, int src,
                   const msg_expect *x, msg_push_hdr *h, float *dst, pl_err *e);
int msg_decode_update(msg_buf *scratch, const void *bytes, size_t len, int src,
                     const msg_expect *x, msg_update_hdr *h, float *dst, pl_err *e);
int msg_decode_control(msg_buf *scratch, const void *bytes, size_t len, int src,
                      msg_control *c, pl_err *e);

/* ---- Hello ---- */

typedef struct {
    char *key;
    char *value;
} msg_kv;

/* Owns its strings; init (or {0}) then add, free when done. */
typedef struct {
    int rank, world, protocol;
    int n, cap;
    msg_kv *kv;
} msg_hello;

/* Empty fingerprint for rank of world, protocol MSG_PROTOCOL_VERSION. */
void msg_hello_init(msg_hello *h, int rank, int world);
void msg_hello_free(msg_hello *h);
/* Appends (key, value); -1 on an empty, duplicate, over-long or
 * control-character key, an over-long or control-character value, too many
 * keys, or out of memory.  The error names the key. */
int msg_hello_add(msg_hello *h, const char *key, const char *value, pl_err *e);
int msg_hello_addf(msg_hello *h, pl_err *e, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Value of key, or NULL. */
const char *msg_hello_get(const msg_hello *h, const char *key);

int msg_encode_hello(msg_buf *out, const msg_hello *h, pl_err *e);
/* Fills h (its own copy; msg_hello_free it, also after a failure). */
int msg_decode_hello(const void *bytes, size_t len, int src, msg_hello *h, pl_err *e);
/* 0 when equal; else -1 and the first difference, named by worker->rank. */
int msg_hello_compare(const msg_hello *worker, const msg_hello *server, pl_err *e);

/* FNV-1a 64 over n bytes, chained from h (start with MSG_HASH_INIT): for
 * fingerprint values such as the hash of the frozen tensor shapes. */
#define MSG_HASH_INIT 14695981039346656037ULL
uint64_t msg_hash64(uint64_t h, const void *p, size_t n);

#endif
