/* test_llama.c - the whole Llama + LoRA model against the float64 reference
 * of tests/ref_llama.h, and the Llama parts of init, save, config and PEFT.
 *
 * Two tiny models, each written by hand as a Hugging Face directory and read
 * with model_load:
 *   gqa: 2 layers, hidden 8, 4 query heads and 2 kv heads of size 4 (q has
 *        16 rows for a hidden size of 8), intermediate 12, vocab 11, untied
 *        lm_head, attention and MLP biases, rope_theta 10;
 *   mha: the same shape with 4 kv heads, tied embeddings, no biases.
 * On each, with "all-linear" targets (all seven maps of both layers):
 *   (a) B = 0 (PEFT init) gives bitwise the base model's loss, and dA = 0;
 *   (b) every adapter gradient against central finite differences of the
 *       reference's summed loss, with nonzero B; also with dropout, the
 *       reference applying the same masks (drawn as model_step.c documents);
 *   (c) the float loss with an adapter (alpha/r and rslora) against the reference;
 *   (d) model_logits (generation) against the reference's logits.
 * Then: config.json round trip, `pslora init` weights (statistics, names,
 * shapes, tied / untied) through save and load, PEFT adapter keys and
 * fan_in_fan_out false, and a saved adapter loading back to the same loss. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "model.h"
#include "ref_llama.h"
#include "rng.h"
#include "safetensors.h"
#include "testutil.h"

enum { NB = 2, NT = 5, RANK = 2 };
#define ALPHA 3.0f

typedef struct {
    const char *name;
    rl_config c;
    ref_llama ref;
    model base, lm;
    model_acts *base_acts;
    int32_t inp[NB * NT], tgt[NB * NT];
} fixture;

static void fail_err(const char *what, const pl_err *e) { fail_msg("%s: %s", what, e->msg); }

static int setup_cfg(void **state, const char *name, rl_config c)
{
    fixture *f = calloc(1, sizeof *f);
    rl_hf_opts o = {.dtype = REF_F32};
    pl_err e = {{0}};
    char dir[512];
    f->name = name;
    f->c = c;
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(name));
    ref_llama_init(&f->ref, &c, 42);
    ref_llama_write_hf(&f->ref, dir, &o);
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

static int setup_gqa(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-5, .theta = 10.0,
                   .untied = 1, .attn_bias = 1, .mlp_bias = 1};
    return setup_cfg(state, "llama_gqa", c);
}

static int setup_mha(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 4, .head_dim = 2,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-6, .theta = 10.0,
                   .untied = 0};
    return setup_cfg(state, "llama_mha", c);
}

static int teardown(void **state)
{
    fixture *f = *state;
    model_acts_free(f->base_acts);
    model_free(&f->base);
    model_free(&f->lm);
    ref_llama_free(&f->ref);
    free(f);
    return 0;
}

/* "all-linear" on f->lm: every (layer, linear) once, with the reference's shapes. */
static void build_layout(fixture *f, lora_layout *L, int rslora, float dropout)
{
    pl_err e = {{0}};
    const model_config *c = &f->lm.cfg;
    if (lora_layout_build(L, c, "all-linear", RANK, ALPHA, rslora, dropout, &e) != 0)
        fail_err("lora_layout_build", &e);
    assert_int_equal(L->n, RL_N_LIN * c->n_layer);
    int seen[8][RL_N_LIN] = {{0}};
    size_t total = 0;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k, in, out;
        if (rl_module_parse(mod->path, &l, &k) != 0)
            fail_msg("module path %s is not a Llama linear", mod->path);
        assert_int_equal(mod->layer, l);
        assert_false(seen[l][k]);
        seen[l][k] = 1;
        rl_lin_shape(&f->c, k, &in, &out);
        assert_int_equal(mod->in, in);
        assert_int_equal(mod->out, out);
        total += (size_t)RANK * (in + out);
    }
    assert_int_equal(L->n_params, total);
    lora_attach(L, &f->lm);
}

/* The reference adapter holding the flat vector p (and dropout masks when
 * masks is not NULL: masks[i] is module i's [N, in] mask). */
