/* cmd_bench.c - `pslora bench`: time the worker's training step on an
 * in-memory model with random weights and tokens.
 *
 * A step is what a worker computes plus the server's update, in one process:
 * model_loss_grad (forward + backward of the adapter) then clip + AdamW over
 * the adapter.  Warm-up steps are run first and not timed.  Printed: the
 * configuration, the analytic FLOPs per token (formula at step_flops), ms per
 * step split into forward / backward / optimizer, the fastest and slowest
 * timed step (how steady the machine was; the figures are of the mean), the
 * model's GFLOP/s, the machine's measured sgemm ceiling on the model's own
 * shapes and the share of it reached, and last the line "tokens/s X".
 *
 * --compute bf16 (or auto on a CPU with AVX512_BF16 or AMX) switches the model to bf16 compute
 * (model_set_compute: a bf16 copy of each frozen matrix, products through
 * oneDNN) and times the same step; its peak is then oneDNN's bf16 matmul on
 * the same shapes, with the weights held as the model holds them.
 * --fp32-matmul onednn (or auto on an AVX-512 CPU whose OpenBLAS runs AVX2
 * kernels) runs the fp32 model's frozen products through oneDNN's fp32
 * matmul on the weights in place (model_use_onednn_fp32); its peak is then
 * that matmul's on the same shapes.
 *
 * --profile adds a table: ms per step and share of the step of each kernel
 * category (step_prof.h), summed over the timed steps, then the step's
 * call sites, largest first; without it the step reads no clock beyond the
 * forward/backward split. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"
#include "cpu.h"
#include "dnnl_matmul.h"
#include "flags.h"
#include "lora.h"
#include "metrics.h"
#include "model.h"
#include "model_bf16.h"
#include "optim.h"
#include "rng.h"
#include "step_prof.h"
#include "vec.h"

typedef struct {
    const char *arch, *targets, *compute, *fp32_matmul;
    long layers, dim, heads, kv_heads, vocab, ctx, inter, batch, seq, rank, threads, steps,
        warmup, seed;
    float alpha, peak_seconds;
    int profile;
} bench_opts;

/* ---- analytic FLOPs ----------------------------------------------------- */

typedef struct {
    double fwd, bwd;   /* per step */
    double head_dx;    /* part of bwd that the code runs (and times) inside the forward pass */
} flops;

/* Does the linear in this slot read the block's first norm (its dx is not
 * needed in the lowest adapted layer)?  GPT-2 c_attn; Llama q, k, v. */
static int reads_first_norm(const model_config *c, int slot)
{
    return c->arch == ARCH_LLAMA ? slot <= 2 : slot == 0;
}

/* The lowest layer holding an adapter (n_layer when none): the backward
 * pass stops there. */
static int lowest_layer(const model_config *c, const lora_layout *L)
{
    int lo = c->n_layer;
    for (int i = 0; i < L->n; i++)
        lo = L->m[i].layer < lo ? L->m[i].layer : lo;
    return lo;
}

/* FLOPs of one step (a multiply-add counts 2), N = B*T rows, D = head_dim,
 * H = query heads, lo = lowest layer holding an adapter:
 *   forward, every layer: 2 N in out per linear; LoRA 2 N r (in + out) per
 *     adapted linear; attention 2 * 2 B H T T D (Q K^T and P V over the FULL
 *     T x T: the kernel computes every score and masks afterwards, so this is
 *     not halved for causality); head 2 N C V.
 *   backward: the head's dx 2 N C V (fused into the forward pass by the code,
 *     counted here as backward); for layers lo..L-1 only: dx of every linear
 *     2 N in out, except in layer lo the linears reading the first norm;
 *     attention 4 * 2 B H T T D (dP, dQ, dK, dV, full T x T); LoRA per adapted
 *     linear dB 2 N out r, du 2 N out r, dA 2 N r in, plus dx 2 N r in where
 *     dx is formed.  No weight gradients, no elementwise work counted. */
