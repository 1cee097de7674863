/* err.h - error reporting shared by every module.
 *
 * Functions that can fail on user input return 0 on success and -1 on failure,
 * after writing one line into a pl_err that names the file or flag and the
 * problem ("model/config.json: missing n_head").  Nothing here exits: the CLI
 * prints the line and chooses the exit status, tests inspect the message. */
#ifndef PSLORA_ERR_H
#define PSLORA_ERR_H

#include <stddef.h>

#define PL_ERR_LEN 512

typedef struct {
    char msg[PL_ERR_LEN];
} pl_err;

/* Formats the message into e (if e is not NULL) and returns -1. */
int pl_errf(pl_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Reads a whole small file (config.json, index files) into a NUL-terminated
 * heap buffer.  Refuses files larger than max_bytes. */
char *pl_read_text(const char *path, size_t max_bytes, size_t *len, pl_err *e);

/* Writes buf to path atomically: path.tmp, fsync, rename, fsync of the dir. */
int pl_write_atomic(const char *path, const void *buf, size_t len, pl_err *e);

/* fsync a directory so a rename inside it is durable. */
int pl_fsync_dir(const char *dir, pl_err *e);

/* Parses a whole decimal integer / float; 0 on success, -1 when s is not one. */
int pl_parse_long(const char *s, long *out);
int pl_parse_float(const char *s, float *out);

#endif
