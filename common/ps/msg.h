/* msg.h - the parameter server's wire messages (proto/pslora.proto) behind a
 * C API that hides protobuf-c.  Prefix ps_.
 *
 * Every MPI message is one pslora.Envelope, sent as MPI_BYTE, holding exactly
 * one of the four messages below.  A receiver that accepts several kinds on
 * one tag calls ps_peek_kind first, then the matching ps_decode_*.  Every
 * decode names the sending rank (`src`, the MPI source) in its error line.
 *
 * Hello (worker -> every server, once at start)
 *   rank, world size, protocol version (PS_PROTOCOL_VERSION) and a
 *   fingerprint: an ordered list of (key, value) strings built with
 *   ps_hello_add / ps_hello_addf, e.g. ("model.n_layer", "12"),
 *   ("model.shape_hash", "9f0c..."), ("--rank", "8"), ("--sync", "bsp").
 *   Decode rejects: undecodable bytes, another message kind, rank != src,
 *   world < 1 or rank outside [0, world), more than PS_HELLO_MAX_KEYS
 *   entries, an empty key, a key longer than PS_KEY_MAX or a value longer
 *   than PS_VALUE_MAX bytes, a control character in either, a duplicate key.
 *   ps_hello_compare(worker, server) then reports the first difference:
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
 *   Decode checks both against a ps_expect, in this order, and reports the
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
 *   and a negative count; the message is truncated to PS_CTRL_MSG_LEN - 1
 *   bytes and control characters in it become '?', so it is safe to print as
 *   one line.
 *
 * Values cross bit for bit, except that a header double of -0.0 arrives as
 * +0.0 (proto3 leaves zero scalars out and protobuf-c counts -0.0 as zero);
 * the floats in slices keep every bit, NaN payloads and -0 included.
 *
 * Buffers.  Encoders write into a caller-owned ps_buf and decoders use one as
 * scratch; both only grow, so once warmed up a step allocates nothing.  The
 * encoders point protobuf-c at the caller's floats (packing them costs one
 * memcpy); the decoders unpack into the scratch arena (one memcpy) and copy
 * into dst (a second).  A ps_buf is not shared between threads.
 */
#ifndef PSLORA_MSG_H
#define PSLORA_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define PS_PROTOCOL_VERSION 1
#define PS_HELLO_MAX_KEYS 1024
#define PS_KEY_MAX 128        /* bytes, without the NUL */
#define PS_VALUE_MAX 1024
#define PS_CTRL_MSG_LEN 256   /* including the NUL */

/* A grow-only byte buffer; {0} is an empty one.  After an encode, data[0..len)
 * is the message.  As decode scratch, data is the unpack arena.  aux holds
 * the encoder's protobuf-c structs or the decoder's per-tensor seen-mask. */
typedef struct {
    unsigned char *data;
    size_t len, cap;
    void *aux;
    size_t aux_cap;
} ps_buf;

void ps_buf_free(ps_buf *b);

/* The adapter as the messages see it: tensor id -> element count and start in
 * the flat adapter vector (lora_tensor_numel / lora_tensor_offset). */
typedef struct {
    int n_tensors;
    const size_t *numel;    /* [n_tensors] */
    const size_t *offset;   /* [n_tensors] */
} ps_layout;

typedef enum {
    PS_MSG_NONE = 0,
    PS_MSG_HELLO = 1,
    PS_MSG_PUSH = 2,
    PS_MSG_UPDATE = 3,
    PS_MSG_CONTROL = 4,
} ps_kind;

/* "Hello", "GradPush", "AdapterUpdate", "Control", "empty message". */
const char *ps_kind_name(ps_kind k);

/* Which message an envelope holds, from a scan of its top-level fields (no
 * unpacking).  -1 with "rank 3: undecodable message (17 bytes)" when the
 * bytes are not a well-formed envelope or hold no body. */
int ps_peek_kind(const void *bytes, size_t len, int src, ps_kind *kind, pl_err *e);

/* What a receiver accepts in a GradPush or AdapterUpdate. */
typedef struct {
    const ps_layout *layout;        /* required */
    const unsigned char *owned;     /* [n_tensors]: nonzero = the sender must
                                       send this tensor; NULL = every tensor */
    long step_min, step_max;        /* inclusive */
    long version_min, version_max;  /* inclusive */
} ps_expect;

