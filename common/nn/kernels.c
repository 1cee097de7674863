/* kernels.c - see kernels.h.
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
#include "lora_bf16.h"
#include "vec.h"

/* The clamps and selects below are plain compares.  GCC keeps them as branches
 * (a compare might trap) and does not vectorise their loops unless told that
 * they do not trap; and its jump threading would evaluate vexp on the clamp
 * bounds as extra vector paths, whose denormal results (x / (1 + exp(88)))
 * cost a microcode assist per lane: a several times slower GELU
 * (docs/performance.md, "Measurements behind the code's choices").  So
 * neither here. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-thread-jumps")
#endif

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f
#define LANES 16         /* float accumulators of a row sum */
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

/* ---- LoRA ----------------------------------------------------------------------
 *
 * The LoRA products are skinny (r is about 8): each makes r multiply-adds per
 * element of an [N,in] or [N,out] tensor it passes over.  Through k_gemm they
 * were six sgemm calls per map, each its own parallel region (a wake-up of the
 * sleeping threads every time under OMP_WAIT_POLICY=passive) that packed its
 * operands for r-wide tiles.  They are written out here instead, in two kinds
 * of passes, one parallel region per kernel call (docs/performance.md, "LoRA
 * products"):
 *   rows     blocks of LORA_ROWS rows, blocks in parallel; the G maps of a
 *            group take the block in turn while its x (dx) rows are in cache:
 *              fwd  u[n,:] = x[n,:] A^T,  y[n,:] = res[n,:] + b + s u[n,:] B^T
 *              bwd  du[n,:] = s dy[n,:] B,  dx[n,:] = beta dx[n,:] + du[n,:] A,
 *                   and while dy's rows are in cache the part of dB^T they
 *                   make (parts of LORA_PART rows, each its own sums)
 *   columns  one slab of LORA_SLAB columns at a time, slabs in parallel:
 *              dB[j,:] += s sum_p (part p's sums), the parts in order
 *              dA[:,i] += sum_n du[n,:] x[n,i], the N rows in order
 * So y and dx are written without being read (the frozen products add into
 * them afterwards) and dy is read once (session 7).
 * B is read as Bt = B^T [r,out] (made per call in the scratch), so that every
 * inner loop runs along contiguous rows.  The r rows of A or Bt go in groups
 * of 8, 4 or 1 (lora_group) whose sums stay in vector registers.  Every output
 * element is summed by one thread in an order fixed by the indices, so results
 * do not depend on the thread count. */

#define LORA_SLAB 32   /* columns per step of the column sums (two AVX-512 vectors) */
#define LORA_ROWS 8    /* rows per step of the row passes */
#define LORA_CHUNK 256 /* columns of A or Bt per step of the row passes (8 x 256 floats: 8 KB) */
#define LORA_PART K_LORA_PART   /* rows per part of dB's sums in the backward's row pass (8 blocks) */
#define LORA_OUTER 32  /* rows per load and store of a part's sums (dy's rows stay in L2) */
#define LORA_INLINE static inline __attribute__((always_inline))

/* How many of the `left` rows of A or Bt the next group takes. */
static int lora_group(int left) { return left >= 8 ? 8 : left >= 4 ? 4 : 1; }

/* CALL with gk_ a constant equal to G (8, 4 or 1), so that the inlined group
 * loops below unroll into registers. */
#define LORA_BY_GROUP(G, CALL)                                                                    \
    do {                                                                                          \
        if ((G) == 8) {                                                                           \
            const int gk_ = 8;                                                                    \
            CALL;                                                                                 \
        } else if ((G) == 4) {                                                                    \
            const int gk_ = 4;                                                                    \
            CALL;                                                                                 \
        } else {                                                                                  \
            const int gk_ = 1;                                                                    \
            CALL;                                                                                 \
        }                                                                                         \
    } while (0)

/* LANES floats as one GCC vector (lowered to narrower ones off AVX-512), so
 * that the group loops below keep their sums in registers: GCC spills plain
 * float arrays of that size to the stack. */
typedef float lora_v __attribute__((vector_size(LANES * sizeof(float))));

/* The helpers taking or returning lora_v are always inlined into their VEC
 * callers, so no vector crosses a call: GCC's warning that such calls would
 * pass them differently without AVX-512 does not apply. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

LORA_INLINE lora_v lora_load(const float *p)
{
    lora_v v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* acc[k] += the products x[i] M[k,i] over i in [i0, i1) (a multiple of
 * LANES long), lane l taking the i = l mod LANES, for k < G (M's rows ld
 * apart).  x is read once for the G rows of M. */
LORA_INLINE void lora_dots_part(lora_v *acc, const float *x, const float *M, int ld, int i0, int i1,
                                const int G)
{
    lora_v a[8];
    for (int k = 0; k < G; k++)
        a[k] = acc[k];
    for (int i = i0; i < i1; i += LANES) {
        lora_v xv = lora_load(x + i);
        for (int k = 0; k < G; k++)
            a[k] += xv * lora_load(M + (size_t)k * ld + i);
    }
    for (int k = 0; k < G; k++)
        acc[k] = a[k];
}

/* lanes_sum's pairwise tree on a vector (the same sums in the same order),
 * by halves: v[l] + v[l + 8], then + 4, + 2, + 1.  v by pointer: a 64-byte
 * vector by value draws GCC's psabi note on every build. */
typedef float lora_v8 __attribute__((vector_size(8 * sizeof(float))));
typedef float lora_v4 __attribute__((vector_size(4 * sizeof(float))));
typedef float lora_v2 __attribute__((vector_size(2 * sizeof(float))));

LORA_INLINE float lora_hsum(const lora_v *v)
{
    lora_v8 a, b;
    lora_v4 c, d;
    lora_v2 e, f;
    memcpy(&a, v, sizeof a), memcpy(&b, (const char *)v + sizeof a, sizeof b), a += b;
    memcpy(&c, &a, sizeof c), memcpy(&d, (char *)&a + sizeof c, sizeof d), c += d;
    memcpy(&e, &c, sizeof e), memcpy(&f, (char *)&c + sizeof e, sizeof f), e += f;
    return e[0] + e[1];
}

/* u[k] = s * (the lanes of acc[k], plus the products of i in [i0, n) in
 * lanes 0.., summed by the tree): the end of G dot products in the order of
 * row_dot (n - i0 < LANES). */
