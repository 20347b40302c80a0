//! Shape-only rearrangements: Reshape, Flatten, Squeeze, Unsqueeze.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `shape` (i64); `0` copies the input dim unless `allowzero`, `-1` is inferred.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    /// A 0 in `shape` means size 0, not "copy".
    pub allowzero: bool,
}

impl OpDef for Reshape {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// To 2-D: [prod(dims[..axis]), prod(dims[axis..])].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flatten {
    /// Split point (may be negative).
    pub axis: i64,
}

impl OpDef for Flatten {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Removes the listed size-1 axes (all size-1 axes when `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Squeeze {
    /// Axes to remove (may be negative).
    pub axes: Option<Vec<i64>>,
}

impl OpDef for Squeeze {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inserts size-1 axes at the listed positions of the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unsqueeze {
    /// Output positions (may be negative).
    pub axes: Vec<i64>,
}

impl OpDef for Unsqueeze {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
