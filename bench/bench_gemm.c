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
 * With --attention: causal attention instead, the fp32 kernels against the
 * oneDNN ones, bf16 or (--dtype fp32) fp32 (section "--attention" below);
 * with --lora: the LoRA products at Llama's shapes (section "--lora"); with
 * --mlp: the Llama MLP's work besides its products, unfolded and folded
 * (section "--mlp"); with --kcat: the LoRA inside the frozen products
 * against after them (section "--kcat").  Every mode takes --cold MB: MB megabytes written
 * before each timed call (not timed), so that calls start cold as in a
 * step rather than with their operands cached from the previous call.
 *
 *   bench_gemm [--rows 1024] [--dim 768] [--inter 3072] [--vocab 50257]
 *              [--threads 1,2] [--seconds 0.5] [--cold MB]
 *   bench_gemm --attention [--batch 4] [--seq 256] [--heads 12] [--kv-heads H] [--head-dim 64]
 *              [--dtype bf16|fp32] [--slices 0] [--threads 1,2] [--seconds 0.5] [--cold MB]
 *   bench_gemm --lora [--rows 1024] [--dim 576] [--kv 192] [--inter 1536] [--rank 8] [--bf16]
 *              [--threads 1,2] [--seconds 0.5] [--cold MB]
 *   bench_gemm --mlp [--rows 1024] [--dim 576] [--inter 1536] [--rank 8] [--bf16]
 *              [--threads 1,2] [--seconds 0.5] [--cold MB]
 *   bench_gemm --kcat [--rows 1024] [--dim 576] [--kv 192] [--inter 1536] [--rank 8]
 *              [--threads 1,2] [--seconds 0.5] [--cold MB] */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cpu.h"
#include "dnnl_attention.h"
#include "dnnl_matmul.h"
#include "err.h"
#include "kernels.h"
#include "kernels_lora.h"
#include "lora_bf16.h"
#include "metrics.h"
#include "rng.h"
#include "testutil.h"
#include "vec.h"

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
/* --cold MB: before every timed call, MB megabytes written (untimed) on all
 * threads, so each call starts with its operands out of the caches, as a
 * step's passes find the rows the previous pass made (0: warm, the default). */
static unsigned char *cold_buf;
static size_t cold_len;

static void evict_caches(void)
{
    if (!cold_len)
        return;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < cold_len; i += 64)
        cold_buf[i] = (unsigned char)(cold_buf[i] + 1);
}

static double best_time(void (*fn)(void *), void *arg, double budget)
{
    fn(arg);
    double best = 1e30, start = clock_now();
    int calls = 0;
    do {
        evict_caches();
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
    float *a = vec_falloc(n);   /* aligned as pslora's own buffers */
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

static const char *arg_str(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name)) {
            if (i + 1 == argc) {   /* a flag without its value is a usage error */
                fprintf(stderr, "bench_gemm: %s: missing value\n", name);
                exit(2);
            }
            return argv[i + 1];
        }
    return def;
}

/* Whether a flag without a value is given. */
static int arg_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name))
            return 1;
    return 0;
}

/* A whole integer flag; anything else is a usage error (exit 2). */
static long arg_long(int argc, char **argv, const char *name, long def)
{
    const char *v = arg_str(argc, argv, name, NULL);
    long x;
    if (!v)
        return def;
    if (pl_parse_long(v, &x) != 0) {
        fprintf(stderr, "bench_gemm: %s: '%s' is not an integer\n", name, v);
        exit(2);
    }
    return x;
}

