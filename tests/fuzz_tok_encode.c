/* fuzz_tok_encode.c - libFuzzer target: arbitrary bytes through the real
 * tokenizers (GPT-2, Llama 2, BERT-base-uncased).
 *
 * Not a cmocka test.  tests/run_fuzz.sh builds it with common/text and runs
 * it; the tokenizers come from the directories of tests/peers/fetch.sh:
 *   PSLORA_PEERS=build/peers FUZZ_SECONDS=60 tests/run_fuzz.sh fuzz_tok_encode
 * (or PSLORA_FUZZ_TOKENIZERS=path:path:... for other tokenizers).  A missing
 * tokenizer stops the run at start with a message: nothing is skipped.
 *
 * Input: byte 0 picks the tokenizer (mod their count) and the flags (bit 4
 * add_special, bit 5 replace_invalid, bit 6 skip_special on decode); the
 * rest is the text.  Every input must either be refused with a one-line
 * message (only invalid UTF-8 without replace_invalid) or give ids that are
 * all below the vocabulary size and that decode without error; no leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX 8

static tokenizer *fz_tok[FZ_MAX];
static tok_state *fz_state[FZ_MAX];
static int fz_n;

static void fz_load(const char *path)
{
    pl_err e = {{0}};
    if (fz_n == FZ_MAX || tok_load(&fz_tok[fz_n], path, &e) != 0) {
        fprintf(stderr, "fuzz_tok_encode: %s: %s (get the peers with: bash tests/peers/fetch.sh "
                "build/peers)\n", path, fz_n == FZ_MAX ? "too many tokenizers" : e.msg);
        exit(1);
    }
    fz_state[fz_n] = tok_state_new(fz_tok[fz_n]);
    fz_n++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *list = getenv("PSLORA_FUZZ_TOKENIZERS");
    char path[4096];
    if (list && *list) {
        for (const char *a = list; *a;) {
            size_t len = strcspn(a, ":");
            snprintf(path, sizeof path, "%.*s", (int)len, a);
            fz_load(path);
            a += len + (a[len] == ':');
        }
        return 0;
    }
    const char *peers = getenv("PSLORA_PEERS");
    static const char *const dirs[] = {"gpt2-json", "llama2", "bert-base-uncased"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", peers ? peers : "build/peers", dirs[i]);
        fz_load(path);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    int k = data[0] % fz_n, add = data[0] >> 4 & 1, replace = data[0] >> 5 & 1,
        skip = data[0] >> 6 & 1;
    const char *text = (const char *)data + 1;
    uint32_t *ids = NULL, vocab = tok_vocab_size(fz_tok[k]);
    size_t n = 0, cap = 0;
    pl_err e = {{0}};
    if (tok_encode(fz_tok[k], fz_state[k], text, size - 1, add, replace, &ids, &n, &cap, &e)) {
        /* Only invalid UTF-8 may be refused, and only when not replaced. */
        if (replace || !e.msg[0] || !strstr(e.msg, "UTF-8"))
            abort();
        free(ids);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= vocab)
            abort();
    char *out = NULL;
    size_t len = 0;
    if (tok_decode(fz_tok[k], ids, n, skip, &out, &len, &e) != 0 || !out || out[len] != '\0')
        abort();
    free(out);
    free(ids);
    return 0;
}
