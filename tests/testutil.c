/* testutil.c - see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
