//! Scaled dot-product attention, fused: the operator the optimizer extracts for
//! `Softmax(Q·Kᵀ·scale + mask)·V`.

use super::{InferIn, OpDef, arity, opt, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Inputs `Q` [B, Hq, S, D], `K` [B, Hkv, T, D], `V` [B, Hkv, T, Dv], optional `mask`
/// broadcastable (right-aligned, each dim 1 or equal) to [B, Hq, S, T]; output
/// [B, Hq, S, Dv], all f32.
///
/// `y[b, h, i] = Σ_j softmax_j(scale · Q[b, h, i]·K[b, g, j] + mask[b, h, i, j]) · V[b, g, j]`
/// with `g = h / (Hq / Hkv)` (grouped-query heads share K and V; Hq must be a multiple of
/// Hkv). A bool mask adds 0 where true and −inf where false. `scale` defaults to `1/sqrt(D)`.
/// With `causal`, query `i` sees keys `j ≤ i + T − S` only (the offset of a query block
/// appended after `T − S` past keys, as ONNX Attention-23 does with a KV cache). A row that
/// sees no key (all scores −inf) is NaN, as Softmax of such a row is. The reference
/// accumulates in f64 and rounds once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attention {
    /// Multiplier of `Q·Kᵀ`; `None` is `1/sqrt(D)`.
    pub scale: Option<f32>,
    /// Mask keys after the query's position (offset by `T − S`).
    pub causal: bool,
}

/// Whether two dims can be the same size (a symbol matches anything; checked at run time).
fn same(a: &Dim, b: &Dim) -> bool {
    !matches!((a.known(), b.known()), (Some(x), Some(y)) if x != y)
}

impl Attention {
    /// Checks the inputs; gives the output shape.
    fn check(&self, q: &TypeInfo, k: &TypeInfo, v: &TypeInfo, mask: Option<&TypeInfo>) -> Result<Shape, OpError> {
        for (t, what) in [(q, "Q"), (k, "K"), (v, "V")] {
            if t.dtype != DType::F32 {
                return Err(invalid(format!("Attention {what} must be f32, got {}", t.dtype)));
            }
            if t.shape.rank() != 4 {
                return Err(invalid(format!("Attention {what} must have rank 4 [B, H, seq, head], got {}", t.shape)));
            }
        }
        let (qs, ks, vs) = (&q.shape.0, &k.shape.0, &v.shape.0);
        let mismatch = |what: &str, a: &Dim, b: &Dim| {
            invalid(format!("Attention {what}: {a} against {b} (Q {}, K {}, V {})", q.shape, k.shape, v.shape))
        };
        if !same(&qs[0], &ks[0]) || !same(&qs[0], &vs[0]) {
            return Err(mismatch("batch sizes differ", &qs[0], &ks[0]));
        }
        if !same(&ks[1], &vs[1]) {
            return Err(mismatch("K and V head counts differ", &ks[1], &vs[1]));
        }
        if !same(&ks[2], &vs[2]) {
            return Err(mismatch("K and V sequence lengths differ", &ks[2], &vs[2]));
        }
        if !same(&qs[3], &ks[3]) {
            return Err(mismatch("Q and K head sizes differ", &qs[3], &ks[3]));
        }
        match (qs[1].known(), ks[1].known()) {
            (Some(hq), Some(hkv)) if hkv == 0 || hq % hkv != 0 => {
                return Err(invalid(format!(
                    "Attention query heads {hq} are not a multiple of key/value heads {hkv} (grouped-query attention)"
                )));
            }
            (Some(_), Some(_)) => {}
            _ => {
                return Err(invalid(format!(
                    "Attention head counts must be static, got Q {} and K {}",
                    q.shape, k.shape
                )));
            }
        }
        if let Some(m) = mask {
            if !matches!(m.dtype, DType::F32 | DType::Bool) {
                return Err(invalid(format!("Attention mask must be f32 or bool, got {}", m.dtype)));
            }
            let full = [qs[0].clone(), qs[1].clone(), qs[2].clone(), ks[2].clone()];
            let fits = m.shape.rank() <= 4
                && m.shape.0.iter().rev().zip(full.iter().rev()).all(|(a, b)| a.known() == Some(1) || same(a, b));
            if !fits {
                return Err(invalid(format!(
                    "Attention mask of shape {} does not broadcast to [B, Hq, S, T] = {}",
                    m.shape,
                    Shape(full.to_vec())
                )));
            }
        }
        Ok(Shape(vec![qs[0].clone(), qs[1].clone(), qs[2].clone(), vs[3].clone()]))
    }
}

