/* test_bert.c - the project's BERT (model.h, ARCH_BERT) against the float64
 * BERT of tests/ref_bert.h, on Hugging Face directories written by hand.
 *
 *   test_load_*        directories of each kind (BertForMaskedLM and
 *                      BertForSequenceClassification; keys with and without
 *                      "bert."; LayerNorm gamma/beta; F32, F16, BF16; two
 *                      shards) load, and the summed loss of a padded batch is
 *                      within 1e-5 (relative) of the reference's;
 *   test_zero_b_*      PEFT's init (B = 0, the classifier from the file):
 *                      bitwise the base model's loss;
 *   test_grad_*        every LoRA tensor's gradient (targets query, key,
 *                      value, dense: every linear, the head's dense too) and
 *                      the classifier's against central finite differences of
 *                      the reference, with padding in the batch;
 *   test_eval_*        `pslora eval` ($PSLORA) on such directories and a
 *                      shard + sidecar written here: the mean loss within
 *                      1e-5 of the reference's (mlm: the positions masked as
 *                      mlm.h draws them for seed 1, epoch 0, sample k);
 *   test_targets       PEFT's suffix matching on BERT's module paths;
 *   test_bad_*         rejections name the file and the key. */
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
#include "mlm.h"
#include "model.h"
#include "ref_bert.h"
#include "testutil.h"

enum { TB = 3, TT = 6 };   /* 3 rows of 6 tokens, padded to 6, 4 and 2 real ones */

static const int32_t LEN[TB] = {6, 4, 2};
/* row 0 is a pair: its last 3 tokens are segment 1 */
static const int32_t TYPES[TB * TT] = {0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
/* MLM targets at real positions only; cls labels */
static const int32_t MLM_TGT[TB * TT] = {-1, 5, -1, 11, -1, 2, 7, -1, -1, 0, -1, -1,
                                         -1, 12, -1, -1, -1, -1};
static const int32_t LABELS[TB] = {2, 0, 1};

static rb_config base_cfg(int gelu_new)
{
    rb_config c = {.n_layer = 2, .hidden = 8, .n_head = 2, .inter = 12, .vocab = 13,
                   .max_pos = 8, .type_vocab = 2, .n_labels = 3, .eps = 1e-12,
                   .gelu_new = gelu_new};
    return c;
}

static void inputs(int32_t *inp, int V)
{
    ref_rng r = {77};
    for (int n = 0; n < TB * TT; n++)
        inp[n] = (n % TT) < LEN[n / TT] ? (int32_t)(1 + ref_rng_u64(&r) % (uint64_t)(V - 1)) : 0;
}

static double ref_loss(const ref_bert *ref, const ref_lora *lo, rb_class cls, const int32_t *inp)
{
    if (cls == RB_CLS)
        return ref_bert_cls_loss(ref, lo, inp, TYPES, LEN, LABELS, TB, TT);
    return ref_bert_mlm_loss(ref, lo, inp, TYPES, LEN, MLM_TGT, TB, TT);
}

static double model_loss(const model *m, const lora_layout *L, const float *p, float *grad,
                         const int32_t *inp)
{
    model_acts *a = model_acts_new(m, L, TB, TT, grad != NULL);
    assert_non_null(a);
    const int32_t *tgt = m->cfg.task == TASK_CLS ? LABELS : MLM_TGT;
    double loss = model_encoder_loss_grad(m, a, L, p, grad, inp, TYPES, LEN, tgt, 0, NULL);
    model_acts_free(a);
    return loss;
}

static void load_ok(model *m, const char *dir, model_task task)
{
    pl_err e;
    if (model_load_task(m, dir, task, 0, &e) != 0)
        fail_msg("%s: %s", dir, e.msg);
}

/* ---- loading, against the reference ---- */

typedef struct {
    const char *name;
    rb_config c;
    rb_hf_opts o;
} load_case;

static void test_load_case(void **state)
{
    const load_case *k = *state;
    ref_bert ref;
    int32_t inp[TB * TT];
    ref_bert_init(&ref, &k->c, 1234);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(k->name));
    ref_bert_write_hf(&ref, dir, &k->o);
    inputs(inp, k->c.vocab);
    model m;
    load_ok(&m, dir, TASK_NONE);   /* the task from "architectures" */
    assert_int_equal(m.cfg.arch, ARCH_BERT);
    assert_int_equal(m.cfg.task, k->o.cls == RB_CLS ? TASK_CLS : TASK_MLM);
    assert_int_equal(m.cfg.num_labels, k->o.cls == RB_CLS ? k->c.n_labels : 2);
    assert_int_equal(m.cfg.act_erf, !k->c.gelu_new);
    assert_true(m.cfg.eps == (float)k->c.eps);
    double want = ref_loss(&ref, NULL, k->o.cls, inp), got = model_loss(&m, NULL, NULL, NULL, inp);
    if (!(fabs(got - want) <= 1e-5 * fabs(want)))
        fail_msg("%s: loss %.9g, reference %.9g", k->name, got, want);
    model_free(&m);
    ref_bert_free(&ref);
}