LORA_INLINE void lora_dots_end(float *u, const lora_v *acc, const float *x, const float *M, int ld,
                               int i0, int n, float s, const int G)
{
    float xt[LANES] = {0}, mt[LANES] = {0};
    memcpy(xt, x + i0, (size_t)(n - i0) * sizeof *xt);
    for (int k = 0; k < G; k++) {
        memcpy(mt, M + (size_t)k * ld + i0, (size_t)(n - i0) * sizeof *mt);
        lora_v t = acc[k] + lora_load(xt) * lora_load(mt);
        u[k] = s * lora_hsum(&t);
    }
}

/* u[m, 0..r) = s * M x[m, :] for the rows m < rows (<= LORA_ROWS) of x (ldx
 * apart, n long) and M [r, n] (rows ld apart): M is read in chunks of
 * LORA_CHUNK columns, each chunk for all rows while it is in L1. */
VEC static void lora_dots(float *u, const float *x, int ldx, const float *M, int ld, int n, int r,
                          float s, int rows)
{
    lora_v acc[LORA_ROWS][8];
    int nv = n / LANES * LANES;   /* the columns the vector loops take */
    for (int k = 0, G; k < r; k += G) {
        G = lora_group(r - k);
        const float *Mk = M + (size_t)k * ld;
        memset(acc, 0, sizeof acc);
        for (int i0 = 0; i0 < nv; i0 += LORA_CHUNK) {
            int i1 = nv - i0 < LORA_CHUNK ? nv : i0 + LORA_CHUNK;
            for (int m = 0; m < rows; m++)
                LORA_BY_GROUP(G, lora_dots_part(acc[m], x + (size_t)m * ldx, Mk, ld, i0, i1, gk_));
        }
        for (int m = 0; m < rows; m++)
            LORA_BY_GROUP(G, lora_dots_end(u + (size_t)m * r + k, acc[m], x + (size_t)m * ldx, Mk,
                                           ld, nv, n, s, gk_));
    }
}

/* One vector of columns of lora_axpys_g: y[p, j..j+LANES) for the P rows. */
LORA_INLINE void lora_axpys_v(float *y, int ldy, const float *y0, int ld0, const float *bias,
                              const float (*sc)[8], const float *M, int ld, int j, const int G,
                              const int P, const int FROM, const int WB)
{
    lora_v t[2];
    for (int p = 0; p < P; p++) {
        if (FROM)
            t[p] = lora_load(y0 + (size_t)p * ld0 + j);
        else
            t[p] = (lora_v){0};
        if (WB)
            t[p] += lora_load(bias + j);
    }
    for (int k = 0; k < G; k++) {
        lora_v mk = lora_load(M + (size_t)k * ld + j);
        for (int p = 0; p < P; p++)
            t[p] += sc[p][k] * mk;
    }
    for (int p = 0; p < P; p++)
        memcpy(y + (size_t)p * ldy + j, &t[p], sizeof t[p]);
}

/* y[p, j] = y0[p, j] + bias[j] + sum_k (s c[p, k]) M[k,j] for the P rows p of
 * y (ldy apart), y0 (ld0 apart; may be y; used when FROM, else 0) and c (ldc
 * apart), k < G, j < n (M's rows ld apart; bias used when WB, else 0), the k
 * in order.  Two rows share each load of M.  FROM and WB are constants at
 * every call (lora_axpys), so the start costs no branch in the loop.  The
 * last n % LANES columns go through the same vector code, zero-padded, so
 * that a row's values do not depend on P (the rows it is paired with). */
LORA_INLINE void lora_axpys_g(float *y, int ldy, const float *y0, int ld0, const float *bias,
                              const float *c, int ldc, const float *M, int ld, int n, float s,
                              const int G, const int P, const int FROM, const int WB)
{
    float sc[2][8];
    for (int p = 0; p < P; p++)
        for (int k = 0; k < G; k++)
            sc[p][k] = s * c[(size_t)p * ldc + k];
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        lora_axpys_v(y, ldy, y0, ld0, bias, sc, M, ld, j, G, P, FROM, WB);
    int w = n - j;
    if (w == 0)
        return;
    float ty[2][LANES], t0[2][LANES] = {{0}}, tb[LANES] = {0}, tm[8][LANES] = {{0}};
    for (int p = 0; p < P && FROM; p++)
        memcpy(t0[p], y0 + (size_t)p * ld0 + j, (size_t)w * sizeof(float));
    if (WB)
        memcpy(tb, bias + j, (size_t)w * sizeof(float));
    for (int k = 0; k < G; k++)
        memcpy(tm[k], M + (size_t)k * ld + j, (size_t)w * sizeof(float));
    lora_axpys_v(ty[0], LANES, t0[0], LANES, tb, sc, tm[0], LANES, 0, G, P, FROM, WB);
    for (int p = 0; p < P; p++)
        memcpy(y + (size_t)p * ldy + j, ty[p], (size_t)w * sizeof(float));
}

/* lora_axpys_g with FROM = (y0 != NULL), WB = (bias != NULL) as constants. */
#define LORA_AXPYS_G(y, ldy, y0, ld0, bias, c, ldc, M, ld, n, s, G, P)                            \
    do {                                                                                          \
        if ((y0) && !(bias))                                                                      \
            lora_axpys_g(y, ldy, y0, ld0, bias, c, ldc, M, ld, n, s, G, P, 1, 0);                 \
        else if (y0)                                                                              \
            lora_axpys_g(y, ldy, y0, ld0, bias, c, ldc, M, ld, n, s, G, P, 1, 1);                 \
        else if (bias)                                                                            \
            lora_axpys_g(y, ldy, y0, ld0, bias, c, ldc, M, ld, n, s, G, P, 0, 1);                 \
        else                                                                                      \
            lora_axpys_g(y, ldy, y0, ld0, bias, c, ldc, M, ld, n, s, G, P, 0, 0);                 \
    } while (0)

/* y[m, 0..n) = y0[m, :] + bias + s c[m, :] M for the rows m < rows of y (ldy
 * apart), of y0 (ld0 apart; NULL: 0; y itself: y +=) and of c [rows, r], M
 * [r, n] (rows ld apart), bias [n] (NULL: 0); M in chunks of LORA_CHUNK
 * columns, each for all rows (two at a time) while it is in L1.  The first
 * group of k starts from y0 + bias (y written without being read when y0 is
 * NULL), the later ones add to y, in order. */
