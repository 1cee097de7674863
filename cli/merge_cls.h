/* merge_cls.h - what `pslora merge` does for a BERT classification adapter
 * besides folding LoRA: the adapter's trained classifier (PEFT's
 * modules_to_save) becomes the merged checkpoint's classifier.weight /
 * classifier.bias, replacing the base's (in the base's dtype) or added as
 * F32 to the first file (and to the index when sharded), and config.json
 * names BertForSequenceClassification with that many labels. */
#ifndef PSLORA_MERGE_CLS_H
#define PSLORA_MERGE_CLS_H

#include "hf_files.h"
#include "lora.h"
#include "safetensors.h"

/* For a bert model whose adapter holds a classifier: c's task becomes cls
 * with num_labels (0: the config's), so that lora_load_peft reads it. */
int mc_prepare(model_config *c, const char *adapter, long num_labels, pl_err *e);

/* The classifier tensors of file k, for merge_write_file: entries whose
 * name is classifier.weight / .bias get the adapter's values in their own
 * dtype (after a shape check); when the base has none and k == 0, two F32
 * entries are appended at ent[*n], ent[*n + 1].  Buffers go to owned[0..2)
 * (free them).  Nothing when L has no classifier. */
int mc_entries(const hf_files *s, int k, const lora_layout *L, const float *p, st_entry *ent,
               int *n, void **owned, pl_err *e);

/* The index JSON (sharded base without a classifier: its two keys added to
 * the first file) and config.json for the output, both malloc'd text;
 * *index NULL when the base's index is copied as it is. */
int mc_index(const hf_files *s, const lora_layout *L, char **index, pl_err *e);
int mc_config(const char *model_dir, const lora_layout *L, char **config, pl_err *e);

#endif
