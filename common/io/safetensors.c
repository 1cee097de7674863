/* safetensors.c - read (mmap) and write safetensors files (see safetensors.h).
 *
 * Layout of a file: u64 LE header length N | N bytes of JSON | data buffer.
 * The reader validates everything before any data pointer is handed out, so
 * a tensor's [data, data + nbytes) is always inside the buffer. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "file.h"

/* Offsets and dims travel through cJSON as doubles: exact up to 2^53. */
#define ST_MAX_INT (1ULL << 53)

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},   [ST_I8] = {"I8", 1},
    [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I32] = {"I32", 4}, [ST_U32] = {"U32", 4},
    [ST_F32] = {"F32", 4},   [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8},
    [ST_U64] = {"U64", 8},
};

size_t st_dtype_size(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].size : 0; }

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }

int st_dtype_parse(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* ---- small helpers ------------------------------------------------------ */

/* "[2, 3]" for messages. */
static const char *fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

/* Element count of a shape, left-to-right with overflow checks (as the
 * reference's checked product).  -1 on overflow. */
static int shape_numel(int ndim, const int64_t *shape, size_t *numel)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || __builtin_mul_overflow(n, (size_t)shape[i], &n))
            return -1;
    *numel = n;
    return 0;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or code points past
 * U+10FFFF.  Returns the offset of the first bad byte, or len when valid. */
static size_t utf8_check(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint8_t lo = 0x80, hi = 0xBF;   /* allowed range of the 2nd byte */
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0) lo = 0xA0;        /* overlong */
            if (c == 0xED) hi = 0x9F;        /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0) lo = 0x90;        /* overlong */
            if (c == 0xF4) hi = 0x8F;        /* > U+10FFFF */
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_u53(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= (double)ST_MAX_INT) || d != (double)(uint64_t)d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* ---- reader ------------------------------------------------------------- */

/* One tensor entry while parsing: its span in the buffer and the index of
 * its st_tensor. */
typedef struct {
    uint64_t begin, end;
    const char *name;
    int idx;
} st_span;

