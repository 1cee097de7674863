#!/usr/bin/env bash
# A cluster of separate hosts: network namespaces on a private bridge
# (tests/netns/netns.sh), each with its own address, Open MPI started on them
# by deploy/pslora-run --hostfile through its rsh launcher (tests/netns/agent
# instead of ssh), every rank over TCP on the bridge.  Needs root
# (CAP_NET_ADMIN); it fails, never skips, without it.
#  - 1 server host + 2 worker hosts, and 2 server hosts + 3 worker hosts:
#    adapters byte-identical to the same run on one host;
#  - bytes on the wire per step, from the links' counters, within 5% of
#    metrics.jsonl's bytes_pushed / bytes_pulled (and never below them);
#  - a worker host's link cut mid-run: the job ends by itself (pslora's
#    --timeout and the launcher's --grace; or Open MPI's lost-daemon check,
#    --host-timeout), one line names the rank and the host; the cut host's
#    processes end by themselves; with the link back, --resume gives the
#    uninterrupted adapter byte for byte.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/netns/netns.sh"
RUN=$HERE/../deploy/pslora-run
nn_require_root
make_tiny
nn_up c 231 5
nn_run_args
S=$SCRATCH
T="--model $S/model --data $S/data.bin --seq 32 --batch 4 --lr 3e-3 --targets c_attn,c_proj,c_fc --threads 1"

# cluster SERVERS WORKERS HOSTS NAME [RUN OPTIONS] -- [TRAIN FLAGS]: one run
# on the namespace hosts HOSTS ("1 2 3") into NAME (--out NAME unless the
# flags --resume), its output in NAME.txt; at most 60 s.  A launch that has
# not trained one step after 30 s is ended (status 125) with every host's
# processes shown: Open MPI's daemons hung at start-up so before
# tests/netns/agent gave each host its own TMPDIR.
cluster() {
  local s=$1 w=$2 hosts=$3 out=$4; shift 4
  local opts=()
  while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  nn_hostfile "$S/hosts-$out" $hosts
  [[ " $* " == *" --resume "* ]] || set -- "$@" --out "$S/$out"
  launch_watched "$out" "$hosts" --hostfile "$S/hosts-$out" --servers "$s" --workers "$w" \
    "${NN_RUN[@]}" "${opts[@]}" --pslora "$PSLORA" -- $T "$@"
}

# launch_watched NAME HOSTS RUN ARGS...: 0/the launcher's status, 124 after
# 60 s, 125 when no step was logged within 30 s (both: everything ended).
launch_watched() {
  local out=$1 hosts=$2; shift 2
  "$RUN" "$@" > "$out.txt" 2>&1 &
  local bg=$! i st=0 h
  nn_track "$bg"
  for ((i = 0; i < 600; i++)); do
    kill -0 "$bg" 2>/dev/null || break
    ((i == 300)) && ! grep -q '^step ' "$out.txt" && break
    sleep 0.1
  done
  if kill -0 "$bg" 2>/dev/null; then
    echo "$out: still running after $((i / 10)) s; processes on each host:" >&2
    for h in $hosts; do echo "  host $h: $(nn_pids "$h" | xargs -r ps -o pid=,stat=,wchan=,args= -p | cut -c1-100 | tr '\n' ';')" >&2; done
    echo "  launcher: $(nn_tree "$bg" | xargs -r ps -o pid=,stat=,wchan=,args= -p | cut -c1-100 | tr '\n' ';')" >&2
    sed 's/^/  | /' "$out.txt" | tail -20 >&2
    nn_tree "$bg" | xargs -r kill -9 2>/dev/null || true
    for h in $hosts; do nn_pids "$h" | xargs -r kill -9 2>/dev/null || true; done
    wait "$bg" 2>/dev/null || true
    ((i < 600)) && return 125
    return 124
  fi
  wait "$bg" || st=$?
  return "$st"
}

