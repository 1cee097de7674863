/* cmd_eval.c - `pslora eval`: loss and perplexity on shards, or on a text
 * file encoded with the model directory's tokenizer (bytes when it has none),
 * as `pslora tokenize` would encode it (one document, no special tokens). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "evaluate.h"
#include "flags.h"
#include "textenc.h"

/* d = the one-file stream of ids[0..n) (kept by the caller; no file behind
 * it): a version-7 shard_file whose tokens are the ids, read back as
 * little-endian uint32, which they are on the little-endian hosts we build for. */
static int eval_text_stream(shard_set *d, const uint32_t *ids, size_t n, pl_err *e)
{
    d->files = calloc(1, sizeof *d->files);
    d->start = calloc(1, sizeof *d->start);
    if (!d->files || !d->start) {
        free(d->files);
        free(d->start);
        d->files = NULL;
        d->start = NULL;
        return pl_errf(e, "out of memory");
    }
    d->n = 1;
    d->files[0] = (shard_file){.version = 7, .tok_bytes = 4, .ntok = n, .tokens = ids};
    d->total = n;
    return 0;
}

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
        {"model", FL_STR, &model_dir, "model directory", 0, -1, 1, 0},
        {"adapter", FL_STR, &adapter, "PEFT adapter directory", 0, -1, 0, 0},
        {"data", FL_STR, &data, "token shards, comma-separated", 0, -1, 0, 0},
        {"text", FL_STR, &text, "a text file instead, with the model's tokenizer", 0, -1, 0, 0},
        {"batch", FL_INT, &batch, "sequences per batch (4)", 1, 1 << 20, 0, 0},
        {"seq", FL_INT, &seq, "tokens per sequence (64)", 1, 1 << 20, 0, 0},
        {"max-batches", FL_INT, &max_batches, "at most this many batches (all)", 1, 1e12, 0, 0},
        {"json", FL_BOOL, &json, "print a JSON object", 0, -1, 0, 0},
        {"compute", FL_STR, &compute, MODEL_COMPUTE_HELP, 0, -1, 0, 0},
        {NULL, 0, NULL, NULL, 0, 0, 0, 0},
    };
    pl_err e;
    int rc = fl_parse("eval", "--model DIR --data SHARDS|--text FILE [--adapter DIR] [flags]",
                      specs, argc, argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("eval", e.msg, 2);
    if (!data == !text)
        return cli_fail("eval", "--data or --text: give exactly one", 2);
    model_compute mc;
    if (model_compute_choose(compute, &mc, &e) != 0)
        return cli_fail("eval", e.msg, 2);
    model m;
    if (model_load_for(&m, model_dir, mc, 0, &e) != 0)
        return cli_fail("eval", e.msg, 1);
    if (seq > m.cfg.n_ctx) {
        model_free(&m);
        return cli_fail("eval", "--seq: longer than the model's context", 2);
    }
    lora_layout L = {0};
    float *p = NULL;
    shard_set d = {0};
    evaluator ev = {0};
    uint32_t *ids = NULL;
    size_t n_ids = 0;
    double sum = 0;
    long ntok = 0;
    int status = 1;
    if (adapter && lora_load_peft(adapter, &m.cfg, &L, &p, &e) != 0)
        goto done;
    if (adapter)
        lora_attach(&L, &m);
    if (text ? eval_text(model_dir, text, m.cfg.vocab, &ids, &n_ids, &e) != 0 ||
                   eval_text_stream(&d, ids, n_ids, &e) != 0
             : shard_set_open(&d, data, (uint32_t)m.cfg.vocab, &e) != 0)
        goto done;
    if (eval_init(&ev, &m, adapter ? &L : NULL, (int)batch, (int)seq, &e) != 0 ||
        eval_run(&ev, &m, adapter ? &L : NULL, p, &d, text ? text : data, max_batches, &sum,
                 &ntok, &e) != 0)
        goto done;
    double loss = sum / (double)ntok;
    if (json)
        printf("{\"loss\": %.9g, \"ppl\": %.9g, \"tokens\": %ld}\n", loss, exp(loss), ntok);
    else
        printf("loss %.6f ppl %.4f tokens %ld\n", loss, exp(loss), ntok);
    status = 0;
done:
    if (status)
        cli_fail("eval", e.msg, 1);
    eval_free(&ev);
    if (d.files)
        shard_set_close(&d);
    free(ids);
    free(p);
    lora_layout_free(&L);
    model_free(&m);
    return status;
}
