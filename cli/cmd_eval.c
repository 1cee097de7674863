/* cmd_eval.c - `pslora eval`: loss and perplexity on shards (a token stream,
 * or sample data with its sidecars: evaluate.h), or on a text file encoded
 * with the model directory's tokenizer (bytes when it has none), as `pslora
 * tokenize` would encode it (one document, no special tokens). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "evaluate.h"
#include "flags.h"
#include "model_bf16.h"
#include "model_open.h"
#include "textenc.h"

/* --text FILE: its ids under the model's tokenizer, checked against vocab. */
static int eval_text(const char *model_dir, const char *path, int vocab, uint32_t **ids,
                     size_t *n, pl_err *e)
{
    te_tokenizer t;
    int real;
    char what[4200];
    snprintf(what, sizeof what, "%s/config.json", model_dir);
    if (te_open_model(&t, model_dir, &real, e) != 0)
        return -1;
    te_opts o = {0, 0, 0};
    int rc = te_check_vocab(&t, vocab, what, e);
    if (rc == 0)
        rc = te_encode_file(&t, path, &o, ids, n, e);
    te_close(&t);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *text = NULL, *compute = "fp32";
    long batch = 4, seq = 64, max_batches = 0;
    int json = 0;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &model_dir,
         .help = "model directory", .required = 1},
        {.name = "adapter", .type = FL_STR, .dst = &adapter, .help = "PEFT adapter directory"},
        {.name = "data", .type = FL_STR, .dst = &data, .help = "token shards, comma-separated"},
        {.name = "text", .type = FL_STR, .dst = &text,
         .help = "a text file instead, with the model's tokenizer"},
        {.name = "batch", .type = FL_INT, .dst = &batch,
         .help = "sequences per batch (4)", .min = 1, .max = 1 << 20},
        {.name = "seq", .type = FL_INT, .dst = &seq,
         .help = "tokens per sequence (64)", .min = 1, .max = 1 << 20},
        {.name = "max-batches", .type = FL_INT, .dst = &max_batches,
         .help = "at most this many batches (all)", .min = 1, .max = 1e12},
        {.name = "json", .type = FL_BOOL, .dst = &json, .help = "print a JSON object"},
        {.name = "compute", .type = FL_STR, .dst = &compute, .help = MODEL_COMPUTE_HELP},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("eval", "--model DIR --data SHARDS|--text FILE [--adapter DIR] [flags]",
                      specs, argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("eval", e.msg, 2);
    if (!data == !text)
        return cli_fail("eval", "--data or --text: give exactly one", 2);
    opened_model o;
    if ((rc = model_open_forward(&o, "eval", model_dir, adapter, compute)) != 0)
        return rc;
    if (seq > o.m.cfg.n_ctx) {
        opened_model_close(&o);
        return cli_fail("eval", "--seq: longer than the model's context", 2);
    }
    dataset d = {0};
    evaluator ev = {0};
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    double sum = 0;
    long ntok = 0;
    int status = 1;
    ds_options dopt = {(int)seq, 0, 0, 0};
    if (text ? eval_text(model_dir, text, o.m.cfg.vocab, &ids, &n_ids, &e) != 0 ||
                   ds_from_ids(&d, ids, n_ids, &dopt, text, &e) != 0
             : ds_open(&d, data, (uint32_t)o.m.cfg.vocab, &dopt, data, &e) != 0)
        goto done;
    if (eval_init(&ev, &o.m, opened_lora(&o), (int)batch, (int)seq, &e) != 0 ||
        eval_run(&ev, &o.m, opened_lora(&o), o.p, &d, text ? text : data, max_batches, &sum,
                 &ntok, &e) != 0)
        goto done;
    double loss = sum / (double)ntok;   /* tokens: the counted targets */
    size_t rows = ds_eval_entries(&d);
    if (max_batches > 0 && (size_t)(max_batches * batch) < rows)
        rows = (size_t)(max_batches * batch);
    const char *unit = d.has_samples ? "samples" : "sequences";
    if (json)
        printf("{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %ld, \"%s\": %zu}\n", loss,
               exp(loss), ntok, unit, rows);
    else
        printf("loss %.6f ppl %.4f tokens %ld %s %zu\n", loss, exp(loss), ntok, unit, rows);
    status = 0;
done:
    if (status)
        cli_fail("eval", e.msg, 1);
    eval_free(&ev);
    ds_close(&d);
    free(ids);
    opened_model_close(&o);
    return status;
}
