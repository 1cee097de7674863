/* cmd_eval.c - `pslora eval`: loss and perplexity on shards (a token stream,
 * or sample data with its sidecars: evaluate.h), or on a text file encoded
 * with the model directory's tokenizer (bytes when it has none), as `pslora
 * tokenize` would encode it (one document, no special tokens). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "encbatch.h"
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

/* The BERT flags of eval (encbatch.h). */
typedef struct {
    const char *task, *specials;
    long num_labels, mask_id, seed;
} enc_flags;

/* Prints a BERT evaluation: cls "loss X accuracy Y examples N" (--json
 * with the confusion matrix, rows the labels, columns the predictions),
 * mlm "loss X accuracy Y masked N". */
static void print_encoder(const evaluator *ev, double loss, long n, int json)
{
    int cls = ev->eb.task == TASK_CLS;
    double acc = (double)ev->correct / (double)n;
    if (!json) {
        printf("loss %.6f accuracy %.4f %s %ld\n", loss, acc, cls ? "examples" : "masked", n);
        return;
    }
    printf("{\"loss\": %.9g, \"accuracy\": %.9g, \"%s\": %ld", loss, acc,
           cls ? "examples" : "masked", n);
    if (cls) {
        printf(", \"confusion\": [");
        for (int i = 0; i < ev->K; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < ev->K; j++)
                printf("%s%ld", j ? ", " : "", ev->confusion[(size_t)i * ev->K + j]);
            printf("]");
        }
        printf("]");
    }
    printf("}\n");
}

/* eval on a BERT model: --data of its task (fp32). */
static int eval_encoder(const char *model_dir, const char *adapter, const char *data,
                        const enc_flags *f, long batch, long seq, long max_batches, int json)
{
    model_task task = TASK_NONE;
    if (f->task && (model_task_parse(f->task, &task) != 0 || task == TASK_NONE))
        return cli_fail("eval", "--task: expected mlm or cls", 2);
    opened_model o;
    int rc = model_open_task(&o, "eval", model_dir, adapter, task, (int)f->num_labels);
    if (rc)
        return rc;
    pl_err e;
    dataset d = {0};
    evaluator ev = {0};
    double sum = 0;
    long n = 0;
    int status = 1;
    ds_options dopt = {(int)seq, 0, 0, 0, 1};
    const model_config *c = &o.m.cfg;
    if (c->task == TASK_CLS && !o.m.cls_w && !(o.adapted && o.L.n_labels)) {
        pl_errf(&e, "%s: no classifier (classifier.weight) in the model or the adapter",
                model_dir);
        goto done;
    }
    if (seq > c->n_ctx) {
        pl_errf(&e, "--seq: %ld is longer than the model's context %d", seq, c->n_ctx);
        goto done;
    }
    eb_mask_ids ids = {0};
    if ((c->task == TASK_MLM &&
         eb_mask_ids_resolve(&ids, model_dir, f->mask_id, f->specials, &e) != 0) ||
        ds_open(&d, data, (uint32_t)c->vocab, &dopt, data, &e) != 0 ||
        eval_init_encoder(&ev, &o.m, opened_lora(&o), (int)batch, (int)seq, ids.mask_id,
                          ids.specials, (uint64_t)f->seed, &e) != 0 ||
        eval_run(&ev, &o.m, opened_lora(&o), o.p, &d, data, max_batches, &sum, &n, &e) != 0)
        goto done;
    print_encoder(&ev, sum / (double)n, n, json);
    status = 0;
done:
    if (status)
        cli_fail("eval", e.msg, 1);
    eval_free(&ev);
    ds_close(&d);
    opened_model_close(&o);
    return status;
}

int cmd_eval(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *text = NULL, *compute = "auto";
    const char *fp32_matmul = "auto";
    long batch = 4, seq = 64, max_batches = 0;
    int json = 0;
    enc_flags ef = {NULL, NULL, 0, -1, 1};   /* ids not given: eb_mask_ids_resolve */
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
        {.name = "fp32-matmul", .type = FL_STR, .dst = &fp32_matmul,
         .help = MODEL_FP32_MATMUL_HELP},
        {.name = "task", .type = FL_STR, .dst = &ef.task,
         .help = "bert: mlm or cls (the config's architectures)"},
        {.name = "num-labels", .type = FL_INT, .dst = &ef.num_labels,
         .help = "bert cls: classes (the config's)", .min = 1, .max = 1 << 20},
        {.name = "mask-id", .type = FL_INT, .dst = &ef.mask_id,
         .help = EB_MASK_ID_HELP, .min = 0, .max = 1 << 30},
        {.name = "special-ids", .type = FL_STR, .dst = &ef.specials,
         .help = EB_SPECIALS_HELP},
        {.name = "seed", .type = FL_INT, .dst = &ef.seed,
         .help = "bert mlm: seed of the masking (1)", .min = 0, .max = 1e18},
        {.name = NULL},
    };
    pl_err e;
    int rc = fl_parse("eval", "--model DIR --data SHARDS|--text FILE [--adapter DIR] [flags]",
                      specs, argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("eval", e.msg, 2);
    if (!data == !text)
        return cli_fail("eval", "--data or --text: give exactly one", 2);
    if (model_dir_is_encoder(model_dir)) {
        if (text)
            return cli_fail("eval", "--text: a bert model evaluates --data of its task", 2);
        if (!strcmp(compute, "bf16"))   /* auto decides fp32 for an encoder */
            return cli_fail("eval", "--compute: not implemented for bert (fp32 only)", 2);
        if (!strcmp(fp32_matmul, "onednn"))   /* auto decides openblas for an encoder */
            return cli_fail("eval", "--fp32-matmul onednn: not implemented for bert (openblas only)",
                            2);
        return eval_encoder(model_dir, adapter, data, &ef, batch, seq, max_batches, json);
    }
    if (ef.task || ef.num_labels)
        return cli_fail("eval", ef.task ? "--task: for bert models" : "--num-labels: for bert models", 2);
    opened_model o;
    if ((rc = model_open_forward(&o, "eval", model_dir, adapter, compute, fp32_matmul)) != 0)
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
    ds_options dopt = {(int)seq, 0, 0, 0, 0};
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
