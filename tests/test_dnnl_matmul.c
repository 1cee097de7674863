/* test_dnnl_matmul.c - the oneDNN bf16 linear maps against fp32 references.
 *
 * Two references per product:
 *   - cblas_sgemm on the original fp32 data: the bf16 path must stay within
 *     BF16_TOL relative Frobenius error (rounding both inputs to bf16 gives
 *     about 2e-3; measured here 1.5e-3 to 2.4e-3, printed by the test);
 *   - a double-precision loop on the inputs rounded to bf16 by this file
 *     (round to nearest even): the product itself (fp32 accumulation) must
 *     match to EXACT_TOL, which catches a wrong layout or a lost bias that the
 *     loose bound could hide.
 * Shapes are rectangular (in != out) so a transposition cannot pass.  Also
 * one plain copy read both ways, the accumulating forward and a shared arena,
 * and a plain copy in the caller's memory (dm_linear_wrap_bf16): filled, it
 * holds the bytes dm_linear_pack makes and gives its results bit for bit.
 * fp32 handles (dm_linear_wrap_f32) against a double-precision loop on the
 * same fp32 inputs within the fp32 kernels' bound (F32_TOL, test_kernels'
 * FWD_TOL), forward and backward, odd shapes too; they read the weights in
 * place (a change of the caller's array shows in the next product), and a
 * row's result does not depend on how many rows the product has nor on the
 * thread count (W workers x B rows then compute what 1 x W*B computes).
 * Built without oneDNN, every call must fail with "built without oneDNN". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "dnnl_matmul.h"
#include "rng.h"

#define BF16_TOL 1e-2   /* vs fp32 inputs */
#define EXACT_TOL 1e-5  /* vs bf16-rounded inputs, double accumulation */
#define F32_TOL 1e-5    /* fp32 products vs double: test_kernels.c's FWD_TOL */

/* Does /proc/cpuinfo list this flag (as a whole word)?  -1 when unreadable. */
static int cpuinfo_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char line[8192];
    int found = 0;
    size_t n = strlen(flag);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        for (char *p = strstr(line, flag); p; p = strstr(p + 1, flag))
            if ((p == line || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || p[n] == 0))
                found = 1;
    }
    fclose(f);
    return found;
}

/* cpu_avx512 agrees with /proc/cpuinfo's avx512f, and PSLORA_CPU_FEATURES
 * replaces it: avx512f, or a bf16 feature (which implies it), gives 1. */
static void test_avx512_detection(void **state)
{
    (void)state;
    int a;
    pl_err e;
    unsetenv("PSLORA_CPU_FEATURES");
    assert_int_equal(cpu_avx512(&a, &e), 0);
    if (cpuinfo_has("avx512f") >= 0)
        assert_int_equal(a, cpuinfo_has("avx512f"));
    printf("# avx512f: %d; OpenBLAS core %s (AVX-512 kernels: %d)\n", a, cpu_blas_core(),
           cpu_blas_core_avx512());
    static const struct { const char *env; int want; } o[] = {
        {"none", 0}, {"", 0}, {"avx512f", 1}, {"avx512_bf16", 1}, {"amx_bf16", 1},
        {"none,avx512f", 1},
    };
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) {
        setenv("PSLORA_CPU_FEATURES", o[i].env, 1);
        assert_int_equal(cpu_avx512(&a, &e), 0);
        assert_int_equal(a, o[i].want);
    }
    cpu_bf16 k;   /* avx512f alone is no bf16 dot product */
    setenv("PSLORA_CPU_FEATURES", "avx512f", 1);
    assert_int_equal(cpu_bf16_dot(&k, &e), 0);
    assert_int_equal(k, CPU_BF16_NONE);
    setenv("PSLORA_CPU_FEATURES", "avx512", 1);
    assert_int_equal(cpu_avx512(&a, &e), -1);
    assert_non_null(strstr(e.msg, "unknown feature 'avx512'"));
    unsetenv("PSLORA_CPU_FEATURES");
}

/* cpu_bf16_dot agrees with the flags the kernel lists in /proc/cpuinfo (a
 * wrong CPUID bit or XCR0 mask shows here on a CPU with the feature, and on
 * one without it), and PSLORA_CPU_FEATURES replaces it. */
static void test_bf16_detection(void **state)
{
    (void)state;
    cpu_bf16 k, k2;
    pl_err e;
    unsetenv("PSLORA_CPU_FEATURES");
    assert_int_equal(cpu_bf16_dot(&k, &e), 0);
    assert_int_equal(cpu_bf16_dot(&k2, &e), 0);
    assert_int_equal(k, k2);   /* asking twice is harmless */
    int amx = cpuinfo_has("amx_tile") == 1 && cpuinfo_has("amx_bf16") == 1;
    int avx = cpuinfo_has("avx512_bf16") == 1;
    if (!amx)
        assert_int_not_equal(k, CPU_BF16_AMX);
    if (!amx && avx)
        assert_int_equal(k, CPU_BF16_AVX512);
    if (!amx && !avx)
        assert_int_equal(k, CPU_BF16_NONE);
    if (k == CPU_BF16_AVX512)
        assert_true(avx);
    printf("# native bf16 dot product: %s\n", cpu_bf16_name(k));

    static const struct { const char *env; cpu_bf16 want; } o[] = {
        {"none", CPU_BF16_NONE},         {"", CPU_BF16_NONE},
        {"avx512_bf16", CPU_BF16_AVX512}, {"amx_bf16", CPU_BF16_AMX},
        {"avx512_bf16,amx_bf16", CPU_BF16_AMX}, {"amx_bf16,avx512_bf16", CPU_BF16_AMX},
    };
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) {
        setenv("PSLORA_CPU_FEATURES", o[i].env, 1);
        assert_int_equal(cpu_bf16_dot(&k, &e), 0);
        assert_int_equal(k, o[i].want);
    }
    setenv("PSLORA_CPU_FEATURES", "avx512_bf16,sse9", 1);
    assert_int_equal(cpu_bf16_dot(&k, &e), -1);
    assert_string_equal(e.msg, "PSLORA_CPU_FEATURES: unknown feature 'sse9' (expected a "
                               "comma-separated list of amx_bf16, avx512_bf16, avx512f or none)");
    assert_string_equal(cpu_bf16_name(CPU_BF16_AVX512), "avx512_bf16");
    assert_string_equal(cpu_bf16_name(CPU_BF16_AMX), "amx_bf16");
    assert_string_equal(cpu_bf16_name(CPU_BF16_NONE), "none");
    unsetenv("PSLORA_CPU_FEATURES");
}

