/* kernels.c - see kernels.h (the LoRA's kernels are kernels_lora.c's).
 *
 * Matrix products go through cblas_sgemm (row-major).  Loops parallelise over
 * independent rows or (batch, head) blocks only, and every sum is formed by a
 * single thread in a fixed order, so results do not depend on the thread count.
 *
 * OpenBLAS's own threading does change the rounding with the thread count
 * (measured: a 300x64x500 sgemm differs in 2/3 of its outputs between 1 and 2
 * threads), so no product here is left to it: k_gemm cuts the output into
 * blocks fixed by the shape alone and runs one sgemm per block inside an OpenMP
 * region, where the OpenMP OpenBLAS runs single-threaded (omp_in_parallel).
 *
 * Elementwise loops are written so that the compiler vectorises them: exp by a
 * branch-free polynomial (vexp) instead of libm calls, and row sums in LANES
 * float accumulators, each taking every LANES-th element, added up pairwise and
 * flushed into a double every SUM_BLOCK elements (the order is fixed by the
 * index alone, whatever the vector width). */
#include "kernels.h"

#include <cblas.h>
#include <omp.h>
#include <math.h>
#include <string.h>

#include "bf16.h"
#include "kernels_impl.h"
#include "vec.h"

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f
#define SUM_BLOCK 1024   /* elements summed in float before the double flush */
#define GEMM_SMALL (1 << 20) /* multiply-adds below which a product runs as one call */
#define ATT_BLOCK 64     /* query rows per causal block of attention */
#define XENT_TILE 512    /* vocabulary columns per logit tile of the head */
#define XENT_SLICES 4    /* vocabulary slices of the head (large vocabularies) */
#define XENT_BLOCK 1024  /* most rows per pass of the head */

/* ---- vector math -------------------------------------------------------------- */

/* VEC (vec.h): the function is compiled for AVX-512, AVX2 and the baseline. */

/* exp(x) to about 2 ulp for x in [-87, 88] (clamped there: no inf, no denormal
 * result).  x = n ln2 + r with |r| <= ln2/2, n rounded by adding 1.5 * 2^23;
 * exp(r) by Cephes' expf polynomial; 2^n built from n's bits (no float-to-int
 * conversion).  NaN stays NaN.  Branch-free, so loops calling it vectorise. */
static inline float vexp(float x)
{
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * 1.44269504088896341f + 12582912.0f;
    float n = t - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
                 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * (r * r) +
              r + 1.0f;
    uint32_t tb, sb;
    float s;
    memcpy(&tb, &t, sizeof tb);
    sb = (tb - 0x4b400000u + 127u) << 23; /* t's low bits hold n */
    memcpy(&s, &sb, sizeof s);
    return p * s;
}

/* 1 / (1 + exp(-z)), with exp's argument kept <= 80 so that the result stays a
 * normal float (>= 1.8e-35) for very negative z. */
static inline float vsigmoid(float z)
{
    float e = -z > 80.0f ? 80.0f : -z;
    return 1.0f / (1.0f + vexp(e));
}

/* Largest element of x[0..n) (n >= 1).  A max does not round, so the vector
 * reduction's order does not matter. */
VEC static float row_max(const float *x, int n)
{
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int j = 0; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* The LANES accumulators summed pairwise (a fixed tree, vectorised). */
static inline float lanes_sum(float *acc)
{
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

/* Sum over x[0..n) of x[j] * (y ? y[j] : 1), in the fixed lane order above. */
VEC static double row_dot(const float *x, const float *y, int n)
{
    double total = 0;
    for (int b = 0; b < n; b += SUM_BLOCK) {
        int e = n - b < SUM_BLOCK ? n : b + SUM_BLOCK, j = b;
        float acc[LANES] = {0};
        if (y)
            for (; j + LANES <= e; j += LANES)
                for (int l = 0; l < LANES; l++)
                    acc[l] += x[j + l] * y[j + l];
        else
            for (; j + LANES <= e; j += LANES)
                for (int l = 0; l < LANES; l++)
                    acc[l] += x[j + l];
        double s = lanes_sum(acc);
        for (; j < e; j++)
            s += (double)x[j] * (y ? y[j] : 1.0f);
        total += s;
    }
    return total;
}

/* Sum over x[0..n) of (x[j] - m)^2, in the same order. */
VEC static double row_sqdev(const float *x, float m, int n)
{
    double total = 0;
    for (int b = 0; b < n; b += SUM_BLOCK) {
        int e = n - b < SUM_BLOCK ? n : b + SUM_BLOCK, j = b;
        float acc[LANES] = {0};
        for (; j + LANES <= e; j += LANES)
            for (int l = 0; l < LANES; l++) {
                float d = x[j + l] - m;
                acc[l] += d * d;
            }
        double s = lanes_sum(acc);
        for (; j < e; j++)
            s += ((double)x[j] - m) * ((double)x[j] - m);
        total += s;
    }
    return total;
}

/* In place on x[0..n): x = exp(x - m); returns the sum of the new values. */
/* x[j] = exp(x[j] - m) */
VEC static void row_exp_shift(float *x, float m, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++)
        x[j] = vexp(x[j] - m);
}

/* The same, returning the sum of the new x. */
VEC static double row_exp(float *x, float m, int n)
{
    row_exp_shift(x, m, n);
    return row_dot(x, NULL, n);
}

/* x[0..n) *= s */
VEC static void row_scale(float *x, float s, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++)
        x[j] *= s;
}

/* Elementwise layers run over spans of SPAN elements (or over rows) in
 * parallel, each span by one VEC function. */
#define SPAN 4096

