/* dnnl_attention.c - see dnnl_attention.h.
 *
 * Every operand is a 4-D view [B, Hk, r, c] of a buffer over the groups of
 * G = H/Hk query heads: element (b, g, r, c) at b*sb + g*sg + r*rs + c
 * (elements; transposed: c*rs + r).
 *
 * The group's query rows are stacked (the header's "stacked order": block
 * by block, in a block member by member) in the copies of q and dO, in S,
 * P, dP, dS and (G > 1) in a scratch for O and dQ that is then scattered
 * to the token rows, so every product takes all G members in ONE matmul
 * per block (S, dP, O, dQ: G*m rows; dK, dV: K = G*(T - j0)): oneDNN 2.6
 * broadcasts the kv operand over the group only on its reference kernel
 * ("ref:any", ~1000x slower), and G small matmuls run well below one of G
 * times the rows.  With G = 1 the stacked rows of a block are its token
 * rows: O and dQ are written in place.  Each product of block i is one
 * primitive (prims[sl][p][i]), created with its memory objects on first
 * use; a call points the memories at the block (dnnl_memory_set_data_handle)
 * and runs it.
 *
 * Slices.  Every (b, g) is independent of the others, from the copies to
 * the last product.  With nsl > 1 slices the batch is cut into nsl runs of
 * nbb = B/nsl batches, and a pass is ONE OpenMP region in which each thread
 * runs a whole slice: its copies, its products (primitives made for nbb
 * batches on one thread, run on the calling thread: oneDNN runs a primitive
 * called inside a parallel region on that thread alone), its softmax rows,
 * its copies back.  A slice has its own primitives, memory objects, stream
 * and scratchpad (user scratchpad mode), so the slices share nothing but
 * the buffers, of which each writes its own batches.  Why: with the
 * products run over the whole batch, a pass was 11 (forward) and 19
 * (backward) regions, each waking the other thread (tens of microseconds
 * under OMP_WAIT_POLICY=passive) and ending in a barrier; see
 * docs/performance.md, "Session 10".  nsl = 1 (B not a multiple of the
 * threads, or one thread) runs the products over the whole batch on all
 * threads, and the loops between them as parallel loops, as before. */
#include "dnnl_attention.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef PSLORA_HAVE_DNNL

da_attn *da_attn_new(const da_shape *s, pl_err *e)
{
    (void)s;
    pl_errf(e, "oneDNN attention: built without oneDNN (install libdnnl-dev and rebuild)");
    return NULL;
}

int da_attn_fwd(da_attn *a, float *out, void *P, const float *q, const float *k, const float *v,
                const da_rows *rows, pl_err *e)
{
    (void)a, (void)out, (void)P, (void)q, (void)k, (void)v, (void)rows;
    return pl_errf(e, "oneDNN attention: built without oneDNN");
}

int da_attn_bwd(da_attn *a, float *dq, float *dk, float *dv, const float *dout, const float *q,
                const float *k, const float *v, const void *P, const da_rows *rows, pl_err *e)
{
    (void)a, (void)dq, (void)dk, (void)dv, (void)dout, (void)q, (void)k, (void)v, (void)P,
        (void)rows;
    return pl_errf(e, "oneDNN attention: built without oneDNN");
}

size_t da_attn_bytes(const da_attn *a)
{
    (void)a;
    return 0;
}

int da_attn_slices(const da_attn *a)
{
    (void)a;
    return 0;
}

void da_attn_free(da_attn *a) { (void)a; }

#else /* PSLORA_HAVE_DNNL */

#include <math.h>

#include "bf16.h"
#include "dnnl_matmul.h"
#include "kernels.h"
#include "vec.h"

/* The products. */
enum { DA_S, DA_O, DA_DP, DA_DQ, DA_DK, DA_DV, DA_NPROD };

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t mem[4]; /* A (src), W (weights), C (dst), scratchpad (NULL: none) */
} da_prim;

/* What a slice owns besides its primitives. */
typedef struct {
    dnnl_stream_t st;
    void *pad;            /* scratchpad of its primitives (the largest they need) */
    size_t padsz;
} da_slice;

