# shellcheck shell=bash
# tests/netns/netns.sh - a cluster of "hosts" on this machine, for tests
# (sourced, not run).  Each host is a network namespace with its own address
# on a private bridge; the launcher (mpirun, in the root namespace) has the
# bridge's first address.  No default route anywhere: every host reaches only
# the bridge's /24, so no test traffic can leave it.
#
#   nn_require_root                 fail unless root with CAP_NET_ADMIN
#   nn_up TAG NET N                 N hosts on 10.NET.0.0/24 (NET 1..254)
#   nn_hostfile FILE I...           an Open MPI hostfile of hosts I... (slots=1)
#   nn_run_args                     sets NN_RUN: deploy/pslora-run's options for
#                                   this cluster (agent, TCP on the bridge's subnet)
#   nn_limit I RATE                 tc tbf at RATE (e.g. 100mbit) both ways on host I's link
#   nn_cut I / nn_mend I            take host I's link down / up
#   nn_bytes I                      "TX RX" byte counters of host I's link, seen
#                                   from the bridge: TX = to the host, RX = from it
#   nn_track PID                    nn_down also ends PID and the processes under it
#   nn_pids I                       the processes running in host I
#   nn_down                         kill everything in the hosts, remove the
#                                   namespaces, links and bridge (idempotent; nn_up
#                                   installs it as the EXIT trap)
#
# Names: bridge plTAGbr, namespace plTAGhI, host-side link plTAGvI (TAG short,
# so that the names stay under the 15-character limit of interfaces); the
# host's own end is eth0 inside its namespace.  Host I has 10.NET.0.(10+I),
# the launcher 10.NET.0.1.  NN_ADDR[I] and NN_NS[I] (I from 1) name them.
NN_TRACKED=()
NN_AGENT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/agent

nn_fail() { echo "FAIL: $*" >&2; exit 1; }

# CAP_NET_ADMIN is bit 12 of the effective capability set.
nn_require_root() {
  local eff
  [ "$(id -u)" = 0 ] || nn_fail "$(basename "$0") builds network namespaces: run it as root (uid $(id -u) here)"
  eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
  (( (0x$eff >> 12) & 1 )) || nn_fail "$(basename "$0") needs CAP_NET_ADMIN (CapEff $eff lacks it)"
  command -v ip >/dev/null || nn_fail "no 'ip' command (package iproute2)"
  command -v tc >/dev/null || nn_fail "no 'tc' command (package iproute2)"
}

nn_up() {
  NN_TAG=$1 NN_NET=$2 NN_N=$3
  [[ $NN_TAG =~ ^[a-z0-9]{1,4}$ ]] || nn_fail "nn_up: tag '$NN_TAG': 1-4 lowercase letters or digits"
  ((NN_NET >= 1 && NN_NET <= 254 && NN_N >= 1 && NN_N <= 20)) || nn_fail "nn_up: net $NN_NET, $NN_N hosts"
  NN_BR=pl${NN_TAG}br NN_SUBNET=10.$NN_NET.0.0/24 NN_LAUNCHER=10.$NN_NET.0.1
  NN_MAP=${SCRATCH:?}/netns.map
  # One cluster of a tag at a time on this machine: a second run (another
  # build's ctest, say) waits here instead of tearing this one down (two
  # runs at once broke each other's namespaces).  The lock goes with the
  # test's process and the hosts' processes nn_down ends.
  exec {NN_LOCK_FD}>"${TMPDIR:-/tmp}/pslora-netns-$NN_TAG.lock"
  flock -w 900 "$NN_LOCK_FD" || nn_fail "nn_up: another run kept the '$NN_TAG' cluster for 900 s (${TMPDIR:-/tmp}/pslora-netns-$NN_TAG.lock)"
  trap nn_down EXIT
  nn_down   # what a killed earlier run may have left
  ip link add "$NN_BR" type bridge || nn_fail "cannot create bridge $NN_BR"
  ip addr add "$NN_LAUNCHER/24" dev "$NN_BR"
  ip link set "$NN_BR" up
  : > "$NN_MAP"
  local i ns v
  for ((i = 1; i <= NN_N; i++)); do
    ns=pl${NN_TAG}h$i v=pl${NN_TAG}v$i
    NN_NS[i]=$ns NN_ADDR[i]=10.$NN_NET.0.$((10 + i)) NN_LINK[i]=$v
    ip netns add "$ns" || nn_fail "cannot create namespace $ns"
    ip link add "$v" type veth peer name "pl${NN_TAG}e$i"
    ip link set "pl${NN_TAG}e$i" netns "$ns"
    ip -n "$ns" link set "pl${NN_TAG}e$i" name eth0
    ip -n "$ns" addr add "${NN_ADDR[i]}/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip link set "$v" master "$NN_BR"
    ip link set "$v" up
    echo "${NN_ADDR[i]} $ns" >> "$NN_MAP"
  done
  export PSLORA_NETNS_MAP=$NN_MAP
  # every host reaches the launcher: a TCP connection to a closed port of
  # 10.NET.0.1 is refused at once when the path works (a fresh link may take
  # a moment: up to 20 tries, 3 s each at most)
  local t
  for ((i = 1; i <= NN_N; i++)); do
    for ((t = 0; t < 20; t++)); do
      [[ $(timeout 3 ip netns exec "${NN_NS[i]}" bash -c "exec 3<>/dev/tcp/$NN_LAUNCHER/9" 2>&1) \
        == *'Connection refused'* ]] && break
      sleep 0.2
    done
    ((t < 20)) || nn_fail "host ${NN_ADDR[i]} (${NN_NS[i]}) cannot reach $NN_LAUNCHER on $NN_BR"
  done
}

