/* dnnl_matmul.c - see dnnl_matmul.h.
 *
 * oneDNN 2.6 C API.  One CPU engine and one in-order stream serve the whole
 * process (created once, kept until exit).  A handle holds:
 *   - the weights in bf16 (or fp32 in place: dm_linear_wrap_f32), per
 *     orientation: forward uses the matmul weights
 *     [K=in, N=out], backward [K=out, N=in].  Packed, the layout is the one
 *     oneDNN picks for DM_PACK_ROWS rows, and every later primitive is
 *     created for that exact layout; DM_FWD_BWD_ONE keeps one plain copy and
 *     describes it twice (tags ab / ba over the same buffer), in oneDNN's
 *     own buffer (dm_linear_pack) or the caller's (dm_linear_wrap_bf16);
 *   - a small cache of primitives keyed by (rows, kind), each with its memory
 *     objects, so a repeated call allocates nothing;
 *   - an arena (its own, or one shared with other handles) holding the bf16
 *     copy of the activations and the scratchpad, both grown to the largest
 *     call; primitives get their buffers from it just before each run.
 * An fp32 handle reads the activations as they lie: no copy, only the
 * scratchpad. */
#include "dnnl_matmul.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "kernels.h"

/* xb[n*K + k] = bf16(x[n*K + k]) for n < N: the matmul's bf16 source,
 * rounded by the producers' own loop (kernels.h, k_bf16_row). */
void dm_to_bf16(uint16_t *xb, const float *x, int N, int K)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        k_bf16_row(xb + (size_t)n * K, x + (size_t)n * K, (size_t)K);
}

#ifndef PSLORA_HAVE_DNNL

#define NO_DNNL "oneDNN matmul: built without oneDNN (install libdnnl-dev and rebuild)"

int dm_available(void) { return 0; }

dm_linear *dm_linear_pack(const void *w, dm_dtype dt, dm_layout layout, int in, int out,
                          int with_bwd, pl_err *e)
{
    (void)w, (void)dt, (void)layout, (void)in, (void)out, (void)with_bwd;
    pl_errf(e, NO_DNNL);
    return NULL;
}

int dm_linear_fwd(dm_linear *h, const float *x, float *y, const float *bias, int N, pl_err *e)
{
    (void)h, (void)x, (void)y, (void)bias, (void)N;
    return pl_errf(e, NO_DNNL);
}

int dm_linear_fwd_acc(dm_linear *h, const float *x, float *y, const float *bias, int N,
                      pl_err *e)
{
    return dm_linear_fwd(h, x, y, bias, N, e);
}

dm_linear *dm_linear_wrap_bf16(void *data, dm_layout layout, int in, int out, pl_err *e)
{
    (void)data, (void)layout, (void)in, (void)out;
    pl_errf(e, NO_DNNL);
    return NULL;
}

int dm_linear_fill(dm_linear *h, const void *w, dm_dtype dt, pl_err *e)
{
    (void)h, (void)w, (void)dt;
    return pl_errf(e, NO_DNNL);
}

size_t dm_packed_bytes(int in, int out, pl_err *e)
{
    (void)in, (void)out;
    pl_errf(e, NO_DNNL);
    return 0;
}

dm_linear *dm_linear_wrap_packed(void *data, dm_layout layout, int in, int out, pl_err *e)
{
    (void)data, (void)layout, (void)in, (void)out;
    pl_errf(e, NO_DNNL);
    return NULL;
}

dm_linear *dm_linear_wrap_f32(const float *w, dm_layout layout, int in, int out, pl_err *e)
{
    (void)w, (void)layout, (void)in, (void)out;
    pl_errf(e, NO_DNNL);
    return NULL;
}

size_t dm_plain_bytes(int in, int out) { return (size_t)in * (size_t)out * 2; }

size_t dm_weight_bytes(const dm_linear *h)
{
    (void)h;
    return 0;
}

dm_arena *dm_arena_new(void) { return NULL; }
void dm_linear_use_arena(dm_linear *h, dm_arena *a) { (void)h, (void)a; }
size_t dm_arena_bytes(const dm_arena *a)
{
    (void)a;
    return 0;
}
void dm_arena_free(dm_arena *a) { (void)a; }
void dm_arena_time_convert(dm_arena *a, double *sec) { (void)a, (void)sec; }

