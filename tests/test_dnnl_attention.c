/* test_dnnl_attention.c - the oneDNN attention (dnnl_attention.h), bf16
 * and fp32, against the fp32 kernels (k_attention_fwd / k_attention_bwd) on
 * the same random inputs.
 *
 * Bound: bf16 keeps 8 significant bits, unit roundoff u = 2^-9 = 1.95e-3.
 * Each product rounds both inputs once (relative error <= 2u per term,
 * fp32 accumulation), and an output passes through two rounded products
 * in a chain (S then O; dP then dQ/dK, or P and dO for dV), with the
 * softmax (and its backward) in fp32 between them, so each output element
 * is off by a few u relative to the output's scale.  TOL = 8u = 1.56e-2 on
 * the max-norm relative error max|bf16 - fp32| / max|fp32| per tensor; the
 * measured errors are 2.5e-3 to 6e-3 (printed).  A wrong layout, block,
 * head or group member gives errors of order 1, and a path that did not
 * round at all would give below 1e-5: both are caught (MIN_ERR).
 *
 * fp32 (DA_F32): the same products unrounded, in another summation order
 * (oneDNN's blocking against OpenBLAS's), so each output differs by a few
 * fp32 ulps of the sums: u32 = 2^-24 = 6e-8 times ~log2(K) terms' growth.
 * TOL32 = 1e-5 relative (max-norm); measured ~1e-7 (printed).  Any bf16
 * rounding on the way (2e-3 and more, as above) fails it.
 *
 * Shapes: GPT-2's interleaved qkv [N, 3*H*D] (H == Hk), and a grouped one
 * (Llama: q [N,H*D], k, v [N,Hk*D], H/Hk = 3) where dk and dv sum over the
 * group; T is not a multiple of DA_BLOCK, so the last block is partial.
 * Also: the softmax kept (P in the header's stacked row order, the columns
 * the backward reads; bf16 or fp32) against the kernels' fp32 att, a second
 * call giving the same bits (primitives cached, nothing rebuilt), the
 * bytes the handle holds (fp32: its scratch only once a backward ran), and
 * the batch cut into 1, 2 and 4 slices (dnnl_attention.h, "Threads"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "dnnl_attention.h"
#include "kernels.h"
#include "rng.h"
#include "testutil.h"

#define TOL 1.56e-2   /* 8u, see above */
#define MIN_ERR 1e-5  /* below: the inputs were not rounded to bf16 */
#define TOL32 1e-5    /* fp32: summation order only, see above */

#ifdef PSLORA_HAVE_DNNL

/* The largest relative error of P (bf16 bits or fp32 as dt) against the
 * fp32 att over the columns row t of each (b, h) keeps: 0..end of t's
 * block. */
static double att_err(const void *x, da_dtype dt, const float *y, const da_shape *s)
{
    double d = 0, m = 0;
    const uint16_t *xb = x;
    const float *xf = x;
    int T = s->T, G = s->H / s->Hk;
    for (int b = 0; b < s->B; b++)
        for (int h = 0; h < s->H; h++)
            for (int t = 0; t < T; t++) {
                /* the header's stacked order: per (b, g = h / G), block
                 * after block, in a block of mb rows member h % G's at
                 * (h % G) * mb */
                int t0 = t / DA_BLOCK * DA_BLOCK, mb = T - t0 < DA_BLOCK ? T - t0 : DA_BLOCK;
                size_t rx = ((size_t)b * s->Hk + h / G) * G * T + (size_t)G * t0 +
                            (size_t)(h % G) * mb + (size_t)(t - t0);
                size_t ry = ((size_t)b * s->H + h) * T + t;
                int w = t0 + DA_BLOCK < T ? t0 + DA_BLOCK : T;
                for (int j = 0; j < w; j++) {
                    size_t i = rx * T + j, k = ry * T + j;
                    double a = dt == DA_BF16 ? (double)bf16_to_f32(xb[i]) : xf[i];
                    a = fabs(a - y[k]);
                    double bb = fabs(y[k]);
                    d = a > d ? a : d, m = bb > m ? bb : m;
                }
            }
    return m > 0 ? d / m : d;
}

static float *randn(size_t n, uint64_t seed)
{
    float *a = malloc(n * sizeof *a);
    rng_state r;
    uint64_t w[2] = {0x61747431ULL, seed};
    rng_seed(&r, w, 2);
    rng_fill_normal(&r, a, n, 1.0f);
    return a;
}

