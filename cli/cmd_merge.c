/* cmd_merge.c - `pslora merge`: fold a LoRA adapter into the base weights.
 *
 * For an adapted linear map with frozen W, A [r, in], B [out, r], scale s:
 *   torch Linear (Llama)  W [out, in]:  W[o][i] += s * sum_k B[o][k] A[k][i]   (W += s B A)
 *   GPT-2 Conv1D          W [in, out]:  W[i][o] += s * sum_k A[k][i] B[o][k]   (W += s A^T B^T)
 * computed in fp32 and stored back in the tensor's own dtype (F32, F16, BF16).
 *
 * The output is a complete model directory: config.json (and
 * generation_config.json) copied byte for byte, and the same safetensors files
 * as the input (model.safetensors, or the shards and their index) holding the
 * same tensor names, dtypes and shapes.  It appears whole or not at all.
 * A BERT classification adapter also brings its classifier (merge_cls.h). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "file.h"
#include "flags.h"
#include "hf_files.h"
#include "lora.h"
#include "merge_cls.h"
#include "model.h"
#include "outdir.h"
#include "safetensors.h"

#define MERGE_JSON_MAX (64u << 20)

/* Where the weight of adapter module i lives: file and tensor. */
typedef struct {
    int file;
    const st_tensor *t;
} merge_target;

/* DIR/NAME into buf [4096]; -1 (+ e) when the path does not fit. */
static int merge_join(char *buf, const char *dir, const char *name, pl_err *e)
{
    if (snprintf(buf, 4096, "%s/%s", dir, name) >= 4096)
        return pl_errf(e, "%s: path too long", dir);
    return 0;
}

/* The length of the prefix a file may leave out of key: GPT-2's
 * "transformer." or BERT's "bert." (0 when key has neither). */
static size_t merge_short_prefix(const char *key)
{
    static const char *const prefixes[] = {"transformer.", "bert."};
    for (int k = 0; k < 2; k++)
        if (strncmp(key, prefixes[k], strlen(prefixes[k])) == 0)
            return strlen(prefixes[k]);
    return 0;
}

/* Maps each adapter module to its weight: "<path>.weight", or the same
 * without "transformer." (GPT-2) or "bert." (BERT), and checks dtype and
 * the layout's shape ([in, out] for Conv1D, [out, in] for Linear). */
static int merge_find_targets(const hf_files *s, const char *dir, const lora_layout *L,
                              int conv1d, merge_target *tg, pl_err *e)
{
    for (int i = 0; i < L->n; i++) {
        const lora_module *mod = &L->m[i];
        char key[160];
        snprintf(key, sizeof key, "%s.weight", mod->path);
        size_t skip = merge_short_prefix(key);
        const st_tensor *t = hf_files_find(s, key, &tg[i].file);
        if (!t && skip)
            t = hf_files_find(s, key + skip, &tg[i].file);
        if (!t)
            return pl_errf(e, "%s: no tensor %s%s%s for the adapter's module %s", dir, key,
                           skip ? " or " : "", skip ? key + skip : "", mod->path);
        const char *fname = s->files[tg[i].file].path;
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return pl_errf(e, "%s: tensor %s has dtype %s (F32, F16 or BF16 expected)", fname,
                           t->name, st_dtype_name(t->dtype));
        int64_t d0 = conv1d ? mod->in : mod->out, d1 = conv1d ? mod->out : mod->in;
        if (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1)
            return pl_errf(e, "%s: tensor %s is not [%lld, %lld] as the adapter needs (%s layout)",
                           fname, t->name, (long long)d0, (long long)d1,
                           conv1d ? "Conv1D [in, out]" : "Linear [out, in]");
        tg[i].t = t;
    }
    return 0;
}

/* W += s B A (Linear, W [out, in]) or W += s A^T B^T (Conv1D, W [in, out]),
 * with A [r, in] and B [out, r] row-major. */
static void merge_fold(float *w, const lora_module *mod, const lora_layout *L, const float *p,
                       int conv1d)
{
    const float *A = p + mod->a_off, *B = p + mod->b_off;
    int r = L->r, in = mod->in, out = mod->out;
    if (conv1d)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, in, out, r, L->scale, A, in, B, r,
                    1.0f, w, out);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, r, L->scale, B, r, A, in,
                    1.0f, w, in);
}

/* The merged bytes of one adapted tensor in its own dtype (malloc'd):
 * convert to fp32, fold, convert back with round to nearest even. */
static void *merge_tensor(const st_tensor *t, const lora_module *mod, const lora_layout *L,
                          const float *p, int conv1d)
{
    size_t n = t->numel;
    float *w = malloc((n ? n : 1) * sizeof(float));
    if (!w)
        return NULL;
    st_to_f32(w, t->data, t->dtype, n);
    merge_fold(w, mod, L, p, conv1d);
    if (t->dtype == ST_F32)
        return w;
    uint16_t *h = malloc((n ? n : 1) * sizeof(uint16_t));
    if (h) {
        int bf = t->dtype == ST_BF16;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < n; k++)
            h[k] = bf ? st_f32_to_bf16(w[k]) : st_f32_to_f16(w[k]);
    }
    free(w);
    return h;
}

/* Writes file k of the input into out_dir under the same name: every tensor
 * as it is, the adapted ones merged; the file's metadata is kept. */