/* "shape": array of at most ST_MAX_DIMS non-negative integers. */
static int parse_shape(const char *path, const char *name, const cJSON *sh, st_tensor *t,
                       pl_err *e)
{
    if (!cJSON_IsArray(sh))
        return pl_errf(e, "%s: tensor '%s': \"shape\" is not an array", path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return pl_errf(e, "%s: tensor '%s': shape has %d dimensions, at most %d supported",
                       path, name, nd, ST_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (json_u53(d, &v) != 0)
            return pl_errf(e, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                           name, i);
        t->shape[i] = (int64_t)v;
    }
    t->ndim = nd;
    if (shape_numel(nd, t->shape, &t->numel) != 0 ||
        __builtin_mul_overflow(t->numel, st_dtype_size(t->dtype), &t->nbytes)) {
        char sb[200];
        return pl_errf(e, "%s: tensor '%s': %s %s overflows the element count or byte size",
                       path, name, st_dtype_name(t->dtype), fmt_shape(sb, sizeof sb, nd, t->shape));
    }
    return 0;
}

/* "data_offsets": [begin, end], integers with begin <= end and
 * end - begin == numel x dtype size. */
static int parse_offsets(const char *path, const char *name, const cJSON *off,
                         const st_tensor *t, st_span *sp, pl_err *e)
{
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return pl_errf(e, "%s: tensor '%s': \"data_offsets\" is not an array [begin, end]", path,
                       name);
    if (json_u53(off->child, &sp->begin) != 0 || json_u53(off->child->next, &sp->end) != 0)
        return pl_errf(e, "%s: tensor '%s': data_offsets are not integers in [0, 2^53]", path,
                       name);
    if (sp->end < sp->begin)
        return pl_errf(e, "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] end before they begin",
                       path, name, sp->begin, sp->end);
    if (sp->end - sp->begin != t->nbytes) {
        char sb[200];
        return pl_errf(e, "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] but %s %s needs %zu bytes",
                       path, name, sp->begin, sp->end, st_dtype_name(t->dtype),
                       fmt_shape(sb, sizeof sb, t->ndim, t->shape), t->nbytes);
    }
    return 0;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry (other keys ignored,
 * as the reference does). */
static int parse_entry(const char *path, const cJSON *item, st_tensor *t, st_span *sp, pl_err *e)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return pl_errf(e, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!dt || !sh || !off)
        return pl_errf(e, "%s: tensor '%s': missing \"%s\"", path, name,
                       !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt))
        return pl_errf(e, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    if (st_dtype_parse(dt->valuestring, &t->dtype) != 0)
        return pl_errf(e, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);
    if (parse_shape(path, name, sh, t, e) != 0 || parse_offsets(path, name, off, t, sp, e) != 0)
        return -1;
    t->name = strdup(name);
    if (!t->name)
        return pl_errf(e, "%s: out of memory", path);
    sp->name = t->name;
    return 0;
}

/* "__metadata__": an object of string -> string. */
static int parse_meta(st_file *f, const cJSON *m, pl_err *e)
{
    if (!cJSON_IsObject(m))
        return pl_errf(e, "%s: \"__metadata__\" is not an object", f->path);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_vals = calloc((size_t)n + 1, sizeof *f->meta_vals);
    if (!f->meta_keys || !f->meta_vals)
        return pl_errf(e, "%s: out of memory", f->path);
    for (const cJSON *kv = m->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return pl_errf(e, "%s: __metadata__ '%s' is not a string", f->path, kv->string);
        for (int i = 0; i < f->n_meta; i++)
            if (strcmp(f->meta_keys[i], kv->string) == 0)
                return pl_errf(e, "%s: __metadata__ key '%s' given twice", f->path, kv->string);
        f->meta_keys[f->n_meta] = strdup(kv->string);
        f->meta_vals[f->n_meta] = strdup(kv->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1])
            return pl_errf(e, "%s: out of memory", f->path);
    }
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_span *)a)->name, ((const st_span *)b)->name);
}

/* Order by (begin, end), then name, so the result is deterministic. */
static int cmp_span(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* No name twice (cJSON keeps duplicate keys).  Sorts sp by name. */
static int check_duplicates(const char *path, st_span *sp, int n, pl_err *e)
{
    qsort(sp, (size_t)n, sizeof *sp, cmp_name);
    for (int i = 1; i < n; i++)
        if (strcmp(sp[i - 1].name, sp[i].name) == 0)
            return pl_errf(e, "%s: tensor '%s' appears twice in the header", path, sp[i].name);
    return 0;
}

/* Sorted by begin, the spans tile [0, buf_size) exactly.  Sorts sp. */
static int check_layout(const char *path, st_span *sp, int n, uint64_t buf_size, pl_err *e)
{
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        if (sp[i].begin > pos)
            return pl_errf(e, "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] leave a gap "
                           "(previous data ends at byte %" PRIu64 ")",
                           path, sp[i].name, sp[i].begin, sp[i].end, pos);
        if (sp[i].begin < pos)
            return pl_errf(e, "%s: tensor '%s': data_offsets [%" PRIu64 ",%" PRIu64 "] overlap the "
                           "previous data (which ends at byte %" PRIu64 ")",
                           path, sp[i].name, sp[i].begin, sp[i].end, pos);
        pos = sp[i].end;
    }
    if (pos != buf_size)
        return pl_errf(e, "%s: tensors end at byte %" PRIu64 " but the data buffer holds %" PRIu64
                       " bytes", path, pos, buf_size);
    return 0;
}

/* Fills f->t and f->meta_* from the parsed header object; data pointers are
 * set only after the layout is proven. */
