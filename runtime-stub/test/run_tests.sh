#!/usr/bin/env bash
# Tests runtime-stub/harness.c without the compiler, against hand-written models that implement
# the slmtvm C API (fake_model.*, edge_model.*, noin_model.*), on every target:
#
#   native     gcc                                    run directly
#   aarch64    aarch64-linux-gnu-gcc -static          qemu-aarch64 -cpu cortex-a53
#   riscv64    riscv64-linux-gnu-gcc -static          qemu-riscv64
#   riscv64-v  (the riscv64 binaries)                 qemu-riscv64 -cpu rv64,v=true,vlen=128,vext_spec=v1.0
#
# Every model object and harness is built with -Wall -Wextra -Wpedantic -Werror. Input files
# come from cases.py (python3 + numpy), which also checks the outputs exactly. A cross target
# is skipped, naming the Debian package, only when its compiler or qemu is not installed.
# Prints one line per check and `harness: N passed, N failed`; exits 1 if anything failed.
#
#   bash runtime-stub/test/run_tests.sh [-v]      (-v: also print the harness's output)
set -u

here=$(cd "$(dirname "$0")" && pwd)
stub=$(dirname "$here")
verbose=0
[ "${1:-}" = "-v" ] && verbose=1
work=$(mktemp -d "${TMPDIR:-/tmp}/slmtvm-harness.XXXXXX")
trap 'rm -rf "$work"' EXIT

WARN=(-Wall -Wextra -Wpedantic -Werror)
passed=0
failed=0

