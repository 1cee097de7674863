/* test_kernels.c - every kernel against a plain double-precision reference.
 *
 * Each forward is re-implemented below with independent loops in double (no
 * BLAS).  A float kernel's forward must match its reference to FWD_TOL; its
 * backward, fed a random upstream gradient dy, must match central finite
 * differences of L = sum(dy * y) taken on the double reference, to GRAD_TOL.
 * Errors are measured against the scale of the reference:
 *     err = max_i |got_i - ref_i| / max_i |ref_i|.
 * Central differences with h = 1e-4 * max(1, |p|) in double are accurate to
 * about 1e-8 here, so the error measured is the float kernel's own rounding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_lora.h"
#include "vec.h"
#include "testutil.h"

/* Tolerances, relative to max |ref| (see above).  Measured on this machine: about
 * 1e-7 for every forward and every gradient, so both bounds leave a factor of ~100
 * for other compilers and vector paths, and stay well inside the 1e-3 the spec allows. */
#define FWD_TOL 1e-5  /* float forward vs double reference */
#define GRAD_TOL 1e-5 /* float backward vs double central differences */

/* ---- helpers ---------------------------------------------------------------- */

/* Fills a with N(0, sd^2) from a stream seeded by seed (this file's tag). */
static void fill_normal(float *a, size_t n, float sd, uint64_t seed)
{
    tu_fill_normal(a, n, 0.0f, sd, 0x6b65726eULL, seed);
}

static void fill_const(float *a, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        a[i] = v;
}

/* (a - b) in double: the increment an accumulating kernel added. */
static double *diff_double(const float *a, const float *b, size_t n)
{
    double *d = tu_dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = (double)a[i] - (double)b[i];
    return d;
}

/* ---- double references ---------------------------------------------------- */

static void ref_layernorm(double *y, const double *x, const double *w, const double *b, int N,
                          int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++)
            m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++)
            v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        for (int c = 0; c < C; c++)
            y[(size_t)n * C + c] = (xr[c] - m) / sqrt(v + eps) * w[c] + b[c];
    }
}

static double ref_gelu(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* y[N,out] = x W^T + b with W stored [out,in] (conv1d 0) or [in,out] (conv1d 1). */
static void ref_linear(double *y, const double *x, const double *w, const double *b, int N, int in,
                       int out, int conv1d)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += x[(size_t)n * in + i] *
                     (conv1d ? w[(size_t)i * out + o] : w[(size_t)o * in + i]);
            y[(size_t)n * out + o] = s;
        }
}

/* y[N,out] = s (x A^T) B^T; u = x A^T when u is not NULL. */
static void ref_lora(double *y, double *u, const double *x, const double *A, const double *B, int N,
                     int in, int out, int r, double s)
{
    for (int n = 0; n < N; n++) {
        double un[64];
        for (int k = 0; k < r; k++) {
            un[k] = 0;
            for (int i = 0; i < in; i++)
                un[k] += x[(size_t)n * in + i] * A[(size_t)k * in + i];
            if (u)
                u[(size_t)n * r + k] = un[k];
        }
        for (int o = 0; o < out; o++) {
            double acc = 0;
            for (int k = 0; k < r; k++)
                acc += un[k] * B[(size_t)o * r + k];
            y[(size_t)n * out + o] = s * acc;
        }
    }
}

/* Where q, k, v sit inside one input buffer and with which row strides. */
typedef struct {
    int B, T, H, Hk, D;
    size_t qo, ko, vo; /* offsets of q, k, v in the buffer */
    int ldq, ldk, ldv;
    size_t len; /* buffer length */
} attn_layout;

/* GPT-2-like fused rows [q | k | v], ld = (H + 2 Hk) D. */
static attn_layout attn_fused(int B, int T, int H, int Hk, int D)
{
    int ld = (H + 2 * Hk) * D;
    attn_layout L = {B, T, H, Hk, D, 0, (size_t)H * D, (size_t)(H + Hk) * D, ld, ld, ld, 0};
    L.len = (size_t)B * T * ld;
    return L;
}

/* Three separate buffers, each row padded by `pad` unused columns. */
static attn_layout attn_separate(int B, int T, int H, int Hk, int D, int pad)
{
    size_t N = (size_t)B * T;
    attn_layout L = {B, T, H, Hk, D, 0, 0, 0, H * D + pad, Hk * D + pad, Hk * D + pad, 0};
    L.ko = N * L.ldq;
    L.vo = L.ko + N * L.ldk;
    L.len = L.vo + N * L.ldv;
    return L;
}

/* out [N, H D] (and att [B,H,T,T] when not NULL) from the buffer `in`, in double. */
static void ref_attention(double *out, double *att, const double *in, const attn_layout *L)
{
    int T = L->T, D = L->D, G = L->H / L->Hk;
    double p[256];
    for (int b = 0; b < L->B; b++)
        for (int h = 0; h < L->H; h++)
            for (int t = 0; t < T; t++) {
                const double *qr = in + L->qo + (size_t)(b * T + t) * L->ldq + h * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const double *kr = in + L->ko + (size_t)(b * T + j) * L->ldk + (h / G) * D;
                    double s = 0;
                    for (int d = 0; d < D; d++)
                        s += qr[d] * kr[d];
                    p[j] = s / sqrt((double)D);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j < T; j++) {
                    if (j <= t)
                        p[j] /= sum;
                    if (att)
                        att[(((size_t)b * L->H + h) * T + t) * T + j] = j <= t ? p[j] : 0.0;
                }
                for (int d = 0; d < D; d++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++)
                        s += p[j] * in[L->vo + (size_t)(b * T + j) * L->ldv + (h / G) * D + d];
                    out[(size_t)(b * T + t) * L->H * D + h * D + d] = s;
                }
            }
}

/* l[V] = the logits x_n E^T of row n; returns their max. */
static double ref_logits_row(double *l, const double *x, const double *E, int n, int C, int V)
{
    double mx = -INFINITY;
    for (int v = 0; v < V; v++) {
        l[v] = 0;
        for (int c = 0; c < C; c++)
            l[v] += x[(size_t)n * C + c] * E[(size_t)v * C + c];
        mx = fmax(mx, l[v]);
    }
    return mx;
}

/* sum over rows with tgt >= 0 of logsumexp(x E^T) - (x E^T)[tgt]. */
static double ref_xent(const double *x, const double *E, const int32_t *tgt, int N, int C, int V)
{
    double loss = 0, l[8192];
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0)
            continue;
        double mx = ref_logits_row(l, x, E, n, C, V), sum = 0;
        for (int v = 0; v < V; v++)
            sum += exp(l[v] - mx);
        loss += mx + log(sum) - l[tgt[n]];
    }
    return loss;
}

/* ---- embedding, add ----------------------------------------------------------- */

static void test_embed(void **state)
{
    (void)state;
    enum { B = 2, T = 3, C = 4, V = 5 };
    int32_t inp[B * T] = {4, 0, 2, 2, 3, 1};
    float *wte = tu_fnew(V * C), *wpe = tu_fnew(T * C), *x = tu_fnew(B * T * C);
    fill_normal(wte, V * C, 1, 1);
    fill_normal(wpe, T * C, 1, 2);
    k_embed_fwd(x, inp, wte, wpe, B * T, T, C);
    for (int n = 0; n < B * T; n++)
        for (int c = 0; c < C; c++)
            assert_true(x[n * C + c] == wte[inp[n] * C + c] + wpe[(n % T) * C + c]);
    k_embed_fwd(x, inp, wte, NULL, B * T, T, C);
    for (int n = 0; n < B * T; n++)
        assert_memory_equal(x + n * C, wte + inp[n] * C, C * sizeof(float));
    free(wte), free(wpe), free(x);
}

/* The lookup's backward: the forward is linear, so d(sum dx * x)/dwte[v,c] =
 * the sum of dx[n,c] over the rows n with inp[n] = v, and dwpe[t,c] over the
 * rows at position t; added to what the arrays held (token 2 twice, token 1
 * once, token 3 and 4 not at all in batch row 0). */
static void test_embed_bwd(void **state)
{
    (void)state;
    enum { B = 2, T = 3, C = 70, V = 5 };   /* C > 64: two channel blocks */
    int32_t inp[B * T] = {2, 0, 2, 1, 0, 4};
    float *dx = tu_fnew(B * T * C), *dwte = tu_fnew(V * C), *dwpe = tu_fnew(T * C);
    fill_normal(dx, B * T * C, 1, 3);
    fill_const(dwte, V * C, 0.5f);
    fill_const(dwpe, T * C, -0.25f);
    k_embed_bwd(dwte, dwpe, dx, inp, B * T, T, C);
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) {
            float want = 0.5f;
            for (int n = 0; n < B * T; n++)
                if (inp[n] == v)
                    want += dx[n * C + c];
            assert_true(dwte[v * C + c] == want);
        }
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            assert_true(dwpe[t * C + c] == -0.25f + dx[t * C + c] + dx[(T + t) * C + c]);
    fill_const(dwte, V * C, 0.0f);
    k_embed_bwd(dwte, NULL, dx, inp, B * T, T, C);   /* Llama: no positions */
    assert_true(dwte[3 * C] == 0.0f && dwte[4 * C + 1] == dx[5 * C + 1]);
    free(dx), free(dwte), free(dwpe);
}

