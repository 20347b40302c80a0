//! Concat and Split.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Joins all inputs along `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concat {
    /// The axis (may be negative).
    pub axis: i64,
}

impl OpDef for Concat {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Splits along `axis` into `num_outputs` parts of the given sizes, or equal parts (the last
/// smaller when the size does not divide).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The axis (may be negative).
    pub axis: i64,
    /// Part sizes; `None` = equal parts.
    pub sizes: Option<Vec<usize>>,
    /// Number of outputs.
    pub num_outputs: usize,
}

impl OpDef for Split {
    fn num_outputs(&self) -> usize {
        self.num_outputs
    }
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
