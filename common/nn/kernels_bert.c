/* kernels_bert.c - see kernels_bert.h.  The matrix products go through
 * k_gemm (kernels.h), whose result does not depend on the thread count. */
#include "kernels_bert.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

#define INV_SQRT2 0.70710678118654752
#define INV_SQRT_2PI 0.39894228040143268

void k_gelu_erf_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * INV_SQRT2)));
}

void k_gelu_erf_bwd(float *dx, const float *dy, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        double cdf = 0.5 * (1.0 + erf(xi * INV_SQRT2)), pdf = INV_SQRT_2PI * exp(-0.5 * xi * xi);
        dx[i] = (float)(dy[i] * (cdf + xi * pdf));
    }
}

void k_postln_fwd(float *y, float *mean, float *rstd, const float *s, const float *w,
                  const float *b, int N, int C, float eps)
{
    k_layernorm_fwd(y, mean, rstd, s, w, b, N, C, eps);
}

void k_postln_bwd(float *ds, const float *dy, const float *s, const float *mean, const float *rstd,
                  const float *w, int N, int C)
{
    memset(ds, 0, (size_t)N * C * sizeof *ds);
    k_layernorm_bwd(ds, dy, s, mean, rstd, w, N, C);
}

/* ---- bidirectional attention with a padding mask ---- */

static float dotf(const float *a, const float *b, int D)
{
    float s = 0.0f;
    for (int d = 0; d < D; d++)
        s += a[d] * b[d];
    return s;
}

/* One (b, h): rows t of this sequence's att block [T, T]. */
static void att_fwd_bh(float *out, float *att, const float *q, const float *k, const float *v,
                       int L, int T, int D, int ld, int ldo, float scale)
{
    for (int t = 0; t < T; t++) {
        float *a = att + (size_t)t * T, mx = -INFINITY;
        const float *qt = q + (size_t)t * ld;
        for (int j = 0; j < L; j++) {
            a[j] = dotf(qt, k + (size_t)j * ld, D) * scale;
            mx = a[j] > mx ? a[j] : mx;
        }
        double sum = 0.0;
        for (int j = 0; j < L; j++) {
            a[j] = expf(a[j] - mx);
            sum += a[j];
        }
        for (int j = 0; j < L; j++)
            a[j] = (float)(a[j] / sum);
        for (int j = L; j < T; j++)
            a[j] = 0.0f;
        float *o = out + (size_t)t * ldo;
        memset(o, 0, (size_t)D * sizeof *o);
        for (int j = 0; j < L; j++)
            for (int d = 0; d < D; d++)
                o[d] += a[j] * v[(size_t)j * ld + d];
    }
}

void k_attention_bidir_fwd(float *out, float *att, const float *q, const float *k,
                           const float *v, const int32_t *len, int B, int T, int H, int D, int ld)
{
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t row = (size_t)b * T * ld + (size_t)h * D;
            att_fwd_bh(out + (size_t)b * T * (size_t)H * D + (size_t)h * D,
                       att + ((size_t)b * H + h) * T * T, q + row, k + row, v + row, len[b], T, D,
                       ld, H * D, scale);
        }
}

/* One (b, h) of the backward; the dq, dk, dv rows of this head are overwritten. */
static void att_bwd_bh(float *dq, float *dk, float *dv, const float *dout, int ldo, const float *q,
                       const float *k, const float *v, const float *att, int L, int T, int D,
                       int ld, float scale)
{
    for (int t = 0; t < T; t++) {
        memset(dq + (size_t)t * ld, 0, (size_t)D * sizeof *dq);
        memset(dk + (size_t)t * ld, 0, (size_t)D * sizeof *dk);
        memset(dv + (size_t)t * ld, 0, (size_t)D * sizeof *dv);
    }
    float ds[L];   /* da_tj of one query row (L <= T) */
    for (int t = 0; t < T; t++) {
        const float *a = att + (size_t)t * T, *go = dout + (size_t)t * ldo;
        double dot = 0.0;
        for (int j = 0; j < L; j++) {
            ds[j] = dotf(go, v + (size_t)j * ld, D);   /* da_tj */
            dot += (double)a[j] * ds[j];
        }
        for (int j = 0; j < L; j++) {
            float *dvj = dv + (size_t)j * ld, *dkj = dk + (size_t)j * ld;
            for (int d = 0; d < D; d++)
                dvj[d] += a[j] * go[d];
            float g = a[j] * (ds[j] - (float)dot) * scale;
            const float *kj = k + (size_t)j * ld, *qt = q + (size_t)t * ld;
            float *dqt = dq + (size_t)t * ld;
            for (int d = 0; d < D; d++) {
                dqt[d] += g * kj[d];
                dkj[d] += g * qt[d];
            }
        }
    }
}

