/* trainconf.c - `pslora train` flags (see trainconf.h). */
#include "trainconf.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataset.h"
#include "encbatch.h"
#include "file.h"
#include "flags.h"
#include "full.h"
#include "lora.h"
#include "model_bf16.h"
#include "vec.h"

#define PSLORA_VERSION "0.1.0"

static const char *SYNOPSIS =
    "--model DIR --data SHARDS --out DIR [flags]\n\n"
    "Fine-tunes LoRA adapters of a frozen model.  Without mpirun one process does\n"
    "both roles; under `mpirun -np P`, ranks 0..S-1 are servers, the rest workers.";

const char *sync_name(sync_mode s) { return s == SYNC_SSP ? "ssp" : s == SYNC_ASP ? "asp" : "bsp"; }

static void defaults(train_config *t)
{
    memset(t, 0, sizeof *t);
    opt_config_default(&t->opt);
    t->targets = "c_attn";
    t->rank = 8, t->alpha = 16, t->batch = 4, t->seq = 64, t->steps = 100, t->seed = 1;
    t->servers = 1, t->staleness = 0, t->log_every = 1, t->eval_batches = 0;
    t->shuffle = -1;
    t->keep_checkpoints = 3, t->max_skips = 5, t->timeout = 600;
    t->sync_name = "bsp", t->optimizer = "adamw", t->schedule = "constant", t->compute = "auto";
    t->fp32_matmul = "auto";
    t->mask_id = -1, t->special_ids = NULL;   /* not given: eb_mask_ids_resolve */
}

/* --resume OUT continues the run in OUT: --out may be left out, or must name
 * the same directory. */
static int resume_target(train_config *t, pl_err *e)
{
    if (!t->resume) {
        if (!t->out)
            return pl_errf(e, "--out: required (see pslora train --help)");
        return 0;
    }
    if (!t->out) {
        t->out = t->resume;
        return 0;
    }
    struct stat a, b;
    int same = stat(t->out, &a) == 0 && stat(t->resume, &b) == 0
                   ? a.st_dev == b.st_dev && a.st_ino == b.st_ino
                   : strcmp(t->out, t->resume) == 0;
    if (!same)
        return pl_errf(e, "--resume: continues the run in %s, but --out names %s", t->resume,
                       t->out);
    return 0;
}

/* Checks that need several flags at once. */
static int cross_checks(train_config *t, pl_err *e)
{
    if (!strcmp(t->sync_name, "bsp"))
        t->sync = SYNC_BSP;
    else if (!strcmp(t->sync_name, "ssp"))
        t->sync = SYNC_SSP;
    else if (!strcmp(t->sync_name, "asp"))
        t->sync = SYNC_ASP;
    else
        return pl_errf(e, "--sync: expected bsp, ssp or asp, got '%s'", t->sync_name);
    if (opt_kind_parse(t->optimizer, &t->opt.kind) != 0)
        return pl_errf(e, "--optimizer: expected adamw or sgd, got '%s'", t->optimizer);
    if (sched_parse(t->schedule, &t->opt.schedule) != 0)
        return pl_errf(e, "--schedule: expected constant, linear or cosine, got '%s'", t->schedule);
    if (model_compute_choose(t->compute, &t->compute_mode, e) != 0 ||
        model_fp32_matmul_choose(t->fp32_matmul, &t->matmul_mode, e) != 0)
        return -1;
    t->eval_every_given = t->eval_every != 0;
    if (t->val && !t->eval_every)
        t->eval_every = t->steps;   /* evaluate at the end at least */
    if (t->eval_every && !t->val)
        return pl_errf(e, "--eval-every: needs --val SHARDS");
    if (t->sync != SYNC_SSP && t->staleness)
        return pl_errf(e, "--staleness: only with --sync ssp");
    if (t->sync != SYNC_BSP && t->checkpoint_every)
        return pl_errf(e, "--checkpoint-every: periodic checkpoints need --sync bsp "
                          "(%s runs write one checkpoint at the end)", sync_name(t->sync));
    t->opt.total_steps = (int)t->steps;
    return resume_target(t, e);
}