/* ---- --attention: causal attention, fp32 kernels against bf16 -----------------
 *
 * The attention of a step at the model's shapes (GPT-2 by default: B 4, T 256,
 * 12 heads of 64; q, k, v the column blocks of one qkv [B*T, 3*H*D], or with
 * --kv-heads Hk < H Llama's separate q [B*T, H*D], k, v [B*T, Hk*D]), whole
 * passes:
 *   fp32  k_attention_fwd / k_attention_bwd (kernels.h): per (b, h), one
 *         single-threaded sgemm per causal block and product, fp32 softmax
 *   bf16  da_attn_fwd / da_attn_bwd (dnnl_attention.h): the products in bf16
 *         through oneDNN over all heads at once, rounding included (with
 *         --dtype fp32: the same in fp32, column "dnnl32")
 * GFLOP/s count the causal blocks' products (2 m n K each; the softmax not
 * counted), both variants alike.  Each figure is the best call of
 * ATT_ROUNDS turns of the variants (a shared machine).  Also printed: the
 * oneDNN outputs' max-norm error relative to the fp32 kernels' (out; dq,
 * dk, dv) on these inputs. */
#define ATT_ROUNDS 5

typedef struct {
    da_shape s;
    float *q, *k, *v, *out, *att, *dout, *dq, *dk, *dv, *dP;
    void *P;         /* the oneDNN variant's softmax (room for fp32) */
    da_attn *da;
    int bwd, bf16;   /* the pass and the variant a call runs (bf16: oneDNN's) */
} att_ctx;

static void run_att(void *arg)
{
    att_ctx *c = arg;
    const da_shape *s = &c->s;
    pl_err e;
    int rc = 0;
    if (c->bf16 && !c->bwd)
        rc = da_attn_fwd(c->da, c->out, c->P, c->q, c->k, c->v, NULL, &e);
    else if (c->bf16)
        rc = da_attn_bwd(c->da, c->dq, c->dk, c->dv, c->dout, c->q, c->k, c->v, c->P, NULL, &e);
    else if (!c->bwd)
        k_attention_fwd(c->out, c->att, c->q, c->k, c->v, s->B, s->T, s->H, s->Hk, s->D, s->ldq,
                        s->ldk, s->ldv);
    else
        k_attention_bwd(c->dq, c->dk, c->dv, c->dP, c->dout, c->q, c->k, c->v, c->att, s->B, s->T,
                        s->H, s->Hk, s->D, s->ldq, s->ldk, s->ldv);
    if (rc != 0) {
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
        exit(1);
    }
}

/* FLOPs of a pass's products over the causal blocks (fwd: S, O; bwd: dP,
 * dQ, dK, dV), each 2 m n K per block and head. */
static double att_flops(const da_shape *s, int bwd)
{
    double f = 0;
    for (int t0 = 0; t0 < s->T; t0 += DA_BLOCK) {
        int t1 = s->T - t0 < DA_BLOCK ? s->T : t0 + DA_BLOCK, m = t1 - t0, rows = s->T - t0;
        f += bwd ? 2.0 * (2.0 * m * t1 * s->D) + 2.0 * (2.0 * m * s->D * rows)
                 : 2.0 * (2.0 * m * t1 * s->D);
    }
    return f * s->B * s->H;
}

/* The oneDNN variant's column name. */
static const char *att_name(const da_shape *s) { return s->dt == DA_F32 ? "dnnl32" : "bf16"; }

/* Runs both passes fp32 then oneDNN and prints the oneDNN outputs' error. */
static void att_check(att_ctx *c)
{
    const da_shape *s = &c->s;
    int N = s->B * s->T, wq = s->H * s->D, wk = s->Hk * s->D;
    int w[4] = {wq, wq, wk, wk}, ld[4] = {wq, s->ldq, s->ldk, s->ldv};
    float *got[4] = {c->out, c->dq, c->dk, c->dv}, *ref[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) /* N rows of w at stride ld */
        len[i] = (size_t)(N - 1) * ld[i] + w[i], ref[i] = malloc(len[i] * sizeof **ref);
    for (int bf = 0; bf < 2; bf++)
        for (int bwd = 0; bwd < 2; bwd++) {
            c->bf16 = bf, c->bwd = bwd;
            run_att(c);
            for (int i = 0; i < 4 && !bf && bwd; i++)
                memcpy(ref[i], got[i], len[i] * 4);
        }
    printf("%s vs fp32 kernels, max rel err (max-norm):", att_name(s));
    const char *names[4] = {"out", "dq", "dk", "dv"};
    for (int i = 0; i < 4; i++)
        printf(" %s %.2e", names[i], tu_rel_err_rows(got[i], ref[i], N, w[i], ld[i]));
    printf("\n");
    for (int i = 0; i < 4; i++)
        free(ref[i]);
}

