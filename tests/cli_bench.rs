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

/// The median of `v`.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

#[test]
fn bench_rounds_take_turns_and_report_medians_over_the_rounds() {
    let m = model("llama_tiny");
    let o = slmtvm(&["bench", &m, "--runs", "3", "--rounds", "3", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["rounds"], 3);
    let results = j["results"].as_array().unwrap();
    let rounds = |r: &serde_json::Value| -> Vec<f64> {
        r["round_medians_us"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let ours = rounds(&results[0]);
    assert_eq!(ours.len(), 3);
    for r in results {
        let per = rounds(r);
        assert_eq!(per.len(), 3, "{r}");
        let med = r["median_us"].as_f64().unwrap();
        assert_eq!(med, median(per.clone()), "{r}");
        assert!(per.iter().all(|&x| r["min_us"].as_f64().unwrap() <= x && x <= r["max_us"].as_f64().unwrap()), "{r}");
        // Each peer's ratio is the median of the rounds' ratios, round i against round i.
        let want = median(ours.iter().zip(&per).map(|(o, t)| o / t).collect());
        assert!((r["slmtvm_ratio"].as_f64().unwrap() - want).abs() <= 1e-12 * want, "{r}");
    }
    if importable("onnxruntime") {
        assert!(results.iter().any(|r| r["runtime"] == "onnxruntime"), "{j}");
    }
    let t = slmtvm(&["bench", &m, "--runs", "1", "--rounds", "2"]);
    let text = String::from_utf8_lossy(&t.stdout);
    assert!(t.status.success() && text.contains("2 rounds of 1 timed runs"), "{text}");
}

#[test]
fn bench_threads_builds_a_threaded_model_and_gives_the_peers_the_threads() {
    let m = model("llama_tiny");
    let dir = std::env::temp_dir().join(format!("slmtvm-bench-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = slmtvm(&["bench", &m, "--runs", "3", "--threads", "2", "--json", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["threads"], 2);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("build/model.json")).unwrap()).unwrap();
    assert_eq!(manifest["threads"], 2);
    let threads =
        |rt: &str| j["results"].as_array().unwrap().iter().find(|r| r["runtime"] == rt).map(|r| r["threads"].clone());
    assert_eq!(threads("slmtvm"), Some(serde_json::json!(2)));
    if importable("onnxruntime") {
        assert_eq!(threads("onnxruntime"), Some(serde_json::json!(2)));
    }
    if importable("tract") {
        // tract's Python API sets no thread count: it runs on one, and the table says so.
        assert_eq!(threads("tract"), Some(serde_json::json!(1)));
        let t = slmtvm(&["bench", &m, "--runs", "1", "--threads", "2"]);
        let text = String::from_utf8_lossy(&t.stdout);
        assert!(text.contains("tract: ran on 1 thread(s)"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_refuses_what_it_cannot_measure() {
    let m = model("llama_tiny");
    let foreign = if cfg!(target_arch = "x86_64") { "aarch64" } else { "x86_64" };
    for (args, says) in [
        (vec!["--target", foreign], "must be this host's architecture"),
        (vec!["--runs", "0"], "--runs must be at least 1"),
        (vec!["--rounds", "0"], "--rounds must be at least 1"),
    ] {
        let mut a = vec!["bench", m.as_str()];
        a.extend(args);
        let o = slmtvm(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{err}");
    }
}

#[test]
fn bench_kernels_times_every_kernel_against_the_fma_peak() {
    let m = model("llama_tiny");
    let dir = std::env::temp_dir().join(format!("slmtvm-bench-kernels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let o = slmtvm(&["bench", &m, "--runs", "5", "--json", "--kernels", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("build/model.json")).unwrap()).unwrap();
    assert_eq!(manifest["profile"], true);
    let p = &j["profile"];
    assert!(p["peak_gflops"].as_f64().unwrap() > 0.0, "{p}");
    let kernels = p["kernels"].as_array().unwrap();
    // One entry per kernel of the build, in call order, with the manifest's node and FLOPs.
    assert_eq!(kernels.len() as u64, manifest["kernels"].as_u64().unwrap());
    let mut total = 0.0;
    for (i, k) in kernels.iter().enumerate() {
        let e = &manifest["kernel_list"][i];
        assert_eq!((k["index"].as_u64(), &k["node"], &k["flops"]), (Some(i as u64), &e["node"], &e["flops"]), "{k}");
        let us = k["us"].as_f64().unwrap();
        assert!(us >= 0.0, "{k}");
        total += us;
        let product = ["MatMul", "Gemm", "Dense", "FusedMlp", "Attention"].contains(&k["op"].as_str().unwrap());
        assert_eq!(k["peak_fraction"].is_f64(), product, "{k}");
        if product && us > 0.0 {
            let f = k["peak_fraction"].as_f64().unwrap();
            let want = k["flops"].as_f64().unwrap() / us / 1e3 / p["peak_gflops"].as_f64().unwrap();
            assert!((f - want).abs() <= 1e-9 * want.max(1e-12), "{k}");
        }
    }
    // The kernels' mean times add up to no more than the slowest run.
    assert!(total > 0.0 && total <= j["results"][0]["max_us"].as_f64().unwrap(), "{total} µs in kernels: {j}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profiling_builds_compile_for_every_preset() {
    // The hook import and the peak loop, at each preset's vector width (scalar on riscv64
    // without V), in a profiling build of a real model; a normal build has neither.
    use object::{Object, ObjectSymbol};
    let g =
        slmtvm_frontend::load_onnx(Path::new(&model("bert_tiny")), &slmtvm_frontend::LoadOptions::default()).unwrap();
    for preset in ["x86_64", "x86_64-v3", "x86_64-v4", "aarch64", "aarch64-dotprod", "riscv64", "riscv64-v"] {
        let t = slmtvm_targets::Target::from_spec(preset).unwrap();
        for profile in [false, true] {
            let c =
                slmtvm_codegen::compile_with(&g, "m", &t, &slmtvm_codegen::Options { profile, ..Default::default() })
                    .unwrap();
            let f = object::File::parse(&*c.object).unwrap();
            let has =
                |name: &str, defined: bool| f.symbols().any(|s| s.name() == Ok(name) && s.is_undefined() != defined);
            assert_eq!(has("slmtvm_profile", false), profile, "{preset}");
            assert_eq!(has("m_peak", true), profile, "{preset}");
            assert!(has("m_run", true), "{preset}");
            // Kernels calling assembled code (the products on x86_64-v3/v4) run at its width.
            let narrow = if t.vector().is_some() { 4 } else { 1 };
            let kernel = t.schedule().kernel;
            let wide = if kernel == slmtvm_targets::Microkernel::Cranelift { narrow } else { kernel.lanes() };
            assert!(c.manifest.kernel_list.iter().all(|k| k.lanes == narrow || k.lanes == wide), "{preset}");
            // (Some products take the Cranelift path: a transposed A, a strided B.)
            assert!(c.manifest.kernel_list.iter().any(|k| k.op == "MatMul" && k.lanes == wide), "{preset}");
            assert!(c.manifest.kernel_list.iter().any(|k| k.op == "MatMul" && k.flops > 0), "{preset}");
        }
    }
}
