//! Shrink: hard and soft shrinkage, elementwise.

use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{DType, OpError, Tensor, TypeInfo};
use half::f16;
use serde::{Deserialize, Serialize};

/// `y = x + bias` where `x < -lambd`, `x - bias` where `x > lambd`, else 0 (ONNX Shrink); one
/// input of any numeric dtype, the output of the same type. `bias = 0` is hard shrinkage,
/// `bias = lambd` soft shrinkage.
///
/// Numeric contract (the kernels follow it exactly):
/// - floats: `bias` and `lambd` are first rounded to the input's precision (for f16, as NumPy
///   does with a Python float against an f16 array); the comparison and the sum are in f32 and
///   the result is rounded once to the input dtype. A NaN compares false both ways: 0.
/// - integers: in f64; the result is truncated toward zero to i64 (saturating) and wrapped to
///   the element width, as NumPy's `astype` gives on x86.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shrink {
    /// Added below `-lambd`, subtracted above `lambd`.
    pub bias: f32,
    /// The half-width of the band mapped to 0.
    pub lambd: f32,
}

impl Shrink {
    /// `(bias, lambd)` rounded to the precision of float dtype `dt` (unchanged for f32).
    pub fn attrs_for(&self, dt: DType) -> (f32, f32) {
        let round = |v: f32| if dt == DType::F16 { f16::from_f32(v).to_f32() } else { v };
        (round(self.bias), round(self.lambd))
    }

    /// The shrinkage of one float, with `(bias, lambd)` from [`Shrink::attrs_for`].
    fn float(x: f32, (bias, lambd): (f32, f32)) -> f32 {
        if x < -lambd {
            x + bias
        } else if x > lambd {
            x - bias
        } else {
            0.0
        }
    }

    /// The shrinkage of one integer, as i64 before the wrap to the element width.
    fn int(&self, x: i64) -> i64 {
        let (x, bias, lambd) = (x as f64, f64::from(self.bias), f64::from(self.lambd));
        let y = if x < -lambd {
            x + bias
        } else if x > lambd {
            x - bias
        } else {
            0.0
        };
        y as i64
    }
}

impl OpDef for Shrink {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?.ty;
        if x.dtype == DType::Bool {
            return Err(invalid("input must be numeric, got bool"));
        }
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let a = self.attrs_for(x.dtype());
        Ok(vec![match x {
            Tensor::F32(v) => Tensor::F32(v.mapv(|x| Shrink::float(x, a))),
            Tensor::F16(v) => Tensor::F16(v.mapv(|x| f16::from_f32(Shrink::float(x.to_f32(), a)))),
            Tensor::I8(v) => Tensor::I8(v.mapv(|x| self.int(x.into()) as i8)),
            Tensor::U8(v) => Tensor::U8(v.mapv(|x| self.int(x.into()) as u8)),
            Tensor::I32(v) => Tensor::I32(v.mapv(|x| self.int(x.into()) as i32)),
            Tensor::I64(v) => Tensor::I64(v.mapv(|x| self.int(x))),
            Tensor::Bool(_) => return Err(invalid("input must be numeric, got bool")),
        }])
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        // Two comparisons and one add or subtract per element.
        3 * outs.iter().map(|t| t.shape.numel_upper().unwrap_or(0) as u64).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;
    use crate::ops::test_util::{f32s, t};

    fn shrink(bias: f32, lambd: f32, x: &Tensor) -> Result<Tensor, OpError> {
        Shrink { bias, lambd }.eval(&[Some(x)]).map(|mut v| v.remove(0))
    }

    #[test]
    fn onnx_hard_and_soft_examples() {
        // The ONNX operator documentation's examples (test_shrink_hard, test_shrink_soft).
        let x = t(&[5], vec![-2f32, -1., 0., 1., 2.]);
        assert_eq!(f32s(&shrink(0.0, 1.5, &x).unwrap()), [-2., 0., 0., 0., 2.]);
        assert_eq!(f32s(&shrink(1.5, 1.5, &x).unwrap()), [-0.5, 0., 0., 0., 0.5]);
        // The band's edges map to 0; NaN compares false both ways; infinities pass through.
        let e = t(&[5], vec![-1.5f32, 1.5, f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        assert_eq!(f32s(&shrink(1.0, 1.5, &e).unwrap()), [0., 0., 0., f32::INFINITY, f32::NEG_INFINITY]);
    }

    #[test]
    fn f16_rounds_the_attributes_first() {
        // 0.1 is not an f16: lambd rounds to 0.099975586, so 0.0999755859375 (an f16) is inside
        // the band, and the sum rounds once.
        let x = t(&[3], vec![f16::from_f32(0.1), f16::from_f32(0.5), f16::from_f32(-3.0)]);
        let y = shrink(0.1, 0.1, &x).unwrap();
        let y: Vec<f32> = y.view::<f16>().unwrap().iter().map(|v| v.to_f32()).collect();
        let b = f16::from_f32(0.1).to_f32();
        assert_eq!(y, [0.0, f16::from_f32(0.5 - b).to_f32(), f16::from_f32(-3.0 + b).to_f32()]);
    }

    #[test]
    fn integers_truncate_toward_zero_and_wrap() {
        let x = t(&[5], vec![-5i8, -1, 0, 3, 127]);
        // -5 + 1.5 = -3.5 → -3; 3 - 1.5 = 1.5 → 1; 127 - 1.5 = 125.5 → 125; 127 + 10.5 → 137 → -119.
        assert_eq!(shrink(1.5, 1.0, &x).unwrap(), t(&[5], vec![-3i8, 0, 0, 1, 125]));
        assert_eq!(shrink(-10.5, 1.0, &x).unwrap(), t(&[5], vec![-15i8, 0, 0, 13, 137u8 as i8]));
        let u = t(&[3], vec![0u8, 2, 255]);
        assert_eq!(shrink(0.5, 1.0, &u).unwrap(), t(&[3], vec![0u8, 1, 254]));
        let l = t(&[2], vec![i64::MIN, i64::MAX]);
        // Beyond f64's 53 bits the contract's f64 arithmetic rounds; the i64 conversion saturates.
        assert_eq!(shrink(0.0, 0.0, &l).unwrap(), t(&[2], vec![i64::MIN, i64::MAX]));
    }

    #[test]
    fn types_and_errors() {
        let ty = TypeInfo::new(DType::I32, Shape::parse("[b, 4]").unwrap());
        let s = Shrink { bias: 0.0, lambd: 0.5 };
        assert_eq!(s.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).unwrap(), vec![ty.clone()]);
        let b = TypeInfo::new(DType::Bool, Shape::known(&[2]));
        assert!(s.infer(&[Some(InferIn { ty: &b, value: None, sym: None })]).unwrap_err().to_string().contains("bool"));
        assert!(s.eval(&[]).is_err());
        assert!(s.eval(&[Some(&t(&[1], vec![true]))]).is_err());
        assert_eq!(shrink(0.0, 0.5, &Tensor::zeros(DType::F32, &[0, 3])).unwrap().shape(), &[0, 3]);
    }
}
