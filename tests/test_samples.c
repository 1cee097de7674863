/* test_samples.c - the sample sidecar (samples.h): byte layout, round trips
 * with and without mask and labels, every rejection of the reader (each
 * message names the file) and of the writer, the check against the shard;
 * the JSON Lines reader (jsonl.h); and error lines that quote input stay one
 * line (pl_errf escapes control bytes; a classification label holding a
 * newline, the fuzz_jsonl finding of session 8). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonl.h"
#include "samples.h"
#include "taskdata.h"
#include "testutil.h"

/* 3 samples over 7 tokens: [0,2) [2,3) [3,7) */
static uint32_t OFF[4] = {0, 2, 3, 7};
static uint8_t MASK[7] = {0, 1, 1, 0, 0, 1, 1};
static int32_t LAB[3] = {1, 0, 2};

static void put32(unsigned char *b, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
}

/* A valid image: header, offsets, mask (if mask), labels (if labels). */
static size_t image(unsigned char *b, int kind, int mask, int labels)
{
    memset(b, 0, 256);
    uint32_t h[16] = {20250601, 1, 7, 3, (uint32_t)kind, (uint32_t)mask, labels ? 3u : 0u};
    for (int i = 0; i < 16; i++)
        put32(b + 4 * i, h[i]);
    size_t n = 64;
    for (int i = 0; i < 4; i++, n += 4)
        put32(b + n, OFF[i]);
    if (mask) {
        memcpy(b + n, MASK, 7);
        n += 7;
    }
    for (int i = 0; labels && i < 3; i++, n += 4)
        put32(b + n, (uint32_t)LAB[i]);
    return n;
}

static void test_layout_and_parse(void **state)
{
    (void)state;
    unsigned char b[256];
    size_t n = image(b, SAMPLES_CLASSIFICATION, 1, 1);
    assert_int_equal(n, 64 + 16 + 7 + 12);
    samples_file s;
    pl_err e = {{0}};
    assert_int_equal(samples_parse(&s, b, n, "x.samples", &e), 0);
    assert_int_equal(s.kind, SAMPLES_CLASSIFICATION);
    assert_int_equal(s.n_tokens, 7);
    assert_int_equal(s.n_samples, 3);
    assert_int_equal(s.n_labels, 3);
    assert_memory_equal(s.off, OFF, sizeof OFF);
    assert_memory_equal(s.mask, MASK, sizeof MASK);
    assert_memory_equal(s.labels, LAB, sizeof LAB);
    assert_int_equal(samples_counted(&s, 0), 1);   /* token 1 */
    assert_int_equal(samples_counted(&s, 2), 2);   /* tokens 5, 6 */
    samples_free(&s);
    n = image(b, SAMPLES_TEXT, 0, 0);
    assert_int_equal(samples_parse(&s, b, n, "t.samples", &e), 0);
    assert_null(s.mask);
    assert_null(s.labels);
    assert_int_equal(samples_counted(&s, 2), 3);   /* no mask: all but the first */
    samples_free(&s);
}

/* Written files read back equal, byte for byte the hand-made image. */
static void test_round_trip(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("samples_rt");
    char path[600];
    snprintf(path, sizeof path, "%s/a.bin.samples", dir);
    for (int kind = 0; kind < 3; kind++) {
        int mask = kind != SAMPLES_TEXT, labels = kind == SAMPLES_CLASSIFICATION;
        samples_file w = {kind, 7, 3, labels ? 3 : 0, OFF, mask ? MASK : NULL, labels ? LAB : NULL};
        pl_err e = {{0}};
        assert_int_equal(samples_write(path, &w, &e), 0);
        samples_file r;
        assert_int_equal(samples_read(&r, path, &e), 0);
        assert_int_equal(r.kind, kind);
        assert_memory_equal(r.off, OFF, sizeof OFF);
        if (mask)
            assert_memory_equal(r.mask, MASK, sizeof MASK);
        if (labels)
            assert_memory_equal(r.labels, LAB, sizeof LAB);
        assert_int_equal(samples_check_shard(&r, path, 7, "a.bin", &e), 0);
        samples_free(&r);
        unsigned char want[256];
        size_t n = image(want, kind, mask, labels), len;
        char *got = NULL;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        got = malloc(256);
        len = fread(got, 1, 256, f);
        fclose(f);
        assert_int_equal(len, n);
        assert_memory_equal(got, want, n);
        free(got);
    }
    char *p = samples_path("d/x.bin");
    assert_string_equal(p, "d/x.bin.samples");
    free(p);
}

