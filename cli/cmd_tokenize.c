/* cmd_tokenize.c - `pslora tokenize`: a text file to llm.c token shards.
 *
 * The "bytes" tokenizer maps each byte of the input to one token (0..255).
 * With --val-fraction F > 0 the last round(F * n) tokens go to a second shard
 * named after --out with "_val" before its extension (data.bin ->
 * data_val.bin, data -> data_val); the first part goes to --out. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "err.h"
#include "file.h"
#include "flags.h"
#include "out_paths.h"
#include "shard.h"

#define TOK_SYNOPSIS "--in TEXT --out SHARD [--tokenizer bytes] [--val-fraction F]"

typedef struct {
    const char *in, *out, *tokenizer;
    float val_fraction;
} tok_args;

/* Flag parsing and the checks fl_parse cannot express.  0 ok, 1 --help
 * given, -1 usage error. */
static int tok_parse_args(tok_args *a, int argc, char **argv, pl_err *e)
{
    a->in = a->out = NULL;
    a->tokenizer = "bytes";
    a->val_fraction = 0.0f;
    fl_spec specs[] = {
        {.name = "in", .type = FL_STR, .dst = &a->in, .help = "input text file",
         .required = 1},
        {.name = "out", .type = FL_STR, .dst = &a->out, .help = "output shard path",
         .required = 1},
        {.name = "tokenizer", .type = FL_STR, .dst = &a->tokenizer,
         .help = "bytes: one token per byte (default; the only one so far)"},
        {.name = "val-fraction", .type = FL_FLOAT, .dst = &a->val_fraction, .min = 0, .max = 1,
         .help = "0 <= F < 1: the last F of the tokens go to OUT_val (default 0)"},
        {.name = NULL},
    };
    int rc = fl_parse("tokenize", TOK_SYNOPSIS, specs, argc, argv, NULL, 0, e);
    if (rc != 0)
        return rc;
    if (!*a->in)
        return pl_errf(e, "--in: empty path");
    if (!*a->out)
        return pl_errf(e, "--out: empty path");
    if (strcmp(a->tokenizer, "bytes") != 0) {
        struct stat st;
        int is_dir = stat(a->tokenizer, &st) == 0 && S_ISDIR(st.st_mode);
        return pl_errf(e, "--tokenizer: only 'bytes' is supported, got %s'%s'",
                       is_dir ? "the directory " : "", a->tokenizer);
    }
    if (!(a->val_fraction < 1.0f))
        return pl_errf(e, "--val-fraction: must be >= 0 and < 1, got %g", a->val_fraction);
    return 0;
}

/* Bytes tokenizer: token i = byte i.  Returns a heap array of n tokens. */
static uint32_t *tok_bytes(const unsigned char *text, size_t n)
{
    uint32_t *t = malloc((n ? n : 1) * sizeof *t);
    if (t)
        for (size_t i = 0; i < n; i++)
            t[i] = text[i];
    return t;
}

/* Writes tokens[0..n) to out, or train/val parts when val_fraction > 0,
 * and reports each path and count on stdout.  The validation part has
 * round(F * n) tokens (rounded, so that 0.7 of 10 is 7 despite 0.7f < 0.7);
 * both parts must be non-empty.  If the second write fails, the first file
 * is removed so that no half of a pair is left behind. */
static int tok_write(const tok_args *a, const uint32_t *tok, size_t n, pl_err *e)
{
    size_t n_val = (size_t)llround((double)a->val_fraction * (double)n);
    if (a->val_fraction > 0 && (n_val == 0 || n_val == n))
        return pl_errf(e, "--val-fraction: %g of %zu tokens leaves no %s tokens",
                       a->val_fraction, n, n_val ? "training" : "validation");
    size_t n_train = n - n_val;
    char *val = n_val ? cli_val_path(a->out) : NULL;
    if (n_val && !val)
        return pl_errf(e, "%s: out of memory", a->out);
    int rc = shard_write(a->out, tok, n_train, 0, e);
    if (rc == 0 && val && shard_write(val, tok + n_train, n_val, 0, e) != 0) {
        unlink(a->out);
        rc = -1;
    }
    if (rc == 0) {
        printf("%s: %zu tokens\n", a->out, n_train);
        if (val)
            printf("%s: %zu tokens\n", val, n_val);
    }
    free(val);
    return rc;
}

/* pslora tokenize: exit 0 ok, 1 failure, 2 usage. */
int cmd_tokenize(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)   /* task data (JSON Lines) has its own flags */
        if (!strcmp(argv[i], "--format") || !strncmp(argv[i], "--format=", 9))
            return cmd_tokenize_tasks(argc, argv);
    pl_err e = {{0}};
    tok_args a;
    int rc = tok_parse_args(&a, argc, argv, &e);
    if (rc > 0)
        return 0;
    if (rc < 0)
        return cli_fail("tokenize", e.msg, 2);
    if (cli_check_out(a.out, &e) != 0)
        return cli_fail("tokenize", e.msg, 1);
    size_t n;
    /* A shard's header counts tokens in an int32. */
    char *text = pl_read_text(a.in, INT32_MAX, &n, &e);
    if (!text)
        return cli_fail("tokenize", e.msg, 1);
    if (n == 0) {
        free(text);
        pl_errf(&e, "%s: empty input, nothing to tokenize", a.in);
        return cli_fail("tokenize", e.msg, 1);
    }
    uint32_t *tok = tok_bytes((const unsigned char *)text, n);
    free(text);
    if (!tok) {
        pl_errf(&e, "%s: out of memory for %zu tokens", a.in, n);
        return cli_fail("tokenize", e.msg, 1);
    }
    rc = tok_write(&a, tok, n, &e);
    free(tok);
    return rc == 0 ? 0 : cli_fail("tokenize", e.msg, 1);
}
