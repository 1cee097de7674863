#!/usr/bin/env bash
# Single-process training end to end: the loss falls, outputs are complete,
# bad input is refused with one line and no output directory.
. "$(dirname "$0")/lib.sh"
make_tiny
T="--model model --data data.bin --seq 32 --batch 8"

# training lowers the training loss clearly
before=$("$PSLORA" eval --model model --data data.bin --seq 32 --batch 8 --max-batches 20 | awk '{print $2}')
"$PSLORA" train $T --out run --steps 60 --lr 3e-3 --rank 8 --targets c_attn,c_proj,c_fc \
  --val data_val.bin --eval-every 30 > train.txt 2> progress.txt
after=$("$PSLORA" eval --model model --adapter run --data data.bin --seq 32 --batch 8 --max-batches 20 | awk '{print $2}')
awk -v a="$after" -v b="$before" 'BEGIN { exit !(a < b - 0.1) }' || fail "loss $before -> $after"
ok "train loss $before -> $after"
for f in adapter_model.safetensors adapter_config.json metrics.jsonl run.json; do
  [ -s "run/$f" ] || fail "run/$f missing"
done
grep -q '^done: steps 60 tokens 15360 ' train.txt || fail "summary line: $(cat train.txt)"
grep -q 'step 60/60 loss' progress.txt || fail "no progress line"
[ "$(json_field run/metrics.jsonl step step | wc -l)" = 60 ] || fail "60 step rows expected"
[ "$(json_field run/metrics.jsonl eval val_loss | wc -l)" = 2 ] || fail "2 eval rows expected"
ok "outputs complete"

# same flags, same seed: byte-identical adapter
"$PSLORA" train $T --out run2 --steps 60 --lr 3e-3 --rank 8 --targets c_attn,c_proj,c_fc \
  --val data_val.bin --eval-every 30 >/dev/null 2>&1
cmp run/adapter_model.safetensors run2/adapter_model.safetensors || fail "not deterministic"
ok "deterministic"

# --init-adapter continues from a PEFT directory: its r and alpha win
"$PSLORA" train $T --out cont --steps 2 --init-adapter run --rank 4 >/dev/null 2>&1
grep -Eq '"r":[[:space:]]*8,' cont/adapter_config.json || fail "init-adapter r not kept"
ok "init-adapter"

# bad input: one line naming the file or flag, exit 1 or 2, no output dir
expect_fail 1 'nodir.*config.json' "$PSLORA" train --model nodir --data data.bin --out o1
[ ! -e o1 ] || fail "o1 created"
mkdir -p trunc && cp model/config.json trunc/ && head -c 3000 model/model.safetensors > trunc/model.safetensors
expect_fail 1 'trunc/model.safetensors' "$PSLORA" train --model trunc --data data.bin --out o2
[ ! -e o2 ] || fail "o2 created"
mkdir -p hdr && cp model/config.json hdr/ && printf '\xff\xff\x00\x00\x00\x00\x00\x00{}' > hdr/model.safetensors
expect_fail 1 'hdr/model.safetensors.*header' "$PSLORA" train --model hdr --data data.bin --out o3
mkdir -p nohead && grep -v n_head model/config.json > nohead/config.json && cp model/model.safetensors nohead/
expect_fail 1 'config.json.*n_head' "$PSLORA" train --model nohead --data data.bin --out o4
printf 'XXXX' > badmagic.bin && head -c 2000 /dev/zero >> badmagic.bin
expect_fail 1 'badmagic.bin.*magic' "$PSLORA" train --model model --data badmagic.bin --out o5
"$PSLORA" init --layers 1 --dim 16 --heads 2 --vocab 100 --ctx 64 --out small >/dev/null
expect_fail 1 'data.bin: token [0-9]+ at position [0-9]+ is out of range \(vocab 100\)' \
  "$PSLORA" train --model small --data data.bin --out o6
expect_fail 1 "--targets: 'q_proj' matches no module" "$PSLORA" train $T --targets q_proj --out o7
expect_fail 2 '^pslora train: --rank' "$PSLORA" train $T --rank 0 --out o8
expect_fail 2 '--steps: expected an integer' "$PSLORA" train $T --steps ten --out o9
expect_fail 2 "--compute: expected fp32, bf16 or auto, got 'bf15'" "$PSLORA" train $T --compute bf15 --out o13
expect_fail 2 '--bogus: unknown flag' "$PSLORA" train $T --bogus 1 --out o10
expect_fail 2 '--model: required' "$PSLORA" train --data data.bin --out o11
expect_fail 1 '--out: run already exists' "$PSLORA" train $T --out run
expect_fail 1 '--seq: 100 is longer than the model.s context 64' "$PSLORA" train --model model --data data.bin --seq 100 --out o12
for d in o1 o2 o3 o4 o5 o6 o7 o8 o9 o10 o11 o12 o13; do [ ! -e "$d" ] || fail "$d created"; done
cmp run/adapter_model.safetensors run2/adapter_model.safetensors || fail "earlier output touched"
ok "bad input refused, nothing written"
echo "cli_train: all passed"
