/* ref_bert.h - an independent float64 BERT (+ LoRA) and a Hugging Face
 * BertForMaskedLM / BertForSequenceClassification / BertModel directory
 * writer, to check the project's encoder against.
 *
 * Header-only like tests/ref_common.h, whose generic parts it uses (random
 * numbers, dtype rounding, the hand-written safetensors writer, LoRA, the
 * linear map).  Nothing here calls the project.  The forward pass follows
 * transformers' modeling_bert.py, in double precision, for a batch of B rows
 * of T tokens whose row b has len[b] real tokens (attention_mask 1), the
 * rest padding:
 *
 *   x      = LayerNorm(word[tok] + position[t] + token_type[type])
 *   block  : q, k, v = x Wq^T + bq, ...  -> [T, H, D]
 *            scores = q k^T / sqrt(D) + (1 - mask_j) * finfo(float32).min
 *            a = softmax(scores) v;  h = LayerNorm(a Wo^T + bo + x)      (BertSelfOutput)
 *            x = LayerNorm(act(h Wi^T + bi) Wo2^T + bo2 + h)           (BertIntermediate, BertOutput)
 *   mlm    : z = LayerNorm(act(x Wt^T + bt));  logits = z word^T + bias  (cls.predictions)
 *            loss = sum over positions with tgt >= 0 of -log softmax(logits)[tgt]
 *   cls    : p = tanh(x[b, 0] Wp^T + bp);  logits = p Wc^T + bc        (pooler, classifier)
 *            loss = sum over rows with label >= 0 of -log softmax(logits)[label]
 *   act    : "gelu" 0.5 x (1 + erf(x / sqrt 2)), "gelu_new" the tanh form.
 *
 * LoRA on any linear map (PEFT, fan_in_fan_out false):
 *   y += s * ((x * mask) A^T) B^T, indexed [layer][linear] with the pooler's
 * and the MLM transform's dense at [n_layer][RB_POOLER] / [n_layer][RB_TDENSE]. */
#ifndef PSLORA_REF_BERT_H
#define PSLORA_REF_BERT_H

#include "ref_common.h"

/* A block's six linears, then the two head linears (at layer n_layer). */
enum { RB_Q, RB_K, RB_V, RB_AO, RB_INTER, RB_OUT, RB_POOLER, RB_TDENSE, RB_N_LIN };

static inline const char *rb_lin_name(int k)
{
    static const char *const names[RB_N_LIN] = {
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense", "pooler.dense",
        "cls.predictions.transform.dense"};
    return names[k];
}

typedef struct {
    int n_layer, hidden, n_head, inter, vocab, max_pos, type_vocab, n_labels;
    double eps;
    int gelu_new;   /* hidden_act "gelu_new" instead of "gelu" */
} rb_config;

static inline void rb_lin_shape(const rb_config *c, int k, int *in, int *out)
{
    *in = k == RB_OUT ? c->inter : c->hidden;
    *out = k == RB_INTER ? c->inter : c->hidden;
}

typedef struct {
    double *w[RB_N_LIN], *b[RB_N_LIN];   /* [out, in], [out]; the head ones in blk[n_layer] */
    double *ln1_w, *ln1_b, *ln2_w, *ln2_b;
} rb_block;

typedef struct {
    rb_config cfg;
    double *word, *pos, *type, *eln_w, *eln_b;
    rb_block *blk;                        /* n_layer + 1: the last holds the head linears */
    double *tln_w, *tln_b, *mlm_bias;     /* cls.predictions.transform.LayerNorm, .bias */
    double *cls_w, *cls_b;                /* classifier [n_labels, hidden], [n_labels] */
} ref_bert;

/* Random weights far from trivial: embeddings N(0, 0.5^2), W N(0, 1/in),
 * biases N(0, 0.1^2), norm gains N(1, 0.2^2) and shifts N(0, 0.1^2). */
