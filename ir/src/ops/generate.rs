//! Generators: Shape, Size, Range, ConstantOfShape.

use super::check_alloc;
use super::reshape::{int_list, nonneg_dims, shape_arg_dims};
use super::{InferIn, OpDef, arity, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::Array1;
use serde::{Deserialize, Serialize};

/// The input's shape as a 1-D i64 tensor, sliced to `start..end`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShapeOf {
    /// First dim (may be negative; clamped).
    pub start: i64,
    /// One past the last dim (may be negative; clamped); `None` = rank.
    pub end: Option<i64>,
}

impl ShapeOf {
    /// The dim range `start..end` selects for a tensor of `rank` axes.
    pub fn range(&self, rank: usize) -> std::ops::Range<usize> {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clamp(self.start), clamp(self.end.unwrap_or(r)));
        s..e.max(s)
    }

    /// The output for an input of concrete `dims`.
    pub fn of_dims(&self, dims: &[usize]) -> Tensor {
        let picked = dims.get(self.range(dims.len())).unwrap_or_default();
        Tensor::I64(Array1::from_iter(picked.iter().map(|&d| d as i64)).into_dyn())
    }
}

impl OpDef for ShapeOf {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let n = self.range(req(ins, 0)?.ty.shape.rank()).len();
        Ok(vec![TypeInfo::new(DType::I64, Shape::known(&[n]))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![self.of_dims(req(ins, 0)?.shape())])
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

/// The input's element count as an i64 scalar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {}

impl Size {
    /// The output for an input of concrete `dims`.
    pub fn of_dims(&self, dims: &[usize]) -> Tensor {
        Tensor::scalar(dims.iter().product::<usize>() as i64)
    }
}

impl OpDef for Size {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        req(ins, 0)?;
        Ok(vec![TypeInfo::new(DType::I64, Shape(vec![]))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![self.of_dims(req(ins, 0)?.shape())])
    }

    fn flops(&self, _ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        0
    }
}

/// Inputs scalar `start`, `limit`, `delta` of one numeric dtype.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {}

const RANGE_ARGS: [&str; 3] = ["start", "limit", "delta"];
const RANGE_TYPES: [DType; 4] = [DType::F32, DType::F16, DType::I32, DType::I64];

/// Range's arguments: integers exactly, floats as f64 (as the ONNX reference computes).
#[derive(Clone, Copy, Debug, PartialEq)]
enum RangeArgs {
    Int(i128, i128, i128),
    Float(f64, f64, f64),
}

/// Checks Range's three input types; returns their common dtype.
fn range_dtype(tys: [&TypeInfo; 3]) -> Result<DType, OpError> {
    let dt = tys[0].dtype;
    for (ty, name) in tys.iter().zip(RANGE_ARGS) {
        if ty.dtype != dt || !RANGE_TYPES.contains(&ty.dtype) {
            return Err(invalid(format!(
                "start, limit and delta must share one of f32, f16, i32, i64; {name} is {}",
                ty.dtype
            )));
        }
        if ty.shape.numel() != Some(1) {
            return Err(invalid(format!("{name} must be a scalar, got shape {}", ty.shape)));
        }
    }
    Ok(dt)
}

impl RangeArgs {
    fn read(ts: [&Tensor; 3]) -> Result<RangeArgs, OpError> {
        let first = |t: &Tensor| t.to_f64().iter().next().copied().unwrap_or(f64::NAN);
        let int = |t: &Tensor| -> Result<i128, OpError> {
            Ok(t.to_i64_vec()?.first().copied().map(i128::from).unwrap_or_default())
        };
        let [s, l, d] = ts;
        Ok(if s.dtype().is_float() {
            RangeArgs::Float(first(s), first(l), first(d))
        } else {
            RangeArgs::Int(int(s)?, int(l)?, int(d)?)
        })
    }

    /// `max(ceil((limit - start) / delta), 0)`.
    fn len(self) -> Result<usize, OpError> {
        let n = match self {
            RangeArgs::Int(_, _, 0) => None,
            RangeArgs::Int(s, l, d) => {
                let (q, r) = ((l - s) / d, (l - s) % d);
                Some(if r != 0 && (r < 0) == (d < 0) { q + 1 } else { q }.max(0))
            }
            RangeArgs::Float(_, _, 0.0) => None,
            RangeArgs::Float(s, l, d) => {
                let q = ((l - s) / d).ceil();
                // Lengths this large are rejected by the size check anyway.
                (q.is_finite() && q < 9.0e15).then_some(q.max(0.0) as i128)
            }
        };
        n.and_then(|n| usize::try_from(n).ok()).ok_or_else(|| invalid(format!("Range {self:?} has no finite length")))
    }

    fn values(self, n: usize, dtype: DType) -> Tensor {
        match self {
            RangeArgs::Int(s, _, d) => {
                // Every value lies between start and limit, so it fits the dtype.
                let v = Array1::from_iter((0..n as i128).map(|i| (s + i * d) as i64)).into_dyn();
                match dtype {
                    DType::I32 => Tensor::I32(v.mapv(|x| x as i32)),
                    _ => Tensor::I64(v),
                }
            }
            RangeArgs::Float(s, _, d) => {
                let v = Array1::from_iter((0..n).map(|i| s + i as f64 * d)).into_dyn();
                Tensor::from_f64(dtype, v)
            }
        }
    }
}

/// The length of an integer range whose start or limit is a symbolic size: `(limit - start) /
/// delta` when that division is exact for every value of the symbols, else unknown.
fn symbolic_range_len(args: &[InferIn<'_>; 3]) -> Dim {
    let scalar = |a: &InferIn<'_>| -> Option<crate::Poly> {
        if !a.ty.dtype.is_int() {
            return None;
        }
        match (a.value, a.sym) {
            (Some(t), _) => t.to_i64_vec().ok().filter(|v| v.len() == 1).map(|v| crate::Poly::constant(v[0])),
            (None, Some([p])) => Some(p.clone()),
            _ => None,
        }
    };
    let (Some(s), Some(l), Some(d)) = (scalar(&args[0]), scalar(&args[1]), scalar(&args[2])) else {
        return Dim::unknown();
    };
    match d.as_const() {
        Some(k) if k > 0 => l.sub(&s).div_exact(&d).map_or_else(Dim::unknown, |q| Dim::from_poly(&q)),
        _ => Dim::unknown(),
    }
}

impl OpDef for Range {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 3, 3)?;
        let args = [req(ins, 0)?, req(ins, 1)?, req(ins, 2)?];
        let dtype = range_dtype(args.map(|a| a.ty))?;
        let len = match (args[0].value, args[1].value, args[2].value) {
            (Some(s), Some(l), Some(d)) => Dim::Known(RangeArgs::read([s, l, d])?.len()?),
            _ => symbolic_range_len(&args),
        };
        Ok(vec![TypeInfo::new(dtype, Shape(vec![len]))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 3, 3)?;
        let ts = [req(ins, 0)?, req(ins, 1)?, req(ins, 2)?];
        let dtype = range_dtype(ts.map(|t| TypeInfo::new(t.dtype(), t.static_shape())).each_ref())?;
        let args = RangeArgs::read(ts)?;
        let n = args.len()?;
        check_alloc(&[n], dtype.size())?;
        Ok(vec![args.values(n, dtype)])
    }
}

/// Input `shape` (1-D i64); output filled with `value`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantOfShape {
    /// The fill value and output dtype.
    pub value: crate::Scalar,
}

