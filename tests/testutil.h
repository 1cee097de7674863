/* testutil.h - helpers shared by the cmocka tests: scratch directories and
 * files, and the numerics of the kernel tests (test_kernels.c,
 * test_kernels_llama.c): buffers, seeded normal fills, relative errors
 * max |got - ref| / max |ref|, and central finite differences in double. */
#ifndef PSLORA_TESTUTIL_H
#define PSLORA_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh empty directory $TMPDIR/pslora-test-PID/TAG (TMPDIR or /tmp);
 * returns a static path valid until the next call.  The process's whole
 * pslora-test-PID tree is removed at exit (kept with PSLORA_KEEP_TEST_DIRS). */
const char *tu_tmpdir(const char *tag);
/* Writes len bytes to path (no atomicity; for crafting bad inputs). */
void tu_write_file(const char *path, const void *buf, size_t len);
/* Max |a-b| / max(1, |b|) over n elements. */
double tu_max_rel_diff(const float *a, const float *b, size_t n);

/* Zeroed buffers of n (at least 1) floats / doubles. */
float *tu_fnew(size_t n);
double *tu_dnew(size_t n);
/* a[i] = mean + sd * N(0,1) from the stream seeded by the words {tag, seed}
 * (a test file's tag keeps its draws its own). */
void tu_fill_normal(float *a, size_t n, float mean, float sd, uint64_t tag, uint64_t seed);
/* A new double copy of a [n]. */
double *tu_to_double(const float *a, size_t n);
double tu_dot(const double *a, const double *b, size_t n);
/* max |got - ref| / max |ref| (ref all zero: the absolute error / 1e-300). */
double tu_rel_err(const double *got, const double *ref, size_t n);
double tu_rel_err_f(const float *got, const double *ref, size_t n);
/* The same over `rows` rows of w floats at stride ld (a column block of a
 * wider matrix): max |x - y| / max |y|, y all zero: the absolute error. */
double tu_rel_err_rows(const float *x, const float *y, int rows, int w, int ld);

typedef double (*tu_loss_fn)(void *ctx);
/* g[i] = (L(p + h e_i) - L(p - h e_i)) / 2h, h = 1e-4 * max(1, |p_i|), all in
 * double; p is restored. */
void tu_fd_grad(double *g, double *p, size_t n, tu_loss_fn L, void *ctx);

#endif
