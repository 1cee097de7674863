/* ref_llama.h - an independent float64 Llama (+ LoRA) and a Hugging Face
 * LlamaForCausalLM directory writer, to check the project's model code against.
 *
 * Header-only like tests/ref_common.h, whose generic parts it uses (random
 * numbers, dtype rounding, the hand-written safetensors writer, LoRA, the
 * linear map, attention, the summed cross-entropy).  Nothing here calls the
 * project.  The forward pass follows
 * transformers' modeling_llama.py step by step, in double precision:
 *
 *   x      = embed_tokens[tok]
 *   block  : h = RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w_in
 *            q = h Wq^T (+bq) -> [T, H, D];  k, v = h Wk^T, h Wv^T -> [T, Hk, D]
 *            inv_freq[i] = 1 / theta^(2i/D), i < D/2;  emb = cat(freqs, freqs)
 *            q = q cos(emb) + rotate_half(q) sin(emb)  (same for k),
 *            rotate_half(v) = cat(-v[D/2:], v[:D/2])
 *            repeat_kv: query head h reads kv head h / (H/Hk)
 *            a = softmax(q k^T / sqrt(D), causal) v; x += a Wo^T (+bo)
 *            h = RMSNorm(x) w_post;  x += (silu(h Wg^T) * (h Wu^T)) Wd^T
 *   logits = RMSNorm(x) w_norm E^T  (E = embed_tokens when tied, lm_head otherwise)
 *   loss   = sum over all B*T tokens of -log softmax(logits)[target]
 *
 * LoRA on any of the seven linear maps (PEFT, fan_in_fan_out false):
 *   y += s * ((x * mask) A^T) B^T,  A [r,in], B [out,r], mask optional (dropout). */
#ifndef PSLORA_REF_LLAMA_H
#define PSLORA_REF_LLAMA_H

#include "ref_common.h"

/* The seven linear maps of a block, torch Linear layout [out, in]. */
enum { RL_Q, RL_K, RL_V, RL_O, RL_GATE, RL_UP, RL_DOWN, RL_N_LIN };

static inline const char *rl_lin_name(int k)
{
    static const char *const names[RL_N_LIN] = {"self_attn.q_proj", "self_attn.k_proj",
                                                "self_attn.v_proj", "self_attn.o_proj",
                                                "mlp.gate_proj",    "mlp.up_proj",
                                                "mlp.down_proj"};
    return names[k];
}

typedef struct {
    int n_layer, hidden, n_head, n_kv_head, head_dim, inter, vocab, max_pos;
    double eps, theta;
    int untied;                 /* a separate lm_head [V, hidden] */
    int attn_bias, mlp_bias;    /* biases on q,k,v,o / gate,up,down */
} rl_config;

/* in/out sizes of linear k. */
static inline void rl_lin_shape(const rl_config *c, int k, int *in, int *out)
{
    int C = c->hidden, q = c->n_head * c->head_dim, kv = c->n_kv_head * c->head_dim, I = c->inter;
    const int ins[RL_N_LIN] = {C, C, C, q, C, C, I}, outs[RL_N_LIN] = {q, kv, kv, C, I, I, C};
    *in = ins[k];
    *out = outs[k];
}

static inline int rl_has_bias(const rl_config *c, int k) { return k < RL_GATE ? c->attn_bias : c->mlp_bias; }

typedef struct {
    double *in_norm, *post_norm;
    double *w[RL_N_LIN];   /* [out, in] */
    double *b[RL_N_LIN];   /* [out], NULL without bias */
} rl_block;

typedef struct {
    rl_config cfg;
    double *embed, *norm, *lm_head;   /* lm_head NULL when tied */
    rl_block *blk;
} ref_llama;

/* Random weights far from trivial: embeddings N(0, 0.5^2), W N(0, 1/in),
 * biases N(0, 0.1^2), norm gains N(1, 0.2^2). */
static inline void ref_llama_init(ref_llama *m, const rl_config *c, uint64_t seed)
{
    ref_rng r = {seed};
    int C = c->hidden;
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->embed = ref_fill(&r, (size_t)c->vocab * C, 0, 0.5);
    m->blk = calloc((size_t)c->n_layer, sizeof *m->blk);
    for (int l = 0; l < c->n_layer; l++) {
        rl_block *b = &m->blk[l];
        b->in_norm = ref_fill(&r, C, 1, 0.2);
        b->post_norm = ref_fill(&r, C, 1, 0.2);
        for (int k = 0; k < RL_N_LIN; k++) {
            int in, out;
            rl_lin_shape(c, k, &in, &out);
            ref_fill_linear(&r, in, out, rl_has_bias(c, k), &b->w[k], &b->b[k]);
        }
    }
    m->norm = ref_fill(&r, C, 1, 0.2);
    if (c->untied)
        m->lm_head = ref_fill(&r, (size_t)c->vocab * C, 0, 0.5);
}

