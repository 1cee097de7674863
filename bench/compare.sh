#!/usr/bin/env bash
# compare.sh - tokens/s of `pslora bench` against the PyTorch peer
# (bench/torch_peer.py) on the same configuration.
#
# The two programs run ALTERNATELY, ROUNDS times each (the machine may be
# shared, so neither gets all the quiet moments), and each side's best run
# counts.  Prints both figures, every round's figures, and pslora / torch.
#
#   bench/compare.sh [-r ROUNDS] [-p PSLORA] [-q SECS] [-c COMPUTE] [-m MATMUL] [--] FLAGS...
#       FLAGS: shape flags both programs share (--layers --dim --heads --vocab
#       --ctx --intermediate --batch --seq --rank --alpha --targets --threads
#       --steps --warmup --seed)
#   bench/compare.sh [-r ROUNDS] [-p PSLORA] [-q SECS] [-c LIST] --matrix [THREADS...]
#       the issue's table as markdown rows: tiny (4 layers, 256 dim, 4 heads,
#       vocab 256, batch 8 x 128) and GPT-2 124M (12, 768, 12, 50257, batch
#       4 x 256), LoRA r 8 on c_attn and r 16 on c_attn,c_proj,c_fc, at 1 and
#       2 threads (or the THREADS given)
#   -c COMPUTE: pslora's --compute (fp32, bf16 or auto); with --matrix a
#       comma-separated list, each a row (default fp32).  The peer runs in the
#       precision pslora computed in: fp32, or for bf16 (asked, or chosen by
#       auto) PyTorch's bf16 autocast (torch_peer.py --autocast).  pslora's
#       fp32 products take `pslora bench`'s default --fp32-matmul auto
#       (oneDNN on an AVX-512 CPU whose OpenBLAS runs AVX2 kernels); the
#       output names what ran ("fp32 onednn", "fp32 openblas", "bf16")
#   -m MATMUL: pslora's --fp32-matmul (openblas, onednn or auto, the
#       default), for its fp32 products; the peer does not get it
#   -q SECS: before each run, wait (at most SECS) until the machine is idle
#       (less than 10% of all CPUs busy over one second), for shared machines
#
# Beside the ratio, the ceiling ratio: what pslora / torch would be with
# pslora at 100% of the bf16 or fp32 peak its best run measured (its
# tokens/s / its % of peak, over torch's best).  A ratio target above it
# cannot be met on this CPU by any change to the step, only by a faster
# kernel for the products themselves.
#
# Environment: PSLORA (binary; else -p, else build/cli/pslora, else PATH),
# PEAK_SECONDS (pslora's per-product peak timing, default 0.5),
# TORCH_PEER (the peer script, run by /usr/bin/python3; default
# bench/torch_peer.py; the tests give a stand-in),
# GPT2_STEPS / GPT2_WARMUP for the matrix (default 3 / 1: a GPT-2 step takes
# seconds).  Both run with OMP_WAIT_POLICY=passive unless it is set: with
# GOMP's default spinning, a machine shared with other work slows pslora's
# many short parallel regions by up to 10x (measured, docs/performance.md).
# Both use the same OpenBLAS kernels: OpenBLAS 0.3.21 does not recognise some
# newer CPUs and falls back to its SSE3 kernels; pslora then re-executes
# itself with OPENBLAS_CORETYPE set (common/base/cpu.h), torch does not, so the
# peer gets the core pslora reports unless OPENBLAS_CORETYPE is given.
set -euo pipefail
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

here=$(cd "$(dirname "$0")" && pwd)
rounds=3
quiet=0
pslora=${PSLORA:-}
matrix=0
computes=fp32
fp32_matmul=auto
while [ $# -gt 0 ]; do
    case $1 in
    -r) rounds=$2; shift 2 ;;
    -p) pslora=$2; shift 2 ;;
    -q) quiet=$2; shift 2 ;;
    -c) computes=$2; shift 2 ;;
    -m) fp32_matmul=$2; shift 2 ;;
    --matrix) matrix=1; shift ;;
    --) shift; break ;;
    *) break ;;
    esac
done
IFS=, read -ra compute_list <<<"$computes"
for c in "${compute_list[@]}"; do
    case $c in fp32 | bf16 | auto) ;;
    *) echo "compare.sh: -c: expected fp32, bf16 or auto, got '$c'" >&2; exit 2 ;;
    esac