static void ref_adapter(rl_lora *lo, const lora_layout *L, const float *p, double scale,
                        float *const *masks)
{
    memset(lo, 0, sizeof *lo);
    lo->r = L->r;
    lo->scale = scale;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        int l, k;
        assert_int_equal(rl_module_parse(mod->path, &l, &k), 0);
        size_t na = (size_t)L->r * mod->in, nb = (size_t)mod->out * L->r, nm = (size_t)NB * NT * mod->in;
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

/* The base model alone against the reference. */
static void test_base_loss_vs_ref(void **state)
{
    fixture *f = *state;
    double got = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    double want = ref_llama_loss(&f->ref, NULL, f->inp, f->tgt, NB, NT);
    if (!(fabs(got - want) / fabs(want) < 1e-5))
        fail_msg("%s: base loss %.9g, float64 reference %.9g", f->name, got, want);
}

/* (a) PEFT init: the loss is bitwise the base model's, dA exactly 0, dB not. */
static void test_zero_b_is_base(void **state)
{
    fixture *f = *state;
    lora_layout L;
    build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    lora_init_params(&L, p, 5);
    for (size_t j = 0; j < L.n_params; j++)
        g[j] = 123.0f;
    model_acts *a = model_acts_new(&f->lm, &L, NB, NT, 1);
    double with = model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, 0);
    double base = model_loss_grad(&f->base, f->base_acts, NULL, NULL, NULL, f->inp, f->tgt, 0);
    if (memcmp(&with, &base, sizeof with) != 0)
        fail_msg("%s: loss with B = 0: %.17g, base model: %.17g", f->name, with, base);
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
    }
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

/* One gradient entry against a central difference of the reference's summed
 * loss in *v; returns 1 when it is out of tolerance. */
