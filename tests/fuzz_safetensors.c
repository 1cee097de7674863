/* fuzz_safetensors.c - libFuzzer target for the safetensors reader.
 *
 * Not a cmocka test (tests/CMakeLists.txt only builds tests/test_*.c).  Build
 * and run: `FUZZ_SECONDS=60 tests/run_fuzz.sh fuzz_safetensors` (clang,
 * libFuzzer, ASan, UBSan; the seeds in tests/corpus/safetensors are made by
 * tests/corpus/make_corpus.sh). */
#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file f;
    pl_err e;
    if (st_parse(&f, data, size, "fuzz.safetensors", &e) == 0) {
        /* Touch the first and last byte of every tensor, so ASan checks that
         * the promised spans lie inside the input, and convert a few values. */
        volatile uint8_t sink = 0;
        for (int i = 0; i < f.n; i++) {
            const st_tensor *t = &f.t[i];
            if (t->nbytes) {
                sink ^= ((const uint8_t *)t->data)[0];
                sink ^= ((const uint8_t *)t->data)[t->nbytes - 1];
                float tmp[4];
                size_t k = t->numel < 4 ? t->numel : 4;
                st_to_f32(tmp, t->data, t->dtype, k);
            }
            (void)st_find(&f, t->name);
        }
        for (int i = 0; i < f.n_meta; i++)
            (void)st_meta(&f, f.meta_keys[i]);
        (void)sink;
    }
    st_close(&f);
    return 0;
}
