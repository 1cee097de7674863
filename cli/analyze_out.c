/* analyze_out.c - what `pslora analyze` prints and draws: a text report
 * (per matrix, then per module type and per layer), the --json object of
 * docs/analysis.md, and gnuplot heatmaps of phi. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "analyze.h"
#include "file.h"

/* The mean of phi over i, j <= min(k1, k2). */
static double az_phi_mean(const double *phi, int k1, int k2)
{
    int k = k1 < k2 ? k1 : k2;
    double sum = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            sum += phi[(size_t)i * k2 + j];
    return k ? sum / ((double)k * k) : 0.0;
}

/* Module type and layer of a path: "transformer.h.3.attn.c_attn" gives
 * "attn.c_attn" and 3 (the first ".<digits>." splits); else path and -1. */
static const char *az_type_of(const char *path, int *layer)
{
    for (const char *p = path; *p; p++) {
        if (*p != '.' || !isdigit((unsigned char)p[1]))
            continue;
        char *end;
        long l = strtol(p + 1, &end, 10);
        if (*end == '.') {
            *layer = (int)l;
            return end + 1;
        }
    }
    *layer = -1;
    return path;
}

/* ---- text ---- */

static void az_text_side(const az_run *run, int s)
{
    const az_side *sd = &run->s[s];
    printf("adapter %s: r %d, scale %g, %d matrices\n", sd->dir, sd->ad.r, sd->ad.scale, sd->ad.n);
    printf("  %-36s %11s %10s %7s %4s %4s  %s\n", "module", "out x in", "||dW||_F", "stable",
           "e90", "e99", "singular values");
    for (int i = 0; i < sd->ad.n; i++) {
        const lr_delta *d = &sd->d[i];
        const lr_stats *st = &sd->st[i];
        char shape[32];
        snprintf(shape, sizeof shape, "%d x %d", d->out, d->in);
        printf("  %-36s %11s %10.4g %7.3f %4d %4d ", sd->ad.m[i].path, shape, st->frobenius,
               st->stable_rank, st->energy90, st->energy99);
        for (int k = 0; k < d->k && k < 6; k++)
            printf(" %.4g", d->sv[k]);
        printf("%s\n", d->k > 6 ? " ..." : "");
    }
}

/* Means over the matrices whose module type (by_layer 0) or layer
 * (by_layer 1) equals the i-th's, printed once per group. */
static void az_text_groups(const az_run *run, int by_layer)
{
    const az_side *sd = &run->s[0];
    printf("  by %s:\n", by_layer ? "layer" : "module type");
    for (int i = 0; i < sd->ad.n; i++) {
        int li, lj, seen = 0;
        const char *ti = az_type_of(sd->ad.m[i].path, &li);
        double f = 0, sr = 0, e90 = 0, phi11 = 0, phim = 0, cnt = 0;
        for (int j = 0; j < sd->ad.n; j++) {
            const char *tj = az_type_of(sd->ad.m[j].path, &lj);
            if (by_layer ? lj != li : strcmp(ti, tj) != 0)
                continue;
            if (j < i) {
                seen = 1;
                break;
            }
            f += sd->st[j].frobenius, sr += sd->st[j].stable_rank, e90 += sd->st[j].energy90;
            if (run->sim) {
                phi11 += run->sim[j].phi[0];
                phim += az_phi_mean(run->sim[j].phi, run->sim[j].k1, run->sim[j].k2);
            }
            cnt++;
        }
        if (seen)
            continue;
        char name[64];   /* the pooler's dense (BERT) sits outside the blocks */
        if (li < 0)
            snprintf(name, sizeof name, "outside the layers");
        else
            snprintf(name, sizeof name, "layer %d", li);
        printf("    %-34s ||dW||_F %.4g  stable rank %.3f  e90 %.2f", by_layer ? name : ti,
               f / cnt, sr / cnt, e90 / cnt);
        if (run->sim)
            printf("  phi(1,1) %.3f  mean phi %.3f", phi11 / cnt, phim / cnt);
        printf("   (%g matrices)\n", cnt);
    }
}

