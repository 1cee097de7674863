/* test_hf_dirs.c - model_load on Hugging Face GPT-2 directories written by
 * hand from the format (tests/ref_gpt2.h), checked against a float64 GPT-2.
 *
 * Every layout the design accepts: keys with or without "transformer.", the
 * attn.bias / attn.masked_bias buffers present or not, F32 / F16 / BF16,
 * sharded with an index, an untied lm_head.  Then the rejections: config.json
 * without n_head, a missing directory, truncated safetensors, a missing
 * tensor, a tensor in the wrong layout. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "refcheck.h"
#include "testutil.h"

enum { TB = 2, TT = 7 };   /* micro-batch: 2 sequences of 7 tokens */

/* The tiny GPT-2 of these tests: 2 layers, C 16, 4 heads, V 37, 9 positions. */
static ref_config hf_cfg(int untied)
{
    ref_config c = {.n_layer = 2, .n_embd = 16, .n_head = 4, .n_positions = 9, .vocab = 37,
                    .eps = 1e-5, .untied = untied};
    return c;
}

/* One loadable layout. */
typedef struct {
    const char *name;
    ref_hf_opts o;
    int untied;
} hf_case;

/* Writes the case's directory, loads it, and compares the mean loss of
 * model_loss_grad (no adapter) with the float64 reference's. */
static void test_load_case(void **state)
{
    const hf_case *k = *state;
    ref_config c = hf_cfg(k->untied);
    ref_gpt2 ref;
    char dir[512];
    int32_t inp[TB * TT], tgt[TB * TT];
    ref_gpt2_init(&ref, &c, 1234);
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(k->name));
    ref_gpt2_write_hf(&ref, dir, &k->o);
    ref_random_tokens(inp, tgt, TB * TT, c.vocab, 99);

    model m;
    rc_load(&m, dir);
    assert_int_equal(m.cfg.n_layer, c.n_layer);
    assert_int_equal(m.cfg.n_embd, c.n_embd);
    assert_int_equal(m.cfg.n_head, c.n_head);
    assert_int_equal(m.cfg.vocab, c.vocab);
    assert_int_equal(m.cfg.n_ctx, c.n_positions);
    assert_int_equal(m.cfg.tie_embeddings, !k->untied);
    rc_check_mean_loss(k->name, &m, inp, tgt, TB, TT, ref_gpt2_loss(&ref, NULL, inp, tgt, TB, TT));
    model_free(&m);
    ref_gpt2_free(&ref);
}

/* Writes a directory with options o, then cuts model.safetensors to
 * truncate_to bytes (>= 0) or removes it (-2; -1 leaves it), and expects
 * model_load to fail with a message containing want1 and want2 (may be NULL). */
static void expect_load_fails(const char *tag, const ref_hf_opts *o, long truncate_to,
                              const char *want1, const char *want2)
{
    ref_config c = hf_cfg(0);
    ref_gpt2 ref;
    char dir[512], path[600];
    ref_gpt2_init(&ref, &c, 77);
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(tag));
    ref_gpt2_write_hf(&ref, dir, o);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (truncate_to >= 0)
        assert_int_equal(truncate(path, truncate_to), 0);
    else if (truncate_to == -2)
        assert_int_equal(unlink(path), 0);
    rc_expect_load_fails(dir, want1, want2);
    ref_gpt2_free(&ref);
}

static void test_config_without_n_head(void **state)
{
    (void)state;
    ref_hf_opts o = {.prefix = 1, .omit_n_head = 1};
    expect_load_fails("no_n_head", &o, -1, "config.json", "n_head");
}

static void test_missing_directory(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/does-not-exist", tu_tmpdir("missing"));
    rc_expect_load_fails(dir, dir, NULL);
}

/* The file's size with the default options, from the writer's layout. */
static long hf_file_size(void)
{
    char path[600];
    ref_config c = hf_cfg(0);
    ref_gpt2 ref;
    ref_hf_opts o = {.prefix = 1};
    ref_gpt2_init(&ref, &c, 77);
    const char *dir = tu_tmpdir("size");
    ref_gpt2_write_hf(&ref, dir, &o);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    ref_gpt2_free(&ref);
    return n;
}

/* Cut inside the length prefix, inside the JSON header, and inside the data
 * (header fine, last tensor's end past the buffer). */
static void test_truncated_safetensors(void **state)
{
    (void)state;
    ref_hf_opts o = {.prefix = 1};
    long size = hf_file_size();
    expect_load_fails("trunc_len", &o, 5, "model.safetensors", NULL);
    expect_load_fails("trunc_header", &o, 100, "model.safetensors", NULL);
    expect_load_fails("trunc_data", &o, size - 4, "model.safetensors", NULL);
}

static void test_missing_safetensors(void **state)
{
    (void)state;
    ref_hf_opts o = {.prefix = 1};
    expect_load_fails("no_st", &o, -2, "model.safetensors", NULL);
}

/* A tensor the model needs is absent: the message names it. */
static void test_missing_tensor(void **state)
{
    (void)state;
    ref_hf_opts o = {.prefix = 1, .skip_key = "h.1.mlp.c_fc.bias"};
    expect_load_fails("no_tensor", &o, -1, "h.1.mlp.c_fc.bias", NULL);
    ref_hf_opts o2 = {.prefix = 0, .skip_key = "ln_f.weight"};
    expect_load_fails("no_tensor2", &o2, -1, "ln_f.weight", NULL);
}

/* c_attn stored as torch Linear [3C, C] instead of Conv1D [C, 3C]. */
static void test_wrong_shape(void **state)
{
    (void)state;
    ref_hf_opts o = {.prefix = 1, .transpose_key = "h.0.attn.c_attn.weight"};
    expect_load_fails("bad_shape", &o, -1, "h.0.attn.c_attn.weight", NULL);
}

#define NCASES 14
static hf_case cases[NCASES];
static char case_names[NCASES][64];

/* {prefix, none} x {F32, F16, BF16} x {attn.bias, none}, then sharded and
 * untied variants. */
static int build_cases(void)
{
    static const ref_dtype dts[3] = {REF_F32, REF_F16, REF_BF16};
    int n = 0;
    for (int p = 0; p < 2; p++)
        for (int d = 0; d < 3; d++)
            for (int ab = 0; ab < 2; ab++) {
                snprintf(case_names[n], sizeof case_names[n], "load_%s_%s_%s",
                         p ? "prefix" : "noprefix", ref_dtype_name(dts[d]),
                         ab ? "attnbias" : "nobuf");
                cases[n] = (hf_case){case_names[n], {.prefix = p, .attn_bias = ab, .dtype = dts[d]}, 0};
                n++;
            }
    cases[n++] = (hf_case){"load_sharded_bf16", {.prefix = 1, .attn_bias = 1, .dtype = REF_BF16, .shards = 2}, 0};
    cases[n++] = (hf_case){"load_untied_lm_head", {.prefix = 1, .dtype = REF_F32}, 1};
    return n;
}

int main(void)
{
    struct CMUnitTest tests[NCASES + 8];
    int n = build_cases(), k = 0;
    for (int i = 0; i < n; i++)
        tests[k++] = (struct CMUnitTest){cases[i].name, test_load_case, NULL, NULL, &cases[i]};
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_config_without_n_head);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_directory);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_truncated_safetensors);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_safetensors);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_missing_tensor);
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(test_wrong_shape);
    return _cmocka_run_group_tests("hf_dirs", tests, (size_t)k, NULL, NULL);
}
