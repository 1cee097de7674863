/* ref_gpt2.h - an independent float64 GPT-2 (+ LoRA) and a Hugging Face
 * directory writer, to check the project's model code against.
 *
 * Header-only (static inline functions) so that any tests/test_*.c can use it
 * without changing the test build.  Nothing here calls the project: the
 * safetensors bytes and config.json are written by hand from the format
 * (u64 LE header length, JSON header, data), and the forward pass is written
 * the way Hugging Face's GPT2LMHeadModel computes it, in double precision with
 * plain loops:
 *
 *   x      = wte[tok] + wpe[pos]
 *   block  : a = LN1(x); qkv = a Wattn + b (Conv1D, W [C,3C]); split q,k,v;
 *            per head: softmax(q k^T / sqrt(hd), causal) v; merge heads;
 *            x += merged Wproj + b;
 *            m = LN2(x); x += gelu_new(m Wfc + b) Wmproj + b
 *   logits = LN_f(x) E^T  (E = wte when tied, lm_head otherwise)
 *   loss   = sum over all B*T tokens of -log softmax(logits)[target]
 *
 * LoRA on any of the four linear maps of a block (PEFT, fan_in_fan_out):
 *   y += s * (x A^T) B^T,  A [r,in], B [out,r]. */
#ifndef PSLORA_REF_GPT2_H
#define PSLORA_REF_GPT2_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* random numbers (splitmix64), independent of common/rng.c             */

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

/* ------------------------------------------------------------------ */
/* the model                                                            */

/* The four linear maps of a block, in Conv1D layout [in, out]. */
enum { REF_C_ATTN, REF_ATTN_PROJ, REF_C_FC, REF_MLP_PROJ, REF_N_LIN };

static inline const char *ref_lin_name(int k)
{
    static const char *const names[REF_N_LIN] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                 "mlp.c_proj"};
    return names[k];
}

typedef struct {
    int n_layer, n_embd, n_head, n_positions, vocab;
    double eps;
    int untied;     /* 1: a separate lm_head [V,C] (tie_word_embeddings false) */
} ref_config;

/* in/out sizes of linear k for embedding width C. */
static inline void ref_lin_shape(int C, int k, int *in, int *out)
{
    static const int in_mul[REF_N_LIN] = {1, 1, 1, 4}, out_mul[REF_N_LIN] = {3, 1, 4, 1};
    *in = in_mul[k] * C;
    *out = out_mul[k] * C;
}

typedef struct {
    double *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    double *w[REF_N_LIN];   /* [in, out] */
    double *b[REF_N_LIN];   /* [out] */
} ref_block;

typedef struct {
    ref_config cfg;
    double *wte, *wpe, *lnf_w, *lnf_b, *lm_head;   /* lm_head NULL when tied */
    ref_block *blk;
} ref_gpt2;

static inline double *ref_fill(ref_rng *r, size_t n, double mean, double std)
{
    double *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = mean + std * ref_rng_normal(r);
    return p;
}

/* Random weights, large enough that attention, norms and logits are far from
 * trivial: embeddings N(0, 0.3^2), linear W N(0, 1/in), biases N(0, 0.1^2),
 * norm gains N(1, 0.2^2). */
static inline void ref_gpt2_init(ref_gpt2 *m, const ref_config *c, uint64_t seed)
{
    ref_rng r = {seed};
    int C = c->n_embd;
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->wte = ref_fill(&r, (size_t)c->vocab * C, 0, 0.3);
    m->wpe = ref_fill(&r, (size_t)c->n_positions * C, 0, 0.3);
    m->blk = calloc((size_t)c->n_layer, sizeof *m->blk);
    for (int l = 0; l < c->n_layer; l++) {
        ref_block *b = &m->blk[l];
        b->ln1_w = ref_fill(&r, C, 1, 0.2);
        b->ln1_b = ref_fill(&r, C, 0, 0.1);
        b->ln2_w = ref_fill(&r, C, 1, 0.2);
        b->ln2_b = ref_fill(&r, C, 0, 0.1);
        for (int k = 0; k < REF_N_LIN; k++) {
            int in, out;
            ref_lin_shape(C, k, &in, &out);
            b->w[k] = ref_fill(&r, (size_t)in * out, 0, 1.0 / sqrt((double)in));
            b->b[k] = ref_fill(&r, out, 0, 0.1);
        }
    }
    m->lnf_w = ref_fill(&r, C, 1, 0.2);
    m->lnf_b = ref_fill(&r, C, 0, 0.1);
    if (c->untied)
        m->lm_head = ref_fill(&r, (size_t)c->vocab * C, 0, 0.3);
}

