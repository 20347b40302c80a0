//! Slice.

use super::reshape::{check_int_list_type, int_list, unique_axes};
use super::{InferIn, OpDef, arity, opt, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Poly, Shape, Tensor, TypeInfo, map_tensor_same};
use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};

/// Inputs `data`, `starts`, `ends`, optional `axes`, optional `steps` (i32/i64), with ONNX
/// clamping of out-of-range and negative indices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slice {}

const INDEX_TYPES: [DType; 2] = [DType::I32, DType::I64];
const ARGS: [&str; 4] = ["starts", "ends", "axes", "steps"];

/// The effective slice of one axis of size `n`: the first index, the step, and the count.
/// Shared with code generation, so both sides clamp alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisSlice {
    /// The first index taken (within `0..n` when `len > 0`).
    pub start: i128,
    /// The step between taken indices (non-zero).
    pub step: i128,
    /// How many indices are taken.
    pub len: usize,
}

impl AxisSlice {
    /// Applies the ONNX rules: negative `start`/`end` count from the end; then, for a positive
    /// step, both are clamped to `[0, n]`; for a negative step, `start` to `[0, n-1]` and
    /// `end` to `[-1, n-1]`.
    pub fn new(n: usize, start: i64, end: i64, step: i64) -> Result<AxisSlice, OpError> {
        if step == 0 {
            return Err(invalid("slice step is 0"));
        }
        let (n, step) = (n as i128, i128::from(step));
        let wrap = |v: i64| if v < 0 { i128::from(v) + n } else { i128::from(v) };
        let (s, e) = (wrap(start), wrap(end));
        let (s, span) = if step > 0 {
            let s = s.clamp(0, n);
            (s, e.clamp(0, n) - s)
        } else {
            // With n = 0 the ranges are empty, so use max/min rather than clamp.
            let s = s.max(0).min(n - 1);
            (s, s - e.max(-1).min(n - 1))
        };
        let len = if span > 0 { (span + step.abs() - 1) / step.abs() } else { 0 };
        let len = usize::try_from(len).map_err(|_| invalid("slice length overflows"))?;
        Ok(AxisSlice { start: s, step, len })
    }

    /// The input indices this slice reads, in output order.
    fn indices(&self) -> Vec<usize> {
        (0..self.len as i128).map(|i| (self.start + i * self.step) as usize).collect()
    }
}

/// The slice arguments as given: per listed axis, start, end and step.
struct Args {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
}

/// A listed axis's `(start, end, step)` as given.
type Params = (i64, i64, i64);

impl Args {
    /// Reads the argument tensors `starts, ends, axes?, steps?`.
    fn read(args: &[Option<&Tensor>]) -> Result<Args, OpError> {
        let get = |i: usize| opt(args, i).map(|t| int_list(t, ARGS[i], &INDEX_TYPES)).transpose();
        let starts = get(0)?.ok_or_else(|| invalid("input 1 (starts) is required"))?;
        let ends = get(1)?.ok_or_else(|| invalid("input 2 (ends) is required"))?;
        Ok(Args { starts, ends, axes: get(2)?, steps: get(3)? })
    }

    /// Per axis of a rank-`rank` tensor, its parameters when it is sliced.
    fn per_axis(&self, rank: usize) -> Result<Vec<Option<Params>>, OpError> {
        let k = self.starts.len();
        let all: Vec<i64> = (0..k as i64).collect();
        let axes = self.axes.as_ref().unwrap_or(&all);
        let ones = vec![1; k];
        let steps = self.steps.as_ref().unwrap_or(&ones);
        if self.ends.len() != k || axes.len() != k || steps.len() != k {
            return Err(invalid(format!(
                "starts, ends, axes and steps have lengths {k}, {}, {}, {}",
                self.ends.len(),
                axes.len(),
                steps.len()
            )));
        }
        if let Some(i) = steps.iter().position(|&s| s == 0) {
            return Err(invalid(format!("steps[{i}] is 0")));
        }
        let mut out = vec![None; rank];
        for (i, a) in unique_axes(axes, rank)?.into_iter().enumerate() {
            out[a] = Some((self.starts[i], self.ends[i], steps[i]));
        }
        Ok(out)
    }
}

