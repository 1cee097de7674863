/* test_kernels_bf16.c - the producers' bf16 variants (kernels.h, *_bf16):
 * LayerNorm forward and backward, GELU forward and backward (GPT-2),
 * RMSNorm forward and backward, SwiGLU forward and backward (Llama); the
 * attention's softmax row written in bf16 (dnnl_attention.c).
 *
 * Each variant must give, bit for bit, the plain kernel's fp32 output (the
 * fp32 compute keeps calling the plain kernel, so both must agree) and that
 * output rounded to nearest even bf16 by this file's own rounding (the bits
 * the bf16 products got from dm_to_bf16 before the rounding was fused: the
 * trained adapters stay the same).  Where the fp32 output may be left out,
 * the bf16 one is the same without it, and nothing else is written.
 * Sizes: elementwise over two spans of the kernels' parallel loop and a
 * tail; rows of 77 channels (a vector body and a tail at every width). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "testutil.h"

enum { NE = 2 * 4096 + 77, ROWS = 7, COLS = 77 };

static void fill_normal(float *a, size_t n, float sd, uint64_t seed)
{
    tu_fill_normal(a, n, 0.0f, sd, 0x6b626631ULL, seed);
}

static uint16_t *bnew(size_t n)
{
    uint16_t *b = malloc(n * sizeof *b);
    assert_non_null(b);
    memset(b, 0xff, n * sizeof *b);   /* a NaN pattern no finite value rounds to */
    return b;
}

/* The float NaN in each element, so that an element left unwritten shows. */
static float *fnan(size_t n)
{
    float *a = tu_fnew(n);
    for (size_t i = 0; i < n; i++)
        a[i] = NAN;
    return a;
}

/* b[i] is y[i] rounded to nearest, ties to even (finite y only):
 * add 0x7fff plus the lowest kept bit, drop the low 16 bits. */