static int parse_header(st_file *f, const cJSON *root, const uint8_t *data, uint64_t buf_size,
                        pl_err *e)
{
    int n = 0;
    for (const cJSON *it = root->child; it; it = it->next)
        n += strcmp(it->string, "__metadata__") != 0;
    f->t = calloc((size_t)n + 1, sizeof *f->t);
    st_span *sp = calloc((size_t)n + 1, sizeof *sp);
    if (!f->t || !sp) {
        free(sp);
        return pl_errf(e, "%s: out of memory", f->path);
    }
    int rc = 0, seen_meta = 0;
    for (const cJSON *it = root->child; it && rc == 0; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) {
            rc = seen_meta++ ? pl_errf(e, "%s: \"__metadata__\" appears twice", f->path)
                             : parse_meta(f, it, e);
            continue;
        }
        sp[f->n].idx = f->n;
        rc = parse_entry(f->path, it, &f->t[f->n], &sp[f->n], e);
        f->n++;   /* counted even on failure so st_close frees the name */
    }
    if (rc == 0)
        rc = check_duplicates(f->path, sp, n, e);
    if (rc == 0)
        rc = check_layout(f->path, sp, n, buf_size, e);
    if (rc == 0) {
        /* Reorder the tensors into data-offset order. */
        st_tensor *sorted = calloc((size_t)n + 1, sizeof *sorted);
        if (!sorted) {
            rc = pl_errf(e, "%s: out of memory", f->path);
        } else {
            for (int i = 0; i < n; i++) {
                sorted[i] = f->t[sp[i].idx];
                sorted[i].data = data + sp[i].begin;
            }
            free(f->t);
            f->t = sorted;
        }
    }
    free(sp);
    return rc;
}

/* Checks the 8-byte prefix and header length; sets *hlen. */
static int check_prefix(const char *path, const uint8_t *p, size_t size, uint64_t *hlen, pl_err *e)
{
    if (size == 0)
        return pl_errf(e, "%s: empty file (a safetensors file has at least 8 bytes)", path);
    if (size < 8)
        return pl_errf(e, "%s: file too short (%zu bytes, a safetensors file has at least 8)",
                       path, size);
    uint64_t n = le64(p);
    if (n > ST_MAX_HEADER)
        return pl_errf(e, "%s: header length %" PRIu64 " exceeds the limit of %llu bytes", path, n,
                       ST_MAX_HEADER);
    if (n > size - 8)
        return pl_errf(e, "%s: header length %" PRIu64 " past end of file (%zu bytes)", path, n,
                       size);
    *hlen = n;
    return 0;
}

/* Decodes the header bytes: no NUL, valid UTF-8, one JSON object followed
 * only by whitespace.  Returns the cJSON tree or NULL. */
