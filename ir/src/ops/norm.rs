//! Normalizations: LayerNorm, RmsNorm and inference-mode BatchNorm.
//!
//! Both compute in f64 and round once to the input's dtype.

use super::elementwise::{array, cast_f64};
use super::{InferIn, OpDef, arity, opt, req};
use crate::error::invalid;
use crate::shape::normalize_axis;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

/// Checks that `from` broadcasts unidirectionally to `to`: no more axes, and each trailing
/// dim 1 or equal (a symbol is accepted against anything; it is checked at run time).
fn check_unidirectional(from: &Shape, to: &Shape, what: &str) -> Result<(), OpError> {
    let fits = from.rank() <= to.rank()
        && from.0.iter().rev().zip(to.0.iter().rev()).all(|(f, t)| match (f, t) {
            (Dim::Known(1), _) => true,
            (Dim::Known(a), Dim::Known(b)) => a == b,
            (Dim::Sym { .. }, _) | (_, Dim::Sym { .. }) => true,
        });
    if fits { Ok(()) } else { Err(invalid(format!("{what} of shape {from} does not broadcast to {to}"))) }
}

fn numel(t: Option<&TypeInfo>) -> u64 {
    t.and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64
}

/// `v` broadcast to `dims` and flattened in row-major order.
fn broadcast_flat(v: &ArrayD<f64>, dims: &[usize], what: &str) -> Result<Vec<f64>, OpError> {
    let view = v
        .broadcast(dims)
        .ok_or_else(|| invalid(format!("{what} of shape {:?} does not broadcast to {dims:?}", v.shape())))?;
    Ok(view.iter().copied().collect())
}

/// Inputs `x`, `scale`, optional `bias`; normalizes over axes `axis..rank`.
/// Outputs `y`, `mean`, `inv_std_dev` (the latter two with reduced axes kept as 1), computed
/// in f64 (at least the precision of ONNX's f32 stash type).
///
/// `scale` and `bias` broadcast unidirectionally to `x` (so the usual normalized-shape
/// parameters work, and so do ones of size 1). `y` has `x`'s dtype; `mean` and `inv_std_dev`
/// are f32 (ONNX's type `U` with the default `stash_type` 1). An empty normalized part gives
/// NaN statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerNorm {
    /// First normalized axis (may be negative).
    pub axis: i64,
    /// Added to the variance.
    pub epsilon: f32,
}

impl LayerNorm {
    /// Checks dtypes and shapes; gives the first normalized axis.
    fn check(&self, x: &TypeInfo, scale: &TypeInfo, bias: Option<&TypeInfo>) -> Result<usize, OpError> {
        if !x.dtype.is_float() {
            return Err(invalid(format!("LayerNorm needs a float input, got {}", x.dtype)));
        }
        let axis = normalize_axis(self.axis, x.shape.rank())?;
        for (p, what) in [(Some(scale), "scale"), (bias, "bias")] {
            let Some(p) = p else { continue };
            if p.dtype != x.dtype {
                return Err(invalid(format!("LayerNorm {what} has dtype {} but X has {}", p.dtype, x.dtype)));
            }
            check_unidirectional(&p.shape, &x.shape, what)?;
        }
        Ok(axis)
    }

    /// The shape of `mean` and `inv_std_dev`: `x`'s with axes `axis..` set to 1.
    fn stats_dims<D: Clone>(dims: &[D], axis: usize, one: D) -> Vec<D> {
        dims.iter().enumerate().map(|(i, d)| if i < axis { d.clone() } else { one.clone() }).collect()
    }
}

