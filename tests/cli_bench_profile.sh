#!/usr/bin/env bash
# pslora bench --profile: the step split by kernel category.
#  - every category is printed once, with ms/step and a share;
#  - the categories, summed here, cover the step: within 5% of the ms/step
#    the bench measured around the whole step (a kernel left out of the
#    profile would show as a gap; one counted twice as an excess);
#  - the categories that must have work do (linear maps, head, attention,
#    elementwise, LoRA, optimizer); f32->bf16 (rounding inside the products)
#    is zero in fp32, and in bf16 (oneDNN builds only) too: every bf16 input
#    of GPT-2's and Llama's products is rounded by the kernel that makes it
#    (norms, GELU, SwiGLU, attention's output, and after attention's
#    backward dq, dk, dv), so a product that rounds its input again shows
#    here (the bf16 runs are wide enough for one such rounding to print
#    0.04 ms at least); a GPT-2 whose MLP is narrower than 3 x dim checks
#    that the rounded dq, dk, dv have their room;
#  - the call-site table (step_prof.h's sites) lists each timed kernel call
#    once, and each category's sites sum to it (no site lost or counted
#    twice); the folded Llama MLP's LoRA passes are sites of their own;
#  - the spread line's fastest and slowest timed step bracket the mean;
#  - without --profile no table is printed;
#  - the header names how idle OpenMP threads wait (OMP_WAIT_POLICY,
#    GOMP_SPINCOUNT, or the runtime's default);
#  - it says how attention runs: pslora's kernels (fp32 through OpenBLAS),
#    or oneDNN in one region per pass with the batch in one slice per
#    thread (batch 4, 2 threads: 2 slices of 2), or each product over the
#    whole batch (batch 3 on 2 threads; one thread).
. "$(dirname "$0")/lib.sh"
CATS=("frozen linear fwd" "frozen linear bwd" "lm head fwd+bwd" "attention" "elementwise"
      "LoRA products" "f32->bf16" "optimizer")
GPT2="--layers 2 --dim 64 --heads 4 --vocab 512 --seq 32 --batch 2 --targets c_attn,c_proj,c_fc"
LLAMA="--arch llama --layers 2 --dim 64 --heads 4 --kv-heads 2 --intermediate 96 --vocab 512
       --seq 32 --batch 2 --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
# wider, for the bf16 runs (see above)
GPT2W="--layers 2 --dim 256 --heads 4 --vocab 512 --seq 128 --batch 4 --targets c_attn,c_proj,c_fc"
LLAMAW="--arch llama --layers 2 --dim 256 --heads 4 --kv-heads 2 --intermediate 384 --vocab 512
        --seq 128 --batch 4 --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

# the category table of file $1 (not the call sites after it)
table() { sed -n '/^profile (ms\/step/,/^profile by call site/p' "$1"; }
# ms of category $2 in the table of file $1 ("" when absent)
cat_ms() { table "$1" | grep -F -- "  $2 " | sed -E 's/^ +.* +([0-9.]+) ms +[0-9.]+%.*$/\1/'; }

# check NAME FILE: the table in FILE is complete, sums to the step, and has no
# f32->bf16 time
check() {
  local name=$1 f=$2 sum=0 ms n
  grep -q '^profile (ms/step' "$f" || fail "$name: no profile table: $(cat "$f")"
  for c in "${CATS[@]}"; do
    n=$(table "$f" | grep -cF -- "  $c " || true)
    [ "$n" = 1 ] || fail "$name: category '$c' printed $n times"
    ms=$(cat_ms "$f" "$c")
    [[ $ms =~ ^[0-9]+\.[0-9]+$ ]] || fail "$name: category '$c': no ms figure"
    sum=$(awk -v a="$sum" -v b="$ms" 'BEGIN { print a + b }')
  done
  local step
  step=$(sed -nE 's/^steps .* ms\/step ([0-9.]+) = .*/\1/p' "$f")
  [ -n "$step" ] || fail "$name: no ms/step line"
  # (the step is printed to 0.1 ms: 0.05 ms of slack for its rounding)
  awk -v s="$sum" -v t="$step" 'BEGIN { exit !(s >= 0.95 * t - 0.05 && s <= 1.02 * t + 0.05) }' ||
    fail "$name: categories sum to $sum ms, the step took $step ms"
  for c in "frozen linear fwd" "frozen linear bwd" "lm head fwd+bwd" "attention" "elementwise" \
           "LoRA products" "optimizer"; do
    awk -v x="$(cat_ms "$f" "$c")" 'BEGIN { exit !(x > 0) }' || fail "$name: '$c' is 0"
  done
  local conv
  conv=$(cat_ms "$f" "f32->bf16")
  awk -v x="$conv" 'BEGIN { exit !(x == 0) }' || fail "$name: a product rounds its input ($conv ms)"
  # the spread line: the fastest and slowest timed step bracket their mean
  local fast slow
  fast=$(sed -nE 's/^step spread: fastest ([0-9.]+) ms, slowest ([0-9.]+) ms .*/\1/p' "$f")
  slow=$(sed -nE 's/^step spread: fastest ([0-9.]+) ms, slowest ([0-9.]+) ms .*/\2/p' "$f")
  [ -n "$fast" ] && [ -n "$slow" ] || fail "$name: no step spread line"
  awk -v a="$fast" -v t="$step" -v b="$slow" 'BEGIN { exit !(a > 0 && a <= t + 0.05 && t <= b + 0.05) }' ||
    fail "$name: fastest $fast ms, mean $step ms, slowest $slow ms are out of order"
  ok "$name: ${#CATS[@]} categories, sum $sum ms of the step's $step ms (steps $fast..$slow ms)"
  check_sites "$name" "$f"
}

