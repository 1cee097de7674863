/* optim.c - AdamW / SGD updates, learning-rate schedules and clipping
 * (formulas in optim.h). */
#include "optim.h"

#include <math.h>
#include <string.h>

/* Below this many elements a parallel region costs more than the loop. */
#define OPT_PAR_MIN 16384

void opt_config_default(opt_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = OPT_ADAMW;
    c->lr = 2e-4f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->weight_decay = 0.0f;
    c->momentum = 0.0f;
    c->schedule = SCHED_CONSTANT;
    c->warmup = 0;
    c->total_steps = 0;
    c->clip = 1.0f;
}

int opt_kind_parse(const char *s, opt_kind *k)
{
    if (strcmp(s, "adamw") == 0)
        *k = OPT_ADAMW;
    else if (strcmp(s, "sgd") == 0)
        *k = OPT_SGD;
    else
        return -1;
    return 0;
}

int sched_parse(const char *s, sched_kind *k)
{
    if (strcmp(s, "constant") == 0)
        *k = SCHED_CONSTANT;
    else if (strcmp(s, "linear") == 0)
        *k = SCHED_LINEAR;
    else if (strcmp(s, "cosine") == 0)
        *k = SCHED_COSINE;
    else
        return -1;
    return 0;
}

const char *opt_kind_name(opt_kind k)
{
    return k == OPT_SGD ? "sgd" : "adamw";
}

const char *sched_name(sched_kind k)
{
    return k == SCHED_LINEAR ? "linear" : k == SCHED_COSINE ? "cosine" : "constant";
}

/* lr(step), computed in double (formulas in optim.h). */
float opt_lr(const opt_config *c, long step)
{
    double lr = c->lr;
    if (step < c->warmup)
        return (float)(lr * (double)(step + 1) / c->warmup);
    double span = c->total_steps - c->warmup > 1 ? (double)(c->total_steps - c->warmup) : 1.0;
    if (c->schedule == SCHED_LINEAR) {
        double left = step < c->total_steps ? (double)(c->total_steps - step) : 0.0;
        return (float)(lr * left / span);
    }
    if (c->schedule == SCHED_COSINE) {
        double progress = (double)(step - c->warmup) / span;
        progress = progress < 0 ? 0 : progress > 1 ? 1 : progress;
        return (float)(0.5 * lr * (1.0 + cos(M_PI * progress)));
    }
    return c->lr;
}

/* sum g[i]^2 in double, in index order (no reduction: bit-reproducible). */
double opt_sq_norm(const float *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return s;
}

/* min(1, clip / (norm + 1e-6)); 1 when clipping is off. */
float opt_clip_factor(const opt_config *c, double global_norm)
{
    if (c->clip <= 0)
        return 1.0f;
    double f = c->clip / (global_norm + 1e-6);
    return f < 1.0 ? (float)f : 1.0f;
}

/* AdamW over p[0..n): bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t. */
static void opt_adamw(const opt_config *c, float *p, const float *g, float *m, float *v,
                      size_t n, float lr, long t)
{
    const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const float bc1 = (float)(1.0 - pow(c->beta1, (double)t));
    const float bc2 = (float)(1.0 - pow(c->beta2, (double)t));
    const float decay = lr * c->weight_decay;
#pragma omp parallel for schedule(static) if (n >= OPT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float pi = p[i] - decay * p[i];
        p[i] = pi - lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}

/* SGD over p[0..n): g' = g + wd p; with momentum mu, m = mu m + g'
 * (m = g' at t = 1) and the step uses m, else g'. m may be NULL when mu = 0. */
static void opt_sgd(const opt_config *c, float *p, const float *g, float *m, size_t n,
                    float lr, long t)
{
    const float wd = c->weight_decay, mu = c->momentum;
    const int first = t <= 1;
#pragma omp parallel for schedule(static) if (n >= OPT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        if (mu != 0.0f) {
            gi = first ? gi : mu * m[i] + gi;
            m[i] = gi;
        }
        p[i] -= lr * gi;
    }
}

void opt_update(const opt_config *c, float *p, const float *g, float *m, float *v, size_t n,
                float lr, long t)
{
    if (c->kind == OPT_SGD)
        opt_sgd(c, p, g, m, n, lr, t);
    else
        opt_adamw(c, p, g, m, v, n, lr, t);
}
