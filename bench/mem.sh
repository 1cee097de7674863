#!/usr/bin/env bash
# mem.sh - memory per rank of `pslora train`: resident (Rss) and proportional
# (Pss) set sizes, and how much of each is the mapping of the model file.
#
# F32 frozen weights are memory-mapped read-only from model.safetensors
# (common/nn/model.c), so the ranks of one node share the file's pages: each
# worker's Rss counts the whole file, its Pss only its share of it.  This
# script shows that.  It trains a few steps
#   - in one process (local mode: server and worker in one),
#   - under mpirun with 1 server and 1, 2 and 4 workers (-np 2, 3, 5),
#   - optionally in one process from a BF16 copy of the model (converted to
#     F32 at load: anonymous memory, not shared),
# and while the step loop runs reads every rank's /proc/PID/smaps_rollup,
# /proc/PID/status and the model file's mappings in /proc/PID/smaps, a few
# times, keeping each figure's maximum.  Prints a markdown table on stdout;
# progress goes to stderr.  Not a test: nothing is asserted.
#
#   bench/mem.sh                      # GPT-2 124M shape, made in a temp dir
#   bench/mem.sh --model DIR --data SHARD --workers "1 2" --no-bf16
#
# Environment: PSLORA (binary; else -p, else build/cli/pslora, else PATH),
# MPIEXEC (default mpirun; Open MPI flags are passed).
set -euo pipefail

PROG=mem.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<'EOF'
usage: bench/mem.sh [options]

Runs `pslora train` in one process and under mpirun (1 server + W workers),
samples /proc/PID/{smaps_rollup,status,smaps} of every rank while the step
loop runs, and prints a markdown table of resident and proportional set sizes
(MB = 10^6 bytes) per rank: all memory, the model file's mapping, anonymous.

options:
  --model DIR        model directory (default: a GPT-2 124M-shaped model made
                     with `pslora init`: 12 layers, dim 768, 12 heads, vocab
                     50257, ctx 256, F32)
  --data SHARD       token shard (default: the texts in /usr/share/common-licenses
                     or generated text, byte-tokenized)
  --workers "W ..."  worker counts under mpirun (default "1 2 4")
  --servers S        server ranks under mpirun (default 1)
  --no-local         skip the one-process run
  --no-mpi           skip the mpirun runs
  --bf16 / --no-bf16 also run one process on a BF16 copy of the model, made
                     with python3 (default: on; skipped without python3)
  --compute LIST     pslora's --compute values to run, comma-separated (default
                     fp32); every run is repeated for each, labelled with it
  --batch B          sequences per worker per step (default 1)
  --seq T            tokens per sequence (default 128)
  --steps N          steps per run (default 6; the run must last long enough
                     after its first step for the samples)
  --samples K        samples per run after the first step (default 6)
  --interval SECS    time between samples (default 0.5)
  --timeout SECS     longest wait for a run's first step (default 900)
  --work DIR         keep the model, data and run outputs in DIR (default: a
                     temporary directory, removed at exit)
  -p, --pslora PATH  the pslora binary
  -h, --help         this text

Columns: workers (the run), rank, role, Rss, Pss, the Rss and Pss of the
mappings of the model's *.safetensors files, anonymous memory (RssAnon from
/proc/PID/status), and "other" = Pss - model Pss - Pss_Anon (libraries,
MPI shared-memory segments).  Each run ends with a "sum" row: the sum of Pss
is the memory the run takes on the node.  Every figure is its maximum over
the samples.  OMP_NUM_THREADS=1 and --threads 1 throughout.
EOF
}

die() { echo "$PROG: $*" >&2; exit 1; }
say() { echo "$PROG: $*" >&2; }

model=""
data=""
workers="1 2 4"
servers=1
local_run=1
mpi_runs=1
bf16=1
computes=fp32
batch=1
seq=128
steps=6
samples=6
interval=0.5
timeout=900
work=""
pslora=${PSLORA:-}

need() { [ $# -ge 2 ] || { echo "$PROG: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case $1 in
  --model) need "$@"; model=$2; shift 2 ;;
  --data) need "$@"; data=$2; shift 2 ;;
  --workers) need "$@"; workers=$2; shift 2 ;;
  --servers) need "$@"; servers=$2; shift 2 ;;
  --no-local) local_run=0; shift ;;
  --no-mpi) mpi_runs=0; shift ;;
  --bf16) bf16=1; shift ;;
  --no-bf16) bf16=0; shift ;;
  --compute) need "$@"; computes=$2; shift 2 ;;
  --batch) need "$@"; batch=$2; shift 2 ;;
  --seq) need "$@"; seq=$2; shift 2 ;;
  --steps) need "$@"; steps=$2; shift 2 ;;
  --samples) need "$@"; samples=$2; shift 2 ;;
  --interval) need "$@"; interval=$2; shift 2 ;;
  --timeout) need "$@"; timeout=$2; shift 2 ;;
  --work) need "$@"; work=$2; shift 2 ;;
  -p | --pslora) need "$@"; pslora=$2; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "$PROG: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