static int check_entry(fixture *f, const rl_lora *lo, double *v, float got, const char *path,
                       const char *which, size_t j)
{
    const double h = 1e-5;
    double v0 = *v;
    *v = v0 + h;
    double lp = ref_llama_loss(&f->ref, lo, f->inp, f->tgt, NB, NT);
    *v = v0 - h;
    double lm = ref_llama_loss(&f->ref, lo, f->inp, f->tgt, NB, NT);
    *v = v0;
    double fd = (lp - lm) / (2 * h), ad = fabs(got - fd);
    if (ad < 1e-4 || ad / fabs(fd) < 1e-3)
        return 0;
    print_error("%s.%s[%zu]: model_loss_grad %.9g, finite difference %.9g\n", path, which, j,
                (double)got, fd);
    return 1;
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

/* (b) d(sum loss)/d(A, B) of every module against finite differences, with
 * dropout p (0: none). */
static void check_grad_fd(fixture *f, float p_drop)
{
    const unsigned long long seed = 99;
    lora_layout L;
    rl_lora lo;
    build_layout(f, &L, 0, p_drop);
    float *p = malloc(L.n_params * sizeof *p), *g = malloc(L.n_params * sizeof *g);
    float **masks = p_drop > 0 ? calloc((size_t)L.n, sizeof *masks) : NULL;
    for (int i = 0; masks && i < L.n; i++)
        masks[i] = draw_mask(i, seed, p_drop, (size_t)NB * NT * L.m[i].in);
    fill_adapter(&L, p, 11);
    for (size_t j = 0; j < L.n_params; j++)
        g[j] = 123.0f;
    model_acts *a = model_acts_new(&f->lm, &L, NB, NT, 1);
    double loss = model_loss_grad(&f->lm, a, &L, p, g, f->inp, f->tgt, seed);
    ref_adapter(&lo, &L, p, (double)ALPHA / RANK, masks);
    double want = ref_llama_loss(&f->ref, &lo, f->inp, f->tgt, NB, NT);
    if (!(fabs(loss - want) / fabs(want) < 1e-5))
        fail_msg("%s dropout %g: training loss %.9g, reference %.9g", f->name, p_drop, loss, want);
    int bad = 0, checked = 0;
    for (int i = 0; i < L.n; i++) {
        const lora_module *mod = &L.m[i];
        int l, k;
        rl_module_parse(mod->path, &l, &k);
        for (size_t j = 0; j < (size_t)L.r * mod->in; j++, checked++)
            bad += check_entry(f, &lo, &lo.A[l][k][j], g[mod->a_off + j], mod->path, "lora_A", j);
        for (size_t j = 0; j < (size_t)mod->out * L.r; j++, checked++)
            bad += check_entry(f, &lo, &lo.B[l][k][j], g[mod->b_off + j], mod->path, "lora_B", j);
    }
    assert_int_equal(checked, (int)L.n_params);
    if (bad)
        fail_msg("%s dropout %g: %d of %d adapter gradients differ from finite differences",
                 f->name, p_drop, bad, checked);
    for (int i = 0; masks && i < L.n; i++)
        free(masks[i]);
    free(masks);
    rl_lora_free(&lo);
    model_acts_free(a);
    free(p);
    free(g);
    lora_layout_free(&L);
}

static void test_lora_grad_fd(void **state) { check_grad_fd(*state, 0.0f); }
static void test_lora_grad_fd_dropout(void **state) { check_grad_fd(*state, 0.3f); }

/* (c) the float loss with a nonzero adapter equals the float64 reference's,
 * alpha/r and rslora's alpha/sqrt(r), forward-only and backward acts. */
static void test_lora_loss_vs_ref(void **state)
{
    fixture *f = *state;
    for (int rs = 0; rs < 2; rs++) {
        lora_layout L;
        rl_lora lo;
        build_layout(f, &L, rs, 0.0f);
        double s = rs ? ALPHA / sqrt((double)RANK) : (double)ALPHA / RANK;
        assert_true(fabs(L.scale - s) < 1e-6);
        float *p = malloc(L.n_params * sizeof *p);
        fill_adapter(&L, p, 21 + rs);
        ref_adapter(&lo, &L, p, s, NULL);
        double want = ref_llama_loss(&f->ref, &lo, f->inp, f->tgt, NB, NT);
        double base = ref_llama_loss(&f->ref, NULL, f->inp, f->tgt, NB, NT);
        assert_true(fabs(want - base) / fabs(want) > 1e-2);   /* the adapter matters */
        for (int bw = 0; bw < 2; bw++) {
            model_acts *a = model_acts_new(&f->lm, &L, NB, NT, bw);
            double got = model_loss_grad(&f->lm, a, &L, p, NULL, f->inp, f->tgt, 0);
            if (!(fabs(got - want) / fabs(want) < 1e-5))
                fail_msg("%s rslora %d acts %d: loss %.9g, reference %.9g", f->name, rs, bw, got,
                         want);
            model_acts_free(a);
        }
        rl_lora_free(&lo);
        free(p);
        lora_layout_free(&L);
    }
}

/* (d) model_logits of every position of one sequence against the reference. */
static void test_logits_vs_ref(void **state)
{
    fixture *f = *state;
    lora_layout L;
    rl_lora lo;
    build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *lg = malloc((size_t)f->c.vocab * sizeof *lg);
    double *want = malloc((size_t)f->c.vocab * sizeof *want);
    fill_adapter(&L, p, 31);
    ref_adapter(&lo, &L, p, (double)ALPHA / RANK, NULL);
    model_acts *a = model_acts_new(&f->lm, &L, 1, NT, 0);
    for (int pos = 0; pos < NT; pos++) {
        model_logits(&f->lm, a, &L, p, f->inp, pos, lg);
        ref_llama_logits(&f->ref, &lo, f->inp, NT, pos, want);
        double err = 0, mx = 0;
        for (int v = 0; v < f->c.vocab; v++) {
            err = fmax(err, fabs(lg[v] - want[v]));
            mx = fmax(mx, fabs(want[v]));
        }
        if (!(err < 1e-5 * fmax(1, mx)))
            fail_msg("%s: logits at %d off by %.3g (max %.3g)", f->name, pos, err, mx);
    }
    model_acts_free(a);
    rl_lora_free(&lo);
    free(p), free(lg), free(want);
    lora_layout_free(&L);
}

/* A PEFT adapter of the model: keys base_model.model.model.layers.N.<module>
 * .lora_A/B.weight with [r, in] / [out, r], fan_in_fan_out false, and the
 * same loss once loaded back. */
static void test_peft_roundtrip(void **state)
{
    fixture *f = *state;
    lora_layout L, L2;
    pl_err e = {{0}};
    build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *p2 = NULL;
    fill_adapter(&L, p, 41);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/adapter", tu_tmpdir("llama_peft"));
    if (lora_save_peft(dir, &L, &f->lm.cfg, p, "tiny-llama", &e) != 0)
        fail_err(dir, &e);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file sf;
    if (st_open(&sf, path, &e) != 0)
        fail_err(path, &e);
    assert_int_equal(sf.n, 2 * RL_N_LIN * f->c.n_layer);
    for (int l = 0; l < f->c.n_layer; l++)
        for (int k = 0; k < RL_N_LIN; k++) {
            int in, out;
            char key[200];
            rl_lin_shape(&f->c, k, &in, &out);
            snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_A.weight", l,
                     rl_lin_name(k));
            const st_tensor *t = st_find(&sf, key);
            if (!t)
                fail_msg("%s: no tensor %s", path, key);
            assert_true(t->ndim == 2 && t->shape[0] == RANK && t->shape[1] == in);
            snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_B.weight", l,
                     rl_lin_name(k));
            t = st_find(&sf, key);
            if (!t)
                fail_msg("%s: no tensor %s", path, key);
            assert_true(t->ndim == 2 && t->shape[0] == out && t->shape[1] == RANK);
        }
    st_close(&sf);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    char *text = pl_read_text(path, 1 << 20, NULL, &e);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    free(text);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out")));
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    assert_int_equal(cJSON_GetArraySize(tm), RL_N_LIN);
    cJSON_Delete(j);

    if (lora_load_peft(dir, &f->lm.cfg, &L2, &p2, &e) != 0)
        fail_err(dir, &e);
    assert_int_equal(L2.n_params, L.n_params);
    assert_memory_equal(p2, p, L.n_params * sizeof *p);
    lora_attach(&L2, &f->lm);
    model_acts *a = model_acts_new(&f->lm, &L2, NB, NT, 0);
    double got = model_loss_grad(&f->lm, a, &L2, p2, NULL, f->inp, f->tgt, 0);
    lora_attach(&L, &f->lm);
    double want = model_loss_grad(&f->lm, a, &L, p, NULL, f->inp, f->tgt, 0);
    assert_true(memcmp(&got, &want, sizeof got) == 0);
    model_acts_free(a);
    free(p), free(p2);
    lora_layout_free(&L);
    lora_layout_free(&L2);
}

