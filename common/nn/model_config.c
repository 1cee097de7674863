/* model_config.c - config.json of a Hugging Face model directory (GPT-2, Llama). */
#include "model.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

const char *model_arch_name(model_arch a)
{
    return a == ARCH_LLAMA ? "llama" : a == ARCH_BERT ? "bert" : "gpt2";
}

int model_task_parse(const char *s, model_task *t)
{
    if (strcmp(s, "mlm") == 0)
        *t = TASK_MLM;
    else if (strcmp(s, "cls") == 0)
        *t = TASK_CLS;
    else if (strcmp(s, "none") == 0)
        *t = TASK_NONE;
    else
        return -1;
    return 0;
}

int model_arch_parse(const char *s, model_arch *a)
{
    if (strcmp(s, "gpt2") == 0)
        *a = ARCH_GPT2;
    else if (strcmp(s, "llama") == 0)
        *a = ARCH_LLAMA;
    else if (strcmp(s, "bert") == 0)
        *a = ARCH_BERT;
    else
        return -1;
    return 0;
}

/* Reads an integer field; required fields that are missing are an error. */
static int get_int(const cJSON *j, const char *key, int *out, int required, int min,
                   const char *path, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return pl_errf(e, "%s: missing %s", path, key);
        return 0;
    }
    /* range first: casting an out-of-range double to int is undefined */
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) ||
        v->valuedouble != (double)(int)v->valuedouble)
        return pl_errf(e, "%s: %s must be an integer", path, key);
    if ((int)v->valuedouble < min)
        return pl_errf(e, "%s: %s must be >= %d, got %d", path, key, min, (int)v->valuedouble);
    *out = (int)v->valuedouble;
    return 0;
}

static int get_float(const cJSON *j, const char *key, float *out, const char *path, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return pl_errf(e, "%s: %s must be a positive number", path, key);
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *j, const char *key, int *out, const char *path, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return pl_errf(e, "%s: %s must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

static int parse_gpt2(model_config *c, const cJSON *j, const char *path, pl_err *e)
{
    c->arch = ARCH_GPT2;
    c->eps = 1e-5f;
    c->n_ctx = 0;
    c->tie_embeddings = 1;
    if (get_int(j, "n_embd", &c->n_embd, 1, 1, path, e) || get_int(j, "n_layer", &c->n_layer, 1, 1, path, e) ||
        get_int(j, "n_head", &c->n_head, 1, 1, path, e) ||
        get_int(j, "vocab_size", &c->vocab, 1, 1, path, e) ||
        get_int(j, "n_positions", &c->n_ctx, 1, 1, path, e) ||
        get_int(j, "n_inner", &c->n_inner, 0, 1, path, e) ||
        get_float(j, "layer_norm_epsilon", &c->eps, path, e) ||
        get_bool(j, "tie_word_embeddings", &c->tie_embeddings, path, e))
        return -1;
    if (c->n_inner == 0)
        c->n_inner = 4 * c->n_embd;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "activation_function");
    if (act && !(cJSON_IsString(act) && (strcmp(act->valuestring, "gelu_new") == 0 ||
                                         strcmp(act->valuestring, "gelu_pytorch_tanh") == 0)))
        return pl_errf(e, "%s: activation_function must be \"gelu_new\" (the tanh GELU)", path);
    if (c->n_embd % c->n_head)
        return pl_errf(e, "%s: n_embd %d is not a multiple of n_head %d", path, c->n_embd, c->n_head);
    c->n_kv_head = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    return 0;
}

/* LlamaConfig, with transformers' defaults for absent keys (rms_norm_eps 1e-6,
 * rope_theta 10000, max_position_embeddings 2048, tie_word_embeddings false,
 * num_key_value_heads = num_attention_heads, head_dim = hidden / heads). */
static int parse_llama(model_config *c, const cJSON *j, const char *path, pl_err *e)
{
    c->arch = ARCH_LLAMA;
    c->eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->tie_embeddings = 0;
    c->n_ctx = 2048;
    if (get_int(j, "hidden_size", &c->n_embd, 1, 1, path, e) ||
        get_int(j, "num_hidden_layers", &c->n_layer, 1, 1, path, e) ||
        get_int(j, "num_attention_heads", &c->n_head, 1, 1, path, e) ||
        get_int(j, "intermediate_size", &c->n_inner, 1, 1, path, e) ||
        get_int(j, "vocab_size", &c->vocab, 1, 1, path, e) ||
        get_int(j, "max_position_embeddings", &c->n_ctx, 0, 1, path, e) ||
        get_float(j, "rms_norm_eps", &c->eps, path, e) ||
        get_float(j, "rope_theta", &c->rope_theta, path, e) ||
        get_bool(j, "tie_word_embeddings", &c->tie_embeddings, path, e) ||
        get_bool(j, "attention_bias", &c->attn_bias, path, e) ||
        get_bool(j, "mlp_bias", &c->mlp_bias, path, e))
        return -1;
    c->n_kv_head = c->n_head;
    c->head_dim = 0;
    if (get_int(j, "num_key_value_heads", &c->n_kv_head, 0, 1, path, e) ||
        get_int(j, "head_dim", &c->head_dim, 0, 1, path, e))
        return -1;
    if (c->head_dim == 0) {   /* transformers: hidden_size // num_attention_heads */
        if (c->n_embd % c->n_head)
            return pl_errf(e, "%s: hidden_size %d is not a multiple of num_attention_heads %d "
                              "(and no head_dim)", path, c->n_embd, c->n_head);
        c->head_dim = c->n_embd / c->n_head;
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return pl_errf(e, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs))
        return pl_errf(e, "%s: rope_scaling is not supported (only plain rotary embeddings)", path);
    if (c->n_head % c->n_kv_head)
        return pl_errf(e, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       path, c->n_head, c->n_kv_head);
    if (c->head_dim % 2)
        return pl_errf(e, "%s: head_dim %d must be even for rotary embeddings", path, c->head_dim);
    return 0;
}

/* BERT's number of labels: the size of id2label when given (transformers
 * writes it, not num_labels), else num_labels, else transformers' 2. */
static int bert_labels(model_config *c, const cJSON *j, const char *path, pl_err *e)
{
    c->num_labels = 2;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "id2label");
    if (map && cJSON_IsObject(map)) {
        c->num_labels = cJSON_GetArraySize(map);
        if (c->num_labels < 1)
            return pl_errf(e, "%s: id2label is empty", path);
        return 0;
    }
    return get_int(j, "num_labels", &c->num_labels, 0, 1, path, e);
}

