/* ref_gpt2.h - an independent float64 GPT-2 (+ LoRA) and a Hugging Face
 * directory writer, to check the project's model code against.
 *
 * Header-only (static inline functions) like tests/ref_common.h, whose
 * generic parts it uses (random numbers, dtypes, the hand-written safetensors
 * writer, LoRA, the linear map, attention, the summed cross-entropy).
 * Nothing here calls the project: config.json is written by hand from the
 * format, and the forward pass is written the way Hugging Face's
 * GPT2LMHeadModel computes it, in double precision with plain loops:
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

#include "ref_common.h"

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
            ref_fill_linear(&r, in, out, 1, &b->w[k], &b->b[k]);
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
        ref_free_each(b->w, REF_N_LIN);
        ref_free_each(b->b, REF_N_LIN);
    }
    free(m->blk);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* Hugging Face directory writer                                        */

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
    ref_st_add_key(L, o->prefix && strncmp(key, "lm_head", 7) ? "transformer." : "", key, o->dtype,
                   o->skip_key, o->transpose_key, ndim, shape, v);
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
    ref_gpt2_tensors(m, o, &L);
    ref_gpt2_write_config(m, dir, o);
    ref_hf_write_tensors(dir, &L, o->shards);
}

/* ------------------------------------------------------------------ */
/* LoRA adapters: ref_lora (tests/ref_common.h), linears REF_C_ATTN..   */

/* Maps a module path ("transformer.h.3.mlp.c_proj" or "h.3.mlp.c_proj") to
 * its layer and linear; -1 when it is not one of the four GPT-2 linears. */
static inline int ref_module_parse(const char *path, int *layer, int *lin)
{
    const char *p = path;
    while (*p && !(p[0] == 'h' && p[1] == '.' && (p == path || p[-1] == '.')))
        p++;
    return ref_parse_layer_lin(*p ? p + 2 : "", ref_lin_name, REF_N_LIN, layer, lin);
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

/* qkv [B*T, 3C] (q | k | v, head h at columns h*hd..) -> out [B*T, C]:
 * per head softmax(q k^T / sqrt(hd)) over keys j <= t, times v. */
static inline void ref_attention(double *out, const double *qkv, int B, int T, int C, int H)
{
    size_t row = (size_t)3 * C;
    ref_causal_attention(out, (size_t)C, qkv, row, qkv + C, qkv + 2 * C, row, B, T, H, H, C / H);
}

/* gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
static inline double ref_gelu_new(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* Linear k of layer l (Conv1D, torch.addmm(b, x, W)) with its adapter, if any. */
static inline void ref_block_linear(const ref_gpt2 *m, const ref_lora *lo, int l, int k,
                                    double *y, const double *x, int N)
{
    int in, out;
    ref_lin_shape(m->cfg.n_embd, k, &in, &out);
    ref_linear_adapted(y, x, m->blk[l].w[k], (size_t)out, 1, m->blk[l].b[k], lo, l, k, N, in, out);
}

/* The final layer-normed hidden states [B*T, n_embd] of inp [B,T]
 * (T <= n_positions), malloc'd; lo may be NULL. */
static inline double *ref_gpt2_hidden(const ref_gpt2 *m, const ref_lora *lo, const int32_t *inp,
                                      int B, int T)
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
    free(x);
    free(qkv);
    free(y);
    free(f);
    return a;
}

/* Summed token loss of inp/tgt [B,T] (T <= n_positions); lo may be NULL. */
static inline double ref_gpt2_loss(const ref_gpt2 *m, const ref_lora *lo, const int32_t *inp,
                                   const int32_t *tgt, int B, int T)
{
    return ref_head_loss(ref_gpt2_hidden(m, lo, inp, B, T), m->lm_head ? m->lm_head : m->wte, tgt,
                         B * T, m->cfg.n_embd, m->cfg.vocab);
}

/* logits [V] of position pos of the single sequence inp [T]. */
static inline void ref_gpt2_logits(const ref_gpt2 *m, const ref_lora *lo, const int32_t *inp,
                                   int T, int pos, double *logits)
{
    ref_head_logits(ref_gpt2_hidden(m, lo, inp, 1, T), m->lm_head ? m->lm_head : m->wte, pos,
                    m->cfg.n_embd, m->cfg.vocab, logits);
}

#endif