static void test_add(void **state)
{
    (void)state;
    float y[5] = {1, 2, 3, 4, 5}, a[5] = {0.5f, -2, 0, 1e3f, -5};
    k_add(y, a, 5);
    float want[5] = {1.5f, 0, 3, 1004, 0};
    assert_memory_equal(y, want, sizeof want);
}

/* ---- LayerNorm ------------------------------------------------------------------ */

typedef struct {
    int N, C;
    double *x, *w, *b, *dy, *y;
} ln_ctx;

static double ln_loss(void *vc)
{
    ln_ctx *c = vc;
    ref_layernorm(c->y, c->x, c->w, c->b, c->N, c->C, 1e-5);
    return tu_dot(c->dy, c->y, (size_t)c->N * c->C);
}

static void test_layernorm(void **state)
{
    (void)state;
    enum { N = 6, C = 8 };
    float *x = tu_fnew(N * C), *w = tu_fnew(C), *b = tu_fnew(C), *dy = tu_fnew(N * C), *y = tu_fnew(N * C);
    float *dx = tu_fnew(N * C), *dx0 = tu_fnew(N * C), mean[N], rstd[N];
    fill_normal(x, N * C, 2, 10);
    for (int i = 0; i < N * C; i++)
        x[i] += 0.5f * (float)(i % C); /* rows with a nonzero mean */
    fill_normal(w, C, 0.3f, 11);
    for (int c = 0; c < C; c++)
        w[c] += 1.0f;
    fill_normal(b, C, 0.5f, 12);
    fill_normal(dy, N * C, 1, 13);
    fill_normal(dx0, N * C, 1, 14);
    memcpy(dx, dx0, sizeof(float) * N * C);

    ln_ctx c = {
        N,          C, tu_to_double(x, N * C), tu_to_double(w, C), tu_to_double(b, C), tu_to_double(dy, N * C),
        tu_dnew(N * C)};
    k_layernorm_fwd(y, mean, rstd, x, w, b, N, C, 1e-5f);
    ref_layernorm(c.y, c.x, c.w, c.b, N, C, 1e-5);
    assert_true(tu_rel_err_f(y, c.y, N * C) < FWD_TOL);
    for (int n = 0; n < N; n++) { /* kept statistics */
        double m = 0, v = 0;
        for (int k = 0; k < C; k++)
            m += c.x[n * C + k] / C;
        for (int k = 0; k < C; k++)
            v += (c.x[n * C + k] - m) * (c.x[n * C + k] - m) / C;
        assert_true(fabs(mean[n] - m) <= 1e-6 * fmax(1, fabs(m)));
        assert_true(fabs(rstd[n] - 1 / sqrt(v + 1e-5)) <= 1e-6 / sqrt(v + 1e-5));
    }

    k_layernorm_bwd(dx, dy, x, mean, rstd, w, N, C); /* accumulates onto dx0 */
    double *fd = tu_dnew(N * C), *got = diff_double(dx, dx0, N * C);
    tu_fd_grad(fd, c.x, N * C, ln_loss, &c);
    assert_true(tu_rel_err(got, fd, N * C) < GRAD_TOL);

    free(fd), free(got), free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y);
    free(x), free(w), free(b), free(dy), free(y), free(dx), free(dx0);
}

/* ---- GELU ------------------------------------------------------------------------ */

typedef struct {
    size_t n;
    double *x, *dy;
} gelu_ctx;

static double gelu_loss(void *vc)
{
    gelu_ctx *c = vc;
    double s = 0;
    for (size_t i = 0; i < c->n; i++)
        s += c->dy[i] * ref_gelu(c->x[i]);
    return s;
}

static void test_gelu(void **state)
{
    (void)state;
    enum { n = 64 };
    float *x = tu_fnew(n), *y = tu_fnew(n), *dy = tu_fnew(n), *dx = tu_fnew(n);
    for (int i = 0; i < n; i++) /* a ramp over [-6, 6] covers both saturated tails */
        x[i] = -6.0f + 12.0f * (float)i / (n - 1);
    fill_normal(dy, n, 1, 20);
    gelu_ctx c = {n, tu_to_double(x, n), tu_to_double(dy, n)};
    double *yr = tu_dnew(n), *fd = tu_dnew(n);
    for (int i = 0; i < n; i++)
        yr[i] = ref_gelu(c.x[i]);
    k_gelu_fwd(y, x, n);
    assert_true(tu_rel_err_f(y, yr, n) < FWD_TOL);

    tu_fd_grad(fd, c.x, n, gelu_loss, &c);
    k_gelu_bwd(dx, dy, x, n);
    assert_true(tu_rel_err_f(dx, fd, n) < GRAD_TOL);
    k_gelu_bwd(dy, dy, x, n); /* in place: dx aliases dy */
    assert_memory_equal(dy, dx, n * sizeof(float));

    free(x), free(y), free(dy), free(dx), free(c.x), free(c.dy), free(yr), free(fd);
}

/* ---- frozen linear ------------------------------------------------------------- */

typedef struct {
    int N, in, out, conv1d;
    double *x, *w, *b, *dy, *y;
} lin_ctx;

static double lin_loss(void *vc)
{
    lin_ctx *c = vc;
    ref_linear(c->y, c->x, c->w, c->b, c->N, c->in, c->out, c->conv1d);
    return tu_dot(c->dy, c->y, (size_t)c->N * c->out);
}

static void check_linear(int conv1d)
{
    enum { N = 5, IN = 7, OUT = 6 };
    float *x = tu_fnew(N * IN), *w = tu_fnew(IN * OUT), *b = tu_fnew(OUT), *y = tu_fnew(N * OUT);
    float *dy = tu_fnew(N * OUT), *dx = tu_fnew(N * IN), *dx0 = tu_fnew(N * IN);
    fill_normal(x, N * IN, 1, 30);
    fill_normal(w, IN * OUT, 0.5f, 31);
    fill_normal(b, OUT, 1, 32);
    fill_normal(dy, N * OUT, 1, 33);
    fill_normal(dx0, N * IN, 1, 34);
    lin_ctx c = {N,
                 IN,
                 OUT,
                 conv1d,
                 tu_to_double(x, N * IN),
                 tu_to_double(w, IN * OUT),
                 tu_to_double(b, OUT),
                 tu_to_double(dy, N * OUT),
                 tu_dnew(N * OUT)};

    k_linear_fwd(y, x, w, b, N, IN, OUT, conv1d);
    ref_linear(c.y, c.x, c.w, c.b, N, IN, OUT, conv1d);
    assert_true(tu_rel_err_f(y, c.y, N * OUT) < FWD_TOL);
    k_linear_fwd(y, x, w, NULL, N, IN, OUT, conv1d);
    ref_linear(c.y, c.x, c.w, NULL, N, IN, OUT, conv1d);
    assert_true(tu_rel_err_f(y, c.y, N * OUT) < FWD_TOL);

    /* added to a residual, into another buffer and in place, with and without bias */
    float *res = tu_fnew(N * OUT), *y2 = tu_fnew(N * OUT);
    fill_normal(res, N * OUT, 1, 35);
    for (int with_b = 0; with_b < 2; with_b++) {
        ref_linear(c.y, c.x, c.w, with_b ? c.b : NULL, N, IN, OUT, conv1d);
        for (int i = 0; i < N * OUT; i++)
            c.y[i] += res[i];
        fill_const(y, N * OUT, NAN);
        k_linear_fwd_res(y, res, x, w, with_b ? b : NULL, N, IN, OUT, conv1d);
        assert_true(tu_rel_err_f(y, c.y, N * OUT) < FWD_TOL);
        memcpy(y2, res, sizeof(float) * N * OUT);
        k_linear_fwd_res(y2, y2, x, w, with_b ? b : NULL, N, IN, OUT, conv1d);
        assert_memory_equal(y2, y, sizeof(float) * N * OUT);
    }
    free(res), free(y2);

    double *fd = tu_dnew(N * IN);
    tu_fd_grad(fd, c.x, N * IN, lin_loss, &c);
    fill_const(dx, N * IN, NAN); /* beta 0 overwrites: old contents are never read */
    k_linear_bwd(dx, dy, w, N, IN, OUT, conv1d, 0.0f);
    assert_true(tu_rel_err_f(dx, fd, N * IN) < GRAD_TOL);
    memcpy(dx, dx0, sizeof(float) * N * IN); /* beta 1 accumulates */
    k_linear_bwd(dx, dy, w, N, IN, OUT, conv1d, 1.0f);
    double *got = diff_double(dx, dx0, N * IN);
    assert_true(tu_rel_err(got, fd, N * IN) < GRAD_TOL);
    memcpy(dx, dx0, sizeof(float) * N * IN); /* beta 0.5 scales the old contents */
    k_linear_bwd(dx, dy, w, N, IN, OUT, conv1d, 0.5f);
    for (int i = 0; i < N * IN; i++)
        got[i] = (double)dx[i] - 0.5 * dx0[i];
    assert_true(tu_rel_err(got, fd, N * IN) < GRAD_TOL);

    free(fd), free(got), free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dx0);
}

static void test_linear_torch(void **state)
{
    (void)state;
    check_linear(0);
}

static void test_linear_conv1d(void **state)
{
    (void)state;
    check_linear(1);
}

