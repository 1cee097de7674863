/* bench_gemm.c - GFLOP/s of the matrix products of a GPT-2 step, fp32 vs bf16.
 *
 * For each linear shape of the model (M = rows = batch*seq) and each thread
 * count, in the forward orientation y[M,out] = x[M,in] W (W [in,out], Conv1D)
 * and the backward one dx[M,in] = dy[M,out] W^T:
 *   sgemm    one cblas_sgemm call (OpenBLAS threads itself): the machine's ceiling
 *   tiled    the model's deterministic form, k_gemm (common/nn/kernels.h): the
 *            output cut into tiles fixed by the shape, one single-threaded
 *            sgemm per tile inside an OpenMP loop
 *   bf16     dm_linear_fwd / dm_linear_bwd_x: weights packed once per orientation,
 *            activations rounded to bf16 on every call (included in the time)
 *   bf16pl   bf16 matmul on ONE plain bf16 copy of W, read as it lies (fwd) or
 *            transposed (bwd): the alternative to keeping two packed copies
 *   dnnl32   oneDNN's fp32 matmul on the same plain fp32 W and activations
 *            (no conversion at all): the candidate for the fp32 path where
 *            OpenBLAS is held to older kernels (its kernel in the last column)
 * Each figure is the best of repeated calls within --seconds (the machine may
 * be shared), FLOPs = 2 M in out per call.
 *
 * With --attention: the products of causal attention instead (section
 * "--attention" below); with --lora: the LoRA products at Llama's shapes
 * (section "--lora").
 *
 *   bench_gemm [--rows 1024] [--dim 768] [--inter 3072] [--vocab 50257]
 *              [--threads 1,2] [--seconds 0.5]
 *   bench_gemm --attention [--batch 4] [--seq 256] [--heads 12] [--head-dim 64]
 *              [--threads 1,2] [--seconds 0.5]
 *   bench_gemm --lora [--rows 1024] [--dim 576] [--kv 192] [--inter 1536] [--rank 8]
 *              [--threads 1,2] [--seconds 0.5] */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cpu.h"
#include "dnnl_matmul.h"
#include "kernels.h"
#include "metrics.h"
#include "rng.h"

#ifdef PSLORA_HAVE_DNNL
#include <dnnl.h>
#endif

typedef struct {
    const char *name;
    int in, out;
} shape;

typedef struct {
    int M;
    double seconds;
    float *x, *y;      /* [M, max] activations and outputs */
    float *w;          /* [in, out] */
} ctx;

/* Best seconds per call of fn over repeated calls lasting about budget s
 * (at least 2 calls; the first is a warm-up). */
static double best_time(void (*fn)(void *), void *arg, double budget)
{
    fn(arg);
    double best = 1e30, start = clock_now();
    int calls = 0;
    do {
        double t0 = clock_now();
        fn(arg);
        double dt = clock_now() - t0;
        if (dt < best)
            best = dt;
        calls++;
    } while (clock_now() - start < budget || calls < 1);
    return best;
}

typedef struct {
    const ctx *c;
    const shape *s;
    int bwd;
    dm_linear *h;
    void *plain;     /* bf16pl state */
} job;

/* One sgemm over the whole output. */
static void run_sgemm(void *p)
{
    job *j = p;
    int M = j->c->M, in = j->s->in, out = j->s->out;
    if (!j->bwd)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, out, in, 1.0f, j->c->x, in,
                    j->c->w, out, 0.0f, j->c->y, out);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, in, out, 1.0f, j->c->x, out,
                    j->c->w, out, 0.0f, j->c->y, in);
}

/* The model's own product (k_gemm). */
static void run_tiled(void *p)
{
    job *j = p;
    int M = j->c->M, in = j->s->in, out = j->s->out;
    if (!j->bwd)
        k_gemm(CblasNoTrans, CblasNoTrans, M, out, in, 1.0f, j->c->x, in, j->c->w, out, 0.0f,
               j->c->y, out);
    else
        k_gemm(CblasNoTrans, CblasTrans, M, in, out, 1.0f, j->c->x, out, j->c->w, out, 0.0f,
               j->c->y, in);
}

static void run_bf16(void *p)
{
    job *j = p;
    pl_err e;
    int rc = j->bwd ? dm_linear_bwd_x(j->h, j->c->x, j->c->y, j->c->M, 0, &e)
                    : dm_linear_fwd(j->h, j->c->x, j->c->y, NULL, j->c->M, &e);
    if (rc != 0) {
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
        exit(1);
    }
}

#ifdef PSLORA_HAVE_DNNL
/* A matmul straight on a plain W [in,out] (tag ab forward, ba for the
 * transposed read): bf16 (W converted once, activations rounded each call
 * like dm_linear_*) or fp32 (W and activations as they are). */
typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t st;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
    uint16_t *xb, *wb;   /* bf16 only */
    int M, K;
    char impl[64];
} plain_mm;

