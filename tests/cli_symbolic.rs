//! Symbolic dims with bounds through the binary: one object built with `--bound` runs at
//! several shapes up to the bounds, natively and under qemu-user, matching ONNX Runtime; the
//! header and manifest expose the symbols and bounds; an unbounded symbol is a clear error.

use slmtvm_frontend::npy::read_npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slmtvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models/bert_tiny_dynamic")
}

fn fresh(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-sym-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Checks the output file `got` against the reference `want` ([`slmtvm_tests::close_to`] at
/// 1e-4); gives its shape.
fn check_output(got: &Path, want: &Path, what: &str) -> Vec<usize> {
    let (g, w) = (read_npy(got).unwrap(), read_npy(want).unwrap());
    slmtvm_tests::close_to(&w, &g, 1e-4).unwrap_or_else(|e| panic!("{what} {}: {e}", got.display()));
    g.shape().to_vec()
}

#[test]
fn one_bounded_build_runs_at_every_shape_on_every_target() {
    let m = model().join("model.onnx");
    let m = m.to_str().unwrap();
    for target in ["x86_64", "aarch64", "riscv64"] {
        // Natively or under qemu-user, as this machine can (a skip prints why; CI=true fails).
        if slmtvm_tests::cross::runnable(target).is_none() {
            continue;
        }
        // Batch 2 x seq 16 (unpadded) and batch 3 x seq 9 (a padded row), both below the bounds.
        for (set, dims) in [("", [2usize, 16]), ("shape2", [3, 9])] {
            let dir = if set.is_empty() { model() } else { model().join(set) };
            let out = fresh(&format!("{target}-{}", dims[1]));
            let inputs = dir.join("inputs");
            ok(&slmtvm(&[
                "run",
                m,
                "--target",
                target,
                "--bound",
                "batch=4",
                "--bound",
                "seq=32",
                "--input-dir",
                inputs.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ]));
            for name in ["last_hidden_state", "pooler_output"] {
                let what = format!("{target} {name} at {dims:?}");
                let shape = check_output(
                    &out.join(format!("{name}.npy")),
                    &dir.join("expected").join(format!("{name}.npy")),
                    &what,
                );
                assert_eq!(shape[0], dims[0], "{what}");
            }
            // The object is the same whatever shape it runs at: built once for the bounds.
            let h = std::fs::read_to_string(out.join("build/model.h")).unwrap();
            assert!(h.contains("#define MODEL_SYMBOL_seq_BOUND 32"), "{h}");
            assert!(h.contains("int model_run(const int64_t* symbols,"), "{h}");
            assert!(h.contains("#define MODEL_INPUT_0_SHAPE {4, 32}"), "{h}");
        }
    }
}

/// Builds bert_tiny_dynamic for this machine's architecture as `bd` into `out` with
/// batch <= 4 and seq <= 32.
fn build_bounded(out: &Path) {
    let m = model().join("model.onnx");
    let native = slmtvm_tests::cross::native_preset();
    let args = ["build", m.to_str().unwrap(), "--target", native, "--bound", "batch=4", "--bound", "seq=32", "-o"];
    let mut args = args.to_vec();
    args.extend_from_slice(&[out.to_str().unwrap(), "--name", "bd"]);
    ok(&slmtvm(&args));
}

#[test]
fn manifest_lists_symbols_and_physical_shapes() {
    let out = fresh("manifest");
    build_bounded(&out);
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("bd.json")).unwrap()).unwrap();
    assert_eq!(j["symbols"], serde_json::json!([{"name": "batch", "bound": 4}, {"name": "seq", "bound": 32}]));
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([4, 32]));
    assert_eq!(j["inputs"][0]["dims"], serde_json::json!(["batch", "seq"]));
    assert_eq!(j["inputs"][0]["bytes"], 4 * 32 * 8);
    // The arena is planned at the bounds: larger than the static 2 x 16 build's.
    let m = model().join("model.onnx");
    let st = fresh("static");
    ok(&slmtvm(&[
        "build",
        m.to_str().unwrap(),
        "--target",
        "x86_64",
        "--dim",
        "batch=2",
        "--dim",
        "seq=16",
        "-o",
        st.to_str().unwrap(),
        "--name",
        "bs",
    ]));
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(st.join("bs.json")).unwrap()).unwrap();
    assert_eq!(s["symbols"], serde_json::json!([]));
    assert!(j["arena_bytes"].as_u64().unwrap() > s["arena_bytes"].as_u64().unwrap());
}

