/* outdir.h - output directories that appear whole or not at all.
 *
 * A command that writes a directory builds it as DIR.partial-PID next to the
 * target and renames it into place at the end, so a failed or killed run
 * never leaves a half-written DIR.  The target may be absent or an empty
 * directory; a non-empty one is refused (nothing saved earlier is lost). */
#ifndef PSLORA_OUTDIR_H
#define PSLORA_OUTDIR_H

#include "err.h"

typedef struct {
    char final[4096];
    char tmp[4096];
    int active;
} outdir;

int outdir_begin(outdir *o, const char *dir, pl_err *e);
int outdir_commit(outdir *o, pl_err *e);
/* Removes the partial directory (safe to call after a failed begin). */
void outdir_abort(outdir *o);
/* rm -r of a directory tree we made (no symlinks followed). */
int outdir_remove_tree(const char *path);
/* 1 when path is an existing non-empty directory or a non-directory. */
int outdir_in_use(const char *path);

#endif
