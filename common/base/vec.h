/* vec.h - VEC, the attribute of the hot loops that must use the CPU's widest
 * vectors while the build targets the baseline x86-64 (no -march=native: one
 * binary runs on every machine the project meets).
 *
 * GCC compiles a VEC function for AVX-512, AVX2 and the baseline and picks
 * one at load time: one choice per machine, so results stay reproducible on
 * it.  Other compilers and CPUs get the plain function. */
#ifndef PSLORA_VEC_H
#define PSLORA_VEC_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define VEC __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VEC
#endif

#endif
