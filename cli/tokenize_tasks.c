/* tokenize_tasks.c - `pslora tokenize --format FORMAT`: JSON Lines task data
 * to an llm.c shard and its sample sidecar (taskdata.h, samples.h).
 *
 * --val-fraction F puts the last round(F * n) samples (never part of one)
 * into OUT_val and its sidecar.  Every input line is read and checked before
 * anything is written; the files are each written atomically and, if a later
 * one fails, the earlier ones are removed: all of them or none. */
#include <cjson/cJSON.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "file.h"
#include "flags.h"
#include "out_paths.h"
#include "taskdata.h"
#include "textenc.h"

#define TASK_SYNOPSIS                                                                        \
    "--format text|prompt-completion|classification --in FILE.jsonl --out SHARD\n"         \
    "       [--tokenizer bytes|MODEL_DIR|tokenizer.json] [--val-fraction F]\n"             \
    "       [--max-len N [--truncate]] [--replace-invalid]\n"                                \
    "       [--eos-id N | --no-eos] [--labels a,b,c] [--text-field K] [--prompt-field K]\n" \
    "       [--completion-field K]"

typedef struct {
    const char *in, *out, *tokenizer, *format;
    float val_fraction;
    long eos_id;
    int no_eos, replace_invalid;
    task_options o;
} task_args;

static int parse_format(const char *f, samples_kind *k, pl_err *e)
{
    if (!strcmp(f, "text"))
        *k = SAMPLES_TEXT;
    else if (!strcmp(f, "prompt-completion"))
        *k = SAMPLES_PROMPT_COMPLETION;
    else if (!strcmp(f, "classification"))
        *k = SAMPLES_CLASSIFICATION;
    else
        return pl_errf(e, "--format: expected text, prompt-completion or classification, got '%s'",
                       f);
    return 0;
}

/* 0 ok, 1 --help, -1 usage error. */
static int task_parse_args(task_args *a, int argc, char **argv, pl_err *e)
{
    memset(a, 0, sizeof *a);
    task_options_default(&a->o);
    a->tokenizer = "bytes";
    a->eos_id = -1;
    fl_spec specs[] = {
        {.name = "format", .type = FL_STR, .dst = &a->format, .required = 1,
         .help = "text, prompt-completion or classification (JSON Lines input)"},
        {.name = "in", .type = FL_STR, .dst = &a->in, .help = "input .jsonl", .required = 1},
        {.name = "out", .type = FL_STR, .dst = &a->out, .required = 1,
         .help = "output shard; its samples go to OUT.samples"},
        {.name = "tokenizer", .type = FL_STR, .dst = &a->tokenizer,
         .help = "bytes: one token per byte (default); or a model directory or a "
                 "tokenizer.json"},
        {.name = "replace-invalid", .type = FL_BOOL, .dst = &a->replace_invalid,
         .help = "replace invalid UTF-8 by U+FFFD instead of refusing the line"},
        {.name = "val-fraction", .type = FL_FLOAT, .dst = &a->val_fraction, .min = 0, .max = 1,
         .help = "0 <= F < 1: the last F of the samples go to OUT_val (default 0)"},
        {.name = "max-len", .type = FL_INT, .dst = &a->o.max_len, .min = 1, .max = INT32_MAX,
         .help = "longest sample in tokens (default: no limit)"},
        {.name = "truncate", .type = FL_BOOL, .dst = &a->o.truncate,
         .help = "cut samples longer than --max-len instead of refusing them"},
        {.name = "eos-id", .type = FL_INT, .dst = &a->eos_id, .min = 0, .max = UINT32_MAX,
         .help = "the id ending each text or completion (default: the tokenizer's eos)"},
        {.name = "no-eos", .type = FL_BOOL, .dst = &a->no_eos,
         .help = "end completions with no eos token"},
        {.name = "labels", .type = FL_STR, .dst = &a->o.labels,
         .help = "classification: the label names, in index order"},
        {.name = "text-field", .type = FL_STR, .dst = &a->o.text_field,
         .help = "field of the text (text)"},
        {.name = "prompt-field", .type = FL_STR, .dst = &a->o.prompt_field,
         .help = "field of the prompt (prompt)"},
        {.name = "completion-field", .type = FL_STR, .dst = &a->o.completion_field,
         .help = "field of the completion (completion)"},
        {.name = NULL},
    };
    int rc = fl_parse("tokenize", TASK_SYNOPSIS, specs, argc, argv, NULL, 0, e);
    if (rc != 0)
        return rc;
    if (parse_format(a->format, &a->o.kind, e) != 0)
        return -1;
    if (!*a->in || !*a->out)
        return pl_errf(e, "%s: empty path", *a->in ? "--out" : "--in");
    if (!(a->val_fraction < 1.0f))
        return pl_errf(e, "--val-fraction: must be >= 0 and < 1, got %g", a->val_fraction);
    if (a->o.truncate && !a->o.max_len)
        return pl_errf(e, "--truncate: needs --max-len");
    if (a->no_eos && a->eos_id >= 0)
        return pl_errf(e, "--no-eos: contradicts --eos-id");
    if (a->o.labels && (a->o.kind != SAMPLES_CLASSIFICATION || !*a->o.labels))
        return pl_errf(e, "--labels: %s", *a->o.labels ? "only with --format classification"
                                                       : "empty list");
    if (!*a->tokenizer)
        return pl_errf(e, "--tokenizer: empty path");
    return 0;
}

