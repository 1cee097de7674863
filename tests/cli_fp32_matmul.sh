#!/usr/bin/env bash
# --fp32-matmul openblas|onednn|auto end to end (test_dnnl_matmul checks the
# oneDNN fp32 products against float64 and their row-count independence).
#  - a bad value is refused in one line with exit 2 by train, eval,
#    generate and bench; --full with onednn too;
#  - auto says what it chose and why, on stderr and in run.json:
#    PSLORA_CPU_FEATURES=none (the suite's setting) gives openblas, so the
#    other tests keep their path; avx512f with OpenBLAS held to its Haswell
#    kernels gives onednn, with its SkylakeX kernels openblas;
#  - 40 steps of GPT-2 and of Llama (its [out,in] weights and untied head,
#    grouped heads, seq 100: two causal blocks of attention, the last one
#    partial): every step's loss with onednn (its products and attention's,
#    dnnl_attention.h in fp32) within 1e-5 (relative) of openblas's (the
#    kernels.h attention), the adapters within 1e-4; eval within 1e-5,
#    greedy generate the same;
#  - onednn is deterministic (cmp), 2 workers x 4 = 1 x 8 within 1e-5 (as
#    cli_ps for openblas), a resumed run equals the uninterrupted one (cmp);
#    a resume or a rank with another --fp32-matmul is refused;
#  - pslora bench measures its peak with the oneDNN fp32 matmul.
# Built without oneDNN: onednn is refused with one line, auto says why,
# the rest is skipped (printed).
. "$(dirname "$0")/lib.sh"
: "${ADAPTER_DIFF:?}"
make_tiny
T="--model model --data data.bin --seq 32 --lr 3e-3 --rank 8 --targets c_attn,c_proj,c_fc --compute fp32"

# refuse_one STATUS PATTERN CMD...: expect_fail, and stderr is one line
refuse_one() {
  expect_fail "$@"
  [ "$(wc -l < err.txt)" = 1 ] || fail "more than one line: $(cat err.txt)"
}
refuse_one 2 "^pslora train: --fp32-matmul: expected openblas, onednn or auto, got 'blas'$" \
  "$PSLORA" train $T --fp32-matmul blas --out g1
[ ! -e g1 ] || fail "g1 created"
refuse_one 2 "^pslora eval: --fp32-matmul: expected openblas, onednn or auto, got 'x'$" \
  "$PSLORA" eval --model model --data data.bin --fp32-matmul x
refuse_one 2 "^pslora generate: --fp32-matmul: expected openblas, onednn or auto, got ''$" \
  "$PSLORA" generate --model model --prompt "The " --fp32-matmul ""
refuse_one 2 "^pslora bench: --fp32-matmul: expected openblas, onednn or auto, got 'ONEDNN'$" \
  "$PSLORA" bench --fp32-matmul ONEDNN --layers 1 --dim 16 --heads 2 --vocab 64 --seq 8 --batch 1
refuse_one 2 "^pslora train: --fp32-matmul onednn: --full trains with openblas only$" \
  "$PSLORA" train --model model --data data.bin --seq 32 --full --fp32-matmul onednn --out g2
[ ! -e g2 ] || fail "g2 created"

# auto_line OUT [VAR=VALUE...]: 1 step with --fp32-matmul auto; prints its "fp32 matmul" line
auto_line() {
  local out=$1; shift
  env "$@" "$PSLORA" train $T --batch 4 --steps 1 --out "$out" > "$out.txt" 2> "$out.err" \
    || fail "auto run $out: $(cat "$out.err")"
  [ "$(grep -c '^fp32 matmul ' "$out.err")" = 1 ] || fail "$out: no fp32 matmul line: $(cat "$out.err")"
  grep '^fp32 matmul ' "$out.err"
}
line=$(auto_line a_none PSLORA_CPU_FEATURES=none)
case "$line" in
  "fp32 matmul openblas (auto: no avx512f)"|"fp32 matmul openblas (auto: built without oneDNN)") ;;
  *) fail "PSLORA_CPU_FEATURES=none: '$line'" ;;
esac
grep -Eq '"fp32_matmul":[[:space:]]*"openblas"' a_none/run.json || fail "a_none: run.json fp32_matmul"
grep -Eq '"fp32_matmul_requested":[[:space:]]*"auto"' a_none/run.json || fail "a_none: run.json requested"
ok "auto under the suite's PSLORA_CPU_FEATURES=none: $line"
# the default is auto (the suite's environment sets PSLORA_CPU_FEATURES=none)
PSLORA_CPU_FEATURES=none "$PSLORA" train $T --batch 4 --steps 1 --out a_dflt > /dev/null 2> a_dflt.err || fail "default run"
grep -qx "$line" a_dflt.err || fail "no --fp32-matmul is not auto: $(cat a_dflt.err)"
# --compute bf16 has no fp32 products: no line
if "$PSLORA" train ${T/--compute fp32/--compute bf16} --batch 4 --steps 1 --out a_bf16 > /dev/null 2> a_bf16.err; then
  ! grep -q '^fp32 matmul' a_bf16.err || fail "bf16 run printed an fp32 matmul line"
