//! Matrix products: MatMul (NumPy batching), Gemm, MatMulInteger.
//!
//! Floats (f16 too) accumulate in f32. Integer products accumulate in i64 with wrapping
//! arithmetic and are then truncated to the output dtype, which equals wrapping arithmetic in
//! that dtype (NumPy's and the ONNX reference's behavior on overflow).

use super::broadcast::{broadcast_dims, broadcast_shapes, view_as};
use super::check_alloc;
use super::elementwise::to_i64_array;
use super::{InferIn, OpDef, arity, opt, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::{ArrayD, Dimension, Ix2, IxDyn, Zip};
use serde::{Deserialize, Serialize};

/// Multiply-accumulate in the types products are computed in.
trait Mac: Copy + Default {
    fn mac(self, a: Self, b: Self) -> Self;
}

impl Mac for f32 {
    fn mac(self, a: f32, b: f32) -> f32 {
        self + a * b
    }
}

impl Mac for i64 {
    fn mac(self, a: i64, b: i64) -> i64 {
        self.wrapping_add(a.wrapping_mul(b))
    }
}

/// `out` [m, n] = `a` [m, k] · `b` [k, n], all row-major.
fn mm<T: Mac>(a: &[T], b: &[T], (m, k, n): (usize, usize, usize), out: &mut [T]) {
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).fold(T::default(), |acc, p| acc.mac(a[i * k + p], b[p * n + j]));
        }
    }
}

/// Concrete operand dims split NumPy-style.
struct MatDims {
    /// Batch dims of each operand, left-padded with 1s to the output batch rank.
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    batch: Vec<usize>,
    mkn: (usize, usize, usize),
    out: Vec<usize>,
}

fn k_mismatch(a: impl std::fmt::Display, b: impl std::fmt::Display, ka: usize, kb: usize) -> OpError {
    invalid(format!("inner dims differ: a {a} has K = {ka}, b {b} has K = {kb}"))
}

/// A product operand's dims split NumPy-style into (batch dims, rows, columns): a vector is
/// one row as the left operand (`is_a`), one column as the right; `None` for a scalar. The
/// one definition the IR's inference and codegen's product kernels share.
pub fn operand_dims(d: &[usize], is_a: bool) -> Option<(&[usize], usize, usize)> {
    match d {
        [] => None,
        [k] if is_a => Some((&[], 1, *k)),
        [k] => Some((&[], *k, 1)),
        [rest @ .., r, c] => Some((rest, *r, *c)),
    }
}

fn mat_dims(a: &[usize], b: &[usize]) -> Result<MatDims, OpError> {
    let scalar = |x: &str| invalid(format!("matrix product operand {x} is a scalar; rank ≥ 1 is required"));
    let (ab, m, ka) = operand_dims(a, true).ok_or_else(|| scalar("a"))?;
    let (bb, kb, n) = operand_dims(b, false).ok_or_else(|| scalar("b"))?;
    if ka != kb {
        return Err(k_mismatch(format!("{a:?}"), format!("{b:?}"), ka, kb));
    }
    let batch = broadcast_dims(ab, bb)?;
    let pad = |d: &[usize]| [vec![1; batch.len() - d.len()], d.to_vec()].concat();
    let mut out = batch.clone();
    out.extend((a.len() >= 2).then_some(m));
    out.extend((b.len() >= 2).then_some(n));
    Ok(MatDims { a_batch: pad(ab), b_batch: pad(bb), batch, mkn: (m, ka, n), out })
}

/// The output shape of a NumPy matmul of static shapes.
fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, OpError> {
    let (ab, m, ka) = match a.0.as_slice() {
        [] => return Err(invalid("matrix product operand a is a scalar; rank ≥ 1 is required")),
        [k] => (&[][..], None, k),
        [rest @ .., m, k] => (rest, Some(m), k),
    };
    let (bb, kb, n) = match b.0.as_slice() {
        [] => return Err(invalid("matrix product operand b is a scalar; rank ≥ 1 is required")),
        [k] => (&[][..], k, None),
        [rest @ .., k, n] => (rest, k, Some(n)),
    };
    if let (Some(x), Some(y)) = (ka.known(), kb.known())
        && x != y
    {
        return Err(k_mismatch(a, b, x, y));
    }
    let mut out = broadcast_shapes(&Shape(ab.to_vec()), &Shape(bb.to_vec()))?.0;
    out.extend(m.cloned());
    out.extend(n.cloned());
    Ok(Shape(out))
}

/// Row-major offset of a batch index into operand batch dims (size-1 dims broadcast).
fn batch_offset(idx: &[usize], dims: &[usize]) -> usize {
    idx.iter().zip(dims).fold(0, |off, (&i, &d)| off * d + if d == 1 { 0 } else { i })
}

