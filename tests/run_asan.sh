#!/usr/bin/env bash
# run_asan.sh - configures a separate build with clang, AddressSanitizer and
# UndefinedBehaviorSanitizer (every UB report fatal), builds it and runs the
# whole CTest suite in it.  Non-zero exit on any failure or sanitizer report.
#
#   tests/run_asan.sh [BUILD_DIR]     (default ${ASAN_BUILD:-/tmp/pslora-asan-build})
#
# Open MPI leaks at exit in every rank: LeakSanitizer reads the suppressions
# in tests/lsan.supp (fast_unwind_on_malloc=0 is needed for them to match).
# The environment reaches every rank: mpiexec passes its own environment to
# the ranks it starts on this node.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${ASAN_BUILD:-/tmp/pslora-asan-build}}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The tokenizer tests' peers: those deploy/setup fetched, else fetched here.
PEERS=${PSLORA_PEERS:-$ROOT/build/peers}
[ -d "$PEERS" ] || { PEERS=$BUILD/peers; bash "$ROOT/tests/peers/fetch.sh" "$PEERS"; }
CC=clang cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DPSLORA_PEERS="$PEERS" \
  -DCMAKE_C_FLAGS="-O1 -g $SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" > "$BUILD.cmake.log" 2>&1 \
  || { cat "$BUILD.cmake.log"; exit 1; }
make -C "$BUILD" -j"${JOBS:-2}" > "$BUILD.make.log" 2>&1 || { tail -40 "$BUILD.make.log"; exit 1; }
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:fast_unwind_on_malloc=0:print_suppressions=0"
# Distinct exit codes, so that a test expecting a failure (exit 1 or 2)
# cannot mistake a sanitizer report for it.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=86"
# cli_tokenizers on two licences instead of all (about 300 tokenizer loads,
# each seconds long under ASan: the whole set passed the 600 s timeout).
export PSLORA_TEST_LICENCES=${PSLORA_TEST_LICENCES:-"GPL-3 BSD"}
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87"
cd "$BUILD"
ctest --output-on-failure -j"${JOBS:-2}" ${CTEST_ARGS:-}
