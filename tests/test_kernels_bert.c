/* test_kernels_bert.c - the encoder kernels (kernels_bert.h) against plain
 * double-precision references written here, and each backward against
 * central finite differences of L = sum(dy * y) on those references
 * (tu_fd_grad, double).  Errors are max |got - ref| / max |ref|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_bert.h"
#include "testutil.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4   /* measured about 1e-6; float sums over T keys and V logits */

static void fill(float *a, size_t n, float sd, uint64_t seed)
{
    tu_fill_normal(a, n, 0.0f, sd, 0x62657274ULL, seed);
}

/* ---- erf GELU ---- */

typedef struct {
    size_t n;
    double *x, *dy;
} ew_ctx;

static double ref_gelu_erf(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

static double gelu_erf_loss(void *vc)
{
    ew_ctx *c = vc;
    double s = 0;
    for (size_t i = 0; i < c->n; i++)
        s += c->dy[i] * ref_gelu_erf(c->x[i]);
    return s;
}

static double tanh_loss(void *vc)
{
    ew_ctx *c = vc;
    double s = 0;
    for (size_t i = 0; i < c->n; i++)
        s += c->dy[i] * tanh(c->x[i]);
    return s;
}

/* An elementwise kernel pair against its reference f and the loss L. */
static void check_elementwise(void (*fwd)(float *, const float *, size_t),
                              double (*f)(double), tu_loss_fn L, int bwd_from_y,
                              void (*bwd)(float *, const float *, const float *, size_t))
{
    enum { n = 64 };
    float *x = tu_fnew(n), *y = tu_fnew(n), *dy = tu_fnew(n), *dx = tu_fnew(n);
    for (int i = 0; i < n; i++)   /* a ramp over [-5, 5]: both tails and the middle */
        x[i] = -5.0f + 10.0f * (float)i / (n - 1);
    fill(dy, n, 1, 1);
    ew_ctx c = {n, tu_to_double(x, n), tu_to_double(dy, n)};
    double *yr = tu_dnew(n), *fd = tu_dnew(n);
    for (int i = 0; i < n; i++)
        yr[i] = f(c.x[i]);
    fwd(y, x, n);
    assert_true(tu_rel_err_f(y, yr, n) < FWD_TOL);
    tu_fd_grad(fd, c.x, n, L, &c);
    bwd(dx, dy, bwd_from_y ? y : x, n);
    double err = tu_rel_err_f(dx, fd, n);
    assert_true(err < GRAD_TOL);
    free(x), free(y), free(dy), free(dx), free(c.x), free(c.dy), free(yr), free(fd);
}

static void test_gelu_erf(void **state)
{
    (void)state;
    check_elementwise(k_gelu_erf_fwd, ref_gelu_erf, gelu_erf_loss, 0, k_gelu_erf_bwd);
}

static void test_tanh(void **state)
{
    (void)state;
    check_elementwise(k_tanh_fwd, tanh, tanh_loss, 1, k_tanh_bwd);
}

/* ---- post-LN residual: y = LN(x + f) ---- */

typedef struct {
    int N, C;
    double eps, *x, *f, *w, *b, *dy;
} pln_ctx;

static double pln_ref(const pln_ctx *c, double *y)
{
    double L = 0;
    for (int n = 0; n < c->N; n++) {
        double s[64], m = 0, v = 0;
        for (int j = 0; j < c->C; j++)
            m += s[j] = c->x[n * c->C + j] + c->f[n * c->C + j];
        m /= c->C;
        for (int j = 0; j < c->C; j++)
            v += (s[j] - m) * (s[j] - m);
        v /= c->C;
        for (int j = 0; j < c->C; j++) {
            double yy = (s[j] - m) / sqrt(v + c->eps) * c->w[j] + c->b[j];
            if (y)
                y[n * c->C + j] = yy;
            L += c->dy[n * c->C + j] * yy;
        }
    }
    return L;
}

static double pln_loss(void *vc) { return pln_ref(vc, NULL); }

static void test_postln(void **state)
{
    (void)state;
    enum { N = 5, C = 24 };
    float *x = tu_fnew(N * C), *f = tu_fnew(N * C), *w = tu_fnew(C), *b = tu_fnew(C);
    float *dy = tu_fnew(N * C), *s = tu_fnew(N * C), *y = tu_fnew(N * C), *ds = tu_fnew(N * C);
    float mean[N], rstd[N];
    fill(x, N * C, 1, 2), fill(f, N * C, 0.5f, 3), fill(w, C, 1, 4), fill(b, C, 1, 5);
    fill(dy, N * C, 1, 6);
    for (int i = 0; i < N * C; i++)
        s[i] = x[i] + f[i];
    pln_ctx c = {N, C, 1e-12, tu_to_double(x, N * C), tu_to_double(f, N * C), tu_to_double(w, C),
                 tu_to_double(b, C), tu_to_double(dy, N * C)};
    double *yr = tu_dnew(N * C), *gx = tu_dnew(N * C), *gf = tu_dnew(N * C);
    pln_ref(&c, yr);
    k_postln_fwd(y, mean, rstd, s, w, b, N, C, 1e-12f);
    assert_true(tu_rel_err_f(y, yr, N * C) < FWD_TOL);
    for (int i = 0; i < N * C; i++)
        ds[i] = 123.0f;   /* overwritten, not added to */
    k_postln_bwd(ds, dy, s, mean, rstd, w, N, C);
    tu_fd_grad(gx, c.x, N * C, pln_loss, &c);
    tu_fd_grad(gf, c.f, N * C, pln_loss, &c);
    assert_true(tu_rel_err_f(ds, gx, N * C) < GRAD_TOL);
    assert_true(tu_rel_err_f(ds, gf, N * C) < GRAD_TOL);
    free(x), free(f), free(w), free(b), free(dy), free(s), free(y), free(ds);
    free(c.x), free(c.f), free(c.w), free(c.b), free(c.dy), free(yr), free(gx), free(gf);
}

/* ---- bidirectional attention with padding ---- */

enum { AB = 2, AT = 5, AH = 2, AD = 4, ALD = 3 * AH * AD };

typedef struct {
    double *qkv, *dy;   /* [B*T, ALD]: q | k | v interleaved per row, dy [B*T, H*D] */
    const int32_t *len;
} att_ctx;

/* HF: scores + (1 - mask) * min, softmax, times v. */
static double att_ref(const att_ctx *c, double *out)
{
    double L = 0;
    for (int b = 0; b < AB; b++)
        for (int h = 0; h < AH; h++)
            for (int t = 0; t < AT; t++) {
                double sc[AT], mx = -1e300, sum = 0;
                const double *q = c->qkv + (size_t)(b * AT + t) * ALD + h * AD;
                for (int j = 0; j < AT; j++) {
                    const double *k = c->qkv + (size_t)(b * AT + j) * ALD + AH * AD + h * AD;
                    sc[j] = 0;
                    for (int d = 0; d < AD; d++)
                        sc[j] += q[d] * k[d];
                    sc[j] = sc[j] / sqrt(AD) + (j < c->len[b] ? 0.0 : -3.4e38);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < AT; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (int d = 0; d < AD; d++) {
                    double o = 0;
                    for (int j = 0; j < AT; j++)
                        o += sc[j] / sum *
                             c->qkv[(size_t)(b * AT + j) * ALD + 2 * AH * AD + h * AD + d];
                    size_t at = (size_t)(b * AT + t) * AH * AD + h * AD + d;
                    if (out)
                        out[at] = o;
                    L += c->dy[at] * o;
                }
            }
    return L;
}

static double att_loss(void *vc) { return att_ref(vc, NULL); }

static void test_attention_bidir(void **state)
{
    (void)state;
    const int32_t len[AB] = {AT, 3};   /* the second sequence padded by 2 */
    size_t nq = (size_t)AB * AT * ALD, no = (size_t)AB * AT * AH * AD;
    float *qkv = tu_fnew(nq), *dy = tu_fnew(no), *out = tu_fnew(no), *dqkv = tu_fnew(nq);
    float *att = tu_fnew((size_t)AB * AH * AT * AT);
    fill(qkv, nq, 1, 7), fill(dy, no, 1, 8);
    att_ctx c = {tu_to_double(qkv, nq), tu_to_double(dy, no), len};
    double *ref = tu_dnew(no), *fd = tu_dnew(nq);
    att_ref(&c, ref);
    k_attention_bidir_fwd(out, att, qkv, qkv + AH * AD, qkv + 2 * AH * AD, len, AB, AT, AH, AD,
                          ALD);
    assert_true(tu_rel_err_f(out, ref, no) < FWD_TOL);
    /* padded keys get exactly zero weight, for every query including padded ones */
    for (int h = 0; h < AH; h++)
        for (int t = 0; t < AT; t++)
            for (int j = 3; j < AT; j++)
                assert_true(att[((size_t)(1 * AH + h) * AT + t) * AT + j] == 0.0f);
    k_attention_bidir_bwd(dqkv, dqkv + AH * AD, dqkv + 2 * AH * AD, dy, qkv, qkv + AH * AD,
                          qkv + 2 * AH * AD, att, len, AB, AT, AH, AD, ALD);
    tu_fd_grad(fd, c.qkv, nq, att_loss, &c);
    assert_true(tu_rel_err_f(dqkv, fd, nq) < GRAD_TOL);
    free(qkv), free(dy), free(out), free(dqkv), free(att), free(c.qkv), free(c.dy), free(ref),
        free(fd);
}

/* ---- classifier and decoder cross-entropy ---- */

typedef struct {
    int B, C, K;
    double *x, *W, *b;
    const int32_t *lab;
} xe_ctx;

/* sum over labelled rows of -log softmax(x W^T + b)[label]. */
static double xe_loss(void *vc)
{
    xe_ctx *c = vc;
    double L = 0;
    for (int i = 0; i < c->B; i++) {
        if (c->lab[i] < 0)
            continue;
        double z[64], mx = -1e300, s = 0;
        for (int k = 0; k < c->K; k++) {
            z[k] = c->b[k];
            for (int j = 0; j < c->C; j++)
                z[k] += c->x[i * c->C + j] * c->W[k * c->C + j];
            mx = fmax(mx, z[k]);
        }
        for (int k = 0; k < c->K; k++)
            s += exp(z[k] - mx);
        L += mx + log(s) - z[c->lab[i]];
    }
    return L;
}

static void test_cls_xent(void **state)
{
    (void)state;
    enum { B = 4, C = 8, K = 3 };
    const int32_t lab[B] = {2, -1, 0, 1};   /* row 1 unlabelled (a padding row) */
    float *x = tu_fnew(B * C), *W = tu_fnew(K * C), *b = tu_fnew(K), *dx = tu_fnew(B * C);
    float *dW = tu_fnew(K * C), *db = tu_fnew(K), scratch[B * K];
    fill(x, B * C, 1, 9), fill(W, K * C, 1, 10), fill(b, K, 1, 11);
    xe_ctx c = {B, C, K, tu_to_double(x, B * C), tu_to_double(W, K * C), tu_to_double(b, K), lab};
    int32_t pred[B];
    double loss = k_cls_xent(dx, dW, db, scratch, x, W, b, lab, B, C, K, pred);
    assert_true(fabs(loss - xe_loss(&c)) < 1e-5 * fabs(xe_loss(&c)));
    for (int i = 0; i < B; i++) {   /* the argmax of the reference's logits */
        double best = -1e300;
        int32_t want = -1;
        for (int k = 0; k < K; k++) {
            double z = c.b[k];
            for (int j = 0; j < C; j++)
                z += c.x[i * C + j] * c.W[k * C + j];
            if (z > best)
                best = z, want = k;
        }
        assert_int_equal(pred[i], want);
    }
    double *gx = tu_dnew(B * C), *gW = tu_dnew(K * C), *gb = tu_dnew(K);
    tu_fd_grad(gx, c.x, B * C, xe_loss, &c);
    tu_fd_grad(gW, c.W, K * C, xe_loss, &c);
    tu_fd_grad(gb, c.b, K, xe_loss, &c);
    assert_true(tu_rel_err_f(dx, gx, B * C) < GRAD_TOL);
    assert_true(tu_rel_err_f(dW, gW, K * C) < GRAD_TOL);
    assert_true(tu_rel_err_f(db, gb, K) < GRAD_TOL);
    for (int j = 0; j < C; j++)
        assert_true(dx[C + j] == 0.0f);
    free(x), free(W), free(b), free(dx), free(dW), free(db), free(c.x), free(c.W), free(c.b);
    free(gx), free(gW), free(gb);
}

static void test_decoder_xent(void **state)
{
    (void)state;
    enum { M = 7, C = 6, V = 11 };
    const int32_t tgt[M] = {3, 10, -1, 0, 5, 5, 2};
    float *x = tu_fnew(M * C), *E = tu_fnew(V * C), *bias = tu_fnew(V), *dx = tu_fnew(M * C);
    float scratch[3 * V];
    fill(x, M * C, 1, 12), fill(E, V * C, 1, 13), fill(bias, V, 1, 14);
    xe_ctx c = {M, C, V, tu_to_double(x, M * C), tu_to_double(E, V * C), tu_to_double(bias, V),
                tgt};
    double *gx = tu_dnew(M * C);
    /* chunks of 3 rows: the last chunk is short */
    double loss = k_decoder_xent(dx, scratch, x, E, bias, tgt, M, C, V, 3, NULL);
    assert_true(fabs(loss - xe_loss(&c)) < 1e-5 * fabs(xe_loss(&c)));
    tu_fd_grad(gx, c.x, M * C, xe_loss, &c);
    assert_true(tu_rel_err_f(dx, gx, M * C) < GRAD_TOL);
    free(x), free(E), free(bias), free(dx), free(c.x), free(c.W), free(c.b), free(gx);
}

static void test_rows(void **state)
{
    (void)state;
    enum { C = 3 };
    float x[4 * C], g[2 * C], dx[4 * C] = {0};
    for (int i = 0; i < 4 * C; i++)
        x[i] = (float)i;
    const int32_t idx[2] = {0, 2};
    k_rows_gather(g, x, idx, 2, C);
    assert_true(g[0] == 0.0f && g[C] == 6.0f && g[2 * C - 1] == 8.0f);
    k_rows_scatter_add(dx, g, idx, 2, C);
    k_rows_scatter_add(dx, g, idx, 2, C);
    assert_true(dx[2 * C + 1] == 14.0f && dx[C] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gelu_erf),    cmocka_unit_test(test_tanh),
        cmocka_unit_test(test_postln),      cmocka_unit_test(test_attention_bidir),
        cmocka_unit_test(test_cls_xent),    cmocka_unit_test(test_decoder_xent),
        cmocka_unit_test(test_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
