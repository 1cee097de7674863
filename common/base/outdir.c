/* outdir.c - see outdir.h. */
#define _XOPEN_SOURCE 700
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

int outdir_in_use(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return 1;
    DIR *d = opendir(path);
    if (!d)
        return 1;
    struct dirent *de;
    int used = 0;
    while (!used && (de = readdir(d)))
        used = strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return used;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

int outdir_remove_tree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int outdir_begin(outdir *o, const char *dir, pl_err *e)
{
    o->active = 0;
    if (snprintf(o->final, sizeof o->final, "%s", dir) >= (int)sizeof o->final ||
        snprintf(o->tmp, sizeof o->tmp, "%s.partial-%d", dir, (int)getpid()) >=
            (int)sizeof o->tmp)
        return pl_errf(e, "--out: path too long");
    if (outdir_in_use(dir))
        return pl_errf(e, "--out: %s already exists and is not empty", dir);
    outdir_remove_tree(o->tmp);
    if (mkdir(o->tmp, 0755) != 0)
        return pl_errf(e, "--out: cannot create %s: %s", o->tmp, strerror(errno));
    o->active = 1;
    return 0;
}

int outdir_commit(outdir *o, pl_err *e)
{
    rmdir(o->final);   /* an empty target is replaced */
    if (rename(o->tmp, o->final) != 0)
        return pl_errf(e, "--out: cannot rename %s to %s: %s", o->tmp, o->final, strerror(errno));
    o->active = 0;
    char parent[4104];
    snprintf(parent, sizeof parent, "%s/..", o->final);
    return pl_fsync_dir(parent, e);
}

void outdir_abort(outdir *o)
{
    if (o->active)
        outdir_remove_tree(o->tmp);
    o->active = 0;
}
