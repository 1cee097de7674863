/* test_shard.c - token shards: byte layout, round trips of both versions,
 * every rejection (each message must name the file), and the stream's
 * sequence order across files and around its end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"
#include "testutil.h"

static char dir[512];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("shard"));
    return 0;
}

/* dir/name in a static buffer (one of a few, so two can be live at once). */
static const char *path_of(const char *name)
{
    static char bufs[4][600];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", dir, name);
    return p;
}

static void put_i32(unsigned char *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    b[0] = (unsigned char)u;
    b[1] = (unsigned char)(u >> 8);
    b[2] = (unsigned char)(u >> 16);
    b[3] = (unsigned char)(u >> 24);
}

static int32_t get_i32(const unsigned char *b)
{
    return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                     (uint32_t)b[3] << 24);
}

/* Writes a hand-made file: header (magic, version, count) then payload_bytes
 * bytes of 0xAB; returns its path. */
static const char *craft(const char *name, int32_t magic, int32_t version, int32_t count,
                         size_t payload_bytes)
{
    size_t len = 1024 + payload_bytes;
    unsigned char *b = calloc(1, len);
    assert_non_null(b);
    put_i32(b, magic);
    put_i32(b + 4, version);
    put_i32(b + 8, count);
    memset(b + 1024, 0xAB, payload_bytes);
    const char *p = path_of(name);
    tu_write_file(p, b, len);
    free(b);
    return p;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* Asserts that opening path fails with a message naming path and holding
 * every needle given (NULL-terminated). */
static void expect_open_error(const char *path, ...)
{
    shard_file s;
    pl_err e = {{0}};
    assert_int_equal(shard_open(&s, path, &e), -1);
    assert_non_null(strstr(e.msg, path));
    va_list ap;
    va_start(ap, path);
    for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *)) {
        if (!strstr(e.msg, n))
            fail_msg("message '%s' lacks '%s'", e.msg, n);
    }
    va_end(ap);
    assert_null(s.path);   /* left zeroed: closing it is harmless */
    shard_close(&s);
}

/* ---- round trips ---------------------------------------------------------- */

/* Version 1: header ints and little-endian uint16 tokens at byte 1024. */
static void test_write_v1_layout_and_read(void **state)
{
    (void)state;
    const uint32_t tok[5] = {0, 1, 258, 65535, 42};
    const char *p = path_of("v1.bin");
    pl_err e = {{0}};
    assert_int_equal(shard_write(p, tok, 5, 0, &e), 0);

    size_t len;
    unsigned char *b = slurp(p, &len);
    assert_int_equal(len, 1024 + 5 * 2);
    assert_int_equal(get_i32(b), 20240520);
    assert_int_equal(get_i32(b + 4), 1);
    assert_int_equal(get_i32(b + 8), 5);
    for (int i = 3; i < 256; i++)
        assert_int_equal(get_i32(b + 4 * i), 0);
    /* 258 = 0x0102 -> bytes 02 01; 65535 -> ff ff */
    assert_int_equal(b[1024 + 4], 0x02);
    assert_int_equal(b[1024 + 5], 0x01);
    assert_int_equal(b[1024 + 6], 0xff);
    assert_int_equal(b[1024 + 7], 0xff);
    free(b);

    shard_file s;
    assert_int_equal(shard_open(&s, p, &e), 0);
    assert_int_equal(s.version, 1);
    assert_int_equal(s.tok_bytes, 2);
    assert_int_equal(s.ntok, 5);
    assert_string_equal(s.path, p);
    assert_non_null(s.map);
    for (int i = 0; i < 5; i++)
        assert_int_equal(shard_token(&s, i), tok[i]);
    shard_close(&s);
    assert_null(s.path);
}

