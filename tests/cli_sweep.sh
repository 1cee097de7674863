#!/usr/bin/env bash
# tests/cli_sweep.sh - deploy/sweep on its default tiny model and corpus with
# ranks 1 and 4 and 1 and 2 workers: the CSV has the documented header and one
# numeric row per run, the adapter sizes follow the model's shapes, traffic
# grows with the rank, the losses agree with the runs' metrics, the plots
# exist when gnuplot is installed, and a missing gnuplot only skips them.
#
# Environment (set by CTest): PSLORA (the binary), MPIEXEC, SCRATCH.
: "${MPIEXEC:?set MPIEXEC to mpiexec}"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"   # checks PSLORA and SCRATCH, cd into a fresh SCRATCH, fail()
SWEEP=$HERE/../deploy/sweep
export MPIEXEC
OUT=$SCRATCH/sweep
CSV=$OUT/sweep.csv

# col RANK WORKERS COLUMN: one field of the CSV row of that run.
col() {
  awk -F, -v r="$1" -v w="$2" -v c="$3" 'NR > 1 && $1 == r && $2 == w { print $c }' "$CSV"
}

# refused WANT ARGS...: the sweep exits 2 and names WANT on stderr.
refused() {
  local want=$1 rc=0
  shift
  "$SWEEP" "$@" 2>"$SCRATCH/err" || rc=$?
  ((rc == 2)) || fail "sweep $*: exit $rc, expected 2: $(cat "$SCRATCH/err")"
  grep -qF -- "$want" "$SCRATCH/err" || fail "sweep $*: message lacks '$want': $(cat "$SCRATCH/err")"
}

echo "bad options exit 2"
refused "--ranks: expected a positive integer, got 'x'" --out "$OUT" --ranks "1 x"
refused "--workers: empty list" --out "$OUT" --workers " "
refused "--out: required" --pslora "$PSLORA"
refused "--rank: the sweep sets it" --out "$OUT" --pslora "$PSLORA" -- --rank 2
refused "unknown option '--bogus'" --out "$OUT" --bogus
[[ ! -e $OUT ]] || fail "a refused sweep created $OUT"

echo "sweep: ranks 1 4, workers 1 2, 5 steps"
start=$SECONDS
"$SWEEP" --out "$OUT" --ranks "1 4" --workers "1 2" --steps 5 --pslora "$PSLORA" \
  -- --batch 2 --seq 32 --eval-batches 2 >"$SCRATCH/stdout" 2>"$SCRATCH/stderr" ||
  fail "sweep exited $?: $(tail -n 20 "$SCRATCH/stderr")"
echo "  $((SECONDS - start)) s"

[[ $(head -n 1 "$CSV") == "rank,workers,adapter_params,bytes_per_step,tokens_per_s,train_loss,val_loss" ]] ||
  fail "header: $(head -n 1 "$CSV")"
(($(wc -l <"$CSV") == 5)) || fail "expected 4 rows: $(cat "$CSV")"
num='^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$'
while IFS=, read -r -a f; do
  ((${#f[@]} == 7)) || fail "row with ${#f[@]} fields: ${f[*]}"
  for v in "${f[@]}"; do
    [[ $v =~ $num ]] || fail "non-numeric field '$v' in row: ${f[*]}"
  done
done < <(tail -n +2 "$CSV")
for r in 1 4; do
  for w in 1 2; do
    [[ -n $(col $r $w 1) ]] || fail "no row for rank $r, $w workers: $(cat "$CSV")"
  done
done

echo "adapter parameters follow the tiny model's shapes"
# The default model: 2 layers of width 64, LoRA on c_attn (64 -> 192):
# per layer r * (64 + 192) parameters.
for w in 1 2; do
  (($(col 1 $w 3) == 2 * (64 + 192))) || fail "rank 1, $w workers: $(col 1 $w 3) adapter parameters, expected 512"
  (($(col 4 $w 3) == 4 * $(col 1 $w 3))) || fail "rank 4 has $(col 4 $w 3) parameters, not 4 x $(col 1 $w 3)"
done

echo "bytes per step grow with the rank and the workers"
for w in 1 2; do
  awk -v a="$(col 1 $w 4)" -v b="$(col 4 $w 4)" 'BEGIN { exit !(a > 0 && b > a) }' ||
    fail "$w workers: bytes/step $(col 1 $w 4) at rank 1, $(col 4 $w 4) at rank 4"
done
for r in 1 4; do
  awk -v a="$(col $r 1 4)" -v b="$(col $r 2 4)" 'BEGIN { exit !(b > a) }' ||
    fail "rank $r: bytes/step $(col $r 1 4) with 1 worker, $(col $r 2 4) with 2"
done

echo "losses agree with each run's metrics.jsonl"
for r in 1 4; do
  for w in 1 2; do
    m=$OUT/runs/r$r-w$w/metrics.jsonl
    [[ -s $m ]] || fail "no $m"
    last_loss=$(grep '"type":[ ]*"step"' "$m" | tail -n 1 | sed -n 's/.*"loss":[ ]*\([-0-9.eE+]*\).*/\1/p')
    last_val=$(grep '"val_loss"' "$m" | tail -n 1 | sed -n 's/.*"val_loss":[ ]*\([-0-9.eE+]*\).*/\1/p')
    for pair in "$(col $r $w 6):$last_loss:loss" "$(col $r $w 7):$last_val:val_loss"; do
      IFS=: read -r a b what <<<"$pair"
      [[ -n $b ]] || fail "r$r-w$w: no $what in $m"
      awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }' ||
        fail "r$r-w$w: CSV $what $a, metrics.jsonl $b"
    done
  done
done

if command -v gnuplot >/dev/null; then
  echo "plots"
  for p in loss_vs_rank bytes_vs_rank tokens_per_s_vs_workers; do
    [[ -s $OUT/$p.png ]] || fail "no $OUT/$p.png: $(cat "$OUT/logs/plot.log" 2>/dev/null)"
    [[ $(head -c 4 "$OUT/$p.png" | od -An -c | tr -d ' ') == '211PNG' ]] || fail "$p.png is not a PNG"
  done
else
  echo "gnuplot not installed: plots not checked"
  grep -q "plots skipped" "$SCRATCH/stderr" || fail "no 'plots skipped' warning without gnuplot"
fi

echo "without gnuplot: CSV, a warning, exit 0; the tiny model is reused"
rm -f "$OUT"/*.png
GNUPLOT="$SCRATCH/no-gnuplot" "$SWEEP" --out "$OUT" --ranks 2 --workers 1 --steps 2 --pslora "$PSLORA" \
  -- --batch 2 --seq 32 --eval-batches 1 >/dev/null 2>"$SCRATCH/stderr2" ||
  fail "sweep without gnuplot exited $?: $(tail -n 5 "$SCRATCH/stderr2")"
grep -q "no-gnuplot not found: plots skipped" "$SCRATCH/stderr2" || fail "no warning: $(cat "$SCRATCH/stderr2")"
grep -q "making a tiny model" "$SCRATCH/stderr2" && fail "the tiny model was made again"
(($(wc -l <"$CSV") == 2)) || fail "second sweep: expected 1 row: $(cat "$CSV")"
(($(col 2 1 3) == 2 * 2 * (64 + 192))) || fail "rank 2: $(col 2 1 3) adapter parameters, expected 1024"
ls "$OUT"/*.png >/dev/null 2>&1 && fail "plots drawn without gnuplot"

echo "cli_sweep: all checks passed"
