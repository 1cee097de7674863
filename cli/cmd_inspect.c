/* cmd_inspect.c - `pslora inspect FILE_OR_DIR`: what is in a model, adapter,
 * checkpoint or token file.
 *
 *   FILE.safetensors   header: tensors (name, dtype, shape, bytes), metadata,
 *                      total parameters
 *   token shard        llm.c header and token statistics (detected by the
 *                      int32 magic at offset 0)
 *   tokenizer.json     the tokenizer: model, vocabulary size, special tokens,
 *                      normalizer / pre-tokenizer / post-processor / decoder
 *   DIR                config.json / adapter_config.json / trainer_state.json
 *                      fields, the shard index if any, then every
 *                      *.safetensors file in it (model, shards, adapter,
 *                      optimizer state) as above, then its tokenizer.json */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "err.h"
#include "file.h"
#include "flags.h"
#include "hf_files.h"
#include "safetensors.h"
#include "shard.h"
#include "tokenizer.h"

#define INSPECT_JSON_MAX (64u << 20)   /* index files of big models are a few MB */

static const char *const config_keys[] = {
    "model_type", "architectures", "torch_dtype", "vocab_size", "n_positions", "n_ctx",
    "n_embd", "n_layer", "n_head", "n_inner", "layer_norm_epsilon", "hidden_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", NULL};

static const char *const adapter_keys[] = {
    "peft_type", "base_model_name_or_path", "task_type", "r", "lora_alpha", "lora_dropout",
    "target_modules", "fan_in_fan_out", "bias", "use_rslora", "inference_mode", NULL};

/* "[768, 2304]" */
static void print_shape(const st_tensor *t, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

/* One safetensors file: a summary line, the metadata, then one line per
 * tensor in data order. */
static int inspect_safetensors(const char *path, pl_err *e)
{
    st_file f;
    if (st_open(&f, path, e) != 0)
        return -1;
    size_t params = 0, bytes = 0;
    int width = 4;
    for (int i = 0; i < f.n; i++) {
        params += f.t[i].numel;
        bytes += f.t[i].nbytes;
        int len = (int)strlen(f.t[i].name);
        width = len > width ? (len < 72 ? len : 72) : width;
    }
    printf("%s: safetensors, %d tensors, %zu parameters, %zu data bytes, header %zu bytes\n",
           path, f.n, params, bytes, f.map_size - 8 - bytes);
    for (int i = 0; i < f.n_meta; i++)
        printf("  metadata %s = %s\n", f.meta_keys[i], f.meta_vals[i]);
    if (f.n)
        printf("  %-*s  %-5s  %-20s  %s\n", width, "name", "dtype", "shape", "bytes");
    for (int i = 0; i < f.n; i++) {
        char shape[200];
        print_shape(&f.t[i], shape, sizeof shape);
        printf("  %-*s  %-5s  %-20s  %zu\n", width, f.t[i].name, st_dtype_name(f.t[i].dtype),
               shape, f.t[i].nbytes);
    }
    st_close(&f);
    return 0;
}

/* An llm.c token shard: version, token width and count, range, first 16. */
static int inspect_shard(const char *path, pl_err *e)
{
    shard_file s;
    if (shard_open(&s, path, e) != 0)
        return -1;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < s.ntok; i++) {
        uint32_t t = shard_token(&s, i);
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
    }
    printf("%s: llm.c token shard, version %d, %d-byte tokens, %zu tokens\n", path, s.version,
           s.tok_bytes, s.ntok);
    if (s.ntok)
        printf("  min token %u, max token %u\n", lo, hi);
    printf("  first tokens:");
    for (size_t i = 0; i < s.ntok && i < 16; i++)
        printf(" %u", shard_token(&s, i));
    printf("\n");
    shard_close(&s);
    return 0;
}

/* Prints the listed top-level fields of a JSON file (all fields when keys is
 * NULL), each as compact JSON cut to one short line. */
static int inspect_json(const char *path, const char *const *keys, pl_err *e)
{
    cJSON *j = hf_read_json_object(path, INSPECT_JSON_MAX, e);
    if (!j)
        return -1;
    printf("%s:\n", path);
    for (const cJSON *it = j->child; it; it = it->next) {
        int wanted = !keys;
        for (int k = 0; keys && keys[k] && !wanted; k++)
            wanted = strcmp(keys[k], it->string) == 0;
        if (!wanted)
            continue;
        char *v = cJSON_PrintUnformatted(it);
        if (v)
            printf("  %s: %.100s%s\n", it->string, v, strlen(v) > 100 ? "..." : "");
        free(v);
    }
    cJSON_Delete(j);
    return 0;
}