static size_t spans(size_t n) { return (n + SPAN - 1) / SPAN; }
static size_t span_len(size_t n, size_t s) { return n - s * SPAN < SPAN ? n - s * SPAN : SPAN; }

/* b[k] = bf16(x[k]).  VEC16: the rounding is a few integer operations per
 * element on 16-bit results, so 512-bit vectors with AVX512BW run it
 * about 4x the "avx512f" clone's 256-bit code (docs/performance.md,
 * "Session 7"; 2-3x the baseline's before that, "f32->bf16"). */
VEC16 void k_bf16_row(uint16_t *b, const float *x, size_t n)
{
    for (size_t k = 0; k < n; k++)
        b[k] = bf16_from_f32(x[k]);
}

/* The *_bf16 variants of the layers below (kernels.h) run the plain
 * kernel's own row or span function, into the fp32 output or, when that is
 * not wanted, into a span of the thread's stack (SPAN floats, 64-byte
 * aligned like the model's buffers), and round that row or span right after
 * it, in the same iteration, while it is in L1.  Not in the registers of the
 * same loop: GCC contracts a*b+c into an FMA in some vector paths and not in
 * others, differently for a loop with a second store, so a fused loop would
 * not give the plain kernel's bits; calling the plain function does, by
 * construction. */
#define SPAN_TILE(name) float name[SPAN] __attribute__((aligned(64)))

/* A span function of one output and up to two inputs (b unused by some). */
typedef void span_fn(float *y, const float *a, const float *b, size_t n);

/* The loop of the one-output variants: y = f(a, b) over n elements (y NULL:
 * into the stack), rounded into yb span by span. */
static void spans_bf16(span_fn *f, float *y, uint16_t *yb, const float *a, const float *b,
                       size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++) {
        SPAN_TILE(tile);
        size_t o = s * SPAN, len = span_len(n, s);
        float *t = y ? y + o : tile;
        f(t, a + o, b ? b + o : NULL, len);
        k_bf16_row(yb + o, t, len);
    }
}

/* ---- matrix products ------------------------------------------------------------ */

/* How C's longer side (len) is cut: in two halves (a multiple of 16 long), so
 * that two threads get equal shares; small products stay whole.  Not finer:
 * each tile packs the uncut operand again, so more tiles cost more than two
 * threads gain (docs/performance.md, "Measurements behind the code's
 * choices").  Depends on the shape only. */
static int gemm_tiles(int len, double macs, int *tile)
{
    int nt = macs < GEMM_SMALL || len < 32 ? 1 : 2;
    *tile = ((len + nt - 1) / nt + 15) & ~15;
    return (len + *tile - 1) / *tile;
}

/* C[M,N] = alpha op(A) op(B) + beta C, row-major, cut into tiles of rows of C
 * (of columns when N > M) by gemm_tiles.  Each tile keeps the whole K sum in one
 * single-threaded sgemm call, so the result is the same for any thread count. */
void k_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
            const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    int by_rows = M >= N, len = by_rows ? M : N, tile;
    int nt = gemm_tiles(len, (double)M * N * K, &tile);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < nt; t++) {
        int o = t * tile, n = len - o < tile ? len - o : tile;
        if (by_rows)
            cblas_sgemm(CblasRowMajor, ta, tb, n, N, K, alpha,
                        ta == CblasNoTrans ? A + (size_t)o * lda : A + o, lda, B, ldb, beta,
                        C + (size_t)o * ldc, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda,
                        tb == CblasNoTrans ? B + o : B + (size_t)o * ldb, ldb, beta, C + o, ldc);
    }
}

/* ---- GPT-2 layers ------------------------------------------------------------------ */

/* x[n,:] = wte[inp[n],:] + wpe[n % T,:]; shapes x [N,C], wte [V,C], wpe [T,C]. */
void k_embed_fwd(float *x, const int32_t *inp, const float *wte, const float *wpe, int N, int T,
                 int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *xr = x + (size_t)n * C;
        const float *er = wte + (size_t)inp[n] * C;
        if (wpe) {
            const float *pr = wpe + (size_t)(n % T) * C;
#pragma omp simd
            for (int c = 0; c < C; c++)
                xr[c] = er[c] + pr[c];
        } else {
            memcpy(xr, er, (size_t)C * sizeof *xr);
        }
    }
}

void k_embed_bwd(float *dwte, float *dwpe, const float *dx, const int32_t *inp, int N, int T, int C)
{
    /* rows in order (two rows may share a token): parallel over channels only */
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 64) {
        int c1 = C - c0 < 64 ? C : c0 + 64;
        for (int n = 0; n < N; n++) {
            const float *g = dx + (size_t)n * C;
            float *e = dwte ? dwte + (size_t)inp[n] * C : NULL;
            float *p = dwpe ? dwpe + (size_t)(n % T) * C : NULL;
            for (int c = c0; c < c1 && e; c++)
                e[c] += g[c];
            for (int c = c0; c < c1 && p; c++)
                p[c] += g[c];
        }
    }
}

/* One row: mean, population variance (float lanes, double totals), rstd =
 * 1/sqrt(var+eps), y = (x - mean) * rstd * w + b. */
VEC static void layernorm_row(float *y, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int C, float eps)
{
    float m = (float)(row_dot(x, NULL, C) / C);
    float r = (float)(1.0 / sqrt(row_sqdev(x, m, C) / C + eps));
#pragma omp simd
    for (int c = 0; c < C; c++)
        y[c] = (x[c] - m) * r * w[c] + b[c];
    *mean = m;
    *rstd = r;
}

void k_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        layernorm_row(y + (size_t)n * C, mean + n, rstd + n, x + (size_t)n * C, w, b, C, eps);
}

