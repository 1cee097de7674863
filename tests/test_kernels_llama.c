/* test_kernels_llama.c - the Llama kernels (RMSNorm, rotary embedding, SwiGLU)
 * against plain double-precision references, as tests/test_kernels.c does for
 * the GPT-2 ones (grouped-query attention is covered there).
 *
 * Each forward is re-implemented below in double with independent loops, the
 * rotary one literally as transformers writes it (emb = cat(freqs, freqs);
 * x * cos + rotate_half(x) * sin).  A float forward must match its reference
 * to FWD_TOL; its backward, fed a random upstream gradient dy, must match
 * central finite differences of L = sum(dy * y) on the double reference, to
 * GRAD_TOL; errors are max |got - ref| / max |ref|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "kernels.h"
#include "kernels_lora.h"
#include "testutil.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-5

/* ---- helpers ---------------------------------------------------------------- */

/* a[i] = mean + sd * N(0,1) from a stream seeded by seed (this file's tag). */
static void fill_normal(float *a, size_t n, float mean, float sd, uint64_t seed)
{
    tu_fill_normal(a, n, mean, sd, 0x6c6c616dULL, seed);
}

/* ---- double references ----------------------------------------------------- */

/* LlamaRMSNorm: x / sqrt(mean(x^2) + eps) * w. */
static void ref_rmsnorm(double *y, const double *x, const double *w, int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int c = 0; c < C; c++)
            ms += x[n * C + c] * x[n * C + c];
        ms /= C;
        for (int c = 0; c < C; c++)
            y[n * C + c] = x[n * C + c] / sqrt(ms + eps) * w[c];
    }
}

/* transformers' apply_rotary_pos_emb on rows [N, ld] with nh heads of size D:
 * inv_freq[i] = 1/theta^(2i/D) (i < D/2), emb = cat(freqs, freqs),
 * rotate_half(v) = cat(-v[D/2:], v[:D/2]), out = v cos(emb) + rotate_half(v) sin(emb).
 * Columns outside the heads are copied. */
static void ref_rope(double *y, const double *x, int N, int T, int nh, int D, int ld, double theta)
{
    double emb[64], rh[64];
    memcpy(y, x, (size_t)N * ld * sizeof *y);
    for (int n = 0; n < N; n++) {
        int t = n % T;
        for (int j = 0; j < D; j++)
            emb[j] = t * (1.0 / pow(theta, (double)(2 * (j % (D / 2))) / D));
        for (int h = 0; h < nh; h++) {
            const double *v = x + (size_t)n * ld + h * D;
            for (int j = 0; j < D; j++)
                rh[j] = j < D / 2 ? -v[j + D / 2] : v[j - D / 2];
            for (int j = 0; j < D; j++)
                y[(size_t)n * ld + h * D + j] = v[j] * cos(emb[j]) + rh[j] * sin(emb[j]);
        }
    }
}

static double ref_silu(double g) { return g / (1.0 + exp(-g)); }

/* ---- RMSNorm ---------------------------------------------------------------------- */

typedef struct {
    int N, C;
    double eps, *x, *w, *dy, *y;
} rms_ctx;