/* ---- LoRA ---------------------------------------------------------------------- */

typedef struct {
    int N, in, out, r;
    double s;
    double *x, *A, *B, *dy, *y;
} lora_ctx;

static double lora_loss(void *vc)
{
    lora_ctx *c = vc;
    ref_lora(c->y, NULL, c->x, c->A, c->B, c->N, c->in, c->out, c->r, c->s);
    return tu_dot(c->dy, c->y, (size_t)c->N * c->out);
}

static void test_lora(void **state)
{
    (void)state;
    enum { N = 5, IN = 7, OUT = 6, R = 3 };
    const float s = 2.0f;
    float *x = tu_fnew(N * IN), *A = tu_fnew(R * IN), *B = tu_fnew(OUT * R), *y = tu_fnew(N * OUT);
    float *y0 = tu_fnew(N * OUT), *u = tu_fnew(N * R), *dy = tu_fnew(N * OUT), *du = tu_fnew(N * R);
    float *dx = tu_fnew(N * IN), *dx0 = tu_fnew(N * IN), *dA = tu_fnew(R * IN), *dA0 = tu_fnew(R * IN);
    float *dB = tu_fnew(OUT * R), *dB0 = tu_fnew(OUT * R);
    float *scr = tu_fnew(k_lora_scratch(N, OUT, R));
    fill_normal(x, N * IN, 1, 40);
    fill_normal(A, R * IN, 0.5f, 41);
    fill_normal(B, OUT * R, 0.5f, 42);
    fill_normal(y0, N * OUT, 1, 43);
    fill_normal(dy, N * OUT, 1, 44);
    fill_normal(dx0, N * IN, 1, 45);
    fill_normal(dA0, R * IN, 1, 46);
    fill_normal(dB0, OUT * R, 1, 47);
    lora_ctx c = {N,
                  IN,
                  OUT,
                  R,
                  s,
                  tu_to_double(x, N * IN),
                  tu_to_double(A, R * IN),
                  tu_to_double(B, OUT * R),
                  tu_to_double(dy, N * OUT),
                  tu_dnew(N * OUT)};

    /* forward: u = x A^T, y = y0 + s u B^T */
    double *ur = tu_dnew(N * R);
    memcpy(y, y0, sizeof(float) * N * OUT);
    k_lora_fwd(y, y, NULL, u, x, A, B, N, IN, OUT, R, s, scr, NULL);
    ref_lora(c.y, ur, c.x, c.A, c.B, N, IN, OUT, R, s);
    double *yadd = diff_double(y, y0, N * OUT);
    assert_true(tu_rel_err_f(u, ur, N * R) < FWD_TOL);
    assert_true(tu_rel_err(yadd, c.y, N * OUT) < FWD_TOL);

    /* backward: dx, dA, dB accumulate; each increment against its own FD */
    memcpy(dx, dx0, sizeof(float) * N * IN);
    memcpy(dA, dA0, sizeof(float) * R * IN);
    memcpy(dB, dB0, sizeof(float) * OUT * R);
    fill_const(du, N * R, NAN); /* du is scratch, overwritten */
    k_lora_bwd(dx, 1.0f, dA, dB, du, dy, x, u, A, B, N, IN, OUT, R, s, scr, NULL);
    double *fx = tu_dnew(N * IN), *fA = tu_dnew(R * IN), *fB = tu_dnew(OUT * R);
    tu_fd_grad(fx, c.x, N * IN, lora_loss, &c);
    tu_fd_grad(fA, c.A, R * IN, lora_loss, &c);
    tu_fd_grad(fB, c.B, OUT * R, lora_loss, &c);
    double *gx = diff_double(dx, dx0, N * IN), *gA = diff_double(dA, dA0, R * IN);
    double *gB = diff_double(dB, dB0, OUT * R);
    assert_true(tu_rel_err(gx, fx, N * IN) < GRAD_TOL);
    assert_true(tu_rel_err(gA, fA, R * IN) < GRAD_TOL);
    assert_true(tu_rel_err(gB, fB, OUT * R) < GRAD_TOL);

    /* dx NULL: dA and dB come out the same */
    float *dA2 = tu_fnew(R * IN), *dB2 = tu_fnew(OUT * R);
    memcpy(dA2, dA0, sizeof(float) * R * IN);
    memcpy(dB2, dB0, sizeof(float) * OUT * R);
    k_lora_bwd(NULL, 1.0f, dA2, dB2, du, dy, x, u, A, B, N, IN, OUT, R, s, scr, NULL);
    assert_memory_equal(dA2, dA, sizeof(float) * R * IN);
    assert_memory_equal(dB2, dB, sizeof(float) * OUT * R);

    free(dA2), free(dB2), free(gx), free(gA), free(gB), free(fx), free(fA), free(fB);
    free(ur), free(yadd), free(c.x), free(c.A), free(c.B), free(c.dy), free(c.y);
    free(x), free(A), free(B), free(y), free(y0), free(u), free(dy), free(du);
    free(dx), free(dx0), free(dA), free(dA0), free(dB), free(dB0), free(scr);
}

/* ---- LoRA at awkward shapes ----
 * The written-out kernels cut rows into blocks of 8 and parts of 64, columns into chunks of
 * 256 and slabs of 32 and vectors of 16, and r into groups of 8, 4 and 1:
 * shapes with a remainder at each cut, against a double reference of every
 * output (the backward's from the kernel's own u, as it reads it). */

typedef struct {
    int N, in, out, r;
} lora_shape;

/* The double reference of k_lora_bwd: dB = dB0 + s dy^T u, du = s dy B,
 * dA = dA0 + du^T x, dx = dx0 + du A (into the given arrays, which hold the
 * starting values). */
static void ref_lora_bwd(double *dx, double *dA, double *dB, double *du, const double *dy,
                         const double *x, const double *u, const double *A, const double *B,
                         lora_shape h, double s)
{
    for (int n = 0; n < h.N; n++)
        for (int k = 0; k < h.r; k++) {
            double acc = 0;
            for (int j = 0; j < h.out; j++) {
                acc += dy[(size_t)n * h.out + j] * B[(size_t)j * h.r + k];
                dB[(size_t)j * h.r + k] += s * dy[(size_t)n * h.out + j] * u[(size_t)n * h.r + k];
            }
            du[(size_t)n * h.r + k] = s * acc;
            for (int i = 0; i < h.in; i++) {
                dA[(size_t)k * h.in + i] += du[(size_t)n * h.r + k] * x[(size_t)n * h.in + i];
                dx[(size_t)n * h.in + i] += du[(size_t)n * h.r + k] * A[(size_t)k * h.in + i];
            }
        }
}

/* |y - (ry + r0 + b)| relative, the reference being ry plus r0 [N,out] and
 * b [out] when given (float arrays as the kernel read them). */
static double lora_fwd_err(const float *y, const double *ry, const float *r0, const float *b,
                           lora_shape h)
{
    size_t ny = (size_t)h.N * h.out;
    double *want = tu_dnew(ny);
    for (size_t i = 0; i < ny; i++)
        want[i] = ry[i] + (r0 ? r0[i] : 0.0) + (b ? b[i % (size_t)h.out] : 0.0);
    double err = tu_rel_err_f(y, want, ny);
    free(want);
    return err;
}

/* k_lora_fwd at shape h in each way the model calls it, against ref_lora:
 * y written over NaN (res, b NULL), y = res + b + LoRA (res apart from y),
 * y += LoRA (res = y); the u it leaves (the last call's) into u. */
static void check_lora_fwd_modes(float *u, const float *x, const float *A, const float *B,
                                 lora_shape h, float s, uint64_t seed)
{
    size_t ny = (size_t)h.N * h.out, nu = (size_t)h.N * h.r;
    float *y = tu_fnew(ny), *res = tu_fnew(ny), *b = tu_fnew((size_t)h.out);
    float *scr = tu_fnew(k_lora_scratch(h.N, h.out, h.r));
    double *rx = tu_to_double(x, (size_t)h.N * h.in), *rA = tu_to_double(A, (size_t)h.r * h.in);
    double *rB = tu_to_double(B, (size_t)h.out * h.r), *ry = tu_dnew(ny), *ru = tu_dnew(nu);
    fill_normal(res, ny, 1, seed), fill_normal(b, (size_t)h.out, 1, seed + 1);
    ref_lora(ry, ru, rx, rA, rB, h.N, h.in, h.out, h.r, s);   /* ry = s u B^T */
    for (int mode = 0; mode < 3; mode++) {
        const float *r0 = mode == 1 ? res : NULL, *bias = mode == 1 ? b : NULL;
        fill_const(y, ny, NAN), fill_const(scr, k_lora_scratch(h.N, h.out, h.r), NAN);
        fill_const(u, nu, NAN);
        if (mode == 2)
            memcpy(y, res, ny * sizeof *y);
        k_lora_fwd(y, mode == 2 ? y : r0, bias, u, x, A, B, h.N, h.in, h.out, h.r, s, scr, NULL);
        assert_true(tu_rel_err_f(u, ru, nu) < FWD_TOL);
        assert_true(lora_fwd_err(y, ry, mode ? res : NULL, bias, h) < FWD_TOL);
    }
    free(y), free(res), free(b), free(scr), free(rx), free(rA), free(rB), free(ry), free(ru);
}

