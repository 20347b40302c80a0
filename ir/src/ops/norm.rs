//! Normalizations: LayerNorm and inference-mode BatchNorm.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `x`, `scale`, optional `bias`; normalizes over axes `axis..rank`.
/// Outputs `y`, `mean`, `inv_std_dev` (the latter two with reduced axes kept as 1), computed
/// in f32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    /// First normalized axis (may be negative).
    pub axis: i64,
    /// Added to the variance.
    pub epsilon: f32,
}

impl OpDef for LayerNorm {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inputs `x` [N, C, ...], `scale`, `bias`, `mean`, `var` (each [C]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// Added to the variance.
    pub epsilon: f32,
}

impl OpDef for BatchNorm {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
