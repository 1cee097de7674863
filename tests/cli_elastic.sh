#!/usr/bin/env bash
# --global-batch G and elastic resume (one host, mpirun over shared memory).
#  - G sequences per step over W workers (G/W each): the same adapter, to
#    float rounding, for W = 1, 2 and 4;
#  - a run of 2 workers SIGKILLed mid-run (before its last step) and resumed
#    with 1, 3 and 4 workers (G = 12): each resumed adapter equals the
#    uninterrupted 2-worker run within 1e-5 relative (only the summation
#    grouping differs), while the data order each worker logged is exactly
#    the entries (t*G + w*G/W + i) the global order gives;
#  - what must not change still refuses the resume (--global-batch itself,
#    --batch of a run without G, W with dropout); G not divisible by W and
#    --batch with --global-batch are usage errors.
. "$(dirname "$0")/lib.sh"
: "${ADAPTER_DIFF:?}"
make_tiny
STEPS=12
G=12
T="--model model --data data.bin --seq 32 --global-batch $G --steps $STEPS --lr 3e-3 --targets c_attn,c_proj,c_fc --checkpoint-every 2 --keep-checkpoints 100 --threads 1"

# run NAME WORKERS [MPIRUN ARGS]: 1 server + WORKERS workers into NAME
run() {
  local name=$1 w=$2; shift 2
  mpi -np $((1 + w)) "$@" "$PSLORA" train $T --out "$name" > "$name.txt" 2>&1 \
    || fail "$name ($w workers): $(tail -3 "$name.txt")"
}

# rows FILE_PREFIX W FROM: the rows the W workers logged (PSLORA_TEST_ORDER_LOG:
# "step epoch entry" per row) from step FROM on, per step in worker order:
# the global order of entries, whatever W
rows() {
  local wi files=()
  for ((wi = 0; wi < $2; wi++)); do
    [ -s "$1.w$wi" ] || fail "$1: worker $wi logged no rows"
    files+=("$1.w$wi")
  done
  cat "${files[@]}" | awk -v from="$3" '$1 >= from' | sort -s -n -k1,1
}

# --- G fixed, W free: the same sequences per step
run ref 2 -x PSLORA_TEST_ORDER_LOG="$SCRATCH/order-ref"
grep -Eq '"batch":[[:space:]]+6,' ref/run.json || fail "ref: run.json does not record batch 6 (G/W)"
"$PSLORA" train $T --out w1 > w1.txt 2>&1 || fail "w1: $(tail -3 w1.txt)"
run w4 4
"$ADAPTER_DIFF" ref w1 1e-5 >/dev/null || fail "G=$G: 1 worker differs from 2 beyond 1e-5"
"$ADAPTER_DIFF" ref w4 1e-5 >/dev/null || fail "G=$G: 4 workers differ from 2 beyond 1e-5"
cmp -s ref/adapter_model.safetensors w4/adapter_model.safetensors \
  && fail "2 and 4 workers gave byte-identical adapters: the comparison could not tell them apart"
ok "--global-batch $G: 1, 2 and 4 workers agree within 1e-5"

# --- killed with 2 workers, resumed with 1, 3 and 4
PSLORA_TEST_SLOW_RANK=1 PSLORA_TEST_SLOW_MS=250 start_bg kill kill.txt \
  mpi -np 3 -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS "$PSLORA" train $T --out kill
kill_at kill 5
killed_mid_run kill 5
at=$(last_step kill) latest=$(readlink kill/checkpoints/latest)
from=$((10#${latest#step-}))
rows order-ref 2 "$from" > rows-ref.txt
[ "$(wc -l < rows-ref.txt)" = $(((STEPS - from) * G)) ] || fail "ref: $(wc -l < rows-ref.txt) rows logged from step $from"
for w in 1 3 4; do
  rm -rf "from$w" && cp -r kill "from$w"
  mpi -np $((1 + w)) -x PSLORA_TEST_ORDER_LOG="$SCRATCH/order$w" "$PSLORA" train $T \
    --resume "from$w" > "from$w.txt" 2>&1 || fail "resume with $w workers: $(tail -3 "from$w.txt")"
  grep -q "^done: steps $STEPS " "from$w.txt" || fail "from$w: no summary line: $(tail -2 "from$w.txt")"
  rows "order$w" "$w" "$from" > "rows$w.txt"
  cmp -s rows-ref.txt "rows$w.txt" || fail "2 workers -> $w: the rows read after the resume differ from the uninterrupted run's: $(diff rows-ref.txt "rows$w.txt" | head -3 | tr '\n' ' ')"
  "$ADAPTER_DIFF" ref "from$w" 1e-5 > "diff$w.txt" \
    || fail "2 workers -> $w: adapter differs beyond 1e-5: $(tail -2 "diff$w.txt")"
  ok "killed at step $at with 2 workers, resumed from $latest with $w: the same rows, adapter within 1e-5 of the uninterrupted run"
done

# --- what still refuses the resume, and usage errors (the run is left as it was)
sum_before=$(cat ref/checkpoints/*/* ref/metrics.jsonl | md5sum)
expect_fail 1 '^pslora train: --resume: --global-batch differs: .* has 12, this run has 6$' \
  mpi -np 3 "$PSLORA" train ${T/--global-batch $G/--global-batch 6} --resume ref
expect_fail 1 '^pslora train: --resume: the checkpoint .* records --global-batch = 12, which this run does not have$' \
  mpi -np 3 "$PSLORA" train ${T/--global-batch $G/--batch 6} --resume ref
[ "$(cat ref/checkpoints/*/* ref/metrics.jsonl | md5sum)" = "$sum_before" ] || fail "a refused resume changed files"
TB=${T/--global-batch $G/--batch 4}
"$PSLORA" train ${TB/--steps $STEPS/--steps 2} --out plain > plain.txt 2>&1 || fail "plain: $(tail -2 plain.txt)"
expect_fail 1 '^pslora train: --resume: workers differs: .* has 1, this run has 2$' \
  mpi -np 3 "$PSLORA" train $TB --resume plain
"$PSLORA" train ${T/--steps $STEPS/--steps 2} --dropout 0.1 --out drop > drop.txt 2>&1 || fail "drop: $(tail -2 drop.txt)"
expect_fail 1 '^pslora train: --resume: workers differs: .* has 1, this run has 2$' \
  mpi -np 3 "$PSLORA" train $T --dropout 0.1 --resume drop
expect_fail 2 '^pslora train: --global-batch: 12 sequences do not divide among 5 workers$' \
  mpi -np 6 "$PSLORA" train $T --out bad5
[ ! -e bad5 ] || fail "a usage error left bad5 behind"
expect_fail 2 '^pslora train: --global-batch: give --batch or --global-batch, not both$' \
  "$PSLORA" train $T --batch 4 --out bad
echo "cli_elastic: all passed"
