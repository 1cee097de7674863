# cli_tokenizers.sh - `pslora tokenize` on real vocabularies against the
# independent peer @huggingface/tokenizers (node, tests/peers/hf_encode.js):
#
#   - GPT-2 (tokenizer.json, and the legacy vocab.json + merges.txt compared
#     with the same ids), Llama 2 (SentencePiece-style BPE, byte fallback,
#     metaspace) and BERT-base-uncased (tokenizer.json, and the legacy
#     vocab.txt) on tests/tok_texts/* (prose, code, whitespace runs and tabs,
#     numbers, contractions, accented Latin, CJK, emoji and other 4-byte
#     UTF-8) and every licence text in /usr/share/common-licenses: the shard's
#     ids equal the peer's, with and without --add-special; GPT-2 also
#     against gpt-3-encoder;
#   - decode(encode(text)) == text byte for byte for GPT-2 and Llama 2;
#   - chunked (PSLORA_TOK_CHUNK_BYTES=256, 2 threads) == one piece;
#   - ids >= 65536 -> a version-7 shard; eval --text == eval --data of the
#     shard; generate with the model's tokenizer; inspect;
#   - bad input: one line, exit 1, no output file.
#
# The peers come from PSLORA_PEERS (made by tests/peers/fetch.sh); when they
# are missing the test fails saying how to get them.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
need_peers hf-tokenizers/package.json gpt-3-encoder/index.js gpt2-json/tokenizer.json \
  gpt2-legacy/vocab.json gpt2-legacy/merges.txt llama2/tokenizer.json \
  bert-base-uncased/tokenizer.json bert-legacy/vocab.txt

# The texts: ours and the licences (symlinks followed, one file each).
mkdir texts
cp "$HERE"/tok_texts/*.txt texts/
for f in /usr/share/common-licenses/*; do
  [ -f "$f" ] && cp -L "$f" "texts/licence-$(basename "$f").txt"
done
TEXTS=(texts/*.txt)
[ ${#TEXTS[@]} -ge 15 ] || fail "only ${#TEXTS[@]} texts (no licences in /usr/share/common-licenses?)"

# shard_ids SHARD: the ids of an llm.c shard, one per line (uint16 or uint32
# after the 1024-byte header, by the header's version).
shard_ids() {
  local ver width
  ver=$(od -An -tu4 -j4 -N4 "$1" | tr -d ' ')
  case $ver in 1) width=2 ;; 7) width=4 ;; *) fail "$1: shard version '$ver'" ;; esac
  od -An -v -tu$width -j1024 "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

# agree DIR PEER_DIR [--add-special]: for every text, pslora's ids with the
# tokenizer DIR equal the peer's with PEER_DIR.  For BERT the peer gets
# --bert-astral-cjk (see hf_encode.js: the peer misses the CJK ideographs
# beyond U+FFFF that emoji.txt holds).
agree() {
  local dir=$1 peer=$2 special=${3:-}
  local tag fix=""
  tag=$(basename "$dir")${special:+-special}
  case $tag in bert*) fix=--bert-astral-cjk ;; esac
  mkdir -p "peer-$tag" "ours-$tag"
  node "$HF" $special $fix --out-dir "peer-$tag" "$peer" "${TEXTS[@]}" ||
    fail "the peer failed on $peer"
  local n=0 f name
  for f in "${TEXTS[@]}"; do
    name=$(basename "$f")
    "$PSLORA" tokenize --tokenizer "$dir" $special --in "$f" --out "ours-$tag/$name.bin" \
      >/dev/null 2>"ours-$tag/$name.err" || fail "tokenize $dir $special $f: $(cat "ours-$tag/$name.err")"
    shard_ids "ours-$tag/$name.bin" > "ours-$tag/$name.ids"
    if ! cmp -s "ours-$tag/$name.ids" "peer-$tag/$name.ids"; then
      local line
      line=$(cmp "ours-$tag/$name.ids" "peer-$tag/$name.ids" 2>&1 | sed -nE 's/.* line ([0-9]+).*/\1/p' || true)
      fail "$dir $special $f: ids differ from the peer's at token ${line:-?}: ours $(sed -n "${line:-1},+4p" "ours-$tag/$name.ids" | tr '\n' ' ')/ peer $(sed -n "${line:-1},+4p" "peer-$tag/$name.ids" | tr '\n' ' ')"
    fi
    n=$((n + $(wc -l < "ours-$tag/$name.ids")))
  done
  ok "$(basename "$dir") ${special:-(no special tokens)}: ${#TEXTS[@]} texts, $n ids identical to @huggingface/tokenizers"
}

