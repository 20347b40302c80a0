//! A MiniLM-class encoder (6 layers, hidden 384, sequence 128, ~90 MB of weights), written by
//! `scripts/make_minilm.py` into `.cache/minilm` (the test set-up does this): compiled for
//! x86_64 (run natively) and aarch64 (run under qemu-user), and compared with the reference
//! interpreter. Prints the compile time (a figure, not an assertion; the README reports the
//! release build's).

use slmtvm_ir::{Tensor, interp};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Job, run_batch};
use slmtvm_tests::{cached_model, compare, target_dir};
use std::time::Instant;

/// The MiniLM graph, its recorded inputs, the interpreter's outputs and their max |value|.
fn minilm() -> (slmtvm_ir::Graph, Vec<Tensor>, Vec<Tensor>, f64) {
    let (g, inputs) = cached_model("minilm");
    let want = interp::run(&g, &inputs).unwrap();
    let scale = want[0].to_f64().iter().map(|x| x.abs()).fold(0.0, f64::max);
    (g, inputs, want, scale)
}

#[test]
fn minilm_class_encoder_compiles_and_matches_the_interpreter() {
    let (g, inputs, want, scale) = minilm();
    // x86_64-v3/v4 (assembled microkernels, weights packed) where this CPU has them.
    // Where this machine can run them (natively or under qemu-user; skips printed).
    for preset in ["x86_64", "aarch64", "x86_64-v3", "x86_64-v4"] {
        let Some(t) = slmtvm_tests::cross::runnable(preset) else { continue };
        let t0 = Instant::now();
        let c = slmtvm_codegen::compile(&g, "minilm", &t).unwrap();
        eprintln!(
            "minilm on {preset}: compiled in {:.2} s (debug build of slmtvm): {} kernels, {} bytes of code, arena {} bytes, {} of {} weight bytes packed",
            t0.elapsed().as_secs_f64(),
            c.manifest.kernels,
            c.manifest.code_bytes,
            c.plan.arena_bytes,
            c.manifest.packed_weights_bytes,
            c.manifest.weights_bytes
        );
        let out = target_dir().join("slmtvm-cross").join(format!("minilm-{preset}-{}", std::process::id()));
        let res = run_batch(&t, &[Job { graph: &g, data: vec![inputs.clone()] }], &out);
        let got = res[0][0].as_ref().unwrap_or_else(|e| panic!("{preset}: {e}"));
        compare(&want[0], &got[0], 0.0, 1e-4 * scale).unwrap_or_else(|e| panic!("{preset}: {e}"));
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn optimized_minilm_has_one_attention_per_layer_and_matches_the_interpreter() {
    let (g, inputs, want, scale) = minilm();
    let (o, r) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
    // Six layers: one fused Attention per layer (no Softmax left), one GELU each, fused into
    // the FFN's first Dense (the six Dense per layer take every matrix product with a weight),
    // LayerNorms 2 per layer + 1; saturation, not a limit, ends the run (the limits include 2 s).
    let n = |g: &slmtvm_ir::Graph, k: &str| g.nodes.iter().filter(|x| x.op.kind_name() == k).count();
    assert_eq!(r.applied.get("attention"), Some(&6), "{}", r.text());
    let gelu = slmtvm_ir::Op::Dense(slmtvm_ir::ops::Dense {
        activation: Some(slmtvm_ir::ops::UnaryOp::Gelu { tanh_approx: false }),
    });
    let dense_gelu = o.nodes.iter().filter(|x| x.op == gelu).count();
    assert_eq!((dense_gelu, n(&o, "Dense"), n(&o, "Gelu"), n(&o, "LayerNorm")), (6, 36, 0, 13), "{}", r.text());
    assert_eq!((n(&o, "Attention"), n(&o, "Softmax")), (6, 0), "{}", r.text());
    assert_eq!(r.stop, "saturated", "{}", r.text());
    eprintln!("{}", r.text());
    let t = Target::from_spec(slmtvm_tests::cross::native_preset()).unwrap();
    let out = target_dir().join("slmtvm-cross").join(format!("minilm-opt-{}", std::process::id()));
    let res = run_batch(&t, &[Job { graph: &o, data: vec![inputs.clone()] }], &out);
    let got = res[0][0].as_ref().unwrap_or_else(|e| panic!("{e}"));
    compare(&want[0], &got[0], 0.0, 1e-4 * scale).unwrap();
    let _ = std::fs::remove_dir_all(&out);
}
