/* refcheck.c - see refcheck.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refcheck.h"
#include "rng.h"
#include "testutil.h"

/* ---- reading Hugging Face directories ------------------------------------- */

void rc_expect_msg(const pl_err *e, const char *want)
{
    if (!strstr(e->msg, want))
        fail_msg("error message \"%s\" does not contain \"%s\"", e->msg, want);
}

void rc_load(model *m, const char *dir)
{
    pl_err e = {{0}};
    if (model_load(m, dir, &e) != 0)
        fail_msg("model_load %s: %s", dir, e.msg);
}

void rc_expect_load_fails(const char *dir, const char *want1, const char *want2)
{
    model m;
    pl_err e = {{0}};
    assert_int_equal(model_load(&m, dir, &e), -1);
    rc_expect_msg(&e, want1);
    if (want2)
        rc_expect_msg(&e, want2);
}

void rc_check_mean_loss(const char *name, model *m, const int32_t *inp, const int32_t *tgt, int B,
                        int T, double want_sum)
{
    model_acts *a = model_acts_new(m, NULL, B, T, 0);
    assert_non_null(a);
    double got = model_loss_grad(m, a, NULL, NULL, NULL, inp, tgt, 0) / (B * T);
    double want = want_sum / (B * T);
    double rel = fabs(got - want) / fabs(want);
    if (!(rel < 1e-5))
        fail_msg("%s: mean loss %.9g, float64 reference %.9g (rel %.3g)", name, got, want, rel);
    model_acts_free(a);
}

/* ---- fixtures ----------------------------------------------------------------- */

void rc_fail_err(const char *what, const pl_err *e) { fail_msg("%s: %s", what, e->msg); }

/* Loads dir twice, and draws the tokens. */
static rc_fixture *fixture_load(rc_fixture *f, const char *dir, int vocab)
{
    pl_err e = {{0}};
    if (model_load(&f->base, dir, &e) != 0 || model_load(&f->lm, dir, &e) != 0)
        rc_fail_err(dir, &e);
    f->base_acts = model_acts_new(&f->base, NULL, RC_B, RC_T, 0);
    ref_random_tokens(f->inp, f->tgt, RC_B * RC_T, vocab, 7);
    return f;
}

rc_fixture *rc_fixture_gpt2(const char *name, const ref_config *c, const char *targets, int n_lin)
{
    rc_fixture *f = calloc(1, sizeof *f);
    ref_hf_opts o = {.prefix = 1, .dtype = REF_F32};
    char dir[512];
    f->name = name;
    f->targets = targets;
    f->n_lin = n_lin;
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(name));
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    ref_gpt2_init(&f->ref.gpt2, c, 42);
    ref_gpt2_write_hf(&f->ref.gpt2, dir, &o);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    return fixture_load(f, dir, c->vocab);
}

rc_fixture *rc_fixture_llama(const char *name, const rl_config *c)
{
    rc_fixture *f = calloc(1, sizeof *f);
    rl_hf_opts o = {.dtype = REF_F32};
    char dir[512];
    f->name = name;
    f->llama = 1;
    f->targets = "all-linear";
    f->n_lin = RL_N_LIN;
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(name));
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    ref_llama_init(&f->ref.llama, c, 42);
    ref_llama_write_hf(&f->ref.llama, dir, &o);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    return fixture_load(f, dir, c->vocab);
}

int rc_teardown(void **state)
{
    rc_fixture *f = *state;
    model_acts_free(f->base_acts);
    model_free(&f->base);
    model_free(&f->lm);
    if (f->llama)
        ref_llama_free(&f->ref.llama);
    else
        ref_gpt2_free(&f->ref.gpt2);
    free(f);
    return 0;
}

/* The reference's (layer, linear) of a module path, and a linear's shape. */
static int ref_parse(const rc_fixture *f, const char *path, int *layer, int *lin)
{
    return f->llama ? rl_module_parse(path, layer, lin) : ref_module_parse(path, layer, lin);
}

static void ref_shape(const rc_fixture *f, int lin, int *in, int *out)
{
    if (f->llama)
        rl_lin_shape(&f->ref.llama.cfg, lin, in, out);
    else
        ref_lin_shape(f->ref.gpt2.cfg.n_embd, lin, in, out);
}

double rc_ref_loss(const rc_fixture *f, const ref_lora *lo)
{
    return rc_ref_loss_on(f, lo, f->inp, f->tgt, RC_B, RC_T);
}

double rc_ref_loss_on(const rc_fixture *f, const ref_lora *lo, const int32_t *inp,
                      const int32_t *tgt, int B, int T)
{
    if (f->llama)
        return ref_llama_loss(&f->ref.llama, lo, inp, tgt, B, T);
    return ref_gpt2_loss(&f->ref.gpt2, lo, inp, tgt, B, T);
}