/// A slice index (`start` or `end`, constant or a symbolic size) on an axis of size `d`, as
/// a polynomial position for step 1: negative constants count from the end, constants beyond
/// the dim's bound (or `i32::MAX` without one; the exporters' "to the end" sentinels) are the
/// end. A symbolic index, and a constant start, are taken to lie within the axis.
fn slice_pos(d: &Dim, v: &Poly, is_end: bool) -> Option<Poly> {
    let limit = d.upper().map_or(i64::from(i32::MAX), |u| i64::try_from(u).unwrap_or(i64::MAX));
    match v.as_const() {
        Some(c) if c >= limit => Some(d.poly()),
        Some(c) if c < -limit => Some(Poly::constant(0)),
        Some(c) if c < 0 => Some(d.poly().add(&Poly::constant(c))),
        // An end of min(c, d) for a symbolic d (an atom); a start is taken to lie within the
        // axis.
        Some(c) if d.known().is_none() && is_end => Some(d.poly().size_min(&Poly::constant(c))),
        Some(c) => Some(Poly::constant(c.min(limit))),
        None => Some(v.clone()),
    }
}

/// The output dim of a step-1 slice `start..end` of a dim that is symbolic or sliced by
/// symbolic indices: `end - start` as positions (see [`slice_pos`]), else unknown; a step of
/// -1 over the whole axis keeps the dim.
pub(crate) fn symbolic_slice_len(d: &Dim, start: &Poly, end: &Poly, step: i64) -> Dim {
    let limit = d.upper().map_or(i64::from(i32::MAX), |u| i64::try_from(u).unwrap_or(i64::MAX));
    if step == -1 {
        let whole = matches!(start.as_const(), Some(s) if s == -1 || s >= limit)
            && matches!(end.as_const(), Some(e) if e < -limit);
        return if whole { d.clone() } else { Dim::unknown() };
    }
    if step != 1 {
        return Dim::unknown();
    }
    match (slice_pos(d, start, false), slice_pos(d, end, true)) {
        (Some(s), Some(e)) => {
            let len = e.sub(&s);
            if len.as_const().is_some_and(|c| c < 0) { Dim::unknown() } else { Dim::from_poly(&len) }
        }
        _ => Dim::unknown(),
    }
}

/// The output dim of a sliced symbolic dim with constant arguments.
fn symbolic_len(d: &Dim, (start, end, step): Params) -> Dim {
    symbolic_slice_len(d, &Poly::constant(start), &Poly::constant(end), step)
}