/* The table at the current thread count: both passes, the variants taking turns. */
static void att_table(att_ctx *c, double seconds)
{
    char ms[24], gf[24];
    snprintf(ms, sizeof ms, "%s ms", att_name(&c->s));
    snprintf(gf, sizeof gf, "%s GF/s", att_name(&c->s));
    printf("%-4s %10s %10s %10s %11s %7s\n", "pass", "fp32 ms", ms, "fp32 GF/s", gf, "ratio");
    for (int bwd = 0; bwd < 2; bwd++) {
        double best[2] = {1e30, 1e30}, fl = att_flops(&c->s, bwd);
        for (int round = 0; round < ATT_ROUNDS; round++)
            for (int bf = 0; bf < 2; bf++) {
                c->bwd = bwd, c->bf16 = bf;
                double sec = best_time(run_att, c, seconds / ATT_ROUNDS);
                best[bf] = sec < best[bf] ? sec : best[bf];
            }
        printf("%-4s %10.2f %10.2f %10.1f %11.1f %6.2fx\n", bwd ? "bwd" : "fwd", best[0] * 1e3,
               best[1] * 1e3, fl / best[0] * 1e-9, fl / best[1] * 1e-9, best[0] / best[1]);
        fflush(stdout);
    }
}

/* A new handle for the current thread count (the slices are chosen by it,
 * or as --slices asks). */
static int att_handle(att_ctx *c)
{
    pl_err e;
    da_attn_free(c->da);
    c->da = da_attn_new(&c->s, &e);
    if (!c->da)
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
    return c->da ? 0 : -1;
}

