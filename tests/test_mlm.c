/* test_mlm.c - the masking of masked language modelling (common/train/mlm.h):
 * repeatable from (seed, epoch, sample) alone, whatever the call order; specials
 * and padding never chosen; the 15% choice and the 80/10/10 split within
 * binomial bounds on a large sample; targets the originals; bad specs refused. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mlm.h"

enum { CLS = 101, SEP = 102, PAD = 0, MASK = 103, VOCAB = 1000 };
static const int32_t specials[] = {PAD, CLS, SEP, MASK};

static mlm_spec spec(void)
{
    mlm_spec s = {.mask_id = MASK, .vocab = VOCAB, .special = specials, .n_special = 4, .prob = 0.15};
    return s;
}

/* A row [CLS] w... [SEP] PAD... with words in [200, VOCAB), drawn from k. */
static void make_row(int32_t *t, int n, int words, unsigned k)
{
    t[0] = CLS;
    for (int i = 1; i <= words; i++)
        t[i] = 200 + (int32_t)((k * 2654435761u + (unsigned)i * 40503u) % (VOCAB - 200));
    t[words + 1] = SEP;
    for (int i = words + 2; i < n; i++)
        t[i] = PAD;
}

/* |x - mean| <= 6 sd of a binomial(n, p) */
static void assert_binomial(long x, long n, double p, const char *what)
{
    double mean = n * p, sd = sqrt(n * p * (1 - p));
    if (fabs((double)x - mean) > 6 * sd)
        fail_msg("%s: %ld of %ld, expected %.1f +- %.1f (6 sd)", what, x, n, mean, 6 * sd);
}

static void test_deterministic_and_order_free(void **state)
{
    (void)state;
    mlm_spec s = spec();
    enum { N = 64, R = 20 };
    int32_t tok[R][N], a_inp[R][N], a_tgt[R][N], b_inp[N], b_tgt[N];
    int a_cnt[R];
    for (int k = 0; k < R; k++) {
        make_row(tok[k], N, 50, (unsigned)k);
        a_cnt[k] = mlm_mask_row(&s, tok[k], N, 7, 3, (uint64_t)k, a_inp[k], a_tgt[k]);
        assert_true(a_cnt[k] >= 0);
    }
    /* the same samples again in reverse order, with other calls in between */
    for (int k = R - 1; k >= 0; k--) {
        int32_t x[N], y[N];
        mlm_mask_row(&s, tok[(k + 5) % R], N, 7, 4, 999, x, y);
        int c = mlm_mask_row(&s, tok[k], N, 7, 3, (uint64_t)k, b_inp, b_tgt);
        assert_int_equal(c, a_cnt[k]);
        assert_memory_equal(b_inp, a_inp[k], sizeof b_inp);
        assert_memory_equal(b_tgt, a_tgt[k], sizeof b_tgt);
    }
    /* another seed, epoch or sample gives another mask (20 rows: all equal
     * would have probability far below 1e-20) */
    int diff_seed = 0, diff_epoch = 0, diff_sample = 0;
    for (int k = 0; k < R; k++) {
        mlm_mask_row(&s, tok[k], N, 8, 3, (uint64_t)k, b_inp, b_tgt);
        diff_seed += memcmp(b_tgt, a_tgt[k], sizeof b_tgt) != 0;
        mlm_mask_row(&s, tok[k], N, 7, 4, (uint64_t)k, b_inp, b_tgt);
        diff_epoch += memcmp(b_tgt, a_tgt[k], sizeof b_tgt) != 0;
        mlm_mask_row(&s, tok[k], N, 7, 3, (uint64_t)k + 1000, b_inp, b_tgt);
        diff_sample += memcmp(b_tgt, a_tgt[k], sizeof b_tgt) != 0;
    }
    assert_true(diff_seed > 0 && diff_epoch > 0 && diff_sample > 0);
}