int dm_linear_fwd_bf16(dm_linear *h, const uint16_t *xb, float *y, const float *bias, int N,
                       int acc, pl_err *e)
{
    (void)h, (void)xb, (void)y, (void)bias, (void)N, (void)acc;
    return pl_errf(e, NO_DNNL);
}

int dm_linear_bwd_x(dm_linear *h, const float *dy, float *dx, int N, int accumulate, pl_err *e)
{
    (void)h, (void)dy, (void)dx, (void)N, (void)accumulate;
    return pl_errf(e, NO_DNNL);
}

int dm_linear_bwd_x_bf16(dm_linear *h, const uint16_t *dyb, float *dx, int N, int accumulate,
                         pl_err *e)
{
    (void)h, (void)dyb, (void)dx, (void)N, (void)accumulate;
    return pl_errf(e, NO_DNNL);
}

const char *dm_impl_name(const dm_linear *h, int bwd)
{
    (void)h, (void)bwd;
    return "";
}

void dm_free(dm_linear *h) { (void)h; }

#else /* PSLORA_HAVE_DNNL */

#include <dnnl.h>
#include <pthread.h>

#define DM_PACK_ROWS 1024 /* rows the packed weight layout is chosen for */
#define DM_MAX_PRIMS 8    /* (rows, kind) primitives cached per handle */

/* A primitive's kind: bit flags. */
enum { KB_ACC = 1, KB_BIAS = 2, KB_BWD = 4 };

typedef struct {
    int N, kind;   /* N == 0: free slot */
    unsigned long long used;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst, bias, scratch;
    char impl[64];
} dm_prim;

typedef struct {
    void *p;
    size_t cap;   /* bytes */
} dm_buf;

struct dm_arena {
    dm_buf xb;        /* bf16 activations */
    dm_buf scratch;   /* oneDNN scratchpad */
    double *convert_sec;   /* NULL, or where the seconds of dm_to_bf16 go */
};

struct dm_linear {
    int in, out, bwd;
    int wrapped;                 /* the weights lie in the caller's memory */
    dm_layout layout;            /* of the source weights */
    dnnl_data_type_t dt;         /* of the weights and the matmul's source: bf16 or f32 */
    dnnl_memory_desc_t wmd[2];   /* weights: [0] forward, [1] backward */
    dnnl_memory_t wmem[2];
    size_t wbytes;
    dm_arena own, *arena;
    dm_prim prims[DM_MAX_PRIMS];
    unsigned long long clock;
    const char *last_impl[2];
};

static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static dnnl_status_t g_init_status = dnnl_runtime_error;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    g_init_status = dnnl_engine_create(&g_engine, dnnl_cpu, 0);
    if (g_init_status == dnnl_success)
        g_init_status = dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags);
}

int dm_available(void) { return 1; }

int dm_engine(dnnl_engine_t *eng, dnnl_stream_t *st, pl_err *e)
{
    pthread_once(&g_once, engine_init);
    if (g_init_status != dnnl_success)
        return pl_errf(e, "oneDNN: cannot create the oneDNN CPU engine (status %d)",
                       (int)g_init_status);
    if (eng)
        *eng = g_engine;
    if (st)
        *st = g_stream;
    return 0;
}

/* Grows b to at least bytes (64-byte aligned; contents not kept). */
static int buf_reserve(dm_buf *b, size_t bytes, pl_err *e)
{
    if (bytes <= b->cap)
        return 0;
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return pl_errf(e, "oneDNN matmul: out of memory (%zu bytes of scratch)", bytes);
    free(b->p);
    b->p = p, b->cap = bytes;
    return 0;
}

/* Orientation o: (K, Nc) of the matmul weights. */
static void orient_dims(const dm_linear *h, int o, int *K, int *Nc)
{
    *K = o == 0 ? h->in : h->out;
    *Nc = o == 0 ? h->out : h->in;
}

/* Plain 2-D descriptor [d0, d1] with tag ab (row-major) or ba (transposed). */
static dnnl_status_t md2(dnnl_memory_desc_t *md, int64_t d0, int64_t d1, dnnl_data_type_t dt,
                         dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {d0, d1};
    return dnnl_memory_desc_init_by_tag(md, 2, dims, dt, tag);
}

/* Gives attr the sum post-op: the primitive adds its result to dst. */
static dnnl_status_t dm_attr_sum(dnnl_primitive_attr_t attr)
{
    dnnl_post_ops_t po = NULL;
    dnnl_status_t s = dnnl_post_ops_create(&po);
    if (s == dnnl_success)
        s = dnnl_post_ops_append_sum(po, 1.0f);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_post_ops(attr, po);
    if (po)
        dnnl_post_ops_destroy(po);
    return s;
}

