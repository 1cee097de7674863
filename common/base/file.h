/* file.h - small whole-file helpers: read a config or index file, write one
 * atomically, make a rename durable.  Errors as err.h says. */
#ifndef PSLORA_FILE_H
#define PSLORA_FILE_H

#include <stddef.h>

#include "err.h"

/* 1 when path names a regular file (after links), else 0. */
int pl_file_exists(const char *path);

/* Reads a whole small file (config.json, index files) into a NUL-terminated
 * heap buffer.  Refuses files larger than max_bytes. */
char *pl_read_text(const char *path, size_t max_bytes, size_t *len, pl_err *e);

/* Writes buf to path atomically: path.tmp, fsync, rename, fsync of the dir. */
int pl_write_atomic(const char *path, const void *buf, size_t len, pl_err *e);

/* fsync a directory so a rename inside it is durable. */
int pl_fsync_dir(const char *dir, pl_err *e);

#endif
