#!/usr/bin/env bash
# bench/scaling.sh - measure BSP step times on a namespace cluster, for the
# step-time model of docs/scaling.md (fitted by bench/scaling_fit.py).
#
#   bench/scaling.sh [--out DIR] [--bw "10 100 1000"] [--workers "1 2 4"]
#                    [--servers "1 2"] [--payloads "r8 r64 full"]
#                    [--steps N] [--repeat R] [--pslora PATH]
#
# It builds max(S) + max(W) hosts with tests/netns/netns.sh (tag "s",
# 10.233.0.0/24), each host one rank (slots=1): S server hosts, then W worker
# hosts.  For every bandwidth it limits every host's link with tc tbf (both
# ways), then for every payload, S and W trains --steps BSP steps of a
# 2-layer, dim-128 GPT-2 shape (batch 8 x 64, 1 thread a rank) through
# deploy/pslora-run --hostfile, and appends one CSV row per run to
# DIR/scaling.csv: medians over the steps after the first of
#   time_step, time_compute (mean over workers), time_compute_max and
#   time_step - time_compute_max (the exchange: push, aggregation, optimizer,
#   pull), and the bytes pushed and pulled per step (metrics.jsonl).
# Run it again with the same --out to add repeats of the points (column rep);
# bench/scaling_fit.py takes the median over them.
# Payloads: rN is LoRA rank N on c_attn,c_proj,c_fc; full is --full (the
# whole model's weight matrices pushed and pulled every step).
#
# Needs root (CAP_NET_ADMIN).  It holds the lock of its own cluster and those
# of the namespace tests (tags c and r), so no test cluster runs beside it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PROG=scaling.sh

usage_err() { echo "$PROG: $*" >&2; exit 2; }

OUT=/tmp/pslora-scaling BWS="10 100 1000" WS="1 2 4" SS="1 2" PAYLOADS="r8 r64 full"
STEPS=6 REPEAT=1 PSLORA=$ROOT/build-rel/cli/pslora
while (($#)); do
  case $1 in
    --out|--bw|--workers|--servers|--payloads|--steps|--repeat|--pslora)
      (($# >= 2)) || usage_err "$1 needs a value"
      case $1 in
        --out) OUT=$2 ;; --bw) BWS=$2 ;; --workers) WS=$2 ;; --servers) SS=$2 ;;
        --payloads) PAYLOADS=$2 ;; --steps) STEPS=$2 ;; --repeat) REPEAT=$2 ;; --pslora) PSLORA=$2 ;;
      esac
      shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage_err "unknown option '$1' (see --help)" ;;
  esac
done
isnums() { [[ $1 =~ ^[0-9]+( [0-9]+)*$ ]]; }
isnums "$BWS" || usage_err "--bw '$BWS': Mbit/s values, space-separated"
isnums "$WS" || usage_err "--workers '$WS': counts, space-separated"
isnums "$SS" || usage_err "--servers '$SS': counts, space-separated"
[[ $PAYLOADS =~ ^((r[0-9]+|full)( |$))+$ ]] || usage_err "--payloads '$PAYLOADS': rN or full, space-separated"
if ! [[ $STEPS =~ ^[0-9]+$ ]] || ((STEPS < 3)); then usage_err "--steps '$STEPS': at least 3"; fi
if ! [[ $REPEAT =~ ^[0-9]+$ ]] || ((REPEAT < 1)); then usage_err "--repeat '$REPEAT': at least 1"; fi
[ -x "$PSLORA" ] || usage_err "--pslora '$PSLORA': no such executable (build first)"
PSLORA=$(cd "$(dirname "$PSLORA")" && pwd)/$(basename "$PSLORA")

maxof() { local m=0 x; for x in $1; do ((x > m)) && m=$x; done; echo "$m"; }
MAXS=$(maxof "$SS") MAXW=$(maxof "$WS")
((MAXS + MAXW <= 20)) || usage_err "max servers + max workers = $((MAXS + MAXW)): at most 20 hosts"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRATCH=$OUT
. "$ROOT/tests/netns/netns.sh"
nn_require_root
for t in c r; do
  exec {fd}>"${TMPDIR:-/tmp}/pslora-netns-$t.lock"
  flock -w 900 "$fd" || nn_fail "a namespace test kept ${TMPDIR:-/tmp}/pslora-netns-$t.lock for 900 s"
done

cd "$OUT"
if [ ! -f model/config.json ]; then
  "$PSLORA" init --layers 2 --dim 128 --heads 4 --vocab 256 --ctx 64 --seed 3 --out model >/dev/null
  cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 > corpus.txt
  "$PSLORA" tokenize --in corpus.txt --out data.bin --val-fraction 0.1 >/dev/null