static flops step_flops(const model_config *c, const lora_layout *L, int B, int T)
{
    double N = (double)B * T, r = L->r;
    double attn = 2.0 * B * c->n_head * (double)T * T * c->head_dim;
    int nl = model_n_linears(c), lo = lowest_layer(c, L);
    double head = 2.0 * N * c->n_embd * c->vocab;
    flops f = {head, head, head};
    for (int l = 0; l < c->n_layer; l++) {
        f.fwd += 2 * attn;
        if (l >= lo)
            f.bwd += 4 * attn;
        for (int s = 0; s < nl; s++) {
            int in, out;
            model_linear_shape(c, s, &in, &out);
            int dx = l > lo || (l == lo && !reads_first_norm(c, s));
            f.fwd += 2 * N * in * out;
            if (l >= lo && dx)
                f.bwd += 2 * N * in * out;
        }
    }
    for (int i = 0; i < L->n; i++) {
        const lora_module *m = &L->m[i];
        int dx = m->layer > lo || !reads_first_norm(c, m->slot);
        f.fwd += 2 * N * r * (m->in + m->out);
        f.bwd += 4 * N * r * m->out + 2 * N * r * m->in * (1 + dx);
    }
    return f;
}

/* ---- measured ceiling ----------------------------------------------------- */

typedef struct {
    const char *name;
    int in, out, conv1d, bwd;   /* bwd: dx = dy W (K = out) */
    double flops;               /* this product's FLOPs in one model step */
    int head;                   /* the lm head (held apart: mb_train_hold) */
} gemm_shape;

/* The model's distinct linear products (each slot of a block and the head),
 * forward and backward, weighted by the FLOPs the step spends in them. */
static int model_shapes(const model *m, const lora_layout *L, int N, gemm_shape *g)
{
    const model_config *c = &m->cfg;
    int nl = model_n_linears(c), lo = lowest_layer(c, L), n = 0;
    for (int s = 0; s < nl; s++) {
        int in, out;
        model_linear_shape(c, s, &in, &out);
        double one = 2.0 * N * in * out;
        int nb = c->n_layer - lo - (reads_first_norm(c, s) && lo < c->n_layer);
        const char *name = model_linear_name(c, s);
        int conv = m->blocks[0].lin[s].conv1d;
        g[n++] = (gemm_shape){name, in, out, conv, 0, one * c->n_layer, 0};
        if (nb > 0)
            g[n++] = (gemm_shape){name, in, out, conv, 1, one * nb, 0};
    }
    double head = 2.0 * N * c->n_embd * c->vocab;
    g[n++] = (gemm_shape){"lm_head", c->n_embd, c->vocab, 0, 0, head, 1};
    g[n++] = (gemm_shape){"lm_head", c->n_embd, c->vocab, 0, 1, head, 1};
    return n;
}

typedef struct {
    const gemm_shape *s;
    int N;
    const float *w, *x;
    float *y;
    dm_linear *h;   /* oneDNN: bf16, or fp32 on w in place */
} gemm_job;

/* The kernel the peak is measured with: the one the model's products use. */
typedef enum { PEAK_SGEMM, PEAK_DNNL_BF16, PEAK_DNNL_F32 } peak_kernel;

static const char *peak_name(peak_kernel k)
{
    return k == PEAK_DNNL_BF16 ? "oneDNN bf16 matmul"
           : k == PEAK_DNNL_F32 ? "oneDNN fp32 matmul" : "cblas_sgemm";
}

