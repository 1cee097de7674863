/* test_bf16.c - the bf16 model path (model_set_compute, model_load_for)
 * and fp32 through oneDNN (model_use_onednn_fp32)
 * against the fp32 path on the same weights.
 *
 * Models, written by the reference writers of tests/ref_gpt2.h and
 * tests/ref_llama.h (weights "far from trivial": W ~ N(0, 1/in), embeddings
 * N(0, 0.3^2) / N(0, 0.5^2)):
 *   gpt2:  2 layers, dim 64, 4 heads, vocab 300, tied head;
 *   llama: 2 layers, hidden 64, 4 query / 2 kv heads of 16, intermediate 96,
 *          vocab 300, untied head, attention and MLP biases.
 * A batch of 4 x 80 tokens (320 rows: the bf16 head's chunk of 256 rows
 * plus a remainder), one target ignored (-1), every linear map adapted, B
 * nonzero.  Checked:
 *   (a) loss and LoRA gradients, bf16 against fp32, within LOSS_TOL and
 *       GRAD_TOL / GRAD_COS, and NOT equal (the bf16 path was taken); the
 *       blocks' frozen matrices take exactly half their fp32 bytes, the
 *       head (two packed copies, mb_train_hold) its fp32 bytes to within
 *       the packing's padding; forward-only
 *       packing (eval) and model_logits (generate) agree as well;
 *   (b) a BF16 safetensors directory: packed from its bits it gives bitwise
 *       the loss of an F32 directory holding the same (bf16-exact) values
 *       packed from fp32; no fp32 copy of wte is kept; F16 within tolerance;
 *   (c) a drawn model switches too; switching back and saving are refused;
 *   (d) --compute parsing: fp32, bf16, auto, garbage;
 *   (e) a model_bf16_store: one model writes the region (the blocks'
 *       plain copies and the head's packed ones: its size is theirs plus
 *       alignment), another only wraps it; both give bitwise the loss and
 *       gradients of a private copy, the
 *       wrapper really reads the region, a failing done() fails the load,
 *       forward-only loads never ask the store.
 *   (f) fp32 through oneDNN (model_use_onednn_fp32, --fp32-matmul): loss,
 *       gradients and logits against the OpenBLAS fp32 model within fp32
 *       tolerances (F32_LOSS_TOL, F32_GRAD_TOL), and not equal (the oneDNN
 *       path was taken); the weights stay where they were (no copy);
 *       refusals (bert, a bf16 model, twice); --fp32-matmul parsing and
 *       auto's rule under PSLORA_CPU_FEATURES.
 * Built without oneDNN, (a)-(c) and (f)'s model part are skipped (printed)
 * and (d), (f) check the refusals. */
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
#include "dnnl_matmul.h"
#include "lora.h"
#include "lora_bf16.h"
#include "model_bf16.h"
#include "model.h"
#include "refcheck.h"
#include "testutil.h"

enum { NB = 4, NT = 80, RANK = 4 };
#define ALPHA 8.0f

/* Tolerances, from measurement (the test prints the measured values):
 * rounding weights and activations to bf16 (8 significant bits, 2^-9
 * relative) costs each product about 2e-3 relative Frobenius error
 * (tests/test_dnnl_matmul.c); the gradients pass through several products
 * (head dx, then every block's dx), so their error is larger.  Measured here
 * (OpenMP 2 threads, oneDNN 2.6, AVX512-BF16 without AMX):
 *   loss       6e-6 to 1.1e-4 relative
 *   gradients  1.9e-3 to 1.4e-2 relative Frobenius (Llama all-linear the
 *              largest), cosine 0.99991 to 0.999998
 *   logits     5e-3 to 8e-3 relative Frobenius
 * The bounds leave a margin of 2x (gradients) to 10x (loss, cosine) and are
 * still far below what a wrong layout, a lost bias or a missing residual
 * gives (relative errors of order 1). */
#define LOSS_TOL 2e-3   /* |loss_bf16 - loss_fp32| / loss_fp32 */
#define GRAD_TOL 3e-2   /* ||g_bf16 - g_fp32||_F / ||g_fp32||_F, also logits */
#define GRAD_COS 0.999  /* cosine of g_bf16 and g_fp32 */