VEC static void lora_axpys(float *y, int ldy, const float *y0, int ld0, const float *bias,
                           const float *c, const float *M, int ld, int n, int r, float s, int rows)
{
    for (int k = 0, G; k < r; k += G) {
        G = lora_group(r - k);
        const float *z = k ? y : y0, *bz = k ? NULL : bias;
        int ldz = k ? ldy : ld0;
        for (int j0 = 0; j0 < n; j0 += LORA_CHUNK) {
            int w = n - j0 < LORA_CHUNK ? n - j0 : LORA_CHUNK, m = 0;
            const float *Mk = M + (size_t)k * ld + j0;
            const float *bj = bz ? bz + j0 : NULL;
            for (; m + 2 <= rows; m += 2) {
                const float *zm = z ? z + (size_t)m * ldz + j0 : NULL;
                LORA_BY_GROUP(G, LORA_AXPYS_G(y + (size_t)m * ldy + j0, ldy, zm, ldz, bj,
                                              c + (size_t)m * r + k, r, Mk, ld, w, s, gk_, 2));
            }
            if (m < rows) {
                const float *zm = z ? z + (size_t)m * ldz + j0 : NULL;
                LORA_BY_GROUP(G, LORA_AXPYS_G(y + (size_t)m * ldy + j0, ldy, zm, ldz, bj,
                                              c + (size_t)m * r + k, r, Mk, ld, w, s, gk_, 1));
            }
        }
    }
}

/* o[k*ok + l*ol] += s * sum_n w[n*ldw + k] z[n*ldz + l] for k < G, l <
 * LORA_SLAB, the n in order: one full slab of a column sum, its G x 32 sums
 * in registers. */
LORA_INLINE void lora_colsum_g(float *o, size_t ok, size_t ol, const float *w, int ldw,
                               const float *z, int ldz, int N, float s, const int G)
{
    lora_v acc[8][2] = {{{0}}};
    for (int n = 0; n < N; n++) {
        const float *wn = w + (size_t)n * ldw, *zn = z + (size_t)n * ldz;
        lora_v z0 = lora_load(zn), z1 = lora_load(zn + LANES);
        for (int k = 0; k < G; k++)
            acc[k][0] += wn[k] * z0, acc[k][1] += wn[k] * z1;
    }
    for (int k = 0; k < G; k++) {
        float t[LORA_SLAB];
        memcpy(t, acc[k], sizeof t);
        for (int l = 0; l < LORA_SLAB; l++)
            o[k * ok + l * ol] += s * t[l];
    }
}

/* The same for a last slab narrower than LORA_SLAB (width columns), one k at
 * a time. */
static void lora_colsum_tail(float *o, size_t ok, size_t ol, const float *w, int ldw, int r,
                             const float *z, int ldz, int N, int width, float s)
{
    for (int k = 0; k < r; k++) {
        float acc[LORA_SLAB] = {0};
        for (int n = 0; n < N; n++)
            for (int l = 0; l < width; l++)
                acc[l] += w[(size_t)n * ldw + k] * z[(size_t)n * ldz + l];
        for (int l = 0; l < width; l++)
            o[k * ok + l * ol] += s * acc[l];
    }
}

/* The slab of columns z[:, 0..width) against all r columns of w [N,r] (rows
 * ldw apart): o[k*ok + l*ol] += s * sum_n w[n,k] z[n,l]. */
VEC static void lora_colsum(float *o, size_t ok, size_t ol, const float *w, int ldw, int r,
                            const float *z, int ldz, int N, int width, float s)
{
    if (width < LORA_SLAB) {
        lora_colsum_tail(o, ok, ol, w, ldw, r, z, ldz, N, width, s);
        return;
    }
    for (int k = 0, G; k < r; k += G) {
        G = lora_group(r - k);
        LORA_BY_GROUP(G, lora_colsum_g(o + k * ok, ok, ol, w + k, ldw, z, ldz, N, s, gk_));
    }
}

/* P[k, j] += sum_m c[m, k] z[m, j] for k < G, j < n, the rows m < rows in
 * order (c's rows ldc apart, z's ldz, P's ldp): a block of rows' share of a
 * part of the column sums dB, G x 2 vectors of sums in registers (each
 * broadcast of c serves two vectors of z). */
LORA_INLINE void lora_outer_g(float *P, int ldp, const float *c, int ldc, const float *z, int ldz,
                              int n, int rows, const int G)
{
    int j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        lora_v acc[8][2];
        for (int k = 0; k < G; k++)
            acc[k][0] = lora_load(P + (size_t)k * ldp + j),
            acc[k][1] = lora_load(P + (size_t)k * ldp + j + LANES);
        for (int m = 0; m < rows; m++) {
            const float *zm = z + (size_t)m * ldz + j, *cm = c + (size_t)m * ldc;
            lora_v z0 = lora_load(zm), z1 = lora_load(zm + LANES);
            for (int k = 0; k < G; k++)
                acc[k][0] += cm[k] * z0, acc[k][1] += cm[k] * z1;
        }
        for (int k = 0; k < G; k++) {
            memcpy(P + (size_t)k * ldp + j, &acc[k][0], sizeof acc[k][0]);
            memcpy(P + (size_t)k * ldp + j + LANES, &acc[k][1], sizeof acc[k][1]);
        }
    }
    for (; j < n; j++)
        for (int k = 0; k < G; k++) {
            float t = P[(size_t)k * ldp + j];
            for (int m = 0; m < rows; m++)
                t += c[(size_t)m * ldc + k] * z[(size_t)m * ldz + j];
            P[(size_t)k * ldp + j] = t;
        }
}

/* P[k, 0..n) += sum_m c[m, k] z[m, :] over the rows m < rows of c [rows, r]
 * and z (rows ldz apart), P [r, n] (rows ldp apart). */
VEC static void lora_outer(float *P, int ldp, const float *c, int r, const float *z, int ldz, int n,
                           int rows)
{
    for (int k = 0, G; k < r; k += G) {
        G = lora_group(r - k);
        LORA_BY_GROUP(G, lora_outer_g(P + (size_t)k * ldp, ldp, c + k, r, z, ldz, n, rows, gk_));
    }
}

/* o[j*ol + k*ok] += s * sum_p P_p[k, j] for j in [j0, j0 + w) (w <=
 * LORA_SLAB), k < r, the parts p < parts in order (P_p [r, ldp] at P + p *
 * stride): dB [out, r] (ok 1, ol r), or a dA [r, in] (ok in, ol 1). */
