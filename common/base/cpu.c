/* cpu.c - see cpu.h. */
#include "cpu.h"

#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023 /* linux/arch/x86/include/uapi/asm/prctl.h */
#define XFEATURE_XTILEDATA 18

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

const char *cpu_bf16_name(cpu_bf16 k)
{
    return k == CPU_BF16_AMX ? "amx_bf16" : k == CPU_BF16_AVX512 ? "avx512_bf16" : "none";
}

/* AMX tiles with bf16, and the kernel hands out the tile state: Linux >=
 * 5.16 grants its 8 KB only on request; older kernels reject the call and
 * cannot run AMX code at all. */
static int has_amx(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !((d >> 22) & 1) || !((d >> 24) & 1))
        return 0;
#if defined(__linux__)
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 0;
#endif
    return 1;
}

/* AVX512F with the OS saving the AVX-512 state (XCR0 bits 1, 2, 5, 6, 7);
 * *leaf7 gets CPUID.(7,0).EAX, the highest subleaf of leaf 7. */
static int has_avx512f(unsigned *leaf7)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE))
        return 0;
    if ((xcr0() & 0xe6) != 0xe6 || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    *leaf7 = a;
    return (b & bit_AVX512F) != 0;
}

/* AVX512_BF16 (VDPBF16PS), with AVX512F and the OS saving the AVX-512 state. */
static int has_avx512_bf16(void)
{
    unsigned a, b, c, d, leaf7 = 0;
    if (!has_avx512f(&leaf7) || leaf7 < 1)
        return 0;
    __cpuid_count(7, 1, a, b, c, d);
    return (a >> 5) & 1;
}

enum { F_AMX = 1, F_AVX512_BF16 = 2, F_AVX512F = 4 };

/* PSLORA_CPU_FEATURES's list in place of the detection, as F_ bits; the
 * bf16 features imply AVX512F (every CPU with them has it). */
static int features_from_env(const char *list, unsigned *bits, pl_err *e)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", list);
    *bits = 0;
    for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (!strcmp(t, "amx_bf16"))
            *bits |= F_AMX | F_AVX512F;
        else if (!strcmp(t, "avx512_bf16"))
            *bits |= F_AVX512_BF16 | F_AVX512F;
        else if (!strcmp(t, "avx512f"))
            *bits |= F_AVX512F;
        else if (strcmp(t, "none") != 0)
            return pl_errf(e, "PSLORA_CPU_FEATURES: unknown feature '%s' (expected a comma-separated "
                              "list of amx_bf16, avx512_bf16, avx512f or none)", t);
    }
    return 0;
}

int cpu_bf16_dot(cpu_bf16 *out, pl_err *e)
{
    const char *env = getenv("PSLORA_CPU_FEATURES");
    unsigned bits;
    if (env) {
        if (features_from_env(env, &bits, e) != 0)
            return -1;
        *out = bits & F_AMX ? CPU_BF16_AMX : bits & F_AVX512_BF16 ? CPU_BF16_AVX512 : CPU_BF16_NONE;
        return 0;
    }
    *out = has_amx() ? CPU_BF16_AMX : has_avx512_bf16() ? CPU_BF16_AVX512 : CPU_BF16_NONE;
    return 0;
}

int cpu_avx512(int *out, pl_err *e)
{
    const char *env = getenv("PSLORA_CPU_FEATURES");
    unsigned bits, leaf7;
    if (env) {
        if (features_from_env(env, &bits, e) != 0)
            return -1;
        *out = (bits & F_AVX512F) != 0;
        return 0;
    }
    *out = has_avx512f(&leaf7);
    return 0;
}

const char *cpu_blas_core(void)
{
    const char *n = openblas_get_corename();
    return n ? n : "unknown";
}

int cpu_blas_core_is_avx512(const char *name)
{
    /* OpenBLAS 0.3.21 spells one "Cooperlake", later releases differ in case */
    static const char *avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
        if (strcasecmp(name, avx512[i]) == 0)
            return 1;
    return 0;
}

int cpu_blas_core_avx512(void) { return cpu_blas_core_is_avx512(cpu_blas_core()); }
