/* tool_adapter_diff.c - compares two PEFT adapter directories (test tool).
 *
 *   tool_adapter_diff DIR_A DIR_B [TOL]
 *
 * For every tensor of A: the relative Frobenius difference ||a - b|| / ||a||
 * (absolute when ||a|| = 0).  Prints the largest; exits 0 when it is <= TOL
 * (default 0: bit-identical values), 1 when larger or when the tensor sets,
 * shapes or dtypes differ, 2 on a read error.  Independent of the trainer:
 * it only reads the files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int open_adapter(st_file *f, const char *dir)
{
    char path[4096];
    pl_err e;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st_open(f, path, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Relative Frobenius difference of two F32 tensors of n elements. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)a[i] * a[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tool_adapter_diff DIR_A DIR_B [TOL]\n");
        return 2;
    }
    double tol = argc > 3 ? atof(argv[3]) : 0.0;
    st_file a, b;
    if (open_adapter(&a, argv[1]) || open_adapter(&b, argv[2]))
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
        double d = tol == 0 && memcmp(x->data, y->data, x->nbytes) == 0
                       ? 0
                       : rel_diff(x->data, y->data, x->numel);
        if (tol == 0 && memcmp(x->data, y->data, x->nbytes) != 0 && d == 0)
            d = 1e-300;   /* differing bits (e.g. -0 vs 0) still differ */
        if (d > worst)
            worst = d, worst_name = x->name;
    }
    printf("max relative difference %.3g (%s) over %d tensors\n", worst, worst_name, a.n);
    st_close(&a);
    st_close(&b);
    return bad || worst > tol ? 1 : 0;
}
