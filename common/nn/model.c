/* model.c - loading the frozen weights of a Hugging Face model directory.
 *
 * GPT-2: keys with or without the "transformer." prefix; h.N.attn.bias and
 * h.N.attn.masked_bias are buffers, not weights, and are ignored; lm_head is
 * tied to wte when absent.  Conv1D weights stay [in, out] as stored.
 * Llama (LlamaForCausalLM): "model." keys, torch Linear weights [out, in],
 * lm_head.weight required unless tie_word_embeddings; buffers such as
 * rotary_emb.inv_freq in older files are ignored.
 * BERT: backbone keys with or without "bert." (BertModel has none), head
 * keys (cls.predictions.*, classifier.*) never prefixed; LayerNorm.gamma /
 * .beta (older files) accepted for .weight / .bias; buffers such as
 * embeddings.position_ids and the tied cls.predictions.decoder.* ignored. */
#include "model.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char *GPT2_LINEARS[] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
static const char *LLAMA_LINEARS[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                      "mlp.down_proj"};

/* BERT's six block linears, then the two head linears (MODEL_SLOT_*). */
static const char *BERT_LINEARS[] = {"attention.self.query", "attention.self.key",
                                     "attention.self.value", "attention.output.dense",
                                     "intermediate.dense",   "output.dense",
                                     "bert.pooler.dense",    "cls.predictions.transform.dense"};

int model_n_linears(const model_config *c)
{
    return c->arch == ARCH_LLAMA ? 7 : c->arch == ARCH_BERT ? 6 : 4;
}

const char *model_linear_name(const model_config *c, int slot)
{
    if (c->arch == ARCH_BERT)
        return BERT_LINEARS[slot];
    return c->arch == ARCH_LLAMA ? LLAMA_LINEARS[slot] : GPT2_LINEARS[slot];
}

int model_has_head_linear(const model_config *c, int slot)
{
    if (c->arch != ARCH_BERT)
        return 0;
    return slot == MODEL_SLOT_POOLER ? c->task == TASK_CLS : c->task == TASK_MLM;
}

model_linear *model_head_linear(model *m, int slot)
{
    if (!model_has_head_linear(&m->cfg, slot))
        return NULL;
    return slot == MODEL_SLOT_POOLER ? &m->pooler : &m->mlm_dense;
}

void model_module_path(const model_config *c, int layer, int slot, char *buf, size_t len)
{
    if (c->arch == ARCH_BERT && layer >= c->n_layer)
        snprintf(buf, len, "%s", BERT_LINEARS[slot]);
    else if (c->arch == ARCH_BERT)
        snprintf(buf, len, "bert.encoder.layer.%d.%s", layer, BERT_LINEARS[slot]);
    else if (c->arch == ARCH_LLAMA)
        snprintf(buf, len, "model.layers.%d.%s", layer, LLAMA_LINEARS[slot]);
    else
        snprintf(buf, len, "transformer.h.%d.%s", layer, GPT2_LINEARS[slot]);
}

void model_linear_shape(const model_config *c, int slot, int *in, int *out)
{
    int C = c->n_embd, I = c->n_inner;
    if (c->arch == ARCH_BERT || slot >= 7) {   /* BERT; slot 7 is only BERT's (C -> C) */
        *in = slot == 5 ? I : C;
        *out = slot == 4 ? I : C;
        return;
    }
    if (c->arch == ARCH_GPT2) {
        static const int ins[] = {1, 1, 1, 0}, outs[] = {3, 1, 0, 1};
        *in = ins[slot] ? C : I;
        *out = slot == 0 ? 3 * C : outs[slot] ? C : I;
        return;
    }
    int q = c->n_head * c->head_dim, kv = c->n_kv_head * c->head_dim;
    const int in_s[] = {C, C, C, q, C, C, I}, out_s[] = {q, kv, kv, C, I, I, C};
    *in = in_s[slot];
    *out = out_s[slot];
}

/* ---- finding tensors across the files of a directory ---- */

/* One loading pass over a directory's files: where names are looked up and
 * how, and the first error. */
typedef struct {
    model *m;
    const char *dir;
    const char *prefix;   /* "transformer." when the file uses it, else "" */
    int defer;            /* leave matrices with file data unconverted (bf16) */
    pl_err *e;
    int err;              /* -1 once a weight failed */
} loader;

static const st_tensor *find_raw(const model *m, const char *name, int *file)
{
    return hf_files_find(&m->files, name, file);
}

