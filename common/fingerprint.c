/* fingerprint.c - see fingerprint.h. */
#include "fingerprint.h"

#include <string.h>

/* FNV-1a over every tensor's name, dtype and shape, in file order. */
static unsigned long long shapes_hash(const model *m)
{
    uint64_t h = PS_HASH_INIT;
    for (int f = 0; f < m->n_files; f++)
        for (int i = 0; i < m->files[f].n; i++) {
            const st_tensor *t = &m->files[f].t[i];
            h = ps_hash64(h, t->name, strlen(t->name));
            h = ps_hash64(h, &t->dtype, sizeof t->dtype);
            h = ps_hash64(h, t->shape, (size_t)t->ndim * sizeof t->shape[0]);
        }
    return h;
}

/* A cheap content check: each file's size and 256 samples of 64 bytes spread
 * over it, so two checkpoints of the same shapes differ (hashing every byte
 * of a large model would cost seconds at start). */
static unsigned long long content_hash(const model *m)
{
    uint64_t h = PS_HASH_INIT;
    for (int f = 0; f < m->n_files; f++) {
        const unsigned char *p = m->files[f].map;
        size_t n = m->files[f].map_size;
        h = ps_hash64(h, &n, sizeof n);
        for (int k = 0; p && n >= 64 && k < 256; k++)
            h = ps_hash64(h, p + (n - 64) / 255 * (size_t)k, 64);
    }
    return h;
}

static unsigned long long layout_hash(const lora_layout *L)
{
    uint64_t h = PS_HASH_INIT;
    for (int id = 0; id < lora_n_tensors(L); id++) {
        size_t n = lora_tensor_numel(L, id);
        h = ps_hash64(h, &n, sizeof n);
    }
    return h;
}

int fp_build(ps_hello *h, const train_config *t, const model *m, const lora_layout *L,
             pl_err *e)
{
    const model_config *c = &m->cfg;
    char keys[32][32], vals[32][256];
    int n = trainconf_fingerprint(t, keys, vals, 32);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = ps_hello_add(h, keys[i], vals[i], e);
    if (!rc)
        rc = ps_hello_addf(h, e, "model.arch", "%s", model_arch_name(c->arch)) ||
             ps_hello_addf(h, e, "model.shape", "layers %d dim %d heads %d/%d inner %d vocab %d ctx %d",
                           c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->n_inner, c->vocab,
                           c->n_ctx) ||
             ps_hello_addf(h, e, "model.tensors", "%016llx", shapes_hash(m)) ||
             ps_hello_addf(h, e, "model.weights", "%016llx", content_hash(m)) ||
             ps_hello_addf(h, e, "adapter.r", "%d", L->r) ||
             ps_hello_addf(h, e, "adapter.alpha", "%g", L->alpha) ||
             ps_hello_addf(h, e, "adapter.rslora", "%d", L->rslora) ||
             ps_hello_addf(h, e, "adapter.targets", "%s", L->targets) ||
             ps_hello_addf(h, e, "adapter.layout", "%d tensors %016llx", lora_n_tensors(L),
                           layout_hash(L));
    return rc ? -1 : 0;
}