void k_layernorm_fwd_bf16(float *y, uint16_t *yb, float *mean, float *rstd, const float *x,
                          const float *w, const float *b, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        layernorm_row(y + o, mean + n, rstd + n, x + o, w, b, C, eps);
        k_bf16_row(yb + o, y + o, (size_t)C);
    }
}

/* One row, with g = w * dy and xhat = (x - mean) * rstd:
 * dx += rstd * (g - mean(g) - xhat * mean(g * xhat))   (llm.c's form). */
VEC static void layernorm_bwd_row(float *dx, const float *dy, const float *x, float m, float r,
                                  const float *w, int C)
{
    float acc_g[LANES] = {0}, acc_gx[LANES] = {0};
    double sg = 0, sgx = 0;
    int c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int l = 0; l < LANES; l++) {
            float g = w[c + l] * dy[c + l];
            acc_g[l] += g;
            acc_gx[l] += g * ((x[c + l] - m) * r);
        }
    sg = lanes_sum(acc_g), sgx = lanes_sum(acc_gx);
    for (; c < C; c++) {
        float g = w[c] * dy[c];
        sg += g;
        sgx += (double)g * ((x[c] - m) * r);
    }
    float mg = (float)(sg / C), mgx = (float)(sgx / C);
#pragma omp simd
    for (int k = 0; k < C; k++) {
        float xhat = (x[k] - m) * r;
        dx[k] += r * (w[k] * dy[k] - mg - xhat * mgx);
    }
}

void k_layernorm_bwd(float *dx, const float *dy, const float *x, const float *mean,
                     const float *rstd, const float *w, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        layernorm_bwd_row(dx + (size_t)n * C, dy + (size_t)n * C, x + (size_t)n * C, mean[n],
                          rstd[n], w, C);
}

void k_layernorm_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *w, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        layernorm_bwd_row(dx + o, dy + o, x + o, mean[n], rstd[n], w, C);
        k_bf16_row(dxb + o, dx + o, (size_t)C);
    }
}

/* y = 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3). */
VEC static void gelu_span(float *y, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float u = GELU_C * (xi + GELU_A * xi * xi * xi);
        y[i] = xi * vsigmoid(2.0f * u);
    }
}

void k_gelu_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++)
        gelu_span(y + s * SPAN, x + s * SPAN, span_len(n, s));
}

/* gelu_span as a span_fn */
static void gelu_span_fn(float *y, const float *x, const float *unused, size_t n)
{
    (void)unused;
    gelu_span(y, x, n);
}

void k_gelu_fwd_bf16(float *y, uint16_t *yb, const float *x, size_t n)
{
    spans_bf16(gelu_span_fn, y, yb, x, NULL, n);
}

/* With s = sigmoid(2u): gelu'(x) = s + 2 x s (1 - s) du/dx,
 * du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)  (the tanh form, rewritten). */
VEC static void gelu_bwd_span(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float s = vsigmoid(2.0f * GELU_C * (xi + GELU_A * xi * xi * xi));
        float du = GELU_C * (1.0f + 3.0f * GELU_A * xi * xi);
        dx[i] = dy[i] * (s + 2.0f * xi * s * (1.0f - s) * du);
    }
}

void k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++)
        gelu_bwd_span(dx + s * SPAN, dy + s * SPAN, x + s * SPAN, span_len(n, s));
}

void k_gelu_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x, size_t n)
{
    spans_bf16(gelu_bwd_span, dx, dxb, dy, x, n);
}

/* y = res + b (either may be NULL; y may be res): the start of a product
 * added with beta 1. */
VEC static void linear_init_row(float *y, const float *res, const float *b, int out)
{
    if (res && b) {
#pragma omp simd
        for (int o = 0; o < out; o++)
            y[o] = res[o] + b[o];
    } else if (b) {
        memcpy(y, b, (size_t)out * sizeof *y);
    } else if (res && res != y) {
        memcpy(y, res, (size_t)out * sizeof *y);
    }
}

/* y[N,out] = res + x[N,in] W^T + b: W [out,in] read transposed (conv1d 0) or
 * W [in,out] read as it lies (conv1d 1); no transposed copy either way.  y is
 * filled with res + b first and the product added (beta 1: OpenBLAS then skips
 * its own pass over y). */
void k_linear_fwd_res(float *y, const float *res, const float *x, const float *w, const float *b,
                      int N, int in, int out, int conv1d)
{
    if (b || (res && res != y)) {   /* y = res alone: already in place */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            linear_init_row(y + (size_t)n * out, res ? res + (size_t)n * out : NULL, b, out);
    }
    k_gemm(CblasNoTrans, conv1d ? CblasNoTrans : CblasTrans, N, out, in, 1.0f, x, in, w,
               conv1d ? out : in, res || b ? 1.0f : 0.0f, y, out);
}

void k_linear_fwd(float *y, const float *x, const float *w, const float *b, int N, int in, int out,
                  int conv1d)
{
    k_linear_fwd_res(y, NULL, x, w, b, N, in, out, conv1d);
}

/* dx[N,in] = beta dx + dy[N,out] W (W [out,in]), or dy W^T when W is [in,out]. */
void k_linear_bwd(float *dx, const float *dy, const float *w, int N, int in, int out, int conv1d,
                  float beta)
{
    k_gemm(CblasNoTrans, conv1d ? CblasTrans : CblasNoTrans, N, in, out, 1.0f, dy, out, w,
               conv1d ? out : in, beta, dx, in);
}

/* dW += dy^T x as one product (k_gemm: tiles fixed by the shape), db by
 * columns: db[j] += sum over rows in order. */
