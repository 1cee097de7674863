/* ref_common.h - what the float64 references of tests/ref_gpt2.h and
 * tests/ref_llama.h share: random numbers, the stored dtypes, a safetensors
 * and Hugging Face directory writer, LoRA adapters, the linear map, causal
 * attention and the summed cross-entropy.
 *
 * Header-only (static inline functions) so that any tests/test_*.c can use it
 * without changing the test build.  Nothing here calls the project: the
 * safetensors bytes are written by hand from the format (u64 LE header length,
 * JSON header, data), independently of common/io/safetensors.c, which is what the
 * tests that read them check. */
#ifndef PSLORA_REF_COMMON_H
#define PSLORA_REF_COMMON_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* random numbers (splitmix64), independent of common/base/rng.c             */

typedef struct {
    uint64_t s;
} ref_rng;

static inline uint64_t ref_rng_u64(ref_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) with 53 bits. */
static inline double ref_rng_uniform(ref_rng *r)
{
    return (double)(ref_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal by Box-Muller (one value per call). */
static inline double ref_rng_normal(ref_rng *r)
{
    double u1 = ref_rng_uniform(r) + 0x1p-54, u2 = ref_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ------------------------------------------------------------------ */
/* stored dtypes: rounding a double to the stored value and its bytes   */

typedef enum { REF_F32, REF_F16, REF_BF16 } ref_dtype;

static inline const char *ref_dtype_name(ref_dtype d)
{
    return d == REF_F32 ? "F32" : d == REF_F16 ? "F16" : "BF16";
}

static inline const char *ref_dtype_torch(ref_dtype d)
{
    return d == REF_F32 ? "float32" : d == REF_F16 ? "float16" : "bfloat16";
}

static inline size_t ref_dtype_size(ref_dtype d) { return d == REF_F32 ? 4 : 2; }

/* Rounds x to nearest-even with `bits` significant bits and exponents not
 * below emin (gradual underflow); exact for the small normal values used here. */
static inline double ref_round_bits(double x, int bits, int emin)
{
    if (x == 0.0)
        return 0.0;
    int ex;
    frexp(x, &ex);            /* |x| in [2^(ex-1), 2^ex) */
    int e = ex - 1;
    if (e < emin)
        e = emin;
    double q = ldexp(1.0, e - (bits - 1));
    return nearbyint(x / q) * q;    /* default rounding mode: ties to even */
}

/* The value a double becomes once stored as dtype d. */
static inline double ref_round(double x, ref_dtype d)
{
    if (d == REF_F32)
        return (double)(float)x;
    if (d == REF_BF16)
        return ref_round_bits(x, 8, -126);
    return ref_round_bits(x, 11, -14);
}

/* Encodes an already rounded value v as little-endian bytes of dtype d. */
static inline void ref_encode(unsigned char *out, double v, ref_dtype d)
{
    uint32_t bits;
    if (d == REF_F32 || d == REF_BF16) {
        float f = (float)v;
        memcpy(&bits, &f, 4);
        if (d == REF_BF16)
            bits >>= 16;    /* v has at most 8 significant bits: low half is 0 */
    } else {
        uint32_t sign = v < 0 ? 0x8000u : 0, exp = 0, man;
        double a = fabs(v);
        if (a >= 0x1p-14) {
            int ex;
            frexp(a, &ex);
            exp = (uint32_t)(ex - 1 + 15);
            man = (uint32_t)((ldexp(a, -(ex - 1)) - 1.0) * 1024.0);
        } else {
            man = (uint32_t)(a * 0x1p24);
        }
        bits = sign | exp << 10 | man;
    }
    for (size_t i = 0; i < ref_dtype_size(d); i++)
        out[i] = (unsigned char)(bits >> (8 * i));
}

/* n fixed random tokens and targets in [0, V), drawn in turns from one stream. */
static inline void ref_random_tokens(int32_t *inp, int32_t *tgt, int n, int V, uint64_t seed)
{
    ref_rng r = {seed};
    for (int i = 0; i < n; i++) {
        inp[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)V);
        tgt[i] = (int32_t)(ref_rng_u64(&r) % (uint64_t)V);
    }
}

/* n values mean + std * N(0, 1). */
static inline double *ref_fill(ref_rng *r, size_t n, double mean, double std)
{
    double *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = mean + std * ref_rng_normal(r);
    return p;
}

/* A linear map's random weights, drawn in this order: *w [in * out]
 * N(0, 1/in), then with a bias *b [out] N(0, 0.1^2), else *b = NULL. */
static inline void ref_fill_linear(ref_rng *r, int in, int out, int bias, double **w, double **b)
{
    *w = ref_fill(r, (size_t)in * out, 0, 1.0 / sqrt((double)in));
    *b = bias ? ref_fill(r, (size_t)out, 0, 0.1) : NULL;
}

/* free() of p[0..n). */
static inline void ref_free_each(double **p, int n)
{
    for (int i = 0; i < n; i++)
        free(p[i]);
}


/* ------------------------------------------------------------------ */
/* safetensors and Hugging Face directory writer                        */

typedef struct {
    char name[160];
    ref_dtype dtype;
    int ndim;
    int64_t shape[4];
    unsigned char *data;
    size_t nbytes;
} ref_st_tensor;

typedef struct {
    ref_st_tensor *t;
    int n, cap;
} ref_st_list;

/* Appends tensor `name` of the given shape from n doubles, rounding them in
 * place to the stored dtype (so the caller's reference uses stored values).
 * transpose != 0 swaps a 2-d shape (and the data) to make a wrong layout. */
static inline void ref_st_add(ref_st_list *L, const char *name, ref_dtype d, int ndim,
                              const int64_t *shape, double *v, int transpose)
{
    if (L->n == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 64;
        L->t = realloc(L->t, (size_t)L->cap * sizeof *L->t);
    }
    ref_st_tensor *t = &L->t[L->n++];
    size_t n = 1;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = d;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    t->nbytes = n * ref_dtype_size(d);
    t->data = malloc(t->nbytes ? t->nbytes : 1);
    for (size_t i = 0; i < n; i++)
        v[i] = ref_round(v[i], d);
    if (transpose && ndim == 2) {
        int64_t R = shape[0], K = shape[1];
        t->shape[0] = K;
        t->shape[1] = R;
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < K; j++)
                ref_encode(t->data + (size_t)(j * R + i) * ref_dtype_size(d), v[i * K + j], d);
    } else {
        for (size_t i = 0; i < n; i++)
            ref_encode(t->data + i * ref_dtype_size(d), v[i], d);
    }
}

static inline void ref_st_list_free(ref_st_list *L)
{
    for (int i = 0; i < L->n; i++)
        free(L->t[i].data);
    free(L->t);
    memset(L, 0, sizeof *L);
}

/* printf-append to a growing heap string. */
static inline void ref_cat(char **s, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static inline void ref_cat(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(*s ? *s + *len : NULL, *s ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (*s && *len + (size_t)k < *cap) {
            *len += (size_t)k;
            return;
        }
        *cap = 2 * (*cap + (size_t)k + 64);
        *s = realloc(*s, *cap);
    }
}

/* Writes tensors t[0..n) as one safetensors file: u64 LE header length, the
 * JSON header (with "__metadata__": {"format": "pt"}) padded with spaces to a
 * multiple of 8, then the data in list order.  Returns the file size. */
static inline size_t ref_st_write(const char *path, const ref_st_tensor *t, int n)
{
    char *h = NULL;
    size_t len = 0, cap = 0, off = 0;
    ref_cat(&h, &len, &cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        ref_cat(&h, &len, &cap, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name,
                ref_dtype_name(t[i].dtype));
        for (int k = 0; k < t[i].ndim; k++)
            ref_cat(&h, &len, &cap, "%s%lld", k ? "," : "", (long long)t[i].shape[k]);
        ref_cat(&h, &len, &cap, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    ref_cat(&h, &len, &cap, "}");
    while (len % 8)
        ref_cat(&h, &len, &cap, " ");
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "ref_st_write: cannot open %s\n", path);
        abort();
    }
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)len >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(h, 1, len, f);
    for (int i = 0; i < n; i++)
        fwrite(t[i].data, 1, t[i].nbytes, f);
    if (fclose(f) != 0)
        abort();
    free(h);
    return 8 + len + off;
}

/* Appends key as prefix + key, unless it is skip_key (left out); a 2-d key
 * equal to transpose_key is stored transposed (a wrong layout). */
static inline void ref_st_add_key(ref_st_list *L, const char *prefix, const char *key, ref_dtype d,
                                  const char *skip_key, const char *transpose_key, int ndim,
                                  const int64_t *shape, double *v)
{
    char name[160];
    if (skip_key && strcmp(key, skip_key) == 0)
        return;
    int transpose = transpose_key && strcmp(key, transpose_key) == 0;
    snprintf(name, sizeof name, "%s%s", prefix, key);
    ref_st_add(L, name, d, ndim, shape, v, transpose);
}

/* Writes L's tensors into the existing directory dir, then frees L:
 * model.safetensors, or (shards == 2) two halves
 * model-0000N-of-00002.safetensors and model.safetensors.index.json naming
 * each tensor's file. */
static inline void ref_hf_write_tensors(const char *dir, ref_st_list *L, int shards)
{
    char path[1024];
    if (shards != 2) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ref_st_write(path, L->t, L->n);
        ref_st_list_free(L);
        return;
    }
    static const char *const names[2] = {"model-00001-of-00002.safetensors",
                                         "model-00002-of-00002.safetensors"};
    int half = L->n / 2;
    size_t total = 0, len = 0, cap = 0;
    char *ix = NULL;
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[s]);
        ref_st_write(path, L->t + (s ? half : 0), s ? L->n - half : half);
    }
    for (int i = 0; i < L->n; i++)
        total += L->t[i].nbytes;
    ref_cat(&ix, &len, &cap, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {", total);
    for (int i = 0; i < L->n; i++)
        ref_cat(&ix, &len, &cap, "%s\n    \"%s\": \"%s\"", i ? "," : "", L->t[i].name,
                names[i >= half]);
    ref_cat(&ix, &len, &cap, "\n  }\n}\n");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fputs(ix, f);
    fclose(f);
    free(ix);
    ref_st_list_free(L);
}

/* ------------------------------------------------------------------ */
/* LoRA adapters                                                        */

/* The linear maps a block has at most: GPT-2 4, Llama 7. */
enum { REF_MAX_LIN = 8 };

/* At most 64 layers: enough for the tiny test models.  Indexed by layer and
 * by the architecture's linear number (REF_C_ATTN.., RL_Q..). */
typedef struct {
    int r;
    double scale;
    double *A[64][REF_MAX_LIN];      /* [r, in], NULL when the linear is not adapted */
    double *B[64][REF_MAX_LIN];      /* [out, r] */
    double *mask[64][REF_MAX_LIN];   /* [B*T, in] dropout mask on the LoRA input, or NULL */
} ref_lora;

static inline void ref_lora_free(ref_lora *lo)
{
    for (int l = 0; l < 64; l++)
        for (int k = 0; k < REF_MAX_LIN; k++) {
            free(lo->A[l][k]);
            free(lo->B[l][k]);
            free(lo->mask[l][k]);
        }
    memset(lo, 0, sizeof *lo);
}

/* The layer and linear of the end of a module path, num: a layer number, a
 * dot, then one of the n_lin names name(k) ("3.mlp.c_proj").  -1 (layer and
 * lin -1) when it is not that. */
static inline int ref_parse_layer_lin(const char *num, const char *(*name)(int), int n_lin,
                                      int *layer, int *lin)
{
    char *end;
    *layer = *lin = -1;
    long l = strtol(num, &end, 10);
    if (end == num || *end != '.')
        return -1;
    for (int k = 0; k < n_lin; k++)
        if (strcmp(end + 1, name(k)) == 0) {
            *layer = (int)l;
            *lin = k;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------------ */
/* float64 pieces of the forward pass                                   */

/* A linear map plus LoRA, for either weight layout:
 *   y[N,out] = x[N,in] W + b + s ((x * mask) A^T) B^T,
 * with W's element (i, j) (input i, output j) at W[i * wi + j * wj]:
 * wi = out, wj = 1 for Conv1D [in, out]; wi = 1, wj = in for Linear [out, in].
 * bias, A (then B, mask) may be NULL. */
static inline void ref_linear_lora(double *y, const double *x, const double *W, size_t wi,
                                   size_t wj, const double *bias, const double *A,
                                   const double *Bm, const double *mask, int r, double s, int N,
                                   int in, int out)
{
    double *u = malloc((size_t)(r > 0 ? r : 1) * sizeof *u);
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * in;
        double *yr = y + (size_t)n * out;
        for (int j = 0; j < out; j++) {
            double acc = bias ? bias[j] : 0.0;
            for (int i = 0; i < in; i++)
                acc += xr[i] * W[(size_t)i * wi + (size_t)j * wj];
            yr[j] = acc;
        }
        if (!A)
            continue;
        for (int k = 0; k < r; k++) {
            double acc = 0;
            for (int i = 0; i < in; i++)
                acc += (mask ? xr[i] * mask[(size_t)n * in + i] : xr[i]) * A[(size_t)k * in + i];
            u[k] = acc;
        }
        for (int j = 0; j < out; j++) {
            double acc = 0;
            for (int k = 0; k < r; k++)
                acc += u[k] * Bm[(size_t)j * r + k];
            yr[j] += s * acc;
        }
    }
    free(u);
}

/* Linear k of layer l with lo's adapter on it, if any (lo may be NULL). */
static inline void ref_linear_adapted(double *y, const double *x, const double *W, size_t wi,
                                      size_t wj, const double *bias, const ref_lora *lo, int l,
                                      int k, int N, int in, int out)
{
    ref_linear_lora(y, x, W, wi, wj, bias, lo ? lo->A[l][k] : NULL, lo ? lo->B[l][k] : NULL,
                    lo ? lo->mask[l][k] : NULL, lo ? lo->r : 0, lo ? lo->scale : 0, N, in, out);
}

/* Causal attention over B sequences of T positions, H query heads of size D
 * reading kv head h / (H / Hk): for each head softmax(q k^T / sqrt(D)) over
 * keys j <= t, times v.  Row n of q, k, v and out starts at n * q_stride,
 * n * kv_stride, n * kv_stride and n * out_stride; head h at h * D. */
static inline void ref_causal_attention(double *out, size_t out_stride, const double *q,
                                        size_t q_stride, const double *k, const double *v,
                                        size_t kv_stride, int B, int T, int H, int Hk, int D)
{
    int n_rep = H / Hk;
    double *p = malloc((size_t)T * sizeof *p), sc = 1.0 / sqrt((double)D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / n_rep;
            for (int t = 0; t < T; t++) {
                const double *qr = q + (size_t)(b * T + t) * q_stride + (size_t)h * D;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const double *kr = k + (size_t)(b * T + j) * kv_stride + (size_t)g * D;
                    double d = 0;
                    for (int i = 0; i < D; i++)
                        d += qr[i] * kr[i];
                    p[j] = d * sc;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += (p[j] = exp(p[j] - mx));
                double *o = out + (size_t)(b * T + t) * out_stride + (size_t)h * D;
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++)
                        acc += p[j] / sum * v[(size_t)(b * T + j) * kv_stride + (size_t)g * D + i];
                    o[i] = acc;
                }
            }
        }
    free(p);
}