/* The older LayerNorm names: "...LayerNorm.gamma" for ".weight" and
 * ".beta" for ".bias" (BERT checkpoints converted from TensorFlow); full
 * becomes the name found. */
static const st_tensor *find_old_norm(const model *m, char *full, int *file)
{
    char *ln = strstr(full, "LayerNorm.");
    if (!ln)
        return NULL;
    const char *old = strcmp(ln, "LayerNorm.weight") == 0 ? "gamma"
                      : strcmp(ln, "LayerNorm.bias") == 0 ? "beta"
                                                          : NULL;
    if (!old)
        return NULL;
    snprintf(ln + strlen("LayerNorm."), 16, "%s", old);
    return find_raw(m, full, file);
}

/* Looks weight w up (its name after the loader's prefix), checks dtype and
 * shape, and returns float data: the mapping itself for aligned F32, else a
 * converted copy owned by m.  w->src (may be NULL) receives the file's data;
 * with defer, a weight that has one is not converted (NULL returned, no
 * error): bf16 compute packs it from src.  A failure sets ld->err. */
static const float *weight(loader *ld, const model_weight *w)
{
    model *m = ld->m;
    pl_err *e = ld->e;
    int ndim = w->ndim;
    int64_t d0 = w->shape[0], d1 = w->shape[1];
    model_src *src = w->src;
    char full[320];
    snprintf(full, sizeof full, "%s%s", w->head ? "" : ld->prefix, w->name);
    int file = 0;
    const st_tensor *t = find_raw(m, full, &file);
    if (!t)
        t = find_old_norm(m, full, &file);
    if (!t && w->optional)
        return NULL;
    if (!t) {
        ld->err = pl_errf(e, "%s: tensor %s not found", ld->dir, full);
        return NULL;
    }
    const char *fname = m->files.files[file].path;
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
        ld->err = pl_errf(e, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", fname, full,
                       st_dtype_name(t->dtype));
        return NULL;
    }
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char want[64];
        if (ndim == 2)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)d0);
        ld->err = pl_errf(e, "%s: tensor %s has shape of %d dims [%lld%s], expected %s", fname,
                       full, t->ndim, t->ndim ? (long long)t->shape[0] : 0LL,
                       t->ndim > 1 ? ", ..." : "", want);
        return NULL;
    }
    if (src)
        *src = (model_src){t->data, t->dtype};
    if (t->dtype == ST_F32 && ((uintptr_t)t->data % sizeof(float)) == 0)
        return t->data;
    if (src && ld->defer)
        return NULL;
    float *copy = malloc(t->numel * sizeof(float));
    float **o = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *o);
    if (!copy || !o) {
        free(copy);
        if (o)
            m->owned = o;
        ld->err = pl_errf(e, "%s: out of memory converting %s", fname, full);
        return NULL;
    }
    m->owned = o;
    m->owned[m->n_owned++] = copy;
    st_to_f32(copy, t->data, t->dtype, t->numel);
    return copy;
}

/* Appends one row to the weight table. */
static void table_add(model_weight *w, int *n, const char *name, const float **slot, int ndim,
                      int64_t d0, int64_t d1, int init)
{
    w[*n] = (model_weight){.slot = slot, .ndim = ndim, .shape = {d0, d1}, .init = init};
    snprintf(w[*n].name, sizeof w[*n].name, "%s", name);
    (*n)++;
}

/* The same for a row whose file data bf16 compute wants (matrices, wte). */
static void table_add_src(model_weight *w, int *n, const char *name, const float **slot,
                          int64_t d0, int64_t d1, int init, model_src *src)
{
    table_add(w, n, name, slot, 2, d0, d1, init);
    w[*n - 1].src = src;
}