static double rms_loss(void *vc)
{
    rms_ctx *c = vc;
    ref_rmsnorm(c->y, c->x, c->w, c->N, c->C, c->eps);
    return tu_dot(c->dy, c->y, (size_t)c->N * c->C);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    enum { N = 6, C = 8 };
    float *x = tu_fnew(N * C), *w = tu_fnew(C), *y = tu_fnew(N * C), *dy = tu_fnew(N * C);
    float *dx = tu_fnew(N * C), *dx0 = tu_fnew(N * C), rstd[N];
    fill_normal(x, N * C, 0.7f, 1.5f, 1); /* a nonzero mean: not a LayerNorm */
    fill_normal(w, C, 1, 0.3f, 2);
    fill_normal(dy, N * C, 0, 1, 3);
    fill_normal(dx0, N * C, 0, 1, 4);
    rms_ctx c = {N, C, 1e-2, tu_to_double(x, N * C), tu_to_double(w, C), tu_to_double(dy, N * C),
                 tu_dnew(N * C)};
    k_rmsnorm_fwd(y, rstd, x, w, N, C, 1e-2f);
    ref_rmsnorm(c.y, c.x, c.w, N, C, c.eps);
    assert_true(tu_rel_err_f(y, c.y, N * C) < FWD_TOL);
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int k = 0; k < C; k++)
            ms += c.x[n * C + k] * c.x[n * C + k] / C;
        assert_true(fabs(rstd[n] * sqrt(ms + c.eps) - 1) < 1e-6);
    }
    /* eps matters: a row of zeros gives y = 0 and rstd = 1/sqrt(eps) */
    float z[C] = {0}, yz[C], rz;
    k_rmsnorm_fwd(yz, &rz, z, w, 1, C, 0.25f);
    assert_true(rz == 2.0f && yz[0] == 0.0f);

    memcpy(dx, dx0, sizeof(float) * N * C);
    k_rmsnorm_bwd(dx, dy, x, rstd, w, N, C); /* accumulates onto dx0 */
    double *fd = tu_dnew(N * C), *got = tu_dnew(N * C);
    for (int i = 0; i < N * C; i++)
        got[i] = (double)dx[i] - dx0[i];
    tu_fd_grad(fd, c.x, N * C, rms_loss, &c);
    assert_true(tu_rel_err(got, fd, N * C) < GRAD_TOL);
    free(fd), free(got), free(c.x), free(c.w), free(c.dy), free(c.y);
    free(x), free(w), free(y), free(dy), free(dx), free(dx0);
}

/* ---- rotary embedding --------------------------------------------------------------- */

/* The table against cos/sin of t / theta^(2i/D), and its float32 angle rounding:
 * exact at t = 1 (angle = inv_freq itself). */
static void test_rope_table(void **state)
{
    (void)state;
    enum { T = 7, D = 8 };
    float cs[T * D / 2], sn[T * D / 2];
    k_rope_table(cs, sn, T, D, 10000.0);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            double a = t / pow(10000.0, 2.0 * i / D);
            assert_true(fabs(cs[t * D / 2 + i] - cos(a)) < 1e-6);
            assert_true(fabs(sn[t * D / 2 + i] - sin(a)) < 1e-6);
        }
    assert_true(cs[0] == 1.0f && sn[0] == 0.0f && sn[D / 2 + 0] == (float)sin(1.0));
}

typedef struct {
    int N, T, nh, D, ld;
    double theta, *x, *dy, *y;
} rope_ctx;

static double rope_loss(void *vc)
{
    rope_ctx *c = vc;
    ref_rope(c->y, c->x, c->N, c->T, c->nh, c->D, c->ld, c->theta);
    return tu_dot(c->dy, c->y, (size_t)c->N * c->ld);
}

/* Forward and backward on rows with padding columns (ld > nh D), which stay
 * untouched, against the transformers formula; theta small so that every
 * frequency turns by a large angle over the T positions. */