#ifdef PSLORA_HAVE_DNNL

static float *frand(size_t n, float sd, uint64_t seed)
{
    float *a = malloc(n * sizeof *a);
    rng_state r;
    uint64_t w[2] = {0x646e6e6cULL, seed};
    rng_seed(&r, w, 2);
    rng_fill_normal(&r, a, n, sd);
    return a;
}

/* Round to nearest even, written independently of the module (via the
 * spacing of bf16 around f, in double). */
static float round_bf16(float f)
{
    if (f == 0.0f || !isfinite(f))
        return f;
    int ex;
    frexp(f, &ex);                        /* |f| in [2^(ex-1), 2^ex) */
    double ulp = ldexp(1.0, ex - 1 - 7);  /* 8 significant bits */
    return (float)(nearbyint((double)f / ulp) * ulp);
}

static uint16_t bf16_bits(float f)   /* f must already be a bf16 value */
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

static float *rounded(const float *a, size_t n)
{
    float *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = round_bf16(a[i]);
    return r;
}

/* Element (o, i) of W for either layout. */
static double w_at(const float *w, dm_layout lay, int in, int out, int o, int i)
{
    return lay == DM_OUT_IN ? w[(size_t)o * in + i] : w[(size_t)i * out + o];
}

/* y[N,out] = x W^T (+ b) in double. */
static void ref_fwd(double *y, const float *x, const float *w, const float *b, dm_layout lay,
                    int N, int in, int out)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++)
                s += (double)x[(size_t)n * in + i] * w_at(w, lay, in, out, o, i);
            y[(size_t)n * out + o] = s;
        }
}

/* dx[N,in] = dy W (+ dx0) in double. */
static void ref_bwd(double *dx, const float *dy, const float *w, const float *dx0, dm_layout lay,
                    int N, int in, int out)
{
    for (int n = 0; n < N; n++)
        for (int i = 0; i < in; i++) {
            double s = dx0 ? dx0[(size_t)n * in + i] : 0.0;
            for (int o = 0; o < out; o++)
                s += (double)dy[(size_t)n * out + o] * w_at(w, lay, in, out, o, i);
            dx[(size_t)n * in + i] = s;
        }
}

/* ||got - ref||_F / ||ref||_F */
static double rel_fro(const float *got, const double *ref, size_t n)
{
    double d = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        d += (got[i] - ref[i]) * (got[i] - ref[i]);
        r += ref[i] * ref[i];
    }
    return sqrt(d / r);
}

static double rel_fro_f(const float *got, const float *ref, size_t n)
{
    double *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = ref[i];
    double e = rel_fro(got, r, n);
    free(r);
    return e;
}

enum { IN = 320, OUT = 264 };
static const int ROWS[] = {1, 37, 300};

/* The fp32 reference of the forward product by cblas_sgemm (+ bias). */
static void sgemm_fwd(float *y, const float *x, const float *w, const float *b, dm_layout lay,
                      int N)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, lay == DM_OUT_IN ? CblasTrans : CblasNoTrans, N, OUT,
                IN, 1.0f, x, IN, w, lay == DM_OUT_IN ? IN : OUT, 0.0f, y, OUT);
    for (int n = 0; b && n < N; n++)
        for (int o = 0; o < OUT; o++)
            y[(size_t)n * OUT + o] += b[o];
}

/* Forward, both layouts, with and without bias, several row counts. */
static void test_forward(void **state)
{
    (void)state;
    pl_err e;
    float *w = frand((size_t)IN * OUT, 0.05f, 1), *wr = rounded(w, (size_t)IN * OUT);
    float *b = frand(OUT, 1.0f, 2);
    double worst = 0;
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        dm_linear *h = dm_linear_pack(w, DM_F32, (dm_layout)lay, IN, OUT, 0, &e);
        assert_non_null(h);
        for (size_t k = 0; k < sizeof ROWS / sizeof *ROWS; k++) {
            int N = ROWS[k];
            float *x = frand((size_t)N * IN, 1.0f, 10 + k), *xr = rounded(x, (size_t)N * IN);
            float *y = malloc((size_t)N * OUT * sizeof *y);
            float *ys = malloc((size_t)N * OUT * sizeof *ys);
            double *yd = malloc((size_t)N * OUT * sizeof *yd);
            for (int with_b = 0; with_b < 2; with_b++) {
                const float *bias = with_b ? b : NULL;
                assert_int_equal(dm_linear_fwd(h, x, y, bias, N, &e), 0);
                sgemm_fwd(ys, x, w, bias, (dm_layout)lay, N);
                double loose = rel_fro_f(y, ys, (size_t)N * OUT);
                ref_fwd(yd, xr, wr, bias, (dm_layout)lay, N, IN, OUT);
                double exact = rel_fro(y, yd, (size_t)N * OUT);
                assert_true(loose < BF16_TOL);
                assert_true(exact < EXACT_TOL);
                if (N > 1 && loose > worst)
                    worst = loose;
            }
            free(x), free(xr), free(y), free(ys), free(yd);
        }
        assert_non_null(dm_impl_name(h, 0));
        print_message("layout %s: kernel %s\n", lay == DM_OUT_IN ? "[out,in]" : "[in,out]",
                      dm_impl_name(h, 0));
        dm_free(h);
    }
    print_message("forward: worst relative Frobenius error vs fp32 sgemm %.2e\n", worst);
    free(w), free(wr), free(b);
}

