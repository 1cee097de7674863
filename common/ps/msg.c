/* msg.c - encode, decode and validate the parameter server's messages (see
 * msg.h for the messages and their checks, proto/pslora.proto for the wire).
 *
 * Encoding points the generated structs at the caller's floats and packs into
 * a grow-only msg_buf.  Decoding unpacks with an arena allocator that bumps
 * through a grow-only msg_buf (free is a no-op, the arena is reset by the next
 * decode), so a warmed-up step allocates nothing and nothing can leak. */
#include "msg.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pslora.pb-c.h"

/* ------------------------------------------------------------------ buffers */

void msg_buf_free(msg_buf *b)
{
    free(b->data);
    free(b->aux);
    memset(b, 0, sizeof *b);
}

/* Makes b->data hold at least n bytes; old contents are not kept (callers
 * reserve before writing).  0 / -1 on out of memory. */
static int buf_reserve(msg_buf *b, size_t n)
{
    if (b->cap >= n)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n)
        cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    free(b->data);
    b->data = malloc(cap);
    b->cap = b->data ? cap : 0;
    b->len = 0;
    return b->data ? 0 : -1;
}

/* Same for the encoder's struct area b->aux. */
static int aux_reserve(msg_buf *b, size_t n)
{
    if (b->aux_cap >= n)
        return 0;
    free(b->aux);
    b->aux = malloc(n);
    b->aux_cap = b->aux ? n : 0;
    return b->aux ? 0 : -1;
}

/* ------------------------------------------------------------------- arena */

typedef struct {
    msg_buf *b;
    int overflow;   /* an allocation did not fit: grow and unpack again */
} arena;

