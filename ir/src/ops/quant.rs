//! Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, with ONNX rounding
//! (half to even) and saturation.

use super::{InferIn, OpDef};
use crate::{OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `x` (f32/f16/i32), `y_scale`, optional `y_zero_point`; per-tensor, per-axis or
/// blocked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeLinear {
    /// Axis of per-axis or blocked quantization (may be negative).
    pub axis: i64,
    /// Block length along `axis`; 0 = not blocked.
    pub block_size: usize,
    /// Output dtype (i8 or u8); from the zero point when present, else u8.
    pub output_dtype: crate::DType,
}

impl OpDef for QuantizeLinear {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Inputs `x` (i8/u8/i32), `x_scale`, optional `x_zero_point`; output has the scale's dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DequantizeLinear {
    /// Axis of per-axis or blocked dequantization (may be negative).
    pub axis: i64,
    /// Block length along `axis`; 0 = not blocked.
    pub block_size: usize,
}

impl OpDef for DequantizeLinear {
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}

/// Input `x` f32 → outputs `y` u8, `y_scale` f32 scalar, `y_zero_point` u8 scalar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicQuantizeLinear {}

impl OpDef for DynamicQuantizeLinear {
    fn num_outputs(&self) -> usize {
        3
    }
    fn infer(&self, _ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        todo!()
    }
    fn eval(&self, _ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        todo!()
    }
}
