/* test_analysis.c - common/analysis against answers known by construction.
 *
 * Adapters are built from chosen orthonormal factors and singular values:
 * B = P diag(b) (P out x r, orthonormal columns), A = diag(a) Q (Q r x in,
 * orthonormal rows), so dW = s P diag(s a b) Q has singular values
 * s a_i b_i (a, b decreasing) and singular vectors P's columns and Q's rows;
 * A's right-singular vectors are Q's rows.  The orthonormal vectors come
 * from this file's own double-precision Gram-Schmidt, not from LAPACK. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "adapter_read.h"
#include "lowrank.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"

#define TAG 0xa7a1

/* k orthonormal vectors of length n as the rows of q (k x n, row-major):
 * Gaussian draws, modified Gram-Schmidt applied twice (double precision). */
static void gs_basis(double *q, int k, int n, uint64_t seed)
{
    float *g = tu_fnew((size_t)k * n);
    tu_fill_normal(g, (size_t)k * n, 0, 1, TAG, seed);
    for (size_t i = 0; i < (size_t)k * n; i++)
        q[i] = g[i];
    free(g);
    for (int i = 0; i < k; i++)
        for (int pass = 0; pass < 2; pass++) {
            double *v = q + (size_t)i * n;
            for (int j = 0; j < i; j++) {
                double d = tu_dot(v, q + (size_t)j * n, (size_t)n);
                for (int t = 0; t < n; t++)
                    v[t] -= d * q[(size_t)j * n + t];
            }
            double nrm = sqrt(tu_dot(v, v, (size_t)n));
            for (int t = 0; t < n; t++)
                v[t] /= nrm;
        }
}

/* A [r, in] = O diag(a) rows(Q) and B [out, r] = cols(P) diag(b) O^T,
 * Q's rows picked by qi, P's by pi, O an r x r orthogonal matrix (row-major;
 * NULL: I).  dW = B A = P diag(a b) Q whatever O is, and A's right-singular
 * vectors are still Q's rows, but O hides them from a plain QR of A^T. */
static void build_ab(float *A, float *B, int r, int in, int out, const double *Q,
                     const int *qi, const double *a, const double *P, const int *pi,
                     const double *b, const double *O)
{
    for (int k = 0; k < r; k++)
        for (int i = 0; i < in; i++) {
            double s = 0;
            for (int t = 0; t < r; t++)
                s += (O ? O[k * r + t] : k == t) * a[t] * Q[(size_t)qi[t] * in + i];
            A[(size_t)k * in + i] = (float)s;
        }
    for (int o = 0; o < out; o++)
        for (int k = 0; k < r; k++) {
            double s = 0;
            for (int t = 0; t < r; t++)
                s += P[(size_t)pi[t] * out + o] * b[t] * (O ? O[k * r + t] : k == t);
            B[(size_t)o * r + k] = (float)s;
        }
}

static const int IDX[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};

