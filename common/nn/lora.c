/* lora.c - adapter layout, PEFT initialisation and PEFT adapter files. */
#include "lora.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "full.h"
#include "rng.h"
#include "safetensors.h"
#include "vec.h"

/* PEFT's rule: target t matches module path p when p == t or p ends with "." t. */
static int target_matches(const char *path, const char *t)
{
    size_t lp = strlen(path), lt = strlen(t);
    if (lp == lt)
        return strcmp(path, t) == 0;
    return lp > lt && path[lp - lt - 1] == '.' && strcmp(path + lp - lt, t) == 0;
}

/* Splits a comma-separated list in place; returns the count. */
static int split_targets(char *buf, char **out, int max)
{
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ","))
        out[n++] = tok;
    return n;
}

/* Expands "all-linear" to every linear map of the architecture. */
static void expand_targets(const model_config *c, const char *targets, char *out, size_t len)
{
    if (strcmp(targets, "all-linear") != 0) {
        snprintf(out, len, "%s", targets);
        return;
    }
    out[0] = 0;
    for (int s = 0; s < model_n_linears(c); s++) {
        const char *name = strrchr(model_linear_name(c, s), '.') + 1;
        if (!strstr(out, name)) /* c_proj appears twice in GPT-2 */
            snprintf(out + strlen(out), len - strlen(out), "%s%s", s ? "," : "", name);
    }
}

int lora_layout_build(lora_layout *L, const model_config *c, const char *targets, int r,
                      float alpha, int rslora, float dropout, pl_err *e)
{
    memset(L, 0, sizeof *L);
    if (r < 1)
        return pl_errf(e, "--rank: must be >= 1, got %d", r);
    if (!(dropout >= 0 && dropout < 1))
        return pl_errf(e, "--dropout: must be in [0, 1), got %g", dropout);
    char buf[256], *t[32];
    expand_targets(c, targets, L->targets, sizeof L->targets);
    snprintf(buf, sizeof buf, "%s", L->targets);
    int nt = split_targets(buf, t, 32);
    if (nt == 0)
        return pl_errf(e, "--targets: empty list");
    int nl = model_n_linears(c), hit[32] = {0};
    L->m = calloc((size_t)(c->n_layer + 1) * MODEL_MAX_LINEARS, sizeof *L->m);
    if (!L->m)
        return pl_errf(e, "out of memory");
    /* the blocks' linears, then (layer n_layer) BERT's head linears */
    for (int l = 0; l <= c->n_layer; l++)
        for (int s = l < c->n_layer ? 0 : nl; s < (l < c->n_layer ? nl : MODEL_MAX_LINEARS); s++) {
            char path[128];
            if (l == c->n_layer && !model_has_head_linear(c, s))
                continue;
            model_module_path(c, l, s, path, sizeof path);
            int match = 0;
            for (int k = 0; k < nt; k++)
                if (target_matches(path, t[k]))
                    match = hit[k] = 1;
            if (!match)
                continue;
            lora_module *mod = &L->m[L->n++];
            snprintf(mod->path, sizeof mod->path, "%s", path);
            mod->layer = l, mod->slot = s;
            model_linear_shape(c, s, &mod->in, &mod->out);
            mod->a_off = L->n_params;
            mod->b_off = mod->a_off + (size_t)r * mod->in;
            L->n_params = mod->b_off + (size_t)mod->out * r;
        }
    for (int k = 0; k < nt; k++)
        if (!hit[k]) {
            pl_errf(e, "--targets: '%s' matches no module of this %s model", t[k],
                    model_arch_name(c->arch));
            lora_layout_free(L);
            return -1;
        }
    L->r = r, L->alpha = alpha, L->rslora = rslora, L->dropout = dropout;
    L->scale = lora_scale(alpha, r, rslora);
    return 0;
}

float lora_scale(float alpha, int r, int rslora)
{
    return rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
}

void lora_layout_free(lora_layout *L)
{
    full_layout_free(L->full);
    free(L->full);
    L->full = NULL;
    free(L->m);
    L->m = NULL;
    L->n = 0;
}

