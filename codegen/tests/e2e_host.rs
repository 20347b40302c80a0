//! End to end on the host (x86_64): compile a small graph, link it with the C harness, run it,
//! and compare with the reference interpreter.

use slmtvm_codegen::emit::Caps;
use slmtvm_ir::ops::{BinaryOp, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo};
use std::path::Path;
use std::process::Command;

fn graph() -> Graph {
    let mut g = Graph::new("g");
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
fn elementwise_graph_matches_the_interpreter_on_every_preset() {
    let g = graph();
    let xs: Vec<f32> = (0..42).map(|i| ((i * 37 % 17) as f32 - 8.0) * 0.3).collect();
    let x = Tensor::from_vec(&[2, 3, 7], xs).unwrap();
    let want = slmtvm_ir::interp::run(&g, std::slice::from_ref(&x)).unwrap();
    let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime-stub/harness.c");
    for (preset, _) in slmtvm_targets::presets() {
        let t = slmtvm_targets::Target::from_spec(preset).unwrap();
        let caps = Caps {
            ptr: cranelift_codegen::ir::types::I64,
            vector: t.vector().is_some(),
            native_fma: t.vector().is_some_and(|v| v.fma),
        };
        let c = slmtvm_codegen::object::compile(&g, "tiny", t.isa().unwrap(), caps).unwrap();
        let dir = std::env::temp_dir().join(format!("slmtvm-e2e-{}-{preset}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::write(dir.join("tiny.o"), &c.object).unwrap();
        std::fs::write(dir.join("tiny.h"), slmtvm_codegen::header::header(&g, "tiny", &c.plan)).unwrap();
        let st = Command::new(t.arch().c_compiler().program)
            .args([
                "-O2",
                "-std=c99",
                "-D_POSIX_C_SOURCE=200809L",
                "-DSLMTVM_MODEL=tiny",
                "-DSLMTVM_MODEL_UPPER=TINY",
                "-include",
            ])
            .arg(dir.join("tiny.h"))
            .arg(&harness)
            .arg(dir.join("tiny.o"))
            .arg("-o")
            .arg(dir.join("run"))
            .args(t.cc_flags())
            .status()
            .unwrap();
        assert!(st.success(), "{preset}: link failed");
        slmtvm_frontend::npy::write_npy(&dir.join("in/x.npy"), &x).unwrap();
        let mut cmd = match t.runner() {
            Some(r) => {
                let mut c = Command::new(&r[0]);
                c.args(&r[1..]).arg(dir.join("run"));
                c
            }
            None => Command::new(dir.join("run")),
        };
        let o = cmd.arg(dir.join("in")).arg(dir.join("out")).output().unwrap();
        assert!(o.status.success(), "{preset}: {}", String::from_utf8_lossy(&o.stderr));
        for (name, w) in ["y", "r"].iter().zip(&want) {
            let got = slmtvm_frontend::npy::read_npy(&dir.join(format!("out/{name}.npy"))).unwrap();
            assert_eq!(got.to_le_bytes(), w.to_le_bytes(), "{preset}: {name}");
        }
        eprintln!("{preset}: ok ({} kernels, arena {} bytes)", c.kernels, c.plan.arena_bytes);
    }
}