struct da_attn {
    da_shape s;
    int G, nb;                               /* group size, row blocks */
    int nsl, nbb;                            /* slices, batches per slice */
    float scale;                             /* 1/sqrt(D) */
    dnnl_data_type_t dt;                     /* the products' inputs: bf16 or f32 */
    size_t esz;                              /* bytes of one of their elements */
    int64_t lk, lv;                          /* row strides of the operands k, v */
    dnnl_engine_t eng;
    da_slice *sl;                            /* [nsl] */
    void *q, *dout;                          /* stacked copies (bf16 or fp32), see the header */
    float *os;                               /* G > 1: O, then dQ, stacked */
    uint16_t *k, *v, *dS;                    /* bf16 only: the copies, see the header */
    float *S;                                /* bf16: S, then dP; fp32: dP, then dS */
    size_t bytes;
    int built[2];                            /* forward, backward primitives made */
    da_prim *prims;                          /* [nsl][DA_NPROD][nb] */
};

/* Strides of a view (elements): batch, kv head, row; the column stride is
 * 1 unless the view is read transposed (rows 1, cols rs). */
typedef struct {
    int64_t sb, sg, rs;
} da_view;

/* One product of one block: C[m,n] = A[m,K] W[K,n] over [B, Hk]. */
typedef struct {
    int m, n, K, ta, tw;     /* ta, tw: A, W read transposed */
    da_view a, w, c;
    size_t oa, ow, oc;       /* elements from the buffers' starts to the block */
} da_prod;

/* ---- views and products ---- */

/* Token rows [N, H*D] at stride ld (out, dq with G = 1), key-side
 * [N, Hk*D] (k, v, dk, dv), and the stacked ones: G*T rows of D (the
 * copies of q and dO; O and dQ with G > 1) or of T (S, P, dP, dS) per
 * (b, g). */
static da_view view_q(const da_attn *a, int64_t ld)
{
    return (da_view){a->s.T * ld, (int64_t)a->G * a->s.D, ld};
}
static da_view view_kv(const da_attn *a, int64_t ld)
{
    return (da_view){a->s.T * ld, a->s.D, ld};
}
static da_view view_stacked(const da_attn *a, int64_t w)
{
    int64_t GT = (int64_t)a->G * a->s.T;
    return (da_view){a->s.Hk * GT * w, GT * w, w};
}

/* Product p of block i (key block i for dK, dV).  Block i's stacked rows
 * start at G*t0.  O and dQ: stacked into the scratch when G > 1, else
 * straight into the token rows of out (stride H*D) and dq (ldq). */
static da_prod prod_of(const da_attn *a, int p, int i)
{
    const da_shape *s = &a->s;
    int T = s->T, D = s->D, G = a->G, t0 = i * DA_BLOCK;
    int t1 = T - t0 < DA_BLOCK ? T : t0 + DA_BLOCK, m = t1 - t0, rows = T - t0;
    /* qs, sq: the copies of q and dO, and O; G = 1: token rows of H*D (the
     * stacked order's rows of a block are its token rows already), which
     * out's are too.  dQ: stacked, or G = 1 dq's own rows. */
    size_t r0 = (size_t)t0, sq = G > 1 ? (size_t)G * t0 * D : r0 * s->H * D;
    size_t st = (size_t)G * t0 * T, sdq = G > 1 ? sq : r0 * s->ldq;
    da_view tt = view_stacked(a, T), qs = G > 1 ? view_stacked(a, D) : view_q(a, s->H * D);
    da_view k = view_kv(a, a->lk), v = view_kv(a, a->lv);
    da_view dq = G > 1 ? qs : view_q(a, s->ldq);
    switch (p) {
    case DA_S:  /* S[blk] = Q_blk K[:t1]^T (the scale: prod_attr) */
        return (da_prod){G * m, t1, D, 0, 1, qs, k, tt, sq, 0, st};
    case DA_O:  /* O[blk] = P[blk] V[:t1] */
        return (da_prod){G * m, D, t1, 0, 0, tt, v, qs, st, 0, sq};
    case DA_DP: /* dP[blk] = dO_blk V[:t1]^T */
        return (da_prod){G * m, t1, D, 0, 1, qs, v, tt, sq, 0, st};
    case DA_DQ: /* dQ[blk] = dS[blk] K[:t1] */
        return (da_prod){G * m, D, t1, 0, 0, tt, k, dq, st, 0, sdq};
    case DA_DK: /* dk[j0:j1] = dS[rows of blocks >= j, j0:j1]^T Q[same rows] */
        return (da_prod){m, D, G * rows, 1, 0, tt, qs, view_kv(a, s->ldk), st + r0, sq,
                         r0 * s->ldk};
    default:    /* dv[j0:j1] = P[rows of blocks >= j, j0:j1]^T dO[same rows] */
        return (da_prod){m, D, G * rows, 1, 0, tt, qs, view_kv(a, s->ldv), st + r0, sq,
                         r0 * s->ldv};
    }
}

