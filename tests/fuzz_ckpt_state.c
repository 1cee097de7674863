/* fuzz_ckpt_state.c - libFuzzer target for the checkpoint readers
 * (common/io/checkpoint.h): every input goes through
 *   - ckpt_state_parse (trainer_state.json),
 *   - st_parse + ckpt_optim_check (optimizer.safetensors) against a small
 *     fixed adapter of three tensors,
 *   - ckpt_parse_name (checkpoint directory names).
 *
 * Build and run: `FUZZ_SECONDS=60 tests/run_fuzz.sh fuzz_ckpt_state` (clang,
 * libFuzzer, ASan, UBSan; seeds from tests/corpus/ckpt_state).  The seeds
 * were made by the same sources built with -DFUZZ_CKPT_SEEDS and
 * -fsanitize=address,undefined (no fuzzer), run as `SEEDS_BINARY DIR`.
 *
 * Besides crashes and sanitizer reports, the target traps when an invariant
 * breaks: an accepted state has its counters in [0, 2^53), consecutive
 * skips <= skips, printable bounded unique fingerprint entries, and survives
 * ckpt_state_format + ckpt_state_parse unchanged; an accepted optimizer file
 * yields exactly the floats of its tensors; a rejected input leaves one
 * NUL-terminated line naming the input and, for the optimizer, m and v
 * untouched. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static const ckpt_tensor TENS[] = {
    {"base_model.model.h.0.attn.c_attn.lora_A.weight", {2, 3}, 0},
    {"base_model.model.h.0.attn.c_attn.lora_B.weight", {4, 2}, 6},
    {"base_model.model.h.1.attn.c_attn.lora_A.weight", {1, 5}, 14},
};
#define NT 3
#define NP 19

static void check_line(const pl_err *e, const char *name)
{
    CHECK(memchr(e->msg, 0, sizeof e->msg) != NULL);
    CHECK(strchr(e->msg, '\n') == NULL);
    CHECK(strncmp(e->msg, name, strlen(name)) == 0);
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* Invariants of an accepted state, and its round trip. */
static void recheck_state(const ckpt_state *s)
{
    const long lim = 1L << 53;
    const long c[] = {s->step, s->version, s->updates, s->skipped, s->consecutive_skips,
                      s->total_steps, s->workers, s->n_params};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        CHECK(c[i] >= 0 && c[i] < lim);
    CHECK(s->seed >= 0 && s->workers >= 1 && s->consecutive_skips <= s->skipped);
    CHECK(s->step <= s->total_steps);
    CHECK(s->n_fp >= 0 && s->n_fp <= CKPT_MAX_KEYS);
    for (int i = 0; i < s->n_fp; i++) {
        CHECK(s->fp[i].key[0] && strlen(s->fp[i].key) <= CKPT_KEY_MAX);
        CHECK(strlen(s->fp[i].value) <= CKPT_VALUE_MAX);
        CHECK(printable(s->fp[i].key) && printable(s->fp[i].value));
        for (int j = 0; j < i; j++)
            CHECK(strcmp(s->fp[i].key, s->fp[j].key) != 0);
        CHECK(ckpt_state_get(s, s->fp[i].key) == s->fp[i].value);
    }
    char *text = ckpt_state_format(s);
    CHECK(text != NULL);
    ckpt_state r;
    pl_err e;
    CHECK(ckpt_state_parse(&r, text, strlen(text), "again", &e) == 0);
    CHECK(r.step == s->step && r.version == s->version && r.updates == s->updates);
    CHECK(r.skipped == s->skipped && r.consecutive_skips == s->consecutive_skips);
    CHECK(r.seed == s->seed && r.total_steps == s->total_steps && r.workers == s->workers);
    CHECK(r.n_params == s->n_params && r.n_fp == s->n_fp);
    for (int i = 0; i < s->n_fp; i++) {
        CHECK(strcmp(r.fp[i].key, s->fp[i].key) == 0);
        CHECK(strcmp(r.fp[i].value, s->fp[i].value) == 0);
    }
    ckpt_state_free(&r);
    free(text);
}