static inline void ref_bert_init(ref_bert *m, const rb_config *c, uint64_t seed)
{
    ref_rng r = {seed};
    int C = c->hidden;
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->word = ref_fill(&r, (size_t)c->vocab * C, 0, 0.5);
    m->pos = ref_fill(&r, (size_t)c->max_pos * C, 0, 0.5);
    m->type = ref_fill(&r, (size_t)c->type_vocab * C, 0, 0.5);
    m->eln_w = ref_fill(&r, C, 1, 0.2), m->eln_b = ref_fill(&r, C, 0, 0.1);
    m->blk = calloc((size_t)c->n_layer + 1, sizeof *m->blk);
    for (int l = 0; l <= c->n_layer; l++) {
        rb_block *b = &m->blk[l];
        for (int k = l < c->n_layer ? 0 : RB_POOLER; k < (l < c->n_layer ? RB_POOLER : RB_N_LIN);
             k++) {
            int in, out;
            rb_lin_shape(c, k, &in, &out);
            ref_fill_linear(&r, in, out, 1, &b->w[k], &b->b[k]);
        }
        if (l < c->n_layer) {
            b->ln1_w = ref_fill(&r, C, 1, 0.2), b->ln1_b = ref_fill(&r, C, 0, 0.1);
            b->ln2_w = ref_fill(&r, C, 1, 0.2), b->ln2_b = ref_fill(&r, C, 0, 0.1);
        }
    }
    m->tln_w = ref_fill(&r, C, 1, 0.2), m->tln_b = ref_fill(&r, C, 0, 0.1);
    m->mlm_bias = ref_fill(&r, c->vocab, 0, 0.1);
    m->cls_w = ref_fill(&r, (size_t)c->n_labels * C, 0, 0.5);
    m->cls_b = ref_fill(&r, c->n_labels, 0, 0.1);
}

