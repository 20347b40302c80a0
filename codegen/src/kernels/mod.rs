//! Lowering of IR operators to kernels: one Cranelift function per node, taking the base
//! pointers of its present inputs then its outputs. One file per operator family, as in `ir`:
//!
//! | file | operators |
//! |---|---|
//! | [`elementwise`] | Unary, Binary, Clip, Where, Cast, FloatClass, Shrink |
//! | [`movement`] | Reshape/Flatten/Squeeze/Unsqueeze (when not a view), Transpose, Concat, Split, Slice, Gather, Expand, Trilu, Shape, Size, Range, ConstantOfShape |
//! | [`reduce`] | Reduce*, Softmax, LayerNorm, RmsNorm, BatchNorm, GlobalAveragePool |
//! | [`matmul`] | MatMul, Gemm, MatMulInteger, QDense |
//! | [`nbits`] | MatMulNBits (4-bit block-quantized weights) |
//! | [`attention`] | Attention (fused scaled dot-product attention) |
//! | [`dense`] | Dense (matrix product + bias + activation), FusedMlp (gated MLP) |
//! | [`conv`] | Conv, ConvInteger, MaxPool/AveragePool |
//! | [`scan`] | CumSum |
//! | [`quant`] | QuantizeLinear, DequantizeLinear, QuantizeDequantize, DynamicQuantizeLinear |
//!
//! Symbolic dims ([`crate::layout`]): every family's `emit` decides for its own operators
//! whether a node with symbolic dims runs position-wise over the physical extents, loops over
//! run-time extents ([`NodeCtx::extent`]), or is refused ([`NodeCtx::refuse_symbolic`]); no
//! second dispatch decides it for them.
//!
//! Every kernel must be correct for every static shape and dtype its operator accepts in
//! `ir` (the reference interpreter is the oracle), and must never trap: integer division by
//! zero gives 0 (the interpreter refuses it), and out-of-range gather indices are clamped.

pub mod attention;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod matmul;
pub mod movement;
pub mod nbits;
pub mod quant;
pub mod reduce;
pub mod scan;

use crate::emit::Kb;
use crate::layout::Layout;
use crate::pack::PackedRead;
use crate::{Error, Result};
use cranelift_codegen::ir::Value;
use slmtvm_ir::{DType, Dim, Graph, Node, Op, Poly, Tensor, ValueId};

/// What a kernel sees of its node: the graph, the node, and the base pointer of each input
/// and output.
pub struct NodeCtx<'a> {
    /// The graph.
    pub g: &'a Graph,
    /// The node being lowered.
    pub node: &'a Node,
    /// Physical dims of every value and the model's symbols.
    pub layout: &'a Layout,
    ins: Vec<Option<Value>>,
    outs: Vec<Value>,
    /// Base of the run-time symbol values (`i64` each, in [`crate::layout::Symbols`] order).
    syms: Value,
    /// The inputs the kernel reads packed ([`crate::pack`]), as it emits them.
    packed: std::cell::RefCell<Vec<PackedRead>>,
}