static inline void ref_gpt2_free(ref_gpt2 *m)
{
    free(m->wte);
    free(m->wpe);
    free(m->lnf_w);
    free(m->lnf_b);
    free(m->lm_head);
    for (int l = 0; m->blk && l < m->cfg.n_layer; l++) {
        ref_block *b = &m->blk[l];
        free(b->ln1_w);
        free(b->ln1_b);
        free(b->ln2_w);
        free(b->ln2_b);
        for (int k = 0; k < REF_N_LIN; k++) {
            free(b->w[k]);
            free(b->b[k]);
        }
    }
    free(m->blk);
    memset(m, 0, sizeof *m);
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

/* How to lay out a Hugging Face directory. */
typedef struct {
    int prefix;                 /* "transformer." in front of every key but lm_head */
    int attn_bias;              /* add h.N.attn.bias [1,1,T,T] and h.N.attn.masked_bias [] */
    ref_dtype dtype;            /* storage dtype of every tensor */
    int shards;                 /* 0: model.safetensors; 2: two shards + index json */
    int omit_n_head;            /* config.json without n_head */
    const char *skip_key;       /* key (without prefix) left out of the file */
    const char *transpose_key;  /* 2-d key (without prefix) stored transposed */
} ref_hf_opts;

static inline void ref_hf_add(ref_st_list *L, const ref_hf_opts *o, const char *key, int ndim,
                              const int64_t *shape, double *v)
{
    char name[160];
    if (o->skip_key && strcmp(key, o->skip_key) == 0)
        return;
    int transpose = o->transpose_key && strcmp(key, o->transpose_key) == 0;
    snprintf(name, sizeof name, "%s%s", o->prefix && strncmp(key, "lm_head", 7) ? "transformer." : "",
             key);
    ref_st_add(L, name, o->dtype, ndim, shape, v, transpose);
}

/* Lists m's tensors in Hugging Face GPT-2 names and shapes, rounding m's
 * weights in place to the stored dtype. */
static inline void ref_gpt2_tensors(ref_gpt2 *m, const ref_hf_opts *o, ref_st_list *L)
{
    const ref_config *c = &m->cfg;
    int64_t C = c->n_embd, T = c->n_positions;
    char key[128];
    ref_hf_add(L, o, "wte.weight", 2, (int64_t[]){c->vocab, C}, m->wte);
    ref_hf_add(L, o, "wpe.weight", 2, (int64_t[]){T, C}, m->wpe);
    for (int l = 0; l < c->n_layer; l++) {
        ref_block *b = &m->blk[l];
#define REF_KEY(s) (snprintf(key, sizeof key, "h.%d.%s", l, s), key)
        ref_hf_add(L, o, REF_KEY("ln_1.weight"), 1, &C, b->ln1_w);
        ref_hf_add(L, o, REF_KEY("ln_1.bias"), 1, &C, b->ln1_b);
        if (o->attn_bias) {
            double *mask = malloc((size_t)(T * T) * sizeof *mask), mb = -1e4;
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < T; j++)
                    mask[i * T + j] = j <= i;
            ref_hf_add(L, o, REF_KEY("attn.bias"), 4, (int64_t[]){1, 1, T, T}, mask);
            ref_hf_add(L, o, REF_KEY("attn.masked_bias"), 0, NULL, &mb);
            free(mask);
        }
        for (int k = 0; k < REF_N_LIN; k++) {
            int in, out;
            char name[64];
            ref_lin_shape(c->n_embd, k, &in, &out);
            if (k == REF_C_FC) {    /* HF order: ln_2 comes before the mlp */
                ref_hf_add(L, o, REF_KEY("ln_2.weight"), 1, &C, b->ln2_w);
                ref_hf_add(L, o, REF_KEY("ln_2.bias"), 1, &C, b->ln2_b);
            }
            snprintf(name, sizeof name, "%s.weight", ref_lin_name(k));
            ref_hf_add(L, o, REF_KEY(name), 2, (int64_t[]){in, out}, b->w[k]);
            snprintf(name, sizeof name, "%s.bias", ref_lin_name(k));
            ref_hf_add(L, o, REF_KEY(name), 1, (int64_t[]){out}, b->b[k]);
        }
#undef REF_KEY
    }
    ref_hf_add(L, o, "ln_f.weight", 1, &C, m->lnf_w);
    ref_hf_add(L, o, "ln_f.bias", 1, &C, m->lnf_b);
    if (m->lm_head)
        ref_hf_add(L, o, "lm_head.weight", 2, (int64_t[]){c->vocab, C}, m->lm_head);
}

