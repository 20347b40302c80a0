//! Gather.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `indices` (i32/i64, negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gather {
    /// The axis (may be negative).
    pub axis: i64,
}

impl OpDef for Gather {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
