/* test_checkpoint.c - common/io/checkpoint.c: the all-or-nothing writer
 * (rename, latest, pruning, leftovers of killed writes), round trips of
 * trainer_state.json and optimizer.safetensors (bit for bit), the resume
 * comparison, and every rejection of the readers with a check that the
 * message names the file and the problem. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------- */

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void must_mkdir(const char *path)
{
    if (mkdir(path, 0755) != 0)
        fail_msg("cannot mkdir %s", path);
}

/* Fails unless e names `name` and says `want`. */
static void assert_msg(const pl_err *e, const char *name, const char *want)
{
    if ((name && !strstr(e->msg, name)) || !strstr(e->msg, want))
        fail_msg("message '%s' should name '%s' and say '%s'", e->msg, name ? name : "", want);
    if (strchr(e->msg, '\n'))
        fail_msg("message '%s' is more than one line", e->msg);
}

/* ---- trainer_state.json text with one field replaced ------------------- */

static const char *const BASE[][2] = {
    {"format", "\"pslora-trainer-state\""},
    {"format_version", "1"},
    {"step", "8"},
    {"version", "7"},
    {"updates", "7"},
    {"skipped", "1"},
    {"consecutive_skips", "0"},
    {"seed", "\"42\""},
    {"total_steps", "20"},
    {"workers", "2"},
    {"n_params", "19"},
    {"fingerprint", "{\"--rank\": \"8\", \"model.arch\": \"gpt2\"}"},
};
#define NBASE ((int)(sizeof BASE / sizeof BASE[0]))

/* The base state with key's value replaced by raw JSON (omitted when raw is
 * NULL; appended when key is not a base key).  Static buffer. */
static const char *state_with(const char *key, const char *raw)
{
    static char buf[1 << 16];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{");
    int found = 0, first = 1;
    for (int i = 0; i < NBASE; i++) {
        const char *v = BASE[i][1];
        if (key && strcmp(key, BASE[i][0]) == 0)
            v = raw, found = 1;
        if (!v)
            continue;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"%s\": %s", first ? "" : ", ",
                              BASE[i][0], v);
        first = 0;
    }
    if (key && !found)
        n += (size_t)snprintf(buf + n, sizeof buf - n, ", \"%s\": %s", key, raw);
    snprintf(buf + n, sizeof buf - n, "}");
    return buf;
}

static void expect_state_reject_len(const char *text, size_t len, const char *want)
{
    ckpt_state s;
    pl_err e = {{0}};
    memset(&s, 0x5a, sizeof s);
    assert_int_equal(ckpt_state_parse(&s, text, len, "mem/trainer_state.json", &e), -1);
    assert_msg(&e, "mem/trainer_state.json", want);
    assert_int_equal(s.n_fp, 0);   /* left empty */
    assert_null(s.fp);
}

static void expect_state_reject(const char *text, const char *want)
{
    expect_state_reject_len(text, strlen(text), want);
}

/* ---- names and listing ------------------------------------------------- */