static void test_singular_values(void **state)
{
    (void)state;
    enum { R = 5, IN = 24, OUT = 40 };
    double Q[R * IN], P[R * OUT], a[R] = {1, 1, 1, 1, 1}, b[R] = {5, 3, 2, 1, 0.5};
    gs_basis(Q, R, IN, 1);
    gs_basis(P, R, OUT, 2);
    float A[R * IN], B[OUT * R];
    double O[R * R];
    gs_basis(O, R, R, 11);
    build_ab(A, B, R, IN, OUT, Q, IDX, a, P, IDX, b, O);
    lr_delta d;
    pl_err e;
    assert_int_equal(lr_delta_compute(&d, A, B, R, IN, OUT, 2.0, &e), 0);
    /* s = 2: singular values 10, 6, 4, 2, 1 */
    const double want[R] = {10, 6, 4, 2, 1};
    assert_int_equal(d.k, R);
    for (int i = 0; i < R; i++)
        assert_true(fabs(d.sv[i] - want[i]) < 1e-5 * want[0]);
    /* U's columns are P's rows, V's columns Q's rows, up to sign */
    for (int i = 0; i < R; i++) {
        assert_true(fabs(fabs(tu_dot(d.u + (size_t)i * OUT, P + (size_t)i * OUT, OUT)) - 1) < 1e-5);
        assert_true(fabs(fabs(tu_dot(d.v + (size_t)i * IN, Q + (size_t)i * IN, IN)) - 1) < 1e-5);
    }
    /* U diag(sv) V^T gives back s B A entry by entry */
    for (int o = 0; o < OUT; o += 7)
        for (int i = 0; i < IN; i += 5) {
            double ref = 0, got = 0;
            for (int k = 0; k < R; k++) {
                ref += 2.0 * B[o * R + k] * A[k * IN + i];
                got += d.u[o + k * OUT] * d.sv[k] * d.v[i + k * IN];
            }
            assert_true(fabs(got - ref) < 1e-5);
        }
    /* sum sv^2 = 100 + 36 + 16 + 4 + 1 = 157; stable rank 157 / 100;
     * cumulative 100, 136, 152, 156, 157: 90% (141.3) needs 3, 99% (155.43) 4 */
    lr_stats st;
    lr_stats_of(d.sv, d.k, &st);
    assert_true(fabs(st.frobenius - sqrt(157.0)) < 1e-4);
    assert_true(fabs(st.stable_rank - 1.57) < 1e-5);
    assert_int_equal(st.energy90, 3);
    assert_int_equal(st.energy99, 4);
    /* exactly at the threshold: 9 of 10 is 90% with k = 1 */
    const double sv31[2] = {3, 1};
    assert_int_equal(lr_energy_rank(sv31, 2, 0.9), 1);
    /* A = Q (a = 1): its singular values are all 1 */
    for (int i = 0; i < R; i++)
        assert_true(fabs(d.a_sv[i] - 1) < 1e-6);
    lr_delta_free(&d);
}

static void test_one_by_one(void **state)
{
    (void)state;
    float A[1] = {3}, B[1] = {-2};
    lr_delta d;
    pl_err e;
    assert_int_equal(lr_delta_compute(&d, A, B, 1, 1, 1, 0.5, &e), 0);
    assert_int_equal(d.k, 1);
    assert_true(fabs(d.sv[0] - 3.0) < 1e-12);   /* |0.5 * -2 * 3| */
    assert_true(fabs(fabs(d.u[0]) - 1) < 1e-12 && fabs(fabs(d.v[0]) - 1) < 1e-12);
    assert_true(d.u[0] * d.v[0] < 0);            /* the sign of dW = -3 */
    lr_stats st;
    lr_stats_of(d.sv, d.k, &st);
    assert_true(fabs(st.stable_rank - 1) < 1e-12);
    assert_int_equal(st.energy90, 1);
    assert_int_equal(st.energy99, 1);
    double phi;
    assert_int_equal(lr_phi(d.a_v, 1, d.a_v, 1, 1, &phi, &e), 0);
    assert_true(fabs(phi - 1) < 1e-12);
    lr_delta_free(&d);
}

static void test_rank_deficient(void **state)
{
    (void)state;
    enum { R = 4, IN = 9, OUT = 7 };
    double Q[R * IN], P[R * OUT], a[R] = {1, 1, 1, 1}, b[R] = {3, 0, 4, 0};
    gs_basis(Q, R, IN, 3);
    gs_basis(P, R, OUT, 4);
    float A[R * IN], B[OUT * R];
    build_ab(A, B, R, IN, OUT, Q, IDX, a, P, IDX, b, NULL);   /* B has two zero columns */
    lr_delta d;
    pl_err e;
    assert_int_equal(lr_delta_compute(&d, A, B, R, IN, OUT, 1.0, &e), 0);
    /* singular values 4, 3, 0, 0; energy 16 + 9 = 25: 90% needs both, stable rank 25/16 */
    assert_true(fabs(d.sv[0] - 4) < 1e-5 && fabs(d.sv[1] - 3) < 1e-5);
    assert_true(d.sv[2] < 1e-5 && d.sv[3] < 1e-5);
    lr_stats st;
    lr_stats_of(d.sv, d.k, &st);
    assert_true(fabs(st.stable_rank - 25.0 / 16) < 1e-5);
    assert_int_equal(st.energy90, 2);
    assert_int_equal(st.energy99, 2);
    lr_delta_free(&d);
    /* B = 0 (a fresh adapter): all zero, stable rank and energy ranks 0 */
    memset(B, 0, sizeof B);
    assert_int_equal(lr_delta_compute(&d, A, B, R, IN, OUT, 1.0, &e), 0);
    lr_stats_of(d.sv, d.k, &st);
    assert_true(st.frobenius == 0 && st.stable_rank == 0);
    assert_int_equal(st.energy90, 0);
    lr_delta_free(&d);
    /* r > in: only min(r, in, out) singular values exist */
    float A2[3 * 2] = {1, 0, 0, 1, 1, 1}, B2[5 * 3] = {0};
    B2[0] = 1, B2[4] = 2;
    assert_int_equal(lr_delta_compute(&d, A2, B2, 3, 2, 5, 1.0, &e), 0);
    assert_int_equal(d.k, 2);
    assert_int_equal(d.ka, 2);
    assert_true(fabs(d.sv[0] - 2) < 1e-12 && fabs(d.sv[1] - 1) < 1e-12);
    lr_delta_free(&d);
}

