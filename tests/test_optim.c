/* test_optim.c - AdamW and SGD against hand-worked steps, the learning-rate
 * schedules at chosen steps, the clip factor and the squared norm. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "testutil.h"

/* |got - want| <= tol * max(1, |want|) */
#define assert_close(got, want, tol) assert_close_at((got), (want), (tol), __LINE__)
static void assert_close_at(double got, double want, double tol, int line)
{
    if (!(fabs(got - want) <= tol * fmax(1.0, fabs(want))))
        fail_msg("line %d: got %.9g, want %.9g", line, got, want);
}

static void test_defaults_and_names(void **state)
{
    (void)state;
    opt_config c;
    memset(&c, 0x55, sizeof c);
    opt_config_default(&c);
    assert_int_equal(c.kind, OPT_ADAMW);
    assert_true(c.lr == 2e-4f);
    assert_true(c.beta1 == 0.9f && c.beta2 == 0.999f && c.eps == 1e-8f);
    assert_true(c.weight_decay == 0.0f && c.momentum == 0.0f);
    assert_int_equal(c.schedule, SCHED_CONSTANT);
    assert_int_equal(c.warmup, 0);
    assert_true(c.clip == 1.0f);

    opt_kind k;
    assert_int_equal(opt_kind_parse("sgd", &k), 0);
    assert_int_equal(k, OPT_SGD);
    assert_int_equal(opt_kind_parse("adamw", &k), 0);
    assert_int_equal(k, OPT_ADAMW);
    assert_int_equal(opt_kind_parse("adam", &k), -1);
    assert_string_equal(opt_kind_name(OPT_SGD), "sgd");
    assert_string_equal(opt_kind_name(OPT_ADAMW), "adamw");

    sched_kind s;
    const char *names[] = {"constant", "linear", "cosine"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sched_parse(names[i], &s), 0);
        assert_string_equal(sched_name(s), names[i]);
    }
    assert_int_equal(sched_parse("Cosine", &s), -1);
    assert_int_equal(sched_parse("", &s), -1);
}

/* AdamW, b1 = 0.5, b2 = 0.75, eps = 0, lr = 0.1, wd = 0.1, three parameters
 * p = [2, -1, 0.5], g1 = [1, -2, 0.5], g2 = [3, 1, -0.5].
 * Step 1 (bc1 = 0.5, bc2 = 0.25): m = 0.5 g1 = [0.5, -1, 0.25],
 *   v = 0.25 g1^2 = [0.25, 1, 0.0625]; m/bc1 = g1, sqrt(v/bc2) = |g1|, so the
 *   step is lr sign(g1): p = 0.99 p - 0.1 sign(g1) = [1.88, -0.89, 0.395].
 * Step 2 (bc1 = 0.75, bc2 = 1 - 0.5625 = 0.4375):
 *   m = 0.5 m + 0.5 g2 = [1.75, 0, -0.125]
 *   v = 0.75 v + 0.25 g2^2 = [0.1875 + 2.25, 0.75 + 0.25, 0.046875 + 0.0625]
 *     = [2.4375, 1, 0.109375]
 *   0.99 p = [1.8612, -0.8811, 0.39105]
 *   p0: (1.75/0.75) / sqrt(2.4375/0.4375) = 2.333333 / 2.3603873 = 0.98853830
 *       1.8612 - 0.098853830 = 1.76234617
 *   p1: m = 0 -> only the decay: -0.8811
 *   p2: (-0.125/0.75) / sqrt(0.109375/0.4375) = -0.1666667 / 0.5 = -0.3333333
 *       0.39105 + 0.03333333 = 0.42438333 */
static const float adam_p0[3] = {2, -1, 0.5f};
static const float adam_g1[3] = {1, -2, 0.5f};
static const float adam_g2[3] = {3, 1, -0.5f};
static const double adam_p1[3] = {1.88, -0.89, 0.395};
static const double adam_m1[3] = {0.5, -1, 0.25}, adam_v1[3] = {0.25, 1, 0.0625};
static const double adam_p2[3] = {1.76234617, -0.8811, 0.42438333};
static const double adam_m2[3] = {1.75, 0, -0.125}, adam_v2[3] = {2.4375, 1, 0.109375};

static void adam_config(opt_config *c)
{
    opt_config_default(c);
    c->beta1 = 0.5f;
    c->beta2 = 0.75f;
    c->eps = 0.0f;
    c->weight_decay = 0.1f;
}