static uint16_t bf16_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static plain_mm *plain_new(const ctx *c, const shape *s, int bwd, int f32)
{
    plain_mm *p = calloc(1, sizeof *p);
    int K = bwd ? s->out : s->in, N = bwd ? s->in : s->out;
    dnnl_data_type_t dt = f32 ? dnnl_f32 : dnnl_bf16;
    p->M = c->M, p->K = K;
    if (!f32) {
        p->xb = malloc((size_t)c->M * K * sizeof *p->xb);
        p->wb = malloc((size_t)s->in * s->out * sizeof *p->wb);
        for (size_t i = 0; i < (size_t)s->in * s->out; i++)
            p->wb[i] = bf16_of(c->w[i]);
    }
    dnnl_engine_create(&p->eng, dnnl_cpu, 0);
    dnnl_stream_create(&p->st, p->eng, dnnl_stream_default_flags);
    dnnl_memory_desc_t smd, wmd, dmd;
    dnnl_dims_t sd = {c->M, K}, wd = {K, N}, dd = {c->M, N};
    dnnl_memory_desc_init_by_tag(&smd, 2, sd, dt, dnnl_ab);
    dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dt, bwd ? dnnl_ba : dnnl_ab);
    dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab);
    dnnl_matmul_desc_t desc;
    dnnl_primitive_desc_t pd;
    dnnl_matmul_desc_init(&desc, &smd, &wmd, NULL, &dmd);
    if (dnnl_primitive_desc_create(&pd, &desc, NULL, p->eng, NULL) != dnnl_success) {
        fprintf(stderr, "bench_gemm: no plain %s matmul\n", f32 ? "fp32" : "bf16");
        exit(1);
    }
    const char *impl = NULL;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    snprintf(p->impl, sizeof p->impl, "%s", impl ? impl : "?");
    dnnl_primitive_create(&p->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    dnnl_memory_create(&p->src, &smd, p->eng, f32 ? (void *)c->x : (void *)p->xb);
    dnnl_memory_create(&p->wei, &wmd, p->eng, f32 ? (void *)c->w : (void *)p->wb);
    dnnl_memory_create(&p->dst, &dmd, p->eng, c->y);
    return p;
}

static void run_plain(void *arg)
{
    job *j = arg;
    plain_mm *p = j->plain;
    const float *x = j->c->x;
    size_t n = p->xb ? (size_t)p->M * p->K : 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        p->xb[i] = bf16_of(x[i]);
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, p->dst}};
    dnnl_primitive_execute(p->prim, p->st, 3, args);
    dnnl_stream_wait(p->st);
}

static void plain_free(plain_mm *p)
{
    dnnl_primitive_destroy(p->prim);
    dnnl_memory_destroy(p->src);
    dnnl_memory_destroy(p->wei);
    dnnl_memory_destroy(p->dst);
    dnnl_stream_destroy(p->st);
    dnnl_engine_destroy(p->eng);
    free(p->xb), free(p->wb), free(p);
}
#endif

static float *randn(size_t n, float sd, uint64_t seed)
{
    float *a = malloc(n * sizeof *a);
    rng_state r;
    uint64_t w[2] = {0x67656d6dULL, seed};
    rng_seed(&r, w, 2);
    rng_fill_normal(&r, a, n, sd);
    return a;
}

/* One table row: every variant of one shape and orientation. */
static void bench_shape(const ctx *c, const shape *s, int bwd, dm_linear *h)
{
    job j = {c, s, bwd, h, NULL};
    double fl = 2.0 * c->M * s->in * s->out;
    double g_s = fl / best_time(run_sgemm, &j, c->seconds) * 1e-9;
    double g_t = fl / best_time(run_tiled, &j, c->seconds) * 1e-9;
    printf("%-8s %-4s %5d %5d %5d %7.1f %7.1f", s->name, bwd ? "bwd" : "fwd", c->M,
           bwd ? s->out : s->in, bwd ? s->in : s->out, g_s, g_t);
    if (h) {
        double g_b = fl / best_time(run_bf16, &j, c->seconds) * 1e-9;
        double g_p = 0, g_f = 0;
        char impl32[64] = "";
#ifdef PSLORA_HAVE_DNNL
        j.plain = plain_new(c, s, bwd, 0);
        g_p = fl / best_time(run_plain, &j, c->seconds) * 1e-9;
        plain_free(j.plain);
        plain_mm *f = plain_new(c, s, bwd, 1);
        j.plain = f;
        g_f = fl / best_time(run_plain, &j, c->seconds) * 1e-9;
        snprintf(impl32, sizeof impl32, "%s", f->impl);
        plain_free(f);
#endif
        printf(" %7.1f %7.1f %7.1f  %s / %s", g_b, g_p, g_f, dm_impl_name(h, bwd), impl32);
    } else {
        printf(" %7s %7s %7s  (built without oneDNN)", "-", "-", "-");
    }
    printf("\n");
    fflush(stdout);
}

