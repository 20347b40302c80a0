//! Real exported models (`tests/models/*`, made by `tests/models/make_models.py`) through the
//! importer and the reference interpreter, compared with ONNX Runtime's recorded outputs; the
//! text form's round trip on each of them; and the KV-cache step graphs' prefill step and
//! 32-token greedy generation, replayed in the interpreter against ONNX Runtime's tokens.

use slmtvm_frontend::{LoadOptions, load_onnx, npy};
use slmtvm_ir::{Graph, Tensor, interp, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Every committed model folder (those with a meta.json).
fn model_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .expect("tests/models exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 2, "expected the committed test models under tests/models");
    v
}

fn inputs_of(g: &Graph, dir: &Path) -> BTreeMap<String, Tensor> {
    g.inputs
        .iter()
        .map(|&i| {
            let name = g.value(i).name.clone();
            let t = npy::read_npy(&dir.join("inputs").join(format!("{}.npy", npy::file_stem(&name)))).unwrap();
            (name, t)
        })
        .collect()
}

/// max |got - want| and max |want|; the error is infinite (and the reason printed) when
/// [`slmtvm_tests::close_to`] at 1e-4 fails: another dtype or shape, NaN or infinities where
/// the reference has none, or a larger error.
fn errors(want: &Tensor, got: &Tensor) -> (f64, f64) {
    if let Err(e) = slmtvm_tests::close_to(want, got, 1e-4) {
        eprintln!("{e}");
        return (f64::INFINITY, slmtvm_tests::max_abs(want));
    }
    let (w, g) = (want.to_f64(), got.to_f64());
    let err = w.iter().zip(g.iter()).map(|(a, b)| (a - b).abs()).filter(|d| d.is_finite()).fold(0.0, f64::max);
    (err, slmtvm_tests::max_abs(want))
}

#[test]
fn exported_models_match_onnx_runtime() {
    for dir in model_dirs() {
        let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
        let outs = interp::run_named(&g, &inputs_of(&g, &dir)).unwrap();
        for (&o, got) in g.outputs.iter().zip(&outs) {
            let name = &g.value(o).name;
            let want = npy::read_npy(&dir.join("expected").join(format!("{}.npy", npy::file_stem(name)))).unwrap();
            let (err, scale) = errors(&want, got);
            eprintln!("{}: {name}: max abs error {err:.3e}, max |output| {scale:.3e}", dir.display());
            assert!(err <= 1e-4 * scale, "{}: {name}: max abs error {err} > 1e-4 x {scale}", dir.display());
        }
    }
}

#[test]
fn text_form_round_trips_every_model() {
    for dir in model_dirs() {
        let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
        let printed = text::print(&g);
        let back = text::parse(&printed).unwrap();
        assert_eq!(text::print(&back), printed, "{}", dir.display());
        assert_eq!(back.nodes, g.nodes);
        assert_eq!(back.values, g.values);
        let inputs = inputs_of(&g, &dir);
        let (a, b) = (interp::run_named(&g, &inputs).unwrap(), interp::run_named(&back, &inputs).unwrap());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.to_le_bytes(), y.to_le_bytes(), "{}: re-parsed graph computes different bits", dir.display());
        }
    }
}

/// Input shapes as `LoadOptions` that fix every symbolic dim to the recorded inputs' dims.
fn fixed_shapes(dir: &Path) -> LoadOptions {
    let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
    let mut opts = LoadOptions::default();
    for (name, t) in inputs_of(&g, dir) {
        opts.shapes.insert(name, slmtvm_ir::Shape::known(t.shape()));
    }
    opts
}

#[test]
fn shape_subgraphs_fold_away_once_shapes_are_static() {
    for dir in model_dirs() {
        let g = load_onnx(&dir.join("model.onnx"), &fixed_shapes(&dir)).unwrap();
        let leftover: Vec<&str> = g
            .nodes
            .iter()
            .filter(|n| {
                matches!(n.op, slmtvm_ir::Op::Shape(_) | slmtvm_ir::Op::ConstantOfShape(_) | slmtvm_ir::Op::Range(_))
            })
            .map(|n| n.name.as_str())
            .collect();
        assert!(leftover.is_empty(), "{}: shape computations left after import: {leftover:?}", dir.display());
        assert!(g.values.iter().all(|v| v.ty.shape.is_known()), "{}: a value kept a symbolic dim", dir.display());
        let outs = interp::run_named(&g, &inputs_of(&g, &dir)).unwrap();
        for (&o, got) in g.outputs.iter().zip(&outs) {
            let want =
                npy::read_npy(&dir.join("expected").join(format!("{}.npy", npy::file_stem(&g.value(o).name)))).unwrap();
            let (err, scale) = errors(&want, got);
            assert!(err <= 1e-4 * scale, "{}: specialized graph: {err} > 1e-4 x {scale}", dir.display());
        }
    }
}

