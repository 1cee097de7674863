/* hf_files.h - the safetensors files of a Hugging Face model directory.
 *
 * DIR/model.safetensors, or the shards named by
 * DIR/model.safetensors.index.json: {"weight_map": {tensor: file, ...}}.
 * The one reader of that index for loading, merging and inspecting.  It
 * checks what each of them relies on: a weight_map object with entries;
 * every value a plain file name in DIR (not empty, no '/', not "." or
 * ".."); every shard opens as safetensors (st_open's checks) and holds each
 * tensor the map assigns to it. */
#ifndef PSLORA_HF_FILES_H
#define PSLORA_HF_FILES_H

#include <stddef.h>

#include "err.h"
#include "safetensors.h"

#define HF_INDEX_NAME "model.safetensors.index.json"

typedef struct {
    int n;               /* files opened */
    char **names;        /* their names inside the directory, first mention first */
    st_file *files;
    char *index_text;    /* the index's bytes when sharded (copied byte for byte by merge) */
    size_t index_len;
    int n_mapped;        /* tensors in the weight_map (0 when not sharded) */
} hf_files;

/* Opens the files of DIR; on failure nothing stays open and e names the
 * file and the problem. */
int hf_files_open(hf_files *f, const char *dir, pl_err *e);
/* The tensor called name in any of the files (*file: which), or NULL. */
const st_tensor *hf_files_find(const hf_files *f, const char *name, int *file);
/* st_drop_pages on whichever file maps [p, p+n). */
void hf_files_drop_pages(const hf_files *f, const void *p, size_t n);
void hf_files_close(hf_files *f);

struct cJSON;
/* A directory's JSON file (config.json, adapter_config.json...) of at most
 * max_bytes parsed; NULL with e naming the file when it is missing, too big
 * or not a JSON object.  cJSON_Delete it. */
#define HF_JSON_MAX ((size_t)1 << 20)
struct cJSON *hf_read_json_object(const char *path, size_t max_bytes, pl_err *e);

#endif