/* --full trains the model's own weights: the adapter's flags have no
 * meaning there and are refused when given, as is --compute bf16 (auto
 * then decides fp32). */
static int full_checks(train_config *t, const fl_spec *specs, pl_err *e)
{
    static const char *const adapter_flags[] = {"rank", "alpha", "rslora", "dropout",
                                                "targets", "init-adapter", NULL};
    if (!t->full)
        return t->full_include ? pl_errf(e, "--full-include: needs --full") : 0;
    for (int i = 0; adapter_flags[i]; i++)
        if (fl_seen(specs, adapter_flags[i]))
            return pl_errf(e, "--%s: an adapter flag, not used with --full", adapter_flags[i]);
    if (!strcmp(t->compute, "bf16"))
        return pl_errf(e, "--compute bf16: --full trains in fp32 only");
    if (!strcmp(t->fp32_matmul, "onednn"))
        return pl_errf(e, "--fp32-matmul onednn: --full trains with openblas only");
    if (!t->full_include)
        t->full_include = "";
    return full_include_parse(t->full_include, &t->full_bits, e);
}

int trainconf_parse(train_config *t, int argc, char **argv, pl_err *e)
{
    defaults(t);
    float lr = t->opt.lr, wd = 0, clip = t->opt.clip, momentum = 0;
    long warmup = 0;
    int shuffle = 0, no_shuffle = 0;
    fl_spec specs[] = {
        {.name = "model", .type = FL_STR, .dst = &t->model_dir,
         .help = "model directory (Hugging Face format)", .required = 1},
        {.name = "data", .type = FL_STR, .dst = &t->data,
         .help = "training token shards, comma-separated", .required = 1},
        {.name = "out", .type = FL_STR, .dst = &t->out,
         .help = "output directory (may be left out with --resume)"},
        {.name = "val", .type = FL_STR, .dst = &t->val, .help = "validation shards"},
        {.name = "rank", .type = FL_INT, .dst = &t->rank,
         .help = "LoRA rank r (8)", .min = 1, .max = 4096},
        {.name = "alpha", .type = FL_FLOAT, .dst = &t->alpha,
         .help = "LoRA alpha (16)", .min = 1e-6, .max = 1e6},
        {.name = "dropout", .type = FL_FLOAT, .dst = &t->dropout,
         .help = "LoRA dropout on the adapter input (0)", .min = 0, .max = 0.99},
        {.name = "targets", .type = FL_STR, .dst = &t->targets,
         .help = "modules to adapt, PEFT names (c_attn)"},
        {.name = "rslora", .type = FL_BOOL, .dst = &t->rslora,
         .help = "scale alpha/sqrt(r) instead of alpha/r"},
        {.name = "full", .type = FL_BOOL, .dst = &t->full,
         .help = "full fine-tuning: train every weight matrix, no adapter"},
        {.name = "full-include", .type = FL_STR, .dst = &t->full_include,
         .help = "with --full, also train: biases,norms,embeddings"},
        {.name = "batch", .type = FL_INT, .dst = &t->batch,
         .help = "sequences per worker per step (4)", .min = 1, .max = 1 << 20},
        {.name = "global-batch", .type = FL_INT, .dst = &t->global_batch,
         .help = "sequences per step over all workers, instead of --batch", .min = 1,
         .max = 1 << 30},
        {.name = "seq", .type = FL_INT, .dst = &t->seq,
         .help = "tokens per sequence (64)", .min = 1, .max = 1 << 20},
        {.name = "steps", .type = FL_INT, .dst = &t->steps,
         .help = "optimizer steps (100)", .min = 1, .max = 1e9},
        {.name = "epochs", .type = FL_INT, .dst = &t->epochs,
         .help = "passes over the data instead of --steps", .min = 1, .max = 1e6},
        {.name = "shuffle", .type = FL_BOOL, .dst = &shuffle,
         .help = "a new order every epoch (default for sample data)"},
        {.name = "no-shuffle", .type = FL_BOOL, .dst = &no_shuffle,
         .help = "read in file order (default for token streams)"},
        {.name = "pack", .type = FL_BOOL, .dst = &t->pack,
         .help = "sample data: concatenate samples into full rows"},
        {.name = "lr", .type = FL_FLOAT, .dst = &lr,
         .help = "peak learning rate (2e-4)", .min = 0, .max = 1e3},
        {.name = "optimizer", .type = FL_STR, .dst = &t->optimizer, .help = "adamw or sgd (adamw)"},
        {.name = "momentum", .type = FL_FLOAT, .dst = &momentum,
         .help = "SGD momentum (0)", .min = 0, .max = 1},
        {.name = "weight-decay", .type = FL_FLOAT, .dst = &wd,
         .help = "decoupled weight decay (0)", .min = 0, .max = 1e3},
        {.name = "warmup", .type = FL_INT, .dst = &warmup,
         .help = "linear warmup steps (0)", .min = 0, .max = 1e9},
        {.name = "schedule", .type = FL_STR, .dst = &t->schedule,
         .help = "constant, linear or cosine (constant)"},
        {.name = "clip", .type = FL_FLOAT, .dst = &clip,
         .help = "global gradient-norm clip, 0 = off (1.0)", .min = 0, .max = 1e9},
        {.name = "seed", .type = FL_INT, .dst = &t->seed,
         .help = "seed for init, dropout and data order (1)", .min = 0, .max = 1e18},
        {.name = "servers", .type = FL_INT, .dst = &t->servers,
         .help = "server ranks under mpirun (1)", .min = 1, .max = 1 << 20},
        {.name = "sync", .type = FL_STR, .dst = &t->sync_name, .help = "bsp, ssp or asp (bsp)"},
        {.name = "staleness", .type = FL_INT, .dst = &t->staleness,
         .help = "SSP bound s (0)", .min = 0, .max = 1 << 20},
        {.name = "init-adapter", .type = FL_STR, .dst = &t->init_adapter,
         .help = "start from a PEFT adapter directory"},
        {.name = "resume", .type = FL_STR, .dst = &t->resume,
         .help = "continue the run in OUT from its newest checkpoint"},
        {.name = "checkpoint-every", .type = FL_INT, .dst = &t->checkpoint_every,
         .help = "checkpoint period in steps (0 = end only)", .min = 0, .max = 1e9},
        {.name = "keep-checkpoints", .type = FL_INT, .dst = &t->keep_checkpoints,
         .help = "checkpoints kept (3)", .min = 1, .max = 1e6},
        {.name = "eval-every", .type = FL_INT, .dst = &t->eval_every,
         .help = "validation period in steps", .min = 0, .max = 1e9},
        {.name = "eval-batches", .type = FL_INT, .dst = &t->eval_batches,
         .help = "validation batches per evaluation (8; sample data: all)", .min = 1,
         .max = 1e9},
        {.name = "threads", .type = FL_INT, .dst = &t->threads,
         .help = "threads per rank (cores / ranks on the node)", .min = 0, .max = 1024},
        {.name = "log-every", .type = FL_INT, .dst = &t->log_every,
         .help = "metrics period in steps (1)", .min = 1, .max = 1e9},
        {.name = "max-skips", .type = FL_INT, .dst = &t->max_skips,
         .help = "stop after this many consecutive non-finite steps (5)", .min = 1, .max = 1e9},
        {.name = "timeout", .type = FL_INT, .dst = &t->timeout,
         .help = "seconds to wait for a peer before giving up (600)", .min = 1, .max = 1e9},
        {.name = "compute", .type = FL_STR, .dst = &t->compute, .help = MODEL_COMPUTE_HELP},
        {.name = "fp32-matmul", .type = FL_STR, .dst = &t->fp32_matmul,
         .help = MODEL_FP32_MATMUL_HELP},
        {.name = "task", .type = FL_STR, .dst = &t->task_name,
         .help = "bert: mlm or cls (the config's architectures)"},
        {.name = "num-labels", .type = FL_INT, .dst = &t->num_labels,
         .help = "bert cls: classes of the classifier (the config's)", .min = 1, .max = 1 << 20},
        {.name = "mask-id", .type = FL_INT, .dst = &t->mask_id,
         .help = EB_MASK_ID_HELP, .min = 0, .max = 1 << 30},
        {.name = "special-ids", .type = FL_STR, .dst = &t->special_ids,
         .help = EB_SPECIALS_HELP},
        {.name = NULL},
    };
    int rc = fl_parse("train", SYNOPSIS, specs, argc, argv, NULL, 0, e);
    if (rc != 0)
        return rc;
    t->opt.lr = lr, t->opt.weight_decay = wd, t->opt.clip = clip, t->opt.momentum = momentum;
    t->opt.warmup = (int)warmup;
    if (shuffle && no_shuffle)
        return pl_errf(e, "--shuffle: contradicts --no-shuffle");
    t->shuffle = shuffle ? 1 : no_shuffle ? 0 : -1;
    if (t->global_batch && fl_seen(specs, "batch"))
        return pl_errf(e, "--global-batch: give --batch or --global-batch, not both");
    if (t->epochs && fl_seen(specs, "steps"))
        return pl_errf(e, "--epochs: give --steps or --epochs, not both");
    if (full_checks(t, specs, e) != 0 || cross_checks(t, e) != 0)
        return -1;
    if (t->task_name && (model_task_parse(t->task_name, &t->task) != 0 || t->task == TASK_NONE))
        return pl_errf(e, "--task: expected mlm or cls, got '%s'", t->task_name);
    if (t->num_labels && t->task == TASK_MLM)
        return pl_errf(e, "--num-labels: only with --task cls");
    int encoder = model_dir_is_encoder(t->model_dir);
    if (t->full || (!strcmp(t->compute, "auto") && encoder))
        t->compute_mode = MODEL_FP32;   /* auto decides fp32 where bf16 is not implemented */
    if (t->full || (!strcmp(t->fp32_matmul, "auto") && encoder))
        t->matmul_mode = MODEL_MM_OPENBLAS;   /* and openblas where oneDNN fp32 is not */
    return 0;
}