#[test]
fn dynamic_axes_stay_symbolic_and_run_at_any_shape() {
    let dir = models_dir().join("bert_tiny_dynamic");
    let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
    let shape = |id| g.ty(id).shape.to_string();
    for &i in &g.inputs {
        assert_eq!(shape(i), "[batch, seq]", "{}", g.value(i).name);
    }
    // Shape arithmetic on symbols (Shape -> Gather -> Concat -> Reshape) is propagated as
    // polynomials of the input symbols; the trailing hidden size stays known.
    let outs: Vec<String> = g.outputs.iter().map(|&o| shape(o)).collect();
    assert_eq!(outs, ["[batch, seq, 32]", "[batch, 32]"]);
    assert!(g.values.iter().all(|v| !v.ty.shape.to_string().contains("unk_")), "a dim stayed unknown");
    // The same symbolic graph runs at another batch size and sequence length (batch 3,
    // sequence 9, a padded row), matching ONNX Runtime there too.
    let inputs = inputs_of(&g, &dir.join("shape2"));
    let outs = interp::run_named(&g, &inputs).unwrap();
    assert_eq!(outs[0].shape(), &[3, 9, 32]);
    for (&o, got) in g.outputs.iter().zip(&outs) {
        let name = &g.value(o).name;
        let want = npy::read_npy(&dir.join("shape2/expected").join(format!("{}.npy", npy::file_stem(name)))).unwrap();
        let (err, scale) = errors(&want, got);
        assert!(err <= 1e-4 * scale, "{name} at batch 3, seq 9: {err} > 1e-4 x {scale}");
    }
}

/// The KV-cache step graphs (`llama_kv`, `gpt2_kv`): `past_key_values.{i}.*` in, `present.{i}.*` out.
const KV_MODELS: [&str; 2] = ["llama_kv", "gpt2_kv"];

/// Outputs of `g` on `inputs`, compared with the `.npy` files in `want_dir`.
fn check_outputs(g: &Graph, outs: &[Tensor], want_dir: &Path, what: &str) {
    for (&o, got) in g.outputs.iter().zip(outs) {
        let name = &g.value(o).name;
        let want = npy::read_npy(&want_dir.join(format!("{}.npy", npy::file_stem(name)))).unwrap();
        let (err, scale) = errors(&want, got);
        eprintln!("{what}: {name}: max abs error {err:.3e}, max |output| {scale:.3e}");
        assert!(err <= 1e-4 * scale, "{what}: {name}: max abs error {err} > 1e-4 x {scale}");
    }
}

#[test]
fn kv_graphs_run_their_prefill_step_symbolic_and_static() {
    for m in KV_MODELS {
        let dir = models_dir().join(m);
        let model = dir.join("model.onnx");
        let read =
            |name: &str| npy::read_npy(&dir.join("prefill_inputs").join(format!("{}.npy", npy::file_stem(name))));
        // One symbolic graph, run at past 0 (the past tensors are [1, kv_heads, 0, head_dim]).
        let g = load_onnx(&model, &LoadOptions::default()).unwrap();
        let inputs: BTreeMap<String, Tensor> =
            g.inputs.iter().map(|&i| g.value(i).name.clone()).map(|n| (n.clone(), read(&n).unwrap())).collect();
        assert!(inputs.iter().any(|(n, t)| n.starts_with("past_key_values.") && t.shape()[2] == 0));
        let outs = interp::run_named(&g, &inputs).unwrap();
        check_outputs(&g, &outs, &dir.join("prefill_expected"), &format!("{m} prefill"));
        // The same step with every shape fixed, the zero-length past axis included.
        let mut opts = LoadOptions::default();
        for (n, t) in &inputs {
            opts.shapes.insert(n.clone(), slmtvm_ir::Shape::known(t.shape()));
        }
        let g = load_onnx(&model, &opts).unwrap();
        assert!(g.values.iter().all(|v| v.ty.shape.is_known()), "{m}: a value kept a symbolic dim");
        let outs = interp::run_named(&g, &inputs).unwrap();
        check_outputs(&g, &outs, &dir.join("prefill_expected"), &format!("{m} prefill, static"));
    }
}