impl OpDef for LayerNorm {
    fn num_outputs(&self) -> usize {
        3
    }

    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 3)?;
        let (x, scale) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        let axis = self.check(x, scale, opt(ins, 2).map(|b| b.ty))?;
        let stats = TypeInfo::new(DType::F32, Shape(Self::stats_dims(&x.shape.0, axis, Dim::Known(1))));
        Ok(vec![x.clone(), stats.clone(), stats])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 3)?;
        let (x, scale, bias) = (req(ins, 0)?, req(ins, 1)?, opt(ins, 2));
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let axis = self.check(&ty(x), &ty(scale), bias.map(ty).as_ref())?;
        let dims = x.shape();
        let inner: usize = dims.iter().skip(axis).product();
        let outer: usize = dims.iter().take(axis).product();
        let xs: Vec<f64> = x.to_f64().iter().copied().collect();
        let ss = broadcast_flat(&scale.to_f64(), dims, "scale")?;
        let bs = match bias {
            Some(b) => broadcast_flat(&b.to_f64(), dims, "bias")?,
            None => vec![0.0; xs.len()],
        };
        let (mut mean, mut inv) = (vec![f64::NAN; outer], vec![f64::NAN; outer]);
        let mut y = Vec::with_capacity(xs.len());
        if inner > 0 {
            let rows = xs.chunks(inner).zip(ss.chunks(inner)).zip(bs.chunks(inner));
            for ((((row, s), b), m), r) in rows.zip(&mut mean).zip(&mut inv) {
                let n = inner as f64;
                *m = row.iter().sum::<f64>() / n;
                let var = row.iter().map(|v| (v - *m) * (v - *m)).sum::<f64>() / n;
                *r = 1.0 / (var + f64::from(self.epsilon)).sqrt();
                y.extend(row.iter().zip(s).zip(b).map(|((v, s), b)| (v - *m) * *r * s + b));
            }
        }
        let stats = Self::stats_dims(dims, axis, 1);
        let f32s = |v: Vec<f64>| array(&stats, v.into_iter().map(|v| v as f32).collect()).map(Tensor::F32);
        Ok(vec![cast_f64(&array(dims, y)?, x.dtype()), f32s(mean)?, f32s(inv)?])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        // mean (1), variance (3), normalize (2), scale and shift (2) per element.
        8 * numel(ins.first().copied().flatten())
    }
}

/// Inputs `x`, `scale`; normalizes by the root mean square over axes `axis..rank`:
/// `y = x / sqrt(mean(x²) + epsilon) · scale`, computed in f64 and rounded once to `x`'s
/// dtype (f32 or f16).
///
/// `scale` has `x`'s dtype and broadcasts unidirectionally to `x`, as LayerNorm's does. An
/// empty normalized part gives an empty output. This is ONNX `RMSNormalization` with
/// `stash_type` 1 for f32 (its f16 form rounds the normalized value to f16 before scaling,
/// which this op does not).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmsNorm {
    /// First normalized axis (may be negative).
    pub axis: i64,
    /// Added to the mean of squares.
    pub epsilon: f32,
}

impl RmsNorm {
    /// Checks dtypes and shapes; gives the first normalized axis.
    fn check(&self, x: &TypeInfo, scale: &TypeInfo) -> Result<usize, OpError> {
        if !x.dtype.is_float() {
            return Err(invalid(format!("RmsNorm needs a float input, got {}", x.dtype)));
        }
        let axis = normalize_axis(self.axis, x.shape.rank())?;
        if scale.dtype != x.dtype {
            return Err(invalid(format!("RmsNorm scale has dtype {} but X has {}", scale.dtype, x.dtype)));
        }
        check_unidirectional(&scale.shape, &x.shape, "scale")?;
        Ok(axis)
    }
}

impl OpDef for RmsNorm {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (x, scale) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        self.check(x, scale)?;
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (x, scale) = (req(ins, 0)?, req(ins, 1)?);
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let axis = self.check(&ty(x), &ty(scale))?;
        let dims = x.shape();
        let inner: usize = dims.iter().skip(axis).product();
        let xs: Vec<f64> = x.to_f64().iter().copied().collect();
        let ss = broadcast_flat(&scale.to_f64(), dims, "scale")?;
        let mut y = Vec::with_capacity(xs.len());
        if inner > 0 {
            for (row, s) in xs.chunks(inner).zip(ss.chunks(inner)) {
                let ms = row.iter().map(|v| v * v).sum::<f64>() / inner as f64;
                let rms = (ms + f64::from(self.epsilon)).sqrt();
                y.extend(row.iter().zip(s).map(|(v, s)| v / rms * s));
            }
        }
        Ok(vec![cast_f64(&array(dims, y)?, x.dtype())])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        // Square and sum (2), normalize (1), scale (1) per element.
        4 * numel(ins.first().copied().flatten())
    }
}