void k_linear_bwd_w(float *dw, float *db, const float *dy, const float *x, int N, int in, int out,
                    int conv1d)
{
    if (conv1d)
        k_gemm(CblasTrans, CblasNoTrans, in, out, N, 1.0f, x, in, dy, out, 1.0f, dw, out);
    else
        k_gemm(CblasTrans, CblasNoTrans, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (!db)
        return;
#pragma omp parallel for schedule(static)
    for (int j = 0; j < out; j++) {
        double acc = 0;
        for (int n = 0; n < N; n++)
            acc += dy[(size_t)n * out + j];
        db[j] += (float)acc;
    }
}

/* ---- attention ------------------------------------------------------------------ */

void k_attention_softmax_row(float *row, int n, int w)
{
    float inv = (float)(1.0 / row_exp(row, row_max(row, n), n));
    row_scale(row, inv, n);
    memset(row + n, 0, (size_t)(w - n) * sizeof *row);
}

/* g[j] = bf16(x[j] * s) (VEC16, as k_bf16_row: one multiply, then integers) */
VEC16 static void row_scale_bf16(uint16_t *g, const float *x, float s, int n)
{
    for (int j = 0; j < n; j++)
        g[j] = bf16_from_f32(x[j] * s);
}

void k_attention_softmax_row_bf16(uint16_t *p, float *row, int n, int w)
{
    float inv = (float)(1.0 / row_exp(row, row_max(row, n), n));
    row_scale_bf16(p, row, inv, n);
    memset(p + n, 0, (size_t)(w - n) * sizeof *p);
}

/* Rows t0..t1-1 of the scores S [T,T], filled for columns 0..t1-1: row t becomes
 * softmax(S[t,0..t]) with zeros up to column T-1. */
static void attn_softmax_rows(float *S, int T, int t0, int t1)
{
    for (int t = t0; t < t1; t++)
        k_attention_softmax_row(S + (size_t)t * T, t + 1, T);
}

/* Per (b, h): att = causal_softmax(q_h k_g^T / sqrt(D)) [T,T]; out_h = att v_g with
 * g = h / (H/Hk); out_h is the column block h*D of out [N, H*D].  The rows go in
 * blocks of ATT_BLOCK: block [t0, t1) needs the keys and values 0..t1-1 only. */
void k_attention_fwd(float *out, float *att, const float *q, const float *k, const float *v, int B,
                     int T, int H, int Hk, int D, int ldq, int ldk, int ldv)
{
    int group = H / Hk, ldo = H * D;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            int g = h / group;
            const float *qh = q + (size_t)b * T * ldq + (size_t)h * D;
            const float *kg = k + (size_t)b * T * ldk + (size_t)g * D;
            const float *vg = v + (size_t)b * T * ldv + (size_t)g * D;
            float *P = att + ((size_t)b * H + h) * T * T;
            float *oh = out + (size_t)b * T * ldo + (size_t)h * D;
            for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
                int t1 = T - t0 < ATT_BLOCK ? T : t0 + ATT_BLOCK, m = t1 - t0;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, t1, D, scale,
                            qh + (size_t)t0 * ldq, ldq, kg, ldk, 0.0f, P + (size_t)t0 * T, T);
                attn_softmax_rows(P, T, t0, t1);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, t1, 1.0f,
                            P + (size_t)t0 * T, T, vg, ldv, 0.0f, oh + (size_t)t0 * ldo, ldo);
            }
        }
    }
}

float k_attention_softmax_bwd_sum(const float *dr, const float *pr, int n)
{
    return (float)row_dot(dr, pr, n);
}

void k_attention_softmax_bwd_row(float *dr, const float *pr, int n, int w, float scale)
{
    float fr = k_attention_softmax_bwd_sum(dr, pr, n);
#pragma omp simd
    for (int j = 0; j < n; j++)
        dr[j] = pr[j] * (dr[j] - fr) * scale;
    for (int j = n; j < w; j++)
        dr[j] = 0.0f;
}

/* Rows t0..t1-1 of dP [T,T] (columns 0..t1-1 filled), in place:
 * dS = P * (dP - rowsum(dP * P)) * scale, zero where P is masked (j > t). */
static void attn_softmax_bwd_rows(float *dP, const float *P, int T, int t0, int t1, float scale)
{
    for (int t = t0; t < t1; t++)
        k_attention_softmax_bwd_row(dP + (size_t)t * T, P + (size_t)t * T, t + 1, t1, scale);
}

/* One (b, query head h) of the backward, blocks as in the forward:
 * row block [t0,t1):  dP = dout_h v_g^T (columns < t1);  dS;  dq_h = dS k_g;
 * column block [j0,j1): dk_g (+)= dS[j0.., j0..j1)^T q_h[j0..];
 *                      dv_g (+)= P[j0.., j0..j1)^T dout_h[j0..]   (beta 0 overwrites). */
static void attn_bwd_head(float *dq, float *dk, float *dv, float *dS, const float *dout,
                          const float *q, const float *k, const float *v, const float *P, int T,
                          int D, int ldq, int ldk, int ldv, int ldo, float scale, float beta)
{
    for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
        int t1 = T - t0 < ATT_BLOCK ? T : t0 + ATT_BLOCK, m = t1 - t0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, t1, D, 1.0f,
                    dout + (size_t)t0 * ldo, ldo, v, ldv, 0.0f, dS + (size_t)t0 * T, T);
        attn_softmax_bwd_rows(dS, P, T, t0, t1, scale);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, t1, 1.0f,
                    dS + (size_t)t0 * T, T, k, ldk, 0.0f, dq + (size_t)t0 * ldq, ldq);
    }
    for (int j0 = 0; j0 < T; j0 += ATT_BLOCK) {
        int j1 = T - j0 < ATT_BLOCK ? T : j0 + ATT_BLOCK, m = j1 - j0, rows = T - j0;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, D, rows, 1.0f,
                    dS + (size_t)j0 * T + j0, T, q + (size_t)j0 * ldq, ldq, beta,
                    dk + (size_t)j0 * ldk, ldk);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, D, rows, 1.0f,
                    P + (size_t)j0 * T + j0, T, dout + (size_t)j0 * ldo, ldo, beta,
                    dv + (size_t)j0 * ldv, ldv);
    }
}

