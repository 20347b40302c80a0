//! The static memory planner on the committed real models: every intermediate gets arena
//! bytes that no simultaneously live tensor shares, and the arena stays within 1.15x the lower
//! bound (the largest total size of tensors live at one node).

use slmtvm_codegen::{Storage, plan_memory};
use slmtvm_frontend::{LoadOptions, load_onnx};
use slmtvm_ir::ValueId;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn arena_within_115_percent_of_the_lower_bound_on_real_models() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for model in ["bert_tiny", "llama_tiny"] {
        let g = load_onnx(&dir.join(model).join("model.onnx"), &LoadOptions::default()).unwrap();
        let p = plan_memory(&g).unwrap();
        eprintln!("{model}: arena {} bytes, lower bound {} bytes", p.arena_bytes, p.lower_bound);
        assert!(p.lower_bound > 0);
        assert!(
            p.arena_bytes as f64 <= 1.15 * p.lower_bound as f64,
            "{model}: {} > 1.15 x {}",
            p.arena_bytes,
            p.lower_bound
        );

        // No two values that are live at the same node and are not views of one another or
        // in-place successors overlap in the arena.
        let mut first: BTreeMap<ValueId, usize> = BTreeMap::new();
        let mut last: BTreeMap<ValueId, usize> = BTreeMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for &o in &n.outputs {
                first.insert(o, i);
                last.insert(o, i);
            }
            for &v in n.inputs.iter().flatten() {
                last.insert(v, i);
            }
        }
        let arena: Vec<(ValueId, usize, usize)> = p
            .storage
            .iter()
            .filter_map(|(&v, s)| match s {
                Storage::Arena { offset, size } => Some((v, *offset, *size)),
                _ => None,
            })
            .collect();
        for (i, &(a, oa, sa)) in arena.iter().enumerate() {
            for &(b, ob, sb) in &arena[i + 1..] {
                let (fa, la, fb, lb) = (first[&a], last[&a], first[&b], last[&b]);
                // Live at the same node, and strictly overlapping in time beyond an in-place
                // hand-over (one dies exactly where the other is born).
                let concurrent = fa < lb && fb < la;
                if concurrent && oa < ob + sb && ob < oa + sa {
                    let shared =
                        p.view_of.get(&a) == Some(&b) || p.view_of.get(&b) == Some(&a) || (oa == ob && sa == sb);
                    assert!(shared, "{model}: '{}' and '{}' overlap", g.value(a).name, g.value(b).name);
                }
            }
        }
    }
}