/* Attributes: user scratchpad, and the sum post-op (dst += result) with acc. */
static dnnl_status_t matmul_attr(dnnl_primitive_attr_t *attr, int acc)
{
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && acc)
        s = dm_attr_sum(*attr);
    return s;
}

/* Matmul primitive descriptor for [N,K] (type dt) x weights -> [N,Nc] fp32. */
static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, int N, int K, int Nc,
                               dnnl_data_type_t dt, const dnnl_memory_desc_t *wmd, int bias,
                               int acc)
{
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = md2(&smd, N, K, dt, dnnl_ab);
    if (s == dnnl_success)
        s = md2(&dmd, N, Nc, dnnl_f32, dnnl_ab);
    if (s == dnnl_success && bias)
        s = md2(&bmd, 1, Nc, dnnl_f32, dnnl_ab);
    if (s == dnnl_success)
        s = dnnl_matmul_desc_init(&desc, &smd, wmd, bias ? &bmd : NULL, &dmd);
    if (s == dnnl_success)
        s = matmul_attr(&attr, acc);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(pd, &desc, attr, g_engine, NULL);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Source element (k, n) of orientation o lies row-major in W: forward
 * (k=i, n=o) at o*in+i in [out,in] (tag ba) and at i*out+o in [in,out] (ab);
 * backward the other way round. */
static dnnl_format_tag_t source_tag(dm_layout layout, int o)
{
    return (layout == DM_IN_OUT) == (o == 0) ? dnnl_ab : dnnl_ba;
}

/* Copies the source weights (fp32 or bf16, as they lie) into h->wmem[o]. */
static dnnl_status_t reorder_into(dm_linear *h, int o, const void *w, dm_dtype dt,
                                  dm_layout layout)
{
    int K, Nc;
    orient_dims(h, o, &K, &Nc);
    dnnl_memory_desc_t umd;
    dnnl_memory_t user = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_status_t s = md2(&umd, K, Nc, dt == DM_BF16 ? dnnl_bf16 : dnnl_f32, source_tag(layout, o));
    if (s == dnnl_success)
        s = dnnl_memory_create(&user, &umd, g_engine, (void *)w);
    if (s == dnnl_success)
        s = dnnl_reorder_primitive_desc_create(&rpd, &umd, g_engine, &h->wmd[o], g_engine, NULL);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&reorder, rpd);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, h->wmem[o]}};
        s = dnnl_primitive_execute(reorder, g_stream, 2, args);
    }
    if (s == dnnl_success)
        s = dnnl_stream_wait(g_stream);
    if (reorder)
        dnnl_primitive_destroy(reorder);
    if (rpd)
        dnnl_primitive_desc_destroy(rpd);
    if (user)
        dnnl_memory_destroy(user);
    return s;
}

/* oneDNN's packed layout of orientation o, as its matmul prefers it for
 * DM_PACK_ROWS rows (the same for every process on this CPU and library). */
