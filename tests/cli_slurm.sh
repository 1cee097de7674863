#!/usr/bin/env bash
# A real Slurm: munged, slurmctld and slurmd from Debian's slurm-wlm and munge
# (installed by .ci/run, never here), started by this test as a one-node
# cluster with a generated slurm.conf in the scratch folder, and stopped at
# the end by their pid files, whatever happens.  Needs root.
#  - `sbatch deploy/pslora.sbatch` (mpirun inside the allocation) trains the
#    tiny model to the end: the adapter equals plain mpirun's, byte for byte;
#  - scancel mid-run, then resubmitting with RESUME=1 continues from the
#    newest checkpoint: byte-identical to the uninterrupted run;
#  - PSLORA_LAUNCH=srun (srun --mpi=pmix): the same adapter again.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
SBATCH_SCRIPT=$HERE/../deploy/pslora.sbatch
[ "$(id -u)" = 0 ] || fail "cli_slurm starts Slurm's daemons: run it as root (uid $(id -u) here)"
for c in munged slurmctld slurmd sbatch squeue scancel sinfo srun; do
  command -v "$c" >/dev/null || fail "no '$c': install slurm-wlm and munge (apt-get install slurm-wlm munge; .ci/run does)"
done
make_tiny
S=$SCRATCH
CPUS=$(getconf _NPROCESSORS_ONLN)
NODE=$(hostname -s)

# --- the cluster: every file in $S/slurm; munged on its own socket.  The
# ports are this test's own, away from Slurm's defaults (6817/6818).
D=$S/slurm
mkdir -p "$D/munge" "$D/state" "$D/spool"
chmod 755 "$S" "$D"
chown munge: "$D/munge" && chmod 700 "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chown munge: "$D/munge/munge.key" && chmod 400 "$D/munge/munge.key"
export SLURM_CONF=$D/slurm.conf
cat >"$SLURM_CONF" <<CONF
ClusterName=pslora-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=test Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

# stop_all: every daemon by its pid file (SIGTERM, then SIGKILL after 5 s),
# and any job step still running.  The EXIT trap.
stop_all() {
  local f p i
  scancel --quiet --user=root 2>/dev/null || true
  for f in slurmd slurmctld munge/munged; do
    p=$(cat "$D/$f.pid" 2>/dev/null) || continue
    kill "$p" 2>/dev/null || continue
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
}
# One Slurm of this test at a time on this machine (fixed ports): a second
# run waits here instead of failing on the first one's daemons.
exec {LOCK_FD}>"${TMPDIR:-/tmp}/pslora-slurm-test.lock"
flock -w 900 "$LOCK_FD" || fail "another cli_slurm kept ${TMPDIR:-/tmp}/pslora-slurm-test.lock for 900 s"
trap stop_all EXIT
runuser -u munge -- munged --force --socket="$D/munge/munge.sock" --key-file="$D/munge/munge.key" \
  --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed" \
  || fail "munged did not start: $(tail -3 "$D/munge/munged.log" 2>/dev/null)"
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start: $(tail -3 "$D/slurmctld.log")"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start: $(tail -3 "$D/slurmd.log")"
for ((i = 0; i < 100; i++)); do
  [[ $(sinfo -h -n "$NODE" -o %t 2>/dev/null) == idle ]] && break
  sleep 0.2
done
((i < 100)) || fail "node $NODE not idle after 20 s: $(sinfo 2>&1 | tail -2); $(tail -3 "$D/slurmd.log")"
ok "slurmctld and slurmd up (one node, $CPUS CPUs), munged on its own socket"

# --- the tiny model, 1 server + 1 worker (2 tasks fit this node's CPUs)
TF=(--seq 32 --batch 4 --lr 3e-3 --targets "c_attn,c_proj,c_fc" --steps 24 --checkpoint-every 3 --keep-checkpoints 100)
t0=$SECONDS
mpi -np 2 "$PSLORA" train --model model --data data.bin "${TF[@]}" --threads 1 --out ref > ref.txt 2>&1 \
  || fail "plain mpirun: $(tail -3 ref.txt)"