/* GPT-2: names without "transformer.", Conv1D weights [in, out]. */
static int gpt2_table(model *m, model_weight *w)
{
    const model_config *c = &m->cfg;
    int64_t C = c->n_embd;
    int n = 0;
    char nm[128];
    table_add_src(w, &n, "wte.weight", &m->wte, c->vocab, C, INIT_NORMAL, &m->wte_src);
    table_add(w, &n, "wpe.weight", &m->wpe, 2, c->n_ctx, C, INIT_NORMAL);
    for (int l = 0; l < c->n_layer; l++) {
        model_block *b = &m->blocks[l];
        static const char *const norms[4] = {"ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"};
        const float **nslot[4] = {&b->ln1_w, &b->ln1_b, &b->ln2_w, &b->ln2_b};
        for (int k = 0; k < 4; k++) {
            snprintf(nm, sizeof nm, "h.%d.%s", l, norms[k]);
            table_add(w, &n, nm, nslot[k], 1, C, 0, k % 2 ? INIT_ZERO : INIT_ONE);
        }
        for (int s = 0; s < 4; s++) {
            model_linear *lin = &b->lin[s];
            model_linear_shape(c, s, &lin->in, &lin->out);
            lin->conv1d = 1;
            lin->lora = -1;
            /* the two residual projections get std 0.02/sqrt(2 n_layer) */
            snprintf(nm, sizeof nm, "h.%d.%s.weight", l, GPT2_LINEARS[s]);
            table_add_src(w, &n, nm, &lin->w, lin->in, lin->out, s % 2 ? INIT_RESID : INIT_NORMAL,
                          &lin->src);
            snprintf(nm, sizeof nm, "h.%d.%s.bias", l, GPT2_LINEARS[s]);
            table_add(w, &n, nm, &lin->b, 1, lin->out, 0, INIT_ZERO);
        }
    }
    table_add(w, &n, "ln_f.weight", &m->lnf_w, 1, C, 0, INIT_ONE);
    table_add(w, &n, "ln_f.bias", &m->lnf_b, 1, C, 0, INIT_ZERO);
    return n;
}

/* Whether linear slot s of a Llama block has a bias: q,k,v,o with
 * attention_bias, gate,up,down with mlp_bias. */
static int llama_has_bias(const model_config *c, int s) { return s < 4 ? c->attn_bias : c->mlp_bias; }

/* Llama: full Hugging Face keys, torch Linear weights [out, in], in the order
 * transformers writes them. */
static int llama_table(model *m, model_weight *w)
{
    const model_config *c = &m->cfg;
    int64_t C = c->n_embd;
    int n = 0;
    char nm[128];
    table_add_src(w, &n, "model.embed_tokens.weight", &m->wte, c->vocab, C, INIT_NORMAL,
                  &m->wte_src);
    for (int l = 0; l < c->n_layer; l++) {
        model_block *b = &m->blocks[l];
        b->ln1_b = b->ln2_b = NULL;
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        table_add(w, &n, nm, &b->ln1_w, 1, C, 0, INIT_ONE);
        for (int s = 0; s < 7; s++) {
            model_linear *lin = &b->lin[s];
            model_linear_shape(c, s, &lin->in, &lin->out);
            lin->conv1d = 0;
            lin->lora = -1;
            lin->b = NULL;
            if (s == 4) {   /* transformers' order: the norm before the mlp */
                snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
                table_add(w, &n, nm, &b->ln2_w, 1, C, 0, INIT_ONE);
            }
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, LLAMA_LINEARS[s]);
            table_add_src(w, &n, nm, &lin->w, lin->out, lin->in, INIT_NORMAL, &lin->src);
            if (llama_has_bias(c, s)) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.bias", l, LLAMA_LINEARS[s]);
                table_add(w, &n, nm, &lin->b, 1, lin->out, 0, INIT_ZERO);
            }
        }
    }
    table_add(w, &n, "model.norm.weight", &m->lnf_w, 1, C, 0, INIT_ONE);
    m->wpe = m->lnf_b = NULL;
    return n;
}

/* A BERT linear map (torch Linear, bias) named PATH.weight / PATH.bias. */
static void bert_linear(model_weight *w, int *n, model_linear *lin, const model_config *c,
                        int slot, const char *path, int head, int optional)
{
    char nm[128];   /* paths are short: %.100s keeps -Wformat-truncation quiet */
    model_linear_shape(c, slot, &lin->in, &lin->out);
    lin->conv1d = 0;
    lin->lora = -1;
    snprintf(nm, sizeof nm, "%.100s.weight", path);
    table_add_src(w, n, nm, &lin->w, lin->out, lin->in, INIT_NORMAL, &lin->src);
    w[*n - 1].head = head, w[*n - 1].optional = optional;
    snprintf(nm, sizeof nm, "%.100s.bias", path);
    table_add(w, n, nm, &lin->b, 1, lin->out, 0, INIT_ZERO);
    w[*n - 1].head = head, w[*n - 1].optional = optional;
}

/* A LayerNorm PATH.weight / PATH.bias of C channels. */
static void bert_norm(model_weight *w, int *n, const float **wt, const float **b, int64_t C,
                      const char *path, int head)
{
    char nm[128];   /* paths are short: %.100s keeps -Wformat-truncation quiet */
    snprintf(nm, sizeof nm, "%.100s.weight", path);
    table_add(w, n, nm, wt, 1, C, 0, INIT_ONE);
    w[*n - 1].head = head;
    snprintf(nm, sizeof nm, "%.100s.bias", path);
    table_add(w, n, nm, b, 1, C, 0, INIT_ZERO);
    w[*n - 1].head = head;
}