/* The reference's logits [vocab] at position pos of the sequence f->inp [RC_T]. */
static void ref_logits(const rc_fixture *f, const ref_lora *lo, int pos, double *logits)
{
    if (f->llama)
        ref_llama_logits(&f->ref.llama, lo, f->inp, RC_T, pos, logits);
    else
        ref_gpt2_logits(&f->ref.gpt2, lo, f->inp, RC_T, pos, logits);
}

void rc_build_layout(rc_fixture *f, lora_layout *L, int rslora, float dropout)
{
    pl_err e = {{0}};
    const model_config *c = &f->lm.cfg;
    if (lora_layout_build(L, c, f->targets, RC_RANK, RC_ALPHA, rslora, dropout, &e) != 0)
        rc_fail_err("lora_layout_build", &e);
    assert_int_equal(L->n, f->n_lin * c->n_layer);
    int seen[8][REF_MAX_LIN] = {{0}};
    size_t total = 0;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k, in, out;
        if (ref_parse(f, mod->path, &l, &k) != 0)
            fail_msg("module path %s is not a %s linear", mod->path, f->llama ? "Llama" : "GPT-2");
        assert_true(l >= 0 && l < c->n_layer);
        assert_int_equal(mod->layer, l);
        assert_false(seen[l][k]);
        seen[l][k] = 1;
        ref_shape(f, k, &in, &out);
        assert_int_equal(mod->in, in);
        assert_int_equal(mod->out, out);
        total += (size_t)RC_RANK * (in + out);
    }
    assert_int_equal(L->n_params, total);
    lora_attach(L, &f->lm);
}

void rc_ref_adapter(ref_lora *lo, const rc_fixture *f, const lora_layout *L, const float *p,
                    double scale, float *const *masks)
{
    memset(lo, 0, sizeof *lo);
    lo->r = L->r;
    lo->scale = scale;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k;
        assert_int_equal(ref_parse(f, mod->path, &l, &k), 0);
        size_t na = (size_t)L->r * mod->in, nb = (size_t)mod->out * L->r;
        size_t nm = (size_t)RC_B * RC_T * mod->in;
        lo->A[l][k] = malloc(na * sizeof(double));
        lo->B[l][k] = malloc(nb * sizeof(double));
        for (size_t j = 0; j < na; j++)
            lo->A[l][k][j] = p[mod->a_off + j];
        for (size_t j = 0; j < nb; j++)
            lo->B[l][k][j] = p[mod->b_off + j];
        if (masks) {
            lo->mask[l][k] = malloc(nm * sizeof(double));
            for (size_t j = 0; j < nm; j++)
                lo->mask[l][k][j] = masks[i][j];
        }
    }
}

void rc_fill_adapter(const lora_layout *L, float *p, uint64_t seed)
{
    ref_rng r = {seed};
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        for (size_t j = 0; j < (size_t)L->r * mod->in; j++)
            p[mod->a_off + j] = (float)((2 * ref_rng_uniform(&r) - 1) / sqrt((double)mod->in));
        for (size_t j = 0; j < (size_t)mod->out * L->r; j++)
            p[mod->b_off + j] = (float)(0.3 * ref_rng_normal(&r));
    }
}

/* ---- the shared tests ----------------------------------------------------------- */

void rc_test_base_loss_vs_ref(void **state)
{
    rc_fixture *f = *state;
    double got = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    double want = rc_ref_loss(f, NULL);
    if (!(fabs(got - want) / fabs(want) < 1e-5))
        fail_msg("%s: base loss %.9g, float64 reference %.9g", f->name, got, want);
}

void rc_test_zero_b_is_base(void **state)
{
    rc_fixture *f = *state;
    lora_layout L;
    rc_build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    lora_init_params(&L, p, 5);
    /* PEFT's init: B zero, A Kaiming-uniform within 1/sqrt(in) and not zero */
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        for (size_t j = 0; j < (size_t)mod->out * L.r; j++)
            assert_true(p[mod->b_off + j] == 0.0f);
        int nonzero = 0;
        for (size_t j = 0; j < (size_t)L.r * mod->in; j++) {
            assert_true(fabsf(p[mod->a_off + j]) <= 1.0f / sqrtf((float)mod->in));
            nonzero += p[mod->a_off + j] != 0.0f;
        }
        assert_true(nonzero > 0);
    }
    for (size_t j = 0; j < L.n_params; j++)
        g[j] = 123.0f;   /* must be overwritten */
    model_acts *a = model_acts_new(&f->lm, &L, RC_B, RC_T, 1);
    double with = model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, 0);
    double base = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    if (memcmp(&with, &base, sizeof with) != 0)
        fail_msg("%s: loss with B = 0: %.17g, base model: %.17g", f->name, with, base);
    double gb_all = 0;
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        double gb = 0;
        for (size_t j = 0; j < (size_t)L.r * mod->in; j++)
            if (g[mod->a_off + j] != 0.0f)
                fail_msg("%s: dA[%zu] = %g with B = 0", mod->path, j, g[mod->a_off + j]);
        for (size_t j = 0; j < (size_t)mod->out * L.r; j++)
            gb += fabs(g[mod->b_off + j]);
        if (!(gb > 1e-4))
            fail_msg("%s: dB is zero", mod->path);
        gb_all += gb;
    }
    assert_true(gb_all > 1e-3);
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

