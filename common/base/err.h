/* err.h - error reporting shared by every module, and whole-value parsing.
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

/* Formats the message into e (if e is not NULL) and returns -1.  Control
 * bytes in the result are written as C escapes ("\n", "\x01"): a value
 * quoted from input keeps the message one line.  Arguments may point into
 * e->msg itself (the message is formed in a copy first). */
int pl_errf(pl_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal integer / float; 0 on success, -1 when s is not one. */
int pl_parse_long(const char *s, long *out);
int pl_parse_float(const char *s, float *out);

#endif