fi

if ! "$PSLORA" eval --model model --data data.bin --max-batches 1 --compute fp32 --fp32-matmul onednn \
    > probe.txt 2> probe.err; then
  grep -qx 'pslora eval: --fp32-matmul onednn: this pslora was built without oneDNN (libdnnl-dev)' probe.err \
    || fail "onednn refusal: $(cat probe.err)"
  echo "cli_fp32_matmul: SKIPPED the onednn runs: this pslora was built without oneDNN (libdnnl-dev)"
  exit 0
fi
# the branches of auto with oneDNN built in: AVX-512 claimed, OpenBLAS's
# core pinned (a core the CPU can run: Haswell needs AVX2, SkylakeX AVX-512)
if grep -qw avx2 /proc/cpuinfo; then
  line=$(auto_line a_hsw PSLORA_CPU_FEATURES=avx512f OPENBLAS_CORETYPE=Haswell)
  [ "$line" = "fp32 matmul onednn (auto: avx512f while OpenBLAS runs its Haswell kernels)" ] || fail "a_hsw: '$line'"
  grep -Eq '"fp32_matmul":[[:space:]]*"onednn"' a_hsw/run.json || fail "a_hsw: run.json fp32_matmul"
  ok "auto with avx512f and OpenBLAS on Haswell kernels: $line"
else
  echo "cli_fp32_matmul: SKIPPED auto with OPENBLAS_CORETYPE=Haswell: no avx2 in /proc/cpuinfo"
fi
if grep -qw avx512f /proc/cpuinfo; then
  line=$(auto_line a_skx PSLORA_CPU_FEATURES=avx512f OPENBLAS_CORETYPE=SkylakeX)
  [ "$line" = "fp32 matmul openblas (auto: OpenBLAS runs its SkylakeX kernels)" ] || fail "a_skx: '$line'"
  ok "auto with OpenBLAS on its AVX-512 kernels: $line"
else
  echo "cli_fp32_matmul: SKIPPED auto with OPENBLAS_CORETYPE=SkylakeX: no avx512f in /proc/cpuinfo"
fi
"$PSLORA" train $T --batch 4 --steps 1 --fp32-matmul onednn --out a_req > /dev/null 2> a_req.err
grep -Eq '^fp32 matmul onednn \(requested onednn; OpenBLAS core [A-Za-z0-9]+, avx512f: (yes|no)\)$' a_req.err \
  || fail "requested: $(cat a_req.err)"

# losses: onednn against openblas, step by step (GPT-2 Conv1D [in,out]
# weights with a tied head; Llama [out,in] weights with an untied head)
"$PSLORA" init --arch llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 256 --ctx 128 --seed 5 \
  --untied --out llama >/dev/null
LT="--model llama --data data.bin --seq 100 --lr 3e-3 --rank 8 --targets q_proj,v_proj,o_proj,down_proj --compute fp32"
for arch in gpt2 llama; do
  F=$T; [ $arch = gpt2 ] || F=$LT
  for mm in openblas onednn; do
    "$PSLORA" train $F --batch 8 --steps 40 --fp32-matmul $mm --out l_${arch}_$mm > /dev/null 2>&1 \
      || fail "$arch $mm run"
  done
  paste <(json_field l_${arch}_openblas/metrics.jsonl step loss) <(json_field l_${arch}_onednn/metrics.jsonl step loss) \
    > l_$arch.txt
  [ "$(wc -l < l_$arch.txt)" = 40 ] || fail "$arch: 40 step rows expected"
  worst=$(awk '{ d = ($2 - $1) / $1; d = d < 0 ? -d : d; if (d > m) m = d } END { printf "%.3g\n", m }' l_$arch.txt)
  awk -v m="$worst" 'BEGIN { exit !(m < 1e-5) }' || fail "$arch: onednn loss off by $worst (relative)"
  "$ADAPTER_DIFF" l_${arch}_openblas l_${arch}_onednn 1e-4 > diff_$arch.txt || fail "$arch adapters: $(cat diff_$arch.txt)"
  ok "$arch, 40 steps: largest per-step loss difference onednn vs openblas $worst (< 1e-5); adapters: $(cat diff_$arch.txt)"
done
for mm in openblas onednn; do
  "$PSLORA" eval --model model --adapter l_gpt2_openblas --data data.bin --seq 32 --batch 8 --max-batches 4 \
    --compute fp32 --fp32-matmul $mm > e_$mm.txt
  "$PSLORA" generate --model llama --prompt "The " --tokens 12 --temperature 0 --compute fp32 --fp32-matmul $mm \
    > g_$mm.txt
