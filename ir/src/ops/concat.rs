//! Concat and Split.

use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{Dim, Element, OpError, Poly, Shape, Tensor, TypeInfo, map_tensor, map_tensor_same};
use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};

/// Joins all inputs along `axis`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Concat {
    /// The axis (may be negative).
    pub axis: i64,
}

/// The dim two inputs agree on off the concat axis: a known size wins over a symbol (which
/// must equal it at run time); two different symbols keep the first.
fn unify(a: &Dim, b: &Dim, axis: usize) -> Result<Dim, OpError> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(invalid(format!("inputs disagree on axis {axis}: {x} vs {y}"))),
        (Dim::Sym { .. }, Dim::Known(_)) => Ok(b.clone()),
        _ => Ok(a.clone()),
    }
}

/// The sum of `dims`: known when all are, else their polynomial sum.
fn dim_sum(dims: &[&Dim]) -> Result<Dim, OpError> {
    if dims.iter().all(|d| d.known().is_some()) {
        let n = dims.iter().try_fold(0usize, |acc, d| acc.checked_add(d.known().unwrap_or(0)));
        return n.map(Dim::Known).ok_or_else(|| invalid("concat size overflows"));
    }
    Ok(Dim::from_poly(&dims.iter().fold(crate::Poly::constant(0), |acc, d| acc.add(&d.poly()))).bounded_by(dims))
}

impl Concat {
    /// The output shape for the input shapes.
    fn shape(&self, shapes: &[&Shape]) -> Result<Shape, OpError> {
        let first = shapes.first().ok_or_else(|| invalid("Concat needs at least one input"))?;
        let rank = first.rank();
        let axis = first.axis(self.axis)?;
        if let Some(s) = shapes.iter().find(|s| s.rank() != rank) {
            return Err(invalid(format!("inputs have different ranks: {first} vs {s}")));
        }
        let mut out = first.0.clone();
        for s in &shapes[1..] {
            for (a, (o, d)) in out.iter_mut().zip(&s.0).enumerate() {
                if a != axis {
                    *o = unify(o, d, a)?;
                }
            }
        }
        let along: Vec<&Dim> = shapes.iter().filter_map(|s| s.0.get(axis)).collect();
        out[axis] = dim_sum(&along)?;
        Ok(Shape(out))
    }
}

/// All inputs (at least one), required to be present and of one dtype.
fn same_dtype<T: Copy>(ins: &[Option<T>], dtype: impl Fn(T) -> crate::DType) -> Result<(T, Vec<T>), OpError> {
    let all: Vec<T> = (0..ins.len()).map(|i| req(ins, i)).collect::<Result<_, _>>()?;
    let &first = all.first().ok_or_else(|| invalid("Concat needs at least one input"))?;
    if let Some(&o) = all.iter().find(|&&t| dtype(t) != dtype(first)) {
        return Err(invalid(format!("inputs have different dtypes: {} vs {}", dtype(first), dtype(o))));
    }
    Ok((first, all))
}

fn concat_typed<T: Element>(first: &ArrayD<T>, rest: &[&Tensor], axis: usize) -> Result<Tensor, OpError> {
    let mut views = vec![first.view()];
    for t in rest {
        views.push(t.view::<T>().ok_or_else(|| invalid("inputs have different dtypes"))?.view());
    }
    let out = ndarray::concatenate(Axis(axis), &views).map_err(|e| invalid(e.to_string()))?;
    Ok(T::wrap(out))
}

impl OpDef for Concat {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let (first, all) = same_dtype(ins, |i| i.ty.dtype)?;
        let shapes: Vec<&Shape> = all.iter().map(|i| &i.ty.shape).collect();
        Ok(vec![TypeInfo::new(first.ty.dtype, self.shape(&shapes)?)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let (first, all) = same_dtype(ins, |t| t.dtype())?;
        let shapes: Vec<Shape> = all.iter().map(|t| t.static_shape()).collect();
        let out = self.shape(&shapes.iter().collect::<Vec<_>>())?;
        out.check_size(first.dtype().size())?;
        let axis = out.axis(self.axis)?;
        Ok(vec![map_tensor!(first, a => concat_typed(a, &all[1..], axis)?)])
    }
}

/// Splits along `axis` into `num_outputs` parts of the given sizes, or equal parts (the last
/// smaller when the size does not divide).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// The axis (may be negative).
    pub axis: i64,
    /// Part sizes; `None` = equal parts.
    pub sizes: Option<Vec<usize>>,
    /// Number of outputs.
    pub num_outputs: usize,
}

