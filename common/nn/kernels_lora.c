/* kernels_lora.c - see kernels_lora.h: the LoRA's skinny products, alone,
 * in groups of maps sharing an input, on rows of the caller's choosing, and
 * folded into Llama's SwiGLU.
 *
 * As in kernels.c, every sum is formed by a single thread in an order fixed
 * by the indices, so results do not depend on the thread count. */
#include "kernels_lora.h"

#include <omp.h>
#include <string.h>

#include "kernels.h"
#include "kernels_impl.h"
#include "lora_bf16.h"
#include "vec.h"

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

/* One block of rows [n0, n0 + rows) of the forward (kernels_lora.h), act in
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
    k_swiglu_span(ta, gate + o, up + o, len);
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
        k_swiglu_bwd_span(tg, tu, dact + o, gate + o, up + o, len);
    } else {   /* down's LoRA dx, as k_lora_bwd adds it (beta 1) */
        const float *udn = ud + (size_t)n0 * z->r;
        lora_axpys_m(tg, dact + o, n, NULL, udn, z->Ad, pad, n, z->r, 1.0f, rows);
        k_swiglu_bwd_act_span(tg, tu, ta, tg, gate + o, up + o, len);
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
