#!/usr/bin/env bash
# Benchmark (not a test) of issue 6's goals on this host, with ONNX Runtime and tract timed by
# `slmtvm bench` in the same run on the same inputs and thread count. Prints a Markdown table:
# the MiniLM-class encoder (seq 128) and the Llama-class decoder prefill (seq 64) at 1 and 2
# threads, and a 512x512x512 f32 MatMul with its fraction of the measured FMA peak.
#   bash scripts/bench_kernels.sh [RUNS [ROUNDS]] [-- extra slmtvm bench flags, e.g. --schedule avx2:6x16x256]
# Each row: ROUNDS (default 5) rounds of RUNS (default 20) timed runs per runtime, the runtimes
# taking turns (`bench --rounds`): medians over the rounds, ratios the median of the rounds'.
# Needs a release build (built if missing), python3 with numpy, onnx, onnxruntime and tract
# (scripts/requirements-test.txt), and the models in .cache (python3 scripts/make_minilm.py
# .cache/minilm; python3 scripts/make_llama.py .cache/llama; missing ones are skipped).
set -euo pipefail
runs=${1:-20}
shift || true
rounds=5
if [ -n "${1:-}" ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
[ "${1:-}" = "--" ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMTVM_BIN:-$root/target/release/slmtvm}
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/mm512" <<'PY'
import os, sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
out, n = sys.argv[1], 512
os.makedirs(f"{out}/inputs", exist_ok=True)
rng = np.random.default_rng(0)
b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "mm512",
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [b])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f"{out}/model.onnx")
np.save(f"{out}/inputs/a.npy", rng.standard_normal((n, n)).astype(np.float32))
PY
echo "| model | threads | slmtvm median ms | ONNX Runtime median ms | tract median ms | slmtvm / faster peer | note |"
echo "|---|---:|---:|---:|---:|---:|---|"
row() {
    local name=$1 dir=$2 threads=$3 kernels=$4
    shift 4
    local out=$work/$name-$threads
    local flags=(--input-dir "$dir/inputs" --runs "$runs" --rounds "$rounds" --threads "$threads" --json -o "$out")
    [ "$kernels" = yes ] && flags+=(--kernels)
    "$bin" bench "$dir/model.onnx" "${flags[@]}" "$@" > "$out.json"
    python3 - "$out.json" "$name" "$threads" <<'PY'
import json, sys
b = json.load(open(sys.argv[1]))
t = {r["runtime"]: r["median_us"] / 1e3 for r in b["results"]}
f = lambda k: f"{t[k]:.3f}" if k in t else "n/a"
# slmtvm over the faster peer: that peer's ratio, the median of the rounds' paired ratios.
peers = [r for r in b["results"] if r["runtime"] in ("onnxruntime", "tract")]
ratio = f"{min(peers, key=lambda r: r['median_us'])['slmtvm_ratio']:.2f}x" if peers else "n/a"
note = ""
p = b.get("profile")
if p:
    prods = [k for k in p["kernels"] if k.get("peak_fraction") is not None]
    if prods:
        best = max(k["peak_fraction"] for k in prods)
        note = f"product at {100 * best:.0f}% of the {p['lanes']}-lane FMA peak ({p['peak_gflops']:.0f} GFLOP/s)"
print(f"| {sys.argv[2]} | {sys.argv[3]} | {f('slmtvm')} | {f('onnxruntime')} | {f('tract')} | {ratio} | {note} |")
PY
}
for spec in "MiniLM-class encoder, seq 128:$root/.cache/minilm" "Llama-class decoder prefill, seq 64:$root/.cache/llama"; do
    name=${spec%%:*} dir=${spec#*:}
    [ -f "$dir/model.onnx" ] || { echo "skipping $name: $dir/model.onnx not found" >&2; continue; }
    for threads in 1 2; do
        row "$name" "$dir" "$threads" no "$@"
    done
done
row "MatMul 512x512x512" "$work/mm512" 1 yes "$@"
