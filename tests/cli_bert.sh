#!/bin/bash
# cli_bert.sh - BERT end to end (docs/bert.md): a synthetic classification
# task that a tiny random BERT cannot solve untrained (the label is which of
# two token groups a text contains, among filler words; some samples are
# pairs, token type 1), tokenized by `pslora tokenize --format
# classification` with a WordLevel tokenizer.json whose template is
# [CLS] A [SEP] (B [SEP]):
#  - init --arch bert --num-labels 2: held-out accuracy at chance;
#  - 1 server + 2 workers under mpirun: held-out accuracy > 90%;
#  - 2 workers x B == 1 worker x 2B (adapter and classifier within 1e-5);
#  - a run stopped at step 10 and resumed to 20 == 20 steps at once (bytes);
#  - the PEFT files: SEQ_CLS, modules_to_save ["classifier"], its keys;
#  - mlm: a masked-LM model trains and evaluates on text samples;
#  - bad flags name themselves.
source "$(dirname "$0")/lib.sh"
: "${ADAPTER_DIFF:?}"

python3 - <<'PY'
import json, os, random
words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"a{i}" for i in range(5)] \
      + [f"b{i}" for i in range(5)] + [f"f{i}" for i in range(10)]
sp = lambda t, i: {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                   "normalized": False, "special": True}
S = lambda t, ty: {"SpecialToken": {"id": t, "type_id": ty}}
Q = lambda t, ty: {"Sequence": {"id": t, "type_id": ty}}
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [sp(t, i) for i, t in enumerate(words[:5])],
       "normalizer": None, "pre_tokenizer": {"type": "Whitespace"},
       "post_processor": {"type": "TemplateProcessing",
                          "single": [S("[CLS]", 0), Q("A", 0), S("[SEP]", 0)],
                          "pair": [S("[CLS]", 0), Q("A", 0), S("[SEP]", 0), Q("B", 1), S("[SEP]", 1)],
                          "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                             "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
       "decoder": None,
       "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {w: i for i, w in enumerate(words)}}}
os.makedirs("tk", exist_ok=True)
json.dump(tok, open("tk/tokenizer.json", "w"))
def gen(n, seed):
    r = random.Random(seed)
    for _ in range(n):
        lab = r.randrange(2)
        toks = [f"f{r.randrange(10)}" for _ in range(r.randrange(3, 8))]
        toks.insert(r.randrange(len(toks) + 1), f"{'ab'[lab]}{r.randrange(5)}")
        d = {"text": " ".join(toks), "label": "AB"[lab]}
        if r.random() < 0.3:
            d["text_pair"] = " ".join(f"f{r.randrange(10)}" for _ in range(r.randrange(1, 4)))
        yield json.dumps(d)
open("train.jsonl", "w").write("\n".join(gen(256, 1)) + "\n")
open("val.jsonl", "w").write("\n".join(gen(128, 2)) + "\n")
with open("text.jsonl", "w") as f:
    r = random.Random(3)
    for _ in range(64):   # counting runs f_k f_k+1 ...: a masked word follows from its neighbours
        k = r.randrange(10)
        f.write(json.dumps({"text": " ".join(f"f{(k + i) % 10}" for i in range(10))}) + "\n")
PY
for s in train val; do
  "$PSLORA" tokenize --format classification --tokenizer tk --labels A,B --in $s.jsonl --out $s.bin >/dev/null
done
"$PSLORA" init --arch bert --layers 1 --dim 32 --heads 2 --intermediate 64 --vocab 25 --ctx 16 \
  --num-labels 2 --seed 3 --out model >/dev/null
grep -q '"BertForSequenceClassification"' model/config.json || fail "init: $(head -3 model/config.json)"

acc() { sed -E 's/.*accuracy ([0-9.]+).*/\1/' "$1"; }
"$PSLORA" eval --model model --data val.bin --seq 16 --batch 16 > e0.txt
grep -Eq '^loss [0-9.]+ accuracy [0-9.]+ examples 128$' e0.txt || fail "eval line: $(cat e0.txt)"
awk -v a="$(acc e0.txt)" 'BEGIN { exit !(a > 0.35 && a < 0.65) }' || fail "untrained accuracy $(acc e0.txt) is not chance"
ok "untrained: $(cat e0.txt)"

T="--model model --data train.bin --seq 16 --targets query,key,value,dense --rank 4 --seed 5"
mpi -np 3 "$PSLORA" train $T --lr 3e-3 --batch 8 --steps 120 --val val.bin --eval-every 60 --out w2 \
  > w2.txt 2>&1 || fail "np3: $(tail -3 w2.txt)"
[ "$(json_field w2/metrics.jsonl eval val_loss | wc -l)" = 2 ] || fail "validation rows: $(grep eval w2/metrics.jsonl)"
"$PSLORA" eval --model model --adapter w2 --data val.bin --seq 16 --batch 16 > e1.txt
awk -v a="$(acc e1.txt)" 'BEGIN { exit !(a > 0.9) }' || fail "trained accuracy: $(cat e1.txt)"
ok "1 server + 2 workers, 120 steps of 2 x 8: $(cat e1.txt)"
"$PSLORA" eval --model model --adapter w2 --data val.bin --seq 16 --batch 16 --json > e1.json
grep -Eq '"confusion": \[\[[0-9]+, [0-9]+\], \[[0-9]+, [0-9]+\]\]' e1.json || fail "json: $(cat e1.json)"

# PEFT files: the classifier as modules_to_save
grep -q '"task_type":[[:space:]]*"SEQ_CLS"' w2/adapter_config.json || fail "task_type"
grep -q '"modules_to_save":[[:space:]]*\["classifier"\]' w2/adapter_config.json || fail "modules_to_save"
"$PSLORA" inspect w2/adapter_model.safetensors > insp.txt
grep -q 'base_model.model.classifier.weight.*\[2, 32\]' insp.txt || fail "classifier key: $(grep classifier insp.txt)"
grep -q 'base_model.model.classifier.bias.*\[2\]' insp.txt || fail "classifier bias key"
grep -q 'base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight' insp.txt \
  || fail "lora key: $(head -5 insp.txt)"
grep -q 'base_model.model.bert.pooler.dense.lora_B.weight' insp.txt || fail "dense matches the pooler"
ok "PEFT files: SEQ_CLS, modules_to_save, classifier and pooler keys"

# 2 workers x 8 == 1 x 16 (20 steps)
S="$T --lr 3e-3 --steps 20"
"$PSLORA" train $S --batch 16 --out one > one.txt 2>&1 || fail "one: $(tail -3 one.txt)"
mpi -np 3 "$PSLORA" train $S --batch 8 --out two > two.txt 2>&1 || fail "two: $(tail -3 two.txt)"
"$ADAPTER_DIFF" one two 1e-5 || fail "2 workers x 8 != 1 x 16"
ok "2 workers x 8 == 1 worker x 16"

# resume: 10 steps, then --resume to 20 == 20 at once, byte for byte
"$PSLORA" train $T --lr 3e-3 --batch 16 --steps 10 --out res > res.txt 2>&1 || fail "res: $(tail -3 res.txt)"
"$PSLORA" train $T --lr 3e-3 --batch 16 --steps 20 --resume res > res2.txt 2>&1 || fail "resume: $(tail -3 res2.txt)"
cmp one/adapter_model.safetensors res/adapter_model.safetensors || fail "resumed adapter differs"
ok "resume at step 10: byte-identical adapter and classifier"

# --init-adapter carries the classifier: eval equal to the adapter's own
"$PSLORA" train $T --batch 16 --steps 1 --lr 0 --init-adapter w2 --out init > init.txt 2>&1 \
  || fail "init-adapter: $(tail -3 init.txt)"
"$PSLORA" eval --model model --adapter init --data val.bin --seq 16 --batch 16 > e2.txt
[ "$(cat e2.txt)" = "$(cat e1.txt)" ] || fail "--init-adapter then lr 0: $(cat e2.txt) vs $(cat e1.txt)"
ok "--init-adapter keeps the trained classifier"

# --compute auto (the default) on a CPU with bf16 still computes an encoder in fp32
PSLORA_CPU_FEATURES=avx512_bf16 "$PSLORA" train $T --batch 8 --steps 1 --out autob > autob.txt 2> autob.err \
  || fail "auto on bert: $(cat autob.err)"
grep -qx 'compute fp32 (auto: bf16 is not implemented for --full or an encoder)' autob.err ||
  grep -qx 'compute fp32 (auto: built without oneDNN)' autob.err || fail "auto on bert: $(head -1 autob.err)"
ok "auto on bert: $(head -1 autob.err)"

# mlm on text samples: [MASK] 4, specials 0..3.  The loss can only fall a
# little: the decoder is tied to word embeddings of std 0.02 and follows a
# frozen LayerNorm, so logits stay within about +-0.7 (3.24 -> 3.07 measured)
"$PSLORA" tokenize --format text --tokenizer tk --in text.jsonl --out text.bin >/dev/null
"$PSLORA" init --arch bert --layers 1 --dim 32 --heads 2 --intermediate 64 --vocab 25 --ctx 16 \
  --seed 4 --out mlm >/dev/null
M="--seq 16 --mask-id 4 --special-ids 0,1,2,3"
"$PSLORA" eval --model mlm --data text.bin $M --batch 16 > m0.txt
grep -Eq '^loss [0-9.]+ accuracy [0-9.]+ masked [0-9]+$' m0.txt || fail "mlm eval: $(cat m0.txt)"
"$PSLORA" train --model mlm --data text.bin $M --targets query,key,value,dense --batch 16 --steps 60 --lr 3e-3 \
  --out mr > mr.txt 2>&1 || fail "mlm train: $(tail -3 mr.txt)"
"$PSLORA" eval --model mlm --adapter mr --data text.bin $M --batch 16 > m1.txt
awk -v a="$(sed -E 's/^loss ([0-9.]+).*/\1/' m0.txt)" -v b="$(sed -E 's/^loss ([0-9.]+).*/\1/' m1.txt)" \
  'BEGIN { exit !(b < a - 0.1) }' || fail "mlm loss did not fall: $(cat m0.txt) -> $(cat m1.txt)"
grep -q '"task_type":[[:space:]]*null' mr/adapter_config.json || fail "mlm task_type"
# the masking is drawn per (seed, epoch, sample): 2 workers x 8 == 1 x 16
MT="--model mlm --data text.bin $M --targets query,value --steps 6 --lr 3e-3"
"$PSLORA" train $MT --batch 16 --out mone > mone.txt 2>&1 || fail "mlm one: $(tail -3 mone.txt)"
mpi -np 3 "$PSLORA" train $MT --batch 8 --out mtwo > mtwo.txt 2>&1 || fail "mlm two: $(tail -3 mtwo.txt)"
"$ADAPTER_DIFF" mone mtwo 1e-5 || fail "mlm: 2 workers x 8 != 1 x 16"
ok "mlm: $(cat m0.txt) -> $(cat m1.txt)"

# the ids from the model's own tokenizer when no flag gives them: tk's
# [MASK] is 4 and its specials 0..4 (4 never occurs in the data), so the
# run equals the one with --mask-id 4 --special-ids 0,1,2,3 byte for byte
cp -r mlm mlmtk && cp tk/tokenizer.json mlmtk/
MK="--model mlmtk --data text.bin --seq 16 --targets query,value --steps 6 --lr 3e-3"
expect_fail 1 "--mask-id: 99 is not below the vocabulary 25$" "$PSLORA" train $MK --mask-id 99 --out mx
"$PSLORA" train $MK --batch 16 --out mtk > mtk.txt 2>&1 || fail "mlm, ids from the tokenizer: $(tail -3 mtk.txt)"
cmp mone/adapter_model.safetensors mtk/adapter_model.safetensors || fail "mlm: the tokenizer's ids differ from the flags'"
"$PSLORA" eval --model mlmtk --data text.bin --seq 16 --batch 16 > mtk0.txt
cmp m0.txt mtk0.txt || fail "mlm eval with the tokenizer's ids: $(cat mtk0.txt) vs $(cat m0.txt)"
cp -r mlmtk nomask && sed -i 's/\[MASK\]/[MSK]/g' nomask/tokenizer.json
expect_fail 1 "nomask/tokenizer.json: no \\[MASK\\] token: give --mask-id$" \
  "$PSLORA" eval --model nomask --data text.bin --seq 16
"$PSLORA" eval --model nomask --data text.bin --seq 16 --batch 16 --mask-id 4 > nm.txt \
  || fail "--mask-id with a tokenizer without [MASK]"
expect_fail 1 "^pslora eval: --mask-id: 103 is not below the vocabulary 25$" \
  "$PSLORA" eval --model mlm --data text.bin --seq 16
ok "mlm: [MASK] and the special ids from the flags, else the model's tokenizer.json, else 103 / 0,100,101,102"

# merge: LoRA folded and the trained classifier written; the merged model
# alone evaluates as the base with the adapter
jloss() { sed -E 's/.*"loss": ([^,]*),.*/\1/' "$1"; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * (a < 0 ? -a : a) + 1e-7) }'; }
"$PSLORA" merge --model model --adapter w2 --out merged > /dev/null || fail "merge cls"
"$PSLORA" eval --model merged --data val.bin --seq 16 --batch 16 --json > e3.json
near "$(jloss e3.json)" "$(jloss e1.json)" || fail "merged $(cat e3.json) vs adapter $(cat e1.json)"
# a masked-LM base trained for cls: the classifier is new (seed-drawn) and merge adds it
"$PSLORA" train --model mlm --task cls --num-labels 2 --data train.bin --seq 16 --targets query,value \
  --batch 16 --steps 5 --lr 3e-3 --out mc > mc.txt 2>&1 || fail "mlm base, --task cls: $(tail -3 mc.txt)"