static cJSON *parse_json(const char *path, const uint8_t *h, size_t n, pl_err *e)
{
    const uint8_t *nul = memchr(h, 0, n);
    if (nul) {
        pl_errf(e, "%s: header contains a NUL byte at offset %zu", path, (size_t)(nul - h));
        return NULL;
    }
    size_t bad = utf8_check(h, n);
    if (bad != n) {
        pl_errf(e, "%s: header is not valid UTF-8 (byte %zu of %zu)", path, bad, n);
        return NULL;
    }
    /* cJSON reads a NUL-terminated copy, so it can never run past the header. */
    char *s = malloc(n + 1);
    if (!s) {
        pl_errf(e, "%s: out of memory for a %zu-byte header", path, n);
        return NULL;
    }
    memcpy(s, h, n);
    s[n] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(s, n + 1, &end, 0);
    if (!root) {
        pl_errf(e, "%s: header is not valid JSON (error near byte %zu)", path,
                end ? (size_t)(end - s) : (size_t)0);
    } else if (end[strspn(end, " \t\r\n")] != 0) {
        pl_errf(e, "%s: header has data after the JSON value (byte %zu)", path,
                (size_t)(end + strspn(end, " \t\r\n") - s));
        cJSON_Delete(root);
        root = NULL;
    } else if (!cJSON_IsObject(root)) {
        pl_errf(e, "%s: header is JSON but not an object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(s);
    return root;
}

/* A tensor name may hold control characters: keep the error on one line. */
static void one_line(pl_err *e)
{
    for (char *c = e ? e->msg : NULL; c && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
}

int st_parse(st_file *f, const void *buf, size_t size, const char *name, pl_err *e)
{
    memset(f, 0, sizeof *f);
    const uint8_t *p = buf;
    uint64_t n = 0;
    if (check_prefix(name, p, size, &n, e) != 0)
        return -1;
    f->path = strdup(name);
    if (!f->path)
        return pl_errf(e, "%s: out of memory", name);
    cJSON *root = parse_json(name, p + 8, (size_t)n, e);
    if (!root) {
        st_close(f);
        return -1;
    }
    int rc = parse_header(f, root, p + 8 + n, size - 8 - n, e);
    cJSON_Delete(root);
    if (rc != 0) {
        st_close(f);
        one_line(e);
    }
    return rc;
}

int st_open(st_file *f, const char *path, pl_err *e)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pl_errf(e, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pl_errf(e, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {   /* mmap of 0 bytes fails; st_parse words the error */
        close(fd);
        return st_parse(f, NULL, size, path, e);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return pl_errf(e, "%s: mmap: %s", path, strerror(errno));
    if (st_parse(f, map, size, path, e) != 0) {
        munmap(map, size);
        return -1;
    }
    f->map = map;
    f->map_size = size;
    return 0;
}

void st_drop_pages(const st_file *f, const void *p, size_t n)
{
    const char *lo = f->map, *hi = lo + f->map_size, *a = p;
    if (!lo || a < lo || a + n > hi)
        return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t first = ((uintptr_t)a + page - 1) / page * page, end = (uintptr_t)(a + n) / page * page;
    if (end > first)   /* a read-only private file mapping: its pages reload from the file */
        madvise((void *)first, end - first, MADV_DONTNEED);
}

void st_close(st_file *f)
{
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    if (f->map)
        munmap(f->map, f->map_size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0)
            return f->meta_vals[i];
    return NULL;
}

/* ---- conversions -------------------------------------------------------- */

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float st_bf16_to_f32(uint16_t h) { return bf16_to_f32(h); }

/* IEEE half: sign | 5-bit exponent (bias 15) | 10-bit mantissa.  Subnormals
 * are m x 2^-24; exponent 31 is inf/nan (payload kept). */
float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t ex = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (ex == 0) {
        float v = (float)m * (1.0f / 16777216.0f);   /* exact: m < 2^10 */
        return sign ? -v : v;
    }
    if (ex == 31)
        return bits_f32(sign | 0x7f800000u | m << 13);
    return bits_f32(sign | (ex + 112) << 23 | m << 13);
}

/* Truncate the low 16 bits with round to nearest even; NaN stays a (quiet) NaN. */
uint16_t st_f32_to_bf16(float x) { return bf16_from_f32(x); }

/* Round-to-nearest-even of (v >> shift), shift >= 1. */
static uint32_t rne_shift(uint32_t v, int shift)
{
    uint32_t r = v >> shift, rem = v & ((1u << shift) - 1), half = 1u << (shift - 1);
    return r + (rem > half || (rem == half && (r & 1)));
}

/* f32 -> f16 with round to nearest even: values >= 65520 become inf, values
 * below 2^-14 become subnormals (m x 2^-24), at most 2^-25 become zero. */
uint16_t st_f32_to_f16(float x)
{
    uint32_t u = f32_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    u &= 0x7fffffffu;
    if (u > 0x7f800000u)
        return sign | 0x7e00;                 /* nan */
    if (u >= 0x477ff000u)
        return sign | 0x7c00;                 /* inf, or rounds up to it */
    if (u < 0x38800000u) {                    /* f16 subnormal or zero */
        if (u <= 0x33000000u)
            return sign;
        uint32_t ex = u >> 23, mant = (u & 0x7fffff) | 0x800000;
        return sign | (uint16_t)rne_shift(mant, (int)(126 - ex));
    }
    /* Normal: rebias the exponent, round the mantissa; a carry rolls into
     * the exponent, which is the correctly rounded result. */
    uint32_t h = ((u >> 23) - 112) << 10 | (u & 0x7fffff) >> 13;
    uint32_t rem = u & 0x1fff;
    h += rem > 0x1000 || (rem == 0x1000 && (h & 1));
    return sign | (uint16_t)h;
}

/* Loads element i of type T from a possibly unaligned buffer. */
#define LOAD(T, p, i) ({ T v_; memcpy(&v_, (const char *)(p) + (i) * sizeof(T), sizeof(T)); v_; })

/* Converts n elements to float.  Meant for F32/F16/BF16; the other numeric
 * dtypes convert by value (BOOL as 0/1) so every dtype has a defined result. */
void st_to_f32(float *dst, const void *src, st_dtype dtype, size_t n)
{
    if (dtype == ST_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        switch (dtype) {
        case ST_F16: dst[i] = st_f16_to_f32(LOAD(uint16_t, src, i)); break;
        case ST_BF16: dst[i] = st_bf16_to_f32(LOAD(uint16_t, src, i)); break;
        case ST_BOOL: dst[i] = LOAD(uint8_t, src, i) != 0; break;
        case ST_U8: dst[i] = LOAD(uint8_t, src, i); break;
        case ST_I8: dst[i] = LOAD(int8_t, src, i); break;
        case ST_I16: dst[i] = LOAD(int16_t, src, i); break;
        case ST_U16: dst[i] = LOAD(uint16_t, src, i); break;
        case ST_I32: dst[i] = (float)LOAD(int32_t, src, i); break;
        case ST_U32: dst[i] = (float)LOAD(uint32_t, src, i); break;
        case ST_F64: dst[i] = (float)LOAD(double, src, i); break;
        case ST_I64: dst[i] = (float)LOAD(int64_t, src, i); break;
        case ST_U64: dst[i] = (float)LOAD(uint64_t, src, i); break;
        default: dst[i] = 0; break;
        }
    }
}

/* ---- writer ------------------------------------------------------------- */

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const st_entry *const *)a)->name, (*(const st_entry *const *)b)->name);
}