/* Per (b, kv head g), one thread walks the query heads h of the group in order
 * (attn_bwd_head); the first head overwrites dk_g, dv_g, the others add. */
void k_attention_bwd(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                     const float *q, const float *k, const float *v, const float *att, int B, int T,
                     int H, int Hk, int D, int ldq, int ldk, int ldv)
{
    int group = H / Hk, ldo = H * D;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int g = 0; g < Hk; g++) {
            size_t kofs = (size_t)b * T * ldk + (size_t)g * D;
            size_t vofs = (size_t)b * T * ldv + (size_t)g * D;
            for (int i = 0; i < group; i++) {
                int h = g * group + i;
                size_t qofs = (size_t)b * T * ldq + (size_t)h * D;
                size_t aofs = ((size_t)b * H + h) * T * T;
                attn_bwd_head(dq + qofs, dk + kofs, dv + vofs, scratch + aofs,
                              dout + (size_t)b * T * ldo + (size_t)h * D, q + qofs, k + kofs,
                              v + vofs, att + aofs, T, D, ldq, ldk, ldv, ldo, scale,
                              i == 0 ? 0.0f : 1.0f);
            }
        }
    }
}

/* ---- lm head + cross-entropy ------------------------------------------------------ */

/* The head never holds a row's V logits at once.  The vocabulary is cut into
 * `slices` (fixed by V) and each slice into tiles of XENT_TILE columns.  One
 * thread walks a slice tile by tile, with a running max per row (as in
 * flash attention):
 *   L = x E_t^T                       [m, tile]  (sgemm; stays in cache)
 *   M' = max(M, rowmax L);  rescale S and acc by exp(M - M');  M = M'
 *   L = exp(L - M);  S += rowsum L;   acc += L E_t   [m, C] (sgemm, beta 1)
 * and the slices are then merged in order, per row:
 *   M = max_s M_s,  S = sum_s S_s exp(M_s - M),  loss = M + log S - logit[tgt]
 *   dx = sum_s acc_s exp(M_s - M) / S - E[tgt]
 * so E is read once per pass over the rows and the logits never leave the
 * cache.  Nothing depends on the thread count. */

typedef struct {
    int slices, width; /* vocabulary slices, columns per slice (multiple of 16) */
} xent_split;

static xent_split xent_split_of(int V)
{
    xent_split x;
    x.slices = V >= XENT_SLICES * XENT_TILE ? XENT_SLICES : 1;
    x.width = ((V + x.slices - 1) / x.slices + 15) & ~15;
    return x;
}

/* The scratch of one slice for m rows: M, S (m doubles each), the target
 * logits (m floats), one logit tile [m, XENT_TILE] and acc [m, C], each part
 * 16-float aligned. */
typedef struct {
    double *M, *S;
    float *lt, *L, *acc;
} xent_slice_mem;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

static size_t xent_slice_floats(int m, int C)
{
    return round16(5 * (size_t)m) + round16((size_t)m * XENT_TILE) + round16((size_t)m * C);
}

static xent_slice_mem xent_slice_at(float *scratch, int s, int m, int C)
{
    float *b = scratch + s * xent_slice_floats(m, C);
    xent_slice_mem r = {(double *)b, (double *)b + m, b + 4 * (size_t)m, NULL, NULL};
    r.L = b + round16(5 * (size_t)m);
    r.acc = r.L + round16((size_t)m * XENT_TILE);
    return r;
}

size_t k_lmhead_xent_scratch(int chunk, int C, int V)
{
    return (size_t)xent_split_of(V).slices * xent_slice_floats(chunk, C);
}

/* The logit tile L [m, n] = x E_t^T of vocabulary columns [t0, t0 + n);
 * returns E_t. */
static const float *xent_tile(float *L, const float *x, const float *E, int m, int C, int t0, int n)
{
    const float *Et = E + (size_t)t0 * C;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, C, 1.0f, x, C, Et, C, 0.0f, L, n);
    return Et;
}

/* One slice [o, o + w) of the vocabulary for the rows x [m, C] (see above):
 * leaves M, S, the target logits that fall in the slice, and with grad acc. */
static void xent_slice(xent_slice_mem z, const float *x, const float *E, const int32_t *tgt,
                       int m, int C, int o, int w, int grad)
{
    double *M = z.M, *S = z.S;
    float *lt = z.lt, *L = z.L, *acc = z.acc;
    for (int i = 0; i < m; i++)
        M[i] = -INFINITY, S[i] = 0.0, lt[i] = 0.0f;
    for (int t0 = o; t0 < o + w; t0 += XENT_TILE) {
        int n = o + w - t0 < XENT_TILE ? o + w - t0 : XENT_TILE;
        const float *Et = xent_tile(L, x, E, m, C, t0, n);
        for (int i = 0; i < m; i++) {
            float *row = L + (size_t)i * n;
            if (tgt[i] >= t0 && tgt[i] < t0 + n)
                lt[i] = row[tgt[i] - t0];
            double mt = row_max(row, n);
            if (mt > M[i]) {
                if (M[i] > -INFINITY) {
                    float f = vexp((float)(M[i] - mt));
                    S[i] *= f;
                    if (grad && t0 > o)
                        row_scale(acc + (size_t)i * C, f, C);
                }
                M[i] = mt;
            }
            S[i] += row_exp(row, (float)M[i], n);
        }
        if (grad)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, n, 1.0f, L, n, Et, C,
                        t0 > o ? 1.0f : 0.0f, acc, C);
    }
}

