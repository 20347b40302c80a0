//! Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, with ONNX rounding
//! (half to even) and saturation.
//!
//! Scale and zero point share one of three granularities, fixed by the scale's shape: a single
//! element (per tensor; a 1-D tensor of one element counts, as in the ONNX reference), a 1-D
//! tensor along `axis` (per axis), or with `block_size > 0` the shape of `x` with the `axis`
//! dim divided by `block_size`, rounded up (blocked).

use super::{InferIn, OpDef, arity, opt, req};
use crate::error::{invalid, unsupported};
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// How scale and zero point map onto the elements of `x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granularity {
    Tensor,
    Axis(usize),
    Blocked { axis: usize, block: usize },
}

impl Granularity {
    /// Determines the granularity from the shapes, checking they agree where dims are known.
    fn of(x: &Shape, scale: &Shape, axis: i64, block: usize) -> Result<Granularity, OpError> {
        if scale.0.iter().all(|d| *d == Dim::Known(1)) {
            return Ok(Granularity::Tensor);
        }
        let a = x.axis(axis)?;
        let disagree = |why: String| invalid(format!("scale of shape {scale} does not fit x of shape {x}: {why}"));
        if block == 0 {
            if scale.rank() != 1 {
                return Err(disagree("a scale of rank ≥ 2 needs block_size > 0".into()));
            }
            if let (Some(s), Some(d)) = (scale.0[0].known(), x.0[a].known())
                && s != d
            {
                return Err(disagree(format!("per-axis length {s} differs from axis {a} of size {d}")));
            }
            return Ok(Granularity::Axis(a));
        }
        if scale.rank() != x.rank() {
            return Err(disagree("blocked scales have the rank of x".into()));
        }
        for (i, (s, d)) in scale.0.iter().zip(&x.0).enumerate() {
            let (Some(s), Some(d)) = (s.known(), d.known()) else { continue };
            let want = if i == a { d.div_ceil(block) } else { d };
            if s != want {
                return Err(disagree(format!("axis {i} should have {want} scales (block_size {block})")));
            }
        }
        Ok(Granularity::Blocked { axis: a, block })
    }

    /// The parameter at the element of `x` at `idx`; `p` has been validated against `x`.
    fn at(self, p: &ArrayD<f32>, idx: &IxDyn) -> f32 {
        let v = match self {
            Granularity::Tensor => p.iter().next(),
            Granularity::Axis(a) => p.get(IxDyn(&[idx[a]])),
            Granularity::Blocked { axis, block } => {
                let mut j = idx.clone();
                j[axis] /= block;
                p.get(j)
            }
        };
        v.copied().unwrap_or(f32::NAN)
    }
}

/// Checks a zero point has the scale's shape (or both have one element) and the given dtype.
fn check_zero_point(zp: &TypeInfo, scale: &Shape, dtype: DType, role: &str) -> Result<(), OpError> {
    if zp.dtype != dtype {
        return Err(invalid(format!("zero point is {} but {role} is {dtype}", zp.dtype)));
    }
    let single = |s: &Shape| s.0.iter().all(|d| *d == Dim::Known(1));
    if zp.shape != *scale && !(single(&zp.shape) && single(scale)) {
        return Err(invalid(format!("zero point shape {} differs from scale shape {scale}", zp.shape)));
    }
    Ok(())
}

/// Applies `f(x, scale, zero_point)` elementwise with the parameters looked up per element.
fn with_params<R>(
    x: &ArrayD<f32>,
    g: Granularity,
    scale: &ArrayD<f32>,
    zp: Option<&ArrayD<f32>>,
    f: impl Fn(f32, f32, f32) -> R,
) -> Result<ArrayD<R>, OpError> {
    let out = x.indexed_iter().map(|(idx, &v)| f(v, g.at(scale, &idx), zp.map_or(0.0, |z| g.at(z, &idx))));
    // Logical (row-major) order, so the values fill a standard-layout array of x's shape.
    ArrayD::from_shape_vec(x.raw_dim(), out.collect()).map_err(|e| invalid(e.to_string()))
}

