/* cmd_analyze.c - `pslora analyze ADAPTER [ADAPTER2] [--model DIR] [--json]
 * [--plot DIR]`: what the adapters learned (docs/analysis.md).
 *
 * Per adapted matrix: dW = s B A's singular values from its r x r core and
 * their summaries; with two adapters the subspace similarity phi of Hu et al.
 * 2021 sec. 7; with --model the amplification of their Table 7.  Everything
 * is computed before anything is printed or plotted, so a failure leaves no
 * half output. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "cli.h"
#include "flags.h"
#include "model.h"

static int az_side_compute(az_side *s, pl_err *e)
{
    int n = s->ad.n;
    s->d = calloc((size_t)n + 1, sizeof *s->d);
    s->st = calloc((size_t)n + 1, sizeof *s->st);
    if (!s->d || !s->st)
        return pl_errf(e, "out of memory");
    for (int i = 0; i < n; i++) {
        const ar_module *m = &s->ad.m[i];
        if (lr_delta_compute(&s->d[i], m->a, m->b, s->ad.r, m->in, m->out, s->ad.scale, e) != 0)
            return -1;
        lr_stats_of(s->d[i].sv, s->d[i].k, &s->st[i]);
    }
    return 0;
}

static int az_similarity(az_run *run, pl_err *e)
{
    int n = run->s[0].ad.n;
    run->sim = calloc((size_t)n + 1, sizeof *run->sim);
    if (!run->sim)
        return pl_errf(e, "out of memory");
    for (int i = 0; i < n; i++) {
        const lr_delta *x = &run->s[0].d[i], *y = &run->s[1].d[i];
        az_sim *z = &run->sim[i];
        *z = (az_sim){x->ka, y->ka, x->k, y->k, NULL, NULL};
        z->phi = malloc(((size_t)z->k1 * z->k2 + 1) * sizeof(double));
        z->phi_left = malloc(((size_t)z->kl1 * z->kl2 + 1) * sizeof(double));
        if (!z->phi || !z->phi_left)
            return pl_errf(e, "out of memory");
        if (lr_phi(x->a_v, z->k1, y->a_v, z->k2, x->in, z->phi, e) != 0 ||
            lr_phi(x->u, z->kl1, y->u, z->kl2, x->out, z->phi_left, e) != 0)
            return -1;
    }
    return 0;
}

/* Table 7 for module i of every side: W's top directions are computed once
 * for the largest k. */
static int az_amp_module(az_run *run, const model *m, const char *model_dir, int i, double *w,
                         pl_err *e)
{
    const ar_module *mod = &run->s[0].ad.m[i];
    int out = mod->out, in = mod->in, kmax = 0;
    if (ar_base_weight(m, model_dir, mod, w, e) != 0)
        return -1;
    for (int s = 0; s < run->n_sides; s++)
        if (run->s[s].d[i].k > kmax)
            kmax = run->s[s].d[i].k;
    double *tu = malloc(((size_t)out * kmax + 1) * sizeof(double));
    double *tv = malloc(((size_t)in * kmax + 1) * sizeof(double));
    double *ru = malloc(((size_t)out * kmax + 1) * sizeof(double));
    double *rv = malloc(((size_t)in * kmax + 1) * sizeof(double));
    int rc = tu && tv && ru && rv ? 0 : pl_errf(e, "out of memory");
    if (!rc)
        rc = lr_top_dirs(w, out, in, kmax, tu, tv, e);
    double wf = 0;
    for (size_t k = 0; k < (size_t)out * in; k++)
        wf += w[k] * w[k];
    for (int s = 0; !rc && s < run->n_sides; s++) {
        const lr_delta *d = &run->s[s].d[i];
        az_amp *a = &run->amp[s][i];
        uint64_t seed = (uint64_t)run->seed * 1000003u + (uint64_t)i * 2 + (uint64_t)s * 7919u;
        a->k = d->k, a->delta_f = run->s[s].st[i].frobenius, a->w_f = sqrt(wf);
        if (lr_random_dirs(out, d->k, seed, ru, e) != 0 ||
            lr_random_dirs(in, d->k, seed + 1, rv, e) != 0)
            rc = -1;
        if (!rc) {
            a->proj_delta = lr_project(w, out, in, d->u, d->v, d->k, e);
            a->proj_top = lr_project(w, out, in, tu, tv, d->k, e);
            a->proj_random = lr_project(w, out, in, ru, rv, d->k, e);
            if (a->proj_delta < 0 || a->proj_top < 0 || a->proj_random < 0)
                rc = -1;
        }
    }
    free(tu);
    free(tv);
    free(ru);
    free(rv);
    return rc;
}

