/* dnnl_matmul.c - see dnnl_matmul.h.
 *
 * oneDNN 2.6 C API.  One CPU engine and one in-order stream serve the whole
 * process (created once, kept until exit).  A handle holds:
 *   - the weights packed in bf16, per orientation: forward uses the matmul
 *     weights [K=in, N=out], backward [K=out, N=in]; the packed layout is the
 *     one oneDNN picks for DM_PACK_ROWS rows, and every later primitive is
 *     created for that exact layout;
 *   - a small cache of primitives keyed by (rows, kind), each with its memory
 *     objects and its own scratchpad, so a repeated call allocates nothing;
 *   - the bf16 copy of the activations (grows to the largest call). */
#include "dnnl_matmul.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023 /* linux/arch/x86/include/uapi/asm/prctl.h */
#define XFEATURE_XTILEDATA 18

int dm_cpu_has_amx(void)
{
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    int amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1;
    if (!amx_bf16 || !amx_tile)
        return 0;
#if defined(__linux__)
    /* Linux >= 5.16 hands out the 8 KB tile state only on request; older
     * kernels reject the call and cannot run AMX code at all. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 0;
#endif
    return 1;
#else
    return 0;
#endif
}

#ifndef PSLORA_HAVE_DNNL

#define NO_DNNL "bf16 matmul: built without oneDNN (install libdnnl-dev and rebuild)"

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

int dm_linear_bwd_x(dm_linear *h, const float *dy, float *dx, int N, int accumulate, pl_err *e)
{
    (void)h, (void)dy, (void)dx, (void)N, (void)accumulate;
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

enum { K_FWD, K_FWD_BIAS, K_BWD, K_BWD_ACC };

typedef struct {
    int N, kind;   /* N == 0: free slot */
    unsigned long long used;
    dnnl_primitive_t prim;
    dnnl_memory_t src, dst, bias, scratch;
    void *scratch_buf;
    char impl[64];
} dm_prim;

struct dm_linear {
    int in, out, have_bwd;
    dnnl_memory_desc_t wmd[2];   /* packed weights: [0] forward, [1] backward */
    dnnl_memory_t wmem[2];
    uint16_t *xb;                /* bf16 activations */
    size_t xb_cap;
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

/* Round to nearest even; NaN stays a (quiet) NaN. */
static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* xb[n*K + k] = bf16(x[n*K + k]) for n < N: the matmul's bf16 source. */
static void to_bf16(uint16_t *xb, const float *x, int N, int K)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * K;
        uint16_t *br = xb + (size_t)n * K;
        for (int k = 0; k < K; k++)
            br[k] = f32_to_bf16(xr[k]);
    }
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

/* Matmul primitive descriptor for [N,K] x weights -> [N,Nc] fp32. */
static dnnl_status_t matmul_pd(dnnl_primitive_desc_t *pd, int N, int K, int Nc,
                               const dnnl_memory_desc_t *wmd, int bias, int acc)
{
    dnnl_memory_desc_t smd, dmd, bmd;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_status_t s = md2(&smd, N, K, dnnl_bf16, dnnl_ab);
    if (s == dnnl_success)
        s = md2(&dmd, N, Nc, dnnl_f32, dnnl_ab);
    if (s == dnnl_success && bias)
        s = md2(&bmd, 1, Nc, dnnl_f32, dnnl_ab);
    if (s == dnnl_success)
        s = dnnl_matmul_desc_init(&desc, &smd, wmd, bias ? &bmd : NULL, &dmd);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && acc) {
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success)
            s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success)
            s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(pd, &desc, attr, g_engine, NULL);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Packs orientation o of the source weights into h->wmem[o]. */
static int pack_one(dm_linear *h, int o, const void *w, dm_dtype dt, dm_layout layout, pl_err *e)
{
    int K, Nc;
    orient_dims(h, o, &K, &Nc);
    dnnl_memory_desc_t any, umd;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t user = NULL;
    /* source element (k, n): forward (k=i, n=o) lies at o*in+i in [out,in] (ba)
     * and at i*out+o in [in,out] (ab); backward is the other way round */
    int plain = (layout == DM_IN_OUT) == (o == 0);
    dnnl_status_t s = md2(&any, K, Nc, dnnl_bf16, dnnl_format_tag_any);
    if (s == dnnl_success)
        s = matmul_pd(&pd, DM_PACK_ROWS, K, Nc, &any, 0, 0);
    if (s == dnnl_success) {
        h->wmd[o] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        s = dnnl_memory_create(&h->wmem[o], &h->wmd[o], g_engine, DNNL_MEMORY_ALLOCATE);
    }
    if (s == dnnl_success)
        s = md2(&umd, K, Nc, dt == DM_BF16 ? dnnl_bf16 : dnnl_f32, plain ? dnnl_ab : dnnl_ba);
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
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (user)
        dnnl_memory_destroy(user);
    if (s != dnnl_success)
        return pl_errf(e, "bf16 matmul: packing %s weights [K=%d, N=%d] failed (oneDNN status %d)",
                       o == 0 ? "forward" : "backward", K, Nc, (int)s);
    return 0;
}

dm_linear *dm_linear_pack(const void *w, dm_dtype dt, dm_layout layout, int in, int out,
                          int with_bwd, pl_err *e)
{
    if (!w || in < 1 || out < 1) {
        pl_errf(e, "bf16 matmul: bad weights (%s, in %d, out %d)", w ? "data" : "NULL", in, out);
        return NULL;
    }
    pthread_once(&g_once, engine_init);
    if (g_init_status != dnnl_success) {
        pl_errf(e, "bf16 matmul: cannot create the oneDNN CPU engine (status %d)",
                (int)g_init_status);
        return NULL;
    }
    dm_linear *h = calloc(1, sizeof *h);
    if (!h) {
        pl_errf(e, "bf16 matmul: out of memory");
        return NULL;
    }
    h->in = in, h->out = out, h->have_bwd = with_bwd != 0;
    h->last_impl[0] = h->last_impl[1] = "";
    for (int o = 0; o < 1 + h->have_bwd; o++)
        if (pack_one(h, o, w, dt, layout, e) != 0) {
            dm_free(h);
            return NULL;
        }
    return h;
}

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
    free(p->scratch_buf);
    memset(p, 0, sizeof *p);
}