/// NumPy matmul of concrete arrays; `dtype` sizes the output for the allocation check.
fn batched_matmul<T: Mac>(a: &ArrayD<T>, b: &ArrayD<T>, dtype: DType) -> Result<ArrayD<T>, OpError> {
    let d = mat_dims(a.shape(), b.shape())?;
    check_alloc(&d.out, dtype.size())?;
    let (m, k, n) = d.mkn;
    let (av, bv): (Vec<T>, Vec<T>) = (a.iter().copied().collect(), b.iter().copied().collect());
    let mut out = vec![T::default(); d.out.iter().product()];
    for (i, idx) in ndarray::indices(d.batch.as_slice()).into_iter().enumerate() {
        let ao = batch_offset(idx.slice(), &d.a_batch) * m * k;
        let bo = batch_offset(idx.slice(), &d.b_batch) * k * n;
        mm(&av[ao..ao + m * k], &bv[bo..bo + k * n], d.mkn, &mut out[i * m * n..(i + 1) * m * n]);
    }
    ArrayD::from_shape_vec(IxDyn(&d.out), out).map_err(|e| invalid(e.to_string()))
}

/// i64 results truncated (wrapping) to an i32 or i64 tensor.
fn from_i64(dtype: DType, a: ArrayD<i64>) -> Tensor {
    match dtype {
        DType::I32 => Tensor::I32(a.mapv(|v| v as i32)),
        _ => Tensor::I64(a),
    }
}

/// The common dtype of MatMul/Gemm operands: all equal, and f32, f16, i32 or i64.
fn product_dtype(op: &str, dtypes: &[DType]) -> Result<DType, OpError> {
    let first = dtypes.first().copied().ok_or_else(|| invalid(format!("{op} has no operands")))?;
    if let Some(other) = dtypes.iter().find(|&&d| d != first) {
        return Err(invalid(format!("{op} operands must share a dtype, got {first} and {other}")));
    }
    match first {
        DType::F32 | DType::F16 | DType::I32 | DType::I64 => Ok(first),
        other => Err(invalid(format!("{op} takes f32, f16, i32 or i64, got {other}"))),
    }
}

