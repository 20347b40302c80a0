//! Lowering of IR operators to kernels: one Cranelift function per node, taking the base
//! pointers of its present inputs then its outputs. One file per operator family, as in `ir`:
//!
//! | file | operators |
//! |---|---|
//! | [`elementwise`] | Unary, Binary, Clip, Where, Cast, FloatClass |
//! | [`math`] | (no operator) exp, log, tanh, erf, sigmoid, sin, cos as inline polynomials |
//! | [`movement`] | Reshape/Flatten/Squeeze/Unsqueeze (when not a view), Transpose, Concat, Split, Slice, Gather, Expand, Trilu, Shape, Size, Range, ConstantOfShape |
//! | [`reduce`] | Reduce*, Softmax, LayerNorm, BatchNorm, GlobalAveragePool |
//! | [`matmul`] | MatMul, Gemm, MatMulInteger |
//! | [`conv`] | Conv, MaxPool/AveragePool |
//! | [`scan`] | CumSum |
//! | [`quant`] | QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear |
//!
//! Every kernel must be correct for every static shape and dtype its operator accepts in
//! `ir` (the reference interpreter is the oracle), and must never trap: integer division by
//! zero gives 0 (the interpreter refuses it), and out-of-range gather indices are clamped.

pub mod conv;
pub mod elementwise;
pub mod math;
pub mod matmul;
pub mod movement;
pub mod quant;
pub mod reduce;
pub mod scan;

use crate::emit::Kb;
use crate::{Error, Result};
use cranelift_codegen::ir::Value;
use slmtvm_ir::{DType, Graph, Node, Op, Tensor, ValueId};

/// What a kernel sees of its node: the graph, the node, and the base pointer of each input
/// and output.
pub struct NodeCtx<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// The node being lowered.
    pub node: &'a Node,
    ins: Vec<Option<Value>>,
    outs: Vec<Value>,
}

impl<'a> NodeCtx<'a> {
    /// Binds `args` (the kernel's parameters: present inputs, then outputs) to `node`.
    pub fn new(g: &'a Graph, node: &'a Node, args: &[Value]) -> Result<NodeCtx<'a>> {
        let mut it = args.iter().copied();
        let ins = node.inputs.iter().map(|i| i.and_then(|_| it.next())).collect();
        let outs: Vec<Value> = it.collect();
        if outs.len() != node.outputs.len() {
            return Err(Error::Graph(format!("node '{}': kernel arguments do not match its values", node.name)));
        }
        Ok(NodeCtx { g, node, ins, outs })
    }

    /// Number of input positions (present or not).
    pub fn num_inputs(&self) -> usize {
        self.node.inputs.len()
    }

    /// Input `i`'s value id, if present.
    pub fn in_id(&self, i: usize) -> Option<ValueId> {
        self.node.inputs.get(i).copied().flatten()
    }

    /// Input `i`'s base pointer, if present.
    pub fn in_ptr_opt(&self, i: usize) -> Option<Value> {
        self.ins.get(i).copied().flatten()
    }

    /// Input `i`'s base pointer; an error naming the node if it is absent.
    pub fn in_ptr(&self, i: usize) -> Result<Value> {
        self.in_ptr_opt(i).ok_or_else(|| self.error(format!("input {i} is required")))
    }

    /// Input `i`'s static dims.
    pub fn in_dims(&self, i: usize) -> Result<Vec<usize>> {
        let v = self.in_id(i).ok_or_else(|| self.error(format!("input {i} is required")))?;
        self.dims(v)
    }

    /// Input `i`'s dtype.
    pub fn in_dtype(&self, i: usize) -> Result<DType> {
        let v = self.in_id(i).ok_or_else(|| self.error(format!("input {i} is required")))?;
        Ok(self.g.ty(v).dtype)
    }

    /// Input `i`'s value when the graph holds it as a constant.
    pub fn in_const(&self, i: usize) -> Option<&'a Tensor> {
        self.in_id(i).and_then(|v| self.g.consts.get(&v))
    }

    /// Number of outputs the node uses (a prefix of the operator's).
    pub fn num_outputs(&self) -> usize {
        self.outs.len()
    }

    /// Output `k`'s value id.
    pub fn out_id(&self, k: usize) -> ValueId {
        self.node.outputs[k]
    }

    /// Output `k`'s base pointer.
    pub fn out_ptr(&self, k: usize) -> Value {
        self.outs[k]
    }

    /// Output `k`'s static dims.
    pub fn out_dims(&self, k: usize) -> Result<Vec<usize>> {
        self.dims(self.out_id(k))
    }

    /// Output `k`'s dtype.
    pub fn out_dtype(&self, k: usize) -> DType {
        self.g.ty(self.out_id(k)).dtype
    }

    /// The static dims of value `v`.
    pub fn dims(&self, v: ValueId) -> Result<Vec<usize>> {
        let ty = self.g.ty(v);
        ty.shape
            .as_known()
            .ok_or_else(|| Error::SymbolicShape { name: self.g.value(v).name.clone(), shape: ty.shape.to_string() })
    }

    /// An error about this node.
    pub fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::Graph(format!("node '{}' ({}): {msg}", self.node.name, self.node.op.kind_name()))
    }

    /// The error for an operator/dtype combination no kernel handles yet.
    pub fn unsupported(&self, what: impl std::fmt::Display) -> Error {
        Error::Unsupported {
            node: self.node.name.clone(),
            op: self.node.op.kind_name().to_string(),
            what: what.to_string(),
        }
    }
}

/// Emits the body of `node`'s kernel; `args` are its present input then output base pointers.
pub fn emit_node(kb: &mut Kb, g: &Graph, node: &Node, args: &[Value]) -> Result<()> {
    let cx = NodeCtx::new(g, node, args)?;
    match &node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Clip(_) | Op::Where(_) | Op::Cast(_) | Op::FloatClass(_) => {
            elementwise::emit(kb, &cx)
        }
        Op::MatMul(_) | Op::Gemm(_) | Op::MatMulInteger(_) => matmul::emit(kb, &cx),
        Op::Reduce(_) | Op::Softmax(_) | Op::LayerNorm(_) | Op::BatchNorm(_) | Op::GlobalAveragePool(_) => {
            reduce::emit(kb, &cx)
        }
        Op::Conv(_) | Op::Pool(_) => conv::emit(kb, &cx),
        Op::CumSum(_) => scan::emit(kb, &cx),
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) | Op::DynamicQuantizeLinear(_) => quant::emit(kb, &cx),
        Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Split(_)
        | Op::Slice(_)
        | Op::Gather(_)
        | Op::Expand(_)
        | Op::Shape(_)
        | Op::Size(_)
        | Op::Range(_)
        | Op::ConstantOfShape(_)
        | Op::Trilu(_) => movement::emit(kb, &cx),
    }
}