impl Split {
    /// The part sizes for an axis of `size` (opset 18: parts of `ceil(size / n)`, the last
    /// one smaller).
    fn sizes(&self, size: usize) -> Result<Vec<usize>, OpError> {
        let n = self.num_outputs;
        if n == 0 {
            return Err(invalid("Split needs at least one output"));
        }
        if let Some(s) = &self.sizes {
            let total = s.iter().try_fold(0usize, |a, &b| a.checked_add(b));
            if s.len() != n || total != Some(size) {
                return Err(invalid(format!("split sizes {s:?} must be {n} sizes summing to the axis size {size}")));
            }
            return Ok(s.clone());
        }
        let chunk = size.div_ceil(n);
        let last = (n - 1)
            .checked_mul(chunk)
            .and_then(|head| size.checked_sub(head))
            .ok_or_else(|| invalid(format!("axis size {size} cannot be split into {n} parts of {chunk}")))?;
        let mut out = vec![chunk; n - 1];
        out.push(last);
        Ok(out)
    }

    /// The output dims along the axis for an axis dim `d`.
    fn part_dims(&self, d: &Dim) -> Result<Vec<Dim>, OpError> {
        match (d, &self.sizes) {
            _ if self.num_outputs == 0 => Err(invalid("Split needs at least one output")),
            (Dim::Known(n), _) => Ok(self.sizes(*n)?.into_iter().map(Dim::Known).collect()),
            (_, Some(s)) if s.len() == self.num_outputs => Ok(s.iter().map(|&k| Dim::Known(k)).collect()),
            (_, Some(s)) => Err(invalid(format!("{} split sizes for {} outputs", s.len(), self.num_outputs))),
            (_, None) if self.num_outputs == 1 => Ok(vec![d.clone()]),
            // A symbolic axis: parts of ceil(d / n), the last one what remains.
            (_, None) => {
                let n = self.num_outputs as i64;
                let chunk = d.poly().add(&Poly::constant(n - 1)).floor_div(n).ok_or_else(|| invalid("no parts"))?;
                let last = d.poly().sub(&chunk.scale(n - 1));
                let mut out = vec![Dim::from_poly(&chunk); self.num_outputs - 1];
                out.push(Dim::from_poly(&last));
                Ok(out)
            }
        }
    }
}

fn split_typed<T: Clone>(a: &ArrayD<T>, axis: usize, start: usize, len: usize) -> ArrayD<T> {
    a.slice_axis(Axis(axis), ndarray::Slice::from(start..start + len)).to_owned()
}