/* One product of the job: sgemm on W as the model stores it, or oneDNN. */
static int gemm_run(gemm_job *j, pl_err *e)
{
    const gemm_shape *s = j->s;
    if (j->h)
        return s->bwd ? dm_linear_bwd_x(j->h, j->x, j->y, j->N, 0, e)
                      : dm_linear_fwd(j->h, j->x, j->y, NULL, j->N, e);
    int K = s->bwd ? s->out : s->in, Nc = s->bwd ? s->in : s->out;
    /* W [in,out] (conv1d) or [out,in]; forward reads W (conv1d) or W^T */
    int trans = s->conv1d == s->bwd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, j->N, Nc, K, 1.0f,
                j->x, K, j->w, s->conv1d ? s->out : s->in, 0.0f, j->y, Nc);
    return 0;
}

/* GFLOP/s of one product: best call after a warm-up, calls for ~budget s. */
static double gemm_rate(gemm_job *j, double budget, pl_err *e)
{
    if (gemm_run(j, e) != 0)
        return -1;
    double best = 1e30, start = clock_now();
    do {
        double t0 = clock_now();
        if (gemm_run(j, e) != 0)
            return -1;
        double dt = clock_now() - t0;
        best = dt < best ? dt : best;
    } while (clock_now() - start < budget);
    int in = j->s->in, out = j->s->out;
    return 2.0 * j->N * in * out / best * 1e-9;
}

/* n values uniform in [-sd, sd): operands whose values do not matter. */
static float *rand_buf(size_t n, float sd, unsigned long long seed)
{
    float *a = malloc(n * sizeof *a);
    if (!a)
        return NULL;
    rng_state r;
    uint64_t w[2] = {seed, 0xbe7c};
    rng_seed(&r, w, 2);
    for (size_t i = 0; i < n; i++)
        a[i] = sd * (2.0f * rng_uniform(&r) - 1.0f);
    return a;
}

/* The FLOP-weighted rate over the model's shapes, sum(f) / sum(f / rate):
 * what the step's matrix products would run at if each ran at its measured
 * rate.  Prints one line per product.  -1 on failure. */
static double measure_peak(const model *m, const lora_layout *L, int N, peak_kernel k,
                           double budget, pl_err *e)
{
    gemm_shape g[2 * MODEL_MAX_LINEARS + 2];
    int ng = model_shapes(m, L, N, g);
    size_t maxw = 0, maxd = 0;
    for (int i = 0; i < ng; i++) {
        size_t w = (size_t)g[i].in * g[i].out, d = g[i].in > g[i].out ? g[i].in : g[i].out;
        maxw = w > maxw ? w : maxw, maxd = d > maxd ? d : maxd;
    }
    float *w = rand_buf(maxw, 0.02f, 1), *x = rand_buf((size_t)N * maxd, 1.0f, 2);
    float *y = malloc((size_t)N * maxd * sizeof *y);
    double fsum = 0, tsum = 0;
    int rc = w && x && y ? 0 : pl_errf(e, "peak: out of memory");
    for (int i = 0; rc == 0 && i < ng; i++) {
        gemm_job j = {&g[i], N, w, x, y, NULL};
        dm_layout lay = g[i].conv1d ? DM_IN_OUT : DM_OUT_IN;
        if (k != PEAK_SGEMM) {   /* as the training model holds them (mb_train_hold), or w */
            int hold = mb_train_hold(g[i].head);
            j.h = k == PEAK_DNNL_BF16 ? dm_linear_pack(w, DM_F32, lay, g[i].in, g[i].out, hold, e)
                                      : dm_linear_wrap_f32(w, lay, g[i].in, g[i].out, e);
            if (!j.h) {
                rc = -1;
                break;
            }
        }
        double rate = gemm_rate(&j, budget, e);
        if (rate < 0)
            rc = -1;
        else
            printf("  %-18s %s M %d K %d N %d: %.1f GFLOP/s%s%s\n", g[i].name,
                   g[i].bwd ? "bwd" : "fwd", N,
                   g[i].bwd ? g[i].out : g[i].in, g[i].bwd ? g[i].in : g[i].out, rate,
                   j.h ? " " : "", j.h ? dm_impl_name(j.h, g[i].bwd) : "");
        dm_free(j.h);
        fsum += g[i].flops, tsum += g[i].flops / rate;
    }
    free(w), free(x), free(y);
    return rc == 0 ? fsum / tsum : -1;
}