/* dx = dy W (overwrite and accumulate), both layouts. */
static void test_backward(void **state)
{
    (void)state;
    pl_err e;
    float *w = frand((size_t)IN * OUT, 0.05f, 3), *wr = rounded(w, (size_t)IN * OUT);
    int N = 37;
    float *dy = frand((size_t)N * OUT, 1.0f, 4), *dyr = rounded(dy, (size_t)N * OUT);
    float *dx0 = frand((size_t)N * IN, 0.3f, 5);
    float *dx = malloc((size_t)N * IN * sizeof *dx), *ds = malloc((size_t)N * IN * sizeof *ds);
    double *dd = malloc((size_t)N * IN * sizeof *dd);
    double worst = 0;
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        dm_linear *h = dm_linear_pack(w, DM_F32, (dm_layout)lay, IN, OUT, 1, &e);
        assert_non_null(h);
        for (int acc = 0; acc < 2; acc++) {
            memcpy(dx, dx0, (size_t)N * IN * sizeof *dx);
            assert_int_equal(dm_linear_bwd_x(h, dy, dx, N, acc, &e), 0);
            memcpy(ds, dx0, (size_t)N * IN * sizeof *ds);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, lay == DM_OUT_IN ? CblasNoTrans : CblasTrans,
                        N, IN, OUT, 1.0f, dy, OUT, w, lay == DM_OUT_IN ? IN : OUT,
                        acc ? 1.0f : 0.0f, ds, IN);
            double loose = rel_fro_f(dx, ds, (size_t)N * IN);
            ref_bwd(dd, dyr, wr, acc ? dx0 : NULL, (dm_layout)lay, N, IN, OUT);
            assert_true(loose < BF16_TOL);
            assert_true(rel_fro(dx, dd, (size_t)N * IN) < EXACT_TOL);
            if (loose > worst)
                worst = loose;
        }
        /* the forward of a handle packed for both still works */
        float *y = malloc((size_t)N * OUT * sizeof *y);
        double *yd = malloc((size_t)N * OUT * sizeof *yd);
        float *x = rounded(dx0, (size_t)N * IN);
        assert_int_equal(dm_linear_fwd(h, x, y, NULL, N, &e), 0);
        ref_fwd(yd, x, wr, NULL, (dm_layout)lay, N, IN, OUT);
        assert_true(rel_fro(y, yd, (size_t)N * OUT) < EXACT_TOL);
        free(y), free(yd), free(x);
        dm_free(h);
    }
    print_message("backward: worst relative Frobenius error vs fp32 sgemm %.2e\n", worst);
    free(w), free(wr), free(dy), free(dyr), free(dx0), free(dx), free(ds), free(dd);
}

/* Weights given as bf16 bits are used exactly. */
static void test_bf16_source(void **state)
{
    (void)state;
    pl_err e;
    size_t nw = (size_t)IN * OUT;
    float *w = frand(nw, 0.05f, 6), *wr = rounded(w, nw);
    uint16_t *wb = malloc(nw * sizeof *wb);
    for (size_t i = 0; i < nw; i++)
        wb[i] = bf16_bits(wr[i]);
    int N = 64;
    float *x = frand((size_t)N * IN, 1.0f, 7), *xr = rounded(x, (size_t)N * IN);
    float *y = malloc((size_t)N * OUT * sizeof *y);
    double *yd = malloc((size_t)N * OUT * sizeof *yd);
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        dm_linear *h = dm_linear_pack(wb, DM_BF16, (dm_layout)lay, IN, OUT, 0, &e);
        assert_non_null(h);
        assert_int_equal(dm_linear_fwd(h, x, y, NULL, N, &e), 0);
        ref_fwd(yd, xr, wr, NULL, (dm_layout)lay, N, IN, OUT);
        assert_true(rel_fro(y, yd, (size_t)N * OUT) < EXACT_TOL);
        dm_free(h);
    }
    free(w), free(wr), free(wb), free(x), free(xr), free(y), free(yd);
}

/* One plain bf16 copy read both ways (DM_FWD_BWD_ONE), forward accumulating
 * (y += x W^T + b), and two handles sharing one arena: each exact against
 * the double-precision product of the bf16-rounded inputs. */