"$PSLORA" eval --model mlm --task cls --num-labels 2 --adapter mc --data val.bin --seq 16 --batch 16 --json > e4.json
"$PSLORA" merge --model mlm --adapter mc --out mcm > /dev/null || fail "merge onto a masked-LM base"
grep -q '"BertForSequenceClassification"' mcm/config.json || fail "merged config: $(head -3 mcm/config.json)"
"$PSLORA" eval --model mcm --data val.bin --seq 16 --batch 16 --json > e5.json
near "$(jloss e5.json)" "$(jloss e4.json)" || fail "merged $(cat e5.json) vs adapter $(cat e4.json)"
ok "merge: classifier replaced ($(jloss e3.json)) and added to a masked-LM base ($(jloss e5.json))"

# analyze reads a cls adapter (the classifier left out of the LoRA analysis)
"$PSLORA" analyze w2 > an.txt 2>&1 || fail "analyze: $(tail -2 an.txt)"
grep -q 'bert.encoder.layer.0.attention.self.query' an.txt || fail "analyze: $(head -5 an.txt)"
grep -Eq '^    outside the layers +[|]' an.txt || fail "analyze: the pooler's dense not grouped outside the layers: $(tail -3 an.txt)"
ok "analyze on a cls adapter"

expect_fail 1 "^pslora generate: --model: a bert model is an encoder" "$PSLORA" generate --model model --prompt hi
expect_fail 2 "^pslora train: --task: expected mlm or cls, got 'ner'$" "$PSLORA" train $T --task ner --out x
expect_fail 2 "--compute: not implemented for bert" "$PSLORA" eval --model model --data val.bin --compute bf16
expect_fail 1 "^pslora eval: mlm: no classifier \\(classifier.weight\\) in the model or the adapter$" \
  "$PSLORA" eval --model mlm --task cls --data val.bin --seq 16