/* An integer JSON value printed exactly (cJSON would print 1e15 as "1e+15"). */
static cJSON *json_uint(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* Builds the header text for entries already in file order; sizes[i] is
 * entry i's byte size.  Returns a malloc'd string or NULL. */
static char *build_header(const st_entry *const *ord, const size_t *sizes, int n,
                          const char *const *mk, const char *const *mv, int n_meta)
{
    cJSON *root = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && i < n_meta; i++)
            cJSON_AddStringToObject(m, mk[i], mv[i]);
    }
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, ord[i]->name);
        cJSON *sh = cJSON_CreateArray(), *off = cJSON_CreateArray();
        cJSON_AddStringToObject(t, "dtype", st_dtype_name(ord[i]->dtype));
        for (int d = 0; d < ord[i]->ndim; d++)
            cJSON_AddItemToArray(sh, json_uint((uint64_t)ord[i]->shape[d]));
        cJSON_AddItemToObject(t, "shape", sh);
        cJSON_AddItemToArray(off, json_uint(pos));
        cJSON_AddItemToArray(off, json_uint(pos + sizes[i]));
        cJSON_AddItemToObject(t, "data_offsets", off);
        pos += sizes[i];
    }
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

/* Validates the entries (dtype, dims, sizes, duplicate names) and returns
 * them sorted by name in ord, with byte sizes in sizes. */
