/* out_paths.c - see out_paths.h. */
#include "out_paths.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *cli_val_path(const char *out)
{
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    const char *dot = strrchr(base, '.');
    size_t stem = dot && dot != base ? (size_t)(dot - out) : strlen(out);
    size_t len = strlen(out) + 5;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%.*s_val%s", (int)stem, out, out + stem);
    return p;
}

int cli_check_out(const char *out, pl_err *e)
{
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode))
        return pl_errf(e, "--out: '%s' is a directory", out);
    char *copy = strdup(out);
    if (!copy)
        return pl_errf(e, "--out: out of memory");
    const char *dir = dirname(copy);
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = ok ? 0 : pl_errf(e, "--out: directory '%s' does not exist", dir);
    free(copy);
    return rc;
}
