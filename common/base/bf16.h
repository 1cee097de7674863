/* bf16.h - float <-> bfloat16, the one definition of the rounding.
 *
 * bf16 is the upper half of an IEEE float: 1 sign, 8 exponent, 7 mantissa
 * bits.  Narrowing rounds to nearest, ties to even; a NaN stays a quiet NaN
 * (its payload's top bits, the quiet bit set) instead of rounding to inf.
 * Inline because the bf16 products convert every activation with it
 * (nn/dnnl_matmul.c); safetensors' st_f32_to_bf16 is the same function. */
#ifndef PSLORA_BF16_H
#define PSLORA_BF16_H

#include <stdint.h>
#include <string.h>

/* Branch-free (a select), so that loops over it vectorise. */
static inline uint16_t bf16_from_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
}

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