/* Bump allocation, 16-byte aligned, from the scratch buffer. */
static void *arena_alloc(void *data, size_t n)
{
    arena *a = data;
    msg_buf *b = a->b;
    size_t at = (b->len + 15) & ~(size_t)15;
    if (at < b->len || at > b->cap || n > b->cap - at) {
        a->overflow = 1;
        return NULL;
    }
    b->len = at + n;
    return b->data + at;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

/* Largest arena an input of len bytes may claim: protobuf-c's structs for a
 * field can be ~30x its smallest encoding (2 bytes for an empty slice). */
static size_t arena_limit(size_t len)
{
    return 64 * len + 65536;
}

/* Unpacks an Envelope into scratch, growing it while the arena is what
 * failed.  NULL when the bytes are not a valid Envelope (or out of memory). */
static Pslora__Envelope *unpack_envelope(msg_buf *scratch, const void *bytes, size_t len)
{
    if (len > INT_MAX || buf_reserve(scratch, len + len / 8 + 65536))
        return NULL;
    for (;;) {
        arena a = {scratch, 0};
        ProtobufCAllocator alloc = {arena_alloc, arena_free, &a};
        scratch->len = 0;
        Pslora__Envelope *env = pslora__envelope__unpack(&alloc, len, bytes);
        if (env || !a.overflow || scratch->cap >= arena_limit(len))
            return env;
        size_t want = scratch->cap * 2;
        if (want > arena_limit(len))
            want = arena_limit(len);
        if (buf_reserve(scratch, want))
            return NULL;
    }
}

/* -------------------------------------------------------------- envelope kind */

const char *msg_kind_name(msg_kind k)
{
    switch (k) {
    case MSG_HELLO: return "Hello";
    case MSG_PUSH: return "GradPush";
    case MSG_UPDATE: return "AdapterUpdate";
    case MSG_CONTROL: return "Control";
    default: return "empty message";
    }
}

/* Reads one base-128 varint at *pos; -1 when truncated or longer than 10 bytes. */
static int read_varint(const unsigned char *p, size_t len, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= len)
            return -1;
        unsigned char c = p[(*pos)++];
        r |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* Skips the value of a field of wire type wt at *pos; -1 when malformed. */
static int skip_field(const unsigned char *p, size_t len, size_t *pos, unsigned wt)
{
    uint64_t n;
    switch (wt) {
    case 0: return read_varint(p, len, pos, &n);
    case 1: n = 8; break;
    case 5: n = 4; break;
    case 2:
        if (read_varint(p, len, pos, &n))
            return -1;
        break;
    default: return -1;   /* groups (3, 4) and reserved types */
    }
    if (n > len - *pos)
        return -1;
    *pos += n;
    return 0;
}

/* The body kind from a scan of the top-level fields: 0 with *kind (NONE when
 * there is no body), or -1 when the fields are malformed.  Field number 0 is
 * refused here although protobuf-c would skip it. */
static int scan_kind(const unsigned char *p, size_t len, msg_kind *kind)
{
    size_t pos = 0;
    msg_kind k = MSG_NONE;
    while (pos < len) {
        uint64_t key;
        if (read_varint(p, len, &pos, &key))
            return -1;
        uint64_t field = key >> 3;
        unsigned wt = key & 7;
        if (field == 0 || (field <= MSG_CONTROL && wt != 2) || skip_field(p, len, &pos, wt))
            return -1;
        if (field <= MSG_CONTROL)
            k = (msg_kind)field;   /* the last body field wins, as in protobuf */
    }
    *kind = k;
    return 0;
}

int msg_peek_kind(const void *bytes, size_t len, int src, msg_kind *kind, pl_err *e)
{
    msg_kind k;
    if (scan_kind(bytes, len, &k))
        return pl_errf(e, "rank %d: undecodable message (%zu bytes)", src, len);
    if (k == MSG_NONE)
        return pl_errf(e, "rank %d: empty message (%zu bytes, no body)", src, len);
    *kind = k;
    return 0;
}

/* Checks the body kind with a scan (so a decoder accepts only what
 * msg_peek_kind accepts, and a wrong kind costs no unpacking), then unpacks.
 * On failure the error names src. */
static Pslora__Envelope *unpack_kind(msg_buf *scratch, const void *bytes, size_t len, int src,
                                     msg_kind want, pl_err *e)
{
    msg_kind k = MSG_NONE;   /* stays NONE when the scan fails */
    Pslora__Envelope *env = NULL;
    if (scan_kind(bytes, len, &k) == 0 && k != want) {
        pl_errf(e, "rank %d: expected %s, got %s", src, msg_kind_name(want), msg_kind_name(k));
        return NULL;
    }
    if (k == want)
        env = unpack_envelope(scratch, bytes, len);
    if (!env || (int)env->body_case != (int)want) {
        pl_errf(e, "rank %d: undecodable message (%zu bytes, expected %s)", src, len,
                msg_kind_name(want));
        return NULL;
    }
    return env;
}

/* ------------------------------------------------------------------ encoding */

/* Packs env into out; -1 past MPI's int count or out of memory. */
static int pack_envelope(msg_buf *out, const Pslora__Envelope *env, const char *what, pl_err *e)
{
    size_t n = pslora__envelope__get_packed_size(env);
    if (n > INT_MAX)
        return pl_errf(e, "%s: message of %zu bytes exceeds MPI's int count", what, n);
    if (buf_reserve(out, n))
        return pl_errf(e, "%s: out of memory for %zu bytes", what, n);
    out->len = pslora__envelope__pack(env, out->data);
    return 0;
}

/* Writes v as a base-128 varint at p; returns its length (at most 10). */
static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static size_t varint_size(uint64_t v)
{
    unsigned char tmp[10];
    return put_varint(tmp, v);
}

/* Packs Envelope{env_field: body} where body's field "slices" (count
 * *n_slices) is the repeated TensorSlice s: the message pslora__envelope__pack
 * would write.  But protobuf-c packs a nested message at out+1 and memmoves it
 * when its length prefix needs more than one byte, which moves every float
 * twice more (once per nesting level).  So the envelope and slice framing is
 * written here, and protobuf-c packs only the body without its slices and
 * then each slice (whose packed floats it copies once, with no memmove).
 * Fields may come in any order on the wire; as slices has the body's highest
 * field number, the bytes are exactly protobuf-c's. */
static int pack_framed(msg_buf *out, ProtobufCMessage *body, size_t *n_slices,
                       unsigned env_field, Pslora__TensorSlice *const *s, const char *what,
                       pl_err *e)
{
    size_t n = *n_slices;
    unsigned slices_field =
        protobuf_c_message_descriptor_get_field_by_name(body->descriptor, "slices")->id;
    size_t body_size = protobuf_c_message_get_packed_size(body);
    size_t total = varint_size(env_field << 3 | 2) + varint_size(body_size) + body_size;
    if (total > INT_MAX)
        return pl_errf(e, "%s: message of %zu bytes exceeds MPI's int count", what, total);
    if (buf_reserve(out, total))
        return pl_errf(e, "%s: out of memory for %zu bytes", what, total);
    unsigned char *p = out->data;
    p += put_varint(p, env_field << 3 | 2);
    p += put_varint(p, body_size);
    *n_slices = 0;   /* the body without its slices */
    p += protobuf_c_message_pack(body, p);
    *n_slices = n;
    for (size_t i = 0; i < n; i++) {
        size_t sz = pslora__tensor_slice__get_packed_size(s[i]);
        p += put_varint(p, slices_field << 3 | 2);
        p += put_varint(p, sz);
        p += pslora__tensor_slice__pack(s[i], p);
    }
    out->len = (size_t)(p - out->data);
    if (out->len != total)   /* the sizes above are protobuf-c's own: cannot happen */
        return pl_errf(e, "%s: packed %zu bytes, expected %zu", what, out->len, total);
    return 0;
}

/* Makes n TensorSlice structs and the pointer array to them in out->aux. */
static Pslora__TensorSlice **slices_alloc(msg_buf *out, int n)
{
    size_t need = (size_t)n * (sizeof(Pslora__TensorSlice *) + sizeof(Pslora__TensorSlice));
    if (aux_reserve(out, need ? need : 1))
        return NULL;
    Pslora__TensorSlice **ptr = out->aux;
    Pslora__TensorSlice *s = (Pslora__TensorSlice *)(ptr + n);
    for (int i = 0; i < n; i++) {
        pslora__tensor_slice__init(&s[i]);
        ptr[i] = &s[i];
    }
    return ptr;
}

/* Fills one slice; it points at the caller's floats (no copy). */
static void slice_set(Pslora__TensorSlice *s, int id, const float *data, size_t n)
{
    s->id = (uint32_t)id;
    s->n_data = n;
    s->data = (float *)data;   /* pack only reads it */
}

/* Slices from explicit lists; -1 on a bad id, count or pointer, or a payload
 * past INT_MAX bytes. */
static Pslora__TensorSlice **slices_from_lists(msg_buf *out, const char *what, int n,
                                               const int *ids, const float *const *data,
                                               const size_t *lens, pl_err *e)
{
    if (n < 0) {
        pl_errf(e, "%s: negative slice count %d", what, n);
        return NULL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0) {
            pl_errf(e, "%s: negative tensor id %d", what, ids[i]);
            return NULL;
        }
        if (lens[i] && !data[i]) {
            pl_errf(e, "%s: tensor %d has %zu floats but no data", what, ids[i], lens[i]);
            return NULL;
        }
        if (lens[i] > INT_MAX / 4 || (total += lens[i]) > INT_MAX / 4) {
            pl_errf(e, "%s: payload exceeds MPI's int count", what);
            return NULL;
        }
    }
    Pslora__TensorSlice **s = slices_alloc(out, n);
    if (!s) {
        pl_errf(e, "%s: out of memory", what);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        slice_set(s[i], ids[i], data[i], lens[i]);
    return s;
}

/* Slices for the owned tensors of a flat vector, in id order; *n gets the count. */
static Pslora__TensorSlice **slices_from_flat(msg_buf *out, const char *what, const msg_layout *L,
                                              const unsigned char *owned, const float *flat,
                                              int *n, pl_err *e)
{
    int count = 0;
    size_t total = 0;
    for (int id = 0; id < L->n_tensors; id++) {
        if (owned && !owned[id])
            continue;
        count++;
        if ((total += L->numel[id]) > INT_MAX / 4) {
            pl_errf(e, "%s: payload exceeds MPI's int count", what);
            return NULL;
        }
    }
    Pslora__TensorSlice **s = slices_alloc(out, count);
    if (!s) {
        pl_errf(e, "%s: out of memory", what);
        return NULL;
    }
    int i = 0;
    for (int id = 0; id < L->n_tensors; id++)
        if (!owned || owned[id])
            slice_set(s[i++], id, flat + L->offset[id], L->numel[id]);
    *n = count;
    return s;
}

/* Packs a push with the given slices. */
static int pack_push(msg_buf *out, const msg_push_hdr *h, Pslora__TensorSlice **s, int n,
                     pl_err *e)
{
    Pslora__GradPush m = PSLORA__GRAD_PUSH__INIT;
    m.step = h->step;
    m.version = h->version;
    m.worker_rank = h->rank;
    m.tokens = h->tokens;
    m.loss_sum = h->loss_sum;
    m.nonfinite = h->nonfinite != 0;
    m.sq_norm = h->sq_norm;
    m.t_compute = h->t_compute;
    m.t_comm = h->t_comm;
    m.t_wait = h->t_wait;
    m.n_slices = (size_t)n;
    m.slices = s;
    return pack_framed(out, &m.base, &m.n_slices, PSLORA__ENVELOPE__BODY_PUSH, s, "GradPush", e);
}

/* Packs an update with the given slices. */
static int pack_update(msg_buf *out, const msg_update_hdr *h, Pslora__TensorSlice **s, int n,
                       pl_err *e)
{
    Pslora__AdapterUpdate m = PSLORA__ADAPTER_UPDATE__INIT;
    m.version = h->version;
    m.step = h->step;
    m.stop = h->stop != 0;
    m.n_slices = (size_t)n;
    m.slices = s;
    return pack_framed(out, &m.base, &m.n_slices, PSLORA__ENVELOPE__BODY_UPDATE, s,
                       "AdapterUpdate", e);
}

int msg_encode_push(msg_buf *out, const msg_push_hdr *h, int n, const int *ids,
                   const float *const *data, const size_t *lens, pl_err *e)
{
    Pslora__TensorSlice **s = slices_from_lists(out, "GradPush", n, ids, data, lens, e);
    return s ? pack_push(out, h, s, n, e) : -1;
}

int msg_encode_push_flat(msg_buf *out, const msg_push_hdr *h, const msg_layout *L,
                        const unsigned char *owned, const float *flat, pl_err *e)
{
    int n = 0;
    Pslora__TensorSlice **s = slices_from_flat(out, "GradPush", L, owned, flat, &n, e);
    return s ? pack_push(out, h, s, n, e) : -1;
}

int msg_encode_update(msg_buf *out, const msg_update_hdr *h, int n, const int *ids,
                     const float *const *data, const size_t *lens, pl_err *e)
{
    Pslora__TensorSlice **s = slices_from_lists(out, "AdapterUpdate", n, ids, data, lens, e);
    return s ? pack_update(out, h, s, n, e) : -1;
}

int msg_encode_update_flat(msg_buf *out, const msg_update_hdr *h, const msg_layout *L,
                          const unsigned char *owned, const float *flat, pl_err *e)
{
    int n = 0;
    Pslora__TensorSlice **s = slices_from_flat(out, "AdapterUpdate", L, owned, flat, &n, e);
    return s ? pack_update(out, h, s, n, e) : -1;
}

int msg_encode_control(msg_buf *out, const msg_control *c, pl_err *e)
{
    if (c->kind < MSG_CTRL_STOP || c->kind > MSG_CTRL_ERROR)
        return pl_errf(e, "Control: unknown kind %d", (int)c->kind);
    char text[MSG_CTRL_MSG_LEN];
    snprintf(text, sizeof text, "%.*s", MSG_CTRL_MSG_LEN - 1, c->message);
    Pslora__Control m = PSLORA__CONTROL__INIT;
    m.kind = (Pslora__Control__Kind)c->kind;
    m.step = c->step;
    m.message = text;
    m.value = c->value;
    m.count = c->count;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_CONTROL;
    env.control = &m;
    return pack_envelope(out, &env, "Control", e);
}

/* -------------------------------------------------------------- validation */

/* Checks a message's slices against x (see msg.h for the order of checks);
 * what/src name the message in the error.  The seen-mask lives in
 * scratch->aux, which the unpacked message does not use. */
static int check_slices(msg_buf *scratch, Pslora__TensorSlice *const *s, size_t n,
                        const msg_expect *x, const char *what, int src, pl_err *e)
{
    const msg_layout *L = x->layout;
    size_t n_seen = L->n_tensors > 0 ? (size_t)L->n_tensors : 1;
    if (aux_reserve(scratch, n_seen))
        return pl_errf(e, "rank %d: %s: out of memory", src, what);
    unsigned char *seen = scratch->aux;
    memset(seen, 0, n_seen);
    for (size_t i = 0; i < n; i++) {
        uint32_t id = s[i]->id;
        if (id >= (uint32_t)L->n_tensors)
            return pl_errf(e, "rank %d: %s: unknown tensor id %u (layout has %d)", src, what,
                           id, L->n_tensors);
        if (x->owned && !x->owned[id])
            return pl_errf(e, "rank %d: %s: tensor %u is not owned here", src, what, id);
        if (seen[id])
            return pl_errf(e, "rank %d: %s: duplicate tensor id %u", src, what, id);
        seen[id] = 1;
        if (s[i]->n_data != L->numel[id])
            return pl_errf(e, "rank %d: %s: tensor %u has %zu floats, layout says %zu", src,
                           what, id, s[i]->n_data, L->numel[id]);
    }
    for (int id = 0; id < L->n_tensors; id++)
        if ((!x->owned || x->owned[id]) && !seen[id])
            return pl_errf(e, "rank %d: %s: tensor %d missing", src, what, id);
    return 0;
}

/* Copies validated slices into the flat vector dst at layout offsets. */
static void copy_slices(Pslora__TensorSlice *const *s, size_t n, const msg_layout *L, float *dst)
{
    if (!dst)
        return;
    for (size_t i = 0; i < n; i++)
        if (s[i]->n_data)
            memcpy(dst + L->offset[s[i]->id], s[i]->data, s[i]->n_data * sizeof(float));
}

/* Step and version against the expected windows. */
static int check_step_version(long step, long version, const msg_expect *x, const char *what,
                              int src, pl_err *e)
{
    if (step < x->step_min || step > x->step_max)
        return pl_errf(e, "rank %d: %s: step %ld outside [%ld, %ld]", src, what, step,
                       x->step_min, x->step_max);
    if (version < x->version_min || version > x->version_max)
        return pl_errf(e, "rank %d: %s: version %ld outside [%ld, %ld]", src, what, version,
                       x->version_min, x->version_max);
    return 0;
}

int msg_decode_push(msg_buf *scratch, const void *bytes, size_t len, int src,
                   const msg_expect *x, msg_push_hdr *h, float *dst, pl_err *e)
{
    Pslora__Envelope *env = unpack_kind(scratch, bytes, len, src, MSG_PUSH, e);
    if (!env)
        return -1;
    const Pslora__GradPush *m = env->push;
    if (m->worker_rank != src)
        return pl_errf(e, "rank %d: GradPush claims worker rank %d", src, (int)m->worker_rank);
    if (check_step_version(m->step, m->version, x, "GradPush", src, e))
        return -1;
    if (m->tokens < 0)
        return pl_errf(e, "rank %d: GradPush: negative token count %ld", src, (long)m->tokens);
    if (!isfinite(m->loss_sum) && !m->nonfinite)
        return pl_errf(e, "rank %d: GradPush: loss_sum is %g but the nonfinite flag is not set",
                       src, m->loss_sum);
    if (!(m->sq_norm >= 0 && isfinite(m->sq_norm)) && !m->nonfinite)
        return pl_errf(e, "rank %d: GradPush: sq_norm is %g but the nonfinite flag is not set",
                       src, m->sq_norm);
    if (!isfinite(m->t_compute) || !isfinite(m->t_comm) || !isfinite(m->t_wait))
        return pl_errf(e, "rank %d: GradPush: non-finite time (compute %g, comm %g, wait %g)",
                       src, m->t_compute, m->t_comm, m->t_wait);
    if (check_slices(scratch, m->slices, m->n_slices, x, "GradPush", src, e))
        return -1;
    copy_slices(m->slices, m->n_slices, x->layout, dst);
    h->step = m->step;
    h->version = m->version;
    h->rank = m->worker_rank;
    h->tokens = m->tokens;
    h->loss_sum = m->loss_sum;
    h->nonfinite = m->nonfinite != 0;
    h->sq_norm = m->sq_norm;
    h->t_compute = m->t_compute;
    h->t_comm = m->t_comm;
    h->t_wait = m->t_wait;
    return 0;
}

int msg_decode_update(msg_buf *scratch, const void *bytes, size_t len, int src,
                     const msg_expect *x, msg_update_hdr *h, float *dst, pl_err *e)
{
    Pslora__Envelope *env = unpack_kind(scratch, bytes, len, src, MSG_UPDATE, e);
    if (!env)
        return -1;
    const Pslora__AdapterUpdate *m = env->update;
    if (check_step_version(m->step, m->version, x, "AdapterUpdate", src, e))
        return -1;
    if (check_slices(scratch, m->slices, m->n_slices, x, "AdapterUpdate", src, e))
        return -1;
    copy_slices(m->slices, m->n_slices, x->layout, dst);
    h->version = m->version;
    h->step = m->step;
    h->stop = m->stop != 0;
    return 0;
}

/* Copies at most cap-1 bytes of s into out as one printable line. */
static void copy_line(char *out, size_t cap, const char *s)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[i] = 0;
}

