/* test_full.c - full fine-tuning (common/nn/full.h) against the float64
 * references: on a tiny GPT-2 and a tiny Llama (GQA, with biases), the
 * gradient of every trained weight -- the linear maps' matrices and biases
 * and the norms -- against central finite differences of the reference's
 * summed loss, and one SGD step of the server (--clip 0) against
 * p - lr * g / tokens with g from those finite differences. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "full.h"
#include "refcheck.h"
#include "server.h"

static int setup_gpt2(void **state)
{
    ref_config c = {.n_layer = 2, .n_embd = 8, .n_head = 2, .n_positions = 6, .vocab = 11,
                    .eps = 1e-3, .untied = 0};
    *state = rc_fixture_gpt2("full_gpt2", &c, "c_attn", 1);
    return 0;
}

static int setup_llama(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-5, .theta = 10.0,
                   .untied = 1, .attn_bias = 1, .mlp_bias = 1};
    *state = rc_fixture_llama("full_llama", &c);
    return 0;
}

/* The reference's array behind the model key `name`, or NULL. */
static double *gpt2_weight(ref_gpt2 *r, const char *name)
{
    int l, k;
    char what[32], tail[16];
    if (!strcmp(name, "transformer.ln_f.weight"))
        return r->lnf_w;
    if (!strcmp(name, "transformer.ln_f.bias"))
        return r->lnf_b;
    if (sscanf(name, "transformer.h.%d.ln_%d.%15s", &l, &k, tail) == 3) {
        int w = !strcmp(tail, "weight");
        return k == 1 ? (w ? r->blk[l].ln1_w : r->blk[l].ln1_b)
                      : (w ? r->blk[l].ln2_w : r->blk[l].ln2_b);
    }
    char path[160];
    snprintf(path, sizeof path, "%s", name);
    char *dot = strrchr(path, '.');
    snprintf(what, sizeof what, "%s", dot + 1);
    *dot = 0;
    if (ref_module_parse(path, &l, &k) != 0)
        return NULL;
    return !strcmp(what, "weight") ? r->blk[l].w[k] : r->blk[l].b[k];
}

static double *llama_weight(ref_llama *r, const char *name)
{
    int l;
    char tail[64];
    if (!strcmp(name, "model.norm.weight"))
        return r->norm;
    if (sscanf(name, "model.layers.%d.%63s", &l, tail) == 2) {
        if (!strcmp(tail, "input_layernorm.weight"))
            return r->blk[l].in_norm;
        if (!strcmp(tail, "post_attention_layernorm.weight"))
            return r->blk[l].post_norm;
    }
    char path[160];
    snprintf(path, sizeof path, "%s", name);
    char *dot = strrchr(path, '.');
    int w = !strcmp(dot + 1, "weight"), k;
    *dot = 0;
    if (rl_module_parse(path, &l, &k) != 0)
        return NULL;
    return w ? r->blk[l].w[k] : r->blk[l].b[k];
}

static double *ref_weight(rc_fixture *f, const char *name)
{
    double *w = f->llama ? llama_weight(&f->ref.llama, name) : gpt2_weight(&f->ref.gpt2, name);
    if (!w)
        fail_msg("%s: trained tensor %s has no reference weight", f->name, name);
    return w;
}

/* A fresh copy of f's model with every linear, bias and norm trained. */
typedef struct {
    model m;
    lora_layout L;
    float *p, *g;
    model_acts *a;
} full_run;

static void full_open(rc_fixture *f, full_run *r)
{
    pl_err e = {{0}};
    if (model_load(&r->m, f->dir, &e) != 0)
        rc_fail_err(f->dir, &e);
    if (full_layout_build(&r->L, &r->m, FULL_BIASES | FULL_NORMS, &r->p, &e) != 0)
        rc_fail_err("full_layout_build", &e);
    full_attach(r->L.full, &r->m, r->p);
    r->g = malloc(r->L.n_params * sizeof *r->g);
    for (size_t j = 0; j < r->L.n_params; j++)
        r->g[j] = 123.0f;   /* must be overwritten */
    r->a = model_acts_new(&r->m, &r->L, RC_B, RC_T, 1);
}

static void full_close(full_run *r)
{
    model_acts_free(r->a);
    free(r->g);
    lora_layout_free(&r->L);
    model_free(&r->m);   /* r->p is the model's: freed by the caller after */
}

