/* model_init.c - models drawn at random (`pslora init`, bench), through the
 * weight table of model.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"

/* The shape rules a drawn model must meet (the loader's config checks). */
static int model_config_check(const model_config *c, pl_err *e)
{
    if (c->n_layer < 1 || c->n_embd < 1 || c->n_head < 1 || c->n_inner < 1 || c->vocab < 1 ||
        c->n_ctx < 1 || c->n_kv_head < 1 || c->head_dim < 1)
        return pl_errf(e, "model shape: layers, dim, heads, kv heads, head size, intermediate, "
                          "vocab and ctx must all be >= 1");
    if (c->n_head % c->n_kv_head)
        return pl_errf(e, "--kv-heads: %d does not divide --heads %d", c->n_kv_head, c->n_head);
    if (c->arch == ARCH_GPT2 && (c->n_kv_head != c->n_head || c->head_dim * c->n_head != c->n_embd))
        return pl_errf(e, "--kv-heads: gpt2 has no grouped-query attention (kv heads = heads)");
    if (c->arch == ARCH_LLAMA && c->head_dim % 2)
        return pl_errf(e, "--heads: head size %d must be even for rotary embeddings", c->head_dim);
    return 0;
}

int model_init_random(model *m, const model_config *c, unsigned long long seed, pl_err *e)
{
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    if (model_config_check(c, e) != 0)
        return -1;
    m->blocks = calloc((size_t)c->n_layer, sizeof *m->blocks);
    int nw = model_weight_count(c);
    model_weight *w = calloc((size_t)nw, sizeof *w);
    if (!m->blocks || !w) {
        free(w);
        model_free(m);
        return pl_errf(e, "out of memory");
    }
    int n = model_weight_table(m, w);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)w[i].shape[0] * (w[i].ndim == 2 ? (size_t)w[i].shape[1] : 1);
    size_t head = c->tie_embeddings ? 0 : (size_t)c->vocab * c->n_embd;
    float *buf = malloc((total + head) * sizeof(float));
    m->owned = malloc(sizeof *m->owned);
    if (!buf || !m->owned) {
        free(buf);
        free(w);
        model_free(m);
        return pl_errf(e, "out of memory (%zu floats)", total);
    }
    m->owned[m->n_owned++] = buf;
    float resid = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)w[i].shape[0] * (w[i].ndim == 2 ? (size_t)w[i].shape[1] : 1);
        rng_state r;
        uint64_t words[2] = {seed, (uint64_t)i};
        rng_seed(&r, words, 2);
        for (size_t j = 0; j < k; j++)
            buf[j] = w[i].init == INIT_ZERO   ? 0.0f
                     : w[i].init == INIT_ONE  ? 1.0f
                     : w[i].init == INIT_RESID ? resid * rng_normal(&r)
                                               : 0.02f * rng_normal(&r);
        *w[i].slot = buf;
        buf += k;
    }
    m->lm_head = m->wte;
    if (head) {   /* an untied head: its own draw, saved as lm_head.weight */
        rng_state r;
        uint64_t words[2] = {seed, 0x4ead};
        rng_seed(&r, words, 2);
        rng_fill_normal(&r, buf, head, 0.02f);
        m->lm_head = buf;
    }
    free(w);
    return 0;
}
