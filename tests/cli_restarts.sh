#!/usr/bin/env bash
# deploy/pslora-run --restarts on a cluster of network namespaces
# (tests/netns/netns.sh; root with CAP_NET_ADMIN, never skipped): 1 server
# host + 3 worker hosts, --global-batch 12; the link of worker host 4 is cut
# for good after step 6.  The supervised job must notice the lost rank, drop
# host 4 from its copy of the hostfile, restart once from the latest
# checkpoint with 2 workers on the 3 hosts left, and finish; its adapter
# equals the uninterrupted run's (same G, 3 workers) within 1e-5.  Also the
# launcher's refusals of --restarts without what it needs.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/netns/netns.sh"
: "${ADAPTER_DIFF:?}"
RUN=$HERE/../deploy/pslora-run
nn_require_root
make_tiny
S=$SCRATCH
STEPS=18
T="--model $S/model --data $S/data.bin --seq 32 --global-batch 12 --steps $STEPS --lr 3e-3 --targets c_attn,c_proj,c_fc --threads 1 --checkpoint-every 3 --keep-checkpoints 100"

# --- refusals (nothing started)
echo "10.0.0.1 slots=1" > hosts-any
expect_fail 2 '^pslora-run: --restarts: needs --global-batch G in the train flags' \
  "$RUN" --hostfile hosts-any --restarts 1 -- --model m --data d --batch 4 --out o
expect_fail 2 '^pslora-run: --restarts: needs --hostfile' \
  "$RUN" --restarts 1 -- --model m --data d --global-batch 4 --out o
expect_fail 2 '^pslora-run: --restarts: needs --out OUT or --resume OUT' \
  "$RUN" --hostfile hosts-any --restarts 1 -- --model m --data d --global-batch 4
expect_fail 2 "^pslora-run: --restarts: expected a positive integer, got 'x'" \
  "$RUN" --hostfile hosts-any --restarts x -- --model m --data d --global-batch 4 --out o

# --- the uninterrupted run: 3 workers, one host
mpi -np 4 "$PSLORA" train $T --out ref > ref.txt 2>&1 || fail "ref: $(tail -3 ref.txt)"

# --- the supervised run on hosts 1..4, host 4 cut for good after step 6
nn_up r 232 4
nn_run_args
nn_hostfile hosts 1 2 3 4
cp hosts hosts.orig
PSLORA_TEST_SLOW_RANK=1 PSLORA_TEST_SLOW_MS=150 "$RUN" --hostfile hosts --servers 1 --workers 3 \
  "${NN_RUN[@]}" --grace 3 --restarts 2 --pslora "$PSLORA" \
  --mpi-arg -x --mpi-arg PSLORA_TEST_SLOW_RANK --mpi-arg -x --mpi-arg PSLORA_TEST_SLOW_MS \
  -- $T --timeout 3 --out "$S/sup" > sup.txt 2>&1 &
bg=$!
nn_track "$bg"
for ((i = 0; i < 1000; i++)); do
  grep -q '"type":"step","step":6,' sup/metrics.jsonl 2>/dev/null && break
  kill -0 "$bg" 2>/dev/null || fail "sup: ended before the cut: $(tail -3 sup.txt)"
  sleep 0.02
done
((i < 1000)) || fail "sup: no step 6 within 20 s"
t0=$(date +%s%N)
nn_cut 4
st=0
for ((i = 0; i < 1200; i++)); do
  kill -0 "$bg" 2>/dev/null || break
  sleep 0.1
done
((i < 1200)) || fail "sup: still running 120 s after the cut: $(tail -5 sup.txt)"
wait "$bg" || st=$?
t1=$(date +%s%N)
((st == 0)) || fail "sup: exit $st: $(grep -v '^step' sup.txt | tail -6)"
restarts=$(grep -c '^pslora-run: restart ' sup.txt || true)
[ "$restarts" = 1 ] || fail "sup: $restarts restarts (expected 1): $(grep '^pslora-run:' sup.txt)"
line=$(grep '^pslora-run: restart ' sup.txt)
[[ $line =~ ^pslora-run:\ restart\ 1/2\ without\ host\ 10\.232\.0\.14,\ from\ step\ ([0-9]+)\ \(2\ workers\)$ ]] \
  || fail "sup: restart line '$line'"
from=${BASH_REMATCH[1]}
((from >= 6 && from < STEPS && from % 3 == 0)) || fail "sup: restarted from step $from"
grep -q '^pslora-run: rank 3 on host 10\.232\.0\.14 ' sup.txt || fail "sup: no line names rank 3 on host 4: $(grep '^pslora-run:' sup.txt)"
grep -q "^done: steps $STEPS " sup.txt || fail "sup: no summary line"
grep -q -- "-np 3 .*--resume $S/sup" sup.txt || fail "sup: the restart did not run 3 ranks with --resume"
cmp -s hosts hosts.orig || fail "sup: the user's hostfile was changed"
"$ADAPTER_DIFF" ref sup 1e-5 > diff.txt || fail "sup: adapter differs from the uninterrupted run beyond 1e-5: $(tail -2 diff.txt)"
ms=$(((t1 - t0) / 1000000))
ok "host 4 cut for good after step 6: $restarts restart ($line); finished $ms ms after the cut on 3 hosts, adapter within 1e-5 of the uninterrupted run ($(tail -1 diff.txt))"
echo "cli_restarts: all passed"