/* The heads of BERT's task: the pooler and the (optional) classifier for
 * cls, the MLM transform and decoder bias for mlm; the pooler is optional
 * but for cls. */
static void bert_heads(model *m, model_weight *w, int *n)
{
    const model_config *c = &m->cfg;
    /* the pooler: needed for cls, kept when present otherwise (BertModel and
     * pretraining checkpoints have it, BertForMaskedLM files do not) */
    bert_linear(w, n, &m->pooler, c, MODEL_SLOT_POOLER, "pooler.dense", 0, c->task != TASK_CLS);
    if (c->task == TASK_CLS) {
        table_add(w, n, "classifier.weight", &m->cls_w, 2, c->num_labels, c->n_embd, INIT_NORMAL);
        w[*n - 1].head = w[*n - 1].optional = 1;
        table_add(w, n, "classifier.bias", &m->cls_b, 1, c->num_labels, 0, INIT_ZERO);
        w[*n - 1].head = w[*n - 1].optional = 1;
    }
    if (c->task == TASK_MLM) {
        table_add(w, n, "cls.predictions.bias", &m->mlm_bias, 1, c->vocab, 0, INIT_ZERO);
        w[*n - 1].head = 1;
        bert_linear(w, n, &m->mlm_dense, c, MODEL_SLOT_MLM_DENSE,
                    "cls.predictions.transform.dense", 1, 0);
        bert_norm(w, n, &m->mlm_ln_w, &m->mlm_ln_b, c->n_embd,
                  "cls.predictions.transform.LayerNorm", 1);
    }
}

/* BERT: names without "bert." (head rows flagged), torch Linear weights
 * [out, in], in the order transformers writes them. */
static int bert_table(model *m, model_weight *w)
{
    const model_config *c = &m->cfg;
    int64_t C = c->n_embd;
    int n = 0;
    char nm[128];
    table_add_src(w, &n, "embeddings.word_embeddings.weight", &m->wte, c->vocab, C, INIT_NORMAL,
                  &m->wte_src);
    table_add(w, &n, "embeddings.position_embeddings.weight", &m->wpe, 2, c->n_ctx, C,
              INIT_NORMAL);
    table_add(w, &n, "embeddings.token_type_embeddings.weight", &m->wtt, 2, c->type_vocab, C,
              INIT_NORMAL);
    bert_norm(w, &n, &m->emb_ln_w, &m->emb_ln_b, C, "embeddings.LayerNorm", 0);
    for (int l = 0; l < c->n_layer; l++) {
        model_block *b = &m->blocks[l];
        for (int s = 0; s < 6; s++) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, BERT_LINEARS[s]);
            bert_linear(w, &n, &b->lin[s], c, s, nm, 0, 0);
            if (s == 3 || s == 5) {   /* each sub-layer's post-LayerNorm after its dense */
                snprintf(nm, sizeof nm, "encoder.layer.%d.%s.LayerNorm", l,
                         s == 3 ? "attention.output" : "output");
                bert_norm(w, &n, s == 3 ? &b->ln1_w : &b->ln2_w, s == 3 ? &b->ln1_b : &b->ln2_b,
                          C, nm, 0);
            }
        }
    }
    bert_heads(m, w, &n);
    m->lnf_w = m->lnf_b = NULL;
    return n;
}

int model_weight_table(model *m, model_weight *w)
{
    if (m->cfg.arch == ARCH_BERT)
        return bert_table(m, w);
    return m->cfg.arch == ARCH_LLAMA ? llama_table(m, w) : gpt2_table(m, w);
}

/* The address in m of the field at addr in copy (its struct or its blocks). */
static void *map_back(void *addr, model *copy, model *m)
{
    char *a = addr, *c = (char *)copy, *cb = (char *)copy->blocks;
    if (a >= c && a < c + sizeof *copy)
        return (char *)m + (a - c);
    if (a >= cb && a < cb + (size_t)m->cfg.n_layer * sizeof *m->blocks)
        return (char *)m->blocks + (a - cb);
    return addr;
}

