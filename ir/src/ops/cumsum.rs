//! CumSum: running sums along one axis, inclusive or exclusive, forward or reversed.
//!
//! Sums accumulate in the input's dtype one element at a time, as NumPy's `cumsum` does: floats
//! add in f32 and round to the dtype after each step (exact for f32; f16 rounds every partial
//! sum), integers wrap at their width.

use super::elementwise::{array, cast_i64, to_i64_array};
use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{DType, OpError, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Running sums of `x` along `axis` (the ONNX `axis` input, which must be a constant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CumSum {
    /// The scanned axis; negative counts from the end.
    pub axis: i64,
    /// Element `i` sums the elements before `i` only (the first one is 0).
    pub exclusive: bool,
    /// Sum from the end of the axis toward its start.
    pub reverse: bool,
}

impl CumSum {
    /// The axis as an index below `rank`, checking the dtype too.
    pub fn axis_of(&self, dtype: DType, rank: usize) -> Result<usize, OpError> {
        if dtype == DType::Bool {
            return Err(invalid("CumSum does not accept bool input"));
        }
        let r = rank as i64;
        let a = if self.axis < 0 { self.axis + r } else { self.axis };
        if a < 0 || a >= r {
            return Err(invalid(format!("CumSum axis {} is out of range for rank {rank}", self.axis)));
        }
        Ok(a as usize)
    }

    /// Scans row-major `data` of `dims` along `axis` with `add` from `zero`.
    fn scan<T: Copy>(&self, data: &mut [T], dims: &[usize], axis: usize, zero: T, add: impl Fn(T, T) -> T) {
        let n = dims[axis];
        let inner: usize = dims[axis + 1..].iter().product();
        let outer: usize = dims[..axis].iter().product();
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = zero;
                for k in 0..n {
                    let k = if self.reverse { n - 1 - k } else { k };
                    let at = (o * n + k) * inner + i;
                    let x = data[at];
                    if self.exclusive {
                        data[at] = acc;
                        acc = add(acc, x);
                    } else {
                        acc = add(acc, x);
                        data[at] = acc;
                    }
                }
            }
        }
    }
}

impl OpDef for CumSum {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let t = req(ins, 0)?.ty;
        self.axis_of(t.dtype, t.shape.rank())?;
        Ok(vec![t.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let dims = x.shape().to_vec();
        let axis = self.axis_of(x.dtype(), dims.len())?;
        let out = match x.dtype() {
            DType::F32 | DType::F16 => {
                let dt = x.dtype();
                let mut v: Vec<f32> = x.to_f32().iter().copied().collect();
                let round = |s: f32| if dt == DType::F16 { half::f16::from_f32(s).to_f32() } else { s };
                self.scan(&mut v, &dims, axis, 0.0, |a, b| round(a + b));
                Tensor::from_f32(dt, array(&dims, v)?)
            }
            dt => {
                let mut v: Vec<i64> = to_i64_array(x)?.iter().copied().collect();
                self.scan(&mut v, &dims, axis, 0, i64::wrapping_add);
                cast_i64(&array(&dims, v)?, dt)
            }
        };
        Ok(vec![out])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Element, Shape};

    fn t<T: Element>(dims: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(dims, v).unwrap()
    }

    fn run(op: &CumSum, x: &Tensor) -> Result<Tensor, OpError> {
        Ok(op.eval(&[Some(x)])?.remove(0))
    }

    fn cs(axis: i64, exclusive: bool, reverse: bool) -> CumSum {
        CumSum { axis, exclusive, reverse }
    }

    #[test]
    fn modes_match_the_onnx_examples() {
        let x = t(&[5], vec![1.0f32, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(run(&cs(0, false, false), &x).unwrap(), t(&[5], vec![1.0f32, 3.0, 6.0, 10.0, 15.0]));
        assert_eq!(run(&cs(0, true, false), &x).unwrap(), t(&[5], vec![0.0f32, 1.0, 3.0, 6.0, 10.0]));
        assert_eq!(run(&cs(0, false, true), &x).unwrap(), t(&[5], vec![15.0f32, 14.0, 12.0, 9.0, 5.0]));
        assert_eq!(run(&cs(-1, true, true), &x).unwrap(), t(&[5], vec![14.0f32, 12.0, 9.0, 5.0, 0.0]));
        let m = t(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]);
        assert_eq!(run(&cs(0, false, false), &m).unwrap(), t(&[2, 3], vec![1i32, 2, 3, 5, 7, 9]));
        assert_eq!(run(&cs(-1, false, false), &m).unwrap(), t(&[2, 3], vec![1i32, 3, 6, 4, 9, 15]));
    }

    #[test]
    fn integers_wrap_and_floats_round_per_step() {
        let x = t(&[3], vec![100i8, 100, -56]);
        assert_eq!(run(&cs(0, false, false), &x).unwrap(), t(&[3], vec![100i8, -56, -112]));
        let u = t(&[2], vec![200u8, 100]);
        assert_eq!(run(&cs(0, false, false), &u).unwrap(), t(&[2], vec![200u8, 44]));
        // f16: 2048 + 1 rounds back to 2048 at every step.
        let h = t(&[3], vec![half::f16::from_f32(2048.0), half::f16::ONE, half::f16::ONE]);
        let want = vec![half::f16::from_f32(2048.0); 3];
        assert_eq!(run(&cs(0, false, false), &h).unwrap(), t(&[3], want));
        let e = t(&[0, 2], Vec::<f32>::new());
        assert_eq!(run(&cs(0, false, false), &e).unwrap().shape(), &[0, 2]);
    }

    #[test]
    fn bad_axis_and_dtype_are_errors() {
        let x = t(&[2], vec![1.0f32, 2.0]);
        assert!(matches!(run(&cs(1, false, false), &x), Err(OpError::Invalid(m)) if m.contains("out of range")));
        assert!(run(&cs(-2, false, false), &x).is_err());
        assert!(run(&cs(0, false, false), &t(&[1], vec![true])).is_err());
        assert!(run(&cs(0, false, false), &t(&[], vec![1.0f32])).is_err());
        let ty = TypeInfo::new(DType::I64, Shape::parse("[n, 4]").unwrap());
        let got = cs(1, true, false).infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).unwrap();
        assert_eq!(got, vec![ty]);
    }
}
