/* refcheck.h - the project's model checked against the float64 references
 * of tests/ref_gpt2.h and tests/ref_llama.h: what test_model.c,
 * test_llama.c, test_hf_dirs.c and test_hf_llama_dirs.c share.  Failures go
 * through cmocka (fail_msg, assert_*), so call these from cmocka tests only.
 *
 * Reading directories: rc_load, rc_expect_load_fails, rc_check_mean_loss.
 *
 * A model with adapters: an rc_fixture holds a tiny reference model, the
 * Hugging Face directory written from it by hand, that directory loaded twice
 * with model_load (base: never adapted; lm: gets the adapters) and fixed
 * tokens.  The adapter is set through the project's flat vector
 * (lora_layout_build, a_off/b_off per module) and mapped to the reference's
 * per-(layer, linear) A and B from the module path.  The shared tests:
 *   test_base_loss_vs_ref   the base model's loss against the reference;
 *   test_zero_b_is_base     PEFT init (B = 0): bitwise the base model's loss,
 *                           dA exactly 0, dB not;
 *   test_lora_grad_fd       every adapter gradient against central finite
 *                           differences of the reference's summed loss;
 *   test_lora_grad_fd_dropout  the same with dropout 0.3, the reference
 *                           applying the masks model_step.c draws;
 *   test_lora_loss_vs_ref   the loss with a nonzero adapter, scale alpha/r
 *                           and rslora's alpha/sqrt(r), forward-only and
 *                           backward activations;
 *   test_logits_vs_ref      model_logits (generation) at every position of
 *                           one sequence with a nonzero adapter.
 * Each adapter tensor's gradient must also reach a norm floor, so a zero
 * gradient cannot pass on the absolute tolerance. */
#ifndef PSLORA_REFCHECK_H
#define PSLORA_REFCHECK_H

#include <stdint.h>

#include "lora.h"
#include "model.h"
#include "ref_gpt2.h"
#include "ref_llama.h"

/* ---- reading Hugging Face directories ------------------------------------- */

/* Fails with the message when it does not contain want. */
void rc_expect_msg(const pl_err *e, const char *want);
/* model_load(m, dir), failing the test with its message. */
void rc_load(model *m, const char *dir);
/* model_load of dir fails with a message containing want1 and want2 (may be NULL). */
void rc_expect_load_fails(const char *dir, const char *want1, const char *want2);
/* The mean loss of model_loss_grad on m without adapters, over inp/tgt
 * [B, T], within 1e-5 (relative) of the reference's summed loss want_sum
 * over B * T; name goes in the message. */
void rc_check_mean_loss(const char *name, model *m, const int32_t *inp, const int32_t *tgt, int B,
                        int T, double want_sum);

/* ---- a model with adapters against its reference ---------------------------- */

enum { RC_B = 2, RC_T = 5, RC_RANK = 2 };   /* micro-batch 2 x 5, LoRA rank 2 */
#define RC_ALPHA 3.0f

typedef struct {
    const char *name;       /* in messages and the scratch directory's name */
    int llama;              /* which reference: ref.llama, else ref.gpt2 */
    union {
        ref_gpt2 gpt2;
        ref_llama llama;
    } ref;
    const char *targets;    /* --targets for the layouts built */
    int n_lin;              /* linears per layer those targets adapt */
    model base, lm;
    model_acts *base_acts;  /* base's, forward only */
    char dir[512];          /* the Hugging Face directory */
    int32_t inp[RC_B * RC_T], tgt[RC_B * RC_T];
} rc_fixture;

/* A GPT-2 fixture for config c (weights seed 42, F32 with the "transformer."
 * prefix, tokens seed 7), adapting targets (n_lin linears per layer). */
rc_fixture *rc_fixture_gpt2(const char *name, const ref_config *c, const char *targets, int n_lin);
/* A Llama fixture for config c, adapting "all-linear". */
rc_fixture *rc_fixture_llama(const char *name, const rl_config *c);
/* A cmocka teardown: frees the fixture in *state. */
int rc_teardown(void **state);

/* Fails with "what: e's message". */
void rc_fail_err(const char *what, const pl_err *e);
/* Builds the layout of f's targets at RC_RANK, RC_ALPHA and attaches it to
 * f->lm, checking that its modules are each (layer, linear) once with the
 * reference's shapes. */
void rc_build_layout(rc_fixture *f, lora_layout *L, int rslora, float dropout);
/* Nonzero adapter values: A ~ U(-1,1)/sqrt(in), B ~ N(0, 0.3^2). */
void rc_fill_adapter(const lora_layout *L, float *p, uint64_t seed);
/* lo = the reference adapter holding the flat vector p at the given scale;
 * masks, when not NULL, are module i's [RC_B * RC_T, in] dropout masks. */
void rc_ref_adapter(ref_lora *lo, const rc_fixture *f, const lora_layout *L, const float *p,
                    double scale, float *const *masks);
/* The reference's summed loss on f's tokens; lo may be NULL. */
double rc_ref_loss(const rc_fixture *f, const ref_lora *lo);
/* The same on inp/tgt [B, T] (T <= the model's context); targets < 0 add nothing. */
double rc_ref_loss_on(const rc_fixture *f, const ref_lora *lo, const int32_t *inp,
                      const int32_t *tgt, int B, int T);

/* d(summed reference loss)/d*v by a central difference (h = 1e-5), *v
 * being one of the reference's weights (or adapter entries of lo). */
double rc_fd(const rc_fixture *f, const ref_lora *lo, double *v);
/* Every entry of one gradient tensor (n at got) against rc_fd of the
 * reference's entries at ref (abs 1e-4 or rel 1e-3), and the tensor's
 * gradient norm against a floor; returns the number of failures, each
 * printed. */
int rc_check_tensor(const rc_fixture *f, const ref_lora *lo, double *ref, const float *got,
                    size_t n, const char *path, const char *which);

/* The shared tests (see the top); *state is an rc_fixture. */
void rc_test_base_loss_vs_ref(void **state);
void rc_test_zero_b_is_base(void **state);
void rc_test_lora_grad_fd(void **state);
void rc_test_lora_grad_fd_dropout(void **state);
void rc_test_lora_loss_vs_ref(void **state);
void rc_test_logits_vs_ref(void **state);

/* A cmocka test entry for rc_NAME, reported as NAME. */
#define RC_UNIT_TEST(NAME) {#NAME, rc_##NAME, NULL, NULL, NULL}

#endif