static inline void ref_llama_free(ref_llama *m)
{
    free(m->embed);
    free(m->norm);
    free(m->lm_head);
    for (int l = 0; m->blk && l < m->cfg.n_layer; l++) {
        free(m->blk[l].in_norm);
        free(m->blk[l].post_norm);
        ref_free_each(m->blk[l].w, RL_N_LIN);
        ref_free_each(m->blk[l].b, RL_N_LIN);
    }
    free(m->blk);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* Hugging Face directory writer                                        */

typedef struct {
    ref_dtype dtype;            /* storage dtype of every tensor */
    int shards;                 /* 0: model.safetensors; 2: two shards + index json */
    int inv_freq_buffers;       /* add model.layers.N.self_attn.rotary_emb.inv_freq (old files) */
    int omit_kv_heads;          /* config.json without num_key_value_heads */
    int omit_head_dim;          /* config.json without head_dim */
    int omit_tie;               /* config.json without tie_word_embeddings (default false) */
    int omit_hidden;            /* config.json without hidden_size */
    const char *rope_scaling;   /* JSON value of rope_scaling (default null) */
    const char *hidden_act;     /* default "silu" */
    const char *model_type;     /* default "llama" */
    const char *skip_key;       /* key left out of the file */
    const char *transpose_key;  /* 2-d key stored transposed */
} rl_hf_opts;

static inline void rl_add(ref_st_list *L, const rl_hf_opts *o, const char *key, int ndim,
                          const int64_t *shape, double *v)
{
    ref_st_add_key(L, "", key, o->dtype, o->skip_key, o->transpose_key, ndim, shape, v);
}

/* m's tensors under LlamaForCausalLM keys, in transformers' order, rounding
 * m's weights in place to the stored dtype. */
static inline void ref_llama_tensors(ref_llama *m, const rl_hf_opts *o, ref_st_list *L)
{
    const rl_config *c = &m->cfg;
    int64_t C = c->hidden;
    char key[160];
    rl_add(L, o, "model.embed_tokens.weight", 2, (int64_t[]){c->vocab, C}, m->embed);
    for (int l = 0; l < c->n_layer; l++) {
        rl_block *b = &m->blk[l];
#define RL_KEY(...) (snprintf(key, sizeof key, __VA_ARGS__), key)
        rl_add(L, o, RL_KEY("model.layers.%d.input_layernorm.weight", l), 1, &C, b->in_norm);
        for (int k = 0; k < RL_N_LIN; k++) {
            int in, out;
            rl_lin_shape(c, k, &in, &out);
            if (k == RL_GATE)
                rl_add(L, o, RL_KEY("model.layers.%d.post_attention_layernorm.weight", l), 1, &C,
                       b->post_norm);
            rl_add(L, o, RL_KEY("model.layers.%d.%s.weight", l, rl_lin_name(k)), 2,
                   (int64_t[]){out, in}, b->w[k]);
            if (b->b[k])
                rl_add(L, o, RL_KEY("model.layers.%d.%s.bias", l, rl_lin_name(k)), 1,
                       (int64_t[]){out}, b->b[k]);
            if (k == RL_O && o->inv_freq_buffers) {   /* a buffer, not a weight */
                int64_t half = c->head_dim / 2;
                double *inv = malloc((size_t)half * sizeof *inv);
                for (int i = 0; i < half; i++)
                    inv[i] = 1.0 / pow(c->theta, 2.0 * i / c->head_dim);
                rl_add(L, o, RL_KEY("model.layers.%d.self_attn.rotary_emb.inv_freq", l), 1, &half,
                       inv);
                free(inv);
            }
        }
#undef RL_KEY
    }
    rl_add(L, o, "model.norm.weight", 1, &C, m->norm);
    if (m->lm_head)
        rl_add(L, o, "lm_head.weight", 2, (int64_t[]){c->vocab, C}, m->lm_head);
}

/* DIR/config.json as transformers writes it for LlamaForCausalLM. */
static inline void ref_llama_write_config(const ref_llama *m, const char *dir, const rl_hf_opts *o)
{
    const rl_config *c = &m->cfg;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n");
    fprintf(f, "  \"attention_bias\": %s,\n  \"attention_dropout\": 0.0,\n",
            c->attn_bias ? "true" : "false");
    fprintf(f, "  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n");
    if (!o->omit_head_dim)
        fprintf(f, "  \"head_dim\": %d,\n", c->head_dim);
    fprintf(f, "  \"hidden_act\": \"%s\",\n", o->hidden_act ? o->hidden_act : "silu");
    if (!o->omit_hidden)
        fprintf(f, "  \"hidden_size\": %d,\n", c->hidden);
    fprintf(f, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", c->inter);
    fprintf(f, "  \"max_position_embeddings\": %d,\n  \"mlp_bias\": %s,\n", c->max_pos,
            c->mlp_bias ? "true" : "false");
    fprintf(f, "  \"model_type\": \"%s\",\n", o->model_type ? o->model_type : "llama");
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n", c->n_head,
            c->n_layer);
    if (!o->omit_kv_heads)
        fprintf(f, "  \"num_key_value_heads\": %d,\n", c->n_kv_head);
    fprintf(f, "  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": %.17g,\n", c->eps);
    fprintf(f, "  \"rope_scaling\": %s,\n  \"rope_theta\": %.17g,\n",
            o->rope_scaling ? o->rope_scaling : "null", c->theta);
    if (!o->omit_tie)
        fprintf(f, "  \"tie_word_embeddings\": %s,\n", c->untied ? "false" : "true");
    fprintf(f, "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.44.2\",\n",
            ref_dtype_torch(o->dtype));
    fprintf(f, "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n", c->vocab);
    if (fclose(f) != 0)
        abort();
}

/* Writes a LlamaForCausalLM directory for m into the existing directory dir;
 * m's weights are rounded in place to the stored dtype. */
static inline void ref_llama_write_hf(ref_llama *m, const char *dir, const rl_hf_opts *o)
{
    ref_st_list L = {0};
    ref_llama_tensors(m, o, &L);
    ref_llama_write_config(m, dir, o);
    ref_hf_write_tensors(dir, &L, o->shards);
}

/* ------------------------------------------------------------------ */
/* LoRA adapters: ref_lora (tests/ref_common.h), linears RL_Q..         */

/* "model.layers.3.mlp.up_proj" -> layer 3, RL_UP; -1 when it is none of the seven. */
static inline int rl_module_parse(const char *path, int *layer, int *lin)
{
    const char *pre = "model.layers.";
    size_t n = strlen(pre);
    return ref_parse_layer_lin(strncmp(path, pre, n) ? "" : path + n, rl_lin_name, RL_N_LIN, layer,
                               lin);
}

/* ------------------------------------------------------------------ */
/* float64 forward                                                      */

/* LlamaRMSNorm: y = x / sqrt(mean(x^2) + eps) * w. */
static inline void rl_rmsnorm(double *y, const double *x, const double *w, int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        double var = 0;
        for (int i = 0; i < C; i++)
            var += x[(size_t)n * C + i] * x[(size_t)n * C + i];
        var /= C;
        double rs = 1.0 / sqrt(var + eps);
        for (int i = 0; i < C; i++)
            y[(size_t)n * C + i] = x[(size_t)n * C + i] * rs * w[i];
    }
}

/* Linear k of layer l (nn.Linear, W [out, in]) with its adapter, if any. */
static inline void rl_block_linear(const ref_llama *m, const ref_lora *lo, int l, int k, double *y,
                                   const double *x, int N)
{
    int in, out;
    rl_lin_shape(&m->cfg, k, &in, &out);
    ref_linear_adapted(y, x, m->blk[l].w[k], 1, (size_t)in, m->blk[l].b[k], lo, l, k, N, in, out);
}

/* apply_rotary_pos_emb on x [B*T, nh*D] in place, position t of each sequence. */
static inline void rl_rope(double *x, int B, int T, int nh, int D, double theta)
{
    double *emb = malloc((size_t)D * sizeof *emb), *rh = malloc((size_t)D * sizeof *rh);
    double *v = malloc((size_t)D * sizeof *v);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < D / 2; j++) {   /* freqs = t * inv_freq; emb = cat(freqs, freqs) */
                double inv = 1.0 / pow(theta, (double)(2 * j) / D);
                emb[j] = emb[j + D / 2] = t * inv;
            }
            for (int h = 0; h < nh; h++) {
                double *q = x + ((size_t)(b * T + t) * nh + h) * D;
                memcpy(v, q, (size_t)D * sizeof *v);
                for (int j = 0; j < D; j++)   /* rotate_half: cat(-x2, x1) */
                    rh[j] = j < D / 2 ? -v[j + D / 2] : v[j - D / 2];
                for (int j = 0; j < D; j++)
                    q[j] = v[j] * cos(emb[j]) + rh[j] * sin(emb[j]);
            }
        }
    free(emb);
    free(rh);
    free(v);
}