typedef struct {
    long step;
    long version;     /* adapter version the gradient was computed on */
    int rank;         /* the worker's MPI rank */
    long tokens;      /* tokens summed into loss_sum and the gradient */
    double loss_sum;
    int nonfinite;
    double sq_norm;   /* squared L2 norm of the worker's mean gradient (all tensors) */
    double t_compute, t_comm, t_wait;   /* the worker's seconds, for the metrics */
} ps_push_hdr;

typedef struct {
    long version;     /* adapter version after this update */
    long step;
    int stop;
} ps_update_hdr;

typedef enum {
    PS_CTRL_STOP = 1,
    PS_CTRL_CHECKPOINT = 2,
    PS_CTRL_EVALUATE = 3,
    PS_CTRL_ERROR = 4,
} ps_ctrl_kind;

typedef struct {
    ps_ctrl_kind kind;
    long step;
    char message[PS_CTRL_MSG_LEN];
    double value;     /* EVALUATE: mean validation loss (may be NaN) */
    long count;       /* EVALUATE: tokens it was measured on */
} ps_control;

/* Encodes a GradPush carrying n slices: tensor ids[i] with lens[i] floats at
 * data[i] (not copied until packing).  The ids are the caller's business;
 * -1 only on a negative id or count, a NULL data with lens > 0, a message past
 * INT_MAX bytes (MPI's count) or out of memory. */
int ps_encode_push(ps_buf *out, const ps_push_hdr *h, int n, const int *ids,
                   const float *const *data, const size_t *lens, pl_err *e);
/* Same, one slice per owned tensor (all when owned is NULL), in id order,
 * read from the flat vector at layout offsets. */
int ps_encode_push_flat(ps_buf *out, const ps_push_hdr *h, const ps_layout *L,
                        const unsigned char *owned, const float *flat, pl_err *e);
int ps_encode_update(ps_buf *out, const ps_update_hdr *h, int n, const int *ids,
                     const float *const *data, const size_t *lens, pl_err *e);
int ps_encode_update_flat(ps_buf *out, const ps_update_hdr *h, const ps_layout *L,
                          const unsigned char *owned, const float *flat, pl_err *e);
/* -1 on an unknown kind. */
int ps_encode_control(ps_buf *out, const ps_control *c, pl_err *e);

/* Decode + validate (see the top comment).  scratch is reused between calls;
 * dst is the flat vector the slices are copied into (NULL: validate only). */
int ps_decode_push(ps_buf *scratch, const void *bytes, size_t len, int src,
                   const ps_expect *x, ps_push_hdr *h, float *dst, pl_err *e);
int ps_decode_update(ps_buf *scratch, const void *bytes, size_t len, int src,
                     const ps_expect *x, ps_update_hdr *h, float *dst, pl_err *e);
int ps_decode_control(ps_buf *scratch, const void *bytes, size_t len, int src,
                      ps_control *c, pl_err *e);

/* ---- Hello ---- */

typedef struct {
    char *key;
    char *value;
} ps_kv;

/* Owns its strings; init (or {0}) then add, free when done. */
typedef struct {
    int rank, world, protocol;
    int n, cap;
    ps_kv *kv;
} ps_hello;

/* Empty fingerprint for rank of world, protocol PS_PROTOCOL_VERSION. */
void ps_hello_init(ps_hello *h, int rank, int world);
void ps_hello_free(ps_hello *h);
/* Appends (key, value); -1 on an empty, duplicate, over-long or
 * control-character key, an over-long or control-character value, too many
 * keys, or out of memory.  The error names the key. */
int ps_hello_add(ps_hello *h, const char *key, const char *value, pl_err *e);
int ps_hello_addf(ps_hello *h, pl_err *e, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Value of key, or NULL. */
const char *ps_hello_get(const ps_hello *h, const char *key);

int ps_encode_hello(ps_buf *out, const ps_hello *h, pl_err *e);
/* Fills h (its own copy; ps_hello_free it, also after a failure). */
int ps_decode_hello(const void *bytes, size_t len, int src, ps_hello *h, pl_err *e);
/* 0 when equal; else -1 and the first difference, named by worker->rank. */
int ps_hello_compare(const ps_hello *worker, const ps_hello *server, pl_err *e);

/* FNV-1a 64 over n bytes, chained from h (start with PS_HASH_INIT): for
 * fingerprint values such as the hash of the frozen tensor shapes. */
#define PS_HASH_INIT 14695981039346656037ULL
uint64_t ps_hash64(uint64_t h, const void *p, size_t n);

#endif
