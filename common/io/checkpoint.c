/* checkpoint.c - training checkpoints on disk (see checkpoint.h). */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file.h"
#include "outdir.h"

#define CKPT_MAX_INT 9007199254740992.0   /* 2^53: exact in a JSON number */
#define CKPT_MAX_TOP 64                   /* top-level entries of trainer_state.json */

/* ------------------------------------------------------------ names, paths */

void ckpt_path(char *buf, size_t len, const char *out, long step)
{
    snprintf(buf, len, "%s/checkpoints/step-%08ld", out, step);
}

int ckpt_parse_name(const char *name, long *step)
{
    if (strncmp(name, "step-", 5) != 0)
        return -1;
    const char *d = name + 5;
    size_t n = strspn(d, "0123456789");
    if (n == 0 || n > 18 || d[n] != 0)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (d[i] - '0');   /* 18 digits < 2^63: no overflow */
    *step = v;
    return 0;
}

/* 1 when name is "step-<digits>" followed by exactly suffix. */
static int is_leftover(const char *name, const char *suffix)
{
    size_t n = strlen(name), k = strlen(suffix);
    if (n <= k || strcmp(name + n - k, suffix) != 0 || n - k >= 64)
        return 0;
    char base[64];
    long step;
    memcpy(base, name, n - k);
    base[n - k] = 0;
    return ckpt_parse_name(base, &step) == 0;
}

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt_list(const char *out, long **steps, int *n, pl_err *e)
{
    char root[4200];
    *steps = NULL;
    *n = 0;
    snprintf(root, sizeof root, "%s/checkpoints", out);
    DIR *d = opendir(root);
    if (!d)
        return errno == ENOENT ? 0 : pl_errf(e, "%s: %s", root, strerror(errno));
    int cap = 0, rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        long step;
        char path[4500];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", root, de->d_name);
        if (ckpt_parse_name(de->d_name, &step) != 0 || lstat(path, &st) != 0 ||
            !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            long *p = realloc(*steps, (size_t)cap * sizeof *p);
            if (!p) {
                rc = pl_errf(e, "%s: out of memory", root);
                break;
            }
            *steps = p;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (rc) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return -1;
    }
    if (*n)
        qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);
    return 0;
}

int ckpt_latest(const char *out, long *step, pl_err *e)
{
    char link[4200], target[256];
    snprintf(link, sizeof link, "%s/checkpoints/latest", out);
    ssize_t k = readlink(link, target, sizeof target - 1);
    if (k < 0)
        return pl_errf(e, "%s: %s", link, strerror(errno));
    target[k] = 0;
    if (ckpt_parse_name(target, step) != 0)
        return pl_errf(e, "%s: points at '%s', not a step-NNNNNNNN directory", link, target);
    return 0;
}

/* ------------------------------------------------------ trainer_state.json */

void ckpt_state_free(ckpt_state *s)
{
    for (int i = 0; i < s->n_fp; i++) {
        free(s->fp[i].key);
        free(s->fp[i].value);
    }
    free(s->fp);
    memset(s, 0, sizeof *s);
}

const char *ckpt_state_get(const ckpt_state *s, const char *key)
{
    for (int i = 0; i < s->n_fp; i++)
        if (strcmp(s->fp[i].key, key) == 0)
            return s->fp[i].value;
    return NULL;
}

/* 1 when s holds no control character. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Up to 64 bytes of s for an error line: control characters become '?'. */
static const char *clean(char *buf, size_t len, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len && i < 64; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = 0;
    return buf;
}

/* A whole JSON number in [0, 2^53) into *out (2^53 itself is refused: a
 * larger integer in the text may have been rounded to it). */
static int get_count(const cJSON *j, const char *key, long *out, const char *name, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!v)
        return pl_errf(e, "%s: %s missing", name, key);
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d < 0 || d >= CKPT_MAX_INT || d != floor(d))
        return pl_errf(e, "%s: %s must be a whole number in [0, 2^53)", name, key);
    *out = (long)d;
    return 0;
}