/* k_lora_fwd and k_lora_bwd at shape h against ref_lora / ref_lora_bwd;
 * the backward with dx += (beta 1) and dx written over NaN (beta 0). */
static void check_lora_shape(lora_shape h, uint64_t seed)
{
    size_t nx = (size_t)h.N * h.in, ny = (size_t)h.N * h.out, na = (size_t)h.r * h.in;
    size_t nb = (size_t)h.out * h.r, nu = (size_t)h.N * h.r;
    const float s = 0.75f;
    float *x = tu_fnew(nx), *A = tu_fnew(na), *B = tu_fnew(nb), *dy = tu_fnew(ny);
    float *u = tu_fnew(nu), *du = tu_fnew(nu), *dx = tu_fnew(nx), *dA = tu_fnew(na);
    float *dB = tu_fnew(nb), *scr = tu_fnew(k_lora_scratch(h.N, h.out, h.r));
    fill_normal(x, nx, 1, seed), fill_normal(A, na, 0.5f, seed + 1);
    fill_normal(B, nb, 0.5f, seed + 2);
    fill_normal(dy, ny, 1, seed + 4), fill_normal(dx, nx, 1, seed + 5);
    fill_normal(dA, na, 1, seed + 6), fill_normal(dB, nb, 1, seed + 7);
    check_lora_fwd_modes(u, x, A, B, h, s, seed + 3);

    double *rx = tu_to_double(x, nx), *rA = tu_to_double(A, na), *rB = tu_to_double(B, nb);
    double *rdu = tu_dnew(nu), *rdy = tu_to_double(dy, ny), *rdx0 = tu_to_double(dx, nx);
    double *rdx = tu_to_double(dx, nx), *rdA = tu_to_double(dA, na), *rdB = tu_to_double(dB, nb);
    double *ku = tu_to_double(u, nu);
    ref_lora_bwd(rdx, rdA, rdB, rdu, rdy, rx, ku, rA, rB, h, s);
    fill_const(du, nu, NAN), fill_const(scr, k_lora_scratch(h.N, h.out, h.r), NAN);
    k_lora_bwd(dx, 1.0f, dA, dB, du, dy, x, u, A, B, h.N, h.in, h.out, h.r, s, scr, NULL);
    assert_true(tu_rel_err_f(du, rdu, nu) < FWD_TOL);
    assert_true(tu_rel_err_f(dB, rdB, nb) < FWD_TOL);
    assert_true(tu_rel_err_f(dA, rdA, na) < FWD_TOL);
    assert_true(tu_rel_err_f(dx, rdx, nx) < FWD_TOL);

    /* beta 0: dx = du A alone, whatever dx held */
    for (size_t i = 0; i < nx; i++)
        rdx[i] -= rdx0[i];
    fill_const(dx, nx, NAN);
    k_lora_bwd(dx, 0.0f, dA, dB, du, dy, x, u, A, B, h.N, h.in, h.out, h.r, s, scr, NULL);
    assert_true(tu_rel_err_f(dx, rdx, nx) < FWD_TOL);

    free(x), free(A), free(B), free(dy), free(u), free(du), free(dx), free(dA), free(dB);
    free(scr), free(rx), free(rA), free(rB), free(rdu), free(rdy), free(rdx), free(rdx0);
    free(rdA), free(rdB), free(ku);
}

