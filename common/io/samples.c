/* samples.c - the sample sidecar of a token shard (see samples.h for the
 * format and what a reader checks). */
#include "samples.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define HDR_BYTES (SAMPLES_HEADER_INTS * 4)

/* Little-endian from and to bytes that need not be aligned. */
static uint32_t get_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void put_u32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

static int32_t get_i32(const unsigned char *b)
{
    uint32_t u = get_u32(b);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static const char *kind_name(int kind)
{
    static const char *const names[] = {"text", "prompt-completion", "classification"};
    return kind >= 0 && kind <= 2 ? names[kind] : "?";
}

/* The header's fields: h[0..SAMPLES_HEADER_INTS). */
static int check_header(const int32_t *h, const char *name, pl_err *e)
{
    if (h[0] != SAMPLES_MAGIC)
        return pl_errf(e, "%s: bad magic %d (expected %d): not a pslora samples file", name,
                       (int)h[0], SAMPLES_MAGIC);
    if (h[1] != SAMPLES_VERSION)
        return pl_errf(e, "%s: unsupported version %d (expected %d)", name, (int)h[1],
                       SAMPLES_VERSION);
    if (h[2] < 0)
        return pl_errf(e, "%s: negative token count %d", name, (int)h[2]);
    if (h[3] < 1)
        return pl_errf(e, "%s: sample count %d (expected >= 1)", name, (int)h[3]);
    if (h[3] > h[2])
        return pl_errf(e, "%s: %d samples cannot fit in %d tokens", name, (int)h[3], (int)h[2]);
    if (h[4] < 0 || h[4] > 2)
        return pl_errf(e, "%s: unknown kind %d (expected 0, 1 or 2)", name, (int)h[4]);
    if (h[5] != 0 && h[5] != 1)
        return pl_errf(e, "%s: has_mask is %d (expected 0 or 1)", name, (int)h[5]);
    if (h[4] == SAMPLES_PROMPT_COMPLETION && h[5] != 1)
        return pl_errf(e, "%s: prompt-completion samples without a loss mask", name);
    if (h[4] == SAMPLES_CLASSIFICATION ? h[6] < 1 : h[6] != 0)
        return pl_errf(e, "%s: %d labels for %s samples (expected %s)", name, (int)h[6],
                       kind_name(h[4]), h[4] == SAMPLES_CLASSIFICATION ? ">= 1" : "0");
    for (int i = 7; i < SAMPLES_HEADER_INTS; i++)
        if (h[i] != 0)
            return pl_errf(e, "%s: header int %d is %d (reserved, expected 0)", name, i,
                           (int)h[i]);
    return 0;
}

/* Bytes the parts after the header take. */
static size_t body_bytes(const samples_file *s)
{
    return (s->n_samples + 1) * 4 + (s->mask ? s->n_tokens : 0) +
           (s->n_labels ? s->n_samples * 4 : 0);
}

/* Offsets increasing from 0 to n_tokens, mask bytes 0/1, labels in range. */
static int check_body(const samples_file *s, const char *name, pl_err *e)
{
    if (s->off[0] != 0)
        return pl_errf(e, "%s: first offset is %u (expected 0)", name, s->off[0]);
    for (size_t i = 0; i < s->n_samples; i++)
        if (s->off[i + 1] <= s->off[i])
            return pl_errf(e, "%s: offset %zu (%u) is not above offset %zu (%u): empty or "
                           "reversed sample", name, i + 1, s->off[i + 1], i, s->off[i]);
    if (s->off[s->n_samples] != s->n_tokens)
        return pl_errf(e, "%s: last offset is %u but the file counts %zu tokens", name,
                       s->off[s->n_samples], s->n_tokens);
    for (size_t j = 0; s->mask && j < s->n_tokens; j++)
        if (s->mask[j] > 1)
            return pl_errf(e, "%s: mask byte %zu is %u (expected 0 or 1)", name, j, s->mask[j]);
    for (size_t i = 0; s->labels && i < s->n_samples; i++)
        if (s->labels[i] < 0 || s->labels[i] >= s->n_labels)
            return pl_errf(e, "%s: label of sample %zu is %d, outside [0, %d)", name, i,
                           (int)s->labels[i], s->n_labels);
    return 0;
}

static int alloc_arrays(samples_file *s, int has_mask, const char *name, pl_err *e)
{
    s->off = malloc((s->n_samples + 1) * sizeof *s->off);
    s->mask = has_mask ? malloc(s->n_tokens ? s->n_tokens : 1) : NULL;
    s->labels = s->n_labels ? malloc(s->n_samples * sizeof *s->labels) : NULL;
    if (!s->off || (has_mask && !s->mask) || (s->n_labels && !s->labels))
        return pl_errf(e, "%s: out of memory", name);
    return 0;
}

/* Copies the body after a checked header out of b. */
static void copy_body(samples_file *s, const unsigned char *b)
{
    for (size_t i = 0; i <= s->n_samples; i++, b += 4)
        s->off[i] = get_u32(b);
    if (s->mask) {
        memcpy(s->mask, b, s->n_tokens);
        b += s->n_tokens;
    }
    for (size_t i = 0; s->labels && i < s->n_samples; i++, b += 4)
        s->labels[i] = get_i32(b);
}

int samples_parse(samples_file *s, const void *buf, size_t size, const char *name, pl_err *e)
{
    memset(s, 0, sizeof *s);
    if (size < HDR_BYTES)
        return pl_errf(e, "%s: file is %zu bytes, shorter than the %d-byte samples header", name,
                       size, HDR_BYTES);
    const unsigned char *b = buf;
    int32_t h[SAMPLES_HEADER_INTS];
    for (int i = 0; i < SAMPLES_HEADER_INTS; i++)
        h[i] = get_i32(b + 4 * i);
    if (check_header(h, name, e) != 0)
        return -1;
    samples_file t = {(samples_kind)h[4], (size_t)h[2], (size_t)h[3], (int)h[6], NULL, NULL, NULL};
    size_t want = HDR_BYTES + (t.n_samples + 1) * 4 + (h[5] ? t.n_tokens : 0) +
                  (t.n_labels ? t.n_samples * 4 : 0);
    if (size != want)
        return pl_errf(e, "%s: file is %zu bytes but its header (%zu tokens, %zu samples%s%s) "
                       "needs %zu", name, size, t.n_tokens, t.n_samples, h[5] ? ", mask" : "",
                       t.n_labels ? ", labels" : "", want);
    if (alloc_arrays(&t, h[5], name, e) != 0 || (copy_body(&t, b + HDR_BYTES), 0) ||
        check_body(&t, name, e) != 0) {
        samples_free(&t);
        return -1;
    }
    *s = t;
    return 0;
}

int samples_read(samples_file *s, const char *path, pl_err *e)
{
    size_t len;
    memset(s, 0, sizeof *s);
    /* 2^31 tokens of mask plus offsets and labels at most */
    char *buf = pl_read_text(path, (size_t)1 << 34, &len, e);
    if (!buf)
        return -1;
    int rc = samples_parse(s, buf, len, path, e);
    free(buf);
    return rc;
}

int samples_check_shard(const samples_file *s, const char *path, size_t shard_ntok,
                        const char *shard_path, pl_err *e)
{
    if (s->n_tokens != shard_ntok)
        return pl_errf(e, "%s: counts %zu tokens but its shard %s has %zu", path, s->n_tokens,
                       shard_path, shard_ntok);
    return 0;
}

int samples_write(const char *path, const samples_file *s, pl_err *e)
{
    int32_t h[SAMPLES_HEADER_INTS] = {SAMPLES_MAGIC, SAMPLES_VERSION, (int32_t)s->n_tokens,
                                      (int32_t)s->n_samples, (int32_t)s->kind, s->mask != NULL,
                                      s->n_labels};
    if (s->n_tokens > INT32_MAX || s->n_samples > INT32_MAX)
        return pl_errf(e, "%s: %zu tokens / %zu samples do not fit the header", path,
                       s->n_tokens, s->n_samples);
    if (check_header(h, path, e) != 0)
        return -1;
    if (!s->labels != !s->n_labels)
        return pl_errf(e, "%s: %d labels but %s label array", path, s->n_labels,
                       s->labels ? "a" : "no");
    if (check_body(s, path, e) != 0)
        return -1;
    size_t len = HDR_BYTES + body_bytes(s);
    unsigned char *buf = malloc(len), *b = buf + HDR_BYTES;
    if (!buf)
        return pl_errf(e, "%s: out of memory for %zu bytes", path, len);
    for (int i = 0; i < SAMPLES_HEADER_INTS; i++)
        put_u32(buf + 4 * i, (uint32_t)h[i]);
    for (size_t i = 0; i <= s->n_samples; i++, b += 4)
        put_u32(b, s->off[i]);
    if (s->mask) {
        memcpy(b, s->mask, s->n_tokens);
        b += s->n_tokens;
    }
    for (size_t i = 0; s->labels && i < s->n_samples; i++, b += 4)
        put_u32(b, (uint32_t)s->labels[i]);
    int rc = pl_write_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

void samples_free(samples_file *s)
{
    free(s->off);
    free(s->mask);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

char *samples_path(const char *shard_path)
{
    size_t len = strlen(shard_path) + sizeof SAMPLES_SUFFIX;
    char *p = malloc(len);
    if (p)
        snprintf(p, len, "%s%s", shard_path, SAMPLES_SUFFIX);
    return p;
}

size_t samples_counted(const samples_file *s, size_t i)
{
    size_t a = s->off[i] + 1, b = s->off[i + 1], n = 0;
    if (!s->mask)
        return b - a;
    for (size_t j = a; j < b; j++)
        n += s->mask[j];
    return n;
}
