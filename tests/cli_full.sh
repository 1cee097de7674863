#!/usr/bin/env bash
# pslora train --full: full fine-tuning through the parameter server.
#  - W workers x batch B == 1 process x batch W*B (1 and 2 servers): the
#    output models' updates agree within 1e-5 (tool_adapter_diff with BASE);
#  - bytes per step = trained floats x 4 x workers, pushed and pulled, plus
#    under 1% of message overhead; the summary's trained_params and mem/rank;
#  - the output is a model directory `pslora eval --model` reads, and it
#    differs from the base only in the trained tensors;
#  - --full-include embeddings: wte and wpe trained (and an untied lm_head):
#    2 workers x 4 == 1 x 8 for a tied and an untied GPT-2; the tied output
#    has its trained wte and no lm_head, the untied one its own trained head;
#  - SIGKILL mid-run, --resume: model.safetensors byte-identical to an
#    uninterrupted run (one process with norms and embeddings, 2 servers + 2
#    workers, an untied Llama with embeddings);
#  - bad flags: one line, exit 2.
. "$(dirname "$0")/lib.sh"
make_tiny
: "${ADAPTER_DIFF:?}"
T="--model model --data data.bin --seq 32 --steps 6 --optimizer sgd --lr 0.05 --full --log-every 1"

# reference: one process, batch 8; linears, biases and norms trained.  SGD:
# the update is linear in the gradient, so the summation order of W pushes
# shows as float rounding only; AdamW divides by sqrt(v), and for its
# near-zero entries (the biases) the same rounding moves the update more:
# 2.9e-5 here, checked below at 1e-4.
"$PSLORA" train $T --batch 8 --full-include biases,norms --out ref > ref.txt 2>&1 || fail "ref: $(tail -3 ref.txt)"
mpi -np 3 "$PSLORA" train $T --batch 4 --full-include biases,norms --out w2 > w2.txt 2>&1 || fail "np3: $(tail -3 w2.txt)"
"$ADAPTER_DIFF" ref w2 1e-5 model || fail "2 workers x 4 != 1 x 8"
mpi -np 4 "$PSLORA" train $T --batch 4 --servers 2 --full-include biases,norms --out s2 > s2.txt 2>&1 \
  || fail "np4: $(tail -3 s2.txt)"
"$ADAPTER_DIFF" ref s2 1e-5 model || fail "2 servers, 2 workers x 4 != 1 x 8"
A="${T/--optimizer sgd --lr 0.05/--lr 1e-3} --full-include biases,norms"
"$PSLORA" train $A --batch 8 --out adam1 > /dev/null 2>&1 || fail "adamw ref"
mpi -np 3 "$PSLORA" train $A --batch 4 --out adam2 > /dev/null 2>&1 || fail "adamw np3"
"$ADAPTER_DIFF" adam1 adam2 1e-4 model || fail "AdamW: 2 workers x 4 != 1 x 8"
ok "--full: 2 workers x 4 == 1 x 8 (SGD 1 and 2 servers within 1e-5, AdamW within 1e-4)"

