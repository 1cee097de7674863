/* test_hf_llama_dirs.c - model_load on Hugging Face LlamaForCausalLM
 * directories written by hand from the format (tests/ref_llama.h), checked
 * against a float64 Llama computed the way transformers does it.
 *
 * Loadable: F32 / F16 / BF16, tied and untied embeddings, grouped-query
 * (2 kv heads for 4), multi-query (1) and multi-head attention (no
 * num_key_value_heads in config.json), head_dim given apart from
 * hidden / heads, attention and MLP biases, sharded files with the old
 * rotary_emb.inv_freq buffers.  Then every rejection names its file and key. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refcheck.h"
#include "testutil.h"

enum { TB = 2, TT = 7 };   /* micro-batch: 2 sequences of 7 tokens */

/* 2 layers, hidden 16, 4 query heads of 4, intermediate 24, vocab 37.  theta
 * 100 turns every frequency far enough over 7 positions for a wrong rotary
 * convention to show. */
static rl_config base_cfg(int kv_heads, int untied)
{
    rl_config c = {.n_layer = 2, .hidden = 16, .n_head = 4, .n_kv_head = kv_heads, .head_dim = 4,
                   .inter = 24, .vocab = 37, .max_pos = 64, .eps = 1e-5, .theta = 100.0,
                   .untied = untied};
    return c;
}

/* One loadable layout. */
typedef struct {
    const char *name;
    rl_config c;
    rl_hf_opts o;
} hf_case;

/* Writes the case's directory, loads it, checks the config as read and
 * compares the mean loss of model_loss_grad with the float64 reference's. */
static void test_load_case(void **state)
{
    const hf_case *k = *state;
    ref_llama ref;
    char dir[512];
    int32_t inp[TB * TT], tgt[TB * TT];
    ref_llama_init(&ref, &k->c, 4321);
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(k->name));
    ref_llama_write_hf(&ref, dir, &k->o);
    ref_random_tokens(inp, tgt, TB * TT, k->c.vocab, 99);

    model m;
    rc_load(&m, dir);
    const model_config *c = &m.cfg;
    assert_int_equal(c->arch, ARCH_LLAMA);
    assert_int_equal(c->n_layer, k->c.n_layer);
    assert_int_equal(c->n_embd, k->c.hidden);
    assert_int_equal(c->n_head, k->c.n_head);
    assert_int_equal(c->n_kv_head, k->c.n_kv_head);
    assert_int_equal(c->head_dim, k->c.head_dim);
    assert_int_equal(c->n_inner, k->c.inter);
    assert_int_equal(c->vocab, k->c.vocab);
    assert_int_equal(c->n_ctx, k->c.max_pos);
    assert_int_equal(c->tie_embeddings, !k->c.untied);
    assert_true(c->eps == (float)k->c.eps && c->rope_theta == (float)k->c.theta);
    assert_int_equal(m.lm_head == m.wte, !k->c.untied);
    assert_null(m.wpe);
    rc_check_mean_loss(k->name, &m, inp, tgt, TB, TT, ref_llama_loss(&ref, NULL, inp, tgt, TB, TT));
    model_free(&m);
    ref_llama_free(&ref);
}

/* Writes a directory for config c with options o and expects model_load to
 * fail with a message containing want1 and want2 (may be NULL). */
static void expect_load_fails(const char *tag, rl_config c, const rl_hf_opts *o,
                              const char *want1, const char *want2)
{
    ref_llama ref;
    char dir[512];
    ref_llama_init(&ref, &c, 77);
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(tag));
    ref_llama_write_hf(&ref, dir, o);
    rc_expect_load_fails(dir, want1, want2);
    ref_llama_free(&ref);
}

/* A tensor the model needs is absent: the message names it. */
static void test_missing_tensor(void **state)
{
    (void)state;
    rl_hf_opts o = {.skip_key = "model.layers.1.mlp.up_proj.weight"};
    expect_load_fails("l_no_tensor", base_cfg(2, 0), &o, "model.layers.1.mlp.up_proj.weight", NULL);
    rl_hf_opts o2 = {.skip_key = "model.norm.weight"};
    expect_load_fails("l_no_norm", base_cfg(2, 0), &o2, "model.norm.weight", NULL);
}

/* tie_word_embeddings false (explicit, or absent: LlamaConfig's default) and
 * no lm_head.weight in the file. */
static void test_missing_lm_head(void **state)
{
    (void)state;
    rl_hf_opts o = {.skip_key = "lm_head.weight"};
    expect_load_fails("l_no_head", base_cfg(2, 1), &o, "lm_head.weight", "tie_word_embeddings");
    rl_hf_opts o2 = {.omit_tie = 1};   /* tied weights written, but the config says untied */
    expect_load_fails("l_no_head_default", base_cfg(2, 0), &o2, "lm_head.weight", NULL);
}

/* attention_bias true in config.json but the file has no biases. */
static void test_missing_bias(void **state)
{
    (void)state;
    rl_config c = base_cfg(2, 0);
    c.mlp_bias = 1;
    rl_hf_opts o = {.skip_key = "model.layers.0.mlp.down_proj.bias"};
    expect_load_fails("l_no_bias", c, &o, "model.layers.0.mlp.down_proj.bias", "not found");
}