P=$PEERS
for special in "" --add-special; do
  agree "$P/gpt2-json" "$P/gpt2-json" $special
  agree "$P/gpt2-legacy" "$P/gpt2-json" $special
  agree "$P/llama2" "$P/llama2" $special
  agree "$P/bert-base-uncased" "$P/bert-base-uncased" $special
  agree "$P/bert-legacy" "$P/bert-base-uncased" $special
done

# GPT-2 against gpt-3-encoder too (no special tokens: it has none).
mkdir -p peer-g3
plain=()
for f in "${TEXTS[@]}"; do [ "$(basename "$f")" = mixed.txt ] || plain+=("$f"); done
node "$HF" --peer gpt-3-encoder --out-dir peer-g3 x "${plain[@]}" || fail "gpt-3-encoder failed"
for f in "${plain[@]}"; do
  cmp -s "ours-gpt2-legacy/$(basename "$f").ids" "peer-g3/$(basename "$f").ids" ||
    fail "$f: GPT-2 ids differ from gpt-3-encoder's"
done
ok "gpt2-legacy: ${#plain[@]} texts identical to gpt-3-encoder (mixed.txt left out: it has <|endoftext|>, which gpt-3-encoder does not know)"

# decode(encode(text)) == text, byte for byte; for Llama 2 with and without
# --add-special (decoded with --skip-special) but not on mixed.txt: its text
# holds "<s> </s>", and Llama's Prepend normalizer makes the " " between the
# two special tokens "▁▁", which decodes to two spaces (in HF too: lossless
# only for text without special tokens).
for tag in gpt2-json gpt2-legacy llama2 llama2-special; do
  dir=$P/${tag%-special} skip=""
  [ "$tag" = llama2-special ] && skip=--skip-special
  for f in "${TEXTS[@]}"; do
    name=$(basename "$f")
    [[ $tag = llama2* && $name = mixed.txt ]] && continue
    "$PSLORA" tokenize --decode $skip --tokenizer "$dir" --in "ours-$tag/$name.bin" \
      --out "back-$tag-$name" 2>err.txt || fail "decode $tag $name: $(cat err.txt)"
    cmp -s "$f" "back-$tag-$name" || fail "$tag: decode(encode($f)) differs from the text: $(cmp "$f" "back-$tag-$name" 2>&1)"
  done
done
ok "decode(encode(text)) == text for GPT-2 (both forms) on all ${#TEXTS[@]} texts and Llama 2 on all but mixed.txt"
"$PSLORA" tokenize --decode --tokenizer "$P/llama2" --in "ours-llama2-special/prose.txt.bin" --out with.txt
[ "$(cat with.txt)" = "<s> $(cat texts/prose.txt)" ] || fail "decode of <s> + prose.txt without --skip-special: '$(head -c 20 with.txt)...', expected '<s> ' + the text (as HF decodes it)"
ok "decode keeps the special tokens unless --skip-special"

# Chunked == one piece, on all the licences as one document and on each text.
cat texts/licence-*.txt > all.txt
for dir in gpt2-json gpt2-legacy bert-base-uncased llama2; do
  for special in "" --add-special; do
    PSLORA_TOK_CHUNK_BYTES=0 "$PSLORA" tokenize --tokenizer "$P/$dir" $special --threads 2 \
      --in all.txt --out one.bin >/dev/null 2>&1 || fail "one piece $dir"
    PSLORA_TOK_CHUNK_BYTES=256 "$PSLORA" tokenize --tokenizer "$P/$dir" $special --threads 2 \
      --in all.txt --out chunked.bin >/dev/null 2>err.txt || fail "chunked $dir: $(cat err.txt)"
    cmp -s one.bin chunked.bin || fail "$dir $special: 256-byte chunks give other ids than one piece"
  done
  for f in "${TEXTS[@]}"; do
    PSLORA_TOK_CHUNK_BYTES=64 "$PSLORA" tokenize --tokenizer "$P/$dir" --threads 2 --in "$f" \
      --out chunked.bin >/dev/null 2>&1 || fail "chunked $dir $f"
    cmp -s <(shard_ids chunked.bin) "ours-$dir/$(basename "$f").ids" ||
      fail "$dir $f: 64-byte chunks give other ids than one piece"
  done
