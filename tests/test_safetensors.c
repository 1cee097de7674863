/* test_safetensors.c - safetensors round trip, dtype conversions by hand, and
 * every rejection of the reader (bad files are written byte by byte here, so
 * these tests do not depend on st_write). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"
#include "safetensors.h"
#include "testutil.h"

static char g_path[600];

/* Scratch file path for this test process. */
static const char *scratch(const char *file)
{
    snprintf(g_path, sizeof g_path, "%s/%s", tu_tmpdir("st"), file);
    return g_path;
}

/* Builds u64 LE hlen | header | data into a heap buffer of *size bytes.
 * hlen is normally strlen(header); tests pass other values to lie. */
static uint8_t *raw_buf(uint64_t hlen, const char *hdr, const void *data, size_t dlen, size_t *size)
{
    size_t h = strlen(hdr);
    uint8_t *b = calloc(8 + h + dlen + 1, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, hdr, h);
    if (dlen)
        memcpy(b + 8 + h, data, dlen);
    *size = 8 + h + dlen;
    return b;
}

/* Writes a raw file; data may be NULL for dlen zero bytes. */
static void raw_file(const char *path, uint64_t hlen, const char *hdr, const void *data, size_t dlen)
{
    size_t size;
    uint8_t *b = raw_buf(hlen, hdr, data, dlen, &size);
    tu_write_file(path, b, size);
    free(b);
}

static void assert_closed(const st_file *f)
{
    assert_null(f->path);
    assert_null(f->t);
    assert_null(f->map);
    assert_int_equal(f->n, 0);
    assert_int_equal(f->n_meta, 0);
}

/* A header with a correct length field and dlen zero bytes of data must be
 * rejected by st_open and st_parse, with a message naming the file and
 * containing want. */
static void expect_reject_len(uint64_t hlen, const char *hdr, size_t dlen, const char *want)
{
    const char *path = scratch("bad.safetensors");
    uint8_t *zeros = calloc(dlen + 1, 1);
    raw_file(path, hlen, hdr, zeros, dlen);
    st_file f;
    pl_err e = {{0}};
    assert_int_equal(st_open(&f, path, &e), -1);
    if (!strstr(e.msg, path) || !strstr(e.msg, want))
        fail_msg("message '%s' should name %s and say '%s'", e.msg, path, want);
    assert_closed(&f);
    st_close(&f);

    size_t size;
    uint8_t *b = raw_buf(hlen, hdr, zeros, dlen, &size);
    memset(&e, 0, sizeof e);
    assert_int_equal(st_parse(&f, b, size, "mem.safetensors", &e), -1);
    if (!strstr(e.msg, "mem.safetensors") || !strstr(e.msg, want))
        fail_msg("st_parse message '%s' should say '%s'", e.msg, want);
    assert_closed(&f);
    free(b);
    free(zeros);
}

static void expect_reject(const char *hdr, size_t dlen, const char *want)
{
    expect_reject_len(strlen(hdr), hdr, dlen, want);
}

