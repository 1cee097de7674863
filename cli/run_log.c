/* run_log.c - output directory, metrics and summary of a training run. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "clock.h"
#include "file.h"
#include "fingerprint.h"
#include "model_bf16.h"
#include "outdir.h"
#include "train.h"

/* The step of one metrics.jsonl line, or -1 when it is not a whole row (a
 * line cut by a kill). */
static long row_step(const char *line, size_t len)
{
    cJSON *j = cJSON_ParseWithLength(line, len);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "step");
    double v = cJSON_IsNumber(s) ? s->valuedouble : -1;
    long step = v >= 0 && v < 9e15 ? (long)v : -1;   /* no out-of-range cast */
    cJSON_Delete(j);
    return step;
}

/* Rewrites OUT/metrics.jsonl without the rows past `start` (atomic). */
static int trim_metrics(const char *out, long start, pl_err *e)
{
    char path[4200];
    size_t len;
    struct stat st;
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    if (stat(path, &st) != 0)
        return 0;
    char *text = pl_read_text(path, (size_t)1 << 31, &len, e);
    if (!text)
        return -1;
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        char *nl = memchr(text + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (text + i)) : len - i;
        long step = nl ? row_step(text + i, n) : -1;
        if (step >= 0 && step <= start) {
            memmove(text + w, text + i, n + 1);
            w += n + 1;
        }
        i += n + 1;
    }
    int rc = pl_write_atomic(path, text, w, e);
    free(text);
    return rc;
}

int run_begin(run_log *r, const train_config *t, int world, int n_workers, long start,
              pl_err *e)
{
    memset(r, 0, sizeof *r);
    r->t = t;
    r->last_val = NAN;
    r->steps_done = start;
    if (!t->resume && outdir_in_use(t->out))
        return pl_errf(e, "--out: %s already exists and is not empty (use --resume %s to continue it)",
                       t->out, t->out);
    if (mkdir(t->out, 0755) != 0 && errno != EEXIST)
        return pl_errf(e, "--out: cannot create %s: %s", t->out, strerror(errno));
    if (t->resume && trim_metrics(t->out, start, e) != 0)
        return -1;
    if (trainconf_write_run_json(t, world, n_workers, e) != 0)
        return -1;
    if (metrics_open(&r->log, t->out, t->resume != NULL, e) != 0)
        return -1;
    char how[128];
    model_compute_describe(how, sizeof how, t->compute_mode, t->compute);
    fprintf(stderr, "compute %s\n", how);
    if (t->compute_mode == MODEL_FP32) {
        model_fp32_matmul_describe(how, sizeof how, t->matmul_mode, t->fp32_matmul);
        fprintf(stderr, "fp32 matmul %s\n", how);
    }
    r->t_start = clock_now();
    return 0;
}

void run_step(run_log *r, metrics_row *row)
{
    r->steps_done = row->step;
    r->tokens += row->tokens;
    r->last_loss = row->loss;
    r->bytes_total += row->bytes_push + row->bytes_pull;
    if (!isnan(row->val_loss))
        r->last_val = row->val_loss;
    int logged = row->step % r->t->log_every == 0 || row->step == r->t->steps;
    if (logged || !isnan(row->val_loss))
        metrics_step(&r->log, row);
    if (logged)
        metrics_progress(row, r->t->steps, clock_now() - r->t_start);
}

int run_finish(run_log *r, const lora_layout *L, const model *m, const float *params,
               pl_err *e)
{
    double steps = r->steps_done > 0 ? (double)r->steps_done : 1;
    metrics_summary_row sum = {r->steps_done, r->tokens,      r->bytes_total / steps,
                               L->n_params,   r->rss_mb,      r->rss_server_mb,
                               r->rss_worker_mb};
    metrics_summary(&r->log, &sum);
    metrics_close(&r->log);
    int rc = L->full ? model_save(m, r->t->out, e)
                     : lora_save_peft(r->t->out, L, &m->cfg, params, r->t->model_dir, e);
    if (rc != 0)
        return -1;
    double secs = clock_now() - r->t_start;
    char val[48] = "";
    if (!isnan(r->last_val))
        snprintf(val, sizeof val, " final val_loss %.4f", r->last_val);
    printf("done: steps %ld tokens %ld tokens/s %.0f bytes/step %.0f final loss %.4f%s "
           "trained_params %zu mem/rank %.0f MB mem/server %.0f MB mem/worker %.0f MB\n",
           r->steps_done, r->tokens, secs > 0 ? (double)r->tokens / secs : 0,
           r->bytes_total / steps, r->last_loss, val, L->n_params, r->rss_mb, r->rss_server_mb,
           r->rss_worker_mb);
    printf("%s written to %s\n", L->full ? "model" : "adapter", r->t->out);
    return 0;
}

int run_fingerprint(run_fp *f, const train_config *t, const model *m, const lora_layout *L,
                    int workers, pl_err *e)
{
    memset(f, 0, sizeof *f);
    msg_hello_init(&f->h, 0, 1);
    if (fp_build(&f->h, t, m, L, e) != 0 ||
        (trainconf_fixes_workers(t) && msg_hello_addf(&f->h, e, "workers", "%d", workers))) {
        run_fingerprint_free(f);
        return -1;
    }
    f->kv = calloc((size_t)f->h.n + 1, sizeof *f->kv);
    if (!f->kv) {
        run_fingerprint_free(f);
        return pl_errf(e, "out of memory");
    }
    for (int i = 0; i < f->h.n; i++)
        f->kv[i] = (ckpt_kv){f->h.kv[i].key, f->h.kv[i].value};
    f->n = f->h.n;
    return 0;
}

void run_fingerprint_free(run_fp *f)
{
    msg_hello_free(&f->h);
    free(f->kv);
    memset(f, 0, sizeof *f);
}

double run_peak_rss_mb(void)
{
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? (double)u.ru_maxrss / 1024.0 : 0;   /* KB on Linux */
}

void run_warn(const char *line)
{
    fprintf(stderr, "pslora train: warning: %s\n", line);
}
