//! The committed real models (`tests/models/`) compiled for every target preset, run natively
//! or under qemu-user, and compared with ONNX Runtime's recorded outputs: max abs error ≤
//! 1e-4 × max |output|. The cases: a BERT encoder (static, and its dynamic-axes export at both
//! recorded shapes), a static Llama decoder, the decoder prefill graphs with dynamic axes
//! (GPT-2, Qwen2, Phi, and Llama by the dynamo exporter at opsets 26 and 23) at their recorded
//! shapes, and the two KV-cache step graphs at their recorded decode step (batch 2, past 5,
//! sequence 1) and at their recorded prefill step (batch 1, past 0: zero-length past tensors).

use slmtvm_frontend::{LoadOptions, load_onnx, npy};
use slmtvm_ir::{Graph, Shape, Tensor};
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};
use slmtvm_tests::target_dir;
use std::path::{Path, PathBuf};

/// One model at one recorded shape: the graph specialized to it, inputs, expected outputs.
struct Case {
    label: String,
    graph: Graph,
    inputs: Vec<Tensor>,
    expected: Vec<Tensor>,
}

/// The model specialized to the shapes of the inputs in `data/<ins>/`, with the outputs
/// recorded in `data/<outs>/`.
fn load(model: &Path, data: &Path, (ins, outs): (&str, &str), label: &str) -> Case {
    let g0 = load_onnx(model, &LoadOptions::default()).unwrap();
    let read =
        |sub: &str, name: &str| npy::read_npy(&data.join(sub).join(format!("{}.npy", npy::file_stem(name)))).unwrap();
    let mut opts = LoadOptions::default();
    for &i in &g0.inputs {
        let name = &g0.value(i).name;
        opts.shapes.insert(name.clone(), Shape::known(read(ins, name).shape()));
    }
    let graph = load_onnx(model, &opts).unwrap();
    let inputs = graph.inputs.iter().map(|&i| read(ins, &graph.value(i).name)).collect();
    let expected = graph.outputs.iter().map(|&o| read(outs, &graph.value(o).name)).collect();
    Case { label: label.to_string(), graph, inputs, expected }
}

const RECORDED: (&str, &str) = ("inputs", "expected");

fn cases() -> Vec<Case> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut v = Vec::new();
    for m in [
        "bert_tiny",
        "llama_tiny",
        "bert_tiny_dynamic",
        "gpt2_tiny",
        "qwen2_tiny",
        "phi_tiny",
        "llama_tiny_dynamo",
        "llama_tiny_dynamo_op23",
        "llama_kv",
        "gpt2_kv",
    ] {
        v.push(load(&dir.join(m).join("model.onnx"), &dir.join(m), RECORDED, m));
    }
    let dynm = dir.join("bert_tiny_dynamic");
    v.push(load(&dynm.join("model.onnx"), &dynm.join("shape2"), RECORDED, "bert_tiny_dynamic@3x9"));
    for m in ["llama_kv", "gpt2_kv"] {
        let d = dir.join(m);
        v.push(load(&d.join("model.onnx"), &d, ("prefill_inputs", "prefill_expected"), &format!("{m}@prefill")));
    }
    // Every case again through the optimizer (as `slmtvm build` does by default).
    let optimized: Vec<Case> = v
        .iter()
        .map(|c| {
            let (graph, _) = slmtvm_optimizer::optimize(&c.graph, &slmtvm_optimizer::Options::default()).unwrap();
            Case { label: format!("{}@O1", c.label), graph, inputs: c.inputs.clone(), expected: c.expected.clone() }
        })
        .collect();
    v.extend(optimized);
    v
}

#[test]
fn real_models_match_onnx_runtime_on_every_target() {
    let cases = cases();
    let jobs: Vec<Job> = cases.iter().map(|c| Job { graph: &c.graph, data: vec![c.inputs.clone()] }).collect();
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target preset can be linked and run here");
    let mut failures = Vec::new();
    for t in &presets {
        let dir = target_dir().join("slmtvm-cross").join(format!("models-{}-{}", t.name(), std::process::id()));
        let res = run_batch(t, &jobs, &dir);
        for (c, r) in cases.iter().zip(res) {
            let got = match &r[0] {
                Ok(g) => g,
                Err(e) => {
                    failures.push(format!("{} on {}: {e}", c.label, t.name()));
                    continue;
                }
            };
            for (k, (want, got)) in c.expected.iter().zip(got).enumerate() {
                let (w, g) = (want.to_f64(), got.to_f64());
                let err = w.iter().zip(g.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                let err = if g.iter().any(|x| x.is_nan()) { f64::INFINITY } else { err };
                let scale = w.iter().map(|a| a.abs()).fold(0.0, f64::max);
                let name = &c.graph.value(c.graph.outputs[k]).name;
                eprintln!("{} on {}: {name}: max abs error {err:.3e} (max |output| {scale:.3e})", c.label, t.name());
                if err > 1e-4 * scale {
                    failures.push(format!(
                        "{} on {}: {name}: max abs error {err:.3e} > 1e-4 x {scale:.3e}",
                        c.label,
                        t.name()
                    ));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
