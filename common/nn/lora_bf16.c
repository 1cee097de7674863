/* lora_bf16.c - see lora_bf16.h.
 *
 * Two versions of each product: AVX-512 with AVX512_BF16 (vdpbf16ps, in
 * functions compiled for it whatever the build's baseline), chosen once
 * when the CPU has it, and plain C that computes the same expression.  The
 * tests hold them to the same bits. */
#include "lora_bf16.h"

#include <string.h>

#include "bf16.h"

#define LB_LANES 16   /* fp32 sums per vector */
#define LB_STEP 32    /* bf16 elements per vector: a pair per lane */
#define LB_CHUNK 512  /* columns of M per pass over a block of rows (8 x 512 bf16: 8 KB, in L1) */
#define LB_ROWS 8     /* rows of x per block of the dots */
#define LB_KS 8       /* rows of M (k) whose sums stay in registers */

static int lb_min(int a, int b) { return a < b ? a : b; }

size_t lb_size(int r, int n) { return (size_t)((r + 1) / 2 * 2) * (size_t)n; }

void lb_pack(uint16_t *dst, int pairs, const float *src, size_t sk, size_t sj, int r, int n)
{
    int rr = pairs ? (r + 1) / 2 * 2 : r;
    for (int k = 0; k < rr; k++)
        for (int j = 0; j < n; j++) {
            uint16_t v = k < r ? bf16_from_f32(src[(size_t)k * sk + (size_t)j * sj]) : 0;
            if (pairs)
                dst[(size_t)(k / 2) * 2 * n + 2 * (size_t)j + k % 2] = v;
            else
                dst[(size_t)k * n + j] = v;
        }
}

/* The sum of 16 lanes by halves (v[l] + v[l + 8], then + 4, + 2, + 1):
 * kernels.c's lanes_sum order, so a dot ends as the fp32 ones do. */
static float lb_hsum(const float *v)
{
    float a[8];
    for (int l = 0; l < 8; l++)
        a[l] = v[l] + v[l + 8];
    for (int l = 0; l < 4; l++)
        a[l] += a[l + 4];
    a[0] += a[2], a[1] += a[3];
    return a[0] + a[1];
}

/* One lane of vdpbf16ps: t + a1 b1, then + a0 b0 (the products exact). */
static float lb_lane(float t, float a0, float b0, float a1, float b1)
{
    t += a1 * b1;
    return t + a0 * b0;
}

/* ---- plain C ---------------------------------------------------------- */

static float lb_f(uint16_t h) { return bf16_to_f32(h); }

static void lb_dots_plain(float *u, const float *x, int ldx, const uint16_t *R, int n, int r,
                          float s, int rows)
{
    for (int m = 0; m < rows; m++)
        for (int k = 0; k < r; k++) {
            float t[LB_LANES] = {0};
            const float *xm = x + (size_t)m * ldx;
            const uint16_t *rk = R + (size_t)k * n;
            for (int i = 0; i < n; i += LB_STEP)
                for (int l = 0; l < LB_LANES; l++) {
                    int j = i + 2 * l;
                    float x0 = j < n ? lb_f(bf16_from_f32(xm[j])) : 0.0f;
                    float x1 = j + 1 < n ? lb_f(bf16_from_f32(xm[j + 1])) : 0.0f;
                    float m0 = j < n ? lb_f(rk[j]) : 0.0f, m1 = j + 1 < n ? lb_f(rk[j + 1]) : 0.0f;
                    t[l] = lb_lane(t[l], x0, m0, x1, m1);
                }
            u[(size_t)m * r + k] = s * lb_hsum(t);
        }
}

static void lb_axpys_plain(float *y, int ldy, const float *y0, int ld0, const float *bias,
                           const float *c, const uint16_t *P, int n, int r, float s, int rows)
{
    for (int m = 0; m < rows; m++) {
        const float *cm = c + (size_t)m * r;
        for (int q = 0; q < (r + 1) / 2; q++) {   /* bf16(s c) of the pair, padded with a 0 */
            float c0 = lb_f(bf16_from_f32(s * cm[2 * q]));
            float c1 = 2 * q + 1 < r ? lb_f(bf16_from_f32(s * cm[2 * q + 1])) : 0.0f;
            const uint16_t *pq = P + (size_t)q * 2 * n;
            float *ym = y + (size_t)m * ldy;
            const float *zm = q ? ym : y0 ? y0 + (size_t)m * ld0 : NULL, *bj = q ? NULL : bias;
            for (int j = 0; j < n; j++) {
                float t = zm ? zm[j] : 0.0f;
                if (bj)
                    t += bj[j];
                ym[j] = lb_lane(t, c0, lb_f(pq[2 * j]), c1, lb_f(pq[2 * j + 1]));
            }
        }
    }
}

/* ---- AVX512_BF16 ------------------------------------------------------ */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define LB_HAVE_NATIVE 1
#define LB_NATIVE __attribute__((target("avx512f,avx512bw,avx512dq,avx512bf16")))
#define LB_INLINE static inline __attribute__((always_inline))
/* The loops over the k (and rows) whose sums stay in registers are
 * unrolled: GCC at -O2 keeps such an array on the stack otherwise, a
 * store and a load around every vdpbf16ps (4x slower here). */
