/* model_save.c - the model writer: DIR/config.json and DIR/model.safetensors
 * in the Hugging Face layout (`pslora init`), the names and shapes from the
 * weight table of model.c, so that model_load reads back what it wrote. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "model.h"

/* The shortest decimal that reads back as f, as a double: 1e-6f is written
 * "1e-06", not "9.99999997475243e-07". */
static double short_float(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if ((float)strtod(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return (double)f;
}

static cJSON *gpt2_json(const model_config *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddStringToObject(j, "model_type", "gpt2");
    cJSON_AddStringToObject(j, "activation_function", "gelu_new");
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "n_positions", c->n_ctx);
    cJSON_AddNumberToObject(j, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "layer_norm_epsilon", short_float(c->eps));
    if (c->n_inner == 4 * c->n_embd)
        cJSON_AddNullToObject(j, "n_inner");
    else
        cJSON_AddNumberToObject(j, "n_inner", c->n_inner);
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    return j;
}

static cJSON *llama_json(const model_config *c)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", "llama");
    cJSON_AddStringToObject(j, "hidden_act", "silu");
    cJSON_AddNumberToObject(j, "hidden_size", c->n_embd);
    cJSON_AddNumberToObject(j, "intermediate_size", c->n_inner);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->n_kv_head);
    cJSON_AddNumberToObject(j, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->n_ctx);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "rms_norm_eps", short_float(c->eps));
    cJSON_AddNumberToObject(j, "rope_theta", short_float(c->rope_theta));
    cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tie_embeddings);
    cJSON_AddBoolToObject(j, "attention_bias", c->attn_bias);
    cJSON_AddBoolToObject(j, "mlp_bias", c->mlp_bias);
    return j;
}

/* BertConfig; the class follows the task (BertModel for none), id2label
 * gives num_labels as transformers writes it. */
static cJSON *bert_json(const model_config *c)
{
    static const char *cls[] = {"BertModel", "BertForMaskedLM", "BertForSequenceClassification"};
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(cls[c->task]));
    cJSON_AddStringToObject(j, "model_type", "bert");
    cJSON_AddStringToObject(j, "hidden_act", c->act_erf ? "gelu" : "gelu_new");
    cJSON_AddNumberToObject(j, "hidden_size", c->n_embd);
    cJSON_AddNumberToObject(j, "intermediate_size", c->n_inner);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->n_ctx);
    cJSON_AddNumberToObject(j, "type_vocab_size", c->type_vocab);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(j, "layer_norm_eps", short_float(c->eps));
    cJSON_AddStringToObject(j, "position_embedding_type", "absolute");
    cJSON *id2 = cJSON_AddObjectToObject(j, "id2label"), *l2i = cJSON_AddObjectToObject(j, "label2id");
    for (int k = 0; k < c->num_labels; k++) {
        char id[16], lab[32];
        snprintf(id, sizeof id, "%d", k);
        snprintf(lab, sizeof lab, "LABEL_%d", k);
        cJSON_AddStringToObject(id2, id, lab);
        cJSON_AddNumberToObject(l2i, lab, k);
    }
    return j;
}

int model_config_save(const model_config *c, const char *dir, pl_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j = c->arch == ARCH_LLAMA  ? llama_json(c)
               : c->arch == ARCH_BERT ? bert_json(c)
                                      : gpt2_json(c);
    cJSON_AddStringToObject(j, "torch_dtype", "float32");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = pl_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

int model_save(const model *m, const char *dir, pl_err *e)
{
    if (m->compute != MODEL_FP32)
        return pl_errf(e, "%s: a model switched to bf16 compute has no fp32 weights to save", dir);
    if (mkdir(dir, 0755) != 0) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return pl_errf(e, "%s: cannot create directory", dir);
    }
    int nw = model_weight_count(&m->cfg);
    model_weight *w = calloc((size_t)nw + 1, sizeof *w);
    st_entry *ent = calloc((size_t)nw + 1, sizeof *ent);
    char (*names)[160] = calloc((size_t)nw + 1, sizeof *names);
    if (!w || !ent || !names) {
        free(w), free(ent), free(names);
        return pl_errf(e, "out of memory");
    }
    int n = model_weight_table_of((model *)m, w);   /* leaves m as it is */
    if (n < 0) {
        free(w), free(ent), free(names);
        return pl_errf(e, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!*w[i].slot)   /* an optional weight the model lacks (a classifier) */
            continue;
        const char *prefix = m->cfg.arch == ARCH_GPT2                 ? "transformer."
                             : m->cfg.arch == ARCH_BERT && !w[i].head ? "bert."
                                                                      : "";
        snprintf(names[k], sizeof names[k], "%s%s", prefix, w[i].name);
        ent[k] = (st_entry){names[k], ST_F32, w[i].ndim, {w[i].shape[0], w[i].shape[1]}, *w[i].slot};
        k++;
    }
    n = k;
    if (m->lm_head != m->wte) {
        snprintf(names[n], sizeof names[n], "lm_head.weight");
        ent[n] = (st_entry){names[n], ST_F32, 2, {m->cfg.vocab, m->cfg.n_embd}, m->lm_head};
        n++;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    int rc = st_write(path, ent, n, mk, mv, 1, e);
    if (rc == 0) {
        model_config c = m->cfg;
        c.tie_embeddings = m->lm_head == m->wte;
        rc = model_config_save(&c, dir, e);
    }
    free(w), free(ent), free(names);
    return rc;
}