void az_print_text(const az_run *run)
{
    for (int s = 0; s < run->n_sides; s++)
        az_text_side(run, s);
    if (run->sim) {
        printf("similarity %s vs %s (phi over A's right-singular vectors; phi_left over dW's "
               "left-singular vectors)\n", run->s[0].dir, run->s[1].dir);
        printf("  %-36s %9s %9s %13s %13s\n", "module", "phi(1,1)", "mean phi", "phi_left(1,1)",
               "mean phi_left");
        for (int i = 0; i < run->s[0].ad.n; i++) {
            const az_sim *z = &run->sim[i];
            printf("  %-36s %9.4f %9.4f %13.4f %13.4f\n", run->s[0].ad.m[i].path, z->phi[0],
                   az_phi_mean(z->phi, z->k1, z->k2), z->phi_left[0],
                   az_phi_mean(z->phi_left, z->kl1, z->kl2));
        }
    }
    printf("summary of %s\n", run->s[0].dir);
    az_text_groups(run, 0);
    az_text_groups(run, 1);
    for (int s = 0; s < run->n_sides && run->amp[0]; s++) {
        printf("amplification of %s: ||U^T W V||_F for r directions (Hu et al. 2021, Table 7)\n",
               run->s[s].dir);
        printf("  %-36s %10s %10s %10s %10s %10s %8s\n", "module", "||dW||_F", "||W||_F",
               "dW dirs", "W top", "random", "factor");
        for (int i = 0; i < run->s[s].ad.n; i++) {
            const az_amp *a = &run->amp[s][i];
            printf("  %-36s %10.4g %10.4g %10.4g %10.4g %10.4g %8.3g\n", run->s[s].ad.m[i].path,
                   a->delta_f, a->w_f, a->proj_delta, a->proj_top, a->proj_random,
                   a->proj_delta > 0 ? a->delta_f / a->proj_delta : 0.0);
        }
    }
}

/* ---- JSON ---- */

static cJSON *az_json_matrix(const double *phi, int k1, int k2)
{
    cJSON *rows = cJSON_CreateArray();
    for (int i = 0; i < k1; i++)
        cJSON_AddItemToArray(rows, cJSON_CreateDoubleArray(phi + (size_t)i * k2, k2));
    return rows;
}

static void az_json_side(cJSON *mats, const az_run *run, int s)
{
    const az_side *sd = &run->s[s];
    for (int i = 0; i < sd->ad.n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sd->ad.m[i].path);
        cJSON_AddNumberToObject(o, "adapter", s + 1);
        cJSON_AddNumberToObject(o, "out", sd->ad.m[i].out);
        cJSON_AddNumberToObject(o, "in", sd->ad.m[i].in);
        cJSON_AddNumberToObject(o, "r", sd->ad.r);
        cJSON_AddItemToObject(o, "singular_values", cJSON_CreateDoubleArray(sd->d[i].sv,
                                                                            sd->d[i].k));
        cJSON_AddNumberToObject(o, "frobenius", sd->st[i].frobenius);
        cJSON_AddNumberToObject(o, "stable_rank", sd->st[i].stable_rank);
        cJSON_AddNumberToObject(o, "energy_rank_90", sd->st[i].energy90);
        cJSON_AddNumberToObject(o, "energy_rank_99", sd->st[i].energy99);
        cJSON_AddItemToArray(mats, o);
    }
}

static void az_json_sim(cJSON *sims, const az_run *run)
{
    for (int i = 0; run->sim && i < run->s[0].ad.n; i++) {
        const az_sim *z = &run->sim[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", run->s[0].ad.m[i].path);
        cJSON_AddItemToObject(o, "phi", az_json_matrix(z->phi, z->k1, z->k2));
        cJSON_AddItemToObject(o, "phi_left", az_json_matrix(z->phi_left, z->kl1, z->kl2));
        cJSON_AddNumberToObject(o, "phi_11", z->phi[0]);
        cJSON_AddNumberToObject(o, "phi_mean", az_phi_mean(z->phi, z->k1, z->k2));
        cJSON_AddNumberToObject(o, "phi_left_11", z->phi_left[0]);
        cJSON_AddNumberToObject(o, "phi_left_mean", az_phi_mean(z->phi_left, z->kl1, z->kl2));
        cJSON_AddItemToArray(sims, o);
    }
}

static void az_json_amp(cJSON *amps, const az_run *run)
{
    for (int s = 0; s < run->n_sides && run->amp[s]; s++)
        for (int i = 0; i < run->s[s].ad.n; i++) {
            const az_amp *a = &run->amp[s][i];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", run->s[s].ad.m[i].path);
            cJSON_AddNumberToObject(o, "adapter", s + 1);
            cJSON_AddNumberToObject(o, "k", a->k);
            cJSON_AddNumberToObject(o, "delta_frobenius", a->delta_f);
            cJSON_AddNumberToObject(o, "w_frobenius", a->w_f);
            cJSON_AddNumberToObject(o, "proj_delta", a->proj_delta);
            cJSON_AddNumberToObject(o, "proj_w_top", a->proj_top);
            cJSON_AddNumberToObject(o, "proj_random", a->proj_random);
            if (a->proj_delta > 0)
                cJSON_AddNumberToObject(o, "amplification", a->delta_f / a->proj_delta);
            else
                cJSON_AddNullToObject(o, "amplification");
            cJSON_AddItemToArray(amps, o);
        }
}

int az_print_json(const az_run *run, pl_err *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON *ads = cJSON_AddArrayToObject(j, "adapters");
    for (int s = 0; s < run->n_sides; s++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dir", run->s[s].dir);
        cJSON_AddNumberToObject(o, "r", run->s[s].ad.r);
        cJSON_AddNumberToObject(o, "scale", run->s[s].ad.scale);
        cJSON_AddItemToArray(ads, o);
    }
    cJSON *mats = cJSON_AddArrayToObject(j, "matrices");
    for (int s = 0; s < run->n_sides; s++)
        az_json_side(mats, run, s);
    az_json_sim(cJSON_AddArrayToObject(j, "similarity"), run);
    az_json_amp(cJSON_AddArrayToObject(j, "amplification"), run);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        return pl_errf(e, "out of memory printing JSON");
    printf("%s\n", text);
    free(text);
    return 0;
}

/* ---- heatmaps ---- */

/* DIR/phi_<path>.dat: phi, two blank lines, phi_left (gnuplot "matrix"
 * blocks: row i-1, column j-1). */
static int az_plot_data(const az_sim *z, const char *path, pl_err *e)
{
    size_t cap = 64 + 16 * ((size_t)z->k1 * z->k2 + (size_t)z->kl1 * z->kl2 + 8 * (z->k1 + z->kl1));
    char *buf = malloc(cap);
    if (!buf)
        return pl_errf(e, "%s: out of memory", path);
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        const double *m = pass ? z->phi_left : z->phi;
        int r = pass ? z->kl1 : z->k1, c = pass ? z->kl2 : z->k2;
        for (int i = 0; i < r; i++)
            for (int j = 0; j < c; j++)
                n += (size_t)snprintf(buf + n, cap - n, "%.6f%c", m[(size_t)i * c + j],
                                      j + 1 < c ? ' ' : '\n');
        if (!pass)
            n += (size_t)snprintf(buf + n, cap - n, "\n\n");
    }
    int rc = pl_write_atomic(path, buf, n, e);
    free(buf);
    return rc;
}

