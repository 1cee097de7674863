#!/usr/bin/env bash
# The parameter server under mpirun: 1 server + 2 workers, 2 servers + 3
# workers, TCP on loopback; W workers x batch B == 1 worker x batch W*B;
# determinism; bytes per step; bad ranks and flags.
. "$(dirname "$0")/lib.sh"
make_tiny
: "${ADAPTER_DIFF:?}"
T="--model model --data data.bin --seq 32 --steps 8 --lr 3e-3 --targets c_attn,c_proj,c_fc --log-every 1"

# reference: one process, batch 8
"$PSLORA" train $T --batch 8 --out ref >/dev/null 2>&1

# 1 server + 2 workers, batch 4 each
mpi -np 3 "$PSLORA" train $T --batch 4 --out w2 > w2.txt 2>&1 || fail "np3: $(tail -3 w2.txt)"
"$ADAPTER_DIFF" ref w2 1e-5 || fail "2 workers x 4 != 1 x 8"
ok "1 server + 2 workers == one process (batch 8)"

# 2 servers + 4 workers, batch 2 each
mpi -np 6 "$PSLORA" train $T --batch 2 --servers 2 --out s2w4 > s2w4.txt 2>&1 || fail "np6: $(tail -3 s2w4.txt)"
"$ADAPTER_DIFF" ref s2w4 1e-5 || fail "2 servers, 4 workers x 2 != 1 x 8"
ok "2 servers + 4 workers == one process (batch 8)"

# 2 servers + 3 workers; run twice: byte-identical adapters
mpi -np 5 "$PSLORA" train $T --batch 2 --servers 2 --out s2a >/dev/null 2>&1 || fail "np5 run 1"
mpi -np 5 "$PSLORA" train $T --batch 2 --servers 2 --out s2b >/dev/null 2>&1 || fail "np5 run 2"
cmp s2a/adapter_model.safetensors s2b/adapter_model.safetensors || fail "2-server BSP not deterministic"
mpi -np 3 "$PSLORA" train $T --batch 4 --out w2b >/dev/null 2>&1
cmp w2/adapter_model.safetensors w2b/adapter_model.safetensors || fail "1-server BSP not deterministic"
ok "BSP deterministic (1 and 2 servers)"

# TCP forced, on loopback; same result as shared memory
mpi -np 3 --mca btl tcp,self --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo \
  "$PSLORA" train $T --batch 4 --out tcp > tcp.txt 2>&1 || fail "tcp: $(tail -3 tcp.txt)"
cmp w2/adapter_model.safetensors tcp/adapter_model.safetensors || fail "TCP result differs"
ok "TCP on loopback"

# bytes per step: adapter bytes x workers, plus a small envelope overhead
adapter_bytes=$(( $(stat -c %s ref/adapter_model.safetensors) ))
floats=$("$PSLORA" inspect ref/adapter_model.safetensors | sed -nE 's/.*, ([0-9]+) parameters.*/\1/p')
payload=$(( floats * 4 ))
for f in bytes_pushed bytes_pulled; do
  for v in $(json_field w2/metrics.jsonl step $f); do
    awk -v v="$v" -v p="$payload" 'BEGIN { exit !(v >= 2*p && v <= 2*p*1.01 + 256) }' \
      || fail "$f $v vs 2 x $payload"
  done
  for v in $(json_field s2a/metrics.jsonl step $f); do
    awk -v v="$v" -v p="$payload" 'BEGIN { exit !(v >= 3*p && v <= 3*p*1.01 + 512) }' \
      || fail "$f $v vs 3 x $payload (2 servers)"
  done
done
grep -Eq "bytes/step [0-9]+" w2.txt || fail "summary lacks bytes/step"
# the slowest worker's compute: one value per step row, never below the mean
paste <(json_field w2/metrics.jsonl step time_compute) \
      <(json_field w2/metrics.jsonl step time_compute_max) >times.txt
[ "$(wc -l <times.txt)" = "$(grep -c '"type":"step"' w2/metrics.jsonl)" ] || fail "time_compute_max missing"
awk '{ if ($2 + 0 < $1 + 0 || $2 == "") exit 1 }' times.txt || fail "time_compute_max < time_compute"

ok "bytes per step = adapter ($payload B) x workers (+ <1%)"
# the payload the traffic is measured against is the adapter's, from the
# shapes: rank 8 on c_attn 32->96, attn.c_proj 32->32, mlp.c_fc 32->128 and
# mlp.c_proj 128->32, r*(in+out) each, 2 layers = 2*8*(128+64+160+160) = 8192;
# and the file is its 8-byte header length, that header and exactly the payload
[ "$floats" = 8192 ] || fail "adapter holds $floats parameters, expected 8192"
hdr=$(od -An -tu8 -N8 ref/adapter_model.safetensors | tr -d ' ')
[ "$adapter_bytes" = $((8 + hdr + payload)) ] \
  || fail "adapter file $adapter_bytes B != 8 + header $hdr + payload $payload"
ok "adapter: 8192 parameters, file = 8 + $hdr + $payload B"

# handshake: a rank with another --rank or another model is rejected
"$PSLORA" init --layers 2 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 4 --out model2 >/dev/null
"$PSLORA" init --layers 3 --dim 32 --heads 4 --vocab 256 --ctx 64 --seed 3 --out model3 >/dev/null
expect_fail 1 'rank 2: --rank differs: worker has 4, server has 8' \
  mpi -np 2 "$PSLORA" train $T --batch 4 --rank 8 --out h1 : -np 1 "$PSLORA" train $T --batch 4 --rank 4 --out h1
T3=${T/--model model/--model model3}
expect_fail 1 'rank 2: model.shape differs' \
  mpi -np 2 "$PSLORA" train $T --batch 4 --out h2 : -np 1 "$PSLORA" train $T3 --batch 4 --out h2
T4=${T/--model model/--model model2}
expect_fail 1 'rank 2: model.weights differs' \
  mpi -np 2 "$PSLORA" train $T --batch 4 --out h4 : -np 1 "$PSLORA" train $T4 --batch 4 --out h4
[ ! -e h1 ] && [ ! -e h2 ] && [ ! -e h4 ] || fail "rejected runs left output"
expect_fail 2 '--servers: 3 servers leave no worker among 3 ranks' \
  mpi -np 3 "$PSLORA" train $T --batch 4 --servers 3 --out h3
ok "handshake"
echo "cli_ps: all passed"
