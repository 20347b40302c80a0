#!/usr/bin/env bash
# Benchmark (not a test): latency, arena bytes and kernel count of models built with
# --opt-level 0 and with the optimizer (--opt-level 1), on this x86_64 host, with ONNX
# Runtime (1 thread) in the same run as the peer. Prints a Markdown table.
#   bash scripts/bench_optimizer.sh [RUNS]        (needs `cargo build --release`, python3 with
#                                                   onnxruntime for the peer column)
#   SLMTVM_BIN=path/to/slmtvm bash scripts/bench_optimizer.sh [RUNS]   (another build of slmtvm;
#                                                   the compiler's own profile does not change the code)
# Models: the MiniLM-class encoder (.cache/minilm, made by scripts/make_minilm.py) and the
# committed bert_tiny and Llama-style decoder tests/models/llama_tiny.
set -euo pipefail
runs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMTVM_BIN:-$root/target/release/slmtvm}
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -q)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| model | opt-level | kernels | arena bytes | slmtvm median µs | ONNX Runtime median µs | ratio |"
echo "|---|---|---:|---:|---:|---:|---:|"
for spec in "minilm:$root/.cache/minilm" "bert_tiny:$root/tests/models/bert_tiny" "llama_tiny:$root/tests/models/llama_tiny"; do
    name=${spec%%:*} dir=${spec#*:}
    [ -f "$dir/model.onnx" ] || { echo "skipping $name: $dir/model.onnx not found (python3 scripts/make_minilm.py)" >&2; continue; }
    ort=$(python3 - "$dir" "$runs" <<'PY' 2>/dev/null || echo "n/a"
import sys, time, glob, os, numpy as np, onnx, onnxruntime as ort
d, runs = sys.argv[1], int(sys.argv[2])
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
m = onnx.load(os.path.join(d, "model.onnx"))
m.ir_version = min(m.ir_version, 10)  # older ONNX Runtime wheels refuse newer IR versions
s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
feed = {i.name: np.load(os.path.join(d, "inputs", i.name + ".npy")) for i in s.get_inputs()}
s.run(None, feed)
t = []
for _ in range(runs):
    a = time.perf_counter(); s.run(None, feed); t.append((time.perf_counter() - a) * 1e6)
print(f"{np.median(t):.0f}")
PY
)
    for level in 0 1; do
        out=$work/$name-$level
        "$bin" run "$dir/model.onnx" --target x86_64 --cpu x86_64-v3 --opt-level "$level" \
            --input-dir "$dir/inputs" -o "$out" >/dev/null
        kernels=$(python3 -c "import json,sys; m=json.load(open(sys.argv[1])); print(m['kernels'], m['arena_bytes'])" "$out/build/model.json")
        exe=$(ls "$out"/build/*.run)
        mkdir -p "$work/o-$name-$level"
        lat=$("$exe" -t "$runs" "$dir/inputs" "$work/o-$name-$level" | awk '/^latency_us:/ {printf "%.0f", $2}')
        ratio=$(python3 -c "import sys; a,b=sys.argv[1],sys.argv[2]; print(f'{float(a)/float(b):.2f}x' if b!='n/a' else 'n/a')" "$lat" "$ort")
        set -- $kernels
        echo "| $name | $level | $1 | $2 | $lat | $ort | $ratio |"
    done
done