/* Row i of the merge: its loss (0 when tgt is out of [0, V)) and, with dx, its
 * gradient row; *lse its log-sum-exp (NAN for an ignored row).  Targets >= V
 * count as ignored to stay in bounds; the data layer rejects them. */
static double xent_merge_row(float *dx, double *lse, float *scratch, const float *E, int32_t tgt,
                             int i, int m, int C, int V, xent_split sp)
{
    double M = -INFINITY, S = 0.0, w[XENT_SLICES];
    *lse = NAN;
    if (tgt < 0 || tgt >= V) {
        if (dx)
            memset(dx, 0, (size_t)C * sizeof *dx);
        return 0.0;
    }
    for (int s = 0; s < sp.slices; s++)
        M = fmax(M, xent_slice_at(scratch, s, m, C).M[i]);
    for (int s = 0; s < sp.slices; s++) {
        xent_slice_mem z = xent_slice_at(scratch, s, m, C);
        w[s] = exp(z.M[i] - M);
        S += z.S[i] * w[s];
    }
    if (dx) {
        const float *e = E + (size_t)tgt * C;
        for (int s = 0; s < sp.slices; s++) {
            const float *a = xent_slice_at(scratch, s, m, C).acc + (size_t)i * C;
            float f = (float)(w[s] / S);
            if (s == 0) {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    dx[c] = a[c] * f - e[c];
            } else {
#pragma omp simd
                for (int c = 0; c < C; c++)
                    dx[c] += a[c] * f;
            }
        }
    }
    *lse = M + log(S);
    return *lse - (double)xent_slice_at(scratch, tgt / sp.width, m, C).lt[i];
}

/* The slice [o, o + w) of dE for the rows x [m, C] whose log-sum-exp is lse:
 * per tile L = x E_t^T, G = exp(L - lse) - onehot(tgt) (0 on ignored rows),
 * dE_t += G^T x. */
static void xent_slice_dw(float *dE, float *L, const float *x, const float *E, const int32_t *tgt,
                          const double *lse, int m, int C, int o, int w)
{
    for (int t0 = o; t0 < o + w; t0 += XENT_TILE) {
        int n = o + w - t0 < XENT_TILE ? o + w - t0 : XENT_TILE;
        xent_tile(L, x, E, m, C, t0, n);
        for (int i = 0; i < m; i++) {
            float *row = L + (size_t)i * n;
            if (isnan(lse[i])) {
                memset(row, 0, (size_t)n * sizeof *row);
                continue;
            }
            row_exp_shift(row, (float)lse[i], n);   /* softmax, lse rounded to float */
            if (tgt[i] >= t0 && tgt[i] < t0 + n)
                row[tgt[i] - t0] -= 1.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, C, m, 1.0f, L, n, x, C, 1.0f,
                    dE + (size_t)t0 * C, C);
    }
}

/* The rows [0, m) of the head (see above); adds their losses to *loss in row
 * order, and with dE the rows' part of the head's gradient.  row_loss, lse:
 * m doubles. */
static void xent_chunk(double *loss, double *row_loss, double *lse, float *dx, float *dE,
                       float *scratch, const float *x, const float *E, const int32_t *tgt, int m,
                       int C, int V)
{
    xent_split sp = xent_split_of(V);
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int s = 0; s < sp.slices; s++) {
            int o = s * sp.width, w = V - o < sp.width ? V - o : sp.width;
            xent_slice(xent_slice_at(scratch, s, m, C), x, E, tgt, m, C, o, w, dx != NULL);
        }
#pragma omp for schedule(static)
        for (int i = 0; i < m; i++)
            row_loss[i] = xent_merge_row(dx ? dx + (size_t)i * C : NULL, &lse[i], scratch, E,
                                         tgt[i], i, m, C, V, sp);
        if (dE) {
#pragma omp for schedule(static)
            for (int s = 0; s < sp.slices; s++) {
                int o = s * sp.width, w = V - o < sp.width ? V - o : sp.width;
                xent_slice_dw(dE, xent_slice_at(scratch, s, m, C).L, x, E, tgt, lse, m, C, o, w);
            }
        }
    }
    for (int i = 0; i < m; i++)
        *loss += row_loss[i];
}

/* The rows in chunks of `chunk` (xent_chunk each); the row losses are kept in
 * blocks of XENT_BLOCK on the stack. */
double k_lmhead_xent_dw(float *dx, float *dE, float *scratch, const float *x, const float *E,
                        const int32_t *tgt, int N, int C, int V, int chunk)
{
    double loss = 0.0, row_loss[XENT_BLOCK], lse[XENT_BLOCK];
    if (chunk < 1)
        chunk = 1;
    if (chunk > XENT_BLOCK)
        chunk = XENT_BLOCK;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int m = N - n0 < chunk ? N - n0 : chunk;
        xent_chunk(&loss, row_loss, lse, dx ? dx + (size_t)n0 * C : NULL, dE, scratch,
                   x + (size_t)n0 * C, E, tgt + n0, m, C, V);
    }
    return loss;
}