#[test]
fn kv_graphs_generate_onnx_runtimes_greedy_tokens() {
    for m in KV_MODELS {
        let dir = models_dir().join(m);
        let greedy: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("greedy.json")).unwrap()).unwrap();
        let ids = |k: &str| -> Vec<i64> { greedy[k].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect() };
        let (prompt, want) = (ids("prompt"), ids("generated"));
        // The recorded run agrees with transformers' own generate() on the same prompt.
        assert_eq!(ids("hf_torch_generated"), want, "{m}: greedy.json: ONNX Runtime and HF disagree");

        let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
        let names: Vec<String> = g.inputs.iter().map(|&i| g.value(i).name.clone()).collect();
        let out_names: Vec<String> = g.outputs.iter().map(|&o| g.value(o).name.clone()).collect();
        // Past tensors: the prefill step's (zero-length) ones from the recorded inputs.
        let mut past: BTreeMap<String, Tensor> = names
            .iter()
            .filter(|n| n.starts_with("past_key_values."))
            .map(|n| {
                let t = npy::read_npy(&dir.join("prefill_inputs").join(format!("{}.npy", npy::file_stem(n)))).unwrap();
                (n.clone(), t)
            })
            .collect();
        let (mut tokens, mut got) = (prompt.clone(), Vec::new());
        let mut past_len = 0usize;
        for _ in 0..want.len() {
            let s = tokens.len();
            let mut inputs = past.clone();
            inputs.insert("input_ids".into(), Tensor::from_vec(&[1, s], tokens.clone()).unwrap());
            inputs.insert(
                "attention_mask".into(),
                Tensor::from_vec(&[1, past_len + s], vec![1i64; past_len + s]).unwrap(),
            );
            let pos: Vec<i64> = (past_len..past_len + s).map(|p| p as i64).collect();
            inputs.insert("position_ids".into(), Tensor::from_vec(&[1, s], pos).unwrap());
            let outs = interp::run_named(&g, &inputs).unwrap();
            let logits = outs[0].to_f64();
            let vocab = *logits.shape().last().unwrap();
            let last: Vec<f64> = logits.iter().copied().skip((s - 1) * vocab).collect();
            let tok = (0..vocab).fold(0, |b, k| if last[k] > last[b] { k } else { b });
            got.push(tok as i64);
            for (name, t) in out_names.iter().zip(outs).skip(1) {
                past.insert(name.replacen("present.", "past_key_values.", 1), t);
            }
            past_len += s;
            tokens = vec![tok as i64];
        }
        assert_eq!(got, want, "{m}: greedy tokens of the reference interpreter differ from ONNX Runtime's");
    }
}

#[test]
fn optimized_models_match_onnx_runtime_and_round_trip_without_rules() {
    for dir in model_dirs() {
        // Symbolic as exported and with the recorded shapes fixed.
        for opts in [LoadOptions::default(), fixed_shapes(&dir)] {
            let g = load_onnx(&dir.join("model.onnx"), &opts).unwrap();
            // No rule: the same graph back, up to merging identical nodes.
            let (rt, r0) =
                slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options { level: 0, ..Default::default() }).unwrap();
            assert!(text::print(&rt) == text::print(&g), "{}: level 0 changed the graph", dir.display());
            assert_eq!(r0.stop, "off");
            let (og, report) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
            assert!(
                og.nodes.len() <= g.nodes.len(),
                "{}: {} nodes became {}",
                dir.display(),
                g.nodes.len(),
                og.nodes.len()
            );
            assert!(report.cost_after <= report.cost_before * (1.0 + 1e-9), "{}: {}", dir.display(), report.text());
            // The interface is unchanged.
            let names = |g: &Graph, ids: &[slmtvm_ir::ValueId]| -> Vec<String> {
                ids.iter().map(|&i| format!("{}:{}", g.value(i).name, g.ty(i))).collect()
            };
            assert_eq!(names(&og, &og.inputs), names(&g, &g.inputs));
            assert_eq!(names(&og, &og.outputs), names(&g, &g.outputs));
            let outs = interp::run_named(&og, &inputs_of(&og, &dir)).unwrap();
            check_outputs(&og, &outs, &dir.join("expected"), "optimized");
        }
    }
}