/* k_proj stored [in, out] instead of torch's [out, in]. */
static void test_wrong_shape(void **state)
{
    (void)state;
    rl_hf_opts o = {.transpose_key = "model.layers.0.self_attn.k_proj.weight"};
    expect_load_fails("l_bad_shape", base_cfg(2, 0), &o, "model.layers.0.self_attn.k_proj.weight",
                      "expected [8, 16]");
}

/* config.json rejections: each names config.json and the key. */
static void test_bad_configs(void **state)
{
    (void)state;
    rl_config c = base_cfg(3, 0);   /* 3 kv heads for 4 query heads */
    rl_hf_opts o = {0};
    expect_load_fails("l_kv", c, &o, "config.json", "num_key_value_heads 3");
    c = base_cfg(2, 0);
    c.head_dim = 3;
    expect_load_fails("l_odd_hd", c, &o, "config.json", "head_dim 3 must be even");
    rl_hf_opts rs = {.rope_scaling = "{\"type\": \"linear\", \"factor\": 2.0}"};
    expect_load_fails("l_rope_scaling", base_cfg(2, 0), &rs, "config.json", "rope_scaling");
    rl_hf_opts act = {.hidden_act = "gelu"};
    expect_load_fails("l_act", base_cfg(2, 0), &act, "config.json", "hidden_act");
    rl_hf_opts mt = {.model_type = "mistral"};
    expect_load_fails("l_type", base_cfg(2, 0), &mt, "config.json", "model_type mistral");
    rl_hf_opts nh = {.omit_hidden = 1};
    expect_load_fails("l_hidden", base_cfg(2, 0), &nh, "config.json", "missing hidden_size");
    c = base_cfg(2, 0);
    c.hidden = 18;   /* not a multiple of 4 heads, and no head_dim to say otherwise */
    rl_hf_opts nd = {.omit_head_dim = 1};
    expect_load_fails("l_hd_default", c, &nd, "config.json", "hidden_size 18");
}

#define NCASES 7
static hf_case cases[NCASES];

static int build_cases(void)
{
    int n = 0;
    rl_config c;
    cases[n++] = (hf_case){"llama_f32_gqa_tied", base_cfg(2, 0), {.dtype = REF_F32}};
    cases[n++] = (hf_case){"llama_f32_gqa_untied", base_cfg(2, 1), {.dtype = REF_F32}};
    cases[n++] = (hf_case){"llama_bf16_gqa_untied", base_cfg(2, 1), {.dtype = REF_BF16}};
    cases[n++] = (hf_case){"llama_bf16_mha_tied_nokv", base_cfg(4, 0),
                           {.dtype = REF_BF16, .omit_kv_heads = 1, .omit_head_dim = 1}};
    cases[n++] = (hf_case){"llama_f16_mqa_untied", base_cfg(1, 1), {.dtype = REF_F16}};
    c = base_cfg(2, 1);   /* head_dim 6: q has 24 rows for a hidden size of 16 */
    c.head_dim = 6, c.attn_bias = 1, c.mlp_bias = 1, c.theta = 10.0, c.eps = 1e-2;
    cases[n++] = (hf_case){"llama_f32_headdim_biases", c, {.dtype = REF_F32}};
    c = base_cfg(2, 1);
    c.theta = 500000.0, c.eps = 1e-6;
    cases[n++] = (hf_case){"llama_bf16_sharded_invfreq", c,
                           {.dtype = REF_BF16, .shards = 2, .inv_freq_buffers = 1}};
    return n;
}

/* A file with an lm_head.weight and tie_word_embeddings true: transformers
 * ties the head to embed_tokens, so the reference drops its own head. */
static void test_tied_ignores_head(void **state)
{
    (void)state;
    rl_config c = base_cfg(2, 1);
    ref_llama ref;
    char dir[512];
    int32_t inp[TB * TT], tgt[TB * TT];
    ref_llama_init(&ref, &c, 55);
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("llama_tied_head"));
    rl_hf_opts o = {.dtype = REF_F32};
    ref_llama_write_hf(&ref, dir, &o);
    /* rewrite config.json saying tied */
    ref.cfg.untied = 0;
    ref_llama_write_config(&ref, dir, &o);
    free(ref.lm_head);
    ref.lm_head = NULL;
    model m;
    rc_load(&m, dir);
    assert_true(m.lm_head == m.wte);
    ref_random_tokens(inp, tgt, TB * TT, c.vocab, 5);
    rc_check_mean_loss("llama_tied_head", &m, inp, tgt, TB, TT,
                       ref_llama_loss(&ref, NULL, inp, tgt, TB, TT));
    model_free(&m);
    ref_llama_free(&ref);
}

int main(void)
{
    struct CMUnitTest tests[NCASES + 8];
    int n = build_cases(), k = 0;
    for (int i = 0; i < n; i++)
        tests[k++] = (struct CMUnitTest){cases[i].name, test_load_case, NULL, NULL, &cases[i]};
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_tied_ignores_head);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_tensor);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_lm_head);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_bias);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_wrong_shape);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_bad_configs);
    return _cmocka_run_group_tests("hf_llama_dirs", tests, (size_t)k, NULL, NULL);
}