static void test_adamw_two_steps(void **state)
{
    (void)state;
    opt_config c;
    adam_config(&c);
    float p[3], m[3] = {0}, v[3] = {0};
    memcpy(p, adam_p0, sizeof p);
    opt_update(&c, p, adam_g1, m, v, 3, 0.1f, 1);
    for (int i = 0; i < 3; i++) {
        assert_close(p[i], adam_p1[i], 1e-6);
        assert_close(m[i], adam_m1[i], 1e-6);
        assert_close(v[i], adam_v1[i], 1e-6);
    }
    opt_update(&c, p, adam_g2, m, v, 3, 0.1f, 2);
    for (int i = 0; i < 3; i++) {
        assert_close(p[i], adam_p2[i], 1e-6);
        assert_close(m[i], adam_m2[i], 1e-6);
        assert_close(v[i], adam_v2[i], 1e-6);
    }
}

/* The same three parameters repeated over a range large enough for the
 * parallel loop: every element must match its hand-worked value. */
static void test_adamw_large_range(void **state)
{
    (void)state;
    enum { N = 3 * 20000 + 1 };
    opt_config c;
    adam_config(&c);
    float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g);
    float *m = calloc(N, sizeof *m), *v = calloc(N, sizeof *v);
    assert_true(p && g && m && v);
    for (int i = 0; i < N; i++) {
        p[i] = adam_p0[i % 3];
        g[i] = adam_g1[i % 3];
    }
    opt_update(&c, p, g, m, v, N, 0.1f, 1);
    for (int i = 0; i < N; i++)
        g[i] = adam_g2[i % 3];
    opt_update(&c, p, g, m, v, N, 0.1f, 2);
    for (int i = 0; i < N; i++)
        assert_close(p[i], adam_p2[i % 3], 1e-6);
    free(p);
    free(g);
    free(m);
    free(v);
}

/* Default betas, eps = 1e-8, wd = 0, lr = 1e-3, one step: m/bc1 = g and
 * sqrt(v/bc2) = |g|, so the step is lr g / (|g| + 1e-8):
 *   g = 1      -> 1e-3 * (1 - 1e-8)    ~ 1e-3
 *   g = -1e-8  -> -1e-3 * 1e-8 / 2e-8 = -0.5e-3  (eps matters)
 *   g = 3e-8   -> 1e-3 * 3 / 4        = 0.75e-3
 *   g = 0      -> 0 (no 0/0)
 * and the state holds m = 0.1 g, v = 0.001 g^2. */
