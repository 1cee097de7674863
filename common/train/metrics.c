/* metrics.c - see metrics.h. */
#include "metrics.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int metrics_open(metrics_log *m, const char *out_dir, int append, pl_err *e)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
    m->f = fopen(path, append ? "a" : "w");
    if (!m->f)
        return pl_errf(e, "%s: %s", path, strerror(errno));
    return 0;
}

static void emit(metrics_log *m, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (m->f && s) {
        fprintf(m->f, "%s\n", s);
        fflush(m->f);
    }
    free(s);
    cJSON_Delete(j);
}

/* JSON has no NaN: non-finite numbers become null. */
static void num(cJSON *j, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(j, k, v);
    else
        cJSON_AddNullToObject(j, k);
}

void metrics_step(metrics_log *m, const metrics_row *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "step");
    cJSON_AddNumberToObject(j, "step", (double)r->step);
    num(j, "epoch", r->epoch);
    num(j, "loss", r->loss);
    if (!isnan(r->val_loss))
        num(j, "val_loss", r->val_loss);
    num(j, "lr", r->lr);
    num(j, "tokens_per_s", r->tokens_per_s);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(j, "bytes_pushed", r->bytes_push);
    cJSON_AddNumberToObject(j, "bytes_pulled", r->bytes_pull);
    num(j, "time_step", r->t_step);
    num(j, "time_compute", r->t_compute);
    /* the slowest worker: time_step - this is what the exchange itself cost */
    num(j, "time_compute_max", r->t_compute_max > r->t_compute ? r->t_compute_max : r->t_compute);
    num(j, "time_comm", r->t_comm);
    num(j, "time_wait", r->t_wait);
    num(j, "staleness_max", r->stale_max);
    num(j, "staleness_mean", r->stale_mean);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)r->skipped);
    num(j, "grad_norm", r->grad_norm);
    emit(m, j);
}

void metrics_eval(metrics_log *m, long step, double val_loss, long tokens)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "eval");
    cJSON_AddNumberToObject(j, "step", (double)step);
    num(j, "val_loss", val_loss);
    cJSON_AddNumberToObject(j, "val_tokens", (double)tokens);
    emit(m, j);
}

void metrics_summary(metrics_log *m, const metrics_summary_row *s)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "summary");
    cJSON_AddNumberToObject(j, "steps_done", (double)s->steps);
    cJSON_AddNumberToObject(j, "tokens_total", (double)s->tokens);
    num(j, "bytes_per_step", s->bytes_per_step);
    cJSON_AddNumberToObject(j, "trained_params", (double)s->trained_params);
    num(j, "mem_rank_mb", s->mem_mb);
    num(j, "mem_server_mb", s->mem_server_mb);
    num(j, "mem_worker_mb", s->mem_worker_mb);
    emit(m, j);
}

void metrics_close(metrics_log *m)
{
    if (m->f)
        fclose(m->f);
    m->f = NULL;
}

void metrics_progress(const metrics_row *r, long total_steps, double elapsed_s)
{
    double eta = r->step > 0 ? elapsed_s / (double)r->step * (double)(total_steps - r->step) : 0;
    char val[32] = "";
    if (!isnan(r->val_loss))
        snprintf(val, sizeof val, " val %.4f", r->val_loss);
    fprintf(stderr, "step %ld/%ld loss %.4f%s lr %.2e epoch %.2f tok/s %.0f eta %d:%02d\n",
            r->step, total_steps, r->loss, val, r->lr, r->epoch, r->tokens_per_s, (int)(eta / 60),
            (int)fmod(eta, 60.0));
}