static void test_lora_shapes(void **state)
{
    (void)state;
    const lora_shape shapes[] = {
        {1, 1, 1, 1},      {9, 17, 33, 1},  {37, 49, 70, 4},  {45, 300, 65, 8},
        {19, 70, 290, 16}, {8, 33, 35, 13}, {11, 20, 31, 64}, {17, 576, 192, 8},
        {64, 40, 48, 8},   {150, 70, 45, 8}, {133, 21, 290, 13}, /* one part; parts of 64 rows
                                                                     with a ragged last one */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        check_lora_shape(shapes[i], 300 + 10 * i);
}

/* The grouped LoRA of G maps reading one x (k_lora_fwd_group /
 * k_lora_bwd_group) against k_lora_fwd / k_lora_bwd map by map (which
 * test_lora and test_lora_shapes check): the same u, y, dA, dB and dx bit
 * for bit (kernels.h: the same sums in the same order): y written (with
 * and without a bias) and added to, dx NULL, added to and written.  And
 * the forward through k_lora_fwd_rows (check_lora_rows). */
enum { LG = 3 };   /* maps per group in check_lora_group */

/* check_lora_group's products: fp32 (0) or on bf16 inputs (1: every call
 * given a bf16 pack, kernels.h), where the same equalities must hold. */
static int lg_bf16;

/* A pack for G maps (k_lora_pack_size), or NULL under fp32. */
static uint16_t *lg_pack(int G, int in, int out_sum, int r)
{
    return lg_bf16 ? calloc(k_lora_pack_size(G, in, out_sum, r), sizeof(uint16_t)) : NULL;
}

/* k_lora_bwd_group's row work done first through k_lora_bwd_group_prep
 * and k_lora_bwd_group_rows on the rows cut at parts' edges (called one
 * after the other, or by two threads inside a parallel region), then
 * k_lora_bwd_group with dy NULL: dx, dA, dB equal to the group kernel's
 * (dx_want, dA_want, dB_want) bit for bit.  dx0, dA0, dB0: their values
 * before the backward (dx NULL when the backward had none). */
static void check_lora_bwd_rows(const float *dx0, const float *dx_want, float *const *dA0,
                                float *const *dA_want, float *const *dB0, float *const *dB_want,
                                const float *x, float *const *dy, float *const *u, float *const *A,
                                float *const *B, const int *out, int N, int IN, int R, float s,
                                float beta)
{
    enum { G = LG };
    int out_sum = out[0] + out[1] + out[2], cut[4] = {0, 0, 0, N}, nc = 1;
    for (int e = K_LORA_PART; e < N && nc < 3; e += K_LORA_PART)
        cut[nc++] = e;
    cut[nc] = N;
    size_t ns = k_lora_group_scratch(G, N, out_sum, R);
    float *scratch = tu_fnew(ns), *dx = dx0 ? tu_fnew(N * IN) : NULL, *dA[G], *dB[G];
    uint16_t *pk = lg_pack(G, IN, out_sum, R);
    for (int inside = 0; inside < 2; inside++) {
        fill_const(scratch, ns, NAN);
        if (dx)
            memcpy(dx, dx0, sizeof(float) * N * IN);
        for (int g = 0; g < G; g++) {
            dA[g] = tu_fnew(R * IN), dB[g] = tu_fnew(out[g] * R);
            memcpy(dA[g], dA0[g], sizeof(float) * R * IN);
            memcpy(dB[g], dB0[g], sizeof(float) * out[g] * R);
        }
        k_lora_bwd_group_prep((const float *const *)B, out, G, N, R, scratch, pk);
        if (inside) {
#pragma omp parallel num_threads(2)
            for (int p = omp_get_thread_num(); p < nc; p += omp_get_num_threads())
                k_lora_bwd_group_rows((const float *const *)dy, (const float *const *)u, out, G, N,
                                      R, s, scratch, pk, cut[p], cut[p + 1]);
        } else {
            for (int p = 0; p < nc; p++)
                k_lora_bwd_group_rows((const float *const *)dy, (const float *const *)u, out, G, N,
                                      R, s, scratch, pk, cut[p], cut[p + 1]);
        }
        k_lora_bwd_group(dx, beta, dA, dB, NULL, x, (const float *const *)u,
                         (const float *const *)A, (const float *const *)B, out, G, N, IN, R, s,
                         scratch, pk);
        if (dx)
            assert_memory_equal(dx, dx_want, sizeof(float) * N * IN);
        for (int g = 0; g < G; g++) {
            assert_memory_equal(dA[g], dA_want[g], sizeof(float) * R * IN);
            assert_memory_equal(dB[g], dB_want[g], sizeof(float) * out[g] * R);
            free(dA[g]), free(dB[g]);
        }
    }
    free(scratch), free(dx), free(pk);
}

/* k_lora_fwd_rows on the rows cut into three uneven pieces (not on LoRA
 * block edges), called one after the other outside a parallel region, or
 * by two threads inside one, with x given (u made) or u given: y and u
 * equal to the group kernel's (y_want, u_want) bit for bit.  y0: y before
 * the forward; res: whether the forward added to y. */
static void check_lora_rows(float *const *y0, float *const *y_want, float *const *u_want,
                            const float *x, float *const *A, float *const *B, float *const *bias,
                            const int *out, int N, int IN, int R, float s, int res)
{
    enum { G = LG };
    int out_sum = out[0] + out[1] + out[2], cut[4] = {0, 5, N / 2 + 3, N};
    float *bt = tu_fnew(R * out_sum), *y[G], *u[G];
    uint16_t *pk = lg_pack(G, IN, out_sum, R);
    k_lora_transpose(bt, (const float *const *)B, out, G, R);
    for (int way = 0; way < 4; way++) {   /* x given, x given in a region, u given, both */
        int inside = way & 1, ugiven = way >= 2;
        k_lora_rows l = {.x = ugiven ? NULL : x, .bt = bt, .pk = pk, .G = G, .in = IN, .r = R,
                         .s = s};
        if (pk)   /* A only where u is made */
            k_lora_pack_fwd(pk, ugiven ? NULL : (const float *const *)A, (const float *const *)B,
                            out, G, IN, R);
        for (int g = 0; g < G; g++) {
            y[g] = tu_fnew(N * out[g]), u[g] = tu_fnew(N * R);
            memcpy(y[g], y0[g], sizeof(float) * N * out[g]);
            if (ugiven)
                memcpy(u[g], u_want[g], sizeof(float) * N * R);
            l.y[g] = y[g], l.u[g] = u[g], l.res[g] = res ? y[g] : NULL, l.b[g] = bias[g];
            l.A[g] = A[g], l.out[g] = out[g];
        }
        if (inside) {
#pragma omp parallel num_threads(2)
            for (int p = omp_get_thread_num(); p < 3; p += omp_get_num_threads())
                k_lora_fwd_rows(&l, cut[p], cut[p + 1]);
        } else {
            for (int p = 0; p < 3; p++)
                k_lora_fwd_rows(&l, cut[p], cut[p + 1]);
        }
        for (int g = 0; g < G; g++) {
            assert_memory_equal(y[g], y_want[g], sizeof(float) * N * out[g]);
            assert_memory_equal(u[g], u_want[g], sizeof(float) * N * R);
            free(y[g]), free(u[g]);
        }
    }
    free(bt), free(pk);
}

static void check_lora_group(int N, int IN, int R, const int *out)
{
    enum { G = LG };
    const float s = 1.5f;
    int out_sum = out[0] + out[1] + out[2];
    float *x = tu_fnew(N * IN), *du = tu_fnew(N * R), *dx0 = tu_fnew(N * IN);
    float *dx1 = tu_fnew(N * IN), *dx2 = tu_fnew(N * IN);
    float *scratch = tu_fnew(k_lora_group_scratch(G, N, out_sum, R));
    float *scr1 = tu_fnew(k_lora_scratch(N, out_sum, R));
    uint16_t *pk1 = lg_pack(1, IN, out_sum, R), *pk2 = lg_pack(G, IN, out_sum, R);
    float *A[G], *B[G], *y1[G], *y2[G], *u1[G], *u2[G], *dy[G], *dA1[G], *dA2[G], *dB1[G], *dB2[G];
    float *y0[G], *dA0[G], *dB0[G], *dx00 = tu_fnew(N * IN);
    fill_normal(x, N * IN, 1, 60);
    fill_normal(dx0, N * IN, 1, 61);
    for (int g = 0; g < G; g++) {
        int o = out[g];
        A[g] = tu_fnew(R * IN), B[g] = tu_fnew(o * R), dy[g] = tu_fnew(N * o);
        y1[g] = tu_fnew(N * o), y2[g] = tu_fnew(N * o), u1[g] = tu_fnew(N * R);
        y0[g] = tu_fnew(N * o), dA0[g] = tu_fnew(R * IN), dB0[g] = tu_fnew(o * R);
        u2[g] = tu_fnew(N * R), dA1[g] = tu_fnew(R * IN), dA2[g] = tu_fnew(R * IN);
        dB1[g] = tu_fnew(o * R), dB2[g] = tu_fnew(o * R);
        fill_normal(A[g], R * IN, 0.5f, 62 + 10 * g);
        fill_normal(B[g], o * R, 0.5f, 63 + 10 * g);
        fill_normal(dy[g], N * o, 1, 64 + 10 * g);
        fill_normal(y1[g], N * o, 1, 65 + 10 * g);
        fill_normal(dA1[g], R * IN, 1, 66 + 10 * g);
        fill_normal(dB1[g], o * R, 1, 67 + 10 * g);
        memcpy(y2[g], y1[g], sizeof(float) * N * o);
        memcpy(dA2[g], dA1[g], sizeof(float) * R * IN);
        memcpy(dB2[g], dB1[g], sizeof(float) * o * R);
    }
    float *bias[G] = {tu_fnew(out[0]), NULL, tu_fnew(out[2])};   /* map 1 without a bias */
    fill_normal(bias[0], out[0], 1, 68), fill_normal(bias[2], out[2], 1, 69);
    /* dx NULL, dx += (beta 1), dx written (beta 0) */
    for (int mode = 0; mode < 3; mode++) {
        float beta = mode == 1 ? 1.0f : 0.0f, *dxa = mode ? dx1 : NULL, *dxb = mode ? dx2 : NULL;
        memcpy(dx1, dx0, sizeof(float) * N * IN);
        memcpy(dx2, dx0, sizeof(float) * N * IN);
        for (int g = 0; g < G; g++) {   /* y += in mode 1, else y written over NaN */
            fill_const(y1[g], (size_t)N * out[g], NAN);
            if (mode == 1)
                fill_normal(y1[g], (size_t)N * out[g], 1, 70 + g);
            memcpy(y2[g], y1[g], sizeof(float) * N * out[g]);
            memcpy(y0[g], y1[g], sizeof(float) * N * out[g]);
            k_lora_fwd(y1[g], mode == 1 ? y1[g] : NULL, bias[g], u1[g], x, A[g], B[g], N, IN,
                       out[g], R, s, scr1, pk1);
            k_lora_bwd(dxa, g ? 1.0f : beta, dA1[g], dB1[g], du, dy[g], x, u1[g], A[g], B[g], N,
                       IN, out[g], R, s, scr1, pk1);
        }
        if (mode == 2)   /* beta 0 does not read dx */
            fill_const(dx2, (size_t)N * IN, NAN);
        memcpy(dx00, dx2, sizeof(float) * N * IN);
        for (int g = 0; g < G; g++) {
            memcpy(dA0[g], dA2[g], sizeof(float) * R * IN);
            memcpy(dB0[g], dB2[g], sizeof(float) * out[g] * R);
        }
        fill_const(scratch, k_lora_group_scratch(G, N, out_sum, R), NAN);   /* all scratch */
        k_lora_fwd_group(y2, mode == 1 ? (const float *const *)y2 : NULL,
                         (const float *const *)bias, u2, x, (const float *const *)A,
                         (const float *const *)B, out, G, N, IN, R, s, scratch, pk2);
        k_lora_bwd_group(dxb, beta, dA2, dB2, (const float *const *)dy, x,
                         (const float *const *)u2, (const float *const *)A,
                         (const float *const *)B, out, G, N, IN, R, s, scratch, pk2);
        for (int g = 0; g < G; g++) {   /* the same sums in the same order */
            size_t o = (size_t)out[g];
            assert_memory_equal(u2[g], u1[g], sizeof(float) * N * R);
            assert_memory_equal(y2[g], y1[g], sizeof(float) * N * o);
            assert_memory_equal(dA2[g], dA1[g], sizeof(float) * R * IN);
            assert_memory_equal(dB2[g], dB1[g], sizeof(float) * o * R);
        }
        assert_memory_equal(dx2, dx1, sizeof(float) * N * IN);
        if (mode == 0)
            assert_memory_equal(dx2, dx0, sizeof(float) * N * IN);
        check_lora_rows(y0, y1, u1, x, A, B, bias, out, N, IN, R, s, mode == 1);
        check_lora_bwd_rows(mode ? dx00 : NULL, dx2, dA0, dA2, dB0, dB2, x, dy, u2, A, B, out, N,
                            IN, R, s, beta);
    }
    free(bias[0]), free(bias[2]);
    for (int g = 0; g < G; g++) {
        free(A[g]), free(B[g]), free(dy[g]), free(y1[g]), free(y2[g]), free(u1[g]), free(u2[g]);
        free(y0[g]), free(dA0[g]), free(dB0[g]);
        free(dA1[g]), free(dA2[g]), free(dB1[g]), free(dB2[g]);
    }
    free(x), free(du), free(dx0), free(dx1), free(dx2), free(scratch), free(scr1), free(dx00);
    free(pk1), free(pk2);
}

static void test_lora_group(void **state)
{
    (void)state;
    const int small[LG] = {24, 8, 16}, odd[LG] = {37, 5, 290};
    for (lg_bf16 = 0; lg_bf16 < 2; lg_bf16++) {
        check_lora_group(33, 40, 4, small);
        check_lora_group(21, 275, 8, odd);   /* row blocks, chunks and slabs with remainders */
        check_lora_group(10, 19, 13, odd);   /* r in groups of 8, 4 and 1 */
        check_lora_group(141, 50, 8, odd);   /* dB's parts of 64 rows, the last one ragged */
    }
    lg_bf16 = 0;
}

/* One forward and backward of G maps (k_lora_fwd_group adding to y with
 * a bias on map 0, k_lora_bwd_group adding to dx) with pk (bf16) or not,
 * on `threads` threads: the outputs u, y, dx, dA, dB one after the other
 * in o (G*N*R + sum N*out + N*IN + G*R*IN + sum out*R floats). */
static void lora_group_run(float *o, int N, int IN, int R, const int *out, int bf16, int threads)
{
    enum { G = LG };
    const float s = 1.5f;
    int out_sum = out[0] + out[1] + out[2], saved = omp_get_max_threads();
    float *x = tu_fnew(N * IN), *scratch = tu_fnew(k_lora_group_scratch(G, N, out_sum, R));
    float *A[G], *B[G], *dy[G], *u[G], *y[G], *dA[G], *dB[G], *bias[G] = {tu_fnew(out[0])};
    uint16_t *pk = bf16 ? calloc(k_lora_pack_size(G, IN, out_sum, R), 2) : NULL;
    fill_normal(x, N * IN, 1, 80), fill_normal(bias[0], out[0], 1, 81);
    float *p = o;
    for (int g = 0; g < G; g++)
        u[g] = p, p += (size_t)N * R;
    for (int g = 0; g < G; g++)
        y[g] = p, fill_normal(y[g], N * out[g], 1, 82 + g), p += (size_t)N * out[g];
    float *dx = p;
    fill_normal(dx, N * IN, 1, 85), p += (size_t)N * IN;
    for (int g = 0; g < G; g++)
        dA[g] = p, fill_normal(dA[g], R * IN, 1, 86 + g), p += (size_t)R * IN;
    for (int g = 0; g < G; g++) {
        dB[g] = p, fill_normal(dB[g], out[g] * R, 1, 89 + g), p += (size_t)out[g] * R;
        A[g] = tu_fnew(R * IN), B[g] = tu_fnew(out[g] * R), dy[g] = tu_fnew(N * out[g]);
        fill_normal(A[g], R * IN, 0.5f, 92 + g), fill_normal(B[g], out[g] * R, 0.5f, 95 + g);
        fill_normal(dy[g], N * out[g], 1, 98 + g);
    }
    omp_set_num_threads(threads);
    k_lora_fwd_group(y, (const float *const *)y, (const float *const *)bias, u, x,
                     (const float *const *)A, (const float *const *)B, out, G, N, IN, R, s, scratch,
                     pk);
    k_lora_bwd_group(dx, 1.0f, dA, dB, (const float *const *)dy, x, (const float *const *)u,
                     (const float *const *)A, (const float *const *)B, out, G, N, IN, R, s, scratch,
                     pk);
    omp_set_num_threads(saved);
    for (int g = 0; g < G; g++)
        free(A[g]), free(B[g]), free(dy[g]);
    free(x), free(scratch), free(bias[0]), free(pk);
}

/* The bf16 products (kernels.h, pk) against fp32: every output within
 * bf16's rounding (2^-6 of its largest value: a value passes up to four
 * roundings of 2^-9; a product on the wrong weights, layout or rows is off
 * by its whole size), and the same bits on 1 and 3 threads. */
static void check_lora_bf16(int N, int IN, int R, const int *out)
{
    size_t sizes[5] = {(size_t)LG * N * R, 0, (size_t)N * IN, (size_t)LG * R * IN, 0}, n = 0;
    for (int g = 0; g < LG; g++)
        sizes[1] += (size_t)N * out[g], sizes[4] += (size_t)out[g] * R;
    for (int i = 0; i < 5; i++)
        n += sizes[i];
    float *f32 = tu_fnew(n), *b1 = tu_fnew(n), *b3 = tu_fnew(n);
    lora_group_run(f32, N, IN, R, out, 0, 2);
    lora_group_run(b1, N, IN, R, out, 1, 1);
    lora_group_run(b3, N, IN, R, out, 1, 3);
    assert_memory_equal(b1, b3, n * sizeof(float));
    assert_true(memcmp(b1, f32, sizes[0] * sizeof(float)) != 0);   /* the u did round */
    for (size_t i = 0, o = 0; i < 5; o += sizes[i], i++)
        assert_true(tu_rel_err_rows(b1 + o, f32 + o, 1, (int)sizes[i], (int)sizes[i]) < 1.0 / 64);
    free(f32), free(b1), free(b3);
}

static void test_lora_bf16(void **state)
{
    (void)state;
    const int llama[LG] = {576, 192, 192}, odd[LG] = {37, 5, 290};
    check_lora_bf16(150, 576, 8, llama);
    check_lora_bf16(141, 50, 13, odd);
}

/* ---- attention ------------------------------------------------------------------- */

typedef struct {
    const attn_layout *L;
    double *in, *dy, *out;
} attn_ctx;

static double attn_loss(void *vc)
{
    attn_ctx *c = vc;
    ref_attention(c->out, NULL, c->in, c->L);
    return tu_dot(c->dy, c->out, (size_t)c->L->B * c->L->T * c->L->H * c->L->D);
}

/* used[i] = 1 for every buffer element that is part of q, k or v. */
static void attn_used(char *used, const attn_layout *L)
{
    memset(used, 0, L->len);
    for (int n = 0; n < L->B * L->T; n++) {
        memset(used + L->qo + (size_t)n * L->ldq, 1, (size_t)L->H * L->D);
        memset(used + L->ko + (size_t)n * L->ldk, 1, (size_t)L->Hk * L->D);
        memset(used + L->vo + (size_t)n * L->ldv, 1, (size_t)L->Hk * L->D);
    }
}

static void k_attn_fwd_l(float *out, float *att, const float *in, const attn_layout *L)
{
    k_attention_fwd(out, att, in + L->qo, in + L->ko, in + L->vo, L->B, L->T, L->H, L->Hk, L->D,
                    L->ldq, L->ldk, L->ldv);
}

static void k_attn_bwd_l(float *din, float *scratch, const float *dout, const float *in,
                         const float *att, const attn_layout *L)
{
    k_attention_bwd(din + L->qo, din + L->ko, din + L->vo, scratch, dout, in + L->qo, in + L->ko,
                    in + L->vo, att, L->B, L->T, L->H, L->Hk, L->D, L->ldq, L->ldk, L->ldv);
}

/* Forward against the reference (out and att), backward against FD over every
 * element of q, k, v; dq/dk/dv are overwritten (NaN beforehand) and padding
 * columns stay untouched. */
static void check_attention(const attn_layout *L, uint64_t seed)
{
    size_t N = (size_t)L->B * L->T, no = N * L->H * L->D;
    size_t na = (size_t)L->B * L->H * L->T * L->T;
    float *in = tu_fnew(L->len), *out = tu_fnew(no), *att = tu_fnew(na), *dy = tu_fnew(no);
    float *din = tu_fnew(L->len), *scratch = tu_fnew(na);
    char *used = malloc(L->len);
    attn_used(used, L);
    fill_normal(in, L->len, 1, seed);
    fill_normal(dy, no, 1, seed + 1);
    attn_ctx c = {L, tu_to_double(in, L->len), tu_to_double(dy, no), tu_dnew(no)};
    double *att_ref = tu_dnew(na);

    k_attn_fwd_l(out, att, in, L);
    ref_attention(c.out, att_ref, c.in, L);
    assert_true(tu_rel_err_f(out, c.out, no) < FWD_TOL);
    assert_true(tu_rel_err_f(att, att_ref, na) < FWD_TOL);

    fill_const(din, L->len, NAN);
    k_attn_bwd_l(din, scratch, dy, in, att, L);
    double *fd = tu_dnew(L->len), *got = tu_dnew(L->len);
    tu_fd_grad(fd, c.in, L->len, attn_loss, &c);
    for (size_t i = 0; i < L->len; i++) {
        if (used[i]) {
            assert_false(isnan(din[i]));
            got[i] = din[i];
        } else {
            assert_true(isnan(din[i])); /* padding never written */
            got[i] = fd[i];             /* (and FD there is 0) */
        }
    }
    assert_true(tu_rel_err(got, fd, L->len) < GRAD_TOL);

    free(fd), free(got), free(att_ref), free(c.in), free(c.dy), free(c.out), free(used);
    free(in), free(out), free(att), free(dy), free(din), free(scratch);
}

static void test_attention_mha_fused(void **state)
{
    (void)state;
    attn_layout L = attn_fused(2, 5, 2, 2, 3); /* GPT-2 c_attn rows: ld = 3 H D */
    assert_int_equal(L.ldq, 3 * 2 * 3);
    check_attention(&L, 50);
}

static void test_attention_mha_separate(void **state)
{
    (void)state;
    attn_layout L = attn_separate(2, 5, 2, 2, 3, 2);
    check_attention(&L, 52);
}

static void test_attention_gqa_separate(void **state)
{
    (void)state;
    attn_layout L = attn_separate(2, 5, 4, 2, 3, 1);
    check_attention(&L, 54);
}

static void test_attention_gqa_fused(void **state)
{
    (void)state;
    attn_layout L = attn_fused(2, 5, 4, 2, 3);
    check_attention(&L, 56);
}

/* T = 130 spans three causal row blocks of the kernel (64, 64, 2 rows). */
static void test_attention_blocks(void **state)
{
    (void)state;
    attn_layout L = attn_fused(1, 130, 2, 1, 3);
    check_attention(&L, 58);
}

/* Changing key/value at position t0 leaves every output before t0 bit-identical
 * (and does change the output at t0); masked probabilities are exactly 0. */
static void test_attention_causal(void **state)
{
    (void)state;
    attn_layout L = attn_fused(2, 5, 4, 2, 3);
    const int t0 = 3, b0 = 1;
    size_t N = 10, no = N * L.H * L.D, na = (size_t)L.B * L.H * L.T * L.T;
    float *in = tu_fnew(L.len), *out1 = tu_fnew(no), *out2 = tu_fnew(no), *att = tu_fnew(na);
    fill_normal(in, L.len, 1, 60);
    k_attn_fwd_l(out1, att, in, &L);
    for (int b = 0; b < L.B; b++)
        for (int h = 0; h < L.H; h++)
            for (int t = 0; t < L.T; t++) {
                const float *row = att + (((size_t)b * L.H + h) * L.T + t) * L.T;
                double s = 0;
                for (int j = 0; j < L.T; j++) {
                    if (j > t)
                        assert_true(row[j] == 0.0f);
                    s += row[j];
                }
                assert_true(fabs(s - 1) < 1e-6);
            }
    for (int d = 0; d < L.Hk * L.D; d++) { /* perturb k and v of token (b0, t0) */
        in[L.ko + (size_t)(b0 * L.T + t0) * L.ldk + d] += 3.0f;
        in[L.vo + (size_t)(b0 * L.T + t0) * L.ldv + d] -= 2.0f;
    }
    k_attn_fwd_l(out2, att, in, &L);
    size_t row = (size_t)L.H * L.D;
    for (int b = 0; b < L.B; b++)
        for (int t = 0; t < L.T; t++) {
            const float *r1 = out1 + (b * L.T + t) * row, *r2 = out2 + (b * L.T + t) * row;
            if (b != b0 || t < t0)
                assert_memory_equal(r1, r2, row * sizeof(float));
            else
                assert_memory_not_equal(r1, r2, row * sizeof(float));
        }
    free(in), free(out1), free(out2), free(att);
}

/* ---- lm head + cross-entropy --------------------------------------------------- */

typedef struct {
    int N, C, V;
    double *x, *E;
    const int32_t *tgt;
} xent_ctx;

static double xent_loss(void *vc)
{
    xent_ctx *c = vc;
    return ref_xent(c->x, c->E, c->tgt, c->N, c->C, c->V);
}

/* dE[V,C] = sum over rows with tgt >= 0 of (softmax(x E^T) - onehot(tgt))^T x,
 * in double. */
static void ref_xent_dE(double *dE, const double *x, const double *E, const int32_t *tgt, int N,
                        int C, int V)
{
    double *p = tu_dnew(V);
    memset(dE, 0, (size_t)V * C * sizeof *dE);
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0)
            continue;
        double mx = ref_logits_row(p, x, E, n, C, V), sum = 0;
        for (int v = 0; v < V; v++)
            sum += p[v] = exp(p[v] - mx);
        for (int v = 0; v < V; v++) {
            double g = p[v] / sum - (v == tgt[n]);
            for (int c = 0; c < C; c++)
                dE[v * C + c] += g * x[n * C + c];
        }
    }
    free(p);
}

