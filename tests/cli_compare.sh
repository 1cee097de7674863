#!/usr/bin/env bash
# bench/compare.sh refuses bad flags with one line before running anything
# (its runs need python3-torch, which the tests do not install), and with a
# stand-in peer (TORCH_PEER: a script printing a fixed tokens/s) its ratio
# and ceiling ratio follow from the figures it prints.
. "$(dirname "$0")/lib.sh"
CMP=$(cd "$(dirname "$0")/.." && pwd)/bench/compare.sh
bash -n "$CMP" || fail "bash -n bench/compare.sh"
expect_fail 2 "compare.sh: -c: expected fp32, bf16 or auto, got 'fp16'" "$CMP" -p "$PSLORA" -c fp16 -- --threads 1
expect_fail 2 "compare.sh: -c: a list needs --matrix" "$CMP" -p "$PSLORA" -c fp32,bf16 -- --threads 1
expect_fail 2 "compare.sh: -m: expected openblas, onednn or auto, got 'mkl'" "$CMP" -p "$PSLORA" -m mkl -- --threads 1
expect_fail 2 "compare.sh: pslora binary not found" "$CMP" -p /nonexistent -- --threads 1
# bench/targets.sh (the issue-17 series, minutes long: only its refusals here)
TGT=$(dirname "$CMP")/targets.sh
bash -n "$TGT" || fail "bash -n bench/targets.sh"
expect_fail 2 "^targets.sh: usage: bench/targets.sh OUTDIR$" "$TGT"
expect_fail 2 "^targets.sh: pslora binary not found: /nonexistent \\(set PSLORA\\)$" \
  env PSLORA=/nonexistent "$TGT" out

# bench/peak_share.sh: the best run at the highest peak of the runs.  Two
# made-up runs of 1e9 FLOP per token: 100 tokens/s against a peak of 200
# GFLOP/s (50%), 120 against 150 (80% of its own low peak): the best is
# 120 tokens/s = 120 GFLOP/s, 60.0% of the highest peak, 200.
PS=$(dirname "$CMP")/peak_share.sh
run_txt() {   # file tokens/s peak compute
  printf 'FLOP/token 1e+09 (forward 5e+08, backward 5e+08): matrix products only
threads 2; compute %s (requested)
peak, FLOP-weighted over those products: %s GFLOP/s
tokens/s %s
' \
    "$4" "$3" "$2" >"$1"
}
run_txt r1.txt 100.0 200.0 bf16
run_txt r2.txt 120.0 150.0 bf16
"$PS" r1.txt r2.txt >ps.txt || fail "peak_share.sh: $(cat ps.txt)"
grep -qx "runs 2; best 120.0 tokens/s (r2.txt); highest peak 200.0 GFLOP/s; best at the highest peak: 60.0%" ps.txt ||
  fail "peak_share.sh printed: $(cat ps.txt)"
run_txt r3.txt 130.0 200.0 fp32
expect_fail 2 "^peak_share.sh: r3.txt: FLOP/token 1e\\+09, compute fp32, not 1e\\+09, bf16: another configuration$" \
  "$PS" r1.txt r3.txt
grep -v '^peak' r1.txt >r4.txt
expect_fail 2 "^peak_share.sh: r4.txt: not a pslora bench output \\(no FLOP/token, peak or tokens/s line\\)$" \
  "$PS" r1.txt r4.txt
expect_fail 2 "^peak_share.sh: nope.txt: cannot read$" "$PS" r1.txt nope.txt
expect_fail 2 "^peak_share.sh: usage: bench/peak_share.sh RUN.txt...$" "$PS"
ok "peak_share.sh: $(cat ps.txt)"

# A real pslora run on a tiny shape against a peer fixed at 40 tokens/s.
cat > peer.py <<'EOF2'
print("tokens/s 40.0")
EOF2
TORCH_PEER=$PWD/peer.py PEAK_SECONDS=0.01 "$CMP" -r 2 -p "$PSLORA" -c fp32 -- --layers 1 --dim 64 \
  --heads 2 --vocab 256 --batch 2 --seq 32 --steps 1 --warmup 0 --threads 1 >cmp.txt 2>cmp_err.txt ||
  fail "compare.sh with a stand-in peer: $(cat cmp_err.txt)"
p=$(sed -n 's/^pslora tokens\/s \([0-9.]*\) (best of 2; \([0-9.]*\)% of peak; fp32 [a-z]*)$/\1/p' cmp.txt)
pct=$(sed -n 's/^pslora tokens\/s [0-9.]* (best of 2; \([0-9.]*\)% of peak; .*/\1/p' cmp.txt)
[ -n "$p" ] && [ -n "$pct" ] || fail "no pslora line in: $(cat cmp.txt)"
grep -qx "torch  tokens/s 40.0 (best of 2; fp32)" cmp.txt || fail "no peer line in: $(cat cmp.txt)"
want=$(awk -v p="$p" 'BEGIN { printf "ratio %.2f", p / 40 }')
grep -qx "$want" cmp.txt || fail "expected '$want' in: $(cat cmp.txt)"
ceil=$(awk -v p="$p" -v c="$pct" 'BEGIN { printf "%.1f", 100 * p / c }')
want=$(awk -v c="$ceil" 'BEGIN { printf "ceiling ratio %.2f", c / 40 }')
grep -qx "$want (pslora at 100% of its measured peak: $ceil tokens/s)" cmp.txt ||
  fail "expected '$want' in: $(cat cmp.txt)"
ok "ratio and ceiling ratio: $(tail -2 cmp.txt | tr '\n' ' ')"
echo "cli_compare: all passed"
