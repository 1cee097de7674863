/* cpu.c - see cpu.h. */
#include "cpu.h"

#include <cpuid.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *openblas_get_corename(void);

/* Did OpenBLAS fall back to a generic core? */
static int generic_core(void)
{
    const char *n = openblas_get_corename();
    static const char *generic[] = {"Prescott", "Core2", "Nehalem", "Penryn", "Dunnington",
                                    "Atom", "Katmai", "Coppermine", "Northwood", "Banias"};
    for (size_t i = 0; n && i < sizeof generic / sizeof *generic; i++)
        if (strcmp(n, generic[i]) == 0)
            return 1;
    return 0;
}

/* The OS saves the AVX (and AVX-512) registers: XGETBV bits 1,2 (and 5,6,7). */
static unsigned long long xcr0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

const char *cpu_blas_coretype(void)
{
    if (!generic_core())
        return NULL;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_FMA))
        return NULL;
    unsigned long long x = xcr0();
    if ((x & 6) != 6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return NULL;
    int avx512 = (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512DQ) &&
                 (b & bit_AVX512VL) && (x & 0xe0) == 0xe0;
    if (avx512)
        return "SkylakeX";
    return (b & bit_AVX2) ? "Haswell" : NULL;
}

void cpu_fix_blas(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE"))
        return;
    const char *core = cpu_blas_coretype();
    if (!core)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv);
}