/* Causal attention with repeated kv heads: q [N, H*D], k, v [N, Hk*D] -> out [N, H*D]. */
static inline void rl_attention(double *out, const double *q, const double *k, const double *v,
                                int B, int T, int H, int Hk, int D)
{
    size_t qrow = (size_t)H * D, kvrow = (size_t)Hk * D;
    ref_causal_attention(out, qrow, q, qrow, k, v, kvrow, B, T, H, Hk, D);
}

/* The final normed hidden states [B*T, hidden] of inp [B,T]; lo may be NULL. */
static inline double *ref_llama_hidden(const ref_llama *m, const ref_lora *lo, const int32_t *inp,
                                       int B, int T)
{
    const rl_config *c = &m->cfg;
    int C = c->hidden, N = B * T, H = c->n_head, Hk = c->n_kv_head, D = c->head_dim;
    size_t NC = (size_t)N * C;
    double *x = malloc(NC * sizeof *x), *h = malloc(NC * sizeof *h), *y = malloc(NC * sizeof *y);
    double *q = malloc((size_t)N * H * D * sizeof *q), *a = malloc((size_t)N * H * D * sizeof *a);
    double *k = malloc((size_t)N * Hk * D * sizeof *k), *v = malloc((size_t)N * Hk * D * sizeof *v);
    double *g = malloc((size_t)N * c->inter * sizeof *g), *u = malloc((size_t)N * c->inter * sizeof *u);
    for (int n = 0; n < N; n++)
        memcpy(x + (size_t)n * C, m->embed + (size_t)inp[n] * C, (size_t)C * sizeof *x);
    for (int l = 0; l < c->n_layer; l++) {
        rl_rmsnorm(h, x, m->blk[l].in_norm, N, C, c->eps);
        rl_block_linear(m, lo, l, RL_Q, q, h, N);
        rl_block_linear(m, lo, l, RL_K, k, h, N);
        rl_block_linear(m, lo, l, RL_V, v, h, N);
        rl_rope(q, B, T, H, D, c->theta);
        rl_rope(k, B, T, Hk, D, c->theta);
        rl_attention(a, q, k, v, B, T, H, Hk, D);
        rl_block_linear(m, lo, l, RL_O, y, a, N);
        for (size_t i = 0; i < NC; i++)
            x[i] += y[i];
        rl_rmsnorm(h, x, m->blk[l].post_norm, N, C, c->eps);
        rl_block_linear(m, lo, l, RL_GATE, g, h, N);
        rl_block_linear(m, lo, l, RL_UP, u, h, N);
        for (size_t i = 0; i < (size_t)N * c->inter; i++)
            g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];   /* act_fn(gate) * up, act_fn = silu */
        rl_block_linear(m, lo, l, RL_DOWN, y, g, N);
        for (size_t i = 0; i < NC; i++)
            x[i] += y[i];
    }
    rl_rmsnorm(h, x, m->norm, N, C, c->eps);
    free(x), free(y), free(q), free(a), free(k), free(v), free(g), free(u);
    return h;
}

/* Summed token loss of inp/tgt [B,T]; lo may be NULL. */
static inline double ref_llama_loss(const ref_llama *m, const ref_lora *lo, const int32_t *inp,
                                    const int32_t *tgt, int B, int T)
{
    return ref_head_loss(ref_llama_hidden(m, lo, inp, B, T), m->lm_head ? m->lm_head : m->embed,
                         tgt, B * T, m->cfg.hidden, m->cfg.vocab);
}

/* logits [V] of position pos of the single sequence inp [T]. */
static inline void ref_llama_logits(const ref_llama *m, const ref_lora *lo, const int32_t *inp,
                                    int T, int pos, double *logits)
{
    ref_head_logits(ref_llama_hidden(m, lo, inp, 1, T), m->lm_head ? m->lm_head : m->embed, pos,
                    m->cfg.hidden, m->cfg.vocab, logits);
}

#endif