/* Descriptor of view v as [nbb, Hk, r, c], one slice's batches
 * (transposed: element (r, c) at c*rs + r). */
static dnnl_status_t view_md(dnnl_memory_desc_t *md, const da_attn *a, da_view v, int r, int c,
                             int t, dnnl_data_type_t dt)
{
    dnnl_dims_t dims = {a->nbb, a->s.Hk, r, c};
    dnnl_dims_t st = {v.sb, v.sg, t ? 1 : v.rs, t ? v.rs : 1};
    return dnnl_memory_desc_init_by_strides(md, 4, dims, dt, st);
}

/* The attributes of product p: the user's scratchpad, the scale of S. */
static dnnl_status_t prod_attr(dnnl_primitive_attr_t *attr, const da_attn *a, int p)
{
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s == dnnl_success)
        s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && p == DA_S)
        s = dnnl_primitive_attr_set_output_scales(*attr, 1, 0, &a->scale);
    return s;
}

static da_prim *prim_at(const da_attn *a, int sl, int p, int i)
{
    return &a->prims[((size_t)sl * DA_NPROD + p) * a->nb + i];
}

/* Slice sl's scratchpad grown to at least the size of md (contents not
 * kept: the memories get it at each run). */
static dnnl_status_t pad_reserve(da_slice *x, const dnnl_memory_desc_t *md)
{
    size_t n = md ? dnnl_memory_desc_get_size(md) : 0;
    if (n <= x->padsz)
        return dnnl_success;
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p)
        return dnnl_out_of_memory;
    free(x->pad);
    x->pad = p, x->padsz = n;
    return dnnl_success;
}

/* Creates slice sl's primitive of product p, block i, and its memory
 * objects (kept from an earlier, partly failed build). */
static dnnl_status_t prim_build(da_attn *a, int sl, int p, int i)
{
    da_prod r = prod_of(a, p, i);
    da_prim *x = prim_at(a, sl, p, i);
    if (x->prim && x->mem[2])
        return dnnl_success;
    dnnl_memory_desc_t md[3];
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = view_md(&md[0], a, r.a, r.m, r.K, r.ta, a->dt);
    if (s == dnnl_success)
        s = view_md(&md[1], a, r.w, r.K, r.n, r.tw, a->dt);
    if (s == dnnl_success)
        s = view_md(&md[2], a, r.c, r.m, r.n, 0, dnnl_f32);
    if (s == dnnl_success)
        s = dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]);
    if (s == dnnl_success)
        s = prod_attr(&attr, a, p);
    if (s == dnnl_success)
        s = dnnl_primitive_desc_create(&pd, &desc, attr, a->eng, NULL);
    if (s == dnnl_success && !x->prim)
        s = dnnl_primitive_create(&x->prim, pd);
    for (int j = 0; j < 3 && s == dnnl_success; j++)
        if (!x->mem[j])
            s = dnnl_memory_create(&x->mem[j], &md[j], a->eng, DNNL_MEMORY_NONE);
    const dnnl_memory_desc_t *pmd =
        s == dnnl_success ? dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    if (pmd && dnnl_memory_desc_get_size(pmd) > 0 && !x->mem[3]) {
        s = pad_reserve(&a->sl[sl], pmd);
        if (s == dnnl_success)
            s = dnnl_memory_create(&x->mem[3], pmd, a->eng, DNNL_MEMORY_NONE);
    }
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Builds every slice's forward (bwd 0) or backward primitives on first
 * use.  With slices, made for one thread (oneDNN sizes a primitive's work
 * split by the threads it may use when it is made; each slice's runs on
 * one). */
static int ensure_built(da_attn *a, int bwd, pl_err *e)
{
    if (a->built[bwd])
        return 0;
    int p0 = bwd ? DA_DP : DA_S, p1 = bwd ? DA_NPROD : DA_DP, nt = omp_get_max_threads();
    dnnl_status_t s = dnnl_success;
    int p = p0;
    if (a->nsl > 1)
        omp_set_num_threads(1);
    for (; p < p1 && s == dnnl_success; p++)
        for (int sl = 0; sl < a->nsl && s == dnnl_success; sl++)
            for (int i = 0; i < a->nb && s == dnnl_success; i++)
                s = prim_build(a, sl, p, i);
    if (a->nsl > 1)
        omp_set_num_threads(nt);
    if (s != dnnl_success)
        return pl_errf(e, "oneDNN attention: cannot build the %s matmul of product %d "
                       "(B %d T %d H %d Hk %d D %d, %d slices; status %d)",
                       a->dt == dnnl_bf16 ? "bf16" : "fp32", p - 1, a->s.B, a->s.T, a->s.H,
                       a->s.Hk, a->s.D, a->nsl, (int)s);
    a->built[bwd] = 1;
    return 0;
}