static long arg_long(int argc, char **argv, const char *name, long def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return atol(argv[i + 1]);
    return def;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

/* ---- --attention: the products of causal attention ------------------------------
 *
 * GPT-2's attention at the model's shapes: q, k, v the column blocks of one
 * qkv [B*T, 3*H*D] (ld 3HD), out/dout [B*T, H*D], P and dS [B,H,T,T].  The six
 * products of the kernels (common/nn/kernels.c) in causal row blocks of
 * ATTB rows, block [t0,t1) (m = t1 - t0; for dK, dV column block [j0,j1),
 * rows = T - j0):
 *   fwd  S  = Q_blk K[:t1]^T  (m,t1,D)      O  = P_blk V[:t1]      (m,D,t1)
 *   bwd  dP = dO_blk V[:t1]^T (m,t1,D)      dQ = dS_blk K[:t1]     (m,D,t1)
 *        dK = dS[j0:,j0:j1]^T Q[j0:] (m,D,rows)   dV = P[..]^T dO[j0:] (same)
 * Variants (products only; softmax and its backward are not timed):
 *   sgemm   today's: per (b,h) in an OpenMP loop, one single-threaded
 *           cblas_sgemm per block and product
 *   dnnl32  oneDNN fp32 matmul, per block and product ONE 4-D matmul over all
 *           (b,h): [B,H,m,K] x [B,H,K,n] described with the tensors' own strides
 *   bf16    the same in bf16 (fp32 accumulation and output), the inputs of the
 *           pass (q,k,v,P fwd; dout,v,k,q,P,dS bwd) rounded to bf16 copies in
 *           the same layout inside the timed call (all at the pass's start: a
 *           real pass would round P and dS after the softmax, same work)
 * plus the whole kernels k_attention_fwd / k_attention_bwd (softmax included)
 * for the products' share ("products%": sgemm's products over the kernel's
 * time).  Rows: each product alone (no rounding), then each pass.  Each
 * figure is the best call of ATT_ROUNDS turns.  FLOPs: 2 m n K summed over
 * the blocks computed (causal: 62.5% of the full T x T at T = 256). */
#define ATTB 64  /* = ATT_BLOCK in common/nn/kernels.c */
#define ATT_ROUNDS 5 /* the variants take turns, ATT_ROUNDS times (a shared machine) */

typedef struct {
    int B, T, H, D, ldq, ldo;
    float *qkv, *out, *dout, *P, *dS, *dqkv;
#ifdef PSLORA_HAVE_DNNL
    dnnl_engine_t eng;
    dnnl_stream_t st;
    /* per block (T / ATTB at most 16) and product: primitive and memories */
    dnnl_primitive_t prim[2][6][16];
    dnnl_memory_t mem[2][6][16][3];
    uint16_t *qkvb, *doutb, *Pb, *dSb;   /* bf16 copies, same layout */
#endif
} att_ctx;

/* Product p (0 S, 1 O, 2 dP, 3 dQ, 4 dK, 5 dV) of block i for (b, h): the
 * arguments of its row-major cblas_sgemm, c = op(a) op(b). */
typedef struct {
    int m, n, K, ta, tb;
    const float *a, *b;
    float *c;
    int lda, ldb, ldc;
} att_prod;

static att_prod att_prod_of(const att_ctx *c, int p, int i, int b, int h)
{
    int T = c->T, D = c->D, ldq = c->ldq, ldo = c->ldo, C = c->H * D;
    int t0 = i * ATTB, t1 = T - t0 < ATTB ? T : t0 + ATTB, m = t1 - t0, rows = T - t0;
    const float *q = c->qkv + (size_t)b * T * ldq + (size_t)h * D, *k = q + C, *v = q + 2 * C;
    float *dq = c->dqkv + (size_t)b * T * ldq + (size_t)h * D, *dk = dq + C, *dv = dq + 2 * C;
    const float *dout = c->dout + (size_t)b * T * ldo + (size_t)h * D;
    float *o = c->out + (size_t)b * T * ldo + (size_t)h * D;
    size_t bh = ((size_t)b * c->H + h) * T * T;
    float *P = c->P + bh, *dS = c->dS + bh;
    size_t rq = (size_t)t0 * ldq, ro = (size_t)t0 * ldo, rp = (size_t)t0 * T; /* row t0 */
    const att_prod all[6] = {
        {m, t1, D, 0, 1, q + rq, k, P + rp, ldq, ldq, T},                    /* S */
        {m, D, t1, 0, 0, P + rp, v, o + ro, T, ldq, ldo},                    /* O */
        {m, t1, D, 0, 1, dout + ro, v, dS + rp, ldo, ldq, T},                /* dP */
        {m, D, t1, 0, 0, dS + rp, k, dq + rq, T, ldq, ldq},                  /* dQ */
        {m, D, rows, 1, 0, dS + rp + t0, q + rq, dk + rq, T, ldq, ldq},      /* dK */
        {m, D, rows, 1, 0, P + rp + t0, dout + ro, dv + rq, T, ldo, ldq}};   /* dV */
    return all[p];
}

static int att_blocks(const att_ctx *c) { return (c->T + ATTB - 1) / ATTB; }

/* FLOPs of products p0..p1-1. */
static double att_flops(const att_ctx *c, int p0, int p1)
{
    double f = 0;
    for (int p = p0; p < p1; p++)
        for (int i = 0; i < att_blocks(c); i++) {
            att_prod r = att_prod_of(c, p, i, 0, 0);
            f += 2.0 * r.m * r.n * r.K;
        }
    return f * c->B * c->H;
}

/* Products p0..p1-1: one of them, or a pass (fwd 0..1, bwd 2..5). */
typedef struct {
    att_ctx *c;
    int p0, p1;
} att_job;

static void run_att_sgemm(void *arg)
{
    att_job *j = arg;
    att_ctx *c = j->c;
    int nb = att_blocks(c);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->H; h++)
            for (int p = j->p0; p < j->p1; p++)
                for (int i = 0; i < nb; i++) {
                    att_prod r = att_prod_of(c, p, i, b, h);
                    cblas_sgemm(CblasRowMajor, r.ta ? CblasTrans : CblasNoTrans,
                                r.tb ? CblasTrans : CblasNoTrans, r.m, r.n, r.K, 1.0f, r.a, r.lda,
                                r.b, r.ldb, 0.0f, r.c, r.ldc);
                }
}