static void test_parse_name(void **state)
{
    (void)state;
    long s = -1;
    assert_int_equal(ckpt_parse_name("step-00000012", &s), 0);
    assert_int_equal(s, 12);
    assert_int_equal(ckpt_parse_name("step-7", &s), 0);
    assert_int_equal(s, 7);
    assert_int_equal(ckpt_parse_name("step-999999999999999999", &s), 0);   /* 18 digits */
    assert_true(s == 999999999999999999L);
    const char *bad[] = {"step-", "step-12a", "step--1", "Step-1", "step-1.partial",
                         "step-0000000000000000001", "latest", "step- 1", "xstep-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (ckpt_parse_name(bad[i], &s) == 0)
            fail_msg("'%s' accepted as a checkpoint name", bad[i]);
    char p[64];
    ckpt_path(p, sizeof p, "run", 42);
    assert_string_equal(p, "run/checkpoints/step-00000042");
}

static void test_list(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_list");
    char p[800];
    long *steps;
    int n = -1;
    pl_err e = {{0}};
    assert_int_equal(ckpt_list(out, &steps, &n, &e), 0);   /* no checkpoints dir */
    assert_int_equal(n, 0);
    snprintf(p, sizeof p, "%s/checkpoints", out);
    must_mkdir(p);
    const char *dirs[] = {"step-00000009", "step-100000000", "step-00000010", "step-3",
                          "step-00000004.partial", "other"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s/checkpoints/%s", out, dirs[i]);
        must_mkdir(p);
    }
    snprintf(p, sizeof p, "%s/checkpoints/step-00000011", out);   /* a file, not a dir */
    tu_write_file(p, "x", 1);
    snprintf(p, sizeof p, "%s/checkpoints/step-00000012", out);   /* a symlink to a dir */
    assert_int_equal(symlink("step-00000009", p), 0);
    assert_int_equal(ckpt_list(out, &steps, &n, &e), 0);
    assert_int_equal(n, 4);
    long want[] = {100000000, 10, 9, 3};   /* numeric order, newest first */
    for (int i = 0; i < 4; i++)
        assert_int_equal(steps[i], want[i]);
    free(steps);
}

static void test_latest_rejects(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_latest");
    char p[800];
    long s;
    pl_err e = {{0}};
    assert_int_equal(ckpt_latest(out, &s, &e), -1);
    assert_msg(&e, "checkpoints/latest", "No such file");
    snprintf(p, sizeof p, "%s/checkpoints", out);
    must_mkdir(p);
    snprintf(p, sizeof p, "%s/checkpoints/latest", out);
    assert_int_equal(symlink("../../etc", p), 0);
    assert_int_equal(ckpt_latest(out, &s, &e), -1);
    assert_msg(&e, "checkpoints/latest", "not a step-NNNNNNNN directory");
}

/* ---- the writer -------------------------------------------------------- */

static const ckpt_tensor TENS[] = {
    {"base_model.model.h.0.c_attn.lora_A.weight", {2, 3}, 0},
    {"base_model.model.h.0.c_attn.lora_B.weight", {4, 2}, 6},
    {"base_model.model.h.1.c_attn.lora_A.weight", {1, 5}, 14},
};
#define NT 3
#define NP 19

static ckpt_kv FP[] = {{"--rank", "8"}, {"model.arch", "gpt2"}, {"--steps", "20"}};

static ckpt_state make_state(long step)
{
    ckpt_state s = {step, step - 1, step - 1, 1, 0, 1000000000000000003L, 20, 2, NP, 3, FP};
    return s;
}

/* Writes a whole checkpoint of `step` whose m holds `fill` everywhere. */
static void write_ckpt(const char *out, long step, float fill, long keep)
{
    float m[NP], v[NP];
    for (int i = 0; i < NP; i++)
        m[i] = fill, v[i] = fill * 2;
    ckpt_writer w;
    pl_err e = {{0}};
    ckpt_state s = make_state(step);
    if (ckpt_begin(&w, out, step, &e) || ckpt_optim_write(&w, TENS, NT, "adamw", m, v, &e) ||
        ckpt_state_write(&w, &s, &e) || ckpt_commit(&w, keep, &e))
        fail_msg("write of step %ld: %s", step, e.msg);
}

static void test_write_round_trip(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_rt");
    float m[NP], v[NP], m2[NP], v2[NP];
    uint32_t nan_bits = 0x7fc00123u, neg_zero = 0x80000000u;
    for (int i = 0; i < NP; i++)
        m[i] = (float)i * 0.37f - 2.0f, v[i] = 1.0f / (float)(i + 1);
    memcpy(&m[3], &nan_bits, 4);
    memcpy(&v[5], &neg_zero, 4);
    m[7] = INFINITY;
    ckpt_writer w;
    pl_err e = {{0}};
    ckpt_state s = make_state(8);
    assert_int_equal(ckpt_begin(&w, out, 8, &e), 0);
    assert_true(exists(w.tmp));
    assert_non_null(strstr(w.tmp, "checkpoints/step-00000008.partial"));
    assert_int_equal(ckpt_optim_write(&w, TENS, NT, "adamw", m, v, &e), 0);
    assert_int_equal(ckpt_state_write(&w, &s, &e), 0);
    assert_int_equal(ckpt_commit(&w, 3, &e), 0);
    assert_false(exists(w.tmp));

    char dir[800];
    ckpt_path(dir, sizeof dir, out, 8);
    ckpt_state r;
    assert_int_equal(ckpt_state_read(&r, dir, &e), 0);
    assert_int_equal(r.step, 8);
    assert_int_equal(r.version, 7);
    assert_int_equal(r.updates, 7);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(r.consecutive_skips, 0);
    assert_true(r.seed == 1000000000000000003L);   /* beyond 2^53: kept as a string */
    assert_int_equal(r.total_steps, 20);
    assert_int_equal(r.workers, 2);
    assert_int_equal(r.n_params, NP);
    assert_int_equal(r.n_fp, 3);
    for (int i = 0; i < 3; i++)
        assert_string_equal(ckpt_state_get(&r, FP[i].key), FP[i].value);
    assert_null(ckpt_state_get(&r, "--alpha"));
    ckpt_state_free(&r);

    memset(m2, 0, sizeof m2), memset(v2, 0, sizeof v2);
    assert_int_equal(ckpt_optim_read(dir, TENS, NT, "adamw", m2, v2, &e), 0);
    assert_memory_equal(m, m2, sizeof m);   /* bit for bit: NaN payload, -0, inf */
    assert_memory_equal(v, v2, sizeof v);

    long step;
    assert_int_equal(ckpt_latest(out, &step, &e), 0);
    assert_int_equal(step, 8);
}

static void test_keep_and_replace(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_keep");
    for (long s = 1; s <= 5; s++)
        write_ckpt(out, s, (float)s, 2);
    long *steps, latest;
    int n;
    pl_err e = {{0}};
    assert_int_equal(ckpt_list(out, &steps, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_int_equal(steps[0], 5);
    assert_int_equal(steps[1], 4);
    free(steps);
    assert_int_equal(ckpt_latest(out, &latest, &e), 0);
    assert_int_equal(latest, 5);

    /* the same step again replaces it */
    write_ckpt(out, 5, 50.0f, 2);
    char dir[800];
    float m[NP], v[NP];
    ckpt_path(dir, sizeof dir, out, 5);
    assert_int_equal(ckpt_optim_read(dir, TENS, NT, "adamw", m, v, &e), 0);
    assert_true(m[0] == 50.0f && v[NP - 1] == 100.0f);
    char stale[900];
    snprintf(stale, sizeof stale, "%s.stale", dir);
    assert_false(exists(stale));

    /* an older step (a resume from step 3): newer ones are dropped */
    write_ckpt(out, 3, 3.0f, 2);
    assert_int_equal(ckpt_list(out, &steps, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(steps[0], 3);
    free(steps);
    assert_int_equal(ckpt_latest(out, &latest, &e), 0);
    assert_int_equal(latest, 3);
}

/* A write that never commits (killed) is invisible, and the next write removes it. */
static void test_killed_write_and_leftovers(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_kill");
    write_ckpt(out, 2, 2.0f, 3);
    float m[NP] = {0}, v[NP] = {0};
    ckpt_writer w;
    pl_err e = {{0}};
    assert_int_equal(ckpt_begin(&w, out, 4, &e), 0);
    assert_int_equal(ckpt_optim_write(&w, TENS, NT, "adamw", m, v, &e), 0);
    /* "killed" here: no state, no commit */
    long *steps, latest;
    int n;
    assert_int_equal(ckpt_list(out, &steps, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_int_equal(steps[0], 2);
    free(steps);
    assert_int_equal(ckpt_latest(out, &latest, &e), 0);
    assert_int_equal(latest, 2);

    char p[800], keep[800];
    snprintf(p, sizeof p, "%s/checkpoints/step-00000001.stale", out);
    must_mkdir(p);
    snprintf(p, sizeof p, "%s/checkpoints/step-00000001.stale/f", out);
    tu_write_file(p, "x", 1);
    snprintf(keep, sizeof keep, "%s/checkpoints/notes.partial", out);   /* not ours */
    must_mkdir(keep);
    write_ckpt(out, 6, 6.0f, 3);
    snprintf(p, sizeof p, "%s/checkpoints/step-00000004.partial", out);
    assert_false(exists(p));
    snprintf(p, sizeof p, "%s/checkpoints/step-00000001.stale", out);
    assert_false(exists(p));
    assert_true(exists(keep));

    /* ckpt_abort removes its own partial directory */
    assert_int_equal(ckpt_begin(&w, out, 7, &e), 0);
    ckpt_abort(&w);
    assert_false(exists(w.tmp));
    assert_int_equal(ckpt_latest(out, &latest, &e), 0);
    assert_int_equal(latest, 6);
}

static void test_write_errors(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_werr");
    char p[800];
    ckpt_writer w;
    pl_err e = {{0}};
    snprintf(p, sizeof p, "%s/missing", out);
    assert_int_equal(ckpt_begin(&w, p, 1, &e), -1);
    assert_msg(&e, "missing/checkpoints", "cannot create");
    snprintf(p, sizeof p, "%s/checkpoints", out);   /* a file where the dir goes */
    tu_write_file(p, "x", 1);
    assert_int_equal(ckpt_begin(&w, out, 1, &e), -1);
    assert_msg(&e, "checkpoints", "cannot create");

    const char *out2 = tu_tmpdir("ck_werr2");
    ckpt_state s = make_state(3);
    assert_int_equal(ckpt_begin(&w, out2, 4, &e), 0);
    assert_int_equal(ckpt_state_write(&w, &s, &e), -1);   /* state of another step */
    assert_msg(&e, "step-00000004.partial", "state of step 3");
    ckpt_abort(&w);
}

/* ---- trainer_state.json: parse rejections ------------------------------ */

static void test_state_base_parses(void **state)
{
    (void)state;
    const char *t = state_with(NULL, NULL);
    ckpt_state s;
    pl_err e = {{0}};
    assert_int_equal(ckpt_state_parse(&s, t, strlen(t), "mem", &e), 0);
    assert_int_equal(s.step, 8);
    assert_int_equal(s.seed, 42);
    assert_int_equal(s.n_fp, 2);
    assert_string_equal(ckpt_state_get(&s, "model.arch"), "gpt2");
    ckpt_state_free(&s);
    /* not NUL-terminated: only len bytes are read */
    char *copy = malloc(strlen(t));
    memcpy(copy, t, strlen(t));
    assert_int_equal(ckpt_state_parse(&s, copy, strlen(t), "mem", &e), 0);
    ckpt_state_free(&s);
    free(copy);
}

static void test_state_rejects_structure(void **state)
{
    (void)state;
    expect_state_reject("", "not valid JSON");
    expect_state_reject("{\"step\": ", "not valid JSON");
    expect_state_reject("[1, 2]", "not a JSON object");
    expect_state_reject("\"text\"", "not a JSON object");
    expect_state_reject_len("{\"a\":1}\0garbage", 15, "holds a NUL byte");
    expect_state_reject(state_with("extra", "1"), "unknown key 'extra'");
    expect_state_reject(state_with("step", "8, \"step\": 9"), "duplicate key 'step'");
    expect_state_reject(state_with("format", "\"other\""), "format must be \"pslora-trainer-state\"");
    expect_state_reject(state_with("format", NULL), "format must be");
    expect_state_reject(state_with("format_version", "2"), "format_version 2 is not supported");
    expect_state_reject(state_with("format_version", "\"1\""), "format_version must be a whole number");
    /* more than 64 top-level entries */
    static char big[8192];
    size_t n = (size_t)snprintf(big, sizeof big, "{");
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"k%d\": 1", i ? ", " : "", i);
    snprintf(big + n, sizeof big - n, "}");
    expect_state_reject(big, "the top level has more than 64 entries");
}

static void test_state_rejects_counters(void **state)
{
    (void)state;
    const char *keys[] = {"step", "version", "updates", "skipped", "consecutive_skips",
                          "total_steps", "workers", "n_params"};
    const char *bad[] = {"-1", "1.5", "9007199254740992", "9007199254740993", "1e300", "\"8\"",
                         "null", "true", "[8]", "-0.5"};
    char want[80];
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        snprintf(want, sizeof want, "%s missing", keys[k]);
        expect_state_reject(state_with(keys[k], NULL), want);
        snprintf(want, sizeof want, "%s must be a whole number in [0, 2^53)", keys[k]);
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++)
            expect_state_reject(state_with(keys[k], bad[b]), want);
    }
    expect_state_reject(state_with("seed", "42"), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\"4x\""), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\"-3\""), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\" 3\""), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\"+3\""), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\"\""), "seed must be a string of decimal digits");
    expect_state_reject(state_with("seed", "\"99999999999999999999\""), "seed must be");
    expect_state_reject(state_with("seed", NULL), "seed must be");
    expect_state_reject(state_with("workers", "0"), "workers must be at least 1");
    expect_state_reject(state_with("consecutive_skips", "2"), "consecutive_skips 2 exceeds skipped 1");
    expect_state_reject(state_with("step", "21"), "step 21 is past total_steps 20");
}

