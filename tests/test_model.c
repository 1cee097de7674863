/* test_model.c - the whole GPT-2 + LoRA model against the float64 reference
 * of tests/ref_gpt2.h.
 *
 * The model directory is written by hand from the format (not by the
 * project's writers) and read with model_load.  The adapter is set through
 * the project's flat vector (lora_layout_build, a_off/b_off per module) and
 * mapped to the reference's per-(layer, linear) A and B from the module path.
 *   (a) B = 0 (PEFT init) gives bitwise the base model's loss, and dA = 0;
 *   (b) every adapter gradient of model_loss_grad against central finite
 *       differences of the reference's summed loss;
 *   (c) the float loss with a nonzero adapter against the reference, for
 *       scale alpha/r and for rslora's alpha/sqrt(r). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "model.h"
#include "ref_gpt2.h"
#include "testutil.h"

enum { NB = 2, NT = 5, RANK = 2 };
#define ALPHA 3.0f
#define TARGETS "c_attn,c_proj,c_fc"

/* Shared by the tests: the reference, the same model loaded twice (one left
 * without adapters) and fixed tokens. */
typedef struct {
    ref_gpt2 ref;
    model base, lm;
    model_acts *base_acts;
    int32_t inp[NB * NT], tgt[NB * NT];
} fixture;

static void fail_err(const char *what, const pl_err *e) { fail_msg("%s: %s", what, e->msg); }

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    ref_config c = {.n_layer = 2, .n_embd = 8, .n_head = 2, .n_positions = 6, .vocab = 11,
                    .eps = 1e-3, .untied = 0};
    ref_hf_opts o = {.prefix = 1, .dtype = REF_F32};
    pl_err e = {{0}};
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("model"));
    ref_gpt2_init(&f->ref, &c, 42);
    ref_gpt2_write_hf(&f->ref, dir, &o);
    if (model_load(&f->base, dir, &e) != 0 || model_load(&f->lm, dir, &e) != 0)
        fail_err(dir, &e);
    f->base_acts = model_acts_new(&f->base, NULL, NB, NT, 0);
    ref_rng r = {7};
    for (int i = 0; i < NB * NT; i++) {
        f->inp[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)c.vocab);
        f->tgt[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)c.vocab);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    model_acts_free(f->base_acts);
    model_free(&f->base);
    model_free(&f->lm);
    ref_gpt2_free(&f->ref);
    free(f);
    return 0;
}

/* Builds the layout for TARGETS and attaches it to f->lm; checks that every
 * module is one of the expected (layer, linear) pairs with the right shape. */
static void build_layout(fixture *f, lora_layout *L, int rslora)
{
    pl_err e = {{0}};
    const model_config *c = &f->lm.cfg;
    if (lora_layout_build(L, c, TARGETS, RANK, ALPHA, rslora, 0.0f, &e) != 0)
        fail_err("lora_layout_build", &e);
    /* c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj in every layer */
    assert_int_equal(L->n, 4 * c->n_layer);
    int seen[8][REF_N_LIN] = {{0}};
    size_t total = 0;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k, in, out;
        if (ref_module_parse(mod->path, &l, &k) != 0)
            fail_msg("module path %s is not a GPT-2 linear", mod->path);
        assert_true(l >= 0 && l < c->n_layer);
        assert_int_equal(mod->layer, l);
        assert_false(seen[l][k]);
        seen[l][k] = 1;
        ref_lin_shape(c->n_embd, k, &in, &out);
        assert_int_equal(mod->in, in);
        assert_int_equal(mod->out, out);
        total += (size_t)RANK * (in + out);
    }
    assert_int_equal(L->n_params, total);
    lora_attach(L, &f->lm);
}

/* The reference adapter holding the values of the flat vector p. */
static void ref_adapter(ref_lora *lo, const lora_layout *L, const float *p, double scale)
{
    memset(lo, 0, sizeof *lo);
    lo->r = L->r;
    lo->scale = scale;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k;
        assert_int_equal(ref_module_parse(mod->path, &l, &k), 0);
        size_t na = (size_t)L->r * mod->in, nb = (size_t)mod->out * L->r;
        lo->A[l][k] = malloc(na * sizeof(double));
        lo->B[l][k] = malloc(nb * sizeof(double));
        for (size_t j = 0; j < na; j++)
            lo->A[l][k][j] = p[mod->a_off + j];
        for (size_t j = 0; j < nb; j++)
            lo->B[l][k][j] = p[mod->b_off + j];
    }
}

/* Nonzero adapter values: A ~ U(-1,1)/sqrt(in), B ~ N(0, 0.3^2). */
static void fill_adapter(const lora_layout *L, float *p, uint64_t seed)
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

/* (a) PEFT init (B = 0): the loss is bitwise the base model's, dA is exactly
 * 0 and dB is not. */