/* Every key of an object unique, at most max entries. */
static int unique_keys(const cJSON *obj, int max, const char *what, const char *name, pl_err *e)
{
    int n = 0;
    for (const cJSON *a = obj->child; a; a = a->next, n++) {
        if (n >= max)
            return pl_errf(e, "%s: %s has more than %d entries", name, what, max);
        char c[72];
        for (const cJSON *b = obj->child; b != a; b = b->next)
            if (strcmp(a->string, b->string) == 0)
                return pl_errf(e, "%s: %s: duplicate key '%s'", name, what,
                               clean(c, sizeof c, a->string));
    }
    return 0;
}

static const char *const TOP_KEYS[] = {
    "format", "format_version", "step", "version", "updates", "skipped",
    "consecutive_skips", "seed", "total_steps", "workers", "n_params", "fingerprint", NULL};

static int known_top_key(const char *k)
{
    for (int i = 0; TOP_KEYS[i]; i++)
        if (strcmp(k, TOP_KEYS[i]) == 0)
            return 1;
    return 0;
}

/* The "fingerprint" object: string values, keys and values bounded. */
static int parse_fingerprint(ckpt_state *s, const cJSON *fp, const char *name, pl_err *e)
{
    if (!cJSON_IsObject(fp))
        return pl_errf(e, "%s: fingerprint must be an object of strings", name);
    if (unique_keys(fp, CKPT_MAX_KEYS, "fingerprint", name, e) != 0)
        return -1;
    int n = cJSON_GetArraySize(fp);
    s->fp = calloc((size_t)n + 1, sizeof *s->fp);
    if (!s->fp)
        return pl_errf(e, "%s: out of memory", name);
    for (const cJSON *it = fp->child; it; it = it->next) {
        const char *k = it->string;
        char c[72];
        if (!cJSON_IsString(it))
            return pl_errf(e, "%s: fingerprint entry '%s' is not a string", name,
                           clean(c, sizeof c, k));
        if (!k[0] || strlen(k) > CKPT_KEY_MAX || !printable(k))
            return pl_errf(e, "%s: fingerprint key '%s' is empty, longer than %d bytes or "
                              "holds a control character", name, clean(c, sizeof c, k),
                           CKPT_KEY_MAX);
        if (strlen(it->valuestring) > CKPT_VALUE_MAX || !printable(it->valuestring))
            return pl_errf(e, "%s: fingerprint value of '%s' is longer than %d bytes or "
                              "holds a control character", name, clean(c, sizeof c, k),
                           CKPT_VALUE_MAX);
        ckpt_kv *kv = &s->fp[s->n_fp++];
        kv->key = strdup(k);
        kv->value = strdup(it->valuestring);
        if (!kv->key || !kv->value)
            return pl_errf(e, "%s: out of memory", name);
    }
    return 0;
}

