//! `slmtvm bench` through the binary: the compiled model's timings on this machine beside ONNX
//! Runtime's and tract's in the same run (both installed by the test set-up), JSON output, and
//! clear refusals of what it cannot measure.

use std::path::Path;
use std::process::{Command, Output};

fn slmtvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

fn model(m: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models").join(m).join("model.onnx").to_string_lossy().into_owned()
}

fn importable(module: &str) -> bool {
    Command::new("python3").args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn bench_times_slmtvm_and_its_peers_on_the_same_inputs() {
    let m = model("llama_tiny");
    let o = slmtvm(&["bench", &m, "--runs", "5", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The FLOPs are the model's, as `inspect` counts them.
    let i = slmtvm(&["inspect", &m, "--json"]);
    let ij: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
    assert_eq!(j["flops"], ij["flops"]);
    assert!(j["flops"].as_u64().unwrap() > 1_000_000);
    assert_eq!(j["runs"], 5);
    let results = j["results"].as_array().unwrap();
    assert_eq!(results[0]["runtime"], "slmtvm");
    let ours = results[0]["median_us"].as_f64().unwrap();
    for r in results {
        let (med, min, max) =
            (r["median_us"].as_f64().unwrap(), r["min_us"].as_f64().unwrap(), r["max_us"].as_f64().unwrap());
        assert!(0.0 < min && min <= med && med <= max, "{r}");
        let gflops = j["flops"].as_f64().unwrap() / med / 1e3;
        assert!((r["gflops"].as_f64().unwrap() - gflops).abs() <= 1e-9 * gflops, "{r}");
        assert!((r["slmtvm_ratio"].as_f64().unwrap() - ours / med).abs() <= 1e-9 * ours / med, "{r}");
    }
    let unavailable = j["unavailable"].as_array().unwrap();
    for peer in ["onnxruntime", "tract"] {
        let ran = results.iter().any(|r| r["runtime"] == peer);
        let why = unavailable.iter().find(|u| u[0] == peer);
        if importable(peer) {
            assert!(ran, "{peer} is importable but did not run: {why:?}");
        } else {
            eprintln!("{peer} is not importable here: bench reports it as not run");
            assert!(why.is_some_and(|u| u[1].as_str().unwrap().contains("not importable")), "{j}");
        }
    }
    // The text form: one row per runtime.
    let t = slmtvm(&["bench", &m, "--runs", "2"]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(t.status.success() && text.lines().any(|l| l.starts_with("slmtvm ")), "{text}");
}

#[test]
fn bench_refuses_what_it_cannot_measure() {
    let m = model("llama_tiny");
    let foreign = if cfg!(target_arch = "x86_64") { "aarch64" } else { "x86_64" };
    for (args, says) in [
        (vec!["--target", foreign], "must be this host's architecture"),
        (vec!["--threads", "2"], "--threads 2"),
        (vec!["--runs", "0"], "--runs must be at least 1"),
    ] {
        let mut a = vec!["bench", m.as_str()];
        a.extend(args);
        let o = slmtvm(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
}
