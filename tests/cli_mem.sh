#!/usr/bin/env bash
# bench/mem.sh runs and prints its table: --help, bad flags, and a tiny model
# in one process and under mpirun with 1 server + 1 and 2 workers.  Only the
# table's shape is checked (rows, roles, numbers), never a figure.
. "$(dirname "$0")/lib.sh"
MEM=$(cd "$(dirname "$0")/.." && pwd)/bench/mem.sh
make_tiny

bash -n "$MEM" || fail "bash -n bench/mem.sh"
"$MEM" --help > help.txt || fail "--help exited $?"
grep -q '^usage: bench/mem.sh' help.txt || fail "--help: no usage line"
expect_fail 2 "unknown argument '--bogus'" "$MEM" --bogus
expect_fail 2 '--workers takes a whole number' "$MEM" --workers "1 x"
expect_fail 2 "--compute: expected fp32, bf16 or auto, got 'fp16'" "$MEM" --compute fp32,fp16

# Long enough runs for two samples each (a tiny step takes about a millisecond).
MPIEXEC=$MPIEXEC "$MEM" --model model --data data.bin --workers "1 2" --seq 32 --steps 2000 \
  --samples 2 --interval 0.1 --no-bf16 --work work > table.md 2> mem.err \
  || fail "mem.sh exited $?: $(tail -3 mem.err)"
cat table.md
num='[0-9]+\.[0-9]'
row() { grep -Ec "^\| $1 \| $2 \| $3 \| $num \| $num \| $num \| $num \| $num \| $num \|$" table.md || true; }
[ "$(row '1 process' 0 'server \+ worker')" = 1 ] || fail "no one-process row"
[ "$(row '1 server \+ 1 worker' 0 server)" = 1 ] || fail "no server row for 1 worker"
[ "$(row '1 server \+ 1 worker' 1 worker)" = 1 ] || fail "no worker row for 1 worker"
[ "$(row '1 server \+ 2 workers' 0 server)" = 1 ] || fail "no server row for 2 workers"
[ "$(row '1 server \+ 2 workers' '[12]' worker)" = 2 ] || fail "not 2 worker rows for 2 workers"
[ "$(grep -c '| all | \*\*sum\*\* |' table.md)" = 3 ] || fail "not 3 sum rows"
# every worker maps the model file
grep -E '\| worker \|' table.md | awk -F'|' '$7 + 0 <= 0 { exit 1 }' || fail "a worker without the model mapped"
[ -d work/run-w2 ] || fail "--work: run outputs not kept"
ok "mem.sh table: 1 process, 1 server + 1 and 2 workers"
