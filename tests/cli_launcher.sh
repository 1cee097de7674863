#!/usr/bin/env bash
# tests/cli_launcher.sh - deploy/pslora-run and deploy/pslora.sbatch compose
# the mpirun command lines they document (checked with --dry-run), reject bad
# options with exit status 2, and the composed line runs under the real mpirun.
#
# Environment (set by CTest): PSLORA (the binary), MPIEXEC, SCRATCH.
: "${MPIEXEC:?set MPIEXEC to mpiexec}"
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"   # checks PSLORA and SCRATCH, cd into a fresh SCRATCH, fail()
RUN=$HERE/../deploy/pslora-run
SBATCH=$HERE/../deploy/pslora.sbatch
export MPIEXEC
CORES=$(getconf _NPROCESSORS_ONLN)
unset OMP_WAIT_POLICY GOMP_SPINCOUNT   # the defaults below; the caller's are passed on
ROOT=0
[[ $(id -u) == 0 ]] && ROOT=1

# dry ARGS...: runs the launcher with --dry-run and sets WORDS to the words of
# the command line it printed (its last stderr line, read back by the shell,
# so this also checks the quoting).
dry() {
  local err
  err=$("$RUN" --dry-run "$@" 2>&1 >/dev/null) || fail "pslora-run --dry-run $* exited $?: $err"
  LINE=$(tail -n 1 <<<"$err")
  eval "WORDS=($LINE)"
}

