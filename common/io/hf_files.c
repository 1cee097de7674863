/* hf_files.c - a model directory's safetensors files (see hf_files.h). */
#include "hf_files.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define HF_INDEX_MAX (64u << 20)

/* DIR/NAME into buf [4096]; -1 (+ e) when the path does not fit. */
static int join(char *buf, const char *dir, const char *name, pl_err *e)
{
    if (snprintf(buf, 4096, "%s/%s", dir, name) >= 4096)
        return pl_errf(e, "%s: path too long", dir);
    return 0;
}

static int is_file_name(const char *s)
{
    return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Appends name unless listed; -1 when out of memory. */
static int add_name(hf_files *f, int *count, const char *name)
{
    for (int k = 0; k < *count; k++)
        if (strcmp(f->names[k], name) == 0)
            return 0;
    f->names[*count] = strdup(name);
    if (!f->names[*count])
        return -1;
    (*count)++;
    return 0;
}

/* The distinct file names of the index's weight_map, validated. */
cJSON *hf_read_json_object(const char *path, size_t max_bytes, pl_err *e)
{
    size_t len;
    char *text = pl_read_text(path, max_bytes, &len, e);
    if (!text)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        pl_errf(e, "%s: not a JSON object", path);
        return NULL;
    }
    return j;
}

static int read_index(hf_files *f, const char *path, const cJSON *map, int *count, pl_err *e)
{
    if (!cJSON_IsObject(map) || !map->child)
        return pl_errf(e, "%s: no weight_map object with entries", path);
    f->names = calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof *f->names);
    if (!f->names)
        return pl_errf(e, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
    {
        if (!cJSON_IsString(it) || !is_file_name(it->valuestring))
            return pl_errf(e, "%s: weight_map entry %s is not a file name", path, it->string);
        if (add_name(f, count, it->valuestring) != 0)
            return pl_errf(e, "%s: out of memory", path);
        f->n_mapped++;
    }
    return 0;
}

/* Every tensor the map assigns to file k is in it. */
static int check_mapped(const hf_files *f, const char *path, const cJSON *map, int k, pl_err *e)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, map)
    {
        if (strcmp(it->valuestring, f->names[k]) == 0 && !st_find(&f->files[k], it->string))
            return pl_errf(e, "%s: tensor '%s' is not in %s", path, it->string, f->names[k]);
    }
    return 0;
}

static int open_all(hf_files *f, const char *dir, const char *index, const cJSON *map, int count,
                    pl_err *e)
{
    f->files = calloc((size_t)count, sizeof *f->files);
    if (!f->files)
        return pl_errf(e, "%s: out of memory", dir);
    char path[4096];
    for (int k = 0; k < count; k++) {
        if (join(path, dir, f->names[k], e) != 0 || st_open(&f->files[k], path, e) != 0)
            return -1;
        f->n = k + 1;
        if (map && check_mapped(f, index, map, k, e) != 0)
            return -1;
    }
    return 0;
}

int hf_files_open(hf_files *f, const char *dir, pl_err *e)
{
    memset(f, 0, sizeof *f);
    char index[4096];
    int count = 0, rc;
    if (join(index, dir, HF_INDEX_NAME, e) != 0)
        return -1;
    if (!pl_file_exists(index)) {
        f->names = calloc(2, sizeof *f->names);
        rc = f->names && add_name(f, &count, "model.safetensors") == 0
                 ? open_all(f, dir, NULL, NULL, count, e)
                 : pl_errf(e, "%s: out of memory", dir);
    } else {
        f->index_text = pl_read_text(index, HF_INDEX_MAX, &f->index_len, e);
        cJSON *j = f->index_text ? cJSON_Parse(f->index_text) : NULL;
        const cJSON *map = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
        rc = !f->index_text ? -1
             : !j           ? pl_errf(e, "%s: not valid JSON", index)
                            : read_index(f, index, map, &count, e);
        if (rc == 0)
            rc = open_all(f, dir, index, map, count, e);
        cJSON_Delete(j);
    }
    if (rc != 0)
        hf_files_close(f);
    return rc;
}

const st_tensor *hf_files_find(const hf_files *f, const char *name, int *file)
{
    for (int k = 0; k < f->n; k++) {
        const st_tensor *t = st_find(&f->files[k], name);
        if (t) {
            *file = k;
            return t;
        }
    }
    return NULL;
}

void hf_files_close(hf_files *f)
{
    for (int k = 0; k < f->n; k++)
        st_close(&f->files[k]);
    for (int k = 0; f->names && f->names[k]; k++)
        free(f->names[k]);
    free(f->names);
    free(f->files);
    free(f->index_text);
    memset(f, 0, sizeof *f);
}

void hf_files_drop_pages(const hf_files *f, const void *p, size_t n)
{
    for (int i = 0; i < f->n; i++)
        st_drop_pages(&f->files[i], p, n);
}
