//! Building the IR nodes one ONNX node decomposes into (Attention, RMSNormalization,
//! RotaryEmbedding and the variadic Max/Min/Sum/Mean).
//!
//! Each IR node is named `<onnx node>/<Op><k>`, typed by the IR's shape inference and folded
//! when its inputs are constants, exactly as a one-to-one mapped node is; the last one takes
//! the ONNX node's output name.

use super::Importer;
use super::proto::NodeProto;
use crate::{Error, Result};
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Dim, Op, Tensor, TypeInfo, ValueId};

/// Adds the nodes of one decomposed ONNX node to the importer's graph.
pub(crate) struct Sub<'i, 'a> {
    imp: &'i mut Importer<'a>,
    /// The ONNX node's (unique) name.
    pub name: String,
    /// The ONNX node's op_type.
    pub op_type: String,
    count: usize,
}

impl<'i, 'a> Sub<'i, 'a> {
    /// Starts the decomposition of node `n`, named `name`.
    pub fn new(imp: &'i mut Importer<'a>, n: &NodeProto, name: &str) -> Self {
        Sub { imp, name: name.into(), op_type: n.op_type().into(), count: 0 }
    }

    /// An error naming the node.
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::Node { node: self.name.clone(), op: self.op_type.clone(), msg: msg.into() }
    }

    /// An "unsupported" error naming the node.
    pub fn unsupported(&self, msg: impl Into<String>) -> Error {
        Error::Unsupported { context: format!("node '{}'", self.name), msg: msg.into() }
    }

    /// The type of `v`.
    pub fn ty(&self, v: ValueId) -> &TypeInfo {
        self.imp.g.ty(v)
    }

    /// The dtype of `v`.
    pub fn dtype(&self, v: ValueId) -> DType {
        self.ty(v).dtype
    }

    /// The dims of `v`.
    pub fn dims(&self, v: ValueId) -> Vec<Dim> {
        self.ty(v).shape.0.clone()
    }

    /// Dim `axis` of `v` as a number; a symbolic dim is an error naming `what` (the
    /// decomposition needs its value).
    pub fn known_dim(&self, v: ValueId, axis: usize, what: &str) -> Result<usize> {
        let d = &self.ty(v).shape.0[axis];
        d.known().ok_or_else(|| self.unsupported(format!("{} with a symbolic {what} ({d})", self.op_type)))
    }

    /// Checks that a constant of `dims` with `elem_bytes` per element stays within the IR's
    /// tensor size limit before the decomposition builds it.
    pub fn check_size(&self, dims: &[usize], elem_bytes: usize) -> Result<()> {
        slmtvm_ir::Shape::known(dims)
            .check_size(elem_bytes)
            .map_err(|m| self.err(format!("a {dims:?} constant it needs is too large: {m}")))
    }

    fn fresh(&mut self, what: &str) -> String {
        self.count += 1;
        format!("{}/{what}{}", self.name, self.count)
    }

    /// Adds `op` on `ins`; its output is named `out`, else a fresh internal name.
    fn add(&mut self, op: Op, ins: Vec<ValueId>, out: Option<&str>) -> Result<ValueId> {
        let node = self.fresh(op.kind_name());
        let out = out.map_or_else(|| format!("{node}:0"), str::to_string);
        let ids = self.imp.g.add_node(node, op, ins.into_iter().map(Some).collect(), &[out]);
        let ni = self.imp.g.nodes.len() - 1;
        self.imp.g.infer_and_set(ni)?;
        slmtvm_ir::fold::fold_node(&mut self.imp.g, ni)?;
        Ok(ids[0])
    }

    /// Adds `op` on `ins`.
    pub fn node(&mut self, op: Op, ins: Vec<ValueId>) -> Result<ValueId> {
        self.add(op, ins, None)
    }

    /// Adds `op` on `ins` as the node's result: its output takes the ONNX name `out`.
    pub fn output(&mut self, op: Op, ins: Vec<ValueId>, out: &str) -> Result<()> {
        let id = self.add(op, ins, Some(out))?;
        self.imp.define(out, id)
    }

    /// A constant.
    pub fn konst(&mut self, t: Tensor) -> ValueId {
        let n = self.fresh("const");
        self.imp.g.add_const(n, t)
    }

    /// A 1-D i64 constant.
    pub fn ints(&mut self, v: &[i64]) -> ValueId {
        self.konst(Tensor::from_vec(&[v.len()], v.to_vec()).expect("a 1-D shape matches its data"))
    }

    /// An elementwise binary operator.
    pub fn binary(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId> {
        self.node(Op::Binary(b), vec![x, y])
    }

    /// `x[start..end:step]` along `axis`.
    pub fn slice(&mut self, x: ValueId, axis: i64, start: i64, end: i64, step: i64) -> Result<ValueId> {
        let (s, e, a, k) = (self.ints(&[start]), self.ints(&[end]), self.ints(&[axis]), self.ints(&[step]));
        self.node(Op::Slice(Slice {}), vec![x, s, e, a, k])
    }

    /// `x` with size-1 axes inserted at `axes`.
    pub fn unsqueeze(&mut self, x: ValueId, axes: &[i64]) -> Result<ValueId> {
        self.node(Op::Unsqueeze(Unsqueeze { axes: axes.to_vec() }), vec![x])
    }

    /// The Reshape operator to `shape` (0 copies the input dim), applied to `x`.
    pub fn reshape_args(&mut self, x: ValueId, shape: &[i64]) -> (Op, Vec<ValueId>) {
        let s = self.ints(shape);
        (Op::Reshape(Reshape { allowzero: false }), vec![x, s])
    }

    /// `x` reshaped to `shape` (0 copies the input dim).
    pub fn reshape(&mut self, x: ValueId, shape: &[i64]) -> Result<ValueId> {
        let (op, ins) = self.reshape_args(x, shape);
        self.node(op, ins)
    }

    /// The rank of `v`.
    pub fn rank(&self, v: ValueId) -> usize {
        self.ty(v).shape.rank()
    }

    /// A float constant of `dtype` with `shape` and f32 values `data`.
    pub fn floats(&mut self, dtype: DType, shape: &[usize], data: Vec<f32>) -> ValueId {
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data).expect("the shape matches the data");
        self.konst(Tensor::from_f32(dtype, a))
    }

    /// `x` with its axes permuted by `perm`.
    pub fn transpose(&mut self, x: ValueId, perm: &[usize]) -> Result<ValueId> {
        self.node(Op::Transpose(Transpose { perm: Some(perm.to_vec()) }), vec![x])
    }

    /// `x` cast to `to`, or `x` itself when it already is of that dtype.
    pub fn cast(&mut self, x: ValueId, to: DType) -> Result<ValueId> {
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.node(Op::Cast(Cast { to, saturate: true }), vec![x])
    }
}

/// The node's input `i`, which must be present.
pub(crate) fn required(sub: &Sub, ins: &[Option<ValueId>], i: usize, what: &str) -> Result<ValueId> {
    ins.get(i).copied().flatten().ok_or_else(|| sub.err(format!("input {i} ('{what}') is required")))
}

/// An error when the node has more than `max` inputs: "has N inputs; OP takes `takes`".
pub(crate) fn at_most(sub: &Sub, ins: &[Option<ValueId>], max: usize, takes: &str) -> Result<()> {
    if ins.len() > max {
        return Err(sub.err(format!("has {} inputs; {} takes {takes}", ins.len(), sub.op_type)));
    }
    Ok(())
}

/// The node's single output name; more outputs, or none, is an error.
pub(crate) fn single_output(sub: &Sub, n: &NodeProto) -> Result<String> {
    let used = n.output.iter().rposition(|o| !o.is_empty()).map_or(0, |p| p + 1);
    match used {
        1 => Ok(n.output[0].clone()),
        0 => Err(sub.err("has no output")),
        k => Err(sub.err(format!("has {k} outputs; {} has one", sub.op_type))),
    }
}