#define LB_UNROLL _Pragma("GCC unroll 8")

/* 32 values of x from p (w of them, the rest 0) rounded to bf16 (the
 * instruction rounds to nearest even, as bf16_from_f32). */
LB_NATIVE LB_INLINE __m512bh lb_x32(const float *p, int w)
{
    __mmask16 lo = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
    __mmask16 hi = w >= 32 ? 0xffff : w <= 16 ? 0 : (__mmask16)((1u << (w - 16)) - 1);
    return _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, p + 16), _mm512_maskz_loadu_ps(lo, p));
}

/* 32 bf16 values from p (w of them, the rest 0). */
LB_NATIVE LB_INLINE __m512bh lb_m32(const uint16_t *p, int w)
{
    __mmask32 m = w >= 32 ? 0xffffffffu : (__mmask32)((1u << w) - 1);
    return (__m512bh)_mm512_maskz_loadu_epi16(m, p);
}

/* lb_hsum's tree on a vector: halves of 8, 4, 2 and 1 lanes added in turn
 * (the same additions, so the same bits). */
LB_NATIVE LB_INLINE float lb_hsum_v(__m512 v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

/* a[k] += the pairs' products of x's columns [i0, i1) and M's row k0 + k,
 * k < G; the full vectors first, then one masked one to n. */
LB_NATIVE LB_INLINE void lb_dots_span(__m512 *a, const float *x, const uint16_t *R, int n, int i0,
                                      int i1, const int G)
{
    int i = i0;
    for (; i + LB_STEP <= i1; i += LB_STEP) {
        __m512bh xv = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        LB_UNROLL
        for (int k = 0; k < G; k++)
            a[k] = _mm512_dpbf16_ps(a[k], xv, (__m512bh)_mm512_loadu_si512(R + (size_t)k * n + i));
    }
    if (i < i1) {
        __m512bh xv = lb_x32(x + i, n - i);
        LB_UNROLL
        for (int k = 0; k < G; k++)
            a[k] = _mm512_dpbf16_ps(a[k], xv, lb_m32(R + (size_t)k * n + i, n - i));
    }
}

/* The dots of rows < LB_ROWS against M's rows k0..k0+G: their 16-lane
 * sums in acc, M in chunks of LB_CHUNK columns for all rows. */
LB_NATIVE LB_INLINE void lb_dots_g(float *u, const float *x, int ldx, const uint16_t *R, int n,
                                   int r, int k0, float s, int rows, const int G)
{
    __m512 acc[LB_ROWS][LB_KS];
    for (int m = 0; m < rows; m++)
        LB_UNROLL
        for (int k = 0; k < G; k++)
            acc[m][k] = _mm512_setzero_ps();
    const uint16_t *Rk = R + (size_t)k0 * n;
    for (int i0 = 0; i0 < n; i0 += LB_CHUNK) {
        int i1 = lb_min(n, i0 + LB_CHUNK);
        for (int m = 0; m < rows; m++) {
            __m512 a[LB_KS];
            LB_UNROLL
            for (int k = 0; k < G; k++)
                a[k] = acc[m][k];
            lb_dots_span(a, x + (size_t)m * ldx, Rk, n, i0, i1, G);
            LB_UNROLL
            for (int k = 0; k < G; k++)
                acc[m][k] = a[k];
        }
    }
    for (int m = 0; m < rows; m++)
        for (int k = 0; k < G; k++)
            u[(size_t)m * r + k0 + k] = s * lb_hsum_v(acc[m][k]);
}

LB_NATIVE static void lb_dots_native(float *u, const float *x, int ldx, const uint16_t *R, int n,
                                     int r, float s, int rows)
{
    for (int m0 = 0; m0 < rows; m0 += LB_ROWS) {
        int rm = lb_min(LB_ROWS, rows - m0);
        const float *xm = x + (size_t)m0 * ldx;
        float *um = u + (size_t)m0 * r;
        for (int k = 0; k < r;) {
            if (r - k >= 8)
                lb_dots_g(um, xm, ldx, R, n, r, k, s, rm, 8), k += 8;
            else if (r - k >= 4)
                lb_dots_g(um, xm, ldx, R, n, r, k, s, rm, 4), k += 4;
            else
                lb_dots_g(um, xm, ldx, R, n, r, k, s, rm, 1), k += 1;
        }
    }
}

/* One vector of columns j of NP rows (ldy apart) over Q pairs from q0:
 * each load of P serves the NP rows; w masks the columns. */
LB_NATIVE LB_INLINE void lb_axpys_v(float *y, int ldy, const float *z, int ldz, const float *bias,
                                    const __m512i *cb, const uint16_t *P, int n, int j,
                                    __mmask16 w, const int Q, const int NP)
{
    __m512 t[2];
    LB_UNROLL
    for (int p = 0; p < NP; p++) {
        t[p] = z ? _mm512_maskz_loadu_ps(w, z + (size_t)p * ldz + j) : _mm512_setzero_ps();
        if (bias)
            t[p] = _mm512_add_ps(t[p], _mm512_maskz_loadu_ps(w, bias + j));
    }
    LB_UNROLL
    for (int q = 0; q < Q; q++) {
        __m512bh mq = (__m512bh)_mm512_maskz_loadu_epi32(w, P + (size_t)q * 2 * n + 2 * j);
        LB_UNROLL
        for (int p = 0; p < NP; p++)
            t[p] = _mm512_dpbf16_ps(t[p], (__m512bh)cb[p * 4 + q], mq);
    }
    LB_UNROLL
    for (int p = 0; p < NP; p++)
        _mm512_mask_storeu_ps(y + (size_t)p * ldy + j, w, t[p]);
}

/* Columns [j0, j1) of NP rows (1 or 2) over Q pairs from q0. */
LB_NATIVE LB_INLINE void lb_axpys_g(float *y, int ldy, const float *z, int ldz, const float *bias,
                                    const float *c, int r, int q0, const uint16_t *P, int n,
                                    float s, int j0, int j1, const int Q, const int NP)
{
    __m512i cb[2 * 4];   /* [p * 4 + q]: the pair q of row p's bf16(s c), broadcast */
    for (int p = 0; p < NP; p++)
        for (int q = 0; q < Q; q++) {
            int k = 2 * (q0 + q);
            uint32_t lo = bf16_from_f32(s * c[(size_t)p * r + k]);
            uint32_t hi = k + 1 < r ? bf16_from_f32(s * c[(size_t)p * r + k + 1]) : 0;
            cb[p * 4 + q] = _mm512_set1_epi32((int)(lo | hi << 16));
        }
    const uint16_t *Pq = P + (size_t)q0 * 2 * n;
    int j = j0;
    for (; j + LB_LANES <= j1; j += LB_LANES)
        lb_axpys_v(y, ldy, z, ldz, bias, cb, Pq, n, j, 0xffff, Q, NP);
    if (j < j1)
        lb_axpys_v(y, ldy, z, ldz, bias, cb, Pq, n, j, (__mmask16)((1u << (j1 - j)) - 1), Q, NP);
}

#define LB_AXPYS_Q(Q, NP)                                                                         \
    lb_axpys_g(y + (size_t)m * ldy, ldy, z ? z + (size_t)m * ldz : NULL, ldz, bz,                \
               c + (size_t)m * r, r, q0, P, n, s, j0, j1, Q, NP)

LB_NATIVE static void lb_axpys_native(float *y, int ldy, const float *y0, int ld0,
                                      const float *bias, const float *c, const uint16_t *P, int n,
                                      int r, float s, int rows)
{
    int pairs = (r + 1) / 2;
    for (int q0 = 0, Q; q0 < pairs; q0 += Q) {   /* 4 pairs (8 k) at a time; later ones add to y */
        Q = pairs - q0 >= 4 ? 4 : 1;
        const float *z = q0 ? y : y0, *bz = q0 ? NULL : bias;
        int ldz = q0 ? ldy : ld0;
        for (int j0 = 0; j0 < n; j0 += LB_CHUNK) {
            int j1 = lb_min(n, j0 + LB_CHUNK), m = 0;
            for (; m + 2 <= rows; m += 2) {
                if (Q == 4)
                    LB_AXPYS_Q(4, 2);
                else
                    LB_AXPYS_Q(1, 2);
            }
            if (m < rows) {
                if (Q == 4)
                    LB_AXPYS_Q(4, 1);
                else
                    LB_AXPYS_Q(1, 1);
            }
        }
    }
}
#else
#define LB_HAVE_NATIVE 0
#endif

/* ---- the choice ------------------------------------------------------- */

/* -1 until first asked (threads may ask at once: all write the same value) */
static int lb_use_native = -1;

int lb_native(void)
{
    int v = __atomic_load_n(&lb_use_native, __ATOMIC_RELAXED);
    if (v < 0) {
#if LB_HAVE_NATIVE
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
#else
        v = 0;
#endif
        __atomic_store_n(&lb_use_native, v, __ATOMIC_RELAXED);
    }
    return v;
}

int lb_emulate(int on)
{
    __atomic_store_n(&lb_use_native, on ? 0 : -1, __ATOMIC_RELAXED);
    return lb_native();
}

void lb_dots(float *u, const float *x, int ldx, const uint16_t *R, int n, int r, float s, int rows)
{
#if LB_HAVE_NATIVE
    if (lb_native()) {
        lb_dots_native(u, x, ldx, R, n, r, s, rows);
        return;
    }
#endif
    lb_dots_plain(u, x, ldx, R, n, r, s, rows);
}

void lb_axpys(float *y, int ldy, const float *y0, int ld0, const float *bias, const float *c,
              const uint16_t *P, int n, int r, float s, int rows)
{
#if LB_HAVE_NATIVE
    if (lb_native()) {
        lb_axpys_native(y, ldy, y0, ld0, bias, c, P, n, r, s, rows);
        return;
    }
#endif
    lb_axpys_plain(y, ldy, y0, ld0, bias, c, P, n, r, s, rows);
}