/// Checks `from` broadcasts unidirectionally to `to` (where dims are known).
fn check_unidirectional(what: &str, from: &Shape, to: &[Dim]) -> Result<(), OpError> {
    let bad = || invalid(format!("{what} of shape {from} does not broadcast to {}", Shape(to.to_vec())));
    if from.rank() > to.len() {
        return Err(bad());
    }
    for (f, t) in from.0.iter().rev().zip(to.iter().rev()) {
        if let (Some(x), Some(y)) = (f.known(), t.known())
            && x != 1
            && x != y
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// `2·outputs·K`: two per multiply-accumulate.
fn product_flops(outs: &[TypeInfo], k: Option<&Dim>) -> u64 {
    let outputs = outs.first().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
    let k = k.and_then(Dim::upper).unwrap_or(0) as u64;
    outputs.saturating_mul(k).saturating_mul(2)
}

fn last_dim(t: Option<&Option<&TypeInfo>>) -> Option<Dim> {
    t.copied().flatten().and_then(|t| t.shape.0.last().cloned())
}

/// Inputs `a` [..., M, K] and `b` [..., K, N] (1-D operands promoted as NumPy does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMul {}

impl OpDef for MatMul {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (a, b) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        let dtype = product_dtype("MatMul", &[a.dtype, b.dtype])?;
        Ok(vec![TypeInfo::new(dtype, matmul_shape(&a.shape, &b.shape)?)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (a, b) = (req(ins, 0)?, req(ins, 1)?);
        let dtype = product_dtype("MatMul", &[a.dtype(), b.dtype()])?;
        Ok(vec![if dtype.is_float() {
            Tensor::from_f32(dtype, batched_matmul(&a.to_f32(), &b.to_f32(), dtype)?)
        } else {
            from_i64(dtype, batched_matmul(&to_i64_array(a)?, &to_i64_array(b)?, dtype)?)
        }])
    }

    /// `2·M·N·K·batch`.
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        product_flops(outs, last_dim(ins.first()).as_ref())
    }
}

/// `Y = alpha·A'·B' + beta·C`; A' = Aᵀ if `trans_a`, C optional and unidirectionally broadcast.
///
/// As in the ONNX reference, C is ignored when `beta` is 0. Integer operands use exact
/// integer arithmetic when `alpha` is 1 and `beta` is 0 or 1; otherwise the product is scaled in
/// f64 and truncated toward zero (saturating), as NumPy's `astype` does in range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of C.
    pub beta: f32,
    /// Transpose A.
    pub trans_a: bool,
    /// Transpose B.
    pub trans_b: bool,
}

impl Gemm {
    fn check(&self, a: &TypeInfo, b: &TypeInfo, c: Option<&TypeInfo>) -> Result<TypeInfo, OpError> {
        let mut dtypes = vec![a.dtype, b.dtype];
        dtypes.extend(c.map(|c| c.dtype));
        let dtype = product_dtype("Gemm", &dtypes)?;
        let ([a0, a1], [b0, b1]) = (a.shape.0.as_slice(), b.shape.0.as_slice()) else {
            return Err(invalid(format!("Gemm operands must be 2-D, got {} and {}", a.shape, b.shape)));
        };
        let (m, ka) = if self.trans_a { (a1, a0) } else { (a0, a1) };
        let (kb, n) = if self.trans_b { (b1, b0) } else { (b0, b1) };
        if let (Some(x), Some(y)) = (ka.known(), kb.known())
            && x != y
        {
            return Err(k_mismatch(&a.shape, &b.shape, x, y));
        }
        let out = vec![m.clone(), n.clone()];
        if let Some(c) = c {
            check_unidirectional("Gemm C", &c.shape, &out)?;
        }
        Ok(TypeInfo::new(dtype, Shape(out)))
    }

    /// A'·B' for 2-D arrays.
    fn product<T: Mac>(&self, a: &ArrayD<T>, b: &ArrayD<T>, dtype: DType) -> Result<ArrayD<T>, OpError> {
        let two_d = |x: &ArrayD<T>, trans: bool| -> Result<ArrayD<T>, OpError> {
            let x = x.view().into_dimensionality::<Ix2>().map_err(|e| invalid(e.to_string()))?;
            let x = if trans { x.reversed_axes() } else { x };
            Ok(x.to_owned().into_dyn())
        };
        batched_matmul(&two_d(a, self.trans_a)?, &two_d(b, self.trans_b)?, dtype)
    }
}

impl OpDef for Gemm {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 3)?;
        let (a, b) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        Ok(vec![self.check(a, b, opt(ins, 2).map(|c| c.ty))?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 3)?;
        let (a, b) = (req(ins, 0)?, req(ins, 1)?);
        let c = opt(ins, 2).filter(|_| self.beta != 0.0);
        let ty_of = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let ty = self.check(&ty_of(a), &ty_of(b), opt(ins, 2).map(ty_of).as_ref())?;
        let (alpha, beta) = (self.alpha, self.beta);
        if ty.dtype.is_float() {
            let y = self.product(&a.to_f32(), &b.to_f32(), ty.dtype)?.mapv(|v| alpha * v);
            let y = match c {
                None => y,
                Some(c) => {
                    let c = c.to_f32();
                    Zip::from(&y).and(&view_as(&c, y.shape())?).map_collect(|&v, &c| v + beta * c)
                }
            };
            return Ok(vec![Tensor::from_f32(ty.dtype, y)]);
        }
        // Wrap the product to the dtype first, as NumPy's integer dot does.
        let p = from_i64(ty.dtype, self.product(&to_i64_array(a)?, &to_i64_array(b)?, ty.dtype)?);
        let p = to_i64_array(&p)?;
        let c = c.map(to_i64_array).transpose()?;
        let c = c.as_ref().map(|c| view_as(c, p.shape())).transpose()?;
        Ok(vec![match c {
            None if alpha == 1.0 => from_i64(ty.dtype, p),
            Some(c) if alpha == 1.0 && beta == 1.0 => {
                from_i64(ty.dtype, Zip::from(&p).and(&c).map_collect(|&v, &c| v.wrapping_add(c)))
            }
            None => Tensor::from_f64(ty.dtype, p.mapv(|v| f64::from(alpha) * v as f64)),
            Some(c) => Tensor::from_f64(
                ty.dtype,
                Zip::from(&p).and(&c).map_collect(|&v, &c| f64::from(alpha) * v as f64 + f64::from(beta) * c as f64),
            ),
        }])
    }

    /// `2·M·N·K`.
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        let a = ins.first().copied().flatten();
        let k = a.and_then(|a| a.shape.0.get(if self.trans_a { 0 } else { 1 }));
        product_flops(outs, k)
    }
}

/// Inputs `a`, `b` (i8/u8), optional `a_zero_point`, `b_zero_point`; i32 output.
///
/// A zero point is a scalar (any shape of one element), a 1-D vector (`a`: one per row M, for
/// `a` of rank ≥ 2; `b`: one per column N), or an N-D tensor that broadcasts unidirectionally to
/// its operand (`[D1, D2, M, 1]` for `a`, `[D1, D2, 1, N]` for `b`). Sums wrap in i32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMulInteger {}

impl MatMulInteger {
    /// The zero point's shape aligned to broadcast against its operand `x`.
    fn zero_point_shape(zp: &Shape, x: &Shape, per_row: bool) -> Result<Shape, OpError> {
        if zp.0.iter().all(|d| *d == Dim::Known(1)) {
            return Ok(Shape(vec![]));
        }
        let aligned = match (zp.rank(), per_row) {
            (1, true) if x.rank() >= 2 => Shape(vec![zp.0[0].clone(), Dim::Known(1)]),
            (1, true) => {
                return Err(invalid(format!("a_zero_point of shape {zp} must have one element for 1-D a {x}")));
            }
            _ => zp.clone(),
        };
        let what = if per_row { "a_zero_point" } else { "b_zero_point" };
        check_unidirectional(what, &aligned, &x.0)?;
        Ok(aligned)
    }

