#!/usr/bin/env bash
# Task data: pslora tokenize --format, training and evaluation on samples.
#  - W workers x batch B == 1 worker x W*B with sample data shuffled (also
#    across an epoch boundary inside a batch); byte-identical reruns;
#  - SIGKILL mid-epoch and --resume == the uninterrupted adapter, byte for byte;
#  - the order (PSLORA_TEST_ORDER_LOG): every sample once per epoch, epochs
#    differ, same seed same order, another seed another order, 2 workers read
#    the global order of 1 worker with twice the batch;
#  - --epochs E: ceil(E*N / (W*B)) steps; --pack; a step with no counted target;
#  - bad input: one line, exit 1, nothing written.
. "$(dirname "$0")/lib.sh"
: "${ADAPTER_DIFF:?}"
"$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 3 --out model >/dev/null

# prompt: a line of the GPL (at most 40 bytes) + "\n"; completion: the next line's first 16 bytes
python3 - <<'PY'
import json
lines = [l.rstrip("\n") for l in open("/usr/share/common-licenses/GPL-3", encoding="utf-8") if l.strip()]
with open("pc.jsonl", "w") as f:
    for a, b in zip(lines[:100], lines[1:101]):
        f.write(json.dumps({"prompt": a[:40] + "\n", "completion": b[:16]}) + "\n")
PY
"$PSLORA" tokenize --format prompt-completion --in pc.jsonl --out pc.bin --eos-id 10 --val-fraction 0.1 > tok.txt \
  || fail "tokenize: $(cat tok.txt)"
grep -q '^pc.bin: 90 samples' tok.txt && grep -q '^pc_val.bin: 10 samples' tok.txt || fail "split: $(cat tok.txt)"
ok "tokenize: 90 + 10 samples (split by samples)"

# 90 samples, global batch 8: an epoch is 11.25 steps; 30 steps cross two boundaries mid-batch
STEPS=30
T="--model model --data pc.bin --seq 48 --steps $STEPS --lr 3e-3 --targets c_attn,c_proj,c_fc --checkpoint-every 5"
"$PSLORA" train $T --batch 8 --out ref >ref.txt 2>&1 || fail "ref: $(tail -3 ref.txt)"
grep -q 'epoch 2.67' ref.txt || fail "progress line has no epoch: $(tail -2 ref.txt)"
grep -q '"type":"step","step":30,"epoch":2.66' ref/metrics.jsonl || fail "metrics row has no epoch"
mpi -np 3 "$PSLORA" train $T --batch 4 --out w2 >w2.txt 2>&1 || fail "np3: $(tail -3 w2.txt)"
"$ADAPTER_DIFF" ref w2 1e-5 >/dev/null || fail "2 workers x 4 != 1 x 8 on shuffled samples"
ok "1 server + 2 workers x 4 == one process x 8 (shuffled samples, 30 steps over 2.7 epochs)"
mpi -np 3 "$PSLORA" train $T --batch 4 --out w2b >/dev/null 2>&1 || fail "np3 rerun"
cmp w2/adapter_model.safetensors w2b/adapter_model.safetensors || fail "2-worker rerun differs"
"$PSLORA" train $T --batch 8 --out refb >/dev/null 2>&1
cmp ref/adapter_model.safetensors refb/adapter_model.safetensors || fail "1-process rerun differs"
ok "reruns byte-identical (1 process, 2 workers)"
# the loss counts only completion targets: tokens per step = counted targets
tok=$(json_field ref/metrics.jsonl step tokens | head -1)
[ "$tok" -gt 0 ] && [ "$tok" -lt $((8 * 48)) ] || fail "step 1 counted $tok targets, expected 0 < n < 384"
ok "a step counts $tok targets of 8 x 48 positions"

