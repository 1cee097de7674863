/* lowrank.c - SVD of dW from its core, spectrum summaries, phi, projections. */
#include "lowrank.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static double *lr_alloc(size_t n) { return malloc((n ? n : 1) * sizeof(double)); }

static int lr_lapack_fail(pl_err *e, const char *fn, lapack_int info)
{
    return pl_errf(e, "%s failed (info %d)", fn, (int)info);
}

/* Thin QR of m (n x c, column-major, destroyed): q n x kq, r kq x c with
 * kq = min(n, c); m = q r. */
static int lr_qr(double *m, int n, int c, double *q, double *r, pl_err *e)
{
    int kq = n < c ? n : c;
    double *tau = lr_alloc((size_t)kq);
    if (!tau)
        return pl_errf(e, "out of memory");
    lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, n, c, m, n, tau);
    if (info) {
        free(tau);
        return lr_lapack_fail(e, "LAPACKE_dgeqrf", info);
    }
    for (int j = 0; j < c; j++)
        for (int i = 0; i < kq; i++)
            r[i + (size_t)j * kq] = i <= j ? m[i + (size_t)j * n] : 0.0;
    info = LAPACKE_dorgqr(LAPACK_COL_MAJOR, n, kq, kq, m, n, tau);
    free(tau);
    if (info)
        return lr_lapack_fail(e, "LAPACKE_dorgqr", info);
    memcpy(q, m, (size_t)n * kq * sizeof(double));
    return 0;
}

/* Thin SVD of m (rows x cols, column-major, destroyed): s [mn], u rows x mn,
 * vt mn x cols, mn = min(rows, cols). */
static int lr_svd(double *m, int rows, int cols, double *s, double *u, double *vt, pl_err *e)
{
    int mn = rows < cols ? rows : cols;
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'S', rows, cols, m, rows, s, u, rows, vt,
                                     mn);
    return info ? lr_lapack_fail(e, "LAPACKE_dgesdd", info) : 0;
}

/* dst (n x k) = a (n x c) * b (c x k), or b^T when b is given as k x c. */
static void lr_mul(double *dst, const double *a, int n, int c, const double *b, int k, int b_t)
{
    cblas_dgemm(CblasColMajor, CblasNoTrans, b_t ? CblasTrans : CblasNoTrans, n, k, c, 1.0, a,
                n, b, b_t ? k : c, 0.0, dst, n);
}

void lr_delta_free(lr_delta *d)
{
    free(d->sv);
    free(d->u);
    free(d->v);
    free(d->a_sv);
    free(d->a_v);
    memset(d, 0, sizeof *d);
}

/* The scratch of one lr_delta_compute. */
typedef struct {
    double *bd, *ad, *qb, *rb, *qa, *ra, *core, *uc, *vct, *ur, *vrt;
} lr_work;

static void lr_work_free(lr_work *w)
{
    double **p = (double **)w;
    for (size_t i = 0; i < sizeof *w / sizeof(double *); i++)
        free(p[i]);
}

/* A's right singular vectors from A^T = Q_A R_A: A^T's left singular
 * vectors are Q_A times those of R_A (ka x r). */
static int lr_a_dirs(lr_delta *d, lr_work *w, pl_err *e)
{
    int ka = d->ka, r = d->r;
    memcpy(w->ad, w->ra, (size_t)ka * r * sizeof(double));   /* lr_svd destroys its input */
    if (lr_svd(w->ad, ka, r, d->a_sv, w->ur, w->vrt, e) != 0)
        return -1;
    lr_mul(d->a_v, w->qa, d->in, ka, w->ur, ka, 0);
    return 0;
}

int lr_delta_compute(lr_delta *d, const float *A, const float *B, int r, int in, int out,
                     double scale, pl_err *e)
{
    memset(d, 0, sizeof *d);
    int kb = out < r ? out : r, ka = in < r ? in : r, k = kb < ka ? kb : ka;
    *d = (lr_delta){.out = out, .in = in, .r = r, .k = k, .ka = ka};
    lr_work w = {
        lr_alloc((size_t)out * r), lr_alloc((size_t)in * r), lr_alloc((size_t)out * kb),
        lr_alloc((size_t)kb * r), lr_alloc((size_t)in * ka), lr_alloc((size_t)ka * r),
        lr_alloc((size_t)kb * ka), lr_alloc((size_t)kb * k), lr_alloc((size_t)k * ka),
        lr_alloc((size_t)ka * ka), lr_alloc((size_t)ka * r)};
    d->sv = lr_alloc((size_t)k), d->u = lr_alloc((size_t)out * k);
    d->v = lr_alloc((size_t)in * k), d->a_sv = lr_alloc((size_t)ka);
    d->a_v = lr_alloc((size_t)in * ka);
    int rc = 0;
    double **p = (double **)&w;
    for (size_t i = 0; i < sizeof w / sizeof(double *); i++)
        if (!p[i])
            rc = -1;
    if (rc || !d->sv || !d->u || !d->v || !d->a_sv || !d->a_v)
        rc = pl_errf(e, "out of memory");
    if (!rc) {
        /* B row-major [out, r] -> column-major; A row-major [r, in] is A^T column-major. */
        for (int o = 0; o < out; o++)
            for (int j = 0; j < r; j++)
                w.bd[o + (size_t)j * out] = B[(size_t)o * r + j];
        for (size_t i = 0; i < (size_t)in * r; i++)
            w.ad[i] = A[i];
        rc = lr_qr(w.bd, out, r, w.qb, w.rb, e);
    }
    if (!rc)
        rc = lr_qr(w.ad, in, r, w.qa, w.ra, e);
    if (!rc) {
        /* core = s R_B R_A^T  (kb x r times (ka x r)^T) */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, kb, ka, r, scale, w.rb, kb, w.ra,
                    ka, 0.0, w.core, kb);
        rc = lr_svd(w.core, kb, ka, d->sv, w.uc, w.vct, e);
    }
    if (!rc) {
        lr_mul(d->u, w.qb, out, kb, w.uc, k, 0);   /* U = Q_B U_c */
        lr_mul(d->v, w.qa, in, ka, w.vct, k, 1);   /* V = Q_A V_c = Q_A (V_c^T)^T */
        rc = lr_a_dirs(d, &w, e);
    }
    lr_work_free(&w);
    if (rc)
        lr_delta_free(d);
    return rc;
}