static void assert_bf16_of(const uint16_t *b, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &y[i], sizeof u);
        assert_true(isfinite(y[i]));
        assert_int_equal(b[i], (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

static void test_layernorm_bf16(void **state)
{
    (void)state;
    size_t n = (size_t)ROWS * COLS;
    float *x = tu_fnew(n), *w = tu_fnew(COLS), *b = tu_fnew(COLS), *y0 = tu_fnew(n), *y = fnan(n);
    float m0[ROWS], r0[ROWS], m[ROWS], r[ROWS];
    uint16_t *yb = bnew(n);
    fill_normal(x, n, 2, 1);
    fill_normal(w, COLS, 1, 2);
    fill_normal(b, COLS, 0.5f, 3);
    k_layernorm_fwd(y0, m0, r0, x, w, b, ROWS, COLS, 1e-5f);
    k_layernorm_fwd_bf16(y, yb, m, r, x, w, b, ROWS, COLS, 1e-5f);
    assert_memory_equal(y, y0, n * sizeof *y);
    assert_memory_equal(m, m0, sizeof m);
    assert_memory_equal(r, r0, sizeof r);
    assert_bf16_of(yb, y0, n);
    free(x), free(w), free(b), free(y0), free(y), free(yb);
}

static void test_rmsnorm_bf16(void **state)
{
    (void)state;
    size_t n = (size_t)ROWS * COLS;
    float *x = tu_fnew(n), *w = tu_fnew(COLS), *y0 = tu_fnew(n), *y = fnan(n);
    float r0[ROWS], r[ROWS];
    uint16_t *yb = bnew(n);
    fill_normal(x, n, 2, 4);
    fill_normal(w, COLS, 1, 5);
    k_rmsnorm_fwd(y0, r0, x, w, ROWS, COLS, 1e-5f);
    k_rmsnorm_fwd_bf16(y, yb, r, x, w, ROWS, COLS, 1e-5f);
    assert_memory_equal(y, y0, n * sizeof *y);
    assert_memory_equal(r, r0, sizeof r);
    assert_bf16_of(yb, y0, n);

    /* exact ties: rows of +-1 with eps 0 have rstd 1, so y = +-w, and
     * w = 1 + 2^-8 (0x3f808000) rounds down to 0x3f80, 1 + 3 2^-8
     * (0x3f818000) up to 0x3f82 */
    uint32_t tie[2] = {0x3f808000u, 0x3f818000u};
    uint16_t want[2] = {0x3f80, 0x3f82};
    for (int c = 0; c < COLS; c++) {
        memcpy(&w[c], &tie[c % 2], sizeof w[c]);
        x[c] = 1.0f, x[COLS + c] = -1.0f;
    }
    k_rmsnorm_fwd_bf16(y, yb, r, x, w, 2, COLS, 0.0f);
    for (int c = 0; c < COLS; c++) {
        assert_int_equal(yb[c], want[c % 2]);
        assert_int_equal(yb[COLS + c], want[c % 2] | 0x8000);
    }
    free(x), free(w), free(y0), free(y), free(yb);
}

/* The norms' backward: dx accumulates as the plain kernel's, bit for bit,
 * and dxb is the accumulated dx rounded. */
static void test_norms_bwd_bf16(void **state)
{
    (void)state;
    size_t n = (size_t)ROWS * COLS;
    float *x = tu_fnew(n), *w = tu_fnew(COLS), *b = tu_fnew(COLS), *y = tu_fnew(n);
    float *dy = tu_fnew(n), *dx0 = tu_fnew(n), *dx1 = tu_fnew(n), *start = tu_fnew(n);
    float m[ROWS], r[ROWS];
    uint16_t *dxb = bnew(n);
    fill_normal(x, n, 2, 14);
    fill_normal(w, COLS, 1, 15);
    fill_normal(b, COLS, 0.5f, 16);
    fill_normal(dy, n, 1, 17);
    fill_normal(start, n, 1, 18);   /* the residual's gradient so far */
    for (int rms = 0; rms < 2; rms++) {
        memcpy(dx0, start, n * sizeof *dx0), memcpy(dx1, start, n * sizeof *dx1);
        memset(dxb, 0xff, n * sizeof *dxb);
        if (rms) {
            k_rmsnorm_fwd(y, r, x, w, ROWS, COLS, 1e-5f);
            k_rmsnorm_bwd(dx0, dy, x, r, w, ROWS, COLS);
            k_rmsnorm_bwd_bf16(dx1, dxb, dy, x, r, w, ROWS, COLS);
        } else {
            k_layernorm_fwd(y, m, r, x, w, b, ROWS, COLS, 1e-5f);
            k_layernorm_bwd(dx0, dy, x, m, r, w, ROWS, COLS);
            k_layernorm_bwd_bf16(dx1, dxb, dy, x, m, r, w, ROWS, COLS);
        }
        assert_memory_equal(dx1, dx0, n * sizeof *dx1);
        assert_bf16_of(dxb, dx0, n);
    }
    free(x), free(w), free(b), free(y), free(dy), free(dx0), free(dx1), free(start), free(dxb);
}

/* GELU forward with and without its fp32 output; backward with, in place
 * (dx aliasing dy) and without (dy then left as it is). */
static void test_gelu_bf16(void **state)
{
    (void)state;
    float *x = tu_fnew(NE), *dy = tu_fnew(NE), *y0 = tu_fnew(NE), *y = fnan(NE);
    float *dx0 = tu_fnew(NE), *dx = fnan(NE), *d = tu_fnew(NE);
    uint16_t *yb = bnew(NE), *yb2 = bnew(NE), *dxb = bnew(NE), *dxb2 = bnew(NE);
    fill_normal(x, NE, 3, 6);   /* both saturated tails and the middle */
    fill_normal(dy, NE, 1, 7);

    k_gelu_fwd(y0, x, NE);
    k_gelu_fwd_bf16(y, yb, x, NE);
    assert_memory_equal(y, y0, NE * sizeof *y);
    assert_bf16_of(yb, y0, NE);
    k_gelu_fwd_bf16(NULL, yb2, x, NE);
    assert_memory_equal(yb2, yb, NE * sizeof *yb);

    k_gelu_bwd(dx0, dy, x, NE);
    k_gelu_bwd_bf16(dx, dxb, dy, x, NE);
    assert_memory_equal(dx, dx0, NE * sizeof *dx);
    assert_bf16_of(dxb, dx0, NE);
    memcpy(d, dy, NE * sizeof *d);
    k_gelu_bwd_bf16(d, dxb2, d, x, NE);
    assert_memory_equal(d, dx0, NE * sizeof *d);
    assert_memory_equal(dxb2, dxb, NE * sizeof *dxb);
    memcpy(d, dy, NE * sizeof *d), memset(dxb2, 0xff, NE * sizeof *dxb2);
    k_gelu_bwd_bf16(NULL, dxb2, d, x, NE);
    assert_memory_equal(d, dy, NE * sizeof *d);
    assert_memory_equal(dxb2, dxb, NE * sizeof *dxb);

    free(x), free(dy), free(y0), free(y), free(dx0), free(dx), free(d);
    free(yb), free(yb2), free(dxb), free(dxb2);
}

/* SwiGLU forward with and without its fp32 output; backward with (dgate
 * aliasing dy, as the model calls it) and without. */
static void test_swiglu_bf16(void **state)
{
    (void)state;
    float *g = tu_fnew(NE), *u = tu_fnew(NE), *dy = tu_fnew(NE), *y0 = tu_fnew(NE), *y = fnan(NE);
    float *dg0 = tu_fnew(NE), *du0 = tu_fnew(NE), *dg = tu_fnew(NE), *du = fnan(NE);
    uint16_t *yb = bnew(NE), *yb2 = bnew(NE), *dgb = bnew(NE), *dub = bnew(NE);
    uint16_t *dgb2 = bnew(NE), *dub2 = bnew(NE);
    fill_normal(g, NE, 3, 8);
    fill_normal(u, NE, 1, 9);
    fill_normal(dy, NE, 1, 10);

    k_swiglu_fwd(y0, g, u, NE);
    k_swiglu_fwd_bf16(y, yb, g, u, NE);
    assert_memory_equal(y, y0, NE * sizeof *y);
    assert_bf16_of(yb, y0, NE);
    k_swiglu_fwd_bf16(NULL, yb2, g, u, NE);
    assert_memory_equal(yb2, yb, NE * sizeof *yb);

    k_swiglu_bwd(dg0, du0, dy, g, u, NE);
    memcpy(dg, dy, NE * sizeof *dg);
    k_swiglu_bwd_bf16(dg, du, dgb, dub, dg, g, u, NE);
    assert_memory_equal(dg, dg0, NE * sizeof *dg);
    assert_memory_equal(du, du0, NE * sizeof *du);
    assert_bf16_of(dgb, dg0, NE);
    assert_bf16_of(dub, du0, NE);
    memcpy(dg, dy, NE * sizeof *dg);
    k_swiglu_bwd_bf16(NULL, NULL, dgb2, dub2, dg, g, u, NE);
    assert_memory_equal(dg, dy, NE * sizeof *dg);
    assert_memory_equal(dgb2, dgb, NE * sizeof *dgb);
    assert_memory_equal(dub2, dub, NE * sizeof *dub);

    free(g), free(u), free(dy), free(y0), free(y), free(dg0), free(du0), free(dg), free(du);
    free(yb), free(yb2), free(dgb), free(dub), free(dgb2), free(dub2);
}

/* The variants write an fp32 output nobody reads into a 64-byte aligned
 * span of the stack instead of the caller's buffer: that gives the same
 * values only if the plain kernels' results do not depend on where the
 * output lies (no alignment peeling that moves elements between the vector
 * body and its tails).  Outputs at every float offset within 64 bytes,
 * against a 64-byte aligned one. */
/* The softmax row in bf16: k_attention_softmax_row's values rounded, zeros
 * from n to w, nothing written past w.  Widths with a vector body and a
 * tail; n = 1 (one 1.0), n < w and n = w. */
static void test_softmax_row_bf16(void **state)
{
    (void)state;
    static const int NW[][2] = {{1, 64}, {37, 64}, {64, 64}, {100, 128}, {77, 77}};
    for (size_t c = 0; c < sizeof NW / sizeof NW[0]; c++) {
        int n = NW[c][0], w = NW[c][1];
        float *x = tu_fnew((size_t)w), *ref = tu_fnew((size_t)w), *row = tu_fnew((size_t)w);
        uint16_t *p = bnew((size_t)w + 8);
        fill_normal(x, (size_t)w, 4, 20 + c);
        memcpy(ref, x, (size_t)w * sizeof *x), memcpy(row, x, (size_t)w * sizeof *x);
        k_attention_softmax_row(ref, n, w);
        k_attention_softmax_row_bf16(p, row, n, w);
        assert_bf16_of(p, ref, (size_t)n);
        for (int j = n; j < w + 8; j++)
            assert_int_equal(p[j], j < w ? 0 : 0xffff);
        free(x), free(ref), free(row), free(p);
    }
}

static void test_span_alignment(void **state)
{
    (void)state;
    enum { K = 5 };   /* outputs: gelu, its backward, swiglu, its dgate and dup */
    float *x = tu_fnew(NE), *u = tu_fnew(NE), *dy = tu_fnew(NE);
    /* aligned_alloc's size must be a multiple of the alignment (C11) */
    size_t nref = (K * NE + 15) / 16 * 16, nbuf = nref + 16;
    float *ref = aligned_alloc(64, nref * sizeof *ref);
    float *buf = aligned_alloc(64, nbuf * sizeof *buf);
    assert_non_null(ref), assert_non_null(buf);
    fill_normal(x, NE, 3, 11);
    fill_normal(u, NE, 1, 12);
    fill_normal(dy, NE, 1, 13);
    for (int off = 0; off < 16; off++) {
        float *o = off ? buf + off : ref;
        k_gelu_fwd(o, x, NE);
        k_gelu_bwd(o + NE, dy, x, NE);
        k_swiglu_fwd(o + 2 * NE, x, u, NE);
        k_swiglu_bwd(o + 3 * NE, o + 4 * NE, dy, x, u, NE);
        if (off)
            assert_memory_equal(o, ref, K * NE * sizeof *o);
    }
    free(x), free(u), free(dy), free(ref), free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layernorm_bf16),
        cmocka_unit_test(test_rmsnorm_bf16),
        cmocka_unit_test(test_norms_bwd_bf16),
        cmocka_unit_test(test_gelu_bf16),
        cmocka_unit_test(test_swiglu_bf16),
        cmocka_unit_test(test_softmax_row_bf16),
        cmocka_unit_test(test_span_alignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
