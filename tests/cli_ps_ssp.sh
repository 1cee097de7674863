#!/usr/bin/env bash
# SSP with one worker slowed: staleness never exceeds s, the loss falls.
# ASP with the same slow worker: staleness is recorded and unbounded.
. "$(dirname "$0")/lib.sh"
make_tiny
T="--model model --data data.bin --seq 32 --batch 4 --steps 40 --lr 3e-3 --targets c_attn,c_proj,c_fc --log-every 1"
export PSLORA_TEST_SLOW_RANK=2 PSLORA_TEST_SLOW_MS=40
mpi -np 4 -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS "$PSLORA" train $T --sync ssp --staleness 2 --out ssp > ssp.txt 2>&1 \
  || fail "ssp: $(tail -3 ssp.txt)"
max=$(json_field ssp/metrics.jsonl step staleness_max | sort -g | tail -1)
[ "$(json_field ssp/metrics.jsonl step staleness_max | wc -l)" -ge 30 ] || fail "too few rows"
awk -v m="$max" 'BEGIN { exit !(m <= 2 && m >= 1) }' || fail "staleness max $max (bound 2)"
first=$(json_field ssp/metrics.jsonl step loss | head -5 | awk '{s+=$1} END {print s/NR}')
last=$(json_field ssp/metrics.jsonl step loss | tail -5 | awk '{s+=$1} END {print s/NR}')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.05) }' || fail "ssp loss $first -> $last"
ok "SSP s=2: max staleness $max, loss $first -> $last"

mpi -np 3 -x PSLORA_TEST_SLOW_RANK -x PSLORA_TEST_SLOW_MS "$PSLORA" train $T --sync asp --out asp > asp.txt 2>&1 \
  || fail "asp: $(tail -3 asp.txt)"
amax=$(json_field asp/metrics.jsonl step staleness_max | sort -g | tail -1)
awk -v m="$amax" 'BEGIN { exit !(m > 2) }' || fail "ASP staleness $amax: the slow worker should fall behind"
ok "ASP: max staleness $amax"
expect_fail 2 '--staleness: only with --sync ssp' "$PSLORA" train $T --staleness 2 --out bad
echo "cli_ps_ssp: all passed"
