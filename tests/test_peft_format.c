/* test_peft_format.c - the adapter directory against PEFT's format, checked
 * by code independent of the writer (raw safetensors header parsed here
 * with cJSON), and what --init-adapter accepts and refuses.
 *
 * PEFT (LoraModel, task CAUSAL_LM, GPT2LMHeadModel) saves:
 *   adapter_model.safetensors: base_model.model.<module>.lora_A.weight [r, in]
 *                              base_model.model.<module>.lora_B.weight [out, r]
 *                              F32, metadata {"format": "pt"}
 *   adapter_config.json: peft_type "LORA", r, lora_alpha, lora_dropout,
 *     target_modules (list), fan_in_fan_out true for GPT-2's Conv1D, bias
 *     "none", task_type "CAUSAL_LM", use_rslora, base_model_name_or_path,
 *     inference_mode true. */
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
#include "testutil.h"

enum { L_ = 2, C = 16, R = 4 };

static model_config gpt2_cfg(void)
{
    return (model_config){.arch = ARCH_GPT2, .n_layer = L_, .n_embd = C, .n_head = 2,
                          .n_kv_head = 2, .head_dim = 8, .n_inner = 4 * C, .vocab = 50,
                          .n_ctx = 16, .eps = 1e-5f, .tie_embeddings = 1};
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = 0;
    fclose(f);
    *n = (size_t)len;
    return buf;
}

/* Writes an adapter for targets "c_attn,c_proj" into dir. */
static void write_adapter(const char *dir, int rslora)
{
    model_config c = gpt2_cfg();
    lora_layout L;
    pl_err e;
    assert_int_equal(lora_layout_build(&L, &c, "c_attn,c_proj", R, 8.0f, rslora, 0.05f, &e), 0);
    float *p = calloc(L.n_params, sizeof(float));
    for (size_t i = 0; i < L.n_params; i++)
        p[i] = (float)i * 1e-3f;
    assert_int_equal(lora_save_peft(dir, &L, &c, p, "my/base-model", &e), 0);
    free(p);
    lora_layout_free(&L);
}

/* Expected [rows, cols] of a key per the spec, or 0 when the key is not one. */
static int spec_shape(const char *key, long *rows, long *cols)
{
    int l, used = 0;
    char mod[32], ab;
    const char *lo = strstr(key, ".lora_");
    if (!lo || sscanf(key, "base_model.model.transformer.h.%d.%n", &l, &used) != 1 || !used ||
        lo - (key + used) >= (long)sizeof mod || strcmp(lo + 7, ".weight") != 0)
        return 0;
    memcpy(mod, key + used, (size_t)(lo - (key + used)));
    mod[lo - (key + used)] = 0;
    ab = lo[6];
    long in = C, out;
    if (!strcmp(mod, "attn.c_attn"))
        out = 3 * C;
    else if (!strcmp(mod, "attn.c_proj"))
        out = C;
    else if (!strcmp(mod, "mlp.c_proj"))
        in = 4 * C, out = C;
    else
        return 0;
    *rows = ab == 'A' ? R : out;
    *cols = ab == 'A' ? in : R;
    return l >= 0 && l < L_ && (ab == 'A' || ab == 'B');
}

static void test_keys_and_shapes(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("peft_keys");
    write_adapter(dir, 0);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    size_t n;
    char *buf = slurp(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = hl << 8 | (unsigned char)buf[i];
    assert_true(8 + hl <= n);
    char *hdr = strndup(buf + 8, hl);
    cJSON *j = cJSON_Parse(hdr);
    assert_non_null(j);
    int count = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        if (!strcmp(it->string, "__metadata__")) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "format");
            assert_true(cJSON_IsString(f) && !strcmp(f->valuestring, "pt"));
            continue;
        }
        long rows, cols;
        if (!spec_shape(it->string, &rows, &cols))
            fail_msg("key %s is not a PEFT LoRA key of this model", it->string);
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        assert_string_equal(dt->valuestring, "F32");
        assert_int_equal(cJSON_GetArraySize(sh), 2);
        assert_int_equal((long)cJSON_GetArrayItem(sh, 0)->valuedouble, rows);
        assert_int_equal((long)cJSON_GetArrayItem(sh, 1)->valuedouble, cols);
        count++;
    }
    /* c_attn, attn.c_proj, mlp.c_proj per layer, A and B each */
    assert_int_equal(count, L_ * 3 * 2);
    cJSON_Delete(j);
    free(hdr);
    free(buf);
}

