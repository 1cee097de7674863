/* cpu.h - what this CPU runs fast: OpenBLAS's kernels on CPUs its
 * detection misses, and whether it executes bf16 dot products natively.
 *
 * Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not know some newer x86 CPUs
 * (seen here: a Xeon with AVX-512 and AMX-era flags under a hypervisor) and
 * falls back to its "Prescott" SSE3 kernels, several times slower.  OpenBLAS
 * reads OPENBLAS_CORETYPE when the library is loaded, before main, so the
 * executable re-executes itself once with the variable set. */
#ifndef PSLORA_CPU_H
#define PSLORA_CPU_H

#include "err.h"

/* The OpenBLAS core type this CPU can run ("SkylakeX" with AVX-512 F/BW/DQ/VL,
 * "Haswell" with AVX2 + FMA), or NULL when OpenBLAS's own choice stands
 * (its detected core is not a generic fallback, or the CPU has neither). */
const char *cpu_blas_coretype(void);

/* When cpu_blas_coretype() suggests a core and OPENBLAS_CORETYPE is unset:
 * sets it and re-executes /proc/self/exe with argv.  Returns only when no
 * re-exec was needed or it failed (the run then goes on, slower). */
void cpu_fix_blas(char **argv);

/* Native bf16 dot products the CPU executes and the OS has enabled, best
 * first: AMX tiles with bf16 (CPUID.(7,0).EDX bits 24 AMX-TILE, 22 AMX-BF16,
 * and on Linux the tile state granted by arch_prctl(ARCH_REQ_XCOMP_PERM)),
 * then AVX512_BF16 (CPUID.(7,1).EAX bit 5, with AVX512F and the AVX-512
 * state enabled in XCR0: bits 1, 2, 5, 6, 7).  Without either, bf16 products
 * are emulated and run slower than fp32 sgemm (docs/performance.md). */
typedef enum { CPU_BF16_NONE, CPU_BF16_AVX512, CPU_BF16_AMX } cpu_bf16;

/* The override for tests (any CPU can then take either branch of a decision
 * made on it): PSLORA_CPU_FEATURES, when set, replaces the detection by its
 * comma-separated list of "amx_bf16", "avx512_bf16", "avx512f" or "none"
 * (the bf16 ones imply avx512f).  Returns 0 and sets *out; -1 with e
 * filled when the variable names anything else. */
int cpu_bf16_dot(cpu_bf16 *out, pl_err *e);
/* AVX512F executed and its state enabled by the OS (XCR0 bits 1, 2, 5, 6,
 * 7): *out 1 or 0.  PSLORA_CPU_FEATURES overrides as for cpu_bf16_dot. */
int cpu_avx512(int *out, pl_err *e);
/* The core OpenBLAS runs its kernels for (openblas_get_corename(), e.g.
 * "Haswell" when OPENBLAS_CORETYPE pins it), and whether that core's
 * kernels use AVX-512. */
const char *cpu_blas_core(void);
int cpu_blas_core_avx512(void);
/* Whether OpenBLAS core `name` runs AVX-512 kernels: SkylakeX, Cooperlake,
 * SapphireRapids, in any case (0.3.21 says "Cooperlake"). */
int cpu_blas_core_is_avx512(const char *name);
/* "amx_bf16", "avx512_bf16" or "none". */
const char *cpu_bf16_name(cpu_bf16 k);

#endif