# check_sites NAME FILE: the call-site table lists every timed kernel call
# once: each category's sites (keyed as in step_prof.h) sum to its ms
# (within the table's rounding: 0.005 ms a figure), and no category but
# the optimizer's and f32->bf16 (no sites) is left without one.
KEYS=("frozen linear fwd:linear_fwd" "frozen linear bwd:linear_bwd" "lm head fwd+bwd:head"
      "attention:attention" "elementwise:elementwise" "LoRA products:lora")
check_sites() {
  local name=$1 f=$2 kc cat key ms got n
  grep -q '^profile by call site' "$f" || fail "$name: no call-site table"
  sed -n '/^profile by call site/,$p' "$f" | tail -n +2 | grep -E '^  [a-z_]+ ' > "$name.sites"
  [ -s "$name.sites" ] || fail "$name: an empty call-site table"
  awk '{ if ($4 + 0 <= 0 || $0 !~ / ms$/) exit 1 }' "$name.sites" ||
    fail "$name: a site without calls or ms: $(cat "$name.sites")"
  [ "$(awk '{ print $1, $2, $3 }' "$name.sites" | sort | uniq -d)" = "" ] ||
    fail "$name: a site listed twice"
  for kc in "${KEYS[@]}"; do
    cat=${kc%%:*} key=${kc##*:}
    ms=$(cat_ms "$f" "$cat")
    n=$(awk -v k="$key" '$1 == k' "$name.sites" | wc -l)
    got=$(awk -v k="$key" '$1 == k { s += $(NF - 1) } END { print s + 0 }' "$name.sites")
    awk -v a="$got" -v b="$ms" -v n="$n" 'BEGIN { d = a - b; if (d < 0) d = -d;
        exit !(n > 0 && d <= 0.005 * (n + 1) + 1e-9) }' ||
      fail "$name: the $n '$key' sites sum to $got ms, the category to $ms"
  done
  ok "$name: $(wc -l < "$name.sites") call sites, summing to their categories"
}

run() {   # run NAME COMPUTE ARGS...: bench --profile into NAME.txt
  local name=$1 compute=$2; shift 2
  "$PSLORA" bench --compute "$compute" --steps 4 --warmup 1 --peak-seconds 0.01 "$@" \
    > "$name.txt" 2> "$name.err" || fail "$name: $(cat "$name.err")"
}

run gpt2_fp32 fp32 $GPT2 --profile
check gpt2_fp32 gpt2_fp32.txt
run llama_fp32 fp32 $LLAMA --profile
check llama_fp32 llama_fp32.txt
run plain fp32 $GPT2
! grep -q '^profile' plain.txt || fail "a table without --profile"
ok "no table without --profile"

# The header says how idle OpenMP threads waited (the figures depend on it).
env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$PSLORA" bench $GPT2 --steps 1 --warmup 0 \
  --peak-seconds 0.01 > wait0.txt 2>&1 || fail "bench: $(cat wait0.txt)"
grep -qx "openmp waiting: the runtime's default (OMP_WAIT_POLICY and GOMP_SPINCOUNT unset)" \
  wait0.txt || fail "no default waiting line: $(grep openmp wait0.txt)"
OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=1000 "$PSLORA" bench $GPT2 --steps 1 --warmup 0 \
  --peak-seconds 0.01 > wait1.txt 2>&1 || fail "bench: $(cat wait1.txt)"
grep -qx "openmp waiting: OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=1000" wait1.txt ||
  fail "no waiting line: $(grep openmp wait1.txt)"
ok "the waiting line names the policy"

if "$PSLORA" bench --compute bf16 $GPT2 --steps 1 --warmup 0 --peak-seconds 0.01 \
     > probe.txt 2> probe.err; then
  run gpt2_bf16 bf16 $GPT2W --profile
  check gpt2_bf16 gpt2_bf16.txt
  run gpt2_narrow bf16 $GPT2W --intermediate 64 --profile
  check gpt2_narrow gpt2_narrow.txt
  run llama_bf16 bf16 $LLAMAW --profile
  check llama_bf16 llama_bf16.txt
  # the folded MLP's passes are sites of their own (model_step.c mlp_folded)
  for k in k_swiglu_lora_fwd k_swiglu_lora_bwd k_swiglu_lora_bwd_end; do
    awk -v k="$k" '$1 == "lora" && $2 == k { f = 1 } END { exit !f }' llama_bf16.sites ||
      fail "llama_bf16: no LoRA site $k: $(cat llama_bf16.sites)"
  done
  ok "llama_bf16: the folded MLP's LoRA passes are listed"
  # how attention runs (dnnl_attention.h, "Threads")
  att() {
    "$PSLORA" bench --layers 2 --dim 64 --heads 4 --vocab 512 --seq 32 --targets c_attn \
      --steps 1 --warmup 0 --peak-seconds 0.01 "$@" | grep '^attention: '
  }
  [ "$(att --compute bf16 --batch 4 --threads 2)" = \
    "attention: oneDNN, one region per pass, 2 slices of 2 batches" ] || fail "attention: batch 4"
  [ "$(att --compute bf16 --batch 3 --threads 2)" = \
    "attention: oneDNN, each product over the whole batch (2 threads do not divide batch 3)" ] ||
    fail "attention: batch 3"
  [ "$(att --compute bf16 --batch 4 --threads 1)" = \
    "attention: oneDNN, each product over the whole batch (one thread)" ] || fail "attention: 1 thread"
  [ "$(att --compute fp32 --fp32-matmul openblas --threads 2)" = "attention: pslora's kernels" ] ||
    fail "attention: fp32 OpenBLAS"
  ok "the attention line says how it runs"
else
  grep -q "built without oneDNN" probe.err || fail "bf16 bench: $(cat probe.err)"
  echo "skipped: bf16 profile (built without oneDNN)"
fi