echo "   plain mpirun: $((SECONDS - t0)) s"

# submit NAME [ENV=VALUE...]: sbatch deploy/pslora.sbatch with 2 tasks on the one node
# (the options override its #SBATCH lines); prints the job id
submit() {
  local name=$1; shift
  env "$@" MODEL="$S/model" DATA="$S/data.bin" OUT="$S/$name" PSLORA="$PSLORA" PSLORA_HOME="$HERE/.." \
    sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 --output="$S/$name.log" \
    --chdir="$S" "$SBATCH_SCRIPT" "${TF[@]}"
}
# finish JOBID LIMIT_S: wait until the job has left the queue
finish() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  fail "job $1 still queued after $2 s: $(squeue -j "$1" 2>&1 | tail -1)"
}

t0=$SECONDS
id=$(submit sb) || fail "sbatch refused the job"
finish "$id" 120
grep -q '^done: steps 24 ' sb.log || fail "sbatch job $id: no summary line: $(tail -5 sb.log)"
cmp ref/adapter_model.safetensors sb/adapter_model.safetensors || fail "sbatch job $id: adapter differs from plain mpirun"
ok "sbatch deploy/pslora.sbatch (job $id, $((SECONDS - t0)) s from submit to end): adapter byte-identical to plain mpirun"

# --- scancel mid-run, resubmit with RESUME=1
id=$(submit cancel PSLORA_TEST_SLOW_RANK=1 PSLORA_TEST_SLOW_MS=150) || fail "sbatch refused the job"
for ((i = 0; i < 600; i++)); do
  grep -q '"type":"step","step":7,' cancel/metrics.jsonl 2>/dev/null && break
  [ -n "$(squeue -h -j "$id")" ] || fail "job $id ended before scancel: $(tail -3 cancel.log)"
  sleep 0.05
done
((i < 600)) || fail "job $id: no step 7 within 30 s: $(tail -3 cancel.log)"
t0=$SECONDS
scancel "$id"
finish "$id" 30
! pgrep -f "$S/cancel( |$)" >/dev/null || fail "scancel: processes of job $id still running: $(pgrep -af "$S/cancel")"
[ ! -e cancel/adapter_model.safetensors ] || fail "scancel: the job finished before it was cancelled"
compgen -G "cancel/checkpoints/step-0000000[369]" >/dev/null || fail "scancel: no checkpoint left"
ok "scancel after step 7: job $id gone in $((SECONDS - t0)) s, nothing left running, newest checkpoint $(readlink cancel/checkpoints/latest || cat cancel/checkpoints/latest)"
t0=$SECONDS
id=$(submit cancel RESUME=1) || fail "sbatch refused the resumed job"
finish "$id" 120
grep -q '^done: steps 24 ' cancel.log || fail "resumed job $id: no summary line: $(tail -5 cancel.log)"
cmp ref/adapter_model.safetensors cancel/adapter_model.safetensors || fail "resumed job $id: adapter differs"
ok "resubmitted with RESUME=1 (job $id, $((SECONDS - t0)) s): adapter byte-identical to the uninterrupted run"

# --- srun --mpi=pmix instead of mpirun
srun --mpi=list 2>&1 | grep -q pmix || fail "srun --mpi=list has no pmix: $(srun --mpi=list 2>&1 | tr '\n' ' ')"
t0=$SECONDS
id=$(submit srun PSLORA_LAUNCH=srun) || fail "sbatch refused the srun job"
finish "$id" 120
grep -q '^done: steps 24 ' srun.log || fail "srun job $id: no summary line: $(tail -5 srun.log)"
cmp ref/adapter_model.safetensors srun/adapter_model.safetensors || fail "srun job $id: adapter differs from plain mpirun"
ok "PSLORA_LAUNCH=srun (srun --mpi=pmix, job $id, $((SECONDS - t0)) s): adapter byte-identical to plain mpirun"
echo "cli_slurm: all passed"