static int bench_attention(int argc, char **argv, double seconds, const char *threads)
{
    att_ctx c = {0};
    da_shape *s = &c.s;
    s->B = (int)arg_long(argc, argv, "--batch", 4), s->T = (int)arg_long(argc, argv, "--seq", 256);
    s->H = (int)arg_long(argc, argv, "--heads", 12);
    s->Hk = (int)arg_long(argc, argv, "--kv-heads", s->H);
    s->D = (int)arg_long(argc, argv, "--head-dim", 64);
    int gpt2 = s->Hk == s->H, N = s->B * s->T;
    s->ldq = gpt2 ? 3 * s->H * s->D : s->H * s->D;
    s->ldk = s->ldv = gpt2 ? s->ldq : s->Hk * s->D;
    const char *dt = arg_str(argc, argv, "--dtype", "bf16");
    if (strcmp(dt, "bf16") && strcmp(dt, "fp32")) {
        fprintf(stderr, "bench_gemm: --dtype: '%s' is not bf16 or fp32\n", dt);
        return 2;
    }
    s->dt = strcmp(dt, "fp32") ? DA_BF16 : DA_F32;
    s->slices = (int)arg_long(argc, argv, "--slices", 0);
    omp_set_num_threads(2);
    if (att_handle(&c) != 0)
        return 1;
    /* gpt2: q, k, v the column blocks of one qkv; else three row-major arrays */
    size_t nq = (size_t)N * s->ldq, nk = (size_t)N * s->ldk, np = (size_t)s->B * s->H * s->T * s->T;
    size_t nqkv = gpt2 ? nq : nq + 2 * nk, no = (size_t)N * s->H * s->D;
    float *qkv = randn(nqkv, 1.0f, 3), *dqkv = calloc(nqkv, sizeof *dqkv);
    size_t ko = gpt2 ? (size_t)s->H * s->D : nq, vo = gpt2 ? 2 * ko : nq + nk;
    c.q = qkv, c.k = qkv + ko, c.v = qkv + vo, c.dq = dqkv, c.dk = dqkv + ko, c.dv = dqkv + vo;
    c.dout = randn(no, 1.0f, 4), c.out = calloc(no, sizeof *c.out);
    c.att = calloc(np, sizeof *c.att), c.dP = calloc(np, sizeof *c.dP);
    c.P = calloc(np, sizeof(float));
    printf("bench_gemm --attention: B %d T %d H %d Hk %d D %d, blocks of %d rows; products "
           "fwd %.2f, bwd %.2f GFLOP; best call within %.2f s; the %s handle holds %.1f MB\n",
           s->B, s->T, s->H, s->Hk, s->D, DA_BLOCK, att_flops(s, 0) * 1e-9,
           att_flops(s, 1) * 1e-9, seconds, att_name(s), da_attn_bytes(c.da) / 1e6);
    att_check(&c);
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        if (att_handle(&c) != 0)
            return 1;
        printf("\nthreads %d, %d slices\n", nt, da_attn_slices(c.da));
        att_table(&c, seconds);
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
    da_attn_free(c.da);
    free(qkv), free(dqkv), free(c.dout), free(c.out), free(c.att), free(c.dP), free(c.P);
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
 *   kernel  k_lora_fwd / k_lora_bwd (common/nn/kernels_lora.h), adding into y
 *           and dx as the model calls them after a oneDNN product that
 *           writes (session 7: written instead where the LoRA goes first)
 *   add     k_add over as many floats as the passes must move (fwd: x read,
 *           y read and written; bwd: dy and x read, dx read and written):
 *           the time if memory bound them
 * Microseconds per call (best within --seconds) and GFLOP/s (fwd 2 N r
 * (in+out), bwd 4 N r (in+out)); the header gives the ceiling, k_gemm on
 * an N x in x in product in the same run. */

typedef struct {
    int N, in, out, r;
    float *x, *y, *dy, *dx, *A, *B, *u, *du, *dA, *dB, *scr, *pad;
    uint16_t *pk;   /* --bf16: the kernels' bf16 pack (kernels.h), else NULL */
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
    k_lora_fwd(c->y, c->y, NULL, c->u, c->x, c->A, c->B, c->N, c->in, c->out, c->r, 2.0f, c->scr,
               c->pk);
}

static void run_lora_bwd(void *p)
{
    lora_ctx *c = p;
    k_lora_bwd(c->dx, 1.0f, c->dA, c->dB, c->du, c->dy, c->x, c->u, c->A, c->B, c->N, c->in, c->out,
               c->r, 2.0f, c->scr, c->pk);
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
                  randn((size_t)r * wide, 1.0f, 20), randn(k_lora_scratch(N, wide, r), 1.0f, 21),
                  randn(2 * (size_t)N * (wide + 3 * (size_t)wide) / 3 + 16, 1.0f, 22), NULL};
    if (arg_flag(argc, argv, "--bf16"))
        c.pk = calloc(k_lora_pack_size(1, wide, wide, r), sizeof *c.pk);
    printf("bench_gemm --lora: N %d r %d%s; microseconds per call (best within %.2f s), GFLOP/s; "
           "add: k_add over the floats the passes must move\n", N, r,
           c.pk ? ", the kernel's row products on bf16 inputs" : "", seconds);
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
    free(c.dA), free(c.dB), free(c.scr), free(c.pad), free(c.pk);
    return 0;
}

/* ---- --mlp: the Llama MLP's LoRA and SwiGLU, unfolded and folded ------------------
 *
 * Everything a bf16 Llama step does in its MLP besides the three frozen
 * products, with gate, up and down all adapted (N rows, C wide, MLP width
 * I, rank r), each way:
 *   unfolded  fwd: k_lora_fwd_group adding to gate and up, k_swiglu_fwd_bf16,
 *             k_lora_fwd for down (u from act);  bwd: k_lora_bwd for down
 *             adding into d(act), k_swiglu_bwd_bf16 (fp32 and bf16),
 *             k_lora_bwd_group for gate and up
 *   folded    k_swiglu_lora (kernels_lora.h): fwd: the u of gate and up, then
 *             k_swiglu_lora_fwd (act only in a tile, down's LoRA inside);
 *             bwd: k_swiglu_lora_bwd (down's du and dB share, act made
 *             again for its dA), k_swiglu_lora_bwd_end
 * Microseconds per call (best within --seconds); the [N,I] arrays (about
 * 5 x 4 N I bytes) do not fit in cache at the default shape, so each
 * call reads them from memory as the step does. */

