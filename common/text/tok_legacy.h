/* tok_legacy.h - the tokenizer files that predate tokenizer.json, read into
 * the tokenizer.json tree Hugging Face would write for them (tok_legacy.c). */
#ifndef PSLORA_TOK_LEGACY_H
#define PSLORA_TOK_LEGACY_H

#include <cjson/cJSON.h>

#include "err.h"

/* GPT-2: dir/vocab.json + dir/merges.txt.  NULL with one line in e. */
cJSON *tok_legacy_gpt2(const char *dir, pl_err *e);
/* BERT: dir/vocab.txt (+ dir/tokenizer_config.json).  NULL with one line in e. */
cJSON *tok_legacy_bert(const char *dir, pl_err *e);

#endif