int msg_decode_control(msg_buf *scratch, const void *bytes, size_t len, int src,
                      msg_control *c, pl_err *e)
{
    Pslora__Envelope *env = unpack_kind(scratch, bytes, len, src, MSG_CONTROL, e);
    if (!env)
        return -1;
    const Pslora__Control *m = env->control;
    if (m->kind < PSLORA__CONTROL__KIND__STOP || m->kind > PSLORA__CONTROL__KIND__ERROR)
        return pl_errf(e, "rank %d: Control: unknown kind %d", src, (int)m->kind);
    if (m->count < 0)
        return pl_errf(e, "rank %d: Control: negative count %ld", src, (long)m->count);
    c->kind = (msg_ctrl_kind)m->kind;
    c->step = m->step;
    c->value = m->value;
    c->count = m->count;
    copy_line(c->message, sizeof c->message, m->message);
    return 0;
}

/* -------------------------------------------------------------------- Hello */

void msg_hello_init(msg_hello *h, int rank, int world)
{
    memset(h, 0, sizeof *h);
    h->rank = rank;
    h->world = world;
    h->protocol = MSG_PROTOCOL_VERSION;
}

void msg_hello_free(msg_hello *h)
{
    for (int i = 0; i < h->n; i++) {
        free(h->kv[i].key);
        free(h->kv[i].value);
    }
    free(h->kv);
    h->kv = NULL;
    h->n = h->cap = 0;
}

