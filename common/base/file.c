/* file.c - small whole-file helpers (see file.h). */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pl_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *pl_read_text(const char *path, size_t max_bytes, size_t *len, pl_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        pl_errf(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        pl_errf(e, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    if ((size_t)st.st_size > max_bytes) {
        pl_errf(e, "%s: file too large (%lld bytes, at most %zu)", path,
                (long long)st.st_size, max_bytes);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        pl_errf(e, "%s: out of memory", path);
        fclose(f);
        return NULL;
    }
    if (n && fread(buf, 1, n, f) != n) {
        pl_errf(e, "%s: read error", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

int pl_fsync_dir(const char *dir, pl_err *e)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return pl_errf(e, "%s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : pl_errf(e, "%s: fsync: %s", dir, strerror(errno));
}

int pl_write_atomic(const char *path, const void *buf, size_t len, pl_err *e)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pl_errf(e, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return pl_errf(e, "%s: %s", tmp, strerror(errno));
    const char *p = buf;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            pl_errf(e, "%s: write: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        pl_errf(e, "%s: fsync: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        pl_errf(e, "%s: rename: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dcopy[4096];
    snprintf(dcopy, sizeof dcopy, "%s", path);
    return pl_fsync_dir(dirname(dcopy), e);
}