# has W1 W2 ...: the words appear consecutively in WORDS.
has() {
  local n=$# i j
  for ((i = 0; i + n <= ${#WORDS[@]}; i++)); do
    for ((j = 0; j < n; j++)); do
      [[ ${WORDS[i + j]} == "${*:j+1:1}" ]] || continue 2
    done
    return 0
  done
  return 1
}
expect() { has "$@" || fail "expected '$*' in: $LINE"; }
expect_not() { ! has "$@" || fail "did not expect '$*' in: $LINE"; }

# at WORD: index of WORD in WORDS (-1 when absent).
at() {
  local i
  for ((i = 0; i < ${#WORDS[@]}; i++)); do
    [[ ${WORDS[i]} == "$1" ]] && { echo "$i"; return; }
  done
  echo -1
}

# The train flags come after "PSLORA train", the mpirun flags before it.
check_order() {
  local p
  p=$(at "$PSLORA")
  ((p > 0)) || fail "binary $PSLORA missing in: $LINE"
  [[ ${WORDS[0]} == "$MPIEXEC" ]] || fail "line does not start with $MPIEXEC: $LINE"
  [[ ${WORDS[p + 1]} == train ]] || fail "'train' does not follow the binary: $LINE"
  (($(at --model) > p)) || fail "--model not after the binary: $LINE"
  (($(at -np) < p)) || fail "-np not before the binary: $LINE"
}

# bad EXPECTED_MESSAGE ARGS...: exit status 2 and the message on stderr.
bad() {
  local want=$1 err rc=0
  shift
  err=$("$RUN" "$@" 2>&1 >/dev/null) || rc=$?
  ((rc == 2)) || fail "pslora-run $* exited $rc, expected 2 ($err)"
  grep -qF -- "$want" <<<"$err" || fail "pslora-run $*: message lacks '$want': $err"
}

T=(--model "$SCRATCH/m" --data "$SCRATCH/d.bin" --out "$SCRATCH/o")

echo "defaults: 1 server + 2 workers"
dry --pslora "$PSLORA" -- "${T[@]}"
check_order
expect -np 3
expect --servers 1
expect --bind-to none
expect -x OMP_WAIT_POLICY=passive
expect_not -x GOMP_SPINCOUNT=10000
expect_not --hostfile
expect_not --mca btl "tcp,self"
expect_not -x OMP_NUM_THREADS=1
if ((ROOT)); then expect --allow-run-as-root; else expect_not --allow-run-as-root; fi
if ((CORES < 3)); then expect --oversubscribe; else expect_not --oversubscribe; fi
(($(at --servers) > $(at "$PSLORA"))) || fail "--servers is not a train flag: $LINE"

echo "the caller's OMP_WAIT_POLICY and GOMP_SPINCOUNT go to every rank"
OMP_WAIT_POLICY=active GOMP_SPINCOUNT=10000 dry --pslora "$PSLORA" -- "${T[@]}"
expect -x OMP_WAIT_POLICY=active
expect -x GOMP_SPINCOUNT=10000
expect_not -x OMP_WAIT_POLICY=passive

echo "servers and workers give np; a leading 'train' is dropped"
dry --servers 3 --workers 5 --pslora "$PSLORA" -- train "${T[@]}" --rank 4
check_order
expect -np 8
expect --servers 3
expect --rank 4
(($(grep -o ' train ' <<<"$LINE" | wc -l) == 1)) || fail "'train' twice: $LINE"
dry --servers=2 --workers=1 --pslora "$PSLORA" -- "${T[@]}"
expect -np 3
expect --servers 2

echo "explicit --oversubscribe"
dry --workers 1 --oversubscribe --pslora "$PSLORA" -- "${T[@]}"
expect -np 2
expect --oversubscribe

echo "hostfile: passed through, no automatic oversubscription, no loopback"
HF=$SCRATCH/hosts
printf 'localhost slots=1\n' >"$HF"
dry --hostfile "$HF" --workers 7 --pslora "$PSLORA" -- "${T[@]}"
check_order
expect --hostfile "$HF"
expect -np 8
expect_not --oversubscribe

echo "tcp without a hostfile stays on loopback"
dry --transport tcp --pslora "$PSLORA" -- "${T[@]}"
check_order
expect --mca btl "tcp,self"
expect --mca btl_tcp_if_include lo
expect --mca oob_tcp_if_include lo

echo "tcp with a hostfile uses the hosts' interfaces"
dry --transport tcp --hostfile "$HF" --pslora "$PSLORA" -- "${T[@]}"
expect --mca btl "tcp,self"
expect_not --mca btl_tcp_if_include lo
expect_not --mca oob_tcp_if_include lo

echo "tcp with --iface"
dry --transport tcp --hostfile "$HF" --iface 10.0.0.0/24 --pslora "$PSLORA" -- "${T[@]}"
expect --mca btl_tcp_if_include 10.0.0.0/24
expect --mca oob_tcp_if_include 10.0.0.0/24

echo "several hosts: Open MPI's lost-host check (TCP keepalive), --rsh-agent"
dry --hostfile "$HF" --pslora "$PSLORA" -- "${T[@]}"
expect --mca oob_tcp_keepalive_time 1 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 9
dry --hostfile "$HF" --host-timeout 4 --pslora "$PSLORA" -- "${T[@]}"
expect --mca oob_tcp_keepalive_probes 3
dry --hostfile "$HF" --host-timeout 0 --pslora "$PSLORA" -- "${T[@]}"
expect_not --mca oob_tcp_keepalive_time 1
dry --pslora "$PSLORA" -- "${T[@]}"
expect_not --mca oob_tcp_keepalive_time 1   # one host: no daemons to lose
AGENT=$SCRATCH/agent
printf '#!/bin/sh\n' >"$AGENT" && chmod +x "$AGENT"
(cd "$SCRATCH" && "$RUN" --dry-run --hostfile "$HF" --rsh-agent ./agent --pslora "$PSLORA" -- "${T[@]}") 2>"$SCRATCH/ag"
eval "WORDS=($(tail -n 1 "$SCRATCH/ag"))"
expect --mca plm_rsh_agent "$SCRATCH/./agent" --mca plm_rsh_no_tree_spawn 1

echo "shm and auto"
dry --transport shm --pslora "$PSLORA" -- "${T[@]}"
expect --mca btl "vader,self"
dry --transport auto --pslora "$PSLORA" -- "${T[@]}"
expect_not --mca

echo "threads: OMP_NUM_THREADS for every rank and --threads for pslora"
dry --threads 2 --pslora "$PSLORA" -- "${T[@]}"
check_order
expect -x OMP_NUM_THREADS=2
expect --threads 2
(($(at --threads) > $(at "$PSLORA"))) || fail "--threads is not a train flag: $LINE"
(($(at OMP_NUM_THREADS=2) < $(at "$PSLORA"))) || fail "-x OMP_NUM_THREADS after the binary: $LINE"

echo "extra mpirun words and awkward train arguments survive quoting"
# shellcheck disable=SC2016 # a literal $HOME must reach pslora unexpanded
dry --mpi-arg --report-bindings --pslora "$PSLORA" -- "${T[@]}" --targets "c_attn,c_proj" \
  --init-adapter "$SCRATCH/it's a dir" --resume '$HOME'
expect --report-bindings
expect --init-adapter "$SCRATCH/it's a dir"
# shellcheck disable=SC2016
expect --resume '$HOME'
expect --targets "c_attn,c_proj"

echo "relative --pslora becomes absolute"
(cd "$(dirname "$PSLORA")" && "$RUN" --dry-run --pslora "./$(basename "$PSLORA")" -- --model m) 2>"$SCRATCH/rel"
grep -qF " $(cd "$(dirname "$PSLORA")" && pwd)/./$(basename "$PSLORA") train " "$SCRATCH/rel" ||
  fail "relative binary path not made absolute: $(tail -n 1 "$SCRATCH/rel")"

echo "bad options exit 2 with a message"
bad "unknown option '--bogus'" --bogus -- "${T[@]}"
bad "unknown option 'stray'" stray -- "${T[@]}"
bad "--workers: expected a positive integer, got '0'" --workers 0 -- "${T[@]}"
bad "--servers: expected a positive integer, got 'x'" --servers x -- "${T[@]}"
bad "--threads: expected a positive integer, got '-1'" --threads -1 -- "${T[@]}"
bad "--workers: missing value" --workers
bad "--transport: expected auto, shm or tcp, got 'udp'" --transport udp -- "${T[@]}"
bad "--hostfile: cannot read '$SCRATCH/none'" --hostfile "$SCRATCH/none" -- "${T[@]}"
bad "--transport shm: shared memory reaches one host only" --transport shm --hostfile "$HF" -- "${T[@]}"
bad "--servers: give it to pslora-run" --pslora "$PSLORA" -- "${T[@]}" --servers 2
bad "--servers: give it to pslora-run" --pslora "$PSLORA" -- "${T[@]}" --servers=2
bad "--threads: given both" --threads 2 --pslora "$PSLORA" -- "${T[@]}" --threads 1
bad "no train flags" --pslora "$PSLORA"
bad "--rsh-agent: '$SCRATCH/none' is not an executable file" --rsh-agent "$SCRATCH/none" -- "${T[@]}"
bad "--host-timeout: at least 2 seconds (or 0), got '1'" --host-timeout 1 -- "${T[@]}"
bad "--host-timeout: expected a positive integer, got 'x'" --host-timeout x -- "${T[@]}"
bad "--grace: expected a positive integer, got '0'" --grace 0 -- "${T[@]}"
bad "no train flags" --pslora "$PSLORA" --
"$RUN" --help | grep -q -- "--transport" || fail "--help does not list --transport"

echo "a missing binary is an error (1) outside --dry-run"
rc=0
"$RUN" --pslora "$SCRATCH/nothing" -- "${T[@]}" 2>"$SCRATCH/err" || rc=$?
((rc == 1)) || fail "missing binary: exit $rc, expected 1"
grep -qF "$SCRATCH/nothing" "$SCRATCH/err" || fail "missing binary not named: $(cat "$SCRATCH/err")"

echo "pslora.sbatch (outside Slurm, with the job's variables set by hand)"
bash -n "$SBATCH"
# Only the launcher's stderr (the command line) is kept.
# shellcheck disable=SC2069
sb() {
  env SLURM_NTASKS=8 SLURM_CPUS_PER_TASK=4 SLURM_JOB_NUM_NODES=2 SLURM_JOB_ID=42 \
    SLURM_SUBMIT_DIR="$SCRATCH" MODEL="$SCRATCH/m" DATA="$SCRATCH/d.bin" PSLORA="$PSLORA" \
    PSLORA_HOME="$HERE/.." PSLORA_DRY_RUN=1 "$@" bash "$SBATCH" --rank 16 2>&1 >/dev/null
}
LINE=$(sb | tail -n 1)
eval "WORDS=($LINE)"
check_order
expect -np 8
expect --servers 1
expect --threads 4
expect -x OMP_NUM_THREADS=4
expect --rank 16
expect --out "$HERE/../runs/42"
expect_not --oversubscribe # several nodes: Slurm's slots, not this host's cores
LINE=$(sb SERVERS=2 VAL="$SCRATCH/v.bin" TRANSPORT=tcp IFACE=ib0 OUT="$SCRATCH/o" | tail -n 1)
eval "WORDS=($LINE)"
expect -np 8
expect --servers 2
expect --val "$SCRATCH/v.bin"
expect --out "$SCRATCH/o"
expect --mca btl "tcp,self"
expect --mca btl_tcp_if_include ib0
expect_not --mca btl_tcp_if_include lo
LINE=$(sb PSLORA_LAUNCH=srun | tail -n 1)
eval "WORDS=($LINE)"
expect srun --mpi=pmix
expect "--export=ALL,OMP_NUM_THREADS=4,OMP_WAIT_POLICY=passive"
expect "$PSLORA" train
expect --servers 1
expect --threads 4
LINE=$(sb PSLORA_LAUNCH=srun OMP_WAIT_POLICY=active | tail -n 1)
eval "WORDS=($LINE)"
expect "--export=ALL,OMP_NUM_THREADS=4,OMP_WAIT_POLICY=active"
LINE=$(sb OMP_WAIT_POLICY=active | tail -n 1)
eval "WORDS=($LINE)"
expect -x OMP_WAIT_POLICY=active
rc=0
sb SLURM_NTASKS=1 >"$SCRATCH/err" || rc=$?
((rc == 2)) || fail "sbatch with 1 task: exit $rc, expected 2"
grep -q "no worker" "$SCRATCH/err" || fail "sbatch with 1 task: $(cat "$SCRATCH/err")"

echo "the watchdog: a fatal line, then an mpirun that hangs, is ended after --grace"
FAKE=$SCRATCH/fake-mpirun
cat >"$FAKE" <<'FAKE_EOF'
#!/bin/sh
echo $$ >"$SCRATCH/fake.pid"
echo "pslora train: rank 0: no message from rank 2 within 3 s (--timeout)" >&2
exec sleep 30
FAKE_EOF
chmod +x "$FAKE"
printf '# comment\nnodeA slots=2\n\nnodeB slots=1\n' >"$SCRATCH/hosts2"
rc=0 t0=$SECONDS
MPIEXEC=$FAKE "$RUN" --grace 1 --hostfile "$SCRATCH/hosts2" --pslora "$PSLORA" -- "${T[@]}" 2>"$SCRATCH/err" || rc=$?
((rc == 1)) || fail "watchdog: exit $rc, expected 1 ($(cat "$SCRATCH/err"))"
((SECONDS - t0 <= 6)) || fail "watchdog: the launcher took $((SECONDS - t0)) s to end a hung mpirun (--grace 1)"
grep -qx "pslora-run: rank 2 on host nodeB sent nothing for 3 s (--timeout; seen by rank 0)" "$SCRATCH/err" ||
  fail "watchdog: no line naming rank 2 and nodeB: $(cat "$SCRATCH/err")"
grep -q "has not ended the job 1 s (--grace)" "$SCRATCH/err" || fail "watchdog: no --grace line: $(cat "$SCRATCH/err")"
! kill -0 "$(cat "$SCRATCH/fake.pid")" 2>/dev/null || fail "watchdog: the hung mpirun is still running"

echo "the composed lines run under the real mpirun (pslora train --help on every rank)"
for opts in "" "--transport tcp" "--transport shm --threads 1" "--servers 2 --workers 1"; do
  # shellcheck disable=SC2086
  out=$("$RUN" $opts --pslora "$PSLORA" -- --help 2>"$SCRATCH/err") ||
    fail "pslora-run $opts -- --help: exit $? ($(cat "$SCRATCH/err"))"
  n=$(grep -c -- "--servers" <<<"$out" || true)
  ((n == 3)) || fail "pslora-run $opts -- --help: train help printed $n times, expected 3"
done

echo "cli_launcher: all checks passed"
