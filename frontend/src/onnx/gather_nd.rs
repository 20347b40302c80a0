//! ONNX `GatherND` (opsets 11–13) with `batch_dims` 0, decomposed into IR primitives: the
//! first `k` axes of `data` (`k` = the last dim of `indices`) are flattened into one, each
//! index tuple becomes a linear index into it, and one `Gather` on axis 0 picks the slices.
//!
//! ```text
//! i_j  = Reshape<[0; r-1]>(Slice<j..j+1, axis -1>(Cast<i64>(indices)))   for j in 0..k
//! i_j' = Where(Less(i_j, 0), Add(i_j, d_j), i_j)                          (negative: from the end)
//! lin  = (..((i_0'·d_1 + i_1')·d_2 + i_2')..)·d_{k-1} + i_{k-1}'
//! Y    = Gather<axis 0>(Reshape<[-1] ++ data.dims[k..]>(data), lin)
//! ```
//!
//! `d_j` is dim `j` of `data`, a constant when known and a `Shape` slice when symbolic (the
//! trailing dims `data.dims[k..]` likewise), so batch and sequence axes may stay symbolic.
//! Contract difference: only the linear index is range-checked (by `Gather`), so an index out
//! of range for its own axis but not for the flattened axes is not refused as ONNX Runtime
//! refuses it; it selects another element.

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::subgraph::{Sub, at_most, required, single_output};
use crate::Result;
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Op, Tensor, ValueId};

/// Imports one `GatherND` node.
pub(crate) fn import(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 2, "data and indices")?;
    let data = required(&b, &ins, 0, "data")?;
    let indices = required(&b, &ins, 1, "indices")?;
    let batch_dims = a.int_or("batch_dims", 0)?;
    if batch_dims != 0 {
        return Err(b.unsupported(format!("GatherND batch_dims {batch_dims} (slmtvm implements 0)")));
    }
    if !matches!(b.dtype(indices), DType::I32 | DType::I64) {
        return Err(b.err(format!("indices must be int32 or int64, got {}", b.dtype(indices))));
    }
    let (r, q) = (b.rank(data), b.rank(indices));
    if q == 0 {
        return Err(b.err("indices must have rank 1 or more, got a scalar"));
    }
    let k = b.known_dim(indices, q - 1, "last dim of indices")?;
    if k == 0 || k > r {
        return Err(b.err(format!("the last dim of indices is {k}; it must be in 1..={r} (the rank of data)")));
    }

    let idx = b.cast(indices, DType::I64)?;
    let zero = b.konst(Tensor::scalar(0i64));
    let mut lin: Option<ValueId> = None;
    for j in 0..k {
        let col = b.slice(idx, -1, j as i64, j as i64 + 1, 1)?;
        let col = b.reshape(col, &vec![0; q - 1])?;
        let d = dim(&mut b, data, j)?;
        let neg = b.binary(BinaryOp::Less, col, zero)?;
        let wrapped = b.binary(BinaryOp::Add, col, d)?;
        let col = b.node(Op::Where(Where {}), vec![neg, wrapped, col])?;
        lin = Some(match lin {
            None => col,
            Some(acc) => {
                let scaled = b.binary(BinaryOp::Mul, acc, d)?;
                b.binary(BinaryOp::Add, scaled, col)?
            }
        });
    }
    let lin = lin.expect("k >= 1");

    let tail = b.dims(data)[k..].to_vec();
    let flat = if let Some(t) = tail.iter().map(|d| d.known().map(|v| v as i64)).collect::<Option<Vec<i64>>>() {
        b.reshape(data, &[&[-1], &t[..]].concat())?
    } else {
        let minus_one = b.ints(&[-1]);
        let t = b.node(Op::Shape(ShapeOf { start: k as i64, end: None }), vec![data])?;
        let shape = b.node(Op::Concat(Concat { axis: 0 }), vec![minus_one, t])?;
        b.node(Op::Reshape(Reshape { allowzero: false }), vec![data, shape])?
    };
    b.output(Op::Gather(Gather { axis: 0 }), vec![flat, lin], &out)
}

/// Dim `axis` of `x` as an i64 scalar: a constant when known, else taken from `Shape`.
fn dim(b: &mut Sub, x: ValueId, axis: usize) -> Result<ValueId> {
    if let Some(v) = b.dims(x)[axis].known() {
        return Ok(b.konst(Tensor::scalar(v as i64)));
    }
    let s = b.node(Op::Shape(ShapeOf { start: axis as i64, end: Some(axis as i64 + 1) }), vec![x])?;
    b.reshape(s, &[])
}

