//! The QOperator form of quantized models, against ONNX Runtime.
//!
//! `scripts/make_qlinear.py` writes one small model per operator case into `.cache/qlinear/`
//! (QLinearMatMul, QLinearConv; `com.microsoft` QGemm, QLinearAdd, QLinearMul, QLinearSoftmax,
//! QLinearConcat, QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool; u8 and i8,
//! broadcasting, per-column weights, biases, transposes, float output) with ONNX Runtime's
//! outputs on random inputs (the test set-up does this). The interpreter must give ONNX
//! Runtime's integers exactly where both compute the same integer and f32 arithmetic (the
//! products, sums and elementwise arithmetic), and within one quantization step where ONNX
//! Runtime evaluates a transcendental function (exp, through its own tables and library).
//! The compiled objects, on every runnable preset, must give the interpreter's integers
//! exactly, except for one step where their exp polynomials may round across a boundary.

use slmtvm_ir::Tensor;
use slmtvm_ir::interp;
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};
use slmtvm_tests::{cached_model, repo_root, target_dir};

/// The cases written by `scripts/make_qlinear.py`, sorted.
fn cases() -> Vec<String> {
    let dir = repo_root().join(".cache").join("qlinear");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!("{}: {e}; write it with `python3 scripts/make_qlinear.py .cache/qlinear`", dir.display())
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 17, "only {} cases in {}", names.len(), dir.display());
    names
}

/// The largest difference between two tensors' elements (as f64), and how many differ.
fn diff(got: &Tensor, want: &Tensor) -> (f64, usize) {
    assert_eq!(got.dtype(), want.dtype());
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (got.to_f64(), want.to_f64());
    let d: Vec<f64> = g.iter().zip(w.iter()).map(|(a, b)| (a - b).abs()).collect();
    (d.iter().copied().fold(0.0, f64::max), d.iter().filter(|&&v| v != 0.0).count())
}

/// The case's tolerance in quantization steps against the interpreter: one where an exp is
/// evaluated (a polynomial against a library's, an ulp apart, can round across a boundary).
fn steps(case: &str) -> f64 {
    if case.contains("softmax") || case.contains("sigmoid") { 1.0 } else { 0.0 }
}

/// The tolerance against ONNX Runtime: also one step for QLinearAdd, whose x86 and Arm
/// kernels approximate the scale ratios by 22-bit fixed-point multipliers rather than compute
/// the documented formula (ONNX Runtime's portable kernel, and the interpreter, do).
fn steps_to_ort(case: &str) -> f64 {
    if case.contains("add") { 1.0 } else { steps(case) }
}

#[test]
fn qoperator_cases_match_onnx_runtime_on_the_interpreter() {
    for case in cases() {
        let (g, inputs) = cached_model(&format!("qlinear/{case}"));
        let ort_file = repo_root().join(".cache/qlinear").join(&case).join("ort/y.npy");
        let ort = slmtvm_frontend::npy::read_npy(&ort_file).unwrap_or_else(|e| panic!("{}: {e}", ort_file.display()));
        let got = interp::run(&g, &inputs).unwrap_or_else(|e| panic!("{case}: {e}")).remove(0);
        let (max, n) = diff(&got, &ort);
        eprintln!("{case}: interpreter against onnxruntime: {n} of {} differ, by at most {max}", got.len());
        if got.dtype().is_float() {
            // QGemm's float output: f32(acc)·scale, one rounding each side.
            let tol = 1e-6 * slmtvm_tests::max_abs(&ort);
            assert!(max <= tol, "{case}: differs from onnxruntime by {max} (> {tol})");
        } else {
            assert!(max <= steps_to_ort(&case), "{case}: differs from onnxruntime by {max} steps");
            // A rounding tie broken the other way is rare: at most 1 in 20 elements (or 2).
            assert!(n <= 2 || n * 20 <= got.len(), "{case}: {n} of {} elements differ from onnxruntime", got.len());
        }
    }
}

#[test]
fn qoperator_cases_compile_to_the_interpreters_integers_on_every_preset() {
    let cases = cases();
    let loaded: Vec<_> = cases.iter().map(|c| cached_model(&format!("qlinear/{c}"))).collect();
    let want: Vec<Tensor> = loaded.iter().map(|(g, i)| interp::run(g, i).unwrap().remove(0)).collect();
    for t in runnable_presets() {
        let jobs: Vec<Job> = loaded.iter().map(|(g, i)| Job { graph: g, data: vec![i.clone()] }).collect();
        let dir = target_dir().join("slmtvm-cross").join(format!("qlinear-{}-{}", t.name(), std::process::id()));
        let res = run_batch(&t, &jobs, &dir);
        for ((case, r), w) in cases.iter().zip(&res).zip(&want) {
            let got = r[0].as_ref().unwrap_or_else(|e| panic!("{}: {case}: {e}", t.name()));
            let (max, _) = diff(&got[0], w);
            let tol = if w.dtype().is_float() { 1e-6 * slmtvm_tests::max_abs(w) } else { steps(case) };
            assert!(max <= tol, "{}: {case}: differs from the interpreter by {max} (> {tol})", t.name());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