/* ---- the timed steps -------------------------------------------------------- */

typedef struct {
    double fwd, bwd, opt, total;   /* seconds summed over the timed steps */
    double fastest, slowest;       /* seconds of the fastest and slowest timed step */
    double loss_first, loss_last;  /* mean loss per token */
} step_times;

/* B of every module: small non-zero values, so the backward pass does the
 * work of a trained adapter (PEFT's zero B would be unrepresentative only in
 * values, but keeps the loss flat). */
static void perturb_b(const lora_layout *L, float *p, unsigned long long seed)
{
    rng_state r;
    uint64_t w[2] = {seed, 0xb0b};
    rng_seed(&r, w, 2);
    for (int i = 0; i < L->n; i++)
        rng_fill_normal(&r, p + L->m[i].b_off, (size_t)L->m[i].out * L->r, 0.01f);
}

/* One line on how attention runs (its figures depend on it): on pslora's
 * kernels, or through oneDNN in one region per pass with the batch cut into
 * slices, or with the products over the whole batch. */
static void print_attention(const model_acts *a, int B)
{
    int sl = model_acts_attention_slices(a), nt = omp_get_max_threads();
    if (sl == 0)
        printf("attention: pslora's kernels\n");
    else if (sl > 1)
        printf("attention: oneDNN, one region per pass, %d slices of %d batches\n", sl, B / sl);
    else if (nt == 1)
        printf("attention: oneDNN, each product over the whole batch (one thread)\n");
    else
        printf("attention: oneDNN, each product over the whole batch (%d threads do not divide "
               "batch %d)\n", nt, B);
    fflush(stdout);
}

/* Warm-up then timed steps: loss and gradient, mean over tokens, clip, AdamW.
 * prof (may be NULL) receives the kernels' seconds of the timed steps. */
static int run_steps(const model *m, const lora_layout *L, const bench_opts *o, step_times *st,
                     step_prof *prof, pl_err *e)
{
    int B = (int)o->batch, T = (int)o->seq, N = B * T, total = (int)(o->warmup + o->steps);
    size_t np = L->n_params;
    model_acts *a = model_acts_new(m, L, B, T, 1);
    float *p = vec_falloc(np), *g = vec_falloc(np), *mo = vec_falloc(np), *vo = vec_falloc(np);
    int32_t *tok = malloc(((size_t)N + 1) * sizeof *tok);
    int rc = a && p && g && mo && vo && tok ? 0 : pl_errf(e, "out of memory for the activations");
    if (!rc)
        memset(mo, 0, np * sizeof *mo), memset(vo, 0, np * sizeof *vo);
    opt_config oc;
    opt_config_default(&oc);
    oc.total_steps = total;
    if (rc == 0) {
        lora_init_params(L, p, (unsigned long long)o->seed);
        perturb_b(L, p, (unsigned long long)o->seed);
        rng_state r;
        uint64_t w[2] = {(uint64_t)o->seed, 0x70c};
        rng_seed(&r, w, 2);
        for (int i = 0; i <= N; i++)
            tok[i] = (int32_t)rng_below(&r, (uint64_t)m->cfg.vocab);
    }
    memset(st, 0, sizeof *st);
    if (prof)   /* the warm-up steps profile into it too (their figures then dropped) */
        memset(prof, 0, sizeof *prof);
    if (a)
        model_acts_profile(a, prof);
    if (a)
        print_attention(a, B);
    for (int s = 0; rc == 0 && s < total; s++) {
        if (prof && s == o->warmup)
            memset(prof, 0, sizeof *prof);
        double t0 = clock_now(), tf, tb;
        double loss = model_loss_grad(m, a, L, p, g, tok, tok + 1, (unsigned long long)s) / N;
        model_acts_timing(a, &tf, &tb);
        if (model_acts_error(a)) {
            rc = pl_errf(e, "%s", model_acts_error(a));
            break;
        }
        double t1 = clock_now();
        float k = opt_clip_factor(&oc, sqrt(opt_sq_norm(g, np)) / N) / N;
        for (size_t i = 0; i < np; i++)
            g[i] *= k;
        opt_update(&oc, p, g, mo, vo, np, opt_lr(&oc, s), s + 1);
        double t2 = clock_now();
        if (prof)
            prof->sec[SP_OPTIMIZER] += t2 - t1;
        if (!isfinite(loss))
            rc = pl_errf(e, "step %d: loss is not finite", s);
        if (s < o->warmup)
            continue;
        st->fwd += tf, st->bwd += tb, st->opt += t2 - t1, st->total += t2 - t0;
        if (s == o->warmup || t2 - t0 < st->fastest)
            st->fastest = t2 - t0;
        if (t2 - t0 > st->slowest)
            st->slowest = t2 - t0;
        if (s == o->warmup)
            st->loss_first = loss;
        st->loss_last = loss;
    }
    model_acts_free(a);
    free(p), free(g), free(mo), free(vo), free(tok);
    return rc;
}