/* One shape's buffers: q, k, v and dq, dk, dv inside one array each (GPT-2:
 * column blocks of [N, 3C]; grouped: three row-major arrays one after the
 * other), the kernels' results (ref) and the handle's (type s.dt). */
typedef struct {
    da_shape s;
    int N;
    float *qkv, *dqkv[2], *out[2], *att, *dout, *dP;
    void *P;         /* the handle's softmax: room for fp32 */
    size_t kofs, vofs, nqkv, no, natt;
} att_case;

static void case_init(att_case *c, da_dtype dt, int B, int T, int H, int Hk, int D, int slices)
{
    int gpt2 = H == Hk;
    memset(c, 0, sizeof *c);
    c->N = B * T;
    c->s = (da_shape){B, T, H, Hk, D, gpt2 ? 3 * H * D : H * D, gpt2 ? 3 * H * D : Hk * D,
                      gpt2 ? 3 * H * D : Hk * D, dt, slices};
    size_t nq = (size_t)c->N * H * D, nk = (size_t)c->N * Hk * D;
    c->nqkv = nq + 2 * nk, c->no = nq, c->natt = (size_t)B * H * T * T;
    c->kofs = gpt2 ? (size_t)H * D : nq, c->vofs = gpt2 ? 2 * c->kofs : nq + nk;
    c->qkv = randn(c->nqkv, 1), c->dout = randn(c->no, 2);
    c->dP = malloc(c->natt * sizeof *c->dP);
    c->att = calloc(c->natt, sizeof(float)), c->P = calloc(c->natt, sizeof(float));
    for (int i = 0; i < 2; i++) {
        c->dqkv[i] = calloc(c->nqkv, sizeof(float));
        c->out[i] = calloc(c->no, sizeof(float));
    }
}

static void case_free(att_case *c)
{
    free(c->qkv), free(c->dout), free(c->dP), free(c->att), free(c->P);
    for (int i = 0; i < 2; i++)
        free(c->dqkv[i]), free(c->out[i]);
}

/* Both passes: variant 0 the fp32 kernels, 1 the handle h. */
static void run(att_case *c, int bf, da_attn *h)
{
    const da_shape *s = &c->s;
    const float *q = c->qkv, *k = q + c->kofs, *v = q + c->vofs;
    float *dq = c->dqkv[bf], *dk = dq + c->kofs, *dv = dq + c->vofs;
    pl_err e;
    if (bf) {
        assert_int_equal(da_attn_fwd(h, c->out[1], c->P, q, k, v, NULL, &e), 0);
        assert_int_equal(da_attn_bwd(h, dq, dk, dv, c->dout, q, k, v, c->P, NULL, &e), 0);
        return;
    }
    k_attention_fwd(c->out[0], c->att, q, k, v, s->B, s->T, s->H, s->Hk, s->D, s->ldq, s->ldk,
                    s->ldv);
    k_attention_bwd(dq, dk, dv, c->dP, c->dout, q, k, v, c->att, s->B, s->T, s->H, s->Hk, s->D,
                    s->ldq, s->ldk, s->ldv);
}

/* Checks one error against the bound of type dt and prints it. */
static void check(const char *what, double err, da_dtype dt)
{
    double tol = dt == DA_BF16 ? TOL : TOL32;
    printf("  %-4s max rel err %.2e (bound %.2e)\n", what, err, tol);
    assert_true(err <= tol);
    if (dt == DA_BF16)
        assert_true(err >= MIN_ERR);
}

