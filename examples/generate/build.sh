#!/usr/bin/env bash
# Builds examples/generate for a KV-cache ONNX graph (inputs input_ids, attention_mask,
# position_ids, past_key_values.*; outputs logits, present.*; symbols batch, sequence,
# past_sequence):  build.sh MODEL.onnx TARGET OUT_DIR [MAX_LEN] [MAX_PROMPT]
#   TARGET: x86_64 | aarch64 | riscv64 (this machine's architecture is linked with gcc; the
#   others with Debian's cross compiler, statically: run them with qemu-<arch>). Needs the
#   slmtvm binary on PATH or in $SLMTVM.
set -euo pipefail
model=$1 target=$2 out=$3 max_len=${4:-64} max_prompt=${5:-16}
slmtvm=${SLMTVM:-slmtvm}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
# Both models lay the cache out for max_len tokens: prefill past + sequence <= max_len,
# decode past + 1 <= max_len.
"$slmtvm" build "$model" --target "$target" --name prefill -o "$out" \
    --dim batch=1 --bound sequence="$max_prompt" --bound past_sequence=$((max_len - max_prompt))
"$slmtvm" build "$model" --target "$target" --name decode -o "$out" \
    --dim batch=1 --dim sequence=1 --bound past_sequence=$((max_len - 1))
case "$target" in
    "$(uname -m)") cc=(gcc) ;;
    x86_64 | aarch64 | riscv64) cc=("$target-linux-gnu-gcc" -static) ;;
    *) echo "build.sh: unknown target $target" >&2; exit 2 ;;
esac
"${cc[@]}" -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -I"$out" "$here/generate.c" \
    "$out/prefill.o" "$out/decode.o" -o "$out/generate"
echo "built $out/generate"
