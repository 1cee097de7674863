/* kernels_impl.h - what kernels.c and kernels_lora.c share, for those two
 * files only (callers include kernels.h and kernels_lora.h).
 *
 * Included before any code: it sets how both files' loops are compiled. */
#ifndef PSLORA_KERNELS_IMPL_H
#define PSLORA_KERNELS_IMPL_H

#include <stddef.h>

/* The clamps and selects of the kernels are plain compares.  GCC keeps them
 * as branches (a compare might trap) and does not vectorise their loops
 * unless told that they do not trap; and its jump threading would evaluate
 * vexp on the clamp bounds as extra vector paths, whose denormal results
 * (x / (1 + exp(88))) cost a microcode assist per lane: a several times
 * slower GELU (docs/performance.md, "Measurements behind the code's
 * choices").  So neither, in both files. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-thread-jumps")
#endif

#define LANES 16 /* float accumulators of a row sum; floats in one of the LoRA's vectors */

/* SwiGLU over n elements on the calling thread (kernels.c), the span
 * functions of k_swiglu_fwd / k_swiglu_bwd that the folded MLP
 * (kernels_lora.c) runs on its own tiles:
 *   k_swiglu_span          y = g sigmoid(g) u
 *   k_swiglu_bwd_span      dgate = dy u s (1 + g (1 - s)), dup = dy g s,
 *                          s = sigmoid(g); dgate may alias dy
 *   k_swiglu_bwd_act_span  the same, and act = g s u (k_swiglu_span's bits) */
void k_swiglu_span(float *y, const float *gate, const float *up, size_t n);
void k_swiglu_bwd_span(float *dgate, float *dup, const float *dy, const float *gate,
                       const float *up, size_t n);
void k_swiglu_bwd_act_span(float *dgate, float *dup, float *act, const float *dy,
                           const float *gate, const float *up, size_t n);

#endif
