/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"

/* Every directory of this process lives under one root, removed at exit
 * unless PSLORA_KEEP_TEST_DIRS is set (a crash keeps it too, for a look). */
static char tmp_root[400];

static void rm_tmp_root(void)
{
    char cmd[480];
    if (getenv("PSLORA_KEEP_TEST_DIRS"))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", tmp_root);
}

const char *tu_tmpdir(const char *tag)
{
    static char path[512];
    char cmd[1200];
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "%s/pslora-test-%d",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
        atexit(rm_tmp_root);
    }
    snprintf(path, sizeof path, "%s/%s", tmp_root, tag);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot make %s\n", path);
        abort();
    }
    return path;
}

void tu_write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len)) {
        fprintf(stderr, "cannot write %s\n", path);
        abort();
    }
    fclose(f);
}

double tu_max_rel_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (d > m)
            m = d;
    }
    return m;
}

/* ---- numerics of the kernel tests ---- */

float *tu_fnew(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
double *tu_dnew(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

void tu_fill_normal(float *a, size_t n, float mean, float sd, uint64_t tag, uint64_t seed)
{
    rng_state r;
    uint64_t w[2] = {tag, seed};
    rng_seed(&r, w, 2);
    rng_fill_normal(&r, a, n, sd);
    if (mean != 0.0f)
        for (size_t i = 0; i < n; i++)
            a[i] += mean;
}

double *tu_to_double(const float *a, size_t n)
{
    double *d = tu_dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

double tu_rel_err_rows(const float *x, const float *y, int rows, int w, int ld)
{
    double d = 0, m = 0;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (size_t j = 0; j < (size_t)w; j++) {
            double a = fabs((double)x[r * ld + j] - y[r * ld + j]), b = fabs(y[r * ld + j]);
            d = a > d ? a : d, m = b > m ? b : m;
        }
    return m > 0 ? d / m : d;
}

double tu_dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

double tu_rel_err(const double *got, const double *ref, size_t n)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(got[i] - ref[i]));
        m = fmax(m, fabs(ref[i]));
    }
    return e / fmax(m, 1e-300);
}

double tu_rel_err_f(const float *got, const double *ref, size_t n)
{
    double *g = tu_to_double(got, n), e = tu_rel_err(g, ref, n);
    free(g);
    return e;
}

void tu_fd_grad(double *g, double *p, size_t n, tu_loss_fn L, void *ctx)
{
    for (size_t i = 0; i < n; i++) {
        double p0 = p[i], h = 1e-4 * fmax(1.0, fabs(p0)), hp = p0 + h, hm = p0 - h;
        p[i] = hp;
        double lp = L(ctx);
        p[i] = hm;
        double lm = L(ctx);
        p[i] = p0;
        g[i] = (lp - lm) / (hp - hm);
    }
}