VEC static void lora_parts_sum(float *o, size_t ok, size_t ol, const float *P, size_t stride,
                               int parts, int ldp, int j0, int w, int r, float s)
{
    for (int k = 0; k < r; k++) {
        float t[LORA_SLAB] = {0};
        for (int p = 0; p < parts; p++) {
            const float *pk = P + (size_t)p * stride + (size_t)k * ldp + j0;
            for (int l = 0; l < w; l++)
                t[l] += pk[l];
        }
        for (int l = 0; l < w; l++)
            o[(size_t)(j0 + l) * ol + (size_t)k * ok] += s * t[l];
    }
}

static int lora_slabs(int n) { return (n + LORA_SLAB - 1) / LORA_SLAB; }
static int lora_slab_width(int n, int b)
{
    return n - b * LORA_SLAB < LORA_SLAB ? n - b * LORA_SLAB : LORA_SLAB;
}

/* bt = [B_0^T; ...; B_{G-1}^T], B_g [out_g, r] -> B_g^T [r, out_g] one after the other. */
static void lora_transpose(float *bt, const float *const *B, const int *out, int G, int r)
{
    for (int g = 0; g < G; g++) {
        for (int j = 0; j < out[g]; j++)
            for (int k = 0; k < r; k++)
                bt[(size_t)k * out[g] + j] = B[g][(size_t)j * r + k];
        bt += (size_t)r * out[g];
    }
}

/* The bf16 pack of G maps (k_lora_pack_size): their B^T one after the
 * other (lb_size(r, out_g) each), then their A (lb_size(r, in) each); for
 * the forward B^T as pairs and A as rows (lora_bf16.h), for the backward
 * the other way round. */
static const uint16_t *pack_bt(const uint16_t *pk, const int *out, int g, int r)
{
    for (int i = 0; i < g; i++)
        pk += lb_size(r, out[i]);
    return pk;
}

static const uint16_t *pack_a(const uint16_t *pk, const int *out, int G, int g, int in, int r)
{
    return pack_bt(pk, out, G, r) + (size_t)g * lb_size(r, in);
}

/* Packs the B (B NULL: not) and A (A NULL: not) of G maps into pk, for
 * the forward (fwd) or the backward. */
static void lora_pack(uint16_t *pk, int fwd, const float *const *A, const float *const *B,
                      const int *out, int G, int in, int r)
{
    for (int g = 0; B && g < G; g++)   /* B_g [out, r] read as B_g^T [r, out] */
        lb_pack((uint16_t *)pack_bt(pk, out, g, r), fwd, B[g], 1, (size_t)r, r, out[g]);
    for (int g = 0; A && g < G; g++)
        lb_pack((uint16_t *)pack_a(pk, out, G, g, in, r), !fwd, A[g], (size_t)in, 1, r, in);
}

size_t k_lora_pack_size(int G, int in, int out_sum, int r)
{
    return lb_size(r, out_sum) + (size_t)G * lb_size(r, in);
}

void k_lora_pack_fwd(uint16_t *pk, const float *const *A, const float *const *B, const int *out,
                     int G, int in, int r)
{
    lora_pack(pk, 1, A, B, out, G, in, r);
}

/* u = s x M^T for rows of x (ldx apart, w wide) and M [r, w]: in fp32
 * (M, rows w apart) or, given Rm (M as bf16 rows), on bf16 inputs. */
static void lora_dots_m(float *u, const float *x, int ldx, const float *M, const uint16_t *Rm,
                        int w, int r, float s, int rows)
{
    if (Rm)
        lb_dots(u, x, ldx, Rm, w, r, s, rows);
    else
        lora_dots(u, x, ldx, M, w, w, r, s, rows);
}

/* y = y0 + bias + s c M for rows of y and y0 (both ld apart), c [rows, r]
 * and M [r, w]: in fp32 (M, rows w apart) or, given Pm (M as bf16 pairs),
 * on bf16 inputs. */
static void lora_axpys_m(float *y, const float *y0, int ld, const float *bias, const float *c,
                         const float *M, const uint16_t *Pm, int w, int r, float s, int rows)
{
    if (Pm)
        lb_axpys(y, ld, y0, ld, bias, c, Pm, w, r, s, rows);
    else
        lora_axpys(y, ld, y0, ld, bias, c, M, w, w, r, s, rows);
}

static int lora_blocks(int N) { return (N + LORA_ROWS - 1) / LORA_ROWS; }
/* The rows of the block of at most LORA_ROWS rows starting at n0. */
static int lora_block_rows(int N, int n0) { return N - n0 < LORA_ROWS ? N - n0 : LORA_ROWS; }

/* The forward of G maps reading x on the rows [n0, n0 + rows) (bt:
 * lora_transpose's): u_g = x A_g^T, then y_g = res_g + b_g + s u_g B_g^T
 * (res, b: NULL or one entry per map, each may be NULL).  x NULL: u_g are
 * given (only y); y NULL: only u_g.  Each row's values do not depend on
 * which rows share its call. */
static void lora_fwd_block(float *const *y, const float *const *res, const float *const *b,
                           float *const *u, const float *x, const float *const *A,
                           const float *bt, const uint16_t *pk, const int *out, int G, int n0,
                           int rows, int in, int r, float s)
{
    for (int g = 0; g < G; g++) {
        float *un = u[g] + (size_t)n0 * r, *yg = y ? y[g] + (size_t)n0 * out[g] : NULL;
        const float *rg = res && res[g] ? res[g] + (size_t)n0 * out[g] : NULL;
        const float *bg = b ? b[g] : NULL, *xn = x ? x + (size_t)n0 * in : NULL;
        if (xn)
            lora_dots_m(un, xn, in, A[g], pk ? pack_a(pk, out, G, g, in, r) : NULL, in, r, 1.0f,
                        rows);
        if (yg)
            lora_axpys_m(yg, rg, out[g], bg, un, bt, pk ? pack_bt(pk, out, g, r) : NULL, out[g], r,
                         s, rows);
        bt += (size_t)r * out[g];
    }
}

/* lora_fwd_block over all N rows by blocks of LORA_ROWS, in parallel. */
static void lora_fwd_maps(float *const *y, const float *const *res, const float *const *b,
                          float *const *u, const float *x, const float *const *A,
                          const float *const *B, const int *out, int G, int N, int in, int r,
                          float s, float *bt, uint16_t *pk)
{
    if (pk)
        lora_pack(pk, 1, x ? A : NULL, y ? B : NULL, out, G, in, r);
    else if (y)
        lora_transpose(bt, B, out, G, r);
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < lora_blocks(N); blk++) {
        int n0 = blk * LORA_ROWS;
        lora_fwd_block(y, res, b, u, x, A, bt, pk, out, G, n0, lora_block_rows(N, n0), in, r, s);
    }
}