static dnnl_status_t packed_md(const dm_linear *h, int o, dnnl_memory_desc_t *md)
{
    int K, Nc;
    orient_dims(h, o, &K, &Nc);
    dnnl_memory_desc_t any;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = md2(&any, K, Nc, dnnl_bf16, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = matmul_pd(&pd, DM_PACK_ROWS, K, Nc, dnnl_bf16, &any, 0, 0);
    if (s == dnnl_success)
        *md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    return s;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* The packed memories of orientations 0 .. n-1: oneDNN's own (data NULL),
 * or the caller's, orientation 1 from the first 64-byte boundary after
 * orientation 0.  *span (may be NULL): the bytes of data so used. */
static int packed_mems(dm_linear *h, int n, unsigned char *data, size_t *span, pl_err *e)
{
    size_t off = 0;
    for (int o = 0; o < n; o++) {
        dnnl_status_t s = packed_md(h, o, &h->wmd[o]);
        if (s == dnnl_success)
            s = dnnl_memory_create(&h->wmem[o], &h->wmd[o], g_engine,
                                   data ? (void *)(data + off) : DNNL_MEMORY_ALLOCATE);
        if (s != dnnl_success)
            return pl_errf(e, "bf16 matmul: laying out %s weights [%d -> %d] failed (oneDNN "
                              "status %d)", o == 0 ? "forward" : "backward", h->in, h->out, (int)s);
        size_t sz = dnnl_memory_desc_get_size(&h->wmd[o]);
        h->wbytes += sz, off = align64(off + sz);
    }
    if (span)
        *span = off;
    return 0;
}

/* Writes the source weights (as they lie, h->layout) into the packed
 * memories of orientations 0 .. n-1. */
static int packed_fill(dm_linear *h, int n, const void *w, dm_dtype dt, pl_err *e)
{
    for (int o = 0; o < n; o++) {
        dnnl_status_t s = reorder_into(h, o, w, dt, h->layout);
        int K, Nc;
        orient_dims(h, o, &K, &Nc);
        if (s != dnnl_success)
            return pl_errf(e, "bf16 matmul: packing %s weights [K=%d, N=%d] failed (oneDNN status "
                              "%d)", o == 0 ? "forward" : "backward", K, Nc, (int)s);
    }
    return 0;
}

/* DM_FWD_BWD_ONE: one plain buffer of h->dt (data, or oneDNN's own with
 * DNNL_MEMORY_ALLOCATE) in the source's row-major layout, described for the
 * forward (wmd[0]) and, over the same buffer, for the backward orientation
 * (wmd[1]).  Reads nothing of the buffer. */
static int plain_mems(dm_linear *h, void *data, pl_err *e)
{
    void *p = NULL;
    dnnl_status_t s = md2(&h->wmd[0], h->in, h->out, h->dt, source_tag(h->layout, 0));
    if (s == dnnl_success)
        s = md2(&h->wmd[1], h->out, h->in, h->dt, source_tag(h->layout, 1));
    if (s == dnnl_success)
        s = dnnl_memory_create(&h->wmem[0], &h->wmd[0], g_engine, data);
    if (s == dnnl_success)
        s = dnnl_memory_get_data_handle(h->wmem[0], &p);
    if (s == dnnl_success)
        s = dnnl_memory_create(&h->wmem[1], &h->wmd[1], g_engine, p);
    if (s != dnnl_success)
        return pl_errf(e, "oneDNN matmul: describing weights [%d -> %d] failed (oneDNN status %d)",
                       h->in, h->out, (int)s);
    h->wbytes = dnnl_memory_desc_get_size(&h->wmd[0]);
    return 0;
}

/* Writes W (as it lies, fp32 or bf16) into the plain copy of h. */
static int fill_plain(dm_linear *h, const void *w, dm_dtype dt, pl_err *e)
{
    dnnl_status_t s = reorder_into(h, 0, w, dt, h->layout);
    if (s != dnnl_success)
        return pl_errf(e, "bf16 matmul: copying weights [%d -> %d] failed (oneDNN status %d)",
                       h->in, h->out, (int)s);
    return 0;
}

/* A handle for in x out weights in layout, nothing held yet; NULL (e filled)
 * for bad arguments or without the engine. */
static dm_linear *handle_new(int in, int out, dm_layout layout, int bwd, dnnl_data_type_t dt,
                             pl_err *e)
{
    if (in < 1 || out < 1 || bwd < DM_FWD_ONLY || bwd > DM_FWD_BWD_ONE) {
        pl_errf(e, "oneDNN matmul: bad weights (in %d, out %d, bwd %d)", in, out, bwd);
        return NULL;
    }
    if (dm_engine(NULL, NULL, e) != 0)
        return NULL;
    dm_linear *h = calloc(1, sizeof *h);
    if (!h) {
        pl_errf(e, "oneDNN matmul: out of memory");
        return NULL;
    }
    h->in = in, h->out = out, h->bwd = bwd, h->layout = layout, h->dt = dt, h->arena = &h->own;
    h->last_impl[0] = h->last_impl[1] = "";
    return h;
}

dm_linear *dm_linear_pack(const void *w, dm_dtype dt, dm_layout layout, int in, int out,
                          int bwd, pl_err *e)
{
    if (!w) {
        pl_errf(e, "bf16 matmul: bad weights (NULL, in %d, out %d, bwd %d)", in, out, bwd);
        return NULL;
    }
    dm_linear *h = handle_new(in, out, layout, bwd, dnnl_bf16, e);
    if (!h)
        return NULL;
    int rc;
    if (bwd == DM_FWD_BWD_ONE) {
        rc = plain_mems(h, DNNL_MEMORY_ALLOCATE, e);
        if (rc == 0)
            rc = fill_plain(h, w, dt, e);
    } else {
        int n = bwd == DM_FWD_BWD ? 2 : 1;
        rc = packed_mems(h, n, NULL, NULL, e);
        if (rc == 0)
            rc = packed_fill(h, n, w, dt, e);
    }
    if (rc != 0) {
        dm_free(h);
        return NULL;
    }
    return h;
}

dm_linear *dm_linear_wrap_bf16(void *data, dm_layout layout, int in, int out, pl_err *e)
{
    if (!data) {
        pl_errf(e, "bf16 matmul: no memory to wrap for weights [%d -> %d]", in, out);
        return NULL;
    }
    dm_linear *h = handle_new(in, out, layout, DM_FWD_BWD_ONE, dnnl_bf16, e);
    if (h && plain_mems(h, data, e) != 0) {
        dm_free(h);
        return NULL;
    }
    return h;
}

size_t dm_packed_bytes(int in, int out, pl_err *e)
{
    dm_linear *h = handle_new(in, out, DM_OUT_IN, DM_FWD_BWD, dnnl_bf16, e);
    size_t span = 0;
    int rc = h ? packed_mems(h, 2, NULL, &span, e) : -1;
    dm_free(h);
    return rc == 0 ? span : 0;
}

dm_linear *dm_linear_wrap_packed(void *data, dm_layout layout, int in, int out, pl_err *e)
{
    if (!data) {
        pl_errf(e, "bf16 matmul: no memory to wrap for packed weights [%d -> %d]", in, out);
        return NULL;
    }
    dm_linear *h = handle_new(in, out, layout, DM_FWD_BWD, dnnl_bf16, e);
    if (h && packed_mems(h, 2, data, NULL, e) != 0) {
        dm_free(h);
        return NULL;
    }
    if (h)
        h->wrapped = 1;
    return h;
}

dm_linear *dm_linear_wrap_f32(const float *w, dm_layout layout, int in, int out, pl_err *e)
{
    if (!w) {
        pl_errf(e, "fp32 matmul: no weights to wrap for [%d -> %d]", in, out);
        return NULL;
    }
    dm_linear *h = handle_new(in, out, layout, DM_FWD_BWD_ONE, dnnl_f32, e);
    if (h && plain_mems(h, (void *)w, e) != 0) {   /* oneDNN only reads weights */
        dm_free(h);
        return NULL;
    }
    return h;
}

int dm_linear_fill(dm_linear *h, const void *w, dm_dtype dt, pl_err *e)
{
    if (h && w && h->dt == dnnl_bf16 && h->wrapped && h->bwd == DM_FWD_BWD)
        return packed_fill(h, 2, w, dt, e);
    if (!h || !w || h->bwd != DM_FWD_BWD_ONE || h->dt != dnnl_bf16)
        return pl_errf(e, "bf16 matmul: fill needs weights and a plain bf16 (DM_FWD_BWD_ONE) "
                          "or a wrapped packed handle");
    return fill_plain(h, w, dt, e);
}

size_t dm_plain_bytes(int in, int out) { return (size_t)in * (size_t)out * sizeof(uint16_t); }

size_t dm_weight_bytes(const dm_linear *h) { return h ? h->wbytes : 0; }

static void prim_release(dm_prim *p)
{
    if (p->prim)
        dnnl_primitive_destroy(p->prim);
    if (p->src)
        dnnl_memory_destroy(p->src);
    if (p->dst)
        dnnl_memory_destroy(p->dst);
    if (p->bias)
        dnnl_memory_destroy(p->bias);
    if (p->scratch)
        dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

/* A memory object for the primitive's md `what` (index i), its data handle
 * set at each run. */
static dnnl_status_t prim_mem(dnnl_memory_t *m, const_dnnl_primitive_desc_t pd,
                              dnnl_query_t what, int i)
{
    const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, what, i);
    return dnnl_memory_create(m, q, g_engine, DNNL_MEMORY_NONE);
}

/* Builds the primitive and memory objects of (N, kind) into slot p, growing
 * the arena's scratchpad to what it needs. */
static int prim_build(dm_linear *h, dm_prim *p, int N, int kind, pl_err *e)
{
    int o = (kind & KB_BWD) != 0, K, Nc;
    orient_dims(h, o, &K, &Nc);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = matmul_pd(&pd, N, K, Nc, h->dt, &h->wmd[o], kind & KB_BIAS, kind & KB_ACC);
    const char *impl = NULL;
    if (s == dnnl_success && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
                                 dnnl_success && impl)
        snprintf(p->impl, sizeof p->impl, "%s", impl);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&p->prim, pd);
    if (s == dnnl_success)
        s = prim_mem(&p->src, pd, dnnl_query_src_md, 0);
    if (s == dnnl_success)
        s = prim_mem(&p->dst, pd, dnnl_query_dst_md, 0);
    if (s == dnnl_success && (kind & KB_BIAS))
        s = prim_mem(&p->bias, pd, dnnl_query_weights_md, 1);
    size_t sz = 0;
    if (s == dnnl_success) {
        const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        sz = q ? dnnl_memory_desc_get_size(q) : 0;
        if (sz)
            s = prim_mem(&p->scratch, pd, dnnl_query_scratchpad_md, 0);
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) {
        prim_release(p);
        return pl_errf(e,
                       "oneDNN matmul: no %s primitive for [%d x %d] x [%d x %d] (oneDNN status %d)",
                       o == 0 ? "forward" : "backward", N, K, K, Nc, (int)s);
    }
    if (buf_reserve(&h->arena->scratch, sz, e) != 0) {
        prim_release(p);
        return -1;
    }
    p->N = N, p->kind = kind;
    return 0;
}

/* The cached primitive of (N, kind), built on first use (evicting the least
 * recently used one when the cache is full). */
static dm_prim *prim_get(dm_linear *h, int N, int kind, pl_err *e)
{
    dm_prim *victim = &h->prims[0];
    for (int i = 0; i < DM_MAX_PRIMS; i++) {
        dm_prim *p = &h->prims[i];
        if (p->N == N && p->kind == kind) {
            p->used = ++h->clock;
            return p;
        }
        if (p->used < victim->used)
            victim = p;
    }
    prim_release(victim);
    if (prim_build(h, victim, N, kind, e) != 0)
        return NULL;
    victim->used = ++h->clock;
    return victim;
}

static int exec_prim(dm_linear *h, dm_prim *p, int o, const void *src, float *dst,
                     const float *bias, pl_err *e);

/* Runs (N, kind) on src (fp32 [N,K]: rounded into the arena for bf16
 * weights, read as it lies for fp32 ones) writing dst. */
static int run(dm_linear *h, int N, int kind, const float *src, float *dst, const float *bias,
               pl_err *e)
{
    int o = (kind & KB_BWD) != 0, K = o ? h->out : h->in, bf16 = h->dt == dnnl_bf16;
    if (bf16 && buf_reserve(&h->arena->xb, (size_t)N * K * sizeof(uint16_t), e) != 0)
        return -1;
    dm_prim *p = prim_get(h, N, kind, e);
    if (!p)
        return -1;
    if (!bf16)
        return exec_prim(h, p, o, src, dst, bias, e);
    double t0 = h->arena->convert_sec ? clock_now() : 0;
    dm_to_bf16(h->arena->xb.p, src, N, K);
    if (h->arena->convert_sec)
        *h->arena->convert_sec += clock_now() - t0;
    return exec_prim(h, p, o, h->arena->xb.p, dst, bias, e);
}

/* Executes primitive p (orientation o) on its source src (bf16 or fp32, as
 * the handle's weights), writing dst. */
static int exec_prim(dm_linear *h, dm_prim *p, int o, const void *src, float *dst,
                     const float *bias, pl_err *e)
{
    dnnl_exec_arg_t args[5];
    int n = 0;
    dnnl_status_t s = dnnl_memory_set_data_handle(p->src, (void *)src);
    if (s == dnnl_success)
        s = dnnl_memory_set_data_handle(p->dst, dst);
    if (s == dnnl_success && p->bias)
        s = dnnl_memory_set_data_handle(p->bias, (void *)bias);
    if (s == dnnl_success && p->scratch)
        s = dnnl_memory_set_data_handle(p->scratch, h->arena->scratch.p);
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, h->wmem[o]};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DST, p->dst};
    if (p->bias)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    if (p->scratch)
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    if (s == dnnl_success)
        s = dnnl_primitive_execute(p->prim, g_stream, n, args);
    if (s == dnnl_success)
        s = dnnl_stream_wait(g_stream);
    if (s != dnnl_success)
        return pl_errf(e, "oneDNN matmul: execution failed (oneDNN status %d)", (int)s);
    h->last_impl[o] = p->impl;
    return 0;
}