static void check_rope(int B, int T, int nh, int D, int pad, double theta, uint64_t seed)
{
    int N = B * T, ld = nh * D + pad;
    size_t n = (size_t)N * ld;
    float *x = tu_fnew(n), *dy = tu_fnew(n), *cs = tu_fnew((size_t)T * D / 2), *sn = tu_fnew((size_t)T * D / 2);
    fill_normal(x, n, 0, 1, seed);
    fill_normal(dy, n, 0, 1, seed + 1);
    rope_ctx c = {N, T, nh, D, ld, theta, tu_to_double(x, n), tu_to_double(dy, n), tu_dnew(n)};
    k_rope_table(cs, sn, T, D, theta);
    float *y = tu_fnew(n), *dx = tu_fnew(n);
    memcpy(y, x, n * sizeof *y);
    k_rope_fwd(y, cs, sn, N, T, nh, D, ld);
    ref_rope(c.y, c.x, N, T, nh, D, ld, theta);
    assert_true(tu_rel_err_f(y, c.y, n) < FWD_TOL);
    for (int r = 0; r < N; r++)
        for (int k = nh * D; k < ld; k++)
            assert_true(y[(size_t)r * ld + k] == x[(size_t)r * ld + k]);
    memcpy(dx, dy, n * sizeof *dx);
    k_rope_bwd(dx, cs, sn, N, T, nh, D, ld);
    double *fd = tu_dnew(n);
    tu_fd_grad(fd, c.x, n, rope_loss, &c);
    assert_true(tu_rel_err_f(dx, fd, n) < GRAD_TOL);
    /* with the rounding fused: the same fp32 rows, and each rounded as
     * k_bf16_row rounds it into compact rows of nh*D */
    float *dx2 = tu_fnew(n);
    uint16_t *b = malloc((size_t)N * nh * D * sizeof *b), *want = malloc(sizeof *b * nh * D);
    memcpy(dx2, dy, n * sizeof *dx2);
    k_rope_bwd_bf16(dx2, b, cs, sn, N, T, nh, D, ld);
    assert_memory_equal(dx2, dx, n * sizeof *dx);
    for (int r = 0; r < N; r++) {
        k_bf16_row(want, dx + (size_t)r * ld, (size_t)nh * D);
        assert_memory_equal(b + (size_t)r * nh * D, want, sizeof *b * nh * D);
    }
    free(dx2), free(b), free(want);
    free(fd), free(c.x), free(c.dy), free(c.y), free(x), free(dy), free(cs), free(sn), free(y), free(dx);
}

static void test_rope(void **state)
{
    (void)state;
    check_rope(2, 5, 3, 4, 0, 10.0, 10);
    check_rope(1, 6, 2, 8, 3, 100.0, 12);
    check_rope(2, 4, 1, 2, 1, 10000.0, 14);
}

/* rotate_half pairs channel i with i + D/2: at position 1 with D = 4, a vector
 * (1, 0, 0, 0) turns into (cos a, 0, sin a, 0), a = inv_freq[0] = 1. */
static void test_rope_pairing(void **state)
{
    (void)state;
    enum { T = 2, D = 4 };
    float cs[T * D / 2], sn[T * D / 2], x[T * D] = {1, 0, 0, 0, 1, 0, 0, 0};
    k_rope_table(cs, sn, T, D, 10000.0);
    k_rope_fwd(x, cs, sn, T, T, 1, D, D);
    float want[T * D] = {1, 0, 0, 0, (float)cos(1.0), 0, (float)sin(1.0), 0};
    for (int i = 0; i < T * D; i++)
        assert_true(fabsf(x[i] - want[i]) < 1e-7f);
}

/* ---- SwiGLU ---------------------------------------------------------------------------- */

typedef struct {
    size_t n;
    double *gate, *up, *dy;
} swiglu_ctx;

static double swiglu_loss(void *vc)
{
    swiglu_ctx *c = vc;
    double s = 0;
    for (size_t i = 0; i < c->n; i++)
        s += c->dy[i] * ref_silu(c->gate[i]) * c->up[i];
    return s;
}

