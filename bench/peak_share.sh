#!/usr/bin/env bash
# peak_share.sh - the best of several `pslora bench` runs of one
# configuration, measured against the highest peak any of them measured:
#
#   bench/peak_share.sh RUN.txt...
#
# Each run prints its model FLOP per token, the FLOP-weighted peak of its
# products (measured just before its steps) and its tokens/s; its own
# "% of the measured peak" divides by that run's peak, which a busy moment
# can leave low (a run printed 86.7% against a peak of 342.9 GFLOP/s where
# its neighbours measured 409.5).  This prints the best tokens/s of the
# runs, and that best as a share of the highest peak of the runs, so a low
# peak cannot flatter the figure:
#
#   runs 3; best 542.9 tokens/s (FILE); highest peak 409.5 GFLOP/s; best at the highest peak: 80.1%
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "peak_share.sh: usage: bench/peak_share.sh RUN.txt..." >&2
    exit 2
fi
for f in "$@"; do
    if [ ! -r "$f" ]; then
        echo "peak_share.sh: $f: cannot read" >&2
        exit 2
    fi
done
awk '
function done_file() {
    if (flop == "" || peak == "" || tok == "") {
        printf "peak_share.sh: %s: not a pslora bench output (no FLOP/token, peak or tokens/s line)\n",
               file > "/dev/stderr"
        bad = 1
        exit 2
    }
    if (n++ == 0) {
        nf = flop
        nc = comp
    }
    if (flop != nf || comp != nc) {
        printf "peak_share.sh: %s: FLOP/token %s, compute %s, not %s, %s: another configuration\n",
               file, flop, comp, nf, nc > "/dev/stderr"
        bad = 1
        exit 2
    }
    if (tok + 0 > best + 0) { best = tok; bestf = file }
    if (peak + 0 > top + 0) top = peak
}
FNR == 1 { if (NR > 1) done_file(); file = FILENAME; flop = ""; peak = ""; tok = ""; comp = "" }
/^threads [0-9]+; compute /                  { comp = $4 }
/^FLOP\/token /                              { flop = $2 }
/^peak, FLOP-weighted over those products: / { peak = $6 }
/^tokens\/s /                                { tok = $2 }
END {
    if (bad) exit 2
    done_file()
    printf "runs %d; best %s tokens/s (%s); highest peak %s GFLOP/s; best at the highest peak: %.1f%%\n",
           n, best, bestf, top, 100 * best * nf / 1e9 / top
}' "$@"