#[test]
fn conversion_alone_is_lossless() {
    // Through the e-graph and back with no rule and no folding opportunity left: the same text.
    for dir in model_dirs() {
        let g = load_onnx(&dir.join("model.onnx"), &fixed_shapes(&dir)).unwrap();
        let (egraph, loaded) = slmtvm_optimizer::convert::to_egraph(&g).unwrap();
        let model = slmtvm_optimizer::CostModel::default();
        let back = slmtvm_optimizer::convert::from_egraph(&g, &loaded, &egraph, &model).unwrap();
        let dup = duplicate_nodes(&g);
        if back.nodes.len() + dup != g.nodes.len() {
            let a: Vec<String> = g.nodes.iter().map(|n| n.name.clone()).collect();
            let b: Vec<String> = back.nodes.iter().map(|n| n.name.clone()).collect();
            let extra: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
            let missing: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
            panic!("{}: extra {extra:?} missing {missing:?}", dir.display());
        }
        if dup == 0 {
            let (a, b) = (text::print(&g), text::print(&back));
            let diff = a.lines().zip(b.lines()).find(|(x, y)| x != y);
            assert!(
                a == b,
                "{}: first difference:\n{:.300}\n{:.300}",
                dir.display(),
                diff.map_or("", |d| d.0),
                diff.map_or("", |d| d.1)
            );
        }
    }
}

/// Nodes equal to an earlier one (same operator text and operands): the e-graph merges them.
fn duplicate_nodes(g: &Graph) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    let mut alias: BTreeMap<slmtvm_ir::ValueId, slmtvm_ir::ValueId> = BTreeMap::new();
    let mut first: BTreeMap<(String, Vec<Option<slmtvm_ir::ValueId>>), Vec<slmtvm_ir::ValueId>> = BTreeMap::new();
    let mut dup = 0;
    for n in &g.nodes {
        let ins: Vec<Option<slmtvm_ir::ValueId>> =
            n.inputs.iter().map(|i| i.map(|v| *alias.get(&v).unwrap_or(&v))).collect();
        let key = (text::print_op(&n.op), ins);
        if let Some(outs) = first.get(&key) {
            dup += 1;
            for (o, f) in n.outputs.iter().zip(outs) {
                alias.insert(*o, *f);
            }
        } else {
            seen.insert(n.name.clone());
            first.insert(key, n.outputs.clone());
        }
    }
    dup
}

#[test]
fn gelu_is_recognized_in_the_exported_encoders_and_decoders() {
    // (model, GELU form, decomposed op that must be gone, layers)
    for (m, tanh, gone) in [("bert_tiny", false, "Erf"), ("gpt2_tiny", true, "Tanh"), ("phi_tiny", true, "Tanh")] {
        let dir = models_dir().join(m);
        let g = load_onnx(&dir.join("model.onnx"), &fixed_shapes(&dir)).unwrap();
        let (o, r) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
        // As a Unary, or as the activation of the Dense it was fused into.
        let gelu = slmtvm_ir::ops::UnaryOp::Gelu { tanh_approx: tanh };
        let gelus = o
            .nodes
            .iter()
            .filter(|n| match &n.op {
                slmtvm_ir::Op::Unary(u) => *u == gelu,
                slmtvm_ir::Op::Dense(d) => d.activation.as_ref() == Some(&gelu),
                _ => false,
            })
            .count();
        assert_eq!(gelus, 2, "{m}: {}", r.text());
        assert_eq!(o.nodes.iter().filter(|n| n.op.kind_name() == gone).count(), 0, "{m}");
        assert_eq!(r.applied.get("attention"), Some(&2), "{m}: one attention per layer found: {}", r.text());
    }
}