int model_weight_table_of(model *m, model_weight *w)
{
    model copy = *m;
    copy.blocks = malloc((size_t)m->cfg.n_layer * sizeof *m->blocks);
    if (!copy.blocks)
        return -1;
    memcpy(copy.blocks, m->blocks, (size_t)m->cfg.n_layer * sizeof *m->blocks);
    int n = model_weight_table(&copy, w);
    for (int i = 0; i < n; i++) {
        w[i].slot = map_back((void *)w[i].slot, &copy, m);
        if (w[i].src)
            w[i].src = map_back(w[i].src, &copy, m);
    }
    free(copy.blocks);
    return n;
}

int model_weight_count(const model_config *c)
{
    if (c->arch == ARCH_GPT2)
        return 4 + 12 * c->n_layer;
    if (c->arch == ARCH_BERT)
        return 5 + 16 * c->n_layer + 2 + (c->task == TASK_MLM ? 5 : c->task == TASK_CLS ? 2 : 0);
    return 2 + c->n_layer * (9 + 4 * (c->attn_bias != 0) + 3 * (c->mlp_bias != 0));
}

/* Every weight of the table from the files; then lm_head: GPT-2 ties it when
 * absent, Llama follows tie_word_embeddings (an untied head must be there).
 * defer: the matrices and wte stay unconverted (see weight()). */
static int load_weights(model *m, const char *dir, int defer, pl_err *e)
{
    const model_config *c = &m->cfg;
    loader ld = {.m = m, .dir = dir, .prefix = "", .defer = defer, .e = e};
    int dummy;
    if (c->arch == ARCH_GPT2 && find_raw(m, "transformer.wte.weight", &dummy))
        ld.prefix = "transformer.";
    if (c->arch == ARCH_BERT && find_raw(m, "bert.embeddings.word_embeddings.weight", &dummy))
        ld.prefix = "bert.";
    model_weight *w = calloc((size_t)model_weight_count(c), sizeof *w);
    if (!w)
        return pl_errf(e, "%s: out of memory", dir);
    int n = model_weight_table(m, w);
    for (int i = 0; i < n && !ld.err; i++)
        *w[i].slot = weight(&ld, &w[i]);
    free(w);
    if (ld.err)
        return -1;
    m->lm_head = m->wte, m->head_src = m->wte_src;
    if (c->arch == ARCH_BERT)
        return 0;   /* the MLM decoder is tied to the word embeddings */
    if (c->arch == ARCH_LLAMA && c->tie_embeddings)
        return 0;   /* as transformers ties it, whatever the file holds */
    if (c->arch == ARCH_LLAMA && !find_raw(m, "lm_head.weight", &dummy))
        return pl_errf(e, "%s: tensor lm_head.weight not found (config.json has "
                          "tie_word_embeddings false)", dir);
    if (!find_raw(m, "lm_head.weight", &dummy))
        return 0;   /* GPT-2: tied when absent */
    /* lm_head.weight has no prefix in GPT2LMHeadModel nor in LlamaForCausalLM */
    model_weight head = {.name = "lm_head.weight", .ndim = 2, .shape = {c->vocab, c->n_embd},
                         .src = &m->head_src};
    ld.prefix = "";
    m->lm_head = weight(&ld, &head);
    return ld.err ? -1 : 0;
}

static int load(model *m, const char *dir, int defer, model_task task, int num_labels,
                pl_err *e)
{
    memset(m, 0, sizeof *m);
    if (model_config_load(&m->cfg, dir, e) != 0)
        return -1;
    if (m->cfg.arch == ARCH_BERT && task != TASK_NONE)
        m->cfg.task = task;
    if (m->cfg.arch == ARCH_BERT && num_labels > 0)
        m->cfg.num_labels = num_labels;
    m->blocks = calloc((size_t)m->cfg.n_layer, sizeof *m->blocks);
    if (!m->blocks)
        return pl_errf(e, "%s: out of memory", dir);
    if (hf_files_open(&m->files, dir, e) != 0 || load_weights(m, dir, defer, e) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

int model_load(model *m, const char *dir, pl_err *e) { return load(m, dir, 0, TASK_NONE, 0, e); }

int model_load_task(model *m, const char *dir, model_task task, int num_labels, pl_err *e)
{
    return load(m, dir, 0, task, num_labels, e);
}

int model_load_deferred(model *m, const char *dir, pl_err *e)
{
    return load(m, dir, 1, TASK_NONE, 0, e);
}

void model_free(model *m)
{
    if (m->bf16_free)
        m->bf16_free(m);
    hf_files_close(&m->files);
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->blocks);
    memset(m, 0, sizeof *m);
}
