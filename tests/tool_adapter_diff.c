/* tool_adapter_diff.c - compares two PEFT adapter directories (test tool),
 * or two model directories that `pslora train --full` wrote.
 *
 *   tool_adapter_diff DIR_A DIR_B [TOL [BASE]]
 *
 * A directory's tensors are its adapter_model.safetensors, else its
 * model.safetensors.  For every tensor of A: the relative Frobenius
 * difference ||a - b|| / ||a|| (absolute when ||a|| = 0); with BASE (the
 * model both were trained from) the updates are compared instead,
 * ||(a - base) - (b - base)|| / ||a - base||, since a trained model's
 * weights hide a wrong update in their own size.  Prints the largest; exits 0 when it is <= TOL
 * (default 0: bit-identical values), 1 when larger or when the tensor sets,
 * shapes or dtypes differ, 2 on a read error.  Independent of the trainer:
 * it only reads the files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static int open_adapter(st_file *f, const char *dir)
{
    char path[4096];
    pl_err e;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (access(path, F_OK) != 0)
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (st_open(f, path, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Relative Frobenius difference of two F32 tensors of n elements, each
 * less base (may be NULL). */
static double rel_diff(const float *a, const float *b, const float *base, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i], da = (double)a[i] - (base ? base[i] : 0);
        num += d * d;
        den += da * da;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tool_adapter_diff DIR_A DIR_B [TOL [BASE]]\n");
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 0.0;
    st_file a, b, base;
    if (open_adapter(&a, argv[1]) || open_adapter(&b, argv[2]) ||
        (argc > 4 && open_adapter(&base, argv[4])))
        return 2;
    int bad = a.n != b.n;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < a.n && !bad; i++) {
        const st_tensor *x = &a.t[i], *y = st_find(&b, x->name);
        if (!y || y->dtype != ST_F32 || x->dtype != ST_F32 || y->numel != x->numel) {
            fprintf(stderr, "tensor %s: missing, not F32 or another size in %s\n", x->name,
                    argv[2]);
            bad = 1;
            break;
        }
        const st_tensor *z = argc > 4 ? st_find(&base, x->name) : NULL;
        if (argc > 4 && (!z || z->dtype != ST_F32 || z->numel != x->numel)) {
            fprintf(stderr, "tensor %s: missing, not F32 or another size in %s\n", x->name,
                    argv[4]);
            bad = 1;
            break;
        }
        double d = tol == 0 && memcmp(x->data, y->data, x->nbytes) == 0
                       ? 0
                       : rel_diff(x->data, y->data, z ? z->data : NULL, x->numel);
        if (tol == 0 && memcmp(x->data, y->data, x->nbytes) != 0 && d == 0)
            d = 1e-300;   /* differing bits (e.g. -0 vs 0) still differ */
        if (d > worst)
            worst = d, worst_name = x->name;
    }
    printf("max relative difference %.3g (%s) over %d tensors\n", worst, worst_name, a.n);
    st_close(&a);
    st_close(&b);
    if (argc > 4)
        st_close(&base);
    return bad || worst > tol ? 1 : 0;
}
