//! The CLI on the committed real models: `inspect` reports them fully supported, `run` matches
//! ONNX Runtime's outputs, and `--random-inputs` is deterministic.

use slmtvm_frontend::npy::read_npy;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slmtvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).args(args).output().unwrap()
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models").join(name)
}

fn out_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn inspect_reports_real_models_fully_supported() {
    let io = [
        ("bert_tiny", [("input_ids", "i64[2, 16]"), ("last_hidden_state", "f32[2, 16, 32]")]),
        ("llama_tiny", [("input_ids", "i64[2, 12]"), ("logits", "f32[2, 12, 128]")]),
    ];
    for (name, values) in io {
        let o = slmtvm(&["inspect", model_dir(name).join("model.onnx").to_str().unwrap()]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(text.contains("unsupported operators: none"), "{text}");
        for (v, ty) in values {
            assert!(text.lines().any(|l| l.trim_start().starts_with(v) && l.ends_with(ty)), "{v} {ty}: {text}");
        }
        let o = slmtvm(&["inspect", "--json", model_dir(name).join("model.onnx").to_str().unwrap()]);
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(j["unsupported"].as_array().map(Vec::len), Some(0));
        assert_eq!(j["opset"], 17);
        // The parameter count is the sum of the weights' elements, which are most of the file.
        let params = j["parameters"].as_u64().unwrap();
        let bytes = std::fs::metadata(model_dir(name).join("model.onnx")).unwrap().len();
        assert!(params * 4 > bytes / 2 && params * 4 < bytes, "{name}: {params} parameters in {bytes} bytes");
        assert!(j["flops"].as_u64().unwrap() > 2 * params, "{name}: every weight is used at least once per token");
    }
}

#[test]
fn run_writes_outputs_matching_onnx_runtime() {
    let dir = model_dir("bert_tiny");
    let out = out_dir("bert");
    let o = slmtvm(&[
        "run",
        dir.join("model.onnx").to_str().unwrap(),
        "--target",
        "reference",
        "--input-dir",
        dir.join("inputs").to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["last_hidden_state", "pooler_output"] {
        let got = read_npy(&out.join(format!("{name}.npy"))).unwrap();
        let want = read_npy(&dir.join("expected").join(format!("{name}.npy"))).unwrap();
        slmtvm_tests::close_to(&want, &got, 1e-4).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn random_inputs_are_deterministic_and_valid() {
    let model = model_dir("llama_tiny").join("model.onnx");
    let run = |tag: &str, seed: &str| {
        let out = out_dir(tag);
        let o = slmtvm(&["run", model.to_str().unwrap(), "--random-inputs", seed, "-o", out.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out.join("logits.npy")).unwrap()
    };
    let (a, b, c) = (run("r1", "5"), run("r2", "5"), run("r3", "6"));
    assert_eq!(a, b, "the same seed gives the same outputs");
    assert_ne!(a, c, "another seed gives other inputs");
}

#[test]
fn wrong_input_names_and_missing_inputs_are_clear_errors() {
    let model = model_dir("bert_tiny").join("model.onnx");
    let out = out_dir("names");
    let o = slmtvm(&["run", model.to_str().unwrap(), "--input", "nope=x.npy", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nope") && err.contains("input_ids"), "{err}");
    let o = slmtvm(&["run", model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--random-inputs"));
    let o = slmtvm(&[
        "run",
        model.to_str().unwrap(),
        "--shape",
        "input_ids=2x17",
        "--random-inputs",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("input_ids"));
    assert!(!out.exists());
}