static void test_zero_b_is_base(void **state)
{
    fixture *f = *state;
    lora_layout L;
    build_layout(f, &L, 0);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    lora_init_params(&L, p, 5);
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
    model_acts *a = model_acts_new(&f->lm, &L, NB, NT, 1);
    double with = model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, 0);
    double base = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    if (memcmp(&with, &base, sizeof with) != 0)
        fail_msg("loss with B = 0: %.17g, base model: %.17g", with, base);
    double gb = 0;
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        for (size_t j = 0; j < (size_t)L.r * mod->in; j++)
            if (g[mod->a_off + j] != 0.0f)
                fail_msg("%s: dA[%zu] = %g with B = 0", mod->path, j, g[mod->a_off + j]);
        for (size_t j = 0; j < (size_t)mod->out * L.r; j++)
            gb += fabs(g[mod->b_off + j]);
    }
    assert_true(gb > 1e-3);
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

/* Checks one gradient entry against a central difference of the reference's
 * summed loss in *v; returns 1 when it is out of tolerance. */
static int check_entry(fixture *f, const ref_lora *lo, double *v, float got, const char *path,
                       const char *which, size_t j)
{
    const double h = 1e-5;
    double v0 = *v;
    *v = v0 + h;
    double lp = ref_gpt2_loss(&f->ref, lo, f->inp, f->tgt, NB, NT);
    *v = v0 - h;
    double lm = ref_gpt2_loss(&f->ref, lo, f->inp, f->tgt, NB, NT);
    *v = v0;
    double fd = (lp - lm) / (2 * h), ad = fabs(got - fd);
    if (ad < 1e-4 || ad / fabs(fd) < 1e-3)
        return 0;
    print_error("%s.%s[%zu]: model_loss_grad %.9g, finite difference %.9g\n", path, which, j,
                (double)got, fd);
    return 1;
}

/* (b) d(sum loss)/d(A, B) of every module against finite differences. */
static void test_lora_grad_fd(void **state)
{
    fixture *f = *state;
    lora_layout L;
    ref_lora lo;
    build_layout(f, &L, 0);
    assert_true(fabsf(L.scale - ALPHA / RANK) < 1e-7f);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    fill_adapter(&L, p, 11);
    for (size_t j = 0; j < L.n_params; j++)
        g[j] = 123.0f;
    model_acts *a = model_acts_new(&f->lm, &L, NB, NT, 1);
    model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, 0);
    ref_adapter(&lo, &L, p, (double)ALPHA / RANK);
    int bad = 0, checked = 0;
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        int l, k;
        ref_module_parse(mod->path, &l, &k);
        for (size_t j = 0; j < (size_t)L.r * mod->in; j++, checked++)
            bad += check_entry(f, &lo, &lo.A[l][k][j], g[mod->a_off + j], mod->path, "lora_A", j);
        for (size_t j = 0; j < (size_t)mod->out * L.r; j++, checked++)
            bad += check_entry(f, &lo, &lo.B[l][k][j], g[mod->b_off + j], mod->path, "lora_B", j);
    }
    assert_int_equal(checked, (int)L.n_params);
    if (bad)
        fail_msg("%d of %d adapter gradients differ from finite differences", bad, checked);
    ref_lora_free(&lo);
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

/* (c) the float loss with a nonzero adapter equals the float64 reference's,
 * with scale alpha/r and (rslora) alpha/sqrt(r); forward-only acts too. */
static void test_lora_loss_vs_ref(void **state)
{
    fixture *f = *state;
    for (int rs = 0; rs < 2; rs++) {
        lora_layout L;
        ref_lora lo;
        build_layout(f, &L, rs);
        double s = rs ? ALPHA / sqrt((double)RANK) : (double)ALPHA / RANK;
        assert_true(fabs(L.scale - s) < 1e-6);
        float *p = malloc(L.n_params * sizeof *p);
        fill_adapter(&L, p, 21 + rs);
        ref_adapter(&lo, &L, p, s);
        double want = ref_gpt2_loss(&f->ref, &lo, f->inp, f->tgt, NB, NT);
        double base = ref_gpt2_loss(&f->ref, NULL, f->inp, f->tgt, NB, NT);
        /* the adapter must matter far more than the tolerance */
        assert_true(fabs(want - base) / fabs(want) > 1e-2);
        for (int bw = 0; bw < 2; bw++) {
            model_acts *a = model_acts_new(&f->lm, &L, NB, NT, bw);
            double got = model_loss_grad(&f->lm, a, &L, p, NULL, f->inp, f->tgt, 0);
            double rel = fabs(got - want) / fabs(want);
            if (!(rel < 1e-5))
                fail_msg("rslora %d, backward acts %d: loss %.9g, float64 reference %.9g (rel %.3g)",
                         rs, bw, got, want, rel);
            model_acts_free(a);
        }
        ref_lora_free(&lo);
        free(p);
        lora_layout_free(&L);
    }
}

/* The base model alone against the reference (no adapter anywhere). */
static void test_base_loss_vs_ref(void **state)
{
    fixture *f = *state;
    double got = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    double want = ref_gpt2_loss(&f->ref, NULL, f->inp, f->tgt, NB, NT);
    if (!(fabs(got - want) / fabs(want) < 1e-5))
        fail_msg("base loss %.9g, float64 reference %.9g", got, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_loss_vs_ref),
        cmocka_unit_test(test_zero_b_is_base),
        cmocka_unit_test(test_lora_grad_fd),
        cmocka_unit_test(test_lora_loss_vs_ref),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