/* ---- setup and report ------------------------------------------------------ */

/* pslora's main() already re-executes with OPENBLAS_CORETYPE set when
 * OpenBLAS fell back to a generic core (common/base/cpu.h); say so if it still
 * runs one (e.g. OPENBLAS_CORETYPE given as a slow core): the figures below
 * would then be several times too low. */
static void check_openblas_core(void)
{
    const char *want = cpu_blas_coretype();
    if (want)
        printf("warning: OpenBLAS runs its generic %s kernels on this CPU; "
               "OPENBLAS_CORETYPE=%s would be several times faster\n",
               openblas_get_corename(), want);
}

static int build_config(model_config *c, const bench_opts *o, pl_err *e)
{
    memset(c, 0, sizeof *c);
    if (model_arch_parse(o->arch, &c->arch) != 0 || c->arch == ARCH_BERT)
        return pl_errf(e, "--arch: expected gpt2 or llama, got '%s'", o->arch);
    if (o->dim % o->heads)
        return pl_errf(e, "--dim: %ld is not a multiple of --heads %ld", o->dim, o->heads);
    c->n_layer = (int)o->layers, c->n_embd = (int)o->dim, c->n_head = (int)o->heads;
    c->n_kv_head = o->kv_heads ? (int)o->kv_heads : (int)o->heads;
    if (c->n_head % c->n_kv_head)
        return pl_errf(e, "--kv-heads: %d does not divide --heads %d", c->n_kv_head, c->n_head);
    c->head_dim = (int)(o->dim / o->heads);
    c->n_inner = o->inter ? (int)o->inter : 4 * (int)o->dim;
    c->vocab = (int)o->vocab;
    c->n_ctx = o->ctx ? (int)o->ctx : (int)o->seq;
    if (o->seq > c->n_ctx)
        return pl_errf(e, "--seq: %ld is longer than --ctx %d", o->seq, c->n_ctx);
    c->eps = c->arch == ARCH_GPT2 ? 1e-5f : 1e-6f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = 1;
    return 0;
}

/* How idle OpenMP threads wait: between the step's ~2,000 parallel regions
 * a sleeping thread costs tens of us to wake, so the figures depend on it
 * (docs/performance.md, "Session 9"). */
static void print_omp_wait(void)
{
    const char *pol = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
    if (!pol && !spin) {
        printf("openmp waiting: the runtime's default (OMP_WAIT_POLICY and GOMP_SPINCOUNT "
               "unset)\n");
        return;
    }
    printf("openmp waiting:");
    if (pol)
        printf(" OMP_WAIT_POLICY=%.32s", pol);
    if (spin)
        printf("%s GOMP_SPINCOUNT=%.32s", pol ? "," : "", spin);
    printf("\n");
}

