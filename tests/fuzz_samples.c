/* fuzz_samples.c - libFuzzer target for the sample sidecar reader
 * (common/io/samples.h).
 *
 * Not a cmocka test.  Build and run: `FUZZ_SECONDS=60 tests/run_fuzz.sh
 * fuzz_samples` (clang, libFuzzer, ASan, UBSan; seeds from
 * tests/corpus/samples).
 *
 * Any input must be rejected with a one-line message that names the file
 * and leaves the struct empty, or parse into samples that keep every promise
 * of the format: offsets from 0 rising to n_tokens, mask bytes 0/1, labels in
 * range; and a parsed file must write back to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "samples.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The written file's bytes equal the input (the format has one spelling). */
static void check_rewrite(const samples_file *s, const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_samples.%d", (int)getpid());
    pl_err e = {{0}};
    if (samples_write(path, s, &e) != 0)
        abort();
    FILE *f = fopen(path, "rb");
    unsigned char *b = malloc(size + 1);
    size_t n = f && b ? fread(b, 1, size + 1, f) : 0;
    if (f)
        fclose(f);
    unlink(path);
    if (n != size || memcmp(b, data, size) != 0)
        abort();
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    samples_file s;
    pl_err e = {{0}};
    if (samples_parse(&s, data, size, "fuzz", &e) != 0) {
        if (strncmp(e.msg, "fuzz: ", 6) != 0 || strchr(e.msg, '\n') || s.off != NULL)
            abort();
        return 0;
    }
    if (s.off[0] != 0 || s.off[s.n_samples] != s.n_tokens)
        abort();
    size_t counted = 0;
    for (size_t i = 0; i < s.n_samples; i++) {
        if (s.off[i + 1] <= s.off[i])
            abort();
        counted += samples_counted(&s, i);
        if (s.labels && (s.labels[i] < 0 || s.labels[i] >= s.n_labels))
            abort();
    }
    if (counted > s.n_tokens)
        abort();
    for (size_t j = 0; s.mask && j < s.n_tokens; j++)
        if (s.mask[j] > 1)
            abort();
    check_rewrite(&s, data, size);
    samples_free(&s);
    return 0;
}
