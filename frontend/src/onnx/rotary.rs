//! ONNX `RotaryEmbedding` (opset 23), decomposed into IR primitives that compute what the ONNX
//! reference implementation (`op_rotary_embedding.py`) computes, element for element:
//!
//! - the input is viewed as 4-D: a 4-D `[batch, heads, seq, head]` input as it is, a 3-D
//!   `[batch, seq, heads·head]` one reshaped to `[batch, seq, heads, head]` (`num_heads`);
//! - the caches are `Gather`ed by `position_ids` (2-D caches `[max_pos, rot/2]`) or taken as
//!   they are (3-D caches `[batch, seq, rot/2]`), and `Unsqueeze`d on the heads axis;
//! - the first `rot` (`rotary_embedding_dim`, else the head size) features of each head are
//!   split by `Slice` into halves, or into even and odd features when `interleaved`;
//! - `real = cos·x1 − sin·x2`, `imag = sin·x1 + cos·x2`, joined back by `Concat` (interleaved:
//!   `Unsqueeze`, `Concat` and `Reshape`), the untouched features `Concat`ed after them, and a
//!   3-D input reshaped back.
//!
//! The reference's transposes of a 4-D input cancel and are left out. Shape arguments use 0
//! ("copy the dim"), so batch, sequence and heads may be symbolic; the head size (and for 3-D
//! inputs the hidden size) must be known. `num_heads` matters for 3-D inputs only, as in the
//! reference.

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::subgraph::{Sub, at_most, required, single_output};
use crate::{Error, Result};
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Dim, Op, ValueId};