/* fp32 through oneDNN against fp32 through OpenBLAS: both fp32 with fp32
 * accumulation, in other orders.  Measured here: loss 1e-9 to 1.4e-8
 * relative, gradients 5e-7 to 1.2e-6, logits 5e-7 to 6e-7 (printed); the bounds
 * are test_kernels' fp32 bound (1e-5) and, for gradients through a dozen
 * products, 1e-4: a bf16 rounding (2e-3) or a wrong layout is far above. */
#define F32_LOSS_TOL 1e-5
#define F32_GRAD_TOL 1e-4

static void skip_without_dnnl(void)
{
    if (!dm_available()) {
        print_message("skipped: this build has no oneDNN (libdnnl-dev), no bf16 path\n");
        skip();
    }
}

/* ---- models on disk ---------------------------------------------------------- */

static const ref_config GPT2_CFG = {.n_layer = 2, .n_embd = 64, .n_head = 4, .n_positions = 96,
                                    .vocab = 300, .eps = 1e-5, .untied = 0};
static const rl_config LLAMA_CFG = {.n_layer = 2, .hidden = 64, .n_head = 4, .n_kv_head = 2,
                                    .head_dim = 16, .inter = 96, .vocab = 300, .max_pos = 96,
                                    .eps = 1e-5, .theta = 10000.0, .untied = 1, .attn_bias = 1,
                                    .mlp_bias = 1};

/* Writes the GPT-2 or the Llama model as dtype dt into a scratch directory
 * (tag) and, when f32 != NULL, the same values again as F32 (tag + "_f32"):
 * the writers round the reference in place to the stored dtype, so both hold
 * bf16-exact values when dt is BF16.  dir and f32 receive the paths (512
 * bytes each). */
static void write_dirs(int llama, const char *tag, ref_dtype dt, char *dir, char *f32)
{
    union {
        ref_gpt2 g;
        ref_llama l;
    } ref;
    if (llama)
        ref_llama_init(&ref.l, &LLAMA_CFG, 12);
    else
        ref_gpt2_init(&ref.g, &GPT2_CFG, 11);
    for (int k = 0; k < (f32 ? 2 : 1); k++) {
        char name[128], *out = k ? f32 : dir;
        snprintf(name, sizeof name, "%s%s", tag, k ? "_f32" : "");
        snprintf(out, 512, "%s", tu_tmpdir(name));
        rl_hf_opts lo = {.dtype = k ? REF_F32 : dt};
        ref_hf_opts go = {.prefix = 1, .dtype = lo.dtype};
        if (llama)
            ref_llama_write_hf(&ref.l, out, &lo);
        else
            ref_gpt2_write_hf(&ref.g, out, &go);
    }
    if (llama)
        ref_llama_free(&ref.l);
    else
        ref_gpt2_free(&ref.g);
}

/* ---- one pass ------------------------------------------------------------------ */

typedef struct {
    double loss;
    float *grad;     /* NULL for forward-only passes */
    size_t n;
} result;

static void tokens(int32_t *inp, int32_t *tgt, int V)
{
    ref_rng r = {7};
    for (int i = 0; i < NB * NT; i++) {
        inp[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)V);
        tgt[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)V);
    }
    tgt[NT + 3] = -1;   /* an ignored target */
}

/* Every linear adapted, A ~ U(-1,1)/sqrt(in), B ~ N(0, 0.3^2). */
static void adapter(const model *m, lora_layout *L, float **p)
{
    pl_err e;
    const char *targets = m->cfg.arch == ARCH_LLAMA ? "all-linear" : "c_attn,c_proj,c_fc";
    if (lora_layout_build(L, &m->cfg, targets, RANK, ALPHA, 0, 0.0f, &e) != 0)
        rc_fail_err("lora_layout_build", &e);
    *p = malloc(L->n_params * sizeof **p);
    rc_fill_adapter(L, *p, 5);
}

/* Loss (and with grad the LoRA gradient) of m with the adapter. */
static result pass(model *m, int grad)
{
    lora_layout L;
    float *p;
    int32_t inp[NB * NT], tgt[NB * NT];
    tokens(inp, tgt, m->cfg.vocab);
    adapter(m, &L, &p);
    lora_attach(&L, m);
    result r = {0, grad ? malloc(L.n_params * sizeof(float)) : NULL, L.n_params};
    model_acts *a = model_acts_new(m, &L, NB, NT, grad);
    assert_non_null(a);
    r.loss = model_loss_grad(m, a, &L, p, r.grad, inp, tgt, 0);
    if (model_acts_error(a))
        fail_msg("pass: %s", model_acts_error(a));
    assert_true(isfinite(r.loss));
    model_acts_free(a);
    lora_layout_free(&L);
    free(p);
    return r;
}