typedef struct {
    int N, C, Ni, r;
    float *h2, *f, *g, *act, *out, *mid, *dres, *dwide, *dup, *dnarrow, *u[3], *du;
    float *A[3], *B[3], *dA[3], *dB[3], *scr;
    uint16_t *xb;   /* act in bf16, then d(gate) | d(up) */
    k_swiglu_lora z;
} mlp_ctx;

static void run_mlp_fwd(void *p)
{
    mlp_ctx *c = p;
    float *y[2] = {c->f, c->g};
    const float *res[2] = {c->f, c->g};
    const int out[2] = {c->Ni, c->Ni};
    k_lora_fwd_group(y, res, NULL, c->u, c->h2, c->z.A, c->z.B, out, 2, c->N, c->C, c->r, c->z.s,
                     c->scr, NULL);
    k_swiglu_fwd_bf16(c->act, c->xb, c->f, c->g, (size_t)c->N * c->Ni);
    k_lora_fwd(c->out, c->mid, NULL, c->u[2], c->act, c->A[2], c->B[2], c->N, c->Ni, c->C, c->r,
               c->z.s, c->scr, NULL);
}

static void run_mlp_fwd_folded(void *p)
{
    mlp_ctx *c = p;
    k_swiglu_lora_u(c->u, c->h2, &c->z, c->N, c->Ni, c->scr);
    k_swiglu_lora_fwd(c->f, c->g, c->xb, c->u[2], c->out, c->mid, &c->z, c->N, c->Ni, c->scr);
}

static void run_mlp_bwd(void *p)
{
    mlp_ctx *c = p;
    size_t n = (size_t)c->N * c->Ni;
    const int out[2] = {c->Ni, c->Ni};
    k_lora_bwd(c->dwide, 1.0f, c->dA[2], c->dB[2], c->du, c->dres, c->act, c->u[2], c->A[2],
               c->B[2], c->N, c->Ni, c->C, c->r, c->z.s, c->scr, NULL);
    k_swiglu_bwd_bf16(c->dwide, c->dup, c->xb, c->xb + n, c->dwide, c->f, c->g, n);
    const float *dy[2] = {c->dwide, c->dup};
    k_lora_bwd_group(c->dnarrow, 1.0f, c->dA, c->dB, dy, c->h2, c->z.u, c->z.A, c->z.B, out, 2,
                     c->N, c->C, c->r, c->z.s, c->scr, NULL);
}

static void run_mlp_bwd_folded(void *p)
{
    mlp_ctx *c = p;
    size_t n = (size_t)c->N * c->Ni;
    k_swiglu_lora_bwd(c->xb, c->xb + n, c->dwide, c->f, c->g, c->dres, &c->z, c->N, c->Ni, c->scr);
    k_swiglu_lora_bwd_end(c->dnarrow, c->dA, c->dB, c->h2, &c->z, c->N, c->C, c->Ni, c->scr);
}

