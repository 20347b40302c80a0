//! Operators: one file per operator family, each holding the family's attributes, shape and
//! dtype inference, and reference semantics side by side.
//!
//! Every operator implements [`OpDef`]; [`Op`] is the closed set the IR knows. Importers lower
//! their operators onto these (attribute defaults resolved, opset differences removed), so an
//! `Op` means the same thing whatever model it came from.

pub mod attention;
pub mod broadcast;
pub mod concat;
pub mod conv;
pub mod cumsum;
pub mod dense;
pub mod elementwise;
pub mod expand;
pub mod gather;
pub mod generate;
pub mod matmul;
pub mod nbits;
pub mod norm;
pub mod pool;
pub mod quant;
pub mod reduce;
pub mod reshape;
pub mod shrink;
pub mod slice;
pub mod transpose;
pub mod trilu;

pub use attention::Attention;
pub use concat::{Concat, Split};
pub use conv::{AutoPad, Conv, ConvInteger};
pub use cumsum::CumSum;
pub use dense::{Dense, FusedMlp, QDense};
pub use elementwise::{BinaryOp, Cast, Clip, FloatClass, UnaryOp, Where};
pub use expand::Expand;
pub use gather::Gather;
pub use generate::{ConstantOfShape, Range, ShapeOf, Size};
pub use matmul::{Gemm, MatMul, MatMulInteger};
pub use nbits::MatMulNBits;
pub use norm::{BatchNorm, LayerNorm, RmsNorm};
pub use pool::{GlobalAveragePool, Pool, PoolKind};
pub use quant::{DequantizeLinear, DynamicQuantizeLinear, QuantizeDequantize, QuantizeLinear};
pub use reduce::{Reduce, ReduceKind, Softmax};
pub use reshape::{Flatten, Reshape, Squeeze, Unsqueeze};
pub use shrink::Shrink;
pub use slice::{AxisSlice, Slice};
pub use transpose::Transpose;
pub use trilu::Trilu;

use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// What shape inference knows about one input: its type, and its value when it is a constant.
#[derive(Clone, Copy, Debug)]
pub struct InferIn<'a> {
    /// The input's type.
    pub ty: &'a TypeInfo,
    /// The input's value, when the graph holds it as a constant.
    pub value: Option<&'a Tensor>,
    /// The input's value as sizes, when it is a small integer tensor computed from symbolic
    /// shapes (one polynomial per element, in order; see [`crate::symeval`]).
    pub sym: Option<&'a [crate::Poly]>,
}

/// The contract every operator implements.
///
/// Inputs are positional; an absent optional input is `None`. An operator always reports all of
/// its outputs; a node may use a prefix of them.
pub trait OpDef {
    /// How many outputs the operator produces.
    fn num_outputs(&self) -> usize {
        1
    }
    /// Infers each output's dtype and shape. A dim that cannot be known statically (a shape
    /// computed at run time) is returned as [`crate::Dim::unknown`]; the graph renames it.
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError>;
    /// Computes the outputs from concrete inputs; plain and obviously correct.
    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError>;
    /// Floating-point (or integer) operations done for these input and output types, at the
    /// symbols' bounds; elementwise by default (one per output element).
    fn flops(&self, _ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        outs.iter().map(|t| t.shape.numel_upper().unwrap_or(0) as u64).sum()
    }
}