/* ---- without a fixture ---- */

/* model_config_save then model_config_load gives back every Llama field. */
static void test_config_roundtrip(void **state)
{
    (void)state;
    model_config c = {.arch = ARCH_LLAMA, .n_layer = 3, .n_embd = 24, .n_head = 6, .n_kv_head = 2,
                      .head_dim = 8, .n_inner = 40, .vocab = 301, .n_ctx = 77, .eps = 1e-6f,
                      .rope_theta = 500000.0f, .tie_embeddings = 0, .attn_bias = 1, .mlp_bias = 0};
    model_config d;
    pl_err e = {{0}};
    const char *dir = tu_tmpdir("llama_cfg");
    if (model_config_save(&c, dir, &e) != 0 || model_config_load(&d, dir, &e) != 0)
        fail_err(dir, &e);
    assert_memory_equal(&c, &d, sizeof c);
    c.tie_embeddings = 1, c.attn_bias = 0, c.mlp_bias = 1, c.eps = 1e-5f, c.rope_theta = 10000.0f;
    if (model_config_save(&c, dir, &e) != 0 || model_config_load(&d, dir, &e) != 0)
        fail_err(dir, &e);
    assert_memory_equal(&c, &d, sizeof c);
}

/* `pslora init --arch llama`: weights drawn as transformers does (linear and
 * embedding N(0, 0.02^2), norms 1), saved under LlamaForCausalLM keys and
 * shapes, loaded back bit for bit; lm_head only when untied. */
