/* test_full.c - full fine-tuning (common/nn/full.h) against the float64
 * references: on a tiny GPT-2 and a tiny Llama (GQA, with biases), each with
 * a tied and an untied head, the gradient of every trained weight -- the
 * linear maps' matrices and biases, the norms and the embeddings (wte, GPT-2's
 * wpe, an untied lm_head; a tied wte's gradient is the head's plus the
 * lookup's) -- against central finite differences of the reference's summed
 * loss, and one SGD step of the server (--clip 0) against p - lr * g / tokens
 * with g from those finite differences.  Without "embeddings" they stay
 * frozen where the file has them, and a tied head follows a trained wte. */
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

static int setup_gpt2_untied(void **state)
{
    ref_config c = {.n_layer = 2, .n_embd = 8, .n_head = 2, .n_positions = 6, .vocab = 11,
                    .eps = 1e-3, .untied = 1};
    *state = rc_fixture_gpt2("full_gpt2_untied", &c, "c_attn", 1);
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

static int setup_llama_tied(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-5, .theta = 10.0,
                   .untied = 0, .attn_bias = 0, .mlp_bias = 0};
    *state = rc_fixture_llama("full_llama_tied", &c);
    return 0;
}

/* The reference's array behind the model key `name`, or NULL. */
static double *gpt2_weight(ref_gpt2 *r, const char *name)
{
    int l, k;
    char what[32], tail[16];
    if (!strcmp(name, "transformer.wte.weight"))
        return r->wte;
    if (!strcmp(name, "transformer.wpe.weight"))
        return r->wpe;
    if (!strcmp(name, "lm_head.weight"))
        return r->lm_head;
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
    if (!strcmp(name, "model.embed_tokens.weight"))
        return r->embed;
    if (!strcmp(name, "lm_head.weight"))
        return r->lm_head;
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

/* A fresh copy of f's model with every linear, bias and norm trained, and
 * the embeddings with FULL_EMBEDDINGS in include. */
typedef struct {
    model m;
    lora_layout L;
    float *p, *g;
    model_acts *a;
} full_run;

static void full_open(rc_fixture *f, full_run *r, unsigned include)
{
    pl_err e = {{0}};
    if (model_load(&r->m, f->dir, &e) != 0)
        rc_fail_err(f->dir, &e);
    if (full_layout_build(&r->L, &r->m, include, &r->p, &e) != 0)
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
 * every norm (GPT-2 LayerNorm weight and bias, Llama RMSNorm weight); with
 * the embeddings wte (+ wpe for GPT-2) and an untied lm_head. */
static int expected_tensors(const rc_fixture *f, int embeddings)
{
    if (!f->llama) {
        int emb = embeddings ? 2 + (f->ref.gpt2.lm_head != NULL) : 0;
        return f->ref.gpt2.cfg.n_layer * (4 * 2 + 4) + 2 + emb;
    }
    const rl_config *c = &f->ref.llama.cfg;
    int emb = embeddings ? 1 + (f->ref.llama.lm_head != NULL) : 0;
    return c->n_layer * (RL_N_LIN + 4 * (c->attn_bias != 0) + 3 * (c->mlp_bias != 0) + 2) + 1 +
           emb;
}

#define ALL (FULL_BIASES | FULL_NORMS | FULL_EMBEDDINGS)

static void test_full_grad_fd(void **state)
{
    rc_fixture *f = *state;
    full_run r;
    full_open(f, &r, ALL);
    assert_int_equal(r.L.full->n, expected_tensors(f, 1));
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
    full_open(f, &r, ALL);
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

/* Where the embeddings live: without FULL_EMBEDDINGS wte (and wpe, and an
 * untied head) stay the loaded ones and are not in the layout; with it they
 * point into the trained vector, and a tied head is the trained wte (so the
 * head uses, and model_save writes, the trained values once). */
static void test_full_embeddings_placement(void **state)
{
    rc_fixture *f = *state;
    int tied = f->llama ? f->ref.llama.lm_head == NULL : f->ref.gpt2.lm_head == NULL;
    for (int with = 0; with < 2; with++) {
        model m0;
        rc_load(&m0, f->dir);
        full_run r;
        full_open(f, &r, with ? ALL : FULL_BIASES | FULL_NORMS);
        assert_int_equal(r.L.full->n, expected_tensors(f, with));
        const float *lo = r.p, *hi = r.p + r.L.n_params;
        int wte_in = r.m.wte >= lo && r.m.wte < hi, head_in = r.m.lm_head >= lo && r.m.lm_head < hi;
        assert_int_equal(wte_in, with);
        assert_int_equal(head_in, with);
        assert_int_equal(r.m.lm_head == r.m.wte, tied);
        /* the values are the file's either way (nothing has trained yet) */
        size_t VC = (size_t)r.m.cfg.vocab * r.m.cfg.n_embd;
        assert_memory_equal(r.m.wte, m0.wte, VC * sizeof(float));
        assert_memory_equal(r.m.lm_head, m0.lm_head, VC * sizeof(float));
        if (!f->llama)
            assert_int_equal(r.m.wpe >= lo && r.m.wpe < hi, with);
        for (int i = 0; i < r.L.full->n; i++) {
            const char *nm = r.L.full->t[i].name;
            int emb = strstr(nm, "wte") || strstr(nm, "wpe") || strstr(nm, "embed_tokens") ||
                      strstr(nm, "lm_head");
            assert_true(!emb || with);
            if (!strcmp(nm, "lm_head.weight"))
                assert_false(tied);
        }
        full_close(&r);
        free(r.p);
        model_free(&m0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_grad_fd),
        cmocka_unit_test(test_full_sgd_step),
        cmocka_unit_test(test_full_embeddings_placement),
    };
    int rc = cmocka_run_group_tests_name("gpt2 tied", tests, setup_gpt2, rc_teardown);
    rc |= cmocka_run_group_tests_name("gpt2 untied", tests, setup_gpt2_untied, rc_teardown);
    rc |= cmocka_run_group_tests_name("llama untied", tests, setup_llama, rc_teardown);
    return rc | cmocka_run_group_tests_name("llama tied", tests, setup_llama_tied, rc_teardown);
}
