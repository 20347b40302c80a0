//! Reductions (mean, sum, max, L2) and Softmax.
//!
//! Float reductions accumulate in f64 and round once to the input's dtype. Integer reductions
//! follow NumPy as ONNX's reference does: sums wrap at the input's width, Mean divides the
//! wrapped sum as a float and truncates, L2 truncates `sqrt(Σx²)`.

use super::elementwise::{array, cast_f64, cast_i64, to_i64_array};
use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::shape::normalize_axis;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};

/// Which reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Euclidean norm `sqrt(Σx²)`.
    L2,
}

/// Reduce over `axes` (all axes when `None`), keeping reduced axes as 1 when `keepdims`.
///
/// `Some(vec![])` reduces no axis (ONNX's `noop_with_empty_axes`). Reducing an empty set
/// gives 0 for Sum and L2, NaN for a float Mean (NumPy; the integer Mean truncates NaN like a
/// Cast), and the lowest value of the dtype for Max (-inf, `MIN`, false), as ONNX's reference
/// does since opset 18.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reduce {
    /// The reduction.
    pub kind: ReduceKind,
    /// Axes to reduce (may be negative); `None` reduces all.
    pub axes: Option<Vec<i64>>,
    /// Keep reduced axes with size 1.
    pub keepdims: bool,
}

impl Reduce {
    /// The operator's name (`ReduceMean`, ...).
    pub fn name(&self) -> &'static str {
        match self.kind {
            ReduceKind::Mean => "ReduceMean",
            ReduceKind::Sum => "ReduceSum",
            ReduceKind::Max => "ReduceMax",
            ReduceKind::L2 => "ReduceL2",
        }
    }

    /// Checks the input dtype against ONNX's type constraints (the output has the same dtype).
    fn check(&self, dt: DType) -> Result<(), OpError> {
        let ok = match self.kind {
            ReduceKind::Max => true,
            _ => matches!(dt, DType::F32 | DType::F16 | DType::I32 | DType::I64),
        };
        if ok { Ok(()) } else { Err(invalid(format!("{} does not accept {dt} input", self.name()))) }
    }

    /// The reduced axes for `rank`, normalized and sorted; repeated axes are an error.
    fn axes_for(&self, rank: usize) -> Result<Vec<usize>, OpError> {
        let Some(axes) = &self.axes else { return Ok((0..rank).collect()) };
        let mut out = Vec::with_capacity(axes.len());
        for &a in axes {
            let n = normalize_axis(a, rank)?;
            if out.contains(&n) {
                return Err(invalid(format!("axis {a} is listed twice in {axes:?}")));
            }
            out.push(n);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The output dims for input `dims` (generic over known and symbolic dims).
    fn out_dims<D: Clone>(&self, dims: &[D], axes: &[usize], one: D) -> Vec<D> {
        let reduced = |i: &usize| axes.contains(i);
        dims.iter()
            .enumerate()
            .filter_map(|(i, d)| match (reduced(&i), self.keepdims) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(one.clone()),
                (true, false) => None,
            })
            .collect()
    }

    /// Folds every lane of `a` along `axes` with `f`, giving the output array.
    fn lanes<T: Clone, R>(&self, a: &ArrayD<T>, axes: &[usize], f: impl Fn(&[T]) -> R) -> Result<ArrayD<R>, OpError> {
        let dims = a.shape();
        let kept: Vec<usize> = (0..dims.len()).filter(|i| !axes.contains(i)).collect();
        let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
        let outer: usize = kept.iter().filter_map(|&i| dims.get(i)).product();
        let inner: usize = axes.iter().filter_map(|&i| dims.get(i)).product();
        let data: Vec<T> = a.view().permuted_axes(perm).iter().cloned().collect();
        let out: Vec<R> =
            if inner == 0 { (0..outer).map(|_| f(&[])).collect() } else { data.chunks(inner).map(f).collect() };
        array(&self.out_dims(dims, axes, 1), out)
    }

    fn reduce_float(&self, x: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
        let sum = |v: &[f64]| v.iter().fold(0.0, |s, &x| s + x);
        let r = self.lanes(&x.to_f64(), axes, |v| match self.kind {
            ReduceKind::Sum => sum(v),
            ReduceKind::Mean => sum(v) / v.len() as f64,
            ReduceKind::Max => {
                v.iter().fold(f64::NEG_INFINITY, |m, &x| if m.is_nan() || x.is_nan() { f64::NAN } else { m.max(x) })
            }
            ReduceKind::L2 => v.iter().fold(0.0, |s, &x| s + x * x).sqrt(),
        })?;
        Ok(cast_f64(&r, x.dtype()))
    }

    fn reduce_int(&self, x: &Tensor, axes: &[usize]) -> Result<Tensor, OpError> {
        let dt = x.dtype();
        let a = to_i64_array(x)?;
        let sum = |v: &mut dyn Iterator<Item = i64>| v.fold(0i64, i64::wrapping_add);
        Ok(match self.kind {
            ReduceKind::Sum => cast_i64(&self.lanes(&a, axes, |v| sum(&mut v.iter().copied()))?, dt),
            ReduceKind::Max => cast_i64(&self.lanes(&a, axes, |v| v.iter().copied().fold(int_min(dt), i64::max))?, dt),
            ReduceKind::Mean => {
                cast_f64(&self.lanes(&a, axes, |v| wrap(dt, sum(&mut v.iter().copied())) as f64 / v.len() as f64)?, dt)
            }
            ReduceKind::L2 => cast_f64(
                &self.lanes(&a, axes, |v| (sum(&mut v.iter().map(|&x| wrap(dt, x.wrapping_mul(x)))) as f64).sqrt())?,
                dt,
            ),
        })
    }
}