#[cfg(test)]
mod tests {
    use crate::onnx::build::{D, import_err, import_one, int_attr, vi};
    use slmtvm_ir::{Tensor, interp};

    const F32: i32 = 1;
    const I32: i32 = 6;
    const I64: i32 = 7;
    const BOOL: i32 = 9;

    /// GatherND with batch_dims 0 computed directly: data is row-major with `dims`.
    fn reference(data: &[f32], dims: &[usize], idx: &[i64], idx_dims: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let k = *idx_dims.last().unwrap();
        let slice: usize = dims[k..].iter().product();
        let mut out = Vec::new();
        for tuple in idx.chunks(k) {
            let mut lin = 0usize;
            for (j, &v) in tuple.iter().enumerate() {
                let v = if v < 0 { v + dims[j] as i64 } else { v } as usize;
                lin = lin * dims[j] + v;
            }
            out.extend_from_slice(&data[lin * slice..(lin + 1) * slice]);
        }
        let shape = [&idx_dims[..idx_dims.len() - 1], &dims[k..]].concat();
        (out, shape)
    }

    #[test]
    fn matches_a_direct_gather_for_every_index_depth() {
        let dims = [2usize, 3, 4];
        let data: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        for (idx, idx_dims) in [
            (vec![1i64, 0], vec![2usize, 1]),
            (vec![1, 2, 0, -1, -2, 0], vec![3, 2]),
            (vec![1, 2, 3, 0, 0, -1, 1, -3, 2, 0, 1, 1], vec![2, 2, 3]),
            (vec![1, -1], vec![2]),
        ] {
            let d: Vec<D> = idx_dims.iter().map(|&v| D::N(v as i64)).collect();
            let g = import_one(
                "GatherND",
                vec![vi("x", F32, &[D::N(2), D::N(3), D::N(4)]), vi("i", I64, &d)],
                vec![int_attr("batch_dims", 0)],
            )
            .unwrap();
            let y = interp::run(
                &g,
                &[Tensor::from_vec(&dims, data.clone()).unwrap(), Tensor::from_vec(&idx_dims, idx.clone()).unwrap()],
            )
            .unwrap();
            let (want, shape) = reference(&data, &dims, &idx, &idx_dims);
            assert_eq!(y[0].shape(), &shape[..], "{idx:?}");
            assert_eq!(y[0].view::<f32>().unwrap().iter().copied().collect::<Vec<_>>(), want, "{idx:?}");
        }
    }

    #[test]
    fn a_symbolic_batch_and_sequence_stay_symbolic() {
        // The dynamo exporter's padding-mask lookup: bool mask [batch, seq], indices
        // [batch, 1, 1, seq, 2] of (row, column) pairs.
        let g = import_one(
            "GatherND",
            vec![
                vi("m", BOOL, &[D::S("batch"), D::S("sequence")]),
                vi("i", I32, &[D::S("batch"), D::N(1), D::N(1), D::S("sequence"), D::N(2)]),
            ],
            vec![],
        )
        .unwrap();
        assert!(g.ty(g.outputs[0]).shape.0[0].known().is_none(), "{}", g.ty(g.outputs[0]).shape);
        let m = vec![true, true, false, false, true, true];
        let idx: Vec<i32> = (0..2).flat_map(|r| (0..3).flat_map(move |c| [r, c])).collect();
        let y = interp::run(
            &g,
            &[Tensor::from_vec(&[2, 3], m.clone()).unwrap(), Tensor::from_vec(&[2, 1, 1, 3, 2], idx).unwrap()],
        )
        .unwrap();
        assert_eq!(y[0], Tensor::from_vec(&[2, 1, 1, 3], m).unwrap());
    }

    #[test]
    fn bad_input_names_the_node() {
        let x = || vi("x", F32, &[D::N(2), D::N(3)]);
        for (idx, attrs, needle) in [
            (vi("i", I64, &[D::N(2), D::N(3)]), vec![], "must be in 1..=2"),
            (vi("i", I64, &[D::N(2), D::S("k")]), vec![], "symbolic last dim of indices"),
            (vi("i", F32, &[D::N(2), D::N(1)]), vec![], "int32 or int64"),
            (vi("i", I64, &[D::N(2), D::N(1)]), vec![int_attr("batch_dims", 1)], "batch_dims 1"),
        ] {
            let e = import_err("GatherND", vec![x(), idx], attrs);
            assert!(e.contains("'n0'") && e.contains(needle), "{e}");
        }
    }
}
