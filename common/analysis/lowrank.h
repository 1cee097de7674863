/* lowrank.h - the linear algebra of adapter analysis (docs/analysis.md).
 *
 * Owns: the SVD of a LoRA update dW = s B A computed from its small core
 * (never forming the out x in matrix), the spectrum's summaries (Frobenius
 * norm, stable rank, energy ranks), the normalized subspace similarity phi
 * of Hu et al. 2021 sec. 7, and the projections of a base weight W onto
 * chosen directions (the paper's amplification, its Table 7).
 *
 * Everything is double precision and column-major (LAPACK's order): an
 * n x k "basis" holds k orthonormal vectors of length n as its columns.
 * QR and SVD go through LAPACKE. */
#ifndef PSLORA_LOWRANK_H
#define PSLORA_LOWRANK_H

#include <stdint.h>

#include "err.h"

/* dW = s B A with A [r, in] and B [out, r] (row-major floats, as PEFT
 * stores them):  B = Q_B R_B,  A^T = Q_A R_A  (thin QR), so
 *   dW = s Q_B (R_B R_A^T) Q_A^T,
 * and the SVD of the core C = s R_B R_A^T = U_c S V_c^T gives dW's singular
 * values S and vectors U = Q_B U_c, V = Q_A V_c.  k = min(r, out, in). */
typedef struct {
    int out, in, r, k;
    double *sv;     /* [k], decreasing, >= 0 */
    double *u;      /* out x k: left singular vectors of dW */
    double *v;      /* in x k: right singular vectors of dW */
    int ka;         /* min(r, in) */
    double *a_sv;   /* [ka]: singular values of A */
    double *a_v;    /* in x ka: right singular vectors of A (rows of V^T in A = U S V^T) */
} lr_delta;

int lr_delta_compute(lr_delta *d, const float *A, const float *B, int r, int in, int out,
                     double scale, pl_err *e);
void lr_delta_free(lr_delta *d);

typedef struct {
    double frobenius;    /* sqrt(sum s_i^2) */
    double stable_rank;  /* ||dW||_F^2 / s_1^2 (0 for dW = 0) */
    int energy90, energy99;  /* smallest k with sum_{i<=k} s_i^2 >= 0.9 (0.99) sum s_i^2 */
} lr_stats;

void lr_stats_of(const double *sv, int k, lr_stats *st);
/* Smallest k with sum_{i<=k} sv_i^2 >= frac * sum sv_i^2 (0 when all are 0). */
int lr_energy_rank(const double *sv, int k, double frac);

/* phi(i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j) for i <= k1, j <= k2,
 * U1 n x k1 and U2 n x k2 orthonormal bases; phi is k1 x k2, row-major
 * (phi[(i-1) k2 + (j-1)]).  In [0, 1]. */
int lr_phi(const double *u1, int k1, const double *u2, int k2, int n, double *phi, pl_err *e);

/* ||U^T W V||_F for W out x in, U out x k, V in x k (column-major); -1 (+ e)
 * when out of memory. */
double lr_project(const double *w, int out, int in, const double *u, const double *v, int k,
                  pl_err *e);
/* W's own top-k singular directions: U out x k, V in x k (LAPACKE dgesdd on
 * the whole of W: O(out in min(out, in)) time, (out in + min^2) doubles). */
int lr_top_dirs(const double *w, int out, int in, int k, double *u, double *v, pl_err *e);
/* k random orthonormal directions in R^n (Gaussian, then QR), from seed. */
int lr_random_dirs(int n, int k, uint64_t seed, double *q, pl_err *e);

#endif