static void compare(da_dtype dt, int B, int T, int H, int Hk, int D, int slices)
{
    att_case c;
    case_init(&c, dt, B, T, H, Hk, D, slices);
    pl_err e;
    da_attn *h = da_attn_new(&c.s, &e);
    assert_non_null(h);
    assert_int_equal(da_attn_slices(h), slices);
    /* bf16: the copies of q, dO (nq each), k, v (nk each), dS (natt) and the
     * fp32 scratch, from the start; fp32: the copies of q and dO from the
     * start, the scratch from the first backward; grouped heads, both: the
     * stacked O / dQ (nq floats) */
    size_t nk = (c.nqkv - c.no) / 2, tt = c.natt * sizeof(float);
    size_t copies = (2 * c.no + 2 * nk + c.natt) * sizeof(uint16_t), copies32 = 2 * c.no * 4;
    size_t os = H > Hk ? c.no * sizeof(float) : 0;   /* grouped: O and dQ stacked first */
    copies += os, copies32 += os;
    assert_int_equal(da_attn_bytes(h), dt == DA_BF16 ? copies + tt : copies32);
    run(&c, 0, NULL);
    run(&c, 1, h);
    assert_int_equal(da_attn_bytes(h), dt == DA_BF16 ? copies + tt : copies32 + tt);
    printf("%s, B %d T %d H %d Hk %d D %d, %d slices:\n", dt == DA_BF16 ? "bf16" : "fp32", B, T,
           H, Hk, D, slices);
    const da_shape *s = &c.s;
    int wq = H * D, wk = Hk * D;
    check("out", tu_rel_err_rows(c.out[1], c.out[0], c.N, wq, wq), dt);
    check("P", att_err(c.P, dt, c.att, s), dt);
    check("dq", tu_rel_err_rows(c.dqkv[1], c.dqkv[0], c.N, wq, s->ldq), dt);
    check("dk", tu_rel_err_rows(c.dqkv[1] + c.kofs, c.dqkv[0] + c.kofs, c.N, wk, s->ldk), dt);
    check("dv", tu_rel_err_rows(c.dqkv[1] + c.vofs, c.dqkv[0] + c.vofs, c.N, wk, s->ldv), dt);
    /* again on the same handle: the same bits */
    float *out = malloc(c.no * sizeof *out), *dqkv = malloc(c.nqkv * sizeof *dqkv);
    memcpy(out, c.out[1], c.no * sizeof *out), memcpy(dqkv, c.dqkv[1], c.nqkv * sizeof *dqkv);
    run(&c, 1, h);
    assert_memory_equal(out, c.out[1], c.no * sizeof *out);
    assert_memory_equal(dqkv, c.dqkv[1], c.nqkv * sizeof *dqkv);
    free(out), free(dqkv);
    da_attn_free(h);
    case_free(&c);
}

/* Each shape and type runs cut into 1 slice (the products over the whole
 * batch, on all threads), 2 (one region, a slice per thread) and 4 (more
 * slices than threads: each thread runs two in turn); B = 4, so a slice of
 * 2 batches, 1 batch, and the batch strides of every operand, are all
 * exercised.  Any slice that skipped its batches, or wrote another's,
 * fails the comparison with the kernels. */
static const int slice_counts[] = {1, 2, 4};

/* GPT-2's layout: 4 heads of 64, T = 100 (blocks of 64 and 36). */
static void test_gpt2_shape(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        compare(DA_BF16, 4, 100, 4, 4, 64, slice_counts[i]);
}

/* Grouped heads: 6 query heads over 2 kv heads, T = 130 (a 2-row block). */
static void test_grouped(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        compare(DA_BF16, 4, 130, 6, 2, 64, slice_counts[i]);
}

/* fp32 products, the same shapes: the kernels' results to summation order. */
static void test_fp32_gpt2_shape(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        compare(DA_F32, 4, 100, 4, 4, 64, slice_counts[i]);
}

static void test_fp32_grouped(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        compare(DA_F32, 4, 130, 6, 2, 64, slice_counts[i]);
}

/* The caller's row work (da_rows): the forward's pre halves rows of q (so
 * the pass must read each row after it), its post copies rows of out, the
 * backward's post copies rows of dq; every call counts its rows. */
typedef struct {
    float *q, *out, *dq, *copy;
    int ldq, w, cnt[4][1024];  /* fwd pre, fwd post, bwd pre, bwd post */
    int which;                 /* 0: forward, 2: backward */
} rows_case;

static void count_rows(rows_case *r, int k, int n0, int n1)
{
    for (int n = n0; n < n1; n++)
        r->cnt[k][n]++;
}

static void rows_pre(void *ctx, int n0, int n1)
{
    rows_case *r = ctx;
    count_rows(r, r->which, n0, n1);
    for (int n = n0; n < n1 && r->which == 0; n++)
        for (int j = 0; j < r->w; j++)
            r->q[(size_t)n * r->ldq + j] *= 0.5f;
}

static void rows_post(void *ctx, int n0, int n1)
{
    rows_case *r = ctx;
    count_rows(r, r->which + 1, n0, n1);
    const float *src = r->which == 0 ? r->out : r->dq;
    int ld = r->which == 0 ? r->w : r->ldq;
    for (int n = n0; n < n1; n++)
        memcpy(r->copy + (size_t)n * r->w, src + (size_t)n * ld, (size_t)r->w * sizeof(float));
}

/* With 1, 2 and 4 slices (fp32, grouped): each row in exactly one call of
 * each hook; the forward read q after pre (results = the kernels' on q
 * halved, to summation order); post saw the final rows of out and dq. */
