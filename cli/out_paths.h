/* out_paths.h - the output paths of `pslora tokenize`: the validation part's
 * name and the check that --out can be written. */
#ifndef PSLORA_OUT_PATHS_H
#define PSLORA_OUT_PATHS_H

#include "err.h"

/* OUT with "_val" inserted before the extension of its last path component
 * (a leading dot does not start an extension): data.bin -> data_val.bin,
 * data -> data_val.  Heap string or NULL. */
char *cli_val_path(const char *out);
/* --out must name a file in an existing directory: pl_write_atomic's own
 * message would name its temporary file instead. */
int cli_check_out(const char *out, pl_err *e);

#endif
