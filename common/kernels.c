/* kernels.c - see kernels.h.
 *
 * Matrix products go through cblas_sgemm (row-major).  Loops parallelise over
 * independent rows or (batch, head) blocks only, and every sum is formed by a
 * single thread in a fixed order, so results do not depend on the thread count.
 *
 * OpenBLAS's own threading does change the rounding with the thread count
 * (measured: a 300x64x500 sgemm differs in 2/3 of its outputs between 1 and 2
 * threads), so no product here is left to it: gemm_tiled cuts the output into
 * blocks fixed by the shape alone and runs one sgemm per block inside an OpenMP
 * region, where the OpenMP OpenBLAS runs single-threaded (omp_in_parallel). */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#define GELU_C 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f
#define XENT_BLOCK 256 /* rows whose losses are held before the ordered sum */
#define GEMM_TILE 256  /* rows (or columns) of C per single-threaded sgemm */

/* C[M,N] = alpha op(A) op(B) + beta C, row-major, in blocks of GEMM_TILE rows of C
 * (of columns when N > M).  Each block keeps the whole K sum in one sgemm call, and
 * the cut depends on M and N only, so the result is the same for any thread count. */
static void gemm_tiled(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc)
{
    int by_rows = M >= N, len = by_rows ? M : N;
    int nt = (len + GEMM_TILE - 1) / GEMM_TILE;
#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < nt; t++) {
        int o = t * GEMM_TILE, n = len - o < GEMM_TILE ? len - o : GEMM_TILE;
        if (by_rows)
            cblas_sgemm(CblasRowMajor, ta, tb, n, N, K, alpha,
                        ta == CblasNoTrans ? A + (size_t)o * lda : A + o, lda, B, ldb, beta,
                        C + (size_t)o * ldc, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda,
                        tb == CblasNoTrans ? B + o : B + (size_t)o * ldb, ldb, beta, C + o, ldc);
    }
}

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
            for (int c = 0; c < C; c++)
                xr[c] = er[c] + pr[c];
        } else {
            memcpy(xr, er, (size_t)C * sizeof *xr);
        }
    }
}

/* Per row: mean, population variance (double accumulation), rstd = 1/sqrt(var+eps),
 * y = (x - mean) * rstd * w + b. */
void k_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                     const float *b, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double s = 0, ss = 0;
        for (int c = 0; c < C; c++)
            s += xr[c];
        float m = (float)(s / C);
        for (int c = 0; c < C; c++) {
            double d = (double)xr[c] - m;
            ss += d * d;
        }
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++)
            yr[c] = (xr[c] - m) * r * w[c] + b[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

/* With g = w * dy and xhat = (x - mean) * rstd, per row:
 * dx += rstd * (g - mean(g) - xhat * mean(g * xhat))   (llm.c's form). */
void k_layernorm_bwd(float *dx, const float *dy, const float *x, const float *mean,
                     const float *rstd, const float *w, int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float m = mean[n], r = rstd[n];
        double sg = 0, sgx = 0;
        for (int c = 0; c < C; c++) {
            float g = w[c] * dyr[c];
            sg += g;
            sgx += (double)g * ((xr[c] - m) * r);
        }
        float mg = (float)(sg / C), mgx = (float)(sgx / C);
        for (int c = 0; c < C; c++) {
            float xhat = (xr[c] - m) * r;
            dxr[c] += r * (w[c] * dyr[c] - mg - xhat * mgx);
        }
    }
}

/* y = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). */
void k_gelu_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float u = GELU_C * (xi + GELU_A * xi * xi * xi);
        y[i] = 0.5f * xi * (1.0f + tanhf(u));
    }
}

/* gelu'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2). */
void k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float xi = x[i];
        float th = tanhf(GELU_C * (xi + GELU_A * xi * xi * xi));
        float du = GELU_C * (1.0f + 3.0f * GELU_A * xi * xi);
        float d = 0.5f * (1.0f + th) + 0.5f * xi * (1.0f - th * th) * du;
        dx[i] = dy[i] * d;
    }
}

/* y[N,out] = x[N,in] W^T + b: W [out,in] read transposed (conv1d 0) or W [in,out]
 * read as it lies (conv1d 1); no transposed copy either way. */
void k_linear_fwd(float *y, const float *x, const float *w, const float *b, int N, int in, int out,
                  int conv1d)
{
    gemm_tiled(CblasNoTrans, conv1d ? CblasNoTrans : CblasTrans, N, out, in, 1.0f, x, in, w,
               conv1d ? out : in, 0.0f, y, out);
    if (!b)
        return;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *yr = y + (size_t)n * out;
        for (int o = 0; o < out; o++)
            yr[o] += b[o];
    }
}

/* dx[N,in] = beta dx + dy[N,out] W (W [out,in]), or dy W^T when W is [in,out]. */
void k_linear_bwd(float *dx, const float *dy, const float *w, int N, int in, int out, int conv1d,
                  float beta)
{
    gemm_tiled(CblasNoTrans, conv1d ? CblasTrans : CblasNoTrans, N, in, out, 1.0f, dy, out, w,
               conv1d ? out : in, beta, dx, in);
}