/* phi of two A matrices (right-singular vectors) and two B matrices
 * (through dW's left-singular vectors) of the given constructions. */
static void phi_of(const float *A1, const float *B1, int r1, const float *A2, const float *B2,
                   int r2, int in, int out, double *phi, double *phi_left)
{
    lr_delta d1, d2;
    pl_err e;
    assert_int_equal(lr_delta_compute(&d1, A1, B1, r1, in, out, 1.0, &e), 0);
    assert_int_equal(lr_delta_compute(&d2, A2, B2, r2, in, out, 1.0, &e), 0);
    assert_int_equal(lr_phi(d1.a_v, d1.ka, d2.a_v, d2.ka, in, phi, &e), 0);
    if (phi_left)
        assert_int_equal(lr_phi(d1.u, d1.k, d2.u, d2.k, out, phi_left, &e), 0);
    lr_delta_free(&d1);
    lr_delta_free(&d2);
}

static void test_phi_same_and_orthogonal(void **state)
{
    (void)state;
    enum { R = 4, IN = 20, OUT = 16 };
    double Q[2 * R * IN], P[2 * R * OUT], a[R] = {4, 3, 2, 1}, b[R] = {1, 0.8, 0.6, 0.4};
    gs_basis(Q, 2 * R, IN, 5);
    gs_basis(P, 2 * R, OUT, 6);
    float A1[R * IN], B1[OUT * R], A2[R * IN], B2[OUT * R];
    double phi[R * R], left[R * R];
    build_ab(A1, B1, R, IN, OUT, Q, IDX, a, P, IDX, b, NULL);
    /* the same adapter: U1 = U2, so ||U_i^T U_j||^2 = min(i, j) and phi = 1 everywhere */
    phi_of(A1, B1, R, A1, B1, R, IN, OUT, phi, left);
    for (int i = 0; i < R * R; i++)
        assert_true(fabs(phi[i] - 1) < 1e-6 && fabs(left[i] - 1) < 1e-6);
    /* A2 = M A1 with M invertible: the same row space, so phi(r, r) = 1 */
    float M[R * R] = {2, 1, 0, 0, 0, 1, 3, 0, 1, 0, 1, 0, 0, 0, 2, -1};
    for (int k = 0; k < R; k++)
        for (int i = 0; i < IN; i++) {
            float s = 0;
            for (int t = 0; t < R; t++)
                s += M[k * R + t] * A1[t * IN + i];
            A2[k * IN + i] = s;
        }
    phi_of(A1, B1, R, A2, B1, R, IN, OUT, phi, NULL);
    assert_true(fabs(phi[R * R - 1] - 1) < 1e-5);
    for (int i = 0; i < R * R; i++)
        assert_true(phi[i] >= -1e-12 && phi[i] <= 1 + 1e-9);
    /* rows 4..7 of Q and P: orthogonal to the first adapter's, phi = 0 */
    build_ab(A2, B2, R, IN, OUT, Q, IDX + R, a, P, IDX + R, b, NULL);
    phi_of(A1, B1, R, A2, B2, R, IN, OUT, phi, left);
    for (int i = 0; i < R * R; i++)
        assert_true(fabs(phi[i]) < 1e-6 && fabs(left[i]) < 1e-6);
}