impl OpDef for Attention {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 3, 4)?;
        let (q, k, v) = (req(ins, 0)?.ty, req(ins, 1)?.ty, req(ins, 2)?.ty);
        let shape = self.check(q, k, v, opt(ins, 3).map(|m| m.ty))?;
        Ok(vec![TypeInfo::new(DType::F32, shape)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 3, 4)?;
        let (q, k, v, mask) = (req(ins, 0)?, req(ins, 1)?, req(ins, 2)?, opt(ins, 3));
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        self.check(&ty(q), &ty(k), &ty(v), mask.map(ty).as_ref())?;
        let (qd, kd, vd) = (q.shape(), k.shape(), v.shape());
        let (b, hq, s, d) = (qd[0], qd[1], qd[2], qd[3]);
        let (hkv, t, dv) = (kd[1], kd[2], vd[3]);
        let group = hq / hkv;
        let (qv, kv, vv) = (q.to_f64(), k.to_f64(), v.to_f64());
        let full = [b, hq, s, t];
        let mv = match mask {
            Some(m) => {
                let m64 = match m {
                    Tensor::Bool(a) => a.mapv(|keep| if keep { 0.0 } else { f64::NEG_INFINITY }),
                    other => other.to_f64(),
                };
                let view = m64.broadcast(&full[..]).ok_or_else(|| invalid("Attention mask does not broadcast"))?;
                Some(view.to_owned())
            }
            None => None,
        };
        let scale = self.scale.map_or(1.0 / (d as f64).sqrt(), f64::from);
        let mut y = Vec::with_capacity(b * hq * s * dv);
        for bi in 0..b {
            for h in 0..hq {
                let g = h / group;
                for i in 0..s {
                    let mut sc: Vec<f64> = (0..t)
                        .map(|j| {
                            let dot: f64 = (0..d).map(|c| qv[[bi, h, i, c]] * kv[[bi, g, j, c]]).sum();
                            let m = mv.as_ref().map_or(0.0, |m| m[[bi, h, i, j]]);
                            // Query i sees keys j <= i + t - s.
                            if self.causal && j + s > i + t { f64::NEG_INFINITY } else { dot * scale + m }
                        })
                        .collect();
                    let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    sc.iter_mut().for_each(|x| *x = (*x - mx).exp());
                    let sum: f64 = sc.iter().sum();
                    for c in 0..dv {
                        y.push((0..t).map(|j| sc[j] * vv[[bi, g, j, c]]).sum::<f64>() / sum);
                    }
                }
            }
        }
        let y: Vec<f32> = y.into_iter().map(|x| x as f32).collect();
        Ok(vec![Tensor::from_vec(&[b, hq, s, dv], y)?])
    }

    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        // Per (b, h, i, j): the dot product over D (2·D), the exponential and sum (~4), and the
        // weighted V row (2·Dv).
        let dim =
            |t: Option<&TypeInfo>, a: usize| t.and_then(|t| t.shape.0.get(a)).and_then(|d| d.upper()).unwrap_or(0);
        let k = ins.get(1).copied().flatten();
        let (t, d) = (dim(k, 2), dim(k, 3));
        let rows = outs.first().map_or(0, |o| {
            let n = o.shape.numel_upper().unwrap_or(0);
            let dv = dim(Some(o), 3);
            n.checked_div(dv).unwrap_or(0)
        });
        let dv = outs.first().map_or(0, |o| dim(Some(o), 3));
        (rows * t * (2 * d + 2 * dv + 4)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    fn close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        assert!(got.iter().zip(want).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0)), "{got:?} vs {want:?}");
    }

    fn infer(op: &Attention, shapes: &[(DType, &str)]) -> Result<Vec<TypeInfo>, OpError> {
        let tys: Vec<TypeInfo> = shapes.iter().map(|(d, s)| TypeInfo::new(*d, Shape::parse(s).unwrap())).collect();
        op.infer(&tys.iter().map(|ty| Some(InferIn { ty, value: None, sym: None })).collect::<Vec<_>>())
    }

    #[test]
    fn one_key_gives_its_value_row() {
        // Whatever the scores, a single key has weight 1: the output is V's row, per kv head.
        let op = Attention { scale: None, causal: false };
        let q = t(&[1, 4, 2, 3], (0..24).map(|x| x as f32 * 0.3 - 2.0).collect());
        let k = t(&[1, 2, 1, 3], vec![1.0, -2.0, 0.5, 3.0, 0.0, 1.0]);
        let v = t(&[1, 2, 1, 2], vec![7.0, -1.0, 0.25, 4.0]);
        let y = op.eval(&[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_eq!(y[0].shape(), &[1, 4, 2, 2]);
        // Heads 0, 1 use kv head 0; heads 2, 3 use kv head 1.
        let row = |g: usize| if g == 0 { [7.0, -1.0] } else { [0.25, 4.0] };
        let want: Vec<f32> = (0..4).flat_map(|h| [row(h / 2), row(h / 2)].concat()).collect();
        close(&f32s(&y[0]), &want);
    }

    #[test]
    fn scores_scale_masks_and_causality() {
        // Two keys with scores q·k = 0 and 2·scale: weights softmax([0, 2·scale]).
        let q = t(&[1, 1, 1, 4], vec![1.0, 1.0, 0.0, 0.0]);
        let k = t(&[1, 1, 2, 4], vec![0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let v = t(&[1, 1, 2, 1], vec![10.0, 20.0]);
        let w = |s: f64| 1.0 / (1.0 + s.exp()); // weight of key 0 when key 1 scores s more
        let run = |op: Attention, m: Option<&Tensor>| f32s(&op.eval(&[Some(&q), Some(&k), Some(&v), m]).unwrap()[0]);
        // Default scale 1/sqrt(4).
        let y = run(Attention { scale: None, causal: false }, None);
        close(&y, &[(10.0 * w(1.0) + 20.0 * (1.0 - w(1.0))) as f32]);
        let y = run(Attention { scale: Some(0.0), causal: false }, None);
        close(&y, &[15.0]);
        // A float mask adding -1 to key 1 cancels the scaled score difference of 1.
        let y = run(Attention { scale: None, causal: false }, Some(&t(&[2], vec![0.0, -1.0])));
        close(&y, &[15.0]);
        // A bool mask hiding key 1.
        let bm = Tensor::from_vec(&[1, 1, 1, 2], vec![true, false]).unwrap();
        close(&run(Attention { scale: None, causal: false }, Some(&bm)), &[10.0]);
        // Causal with S = 1, T = 2: the query is the last position, it sees both keys.
        close(&run(Attention { scale: Some(0.0), causal: true }, None), &[15.0]);
    }

    #[test]
    fn causal_offset_with_fewer_queries_than_keys() {
        // S = 2, T = 3, scale 0: uniform weights over the visible keys j <= i + 1.
        let op = Attention { scale: Some(0.0), causal: true };
        let q = t(&[1, 1, 2, 1], vec![1.0, 1.0]);
        let k = t(&[1, 1, 3, 1], vec![1.0, 1.0, 1.0]);
        let v = t(&[1, 1, 3, 1], vec![3.0, 6.0, 12.0]);
        let y = op.eval(&[Some(&q), Some(&k), Some(&v)]).unwrap();
        close(&f32s(&y[0]), &[4.5, 7.0]);
        // S = 3, T = 2: the first query sees no key (NaN), then 1 and 2 keys.
        let q = t(&[1, 1, 3, 1], vec![1.0; 3]);
        let k = t(&[1, 1, 2, 1], vec![1.0; 2]);
        let v = t(&[1, 1, 2, 1], vec![2.0, 4.0]);
        let y = f32s(&op.eval(&[Some(&q), Some(&k), Some(&v)]).unwrap()[0]);
        assert!(y[0].is_nan());
        close(&y[1..], &[2.0, 3.0]);
    }

    #[test]
    fn inference_and_errors_name_the_problem() {
        let op = Attention { scale: None, causal: true };
        let f = DType::F32;
        let y = infer(&op, &[(f, "[b, 8, s<=16, 64]"), (f, "[b, 2, t<=32, 64]"), (f, "[b, 2, t<=32, 48]")]).unwrap();
        assert_eq!(y[0].to_string(), "f32[b, 8, s<=16, 48]");
        let y = infer(&op, &[(f, "[1, 4, 3, 5]"), (f, "[1, 1, 7, 5]"), (f, "[1, 1, 7, 2]"), (DType::Bool, "[3, 7]")])
            .unwrap();
        assert_eq!(y[0].to_string(), "f32[1, 4, 3, 2]");
        let err = |shapes: &[(DType, &str)]| infer(&op, shapes).unwrap_err().to_string();
        let e = err(&[(f, "[1, 3, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]")]);
        assert!(e.contains("query heads 3") && e.contains("key/value heads 2"), "{e}");
        let e = err(&[(f, "[1, 4, 3, 5]"), (f, "[1, 2, 7, 4]"), (f, "[1, 2, 7, 2]")]);
        assert!(e.contains("head sizes differ"), "{e}");
        let e = err(&[(f, "[1, 4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 6, 2]")]);
        assert!(e.contains("sequence lengths differ"), "{e}");
        let e = err(&[(f, "[2, 4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]")]);
        assert!(e.contains("batch sizes differ"), "{e}");
        let e = err(&[(f, "[1, 4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]"), (f, "[3, 6]")]);
        assert!(e.contains("mask of shape [3, 6] does not broadcast"), "{e}");
        let e = err(&[(f, "[1, 4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]"), (DType::I32, "[3, 7]")]);
        assert!(e.contains("mask must be f32 or bool"), "{e}");
        let e = err(&[(f, "[4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]")]);
        assert!(e.contains("rank 4"), "{e}");
        let e = err(&[(DType::F16, "[1, 4, 3, 5]"), (f, "[1, 2, 7, 5]"), (f, "[1, 2, 7, 2]")]);
        assert!(e.contains("Q must be f32"), "{e}");
        let ty = |s: &str| TypeInfo::new(f, Shape::parse(s).unwrap());
        let (q, k, v, o) = (ty("[1, 4, 3, 5]"), ty("[1, 2, 7, 5]"), ty("[1, 2, 7, 2]"), ty("[1, 4, 3, 2]"));
        assert_eq!(op.flops(&[Some(&q), Some(&k), Some(&v)], &[o]), 12 * 7 * (10 + 4 + 4));
    }
}