done
case $fp32_matmul in openblas | onednn | auto) ;;
*) echo "compare.sh: -m: expected openblas, onednn or auto, got '$fp32_matmul'" >&2; exit 2 ;;
esac
if [ $matrix -eq 0 ] && [ ${#compute_list[@]} -ne 1 ]; then
    echo "compare.sh: -c: a list needs --matrix" >&2
    exit 2
fi
if [ -z "$pslora" ]; then
    if [ -x "$here/../build/cli/pslora" ]; then pslora=$here/../build/cli/pslora
    else pslora=$(command -v pslora || true); fi
fi
if [ -z "$pslora" ] || [ ! -x "$pslora" ]; then
    echo "compare.sh: pslora binary not found (set PSLORA or -p)" >&2
    exit 2
fi
peer=${TORCH_PEER:-$here/torch_peer.py}   # TORCH_PEER: for the tests' stand-in
peak=${PEAK_SECONDS:-0.5}

# Busy share of all CPUs over one second, in percent (from /proc/stat).
busy_pct() {
    local a b
    read -ra a </proc/stat; sleep 1; read -ra b </proc/stat
    local tot=0 idle=$(( (b[4] + b[5]) - (a[4] + a[5]) ))
    for i in 1 2 3 4 5 6 7 8; do tot=$(( tot + b[i] - a[i] )); done
    echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}

# With -q: waits until the machine is idle, at most $quiet seconds.
wait_quiet() {
    local waited=0
    while [ "$quiet" -gt 0 ] && [ $waited -lt "$quiet" ] && [ "$(busy_pct)" -ge 10 ]; do
        waited=$((waited + 1))
    done
}

# Runs one program; prints its tokens/s (the number on its last line) and
# keeps the whole output in $out_file.  Fails with the output's tail.
out_file=$(mktemp)
trap 'rm -f "$out_file"' EXIT
tokens_of() {
    local out rc=0
    wait_quiet
    out=$("$@" 2>&1) || rc=$?
    printf '%s\n' "$out" >"$out_file"
    local line
    line=$(tail -n 1 <<<"$out")
    if [ $rc -ne 0 ] || [[ ! $line =~ ^tokens/s\ ([0-9.]+)$ ]]; then
        echo "compare.sh: '$*' failed (status $rc):" >&2
        tail -n 5 <<<"$out" >&2
        exit 1
    fi
    echo "${BASH_REMATCH[1]}"
}

# max of two decimals
fmax() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 >= b + 0) ? a : b }'; }

# compare FLAGS...: sets best_p, best_t, pct (pslora's % of peak in its best run)
# and ceil (that run's tokens/s at 100% of its peak)
compare() {
    best_p=0 best_t=0 pct='?' ceil='?' core= used= label=
    local runs_p="" runs_t="" p t
    for ((i = 1; i <= rounds; i++)); do
        p=$(tokens_of "$pslora" bench "$@" --compute "$compute" --fp32-matmul "$fp32_matmul" \
            --peak-seconds "$peak")
        if awk -v a="$p" -v b="$best_p" 'BEGIN { exit !(a + 0 > b + 0) }'; then
            pct=$(sed -n 's/.*; \([0-9.]*\)% of the measured peak.*/\1/p' "$out_file")
            ceil=$(awk -v p="$p" -v c="$pct" 'BEGIN { if (c > 0) printf "%.1f", 100 * p / c; else print "?" }')
        fi
        best_p=$(fmax "$p" "$best_p")
        core=${OPENBLAS_CORETYPE:-$(sed -n 's/.*, core \([A-Za-z0-9]*\)$/\1/p' "$out_file")}
        used=$(sed -n 's/^threads [0-9]*; compute \(fp32\|bf16\) .*/\1/p' "$out_file")
        [ -n "$used" ] || { echo "compare.sh: no compute line in pslora's output" >&2; exit 1; }
        label=$used
        [ "$used" != fp32 ] || label="fp32 $(sed -n 's/^fp32 matmul \([a-z]*\) .*/\1/p' "$out_file")"
        local peer_flags=()
        [ "$used" = fp32 ] || peer_flags=(--autocast)
        t=$(OPENBLAS_CORETYPE=$core tokens_of /usr/bin/python3 "$peer" "$@" "${peer_flags[@]}")
        best_t=$(fmax "$t" "$best_t")
        runs_p="$runs_p $p" runs_t="$runs_t $t"
    done
    peer_prec=fp32
    [ "$used" = fp32 ] || peer_prec="bf16 autocast"
    echo "# pslora ($label) runs:$runs_p | torch ($peer_prec) runs:$runs_t | OpenBLAS core $core" >&2
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "?") print "?"; else printf "%.2f", a / b }'; }

if [ $matrix -eq 0 ]; then
    compute=$computes
    compare "$@"
    echo "pslora tokens/s $best_p (best of $rounds; ${pct}% of peak; $label)"
    echo "torch  tokens/s $best_t (best of $rounds; $peer_prec)"
    echo "ratio $(ratio "$best_p" "$best_t")"
    echo "ceiling ratio $(ratio "$ceil" "$best_t") (pslora at 100% of its measured peak: $ceil tokens/s)"
    exit 0
fi

threads=("$@")
[ ${#threads[@]} -gt 0 ] || threads=(1 2)
tiny="--layers 4 --dim 256 --heads 4 --vocab 256 --batch 8 --seq 128"
gpt2="--layers 12 --dim 768 --heads 12 --vocab 50257 --batch 4 --seq 256"
gpt2_steps="--steps ${GPT2_STEPS:-3} --warmup ${GPT2_WARMUP:-1}"
echo "| model | adapter | threads | compute | pslora tok/s | torch | torch tok/s | pslora / torch | pslora % of peak | ceiling ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for model in tiny gpt2; do
    for ad in "r8 c_attn|--rank 8 --alpha 16 --targets c_attn" \
              "r16 c_attn,c_proj,c_fc|--rank 16 --alpha 32 --targets c_attn,c_proj,c_fc"; do
        for th in "${threads[@]}"; do
          for compute in "${compute_list[@]}"; do
            shape=$tiny extra=""
            if [ $model = gpt2 ]; then shape=$gpt2 extra=$gpt2_steps; fi
            # shellcheck disable=SC2086  # the flag strings are meant to split
            compare $shape ${ad#*|} --threads "$th" $extra
            echo "| $model | ${ad%%|*} | $th | $compute ($label) | $best_p | $peer_prec | $best_t | $(ratio "$best_p" "$best_t") | $pct | $(ratio "$ceil" "$best_t") |"
          done
        done
    done
done