/// `v` wrapped to the width of integer dtype `dt`, sign-extended back.
fn wrap(dt: DType, v: i64) -> i64 {
    match dt {
        DType::I8 => i64::from(v as i8),
        DType::U8 => i64::from(v as u8),
        DType::I32 => i64::from(v as i32),
        _ => v,
    }
}

/// The lowest value of integer dtype `dt`.
fn int_min(dt: DType) -> i64 {
    match dt {
        DType::I8 => i8::MIN.into(),
        DType::U8 => 0,
        DType::I32 => i32::MIN.into(),
        _ => i64::MIN,
    }
}

fn numel(t: Option<&TypeInfo>) -> u64 {
    t.and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64
}

impl OpDef for Reduce {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?.ty;
        self.check(x.dtype)?;
        let axes = self.axes_for(x.shape.rank())?;
        Ok(vec![TypeInfo::new(x.dtype, Shape(self.out_dims(&x.shape.0, &axes, Dim::Known(1))))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        self.check(x.dtype())?;
        let axes = self.axes_for(x.shape().len())?;
        let out = match x {
            Tensor::F32(_) | Tensor::F16(_) => self.reduce_float(x, &axes)?,
            Tensor::Bool(a) => Tensor::Bool(self.lanes(a, &axes, |v| v.iter().any(|&b| b))?),
            _ => self.reduce_int(x, &axes)?,
        };
        Ok(vec![out])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        let n = numel(ins.first().copied().flatten());
        if self.kind == ReduceKind::L2 { 2 * n } else { n }
    }
}

/// Softmax along `axis` (opset ≥ 13 semantics).
///
/// Computed in f64 with the lane's maximum subtracted first, then rounded to the input's
/// dtype; a lane holding NaN or +inf gives NaN, as in NumPy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Softmax {
    /// The axis (may be negative).
    pub axis: i64,
}

impl Softmax {
    fn check(&self, ty: &TypeInfo) -> Result<usize, OpError> {
        if !ty.dtype.is_float() {
            return Err(invalid(format!("Softmax needs a float input, got {}", ty.dtype)));
        }
        Ok(normalize_axis(self.axis, ty.shape.rank())?)
    }
}