static void test_plain_acc_arena(void **state)
{
    (void)state;
    pl_err e;
    int N = 37;
    float *w = frand((size_t)IN * OUT, 0.05f, 11), *wr = rounded(w, (size_t)IN * OUT);
    float *b = frand(OUT, 1.0f, 12), *y0 = frand((size_t)N * OUT, 0.5f, 13);
    float *x = frand((size_t)N * IN, 1.0f, 14), *xr = rounded(x, (size_t)N * IN);
    float *dy = frand((size_t)N * OUT, 1.0f, 15), *dyr = rounded(dy, (size_t)N * OUT);
    float *y = malloc((size_t)N * OUT * sizeof *y), *dx = malloc((size_t)N * IN * sizeof *dx);
    double *yd = malloc((size_t)N * OUT * sizeof *yd), *dd = malloc((size_t)N * IN * sizeof *dd);
    dm_arena *arena = dm_arena_new();
    assert_non_null(arena);
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        dm_linear *h = dm_linear_pack(w, DM_F32, (dm_layout)lay, IN, OUT, DM_FWD_BWD_ONE, &e);
        assert_non_null(h);
        assert_int_equal(dm_weight_bytes(h), (size_t)IN * OUT * 2);   /* one plain copy */
        dm_linear_use_arena(h, arena);
        assert_int_equal(dm_linear_fwd(h, x, y, b, N, &e), 0);
        ref_fwd(yd, xr, wr, b, (dm_layout)lay, N, IN, OUT);
        assert_true(rel_fro(y, yd, (size_t)N * OUT) < EXACT_TOL);
        memcpy(y, y0, (size_t)N * OUT * sizeof *y);
        assert_int_equal(dm_linear_fwd_acc(h, x, y, b, N, &e), 0);
        for (size_t i = 0; i < (size_t)N * OUT; i++)
            yd[i] += y0[i];
        assert_true(rel_fro(y, yd, (size_t)N * OUT) < EXACT_TOL);
        assert_int_equal(dm_linear_bwd_x(h, dy, dx, N, 0, &e), 0);
        ref_bwd(dd, dyr, wr, NULL, (dm_layout)lay, N, IN, OUT);
        assert_true(rel_fro(dx, dd, (size_t)N * IN) < EXACT_TOL);
        dm_free(h);
    }
    assert_true(dm_arena_bytes(arena) >= (size_t)N * IN * 2);   /* the activations lived there */
    dm_arena_free(arena);
    free(w), free(wr), free(b), free(y0), free(x), free(xr), free(dy), free(dyr);
    free(y), free(dx), free(yd), free(dd);
}

/* An input rounded once (dm_to_bf16) and handed to several maps: each
 * dm_linear_fwd_bf16 gives dm_linear_fwd's y bit for bit (with bias, and
 * accumulating), and dm_to_bf16 rounds as round_bf16 does. */
static void test_prerounded_input(void **state)
{
    (void)state;
    pl_err e;
    int N = 37, OUT2 = 24;
    float *w = frand((size_t)IN * OUT, 0.05f, 21), *w2 = frand((size_t)IN * OUT2, 0.05f, 22);
    float *b = frand(OUT, 1.0f, 23), *x = frand((size_t)N * IN, 1.0f, 24);
    float *y0 = frand((size_t)N * OUT, 0.5f, 25);
    uint16_t *xb = malloc((size_t)N * IN * sizeof *xb);
    float *ya = malloc((size_t)N * OUT * sizeof *ya), *yb = malloc((size_t)N * OUT * sizeof *yb);
    dm_to_bf16(xb, x, N, IN);
    for (size_t i = 0; i < (size_t)N * IN; i++)
        assert_int_equal(xb[i], bf16_bits(round_bf16(x[i])));
    dm_arena *arena = dm_arena_new();
    dm_linear *h = dm_linear_pack(w, DM_F32, DM_OUT_IN, IN, OUT, DM_FWD_BWD_ONE, &e);
    dm_linear *h2 = dm_linear_pack(w2, DM_F32, DM_IN_OUT, IN, OUT2, DM_FWD_BWD_ONE, &e);
    assert_non_null(h), assert_non_null(h2);
    dm_linear_use_arena(h, arena), dm_linear_use_arena(h2, arena);
    for (int acc = 0; acc <= 1; acc++) {
        memcpy(ya, y0, (size_t)N * OUT * sizeof *ya), memcpy(yb, y0, (size_t)N * OUT * sizeof *yb);
        int rc = acc ? dm_linear_fwd_acc(h, x, ya, b, N, &e) : dm_linear_fwd(h, x, ya, b, N, &e);
        assert_int_equal(rc, 0);
        assert_int_equal(dm_linear_fwd_bf16(h, xb, yb, b, N, acc, &e), 0);
        assert_memory_equal(ya, yb, (size_t)N * OUT * sizeof *ya);
        /* a second map reads the same xb; then the first again, no bias */
        assert_int_equal(dm_linear_fwd(h2, x, ya, NULL, N, &e), 0);
        assert_int_equal(dm_linear_fwd_bf16(h2, xb, yb, NULL, N, 0, &e), 0);
        assert_memory_equal(ya, yb, (size_t)N * OUT2 * sizeof *ya);
        assert_int_equal(dm_linear_fwd(h, x, ya, NULL, N, &e), 0);
        assert_int_equal(dm_linear_fwd_bf16(h, xb, yb, NULL, N, 0, &e), 0);
        assert_memory_equal(ya, yb, (size_t)N * OUT * sizeof *ya);
    }
    assert_int_equal(dm_linear_fwd_bf16(h, NULL, yb, NULL, N, 0, &e), -1);
    dm_free(h), dm_free(h2), dm_arena_free(arena);
    free(w), free(w2), free(b), free(x), free(y0), free(xb), free(ya), free(yb);
}

/* The backward on a dy rounded beforehand (dm_linear_bwd_x_bf16, the bf16
 * head's): the same bits as dm_linear_bwd_x on the fp32 dy, overwriting and
 * accumulating, from one plain copy and from two packed ones; refused for
 * fp32 weights and for weights packed forward only. */
