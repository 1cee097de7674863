/* cmd_tokenize.c - `pslora tokenize`: a text file to llm.c token shards, and
 * back with --decode.
 *
 * --tokenizer bytes (the default) maps each byte of the input to one token
 * (0..255); a model directory or tokenizer.json encodes the file as one
 * document, as Hugging Face's encode(text, add_special_tokens=--add-special)
 * does (textenc.h: in parallel over line-safe chunks).  Ids >= 65536 make a
 * uint32 (version 7) shard.  With --val-fraction F > 0 the last round(F * n)
 * tokens go to a second shard named after --out with "_val" before its
 * extension (data.bin -> data_val.bin, data -> data_val); the first part goes
 * to --out.  --decode reads a shard and writes its text (to --out, or stdout). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "err.h"
#include "file.h"
#include "flags.h"
#include "model.h"
#include "out_paths.h"
#include "shard.h"
#include "textenc.h"

#define TOK_SYNOPSIS                                                                      \
    "--in TEXT --out SHARD [--tokenizer bytes|MODEL_DIR|tokenizer.json] [--add-special]"  \
    " [--val-fraction F]\n       pslora tokenize --decode --tokenizer PATH --in SHARD [--out TEXT]"

typedef struct {
    const char *in, *out, *tokenizer, *model;
    float val_fraction;
    int add_special, replace_invalid, decode, skip_special;
    long threads;
} tok_args;

/* Flag parsing and the checks fl_parse cannot express.  0 ok, 1 --help
 * given, -1 usage error. */
static int tok_parse_args(tok_args *a, int argc, char **argv, pl_err *e)
{
    memset(a, 0, sizeof *a);
    a->tokenizer = "bytes";
    fl_spec specs[] = {
        {.name = "in", .type = FL_STR, .dst = &a->in, .help = "input text file (shard with --decode)",
         .required = 1},
        {.name = "out", .type = FL_STR, .dst = &a->out,
         .help = "output shard path (text with --decode; stdout when absent)"},
        {.name = "tokenizer", .type = FL_STR, .dst = &a->tokenizer,
         .help = "bytes: one token per byte (default); or a model directory (tokenizer.json, "
                 "vocab.json + merges.txt, vocab.txt) or a tokenizer.json"},
        {.name = "add-special", .type = FL_BOOL, .dst = &a->add_special,
         .help = "add the post-processor's special tokens around the document (BOS, [CLS]...)"},
        {.name = "replace-invalid", .type = FL_BOOL, .dst = &a->replace_invalid,
         .help = "replace invalid UTF-8 by U+FFFD instead of refusing the file"},
        {.name = "model", .type = FL_STR, .dst = &a->model,
         .help = "refuse a tokenizer with more ids than this model's vocab_size"},
        {.name = "threads", .type = FL_INT, .dst = &a->threads, .min = 1, .max = 4096,
         .help = "encoding threads (default: OMP_NUM_THREADS or all cores)"},
        {.name = "val-fraction", .type = FL_FLOAT, .dst = &a->val_fraction, .min = 0, .max = 1,
         .help = "0 <= F < 1: the last F of the tokens go to OUT_val (default 0)"},
        {.name = "decode", .type = FL_BOOL, .dst = &a->decode,
         .help = "shard -> text: write the text of the shard --in"},
        {.name = "skip-special", .type = FL_BOOL, .dst = &a->skip_special,
         .help = "with --decode: leave the special tokens out"},
        {.name = NULL},
    };
    int rc = fl_parse("tokenize", TOK_SYNOPSIS, specs, argc, argv, NULL, 0, e);
    if (rc != 0)
        return rc;
    if (!*a->in)
        return pl_errf(e, "--in: empty path");
    if (a->out && !*a->out)
        return pl_errf(e, "--out: empty path");
    if (!a->decode && !a->out)
        return pl_errf(e, "--out: required (the shard to write)");
    if (a->decode && (fl_seen(specs, "val-fraction") || a->add_special || a->replace_invalid))
        return pl_errf(e, "--decode: takes no --val-fraction, --add-special or --replace-invalid");
    if (!a->decode && a->skip_special)
        return pl_errf(e, "--skip-special: only with --decode");
    if (a->add_special && strcmp(a->tokenizer, "bytes") == 0)
        return pl_errf(e, "--add-special: the bytes tokenizer has no special tokens");
    if (!*a->tokenizer)
        return pl_errf(e, "--tokenizer: empty path");
    if (!(a->val_fraction < 1.0f))
        return pl_errf(e, "--val-fraction: must be >= 0 and < 1, got %g", a->val_fraction);
    return 0;
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

/* --model DIR: its vocab_size must hold every id of the tokenizer. */
static int tok_check_model(const te_tokenizer *t, const char *dir, pl_err *e)
{
    model_config c;
    if (model_config_load(&c, dir, e) != 0)
        return -1;
    char what[4200];
    snprintf(what, sizeof what, "%s/config.json", dir);
    return te_check_vocab(t, c.vocab, what, e);
}

/* The ids of a shard, as uint32. */
static uint32_t *tok_read_shard(const char *path, size_t *n, pl_err *e)
{
    shard_file f;
    if (shard_open(&f, path, e) != 0)
        return NULL;
    uint32_t *ids = malloc((f.ntok ? f.ntok : 1) * sizeof *ids);
    if (ids)
        for (size_t i = 0; i < f.ntok; i++)
            ids[i] = shard_token(&f, i);
    else
        pl_errf(e, "%s: out of memory for %zu tokens", path, f.ntok);
    *n = f.ntok;
    shard_close(&f);
    return ids;
}

/* --decode: shard --in -> text at --out (atomic) or on stdout. */
static int tok_decode_shard(const tok_args *a, const te_tokenizer *t, pl_err *e)
{
    size_t n, len;
    uint32_t *ids = tok_read_shard(a->in, &n, e);
    if (!ids)
        return -1;
    char *text = NULL;
    pl_err inner;
    int rc = te_decode(t, ids, n, a->skip_special, &text, &len, &inner);
    free(ids);
    if (rc != 0)
        return pl_errf(e, "%s: %s", a->in, inner.msg);
    if (a->out)
        rc = pl_write_atomic(a->out, text, len, e);
    else if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0)
        rc = pl_errf(e, "stdout: write failed");
    free(text);
    return rc;
}

