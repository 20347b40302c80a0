//! Expand.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `shape` (i64); bidirectional broadcast of data against shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expand {}

impl OpDef for Expand {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