static void test_prerounded_dy(void **state)
{
    (void)state;
    pl_err e;
    int N = 37;
    float *w = frand((size_t)IN * OUT, 0.05f, 31), *dy = frand((size_t)N * OUT, 1.0f, 32);
    float *dx0 = frand((size_t)N * IN, 0.5f, 33);
    float *da = malloc((size_t)N * IN * sizeof *da), *db = malloc((size_t)N * IN * sizeof *db);
    uint16_t *dyb = malloc((size_t)N * OUT * sizeof *dyb);
    dm_to_bf16(dyb, dy, N, OUT);
    for (int how = DM_FWD_BWD; how <= DM_FWD_BWD_ONE; how++) {
        dm_linear *h = dm_linear_pack(w, DM_F32, DM_OUT_IN, IN, OUT, how, &e);
        assert_non_null(h);
        for (int acc = 0; acc <= 1; acc++) {
            memcpy(da, dx0, (size_t)N * IN * sizeof *da);
            memcpy(db, dx0, (size_t)N * IN * sizeof *db);
            assert_int_equal(dm_linear_bwd_x(h, dy, da, N, acc, &e), 0);
            assert_int_equal(dm_linear_bwd_x_bf16(h, dyb, db, N, acc, &e), 0);
            assert_memory_equal(da, db, (size_t)N * IN * sizeof *da);
        }
        dm_free(h);
    }
    dm_linear *fo = dm_linear_pack(w, DM_F32, DM_OUT_IN, IN, OUT, DM_FWD_ONLY, &e);
    dm_linear *f32 = dm_linear_wrap_f32(w, DM_OUT_IN, IN, OUT, &e);
    assert_non_null(fo), assert_non_null(f32);
    assert_int_equal(dm_linear_bwd_x_bf16(fo, dyb, db, N, 0, &e), -1);
    assert_non_null(strstr(e.msg, "with_bwd"));
    assert_int_equal(dm_linear_bwd_x_bf16(f32, dyb, db, N, 0, &e), -1);
    assert_non_null(strstr(e.msg, "fp32 weights"));
    assert_int_equal(dm_linear_fwd_bf16(f32, dyb, db, NULL, 1, 0, &e), -1);
    assert_non_null(strstr(e.msg, "fp32 weights"));
    dm_free(fo), dm_free(f32);
    free(w), free(dy), free(dx0), free(da), free(db), free(dyb);
}

/* The forward and backward of N rows through each of three handles over
 * the same weights (in -> out) give the same bits: hs[1] and hs[2] those
 * of hs[0].  y, dx: three scratch outputs each. */
static void same_three(dm_linear *const *hs, const float *x, const float *dy, float **y,
                       float **dx, int N, int in, int out)
{
    pl_err e;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(dm_linear_fwd(hs[k], x, y[k], NULL, N, &e), 0);
        assert_int_equal(dm_linear_bwd_x(hs[k], dy, dx[k], N, 0, &e), 0);
    }
    for (int k = 1; k < 3; k++) {
        assert_memory_equal(y[k], y[0], (size_t)N * out * sizeof(float));
        assert_memory_equal(dx[k], dx[0], (size_t)N * in * sizeof(float));
    }
}

/* A plain copy in caller memory: made before it is filled (a shared copy
 * another process writes), then filled; the same bf16 bytes and results as
 * dm_linear_pack's own copy, and a second wrap of the memory sees them. */
static void test_wrap(void **state)
{
    (void)state;
    pl_err e;
    int N = 19;
    size_t bytes = dm_plain_bytes(IN, OUT);
    assert_int_equal(bytes, (size_t)IN * OUT * 2);
    float *w = frand((size_t)IN * OUT, 0.05f, 21), *x = frand((size_t)N * IN, 1.0f, 22);
    float *dy = frand((size_t)N * OUT, 1.0f, 23);
    float *y[3], *dx[3];
    for (int k = 0; k < 3; k++) {
        y[k] = malloc((size_t)N * OUT * sizeof(float));
        dx[k] = malloc((size_t)N * IN * sizeof(float));
    }
    uint16_t *mem = malloc(bytes);
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        memset(mem, 0xff, bytes);
        dm_linear *own = dm_linear_pack(w, DM_F32, (dm_layout)lay, IN, OUT, DM_FWD_BWD_ONE, &e);
        dm_linear *filler = dm_linear_wrap_bf16(mem, (dm_layout)lay, IN, OUT, &e);
        dm_linear *reader = dm_linear_wrap_bf16(mem, (dm_layout)lay, IN, OUT, &e);
        assert_non_null(own), assert_non_null(filler), assert_non_null(reader);
        assert_int_equal(dm_weight_bytes(reader), bytes);
        assert_int_equal(dm_linear_fill(filler, w, DM_F32, &e), 0);
        dm_linear *hs[3] = {own, filler, reader};
        same_three(hs, x, dy, y, dx, N, IN, OUT);
        for (size_t i = 0; i < (size_t)IN * OUT; i++) {   /* round to nearest even, as laid */
            uint32_t u;
            memcpy(&u, &w[i], 4);
            assert_int_equal(mem[i], (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16));
        }
        dm_free(own), dm_free(filler), dm_free(reader);   /* mem is ours to free */
    }
    assert_null(dm_linear_wrap_bf16(NULL, DM_OUT_IN, IN, OUT, &e));
    assert_non_null(strstr(e.msg, "no memory"));
    dm_linear *packed = dm_linear_pack(w, DM_F32, DM_OUT_IN, IN, OUT, DM_FWD_ONLY, &e);
    assert_int_equal(dm_linear_fill(packed, w, DM_F32, &e), -1);
    assert_non_null(strstr(e.msg, "DM_FWD_BWD_ONE"));
    dm_free(packed);
    for (int k = 0; k < 3; k++)
        free(y[k]), free(dx[k]);
    free(w), free(x), free(dy), free(mem);
}

/* Two packed copies in caller memory (dm_linear_wrap_packed), over bytes
 * that held garbage: made before they are filled, then filled; a second
 * wrap of the memory sees them, and both give the results of
 * dm_linear_pack's own DM_FWD_BWD copies bit for bit, forward and backward,
 * on a shape whose rows and columns oneDNN pads (37 -> 53) and on IN x OUT.
 * A packed handle of its own is not filled, a NULL memory is refused. */
