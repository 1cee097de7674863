#!/usr/bin/env bash
# tests/cli_sweep.sh - deploy/sweep on its default tiny model and corpus with
# ranks 1 and 4 and 1 and 2 workers: the CSV has the documented header and one
# numeric row per run, the adapter sizes follow the model's shapes, traffic
# grows with the rank, the losses agree with the runs' metrics, the plots
# exist when gnuplot is installed, and a missing gnuplot only skips them.
# Then an experiment (ranks 2 4, seeds 1 2, --full): the CSV's seed and mode
# columns and rows, the full fine-tuning row's size and traffic, report.md's
# tables against pslora analyze, and every image it names.
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

# last_metric FILE KEY: KEY's value in the last line of a metrics.jsonl that has it.
last_metric() {
  grep "\"$2\":" "$1" | tail -n 1 | sed -n "s/.*\"$2\":[ ]*\([-0-9.eE+]*\).*/\1/p"
}
# near A B: two numbers agree within 1e-3 (B not empty).
near() {
  awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(b != "" && d < 1e-3 && d > -1e-3) }'
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
    last_val=$(last_metric "$m" val_loss)
    for pair in "$(col $r $w 6):$last_loss:loss" "$(col $r $w 7):$last_val:val_loss"; do
      IFS=: read -r a b what <<<"$pair"
      [[ -n $b ]] || fail "r$r-w$w: no $what in $m"
      near "$a" "$b" || fail "r$r-w$w: CSV $what $a, metrics.jsonl $b"
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

# --- The experiment: --seeds and --full, the report directory. ---------------
X=$SCRATCH/exp
XCSV=$X/sweep.csv
REP=$X/report

# xcol MODE RANK SEED COLUMN: one field of the experiment CSV's row (RANK ""
# for the full fine-tuning row).
xcol() {
  awk -F, -v m="$1" -v r="$2" -v s="$3" -v c="$4" 'NR > 1 && $9 == m && $1 == r && $8 == s { print $c }' "$XCSV"
}
# run_json_has DIR KEY VALUE: the run's run.json records "KEY": VALUE.
run_json_has() {
  grep -Eq "\"$2\":[[:space:]]*$3,?\$" "$1/run.json" || fail "$1/run.json: no \"$2\": $3"
}

echo "experiment: bad options exit 2"
refused "--seeds: expected a positive integer, got 'x'" --out "$X" --seeds "1 x"
refused "--seeds: 2 listed twice" --out "$X" --seeds "2 2"
refused "--seed: the sweep sets it in an experiment; use --seeds" --out "$X" --full -- --seed 3
[[ ! -e $X ]] || fail "a refused sweep created $X"

echo "experiment: ranks 2 4, seeds 1 2, --full, 5 steps (adapter flags after --, which --full drops)"
start=$SECONDS
"$SWEEP" --out "$X" --ranks "2 4" --workers 1 --seeds "1 2" --full --steps 5 --pslora "$PSLORA" \
  -- --batch 2 --seq 32 --eval-batches 2 --alpha 16 --targets c_attn >"$SCRATCH/xstdout" 2>"$SCRATCH/xstderr" ||
  fail "experiment exited $?: $(tail -n 20 "$SCRATCH/xstderr")"
echo "  $((SECONDS - start)) s"

[[ $(head -n 1 "$XCSV") == "rank,workers,adapter_params,bytes_per_step,tokens_per_s,train_loss,val_loss,seed,mode" ]] ||
  fail "experiment header: $(head -n 1 "$XCSV")"
(($(wc -l <"$XCSV") == 6)) || fail "expected 2 ranks x 2 seeds + 1 full = 5 rows: $(cat "$XCSV")"
while IFS=, read -r -a f; do
  ((${#f[@]} == 9)) || fail "row with ${#f[@]} fields: ${f[*]}"
  for i in 1 2 3 4 5 6 7; do
    [[ ${f[i]} =~ $num ]] || fail "non-numeric field $((i + 1)) '${f[i]}' in row: ${f[*]}"
  done
  case ${f[8]} in
    lora) [[ ${f[0]} =~ ^[0-9]+$ ]] || fail "lora row without a rank: ${f[*]}" ;;
    full) [[ -z ${f[0]} ]] || fail "full row with a rank: ${f[*]}" ;;
    *) fail "mode '${f[8]}' in row: ${f[*]}" ;;
  esac
done < <(tail -n +2 "$XCSV")
for s in 1 2; do
  for r in 2 4; do
    [[ $(xcol lora $r $s 3) == $((r * 2 * (64 + 192))) ]] ||
      fail "rank $r seed $s: '$(xcol lora $r $s 3)' adapter parameters, expected $((r * 512))"
    d=$X/runs/r$r-w1-s$s
    run_json_has "$d" seed "$s"
    run_json_has "$d" rank "$r"
  done
done
# The seed reaches the runs: seeds 1 and 2 learn different adapters.
[[ $(xcol lora 2 1 7) != "$(xcol lora 2 2 7)" ]] || fail "seeds 1 and 2 gave the same val_loss $(xcol lora 2 1 7)"