/* 1 when s has no control characters (so it prints as part of one line). */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

const char *msg_hello_get(const msg_hello *h, const char *key)
{
    for (int i = 0; i < h->n; i++)
        if (strcmp(h->kv[i].key, key) == 0)
            return h->kv[i].value;
    return NULL;
}

/* Checks one entry; prefix names where it came from ("rank 3: Hello"). */
static int check_entry(const msg_hello *h, const char *key, const char *value,
                       const char *prefix, pl_err *e)
{
    if (!key || !*key)
        return pl_errf(e, "%s: empty fingerprint key", prefix);
    if (strlen(key) > MSG_KEY_MAX || !printable(key))
        return pl_errf(e, "%s: fingerprint key of %zu bytes is longer than %d or not printable",
                       prefix, strlen(key), MSG_KEY_MAX);
    if (!value || strlen(value) > MSG_VALUE_MAX || !printable(value))
        return pl_errf(e, "%s: %s: value is missing, longer than %d bytes or not printable",
                       prefix, key, MSG_VALUE_MAX);
    if (msg_hello_get(h, key))
        return pl_errf(e, "%s: %s: duplicate fingerprint key", prefix, key);
    if (h->n >= MSG_HELLO_MAX_KEYS)
        return pl_errf(e, "%s: %s: more than %d fingerprint keys", prefix, key,
                       MSG_HELLO_MAX_KEYS);
    return 0;
}

