//! Reductions (mean, sum, max, L2) and Softmax.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Euclidean norm `sqrt(Σx²)`.
    L2,
}

/// Reduce over `axes` (all axes when `None`), keeping reduced axes as 1 when `keepdims`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduce {
    /// The reduction.
    pub kind: ReduceKind,
    /// Axes to reduce (may be negative); `None` reduces all.
    pub axes: Option<Vec<i64>>,
    /// Keep reduced axes with size 1.
    pub keepdims: bool,
}

impl OpDef for Reduce {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Softmax along `axis` (opset ≥ 13 semantics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    /// The axis (may be negative).
    pub axis: i64,
}

impl OpDef for Softmax {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