/* Sum over the B*T positions of the cross entropy of logits = x E^T at the
 * targets, x [N,C] (already final-normed), E [V,C].  A target < 0 is masked
 * out (a prompt or padding position): it adds nothing. */
static inline double ref_xent_sum(const double *x, const double *E, const int32_t *tgt, int N,
                                  int C, int V)
{
    double *z = malloc((size_t)V * sizeof *z), loss = 0;
    for (int n = 0; n < N; n++) {
        if (tgt[n] < 0)
            continue;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) {
            double acc = 0;
            for (int i = 0; i < C; i++)
                acc += x[(size_t)n * C + i] * E[(size_t)v * C + i];
            z[v] = acc;
            mx = fmax(mx, acc);
        }
        for (int v = 0; v < V; v++)
            sum += exp(z[v] - mx);
        loss += mx + log(sum) - z[tgt[n]];
    }
    free(z);
    return loss;
}

/* The model heads on the final-normed hidden states h [N,C] (malloc'd, freed
 * here), E [V,C]: the summed cross entropy at tgt [N], and the logits [V] of
 * position pos. */
static inline double ref_head_loss(double *h, const double *E, const int32_t *tgt, int N, int C,
                                   int V)
{
    double loss = ref_xent_sum(h, E, tgt, N, C, V);
    free(h);
    return loss;
}

static inline void ref_head_logits(double *h, const double *E, int pos, int C, int V,
                                   double *logits)
{
    for (int v = 0; v < V; v++) {
        double acc = 0;
        for (int i = 0; i < C; i++)
            acc += h[(size_t)pos * C + i] * E[(size_t)v * C + i];
        logits[v] = acc;
    }
    free(h);
}

#endif