static int check_entries(const char *path, const st_entry *t, int n, const st_entry **ord,
                         size_t *sizes, pl_err *e)
{
    for (int i = 0; i < n; i++)
        ord[i] = &t[i];
    qsort(ord, (size_t)n, sizeof *ord, cmp_entry_name);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        const st_entry *x = ord[i];
        size_t numel;
        if (i > 0 && strcmp(ord[i - 1]->name, x->name) == 0)
            return pl_errf(e, "%s: tensor '%s' given twice", path, x->name);
        if (strcmp(x->name, "__metadata__") == 0)
            return pl_errf(e, "%s: '__metadata__' is reserved, not a tensor name", path);
        if ((unsigned)x->dtype >= ST_DTYPE_COUNT || x->ndim < 0 || x->ndim > ST_MAX_DIMS)
            return pl_errf(e, "%s: tensor '%s': bad dtype or rank", path, x->name);
        if (shape_numel(x->ndim, x->shape, &numel) != 0 ||
            __builtin_mul_overflow(numel, st_dtype_size(x->dtype), &sizes[i]) ||
            __builtin_add_overflow(total, sizes[i], &total) || total > ST_MAX_INT)
            return pl_errf(e, "%s: tensor '%s': shape too large", path, x->name);
        if (sizes[i] && !x->data)
            return pl_errf(e, "%s: tensor '%s': no data", path, x->name);
    }
    return 0;
}

/* Metadata keys present, distinct, with values. */
static int check_meta(const char *path, const char *const *mk, const char *const *mv, int n,
                      pl_err *e)
{
    for (int i = 0; i < n; i++) {
        if (!mk[i] || !mv[i])
            return pl_errf(e, "%s: metadata entry %d has no key or value", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(mk[i], mk[j]) == 0)
                return pl_errf(e, "%s: metadata key '%s' given twice", path, mk[i]);
    }
    return 0;
}

/* write(2) until done. */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Streams prefix, padded header and the data of ord[] into path.tmp, fsyncs
 * it and renames it over path (no full copy of the data in memory). */
static int write_file(const char *path, const char *hdr, size_t hlen, const st_entry *const *ord,
                      const size_t *sizes, int n, pl_err *e)
{
    char tmp[4096], dir[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return pl_errf(e, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return pl_errf(e, "%s: %s", tmp, strerror(errno));
    uint8_t pre[8];
    for (int i = 0; i < 8; i++)
        pre[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int rc = write_all(fd, pre, 8) | write_all(fd, hdr, hlen);
    for (int i = 0; i < n && rc == 0; i++)
        rc = write_all(fd, ord[i]->data, sizes[i]);
    if (rc != 0 || fsync(fd) != 0) {
        pl_errf(e, "%s: write: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        pl_errf(e, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    snprintf(dir, sizeof dir, "%s", path);
    return pl_fsync_dir(dirname(dir), e);
}

int st_write(const char *path, const st_entry *t, int n, const char *const *meta_keys,
             const char *const *meta_vals, int n_meta, pl_err *e)
{
    const st_entry **ord = calloc((size_t)n + 1, sizeof *ord);
    size_t *sizes = calloc((size_t)n + 1, sizeof *sizes);
    char *json = NULL, *hdr = NULL;
    int rc = -1;
    if (!ord || !sizes) {
        pl_errf(e, "%s: out of memory", path);
        goto out;
    }
    if (check_entries(path, t, n, ord, sizes, e) != 0 ||
        check_meta(path, meta_keys, meta_vals, n_meta, e) != 0)
        goto out;
    json = build_header(ord, sizes, n, meta_keys, meta_vals, n_meta);
    size_t jlen = json ? strlen(json) : 0, hlen = (jlen + 7) / 8 * 8;
    hdr = json ? malloc(hlen) : NULL;
    if (!hdr) {
        pl_errf(e, "%s: out of memory building the header", path);
        goto out;
    }
    memcpy(hdr, json, jlen);
    memset(hdr + jlen, ' ', hlen - jlen);
    rc = write_file(path, hdr, hlen, ord, sizes, n, e);
out:
    free(hdr);
    free(json);
    free(sizes);
    free(ord);
    return rc;
}