/* ---- round trip --------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    float w[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t h[4] = {0x3C00, 0xC000, 0x7BFF, 0x0001};
    uint16_t bf[4] = {0x3F80, 0xC000, 0x4049, 0x0000};
    int32_t iv[3] = {-1, 7, 2147483647};
    st_entry ent[] = {
        {.name = "z.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "half", .dtype = ST_F16, .ndim = 1, .shape = {4}, .data = h},
        {.name = "b.bf", .dtype = ST_BF16, .ndim = 2, .shape = {2, 2}, .data = bf},
        {.name = "ints", .dtype = ST_I32, .ndim = 1, .shape = {3}, .data = iv},
        {.name = "scalar", .dtype = ST_F32, .ndim = 0, .data = w},
        {.name = "empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    const char *mk[] = {"format", "note"}, *mv[] = {"pt", "r=8 \"quoted\""};
    const char *path = scratch("rt.safetensors");
    pl_err e = {{0}};
    assert_int_equal(st_write(path, ent, 6, mk, mv, 2, &e), 0);

    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);   /* temporary renamed away */

    FILE *fp = fopen(path, "rb");
    uint8_t pre[8];
    assert_int_equal(fread(pre, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | pre[i];
    assert_int_equal(hlen % 8, 0);

    st_file f;
    assert_int_equal(st_open(&f, path, &e), 0);
    assert_int_equal(f.n, 6);
    assert_non_null(f.map);
    assert_int_equal(f.map_size, 8 + hlen + 24 + 8 + 8 + 12 + 4 + 0);
    for (int i = 0; i < 6; i++) {
        const st_tensor *t = st_find(&f, ent[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, ent[i].dtype);
        assert_int_equal(t->ndim, ent[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], ent[i].shape[d]);
        size_t numel = 1;
        for (int d = 0; d < ent[i].ndim; d++)
            numel *= (size_t)ent[i].shape[d];
        assert_int_equal(t->numel, numel);
        assert_int_equal(t->nbytes, numel * st_dtype_size(ent[i].dtype));
        if (t->nbytes)
            assert_memory_equal(t->data, ent[i].data, t->nbytes);
    }
    /* Laid out in name order: f.t is in data order, so names ascend. */
    for (int i = 1; i < f.n; i++)
        assert_true(strcmp(f.t[i - 1].name, f.t[i].name) < 0);
    assert_null(st_find(&f, "missing"));
    assert_string_equal(st_meta(&f, "format"), "pt");
    assert_string_equal(st_meta(&f, "note"), "r=8 \"quoted\"");
    assert_null(st_meta(&f, "other"));
    st_close(&f);
    assert_closed(&f);
    st_close(&f);   /* twice is harmless */
}

/* Input order does not change the bytes written. */
static void test_write_deterministic(void **state)
{
    (void)state;
    float a[2] = {1, 2}, b[3] = {3, 4, 5};
    st_entry e1[] = {{.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {2}, .data = a},
                     {.name = "b", .dtype = ST_F32, .ndim = 1, .shape = {3}, .data = b}};
    st_entry e2[] = {e1[1], e1[0]};
    char p1[700], p2[700];
    snprintf(p1, sizeof p1, "%s", scratch("d1.safetensors"));
    snprintf(p2, sizeof p2, "%s/d2.safetensors", tu_tmpdir("st2"));
    pl_err e;
    assert_int_equal(st_write(p1, e1, 2, NULL, NULL, 0, &e), 0);
    assert_int_equal(st_write(p2, e2, 2, NULL, NULL, 0, &e), 0);
    size_t n1, n2;
    char *s1 = pl_read_text(p1, 1 << 20, &n1, &e), *s2 = pl_read_text(p2, 1 << 20, &n2, &e);
    assert_int_equal(n1, n2);
    assert_memory_equal(s1, s2, n1);
    /* no metadata -> no "__metadata__" key */
    assert_null(strstr(s1 + 8, "__metadata__"));
    free(s1);
    free(s2);
}

static void test_write_rejects(void **state)
{
    (void)state;
    float a[1] = {1};
    st_entry dup[] = {{.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = a},
                      {.name = "a", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = a}};
    const char *path = scratch("w.safetensors");
    pl_err e;
    assert_int_equal(st_write(path, dup, 2, NULL, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "twice"));
    st_entry neg = {.name = "n", .dtype = ST_F32, .ndim = 1, .shape = {-3}, .data = a};
    assert_int_equal(st_write(path, &neg, 1, NULL, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "'n'"));
    /* 2^54 bytes: beyond what a reader can address through JSON doubles. */
    st_entry big = {.name = "big", .dtype = ST_U8, .ndim = 2, .shape = {1LL << 30, 1LL << 24},
                    .data = a};
    assert_int_equal(st_write(path, &big, 1, NULL, NULL, 0, &e), -1);
    assert_non_null(strstr(e.msg, "'big': shape too large"));
    const char *mk[] = {"k", "k"}, *mv[] = {"1", "2"};
    assert_int_equal(st_write(path, dup, 1, mk, mv, 2, &e), -1);
    assert_non_null(strstr(e.msg, "metadata key 'k' given twice"));
    assert_int_equal(access(path, F_OK), -1);
}

/* An empty file list and a header with spaces (as writers pad) are valid. */
static void test_accepts_edge_cases(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = raw_buf(2, "{}", NULL, 0, &size);
    st_file f;
    pl_err e;
    assert_int_equal(st_parse(&f, b, size, "m", &e), 0);
    assert_int_equal(f.n, 0);
    assert_null(f.map);
    st_close(&f);
    free(b);

    /* Two tensors listed out of data order, a zero-size one, padding. */
    const char *hdr = "{\"b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]},"
                      "\"z\":{\"dtype\":\"F64\",\"shape\":[0,3],\"data_offsets\":[1,1]},"
                      "\"a\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[1,5]}}   ";
    uint8_t data[5] = {9, 1, 0, 2, 0};
    b = raw_buf(strlen(hdr), hdr, data, 5, &size);
    assert_int_equal(st_parse(&f, b, size, "m", &e), 0);
    assert_int_equal(f.n, 3);
    assert_string_equal(f.t[0].name, "b");   /* data order */
    assert_string_equal(f.t[1].name, "z");
    assert_string_equal(f.t[2].name, "a");
    assert_int_equal(f.t[0].ndim, 0);
    assert_int_equal(f.t[0].numel, 1);
    assert_ptr_equal(f.t[0].data, b + 8 + strlen(hdr));
    assert_int_equal(f.t[1].numel, 0);
    assert_ptr_equal(f.t[2].data, b + 8 + strlen(hdr) + 1);
    float out[2];
    st_to_f32(out, f.t[2].data, ST_I16, 2);   /* unaligned source */
    assert_true(out[0] == 1.0f && out[1] == 2.0f);
    st_close(&f);
    free(b);
}

/* ---- conversions (expected bits worked out by hand) --------------------- */

static void test_f16_known_values(void **state)
{
    (void)state;
    assert_int_equal(st_f32_to_f16(1.0f), 0x3C00);
    assert_int_equal(st_f32_to_f16(-2.0f), 0xC000);
    assert_int_equal(st_f32_to_f16(0.5f), 0x3800);
    assert_int_equal(st_f32_to_f16(65504.0f), 0x7BFF);
    assert_int_equal(st_f32_to_f16(0.0f), 0x0000);
    assert_int_equal(st_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(st_f32_to_f16(ldexpf(1, -24)), 0x0001);        /* smallest subnormal */
    assert_int_equal(st_f32_to_f16(ldexpf(1023, -24)), 0x03FF);     /* largest subnormal */
    assert_int_equal(st_f32_to_f16(ldexpf(1, -14)), 0x0400);        /* smallest normal */
    assert_int_equal(st_f32_to_f16(INFINITY), 0x7C00);
    assert_int_equal(st_f32_to_f16(-INFINITY), 0xFC00);
    assert_int_equal(st_f32_to_f16(NAN) & 0x7C00, 0x7C00);
    assert_true((st_f32_to_f16(NAN) & 0x03FF) != 0);
    /* Rounding to nearest even. */
    assert_int_equal(st_f32_to_f16(65519.0f), 0x7BFF);              /* below the midpoint */
    assert_int_equal(st_f32_to_f16(65520.0f), 0x7C00);              /* tie, 0x7BFF odd -> inf */
    assert_int_equal(st_f32_to_f16(1.0f + ldexpf(1, -11)), 0x3C00); /* tie -> even */
    assert_int_equal(st_f32_to_f16(1.0f + 3 * ldexpf(1, -11)), 0x3C02);
    assert_int_equal(st_f32_to_f16(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3C01);
    assert_int_equal(st_f32_to_f16(ldexpf(1, -25)), 0x0000);        /* tie -> even 0 */
    assert_int_equal(st_f32_to_f16(ldexpf(3, -26)), 0x0001);        /* 0.75 ulp -> 1 */
    assert_int_equal(st_f32_to_f16(ldexpf(3, -25)), 0x0002);        /* 1.5 ulp tie -> 2 */
    assert_int_equal(st_f32_to_f16(ldexpf(1, -30)), 0x0000);

    assert_true(st_f16_to_f32(0x3C00) == 1.0f);
    assert_true(st_f16_to_f32(0xC000) == -2.0f);
    assert_true(st_f16_to_f32(0x7BFF) == 65504.0f);
    assert_true(st_f16_to_f32(0x3555) == 1365.0f / 4096.0f);       /* (1024+341)/1024 / 4 */
    assert_true(st_f16_to_f32(0x0001) == ldexpf(1, -24));
    assert_true(st_f16_to_f32(0x83FF) == -ldexpf(1023, -24));
    assert_true(st_f16_to_f32(0x7C00) == INFINITY);
    assert_true(st_f16_to_f32(0xFC00) == -INFINITY);
    assert_true(isnan(st_f16_to_f32(0x7E00)));
    assert_true(isnan(st_f16_to_f32(0x7C01)));
    assert_true(signbit(st_f16_to_f32(0x8000)));
}

static void test_bf16_known_values(void **state)
{
    (void)state;
    assert_int_equal(st_f32_to_bf16(1.0f), 0x3F80);
    assert_int_equal(st_f32_to_bf16(-2.0f), 0xC000);
    assert_int_equal(st_f32_to_bf16(3.140625f), 0x4049);            /* 1.5703125 x 2 */
    assert_int_equal(st_f32_to_bf16(1.0f + ldexpf(1, -8)), 0x3F80); /* tie -> even */
    assert_int_equal(st_f32_to_bf16(1.0f + 3 * ldexpf(1, -8)), 0x3F82);
    assert_int_equal(st_f32_to_bf16(1.0f + ldexpf(1, -8) + ldexpf(1, -20)), 0x3F81);
    assert_int_equal(st_f32_to_bf16(INFINITY), 0x7F80);
    assert_int_equal(st_f32_to_bf16(FLT_MAX), 0x7F80);              /* rounds up to inf */
    assert_true((st_f32_to_bf16(NAN) & 0x7F80) == 0x7F80 && (st_f32_to_bf16(NAN) & 0x7F));
    assert_true(st_bf16_to_f32(0x3F80) == 1.0f);
    assert_true(st_bf16_to_f32(0xC000) == -2.0f);
    assert_true(st_bf16_to_f32(0x4049) == 3.140625f);
    assert_true(st_bf16_to_f32(0x0001) == ldexpf(1, -133));         /* bf16 subnormal */
}

/* Every finite or infinite half / bfloat16 survives f16 -> f32 -> f16. */
static void test_half_exhaustive_round_trip(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF))
            continue;   /* nan payloads may be quieted */
        if (st_f32_to_f16(st_f16_to_f32((uint16_t)h)) != h)
            fail_msg("f16 0x%04x does not round-trip", h);
    }
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7F80) == 0x7F80 && (h & 0x7F))
            continue;
        if (st_f32_to_bf16(st_bf16_to_f32((uint16_t)h)) != h)
            fail_msg("bf16 0x%04x does not round-trip", h);
    }
}

