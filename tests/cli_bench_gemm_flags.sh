#!/usr/bin/env bash
# bench_gemm's cache and K-concatenation flags (bench/bench_gemm.c):
#  - --cold outside 0..65536 MB, or not an integer, is refused with one line
#    naming the flag and exit 2, before any figure is printed;
#  - --kcat (oneDNN builds) prints its table: a row per map and orientation
#    with the three timings, and a row per group, on tiny shapes with and
#    without --cold.
. "$(dirname "$0")/lib.sh"
B=${BENCH_GEMM:?BENCH_GEMM: the bench_gemm binary}
for bad in -1 65537 abc; do
  set +e
  "$B" --cold "$bad" --threads 1 >out.txt 2>err.txt
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "--cold $bad: exit $rc, not 2"
  [ "$(wc -l <err.txt)" -eq 1 ] || fail "--cold $bad: not one line on stderr: $(cat err.txt)"
  grep -q "^bench_gemm: --cold: " err.txt || fail "--cold $bad: $(cat err.txt)"
  [ ! -s out.txt ] || fail "--cold $bad: printed figures anyway"
done
ok "--cold: bad values refused with one line, exit 2"
if ! "$B" --kcat --rows 32 --dim 64 --kv 32 --inter 96 --rank 4 --threads 1 --seconds 0.01 \
     >kc.txt 2>kc_err.txt; then
  grep -q "needs oneDNN" kc_err.txt || fail "--kcat failed: $(cat kc_err.txt)"
  ok "--kcat: refused without oneDNN"
  exit 0
fi
[ "$(grep -cE '^(q,o|k,v|gate,up|down) +(fwd|bwd|f|b)? *[0-9]+ +[0-9]+( +-?[0-9]+){5}$' kc.txt)" -eq 8 ] \
  || fail "--kcat: not 8 map rows: $(cat kc.txt)"
[ "$(grep -cE '^(q,k,v|gate,up) +(fwd|bwd) ' kc.txt)" -eq 4 ] || fail "--kcat: not 4 group rows"
"$B" --kcat --rows 32 --dim 64 --kv 32 --inter 96 --rank 4 --threads 1 --seconds 0.01 --cold 1 \
  >kc_cold.txt || fail "--kcat --cold 1 failed"
grep -q "caches written over before each" kc_cold.txt || fail "--kcat --cold: not said"
ok "--kcat: the table, warm and cold"