nn_hostfile() {
  local f=$1 i; shift
  : > "$f"
  for i in "$@"; do echo "${NN_ADDR[i]} slots=1" >> "$f"; done
}

# Open MPI across the namespaces: its rsh launcher with our agent instead of
# ssh (pslora-run adds plm_rsh_no_tree_spawn: mpirun starts every daemon
# itself), all traffic on the bridge's subnet, and TCP between all ranks
# (every namespace has the same hostname, so Open MPI would otherwise take
# them for one node and pick shared memory).
# shellcheck disable=SC2034 # used by the sourcing test
nn_run_args() {
  NN_RUN=(--rsh-agent "$NN_AGENT" --transport tcp --iface "$NN_SUBNET")
}

nn_limit() {
  local v=${NN_LINK[$1]} ns=${NN_NS[$1]}
  tc qdisc replace dev "$v" root tbf rate "$2" burst 64kbit latency 100ms
  tc -n "$ns" qdisc replace dev eth0 root tbf rate "$2" burst 64kbit latency 100ms
}

nn_cut() { ip link set "${NN_LINK[$1]}" down; }
nn_mend() { ip link set "${NN_LINK[$1]}" up; }

nn_bytes() {
  local d=/sys/class/net/${NN_LINK[$1]}/statistics
  echo "$(cat "$d/tx_bytes") $(cat "$d/rx_bytes")"
}

nn_track() { NN_TRACKED+=("$1"); }

# nn_tree PID: PID and every process below it.
nn_tree() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1" 2>/dev/null || true); do nn_tree "$c"; done
}

nn_pids() { ip netns pids "${NN_NS[$1]}" 2>/dev/null || true; }

nn_down() {
  local ns p i
  [ -n "${NN_TAG:-}" ] || return 0
  for p in "${NN_TRACKED[@]}"; do
    # shellcheck disable=SC2046 # one pid a word
    kill -9 $(nn_tree "$p") 2>/dev/null || true
  done
  NN_TRACKED=()
  for ns in $(ip netns list 2>/dev/null | awk -v t="pl${NN_TAG}h" 'index($1, t) == 1 {print $1}'); do
    # twice, a second apart at most: a process may fork while we kill
    for i in 1 2; do
      p=$(ip netns pids "$ns" 2>/dev/null || true)
      [ -z "$p" ] && break
      kill -9 $p 2>/dev/null || true
      sleep 0.2
    done
    ip netns del "$ns" 2>/dev/null || true
  done
  for p in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
             | grep -E "^pl${NN_TAG}(v[0-9]+|br)$" || true); do
    ip link del "$p" 2>/dev/null || true
  done
  rm -rf "${NN_MAP%/*}"/tmp-pl"${NN_TAG}"h*   # the hosts' own TMPDIRs (tests/netns/agent)
}