/// Runs `build` of the model for x86_64 into `out` with `flags`; expects exit 2 and returns
/// the error text.
fn build_error(out: &Path, flags: &[&str]) -> String {
    let m = model().join("model.onnx");
    let mut args = vec!["build", m.to_str().unwrap(), "--target", "x86_64", "-o", out.to_str().unwrap()];
    args.extend_from_slice(flags);
    let o = slmtvm(&args);
    assert_eq!(o.status.code(), Some(2), "{flags:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unbounded_or_unknown_symbols_are_clear_errors() {
    let out = fresh("errors");
    let e = build_error(&out, &["--bound", "batch=4"]);
    assert!(e.contains("symbol seq has no upper bound") && e.contains("--bound seq=N"), "{e}");
    let e = build_error(&out, &["--bound", "sequence=4"]);
    assert!(e.contains("symbol sequence is not a dim of any graph input") && e.contains("batch, seq"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing written on error");
}

#[test]
fn inspect_reports_kv_cache_bytes_and_arena_for_a_decoder() {
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models/llama_kv/model.onnx");
    let o = slmtvm(&[
        "inspect",
        m.to_str().unwrap(),
        "--json",
        "--dim",
        "batch=1",
        "--dim",
        "sequence=1",
        "--bound",
        "past_sequence=511",
    ]);
    let j: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let kv = &j["memory"]["kv_cache"];
    // 2 layers x (key, value) x 2 KV heads x head dim 8 x 4 bytes.
    assert_eq!(kv["bytes_per_token"], 2 * 2 * 2 * 8 * 4);
    assert_eq!(kv["max_tokens"], 512);
    assert_eq!(kv["bytes_at_bound"], 512 * 2 * 2 * 2 * 8 * 4);
    assert_eq!(kv["pairs"].as_array().unwrap().len(), 4);
    assert!(j["memory"]["arena_bytes"].as_u64().unwrap() >= j["memory"]["arena_lower_bound"].as_u64().unwrap());
    // The 26,784 f32 weights (embeddings and LM head 2 x 128 x 32, two layers of 9,280, the
    // final norm's 32) and the 184 elements of the graph's other constants.
    assert_eq!(j["parameters"], 26_968, "{}", j["parameters"]);
    // Without bounds there is no plan, and the reason is given.
    let o = slmtvm(&["inspect", m.to_str().unwrap(), "--json"]);
    let j: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert!(j["memory"].is_null());
    assert!(j["memory_note"].as_str().unwrap().contains("has no upper bound"));
}

#[test]
fn kv_graphs_run_symbolically_at_the_recorded_decode_and_prefill_steps() {
    for m in ["llama_kv", "gpt2_kv"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models").join(m);
        let model = dir.join("model.onnx");
        for target in ["x86_64", "aarch64"] {
            if slmtvm_tests::cross::runnable(target).is_none() {
                continue;
            }
            // Decode: batch 2 (a padded row), past 5, one token; prefill: batch 1, past 0, 7 tokens.
            for (ins, exp, flags) in [
                ("inputs", "expected", ["--dim", "sequence=1", "--bound", "batch=2", "--bound", "past_sequence=63"]),
                (
                    "prefill_inputs",
                    "prefill_expected",
                    ["--dim", "batch=1", "--bound", "sequence=16", "--bound", "past_sequence=48"],
                ),
            ] {
                let out = fresh(&format!("{m}-{target}-{ins}"));
                let mut args = vec!["run", model.to_str().unwrap(), "--target", target];
                args.extend_from_slice(&flags);
                let inputs = dir.join(ins);
                args.extend_from_slice(&["--input-dir", inputs.to_str().unwrap(), "-o", out.to_str().unwrap()]);
                ok(&slmtvm(&args));
                for e in std::fs::read_dir(dir.join(exp)).unwrap() {
                    let p = e.unwrap().path();
                    check_output(&out.join(p.file_name().unwrap()), &p, &format!("{m} {target} {ins}"));
                }
            }
        }
    }
}

#[test]
fn run_refuses_symbol_values_outside_their_bounds() {
    let out = fresh("errsym");
    build_bounded(&out);
    let c = out.join("t.c");
    std::fs::write(
        &c,
        r#"#include "bd.h"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    static unsigned char ws[BD_WORKSPACE_SIZE + 64];
    void* w = (void*)(((unsigned long)ws + 63) & ~63ul);
    static int64_t a[4 * 32], b[4 * 32], t[4 * 32];
    static float o0[4 * 32 * 32], o1[4 * 32];
    const void* in[3] = {a, b, t};
    void* out[2] = {o0, o1};
    int64_t ok[2] = {2, 16}, big[2] = {5, 16}, neg[2] = {2, -1}, edge[2] = {4, 32};
    printf("%d %d %d %d %d\n", bd_run(ok, in, out, w), bd_run(big, in, out, w), bd_run(neg, in, out, w),
           bd_run(edge, in, out, w), bd_run(NULL, in, out, w));
    return 0;
}
"#,
    )
    .unwrap();
    let exe = out.join("t");
    let cc = Command::new("gcc")
        .arg("-std=c99")
        .arg("-I")
        .arg(&out)
        .arg(&c)
        .arg(out.join("bd.o"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let r = Command::new(&exe).output().unwrap();
    // OK, batch above its bound, a negative value, both at their bounds, NULL symbols.
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "0 3 3 0 3");
}
