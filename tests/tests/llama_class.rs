//! A Llama-class decoder prefill graph (SmolLM-135M-like: hidden 576, 9 query heads over 3 KV
//! heads of dim 64, SwiGLU FFN 1536, 4 layers, vocab 8192, sequence 64 with the last 5
//! positions padded; ~94 MB of weights), written by `scripts/make_llama.py` into `.cache/llama`
//! in the graph shape torch.onnx.export gives LlamaForCausalLM (the test set-up does this).
//! The reference interpreter matches ONNX Runtime's recorded logits; the optimizer finds one
//! Attention per layer, every RMSNorm and every SiLU-gated MLP; and the optimized graph
//! compiled for the host preset, x86_64-v3 and aarch64 (under qemu-user) matches the
//! interpreter. Prints the optimizer's report and the times to compile, link and run (figures, not assertions).

use slmtvm_frontend::npy;
use slmtvm_ir::ops::UnaryOp;
use slmtvm_ir::{Graph, Op, Tensor, interp};
use slmtvm_optimizer::{CostModel, Options, Report, optimize};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Job, run_batch};
use slmtvm_tests::{cached_model, compare, repo_root, target_dir};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

const LAYERS: usize = 4;

fn dir() -> PathBuf {
    repo_root().join(".cache/llama")
}

/// The decoder graph, its recorded inputs, the interpreter's logits and their max |value|
/// (computed once for both tests).
fn llama() -> &'static (Graph, Vec<Tensor>, Tensor, f64) {
    static CELL: OnceLock<(Graph, Vec<Tensor>, Tensor, f64)> = OnceLock::new();
    CELL.get_or_init(|| {
        let (g, inputs) = cached_model("llama");
        let mask: Vec<f64> = inputs[1].to_f64().iter().copied().collect();
        assert!(mask.contains(&0.0) && mask[0] == 1.0, "the input set pads its tail");
        let t0 = Instant::now();
        let want = interp::run(&g, &inputs).unwrap().remove(0);
        eprintln!("llama: reference interpreter in {:.2} s", t0.elapsed().as_secs_f64());
        let scale = want.to_f64().iter().map(|x| x.abs()).fold(0.0, f64::max);
        (g, inputs, want, scale)
    })
}

/// The graph optimized as `slmtvm build` does at the default level for a target with F32X4
/// vectors and FMA (the host preset, x86_64-v3 and aarch64 all are), with the report.
fn optimized() -> &'static (Graph, Report) {
    static CELL: OnceLock<(Graph, Report)> = OnceLock::new();
    CELL.get_or_init(|| {
        let opts = Options { cost: CostModel { lanes: 4.0, fma: true, ..CostModel::default() }, ..Options::default() };
        optimize(&llama().0, &opts).unwrap()
    })
}

#[test]
fn interpreter_matches_onnx_runtime_on_the_llama_class_decoder() {
    let (_, _, want, scale) = llama();
    let ort = dir().join("expected/logits.npy");
    assert!(ort.is_file(), "{} is missing: make_llama.py writes it when onnxruntime imports", ort.display());
    let ort = npy::read_npy(&ort).unwrap();
    assert_eq!(want.shape(), [1, 64, 8192]);
    compare(&ort, want, 0.0, 1e-4 * scale).unwrap();
}

#[test]
fn optimized_llama_class_decoder_has_the_fused_operators_and_matches_on_every_target() {
    let (_, inputs, want, scale) = llama();
    let (o, r) = optimized();
    eprintln!("{}", r.text());
    let n = |k: &str| o.nodes.iter().filter(|x| x.op.kind_name() == k).count();
    // One Attention per layer over the 3 KV heads themselves (repeat_kv's copies gone), no
    // Softmax left; two RMSNorms per layer and the final one; the SiLU-gated MLP of each layer
    // fused (no Silu or Sigmoid left).
    assert_eq!(r.applied.get("attention"), Some(&LAYERS), "{}", r.text());
    assert_eq!((n("Attention"), n("Softmax")), (LAYERS, 0), "{}", r.text());
    for a in o.nodes.iter().filter(|x| x.op.kind_name() == "Attention") {
        let heads = |i: usize| o.ty(a.inputs[i].unwrap()).shape.0[1].known();
        assert_eq!((heads(0), heads(1), heads(2)), (Some(9), Some(3), Some(3)), "{}", r.text());
    }
    assert_eq!(n("RmsNorm"), 2 * LAYERS + 1, "{}", r.text());
    let swiglu = Op::FusedMlp(slmtvm_ir::ops::FusedMlp { activation: UnaryOp::Silu });
    let fused = o.nodes.iter().filter(|x| x.op == swiglu).count();
    assert_eq!((fused, n("FusedMlp"), n("Silu"), n("Sigmoid")), (LAYERS, LAYERS, 0, 0), "{}", r.text());
    let host = Target::host().unwrap();
    let mut presets = vec![host.name().to_string()];
    for p in ["x86_64-v3", "aarch64"] {
        if !presets.iter().any(|h| h == p) {
            presets.push(p.to_string());
        }
    }
    for preset in &presets {
        // The host's preset must run; the others run where this machine can (skips printed).
        let t = if *preset == host.name() {
            host.check_tools().unwrap_or_else(|e| panic!("{preset}: {e}"));
            host.clone()
        } else {
            let Some(t) = slmtvm_tests::cross::runnable(preset) else { continue };
            t
        };
        let out = target_dir().join("slmtvm-cross").join(format!("llama-{preset}-{}", std::process::id()));
        let t0 = Instant::now();
        let res = run_batch(&t, &[Job { graph: o, data: vec![inputs.clone()] }], &out);
        let got = res[0][0].as_ref().unwrap_or_else(|e| panic!("{preset}: {e}"));
        eprintln!("llama on {preset}: compiled, linked and run in {:.2} s", t0.elapsed().as_secs_f64());
        compare(want, &got[0], 0.0, 1e-4 * scale).unwrap_or_else(|e| panic!("{preset}: {e}"));
        let _ = std::fs::remove_dir_all(&out);
    }
}

