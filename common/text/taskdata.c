/* taskdata.c - JSON Lines to samples (see taskdata.h). */
#include "taskdata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shard.h"

void task_options_default(task_options *o)
{
    memset(o, 0, sizeof *o);
    o->text_field = "text", o->prompt_field = "prompt", o->completion_field = "completion";
    o->label_field = "label", o->pair_field = "text_pair";
    o->eos = -1;
}

/* Room for `more` tokens (and their mask bytes). */
static int reserve_tok(task_data *d, size_t more, const char *name, pl_err *e)
{
    if (d->n_tok + more <= d->cap_tok)
        return 0;
    size_t cap = d->cap_tok ? d->cap_tok : 4096;
    while (cap < d->n_tok + more)
        cap *= 2;
    uint32_t *t = realloc(d->tok, cap * sizeof *t);
    if (t)
        d->tok = t;
    uint8_t *m = realloc(d->mask, cap);
    if (m)
        d->mask = m;
    if (!t || !m)
        return pl_errf(e, "%s: out of memory for %zu tokens", name, cap);
    d->cap_tok = cap;
    return 0;
}

/* Appends ids with mask value m. */
static int put(task_data *d, const uint32_t *ids, size_t n, uint8_t m, const char *name,
               pl_err *e)
{
    if (n == 0)   /* no prefix, say: the arrays may not exist yet */
        return 0;
    if (reserve_tok(d, n, name, e) != 0)
        return -1;
    memcpy(d->tok + d->n_tok, ids, n * sizeof *ids);
    memset(d->mask + d->n_tok, m, n);
    d->n_tok += n;
    return 0;
}

/* encode(field) appended with mask m; *got = its token count.  An empty
 * string, or one that encodes to nothing, is refused when `need`. */
static int put_field(task_data *d, const jsonl_reader *r, const task_options *o, const char *key,
                     uint8_t m, int need, size_t *got, pl_err *e)
{
    const char *s;
    size_t len, n = d->n_tok;
    if (jsonl_string(r, key, &s, &len, e) != 0)
        return -1;
    if (need && len == 0)
        return pl_errf(e, "%s:%ld: empty \"%s\"", r->name, r->line, key);
    uint32_t *ids = d->tok;   /* the encoder appends to the token array itself */
    size_t cap = d->cap_tok;
    pl_err why;
    if (o->encode(o->ctx, s, len, &ids, &n, &cap, &why) != 0) {
        d->tok = ids, d->cap_tok = cap;
        return pl_errf(e, "%s:%ld: \"%s\": %s", r->name, r->line, key, why.msg);
    }
    d->tok = ids, d->cap_tok = cap;
    uint8_t *mk = realloc(d->mask, cap ? cap : 1);   /* the mask follows the token array */
    if (!mk)
        return pl_errf(e, "%s: out of memory", r->name);
    d->mask = mk;
    memset(d->mask + d->n_tok, m, n - d->n_tok);
    *got = n - d->n_tok;
    d->n_tok = n;
    if (need && *got == 0)
        return pl_errf(e, "%s:%ld: \"%s\" encodes to no token", r->name, r->line, key);
    return 0;
}

/* The label of the current line as an index: an integer (< the --labels
 * count when given) or a string named in --labels. */
static int parse_label(const jsonl_reader *r, const task_options *o, int32_t *out, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->obj, o->label_field);
    if (!v)
        return pl_errf(e, "%s:%ld: missing field \"%s\"", r->name, r->line, o->label_field);
    if (cJSON_IsNumber(v)) {
        double x = v->valuedouble;
        if (!(x >= 0 && x < INT32_MAX && x == floor(x)))
            return pl_errf(e, "%s:%ld: label %g is not an integer >= 0", r->name, r->line, x);
        *out = (int32_t)x;
        return 0;
    }
    if (!cJSON_IsString(v))
        return pl_errf(e, "%s:%ld: label is neither an integer nor a string", r->name, r->line);
    if (!o->labels)
        return pl_errf(e, "%s:%ld: label \"%s\" is a string: name the labels with --labels",
                       r->name, r->line, v->valuestring);
    size_t n = strlen(v->valuestring);
    int32_t i = 0;
    for (const char *p = o->labels;; i++) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && memcmp(p, v->valuestring, n) == 0) {
            *out = i;
            return 0;
        }
        if (!c)
            break;
        p = c + 1;
    }
    return pl_errf(e, "%s:%ld: label \"%s\" is not in --labels %s", r->name, r->line,
                   v->valuestring, o->labels);
}

