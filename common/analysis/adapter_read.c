/* adapter_read.c - adapters without a model, and base weights for the analysis. */
#include "adapter_read.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "safetensors.h"

static const char AR_PREFIX[] = "base_model.model.";
static const char AR_SUFFIX_A[] = ".lora_A.weight";
static const char AR_SUFFIX_B[] = ".lora_B.weight";

/* The module path of a tensor name "base_model.model.<path><suffix>" into
 * path [128]; -1 when the name is not of that form. */
static int ar_path_of(const char *name, const char *suffix, char *path)
{
    size_t ln = strlen(name), lp = sizeof AR_PREFIX - 1, ls = strlen(suffix);
    if (ln <= lp + ls || strncmp(name, AR_PREFIX, lp) != 0 || strcmp(name + ln - ls, suffix) != 0 ||
        ln - lp - ls >= 128)
        return -1;
    memcpy(path, name + lp, ln - lp - ls);
    path[ln - lp - ls] = 0;
    return 0;
}

/* Natural order: runs of digits compare as numbers (h.2 < h.10). */
static int ar_natural_cmp(const void *pa, const void *pb)
{
    const char *a = ((const ar_module *)pa)->path, *b = ((const ar_module *)pb)->path;
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            char *ea, *eb;
            unsigned long x = strtoul(a, &ea, 10), y = strtoul(b, &eb, 10);
            if (x != y)
                return x < y ? -1 : 1;
            a = ea, b = eb;
        } else if (*a != *b) {
            return (unsigned char)*a - (unsigned char)*b;
        } else {
            a++, b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int ar_check_tensor(const st_file *f, const st_tensor *t, int64_t d0, int64_t d1,
                           pl_err *e)
{
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return pl_errf(e, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", f->path,
                       t->name, st_dtype_name(t->dtype));
    if (t->ndim != 2 || (d0 >= 0 && t->shape[0] != d0) || (d1 >= 0 && t->shape[1] != d1))
        return pl_errf(e, "%s: tensor %s is not [%s, %s] for r = %lld", f->path, t->name,
                       d0 >= 0 ? "r" : "out", d1 >= 0 ? "r" : "in",
                       (long long)(d0 >= 0 ? d0 : d1));
    return 0;
}

/* Every tensor of f is an A or a B (or, with classifier, BERT's trained
 * classifier, PEFT's modules_to_save, which is left out); fills ad->m
 * (paths, shapes) from the As. */
static int ar_collect(ar_adapter *ad, const st_file *f, int classifier, pl_err *e)
{
    static const char cls[] = "base_model.model.classifier.";
    int n_b = 0;
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->t[i];
        char path[128];
        if (classifier && strncmp(t->name, cls, sizeof cls - 1) == 0)
            continue;
        if (ar_path_of(t->name, AR_SUFFIX_B, path) == 0) {
            n_b++;
            continue;
        }
        if (ar_path_of(t->name, AR_SUFFIX_A, path) != 0)
            return pl_errf(e, "%s: tensor %s is not a LoRA weight (%s<module>%s or %s)", f->path,
                           t->name, AR_PREFIX, AR_SUFFIX_A, AR_SUFFIX_B);
        if (ar_check_tensor(f, t, ad->r, -1, e) != 0)
            return -1;
        char key[192];
        snprintf(key, sizeof key, "%s%s%s", AR_PREFIX, path, AR_SUFFIX_B);
        const st_tensor *tb = st_find(f, key);
        if (!tb)
            return pl_errf(e, "%s: tensor %s missing (%s has no B)", f->path, key, t->name);
        if (ar_check_tensor(f, tb, -1, ad->r, e) != 0)
            return -1;
        ar_module *m = &ad->m[ad->n++];
        snprintf(m->path, sizeof m->path, "%s", path);
        m->in = (int)t->shape[1], m->out = (int)tb->shape[0];
    }
    if (n_b != ad->n)
        return pl_errf(e, "%s: %d lora_B tensors for %d lora_A tensors", f->path, n_b, ad->n);
    if (ad->n == 0)
        return pl_errf(e, "%s: no LoRA tensors", f->path);
    return 0;
}

