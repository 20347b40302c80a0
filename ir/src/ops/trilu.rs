//! Trilu.

use super::{InferIn, OpDef, arity, opt, req};
use crate::error::invalid;
use crate::{DType, OpError, Tensor, TypeInfo, map_tensor_same};
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

/// Inputs `x` [..., N, M], optional scalar `k` (i64) diagonal offset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trilu {
    /// Keep the upper triangle (else the lower).
    pub upper: bool,
}

/// Checks the input types: `x` of rank ≥ 2, `k` a one-element i64.
fn check(x: &TypeInfo, k: Option<&TypeInfo>) -> Result<(), OpError> {
    if x.shape.rank() < 2 {
        return Err(invalid(format!("input must have rank >= 2, got shape {}", x.shape)));
    }
    match k {
        Some(k) if k.dtype != DType::I64 || k.shape.numel() != Some(1) => {
            Err(invalid(format!("k must be a scalar i64, got {k}")))
        }
        _ => Ok(()),
    }
}

impl Trilu {
    /// Whether element (row `i`, column `j`) is kept for diagonal offset `k`.
    fn keeps(&self, i: usize, j: usize, k: i64) -> bool {
        let off = j as i128 - i as i128;
        if self.upper { off >= i128::from(k) } else { off <= i128::from(k) }
    }

    fn apply<T: Clone + Default>(&self, a: &ArrayD<T>, k: i64) -> ArrayD<T> {
        let r = a.ndim();
        let mut out = a.clone();
        for (idx, v) in out.indexed_iter_mut() {
            if !self.keeps(idx[r - 2], idx[r - 1], k) {
                *v = T::default();
            }
        }
        out
    }
}