/* DIR/config.json as transformers writes it for GPT2LMHeadModel. */
static inline void ref_gpt2_write_config(const ref_gpt2 *m, const char *dir, const ref_hf_opts *o)
{
    const ref_config *c = &m->cfg;
    char path[1024], head[64] = "";
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!o->omit_n_head)
        snprintf(head, sizeof head, "  \"n_head\": %d,\n", c->n_head);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f,
            "{\n  \"activation_function\": \"gelu_new\",\n"
            "  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"attn_pdrop\": 0.1,\n"
            "  \"bos_token_id\": %d,\n  \"embd_pdrop\": 0.1,\n  \"eos_token_id\": %d,\n"
            "  \"initializer_range\": 0.02,\n  \"layer_norm_epsilon\": %.17g,\n"
            "  \"model_type\": \"gpt2\",\n  \"n_ctx\": %d,\n  \"n_embd\": %d,\n%s"
            "  \"n_inner\": null,\n  \"n_layer\": %d,\n  \"n_positions\": %d,\n"
            "  \"resid_pdrop\": 0.1,\n  \"summary_type\": \"cls_index\",\n%s"
            "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.40.0\",\n"
            "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
            c->vocab - 1, c->vocab - 1, c->eps, c->n_positions, c->n_embd, head, c->n_layer,
            c->n_positions, c->untied ? "  \"tie_word_embeddings\": false,\n" : "",
            ref_dtype_torch(o->dtype), c->vocab);
    if (fclose(f) != 0)
        abort();
}

/* Writes a Hugging Face GPT-2 directory for m into the existing directory
 * dir (config.json + model.safetensors, or two shards and
 * model.safetensors.index.json).  m's weights are rounded in place to the
 * stored dtype, so the float64 reference then uses exactly the stored values. */
static inline void ref_gpt2_write_hf(ref_gpt2 *m, const char *dir, const ref_hf_opts *o)
{
    ref_st_list L = {0};
    char path[1024];
    ref_gpt2_tensors(m, o, &L);
    ref_gpt2_write_config(m, dir, o);
    if (o->shards != 2) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        ref_st_write(path, L.t, L.n);
    } else {
        static const char *const names[2] = {"model-00001-of-00002.safetensors",
                                             "model-00002-of-00002.safetensors"};
        int half = L.n / 2;
        size_t total = 0;
        char *ix = NULL;
        size_t len = 0, cap = 0;
        for (int s = 0; s < 2; s++) {
            snprintf(path, sizeof path, "%s/%s", dir, names[s]);
            ref_st_write(path, L.t + (s ? half : 0), s ? L.n - half : half);
        }
        for (int i = 0; i < L.n; i++)
            total += L.t[i].nbytes;
        ref_cat(&ix, &len, &cap, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {",
                total);
        for (int i = 0; i < L.n; i++)
            ref_cat(&ix, &len, &cap, "%s\n    \"%s\": \"%s\"", i ? "," : "", L.t[i].name,
                    names[i >= half]);
        ref_cat(&ix, &len, &cap, "\n  }\n}\n");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        FILE *f = fopen(path, "w");
        if (!f)
            abort();
        fputs(ix, f);
        fclose(f);
        free(ix);
    }
    ref_st_list_free(&L);
}

