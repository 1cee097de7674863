/* test_hf_files.c - the safetensors files of a model directory (hf_files.h):
 * a single model.safetensors, shards found through the index, and every
 * rejection of a bad index (each message names the index or the file). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hf_files.h"
#include "testutil.h"

/* DIR/NAME holding one F32 tensor [2] called tensor. */
static void write_st(const char *dir, const char *name, const char *tensor)
{
    static const float v[2] = {1.0f, 2.0f};
    st_entry t = {tensor, ST_F32, 1, {2}, v};
    char p[600];
    pl_err e;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (st_write(p, &t, 1, NULL, NULL, 0, &e) != 0)
        fail_msg("st_write: %s", e.msg);
}

static void write_index(const char *dir, const char *json)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, HF_INDEX_NAME);
    tu_write_file(p, json, strlen(json));
}

/* Two shards a (x) and b (y, z): files in first-mention order, every
 * tensor found in its own file, the index text kept. */
static void test_sharded(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("hf_sharded");
    write_st(dir, "a.safetensors", "x");
    char p[600];
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    static const float v[2] = {3, 4};
    st_entry two[2] = {{"y", ST_F32, 1, {2}, v}, {"z", ST_F32, 1, {2}, v}};
    pl_err e;
    assert_int_equal(st_write(p, two, 2, NULL, NULL, 0, &e), 0);
    const char *idx = "{\"weight_map\": {\"y\": \"b.safetensors\", \"x\": \"a.safetensors\", "
                      "\"z\": \"b.safetensors\"}}";
    write_index(dir, idx);
    hf_files f;
    assert_int_equal(hf_files_open(&f, dir, &e), 0);
    assert_int_equal(f.n, 2), assert_int_equal(f.n_mapped, 3);
    assert_string_equal(f.names[0], "b.safetensors");
    assert_string_equal(f.names[1], "a.safetensors");
    assert_int_equal(f.index_len, strlen(idx));
    assert_memory_equal(f.index_text, idx, strlen(idx));
    int k = -1;
    assert_non_null(hf_files_find(&f, "x", &k)), assert_int_equal(k, 1);
    assert_non_null(hf_files_find(&f, "z", &k)), assert_int_equal(k, 0);
    assert_null(hf_files_find(&f, "w", &k));
    hf_files_close(&f);
    assert_null(f.files), assert_int_equal(f.n, 0);
}

static void test_single(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("hf_single");
    write_st(dir, "model.safetensors", "x");
    hf_files f;
    pl_err e;
    assert_int_equal(hf_files_open(&f, dir, &e), 0);
    assert_int_equal(f.n, 1), assert_int_equal(f.n_mapped, 0);
    assert_null(f.index_text);
    int k = -1;
    assert_non_null(hf_files_find(&f, "x", &k)), assert_int_equal(k, 0);
    hf_files_close(&f);
}

/* Each bad index: -1, the message contains want, and nothing stays open. */
static void expect_bad(const char *tag, const char *json, const char *want)
{
    const char *dir = tu_tmpdir(tag);
    write_st(dir, "a.safetensors", "x");
    write_index(dir, json);
    hf_files f;
    pl_err e = {{0}};
    assert_int_equal(hf_files_open(&f, dir, &e), -1);
    if (!strstr(e.msg, want))
        fail_msg("%s: message '%s' lacks '%s'", tag, e.msg, want);
    assert_int_equal(f.n, 0), assert_null(f.files), assert_null(f.names);
}

static void test_rejections(void **state)
{
    (void)state;
    expect_bad("hf_notjson", "{\"weight_map\": ", HF_INDEX_NAME ": not valid JSON");
    expect_bad("hf_nomap", "{\"metadata\": {}}", "no weight_map object with entries");
    expect_bad("hf_empty", "{\"weight_map\": {}}", "no weight_map object with entries");
    expect_bad("hf_array", "{\"weight_map\": [\"a.safetensors\"]}", "no weight_map object");
    expect_bad("hf_number", "{\"weight_map\": {\"x\": 3}}", "entry x is not a file name");
    expect_bad("hf_slash", "{\"weight_map\": {\"x\": \"../a.safetensors\"}}", "entry x is not a file name");
    expect_bad("hf_dotdot", "{\"weight_map\": {\"x\": \"..\"}}", "entry x is not a file name");
    expect_bad("hf_dot", "{\"weight_map\": {\"x\": \".\"}}", "entry x is not a file name");
    expect_bad("hf_blank", "{\"weight_map\": {\"x\": \"\"}}", "entry x is not a file name");
    expect_bad("hf_missing", "{\"weight_map\": {\"x\": \"b.safetensors\"}}", "b.safetensors");
    expect_bad("hf_notin", "{\"weight_map\": {\"x\": \"a.safetensors\", \"q\": \"a.safetensors\"}}",
               "tensor 'q' is not in a.safetensors");
}

static void test_no_files(void **state)
{
    (void)state;
    hf_files f;
    pl_err e;
    assert_int_equal(hf_files_open(&f, tu_tmpdir("hf_none"), &e), -1);
    assert_non_null(strstr(e.msg, "model.safetensors"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_single),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_no_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
