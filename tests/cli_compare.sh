#!/usr/bin/env bash
# bench/compare.sh refuses bad flags with one line before running anything
# (its runs need python3-torch, which the tests do not install).
. "$(dirname "$0")/lib.sh"
CMP=$(cd "$(dirname "$0")/.." && pwd)/bench/compare.sh
bash -n "$CMP" || fail "bash -n bench/compare.sh"
expect_fail 2 "compare.sh: -c: expected fp32, bf16 or auto, got 'fp16'" "$CMP" -p "$PSLORA" -c fp16 -- --threads 1
expect_fail 2 "compare.sh: -c: a list needs --matrix" "$CMP" -p "$PSLORA" -c fp32,bf16 -- --threads 1
expect_fail 2 "compare.sh: -m: expected openblas, onednn or auto, got 'mkl'" "$CMP" -p "$PSLORA" -m mkl -- --threads 1
expect_fail 2 "compare.sh: pslora binary not found" "$CMP" -p /nonexistent -- --threads 1
echo "cli_compare: all passed"