/* Nested: adapter 1 spans q0..q3 (r1 = 4), adapter 2 (r2 = 6) spans q0, q1
 * and then q4..q7 — two shared directions, in both the top two.  The top i
 * of adapter 1 are q0..q(i-1), the top j of adapter 2 are q0..q(min(j,2)-1)
 * plus directions orthogonal to all of adapter 1, so
 *   ||U1_i^T U2_j||_F^2 = #shared = min(i, j, 2),
 *   phi(i, j) = min(i, j, 2) / min(i, j):
 *   1 while i or j <= 2, then 2/3 at min(i, j) = 3 and 2/4 at 4.
 * The same for the left vectors through P. */
static void test_phi_nested(void **state)
{
    (void)state;
    enum { R1 = 4, R2 = 6, IN = 18, OUT = 15 };
    double Q[8 * IN], P[8 * OUT];
    double a[R2] = {6, 5, 4, 3, 2, 1}, b[R2] = {1, 0.9, 0.8, 0.7, 0.6, 0.5};
    gs_basis(Q, 8, IN, 7);
    gs_basis(P, 8, OUT, 8);
    float A1[R1 * IN], B1[OUT * R1], A2[R2 * IN], B2[OUT * R2];
    const int idx2[R2] = {0, 1, 4, 5, 6, 7};
    double O[R2 * R2];
    gs_basis(O, R2, R2, 12);   /* adapter 2's A and B rotated: the same dW */
    build_ab(A1, B1, R1, IN, OUT, Q, IDX, a, P, IDX, b, NULL);
    build_ab(A2, B2, R2, IN, OUT, Q, idx2, a, P, idx2, b, O);
    double phi[R1 * R2], left[R1 * R2];
    phi_of(A1, B1, R1, A2, B2, R2, IN, OUT, phi, left);
    for (int i = 1; i <= R1; i++)
        for (int j = 1; j <= R2; j++) {
            int m = i < j ? i : j;
            double want = (double)(m < 2 ? m : 2) / m;
            assert_true(fabs(phi[(i - 1) * R2 + j - 1] - want) < 1e-5);
            assert_true(fabs(left[(i - 1) * R2 + j - 1] - want) < 1e-5);
        }
}

/* W (out x in, column-major) = sum_t w_t p_t q_t^T over t < 6, with
 * w = 6, 5, 4, 3, 2, 1; p, q orthonormal (8 of each, the last two unused). */
static void build_w(double *W, double *P, double *Q, int out, int in)
{
    const double w[6] = {6, 5, 4, 3, 2, 1};
    gs_basis(P, 8, out, 9);
    gs_basis(Q, 8, in, 10);
    memset(W, 0, sizeof(double) * out * in);
    for (int t = 0; t < 6; t++)
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++)
                W[o + i * out] += w[t] * P[t * out + o] * Q[t * in + i];
}

static void test_amplification(void **state)
{
    (void)state;
    enum { OUT = 12, IN = 10 };
    double W[OUT * IN], P[8 * OUT], Q[8 * IN], u[2 * OUT], v[2 * IN];
    build_w(W, P, Q, OUT, IN);
    pl_err e;
    /* dW along (p0, q0), (p1, q1): ||U^T W V||_F = sqrt(36 + 25) */
    memcpy(u, P, sizeof u);
    memcpy(v, Q, sizeof v);
    assert_true(fabs(lr_project(W, OUT, IN, u, v, 2, &e) - sqrt(61.0)) < 1e-10);
    /* along (p2, q2): 4; along (p2, q3): 0; along (p6, q6), outside W: 0 */
    assert_true(fabs(lr_project(W, OUT, IN, P + 2 * OUT, Q + 2 * IN, 1, &e) - 4) < 1e-10);
    assert_true(fabs(lr_project(W, OUT, IN, P + 2 * OUT, Q + 3 * IN, 1, &e)) < 1e-10);
    assert_true(fabs(lr_project(W, OUT, IN, P + 6 * OUT, Q + 6 * IN, 1, &e)) < 1e-10);
    /* W's own top 2 directions: sqrt(61); top 3: sqrt(77) */
    double tu[3 * OUT], tv[3 * IN];
    assert_int_equal(lr_top_dirs(W, OUT, IN, 3, tu, tv, &e), 0);
    assert_true(fabs(lr_project(W, OUT, IN, tu, tv, 2, &e) - sqrt(61.0)) < 1e-10);
    assert_true(fabs(lr_project(W, OUT, IN, tu, tv, 3, &e) - sqrt(77.0)) < 1e-10);
    /* random directions: orthonormal, fixed by the seed, another seed others */
    double r1[3 * OUT], r2[3 * OUT], r3[3 * OUT];
    assert_int_equal(lr_random_dirs(OUT, 3, 42, r1, &e), 0);
    assert_int_equal(lr_random_dirs(OUT, 3, 42, r2, &e), 0);
    assert_int_equal(lr_random_dirs(OUT, 3, 43, r3, &e), 0);
    assert_memory_equal(r1, r2, sizeof r1);
    assert_true(memcmp(r1, r3, sizeof r1) != 0);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            assert_true(fabs(tu_dot(r1 + i * OUT, r1 + j * OUT, OUT) - (i == j)) < 1e-12);
    assert_int_equal(lr_random_dirs(3, 4, 1, r1, &e), -1);
}