# SIGKILL mid-epoch, resume: byte-identical (1 process, and 1 server + 2 workers)
for mode in local w2; do
  launch=(); b=8; slow=0
  [ $mode = w2 ] && launch=(mpi -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS -np 3) && b=4 && slow=2
  for k in 7 17; do
    out=kill-$mode-$k
    PSLORA_TEST_SLOW_RANK=$slow PSLORA_TEST_SLOW_MS=250 start_bg "$out" "$out.txt" \
      "${launch[@]}" "$PSLORA" train $T --batch $b --out $out
    kill_at $out $k
    killed_mid_run $out $k
    at=$(last_step $out)
    "${launch[@]}" "$PSLORA" train $T --batch $b --resume $out >"$out-resume.txt" 2>&1 \
      || fail "$out: resume: $(tail -3 "$out-resume.txt")"
    ref_dir=ref; [ $mode = w2 ] && ref_dir=w2
    cmp $ref_dir/adapter_model.safetensors $out/adapter_model.safetensors \
      || fail "$out (killed after step $at, epoch $(awk "BEGIN{print $at*8/90}")): resumed adapter differs"
    ok "$mode: killed after step $at (mid-epoch), resumed: byte-identical"
  done
done

# the order: every sample once per epoch, epochs differ, seeds
order() {   # order OUT SEED BATCH NP: the entries read, "step epoch entry" per row
  local out=$1 seed=$2 b=$3 np=$4
  rm -f $out.log.*
  if [ "$np" = 1 ]; then
    PSLORA_TEST_ORDER_LOG=$PWD/$out.log "$PSLORA" train ${T/--steps $STEPS/--steps 45} --batch $b --seed $seed --out $out >/dev/null 2>&1
  else
    mpi -x PSLORA_TEST_ORDER_LOG=$PWD/$out.log -np $np "$PSLORA" train ${T/--steps $STEPS/--steps 45} --batch $b --seed $seed --out $out >/dev/null 2>&1
  fi || fail "order run $out"
}
order o1 1 8 1; order o1b 1 8 1; order o2 2 8 1; order ow 1 4 3
for e in 0 1 2 3; do
  awk -v e=$e '$2 == e { print $3 }' o1.log.w0 | sort -n > ep$e.txt
  seq 0 89 | cmp - ep$e.txt || fail "epoch $e does not read each of the 90 samples exactly once"
  awk -v e=$e '$2 == e { print $3 }' o1.log.w0 > order$e.txt
done
[ "$(wc -l < o1.log.w0)" = 360 ] || fail "45 steps x 8 rows = 360 rows, got $(wc -l < o1.log.w0)"
! cmp -s order0.txt order1.txt || fail "epochs 0 and 1 read the samples in the same order"
seq 0 89 | cmp -s - order0.txt && fail "epoch 0 is not shuffled"
cmp o1.log.w0 o1b.log.w0 || fail "same seed, another order"
! cmp -s o1.log.w0 o2.log.w0 || fail "seed 2 reads the seed-1 order"
# 2 workers x 4: rows of step t are worker 0's 4 then worker 1's 4
awk '{ print $1, 0, NR, $2, $3 }' ow.log.w0 > m.txt
awk '{ print $1, 1, NR, $2, $3 }' ow.log.w1 >> m.txt
sort -k1,1n -k2,2n -k3,3n m.txt | awk '{ print $4, $5 }' > ow.txt
awk '{ print $2, $3 }' o1.log.w0 | cmp - ow.txt || fail "2 workers x 4 do not read the order of 1 x 8"
ok "order: 4 epochs each read all 90 samples once, shuffled, epochs differ, seed decides, W-independent"

# --epochs: ceil(E*N / (W*B)) steps
"$PSLORA" train ${T/--steps $STEPS/--epochs 2} --batch 8 --out ep2 >ep2.txt 2>&1 || fail "epochs: $(tail -2 ep2.txt)"
grep -q '^done: steps 23 ' ep2.txt || fail "--epochs 2 of 90 samples at 8 per step: $(grep done ep2.txt), expected 23 steps"
mpi -np 3 "$PSLORA" train ${T/--steps $STEPS/--epochs 2} --batch 4 --out ep2w >ep2w.txt 2>&1
grep -q '^done: steps 23 ' ep2w.txt || fail "--epochs 2 with 2 workers x 4: $(grep done ep2w.txt)"
expect_fail 2 '^pslora train: --epochs: give --steps or --epochs, not both$' "$PSLORA" train $T --epochs 2 --out x
ok "--epochs 2: ceil(2 x 90 / 8) = 23 steps (1 x 8 and 2 x 4)"

