#!/usr/bin/env bash
# Checkpoints and exact resume.
#  - SIGKILL at a random step (several seeds) of one process, 1 server + 2
#    workers and 2 servers + 2 workers; resume with --resume OUT; the final
#    adapter is byte-identical to an uninterrupted run, and metrics.jsonl
#    holds each step once.
#  - SIGKILL while a checkpoint is being written (test-only pause inside the
#    write): the partial directory is ignored, the previous checkpoint loads
#    (as a PEFT adapter and for the resume) and the resume is still exact.
#  - checkpoint layout: step-NNNNNNNN directories, `latest`, --keep-checkpoints.
#  - flags that change the result are refused on resume; --steps may grow.
. "$(dirname "$0")/lib.sh"
make_tiny
STEPS=12
T="--model model --data data.bin --seq 32 --batch 4 --steps $STEPS --lr 3e-3 --targets c_attn,c_proj,c_fc --checkpoint-every 3 --keep-checkpoints 2"

# each step logged exactly once, 1..STEPS, after a resume
steps_once() {
  local want got
  want=$(seq 1 "$STEPS" | tr '\n' ' ')
  got=$(grep -o '"type":"step","step":[0-9]*' "$1/metrics.jsonl" | grep -o '[0-9]*$' | tr '\n' ' ')
  [ "$got" = "$want" ] || fail "$1/metrics.jsonl steps: $got (expected $want)"
}

# check_mode NAME SLOW_RANK SEEDS "TRAIN FLAGS" LAUNCH...: an uninterrupted
# run, then per seed a run killed at a random step in [1, STEPS-3] and
# resumed; adapters compared by cmp.  The killed run's slow rank sleeps
# SLOW_MS per step, so three steps (>= 0.75 s) separate the target from the
# end of the run: the kill lands mid-run even on a loaded machine (two steps
# were once not enough at a load average of 8).
SLOW_MS=250
check_mode() {
  local name=$1 slow=$2 seeds=$3 flags=$4; shift 4
  "$@" "$PSLORA" train $T $flags --out "$name-ref" > "$name-ref.txt" 2>&1 || fail "$name ref: $(tail -3 "$name-ref.txt")"
  for seed in $seeds; do
    RANDOM=$seed
    local k=$((1 + RANDOM % (STEPS - 3))) out="$name-kill$seed"
    PSLORA_TEST_SLOW_RANK=$slow PSLORA_TEST_SLOW_MS=$SLOW_MS start_bg "$out" "$out.txt" \
      "$@" "$PSLORA" train $T $flags --out "$out"
    kill_at "$out" "$k"
    killed_mid_run "$out" "$k"
    local at; at=$(last_step "$out")
    "$@" "$PSLORA" train $T $flags --resume "$out" > "$out-resume.txt" 2>&1 \
      || fail "$name seed $seed: resume failed: $(tail -3 "$out-resume.txt")"
    cmp "$name-ref/adapter_model.safetensors" "$out/adapter_model.safetensors" \
      || fail "$name seed $seed (killed after step $at): adapter differs from the uninterrupted run"
    steps_once "$out"
    ok "$name: seed $seed killed after step $at (target $k), resumed: adapter byte-identical"
  done
}

MPIRUN=(mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS)
check_mode local 0 "1 2 3" ""
check_mode s1w2 2 "4 5" "" "${MPIRUN[@]}" -np 3
check_mode s2w2 2 "6 7" "--servers 2" "${MPIRUN[@]}" -np 4

# layout: keep 2 (steps 9 and 12), latest -> step-00000012, state files
ls local-ref/checkpoints | tr '\n' ' ' > ls.txt
[ "$(cat ls.txt)" = "latest step-00000009 step-00000012 " ] || fail "checkpoints: $(cat ls.txt)"
[ "$(readlink local-ref/checkpoints/latest)" = step-00000012 ] || fail "latest"
for f in adapter_model.safetensors adapter_config.json optimizer.safetensors trainer_state.json; do
  [ -s "local-ref/checkpoints/step-00000012/$f" ] || fail "checkpoint lacks $f"