#[test]
fn rmsnorm_and_silu_are_recognized_in_the_llama_style_decoders() {
    // Five RMSNorms (two per layer and the final one) and one SiLU-gated MLP per layer, fused.
    for m in ["llama_tiny", "qwen2_tiny", "llama_tiny_dynamo", "llama_kv"] {
        let dir = models_dir().join(m);
        let g = load_onnx(&dir.join("model.onnx"), &fixed_shapes(&dir)).unwrap();
        let (o, r) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
        let n = |k: &str| o.nodes.iter().filter(|x| x.op.kind_name() == k).count();
        assert_eq!((n("RmsNorm"), n("FusedMlp"), n("Silu"), n("Sigmoid")), (5, 2, 0, 0), "{m}: {}", r.text());
        let silu = slmtvm_ir::Op::FusedMlp(slmtvm_ir::ops::FusedMlp { activation: slmtvm_ir::ops::UnaryOp::Silu });
        assert!(o.nodes.iter().filter(|x| x.op.kind_name() == "FusedMlp").all(|x| x.op == silu), "{m}");
        assert_eq!(r.applied.get("attention"), Some(&2), "{m}: one attention per layer found: {}", r.text());
        // Extraction takes the fused form: one Attention per layer reading the 2 K/V heads
        // themselves (not the exporter's repeat_kv copies for the 4, or 6, query heads), and
        // the outputs still match ONNX Runtime.
        let f = o;
        let nf = |k: &str| f.nodes.iter().filter(|x| x.op.kind_name() == k).count();
        assert_eq!((nf("Attention"), nf("Softmax")), (2, 0), "{m}: {}", r.text());
        for a in f.nodes.iter().filter(|x| x.op.kind_name() == "Attention") {
            let heads = |i: usize| f.ty(a.inputs[i].unwrap()).shape.0[1].known();
            assert!(heads(1) == Some(2) && heads(2) == Some(2) && heads(0) > heads(1), "{m}: {}", r.text());
        }
        let outs = interp::run_named(&f, &inputs_of(&f, &dir)).unwrap();
        check_outputs(&f, &outs, &dir.join("expected"), &format!("{m} fused"));
    }
}

#[test]
fn kv_cache_attention_reads_the_unrepeated_heads_with_symbolic_shapes() {
    // llama_kv kept symbolic (batch, sequence and past_sequence bounded): one Attention per
    // layer over the 2 K/V heads of the present cache itself (repeat_kv's Expand copies gone),
    // matching ONNX Runtime at the recorded decode step and at the prefill step.
    let dir = models_dir().join("llama_kv");
    let mut opts = LoadOptions::default();
    for (s, b) in [("batch", 4), ("sequence", 16), ("past_sequence", 63)] {
        opts.symbols.insert(s.into(), slmtvm_ir::Dim::sym(s, Some(b)));
    }
    let g = load_onnx(&dir.join("model.onnx"), &opts).unwrap();
    let (o, r) = slmtvm_optimizer::optimize(&g, &slmtvm_optimizer::Options::default()).unwrap();
    assert_eq!(r.applied.get("attention-gqa"), Some(&2), "{}", r.text());
    let atts: Vec<_> = o.nodes.iter().filter(|x| x.op.kind_name() == "Attention").collect();
    assert_eq!(atts.len(), 2, "{}", r.text());
    for a in atts {
        let k = o.ty(a.inputs[1].unwrap());
        assert_eq!(k.shape.0[1].known(), Some(2), "{}", k.shape);
        assert!(k.shape.0[2].known().is_none(), "the key length stays symbolic: {}", k.shape);
        let feeds_present = o.outputs.iter().any(|&p| Some(p) == a.inputs[1]);
        assert!(feeds_present, "Attention reads the present cache itself");
    }
    for (inputs, expected) in [("inputs", "expected"), ("prefill_inputs", "prefill_expected")] {
        let ins: BTreeMap<String, Tensor> = o
            .inputs
            .iter()
            .map(|&i| {
                let name = o.value(i).name.clone();
                (name.clone(), npy::read_npy(&dir.join(inputs).join(format!("{}.npy", npy::file_stem(&name)))).unwrap())
            })
            .collect();
        let outs = interp::run_named(&o, &ins).unwrap();
        check_outputs(&o, &outs, &dir.join(expected), &format!("llama_kv symbolic {inputs}"));
    }
}