/* The encoder of taskdata.h: the tokenizer without special tokens, one
 * scratch state for every line. */
typedef struct {
    const te_tokenizer *t;
    tok_state *s;
    int replace_invalid;
} task_enc;

static int encode_plain(void *ctx, const char *text, size_t len, uint32_t **ids, size_t *n,
                        size_t *cap, pl_err *e)
{
    task_enc *c = ctx;
    return tok_encode(c->t->tok, c->s, text, len, 0, c->replace_invalid, ids, n, cap, e);
}

/* The folder holding the tokenizer's files (path itself, or a file's folder). */
static void tokenizer_dir(const char *path, char *dir, size_t len)
{
    snprintf(dir, len, "%s", path);
    if (pl_file_exists(path)) {
        char *copy = strdup(path);
        snprintf(dir, len, "%s", copy ? dirname(copy) : ".");
        free(copy);
    }
}

/* The eos Hugging Face would use: tokenizer_config.json's "eos_token" (a
 * string or {"content": ...}) looked up in the tokenizer, else config.json's
 * "eos_token_id"; -1 when neither names one. */
static int64_t tokenizer_eos(const te_tokenizer *t, const char *path)
{
    char dir[4096], file[4200];
    size_t len;
    pl_err e;
    int64_t id = -1;
    tokenizer_dir(path, dir, sizeof dir);
    snprintf(file, sizeof file, "%s/tokenizer_config.json", dir);
    char *text = pl_file_exists(file) ? pl_read_text(file, 1 << 24, &len, &e) : NULL;
    cJSON *j = text ? cJSON_Parse(text) : NULL, *v = cJSON_GetObjectItemCaseSensitive(j, "eos_token");
    if (cJSON_IsObject(v))
        v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (cJSON_IsString(v))
        id = tok_token_to_id(t->tok, v->valuestring);
    cJSON_Delete(j), free(text);
    snprintf(file, sizeof file, "%s/config.json", dir);
    text = id < 0 && pl_file_exists(file) ? pl_read_text(file, 1 << 24, &len, &e) : NULL;
    j = text ? cJSON_Parse(text) : NULL;
    v = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 4294967296.0)
        id = (int64_t)v->valuedouble;
    cJSON_Delete(j), free(text);
    return id;
}

/* The eos: --eos-id, none with --no-eos, else the tokenizer's; prompt-
 * completion refuses to go without one unless --no-eos says so (the bytes
 * tokenizer never has one). */
static int choose_eos(task_args *a, const te_tokenizer *t, pl_err *e)
{
    a->o.eos = a->no_eos ? -1 : a->eos_id >= 0 ? a->eos_id : tokenizer_eos(t, a->tokenizer);
    if (a->o.eos >= (int64_t)te_vocab_size(t))
        return pl_errf(e, "--eos-id: %lld is outside the tokenizer's %zu ids",
                       (long long)a->o.eos, te_vocab_size(t));
    if (a->o.kind == SAMPLES_PROMPT_COMPLETION && a->o.eos < 0 && !a->no_eos)
        return pl_errf(e, "--eos-id: the tokenizer %s names no end-of-sequence token (no "
                       "tokenizer_config.json eos_token or config.json eos_token_id): give "
                       "--eos-id N (e.g. 10, a newline byte) or --no-eos", a->tokenizer);
    return 0;
}