int lora_layout_add_classifier(lora_layout *L, const model_config *c, pl_err *e)
{
    if (c->arch != ARCH_BERT || c->task != TASK_CLS || c->num_labels < 1)
        return pl_errf(e, "a trained classifier needs a bert model with --task cls");
    L->n_labels = c->num_labels, L->cls_in = c->n_embd;
    L->cls_off = L->n_params;
    L->n_params += (size_t)L->n_labels * (L->cls_in + 1);
    return 0;
}

void lora_init_classifier(const lora_layout *L, const model *m, float *p, unsigned long long seed)
{
    size_t nw = (size_t)L->n_labels * L->cls_in;
    float *w = p + L->cls_off;
    if (m && m->cls_w && m->cls_b) {
        memcpy(w, m->cls_w, nw * sizeof *w);
        memcpy(w + nw, m->cls_b, (size_t)L->n_labels * sizeof *w);
        return;
    }
    rng_state r;
    uint64_t words[2] = {seed, 0xc1a55};
    rng_seed(&r, words, 2);
    rng_fill_normal(&r, w, nw, 0.02f);
    memset(w + nw, 0, (size_t)L->n_labels * sizeof *w);
}

void lora_attach(const lora_layout *L, model *m)
{
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < MODEL_MAX_LINEARS; s++)
            m->blocks[l].lin[s].lora = -1;
    m->pooler.lora = m->mlm_dense.lora = -1;
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        if (mod->layer == m->cfg.n_layer)
            model_head_linear(m, mod->slot)->lora = i;
        else
            m->blocks[mod->layer].lin[mod->slot].lora = i;
    }
}

int lora_n_tensors(const lora_layout *L)
{
    return L->full ? L->full->n : 2 * L->n + (L->n_labels ? 2 : 0);
}

size_t lora_tensor_offset(const lora_layout *L, int id)
{
    if (L->full)
        return L->full->t[id].off;
    if (id >= 2 * L->n)   /* the classifier's weight, then bias */
        return L->cls_off + (id % 2 ? (size_t)L->n_labels * L->cls_in : 0);
    return id % 2 ? L->m[id / 2].b_off : L->m[id / 2].a_off;
}

size_t lora_tensor_numel(const lora_layout *L, int id)
{
    if (L->full)
        return L->full->t[id].numel;
    if (id >= 2 * L->n)
        return (size_t)L->n_labels * (id % 2 ? 1 : L->cls_in);
    const lora_module *m = &L->m[id / 2];
    return (size_t)L->r * (id % 2 ? m->out : m->in);
}

void lora_init_params(const lora_layout *L, float *p, unsigned long long seed)
{
    for (int i = 0; i < L->n; i++) {
        const lora_module *m = &L->m[i];
        /* kaiming_uniform_(a=sqrt(5)): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(in) */
        float bound = 1.0f / sqrtf((float)m->in);
        rng_state r;
        uint64_t words[3] = {seed, 0x10aa, (uint64_t)i};
        rng_seed(&r, words, 3);
        for (size_t k = 0; k < (size_t)L->r * m->in; k++)
            p[m->a_off + k] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
        memset(p + m->b_off, 0, (size_t)m->out * L->r * sizeof(float));
    }
}

/* ---- PEFT files ---- */

#define CLS_W_KEY "base_model.model.classifier.weight"
#define CLS_B_KEY "base_model.model.classifier.bias"

void lora_tensor_key(const lora_layout *L, int id, char *buf, size_t len, int64_t shape[2])
{
    if (id >= 2 * L->n) {
        snprintf(buf, len, "%s", id % 2 ? CLS_B_KEY : CLS_W_KEY);
        shape[0] = L->n_labels, shape[1] = id % 2 ? 1 : L->cls_in;
        return;
    }
    const lora_module *m = &L->m[id / 2];
    snprintf(buf, len, "base_model.model.%s.lora_%c.weight", m->path, id % 2 ? 'B' : 'A');
    shape[0] = id % 2 ? m->out : L->r;
    shape[1] = id % 2 ? L->r : m->in;
}

