/* cmd_eval.c - `pslora eval`: loss and perplexity on shards. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "evaluate.h"
#include "flags.h"
#include "model_bf16.h"
#include "model_open.h"

int cmd_eval(int argc, char **argv)
{
    const char *model_dir = NULL, *adapter = NULL, *data = NULL, *compute = "fp32";
    long batch = 4, seq = 64, max_batches = 0;
    int json = 0;
    fl_spec specs[] = {
        {"model", FL_STR, &model_dir, "model directory", 0, -1, 1, 0},
        {"adapter", FL_STR, &adapter, "PEFT adapter directory", 0, -1, 0, 0},
        {"data", FL_STR, &data, "token shards, comma-separated", 0, -1, 1, 0},
        {"batch", FL_INT, &batch, "sequences per batch (4)", 1, 1 << 20, 0, 0},
        {"seq", FL_INT, &seq, "tokens per sequence (64)", 1, 1 << 20, 0, 0},
        {"max-batches", FL_INT, &max_batches, "at most this many batches (all)", 1, 1e12, 0, 0},
        {"json", FL_BOOL, &json, "print a JSON object", 0, -1, 0, 0},
        {"compute", FL_STR, &compute, MODEL_COMPUTE_HELP, 0, -1, 0, 0},
        {NULL, 0, NULL, NULL, 0, 0, 0, 0},
    };
    pl_err e;
    int rc = fl_parse("eval", "--model DIR --data SHARDS [--adapter DIR] [flags]", specs, argc,
                      argv, NULL, 0, &e);
    if (rc)
        return rc > 0 ? 0 : cli_fail("eval", e.msg, 2);
    opened_model o;
    if ((rc = model_open_forward(&o, "eval", model_dir, adapter, compute)) != 0)
        return rc;
    if (seq > o.m.cfg.n_ctx) {
        opened_model_close(&o);
        return cli_fail("eval", "--seq: longer than the model's context", 2);
    }
    shard_set d = {0};
    evaluator ev = {0};
    double sum = 0;
    long ntok = 0;
    int status = 1;
    if (shard_set_open(&d, data, (uint32_t)o.m.cfg.vocab, &e) != 0)
        goto done;
    if (eval_init(&ev, &o.m, opened_lora(&o), (int)batch, (int)seq, &e) != 0 ||
        eval_run(&ev, &o.m, opened_lora(&o), o.p, &d, data, max_batches, &sum, &ntok, &e) != 0)
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
    opened_model_close(&o);
    return status;
}