static void run_att_kernel(void *arg)
{
    att_job *j = arg;
    att_ctx *c = j->c;
    int C = c->H * c->D;
    if (j->p0 < 2)
        k_attention_fwd(c->out, c->P, c->qkv, c->qkv + C, c->qkv + 2 * C, c->B, c->T, c->H, c->H,
                        c->D, c->ldq, c->ldq, c->ldq);
    else
        k_attention_bwd(c->dqkv, c->dqkv + C, c->dqkv + 2 * C, c->dS, c->dout, c->qkv,
                        c->qkv + C, c->qkv + 2 * C, c->P, c->B, c->T, c->H, c->H, c->D, c->ldq,
                        c->ldq, c->ldq);
}

#ifdef PSLORA_HAVE_DNNL
/* 4-D descriptor [B,H,r,s] of a row-major operand at base (b=0,h=0) whose (b,h)
 * block starts at b*sb + h*sh, element (r,s) at r*ld + s, or s*ld + r if t. */
static void att_md(dnnl_memory_desc_t *md, const att_ctx *c, int r, int s, int64_t sb, int64_t sh,
                   int ld, int t, dnnl_data_type_t dt)
{
    dnnl_dims_t d = {c->B, c->H, r, s}, st = {sb, sh, t ? 1 : ld, t ? ld : 1};
    dnnl_memory_desc_init_by_strides(md, 4, d, dt, st);
}

/* The batch strides (per b, per h) of product p's operands a, b, c. */
static void att_strides(const att_ctx *c, int p, int64_t s[3][2])
{
    int64_t T = c->T, H = c->H, D = c->D, q[2] = {T * c->ldq, D}, o[2] = {T * c->ldo, D},
            pp[2] = {H * T * T, T * T};
    const int64_t *tab[6][3] = {{q, q, pp}, {pp, q, o}, {o, q, pp},
                                {pp, q, q}, {pp, q, q}, {pp, o, q}};
    for (int x = 0; x < 3; x++)
        s[x][0] = tab[p][x][0], s[x][1] = tab[p][x][1];
}

/* Builds the primitives of every (product, block), precision f32 or bf16. */
static void att_dnnl_build(att_ctx *c, int bf)
{
    dnnl_data_type_t dt = bf ? dnnl_bf16 : dnnl_f32;
    for (int p = 0; p < 6; p++)
        for (int i = 0; i < att_blocks(c); i++) {
            att_prod r = att_prod_of(c, p, i, 0, 0);
            int64_t s[3][2];
            att_strides(c, p, s);
            dnnl_memory_desc_t amd, bmd, cmd;
            att_md(&amd, c, r.m, r.K, s[0][0], s[0][1], r.lda, r.ta, dt);
            att_md(&bmd, c, r.K, r.n, s[1][0], s[1][1], r.ldb, r.tb, dt);
            att_md(&cmd, c, r.m, r.n, s[2][0], s[2][1], r.ldc, 0, dnnl_f32);
            dnnl_matmul_desc_t desc;
            dnnl_primitive_desc_t pd;
            dnnl_matmul_desc_init(&desc, &amd, &bmd, NULL, &cmd);
            if (dnnl_primitive_desc_create(&pd, &desc, NULL, c->eng, NULL) != dnnl_success) {
                fprintf(stderr, "bench_gemm: no strided %s matmul for product %d\n",
                        bf ? "bf16" : "fp32", p);
                exit(1);
            }
            if (i == 0 && (p == 0 || p == 4)) {
                const char *impl = NULL;
                dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
                printf("  %s product %d: %s\n", bf ? "bf16" : "dnnl32", p, impl ? impl : "?");
            }
            dnnl_primitive_create(&c->prim[bf][p][i], pd);
            dnnl_primitive_desc_destroy(pd);
            dnnl_memory_create(&c->mem[bf][p][i][0], &amd, c->eng, DNNL_MEMORY_NONE);
            dnnl_memory_create(&c->mem[bf][p][i][1], &bmd, c->eng, DNNL_MEMORY_NONE);
            dnnl_memory_create(&c->mem[bf][p][i][2], &cmd, c->eng, DNNL_MEMORY_NONE);
        }
}

