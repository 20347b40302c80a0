//! Shape-only rearrangements: Reshape, Flatten, Squeeze, Unsqueeze.
//!
//! Also holds the helpers the shape-manipulating operator families share: reading integer
//! argument tensors, what inference knows of a shape argument, and the allocation check.

use super::{InferIn, OpDef, arity, req};
use crate::error::{invalid, unsupported};
use crate::{DType, Dim, OpError, Poly, Shape, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// The elements of `t`, an integer argument named `what`, which must be 1-D and of one of
/// `dtypes`.
pub(super) fn int_list(t: &Tensor, what: &str, dtypes: &[DType]) -> Result<Vec<i64>, OpError> {
    check_int_list_type(&TypeInfo::new(t.dtype(), t.static_shape()), what, dtypes)?;
    Ok(t.to_i64_vec()?)
}

/// Checks the type of a 1-D integer argument named `what`; returns its length.
pub(super) fn check_int_list_type(ty: &TypeInfo, what: &str, dtypes: &[DType]) -> Result<Dim, OpError> {
    if !dtypes.contains(&ty.dtype) {
        let names: Vec<&str> = dtypes.iter().map(|d| d.name()).collect();
        return Err(invalid(format!("{what} must be {}, got {}", names.join(" or "), ty.dtype)));
    }
    match ty.shape.0.as_slice() {
        [len] => Ok(len.clone()),
        _ => Err(invalid(format!("{what} must be 1-D, got shape {}", ty.shape))),
    }
}

/// What inference knows of a 1-D i64 shape argument named `what`: one entry per element, its
/// value when the argument is a constant. A symbolic length is unsupported (the output rank
/// would be unknown).
pub(super) fn shape_arg(inp: InferIn<'_>, what: &str) -> Result<Vec<Option<i64>>, OpError> {
    let len = check_int_list_type(inp.ty, what, &[DType::I64])?;
    if let Some(t) = inp.value {
        return Ok(int_list(t, what, &[DType::I64])?.into_iter().map(Some).collect());
    }
    match len.known() {
        Some(n) => Ok(vec![None; n]),
        None => Err(unsupported(format!("{what} has symbolic length {len}, so the output rank is unknown"))),
    }
}

/// What inference knows of a 1-D i64 shape argument named `what`, as polynomials: its
/// constant values, or its symbolic value (a shape computed from symbolic dims), else `None`
/// per element. A symbolic length is unsupported (the output rank would be unknown).
pub(super) fn shape_arg_polys(inp: InferIn<'_>, what: &str) -> Result<Vec<Option<Poly>>, OpError> {
    if let (None, Some(sym)) = (inp.value, inp.sym) {
        check_int_list_type(inp.ty, what, &[DType::I64])?;
        return Ok(sym.iter().cloned().map(Some).collect());
    }
    Ok(shape_arg(inp, what)?.into_iter().map(|v| v.map(Poly::constant)).collect())
}

/// A shape-argument value (`what` names the argument) as a size, rejecting negatives.
fn nonneg(v: i64, what: &str) -> Result<usize, OpError> {
    usize::try_from(v).map_err(|_| invalid(format!("{what} has negative dim {v}")))
}

/// Converts shape-argument values (`what` names the argument) to sizes, rejecting negatives.
pub(super) fn nonneg_dims(vals: &[i64], what: &str) -> Result<Vec<usize>, OpError> {
    vals.iter().map(|&v| nonneg(v, what)).collect()
}

/// What inference knows of the dims a 1-D i64 shape argument named `what` lists: the
/// constant values (checked non-negative), else unknown dims of the argument's length.
pub(super) fn shape_arg_dims(inp: InferIn<'_>, what: &str) -> Result<Vec<Dim>, OpError> {
    shape_arg_polys(inp, what)?
        .into_iter()
        .map(|v| match v.as_ref().map(|p| (p, p.as_const())) {
            Some((_, Some(c))) => nonneg(c, what).map(Dim::Known),
            Some((p, None)) => Ok(Dim::from_poly(p)),
            None => Ok(Dim::unknown()),
        })
        .collect()
}

/// Normalizes `axes` against `rank`, rejecting out-of-range and repeated axes.
pub(super) fn unique_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, OpError> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = crate::shape::normalize_axis(a, rank)?;
        if out.contains(&n) {
            return Err(invalid(format!("axis {a} is repeated in {axes:?}")));
        }
        out.push(n);
    }
    Ok(out)
}