/* Runs slice sl's product p of block i on the buffers A, W (elements of
 * a->esz bytes), C (fp32) given at their starts (the slice's first batch
 * is b0 = sl * nbb: each operand moves on by b0 of its batch strides). */
static dnnl_status_t da_run(da_attn *a, int sl, int p, int i, const void *A, const void *W,
                            float *C)
{
    da_prod r = prod_of(a, p, i);
    da_prim *x = prim_at(a, sl, p, i);
    size_t b0 = (size_t)sl * a->nbb;
    const char *a0 = A, *w0 = W;
    dnnl_memory_set_data_handle(x->mem[0], (void *)(a0 + (r.oa + b0 * r.a.sb) * a->esz));
    dnnl_memory_set_data_handle(x->mem[1], (void *)(w0 + (r.ow + b0 * r.w.sb) * a->esz));
    dnnl_memory_set_data_handle(x->mem[2], C + r.oc + b0 * r.c.sb);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, x->mem[0]},
                               {DNNL_ARG_WEIGHTS, x->mem[1]},
                               {DNNL_ARG_DST, x->mem[2]},
                               {DNNL_ARG_SCRATCHPAD, x->mem[3]}};
    if (x->mem[3])
        dnnl_memory_set_data_handle(x->mem[3], a->sl[sl].pad);
    return dnnl_primitive_execute(x->prim, a->sl[sl].st, x->mem[3] ? 4 : 3, args);
}

/* ---- the stacked order and the copies ---- */

/* Row of query row t, group member i, among its (b, g)'s G*T stacked rows:
 * blocks of DA_BLOCK query rows one after the other, in a block of m rows
 * member i's at i*m. */
static size_t stacked_row(const da_attn *a, int t, int i)
{
    int t0 = t / DA_BLOCK * DA_BLOCK, m = a->s.T - t0 < DA_BLOCK ? a->s.T - t0 : DA_BLOCK;
    return (size_t)a->G * t0 + (size_t)i * m + (size_t)(t - t0);
}

/* The query row t of stacked row r (the inverse, member dropped). */
static int stacked_t(const da_attn *a, int r)
{
    int t0 = r / (a->G * DA_BLOCK) * DA_BLOCK;
    int m = a->s.T - t0 < DA_BLOCK ? a->s.T - t0 : DA_BLOCK;
    return t0 + (r - a->G * t0) % m;
}

/* Element offset of token n's head h (D elements) in a stacked buffer. */
static size_t stacked_at(const da_attn *a, int n, int h)
{
    const da_shape *s = &a->s;
    int b = n / s->T, t = n % s->T;
    return ((size_t)(b * s->Hk + h / a->G) * a->G * s->T + stacked_row(a, t, h % a->G)) * s->D;
}

/* dst[o..o+len) (elements of a->esz bytes) = x[0..len): bf16 rounded, fp32
 * copied. */
static void put_span(const da_attn *a, void *dst, size_t o, const float *x, size_t len)
{
    if (a->dt == dnnl_bf16)
        k_bf16_row((uint16_t *)dst + o, x, len);
    else
        memcpy((float *)dst + o, x, len * sizeof *x);
}

/* Token row n of dst (stacked; G = 1: token rows of H*D) = that of the
 * query-side src [N, H*D] at row stride ld. */
static void stack_rows(const da_attn *a, void *dst, const float *src, int64_t ld, int n)
{
    size_t HD = (size_t)a->s.H * a->s.D;
    const float *x = src + (size_t)n * ld;
    if (a->G == 1) {
        put_span(a, dst, (size_t)n * HD, x, HD);
        return;
    }
    for (int h = 0; h < a->s.H; h++)
        put_span(a, dst, stacked_at(a, n, h), x + (size_t)h * a->s.D, (size_t)a->s.D);
}

/* Slice sl's token rows [n0, n1). */
static void slice_rows(const da_attn *a, int sl, int *n0, int *n1)
{
    *n0 = sl * a->nbb * a->s.T, *n1 = *n0 + a->nbb * a->s.T;
}