/* k_lmhead_xent_dw's dE, added onto 0.5 everywhere, against fdE (finite
 * differences of the loss in E, or the formula); its loss and dx are
 * k_lmhead_xent's bit for bit. */
static void check_xent_dE(const float *x, const float *E, const int32_t *tgt, int N, int C, int V,
                          int chunk, const double *fdE, float *scratch)
{
    float *dE = tu_fnew((size_t)V * C), *dx = tu_fnew((size_t)N * C), *dx0 = tu_fnew((size_t)N * C);
    double *got = tu_dnew((size_t)V * C);
    fill_const(dE, (size_t)V * C, 0.5f);
    double loss = k_lmhead_xent_dw(dx, dE, scratch, x, E, tgt, N, C, V, chunk);
    double loss0 = k_lmhead_xent(dx0, scratch, x, E, tgt, N, C, V, chunk);
    assert_true(loss == loss0);
    assert_memory_equal(dx, dx0, (size_t)N * C * sizeof(float));
    for (size_t k = 0; k < (size_t)V * C; k++)
        got[k] = (double)dE[k] - 0.5;
    double err = 0, ref = 0;
    for (size_t k = 0; k < (size_t)V * C; k++)
        err = fmax(err, fabs(got[k] - fdE[k])), ref = fmax(ref, fabs(fdE[k]));
    if (!(err <= 2e-5 * fmax(1.0, ref)))
        fail_msg("dE: max error %.3g against the reference (max |dE| %.3g), chunk %d", err, ref,
                 chunk);
    free(dE), free(dx), free(dx0), free(got);
}