static model load(const char *dir, model_compute c, int with_bwd)
{
    model m;
    pl_err e;
    if (model_load_for(&m, dir, c, with_bwd, &e) != 0)
        rc_fail_err(dir, &e);
    return m;
}

static double rel_loss(double a, double b) { return fabs(a - b) / fabs(b); }

/* Checks bf16 against fp32 (loss, and gradients when both have them). */
static void compare(const char *what, result bf, result fp)
{
    double rl = rel_loss(bf.loss, fp.loss);
    print_message("%s: loss fp32 %.6f bf16 %.6f, relative difference %.2e\n", what, fp.loss,
                  bf.loss, rl);
    assert_true(rl < LOSS_TOL);
    assert_true(bf.loss != fp.loss);   /* the bf16 path was really taken */
    if (!bf.grad || !fp.grad)
        return;
    double d = 0, g = 0, b = 0, dot = 0;
    for (size_t i = 0; i < fp.n; i++) {
        d += ((double)bf.grad[i] - fp.grad[i]) * ((double)bf.grad[i] - fp.grad[i]);
        g += (double)fp.grad[i] * fp.grad[i];
        b += (double)bf.grad[i] * bf.grad[i];
        dot += (double)bf.grad[i] * fp.grad[i];
    }
    double fro = sqrt(d / g), cosine = dot / sqrt(g * b);
    print_message("%s: gradients relative Frobenius error %.2e, cosine %.7f\n", what, fro, cosine);
    assert_true(d > 0);
    assert_true(fro < GRAD_TOL);
    assert_true(cosine > GRAD_COS);
}

static void result_free(result *r)
{
    free(r->grad);
    r->grad = NULL;
}

/* ---- (a) bf16 against fp32 ---------------------------------------------------- */

/* The logits of the last position (generation), of model `got` against
 * model `ref`: relative Frobenius difference. */
static double logits_err(model *ref, model *got)
{
    int V = ref->cfg.vocab, T = 16;
    int32_t inp[16];
    for (int i = 0; i < T; i++)
        inp[i] = (int32_t)((i * 37 + 5) % V);
    float *lf = malloc((size_t)V * sizeof *lf), *lb = malloc((size_t)V * sizeof *lb);
    model_acts *af = model_acts_new(ref, NULL, 1, T, 0), *ab = model_acts_new(got, NULL, 1, T, 0);
    model_logits(ref, af, NULL, NULL, inp, T - 1, lf);
    model_logits(got, ab, NULL, NULL, inp, T - 1, lb);
    assert_null(model_acts_error(ab));
    double d = 0, g = 0;
    for (int v = 0; v < V; v++)
        d += ((double)lb[v] - lf[v]) * ((double)lb[v] - lf[v]), g += (double)lf[v] * lf[v];
    model_acts_free(af), model_acts_free(ab);
    free(lf), free(lb);
    return sqrt(d / g);
}

/* The logits, fp32 against bf16. */
static void compare_logits(model *fp, model *bf)
{
    double err = logits_err(fp, bf);
    print_message("logits: relative Frobenius error %.2e\n", err);
    assert_true(err > 0 && err < GRAD_TOL);
}

/* fp32 bytes of the blocks' frozen matrices (every layer, every slot). */
static size_t block_bytes(const model *m)
{
    int nl = model_n_linears(&m->cfg);
    size_t n = 0;
    for (int s = 0; s < nl; s++) {
        int in, out;
        model_linear_shape(&m->cfg, s, &in, &out);
        n += (size_t)in * out * sizeof(float);
    }
    return n * m->cfg.n_layer;
}

