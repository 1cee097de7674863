/* dataset.h - the token data of a run and the order it is read in: which
 * rows a step's batch holds, and which of their targets count in the loss.
 *
 * Data is a list of llm.c shards.  When every shard has a sidecar
 * (samples.h) the data is *sample data*, else a *stream* (a mix is refused).
 * An epoch visits N entries:
 *   stream            the windows of T+1 tokens (shard.h), N = (tokens-1)/T;
 *   samples           one sample per row, truncated to T+1 tokens and
 *                     right-padded; N = the sample count;
 *   samples, packed   the samples concatenated in the epoch's order and cut
 *                     into windows like a stream, N = (tokens-1)/T (the causal
 *                     model then attends across sample boundaries).
 * A target that the sidecar's mask leaves out, or that is padding, is -1
 * (model_loss_grad ignores it).
 *
 * Order (docs/design.md, "Data order"): epoch e visits its entries in a
 * permutation drawn from (seed, e) when shuffling, else in order; the global
 * sequence is epoch 0's order, then epoch 1's, ...  Row i of worker w at step
 * t is global entry g = (t*W + w)*B + i, so what a worker reads depends on the
 * global order, never on W, and resuming needs only the step. */
#ifndef PSLORA_DATASET_H
#define PSLORA_DATASET_H

#include <stdint.h>

#include "err.h"
#include "samples.h"
#include "shard.h"

typedef struct {
    int T;              /* --seq */
    int shuffle;        /* -1: on for sample data, off for streams; 0 off; 1 on */
    int pack;           /* concatenate samples into full rows */
    uint64_t seed;
    int encoder;        /* rows for an encoder (ds_enc_row): classification samples allowed */
} ds_options;

typedef struct {
    shard_set set;
    samples_file *side;     /* per file, all NULL for a stream */
    int has_samples;
    samples_kind kind;
    int T, shuffle, pack, encoder;
    uint64_t seed;
    size_t n_samples;
    size_t *s_pos;          /* [n_samples + 1]: stream position of each sample's first token */
    int *s_file;            /* [n_samples]: its file */
    size_t n_entries;       /* per epoch */
    long epoch;             /* of perm/cum below, -1 none */
    uint32_t *perm;         /* [n_samples or n_entries]: the epoch's order */
    size_t *cum;            /* packed: [n_samples + 1] start of the k-th sample of the order */
} dataset;

/* Opens the shards of `list` and their sidecars DATA.samples if any; tokens
 * are checked against vocab, each sidecar against its shard.  what names
 * the data in messages (a flag). */
int ds_open(dataset *d, const char *list, uint32_t vocab, const ds_options *o, const char *what,
            pl_err *e);
/* A token stream of ids[0..n) (which must outlive d), e.g. an encoded text. */
int ds_from_ids(dataset *d, const uint32_t *ids, size_t n, const ds_options *o,
                const char *what, pl_err *e);
void ds_close(dataset *d);

/* Row of global entry g: inp[T], tgt[T] (-1 where nothing counts); returns
 * the number of counted targets.  *epoch and *entry (may be NULL) receive the
 * epoch and the entry's index (sample or window) inside it. */
int ds_row(dataset *d, uint64_t g, int32_t *inp, int32_t *tgt, long *epoch, size_t *entry);

/* An encoder's row (BERT) of global entry g, in the same order as ds_row:
 * sample data gives one sample per row, its tokens as they are (the
 * [CLS] ... [SEP] of `pslora tokenize --format classification`), types[T]
 * its segments from the sidecar's mask (0 without one), *len its length
 * and *label its label (-1 without labels); a sample longer than T keeps
 * its first T-1 tokens and its last (the closing [SEP]).  A stream gives
 * window k's T input tokens, types 0, len T.  The rest of the row is
 * padding (id 0, type 0).  Returns 1 when the row has a label, else 0. */
int ds_enc_row(dataset *d, uint64_t g, int32_t *inp, int32_t *types, int32_t *len,
               int32_t *label, long *epoch, size_t *entry);
/* The same for entry k in file order (evaluation). */
int ds_enc_row_ordered(const dataset *d, size_t k, int32_t *inp, int32_t *types, int32_t *len,
                       int32_t *label);

/* Row of entry k in file order, no shuffling and no packing: evaluation. */
int ds_row_ordered(const dataset *d, size_t k, int32_t *inp, int32_t *tgt);
/* Entries evaluation visits: every sample, or every window of a stream. */
size_t ds_eval_entries(const dataset *d);

#endif