static void test_state_rejects_fingerprint(void **state)
{
    (void)state;
    expect_state_reject(state_with("fingerprint", NULL), "fingerprint missing");
    expect_state_reject(state_with("fingerprint", "[\"a\"]"), "fingerprint must be an object of strings");
    expect_state_reject(state_with("fingerprint", "{\"--rank\": 8}"), "fingerprint entry '--rank' is not a string");
    expect_state_reject(state_with("fingerprint", "{\"\": \"8\"}"), "fingerprint key '' is empty");
    expect_state_reject(state_with("fingerprint", "{\"a\\nb\": \"8\"}"), "holds a control character");
    expect_state_reject(state_with("fingerprint", "{\"a\": \"x\\u0001y\"}"), "fingerprint value of 'a'");
    expect_state_reject(state_with("fingerprint", "{\"a\": \"1\", \"a\": \"2\"}"),
                        "fingerprint: duplicate key 'a'");
    static char key[CKPT_KEY_MAX + 2], buf[4096];
    memset(key, 'k', CKPT_KEY_MAX + 1);
    snprintf(buf, sizeof buf, "{\"%s\": \"1\"}", key);
    expect_state_reject(state_with("fingerprint", buf), "longer than 127 bytes");
    static char val[2048];
    memset(val, 'v', CKPT_VALUE_MAX + 1);
    val[CKPT_VALUE_MAX + 1] = 0;
    static char obj[2200];
    snprintf(obj, sizeof obj, "{\"a\": \"%s\"}", val);
    expect_state_reject(state_with("fingerprint", obj), "longer than 1023 bytes");
    /* too many entries */
    static char many[16384];
    size_t n = (size_t)snprintf(many, sizeof many, "{");
    for (int i = 0; i <= CKPT_MAX_KEYS; i++)
        n += (size_t)snprintf(many + n, sizeof many - n, "%s\"k%d\": \"v\"", i ? ", " : "", i);
    snprintf(many + n, sizeof many - n, "}");
    expect_state_reject(state_with("fingerprint", many), "fingerprint has more than 256 entries");
}