/* The head the architectures list names: BertForSequenceClassification ->
 * cls, BertModel alone -> none, else (BertForMaskedLM, BertForPreTraining,
 * no list) mlm. */
static model_task bert_task(const cJSON *j)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "architectures"), *it;
    model_task t = TASK_MLM;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it))
            continue;
        if (strcmp(it->valuestring, "BertForSequenceClassification") == 0)
            return TASK_CLS;
        if (strcmp(it->valuestring, "BertModel") == 0)
            t = TASK_NONE;
    }
    return t;
}

/* BertConfig, with transformers' defaults for absent keys (layer_norm_eps
 * 1e-12, type_vocab_size 2, max_position_embeddings 512, hidden_act gelu). */
static int parse_bert(model_config *c, const cJSON *j, const char *path, pl_err *e)
{
    c->arch = ARCH_BERT;
    c->eps = 1e-12f;
    c->type_vocab = 2;
    c->n_ctx = 512;
    c->tie_embeddings = 1;
    c->attn_bias = c->mlp_bias = 1;
    if (get_int(j, "hidden_size", &c->n_embd, 1, 1, path, e) ||
        get_int(j, "num_hidden_layers", &c->n_layer, 1, 1, path, e) ||
        get_int(j, "num_attention_heads", &c->n_head, 1, 1, path, e) ||
        get_int(j, "intermediate_size", &c->n_inner, 1, 1, path, e) ||
        get_int(j, "vocab_size", &c->vocab, 1, 1, path, e) ||
        get_int(j, "max_position_embeddings", &c->n_ctx, 0, 1, path, e) ||
        get_int(j, "type_vocab_size", &c->type_vocab, 0, 1, path, e) ||
        get_float(j, "layer_norm_eps", &c->eps, path, e) || bert_labels(c, j, path, e))
        return -1;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    c->act_erf = 1;
    if (act && cJSON_IsString(act) && (strcmp(act->valuestring, "gelu_new") == 0 ||
                                       strcmp(act->valuestring, "gelu_pytorch_tanh") == 0))
        c->act_erf = 0;
    else if (act && !(cJSON_IsString(act) && strcmp(act->valuestring, "gelu") == 0))
        return pl_errf(e, "%s: hidden_act must be \"gelu\" or \"gelu_new\"", path);
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(j, "position_embedding_type");
    if (pe && !(cJSON_IsString(pe) && strcmp(pe->valuestring, "absolute") == 0))
        return pl_errf(e, "%s: position_embedding_type must be \"absolute\"", path);
    if (c->n_embd % c->n_head)
        return pl_errf(e, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                       c->n_embd, c->n_head);
    c->n_kv_head = c->n_head;
    c->head_dim = c->n_embd / c->n_head;
    c->task = bert_task(j);
    return 0;
}

int model_config_load(model_config *c, const char *dir, pl_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    memset(c, 0, sizeof *c);
    cJSON *j = hf_read_json_object(path, HF_JSON_MAX, e);
    if (!j)
        return -1;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    int rc;
    if (mt && cJSON_IsString(mt) && strcmp(mt->valuestring, "llama") == 0)
        rc = parse_llama(c, j, path, e);
    else if (mt && cJSON_IsString(mt) && strcmp(mt->valuestring, "bert") == 0)
        rc = parse_bert(c, j, path, e);
    else if (!mt || (cJSON_IsString(mt) && strcmp(mt->valuestring, "gpt2") == 0))
        rc = parse_gpt2(c, j, path, e);
    else
        rc = pl_errf(e, "%s: model_type %s is not supported (gpt2, llama, bert)", path,
                     cJSON_IsString(mt) ? mt->valuestring : "(not a string)");
    cJSON_Delete(j);
    return rc;
}

int model_dir_is_encoder(const char *dir)
{
    model_config c;
    pl_err e;
    return dir && model_config_load(&c, dir, &e) == 0 && c.arch == ARCH_BERT;
}
