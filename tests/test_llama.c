/* test_llama.c - the whole Llama + LoRA model against the float64 reference
 * of tests/ref_llama.h, and the Llama parts of init, save, config and PEFT.
 *
 * Two tiny models, each written by hand as a Hugging Face directory and read
 * with model_load:
 *   gqa: 2 layers, hidden 8, 4 query heads and 2 kv heads of size 4 (q has
 *        16 rows for a hidden size of 8), intermediate 12, vocab 11, untied
 *        lm_head, attention and MLP biases, rope_theta 10;
 *   mha: the same shape with 4 kv heads, tied embeddings, no biases.
 * On each, with "all-linear" targets (all seven maps of both layers), the
 * checks of tests/refcheck.h:
 *   (a) B = 0 (PEFT init) gives bitwise the base model's loss, and dA = 0;
 *   (b) every adapter gradient against central finite differences of the
 *       reference's summed loss, with nonzero B; also with dropout, the
 *       reference applying the same masks (drawn as model_step.c documents);
 *   (c) the float loss with an adapter (alpha/r and rslora) against the reference;
 *   (d) model_logits (generation) against the reference's logits.
 * Then, here: config.json round trip, `pslora init` weights (statistics, names,
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

#include "file.h"
#include "refcheck.h"
#include "safetensors.h"
#include "testutil.h"

static int setup_gqa(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-5, .theta = 10.0,
                   .untied = 1, .attn_bias = 1, .mlp_bias = 1};
    *state = rc_fixture_llama("llama_gqa", &c);
    return 0;
}

static int setup_mha(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 4, .head_dim = 2,
                   .inter = 12, .vocab = 11, .max_pos = 16, .eps = 1e-6, .theta = 10.0,
                   .untied = 0};
    *state = rc_fixture_llama("llama_mha", &c);
    return 0;
}

/* A PEFT adapter of the model: keys base_model.model.model.layers.N.<module>
 * .lora_A/B.weight with [r, in] / [out, r], fan_in_fan_out false, and the
 * same loss once loaded back. */
static void test_peft_roundtrip(void **state)
{
    rc_fixture *f = *state;
    const rl_config *c = &f->ref.llama.cfg;
    lora_layout L, L2;
    pl_err e = {{0}};
    rc_build_layout(f, &L, 0, 0.0f);
    float *p = malloc(L.n_params * sizeof *p), *p2 = NULL;
    rc_fill_adapter(&L, p, 41);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/adapter", tu_tmpdir("llama_peft"));
    if (lora_save_peft(dir, &L, &f->lm.cfg, p, "tiny-llama", &e) != 0)
        rc_fail_err(dir, &e);
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    st_file sf;
    if (st_open(&sf, path, &e) != 0)
        rc_fail_err(path, &e);
    assert_int_equal(sf.n, 2 * RL_N_LIN * c->n_layer);
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < RL_N_LIN; k++) {
            int in, out;
            char key[200];
            rl_lin_shape(c, k, &in, &out);
            snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_A.weight", l,
                     rl_lin_name(k));
            const st_tensor *t = st_find(&sf, key);
            if (!t)
                fail_msg("%s: no tensor %s", path, key);
            assert_true(t->ndim == 2 && t->shape[0] == RC_RANK && t->shape[1] == in);
            snprintf(key, sizeof key, "base_model.model.model.layers.%d.%s.lora_B.weight", l,
                     rl_lin_name(k));
            t = st_find(&sf, key);
            if (!t)
                fail_msg("%s: no tensor %s", path, key);
            assert_true(t->ndim == 2 && t->shape[0] == out && t->shape[1] == RC_RANK);
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
        rc_fail_err(dir, &e);
    assert_int_equal(L2.n_params, L.n_params);
    assert_memory_equal(p2, p, L.n_params * sizeof *p);
    lora_attach(&L2, &f->lm);
    model_acts *a = model_acts_new(&f->lm, &L2, RC_B, RC_T, 0);
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
        rc_fail_err(dir, &e);
    assert_memory_equal(&c, &d, sizeof c);
    c.tie_embeddings = 1, c.attn_bias = 0, c.mlp_bias = 1, c.eps = 1e-5f, c.rope_theta = 10000.0f;
    if (model_config_save(&c, dir, &e) != 0 || model_config_load(&d, dir, &e) != 0)
        rc_fail_err(dir, &e);
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
        rc_fail_err(dir, &e);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file sf;
    if (st_open(&sf, path, &e) != 0)
        rc_fail_err(path, &e);
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
        rc_fail_err(dir, &e);
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
        RC_UNIT_TEST(test_base_loss_vs_ref),     RC_UNIT_TEST(test_zero_b_is_base),
        RC_UNIT_TEST(test_lora_grad_fd),         RC_UNIT_TEST(test_lora_grad_fd_dropout),
        RC_UNIT_TEST(test_lora_loss_vs_ref),     RC_UNIT_TEST(test_logits_vs_ref),
        cmocka_unit_test(test_peft_roundtrip),
    };
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(test_config_roundtrip), cmocka_unit_test(test_init_tied),
        cmocka_unit_test(test_init_untied),      cmocka_unit_test(test_init_rejects),
    };
    size_t n = sizeof model_tests / sizeof *model_tests;
    int fails = _cmocka_run_group_tests("llama_gqa_untied_biases", model_tests, n, setup_gqa,
                                        rc_teardown);
    fails += _cmocka_run_group_tests("llama_mha_tied", model_tests, n, setup_mha, rc_teardown);
    fails += cmocka_run_group_tests(other_tests, NULL, NULL);
    return fails;
}