static void test_to_f32(void **state)
{
    (void)state;
    uint8_t buf[1 + 8];   /* offset by one: loads must not assume alignment */
    uint16_t h[4] = {0x3C00, 0xC000, 0x0001, 0x7C00};
    memcpy(buf + 1, h, 8);
    float out[4];
    st_to_f32(out, buf + 1, ST_F16, 4);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1, -24) && isinf(out[3]));
    uint16_t b[4] = {0x3F80, 0xC000, 0x4049, 0xFF80};
    memcpy(buf + 1, b, 8);
    st_to_f32(out, buf + 1, ST_BF16, 4);
    assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 3.140625f && out[3] == -INFINITY);
    float f[2] = {0.25f, -8.0f};
    memcpy(buf + 1, f, 8);
    st_to_f32(out, buf + 1, ST_F32, 2);
    assert_true(out[0] == 0.25f && out[1] == -8.0f);
}

static void test_dtype_table(void **state)
{
    (void)state;
    static const char *names[] = {"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16",
                                  "I32", "U32", "F32", "F64", "I64", "U64"};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    for (int i = 0; i < 13; i++) {
        st_dtype d;
        assert_int_equal(st_dtype_parse(names[i], &d), 0);
        assert_int_equal(st_dtype_size(d), sizes[i]);
        assert_string_equal(st_dtype_name(d), names[i]);
    }
    st_dtype d;
    assert_int_equal(st_dtype_parse("f32", &d), -1);
    assert_int_equal(st_dtype_parse("F8_E4M3", &d), -1);
}

