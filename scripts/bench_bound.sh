#!/usr/bin/env bash
# Benchmark (not a test) of issue 20's goal on this host: the Llama-class prefill on one object
# built for every length up to 512 (`--bound sequence=512`) against an object built for exactly
# the prompt's length (`--dim sequence=N`), at 8 tokens and at 64 (the last 5 padded). Each line
# is `slmtvm bench --runs RUNS --rounds ROUNDS` (default 10 and 3): the median over the rounds,
# with ONNX Runtime timed in the same run as the yardstick for a noisy host. Prints a Markdown
# table with the bound/exact ratio of the slmtvm medians and of the ratios to ONNX Runtime.
#   bash scripts/bench_bound.sh [RUNS [ROUNDS]]
# Needs a release build (built if missing), python3 with numpy, onnx and onnxruntime, and
# .cache/llama_dyn (python3 scripts/make_llama.py .cache/llama_dyn --dynamic; the test set-up
# writes it).
set -euo pipefail
runs=${1:-10}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SLMTVM_BIN:-$root/target/release/slmtvm}
[ -x "$bin" ] || (cd "$root" && cargo build --release --locked -q)
model=$root/.cache/llama_dyn
[ -f "$model/len8/inputs/input_ids.npy" ] || python3 "$root/scripts/make_llama.py" "$model" --dynamic >/dev/null
ms() { # prints "slmtvm_ms ort_ms" for one bench run
    "$bin" bench "$model/model.onnx" "$@" --runs "$runs" --rounds "$rounds" --json |
        python3 -c 'import json,sys; j=json.load(sys.stdin); r={x["runtime"]: x["median_us"] / 1e3 for x in j["results"]}; print(r["slmtvm"], r.get("onnxruntime", float("nan")))'
}
echo "| tokens | bound 512 ms | exact ms | bound / exact | ORT ms (bound run, exact run) | normalized by ORT |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in 8 64; do
    ins=$model/len8/inputs
    [ "$n" = 64 ] && ins=$model/inputs
    read -r b bo < <(ms --bound sequence=512 --input-dir "$ins")
    read -r e eo < <(ms --dim sequence=$n --input-dir "$ins")
    python3 -c "b,bo,e,eo=map(float,'$b $bo $e $eo'.split()); print(f'| $n | {b:.2f} | {e:.2f} | {b/e:.2f}x | {bo:.2f}, {eo:.2f} | {(b/bo)/(e/eo):.2f}x |')"
done
