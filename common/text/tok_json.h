/* tok_json.h - builds a tokenizer from a parsed tokenizer.json tree
 * (tok_json.c): every component by type, Sequences flattened, and the
 * refusals, each naming the JSON path. */
#ifndef PSLORA_TOK_JSON_H
#define PSLORA_TOK_JSON_H

#include <cjson/cJSON.h>

#include "tok_impl.h"

/* Fills t (zeroed, label set) from root.  0, or -1 with one line in e. */
int tok_from_json(tokenizer *t, const cJSON *root, pl_err *e);

#endif