# --- the same adapter as on one host
for shape in "1 2" "2 3"; do
  set -- $shape
  s=$1 w=$2 np=$(($1 + $2)) name=s$1w$2
  mpi -np "$np" "$PSLORA" train $T --steps 6 --servers "$s" --out "$name-one" > "$name-one.txt" 2>&1 \
    || fail "$name on one host: $(tail -3 "$name-one.txt")"
  cluster "$s" "$w" "$(seq -s ' ' 1 "$np")" "$name" -- --steps 6 || fail "$name on $np hosts: $(tail -5 "$name.txt")"
  grep -q '^done: steps 6 ' "$name.txt" || fail "$name on $np hosts: no summary line"
  cmp "$name-one/adapter_model.safetensors" "$name/adapter_model.safetensors" \
    || fail "$name: $np hosts differ from one host"
  ok "$s server host(s) + $w worker hosts over TCP on $NN_SUBNET: adapter byte-identical to one host"
done

# --- bytes on the wire.  Start-up (daemons, wire-up, Hello) costs the same in
# a short and a long run, so the difference of the links' counters over the
# difference of steps is what one step carries.  Host 1 is the server, hosts
# 2 and 3 the workers; a worker link carries one worker's push (from it) and
# pull (to it), the server link all of them.
declare -A TX RX   # [STEPS,HOST]: bytes to / from the host during a run
wire() {
  local steps=$1 i tx0 rx0 tx1 rx1
  declare -A b0
  for i in 1 2 3; do b0[$i]=$(nn_bytes $i); done
  cluster 1 2 "1 2 3" "wire$steps" -- --steps "$steps" || fail "wire $steps: $(tail -5 "wire$steps.txt")"
  for i in 1 2 3; do
    read -r tx0 rx0 <<<"${b0[$i]}"
    read -r tx1 rx1 <<<"$(nn_bytes $i)"
    TX[$steps,$i]=$((tx1 - tx0)) RX[$steps,$i]=$((rx1 - rx0))
  done
}
wire 4
wire 24
push=$(json_field wire24/metrics.jsonl step bytes_pushed | tail -1)
pull=$(json_field wire24/metrics.jsonl step bytes_pulled | tail -1)
[[ $push =~ ^[0-9]+$ && $pull =~ ^[0-9]+$ ]] || fail "wire: metrics bytes '$push' '$pull'"
# near WHAT TX|RX HOST METRIC: that counter's bytes per step within
# [METRIC, METRIC * 1.05]
near() {
  local what=$1 dir=$2 i=$3 m=$4 w
  if [[ $dir == TX ]]; then w=$(((TX[24,$i] - TX[4,$i]) / 20)); else w=$(((RX[24,$i] - RX[4,$i]) / 20)); fi
  ((w >= m)) || fail "wire: $what carried $w B/step, less than the $m B metrics.jsonl reports"
  ((w * 100 <= m * 105)) || fail "wire: $what carried $w B/step, over 5% above the $m B of metrics.jsonl"
  local bp=$(((w - m) * 10000 / m))
  echo "   $what: $w B/step on the wire, $m B in metrics.jsonl (+$((bp / 100)).$(printf %02d $((bp % 100)))%)"
}
echo "bytes per step (counters over steps 5..24; metrics: pushed $push, pulled $pull, 2 workers)"
near "server link in (pushes)" TX 1 "$push"
near "server link out (updates)" RX 1 "$pull"
for i in 2 3; do
  near "worker link $i out (push)" RX $i $((push / 2))
  near "worker link $i in (update)" TX $i $((pull / 2))
done
ok "bytes on the wire within 5% of metrics.jsonl"

# --- a worker host's link cut mid-run.  Rank 2 (host 3) is a worker; rank 1
# is slowed so that the run lasts a few seconds.
TC="--steps 24 --checkpoint-every 3 --keep-checkpoints 100"
SLOW=(--mpi-arg -x --mpi-arg PSLORA_TEST_SLOW_RANK --mpi-arg -x --mpi-arg PSLORA_TEST_SLOW_MS)
mpi -np 3 "$PSLORA" train $T $TC --out cut-ref > cut-ref.txt 2>&1 || fail "cut reference: $(tail -3 cut-ref.txt)"

