#!/bin/bash
# make_corpus.sh - writes the small seed files for tests/fuzz_safetensors.c
# into tests/corpus/safetensors/.  Each file: u64 LE header length, the JSON
# header, then the data bytes (all zero here; the values do not matter).
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)/safetensors"
mkdir -p "$out"

# seed NAME HEADER DATA_BYTES
seed() {
    local name=$1 hdr=$2 nd=$3 n=${#2} i
    {
        for ((i = 0; i < 8; i++)); do printf "\\x$(printf %02x $(((n >> (8 * i)) & 255)))"; done
        printf '%s' "$hdr"
        head -c "$nd" /dev/zero
    } >"$out/$name"
}

seed one_f32.safetensors \
    '{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}' 24
seed meta.safetensors \
    '{"__metadata__":{"format":"pt"},"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}}      ' 16
seed mixed.safetensors \
    '{"i":{"dtype":"I32","shape":[3],"data_offsets":[0,12]},"s":{"dtype":"U8","shape":[],"data_offsets":[12,13]},"z":{"dtype":"F64","shape":[0,7],"data_offsets":[13,13]},"q":{"dtype":"BOOL","shape":[1,1,1,1,1,1,1,3],"data_offsets":[13,16]}}' 16
seed lora.safetensors \
    '{"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},"base_model.model.transformer.h.0.attn.c_attn.lora_B.weight":{"dtype":"F32","shape":[12,2],"data_offsets":[32,128]}}' 128
seed empty.safetensors '{}' 0
seed gap.safetensors \
    '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}' 12