/* Appends without checks (the caller ran check_entry). */
static int append_entry(msg_hello *h, const char *key, const char *value, pl_err *e)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        msg_kv *kv = realloc(h->kv, (size_t)cap * sizeof *kv);
        if (!kv)
            return pl_errf(e, "Hello: out of memory");
        h->kv = kv;
        h->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return pl_errf(e, "Hello: out of memory");
    }
    h->kv[h->n].key = k;
    h->kv[h->n].value = v;
    h->n++;
    return 0;
}

int msg_hello_add(msg_hello *h, const char *key, const char *value, pl_err *e)
{
    if (check_entry(h, key, value, "Hello", e))
        return -1;
    return append_entry(h, key, value, e);
}

int msg_hello_addf(msg_hello *h, pl_err *e, const char *key, const char *fmt, ...)
{
    char value[MSG_VALUE_MAX + 2];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    if (n < 0 || n > MSG_VALUE_MAX)
        return pl_errf(e, "Hello: %s: value longer than %d bytes", key ? key : "?",
                       MSG_VALUE_MAX);
    return msg_hello_add(h, key, value, e);
}

int msg_encode_hello(msg_buf *out, const msg_hello *h, pl_err *e)
{
    Pslora__KeyValue *kv = malloc((size_t)(h->n ? h->n : 1) * sizeof *kv);
    Pslora__KeyValue **ptr = malloc((size_t)(h->n ? h->n : 1) * sizeof *ptr);
    if (!kv || !ptr) {
        free(kv);
        free(ptr);
        return pl_errf(e, "Hello: out of memory");
    }
    for (int i = 0; i < h->n; i++) {
        pslora__key_value__init(&kv[i]);
        kv[i].key = h->kv[i].key;
        kv[i].value = h->kv[i].value;
        ptr[i] = &kv[i];
    }
    Pslora__Hello m = PSLORA__HELLO__INIT;
    m.rank = h->rank;
    m.world = h->world;
    m.protocol = h->protocol;
    m.n_fingerprint = (size_t)h->n;
    m.fingerprint = ptr;
    Pslora__Envelope env = PSLORA__ENVELOPE__INIT;
    env.body_case = PSLORA__ENVELOPE__BODY_HELLO;
    env.hello = &m;
    int rc = pack_envelope(out, &env, "Hello", e);
    free(kv);
    free(ptr);
    return rc;
}