static void bf16_vs_fp32(const char *name, const char *dir)
{
    model fp = load(dir, MODEL_FP32, 0), bf = load(dir, MODEL_BF16, 1);
    assert_int_equal(bf.compute, MODEL_BF16);
    assert_null(bf.blocks[0].lin[0].w);
    assert_non_null(bf.blocks[0].lin[0].dm);
    assert_null(bf.lm_head);
    /* the blocks: one plain bf16 copy each, half the fp32 bytes; the head:
     * two packed bf16 copies, its fp32 bytes plus the packing's padding (V
     * and C rounded up to oneDNN's blocks, taken as at most 64, plus slack) */
    size_t blocks = block_bytes(&fp), head = model_matrix_bytes(&fp) - blocks;
    assert_int_equal(head, (size_t)fp.cfg.vocab * fp.cfg.n_embd * sizeof(float));
    size_t bf_head = model_matrix_bytes(&bf) - blocks / 2;
    print_message("%s: head %zu bytes fp32, %zu in two packed bf16 copies\n", name, head,
                  bf_head);
    size_t V64 = (size_t)(fp.cfg.vocab + 63) / 64 * 64, C64 = (size_t)(fp.cfg.n_embd + 63) / 64 * 64;
    assert_true(bf_head >= head && bf_head <= 2 * 2 * (V64 * C64 + 2 * 64 * 64));
    result rf = pass(&fp, 1), rb = pass(&bf, 1);
    char what[64];
    snprintf(what, sizeof what, "%s train", name);
    compare(what, rb, rf);
    if (lb_native()) {   /* as on a CPU without vdpbf16ps: the LoRA's products in fp32 */
        lb_emulate(1);
        result re = pass(&bf, 1);
        lb_emulate(0);
        snprintf(what, sizeof what, "%s train, fp32 LoRA products", name);
        compare(what, re, rf);
        assert_true(re.loss != rb.loss);   /* the CPU's instruction made a difference */
        result_free(&re);
    }
    result_free(&rf), result_free(&rb);
    /* forward only: packed for the forward pass (eval) */
    model ev = load(dir, MODEL_BF16, 0);
    rf = pass(&fp, 0), rb = pass(&ev, 0);
    snprintf(what, sizeof what, "%s eval", name);
    compare(what, rb, rf);
    compare_logits(&fp, &ev);
    model_free(&fp), model_free(&bf), model_free(&ev);
}

static void test_gpt2(void **state)
{
    (void)state;
    char dir[512];
    skip_without_dnnl();
    write_dirs(0, "bf16_gpt2", REF_F32, dir, NULL);
    bf16_vs_fp32("gpt2", dir);
}

static void test_llama(void **state)
{
    (void)state;
    char dir[512];
    skip_without_dnnl();
    write_dirs(1, "bf16_llama", REF_F32, dir, NULL);
    bf16_vs_fp32("llama", dir);
}

/* ---- (b) BF16 and F16 files ---------------------------------------------------- */

/* dir_bf: a BF16 directory; dir_f32: F32 with the same (bf16-exact) values. */
static void bf16_file(const char *name, const char *dir_bf, const char *dir_f32)
{
    model bf_bits = load(dir_bf, MODEL_BF16, 1), bf_f32 = load(dir_f32, MODEL_BF16, 1);
    model fp = load(dir_bf, MODEL_FP32, 0);
    assert_null(bf_bits.wte);       /* no fp32 copy: the rows come from the file */
    /* converted copies: fp32 holds one per tensor; bf16 none of the matrices,
     * wte and an untied lm_head */
    int untied = fp.lm_head != fp.wte;
    assert_int_equal(fp.n_owned - bf_bits.n_owned,
                     fp.cfg.n_layer * model_n_linears(&fp.cfg) + 1 + untied);
    result a = pass(&bf_bits, 1), b = pass(&bf_f32, 1), f = pass(&fp, 1);
    if (memcmp(&a.loss, &b.loss, sizeof a.loss) != 0 || memcmp(a.grad, b.grad, a.n * 4) != 0)
        fail_msg("%s: packed from BF16 bits %.17g, from the same values in F32 %.17g", name,
                 a.loss, b.loss);
    char what[64];
    snprintf(what, sizeof what, "%s BF16 file", name);
    compare(what, a, f);
    result_free(&a), result_free(&b), result_free(&f);
    model_free(&bf_bits), model_free(&bf_f32), model_free(&fp);
}

static void test_bf16_files(void **state)
{
    (void)state;
    char bf[512], f32[512];
    skip_without_dnnl();
    write_dirs(0, "bf16_gpt2_bf", REF_BF16, bf, f32);
    bf16_file("gpt2", bf, f32);
    write_dirs(1, "bf16_llama_bf", REF_BF16, bf, f32);
    bf16_file("llama", bf, f32);
}