# cut_case NAME LIMIT_S WANT RUN_OPTIONS... -- TRAIN FLAGS: cut host 3 after
# step 6; the launcher must end within LIMIT_S with its line matching WANT.
cut_case() {
  local name=$1 limit=$2 want=$3 i st=0; shift 3
  local opts=()
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  PSLORA_TEST_SLOW_RANK=1 PSLORA_TEST_SLOW_MS=100 cluster 1 2 "1 2 3" "$name" "${SLOW[@]}" "${opts[@]}" \
    -- $TC "$@" &
  local bg=$!
  nn_track "$bg"
  # By the clock, not by a count of polls (a loaded machine polls slowly).
  local t0 t1 ts
  ts=$(date +%s%N)
  while ! grep -q '"type":"step","step":6,' "$name/metrics.jsonl" 2>/dev/null; do
    kill -0 "$bg" 2>/dev/null || fail "$name: ended before the cut: $(tail -3 "$name.txt")"
    (($(date +%s%N) - ts < 60 * 10 ** 9)) || fail "$name: no step 6 within 60 s: $(tail -3 "$name.txt")"
    sleep 0.02
  done
  echo "$name: step 6 after $((($(date +%s%N) - ts) / 1000000)) ms" >&2
  t0=$(date +%s%N)
  nn_cut 3
  wait "$bg" || st=$?
  t1=$(date +%s%N)
  local ms=$(((t1 - t0) / 1000000))
  ((st != 0 && st != 124)) || fail "$name: launcher exit $st (124: killed by the test's own time limit)"
  ((ms <= limit * 1000)) || fail "$name: the job took $ms ms to end after the cut, over $limit s"
  local line
  line=$(grep '^pslora-run: rank' "$name.txt") || fail "$name: no line names the lost rank: $(grep -v '^step' "$name.txt" | tail -8)"
  [[ $(wc -l <<<"$line") == 1 && $line =~ $want ]] || fail "$name: '$line' does not match '$want'"
  ok "$name: link of host 3 cut after step 6: job ended after $ms ms (exit $st): $line"
  local tm
  tm=$(date +%s%N)
  nn_mend 3
  compgen -G "$name/checkpoints/step-0000000[369]" >/dev/null || fail "$name: no checkpoint left"
  # The cut host's daemon and rank end by themselves: its daemon notices that
  # mpirun is gone once the link is back (or before, by --host-timeout, when
  # its connection was idle).  The resume starts after that.
  for ((i = 0; i < 400; i++)); do
    [ -z "$(nn_pids 3)" ] && break
    sleep 0.1
  done
  ((i < 400)) || fail "$name: processes left on the cut host 40 s after the link came back: $(nn_pids 3 | xargs -r ps -o comm= -p)"
  local ds=$((($(date +%s%N) - tm) / 100000000))
  cluster 1 2 "1 2 3" "$name-resume" -- $TC --resume "$S/$name" || fail "$name: resume: $(tail -3 "$name-resume.txt")"
  cmp cut-ref/adapter_model.safetensors "$name/adapter_model.safetensors" || fail "$name: resume differs"
  ok "$name: link back, --resume on the 3 hosts: adapter byte-identical to the uninterrupted run"
  ok "$name: the cut host's processes ended by themselves $((ds / 10)).$((ds % 10)) s after the link came back"
}
# pslora's own --timeout (3 s) names rank 2; mpirun cannot reach host 3's
# daemon to end the job, so the launcher ends it after --grace (3 s).
cut_case cut-timeout 10 '^pslora-run: rank 2 on host 10\.231\.0\.13 sent nothing for 3 s' \
  --grace 3 -- --timeout 3
# Open MPI notices the silent host first (--host-timeout 4 < --timeout 60)
# and ends the job itself.
cut_case cut-host 9 '^pslora-run: rank 2 on host 10\.231\.0\.13 lost: Open MPI lost its daemon' \
  --host-timeout 4 -- --timeout 60
echo "cli_cluster: all passed"