#define CASE(NAME, GELU_NEW, ...) \
    {#NAME, test_load_case, NULL, NULL, &(load_case){#NAME, base_cfg(GELU_NEW), {__VA_ARGS__}}}

/* ---- pslora eval ---- */

static void put_i32(FILE *f, int32_t v) { fwrite(&v, 4, 1, f); }

/* DIR/d.bin (llm.c shard, uint16 tokens) and DIR/d.bin.samples: the TB
 * rows' real tokens as samples; cls: kind 2 with the segments as the mask
 * and LABELS; mlm: kind 0, no mask. */
static void write_data(const char *dir, const int32_t *inp, int cls)
{
    char path[600];
    int ntok = 0;
    for (int b = 0; b < TB; b++)
        ntok += LEN[b];
    snprintf(path, sizeof path, "%s/d.bin", dir);
    FILE *f = fopen(path, "wb");
    put_i32(f, 20240520), put_i32(f, 1), put_i32(f, ntok);
    for (int i = 3; i < 256; i++)
        put_i32(f, 0);
    for (int b = 0; b < TB; b++)
        for (int j = 0; j < LEN[b]; j++) {
            uint16_t t = (uint16_t)inp[b * TT + j];
            fwrite(&t, 2, 1, f);
        }
    fclose(f);
    snprintf(path, sizeof path, "%s/d.bin.samples", dir);
    f = fopen(path, "wb");
    int32_t head[16] = {20250601, 1, ntok, TB, cls ? 2 : 0, cls, cls ? 3 : 0};
    fwrite(head, 4, 16, f);
    uint32_t off = 0;
    fwrite(&off, 4, 1, f);
    for (int b = 0; b < TB; b++) {
        off += (uint32_t)LEN[b];
        fwrite(&off, 4, 1, f);
    }
    for (int b = 0; cls && b < TB; b++)
        for (int j = 0; j < LEN[b]; j++) {
            uint8_t m = (uint8_t)TYPES[b * TT + j];
            fwrite(&m, 1, 1, f);
        }
    for (int b = 0; cls && b < TB; b++)
        put_i32(f, LABELS[b]);
    fclose(f);
}

/* The "loss" of `pslora eval ... --json` on dir. */
static double cli_eval_loss(const char *dir, int cls)
{
    const char *pslora = getenv("PSLORA");
    if (!pslora)
        fail_msg("PSLORA is not set (the CTest environment gives it)");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s eval --model %s --data %s/d.bin --seq %d --batch %d --json%s",
             pslora, dir, dir, TT, TB, cls ? "" : " --mask-id 4 --special-ids 0 --seed 1");
    FILE *p = popen(cmd, "r");
    char line[1024] = "";
    if (!p || !fgets(line, sizeof line, p))
        fail_msg("%s: no output", cmd);
    pclose(p);
    const char *at = strstr(line, "\"loss\": ");
    if (!at)
        fail_msg("%s: %s", cmd, line);
    return strtod(at + 8, NULL);
}