static void test_f16_file(void **state)
{
    (void)state;
    char dir[512];
    skip_without_dnnl();
    write_dirs(0, "bf16_gpt2_f16", REF_F16, dir, NULL);
    model fp = load(dir, MODEL_FP32, 0), bf = load(dir, MODEL_BF16, 1);
    assert_null(bf.wte);
    result f = pass(&fp, 1), b = pass(&bf, 1);
    compare("gpt2 F16 file", b, f);
    result_free(&f), result_free(&b);
    model_free(&fp), model_free(&bf);
}

/* ---- (c) drawn models ------------------------------------------------------------ */

static void test_drawn(void **state)
{
    (void)state;
    skip_without_dnnl();
    model_config c = {.arch = ARCH_GPT2, .n_layer = 2, .n_embd = 32, .n_head = 2, .n_kv_head = 2,
                      .head_dim = 16, .n_inner = 128, .vocab = 50, .n_ctx = 96, .eps = 1e-5f,
                      .tie_embeddings = 1};
    model fp, bf;
    pl_err e;
    if (model_init_random(&fp, &c, 3, &e) != 0 || model_init_random(&bf, &c, 3, &e) != 0)
        rc_fail_err("model_init_random", &e);
    assert_int_equal(model_set_compute(&bf, MODEL_BF16, 1, &e), 0);
    assert_int_equal(model_set_compute(&bf, MODEL_BF16, 1, &e), 0);   /* already: no-op */
    assert_non_null(bf.wte);   /* a drawn model keeps its buffer */
    result f = pass(&fp, 1), b = pass(&bf, 1);
    compare("drawn gpt2", b, f);
    result_free(&f), result_free(&b);
    assert_int_equal(model_set_compute(&bf, MODEL_FP32, 0, &e), -1);
    assert_non_null(strstr(e.msg, "switched back"));
    assert_int_equal(model_save(&bf, tu_tmpdir("bf16_save"), &e), -1);
    assert_non_null(strstr(e.msg, "bf16"));
    model_free(&fp), model_free(&bf);
}

/* ---- (d) --compute ------------------------------------------------------------------ */

/* auto under PSLORA_CPU_FEATURES=env: the choice and the line describing it
 * (fp32 whatever the CPU in a build without oneDNN). */
static void choose_auto_as(const char *env, model_compute want, const char *line)
{
    model_compute c;
    pl_err e;
    char how[128];
    setenv("PSLORA_CPU_FEATURES", env, 1);
    assert_int_equal(model_compute_choose("auto", &c, &e), 0);
    model_compute_describe(how, sizeof how, c, "auto");
    if (dm_available()) {
        assert_int_equal(c, want);
        assert_string_equal(how, line);
    } else {
        assert_int_equal(c, MODEL_FP32);
        assert_string_equal(how, "fp32 (auto: built without oneDNN)");
    }
    unsetenv("PSLORA_CPU_FEATURES");
}

static void test_choose(void **state)
{
    (void)state;
    model_compute c;
    pl_err e;
    assert_int_equal(model_compute_choose("fp32", &c, &e), 0);
    assert_int_equal(c, MODEL_FP32);
    cpu_bf16 k;
    unsetenv("PSLORA_CPU_FEATURES");
    assert_int_equal(cpu_bf16_dot(&k, &e), 0);
    assert_int_equal(model_compute_choose("auto", &c, &e), 0);
    assert_int_equal(c, dm_available() && k != CPU_BF16_NONE ? MODEL_BF16 : MODEL_FP32);
    choose_auto_as("none", MODEL_FP32, "fp32 (auto: no native bf16 dot product)");
    choose_auto_as("avx512_bf16", MODEL_BF16, "bf16 (auto: avx512_bf16)");
    choose_auto_as("amx_bf16", MODEL_BF16, "bf16 (auto: amx_bf16)");
    setenv("PSLORA_CPU_FEATURES", "avx512", 1);
    assert_int_equal(model_compute_choose("auto", &c, &e), -1);
    assert_non_null(strstr(e.msg, "PSLORA_CPU_FEATURES: unknown feature 'avx512'"));
    unsetenv("PSLORA_CPU_FEATURES");
    char how[128];
    model_compute_describe(how, sizeof how, MODEL_FP32, "fp32");
    assert_non_null(strstr(how, "fp32 (requested fp32; oneDNN "));
    assert_non_null(strstr(how, ", native bf16 dot product: "));
    assert_int_equal(model_compute_choose("fp16", &c, &e), -1);
    assert_string_equal(e.msg, "--compute: expected fp32, bf16 or auto, got 'fp16'");
    if (dm_available()) {
        assert_int_equal(model_compute_choose("bf16", &c, &e), 0);
        assert_int_equal(c, MODEL_BF16);
        return;
    }
    assert_int_equal(model_compute_choose("bf16", &c, &e), -1);
    assert_string_equal(e.msg, "--compute bf16: this pslora was built without oneDNN (libdnnl-dev)");
    model m;
    char dir[512];
    write_dirs(0, "bf16_none", REF_F32, dir, NULL);
    assert_int_equal(model_load_for(&m, dir, MODEL_BF16, 1, &e), -1);
    assert_non_null(strstr(e.msg, "built without oneDNN"));
}

