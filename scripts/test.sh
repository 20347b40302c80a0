#!/usr/bin/env bash
# Installs everything the tests need, then runs every test of the workspace.
#   bash scripts/test.sh
# Needs: cargo (rustup), python3 with pip, apt-get (Debian). Installs: the cross compilers
# and qemu-user (Debian packages, when missing) and the PyPI packages in
# scripts/requirements-test.txt. Generates the ONNX backend node tests into .cache/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing cross toolchains and qemu-user (Debian)"
# Every architecture other than this host's needs its cross compiler and qemu-user (the host's
# own is gcc, run natively).
need=()
tools=(gcc:gcc)
for arch in x86_64 aarch64 riscv64; do
    [ "$arch" = "$(uname -m)" ] && continue
    tools+=("$arch-linux-gnu-gcc:gcc-${arch//_/-}-linux-gnu" "qemu-$arch:qemu-user")
done
for tool in "${tools[@]}"; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

echo "== installing Python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-test.txt

echo "== generating ONNX backend node tests into .cache/onnx-node-tests"
python3 scripts/gen_node_tests.py .cache/onnx-node-tests

echo "== writing a MiniLM-class encoder into .cache/minilm"
[ -f .cache/minilm/model.onnx ] || python3 scripts/make_minilm.py .cache/minilm

echo "== writing a Llama-class decoder into .cache/llama"
[ -f .cache/llama/model.onnx ] || python3 scripts/make_llama.py .cache/llama

echo "== writing it again with a dynamic sequence length into .cache/llama_dyn"
[ -f .cache/llama_dyn/len8/expected/logits.npy ] || python3 scripts/make_llama.py .cache/llama_dyn --dynamic

echo "== recording ONNX Runtime's greedy continuations of random prompts on it"
[ -f .cache/llama/greedy/tokens.npy ] || python3 scripts/make_greedy.py .cache/llama

echo "== training a small Llama-style decoder on synthetic sequences into .cache/trained (about 3 minutes)"
[ -f .cache/trained/greedy/ort_agreement.json ] || python3 scripts/make_trained.py .cache/trained

echo "== writing the dynamic-axes decoders with positions computed from the mask into .cache/mask_positions"
[ -f .cache/mask_positions/llama_tiny_dynamo/len20/expected/logits.npy ] || python3 scripts/make_mask_positions.py .cache/mask_positions

echo "== quantizing the MiniLM-class encoder with ONNX Runtime's tools into .cache/minilm_{int8,q4,q4s,qop,qdq}"
for kind in int8 q4 q4s qop qdq; do
    [ -f .cache/minilm_$kind/ort/last_hidden_state.npy ] || python3 scripts/make_quantized.py .cache/minilm .cache/minilm_$kind $kind
done

echo "== writing one model per QOperator-form operator case with ONNX Runtime's outputs into .cache/qlinear"
[ -f .cache/qlinear/qlinearsoftmax_u8/ort/y.npy ] || python3 scripts/make_qlinear.py .cache/qlinear

echo "== cargo test --workspace"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --locked 2>&1 | tee "$log"
# One closing line over all test binaries (cargo prints one "test result" line per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i; if ($(i+1) ~ /^ignored;?$/) s += $i } }
     END { printf "summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