/* The loops below run on all threads when the pass is not cut into slices,
 * else on the slice's own thread (inside the pass's region). */
#define DA_LOOPS_PARALLEL(a) ((a)->nsl == 1)

/* Slice sl's copies: q (and dout when not NULL) stacked; bf16, k and v
 * rounded into compact rows of Hk*D; in one pass over the token rows. */
static void copy_inputs(da_attn *a, int sl, const float *q, const float *k, const float *v,
                        const float *dout)
{
    const da_shape *s = &a->s;
    int n0, n1, lk = s->Hk * s->D, bf16 = a->dt == dnnl_bf16;
    slice_rows(a, sl, &n0, &n1);
#pragma omp parallel for schedule(static) if (DA_LOOPS_PARALLEL(a))
    for (int n = n0; n < n1; n++) {
        stack_rows(a, a->q, q, s->ldq, n);
        if (dout)
            stack_rows(a, a->dout, dout, (int64_t)s->H * s->D, n);
        if (bf16) {
            k_bf16_row(a->k + (size_t)n * lk, k + (size_t)n * s->ldk, lk);
            k_bf16_row(a->v + (size_t)n * lk, v + (size_t)n * s->ldv, lk);
        }
    }
}

/* Slice sl's rows of dst [N, H*D] at row stride ld = the stacked scratch
 * a->os (G > 1). */
static void unstack(const da_attn *a, int sl, float *dst, int64_t ld)
{
    const da_shape *s = &a->s;
    int n0, n1;
    slice_rows(a, sl, &n0, &n1);
#pragma omp parallel for schedule(static) if (DA_LOOPS_PARALLEL(a))
    for (int n = n0; n < n1; n++)
        for (int h = 0; h < s->H; h++)
            memcpy(dst + (size_t)n * ld + (size_t)h * s->D, a->os + stacked_at(a, n, h),
                   (size_t)s->D * sizeof *dst);
}

/* The operands q, k, v, dO of the products: the stacked copies of q and dO
 * (made now; dout NULL: the forward, no dO); k and v, bf16: the copies,
 * fp32: the arrays themselves. */
typedef struct {
    const void *q, *k, *v, *dout;
} da_ops;

static da_ops operands(da_attn *a, int sl, const float *q, const float *k, const float *v,
                       const float *dout)
{
    copy_inputs(a, sl, q, k, v, dout);
    if (a->dt == dnnl_f32)
        return (da_ops){a->q, k, v, a->dout};
    return (da_ops){a->q, a->k, a->v, a->dout};
}

/* ---- the softmax ---- */

/* End of the causal block holding query row t: the columns products read. */
static int block_end(const da_attn *a, int t)
{
    int t1 = (t / DA_BLOCK + 1) * DA_BLOCK;
    return t1 < a->s.T ? t1 : a->s.T;
}

/* Slice sl's (b, g) [bg0, bg1). */
static void slice_groups(const da_attn *a, int sl, int *bg0, int *bg1)
{
    *bg0 = sl * a->nbb * a->s.Hk, *bg1 = *bg0 + a->nbb * a->s.Hk;
}

/* Block i's stacked rows of every (b, g): [r0, r1) of each G*T. */
static void block_rows(const da_attn *a, int i, int *r0, int *r1)
{
    int t0 = i * DA_BLOCK, m = a->s.T - t0 < DA_BLOCK ? a->s.T - t0 : DA_BLOCK;
    *r0 = a->G * t0, *r1 = *r0 + a->G * m;
}

/* Every row (query row t) of block i of slice sl's S (stacked; scores in
 * columns < w, the block's end): P = the causal softmax (fp32, kernels.h's),
 * zeros in columns t+1..w-1: the only columns any product or the backward
 * reads.  fp32: S is P, in place; bf16: P gets the rows rounded (S is the
 * handle's scratch). */
static void softmax_fwd(da_attn *a, int sl, int i, float *S, void *P)
{
    int bg0, bg1, r0, r1, R = a->G * a->s.T, T = a->s.T, bf16 = a->dt == dnnl_bf16;
    slice_groups(a, sl, &bg0, &bg1);
    block_rows(a, i, &r0, &r1);
#pragma omp parallel for collapse(2) schedule(static) if (DA_LOOPS_PARALLEL(a))
    for (int bg = bg0; bg < bg1; bg++)
        for (int r = r0; r < r1; r++) {
            size_t o = ((size_t)bg * R + r) * T;
            int t = stacked_t(a, r), w = block_end(a, t);
            if (bf16)   /* normalised and rounded in one pass; S keeps the exps */
                k_attention_softmax_row_bf16((uint16_t *)P + o, S + o, t + 1, w);
            else
                k_attention_softmax_row(S + o, t + 1, w);
        }
}