int lr_energy_rank(const double *sv, int k, double frac)
{
    double total = 0, acc = 0;
    for (int i = 0; i < k; i++)
        total += sv[i] * sv[i];
    if (total <= 0)
        return 0;
    for (int i = 0; i < k; i++) {
        acc += sv[i] * sv[i];
        if (acc >= frac * total)
            return i + 1;
    }
    return k;   /* rounding: the whole sum may fall a hair short of frac * total */
}

void lr_stats_of(const double *sv, int k, lr_stats *st)
{
    double ss = 0;
    for (int i = 0; i < k; i++)
        ss += sv[i] * sv[i];
    st->frobenius = sqrt(ss);
    st->stable_rank = k > 0 && sv[0] > 0 ? ss / (sv[0] * sv[0]) : 0.0;
    st->energy90 = lr_energy_rank(sv, k, 0.9);
    st->energy99 = lr_energy_rank(sv, k, 0.99);
}

int lr_phi(const double *u1, int k1, const double *u2, int k2, int n, double *phi, pl_err *e)
{
    /* M = U1^T U2 (k1 x k2); P = 2-D prefix sums of M^2 with a zero border,
     * so ||U1[:, :i]^T U2[:, :j]||_F^2 = P(i, j). */
    double *m = lr_alloc((size_t)k1 * k2), *pre = lr_alloc((size_t)(k1 + 1) * (k2 + 1));
    if (!m || !pre) {
        free(m);
        free(pre);
        return pl_errf(e, "out of memory");
    }
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, k1, k2, n, 1.0, u1, n, u2, n, 0.0, m,
                k1);
    size_t w = (size_t)k2 + 1;
    for (size_t j = 0; j < w; j++)
        pre[j] = 0;
    for (int i = 1; i <= k1; i++) {
        pre[i * w] = 0;
        for (int j = 1; j <= k2; j++) {
            double x = m[(i - 1) + (size_t)(j - 1) * k1];
            pre[i * w + j] = x * x + pre[(i - 1) * w + j] + pre[i * w + j - 1] -
                             pre[(i - 1) * w + j - 1];
            phi[(size_t)(i - 1) * k2 + (j - 1)] = pre[i * w + j] / (i < j ? i : j);
        }
    }
    free(m);
    free(pre);
    return 0;
}

double lr_project(const double *w, int out, int in, const double *u, const double *v, int k,
                  pl_err *e)
{
    double *wv = lr_alloc((size_t)out * k), *t = lr_alloc((size_t)k * k);
    if (!wv || !t) {
        free(wv);
        free(t);
        return pl_errf(e, "out of memory");
    }
    lr_mul(wv, w, out, in, v, k, 0);   /* W V: out x k */
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, k, k, out, 1.0, u, out, wv, out, 0.0, t,
                k);
    double ss = 0;
    for (size_t i = 0; i < (size_t)k * k; i++)
        ss += t[i] * t[i];
    free(wv);
    free(t);
    return sqrt(ss);
}

int lr_top_dirs(const double *w, int out, int in, int k, double *u, double *v, pl_err *e)
{
    int mn = out < in ? out : in;
    if (k > mn)
        return pl_errf(e, "lr_top_dirs: %d directions of a %d x %d matrix", k, out, in);
    double *m = lr_alloc((size_t)out * in), *s = lr_alloc((size_t)mn);
    double *uu = lr_alloc((size_t)out * mn), *vt = lr_alloc((size_t)mn * in);
    int rc = m && s && uu && vt ? 0 : pl_errf(e, "out of memory");
    if (!rc) {
        memcpy(m, w, (size_t)out * in * sizeof(double));
        rc = lr_svd(m, out, in, s, uu, vt, e);
    }
    if (!rc) {
        memcpy(u, uu, (size_t)out * k * sizeof(double));
        for (int j = 0; j < k; j++)
            for (int i = 0; i < in; i++)
                v[i + (size_t)j * in] = vt[j + (size_t)i * mn];
    }
    free(m);
    free(s);
    free(uu);
    free(vt);
    return rc;
}

int lr_random_dirs(int n, int k, uint64_t seed, double *q, pl_err *e)
{
    if (k > n)
        return pl_errf(e, "lr_random_dirs: %d directions in R^%d", k, n);
    double *g = lr_alloc((size_t)n * k), *r = lr_alloc((size_t)k * k);
    int rc = g && r ? 0 : pl_errf(e, "out of memory");
    if (!rc) {
        rng_state st;
        uint64_t words[2] = {seed, 0xa4a1};
        rng_seed(&st, words, 2);
        for (size_t i = 0; i < (size_t)n * k; i++)
            g[i] = rng_normal(&st);
        rc = lr_qr(g, n, k, q, r, e);
    }
    free(g);
    free(r);
    return rc;
}