/* x's bf16 copy for bf16 runs: the same element offset in the copy. */
static const void *att_src(const att_ctx *c, const float *x, int bf)
{
    if (!bf)
        return x;
    const float *bases[4] = {c->qkv, c->dout, c->P, c->dS};
    uint16_t *copies[4] = {c->qkvb, c->doutb, c->Pb, c->dSb};
    size_t sizes[4] = {(size_t)c->B * c->T * c->ldq, (size_t)c->B * c->T * c->ldo,
                       (size_t)c->B * c->H * c->T * c->T, (size_t)c->B * c->H * c->T * c->T};
    for (int i = 0; i < 4; i++)
        if (x >= bases[i] && x < bases[i] + sizes[i])
            return copies[i] + (x - bases[i]);
    return x;
}

static void att_round(uint16_t *xb, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        xb[i] = bf16_of(x[i]);
}

/* Products p0..p1-1; a whole pass in bf16 also rounds the pass's inputs. */
static void run_att_dnnl(att_ctx *c, int p0, int p1, int bf)
{
    int pass = p1 - p0 > 1, bwd = p0 >= 2;
    size_t nq = (size_t)c->B * c->T * c->ldq, no = (size_t)c->B * c->T * c->ldo,
           np = (size_t)c->B * c->H * c->T * c->T;
    if (bf && pass) {   /* the pass's inputs, rounded as they would be */
        att_round(c->qkvb, c->qkv, nq);
        att_round(c->Pb, c->P, np);
        if (bwd)
            att_round(c->doutb, c->dout, no), att_round(c->dSb, c->dS, np);
    }
    for (int p = p0; p < p1; p++)
        for (int i = 0; i < att_blocks(c); i++) {
            att_prod r = att_prod_of(c, p, i, 0, 0);
            dnnl_memory_t *m = c->mem[bf][p][i];
            dnnl_memory_set_data_handle(m[0], (void *)att_src(c, r.a, bf));
            dnnl_memory_set_data_handle(m[1], (void *)att_src(c, r.b, bf));
            dnnl_memory_set_data_handle(m[2], r.c);
            dnnl_exec_arg_t args[3] = {
                {DNNL_ARG_SRC, m[0]}, {DNNL_ARG_WEIGHTS, m[1]}, {DNNL_ARG_DST, m[2]}};
            dnnl_primitive_execute(c->prim[bf][p][i], c->st, 3, args);
        }
    dnnl_stream_wait(c->st);
}

static void run_att_dnnl32(void *arg)
{
    att_job *j = arg;
    run_att_dnnl(j->c, j->p0, j->p1, 0);
}

static void run_att_bf16(void *arg)
{
    att_job *j = arg;
    run_att_dnnl(j->c, j->p0, j->p1, 1);
}

/* Largest |x - y| / max|y| over n (the products' outputs against sgemm's). */
static double att_rel(const float *x, const float *y, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs((double)x[i] - y[i]), b = fabs((double)y[i]);
        d = a > d ? a : d, m = b > m ? b : m;
    }
    return m > 0 ? d / m : d;
}

/* The output product p writes, and its length. */
static float *att_out(const att_ctx *c, int p, size_t *n)
{
    size_t nq = (size_t)c->B * c->T * c->ldq, no = (size_t)c->B * c->T * c->ldo,
           np = (size_t)c->B * c->H * c->T * c->T;
    float *o[6] = {c->P, c->out, c->dS, c->dqkv, c->dqkv, c->dqkv};
    size_t len[6] = {np, no, np, nq, nq, nq};
    *n = len[p];
    return o[p];
}

/* Prints how far each oneDNN variant is from sgemm (both passes, on the
 * same inputs: sgemm's pass writes the P and dS the variant then reads),
 * and which of its products give other bits on 1 than on 2 threads. */
static void att_check(att_ctx *c, size_t nq, size_t no)
{
    size_t np = (size_t)c->B * c->H * c->T * c->T, nmax = np > nq ? np : nq;
    float *dq = malloc(nq * sizeof *dq), *o = malloc(no * sizeof *o), *x = malloc(nmax * sizeof *x);
    for (int bf = 0; bf < 2; bf++) {
        att_job j = {c, 0, 6};
        omp_set_num_threads(2);
        run_att_sgemm(&j);
        memcpy(dq, c->dqkv, nq * sizeof *dq), memcpy(o, c->out, no * sizeof *o);
        run_att_dnnl(c, 0, 2, bf), run_att_dnnl(c, 2, 6, bf);
        printf("  %s vs sgemm: max rel err O %.2e, dQKV %.2e; other bits on 1 thread than 2:",
               bf ? "bf16" : "dnnl32", att_rel(c->out, o, no), att_rel(c->dqkv, dq, nq));
        int differ = 0;
        for (int p = 0; p < 6; p++) {
            size_t n;
            float *y = att_out(c, p, &n);
            omp_set_num_threads(2);
            run_att_dnnl(c, p, p + 1, bf);
            memcpy(x, y, n * sizeof *x);
            omp_set_num_threads(1);
            run_att_dnnl(c, p, p + 1, bf);
            if (memcmp(x, y, n * sizeof *x))
                printf(" %s", (const char *[]){"S", "O", "dP", "dQ", "dK", "dV"}[p]), differ = 1;
        }
        printf("%s\n", differ ? "" : " none");
    }
    free(dq), free(o), free(x);
}
#endif

