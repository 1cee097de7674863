/* test_task_ref.c - prompt-completion sample data end to end through the
 * pslora executable, against the float64 references (refcheck.h) of a small
 * GPT-2 and a small Llama:
 *   eval_loss       `pslora eval` on a shard + sidecar of three samples of
 *                   different lengths (prompt masked, rows padded, the last
 *                   batch half empty) equals sum over counted targets / their
 *                   number, computed by the reference on rows built here
 *                   (<= 1e-5 relative);
 *   mask_applied    the same shard with a mask-less (text) sidecar gives the
 *                   reference's all-targets loss, and that differs from the
 *                   masked one: the mask is really applied;
 *   sgd_step        one `pslora train --optimizer sgd --clip 0` step from a
 *                   nonzero adapter moves it by -lr * g, g the central finite
 *                   difference gradient of the reference's masked mean loss
 *                   (<= 1e-3 relative).
 * Rows are built here from the sample layout (docs/design.md, "Sample data"),
 * not with the project's dataset code. */
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
#include "refcheck.h"
#include "samples.h"
#include "shard.h"
#include "testutil.h"

enum { NS = 3, T = 6, MAXLEN = T + 1 };
/* sample lengths and prompt lengths (bos included): every sample has counted
 * targets, sample 0 is cut to T + 1 tokens */
static const int LEN[NS] = {9, 5, 4}, PROMPT[NS] = {3, 2, 1};
#define LR 0.5f

typedef struct {
    char data[600], text_data[600], adapter[600], out[600];
    uint32_t tok[32];
    uint8_t mask[32];
    uint32_t off[NS + 1];
} task_files;

/* The samples' tokens (seeded draws < vocab) and the masked / unmasked
 * sidecars, written under dir. */
static void write_samples(task_files *t, const char *dir, int vocab)
{
    ref_rng r = {99};
    size_t n = 0;
    for (int s = 0; s < NS; s++) {
        t->off[s] = (uint32_t)n;
        for (int j = 0; j < LEN[s]; j++, n++) {
            t->tok[n] = (uint32_t)(ref_rng_u64(&r) % (uint64_t)vocab);
            t->mask[n] = j >= PROMPT[s];
        }
    }
    t->off[NS] = (uint32_t)n;
    pl_err e = {{0}};
    snprintf(t->data, sizeof t->data, "%s/pc.bin", dir);
    snprintf(t->text_data, sizeof t->text_data, "%s/all.bin", dir);
    samples_file pc = {SAMPLES_PROMPT_COMPLETION, n, NS, 0, t->off, t->mask, NULL};
    samples_file tx = {SAMPLES_TEXT, n, NS, 0, t->off, NULL, NULL};
    char side[700];
    if (shard_write(t->data, t->tok, n, 0, &e) || shard_write(t->text_data, t->tok, n, 0, &e))
        rc_fail_err("shard_write", &e);
    snprintf(side, sizeof side, "%s.samples", t->data);
    if (samples_write(side, &pc, &e))
        rc_fail_err(side, &e);
    snprintf(side, sizeof side, "%s.samples", t->text_data);
    if (samples_write(side, &tx, &e))
        rc_fail_err(side, &e);
}

/* Rows [NS, T]: sample s's first T + 1 tokens, input j = token j, target j =
 * token j+1 when it counts (masked: -1), padding input 0 / target -1. */
static int build_rows(const task_files *t, int masked, int32_t *inp, int32_t *tgt)
{
    int counted = 0;
    for (int s = 0; s < NS; s++)
        for (int j = 0; j < T; j++) {
            int k = (int)t->off[s] + j, in_sample = j + 1 < LEN[s];
            inp[s * T + j] = in_sample ? (int32_t)t->tok[k] : 0;
            int counts = in_sample && (!masked || t->mask[k + 1]);
            tgt[s * T + j] = counts ? (int32_t)t->tok[k + 1] : -1;
            counted += counts;
        }
    return counted;
}