/* Fields of the object j into s; -1 at the first bad one. */
static int parse_state(ckpt_state *s, const cJSON *j, const char *name, pl_err *e)
{
    if (!cJSON_IsObject(j))
        return pl_errf(e, "%s: not a JSON object", name);
    if (unique_keys(j, CKPT_MAX_TOP, "the top level", name, e) != 0)
        return -1;
    char c[72];
    for (const cJSON *it = j->child; it; it = it->next)
        if (!known_top_key(it->string))
            return pl_errf(e, "%s: unknown key '%s'", name, clean(c, sizeof c, it->string));
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "format");
    if (!cJSON_IsString(f) || strcmp(f->valuestring, CKPT_FORMAT) != 0)
        return pl_errf(e, "%s: format must be \"%s\"", name, CKPT_FORMAT);
    long ver;
    if (get_count(j, "format_version", &ver, name, e) != 0)
        return -1;
    if (ver != CKPT_FORMAT_VERSION)
        return pl_errf(e, "%s: format_version %ld is not supported (this build reads %d)", name,
                       ver, CKPT_FORMAT_VERSION);
    if (get_count(j, "step", &s->step, name, e) || get_count(j, "version", &s->version, name, e) ||
        get_count(j, "updates", &s->updates, name, e) ||
        get_count(j, "skipped", &s->skipped, name, e) ||
        get_count(j, "consecutive_skips", &s->consecutive_skips, name, e) ||
        get_count(j, "total_steps", &s->total_steps, name, e) ||
        get_count(j, "workers", &s->workers, name, e) ||
        get_count(j, "n_params", &s->n_params, name, e))
        return -1;
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    if (!cJSON_IsString(seed) || !seed->valuestring[0] ||
        seed->valuestring[strspn(seed->valuestring, "0123456789")] ||
        pl_parse_long(seed->valuestring, &s->seed) != 0)
        return pl_errf(e, "%s: seed must be a string of decimal digits", name);
    if (s->workers < 1)
        return pl_errf(e, "%s: workers must be at least 1", name);
    if (s->consecutive_skips > s->skipped)
        return pl_errf(e, "%s: consecutive_skips %ld exceeds skipped %ld", name,
                       s->consecutive_skips, s->skipped);
    if (s->step > s->total_steps)
        return pl_errf(e, "%s: step %ld is past total_steps %ld", name, s->step, s->total_steps);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(j, "fingerprint");
    if (!fp)
        return pl_errf(e, "%s: fingerprint missing", name);
    return parse_fingerprint(s, fp, name, e);
}

int ckpt_state_parse(ckpt_state *s, const char *text, size_t len, const char *name, pl_err *e)
{
    memset(s, 0, sizeof *s);
    if (len > CKPT_STATE_MAX_BYTES)
        return pl_errf(e, "%s: file too large (%zu bytes, at most %d)", name, len,
                       CKPT_STATE_MAX_BYTES);
    if (memchr(text, 0, len))
        return pl_errf(e, "%s: holds a NUL byte", name);
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j)
        return pl_errf(e, "%s: not valid JSON", name);
    int rc = parse_state(s, j, name, e);
    cJSON_Delete(j);
    if (rc)
        ckpt_state_free(s);
    return rc;
}

int ckpt_state_read(ckpt_state *s, const char *dir, pl_err *e)
{
    char path[4200];
    size_t len;
    memset(s, 0, sizeof *s);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    char *text = pl_read_text(path, CKPT_STATE_MAX_BYTES, &len, e);
    if (!text)
        return -1;
    int rc = ckpt_state_parse(s, text, len, path, e);
    free(text);
    return rc;
}

/* Value of key among the n current entries, or NULL. */
static const char *cur_get(const ckpt_kv *cur, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (strcmp(cur[i].key, key) == 0)
            return cur[i].value;
    return NULL;
}

int ckpt_state_compare(const ckpt_state *s, const ckpt_kv *cur, int n,
                       int (*may_change)(const char *key), const char *dir, pl_err *e)
{
    for (int i = 0; i < s->n_fp; i++) {
        const char *k = s->fp[i].key, *v = cur_get(cur, n, k);
        if (may_change && may_change(k))
            continue;
        if (!v)
            return pl_errf(e, "--resume: the checkpoint %s records %s = %.64s, which this run "
                              "does not have", dir, k, s->fp[i].value);
        if (strcmp(v, s->fp[i].value) != 0)
            return pl_errf(e, "--resume: %s differs: the checkpoint %s has %.100s, this run "
                              "has %.100s", k, dir, s->fp[i].value, v);
    }
    for (int i = 0; i < n; i++)
        if (!(may_change && may_change(cur[i].key)) && !ckpt_state_get(s, cur[i].key))
            return pl_errf(e, "--resume: the checkpoint %s does not record %s", dir, cur[i].key);
    return 0;
}