impl OpDef for ConstantOfShape {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let dims = shape_arg_dims(req(ins, 0)?, "shape")?;
        Ok(vec![TypeInfo::new(self.value.dtype(), Shape(dims))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let dims = nonneg_dims(&int_list(req(ins, 0)?, "shape", &[DType::I64])?, "shape")?;
        check_alloc(&dims, self.value.dtype().size())?;
        Ok(vec![self.value.fill(&dims)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scalar;
    use half::f16;
    use proptest::prelude::*;

    fn i64s(v: &[i64]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    fn eval1(op: &dyn OpDef, ins: &[&Tensor]) -> Result<Tensor, OpError> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        op.eval(&ins).map(|mut v| v.remove(0))
    }

    fn infer1(op: &dyn OpDef, ins: &[(TypeInfo, Option<Tensor>)]) -> Result<TypeInfo, OpError> {
        let ins: Vec<Option<InferIn<'_>>> =
            ins.iter().map(|(ty, v)| Some(InferIn { ty, value: v.as_ref(), sym: None })).collect();
        op.infer(&ins).map(|mut v| v.remove(0))
    }

    fn konst(t: Tensor) -> (TypeInfo, Option<Tensor>) {
        (TypeInfo::new(t.dtype(), t.static_shape()), Some(t))
    }

    fn var(dtype: DType, shape: &str) -> (TypeInfo, Option<Tensor>) {
        (TypeInfo::new(dtype, Shape::parse(shape).unwrap()), None)
    }

    #[test]
    fn shape_onnx_cases() {
        let x = Tensor::zeros(DType::F32, &[3, 4, 5]);
        let cases: [(i64, Option<i64>, &[i64]); 10] = [
            (0, None, &[3, 4, 5]),
            (1, None, &[4, 5]),
            (0, Some(1), &[3]),
            (-1, None, &[5]),
            (0, Some(-1), &[3, 4]),
            (1, Some(-1), &[4]),
            (1, Some(2), &[4]),
            (-10, None, &[3, 4, 5]),
            (0, Some(10), &[3, 4, 5]),
            (2, Some(1), &[]),
        ];
        for (start, end, want) in cases {
            let op = ShapeOf { start, end };
            assert_eq!(eval1(&op, &[&x]).unwrap(), i64s(want), "{start} {end:?}");
            let ty = infer1(&op, &[var(DType::F16, "[b, seq<=9, 5]")]).unwrap();
            assert_eq!(ty, TypeInfo::new(DType::I64, Shape::known(&[want.len()])));
        }
        assert_eq!(eval1(&ShapeOf { start: 0, end: None }, &[&Tensor::scalar(1u8)]).unwrap(), i64s(&[]));
        assert!(ShapeOf { start: 0, end: None }.eval(&[]).is_err());
    }

    #[test]
    fn range_onnx_cases() {
        let r = |s: Tensor, l: Tensor, d: Tensor| eval1(&Range {}, &[&s, &l, &d]);
        let f = Tensor::scalar::<f32>;
        assert_eq!(r(f(1.), f(5.), f(2.)).unwrap(), Tensor::from_vec(&[2], vec![1f32, 3.]).unwrap());
        let h = |v: f32| Tensor::scalar(f16::from_f32(v));
        let want = Tensor::from_vec(&[2], vec![f16::from_f32(1.), f16::from_f32(3.)]).unwrap();
        assert_eq!(r(h(1.), h(5.), h(2.)).unwrap(), want);
        let i = Tensor::scalar::<i32>;
        assert_eq!(r(i(10), i(6), i(-3)).unwrap(), Tensor::from_vec(&[2], vec![10i32, 7]).unwrap());
        let l = Tensor::scalar::<i64>;
        assert_eq!(r(l(3), l(9), l(3)).unwrap(), i64s(&[3, 6]));
        assert_eq!(r(l(10), l(4), l(-2)).unwrap(), i64s(&[10, 8, 6]));
        assert_eq!(r(l(4), l(10), l(-2)).unwrap(), i64s(&[]));
        let y = r(f(0.), f(1.), f(0.3)).unwrap();
        assert_eq!(y.to_f32().iter().copied().collect::<Vec<_>>(), [0., 0.3, 0.6, 0.90000004]);
        let (min, max) = (i64::MIN, i64::MAX);
        assert_eq!(r(l(min), l(max), l(1 << 62)).unwrap(), i64s(&[min, min + (1 << 62), 0, 1 << 62]));
        let one = Tensor::from_vec(&[1], vec![5i64]).unwrap();
        assert_eq!(r(l(0), one, l(2)).unwrap(), i64s(&[0, 2, 4]));
    }

    #[test]
    fn range_errors() {
        let r = |s: Tensor, l: Tensor, d: Tensor| eval1(&Range {}, &[&s, &l, &d]).unwrap_err().to_string();
        let (f, l) = (Tensor::scalar::<f32>, Tensor::scalar::<i64>);
        assert!(r(l(0), l(5), l(0)).contains("no finite length"));
        assert!(r(f(0.), f(5.), f(0.)).contains("no finite length"));
        assert!(r(f(0.), f(f32::NAN), f(1.)).contains("no finite length"));
        assert!(r(f(0.), f(f32::INFINITY), f(1.)).contains("no finite length"));
        assert!(r(f(0.), f(1e15), f(1.)).contains("too large"));
        assert!(r(l(0), l(i64::MAX), l(1)).contains("too large"));
        assert!(r(l(0), f(5.), l(1)).contains("limit is f32"));
        assert!(r(Tensor::scalar(0u8), Tensor::scalar(5u8), Tensor::scalar(1u8)).contains("share"));
        assert!(r(i64s(&[0, 1]), l(5), l(1)).contains("scalar"));
        assert!(Range {}.eval(&[Some(&l(0)), Some(&l(1))]).is_err());
    }

    #[test]
    fn range_infers_length_from_constants() {
        let l = |v: i64| konst(Tensor::scalar(v));
        let ty = infer1(&Range {}, &[l(0), l(10), l(3)]).unwrap();
        assert_eq!(ty, TypeInfo::new(DType::I64, Shape::known(&[4])));
        let ty = infer1(&Range {}, &[l(0), var(DType::I64, "[]"), l(3)]).unwrap();
        assert!(ty.shape.0[0].is_unknown() && ty.shape.rank() == 1);
        assert!(infer1(&Range {}, &[l(0), var(DType::I32, "[]"), l(3)]).is_err());
        assert!(infer1(&Range {}, &[l(0), l(1), l(0)]).is_err());
    }

    #[test]
    fn constant_of_shape_cases() {
        let ones = ConstantOfShape { value: Scalar::F32(1.0) };
        assert_eq!(eval1(&ones, &[&i64s(&[4, 3, 2])]).unwrap(), Tensor::from_vec(&[4, 3, 2], vec![1f32; 24]).unwrap());
        let zeros = ConstantOfShape { value: Scalar::I32(0) };
        assert_eq!(eval1(&zeros, &[&i64s(&[10, 6])]).unwrap(), Tensor::zeros(DType::I32, &[10, 6]));
        assert_eq!(eval1(&zeros, &[&i64s(&[0])]).unwrap().shape(), &[0]);
        let b = ConstantOfShape { value: Scalar::Bool(true) };
        assert_eq!(eval1(&b, &[&i64s(&[])]).unwrap(), Tensor::scalar(true));
        assert!(eval1(&b, &[&i64s(&[2, -1])]).unwrap_err().to_string().contains("negative dim -1"));
        assert!(eval1(&b, &[&i64s(&[1 << 40, 1 << 40])]).unwrap_err().to_string().contains("too large"));
        assert!(eval1(&b, &[&i64s(&[i64::MAX, i64::MAX])]).is_err());
        assert!(eval1(&b, &[&Tensor::from_vec(&[1], vec![2i32]).unwrap()]).is_err());
        assert!(eval1(&b, &[&Tensor::scalar(2i64)]).unwrap_err().to_string().contains("1-D"));
        assert!(b.eval(&[]).is_err());
    }

    #[test]
    fn constant_of_shape_infers() {
        let op = ConstantOfShape { value: Scalar::F16(f16::ONE) };
        let ty = infer1(&op, &[konst(i64s(&[2, 3]))]).unwrap();
        assert_eq!(ty, TypeInfo::new(DType::F16, Shape::known(&[2, 3])));
        let ty = infer1(&op, &[var(DType::I64, "[2]")]).unwrap();
        assert!(ty.shape.rank() == 2 && ty.shape.0.iter().all(Dim::is_unknown));
        assert!(matches!(infer1(&op, &[var(DType::I64, "[n]")]), Err(OpError::Unsupported(_))));
        assert!(infer1(&op, &[konst(i64s(&[-3]))]).is_err());
    }

    proptest! {
        #[test]
        fn int_range_matches_repeated_addition(start in -20i64..20, limit in -20i64..20, delta in -7i64..7) {
            prop_assume!(delta != 0);
            let y = eval1(&Range {}, &[&Tensor::scalar(start), &Tensor::scalar(limit), &Tensor::scalar(delta)]).unwrap();
            let mut want = vec![];
            let mut v = start;
            while (delta > 0 && v < limit) || (delta < 0 && v > limit) {
                want.push(v);
                v += delta;
            }
            prop_assert_eq!(y, i64s(&want));
        }

        #[test]
        fn shape_range_matches_python_slicing(rank in 0usize..5, start in -7i64..7, end in prop::option::of(-7i64..7)) {
            let dims: Vec<usize> = (1..=rank).collect();
            let r = rank as i64;
            let py = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
            let (s, e) = (py(start), py(end.unwrap_or(r)));
            let want: Vec<i64> = (s..e).map(|i| i + 1).collect();
            prop_assert_eq!(ShapeOf { start, end }.of_dims(&dims), i64s(&want));
        }
    }
}
