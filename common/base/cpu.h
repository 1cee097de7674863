/* cpu.h - choosing OpenBLAS's kernels on CPUs its detection misses.
 *
 * Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) does not know some newer x86 CPUs
 * (seen here: a Xeon with AVX-512 and AMX-era flags under a hypervisor) and
 * falls back to its "Prescott" SSE3 kernels, several times slower.  OpenBLAS
 * reads OPENBLAS_CORETYPE when the library is loaded, before main, so the
 * executable re-executes itself once with the variable set. */
#ifndef PSLORA_CPU_H
#define PSLORA_CPU_H

/* The OpenBLAS core type this CPU can run ("SkylakeX" with AVX-512 F/BW/DQ/VL,
 * "Haswell" with AVX2 + FMA), or NULL when OpenBLAS's own choice stands
 * (its detected core is not a generic fallback, or the CPU has neither). */
const char *cpu_blas_coretype(void);

/* When cpu_blas_coretype() suggests a core and OPENBLAS_CORETYPE is unset:
 * sets it and re-executes /proc/self/exe with argv.  Returns only when no
 * re-exec was needed or it failed (the run then goes on, slower). */
void cpu_fix_blas(char **argv);

#endif
