#!/usr/bin/python3
"""bench/scaling_fit.py - fit the BSP step-time model of docs/scaling.md to
the rows of bench/scaling.sh, print the constants and the model's error on
every measured point, and predict throughput for larger clusters.

  bench/scaling_fit.py CSV [--t-gpt2 SECONDS] [--pred OUT.dat] [--md OUT.md]

The model (all sizes in bytes, bw in bytes/s, A = the bytes one worker pushes
per step, the same it pulls):

  t_step(W, S) = t_compute + t_exchange
  t_exchange   = L + (a * W + b * max(1, W/S)) * A / bw   (push + pull on the wire)
                   + c * W * A / S                        (encode, decode, sum)
                   + m * (W + S)                          (per message)

The busiest link carries max(W*A/S, A) one way in the push phase (a server's
link takes W*A/S, a worker's sends A) and the same the other way in the pull
phase, and the phases do not overlap under BSP: a = 0, b = 2 (times the
bytes tbf counts per payload byte).  But before tp_batch (common/ps/transport.h)
a server received the W pushes in worker-rank order (tp_recv of rank S+w,
then the next) and a worker the S updates in server order, and Open MPI
moves the bulk of a message (past its 64 KiB eager part) only once its
receive is posted: all servers took worker 1's push, then worker 2's; all
workers took server 0's update, then server 1's.  Each phase then took
W*A/bw whatever S: a = 2, b = 0.  Now all of a step's receives are posted
at once.
a and b are fitted, so the data say which (messages under the eager limit
move at once, at the busiest link's pace); the predictions are given as
built and with a = 0, b = a + b (receives posted for all peers at once).

CPU per byte: on this machine every rank shares the same 2 cores, so the
encoding, decoding and summing of all W pushes and updates cost c * W * A
whatever S (that is the term fitted); on a cluster each server has its own
host and the servers' share is c * W * A / S, which the predictions use
(all of c charged to the servers: an upper bound, the workers' encoding runs
in parallel).  m: a server takes W messages one after the other and a worker
S (tp_recv polls with a back-off sleep of up to 10 ms).

L, a, b, c, m >= 0 are fitted by least squares on the measured t_exchange
(time_step - time_compute_max, medians per point), weighted by 1/t
(relative error), since the points span three decades.

t_compute is measured (time_compute_max of the same run): on this 2-core
machine W workers share the cores, so compute is not a constant here; on a
cluster each worker has its own cores and t_compute is one worker's.

Predictions: one worker = one batch of --tokens-per-worker tokens per step,
t_compute = --t-gpt2 for GPT-2 124M (measured with `pslora bench` on this
machine) and scaled by forward+backward FLOPs for the 7B Llama shape.
Needs numpy (Debian: python3-numpy).
"""
import argparse
import csv
import sys

import numpy as np

MBIT = 1e6 / 8  # bytes/s per Mbit/s
EAGER = 65536   # Open MPI's btl_tcp_eager_limit (ompi_info --param btl tcp --level 9)


def die(msg, code=1):
    print(f"scaling_fit.py: {msg}", file=sys.stderr)
    sys.exit(code)


def read_rows(path):
    """The CSV's rows, grouped by point (bw, W, S, payload) with their
    medians over repeats: a list of dicts."""
    try:
        with open(path, newline="") as f:
            raw = list(csv.DictReader(f))
    except OSError as e:
        die(f"{path}: {e.strerror}")
    need = ("bw_mbit", "workers", "servers", "payload", "bytes_pushed",
            "t_step", "t_compute_max", "t_exchange")
    if not raw or any(k not in raw[0] for k in need):
        die(f"{path}: not a bench/scaling.sh CSV (columns {', '.join(need)})")
    groups = {}
    for line, r in enumerate(raw, start=2):
        try:
            key = (int(r["bw_mbit"]), int(r["workers"]), int(r["servers"]), r["payload"])
            for k in need[4:]:
                float(r[k])
        except (TypeError, ValueError):
            die(f"{path}: line {line}: a field that is not a number")
        groups.setdefault(key, []).append(r)
    out = []
    for (bw, w, s, p), rs in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][2], kv[0][1])):
        med = lambda k: float(np.median([float(r[k]) for r in rs]))
        out.append(dict(bw=bw, W=w, S=s, payload=p, n=len(rs),
                        A=med("bytes_pushed") / w, t_step=med("t_step"),
                        t_cmax=med("t_compute_max"), t_c=med("t_compute"),
                        t_x=med("t_exchange")))
    return out


def features(W, S, A, bw_bytes, cluster=False):
    """The model's terms for one point, without their constants L a b c m.
    cluster: the servers on hosts of their own (c * W * A / S), else the
    2 shared cores of the measurements (c * W * A)."""
    return np.array([1.0, W * A / bw_bytes, max(1.0, W / S) * A / bw_bytes,
                     W * A / (S if cluster else 1), W + S])