static inline void ref_bert_free(ref_bert *m)
{
    free(m->word), free(m->pos), free(m->type), free(m->eln_w), free(m->eln_b);
    for (int l = 0; m->blk && l <= m->cfg.n_layer; l++) {
        rb_block *b = &m->blk[l];
        ref_free_each(b->w, RB_N_LIN);
        ref_free_each(b->b, RB_N_LIN);
        free(b->ln1_w), free(b->ln1_b), free(b->ln2_w), free(b->ln2_b);
    }
    free(m->blk), free(m->tln_w), free(m->tln_b), free(m->mlm_bias), free(m->cls_w),
        free(m->cls_b);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* Hugging Face directory writer                                        */

typedef enum { RB_MODEL, RB_MLM, RB_CLS } rb_class;

typedef struct {
    ref_dtype dtype;
    int shards;         /* 0: model.safetensors; 2: two shards + index json */
    rb_class cls;       /* the model class: its keys and "architectures" */
    int no_prefix;      /* backbone keys without "bert." (BertModel never has it) */
    int gamma_beta;     /* LayerNorm.gamma / .beta, the older names */
    int no_classifier;  /* a BertForSequenceClassification file without classifier.* */
    int decoder_keys;   /* also cls.predictions.decoder.weight / .bias (tied copies) */
} rb_hf_opts;

static inline void rb_add(ref_st_list *L, const rb_hf_opts *o, int head, const char *key,
                          int ndim, const int64_t *shape, double *v)
{
    const char *pre = !head && !o->no_prefix && o->cls != RB_MODEL ? "bert." : "";
    ref_st_add_key(L, pre, key, o->dtype, NULL, NULL, ndim, shape, v);
}

static inline void rb_add_norm(ref_st_list *L, const rb_hf_opts *o, int head, const char *path,
                               int64_t C, double *w, double *b)
{
    char key[128];
    snprintf(key, sizeof key, "%.100s.%s", path, o->gamma_beta ? "gamma" : "weight");
    rb_add(L, o, head, key, 1, &C, w);
    snprintf(key, sizeof key, "%.100s.%s", path, o->gamma_beta ? "beta" : "bias");
    rb_add(L, o, head, key, 1, &C, b);
}

static inline void rb_add_linear(ref_st_list *L, const rb_hf_opts *o, int head, const char *path,
                                 const rb_config *c, int k, double *w, double *b)
{
    char key[128];
    int in, out;
    rb_lin_shape(c, k, &in, &out);
    snprintf(key, sizeof key, "%.100s.weight", path);
    rb_add(L, o, head, key, 2, (int64_t[]){out, in}, w);
    snprintf(key, sizeof key, "%.100s.bias", path);
    rb_add(L, o, head, key, 1, (int64_t[]){out}, b);
}

/* m's tensors under the class's keys, rounding m's weights in place. */
static inline void ref_bert_tensors(ref_bert *m, const rb_hf_opts *o, ref_st_list *L)
{
    const rb_config *c = &m->cfg;
    int64_t C = c->hidden;
    char key[128];
    rb_add(L, o, 0, "embeddings.word_embeddings.weight", 2, (int64_t[]){c->vocab, C}, m->word);
    rb_add(L, o, 0, "embeddings.position_embeddings.weight", 2, (int64_t[]){c->max_pos, C}, m->pos);
    rb_add(L, o, 0, "embeddings.token_type_embeddings.weight", 2, (int64_t[]){c->type_vocab, C},
           m->type);
    rb_add_norm(L, o, 0, "embeddings.LayerNorm", C, m->eln_w, m->eln_b);
    for (int l = 0; l < c->n_layer; l++) {
        rb_block *b = &m->blk[l];
        for (int k = 0; k < RB_POOLER; k++) {
            snprintf(key, sizeof key, "encoder.layer.%d.%s", l, rb_lin_name(k));
            rb_add_linear(L, o, 0, key, c, k, b->w[k], b->b[k]);
            if (k == RB_AO || k == RB_OUT) {
                snprintf(key, sizeof key, "encoder.layer.%d.%s.LayerNorm", l,
                         k == RB_AO ? "attention.output" : "output");
                rb_add_norm(L, o, 0, key, C, k == RB_AO ? b->ln1_w : b->ln2_w,
                            k == RB_AO ? b->ln1_b : b->ln2_b);
            }
        }
    }
    rb_block *h = &m->blk[c->n_layer];
    if (o->cls != RB_MLM)
        rb_add_linear(L, o, 0, "pooler.dense", c, RB_POOLER, h->w[RB_POOLER], h->b[RB_POOLER]);
    if (o->cls == RB_CLS && !o->no_classifier) {
        rb_add(L, o, 1, "classifier.weight", 2, (int64_t[]){c->n_labels, C}, m->cls_w);
        rb_add(L, o, 1, "classifier.bias", 1, (int64_t[]){c->n_labels}, m->cls_b);
    }
    if (o->cls == RB_MLM) {
        rb_add(L, o, 1, "cls.predictions.bias", 1, (int64_t[]){c->vocab}, m->mlm_bias);
        rb_add_linear(L, o, 1, "cls.predictions.transform.dense", c, RB_TDENSE, h->w[RB_TDENSE],
                      h->b[RB_TDENSE]);
        rb_add_norm(L, o, 1, "cls.predictions.transform.LayerNorm", C, m->tln_w, m->tln_b);
        if (o->decoder_keys) {
            rb_add(L, o, 1, "cls.predictions.decoder.weight", 2, (int64_t[]){c->vocab, C},
                   m->word);
            rb_add(L, o, 1, "cls.predictions.decoder.bias", 1, (int64_t[]){c->vocab},
                   m->mlm_bias);
        }
    }
}

/* DIR/config.json as transformers writes it for the class. */
static inline void ref_bert_write_config(const ref_bert *m, const char *dir, const rb_hf_opts *o)
{
    static const char *const arch[] = {"BertModel", "BertForMaskedLM",
                                       "BertForSequenceClassification"};
    const rb_config *c = &m->cfg;
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n", arch[o->cls]);
    fprintf(f, "  \"attention_probs_dropout_prob\": 0.1,\n  \"classifier_dropout\": null,\n");
    fprintf(f, "  \"hidden_act\": \"%s\",\n  \"hidden_dropout_prob\": 0.1,\n",
            c->gelu_new ? "gelu_new" : "gelu");
    fprintf(f, "  \"hidden_size\": %d,\n", c->hidden);
    if (o->cls == RB_CLS) {
        fprintf(f, "  \"id2label\": {");
        for (int k = 0; k < c->n_labels; k++)
            fprintf(f, "%s\"%d\": \"LABEL_%d\"", k ? ", " : "", k, k);
        fprintf(f, "},\n");
    }
    fprintf(f, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", c->inter);
    fprintf(f, "  \"layer_norm_eps\": %.17g,\n  \"max_position_embeddings\": %d,\n", c->eps,
            c->max_pos);
    fprintf(f, "  \"model_type\": \"bert\",\n  \"num_attention_heads\": %d,\n", c->n_head);
    fprintf(f, "  \"num_hidden_layers\": %d,\n  \"pad_token_id\": 0,\n", c->n_layer);
    fprintf(f, "  \"position_embedding_type\": \"absolute\",\n");
    fprintf(f, "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.44.2\",\n",
            ref_dtype_torch(o->dtype));
    fprintf(f, "  \"type_vocab_size\": %d,\n  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n",
            c->type_vocab, c->vocab);
    if (fclose(f) != 0)
        abort();
}

static inline void ref_bert_write_hf(ref_bert *m, const char *dir, const rb_hf_opts *o)
{
    ref_st_list L = {0};
    ref_bert_tensors(m, o, &L);
    ref_bert_write_config(m, dir, o);
    ref_hf_write_tensors(dir, &L, o->shards);
}

/* "bert.encoder.layer.3.output.dense" -> 3, RB_OUT; the head paths -> n_layer,
 * RB_POOLER / RB_TDENSE; -1 otherwise. */
static inline int rb_module_parse(const char *path, int n_layer, int *layer, int *lin)
{
    const char *pre = "bert.encoder.layer.";
    size_t n = strlen(pre);
    if (strcmp(path, "bert.pooler.dense") == 0 || strcmp(path, "cls.predictions.transform.dense") == 0) {
        *layer = n_layer;
        *lin = path[0] == 'b' ? RB_POOLER : RB_TDENSE;
        return 0;
    }
    return ref_parse_layer_lin(strncmp(path, pre, n) ? "" : path + n, rb_lin_name, RB_POOLER,
                               layer, lin);
}

/* ------------------------------------------------------------------ */
/* float64 forward                                                      */

static inline void rb_layernorm(double *y, const double *x, const double *w, const double *b,
                                int N, int C, double eps)
{
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double mu = 0, var = 0;
        for (int i = 0; i < C; i++)
            mu += xr[i];
        mu /= C;
        for (int i = 0; i < C; i++)
            var += (xr[i] - mu) * (xr[i] - mu);
        var /= C;
        for (int i = 0; i < C; i++)
            y[(size_t)n * C + i] = (xr[i] - mu) / sqrt(var + eps) * w[i] + b[i];
    }
}

static inline double rb_act(const rb_config *c, double x)
{
    if (c->gelu_new)
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
}

static inline void rb_linear(const ref_bert *m, const ref_lora *lo, int l, int k, double *y,
                             const double *x, int N)
{
    int in, out;
    rb_lin_shape(&m->cfg, k, &in, &out);
    ref_linear_adapted(y, x, m->blk[l].w[k], 1, (size_t)in, m->blk[l].b[k], lo, l, k, N, in, out);
}

/* BertSelfAttention with the extended attention mask: keys j >= len[b] get
 * float32's minimum added to their scores. */
static inline void rb_attention(double *out, const double *q, const double *k, const double *v,
                                const int32_t *len, int B, int T, int H, int D)
{
    int C = H * D;
    double *p = malloc((size_t)T * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    double d = 0;
                    for (int i = 0; i < D; i++)
                        d += q[(size_t)(b * T + t) * C + h * D + i] *
                             k[(size_t)(b * T + j) * C + h * D + i];
                    p[j] = d / sqrt((double)D) + (j < len[b] ? 0.0 : -3.4028234663852886e38);
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < T; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++)
                        acc += p[j] / sum * v[(size_t)(b * T + j) * C + h * D + i];
                    out[(size_t)(b * T + t) * C + h * D + i] = acc;
                }
            }
    free(p);
}