double k_lmhead_xent(float *dx, float *scratch, const float *x, const float *E, const int32_t *tgt,
                     int N, int C, int V, int chunk)
{
    return k_lmhead_xent_dw(dx, NULL, scratch, x, E, tgt, N, C, V, chunk);
}

/* y[i] += a[i] */
VEC static void add_span(float *y, const float *a, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++)
        y[i] += a[i];
}

void k_add(float *y, const float *a, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++)
        add_span(y + s * SPAN, a + s * SPAN, span_len(n, s));
}

/* ---- Llama family ---------------------------------------------------------- */

/* One row: ms = mean(x^2) (float lanes, double totals), rstd = 1/sqrt(ms + eps),
 * y = x rstd w. */
VEC static void rmsnorm_row(float *y, float *rstd, const float *x, const float *w, int C, float eps)
{
    float r = (float)(1.0 / sqrt(row_dot(x, x, C) / C + eps));
#pragma omp simd
    for (int c = 0; c < C; c++)
        y[c] = x[c] * r * w[c];
    *rstd = r;
}

void k_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rmsnorm_row(y + (size_t)n * C, rstd + n, x + (size_t)n * C, w, C, eps);
}

void k_rmsnorm_fwd_bf16(float *y, uint16_t *yb, float *rstd, const float *x, const float *w,
                        int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        rmsnorm_row(y + o, rstd + n, x + o, w, C, eps);
        k_bf16_row(yb + o, y + o, (size_t)C);
    }
}

/* One row, with g = w dy: dx += rstd g - x rstd^3 mean(g x)  (d rstd/dx_j = -x_j rstd^3 / C). */
VEC static void rmsnorm_bwd_row(float *dx, const float *dy, const float *x, float r,
                                const float *w, int C)
{
    float acc[LANES] = {0};
    double sgx = 0;
    int c = 0;
    for (; c + LANES <= C; c += LANES)
        for (int l = 0; l < LANES; l++)
            acc[l] += (w[c + l] * dy[c + l]) * x[c + l];
    sgx = lanes_sum(acc);
    for (; c < C; c++)
        sgx += (double)(w[c] * dy[c]) * x[c];
    float k = (float)(sgx / C) * r * r * r;
#pragma omp simd
    for (int j = 0; j < C; j++)
        dx[j] += r * w[j] * dy[j] - x[j] * k;
}

void k_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *rstd, const float *w,
                   int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rmsnorm_bwd_row(dx + (size_t)n * C, dy + (size_t)n * C, x + (size_t)n * C, rstd[n], w, C);
}

void k_rmsnorm_bwd_bf16(float *dx, uint16_t *dxb, const float *dy, const float *x,
                        const float *rstd, const float *w, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        rmsnorm_bwd_row(dx + o, dy + o, x + o, rstd[n], w, C);
        k_bf16_row(dxb + o, dx + o, (size_t)C);
    }
}

void k_layernorm_bwd_wb(float *dw, float *db, const float *dy, const float *x, const float *mean,
                        const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int j = 0; j < C; j++) {
        double aw = 0, ab = 0;
        for (int n = 0; n < N; n++) {
            size_t k = (size_t)n * C + j;
            aw += (double)dy[k] * ((x[k] - mean[n]) * rstd[n]);
            ab += dy[k];
        }
        if (dw)
            dw[j] += (float)aw;
        if (db)
            db[j] += (float)ab;
    }
}

void k_rmsnorm_bwd_w(float *dw, const float *dy, const float *x, const float *rstd, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int j = 0; j < C; j++) {
        double acc = 0;
        for (int n = 0; n < N; n++)
            acc += (double)dy[(size_t)n * C + j] * x[(size_t)n * C + j] * rstd[n];
        dw[j] += (float)acc;
    }
}

/* As transformers computes it in float32: inv_freq = 1 / theta^(2i/D) rounded to
 * float, angle = float(t) * inv_freq rounded to float; cos and sin of that angle. */
void k_rope_table(float *cs, float *sn, int T, int D, double theta)
{
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        float inv = (float)(1.0 / pow(theta, (double)(float)(2 * i) / D));
        for (int t = 0; t < T; t++) {
            float ang = (float)t * inv;
            cs[(size_t)t * half + i] = (float)cos((double)ang);
            sn[(size_t)t * half + i] = (float)sin((double)ang);
        }
    }
}

/* Rotates the pairs (i, i + D/2) of every head of row x (position t) by
 * +angle (dir 1) or -angle (dir -1, the transpose, for the backward). */
static inline void rope_row(float *x, const float *cs, const float *sn, int t, int nh, int D,
                            float dir)
{
    int half = D / 2;
    const float *c = cs + (size_t)t * half, *s = sn + (size_t)t * half;
    for (int h = 0; h < nh; h++) {
        float *a = x + (size_t)h * D, *b = a + half;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float lo = a[i], hi = b[i], si = dir * s[i];
            a[i] = lo * c[i] - hi * si;
            b[i] = hi * c[i] + lo * si;
        }
    }
}

/* rope_row on every row of x [N, ld]; with xb, each row then rounded into
 * xb [N, nh*D]. */
static void rope_rotate(float *x, uint16_t *xb, const float *cs, const float *sn, int N, int T,
                        int nh, int D, int ld, float dir)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        rope_row(x + (size_t)n * ld, cs, sn, n % T, nh, D, dir);
        if (xb)
            k_bf16_row(xb + (size_t)n * nh * D, x + (size_t)n * ld, (size_t)nh * D);
    }
}

void k_rope_fwd(float *x, const float *cs, const float *sn, int N, int T, int nh, int D, int ld)
{
    rope_rotate(x, NULL, cs, sn, N, T, nh, D, ld, 1.0f);
}

