//! Slice.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `starts`, `ends`, optional `axes`, optional `steps` (i32/i64), with ONNX
/// clamping of out-of-range and negative indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slice {}

impl OpDef for Slice {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