/* u[N,r] = x A^T;  y[N,out] += s u B^T.  A [r,in], B [out,r]. */
void k_lora_fwd(float *y, float *u, const float *x, const float *A, const float *B, int N, int in,
                int out, int r, float s)
{
    gemm_tiled(CblasNoTrans, CblasTrans, N, r, in, 1.0f, x, in, A, in, 0.0f, u, r);
    gemm_tiled(CblasNoTrans, CblasTrans, N, out, r, s, u, r, B, r, 1.0f, y, out);
}

/* dB += s dy^T u;  du = s dy B;  dA += du^T x;  dx += du A (dx may be NULL). */
void k_lora_bwd(float *dx, float *dA, float *dB, float *du, const float *dy, const float *x,
                const float *u, const float *A, const float *B, int N, int in, int out, int r,
                float s)
{
    gemm_tiled(CblasTrans, CblasNoTrans, out, r, N, s, dy, out, u, r, 1.0f, dB, r);
    gemm_tiled(CblasNoTrans, CblasNoTrans, N, r, out, s, dy, out, B, r, 0.0f, du, r);
    gemm_tiled(CblasTrans, CblasNoTrans, r, in, N, 1.0f, du, r, x, in, 1.0f, dA, in);
    if (dx)
        gemm_tiled(CblasNoTrans, CblasNoTrans, N, in, r, 1.0f, du, r, A, in, 1.0f, dx, in);
}

/* In place on the scores S [T,T]: row t becomes softmax(S[t,0..t]), zeros for j > t. */
static void attn_softmax_causal(float *S, int T)
{
    for (int t = 0; t < T; t++) {
        float *row = S + (size_t)t * T;
        float mx = row[0];
        for (int j = 1; j <= t; j++)
            mx = fmaxf(mx, row[j]);
        double sum = 0;
        for (int j = 0; j <= t; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j <= t; j++)
            row[j] *= inv;
        for (int j = t + 1; j < T; j++)
            row[j] = 0.0f;
    }
}

/* Per (b, h): att = causal_softmax(q_h k_g^T / sqrt(D)) [T,T]; out_h = att v_g with
 * g = h / (H/Hk); out_h is the column block h*D of out [N, H*D]. */
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, scale, qh, ldq, kg, ldk,
                        0.0f, P, T);
            attn_softmax_causal(P, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, P, T, vg, ldv,
                        0.0f, out + (size_t)b * T * ldo + (size_t)h * D, ldo);
        }
    }
}

/* In place on dP [T,T]: dS = P * (dP - rowsum(dP * P)) * scale (zero where P is masked). */
static void attn_softmax_bwd(float *dP, const float *P, int T, float scale)
{
    for (int t = 0; t < T; t++) {
        float *dr = dP + (size_t)t * T;
        const float *pr = P + (size_t)t * T;
        double rs = 0;
        for (int j = 0; j <= t; j++)
            rs += (double)dr[j] * pr[j];
        float fr = (float)rs;
        for (int j = 0; j <= t; j++)
            dr[j] = pr[j] * (dr[j] - fr) * scale;
        for (int j = t + 1; j < T; j++)
            dr[j] = 0.0f;
    }
}

/* Per (b, kv head g), one thread walks the query heads h of the group in order:
 *   dP = dout_h v_g^T;  dS = softmax backward;  dq_h = dS k_g;
 *   dk_g (+)= dS^T q_h;  dv_g (+)= P^T dout_h   (the first head overwrites). */
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
                const float *doh = dout + (size_t)b * T * ldo + (size_t)h * D;
                const float *P = att + ((size_t)b * H + h) * T * T;
                float *dS = scratch + ((size_t)b * H + h) * T * T;
                float beta = i == 0 ? 0.0f : 1.0f;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, D, 1.0f, doh, ldo,
                            v + vofs, ldv, 0.0f, dS, T);
                attn_softmax_bwd(dS, P, T, scale);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, D, T, 1.0f, dS, T,
                            k + kofs, ldk, 0.0f, dq + qofs, ldq);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, dS, T, q + qofs,
                            ldq, beta, dk + kofs, ldk);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, D, T, 1.0f, P, T, doh, ldo,
                            beta, dv + vofs, ldv);
            }
        }
    }
}

/* One row of logits [V]: returns lse - logit[tgt] (0 when tgt is out of [0, V)).
 * With grad, the row becomes softmax - onehot(tgt) (all zero for an ignored row).
 * Targets >= V are treated as ignored to stay in bounds; the data layer rejects them. */