static void test_state_read_files(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("ck_read");
    char p[800];
    ckpt_state s;
    pl_err e = {{0}};
    assert_int_equal(ckpt_state_read(&s, dir, &e), -1);
    snprintf(p, sizeof p, "%s/trainer_state.json", dir);
    assert_msg(&e, p, "No such file");
    tu_write_file(p, "{\"step\": 1", 10);
    assert_int_equal(ckpt_state_read(&s, dir, &e), -1);
    assert_msg(&e, p, "not valid JSON");
    size_t big = CKPT_STATE_MAX_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    tu_write_file(p, buf, big);
    free(buf);
    assert_int_equal(ckpt_state_read(&s, dir, &e), -1);
    assert_msg(&e, p, "file too large");
    assert_int_equal(unlink(p), 0);
    must_mkdir(p);   /* a directory where the file goes */
    assert_int_equal(ckpt_state_read(&s, dir, &e), -1);
    assert_msg(&e, p, "not a regular file");
}

/* ---- the resume comparison --------------------------------------------- */

static int steps_may_change(const char *key) { return strcmp(key, "--steps") == 0; }

static void test_compare(void **state)
{
    (void)state;
    const char *t = state_with("fingerprint", "{\"--rank\": \"8\", \"--steps\": \"20\", \"model.arch\": \"gpt2\"}");
    ckpt_state s;
    pl_err e = {{0}};
    assert_int_equal(ckpt_state_parse(&s, t, strlen(t), "mem", &e), 0);
    ckpt_kv same[] = {{"model.arch", "gpt2"}, {"--steps", "20"}, {"--rank", "8"}};
    assert_int_equal(ckpt_state_compare(&s, same, 3, NULL, "D", &e), 0);   /* order free */
    ckpt_kv steps[] = {{"--rank", "8"}, {"--steps", "30"}, {"model.arch", "gpt2"}};
    assert_int_equal(ckpt_state_compare(&s, steps, 3, steps_may_change, "D", &e), 0);
    assert_int_equal(ckpt_state_compare(&s, steps, 3, NULL, "D", &e), -1);
    assert_string_equal(e.msg, "--resume: --steps differs: the checkpoint D has 20, this run has 30");
    ckpt_kv rank[] = {{"--rank", "4"}, {"--steps", "20"}, {"model.arch", "gpt2"}};
    assert_int_equal(ckpt_state_compare(&s, rank, 3, steps_may_change, "run/checkpoints/step-00000008", &e), -1);
    assert_string_equal(e.msg, "--resume: --rank differs: the checkpoint run/checkpoints/step-00000008 has 8, this run has 4");
    ckpt_kv fewer[] = {{"--rank", "8"}, {"--steps", "20"}};
    assert_int_equal(ckpt_state_compare(&s, fewer, 2, NULL, "D", &e), -1);
    assert_msg(&e, "D", "records model.arch = gpt2, which this run does not have");
    ckpt_kv more[] = {{"--rank", "8"}, {"--steps", "20"}, {"model.arch", "gpt2"}, {"--alpha", "16"}};
    assert_int_equal(ckpt_state_compare(&s, more, 4, NULL, "D", &e), -1);
    assert_msg(&e, "D", "does not record --alpha");
    ckpt_state_free(&s);
}

