/* fuzz_tok_load.c - libFuzzer target for the tokenizer.json loader.
 *
 * Not a cmocka test.  tests/run_fuzz.sh builds it with clang (ASan, UBSan)
 * with common/text/*.c, PCRE2 and utf8proc, seeds from tests/corpus/tok_load/.
 *
 * Any input must either be refused with a one-line message naming the label
 * or load into a tokenizer that encodes a fixed text and the input itself
 * (invalid UTF-8 replaced) into ids below its vocabulary size, and decodes
 * them (with and without special tokens) into a NUL-terminated string. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_encode_decode(const tokenizer *t, tok_state *s, const char *text, size_t len)
{
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    pl_err e = {{0}};
    if (tok_encode(t, s, text, len, (int)(len & 1), 1, &ids, &n, &cap, &e) != 0) {
        if (e.msg[0] == 0 || strchr(e.msg, '\n'))
            abort(); /* a refusal (a regex resource limit) explains itself */
        free(ids);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= tok_vocab_size(t))
            abort();
    for (int skip = 0; skip < 2; skip++) {
        char *out = NULL;
        size_t olen = 0;
        if (tok_decode(t, ids, n, skip, &out, &olen, &e) != 0) {
            if (e.msg[0] == 0)
                abort();
            continue;
        }
        if (!out || out[olen] != 0)
            abort();
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char sample[] = "Hello world, it's 2024!  <s>Caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 "
                                 "\xF0\x9F\x98\x80\t\n x1 [CLS] \xC4\xB0 ##ing";
    tokenizer *t = NULL;
    pl_err e = {{0}};
    if (tok_load_json(&t, (const char *)data, size, "fuzz.json", &e) != 0) {
        if (t != NULL || strncmp(e.msg, "fuzz.json", 9) != 0 || strchr(e.msg, '\n'))
            abort();
        return 0;
    }
    tok_state *s = tok_state_new(t);
    fuzz_encode_decode(t, s, sample, sizeof sample - 1);
    fuzz_encode_decode(t, s, (const char *)data, size < 4096 ? size : 4096);
    tok_state_free(s);
    tok_free(t);
    return 0;
}
