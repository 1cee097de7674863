/* shard.c - llm.c token shards and the token stream over a list of them
 * (see shard.h for the format and the stream's order). */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)

/* Little-endian loads from unaligned bytes: the format is little-endian and
 * a caller's buffer (the fuzzer's, say) need not be aligned. */
static uint32_t load_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int32_t load_i32(const unsigned char *b)
{
    uint32_t u = load_u32(b);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void store_i32(unsigned char *b, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(u >> (8 * i));
}

/* Token i of the shard: uint16 (version 1) or uint32 (version 7). */
uint32_t shard_token(const shard_file *s, size_t i)
{
    const unsigned char *b = (const unsigned char *)s->tokens + i * (size_t)s->tok_bytes;
    if (s->tok_bytes == 2)
        return (uint32_t)b[0] | (uint32_t)b[1] << 8;
    return load_u32(b);
}

/* Maps the magic/version pair to the token width; -1 + error otherwise. */
static int shard_tok_bytes(const char *name, int32_t magic, int32_t version, pl_err *e)
{
    if (magic == SHARD_MAGIC_U16) {
        if (version != 1)
            return pl_errf(e, "%s: bad version %d for magic %d (expected 1)", name, (int)version,
                           (int)magic);
        return 2;
    }
    if (magic == SHARD_MAGIC_U32) {
        if (version != 7)
            return pl_errf(e, "%s: bad version %d for magic %d (expected 7)", name, (int)version,
                           (int)magic);
        return 4;
    }
    return pl_errf(e, "%s: bad magic %d (expected %d or %d): not an llm.c token shard", name,
                   (int)magic, SHARD_MAGIC_U16, SHARD_MAGIC_U32);
}

/* Validates a shard image of `size` bytes: header, then exactly
 * count x tok_bytes bytes of tokens.  On failure *s is left zeroed. */
int shard_parse(shard_file *s, const void *buf, size_t size, const char *name, pl_err *e)
{
    memset(s, 0, sizeof *s);
    if (size < SHARD_HEADER_BYTES)
        return pl_errf(e, "%s: file is %zu bytes, shorter than the %d-byte shard header", name,
                       size, SHARD_HEADER_BYTES);
    const unsigned char *b = buf;
    int32_t magic = load_i32(b), version = load_i32(b + 4), count = load_i32(b + 8);
    int tb = shard_tok_bytes(name, magic, version, e);
    if (tb < 0)
        return -1;
    if (count < 0)
        return pl_errf(e, "%s: negative token count %d in header", name, (int)count);
    /* count < 2^31 and tb <= 4, but check rather than rely on size_t's width. */
    size_t ntok = (size_t)count;
    if (ntok > (SIZE_MAX - SHARD_HEADER_BYTES) / (size_t)tb)
        return pl_errf(e, "%s: header token count %zu overflows the file size", name, ntok);
    size_t want = SHARD_HEADER_BYTES + ntok * (size_t)tb;
    if (size < want)
        return pl_errf(e, "%s: truncated: header says %zu tokens (%zu bytes) but file has %zu",
                       name, ntok, want, size);
    if (size > want)
        return pl_errf(e, "%s: %zu trailing bytes: header says %zu tokens (%zu bytes) but file "
                       "has %zu", name, size - want, ntok, want, size);
    s->path = strdup(name);
    if (!s->path)
        return pl_errf(e, "%s: out of memory", name);
    s->version = version;
    s->tok_bytes = tb;
    s->ntok = ntok;
    s->tokens = b + SHARD_HEADER_BYTES;
    return 0;
}

/* Maps path read-only and validates it; the mapping lives until shard_close. */
int shard_open(shard_file *s, const char *path, pl_err *e)
{
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return pl_errf(e, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pl_errf(e, "%s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < SHARD_HEADER_BYTES) {   /* also keeps mmap away from empty files */
        close(fd);
        return pl_errf(e, "%s: file is %zu bytes, shorter than the %d-byte shard header", path,
                       size, SHARD_HEADER_BYTES);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return pl_errf(e, "%s: mmap: %s", path, strerror(map_errno));
    if (shard_parse(s, map, size, path, e) != 0) {
        munmap(map, size);
        return -1;
    }
    s->map = map;
    s->map_size = size;
    return 0;
}

void shard_close(shard_file *s)
{
    if (s->map)
        munmap(s->map, s->map_size);
    free(s->path);
    memset(s, 0, sizeof *s);
}

/* Header + tokens as version 1 (all < 65536 and !force_u32) or version 7. */
int shard_write(const char *path, const uint32_t *tokens, size_t n, int force_u32, pl_err *e)
{
    if (n > INT32_MAX)
        return pl_errf(e, "%s: %zu tokens do not fit the shard header's int32 count", path, n);
    int wide = force_u32;
    for (size_t i = 0; i < n && !wide; i++)
        wide = tokens[i] > 0xFFFF;
    size_t tb = wide ? 4 : 2, len = SHARD_HEADER_BYTES + n * tb;
    unsigned char *buf = calloc(1, len);
    if (!buf)
        return pl_errf(e, "%s: out of memory for %zu bytes", path, len);
    store_i32(buf, wide ? SHARD_MAGIC_U32 : SHARD_MAGIC_U16);
    store_i32(buf + 4, wide ? 7 : 1);
    store_i32(buf + 8, (int32_t)n);
    unsigned char *t = buf + SHARD_HEADER_BYTES;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < tb; k++)
            t[i * tb + k] = (unsigned char)(tokens[i] >> (8 * k));
    int rc = pl_write_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

/* The first token >= vocab in s, reported with its file and position
 * (vocab UINT32_MAX: no check, for callers that only count). */
static int shard_check_vocab(const shard_file *s, uint32_t vocab, pl_err *e)
{
    if (vocab == UINT32_MAX)
        return 0;
    for (size_t i = 0; i < s->ntok; i++) {
        uint32_t t = shard_token(s, i);
        if (t >= vocab)
            return pl_errf(e, "%s: token %u at position %zu is out of range (vocab %u)", s->path,
                           t, i, vocab);
    }
    return 0;
}

/* Number of comma-separated entries in list. */
static int count_entries(const char *list)
{
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* Opens entry i (list[a..b)) of the list into d->files[i]. */
static int shard_set_open_one(shard_set *d, int i, const char *list, const char *a, size_t len,
                              uint32_t vocab, pl_err *e)
{
    if (len == 0)
        return pl_errf(e, "shard list '%s': entry %d is an empty path", list, i + 1);
    char *path = strndup(a, len);
    if (!path)
        return pl_errf(e, "shard list '%s': out of memory", list);
    int rc = shard_open(&d->files[i], path, e);
    free(path);
    if (rc != 0)
        return -1;
    d->n = i + 1;
    return shard_check_vocab(&d->files[i], vocab, e);
}

/* Opens every shard of "a.bin,b.bin,...", checks the tokens against vocab and
 * lays the files end to end as one stream.  On failure d is left closed. */
int shard_set_open(shard_set *d, const char *list, uint32_t vocab, pl_err *e)
{
    memset(d, 0, sizeof *d);
    if (!list || !*list)
        return pl_errf(e, "empty shard list");
    int n = count_entries(list);
    d->files = calloc((size_t)n, sizeof *d->files);
    d->start = calloc((size_t)n, sizeof *d->start);
    if (!d->files || !d->start) {
        shard_set_close(d);
        return pl_errf(e, "shard list '%s': out of memory", list);
    }
    const char *a = list;
    for (int i = 0; i < n; i++) {
        const char *comma = strchr(a, ',');
        size_t len = comma ? (size_t)(comma - a) : strlen(a);
        if (shard_set_open_one(d, i, list, a, len, vocab, e) != 0) {
            shard_set_close(d);
            return -1;
        }
        d->start[i] = d->total;
        d->total += d->files[i].ntok;
        a += len + 1;
    }
    return 0;
}

int shard_set_from_ids(shard_set *d, const uint32_t *ids, size_t n, pl_err *e)
{
    memset(d, 0, sizeof *d);
    d->files = calloc(1, sizeof *d->files);
    d->start = calloc(1, sizeof *d->start);
    if (!d->files || !d->start) {
        shard_set_close(d);
        return pl_errf(e, "out of memory");
    }
    d->n = 1;
    /* little-endian uint32, as the tokens of a version-7 file */
    d->files[0] = (shard_file){.version = 7, .tok_bytes = 4, .ntok = n, .tokens = ids};
    d->total = n;
    return 0;
}

void shard_set_close(shard_set *d)
{
    for (int i = 0; i < d->n; i++)
        shard_close(&d->files[i]);
    free(d->files);
    free(d->start);
    memset(d, 0, sizeof *d);
}

/* Index of the file holding stream position pos (< total): the last file
 * whose start is <= pos.  That file is never empty: an empty file shares its
 * start with the next file, and an empty last file starts at total > pos. */
static int shard_set_find(const shard_set *d, size_t pos)
{
    int lo = 0, hi = d->n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        if (d->start[mid] <= pos)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Stream token pos (0 <= pos < total). */
uint32_t shard_set_token(const shard_set *d, size_t pos)
{
    int f = shard_set_find(d, pos);
    return shard_token(&d->files[f], pos - d->start[f]);
}

/* n_seq = (total - 1) / T: sequences of T+1 tokens starting at multiples of T. */
long shard_set_nseq(const shard_set *d, int T, const char *what, pl_err *e)
{
    if (T < 1)
        return pl_errf(e, "%s: sequence length %d must be >= 1", what, T);
    if (d->total < (size_t)T + 1)
        return pl_errf(e, "%s: %zu tokens is fewer than seq+1 = %ld", what, d->total,
                       (long)T + 1);
    return (long)((d->total - 1) / (size_t)T);
}

/* inp[j] = stream[b + j], tgt[j] = stream[b + j + 1] for j < T, with
 * b = (k mod n_seq) * T; b + T <= total - 1 so no read passes the end.
 * Walks the files from the one holding b instead of searching per token.
 * Precondition: shard_set_nseq(d, T, ...) succeeded (n_seq >= 1). */
void shard_set_sequence(const shard_set *d, uint64_t k, int T, int32_t *inp, int32_t *tgt)
{
    size_t nseq = (d->total - 1) / (size_t)T;
    size_t pos = (size_t)(k % nseq) * (size_t)T;
    int f = shard_set_find(d, pos);
    size_t off = pos - d->start[f];
    for (int j = 0; j <= T; j++) {
        while (off >= d->files[f].ntok) {   /* skips empty files too */
            off = 0;
            f++;
        }
        int32_t t = (int32_t)shard_token(&d->files[f], off++);
        if (j < T)
            inp[j] = t;
        if (j > 0)
            tgt[j - 1] = t;
    }
}
