#!/usr/bin/env bash
# Faults during training.
#  - a non-finite gradient on one worker (test-only PSLORA_TEST_NAN_STEP /
#    PSLORA_TEST_NAN_RANK): the step is skipped (adapter and optimizer state
#    byte-identical before and after it), counted in metrics.jsonl, and
#    training goes on; --max-skips consecutive skips stop the run with one line.
#  - a rank killed with SIGKILL (a worker, server rank 0, server rank 1): the
#    job ends promptly with a line naming the rank; the newest checkpoint is
#    intact (the resume reproduces the uninterrupted run byte for byte).
#  - a stuck rank: --timeout ends the job with a line naming it.
. "$(dirname "$0")/lib.sh"
make_tiny
T="--model model --data data.bin --seq 32 --batch 4 --steps 8 --lr 3e-3 --targets c_attn,c_proj,c_fc"

# step_field OUT STEP FIELD: FIELD of the step row STEP of OUT/metrics.jsonl
step_field() {
  grep "\"type\":\"step\",\"step\":$2," "$1/metrics.jsonl" | sed -E "s/.*\"$3\":([^,}]*).*/\1/"
}

# nan_case NAME NAN_RANK "FLAGS" LAUNCH...: NaN gradient at step 4 on rank
# NAN_RANK, a checkpoint after every step.
nan_case() {
  local name=$1 rank=$2 flags=$3; shift 3
  PSLORA_TEST_NAN_STEP=4 PSLORA_TEST_NAN_RANK=$rank "$@" "$PSLORA" train $T $flags --checkpoint-every 1 \
    --keep-checkpoints 100 --out "$name" > "$name.txt" 2>&1 || fail "$name: $(tail -3 "$name.txt")"
  grep -q '^done: steps 8 ' "$name.txt" || fail "$name: no summary line"
  local c=$name/checkpoints
  for f in adapter_model.safetensors optimizer.safetensors; do
    cmp "$c/step-00000003/$f" "$c/step-00000004/$f" || fail "$name: skipped step changed $f"
    ! cmp -s "$c/step-00000004/$f" "$c/step-00000005/$f" || fail "$name: step 5 did not train"
  done
  [ "$(step_field "$name" 3 skipped_steps)" = 0 ] || fail "$name: step 3 counted a skip"
  [ "$(step_field "$name" 4 skipped_steps)" = 1 ] || fail "$name: step 4 not counted"
  [ "$(step_field "$name" 8 skipped_steps)" = 1 ] || fail "$name: count lost by step 8"
  [ "$(step_field "$name" 4 grad_norm)" = null ] || fail "$name: step 4 grad_norm not null"
  grep -Eq '"skipped":[[:space:]]*1,' "$c/step-00000004/trainer_state.json" || fail "$name: state skipped"
  grep -Eq '"version":[[:space:]]*3,' "$c/step-00000004/trainer_state.json" || fail "$name: state version"
  grep -Eq '"version":[[:space:]]*7,' "$c/step-00000008/trainer_state.json" || fail "$name: final version"
  ok "$name: NaN gradient on rank $rank at step 4 skipped (state unchanged), counted, training went on"
}
MPIX=(mpi -x PSLORA_TEST_NAN_STEP -x PSLORA_TEST_NAN_RANK)
nan_case nan-local 0 ""
nan_case nan-s1w2 2 "" "${MPIX[@]}" -np 3
nan_case nan-s2w2 3 "--servers 2" "${MPIX[@]}" -np 4

# --max-skips: non-finite from step 3 on; the third consecutive one stops the run
expect_fail 1 '^pslora train: 3 consecutive steps with non-finite loss or gradients \(--max-skips\)$' \
  env PSLORA_TEST_NAN_STEP=3-100 "$PSLORA" train $T --max-skips 3 --checkpoint-every 1 --out ms-local
[ "$(step_field ms-local 5 skipped_steps)" = 3 ] || fail "max-skips: 3 skips by step 5"
[ ! -e ms-local/adapter_model.safetensors ] || fail "max-skips: final adapter written"
cmp ms-local/checkpoints/step-00000002/adapter_model.safetensors ms-local/checkpoints/step-00000004/adapter_model.safetensors \
  || fail "max-skips: skipped steps changed the adapter"
st=0
PSLORA_TEST_NAN_STEP=3-100 PSLORA_TEST_NAN_RANK=2 mpi -x PSLORA_TEST_NAN_STEP -x PSLORA_TEST_NAN_RANK -np 3 \
  "$PSLORA" train $T --max-skips 3 --out ms-ps > ms-ps.txt 2>&1 || st=$?