impl<'a> NodeCtx<'a> {
    /// Binds `args` (the kernel's parameters: present inputs, then outputs, then the symbol
    /// values) to `node`.
    pub fn new(g: &'a Graph, node: &'a Node, layout: &'a Layout, args: &[Value]) -> Result<NodeCtx<'a>> {
        let (&syms, args) = args
            .split_last()
            .ok_or_else(|| Error::Internal(format!("node '{}': kernel has no arguments", node.name)))?;
        let mut it = args.iter().copied();
        let ins = node.inputs.iter().map(|i| i.and_then(|_| it.next())).collect();
        let outs: Vec<Value> = it.collect();
        if outs.len() != node.outputs.len() {
            return Err(Error::Internal(format!("node '{}': kernel arguments do not match its values", node.name)));
        }
        Ok(NodeCtx { g, node, layout, ins, outs, syms, packed: Default::default() })
    }

    /// True when any input or output of the node has a symbolic dim.
    pub fn is_symbolic(&self) -> bool {
        self.node.inputs.iter().flatten().chain(&self.node.outputs).any(|&v| !self.g.ty(v).shape.is_known())
    }

    /// The run-time value of size `p` (a polynomial of the model's symbols), clamped to
    /// `[0, max]`.
    pub fn size_value(&self, kb: &mut Kb, p: &Poly, max: usize) -> Result<Value> {
        use cranelift_codegen::ir::InstBuilder;
        use cranelift_codegen::ir::condcodes::IntCC;
        let acc = self.poly_value(kb, p)?;
        let zero = kb.iconst(0);
        let hi = kb.iconst(max as i64);
        let neg = kb.b.ins().icmp(IntCC::SignedLessThan, acc, zero);
        let acc = kb.b.ins().select(neg, zero, acc);
        let big = kb.b.ins().icmp(IntCC::SignedGreaterThan, acc, hi);
        Ok(kb.b.ins().select(big, hi, acc))
    }

    /// The run-time value of polynomial `p` (unclamped), its atoms ([`slmtvm_ir::sym::Atom`])
    /// evaluated from their arguments and clamped at 0.
    fn poly_value(&self, kb: &mut Kb, p: &Poly) -> Result<Value> {
        use cranelift_codegen::ir::InstBuilder;
        use slmtvm_ir::sym::Atom;
        let mut acc = kb.iconst(0);
        for (mono, c) in p.terms() {
            let mut t = kb.iconst(c);
            for s in mono {
                let v = match Atom::of(s) {
                    Some(a) => {
                        let x = self.poly_value(kb, a.args()[0])?;
                        let v = match &a {
                            Atom::Min(_, b) => {
                                let y = self.poly_value(kb, b)?;
                                kb.b.ins().smin(x, y)
                            }
                            Atom::Max(_, b) => {
                                let y = self.poly_value(kb, b)?;
                                kb.b.ins().smax(x, y)
                            }
                            // Truncation is the floor for x >= 0; a negative x clamps to 0
                            // below either way.
                            Atom::FloorDiv(_, k) => kb.b.ins().sdiv_imm_s(x, *k),
                        };
                        let zero = kb.iconst(0);
                        kb.b.ins().smax(v, zero)
                    }
                    None => {
                        let k = self
                            .layout
                            .symbols
                            .index(s)
                            .ok_or_else(|| self.error(format!("symbol {s} is not an input symbol")))?;
                        kb.load(kb.caps.ptr, self.syms, (8 * k) as i32)
                    }
                };
                t = kb.b.ins().imul(t, v);
            }
            acc = kb.b.ins().iadd(acc, t);
        }
        Ok(acc)
    }

    /// The run-time extent of axis `axis` of value `v` (a constant for a static dim).
    pub fn extent(&self, kb: &mut Kb, v: ValueId, axis: usize) -> Result<Value> {
        let d = &self.g.ty(v).shape.0[axis];
        let phys = self.layout.dims(v)[axis];
        match d.known() {
            Some(n) => Ok(kb.iconst(n as i64)),
            None => self.size_value(kb, &d.poly(), phys),
        }
    }

    /// The run-time extents of axes `axes` of value `v` (constants for static dims).
    pub fn extents(&self, kb: &mut Kb, v: ValueId, axes: std::ops::Range<usize>) -> Result<Vec<Value>> {
        axes.map(|a| self.extent(kb, v, a)).collect()
    }

    /// Loops over the rows of value `v` (its axes before `ax`) for kernels that walk
    /// `[rows, ax.., ]` with a flat row index: one loop over all physical rows (`[n]`, stride
    /// `[1]`), or, when one of those axes is symbolic, one loop per axis to its run-time extent
    /// with the row strides of the physical layout (so the padding rows are skipped). Gives the
    /// extents and strides for [`Kb::nest_runtime`] and [`Kb::linear`].
    pub fn row_loops(&self, kb: &mut Kb, v: ValueId, ax: usize) -> Result<(Vec<Value>, Vec<i64>)> {
        let dims = &self.layout.dims(v)[..ax];
        if (0..ax).any(|a| self.axis_symbolic(v, a)) {
            Ok((self.extents(kb, v, 0..ax)?, crate::emit::strides_of(dims)))
        } else {
            Ok((vec![kb.iconst(dims.iter().product::<usize>() as i64)], vec![1]))
        }
    }

    /// True when axis `a` of value `v` is symbolic.
    pub fn axis_symbolic(&self, v: ValueId, a: usize) -> bool {
        self.g.ty(v).shape.0.get(a).is_some_and(|d| d.known().is_none())
    }

    /// The error for a symbolic-dims case no kernel implements: `what` says which axis needs
    /// a static size and why.
    pub fn refuse_symbolic(&self, what: impl std::fmt::Display) -> Error {
        self.unsupported(format!("{what} (symbolic dims: a static size is needed there)"))
    }

    /// Checks the rule of the broadcasting position-wise kernels (the elementwise walk): every
    /// dim of data inputs `0..data_inputs` is output 0's (the same size polynomial), 1, or
    /// symbolic (1 or the output's extent at run time, which the walk reads then:
    /// `elementwise::runtime_ones`). A static dim against a symbolic output dim is refused: the
    /// loop runs to the output's run-time extent, which nothing ties to the static one.
    pub fn position_wise(&self, data_inputs: usize) -> Result<()> {
        let out = &self.g.ty(self.out_id(0)).shape.0;
        for i in 0..data_inputs {
            let Some(v) = self.in_id(i) else { continue };
            let s = &self.g.ty(v).shape.0;
            for (k, d) in s.iter().enumerate() {
                let o = out.len().checked_sub(s.len() - k).map(|a| &out[a]);
                if *d != Dim::Known(1) && o.is_none_or(|o| d.known().is_some() && d.poly() != o.poly()) {
                    let o = o.map_or("nothing".to_string(), |o| o.to_string());
                    return Err(self.refuse_symbolic(format!("input {i} dim {d} broadcast against {o}")));
                }
            }
        }
        Ok(())
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

    /// Records that the kernel reads its input `r.input` packed: the object builder passes that
    /// input's packed copy ([`crate::pack`]). Only the product kernels call this, on the
    /// assembled path, with the weight's whole `[K, N]` as B.
    pub fn read_packed(&self, r: PackedRead) {
        let mut v = self.packed.borrow_mut();
        if !v.contains(&r) {
            v.push(r);
        }
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

    /// The physical dims of value `v`: its static dims, symbolic dims at their bounds (see
    /// [`crate::layout`]).
    pub fn dims(&self, v: ValueId) -> Result<Vec<usize>> {
        Ok(self.layout.dims(v).to_vec())
    }

    /// An error about this node.
    pub fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::Node { node: self.node.name.clone(), op: self.node.op.kind_name().to_string(), msg: msg.to_string() }
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

/// Runs `f(kb, start, len, first)` over `0..total` in chunks of `chunk`: the first chunk on its
/// own (`first`: it stores where the later ones accumulate), the other whole chunks in a loop,
/// then the shorter last one (`first` when it is the only one).
pub(crate) fn first_then_rest(kb: &mut Kb, total: usize, chunk: usize, f: &mut dyn FnMut(&mut Kb, Value, usize, bool)) {
    let full = total / chunk;
    if full > 0 {
        let z = kb.iconst(0);
        f(kb, z, chunk, true);
    }
    if full > 1 {
        kb.for_const(chunk as i64, (full * chunk) as i64, chunk as i64, |kb, s| f(kb, s, chunk, false));
    }
    if !total.is_multiple_of(chunk) {
        let s = kb.iconst((full * chunk) as i64);
        f(kb, s, total % chunk, full == 0);
    }
}

/// Emits the body of `node`'s kernel; `args` are its present input then output base pointers,
/// then the base of the symbol values. Returns the inputs the kernel reads packed (whose
/// packed copies the caller must pass; see [`crate::pack`]), in input order.
pub fn emit_node(kb: &mut Kb, g: &Graph, node: &Node, layout: &Layout, args: &[Value]) -> Result<Vec<PackedRead>> {
    let cx = NodeCtx::new(g, node, layout, args)?;
    let emitted = match &node.op {
        Op::Unary(_) | Op::Binary(_) | Op::Clip(_) | Op::Where(_) | Op::Cast(_) | Op::FloatClass(_) | Op::Shrink(_) => {
            elementwise::emit(kb, &cx)
        }
        Op::MatMul(_) | Op::Gemm(_) | Op::MatMulInteger(_) | Op::QDense(_) => matmul::emit(kb, &cx),
        Op::MatMulNBits(_) => nbits::emit(kb, &cx),
        Op::Attention(_) => attention::emit(kb, &cx),
        Op::Dense(_) | Op::FusedMlp(_) => dense::emit(kb, &cx),
        Op::Reduce(_)
        | Op::Softmax(_)
        | Op::LayerNorm(_)
        | Op::RmsNorm(_)
        | Op::BatchNorm(_)
        | Op::GlobalAveragePool(_) => reduce::emit(kb, &cx),
        Op::Conv(_) | Op::ConvInteger(_) | Op::Pool(_) => conv::emit(kb, &cx),
        Op::CumSum(_) => scan::emit(kb, &cx),
        Op::QuantizeLinear(_) | Op::DequantizeLinear(_) | Op::QuantizeDequantize(_) | Op::DynamicQuantizeLinear(_) => {
            quant::emit(kb, &cx)
        }
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
    };
    emitted?;
    let mut packed = cx.packed.into_inner();
    packed.sort();
    Ok(packed)
}