/* ar_base_weight gives W (out x in) from both layouts. */
static void test_base_weight_layouts(void **state)
{
    (void)state;
    float buf[4 * 12];
    for (int k = 0; k < 48; k++)
        buf[k] = (float)k;
    model_block blk;
    memset(&blk, 0, sizeof blk);
    model m;
    memset(&m, 0, sizeof m);
    m.cfg.n_layer = 1, m.blocks = &blk;
    ar_module mod = {"transformer.h.0.attn.c_attn", 4, 12, NULL, NULL};
    double w[48];
    pl_err e;
    /* GPT-2 Conv1D: stored [in, out], W[o][i] = buf[i * out + o] */
    m.cfg.arch = ARCH_GPT2;
    blk.lin[0] = (model_linear){.w = buf, .in = 4, .out = 12, .conv1d = 1};
    assert_int_equal(ar_base_weight(&m, "M", &mod, w, &e), 0);
    assert_true(w[5 + 3 * 12] == buf[3 * 12 + 5]);
    /* Llama Linear: stored [out, in], W[o][i] = buf[o * in + i] */
    m.cfg.arch = ARCH_LLAMA;
    snprintf(mod.path, sizeof mod.path, "model.layers.0.self_attn.q_proj");
    blk.lin[0] = (model_linear){.w = buf, .in = 4, .out = 12, .conv1d = 0};
    assert_int_equal(ar_base_weight(&m, "M", &mod, w, &e), 0);
    assert_true(w[5 + 3 * 12] == buf[5 * 4 + 3]);
    /* another shape, another module: refused, naming them */
    mod.out = 8;
    assert_int_equal(ar_base_weight(&m, "M", &mod, w, &e), -1);
    assert_non_null(strstr(e.msg, "q_proj is 12 x 4"));
    snprintf(mod.path, sizeof mod.path, "model.layers.3.self_attn.q_proj");
    assert_int_equal(ar_base_weight(&m, "M", &mod, w, &e), -1);
    assert_non_null(strstr(e.msg, "no module model.layers.3"));
}

/* Writes an adapter directory of n modules of r x in / out x r. */
static void write_adapter(const char *dir, int r, double alpha, int n, const char **paths,
                          int in, int out, const float *A, const float *B)
{
    char p[4200], names[8][160];
    st_entry ent[16];
    for (int i = 0; i < n; i++) {
        snprintf(names[2 * i], 160, "base_model.model.%s.lora_A.weight", paths[i]);
        snprintf(names[2 * i + 1], 160, "base_model.model.%s.lora_B.weight", paths[i]);
        ent[2 * i] = (st_entry){names[2 * i], ST_F32, 2, {r, in}, A};
        ent[2 * i + 1] = (st_entry){names[2 * i + 1], ST_F32, 2, {out, r}, B};
    }
    pl_err e;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    assert_int_equal(st_write(p, ent, 2 * n, NULL, NULL, 0, &e), 0);
    char cfg[256];
    int len = snprintf(cfg, sizeof cfg,
                       "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": %g, "
                       "\"target_modules\": [\"c_attn\"]}", r, alpha);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    tu_write_file(p, cfg, (size_t)len);
}