done
ok "256- and 64-byte chunks on 2 threads give the ids of one piece ($(wc -c < all.txt) bytes of licences)"

# U+FEFF is not whitespace for Hugging Face (Oniguruma's \s is Unicode
# White_Space), but is for JS's \s, which the peer's ByteLevel regex uses: so
# this case is worked out by hand.  "a:\n\n<U+FEFF>B": at the first "\n",
# \s+(?!\S) cannot take "\n\n" (U+FEFF follows, a \S), so it takes "\n"
# (then "\n" follows); the second "\n" is \s+; U+FEFF and B are
# ?[^\s\p{L}\p{N}]+ and \p{L}+: ids a=64 :=25 Ċ=198 Ċ=198, then the bytes
# EF BB BF = ï»¿ = 171 119 123, B=33 (the peer says 628 "ĊĊ" instead of 198 198).
printf 'a:\n\n\xef\xbb\xbfB' > bom.txt
"$PSLORA" tokenize --tokenizer "$P/gpt2-json" --in bom.txt --out bom.bin >/dev/null 2>&1
[ "$(shard_ids bom.bin | tr '\n' ' ')" = "64 25 198 198 171 119 123 33 " ] ||
  fail "GPT-2 on a:\\n\\n<BOM>B: $(shard_ids bom.bin | tr '\n' ' '), expected 64 25 198 198 171 119 123 33"
ok "U+FEFF is not whitespace for the GPT-2 pattern (as in Hugging Face's Rust)"

# Ids >= 65536: an added token with id 70000 -> a version-7 shard, same ids as the peer.
mkdir big
node -e '
const fs = require("fs");
const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
j.added_tokens.push({id: 70000, content: "<|big|>", single_word: false, lstrip: false,
                     rstrip: false, normalized: false, special: false});
fs.writeFileSync(process.argv[2], JSON.stringify(j));' "$P/gpt2-json/tokenizer.json" big/tokenizer.json
printf 'small words <|big|> and more<|big|>\n' > big.txt
"$PSLORA" tokenize --tokenizer big --in big.txt --out big.bin >/dev/null 2>&1 || fail "tokenize with id 70000"
[ "$(od -An -tu4 -N8 big.bin | tr -s ' ')" = " 20240801 7" ] || fail "big.bin: header $(od -An -tu4 -N8 big.bin), expected magic 20240801 version 7"
cmp -s <(shard_ids big.bin) <(node "$HF" big big.txt) || fail "big.bin: ids differ from the peer's"
grep -qx 70000 <(shard_ids big.bin) || fail "big.bin: no id 70000"
ok "an id >= 65536 gives a uint32 (version 7) shard with the peer's ids"

# eval --text == eval --data of the tokenize shard; generate and inspect with the model's tokenizer.
"$PSLORA" init --layers 1 --dim 32 --heads 2 --vocab 50257 --ctx 64 --seed 5 --out g2 >/dev/null
cp "$P/gpt2-json/tokenizer.json" g2/
"$PSLORA" tokenize --tokenizer g2 --in texts/licence-GPL-3.txt --out gpl.bin >/dev/null 2>&1
a=$("$PSLORA" eval --model g2 --text texts/licence-GPL-3.txt --seq 32 --max-batches 3)
b=$("$PSLORA" eval --model g2 --data gpl.bin --seq 32 --max-batches 3)
[ "$a" = "$b" ] || fail "eval --text '$a' differs from eval --data of its shard '$b'"
ok "eval --text with the model's tokenizer == eval --data on the tokenize shard ($a)"
"$PSLORA" generate --model g2 --prompt "The licence" --tokens 12 --temperature 0 > gen.txt 2>err.txt ||
  fail "generate with a tokenizer: $(cat err.txt)"