static void test_wrap_packed(void **state)
{
    (void)state;
    pl_err e;
    const int shapes[2][2] = {{37, 53}, {IN, OUT}};
    int N = 19;
    for (int sh = 0; sh < 2; sh++) {
        int in = shapes[sh][0], out = shapes[sh][1];
        size_t bytes = dm_packed_bytes(in, out, &e);
        assert_true(bytes >= (size_t)in * out * 4);   /* two copies of in*out bf16 at least */
        float *w = frand((size_t)in * out, 0.05f, 31), *x = frand((size_t)N * in, 1.0f, 32);
        float *dy = frand((size_t)N * out, 1.0f, 33), *y[3], *dx[3];
        for (int k = 0; k < 3; k++)
            y[k] = malloc((size_t)N * out * 4), dx[k] = malloc((size_t)N * in * 4);
        unsigned char *mem = aligned_alloc(64, (bytes + 63) / 64 * 64);
        for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
            memset(mem, 0xff, bytes);   /* NaN bf16 everywhere, padding included */
            dm_linear *own = dm_linear_pack(w, DM_F32, (dm_layout)lay, in, out, DM_FWD_BWD, &e);
            dm_linear *filler = dm_linear_wrap_packed(mem, (dm_layout)lay, in, out, &e);
            dm_linear *reader = dm_linear_wrap_packed(mem, (dm_layout)lay, in, out, &e);
            assert_non_null(own), assert_non_null(filler), assert_non_null(reader);
            assert_int_equal(dm_weight_bytes(reader), dm_weight_bytes(own));
            assert_int_equal(dm_linear_fill(filler, w, DM_F32, &e), 0);
            dm_linear *hs[3] = {own, filler, reader};
            same_three(hs, x, dy, y, dx, N, in, out);
            assert_int_equal(dm_linear_fill(own, w, DM_F32, &e), -1);   /* not wrapped */
            assert_non_null(strstr(e.msg, "wrapped packed"));
            dm_free(own), dm_free(filler), dm_free(reader);   /* mem is ours to free */
        }
        for (int k = 0; k < 3; k++)
            free(y[k]), free(dx[k]);
        free(w), free(x), free(dy), free(mem);
    }
    assert_null(dm_linear_wrap_packed(NULL, DM_OUT_IN, IN, OUT, &e));
    assert_non_null(strstr(e.msg, "no memory"));
}

/* ---- fp32 handles ---- */

/* Shapes (in, out): the bf16 tests' rectangle, odd small ones, and a GPT-2
 * width (c_attn's 768 -> 2304 cut to 768 -> 1000 to keep the double loop short). */
static const int F32_SHAPES[][2] = {{IN, OUT}, {37, 53}, {53, 1}, {1, 29}, {768, 1000}};
static const int F32_ROWS[] = {1, 7, 130};

/* Forward (with and without bias, overwriting and accumulating) and
 * backward (overwriting and accumulating) of one fp32 handle over w, against
 * the double loops on the same fp32 data.  Returns the worst error. */
static double f32_check(dm_linear *h, const float *w, dm_layout lay, int in, int out, int N,
                        uint64_t seed)
{
    pl_err e;
    float *x = frand((size_t)N * in, 1.0f, seed), *dy = frand((size_t)N * out, 1.0f, seed + 1);
    float *b = frand(out, 1.0f, seed + 2), *y0 = frand((size_t)N * out, 0.5f, seed + 3);
    float *dx0 = frand((size_t)N * in, 0.5f, seed + 4);
    float *y = malloc((size_t)N * out * sizeof *y), *dx = malloc((size_t)N * in * sizeof *dx);
    double *yd = malloc((size_t)N * out * sizeof *yd), *dd = malloc((size_t)N * in * sizeof *dd);
    double worst = 0;
    for (int v = 0; v < 4; v++) {   /* forward: bias or not x overwrite or accumulate */
        const float *bias = v & 1 ? b : NULL;
        int acc = v >> 1;
        memcpy(y, y0, (size_t)N * out * sizeof *y);
        int rc = acc ? dm_linear_fwd_acc(h, x, y, bias, N, &e) : dm_linear_fwd(h, x, y, bias, N, &e);
        assert_int_equal(rc, 0);
        ref_fwd(yd, x, w, bias, lay, N, in, out);
        for (size_t i = 0; acc && i < (size_t)N * out; i++)
            yd[i] += y0[i];
        double err = rel_fro(y, yd, (size_t)N * out);
        assert_true(err < F32_TOL);
        worst = err > worst ? err : worst;
    }
    for (int acc = 0; acc < 2; acc++) {
        memcpy(dx, dx0, (size_t)N * in * sizeof *dx);
        assert_int_equal(dm_linear_bwd_x(h, dy, dx, N, acc, &e), 0);
        ref_bwd(dd, dy, w, acc ? dx0 : NULL, lay, N, in, out);
        double err = rel_fro(dx, dd, (size_t)N * in);
        assert_true(err < F32_TOL);
        worst = err > worst ? err : worst;
    }
    free(x), free(dy), free(b), free(y0), free(dx0), free(y), free(dx), free(yd), free(dd);
    return worst;
}