static void test_read_adapters(void **state)
{
    (void)state;
    enum { R = 2, IN = 6, OUT = 5 };
    float A[R * IN] = {1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}, B[OUT * R] = {0};
    B[0] = 3, B[3] = 1;   /* B e0 = 3 e0, B e1 = 1 e1: dW = s (3 e0 e0^T + 2 e1 e1^T) */
    const char *paths[3] = {"transformer.h.10.attn.c_attn", "transformer.h.2.attn.c_attn",
                            "transformer.h.0.attn.c_attn"};
    char d1[4096], d2[4096];
    snprintf(d1, sizeof d1, "%s", tu_tmpdir("ad1"));
    write_adapter(d1, R, 8.0, 3, paths, IN, OUT, A, B);
    ar_adapter x, y;
    pl_err e;
    assert_int_equal(ar_load(&x, d1, &e), 0);
    assert_int_equal(x.n, 3);
    assert_true(x.scale == 4.0);   /* alpha / r */
    assert_string_equal(x.m[0].path, "transformer.h.0.attn.c_attn");   /* natural order */
    assert_string_equal(x.m[2].path, "transformer.h.10.attn.c_attn");
    lr_delta d;
    assert_int_equal(lr_delta_compute(&d, x.m[1].a, x.m[1].b, R, IN, OUT, x.scale, &e), 0);
    assert_true(fabs(d.sv[0] - 12) < 1e-12 && fabs(d.sv[1] - 8) < 1e-12);   /* 4 * 3, 4 * 2 */
    lr_delta_free(&d);
    /* two modules only: another module set, refused naming the missing one */
    snprintf(d2, sizeof d2, "%s", tu_tmpdir("ad2"));
    write_adapter(d2, R, 8.0, 2, paths, IN, OUT, A, B);
    assert_int_equal(ar_load(&y, d2, &e), 0);
    assert_int_equal(ar_same_modules(&x, d1, &y, d2, &e), -1);
    assert_non_null(strstr(e.msg, "adapt different modules"));
    assert_non_null(strstr(e.msg, "transformer.h.0.attn.c_attn only in"));
    assert_int_equal(ar_same_modules(&x, d1, &x, d1, &e), 0);
    ar_free(&x);
    ar_free(&y);
    /* bad files: each one line naming the file */
    char p[4200];
    assert_int_equal(ar_load(&x, "/nonexistent/adapter", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/adapter/adapter_config.json"));
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", d2);
    tu_write_file(p, "\x10\0\0\0\0\0\0\0{garbage}", 17);
    assert_int_equal(ar_load(&x, d2, &e), -1);
    assert_non_null(strstr(e.msg, "adapter_model.safetensors"));
    /* a tensor that is not a LoRA weight, and an A without its B */
    st_entry ent[3] = {{"base_model.model.x.lora_A.weight", ST_F32, 2, {R, IN}, A},
                       {"base_model.model.x.lora_B.weight", ST_F32, 2, {OUT, R}, B},
                       {"lm_head.weight", ST_F32, 2, {OUT, R}, B}};
    assert_int_equal(st_write(p, ent, 3, NULL, NULL, 0, &e), 0);
    assert_int_equal(ar_load(&x, d2, &e), -1);
    assert_non_null(strstr(e.msg, "lm_head.weight is not a LoRA weight"));
    assert_int_equal(st_write(p, ent, 1, NULL, NULL, 0, &e), 0);
    assert_int_equal(ar_load(&x, d2, &e), -1);
    assert_non_null(strstr(e.msg, "base_model.model.x.lora_B.weight missing"));
    /* A of another r than the config's (its own buffer: R + 1 rows) */
    float A3[(R + 1) * IN] = {0};
    ent[0].shape[0] = R + 1;
    ent[0].data = A3;
    assert_int_equal(st_write(p, ent, 1, NULL, NULL, 0, &e), 0);
    assert_int_equal(ar_load(&x, d2, &e), -1);
    assert_non_null(strstr(e.msg, "is not [r, in] for r = 2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_singular_values),
        cmocka_unit_test(test_one_by_one),
        cmocka_unit_test(test_rank_deficient),
        cmocka_unit_test(test_phi_same_and_orthogonal),
        cmocka_unit_test(test_phi_nested),
        cmocka_unit_test(test_amplification),
        cmocka_unit_test(test_base_weight_layouts),
        cmocka_unit_test(test_read_adapters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
