#!/usr/bin/env bash
# A recorded check (not a test) for refactors that must not change the generated code: builds
# every committed model (tests/models/*, examples/*, and .cache/minilm when present) for
# x86_64, x86_64-v3, aarch64 and riscv64-v (and threaded builds, --threads 2 and 3, for
# x86_64-v3 and aarch64) with the given slmtvm binary and prints one sha256 per output file
# (.o, .h, .json). Run it before and after a change and diff the two lists.
# A symbol without a bound gets --bound SYM=24.
#   bash scripts/build_hashes.sh target/debug/slmtvm /tmp/builds > before.txt
set -uo pipefail
bin=$(realpath "${1:?the slmtvm binary}"); out=${2:?a scratch folder (emptied)}
rm -rf "$out"; mkdir -p "$out"; out=$(realpath "$out")
cd "$(dirname "$0")/.."
for m in tests/models/*/model.onnx examples/*/model.onnx .cache/minilm/model.onnx; do
    [ -f "$m" ] || continue
    n=$(basename "$(dirname "$m")")
    for tc in x86_64:: x86_64:x86_64-v3: aarch64:: riscv64:riscv64-v: x86_64:x86_64-v3:2 aarch64::3; do
        IFS=: read -r t c th <<<"$tc"
        d="$out/$n-$t-$c${th:+-t$th}"
        flags=(--target "$t")
        [ -n "$c" ] && flags+=(--cpu "$c")
        [ -n "$th" ] && flags+=(--threads "$th")
        for _ in 1 2 3 4; do
            if "$bin" build "$m" "${flags[@]}" -o "$d" >/dev/null 2>"$d.err"; then break; fi
            sym=$(grep -oE 'symbol [A-Za-z_0-9]+ has no upper bound' "$d.err" | awk '{print $2}')
            [ -n "$sym" ] || { echo "FAIL $n $tc: $(head -c 200 "$d.err")"; break; }
            flags+=(--bound "$sym=24")
        done
    done
done
cd "$out" && find . -type f ! -name '*.err' | sort | xargs sha256sum
