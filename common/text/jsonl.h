/* jsonl.h - JSON Lines input: one JSON object per line, read in order.
 *
 * Lines holding only whitespace are skipped (an editor's trailing newline);
 * every other line must be one JSON object.  Errors name the file and the
 * line number (1-based): "train.jsonl:12: not valid JSON". */
#ifndef PSLORA_JSONL_H
#define PSLORA_JSONL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "err.h"

typedef struct {
    const char *name;   /* the file, in messages */
    char *own;          /* the file's bytes when jsonl_open read them */
    const char *buf;
    size_t len, pos;
    long line;          /* of the current object */
    cJSON *obj;         /* the current object (owned) */
} jsonl_reader;

/* Reads the whole file (at most 2^31 bytes). */
int jsonl_open(jsonl_reader *r, const char *path, pl_err *e);
/* Reads from a caller's buffer, which must outlive r. */
void jsonl_from_buffer(jsonl_reader *r, const char *buf, size_t len, const char *name);
/* The next object into r->obj: 1, 0 at the end, -1 (+ e) on a bad line. */
int jsonl_next(jsonl_reader *r, pl_err *e);
void jsonl_close(jsonl_reader *r);

/* Field `key` of the current object as a string: 0, or -1 naming the line
 * when it is missing or not a string.  *s stays owned by r->obj. */
int jsonl_string(const jsonl_reader *r, const char *key, const char **s, size_t *len, pl_err *e);
/* 1 when the current object has `key` (and it is not null). */
int jsonl_has(const jsonl_reader *r, const char *key);

#endif
