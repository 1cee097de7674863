#!/usr/bin/env bash
# cli_analyze.sh - `pslora analyze` on adapters that `pslora train` made on
# the tiny model: the --json layout of docs/analysis.md and its invariants
# (checked by python3's json module), --model, --plot PNGs, and the refusals.
source "$(dirname "$0")/lib.sh"
make_tiny
for r in 4 8; do
  "$PSLORA" train --model model --data data.bin --rank $r --steps 6 --batch 2 --seq 32 --lr 1e-2 \
    --targets c_attn,c_proj --out a$r >/dev/null 2>&1 || fail "train r $r"
done
"$PSLORA" train --model model --data data.bin --rank 4 --steps 6 --batch 2 --seq 32 --lr 1e-2 \
  --targets c_attn --out only_attn >/dev/null 2>&1 || fail "train c_attn only"

"$PSLORA" analyze a4 a8 --model model --json > both.json || fail "analyze a4 a8 --json"
"$PSLORA" analyze a4 a4 --json > same.json || fail "analyze a4 a4 --json"
python3 - both.json same.json <<'PY' || fail "JSON layout or invariants"
import json, sys
both = json.load(open(sys.argv[1])); same = json.load(open(sys.argv[2]))
mods = ["transformer.h.%d.%s" % (l, m) for l in (0, 1) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_proj")]
shapes = {"attn.c_attn": (96, 32), "attn.c_proj": (32, 32), "mlp.c_proj": (32, 128)}
assert set(both) >= {"matrices", "similarity", "amplification"}, list(both)
mats = both["matrices"]
assert len(mats) == 12, len(mats)
for m in mats:
    for k in ("name", "singular_values", "frobenius", "stable_rank", "energy_rank_90", "energy_rank_99"):
        assert k in m, (k, m)
    assert m["name"] in mods, m["name"]
    sv = m["singular_values"]
    out, inn = shapes[m["name"].split(".", 3)[3]]
    r = 4 if m["adapter"] == 1 else 8
    assert len(sv) == min(r, out, inn), (m["name"], len(sv))
    assert all(a >= b for a, b in zip(sv, sv[1:])), sv          # decreasing
    assert abs(sum(s * s for s in sv) ** 0.5 - m["frobenius"]) < 1e-9 * max(1, m["frobenius"])
    assert abs(m["stable_rank"] - sum(s * s for s in sv) / sv[0] ** 2) < 1e-9
    assert 1 <= m["energy_rank_90"] <= m["energy_rank_99"] <= len(sv)
assert [m["name"] for m in mats[:6]] == sorted(mods, key=lambda s: (int(s.split(".")[2]), s)), "natural order"
sims = both["similarity"]
assert len(sims) == 6
for s in sims:
    phi, left = s["phi"], s["phi_left"]
    out, inn = shapes[s["name"].split(".", 3)[3]]
    assert len(phi) == min(4, inn) and all(len(row) == min(8, inn) for row in phi)
    assert len(left) == min(4, inn, out) and all(len(row) == min(8, inn, out) for row in left)
    assert all(-1e-12 <= x <= 1 + 1e-9 for row in phi + left for x in row)
amp = both["amplification"]
assert len(amp) == 12
for a in amp:
    assert 0 <= a["proj_delta"] <= a["w_frobenius"] + 1e-9 and 0 <= a["proj_w_top"] <= a["w_frobenius"] + 1e-9
    assert a["proj_w_top"] + 1e-9 >= a["proj_delta"] and a["proj_w_top"] + 1e-9 >= a["proj_random"], a
for s in same["similarity"]:
    k = len(s["phi"])
    assert all(abs(s["phi"][i][i] - 1) < 1e-9 for i in range(k)), s["phi"]
    assert all(abs(s["phi_left"][i][i] - 1) < 1e-9 for i in range(len(s["phi_left"])))
assert same["amplification"] == []
print("ok: JSON layout and invariants")
PY
ok "analyze --json: 12 matrices, 6 similarities, 12 amplification rows"

"$PSLORA" analyze a4 > text.txt || fail "analyze a4 (text)"
grep -q "transformer.h.1.mlp.c_proj" text.txt && grep -q "by module type" text.txt || fail "text report: $(cat text.txt)"
ok "text report"

if command -v gnuplot >/dev/null; then
  "$PSLORA" analyze a4 a8 --plot plots >/dev/null || fail "--plot"
  n=$(ls plots/phi_*.png | wc -l)
  [ "$n" = 6 ] || fail "--plot: $n PNGs, expected 6"
  for f in plots/phi_*.png; do
    [ "$(head -c 4 "$f" | tail -c 3)" = PNG ] || fail "$f is not a PNG"
  done
  ok "--plot: 6 PNG heatmaps"
else
  echo "note: gnuplot not installed: --plot not checked (deploy/setup installs gnuplot-nox)"
fi
GNUPLOT=/nonexistent/gnuplot expect_fail 1 'pslora analyze: --plot: .*failed' "$PSLORA" analyze a4 a8 --plot plots2
[ ! -s out.txt ] || fail "a failed --plot printed a report"

# refusals: one line, 1 for files, 2 for usage
"$PSLORA" init --layers 2 --dim 48 --heads 4 --vocab 256 --ctx 64 --seed 3 --out model48 >/dev/null
mkdir -p bad && cp a4/adapter_config.json bad/ && head -c 100 a4/adapter_model.safetensors > bad/adapter_model.safetensors
expect_fail 1 'nonexistent/adapter_config.json' "$PSLORA" analyze nonexistent
expect_fail 1 'bad/adapter_model.safetensors' "$PSLORA" analyze bad
expect_fail 1 'adapt different modules: transformer.h.0.attn.c_proj only in a4' "$PSLORA" analyze a4 only_attn
expect_fail 1 'model48: module transformer.h.0.attn.c_attn is 144 x 48 \(out x in\), the adapter.s is 96 x 32' \
  "$PSLORA" analyze a4 --model model48
expect_fail 2 'missing ADAPTER' "$PSLORA" analyze
expect_fail 2 '--plot: needs two adapters' "$PSLORA" analyze a4 --plot p
expect_fail 2 'unknown|unexpected|too many' "$PSLORA" analyze a4 a8 a4
echo "cli_analyze: all passed"