/* One gradient entry against a central difference of the reference's summed
 * loss in *v; returns 1 when it is out of tolerance.  An entry passes on an
 * absolute error below 1e-4 whatever its size, so check_tensor also asks the
 * tensor's gradient not to be tiny. */
double rc_fd(const rc_fixture *f, const ref_lora *lo, double *v)
{
    const double h = 1e-5;
    double v0 = *v;
    *v = v0 + h;
    double lp = rc_ref_loss(f, lo);
    *v = v0 - h;
    double lm = rc_ref_loss(f, lo);
    *v = v0;
    return (lp - lm) / (2 * h);
}

static int check_entry(const rc_fixture *f, const ref_lora *lo, double *v, float got,
                       const char *path, const char *which, size_t j, double *fd_sq)
{
    double fd = rc_fd(f, lo, v), ad = fabs(got - fd);
    *fd_sq += fd * fd;
    if (ad < 1e-4 || ad / fabs(fd) < 1e-3)
        return 0;
    print_error("%s.%s[%zu]: model_loss_grad %.9g, finite difference %.9g\n", path, which, j,
                (double)got, fd);
    return 1;
}

/* The floor on a tensor's gradient norm (both the model's and the finite
 * differences'): a zero or vanishing gradient must not pass on the absolute
 * tolerance of 1e-4 per entry.  The tensors here have at most 64 entries, so
 * all of them below 1e-4 make a norm below 8e-4; the fixtures' tensors have
 * norms of 0.49 (Llama) and 1.06 (GPT-2) and more. */
#define RC_GRAD_NORM_FLOOR 0.05

int rc_check_tensor(const rc_fixture *f, const ref_lora *lo, double *ref, const float *got,
                    size_t n, const char *path, const char *which)
{
    int bad = 0;
    double fd_sq = 0, got_sq = 0;
    for (size_t j = 0; j < n; j++) {
        bad += check_entry(f, lo, &ref[j], got[j], path, which, j, &fd_sq);
        got_sq += (double)got[j] * got[j];
    }
    if (!(sqrt(fd_sq) >= RC_GRAD_NORM_FLOOR && sqrt(got_sq) >= RC_GRAD_NORM_FLOOR)) {
        print_error("%s.%s: gradient norm %.3g (finite differences %.3g) below the floor %g\n",
                    path, which, sqrt(got_sq), sqrt(fd_sq), RC_GRAD_NORM_FLOOR);
        bad++;
    }
    return bad;
}

/* The dropout masks model_step.c draws for module i with seed s: keep with
 * probability 1 - p, kept inputs scaled by 1/(1 - p). */
static float *draw_mask(int i, unsigned long long s, float p, size_t n)
{
    float *m = malloc(n * sizeof *m);
    rng_state r;
    uint64_t words[2] = {s, (uint64_t)i};
    rng_seed(&r, words, 2);
    for (size_t k = 0; k < n; k++)
        m[k] = rng_uniform(&r) < p ? 0.0f : 1.0f / (1.0f - p);
    return m;
}

/* d(sum loss)/d(A, B) of every module against finite differences, with
 * dropout p (0: none); first the training loss against the reference's. */