static int count_labels(const char *list)
{
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* Room for one more sample's offset and label. */
static int reserve_sample(task_data *d, const char *name, pl_err *e)
{
    if (d->n_samples + 2 <= d->cap_samples)
        return 0;
    size_t cap = d->cap_samples ? d->cap_samples * 2 : 256;
    uint32_t *off = realloc(d->off, cap * sizeof *off);
    if (off)
        d->off = off;
    int32_t *lab = realloc(d->labels, cap * sizeof *lab);
    if (lab)
        d->labels = lab;
    if (!off || !lab)
        return pl_errf(e, "%s: out of memory for %zu samples", name, cap);
    d->cap_samples = cap;
    return 0;
}

/* The tokens of one line, by format, after the prefix. */
static int put_body(task_data *d, const jsonl_reader *r, const task_options *o, pl_err *e)
{
    size_t n;
    uint32_t eos = (uint32_t)o->eos;
    switch (o->kind) {
    case SAMPLES_TEXT:
        if (put_field(d, r, o, o->text_field, 1, 1, &n, e) != 0)
            return -1;
        return o->eos >= 0 ? put(d, &eos, 1, 1, r->name, e) : 0;
    case SAMPLES_PROMPT_COMPLETION:
        if (put_field(d, r, o, o->prompt_field, 0, 0, &n, e) != 0 ||
            put_field(d, r, o, o->completion_field, 1, 1, &n, e) != 0)
            return -1;
        return o->eos >= 0 ? put(d, &eos, 1, 1, r->name, e) : 0;
    case SAMPLES_CLASSIFICATION:
        if (put_field(d, r, o, o->text_field, 0, 1, &n, e) != 0 ||
            put(d, o->suffix, o->n_suffix, 0, r->name, e) != 0)
            return -1;
        if (!jsonl_has(r, o->pair_field))
            return 0;
        if (put_field(d, r, o, o->pair_field, 1, 1, &n, e) != 0)
            return -1;
        return put(d, o->suffix, o->n_suffix, 1, r->name, e);
    }
    return pl_errf(e, "unknown task format %d", (int)o->kind);
}

/* --max-len: the sample [start, n_tok) refused or cut. */
static int limit_len(task_data *d, const jsonl_reader *r, const task_options *o, size_t start,
                     pl_err *e)
{
    size_t len = d->n_tok - start;
    if (o->max_len <= 0 || len <= (size_t)o->max_len)
        return 0;
    if (!o->truncate)
        return pl_errf(e, "%s:%ld: sample of %zu tokens is longer than --max-len %ld "
                       "(--truncate cuts it)", r->name, r->line, len, o->max_len);
    d->n_tok = start + (size_t)o->max_len;
    d->truncated++;
    if (o->kind == SAMPLES_PROMPT_COMPLETION && !memchr(d->mask + start, 1, (size_t)o->max_len))
        return pl_errf(e, "%s:%ld: the prompt alone fills --max-len %ld: no completion token "
                       "is left", r->name, r->line, o->max_len);
    return 0;
}

/* One line into d. */
static int add_line(task_data *d, const jsonl_reader *r, const task_options *o, pl_err *e)
{
    size_t start = d->n_tok;
    if (reserve_sample(d, r->name, e) != 0 ||
        put(d, o->prefix, o->n_prefix, o->kind == SAMPLES_TEXT, r->name, e) != 0 ||
        put_body(d, r, o, e) != 0 || limit_len(d, r, o, start, e) != 0)
        return -1;
    if (d->n_tok > INT32_MAX)
        return pl_errf(e, "%s:%ld: more than %d tokens in all", r->name, r->line, INT32_MAX);
    if (o->kind == SAMPLES_CLASSIFICATION &&
        parse_label(r, o, &d->labels[d->n_samples], e) != 0)
        return -1;
    d->off[++d->n_samples] = (uint32_t)d->n_tok;
    return 0;
}

/* Labels: --labels fixes their count; integers must fall inside it; without
 * it the count is the largest label + 1. */
static int settle_labels(task_data *d, const task_options *o, const char *name, pl_err *e)
{
    if (o->kind != SAMPLES_CLASSIFICATION)
        return 0;
    int32_t max = 0;
    for (size_t i = 0; i < d->n_samples; i++)
        max = d->labels[i] > max ? d->labels[i] : max;
    d->n_labels = o->labels ? count_labels(o->labels) : (int)max + 1;
    for (size_t i = 0; o->labels && i < d->n_samples; i++)
        if (d->labels[i] >= d->n_labels)
            return pl_errf(e, "%s: sample %zu: label %d is outside --labels %s (%d labels)",
                           name, i + 1, (int)d->labels[i], o->labels, d->n_labels);
    return 0;
}

int task_build(task_data *d, jsonl_reader *r, const task_options *o, pl_err *e)
{
    memset(d, 0, sizeof *d);
    d->kind = o->kind;
    int rc;
    if (reserve_sample(d, r->name, e) != 0) {
        task_free(d);
        return -1;
    }
    d->off[0] = 0;
    while ((rc = jsonl_next(r, e)) == 1)
        if (add_line(d, r, o, e) != 0)
            break;
    if (rc == 0 && d->n_samples == 0)
        rc = pl_errf(e, "%s: no samples (every line is blank)", r->name);
    if (rc == 0)
        rc = settle_labels(d, o, r->name, e);
    if (rc != 0) {
        task_free(d);
        return -1;
    }
    for (size_t j = 0; j < d->n_tok; j++)
        d->counted += d->mask[j];
    return 0;
}

void task_free(task_data *d)
{
    free(d->tok), free(d->mask), free(d->off), free(d->labels);
    memset(d, 0, sizeof *d);
}

int task_write_part(const task_data *d, size_t a, size_t b, const char *path, pl_err *e)
{
    size_t t0 = d->off[a], nt = d->off[b] - t0;
    samples_file s = {d->kind, nt, b - a, d->n_labels, NULL, NULL, NULL};
    s.off = malloc((b - a + 1) * sizeof *s.off);
    if (!s.off)
        return pl_errf(e, "%s: out of memory", path);
    for (size_t i = a; i <= b; i++)
        s.off[i - a] = d->off[i] - (uint32_t)t0;
    /* text and classification without a pair keep a mask only when it says something */
    int any0 = memchr(d->mask + t0, 0, nt) != NULL;
    s.mask = d->kind == SAMPLES_PROMPT_COMPLETION || (d->kind == SAMPLES_TEXT && any0) ||
                     (d->kind == SAMPLES_CLASSIFICATION && memchr(d->mask + t0, 1, nt))
                 ? d->mask + t0
                 : NULL;
    s.labels = d->kind == SAMPLES_CLASSIFICATION ? d->labels + a : NULL;
    char *side = samples_path(path);
    int rc = side ? 0 : pl_errf(e, "%s: out of memory", path);
    if (rc == 0)
        rc = shard_write(path, d->tok + t0, nt, 0, e);
    if (rc == 0 && samples_write(side, &s, e) != 0) {
        unlink(path);
        rc = -1;
    }
    free(side);
    free(s.off);
    return rc;
}