/// `g` with every LayerNorm written out as exporters before opset 17 write it
/// (`ReduceMean`, `Sub`, `Pow 2`, `ReduceMean`, `Add eps`, `Sqrt`, `Div`, `·γ`, `+β`).
fn decompose_layernorms(mut g: Graph) -> Graph {
    use slmtvm_ir::ops::{BinaryOp, Reduce, ReduceKind, UnaryOp};
    use slmtvm_ir::{DType, Node, Op, Shape, TypeInfo};
    let nodes = std::mem::take(&mut g.nodes);
    let placeholder = TypeInfo::new(DType::F32, Shape(vec![]));
    for n in nodes {
        let Op::LayerNorm(ln) = &n.op else {
            g.nodes.push(n);
            continue;
        };
        assert_eq!(n.outputs.len(), 1, "{}: the statistics outputs are used", n.name);
        let (x, gamma, beta) = (n.inputs[0].unwrap(), n.inputs[1].unwrap(), n.inputs[2]);
        let two = g.add_const(format!("{}/two", n.name), Tensor::scalar(2f32));
        let eps = g.add_const(format!("{}/eps", n.name), Tensor::scalar(ln.epsilon));
        let mean = Op::Reduce(Reduce { kind: ReduceKind::Mean, axes: Some(vec![ln.axis]), keepdims: true });
        let steps: Vec<(&str, Op, Vec<usize>)> = vec![
            ("mean", mean.clone(), vec![0]),
            ("sub", Op::Binary(BinaryOp::Sub), vec![0, 100]),
            ("pow", Op::Binary(BinaryOp::Pow), vec![101, 1]),
            ("var", mean, vec![102]),
            ("add_eps", Op::Binary(BinaryOp::Add), vec![103, 2]),
            ("sqrt", Op::Unary(UnaryOp::Sqrt), vec![104]),
            ("div", Op::Binary(BinaryOp::Div), vec![101, 105]),
            ("scale", Op::Binary(BinaryOp::Mul), vec![106, 3]),
        ];
        // Operand k < 100: x, two, eps, γ; k ≥ 100: the output of step k − 100.
        let mut outs = Vec::new();
        let last = if beta.is_some() { steps.len() } else { steps.len() - 1 };
        for (i, (name, op, ins)) in steps.into_iter().enumerate() {
            let ins =
                ins.iter().map(|&k| Some(if k >= 100 { outs[k - 100] } else { [x, two, eps, gamma][k] })).collect();
            let out =
                if i == last { n.outputs[0] } else { g.add_value(format!("{}/{name}", n.name), placeholder.clone()) };
            g.nodes.push(Node { name: format!("{}/{name}", n.name), op, inputs: ins, outputs: vec![out] });
            outs.push(out);
        }
        if let Some(b) = beta {
            let name = format!("{}/bias", n.name);
            g.nodes.push(Node {
                name,
                op: Op::Binary(BinaryOp::Add),
                inputs: vec![Some(outs[7]), Some(b)],
                outputs: vec![n.outputs[0]],
            });
        }
    }
    g.infer().unwrap();
    g
}

#[test]
fn decomposed_layernorms_of_bert_tiny_are_recognized() {
    let dir = models_dir().join("bert_tiny");
    let g = load_onnx(&dir.join("model.onnx"), &LoadOptions::default()).unwrap();
    let count = |g: &Graph, kind: &str| g.nodes.iter().filter(|n| n.op.kind_name() == kind).count();
    let layernorms = count(&g, "LayerNorm");
    assert_eq!(layernorms, 5);
    let d = decompose_layernorms(g);
    assert_eq!(count(&d, "LayerNorm"), 0);
    let (o, r) = slmtvm_optimizer::optimize(&d, &slmtvm_optimizer::Options::default()).unwrap();
    assert_eq!(r.applied.get("layernorm-affine").copied(), Some(layernorms), "{}", r.text());
    assert_eq!(count(&o, "LayerNorm"), layernorms, "{}", r.text());
    assert_eq!(count(&o, "Sqrt") + count(&o, "Pow"), 0);
    let outs = interp::run_named(&o, &inputs_of(&o, &dir)).unwrap();
    for (&v, got) in o.outputs.iter().zip(&outs) {
        let name = &o.value(v).name;
        let want = npy::read_npy(&dir.join("expected").join(format!("{}.npy", npy::file_stem(name)))).unwrap();
        let (err, scale) = errors(&want, got);
        assert!(err <= 1e-4 * scale, "{name}: max abs error {err} > 1e-4 x {scale}");
    }
}
