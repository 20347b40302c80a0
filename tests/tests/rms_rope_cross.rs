//! RMSNormalization and RotaryEmbedding in the forms the ONNX node tests leave out (float16
//! through the float32 stash, 3-D rotary inputs with interleaved partial rotation, broadcast
//! position ids), imported from ONNX, compiled for every runnable target and compared with the
//! reference interpreter.

use slmtvm_frontend::onnx::build::{import_one, int_attr, value_info};
use slmtvm_frontend::onnx::proto::{AttributeProto, ValueInfoProto};
use slmtvm_ir::ops::Cast;
use slmtvm_ir::{DType, Graph, Op, Tensor};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::check_against_interpreter;

const F32: i32 = 1;
const F16: i32 = 10;
const I64: i32 = 7;

/// An opset-23 model of one `op` node on graph inputs `ins`, output "y", imported as graph
/// `name` (which names the cross runner's build folder).
fn import(name: &str, op: &str, ins: Vec<ValueInfoProto>, attrs: Vec<AttributeProto>) -> Graph {
    let mut g = import_one(op, ins, attrs).unwrap();
    g.name = name.into();
    g
}

/// Deterministic values in [-2, 2).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Lcg(seed);
    (0..n).map(|_| ((rng.bits() >> 29) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0).collect()
}

fn f32s(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_vec(shape, values(shape.iter().product(), seed)).unwrap()
}

fn f16s(shape: &[usize], seed: u64) -> Tensor {
    let cast = Op::Cast(Cast { to: DType::F16, saturate: true });
    cast.eval(&[Some(&f32s(shape, seed))]).unwrap().remove(0)
}

fn assert_matches(g: &Graph, data: &[Vec<Tensor>], rtol: f64, atol: f64) {
    let failures = check_against_interpreter(g, data, rtol, atol);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rms_norm_f16_on_every_target() {
    let g = import(
        "rms_f16",
        "RMSNormalization",
        vec![value_info("x", F16, &[2, 3, 17]), value_info("s", F16, &[3, 17])],
        vec![int_attr("axis", 1)],
    );
    assert!(g.nodes.iter().any(|n| n.op.name() == "Cast"), "f16 is computed in f32");
    let data = vec![vec![f16s(&[2, 3, 17], 1), f16s(&[3, 17], 2)], vec![f16s(&[2, 3, 17], 3), f16s(&[3, 17], 4)]];
    assert_matches(&g, &data, 2e-3, 2e-3);
}

#[test]
fn rotary_3d_interleaved_partial_on_every_target() {
    for (inter, dt) in [(1, F32), (0, F32), (1, F16)] {
        let g = import(
            &format!("rope3d_{inter}_{dt}"),
            "RotaryEmbedding",
            vec![
                value_info("x", dt, &[2, 5, 24]),
                value_info("c", dt, &[16, 2]),
                value_info("s", dt, &[16, 2]),
                value_info("p", I64, &[1, 5]),
            ],
            vec![int_attr("num_heads", 4), int_attr("rotary_embedding_dim", 4), int_attr("interleaved", inter)],
        );
        let t = |shape: &[usize], seed| if dt == F16 { f16s(shape, seed) } else { f32s(shape, seed) };
        let pos = Tensor::from_vec(&[1, 5], vec![15i64, 0, 7, 7, 2]).unwrap();
        let data = vec![vec![t(&[2, 5, 24], 5), t(&[16, 2], 6), t(&[16, 2], 7), pos]];
        assert_matches(&g, &data, 1e-5, 1e-5);
    }
}