def fit(rows, serial=True):
    """L a b c d >= 0 by least squares on the relative error (serial=False
    fixes a = 0): every subset of the terms is solved and the best solution
    with no negative constant kept, which is non-negative least squares for
    five terms."""
    X = np.array([features(r["W"], r["S"], r["A"], r["bw"] * MBIT) for r in rows])
    y = np.array([r["t_x"] for r in rows])
    w = 1.0 / y
    Xw, yw = X * w[:, None], y * w
    terms = [0, 1, 2, 3, 4] if serial else [0, 2, 3, 4]
    best, best_res = np.zeros(5), float(np.sum(yw ** 2))
    for mask in range(1, 1 << len(terms)):
        cols = [t for i, t in enumerate(terms) if mask >> i & 1]
        sol, *_ = np.linalg.lstsq(Xw[:, cols], yw, rcond=None)
        if (sol < 0).any():
            continue
        res = float(np.sum((Xw[:, cols] @ sol - yw) ** 2))
        if res < best_res:
            best_res, best = res, np.zeros(5)
            best[cols] = sol
    return best


def ideal(coef):
    """The same constants with every receive posted at once: both
    phases at the busiest link's pace, a + b per byte in all."""
    L, a, b, c, m = coef
    return np.array([L, 0.0, a + b, c, m])


def t_exchange(coef, W, S, A, bw_bytes, cluster=False):
    return float(features(W, S, A, bw_bytes, cluster) @ coef)


def error_table(rows, coef):
    """Markdown table of every point, and the errors on t_step and t_exchange."""
    lines = ["| payload | Mbit/s | W | S | A (kB) | runs | t_compute_max (s) | t_exchange meas. (s) | t_exchange model (s) | t_step meas. (s) | t_step model (s) | step error |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    es, ex = [], []
    for r in rows:
        mx = t_exchange(coef, r["W"], r["S"], r["A"], r["bw"] * MBIT)
        ms = r["t_cmax"] + mx
        e = (ms - r["t_step"]) / r["t_step"]
        es.append(abs(e))
        ex.append(abs(mx - r["t_x"]) / r["t_x"])
        lines.append(f"| {r['payload']} | {r['bw']} | {r['W']} | {r['S']} | {r['A'] / 1e3:.0f} | {r['n']} | "
                     f"{r['t_cmax']:.3f} | {r['t_x']:.3f} | {mx:.3f} | {r['t_step']:.3f} | {ms:.3f} | {100 * e:+.1f}% |")
    return lines, np.array(es), np.array(ex)


# Shapes for the predictions.  LoRA on every linear map of a block:
# per adapted [in -> out] matrix r * (in + out) parameters.
def gpt2_124m():
    d, L, ff, V = 768, 12, 3072, 50257
    mats = [(d, 3 * d), (d, d), (d, ff), (ff, d)]
    return dict(name="GPT-2 124M", d=d, L=L, V=V, mats=mats)


def llama_7b():
    d, L, ff, V = 4096, 32, 11008, 32000
    mats = [(d, d)] * 4 + [(d, ff), (d, ff), (ff, d)]
    return dict(name="Llama 7B", d=d, L=L, V=V, mats=mats)


def adapter_params(shape, r):
    return shape["L"] * sum(r * (i + o) for i, o in shape["mats"])


def linear_params(shape):
    return shape["L"] * sum(i * o for i, o in shape["mats"])


def flops_per_token(shape, seq, r):
    """LoRA training, frozen base (a multiply-add counts 2): forward 2N plus
    the backward's input gradients 2N for the block matrices and the head;
    attention's two T x T products, 4*seq*d forward and twice that backward
    a layer; the adapters 2P forward, 4P backward.  For GPT-2 124M, batch
    4 x 256, r 16 on c_attn,c_proj,c_fc this is 5.37e8 against the 5.33e8
    `pslora bench` counts."""
    return (4 * linear_params(shape) + 4 * shape["d"] * shape["V"]
            + 12 * shape["L"] * seq * shape["d"] + 6 * adapter_params(shape, r))


def predict(coef, t_c, A, tokens, W, S, gbit):
    """(tokens/s, efficiency t_compute / t_step) of W workers, S servers."""
    t = t_c + t_exchange(coef, W, S, A, gbit * 1e9 / 8, cluster=True)
    return tokens * W / t, t_c / t


def best_servers(coef, t_c, A, tokens, W, gbit):
    """The fewest servers (a power of two, at most W) within 10% of the
    best throughput over those counts, and its (tokens/s, efficiency)."""
    Ss = [s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256) if s <= W]
    res = {S: predict(coef, t_c, A, tokens, W, S, gbit) for S in Ss}
    top = max(r[0] for r in res.values())
    s90 = min(S for S in Ss if res[S][0] >= 0.9 * top)
    return s90, res[s90]