/* A token >= 65536 forces version 7 with uint32 tokens. */
static void test_write_v7_auto(void **state)
{
    (void)state;
    const uint32_t tok[4] = {7, 65536, 0x01020304u, 4000000000u};
    const char *p = path_of("v7.bin");
    pl_err e = {{0}};
    assert_int_equal(shard_write(p, tok, 4, 0, &e), 0);

    size_t len;
    unsigned char *b = slurp(p, &len);
    assert_int_equal(len, 1024 + 4 * 4);
    assert_int_equal(get_i32(b), 20240801);
    assert_int_equal(get_i32(b + 4), 7);
    assert_int_equal(get_i32(b + 8), 4);
    assert_int_equal(b[1024 + 8], 0x04);   /* 0x01020304 little-endian */
    assert_int_equal(b[1024 + 11], 0x01);
    free(b);

    shard_file s;
    assert_int_equal(shard_open(&s, p, &e), 0);
    assert_int_equal(s.version, 7);
    assert_int_equal(s.tok_bytes, 4);
    assert_int_equal(s.ntok, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(shard_token(&s, i), tok[i]);
    shard_close(&s);
}

/* force_u32 writes small tokens as version 7 too. */
static void test_write_force_u32(void **state)
{
    (void)state;
    const uint32_t tok[3] = {1, 2, 3};
    const char *p = path_of("force.bin");
    pl_err e = {{0}};
    assert_int_equal(shard_write(p, tok, 3, 1, &e), 0);
    shard_file s;
    assert_int_equal(shard_open(&s, p, &e), 0);
    assert_int_equal(s.version, 7);
    assert_int_equal(s.map_size, 1024 + 3 * 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(shard_token(&s, i), tok[i]);
    shard_close(&s);
}

/* Zero tokens: a bare header is a valid (empty) shard. */
static void test_write_empty(void **state)
{
    (void)state;
    const char *p = path_of("empty.bin");
    pl_err e = {{0}};
    assert_int_equal(shard_write(p, NULL, 0, 0, &e), 0);
    shard_file s;
    assert_int_equal(shard_open(&s, p, &e), 0);
    assert_int_equal(s.ntok, 0);
    assert_int_equal(s.map_size, 1024);
    shard_close(&s);
}

/* shard_parse on a caller's buffer: same checks, no mapping, name kept. */
static void test_parse_buffer(void **state)
{
    (void)state;
    unsigned char b[1024 + 6] = {0};
    put_i32(b, 20240520);
    put_i32(b + 4, 1);
    put_i32(b + 8, 3);
    b[1024] = 9;
    b[1026] = 0x34;
    b[1027] = 0x12;
    b[1028] = 0xff;
    shard_file s;
    pl_err e = {{0}};
    assert_int_equal(shard_parse(&s, b, sizeof b, "buf", &e), 0);
    assert_null(s.map);
    assert_string_equal(s.path, "buf");
    assert_int_equal(shard_token(&s, 0), 9);
    assert_int_equal(shard_token(&s, 1), 0x1234);
    assert_int_equal(shard_token(&s, 2), 0xff);
    shard_close(&s);

    assert_int_equal(shard_parse(&s, b, sizeof b - 1, "buf", &e), -1);
    assert_non_null(strstr(e.msg, "buf: truncated"));
}

/* ---- rejections ----------------------------------------------------------- */

static void test_reject_bad_magic(void **state)
{
    (void)state;
    expect_open_error(craft("magic.bin", 12345, 1, 0, 0), "bad magic", "12345", NULL);
}

static void test_reject_bad_version(void **state)
{
    (void)state;
    expect_open_error(craft("ver1.bin", 20240520, 7, 0, 0), "bad version", "7", NULL);
    expect_open_error(craft("ver7.bin", 20240801, 1, 0, 0), "bad version", "1", NULL);
    expect_open_error(craft("ver2.bin", 20240520, 2, 0, 0), "bad version 2", NULL);
}

/* 10 uint16 tokens need 1044 bytes; the file has 1024 + 15. */
static void test_reject_truncated(void **state)
{
    (void)state;
    expect_open_error(craft("trunc1.bin", 20240520, 1, 10, 15),
                      "truncated: header says 10 tokens (1044 bytes) but file has 1039", NULL);
    /* 3 uint32 tokens need 1036 bytes; 6 bytes of payload = 1030 */
    expect_open_error(craft("trunc7.bin", 20240801, 7, 3, 6),
                      "truncated: header says 3 tokens (1036 bytes) but file has 1030", NULL);
    /* the largest count: 2^31-1 uint32 tokens, checked without overflow */
    expect_open_error(craft("huge.bin", 20240801, 7, INT32_MAX, 8), "truncated",
                      "2147483647 tokens", NULL);
}

static void test_reject_trailing(void **state)
{
    (void)state;
    expect_open_error(craft("trail.bin", 20240520, 1, 10, 21), "1 trailing bytes",
                      "(1044 bytes)", "1045", NULL);
    expect_open_error(craft("trail0.bin", 20240801, 7, 0, 4), "4 trailing bytes", NULL);
}

static void test_reject_negative_count(void **state)
{
    (void)state;
    expect_open_error(craft("neg.bin", 20240520, 1, -1, 0), "negative token count -1", NULL);
}

static void test_reject_short(void **state)
{
    (void)state;
    unsigned char b[100] = {0};
    put_i32(b, 20240520);
    put_i32(b + 4, 1);
    const char *p = path_of("short.bin");
    tu_write_file(p, b, sizeof b);
    expect_open_error(p, "100 bytes", "shorter than the 1024-byte", NULL);
    p = path_of("zero.bin");
    tu_write_file(p, b, 0);
    expect_open_error(p, "0 bytes", NULL);
}

static void test_reject_missing_and_dir(void **state)
{
    (void)state;
    expect_open_error(path_of("nope.bin"), "No such file", NULL);
    expect_open_error(dir, "not a regular file", NULL);
}

/* ---- the stream ----------------------------------------------------------- */

/* Writes stream tokens [from, to) (token value = stream position) to name. */
static const char *write_range(const char *name, uint32_t from, uint32_t to, int force_u32)
{
    uint32_t tok[64];
    assert_true(to - from <= 64);
    for (uint32_t i = from; i < to; i++)
        tok[i - from] = i;
    const char *p = path_of(name);
    pl_err e = {{0}};
    assert_int_equal(shard_write(p, tok, to - from, force_u32, &e), 0);
    return p;
}

/* Stream 0..11: a.bin = 0..6 (uint16), empty.bin, b.bin = 7..11 (uint32). */
static void open_stream(shard_set *d)
{
    char list[2048];
    const char *a = write_range("a.bin", 0, 7, 0);
    const char *z = write_range("z.bin", 0, 0, 0);
    const char *b = write_range("b.bin", 7, 12, 1);
    snprintf(list, sizeof list, "%s,%s,%s", a, z, b);
    pl_err e = {{0}};
    if (shard_set_open(d, list, 50257, &e) != 0)
        fail_msg("%s", e.msg);
}

static void test_stream_tokens(void **state)
{
    (void)state;
    shard_set d;
    open_stream(&d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.total, 12);
    assert_int_equal(d.start[0], 0);
    assert_int_equal(d.start[1], 7);
    assert_int_equal(d.start[2], 7);
    assert_int_equal(d.files[0].version, 1);
    assert_int_equal(d.files[2].version, 7);
    for (size_t pos = 0; pos < 12; pos++)
        assert_int_equal(shard_set_token(&d, pos), pos);
    shard_set_close(&d);
    assert_int_equal(d.n, 0);
}

static void check_seq(const shard_set *d, uint64_t k, int T, const int32_t *inp,
                      const int32_t *tgt)
{
    int32_t gi[16], gt[16];
    shard_set_sequence(d, k, T, gi, gt);
    for (int j = 0; j < T; j++) {
        if (gi[j] != inp[j] || gt[j] != tgt[j])
            fail_msg("k=%llu T=%d j=%d: got (%d,%d), want (%d,%d)", (unsigned long long)k, T, j,
                     gi[j], gt[j], inp[j], tgt[j]);
    }
}

/* T = 3: n_seq = (12-1)/3 = 3.  Sequence k starts at (k mod 3)*3:
 *   k=0: inp 0 1 2  tgt 1 2 3
 *   k=1: inp 3 4 5  tgt 4 5 6
 *   k=2: inp 6 7 8  tgt 7 8 9   (crosses from a.bin over empty.bin into b.bin)
 *   k=3 -> k=0 (tokens 9..11 are never a sequence start: 9 + 3 = 12 > 11),
 *   k=3000001 -> 1, k = 2^40 + 2 -> (2^40 mod 3 = 1) + 2 = 3 mod 3 = 0. */
static void test_stream_sequences_T3(void **state)
{
    (void)state;
    shard_set d;
    open_stream(&d);
    pl_err e = {{0}};
    assert_int_equal(shard_set_nseq(&d, 3, "--data", &e), 3);
    const int32_t i0[] = {0, 1, 2}, t0[] = {1, 2, 3};
    const int32_t i1[] = {3, 4, 5}, t1[] = {4, 5, 6};
    const int32_t i2[] = {6, 7, 8}, t2[] = {7, 8, 9};
    check_seq(&d, 0, 3, i0, t0);
    check_seq(&d, 1, 3, i1, t1);
    check_seq(&d, 2, 3, i2, t2);
    check_seq(&d, 3, 3, i0, t0);
    check_seq(&d, 5, 3, i2, t2);
    check_seq(&d, 3000001, 3, i1, t1);
    check_seq(&d, (1ull << 40) + 2, 3, i0, t0);
    shard_set_close(&d);
}

/* T = 4: n_seq = 11/4 = 2: k=0 -> 0..3 / 1..4; k=1 -> 4..7 / 5..8 (crosses
 * the boundary between 6 and 7); k=2 -> k=0.
 * T = 11: n_seq = 1, every k gives 0..10 / 1..11 (the whole stream). */
static void test_stream_sequences_T4_T11(void **state)
{
    (void)state;
    shard_set d;
    open_stream(&d);
    pl_err e = {{0}};
    assert_int_equal(shard_set_nseq(&d, 4, "--data", &e), 2);
    const int32_t i0[] = {0, 1, 2, 3}, t0[] = {1, 2, 3, 4};
    const int32_t i1[] = {4, 5, 6, 7}, t1[] = {5, 6, 7, 8};
    check_seq(&d, 0, 4, i0, t0);
    check_seq(&d, 1, 4, i1, t1);
    check_seq(&d, 2, 4, i0, t0);
    check_seq(&d, 7, 4, i1, t1);

    assert_int_equal(shard_set_nseq(&d, 11, "--data", &e), 1);
    const int32_t iw[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const int32_t tw[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    check_seq(&d, 0, 11, iw, tw);
    check_seq(&d, 9, 11, iw, tw);
    shard_set_close(&d);
}

/* 12 tokens cannot hold 12 + 1; T must be positive. */
static void test_stream_too_short(void **state)
{
    (void)state;
    shard_set d;
    open_stream(&d);
    pl_err e = {{0}};
    assert_int_equal(shard_set_nseq(&d, 12, "--data", &e), -1);
    assert_string_equal(e.msg, "--data: 12 tokens is fewer than seq+1 = 13");
    assert_int_equal(shard_set_nseq(&d, 0, "--val", &e), -1);
    assert_non_null(strstr(e.msg, "--val"));
    shard_set_close(&d);

    /* a stream of empty shards only */
    const char *z = write_range("z_only.bin", 0, 0, 0);
    assert_int_equal(shard_set_open(&d, z, 10, &e), 0);
    assert_int_equal(shard_set_nseq(&d, 1, "--data", &e), -1);
    assert_string_equal(e.msg, "--data: 0 tokens is fewer than seq+1 = 2");
    shard_set_close(&d);
}

/* The first token >= vocab is reported with its file and position in it. */
static void test_set_token_out_of_range(void **state)
{
    (void)state;
    uint32_t tok[200];
    for (int i = 0; i < 200; i++)
        tok[i] = (uint32_t)i;
    tok[123] = 70000;
    tok[150] = 80000;
    const char *bad = path_of("oor.bin");
    pl_err e = {{0}};
    assert_int_equal(shard_write(bad, tok, 200, 0, &e), 0);
    const char *good = write_range("ok.bin", 0, 10, 0);
    char list[2048], want[1024];
    snprintf(list, sizeof list, "%s,%s", good, bad);
    shard_set d;
    assert_int_equal(shard_set_open(&d, list, 50257, &e), -1);
    snprintf(want, sizeof want, "%s: token 70000 at position 123 is out of range (vocab 50257)",
             bad);
    assert_string_equal(e.msg, want);
    assert_int_equal(d.n, 0);
    assert_null(d.files);

    /* the boundary: vocab 10 admits 0..9 and rejects 10 */
    const char *edge = write_range("edge.bin", 5, 11, 0);
    assert_int_equal(shard_set_open(&d, good, 10, &e), 0);
    shard_set_close(&d);
    assert_int_equal(shard_set_open(&d, edge, 10, &e), -1);
    assert_non_null(strstr(e.msg, "token 10 at position 5"));
    assert_non_null(strstr(e.msg, edge));
}

/* Empty list, empty entries and a missing file in the list. */
static void test_set_bad_lists(void **state)
{
    (void)state;
    shard_set d;
    pl_err e = {{0}};
    assert_int_equal(shard_set_open(&d, "", 10, &e), -1);
    assert_non_null(strstr(e.msg, "empty shard list"));

    const char *a = write_range("l.bin", 0, 5, 0);
    char list[2048];
    snprintf(list, sizeof list, "%s,,%s", a, a);
    assert_int_equal(shard_set_open(&d, list, 10, &e), -1);
    assert_non_null(strstr(e.msg, "entry 2 is an empty path"));
    assert_int_equal(d.n, 0);

    snprintf(list, sizeof list, "%s,", a);
    assert_int_equal(shard_set_open(&d, list, 10, &e), -1);
    assert_non_null(strstr(e.msg, "entry 2 is an empty path"));

    const char *missing = path_of("missing.bin");
    snprintf(list, sizeof list, "%s,%s", a, missing);
    assert_int_equal(shard_set_open(&d, list, 10, &e), -1);
    assert_non_null(strstr(e.msg, missing));
    assert_non_null(strstr(e.msg, "No such file"));
    assert_int_equal(d.n, 0);

    /* a bad file inside the list is reported with its own message */
    const char *m = craft("l_magic.bin", 1, 1, 0, 0);
    snprintf(list, sizeof list, "%s,%s", a, m);
    assert_int_equal(shard_set_open(&d, list, 10, &e), -1);
    assert_non_null(strstr(e.msg, m));
    assert_non_null(strstr(e.msg, "bad magic"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_v1_layout_and_read),
        cmocka_unit_test(test_write_v7_auto),
        cmocka_unit_test(test_write_force_u32),
        cmocka_unit_test(test_write_empty),
        cmocka_unit_test(test_parse_buffer),
        cmocka_unit_test(test_reject_bad_magic),
        cmocka_unit_test(test_reject_bad_version),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_trailing),
        cmocka_unit_test(test_reject_negative_count),
        cmocka_unit_test(test_reject_short),
        cmocka_unit_test(test_reject_missing_and_dir),
        cmocka_unit_test(test_stream_tokens),
        cmocka_unit_test(test_stream_sequences_T3),
        cmocka_unit_test(test_stream_sequences_T4_T11),
        cmocka_unit_test(test_stream_too_short),
        cmocka_unit_test(test_set_token_out_of_range),
        cmocka_unit_test(test_set_bad_lists),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