static int bench_mlp(int argc, char **argv, double seconds, const char *threads)
{
    mlp_ctx c = {.N = (int)arg_long(argc, argv, "--rows", 1024),
                 .C = (int)arg_long(argc, argv, "--dim", 576),
                 .Ni = (int)arg_long(argc, argv, "--inter", 1536),
                 .r = (int)arg_long(argc, argv, "--rank", 8)};
    size_t NC = (size_t)c.N * c.C, NI = (size_t)c.N * c.Ni, Nr = (size_t)c.N * c.r;
    size_t rC = (size_t)c.r * c.C, rI = (size_t)c.r * c.Ni;
    int maxt = omp_get_max_threads();
    size_t sg = k_lora_group_scratch(2, c.N, 2 * c.Ni, c.r), ss = k_swiglu_lora_scratch(c.N, c.Ni, c.C, c.r, maxt);
    c.h2 = randn(NC, 1.0f, 1), c.f = randn(NI, 1.0f, 2), c.g = randn(NI, 1.0f, 3);
    c.act = randn(NI, 1.0f, 4), c.out = randn(NC, 1.0f, 5), c.mid = randn(NC, 1.0f, 6);
    c.dres = randn(NC, 1.0f, 7), c.dwide = randn(NI, 1.0f, 8), c.dup = randn(NI, 1.0f, 9);
    c.dnarrow = randn(NC, 1.0f, 10), c.du = randn(Nr, 1.0f, 11);
    c.scr = randn(sg > ss ? sg : ss, 1.0f, 12);
    c.xb = calloc(2 * NI, sizeof *c.xb);
    for (int i = 0; i < 3; i++) {
        size_t ab = i < 2 ? rC : rI;   /* A [r,in], B [out,r]: gate, up C -> I; down I -> C */
        c.u[i] = randn(Nr, 1.0f, 20 + i);
        c.A[i] = randn(ab, 0.05f, 30 + i), c.B[i] = randn(i < 2 ? rI : rC, 0.001f, 40 + i);
        c.dA[i] = randn(ab, 1.0f, 50 + i), c.dB[i] = randn(i < 2 ? rI : rC, 1.0f, 60 + i);
    }
    c.z = (k_swiglu_lora){{c.u[0], c.u[1]}, {c.A[0], c.A[1]}, {c.B[0], c.B[1]}, c.A[2], c.B[2],
                          c.u[2], c.r, c.C, maxt, 2.0f, arg_flag(argc, argv, "--bf16")};
    printf("bench_gemm --mlp: N %d C %d I %d r %d; microseconds per call (best within %.2f s)\n"
           "%-7s %9s %9s %9s %9s %8s %8s\n", c.N, c.C, c.Ni, c.r, seconds, "threads", "fwd",
           "folded", "bwd", "folded", "fwd x", "bwd x");
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        double f0 = best_time(run_mlp_fwd, &c, seconds), f1 = best_time(run_mlp_fwd_folded, &c, seconds);
        double b0 = best_time(run_mlp_bwd, &c, seconds), b1 = best_time(run_mlp_bwd_folded, &c, seconds);
        printf("%-7d %9.0f %9.0f %9.0f %9.0f %7.2fx %7.2fx\n", nt, f0 * 1e6, f1 * 1e6, b0 * 1e6,
               b1 * 1e6, f0 / f1, b0 / b1);
        fflush(stdout);
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
    float *all[] = {c.h2, c.f, c.g, c.act, c.out, c.mid, c.dres, c.dwide, c.dup, c.dnarrow, c.du,
                    c.scr, c.u[0], c.u[1], c.u[2], c.A[0], c.A[1], c.A[2], c.B[0], c.B[1], c.B[2],
                    c.dA[0], c.dA[1], c.dA[2], c.dB[0], c.dB[1], c.dB[2]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
    free(c.xb);
    return 0;
}

/* ---- --kcat: the LoRA inside the frozen products, measured ------------------------
 *
 * What concatenating the LoRA into the frozen products along K would save
 * (docs/performance.md, "Session 15"): y = x W^T + s u B^T as the bf16 step
 * makes it now, the frozen product then the LoRA's rows added in place
 * (lb_axpys on bf16 inputs, reading back the rows the product wrote), against
 * ONE product of K + r over [x | s u] and [W | B] (the LoRA's r columns
 * riding along in oneDNN's kernel).  For each of Llama's maps (C 576, kv 192,
 * I 1536) in both orientations: forward [N,in] x [in,out], backward
 * [N,out] x [out,in] (dx = dy W + du A, the same form).  Also each group of
 * maps reading one input (q, k, v; gate, up) as separate products against
 * one product over their concatenated outputs (forward; backward: one over
 * the concatenated K).  The weights' values do not matter for the time;
 * run with --cold MB for the step's conditions (rows out of cache). */
typedef struct {
    dm_linear *h;
    const uint16_t *xb;
    float *y;
    int N, acc;             /* acc: the product adds into y (sum post-op) */
    const float *u;         /* non-NULL: then y += s u M in place (M as bf16 pairs) */
    const uint16_t *pm;
    int w, r;
} kc_job;

static void run_kc(void *arg)
{
    const kc_job *j = arg;
    pl_err e;
    int rc = dm_linear_fwd_bf16(j->h, j->xb, j->y, NULL, j->N, j->acc, &e);
    if (rc != 0) {
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
        exit(1);
    }
    if (!j->u)
        return;
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < j->N; n0 += 16) {
        int rows = j->N - n0 < 16 ? j->N - n0 : 16;
        float *y = j->y + (size_t)n0 * j->w;
        lb_axpys(y, j->w, y, j->w, NULL, j->u + (size_t)n0 * j->r, j->pm, j->w, j->r, 2.0f, rows);
    }
}