static void test_swiglu(void **state)
{
    (void)state;
    enum { n = 64 };
    float *gate = tu_fnew(n), *up = tu_fnew(n), *y = tu_fnew(n), *dy = tu_fnew(n), *dg = tu_fnew(n), *du = tu_fnew(n);
    for (int i = 0; i < n; i++) /* a ramp over [-8, 8] covers both tails of silu */
        gate[i] = -8.0f + 16.0f * (float)i / (n - 1);
    fill_normal(up, n, 0, 1.5f, 20);
    fill_normal(dy, n, 0, 1, 21);
    swiglu_ctx c = {n, tu_to_double(gate, n), tu_to_double(up, n), tu_to_double(dy, n)};
    double *yr = tu_dnew(n), *fdg = tu_dnew(n), *fdu = tu_dnew(n);
    for (int i = 0; i < n; i++)
        yr[i] = ref_silu(c.gate[i]) * c.up[i];
    k_swiglu_fwd(y, gate, up, n);
    assert_true(tu_rel_err_f(y, yr, n) < FWD_TOL);

    tu_fd_grad(fdg, c.gate, n, swiglu_loss, &c);
    tu_fd_grad(fdu, c.up, n, swiglu_loss, &c);
    k_swiglu_bwd(dg, du, dy, gate, up, n);
    assert_true(tu_rel_err_f(dg, fdg, n) < GRAD_TOL);
    assert_true(tu_rel_err_f(du, fdu, n) < GRAD_TOL);
    float *du2 = tu_fnew(n);
    k_swiglu_bwd(dy, du2, dy, gate, up, n); /* in place: dgate aliases dy */
    assert_memory_equal(dy, dg, n * sizeof(float));
    assert_memory_equal(du2, du, n * sizeof(float));
    free(du2), free(yr), free(fdg), free(fdu), free(c.gate), free(c.up), free(c.dy);
    free(gate), free(up), free(y), free(dy), free(dg), free(du);
}

/* ---- the MLP's LoRA folded into SwiGLU ------------------------------------------------ */

/* The arrays of one Llama MLP (N rows, C wide, width n, rank r) with gate,
 * up and down adapted, for check_swiglu_lora. */
typedef struct {
    int N, C, n, r;
    float *h2, *f, *g, *act, *out, *mid, *dres, *dwide, *dnarrow, *u[3], *du, *scr;
    float *A[3], *B[3], *dA[3], *dB[3];
    uint16_t *actb, *dgb, *dub;
} mlp_run;

static float *normal_new(size_t n, float sd, uint64_t seed)
{
    float *a = tu_fnew(n);
    fill_normal(a, n, 0, sd, seed);
    return a;
}

/* The same inputs (seeds) for both runs; outputs filled with NaN where the
 * kernels must write them without reading. */
static void mlp_run_new(mlp_run *m, int N, int C, int n, int r, size_t scratch)
{
    size_t NC = (size_t)N * C, Nn = (size_t)N * n;
    *m = (mlp_run){.N = N, .C = C, .n = n, .r = r};
    m->h2 = normal_new(NC, 1, 40), m->f = normal_new(Nn, 1.5f, 41), m->g = normal_new(Nn, 1, 42);
    m->act = normal_new(Nn, 1, 43), m->mid = normal_new(NC, 1, 44), m->out = normal_new(NC, 1, 45);
    m->dres = normal_new(NC, 1, 46), m->dwide = normal_new(Nn, 1, 47);
    m->dnarrow = normal_new(NC, 1, 48), m->du = normal_new((size_t)N * r, 1, 49);
    m->scr = tu_fnew(scratch);
    for (size_t i = 0; i < scratch; i++)
        m->scr[i] = NAN;
    for (int i = 0; i < 3; i++) {
        size_t ab = (size_t)r * (i < 2 ? C : n), bb = (size_t)r * (i < 2 ? n : C);
        m->u[i] = normal_new((size_t)N * r, 1, 50 + i);
        m->A[i] = normal_new(ab, 0.3f, 53 + i), m->B[i] = normal_new(bb, 0.3f, 56 + i);
        m->dA[i] = normal_new(ab, 1, 59 + i), m->dB[i] = normal_new(bb, 1, 62 + i);
    }
    m->actb = calloc(Nn, 2), m->dgb = calloc(Nn, 2), m->dub = calloc(Nn, 2);
}

