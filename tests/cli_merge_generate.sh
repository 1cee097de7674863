#!/usr/bin/env bash
# cli_merge_generate.sh - `pslora merge` and `pslora generate` end to end.
#
# Run by CTest with PSLORA=<binary> and SCRATCH=<dir>.  Every model and adapter
# is made here: `pslora init` / `tokenize` / `train`, plus a small pure-Python
# safetensors helper (no numpy) that converts dtypes, writes a sharded Llama
# model with a random adapter, and checks a merged directory against its own
# computation of W + s*B*A in the file's layout.
. "$(dirname "$0")/lib.sh"   # checks PSLORA and SCRATCH, cd into a fresh SCRATCH, fail()
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

# expect_fail STATUS PATTERN CMD...: CMD must exit with STATUS and print one
# stderr line containing PATTERN (the flag or file it names); stricter than
# lib.sh's (a fixed string, and exactly one line), so it replaces it here.
expect_fail() {
    local want=$1 pattern=$2 rc=0
    shift 2
    "$@" >out.txt 2>err.txt || rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want; stderr: $(cat err.txt)"
    grep -qF -- "$pattern" err.txt || fail "'$*': stderr does not name '$pattern': $(cat err.txt)"
    [ "$(wc -l <err.txt)" -eq 1 ] || fail "'$*': expected one error line, got: $(cat err.txt)"
}

