/* optim.h - optimizers, learning-rate schedule and global-norm clipping.
 *
 * The optimizer works on ranges of a flat parameter vector so that a server
 * can own any subset of the adapter tensors.
 *   AdamW (decoupled weight decay, torch.optim.AdamW):
 *     m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *     p -= lr * wd * p;     p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 *   SGD (torch.optim.SGD): g' = g + wd p;  m = mu m + g' (m = g' at t = 1);
 *     p -= lr * (mu ? m : g')
 * t counts updates from 1. */
#ifndef PSLORA_OPTIM_H
#define PSLORA_OPTIM_H

#include <stddef.h>

typedef enum { OPT_ADAMW, OPT_SGD } opt_kind;
typedef enum { SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE } sched_kind;

typedef struct {
    opt_kind kind;
    float lr;
    float beta1, beta2, eps;   /* AdamW: 0.9, 0.999, 1e-8 */
    float weight_decay;
    float momentum;            /* SGD */
    sched_kind schedule;
    int warmup;                /* steps of linear warmup from 0 */
    int total_steps;
    float clip;                /* global-norm clip; 0 = off */
} opt_config;

void opt_config_default(opt_config *c);
int opt_kind_parse(const char *s, opt_kind *k);
int sched_parse(const char *s, sched_kind *k);
const char *opt_kind_name(opt_kind k);
const char *sched_name(sched_kind k);

/* Learning rate for update number step (0-based), with W = warmup,
 * N = total_steps, span = max(1, N - W):
 *   step < W:  lr * (step + 1) / W                       (linear warmup)
 *   constant:  lr
 *   linear:    lr * max(0, N - step) / span              (lr at W, 0 at N)
 *   cosine:    0.5 lr (1 + cos(pi q)), q = clamp((step - W) / span, 0, 1) */
float opt_lr(const opt_config *c, long step);

/* Sum of squares of g[0..n) in double (sequential: deterministic). */
double opt_sq_norm(const float *g, size_t n);
/* Clip factor for a global norm: min(1, clip / (norm + 1e-6)); 1 when clip == 0. */
float opt_clip_factor(const opt_config *c, double global_norm);

/* One update of p[0..n) with gradient g (already scaled and clipped); m and v
 * are the optimizer state for this range (v unused by SGD, which may pass
 * NULL; m too when SGD's momentum is 0); t >= 1.  Elementwise and
 * deterministic whatever the thread count. */
void opt_update(const opt_config *c, float *p, const float *g, float *m, float *v, size_t n,
                float lr, long t);

#endif
