/* safetensors.h - read (mmap, read-only) and write safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of UTF-8 JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data buffer.  The reader enforces the
 * reference implementation's rules: N <= 100,000,000 and inside the file;
 * valid UTF-8 JSON object; known dtypes; offsets contiguous from 0 with no gaps
 * or overlaps; each size == elements x dtype size; last end == buffer size;
 * no integer overflow.  Every failure names the file and the problem. */
#ifndef PSLORA_SAFETENSORS_H
#define PSLORA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ULL

typedef enum {
    ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_DTYPE_COUNT
} st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const void *data;  /* points into the mapping */
    size_t nbytes;
} st_tensor;

typedef struct {
    char *path;        /* copy of the name used in messages */
    void *map;         /* mmap of the whole file (NULL for st_parse buffers) */
    size_t map_size;
    int n;
    st_tensor *t;      /* in file order of data offsets */
    int n_meta;
    char **meta_keys, **meta_vals;
} st_file;

/* Maps path read-only and validates it.  On error f is left closed. */
int st_open(st_file *f, const char *path, pl_err *e);
/* Validates an in-memory buffer (fuzzing, tests); data pointers alias buf.
 * name is used in error messages. */
int st_parse(st_file *f, const void *buf, size_t size, const char *name, pl_err *e);
void st_close(st_file *f);
/* Drops the whole pages of [p, p+n) from this process's resident memory
 * when the range lies in f's mapping (nothing otherwise): the file still
 * backs them, so a later read maps them back.  For weights copied out of
 * the mapping once (--full), whose mapped pages would otherwise stay
 * counted in the resident set. */
void st_drop_pages(const st_file *f, const void *p, size_t n);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);

size_t st_dtype_size(st_dtype d);
const char *st_dtype_name(st_dtype d);
int st_dtype_parse(const char *s, st_dtype *out);  /* 0 ok, -1 unknown */

/* Converts n elements of an F32, F16 or BF16 tensor to float. */
void st_to_f32(float *dst, const void *src, st_dtype dtype, size_t n);
/* float -> bf16 / f16 (round to nearest even). */
uint16_t st_f32_to_bf16(float x);
uint16_t st_f32_to_f16(float x);
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;  /* numel x dtype size bytes */
} st_entry;

/* Writes the tensors (sorted by name, as the reference writer does) with the
 * header padded with spaces to a multiple of 8, plus optional metadata given
 * as n_meta key/value pairs.  Atomic: path.tmp, fsync, rename. */
int st_write(const char *path, const st_entry *t, int n, const char *const *meta_keys,
             const char *const *meta_vals, int n_meta, pl_err *e);

#endif