/* The table at the current thread count: GFLOP/s per product and pass, the
 * variants taking turns. */
static void att_table(att_ctx *c, double seconds)
{
    void (*fn[4])(void *) = {run_att_sgemm, NULL, NULL, run_att_kernel};
    const char *names[8] = {"S", "O", "dP", "dQ", "dK", "dV", "fwd", "bwd"};
    static const int span[8][2] = {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {0, 2}, {2, 6}};
#ifdef PSLORA_HAVE_DNNL
    fn[1] = run_att_dnnl32, fn[2] = run_att_bf16;
#endif
    printf("%-4s %8s %8s %8s %8s %10s\n", "prod", "sgemm", "dnnl32", "bf16", "kernel",
           "products%");
    for (int row = 0; row < 8; row++) {
        att_job j = {c, span[row][0], span[row][1]};
        double fl = att_flops(c, j.p0, j.p1), best[4] = {1e30, 1e30, 1e30, 1e30};
        for (int round = 0; round < ATT_ROUNDS; round++)
            for (int v = 0; v < 4; v++) {
                if (!fn[v] || (v == 3 && row < 6))
                    continue;
                double sec = best_time(fn[v], &j, seconds / ATT_ROUNDS);
                best[v] = sec < best[v] ? sec : best[v];
            }
        printf("%-4s %8.1f %8.1f %8.1f", names[row], fl / best[0] * 1e-9,
               fn[1] ? fl / best[1] * 1e-9 : 0, fn[2] ? fl / best[2] * 1e-9 : 0);
        if (row >= 6)
            printf(" %8.1f %9.1f%%", fl / best[3] * 1e-9, 100.0 * best[0] / best[3]);
        printf("\n");
        fflush(stdout);
    }
}

static int bench_attention(int argc, char **argv, double seconds, const char *threads)
{
    att_ctx c = {0};
    c.B = (int)arg_long(argc, argv, "--batch", 4), c.T = (int)arg_long(argc, argv, "--seq", 256);
    c.H = (int)arg_long(argc, argv, "--heads", 12);
    c.D = (int)arg_long(argc, argv, "--head-dim", 64);
    c.ldo = c.H * c.D, c.ldq = 3 * c.ldo;
    if (c.T > 16 * ATTB) {
        fprintf(stderr, "bench_gemm: --seq at most %d\n", 16 * ATTB);
        return 2;
    }
    size_t nq = (size_t)c.B * c.T * c.ldq, no = (size_t)c.B * c.T * c.ldo,
           np = (size_t)c.B * c.H * c.T * c.T;
    c.qkv = randn(nq, 1.0f, 3), c.dout = randn(no, 1.0f, 4);
    c.P = randn(np, 0.1f, 5), c.dS = randn(np, 0.1f, 6);
    c.out = calloc(no, sizeof *c.out), c.dqkv = calloc(nq, sizeof *c.dqkv);
    printf("bench_gemm --attention: B %d T %d H %d D %d, blocks of %d rows; GFLOP/s of the "
           "causal blocks' products (fwd %.2f, bwd %.2f GFLOP), best call within %.2f s\n",
           c.B, c.T, c.H, c.D, ATTB, att_flops(&c, 0, 2) * 1e-9, att_flops(&c, 2, 6) * 1e-9,
           seconds);
#ifdef PSLORA_HAVE_DNNL
    dnnl_engine_create(&c.eng, dnnl_cpu, 0);
    dnnl_stream_create(&c.st, c.eng, dnnl_stream_default_flags);
    c.qkvb = malloc(nq * 2), c.doutb = malloc(no * 2);
    c.Pb = malloc(np * 2), c.dSb = malloc(np * 2);
    att_dnnl_build(&c, 0);
    att_dnnl_build(&c, 1);
    att_check(&c, nq, no);
#endif
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        printf("\nthreads %d\n", nt);
        att_table(&c, seconds);
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
#ifdef PSLORA_HAVE_DNNL
    for (int bf = 0; bf < 2; bf++)
        for (int p = 0; p < 6; p++)
            for (int i = 0; i < att_blocks(&c); i++) {
                dnnl_primitive_destroy(c.prim[bf][p][i]);
                for (int x = 0; x < 3; x++)
                    dnnl_memory_destroy(c.mem[bf][p][i][x]);
            }
    dnnl_stream_destroy(c.st), dnnl_engine_destroy(c.eng);
    free(c.qkvb), free(c.doutb), free(c.Pb), free(c.dSb);
#endif
    free(c.qkv), free(c.dout), free(c.P), free(c.dS), free(c.out), free(c.dqkv);
    return 0;
}