/* ---- optimizer.safetensors: rejections --------------------------------- */

/* Writes DIR/optimizer.safetensors from entries and metadata. */
static void write_optim(const char *dir, const st_entry *ent, int n, const char *fmt,
                        const char *opt)
{
    char p[800];
    const char *mk[2], *mv[2];
    int nm = 0;
    if (fmt)
        mk[nm] = "format", mv[nm++] = fmt;
    if (opt)
        mk[nm] = "optimizer", mv[nm++] = opt;
    pl_err e = {{0}};
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    if (st_write(p, ent, n, mk, mv, nm, &e) != 0)
        fail_msg("%s", e.msg);
}

/* The valid entries (m and v of TENS); names and data are static. */
static int valid_entries(st_entry *ent)
{
    static char names[2 * NT][128];
    static float data[64];
    for (int i = 0; i < NT; i++) {
        snprintf(names[2 * i], 128, "m.%s", TENS[i].name);
        snprintf(names[2 * i + 1], 128, "v.%s", TENS[i].name);
        ent[2 * i] = (st_entry){names[2 * i], ST_F32, 2, {TENS[i].shape[0], TENS[i].shape[1]}, data};
        ent[2 * i + 1] = (st_entry){names[2 * i + 1], ST_F32, 2, {TENS[i].shape[0], TENS[i].shape[1]}, data};
    }
    return 2 * NT;
}