/* ---- (f) fp32 through oneDNN ------------------------------------------------------ */

/* Relative Frobenius difference of a and b (n floats) against b. */
static double rel_fro(const float *a, const float *b, size_t n)
{
    double d = 0, g = 0;
    for (size_t i = 0; i < n; i++)
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), g += (double)b[i] * b[i];
    return sqrt(d / g);
}

static void f32_vs_openblas(const char *name, const char *dir)
{
    pl_err e;
    model ob = load(dir, MODEL_FP32, 0), od = load(dir, MODEL_FP32, 0);
    const float *w0 = od.blocks[0].lin[0].w, *head = od.lm_head;
    size_t bytes = model_matrix_bytes(&od);
    if (model_use_onednn_fp32(&od, &e) != 0)
        rc_fail_err("model_use_onednn_fp32", &e);
    /* the weights in place: the same arrays, no other copy */
    assert_ptr_equal(od.blocks[0].lin[0].w, w0);
    assert_ptr_equal(od.lm_head, head);
    assert_non_null(od.blocks[0].lin[0].dm);
    assert_int_equal(od.compute, MODEL_FP32);
    assert_int_equal(model_matrix_bytes(&od), bytes);
    assert_true(mb_head_onednn(&od) && !mb_head_onednn(&ob));
    assert_int_equal(model_use_onednn_fp32(&od, &e), -1);   /* once */
    result rb = pass(&ob, 1), rd = pass(&od, 1);
    double rl = rel_loss(rd.loss, rb.loss), rg = rel_fro(rd.grad, rb.grad, rb.n);
    print_message("%s fp32 onednn vs openblas: loss %.8f / %.8f (%.1e), gradients %.1e\n", name,
                  rd.loss, rb.loss, rl, rg);
    assert_true(rl < F32_LOSS_TOL && rg < F32_GRAD_TOL);
    assert_true(rd.loss != rb.loss || rg > 0);   /* the oneDNN path was taken */
    result_free(&rb), result_free(&rd);
    double el = logits_err(&ob, &od);
    print_message("%s fp32 onednn vs openblas: logits %.1e\n", name, el);
    assert_true(el < F32_LOSS_TOL);
    model_free(&ob), model_free(&od);
}

static void test_f32_onednn(void **state)
{
    (void)state;
    char dir[512];
    skip_without_dnnl();
    write_dirs(0, "f32d_gpt2", REF_F32, dir, NULL);
    f32_vs_openblas("gpt2", dir);
    write_dirs(1, "f32d_llama", REF_F32, dir, NULL);
    f32_vs_openblas("llama", dir);
    model bf = load(dir, MODEL_BF16, 1);
    pl_err e;
    assert_int_equal(model_use_onednn_fp32(&bf, &e), -1);
    assert_string_equal(e.msg, "--fp32-matmul onednn: needs --compute fp32");
    model_free(&bf);
}

/* auto under PSLORA_CPU_FEATURES=env: the choice and its line. */
static void matmul_auto_as(const char *env, model_matmul want, const char *line)
{
    model_matmul mm;
    pl_err e;
    char how[128];
    setenv("PSLORA_CPU_FEATURES", env, 1);
    assert_int_equal(model_fp32_matmul_choose("auto", &mm, &e), 0);
    model_fp32_matmul_describe(how, sizeof how, mm, "auto");
    assert_int_equal(mm, want);
    assert_string_equal(how, line);
    unsetenv("PSLORA_CPU_FEATURES");
}

