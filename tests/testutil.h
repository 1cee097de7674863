/* testutil.h - helpers shared by the cmocka tests. */
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

#endif