/* ds[0..n) = bf16(p * (dr - f) * scale) with f = sum(dr * p), ds[n..w) = 0:
 * kernels.h's k_attention_softmax_bwd_row on the bf16 P (dP not written). */
VEC static void softmax_bwd_row(uint16_t *ds, const float *dr, const uint16_t *p, int n, int w,
                                   float scale)
{
    float f = 0.0f;
#pragma omp simd reduction(+ : f)
    for (int j = 0; j < n; j++)
        f += dr[j] * bf16_to_f32(p[j]);
#pragma omp simd
    for (int j = 0; j < n; j++)
        ds[j] = bf16_from_f32(bf16_to_f32(p[j]) * (dr[j] - f) * scale);
    for (int j = n; j < w; j++)
        ds[j] = 0;
}

/* Every row of block i of slice sl's dP (in S, stacked): dS = P * (dP -
 * rowsum(dP * P)) * scale, up to the block's end; bf16: into the bf16 dS,
 * fp32: in place (kernels.h's row). */
static void softmax_bwd(da_attn *a, int sl, int i, const void *P)
{
    int bg0, bg1, r0, r1, R = a->G * a->s.T, T = a->s.T, bf16 = a->dt == dnnl_bf16;
    slice_groups(a, sl, &bg0, &bg1);
    block_rows(a, i, &r0, &r1);
#pragma omp parallel for collapse(2) schedule(static) if (DA_LOOPS_PARALLEL(a))
    for (int bg = bg0; bg < bg1; bg++)
        for (int r = r0; r < r1; r++) {
            size_t o = ((size_t)bg * R + r) * T;
            int t = stacked_t(a, r);
            if (bf16)
                softmax_bwd_row(a->dS + o, a->S + o, (const uint16_t *)P + o, t + 1,
                                block_end(a, t), a->scale);
            else
                k_attention_softmax_bwd_row(a->S + o, (const float *)P + o, t + 1,
                                            block_end(a, t), a->scale);
        }
}

/* ---- the public side ---- */

/* The fp32 scratch (B*H*T*T) of S and dP (bf16: made with the handle;
 * fp32, whose forward writes S into P: on the first backward call). */
static int scratch_alloc(da_attn *a, pl_err *e)
{
    size_t n = (size_t)a->s.B * a->s.H * a->s.T * a->s.T;
    if (a->S)
        return 0;
    a->S = malloc(n * sizeof(float));
    if (!a->S)
        return pl_errf(e, "oneDNN attention: out of memory (%zu bytes of scratch)", n * 4);
    a->bytes += n * sizeof(float);
    return 0;
}

/* The element type, the operands' strides and the buffers of shape s:
 * the stacked copies of q and dO, and bf16 the copies of k, v and dS. */
static int attn_alloc(da_attn *a, const da_shape *s, pl_err *e)
{
    int bf16 = s->dt == DA_BF16;
    size_t N = (size_t)s->B * s->T, nq = N * s->H * s->D, nk = N * s->Hk * s->D;
    size_t ntt = (size_t)s->B * s->H * s->T * s->T;
    a->dt = bf16 ? dnnl_bf16 : dnnl_f32, a->esz = bf16 ? sizeof(uint16_t) : sizeof(float);
    a->lk = bf16 ? s->Hk * s->D : s->ldk, a->lv = bf16 ? s->Hk * s->D : s->ldv;
    a->bytes = 2 * nq * a->esz + (bf16 ? (2 * nk + ntt) * sizeof(uint16_t) : 0);
    a->q = malloc(a->bytes);
    a->os = a->G > 1 ? malloc(nq * sizeof(float)) : NULL;
    a->bytes += a->G > 1 ? nq * sizeof(float) : 0;
    a->prims = calloc((size_t)a->nsl * DA_NPROD * a->nb, sizeof *a->prims);
    if (!a->q || (a->G > 1 && !a->os) || !a->prims)
        return pl_errf(e, "oneDNN attention: out of memory (%zu bytes of scratch)", a->bytes);
    a->dout = (char *)a->q + nq * a->esz;
    if (!bf16)
        return 0;
    a->k = (uint16_t *)((char *)a->dout + nq * a->esz), a->v = a->k + nk, a->dS = a->v + nk;
    return scratch_alloc(a, e);
}

