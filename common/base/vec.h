/* vec.h - VEC, the attribute of the hot loops that must use the CPU's widest
 * vectors while the build targets the baseline x86-64 (no -march=native: one
 * binary runs on every machine the project meets).
 *
 * GCC compiles a VEC function for AVX-512, AVX2 and the baseline and picks
 * one at load time: one choice per machine, so results stay reproducible on
 * it.  Other compilers and CPUs get the plain function. */
#ifndef PSLORA_VEC_H
#define PSLORA_VEC_H

/* VEC16: the same for integer loops over 16-bit data (the bf16 rounding,
 * bf16.h).  Their AVX-512 clone needs AVX512BW for 16-bit lanes, which the
 * "avx512f" clone lacks: GCC then falls back to 256-bit code, 4x slower
 * than the x86-64-v4 clone (AVX512F, BW, CD, DQ, VL) on this project's
 * AMD EPYC (docs/performance.md, "Session 7").  Integer work and single
 * float operations only: results must not depend on the clone, and a
 * float expression could be contracted (a*b+c to an FMA) differently from
 * VEC's clone, which the fp32 kernels keep. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#define VEC16 __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VEC
#define VEC16
#endif

#include <stdlib.h>

/* n floats (at least one) starting on a 64-byte boundary: a cache line and
 * one AVX-512 vector, so the kernels' vector loads and stores of rows that
 * are multiples of 16 floats never straddle two lines.  malloc gives 16
 * bytes (glibc: addresses 16 past a 64-byte line for large blocks), and a
 * straddling load costs about a third of a fused multiply-add loop's speed
 * here (docs/performance.md, "Session 11: aligned buffers").  free()
 * releases it; NULL when out of memory. */
static inline float *vec_falloc(size_t n)
{
    return aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63);
}

#endif