/* The shortest %g text that reads back as the same float (2e-4, not
 * 0.000199999995): exact, and readable in a refusal line. */
static const char *fmt_float(char *buf, size_t len, float x)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, len, "%.*g", prec, x);
        if (strtof(buf, NULL) == x)
            break;
    }
    return buf;
}

int trainconf_fp32_onednn(const train_config *t)
{
    return t->compute_mode == MODEL_FP32 && t->matmul_mode == MODEL_MM_ONEDNN;
}

int trainconf_fingerprint(const train_config *t, char keys[][32], char vals[][256], int max)
{
    char f[32];
    int n = 0;
#define KV(k, fmt, ...)                                             \
    if (n < max) {                                                  \
        snprintf(keys[n], 32, "%s", k);                             \
        snprintf(vals[n], 256, fmt, __VA_ARGS__);                   \
        n++;                                                        \
    }
    KV("--rank", "%ld", t->rank);
    KV("--alpha", "%s", fmt_float(f, sizeof f, t->alpha));
    KV("--rslora", "%d", t->rslora);
    KV("--dropout", "%s", fmt_float(f, sizeof f, t->dropout));
    KV("--targets", "%s", t->targets);
    KV("--full", "%s", t->full ? (t->full_include[0] ? t->full_include : "on") : "off");
    KV("--task", "%s", t->task_name ? t->task_name : "");
    KV("--num-labels", "%ld", t->num_labels);
    KV("--mask-id", "%ld", t->mask_id);
    KV("--special-ids", "%s", t->special_ids ? t->special_ids : "");
    if (t->global_batch) {   /* the data order and the result depend on G, not on W */
        KV("--global-batch", "%ld", t->global_batch);
    } else {
        KV("--batch", "%ld", t->batch);
    }
    KV("--seq", "%ld", t->seq);
    KV("--steps", "%ld", t->steps);
    KV("--epochs", "%ld", t->epochs);
    KV("--shuffle", "%s", t->shuffle < 0 ? "default" : t->shuffle ? "on" : "off");
    KV("--pack", "%d", t->pack);
    KV("--seed", "%ld", t->seed);
    KV("--servers", "%ld", t->servers);
    KV("--sync", "%s", sync_name(t->sync));
    KV("--staleness", "%ld", t->staleness);
    KV("--data", "%s", t->data);
    KV("--init-adapter", "%s", t->init_adapter ? t->init_adapter : "");
    KV("--resume", "%s", t->resume ? t->resume : "");
    KV("--compute", "%s", model_compute_name(t->compute_mode));   /* as decided */
    if (trainconf_fp32_onednn(t))   /* absent for openblas: as before the flag existed */
        KV("--fp32-matmul", "%s", model_fp32_matmul_name(t->matmul_mode));
    KV("--optimizer", "%s", opt_kind_name(t->opt.kind));
    KV("--lr", "%s", fmt_float(f, sizeof f, t->opt.lr));
    KV("--momentum", "%s", fmt_float(f, sizeof f, t->opt.momentum));
    KV("--weight-decay", "%s", fmt_float(f, sizeof f, t->opt.weight_decay));
    KV("--warmup", "%d", t->opt.warmup);
    KV("--schedule", "%s", sched_name(t->opt.schedule));
    KV("--clip", "%s", fmt_float(f, sizeof f, t->opt.clip));
#undef KV
    return n;
}