/// Inputs `x` [N, C, ...], `scale`, `bias`, `mean`, `var` (each `[C]`).
///
/// Inference mode: `y = (x - mean) / sqrt(var + epsilon) · scale + bias` per channel, in
/// `x`'s dtype. The parameters may have another float dtype than `x` (ONNX's T1/T2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// Added to the variance.
    pub epsilon: f32,
}

const BN_PARAMS: [&str; 4] = ["scale", "bias", "mean", "var"];

/// Checks BatchNorm's input types (which are all present).
fn check_batchnorm(x: &TypeInfo, params: &[&TypeInfo]) -> Result<(), OpError> {
    if !x.dtype.is_float() {
        return Err(invalid(format!("BatchNorm needs a float input, got {}", x.dtype)));
    }
    let c =
        x.shape.0.get(1).ok_or_else(|| {
            invalid(format!("BatchNorm input must have at least 2 axes [N, C, ...], got {}", x.shape))
        })?;
    for (p, what) in params.iter().zip(BN_PARAMS) {
        if !p.dtype.is_float() {
            return Err(invalid(format!("BatchNorm {what} must be float, got {}", p.dtype)));
        }
        let fits = match p.shape.0.as_slice() {
            [d] => !matches!((d, c), (Dim::Known(a), Dim::Known(b)) if a != b),
            _ => false,
        };
        if !fits {
            return Err(invalid(format!("BatchNorm {what} must have shape [C] = [{c}], got {}", p.shape)));
        }
    }
    Ok(())
}