static void fuzz_state(const uint8_t *data, size_t size)
{
    ckpt_state s;
    pl_err e;
    if (ckpt_state_parse(&s, (const char *)data, size, "fuzz/trainer_state.json", &e) == 0) {
        recheck_state(&s);
        ckpt_state_free(&s);
    } else {
        check_line(&e, "fuzz/trainer_state.json");
        CHECK(s.n_fp == 0 && s.fp == NULL);
    }
}

static void fuzz_optim(const uint8_t *data, size_t size)
{
    st_file f;
    pl_err e;
    if (st_parse(&f, data, size, "fuzz/optimizer.safetensors", &e) != 0) {
        check_line(&e, "fuzz/optimizer.safetensors");
        return;
    }
    float m[NP], v[NP];
    memset(m, 0xA5, sizeof m);
    memset(v, 0xA5, sizeof v);
    if (ckpt_optim_check(&f, TENS, NT, "adamw", m, v, &e) == 0) {
        for (int i = 0; i < NT; i++) {
            char key[256];
            snprintf(key, sizeof key, "m.%s", TENS[i].name);
            const st_tensor *t = st_find(&f, key);
            CHECK(t && t->nbytes == (size_t)(TENS[i].shape[0] * TENS[i].shape[1]) * 4);
            CHECK(memcmp(m + TENS[i].offset, t->data, t->nbytes) == 0);
            snprintf(key, sizeof key, "v.%s", TENS[i].name);
            t = st_find(&f, key);
            CHECK(t && memcmp(v + TENS[i].offset, t->data, t->nbytes) == 0);
        }
    } else {
        check_line(&e, "fuzz/optimizer.safetensors");
        for (int i = 0; i < NP; i++) {   /* untouched */
            uint32_t a, b;
            memcpy(&a, &m[i], 4), memcpy(&b, &v[i], 4);
            CHECK(a == 0xA5A5A5A5u && b == 0xA5A5A5A5u);
        }
    }
    st_close(&f);
}

static void fuzz_name(const uint8_t *data, size_t size)
{
    char name[64];
    size_t n = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, n);
    name[n] = 0;
    long step;
    if (ckpt_parse_name(name, &step) == 0) {
        char again[64];
        CHECK(step >= 0);
        snprintf(again, sizeof again, "step-%ld", step);
        long s2;
        CHECK(ckpt_parse_name(again, &s2) == 0 && s2 == step);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_state(data, size);
    fuzz_optim(data, size);
    fuzz_name(data, size);
    return 0;
}

#ifdef FUZZ_CKPT_SEEDS
/* Writes a valid trainer_state.json and optimizer.safetensors (through the
 * real writer) into the directory argv[1]. */
int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    char tmp[] = "/tmp/fuzz_ckpt_seedsXXXXXX";
    if (!mkdtemp(tmp))
        return 1;
    ckpt_kv fp[] = {{"--rank", "8"}, {"--lr", "0.003"}, {"model.arch", "gpt2"},
                    {"adapter.layout", "6 tensors 0c92ff53f4109665"}, {"workers", "2"}};
    ckpt_state s = {12, 11, 11, 1, 0, 7, 20, 2, NP, 5, fp};
    float m[NP], v[NP];
    for (int i = 0; i < NP; i++)
        m[i] = (float)i * 0.25f - 1.0f, v[i] = (float)i * 0.01f;
    ckpt_writer w;
    pl_err e;
    if (ckpt_begin(&w, tmp, 12, &e) || ckpt_optim_write(&w, TENS, NT, "adamw", m, v, &e) ||
        ckpt_state_write(&w, &s, &e) || ckpt_commit(&w, 1, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "cp %s/checkpoints/step-00000012/trainer_state.json %s/trainer_state.json && "
             "cp %s/checkpoints/step-00000012/optimizer.safetensors %s/optimizer.safetensors && "
             "rm -r %s",
             tmp, argv[1], tmp, argv[1], tmp);
    return system(cmd) == 0 ? 0 : 1;
}
#endif
