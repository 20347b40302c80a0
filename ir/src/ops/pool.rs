//! Pooling: max and average pooling windows, and GlobalAveragePool.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Mean over the window.
    Average,
}

/// Input `x` [N, C, D...]; window geometry as in [`super::Conv`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Max or average.
    pub kind: PoolKind,
    /// Window spatial shape.
    pub kernel_shape: Vec<usize>,
    /// Stride per spatial axis (`None` = 1).
    pub strides: Option<Vec<usize>>,
    /// Dilation per spatial axis (`None` = 1).
    pub dilations: Option<Vec<usize>>,
    /// Begin pads then end pads (`None` = 0).
    pub pads: Option<Vec<usize>>,
    /// Padding mode.
    pub auto_pad: super::AutoPad,
    /// Use ceil instead of floor for the output size.
    pub ceil_mode: bool,
    /// Average pooling: count padded elements in the divisor.
    pub count_include_pad: bool,
}

impl OpDef for Pool {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Input `x` [N, C, D...] → [N, C, 1...].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalAveragePool {}

impl OpDef for GlobalAveragePool {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