def print_fit(rows, coef, label):
    L, a, b, c, m = coef
    print(f"## {label}")
    print(f"L = {L * 1e3:.2f} ms a step; a = {a:.3f}, b = {b:.3f} (link bytes per payload byte: "
          f"in peer order, at the busiest link); c = {c * 1e9:.2f} ns per byte pushed "
          f"({1e-6 / c if c > 0 else float('inf'):.0f} MB/s); m = {m * 1e3:.2f} ms per message")
    lines, es, ex = error_table(rows, coef)
    print(f"t_step: median |error| {100 * np.median(es):.1f}%, max {100 * es.max():.1f}%; "
          f"t_exchange alone: median {100 * np.median(ex):.1f}%, max {100 * ex.max():.1f}% ({len(rows)} points)\n")
    return lines


def main():
    ap = argparse.ArgumentParser(description="fit and use the BSP step-time model")
    ap.add_argument("csv")
    ap.add_argument("--t-gpt2", type=float, required=True,
                    help="one GPT-2 124M worker step (batch x seq tokens), seconds, measured")
    ap.add_argument("--tokens-per-worker", type=int, default=1024)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--load-factor", type=float, default=1.0,
                    help="divide c and m by this for the predictions: how much slower than its CPU "
                         "time a rank ran on the loaded machine while measuring (1: as measured)")
    ap.add_argument("--pred", help="write the predictions for gnuplot here")
    args = ap.parse_args()
    if args.t_gpt2 <= 0:
        die("--t-gpt2: must be positive", 2)
    if args.load_factor < 1:
        die("--load-factor: at least 1", 2)
    rows = read_rows(args.csv)
    if len(rows) < 6:
        die(f"{args.csv}: {len(rows)} points; the fit needs at least 6")
    coef = fit(rows)
    lines = print_fit(rows, coef, "fit: a, b free")
    design = fit(rows, serial=False)
    print_fit(rows, design, "fit with a = 0 (every message at the busiest link's pace, as if all receives were posted at once)")
    print("## every point (the free fit)\n")
    print("\n".join(lines))

    g2, ll = gpt2_124m(), llama_7b()
    f_g2, f_ll = flops_per_token(g2, args.seq, args.rank), flops_per_token(ll, args.seq, args.rank)
    cases = [(g2, args.t_gpt2, 4 * adapter_params(g2, args.rank), f"r{args.rank}"),
             (g2, args.t_gpt2, 4 * linear_params(g2), "full"),
             (ll, args.t_gpt2 * f_ll / f_g2, 4 * adapter_params(ll, args.rank), f"r{args.rank}")]
    tok = args.tokens_per_worker
    print(f"\n## predictions: {tok} tokens per worker step; GFLOP/token GPT-2 {f_g2 / 1e9:.3f}, "
          f"Llama 7B {f_ll / 1e9:.2f} (x{f_ll / f_g2:.1f})\n")
    pred = []
    built_c = coef * np.array([1, 1, 1, 1 / args.load_factor, 1 / args.load_factor])
    conc = ideal(built_c)
    print(f"(c and m divided by the load factor {args.load_factor:g}: c = {built_c[3] * 1e9:.2f} ns/byte, "
          f"m = {built_c[4] * 1e3:.2f} ms)\n")
    print("| model | payload | A (MB) | t_compute (s) | Gbit/s | W | ideal tok/s | S=1: tok/s (eff.) | "
          "as built: S, tok/s (eff.) | all receives posted at once: S, tok/s (eff.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for shape, t_c, A, what in cases:
        for gbit in (10, 25, 100):
            for W in (8, 16, 32, 64, 128, 256):
                one = predict(built_c, t_c, A, tok, W, 1, gbit)
                sb, built = best_servers(built_c, t_c, A, tok, W, gbit)
                sc, cc = best_servers(conc, t_c, A, tok, W, gbit)
                print(f"| {shape['name']} | {what} | {A / 1e6:.1f} | {t_c:.1f} | {gbit} | {W} | {tok * W / t_c:.0f} | "
                      f"{one[0]:.0f} ({100 * one[1]:.0f}%) | {sb}, {built[0]:.0f} ({100 * built[1]:.0f}%) | "
                      f"{sc}, {cc[0]:.0f} ({100 * cc[1]:.0f}%) |")
                pred.append((shape["name"].replace(" ", "_"), what, gbit, W, tok * W / t_c,
                             one[0], sb, built[0], sc, cc[0]))
    if args.pred:
        with open(args.pred, "w") as f:
            f.write("# model payload gbit W tok_s_ideal tok_s_S1 S_built tok_s_built S_conc tok_s_conc\n")
            for p in pred:
                f.write(" ".join(f"{x:.6g}" if isinstance(x, float) else str(x) for x in p) + "\n")


if __name__ == "__main__":
    main()