# --pack: full rows; 2 workers == 1 worker
"$PSLORA" train $T --pack --batch 8 --out pk >pk.txt 2>&1 || fail "pack: $(tail -2 pk.txt)"
mpi -np 3 "$PSLORA" train $T --pack --batch 4 --out pkw >/dev/null 2>&1 || fail "pack np3"
"$ADAPTER_DIFF" pk pkw 1e-5 >/dev/null || fail "--pack: 2 x 4 != 1 x 8"
! cmp -s pk/adapter_model.safetensors ref/adapter_model.safetensors || fail "--pack changed nothing"
ok "--pack: 2 workers x 4 == 1 x 8, and differs from one sample per row"

# eval: every sample once; the loss changes with training
"$PSLORA" eval --model model --data pc_val.bin --seq 48 --batch 3 --json > ev0.txt || fail "eval"
"$PSLORA" eval --model model --data pc_val.bin --seq 48 --batch 7 --json > ev1.txt
grep -q '"samples": 10}' ev0.txt || fail "eval visits 10 samples: $(cat ev0.txt)"
[ "$(cat ev0.txt | sed 's/.*"tokens": \([0-9]*\).*/\1/')" = "$(cat ev1.txt | sed 's/.*"tokens": \([0-9]*\).*/\1/')" ] \
  || fail "batch 3 and 7 count different targets: $(cat ev0.txt ev1.txt)"
ok "eval of samples: the same counted targets at batch 3 and 7 (every sample once, padded)"

# a step with no counted target: nothing is applied (the adapter stays at init)
python3 -c '
import json
for i in range(6): print(json.dumps({"prompt": "x" * 60, "completion": "tail"}))' > long.jsonl
"$PSLORA" tokenize --format prompt-completion --in long.jsonl --out long.bin --no-eos >/dev/null
"$PSLORA" train --model model --data long.bin --seq 32 --steps 3 --batch 2 --weight-decay 0.5 --out zero >zero.txt 2>&1 \
  || fail "zero targets: $(tail -2 zero.txt)"
"$PSLORA" train --model model --data long.bin --seq 32 --steps 1 --batch 2 --lr 0 --out init >/dev/null 2>&1
cmp zero/adapter_model.safetensors init/adapter_model.safetensors || fail "a step with no target changed the adapter"
grep -q '"tokens":0,' zero/metrics.jsonl && grep -q '"loss":null' zero/metrics.jsonl || fail "zero-target row: $(head -1 zero/metrics.jsonl)"
expect_fail 1 'long.bin: no target counts in the loss within --seq 32' "$PSLORA" eval --model model --data long.bin --seq 32
ok "no counted target: no update (weight decay 0.5 did not act), loss null, eval refuses"