int trainconf_resume_may_change(const char *key)
{
    static const char *const ok[] = {"--steps", "--epochs", "--resume", "--servers", NULL};
    for (int i = 0; ok[i]; i++)
        if (strcmp(key, ok[i]) == 0)
            return 1;
    return 0;
}

int trainconf_write_run_json(const train_config *t, int world, int n_workers, pl_err *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "pslora_version", PSLORA_VERSION);
    cJSON_AddNumberToObject(j, "world_size", world);
    cJSON_AddNumberToObject(j, "workers", n_workers);
    cJSON *f = cJSON_AddObjectToObject(j, "flags");
    cJSON_AddStringToObject(f, "model", t->model_dir);
    cJSON_AddStringToObject(f, "data", t->data);
    cJSON_AddStringToObject(f, "out", t->out);
    if (t->val)
        cJSON_AddStringToObject(f, "val", t->val);
    if (t->init_adapter)
        cJSON_AddStringToObject(f, "init_adapter", t->init_adapter);
    if (t->resume)
        cJSON_AddStringToObject(f, "resume", t->resume);
    cJSON_AddNumberToObject(f, "rank", t->rank);
    cJSON_AddNumberToObject(f, "alpha", t->alpha);
    cJSON_AddNumberToObject(f, "dropout", t->dropout);
    cJSON_AddStringToObject(f, "targets", t->targets);
    cJSON_AddBoolToObject(f, "rslora", t->rslora);
    cJSON_AddBoolToObject(f, "full", t->full);
    if (t->task_name)
        cJSON_AddStringToObject(f, "task", t->task_name);
    if (t->num_labels)
        cJSON_AddNumberToObject(f, "num_labels", (double)t->num_labels);
    if (t->full)
        cJSON_AddStringToObject(f, "full_include", t->full_include);
    cJSON_AddNumberToObject(f, "batch", t->batch);
    if (t->global_batch)
        cJSON_AddNumberToObject(f, "global_batch", t->global_batch);
    cJSON_AddNumberToObject(f, "seq", t->seq);
    cJSON_AddNumberToObject(f, "steps", t->steps);
    cJSON_AddNumberToObject(f, "epochs", t->epochs);
    cJSON_AddStringToObject(f, "shuffle", t->shuffle < 0 ? "default" : t->shuffle ? "on" : "off");
    cJSON_AddBoolToObject(f, "pack", t->pack);
    cJSON_AddNumberToObject(f, "lr", t->opt.lr);
    cJSON_AddStringToObject(f, "optimizer", opt_kind_name(t->opt.kind));
    cJSON_AddNumberToObject(f, "momentum", t->opt.momentum);
    cJSON_AddNumberToObject(f, "weight_decay", t->opt.weight_decay);
    cJSON_AddNumberToObject(f, "warmup", t->opt.warmup);
    cJSON_AddStringToObject(f, "schedule", sched_name(t->opt.schedule));
    cJSON_AddNumberToObject(f, "clip", t->opt.clip);
    cJSON_AddNumberToObject(f, "seed", (double)t->seed);
    cJSON_AddNumberToObject(f, "servers", t->servers);
    cJSON_AddStringToObject(f, "sync", sync_name(t->sync));
    cJSON_AddNumberToObject(f, "staleness", t->staleness);
    cJSON_AddNumberToObject(f, "checkpoint_every", t->checkpoint_every);
    cJSON_AddNumberToObject(f, "eval_every", t->eval_every);
    cJSON_AddNumberToObject(f, "threads", t->threads);
    cJSON_AddNumberToObject(f, "log_every", t->log_every);
    cJSON_AddStringToObject(f, "compute", model_compute_name(t->compute_mode));
    cJSON_AddStringToObject(f, "compute_requested", t->compute);
    cJSON_AddStringToObject(f, "fp32_matmul", model_fp32_matmul_name(t->matmul_mode));
    cJSON_AddStringToObject(f, "fp32_matmul_requested", t->fp32_matmul);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    char path[4096];
    snprintf(path, sizeof path, "%s/run.json", t->out);
    int rc = pl_write_atomic(path, s, strlen(s), e);
    free(s);
    return rc;
}