/* A row cut to its first m tokens is masked as the first m of the whole row;
 * a position's fate does not depend on the other tokens' values. */
static void test_prefix_and_position_only(void **state)
{
    (void)state;
    mlm_spec s = spec();
    enum { N = 128 };
    int32_t tok[N], inp[N], tgt[N], inp2[N], tgt2[N];
    make_row(tok, N, N - 2, 1);
    mlm_mask_row(&s, tok, N, 11, 0, 5, inp, tgt);
    for (int m = 0; m <= N; m += 17) {
        mlm_mask_row(&s, tok, m, 11, 0, 5, inp2, tgt2);
        if (m > 0) {
            assert_memory_equal(inp2, inp, (size_t)m * sizeof *inp);
            assert_memory_equal(tgt2, tgt, (size_t)m * sizeof *tgt);
        }
    }
    /* change the words (not the specials): the same positions are chosen */
    int32_t tok2[N];
    make_row(tok2, N, N - 2, 2);
    mlm_mask_row(&s, tok2, N, 11, 0, 5, inp2, tgt2);
    for (int i = 0; i < N; i++)
        assert_int_equal(tgt2[i] >= 0, tgt[i] >= 0);
}

/* Over ~10^6 tokens: specials and padding never chosen, tgt the originals
 * exactly at the chosen positions, unchosen inputs unchanged, random ids in
 * range; the counts within 6 sd of binomial(n, p) for
 *   chosen          p = 0.15 of the ordinary tokens
 *   -> [MASK]       p = 0.8 + 0.1/V of the chosen (a random id may be [MASK])
 *   -> unchanged    p = 0.1 + 0.1/V (a random id may be the original)
 *   -> another id   the rest. */
static void test_proportions_and_targets(void **state)
{
    (void)state;
    mlm_spec s = spec();
    enum { N = 256, ROWS = 4000 };
    int32_t tok[N], inp[N], tgt[N];
    long ordinary = 0, chosen = 0, masked = 0, kept = 0, randomized = 0;
    long hist[VOCAB] = {0};
    for (int k = 0; k < ROWS; k++) {
        int words = 40 + k % (N - 42);
        make_row(tok, N, words, (unsigned)k);
        if (k % 7 == 0)
            tok[N - 1] = -1; /* padding as -1 */
        int c = mlm_mask_row(&s, tok, N, 1234, k % 3, (uint64_t)k, inp, tgt);
        int count = 0;
        for (int i = 0; i < N; i++) {
            int special = tok[i] < 0 || tok[i] == PAD || tok[i] == CLS || tok[i] == SEP;
            ordinary += !special;
            if (tgt[i] < 0) {
                assert_int_equal(tgt[i], -1);
                assert_int_equal(inp[i], tok[i]);
                continue;
            }
            assert_false(special);
            assert_int_equal(tgt[i], tok[i]);
            assert_true(inp[i] >= 0 && inp[i] < VOCAB);
            count++;
            if (inp[i] == MASK)
                masked++;
            else if (inp[i] == tok[i])
                kept++;
            else {
                randomized++;
                hist[inp[i]]++;
            }
        }
        assert_int_equal(c, count);
        chosen += count;
    }
    assert_binomial(chosen, ordinary, 0.15, "chosen");
    assert_binomial(masked, chosen, 0.8 + 0.1 / VOCAB, "[MASK]");
    assert_binomial(kept, chosen, 0.1 + 0.1 / VOCAB, "unchanged");
    assert_binomial(randomized, chosen, 0.1 - 0.2 / VOCAB, "random");
    /* random ids spread over the vocabulary: each tenth of it gets its share */
    for (int b = 0; b < 10; b++) {
        long in = 0;
        for (int v = b * VOCAB / 10; v < (b + 1) * VOCAB / 10; v++)
            in += hist[v];
        assert_binomial(in, randomized, 0.1, "random ids per tenth of the vocabulary");
    }
}