/* Loss against the reference, dx against FD, ignored rows zero, for chunk sizes
 * 1, 3 (does not divide N), N, and larger than N. */
static void test_lmhead_xent(void **state)
{
    (void)state;
    enum { N = 7, C = 6, V = 11 };
    int32_t tgt[N] = {3, -1, 0, 10, 5, -1, 7};
    float *x = tu_fnew(N * C), *E = tu_fnew(V * C), *dx = tu_fnew(N * C);
    float *scratch = tu_fnew(k_lmhead_xent_scratch(16, C, V));
    fill_normal(x, N * C, 1, 70);
    fill_normal(E, V * C, 0.5f, 71);
    xent_ctx c = {N, C, V, tu_to_double(x, N * C), tu_to_double(E, V * C), tgt};
    double want = ref_xent(c.x, c.E, tgt, N, C, V), *fd = tu_dnew(N * C);
    tu_fd_grad(fd, c.x, N * C, xent_loss, &c);
    assert_true(want > 5.0); /* five rows of about log(11) each: the loss is not trivially 0 */

    int chunks[] = {1, 3, N, 16};
    for (int k = 0; k < 4; k++) {
        fill_const(dx, N * C, NAN);
        double loss = k_lmhead_xent(dx, scratch, x, E, tgt, N, C, V, chunks[k]);
        assert_true(fabs(loss - want) < FWD_TOL * want);
        assert_true(tu_rel_err_f(dx, fd, N * C) < GRAD_TOL);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)
                if (tgt[n] < 0)
                    assert_true(dx[n * C + i] == 0.0f);
        double loss2 = k_lmhead_xent(NULL, scratch, x, E, tgt, N, C, V, chunks[k]);
        assert_true(loss2 == loss); /* the gradient path does not change the loss */
    }
    double *fdE = tu_dnew(V * C);
    tu_fd_grad(fdE, c.E, V * C, xent_loss, &c);
    for (int k = 0; k < 4; k++)
        check_xent_dE(x, E, tgt, N, C, V, chunks[k], fdE, scratch);
    free(x), free(E), free(dx), free(scratch), free(c.x), free(c.E), free(fd), free(fdE);
}

/* A vocabulary that the kernel cuts into slices and tiles (V = 5000: 4 slices of
 * 3 tiles each), with logits that grow along the vocabulary so that the running
 * max of every row rises from tile to tile and the partial sums get rescaled;
 * loss and dx against the reference for several chunk sizes. */
static void test_lmhead_xent_tiles(void **state)
{
    (void)state;
    enum { N = 5, C = 4, V = 5000 };
    int32_t tgt[N] = {4999, 17, -1, 2600, 1250};
    float *x = tu_fnew(N * C), *E = tu_fnew(V * C), *dx = tu_fnew(N * C);
    float *scratch = tu_fnew(k_lmhead_xent_scratch(N, C, V));
    fill_normal(x, N * C, 1, 72);
    fill_normal(E, V * C, 0.5f, 73);
    for (int n = 0; n < N; n++)
        x[n * C] = 2.0f + (float)n; /* column 0 of E adds a ramp to every row's logits */
    for (int v = 0; v < V; v++)
        E[v * C] = 4.0f * (float)v / V;
    xent_ctx c = {N, C, V, tu_to_double(x, N * C), tu_to_double(E, V * C), tgt};
    double want = ref_xent(c.x, c.E, tgt, N, C, V), *fd = tu_dnew(N * C);
    tu_fd_grad(fd, c.x, N * C, xent_loss, &c);
    int chunks[] = {1, 2, N};
    for (int k = 0; k < 3; k++) {
        fill_const(dx, N * C, NAN);
        double loss = k_lmhead_xent(dx, scratch, x, E, tgt, N, C, V, chunks[k]);
        assert_true(fabs(loss - want) < FWD_TOL * want);
        assert_true(tu_rel_err_f(dx, fd, N * C) < GRAD_TOL);
        for (int i = 0; i < C; i++)
            assert_true(dx[2 * C + i] == 0.0f); /* the ignored row */
    }
    /* dE over every slice and tile (the rescaled running sums included),
     * against the formula in double: central differences over 20000 entries
     * of E would take seconds; test_lmhead_xent has them on a small head */
    double *fdE = tu_dnew(V * C);
    ref_xent_dE(fdE, c.x, c.E, tgt, N, C, V);
    check_xent_dE(x, E, tgt, N, C, V, 2, fdE, scratch);
    check_xent_dE(x, E, tgt, N, C, V, N, fdE, scratch);
    free(x), free(E), free(dx), free(scratch), free(c.x), free(c.E), free(fd), free(fdE);
}

/* k_xent_rows on whole logit rows (the bf16 head's): loss and gradient
 * softmax - onehot against double, rows with tgt -1 or >= V ignored (loss 0,
 * gradient 0).  k_xent_rows_bf16 gives the same loss bit for bit and the
 * gradient rounded to nearest even bf16 (this file's own rounding), bit for
 * bit.  V odd, so vector bodies and tails both run. */