/* Runs a pslora command line (PSLORA from CTest), failing the test on a
 * non-zero exit; the first line of its stdout into out (may be NULL). */
static void run(char *out, size_t len, const char *fmt, ...)
{
    const char *exe = getenv("PSLORA");
    if (!exe)
        fail_msg("PSLORA is not set (run through ctest)");
    char args[3000], cmd[4000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s %s 2>&1", exe, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = 0;
    while (fgetc(p) != EOF)
        ;
    int st = pclose(p);
    if (st != 0)
        fail_msg("'%s' failed (%d): %s", cmd, st, line);
    if (out)
        snprintf(out, len, "%s", line);
}

/* `pslora eval --json` loss on data with the fixture's model (adapter may be NULL). */
static double eval_loss(const rc_fixture *f, const char *data, long *tokens)
{
    char line[1024];
    run(line, sizeof line, "eval --model %s --data %s --seq %d --batch 2 --json", f->dir, data, T);
    double loss = NAN;
    if (sscanf(line, "{\"loss\": %lf, \"ppl\": %*f, \"tokens\": %ld", &loss, tokens) != 2)
        fail_msg("eval printed '%s'", line);
    return loss;
}

static void check_rel(const char *what, double got, double want, double tol)
{
    double rel = fabs(got - want) / fabs(want);
    if (!(rel <= tol))
        fail_msg("%s: got %.9g, reference %.9g (relative %.2e > %.0e)", what, got, want, rel, tol);
    print_message("%s: %.9g vs reference %.9g (relative %.2e)\n", what, got, want, rel);
}

static void test_eval_loss(void **state)
{
    rc_fixture *f = *state;
    task_files t;
    write_samples(&t, tu_tmpdir("task_eval"), f->lm.cfg.vocab);
    int32_t inp[NS * T], tgt[NS * T];
    int n = build_rows(&t, 1, inp, tgt);
    double want = rc_ref_loss_on(f, NULL, inp, tgt, NS, T) / n;
    long tokens;
    double got = eval_loss(f, t.data, &tokens);
    assert_int_equal(tokens, n);
    check_rel("masked eval loss", got, want, 1e-5);
}

static void test_mask_applied(void **state)
{
    rc_fixture *f = *state;
    task_files t;
    write_samples(&t, tu_tmpdir("task_mask"), f->lm.cfg.vocab);
    int32_t inp[NS * T], tgt[NS * T];
    int n_all = build_rows(&t, 0, inp, tgt);
    double want_all = rc_ref_loss_on(f, NULL, inp, tgt, NS, T) / n_all;
    int n_masked = build_rows(&t, 1, inp, tgt);
    double want_masked = rc_ref_loss_on(f, NULL, inp, tgt, NS, T) / n_masked;
    long tokens;
    double got_all = eval_loss(f, t.text_data, &tokens);
    assert_int_equal(tokens, n_all);
    check_rel("unmasked eval loss", got_all, want_all, 1e-5);
    double got_masked = eval_loss(f, t.data, &tokens);
    if (!(fabs(got_masked - got_all) > 1e-3 * fabs(got_all)))
        fail_msg("masking the prompt left the loss at %.9g (all targets %.9g)", got_masked,
                 got_all);
    check_rel("masked eval loss", got_masked, want_masked, 1e-5);
}

/* The reference's masked mean loss at the adapter p (doubles). */
typedef struct {
    rc_fixture *f;
    const lora_layout *L;
    const int32_t *inp, *tgt;
    int n;
    double *p;
    float *pf;
} ref_ctx;

static double ref_mean_loss(void *ctx)
{
    ref_ctx *c = ctx;
    for (size_t i = 0; i < c->L->n_params; i++)
        c->pf[i] = (float)c->p[i];
    ref_lora lo;
    rc_ref_adapter(&lo, c->f, c->L, c->pf, RC_ALPHA / RC_RANK, NULL);
    double loss = rc_ref_loss_on(c->f, &lo, c->inp, c->tgt, NS, T) / c->n;
    ref_lora_free(&lo);
    return loss;
}

static void test_sgd_step(void **state)
{
    rc_fixture *f = *state;
    task_files t;
    const char *dir = tu_tmpdir("task_sgd");
    write_samples(&t, dir, f->lm.cfg.vocab);
    snprintf(t.adapter, sizeof t.adapter, "%s/init", dir);
    snprintf(t.out, sizeof t.out, "%s/run", dir);
    lora_layout L;
    rc_build_layout(f, &L, 0, 0.0f);
    float *p0 = tu_fnew(L.n_params), *pf = tu_fnew(L.n_params);
    rc_fill_adapter(&L, p0, 5);
    pl_err e = {{0}};
    if (lora_save_peft(t.adapter, &L, &f->lm.cfg, p0, f->dir, &e) != 0)
        rc_fail_err("lora_save_peft", &e);
    /* one step, the whole data set as the batch (so its order does not matter) */
    run(NULL, 0, "train --model %s --data %s --init-adapter %s --optimizer sgd --lr %g --clip 0 "
        "--steps 1 --batch %d --seq %d --out %s --threads 1", f->dir, t.data, t.adapter, LR, NS, T,
        t.out);
    float *p1 = NULL;
    lora_layout L1;
    if (lora_load_peft(t.out, &f->lm.cfg, &L1, &p1, &e) != 0)
        rc_fail_err(t.out, &e);
    assert_int_equal(L1.n_params, L.n_params);
    int32_t inp[NS * T], tgt[NS * T];
    ref_ctx c = {f, &L, inp, tgt, build_rows(&t, 1, inp, tgt), tu_to_double(p0, L.n_params), pf};
    double *g = tu_dnew(L.n_params), *want = tu_dnew(L.n_params), *got = tu_dnew(L.n_params);
    tu_fd_grad(g, c.p, L.n_params, ref_mean_loss, &c);
    for (size_t i = 0; i < L.n_params; i++) {
        want[i] = -LR * g[i];
        got[i] = (double)p1[i] - (double)p0[i];
    }
    double err = tu_rel_err(got, want, L.n_params), norm = sqrt(tu_dot(want, want, L.n_params));
    print_message("SGD step: |lr g| %.3e, relative error of the change %.2e\n", norm, err);
    assert_true(norm > 1e-3);   /* a step that does nothing cannot pass */
    if (!(err <= 1e-3))
        fail_msg("adapter change differs from -lr * g by %.2e (relative) > 1e-3", err);
    free(p0), free(pf), free(p1), free(g), free(want), free(got), free(c.p);
    lora_layout_free(&L);
    lora_layout_free(&L1);
}

static int setup_gpt2(void **state)
{
    ref_config c = {.n_layer = 2, .n_embd = 8, .n_head = 2, .n_positions = T, .vocab = 11,
                    .eps = 1e-5};
    *state = rc_fixture_gpt2("task_gpt2", &c, "c_attn,c_proj,c_fc", 4);
    return 0;
}

static int setup_llama(void **state)
{
    rl_config c = {.n_layer = 2, .hidden = 8, .n_head = 4, .n_kv_head = 2, .head_dim = 4,
                   .inter = 12, .vocab = 11, .max_pos = T, .eps = 1e-5, .theta = 10.0,
                   .untied = 1, .attn_bias = 1, .mlp_bias = 1};
    *state = rc_fixture_llama("task_llama", &c);
    return 0;
}

int main(void)
{
    const struct CMUnitTest gpt2[] = {
        cmocka_unit_test(test_eval_loss),
        cmocka_unit_test(test_mask_applied),
        cmocka_unit_test(test_sgd_step),
    };
    int fails = cmocka_run_group_tests_name("task_ref_gpt2", gpt2, setup_gpt2, rc_teardown);
    return fails + cmocka_run_group_tests_name("task_ref_llama", gpt2, setup_llama, rc_teardown);
}