    fn check(ins: &[Option<&TypeInfo>]) -> Result<TypeInfo, OpError> {
        arity(ins, 2, 4)?;
        let (a, b) = (req(ins, 0)?, req(ins, 1)?);
        for (i, name, operand) in [(0, "a", a), (1, "b", b)] {
            if !matches!(operand.dtype, DType::I8 | DType::U8) {
                return Err(invalid(format!("MatMulInteger {name} must be i8 or u8, got {}", operand.dtype)));
            }
            if let Some(zp) = opt(ins, i + 2) {
                if zp.dtype != operand.dtype {
                    return Err(invalid(format!(
                        "MatMulInteger {name}_zero_point is {} but {name} is {}",
                        zp.dtype, operand.dtype
                    )));
                }
                Self::zero_point_shape(&zp.shape, &operand.shape, i == 0)?;
            }
        }
        Ok(TypeInfo::new(DType::I32, matmul_shape(&a.shape, &b.shape)?))
    }

    /// `x - zp` widened to i64, with the zero point broadcast.
    fn centered(x: &Tensor, zp: Option<&Tensor>, per_row: bool) -> Result<ArrayD<i64>, OpError> {
        let xv = to_i64_array(x)?;
        let Some(zp) = zp else { return Ok(xv) };
        let aligned = Self::zero_point_shape(&zp.static_shape(), &x.static_shape(), per_row)?;
        let dims = aligned.as_known().ok_or_else(|| invalid("zero point shape is not concrete"))?;
        let z = ArrayD::from_shape_vec(IxDyn(&dims), to_i64_array(zp)?.iter().copied().collect())
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Zip::from(&xv).and(&view_as(&z, xv.shape())?).map_collect(|&v, &z| v - z))
    }
}

impl OpDef for MatMulInteger {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        let tys = super::input_types(ins);
        Ok(vec![Self::check(&tys)?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys: Vec<Option<TypeInfo>> =
            ins.iter().map(|t| t.map(|t| TypeInfo::new(t.dtype(), t.static_shape()))).collect();
        Self::check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let a = Self::centered(req(ins, 0)?, opt(ins, 2), true)?;
        let b = Self::centered(req(ins, 1)?, opt(ins, 3), false)?;
        Ok(vec![from_i64(DType::I32, batched_matmul(&a, &b, DType::I32)?)])
    }

    /// `2·M·N·K·batch`.
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        product_flops(outs, last_dim(ins.first()).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape, v).unwrap()
    }
    fn iota(shape: &[usize]) -> Tensor {
        f(shape, (0..shape.iter().product::<usize>()).map(|v| v as f32).collect())
    }
    fn vals(t: &Tensor) -> Vec<f32> {
        t.to_f32().iter().copied().collect()
    }
    fn mm2(a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        Ok(MatMul {}.eval(&[Some(a), Some(b)])?.remove(0))
    }
    fn shape(s: &str) -> Shape {
        Shape::parse(s).unwrap()
    }
    fn infer_mm(a: &str, b: &str) -> Result<Shape, OpError> {
        let (a, b) = (TypeInfo::new(DType::F32, shape(a)), TypeInfo::new(DType::F32, shape(b)));
        Ok(MatMul {}
            .infer(&[
                Some(InferIn { ty: &a, value: None, sym: None }),
                Some(InferIn { ty: &b, value: None, sym: None }),
            ])?
            .remove(0)
            .shape)
    }