char *ckpt_state_format(const ckpt_state *s)
{
    char seed[32];
    snprintf(seed, sizeof seed, "%ld", s->seed);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", CKPT_FORMAT);
    cJSON_AddNumberToObject(j, "format_version", CKPT_FORMAT_VERSION);
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "version", (double)s->version);
    cJSON_AddNumberToObject(j, "updates", (double)s->updates);
    cJSON_AddNumberToObject(j, "skipped", (double)s->skipped);
    cJSON_AddNumberToObject(j, "consecutive_skips", (double)s->consecutive_skips);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "total_steps", (double)s->total_steps);
    cJSON_AddNumberToObject(j, "workers", (double)s->workers);
    cJSON_AddNumberToObject(j, "n_params", (double)s->n_params);
    cJSON *fp = cJSON_AddObjectToObject(j, "fingerprint");
    for (int i = 0; i < s->n_fp; i++)
        cJSON_AddStringToObject(fp, s->fp[i].key, s->fp[i].value);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

int ckpt_state_write(ckpt_writer *w, const ckpt_state *s, pl_err *e)
{
    if (s->step != w->step)
        return pl_errf(e, "%s: state of step %ld in the checkpoint of step %ld", w->tmp, s->step,
                       w->step);
    char path[4300];
    char *text = ckpt_state_format(s);
    if (!text)
        return pl_errf(e, "%s: out of memory", w->tmp);
    snprintf(path, sizeof path, "%s/trainer_state.json", w->tmp);
    int rc = pl_write_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

/* -------------------------------------------------- optimizer.safetensors */

/* "m.<name>" into buf; -1 when it does not fit. */
static int state_key(char *buf, size_t len, char mv, const char *name)
{
    return snprintf(buf, len, "%c.%s", mv, name) < (int)len ? 0 : -1;
}

/* The tensor "m.<name>" or "v.<name>" of f, checked against t. */
static const st_tensor *find_state(const st_file *f, char mv, const ckpt_tensor *t, pl_err *e)
{
    char key[512];
    if (state_key(key, sizeof key, mv, t->name) != 0) {
        pl_errf(e, "%s: tensor name %.64s... too long", f->path, t->name);
        return NULL;
    }
    const st_tensor *x = st_find(f, key);
    if (!x)
        pl_errf(e, "%s: tensor %s missing", f->path, key);
    else if (x->dtype != ST_F32)
        pl_errf(e, "%s: tensor %s has dtype %s, expected F32", f->path, key,
                st_dtype_name(x->dtype));
    else if (x->ndim != 2 || x->shape[0] != t->shape[0] || x->shape[1] != t->shape[1])
        pl_errf(e, "%s: tensor %s has the wrong shape (expected [%lld, %lld])", f->path, key,
                (long long)t->shape[0], (long long)t->shape[1]);
    else
        return x;
    return NULL;
}

/* The checks of ckpt_optim_check, then "m.<name>" / "v.<name>" into m[i] and
 * v[i] (a NULL pointer: that tensor is checked, not copied). */
static int optim_check_each(const st_file *f, const ckpt_tensor *t, int n, const char *optimizer,
                            float *const *m, float *const *v, pl_err *e)
{
    const char *fmt = st_meta(f, "format"), *opt = st_meta(f, "optimizer");
    if (!fmt || strcmp(fmt, CKPT_OPTIM_FORMAT) != 0)
        return pl_errf(e, "%s: not a pslora optimizer file (metadata format is not \"%s\")",
                       f->path, CKPT_OPTIM_FORMAT);
    char c[72];
    if (!opt || strcmp(opt, optimizer) != 0)
        return pl_errf(e, "%s: holds the state of optimizer '%s', this run uses %s", f->path,
                       opt ? clean(c, sizeof c, opt) : "(none)", optimizer);
    if (f->n != 2 * n)
        return pl_errf(e, "%s: holds %d tensors, expected %d (m and v of %d adapter tensors)",
                       f->path, f->n, 2 * n, n);
    for (int i = 0; i < n; i++)   /* check everything before copying anything */
        if (!find_state(f, 'm', &t[i], e) || !find_state(f, 'v', &t[i], e))
            return -1;
    for (int i = 0; i < n; i++) {
        const st_tensor *xm = find_state(f, 'm', &t[i], e), *xv = find_state(f, 'v', &t[i], e);
        if (m[i])
            memcpy(m[i], xm->data, xm->nbytes);
        if (v[i])
            memcpy(v[i], xv->data, xv->nbytes);
    }
    return 0;
}

/* Per-tensor pointers base + t[i].offset (malloc'd, 2n: m's then v's). */
static float **flat_views(const ckpt_tensor *t, int n, const float *m, const float *v)
{
    float **p = malloc(((size_t)2 * n + 1) * sizeof *p);
    for (int i = 0; p && i < n; i++)
        p[i] = (float *)(m + t[i].offset), p[n + i] = (float *)(v + t[i].offset);
    return p;
}

int ckpt_optim_check(const st_file *f, const ckpt_tensor *t, int n, const char *optimizer,
                     float *m, float *v, pl_err *e)
{
    float **p = flat_views(t, n, m, v);
    int rc = p ? optim_check_each(f, t, n, optimizer, p, p + n, e)
               : pl_errf(e, "%s: out of memory", f->path);
    free(p);
    return rc;
}

int ckpt_optim_read_each(const char *dir, const ckpt_tensor *t, int n, const char *optimizer,
                         float *const *m, float *const *v, pl_err *e)
{
    char path[4200];
    st_file f;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (st_open(&f, path, e) != 0)
        return -1;
    int rc = optim_check_each(&f, t, n, optimizer, m, v, e);
    st_close(&f);
    return rc;
}

int ckpt_optim_read(const char *dir, const ckpt_tensor *t, int n, const char *optimizer,
                    float *m, float *v, pl_err *e)
{
    float **p = flat_views(t, n, m, v);
    int rc = p ? ckpt_optim_read_each(dir, t, n, optimizer, p, p + n, e)
               : pl_errf(e, "%s: out of memory", dir);
    free(p);
    return rc;
}

int ckpt_optim_write_each(ckpt_writer *w, const ckpt_tensor *t, int n, const char *optimizer,
                          const float *const *m, const float *const *v, pl_err *e)
{
    char path[4300];
    st_entry *ent = calloc((size_t)2 * n + 1, sizeof *ent);
    char (*names)[512] = calloc((size_t)2 * n + 1, sizeof *names);
    int rc = ent && names ? 0 : pl_errf(e, "%s: out of memory", w->tmp);
    for (int i = 0; i < n && rc == 0; i++) {
        if (state_key(names[2 * i], sizeof names[0], 'm', t[i].name) ||
            state_key(names[2 * i + 1], sizeof names[0], 'v', t[i].name)) {
            rc = pl_errf(e, "%s: tensor name %.64s... too long", w->tmp, t[i].name);
            break;
        }
        ent[2 * i] = (st_entry){names[2 * i], ST_F32, 2, {t[i].shape[0], t[i].shape[1]}, m[i]};
        ent[2 * i + 1] =
            (st_entry){names[2 * i + 1], ST_F32, 2, {t[i].shape[0], t[i].shape[1]}, v[i]};
    }
    if (rc == 0) {
        const char *mk[] = {"format", "optimizer"}, *mvals[] = {CKPT_OPTIM_FORMAT, optimizer};
        snprintf(path, sizeof path, "%s/optimizer.safetensors", w->tmp);
        rc = st_write(path, ent, 2 * n, mk, mvals, 2, e);
    }
    free(ent);
    free(names);
    return rc;
}

int ckpt_optim_write(ckpt_writer *w, const ckpt_tensor *t, int n, const char *optimizer,
                     const float *m, const float *v, pl_err *e)
{
    float **p = flat_views(t, n, m, v);
    int rc = p ? ckpt_optim_write_each(w, t, n, optimizer, (const float *const *)p,
                                       (const float *const *)(p + n), e)
               : pl_errf(e, "%s: out of memory", w->tmp);
    free(p);
    return rc;
}

/* ------------------------------------------------------------------ writer */

/* Removes step-*.partial and step-*.stale left by killed writes. */
static void remove_leftovers(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_leftover(de->d_name, ".partial") && !is_leftover(de->d_name, ".stale"))
            continue;
        char path[4500];
        snprintf(path, sizeof path, "%s/%s", root, de->d_name);
        outdir_remove_tree(path);
    }
    closedir(d);
}