# the trained tensors moved, the embeddings did not: every linear's weight
# and bias, every norm; wte and wpe are frozen
"$PSLORA" inspect ref/model.safetensors > /dev/null || fail "inspect of the output model"
"$ADAPTER_DIFF" model ref 0 > diff.txt 2>&1 && fail "the output model equals the base"
python3 - ref/model.safetensors model/model.safetensors <<'PY' || fail "trained/frozen tensors"
import json, struct, sys
def load(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys(), "key sets differ"
for k in a:
    frozen = k.endswith(('wte.weight', 'wpe.weight'))
    assert (a[k] == b[k]) == frozen, k + (" changed" if frozen else " did not change")
PY
"$PSLORA" eval --model ref --data data_val.bin --seq 32 > eval.txt 2>&1 || fail "eval of the output: $(cat eval.txt)"
ok "output: a model directory; linears, biases, norms trained, embeddings frozen; eval reads it"

# embeddings: a tied GPT-2 (model) and an untied one; 2 workers x 4 == 1 x 8
"$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 4 --untied --out untied >/dev/null
for m in model untied; do
  E="${T/--model model/--model $m} --full-include biases,norms,embeddings"
  "$PSLORA" train $E --batch 8 --out e1-$m > e1-$m.txt 2>&1 || fail "embeddings $m: $(tail -3 e1-$m.txt)"
  mpi -np 3 "$PSLORA" train $E --batch 4 --out e2-$m > e2-$m.txt 2>&1 || fail "embeddings $m np3: $(tail -3 e2-$m.txt)"
  "$ADAPTER_DIFF" e1-$m e2-$m 1e-5 $m || fail "embeddings, $m: 2 workers x 4 != 1 x 8"
done
# 25472 + wte 256x32 + wpe 64x32 (+ lm_head 256x32 untied)
for m in model:35712 untied:43904; do
  got=$(sed -nE 's/.*trained_params ([0-9]+).*/\1/p' e2-${m%:*}.txt)
  [ "$got" = "${m#*:}" ] || fail "${m%:*}: trained_params $got, expected ${m#*:}"
  for f in bytes_pushed bytes_pulled; do   # all of it, each way, by both workers
    for v in $(json_field e2-${m%:*}/metrics.jsonl step $f); do
      awk -v v="$v" -v p="$((got * 4))" 'BEGIN { exit !(v >= 2*p && v <= 2*p*1.01) }' \
        || fail "${m%:*}: $f $v vs 2 x $((got * 4))"
    done
  done
done
python3 - e1-model model e1-untied untied <<'PY' || fail "embeddings in the output models"
import json, struct, sys
def load(p):
    b = open(p + '/model.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]: 8 + n + v['data_offsets'][1]] for k, v in h.items()}
def tied(p):
    return json.load(open(p + '/config.json')).get('tie_word_embeddings', True)
out, base, uout, ubase = (load(p) for p in sys.argv[1:5])
# tied: the same keys as the base (no lm_head), every tensor trained, config still tied
assert out.keys() == base.keys() and 'lm_head.weight' not in out, sorted(out)
for k in out:
    assert out[k] != base[k], k + " did not change"
assert tied(sys.argv[1]) is True, "tied output lost tie_word_embeddings"
# untied: its own trained head, not the wte
assert uout.keys() == ubase.keys() and 'lm_head.weight' in uout, sorted(uout)
for k in uout:
    assert uout[k] != ubase[k], k + " did not change"
assert uout['lm_head.weight'] != uout['transformer.wte.weight']
assert tied(sys.argv[3]) is False, "untied output says tied"
PY
"$PSLORA" eval --model e1-model --data data_val.bin --seq 32 > eval-e.txt 2>&1 || fail "eval of the embeddings output: $(cat eval-e.txt)"
ok "--full-include embeddings: wte, wpe (and an untied lm_head) trained; 2 workers x 4 == 1 x 8 tied and untied within 1e-5; bytes per step = the trained floats x 4 x 2 workers; tied output keeps one wte"

# bytes per step: the trained floats x 4 x 2 workers, each way
params=$(sed -nE 's/.*trained_params ([0-9]+).*/\1/p' w2.txt)
[ "$params" = 25472 ] || fail "trained_params $params, expected 25472"
payload=$((params * 4))
for f in bytes_pushed bytes_pulled; do
  for v in $(json_field w2/metrics.jsonl step $f) $(json_field s2/metrics.jsonl step $f); do
    awk -v v="$v" -v p="$payload" 'BEGIN { exit !(v >= 2*p && v <= 2*p*1.01) }' \
      || fail "$f $v vs 2 x $payload"
  done
done
grep -Eq 'mem/rank [1-9][0-9]* MB' w2.txt || fail "summary lacks mem/rank: $(tail -1 w2.txt)"
mpi -np 3 "$PSLORA" train ${T/--full/--targets c_attn,c_proj,c_fc} --batch 4 --out lora > lora.txt 2>&1 \
  || fail "lora: $(tail -3 lora.txt)"
full_bps=$(sed -nE 's/.*bytes\/step ([0-9]+).*/\1/p' w2.txt)
lora_bps=$(sed -nE 's/.*bytes\/step ([0-9]+).*/\1/p' lora.txt)
[ "$full_bps" -gt $((2 * lora_bps)) ] || fail "full $full_bps B/step not above LoRA's $lora_bps"
ok "bytes per step = $params floats x 4 x 2 workers each way (+ <1%); full $full_bps B/step, LoRA r=8 $lora_bps"

# the 25472 floats from the shapes: per layer c_attn 32x96+96, attn.c_proj
# 32x32+32, c_fc 32x128+128, mlp.c_proj 128x32+32, ln_1 and ln_2 2x(32+32);
# 2 layers, then ln_f 32+32
[ $((2 * (3072 + 96 + 1024 + 32 + 4096 + 128 + 4096 + 32 + 128) + 64)) = 25472 ] || fail "arithmetic"

# resume: SIGKILL mid-run, --resume, byte-identical model
STEPS=10
R="--model model --data data.bin --seq 32 --batch 4 --steps $STEPS --lr 1e-3 --full --checkpoint-every 2"
resume_case() {   # NAME SLOW_RANK FLAGS LAUNCH...
  local name=$1 slow=$2 flags=$3; shift 3
  "$@" "$PSLORA" train $R $flags --out "$name-ref" > "$name-ref.txt" 2>&1 || fail "$name ref: $(tail -3 "$name-ref.txt")"
  PSLORA_TEST_SLOW_RANK=$slow PSLORA_TEST_SLOW_MS=250 start_bg "$name" "$name.txt" \
    "$@" "$PSLORA" train $R $flags --out "$name"
  kill_at "$name" 4
  local at; at=$(last_step "$name")
  [ "$at" -ge 4 ] && [ "$at" -lt "$STEPS" ] && [ ! -e "$name/model.safetensors" ] \
    || fail "$name: killed after step $at, expected a step in [4, $((STEPS - 1))]"
  [ -s "$name/checkpoints/latest/model.safetensors" ] && [ -s "$name/checkpoints/latest/optimizer.safetensors" ] \
    || fail "$name: the checkpoint lacks model.safetensors or optimizer.safetensors"
  "$@" "$PSLORA" train $R $flags --resume "$name" > "$name-resume.txt" 2>&1 \
    || fail "$name: resume failed: $(tail -3 "$name-resume.txt")"
  cmp "$name-ref/model.safetensors" "$name/model.safetensors" \
    || fail "$name (killed after step $at): model differs from the uninterrupted run"
  ok "$name: killed after step $at, resumed: model byte-identical"
}
resume_case local 0 "--full-include norms,embeddings"
resume_case s2w2 2 "--servers 2" mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS -np 4
"$PSLORA" init --arch llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 256 --ctx 64 --seed 5 --untied --out llama-model >/dev/null
R=${R/--model model/--model llama-model}
resume_case llama 2 "--full-include embeddings" mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS -np 3
# what --full trains is part of the run: a resume with other includes is refused
expect_fail 1 '^pslora train: --resume: --full differs: the checkpoint .* has norms,embeddings, this run has biases' \
  "$PSLORA" train ${R/--model llama-model/--model model} --full-include biases --resume local-ref

# bad flags: one line, exit 2, no output
expect_fail 2 '^pslora train: --rank: an adapter flag, not used with --full' \
  "$PSLORA" train $T --rank 4 --out bad1
expect_fail 2 '^pslora train: --targets: an adapter flag' "$PSLORA" train $T --targets c_attn --out bad2
expect_fail 2 '^pslora train: --compute bf16: --full trains in fp32 only' \
  "$PSLORA" train $T --compute bf16 --out bad3
expect_fail 2 '^pslora train: --full-include: needs --full' \
  "$PSLORA" train ${T/--full/} --full-include norms --out bad4
expect_fail 2 "^pslora train: --full-include: expected biases, norms and/or embeddings, got 'heads'" \
  "$PSLORA" train $T --full-include norms,heads --out bad5
for d in bad1 bad2 bad3 bad4 bad5; do [ ! -e $d ] || fail "$d: a refused run left output"; done