grep -q '^The licence' gen.txt || fail "generate: '$(cat gen.txt)' does not start with the prompt"
! grep -q '<|[0-9]' gen.txt || fail "generate printed raw ids: $(cat gen.txt)"
ok "generate decodes with the model's tokenizer: $(head -c 60 gen.txt | tr '\n' ' ')"
"$PSLORA" inspect "$P/gpt2-json/tokenizer.json" > insp.txt || fail "inspect tokenizer.json"
grep -q 50257 insp.txt && grep -q BPE insp.txt || fail "inspect: no BPE / 50257 in: $(cat insp.txt)"
"$PSLORA" inspect g2 > insp2.txt && grep -q BPE insp2.txt || fail "inspect DIR: no tokenizer in: $(cat insp2.txt)"
ok "inspect describes tokenizer.json and a model directory's tokenizer"

# Bad input: one line, exit 1, no output file.
rejected() {   # rejected PATTERN ARGS...: tokenize ARGS --out bad.bin fails so, and leaves no bad.bin
  local pat=$1; shift
  expect_fail 1 "$pat" "$PSLORA" tokenize "$@" --out bad.bin
  [ "$(wc -l < err.txt)" = 1 ] || fail "$*: $(wc -l < err.txt) lines on stderr"
  [ ! -e bad.bin ] || fail "$*: bad.bin was written"
}
# edit_json OUT_DIR JS: a copy of GPT-2's tokenizer.json in OUT_DIR changed by JS (on j).
edit_json() {
  mkdir -p "$1"
  node -e "const fs = require('fs'); const j = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
$2; fs.writeFileSync(process.argv[2], JSON.stringify(j));" "$P/gpt2-json/tokenizer.json" "$1/tokenizer.json"
}
mkdir notjson && printf '{"model": {"type": "BPE", ' > notjson/tokenizer.json
rejected "notjson/tokenizer.json.*(JSON|json)" --tokenizer notjson --in texts/prose.txt
edit_json unknown 'j.pre_tokenizer.type = "Bogus"'
rejected "Bogus.*pre_tokenizer|pre_tokenizer.*Bogus" --tokenizer unknown --in texts/prose.txt
edit_json badre 'j.pre_tokenizer = {type: "Split", pattern: {Regex: "(\\p{L}+"}, behavior: "Isolated", invert: false}'
rejected "badre.*(parenthes|offset)" --tokenizer badre --in texts/prose.txt
edit_json badmerge 'j.model.merges.push("Qzx9 Wvy8")'
rejected "badmerge.*(Qzx9|Wvy8)" --tokenizer badmerge --in texts/prose.txt
printf 'valid text, then \xff\xfe and more\n' > invalid.txt
rejected "invalid.txt.*UTF-8.*17|invalid.txt.*17.*UTF-8" --tokenizer "$P/gpt2-json" --in invalid.txt
"$PSLORA" tokenize --tokenizer "$P/gpt2-json" --replace-invalid --in invalid.txt --out repl.bin \
  >/dev/null 2>&1 || fail "--replace-invalid refused invalid.txt"
cmp -s <(shard_ids repl.bin) <(node "$HF" "$P/gpt2-json" invalid.txt) ||
  fail "--replace-invalid: ids differ from the peer's (which reads the file with U+FFFD replacement)"
ok "--replace-invalid: invalid bytes become U+FFFD, as the peer reads them"
"$PSLORA" init --layers 1 --dim 16 --heads 2 --vocab 256 --ctx 16 --seed 1 --out v256 >/dev/null
rejected "vocab_size 256" --tokenizer "$P/gpt2-json" --model v256 --in texts/prose.txt
cp "$P/gpt2-json/tokenizer.json" v256/
expect_fail 1 "vocab_size 256" "$PSLORA" eval --model v256 --text texts/prose.txt --seq 8
expect_fail 1 "vocab_size 256" "$PSLORA" generate --model v256 --prompt hi
expect_fail 2 "add-special.*bytes" "$PSLORA" tokenize --add-special --in texts/prose.txt --out bad.bin
expect_fail 2 "decode.*val-fraction" "$PSLORA" tokenize --decode --tokenizer "$P/gpt2-json" \
  --in gpl.bin --out bad.bin --val-fraction 0.1
expect_fail 2 "data or --text" "$PSLORA" eval --model g2 --data gpl.bin --text texts/prose.txt
[ ! -e bad.bin ] || fail "bad.bin written"
ok "all done"