static void check_init(int untied)
{
    model_config c = {.arch = ARCH_LLAMA, .n_layer = 2, .n_embd = 32, .n_head = 4, .n_kv_head = 2,
                      .head_dim = 8, .n_inner = 48, .vocab = 64, .n_ctx = 32, .eps = 1e-6f,
                      .rope_theta = 10000.0f, .tie_embeddings = !untied};
    model m, back;
    pl_err e = {{0}};
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/m", tu_tmpdir(untied ? "llama_init_untied" : "llama_init_tied"));
    if (model_init_random(&m, &c, 3, &e) != 0 || model_save(&m, dir, &e) != 0)
        fail_err(dir, &e);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file sf;
    if (st_open(&sf, path, &e) != 0)
        fail_err(path, &e);
    assert_int_equal(sf.n, 2 + 9 * c.n_layer + untied);
    /* every key, its shape and the draw's statistics */
    for (int i = 0; i < sf.n; i++) {
        const st_tensor *t = &sf.t[i];
        const float *v = t->data;
        double s = 0, ss = 0;
        for (size_t k = 0; k < t->numel; k++)
            s += v[k], ss += (double)v[k] * v[k];
        double mean = s / t->numel, sd = sqrt(ss / t->numel - mean * mean);
        if (strstr(t->name, "norm")) {
            assert_int_equal(t->ndim, 1);
            assert_true(t->shape[0] == c.n_embd && mean == 1.0 && sd == 0.0);
        } else {
            assert_int_equal(t->ndim, 2);
            if (!(fabs(sd - 0.02) < 0.004 && fabs(mean) < 0.004))
                fail_msg("%s: mean %g sd %g, expected N(0, 0.02^2)", t->name, mean, sd);
        }
    }
    const st_tensor *k = st_find(&sf, "model.layers.1.self_attn.k_proj.weight");
    assert_true(k && k->shape[0] == 16 && k->shape[1] == 32);   /* [kv heads * head_dim, hidden] */
    const st_tensor *o = st_find(&sf, "model.layers.0.self_attn.o_proj.weight");
    assert_true(o && o->shape[0] == 32 && o->shape[1] == 32);
    const st_tensor *dn = st_find(&sf, "model.layers.0.mlp.down_proj.weight");
    assert_true(dn && dn->shape[0] == 32 && dn->shape[1] == 48);
    assert_non_null(st_find(&sf, "model.embed_tokens.weight"));
    assert_non_null(st_find(&sf, "model.norm.weight"));
    assert_int_equal(st_find(&sf, "lm_head.weight") != NULL, untied);
    st_close(&sf);

    if (model_load(&back, dir, &e) != 0)
        fail_err(dir, &e);
    assert_memory_equal(&back.cfg, &m.cfg, sizeof m.cfg);
    model_weight *w1 = calloc((size_t)model_weight_count(&c), sizeof *w1);
    model_weight *w2 = calloc((size_t)model_weight_count(&c), sizeof *w2);
    int n = model_weight_table(&m, w1);
    assert_int_equal(model_weight_table(&back, w2), n);
    assert_int_equal(n, model_weight_count(&c));
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)w1[i].shape[0] * (w1[i].ndim == 2 ? (size_t)w1[i].shape[1] : 1);
        assert_string_equal(w1[i].name, w2[i].name);
        assert_memory_equal(*w1[i].slot, *w2[i].slot, cnt * sizeof(float));
    }
    assert_int_equal(back.lm_head == back.wte, !untied);
    assert_memory_equal(back.lm_head, m.lm_head, (size_t)c.vocab * c.n_embd * sizeof(float));
    free(w1), free(w2);
    model_free(&m);
    model_free(&back);
}

static void test_init_tied(void **state)
{
    (void)state;
    check_init(0);
}

static void test_init_untied(void **state)
{
    (void)state;
    check_init(1);
}

/* Shapes a Llama cannot have are refused by init, naming the flag. */
static void test_init_rejects(void **state)
{
    (void)state;
    model m;
    pl_err e = {{0}};
    model_config c = {.arch = ARCH_LLAMA, .n_layer = 1, .n_embd = 12, .n_head = 4, .n_kv_head = 3,
                      .head_dim = 3, .n_inner = 8, .vocab = 10, .n_ctx = 8, .eps = 1e-6f,
                      .rope_theta = 1e4f, .tie_embeddings = 1};
    assert_int_equal(model_init_random(&m, &c, 1, &e), -1);
    if (!strstr(e.msg, "--kv-heads"))
        fail_msg("%s", e.msg);
    c.n_kv_head = 2;
    assert_int_equal(model_init_random(&m, &c, 1, &e), -1);
    if (!strstr(e.msg, "head size 3"))
        fail_msg("%s", e.msg);
}

int main(void)
{
    const struct CMUnitTest model_tests[] = {
        cmocka_unit_test(test_base_loss_vs_ref),   cmocka_unit_test(test_zero_b_is_base),
        cmocka_unit_test(test_lora_grad_fd),       cmocka_unit_test(test_lora_grad_fd_dropout),
        cmocka_unit_test(test_lora_loss_vs_ref),   cmocka_unit_test(test_logits_vs_ref),
        cmocka_unit_test(test_peft_roundtrip),
    };
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(test_config_roundtrip), cmocka_unit_test(test_init_tied),
        cmocka_unit_test(test_init_untied),      cmocka_unit_test(test_init_rejects),
    };
    int fails = _cmocka_run_group_tests("llama_gqa_untied_biases", model_tests,
                                        sizeof model_tests / sizeof *model_tests, setup_gqa, teardown);
    fails += _cmocka_run_group_tests("llama_mha_tied", model_tests,
                                     sizeof model_tests / sizeof *model_tests, setup_mha, teardown);
    fails += cmocka_run_group_tests(other_tests, NULL, NULL);
    return fails;
}