impl OpDef for Split {
    fn num_outputs(&self) -> usize {
        self.num_outputs
    }

    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?.ty;
        let axis = x.shape.axis(self.axis)?;
        let parts = self.part_dims(&x.shape.0[axis])?;
        Ok(parts
            .into_iter()
            .map(|d| {
                let mut s = x.shape.clone();
                s.0[axis] = d;
                TypeInfo::new(x.dtype, s)
            })
            .collect())
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let axis = x.static_shape().axis(self.axis)?;
        let sizes = self.sizes(x.shape()[axis])?;
        let starts = sizes.iter().scan(0, |at, &k| Some(std::mem::replace(at, *at + k)));
        Ok(starts.zip(&sizes).map(|(s, &k)| map_tensor_same!(x, a => split_typed(a, axis, s, k))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use proptest::prelude::*;

    fn f32s(dims: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(dims, v.to_vec()).unwrap()
    }

    fn concat(axis: i64, ins: &[&Tensor]) -> Result<Tensor, OpError> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        Concat { axis }.eval(&ins).map(|mut v| v.remove(0))
    }

    fn infer_concat(axis: i64, shapes: &[&str]) -> Result<Shape, OpError> {
        let tys: Vec<TypeInfo> = shapes.iter().map(|s| TypeInfo::new(DType::F32, Shape::parse(s).unwrap())).collect();
        let ins: Vec<Option<InferIn<'_>>> = tys.iter().map(|ty| Some(InferIn { ty, value: None, sym: None })).collect();
        Concat { axis }.infer(&ins).map(|mut v| v.remove(0).shape)
    }

    fn split(axis: i64, sizes: Option<Vec<usize>>, n: usize, x: &Tensor) -> Result<Vec<Tensor>, OpError> {
        Split { axis, sizes, num_outputs: n }.eval(&[Some(x)])
    }

    #[test]
    fn concat_2d_every_axis() {
        let a = f32s(&[2, 2], &[1., 2., 3., 4.]);
        let b = f32s(&[2, 2], &[5., 6., 7., 8.]);
        let rows = f32s(&[4, 2], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        let cols = f32s(&[2, 4], &[1., 2., 5., 6., 3., 4., 7., 8.]);
        assert_eq!(concat(0, &[&a, &b]).unwrap(), rows);
        assert_eq!(concat(-2, &[&a, &b]).unwrap(), rows);
        assert_eq!(concat(1, &[&a, &b]).unwrap(), cols);
        assert_eq!(concat(-1, &[&a, &b]).unwrap(), cols);
        assert_eq!(concat(0, &[&a]).unwrap(), a);
    }

    #[test]
    fn concat_with_empty_inputs() {
        let e = Tensor::from_vec::<i64>(&[0, 3], vec![]).unwrap();
        let x = Tensor::from_vec(&[2, 3], vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(concat(0, &[&e, &x, &e]).unwrap(), x);
        assert_eq!(concat(0, &[&e, &e]).unwrap().shape(), &[0, 3]);
    }

    #[test]
    fn concat_errors() {
        let a = f32s(&[2, 2], &[0.; 4]);
        let b = f32s(&[3, 3], &[0.; 9]);
        assert!(concat(0, &[&a, &b]).unwrap_err().to_string().contains("axis 1: 2 vs 3"));
        assert!(concat(2, &[&a, &a]).is_err());
        assert!(concat(0, &[&a, &f32s(&[4], &[0.; 4])]).unwrap_err().to_string().contains("ranks"));
        let i = Tensor::from_vec(&[2, 2], vec![0i32; 4]).unwrap();
        assert!(concat(0, &[&a, &i]).unwrap_err().to_string().contains("dtypes"));
        assert!(concat(0, &[&Tensor::scalar(1f32), &Tensor::scalar(2f32)]).is_err());
        assert!(concat(0, &[]).is_err());
        assert!(Concat { axis: 0 }.eval(&[Some(&a), None]).is_err());
    }

    #[test]
    fn concat_infers_symbolic_dims() {
        let s = |t: &str| Shape::parse(t).unwrap();
        assert_eq!(infer_concat(0, &["[2, seq]", "[3, seq]"]).unwrap(), s("[5, seq]"));
        assert_eq!(infer_concat(1, &["[b, 0]", "[b, n<=8]"]).unwrap(), s("[b, n<=8]"));
        assert_eq!(infer_concat(1, &["[s, 3]", "[4, 3]"]).unwrap(), s("[4, 6]"));
        assert_eq!(infer_concat(-1, &["[b, past<=511]", "[b, 1]"]).unwrap(), s("[b, past+1<=512]"));
        assert_eq!(infer_concat(0, &["[past]", "[seq]"]).unwrap(), s("[past+seq]"));
        assert!(infer_concat(0, &["[2, 3]", "[2, 4]"]).is_err());
    }

    #[test]
    fn split_onnx_cases() {
        let x = f32s(&[6], &[1., 2., 3., 4., 5., 6.]);
        let parts = split(0, None, 3, &x).unwrap();
        assert_eq!(parts, vec![f32s(&[2], &[1., 2.]), f32s(&[2], &[3., 4.]), f32s(&[2], &[5., 6.])]);
        let parts = split(0, Some(vec![2, 4]), 2, &x).unwrap();
        assert_eq!(parts, vec![f32s(&[2], &[1., 2.]), f32s(&[4], &[3., 4., 5., 6.])]);
        let x2 = f32s(&[2, 6], &(1..=12).map(|v| v as f32).collect::<Vec<_>>());
        let parts = split(1, None, 2, &x2).unwrap();
        assert_eq!(parts[1], f32s(&[2, 3], &[4., 5., 6., 10., 11., 12.]));
        let seven = f32s(&[7], &[1., 2., 3., 4., 5., 6., 7.]);
        let sizes: Vec<usize> = split(0, None, 4, &seven).unwrap().iter().map(|t| t.len()).collect();
        assert_eq!(sizes, vec![2, 2, 2, 1]);
        let x8 = f32s(&[2, 8], &(1..=16).map(|v| v as f32).collect::<Vec<_>>());
        let parts = split(-1, None, 3, &x8).unwrap();
        assert_eq!(parts[2], f32s(&[2, 2], &[7., 8., 15., 16.]));
        let empty = f32s(&[0], &[]);
        let parts = split(0, Some(vec![0, 0, 0]), 3, &empty).unwrap();
        assert!(parts.iter().all(|p| p.shape() == [0]) && parts.len() == 3);
    }

    #[test]
    fn split_errors() {
        let x = f32s(&[5], &[0.; 5]);
        assert!(split(0, Some(vec![2, 2]), 2, &x).unwrap_err().to_string().contains("summing"));
        assert!(split(0, Some(vec![2, 3]), 3, &x).is_err());
        assert!(split(0, None, 4, &x).unwrap_err().to_string().contains("cannot be split"));
        assert!(split(0, None, 0, &x).is_err());
        assert!(split(1, None, 1, &x).is_err());
        assert!(Split { axis: 0, sizes: None, num_outputs: 1 }.eval(&[]).is_err());
        // 4 into 3 parts of 2 leaves an empty last part, as the ONNX reference does.
        let four = f32s(&[4], &[0.; 4]);
        let sizes: Vec<usize> = split(0, None, 3, &four).unwrap().iter().map(|t| t.len()).collect();
        assert_eq!(sizes, vec![2, 2, 0]);
    }

    #[test]
    fn split_infers_symbolic_dims() {
        let ty = TypeInfo::new(DType::F16, Shape::parse("[b, seq, 12]").unwrap());
        let ins = [Some(InferIn { ty: &ty, value: None, sym: None })];
        let sp = |axis, sizes, n| Split { axis, sizes, num_outputs: n };
        let outs = sp(-1, None, 3).infer(&ins).unwrap();
        assert_eq!(outs.len(), 3);
        assert!(outs.iter().all(|t| t.shape == Shape::parse("[b, seq, 4]").unwrap() && t.dtype == DType::F16));
        let outs = sp(1, Some(vec![1, 3]), 2).infer(&ins).unwrap();
        assert_eq!(outs[1].shape, Shape::parse("[b, 3, 12]").unwrap());
        // Equal parts of a symbolic axis: ceil(seq / 3) each, the last one what remains.
        let outs = sp(1, None, 3).infer(&ins).unwrap();
        let dims: Vec<String> = outs.iter().map(|t| t.shape.0[1].to_string()).collect();
        assert_eq!(dims, ["floordiv(seq+2,3)", "floordiv(seq+2,3)", "-2*floordiv(seq+2,3)+seq"]);
        assert_eq!(sp(1, None, 1).infer(&ins).unwrap()[0], ty);
        assert_eq!(sp(1, None, 5).num_outputs(), 5);
        assert!(sp(3, None, 2).infer(&ins).is_err());
        assert!(sp(1, None, 0).infer(&ins).is_err());
        assert!(sp(1, Some(vec![]), 0).infer(&ins).is_err());
    }

    proptest! {
        #[test]
        fn split_then_concat_is_identity(
            rows in 0usize..4, cols in 0usize..9, parts in 1usize..5, axis in 0i64..2, equal in any::<bool>(),
        ) {
            let x = Tensor::from_vec(&[rows, cols], (0..(rows * cols) as i32).collect()).unwrap();
            let size = if axis == 0 { rows } else { cols };
            // Independent sizes: k parts of floor/ceil, spread so they always sum to `size`.
            let sizes = (!equal).then(|| (0..parts).map(|i| (size + i) / parts).collect::<Vec<_>>());
            let Ok(outs) = split(axis, sizes.clone(), parts, &x) else {
                // Only the ceil rule can fail, when (parts - 1) * ceil(size / parts) > size.
                prop_assert!(sizes.is_none() && (parts - 1) * size.div_ceil(parts) > size);
                return Ok(());
            };
            prop_assert_eq!(outs.len(), parts);
            if let Some(s) = sizes {
                let got: Vec<usize> = outs.iter().map(|t| t.shape()[axis as usize]).collect();
                prop_assert_eq!(got, s);
            }
            let refs: Vec<&Tensor> = outs.iter().collect();
            prop_assert_eq!(concat(axis, &refs).unwrap(), x);
        }
    }
}