/* ------------------------------------------------------------------ */
/* LoRA adapters                                                        */

/* At most 64 layers: enough for the tiny test models. */
typedef struct {
    int r;
    double scale;
    double *A[64][REF_N_LIN];   /* [r, in], NULL when the linear is not adapted */
    double *B[64][REF_N_LIN];   /* [out, r] */
} ref_lora;

/* Maps a module path ("transformer.h.3.mlp.c_proj" or "h.3.mlp.c_proj") to
 * its layer and linear; -1 when it is not one of the four GPT-2 linears. */
static inline int ref_module_parse(const char *path, int *layer, int *lin)
{
    const char *p = path;
    *layer = *lin = -1;
    while (*p && !(p[0] == 'h' && p[1] == '.' && (p == path || p[-1] == '.')))
        p++;
    if (!*p)
        return -1;
    char *end;
    long l = strtol(p + 2, &end, 10);
    if (end == p + 2 || *end != '.')
        return -1;
    for (int k = 0; k < REF_N_LIN; k++)
        if (strcmp(end + 1, ref_lin_name(k)) == 0) {
            *layer = (int)l;
            *lin = k;
            return 0;
        }
    return -1;
}

static inline void ref_lora_free(ref_lora *lo)
{
    for (int l = 0; l < 64; l++)
        for (int k = 0; k < REF_N_LIN; k++) {
            free(lo->A[l][k]);
            free(lo->B[l][k]);
        }
    memset(lo, 0, sizeof *lo);
}

/* ------------------------------------------------------------------ */
/* float64 forward                                                      */

/* y[N,C] = (x - mean) / sqrt(var + eps) * w + b, biased variance (torch). */
static inline void ref_layernorm(double *y, const double *x, const double *w, const double *b,
                                 int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double mean = 0, var = 0;
        for (int i = 0; i < C; i++)
            mean += xr[i];
        mean /= C;
        for (int i = 0; i < C; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= C;
        double rs = 1.0 / sqrt(var + eps);
        for (int i = 0; i < C; i++)
            y[(size_t)n * C + i] = (xr[i] - mean) * rs * w[i] + b[i];
    }
}

/* Conv1D (torch.addmm(b, x, W)) plus LoRA: y[N,out] = x[N,in] W[in,out] + b
 * + s (x A^T) B^T when A != NULL. */
static inline void ref_linear(double *y, const double *x, const double *W, const double *bias,
                              const double *A, const double *B, int r, double s, int N, int in,
                              int out)
{
    double *u = malloc((size_t)(r > 0 ? r : 1) * sizeof *u);
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * in;
        double *yr = y + (size_t)n * out;
        for (int j = 0; j < out; j++) {
            double acc = bias[j];
            for (int i = 0; i < in; i++)
                acc += xr[i] * W[(size_t)i * out + j];
            yr[j] = acc;
        }
        if (!A)
            continue;
        for (int k = 0; k < r; k++) {
            double acc = 0;
            for (int i = 0; i < in; i++)
                acc += xr[i] * A[(size_t)k * in + i];
            u[k] = acc;
        }
        for (int j = 0; j < out; j++) {
            double acc = 0;
            for (int k = 0; k < r; k++)
                acc += u[k] * B[(size_t)j * r + k];
            yr[j] += s * acc;
        }
    }
    free(u);
}

/* qkv [B*T, 3C] (q | k | v, head h at columns h*hd..) -> out [B*T, C]:
 * per head softmax(q k^T / sqrt(hd)) over keys j <= t, times v. */