/// Inputs `x` (f32/f16/i32), `y_scale`, optional `y_zero_point`; per-tensor, per-axis or
/// blocked.
///
/// `y = saturate(round_half_even(x / y_scale) + y_zero_point)`, the division done in the
/// scale's precision (the spec's rule; f16 scales divide in f16). NaN quantizes to the zero
/// point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeLinear {
    /// Axis of per-axis or blocked quantization (may be negative).
    pub axis: i64,
    /// Block length along `axis`; 0 = not blocked.
    pub block_size: usize,
    /// Output dtype (i8 or u8); from the zero point when present, else u8.
    pub output_dtype: crate::DType,
}

impl QuantizeLinear {
    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<(Granularity, TypeInfo), OpError> {
        arity(ins, 2, 3)?;
        let (x, scale) = (req(ins, 0)?, req(ins, 1)?);
        if !matches!(x.dtype, DType::F32 | DType::F16 | DType::I32) {
            return Err(invalid(format!("QuantizeLinear x must be f32, f16 or i32, got {}", x.dtype)));
        }
        match scale.dtype {
            DType::F32 | DType::F16 => {}
            DType::I32 => return Err(unsupported("QuantizeLinear with an i32 scale")),
            other => return Err(invalid(format!("QuantizeLinear scale must be f32 or f16, got {other}"))),
        }
        let out = self.output_dtype;
        if !matches!(out, DType::I8 | DType::U8) {
            return Err(unsupported(format!("QuantizeLinear to {out} (only i8 and u8)")));
        }
        if let Some(zp) = opt(ins, 2) {
            check_zero_point(zp, &scale.shape, out, "the output dtype")?;
        }
        let g = Granularity::of(&x.shape, &scale.shape, self.axis, self.block_size)?;
        Ok((g, TypeInfo::new(out, x.shape.clone())))
    }
}

impl OpDef for QuantizeLinear {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Ok(vec![self.check(&tys)?.1])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        let (g, ty) = self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let (x, scale, zp) = (req(ins, 0)?, req(ins, 1)?, opt(ins, 2));
        let (lo, hi) = if ty.dtype == DType::I8 { (-128.0, 127.0) } else { (0.0, 255.0) };
        let in_f16 = scale.dtype() == DType::F16;
        let q = with_params(&x.to_f32(), g, &scale.to_f32(), zp.map(Tensor::to_f32).as_ref(), |v, s, z| {
            let r = if in_f16 { f16::from_f32(f16::from_f32(v).to_f32() / s).to_f32() } else { v / s };
            let r = r.round_ties_even();
            if r.is_nan() { f64::from(z) } else { (f64::from(r) + f64::from(z)).clamp(lo, hi) }
        })?;
        Ok(vec![Tensor::from_f64(ty.dtype, q)])
    }
}

/// Inputs `x` (i8/u8/i32), `x_scale`, optional `x_zero_point`; output has the scale's dtype.
///
/// `y = (x - x_zero_point)·x_scale`, computed in f32 and rounded once to the scale's dtype.
/// An i32 `x` takes no zero point, or an all-zero one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DequantizeLinear {
    /// Axis of per-axis or blocked dequantization (may be negative).
    pub axis: i64,
    /// Block length along `axis`; 0 = not blocked.
    pub block_size: usize,
}

impl DequantizeLinear {
    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<(Granularity, TypeInfo), OpError> {
        arity(ins, 2, 3)?;
        let (x, scale) = (req(ins, 0)?, req(ins, 1)?);
        if !matches!(x.dtype, DType::I8 | DType::U8 | DType::I32) {
            return Err(invalid(format!("DequantizeLinear x must be i8, u8 or i32, got {}", x.dtype)));
        }
        if !scale.dtype.is_float() {
            return Err(invalid(format!("DequantizeLinear scale must be f32 or f16, got {}", scale.dtype)));
        }
        if let Some(zp) = opt(ins, 2) {
            check_zero_point(zp, &scale.shape, x.dtype, "x")?;
        }
        let g = Granularity::of(&x.shape, &scale.shape, self.axis, self.block_size)?;
        Ok((g, TypeInfo::new(scale.dtype, x.shape.clone())))
    }
}