done
read -r lb ld < <(echo "$(awk '{print $2}' e_openblas.txt) $(awk '{print $2}' e_onednn.txt)")
awk -v a="$ld" -v b="$lb" 'BEGIN { d = (a - b) / b; exit !(d < 1e-5 && d > -1e-5) }' || fail "eval onednn $ld vs openblas $lb"
cmp g_openblas.txt g_onednn.txt || fail "greedy generate differs: $(cat g_openblas.txt) / $(cat g_onednn.txt)"
[ "$(wc -c < g_onednn.txt)" -ge 16 ] || fail "generate: $(cat g_onednn.txt)"
ok "eval (onednn $ld, openblas $lb) and greedy generate agree"

# determinism, W workers, resume
O="$T --fp32-matmul onednn --steps 6 --log-every 1"
"$PSLORA" train $O --batch 8 --out one > /dev/null 2>&1 || fail "onednn one"
"$PSLORA" train $O --batch 8 --out one2 > /dev/null 2>&1 || fail "onednn one2"
cmp one/adapter_model.safetensors one2/adapter_model.safetensors || fail "onednn not deterministic"
mpi -np 3 "$PSLORA" train $O --batch 4 --out w2 > w2.txt 2>&1 || fail "np3 onednn: $(tail -3 w2.txt)"
grep -q '^fp32 matmul onednn (requested onednn; ' w2.txt || fail "np3: no fp32 matmul line"
"$ADAPTER_DIFF" one w2 1e-5 || fail "onednn: 2 workers x 4 != 1 x 8"
ok "onednn: deterministic; 2 workers x batch 4 = 1 process x batch 8 (within 1e-5)"
# the key is in the fingerprint only with onednn (a run with openblas
# fingerprints as before the flag existed), hence "(none)"
expect_fail 1 'rank 2: --fp32-matmul differs: worker has \(none\), server has onednn' \
  mpi -np 2 "$PSLORA" train $O --batch 4 --out h1 : -np 1 "$PSLORA" train ${O/onednn/openblas} --batch 4 --out h1
[ ! -e h1 ] || fail "rejected run left output"
"$PSLORA" train ${O/--steps 6/--steps 4} --batch 4 --checkpoint-every 2 --out rs > /dev/null 2>&1 || fail "rs"
refuse_one 1 '^pslora train: --resume: the checkpoint rs/checkpoints/step-00000004 records --fp32-matmul = onednn, which this run does not have$' \
  "$PSLORA" train ${O/onednn/openblas} --batch 4 --checkpoint-every 2 --resume rs
"$PSLORA" train $O --batch 4 --checkpoint-every 2 --resume rs > /dev/null 2>&1 || fail "onednn resume"
"$PSLORA" train $O --batch 4 --checkpoint-every 2 --out ru > /dev/null 2>&1 || fail "onednn uninterrupted"
cmp rs/adapter_model.safetensors ru/adapter_model.safetensors || fail "onednn resume differs from the uninterrupted run"
# an openblas checkpoint (as those of pslora before the flag) and onednn
O4=${O/--steps 6/--steps 4}; "$PSLORA" train ${O4/onednn/openblas} --batch 4 --checkpoint-every 2 --out rso > /dev/null 2>&1 \
  || fail "rso"
refuse_one 1 '^pslora train: --resume: the checkpoint rso/checkpoints/step-00000004 does not record --fp32-matmul$' \
  "$PSLORA" train $O --batch 4 --checkpoint-every 2 --resume rso
ok "onednn: a resumed run equals the uninterrupted one, byte for byte; another --fp32-matmul is refused"

# bench: the peak of the kernel the model uses
"$PSLORA" bench --compute fp32 --fp32-matmul onednn --layers 1 --dim 32 --heads 2 --vocab 64 --seq 16 \
  --batch 2 --steps 1 --warmup 0 --peak-seconds 0 > bench.txt 2>&1 || fail "bench: $(tail -2 bench.txt)"
grep -q '^fp32 matmul onednn (requested onednn; ' bench.txt || fail "bench: no fp32 matmul line"
grep -q '^peak (oneDNN fp32 matmul on the model' bench.txt || fail "bench: peak not from oneDNN fp32"
grep -Eq '^  attn\.c_attn +fwd M 32 K 32 N 96: [0-9.]+ GFLOP/s [a-z]' bench.txt || fail "bench: no oneDNN kernel named"
grep -q '^tokens/s ' bench.txt || fail "bench: no tokens/s"
"$PSLORA" bench --compute fp32 --fp32-matmul openblas --layers 1 --dim 32 --heads 2 --vocab 64 --seq 16 \
  --batch 2 --steps 1 --warmup 0 --peak-seconds 0 > bench_ob.txt 2>&1 || fail "bench openblas"
grep -q '^peak (cblas_sgemm on the model' bench_ob.txt || fail "bench openblas: peak not from sgemm"
ok "bench: the peak from the kernel the products use"
echo "cli_fp32_matmul: all passed"
