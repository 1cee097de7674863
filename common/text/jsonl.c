/* jsonl.c - JSON Lines input (see jsonl.h). */
#include "jsonl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

int jsonl_open(jsonl_reader *r, const char *path, pl_err *e)
{
    size_t len;
    memset(r, 0, sizeof *r);
    char *buf = pl_read_text(path, INT32_MAX, &len, e);
    if (!buf)
        return -1;
    jsonl_from_buffer(r, buf, len, path);
    r->own = buf;
    return 0;
}

void jsonl_from_buffer(jsonl_reader *r, const char *buf, size_t len, const char *name)
{
    memset(r, 0, sizeof *r);
    r->name = name, r->buf = buf, r->len = len;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\f\v", s[i]))
            return 0;
    return 1;
}

int jsonl_next(jsonl_reader *r, pl_err *e)
{
    cJSON_Delete(r->obj);
    r->obj = NULL;
    while (r->pos < r->len) {
        const char *a = r->buf + r->pos, *nl = memchr(a, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - a) : r->len - r->pos;
        r->pos += n + (nl != NULL);
        r->line++;
        if (blank(a, n))
            continue;
        const char *end = NULL;
        r->obj = cJSON_ParseWithLengthOpts(a, n, &end, 0);
        if (!r->obj)
            return pl_errf(e, "%s:%ld: not valid JSON (at byte %ld of the line)", r->name,
                           r->line, (long)(end ? end - a + 1 : 0));
        if (end && !blank(end, n - (size_t)(end - a)))
            return pl_errf(e, "%s:%ld: text after the JSON value", r->name, r->line);
        if (!cJSON_IsObject(r->obj))
            return pl_errf(e, "%s:%ld: not a JSON object", r->name, r->line);
        return 1;
    }
    return 0;
}

void jsonl_close(jsonl_reader *r)
{
    cJSON_Delete(r->obj);
    free(r->own);
    memset(r, 0, sizeof *r);
}

int jsonl_string(const jsonl_reader *r, const char *key, const char **s, size_t *len, pl_err *e)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    if (!v)
        return pl_errf(e, "%s:%ld: missing field \"%s\"", r->name, r->line, key);
    if (!cJSON_IsString(v))
        return pl_errf(e, "%s:%ld: field \"%s\" is not a string", r->name, r->line, key);
    *s = v->valuestring;
    *len = strlen(v->valuestring);
    return 0;
}

int jsonl_has(const jsonl_reader *r, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->obj, key);
    return v && !cJSON_IsNull(v);
}