done
cmp local-ref/adapter_model.safetensors local-ref/checkpoints/step-00000012/adapter_model.safetensors \
  || fail "final checkpoint adapter != final adapter"
grep -q '"step":[[:space:]]*12,' local-ref/checkpoints/step-00000012/trainer_state.json || fail "trainer_state step"
ok "layout: step-00000009 step-00000012 latest (--keep-checkpoints 2)"

# kill inside the checkpoint write of step 9 (pause before the rename)
out=pause
PSLORA_TEST_CKPT_PAUSE_MS=20000 PSLORA_TEST_CKPT_PAUSE_STEP=9 start_bg "$out" pause.txt \
  "$PSLORA" train $T --out $out
for ((i = 0; i < 1500; i++)); do
  [ -d $out/checkpoints/step-00000009.partial ] && [ -s $out/checkpoints/step-00000009.partial/optimizer.safetensors ] && break
  kill -0 "$BG" 2>/dev/null || fail "paused run ended: $(cat pause.txt)"
  sleep 0.02
done
[ -d $out/checkpoints/step-00000009.partial ] || fail "no partial checkpoint seen"
kill_at $out 0
[ ! -e $out/checkpoints/step-00000009 ] || fail "step 9 complete despite the kill"
[ "$(readlink $out/checkpoints/latest)" = step-00000006 ] || fail "latest moved"
"$PSLORA" eval --model model --adapter $out/checkpoints/step-00000006 --data data.bin --seq 32 --batch 4 \
  --max-batches 2 > eval.txt || fail "previous checkpoint does not load as an adapter"
"$PSLORA" train $T --resume $out > pause-resume.txt 2>&1 || fail "resume after the pause: $(tail -3 pause-resume.txt)"
grep -q 'step 7/12' pause-resume.txt || fail "resume did not start at step 7: $(head -3 pause-resume.txt)"
cmp local-ref/adapter_model.safetensors $out/adapter_model.safetensors || fail "resume after a killed write differs"
[ ! -e $out/checkpoints/step-00000009.partial ] || fail "partial directory left behind"
steps_once $out
ok "killed while writing step 9: step 6 loads, resume exact, partial removed"

# a damaged newest checkpoint: warned, the older one is used, result still exact
cp -r local-ref dmg
rm -f dmg/adapter_model.safetensors
head -c 100 local-ref/checkpoints/step-00000012/optimizer.safetensors > dmg/checkpoints/step-00000012/optimizer.safetensors
"$PSLORA" train $T --resume dmg > dmg.txt 2>&1 || fail "resume past a damaged checkpoint: $(tail -2 dmg.txt)"
grep -Eq 'warning: dmg/checkpoints/step-00000012/optimizer.safetensors: .*; trying an older checkpoint' dmg.txt \
  || fail "no warning naming the damaged file: $(head -2 dmg.txt)"
cmp local-ref/adapter_model.safetensors dmg/adapter_model.safetensors || fail "resume from step 9 differs"
ok "damaged newest checkpoint: warned, resumed from step 9, exact"

# killed before the first checkpoint: OUT has run.json only; the resume starts at 0
mkdir early && cp local-ref/run.json early/
"$PSLORA" train $T --resume early > early.txt 2>&1 || fail "resume without checkpoints: $(tail -2 early.txt)"
grep -q '^pslora train: warning: no complete checkpoint in early/checkpoints: starting at step 0$' early.txt \
  || fail "no warning: $(head -2 early.txt)"
cmp local-ref/adapter_model.safetensors early/adapter_model.safetensors || fail "restart from 0 differs"
ok "no checkpoint yet: warned, restarted at step 0, exact"

# --steps may grow: 12 then +4 == 16 straight (constant schedule)
T16=${T/--steps $STEPS/--steps 16}
"$PSLORA" train $T16 --out s16 >/dev/null 2>&1
cp -r local-ref grow
"$PSLORA" train ${T16/--checkpoint-every 3/--checkpoint-every 2} --resume grow --eval-every 4 \
  --val data_val.bin --log-every 2 > grow.txt 2>&1 || fail "resume with --steps 16 and other cadences: $(tail -2 grow.txt)"