static void test_eval_case(void **state)
{
    const load_case *k = *state;
    ref_bert ref;
    int32_t inp[TB * TT], minp[TB * TT], tgt[TB * TT];
    int cls = k->o.cls == RB_CLS;
    ref_bert_init(&ref, &k->c, 4321);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir(k->name));
    ref_bert_write_hf(&ref, dir, &k->o);
    inputs(inp, k->c.vocab);
    write_data(dir, inp, cls);
    double want;
    if (cls) {
        int n = 0;
        for (int b = 0; b < TB; b++)
            n += LABELS[b] >= 0;
        want = ref_bert_cls_loss(&ref, NULL, inp, TYPES, LEN, LABELS, TB, TT) / n;
    } else {   /* the masking eval draws: seed 1, epoch 0, sample b */
        const int32_t special[1] = {0};
        mlm_spec sp = {.mask_id = 4, .vocab = k->c.vocab, .special = special, .n_special = 1,
                       .prob = 0.15};
        int n = 0;
        memcpy(minp, inp, sizeof minp);
        for (int i = 0; i < TB * TT; i++)
            tgt[i] = -1;
        for (int b = 0; b < TB; b++)
            n += mlm_mask_row(&sp, inp + b * TT, LEN[b], 1, 0, (uint64_t)b, minp + b * TT,
                              tgt + b * TT);
        assert_true(n > 0);
        want = ref_bert_mlm_loss(&ref, NULL, minp, NULL, LEN, tgt, TB, TT) / n;
    }
    double got = cli_eval_loss(dir, cls);
    if (!(fabs(got - want) <= 1e-5 * fabs(want)))
        fail_msg("%s: pslora eval loss %.9g, reference %.9g", k->name, got, want);
    ref_bert_free(&ref);
}