int trainconf_set_workers(train_config *t, int n_workers, pl_err *e)
{
    if (!t->global_batch)
        return 0;
    if (n_workers < 1 || t->global_batch % n_workers != 0)
        return pl_errf(e, "--global-batch: %ld sequences do not divide among %d workers",
                       t->global_batch, n_workers);
    t->batch = t->global_batch / n_workers;
    return 0;
}

int trainconf_fixes_workers(const train_config *t)
{
    return !t->global_batch || t->dropout > 0;
}

int trainconf_resolve_data(train_config *t, int n_workers, pl_err *e)
{
    dataset d;
    ds_options o = {(int)t->seq, t->shuffle, t->pack, (uint64_t)t->seed, 1};   /* counting only */
    if (ds_open(&d, t->data, UINT32_MAX, &o, "--data", e) != 0)
        return -1;
    t->epoch_entries = d.n_entries;
    ds_close(&d);
    if (!t->epochs)
        return 0;
    uint64_t per_step = (uint64_t)(n_workers > 0 ? n_workers : 1) * (uint64_t)t->batch;
    uint64_t steps = ((uint64_t)t->epochs * t->epoch_entries + per_step - 1) / per_step;
    if (steps > 1000000000)
        return pl_errf(e, "--epochs: %ld epochs make %llu steps (at most 1e9)", t->epochs,
                       (unsigned long long)steps);
    t->steps = (long)steps;
    t->opt.total_steps = (int)steps;
    if (!t->eval_every_given && t->val)
        t->eval_every = t->steps;
    return 0;
}