/* The special tokens the post-processor puts around one sequence. */
static int choose_affixes(task_args *a, const te_tokenizer *t, pl_err *e)
{
    if (!t->bytes && !t->affix_known)
        return pl_errf(e, "--tokenizer: %s: the special tokens its post-processor adds could "
                       "not be told apart from the text", a->tokenizer);
    a->o.prefix = t->prefix, a->o.n_prefix = t->bytes ? 0 : t->n_prefix;
    a->o.suffix = t->suffix, a->o.n_suffix = t->bytes ? 0 : t->n_suffix;
    return 0;
}

/* Splits d into OUT (and OUT_val) and writes both, or neither. */
static int write_parts(const task_args *a, const task_data *d, pl_err *e)
{
    size_t n = d->n_samples, n_val = (size_t)llround((double)a->val_fraction * (double)n);
    if (a->val_fraction > 0 && (n_val == 0 || n_val == n))
        return pl_errf(e, "--val-fraction: %g of %zu samples leaves no %s samples",
                       a->val_fraction, n, n_val ? "training" : "validation");
    char *val = n_val ? cli_val_path(a->out) : NULL;
    if (n_val && !val)
        return pl_errf(e, "%s: out of memory", a->out);
    int rc = task_write_part(d, 0, n - n_val, a->out, e);
    if (rc == 0 && val && task_write_part(d, n - n_val, n, val, e) != 0) {
        char *side = samples_path(a->out);
        unlink(a->out);
        if (side)
            unlink(side);
        free(side);
        rc = -1;
    }
    if (rc == 0) {
        printf("%s: %zu samples, %u tokens\n", a->out, n - n_val, d->off[n - n_val]);
        if (val)
            printf("%s: %zu samples, %u tokens\n", val, n_val, d->off[n] - d->off[n - n_val]);
        if (d->kind == SAMPLES_CLASSIFICATION)   /* the mask holds segments, not loss targets */
            printf("%d labels; %zu samples cut to --max-len\n", d->n_labels, d->truncated);
        else
            printf("%zu tokens count in the loss; %zu samples cut to --max-len\n", d->counted,
                   d->truncated);
    }
    free(val);
    return rc;
}

/* Reads and checks every line, then writes the parts. */
static int tokenize_tasks(task_args *a, const te_tokenizer *t, pl_err *e)
{
    task_enc enc = {t, tok_state_new(t->tok), a->replace_invalid};
    if (!enc.s)
        return pl_errf(e, "out of memory for the tokenizer's scratch");
    a->o.encode = encode_plain, a->o.ctx = &enc;
    jsonl_reader r;
    task_data d;
    int rc = jsonl_open(&r, a->in, e);
    if (rc == 0) {
        rc = task_build(&d, &r, &a->o, e);
        jsonl_close(&r);
    }
    tok_state_free(enc.s);
    if (rc == 0) {
        rc = write_parts(a, &d, e);
        task_free(&d);
    }
    return rc;
}

int cmd_tokenize_tasks(int argc, char **argv)
{
    pl_err e = {{0}};
    task_args a;
    int rc = task_parse_args(&a, argc, argv, &e);
    if (rc != 0)
        return rc > 0 ? 0 : cli_fail("tokenize", e.msg, 2);
    te_tokenizer t;
    if (cli_check_out(a.out, &e) != 0 || te_open(&t, a.tokenizer, &e) != 0)
        return cli_fail("tokenize", e.msg, 1);
    rc = choose_eos(&a, &t, &e) != 0 ? 2 : choose_affixes(&a, &t, &e) != 0 ? 1 : 0;
    if (rc == 0)
        rc = tokenize_tasks(&a, &t, &e) == 0 ? 0 : 1;
    te_close(&t);
    return rc == 0 ? 0 : cli_fail("tokenize", e.msg, rc);
}