/* The trained tensors a model of f has: every linear's matrix and bias,
 * every norm (GPT-2 LayerNorm weight and bias, Llama RMSNorm weight). */
static int expected_tensors(const rc_fixture *f)
{
    if (!f->llama)
        return f->ref.gpt2.cfg.n_layer * (4 * 2 + 4) + 2;
    const rl_config *c = &f->ref.llama.cfg;
    return c->n_layer * (RL_N_LIN + 4 * (c->attn_bias != 0) + 3 * (c->mlp_bias != 0) + 2) + 1;
}

static void test_full_grad_fd(void **state)
{
    rc_fixture *f = *state;
    full_run r;
    full_open(f, &r);
    assert_int_equal(r.L.full->n, expected_tensors(f));
    double loss = model_loss_grad(&r.m, r.a, &r.L, r.p, r.g, f->inp, f->tgt, 0);
    double want = rc_ref_loss(f, NULL);
    if (!(fabs(loss - want) / fabs(want) < 1e-5))
        fail_msg("%s: loss %.9g, reference %.9g", f->name, loss, want);
    int bad = 0;
    size_t checked = 0;
    for (int i = 0; i < r.L.full->n; i++) {
        const full_tensor *t = &r.L.full->t[i];
        bad += rc_check_tensor(f, NULL, ref_weight(f, t->name), r.g + t->off, t->numel, t->name,
                               "grad");
        checked += t->numel;
    }
    assert_int_equal(checked, r.L.n_params);
    if (bad)
        fail_msg("%s: %d of %zu weight gradients (or tensor norms) differ from finite differences",
                 f->name, bad, checked);
    full_close(&r);
    free(r.p);
}

/* The server's SGD step with --clip 0 and lr 0.5: every trained weight
 * moves by -lr * g / tokens, g the reference's finite difference. */
static void test_full_sgd_step(void **state)
{
    rc_fixture *f = *state;
    full_run r;
    full_open(f, &r);
    train_config t = {0};
    opt_config_default(&t.opt);
    t.opt.kind = OPT_SGD, t.opt.lr = 0.5f, t.opt.clip = 0, t.opt.total_steps = 1;
    t.steps = 1;
    server s;
    pl_err e = {{0}};
    float *sp = malloc(r.L.n_params * sizeof *sp);
    memcpy(sp, r.p, r.L.n_params * sizeof *sp);
    if (server_init(&s, &t, &r.L, sp, NULL, &e) != 0)
        rc_fail_err("server_init", &e);
    model_loss_grad(&r.m, r.a, &r.L, r.p, r.g, f->inp, f->tgt, 0);
    long ntok = RC_B * RC_T;
    assert_int_equal(server_apply(&s, r.g, server_scale(&s, r.g, ntok), 0), 1);
    int bad = 0;
    for (int i = 0; i < r.L.full->n; i++) {
        const full_tensor *tn = &r.L.full->t[i];
        double *ref = ref_weight(f, tn->name), moved = 0;
        for (size_t j = 0; j < tn->numel; j++) {
            float p0 = r.p[tn->off + j], p1 = s.params[tn->off + j];
            double step = -0.5 * rc_fd(f, NULL, &ref[j]) / (double)ntok;
            double tol = 0.5 / ntok * 1e-4 + 1e-3 * fabs(step) + 4e-7 * fabs(p0);
            moved += fabs((double)p1 - p0);
            if (fabs(((double)p1 - p0) - step) > tol && bad++ < 10)
                print_error("%s[%zu]: moved %.9g, -lr g = %.9g\n", tn->name, j,
                            (double)p1 - p0, step);
        }
        if (!(moved > 0) && bad++ < 10)
            print_error("%s: no entry moved\n", tn->name);
    }
    if (bad)
        fail_msg("%s: %d weights not moved by -lr g", f->name, bad);
    server_free(&s);
    full_close(&r);
    free(r.p);
}

int main(void)
{
    const struct CMUnitTest gpt2[] = {
        cmocka_unit_test(test_full_grad_fd),
        cmocka_unit_test(test_full_sgd_step),
    };
    const struct CMUnitTest llama[] = {
        cmocka_unit_test(test_full_grad_fd),
        cmocka_unit_test(test_full_sgd_step),
    };
    int rc = cmocka_run_group_tests_name("gpt2", gpt2, setup_gpt2, rc_teardown);
    return rc | cmocka_run_group_tests_name("llama", llama, setup_llama, rc_teardown);
}