/* A bf16 handle for [K -> Nc] products (random weights, forward only: a
 * backward orientation is timed as the forward product of its shape). */
static dm_linear *kc_handle(int K, int Nc, uint64_t seed)
{
    float *w = randn((size_t)K * Nc, 0.02f, seed);
    pl_err e;
    dm_linear *h = dm_linear_pack(w, DM_F32, DM_OUT_IN, K, Nc, DM_FWD_ONLY, &e);
    free(w);
    if (!h) {
        fprintf(stderr, "bench_gemm: %s\n", e.msg);
        exit(1);
    }
    return h;
}

/* One row of the table: [N,K] x [K,Nc] three ways. */
static void kc_row(const char *name, int K, int Nc, int N, int r, const uint16_t *xb, float *y,
                   const float *u, double seconds)
{
    dm_linear *h = kc_handle(K, Nc, 70), *hx = kc_handle(K + r, Nc, 71);
    float *M = randn((size_t)r * Nc, 0.1f, 72);
    uint16_t *pm = calloc(lb_size(r, Nc), sizeof *pm);
    lb_pack(pm, 1, M, (size_t)Nc, 1, r, Nc);
    kc_job j = {h, xb, y, N, 0, NULL, pm, Nc, r};
    double t0 = best_time(run_kc, &j, seconds);
    j.u = u;
    double t1 = best_time(run_kc, &j, seconds);
    kc_job jx = {hx, xb, y, N, 0, NULL, NULL, Nc, r};
    double t2 = best_time(run_kc, &jx, seconds);
    printf("%-10s %5d %5d %9.0f %9.0f %9.0f %9.0f %9.0f\n", name, K, Nc, t0 * 1e6, t1 * 1e6,
           t2 * 1e6, (t1 - t0) * 1e6, (t1 - t2) * 1e6);
    fflush(stdout);
    dm_free(h), dm_free(hx), free(M), free(pm);
}

/* One group: separate products (the second on adding into the first's
 * output for the backward) against one over the concatenation. */
static void kc_group(const char *name, int in, const int *outs, int G, int N, int bwd,
                     const uint16_t *xb, float *y, double seconds)
{
    dm_linear *h[3], *hf;
    int tot = 0;
    for (int g = 0; g < G; g++)
        tot += outs[g];
    for (int g = 0; g < G; g++)   /* forward [in -> out_g]; backward [out_g -> in] */
        h[g] = bwd ? kc_handle(outs[g], in, 80 + g) : kc_handle(in, outs[g], 80 + g);
    hf = bwd ? kc_handle(tot, in, 84) : kc_handle(in, tot, 84);
    double sep = 0, one;
    for (int g = 0; g < G; g++) {   /* each timed alone: the sum is what the step runs */
        kc_job j = {h[g], xb, y, N, bwd && g > 0, NULL, NULL, 0, 0};
        sep += best_time(run_kc, &j, seconds);
    }
    kc_job jf = {hf, xb, y, N, 0, NULL, NULL, 0, 0};
    one = best_time(run_kc, &jf, seconds);
    printf("%-10s %-4s %5d %5d %9.0f %9.0f %9.0f\n", name, bwd ? "bwd" : "fwd", bwd ? tot : in,
           bwd ? in : tot, sep * 1e6, one * 1e6, (sep - one) * 1e6);
    fflush(stdout);
    for (int g = 0; g < G; g++)
        dm_free(h[g]);
    dm_free(hf);
}

