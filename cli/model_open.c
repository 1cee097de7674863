/* model_open.c - a model and its adapter for eval and generate (see model_open.h). */
#include "model_open.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model_bf16.h"

/* The adapter (may be NULL) read for o->m and attached. */
static int open_adapter(opened_model *o, const char *cmd, const char *adapter)
{
    pl_err e;
    if (adapter && lora_load_peft(adapter, &o->m.cfg, &o->L, &o->p, &e) != 0) {
        opened_model_close(o);
        return cli_fail(cmd, e.msg, 1);
    }
    if (adapter) {
        lora_attach(&o->L, &o->m);
        o->adapted = 1;
    }
    return 0;
}

int model_open_forward(opened_model *o, const char *cmd, const char *model_dir,
                       const char *adapter, const char *compute, const char *fp32_matmul)
{
    memset(o, 0, sizeof *o);
    pl_err e;
    model_compute mc;
    model_matmul mm;
    if (model_compute_choose(compute, &mc, &e) != 0 ||
        model_fp32_matmul_choose(fp32_matmul, &mm, &e) != 0)
        return cli_fail(cmd, e.msg, 2);
    if (model_load_for(&o->m, model_dir, mc, 0, &e) != 0)
        return cli_fail(cmd, e.msg, 1);
    if (mc == MODEL_FP32 && mm == MODEL_MM_ONEDNN && model_use_onednn_fp32(&o->m, &e) != 0) {
        model_free(&o->m);
        return cli_fail(cmd, e.msg, 1);
    }
    return open_adapter(o, cmd, adapter);
}

int model_open_task(opened_model *o, const char *cmd, const char *model_dir, const char *adapter,
                    model_task task, int num_labels)
{
    memset(o, 0, sizeof *o);
    pl_err e;
    if (model_load_task(&o->m, model_dir, task, num_labels, &e) != 0)
        return cli_fail(cmd, e.msg, 1);
    return open_adapter(o, cmd, adapter);
}

const lora_layout *opened_lora(const opened_model *o) { return o->adapted ? &o->L : NULL; }

void opened_model_close(opened_model *o)
{
    free(o->p);
    lora_layout_free(&o->L);
    model_free(&o->m);
    memset(o, 0, sizeof *o);
}
