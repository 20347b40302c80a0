//! ONNX `RMSNormalization` (opset 23). With float32 `X` (and `stash_type` 1, the only one
//! supported) it is the IR's fused [`RmsNorm`]. With float16 `X` the operator's function body
//! rounds the normalized value to float16 before multiplying by `scale`, which `RmsNorm`
//! (rounding once) does not express, so it is decomposed into IR primitives exactly as the
//! function body computes it:
//!
//! ```text
//! XU = Cast<f32>(X)                      (when X is f16; stash_type 1)
//! Normalized = Div(XU, Sqrt(Add(ReduceMean<axes=[axis, rank)>(Mul(XU, XU)), epsilon)))
//! Y = Mul(Cast<T>(Normalized), scale)    (scale unidirectionally broadcast to X)
//! ```

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::subgraph::{Sub, at_most, required, single_output};
use crate::{Error, Result};
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Dim, Op, Tensor, ValueId};

/// Imports one `RMSNormalization` node.
pub(crate) fn import(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 2, "X and scale")?;
    let x = required(&b, &ins, 0, "X")?;
    let scale = required(&b, &ins, 1, "scale")?;
    let axis = a.int_or("axis", -1)?;
    let epsilon = a.float_or("epsilon", 1e-5)?;
    let stash = a.int_or("stash_type", 1)?;
    if stash != 1 {
        return Err(b.unsupported(format!("RMSNormalization stash_type {stash} (slmtvm computes in float32: 1)")));
    }

    let dt = b.dtype(x);
    if !matches!(dt, DType::F32 | DType::F16) {
        return Err(b.err(format!("X must be float32 or float16, got {dt}")));
    }
    if b.dtype(scale) != dt {
        return Err(b.unsupported(format!("scale of dtype {} with X of dtype {dt}", b.dtype(scale))));
    }
    let xd = b.dims(x);
    let rank = xd.len();
    if rank == 0 {
        return Err(b.err("X must have rank 1 or more, got a scalar"));
    }
    let first = usize::try_from(if axis < 0 { axis + rank as i64 } else { axis })
        .ok()
        .filter(|&v| v < rank)
        .ok_or_else(|| Error::Attribute {
            node: name.into(),
            attr: "axis".into(),
            msg: format!("{axis} is out of range for X of rank {rank}"),
        })?;
    let sd = b.dims(scale);
    if !unidirectional(&sd, &xd) {
        return Err(b.err(format!(
            "scale of shape {} does not broadcast to X of shape {}",
            b.ty(scale).shape,
            b.ty(x).shape
        )));
    }

    if dt == DType::F32 {
        return b.output(Op::RmsNorm(RmsNorm { axis, epsilon }), vec![x, scale], &out);
    }
    let xu = b.cast(x, DType::F32)?;
    let sq = b.binary(BinaryOp::Mul, xu, xu)?;
    let axes = (first..rank).map(|v| v as i64).collect();
    let mean = b.node(Op::Reduce(Reduce { kind: ReduceKind::Mean, axes: Some(axes), keepdims: true }), vec![sq])?;
    let eps = b.konst(Tensor::scalar(epsilon));
    let mse = b.binary(BinaryOp::Add, mean, eps)?;
    let rms = b.node(Op::Unary(UnaryOp::Sqrt), vec![mse])?;
    let normalized = b.binary(BinaryOp::Div, xu, rms)?;
    let normalized = b.cast(normalized, dt)?;
    b.output(Op::Binary(BinaryOp::Mul), vec![normalized, scale], &out)
}

/// True when a tensor of dims `from` broadcasts to `to` without changing `to`.
fn unidirectional(from: &[Dim], to: &[Dim]) -> bool {
    from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(f, t)| f == t || f.known() == Some(1))
}

#[cfg(test)]
mod tests {
    use crate::onnx::build::{D, float_attr, import_err, import_one, int_attr, vi};
    use half::f16;
    use slmtvm_ir::{Tensor, interp};

