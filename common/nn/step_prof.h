/* step_prof.h - an optional clock per kernel category of a training step
 * (`pslora bench --profile`).
 *
 * The caller owns a step_prof and hands it to a model_acts
 * (model_acts_profile); every model_loss_grad with those acts then adds the
 * seconds of each kernel call to its category.  Without one the step reads
 * no clock (one pointer test per call).  The f32 -> bf16 rounding of an
 * activation that no kernel rounded as it made it runs inside the bf16
 * product (dnnl_matmul.c; none left in GPT-2's and Llama's steps since
 * session 10, tests/cli_bench_profile.sh checks it): the bf16 arena adds
 * its seconds to SP_CONVERT (model_bf16_time_convert) and the step takes
 * them out of the product's category, so the categories do not overlap.
 * The norms, GELU and SwiGLU round their outputs as they write them
 * (kernels.h, *_bf16): that rounding counts in SP_ELEMENTWISE, with its
 * kernel.  A bf16 Llama MLP whose three maps are all adapted runs its
 * SwiGLU (and that rounding) inside the LoRA's passes (model_step.c
 * mlp_folded): there it counts in SP_LORA.  The work on the rows around attention (model_step.c's
 * attn_rows: Llama's RoPE and its backward, the rounding of dq, dk, dv and
 * of attention's output) runs inside the attention's region and counts in
 * SP_ATTENTION, and so does the LoRA work that rides on those rows
 * (model_step.c lora_in_pre, lora_in_post, lora_bwd_in_post: the adds of
 * q, k, v's (GPT-2's c_attn's) LoRA to their products' outputs when a
 * oneDNN product went first, the whole forward LoRA of o_proj (c_proj)
 * from attention's output, and q, k, v's du and dB sums from dq, dk, dv);
 * their u (x A^T) before the products, and their dx and column sums
 * after, stay in SP_LORA.  SP_OPTIMIZER is the caller's (the step has
 * none). */
#ifndef PSLORA_STEP_PROF_H
#define PSLORA_STEP_PROF_H

#include <stddef.h>

typedef enum {
    SP_LINEAR_FWD,   /* frozen linear maps, forward (residual add fused) */
    SP_LINEAR_BWD,   /* frozen linear maps, dx (and dW with --full) */
    SP_HEAD,         /* lm head products, forward and dx */
    SP_ATTENTION,    /* scores, softmax, weighted sum, their backward; RoPE (above) */
    SP_ELEMENTWISE,  /* norms, gelu/swiglu, embedding, softmax-xent, memsets */
    SP_LORA,         /* LoRA products (forward, dA, dB, dx) and dropout */
    SP_CONVERT,      /* f32 -> bf16 of the activations inside the products */
    SP_OPTIMIZER,    /* clip and AdamW (the caller times it) */
    SP_N
} sp_cat;

/* One call site of the step's clock (model_step.c): the kernel call as
 * written there (what: PROF's statement, or the timing function's name for
 * the frozen products and attention) and its line, with the seconds of its
 * category spent there.  The sites of a category sum to its seconds; the
 * optimizer's (the caller's) and the conversions (inside the products)
 * have none.  `pslora bench --profile` prints them, largest first. */
#define SP_SITES_MAX 96
typedef struct {
    const char *what;   /* static text */
    int line;
    sp_cat cat;
    double sec;
    long calls;
} sp_site;

typedef struct step_prof {
    double sec[SP_N];   /* seconds summed over the steps profiled */
    sp_site site[SP_SITES_MAX];
    int n_sites;        /* sites made, at most SP_SITES_MAX */
    double unlisted;    /* seconds of sites past those (in sec[] all the same) */
} step_prof;

/* Adds sec to site (what, line) of category c, making it on its first call. */
void sp_site_add(step_prof *p, const char *what, int line, sp_cat c, double sec);
/* The name of the function a site's `what` calls (the identifier before
 * its first '(': "norm_fwd" for "hb = norm_fwd(c, ...)"), at most n - 1
 * characters, into buf; returns buf. */
const char *sp_site_name(const sp_site *s, char *buf, size_t n);

/* A category's name for tables ("frozen linear fwd", ...). */
const char *sp_name(sp_cat c);
/* Its short key for machine-read output ("linear_fwd", ...). */
const char *sp_key(sp_cat c);

#endif