static void print_config(const model_config *c, const lora_layout *L, const bench_opts *o,
                         model_compute mc, model_matmul mm)
{
    printf("model: %s, %d layers, dim %d, %d heads (kv %d), intermediate %d, vocab %d, ctx %d\n",
           model_arch_name(c->arch), c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->n_inner,
           c->vocab, c->n_ctx);
    printf("step: batch %ld x seq %ld = %ld tokens; LoRA r %d alpha %g on %s (%d modules, %zu "
           "params); AdamW\n",
           o->batch, o->seq, o->batch * o->seq, L->r, L->alpha, L->targets, L->n, L->n_params);
    char how[128];
    model_compute_describe(how, sizeof how, mc, o->compute);
    printf("threads %d; compute %s; %s, core %s\n", omp_get_max_threads(), how,
           openblas_get_config(), openblas_get_corename());
    print_omp_wait();
    if (mc == MODEL_FP32) {
        model_fp32_matmul_describe(how, sizeof how, mm, o->fp32_matmul);
        printf("fp32 matmul %s\n", how);
    }
}

static void print_flops(flops f, int N)
{
    printf("FLOP/token %.4g (forward %.4g, backward %.4g): matrix products only, attention "
           "over the full T x T (not causal-halved), no weight gradients\n",
           (f.fwd + f.bwd) / N, f.fwd / N, f.bwd / N);
}

static void print_steps(const step_times *st, const bench_opts *o, flops f, double peak)
{
    double n = (double)o->steps, tok = (double)o->batch * o->seq;
    double gflops = (f.fwd + f.bwd) * n / st->total * 1e-9;
    printf("steps %ld timed (+%ld warm-up): ms/step %.1f = forward %.1f + backward %.1f + "
           "optimizer %.2f + other %.2f\n",
           o->steps, o->warmup, 1e3 * st->total / n, 1e3 * st->fwd / n, 1e3 * st->bwd / n,
           1e3 * st->opt / n, 1e3 * (st->total - st->fwd - st->bwd - st->opt) / n);
    /* the spread says how steady the machine was: the figures below are of
     * the mean, and a shared host's busy moments widen it */
    printf("step spread: fastest %.1f ms, slowest %.1f ms (%.1f%% apart)\n", 1e3 * st->fastest,
           1e3 * st->slowest, 100 * (st->slowest - st->fastest) / st->fastest);
    printf("loss %.4f (first timed step) %.4f (last)\n", st->loss_first, st->loss_last);
    /* the head's dx is computed (and timed) with its forward: rate it there */
    double g_fwd = (f.fwd + f.head_dx) * n / st->fwd * 1e-9;
    double g_bwd = (f.bwd - f.head_dx) * n / st->bwd * 1e-9;
    printf("model GFLOP/s %.1f (forward incl. the head's dx %.1f, backward %.1f); %.1f%% of the "
           "measured peak %.1f\n",
           gflops, g_fwd, g_bwd, 100 * gflops / peak, peak);
    printf("tokens/s %.1f\n", tok * n / st->total);
}

/* The profile's call sites (step_prof.h), largest first: category key,
 * the function called, model_step.c's line, calls and ms per step. */