/* The encoder's last hidden states [B*T, hidden] (malloc'd). */
static inline double *ref_bert_hidden(const ref_bert *m, const ref_lora *lo, const int32_t *inp,
                                      const int32_t *types, const int32_t *len, int B, int T)
{
    const rb_config *c = &m->cfg;
    int C = c->hidden, N = B * T, I = c->inter, D = C / c->n_head;
    size_t NC = (size_t)N * C;
    double *x = malloc(NC * sizeof *x), *q = malloc(NC * sizeof *q), *k = malloc(NC * sizeof *k);
    double *v = malloc(NC * sizeof *v), *a = malloc(NC * sizeof *a), *y = malloc(NC * sizeof *y);
    double *h = malloc(NC * sizeof *h), *f = malloc((size_t)N * I * sizeof *f);
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++)
            y[(size_t)n * C + i] = m->word[(size_t)inp[n] * C + i] +
                                   m->pos[(size_t)(n % T) * C + i] +
                                   m->type[(size_t)(types ? types[n] : 0) * C + i];
    rb_layernorm(x, y, m->eln_w, m->eln_b, N, C, c->eps);
    for (int l = 0; l < c->n_layer; l++) {
        const rb_block *b = &m->blk[l];
        rb_linear(m, lo, l, RB_Q, q, x, N);
        rb_linear(m, lo, l, RB_K, k, x, N);
        rb_linear(m, lo, l, RB_V, v, x, N);
        rb_attention(a, q, k, v, len, B, T, c->n_head, D);
        rb_linear(m, lo, l, RB_AO, y, a, N);
        for (size_t i = 0; i < NC; i++)
            y[i] += x[i];
        rb_layernorm(h, y, b->ln1_w, b->ln1_b, N, C, c->eps);
        rb_linear(m, lo, l, RB_INTER, f, h, N);
        for (size_t i = 0; i < (size_t)N * I; i++)
            f[i] = rb_act(c, f[i]);
        rb_linear(m, lo, l, RB_OUT, y, f, N);
        for (size_t i = 0; i < NC; i++)
            y[i] += h[i];
        rb_layernorm(x, y, b->ln2_w, b->ln2_b, N, C, c->eps);
    }
    free(q), free(k), free(v), free(a), free(y), free(h), free(f);
    return x;
}