/* Bernoulli per token, as Hugging Face: rows of 10 ordinary tokens have 0
 * chosen with probability 0.85^10 = 0.197 (a fixed count would never give 0). */
static void test_count_is_bernoulli(void **state)
{
    (void)state;
    mlm_spec s = spec();
    int32_t tok[12], inp[12], tgt[12];
    long zero = 0, rows = 20000, hist[11] = {0};
    make_row(tok, 12, 10, 3);
    for (long k = 0; k < rows; k++) {
        int c = mlm_mask_row(&s, tok, 12, 5, 0, (uint64_t)k, inp, tgt);
        assert_true(c >= 0 && c <= 10);
        hist[c]++;
        zero += c == 0;
    }
    assert_binomial(zero, rows, pow(0.85, 10), "rows with none chosen");
    assert_binomial(hist[3], rows, 120 * pow(0.15, 3) * pow(0.85, 7), "rows with 3 chosen");
}

static void test_prob_edges(void **state)
{
    (void)state;
    mlm_spec s = spec();
    enum { N = 40 };
    int32_t tok[N], inp[N], tgt[N];
    make_row(tok, N, 30, 9);
    s.prob = 0.0;
    assert_int_equal(mlm_mask_row(&s, tok, N, 1, 0, 0, inp, tgt), 0);
    assert_memory_equal(inp, tok, sizeof tok);
    s.prob = 1.0;
    assert_int_equal(mlm_mask_row(&s, tok, N, 1, 0, 0, inp, tgt), 30);
    for (int i = 1; i <= 30; i++)
        assert_int_equal(tgt[i], tok[i]);
    assert_int_equal(mlm_mask_row(&s, tok, 0, 1, 0, 0, inp, tgt), 0);
}

static void test_bad_specs(void **state)
{
    (void)state;
    int32_t tok[8] = {CLS, 300, 301, 302, 303, 304, SEP, PAD}, inp[8], tgt[8];
    mlm_spec s;
    pl_err e;
#define BAD(stmt, needle)                                                                          \
    do {                                                                                           \
        s = spec();                                                                                \
        stmt;                                                                                      \
        memset(inp, 0x7f, sizeof inp);                                                             \
        assert_int_equal(mlm_spec_check(&s, &e), -1);                                              \
        assert_non_null(strstr(e.msg, needle));                                                    \
        assert_int_equal(mlm_mask_row(&s, tok, 8, 1, 0, 0, inp, tgt), -1);                         \
        assert_int_equal(inp[0], 0x7f7f7f7f);                                                      \
    } while (0)
    BAD(s.vocab = 0, "vocab");
    BAD(s.mask_id = VOCAB, "mask id");
    BAD(s.mask_id = -1, "mask id");
    BAD(s.prob = 1.5, "probability");
    BAD(s.prob = -0.1, "probability");
    BAD(s.prob = NAN, "probability");
    BAD(s.special = NULL, "special");
#undef BAD
    s = spec();
    assert_int_equal(mlm_spec_check(&s, &e), 0);
    assert_int_equal(mlm_spec_check(NULL, &e), -1);
    assert_int_equal(mlm_mask_row(NULL, tok, 8, 1, 0, 0, inp, tgt), -1);
    assert_int_equal(mlm_mask_row(&s, tok, -1, 1, 0, 0, inp, tgt), -1);
    /* a token outside the vocabulary: refused before anything is written */
    tok[3] = VOCAB;
    memset(inp, 0x7f, sizeof inp);
    assert_int_equal(mlm_mask_row(&s, tok, 8, 1, 0, 0, inp, tgt), -1);
    assert_int_equal(inp[0], 0x7f7f7f7f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deterministic_and_order_free),
        cmocka_unit_test(test_prefix_and_position_only),
        cmocka_unit_test(test_proportions_and_targets),
        cmocka_unit_test(test_count_is_bernoulli),
        cmocka_unit_test(test_prob_edges),
        cmocka_unit_test(test_bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
