/* checkpoint.h - training checkpoints on disk.  Prefix ckpt_.
 *
 * Layout (see docs/checkpoints.md):
 *   OUT/checkpoints/step-NNNNNNNN/      (NNNNNNNN = steps done, %08ld)
 *       adapter_model.safetensors       the adapter, a PEFT directory
 *       adapter_config.json
 *       optimizer.safetensors           "m.<adapter key>", "v.<adapter key>", F32,
 *                                       the adapter tensors' shapes; metadata
 *                                       format = pslora-optimizer, optimizer = adamw|sgd
 *       trainer_state.json              counters, seed, the run's fingerprint
 *   OUT/checkpoints/latest              symlink to the newest step-NNNNNNNN
 *
 * Writing is all or nothing: the files go into step-NNNNNNNN.partial (each
 * file fsynced by its writer), the directory is fsynced and renamed into
 * place, then `latest` is replaced by a rename and the oldest checkpoints
 * beyond --keep-checkpoints are removed.  A directory named step-NNNNNNNN is
 * therefore always complete; a killed write leaves only a .partial, which the
 * next write removes and every reader ignores.
 *
 * The module knows nothing of the model: the caller writes the adapter into
 * ckpt_writer.tmp (lora_save_peft) between ckpt_begin and ckpt_commit, and
 * describes the adapter tensors (name, shape, place in the flat vector) for
 * the optimizer file.  Readers check every size, offset, type and count
 * against the file and name the file in every error. */
#ifndef PSLORA_CHECKPOINT_H
#define PSLORA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "safetensors.h"

#define CKPT_FORMAT "pslora-trainer-state"
#define CKPT_FORMAT_VERSION 1
#define CKPT_OPTIM_FORMAT "pslora-optimizer"
#define CKPT_STATE_MAX_BYTES (1 << 20)   /* trainer_state.json */
#define CKPT_MAX_KEYS 256                /* fingerprint entries */
#define CKPT_KEY_MAX 127                 /* bytes, as a Hello key */
#define CKPT_VALUE_MAX 1023              /* bytes, as a Hello value */

/* One fingerprint entry: a flag or model property that fixes the result. */
typedef struct {
    char *key, *value;
} ckpt_kv;

/* trainer_state.json.  All counters are whole numbers in [0, 2^53). */
typedef struct {
    long step;               /* global steps done */
    long version;            /* adapter version (updates applied) */
    long updates;            /* optimizer step count t */
    long skipped;            /* non-finite steps skipped so far */
    long consecutive_skips;
    long seed;               /* stored as a decimal string (may exceed 2^53) */
    long total_steps;        /* --steps of the run that wrote it */
    long workers;
    long n_params;           /* floats in the adapter */
    int n_fp;
    ckpt_kv *fp;             /* owned by the struct after a read */
} ckpt_state;

void ckpt_state_free(ckpt_state *s);

/* Value of a fingerprint key, or NULL. */
const char *ckpt_state_get(const ckpt_state *s, const char *key);

/* Parses trainer_state.json text (len bytes, need not be NUL-terminated);
 * name is used in errors.  On failure s is left empty. */
int ckpt_state_parse(ckpt_state *s, const char *text, size_t len, const char *name, pl_err *e);
/* The JSON text of s (malloc'd; NULL when out of memory). */
char *ckpt_state_format(const ckpt_state *s);
/* Reads DIR/trainer_state.json. */
int ckpt_state_read(ckpt_state *s, const char *dir, pl_err *e);

/* Compares the stored fingerprint with the current run's (n entries): a key
 * whose value differs, or that only one side has, refuses the resume unless
 * may_change(key) says it may change.  The error names dir:
 *   "--resume: --rank differs: the checkpoint run/checkpoints/step-00000008
 *    has 8, this run has 4". */
int ckpt_state_compare(const ckpt_state *s, const ckpt_kv *cur, int n,
                       int (*may_change)(const char *key), const char *dir, pl_err *e);

/* An adapter tensor as the optimizer file stores it. */
typedef struct {
    const char *name;        /* the adapter key, e.g. base_model.model....lora_A.weight */
    int64_t shape[2];
    size_t offset;           /* start in the flat adapter vector */
} ckpt_tensor;

/* Checks a parsed optimizer file against the n expected tensors and the
 * optimizer name, then copies "m.<name>" / "v.<name>" into m and v at each
 * tensor's offset.  Nothing is copied unless every check passes. */
int ckpt_optim_check(const st_file *f, const ckpt_tensor *t, int n, const char *optimizer,
                     float *m, float *v, pl_err *e);
/* Opens DIR/optimizer.safetensors and runs ckpt_optim_check. */
int ckpt_optim_read(const char *dir, const ckpt_tensor *t, int n, const char *optimizer,
                    float *m, float *v, pl_err *e);
/* Same, with tensor i's state copied to m[i] and v[i] (ignoring t[i].offset);
 * a NULL m[i] / v[i] is checked but not copied (a server keeps only the
 * tensors it owns). */
int ckpt_optim_read_each(const char *dir, const ckpt_tensor *t, int n, const char *optimizer,
                         float *const *m, float *const *v, pl_err *e);

typedef struct {
    char root[4096];         /* OUT/checkpoints */
    char tmp[4200];          /* OUT/checkpoints/step-NNNNNNNN.partial: write here */
    char name[32];           /* step-NNNNNNNN */
    long step;
    int active;
} ckpt_writer;

/* Creates OUT/checkpoints (if needed), removes leftovers of killed writes,
 * and makes an empty w->tmp for the checkpoint of `step`. */
int ckpt_begin(ckpt_writer *w, const char *out, long step, pl_err *e);
/* Writes w->tmp/optimizer.safetensors (atomic, fsynced). */
int ckpt_optim_write(ckpt_writer *w, const ckpt_tensor *t, int n, const char *optimizer,
                     const float *m, const float *v, pl_err *e);
/* Same, tensor i's state read from m[i] and v[i] (ignoring t[i].offset):
 * the state need not be one flat vector. */
int ckpt_optim_write_each(ckpt_writer *w, const ckpt_tensor *t, int n, const char *optimizer,
                          const float *const *m, const float *const *v, pl_err *e);
/* Writes w->tmp/trainer_state.json (atomic, fsynced); s->step must be w->step. */
int ckpt_state_write(ckpt_writer *w, const ckpt_state *s, pl_err *e);
/* fsyncs w->tmp, renames it to step-NNNNNNNN (replacing an older one of the
 * same step), points `latest` at it and keeps the newest `keep` checkpoints.
 * Test hook: PSLORA_TEST_CKPT_PAUSE_MS=ms (and optionally
 * PSLORA_TEST_CKPT_PAUSE_STEP=n) sleeps just before the rename. */
int ckpt_commit(ckpt_writer *w, long keep, pl_err *e);
/* Removes w->tmp after a failed write. */
void ckpt_abort(ckpt_writer *w);

/* OUT/checkpoints/step-NNNNNNNN into buf. */
void ckpt_path(char *buf, size_t len, const char *out, long step);
/* 0 and *step when name is exactly "step-" followed by 1 to 18 digits. */
int ckpt_parse_name(const char *name, long *step);
/* The complete checkpoints of OUT, newest first: *steps (malloc'd, may be
 * NULL when *n == 0).  A missing OUT/checkpoints gives *n = 0. */
int ckpt_list(const char *out, long **steps, int *n, pl_err *e);
/* The step `latest` names; -1 when it is missing or not a step-NNNNNNNN. */
int ckpt_latest(const char *out, long *step, pl_err *e);

#endif