/* model.safetensors.index.json: hf_files_open checks the map and that each
 * shard holds its tensors.  The shards themselves are listed by inspect_dir. */
static int inspect_index(const char *dir, const char *path, pl_err *e)
{
    hf_files f;
    if (hf_files_open(&f, dir, e) != 0)
        return -1;
    printf("%s: %d tensors in %d shard files, all present\n", path, f.n_mapped, f.n);
    hf_files_close(&f);
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int select_safetensors(const struct dirent *d) { return ends_with(d->d_name, ".safetensors"); }

/* A tokenizer.json, or a directory with one, as tok_describe prints it. */
static int inspect_tokenizer(const char *path, pl_err *e)
{
    tokenizer *t;
    if (tok_load(&t, path, e) != 0)
        return -1;
    printf("%s: tokenizer\n", path);
    tok_describe(t, stdout);
    tok_free(t);
    return 0;
}

/* A model, adapter or checkpoint directory. */
static int inspect_dir(const char *dir, pl_err *e)
{
    static const struct {
        const char *file;
        const char *const *keys;
    } jsons[] = {{"config.json", config_keys},
                 {"adapter_config.json", adapter_keys},
                 {"trainer_state.json", NULL}};
    char p[4096];
    int found = 0;
    for (size_t i = 0; i < sizeof jsons / sizeof jsons[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, jsons[i].file);
        if (!pl_file_exists(p))
            continue;
        found++;
        if (inspect_json(p, jsons[i].keys, e) != 0)
            return -1;
    }
    snprintf(p, sizeof p, "%s/%s", dir, HF_INDEX_NAME);
    if (pl_file_exists(p)) {
        found++;
        if (inspect_index(dir, p, e) != 0)
            return -1;
    }
    struct dirent **list;
    int n = scandir(dir, &list, select_safetensors, alphasort);
    if (n < 0)
        return pl_errf(e, "%s: cannot list the directory", dir);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, list[i]->d_name);
        if (rc == 0 && pl_file_exists(p)) {
            found++;
            rc = inspect_safetensors(p, e);
        }
        free(list[i]);
    }
    free(list);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (rc == 0 && pl_file_exists(p)) {
        found++;
        rc = inspect_tokenizer(dir, e);
    }
    if (rc == 0 && !found)
        rc = pl_errf(e, "%s: no config.json, adapter_config.json, model.safetensors.index.json, "
                     "*.safetensors or tokenizer.json in this directory", dir);
    return rc;
}

/* The int32 little-endian magic at offset 0, or 0 when unreadable. */
static int32_t file_magic(const char *path)
{
    unsigned char b[4];
    FILE *fp = fopen(path, "rb");
    size_t got = fp ? fread(b, 1, 4, fp) : 0;
    if (fp)
        fclose(fp);
    if (got != 4)
        return 0;
    return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24);
}

/* A file: a tokenizer when its name ends in .json; a token shard when it
 * starts with a shard magic (unless it then fails as a shard but reads as
 * safetensors), else safetensors. */
static int inspect_file(const char *path, pl_err *e)
{
    if (ends_with(path, ".json"))
        return inspect_tokenizer(path, e);
    int32_t m = file_magic(path);
    if (m == SHARD_MAGIC_U16 || m == SHARD_MAGIC_U32) {
        if (inspect_shard(path, e) == 0)
            return 0;
        pl_err e2;
        st_file f;
        if (st_open(&f, path, &e2) != 0)
            return -1;   /* keep the shard error */
        st_close(&f);
    }
    return inspect_safetensors(path, e);
}

int cmd_inspect(int argc, char **argv)
{
    fl_spec specs[] = {{.name = NULL}};
    const char *target = NULL;
    pl_err e = {{0}};
    int rc = fl_parse("inspect", "FILE_OR_DIR", specs, argc, argv, &target, 1, &e);
    if (rc == 1)
        return 0;
    if (rc == 0 && !target)
        rc = pl_errf(&e, "missing FILE_OR_DIR (see pslora inspect --help)");
    if (rc != 0)
        return cli_fail("inspect", e.msg, 2);
    struct stat sb;
    if (stat(target, &sb) != 0)
        rc = pl_errf(&e, "%s: %s", target, strerror(errno));
    else
        rc = S_ISDIR(sb.st_mode) ? inspect_dir(target, &e) : inspect_file(target, &e);
    fflush(stdout);
    return rc != 0 ? cli_fail("inspect", e.msg, 1) : 0;
}
