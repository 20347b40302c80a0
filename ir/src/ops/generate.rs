//! Generators: Shape, Range, ConstantOfShape.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// The input's shape as a 1-D i64 tensor, sliced to `start..end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeOf {
    /// First dim (may be negative; clamped).
    pub start: i64,
    /// One past the last dim (may be negative; clamped); `None` = rank.
    pub end: Option<i64>,
}

impl ShapeOf {
    /// The dim range `start..end` selects for a tensor of `rank` axes.
    pub fn range(&self, rank: usize) -> std::ops::Range<usize> {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        s..e.max(s)
    }

    /// The output for an input of concrete `dims`.
    pub fn of_dims(&self, dims: &[usize]) -> Tensor {
        let v: Vec<i64> = dims[self.range(dims.len())].iter().map(|&d| d as i64).collect();
        let n = v.len();
        Tensor::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n]), v).unwrap_or_else(|_| ndarray::ArrayD::zeros(ndarray::IxDyn(&[0]))))
    }
}

impl OpDef for ShapeOf {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inputs scalar `start`, `limit`, `delta` of one numeric dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {}

impl OpDef for Range {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Input `shape` (1-D i64); output filled with `value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantOfShape {
    /// The fill value and output dtype.
    pub value: crate::Scalar,
}

impl OpDef for ConstantOfShape {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