static void key_of(char *buf, size_t len, const lora_module *m, char ab)
{
    snprintf(buf, len, "base_model.model.%s.lora_%c.weight", m->path, ab);
}

static char *config_json(const lora_layout *L, const model_config *c, const char *base)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "alpha_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "auto_mapping");
    cJSON_AddStringToObject(j, "base_model_name_or_path", base ? base : "");
    cJSON_AddStringToObject(j, "bias", "none");
    cJSON_AddBoolToObject(j, "fan_in_fan_out", c->arch == ARCH_GPT2);
    cJSON_AddBoolToObject(j, "inference_mode", 1);
    cJSON_AddBoolToObject(j, "init_lora_weights", 1);
    cJSON_AddNullToObject(j, "layers_pattern");
    cJSON_AddNullToObject(j, "layers_to_transform");
    cJSON_AddNumberToObject(j, "lora_alpha", L->alpha);
    cJSON_AddNumberToObject(j, "lora_dropout", L->dropout);
    if (L->n_labels)
        cJSON_AddItemToArray(cJSON_AddArrayToObject(j, "modules_to_save"),
                             cJSON_CreateString("classifier"));
    else
        cJSON_AddNullToObject(j, "modules_to_save");
    cJSON_AddStringToObject(j, "peft_type", "LORA");
    cJSON_AddNumberToObject(j, "r", L->r);
    cJSON_AddItemToObject(j, "rank_pattern", cJSON_CreateObject());
    cJSON_AddNullToObject(j, "revision");
    cJSON *t = cJSON_AddArrayToObject(j, "target_modules");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", L->targets);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
        cJSON_AddItemToArray(t, cJSON_CreateString(tok));
    /* PEFT has no masked-LM task type: a bert mlm adapter has none */
    if (c->arch != ARCH_BERT)
        cJSON_AddStringToObject(j, "task_type", "CAUSAL_LM");
    else if (c->task == TASK_CLS)
        cJSON_AddStringToObject(j, "task_type", "SEQ_CLS");
    else
        cJSON_AddNullToObject(j, "task_type");
    cJSON_AddBoolToObject(j, "use_dora", 0);
    cJSON_AddBoolToObject(j, "use_rslora", L->rslora);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

int lora_save_peft(const char *dir, const lora_layout *L, const model_config *c, const float *p,
                   const char *base_model, pl_err *e)
{
    if (mkdir(dir, 0755) != 0) {
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return pl_errf(e, "%s: cannot create directory", dir);
    }
    st_entry *ent = calloc((size_t)2 * L->n + 3, sizeof *ent);
    char (*names)[160] = calloc((size_t)2 * L->n + 3, sizeof *names);
    if (!ent || !names) {
        free(ent);
        free(names);
        return pl_errf(e, "%s: out of memory", dir);
    }
    for (int i = 0; i < L->n; i++) {
        const lora_module *m = &L->m[i];
        key_of(names[2 * i], sizeof names[0], m, 'A');
        key_of(names[2 * i + 1], sizeof names[0], m, 'B');
        ent[2 * i] = (st_entry){names[2 * i], ST_F32, 2, {L->r, m->in}, p + m->a_off};
        ent[2 * i + 1] = (st_entry){names[2 * i + 1], ST_F32, 2, {m->out, L->r}, p + m->b_off};
    }
    int n = 2 * L->n;
    if (L->n_labels) {   /* modules_to_save: PEFT drops "modules_to_save.default." */
        const float *w = p + L->cls_off;
        ent[n++] = (st_entry){CLS_W_KEY, ST_F32, 2, {L->n_labels, L->cls_in}, w};
        ent[n++] = (st_entry){CLS_B_KEY, ST_F32, 1, {L->n_labels, 0},
                              w + (size_t)L->n_labels * L->cls_in};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    int rc = st_write(path, ent, n, mk, mv, 1, e);
    free(ent);
    free(names);
    if (rc != 0)
        return -1;
    char *json = config_json(L, c, base_model);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    rc = pl_write_atomic(path, json, strlen(json), e);
    free(json);
    return rc;
}

/* ---- reading PEFT adapter directories ---- */

static int refuse_if(int cond, const char *path, const char *what, pl_err *e)
{
    return cond ? pl_errf(e, "%s: %s is not supported", path, what) : 0;
}

static int nonempty(const cJSON *v)
{
    return v && !cJSON_IsNull(v) && !(cJSON_IsObject(v) && !v->child) &&
           !(cJSON_IsArray(v) && !v->child) && !cJSON_IsFalse(v);
}

/* Fills r, alpha, targets, rslora, dropout from adapter_config.json. */
/* modules_to_save: absent/null/empty (0), or ["classifier"] for a bert
 * cls model (1); anything else -1. */
static int modules_to_save(const cJSON *v, const model_config *c)
{
    if (!nonempty(v))
        return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 1 || !cJSON_IsString(v->child) ||
        strcmp(v->child->valuestring, "classifier") != 0)
        return -1;
    return !c || (c->arch == ARCH_BERT && c->task == TASK_CLS) ? 1 : -1;
}

