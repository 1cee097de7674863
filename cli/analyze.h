/* analyze.h - the results of `pslora analyze`, shared by the command
 * (cmd_analyze.c: reads, computes) and its outputs (analyze_out.c: text,
 * JSON, gnuplot heatmaps).  The math is common/analysis/lowrank.h. */
#ifndef PSLORA_ANALYZE_H
#define PSLORA_ANALYZE_H

#include "adapter_read.h"
#include "lowrank.h"

/* One adapter: per module i, dW's SVD d[i] and its summary st[i]. */
typedef struct {
    const char *dir;
    ar_adapter ad;
    lr_delta *d;
    lr_stats *st;
} az_side;

/* Two adapters, module i: phi over A's right-singular vectors (k1 x k2,
 * k = min(r, in)) and phi_left over dW's left-singular vectors
 * (kl = min(r, in, out)), both row-major. */
typedef struct {
    int k1, k2, kl1, kl2;
    double *phi, *phi_left;
} az_sim;

/* With --model, adapter side s, module i: the paper's Table 7 figures. */
typedef struct {
    int k;
    double delta_f, w_f;        /* ||dW||_F, ||W||_F */
    double proj_delta;          /* ||U^T W V||_F, U, V dW's top-k directions */
    double proj_top;            /* the same for W's own top-k directions */
    double proj_random;         /* the same for k random directions */
} az_amp;

typedef struct {
    int n_sides;                /* 1 or 2 */
    az_side s[2];
    az_sim *sim;                /* [n modules] when n_sides == 2 */
    az_amp *amp[2];             /* [n modules] per side with --model */
    unsigned long long seed;
} az_run;

/* Output (analyze_out.c).  Each returns 0, or -1 with e filled. */
void az_print_text(const az_run *run);
int az_print_json(const az_run *run, pl_err *e);
/* PNG heatmaps of phi and phi_left per module into dir (made if absent),
 * with the matrices as DIR/phi_<module>.dat beside them. */
int az_plot(const az_run *run, const char *dir, pl_err *e);

#endif