static int fwd(dm_linear *h, const float *x, float *y, const float *bias, int N, int acc,
               pl_err *e)
{
    if (!h || !x || !y || N < 1)
        return pl_errf(e, "oneDNN matmul: bad forward call (N %d)", N);
    return run(h, N, (bias ? KB_BIAS : 0) | (acc ? KB_ACC : 0), x, y, bias, e);
}

int dm_linear_fwd(dm_linear *h, const float *x, float *y, const float *bias, int N, pl_err *e)
{
    return fwd(h, x, y, bias, N, 0, e);
}

int dm_linear_fwd_acc(dm_linear *h, const float *x, float *y, const float *bias, int N,
                      pl_err *e)
{
    return fwd(h, x, y, bias, N, 1, e);
}

int dm_linear_fwd_bf16(dm_linear *h, const uint16_t *xb, float *y, const float *bias, int N,
                       int acc, pl_err *e)
{
    if (!h || !xb || !y || N < 1 || h->dt != dnnl_bf16)
        return pl_errf(e, "bf16 matmul: bad forward call (N %d%s)", N,
                       h && h->dt != dnnl_bf16 ? ", fp32 weights" : "");
    int kind = (bias ? KB_BIAS : 0) | (acc ? KB_ACC : 0);
    dm_prim *p = prim_get(h, N, kind, e);
    return p ? exec_prim(h, p, 0, xb, y, bias, e) : -1;
}