no_partials() {
    if ls -d ./*.partial-* >/dev/null 2>&1; then
        fail "a partial output directory was left behind: $(ls -d ./*.partial-*)"
    fi
}

cat >st.py <<'EOF'
"""Pure-Python safetensors helper for cli_merge_generate.sh."""
import json, math, os, random, struct, sys

def read_st(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    hdr = json.loads(buf[8:8 + n])
    meta = hdr.pop("__metadata__", None)
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], list(v["shape"]), buf[8 + n + b:8 + n + e])
    return out, meta

def write_st(path, tensors, meta=None):
    hdr, off, blobs = {}, 0, []
    if meta:
        hdr["__metadata__"] = meta
    for k in sorted(tensors):
        dt, shape, raw = tensors[k]
        hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def decode(dt, raw):
    if dt == "F32":
        return list(struct.unpack("<%df" % (len(raw) // 4), raw))
    if dt == "F16":
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    if dt == "BF16":
        wide = bytearray(2 * len(raw))
        wide[2::4], wide[3::4] = raw[0::2], raw[1::2]
        return list(struct.unpack("<%df" % (len(raw) // 2), bytes(wide)))
    raise SystemExit("unexpected dtype " + dt)

def encode(dt, vals):
    if dt == "F32":
        return struct.pack("<%df" % len(vals), *vals)
    if dt == "F16":
        return struct.pack("<%de" % len(vals), *vals)
    bits = struct.unpack("<%dI" % len(vals), struct.pack("<%df" % len(vals), *vals))
    return struct.pack("<%dH" % len(vals), *[(u + 0x7FFF + ((u >> 16) & 1)) >> 16 for u in bits])

def model_files(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        return sorted(set(json.load(open(idx))["weight_map"].values()))
    return ["model.safetensors"]

def convert(src, dst, dt, *opts):
    """Copy a single-file model with every tensor in dtype dt; options:
    strip (drop "transformer."), drop=NAME (leave a tensor out)."""
    os.makedirs(dst)
    t, meta = read_st(os.path.join(src, "model.safetensors"))
    drop = [o[5:] for o in opts if o.startswith("drop=")]
    out = {}
    for k, (odt, shape, raw) in t.items():
        if k in drop:
            continue
        name = k[len("transformer."):] if "strip" in opts and k.startswith("transformer.") else k
        out[name] = (dt, shape, encode(dt, decode(odt, raw)))
    write_st(os.path.join(dst, "model.safetensors"), out, meta)
    open(os.path.join(dst, "config.json"), "wb").write(open(os.path.join(src, "config.json"), "rb").read())

def rand(n, scale, rng):
    return [rng.uniform(-scale, scale) for _ in range(n)]

def llama(d, ad):
    """A 2-layer Llama (GQA) in two F16 shards + index, and a PEFT adapter
    with random non-zero A and B on q, k, o and down projections."""
    rng = random.Random(7)
    C, L, H, KV, HD, I, V = 16, 2, 4, 2, 4, 24, 64
    os.makedirs(d)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
           "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": H,
           "num_key_value_heads": KV, "head_dim": HD, "max_position_embeddings": 32,
           "vocab_size": V, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}
    open(os.path.join(d, "config.json"), "w").write(json.dumps(cfg, indent=1) + "\n")
    open(os.path.join(d, "generation_config.json"), "w").write('{"do_sample": false}\n')
    shapes = {"model.embed_tokens.weight": [V, C], "model.norm.weight": [C], "lm_head.weight": [V, C]}
    for l in range(L):
        p = "model.layers.%d." % l
        shapes.update({p + "input_layernorm.weight": [C], p + "post_attention_layernorm.weight": [C],
                       p + "self_attn.q_proj.weight": [H * HD, C], p + "self_attn.k_proj.weight": [KV * HD, C],
                       p + "self_attn.v_proj.weight": [KV * HD, C], p + "self_attn.o_proj.weight": [C, H * HD],
                       p + "mlp.gate_proj.weight": [I, C], p + "mlp.up_proj.weight": [I, C],
                       p + "mlp.down_proj.weight": [C, I]})
    shards, wmap = ({}, {}), {}
    for k in sorted(shapes):
        n = math.prod(shapes[k])
        s = 0 if "layers.0." in k or "embed" in k else 1
        fname = "model-%05d-of-00002.safetensors" % (s + 1)
        shards[s][k] = ("F16", shapes[k], encode("F16", rand(n, 0.5, rng)))
        wmap[k] = fname
    for s in range(2):
        write_st(os.path.join(d, "model-%05d-of-00002.safetensors" % (s + 1)), shards[s], {"format": "pt"})
    idx = {"metadata": {"total_size": sum(len(v[2]) for sh in shards for v in sh.values())}, "weight_map": wmap}
    open(os.path.join(d, "model.safetensors.index.json"), "w").write(json.dumps(idx, indent=2) + "\n")
    os.makedirs(ad)
    r, targets = 4, ["q_proj", "k_proj", "o_proj", "down_proj"]
    acfg = {"peft_type": "LORA", "r": r, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": targets,
            "fan_in_fan_out": False, "bias": "none", "task_type": "CAUSAL_LM", "use_rslora": False}
    open(os.path.join(ad, "adapter_config.json"), "w").write(json.dumps(acfg))
    at = {}
    for k, shape in shapes.items():
        if any(k.endswith(t + ".weight") for t in targets):
            base = "base_model.model." + k[:-len(".weight")]
            out, inn = shape
            at[base + ".lora_A.weight"] = ("F32", [r, inn], encode("F32", rand(r * inn, 0.5, rng)))
            at[base + ".lora_B.weight"] = ("F32", [out, r], encode("F32", rand(out * r, 0.5, rng)))
    write_st(os.path.join(ad, "adapter_model.safetensors"), at, {"format": "pt"})

def same_bytes(a, b):
    return open(a, "rb").read() == open(b, "rb").read()

def check(base, ad, merged):
    """merged must hold base's files and tensors (names, dtypes, shapes) with
    W + s*B*A folded into each adapted weight in its layout, all else equal."""
    cfg = json.load(open(os.path.join(base, "config.json")))
    conv1d = cfg.get("model_type", "gpt2") == "gpt2"
    acfg = json.load(open(os.path.join(ad, "adapter_config.json")))
    r = acfg["r"]
    s = acfg["lora_alpha"] / (math.sqrt(r) if acfg.get("use_rslora") else r)
    at, _ = read_st(os.path.join(ad, "adapter_model.safetensors"))
    mods = {k[len("base_model.model."):-len(".lora_A.weight")] for k in at if k.endswith(".lora_A.weight")}
    errors, used = [], set()
    for name in ["config.json", "generation_config.json", "model.safetensors.index.json"]:
        if os.path.exists(os.path.join(base, name)) and not same_bytes(os.path.join(base, name), os.path.join(merged, name)):
            errors.append(name + " not copied byte for byte")
    for fname in model_files(base):
        bt, bmeta = read_st(os.path.join(base, fname))
        mt, mmeta = read_st(os.path.join(merged, fname))
        if bmeta != mmeta:
            errors.append(fname + ": metadata differs")
        if sorted(bt) != sorted(mt):
            errors.append(fname + ": tensor names differ")
            continue
        for k, (dt, shape, raw) in bt.items():
            if mt[k][:2] != (dt, shape):
                errors.append("%s: %s is %s %s, expected %s %s" % (fname, k, mt[k][0], mt[k][1], dt, shape))
                continue
            path = k[:-len(".weight")]
            mod = path if path in mods else "transformer." + path if "transformer." + path in mods else None
            if mod is None:
                if mt[k][2] != raw:
                    errors.append("%s: %s changed but is not adapted" % (fname, k))
                continue
            used.add(mod)
            A = decode(*at["base_model.model." + mod + ".lora_A.weight"][::2])
            B = decode(*at["base_model.model." + mod + ".lora_B.weight"][::2])
            w, got = decode(dt, raw), decode(dt, mt[k][2])
            rows, cols = shape
            inn, out = (rows, cols) if conv1d else (cols, rows)
            rel = {"F32": 1e-5, "F16": 2.0 ** -10, "BF16": 2.0 ** -8}[dt]
            max_delta, max_tol = 0.0, 0.0
            for a in range(rows):
                for b in range(cols):
                    o, i = (b, a) if conv1d else (a, b)
                    delta = s * sum(B[o * r + q] * A[q * inn + i] for q in range(r))
                    want = w[a * cols + b] + delta
                    tol = rel * abs(want) + 1e-6
                    max_delta, max_tol = max(max_delta, abs(delta)), max(max_tol, tol)
                    if abs(got[a * cols + b] - want) > tol:
                        errors.append("%s: %s[%d][%d] = %.8g, expected %.8g" % (fname, k, a, b, got[a * cols + b], want))
                        break
                else:
                    continue
                break
            if max_delta < 20 * max_tol:
                errors.append("%s: the adapter's change to %s (%.3g) is too small to test" % (fname, k, max_delta))
    if used != mods:
        errors.append("adapted weights not found in the merged model: %s" % sorted(mods - used))
    if errors:
        raise SystemExit("check %s: %d problem(s):\n  %s" % (merged, len(errors), "\n  ".join(errors[:10])))
    print("check %s: %d adapted weights ok" % (merged, len(used)))

def close(a, b, rel):
    """Two `eval --json` outputs: |loss_a - loss_b| <= rel * |loss_b|, same tokens."""
    x, y = json.load(open(a)), json.load(open(b))
    if x["tokens"] != y["tokens"] or abs(x["loss"] - y["loss"]) > rel * abs(y["loss"]):
        raise SystemExit("%s vs %s: %s vs %s" % (a, b, x, y))

def differ(a, b, by):
    x, y = json.load(open(a)), json.load(open(b))
    if abs(x["loss"] - y["loss"]) <= by:
        raise SystemExit("%s vs %s: loss %s vs %s, expected a difference > %g" % (a, b, x["loss"], y["loss"], by))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"convert": lambda: convert(*args), "llama": lambda: llama(*args), "check": lambda: check(*args),
     "close": lambda: close(args[0], args[1], float(args[2])),
     "differ": lambda: differ(args[0], args[1], float(args[2]))}[cmd]()
EOF
st() { "$PY" st.py "$@"; }

# ---- data, a base model and a trained (non-zero) adapter ----
for i in $(seq 1 300); do
    echo "line $i: the quick brown fox jumps over the lazy dog $((i * i % 97))"
done >text.txt
"$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 3 --out base >/dev/null
"$PSLORA" tokenize --in text.txt --out data.bin >/dev/null
"$PSLORA" train --model base --data data.bin --out run --steps 5 --lr 1e-2 \
    --targets c_attn,c_proj,c_fc --seq 32 --batch 2 >/dev/null
[ -f run/adapter_model.safetensors ] || fail "train wrote no adapter"

# ---- merge (GPT-2, F32): layout, bytes, and the model it makes ----
"$PSLORA" merge --model base --adapter run --out merged >/dev/null
st check base run merged
if st check base run base >/dev/null 2>&1; then
    fail "the checker accepts an unmerged model: it cannot detect a missing merge"
fi
EV=(--data data.bin --seq 32 --batch 2 --json)
"$PSLORA" eval --model base "${EV[@]}" >ev_base.json
"$PSLORA" eval --model base --adapter run "${EV[@]}" >ev_adapted.json
"$PSLORA" eval --model merged "${EV[@]}" >ev_merged.json
st close ev_merged.json ev_adapted.json 1e-5
st differ ev_merged.json ev_base.json 1e-3

# ---- merge keeps BF16, and finds GPT-2 keys without "transformer." ----
st convert base base_bf16 BF16 strip
"$PSLORA" merge --model base_bf16 --adapter run --out merged_bf16 >/dev/null
"$PSLORA" inspect merged_bf16 >inspect.txt
grep -q '  h.0.attn.c_attn.weight  *BF16  *\[32, 96\]' inspect.txt ||
    fail "merged BF16 model lost its dtype, shape or key: $(cat inspect.txt)"
if grep -E '^  [a-z_.0-9]+ +F32 ' inspect.txt; then fail "merged BF16 model holds F32 tensors"; fi
st check base_bf16 run merged_bf16

# ---- merge of a sharded F16 Llama: [out, in] layout, index and shards ----
st llama llama llama_ad
"$PSLORA" merge --model llama --adapter llama_ad --out llama_merged >/dev/null
for f in model-00001-of-00002.safetensors model-00002-of-00002.safetensors generation_config.json; do
    [ -f "llama_merged/$f" ] || fail "merged llama lacks $f"
done
st check llama llama_ad llama_merged

# ---- merge: bad inputs, nothing half-written ----
expect_fail 1 "nope/adapter_config.json" "$PSLORA" merge --model base --adapter nope --out m1
[ ! -e m1 ] || fail "a failed merge created its --out"
expect_fail 1 "--out" "$PSLORA" merge --model base --adapter run --out merged
cmp -s merged/config.json base/config.json || fail "a refused merge touched the existing --out"
expect_fail 2 "--out" "$PSLORA" merge --model base --adapter run
expect_fail 2 "--adapter" "$PSLORA" merge --model base --out m1
expect_fail 1 "missing/config.json" "$PSLORA" merge --model missing --adapter run --out m1
"$PSLORA" init --layers 2 --dim 48 --heads 4 --vocab 256 --ctx 64 --out wide >/dev/null
expect_fail 1 "run/adapter_model.safetensors" "$PSLORA" merge --model wide --adapter run --out m1
st convert base no_fc F32 drop=transformer.h.1.mlp.c_fc.weight
expect_fail 1 "h.1.mlp.c_fc.weight" "$PSLORA" merge --model no_fc --adapter run --out m1
[ ! -e m1 ] || fail "a failed merge created its --out"
no_partials

# ---- generate ----
G=(--prompt "The quick" --tokens 48)
gen() { "$PSLORA" generate "$@"; }
gen --model base "${G[@]}" --seed 5 >g_s5a.txt
gen --model base "${G[@]}" --seed 5 >g_s5b.txt
gen --model base "${G[@]}" --seed 6 >g_s6.txt
cmp -s g_s5a.txt g_s5b.txt || fail "same seed, different text"
if cmp -s g_s5a.txt g_s6.txt; then fail "seeds 5 and 6 gave the same 48 sampled tokens"; fi
gen --model base "${G[@]}" --temperature 0 --seed 1 >g_t0a.txt
gen --model base "${G[@]}" --temperature 0 --seed 2 >g_t0b.txt
cmp -s g_t0a.txt g_t0b.txt || fail "greedy output depends on the seed"
gen --model base "${G[@]}" --temperature 1 --top-k 1 --seed 3 >g_k1.txt
cmp -s g_t0a.txt g_k1.txt || fail "--top-k 1 differs from greedy"
# a tiny temperature puts (almost) all the mass on the argmax
gen --model base "${G[@]}" --temperature 1e-6 --seed 4 >g_cold.txt
cmp -s g_t0a.txt g_cold.txt || fail "--temperature 1e-6 differs from greedy"
gen --model base "${G[@]}" --temperature 0.7 --top-k 5 --seed 3 >g_k5.txt
# vocab 256: every token is one byte, so the prompt, 48 bytes and a newline
for f in g_s5a.txt g_t0a.txt g_k5.txt; do
    [ "$(head -c 9 "$f")" = "The quick" ] || fail "$f does not start with the prompt"
    [ "$(wc -c <"$f")" -eq 58 ] || fail "$f: $(wc -c <"$f") bytes, expected 9 + 48 + 1"
    [ "$(tail -c 1 "$f" | od -An -c | tr -d ' ')" = '\n' ] || fail "$f does not end with a newline"
done
# past the context (64): the model keeps seeing the last 64 tokens
gen --model base --prompt "$(printf 'x%.0s' $(seq 50))" --tokens 40 --temperature 0 >g_long.txt
[ "$(wc -c <g_long.txt)" -eq 91 ] || fail "generation past the context: wrong length"
# with an adapter; its greedy text equals the merged model's
gen --model base --adapter run "${G[@]}" --temperature 0 >g_ad.txt
gen --model merged "${G[@]}" --temperature 0 >g_merged.txt
cmp -s g_ad.txt g_merged.txt || fail "greedy text of base+adapter differs from the merged model's"
# vocab beyond the bytes: runs, tokens >= 256 print as <|N|>, so at least 58 bytes
"$PSLORA" init --layers 1 --dim 32 --heads 4 --vocab 300 --ctx 64 --out v300 >/dev/null
gen --model v300 "${G[@]}" >g_v300.txt
[ "$(wc -c <g_v300.txt)" -ge 58 ] || fail "vocab 300: output too short"
"$PSLORA" init --layers 1 --dim 32 --heads 4 --vocab 100 --ctx 64 --out v100 >/dev/null
expect_fail 1 "vocab_size 100" gen --model v100 --prompt hi
expect_fail 2 "--tokens" gen --model base --prompt hi --tokens 0
expect_fail 2 "--temperature" gen --model base --prompt hi --temperature -1
expect_fail 2 "--prompt" gen --model base --prompt ""
expect_fail 2 "--prompt" gen --model base
expect_fail 1 "nope/adapter_config.json" gen --model base --adapter nope --prompt hi

echo "cli_merge_generate: all checks passed"
