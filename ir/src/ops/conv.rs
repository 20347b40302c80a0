//! Convolution (1-D/2-D/N-D) with groups, pads, strides, dilations and auto_pad.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// How padding is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// Output size `ceil(in/stride)`, extra padding at the end.
    SameUpper,
    /// Output size `ceil(in/stride)`, extra padding at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// Inputs `x` [N, C, D...], `w` [M, C/group, K...], optional `b` [M].
/// `None` attributes take the ONNX defaults (kernel from `w`, strides/dilations 1, pads 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Number of groups.
    pub group: usize,
    /// Kernel spatial shape.
    pub kernel_shape: Option<Vec<usize>>,
    /// Stride per spatial axis.
    pub strides: Option<Vec<usize>>,
    /// Dilation per spatial axis.
    pub dilations: Option<Vec<usize>>,
    /// Begin pads for every spatial axis, then end pads.
    pub pads: Option<Vec<usize>>,
    /// Padding mode.
    pub auto_pad: AutoPad,
}

impl OpDef for Conv {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