    #[test]
    fn matmul_2d_and_batched_values() {
        // [[0,1,2],[3,4,5]] · [[0,1],[2,3],[4,5]] = [[10,13],[28,40]].
        let y = mm2(&iota(&[2, 3]), &iota(&[3, 2])).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[2usize, 2][..], vec![10., 13., 28., 40.]));
        // Batch 2 of [1,2]·[2,1] with b broadcast over the batch: a rows [0,1], [2,3]; b [1, 2]ᵀ.
        let y = mm2(&iota(&[2, 1, 2]), &f(&[2, 1], vec![1., 2.])).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[2usize, 1, 1][..], vec![2., 8.]));
        // Broadcast batch dims [3,1] × [1,2] → [3,2].
        let y = mm2(&iota(&[3, 1, 1, 2]), &iota(&[1, 2, 2, 1])).unwrap();
        assert_eq!(y.shape(), &[3, 2, 1, 1]);
        // numpy: a[i]·b[j] with a[i] = [2i, 2i+1], b[j] = [2j, 2j+1].
        assert_eq!(vals(&y), [1., 3., 3., 13., 5., 23.]);
    }

    #[test]
    fn matmul_vector_promotion() {
        let v = f(&[3], vec![1., 2., 3.]);
        let y = mm2(&v, &v).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[][..], vec![14.]));
        let y = mm2(&v, &iota(&[2, 3, 1])).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[2usize, 1][..], vec![8., 26.]));
        let y = mm2(&iota(&[1, 2, 2, 3]), &v).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[1usize, 2, 2][..], vec![8., 26., 44., 62.]));
        assert_eq!(infer_mm("[k]", "[b, k, n]").unwrap(), shape("[b, n]"));
        assert_eq!(infer_mm("[b, s, 4]", "[4]").unwrap(), shape("[b, s]"));
        assert_eq!(infer_mm("[4]", "[4]").unwrap(), shape("[]"));
    }

    #[test]
    fn matmul_dtypes() {
        let a = Tensor::from_f32(DType::F16, iota(&[2, 3]).to_f32());
        let b = Tensor::from_f32(DType::F16, iota(&[3, 2]).to_f32());
        let y = mm2(&a, &b).unwrap();
        assert_eq!((y.dtype(), vals(&y)), (DType::F16, vec![10., 13., 28., 40.]));
        // i32 wraps like NumPy: 65536·65536 = 2^32 ≡ 0, plus 3·1.
        let a = Tensor::from_vec(&[1, 2], vec![65536i32, 3]).unwrap();
        let b = Tensor::from_vec(&[2, 1], vec![65536i32, 1]).unwrap();
        assert_eq!(mm2(&a, &b).unwrap(), Tensor::from_vec(&[1, 1], vec![3i32]).unwrap());
        let a = Tensor::from_vec(&[1, 2], vec![1i64 << 40, -2]).unwrap();
        let b = Tensor::from_vec(&[2], vec![4i64, 5]).unwrap();
        assert_eq!(mm2(&a, &b).unwrap(), Tensor::from_vec(&[1], vec![(1i64 << 42) - 10]).unwrap());
    }

    #[test]
    fn matmul_empty_dims() {
        // K = 0 gives zeros; M = 0 or an empty batch gives empty outputs.
        let y = mm2(&f(&[2, 0], vec![]), &f(&[0, 3], vec![])).unwrap();
        assert_eq!((y.shape(), vals(&y)), (&[2usize, 3][..], vec![0.; 6]));
        assert_eq!(mm2(&f(&[0, 2], vec![]), &iota(&[2, 3])).unwrap().shape(), &[0, 3]);
        assert_eq!(mm2(&f(&[0, 1, 2], vec![]), &iota(&[2, 3])).unwrap().shape(), &[0, 1, 3]);
    }

    #[test]
    fn matmul_errors() {
        assert!(mm2(&iota(&[2, 3]), &iota(&[2, 3])).is_err());
        assert!(mm2(&Tensor::scalar(1.0f32), &iota(&[2])).is_err());
        assert!(mm2(&iota(&[2]), &Tensor::scalar(1.0f32)).is_err());
        assert!(mm2(&iota(&[2, 2, 3]), &iota(&[3, 3, 2])).is_err());
        let i = Tensor::from_vec(&[2, 2], vec![1i32; 4]).unwrap();
        assert!(mm2(&iota(&[2, 2]), &i).is_err());
        let u = Tensor::from_vec(&[2, 2], vec![1u8; 4]).unwrap();
        assert!(mm2(&u, &u).is_err());
        assert!(MatMul {}.eval(&[Some(&iota(&[2, 2]))]).is_err());
        assert!(MatMul {}.eval(&[Some(&iota(&[2, 2])), None]).is_err());
        // Absurd sizes are refused before allocating.
        let a = ArrayD::<f32>::zeros(IxDyn(&[1 << 20, 1, 0]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[1 << 20, 0, 1]));
        assert!(mm2(&Tensor::F32(a.clone()), &Tensor::F32(b.clone())).is_ok());
        let a2 = a.into_shape_with_order(IxDyn(&[1 << 20, 1, 1, 0])).unwrap();
        assert!(
            mm2(&Tensor::F32(a2), &Tensor::F32(b.into_shape_with_order(IxDyn(&[1, 1 << 20, 0, 1])).unwrap())).is_err()
        );
    }

    #[test]
    fn matmul_infer_symbolic_and_flops() {
        assert_eq!(infer_mm("[b, s, 64]", "[64, 128]").unwrap(), shape("[b, s, 128]"));
        assert_eq!(infer_mm("[b, 1, s, k]", "[h, k2, t]").unwrap(), shape("[b, h, s, t]"));
        assert!(infer_mm("[b, s, 64]", "[32, 128]").is_err());
        assert!(infer_mm("[2, s, 64]", "[3, 64, 1]").is_err());
        let (a, y) = (TypeInfo::new(DType::F32, shape("[2, 3, 4]")), TypeInfo::new(DType::F32, shape("[2, 3, 5]")));
        assert_eq!(MatMul {}.flops(&[Some(&a), None], &[y]), 2 * 30 * 4);
    }

    fn gemm(alpha: f32, beta: f32, trans_a: bool, trans_b: bool) -> Gemm {
        Gemm { alpha, beta, trans_a, trans_b }
    }

    #[test]
    fn gemm_values() {
        let a = iota(&[2, 3]);
        let b = iota(&[3, 2]);
        let y = gemm(1.0, 1.0, false, false).eval(&[Some(&a), Some(&b)]).unwrap().remove(0);
        assert_eq!(vals(&y), [10., 13., 28., 40.]);
        // Transposed operands: Aᵀ [3,2]ᵀ and Bᵀ give the same product.
        let at = iota(&[3, 2]);
        let y = gemm(1.0, 1.0, true, true).eval(&[Some(&at), Some(&iota(&[2, 3]))]).unwrap().remove(0);
        // numpy: iota(3,2).T @ iota(2,3).T = [[10,28],[13,40]].
        assert_eq!(vals(&y), [10., 28., 13., 40.]);
        // alpha, beta, C as a row [1, 2], a column [2, 1], a scalar.
        let g = gemm(0.5, 2.0, false, false);
        let row = f(&[1, 2], vec![1., 2.]);
        let y = g.eval(&[Some(&a), Some(&b), Some(&row)]).unwrap().remove(0);
        assert_eq!(vals(&y), [7., 10.5, 16., 24.]);
        let col = f(&[2, 1], vec![1., 2.]);
        let y = g.eval(&[Some(&a), Some(&b), Some(&col)]).unwrap().remove(0);
        assert_eq!(vals(&y), [7., 8.5, 18., 24.]);
        let y = g.eval(&[Some(&a), Some(&b), Some(&Tensor::scalar(1.0f32))]).unwrap().remove(0);
        assert_eq!(vals(&y), [7., 8.5, 16., 22.]);
        // beta = 0 ignores C entirely, NaN included.
        let nan = f(&[2, 2], vec![f32::NAN; 4]);
        let y = gemm(1.0, 0.0, false, false).eval(&[Some(&a), Some(&b), Some(&nan)]).unwrap().remove(0);
        assert_eq!(vals(&y), [10., 13., 28., 40.]);
        let ah = Tensor::from_f32(DType::F16, a.to_f32());
        let bh = Tensor::from_f32(DType::F16, b.to_f32());
        let y = g.eval(&[Some(&ah), Some(&bh)]).unwrap().remove(0);
        assert_eq!((y.dtype(), vals(&y)), (DType::F16, vec![5., 6.5, 14., 20.]));
    }

    #[test]
    fn gemm_integers() {
        let a = Tensor::from_vec(&[1, 2], vec![3i32, 4]).unwrap();
        let b = Tensor::from_vec(&[2, 1], vec![5i32, -7]).unwrap();
        let c = Tensor::from_vec(&[1], vec![i32::MAX]).unwrap();
        // Exact integer path wraps: -13 + i32::MAX.
        let y = gemm(1.0, 1.0, false, false).eval(&[Some(&a), Some(&b), Some(&c)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_vec(&[1, 1], vec![i32::MAX - 13]).unwrap());
        // Scaled path truncates toward zero: 0.5·(-13) + 0.25·1 = -6.25 → -6.
        let one = Tensor::from_vec(&[1], vec![1i32]).unwrap();
        let y = gemm(0.5, 0.25, false, false).eval(&[Some(&a), Some(&b), Some(&one)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_vec(&[1, 1], vec![-6i32]).unwrap());
        let (a64, b64) =
            (Tensor::from_vec(&[1, 1], vec![1i64 << 60]).unwrap(), Tensor::from_vec(&[1, 1], vec![3i64]).unwrap());
        let y = gemm(1.0, 1.0, false, false).eval(&[Some(&a64), Some(&b64)]).unwrap().remove(0);
        assert_eq!(y, Tensor::from_vec(&[1, 1], vec![(1i64 << 60).wrapping_mul(3)]).unwrap());
    }

    #[test]
    fn gemm_errors_and_infer() {
        let g = gemm(1.0, 1.0, false, false);
        let (a, b) = (iota(&[2, 3]), iota(&[3, 2]));
        assert!(g.eval(&[Some(&a), Some(&a)]).is_err());
        assert!(g.eval(&[Some(&iota(&[2, 3, 1])), Some(&b)]).is_err());
        assert!(g.eval(&[Some(&iota(&[3])), Some(&b)]).is_err());
        assert!(g.eval(&[Some(&a), Some(&b), Some(&iota(&[3]))]).is_err());
        assert!(g.eval(&[Some(&a), Some(&b), Some(&iota(&[1, 2, 2]))]).is_err());
        let bi = Tensor::from_vec(&[3, 2], vec![1i32; 6]).unwrap();
        assert!(g.eval(&[Some(&a), Some(&bi)]).is_err());
        assert!(g.eval(&[Some(&a)]).is_err());
        let ty = |s: &str| TypeInfo::new(DType::F32, shape(s));
        let (ta, tb, tc) = (ty("[k, m]"), ty("[n, k]"), ty("[n]"));
        let gt = gemm(1.0, 1.0, true, true);
        let ins = [
            Some(InferIn { ty: &ta, value: None, sym: None }),
            Some(InferIn { ty: &tb, value: None, sym: None }),
            Some(InferIn { ty: &tc, value: None, sym: None }),
        ];
        assert_eq!(gt.infer(&ins).unwrap()[0].shape, shape("[m, n]"));
        let (a2, y) = (ty("[7, 3]"), ty("[3, 5]"));
        assert_eq!(gt.flops(&[Some(&a2), None], &[y]), 2 * 15 * 7);
    }

    fn mmi(ins: &[Option<&Tensor>]) -> Result<Tensor, OpError> {
        Ok(MatMulInteger {}.eval(ins)?.remove(0))
    }

    #[test]
    fn matmul_integer_zero_points() {
        // ONNX test_matmulinteger.
        let a = Tensor::from_vec(&[4, 3], vec![11u8, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]).unwrap();
        let b = Tensor::from_vec(&[3, 2], vec![1u8, 4, 2, 5, 3, 6]).unwrap();
        let (azp, bzp) = (Tensor::from_vec(&[1], vec![12u8]).unwrap(), Tensor::from_vec(&[1], vec![0u8]).unwrap());
        let y = mmi(&[Some(&a), Some(&b), Some(&azp), Some(&bzp)]).unwrap();
        let want = vec![-38i32, -83, -44, -98, -50, -113, -56, -128];
        assert_eq!(y, Tensor::from_vec(&[4, 2], want).unwrap());
        // Per-row a zero point [M] and per-column b zero point [N]; numpy:
        // (a - [[1],[2],[3],[4]]) @ (b - [1, 2]).
        let azp = Tensor::from_vec(&[4], vec![1u8, 2, 3, 4]).unwrap();
        let bzp = Tensor::from_vec(&[2], vec![1u8, 2]).unwrap();
        let y = mmi(&[Some(&a), Some(&b), Some(&azp), Some(&bzp)]).unwrap();
        assert_eq!(y, Tensor::from_vec(&[4, 2], vec![10i32, 46, 4, 28, -2, 10, -8, -8]).unwrap());
        // Same with N-D zero points [1, 4, 1] / [1, 1, 2] on batched operands.
        let (a3, b3) = (a.reshaped(&[1, 4, 3]).unwrap(), b.reshaped(&[1, 3, 2]).unwrap());
        let y3 = mmi(&[
            Some(&a3),
            Some(&b3),
            Some(&azp.reshaped(&[1, 4, 1]).unwrap()),
            Some(&bzp.reshaped(&[1, 1, 2]).unwrap()),
        ])
        .unwrap();
        assert_eq!(y3, y.reshaped(&[1, 4, 2]).unwrap());
        // Mixed i8 × u8 without zero points; no overflow at the extremes.
        let a = Tensor::from_vec(&[1, 2], vec![-128i8, -128]).unwrap();
        let b = Tensor::from_vec(&[2, 1], vec![255u8, 255]).unwrap();
        assert_eq!(mmi(&[Some(&a), Some(&b)]).unwrap(), Tensor::from_vec(&[1, 1], vec![-65280i32]).unwrap());
        let i8zp = Tensor::scalar(-128i8);
        assert_eq!(mmi(&[Some(&a), Some(&b), Some(&i8zp)]).unwrap(), Tensor::from_vec(&[1, 1], vec![0i32]).unwrap());
    }

    #[test]
    fn matmul_integer_errors() {
        let a = Tensor::from_vec(&[2, 3], vec![1u8; 6]).unwrap();
        let b = Tensor::from_vec(&[3, 2], vec![1u8; 6]).unwrap();
        let i8zp = Tensor::scalar(1i8);
        assert!(mmi(&[Some(&a), Some(&b), Some(&i8zp)]).is_err());
        let bad_row = Tensor::from_vec(&[3], vec![1u8; 3]).unwrap();
        assert!(mmi(&[Some(&a), Some(&b), Some(&bad_row)]).is_err());
        assert!(mmi(&[Some(&a), Some(&b), None, Some(&bad_row)]).is_err());
        let v = Tensor::from_vec(&[3], vec![1u8; 3]).unwrap();
        assert!(mmi(&[Some(&v), Some(&b), Some(&Tensor::from_vec(&[2], vec![1u8; 2]).unwrap())]).is_err());
        let f = iota(&[2, 3]);
        assert!(mmi(&[Some(&f), Some(&b)]).is_err());
        assert!(mmi(&[Some(&a), Some(&a)]).is_err());
        assert!(mmi(&[Some(&a), Some(&b), None, None, None]).is_err());
        let ty = TypeInfo::new(DType::U8, shape("[s, 3]"));
        let tb = TypeInfo::new(DType::U8, shape("[3, 2]"));
        let out = MatMulInteger {}
            .infer(&[
                Some(InferIn { ty: &ty, value: None, sym: None }),
                Some(InferIn { ty: &tb, value: None, sym: None }),
            ])
            .unwrap();
        assert_eq!(out[0], TypeInfo::new(DType::I32, shape("[s, 2]")));
    }

    /// Independent reference: ndarray broadcasting of the promoted operands, then an explicit
    /// sum per output element.
    fn reference(a: &ArrayD<i64>, b: &ArrayD<i64>) -> ArrayD<i64> {
        let a2 = if a.ndim() == 1 { a.clone().insert_axis(ndarray::Axis(0)) } else { a.clone() };
        let b2 = if b.ndim() == 1 { b.clone().insert_axis(ndarray::Axis(1)) } else { b.clone() };
        let (ra, rb) = (a2.ndim(), b2.ndim());
        let rank = ra.max(rb);
        let bdim = |s: &[usize], r: usize, i: usize| if i + r >= rank { s[i + r - rank] } else { 1 };
        let batch: Vec<usize> = (0..rank - 2).map(|i| bdim(a2.shape(), ra, i).max(bdim(b2.shape(), rb, i))).collect();
        let (m, k, n) = (a2.shape()[ra - 2], a2.shape()[ra - 1], b2.shape()[rb - 1]);
        let av = a2.broadcast(IxDyn(&[batch.clone(), vec![m, k]].concat())).unwrap();
        let bv = b2.broadcast(IxDyn(&[batch.clone(), vec![k, n]].concat())).unwrap();
        let out = ArrayD::from_shape_fn(IxDyn(&[batch, vec![m, n]].concat()), |idx| {
            let r = idx.ndim();
            (0..k).fold(0i64, |acc, p| {
                let mut ia = idx.clone();
                ia[r - 1] = p;
                let mut ib = idx.clone();
                ib[r - 2] = p;
                acc.wrapping_add(av[ia.slice()].wrapping_mul(bv[ib.slice()]))
            })
        });
        let mut out = out;
        if b.ndim() == 1 {
            let last = out.ndim() - 1;
            out = out.index_axis_move(ndarray::Axis(last), 0);
        }
        if a.ndim() == 1 {
            let m_axis = out.ndim() - 1 - usize::from(b.ndim() != 1);
            out = out.index_axis_move(ndarray::Axis(m_axis), 0);
        }
        out
    }

    fn operand_shape() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(prop_oneof![Just(1usize), 2usize..4], 0..3)
    }

    proptest! {
        #[test]
        fn matmul_matches_broadcast_reference(
            ba in operand_shape(), bb in operand_shape(), m in 1usize..4, k in 0usize..4, n in 1usize..4,
            a_vec in any::<bool>(), b_vec in any::<bool>(), seed in any::<i64>(),
        ) {
            // Make batch dims compatible: where both have a dim, equal or one of them 1.
            let r = ba.len().min(bb.len());
            let mut bb = bb;
            for i in 0..r {
                let (x, y) = (ba[ba.len() - 1 - i], bb[bb.len() - 1 - i]);
                if x != 1 && y != 1 && x != y { let l = bb.len(); bb[l - 1 - i] = x; }
            }
            let a_shape = if a_vec { vec![k] } else { [ba, vec![m, k]].concat() };
            let b_shape = if b_vec { vec![k] } else { [bb, vec![k, n]].concat() };
            let fill = |s: &[usize], salt: i64| {
                let len: usize = s.iter().product();
                let data = (0..len as i64).map(|i| (seed ^ salt).wrapping_mul(i + 1) % 1000).collect();
                ArrayD::from_shape_vec(IxDyn(s), data).unwrap()
            };
            let (a, b) = (fill(&a_shape, 3), fill(&b_shape, 5));
            let want = reference(&a, &b);
            let got = mm2(&Tensor::I64(a.clone()), &Tensor::I64(b.clone())).unwrap();
            prop_assert_eq!(&got, &Tensor::I64(want.clone()));
            let sa = TypeInfo::new(DType::I64, Shape::known(a.shape()));
            let sb = TypeInfo::new(DType::I64, Shape::known(b.shape()));
            let ins = [Some(InferIn { ty: &sa, value: None, sym: None }), Some(InferIn { ty: &sb, value: None, sym: None })];
            prop_assert_eq!(MatMul {}.infer(&ins).unwrap()[0].shape.clone(), Shape::known(want.shape()));
            // The same product through f32 (small integers are exact) and i32.
            let af = Tensor::F32(a.mapv(|v| v as f32));
            let bf = Tensor::F32(b.mapv(|v| v as f32));
            let wf = want.mapv(|v| v as f32);
            prop_assert_eq!(mm2(&af, &bf).unwrap(), Tensor::F32(wf));
            let ai = Tensor::I32(a.mapv(|v| v as i32));
            let bi = Tensor::I32(b.mapv(|v| v as i32));
            prop_assert_eq!(mm2(&ai, &bi).unwrap(), Tensor::I32(want.mapv(|v| v as i32)));
        }

        /// MatMulInteger with per-row/per-column zero points equals an i32 MatMul of operands
        /// centered by hand.
        #[test]
        fn matmul_integer_matches_centered_matmul(
            m in 1usize..4, k in 1usize..4, n in 1usize..4, seed in any::<u32>(),
        ) {
            let sample = |len: usize, salt: u32| -> Vec<u8> {
                (0..len as u32).map(|i| (seed ^ salt).wrapping_mul(2 * i + 1).rotate_left(9) as u8).collect()
            };
            let (av, bv, azp, bzp) = (sample(m * k, 1), sample(k * n, 2), sample(m, 3), sample(n, 4));
            let ac: Vec<i32> = (0..m * k).map(|i| i32::from(av[i]) - i32::from(azp[i / k])).collect();
            let bc: Vec<i32> = (0..k * n).map(|i| i32::from(bv[i]) - i32::from(bzp[i % n])).collect();
            let want = mm2(&Tensor::from_vec(&[m, k], ac).unwrap(), &Tensor::from_vec(&[k, n], bc).unwrap()).unwrap();
            let t = |s: &[usize], v: Vec<u8>| Tensor::from_vec(s, v).unwrap();
            let (a, b, azp, bzp) = (t(&[m, k], av), t(&[k, n], bv), t(&[m], azp), t(&[n], bzp));
            let got = mmi(&[Some(&a), Some(&b), Some(&azp), Some(&bzp)]).unwrap();
            prop_assert_eq!(got, want);
        }
    }
}
