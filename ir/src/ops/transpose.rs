//! Transpose.

use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{OpError, Shape, Tensor, TypeInfo, map_tensor_same};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};

/// Permutes axes; output axis i is input axis `perm[i]` (reversed when `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transpose {
    /// The permutation.
    pub perm: Option<Vec<usize>>,
}

impl Transpose {
    /// The permutation for a tensor of `rank` axes, checked to be one.
    fn perm(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(perm) = &self.perm else { return Ok((0..rank).rev().collect()) };
        let mut seen = vec![false; rank];
        if perm.len() != rank {
            return Err(invalid(format!("perm {perm:?} has {} axes, input has {rank}", perm.len())));
        }
        for &p in perm {
            match seen.get_mut(p) {
                Some(s) if !*s => *s = true,
                _ => {
                    return Err(invalid(format!("perm {perm:?} is not a permutation of 0..{rank}")));
                }
            }
        }
        Ok(perm.clone())
    }
}

impl OpDef for Transpose {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let dims = &x.ty.shape.0;
        let perm = self.perm(dims.len())?;
        let out = perm.iter().filter_map(|&p| dims.get(p).cloned()).collect();
        Ok(vec![TypeInfo::new(x.ty.dtype, Shape(out))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let perm = self.perm(x.shape().len())?;
        Ok(vec![map_tensor_same!(x, a => {
            a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()
        })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Dim};
    use proptest::prelude::*;

    fn run(t: &Transpose, x: &Tensor) -> Result<Tensor, OpError> {
        t.eval(&[Some(x)]).map(|mut v| v.remove(0))
    }

    #[test]
    fn default_reverses_axes() {
        let x = Tensor::from_vec(&[2, 3], vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let y = run(&Transpose { perm: None }, &x).unwrap();
        assert_eq!(y, Tensor::from_vec(&[3, 2], vec![1i64, 4, 2, 5, 3, 6]).unwrap());
    }

    #[test]
    fn explicit_perm_3d() {
        // y[i, j, k] = x[k, i, j] with x = np.arange(24).reshape(2, 3, 4).
        let x = Tensor::from_vec(&[2, 3, 4], (0..24).collect::<Vec<i32>>()).unwrap();
        let y = run(&Transpose { perm: Some(vec![1, 2, 0]) }, &x).unwrap();
        assert_eq!(y.shape(), &[3, 4, 2]);
        let a = y.view::<i32>().unwrap();
        assert_eq!((a[[1, 2, 0]], a[[1, 2, 1]]), (6, 18));
        assert_eq!((a[[0, 3, 0]], a[[0, 3, 1]]), (3, 15));
    }

    #[test]
    fn infer_keeps_symbols() {
        let ty = TypeInfo::new(DType::F16, Shape::parse("[batch, seq<=64, 8]").unwrap());
        let out = Transpose { perm: Some(vec![0, 2, 1]) }
            .infer(&[Some(InferIn { ty: &ty, value: None, sym: None })])
            .unwrap();
        assert_eq!(out[0].shape, Shape::parse("[batch, 8, seq<=64]").unwrap());
        assert_eq!(out[0].shape.0[2], Dim::sym("seq", Some(64)));
    }

    #[test]
    fn bad_perms_are_errors() {
        let x = Tensor::from_vec(&[2, 3], vec![0f32; 6]).unwrap();
        for perm in [vec![0], vec![0, 0], vec![0, 2], vec![1, 0, 2]] {
            let e = run(&Transpose { perm: Some(perm.clone()) }, &x).unwrap_err();
            assert!(matches!(e, OpError::Invalid(_)), "{perm:?}: {e}");
        }
        assert!(Transpose { perm: None }.eval(&[]).is_err());
    }

    #[test]
    fn empty_and_scalar() {
        let x = Tensor::from_vec::<bool>(&[0, 3], vec![]).unwrap();
        assert_eq!(run(&Transpose { perm: None }, &x).unwrap().shape(), &[3, 0]);
        let s = Tensor::scalar(5u8);
        assert_eq!(run(&Transpose { perm: None }, &s).unwrap(), s);
    }

    proptest! {
        #[test]
        fn matches_index_mapping(d0 in 1usize..4, d1 in 1usize..4, d2 in 1usize..4, p in 0usize..6) {
            let perms = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
            let perm = perms[p];
            let dims = [d0, d1, d2];
            let x = Tensor::from_vec(&dims, (0..(d0 * d1 * d2) as i64).collect()).unwrap();
            let y = run(&Transpose { perm: Some(perm.to_vec()) }, &x).unwrap();
            let y = y.view::<i64>().unwrap();
            for (o, &v) in y.indexed_iter() {
                let mut i = [0usize; 3];
                for k in 0..3 { i[perm[k]] = o[k]; }
                prop_assert_eq!(v, (i[0] * d1 * d2 + i[1] * d2 + i[2]) as i64);
            }
        }
    }
}