static inline void ref_attention(double *out, const double *qkv, int B, int T, int C, int H)
{
    int hd = C / H;
    double *p = malloc((size_t)T * sizeof *p), sc = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const double *q = qkv + (size_t)(b * T + t) * 3 * C + h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    const double *k = qkv + (size_t)(b * T + j) * 3 * C + C + h * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++)
                        d += q[i] * k[i];
                    p[j] = d * sc;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j <= t; j++) {
                    p[j] = exp(p[j] - mx);
                    sum += p[j];
                }
                double *o = out + (size_t)(b * T + t) * C + h * hd;
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int j = 0; j <= t; j++)
                        acc += p[j] / sum * qkv[(size_t)(b * T + j) * 3 * C + 2 * C + h * hd + i];
                    o[i] = acc;
                }
            }
    free(p);
}

/* gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static inline double ref_gelu_new(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* Linear k of layer l with its adapter, if any. */
static inline void ref_block_linear(const ref_gpt2 *m, const ref_lora *lo, int l, int k,
                                    double *y, const double *x, int N)
{
    int in, out;
    ref_lin_shape(m->cfg.n_embd, k, &in, &out);
    const double *A = lo ? lo->A[l][k] : NULL, *Bm = lo ? lo->B[l][k] : NULL;
    ref_linear(y, x, m->blk[l].w[k], m->blk[l].b[k], A, Bm, lo ? lo->r : 0,
               lo ? lo->scale : 0, N, in, out);
}

/* Sum over the B*T positions of the cross entropy of logits = x E^T at the
 * targets, x [N,C] (already final-normed), E [V,C]. */
static inline double ref_xent_sum(const double *x, const double *E, const int32_t *tgt, int N,
                                  int C, int V)
{
    double *z = malloc((size_t)V * sizeof *z), loss = 0;
    for (int n = 0; n < N; n++) {
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

/* Summed token loss of inp/tgt [B,T] (T <= n_positions); lo may be NULL. */
static inline double ref_gpt2_loss(const ref_gpt2 *m, const ref_lora *lo, const int32_t *inp,
                                   const int32_t *tgt, int B, int T)
{
    const ref_config *c = &m->cfg;
    int C = c->n_embd, N = B * T;
    double *x = malloc((size_t)N * C * sizeof *x), *a = malloc((size_t)N * C * sizeof *a);
    double *qkv = malloc((size_t)N * 3 * C * sizeof *qkv), *y = malloc((size_t)N * C * sizeof *y);
    double *f = malloc((size_t)N * 4 * C * sizeof *f);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            x[(size_t)n * C + i] = m->wte[(size_t)inp[n] * C + i] + m->wpe[(size_t)(n % T) * C + i];
    for (int l = 0; l < c->n_layer; l++) {
        const ref_block *b = &m->blk[l];
        ref_layernorm(a, x, b->ln1_w, b->ln1_b, N, C, c->eps);
        ref_block_linear(m, lo, l, REF_C_ATTN, qkv, a, N);
        ref_attention(a, qkv, B, T, C, c->n_head);
        ref_block_linear(m, lo, l, REF_ATTN_PROJ, y, a, N);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += y[i];
        ref_layernorm(a, x, b->ln2_w, b->ln2_b, N, C, c->eps);
        ref_block_linear(m, lo, l, REF_C_FC, f, a, N);
        for (size_t i = 0; i < (size_t)N * 4 * C; i++)
            f[i] = ref_gelu_new(f[i]);
        ref_block_linear(m, lo, l, REF_MLP_PROJ, y, f, N);
        for (size_t i = 0; i < (size_t)N * C; i++)
            x[i] += y[i];
    }
    ref_layernorm(a, x, m->lnf_w, m->lnf_b, N, C, c->eps);
    double loss = ref_xent_sum(a, m->lm_head ? m->lm_head : m->wte, tgt, N, C, c->vocab);
    free(x);
    free(a);
    free(qkv);
    free(y);
    free(f);
    return loss;
}

#endif