/* Copies the tensors of the (sorted) modules into one float block. */
static int ar_copy(ar_adapter *ad, const st_file *f, pl_err *e)
{
    size_t total = 0;
    for (int i = 0; i < ad->n; i++)
        total += (size_t)ad->r * (ad->m[i].in + ad->m[i].out);
    ad->data = malloc((total ? total : 1) * sizeof(float));
    if (!ad->data)
        return pl_errf(e, "%s: out of memory", f->path);
    float *p = ad->data;
    for (int i = 0; i < ad->n; i++) {
        ar_module *m = &ad->m[i];
        char key[192];
        snprintf(key, sizeof key, "%s%s%s", AR_PREFIX, m->path, AR_SUFFIX_A);
        const st_tensor *t = st_find(f, key);
        m->a = p, p += t->numel;
        st_to_f32(m->a, t->data, t->dtype, t->numel);
        snprintf(key, sizeof key, "%s%s%s", AR_PREFIX, m->path, AR_SUFFIX_B);
        t = st_find(f, key);
        m->b = p, p += t->numel;
        st_to_f32(m->b, t->data, t->dtype, t->numel);
    }
    return 0;
}

int ar_load(ar_adapter *ad, const char *dir, pl_err *e)
{
    memset(ad, 0, sizeof *ad);
    lora_peft_config pc;
    if (lora_read_peft_config(dir, NULL, &pc, e) != 0)
        return -1;
    ad->r = pc.r;
    ad->scale = lora_scale(pc.alpha, pc.r, pc.rslora);
    char path[4096];
    if (snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir) >= (int)sizeof path)
        return pl_errf(e, "%s: path too long", dir);
    st_file f;
    if (st_open(&f, path, e) != 0)
        return -1;
    ad->m = calloc((size_t)f.n + 1, sizeof *ad->m);
    int rc = ad->m ? ar_collect(ad, &f, pc.classifier, e) : pl_errf(e, "%s: out of memory", path);
    if (!rc) {
        qsort(ad->m, (size_t)ad->n, sizeof *ad->m, ar_natural_cmp);
        rc = ar_copy(ad, &f, e);
    }
    st_close(&f);
    if (rc)
        ar_free(ad);
    return rc;
}

void ar_free(ar_adapter *ad)
{
    free(ad->m);
    free(ad->data);
    memset(ad, 0, sizeof *ad);
}

static const ar_module *ar_find(const ar_adapter *a, const char *path)
{
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->m[i].path, path) == 0)
            return &a->m[i];
    return NULL;
}

int ar_same_modules(const ar_adapter *x, const char *dx, const ar_adapter *y, const char *dy,
                    pl_err *e)
{
    for (int pass = 0; pass < 2; pass++) {
        const ar_adapter *p = pass ? y : x, *q = pass ? x : y;
        for (int i = 0; i < p->n; i++) {
            const ar_module *a = &p->m[i], *b = ar_find(q, a->path);
            if (!b)
                return pl_errf(e, "%s and %s adapt different modules: %s only in %s", dx, dy,
                               a->path, pass ? dy : dx);
            if (a->in != b->in || a->out != b->out)
                return pl_errf(e, "%s and %s: module %s is %d x %d in one and %d x %d in the "
                                  "other", dx, dy, a->path, a->out, a->in, b->out, b->in);
        }
    }
    return 0;
}

/* The linear map of the model whose module path is `path`, or NULL. */
static const model_linear *ar_find_linear(const model *m, const char *path)
{
    char buf[128];
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int s = 0; s < model_n_linears(&m->cfg); s++) {
            model_module_path(&m->cfg, l, s, buf, sizeof buf);
            if (strcmp(buf, path) == 0)
                return &m->blocks[l].lin[s];
        }
    return NULL;
}

int ar_base_weight(const model *m, const char *model_dir, const ar_module *mod, double *w,
                   pl_err *e)
{
    const model_linear *lin = ar_find_linear(m, mod->path);
    if (!lin)
        return pl_errf(e, "%s: no module %s (the adapter's) in this %s model", model_dir,
                       mod->path, model_arch_name(m->cfg.arch));
    if (lin->in != mod->in || lin->out != mod->out)
        return pl_errf(e, "%s: module %s is %d x %d (out x in), the adapter's is %d x %d",
                       model_dir, mod->path, lin->out, lin->in, mod->out, mod->in);
    if (!lin->w)
        return pl_errf(e, "%s: module %s has no fp32 weight", model_dir, mod->path);
    int out = lin->out, in = lin->in;
    /* Conv1D [in, out] row-major is W (out x in) column-major as it lies;
     * Linear [out, in] row-major is W^T column-major. */
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++)
            w[o + (size_t)i * out] =
                lin->conv1d ? lin->w[(size_t)i * out + o] : lin->w[(size_t)o * in + i];
    return 0;
}
