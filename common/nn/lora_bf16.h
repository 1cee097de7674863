/* lora_bf16.h - the LoRA's two row products on bf16 inputs, for the bf16
 * model path: the dots u = s x M^T and the sums y = y0 + (s c) M, with M
 * (an A or a B^T, r rows) and x or c rounded to bf16 and every sum in
 * fp32, as AVX512_BF16's vdpbf16ps computes them.  Half the loads and half
 * the multiply instructions of the fp32 kernels in kernels_lora.c
 * (docs/performance.md, "Session 13").
 *
 * One vdpbf16ps lane adds to its fp32 sum t two products of bf16 pairs,
 *   t = (t + a1 b1) + a0 b0      (each product exact in fp32; two roundings),
 * a0, b0 the even elements of the pair.  Where the CPU lacks the
 * instruction (or lb_emulate(1) asks), plain C computes the same
 * expression, so the bits do not depend on it (tests/test_lora_bf16.c);
 * but 25-80x slower than the instruction (one thread, in cache), slower
 * than the fp32 kernels too: the model uses these only where
 * lb_native() (model_step.c, lora_pack_carve).
 *
 * Layouts of M [r, n] in bf16 bits:
 *   rows   R[k*n + j] = M[k, j]: for the dots (contiguous in j).
 *   pairs  P[(k/2)*2n + 2j + k%2] = M[k, j]: for the sums, two k per
 *          32-bit lane (the last pair padded with 0 when r is odd).
 * Both are made per call from the fp32 weights (lb_pack; r x n values). */
#ifndef PSLORA_LORA_BF16_H
#define PSLORA_LORA_BF16_H

#include <stddef.h>
#include <stdint.h>

/* The bf16 values that lb_pack writes for an [r, n] matrix, either layout
 * (r rounded up to even). */
size_t lb_size(int r, int n);
/* M[k, j] = src[k*sk + j*sj] (k < r, j < n) into dst in the layout given:
 * an A [r, in] is (sk in, sj 1); a B [out, r] read as B^T is (sk 1, sj r). */
void lb_pack(uint16_t *dst, int pairs, const float *src, size_t sk, size_t sj, int r, int n);

/* u[m*r + k] = s * sum_j bf16(x[m*ldx + j]) R[k, j] for m < rows, k < r:
 * per (m, k) 16 lane sums over j in steps of 32 (lane l taking j = 32i + 2l
 * and + 1, zero past n), added as kernels.c's lanes_sum tree. */
void lb_dots(float *u, const float *x, int ldx, const uint16_t *R, int n, int r, float s,
             int rows);
/* y[m*ldy + j] = y0[m*ld0 + j] (NULL: 0; may be y) + bias[j] (NULL: 0) +
 * the pairs' products of bf16(s c[m*r + k]) and P's M[k, j], pairs in
 * order k = 0,1 then 2,3, ..., for m < rows, j < n. */
void lb_axpys(float *y, int ldy, const float *y0, int ld0, const float *bias, const float *c,
              const uint16_t *P, int n, int r, float s, int rows);

/* 1: the plain C code even where the CPU has vdpbf16ps (tests compare the
 * two); 0: the instruction where the CPU has it.  Returns whether the
 * instruction is in use after the call. */
int lb_emulate(int on);
/* Whether the products run on the instruction (the CPU has AVX512_BF16,
 * checked with CPUID and the OS's AVX-512 state, and lb_emulate(1) is not
 * in force). */
int lb_native(void);

#endif