int ckpt_begin(ckpt_writer *w, const char *out, long step, pl_err *e)
{
    memset(w, 0, sizeof *w);
    w->step = step;
    snprintf(w->name, sizeof w->name, "step-%08ld", step);
    if (snprintf(w->root, sizeof w->root, "%s/checkpoints", out) >= (int)sizeof w->root)
        return pl_errf(e, "%s: path too long for checkpoints", out);
    snprintf(w->tmp, sizeof w->tmp, "%s/%s.partial", w->root, w->name);
    if (mkdir(w->root, 0755) != 0 && errno != EEXIST)
        return pl_errf(e, "%s: cannot create: %s", w->root, strerror(errno));
    remove_leftovers(w->root);
    if (mkdir(w->tmp, 0755) != 0)
        return pl_errf(e, "%s: cannot create: %s", w->tmp, strerror(errno));
    w->active = 1;
    return 0;
}

void ckpt_abort(ckpt_writer *w)
{
    if (w->active)
        outdir_remove_tree(w->tmp);
    w->active = 0;
}

/* Test hook: sleep inside the write so that a test can kill us there. */
static void test_pause(long step)
{
    const char *ms = getenv("PSLORA_TEST_CKPT_PAUSE_MS"), *at = getenv("PSLORA_TEST_CKPT_PAUSE_STEP");
    long v, s;
    if (!ms || pl_parse_long(ms, &v) != 0 || v <= 0)
        return;
    if (at && (pl_parse_long(at, &s) != 0 || s != step))
        return;
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Points root/latest at name: a new symlink renamed over the old one. */
static int set_latest(const char *root, const char *name, pl_err *e)
{
    char tmp[4300], link[4300];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", root);
    snprintf(link, sizeof link, "%s/latest", root);
    unlink(tmp);
    if (symlink(name, tmp) != 0)
        return pl_errf(e, "%s: %s", tmp, strerror(errno));
    if (rename(tmp, link) != 0)
        return pl_errf(e, "%s: rename: %s", link, strerror(errno));
    return pl_fsync_dir(root, e);
}

/* Keeps the newest `keep` checkpoints up to w->step; removes the older ones
 * and any newer one (left by a run line that this resumed run replaces). */
static int prune(const ckpt_writer *w, const char *out, long keep, pl_err *e)
{
    long *steps;
    int n, kept = 0;
    if (ckpt_list(out, &steps, &n, e) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (steps[i] <= w->step && kept < keep) {
            kept++;
            continue;
        }
        char path[4200];
        ckpt_path(path, sizeof path, out, steps[i]);
        outdir_remove_tree(path);
    }
    free(steps);
    return 0;
}

int ckpt_commit(ckpt_writer *w, long keep, pl_err *e)
{
    char final[4300], stale[4400], out[4096];
    test_pause(w->step);
    if (pl_fsync_dir(w->tmp, e) != 0)
        return -1;
    snprintf(final, sizeof final, "%s/%s", w->root, w->name);
    snprintf(stale, sizeof stale, "%s.stale", final);
    struct stat st;
    int replace = lstat(final, &st) == 0;
    if (replace && rename(final, stale) != 0)
        return pl_errf(e, "%s: cannot move aside: %s", final, strerror(errno));
    if (rename(w->tmp, final) != 0)
        return pl_errf(e, "%s: rename: %s", final, strerror(errno));
    w->active = 0;
    if (pl_fsync_dir(w->root, e) != 0)
        return -1;
    if (replace)
        outdir_remove_tree(stale);
    if (set_latest(w->root, w->name, e) != 0)
        return -1;
    snprintf(out, sizeof out, "%.*s", (int)(strlen(w->root) - strlen("/checkpoints")), w->root);
    return prune(w, out, keep < 1 ? 1 : keep, e);
}