/* ---- --lora: the LoRA products ---------------------------------------------------
 *
 * The skinny products of one LoRA map (A [r,in], B [out,r], N rows) at
 * Llama SmolLM-135M's shapes (in -> out: 576 -> 576 q/o, 576 -> 192 k/v,
 * 576 -> 1536 gate/up, 1536 -> 576 down), each way:
 *   sgemm   the products as k_gemm calls (the kernels before they were
 *           written out): fwd u = x A^T, y += s u B^T; bwd dB += s dy^T u,
 *           du = s dy B, dA += du^T x, dx += du A
 *   kernel  k_lora_fwd / k_lora_bwd (common/nn/kernels.h)
 *   add     k_add over as many floats as the passes must move (fwd: x read,
 *           y read and written; bwd: dy and x read, dx read and written):
 *           the time if memory bound them
 * Microseconds per call (best within --seconds) and GFLOP/s (fwd 2 N r
 * (in+out), bwd 4 N r (in+out)); the header gives the ceiling, k_gemm on
 * an N x in x in product in the same run. */

typedef struct {
    int N, in, out, r;
    float *x, *y, *dy, *dx, *A, *B, *u, *du, *dA, *dB, *scr, *pad;
} lora_ctx;

static void run_lora_sgemm_fwd(void *p)
{
    lora_ctx *c = p;
    k_gemm(CblasNoTrans, CblasTrans, c->N, c->r, c->in, 1.0f, c->x, c->in, c->A, c->in, 0.0f, c->u,
           c->r);
    k_gemm(CblasNoTrans, CblasTrans, c->N, c->out, c->r, 2.0f, c->u, c->r, c->B, c->r, 1.0f, c->y,
           c->out);
}

static void run_lora_sgemm_bwd(void *p)
{
    lora_ctx *c = p;
    int N = c->N, in = c->in, out = c->out, r = c->r;
    k_gemm(CblasTrans, CblasNoTrans, out, r, N, 2.0f, c->dy, out, c->u, r, 1.0f, c->dB, r);
    k_gemm(CblasNoTrans, CblasNoTrans, N, r, out, 2.0f, c->dy, out, c->B, r, 0.0f, c->du, r);
    k_gemm(CblasTrans, CblasNoTrans, r, in, N, 1.0f, c->du, r, c->x, in, 1.0f, c->dA, in);
    k_gemm(CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, c->du, r, c->A, in, 1.0f, c->dx, in);
}

static void run_lora_fwd(void *p)
{
    lora_ctx *c = p;
    k_lora_fwd(c->y, c->u, c->x, c->A, c->B, c->N, c->in, c->out, c->r, 2.0f, c->scr);
}

static void run_lora_bwd(void *p)
{
    lora_ctx *c = p;
    k_lora_bwd(c->dx, c->dA, c->dB, c->du, c->dy, c->x, c->u, c->A, c->B, c->N, c->in, c->out,
               c->r, 2.0f, c->scr);
}

/* The bound: k_add (y += a: two reads, one write per float) over as many
 * floats as the pass must move, split into thirds. */
typedef struct {
    lora_ctx *c;
    size_t n;
} lora_add;

static void run_lora_add(void *p)
{
    lora_add *a = p;
    k_add(a->c->pad, a->c->pad + a->n, a->n);
}

static void lora_row(lora_ctx *c, const char *name, int bwd, double seconds)
{
    size_t N = (size_t)c->N;
    /* floats moved: fwd x + 2 y; bwd dy + x + 2 dx */
    size_t moved = bwd ? N * (c->out + 3 * (size_t)c->in) : N * (c->in + 2 * (size_t)c->out);
    lora_add a = {c, moved / 3};
    double ts = best_time(bwd ? run_lora_sgemm_bwd : run_lora_sgemm_fwd, c, seconds);
    double tk = best_time(bwd ? run_lora_bwd : run_lora_fwd, c, seconds);
    double ta = best_time(run_lora_add, &a, seconds);
    double gf = (bwd ? 4.0 : 2.0) * N * c->r * (c->in + c->out) * 1e-9;
    printf("%-6s %-4s %5d %5d %5d %3d %9.0f %6.1f %9.0f %6.1f %6.2fx %7.0f\n", name,
           bwd ? "bwd" : "fwd", c->N, c->in, c->out, c->r, ts * 1e6, gf / ts, tk * 1e6, gf / tk,
           ts / tk, ta * 1e6);
    fflush(stdout);
}

/* The fp32 ceiling of this run: k_gemm on an N x in x in product. */
static void run_lora_ceiling(void *p)
{
    lora_ctx *c = p;
    k_gemm(CblasNoTrans, CblasNoTrans, c->N, c->in, c->in, 1.0f, c->x, c->in, c->dx, c->in, 0.0f,
           c->y, c->in);
}