/// The only input of a single-input shape operator.
fn single<T: Copy>(ins: &[Option<T>]) -> Result<T, OpError> {
    arity(ins, 1, 1)?;
    req(ins, 0)
}

/// Infers a shape-only operator whose output dims are `dims(input dims)`.
fn infer_with(
    x: InferIn<'_>,
    dims: impl FnOnce(&[Dim]) -> Result<Vec<Dim>, OpError>,
) -> Result<Vec<TypeInfo>, OpError> {
    Ok(vec![TypeInfo::new(x.ty.dtype, Shape(dims(&x.ty.shape.0)?))])
}

/// Evaluates a shape-only operator whose output dims are `dims(input dims)`.
fn eval_with(x: &Tensor, dims: impl FnOnce(&[Dim]) -> Result<Vec<Dim>, OpError>) -> Result<Vec<Tensor>, OpError> {
    let out = Shape(dims(&x.static_shape().0)?);
    let known =
        out.as_known().ok_or_else(|| invalid(format!("output shape {out} of a concrete input is not concrete")))?;
    Ok(vec![x.reshaped(&known)?])
}

/// Inputs `data`, `shape` (i64); `0` copies the input dim unless `allowzero`, `-1` is inferred.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reshape {
    /// A 0 in `shape` means size 0, not "copy".
    pub allowzero: bool,
}

/// The product of `dims` as a polynomial.
fn poly_product(dims: &[Dim]) -> Poly {
    dims.iter().fold(Poly::constant(1), |acc, d| acc.mul(&d.poly()))
}

impl Reshape {
    /// The output dims for `input` dims and the `shape` argument's values (constants or
    /// polynomials of symbols; `None` where unknown).
    fn resolve(&self, input: &[Dim], shape: &[Option<Poly>]) -> Result<Vec<Dim>, OpError> {
        let text = || {
            let parts: Vec<String> = shape.iter().map(|p| p.as_ref().map_or("?".into(), |p| p.to_string())).collect();
            format!("[{}]", parts.join(", "))
        };
        let mut out = Vec::with_capacity(shape.len());
        let mut infer_at = None;
        let mut unknown = false;
        for (i, v) in shape.iter().enumerate() {
            out.push(match v.as_ref().map(|p| (p, p.as_const())) {
                None => {
                    unknown = true;
                    Dim::unknown()
                }
                Some((_, Some(-1))) if infer_at.is_some() => {
                    return Err(invalid(format!("shape {} has more than one -1", text())));
                }
                Some((_, Some(-1))) => {
                    infer_at = Some(i);
                    Dim::Known(1)
                }
                Some((_, Some(0))) if !self.allowzero => input.get(i).cloned().ok_or_else(|| {
                    invalid(format!("shape[{i}] is 0 (copy the input dim) but the input has rank {}", input.len()))
                })?,
                Some((_, Some(v))) if v < -1 => return Err(invalid(format!("shape {} has dim {v} < -1", text()))),
                Some((_, Some(v))) => Dim::Known(v as usize),
                Some((p, None)) => Dim::from_poly(p).bounded_by(&input.iter().collect::<Vec<_>>()),
            });
        }
        if self.allowzero && infer_at.is_some() && shape.iter().any(|p| p.as_ref().and_then(Poly::as_const) == Some(0))
        {
            return Err(invalid(format!("shape {} has both 0 and -1 with allowzero", text())));
        }
        let mismatch = || invalid(format!("cannot reshape {} to {}", Shape(input.to_vec()), text()));
        let have = poly_product(input);
        let want = poly_product(&out);
        match infer_at {
            Some(_) if unknown => {}
            Some(i) => match (have.as_const(), want.as_const()) {
                (Some(h), Some(w)) if w > 0 && h % w == 0 => out[i] = Dim::Known((h / w) as usize),
                (Some(_), Some(_)) => return Err(mismatch()),
                _ => {
                    // Exact division as polynomials, else by a constant (exact at run time for
                    // a valid shape, so floor division is the quotient).
                    let q = have.div_exact(&want).or_else(|| want.as_const().and_then(|w| have.floor_div(w)));
                    let q = q.map_or_else(Dim::unknown, |q| Dim::from_poly(&q));
                    out[i] = q.bounded_by(&input.iter().collect::<Vec<_>>());
                }
            },
            None => {
                if let (Some(h), Some(w)) = (have.as_const(), want.as_const())
                    && h != w
                {
                    return Err(mismatch());
                }
            }
        }
        Ok(out)
    }
}