/// Imports one `RotaryEmbedding` node.
pub(crate) fn import(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 4, "X, cos_cache, sin_cache and position_ids")?;
    let x = required(&b, &ins, 0, "X")?;
    let cos = required(&b, &ins, 1, "cos_cache")?;
    let sin = required(&b, &ins, 2, "sin_cache")?;
    let pos = ins.get(3).copied().flatten();
    let attr_err = |attr: &str, msg: String| Error::Attribute { node: name.into(), attr: attr.into(), msg };
    let interleaved = a.flag_or("interleaved", false)?;
    let rot_attr = a.int_or("rotary_embedding_dim", 0)?;
    let num_heads = a.int_or("num_heads", 0)?;
    if rot_attr < 0 {
        return Err(attr_err("rotary_embedding_dim", format!("must be non-negative, got {rot_attr}")));
    }
    if num_heads < 0 {
        return Err(attr_err("num_heads", format!("must be non-negative, got {num_heads}")));
    }

    let dt = b.dtype(x);
    if !matches!(dt, DType::F32 | DType::F16) {
        return Err(b.err(format!("X must be float32 or float16, got {dt}")));
    }
    for (v, what) in [(cos, "cos_cache"), (sin, "sin_cache")] {
        if b.dtype(v) != dt {
            return Err(b.err(format!("{what} must have X's dtype {dt}, got {}", b.dtype(v))));
        }
    }
    let xd = b.dims(x);
    // The 4-D view of X, its head size, and the axis of heads in that view.
    let (x4, head, heads_axis, batch, seq) = match xd.len() {
        4 => {
            let head = b.known_dim(x, 3, "head size")?;
            (x, head, 1, xd[0].clone(), xd[2].clone())
        }
        3 => {
            if num_heads == 0 {
                return Err(attr_err("num_heads", "is required for a 3-D input".into()));
            }
            let hidden = b.known_dim(x, 2, "hidden size")?;
            let heads = num_heads as usize;
            if hidden % heads != 0 {
                return Err(attr_err(
                    "num_heads",
                    format!("{num_heads} does not divide the hidden size {hidden} of X {}", b.ty(x).shape),
                ));
            }
            let x4 = b.reshape(x, &[0, 0, num_heads, (hidden / heads) as i64])?;
            (x4, hidden / heads, 2, xd[0].clone(), xd[1].clone())
        }
        r => return Err(b.err(format!("X must be 3-D or 4-D, got rank {r} ({})", b.ty(x).shape))),
    };
    let rot = if rot_attr == 0 { head } else { rot_attr as usize };
    if rot > head {
        return Err(attr_err("rotary_embedding_dim", format!("{rot} exceeds the head size {head}")));
    }
    if rot % 2 != 0 {
        let what = if rot_attr == 0 { "the head size" } else { "rotary_embedding_dim" };
        return Err(b.err(format!("{what} {rot} is odd; rotation needs pairs of features")));
    }
    let half = rot / 2;

    // The caches as [batch or 1, seq or 1, rot/2].
    let (cos, sin) = match pos {
        Some(p) => {
            if b.dtype(p) != DType::I64 || b.ty(p).shape.rank() != 2 {
                return Err(b.err(format!("position_ids must be a 2-D int64 tensor, got {}", b.ty(p))));
            }
            check_caches(&b, cos, sin, 2, "2-D [max_position, rot/2] when position_ids are given", half)?;
            let gather = |b: &mut Sub, c| b.node(Op::Gather(Gather { axis: 0 }), vec![c, p]);
            (gather(&mut b, cos)?, gather(&mut b, sin)?)
        }
        None => {
            check_caches(&b, cos, sin, 3, "3-D [batch, seq, rot/2] without position_ids", half)?;
            (cos, sin)
        }
    };
    let cd = b.dims(cos);
    let fits = |c: &Dim, d: &Dim| c == d || c.known() == Some(1);
    if !fits(&cd[0], &batch) || !fits(&cd[1], &seq) {
        let from = if pos.is_some() { "position_ids" } else { "the caches" };
        return Err(b.err(format!(
            "{from} give [batch, seq] = [{}, {}], which does not match X's [{batch}, {seq}]",
            cd[0], cd[1]
        )));
    }
    let cos = b.unsqueeze(cos, &[heads_axis])?;
    let sin = b.unsqueeze(sin, &[heads_axis])?;

    let (r, h, hh) = (rot as i64, head as i64, half as i64);
    let xr = if rot < head { b.slice(x4, 3, 0, r, 1)? } else { x4 };
    let (x1, x2) = if interleaved {
        (b.slice(xr, 3, 0, r, 2)?, b.slice(xr, 3, 1, r, 2)?)
    } else {
        (b.slice(xr, 3, 0, hh, 1)?, b.slice(xr, 3, hh, r, 1)?)
    };
    let cos_x1 = b.binary(BinaryOp::Mul, cos, x1)?;
    let sin_x2 = b.binary(BinaryOp::Mul, sin, x2)?;
    let real = b.binary(BinaryOp::Sub, cos_x1, sin_x2)?;
    let sin_x1 = b.binary(BinaryOp::Mul, sin, x1)?;
    let cos_x2 = b.binary(BinaryOp::Mul, cos, x2)?;
    let imag = b.binary(BinaryOp::Add, sin_x1, cos_x2)?;
    // The last operators are built as (op, inputs) so that the final one can take the output name.
    let rotated = if interleaved {
        let real = b.unsqueeze(real, &[4])?;
        let imag = b.unsqueeze(imag, &[4])?;
        let pairs = b.node(Op::Concat(Concat { axis: 4 }), vec![real, imag])?;
        b.reshape_args(pairs, &[0, 0, 0, r])
    } else {
        (Op::Concat(Concat { axis: 3 }), vec![real, imag])
    };
    let y4 = if rot < head {
        let rotated = b.node(rotated.0, rotated.1)?;
        let pass = b.slice(x4, 3, r, h, 1)?;
        (Op::Concat(Concat { axis: 3 }), vec![rotated, pass])
    } else {
        rotated
    };
    if xd.len() == 3 {
        let y4 = b.node(y4.0, y4.1)?;
        let (op, ins) = b.reshape_args(y4, &[0, 0, (head as i64) * num_heads]);
        b.output(op, ins, &out)
    } else {
        b.output(y4.0, y4.1, &out)
    }
}

