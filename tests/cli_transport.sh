#!/usr/bin/env bash
# tp_batch (common/ps/transport.h) on 3 ranks, through tests/tool_tp_batch.c:
#  - a receiver waiting for rank 1 still takes rank 2's message (1 MiB, past
#    every eager limit) while rank 1 holds back until that message is taken:
#    the receives are posted at once, not one after another; bytes and lengths
#    arrive intact, twice through the same buffers;
#  - a rank that never sends: one line naming it, non-zero exit.
. "$(dirname "$0")/lib.sh"
: "${TP_BATCH:?}"
out=$(mpi -np 3 "$TP_BATCH" order 2>err.txt) || fail "order: $(cat err.txt)"
[ "$out" = ok ] || fail "order: printed '$out'"
ok "a receive waiting for rank 1 took rank 2's 1 MiB meanwhile; contents intact, buffers reused"
st=0
mpi -np 3 "$TP_BATCH" silent >out.txt 2>err.txt || st=$?
[ "$st" != 0 ] || fail "silent: exited 0"
grep -q '^tool_tp_batch: no message from rank 2 within 1 s (--timeout)$' err.txt || fail "silent: $(cat err.txt)"
ok "a silent rank: 'no message from rank 2 within 1 s (--timeout)'"