impl OpDef for Reshape {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (data, shape) = (req(ins, 0)?, req(ins, 1)?);
        let arg = shape_arg_polys(shape, "shape")?;
        infer_with(data, |d| self.resolve(d, &arg))
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (data, shape) = (req(ins, 0)?, req(ins, 1)?);
        let vals: Vec<Option<Poly>> =
            int_list(shape, "shape", &[DType::I64])?.into_iter().map(|v| Some(Poly::constant(v))).collect();
        eval_with(data, |d| self.resolve(d, &vals))
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

/// The product of `dims`: known when all are (unknown on overflow), else the polynomial.
fn dim_product(dims: &[Dim]) -> Dim {
    if dims.iter().all(|d| d.known().is_some()) {
        return dims
            .iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d.known()?))
            .map_or_else(Dim::unknown, Dim::Known);
    }
    Dim::from_poly(&poly_product(dims)).bounded_by(&dims.iter().collect::<Vec<_>>())
}

/// To 2-D: [prod(dims[..axis]), prod(dims[axis..])].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flatten {
    /// Split point (may be negative).
    pub axis: i64,
}

impl Flatten {
    fn dims(&self, input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        let r = input.len() as i64;
        let a = if self.axis < 0 { self.axis + r } else { self.axis };
        if !(0..=r).contains(&a) {
            return Err(invalid(format!("axis {} is out of range for rank {r}", self.axis)));
        }
        let (head, tail) = input.split_at(a as usize);
        Ok(vec![dim_product(head), dim_product(tail)])
    }
}

impl OpDef for Flatten {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        infer_with(single(ins)?, |d| self.dims(d))
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        eval_with(single(ins)?, |d| self.dims(d))
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

/// Removes the listed size-1 axes (all size-1 axes when `None`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Squeeze {
    /// Axes to remove (may be negative).
    pub axes: Option<Vec<i64>>,
}

impl Squeeze {
    /// The output dims. A listed symbolic axis is asserted to be 1 at run time.
    fn dims(&self, input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        let drop = match &self.axes {
            Some(axes) => unique_axes(axes, input.len())?,
            None => (0..input.len()).collect(),
        };
        let mut out = Vec::with_capacity(input.len());
        for (a, d) in input.iter().enumerate() {
            match d {
                _ if !drop.contains(&a) => out.push(d.clone()),
                Dim::Known(1) => {}
                Dim::Known(n) if self.axes.is_some() => {
                    return Err(invalid(format!("cannot squeeze axis {a} of size {n}")));
                }
                Dim::Known(_) => out.push(d.clone()),
                Dim::Sym { .. } if self.axes.is_some() => {}
                Dim::Sym { .. } => {
                    return Err(unsupported(format!(
                        "Squeeze without axes of a shape with symbolic dim {d} (axis {a})"
                    )));
                }
            }
        }
        Ok(out)
    }
}

impl OpDef for Squeeze {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        infer_with(single(ins)?, |d| self.dims(d))
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        eval_with(single(ins)?, |d| self.dims(d))
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

/// Inserts size-1 axes at the listed positions of the output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unsqueeze {
    /// Output positions (may be negative).
    pub axes: Vec<i64>,
}

impl Unsqueeze {
    fn dims(&self, input: &[Dim]) -> Result<Vec<Dim>, OpError> {
        let rank = input.len() + self.axes.len();
        let ones = unique_axes(&self.axes, rank)?;
        let mut rest = input.iter();
        (0..rank)
            .map(|a| {
                if ones.contains(&a) {
                    Ok(Dim::Known(1))
                } else {
                    rest.next().cloned().ok_or_else(|| invalid("unsqueeze rank mismatch"))
                }
            })
            .collect()
    }
}