void k_lora_transpose(float *bt, const float *const *B, const int *out, int G, int r)
{
    lora_transpose(bt, B, out, G, r);
}

void k_lora_fwd_rows(const k_lora_rows *l, int n0, int n1)
{
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int m = n0; m < n1; m += LORA_ROWS)
        lora_fwd_block(l->y, l->res, l->b, l->u, l->x, l->A, l->bt, l->pk, l->out, l->G, m,
                       lora_block_rows(n1, m), l->in, l->r, l->s);
}

static int lora_parts(int N) { return (N + LORA_PART - 1) / LORA_PART; }

/* The row pass of the backward over the rows [n0, n0 + rows) (rows <=
 * LORA_OUTER) of the G maps, dyn[g] the rows' start in dy_g: du_g = s dy_g
 * Bt_g^T by blocks of LORA_ROWS, P_g += u_g^T dy_g (P_g [r, out_g] one
 * after the other at P: the rows' share of dB_g^T, its sums loaded and
 * stored once for all the rows), and (dx != NULL) dx = beta dx + sum_g
 * du_g A_g.  dy_g's rows are read from memory once for both.  dyn NULL:
 * du_g and P_g made already (k_lora_bwd_group_rows), only dx here. */
static void lora_bwd_rows(float *dx, float beta, float *P, float *const *du,
                          const float *const *dyn, const float *const *u, const float *const *A,
                          const float *bt, const uint16_t *btr, const uint16_t *apk,
                          const int *out, int G, int n0, int rows, int in, int r, float s)
{
    for (int g = 0; dyn && g < G; g++) {
        for (int m = 0; m < rows; m += LORA_ROWS)
            lora_dots_m(du[g] + (size_t)(n0 + m) * r, dyn[g] + (size_t)m * out[g], out[g], bt, btr,
                        out[g], r, s, rows - m < LORA_ROWS ? rows - m : LORA_ROWS);
        lora_outer(P, out[g], u[g] + (size_t)n0 * r, r, dyn[g], out[g], out[g], rows);
        bt += (size_t)r * out[g], P += (size_t)r * out[g];
        btr = btr ? btr + lb_size(r, out[g]) : NULL;
    }
    float *dxn = dx ? dx + (size_t)n0 * in : NULL;
    for (int g = 0; dx && g < G; g++)   /* map 0 starts from beta dx, the rest add */
        lora_axpys_m(dxn, g || beta != 0.0f ? dxn : NULL, in, NULL, du[g] + (size_t)n0 * r, A[g],
                     apk ? apk + (size_t)g * lb_size(r, in) : NULL, in, r, 1.0f, rows);
}

/* Part p's rows end (parts of LORA_PART rows), and the rows of the block
 * of at most LORA_OUTER rows from n0 in a part ending at n1. */
static int lora_part_end(int N, int p)
{
    return N - p * LORA_PART < LORA_PART ? N : (p + 1) * LORA_PART;
}
static int lora_outer_rows(int n0, int n1) { return n1 - n0 < LORA_OUTER ? n1 - n0 : LORA_OUTER; }

/* The floats of one part of dB's sums: r x (out_0 + ... + out_{G-1}). */
static size_t lora_part_stride(const int *out, int G, int r)
{
    size_t out_sum = 0;
    for (int g = 0; g < G; g++)
        out_sum += (size_t)out[g];
    return (size_t)r * out_sum;
}

/* The column sums of the backward, inside the caller's parallel region
 * (orphaned loops): dB_g += s * the parts' sums added in part order, by
 * slabs of columns; dA_g += du_g^T x by slabs of x's columns (x NULL:
 * not here). */
static void lora_bwd_cols(float *const *dA, float *const *dB, float *const *du, const float *x,
                          const int *out, int G, int N, int in, int r, float s, const float *part)
{
    size_t off = 0, stride = lora_part_stride(out, G, r);   /* map g's [r, out_g] inside a part */
    for (int g = 0; g < G; g++) {
#pragma omp for schedule(static) nowait
        for (int b = 0; b < lora_slabs(out[g]); b++)
            lora_parts_sum(dB[g], 1, (size_t)r, part + off, stride, lora_parts(N), out[g],
                           b * LORA_SLAB, lora_slab_width(out[g], b), r, s);
        off += (size_t)r * out[g];
    }
    if (!x)
        return;
#pragma omp for schedule(static)
    for (int b = 0; b < lora_slabs(in); b++)   /* dA_g [r, in]: slab b: columns b*SLAB.. */
        for (int g = 0; g < G; g++)
            lora_colsum(dA[g] + (size_t)b * LORA_SLAB, (size_t)in, 1, du[g], r, r,
                        x + (size_t)b * LORA_SLAB, in, N, lora_slab_width(in, b), 1.0f);
}

/* The backward of G maps reading x (bt: lora_transpose's; part:
 * lora_parts(N) * r * out_sum floats):
 *   rows     parts of LORA_PART rows in parallel, each by LORA_OUTER rows
 *            (lora_bwd_rows): du_g, dx, and the part's sums of dB_g, so
 *            dy_g is read once
 *   columns  lora_bwd_cols
 * Every sum has an order fixed by the shape, not by the threads. */
/* Part p of the row pass (its sums P zeroed first when dy is given; dy
 * NULL: du and the sums made already, only dx), by blocks of LORA_OUTER. */
static void lora_bwd_part(float *dx, float beta, float *part, float *const *du,
                          const float *const *dy, const float *const *u, const float *const *A,
                          const float *bt, const uint16_t *pk, const int *out, int G, int N, int p,
                          int in, int r, float s)
{
    const uint16_t *apk = pk && dx ? pack_a(pk, out, G, 0, in, r) : NULL;
    size_t stride = lora_part_stride(out, G, r);
    float *P = part + (size_t)p * stride;
    if (dy)
        memset(P, 0, stride * sizeof *P);
    for (int n0 = p * LORA_PART, n1 = lora_part_end(N, p); n0 < n1; n0 += LORA_OUTER) {
        const float *dyn[K_LORA_GROUP_MAX];
        for (int g = 0; dy && g < G; g++)
            dyn[g] = dy[g] + (size_t)n0 * out[g];
        lora_bwd_rows(dx, beta, P, du, dy ? dyn : NULL, u, A, bt, pk, apk, out, G, n0,
                      lora_outer_rows(n0, n1), in, r, s);
    }
}