impl OpDef for Softmax {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?.ty;
        self.check(x)?;
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        let axis = self.check(&TypeInfo::new(x.dtype(), x.static_shape()))?;
        let mut a = x.to_f64();
        for mut lane in a.lanes_mut(Axis(axis)) {
            let m = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            lane.mapv_inplace(|v| (v - m).exp());
            let s = lane.fold(0.0, |s, &v| s + v);
            lane.mapv_inplace(|v| v / s);
        }
        Ok(vec![cast_f64(&a, x.dtype())])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        // max, subtract-and-exp, sum, divide per element.
        4 * numel(ins.first().copied().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Element;
    use crate::ops::test_util::unravel;
    use half::f16;
    use proptest::prelude::*;

    fn t<T: Element>(dims: &[usize], v: Vec<T>) -> Tensor {
        Tensor::from_vec(dims, v).unwrap()
    }

    fn red(kind: ReduceKind, axes: Option<Vec<i64>>, keepdims: bool) -> Reduce {
        Reduce { kind, axes, keepdims }
    }

    fn run(op: &impl OpDef, x: &Tensor) -> Result<Tensor, OpError> {
        Ok(op.eval(&[Some(x)])?.remove(0))
    }

    fn infer(op: &impl OpDef, s: &str, dt: DType) -> Result<TypeInfo, OpError> {
        let ty = TypeInfo::new(dt, Shape::parse(s).unwrap());
        Ok(op.infer(&[Some(InferIn { ty: &ty, value: None, sym: None })])?.remove(0))
    }

    fn example() -> Tensor {
        t(&[3, 2, 2], vec![5.0f32, 1.0, 20.0, 2.0, 30.0, 1.0, 40.0, 2.0, 55.0, 1.0, 60.0, 2.0])
    }

    #[test]
    fn float_reductions_match_numpy() {
        let x = example();
        let y = run(&red(ReduceKind::Sum, Some(vec![1]), true), &x).unwrap();
        assert_eq!(y, t(&[3, 1, 2], vec![25.0f32, 3.0, 70.0, 3.0, 115.0, 3.0]));
        let y = run(&red(ReduceKind::Mean, Some(vec![0, -1]), false), &x).unwrap();
        assert_eq!(y, t(&[2], vec![15.5f32, 21.0]));
        let y = run(&red(ReduceKind::Max, Some(vec![-2]), false), &x).unwrap();
        assert_eq!(y, t(&[3, 2], vec![20.0f32, 2.0, 40.0, 2.0, 60.0, 2.0]));
        let x = t(&[3, 2, 2], (1..13).map(|v| v as f32).collect());
        let y = run(&red(ReduceKind::L2, Some(vec![2]), false), &x).unwrap();
        let want = [2.236068f32, 5.0, 7.81025, 10.630146, 13.453624, 16.27882];
        assert_eq!(y, t(&[3, 2], want.to_vec()));
        let y = run(&red(ReduceKind::L2, None, true), &x).unwrap();
        assert_eq!(y, t(&[1, 1, 1], vec![25.495098f32]));
        let h = t(&[2], vec![f16::from_f32(1.5), f16::from_f32(-4.0)]);
        assert_eq!(run(&red(ReduceKind::Sum, None, false), &h).unwrap(), t(&[], vec![f16::from_f32(-2.5)]));
        let n = run(&red(ReduceKind::Max, None, false), &t(&[3], vec![1.0f32, f32::NAN, 2.0])).unwrap();
        assert!(n.view::<f32>().unwrap().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn empty_axes_list_is_a_noop_and_scalars_reduce_to_scalars() {
        let x = t(&[2], vec![-3.0f32, 4.0]);
        assert_eq!(run(&red(ReduceKind::Sum, Some(vec![]), true), &x).unwrap(), x);
        assert_eq!(run(&red(ReduceKind::L2, Some(vec![]), false), &x).unwrap(), t(&[2], vec![3.0f32, 4.0]));
        let s = t(&[], vec![7i64]);
        assert_eq!(run(&red(ReduceKind::Max, None, false), &s).unwrap(), s);
    }

    #[test]
    fn empty_sets() {
        let x = t(&[2, 0, 4], Vec::<f32>::new());
        let r = |kind| run(&red(kind, Some(vec![1]), true), &x).unwrap();
        assert_eq!(r(ReduceKind::Sum), t(&[2, 1, 4], vec![0.0f32; 8]));
        assert_eq!(r(ReduceKind::L2), t(&[2, 1, 4], vec![0.0f32; 8]));
        assert_eq!(r(ReduceKind::Max), t(&[2, 1, 4], vec![f32::NEG_INFINITY; 8]));
        assert!(r(ReduceKind::Mean).view::<f32>().unwrap().iter().all(|v| v.is_nan()));
        let b = t(&[2, 0, 4], Vec::<bool>::new());
        assert_eq!(run(&red(ReduceKind::Max, Some(vec![1]), true), &b).unwrap(), t(&[2, 1, 4], vec![false; 8]));
        let i = t(&[0], Vec::<i8>::new());
        assert_eq!(run(&red(ReduceKind::Max, None, false), &i).unwrap(), t(&[], vec![i8::MIN]));
        let i = t(&[0], Vec::<i32>::new());
        assert_eq!(run(&red(ReduceKind::Mean, None, false), &i).unwrap(), t(&[], vec![i32::MIN]));
        // Reducing a non-empty axis of an empty tensor gives an empty tensor.
        let y = run(&red(ReduceKind::Sum, Some(vec![2]), true), &x).unwrap();
        assert_eq!(y.shape(), &[2, 0, 1]);
    }

    #[test]
    fn integer_and_bool_reductions_match_numpy() {
        let a = t(&[2, 2], vec![i32::MAX, i32::MAX, -5, -4]);
        let r = |kind| run(&red(kind, Some(vec![1]), false), &a).unwrap();
        assert_eq!(r(ReduceKind::Sum), t(&[2], vec![-2i32, -9]));
        assert_eq!(r(ReduceKind::Mean), t(&[2], vec![-1i32, -4]));
        assert_eq!(r(ReduceKind::L2), t(&[2], vec![1i32, 6]));
        assert_eq!(r(ReduceKind::Max), t(&[2], vec![i32::MAX, -4]));
        let u = t(&[3], vec![3u8, 250, 7]);
        assert_eq!(run(&red(ReduceKind::Max, None, true), &u).unwrap(), t(&[1], vec![250u8]));
        let b = t(&[4, 2], vec![true, true, true, false, false, true, false, false]);
        let y = run(&red(ReduceKind::Max, Some(vec![1]), true), &b).unwrap();
        assert_eq!(y, t(&[4, 1], vec![true, true, true, false]));
    }

    #[test]
    fn reduce_errors_and_inference() {
        let x = example();
        assert!(run(&red(ReduceKind::Sum, Some(vec![3]), true), &x).is_err());
        assert!(run(&red(ReduceKind::Sum, Some(vec![1, -2]), true), &x).is_err());
        assert!(run(&red(ReduceKind::Sum, None, true), &t(&[1], vec![1u8])).is_err());
        assert!(run(&red(ReduceKind::Mean, None, true), &t(&[1], vec![true])).is_err());
        assert!(red(ReduceKind::Sum, None, true).eval(&[]).is_err());
        let op = red(ReduceKind::Mean, Some(vec![-1]), true);
        assert_eq!(infer(&op, "[b, s, 384]", DType::F32).unwrap().shape, Shape::parse("[b, s, 1]").unwrap());
        let op = red(ReduceKind::Sum, Some(vec![0, 2]), false);
        assert_eq!(infer(&op, "[b, s, 384]", DType::I64).unwrap().shape, Shape::parse("[s]").unwrap());
        assert_eq!(infer(&red(ReduceKind::Max, None, false), "[b, 2]", DType::I8).unwrap().shape, Shape(vec![]));
        assert!(infer(&red(ReduceKind::L2, None, false), "[2]", DType::U8).is_err());
        let ty = TypeInfo::new(DType::F32, Shape::parse("[2, 3, 4]").unwrap());
        let outs = [TypeInfo::new(DType::F32, Shape::parse("[2]").unwrap())];
        assert_eq!(red(ReduceKind::Sum, None, false).flops(&[Some(&ty)], &outs), 24);
    }

    #[test]
    fn softmax_values() {
        let x = t(&[2, 3], vec![1.0f32, 2.0, 3.0, -1.0, 0.0, 1000.0]);
        let close = |y: Tensor, want: [f32; 6]| {
            assert_eq!(y.shape(), &[2, 3]);
            let y = y.view::<f32>().unwrap().iter().copied().collect::<Vec<_>>();
            assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-6 * b), "{y:?} vs {want:?}");
        };
        // numpy: exp(x - max) / sum, per lane.
        close(run(&Softmax { axis: 1 }, &x).unwrap(), [0.09003057, 0.24472846, 0.66524094, 0.0, 0.0, 1.0]);
        close(run(&Softmax { axis: -2 }, &x).unwrap(), [0.880797, 0.880797, 0.0, 0.11920292, 0.11920292, 1.0]);
        let h = t(&[2], vec![f16::from_f32(0.0), f16::from_f32(0.0)]);
        assert_eq!(run(&Softmax { axis: 0 }, &h).unwrap(), t(&[2], vec![f16::from_f32(0.5); 2]));
        let e = t(&[0, 3], Vec::<f32>::new());
        assert_eq!(run(&Softmax { axis: 1 }, &e).unwrap(), e);
        let n = run(&Softmax { axis: 0 }, &t(&[2], vec![f32::INFINITY, 1.0])).unwrap();
        assert!(n.view::<f32>().unwrap().iter().all(|v| v.is_nan()));
    }

    #[test]
    fn softmax_errors() {
        assert!(run(&Softmax { axis: 2 }, &t(&[2, 3], vec![0.0f32; 6])).is_err());
        assert!(run(&Softmax { axis: 0 }, &t(&[], vec![0.0f32])).is_err());
        assert!(run(&Softmax { axis: 0 }, &t(&[2], vec![1i32, 2])).is_err());
        assert_eq!(infer(&Softmax { axis: -1 }, "[b, 8]", DType::F16).unwrap().shape, Shape::parse("[b, 8]").unwrap());
        assert!(infer(&Softmax { axis: -3 }, "[b, 8]", DType::F32).is_err());
    }

    proptest! {
        #[test]
        fn sum_and_max_match_brute_force(
            dims in prop::collection::vec(0usize..4, 0..4),
            pick in prop::collection::vec(any::<bool>(), 4),
            keepdims in any::<bool>(),
            vals in prop::collection::vec(-100i32..100, 64),
        ) {
            let n: usize = dims.iter().product();
            let x = t(&dims, vals[..n].iter().map(|&v| v as f32).collect());
            let axes: Vec<i64> = (0..dims.len()).filter(|&i| pick[i]).map(|i| i as i64 - dims.len() as i64).collect();
            // Brute force: each input element adds into the output cell its index maps to.
            let out_dims: Vec<usize> = dims.iter().enumerate().map(|(i, &d)| if pick[i] { 1 } else { d }).collect();
            let m: usize = out_dims.iter().product();
            let (mut sum, mut max) = (vec![0.0f32; m], vec![f32::NEG_INFINITY; m]);
            for (k, &v) in vals[..n].iter().enumerate() {
                let idx = unravel(k, &dims);
                let o = idx.iter().zip(&out_dims).fold(0, |o, (&i, &d)| o * d + if d == 1 { 0 } else { i });
                sum[o] += v as f32;
                max[o] = max[o].max(v as f32);
            }
            let shape: Vec<usize> = if keepdims {
                out_dims.clone()
            } else {
                dims.iter().enumerate().filter(|&(i, _)| !pick[i]).map(|(_, &d)| d).collect()
            };
            let got = run(&red(ReduceKind::Sum, Some(axes.clone()), keepdims), &x).unwrap();
            prop_assert_eq!(got, t(&shape, sum));
            let got = run(&red(ReduceKind::Max, Some(axes), keepdims), &x).unwrap();
            prop_assert_eq!(got, t(&shape, max));
        }

        #[test]
        fn softmax_lanes_sum_to_one_and_keep_order(
            vals in prop::collection::vec(-50.0f32..50.0, 12),
            axis in -2i64..2,
        ) {
            let x = t(&[3, 4], vals.clone());
            let y = run(&Softmax { axis }, &x).unwrap();
            let y = y.view::<f32>().unwrap();
            let ax = if axis < 0 { axis + 2 } else { axis } as usize;
            for lane in y.lanes(Axis(ax)) {
                let s: f32 = lane.iter().sum();
                prop_assert!((s - 1.0).abs() < 1e-5);
            }
            // Softmax is monotonic along a lane: compare pairs in row 0 (axis 1) or column 0.
            let xs = x.view::<f32>().unwrap();
            for (a, b) in xs.lanes(Axis(ax)).into_iter().zip(y.lanes(Axis(ax))) {
                for i in 0..a.len() {
                    for j in 0..a.len() {
                        if a[i] < a[j] { prop_assert!(b[i] <= b[j]); }
                    }
                }
                // Against the plain formula exp(x)/Σexp(x) in f64 (safe for |x| ≤ 50).
                let z: f64 = a.iter().map(|&v| f64::from(v).exp()).sum();
                for (&v, &p) in a.iter().zip(b.iter()) {
                    let want = (f64::from(v).exp() / z) as f32;
                    prop_assert!((p - want).abs() <= 1e-6 * want.max(1e-30) + 1e-38);
                }
            }
        }
    }
}
