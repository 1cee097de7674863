#!/usr/bin/env bash
# pslora tokenize --tokenizer bytes: the shard holds exactly the input's bytes
# (read back with od against the shard format of common/shard.h: 256 int32
# header of magic 20240520, version 1, count; then uint16 tokens), and
# --val-fraction F puts the last round(F * n) tokens in OUT_val (the "_val"
# before the extension of the last path component), the rest in OUT, as
# cli/cmd_tokenize.c documents.  Bad fractions leave no file.
. "$(dirname "$0")/lib.sh"

# header SHARD: "magic version count" of the shard's header
header() { od -An -tu4 -N12 "$1" | xargs; }
# tokens SHARD: one token a line; bytes: stdin's byte values, one a line
tokens() { tail -c +1025 "$1" | od -An -v -w2 -tu2 | tr -d ' '; }
bytes() { od -An -v -w1 -tu1 | tr -d ' '; }

# every byte value, then text
for i in $(seq 0 255); do printf "\\$(printf %03o "$i")"; done > all.txt
head -c 3000 /usr/share/common-licenses/GPL-3 >> all.txt
n=$(stat -c %s all.txt)
[ "$n" = 3256 ] || fail "input has $n bytes"

"$PSLORA" tokenize --tokenizer bytes --in all.txt --out all.bin > out.txt || fail "tokenize: $(cat out.txt)"
[ "$(header all.bin)" = "20240520 1 $n" ] || fail "all.bin header: $(header all.bin)"
[ "$(stat -c %s all.bin)" = $((1024 + 2 * n)) ] || fail "all.bin size $(stat -c %s all.bin)"
cmp <(tokens all.bin) <(bytes < all.txt) || fail "all.bin tokens are not the input's bytes"
[ ! -e all_val.bin ] || fail "a _val shard without --val-fraction"
grep -qx "all.bin: $n tokens" out.txt || fail "report: $(cat out.txt)"
ok "bytes: $n tokens = the input's bytes (all 256 values)"

# --val-fraction 0.25 of 3256: the last 814 tokens to all_val.bin
"$PSLORA" tokenize --in all.txt --out split.bin --val-fraction 0.25 > out.txt || fail "split: $(cat out.txt)"
[ "$(header split.bin)" = "20240520 1 2442" ] || fail "split.bin header: $(header split.bin)"
[ "$(header split_val.bin)" = "20240520 1 814" ] || fail "split_val.bin header: $(header split_val.bin)"
cmp <(tokens split.bin) <(head -c 2442 all.txt | bytes) || fail "split.bin != first 2442 bytes"
cmp <(tokens split_val.bin) <(tail -c 814 all.txt | bytes) || fail "split_val.bin != last 814 bytes"
ok "--val-fraction 0.25: 2442 + 814, the val shard the input's tail"

# rounding: 0.7 of 10 is 7 (despite 0.7f < 0.7); no extension: OUT_val; a
# dot in a directory name is not an extension
printf 'abcdefghij' > ten.txt
mkdir -p d.x
"$PSLORA" tokenize --in ten.txt --out d.x/ten --val-fraction 0.7 >/dev/null || fail "ten"
[ "$(header d.x/ten)" = "20240520 1 3" ] && [ "$(header d.x/ten_val)" = "20240520 1 7" ] \
  || fail "0.7 of 10: $(header d.x/ten) / $(header d.x/ten_val 2>/dev/null)"
[ "$(tokens d.x/ten_val | xargs)" = "100 101 102 103 104 105 106" ] || fail "ten_val: $(tokens d.x/ten_val | xargs)"
ok "0.7 of 10 bytes: 3 + 7 (d.x/ten, d.x/ten_val)"

# fractions that leave a part empty, or >= 1: one line, no output
expect_fail 1 '^pslora tokenize: --val-fraction: 0.01 of 10 tokens leaves no validation tokens$' \
  "$PSLORA" tokenize --in ten.txt --out bad.bin --val-fraction 0.01
expect_fail 1 '^pslora tokenize: --val-fraction: 0.99 of 10 tokens leaves no training tokens$' \
  "$PSLORA" tokenize --in ten.txt --out bad.bin --val-fraction 0.99
expect_fail 2 '^pslora tokenize: --val-fraction: must be >= 0 and < 1, got 1$' \
  "$PSLORA" tokenize --in ten.txt --out bad.bin --val-fraction 1
[ ! -e bad.bin ] && [ ! -e bad_val.bin ] || fail "a refused split left output"
ok "bad fractions refused, nothing written"
echo "cli_tokenize: all passed"
