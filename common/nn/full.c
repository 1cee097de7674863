/* full.c - full fine-tuning's layout, weights and model files (see full.h). */
#include "full.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "safetensors.h"

int full_include_parse(const char *list, unsigned *include, pl_err *e)
{
    char buf[256];
    *include = 0;
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        if (!strcmp(tok, "biases"))
            *include |= FULL_BIASES;
        else if (!strcmp(tok, "norms"))
            *include |= FULL_NORMS;
        else if (!strcmp(tok, "embeddings"))
            *include |= FULL_EMBEDDINGS;
        else
            return pl_errf(e, "--full-include: expected biases, norms and/or embeddings, got '%s'",
                           tok);
    }
    return 0;
}

/* What kind of weight the table row at slot is: 'w' a linear map's matrix,
 * 'b' its bias, 'n' a norm (weight or bias), 'e' an embedding (wte, wpe). */
static char kind_of(const model *m, const float **slot)
{
    if (slot == &m->lnf_w || slot == &m->lnf_b)
        return 'n';
    if (slot == &m->wte || slot == &m->wpe)
        return 'e';
    for (int l = 0; l < m->cfg.n_layer; l++) {
        model_block *b = &m->blocks[l];
        if (slot == &b->ln1_w || slot == &b->ln1_b || slot == &b->ln2_w || slot == &b->ln2_b)
            return 'n';
        for (int s = 0; s < MODEL_MAX_LINEARS; s++) {
            if (slot == &b->lin[s].w)
                return 'w';
            if (slot == &b->lin[s].b)
                return 'b';
        }
    }
    return 0;
}

static int trained(char kind, unsigned include)
{
    return kind == 'w' || (kind == 'b' && (include & FULL_BIASES)) ||
           (kind == 'n' && (include & FULL_NORMS)) || (kind == 'e' && (include & FULL_EMBEDDINGS));
}

/* An untied head is trained with the embeddings, as the last tensor. */
static int head_trained(const model *m, unsigned include)
{
    return (include & FULL_EMBEDDINGS) && m->lm_head && m->lm_head != m->wte;
}

/* m's weight table (slots in m), malloc'd; *n its rows. */
static model_weight *table_of(model *m, int *n)
{
    model_weight *w = calloc((size_t)model_weight_count(&m->cfg) + 1, sizeof *w);
    *n = w ? model_weight_table_of(m, w) : -1;
    if (*n < 0) {
        free(w);
        return NULL;
    }
    return w;
}

int full_layout_build(lora_layout *L, model *m, unsigned include, float **params, pl_err *e)
{
    memset(L, 0, sizeof *L);
    *params = NULL;
    if (m->compute != MODEL_FP32)
        return pl_errf(e, "--full: needs --compute fp32");
    int n;
    model_weight *w = table_of(m, &n);
    full_layout *F = calloc(1, sizeof *F);
    if (F)
        F->t = calloc((size_t)(n > 0 ? n : 0) + 1, sizeof *F->t);   /* + lm_head */
    if (!w || !F || !F->t) {
        free(w);
        full_layout_free(F);
        free(F);
        return pl_errf(e, "out of memory for the full fine-tuning layout");
    }
    F->include = include;
    for (int i = 0; i < n; i++) {
        if (!trained(kind_of(m, w[i].slot), include))
            continue;
        full_tensor *t = &F->t[F->n++];
        snprintf(t->name, sizeof t->name, "%s%s", m->cfg.arch == ARCH_GPT2 ? "transformer." : "",
                 w[i].name);
        t->ndim = w[i].ndim;
        t->shape[0] = w[i].shape[0], t->shape[1] = w[i].ndim == 2 ? w[i].shape[1] : 0;
        t->numel = (size_t)w[i].shape[0] * (w[i].ndim == 2 ? (size_t)w[i].shape[1] : 1);
        t->off = F->n_params;
        F->n_params += t->numel;
    }
    if (head_trained(m, include)) {   /* "lm_head.weight" [V, C], no prefix in either arch */
        full_tensor *t = &F->t[F->n++];
        snprintf(t->name, sizeof t->name, "lm_head.weight");
        t->ndim = 2;
        t->shape[0] = m->cfg.vocab, t->shape[1] = m->cfg.n_embd;
        t->numel = (size_t)m->cfg.vocab * (size_t)m->cfg.n_embd;
        t->off = F->n_params;
        F->n_params += t->numel;
    }
    float *p = malloc((F->n_params ? F->n_params : 1) * sizeof *p);
    if (!p) {
        size_t np = F->n_params;
        free(w);
        full_layout_free(F);
        free(F);
        return pl_errf(e, "out of memory for the %zu trained weights", np);
    }
    int k = 0;
    for (int i = 0; i < n; i++)   /* copied out: the mapped pages need not stay resident */
        if (trained(kind_of(m, w[i].slot), include)) {
            memcpy(p + F->t[k].off, *w[i].slot, F->t[k].numel * sizeof *p);
            hf_files_drop_pages(&m->files, *w[i].slot, F->t[k].numel * sizeof *p);
            k++;
        }
    if (head_trained(m, include))
        memcpy(p + F->t[k].off, m->lm_head, F->t[k].numel * sizeof *p);
    free(w);
    L->full = F;
    L->n_params = F->n_params;
    snprintf(L->targets, sizeof L->targets, "full");
    *params = p;
    return 0;
}

void full_layout_free(full_layout *F)
{
    if (!F)
        return;
    free(F->t);
    F->t = NULL;
    F->n = 0;
}

void full_point(const full_layout *F, model *m, float *const *at)
{
    int n, k = 0, tied = m->lm_head == m->wte, head = head_trained(m, F->include);
    model_weight *w = table_of(m, &n);
    for (int i = 0; w && i < n; i++)
        if (trained(kind_of(m, w[i].slot), F->include))
            *w[i].slot = at[k++];
    free(w);
    if (head)   /* the last tensor */
        m->lm_head = at[F->n - 1];
    else if (tied)   /* the head is the (maybe moved) wte */
        m->lm_head = m->wte;
}

void full_attach(const full_layout *F, model *m, float *params)
{
    float **at = malloc(((size_t)F->n + 1) * sizeof *at);
    for (int i = 0; at && i < F->n; i++)
        at[i] = params + F->t[i].off;
    if (at)
        full_point(F, m, at);
    free(at);
    m->trained = params;
    m->n_trained = F->n_params;
}

int full_load(const full_layout *F, const char *dir, float *params, pl_err *e)
{
    char path[4200];
    st_file f;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_open(&f, path, e) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < F->n && !rc; i++) {
        const full_tensor *t = &F->t[i];
        const st_tensor *s = st_find(&f, t->name);
        if (!s)
            rc = pl_errf(e, "%s: tensor %s missing", path, t->name);
        else if (s->dtype != ST_F32 || s->numel != t->numel || s->ndim != t->ndim ||
                 s->shape[0] != t->shape[0] || (t->ndim == 2 && s->shape[1] != t->shape[1]))
            rc = pl_errf(e, "%s: tensor %s is not F32 of the model's shape", path, t->name);
        else
            memcpy(params + t->off, s->data, t->numel * sizeof *params);
    }
    st_close(&f);
    return rc;
}
