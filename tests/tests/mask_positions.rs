//! One object for every prompt length: the committed decoders with dynamic axes (GPT-2, Qwen2,
//! Phi, and Llama by the dynamo exporter) with their position ids computed in the graph from
//! the attention mask (`where(mask == 0, 1, cumsum(mask) - 1)`, written by
//! `scripts/make_mask_positions.py` into `.cache/mask_positions/`), each compiled once per
//! preset with `batch <= 2` and `sequence <= 24` (as `--bound` does), plain and through the
//! optimizer, and run at sequence lengths 1, 5, 12 and 20 (batch 2, row 1 left-padded) in one
//! process, the padding beyond each run-time extent NaN: logits within 1e-4 × max |logit| of
//! ONNX Runtime's.

use slmtvm_frontend::{LoadOptions, load_onnx, npy};
use slmtvm_ir::{Dim, Graph, Tensor};
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};
use slmtvm_tests::{repo_root, target_dir};

const MODELS: [&str; 4] = ["gpt2_tiny", "qwen2_tiny", "phi_tiny", "llama_tiny_dynamo"];
const LENGTHS: [usize; 4] = [1, 5, 12, 20];

/// The model with bounded symbols, and per length its inputs (graph order) and ONNX Runtime's
/// logits.
fn load(name: &str) -> (Graph, Vec<(Vec<Tensor>, Tensor)>) {
    let dir = repo_root().join(".cache/mask_positions").join(name);
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: generate it with `python3 scripts/make_mask_positions.py .cache/mask_positions` \
         (scripts/test.sh does)",
        dir.display()
    );
    let mut opts = LoadOptions::default();
    opts.symbols.insert("batch".into(), Dim::sym("batch", Some(2)));
    opts.symbols.insert("sequence".into(), Dim::sym("sequence", Some(24)));
    let g = load_onnx(&dir.join("model.onnx"), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(g.values.iter().any(|v| v.ty.shape.0.iter().any(|d| d.known().is_none())), "{name} stays symbolic");
    assert!(
        g.nodes.iter().any(|n| matches!(n.op, slmtvm_ir::Op::CumSum(_))),
        "{name}: the positions come from a CumSum of the mask"
    );
    let sets = LENGTHS
        .iter()
        .map(|l| {
            let d = dir.join(format!("len{l}"));
            let read = |f: std::path::PathBuf| npy::read_npy(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let ins =
                g.inputs.iter().map(|&i| read(d.join("inputs").join(format!("{}.npy", g.value(i).name)))).collect();
            (ins, read(d.join("expected/logits.npy")))
        })
        .collect();
    (g, sets)
}

#[test]
fn decoders_with_in_graph_positions_run_at_every_length_from_one_object() {
    let mut graphs = Vec::new();
    for m in MODELS {
        let (g, sets) = load(m);
        let (o, _) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
        graphs.push((m.to_string(), g, sets.clone()));
        graphs.push((format!("{m}@O1"), o, sets));
    }
    let jobs: Vec<Job> = graphs
        .iter()
        .map(|(_, g, sets)| Job { graph: g, data: sets.iter().map(|(ins, _)| ins.clone()).collect() })
        .collect();
    let mut failures = Vec::new();
    let mut runs = 0;
    for t in runnable_presets() {
        let dir = target_dir().join("slmtvm-cross").join(format!("mask-positions-{}-{}", t.name(), std::process::id()));
        let res = run_batch(&t, &jobs, &dir);
        for ((label, _, sets), got) in graphs.iter().zip(res) {
            for ((l, (_, want)), got) in LENGTHS.iter().zip(sets).zip(got) {
                runs += 1;
                let got = match got {
                    Ok(mut o) if o.len() == 1 => o.remove(0),
                    Ok(o) => {
                        failures.push(format!("{} {label} length {l}: {} outputs", t.name(), o.len()));
                        continue;
                    }
                    Err(e) => {
                        failures.push(format!("{} {label} length {l}: {e}", t.name()));
                        continue;
                    }
                };
                if let Err(m) = slmtvm_tests::close_to(want, &got, 1e-4) {
                    failures.push(format!("{} {label} length {l}: {m}", t.name()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(runs > 0, "no preset ran");
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
    println!("mask positions: {runs} runs match ONNX Runtime");
}