/* fp32 products, both layouts, every shape and row count, against double. */
static void test_f32_products(void **state)
{
    (void)state;
    pl_err e;
    double worst = 0;
    for (size_t s = 0; s < sizeof F32_SHAPES / sizeof *F32_SHAPES; s++) {
        int in = F32_SHAPES[s][0], out = F32_SHAPES[s][1];
        float *w = frand((size_t)in * out, 0.05f, 40 + s);
        for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
            dm_linear *h = dm_linear_wrap_f32(w, (dm_layout)lay, in, out, &e);
            assert_non_null(h);
            assert_int_equal(dm_weight_bytes(h), (size_t)in * out * sizeof(float));
            for (size_t k = 0; k < sizeof F32_ROWS / sizeof *F32_ROWS; k++) {
                double err = f32_check(h, w, (dm_layout)lay, in, out, F32_ROWS[k], 50 + k);
                worst = err > worst ? err : worst;
            }
            if (in == 768)
                print_message("fp32 [%d -> %d] %s: kernels %s / %s\n", in, out,
                              lay == DM_OUT_IN ? "[out,in]" : "[in,out]", dm_impl_name(h, 0),
                              dm_impl_name(h, 1));
            dm_free(h);
        }
        free(w);
    }
    print_message("fp32: worst relative Frobenius error vs double %.2e\n", worst);
}

/* The handle reads the caller's weights at each product (no copy): doubling
 * them in place doubles the result exactly. */
static void test_f32_in_place(void **state)
{
    (void)state;
    pl_err e;
    int in = 96, out = 72, N = 5;
    float *w = frand((size_t)in * out, 0.05f, 60), *x = frand((size_t)N * in, 1.0f, 61);
    float y1[5 * 72], y2[5 * 72];
    dm_linear *h = dm_linear_wrap_f32(w, DM_IN_OUT, in, out, &e);
    assert_non_null(h);
    assert_int_equal(dm_linear_fwd(h, x, y1, NULL, N, &e), 0);
    for (int i = 0; i < in * out; i++)
        w[i] *= 2.0f;
    assert_int_equal(dm_linear_fwd(h, x, y2, NULL, N, &e), 0);
    for (int i = 0; i < N * out; i++)
        assert_true(y2[i] == 2.0f * y1[i]);
    assert_int_equal(dm_linear_fill(h, w, DM_F32, &e), -1);   /* nothing to fill */
    assert_null(dm_linear_wrap_f32(NULL, DM_IN_OUT, in, out, &e));
    assert_non_null(strstr(e.msg, "no weights"));
    dm_free(h);
    free(w), free(x);
}

/* Rows [r0, r0 + n) of a product of N rows, through handle h: forward into
 * y [n, out] and backward into dx [n, in]. */
static void f32_rows(dm_linear *h, const float *x, const float *dy, float *y, float *dx, int in,
                     int out, int r0, int n)
{
    pl_err e;
    assert_int_equal(dm_linear_fwd(h, x + (size_t)r0 * in, y, NULL, n, &e), 0);
    assert_int_equal(dm_linear_bwd_x(h, dy + (size_t)r0 * out, dx, n, 0, &e), 0);
}

/* A row's result is the same bytes whatever the product's row count (a
 * whole batch of 512 rows, or its halves of 256 as two workers compute
 * them, or 37 rows) and the thread count: W workers x B then compute what
 * one worker x W*B computes, and the thread count changes nothing. */
static void test_f32_rows_independent(void **state)
{
    (void)state;
    pl_err e;
    int in = 768, out = 2304, N = 512;
    float *w = frand((size_t)in * out, 0.05f, 70);
    float *x = frand((size_t)N * in, 1.0f, 71), *dy = frand((size_t)N * out, 1.0f, 72);
    size_t ny = (size_t)N * out, nx = (size_t)N * in;
    float *y = malloc(ny * sizeof *y), *dx = malloc(nx * sizeof *dx);
    float *yp = malloc(ny * sizeof *yp), *dxp = malloc(nx * sizeof *dxp);
    int threads = omp_get_max_threads();
    for (int lay = DM_OUT_IN; lay <= DM_IN_OUT; lay++) {
        dm_linear *h = dm_linear_wrap_f32(w, (dm_layout)lay, in, out, &e);
        assert_non_null(h);
        f32_rows(h, x, dy, y, dx, in, out, 0, N);
        f32_rows(h, x, dy, yp, dxp, in, out, 0, N / 2);
        f32_rows(h, x, dy, yp + ny / 2, dxp + nx / 2, in, out, N / 2, N / 2);
        assert_memory_equal(y, yp, ny * sizeof *y);
        assert_memory_equal(dx, dxp, nx * sizeof *dx);
        f32_rows(h, x, dy, yp, dxp, in, out, 100, 37);
        assert_memory_equal(y + (size_t)100 * out, yp, (size_t)37 * out * sizeof *y);
        assert_memory_equal(dx + (size_t)100 * in, dxp, (size_t)37 * in * sizeof *dx);
        dm_free(h);
        omp_set_num_threads(threads == 1 ? 2 : 1);   /* a handle of another thread count */
        h = dm_linear_wrap_f32(w, (dm_layout)lay, in, out, &e);
        assert_non_null(h);
        f32_rows(h, x, dy, yp, dxp, in, out, 0, N);
        assert_memory_equal(y, yp, ny * sizeof *y);
        assert_memory_equal(dx, dxp, nx * sizeof *dx);
        dm_free(h);
        omp_set_num_threads(threads);
    }
    free(w), free(x), free(dy), free(y), free(dx), free(yp), free(dxp);
}

/* More row counts than the primitive cache holds, then the first ones again:
 * evicted primitives are rebuilt and give the same results. */