static int az_amplification(az_run *run, const char *model_dir, pl_err *e)
{
    model m;
    memset(&m, 0, sizeof m);
    if (model_load(&m, model_dir, e) != 0)
        return -1;
    int n = run->s[0].ad.n, rc = 0;
    size_t wmax = 0;
    for (int i = 0; i < n; i++)
        if ((size_t)run->s[0].ad.m[i].out * run->s[0].ad.m[i].in > wmax)
            wmax = (size_t)run->s[0].ad.m[i].out * run->s[0].ad.m[i].in;
    double *w = malloc((wmax + 1) * sizeof(double));
    for (int s = 0; s < run->n_sides; s++)
        run->amp[s] = calloc((size_t)n + 1, sizeof(az_amp));
    if (!w || !run->amp[0] || (run->n_sides == 2 && !run->amp[1]))
        rc = pl_errf(e, "out of memory");
    for (int i = 0; !rc && i < n; i++)
        rc = az_amp_module(run, &m, model_dir, i, w, e);
    free(w);
    model_free(&m);
    return rc;
}

static void az_run_free(az_run *run)
{
    for (int s = 0; s < 2; s++) {
        for (int i = 0; run->s[s].d && i < run->s[s].ad.n; i++)
            lr_delta_free(&run->s[s].d[i]);
        free(run->s[s].d);
        free(run->s[s].st);
        free(run->amp[s]);
    }
    for (int i = 0; run->sim && i < run->s[0].ad.n; i++) {
        free(run->sim[i].phi);
        free(run->sim[i].phi_left);
    }
    free(run->sim);
    ar_free(&run->s[0].ad);
    ar_free(&run->s[1].ad);
}

static int az_compute(az_run *run, const char *model_dir, pl_err *e)
{
    for (int s = 0; s < run->n_sides; s++)
        if (ar_load(&run->s[s].ad, run->s[s].dir, e) != 0)
            return -1;
    if (run->n_sides == 2 &&
        ar_same_modules(&run->s[0].ad, run->s[0].dir, &run->s[1].ad, run->s[1].dir, e) != 0)
        return -1;
    for (int s = 0; s < run->n_sides; s++)
        if (az_side_compute(&run->s[s], e) != 0)
            return -1;
    if (run->n_sides == 2 && az_similarity(run, e) != 0)
        return -1;
    return model_dir ? az_amplification(run, model_dir, e) : 0;
}

int cmd_analyze(int argc, char **argv)
{
    const char *model_dir = NULL, *plot = NULL, *pos[2] = {NULL, NULL};
    int json = 0;
    long seed = 1;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &model_dir,
         .help = "base model directory: adds the amplification of dW against W"},
        {.name = "json", .type = FL_BOOL, .dst = &json, .help = "print one JSON object"},
        {.name = "plot", .type = FL_STR, .dst = &plot,
         .help = "write PNG heatmaps of phi into DIR (needs ADAPTER2 and gnuplot)"},
        {.name = "seed", .type = FL_INT, .dst = &seed, .min = 0, .max = 1e18,
         .help = "seed of the random directions of --model (default 1)"},
        {.name = NULL},
    };
    const char *syn = "ADAPTER [ADAPTER2] [--model DIR] [--json] [--plot DIR]";
    pl_err e;
    int rc = fl_parse("analyze", syn, specs, argc, argv, pos, 2, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("analyze", e.msg, 2);
    if (!pos[0])
        return cli_fail("analyze", "missing ADAPTER (a PEFT adapter directory)", 2);
    if (plot && !pos[1])
        return cli_fail("analyze", "--plot: needs two adapters (the heatmaps are of phi)", 2);
    az_run run;
    memset(&run, 0, sizeof run);
    run.n_sides = pos[1] ? 2 : 1;
    run.s[0].dir = pos[0], run.s[1].dir = pos[1];
    run.seed = (unsigned long long)seed;
    int status = 1;
    if (az_compute(&run, model_dir, &e) == 0 && (!plot || az_plot(&run, plot, &e) == 0)) {
        status = 0;
        if (json)
            status = az_print_json(&run, &e) == 0 ? 0 : 1;
        else
            az_print_text(&run);
    }
    if (status)
        cli_fail("analyze", e.msg, 1);
    az_run_free(&run);
    return status;
}
