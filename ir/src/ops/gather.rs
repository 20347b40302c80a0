//! Gather.

use super::check_alloc;
use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{DType, OpError, Shape, Tensor, TypeInfo, map_tensor_same};
use ndarray::{ArrayD, Axis, IxDyn};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `indices` (i32/i64, negative counts from the end).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gather {
    /// The axis (may be negative).
    pub axis: i64,
}

impl Gather {
    /// The output shape, `data[..axis] ++ indices ++ data[axis + 1..]`, and the axis.
    fn shape(&self, data: &TypeInfo, indices: &TypeInfo) -> Result<(Shape, usize), OpError> {
        if !matches!(indices.dtype, DType::I32 | DType::I64) {
            return Err(invalid(format!("indices must be i32 or i64, got {}", indices.dtype)));
        }
        let axis = data.shape.axis(self.axis)?;
        let (head, tail) = data.shape.0.split_at(axis);
        let dims = [head, &indices.shape.0, tail.get(1..).unwrap_or_default()].concat();
        Ok((Shape(dims), axis))
    }
}

/// The indices normalized into `0..n`, or an error naming the first out-of-range value.
fn normalize(indices: &Tensor, axis: usize, n: usize) -> Result<Vec<usize>, OpError> {
    indices
        .to_i64_vec()?
        .into_iter()
        .map(|v| {
            let w = if v < 0 { i128::from(v) + n as i128 } else { i128::from(v) };
            usize::try_from(w)
                .ok()
                .filter(|&w| w < n)
                .ok_or_else(|| invalid(format!("indices value {v} is out of range for axis {axis} of size {n}")))
        })
        .collect()
}

fn gather_typed<T: Clone>(a: &ArrayD<T>, axis: usize, idx: &[usize], out: &[usize]) -> Result<ArrayD<T>, OpError> {
    let flat = a.select(Axis(axis), idx);
    let v: Vec<T> = flat.iter().cloned().collect();
    ArrayD::from_shape_vec(IxDyn(out), v).map_err(|e| invalid(e.to_string()))
}

