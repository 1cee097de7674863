/* encbatch.h - the batches of an encoder (BERT): rows of token ids, token
 * types and lengths from the data (dataset.h, ds_enc_row), and the targets
 * of the task: the label of each row (cls), or the masked-LM targets drawn
 * by mlm.h from (seed, epoch, entry) (mlm), so that W workers x B mask
 * exactly what 1 worker x W*B masks.
 *
 * The masking's [MASK] id and special ids come from --mask-id and
 * --special-ids, else from the model directory's tokenizer (eb_mask_ids),
 * else bert-base-uncased's ([MASK] 103; [PAD] 0, [UNK] 100, [CLS] 101,
 * [SEP] 102); padding is never masked. */
#ifndef PSLORA_ENCBATCH_H
#define PSLORA_ENCBATCH_H

#include <stdint.h>
#include <stdio.h>

#include "dataset.h"
#include "err.h"
#include "mlm.h"
#include "model.h"

#define EB_DEFAULT_MASK_ID 103
#define EB_DEFAULT_SPECIALS "0,100,101,102"
#define EB_MAX_SPECIALS 64
#define EB_MASK_ID_HELP "bert mlm: the [MASK] id (the model's tokenizer's, else 103)"
#define EB_SPECIALS_HELP "bert mlm: ids never masked (the tokenizer's specials, else 0,100,101,102)"

/* The ids masking needs. */
typedef struct {
    long mask_id;
    char specials[EB_MAX_SPECIALS * 12];   /* "0,100,101,102,103" */
} eb_mask_ids;

/* Fills r for --task mlm.  mask_id < 0 and specials NULL mean the flag was
 * not given: then the model directory's tokenizer (tokenizer.json, else
 * BERT's vocab.txt) gives its "[MASK]" token and every special added token
 * (Hugging Face's all_special_ids); a directory with neither gives the
 * defaults above.  0, or -1 with e filled (a tokenizer that cannot be read,
 * has no [MASK], or more than EB_MAX_SPECIALS special tokens). */
int eb_mask_ids_resolve(eb_mask_ids *r, const char *model_dir, long mask_id, const char *specials,
                        pl_err *e);

typedef struct {
    int B, T;
    model_task task;
    mlm_spec mlm;
    int32_t specials[EB_MAX_SPECIALS];
    uint64_t seed;
    int32_t *inp, *types, *len, *tgt;   /* [B*T], [B*T], [B], [B*T] (cls: [B] used) */
    int32_t *tmp;                       /* [T]: a row before masking */
} enc_batch;

/* Buffers for B x T rows of the task; mlm: mask_id and the comma-separated
 * specials checked against vocab (a bad one is an error naming the flag). */
int eb_init(enc_batch *b, int B, int T, model_task task, long mask_id, const char *specials,
            int vocab, uint64_t seed, pl_err *e);
void eb_free(enc_batch *b);

/* Rows of global entries first .. first+B-1 in the training order; order
 * (may be NULL) gets "step epoch entry" per row.  Returns the targets that
 * count (labels, or masked positions). */
long eb_fill(enc_batch *b, dataset *d, uint64_t first, long step, FILE *order);
/* Rows of entries k0 .. k0+B-1 in file order (evaluation); entries >= n are
 * empty rows (one padding token, no target). */
long eb_fill_ordered(enc_batch *b, const dataset *d, size_t k0, size_t n);

#endif