impl OpDef for Unsqueeze {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        infer_with(single(ins)?, |d| self.dims(d))
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        eval_with(single(ins)?, |d| self.dims(d))
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(t: &str) -> Shape {
        Shape::parse(t).unwrap()
    }

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    fn arange(dims: &[usize]) -> Tensor {
        Tensor::from_vec(dims, (0..dims.iter().product::<usize>() as i32).collect()).unwrap()
    }

    fn eval1(op: &dyn OpDef, ins: &[&Tensor]) -> Result<Tensor, OpError> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        op.eval(&ins).map(|mut v| v.remove(0))
    }

    /// Infers with the data of shape `data` (f32) and, for Reshape, a shape argument.
    fn infer1(op: &dyn OpDef, data: &str, shape: Option<(&TypeInfo, Option<&Tensor>)>) -> Result<Shape, OpError> {
        let ty = TypeInfo::new(DType::F32, s(data));
        let mut ins = vec![Some(InferIn { ty: &ty, value: None, sym: None })];
        if let Some((ty, value)) = shape {
            ins.push(Some(InferIn { ty, value, sym: None }));
        }
        op.infer(&ins).map(|mut v| v.remove(0).shape)
    }

    fn infer_reshape(allowzero: bool, data: &str, shape: &[i64]) -> Result<Shape, OpError> {
        let t = i64s(shape);
        let ty = TypeInfo::new(DType::I64, t.static_shape());
        infer1(&Reshape { allowzero }, data, Some((&ty, Some(&t))))
    }

    #[test]
    fn reshape_onnx_cases() {
        let x = arange(&[2, 3, 4]);
        for (shape, want) in [
            (vec![4, 2, 3], vec![4, 2, 3]),
            (vec![2, 12], vec![2, 12]),
            (vec![24], vec![24]),
            (vec![2, -1, 2], vec![2, 6, 2]),
            (vec![-1, 2, 3, 4], vec![1, 2, 3, 4]),
            (vec![2, 0, 4, 1], vec![2, 3, 4, 1]),
            (vec![2, 0, 1, -1], vec![2, 3, 1, 4]),
        ] {
            let y = eval1(&Reshape { allowzero: false }, &[&x, &i64s(&shape)]).unwrap();
            assert_eq!(y.shape(), want.as_slice(), "{shape:?}");
            assert_eq!(y.reshaped(&[24]).unwrap(), x.reshaped(&[24]).unwrap());
        }
        let z = Tensor::from_vec::<f32>(&[0, 3, 4], vec![]).unwrap();
        let y = eval1(&Reshape { allowzero: true }, &[&z, &i64s(&[3, 4, 0])]).unwrap();
        assert_eq!(y.shape(), &[3, 4, 0]);
    }

    #[test]
    fn reshape_errors() {
        let x = arange(&[2, 3, 4]);
        let r = Reshape { allowzero: false };
        for (shape, msg) in [
            (vec![-1, -1], "more than one -1"),
            (vec![5, 5], "cannot reshape"),
            (vec![5, -1], "cannot reshape"),
            (vec![2, -2, -6], "< -1"),
            (vec![0, 0, 0, 0], "input has rank 3"),
        ] {
            let e = eval1(&r, &[&x, &i64s(&shape)]).unwrap_err();
            assert!(e.to_string().contains(msg), "{shape:?}: {e}");
        }
        let e = eval1(&Reshape { allowzero: true }, &[&x, &i64s(&[0, -1])]).unwrap_err();
        assert!(e.to_string().contains("both 0 and -1"), "{e}");
        let z = Tensor::from_vec::<f32>(&[0, 3], vec![]).unwrap();
        assert!(eval1(&r, &[&z, &i64s(&[0, -1])]).is_err());
        let i32_shape = Tensor::from_vec(&[1], vec![24i32]).unwrap();
        assert!(eval1(&r, &[&x, &i32_shape]).unwrap_err().to_string().contains("must be i64"));
        let two_d = Tensor::from_vec(&[1, 1], vec![24i64]).unwrap();
        assert!(eval1(&r, &[&x, &two_d]).unwrap_err().to_string().contains("1-D"));
        assert!(r.eval(&[Some(&x)]).is_err());
        assert!(r.eval(&[Some(&x), None]).is_err());
        let huge = i64s(&[i64::MAX, i64::MAX, 2]);
        assert!(eval1(&r, &[&x, &huge]).is_err());
    }

    #[test]
    fn reshape_infers_symbolic_dims() {
        let r = |d: &str, sh: &[i64]| infer_reshape(false, d, sh);
        assert_eq!(r("[batch, seq, 12, 64]", &[0, 0, -1]).unwrap(), s("[batch, seq, 768]"));
        assert_eq!(r("[batch, 12, 64]", &[-1, 768]).unwrap(), s("[batch, 768]"));
        assert_eq!(r("[b<=4, 12, 64]", &[-1, 768]).unwrap(), s("[b<=4, 768]"));
        assert_eq!(r("[batch, seq, 768]", &[-1, 768]).unwrap(), s("[batch*seq, 768]"));
        assert_eq!(r("[b<=2, s<=8, 768]", &[-1, 768]).unwrap(), s("[b*s<=16, 768]"));
        // Not divisible as polynomials: the quotient by the constant, exact at run time.
        assert_eq!(r("[batch*seq, 768]", &[2, -1, 768]).unwrap(), s("[2, floordiv(batch*seq,2), 768]"));
        assert_eq!(r("[batch, 768]", &[0, 12, 64]).unwrap(), s("[batch, 12, 64]"));
        assert_eq!(r("[2, 3, 4]", &[4, -1]).unwrap(), s("[4, 6]"));
        assert!(r("[2, 3, 4]", &[5, -1]).is_err());
        assert!(r("[2, 3, 4]", &[5, 5]).is_err());
    }

    #[test]
    fn reshape_infers_rank_from_non_constant_shape() {
        let ty = TypeInfo::new(DType::I64, s("[3]"));
        let out = infer1(&Reshape { allowzero: false }, "[2, 3]", Some((&ty, None))).unwrap();
        assert_eq!(out.rank(), 3);
        assert!(out.0.iter().all(Dim::is_unknown));
        let ty = TypeInfo::new(DType::I64, s("[n]"));
        let e = infer1(&Reshape { allowzero: false }, "[2, 3]", Some((&ty, None))).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)), "{e}");
    }

    #[test]
    fn flatten_all_axes() {
        let x = arange(&[2, 3, 4]);
        for (axis, want) in [(0, [1, 24]), (1, [2, 12]), (2, [6, 4]), (3, [24, 1]), (-1, [6, 4]), (-3, [1, 24])] {
            let y = eval1(&Flatten { axis }, &[&x]).unwrap();
            assert_eq!(y, x.reshaped(&want).unwrap(), "axis {axis}");
        }
        for axis in [4, -4] {
            assert!(eval1(&Flatten { axis }, &[&x]).is_err());
        }
        assert_eq!(eval1(&Flatten { axis: 0 }, &[&Tensor::scalar(1.5f32)]).unwrap().shape(), &[1, 1]);
        assert_eq!(infer1(&Flatten { axis: 1 }, "[batch, 768]", None).unwrap(), s("[batch, 768]"));
        assert_eq!(infer1(&Flatten { axis: 2 }, "[4, 2, n, 1]", None).unwrap(), s("[8, n]"));
        assert_eq!(infer1(&Flatten { axis: 2 }, "[batch, seq, 8]", None).unwrap(), s("[batch*seq, 8]"));
    }

    #[test]
    fn squeeze_cases() {
        let x = arange(&[1, 3, 1, 5]);
        let sq = |axes: Option<Vec<i64>>| eval1(&Squeeze { axes }, &[&x]);
        assert_eq!(sq(None).unwrap().shape(), &[3, 5]);
        assert_eq!(sq(Some(vec![0, -2])).unwrap(), x.reshaped(&[3, 5]).unwrap());
        assert_eq!(sq(Some(vec![2])).unwrap().shape(), &[1, 3, 5]);
        assert_eq!(sq(Some(vec![])).unwrap().shape(), &[1, 3, 1, 5]);
        assert!(sq(Some(vec![1])).unwrap_err().to_string().contains("axis 1 of size 3"));
        assert!(sq(Some(vec![0, -4])).unwrap_err().to_string().contains("repeated"));
        assert!(sq(Some(vec![4])).is_err());
        let e = infer1(&Squeeze { axes: None }, "[1, seq, 4]", None).unwrap_err();
        assert!(matches!(e, OpError::Unsupported(_)), "{e}");
        assert_eq!(infer1(&Squeeze { axes: Some(vec![0]) }, "[b, seq, 1]", None).unwrap(), s("[seq, 1]"));
        assert_eq!(infer1(&Squeeze { axes: None }, "[1, 7, 1]", None).unwrap(), s("[7]"));
    }

    #[test]
    fn unsqueeze_cases() {
        let x = arange(&[3, 4, 5]);
        let unsq = |axes: Vec<i64>| eval1(&Unsqueeze { axes }, &[&x]);
        assert_eq!(unsq(vec![0, 4]).unwrap(), x.reshaped(&[1, 3, 4, 5, 1]).unwrap());
        assert_eq!(unsq(vec![5, 4, 2]).unwrap().shape(), &[3, 4, 1, 5, 1, 1]);
        assert_eq!(unsq(vec![-2]).unwrap().shape(), &[3, 4, 1, 5]);
        assert_eq!(unsq(vec![]).unwrap().shape(), &[3, 4, 5]);
        assert!(unsq(vec![1, 1]).unwrap_err().to_string().contains("repeated"));
        assert!(unsq(vec![1, -4]).unwrap_err().to_string().contains("repeated"));
        assert!(unsq(vec![4]).is_err());
        assert!(unsq(vec![-5]).is_err());
        assert_eq!(eval1(&Unsqueeze { axes: vec![0] }, &[&Tensor::scalar(true)]).unwrap().shape(), &[1]);
        assert_eq!(infer1(&Unsqueeze { axes: vec![1] }, "[seq<=9]", None).unwrap(), s("[seq<=9, 1]"));
    }

    proptest! {
        #[test]
        fn reshape_to_any_factorization_keeps_data(
            dims in prop::collection::vec(1usize..4, 1..4),
            cut in 0usize..4,
            infer_first in any::<bool>(),
        ) {
            let x = arange(&dims);
            let n: usize = dims.iter().product();
            let cut = cut.min(dims.len());
            let a: usize = dims[..cut].iter().product();
            let target = if infer_first { vec![-1, (n / a) as i64] } else { vec![a as i64, -1] };
            let y = eval1(&Reshape { allowzero: false }, &[&x, &i64s(&target)]).unwrap();
            prop_assert_eq!(y.shape(), &[a, n / a]);
            let flat: Vec<i32> = y.view::<i32>().unwrap().iter().copied().collect();
            prop_assert_eq!(flat, (0..n as i32).collect::<Vec<_>>());
        }

        #[test]
        fn squeeze_undoes_unsqueeze(
            (dims, axes) in (prop::collection::vec(2usize..4, 0..3), 0usize..3).prop_flat_map(|(d, k)| {
                let out_rank = (d.len() + k) as i64;
                (Just(d), prop::sample::subsequence((0..out_rank).collect::<Vec<_>>(), k))
            }),
            negate in any::<bool>(),
        ) {
            let x = arange(&dims);
            let rank = (dims.len() + axes.len()) as i64;
            let axes: Vec<i64> = axes.into_iter().map(|a| if negate { a - rank } else { a }).collect();
            let u = eval1(&Unsqueeze { axes: axes.clone() }, &[&x]).unwrap();
            prop_assert_eq!(u.shape().iter().filter(|&&d| d == 1).count(), axes.len());
            prop_assert_eq!(eval1(&Squeeze { axes: Some(axes) }, &[&u]).unwrap(), x.clone());
            prop_assert_eq!(eval1(&Squeeze { axes: None }, &[&u]).unwrap(), x);
        }
    }
}