static void expect_optim_reject(const char *dir, const char *want)
{
    float m[NP], v[NP];
    for (int i = 0; i < NP; i++)
        m[i] = v[i] = 7.0f;
    char p[800];
    pl_err e = {{0}};
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    assert_int_equal(ckpt_optim_read(dir, TENS, NT, "adamw", m, v, &e), -1);
    assert_msg(&e, p, want);
    for (int i = 0; i < NP; i++)   /* nothing copied */
        assert_true(m[i] == 7.0f && v[i] == 7.0f);
}

static void test_optim_rejects(void **state)
{
    (void)state;
    const char *dir = tu_tmpdir("ck_opt");
    st_entry ent[2 * NT];
    int n = valid_entries(ent);
    expect_optim_reject(dir, "No such file");
    write_optim(dir, ent, n, NULL, "adamw");
    expect_optim_reject(dir, "not a pslora optimizer file");
    write_optim(dir, ent, n, "pt", "adamw");
    expect_optim_reject(dir, "not a pslora optimizer file");
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "sgd");
    expect_optim_reject(dir, "holds the state of optimizer 'sgd', this run uses adamw");
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, NULL);
    expect_optim_reject(dir, "holds the state of optimizer '(none)'");
    write_optim(dir, ent, n - 1, CKPT_OPTIM_FORMAT, "adamw");
    expect_optim_reject(dir, "holds 5 tensors, expected 6");

    n = valid_entries(ent);
    ent[5].name = "v.something.else";
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    expect_optim_reject(dir, "tensor v.base_model.model.h.1.c_attn.lora_A.weight missing");

    n = valid_entries(ent);
    ent[2].dtype = ST_F16;
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    expect_optim_reject(dir, "tensor m.base_model.model.h.0.c_attn.lora_B.weight has dtype F16, expected F32");

    n = valid_entries(ent);
    ent[0].shape[0] = 3, ent[0].shape[1] = 2;   /* same count, transposed */
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    expect_optim_reject(dir, "tensor m.base_model.model.h.0.c_attn.lora_A.weight has the wrong shape (expected [2, 3])");

    n = valid_entries(ent);
    ent[1].ndim = 1, ent[1].shape[0] = 6;
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    expect_optim_reject(dir, "has the wrong shape");

    /* a truncated file: the safetensors reader names it */
    n = valid_entries(ent);
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    char p[800];
    snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
    assert_int_equal(truncate(p, 200), 0);
    expect_optim_reject(dir, "optimizer.safetensors");

    /* and the valid file is accepted */
    n = valid_entries(ent);
    write_optim(dir, ent, n, CKPT_OPTIM_FORMAT, "adamw");
    float m[NP], v[NP];
    pl_err e = {{0}};
    assert_int_equal(ckpt_optim_read(dir, TENS, NT, "adamw", m, v, &e), 0);
}