static void mlp_run_free(mlp_run *m)
{
    float *all[] = {m->h2, m->f, m->g, m->act, m->out, m->mid, m->dres, m->dwide, m->dnarrow,
                    m->du, m->scr, m->u[0], m->u[1], m->u[2], m->A[0], m->A[1], m->A[2], m->B[0],
                    m->B[1], m->B[2], m->dA[0], m->dA[1], m->dA[2], m->dB[0], m->dB[1], m->dB[2]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        free(all[i]);
    free(m->actb), free(m->dgb), free(m->dub);
}

/* The model's MLP step as it runs unfolded: gate/up LoRA added to their
 * products' outputs, SwiGLU, down's LoRA (from act) written before its
 * product; backward: down's LoRA with dx added into d(act), SwiGLU's
 * backward (fp32 and bf16), gate/up LoRA with dx added (beta 1). */
static void mlp_unfolded(mlp_run *m, float s)
{
    int N = m->N, C = m->C, n = m->n, r = m->r;
    size_t Nn = (size_t)N * n;
    float *y[2] = {m->f, m->g}, *dup = tu_fnew(Nn);
    const float *res[2] = {m->f, m->g}, *A[2] = {m->A[0], m->A[1]}, *B[2] = {m->B[0], m->B[1]};
    const int out[2] = {n, n};
    k_lora_fwd_group(y, res, NULL, m->u, m->h2, A, B, out, 2, N, C, r, s, m->scr, NULL);
    k_swiglu_fwd_bf16(m->act, m->actb, m->f, m->g, Nn);
    k_lora_fwd(m->out, m->mid, NULL, m->u[2], m->act, m->A[2], m->B[2], N, n, C, r, s, m->scr,
               NULL);
    k_lora_bwd(m->dwide, 1.0f, m->dA[2], m->dB[2], m->du, m->dres, m->act, m->u[2], m->A[2],
               m->B[2], N, n, C, r, s, m->scr, NULL);
    k_swiglu_bwd_bf16(m->dwide, dup, m->dgb, m->dub, m->dwide, m->f, m->g, Nn);
    const float *dy[2] = {m->dwide, dup}, *u[2] = {m->u[0], m->u[1]};
    k_lora_bwd_group(m->dnarrow, 1.0f, m->dA, m->dB, dy, m->h2, u, A, B, out, 2, N, C, r, s,
                     m->scr, NULL);
    free(dup);
}

/* The same through k_swiglu_lora, with `threads` threads, the LoRA's row
 * products in fp32 or (bf16) on bf16 inputs. */
static void mlp_folded(mlp_run *m, float s, int threads, int bf16)
{
    int N = m->N, C = m->C, n = m->n, r = m->r;
    size_t Nn = (size_t)N * n;
    k_swiglu_lora z = {{m->u[0], m->u[1]}, {m->A[0], m->A[1]}, {m->B[0], m->B[1]}, m->A[2],
                       m->B[2], m->u[2], r, C, threads, s, bf16};
    fill_normal(m->u[0], (size_t)N * r, 0, 1, 99), fill_normal(m->u[1], (size_t)N * r, 0, 1, 98);
    k_swiglu_lora_u(m->u, m->h2, &z, N, n, m->scr);
    for (size_t i = 0; i < Nn; i++)   /* no act: the kernels must not need one */
        m->act[i] = NAN;
    k_swiglu_lora_fwd(m->f, m->g, m->actb, m->u[2], m->out, m->mid, &z, N, n, m->scr);
    k_swiglu_lora_bwd(m->dgb, m->dub, m->dwide, m->f, m->g, m->dres, &z, N, n, m->scr);
    k_swiglu_lora_bwd_end(m->dnarrow, m->dA, m->dB, m->h2, &z, N, C, n, m->scr);
}

/* Down's dA: du^T act over all rows, in double (act from gate and up as
 * the forward left them, du down's, from the unfolded run), to show the
 * kernel's floats, summed in parts, within rounding of it. */
static void dA_down_ref(double *ref, const mlp_run *m, const float *du, const float *dA0)
{
    int N = m->N, n = m->n, r = m->r;
    for (int k = 0; k < r; k++)
        for (int j = 0; j < n; j++) {
            double t = dA0[(size_t)k * n + j];
            for (int i = 0; i < N; i++) {
                float g = m->f[(size_t)i * n + j], u = m->g[(size_t)i * n + j];
                double act = g / (1.0 + exp(-(double)g)) * u;
                t += (double)du[(size_t)i * r + k] * act;
            }
            ref[(size_t)k * n + j] = t;
        }
}

/* Folded against unfolded: every output (gate, up, act's bf16, down's u
 * and output, d(gate), d(up) in bf16, dx, five of the six dA, dB) equal
 * bit for bit, on 1, 2 and 3 threads; down's dA, summed in another order,
 * within 1e-5 (relative to its largest term) of a double-precision sum,
 * as the unfolded one is, and the same bits on every thread count. */
/* Scratch for both runs, the folded one with tiles for nt threads. */
static size_t mlp_scratch(int N, int C, int n, int r, int nt)
{
    size_t scratch = k_swiglu_lora_scratch(N, n, C, r, nt);
    size_t g = k_lora_group_scratch(2, N, 2 * n, r), k1 = k_lora_scratch(N, n > C ? n : C, r);
    scratch = scratch > g ? scratch : g;
    return scratch > k1 ? scratch : k1;
}

static void check_swiglu_lora(int N, int C, int n, int r)
{
    const float s = 1.5f;
    int nt = 3;
    size_t scratch = mlp_scratch(N, C, n, r, nt);
    mlp_run ref, got;
    mlp_run_new(&ref, N, C, n, r, scratch);
    size_t nA = (size_t)r * n;
    float *dA0 = tu_fnew(nA), *dA1 = tu_fnew(nA);
    double *want = calloc(nA, sizeof *want);
    memcpy(dA0, ref.dA[2], nA * sizeof(float));
    mlp_unfolded(&ref, s);
    int saved = omp_get_max_threads();
    for (int t = 1; t <= nt; t++) {
        omp_set_num_threads(t);
        mlp_run_new(&got, N, C, n, r, scratch);
        mlp_folded(&got, s, t == 2 ? 1 : nt, 0);   /* tiles for fewer threads than run: capped */
        size_t Nn = (size_t)N * n, NC = (size_t)N * C;
        assert_memory_equal(got.f, ref.f, Nn * sizeof(float));
        assert_memory_equal(got.g, ref.g, Nn * sizeof(float));
        assert_memory_equal(got.actb, ref.actb, Nn * 2);
        assert_memory_equal(got.out, ref.out, NC * sizeof(float));
        assert_memory_equal(got.dgb, ref.dgb, Nn * 2);
        assert_memory_equal(got.dub, ref.dub, Nn * 2);
        assert_memory_equal(got.dnarrow, ref.dnarrow, NC * sizeof(float));
        for (int i = 0; i < 3; i++) {
            size_t ab = (size_t)r * (i < 2 ? C : n), bb = (size_t)r * (i < 2 ? n : C);
            assert_memory_equal(got.u[i], ref.u[i], (size_t)N * r * sizeof(float));
            if (i < 2)
                assert_memory_equal(got.dA[i], ref.dA[i], ab * sizeof(float));
            assert_memory_equal(got.dB[i], ref.dB[i], bb * sizeof(float));
        }
        if (t == 1) {
            dA_down_ref(want, &got, ref.du, dA0);
            memcpy(dA1, got.dA[2], nA * sizeof(float));
        }
        assert_memory_equal(got.dA[2], dA1, nA * sizeof(float));   /* any thread count */
        double big = 0;
        for (size_t i = 0; i < nA; i++)
            big = fmax(big, fabs(want[i]));
        for (size_t i = 0; i < nA; i++) {
            assert_true(fabs(got.dA[2][i] - want[i]) <= 1e-5 * big);
            assert_true(fabs(ref.dA[2][i] - want[i]) <= 1e-5 * big);
        }
        mlp_run_free(&got);
    }
    omp_set_num_threads(saved);
    free(dA0), free(dA1), free(want);
    mlp_run_free(&ref);
}

/* bf16 folded against fp32 unfolded: every output within bf16's rounding
 * (2^-6 of its largest value: a LoRA output passes four roundings, of x,
 * A, s u and B, each up to 2^-9; seen here up to 0.7%; a product on the
 * wrong weights or rows is off by its whole size), and the same bits on
 * 1, 2 and 3 threads. */
static void check_swiglu_lora_bf16(int N, int C, int n, int r)
{
    const float s = 1.5f;
    int nt = 3;
    size_t scratch = mlp_scratch(N, C, n, r, nt);
    size_t Nn = (size_t)N * n, NC = (size_t)N * C;
    mlp_run ref, got, first;
    mlp_run_new(&ref, N, C, n, r, scratch);
    mlp_unfolded(&ref, s);
    float *fb = tu_fnew(Nn), *rb = tu_fnew(Nn);
    int saved = omp_get_max_threads();
    for (int t = 1; t <= nt; t++) {
        omp_set_num_threads(t);
        mlp_run_new(&got, N, C, n, r, scratch);
        mlp_folded(&got, s, nt, 1);
        const float *gv[] = {got.f, got.g, got.out, got.dnarrow, got.u[0], got.u[1], got.u[2]};
        const float *rv[] = {ref.f, ref.g, ref.out, ref.dnarrow, ref.u[0], ref.u[1], ref.u[2]};
        size_t len[] = {Nn, Nn, NC, NC, (size_t)N * r, (size_t)N * r, (size_t)N * r};
        for (int i = 0; i < 7; i++) {
            double e = tu_rel_err_rows(gv[i], rv[i], 1, (int)len[i], (int)len[i]);
            if (getenv("SHOW"))
                printf("output %d: relative error %g\n", i, e);
            assert_true(e < 1.0 / 64);
        }
        const uint16_t *gb[] = {got.actb, got.dgb, got.dub}, *rbs[] = {ref.actb, ref.dgb, ref.dub};
        for (int i = 0; i < 3; i++) {
            for (size_t j = 0; j < Nn; j++)
                fb[j] = bf16_to_f32(gb[i][j]), rb[j] = bf16_to_f32(rbs[i][j]);
            assert_true(tu_rel_err_rows(fb, rb, 1, (int)Nn, (int)Nn) < 1.0 / 64);
        }
        for (int i = 0; i < 3; i++) {
            size_t ab = (size_t)r * (i < 2 ? C : n), bb = (size_t)r * (i < 2 ? n : C);
            assert_true(tu_rel_err_rows(got.dA[i], ref.dA[i], 1, (int)ab, (int)ab) < 1.0 / 64);
            assert_true(tu_rel_err_rows(got.dB[i], ref.dB[i], 1, (int)bb, (int)bb) < 1.0 / 64);
        }
        if (t == 1) {
            first = got;
            continue;
        }
        assert_memory_equal(got.f, first.f, Nn * sizeof(float));
        assert_memory_equal(got.out, first.out, NC * sizeof(float));
        assert_memory_equal(got.dgb, first.dgb, Nn * 2);
        assert_memory_equal(got.dnarrow, first.dnarrow, NC * sizeof(float));
        for (int i = 0; i < 3; i++) {
            assert_memory_equal(got.dA[i], first.dA[i], (size_t)r * (i < 2 ? C : n) * 4);
            assert_memory_equal(got.dB[i], first.dB[i], (size_t)r * (i < 2 ? n : C) * 4);
        }
        mlp_run_free(&got);
    }
    omp_set_num_threads(saved);
    mlp_run_free(&first);
    mlp_run_free(&ref);
    free(fb), free(rb);
}

static void test_swiglu_lora_bf16(void **state)
{
    (void)state;
    check_swiglu_lora_bf16(100, 40, 48, 8);
    check_swiglu_lora_bf16(141, 50, 290, 13);   /* ragged blocks, pairs, chunks; odd r */
}

static void test_swiglu_lora(void **state)
{
    (void)state;
    check_swiglu_lora(100, 40, 48, 8);
    check_swiglu_lora(141, 50, 290, 13);   /* ragged row blocks, parts, chunks; r = 8 + 4 + 1 */
    check_swiglu_lora(33, 19, 37, 4);
}

/* Without down's du, the backward's dy is d(act) as given: dgate, dup in
 * bf16 equal k_swiglu_bwd_bf16's. */
static void test_swiglu_lora_no_down(void **state)
{
    (void)state;
    enum { N = 70, C = 24, n = 40, r = 4 };
    size_t Nn = (size_t)N * n;
    mlp_run m;
    mlp_run_new(&m, N, C, n, r, k_swiglu_lora_scratch(N, n, C, r, 2));
    k_swiglu_lora z = {{m.u[0], m.u[1]}, {m.A[0], m.A[1]}, {m.B[0], m.B[1]}, m.A[2], m.B[2],
                       m.u[2], r, C, 2, 0.5f, 0};
    uint16_t *dgb = calloc(Nn, 2), *dub = calloc(Nn, 2);
    float *dg = tu_fnew(Nn), *du = tu_fnew(Nn);
    k_swiglu_bwd_bf16(dg, du, dgb, dub, m.dwide, m.f, m.g, Nn);
    k_swiglu_lora_bwd(m.dgb, m.dub, m.dwide, m.f, m.g, NULL, &z, N, n, m.scr);
    assert_memory_equal(m.dgb, dgb, Nn * 2);
    assert_memory_equal(m.dub, dub, Nn * 2);
    free(dgb), free(dub), free(dg), free(du);
    mlp_run_free(&m);
}

/* ---- thread count ------------------------------------------------------------------------ */

/* The three kernels give bit-identical results with 1 and 3 threads. */
static void test_threads_llama(void **state)
{
    (void)state;
    enum { N = 37, C = 24, T = 5, NH = 3, D = 8 };
    float *x = tu_fnew(N * C), *w = tu_fnew(C), *dy = tu_fnew(N * C), cs[T * D / 2], sn[T * D / 2];
    float *out[2], *grad[2], rstd[N];
    fill_normal(x, N * C, 0, 1, 30);
    fill_normal(w, C, 1, 0.2f, 31);
    fill_normal(dy, N * C, 0, 1, 32);
    k_rope_table(cs, sn, T, D, 10.0);
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? 3 : 1);
        out[k] = tu_fnew(3 * N * C);
        grad[k] = tu_fnew(3 * N * C);
        k_rmsnorm_fwd(out[k], rstd, x, w, N, C, 1e-6f);
        k_rmsnorm_bwd(grad[k], dy, x, rstd, w, N, C);
        memcpy(out[k] + N * C, x, sizeof(float) * N * C);
        k_rope_fwd(out[k] + N * C, cs, sn, N, T, NH, D, C);
        k_swiglu_fwd(out[k] + 2 * N * C, x, dy, N * C);
        k_swiglu_bwd(grad[k] + N * C, grad[k] + 2 * N * C, dy, x, dy, N * C);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(out[0], out[1], sizeof(float) * 3 * N * C);
    assert_memory_equal(grad[0], grad[1], sizeof(float) * 3 * N * C);
    for (int k = 0; k < 2; k++)
        free(out[k]), free(grad[k]);
    free(x), free(w), free(dy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),       cmocka_unit_test(test_rope_table),
        cmocka_unit_test(test_rope),          cmocka_unit_test(test_rope_pairing),
        cmocka_unit_test(test_swiglu),        cmocka_unit_test(test_threads_llama),
        cmocka_unit_test(test_swiglu_lora),   cmocka_unit_test(test_swiglu_lora_no_down),
        cmocka_unit_test(test_swiglu_lora_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
