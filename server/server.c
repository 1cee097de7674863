/* server.c - the server role (see server.h). */
#include "server.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "full.h"
#include "model.h"

/* s->at and s->n_own from s->owned: the owned tensors packed in id order;
 * owning every tensor, the adapter's own flat layout. */
static void pack_layout(server *s)
{
    int nt = lora_n_tensors(s->L), all = 1;
    for (int id = 0; id < nt; id++)
        all &= s->owned[id] != 0;
    s->n_own = all ? s->L->n_params : 0;
    for (int id = 0; id < nt; id++)
        if (all)
            s->at[id] = lora_tensor_offset(s->L, id);
        else if (s->owned[id]) {
            s->at[id] = s->n_own;
            s->n_own += lora_tensor_numel(s->L, id);
        }
}

/* 1 when the packed layout is the adapter's flat one (every tensor owned). */
static int packed_is_flat(const server *s)
{
    for (int id = 0; id < lora_n_tensors(s->L); id++)
        if (!s->owned[id])
            return 0;
    return 1;
}

int server_init(server *s, const train_config *t, const lora_layout *L, float *params,
                const unsigned char *owned, pl_err *e)
{
    memset(s, 0, sizeof *s);
    s->t = t, s->L = L;
    int nt = lora_n_tensors(L);
    s->owned = malloc((size_t)nt + 1);
    s->at = calloc((size_t)nt + 1, sizeof *s->at);
    if (!s->owned || !s->at) {
        free(params);
        server_free(s);
        return pl_errf(e, "out of memory for the server's tensor index");
    }
    for (int i = 0; i < nt; i++)
        s->owned[i] = owned ? owned[i] : 1;
    pack_layout(s);
    size_t n = s->n_own ? s->n_own : 1;
    if (packed_is_flat(s))
        s->params = params;
    else if ((s->params = malloc(n * sizeof(float)))) {
        for (int id = 0; id < nt; id++)
            if (s->owned[id])
                memcpy(s->params + s->at[id], params + lora_tensor_offset(L, id),
                       lora_tensor_numel(L, id) * sizeof(float));
        free(params);
    } else
        free(params);
    s->m = calloc(n, sizeof(float));
    s->v = calloc(n, sizeof(float));
    if (!s->params || !s->m || !s->v) {
        server_free(s);
        return pl_errf(e, "out of memory for the optimizer state (%zu parameters)", n);
    }
    return 0;
}

void server_free(server *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
    free(s->at);
    free(s->owned);
    memset(s, 0, sizeof *s);
}

void server_unpack(const server *s, const float *x, float *full)
{
    for (int id = 0; id < lora_n_tensors(s->L); id++)
        if (s->owned[id])
            memcpy(full + lora_tensor_offset(s->L, id), x + s->at[id],
                   lora_tensor_numel(s->L, id) * sizeof(float));
}

void server_gathered(server *s, float *full)
{
    free(s->params), free(s->m), free(s->v);
    s->params = full, s->m = s->v = NULL;
    memset(s->owned, 1, (size_t)lora_n_tensors(s->L));
    pack_layout(s);
}