/* The backward needs weights held for it. */
static int check_bwd(const dm_linear *h, pl_err *e)
{
    if (h->bwd == DM_FWD_ONLY)
        return pl_errf(e, "oneDNN matmul: weights [%d -> %d] were packed without a backward "
                          "orientation (with_bwd)", h->in, h->out);
    return 0;
}

int dm_linear_bwd_x(dm_linear *h, const float *dy, float *dx, int N, int accumulate, pl_err *e)
{
    if (!h || !dy || !dx || N < 1)
        return pl_errf(e, "oneDNN matmul: bad backward call (N %d)", N);
    if (check_bwd(h, e) != 0)
        return -1;
    return run(h, N, KB_BWD | (accumulate ? KB_ACC : 0), dy, dx, NULL, e);
}

int dm_linear_bwd_x_bf16(dm_linear *h, const uint16_t *dyb, float *dx, int N, int accumulate,
                         pl_err *e)
{
    if (!h || !dyb || !dx || N < 1 || h->dt != dnnl_bf16)
        return pl_errf(e, "bf16 matmul: bad backward call (N %d%s)", N,
                       h && h->dt != dnnl_bf16 ? ", fp32 weights" : "");
    if (check_bwd(h, e) != 0)
        return -1;
    dm_prim *p = prim_get(h, N, KB_BWD | (accumulate ? KB_ACC : 0), e);
    return p ? exec_prim(h, p, 1, dyb, dx, NULL, e) : -1;
}

