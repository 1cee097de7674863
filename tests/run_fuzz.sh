#!/usr/bin/env bash
# run_fuzz.sh - builds every tests/fuzz_*.c with clang and libFuzzer (ASan +
# UBSan) and runs each for FUZZ_SECONDS (default 60) from its seed corpus
# tests/corpus/<name without fuzz_>/.  Prints each target's execution count;
# exits non-zero on any finding (crash, sanitizer report, trap, timeout,
# out-of-memory) or build failure.
#
#   tests/run_fuzz.sh                 # all targets, 60 s each
#   FUZZ_SECONDS=5 tests/run_fuzz.sh fuzz_msg fuzz_shard
#
# Environment: FUZZ_SECONDS, FUZZ_WORK (scratch dir, default a fresh
# mktemp -d; findings are kept there as crash-*/leak-*/timeout-* files),
# CC (default clang).  Each target links the subsystems below the model
# (common/base but its BLAS module, common/io, common/text), the message
# module common/ps/msg.c and the protoc-c output, against the system
# libraries (cJSON, protobuf-c, PCRE2, utf8proc).
# The tokenizer targets (fuzz_tok_*) read the real tokenizers from
# PSLORA_PEERS (default build/peers, made by tests/peers/fetch.sh).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${FUZZ_SECONDS:-60}
CC=${CC:-clang}
WORK=${FUZZ_WORK:-$(mktemp -d /tmp/pslora-fuzz.XXXXXX)}
mkdir -p "$WORK/gen"
protoc-c --proto_path="$ROOT/proto" --c_out="$WORK/gen" "$ROOT/proto/pslora.proto" || exit 2

SRC=("$ROOT/common/ps/msg.c" "$WORK/gen/pslora.pb-c.c" "$ROOT"/common/io/*.c)
for f in "$ROOT"/common/base/*.c; do   # cpu.c is OpenBLAS's, not a reader's
  [ "$(basename "$f")" = cpu.c ] || SRC+=("$f")
done
INC=(-I"$ROOT/common/base" -I"$ROOT/common/io" -I"$ROOT/common/ps" -I"$WORK/gen")
LIBS=(-lcjson -lprotobuf-c -lm)
if [ -d "$ROOT/common/text" ]; then
  SRC+=("$ROOT"/common/text/*.c)
  INC+=(-I"$ROOT/common/text" $(pkg-config --cflags libpcre2-8 libutf8proc))
  LIBS+=($(pkg-config --libs libpcre2-8 libutf8proc))
fi
CFLAGS=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
        "${INC[@]}")

export PSLORA_PEERS=${PSLORA_PEERS:-$ROOT/build/peers}

if [ $# -gt 0 ]; then targets=("$@"); else
  targets=(); for f in "$ROOT"/tests/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

status=0
summary=()
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  seeds="$ROOT/tests/corpus/$name"
  bin="$WORK/$t"
  echo "== $t: build"
  if ! "$CC" "${CFLAGS[@]}" "$ROOT/tests/$t.c" "${SRC[@]}" "${LIBS[@]}" -o "$bin" \
       > "$WORK/$t.build.log" 2>&1; then
    cat "$WORK/$t.build.log"
    summary+=("$t: BUILD FAILED")
    status=1
    continue
  fi
  rm -rf "$WORK/artifacts_$name"
  mkdir -p "$WORK/corpus_$name" "$WORK/artifacts_$name"
  dirs=("$WORK/corpus_$name")
  [ -d "$seeds" ] && dirs+=("$seeds")
  echo "== $t: ${SECS} s from ${seeds#$ROOT/}"
  rc=0
  ASAN_OPTIONS=detect_leaks=1 "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$WORK/artifacts_$name/" "${dirs[@]}" \
    > "$WORK/$t.log" 2>&1 || rc=$?
  runs=$(sed -nE 's/^Done ([0-9]+) runs in.*/\1/p' "$WORK/$t.log" | tail -1)
  [ -n "$runs" ] || runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$WORK/$t.log" | tail -1)
  found=$(ls "$WORK/artifacts_$name" | wc -l)
  if [ "$rc" != 0 ] || [ "$found" != 0 ]; then
    grep -E "ERROR|SUMMARY|runtime error|deadly signal|Test unit written" "$WORK/$t.log" | head -20
    summary+=("$t: FINDING (exit $rc, $found artifact(s) in $WORK/artifacts_$name), ${runs:-?} executions")
    status=1
  else
    summary+=("$t: ${runs:-?} executions in ${SECS} s, 0 findings")
  fi
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $status