static void test_config_fields(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("peft_cfg");
    write_adapter(dir, 1);
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    size_t n;
    char *text = slurp(path, &n);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
#define STR(k, v) assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, k)->valuestring, v)
#define NUM(k, v) assert_true(fabs(cJSON_GetObjectItemCaseSensitive(j, k)->valuedouble - (v)) < 1e-6)
#define BOOL(k, v) assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, k)), v)
    STR("peft_type", "LORA");
    STR("task_type", "CAUSAL_LM");
    STR("bias", "none");
    STR("base_model_name_or_path", "my/base-model");
    NUM("r", R);
    NUM("lora_alpha", 8.0);
    NUM("lora_dropout", 0.05);
    BOOL("fan_in_fan_out", 1);
    BOOL("inference_mode", 1);
    BOOL("use_rslora", 1);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    assert_true(cJSON_IsArray(t));
    assert_int_equal(cJSON_GetArraySize(t), 2);
    assert_string_equal(cJSON_GetArrayItem(t, 0)->valuestring, "c_attn");
    assert_string_equal(cJSON_GetArrayItem(t, 1)->valuestring, "c_proj");
    cJSON_Delete(j);
    free(text);
}

/* Rewrites adapter_config.json of dir with one field replaced (raw JSON). */
static void patch_config(const char *dir, const char *field, const char *json_value)
{
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    size_t n;
    char *text = slurp(path, &n);
    cJSON *j = cJSON_Parse(text);
    cJSON_DeleteItemFromObject(j, field);
    cJSON_AddItemToObject(j, field, cJSON_Parse(json_value));
    char *out = cJSON_Print(j);
    tu_write_file(path, out, strlen(out));
    free(out);
    cJSON_Delete(j);
    free(text);
}

static void expect_refused(const char *field, const char *value, const char *words)
{
    const char *dir = tu_tmpdir("peft_refuse");
    write_adapter(dir, 0);
    patch_config(dir, field, value);
    model_config c = gpt2_cfg();
    lora_layout L;
    float *p;
    pl_err e;
    assert_int_equal(lora_load_peft(dir, &c, &L, &p, &e), -1);
    assert_non_null(strstr(e.msg, "adapter_config.json"));
    if (!strstr(e.msg, words))
        fail_msg("'%s' does not say '%s'", e.msg, words);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_refused("use_dora", "true", "use_dora");
    expect_refused("rank_pattern", "{\"c_attn\": 4}", "rank_pattern");
    expect_refused("alpha_pattern", "{\"c_attn\": 4}", "alpha_pattern");
    expect_refused("bias", "\"all\"", "bias");
    expect_refused("modules_to_save", "[\"lm_head\"]", "modules_to_save");
    expect_refused("peft_type", "\"IA3\"", "peft_type");
    expect_refused("target_modules", "[\"q_proj\"]", "q_proj");
    expect_refused("r", "0", "r ");
}

/* What PEFT writes and pslora did not: target_modules as a string, nulls
 * for the patterns, rslora; read back with the same values and scale. */
static void test_reads_peft_variants(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("peft_read");
    write_adapter(dir, 0);
    patch_config(dir, "target_modules", "\"c_attn,c_proj\"");
    patch_config(dir, "rank_pattern", "null");
    patch_config(dir, "use_rslora", "true");
    model_config c = gpt2_cfg();
    lora_layout L;
    float *p;
    pl_err e;
    assert_int_equal(lora_load_peft(dir, &c, &L, &p, &e), 0);
    assert_int_equal(L.r, R);
    assert_true(fabsf(L.scale - 8.0f / 2.0f) < 1e-6f);   /* alpha / sqrt(4) */
    for (size_t i = 0; i < L.n_params; i++)
        assert_true(p[i] == (float)i * 1e-3f);
    free(p);
    lora_layout_free(&L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_shapes),
        cmocka_unit_test(test_config_fields),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_reads_peft_variants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