/* The names OpenBLAS gives its cores (openblas_get_corename): 0.3.21's
 * "Cooperlake" (lower-case l) on a Zen 4 once made auto take oneDNN while
 * OpenBLAS ran its AVX-512 kernels. */
static void test_blas_core_names(void **state)
{
    (void)state;
    const char *avx512[] = {"SkylakeX", "Cooperlake", "CooperLake", "SapphireRapids",
                            "sapphirerapids"};
    const char *other[] = {"Haswell", "Zen", "Prescott", "SkylakeX2", "unknown", ""};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        assert_int_equal(cpu_blas_core_is_avx512(avx512[i]), 1);
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        assert_int_equal(cpu_blas_core_is_avx512(other[i]), 0);
}

static void test_choose_matmul(void **state)
{
    (void)state;
    model_matmul mm;
    pl_err e;
    char how[160], want[160];
    assert_int_equal(model_fp32_matmul_choose("openblas", &mm, &e), 0);
    assert_int_equal(mm, MODEL_MM_OPENBLAS);
    assert_int_equal(model_fp32_matmul_choose("blas", &mm, &e), -1);
    assert_string_equal(e.msg, "--fp32-matmul: expected openblas, onednn or auto, got 'blas'");
    assert_string_equal(model_fp32_matmul_name(MODEL_MM_ONEDNN), "onednn");
    assert_string_equal(model_fp32_matmul_name(MODEL_MM_OPENBLAS), "openblas");
    if (!dm_available()) {
        assert_int_equal(model_fp32_matmul_choose("onednn", &mm, &e), -1);
        assert_string_equal(e.msg, "--fp32-matmul onednn: this pslora was built without oneDNN "
                                   "(libdnnl-dev)");
        matmul_auto_as("avx512f", MODEL_MM_OPENBLAS, "openblas (auto: built without oneDNN)");
        return;
    }
    matmul_auto_as("none", MODEL_MM_OPENBLAS, "openblas (auto: no avx512f)");
    /* with AVX-512 the OpenBLAS core running decides (this process's) */
    snprintf(want, sizeof want, "%s (auto: %s%s kernels)",
             cpu_blas_core_avx512() ? "openblas" : "onednn",
             cpu_blas_core_avx512() ? "OpenBLAS runs its " : "avx512f while OpenBLAS runs its ",
             cpu_blas_core());
    matmul_auto_as("avx512f", cpu_blas_core_avx512() ? MODEL_MM_OPENBLAS : MODEL_MM_ONEDNN, want);
    matmul_auto_as("avx512_bf16", cpu_blas_core_avx512() ? MODEL_MM_OPENBLAS : MODEL_MM_ONEDNN,
                   want);
    assert_int_equal(model_fp32_matmul_choose("onednn", &mm, &e), 0);
    assert_int_equal(mm, MODEL_MM_ONEDNN);
    setenv("PSLORA_CPU_FEATURES", "none", 1);
    model_fp32_matmul_describe(how, sizeof how, MODEL_MM_ONEDNN, "onednn");
    snprintf(want, sizeof want, "onednn (requested onednn; OpenBLAS core %s, avx512f: no)",
             cpu_blas_core());
    assert_string_equal(how, want);
    /* auto overruled (--full, an encoder): said so */
    model_fp32_matmul_describe(how, sizeof how, MODEL_MM_OPENBLAS, "auto");
    assert_string_equal(how, "openblas (auto: no avx512f)");
    setenv("PSLORA_CPU_FEATURES", "avx512f", 1);
    if (!cpu_blas_core_avx512()) {
        model_fp32_matmul_describe(how, sizeof how, MODEL_MM_OPENBLAS, "auto");
        assert_string_equal(how, "openblas (auto: oneDNN fp32 is not used for --full or an encoder)");
    }
    setenv("PSLORA_CPU_FEATURES", "avx9", 1);
    assert_int_equal(model_fp32_matmul_choose("auto", &mm, &e), -1);
    assert_non_null(strstr(e.msg, "PSLORA_CPU_FEATURES: unknown feature 'avx9'"));
    unsetenv("PSLORA_CPU_FEATURES");
}

/* ---- (e) a store shared by two models ------------------------------------------- */