/* Text --in -> shard(s) at --out, and the closing line on stderr. */
static int tok_encode_file(const tok_args *a, const te_tokenizer *t, pl_err *e)
{
    if (cli_check_out(a->out, e) != 0)
        return -1;
    struct stat st;
    double mb = stat(a->in, &st) == 0 ? (double)st.st_size / 1e6 : 0, t0 = clock_now();
    te_opts o = {a->add_special, a->replace_invalid, (int)a->threads};
    uint32_t *ids;
    size_t n;
    if (te_encode_file(t, a->in, &o, &ids, &n, e) != 0)
        return -1;
    double secs = clock_now() - t0;
    int rc = 0;
    if (n == 0)
        rc = pl_errf(e, "%s: no tokens (the text encodes to nothing)", a->in);
    else if (n > INT32_MAX)   /* a shard's header counts tokens in an int32 */
        rc = pl_errf(e, "%s: %zu tokens, more than a shard holds (%d)", a->in, n, INT32_MAX);
    if (rc == 0)
        rc = tok_write(a, ids, n, e);
    free(ids);
    if (rc == 0)
        fprintf(stderr, "tokenized %.2f MB in %.2f s (%.2f MB/s), %zu tokens\n", mb, secs,
                secs > 0 ? mb / secs : 0.0, n);
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
    te_tokenizer t;
    if (te_open(&t, a.tokenizer, &e) != 0)
        return cli_fail("tokenize", e.msg, 1);
    rc = a.model ? tok_check_model(&t, a.model, &e) : 0;
    if (rc == 0)
        rc = a.decode ? tok_decode_shard(&a, &t, &e) : tok_encode_file(&a, &t, &e);
    te_close(&t);
    return rc == 0 ? 0 : cli_fail("tokenize", e.msg, 1);
}