isnum() { [[ $2 =~ ^[0-9]+$ ]] || { echo "$PROG: $1 takes a whole number, not '$2'" >&2; exit 2; }; }
isnum --servers "$servers"; isnum --batch "$batch"; isnum --seq "$seq"; isnum --steps "$steps"
isnum --samples "$samples"; isnum --timeout "$timeout"
[[ $interval =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "$PROG: --interval takes seconds, not '$interval'" >&2; exit 2; }
for w in $workers; do isnum --workers "$w"; [ "$w" -ge 1 ] || { echo "$PROG: --workers: 0" >&2; exit 2; }; done
[ "$servers" -ge 1 ] || { echo "$PROG: --servers must be at least 1" >&2; exit 2; }
[ "$samples" -ge 1 ] || { echo "$PROG: --samples must be at least 1" >&2; exit 2; }
for c in ${computes//,/ }; do
  case $c in fp32 | bf16 | auto) ;; *) echo "$PROG: --compute: expected fp32, bf16 or auto, got '$c'" >&2; exit 2 ;; esac
done

if [ -z "$pslora" ]; then
  if [ -x "$here/../build/cli/pslora" ]; then pslora=$here/../build/cli/pslora
  else pslora=$(command -v pslora || true); fi
fi
if [ -z "$pslora" ] || [ ! -x "$pslora" ]; then die "pslora binary not found (set PSLORA or -p)"; fi
pslora=$(realpath "$pslora")
mpiexec=${MPIEXEC:-mpirun}
if ((mpi_runs)); then
  command -v "$mpiexec" >/dev/null || die "$mpiexec not found (set MPIEXEC, or --no-mpi)"
fi
[ -r /proc/self/smaps_rollup ] || die "/proc/self/smaps_rollup not readable (Linux 4.14 or later needed)"
if ((bf16)) && ! command -v python3 >/dev/null; then
  say "no python3: skipping the BF16 run"
  bf16=0
fi

