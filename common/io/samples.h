/* samples.h - the sample sidecar of a token shard: where each sample of the
 * shard starts, which tokens count in the loss, and classification labels.
 *
 * The shard DATA stays an llm.c shard (shard.h); its samples live beside it
 * in DATA.samples (docs/design.md, "Files" and "Sample data").  Little-endian:
 *
 *   header   16 x int32: magic 20250601, version 1, n_tokens (= the shard's
 *            token count), n_samples (>= 1), kind (0 text, 1 prompt-completion,
 *            2 classification), has_mask (0 or 1), n_labels (0 for text and
 *            prompt-completion, >= 1 for classification), then 9 zeros
 *   offsets  (n_samples + 1) x uint32: 0 = o[0] < o[1] < ... < o[n] = n_tokens;
 *            sample i is tokens o[i] .. o[i+1] - 1 (never empty)
 *   mask     has_mask ? n_tokens x uint8, each 0 or 1: 1 when token j counts
 *            as a target (predicting it from the tokens before it is in the
 *            loss); without a mask every token counts
 *   labels   n_labels ? n_samples x int32, each in [0, n_labels)
 *
 * The file size must be exactly the sum of these parts.  A reader checks all
 * of it and that n_tokens matches the shard, and fails with one line naming
 * the file and the problem. */
#ifndef PSLORA_SAMPLES_H
#define PSLORA_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SAMPLES_MAGIC 20250601
#define SAMPLES_VERSION 1
#define SAMPLES_HEADER_INTS 16
#define SAMPLES_SUFFIX ".samples"

typedef enum { SAMPLES_TEXT = 0, SAMPLES_PROMPT_COMPLETION = 1, SAMPLES_CLASSIFICATION = 2 } samples_kind;

typedef struct {
    samples_kind kind;
    size_t n_tokens, n_samples;
    int n_labels;
    uint32_t *off;      /* [n_samples + 1] */
    uint8_t *mask;      /* [n_tokens] or NULL (every token counts) */
    int32_t *labels;    /* [n_samples] or NULL */
} samples_file;

/* Validates a sidecar image of `size` bytes (name goes in messages) and
 * copies it into s (malloc'd arrays).  On failure s is left zeroed. */
int samples_parse(samples_file *s, const void *buf, size_t size, const char *name, pl_err *e);
/* Reads and validates path. */
int samples_read(samples_file *s, const char *path, pl_err *e);
/* The sidecar against its shard: n_tokens must equal the shard's count. */
int samples_check_shard(const samples_file *s, const char *path, size_t shard_ntok,
                        const char *shard_path, pl_err *e);
/* Checks s the way samples_parse checks a file, then writes it atomically
 * (tmp + rename). */
int samples_write(const char *path, const samples_file *s, pl_err *e);
void samples_free(samples_file *s);

/* "SHARD.samples" (malloc'd; NULL when out of memory). */
char *samples_path(const char *shard_path);
/* Counted targets of sample i: mask ones (or every token) minus its first
 * token, which no row predicts. */
size_t samples_counted(const samples_file *s, size_t i);

#endif
