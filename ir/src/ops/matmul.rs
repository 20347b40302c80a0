//! Matrix products: MatMul (NumPy batching), Gemm, MatMulInteger.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `a` [..., M, K] and `b` [..., K, N] (1-D operands promoted as NumPy does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMul {}

impl OpDef for MatMul {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// `Y = alpha·A'·B' + beta·C`; A' = Aᵀ if `trans_a`, C optional and unidirectionally broadcast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
    /// Transpose A.
    pub trans_a: bool,
    /// Transpose B.
    pub trans_b: bool,
}

impl OpDef for Gemm {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inputs `a`, `b` (i8/u8), optional `a_zero_point`, `b_zero_point`; i32 output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMulInteger {}

impl OpDef for MatMulInteger {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