static void test_xent_rows(void **state)
{
    (void)state;
    enum { M = 5, V = 37 };
    int32_t tgt[M] = {0, 36, -1, 12, V};
    float *L = tu_fnew(M * V), *L0 = tu_fnew(M * V), *Lb = tu_fnew(M * V);
    uint16_t G[M * V];
    fill_normal(L0, M * V, 3.0f, 90);
    memcpy(L, L0, sizeof(float) * M * V), memcpy(Lb, L0, sizeof(float) * M * V);
    double want = 0, loss = k_xent_rows(L, tgt, M, V, 1);
    for (int i = 0; i < M; i++) {
        int valid = tgt[i] >= 0 && tgt[i] < V;
        double mx = L0[i * V], s = 0;
        for (int v = 0; v < V; v++)
            mx = fmax(mx, L0[i * V + v]);
        for (int v = 0; v < V; v++)
            s += exp(L0[i * V + v] - mx);
        if (valid)
            want += mx + log(s) - L0[i * V + tgt[i]];
        for (int v = 0; v < V; v++) {
            double g = valid ? exp(L0[i * V + v] - mx) / s - (v == tgt[i]) : 0.0;
            assert_true(fabs(L[i * V + v] - g) < FWD_TOL);
        }
    }
    assert_true(fabs(loss - want) < FWD_TOL * want);
    assert_true(k_xent_rows_bf16(Lb, G, tgt, M, V) == loss);
    for (int i = 0; i < M * V; i++) {
        uint32_t u;
        memcpy(&u, &L[i], sizeof u);
        uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16; /* finite values only */
        assert_int_equal(G[i], rounded);
    }
    free(L), free(L0), free(Lb);
}

/* ---- thread-count independence ------------------------------------------------------- */

static void test_threads_attention(void **state)
{
    (void)state;
    attn_layout L = attn_fused(2, 130, 4, 2, 8); /* several causal blocks */
    size_t N = (size_t)L.B * L.T, no = N * L.H * L.D, na = (size_t)L.B * L.H * L.T * L.T;
    float *in = tu_fnew(L.len), *dy = tu_fnew(no), *scratch = tu_fnew(na);
    float *out[2] = {tu_fnew(no), tu_fnew(no)}, *att[2] = {tu_fnew(na), tu_fnew(na)};
    float *din[2] = {tu_fnew(L.len), tu_fnew(L.len)};
    fill_normal(in, L.len, 1, 80);
    fill_normal(dy, no, 1, 81);
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        k_attn_fwd_l(out[k], att[k], in, &L);
        k_attn_bwd_l(din[k], scratch, dy, in, att[k], &L);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(out[0], out[1], no * sizeof(float));
    assert_memory_equal(att[0], att[1], na * sizeof(float));
    assert_memory_equal(din[0], din[1], L.len * sizeof(float));
    for (int k = 0; k < 2; k++)
        free(out[k]), free(att[k]), free(din[k]);
    free(in), free(dy), free(scratch);
}

/* 1 and 2 threads give the same loss and dx, for chunks smaller and larger than
 * N; also checked against the double reference. */
static void check_threads_lmhead(int N, int C, int V)
{
    float *x = tu_fnew(N * C), *E = tu_fnew(V * C), *scratch = tu_fnew(k_lmhead_xent_scratch(N, C, V));
    float *dx[2] = {tu_fnew(N * C), tu_fnew(N * C)};
    int32_t *tgt = malloc(N * sizeof *tgt);
    fill_normal(x, N * C, 1, 90);
    fill_normal(E, V * C, 0.2f, 91);
    for (int n = 0; n < N; n++)
        tgt[n] = n % 7 == 3 ? -1 : (n * 37) % V;
    double *xd = tu_to_double(x, N * C), *Ed = tu_to_double(E, V * C);
    double want = ref_xent(xd, Ed, tgt, N, C, V);
    float *dE[2] = {tu_fnew((size_t)V * C), tu_fnew((size_t)V * C)};
    int saved = omp_get_max_threads(), chunks[] = {128, N};
    for (int c = 0; c < 2; c++) {
        double loss[2];
        for (int k = 0; k < 2; k++) {
            omp_set_num_threads(k + 1);
            fill_const(dE[k], (size_t)V * C, 0.0f);
            loss[k] = k_lmhead_xent_dw(dx[k], dE[k], scratch, x, E, tgt, N, C, V, chunks[c]);
        }
        omp_set_num_threads(saved);
        assert_true(loss[0] == loss[1]);
        assert_memory_equal(dx[0], dx[1], (size_t)N * C * sizeof(float));
        assert_memory_equal(dE[0], dE[1], (size_t)V * C * sizeof(float));
        assert_true(fabs(loss[0] - want) < FWD_TOL * want);
    }
    free(x), free(E), free(scratch), free(dx[0]), free(dx[1]), free(tgt), free(xd), free(Ed);
    free(dE[0]), free(dE[1]);
}

static void test_threads_lmhead(void **state)
{
    (void)state;
    check_threads_lmhead(300, 32, 500);
    check_threads_lmhead(40, 16, 5000); /* vocabulary slices and tiles */
}

/* Frozen linear (both layouts) and LoRA (adding into y, dx and writing them),
 * forward and backward, at shapes where
 * OpenBLAS's own threading would round differently (K = 500 spans two of its K
 * blocks; 300 rows span two output tiles). */
static void test_threads_linear_lora(void **state)
{
    (void)state;
    enum { N = 300, IN = 500, OUT = 300, R = 8 };
    float *x = tu_fnew(N * IN), *w = tu_fnew(IN * OUT), *b = tu_fnew(OUT), *dy = tu_fnew(N * OUT);
    float *A = tu_fnew(R * IN), *B = tu_fnew(OUT * R), *du = tu_fnew(N * R);
    float *scr = tu_fnew(k_lora_scratch(N, OUT, R));
    float *y[2], *dx[2], *u[2], *dA[2], *dB[2];
    fill_normal(x, N * IN, 1, 100);
    fill_normal(w, IN * OUT, 0.1f, 101);
    fill_normal(b, OUT, 1, 102);
    fill_normal(dy, N * OUT, 1, 103);
    fill_normal(A, R * IN, 0.1f, 104);
    fill_normal(B, OUT * R, 0.1f, 105);
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        y[k] = tu_fnew(3 * N * OUT), dx[k] = tu_fnew(3 * N * IN), u[k] = tu_fnew(N * R);
        dA[k] = tu_fnew(R * IN), dB[k] = tu_fnew(OUT * R);
        omp_set_num_threads(k + 1);
        for (int conv1d = 0; conv1d < 2; conv1d++) {
            k_linear_fwd(y[k] + conv1d * N * OUT, x, w, b, N, IN, OUT, conv1d);
            k_linear_bwd(dx[k] + conv1d * N * IN, dy, w, N, IN, OUT, conv1d, 0.0f);
        }
        k_lora_fwd(y[k], y[k], NULL, u[k], x, A, B, N, IN, OUT, R, 0.5f, scr, NULL);
        k_lora_bwd(dx[k], 1.0f, dA[k], dB[k], du, dy, x, u[k], A, B, N, IN, OUT, R, 0.5f, scr,
                   NULL);
        k_lora_fwd(y[k] + 2 * N * OUT, NULL, b, u[k], x, A, B, N, IN, OUT, R, 0.5f, scr, NULL);
        k_lora_bwd(dx[k] + 2 * N * IN, 0.0f, dA[k], dB[k], du, dy, x, u[k], A, B, N, IN, OUT, R,
                   0.5f, scr, NULL);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(y[0], y[1], 3 * N * OUT * sizeof(float));
    assert_memory_equal(dx[0], dx[1], 3 * N * IN * sizeof(float));
    assert_memory_equal(u[0], u[1], N * R * sizeof(float));
    assert_memory_equal(dA[0], dA[1], R * IN * sizeof(float));
    assert_memory_equal(dB[0], dB[1], OUT * R * sizeof(float));
    for (int k = 0; k < 2; k++)
        free(y[k]), free(dx[k]), free(u[k]), free(dA[k]), free(dB[k]);
    free(x), free(w), free(b), free(dy), free(A), free(B), free(du), free(scr);
}

/* vec_falloc: every buffer the kernels read as rows (the activations'
 * arena, the adapter parameters and gradients) starts on a 64-byte line,
 * small or large (large blocks are where malloc gives 16 past a line). */
static void test_falloc_aligned(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 15, 17, 1000, 1u << 20, 10u << 20, 50u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        float *p = vec_falloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        if (sizes[i])
            p[sizes[i] - 1] = 1.0f;   /* all n floats are there (ASan checks the end) */
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_embed_bwd),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_linear_torch),
        cmocka_unit_test(test_linear_conv1d),
        cmocka_unit_test(test_lora),
        cmocka_unit_test(test_lora_shapes),
        cmocka_unit_test(test_lora_group),
        cmocka_unit_test(test_lora_bf16),
        cmocka_unit_test(test_attention_mha_fused),
        cmocka_unit_test(test_attention_mha_separate),
        cmocka_unit_test(test_attention_gqa_separate),
        cmocka_unit_test(test_attention_gqa_fused),
        cmocka_unit_test(test_attention_causal),
        cmocka_unit_test(test_attention_blocks),
        cmocka_unit_test(test_lmhead_xent),
        cmocka_unit_test(test_lmhead_xent_tiles),
        cmocka_unit_test(test_xent_rows),
        cmocka_unit_test(test_threads_attention),
        cmocka_unit_test(test_threads_lmhead),
        cmocka_unit_test(test_threads_linear_lora),
        cmocka_unit_test(test_falloc_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