# Work directory: ours (removed at exit, with any run still going) or theirs.
run_pid=""
cleanup() {
  if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
    kill "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
  if [ -n "${tmp_work:-}" ]; then rm -rf "$tmp_work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -z "$work" ]; then
  tmp_work=$(mktemp -d "${TMPDIR:-/tmp}/pslora-mem.XXXXXX")
  work=$tmp_work
else
  mkdir -p "$work"
fi
work=$(realpath "$work")

export OMP_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# ---- the model and the data ------------------------------------------------
if [ -z "$model" ]; then
  model=$work/gpt2-124m
  if [ ! -f "$model/config.json" ]; then
    say "making a GPT-2 124M-shaped model in $model"
    "$pslora" init --arch gpt2 --layers 12 --dim 768 --heads 12 --vocab 50257 --ctx 256 \
      --seed 1 --out "$model" >"$work/init.log" 2>&1 || die "pslora init: $(tail -1 "$work/init.log")"
  fi
fi
[ -f "$model/config.json" ] || die "--model: $model/config.json not found"
model=$(realpath "$model")

if [ -z "$data" ]; then
  data=$work/data.bin
  if [ ! -f "$data" ]; then
    text=$work/corpus.txt
    if ls /usr/share/common-licenses/* >/dev/null 2>&1; then
      cat /usr/share/common-licenses/* >"$text" 2>/dev/null || true
    fi
    if [ ! -s "$text" ]; then
      for i in $(seq 1 4000); do echo "line $i: the quick brown fox jumps over the lazy dog"; done >"$text"
    fi
    "$pslora" tokenize --in "$text" --out "$data" >"$work/tokenize.log" 2>&1 \
      || die "pslora tokenize: $(tail -1 "$work/tokenize.log")"
  fi
fi
[ -f "$data" ] || die "--data: $data not found"
data=$(realpath "$data")

# A BF16 copy: every F32 tensor's upper half (truncation; the figures are
# about memory, not accuracy).  pslora converts it back to F32 at load.
make_bf16() {
  local src=$1 dst=$2
  mkdir -p "$dst"
  cp "$src/config.json" "$dst/"
  if [ -f "$src/model.safetensors.index.json" ]; then cp "$src/model.safetensors.index.json" "$dst/"; fi
  python3 - "$src" "$dst" <<'EOF'
import json, os, struct, sys
src, dst = sys.argv[1], sys.argv[2]
names = [f for f in os.listdir(src) if f.endswith(".safetensors")]
if not names:
    sys.exit("no .safetensors file in " + src)
for name in names:
    with open(os.path.join(src, name), "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    head = json.loads(buf[8:8 + n])
    data = memoryview(buf)[8 + n:]
    meta = head.pop("__metadata__", None)
    out, parts, off = {}, [], 0
    for key, t in sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = t["data_offsets"]
        raw = bytes(data[a:b])
        if t["dtype"] == "F32":
            half = bytearray(len(raw) // 2)
            half[0::2] = raw[2::4]
            half[1::2] = raw[3::4]
            raw, t["dtype"] = bytes(half), "BF16"
        t["data_offsets"] = [off, off + len(raw)]
        off += len(raw)
        out[key] = t
        parts.append(raw)
    if meta is not None:
        out = {"__metadata__": meta, **out}
    h = json.dumps(out, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(dst, name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for p in parts:
            f.write(p)
EOF
}

# ---- sampling ---------------------------------------------------------------
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }

# Memory figures of one process, in kB, as "rss pss pss_anon rss_anon map_rss map_pss";
# fails when the process is gone.
read_mem() {
  local pid=$1 mdir=$2 roll status maps
  roll=$(cat "/proc/$pid/smaps_rollup" 2>/dev/null) || return 1
  status=$(cat "/proc/$pid/status" 2>/dev/null) || return 1
  maps=$(awk -v dir="$mdir/" '
    /^[0-9a-f]+-[0-9a-f]+ / { path = ""; for (i = 6; i <= NF; i++) path = path (i > 6 ? " " : "") $i
                              on = index(path, dir) == 1 && path ~ /\.safetensors$/; next }
    on && $1 == "Rss:" { r += $2 }
    on && $1 == "Pss:" { p += $2 }
    END { print r + 0, p + 0 }' "/proc/$pid/smaps" 2>/dev/null) || return 1
  [ -n "$roll" ] && [ -n "$status" ] || return 1
  awk -v maps="$maps" '
    $1 == "Rss:" { rss = $2 } $1 == "Pss:" { pss = $2 } $1 == "Pss_Anon:" { pa = $2 }
    $1 == "RssAnon:" { ra = $2 }
    END { print rss + 0, pss + 0, pa + 0, ra + 0, maps }' <<<"$roll
$status"
}

# The pslora processes started under the mpirun whose pid is $1, as
# "pid rank" lines (rank from OMPI_COMM_WORLD_RANK): descendants of mpirun
# (directly, or through an orted) whose environment names a rank.
ranks_of() {
  local root=$1 pid ppid kids rank
  local -A children=()
  while read -r pid ppid; do children[$ppid]+=" $pid"; done < <(ps -e -o pid=,ppid=)
  local todo=("$root")
  while [ ${#todo[@]} -gt 0 ]; do
    pid=${todo[0]}; todo=("${todo[@]:1}")
    kids=${children[$pid]:-}
    for k in $kids; do
      todo+=("$k")
      rank=$(tr '\0' '\n' <"/proc/$k/environ" 2>/dev/null | sed -n 's/^OMPI_COMM_WORLD_RANK=//p' || true)
      [ -n "$rank" ] && echo "$k $rank"
    done
  done
  return 0
}

# Whether OUT/metrics.jsonl has a step line yet.
stepped() { [ -f "$1/metrics.jsonl" ] && grep -q '"type":"step"' "$1/metrics.jsonl"; }

# run LABEL NP OUT MODEL: starts the run (NP 0: one process), waits for its
# first step, samples, waits for its end, appends the table rows.
run() {
  local label=$1 np=$2 out=$3 mdir=$4 log=$3.log
  local -a cmd
  local -A pidrank=() mx=()
  rm -rf "$out"
  if [ "$np" -eq 0 ]; then
    cmd=("$pslora" train)
  else
    cmd=("$mpiexec" -np "$np")
    [ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
    cmd+=(--oversubscribe --bind-to none -x OMP_NUM_THREADS -x OMP_WAIT_POLICY "$pslora" train
          --servers "$servers")
  fi
  cmd+=(--model "$mdir" --data "$data" --out "$out" --batch "$batch" --seq "$seq"
        --steps "$steps" --threads 1 --log-every 1 --compute "$compute")
  say "$label: ${cmd[*]}"
  "${cmd[@]}" >"$log" 2>&1 &
  run_pid=$!
  local waited=0
  until stepped "$out"; do
    kill -0 "$run_pid" 2>/dev/null || { wait "$run_pid" || true; die "$label: the run ended before its first step: $(tail -3 "$log")"; }
    [ "$waited" -lt $((timeout * 5)) ] || die "$label: no step after $timeout s"
    sleep 0.2
    waited=$((waited + 1))
  done
  if [ "$np" -eq 0 ]; then
    pidrank[$run_pid]=local
  else
    local p r
    while read -r p r; do pidrank[$p]=$r; done < <(ranks_of "$run_pid")
    [ ${#pidrank[@]} -eq "$np" ] || die "$label: found ${#pidrank[@]} ranks under mpirun (pid $run_pid), expected $np"
  fi
  local n=0 got pid v i
  local names=(rss pss pa ra mr mp)
  while [ $n -lt "$samples" ] && kill -0 "$run_pid" 2>/dev/null; do
    got=0
    for pid in "${!pidrank[@]}"; do
      v=$(read_mem "$pid" "$mdir") || continue
      got=1
      read -ra v <<<"$v"
      for i in "${!names[@]}"; do
        local key=$pid.${names[$i]}
        [ "${v[$i]}" -le "${mx[$key]:-0}" ] || mx[$key]=${v[$i]}
      done
    done
    ((got)) && n=$((n + 1))
    sleep "$interval"
  done
  [ $n -gt 0 ] || die "$label: the run ended before it could be sampled; give more --steps"
  local st=0
  wait "$run_pid" || st=$?
  run_pid=""
  [ "$st" = 0 ] || die "$label: the run failed ($st): $(tail -3 "$log")"
  say "$label: $n samples"
  # rows in rank order
  local -a sum=(0 0 0 0 0 0)
  for pid in "${!pidrank[@]}"; do echo "${pidrank[$pid]} $pid"; done | sort -n | while read -r r pid; do
    local role
    if [ "$r" = local ]; then role="server + worker"; r="0"
    elif [ "$r" -lt "$servers" ]; then role=server; else role=worker; fi
    local rss=${mx[$pid.rss]:-0} pss=${mx[$pid.pss]:-0} pa=${mx[$pid.pa]:-0} ra=${mx[$pid.ra]:-0}
    local mr=${mx[$pid.mr]:-0} mp=${mx[$pid.mp]:-0}
    local other=$((pss - mp - pa))
    [ "$other" -ge 0 ] || other=0
    echo "| $label | $r | $role | $(mb "$rss") | $(mb "$pss") | $(mb "$mr") | $(mb "$mp") | $(mb "$ra") | $(mb "$other") |"
  done >>"$rows_file"
  for pid in "${!pidrank[@]}"; do
    for i in "${!names[@]}"; do sum[i]=$((sum[i] + ${mx[$pid.${names[$i]}]:-0})); done
  done
  local other=$((sum[1] - sum[5] - sum[2]))
  [ "$other" -ge 0 ] || other=0
  echo "| $label | all | **sum** | $(mb "${sum[0]}") | **$(mb "${sum[1]}")** | $(mb "${sum[4]}") | $(mb "${sum[5]}") | $(mb "${sum[3]}") | $(mb "$other") |" >>"$rows_file"
}

rows_file=$work/rows.md
: >"$rows_file"
made_bf16=0
for compute in ${computes//,/ }; do
  tag="" sfx=""
  [ "$compute" = fp32 ] || tag=", --compute $compute" sfx=-$compute
  ((local_run)) && run "1 process$tag" 0 "$work/run-local$sfx" "$model"
  if ((mpi_runs)); then
    for w in $workers; do
      run "$servers server + $w worker$([ "$w" -gt 1 ] && echo s)$tag" $((servers + w)) \
        "$work/run-w$w$sfx" "$model"
    done
  fi
  if ((bf16)); then
    if ((!made_bf16)); then
      say "making a BF16 copy of the model"
      make_bf16 "$model" "$work/model-bf16" || die "the BF16 copy failed"
      made_bf16=1
    fi
    run "1 process, BF16 file$tag" 0 "$work/run-bf16$sfx" "$work/model-bf16"
  fi
done

file_mb=$(du -cb "$model"/*.safetensors | awk 'END { printf "%.1f", $1 / 1e6 }')
echo "model: $model ($file_mb MB of .safetensors); batch $batch x seq $seq, $steps steps," \
  "OMP_NUM_THREADS=1, max of up to $samples samples per run, MB = 10^6 bytes"
echo
echo "| run | rank | role | Rss MB | Pss MB | model file Rss MB | model file Pss MB | anon MB | other Pss MB |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$rows_file"