static void test_adamw_default_betas_eps(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    float p[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    const float g[4] = {1, -1e-8f, 3e-8f, 0};
    float m[4] = {0}, v[4] = {0};
    opt_update(&c, p, g, m, v, 4, 1e-3f, 1);
    assert_close(p[0], 0.5 - 1e-3, 1e-6);
    assert_close(p[1], 0.5 + 0.5e-3, 1e-6);
    assert_close(p[2], 0.5 - 0.75e-3, 1e-6);
    assert_true(p[3] == 0.5f);
    assert_close(m[0], 0.1, 1e-6);
    assert_close(v[0], 0.001, 1e-6);
    assert_close(m[2] / 3e-9, 1.0, 1e-6);   /* relative: the value is tiny */
}

/* Plain SGD, lr = 0.1, p = [1, -2, 3]:
 *   g1 = [0.5, -1, 2] -> p = [0.95, -1.9, 2.8]
 *   g2 = [1, 1, 1]    -> p = [0.85, -2.0, 2.7]
 * No state needed (m and v NULL). */
static void test_sgd_plain(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.kind = OPT_SGD;
    float p[3] = {1, -2, 3};
    const float g1[3] = {0.5f, -1, 2}, g2[3] = {1, 1, 1};
    opt_update(&c, p, g1, NULL, NULL, 3, 0.1f, 1);
    assert_close(p[0], 0.95, 1e-6);
    assert_close(p[1], -1.9, 1e-6);
    assert_close(p[2], 2.8, 1e-6);
    opt_update(&c, p, g2, NULL, NULL, 3, 0.1f, 2);
    assert_close(p[0], 0.85, 1e-6);
    assert_close(p[1], -2.0, 1e-6);
    assert_close(p[2], 2.7, 1e-6);
}

/* SGD, weight decay only: wd = 0.5, lr = 0.1, p = 2, g = 0:
 *   g' = 0.5 * 2 = 1     -> p = 1.9
 *   g' = 0.5 * 1.9 = 0.95 -> p = 1.805 */
static void test_sgd_weight_decay(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.kind = OPT_SGD;
    c.weight_decay = 0.5f;
    float p[1] = {2};
    const float g[1] = {0};
    opt_update(&c, p, g, NULL, NULL, 1, 0.1f, 1);
    assert_close(p[0], 1.9, 1e-6);
    opt_update(&c, p, g, NULL, NULL, 1, 0.1f, 2);
    assert_close(p[0], 1.805, 1e-6);
}

/* SGD, momentum only: mu = 0.5, lr = 0.1, p = 1, g = 1 twice:
 *   t=1: m = g = 1 (the stale 99 in m is ignored)   -> p = 0.9
 *   t=2: m = 0.5 * 1 + 1 = 1.5                       -> p = 0.75 */
static void test_sgd_momentum(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.kind = OPT_SGD;
    c.momentum = 0.5f;
    float p[1] = {1}, m[1] = {99};
    const float g[1] = {1};
    opt_update(&c, p, g, m, NULL, 1, 0.1f, 1);
    assert_close(m[0], 1.0, 1e-7);
    assert_close(p[0], 0.9, 1e-6);
    opt_update(&c, p, g, m, NULL, 1, 0.1f, 2);
    assert_close(m[0], 1.5, 1e-7);
    assert_close(p[0], 0.75, 1e-6);
}

/* SGD, mu = 0.9, wd = 0.1, lr = 0.1, p = [1, -2]:
 * t=1, g = [0.5, 1]:  g' = g + 0.1 p = [0.6, 0.8]; m = g';
 *      p = [1 - 0.06, -2 - 0.08] = [0.94, -2.08]
 * t=2, g = [-1, 0.5]: g' = [-1 + 0.094, 0.5 - 0.208] = [-0.906, 0.292]
 *      m = 0.9 [0.6, 0.8] + g' = [-0.366, 1.012]
 *      p = [0.94 + 0.0366, -2.08 - 0.1012] = [0.9766, -2.1812]
 * t=3, g = [0, 0]:    g' = 0.1 p = [0.09766, -0.21812]
 *      m = 0.9 [-0.366, 1.012] + g' = [-0.23174, 0.69268]
 *      p = [0.9766 + 0.023174, -2.1812 - 0.069268] = [0.999774, -2.250468] */
static void test_sgd_momentum_weight_decay(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.kind = OPT_SGD;
    c.momentum = 0.9f;
    c.weight_decay = 0.1f;
    float p[2] = {1, -2}, m[2] = {0};
    const float g1[2] = {0.5f, 1}, g2[2] = {-1, 0.5f}, g3[2] = {0, 0};
    opt_update(&c, p, g1, m, NULL, 2, 0.1f, 1);
    assert_close(p[0], 0.94, 1e-6);
    assert_close(p[1], -2.08, 1e-6);
    opt_update(&c, p, g2, m, NULL, 2, 0.1f, 2);
    assert_close(m[0], -0.366, 1e-6);
    assert_close(m[1], 1.012, 1e-6);
    assert_close(p[0], 0.9766, 1e-6);
    assert_close(p[1], -2.1812, 1e-6);
    opt_update(&c, p, g3, m, NULL, 2, 0.1f, 3);
    assert_close(m[0], -0.23174, 1e-6);
    assert_close(m[1], 0.69268, 1e-6);
    assert_close(p[0], 0.999774, 1e-6);
    assert_close(p[1], -2.250468, 1e-6);
}

/* lr = 0.5, warmup = 4, total = 14 (span 10).
 * Warmup, every schedule: step s -> 0.5 (s+1)/4: 0.125, 0.25, 0.375, 0.5.
 * constant: 0.5 from step 4 on.
 * linear: 0.5 (14 - s)/10: s=4 -> 0.5, s=9 -> 0.25, s=13 -> 0.05, s>=14 -> 0.
 * cosine: 0.25 (1 + cos(pi (s-4)/10)): s=4 -> 0.5, s=7 -> 0.25 (1 + cos(0.3 pi))
 *         = 0.25 * 1.58778525 = 0.39694631, s=9 -> 0.25, s=14 -> 0, s=30 -> 0. */
static void test_schedules(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.lr = 0.5f;
    c.warmup = 4;
    c.total_steps = 14;
    const sched_kind all[3] = {SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE};
    for (int k = 0; k < 3; k++) {
        c.schedule = all[k];
        assert_close(opt_lr(&c, 0), 0.125, 1e-7);
        assert_close(opt_lr(&c, 1), 0.25, 1e-7);
        assert_close(opt_lr(&c, 2), 0.375, 1e-7);
        assert_close(opt_lr(&c, 3), 0.5, 1e-7);
        assert_close(opt_lr(&c, 4), 0.5, 1e-7);
    }
    c.schedule = SCHED_CONSTANT;
    assert_close(opt_lr(&c, 9), 0.5, 1e-7);
    assert_close(opt_lr(&c, 1000), 0.5, 1e-7);

    c.schedule = SCHED_LINEAR;
    assert_close(opt_lr(&c, 9), 0.25, 1e-7);
    assert_close(opt_lr(&c, 13), 0.05, 1e-7);
    assert_close(opt_lr(&c, 14), 0.0, 1e-7);
    assert_close(opt_lr(&c, 20), 0.0, 1e-7);

    c.schedule = SCHED_COSINE;
    assert_close(opt_lr(&c, 7), 0.39694631, 1e-7);
    assert_close(opt_lr(&c, 9), 0.25, 1e-7);
    assert_close(opt_lr(&c, 14), 0.0, 1e-7);
    assert_close(opt_lr(&c, 30), 0.0, 1e-7);
}

/* Without warmup the first step uses the full rate: linear over 10 steps,
 * lr = 1: s=0 -> 1, s=5 -> 0.5; cosine s=5 -> 0.5 (1 + cos(pi/2)) = 0.5. */
static void test_schedules_no_warmup(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    c.lr = 1.0f;
    c.total_steps = 10;
    c.schedule = SCHED_LINEAR;
    assert_close(opt_lr(&c, 0), 1.0, 1e-7);
    assert_close(opt_lr(&c, 5), 0.5, 1e-7);
    c.schedule = SCHED_COSINE;
    assert_close(opt_lr(&c, 0), 1.0, 1e-7);
    assert_close(opt_lr(&c, 5), 0.5, 1e-7);
}

/* clip / (norm + 1e-6), capped at 1; off when clip = 0.
 *   clip 1, norm 4   -> 1 / 4.000001 = 0.24999994
 *   clip 2, norm 2   -> 2 / 2.000001 = 0.9999995 (just below 1)
 *   clip 1, norm 0.5 -> 1 */
static void test_clip_factor(void **state)
{
    (void)state;
    opt_config c;
    opt_config_default(&c);
    assert_close(opt_clip_factor(&c, 4.0), 0.24999994, 1e-7);
    assert_close(opt_clip_factor(&c, 0.5), 1.0, 0);
    assert_close(opt_clip_factor(&c, 0.0), 1.0, 0);
    c.clip = 2.0f;
    assert_close(opt_clip_factor(&c, 2.0), 0.9999995, 1e-7);   /* float ulp at 1: 6e-8 */
    assert_true(opt_clip_factor(&c, 2.0) < 1.0f);
    c.clip = 0.0f;
    assert_close(opt_clip_factor(&c, 1e9), 1.0, 0);
}

/* [3, 4] -> 25; empty -> 0; [1e20, 1e20] -> 2e40, beyond float's range, so
 * the sum must be carried in double. */
static void test_sq_norm(void **state)
{
    (void)state;
    const float a[2] = {3, -4};
    assert_close(opt_sq_norm(a, 2), 25.0, 0);
    assert_close(opt_sq_norm(a, 0), 0.0, 0);
    const float big[2] = {1e20f, -1e20f};
    double want = 2.0 * (double)1e20f * (double)1e20f;
    assert_close(opt_sq_norm(big, 2) / want, 1.0, 1e-15);
    const float third[3] = {0.5f, 0.25f, 0.125f};   /* 0.25 + 0.0625 + 0.015625 */
    assert_close(opt_sq_norm(third, 3), 0.328125, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_names),
        cmocka_unit_test(test_adamw_two_steps),
        cmocka_unit_test(test_adamw_large_range),
        cmocka_unit_test(test_adamw_default_betas_eps),
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_momentum_weight_decay),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_schedules_no_warmup),
        cmocka_unit_test(test_clip_factor),
        cmocka_unit_test(test_sq_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