/* d(lo) = dlo cos + dhi sin, d(hi) = dhi cos - dlo sin: the rotation by -angle. */
void k_rope_bwd(float *dx, const float *cs, const float *sn, int N, int T, int nh, int D, int ld)
{
    rope_rotate(dx, NULL, cs, sn, N, T, nh, D, ld, -1.0f);
}

void k_rope_bwd_bf16(float *dx, uint16_t *dxb, const float *cs, const float *sn, int N, int T,
                     int nh, int D, int ld)
{
    rope_rotate(dx, dxb, cs, sn, N, T, nh, D, ld, -1.0f);
}

/* y = g sigmoid(g) u. */
VEC void k_swiglu_span(float *y, const float *gate, const float *up, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        y[i] = g * vsigmoid(g) * up[i];
    }
}

void k_swiglu_fwd(float *y, const float *gate, const float *up, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++)
        k_swiglu_span(y + s * SPAN, gate + s * SPAN, up + s * SPAN, span_len(n, s));
}

void k_swiglu_fwd_bf16(float *y, uint16_t *yb, const float *gate, const float *up, size_t n)
{
    spans_bf16(k_swiglu_span, y, yb, gate, up, n);
}

/* s = sigmoid(g): dgate = dy u s (1 + g (1 - s)), dup = dy g s; dy read before dgate is written. */
#define SWIGLU_BWD_EL(i)                                      \
    float g = gate[i], d = dy[i], s = vsigmoid(g);            \
    dup[i] = d * g * s;                                       \
    dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s))

VEC void k_swiglu_bwd_span(float *dgate, float *dup, const float *dy, const float *gate,
                           const float *up, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        SWIGLU_BWD_EL(i);
    }
}

/* The same, and act = g s u (k_swiglu_span's value, the same bits) from the
 * sigmoid it computes anyway. */
VEC void k_swiglu_bwd_act_span(float *dgate, float *dup, float *act, const float *dy,
                               const float *gate, const float *up, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        SWIGLU_BWD_EL(i);
        act[i] = g * s * up[i];
    }
}

void k_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                  size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++)
        k_swiglu_bwd_span(dgate + s * SPAN, dup + s * SPAN, dy + s * SPAN, gate + s * SPAN,
                        up + s * SPAN, span_len(n, s));
}

void k_swiglu_bwd_bf16(float *dgate, float *dup, uint16_t *dgb, uint16_t *dub, const float *dy,
                       const float *gate, const float *up, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < spans(n); s++) {
        SPAN_TILE(tg);
        SPAN_TILE(tu);
        size_t o = s * SPAN, len = span_len(n, s);
        float *g = dgate ? dgate + o : tg, *u = dgate ? dup + o : tu;
        k_swiglu_bwd_span(g, u, dy + o, gate + o, up + o, len);
        k_bf16_row(dgb + o, g, len);
        k_bf16_row(dub + o, u, len);
    }
}

/* ---- cross-entropy over whole logit rows (the bf16 head) ------------------- */

#define XENT_ROWS_BLOCK 256 /* row losses kept on the stack per block */

/* One row of k_xent_rows: loss = M + log S - L[t] with M = max L, S = sum exp(L - M);
 * with grad the row becomes exp(L - M) / S - onehot(t). */
static double xent_full_row(float *row, int32_t t, int V, int grad)
{
    if (t < 0 || t >= V) {
        if (grad)
            memset(row, 0, (size_t)V * sizeof *row);
        return 0.0;
    }
    float lt = row[t], M = row_max(row, V);
    double S = row_exp(row, M, V);
    if (grad) {
        row_scale(row, (float)(1.0 / S), V);
        row[t] -= 1.0f;
    }
    return (double)M + log(S) - (double)lt;
}

/* One row of k_xent_rows_bf16: as xent_full_row, the gradient written to g
 * rounded (row[t] * (1/S) - 1 computed in fp32 first, as there). */
static double xent_full_row_bf16(float *row, uint16_t *g, int32_t t, int V)
{
    if (t < 0 || t >= V) {
        memset(g, 0, (size_t)V * sizeof *g);
        return 0.0;
    }
    float lt = row[t], M = row_max(row, V);
    double S = row_exp(row, M, V);
    float inv = (float)(1.0 / S);
    row_scale_bf16(g, row, inv, V);
    g[t] = bf16_from_f32(row[t] * inv - 1.0f);
    return (double)M + log(S) - (double)lt;
}

/* The rows' losses summed in row order (blocks of rows in parallel). */
static double xent_rows(float *L, uint16_t *G, const int32_t *tgt, int m, int V, int grad)
{
    double loss = 0.0, row_loss[XENT_ROWS_BLOCK];
    for (int b = 0; b < m; b += XENT_ROWS_BLOCK) {
        int n = m - b < XENT_ROWS_BLOCK ? m - b : XENT_ROWS_BLOCK;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            size_t o = (size_t)(b + i) * V;
            row_loss[i] = G ? xent_full_row_bf16(L + o, G + o, tgt[b + i], V)
                            : xent_full_row(L + o, tgt[b + i], V, grad);
        }
        for (int i = 0; i < n; i++)
            loss += row_loss[i];
    }
    return loss;
}

double k_xent_rows(float *L, const int32_t *tgt, int m, int V, int grad)
{
    return xent_rows(L, NULL, tgt, m, V, grad);
}

double k_xent_rows_bf16(float *L, uint16_t *G, const int32_t *tgt, int m, int V)
{
    return xent_rows(L, G, tgt, m, V, 1);
}