/* The per-tensor forms (a server's packed state): tensors written from
 * separate arrays read back flat at their offsets; a NULL destination is
 * checked but not written, the others are copied. */
static void test_optim_each(void **state)
{
    (void)state;
    const char *out = tu_tmpdir("ck_each");
    float a[NP], b[NP], flat_m[NP], flat_v[NP];
    for (int i = 0; i < NP; i++)
        a[i] = (float)i + 0.5f, b[i] = -(float)i;
    /* m of tensor i from a at a shifted place, v from b: not one flat vector */
    const float *m[NT] = {a + 10, a + 3, a + 1}, *v[NT] = {b + 4, b + 11, b};
    ckpt_writer w;
    pl_err e = {{0}};
    ckpt_state st = make_state(4);
    assert_int_equal(ckpt_begin(&w, out, 4, &e), 0);
    assert_int_equal(ckpt_optim_write_each(&w, TENS, NT, "adamw", m, v, &e), 0);
    assert_int_equal(ckpt_state_write(&w, &st, &e), 0);
    assert_int_equal(ckpt_commit(&w, 2, &e), 0);
    char dir[4200];
    ckpt_path(dir, sizeof dir, out, 4);
    assert_int_equal(ckpt_optim_read(dir, TENS, NT, "adamw", flat_m, flat_v, &e), 0);
    for (int t = 0; t < NT; t++) {
        size_t n = (size_t)(TENS[t].shape[0] * TENS[t].shape[1]);
        assert_memory_equal(flat_m + TENS[t].offset, m[t], n * sizeof(float));
        assert_memory_equal(flat_v + TENS[t].offset, v[t], n * sizeof(float));
    }
    float m0[6], v0[6], m2[5], v2[5];
    memset(m0, 0, sizeof m0), memset(v0, 0, sizeof v0);
    memset(m2, 0, sizeof m2), memset(v2, 0, sizeof v2);
    float *dm[NT] = {m0, NULL, m2}, *dv[NT] = {v0, NULL, v2};
    assert_int_equal(ckpt_optim_read_each(dir, TENS, NT, "adamw", dm, dv, &e), 0);
    assert_memory_equal(m0, m[0], sizeof m0);
    assert_memory_equal(v0, v[0], sizeof v0);
    assert_memory_equal(m2, m[2], sizeof m2);
    assert_memory_equal(v2, v[2], sizeof v2);
    /* a wrong optimizer is refused before anything is copied */
    memset(m0, 0, sizeof m0);
    assert_int_equal(ckpt_optim_read_each(dir, TENS, NT, "sgd", dm, dv, &e), -1);
    for (int i = 0; i < 6; i++)
        assert_true(m0[i] == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_name),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_latest_rejects),
        cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_keep_and_replace),
        cmocka_unit_test(test_killed_write_and_leftovers),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_state_base_parses),
        cmocka_unit_test(test_state_rejects_structure),
        cmocka_unit_test(test_state_rejects_counters),
        cmocka_unit_test(test_state_rejects_fingerprint),
        cmocka_unit_test(test_state_read_files),
        cmocka_unit_test(test_compare),
        cmocka_unit_test(test_optim_rejects),
        cmocka_unit_test(test_optim_each),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