double trainconf_epoch(const train_config *t, long done, int n_workers)
{
    if (!t->epoch_entries)
        return 0;
    return (double)done * n_workers * (double)t->batch / (double)t->epoch_entries;
}

int trainconf_adapter(const train_config *t, const model_config *c, lora_layout *L,
                      float **params, pl_err *e)
{
    if (params)
        *params = NULL;
    if (t->init_adapter) {
        float *p = NULL;
        if (lora_load_peft(t->init_adapter, c, L, &p, e) != 0)
            return -1;
        L->dropout = t->dropout;   /* dropout is a training choice, not the adapter's */
        if (params)
            *params = p;
        else
            free(p);
        return 0;
    }
    if (lora_layout_build(L, c, t->targets, (int)t->rank, t->alpha, t->rslora, t->dropout, e))
        return -1;
    if (!params)
        return 0;
    *params = vec_falloc(L->n_params);
    if (!*params) {
        lora_layout_free(L);
        return pl_errf(e, "out of memory for %zu adapter parameters", L->n_params);
    }
    lora_init_params(L, *params, (unsigned long long)t->seed);
    return 0;
}

/* The load itself: model_load_in, or the BERT head of --task / --num-labels. */
static int load_model(const train_config *t, model *m, model_compute c, int with_bwd,
                      const model_bf16_store *store, pl_err *e)
{
    if (t->task == TASK_NONE && !t->num_labels)
        return model_load_in(m, t->model_dir, c, with_bwd, store, e);
    if (model_load_task(m, t->model_dir, t->task, (int)t->num_labels, e) != 0)
        return -1;
    int rc = 0;
    if (m->cfg.arch != ARCH_BERT)
        rc = pl_errf(e, "%s: --task and --num-labels are for bert models, this is %s",
                     t->model_dir, model_arch_name(m->cfg.arch));
    else
        rc = model_set_compute_in(m, c, with_bwd, store, e);
    if (rc != 0)
        model_free(m);
    return rc;
}