static int read_adapter_config(const char *path, const model_config *c, int *r, float *alpha,
                               char *targets, size_t tlen, int *rslora, float *dropout,
                               int *classifier, pl_err *e)
{
    cJSON *j = hf_read_json_object(path, HF_JSON_MAX, e);
    if (!j)
        return -1;
    int rc = 0;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    const cJSON *jr = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *ja = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    const cJSON *jt = cJSON_GetObjectItemCaseSensitive(j, "target_modules");
    const cJSON *jb = cJSON_GetObjectItemCaseSensitive(j, "bias");
    const cJSON *jf = cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA") != 0)
        rc = pl_errf(e, "%s: peft_type must be \"LORA\"", path);
    else if (!cJSON_IsNumber(jr) || !(jr->valuedouble >= 1 && jr->valuedouble <= 65536) ||
             jr->valuedouble != (int)jr->valuedouble)
        rc = pl_errf(e, "%s: r must be an integer from 1 to 65536", path);
    else if (!cJSON_IsNumber(ja) || !(fabs(ja->valuedouble) <= 1e30))
        rc = pl_errf(e, "%s: lora_alpha must be a finite number", path);
    else if ((rc = refuse_if(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_dora")),
                                    path, "use_dora", e)))
        ;
    else if ((rc = refuse_if(nonempty(cJSON_GetObjectItemCaseSensitive(j, "rank_pattern")), path,
                             "a non-empty rank_pattern", e)))
        ;
    else if ((rc = refuse_if(nonempty(cJSON_GetObjectItemCaseSensitive(j, "alpha_pattern")), path,
                             "a non-empty alpha_pattern", e)))
        ;
    else if ((*classifier = modules_to_save(
                  cJSON_GetObjectItemCaseSensitive(j, "modules_to_save"), c)) < 0)
        rc = pl_errf(e, "%s: modules_to_save other than [\"classifier\"] for a bert cls model "
                        "is not supported", path);
    else if ((rc = refuse_if(nonempty(cJSON_GetObjectItemCaseSensitive(j, "layers_to_transform")),
                             path, "layers_to_transform", e)))
        ;
    else if (jb && !(cJSON_IsString(jb) && strcmp(jb->valuestring, "none") == 0))
        rc = pl_errf(e, "%s: bias other than \"none\" is not supported", path);
    else if (c && c->arch == ARCH_LLAMA && cJSON_IsTrue(jf))
        rc = pl_errf(e, "%s: fan_in_fan_out true does not fit a llama model", path);
    if (rc) {
        cJSON_Delete(j);
        return rc;
    }
    *r = (int)jr->valuedouble;
    *alpha = (float)ja->valuedouble;
    *rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "lora_dropout");
    *dropout = cJSON_IsNumber(jd) ? (float)jd->valuedouble : 0.0f;
    targets[0] = 0;
    if (cJSON_IsString(jt))
        snprintf(targets, tlen, "%s", jt->valuestring);
    else if (cJSON_IsArray(jt)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, jt)
        {
            if (!cJSON_IsString(it)) {
                rc = pl_errf(e, "%s: target_modules must hold strings", path);
                break;
            }
            size_t n = strlen(targets);
            snprintf(targets + n, tlen - n, "%s%s", n ? "," : "", it->valuestring);
        }
    }
    if (!rc && !targets[0])
        rc = pl_errf(e, "%s: target_modules missing or empty", path);
    cJSON_Delete(j);
    return rc;
}