/* Builds the primitive and memory objects of (N, kind) into slot p. */
static int prim_build(dm_linear *h, dm_prim *p, int N, int kind, pl_err *e)
{
    int o = kind >= K_BWD, K, Nc;
    orient_dims(h, o, &K, &Nc);
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t s = matmul_pd(&pd, N, K, Nc, &h->wmd[o], kind == K_FWD_BIAS, kind == K_BWD_ACC);
    const char *impl = NULL;
    if (s == dnnl_success && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) ==
                                 dnnl_success && impl)
        snprintf(p->impl, sizeof p->impl, "%s", impl);
    if (s == dnnl_success)
        s = dnnl_primitive_create(&p->prim, pd);
    const dnnl_memory_desc_t *q;
    if (s == dnnl_success) {
        q = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        s = dnnl_memory_create(&p->src, q, g_engine, DNNL_MEMORY_NONE);
    }
    if (s == dnnl_success) {
        q = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        s = dnnl_memory_create(&p->dst, q, g_engine, DNNL_MEMORY_NONE);
    }
    if (s == dnnl_success && kind == K_FWD_BIAS) {
        q = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
        s = dnnl_memory_create(&p->bias, q, g_engine, DNNL_MEMORY_NONE);
    }
    if (s == dnnl_success) {
        q = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t sz = q ? dnnl_memory_desc_get_size(q) : 0;
        if (sz) {
            p->scratch_buf = aligned_alloc(64, (sz + 63) & ~(size_t)63);
            s = p->scratch_buf ? dnnl_memory_create(&p->scratch, q, g_engine, p->scratch_buf)
                               : dnnl_out_of_memory;
        }
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) {
        prim_release(p);
        return pl_errf(e,
                       "bf16 matmul: no %s primitive for [%d x %d] x [%d x %d] (oneDNN status %d)",
                       o == 0 ? "forward" : "backward", N, K, K, Nc, (int)s);
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

/* Makes room for N x K bf16 activations (grows only). */
static int xb_reserve(dm_linear *h, int N, int K, pl_err *e)
{
    size_t need = (size_t)N * K;
    if (need <= h->xb_cap)
        return 0;
    uint16_t *b = aligned_alloc(64, (need * sizeof *b + 63) & ~(size_t)63);
    if (!b)
        return pl_errf(e, "bf16 matmul: out of memory (%zu activations)", need);
    free(h->xb);
    h->xb = b, h->xb_cap = need;
    return 0;
}

/* Runs p on src (fp32 [N,K], rounded into h->xb) writing dst [N,Nc]. */
static int run(dm_linear *h, dm_prim *p, const float *src, float *dst, const float *bias, int K,
               pl_err *e)
{
    to_bf16(h->xb, src, p->N, K);
    dnnl_exec_arg_t args[5];
    int n = 0;
    dnnl_status_t s = dnnl_memory_set_data_handle(p->src, h->xb);
    if (s == dnnl_success)
        s = dnnl_memory_set_data_handle(p->dst, dst);
    if (s == dnnl_success && p->bias)
        s = dnnl_memory_set_data_handle(p->bias, (void *)bias);
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, p->src};
    args[n++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, h->wmem[p->kind >= K_BWD]};
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
        return pl_errf(e, "bf16 matmul: execution failed (oneDNN status %d)", (int)s);
    h->last_impl[p->kind >= K_BWD] = p->impl;
    return 0;
}

int dm_linear_fwd(dm_linear *h, const float *x, float *y, const float *bias, int N, pl_err *e)
{
    if (!h || !x || !y || N < 1)
        return pl_errf(e, "bf16 matmul: bad forward call (N %d)", N);
    if (xb_reserve(h, N, h->in, e) != 0)
        return -1;
    dm_prim *p = prim_get(h, N, bias ? K_FWD_BIAS : K_FWD, e);
    return p ? run(h, p, x, y, bias, h->in, e) : -1;
}

int dm_linear_bwd_x(dm_linear *h, const float *dy, float *dx, int N, int accumulate, pl_err *e)
{
    if (!h || !dy || !dx || N < 1)
        return pl_errf(e, "bf16 matmul: bad backward call (N %d)", N);
    if (!h->have_bwd)
        return pl_errf(e, "bf16 matmul: weights [%d -> %d] were packed without with_bwd", h->in,
                       h->out);
    if (xb_reserve(h, N, h->out, e) != 0)
        return -1;
    dm_prim *p = prim_get(h, N, accumulate ? K_BWD_ACC : K_BWD, e);
    return p ? run(h, p, dy, dx, NULL, h->out, e) : -1;
}

const char *dm_impl_name(const dm_linear *h, int bwd) { return h ? h->last_impl[bwd != 0] : ""; }

void dm_free(dm_linear *h)
{
    if (!h)
        return;
    for (int i = 0; i < DM_MAX_PRIMS; i++)
        prim_release(&h->prims[i]);
    for (int o = 0; o < 2; o++)
        if (h->wmem[o])
            dnnl_memory_destroy(h->wmem[o]);
    free(h->xb);
    free(h);
}

#endif /* PSLORA_HAVE_DNNL */