/* Slices of shape s: as asked, or (0) one per thread when the threads
 * divide the batch, else 1. */
static int slices_of(const da_shape *s)
{
    int nt = omp_get_max_threads();
    if (s->slices)
        return s->slices;
    return nt > 1 && s->B % nt == 0 ? nt : 1;
}

/* Each slice's stream. */
static int slices_alloc(da_attn *a, pl_err *e)
{
    a->sl = calloc((size_t)a->nsl, sizeof *a->sl);
    if (!a->sl)
        return pl_errf(e, "oneDNN attention: out of memory");
    for (int i = 0; i < a->nsl; i++) {
        dnnl_status_t st = dnnl_stream_create(&a->sl[i].st, a->eng, dnnl_stream_default_flags);
        if (st != dnnl_success)
            return pl_errf(e, "oneDNN attention: cannot create a oneDNN stream (status %d)",
                           (int)st);
    }
    return 0;
}

da_attn *da_attn_new(const da_shape *s, pl_err *e)
{
    if (s->B < 1 || s->T < 1 || s->Hk < 1 || s->H % s->Hk != 0 || s->D < 1 ||
        s->ldq < s->H * s->D || s->ldk < s->Hk * s->D || s->ldv < s->Hk * s->D ||
        (s->dt != DA_BF16 && s->dt != DA_F32) || s->slices < 0 ||
        (s->slices > 0 && s->B % s->slices != 0)) {
        pl_errf(e, "oneDNN attention: bad shape (B %d T %d H %d Hk %d D %d, type %d, %d slices)",
                s->B, s->T, s->H, s->Hk, s->D, (int)s->dt, s->slices);
        return NULL;
    }
    da_attn *a = calloc(1, sizeof *a);
    if (!a || dm_engine(&a->eng, NULL, e) != 0) {
        if (!a)
            pl_errf(e, "oneDNN attention: out of memory");
        free(a);
        return NULL;
    }
    a->s = *s, a->G = s->H / s->Hk, a->nb = (s->T + DA_BLOCK - 1) / DA_BLOCK;
    a->nsl = slices_of(s), a->nbb = s->B / a->nsl;
    a->scale = 1.0f / sqrtf((float)s->D);
    if (slices_alloc(a, e) != 0 || attn_alloc(a, s, e) != 0) {
        da_attn_free(a);
        return NULL;
    }
    return a;
}

/* A pass's arguments (the forward's or the backward's). */
typedef struct {
    float *out, *dq, *dk, *dv;
    void *P;
    const float *q, *k, *v, *dout;
    const da_rows *rows;
} da_args;

/* The caller's pre (post 0) or post (1) work on slice sl's token rows. */
static void rows_hook(const da_attn *a, int sl, const da_args *x, int post)
{
    void (*f)(void *, int, int) = !x->rows ? NULL : post ? x->rows->post : x->rows->pre;
    int n0, n1;
    slice_rows(a, sl, &n0, &n1);
    if (f)
        f(x->rows->ctx, n0, n1);
}

typedef dnnl_status_t (*slice_pass)(da_attn *a, int sl, const da_args *x);

/* Runs pass f on every slice: one slice in place, several in one region
 * (each thread takes slices sl, sl + threads, ... so that every slice runs
 * whatever the team's size).  0, or -1 with e filled. */
static int run_slices(da_attn *a, slice_pass f, const da_args *x, const char *what, pl_err *e)
{
    int bad = 0;
    if (a->nsl == 1) {
        bad = (int)f(a, 0, x);
    } else {
#pragma omp parallel num_threads(a->nsl) reduction(max : bad)
        for (int sl = omp_get_thread_num(); sl < a->nsl; sl += omp_get_num_threads()) {
            dnnl_status_t st = f(a, sl, x);
            bad = st != dnnl_success && (int)st > bad ? (int)st : bad;
        }
    }
    if (bad != (int)dnnl_success)
        return pl_errf(e, "oneDNN attention: a product of the %s failed (status %d)", what, bad);
    return 0;
}

/* The forward on slice sl (see da_attn_fwd), block by block: S, its
 * softmax and O of one block of query rows before the next, so that the
 * block's S (G*DA_BLOCK rows of up to T scores per (b, g) of the slice) is
 * still in cache when the softmax and O read it (docs/performance.md,
 * "Session 15"); the same products on the same inputs as pass by pass. */