impl OpDef for BatchNorm {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 5, 5)?;
        let x = req(ins, 0)?.ty;
        let params = (1..5).map(|i| req(ins, i).map(|p| p.ty)).collect::<Result<Vec<_>, _>>()?;
        check_batchnorm(x, &params)?;
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 5, 5)?;
        let x = req(ins, 0)?;
        let params = (1..5).map(|i| req(ins, i)).collect::<Result<Vec<_>, _>>()?;
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        let tys: Vec<TypeInfo> = params.iter().map(|p| ty(p)).collect();
        check_batchnorm(&ty(x), &tys.iter().collect::<Vec<_>>())?;
        let p: Vec<Vec<f64>> = params.iter().map(|t| t.to_f64().iter().copied().collect()).collect();
        let (scale, bias, mean, var) = match p.as_slice() {
            [s, b, m, v] => (s, b, m, v),
            _ => return Err(invalid("BatchNorm expects 4 parameters")),
        };
        // Per channel: y = x·a + (bias - mean·a) would round differently; keep the formula.
        let dims = x.shape();
        let inner: usize = dims.iter().skip(2).product();
        let c = dims.get(1).copied().unwrap_or(0);
        let y = x
            .to_f64()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let ch = i.checked_div(inner).and_then(|q| q.checked_rem(c));
                let get = |p: &[f64]| ch.and_then(|ch| p.get(ch).copied());
                match (get(scale), get(bias), get(mean), get(var)) {
                    (Some(s), Some(b), Some(m), Some(va)) => {
                        Ok((v - m) / (va + f64::from(self.epsilon)).sqrt() * s + b)
                    }
                    _ => Err(invalid(format!("BatchNorm parameters do not cover channel {ch:?}"))),
                }
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(vec![cast_f64(&array(dims, y)?, x.dtype())])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], _outs: &[TypeInfo]) -> u64 {
        // One multiply and one add per element once folded into per-channel scale and shift.
        2 * numel(ins.first().copied().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use half::f16;
    use proptest::prelude::*;

    fn close(got: &Tensor, want: &[f32]) {
        let g = f32s(got);
        assert_eq!(g.len(), want.len(), "{g:?} vs {want:?}");
        assert!(g.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0)), "{g:?} vs {want:?}");
    }

    fn infer(op: &impl OpDef, tys: &[(DType, &str)]) -> Result<Vec<TypeInfo>, OpError> {
        let tys: Vec<TypeInfo> = tys.iter().map(|(d, s)| TypeInfo::new(*d, Shape::parse(s).unwrap())).collect();
        op.infer(&tys.iter().map(|ty| Some(InferIn { ty, value: None, sym: None })).collect::<Vec<_>>())
    }

    fn x23() -> Tensor {
        t(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 6.0, 9.0])
    }

    #[test]
    fn layer_norm_matches_onnx_reference() {
        let op = LayerNorm { axis: -1, epsilon: 1e-5 };
        let (w, b) = (t(&[3], vec![1.0f32, 2.0, 3.0]), t(&[3], vec![0.5f32, 0.0, -1.0]));
        let out = op.eval(&[Some(&x23()), Some(&w), Some(&b)]).unwrap();
        assert_eq!(out.len(), 3);
        close(&out[0], &[-0.7247356, 0.0, 2.6742067, -0.63554883, -0.32444265, 2.8933096]);
        assert_eq!(out[1].shape(), &[2, 1]);
        close(&out[1], &[2.0, 6.3333335]);
        close(&out[2], &[1.2247356, 0.48666373]);
        // axis 0 normalizes everything; a size-1 scale broadcasts; no bias.
        let op = LayerNorm { axis: 0, epsilon: 1e-5 };
        let out = op.eval(&[Some(&x23()), Some(&t(&[1], vec![2.0f32]))]).unwrap();
        close(&out[0], &[-2.370373, -1.621834, -0.8732952, -0.12475636, 1.3723214, 3.6179378]);
        assert_eq!(out[1].shape(), &[1, 1]);
        close(&out[1], &[4.1666665]);
        close(&out[2], &[0.37426943]);
    }

    #[test]
    fn layer_norm_f16_and_empty() {
        let h = |v: &[f32]| t(&[v.len()], v.iter().map(|&x| f16::from_f32(x)).collect());
        let out = LayerNorm { axis: 0, epsilon: 0.0 }.eval(&[Some(&h(&[1.0, 3.0])), Some(&h(&[1.0, 1.0]))]).unwrap();
        assert_eq!(out[0], h(&[-1.0, 1.0]));
        assert_eq!(out[1], t(&[1], vec![2.0f32]));
        assert_eq!(out[2], t(&[1], vec![1.0f32]));
        let e = t(&[2, 0], Vec::<f32>::new());
        let out = LayerNorm { axis: 1, epsilon: 1e-5 }.eval(&[Some(&e), Some(&t(&[0], Vec::<f32>::new()))]).unwrap();
        assert_eq!(out[0].shape(), &[2, 0]);
        assert!(f32s(&out[1]).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn layer_norm_errors_and_inference() {
        let op = LayerNorm { axis: 1, epsilon: 1e-5 };
        let x = x23();
        assert!(op.eval(&[Some(&x), Some(&t(&[2], vec![1.0f32, 1.0]))]).is_err());
        assert!(op.eval(&[Some(&x), Some(&t(&[3], vec![1.0f32; 3])), Some(&t(&[3], vec![1i32; 3]))]).is_err());
        assert!(op.eval(&[Some(&t(&[3], vec![1i32; 3])), Some(&t(&[3], vec![1i32; 3]))]).is_err());
        assert!(LayerNorm { axis: 2, epsilon: 0.0 }.eval(&[Some(&x), Some(&x)]).is_err());
        assert!(op.eval(&[Some(&x)]).is_err());
        let tys = infer(
            &LayerNorm { axis: -1, epsilon: 1e-5 },
            &[(DType::F16, "[b, s, 384]"), (DType::F16, "[384]"), (DType::F16, "[384]")],
        )
        .unwrap();
        assert_eq!(tys[0].to_string(), "f16[b, s, 384]");
        assert_eq!(tys[1].to_string(), "f32[b, s, 1]");
        assert_eq!(tys[2].to_string(), "f32[b, s, 1]");
        assert!(infer(&op, &[(DType::F32, "[b, 4]"), (DType::F32, "[3]")]).is_err());
        assert!(infer(&op, &[(DType::F32, "[4]"), (DType::F32, "[1, 4]")]).is_err());
        assert!(infer(&op, &[(DType::F32, "[b, n]"), (DType::F32, "[m]")]).is_ok());
    }

    #[test]
    fn rms_norm_values() {
        // A constant row c normalizes to sign(c)·scale (epsilon 0).
        let op = RmsNorm { axis: -1, epsilon: 0.0 };
        let x = t(&[2, 3], vec![5.0f32, 5.0, 5.0, -2.0, -2.0, -2.0]);
        let s = t(&[3], vec![1.0f32, 2.0, 3.0]);
        let y = op.eval(&[Some(&x), Some(&s)]).unwrap();
        assert_eq!(y.len(), 1);
        close(&y[0], &[1.0, 2.0, 3.0, -1.0, -2.0, -3.0]);
        // [3, 4]: rms = sqrt(12.5 + 0.5) with epsilon 0.5.
        let op = RmsNorm { axis: 1, epsilon: 0.5 };
        let r = 13f32.sqrt();
        let y = op.eval(&[Some(&t(&[1, 2], vec![3.0f32, 4.0])), Some(&t(&[1], vec![2.0f32]))]).unwrap();
        close(&y[0], &[6.0 / r, 8.0 / r]);
        // axis 0 normalizes everything: x23's mean square is 147/6.
        let y = RmsNorm { axis: 0, epsilon: 0.0 }.eval(&[Some(&x23()), Some(&t(&[1], vec![1.0f32]))]).unwrap();
        let r = (147.0f32 / 6.0).sqrt();
        close(&y[0], &[1.0 / r, 2.0 / r, 3.0 / r, 4.0 / r, 6.0 / r, 9.0 / r]);
        // f16 in, squares taken in f64 (300² overflows f16), rounded once.
        let h = |v: &[f32]| t(&[v.len()], v.iter().map(|&x| f16::from_f32(x)).collect());
        let y = RmsNorm { axis: 0, epsilon: 0.0 }.eval(&[Some(&h(&[300.0, 400.0])), Some(&h(&[1.0]))]).unwrap();
        let r = 125_000f32.sqrt();
        assert_eq!(y[0], h(&[300.0 / r, 400.0 / r]));
        let e = t(&[2, 0], Vec::<f32>::new());
        let y = RmsNorm { axis: 1, epsilon: 1e-5 }.eval(&[Some(&e), Some(&t(&[0], Vec::<f32>::new()))]).unwrap();
        assert_eq!(y[0].shape(), &[2, 0]);
    }

    #[test]
    fn rms_norm_errors_and_inference() {
        let op = RmsNorm { axis: 1, epsilon: 1e-5 };
        let x = x23();
        let err = |r: Result<Vec<Tensor>, OpError>| r.unwrap_err().to_string();
        assert!(err(op.eval(&[Some(&x), Some(&t(&[2], vec![1.0f32, 1.0]))])).contains("does not broadcast"));
        assert!(err(op.eval(&[Some(&x), Some(&t(&[3], vec![1i32; 3]))])).contains("scale has dtype i32"));
        assert!(err(op.eval(&[Some(&t(&[3], vec![1i32; 3])), Some(&t(&[3], vec![1i32; 3]))])).contains("float"));
        assert!(RmsNorm { axis: 2, epsilon: 0.0 }.eval(&[Some(&x), Some(&x)]).is_err());
        assert!(op.eval(&[Some(&x)]).is_err());
        assert!(op.eval(&[Some(&x), Some(&x), Some(&x)]).is_err());
        let tys =
            infer(&RmsNorm { axis: -1, epsilon: 1e-5 }, &[(DType::F16, "[b, s, 384]"), (DType::F16, "[384]")]).unwrap();
        assert_eq!(tys.len(), 1);
        assert_eq!(tys[0].to_string(), "f16[b, s, 384]");
        assert!(infer(&op, &[(DType::F32, "[b, 4]"), (DType::F32, "[3]")]).is_err());
        assert!(infer(&op, &[(DType::F32, "[b, n]"), (DType::F32, "[m]")]).is_ok());
        let ty = TypeInfo::new(DType::F32, Shape::known(&[2, 3, 4]));
        assert_eq!(op.flops(&[Some(&ty), Some(&ty)], std::slice::from_ref(&ty)), 96);
    }

    fn bn_inputs() -> Vec<Tensor> {
        vec![
            t(&[1, 2, 1, 3], vec![-1.0f32, 0.0, 1.0, 2.0, 3.0, 4.0]),
            t(&[2], vec![1.0f32, 1.5]),
            t(&[2], vec![0.0f32, 1.0]),
            t(&[2], vec![0.0f32, 3.0]),
            t(&[2], vec![1.0f32, 1.5]),
        ]
    }

    #[test]
    fn batch_norm_matches_onnx_example() {
        let ins = bn_inputs();
        let y = BatchNorm { epsilon: 1e-5 }.eval(&ins.iter().map(Some).collect::<Vec<_>>()).unwrap();
        close(&y[0], &[-0.999995, 0.0, 0.999995, -0.22474074, 1.0, 2.2247407]);
        // Rank 2 input, f16 data with f32 parameters.
        let x = t(&[2, 2], [1.0f32, 3.0, 2.0, 6.0].iter().map(|&v| f16::from_f32(v)).collect());
        let mut ins = bn_inputs();
        ins[0] = x;
        let y = BatchNorm { epsilon: 0.0 }.eval(&ins.iter().map(Some).collect::<Vec<_>>()).unwrap();
        let want: Vec<f16> = [1.0f32, 1.0, 2.0, 4.6742].iter().map(|&v| f16::from_f32(v)).collect();
        assert_eq!(y[0], t(&[2, 2], want));
    }

    #[test]
    fn batch_norm_errors_and_inference() {
        let op = BatchNorm { epsilon: 1e-5 };
        let mut ins = bn_inputs();
        ins[3] = t(&[3], vec![0.0f32; 3]);
        assert!(op.eval(&ins.iter().map(Some).collect::<Vec<_>>()).is_err());
        let mut ins = bn_inputs();
        ins[0] = t(&[2], vec![1.0f32, 2.0]);
        assert!(op.eval(&ins.iter().map(Some).collect::<Vec<_>>()).is_err());
        let mut ins = bn_inputs();
        ins[4] = t(&[2], vec![1i64, 1]);
        assert!(op.eval(&ins.iter().map(Some).collect::<Vec<_>>()).is_err());
        let ins = bn_inputs();
        assert!(op.eval(&ins[..4].iter().map(Some).collect::<Vec<_>>()).is_err());
        let p = (DType::F32, "[c]");
        let tys = infer(&op, &[(DType::F32, "[n, c, 8, 8]"), p, p, p, p]).unwrap();
        assert_eq!(tys[0].to_string(), "f32[n, c, 8, 8]");
        let p = (DType::F32, "[3]");
        assert!(infer(&op, &[(DType::F32, "[n, 4, 8]"), p, p, p, p]).is_err());
        assert!(infer(&op, &[(DType::F32, "[4]"), p, p, p, p]).is_err());
        let ty = TypeInfo::new(DType::F32, Shape::known(&[2, 3, 4]));
        assert_eq!(op.flops(&[Some(&ty)], std::slice::from_ref(&ty)), 48);
    }

    proptest! {
        #[test]
        fn layer_norm_matches_plain_two_pass(
            dims in prop::collection::vec(1usize..4, 1..4),
            axis_pick in 0usize..3,
            vals in prop::collection::vec(-10.0f32..10.0, 27),
        ) {
            let axis = axis_pick % dims.len();
            let n: usize = dims.iter().product();
            let x = t(&dims, vals[..n].to_vec());
            let inner: usize = dims[axis..].iter().product();
            let scale = t(&dims[axis..], (0..inner).map(|i| 0.5 + i as f32).collect());
            let out = LayerNorm { axis: axis as i64, epsilon: 1e-3 }.eval(&[Some(&x), Some(&scale)]).unwrap();
            let y = f32s(&out[0]);
            // Independent reference: mean, then E[(x-mean)²], in f64, one row at a time.
            for (r, row) in vals[..n].chunks(inner).enumerate() {
                let m = row.iter().map(|&v| f64::from(v)).sum::<f64>() / inner as f64;
                let var = row.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / inner as f64;
                let inv = 1.0 / (var + 1e-3).sqrt();
                prop_assert!((f64::from(f32s(&out[1])[r]) - m).abs() < 1e-5);
                prop_assert!((f64::from(f32s(&out[2])[r]) - inv).abs() < 1e-4 * inv);
                for (i, &v) in row.iter().enumerate() {
                    let want = (f64::from(v) - m) * inv * (0.5 + i as f64);
                    prop_assert!((f64::from(y[r * inner + i]) - want).abs() < 1e-5 * want.abs().max(1.0));
                }
            }
        }
    }
}
