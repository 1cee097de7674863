/* taskdata.h - task data for fine-tuning: JSON Lines (jsonl.h) turned into
 * samples, written as an llm.c shard plus its sidecar (samples.h).
 *
 * A sample per line, by format (field names configurable):
 *   text               {"text"}: [prefix] + encode(text) + [eos]; every
 *                      token counts in the loss;
 *   prompt-completion  {"prompt", "completion"}: [prefix] + encode(prompt) +
 *                      encode(completion) + [eos], the two encoded apart;
 *                      the prefix and the prompt are masked out, the
 *                      completion and the eos count;
 *   classification     {"text", "label", optional "text_pair"}: [prefix] +
 *                      encode(text) + [suffix] (+ encode(text_pair) +
 *                      [suffix]); the label an index into --labels (or an
 *                      integer); the mask marks the text_pair segment (1) for
 *                      an encoder's token types.
 * prefix and suffix are the special tokens the tokenizer's post-processor
 * puts around one sequence (Llama: bos; BERT: [CLS] and [SEP]; GPT-2 and the
 * bytes tokenizer: none); eos is the caller's choice (-1: none).  Text is
 * encoded without special tokens.  Errors name the file and line. */
#ifndef PSLORA_TASKDATA_H
#define PSLORA_TASKDATA_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "jsonl.h"
#include "samples.h"

/* Appends the ids of text[0..len) (no special tokens) to *ids. */
typedef int (*task_encode_fn)(void *ctx, const char *text, size_t len, uint32_t **ids, size_t *n,
                              size_t *cap, pl_err *e);

typedef struct {
    samples_kind kind;
    const char *text_field, *prompt_field, *completion_field, *label_field, *pair_field;
    const char *labels;     /* "a,b,c" (--labels) or NULL */
    long max_len;           /* tokens per sample, 0: no limit */
    int truncate;           /* 1: cut longer samples to max_len; 0: refuse them */
    const uint32_t *prefix, *suffix;
    size_t n_prefix, n_suffix;
    int64_t eos;            /* -1: none */
    task_encode_fn encode;
    void *ctx;
} task_options;

typedef struct {
    samples_kind kind;
    uint32_t *tok;          /* every sample's tokens, end to end */
    uint8_t *mask;          /* per token */
    size_t n_tok, cap_tok;
    uint32_t *off;          /* [n_samples + 1] */
    int32_t *labels;        /* [n_samples] (classification) */
    size_t n_samples, cap_samples;
    int n_labels;
    size_t truncated;       /* samples cut to max_len */
    size_t counted;         /* tokens whose mask is 1 */
} task_data;

/* Defaults: fields "text", "prompt", "completion", "label", "text_pair". */
void task_options_default(task_options *o);
/* Reads every line of r into d; -1 (+ e, naming file and line) on the first
 * bad one, d freed.  At least one sample. */
int task_build(task_data *d, jsonl_reader *r, const task_options *o, pl_err *e);
void task_free(task_data *d);
/* Writes samples [a, b) as the shard `path` and its sidecar path.samples. */
int task_write_part(const task_data *d, size_t a, size_t b, const char *path, pl_err *e);

#endif