echo "experiment: the full fine-tuning row"
F=$X/runs/full-w1-s1
run_json_has "$F" full true
[[ -s $F/model.safetensors && -s $F/config.json && ! -e $F/adapter_model.safetensors ]] ||
  fail "$F is not a model directory: $(ls "$F")"
# Every weight matrix of the tiny model (2 layers of width 64): c_attn 64x192,
# attn.c_proj 64x64, c_fc 64x256, mlp.c_proj 256x64.
want=$((2 * (64 * 192 + 64 * 64 + 64 * 256 + 256 * 64)))
[[ $(xcol full "" 1 3) == "$want" ]] || fail "full row: '$(xcol full "" 1 3)' trained parameters, expected $want"
# Pushed gradient + pulled weights, 4 bytes each, plus message headers.
awk -v b="$(xcol full "" 1 4)" -v p="$want" 'BEGIN { exit !(b >= 8 * p && b < 8 * p * 1.01) }' ||
  fail "full row: $(xcol full "" 1 4) bytes/step, expected 8 x $want plus headers"
for m in "lora 2 1 r2-w1-s1" "lora 4 2 r4-w1-s2" "full - 1 full-w1-s1"; do
  read -r mode r s name <<<"$m"
  [[ $r == - ]] && r=""
  m=$X/runs/$name/metrics.jsonl
  last_val=$(last_metric "$m" val_loss)
  near "$(xcol "$mode" "$r" "$s" 7)" "$last_val" ||
    fail "$name: CSV val_loss $(xcol "$mode" "$r" "$s" 7), metrics.jsonl $last_val"
done

echo "experiment: report.md, its table of runs and of phi, its images"
R=$REP/report.md
[[ -s $R ]] || fail "no $R"
cmp -s "$XCSV" "$REP/sweep.csv" || fail "$REP/sweep.csv differs from $XCSV"
# One table row per run: "| mode | rank | workers | seed | params | ...".
(($(grep -cE '^\| (lora|full) \| ' "$R") == 5)) || fail "report.md: expected 5 run rows: $(grep '^| ' "$R")"
grep -qE "^\| full \| - \| 1 \| 1 \| $want \| " "$R" || fail "report.md: no full row with $want parameters"
# phi(1,1) of the first matrix against pslora analyze run here.
for p in "r2-r4-s1 r2-w1-s1 r4-w1-s1" "r2-s1-s2 r2-w1-s1 r2-w1-s2" "r4-s1-s2 r4-w1-s1 r4-w1-s2"; do
  read -r label a b <<<"$p"
  line=$(grep -E "^\| $label \| " "$R") || fail "report.md: no phi row $label"
  got=$(awk -F' [|] ' '{ print $4 }' <<<"$line")
  "$PSLORA" analyze "$X/runs/$a" "$X/runs/$b" >"$SCRATCH/an.txt" || fail "pslora analyze $a $b failed"
  # The text table: "  transformer.h.0.attn.c_attn  phi(1,1) mean ..." (first row after the header).
  ref=$(awk '/^similarity /{ getline; getline; print $2; exit }' "$SCRATCH/an.txt")
  awk -v a="$got" -v b="$ref" 'BEGIN { d = a - b; exit !(b != "" && d < 6e-4 && d > -6e-4) }' ||
    fail "report.md $label: phi(1,1) '$got', pslora analyze says '$ref'"
done
# Every image report.md names exists.
refs=$(grep -oE '\]\([^)]*\.png\)' "$R" | sed 's/^](//; s/)$//') || true
for f in $refs; do
  [[ -s $REP/$f ]] || fail "report.md names $f, which is not in $REP"
  [[ $(head -c 4 "$REP/$f" | od -An -c | tr -d ' ') == '211PNG' ]] || fail "$f is not a PNG"
done
if command -v gnuplot >/dev/null; then
  for f in loss_vs_rank.png bytes_vs_rank.png tokens_per_s_vs_workers.png \
    phi/r2-r4-s1/phi_transformer.h.0.attn.c_attn.png phi/r2-s1-s2/phi_transformer.h.0.attn.c_attn.png \
    phi/r4-s1-s2/phi_transformer.h.0.attn.c_attn.png; do
    grep -qF "]($f)" <<<"$(grep -oE '\]\([^)]*\)' "$R")" || fail "report.md does not show $f"
  done
else
  echo "gnuplot not installed: report images not checked"
fi

echo "experiment without gnuplot: report.md names no image, exit 0"
GNUPLOT="$SCRATCH/no-gnuplot" "$SWEEP" --out "$X" --ranks 2 --workers 1 --seeds 1 --steps 2 --pslora "$PSLORA" \
  -- --batch 2 --seq 32 --eval-batches 1 >/dev/null 2>"$SCRATCH/xstderr2" ||
  fail "experiment without gnuplot exited $?: $(tail -n 5 "$SCRATCH/xstderr2")"
grep -q "plots skipped" "$SCRATCH/xstderr2" || fail "no warning: $(cat "$SCRATCH/xstderr2")"
grep -q '\.png' "$R" && fail "report.md names images without gnuplot: $(grep '\.png' "$R")"
(($(wc -l <"$XCSV") == 2)) || fail "second experiment: expected 1 row: $(cat "$XCSV")"

echo "cli_sweep: all checks passed"
