//! The cross-target runner itself: one elementwise graph with broadcasting, compiled for every
//! preset, linked and run (natively or under qemu-user), equal to the interpreter bit for bit.

use slmtvm_ir::ops::{BinaryOp, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo};
use slmtvm_tests::cross::{check_against_interpreter, runnable_presets};

fn graph() -> Graph {
    let mut g = Graph::new("smoke");
    let x = g.add_input("x", TypeInfo::new(DType::F32, Shape::known(&[2, 3, 7])));
    let bias: Vec<f32> = (0..7).map(|i| i as f32 * 0.25 - 0.8).collect();
    let b = g.add_const("b", Tensor::from_vec(&[7], bias).unwrap());
    let s = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(x), Some(b)], &["s".into()])[0];
    let r = g.add_node("relu", Op::Unary(UnaryOp::Relu), vec![Some(s)], &["r".into()])[0];
    let m = g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(r), Some(x)], &["m".into()])[0];
    let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(m)], &["y".into()])[0];
    g.outputs = vec![y, r];
    g.infer().unwrap();
    g
}

#[test]
fn a_graph_runs_on_every_preset_and_matches_the_interpreter() {
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target can be linked and run here");
    let xs: Vec<f32> = (0..42).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.3).collect();
    let data = vec![vec![Tensor::from_vec(&[2, 3, 7], xs).unwrap()], vec![Tensor::zeros(DType::F32, &[2, 3, 7])]];
    let failures = check_against_interpreter(&graph(), &data, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn objects_import_nothing_but_memcpy() {
    // A graph output that is a graph input is copied with memcpy by the entry point.
    let mut g = Graph::new("copy");
    let x = g.add_input("x", TypeInfo::new(DType::F32, Shape::known(&[3])));
    g.outputs = vec![x];
    g.infer().unwrap();
    for (preset, _) in slmtvm_targets::presets() {
        let t = slmtvm_targets::Target::from_spec(preset).unwrap();
        let c = slmtvm_codegen::compile(&g, "copy", &t).unwrap();
        assert_eq!(slmtvm_tests::cross::undefined_symbols(&c.object).unwrap(), ["memcpy"], "{preset}");
        let c = slmtvm_codegen::compile(&graph(), "smoke", &t).unwrap();
        assert!(slmtvm_tests::cross::undefined_symbols(&c.object).unwrap().is_empty(), "{preset}");
    }
}