impl OpDef for DequantizeLinear {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Ok(vec![self.check(&tys)?.1])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        let (g, ty) = self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let (x, scale, zp) = (req(ins, 0)?, req(ins, 1)?, opt(ins, 2));
        if let (Tensor::I32(_), Some(Tensor::I32(z))) = (x, zp)
            && let Some(v) = z.iter().find(|&&v| v != 0)
        {
            return Err(invalid(format!("DequantizeLinear of i32 x takes no zero point, or a zero one; got {v}")));
        }
        // x − zp is exact in f32 for 8-bit operands; i32 converts as the ONNX reference does.
        let y = with_params(&x.to_f32(), g, &scale.to_f32(), zp.map(Tensor::to_f32).as_ref(), |v, s, z| (v - z) * s)?;
        Ok(vec![Tensor::from_f32(ty.dtype, y)])
    }
}

/// `DequantizeLinear(QuantizeLinear(x, scale, zero_point), scale, zero_point)` in one
/// operator: the QDQ form's quantization of an activation that only its dequantization reads
/// (`quantize-dequantize` fuses the pair). Inputs `x` (f32), `scale` (f32), optional
/// `zero_point` (`output_dtype`); per tensor, per axis or blocked, as the pair's. Output f32
/// of x's shape:
///
/// `(saturate(round_half_even(x / scale) + zero_point) − zero_point) · scale`
///
/// the two operators' arithmetic step for step (NaN gives 0, as the zero point dequantizes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizeDequantize {
    /// Axis of per-axis or blocked quantization (may be negative).
    pub axis: i64,
    /// Block length along `axis`; 0 = not blocked.
    pub block_size: usize,
    /// The quantized dtype in between (i8 or u8).
    pub output_dtype: crate::DType,
}

impl QuantizeDequantize {
    fn quantize(&self) -> QuantizeLinear {
        QuantizeLinear { axis: self.axis, block_size: self.block_size, output_dtype: self.output_dtype }
    }

    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<TypeInfo, OpError> {
        let (_, q) = self.quantize().check(ins)?;
        let (x, scale) = (req(ins, 0)?, req(ins, 1)?);
        if x.dtype != DType::F32 || scale.dtype != DType::F32 {
            return Err(invalid(format!(
                "QuantizeDequantize takes an f32 x and scale, got {} and {}",
                x.dtype, scale.dtype
            )));
        }
        Ok(TypeInfo::new(DType::F32, q.shape))
    }
}

impl OpDef for QuantizeDequantize {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        Ok(vec![self.check(&super::input_types(ins))?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let q = self.quantize().eval(ins)?.remove(0);
        let dq = DequantizeLinear { axis: self.axis, block_size: self.block_size };
        dq.eval(&[Some(&q), ins.get(1).copied().flatten(), ins.get(2).copied().flatten()])
    }

    /// The quantization's and the dequantization's: one per element each.
    fn flops(&self, _ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        outs.iter().map(|t| t.shape.numel_upper().unwrap_or(0) as u64).sum::<u64>().saturating_mul(2)
    }
}

/// Input `x` f32 → outputs `y` u8, `y_scale` f32 scalar, `y_zero_point` u8 scalar.
///
/// As in the ONNX reference: the range `[min(0, min x), max(0, max x)]` (NaNs skipped) gives
/// `scale = range / 255`, or `1 / 255` when the range is empty (all-zero or empty `x`);
/// `zero_point = round_half_even(clamp(-min / scale, 0, 255))`;
/// `y = clamp(round_half_even(x / scale) + zero_point, 0, 255)`, all in f32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicQuantizeLinear {}

impl DynamicQuantizeLinear {
    fn check(ins: &[Option<&TypeInfo>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        if x.dtype != DType::F32 {
            return Err(invalid(format!("DynamicQuantizeLinear x must be f32, got {}", x.dtype)));
        }
        let scalar = |d| TypeInfo::new(d, Shape(vec![]));
        Ok(vec![TypeInfo::new(DType::U8, x.shape.clone()), scalar(DType::F32), scalar(DType::U8)])
    }
}

impl OpDef for DynamicQuantizeLinear {
    fn num_outputs(&self) -> usize {
        3
    }

    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Self::check(&tys)
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        Self::check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let x = req(ins, 0)?.to_f32();
        let max = x.iter().fold(0f32, |m, &v| m.max(v));
        let min = x.iter().fold(0f32, |m, &v| m.min(v));
        let scale = if max == min { 1.0 } else { max - min } / 255.0;
        let zp = (-min / scale).clamp(0.0, 255.0).round_ties_even();
        let y = x.mapv(|v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u8);
        Ok(vec![Tensor::U8(y), Tensor::scalar(scale), Tensor::scalar(zp as u8)])
    }