/* Patches int `field` of the header (or a body byte when field < 0). */
static void expect_reject(int kind, int mask, int labels, int field, uint32_t v, size_t cut,
                          const char *want)
{
    unsigned char b[256];
    size_t n = image(b, kind, mask, labels);
    if (field >= 0)
        put32(b + 4 * field, v);
    else
        b[(size_t)(-field)] = (unsigned char)v;
    samples_file s;
    pl_err e = {{0}};
    assert_int_equal(samples_parse(&s, b, n - cut, "bad.samples", &e), -1);
    if (!strstr(e.msg, want) || strncmp(e.msg, "bad.samples: ", 13) != 0)
        fail_msg("message '%s' lacks '%s' or the file name", e.msg, want);
    assert_null(s.off);
}

static void test_rejections(void **state)
{
    (void)state;
    const int PC = SAMPLES_PROMPT_COMPLETION, CL = SAMPLES_CLASSIFICATION, TX = SAMPLES_TEXT;
    expect_reject(PC, 1, 0, 0, 20240520, 0, "bad magic 20240520 (expected 20250601)");
    expect_reject(PC, 1, 0, 1, 2, 0, "unsupported version 2 (expected 1)");
    expect_reject(PC, 1, 0, 2, 0xFFFFFFFFu, 0, "negative token count -1");
    expect_reject(PC, 1, 0, 3, 0, 0, "sample count 0 (expected >= 1)");
    expect_reject(PC, 1, 0, 3, 8, 0, "8 samples cannot fit in 7 tokens");
    expect_reject(PC, 1, 0, 4, 3, 0, "unknown kind 3");
    expect_reject(TX, 0, 0, 5, 2, 0, "has_mask is 2");
    expect_reject(PC, 1, 0, 5, 0, 7, "prompt-completion samples without a loss mask");
    expect_reject(TX, 0, 0, 6, 2, 0, "2 labels for text samples (expected 0)");
    expect_reject(CL, 1, 1, 6, 0, 12, "0 labels for classification samples (expected >= 1)");
    expect_reject(PC, 1, 0, 9, 5, 0, "header int 9 is 5 (reserved, expected 0)");
    expect_reject(PC, 1, 0, 0, 20250601, 1, "file is 86 bytes but its header (7 tokens, 3 samples, "
                                      "mask) needs 87");
    expect_reject(PC, 1, 0, 2, 6, 0, "needs 86");   /* a token count that is not the size's */
    expect_reject(PC, 1, 0, -64, 1, 0, "first offset is 1 (expected 0)");
    expect_reject(PC, 1, 0, -72, 2, 0, "offset 2 (2) is not above offset 1 (2): empty or reversed");
    expect_reject(PC, 1, 0, -76, 6, 0, "last offset is 6 but the file counts 7 tokens");
    expect_reject(PC, 1, 0, -82, 2, 0, "mask byte 2 is 2 (expected 0 or 1)");
    expect_reject(CL, 1, 1, -95, 3, 0, "label of sample 2 is 3, outside [0, 3)");
    unsigned char b[8] = {0};
    samples_file s;
    pl_err e = {{0}};
    assert_int_equal(samples_parse(&s, b, 8, "tiny.samples", &e), -1);
    assert_string_equal(e.msg, "tiny.samples: file is 8 bytes, shorter than the 64-byte samples header");
    assert_int_equal(samples_read(&s, "/nonexistent/x.samples", &e), -1);
    assert_non_null(strstr(e.msg, "/nonexistent/x.samples"));
}

static void test_against_shard_and_writer(void **state)
{
    (void)state;
    samples_file s = {SAMPLES_PROMPT_COMPLETION, 7, 3, 0, OFF, MASK, NULL};
    pl_err e = {{0}};
    assert_int_equal(samples_check_shard(&s, "d.bin.samples", 8, "d.bin", &e), -1);
    assert_string_equal(e.msg, "d.bin.samples: counts 7 tokens but its shard d.bin has 8");
    const char *dir = tu_tmpdir("samples_w");
    char path[600];
    snprintf(path, sizeof path, "%s/w.samples", dir);
    uint32_t bad[4] = {0, 3, 3, 7};
    samples_file w = {SAMPLES_PROMPT_COMPLETION, 7, 3, 0, bad, MASK, NULL};
    assert_int_equal(samples_write(path, &w, &e), -1);
    assert_non_null(strstr(e.msg, "offset 2 (3) is not above offset 1 (3)"));
    samples_file nomask = {SAMPLES_PROMPT_COMPLETION, 7, 3, 0, OFF, NULL, NULL};
    assert_int_equal(samples_write(path, &nomask, &e), -1);
    assert_non_null(strstr(e.msg, "without a loss mask"));
    samples_file nolab = {SAMPLES_CLASSIFICATION, 7, 3, 3, OFF, NULL, NULL};
    assert_int_equal(samples_write(path, &nolab, &e), -1);
    assert_non_null(strstr(e.msg, "3 labels but no label array"));
    FILE *f = fopen(path, "rb");
    assert_null(f);   /* nothing written by a refused write */
}

