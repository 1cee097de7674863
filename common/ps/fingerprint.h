/* fingerprint.h - what every rank of a run must agree on, as Hello entries.
 *
 * The model config, a hash of the frozen tensors' names, dtypes and shapes,
 * the adapter layout (r, alpha, rslora, targets, per-tensor sizes) and the
 * training flags that change the result.  msg_hello_compare names the first
 * entry that differs. */
#ifndef PSLORA_FINGERPRINT_H
#define PSLORA_FINGERPRINT_H

#include "lora.h"
#include "model.h"
#include "msg.h"
#include "trainconf.h"

int fp_build(msg_hello *h, const train_config *t, const model *m, const lora_layout *L,
             pl_err *e);

#endif