int lora_read_peft_config(const char *dir, const model_config *c, lora_peft_config *pc,
                          pl_err *e)
{
    char path[4096];
    memset(pc, 0, sizeof *pc);
    if (snprintf(path, sizeof path, "%s/adapter_config.json", dir) >= (int)sizeof path)
        return pl_errf(e, "%s: path too long", dir);
    return read_adapter_config(path, c, &pc->r, &pc->alpha, pc->targets, sizeof pc->targets,
                               &pc->rslora, &pc->dropout, &pc->classifier, e);
}

/* Copies one adapter tensor after checking its shape ([d0] when d1 is 0). */
static int load_tensor(const st_file *f, const char *key, int64_t d0, int64_t d1, float *dst,
                       pl_err *e)
{
    const st_tensor *t = st_find(f, key);
    if (!t)
        return pl_errf(e, "%s: tensor %s missing", f->path, key);
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return pl_errf(e, "%s: tensor %s has dtype %s", f->path, key, st_dtype_name(t->dtype));
    if (d1 == 0 && (t->ndim != 1 || t->shape[0] != d0))
        return pl_errf(e, "%s: tensor %s has the wrong shape (expected [%lld])", f->path, key,
                       (long long)d0);
    if (d1 && (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1))
        return pl_errf(e, "%s: tensor %s has the wrong shape (expected [%lld, %lld])", f->path,
                       key, (long long)d0, (long long)d1);
    st_to_f32(dst, t->data, t->dtype, t->numel);
    return 0;
}

int lora_load_peft(const char *dir, const model_config *c, lora_layout *L, float **p, pl_err *e)
{
    char path[4096], targets[256];
    int r = 0, rslora = 0, cls = 0;
    float alpha = 0, dropout = 0;
    *p = NULL;
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (read_adapter_config(path, c, &r, &alpha, targets, sizeof targets, &rslora, &dropout,
                            &cls, e))
        return -1;
    pl_err te;
    if (lora_layout_build(L, c, targets, r, alpha, rslora, dropout, &te) != 0)
        return pl_errf(e, "%s: %s", path, te.msg);
    if (cls && lora_layout_add_classifier(L, c, &te) != 0) {
        lora_layout_free(L);
        return pl_errf(e, "%s: %s", path, te.msg);
    }
    st_file f;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st_open(&f, path, e) != 0) {
        lora_layout_free(L);
        return -1;
    }
    float *params = vec_falloc(L->n_params);
    int rc = params ? 0 : pl_errf(e, "%s: out of memory", path);
    if (params)
        memset(params, 0, (L->n_params ? L->n_params : 1) * sizeof *params);
    int found = 0;
    for (int i = 0; i < L->n && !rc; i++) {
        char ka[192], kb[192];
        key_of(ka, sizeof ka, &L->m[i], 'A');
        key_of(kb, sizeof kb, &L->m[i], 'B');
        rc = load_tensor(&f, ka, L->r, L->m[i].in, params + L->m[i].a_off, e);
        if (!rc)
            rc = load_tensor(&f, kb, L->m[i].out, L->r, params + L->m[i].b_off, e);
        found += 2;
    }
    if (L->n_labels && !rc) {
        float *w = params + L->cls_off;
        rc = load_tensor(&f, CLS_W_KEY, L->n_labels, L->cls_in, w, e);
        if (!rc)
            rc = load_tensor(&f, CLS_B_KEY, L->n_labels, 0, w + (size_t)L->n_labels * L->cls_in, e);
        found += 2;
    }
    if (!rc && f.n != found)
        rc = pl_errf(e, "%s: holds %d tensors, the adapter layout has %d (unknown keys)", path,
                     f.n, found);
    st_close(&f);
    if (rc) {
        free(params);
        lora_layout_free(L);
        return -1;
    }
    *p = params;
    return 0;
}
