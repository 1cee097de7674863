/* test_sgd_step.c - one step of `pslora train --optimizer sgd --lr X --clip 0
 * --steps 1 --init-adapter A` moves every adapter value by exactly -X times
 * its gradient.
 *
 * The gradient is computed here through the library (model_loss_grad on the
 * first batch of the stream, divided by the batch's tokens, as the server
 * does); the step itself is taken by the pslora executable (PSLORA in the
 * environment), whose output adapter is read back and compared. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "lora.h"
#include "model.h"
#include "rng.h"
#include "shard.h"
#include "testutil.h"

enum { B = 3, T = 16, V = 64, R = 4 };
#define LR 0.05f
#define TARGETS "c_attn,c_proj,c_fc"

/* A tiny random model, a random shard and a random non-zero adapter on disk. */
static void make_inputs(const char *dir, model_config *c)
{
    char path[600];
    pl_err e;
    *c = (model_config){.arch = ARCH_GPT2, .n_layer = 2, .n_embd = 16, .n_head = 2,
                        .n_kv_head = 2, .head_dim = 8, .n_inner = 64, .vocab = V, .n_ctx = 32,
                        .eps = 1e-5f, .tie_embeddings = 1};
    model m;
    snprintf(path, sizeof path, "%s/model", dir);
    assert_int_equal(model_init_random(&m, c, 7, &e), 0);
    assert_int_equal(model_save(&m, path, &e), 0);
    model_free(&m);

    uint32_t tok[1000];
    rng_state r;
    uint64_t seed = 11;
    rng_seed(&r, &seed, 1);
    for (int i = 0; i < 1000; i++)
        tok[i] = (uint32_t)rng_below(&r, V);
    snprintf(path, sizeof path, "%s/data.bin", dir);
    assert_int_equal(shard_write(path, tok, 1000, 0, &e), 0);

    lora_layout L;
    assert_int_equal(lora_layout_build(&L, c, TARGETS, R, 8.0f, 0, 0.0f, &e), 0);
    float *p = malloc(L.n_params * sizeof(float));
    for (size_t i = 0; i < L.n_params; i++)
        p[i] = 0.2f * rng_normal(&r);   /* B non-zero too: every gradient is */
    snprintf(path, sizeof path, "%s/init", dir);
    assert_int_equal(lora_save_peft(path, &L, c, p, "tiny", &e), 0);
    free(p);
    lora_layout_free(&L);
}

/* The gradient of the mean token loss of the first batch (sequences 0..B-1). */
static float *expected_grad(const char *dir, lora_layout *L, float **p0)
{
    char path[600], data[600];
    pl_err e;
    model m;
    snprintf(path, sizeof path, "%s/model", dir);
    assert_int_equal(model_load(&m, path, &e), 0);
    snprintf(path, sizeof path, "%s/init", dir);
    assert_int_equal(lora_load_peft(path, &m.cfg, L, p0, &e), 0);
    lora_attach(L, &m);
    shard_set d;
    snprintf(data, sizeof data, "%s/data.bin", dir);
    assert_int_equal(shard_set_open(&d, data, V, &e), 0);
    int32_t inp[B * T], tgt[B * T];
    for (int i = 0; i < B; i++)
        shard_set_sequence(&d, (uint64_t)i, T, inp + i * T, tgt + i * T);
    model_acts *a = model_acts_new(&m, L, B, T, 1);
    float *g = malloc(L->n_params * sizeof(float));
    model_loss_grad(&m, a, L, *p0, g, inp, tgt, 0);
    float inv = 1.0f / (float)(B * T);   /* the server's division */
    for (size_t i = 0; i < L->n_params; i++)
        g[i] *= inv;
    model_acts_free(a);
    shard_set_close(&d);
    model_free(&m);
    return g;
}

static void test_one_sgd_step(void **state)
{
    (void)state;
    const char *pslora = getenv("PSLORA");
    assert_non_null(pslora);
    char dir[512], cmd[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("sgd"));
    model_config c;
    make_inputs(dir, &c);
    snprintf(cmd, sizeof cmd,
             "'%s' train --model %s/model --data %s/data.bin --out %s/out --init-adapter %s/init"
             " --optimizer sgd --lr %.9g --clip 0 --steps 1 --batch %d --seq %d --threads 2"
             " >%s/log 2>&1",
             pslora, dir, dir, dir, dir, (double)LR, B, T, dir);
    assert_int_equal(system(cmd), 0);

    lora_layout L, L1;
    float *p0, *p1;
    float *g = expected_grad(dir, &L, &p0);
    pl_err e;
    snprintf(cmd, sizeof cmd, "%s/out", dir);
    assert_int_equal(lora_load_peft(cmd, &c, &L1, &p1, &e), 0);
    assert_int_equal(L1.n_params, L.n_params);
    size_t moved = 0;
    for (size_t i = 0; i < L.n_params; i++) {
        float want = p0[i] - LR * g[i];
        /* exact up to the rounding of one multiply-add (fused or not) */
        float tol = 2.0f * (nextafterf(fabsf(p0[i]) + fabsf(LR * g[i]), INFINITY) -
                            (fabsf(p0[i]) + fabsf(LR * g[i])));
        if (fabsf(p1[i] - want) > tol)
            fail_msg("param %zu: %.9g - %.9g * %.9g = %.9g, trainer wrote %.9g", i, p0[i],
                     (double)LR, g[i], want, p1[i]);
        moved += p1[i] != p0[i];
    }
    assert_true(moved > L.n_params * 9 / 10);   /* the step really moved the adapter */
    free(g), free(p0), free(p1);
    lora_layout_free(&L);
    lora_layout_free(&L1);
}

int main(int argc, char **argv)
{
    (void)argc;
    cpu_fix_blas(argv);   /* the same OpenBLAS kernels as the pslora executable */
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_one_sgd_step)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