impl OpDef for Trilu {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 2)?;
        let x = req(ins, 0)?.ty;
        check(x, opt(ins, 1).map(|k| k.ty))?;
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 2)?;
        let x = req(ins, 0)?;
        let k = opt(ins, 1);
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        check(&ty(x), k.map(ty).as_ref())?;
        let k = match k {
            Some(t) => t.to_i64_vec()?.first().copied().unwrap_or_default(),
            None => 0,
        };
        Ok(vec![map_tensor_same!(x, a => self.apply(a, k))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;
    use half::f16;
    use proptest::prelude::*;

    const X: [i64; 20] = [4, 7, 3, 7, 9, 1, 2, 8, 6, 9, 9, 4, 0, 8, 7, 4, 3, 4, 2, 4];

    fn trilu(upper: bool, x: &Tensor, k: Option<i64>) -> Result<Tensor, OpError> {
        let k = k.map(Tensor::scalar);
        Trilu { upper }.eval(&[Some(x), k.as_ref()]).map(|mut v| v.remove(0))
    }

    #[test]
    fn numpy_triu_tril() {
        // Expected values from np.triu / np.tril on the ONNX test matrix.
        let x = Tensor::from_vec(&[4, 5], X.to_vec()).unwrap();
        let cases: [(Option<i64>, [i64; 20], [i64; 20]); 5] = [
            (
                None,
                [4, 7, 3, 7, 9, 0, 2, 8, 6, 9, 0, 0, 0, 8, 7, 0, 0, 0, 2, 4],
                [4, 0, 0, 0, 0, 1, 2, 0, 0, 0, 9, 4, 0, 0, 0, 4, 3, 4, 2, 0],
            ),
            (
                Some(-1),
                [4, 7, 3, 7, 9, 1, 2, 8, 6, 9, 0, 4, 0, 8, 7, 0, 0, 4, 2, 4],
                [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 9, 4, 0, 0, 0, 4, 3, 4, 0, 0],
            ),
            (Some(-7), X, [0; 20]),
            (
                Some(2),
                [0, 0, 3, 7, 9, 0, 0, 0, 6, 9, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0],
                [4, 7, 3, 0, 0, 1, 2, 8, 6, 0, 9, 4, 0, 8, 7, 4, 3, 4, 2, 4],
            ),
            (Some(6), [0; 20], X),
        ];
        for (k, up, low) in cases {
            assert_eq!(trilu(true, &x, k).unwrap().to_i64_vec().unwrap(), up, "triu {k:?}");
            assert_eq!(trilu(false, &x, k).unwrap().to_i64_vec().unwrap(), low, "tril {k:?}");
        }
        assert_eq!(trilu(true, &x, Some(i64::MIN)).unwrap(), x);
        assert_eq!(trilu(false, &x, Some(i64::MAX)).unwrap(), x);
    }

    #[test]
    fn batched_and_empty_and_every_dtype() {
        let x = Tensor::from_vec(&[2, 2, 2], vec![1f32, 2., 3., 4., 5., 6., 7., 8.]).unwrap();
        let y = trilu(true, &x, None).unwrap();
        assert_eq!(y, Tensor::from_vec(&[2, 2, 2], vec![1f32, 2., 0., 4., 5., 6., 0., 8.]).unwrap());
        assert_eq!(trilu(false, &Tensor::zeros(DType::I64, &[3, 0, 5]), Some(6)).unwrap().shape(), &[3, 0, 5]);
        let b = Tensor::from_vec(&[2, 2], vec![true; 4]).unwrap();
        assert_eq!(trilu(false, &b, None).unwrap(), Tensor::from_vec(&[2, 2], vec![true, false, true, true]).unwrap());
        let h = Tensor::from_vec(&[1, 2], vec![f16::ONE, f16::ONE]).unwrap();
        assert_eq!(trilu(false, &h, None).unwrap(), Tensor::from_vec(&[1, 2], vec![f16::ONE, f16::ZERO]).unwrap());
    }

    #[test]
    fn errors() {
        let v = Tensor::from_vec(&[3], vec![1u8, 2, 3]).unwrap();
        assert!(trilu(true, &v, None).unwrap_err().to_string().contains("rank >= 2"));
        let m = Tensor::zeros(DType::I8, &[2, 2]);
        let k32 = Tensor::scalar(1i32);
        assert!(Trilu { upper: true }.eval(&[Some(&m), Some(&k32)]).unwrap_err().to_string().contains("k must be"));
        let k2 = Tensor::from_vec(&[2], vec![1i64, 2]).unwrap();
        assert!(Trilu { upper: true }.eval(&[Some(&m), Some(&k2)]).is_err());
        assert!(Trilu { upper: true }.eval(&[]).is_err());
        let ty = TypeInfo::new(DType::F32, Shape::parse("[n]").unwrap());
        assert!(Trilu { upper: true }.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })]).is_err());
        let ty = TypeInfo::new(DType::F32, Shape::parse("[b, n, n]").unwrap());
        assert_eq!(
            Trilu { upper: false }.infer(&[Some(InferIn { ty: &ty, value: None, sym: None }), None]).unwrap(),
            vec![ty]
        );
    }

    proptest! {
        #[test]
        fn upper_plus_strict_lower_is_input(n in 1usize..5, m in 1usize..5, k in -6i64..6) {
            let x = Tensor::from_vec(&[n, m], (1..=(n * m) as i64).collect()).unwrap();
            let up = trilu(true, &x, Some(k)).unwrap().to_i64_vec().unwrap();
            let low = trilu(false, &x, Some(k - 1)).unwrap().to_i64_vec().unwrap();
            let xs = x.to_i64_vec().unwrap();
            for i in 0..n * m {
                // Exactly one of the two keeps each element.
                prop_assert!((up[i] == xs[i]) != (low[i] == xs[i]));
                prop_assert_eq!(up[i] + low[i], xs[i]);
                let (r, c) = ((i / m) as i64, (i % m) as i64);
                prop_assert_eq!(up[i] != 0, c - r >= k);
            }
        }
    }
}
