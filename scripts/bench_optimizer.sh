#!/usr/bin/env bash
# Benchmark (not a test): latency, arena bytes and kernel count of models built with
# --opt-level 0 and with the optimizer (--opt-level 1), on this host, beside ONNX Runtime and
# tract (1 thread) timed by `slmtvm bench` in the same run. Prints a Markdown table.
#   bash scripts/bench_optimizer.sh [RUNS]        (builds `cargo build --release` if needed;
#                                                   the peers need python3 with onnxruntime/tract)
#   SLMTVM_BIN=path/to/slmtvm bash scripts/bench_optimizer.sh [RUNS]   (another build of slmtvm)
# Models: the MiniLM-class encoder (.cache/minilm, made by scripts/make_minilm.py) and the
# committed bert_tiny and Llama-style decoder tests/models/llama_tiny, on their recorded inputs.
set -euo pipefail
runs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMTVM_BIN:-$root/target/release/slmtvm}
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| model | opt-level | kernels | arena bytes | slmtvm median µs | ONNX Runtime median µs | tract median µs | slmtvm / ORT |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for spec in "minilm:$root/.cache/minilm" "bert_tiny:$root/tests/models/bert_tiny" "llama_tiny:$root/tests/models/llama_tiny"; do
    name=${spec%%:*} dir=${spec#*:}
    [ -f "$dir/model.onnx" ] || { echo "skipping $name: $dir/model.onnx not found (python3 scripts/make_minilm.py)" >&2; continue; }
    for level in 0 1; do
        out=$work/$name-$level
        "$bin" bench "$dir/model.onnx" --opt-level "$level" --input-dir "$dir/inputs" --runs "$runs" --json -o "$out" > "$out.json"
        python3 - "$out.json" "$out/build/model.json" "$name" "$level" <<'PY'
import json, sys
b, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
t = {r["runtime"]: r["median_us"] for r in b["results"]}
f = lambda k: f"{t[k]:.0f}" if k in t else "n/a"
ratio = f"{t['slmtvm'] / t['onnxruntime']:.2f}x" if "onnxruntime" in t else "n/a"
print(f"| {sys.argv[3]} | {sys.argv[4]} | {m['kernels']} | {m['arena_bytes']} | {f('slmtvm')} | {f('onnxruntime')} | {f('tract')} | {ratio} |")
PY
    done
done