expect_fail 1 "^pslora eval: --mask-id: 30 is not below the vocabulary 25$" \
  "$PSLORA" eval --model mlm --data text.bin --seq 16 --mask-id 30
expect_fail 1 "^pslora train: --pack: an encoder \\(bert\\) reads one sample per row$" \
  "$PSLORA" train $T --pack --out x
cp -r model badact && sed -i 's/"gelu"/"relu"/' badact/config.json
expect_fail 1 'badact/config.json: hidden_act must be "gelu" or "gelu_new"' "$PSLORA" eval --model badact --data val.bin --seq 16
cp -r model badpos && sed -i 's/"absolute"/"relative_key"/' badpos/config.json
expect_fail 1 'badpos/config.json: position_embedding_type must be "absolute"' "$PSLORA" eval --model badpos --data val.bin --seq 16
"$PSLORA" init --layers 1 --dim 8 --heads 2 --vocab 25 --ctx 16 --out gpt2 >/dev/null
expect_fail 1 "gpt2: --task and --num-labels are for bert models, this is gpt2" \
  "$PSLORA" train --model gpt2 --data train.bin --seq 8 --task cls --out x
expect_fail 2 "^pslora init: --num-labels: bert only$" "$PSLORA" init --layers 1 --dim 8 --heads 2 --vocab 9 --ctx 4 --num-labels 2 --out x
ok "cli_bert"