static void print_sites(const step_prof *p, double steps)
{
    int n = p->n_sites, order[SP_SITES_MAX];
    for (int i = 0; i < n; i++) {   /* insertion sort by seconds, descending */
        int j = i;
        for (; j > 0 && p->site[order[j - 1]].sec < p->site[i].sec; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    printf("profile by call site (ms/step; the site's line in common/nn/model_step.c):\n");
    for (int i = 0; i < n; i++) {
        const sp_site *s = &p->site[order[i]];
        char name[40];
        printf("  %-12s %-28s %5d %7.1f calls %9.2f ms\n", sp_key(s->cat),
               sp_site_name(s, name, sizeof name), s->line, s->calls / steps, 1e3 * s->sec / steps);
    }
    if (p->unlisted > 0)
        printf("  (%.2f ms/step at sites past the first %d, not listed; in the categories)\n",
               1e3 * p->unlisted / steps, SP_SITES_MAX);
}

/* The profile as a table: ms per step and share of the step per category,
 * then their sum against the step (what no category covers: loop, clock). */
static void print_profile(const step_prof *p, const step_times *st, const bench_opts *o)
{
    double n = (double)o->steps, sum = 0;
    printf("profile (ms/step over the timed steps; categories exclusive):\n");
    for (int c = 0; c < SP_N; c++) {
        sum += p->sec[c];
        printf("  %-20s %9.2f ms %6.1f%%\n", sp_name((sp_cat)c), 1e3 * p->sec[c] / n,
               100 * p->sec[c] / st->total);
    }
    printf("  %-20s %9.2f ms %6.1f%% of the step %.2f ms\n", "sum", 1e3 * sum / n,
           100 * sum / st->total, 1e3 * st->total / n);
    print_sites(p, n);
}

static int bench_run(const bench_opts *o, pl_err *e, int *status)
{
    model_config c;
    model m;
    lora_layout L;
    model_compute mc;
    model_matmul mm;
    *status = 2;
    if (build_config(&c, o, e) != 0 || model_compute_choose(o->compute, &mc, e) != 0 ||
        model_fp32_matmul_choose(o->fp32_matmul, &mm, e) != 0)
        return -1;
    *status = 1;
    int bf16 = mc == MODEL_BF16, f32dnnl = !bf16 && mm == MODEL_MM_ONEDNN;
    peak_kernel pk = bf16 ? PEAK_DNNL_BF16 : f32dnnl ? PEAK_DNNL_F32 : PEAK_SGEMM;
    omp_set_num_threads(o->threads > 0 ? (int)o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN));
    if (model_init_random(&m, &c, (unsigned long long)o->seed, e) != 0)
        return -1;
    if (lora_layout_build(&L, &c, o->targets, (int)o->rank, o->alpha, 0, 0.0f, e) != 0) {
        model_free(&m);
        *status = 2;
        return -1;
    }
    lora_attach(&L, &m);
    size_t fp32_bytes = model_matrix_bytes(&m);
    if (model_set_compute(&m, mc, 1, e) != 0 || (f32dnnl && model_use_onednn_fp32(&m, e) != 0)) {
        lora_layout_free(&L);
        model_free(&m);
        return -1;
    }
    print_config(&c, &L, o, mc, mm);
    printf("frozen matrices: %.1f MB as %s (fp32: %.1f MB)\n", model_matrix_bytes(&m) / 1e6,
           model_compute_name(mc), fp32_bytes / 1e6);
    check_openblas_core();
    int N = (int)(o->batch * o->seq), rc = 0;
    flops f = step_flops(&c, &L, (int)o->batch, (int)o->seq);
    print_flops(f, N);
    printf("peak (%s on the model's products, M = %d, best call of ~%.2g s each):\n",
           peak_name(pk), N, o->peak_seconds);
    fflush(stdout);
    double peak = measure_peak(&m, &L, N, pk, o->peak_seconds, e);
    if (peak < 0)
        rc = -1;
    else
        printf("peak, FLOP-weighted over those products: %.1f GFLOP/s\n", peak);
    if (rc == 0) {
        step_times st;
        step_prof prof;
        fflush(stdout);
        model_bf16_time_convert(&m, o->profile ? &prof.sec[SP_CONVERT] : NULL);
        rc = run_steps(&m, &L, o, &st, o->profile ? &prof : NULL, e);
        if (rc == 0 && (bf16 || f32dnnl))
            printf("%s scratch shared by the products: %.1f MB\n", bf16 ? "bf16" : "oneDNN",
                   model_bf16_scratch_bytes(&m) / 1e6);
        if (rc == 0)
            print_steps(&st, o, f, peak);
        if (rc == 0 && o->profile)
            print_profile(&prof, &st, o);
    }
    lora_layout_free(&L);
    model_free(&m);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {"gpt2", "c_attn", "fp32", "auto", 12, 768, 12, 0, 50257, 0, 0, 4, 256, 8, 0,
                    10, 2, 1, 16.0f, 0.5f, 0};
    fl_spec specs[] = {
        {.name = "arch", .type = FL_STR, .dst = &o.arch, .help = "gpt2 or llama (gpt2)"},
        {.name = "layers", .type = FL_INT, .dst = &o.layers,
         .help = "transformer blocks (12)", .min = 1, .max = 1024},
        {.name = "dim", .type = FL_INT, .dst = &o.dim,
         .help = "model width (768)", .min = 1, .max = 1 << 16},
        {.name = "heads", .type = FL_INT, .dst = &o.heads,
         .help = "attention heads (12)", .min = 1, .max = 1024},
        {.name = "kv-heads", .type = FL_INT, .dst = &o.kv_heads,
         .help = "key/value heads (llama; default = heads)", .min = 1, .max = 1024},
        {.name = "vocab", .type = FL_INT, .dst = &o.vocab,
         .help = "vocabulary size (50257)", .min = 1, .max = 1 << 24},
        {.name = "ctx", .type = FL_INT, .dst = &o.ctx,
         .help = "context length (default = seq)", .min = 1, .max = 1 << 20},
        {.name = "intermediate", .type = FL_INT, .dst = &o.inter,
         .help = "MLP width (default 4*dim)", .min = 1, .max = 1 << 20},
        {.name = "batch", .type = FL_INT, .dst = &o.batch,
         .help = "sequences per step (4)", .min = 1, .max = 1 << 16},
        {.name = "seq", .type = FL_INT, .dst = &o.seq,
         .help = "tokens per sequence (256)", .min = 1, .max = 1 << 20},
        {.name = "rank", .type = FL_INT, .dst = &o.rank,
         .help = "LoRA rank (8)", .min = 1, .max = 4096},
        {.name = "alpha", .type = FL_FLOAT, .dst = &o.alpha,
         .help = "LoRA alpha (16)", .min = 0, .max = -1},
        {.name = "targets", .type = FL_STR, .dst = &o.targets,
         .help = "adapted modules, comma-separated (c_attn)"},
        {.name = "threads", .type = FL_INT, .dst = &o.threads,
         .help = "OpenMP threads (default: all CPUs)", .min = 1, .max = 4096},
        {.name = "steps", .type = FL_INT, .dst = &o.steps,
         .help = "timed steps (10)", .min = 1, .max = 1000000},
        {.name = "warmup", .type = FL_INT, .dst = &o.warmup,
         .help = "untimed steps first (2)", .min = 0, .max = 1000000},
        {.name = "compute", .type = FL_STR, .dst = &o.compute, .help = MODEL_COMPUTE_HELP},
        {.name = "fp32-matmul", .type = FL_STR, .dst = &o.fp32_matmul,
         .help = MODEL_FP32_MATMUL_HELP},
        {.name = "seed", .type = FL_INT, .dst = &o.seed,
         .help = "random seed (1)", .min = 0, .max = 1e18},
        {.name = "peak-seconds", .type = FL_FLOAT, .dst = &o.peak_seconds,
         .help = "time per product for the peak (0.5)", .min = 0, .max = 60},
        {.name = "profile", .type = FL_BOOL, .dst = &o.profile,
         .help = "time each kernel category and call site of the step and print the tables"},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("bench", "[--layers L --dim C --heads H --vocab V] [--batch B --seq T] "
                      "[--rank r --targets LIST] [--threads N] [--steps N] [flags]",
                      specs, argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("bench", e.msg, 2);
    int status;
    if (bench_run(&o, &e, &status) != 0)
        return cli_fail("bench", e.msg, status);
    return 0;
}