typedef struct {
    void *region;
    size_t bytes;
    int allocs, dones, fail_done;
} fake_store;

/* The first call gets a fresh region to fill; later ones wrap it. */
static void *fake_alloc(void *ctx, size_t bytes, int *must_fill, pl_err *e)
{
    (void)e;
    fake_store *s = ctx;
    s->allocs++;
    *must_fill = s->region == NULL;
    if (!s->region) {
        s->region = aligned_alloc(64, bytes);
        s->bytes = bytes;
    }
    assert_int_equal(bytes, s->bytes);
    return s->region;
}

static int fake_done(void *ctx, int ok, pl_err *e)
{
    fake_store *s = ctx;
    s->dones++;
    if (s->fail_done)
        return pl_errf(e, "fake store: the writer failed");
    return ok ? 0 : -1;
}

static model load_in(const char *dir, int with_bwd, const model_bf16_store *st)
{
    model m;
    pl_err e;
    if (model_load_in(&m, dir, MODEL_BF16, with_bwd, st, &e) != 0)
        rc_fail_err(dir, &e);
    return m;
}

static void same(const char *what, result a, result b)
{
    if (memcmp(&a.loss, &b.loss, sizeof a.loss) != 0 || memcmp(a.grad, b.grad, a.n * 4) != 0)
        fail_msg("%s: loss %.17g against %.17g (or the gradients differ)", what, a.loss, b.loss);
}

static void test_store(void **state)
{
    (void)state;
    char dir[512];
    pl_err e;
    skip_without_dnnl();
    write_dirs(1, "bf16_store", REF_F32, dir, NULL);   /* Llama: untied head, 7 maps */
    fake_store fs = {0};
    model_bf16_store st = {fake_alloc, fake_done, &fs};
    model own = load(dir, MODEL_BF16, 1), writer = load_in(dir, 1, &st);
    model reader = load_in(dir, 1, &st);
    assert_int_equal(fs.allocs, 2), assert_int_equal(fs.dones, 2);
    int owned;   /* the store's region, not the model's own */
    assert_int_equal(model_bf16_region(&writer, &owned), fs.bytes), assert_false(owned);
    assert_int_equal(model_bf16_region(&reader, &owned), fs.bytes), assert_false(owned);
    assert_int_equal(model_bf16_region(&own, &owned), fs.bytes);
    /* the blocks' plain copies, then the head's two packed ones, each from
     * a 64-byte boundary: at most 63 bytes of padding each */
    int nm = own.cfg.n_layer * model_n_linears(&own.cfg) + 1;
    size_t half = block_bytes(&own) / 2, head = dm_packed_bytes(own.cfg.n_embd, own.cfg.vocab, &e);
    assert_true(head >= (size_t)own.cfg.n_embd * own.cfg.vocab * 4);
    assert_true(fs.bytes >= half + head && fs.bytes < half + head + 64 * nm);
    assert_int_equal(model_matrix_bytes(&reader), model_matrix_bytes(&own));
    result ro = pass(&own, 1), rw = pass(&writer, 1), rr = pass(&reader, 1);
    same("store writer", rw, ro);
    same("store reader", rr, ro);
    memset(fs.region, 0, fs.bytes);   /* the reader's weights are the region's */
    result rz = pass(&reader, 0);
    assert_true(rz.loss != rr.loss);
    result_free(&ro), result_free(&rw), result_free(&rr);
    model ev = load_in(dir, 0, &st);   /* packed for the forward pass: private */
    assert_int_equal(fs.allocs, 2);
    assert_int_equal(model_bf16_region(&ev, &owned), 0), assert_false(owned);
    fs.fail_done = 1;
    model bad;
    assert_int_equal(model_load_in(&bad, dir, MODEL_BF16, 1, &st, &e), -1);
    assert_non_null(strstr(e.msg, "the writer failed"));
    model_free(&own), model_free(&writer), model_free(&reader), model_free(&ev);
    free(fs.region);   /* the store's: no model freed it */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),       cmocka_unit_test(test_llama),
        cmocka_unit_test(test_bf16_files), cmocka_unit_test(test_f16_file),
        cmocka_unit_test(test_drawn),      cmocka_unit_test(test_choose),
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_f32_onednn), cmocka_unit_test(test_blas_core_names),
        cmocka_unit_test(test_choose_matmul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