    /// One pass for the range and one to quantize.
    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        let n = ins.first().copied().flatten().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
        n.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }
    fn ql(axis: i64, block_size: usize, output_dtype: DType) -> QuantizeLinear {
        QuantizeLinear { axis, block_size, output_dtype }
    }
    fn run(op: &dyn OpDef, ins: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        Ok(op.eval(ins)?.remove(0))
    }
    fn u8s(t: &Tensor) -> Vec<u8> {
        t.view::<u8>().unwrap().iter().copied().collect()
    }
    fn i8s(t: &Tensor) -> Vec<i8> {
        t.view::<i8>().unwrap().iter().copied().collect()
    }
    fn vals(t: &Tensor) -> Vec<f32> {
        t.to_f32().iter().copied().collect()
    }

    #[test]
    fn quantize_per_tensor_rounding_and_saturation() {
        // ONNX test_quantizelinear.
        let x = f(&[6], vec![0., 2., 3., 1000., -254., -1000.]);
        let y =
            run(&ql(1, 0, DType::U8), &[Some(&x), Some(&Tensor::scalar(2f32)), Some(&Tensor::scalar(128u8))]).unwrap();
        assert_eq!(u8s(&y), [128, 129, 130, 255, 1, 0]);
        // Half to even, i8 saturation, and a one-element 1-D scale as per-tensor.
        let x = f(&[2, 4], vec![-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 300., -300.]);
        let s = f(&[1], vec![1.0]);
        let y = run(&ql(1, 0, DType::I8), &[Some(&x), Some(&s), Some(&Tensor::scalar(0i8))]).unwrap();
        assert_eq!(i8s(&y), [-2, -2, 0, 0, 2, 2, 127, -128]);
        let y = run(&ql(1, 0, DType::I8), &[Some(&x), Some(&s), Some(&Tensor::from_vec(&[1], vec![10i8]).unwrap())])
            .unwrap();
        assert_eq!(i8s(&y), [8, 8, 10, 10, 12, 12, 127, -128]);
        // No zero point: u8 output, zero point 0; infinities saturate, NaN lands on the zero point.
        let x = f(&[4], vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 7.0]);
        let y = run(&ql(0, 0, DType::U8), &[Some(&x), Some(&Tensor::scalar(2f32))]).unwrap();
        assert_eq!(u8s(&y), [255, 0, 0, 4]);
        // i32 input.
        let x = Tensor::from_vec(&[3], vec![7i32, -7, 1 << 30]).unwrap();
        let y =
            run(&ql(0, 0, DType::I8), &[Some(&x), Some(&Tensor::scalar(2f32)), Some(&Tensor::scalar(-3i8))]).unwrap();
        assert_eq!(i8s(&y), [1, -7, 127]);
    }

    #[test]
    fn quantize_f16_divides_in_f16() {
        // With an f16 scale the division is done in f16 (the spec's rule): 2.5002 becomes 2.5,
        // which rounds to even (2), where an f32 division would give 3.
        let x = f(&[1], vec![2.5002]);
        let s16 = Tensor::from_f32(DType::F16, ndarray::arr0(1.0f32).into_dyn());
        assert_eq!(u8s(&run(&ql(0, 0, DType::U8), &[Some(&x), Some(&s16)]).unwrap()), [2]);
        assert_eq!(u8s(&run(&ql(0, 0, DType::U8), &[Some(&x), Some(&Tensor::scalar(1f32))]).unwrap()), [3]);
        let s16 = Tensor::from_f32(DType::F16, ndarray::arr0(1.4f32).into_dyn());
        let xh = Tensor::from_f32(DType::F16, ndarray::arr1(&[1.0f32, 3.0]).into_dyn());
        let y = run(&ql(0, 0, DType::U8), &[Some(&xh), Some(&s16), Some(&Tensor::scalar(1u8))]).unwrap();
        // 1/1.4 = 0.714 → 1, 3/1.4 = 2.14 → 2.
        assert_eq!(u8s(&y), [2, 3]);
    }

    #[test]
    fn quantize_per_axis_and_blocked() {
        // ONNX test_quantizelinear_axis.
        #[rustfmt::skip]
        let x = f(&[1, 3, 3, 2], vec![-162., 10., -100., 232., -20., -50., -76., 0., 0., 252., 32., -44.,
                                      245., -485., -960., -270., -375., -470.]);
        let s = f(&[3], vec![2., 4., 5.]);
        let z = Tensor::from_vec(&[3], vec![84u8, 24, 196]).unwrap();
        let y = run(&ql(1, 0, DType::U8), &[Some(&x), Some(&s), Some(&z)]).unwrap();
        assert_eq!(u8s(&y), [3, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13, 245, 99, 4, 142, 121, 102]);
        // Negative axis means the same axis here.
        assert_eq!(run(&ql(-3, 0, DType::U8), &[Some(&x), Some(&s), Some(&z)]).unwrap(), y);
        // ONNX test_quantizelinear_blocked_asymmetric.
        let x = f(&[3, 4], vec![6., 12., 50., 5., 1., 8., 4., 5., 0., 20., 10., 4.]);
        let s = f(&[3, 2], vec![1.5, 2.5, 3.0, 4.9, 5.1, 6.9]);
        let z = Tensor::from_vec(&[3, 2], vec![0u8, 1, 1, 0, 2, 3]).unwrap();
        let y = run(&ql(1, 2, DType::U8), &[Some(&x), Some(&s), Some(&z)]).unwrap();
        assert_eq!(u8s(&y), [4, 8, 21, 3, 1, 4, 1, 1, 2, 6, 4, 4]);
        // A partial last block: 5 columns in blocks of 2 need 3 scales.
        let x = f(&[2, 5], vec![1., 2., 3., 4., 5., -1., -2., -3., -4., -5.]);
        let s = f(&[2, 3], vec![0.5, 1., 2., 0.25, 0.5, 4.]);
        let y = run(&ql(1, 2, DType::I8), &[Some(&x), Some(&s)]).unwrap();
        assert_eq!(i8s(&y), [2, 4, 3, 4, 2, -4, -8, -6, -8, -1]);
        // Blocked along axis 0.
        let x = f(&[3, 4], (0..12).map(|v| v as f32).collect());
        let s = f(&[2, 4], vec![1., 2., 3., 4., 0.5, 0.5, 0.5, 0.5]);
        let y = run(&ql(0, 2, DType::U8), &[Some(&x), Some(&s)]).unwrap();
        assert_eq!(u8s(&y), [0, 0, 1, 1, 4, 2, 2, 2, 16, 18, 20, 22]);
    }

    #[test]
    fn quantize_errors() {
        let x = f(&[2, 3], vec![1.0; 6]);
        let s3 = f(&[3], vec![1.0; 3]);
        let s = Tensor::scalar(1f32);
        // Per-axis length mismatch, axis out of range, rank-2 scale without blocks.
        assert!(run(&ql(0, 0, DType::U8), &[Some(&x), Some(&s3)]).is_err());
        assert!(run(&ql(2, 0, DType::U8), &[Some(&x), Some(&s3)]).is_err());
        assert!(run(&ql(1, 0, DType::U8), &[Some(&x), Some(&f(&[2, 3], vec![1.0; 6]))]).is_err());
        // Blocked with the wrong number of blocks or rank.
        assert!(run(&ql(1, 2, DType::U8), &[Some(&x), Some(&f(&[2, 1], vec![1.0; 2]))]).is_err());
        assert!(run(&ql(1, 2, DType::U8), &[Some(&x), Some(&f(&[2, 3], vec![1.0; 6]))]).is_err());
        assert!(run(&ql(1, 2, DType::U8), &[Some(&x), Some(&f(&[2], vec![1.0; 2]))]).is_err());
        // Zero point of the wrong dtype or shape.
        assert!(run(&ql(1, 0, DType::U8), &[Some(&x), Some(&s), Some(&Tensor::scalar(0i8))]).is_err());
        let z2 = Tensor::from_vec(&[2], vec![0u8; 2]).unwrap();
        assert!(run(&ql(1, 0, DType::U8), &[Some(&x), Some(&s3), Some(&z2)]).is_err());
        // Dtypes: output, x, scale.
        assert!(matches!(run(&ql(1, 0, DType::I32), &[Some(&x), Some(&s)]), Err(OpError::Unsupported(_))));
        let xb = Tensor::from_vec(&[1], vec![true]).unwrap();
        assert!(run(&ql(1, 0, DType::U8), &[Some(&xb), Some(&s)]).is_err());
        assert!(matches!(
            run(&ql(1, 0, DType::U8), &[Some(&x), Some(&Tensor::scalar(1i32))]),
            Err(OpError::Unsupported(_))
        ));
        assert!(run(&ql(1, 0, DType::U8), &[Some(&x)]).is_err());
        assert!(run(&ql(1, 0, DType::U8), &[Some(&x), None]).is_err());
        // Symbolic dims are checked only where known.
        let tx = TypeInfo::new(DType::F32, Shape::parse("[b, 3]").unwrap());
        let ts = TypeInfo::new(DType::F32, Shape::parse("[3]").unwrap());
        let out = ql(1, 0, DType::I8)
            .infer(&[
                Some(InferIn { ty: &tx, value: None, sym: None }),
                Some(InferIn { ty: &ts, value: None, sym: None }),
            ])
            .unwrap();
        assert_eq!(out, vec![TypeInfo::new(DType::I8, tx.shape.clone())]);
        let ts = TypeInfo::new(DType::F32, Shape::parse("[4]").unwrap());
        assert!(
            ql(1, 0, DType::I8)
                .infer(&[
                    Some(InferIn { ty: &tx, value: None, sym: None }),
                    Some(InferIn { ty: &ts, value: None, sym: None })
                ])
                .is_err()
        );
    }

    fn dq(axis: i64, block_size: usize) -> DequantizeLinear {
        DequantizeLinear { axis, block_size }
    }

    #[test]
    fn dequantize_values() {
        // ONNX test_dequantizelinear.
        let x = Tensor::from_vec(&[4], vec![0u8, 3, 128, 255]).unwrap();
        let y = run(&dq(1, 0), &[Some(&x), Some(&Tensor::scalar(2f32)), Some(&Tensor::scalar(128u8))]).unwrap();
        assert_eq!(vals(&y), [-256., -250., 0., 254.]);
        // ONNX test_dequantizelinear_axis.
        #[rustfmt::skip]
        let x = Tensor::from_vec(&[1, 3, 3, 2], vec![3u8, 89, 34, 200, 74, 59, 5, 24, 24, 87, 32, 13,
                                                     245, 99, 4, 142, 121, 102]).unwrap();
        let s = f(&[3], vec![2., 4., 5.]);
        let z = Tensor::from_vec(&[3], vec![84u8, 24, 196]).unwrap();
        #[rustfmt::skip]
        let want = [-162., 10., -100., 232., -20., -50., -76., 0., 0., 252., 32., -44.,
                    245., -485., -960., -270., -375., -470.];
        assert_eq!(vals(&run(&dq(1, 0), &[Some(&x), Some(&s), Some(&z)]).unwrap()), want);
        // ONNX test_dequantizelinear_blocked (values from the reference).
        let x = Tensor::from_vec(&[3, 4], (1u8..=12).collect()).unwrap();
        let s = f(&[3, 2], vec![1.5, 2.5, 3.0, 4.9, 5.1, 6.9]);
        let z = Tensor::from_vec(&[3, 2], vec![0u8, 1, 1, 0, 2, 3]).unwrap();
        let y = run(&dq(1, 2), &[Some(&x), Some(&s), Some(&z)]).unwrap();
        let want = [1.5f32, 3.0, 5.0, 7.5, 12.0, 15.0, 34.3, 39.2, 35.7, 40.8, 55.2, 62.1];
        assert!(vals(&y).iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5));
        // f16 scale → f16 output, rounded once (hex from the ONNX reference: ca73 4a4c ae66).
        let x = Tensor::from_vec(&[3], vec![-128i8, 127, 0]).unwrap();
        let s = Tensor::F16(ndarray::arr0(f16::from_f32(0.1)).into_dyn());
        let y = run(&dq(0, 0), &[Some(&x), Some(&s), Some(&Tensor::scalar(1i8))]).unwrap();
        let bits: Vec<u16> = y.view::<f16>().unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, [0xca73, 0x4a4c, 0xae66]);
        // i32 input, with no zero point or a zero one.
        let x = Tensor::from_vec(&[2], vec![-3i32, 1 << 20]).unwrap();
        let s = Tensor::scalar(0.5f32);
        assert_eq!(vals(&run(&dq(0, 0), &[Some(&x), Some(&s)]).unwrap()), [-1.5, 524288.]);
        assert_eq!(vals(&run(&dq(0, 0), &[Some(&x), Some(&s), Some(&Tensor::scalar(0i32))]).unwrap()), [-1.5, 524288.]);
        assert!(run(&dq(0, 0), &[Some(&x), Some(&s), Some(&Tensor::scalar(2i32))]).is_err());
    }

    #[test]
    fn dequantize_errors() {
        let x = Tensor::from_vec(&[2, 3], vec![1u8; 6]).unwrap();
        let s = Tensor::scalar(1f32);
        assert!(run(&dq(1, 0), &[Some(&x), Some(&s), Some(&Tensor::scalar(1i8))]).is_err());
        assert!(run(&dq(1, 0), &[Some(&x), Some(&Tensor::scalar(1i32))]).is_err());
        assert!(run(&dq(1, 0), &[Some(&f(&[1], vec![1.0])), Some(&s)]).is_err());
        assert!(run(&dq(0, 0), &[Some(&x), Some(&f(&[3], vec![1.0; 3]))]).is_err());
        assert!(run(&dq(1, 3), &[Some(&x), Some(&f(&[2, 2], vec![1.0; 4]))]).is_err());
        assert!(run(&dq(1, 0), &[Some(&x), Some(&s), None, None]).is_err());
        // Rank-0 x with a per-axis scale has no axis.
        assert!(run(&dq(0, 0), &[Some(&Tensor::scalar(1u8)), Some(&f(&[2], vec![1.0; 2]))]).is_err());
        let y = run(&dq(0, 0), &[Some(&Tensor::scalar(3u8)), Some(&s)]).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[][..], vec![3.0]));
    }

    fn dyn_q(x: &Tensor) -> (Vec<u8>, f32, u8) {
        let out = DynamicQuantizeLinear {}.eval(&[Some(x)]).unwrap();
        let scale = out[1].view::<f32>().unwrap().iter().copied().next().unwrap();
        let zp = out[2].view::<u8>().unwrap().iter().copied().next().unwrap();
        assert_eq!((out[1].shape(), out[2].shape()), (&[][..], &[][..]));
        (u8s(&out[0]), scale, zp)
    }

    #[test]
    fn dynamic_quantize_values() {
        // The three ONNX node tests; scale bits from the reference implementation.
        let (y, s, z) = dyn_q(&f(&[6], vec![0., 2., -3., -2.5, 1.34, 0.5]));
        assert_eq!((y, s.to_bits(), z), (vec![153, 255, 0, 26, 221, 179], 1017159841, 153));
        let (y, s, z) = dyn_q(&f(&[6], vec![-1.0, -2.1, -1.3, -2.5, -3.34, -4.0]));
        assert_eq!((y, s.to_bits(), z), (vec![191, 121, 172, 96, 42, 0], 1015054465, 255));
        let x = f(&[3, 4], vec![1., 2.1, 1.3, 2.5, 3.34, 4.0, 1.5, 2.6, 3.9, 4.0, 3.0, 2.345]);
        let (y, s, z) = dyn_q(&x);
        assert_eq!((y, s.to_bits(), z), (vec![64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149], 1015054465, 0));
        // All zeros (and empty): the range is empty, scale 1/255, zero point 0.
        let (y, s, z) = dyn_q(&f(&[3], vec![0.; 3]));
        assert_eq!((y, s.to_bits(), z), (vec![0, 0, 0], 998277249, 0));
        let (y, s, z) = dyn_q(&f(&[0, 2], vec![]));
        assert_eq!((y, s, z), (vec![], 1.0 / 255.0, 0));
        // NaN is skipped by the range.
        let (_, s, z) = dyn_q(&f(&[2], vec![f32::NAN, 2.55]));
        assert_eq!((s, z), (2.55 / 255.0, 0));
    }

    #[test]
    fn dynamic_quantize_errors_and_infer() {
        let op = DynamicQuantizeLinear {};
        assert!(op.eval(&[Some(&Tensor::scalar(1i32))]).is_err());
        assert!(op.eval(&[]).is_err());
        let tx = TypeInfo::new(DType::F32, Shape::parse("[b, 4]").unwrap());
        let out = op.infer(&[Some(InferIn { ty: &tx, value: None, sym: None })]).unwrap();
        assert_eq!(out[0], TypeInfo::new(DType::U8, tx.shape.clone()));
        assert_eq!(out[1], TypeInfo::new(DType::F32, Shape(vec![])));
        assert_eq!(out[2], TypeInfo::new(DType::U8, Shape(vec![])));
        assert_eq!(op.flops(&[Some(&TypeInfo::new(DType::F32, Shape::known(&[3, 4])))], &out), 24);
    }

    proptest! {
        /// Per-axis quantization equals per-tensor quantization of each slice along the axis;
        /// dequantizing recovers x within half a step where it did not saturate.
        #[test]
        fn per_axis_is_per_tensor_per_slice_and_round_trips(
            rows in 1usize..4, cols in 1usize..5, seed in any::<u32>(), signed in any::<bool>(),
        ) {
            let sample = |i: u32, m: u32| (seed.wrapping_mul(2 * i + 1).rotate_left(13) % m) as f32;
            let xv: Vec<f32> = (0..(rows * cols) as u32).map(|i| sample(i, 4000) / 7.0 - 200.0).collect();
            let sv: Vec<f32> = (0..rows as u32).map(|i| 0.25 + sample(i + 100, 16) / 8.0).collect();
            let (dt, zv): (DType, Vec<f32>) = if signed {
                (DType::I8, (0..rows as u32).map(|i| sample(i + 200, 40) - 20.0).collect())
            } else {
                (DType::U8, (0..rows as u32).map(|i| sample(i + 200, 256)).collect())
            };
            let zp = ArrayD::from_shape_vec(IxDyn(&[rows]), zv.iter().map(|&v| f64::from(v)).collect()).unwrap();
            let zp = Tensor::from_f64(dt, zp);
            let x = f(&[rows, cols], xv.clone());
            let s = f(&[rows], sv.clone());
            let op = ql(0, 0, dt);
            let y = run(&op, &[Some(&x), Some(&s), Some(&zp)]).unwrap();
            let (lo, hi) = if signed { (-128.0, 127.0) } else { (0.0, 255.0) };
            for r in 0..rows {
                let xr = f(&[cols], xv[r * cols..(r + 1) * cols].to_vec());
                let zr = Tensor::from_f64(dt, ndarray::arr0(f64::from(zv[r])).into_dyn());
                let yr = run(&op, &[Some(&xr), Some(&Tensor::scalar(sv[r])), Some(&zr)]).unwrap();
                let row: Vec<f32> = vals(&y)[r * cols..(r + 1) * cols].to_vec();
                prop_assert_eq!(&row, &vals(&yr));
                for (c, &q) in row.iter().enumerate() {
                    // The spec's formula written out directly.
                    let rounded = (xv[r * cols + c] / sv[r]).round_ties_even();
                    let want = (f64::from(rounded) + f64::from(zv[r])).clamp(lo, hi);
                    prop_assert_eq!(f64::from(q), want);
                }
            }
            let back = run(&dq(0, 0), &[Some(&y), Some(&s), Some(&zp)]).unwrap();
            for (i, (&b, &orig)) in vals(&back).iter().zip(&xv).enumerate() {
                let (r, q) = (i / cols, vals(&y)[i]);
                if f64::from(q) > lo && f64::from(q) < hi {
                    prop_assert!((b - orig).abs() <= sv[r] / 2.0 + 1e-3);
                }
            }
        }
    }
}