static void lora_bwd_maps(float *dx, float beta, float *const *dA, float *const *dB,
                          float *const *du, const float *const *dy, const float *x,
                          const float *const *u, const float *const *A, const float *const *B,
                          const int *out, int G, int N, int in, int r, float s, float *bt,
                          float *part, uint16_t *pk)
{
    if (pk)   /* dy NULL: B^T packed already (k_lora_bwd_group_prep) */
        lora_pack(pk, 0, dx ? A : NULL, dy ? B : NULL, out, G, in, r);
    else if (dy)
        lora_transpose(bt, B, out, G, r);
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int p = 0; p < lora_parts(N); p++)
            lora_bwd_part(dx, beta, part, du, dy, u, A, bt, pk, out, G, N, p, in, r, s);
        lora_bwd_cols(dA, dB, du, x, out, G, N, in, r, s, part);
    }
}

/* bt [r, out], then the backward's parts of dB (lora_bwd_maps) */
size_t k_lora_scratch(int N, int out, int r)
{
    return (size_t)r * out * (1 + (size_t)lora_parts(N));
}

void k_lora_fwd(float *y, const float *res, const float *b, float *u, const float *x,
                const float *A, const float *B, int N, int in, int out, int r, float s,
                float *scratch, uint16_t *pk)
{
    lora_fwd_maps(&y, &res, &b, &u, x, &A, &B, &out, 1, N, in, r, s, scratch, pk);
}

void k_lora_bwd(float *dx, float beta, float *dA, float *dB, float *du, const float *dy,
                const float *x, const float *u, const float *A, const float *B, int N, int in,
                int out, int r, float s, float *scratch, uint16_t *pk)
{
    lora_bwd_maps(dx, beta, &dA, &dB, &du, &dy, x, &u, &A, &B, &out, 1, N, in, r, s, scratch,
                  scratch + (size_t)r * out, pk);
}

size_t k_lora_group_scratch(int G, int N, int out_sum, int r)
{
    /* du_0 .. du_{G-1}, then bt, then the backward's parts of dB */
    return (size_t)G * N * r + (size_t)r * out_sum * (1 + (size_t)lora_parts(N));
}

/* Where k_lora_group_scratch's pieces lie for G maps of widths out. */
typedef struct {
    float *du[K_LORA_GROUP_MAX];   /* [N,r] each */
    float *bt;                     /* [r, out_sum]: lora_transpose's */
    float *part;                   /* lora_parts(N) x r x out_sum */
} lora_group_mem;

static lora_group_mem lora_group_at(float *scratch, const int *out, int G, int N, int r)
{
    lora_group_mem g;
    for (int k = 0; k < K_LORA_GROUP_MAX; k++)
        g.du[k] = k < G ? scratch + (size_t)k * N * r : NULL;
    g.bt = scratch + (size_t)G * N * r;
    g.part = g.bt + lora_part_stride(out, G, r);
    return g;
}

void k_lora_fwd_group(float *const *y, const float *const *res, const float *const *b,
                      float *const *u, const float *x, const float *const *A,
                      const float *const *B, const int *out, int G, int N, int in, int r, float s,
                      float *scratch, uint16_t *pk)
{
    lora_fwd_maps(y, res, b, u, x, A, B, out, G, N, in, r, s,
                  lora_group_at(scratch, out, G, N, r).bt, pk);
}

void k_lora_bwd_group_prep(const float *const *B, const int *out, int G, int N, int r,
                           float *scratch, uint16_t *pk)
{
    if (pk)
        lora_pack(pk, 0, NULL, B, out, G, 0, r);
    else
        lora_transpose(lora_group_at(scratch, out, G, N, r).bt, B, out, G, r);
}

void k_lora_bwd_group_rows(const float *const *dy, const float *const *u, const int *out, int G,
                           int N, int r, float s, float *scratch, const uint16_t *pk, int n0,
                           int n1)
{
    lora_group_mem g = lora_group_at(scratch, out, G, N, r);
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int p = n0 / LORA_PART; p < lora_parts(n1); p++)
        lora_bwd_part(NULL, 0.0f, g.part, g.du, dy, u, NULL, g.bt, pk, out, G, N, p, 0, r, s);
}

void k_lora_bwd_group(float *dx, float beta, float *const *dA, float *const *dB,
                      const float *const *dy, const float *x, const float *const *u,
                      const float *const *A, const float *const *B, const int *out, int G, int N,
                      int in, int r, float s, float *scratch, uint16_t *pk)
{
    lora_group_mem g = lora_group_at(scratch, out, G, N, r);
    lora_bwd_maps(dx, beta, dA, dB, g.du, dy, x, u, A, B, out, G, N, in, r, s, g.bt, g.part, pk);
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
VEC static void swiglu_span(float *y, const float *gate, const float *up, size_t n)
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
        swiglu_span(y + s * SPAN, gate + s * SPAN, up + s * SPAN, span_len(n, s));
}

void k_swiglu_fwd_bf16(float *y, uint16_t *yb, const float *gate, const float *up, size_t n)
{
    spans_bf16(swiglu_span, y, yb, gate, up, n);
}

/* s = sigmoid(g): dgate = dy u s (1 + g (1 - s)), dup = dy g s; dy read before dgate is written. */
#define SWIGLU_BWD_EL(i)                                      \
    float g = gate[i], d = dy[i], s = vsigmoid(g);            \
    dup[i] = d * g * s;                                       \
    dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s))

VEC static void swiglu_bwd_span(float *dgate, float *dup, const float *dy, const float *gate,
                                const float *up, size_t n)
{
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        SWIGLU_BWD_EL(i);
    }
}

/* The same, and act = g s u (swiglu_span's value, the same bits) from the
 * sigmoid it computes anyway. */
VEC static void swiglu_bwd_act_span(float *dgate, float *dup, float *act, const float *dy,
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
        swiglu_bwd_span(dgate + s * SPAN, dup + s * SPAN, dy + s * SPAN, gate + s * SPAN,
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
        swiglu_bwd_span(g, u, dy + o, gate + o, up + o, len);
        k_bf16_row(dgb + o, g, len);
        k_bf16_row(dub + o, u, len);
    }
}

/* ---- SwiGLU with the LoRA of gate, up and down folded in (Llama's MLP) ---- */

/* Where the scratch's pieces lie: k_lora_group_scratch's for gate and up
 * (their du, then Bt, then the backward's parts of dB); down's du [N,r],
 * B_d^T [r,C], the parts of its dB [r,C] and of its dA [r,n]; then a tile
 * per thread of LORA_OUTER rows of d(gate), of d(up) and of act. */