/* The gnuplot commands of one module's PNG: two panels, phi and phi_left. */
static void az_plot_script(FILE *g, const char *dat, const char *png, const char *name,
                           const az_run *run)
{
    fprintf(g, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) "
               "{ set terminal pngcairo size 1000,460 font 'sans,10' } "
               "else { set terminal png size 1000,460 }\n");
    fprintf(g, "set output '%s'\nset multiplot layout 1,2 title '%s: %s (i) vs %s (j)' noenhanced\n",
             png, name, run->s[0].dir, run->s[1].dir);
    fprintf(g, "set cbrange [0:1]\nset palette defined (0 'white', 0.5 'orange', 1 'dark-red')\n"
               "set xlabel 'j'\nset ylabel 'i'\nset size ratio -1\n");
    const char *titles[2] = {"phi over A's right-singular vectors",
                             "phi_left over dW's left-singular vectors"};
    for (int k = 0; k < 2; k++)
        fprintf(g, "set title \"%s\" noenhanced\nplot '%s' index %d matrix using ($1+1):($2+1):3 "
                   "with image notitle\n", titles[k], dat, k);
    fprintf(g, "unset multiplot\n");
}

static int az_plot_one(const az_run *run, int i, const char *dir, const char *gnuplot, pl_err *e)
{
    const char *name = run->s[0].ad.m[i].path;
    char dat[4096], png[4096];
    if (snprintf(dat, sizeof dat, "%s/phi_%s.dat", dir, name) >= (int)sizeof dat ||
        snprintf(png, sizeof png, "%s/phi_%s.png", dir, name) >= (int)sizeof png)
        return pl_errf(e, "--plot: %s: path too long", dir);
    if (strchr(dir, '\'') || strchr(name, '\''))
        return pl_errf(e, "--plot: %s: a quote in the path", dir);
    if (az_plot_data(&run->sim[i], dat, e) != 0)
        return -1;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "%s >/dev/null 2>&1", gnuplot);
    FILE *g = popen(cmd, "w");
    if (!g)
        return pl_errf(e, "--plot: cannot run %s", gnuplot);
    az_plot_script(g, dat, png, name, run);
    int st = pclose(g);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return pl_errf(e, "--plot: %s failed drawing %s (status %d; is gnuplot installed? "
                          "apt-get install gnuplot-nox)", gnuplot, png,
                       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

int az_plot(const az_run *run, const char *dir, pl_err *e)
{
    struct stat st;
    if (mkdir(dir, 0755) != 0 && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)))
        return pl_errf(e, "--plot: %s: cannot create directory", dir);
    const char *gnuplot = getenv("GNUPLOT");
    if (!gnuplot || !*gnuplot)
        gnuplot = "gnuplot";
    for (int i = 0; i < run->s[0].ad.n; i++)
        if (az_plot_one(run, i, dir, gnuplot, e) != 0)
            return -1;
    return 0;
}