const char *dm_impl_name(const dm_linear *h, int bwd) { return h ? h->last_impl[bwd != 0] : ""; }

static void arena_release(dm_arena *a)
{
    free(a->xb.p);
    free(a->scratch.p);
    memset(a, 0, sizeof *a);
}

void dm_free(dm_linear *h)
{
    if (!h)
        return;
    for (int i = 0; i < DM_MAX_PRIMS; i++)
        prim_release(&h->prims[i]);
    for (int o = 1; o >= 0; o--)   /* wmem[1] may borrow wmem[0]'s buffer */
        if (h->wmem[o])
            dnnl_memory_destroy(h->wmem[o]);
    arena_release(&h->own);
    free(h);
}

dm_arena *dm_arena_new(void) { return calloc(1, sizeof(dm_arena)); }

void dm_linear_use_arena(dm_linear *h, dm_arena *a)
{
    if (h && a)
        h->arena = a;
}

size_t dm_arena_bytes(const dm_arena *a) { return a ? a->xb.cap + a->scratch.cap : 0; }

void dm_arena_time_convert(dm_arena *a, double *sec)
{
    if (a)
        a->convert_sec = sec;
}

void dm_arena_free(dm_arena *a)
{
    if (!a)
        return;
    arena_release(a);
    free(a);
}

#endif /* PSLORA_HAVE_DNNL */
