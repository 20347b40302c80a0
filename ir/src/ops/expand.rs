//! Expand.

use super::broadcast::{broadcast_dims, broadcast_shapes, view_as};
use super::check_alloc;
use super::reshape::{int_list, nonneg_dims, shape_arg_dims};
use super::{InferIn, OpDef, arity, req};
use crate::{DType, OpError, Shape, Tensor, TypeInfo, map_tensor_same};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `shape` (i64); bidirectional broadcast of data against shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expand {}

impl OpDef for Expand {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (data, shape) = (req(ins, 0)?, req(ins, 1)?);
        let target = shape_arg_dims(shape, "shape")?;
        // An unknown target dim against a known data dim > 1 must be 1 or that dim, so the
        // broadcast keeps the data dim.
        let out = broadcast_shapes(&data.ty.shape, &Shape(target))?;
        Ok(vec![TypeInfo::new(data.ty.dtype, out)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (data, shape) = (req(ins, 0)?, req(ins, 1)?);
        let target = nonneg_dims(&int_list(shape, "shape", &[DType::I64])?, "shape")?;
        let out = broadcast_dims(data.shape(), &target)?;
        check_alloc(&out, data.dtype().size())?;
        Ok(vec![map_tensor_same!(data, a => view_as(a, &out)?.to_owned())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dim;
    use proptest::prelude::*;

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    fn expand(x: &Tensor, shape: &[i64]) -> Result<Tensor, OpError> {
        Expand {}.eval(&[Some(x), Some(&i64s(shape))]).map(|mut v| v.remove(0))
    }

    fn infer(data: &str, shape: (&str, Option<&[i64]>)) -> Result<Shape, OpError> {
        let dty = TypeInfo::new(DType::F32, Shape::parse(data).unwrap());
        let sty = TypeInfo::new(DType::I64, Shape::parse(shape.0).unwrap());
        let value = shape.1.map(i64s);
        let ins = [
            Some(InferIn { ty: &dty, value: None, sym: None }),
            Some(InferIn { ty: &sty, value: value.as_ref(), sym: None }),
        ];
        Expand {}.infer(&ins).map(|mut v| v.remove(0).shape)
    }

    #[test]
    fn onnx_cases() {
        let x = Tensor::from_vec(&[3, 1], vec![1f32, 2., 3.]).unwrap();
        let y = expand(&x, &[2, 1, 6]).unwrap();
        assert_eq!(y.shape(), &[2, 3, 6]);
        let row = |v: f32| std::iter::repeat_n(v, 6);
        let want: Vec<f32> = [1., 2., 3., 1., 2., 3.].into_iter().flat_map(row).collect();
        assert_eq!(y, Tensor::from_vec(&[2, 3, 6], want).unwrap());
        let y = expand(&x, &[3, 4]).unwrap();
        assert_eq!(y.to_f32().iter().copied().collect::<Vec<_>>(), [1., 1., 1., 1., 2., 2., 2., 2., 3., 3., 3., 3.]);
    }

    #[test]
    fn ones_in_shape_keep_data_dims() {
        let x = Tensor::from_vec(&[3, 1], vec![1i8, 2, 3]).unwrap();
        assert_eq!(expand(&x, &[1, 1]).unwrap(), x);
        assert_eq!(expand(&x, &[]).unwrap(), x);
        assert_eq!(expand(&x, &[2, 1, 1]).unwrap().shape(), &[2, 3, 1]);
        assert_eq!(expand(&Tensor::scalar(true), &[2, 2]).unwrap(), Tensor::from_vec(&[2, 2], vec![true; 4]).unwrap());
        assert_eq!(expand(&x, &[0, 3, 1]).unwrap().shape(), &[0, 3, 1]);
    }

    #[test]
    fn errors() {
        let x = Tensor::from_vec(&[3, 1], vec![1f32, 2., 3.]).unwrap();
        assert!(expand(&x, &[2, 4]).unwrap_err().to_string().contains("broadcast"));
        assert!(expand(&x, &[-1, 4]).unwrap_err().to_string().contains("negative"));
        let i32_shape = Tensor::from_vec(&[1], vec![3i32]).unwrap();
        assert!(Expand {}.eval(&[Some(&x), Some(&i32_shape)]).is_err());
        assert!(expand(&x, &[1 << 20, 3, 1 << 20]).unwrap_err().to_string().contains("too large"));
        assert!(Expand {}.eval(&[Some(&x)]).is_err());
    }

    #[test]
    fn infers_known_and_run_time_shapes() {
        let s = |t: &str| Shape::parse(t).unwrap();
        assert_eq!(infer("[3, 1]", ("[3]", Some(&[2, 1, 6]))).unwrap(), s("[2, 3, 6]"));
        assert_eq!(infer("[seq, 1]", ("[2]", Some(&[1, 8]))).unwrap(), s("[seq, 8]"));
        let out = infer("[4, 1]", ("[3]", None)).unwrap();
        assert!(out.0[0].is_unknown() && out.0[1] == Dim::Known(4) && out.0[2].is_unknown());
        assert!(matches!(infer("[4]", ("[n]", None)), Err(OpError::Unsupported(_))));
        assert!(infer("[4]", ("[1]", Some(&[-2]))).is_err());
        assert!(infer("[4]", ("[1]", Some(&[3]))).is_err());
    }

    proptest! {
        #[test]
        fn matches_index_mapping(
            data in prop::collection::vec(prop_oneof![Just(1usize), Just(2), Just(3)], 0..3),
            extra in prop::collection::vec(1usize..3, 0..2),
            pick in prop::collection::vec(any::<bool>(), 3),
        ) {
            // Target: leading extra dims, then per data dim either the data dim, 1, or (for a
            // data dim of 1) a larger size.
            let tail: Vec<usize> = data.iter().zip(&pick)
                .map(|(&d, &p)| if d == 1 && p { 3 } else if p { 1 } else { d }).collect();
            let target: Vec<usize> = extra.iter().copied().chain(tail).collect();
            let x = Tensor::from_vec(&data, (0..data.iter().product::<usize>() as i64).collect()).unwrap();
            let y = expand(&x, &target.iter().map(|&d| d as i64).collect::<Vec<_>>()).unwrap();
            let want_dims: Vec<usize> = extra.iter().copied()
                .chain(data.iter().zip(&target[extra.len()..]).map(|(&d, &t)| d.max(t))).collect();
            prop_assert_eq!(y.shape(), want_dims.as_slice());
            let xa = x.view::<i64>().unwrap();
            for (o, &v) in y.view::<i64>().unwrap().indexed_iter() {
                let src: Vec<usize> = (0..data.len())
                    .map(|k| if data[k] == 1 { 0 } else { o[extra.len() + k] }).collect();
                prop_assert_eq!(v, xa[src.as_slice()]);
            }
        }
    }
}