# a real tokenizer: a WordLevel tokenizer.json whose post-processor puts <s>
# before and [SEP] after a sequence, and tokenizer_config.json naming </s>
mkdir -p tk
cat > tk/tokenizer.json <<'TOK'
{"version": "1.0", "truncation": null, "padding": null,
 "added_tokens": [
  {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
  {"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
 "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
 "post_processor": {"type": "TemplateProcessing",
   "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
   "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
 "decoder": null,
 "model": {"type": "WordLevel", "unk_token": "<unk>", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "[SEP]": 3, "what": 4, "is": 5, "two": 6, "plus": 7, "four": 8, "?": 9, "good": 10, "bad": 11}}}
TOK
echo '{"eos_token": {"content": "</s>"}}' > tk/tokenizer_config.json
printf '{"prompt": "what is two plus two ?", "completion": "four"}\n{"prompt": "what is", "completion": "good bad"}\n' > wl.jsonl
"$PSLORA" tokenize --format prompt-completion --tokenizer tk --in wl.jsonl --out wl.bin >/dev/null || fail "tokenize with tk"
# ids: <s> prompt completion </s>; mask (after the 64-byte header and 3 offsets): bos and prompt 0
[ "$(od -An -tu2 -j1024 wl.bin | xargs)" = "1 4 5 6 7 6 9 8 2 1 4 5 10 11 2" ] || fail "ids $(od -An -tu2 -j1024 wl.bin | xargs)"
[ "$(od -An -tu1 -j76 wl.bin.samples | xargs)" = "0 0 0 0 0 0 0 1 1 0 0 0 1 1 1" ] || fail "mask $(od -An -tu1 -j76 wl.bin.samples | xargs)"
"$PSLORA" tokenize --format prompt-completion --tokenizer tk/tokenizer.json --in wl.jsonl --out wl2.bin >/dev/null
cmp wl.bin wl2.bin && cmp wl.bin.samples wl2.bin.samples || fail "a tokenizer.json path finds another eos than its directory"
printf '{"text": "good", "label": "pos"}\n{"text": "bad", "text_pair": "what is", "label": "neg"}\n' > wlc.jsonl
"$PSLORA" tokenize --format classification --tokenizer tk --labels neg,pos --in wlc.jsonl --out wlc.bin >/dev/null
[ "$(od -An -tu2 -j1024 wlc.bin | xargs)" = "1 10 3 1 11 3 4 5 3" ] || fail "classification ids $(od -An -tu2 -j1024 wlc.bin | xargs)"
[ "$(od -An -tu1 -j76 -N9 wlc.bin.samples | xargs)" = "0 0 0 0 0 0 1 1 1" ] || fail "classification segments"
[ "$(od -An -td4 -j85 wlc.bin.samples | xargs)" = "1 0" ] || fail "labels $(od -An -td4 -j85 wlc.bin.samples | xargs)"
"$PSLORA" eval --model model --data wl.bin --seq 8 --json > wl-eval.txt || fail "eval of tokenizer samples"
grep -q '"tokens": 5, "samples": 2' wl-eval.txt || fail "eval counts: $(cat wl-eval.txt)"
expect_fail 1 'classification samples are for encoder models' "$PSLORA" train --model model --data wlc.bin --seq 8 --steps 1 --out wlc-run
rm tk/tokenizer_config.json
expect_fail 2 '^pslora tokenize: --eos-id: the tokenizer tk names no end-of-sequence token' \
  "$PSLORA" tokenize --format prompt-completion --tokenizer tk --in wl.jsonl --out wl3.bin
echo '{"eos_token_id": 2}' > tk/config.json
"$PSLORA" tokenize --format prompt-completion --tokenizer tk --in wl.jsonl --out wl3.bin >/dev/null || fail "config.json eos_token_id"
cmp wl.bin wl3.bin || fail "config.json's eos_token_id 2 gives other ids"
ok "tokenizer.json: <s> + prompt + completion + </s>, prompt masked; classification [SEP] segments and labels; eos from tokenizer_config.json or config.json"

# bad input: one line naming file and line, exit 1, nothing written
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n' > bad1.jsonl
expect_fail 1 '^pslora tokenize: bad1.jsonl:2: not valid JSON' "$PSLORA" tokenize --format prompt-completion --in bad1.jsonl --out b.bin --no-eos
printf '{"prompt": "a", "completion": "b"}\n\n{"prompt": "a"}\n' > bad2.jsonl
expect_fail 1 '^pslora tokenize: bad2.jsonl:3: missing field "completion"$' "$PSLORA" tokenize --format prompt-completion --in bad2.jsonl --out b.bin --no-eos
printf '{"prompt": "a", "completion": ""}\n' > bad3.jsonl
expect_fail 1 '^pslora tokenize: bad3.jsonl:1: empty "completion"$' "$PSLORA" tokenize --format prompt-completion --in bad3.jsonl --out b.bin --no-eos
printf '{"q": "a", "a": 5}\n' > bad4.jsonl
expect_fail 1 '^pslora tokenize: bad4.jsonl:1: field "a" is not a string$' "$PSLORA" tokenize --format prompt-completion --prompt-field q --completion-field a --in bad4.jsonl --out b.bin --no-eos
printf '[1, 2]\n' > bad5.jsonl
expect_fail 1 '^pslora tokenize: bad5.jsonl:1: not a JSON object$' "$PSLORA" tokenize --format text --in bad5.jsonl --out b.bin
printf '{"text": "good", "label": "pos"}\n{"text": "meh", "label": "neutral"}\n' > cls.jsonl
expect_fail 1 '^pslora tokenize: cls.jsonl:2: label "neutral" is not in --labels neg,pos$' "$PSLORA" tokenize --format classification --labels neg,pos --in cls.jsonl --out b.bin
printf '{"text": "good", "label": 2}\n' > cls2.jsonl
expect_fail 1 'cls2.jsonl: sample 1: label 2 is outside --labels neg,pos \(2 labels\)' "$PSLORA" tokenize --format classification --labels neg,pos --in cls2.jsonl --out b.bin
expect_fail 1 '^pslora tokenize: cls.jsonl:1: label "pos" is a string: name the labels with --labels$' "$PSLORA" tokenize --format classification --in cls.jsonl --out b.bin
printf '{"prompt": "%s", "completion": "b"}\n' "$(printf 'p%.0s' $(seq 30))" > bad6.jsonl
expect_fail 1 '^pslora tokenize: bad6.jsonl:1: sample of 31 tokens is longer than --max-len 20 \(--truncate cuts it\)$' "$PSLORA" tokenize --format prompt-completion --in bad6.jsonl --out b.bin --no-eos --max-len 20
expect_fail 1 '^pslora tokenize: bad6.jsonl:1: the prompt alone fills --max-len 20: no completion token is left$' "$PSLORA" tokenize --format prompt-completion --in bad6.jsonl --out b.bin --no-eos --max-len 20 --truncate
expect_fail 2 '^pslora tokenize: --eos-id: the tokenizer bytes names no end-of-sequence token' "$PSLORA" tokenize --format prompt-completion --in pc.jsonl --out b.bin
expect_fail 2 "^pslora tokenize: --format: expected text, prompt-completion or classification, got 'chat'$" "$PSLORA" tokenize --format chat --in pc.jsonl --out b.bin
[ -z "$(ls b.bin* 2>/dev/null)" ] || fail "a refused tokenize left files: $(ls b.bin*)"
# the validation part cannot be written: neither part is left
mkdir -p v/two_val.bin
expect_fail 1 'two_val.bin' "$PSLORA" tokenize --format prompt-completion --in pc.jsonl --out v/two.bin --eos-id 10 --val-fraction 0.2
[ -z "$(ls v/two.bin* 2>/dev/null)" ] || fail "half of a pair left: $(ls v)"
ok "bad JSONL refused with file:line, nothing written (also when the second part fails)"

# a sidecar that does not match its shard
cp pc.bin s1.bin; cp pc_val.bin.samples s1.bin.samples
expect_fail 1 '^pslora train: s1.bin.samples: counts [0-9]+ tokens but its shard s1.bin has [0-9]+$' \
  "$PSLORA" train --model model --data s1.bin --steps 1 --out s1
cp pc.bin s2.bin; cp pc.bin.samples s2.bin.samples; printf '\x00' | dd of=s2.bin.samples bs=1 seek=0 conv=notrunc 2>/dev/null
expect_fail 1 '^pslora (eval|train): s2.bin.samples: bad magic [0-9]+ \(expected 20250601\): not a pslora samples file$' \
  "$PSLORA" eval --model model --data s2.bin --seq 48
expect_fail 1 's2.bin.samples: bad magic' "$PSLORA" train --model model --data s2.bin --steps 1 --out s2
cp pc.bin s3.bin; head -c 100 pc.bin.samples > s3.bin.samples
expect_fail 1 '^pslora eval: s3.bin.samples: file is 100 bytes but its header \(' "$PSLORA" eval --model model --data s3.bin --seq 48
expect_fail 1 'pc.bin,s4.bin: 1 of 2 shards have a .samples sidecar' \
  bash -c "cp pc.bin s4.bin && \"$PSLORA\" eval --model model --data pc.bin,s4.bin --seq 48"
expect_fail 1 '^pslora train: --pack: --data is a token stream \(no .samples sidecars\)' \
  bash -c "head -c 5000 /usr/share/common-licenses/GPL-3 > c.txt && \"$PSLORA\" tokenize --in c.txt --out data.bin >/dev/null && \"$PSLORA\" train --model model --data data.bin --pack --steps 1 --out pk2"
[ ! -e s1 ] && [ ! -e s2 ] && [ ! -e pk2 ] || fail "a refused run left output"
ok "sidecars that do not match their shard: one line, exit 1"
echo "cli_tasks: all passed"