[ "$st" != 0 ] || fail "max-skips under mpirun exited 0"
grep -q '^pslora train: rank 0: 3 consecutive steps with non-finite loss or gradients (--max-skips)$' ms-ps.txt \
  || fail "max-skips under mpirun: $(grep pslora ms-ps.txt)"
ok "--max-skips 3 stops with one line (one process, mpirun)"

# killed ranks.  kill_rank LOG RANK AFTER_STEP OUT: SIGKILL rank RANK of the
# mpirun in the background once OUT has logged AFTER_STEP; checks that
# mpirun ends within 15 s, non-zero, naming the rank.
TK="--model model --data data.bin --seq 32 --batch 4 --steps 12 --lr 3e-3 --targets c_attn,c_proj,c_fc --checkpoint-every 3"
kill_rank() {
  local log=$1 rank=$2 after=$3 out=$4 i victim="" st=0
  for ((i = 0; i < 1500; i++)); do
    grep -q "\"type\":\"step\",\"step\":$after," "$out/metrics.jsonl" 2>/dev/null && break
    kill -0 "$BG" 2>/dev/null || fail "run ended early: $(tail -3 "$log")"
    sleep 0.02
  done
  for c in $(descendants "$BG"); do
    grep -qz "^OMPI_COMM_WORLD_RANK=$rank\$" "/proc/$c/environ" 2>/dev/null && victim=$c
  done
  [ -n "$victim" ] || fail "rank $rank not found"
  local t0=$SECONDS
  kill -9 "$victim" 2>/dev/null || fail "rank $rank ended before it could be killed (the run outpaced the test)"
  wait "$BG" || st=$?
  [ "$st" != 0 ] || fail "killing rank $rank: mpirun exited 0"
  [ $((SECONDS - t0)) -le 15 ] || fail "killing rank $rank: the job took $((SECONDS - t0)) s to end"
  grep -Eq "process rank $rank .*exited on signal 9" "$log" || fail "no line names rank $rank: $(cat "$log")"
  ok "rank $rank killed after step $after: job ended in $((SECONDS - t0)) s: $(grep -Eo "process rank $rank .*" "$log")"
}
# kill_case NAME RANK AFTER "FLAGS" NP: uninterrupted reference, killed run, resume, cmp
kill_case() {
  local name=$1 rank=$2 after=$3 flags=$4 np=$5
  mpi -np "$np" "$PSLORA" train $TK $flags --out "$name-ref" > "$name-ref.txt" 2>&1 || fail "$name ref"
  # the last rank sleeps 300 ms a step: the kill lands seconds before the
  # run's end even on a loaded machine (80 ms lost that race under CI load)
  PSLORA_TEST_SLOW_RANK=$((np - 1)) PSLORA_TEST_SLOW_MS=300 mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS \
    -np "$np" "$PSLORA" train $TK $flags --out "$name" > "$name.txt" 2>&1 &
  BG=$!
  kill_rank "$name.txt" "$rank" "$after" "$name"
  ls "$name/checkpoints" | grep -q '^step-0000000[369]$' || fail "$name: no checkpoint left"
  mpi -np "$np" "$PSLORA" train $TK $flags --resume "$name" > "$name-resume.txt" 2>&1 \
    || fail "$name: resume: $(tail -2 "$name-resume.txt")"
  cmp "$name-ref/adapter_model.safetensors" "$name/adapter_model.safetensors" || fail "$name: resume differs"
  ok "$name: newest checkpoint intact, resume byte-identical"
}
kill_case kw 2 4 "" 3           # a worker (1 server + 2 workers)
kill_case k0 0 7 "" 3           # server rank 0, the one that writes
kill_case k1 1 5 "--servers 2" 4   # server rank 1 of 2

# a stuck worker: the server names it after --timeout; nobody waits forever
t0=$SECONDS
st=0
PSLORA_TEST_SLOW_RANK=2 PSLORA_TEST_SLOW_MS=120000 mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS -np 3 \
  "$PSLORA" train $T --timeout 2 --out stuck > stuck.txt 2>&1 || st=$?
[ "$st" != 0 ] || fail "stuck rank: exit 0"
[ $((SECONDS - t0)) -le 20 ] || fail "stuck rank: the job took $((SECONDS - t0)) s"
grep -q '^pslora train: rank 0: no message from rank 2 within 2 s (--timeout)$' stuck.txt \
  || fail "stuck rank: $(grep pslora stuck.txt)"
ok "stuck worker: 'pslora train: rank 0: no message from rank 2 within 2 s (--timeout)' after $((SECONDS - t0)) s"
echo "cli_faults: all passed"