/* Copies a decoded Hello into h, checking every entry. */
static int hello_from_msg(const Pslora__Hello *m, int src, msg_hello *h, pl_err *e)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "rank %d: Hello", src);
    if (m->rank != src)
        return pl_errf(e, "rank %d: Hello claims rank %d", src, (int)m->rank);
    if (m->world < 1 || m->rank >= m->world)
        return pl_errf(e, "rank %d: Hello: rank outside world size %d", src, (int)m->world);
    if (m->n_fingerprint > MSG_HELLO_MAX_KEYS)
        return pl_errf(e, "%s: %zu fingerprint keys (at most %d)", prefix, m->n_fingerprint,
                       MSG_HELLO_MAX_KEYS);
    msg_hello_init(h, m->rank, m->world);
    h->protocol = m->protocol;
    for (size_t i = 0; i < m->n_fingerprint; i++) {
        const Pslora__KeyValue *kv = m->fingerprint[i];
        if (check_entry(h, kv->key, kv->value, prefix, e) ||
            append_entry(h, kv->key, kv->value, e))
            return -1;
    }
    return 0;
}

int msg_decode_hello(const void *bytes, size_t len, int src, msg_hello *h, pl_err *e)
{
    memset(h, 0, sizeof *h);
    msg_buf scratch = {0};
    Pslora__Envelope *env = unpack_kind(&scratch, bytes, len, src, MSG_HELLO, e);
    int rc = env ? hello_from_msg(env->hello, src, h, e) : -1;
    msg_buf_free(&scratch);
    return rc;
}

int msg_hello_compare(const msg_hello *worker, const msg_hello *server, pl_err *e)
{
    int r = worker->rank;
    if (worker->protocol != server->protocol)
        return pl_errf(e, "rank %d: protocol version differs: worker has %d, server has %d", r,
                       worker->protocol, server->protocol);
    if (worker->world != server->world)
        return pl_errf(e, "rank %d: world size differs: worker has %d, server has %d", r,
                       worker->world, server->world);
    for (int i = 0; i < server->n; i++) {
        const char *k = server->kv[i].key, *sv = server->kv[i].value;
        const char *wv = msg_hello_get(worker, k);
        if (!wv || strcmp(wv, sv) != 0)
            return pl_errf(e, "rank %d: %s differs: worker has %s, server has %s", r, k,
                           wv ? wv : "(none)", sv);
    }
    for (int i = 0; i < worker->n; i++)
        if (!msg_hello_get(server, worker->kv[i].key))
            return pl_errf(e, "rank %d: %s differs: worker has %s, server has (none)", r,
                           worker->kv[i].key, worker->kv[i].value);
    return 0;
}

uint64_t msg_hash64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}