/// The same decoder with a dynamic sequence length (`make_llama.py --dynamic`, into
/// `.cache/llama_dyn`: the causal mask from Range over the run-time length, RoPE angles sliced
/// from a 512-position table), optimized and compiled once for `sequence <= 128` for the host
/// and aarch64 (qemu-user), and run at 8 tokens and at 64 (the last 5 padded) with NaN beyond
/// the run-time length: ONNX Runtime's logits within 1e-4 × max |logit|; the optimizer still
/// finds one Attention (over the symbolic length) per layer and every RMSNorm and gated MLP.
#[test]
fn dynamic_llama_class_decoder_runs_at_8_and_64_tokens_from_one_object() {
    let dir = repo_root().join(".cache/llama_dyn");
    assert!(
        dir.join("len8/expected/logits.npy").is_file(),
        "{} is missing: generate it with `python3 scripts/make_llama.py .cache/llama_dyn --dynamic` (scripts/test.sh does)",
        dir.display()
    );
    let mut opts = slmtvm_frontend::LoadOptions::default();
    opts.symbols.insert("sequence".into(), slmtvm_ir::Dim::sym("sequence", Some(128)));
    let g = slmtvm_frontend::load_onnx(&dir.join("model.onnx"), &opts).unwrap();
    let cost = Options { cost: CostModel { lanes: 4.0, fma: true, ..CostModel::default() }, ..Options::default() };
    let (o, r) = optimize(&g, &cost).unwrap();
    let n = |k: &str| o.nodes.iter().filter(|x| x.op.kind_name() == k).count();
    assert_eq!((n("Attention"), n("RmsNorm"), n("FusedMlp")), (LAYERS, 2 * LAYERS + 1, LAYERS), "{}", r.text());
    for a in o.nodes.iter().filter(|x| x.op.kind_name() == "Attention") {
        let q = o.ty(a.inputs[0].unwrap());
        assert!(q.shape.0[2].known().is_none(), "the query length stays symbolic: {}", q.shape);
    }
    let read = |p: PathBuf| npy::read_npy(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let sets: Vec<(Vec<Tensor>, Tensor)> = ["len8", ""]
        .iter()
        .map(|sub| {
            let d = dir.join(sub);
            let ins =
                o.inputs.iter().map(|&i| read(d.join("inputs").join(format!("{}.npy", o.value(i).name)))).collect();
            (ins, read(d.join("expected/logits.npy")))
        })
        .collect();
    let host = Target::host().unwrap();
    for t in [host, Target::from_spec("aarch64").unwrap()] {
        if let Err(e) = t.check_tools() {
            panic!("{}: {e}", t.name());
        }
        let out = target_dir().join("slmtvm-cross").join(format!("llama-dyn-{}-{}", t.name(), std::process::id()));
        let t0 = Instant::now();
        let job = Job { graph: &o, data: sets.iter().map(|(i, _)| i.clone()).collect() };
        let res = run_batch(&t, &[job], &out);
        eprintln!(
            "llama_dyn on {}: compiled once, run at 8 and 64 tokens in {:.2} s",
            t.name(),
            t0.elapsed().as_secs_f64()
        );
        for ((_, want), got) in sets.iter().zip(&res[0]) {
            let got = got.as_ref().unwrap_or_else(|e| panic!("{}: {e}", t.name()));
            slmtvm_tests::close_to(want, &got[0], 1e-4)
                .unwrap_or_else(|e| panic!("{} at {} tokens: {e}", t.name(), want.shape()[1]));
        }
        let _ = std::fs::remove_dir_all(&out);
    }
}
