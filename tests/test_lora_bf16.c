/* test_lora_bf16.c - the LoRA's bf16 row products (lora_bf16.h).
 *
 * - the layouts lb_pack writes, value by value;
 * - lb_dots and lb_axpys against double references of the same rounded
 *   inputs (the bf16 values of x, c and M: only the fp32 sums may differ,
 *   so within a few ulp of the sum of |terms|), and against the fp32
 *   values unrounded within bf16's rounding (2^-8 of the sum of |terms|);
 * - where the CPU has vdpbf16ps: the instruction's results equal the plain
 *   C's bit for bit (lb_emulate), on ragged shapes (n not a multiple of 32
 *   or 16, odd r, r past 8, rows past a block).  Elsewhere that comparison
 *   cannot run; the references still check the plain C. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "lora_bf16.h"
#include "testutil.h"

static void fill(float *a, size_t n, float sd, uint64_t seed)
{
    tu_fill_normal(a, n, 0.0f, sd, 0x6c62ULL, seed);
}

static double rb(float v) { return (double)bf16_to_f32(bf16_from_f32(v)); }

static void test_pack(void **state)
{
    (void)state;
    enum { r = 3, n = 5 };
    float A[r * n], B[n * r];   /* A [r, n]; B [n, r], read as B^T */
    for (int i = 0; i < r * n; i++)
        A[i] = (float)(i + 1), B[i] = (float)(100 + i);
    assert_int_equal(lb_size(r, n), 4 * n);
    uint16_t R[4 * n], P[4 * n];
    memset(P, 0xff, sizeof P);
    lb_pack(R, 0, A, n, 1, r, n);
    lb_pack(P, 1, B, 1, r, r, n);
    for (int k = 0; k < r; k++)
        for (int j = 0; j < n; j++) {
            assert_int_equal(R[k * n + j], bf16_from_f32(A[k * n + j]));
            assert_int_equal(P[(k / 2) * 2 * n + 2 * j + k % 2], bf16_from_f32(B[j * r + k]));
        }
    for (int j = 0; j < n; j++)   /* r odd: the last pair's second half is 0 */
        assert_int_equal(P[2 * n + 2 * j + 1], 0);
}

/* Every output of lb_dots against the double sums of the rounded inputs
 * and of the unrounded ones. */
static void check_dots(int rows, int n, int r, float s)
{
    int ldx = n + 3;
    float *x = tu_fnew((size_t)rows * ldx), *M = tu_fnew((size_t)r * n);
    float *u = tu_fnew((size_t)rows * r);
    uint16_t *R = calloc(lb_size(r, n), 2);
    fill(x, (size_t)rows * ldx, 1.0f, 1), fill(M, (size_t)r * n, 0.05f, 2);
    lb_pack(R, 0, M, n, 1, r, n);
    lb_dots(u, x, ldx, R, n, r, s, rows);
    for (int m = 0; m < rows; m++)
        for (int k = 0; k < r; k++) {
            double want = 0, exact = 0, mag = 0;
            for (int j = 0; j < n; j++) {
                double xv = x[(size_t)m * ldx + j], mv = M[(size_t)k * n + j];
                want += rb(x[(size_t)m * ldx + j]) * rb(M[(size_t)k * n + j]);
                exact += xv * mv, mag += fabs(xv * mv);
            }
            double got = u[(size_t)m * r + k];
            assert_true(fabs(got - s * want) <= 2e-6 * fabs(s) * mag + 1e-30);
            assert_true(fabs(got - s * exact) <= 1.0 / 128 * fabs(s) * mag + 1e-30);
        }
    free(x), free(M), free(u), free(R);
}

static void test_dots(void **state)
{
    (void)state;
    check_dots(8, 576, 8, 1.0f);
    check_dots(11, 100, 5, 0.5f);   /* n % 32 = 4; two blocks of rows; r = 4 + 1 */
    check_dots(3, 31, 16, 2.0f);
    check_dots(1, 1100, 1, 1.0f);   /* chunks of 512 and a ragged end */
}

/* y = y0 + bias + (s c) M against doubles of the rounded c and M: mode 0
 * y0 NULL, 1 y0 given, 2 in place (y0 = y), 3 y0 and a bias. */