static int merge_write_file(const hf_files *s, int k, const lora_layout *L, const float *p,
                            const merge_target *tg, int conv1d, const char *out_dir, pl_err *e)
{
    const st_file *f = &s->files[k];
    st_entry *ent = calloc((size_t)f->n + 3, sizeof *ent);
    void **owned = calloc((size_t)L->n + 3, sizeof *owned);   /* + the classifier's two */
    int rc = (ent && owned) ? 0 : pl_errf(e, "%s: out of memory", f->path), nent = f->n;
    for (int j = 0; !rc && j < f->n; j++) {
        const st_tensor *t = &f->t[j];
        ent[j] = (st_entry){t->name, t->dtype, t->ndim, {0}, t->data};
        memcpy(ent[j].shape, t->shape, sizeof t->shape);
    }
    for (int i = 0; !rc && i < L->n; i++) {
        if (tg[i].file != k)
            continue;
        owned[i] = merge_tensor(tg[i].t, &L->m[i], L, p, conv1d);
        if (!owned[i]) {
            rc = pl_errf(e, "%s: out of memory merging %s", f->path, tg[i].t->name);
            break;
        }
        ent[tg[i].t - f->t].data = owned[i];
    }
    if (!rc)
        rc = mc_entries(s, k, L, p, ent, &nent, owned + L->n, e);
    if (!rc) {
        char path[4096];
        rc = merge_join(path, out_dir, s->names[k], e);
        if (!rc)
            rc = st_write(path, ent, nent, (const char *const *)f->meta_keys,
                          (const char *const *)f->meta_vals, f->n_meta, e);
    }
    for (int i = 0; owned && i < L->n + 2; i++)
        free(owned[i]);
    free(owned);
    free(ent);
    return rc;
}

/* Copies DIR/name to OUT/name byte for byte; a missing optional file is fine. */
static int merge_copy(const char *dir, const char *out_dir, const char *name, int required,
                      pl_err *e)
{
    char src[4096], dst[4096];
    if (merge_join(src, dir, name, e) != 0 || merge_join(dst, out_dir, name, e) != 0)
        return -1;
    FILE *probe = fopen(src, "rb");
    if (!probe && !required)
        return 0;
    if (probe)
        fclose(probe);
    size_t len = 0;
    char *text = pl_read_text(src, MERGE_JSON_MAX, &len, e);
    if (!text)
        return -1;
    int rc = pl_write_atomic(dst, text, len, e);
    free(text);
    return rc;
}

/* Writes the whole output directory into od->tmp. */
static int merge_write_all(const char *model_dir, const hf_files *s, const lora_layout *L,
                           const float *p, const merge_target *tg, int conv1d, const outdir *od,
                           pl_err *e)
{
    for (int k = 0; k < s->n; k++)
        if (merge_write_file(s, k, L, p, tg, conv1d, od->tmp, e) != 0)
            return -1;
    char *index = NULL, *config = NULL, path[4096];
    int rc = mc_index(s, L, &index, e);
    if (!rc && s->index_text)
        rc = merge_join(path, od->tmp, HF_INDEX_NAME, e) ||
             pl_write_atomic(path, index ? index : s->index_text,
                             index ? strlen(index) : s->index_len, e);
    if (!rc)
        rc = mc_config(model_dir, L, &config, e);
    if (!rc && config)
        rc = merge_join(path, od->tmp, "config.json", e) ||
             pl_write_atomic(path, config, strlen(config), e);
    else if (!rc)
        rc = merge_copy(model_dir, od->tmp, "config.json", 1, e);
    if (!rc)
        rc = merge_copy(model_dir, od->tmp, "generation_config.json", 0, e);
    free(index), free(config);
    return rc ? -1 : 0;
}

int cmd_merge(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *out = NULL;
    long num_labels = 0;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &model_dir,
         .help = "base model directory", .required = 1},
        {.name = "adapter", .type = FL_STR, .dst = &adapter,
         .help = "PEFT adapter directory", .required = 1},
        {.name = "out", .type = FL_STR, .dst = &out,
         .help = "output model directory (absent or empty)", .required = 1},
        {.name = "num-labels", .type = FL_INT, .dst = &num_labels,
         .help = "bert: the classes of the adapter's classifier (the config's)", .min = 1,
         .max = 1 << 20},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("merge", "--model DIR --adapter DIR --out DIR", specs, argc, argv, NULL, 0,
                      &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("merge", e.msg, 2);
    model_config c;
    lora_layout L = {0};
    float *p = NULL;
    hf_files s = {0};
    merge_target *tg = NULL;
    outdir od = {0};
    int status = 1;
    if (model_config_load(&c, model_dir, &e) != 0 || mc_prepare(&c, adapter, num_labels, &e) != 0 ||
        lora_load_peft(adapter, &c, &L, &p, &e) != 0 || hf_files_open(&s, model_dir, &e) != 0)
        goto done;
    int conv1d = c.arch == ARCH_GPT2;
    tg = calloc((size_t)L.n + 1, sizeof *tg);
    if (!tg) {
        pl_errf(&e, "out of memory");
        goto done;
    }
    if (merge_find_targets(&s, model_dir, &L, conv1d, tg, &e) != 0 ||
        outdir_begin(&od, out, &e) != 0 ||
        merge_write_all(model_dir, &s, &L, p, tg, conv1d, &od, &e) != 0 ||
        outdir_commit(&od, &e) != 0)
        goto done;
    printf("wrote %s: %d adapted weights merged (r %d, scale %g) into %d file%s%s\n", out, L.n,
           L.r, L.scale, s.n, s.n == 1 ? "" : "s", L.n_labels ? ", the trained classifier" : "");
    status = 0;
done:
    if (status) {
        outdir_abort(&od);
        cli_fail("merge", e.msg, 1);
    }
    free(tg);
    hf_files_close(&s);
    free(p);
    lora_layout_free(&L);
    return status;
}