fi
nn_up s 233 $((MAXS + MAXW))
nn_run_args
CSV=$OUT/scaling.csv
[ -f "$CSV" ] || echo "bw_mbit,workers,servers,payload,params,rep,steps,bytes_pushed,bytes_pulled,t_step,t_compute,t_compute_max,t_exchange,cpu" > "$CSV"
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo | tr ',' ' ')
TRAIN=(--model "$OUT/model" --data "$OUT/data.bin" --seq 64 --batch 8 --lr 1e-3 --steps "$STEPS")

# median FIELD FILE: the median of FIELD over the step rows after the first
# ("exch" is time_step - time_compute_max of each row).
median() {
  grep '"type":"step"' "$2" | tail -n +2 | awk -v f="$1" '
    function get(k,  m) { if (match($0, "\"" k "\":[-0-9.e+]+")) return substr($0, RSTART + length(k) + 3, RLENGTH - length(k) - 3) + 0; return "" }
    { v[NR] = (f == "exch") ? get("time_step") - get("time_compute_max") : get(f) }
    END { n = NR; if (!n) exit 1
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
          printf "%.6g\n", (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# one BW W S PAYLOAD: one run; 0 when its row was written (rep: 1 + the rows
# the CSV already has of that point, so a second invocation adds repeats).  A launch that
# logs no step within 60 s is ended and tried once more (Open MPI's daemons
# hung so at start-up, about one launch in 20, until tests/netns/agent gave
# each host its own TMPDIR; the retry stays, so that a long sweep loses no point).
one() {
  local bw=$1 w=$2 s=$3 p=$4 rep name hosts flags=() try st
  rep=$(awk -F, -v k="$bw,$w,$s,$p" 'NR > 1 && $1","$2","$3","$4 == k {n++} END {print n + 1}' "$CSV")
  name=run-$bw-w$w-s$s-$p-$rep
  hosts=$(seq -s ' ' 1 "$s")" "$(seq -s ' ' $((MAXS + 1)) $((MAXS + w)))
  # shellcheck disable=SC2086 # one host a word
  nn_hostfile "$OUT/hosts-$name" $hosts
  if [[ $p == full ]]; then flags=(--full); else flags=(--rank "${p#r}" --targets "c_attn,c_proj,c_fc"); fi
  for try in 1 2; do
    rm -rf "${OUT:?}/$name"
    st=0
    "$ROOT/deploy/pslora-run" --hostfile "$OUT/hosts-$name" --servers "$s" --workers "$w" --threads 1 \
      "${NN_RUN[@]}" --pslora "$PSLORA" -- "${TRAIN[@]}" "${flags[@]}" --out "$OUT/$name" > "$name.txt" 2>&1 &
    local bg=$! i
    nn_track "$bg"
    for ((i = 0; i < 9000; i++)); do
      kill -0 "$bg" 2>/dev/null || break
      ((i == 600)) && ! grep -q '^step ' "$name.txt" && break
      sleep 0.1
    done
    if kill -0 "$bg" 2>/dev/null; then
      nn_tree "$bg" | xargs -r kill -9 2>/dev/null || true
      for h in $hosts; do nn_pids "$h" | xargs -r kill -9 2>/dev/null || true; done
      wait "$bg" 2>/dev/null || true
      st=124
      echo "$name: no step within 60 s or not done in 900 s; killed (try $try)" >&2
      continue
    fi
    wait "$bg" || st=$?
    ((st == 0)) && break
    ((st == 2)) && { echo "$name: usage error: $(tail -2 "$name.txt" | tr '\n' ' ')" >&2; return 1; }
    echo "$name: exit $st: $(tail -2 "$name.txt" | tr '\n' ' ')" >&2
  done
  ((st == 0)) || return 1
  local m=$OUT/$name/metrics.jsonl params
  params=$(sed -n 's/.*trained_params \([0-9]*\).*/\1/p' "$name.txt")
  echo "$bw,$w,$s,$p,$params,$rep,$STEPS,$(median bytes_pushed "$m"),$(median bytes_pulled "$m"),$(median time_step "$m"),$(median time_compute "$m"),$(median time_compute_max "$m"),$(median exch "$m"),$CPU" >> "$CSV"
  tail -1 "$CSV"
  rm -rf "${OUT:?}/$name"   # the rows are what is kept (and $name.txt)
}

for ((rep = 1; rep <= REPEAT; rep++)); do
  for bw in $BWS; do
    for ((h = 1; h <= MAXS + MAXW; h++)); do nn_limit "$h" "${bw}mbit"; done
    for p in $PAYLOADS; do
      for s in $SS; do
        for w in $WS; do
          one "$bw" "$w" "$s" "$p" || echo "$PROG: run bw $bw W $w S $s $p failed twice; no row" >&2
        done
      done
    done
  done
done
echo "$PROG: rows in $CSV"