    const F32: i32 = 1;
    const F16: i32 = 10;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }

    #[test]
    fn normalizes_the_trailing_axes_and_scales() {
        let g = import_one(
            "RMSNormalization",
            vec![vi("x", F32, &[D::N(2), D::N(2)]), vi("s", F32, &[D::N(2)])],
            vec![float_attr("epsilon", 0.0)],
        )
        .unwrap();
        let y = interp::run(&g, &[t(&[2, 2], vec![3.0, 4.0, 1.0, -1.0]), t(&[2], vec![1.0, 2.0])]).unwrap();
        let r = (12.5f32).sqrt();
        let want = [3.0 / r, 8.0 / r, 1.0, -2.0];
        let got = y[0].view::<f32>().unwrap().iter().copied().collect::<Vec<_>>();
        assert_eq!(y[0].shape(), &[2, 2]);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?} against {want:?}");
        }
    }

    #[test]
    fn float32_is_one_fused_node_float16_is_decomposed() {
        let g = import_one(
            "RMSNormalization",
            vec![vi("x", F32, &[D::S("b"), D::N(4)]), vi("s", F32, &[D::N(4)])],
            vec![int_attr("axis", -1), float_attr("epsilon", 0.25)],
        )
        .unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].op, slmtvm_ir::Op::RmsNorm(slmtvm_ir::ops::RmsNorm { axis: -1, epsilon: 0.25 }));
        let g =
            import_one("RMSNormalization", vec![vi("x", F16, &[D::N(2)]), vi("s", F16, &[D::N(2)])], vec![]).unwrap();
        assert!(g.nodes.len() > 1 && g.nodes.iter().all(|n| !matches!(n.op, slmtvm_ir::Op::RmsNorm(_))));
    }

    #[test]
    fn f16_with_a_symbolic_batch_computes_in_f32() {
        let g = import_one(
            "RMSNormalization",
            vec![vi("x", F16, &[D::S("b"), D::N(2)]), vi("s", F16, &[D::N(1)])],
            vec![int_attr("axis", 1), float_attr("epsilon", 0.0)],
        )
        .unwrap();
        let h = |v: &[f32]| Tensor::from_vec(&[v.len() / 2, 2], v.iter().map(|&x| f16::from_f32(x)).collect()).unwrap();
        // 300² overflows f16: the mean of squares is taken in f32, then rounded to f16 once.
        let y =
            interp::run(&g, &[h(&[300.0, 400.0]), Tensor::from_vec(&[1], vec![f16::from_f32(2.0)]).unwrap()]).unwrap();
        let r = 125_000f32.sqrt();
        let round = |v: f32| f16::from_f32(v).to_f32();
        assert_eq!(y[0], h(&[round(round(300.0 / r) * 2.0), round(round(400.0 / r) * 2.0)]));
        assert!((round(300.0 / r) * 2.0 - 1.697).abs() < 2e-3);
    }

    #[test]
    fn bad_input_names_the_node() {
        let x = || vi("x", F32, &[D::N(2), D::N(3)]);
        for (scale, attrs, needle) in [
            (vi("s", F32, &[D::N(2)]), vec![], "does not broadcast"),
            (vi("s", F32, &[D::N(3)]), vec![int_attr("axis", 2)], "out of range"),
            (vi("s", F32, &[D::N(3)]), vec![int_attr("stash_type", 10)], "stash_type 10"),
            (vi("s", F16, &[D::N(3)]), vec![], "scale of dtype f16"),
        ] {
            let e = import_err("RMSNormalization", vec![x(), scale], attrs);
            assert!(e.contains("'n0'") && e.contains(needle), "{e}");
        }
        let e = import_err("RMSNormalization", vec![x()], vec![]);
        assert!(e.contains("'n0'") && e.contains("'scale'"), "{e}");
    }
}