/// Both caches have rank `rank` (described by `shape`), one shape, and `half` as last dim.
fn check_caches(b: &Sub, cos: ValueId, sin: ValueId, rank: usize, shape: &str, half: usize) -> Result<()> {
    let (c, s) = (&b.ty(cos).shape, &b.ty(sin).shape);
    if c.rank() != rank {
        return Err(b.err(format!("cos_cache must be {shape}, got {c}")));
    }
    if c != s {
        return Err(b.err(format!("cos_cache {c} and sin_cache {s} differ in shape")));
    }
    if c.0[rank - 1] != Dim::Known(half) {
        return Err(b.err(format!("the caches' last dim must be rot/2 = {half}, got {c}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::onnx::build::{D, import_err, import_one, int_attr, vi};
    use slmtvm_ir::{Tensor, interp};

    const F32: i32 = 1;
    const I64: i32 = 7;

    /// The reference on [b, s, n, h] data (row-major), caches [b, s, rot/2].
    fn reference(
        x: &[f32],
        cos: &[f32],
        sin: &[f32],
        (b, s, n, h): (usize, usize, usize, usize),
        rot: usize,
        inter: bool,
    ) -> Vec<f32> {
        let mut y = x.to_vec();
        let half = rot / 2;
        for bi in 0..b {
            for si in 0..s {
                for ni in 0..n {
                    let base = ((bi * s + si) * n + ni) * h;
                    for i in 0..half {
                        let (c, sn) = (cos[(bi * s + si) * half + i], sin[(bi * s + si) * half + i]);
                        let (i1, i2) = if inter { (2 * i, 2 * i + 1) } else { (i, i + half) };
                        let (x1, x2) = (x[base + i1], x[base + i2]);
                        y[base + i1] = c * x1 - sn * x2;
                        y[base + i2] = sn * x1 + c * x2;
                    }
                }
            }
        }
        y
    }

    fn seq(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * k).sin()).collect()
    }

    #[test]
    fn partial_rotary_on_a_3d_input_with_a_symbolic_batch() {
        for inter in [false, true] {
            let g = import_one(
                "RotaryEmbedding",
                vec![
                    vi("x", F32, &[D::S("b"), D::N(3), D::N(12)]),
                    vi("cos", F32, &[D::N(10), D::N(2)]),
                    vi("sin", F32, &[D::N(10), D::N(2)]),
                    vi("pos", I64, &[D::S("b"), D::N(3)]),
                ],
                vec![
                    int_attr("num_heads", 2),
                    int_attr("rotary_embedding_dim", 4),
                    int_attr("interleaved", inter as i64),
                ],
            )
            .unwrap();
            let x = seq(2 * 3 * 12, 0.37);
            let (cos_t, sin_t) = (seq(20, 0.11), seq(20, 0.23));
            let pos = [7i64, 0, 3, 9, 9, 1];
            let gather = |t: &[f32]| {
                pos.iter().flat_map(|&p| t[p as usize * 2..p as usize * 2 + 2].to_vec()).collect::<Vec<_>>()
            };
            let want = reference(&x, &gather(&cos_t), &gather(&sin_t), (2, 3, 2, 6), 4, inter);
            let y = interp::run(
                &g,
                &[
                    Tensor::from_vec(&[2, 3, 12], x).unwrap(),
                    Tensor::from_vec(&[10, 2], cos_t).unwrap(),
                    Tensor::from_vec(&[10, 2], sin_t).unwrap(),
                    Tensor::from_vec(&[2, 3], pos.to_vec()).unwrap(),
                ],
            )
            .unwrap();
            assert_eq!(y[0], Tensor::from_vec(&[2, 3, 12], want).unwrap(), "interleaved {inter}");
        }
    }

    #[test]
    fn four_d_input_with_3d_caches() {
        let g = import_one(
            "RotaryEmbedding",
            vec![
                vi("x", F32, &[D::N(1), D::N(2), D::N(3), D::N(4)]),
                vi("cos", F32, &[D::N(1), D::N(3), D::N(2)]),
                vi("sin", F32, &[D::N(1), D::N(3), D::N(2)]),
            ],
            vec![],
        )
        .unwrap();
        let x = seq(24, 0.5);
        let (c, s) = (seq(6, 0.3), seq(6, 0.7));
        // Reference on [b, s, n, h]: transpose heads and sequence first.
        let tr = |v: &[f32]| {
            let mut o = vec![0.0; 24];
            for n in 0..2 {
                for si in 0..3 {
                    for k in 0..4 {
                        o[(si * 2 + n) * 4 + k] = v[(n * 3 + si) * 4 + k];
                    }
                }
            }
            o
        };
        let want_bsnh = reference(&tr(&x), &c, &s, (1, 3, 2, 4), 4, false);
        let mut want = vec![0.0; 24];
        for n in 0..2 {
            for si in 0..3 {
                for k in 0..4 {
                    want[(n * 3 + si) * 4 + k] = want_bsnh[(si * 2 + n) * 4 + k];
                }
            }
        }
        let ins = [
            Tensor::from_vec(&[1, 2, 3, 4], x).unwrap(),
            Tensor::from_vec(&[1, 3, 2], c).unwrap(),
            Tensor::from_vec(&[1, 3, 2], s).unwrap(),
        ];
        assert_eq!(interp::run(&g, &ins).unwrap()[0], Tensor::from_vec(&[1, 2, 3, 4], want).unwrap());
    }

    #[test]
    fn bad_input_names_the_node() {
        let cache = |n: &str, dims: &[i64]| vi(n, F32, &dims.iter().map(|&d| D::N(d)).collect::<Vec<_>>());
        let pos = || vi("pos", I64, &[D::N(2), D::N(3)]);
        let x4 = || vi("x", F32, &[D::N(2), D::N(4), D::N(3), D::N(8)]);
        let cases = vec![
            (
                vec![vi("x", F32, &[D::N(2), D::N(3)]), cache("c", &[50, 4]), cache("s", &[50, 4]), pos()],
                vec![],
                "3-D or 4-D",
            ),
            (
                vec![vi("x", F32, &[D::N(2), D::N(3), D::N(30)]), cache("c", &[50, 4]), cache("s", &[50, 4]), pos()],
                vec![int_attr("num_heads", 4)],
                "does not divide the hidden size 30",
            ),
            (
                vec![vi("x", F32, &[D::N(2), D::N(3), D::N(32)]), cache("c", &[50, 4]), cache("s", &[50, 4]), pos()],
                vec![],
                "'num_heads': is required",
            ),
            (
                vec![x4(), cache("c", &[50, 4]), cache("s", &[50, 4]), pos()],
                vec![int_attr("rotary_embedding_dim", 5)],
                "is odd",
            ),
            (
                vec![x4(), cache("c", &[50, 4]), cache("s", &[50, 4]), pos()],
                vec![int_attr("rotary_embedding_dim", 10)],
                "exceeds",
            ),
            (vec![x4(), cache("c", &[50, 3]), cache("s", &[50, 3]), pos()], vec![], "rot/2 = 4"),
            (vec![x4(), cache("c", &[2, 3, 4]), cache("s", &[2, 3, 4]), pos()], vec![], "must be 2-D"),
            (vec![x4(), cache("c", &[50, 4]), cache("s", &[50, 4])], vec![], "must be 3-D"),
            (vec![x4(), cache("c", &[2, 5, 4]), cache("s", &[2, 5, 4])], vec![], "does not match X's [2, 3]"),
            (
                vec![
                    vi("x", F32, &[D::N(2), D::N(4), D::N(3), D::S("h")]),
                    cache("c", &[50, 4]),
                    cache("s", &[50, 4]),
                    pos(),
                ],
                vec![],
                "symbolic head size",
            ),
        ];
        for (ins, attrs, needle) in cases {
            let e = import_err("RotaryEmbedding", ins, attrs);
            assert!(e.contains("'n0'") && e.contains(needle), "{needle}: {e}");
        }
    }
}