static int bench_kcat(int argc, char **argv, double seconds, const char *threads)
{
    int N = (int)arg_long(argc, argv, "--rows", 1024), C = (int)arg_long(argc, argv, "--dim", 576);
    int kv = (int)arg_long(argc, argv, "--kv", 192), Ni = (int)arg_long(argc, argv, "--inter", 1536);
    int r = (int)arg_long(argc, argv, "--rank", 8), wide = Ni > C ? Ni : C;
    if (!dm_available()) {
        fprintf(stderr, "bench_gemm: --kcat needs oneDNN\n");
        return 1;
    }
    float *x = randn((size_t)N * (3 * wide + r), 1.0f, 1);
    uint16_t *xb = calloc((size_t)N * (3 * wide + r), sizeof *xb);
    dm_to_bf16(xb, x, N, 3 * wide + r);
    float *y = calloc((size_t)N * 3 * wide, sizeof *y), *u = randn((size_t)N * r, 1.0f, 2);
    struct {
        const char *name;
        int K, Nc;
    } rows[] = {{"q,o fwd", C, C},  {"k,v fwd", C, kv}, {"gate,up f", C, Ni}, {"down fwd", Ni, C},
                {"q,o bwd", C, C},  {"k,v bwd", kv, C}, {"gate,up b", Ni, C}, {"down bwd", C, Ni}};
    int qkv[3] = {C, kv, kv}, gu[2] = {Ni, Ni};
    printf("bench_gemm --kcat: N %d C %d kv %d I %d r %d, bf16; microseconds per call (best within "
           "%.2f s)%s\n", N, C, kv, Ni, r, seconds, cold_len ? ", caches written over before each" : "");
    for (const char *t = threads; *t;) {
        int nt = atoi(t);
        omp_set_num_threads(nt);
        printf("\nthreads %d\n%-10s %5s %5s %9s %9s %9s %9s %9s\n", nt, "map", "K", "N", "product",
               "+axpy", "K+r", "axpy", "saved");
        for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
            kc_row(rows[i].name, rows[i].K, rows[i].Nc, N, r, xb, y, u, seconds);
        printf("%-10s %-4s %5s %5s %9s %9s %9s\n", "group", "dir", "K", "N", "separate", "one",
               "saved");
        for (int bwd = 0; bwd < 2; bwd++) {
            kc_group("q,k,v", C, qkv, 3, N, bwd, xb, y, seconds);
            kc_group("gate,up", C, gu, 2, N, bwd, xb, y, seconds);
        }
        t = strchr(t, ',') ? strchr(t, ',') + 1 : t + strlen(t);
    }
    free(x), free(xb), free(y), free(u);
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
    long cold = arg_long(argc, argv, "--cold", 0);
    if (cold < 0 || cold > 65536) {
        fprintf(stderr, "bench_gemm: --cold: %ld MB is not in 0..65536\n", cold);
        return 2;
    }
    cold_len = (size_t)cold << 20;
    cold_buf = cold_len ? calloc(cold_len, 1) : NULL;
    if (cold_len && !cold_buf) {
        fprintf(stderr, "bench_gemm: --cold: out of memory for %ld MB\n", cold);
        return 1;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--attention"))
            return bench_attention(argc, argv, c.seconds, threads);
        else if (!strcmp(argv[i], "--lora"))
            return bench_lora(argc, argv, c.seconds, threads);
        else if (!strcmp(argv[i], "--mlp"))
            return bench_mlp(argc, argv, c.seconds, threads);
        else if (!strcmp(argv[i], "--kcat"))
            return bench_kcat(argc, argv, c.seconds, threads);
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
