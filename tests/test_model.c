/* test_model.c - the whole GPT-2 + LoRA model against the float64 reference
 * of tests/ref_gpt2.h, through the checks of tests/refcheck.h.
 *
 * The model directory is written by hand from the format (not by the
 * project's writers) and read with model_load: 2 layers, width 8, 2 heads,
 * 6 positions, vocab 11, tied embeddings, LoRA r 2 alpha 3 on c_attn, both
 * c_proj and c_fc.
 *   - the base model's loss against the reference;
 *   (a) B = 0 (PEFT init) gives bitwise the base model's loss, and dA = 0;
 *   (b) every adapter gradient of model_loss_grad against central finite
 *       differences of the reference's summed loss; also with dropout 0.3,
 *       the reference applying the masks model_step.c draws;
 *   (c) the float loss with a nonzero adapter against the reference, for
 *       scale alpha/r and for rslora's alpha/sqrt(r);
 *   (d) model_logits (generation) against the reference's logits. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "refcheck.h"

static int setup(void **state)
{
    ref_config c = {.n_layer = 2, .n_embd = 8, .n_head = 2, .n_positions = 6, .vocab = 11,
                    .eps = 1e-3, .untied = 0};
    /* c_proj names both attn.c_proj and mlp.c_proj: 4 linears per layer */
    *state = rc_fixture_gpt2("gpt2", &c, "c_attn,c_proj,c_fc", 4);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        RC_UNIT_TEST(test_base_loss_vs_ref),
        RC_UNIT_TEST(test_zero_b_is_base),
        RC_UNIT_TEST(test_lora_grad_fd),
        RC_UNIT_TEST(test_lora_grad_fd_dropout),
        RC_UNIT_TEST(test_lora_loss_vs_ref),
        RC_UNIT_TEST(test_logits_vs_ref),
    };
    return cmocka_run_group_tests(tests, setup, rc_teardown);
}