int trainconf_load_model(const train_config *t, model *m, model_compute c, int with_bwd,
                         const model_bf16_store *store, pl_err *e)
{
    if (load_model(t, m, c, with_bwd, store, e) != 0)
        return -1;
    if (with_bwd && c == MODEL_FP32 && trainconf_fp32_onednn(t) && model_use_onednn_fp32(m, e) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

/* A BERT cls run's classifier: appended to the layout (unless the
 * --init-adapter had it) and given its starting values. */
static int add_classifier(const train_config *t, const model *m, lora_layout *L, float **params,
                          pl_err *e)
{
    if (m->cfg.arch != ARCH_BERT || m->cfg.task != TASK_CLS || L->n_labels || L->full)
        return 0;
    if (lora_layout_add_classifier(L, &m->cfg, e) != 0)
        return -1;
    if (!params)
        return 0;
    float *p = vec_falloc(L->n_params);   /* realloc would not keep the alignment */
    if (!p)
        return pl_errf(e, "out of memory for the classifier");
    memcpy(p, *params, L->cls_off * sizeof *p);   /* the adapter before the classifier */
    free(*params);
    *params = p;
    lora_init_classifier(L, m, p, (unsigned long long)t->seed);
    return 0;
}

int trainconf_trained(const train_config *t, model *m, lora_layout *L, float **params, pl_err *e)
{
    if (t->full && m->cfg.arch == ARCH_BERT)
        return pl_errf(e, "--full: not implemented for bert (LoRA only)");
    if (t->full)
        return full_layout_build(L, m, t->full_bits, params, e);
    if (trainconf_adapter(t, &m->cfg, L, params, e) != 0)
        return -1;
    if (add_classifier(t, m, L, params, e) == 0)
        return 0;
    lora_layout_free(L);
    if (params) {
        free(*params);
        *params = NULL;
    }
    return -1;
}