void k_attention_bidir_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                           const float *k, const float *v, const float *att, const int32_t *len,
                           int B, int T, int H, int D, int ld)
{
    float scale = 1.0f / sqrtf((float)D);
    int ldo = H * D;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t row = (size_t)b * T * ld + (size_t)h * D;
            att_bwd_bh(dq + row, dk + row, dv + row, dout + (size_t)b * T * ldo + (size_t)h * D,
                       ldo, q + row, k + row, v + row, att + ((size_t)b * H + h) * T * T, len[b],
                       T, D, ld, scale);
        }
}

/* ---- pooler ---- */

void k_rows_gather(float *dst, const float *x, const int32_t *idx, int n, int C)
{
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * C, x + (size_t)idx[i] * C, (size_t)C * sizeof *dst);
}

void k_rows_scatter_add(float *dx, const float *drows, const int32_t *idx, int n, int C)
{
    for (int i = 0; i < n; i++)
        k_add(dx + (size_t)idx[i] * C, drows + (size_t)i * C, (size_t)C);
}

void k_tanh_fwd(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}

void k_tanh_bwd(float *dx, const float *dy, const float *y, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

/* ---- heads: cross-entropy over a linear map of rows ---- */

static int32_t argmax(const float *r, int V)
{
    int32_t best = 0;
    for (int j = 1; j < V; j++)
        if (r[j] > r[best])
            best = j;
    return best;
}

void k_argmax_rows(int32_t *out, const float *L, int m, int V)
{
    for (int i = 0; i < m; i++)
        out[i] = argmax(L + (size_t)i * V, V);
}

/* Rows of L [m, V] whose argmax is their target. */
static int count_argmax(const float *L, const int32_t *tgt, int m, int V)
{
    int n = 0;
    for (int i = 0; i < m; i++)
        n += tgt[i] >= 0 && tgt[i] < V && argmax(L + (size_t)i * V, V) == tgt[i];
    return n;
}

/* logits[m, V] = x[m, C] E^T + bias. */
static void logits_fwd(float *L, const float *x, const float *E, const float *bias, int m, int C,
                       int V)
{
    for (int i = 0; i < m; i++)
        memcpy(L + (size_t)i * V, bias, (size_t)V * sizeof *L);
    k_gemm(CblasNoTrans, CblasTrans, m, V, C, 1.0f, x, C, E, C, 1.0f, L, V);
}

double k_cls_xent(float *dx, float *dW, float *db, float *scratch, const float *x, const float *W,
                  const float *b, const int32_t *label, int B, int C, int K, int32_t *pred)
{
    logits_fwd(scratch, x, W, b, B, C, K);
    if (pred)
        k_argmax_rows(pred, scratch, B, K);
    double loss = k_xent_rows(scratch, label, B, K, dx != NULL);
    if (!dx)
        return loss;
    k_gemm(CblasNoTrans, CblasNoTrans, B, C, K, 1.0f, scratch, K, W, C, 0.0f, dx, C);
    if (dW)
        k_linear_bwd_w(dW, db, scratch, x, B, C, K, 0);
    return loss;
}

double k_decoder_xent(float *dx, float *scratch, const float *x, const float *E,
                      const float *bias, const int32_t *tgt, int M, int C, int V, int chunk,
                      int *correct)
{
    double loss = 0.0;
    if (correct)
        *correct = 0;
    for (int r0 = 0; r0 < M; r0 += chunk) {
        int m = M - r0 < chunk ? M - r0 : chunk;
        logits_fwd(scratch, x + (size_t)r0 * C, E, bias, m, C, V);
        if (correct)
            *correct += count_argmax(scratch, tgt + r0, m, V);
        loss += k_xent_rows(scratch, tgt + r0, m, V, dx != NULL);
        if (dx)
            k_gemm(CblasNoTrans, CblasNoTrans, m, C, V, 1.0f, scratch, V, E, C, 0.0f,
                   dx + (size_t)r0 * C, C);
    }
    return loss;
}