#define SWL_TILES 3
typedef struct {
    lora_group_mem g;   /* gate's and up's */
    float *du, *bt, *dB_parts, *dA_parts, *tiles;
    uint16_t *pk[5];    /* z->bf16: the weights in bf16 (lora_bf16.h), a pass's at a time */
} swl_mem;

/* The bf16 weights' slots: three [r, n], two [r, C] (swl_pack). */
static size_t swl_pack_floats(int n, int C, int r)
{
    return (3 * lb_size(r, n) + 2 * lb_size(r, C) + 31) / 32 * 16;
}

static size_t swl_floats(int N, int n, int C, int r, float *scratch, swl_mem *m)
{
    const int out[2] = {n, n};
    size_t off = k_lora_group_scratch(2, N, 2 * n, r), parts = (size_t)lora_parts(N);
    if (m) {
        m->g = lora_group_at(scratch, out, 2, N, r);
        m->du = scratch + off;
        m->bt = m->du + (size_t)N * r;
        m->dB_parts = m->bt + (size_t)r * C;
        m->dA_parts = m->dB_parts + parts * r * C;
        m->tiles = m->dA_parts + parts * r * n;
    }
    return off + (size_t)N * r + (size_t)r * C + parts * r * (C + (size_t)n);
}

size_t k_swiglu_lora_scratch(int N, int n, int C, int r, int threads)
{
    return swl_floats(N, n, C, r, NULL, NULL) + (size_t)threads * SWL_TILES * LORA_OUTER * n +
           swl_pack_floats(n, C, r);
}

static swl_mem swl_at(float *scratch, int N, int n, const k_swiglu_lora *z)
{
    swl_mem m;
    int r = z->r;
    swl_floats(N, n, z->C, r, scratch, &m);
    m.pk[0] = (uint16_t *)(m.tiles + (size_t)z->tiles * SWL_TILES * LORA_OUTER * n);
    m.pk[1] = m.pk[0] + lb_size(r, n), m.pk[2] = m.pk[1] + lb_size(r, n);
    m.pk[3] = m.pk[2] + lb_size(r, n), m.pk[4] = m.pk[3] + lb_size(r, z->C);
    return m;
}

/* Slot i of the bf16 weights := M [r, w] (M[k, j] at src[k*sk + j*sj]) in
 * the layout given (lb_pack); returns it. */
static const uint16_t *swl_pack(const swl_mem *m, int i, int pairs, const float *src, size_t sk,
                                size_t sj, int r, int w)
{
    lb_pack(m->pk[i], pairs, src, sk, sj, r, w);
    return m->pk[i];
}

/* The calling thread's tiles. */
static float *swl_tile(const swl_mem *m, int n)
{
    return m->tiles + (size_t)omp_get_thread_num() * SWL_TILES * LORA_OUTER * n;
}

/* One block of rows [n0, n0 + rows) of the forward (kernels.h), act in
 * the thread's tile ta; bt: gate's and up's B^T, btd: down's; pk (bf16,
 * else NULL): gate's and up's B^T as pairs, down's A as rows, its B^T as
 * pairs (k_swiglu_lora_fwd packs them). */
static void swl_fwd_rows(float *gate, float *up, float *ta, uint16_t *actb, float *ud, float *out,
                         const float *res, const k_swiglu_lora *z, const float *bt,
                         const float *btd, const uint16_t *const *pk, int n0, int rows, int n)
{
    size_t o = (size_t)n0 * n, len = (size_t)rows * n, oc = (size_t)n0 * z->C;
    int r = z->r;
    lora_axpys_m(gate + o, gate + o, n, NULL, z->u[0] + (size_t)n0 * r, bt, pk ? pk[0] : NULL, n,
                 r, z->s, rows);
    lora_axpys_m(up + o, up + o, n, NULL, z->u[1] + (size_t)n0 * r, bt + (size_t)r * n,
                 pk ? pk[1] : NULL, n, r, z->s, rows);
    swiglu_span(ta, gate + o, up + o, len);
    if (actb)
        k_bf16_row(actb + o, ta, len);
    if (!ud)
        return;
    lora_dots_m(ud + (size_t)n0 * r, ta, n, z->Ad, pk ? pk[2] : NULL, n, r, 1.0f, rows);
    if (out)   /* down's LoRA, as k_lora_fwd with u given */
        lora_axpys_m(out + oc, res ? res + oc : NULL, z->C, NULL, ud + (size_t)n0 * r, btd,
                     pk ? pk[3] : NULL, z->C, r, z->s, rows);
}

/* The threads of the folded kernels: no more than the scratch has tiles for. */
static int swl_threads(const k_swiglu_lora *z)
{
    int nt = omp_get_max_threads();
    return z->tiles < nt ? z->tiles : nt;
}

void k_swiglu_lora_u(float *const *u, const float *x, const k_swiglu_lora *z, int N, int n,
                     float *scratch)
{
    /* y NULL: B unread, and the pack holds only the two A (rows), which
     * slots 3 and 4 of the fold's take one after the other */
    const int out[2] = {0, 0};
    uint16_t *pk = z->bf16 ? swl_at(scratch, N, n, z).pk[3] : NULL;
    k_lora_fwd_group(NULL, NULL, NULL, u, x, z->A, z->B, out, 2, N, z->C, z->r, z->s, scratch, pk);
}

void k_swiglu_lora_fwd(float *gate, float *up, uint16_t *actb, float *ud, float *out,
                       const float *res, const k_swiglu_lora *z, int N, int n, float *scratch)
{
    const int on[2] = {n, n};
    int r = z->r, C = z->C;
    swl_mem m = swl_at(scratch, N, n, z);
    const uint16_t *pk[4] = {NULL};
    if (z->bf16) {
        pk[0] = swl_pack(&m, 0, 1, z->B[0], 1, r, r, n);
        pk[1] = swl_pack(&m, 1, 1, z->B[1], 1, r, r, n);
        pk[2] = swl_pack(&m, 2, 0, z->Ad, n, 1, r, n);
        if (out)
            pk[3] = swl_pack(&m, 3, 1, z->Bd, 1, r, r, C);
    } else {
        lora_transpose(m.g.bt, z->B, on, 2, r);
        if (out)
            lora_transpose(m.bt, &z->Bd, &C, 1, r);
    }
#pragma omp parallel num_threads(swl_threads(z))
    {
        float *ta = swl_tile(&m, n);
#pragma omp for schedule(static)
        for (int blk = 0; blk < lora_blocks(N); blk++) {
            int n0 = blk * LORA_ROWS;
            swl_fwd_rows(gate, up, ta, actb, ud, out, res, z, m.g.bt, m.bt, z->bf16 ? pk : NULL,
                         n0, lora_block_rows(N, n0), n);
        }
    }
}

