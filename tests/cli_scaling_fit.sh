#!/usr/bin/env bash
# bench/scaling_fit.py (the step-time model of docs/scaling.md), on CSVs made
# here by awk from known constants over bench/scaling.sh's 54-point grid:
#  - the fit gives back the constants it was made from, and 0.0% error;
#  - made with a = 0 (every message at the busiest link's pace), the fit
#    finds a = 0, not the peer-order term;
#  - a prediction equals the model computed here by hand, with GPT-2 124M's
#    r 16 adapter of 2 359 296 floats (what `pslora bench` reports);
#  - bad input: one line, exit 2 (usage) or 1.
# Needs numpy (Debian: python3-numpy, installed by .ci/run).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
FIT=$HERE/../bench/scaling_fit.py

# synth L a b c m: the CSV of those constants (c in s/byte, m in s);
# t_compute_max 0.05 s, A per payload as measured, bw in Mbit/s; on the
# measuring machine the CPU term is c * W * A (2 shared cores).
synth() {
  awk -v L="$1" -v a="$2" -v b="$3" -v c="$4" -v m="$5" 'BEGIN {
    print "bw_mbit,workers,servers,payload,params,rep,steps,bytes_pushed,bytes_pulled,t_step,t_compute,t_compute_max,t_exchange,cpu"
    split("r8 r64 full", P, " "); A["r8"] = 131264; A["r64"] = 1048790; A["full"] = 1573000
    split("10 100 1000", B, " "); split("1 2 4", Ws, " ")
    for (p = 1; p <= 3; p++) for (i = 1; i <= 3; i++) for (S = 1; S <= 2; S++) for (j = 1; j <= 3; j++) {
      W = Ws[j]; a_ = A[P[p]]; bw = B[i] * 1e6 / 8; busy = (W / S > 1) ? W / S : 1
      x = L + (a * W + b * busy) * a_ / bw + c * W * a_ + m * (W + S)
      printf "%d,%d,%d,%s,0,1,6,%d,%d,%.9g,0.05,0.05,%.9g,test\n", B[i], W, S, P[p], W * a_, W * a_, 0.05 + x, x
    }
  }'
}

# --- the constants come back
synth 0.005 1.2 0.6 2e-8 0.003 > known.csv
[ "$(grep -c . known.csv)" = 55 ] || fail "synth: $(grep -c . known.csv) lines, want 55"
"$FIT" known.csv --t-gpt2 7.5 > fit.txt 2>err.txt || fail "fit: $(cat err.txt)"
line=$(sed -n '2p' fit.txt)
want='L = 5.00 ms a step; a = 1.200, b = 0.600 (link bytes per payload byte: in peer order, at the busiest link); c = 20.00 ns per byte pushed (50 MB/s); m = 3.00 ms per message'
[ "$line" = "$want" ] || fail "constants: '$line', want '$want'"
grep -q '^t_step: median |error| 0.0%, max 0.0%; t_exchange alone: median 0.0%, max 0.0% (54 points)' fit.txt \
  || fail "error line: $(sed -n 3p fit.txt)"
ok "the fit gives back L a b c m of a CSV made from them, with 0.0% error on 54 points"

# --- the busiest-link model is told from the peer-order one
synth 0.002 0 2.1 1e-8 0.001 > busy.csv
"$FIT" busy.csv --t-gpt2 7.5 > busy.txt || fail "fit busy"
[[ $(sed -n 2p busy.txt) == 'L = 2.00 ms a step; a = 0.000, b = 2.100 '* ]] \
  || fail "made with a = 0: $(sed -n 2p busy.txt)"
ok "made with every message at the busiest link's pace: a = 0.000, b = 2.100"

# --- a prediction by hand: GPT-2 124M r16 (A = 4 x 2359296 bytes), 10 Gbit/s,
# W = 8, S = 1, t_compute 7.5 s, the constants of known.csv (c * W * A / S on
# a cluster): tokens/s = 1024 * 8 / t_step.
hand=$(awk 'BEGIN { A = 4 * 2359296; bw = 10e9 / 8; W = 8; S = 1
  t = 7.5 + 0.005 + (1.2 * W + 0.6 * W) * A / bw + 2e-8 * W * A / S + 0.003 * (W + S)
  printf "%.0f (%.0f%%)", 1024 * W / t, 100 * 7.5 / t }')
got=$(awk -F' \\| ' '$1 == "| GPT-2 124M" && $2 == "r16" && $5 == 10 && $6 == 8 {print $8}' fit.txt)
[[ -n $got && $got == "$hand" ]] || fail "GPT-2 r16 10 Gbit/s W 8 S 1: '$got', by hand '$hand'"
grep -q '| GPT-2 124M | r16 | 9.4 | 7.5 |' fit.txt || fail "GPT-2 r16: A is not 9.4 MB"
ok "prediction GPT-2 124M r16, 10 Gbit/s, 8 workers, 1 server: $got, as by hand"

# --- bad input
expect_fail 1 '^scaling_fit.py: nothing.csv: No such file or directory$' "$FIT" nothing.csv --t-gpt2 1
expect_fail 2 '^scaling_fit.py: --t-gpt2: must be positive$' "$FIT" known.csv --t-gpt2 0
expect_fail 2 '^scaling_fit.py: --load-factor: at least 1$' "$FIT" known.csv --t-gpt2 1 --load-factor 0.5
head -1 known.csv > short.csv
expect_fail 1 '^scaling_fit.py: short.csv: not a bench/scaling.sh CSV' "$FIT" short.csv --t-gpt2 1
sed '3s/,0.05,0.05,/,0.05,x,/' known.csv > nan.csv
expect_fail 1 '^scaling_fit.py: nan.csv: line 3: a field that is not a number$' "$FIT" nan.csv --t-gpt2 1
head -5 known.csv > few.csv
expect_fail 1 '^scaling_fit.py: few.csv: 4 points; the fit needs at least 6$' "$FIT" few.csv --t-gpt2 1
echo "cli_scaling_fit: all passed"