pass() {
    passed=$((passed + 1))
    echo "ok    $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL  $1"
    if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -20 | sed 's/^/      /'; fi
}
finish() {
    echo "harness: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if ! python3 -c 'import numpy' 2>/dev/null; then
    fail "python3 with numpy is needed to write the test inputs"
    finish
fi
if ! out=$(python3 "$here/cases.py" make "$work/in" 2>&1); then
    fail "cases.py make" "$out"
    finish
fi

# build TARGET LABEL OUTPUT COMMAND...: runs a compiler command; records a check.
build() {
    local target=$1 label=$2 output=$3
    shift 3
    local log
    if log=$("$@" 2>&1) && [ -z "$log" ] && [ -x "$output" -o "${output%.o}" != "$output" ]; then
        pass "$target: build $label (warning-free)"
        return 0
    fi
    fail "$target: build $label" "$* :: $log"
    return 1
}

# harness_build TARGET CC STATIC MODEL OUTPUT [EXTRA FLAGS...]: the compile line slmtvm uses.
harness_build() {
    local target=$1 cc=$2 static=$3 model=$4 output=$5
    shift 5
    local upper
    upper=$(printf '%s' "$model" | tr '[:lower:]' '[:upper:]')
    build "$target" "harness+$model${*:+ ($*)}" "$output" \
        "$cc" -O2 -std=c99 "$@" -DSLMTVM_MODEL="$model" -DSLMTVM_MODEL_UPPER="$upper" \
        -include "$here/${model}_model.h" "$stub/harness.c" "$work/$target/$model.o" -o "$output" \
        $static "${WARN[@]}"
}

# run_case TARGET LABEL WANT_RC WANT_STDERR BINARY ARGS...: runs the harness (under the
# target's runner); rc must be WANT_RC; for rc 2 stderr must be exactly one `harness error:`
# line containing WANT_STDERR, for rc 0 stderr must be empty. Leaves stdout in $last_stdout.
last_stdout=""
run_case() {
    local target=$1 label=$2 want_rc=$3 want_err=$4
    shift 4
    local so="$work/stdout" se="$work/stderr" rc
    ${runner[@]+"${runner[@]}"} "$@" >"$so" 2>"$se"
    rc=$?
    last_stdout=$(cat "$so")
    local err
    err=$(cat "$se")
    if [ "$verbose" = 1 ]; then
        printf '%s\n' "$last_stdout" "$err" | grep -v '^$' | sed "s/^/      [$target $label] /"
    fi
    if [ "$rc" != "$want_rc" ]; then
        fail "$target: $label: exit $rc, expected $want_rc" "$last_stdout"$'\n'"$err"
        return 1
    fi
    if [ "$want_rc" = 0 ]; then
        if [ -n "$err" ]; then
            fail "$target: $label: unexpected stderr" "$err"
            return 1
        fi
    else
        local lines
        lines=$(wc -l <"$se")
        if [ "$lines" != 1 ] || [ "${err#harness error: }" = "$err" ] || [ "${err#*"$want_err"}" = "$err" ]; then
            fail "$target: $label: expected one line 'harness error: ...$want_err...' on stderr" "$err"
            return 1
        fi
    fi
    return 0
}

# outdir LABEL: a fresh output directory.
outdir() {
    local d="$work/$target/out_$1"
    rm -rf "$d"
    mkdir -p "$d"
    printf '%s' "$d"
}

test_target() {
    target=$1
    local cc=$2 static=$3
    local bin="$work/$target" in="$work/in" o
    mkdir -p "$bin"

    local m built=1
    for m in fake edge noin; do
        build "$target" "$m.o" "$bin/$m.o" "$cc" -O2 -std=c99 "${WARN[@]}" -c "$here/${m}_model.c" -o "$bin/$m.o" &&
            harness_build "$target" "$cc" "$static" "$m" "$bin/run_$m" -D_POSIX_C_SOURCE=200809L || built=0
    done
    # The bare C99 command (no _POSIX_C_SOURCE): clock_gettime is declared by the harness.
    harness_build "$target" "$cc" "$static" fake "$bin/run_fake_c99" || built=0
    build "$target" "fake_api_test" "$bin/fake_api_test" "$cc" -O2 -std=c99 "${WARN[@]}" \
        "$here/fake_api_test.c" "$here/fake_model.c" -o "$bin/fake_api_test" $static || built=0
    [ "$built" = 1 ] || return

    # The fake model against the C API directly.
    run_case "$target" "fake_api_test" 0 "" "$bin/fake_api_test" && pass "$target: fake model API (NULLs, alignment, results)"

    # Valid inputs: outputs exact and byte-identical to np.save; the printed lines.
    local case
    for case in ok v2v3 hand; do
        o=$(outdir "fake_$case")
        if run_case "$target" "fake $case" 0 "" "$bin/run_fake" "$in/fake/$case" "$o"; then
            local want="y: f32[2, 3] -> $o/y.npy"$'\n'"n: i64[4] -> $o/n.npy"
            if [ "$last_stdout" != "$want" ]; then
                fail "$target: fake $case: stdout" "$last_stdout"
            elif chk=$(python3 "$here/cases.py" check fake "$in/fake/ok" "$o" 2>&1); then
                pass "$target: fake $case: outputs exact, printed lines"
            else
                fail "$target: fake $case: outputs" "$chk"
            fi
        fi
    done

    # Timing, with both builds.
    local exe
    for exe in run_fake run_fake_c99; do
        o=$(outdir "fake_t_$exe")
        if run_case "$target" "$exe -t 5" 0 "" "$bin/$exe" -t 5 "$in/fake/ok" "$o"; then
            local lat
            lat=$(printf '%s\n' "$last_stdout" | sed -n 3p)
            if [ "$(printf '%s\n' "$last_stdout" | wc -l)" = 3 ] &&
                printf '%s\n' "$lat" | grep -Eq '^latency_us: [0-9]+\.[0-9]{3} [0-9]+\.[0-9]{3} [0-9]+\.[0-9]{3}$' &&
                printf '%s\n' "$lat" | awk '{ exit !($3 <= $2 && $2 <= $4) }' &&
                python3 "$here/cases.py" check fake "$in/fake/ok" "$o" >/dev/null 2>&1; then
                pass "$target: $exe -t 5: $lat"
            else
                fail "$target: $exe -t 5: output" "$last_stdout"
            fi
        fi
    done

    # Error paths: exit 2 and one `harness error:` line.
    local spec
    for spec in \
        "missing|input 'ids': cannot open" \
        "bad_shape|has shape [3, 2], expected [2, 3]" \
        "bad_rank|has shape [6], expected [2, 3]" \
        "bad_dtype|has dtype '<f8', expected '<f4' (f32)" \
        "big_endian|has dtype '>f4'" \
        "fortran|Fortran order" \
        "structured|unsupported descr" \
        "bad_magic|bad magic" \
        "bad_version|version 4.0" \
        "truncated|truncated data (20 of 24 bytes)" \
        "trailing|data after the 24 bytes" \
        "bad_header|unexpected or repeated key 'shap'"; do
        case=${spec%%|*}
        o=$(outdir "fake_$case")
        run_case "$target" "fake $case" 2 "${spec#*|}" "$bin/run_fake" "$in/fake/$case" "$o" &&
            pass "$target: fake $case -> exit 2: ${spec#*|}"
    done
    run_case "$target" "no output dir" 2 "cannot create $work/none/y.npy" "$bin/run_fake" "$in/fake/ok" "$work/none" &&
        pass "$target: missing OUT_DIR -> exit 2"
    run_case "$target" "no arguments" 2 "usage:" "$bin/run_fake" && pass "$target: no arguments -> exit 2 (usage)"
    run_case "$target" "-t 0" 2 "-t 0: expected a number" "$bin/run_fake" -t 0 "$in/fake/ok" "$work" &&
        pass "$target: -t 0 -> exit 2"
    run_case "$target" "-t x" 2 "-t x: expected a number" "$bin/run_fake" -t x "$in/fake/ok" "$work" &&
        pass "$target: -t x -> exit 2"

    # Corners: scalars only on the input side (INPUT_DIMS = {}), f16/bool/i8/u8/i32, a
    # zero-element output, sanitized and colliding stems, a zero-byte workspace.
    o=$(outdir edge_ok)
    if run_case "$target" "edge ok" 0 "" "$bin/run_edge" "$in/edge/ok" "$o"; then
        local want
        want="m:0: bool[3] -> $o/m_0.npy"$'\n'"m/0: i8[2] -> $o/m_0_1.npy"$'\n'"h: f16[] -> $o/h.npy"
        want+=$'\n'"u: u8[0] -> $o/u.npy"$'\n'": i32[1, 1] -> $o/_.npy"
        if [ "$last_stdout" != "$want" ]; then
            fail "$target: edge ok: stdout" "$last_stdout"
        elif chk=$(python3 "$here/cases.py" check edge "$in/edge/ok" "$o" 2>&1); then
            pass "$target: edge model (scalars, zero-size, stems, all small dtypes): outputs exact"
        else
            fail "$target: edge ok: outputs" "$chk"
        fi
    fi
    o=$(outdir edge_bad_bool)
    run_case "$target" "edge bad_bool" 2 "bool element 0 is 2" "$bin/run_edge" "$in/edge/bad_bool" "$o" &&
        pass "$target: bool input holding 2 -> exit 2"
    # No inputs at all (NUM_INPUTS 0, empty tables).
    o=$(outdir noin)
    if run_case "$target" "noin" 0 "" "$bin/run_noin" "$in/noin/ok" "$o"; then
        if chk=$(python3 "$here/cases.py" check noin "$in/noin/ok" "$o" 2>&1); then
            pass "$target: model without inputs: outputs exact"
        else
            fail "$target: noin: outputs" "$chk"
        fi
    fi
}

# The harness's own checks of a misbehaving model and of an inconsistent header (native only).
test_faults() {
    target=native
    local bin="$work/native" in="$work/in" spec n want o
    for spec in \
        "1||fake_run returned status 42" \
        "2||fake_run wrote outside output 'y' (byte 24" \
        "3||fake_run modified input 'x'" \
        "4|-t 3|output 'n' differs between runs"; do
        n=${spec%%|*}
        want=${spec##*|}
        spec=${spec#*|}
        spec=${spec%%|*}
        build native "fake.o with FAKE_FAULT=$n" "$bin/fake_f$n.o" gcc -O2 -std=c99 "${WARN[@]}" -DFAKE_FAULT="$n" \
            -c "$here/fake_model.c" -o "$bin/fake_f$n.o" || continue
        build native "harness+fake_f$n" "$bin/run_f$n" gcc -O2 -std=c99 -D_POSIX_C_SOURCE=200809L \
            -DSLMTVM_MODEL=fake -DSLMTVM_MODEL_UPPER=FAKE -include "$here/fake_model.h" "$stub/harness.c" \
            "$bin/fake_f$n.o" -o "$bin/run_f$n" "${WARN[@]}" || continue
        o=$(outdir "fault$n")
        # shellcheck disable=SC2086 # $spec is an optional `-t N`
        run_case native "FAKE_FAULT=$n" 2 "$want" "$bin/run_f$n" $spec "$in/fake/ok" "$o" &&
            pass "native: model fault $n caught: $want"
    done
    o=$(outdir fault4_once)
    run_case native "FAKE_FAULT=4 single run" 0 "" "$bin/run_f4" "$in/fake/ok" "$o" &&
        pass "native: FAKE_FAULT=4 without -t runs (state only shows across runs)"

    # A header whose tables disagree.
    sed 's/^#define FAKE_OUTPUT_BYTES_LIST {24, 32}$/#define FAKE_OUTPUT_BYTES_LIST {24, 33}/' \
        "$here/fake_model.h" >"$bin/fake_badbytes.h"
    if build native "harness with an inconsistent header" "$bin/run_badbytes" gcc -O2 -std=c99 \
        -D_POSIX_C_SOURCE=200809L -DSLMTVM_MODEL=fake -DSLMTVM_MODEL_UPPER=FAKE -include "$bin/fake_badbytes.h" \
        "$stub/harness.c" "$bin/fake.o" -o "$bin/run_badbytes" "${WARN[@]}"; then
        o=$(outdir badbytes)
        run_case native "inconsistent header" 2 "output 'n' is i64[4] but FAKE_OUTPUT_BYTES_LIST says 33 bytes" \
            "$bin/run_badbytes" "$in/fake/ok" "$o" && pass "native: inconsistent header tables -> exit 2"
    fi

    # Misuse of the preprocessor interface fails at compile time with a pointer to the docs.
    local log
    if log=$(gcc -std=c99 -include "$here/fake_model.h" -c "$stub/harness.c" -o "$bin/x.o" 2>&1); then
        fail "native: harness without -DSLMTVM_MODEL compiles"
    elif printf '%s' "$log" | grep -q 'define SLMTVM_MODEL=NAME and SLMTVM_MODEL_UPPER=NAME_UPPER'; then
        pass "native: missing -DSLMTVM_MODEL -> #error naming the macros"
    else
        fail "native: missing -DSLMTVM_MODEL: unexpected compiler message" "$log"
    fi
    if log=$(gcc -std=c99 -DSLMTVM_MODEL=fake -DSLMTVM_MODEL_UPPER=FAKE -c "$stub/harness.c" -o "$bin/x.o" 2>&1); then
        fail "native: harness without -include NAME.h compiles"
    elif printf '%s' "$log" | grep -q 'compile with -include NAME.h'; then
        pass "native: missing -include NAME.h -> #error"
    else
        fail "native: missing -include: unexpected compiler message" "$log"
    fi

    # Caller buffers 64-aligned instead of naturally aligned.
    if harness_build native gcc "" fake "$bin/run_align64" -D_POSIX_C_SOURCE=200809L -DSLMTVM_HARNESS_IO_ALIGN=64; then
        o=$(outdir align64)
        run_case native "SLMTVM_HARNESS_IO_ALIGN=64" 0 "" "$bin/run_align64" "$in/fake/ok" "$o" &&
            python3 "$here/cases.py" check fake "$in/fake/ok" "$o" >/dev/null &&
            pass "native: SLMTVM_HARNESS_IO_ALIGN=64 build: outputs exact"
    fi
}

host=$(uname -m)
runner=()
test_target native gcc ""
test_faults
# name | compiler | Debian package | qemu command
for spec in \
    "aarch64|aarch64-linux-gnu-gcc|gcc-aarch64-linux-gnu|qemu-aarch64 -cpu cortex-a53" \
    "riscv64|riscv64-linux-gnu-gcc|gcc-riscv64-linux-gnu|qemu-riscv64" \
    "riscv64-v|riscv64-linux-gnu-gcc|gcc-riscv64-linux-gnu|qemu-riscv64 -cpu rv64,v=true,vlen=128,vext_spec=v1.0"; do
    IFS='|' read -r name cc pkg qemu <<<"$spec"
    if [ "${name%-v}" = "$host" ]; then
        echo "skip  $name: the host is $host (covered by native)"
        continue
    fi
    read -ra runner <<<"$qemu"
    if ! command -v "$cc" >/dev/null 2>&1; then
        echo "skip  $name: $cc is not installed (Debian package $pkg)"
        continue
    fi
    if ! command -v "${runner[0]}" >/dev/null 2>&1; then
        echo "skip  $name: ${runner[0]} is not installed (Debian package qemu-user)"
        continue
    fi
    test_target "$name" "$cc" -static
done
finish