/* -log softmax(z)[t] of one row of n logits. */
static inline double rb_xent(const double *z, int n, int t)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < n; i++)
        mx = fmax(mx, z[i]);
    for (int i = 0; i < n; i++)
        s += exp(z[i] - mx);
    return mx + log(s) - z[t];
}

/* BertForMaskedLM's summed loss over positions with tgt >= 0. */
static inline double ref_bert_mlm_loss(const ref_bert *m, const ref_lora *lo, const int32_t *inp,
                                       const int32_t *types, const int32_t *len,
                                       const int32_t *tgt, int B, int T)
{
    const rb_config *c = &m->cfg;
    int C = c->hidden, V = c->vocab, Ln = c->n_layer;
    double *x = ref_bert_hidden(m, lo, inp, types, len, B, T), loss = 0;
    double *t1 = malloc((size_t)C * sizeof *t1), *z = malloc((size_t)C * sizeof *z);
    double *lg = malloc((size_t)V * sizeof *lg);
    for (int n = 0; n < B * T; n++) {
        if (tgt[n] < 0)
            continue;
        rb_linear(m, lo, Ln, RB_TDENSE, t1, x + (size_t)n * C, 1);
        for (int i = 0; i < C; i++)
            t1[i] = rb_act(c, t1[i]);
        rb_layernorm(z, t1, m->tln_w, m->tln_b, 1, C, c->eps);
        for (int v = 0; v < V; v++) {
            double acc = m->mlm_bias[v];
            for (int i = 0; i < C; i++)
                acc += z[i] * m->word[(size_t)v * C + i];
            lg[v] = acc;
        }
        loss += rb_xent(lg, V, tgt[n]);
    }
    free(x), free(t1), free(z), free(lg);
    return loss;
}

/* BertForSequenceClassification's summed loss over rows with label >= 0. */
static inline double ref_bert_cls_loss(const ref_bert *m, const ref_lora *lo, const int32_t *inp,
                                       const int32_t *types, const int32_t *len,
                                       const int32_t *label, int B, int T)
{
    const rb_config *c = &m->cfg;
    int C = c->hidden, K = c->n_labels;
    double *x = ref_bert_hidden(m, lo, inp, types, len, B, T), loss = 0;
    double *p = malloc((size_t)C * sizeof *p), *lg = malloc((size_t)K * sizeof *lg);
    for (int b = 0; b < B; b++) {
        if (label[b] < 0)
            continue;
        rb_linear(m, lo, c->n_layer, RB_POOLER, p, x + (size_t)b * T * C, 1);
        for (int i = 0; i < C; i++)
            p[i] = tanh(p[i]);
        for (int k = 0; k < K; k++) {
            double acc = m->cls_b[k];
            for (int i = 0; i < C; i++)
                acc += p[i] * m->cls_w[(size_t)k * C + i];
            lg[k] = acc;
        }
        loss += rb_xent(lg, K, label[b]);
    }
    free(x), free(p), free(lg);
    return loss;
}

#endif
