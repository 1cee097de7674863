# lib.sh - shared by the tests/cli_*.sh scripts (sourced, not run).
# Environment from CTest: PSLORA, MPIEXEC, SCRATCH, ADAPTER_DIFF.
set -euo pipefail
: "${PSLORA:?}" "${SCRATCH:?}"
MPIEXEC=${MPIEXEC:-mpiexec}
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # before the cd below
rm -rf "$SCRATCH" && mkdir -p "$SCRATCH" && cd "$SCRATCH"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# descendants PID: every process below PID (mpirun runs inside a subshell).
descendants() {
  local p
  for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done
}

# expect_fail STATUS PATTERN CMD...: CMD exits with STATUS and its stderr
# (one line) matches the extended regex PATTERN.
expect_fail() {
  local want=$1 pat=$2; shift 2
  local st=0
  "$@" >out.txt 2>err.txt || st=$?
  [ "$st" = "$want" ] || fail "$* exited $st, expected $want; stderr: $(cat err.txt)"
  grep -Eq -- "$pat" err.txt || fail "$*: stderr '$(cat err.txt)' does not match '$pat'"
  ok "rejected ($want): $(head -1 err.txt)"
}

# A tiny GPT-2 and a byte corpus, made once per script.
make_tiny() {
  "$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 3 --out model >/dev/null
  cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > corpus.txt
  "$PSLORA" tokenize --in corpus.txt --out data.bin --val-fraction 0.1 >/dev/null
}

mpi() { "$MPIEXEC" --allow-run-as-root --oversubscribe --bind-to none "$@"; }

# json_field FILE TYPE FIELD: the FIELD values of the TYPE rows of metrics.jsonl
json_field() {
  grep "\"type\":\"$2\"" "$1" | sed -E "s/.*\"$3\":([^,}]*).*/\1/"
}

# ---- killing a run mid-way and resuming it (cli_resume, cli_tasks) ----

# start_bg OUT LOG CMD...: CMD in the background; BG is its pid.
start_bg() {
  local log=$2; shift 2
  "$@" > "$log" 2>&1 &
  BG=$!
}

# last_step OUT: the highest step logged in OUT/metrics.jsonl (0 when none).
last_step() {
  local s
  s=$(grep -o '"type":"step","step":[0-9]*' "$1/metrics.jsonl" 2>/dev/null | tail -1 | grep -o '[0-9]*$')
  echo "${s:-0}"
}

# kill_at OUT K: waits until OUT has logged step K (or the run ended), then
# SIGKILLs the job: mpirun and every rank at once (a node failure), or the
# single process.  Returns once every killed process is gone.
kill_at() {
  local out=$1 k=$2 i
  for ((i = 0; i < 1200; i++)); do
    [ "$(last_step "$out")" -ge "$k" ] && break
    kill -0 "$BG" 2>/dev/null || break
    sleep 0.02
  done
  local pids="$BG $(descendants "$BG")"
  kill -9 $pids 2>/dev/null || true
  wait "$BG" 2>/dev/null || true
  for p in $pids; do
    while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  done
}

# killed_mid_run OUT K (uses STEPS): the kill landed at or after step K and before the last
# step: metrics.jsonl ends before STEPS, no final adapter, and the latest
# checkpoint is short of STEPS (a run that finished first would prove nothing).
killed_mid_run() {
  local out=$1 k=$2 at latest
  at=$(last_step "$out")
  [ "$at" -ge "$k" ] && [ "$at" -lt "$STEPS" ] \
    || fail "$out: killed after step $at, expected a step in [$k, $((STEPS - 1))]"
  [ ! -e "$out/adapter_model.safetensors" ] || fail "$out: the run finished before the kill"
  latest=$(readlink "$out/checkpoints/latest" 2>/dev/null || echo step-00000000)
  [ "$((10#${latest#step-}))" -lt "$STEPS" ] || fail "$out: latest checkpoint $latest is the last step"
}

# ---- the tokenizer peers (cli_tokenizers, cli_bert_tokenize) ----

# need_peers FILE...: node and each FILE under $PSLORA_PEERS (made by
# tests/peers/fetch.sh), else fail saying how to get them.  Sets PEERS (the
# directory, exported as PSLORA_PEERS) and HF (tests/peers/hf_encode.js).
need_peers() {
  local get="bash tests/peers/fetch.sh ${PSLORA_PEERS:-build/peers}" f
  PEERS=${PSLORA_PEERS:-}
  HF="$TESTS_DIR/peers/hf_encode.js"
  command -v node >/dev/null || fail "node not found: install nodejs and npm, then run: $get"
  for f in "$@"; do
    [ -n "$PEERS" ] && [ -f "$PEERS/$f" ] || fail "test peer file '${PEERS:-\$PSLORA_PEERS}/$f' missing: run $get"
  done
  export PSLORA_PEERS="$PEERS"
}