static void test_rows(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        att_case c;
        case_init(&c, DA_F32, 4, 130, 6, 2, 64, slice_counts[i]);
        int N = c.N, wq = 6 * 64;
        assert_true(N <= 1024);
        rows_case *r = calloc(1, sizeof *r);
        r->ldq = c.s.ldq, r->w = wq, r->q = c.qkv, r->out = c.out[1], r->dq = c.dqkv[1];
        r->copy = malloc((size_t)N * wq * sizeof(float));
        pl_err e;
        da_attn *h = da_attn_new(&c.s, &e);
        assert_non_null(h);
        da_rows rows = {rows_pre, rows_post, r};
        const float *q = c.qkv, *k = q + c.kofs, *v = q + c.vofs;
        float *dq = c.dqkv[1], *dk = dq + c.kofs, *dv = dq + c.vofs;
        assert_int_equal(da_attn_fwd(h, c.out[1], c.P, q, k, v, &rows, &e), 0);
        assert_memory_equal(r->copy, c.out[1], (size_t)N * wq * sizeof(float));
        r->which = 2;
        assert_int_equal(da_attn_bwd(h, dq, dk, dv, c.dout, q, k, v, c.P, &rows, &e), 0);
        assert_memory_equal(r->copy, c.dqkv[1], (size_t)N * wq * sizeof(float));
        for (int kk = 0; kk < 4; kk++)
            for (int n = 0; n < N; n++)
                assert_int_equal(r->cnt[kk][n], 1);
        run(&c, 0, NULL);   /* the kernels, on q as halved by pre */
        check("out", tu_rel_err_rows(c.out[1], c.out[0], N, wq, wq), DA_F32);
        check("dq", tu_rel_err_rows(c.dqkv[1], c.dqkv[0], N, wq, c.s.ldq), DA_F32);
        da_attn_free(h);
        free(r->copy), free(r);
        case_free(&c);
    }
}

/* slices 0: one per thread when the threads divide the batch, else 1. */
static void test_slices_chosen(void **state)
{
    (void)state;
    int nt = omp_get_max_threads();
    omp_set_num_threads(2);
    int want[4] = {1, 2, 1, 2};   /* B = 1..4 on 2 threads */
    for (int B = 1; B <= 4; B++) {
        da_shape s = {B, 8, 2, 2, 16, 96, 96, 96, DA_BF16, 0};
        pl_err e;
        da_attn *h = da_attn_new(&s, &e);
        assert_non_null(h);
        assert_int_equal(da_attn_slices(h), want[B - 1]);
        da_attn_free(h);
    }
    omp_set_num_threads(1);
    da_shape s = {4, 8, 2, 2, 16, 96, 96, 96, DA_BF16, 0};
    pl_err e;
    da_attn *h = da_attn_new(&s, &e);
    assert_int_equal(da_attn_slices(h), 1);
    da_attn_free(h);
    omp_set_num_threads(nt);
}

#endif

/* A shape the kernels refuse too (H not a multiple of Hk), or any shape in
 * a build without oneDNN: NULL and one line saying why. */
static void test_refused(void **state)
{
    (void)state;
    da_shape s = {1, 8, 4, 3, 16, 64, 48, 48, DA_BF16, 0};
    pl_err e;
    e.msg[0] = 0;
    assert_null(da_attn_new(&s, &e));
#ifdef PSLORA_HAVE_DNNL
    assert_non_null(strstr(e.msg, "bad shape"));
    s.Hk = 4, s.ldk = s.ldv = 64, s.dt = (da_dtype)7;   /* a good shape, no such type */
    e.msg[0] = 0;
    assert_null(da_attn_new(&s, &e));
    assert_non_null(strstr(e.msg, "bad shape"));
    s.dt = DA_BF16, s.B = 3, s.slices = 2;   /* slices that do not divide the batch */
    e.msg[0] = 0;
    assert_null(da_attn_new(&s, &e));
    assert_non_null(strstr(e.msg, "bad shape"));
    s.slices = -1;
    e.msg[0] = 0;
    assert_null(da_attn_new(&s, &e));
    assert_non_null(strstr(e.msg, "bad shape"));
#else
    assert_non_null(strstr(e.msg, "built without oneDNN"));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#ifdef PSLORA_HAVE_DNNL
        cmocka_unit_test(test_gpt2_shape),
        cmocka_unit_test(test_grouped),
        cmocka_unit_test(test_fp32_gpt2_shape),
        cmocka_unit_test(test_fp32_grouped),
        cmocka_unit_test(test_slices_chosen),
        cmocka_unit_test(test_rows),
#endif
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
