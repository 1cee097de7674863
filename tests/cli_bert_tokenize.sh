# cli_bert_tokenize.sh - `pslora tokenize --format classification` with the
# bert-base-uncased vocabulary (tokenizer.json, and the legacy vocab.txt form)
# against the independent peer @huggingface/tokenizers
# (tests/peers/hf_encode.js --jsonl): for every sample of a JSON Lines file of
# single texts and text pairs (accents and combining marks, CJK and other
# scripts, punctuation, long words split into ##pieces, a word too long for
# WordPiece, control characters, JSON escapes, emoji), the shard's ids equal
# the peer's encode(text, {text_pair}) -- [CLS] text [SEP] (text_pair [SEP])
# -- and the sidecar's segment mask equals the peer's token_type_ids; the
# labels are the JSON's.  A file of single texts only (no segment mask in the
# sidecar) reads as all-0 token types, as the peer's.
source "$(dirname "$0")/lib.sh"
need_peers hf-tokenizers/package.json bert-base-uncased/tokenizer.json bert-legacy/vocab.txt
P=$PEERS

# JSON written by hand: literal UTF-8 and \u escapes (a surrogate pair too).
cat > cls.jsonl <<'JSON'
{"text": "Hello, World!", "label": 0}
{"text": "The quick brown fox jumps over the lazy dog.", "text_pair": "A fast, brown fox leapt over a sleepy dog!", "label": 1}
{"text": "Café déjà vu: naïve résumé, façade, Ångström, Straße, ØRESUND, Dvořák.", "text_pair": "cafe\u0301 (combining acute) and CAFÉ", "label": 2}
{"text": "我喜欢东京的拉面。北京大学", "text_pair": "日本語のテキスト、カタカナ と ひらがな。", "label": 0}
{"text": "한국어 문장입니다. Ελληνικά κείμενα. Русский текст. نص عربي.", "label": 1}
{"text": "antidisestablishmentarianism supercalifragilisticexpialidocious pneumonoultramicroscopicsilicovolcanoconiosis", "text_pair": "unbelievably counterrevolutionaries hyperparameterization tokenizations", "label": 2}
{"text": "Punctuation!!! (really?) \"quoted\" it's e.g. U.S.A. -- 3.14159, $1,000; 50% off... #hashtag @user a/b\\c [x]{y}<z>", "label": 0}
{"text": "tabs\tand\nnew\r\nlines   and    spaces\u00a0nbsp\u3000ideographic space", "text_pair": "zero\u200bwidth, bell\u0007, nul-free control\u001f chars", "label": 1}
{"text": "emoji 😀👍🏽 and escaped \ud83d\ude00 and \u2603 snow", "text_pair": "𠀀𠀁 astral CJK and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "label": 2}
{"text": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa is longer than 100 characters", "text_pair": "x", "label": 0}
{"text": "[CLS] and [SEP] and [MASK] written in the text", "text_pair": "[UNK] [PAD]", "label": 1}
{"text": "Numbers 1234567890 and 12,345.67 and 1st 2nd 3rd", "text_pair": "MiXeD CaSe WoRdS", "label": 2}

{"text": "after a blank line", "text_pair": "the last pair", "label": 0}
JSON
grep -q '"text_pair": "the last pair"' cls.jsonl || fail "cls.jsonl not written"
printf '{"text": "only single texts here.", "label": 1}\n{"text": "Zwei Sätze ohne Paar.", "label": 0}\n' > single.jsonl

# ours FILE.bin: "IDS;TYPES" per sample, read from the shard and its sidecar
# (docs/design.md, "Sample data"); LABELS.txt gets the labels.
ours() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
shard, labels_out = sys.argv[1], sys.argv[2]
data = open(shard, "rb").read()
hdr = struct.unpack("<256i", data[:1024])
assert hdr[0] == 20240520 and hdr[1] == 1, "shard header"
n_tok = hdr[2]
ids = struct.unpack("<%dH" % n_tok, data[1024:1024 + 2 * n_tok])
side = open(shard + ".samples", "rb").read()
h = struct.unpack("<16i", side[:64])
assert h[0] == 20250601 and h[1] == 1 and h[2] == n_tok and h[4] == 2, "sidecar header %s" % (h[:8],)
n, has_mask, n_labels = h[3], h[5], h[6]
off = struct.unpack("<%dI" % (n + 1), side[64:64 + 4 * (n + 1)])
p = 64 + 4 * (n + 1)
mask = side[p:p + n_tok] if has_mask else bytes(n_tok)
p += n_tok if has_mask else 0
labels = struct.unpack("<%di" % n, side[p:p + 4 * n])
assert p + 4 * n == len(side), "sidecar size"
for i in range(n):
    a, b = off[i], off[i + 1]
    print(" ".join(map(str, ids[a:b])) + ";" + " ".join(str(m) for m in mask[a:b]))
open(labels_out, "w").write(" ".join(map(str, labels)) + "\n")
PY
}

# The peer misses CJK ideographs beyond U+FFFF (hf_encode.js --bert-astral-cjk).
for f in cls single; do
  node "$HF" --jsonl --bert-astral-cjk "$P/bert-base-uncased" $f.jsonl > peer-$f.txt ||
    fail "the peer failed on $f.jsonl"
done
[ "$(wc -l < peer-cls.txt)" = 13 ] || fail "the peer gave $(wc -l < peer-cls.txt) samples for 13 lines"
grep -q '^101 .* 102 .* 102;0 .* 1$' peer-cls.txt || fail "the peer's pairs are not [CLS] a [SEP] b [SEP] with types 0..1"

for dir in bert-base-uncased bert-legacy; do
  for f in cls single; do
    "$PSLORA" tokenize --format classification --tokenizer "$P/$dir" --in $f.jsonl --out $dir-$f.bin \
      >/dev/null 2>err.txt || fail "tokenize $dir $f.jsonl: $(cat err.txt)"
    ours $dir-$f.bin $dir-$f.labels > ours-$dir-$f.txt || fail "reading $dir-$f.bin"
    if ! cmp -s ours-$dir-$f.txt peer-$f.txt; then
      line=$(cmp ours-$dir-$f.txt peer-$f.txt 2>&1 | sed -nE 's/.* line ([0-9]+).*/\1/p' || true)
      fail "$dir $f.jsonl: sample ${line:-?} differs from the peer: ours '$(sed -n "${line:-1}p" ours-$dir-$f.txt)' peer '$(sed -n "${line:-1}p" peer-$f.txt)'"
    fi
  done
  [ "$(cat $dir-cls.labels)" = "0 1 2 0 1 2 0 1 2 0 1 2 0" ] || fail "$dir: labels $(cat $dir-cls.labels)"
  [ "$(cat $dir-single.labels)" = "1 0" ] || fail "$dir: single labels $(cat $dir-single.labels)"
done
ok "classification with bert-base-uncased (tokenizer.json and vocab.txt): 13 samples (10 pairs) and 2 single texts, ids and token types identical to @huggingface/tokenizers"