#define EVAL_CASE(NAME, ...) \
    {#NAME, test_eval_case, NULL, NULL, &(load_case){#NAME, base_cfg(0), {__VA_ARGS__}}}

/* ---- adapters ---- */

typedef struct {
    ref_bert ref;
    rb_class cls;
    char dir[512];
    model m;
    int32_t inp[TB * TT];
} fixture;

static fixture *fixture_new(const char *name, rb_class cls)
{
    fixture *f = calloc(1, sizeof *f);
    rb_config c = base_cfg(0);
    ref_bert_init(&f->ref, &c, 99);
    f->cls = cls;
    snprintf(f->dir, sizeof f->dir, "%s", tu_tmpdir(name));
    ref_bert_write_hf(&f->ref, f->dir, &(rb_hf_opts){.dtype = REF_F32, .cls = cls});
    inputs(f->inp, c.vocab);
    load_ok(&f->m, f->dir, TASK_NONE);
    return f;
}

static void fixture_free(fixture *f)
{
    model_free(&f->m);
    ref_bert_free(&f->ref);
    free(f);
}

/* A layout over every linear (and the classifier for cls), attached. */
static void build_layout(fixture *f, lora_layout *L)
{
    pl_err e;
    if (lora_layout_build(L, &f->m.cfg, "query,key,value,dense", 2, 3.0f, 0, 0.0f, &e) != 0)
        fail_msg("%s", e.msg);
    /* 6 per layer and the head's dense */
    assert_int_equal(L->n, 6 * f->m.cfg.n_layer + 1);
    if (f->cls == RB_CLS && lora_layout_add_classifier(L, &f->m.cfg, &e) != 0)
        fail_msg("%s", e.msg);
    lora_attach(L, &f->m);
}

/* lo = the reference's adapter for p (A, B copied per module). */
static void ref_adapter(ref_lora *lo, const fixture *f, const lora_layout *L, const float *p)
{
    memset(lo, 0, sizeof *lo);
    lo->r = L->r;
    lo->scale = L->scale;
    for (int i = 0; i < L->n; i++) {
        int layer, lin;
        assert_int_equal(rb_module_parse(L->m[i].path, f->m.cfg.n_layer, &layer, &lin), 0);
        size_t na = (size_t)L->r * L->m[i].in, nb = (size_t)L->m[i].out * L->r;
        lo->A[layer][lin] = malloc(na * sizeof(double));
        lo->B[layer][lin] = malloc(nb * sizeof(double));
        for (size_t j = 0; j < na; j++)
            lo->A[layer][lin][j] = p[L->m[i].a_off + j];
        for (size_t j = 0; j < nb; j++)
            lo->B[layer][lin][j] = p[L->m[i].b_off + j];
    }
}

static void test_zero_b(void **state, rb_class cls)
{
    (void)state;
    fixture *f = fixture_new(cls == RB_CLS ? "zb-cls" : "zb-mlm", cls);
    double base = model_loss(&f->m, NULL, NULL, NULL, f->inp);
    lora_layout L;
    build_layout(f, &L);
    float *p = calloc(L.n_params, sizeof *p), *g = calloc(L.n_params, sizeof *g);
    lora_init_params(&L, p, 5);
    if (L.n_labels)
        lora_init_classifier(&L, &f->m, p, 5);   /* the file's classifier */
    double loss = model_loss(&f->m, &L, p, g, f->inp);
    assert_true(loss == base);
    int nonzero = 0;
    for (int i = 0; i < L.n; i++)
        for (size_t j = 0; j < (size_t)L.r * L.m[i].in; j++) {
            assert_true(g[L.m[i].a_off + j] == 0.0f);   /* dA = 0 when B = 0 */
            nonzero += g[L.m[i].b_off] != 0.0f;
        }
    assert_true(nonzero > 0);
    free(p), free(g);
    lora_layout_free(&L);
    fixture_free(f);
}

static void test_zero_b_mlm(void **state) { test_zero_b(state, RB_MLM); }
static void test_zero_b_cls(void **state) { test_zero_b(state, RB_CLS); }

/* d(reference loss)/d*v by a central difference. */
static double fd(const fixture *f, const ref_lora *lo, double *v)
{
    const double h = 1e-5;
    double v0 = *v;
    *v = v0 + h;
    double lp = ref_loss(&f->ref, lo, f->cls, f->inp);
    *v = v0 - h;
    double lm = ref_loss(&f->ref, lo, f->cls, f->inp);
    *v = v0;
    return (lp - lm) / (2 * h);
}

/* Every entry of a gradient tensor against fd (abs 1e-4 or rel 1e-3), and
 * its norm over a floor so that a zero gradient cannot pass. */
static int check_tensor(const fixture *f, const ref_lora *lo, double *ref, const float *got,
                        size_t n, const char *what)
{
    int bad = 0;
    double sq = 0;
    for (size_t j = 0; j < n; j++) {
        double d = fd(f, lo, &ref[j]), ad = fabs(got[j] - d);
        sq += d * d;
        if (!(ad < 1e-4 || ad / fabs(d) < 1e-3)) {
            print_error("%s[%zu]: model %.9g, finite difference %.9g\n", what, j, (double)got[j], d);
            bad++;
        }
    }
    if (!(sqrt(sq) > 1e-3)) {
        print_error("%s: gradient norm %g below the floor\n", what, sqrt(sq));
        bad++;
    }
    return bad;
}

static void test_grad(void **state, rb_class cls)
{
    (void)state;
    fixture *f = fixture_new(cls == RB_CLS ? "gr-cls" : "gr-mlm", cls);
    lora_layout L;
    build_layout(f, &L);
    float *p = calloc(L.n_params, sizeof *p), *g = calloc(L.n_params, sizeof *g);
    ref_rng r = {31};
    for (size_t j = 0; j < L.n_params; j++)   /* nonzero A, B and classifier */
        p[j] = (float)(0.3 * ref_rng_normal(&r));
    ref_lora lo;
    ref_adapter(&lo, f, &L, p);
    if (L.n_labels)   /* the reference's classifier is the trained one */
        for (size_t j = 0; j < (size_t)L.n_labels * (L.cls_in + 1); j++) {
            double v = p[L.cls_off + j];
            if (j < (size_t)L.n_labels * L.cls_in)
                f->ref.cls_w[j] = v;
            else
                f->ref.cls_b[j - (size_t)L.n_labels * L.cls_in] = v;
        }
    double loss = model_loss(&f->m, &L, p, g, f->inp), want = ref_loss(&f->ref, &lo, cls, f->inp);
    if (!(fabs(loss - want) <= 1e-5 * fabs(want)))
        fail_msg("loss %.9g, reference %.9g", loss, want);
    int bad = 0;
    for (int i = 0; i < L.n; i++) {
        int layer, lin;
        rb_module_parse(L.m[i].path, f->m.cfg.n_layer, &layer, &lin);
        char what[200];
        snprintf(what, sizeof what, "%s.lora_A", L.m[i].path);
        bad += check_tensor(f, &lo, lo.A[layer][lin], g + L.m[i].a_off,
                            (size_t)L.r * L.m[i].in, what);
        snprintf(what, sizeof what, "%s.lora_B", L.m[i].path);
        bad += check_tensor(f, &lo, lo.B[layer][lin], g + L.m[i].b_off,
                            (size_t)L.m[i].out * L.r, what);
    }
    if (L.n_labels) {
        size_t nw = (size_t)L.n_labels * L.cls_in;
        bad += check_tensor(f, &lo, f->ref.cls_w, g + L.cls_off, nw, "classifier.weight");
        bad += check_tensor(f, &lo, f->ref.cls_b, g + L.cls_off + nw, (size_t)L.n_labels,
                            "classifier.bias");
    }
    assert_int_equal(bad, 0);
    ref_lora_free(&lo);
    free(p), free(g);
    lora_layout_free(&L);
    fixture_free(f);
}

static void test_grad_mlm(void **state) { test_grad(state, RB_MLM); }
static void test_grad_cls(void **state) { test_grad(state, RB_CLS); }

/* PEFT's suffix rule on BERT: "dense" takes attention.output.dense,
 * intermediate.dense, output.dense and the task's head dense; "output.dense"
 * takes both output denses of a layer; a full path takes one. */
static void test_targets(void **state)
{
    (void)state;
    fixture *f = fixture_new("targets", RB_CLS);
    lora_layout L;
    pl_err e;
    assert_int_equal(lora_layout_build(&L, &f->m.cfg, "dense", 2, 1, 0, 0, &e), 0);
    assert_int_equal(L.n, 3 * 2 + 1);
    assert_string_equal(L.m[L.n - 1].path, "bert.pooler.dense");
    assert_string_equal(L.m[0].path, "bert.encoder.layer.0.attention.output.dense");
    lora_layout_free(&L);
    assert_int_equal(lora_layout_build(&L, &f->m.cfg, "output.dense", 2, 1, 0, 0, &e), 0);
    assert_int_equal(L.n, 4);
    lora_layout_free(&L);
    assert_int_equal(
        lora_layout_build(&L, &f->m.cfg, "bert.encoder.layer.1.attention.self.query", 2, 1, 0, 0, &e),
        0);
    assert_int_equal(L.n, 1);
    assert_int_equal(L.m[0].layer, 1);
    lora_layout_free(&L);
    assert_int_equal(lora_layout_build(&L, &f->m.cfg, "c_attn", 2, 1, 0, 0, &e), -1);
    assert_non_null(strstr(e.msg, "'c_attn' matches no module of this bert model"));
    fixture_free(f);
}

/* A MaskedLM file without its head, loaded for mlm, names the key. */
static void test_bad_missing_head(void **state)
{
    (void)state;
    ref_bert ref;
    rb_config c = base_cfg(0);
    ref_bert_init(&ref, &c, 3);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("nohead"));
    ref_bert_write_hf(&ref, dir, &(rb_hf_opts){.dtype = REF_F32, .cls = RB_MODEL});
    model m;
    pl_err e;
    assert_int_equal(model_load_task(&m, dir, TASK_MLM, 0, &e), -1);
    assert_non_null(strstr(e.msg, "tensor cls.predictions.bias not found"));
    ref_bert_free(&ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        CASE(load_mlm_f32_prefix, 0, .dtype = REF_F32, .cls = RB_MLM),
        CASE(load_mlm_bf16_noprefix_gamma, 0, .dtype = REF_BF16, .cls = RB_MLM, .no_prefix = 1,
             .gamma_beta = 1, .decoder_keys = 1),
        CASE(load_mlm_f16_shards_gelu_new, 1, .dtype = REF_F16, .cls = RB_MLM, .shards = 2),
        CASE(load_cls_f32_prefix, 0, .dtype = REF_F32, .cls = RB_CLS),
        CASE(load_cls_bf16_noprefix_gamma, 0, .dtype = REF_BF16, .cls = RB_CLS, .no_prefix = 1,
             .gamma_beta = 1),
        CASE(load_cls_f32_shards, 0, .dtype = REF_F32, .cls = RB_CLS, .shards = 2),
        EVAL_CASE(eval_mlm_f32_prefix, .dtype = REF_F32, .cls = RB_MLM),
        EVAL_CASE(eval_mlm_bf16_noprefix_gamma, .dtype = REF_BF16, .cls = RB_MLM, .no_prefix = 1,
                  .gamma_beta = 1),
        EVAL_CASE(eval_cls_f32_prefix_shards, .dtype = REF_F32, .cls = RB_CLS, .shards = 2),
        EVAL_CASE(eval_cls_bf16_noprefix_gamma, .dtype = REF_BF16, .cls = RB_CLS, .no_prefix = 1,
                  .gamma_beta = 1),
        cmocka_unit_test(test_zero_b_mlm),
        cmocka_unit_test(test_zero_b_cls),
        cmocka_unit_test(test_grad_mlm),
        cmocka_unit_test(test_grad_cls),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_bad_missing_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