/* ---- JSON Lines ---- */

static void test_jsonl(void **state)
{
    (void)state;
    const char *text = "{\"a\": \"x\", \"n\": 3}\n\n  \t\n{\"a\": \"y\\n\\u00e9\"}\r\n{\"a\": 1}";
    jsonl_reader r;
    pl_err e = {{0}};
    const char *s;
    size_t len;
    jsonl_from_buffer(&r, text, strlen(text), "in.jsonl");
    assert_int_equal(jsonl_next(&r, &e), 1);
    assert_int_equal(r.line, 1);
    assert_int_equal(jsonl_string(&r, "a", &s, &len, &e), 0);
    assert_string_equal(s, "x");
    assert_true(jsonl_has(&r, "n"));
    assert_false(jsonl_has(&r, "z"));
    assert_int_equal(jsonl_string(&r, "n", &s, &len, &e), -1);
    assert_string_equal(e.msg, "in.jsonl:1: field \"n\" is not a string");
    assert_int_equal(jsonl_next(&r, &e), 1);
    assert_int_equal(r.line, 4);   /* blank lines skipped, still counted */
    assert_int_equal(jsonl_string(&r, "a", &s, &len, &e), 0);
    assert_string_equal(s, "y\n\xc3\xa9");
    assert_int_equal(len, 4);
    assert_int_equal(jsonl_next(&r, &e), 1);   /* last line without a newline */
    assert_int_equal(r.line, 5);
    assert_int_equal(jsonl_string(&r, "b", &s, &len, &e), -1);
    assert_string_equal(e.msg, "in.jsonl:5: missing field \"b\"");
    assert_int_equal(jsonl_next(&r, &e), 0);
    jsonl_close(&r);
    static const char *const bad[][2] = {
        {"{\"a\": 1}\n{\"a\": }\n", "in.jsonl:2: not valid JSON"},
        {"\"str\"\n", "in.jsonl:1: not a JSON object"},
        {"{\"a\": 1} {\"b\": 2}\n", "in.jsonl:1: text after the JSON value"},
        {"{\"a\": 1\n}\n", "in.jsonl:1: not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jsonl_from_buffer(&r, bad[i][0], strlen(bad[i][0]), "in.jsonl");
        int rc;
        while ((rc = jsonl_next(&r, &e)) == 1)
            ;
        assert_int_equal(rc, -1);
        if (strncmp(e.msg, bad[i][1], strlen(bad[i][1])) != 0)
            fail_msg("'%s': got '%s', expected '%s'", bad[i][0], e.msg, bad[i][1]);
        jsonl_close(&r);
    }
}

/* ---- one line per error ---- */

static int bytes_encode(void *ctx, const char *text, size_t len, uint32_t **ids, size_t *n,
                        size_t *cap, pl_err *e)
{
    (void)ctx;
    if (*n + len > *cap) {
        uint32_t *p = realloc(*ids, (*n + len) * sizeof *p);
        if (!p)
            return pl_errf(e, "out of memory");
        *ids = p, *cap = *n + len;
    }
    for (size_t i = 0; i < len; i++)
        (*ids)[(*n)++] = (unsigned char)text[i];
    return 0;
}

static void test_error_one_line(void **state)
{
    (void)state;
    pl_err e;
    pl_errf(&e, "f: [%s]", "a\nb\r\tc\x01\x7f" "d\\n");
    assert_string_equal(e.msg, "f: [a\\nb\\r\\tc\\x01\\x7fd\\n]");
    /* cut at the buffer, never inside an escape */
    char many[PL_ERR_LEN];
    memset(many, '\n', sizeof many - 1);
    many[sizeof many - 1] = 0;
    pl_errf(&e, "x%s", many);
    assert_int_equal(strlen(e.msg), 1 + 2 * ((PL_ERR_LEN - 2) / 2));
    assert_null(strchr(e.msg, '\n'));
    assert_int_equal(e.msg[strlen(e.msg) - 1], 'n');

    /* a label quoted back from a JSON line, newline and all */
    const char *text = "{\"text\": \"good\", \"label\": \"pos\"}\n"
                       "{\"text\": \"god\", \"label\": \" 2+:?\\n\"}\n";
    task_options o;
    task_options_default(&o);
    o.kind = SAMPLES_CLASSIFICATION;
    o.labels = "neg,pos";
    o.encode = bytes_encode;
    jsonl_reader r;
    jsonl_from_buffer(&r, text, strlen(text), "cls.jsonl");
    task_data d;
    assert_int_equal(task_build(&d, &r, &o, &e), -1);
    jsonl_close(&r);
    assert_string_equal(e.msg, "cls.jsonl:2: label \" 2+:?\\n\" is not in --labels neg,pos");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_parse),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_against_shard_and_writer),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_error_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