/// The output dims when the arguments are constants or symbolic sizes (`starts`/`ends` known
/// as polynomials, `axes`/`steps` constant); `None` when they are not all known.
fn sym_dims(dims: &[Dim], ins: &[Option<InferIn<'_>>]) -> Result<Option<Vec<Dim>>, OpError> {
    let polys = |i: usize| -> Option<Vec<Poly>> {
        let a = opt(ins, i)?;
        match (a.value, a.sym) {
            (Some(t), _) => t.to_i64_vec().ok().map(|v| v.into_iter().map(Poly::constant).collect()),
            (None, Some(p)) => Some(p.to_vec()),
            _ => None,
        }
    };
    let consts = |i: usize| -> Result<Option<Option<Vec<i64>>>, OpError> {
        match opt(ins, i) {
            None => Ok(Some(None)),
            Some(a) => match a.value {
                Some(t) => Ok(Some(Some(int_list(t, ARGS[i - 1], &INDEX_TYPES)?))),
                None => Ok(None),
            },
        }
    };
    let (Some(starts), Some(ends), Some(axes), Some(steps)) = (polys(1), polys(2), consts(3)?, consts(4)?) else {
        return Ok(None);
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(invalid(format!(
            "starts, ends, axes and steps have lengths {k}, {}, {}, {}",
            ends.len(),
            axes.len(),
            steps.len()
        )));
    }
    let mut out = dims.to_vec();
    for (i, a) in unique_axes(&axes, dims.len())?.into_iter().enumerate() {
        let d = &dims[a];
        out[a] = match (d.known(), starts[i].as_const(), ends[i].as_const()) {
            (Some(n), Some(s), Some(e)) => Dim::Known(AxisSlice::new(n, s, e, steps[i])?.len),
            _ => symbolic_slice_len(d, &starts[i], &ends[i], steps[i]),
        };
    }
    Ok(Some(out))
}

/// The output dims when every argument is constant.
fn const_dims(dims: &[Dim], args: &Args) -> Result<Vec<Dim>, OpError> {
    let params = args.per_axis(dims.len())?;
    dims.iter()
        .zip(params)
        .map(|(d, p)| match (d, p) {
            (_, None) => Ok(d.clone()),
            (Dim::Known(n), Some((s, e, st))) => Ok(Dim::Known(AxisSlice::new(*n, s, e, st)?.len)),
            (Dim::Sym { .. }, Some(p)) => Ok(symbolic_len(d, p)),
        })
        .collect()
}

/// The axes a slice with non-constant arguments touches, when that is known.
fn sliced_axes(ins: &[Option<InferIn<'_>>], rank: usize) -> Result<Option<Vec<usize>>, OpError> {
    match opt(ins, 3) {
        Some(axes) => axes.value.map(|t| unique_axes(&int_list(t, "axes", &INDEX_TYPES)?, rank)).transpose(),
        None => {
            let starts = req(ins, 1)?;
            match starts.ty.shape.0.first().and_then(Dim::known) {
                Some(k) if k > rank => Err(invalid(format!("{k} starts for a tensor of rank {rank}"))),
                k => Ok(k.map(|k| (0..k).collect())),
            }
        }
    }
}

/// Takes each axis's indices in turn (axes read whole are left alone).
fn slice_typed<T: Clone>(a: &ArrayD<T>, slices: &[AxisSlice]) -> ArrayD<T> {
    let mut out = a.clone();
    for (axis, s) in slices.iter().enumerate() {
        if (s.start, s.step, s.len) != (0, 1, out.len_of(Axis(axis))) {
            out = out.select(Axis(axis), &s.indices());
        }
    }
    out
}

impl OpDef for Slice {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 3, 5)?;
        let data = req(ins, 0)?.ty;
        for (i, name) in ARGS.iter().enumerate() {
            if let Some(a) = opt(ins, i + 1) {
                check_int_list_type(a.ty, name, &INDEX_TYPES)?;
            }
        }
        let values: Option<Vec<Option<&Tensor>>> =
            ins.iter().skip(1).map(|a| a.map_or(Some(None), |a| a.value.map(Some))).collect();
        let dims = &data.shape.0;
        let out = match values {
            Some(v) => const_dims(dims, &Args::read(&v)?)?,
            None if let Some(d) = sym_dims(dims, ins)? => d,
            None => match sliced_axes(ins, dims.len())? {
                Some(axes) => dims
                    .iter()
                    .enumerate()
                    .map(|(a, d)| if axes.contains(&a) { Dim::unknown() } else { d.clone() })
                    .collect(),
                None => vec![Dim::unknown(); dims.len()],
            },
        };
        Ok(vec![TypeInfo::new(data.dtype, Shape(out))])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 3, 5)?;
        let data = req(ins, 0)?;
        let args = Args::read(ins.get(1..).unwrap_or_default())?;
        let slices = data
            .shape()
            .iter()
            .zip(args.per_axis(data.shape().len())?)
            .map(|(&n, p)| match p {
                Some((s, e, st)) => AxisSlice::new(n, s, e, st),
                None => Ok(AxisSlice { start: 0, step: 1, len: n }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(vec![map_tensor_same!(data, a => slice_typed(a, &slices))])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn axis_slices_clamp_and_count() {
        let sl = |n, s, e, st| {
            let a = super::AxisSlice::new(n, s, e, st).unwrap();
            (a.start, a.step, a.len)
        };
        assert_eq!(sl(5, 0, i64::MAX, 1), (0, 1, 5));
        assert_eq!(sl(5, -1, i64::MIN, -1), (4, -1, 5));
        assert_eq!(sl(5, 1000, 1000, 1), (5, 1, 0));
        assert_eq!(sl(5, -1, i64::MIN, i64::MIN), (4, i128::from(i64::MIN), 1));
        assert_eq!(sl(4, 3, 0, -2), (3, -2, 2));
        assert_eq!(sl(0, -1, i64::MIN, -1).2, 0);
        assert!(super::AxisSlice::new(3, 0, 1, 0).is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn ints<T: crate::Element>(v: &[T]) -> Tensor {
        Tensor::from_vec(&[v.len()], v.to_vec()).unwrap()
    }

    fn arange(dims: &[usize]) -> Tensor {
        Tensor::from_vec(dims, (0..dims.iter().product::<usize>() as i64).collect()).unwrap()
    }

    fn slice(x: &Tensor, args: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        let mut ins = vec![Some(x)];
        ins.extend_from_slice(args);
        Slice {}.eval(&ins).map(|mut v| v.remove(0))
    }

    /// Slices with i64 starts, ends, axes, steps.
    fn slice4(x: &Tensor, s: &[i64], e: &[i64], a: &[i64], st: &[i64]) -> Result<Tensor, OpError> {
        let t = [ints(s), ints(e), ints(a), ints(st)];
        slice(x, &[Some(&t[0]), Some(&t[1]), Some(&t[2]), Some(&t[3])])
    }

    fn flat(t: &Tensor) -> Vec<i64> {
        t.to_i64_vec().unwrap()
    }

    #[test]
    fn spec_examples() {
        let d = Tensor::from_vec(&[2, 4], vec![1i64, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let y = slice4(&d, &[1, 0], &[2, 3], &[0, 1], &[1, 2]).unwrap();
        assert_eq!((y.shape(), flat(&y)), (&[1, 2][..], vec![5, 7]));
        let (s, e) = (ints(&[0i32, 1]), ints(&[-1i32, 1000]));
        let y = slice(&d, &[Some(&s), Some(&e)]).unwrap();
        assert_eq!((y.shape(), flat(&y)), (&[1, 3][..], vec![2, 3, 4]));
    }

    #[test]
    fn numpy_cases() {
        // Expected values from numpy on np.arange(24).reshape(2, 3, 4).
        let x = arange(&[2, 3, 4]);
        let y = slice4(&x, &[0], &[-1], &[1], &[1]).unwrap();
        assert_eq!(y.shape(), &[2, 2, 4]);
        assert_eq!(flat(&y), vec![0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15, 16, 17, 18, 19]);
        let y = slice4(&x, &[2, 3, 4], &[0, 0, 0], &[0, 1, 2], &[-1, -2, -3]).unwrap();
        assert_eq!((y.shape(), flat(&y)), (&[1, 1, 1][..], vec![23]));
        assert_eq!(slice4(&x, &[1000], &[1000], &[1], &[1]).unwrap().shape(), &[2, 0, 4]);
        let y = slice4(&x, &[-1000], &[2], &[-1], &[1]).unwrap();
        assert_eq!(flat(&y), vec![0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21]);
        let (max, min) = (i64::MAX, i64::MIN);
        let y = slice4(&x, &[max, -1], &[min, min], &[1, 2], &[-1, -2]).unwrap();
        assert_eq!(y.shape(), &[2, 3, 2]);
        assert_eq!(flat(&y), vec![11, 9, 7, 5, 3, 1, 23, 21, 19, 17, 15, 13]);
        let y = slice4(&x, &[-1, -2, max], &[max, -1, min], &[0, 1, 2], &[1, 1, -1]).unwrap();
        assert_eq!(flat(&y), vec![19, 18, 17, 16]);
    }

    #[test]
    fn optional_inputs_and_index_dtypes() {
        let x = arange(&[2, 3, 4]);
        let (s, e) = (ints(&[0i32, 0, 3]), ints(&[20i32, 10, 4]));
        let y = slice(&x, &[Some(&s), Some(&e)]).unwrap();
        assert_eq!(y.shape(), &[2, 3, 1]);
        let axes = ints(&[0i64, -2, -1]);
        assert_eq!(slice(&x, &[Some(&s), Some(&e), Some(&axes)]).unwrap(), y);
        assert_eq!(slice(&x, &[Some(&s), Some(&e), None, None]).unwrap(), y);
        let f = Tensor::from_vec(&[2, 3], vec![0.5f32; 6]).unwrap();
        let y = slice(&f, &[Some(&ints(&[1i64])), Some(&ints(&[2i64]))]).unwrap();
        assert_eq!(y, Tensor::from_vec(&[1, 3], vec![0.5f32; 3]).unwrap());
    }

    #[test]
    fn empty_axes_and_extreme_steps() {
        let e = Tensor::from_vec::<bool>(&[0, 3], vec![]).unwrap();
        let y = slice4(&e, &[-1], &[i64::MIN], &[0], &[-1]).unwrap();
        assert_eq!(y.shape(), &[0, 3]);
        let x = arange(&[5]);
        assert_eq!(flat(&slice4(&x, &[-1], &[i64::MIN], &[0], &[i64::MIN]).unwrap()), vec![4]);
        assert_eq!(flat(&slice4(&x, &[0], &[i64::MAX], &[0], &[i64::MAX]).unwrap()), vec![0]);
    }

    #[test]
    fn errors() {
        let x = arange(&[2, 3]);
        let err = |s: &[i64], e: &[i64], a: &[i64], st: &[i64]| slice4(&x, s, e, a, st).unwrap_err().to_string();
        assert!(err(&[0], &[1], &[0], &[0]).contains("steps[0] is 0"));
        assert!(err(&[0, 0], &[1], &[0], &[1]).contains("lengths"));
        assert!(err(&[0, 0], &[1, 1], &[1, -1], &[1, 1]).contains("repeated"));
        assert!(err(&[0], &[1], &[2], &[1]).contains("out of range"));
        let fs = Tensor::from_vec(&[1], vec![0f32]).unwrap();
        assert!(slice(&x, &[Some(&fs), Some(&ints(&[1i64]))]).unwrap_err().to_string().contains("starts"));
        let two_d = Tensor::from_vec(&[1, 1], vec![0i64]).unwrap();
        assert!(slice(&x, &[Some(&two_d), Some(&ints(&[1i64]))]).is_err());
        assert!(slice(&x, &[Some(&ints(&[0i64])), None]).is_err());
        assert!(slice(&x, &[Some(&ints(&[0i64, 0, 0])), Some(&ints(&[1i64, 1, 1]))]).is_err());
        assert!(Slice {}.eval(&[Some(&x)]).is_err());
    }

    /// Infers with data of shape `data` and the given argument types and values.
    fn infer(data: &str, args: &[Option<(&str, Option<Tensor>)>]) -> Result<Shape, OpError> {
        let dty = TypeInfo::new(DType::F32, Shape::parse(data).unwrap());
        let tys: Vec<Option<(TypeInfo, Option<Tensor>)>> = args
            .iter()
            .map(|a| a.clone().map(|(s, v)| (TypeInfo::new(DType::I64, Shape::parse(s).unwrap()), v)))
            .collect();
        let mut ins = vec![Some(InferIn { ty: &dty, value: None, sym: None })];
        ins.extend(tys.iter().map(|a| a.as_ref().map(|(ty, v)| InferIn { ty, value: v.as_ref(), sym: None })));
        Slice {}.infer(&ins).map(|mut v| v.remove(0).shape)
    }

    fn c(v: &[i64]) -> Option<(&'static str, Option<Tensor>)> {
        Some((["[0]", "[1]", "[2]", "[3]"][v.len()], Some(ints(v))))
    }

    #[test]
    fn infer_with_constant_arguments() {
        let s = |t: &str| Shape::parse(t).unwrap();
        let max = i64::MAX;
        assert_eq!(infer("[20, 10, 5]", &[c(&[0, 0]), c(&[3, 10]), c(&[0, 1])]).unwrap(), s("[3, 10, 5]"));
        assert_eq!(infer("[b, seq, 8]", &[c(&[0, 2]), c(&[max, 6]), c(&[1, 2])]).unwrap(), s("[b, seq, 4]"));
        assert_eq!(infer("[seq<=16]", &[c(&[-1]), c(&[-17]), c(&[0]), c(&[-1])]).unwrap(), s("[seq<=16]"));
        assert_eq!(infer("[seq]", &[c(&[0]), c(&[2147483647])]).unwrap(), s("[seq]"));
        // A constant end on a symbolic axis: the smaller of the two (an atom).
        assert_eq!(infer("[seq]", &[c(&[0]), c(&[1])]).unwrap().0[0].to_string(), "min(1,seq)");
        assert_eq!(infer("[seq<=16]", &[c(&[2]), c(&[15])]).unwrap().0[0].to_string(), "min(15,seq)-2");
        assert!(infer("[4]", &[c(&[0]), c(&[1]), c(&[0]), c(&[0])]).is_err());
    }

    #[test]
    fn infer_with_run_time_arguments() {
        let dyn1 = || Some(("[1]", None));
        let out = infer("[2, 3, 4]", &[dyn1(), dyn1(), c(&[-2])]).unwrap();
        assert!(out.0[1].is_unknown() && out.0[0] == Dim::Known(2) && out.0[2] == Dim::Known(4));
        let out = infer("[2, 3, 4]", &[dyn1(), dyn1()]).unwrap();
        assert!(out.0[0].is_unknown() && out.0[1] == Dim::Known(3));
        let out = infer("[2, 3, 4]", &[c(&[0]), c(&[1]), dyn1()]).unwrap();
        assert!(out.0.iter().all(Dim::is_unknown));
        let out = infer("[2, 3]", &[Some(("[n]", None)), Some(("[n]", None))]).unwrap();
        assert!(out.0.iter().all(Dim::is_unknown));
        assert!(infer("[2, 3]", &[Some(("[3]", None)), Some(("[3]", None))]).is_err());
        assert!(infer("[2, 3]", &[Some(("[1, 1]", None)), dyn1()]).is_err());
    }

    /// CPython's slice semantics (`slice.indices`), which the ONNX spec follows except in one
    /// corner: with a negative step, a start before the beginning is clamped to 0 (one
    /// element) by the spec, where Python makes it -1 (empty).
    fn python_indices(n: i64, start: i64, stop: i64, step: i64) -> Vec<i64> {
        let adjust = |v: i64, is_start: bool| {
            if v < 0 {
                let v = v.saturating_add(n);
                if v >= 0 {
                    v
                } else if step < 0 && !(is_start && n > 0) {
                    -1
                } else {
                    0
                }
            } else if v >= n {
                if step < 0 { n - 1 } else { n }
            } else {
                v
            }
        };
        let (mut i, stop) = (adjust(start, true), adjust(stop, false));
        let mut out = vec![];
        while (step > 0 && i < stop) || (step < 0 && i > stop) {
            out.push(i);
            i += step;
        }
        out
    }

    fn bound() -> impl Strategy<Value = i64> {
        prop_oneof![-8i64..8, Just(i64::MAX), Just(i64::MIN), Just(i64::from(i32::MAX))]
    }

    proptest! {
        #[test]
        fn matches_python_slicing(
            rows in 0usize..5, cols in 0usize..6,
            start in bound(), end in bound(),
            step in prop_oneof![-3i64..0, 1i64..4],
            axis in 0i64..2,
        ) {
            let x = arange(&[rows, cols]);
            let y = slice4(&x, &[start], &[end], &[axis], &[step]).unwrap();
            let (r, c) = (rows as i64, cols as i64);
            let idx = python_indices(if axis == 0 { r } else { c }, start, end, step);
            let want: Vec<i64> = if axis == 0 {
                idx.iter().flat_map(|&i| (0..c).map(move |j| i * c + j)).collect()
            } else {
                (0..r).flat_map(|i| idx.iter().map(move |&j| i * c + j)).collect()
            };
            prop_assert_eq!(y.shape()[axis as usize], idx.len());
            prop_assert_eq!(flat(&y), want);
        }
    }
}