static int bench_lora(int argc, char **argv, double seconds, const char *threads)
{
    int N = (int)arg_long(argc, argv, "--rows", 1024), C = (int)arg_long(argc, argv, "--dim", 576);
    int inter = (int)arg_long(argc, argv, "--inter", 1536);
    int kv = (int)arg_long(argc, argv, "--kv", 192);
    int r = (int)arg_long(argc, argv, "--rank", 8);
    shape shapes[] = {{"q/o", C, C}, {"k/v", C, kv}, {"gate", C, inter}, {"down", inter, C}};
    int ns = sizeof shapes / sizeof *shapes, wide = inter > C ? inter : C;
    size_t big = (size_t)N * wide;
    lora_ctx c = {N, 0, 0, r, randn(big, 1.0f, 11), randn(big, 1.0f, 12), randn(big, 1.0f, 13),
                  randn(big, 1.0f, 14), randn((size_t)r * wide, 0.1f, 15),
                  randn((size_t)r * wide, 0.1f, 16), randn((size_t)N * r, 1.0f, 17),
                  randn((size_t)N * r, 1.0f, 18), randn((size_t)r * wide, 1.0f, 19),
                  randn((size_t)r * wide, 1.0f, 20), randn(k_lora_scratch(wide, r), 1.0f, 21),
                  randn(2 * (size_t)N * (wide + 3 * (size_t)wide) / 3 + 16, 1.0f, 22)};
    printf("bench_gemm --lora: N %d r %d; microseconds per call (best within %.2f s), GFLOP/s; "
           "add: k_add over the floats the passes must move\n", N, r, seconds);
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        c.in = C;
        double ceil = 2.0 * N * C * C / best_time(run_lora_ceiling, &c, seconds) * 1e-9;
        printf("\nthreads %d: ceiling (k_gemm %d x %d x %d) %.1f GFLOP/s\n"
               "%-6s %-4s %5s %5s %5s %3s %9s %6s %9s %6s %7s %7s\n", nt, N, C, C, ceil, "map",
               "dir", "N", "in", "out", "r", "sgemm us", "GF/s", "kernel us", "GF/s", "speedup",
               "add us");
        for (int i = 0; i < ns; i++) {
            c.in = shapes[i].in, c.out = shapes[i].out;
            for (int bwd = 0; bwd < 2; bwd++)
                lora_row(&c, shapes[i].name, bwd, seconds);
        }
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
    free(c.x), free(c.y), free(c.dy), free(c.dx), free(c.A), free(c.B), free(c.u), free(c.du);
    free(c.dA), free(c.dB), free(c.scr), free(c.pad);
    return 0;
}

int main(int argc, char **argv)
{
    cpu_fix_blas(argv);   /* the kernels pslora itself runs on (common/base/cpu.h) */
    int M = (int)arg_long(argc, argv, "--rows", 1024), C = (int)arg_long(argc, argv, "--dim", 768);
    int inter = (int)arg_long(argc, argv, "--inter", 4L * C);
    int V = (int)arg_long(argc, argv, "--vocab", 50257);
    const char *threads = arg_str(argc, argv, "--threads", "1,2");
    ctx c = {M, atof(arg_str(argc, argv, "--seconds", "0.5")), NULL, NULL, NULL};
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--attention"))
            return bench_attention(argc, argv, c.seconds, threads);
        else if (!strcmp(argv[i], "--lora"))
            return bench_lora(argc, argv, c.seconds, threads);
    shape shapes[] = {{"c_attn", C, 3 * C},
                      {"c_proj", C, C},
                      {"c_fc", C, inter},
                      {"mlp_proj", inter, C},
                      {"lm_head", C, V}};
    int ns = sizeof shapes / sizeof *shapes;
    size_t maxw = 0, maxd = 0;
    for (int i = 0; i < ns; i++) {
        size_t w = (size_t)shapes[i].in * shapes[i].out;
        size_t d = shapes[i].in > shapes[i].out ? shapes[i].in : shapes[i].out;
        maxw = w > maxw ? w : maxw, maxd = d > maxd ? d : maxd;
    }
    c.x = randn((size_t)M * maxd, 1.0f, 1);
    c.y = calloc((size_t)M * maxd, sizeof *c.y);
    c.w = randn(maxw, 0.02f, 2);
    cpu_bf16 k = CPU_BF16_NONE;
    pl_err e;
    if (cpu_bf16_dot(&k, &e) != 0)
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
    printf("bench_gemm: GFLOP/s, best call within %.2f s; oneDNN %s, native bf16 dot product %s\n",
           c.seconds, dm_available() ? "yes" : "no", cpu_bf16_name(k));
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        printf("\nthreads %d\n%-8s %-4s %5s %5s %5s %7s %7s %7s %7s %7s  %s\n", nt, "shape", "dir",
               "M", "K", "N", "sgemm", "tiled", "bf16", "bf16pl", "dnnl32", "bf16 / fp32 kernel");
        for (int i = 0; i < ns; i++) {
            pl_err e;
            dm_linear *h = dm_available() ? dm_linear_pack(c.w, DM_F32, DM_IN_OUT, shapes[i].in,
                                                           shapes[i].out, 1, &e)
                                          : NULL;
            if (dm_available() && !h) {
                fprintf(stderr, "bench_gemm: %s\n", e.msg);
                return 1;
            }
            for (int bwd = 0; bwd < 2; bwd++)
                bench_shape(&c, &shapes[i], bwd, h);
            dm_free(h);
        }
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
    free(c.x), free(c.y), free(c.w);
    return 0;
}
