/* flags.h - table-driven command-line flags for the subcommands.
 *
 * Every flag is "--name VALUE" or "--name=VALUE" (booleans take no value).
 * Errors name the flag: "--rank: expected an integer >= 1, got '0'". */
#ifndef PSLORA_FLAGS_H
#define PSLORA_FLAGS_H

#include "err.h"

typedef enum { FL_INT, FL_FLOAT, FL_STR, FL_BOOL } fl_type;

typedef struct {
    const char *name;   /* without the leading dashes */
    fl_type type;
    void *dst;          /* long*, float*, const char**, int* */
    const char *help;
    double min, max;    /* inclusive bounds for FL_INT/FL_FLOAT (ignored when min > max) */
    int required;
    int seen;           /* set by fl_parse */
} fl_spec;

/* Parses argv[0..argc) against specs (terminated by name == NULL).
 * positional (may be NULL) receives at most n_pos non-flag words.
 * Returns 0 on success, 1 when --help was given (usage printed on stdout),
 * -1 on a usage error (message in e). */
int fl_parse(const char *cmd, const char *synopsis, fl_spec *specs, int argc, char **argv,
             const char **positional, int n_pos, pl_err *e);
void fl_usage(const char *cmd, const char *synopsis, const fl_spec *specs);
/* Was the flag given on the command line? */
int fl_seen(const fl_spec *specs, const char *name);

#endif