/* ---- rejections --------------------------------------------------------- */

static void test_reject_missing_file(void **state)
{
    (void)state;
    st_file f;
    pl_err e;
    const char *path = scratch("nope.safetensors");
    assert_int_equal(st_open(&f, path, &e), -1);
    assert_non_null(strstr(e.msg, path));
    assert_closed(&f);
    assert_int_equal(st_open(&f, tu_tmpdir("st"), &e), -1);   /* a directory */
    assert_non_null(strstr(e.msg, "not a regular file"));
}

static void test_reject_empty_file(void **state)
{
    (void)state;
    const char *path = scratch("empty.safetensors");
    tu_write_file(path, "", 0);
    st_file f;
    pl_err e;
    assert_int_equal(st_open(&f, path, &e), -1);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "empty file"));
    assert_closed(&f);
    assert_int_equal(st_parse(&f, NULL, 0, "mem", &e), -1);
    assert_non_null(strstr(e.msg, "mem: empty"));
}

static void test_reject_short_file(void **state)
{
    (void)state;
    const char *path = scratch("short.safetensors");
    tu_write_file(path, "\x02\0\0\0\0", 5);
    st_file f;
    pl_err e;
    assert_int_equal(st_open(&f, path, &e), -1);
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "too short (5 bytes"));
    assert_closed(&f);
}