cmp s16/adapter_model.safetensors grow/adapter_model.safetensors || fail "12 + 4 steps != 16 steps"
ok "--steps 12 -> 16 and new eval/checkpoint cadence allowed; equal to a 16-step run"

# flags that change the result are refused with one line; nothing is touched
cp -r local-ref keep
sum_before=$(cat keep/checkpoints/*/* keep/metrics.jsonl | md5sum)
expect_fail 1 '^pslora train: --resume: --rank differs: the checkpoint keep/checkpoints/step-00000012 has 8, this run has 4$' \
  "$PSLORA" train $T --rank 4 --resume keep
expect_fail 1 '--resume: --alpha differs: .* has 16, this run has 32' "$PSLORA" train $T --alpha 32 --resume keep
expect_fail 1 '--resume: --targets differs' "$PSLORA" train ${T/c_attn,c_proj,c_fc/c_attn} --resume keep
expect_fail 1 '--resume: --batch differs: .* has 4, this run has 2' "$PSLORA" train ${T/--batch 4/--batch 2} --resume keep
expect_fail 1 '--resume: --seq differs' "$PSLORA" train ${T/--seq 32/--seq 16} --resume keep
expect_fail 1 '--resume: --seed differs: .* has 1, this run has 2' "$PSLORA" train $T --seed 2 --resume keep
expect_fail 1 '--resume: --lr differs' "$PSLORA" train ${T/--lr 3e-3/--lr 1e-3} --resume keep
"$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 4 --out model2 >/dev/null
expect_fail 1 '--resume: model.weights differs' "$PSLORA" train ${T/--model model/--model model2} --resume keep
expect_fail 1 '--resume: workers differs: .* has 1, this run has 2' mpi -np 3 "$PSLORA" train $T --resume keep
expect_fail 1 '^pslora train: --steps: 8 is below step 12 of the checkpoint keep/checkpoints/step-00000012$' \
  "$PSLORA" train ${T/--steps $STEPS/--steps 8} --resume keep
expect_fail 1 '^pslora train: --resume: nothere: No such file or directory$' "$PSLORA" train $T --resume nothere
mkdir -p notarun && touch notarun/x
expect_fail 1 '^pslora train: --resume: notarun holds no pslora run \(no run.json\)$' "$PSLORA" train $T --resume notarun
expect_fail 2 '^pslora train: --resume: continues the run in keep, but --out names other$' \
  "$PSLORA" train $T --resume keep --out other
expect_fail 2 '^pslora train: --out: required' "$PSLORA" train $T
expect_fail 2 '^pslora train: --checkpoint-every: periodic checkpoints need --sync bsp \(ssp runs write one checkpoint at the end\)$' \
  "$PSLORA" train $T --sync ssp --resume keep
[ "$(cat keep/checkpoints/*/* keep/metrics.jsonl | md5sum)" = "$sum_before" ] || fail "a refused resume changed files"
ok "refused resumes leave the run untouched"

# 1 server + 2 workers resumed with 2 servers: --servers may change (same
# arithmetic but for the order of the norm's partial sums: equal to 1e-5)
cp -r s1w2-ref s2from1
mpi -np 4 "$PSLORA" train ${T/--steps $STEPS/--steps 14} --servers 2 --resume s2from1 > s2from1.txt 2>&1 \
  || fail "resume with --servers 2: $(tail -2 s2from1.txt)"
mpi -np 3 "$PSLORA" train ${T/--steps $STEPS/--steps 14} --out s1w2-14 >/dev/null 2>&1
"$ADAPTER_DIFF" s1w2-14 s2from1 1e-5 >/dev/null || fail "--servers 1 -> 2 resume differs beyond 1e-5"
ok "--servers 1 -> 2 on resume"
echo "cli_resume: all passed"