macro_rules! ops {
    ($($(#[$doc:meta])* $v:ident($t:ty)),* $(,)?) => {
        /// An IR operator with its typed attributes.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        pub enum Op {
            $($(#[$doc])* $v($t),)*
        }

        impl Op {
            /// The operator's family name, as printed by the text form.
            pub fn name(&self) -> &'static str {
                match self { $(Op::$v(_) => stringify!($v),)* }
            }

            fn def(&self) -> &dyn OpDef {
                match self { $(Op::$v(a) => a,)* }
            }
        }
    };
}

ops! {
    /// Elementwise operator of one input.
    Unary(UnaryOp),
    /// Elementwise operator of two inputs, with multidirectional broadcasting.
    Binary(BinaryOp),
    /// Clamp to optional `min`/`max` inputs.
    Clip(Clip),
    /// Select between two inputs by a bool condition, broadcasting.
    Where(Where),
    /// Element type conversion.
    Cast(Cast),
    /// Float classification to bool (IsNaN, IsInf).
    FloatClass(FloatClass),
    /// Matrix product with NumPy batching rules.
    MatMul(MatMul),
    /// General matrix multiply `alpha·A'·B' + beta·C`.
    Gemm(Gemm),
    /// Integer matrix product with zero points, i32 result.
    MatMulInteger(MatMulInteger),
    /// Block-quantized (2/4/8-bit) weight-only matrix product (`com.microsoft::MatMulNBits`).
    MatMulNBits(MatMulNBits),
    /// Reduction over axes.
    Reduce(Reduce),
    /// Softmax along one axis.
    Softmax(Softmax),
    /// Layer normalization over the trailing axes.
    LayerNorm(LayerNorm),
    /// Root-mean-square normalization over the trailing axes, scaled.
    RmsNorm(RmsNorm),
    /// Scaled dot-product attention with grouped-query heads, optional mask and causality.
    Attention(Attention),
    /// Matrix product with a bias and an activation in one kernel.
    Dense(Dense),
    /// Gated MLP `(act(x·W_gate) ⊙ (x·W_up))·W_down` in one kernel.
    FusedMlp(FusedMlp),
    /// Integer matrix product with zero points, its f32 dequantization, bias and activation.
    QDense(QDense),
    /// Batch normalization in inference mode.
    BatchNorm(BatchNorm),
    /// N-d convolution with groups, pads, strides and dilations.
    Conv(Conv),
    /// Integer convolution with zero points, i32 result.
    ConvInteger(ConvInteger),
    /// Max or average pooling.
    Pool(Pool),
    /// Average over all spatial axes.
    GlobalAveragePool(GlobalAveragePool),
    /// Float to int8/uint8 quantization.
    QuantizeLinear(QuantizeLinear),
    /// Int to float dequantization.
    DequantizeLinear(DequantizeLinear),
    /// Dynamic uint8 quantization with computed scale and zero point.
    DynamicQuantizeLinear(DynamicQuantizeLinear),
    /// Quantization and dequantization with the same parameters, in one (a QDQ pair).
    QuantizeDequantize(QuantizeDequantize),
    /// Reshape to a shape given by the second input.
    Reshape(Reshape),
    /// Flatten to 2-D around an axis.
    Flatten(Flatten),
    /// Remove size-1 axes.
    Squeeze(Squeeze),
    /// Insert size-1 axes.
    Unsqueeze(Unsqueeze),
    /// Permute axes.
    Transpose(Transpose),
    /// Join along an axis.
    Concat(Concat),
    /// Split along an axis.
    Split(Split),
    /// Strided slice with inputs for starts/ends/axes/steps.
    Slice(Slice),
    /// Gather along an axis by indices.
    Gather(Gather),
    /// Broadcast to a shape given by the second input.
    Expand(Expand),
    /// The shape of the input as an i64 tensor.
    Shape(ShapeOf),
    /// The element count of the input as an i64 scalar.
    Size(Size),
    /// An arithmetic sequence.
    Range(Range),
    /// A tensor of a given shape filled with one value.
    ConstantOfShape(ConstantOfShape),
    /// Upper or lower triangle of the trailing matrices.
    Trilu(Trilu),
    /// Running sums along an axis.
    CumSum(CumSum),
    /// Hard or soft shrinkage, elementwise.
    Shrink(Shrink),
}

impl Op {
    /// The specific operator's name: the family name, or for the families of several
    /// operators the member's (`Add`, `Relu`, `ReduceMean`, `MaxPool`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::FloatClass(c) => c.name(),
            Op::Reduce(r) => r.name(),
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Average => "AveragePool",
            },
            other => other.name(),
        }
    }

    /// For operators whose output depends only on the input's shape (Shape, Size): the output
    /// for an input of concrete `dims`.
    pub fn eval_on_shape(&self, dims: &[usize]) -> Option<Tensor> {
        match self {
            Op::Shape(s) => Some(s.of_dims(dims)),
            Op::Size(s) => Some(s.of_dims(dims)),
            _ => None,
        }
    }

    /// How many outputs the operator produces.
    pub fn num_outputs(&self) -> usize {
        self.def().num_outputs()
    }

    /// Infers output types; see [`OpDef::infer`].
    pub fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        self.def().infer(ins)
    }

    /// Evaluates the operator; see [`OpDef::eval`].
    pub fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        self.def().eval(ins)
    }

    /// Operation count; see [`OpDef::flops`].
    pub fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        self.def().flops(ins, outs)
    }
}

/// The types of `infer`'s inputs, for type checks shared by `infer` and `eval`.
pub fn input_types<'a>(ins: &[Option<InferIn<'a>>]) -> Vec<Option<&'a TypeInfo>> {
    ins.iter().map(|i| i.map(|i| i.ty)).collect()
}

/// The static types of `eval`'s inputs (see [`input_types`]).
pub fn tensor_types(ins: &[Option<&Tensor>]) -> Vec<Option<TypeInfo>> {
    ins.iter().map(|t| t.map(|t| TypeInfo::new(t.dtype(), t.static_shape()))).collect()
}

/// Returns input `i`, or an error naming it when it is absent.
pub fn req<T: Copy>(ins: &[Option<T>], i: usize) -> Result<T, OpError> {
    ins.get(i).copied().flatten().ok_or_else(|| OpError::Invalid(format!("input {i} is required")))
}

/// Returns input `i` if present.
pub fn opt<T: Copy>(ins: &[Option<T>], i: usize) -> Option<T> {
    ins.get(i).copied().flatten()
}

/// Checks that `dims` elements of `elem_size` bytes stay within
/// [`crate::shape::MAX_TENSOR_BYTES`]: every operator that allocates its output calls this
/// first, so a hostile shape is an error, never an allocation.
pub(crate) fn check_alloc(dims: &[usize], elem_size: usize) -> Result<(), OpError> {
    crate::Shape::known(dims).check_size(elem_size).map_err(OpError::Invalid)
}

/// Checks the number of inputs is within `min..=max`.
pub fn arity<T>(ins: &[Option<T>], min: usize, max: usize) -> Result<(), OpError> {
    if ins.len() < min || ins.len() > max {
        return Err(OpError::Invalid(format!("expects {min}..={max} inputs, got {}", ins.len())));
    }
    Ok(())
}

/// Helpers shared by the operator families' tests.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::{Element, Tensor};

    /// A tensor of `dims` from `v` (row-major).
    pub(crate) fn t<T: Element>(dims: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(dims, v).unwrap()
    }

    /// The elements of an f32 tensor.
    pub(crate) fn f32s(t: &Tensor) -> Vec<f32> {
        t.view::<f32>().expect("an f32 tensor").iter().copied().collect()
    }

    /// The multi-index of row-major offset `k` in a tensor of `dims`.
    pub(crate) fn unravel(mut k: usize, dims: &[usize]) -> Vec<usize> {
        let mut idx = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate().rev() {
            idx[i] = k % d;
            k /= d;
        }
        idx
    }
}