double server_scale(const server *s, float *g, long ntok)
{
    double sq = 0;
    float inv = ntok > 0 ? 1.0f / (float)ntok : 0.0f;   /* 0 targets: g is 0, left at 0 */
    for (int id = 0; id < lora_n_tensors(s->L); id++) {
        if (!s->owned[id])
            continue;
        float *x = g + s->at[id];   /* per tensor: the sum's rounding as before packing */
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
        size_t off = s->at[id], n = lora_tensor_numel(s->L, id);
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

/* ---- checkpoints ---- */

int server_checkpoint_due(const train_config *t, long done)
{
    return done == t->steps || (t->checkpoint_every > 0 && done % t->checkpoint_every == 0);
}

/* The adapter tensors as the optimizer file names them (PEFT keys).
 * *names backs the name pointers; free both. */
static int ckpt_tensors(const lora_layout *L, ckpt_tensor **out, char **names, pl_err *e)
{
    int nt = lora_n_tensors(L);
    const size_t len = 192;
    *out = calloc((size_t)nt + 1, sizeof **out);
    *names = calloc((size_t)nt + 1, len);
    if (!*out || !*names) {
        free(*out), free(*names);
        return pl_errf(e, "out of memory for the checkpoint's tensor list");
    }
    for (int id = 0; id < nt && L->full; id++) {   /* --full: the model's own keys */
        const full_tensor *t = &L->full->t[id];
        (*out)[id].name = t->name;
        (*out)[id].shape[0] = t->shape[0];
        (*out)[id].shape[1] = t->ndim == 2 ? t->shape[1] : 1;
        (*out)[id].offset = t->off;
    }
    for (int id = 0; id < nt && !L->full; id++) {
        char *name = *names + (size_t)id * len;
        lora_tensor_key(L, id, name, len, (*out)[id].shape);
        (*out)[id].name = name;
        (*out)[id].offset = lora_tensor_offset(L, id);
    }
    return 0;
}

int server_views_own(const server *s, server_views *x, pl_err *e)
{
    size_t nt = (size_t)lora_n_tensors(s->L) + 1;
    x->p = calloc(nt, sizeof *x->p), x->m = calloc(nt, sizeof *x->m);
    x->v = calloc(nt, sizeof *x->v);
    if (!x->p || !x->m || !x->v) {
        server_views_free(x);
        return pl_errf(e, "out of memory for the checkpoint's tensor list");
    }
    for (int id = 0; id < lora_n_tensors(s->L); id++)
        if (s->owned[id]) {
            x->p[id] = s->params + s->at[id];
            x->m[id] = s->m + s->at[id], x->v[id] = s->v + s->at[id];
        }
    return 0;
}

void server_views_free(server_views *x)
{
    free(x->p), free(x->m), free(x->v);
    x->p = x->m = x->v = NULL;
}

/* The adapter (or --full: the model) from the views into dir. */
static int save_weights(const server *s, const server_ckpt *c, const server_views *x,
                        const char *dir, pl_err *e)
{
    const lora_layout *L = s->L;
    if (L->full) {
        model *m = c->model;
        full_point(L->full, m, x->p);
        int rc = model_save(m, dir, e);
        if (m->trained)   /* a worker's model (one process): back onto its own vector */
            full_attach(L->full, m, (float *)m->trained);
        return rc;
    }
    float *flat = malloc(L->n_params * sizeof *flat + 1);   /* an adapter: small */
    if (!flat)
        return pl_errf(e, "out of memory for the adapter");
    for (int id = 0; id < lora_n_tensors(L); id++)
        memcpy(flat + lora_tensor_offset(L, id), x->p[id], lora_tensor_numel(L, id) * sizeof *flat);
    int rc = lora_save_peft(dir, L, c->cfg, flat, s->t->model_dir, e);
    free(flat);
    return rc;
}

int server_checkpoint_views(const server *s, const server_ckpt *c, long done,
                            const server_views *x, pl_err *e)
{
    ckpt_writer w;
    ckpt_tensor *tens = NULL;
    char *names = NULL;
    if (ckpt_tensors(s->L, &tens, &names, e) != 0 || ckpt_begin(&w, c->out, done, e) != 0) {
        free(tens), free(names);
        return -1;
    }
    ckpt_state st = {.step = done, .version = s->version, .updates = s->updates,
                     .skipped = s->skipped, .consecutive_skips = s->consecutive_skips,
                     .seed = s->t->seed, .total_steps = s->t->steps, .workers = c->workers,
                     .n_params = (long)s->L->n_params, .n_fp = c->n_fp,
                     .fp = (ckpt_kv *)c->fp};   /* only read by the writer */
    int rc = save_weights(s, c, x, w.tmp, e);
    if (rc == 0)
        rc = ckpt_optim_write_each(&w, tens, lora_n_tensors(s->L), opt_kind_name(s->t->opt.kind),
                                   (const float *const *)x->m, (const float *const *)x->v, e);
    if (rc == 0)
        rc = ckpt_state_write(&w, &st, e);
    if (rc == 0)
        rc = ckpt_commit(&w, s->t->keep_checkpoints, e);
    if (rc != 0)
        ckpt_abort(&w);
    free(tens), free(names);
    return rc;
}

int server_checkpoint(const server *s, const server_ckpt *c, long done, pl_err *e)
{
    server_views x;
    if (server_views_own(s, &x, e) != 0)
        return -1;
    int rc = server_checkpoint_views(s, c, done, &x, e);
    server_views_free(&x);
    return rc;
}

/* The checkpoint's adapter into full (L's flat layout), after checking
 * that its layout is this run's. */
static int load_adapter(const server *s, const server_ckpt *c, const char *dir, float *full,
                        pl_err *e)
{
    if (s->L->full)
        return full_load(s->L->full, dir, full, e);
    lora_layout L2;
    float *p;
    if (lora_load_peft(dir, c->cfg, &L2, &p, e) != 0)
        return -1;
    const lora_layout *L = s->L;
    int same = L2.n == L->n && L2.r == L->r && L2.n_params == L->n_params;
    for (int i = 0; same && i < L->n; i++)
        same = !strcmp(L2.m[i].path, L->m[i].path) && L2.m[i].in == L->m[i].in &&
               L2.m[i].out == L->m[i].out;
    if (same)
        memcpy(full, p, L->n_params * sizeof(float));
    free(p);
    lora_layout_free(&L2);
    return same ? 0
                : pl_errf(e, "%s/adapter_model.safetensors: the adapter's modules or rank differ "
                             "from this run's", dir);
}

/* The checkpoint's weights of the owned tensors into s->params (through a
 * whole-adapter buffer: the start-up already held one). */
static int load_owned(server *s, const server_ckpt *c, const char *dir, pl_err *e)
{
    if (packed_is_flat(s))
        return load_adapter(s, c, dir, s->params, e);
    float *full = malloc(s->L->n_params * sizeof *full + 1);
    if (!full)
        return pl_errf(e, "out of memory for the checkpoint's weights");
    int rc = load_adapter(s, c, dir, full, e);
    for (int id = 0; rc == 0 && id < lora_n_tensors(s->L); id++)
        if (s->owned[id])
            memcpy(s->params + s->at[id], full + lora_tensor_offset(s->L, id),
                   lora_tensor_numel(s->L, id) * sizeof *full);
    free(full);
    return rc;
}

int server_load_checkpoint(server *s, const server_ckpt *c, const char *dir, long *step,
                           int *refused, pl_err *e)
{
    ckpt_state st;
    *refused = 0;
    if (ckpt_state_read(&st, dir, e) != 0)
        return -1;
    int rc = 0;
    if (c->n_fp && ckpt_state_compare(&st, c->fp, c->n_fp, trainconf_resume_may_change, dir, e))
        rc = -1, *refused = 1;
    else if (st.step > s->t->steps)
        rc = pl_errf(e, "--steps: %ld is below step %ld of the checkpoint %s", s->t->steps,
                     st.step, dir), *refused = 1;
    else if ((size_t)st.n_params != s->L->n_params)
        rc = pl_errf(e, "%s/trainer_state.json: n_params %ld, the adapter layout has %zu", dir,
                     st.n_params, s->L->n_params);
    ckpt_tensor *tens = NULL;
    char *names = NULL;
    if (rc == 0)
        rc = ckpt_tensors(s->L, &tens, &names, e);
    server_views x = {0};
    if (rc == 0)
        rc = server_views_own(s, &x, e);
    if (rc == 0)   /* m and v of the owned tensors; the others' only checked */
        rc = ckpt_optim_read_each(dir, tens, lora_n_tensors(s->L), opt_kind_name(s->t->opt.kind),
                                  x.m, x.v, e);
    server_views_free(&x);
    if (rc == 0)
        rc = load_owned(s, c, dir, e);
    if (rc == 0) {
        s->version = st.version, s->updates = st.updates, s->skipped = st.skipped;
        s->consecutive_skips = st.consecutive_skips;
        *step = st.step;
    }
    free(tens), free(names);
    ckpt_state_free(&st);
    return rc;
}

int server_resume(server *s, const server_ckpt *c, long *step, char *dir, size_t len,
                  void (*warn)(const char *line), pl_err *e)
{
    struct stat st;
    char path[4200];
    *step = 0;
    dir[0] = 0;
    if (stat(c->out, &st) != 0)
        return pl_errf(e, "--resume: %s: %s", c->out, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pl_errf(e, "--resume: %s: not a directory", c->out);
    long *steps;
    int n;
    if (ckpt_list(c->out, &steps, &n, e) != 0)
        return -1;
    if (n == 0) {
        snprintf(path, sizeof path, "%s/run.json", c->out);
        if (stat(path, &st) != 0)
            return pl_errf(e, "--resume: %s holds no pslora run (no run.json)", c->out);
        snprintf(path, sizeof path, "no complete checkpoint in %s/checkpoints: starting at step 0",
                 c->out);
        warn(path);
        return 0;
    }
    pl_err newest = {""};
    int rc = -1, refused = 0;
    for (int i = 0; i < n && rc != 0 && !refused; i++) {
        ckpt_path(path, sizeof path, c->out, steps[i]);
        rc = server_load_checkpoint(s, c, path, step, &refused, e);
        if (rc == 0)
            snprintf(dir, len, "%s", path);
        else if (!refused) {
            if (!newest.msg[0])
                newest = *e;
            if (i + 1 == n)
                break;
            char line[PL_ERR_LEN + 64];
            snprintf(line, sizeof line, "%s; trying an older checkpoint", e->msg);
            warn(line);
        }
    }
    free(steps);
    if (rc != 0 && !refused)
        pl_errf(e, "--resume: no checkpoint of %s loads (newest: %s)", c->out, newest.msg);
    return rc;
}
