#!/usr/bin/env bash
# tokenize.sh - speed and memory of `pslora tokenize` with the GPT-2
# tokenizer against @huggingface/tokenizers (node) on the same English text,
# in one run.  Not a test: nothing is asserted except that the ids agree.
#
#   bench/tokenize.sh                    # >= 24 MB of English, build/ and build/peers
#   bench/tokenize.sh --mb 50 --work /tmp/tokbench
#
# The text: every /usr/share/doc/*/copyright and /usr/share/common-licenses/*
# file that is valid UTF-8, concatenated and repeated up to --mb MB (cut at a
# line end), without U+FEFF and U+0085: the peer's ByteLevel regex is a JS
# literal whose \s counts U+FEFF as whitespace and U+0085 not, the reverse of
# Hugging Face's Rust (Oniguruma) and of pslora (PCRE2, Unicode White_Space),
# so on those two characters the peer's ids are the wrong ones to compare with
# (tests/cli_tokenizers.sh checks the BOM case by hand).
# Runs pslora at 1 thread and at all threads (--threads, nproc), each under
# /usr/bin/time -v for the peak resident set, and the peer on the same file
# (hf_encode.js --pieces: the JS library cannot take tens of MB as one
# string in reasonable memory, so it gets 1 MB pieces cut by pslora's own
# chunking rule, which for GPT-2 gives the ids of the whole file).  Prints a
# markdown table: MB/s, speed-up over the peer, peak RSS against the input
# size plus the ids (4 bytes each) plus the tables (pslora's peak RSS on a
# one-line file).
#
# Environment / options: PSLORA or -p (default build/cli/pslora), --peers DIR
# (default PSLORA_PEERS, else build/peers: tests/peers/fetch.sh makes it),
# --mb N (default 24), --work DIR (kept; default a temporary directory).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
die() { echo "tokenize.sh: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

pslora=${PSLORA:-$root/build/cli/pslora}
peers=${PSLORA_PEERS:-$root/build/peers}
mb=24
work=""
while [ $# -gt 0 ]; do
  case $1 in
    -p|--pslora) pslora=${2:?}; shift 2 ;;
    --peers) peers=${2:?}; shift 2 ;;
    --mb) mb=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "tokenize.sh: unknown option '$1'" >&2; usage 2 >&2 ;;
  esac
done
[[ $mb =~ ^[0-9]+$ ]] && [ "$mb" -ge 1 ] || { echo "tokenize.sh: --mb: expected a whole number >= 1, got '$mb'" >&2; exit 2; }
[ -x "$pslora" ] || die "$pslora: no pslora binary (build it, or give -p)"
[ -f "$peers/gpt2-json/tokenizer.json" ] && [ -f "$peers/hf-tokenizers/package.json" ] ||
  die "$peers: no test peers; run: bash tests/peers/fetch.sh build/peers"
command -v node >/dev/null || die "node not found (apt-get install nodejs npm)"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"
if [ -z "$work" ]; then
  work=$(mktemp -d /tmp/pslora-tokbench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"
export PSLORA_PEERS=$peers

# The text: mb MB of English in valid UTF-8.
text=$work/english.txt
: > "$work/once.txt"
for f in /usr/share/doc/*/copyright /usr/share/common-licenses/*; do
  [ -f "$f" ] && iconv -f UTF-8 -t UTF-8 "$f" >/dev/null 2>&1 &&
    sed 's/\xEF\xBB\xBF//g; s/\xC2\x85//g' "$f" >> "$work/once.txt"
done
once=$(stat -c %s "$work/once.txt")
[ "$once" -gt 0 ] || die "no text found in /usr/share/doc/*/copyright or /usr/share/common-licenses"
: > "$work/rep.txt"
while [ "$(stat -c %s "$work/rep.txt")" -lt $((mb * 1000000)) ]; do cat "$work/once.txt" >> "$work/rep.txt"; done
head -c $((mb * 1000000)) "$work/rep.txt" | sed '$d' > "$text"   # whole lines only
rm -f "$work/rep.txt"
bytes=$(stat -c %s "$text")
echo "text: $bytes bytes ($once distinct), $(nproc) CPUs: $(lscpu | sed -nE 's/^Model name: *//p')" >&2

# run NAME CMD...: CMD under time -v; its stderr in $work/NAME.err.
run() {
  local name=$1; shift
  /usr/bin/time -v "$@" 2> "$work/$name.err" >/dev/null || die "$name failed: $(tail -3 "$work/$name.err")"
}
rss_mb() { awk '/Maximum resident set size/ {printf "%.1f", $NF / 1000}' "$work/$1.err"; }
mbs() { sed -nE "s/.*\(([0-9.]+) MB\/s\).*/\1/p" "$work/$1.err" | tail -1; }

gpt2=$peers/gpt2-json
printf 'x\n' > "$work/tiny.txt"
run tables "$pslora" tokenize --tokenizer "$gpt2" --threads 1 --in "$work/tiny.txt" --out "$work/tiny.bin"
threads=$(nproc)
echo "pslora, 1 thread ..." >&2
run one "$pslora" tokenize --tokenizer "$gpt2" --threads 1 --in "$text" --out "$work/one.bin"
echo "pslora, $threads threads ..." >&2
run all "$pslora" tokenize --tokenizer "$gpt2" --threads "$threads" --in "$text" --out "$work/all.bin"
cmp -s "$work/one.bin" "$work/all.bin" || die "1 and $threads threads gave different shards"
echo "@huggingface/tokenizers (node) ..." >&2
run peer node "$here/../tests/peers/hf_encode.js" --time --out-dir "$work" --pieces 1000000 "$gpt2" "$text"
od -An -v -tu2 -j1024 "$work/one.bin" | tr -s ' ' '\n' | sed '/^$/d' > "$work/ours.ids"
cmp -s "$work/ours.ids" "$work/english.txt.ids" || die "pslora's ids differ from the peer's"
ntok=$(wc -l < "$work/ours.ids")

in_mb=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1e6}')
ids_mb=$(awk -v n="$ntok" 'BEGIN {printf "%.1f", 4 * n / 1e6}')
budget=$(awk -v a="$in_mb" -v b="$ids_mb" -v c="$(rss_mb tables)" 'BEGIN {printf "%.1f", a + b + c}')
peer=$(mbs peer)
echo
echo "GPT-2 tokenizer, $in_mb MB of English ($ntok tokens, ids identical), $(lscpu | sed -nE 's/^Model name: *//p')"
echo
echo "| encoder | threads | MB/s | x the JS peer | peak RSS (MB) |"
echo "|---|---|---|---|---|"
for r in one all; do
  t=1; [ $r = all ] && t=$threads
  echo "| pslora tokenize | $t | $(mbs $r) | $(awk -v a="$(mbs $r)" -v b="$peer" 'BEGIN {printf "%.1f", a / b}') | $(rss_mb $r) |"
done
echo "| @huggingface/tokenizers 0.2.0, node $(node --version) | 1 | $peer | 1.0 | $(rss_mb peer) |"
echo
echo "memory budget: input $in_mb MB + ids $ids_mb MB + tables $(rss_mb tables) MB (pslora on a one-line file) = $budget MB"