static void test_reject_header_past_end(void **state)
{
    (void)state;
    expect_reject_len(999, "{}", 10, "header length 999 past end of file (20 bytes)");
    expect_reject_len(3, "{}", 0, "past end");   /* one byte short */
}

static void test_reject_header_too_large(void **state)
{
    (void)state;
    expect_reject_len(100000001ULL, "{}", 0, "header length 100000001 exceeds the limit");
    expect_reject_len(UINT64_MAX, "{}", 0, "exceeds the limit");   /* no 8+N wrap-around */
}

static void test_reject_invalid_utf8(void **state)
{
    (void)state;
    expect_reject("{\"a\xff\":1}", 0, "not valid UTF-8 (byte 3");
    expect_reject("{\"\xc0\x80\":1}", 0, "UTF-8");           /* overlong NUL */
    expect_reject("{\"\xed\xa0\x80\":1}", 0, "UTF-8");       /* surrogate */
    expect_reject("{\"\xf4\x90\x80\x80\":1}", 0, "UTF-8");   /* > U+10FFFF */
    expect_reject("{\"\xe2\x82\":1}", 0, "UTF-8");           /* truncated */
    /* Truncated at the header's end; the next (data) byte must not complete it. */
    expect_reject_len(4, "{}\xe2\x82\xac", 0, "not valid UTF-8 (byte 2 of 4)");
    expect_reject("{\"\xe2\x82\xac\":1}", 0, "not an object"); /* valid: the euro sign */
}

static void test_reject_nul_in_header(void **state)
{
    (void)state;
    expect_reject_len(4, "{}", 2, "NUL byte at offset 2");   /* header "{}\0\0" */
}

static void test_reject_not_json(void **state)
{
    (void)state;
    expect_reject("{\"a\": ", 0, "not valid JSON");
    expect_reject("", 0, "not valid JSON");
    expect_reject("{} x", 0, "data after the JSON value");
}

static void test_reject_not_object(void **state)
{
    (void)state;
    expect_reject("[1,2]", 0, "header is JSON but not an object");
    expect_reject("\"a\"", 0, "not an object");
    expect_reject("{\"a\":[]}", 0, "tensor 'a': entry is not an object");
}

static void test_reject_unknown_dtype(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
                  "tensor 'a': unknown dtype 'Q4'");
    expect_reject("{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "\"dtype\" is not a string");
}

static void test_reject_missing_keys(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\"");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "missing \"shape\"");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing \"data_offsets\"");
}

