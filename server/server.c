/* server.c - the server role (see server.h). */
#include "server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int server_init(server *s, const train_config *t, const lora_layout *L, float *params,
                const unsigned char *owned, pl_err *e)
{
    memset(s, 0, sizeof *s);
    s->t = t, s->L = L, s->params = params;
    size_t n = L->n_params ? L->n_params : 1;
    int nt = lora_n_tensors(L);
    s->m = calloc(n, sizeof(float));
    s->v = calloc(n, sizeof(float));
    s->owned = malloc((size_t)nt + 1);
    if (!s->m || !s->v || !s->owned) {
        server_free(s);
        return pl_errf(e, "out of memory for the optimizer state (%zu parameters)", n);
    }
    for (int i = 0; i < nt; i++)
        s->owned[i] = owned ? owned[i] : 1;
    return 0;
}

void server_free(server *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
    free(s->owned);
    memset(s, 0, sizeof *s);
}

double server_scale(const server *s, float *g, long ntok)
{
    double sq = 0;
    float inv = 1.0f / (float)ntok;
    for (int id = 0; id < lora_n_tensors(s->L); id++) {
        if (!s->owned[id])
            continue;
        float *x = g + lora_tensor_offset(s->L, id);
        size_t n = lora_tensor_numel(s->L, id);
        for (size_t i = 0; i < n; i++)
            x[i] *= inv;
        sq += opt_sq_norm(x, n);
    }
    return sq;
}

int server_apply(server *s, float *g, double global_sq_norm, long step)
{
    if (!isfinite(global_sq_norm)) {
        s->skipped++;
        s->consecutive_skips++;
        return 0;
    }
    s->consecutive_skips = 0;
    const opt_config *c = &s->t->opt;
    float clip = opt_clip_factor(c, sqrt(global_sq_norm));
    float lr = opt_lr(c, step);
    s->updates++;
    for (int id = 0; id < lora_n_tensors(s->L); id++) {
        if (!s->owned[id])
            continue;
        size_t off = lora_tensor_offset(s->L, id), n = lora_tensor_numel(s->L, id);
        float *gc = g + off;
        if (clip != 1.0f)
            for (size_t i = 0; i < n; i++)
                gc[i] *= clip;
        opt_update(c, s->params + off, gc, s->m + off, s->v + off, n, lr, s->updates);
    }
    s->version++;
    return 1;
}

void server_assign(const lora_layout *L, int n_servers, int *owner)
{
    int nt = lora_n_tensors(L);
    size_t *load = calloc((size_t)n_servers, sizeof *load);
    unsigned char *done = calloc((size_t)nt + 1, 1);
    for (int k = 0; k < nt; k++) {
        int best = -1;
        for (int id = 0; id < nt; id++)   /* largest unassigned, lowest id on ties */
            if (!done[id] && (best < 0 || lora_tensor_numel(L, id) > lora_tensor_numel(L, best)))
                best = id;
        int srv = 0;
        for (int s = 1; s < n_servers; s++)
            if (load[s] < load[srv])
                srv = s;
        owner[best] = srv;
        load[srv] += lora_tensor_numel(L, best);
        done[best] = 1;
    }
    free(load);
    free(done);
}