static void check_axpys(int rows, int n, int r, float s, int mode)
{
    int ldy = n + 5;
    float *y = tu_fnew((size_t)rows * ldy), *y0 = tu_fnew((size_t)rows * ldy);
    float *c = tu_fnew((size_t)rows * r), *M = tu_fnew((size_t)r * n), *bias = tu_fnew(n);
    uint16_t *P = calloc(lb_size(r, n), 2);
    fill(y0, (size_t)rows * ldy, 1.0f, 3), fill(c, (size_t)rows * r, 1.0f, 4);
    fill(bias, n, 1.0f, 9);
    fill(M, (size_t)r * n, 0.05f, 5);
    float *B = tu_fnew((size_t)n * r);   /* M as the B [n, r] whose B^T it is */
    for (int k = 0; k < r; k++)
        for (int j = 0; j < n; j++)
            B[(size_t)j * r + k] = M[(size_t)k * n + j];
    lb_pack(P, 1, B, 1, r, r, n);
    float *from = mode == 0 ? NULL : mode == 2 ? y : y0, *b = mode == 3 ? bias : NULL;
    if (mode == 2)
        memcpy(y, y0, (size_t)rows * ldy * sizeof *y);
    lb_axpys(y, ldy, from, ldy, b, c, P, n, r, s, rows);
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < n; j++) {
            double want = mode ? y0[(size_t)m * ldy + j] : 0;
            want += b ? b[j] : 0.0f;
            double exact = want, mag = fabs(want);
            for (int k = 0; k < r; k++) {
                double cv = (double)s * c[(size_t)m * r + k], mv = M[(size_t)k * n + j];
                want += rb(s * c[(size_t)m * r + k]) * rb(M[(size_t)k * n + j]);
                exact += cv * mv, mag += fabs(cv * mv);
            }
            double got = y[(size_t)m * ldy + j];
            assert_true(fabs(got - want) <= 2e-6 * mag + 1e-30);
            assert_true(fabs(got - exact) <= 1.0 / 128 * mag + 1e-30);
        }
    free(y), free(y0), free(c), free(M), free(P), free(B), free(bias);
}

static void test_axpys(void **state)
{
    (void)state;
    for (int mode = 0; mode < 4; mode++) {
        check_axpys(8, 1536, 8, 2.0f, mode);
        check_axpys(5, 37, 3, 0.5f, mode);     /* odd rows, n % 16 = 5, odd r */
        check_axpys(2, 600, 13, 1.0f, mode);   /* 4 pairs, then 3 adding to y */
    }
}

/* The instruction's bits against the plain C's. */
static void check_native(int rows, int n, int r)
{
    int ld = n + 1;
    size_t ny = (size_t)rows * ld;
    float *x = tu_fnew(ny), *M = tu_fnew((size_t)r * n), *c = tu_fnew((size_t)rows * r);
    float *u[2], *y[2];
    uint16_t *R = calloc(lb_size(r, n), 2), *P = calloc(lb_size(r, n), 2);
    fill(x, ny, 1.0f, 6), fill(M, (size_t)r * n, 0.05f, 7), fill(c, (size_t)rows * r, 1.0f, 8);
    lb_pack(R, 0, M, n, 1, r, n);
    lb_pack(P, 1, M, n, 1, r, n);
    for (int e = 0; e < 2; e++) {
        lb_emulate(e);
        u[e] = tu_fnew((size_t)rows * r), y[e] = tu_fnew(ny);
        memcpy(y[e], x, ny * sizeof *x);
        lb_dots(u[e], x, ld, R, n, r, 0.75f, rows);
        lb_axpys(y[e], ld, y[e], ld, x + 1, c, P, n, r, 1.5f, rows);
    }
    lb_emulate(0);
    assert_memory_equal(u[0], u[1], (size_t)rows * r * sizeof(float));
    assert_memory_equal(y[0], y[1], ny * sizeof(float));
    for (int e = 0; e < 2; e++)
        free(u[e]), free(y[e]);
    free(x), free(M), free(c), free(R), free(P);
}

static void test_native_bits(void **state)
{
    (void)state;
    if (!lb_emulate(0)) {
        printf("lora_bf16: this CPU has no vdpbf16ps; the plain C is checked by the references only\n");
        return;
    }
    check_native(8, 1536, 8);
    check_native(17, 576, 8);
    check_native(9, 100, 5);
    check_native(3, 33, 16);
    check_native(2, 1100, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack),
        cmocka_unit_test(test_dots),
        cmocka_unit_test(test_axpys),
        cmocka_unit_test(test_native_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