static dnnl_status_t fwd_slice(da_attn *a, int sl, const da_args *x)
{
    rows_hook(a, sl, x, 0);
    da_ops o = operands(a, sl, x->q, x->k, x->v, NULL);
    float *S = a->dt == dnnl_f32 ? x->P : a->S, *O = a->G > 1 ? a->os : x->out;
    dnnl_status_t s = dnnl_success;
    for (int i = 0; i < a->nb && s == dnnl_success; i++) {
        s = da_run(a, sl, DA_S, i, o.q, o.k, S);
        if (s == dnnl_success)
            softmax_fwd(a, sl, i, S, x->P);
        if (s == dnnl_success)
            s = da_run(a, sl, DA_O, i, x->P, o.v, O);
    }
    dnnl_stream_wait(a->sl[sl].st);
    if (s == dnnl_success && a->G > 1)
        unstack(a, sl, x->out, (int64_t)a->s.H * a->s.D);
    if (s == dnnl_success)
        rows_hook(a, sl, x, 1);
    return s;
}

/* The backward on slice sl (see da_attn_bwd), block by block from the
 * last: dP, dS and dQ of query block i, then dK and dV of key block i,
 * which read the dS rows of the query blocks >= i, all made by then; each
 * block's dP and dS still in cache when read, as in the forward. */
static dnnl_status_t bwd_slice(da_attn *a, int sl, const da_args *x)
{
    rows_hook(a, sl, x, 0);
    da_ops o = operands(a, sl, x->q, x->k, x->v, x->dout);
    const void *dS = a->dt == dnnl_f32 ? (const void *)a->S : a->dS;
    float *dQ = a->G > 1 ? a->os : x->dq;
    dnnl_status_t s = dnnl_success;
    for (int i = a->nb - 1; i >= 0 && s == dnnl_success; i--) {
        s = da_run(a, sl, DA_DP, i, o.dout, o.v, a->S);
        if (s == dnnl_success)
            softmax_bwd(a, sl, i, x->P);
        if (s == dnnl_success)
            s = da_run(a, sl, DA_DQ, i, dS, o.k, dQ);
        if (s == dnnl_success)
            s = da_run(a, sl, DA_DK, i, dS, o.q, x->dk);
        if (s == dnnl_success)
            s = da_run(a, sl, DA_DV, i, x->P, o.dout, x->dv);
    }
    dnnl_stream_wait(a->sl[sl].st);
    if (s == dnnl_success && a->G > 1)
        unstack(a, sl, x->dq, a->s.ldq);
    if (s == dnnl_success)
        rows_hook(a, sl, x, 1);
    return s;
}

int da_attn_fwd(da_attn *a, float *out, void *P, const float *q, const float *k, const float *v,
                const da_rows *rows, pl_err *e)
{
    if (ensure_built(a, 0, e) != 0)
        return -1;
    da_args x = {.out = out, .P = P, .q = q, .k = k, .v = v, .rows = rows};
    return run_slices(a, fwd_slice, &x, "forward", e);
}

int da_attn_bwd(da_attn *a, float *dq, float *dk, float *dv, const float *dout, const float *q,
                const float *k, const float *v, const void *P, const da_rows *rows, pl_err *e)
{
    if (ensure_built(a, 1, e) != 0 || scratch_alloc(a, e) != 0)
        return -1;
    da_args x = {.dq = dq, .dk = dk, .dv = dv, .P = (void *)P, .q = q, .k = k, .v = v,
                 .dout = dout, .rows = rows};
    return run_slices(a, bwd_slice, &x, "backward", e);
}

size_t da_attn_bytes(const da_attn *a) { return a ? a->bytes : 0; }

int da_attn_slices(const da_attn *a) { return a ? a->nsl : 0; }

void da_attn_free(da_attn *a)
{
    if (!a)
        return;
    for (size_t j = 0; a->prims && j < (size_t)a->nsl * DA_NPROD * a->nb; j++) {
        da_prim *x = &a->prims[j];
        if (x->prim)
            dnnl_primitive_destroy(x->prim);
        for (int m = 0; m < 4; m++)
            if (x->mem[m])
                dnnl_memory_destroy(x->mem[m]);
    }
    for (int i = 0; a->sl && i < a->nsl; i++) {
        if (a->sl[i].st)
            dnnl_stream_destroy(a->sl[i].st);
        free(a->sl[i].pad);
    }
    free(a->sl);
    free(a->prims);
    free(a->q);
    free(a->os);
    free(a->S);
    free(a);
}

#endif /* PSLORA_HAVE_DNNL */
