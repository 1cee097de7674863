/* fuzz_shard.c - libFuzzer target for the token-shard parser.
 *
 * Not a cmocka test (tests/CMakeLists.txt only picks up test_*.c).  Build and
 * run: `FUZZ_SECONDS=60 tests/run_fuzz.sh fuzz_shard` (clang, libFuzzer,
 * ASan, UBSan; seeds from tests/corpus/shard).
 *
 * Any input must either be rejected with a one-line message or parse into a
 * shard whose every token can be read; a parsed shard must also satisfy the
 * size identity the parser promises. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shard_file s;
    pl_err e = {{0}};
    if (shard_parse(&s, data, size, "fuzz", &e) != 0) {
        if (e.msg[0] == 0 || s.path != NULL)
            abort();   /* a rejection must explain itself and leave s empty */
        return 0;
    }
    if (1024 + s.ntok * (size_t)s.tok_bytes != size)
        abort();
    uint32_t acc = 0;
    for (size_t i = 0; i < s.ntok; i++)
        acc ^= shard_token(&s, i);
    if (s.tok_bytes == 2 && acc > 0xFFFF)
        abort();
    shard_close(&s);
    return 0;
}