static void test_reject_bad_shape(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                  "tensor 'a': shape[0] is not a non-negative integer");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", 12,
                  "shape[1] is not a non-negative integer");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8,
                  "shape[0]");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,16]}}", 16,
                  "\"shape\" is not an array");
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                  "\"data_offsets\":[0,1]}}", 1, "9 dimensions, at most 8");
}

static void test_reject_gap(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
                  "tensor 'b': data_offsets [8,12] leave a gap");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                  "tensor 'a': data_offsets [4,8] leave a gap");   /* not from 0 */
}

static void test_reject_overlap(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                  "tensor 'b': data_offsets [4,12] overlap");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                  "overlap");
}

static void test_reject_wrong_size(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 12,
                  "tensor 'a': data_offsets [0,12] but F32 [4] needs 16 bytes");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                  "end before they begin");
}

static void test_reject_buffer_size(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                  "tensors end at byte 4 but the data buffer holds 8 bytes");
    expect_reject("{}", 3, "tensors end at byte 0 but the data buffer holds 3 bytes");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                  "tensors end at byte 8 but the data buffer holds 4 bytes");
}

static void test_reject_duplicate_names(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                  "tensor 'a' appears twice");
    expect_reject("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice");
}

static void test_reject_offsets_arity(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                  "tensor 'a': \"data_offsets\" is not an array [begin, end]");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                  "\"data_offsets\" is not an array");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", 4,
                  "data_offsets are not integers");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                  "data_offsets are not integers");
}

static void test_reject_offsets_past_2_53(void **state)
{
    (void)state;
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[18014398509481984],"
                  "\"data_offsets\":[0,18014398509481984]}}", 0, "shape[0]");
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],"
                  "\"data_offsets\":[18014398509481984,18014398509481984]}}", 0,
                  "data_offsets are not integers in [0, 2^53]");
}

static void test_reject_numel_overflow(void **state)
{
    (void)state;
    /* 2^32 x 2^32 elements overflows 64 bits. */
    expect_reject("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
                  "\"data_offsets\":[0,0]}}", 0, "tensor 'a': U8 [4294967296, 4294967296] overflows");
    /* 2^31 x 2^31 = 2^62 elements fit, x 4 bytes does not. */
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],"
                  "\"data_offsets\":[0,0]}}", 0, "overflows");
}

static void test_reject_bad_metadata(void **state)
{
    (void)state;
    expect_reject("{\"__metadata__\":{\"format\":1}}", 0, "__metadata__ 'format' is not a string");
    expect_reject("{\"__metadata__\":[\"pt\"]}", 0, "\"__metadata__\" is not an object");
    expect_reject("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "key 'k' given twice");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_deterministic),
        cmocka_unit_test(test_write_rejects),
        cmocka_unit_test(test_accepts_edge_cases),
        cmocka_unit_test(test_f16_known_values),
        cmocka_unit_test(test_bf16_known_values),
        cmocka_unit_test(test_half_exhaustive_round_trip),
        cmocka_unit_test(test_to_f32),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_reject_missing_file),
        cmocka_unit_test(test_reject_empty_file),
        cmocka_unit_test(test_reject_short_file),
        cmocka_unit_test(test_reject_header_past_end),
        cmocka_unit_test(test_reject_header_too_large),
        cmocka_unit_test(test_reject_invalid_utf8),
        cmocka_unit_test(test_reject_nul_in_header),
        cmocka_unit_test(test_reject_not_json),
        cmocka_unit_test(test_reject_not_object),
        cmocka_unit_test(test_reject_unknown_dtype),
        cmocka_unit_test(test_reject_missing_keys),
        cmocka_unit_test(test_reject_bad_shape),
        cmocka_unit_test(test_reject_gap),
        cmocka_unit_test(test_reject_overlap),
        cmocka_unit_test(test_reject_wrong_size),
        cmocka_unit_test(test_reject_buffer_size),
        cmocka_unit_test(test_reject_duplicate_names),
        cmocka_unit_test(test_reject_offsets_arity),
        cmocka_unit_test(test_reject_offsets_past_2_53),
        cmocka_unit_test(test_reject_numel_overflow),
        cmocka_unit_test(test_reject_bad_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
