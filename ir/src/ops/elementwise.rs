//! Elementwise operators: unary math and activations, binary arithmetic, comparison and logic
//! (with broadcasting), Clip, Where and Cast.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Elementwise operators of one input. Output dtype equals the input's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// Copy.
    Identity,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// Square root.
    Sqrt,
    /// `1/x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Gauss error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// `1/(1+e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// Logical not (bool).
    Not,
    /// GELU, exact (erf) or with the tanh approximation.
    Gelu {
        /// Use `0.5x(1+tanh(√(2/π)(x+0.044715x³)))`.
        tanh_approx: bool,
    },
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
}

impl OpDef for UnaryOp {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Elementwise operators of two inputs with multidirectional broadcasting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integers truncate toward zero).
    Div,
    /// `a ^ b`; the exponent may have another numeric dtype.
    Pow,
    /// `a == b` → bool.
    Equal,
    /// `a < b` → bool.
    Less,
    /// `a <= b` → bool.
    LessOrEqual,
    /// `a > b` → bool.
    Greater,
    /// `a >= b` → bool.
    GreaterOrEqual,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
}

impl OpDef for BinaryOp {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Clamp: inputs `x`, optional scalar `min`, optional scalar `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {}

impl OpDef for Clip {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inputs `cond` (bool), `x`, `y`; all three broadcast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Where {}

impl OpDef for Where {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Converts to another dtype with ONNX Cast semantics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cast {
    /// Target dtype.
    pub to: crate::DType,
    /// Saturate on out-of-range float → 8-bit float casts (unused for the IR's dtypes but kept).
    pub saturate: bool,
}

impl OpDef for Cast {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
