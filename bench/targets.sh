#!/usr/bin/env bash
# targets.sh - the series behind docs/performance.md "Against the issue's
# targets" (issue 17), every output kept in OUTDIR:
#   cmp_auto.txt, cmp_fp32.txt   compare.sh -r 3 on GPT-2 124M r8 c_attn,
#                                bf16 (auto) and fp32 against PyTorch
#   llama_{auto,fp32,fp32_onednn}_{1,2}.txt, llama_auto_3.txt
#                                pslora bench on the SmolLM-135M shape, r8 on
#                                all seven maps, alternated, 2 runs each (3 of
#                                auto); peak_share.txt: the best of each
#                                configuration at the highest peak its runs
#                                measured (peak_share.sh)
#   llama_bf16_profile.txt, gpt2_bf16_profile.txt   --profile runs
# 2 threads, OMP_WAIT_POLICY=passive unless set (as compare.sh).  About 9
# minutes on a 2-core machine; run it with nothing else running.
#
#   bench/targets.sh OUTDIR        (PSLORA: the binary, default build/cli/pslora)
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "targets.sh: usage: bench/targets.sh OUTDIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
P=${PSLORA:-$here/../build/cli/pslora}
if [ ! -x "$P" ]; then
    echo "targets.sh: pslora binary not found: $P (set PSLORA)" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
L=(--arch llama --layers 30 --dim 576 --heads 9 --kv-heads 3 --intermediate 1536 --vocab 49152
   --batch 4 --seq 256 --rank 8 --alpha 16
   --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --threads 2 --steps 3 --warmup 1)
G=(--threads 2 --steps 3 --warmup 1)
date -u +%FT%TZ >"$out/start"
PSLORA=$P "$here/compare.sh" -r 3 -c auto -- "${G[@]}" >"$out/cmp_auto.txt" 2>&1
PSLORA=$P "$here/compare.sh" -r 3 -c fp32 -- "${G[@]}" >"$out/cmp_fp32.txt" 2>&1
for i in 1 2; do
    "$P" bench "${L[@]}" --compute auto >"$out/llama_auto_$i.txt" 2>&1
    "$P" bench "${L[@]}" --compute fp32 >"$out/llama_fp32_$i.txt" 2>&1
    "$P" bench "${L[@]}" --compute fp32 --fp32-matmul onednn >"$out/llama_fp32_onednn_$i.txt" 2>&1
done
"$P" bench "${L[@]}" --compute auto >"$out/llama_auto_3.txt" 2>&1
"$P" bench "${L[@]}" --compute bf16 --profile >"$out/llama_bf16_profile.txt" 2>&1
"$P" bench "${G[@]}" --compute bf16 --profile >"$out/gpt2_bf16_profile.txt" 2>&1
date -u +%FT%TZ >"$out/end"
for c in auto fp32 fp32_onednn; do
    echo "llama $c: $("$here/peak_share.sh" "$out"/llama_${c}_[0-9].txt)"
done >"$out/peak_share.txt"
# One line per file: what ran, how close to its peak, and how far apart its
# steps were (a wide spread: a run the host disturbed).
for f in "$out"/cmp_*.txt; do
    echo "$(basename "$f"): $(grep -E '^(pslora|ratio|ceiling)' "$f" | tr '\n' ' ')"
done
for f in "$out"/llama_*_[0-9].txt "$out"/*_profile.txt; do
    echo "$(basename "$f"): $(sed -n 's/^model GFLOP\/s .*; \([0-9.]*% of the measured peak [0-9.]*\)$/\1/p' "$f")," \
        "$(grep '^tokens/s' "$f"), steps $(sed -n 's/^step spread: .*(\(.*\))$/\1/p' "$f")"
done
cat "$out/peak_share.txt"