/* One block of rows of the backward into the thread's tiles tg, tu (and
 * ta): dy = dact (+ ud A_d), the SwiGLU's backward, rounded into dgb, dub;
 * with ud (down's du), act recomputed into ta and the block's share of
 * down's dA (Pd += ud^T act: the forward kept no act).  pad: bf16, A_d as
 * pairs (else NULL). */
static void swl_bwd_rows(float *tg, float *tu, float *ta, float *Pd, uint16_t *dgb, uint16_t *dub,
                         const float *dact, const float *gate, const float *up, const float *ud,
                         const uint16_t *pad, const k_swiglu_lora *z, int n0, int rows, int n)
{
    size_t o = (size_t)n0 * n, len = (size_t)rows * n;
    if (!ud) {
        swiglu_bwd_span(tg, tu, dact + o, gate + o, up + o, len);
    } else {   /* down's LoRA dx, as k_lora_bwd adds it (beta 1) */
        const float *udn = ud + (size_t)n0 * z->r;
        lora_axpys_m(tg, dact + o, n, NULL, udn, z->Ad, pad, n, z->r, 1.0f, rows);
        swiglu_bwd_act_span(tg, tu, ta, tg, gate + o, up + o, len);
        lora_outer(Pd, n, udn, z->r, ta, n, n, rows);
    }
    k_bf16_row(dgb + o, tg, len);
    k_bf16_row(dub + o, tu, len);
}

void k_swiglu_lora_bwd(uint16_t *dgb, uint16_t *dub, const float *dact, const float *gate,
                       const float *up, const float *dres, const k_swiglu_lora *z, int N, int n,
                       float *scratch)
{
    int r = z->r, C = z->C;
    const int on[2] = {n, n};
    swl_mem m = swl_at(scratch, N, n, z);
    size_t stride = lora_part_stride(on, 2, r), pd = (size_t)r * n, pb = (size_t)r * C;
    const float *ud = dres ? m.du : NULL;
    const uint16_t *rgu = NULL, *pad = NULL, *rbd = NULL;   /* bf16: B^T of gate and up, B_d^T as
                                                              rows; A_d as pairs */
    if (z->bf16) {
        rgu = swl_pack(&m, 0, 0, z->B[0], 1, r, r, n);
        swl_pack(&m, 1, 0, z->B[1], 1, r, r, n);   /* follows gate's (lora_bwd_rows) */
        if (dres)
            pad = swl_pack(&m, 2, 1, z->Ad, n, 1, r, n),
            rbd = swl_pack(&m, 3, 0, z->Bd, 1, r, r, C);
    } else {
        lora_transpose(m.g.bt, z->B, on, 2, r);
        if (dres)
            lora_transpose(m.bt, &z->Bd, &C, 1, r);
    }
#pragma omp parallel num_threads(swl_threads(z))
    {
        float *tg = swl_tile(&m, n), *tu = tg + (size_t)LORA_OUTER * n;
        float *ta = tu + (size_t)LORA_OUTER * n;
        const float *dyn[2] = {tg, tu};
#pragma omp for schedule(static)
        for (int p = 0; p < lora_parts(N); p++) {
            float *P = m.g.part + p * stride, *Pd = m.dA_parts + p * pd, *Pb = m.dB_parts + p * pb;
            memset(P, 0, stride * sizeof *P);
            if (dres)
                memset(Pd, 0, pd * sizeof *Pd), memset(Pb, 0, pb * sizeof *Pb);
            for (int n0 = p * LORA_PART, n1 = lora_part_end(N, p); n0 < n1; n0 += LORA_OUTER) {
                int rows = lora_outer_rows(n0, n1);
                if (dres) {   /* down's du and dB share, as k_lora_bwd's row pass */
                    const float *dyd = dres + (size_t)n0 * C;
                    lora_bwd_rows(NULL, 0.0f, Pb, &m.du, &dyd, &z->ud, &z->Ad, m.bt, rbd, NULL,
                                  &C, 1, n0, rows, 0, r, z->s);
                }
                swl_bwd_rows(tg, tu, ta, Pd, dgb, dub, dact, gate, up, ud, pad, z, n0, rows, n);
                lora_bwd_rows(NULL, 0.0f, P, m.g.du, dyn, z->u, z->A, m.g.bt, rgu, NULL, on, 2, n0,
                              rows, 0, r, z->s);
            }
        }
    }
}

void k_swiglu_lora_bwd_end(float *dx, float *const *dA, float *const *dB, const float *x,
                           const k_swiglu_lora *z, int N, int in, int n, float *scratch)
{
    int r = z->r, C = z->C;
    const int on[2] = {n, n};
    swl_mem m = swl_at(scratch, N, n, z);
    const uint16_t *pa = NULL;   /* bf16: A of gate and up as pairs, one after the other */
    if (z->bf16)
        pa = swl_pack(&m, 3, 1, z->A[0], in, 1, r, in), swl_pack(&m, 4, 1, z->A[1], in, 1, r, in);
#pragma omp parallel
    {
        if (dA[2]) {   /* down's dA [r, n] from its parts by slabs; its dB as any map's */
#pragma omp for schedule(static) nowait
            for (int b = 0; b < lora_slabs(n); b++)
                lora_parts_sum(dA[2], (size_t)n, 1, m.dA_parts, (size_t)r * n, lora_parts(N), n,
                               b * LORA_SLAB, lora_slab_width(n, b), r, 1.0f);
            lora_bwd_cols(&dA[2], &dB[2], NULL, NULL, &C, 1, N, 0, r, z->s, m.dB_parts);
        }
#pragma omp for schedule(static)
        for (int blk = 0; blk < lora_blocks(N); blk++) {   /* dx += du_k A_k */
            int n0 = blk * LORA_ROWS;
            lora_bwd_rows(dx, 1.0f, NULL, m.g.du, NULL, NULL, z->A, NULL, NULL, pa, on, 2, n0,
                          lora_block_rows(N, n0), in, r, 1.0f);
        }
        lora_bwd_cols(dA, dB, m.g.du, x, on, 2, N, in, r, z->s, m.g.part);
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