static void check_grad_fd(rc_fixture *f, float p_drop)
{
    const unsigned long long seed = 99;
    lora_layout L;
    ref_lora lo;
    rc_build_layout(f, &L, 0, p_drop);
    assert_true(fabsf(L.scale - RC_ALPHA / RC_RANK) < 1e-7f);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    float **masks = p_drop > 0 ? calloc((size_t)L.n, sizeof *masks) : NULL;
    for (int i = 0; masks && i < L.n; i++)
        masks[i] = draw_mask(i, seed, p_drop, (size_t)RC_B * RC_T * L.m[i].in);
    rc_fill_adapter(&L, p, 11);
    for (size_t j = 0; j < L.n_params; j++)
        g[j] = 123.0f;
    model_acts *a = model_acts_new(&f->lm, &L, RC_B, RC_T, 1);
    double loss = model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, seed);
    rc_ref_adapter(&lo, f, &L, p, (double)RC_ALPHA / RC_RANK, masks);
    double want = rc_ref_loss(f, &lo);
    if (!(fabs(loss - want) / fabs(want) < 1e-5))
        fail_msg("%s dropout %g: training loss %.9g, reference %.9g", f->name, p_drop, loss, want);
    int bad = 0, checked = 0;
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        int l, k;
        ref_parse(f, mod->path, &l, &k);
        size_t na = (size_t)L.r * mod->in, nb = (size_t)mod->out * L.r;
        bad += rc_check_tensor(f, &lo, lo.A[l][k], g + mod->a_off, na, mod->path, "lora_A");
        bad += rc_check_tensor(f, &lo, lo.B[l][k], g + mod->b_off, nb, mod->path, "lora_B");
        checked += (int)(na + nb);
    }
    assert_int_equal(checked, (int)L.n_params);
    if (bad)
        fail_msg("%s dropout %g: %d of %d adapter gradients (or tensor norms) differ from finite "
                 "differences", f->name, p_drop, bad, checked);
    for (int i = 0; masks && i < L.n; i++)
        free(masks[i]);
    free(masks);
    ref_lora_free(&lo);
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

void rc_test_lora_grad_fd(void **state) { check_grad_fd(*state, 0.0f); }
void rc_test_lora_grad_fd_dropout(void **state) { check_grad_fd(*state, 0.3f); }

void rc_test_lora_loss_vs_ref(void **state)
{
    rc_fixture *f = *state;
    for (int rs = 0; rs < 2; rs++) {
        lora_layout L;
        ref_lora lo;
        rc_build_layout(f, &L, rs, 0.0f);
        double s = rs ? RC_ALPHA / sqrt((double)RC_RANK) : (double)RC_ALPHA / RC_RANK;
        assert_true(fabs(L.scale - s) < 1e-6);
        float *p = malloc(L.n_params * sizeof *p);
        rc_fill_adapter(&L, p, 21 + rs);
        rc_ref_adapter(&lo, f, &L, p, s, NULL);
        double want = rc_ref_loss(f, &lo);
        double base = rc_ref_loss(f, NULL);
        /* the adapter must matter far more than the tolerance */
        assert_true(fabs(want - base) / fabs(want) > 1e-2);
        for (int bw = 0; bw < 2; bw++) {
            model_acts *a = model_acts_new(&f->lm, &L, RC_B, RC_T, bw);
            double got = model_loss_grad(&f->lm, a, &L, p, NULL, f->inp, f->tgt, 0);
            double rel = fabs(got - want) / fabs(want);
            if (!(rel < 1e-5))
                fail_msg("%s rslora %d, backward acts %d: loss %.9g, float64 reference %.9g "
                         "(rel %.3g)", f->name, rs, bw, got, want, rel);
            model_acts_free(a);
        }
        ref_lora_free(&lo);
        free(p);
        lora_layout_free(&L);
    }
}

/* model_logits of every position of one sequence, with a nonzero adapter,
 * against the reference's: max error below 1e-5 of max(1, largest logit). */
void rc_test_logits_vs_ref(void **state)
{
    rc_fixture *f = *state;
    int V = f->llama ? f->ref.llama.cfg.vocab : f->ref.gpt2.cfg.vocab;
    lora_layout L;
    ref_lora lo;
    rc_build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *lg = malloc((size_t)V * sizeof *lg);
    double *want = malloc((size_t)V * sizeof *want);
    rc_fill_adapter(&L, p, 31);
    rc_ref_adapter(&lo, f, &L, p, (double)RC_ALPHA / RC_RANK, NULL);
    model_acts *a = model_acts_new(&f->lm, &L, 1, RC_T, 0);
    for (int pos = 0; pos < RC_T; pos++) {
        model_logits(&f->lm, a, &L, p, f->inp, pos, lg);
        ref_logits(f, &lo, pos, want);
        double err = 0, mx = 0;
        for (int v = 0; v < V; v++) {
            err = fmax(err, fabs(lg[v] - want[v]));
            mx = fmax(mx, fabs(want[v]));
        }
        if (!(err < 1e-5 * fmax(1, mx)))
            fail_msg("%s: logits at %d off by %.3g (max %.3g)", f->name, pos, err, mx);
    }
    model_acts_free(a);
    ref_lora_free(&lo);
    free(p), free(lg), free(want);
    lora_layout_free(&L);
}