static double xent_row(float *row, int32_t tgt, int V, int grad)
{
    if (tgt < 0 || tgt >= V) {
        if (grad)
            memset(row, 0, (size_t)V * sizeof *row);
        return 0.0;
    }
    float mx = row[0], lt = row[tgt];
    for (int j = 1; j < V; j++)
        mx = fmaxf(mx, row[j]);
    double sum = 0;
    if (grad) {
        for (int j = 0; j < V; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < V; j++)
            row[j] *= inv;
        row[tgt] -= 1.0f;
    } else {
        for (int j = 0; j < V; j++)
            sum += expf(row[j] - mx);
    }
    return (double)mx + log(sum) - (double)lt;
}

/* Rows of logits [m,V] in parallel; their losses are added to *loss in row order. */
static void xent_rows(double *loss, float *logits, const int32_t *tgt, int m, int V, int grad)
{
    double row_loss[XENT_BLOCK];
    for (int i0 = 0; i0 < m; i0 += XENT_BLOCK) {
        int nb = m - i0 < XENT_BLOCK ? m - i0 : XENT_BLOCK;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++)
            row_loss[i] = xent_row(logits + (size_t)(i0 + i) * V, tgt[i0 + i], V, grad);
        for (int i = 0; i < nb; i++)
            *loss += row_loss[i];
    }
}

/* For each chunk of rows: logits [m,V] = x E^T in scratch; per-row cross-entropy;
 * with dx, scratch becomes softmax - onehot and dx [m,C] = scratch E. */
double k_lmhead_xent(float *dx, float *scratch, const float *x, const float *E, const int32_t *tgt,
                     int N, int C, int V, int chunk)
{
    double loss = 0.0;
    if (chunk < 1)
        chunk = 1;
    for (int n0 = 0; n0 < N; n0 += chunk) {
        int m = N - n0 < chunk ? N - n0 : chunk;
        gemm_tiled(CblasNoTrans, CblasTrans, m, V, C, 1.0f, x + (size_t)n0 * C, C, E, C, 0.0f,
                   scratch, V);
        xent_rows(&loss, scratch, tgt + n0, m, V, dx != NULL);
        if (dx)
            gemm_tiled(CblasNoTrans, CblasNoTrans, m, C, V, 1.0f, scratch, V, E, C, 0.0f,
                       dx + (size_t)n0 * C, C);
    }
    return loss;
}

/* y[i] += a[i] */
void k_add(float *y, const float *a, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] += a[i];
}

/* ---- Llama family ---------------------------------------------------------- */

/* Per row: ms = mean(x^2) (double accumulation), rstd = 1/sqrt(ms + eps), y = x rstd w. */
void k_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int N, int C, float eps)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int c = 0; c < C; c++)
            yr[c] = xr[c] * r * w[c];
        rstd[n] = r;
    }
}

/* With g = w dy, per row: dx += rstd g - x rstd^3 mean(g x)  (d rstd/dx_j = -x_j rstd^3 / C). */
void k_rmsnorm_bwd(float *dx, const float *dy, const float *x, const float *rstd, const float *w,
                   int N, int C)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *dyr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float r = rstd[n];
        double sgx = 0;
        for (int c = 0; c < C; c++)
            sgx += (double)(w[c] * dyr[c]) * xr[c];
        float k = (float)(sgx / C) * r * r * r;
        for (int c = 0; c < C; c++)
            dxr[c] += r * w[c] * dyr[c] - xr[c] * k;
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

/* Rotates the pairs (i, i + D/2) of every head of every row by +angle (dir 1)
 * or -angle (dir -1, the transpose, for the backward). */
static void rope_rotate(float *x, const float *cs, const float *sn, int N, int T, int nh, int D,
                        int ld, float dir)
{
    int half = D / 2;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *c = cs + (size_t)(n % T) * half, *s = sn + (size_t)(n % T) * half;
        for (int h = 0; h < nh; h++) {
            float *a = x + (size_t)n * ld + (size_t)h * D, *b = a + half;
            for (int i = 0; i < half; i++) {
                float lo = a[i], hi = b[i], si = dir * s[i];
                a[i] = lo * c[i] - hi * si;
                b[i] = hi * c[i] + lo * si;
            }
        }
    }
}

void k_rope_fwd(float *x, const float *cs, const float *sn, int N, int T, int nh, int D, int ld)
{
    rope_rotate(x, cs, sn, N, T, nh, D, ld, 1.0f);
}

/* d(lo) = dlo cos + dhi sin, d(hi) = dhi cos - dlo sin: the rotation by -angle. */
void k_rope_bwd(float *dx, const float *cs, const float *sn, int N, int T, int nh, int D, int ld)
{
    rope_rotate(dx, cs, sn, N, T, nh, D, ld, -1.0f);
}

/* y = g sigmoid(g) u. */
void k_swiglu_fwd(float *y, const float *gate, const float *up, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* s = sigmoid(g): dgate = dy u s (1 + g (1 - s)), dup = dy g s; dy read before dgate is written. */
void k_swiglu_bwd(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                  size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i], d = dy[i], s = 1.0f / (1.0f + expf(-g));
        dup[i] = d * g * s;
        dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
    }
}