impl OpDef for Gather {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (data, indices) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        Ok(vec![TypeInfo::new(data.dtype, self.shape(data, indices)?.0)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (data, indices) = (req(ins, 0)?, req(ins, 1)?);
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let (shape, axis) = self.shape(&ty(data), &ty(indices))?;
        let out = shape.as_known().ok_or_else(|| invalid("gather output size overflows"))?;
        check_alloc(&out, data.dtype().size())?;
        let idx = normalize(indices, axis, data.shape()[axis])?;
        Ok(vec![map_tensor_same!(data, a => gather_typed(a, axis, &idx, &out)?)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arange(dims: &[usize]) -> Tensor {
        Tensor::from_vec(dims, (0..dims.iter().product::<usize>() as i64).collect()).unwrap()
    }

    fn gather(axis: i64, data: &Tensor, idx: &Tensor) -> Result<Tensor, OpError> {
        Gather { axis }.eval(&[Some(data), Some(idx)]).map(|mut v| v.remove(0))
    }

    #[test]
    fn gathers_rows_and_columns() {
        let x = arange(&[3, 4]);
        let rows = Tensor::from_vec(&[2, 2], vec![0i64, 1, 1, 2]).unwrap();
        let y = gather(0, &x, &rows).unwrap();
        assert_eq!(y.shape(), &[2, 2, 4]);
        assert_eq!(y.to_i64_vec().unwrap(), [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11]);
        let cols = Tensor::from_vec(&[1, 2], vec![0i32, 2]).unwrap();
        let y = gather(-1, &x, &cols).unwrap();
        assert_eq!(y.shape(), &[3, 1, 2]);
        assert_eq!(y.to_i64_vec().unwrap(), [0, 2, 4, 6, 8, 10]);
    }

    #[test]
    fn negative_scalar_and_empty_indices() {
        let x = Tensor::from_vec(&[10], (0..10).map(|v| v as f32).collect()).unwrap();
        let idx = Tensor::from_vec(&[3], vec![0i64, -9, -10]).unwrap();
        assert_eq!(gather(0, &x, &idx).unwrap(), Tensor::from_vec(&[3], vec![0f32, 1., 0.]).unwrap());
        let m = arange(&[3, 4]);
        let y = gather(1, &m, &Tensor::scalar(3i32)).unwrap();
        assert_eq!((y.shape(), y.to_i64_vec().unwrap()), (&[3][..], vec![3, 7, 11]));
        let none = Tensor::from_vec::<i64>(&[0], vec![]).unwrap();
        assert_eq!(gather(1, &m, &none).unwrap().shape(), &[3, 0]);
        let e = Tensor::from_vec::<bool>(&[0, 2], vec![]).unwrap();
        assert_eq!(gather(1, &e, &Tensor::scalar(1i64)).unwrap().shape(), &[0]);
    }

    #[test]
    fn errors() {
        let m = arange(&[3, 4]);
        let e = gather(1, &m, &Tensor::from_vec(&[2], vec![1i64, 4]).unwrap()).unwrap_err();
        assert_eq!(e.to_string(), "indices value 4 is out of range for axis 1 of size 4");
        let e = gather(0, &m, &Tensor::scalar(-4i32)).unwrap_err();
        assert_eq!(e.to_string(), "indices value -4 is out of range for axis 0 of size 3");
        assert!(gather(0, &m, &Tensor::scalar(i64::MIN)).is_err());
        assert!(gather(0, &m, &Tensor::scalar(1f32)).unwrap_err().to_string().contains("i32 or i64"));
        assert!(gather(2, &m, &Tensor::scalar(0i64)).is_err());
        assert!(gather(0, &Tensor::scalar(1i64), &Tensor::scalar(0i64)).is_err());
        let empty = Tensor::from_vec::<i64>(&[0], vec![]).unwrap();
        assert!(gather(0, &empty, &Tensor::scalar(0i64)).is_err());
        assert!(Gather { axis: 0 }.eval(&[Some(&m)]).is_err());
        // A huge output is refused before allocating.
        let wide = Tensor::from_vec(&[1, 1 << 20], vec![0i64; 1 << 20]).unwrap();
        let many = Tensor::from_vec(&[1 << 15], vec![0i64; 1 << 15]).unwrap();
        assert!(gather(0, &wide, &many).unwrap_err().to_string().contains("too large"));
    }

    #[test]
    fn infers_embedding_lookup() {
        let table = TypeInfo::new(crate::DType::F16, Shape::parse("[32000, 768]").unwrap());
        let ids = TypeInfo::new(DType::I64, Shape::parse("[batch, seq<=128]").unwrap());
        let out = Gather { axis: 0 }
            .infer(&[
                Some(InferIn { ty: &table, value: None, sym: None }),
                Some(InferIn { ty: &ids, value: None, sym: None }),
            ])
            .unwrap();
        assert_eq!(out[0], TypeInfo::new(DType::F16, Shape::parse("[batch, seq<=128, 768]").unwrap()));
    }

    proptest! {
        #[test]
        fn matches_take(
            d in prop::collection::vec(1usize..4, 3),
            axis in 0usize..3,
            idx in prop::collection::vec(-3i64..3, 0..4),
        ) {
            let x = arange(&d);
            let n = d[axis] as i64;
            let t = Tensor::from_vec(&[idx.len()], idx.clone()).unwrap();
            let got = gather(axis as i64, &x, &t);
            if idx.iter().any(|&i| i < -n || i >= n) {
                prop_assert!(got.is_err());
                return Ok(());
            }
            let got = got.unwrap();
            let mut want_dims = d.clone();
            want_dims[axis] = idx.len();
            prop_assert_eq!(got.shape(), want_dims.as_slice());
            let strides = [d[1] * d[2], d[2], 1];
            let a = got.view::<i64>().unwrap();
            for (o, &v) in a.indexed_iter() {
                let mut i = [o[0], o[1], o[2]];
                i[axis] = idx[i[axis]].rem_euclid(n) as usize;
                prop_assert_eq!(v, (0..3).map(|k| i[k] * strides[k]).sum::<usize>() as i64);
            }
        }
    }
}