static void test_cache_eviction(void **state)
{
    (void)state;
    pl_err e;
    int in = 48, out = 80, maxN = 40;
    float *w = frand((size_t)in * out, 0.1f, 8), *wr = rounded(w, (size_t)in * out);
    float *x = frand((size_t)maxN * in, 1.0f, 9), *xr = rounded(x, (size_t)maxN * in);
    float *y = malloc((size_t)maxN * out * sizeof *y);
    double *yd = malloc((size_t)maxN * out * sizeof *yd);
    dm_linear *h = dm_linear_pack(w, DM_F32, DM_IN_OUT, in, out, 0, &e);
    assert_non_null(h);
    for (int pass = 0; pass < 2; pass++)
        for (int N = 1; N <= maxN; N += 3) {
            assert_int_equal(dm_linear_fwd(h, x, y, NULL, N, &e), 0);
            ref_fwd(yd, xr, wr, NULL, DM_IN_OUT, N, in, out);
            assert_true(rel_fro(y, yd, (size_t)N * out) < EXACT_TOL);
        }
    dm_free(h);
    free(w), free(wr), free(x), free(xr), free(y), free(yd);
}

/* Bad calls fail with a message that says what is wrong. */
static void test_rejections(void **state)
{
    (void)state;
    pl_err e;
    float w[12] = {0}, x[4] = {0}, y[3];
    assert_null(dm_linear_pack(NULL, DM_F32, DM_OUT_IN, 4, 3, 0, &e));
    assert_non_null(strstr(e.msg, "NULL"));
    assert_null(dm_linear_pack(w, DM_F32, DM_OUT_IN, 0, 3, 0, &e));
    assert_non_null(strstr(e.msg, "in 0"));
    dm_linear *h = dm_linear_pack(w, DM_F32, DM_OUT_IN, 4, 3, 0, &e);
    assert_non_null(h);
    assert_int_equal(dm_linear_bwd_x(h, y, x, 1, 0, &e), -1);
    assert_non_null(strstr(e.msg, "with_bwd"));
    assert_int_equal(dm_linear_fwd(h, x, y, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "N 0"));
    dm_free(h);
    dm_free(NULL);
    assert_int_equal(dm_available(), 1);
}

#else /* built without oneDNN */

static void test_without_dnnl(void **state)
{
    (void)state;
    pl_err e;
    float w[12] = {0}, x[4] = {0}, y[3];
    assert_int_equal(dm_available(), 0);
    e.msg[0] = 0;
    assert_null(dm_linear_pack(w, DM_F32, DM_OUT_IN, 4, 3, 1, &e));
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_null(dm_linear_wrap_bf16(w, DM_OUT_IN, 4, 3, &e));
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_null(dm_linear_wrap_f32(w, DM_OUT_IN, 4, 3, &e));
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_null(dm_linear_wrap_packed(w, DM_OUT_IN, 4, 3, &e));
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_int_equal(dm_packed_bytes(4, 3, &e), 0);
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_int_equal(dm_linear_fwd(NULL, x, y, NULL, 1, &e), -1);
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    e.msg[0] = 0;
    assert_int_equal(dm_linear_bwd_x(NULL, y, x, 1, 0, &e), -1);
    assert_non_null(strstr(e.msg, "built without oneDNN"));
    dm_free(NULL);
}

#endif

/* dm_to_bf16 (the AVX-512 clone on a machine that has it) gives the bits of
 * IEEE round-to-nearest-even at every edge: ties both ways, carries into the
 * exponent and to infinity, denormals, signed zeros, infinities, and NaN
 * staying a quiet NaN.  Expected bits worked out by hand; the values sit at
 * every position of rows of odd length, so vector bodies and tails see each. */
static void test_rounding_bits(void **state)
{
    (void)state;
    static const uint32_t in[][2] = {
        {0x00000000u, 0x0000}, {0x80000000u, 0x8000}, {0x3f800000u, 0x3f80},
        {0x3f808000u, 0x3f80}, /* tie, 0x3f80 even: down */
        {0x3f818000u, 0x3f82}, /* tie, 0x3f81 odd: up */
        {0x3f808001u, 0x3f81}, {0xbf80ffffu, 0xbf81}, {0x3f7fffffu, 0x3f80},
        {0x7f7fffffu, 0x7f80}, /* max float: rounds to inf */
        {0x00000001u, 0x0000}, {0x00008000u, 0x0000}, {0x00018000u, 0x0002},
        {0x807fffffu, 0x8080}, /* largest denormal: up into the normals */
        {0x7f800000u, 0x7f80}, {0xff800000u, 0xff80},
        {0x7fc00000u, 0x7fc0}, {0x7f800001u, 0x7fc0}, /* NaN stays NaN, quiet */
        {0xffa00000u, 0xffe0},
    };
    enum { NV = sizeof in / sizeof in[0], N = 3, K = 37 };
    float x[N * K];
    uint16_t xb[N * K];
    for (int shift = 0; shift < NV; shift++) {
        for (int i = 0; i < N * K; i++) {
            uint32_t u = in[(i + shift) % NV][0];
            memcpy(&x[i], &u, sizeof u);
        }
        dm_to_bf16(xb, x, N, K);
        for (int i = 0; i < N * K; i++)
            assert_int_equal(xb[i], in[(i + shift) % NV][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_detection),
        cmocka_unit_test(test_avx512_detection),
        cmocka_unit_test(test_rounding_bits),
#ifdef PSLORA_HAVE_DNNL
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_bf16_source),
        cmocka_unit_test(test_plain_acc_arena),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_wrap_packed),
        cmocka_unit_test(test_prerounded_input),
        cmocka_unit_test(test_prerounded_dy),
        cmocka_unit_test(test_cache_eviction),
        cmocka_unit_test(test_f32_products),
        cmocka_unit_test(test_f32_in_place),
        cmocka_unit_test(test_f32_rows_independent),
        cmocka_unit_test(test_rejections),
#else
        cmocka_unit_test(test_without_dnnl),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
