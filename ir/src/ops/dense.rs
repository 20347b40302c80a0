//! Fused matrix-product layers the optimizer extracts: Dense (`act(x·W + b)`) and FusedMlp
//! (the gated MLP `(act(x·W_gate) ⊙ (x·W_up))·W_down` of Llama/Qwen SwiGLU and GeGLU).
//!
//! The reference computes exactly what the unfused graph computes: products accumulate in f32
//! in order along K (as [`super::MatMul`]'s reference does), the bias is added in f32, the
//! activation is evaluated in f64 and rounded to f32 (as [`super::UnaryOp`]'s reference does),
//! and the gate ⊙ up product is an f32 multiplication.

use super::{InferIn, OpDef, UnaryOp, arity, opt, req};
use crate::error::invalid;
use crate::{DType, Dim, OpError, Shape, Tensor, TypeInfo};
use serde::{Deserialize, Serialize};

/// Whether `act` is one of the activations the fused kernels compute in registers.
pub fn fusable_activation(act: &UnaryOp) -> bool {
    matches!(act, UnaryOp::Relu | UnaryOp::Gelu { .. } | UnaryOp::Silu | UnaryOp::Sigmoid | UnaryOp::Tanh)
}

fn check_activation(op: &str, act: &UnaryOp) -> Result<(), OpError> {
    if fusable_activation(act) {
        Ok(())
    } else {
        Err(invalid(format!("{op} activation {} is not fusable (Relu, Gelu, Silu, Sigmoid or Tanh)", act.name())))
    }
}

/// Checks `t` is an f32 tensor.
fn f32_of(op: &str, what: &str, t: &TypeInfo) -> Result<(), OpError> {
    if t.dtype != DType::F32 {
        return Err(invalid(format!("{op} {what} must be f32, got {}", t.dtype)));
    }
    Ok(())
}

/// The static [K, N] of a weight `w`.
fn weight_dims(op: &str, what: &str, w: &TypeInfo) -> Result<(usize, usize), OpError> {
    f32_of(op, what, w)?;
    match w.shape.as_known().as_deref() {
        Some(&[k, n]) => Ok((k, n)),
        _ => Err(invalid(format!("{op} {what} must be a static 2-D matrix, got {}", w.shape))),
    }
}

/// Checks `x` is f32 [..., k] with a static last dim `k`; gives its leading dims.
fn rows_of(op: &str, x: &TypeInfo, k: usize) -> Result<Vec<Dim>, OpError> {
    f32_of(op, "x", x)?;
    let Some((last, lead)) = x.shape.0.split_last() else {
        return Err(invalid(format!("{op} x must have rank ≥ 1, got a scalar")));
    };
    if last.known() != Some(k) {
        return Err(invalid(format!("{op} x of shape {} must end in the weight's K = {k}", x.shape)));
    }
    Ok(lead.to_vec())
}

/// `out[r, j] = Σ_p x[r, p]·w[p, j]` in f32, in order along p.
fn product(x: &[f32], w: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).fold(0f32, |acc, p| acc + x[i * k + p] * w[p * n + j]);
        }
    }
    out
}

fn f32_values(t: &Tensor) -> Result<Vec<f32>, OpError> {
    t.view::<f32>().map(|a| a.iter().copied().collect()).ok_or_else(|| invalid("expected an f32 tensor"))
}

/// `act(v)` as the Unary reference computes it (in f64, rounded to f32).
fn activate(act: &UnaryOp, v: f32) -> f32 {
    act.apply_f64(f64::from(v)) as f32
}

/// `2·rows·K·N` for a product of `rows` rows.
fn product_flops(rows: u64, k: usize, n: usize) -> u64 {
    rows.saturating_mul(2 * k as u64).saturating_mul(n as u64)
}

/// The operation count of a layer over the weight `[K, N]` at input 1: its product
/// (`2·rows·K·N`) plus `extra` per output element.
fn layer_flops(ins: &[Option<&TypeInfo>], outs: &[TypeInfo], extra: u64) -> u64 {
    let out = outs.first().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
    let (k, n) = ins
        .get(1)
        .copied()
        .flatten()
        .and_then(|w| w.shape.as_known())
        .and_then(|d| if let [k, n] = d[..] { Some((k, n)) } else { None })
        .unwrap_or((0, 0));
    let rows = out.checked_div(n as u64).unwrap_or(0);
    product_flops(rows, k, n).saturating_add(out.saturating_mul(extra))
}

/// An integer dense layer, the fused form of ONNX Runtime's dynamically quantized products
/// (`quantize_dynamic`: `Cast(MatMulInteger(a, b, a_zp, b_zp))·(a_scale·b_scale) + bias`) and
/// of `--quantize int8`'s. Inputs: `a` [..., K] (u8/i8, leading dims may be symbolic), `b`
/// [K, N] (u8/i8, static), `a_zero_point` (optional, one element, a's dtype), `b_zero_point`
/// (optional, one element or `[N]`, b's dtype), `a_scale` (f32: one element, or one per row:
/// a's shape with the last dim 1), `b_scale` (f32: one element or `[N]`), optional `bias`
/// (f32 `[N]`). Output f32 `[..., N]`:
///
/// `act(f32(Σ_k (a − a_zp)·(b − b_zp)) · (a_scale·b_scale) + bias)`
///
/// with the sum exact (wrapping in i32 as MatMulInteger's), converted to f32 once, the scale
/// product rounded to f32, then one f32 multiplication and one f32 addition: exactly the
/// unfused graph's operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QDense {
    /// Applied to every element before it is stored.
    pub activation: Option<UnaryOp>,
}

/// Checks `t` is one element or the 1-D `[n]`.
fn per_tensor_or(op: &str, what: &str, t: &TypeInfo, n: usize) -> Result<bool, OpError> {
    if t.shape.0.iter().all(|d| *d == Dim::Known(1)) {
        return Ok(false);
    }
    if t.shape.as_known().as_deref() == Some(&[n]) {
        return Ok(true);
    }
    Err(invalid(format!("{op} {what} must have one element or [{n}], got {}", t.shape)))
}

impl QDense {
    fn check(&self, ins: &[Option<&TypeInfo>]) -> Result<TypeInfo, OpError> {
        arity(ins, 6, 7)?;
        if let Some(a) = &self.activation {
            check_activation("QDense", a)?;
        }
        let (a, b) = (req(ins, 0)?, req(ins, 1)?);
        for (what, t) in [("a", a), ("b", b)] {
            if !matches!(t.dtype, DType::U8 | DType::I8) {
                return Err(invalid(format!("QDense {what} must be u8 or i8, got {}", t.dtype)));
            }
        }
        let Some(&[k, n]) = b.shape.as_known().as_deref() else {
            return Err(invalid(format!("QDense b must be a static 2-D matrix, got {}", b.shape)));
        };
        let Some((last, lead)) = a.shape.0.split_last() else {
            return Err(invalid("QDense a must have rank ≥ 1, got a scalar"));
        };
        if last.known() != Some(k) {
            return Err(invalid(format!("QDense a of shape {} must end in b's K = {k}", a.shape)));
        }
        for (i, operand, what) in [(2, a, "a_zero_point"), (3, b, "b_zero_point")] {
            let Some(z) = opt(ins, i) else { continue };
            if z.dtype != operand.dtype {
                return Err(invalid(format!("QDense {what} is {} but its operand is {}", z.dtype, operand.dtype)));
            }
            if i == 2 {
                per_tensor_or("QDense", what, z, 1)?;
            } else {
                per_tensor_or("QDense", what, z, n)?;
            }
        }
        let (sa, sb) = (req(ins, 4)?, req(ins, 5)?);
        for (what, t) in [("a_scale", sa), ("b_scale", sb)] {
            f32_of("QDense", what, t)?;
        }
        let per_row: Vec<Dim> = lead.iter().cloned().chain([Dim::Known(1)]).collect();
        if !sa.shape.0.iter().all(|d| *d == Dim::Known(1)) && sa.shape.0 != per_row {
            return Err(invalid(format!(
                "QDense a_scale must have one element or one per row ({}), got {}",
                Shape(per_row),
                sa.shape
            )));
        }
        per_tensor_or("QDense", "b_scale", sb, n)?;
        if let Some(bias) = opt(ins, 6) {
            f32_of("QDense", "bias", bias)?;
            if bias.shape.as_known().as_deref() != Some(&[n]) {
                return Err(invalid(format!("QDense bias must be [{n}] (b's N), got {}", bias.shape)));
            }
        }
        let mut out = lead.to_vec();
        out.push(Dim::Known(n));
        Ok(TypeInfo::new(DType::F32, Shape(out)))
    }
}

impl OpDef for QDense {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        Ok(vec![self.check(&super::input_types(ins))?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        let tys = super::tensor_types(ins);
        let ty = self.check(&tys.iter().map(Option::as_ref).collect::<Vec<_>>())?;
        let acc = super::MatMulInteger {}.eval(&ins[..4])?.remove(0);
        let acc = acc.view::<i32>().ok_or_else(|| invalid("MatMulInteger gave no i32 tensor"))?;
        let (sa, sb) = (f32_values(req(ins, 4)?)?, f32_values(req(ins, 5)?)?);
        let bias = opt(ins, 6).map(f32_values).transpose()?;
        let n = req(ins, 1)?.shape()[1];
        let y: Vec<f32> = acc
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (r, j) = (i / n.max(1), i % n.max(1));
                let scale = sa[if sa.len() == 1 { 0 } else { r }] * sb[if sb.len() == 1 { 0 } else { j }];
                let mut y = v as f32 * scale;
                if let Some(b) = &bias {
                    y += b[j];
                }
                match &self.activation {
                    Some(a) => activate(a, y),
                    None => y,
                }
            })
            .collect();
        let dims = ty.shape.as_known().ok_or_else(|| invalid("QDense output shape is not concrete"))?;
        Ok(vec![Tensor::from_vec(&dims, y)?])
    }

    /// `2·rows·K·N`, plus three per output element (conversion, scale, bias) and one for the
    /// activation.
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        layer_flops(ins, outs, 3 + u64::from(self.activation.is_some()))
    }
}

/// A dense layer: inputs `x` [..., K] (f32, leading dims may be symbolic), `W` [K, N] (f32,
/// static), optional `bias` `[N]`; output `[..., N]` = `act(x·W + bias)`, or `x·W + bias` when
/// `activation` is `None`. The activation must be one the kernels compute in registers:
/// Relu, Gelu (either form), Silu, Sigmoid or Tanh; any other is refused by inference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Applied to every element of `x·W + bias` before it is stored.
    pub activation: Option<UnaryOp>,
}

impl Dense {
    fn check(&self, x: &TypeInfo, w: &TypeInfo, bias: Option<&TypeInfo>) -> Result<TypeInfo, OpError> {
        if let Some(a) = &self.activation {
            check_activation("Dense", a)?;
        }
        let (k, n) = weight_dims("Dense", "W", w)?;
        let mut out = rows_of("Dense", x, k)?;
        if let Some(b) = bias {
            f32_of("Dense", "bias", b)?;
            if b.shape.as_known().as_deref() != Some(&[n]) {
                return Err(invalid(format!("Dense bias must be [{n}] (the weight's N), got {}", b.shape)));
            }
        }
        out.push(Dim::Known(n));
        Ok(TypeInfo::new(DType::F32, Shape(out)))
    }
}

impl OpDef for Dense {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 3)?;
        Ok(vec![self.check(req(ins, 0)?.ty, req(ins, 1)?.ty, opt(ins, 2).map(|b| b.ty))?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 3)?;
        let (x, w, bias) = (req(ins, 0)?, req(ins, 1)?, opt(ins, 2));
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        self.check(&ty(x), &ty(w), bias.map(ty).as_ref())?;
        let (k, n) = (w.shape()[0], w.shape()[1]);
        let m: usize = x.shape()[..x.shape().len() - 1].iter().product();
        let mut y = product(&f32_values(x)?, &f32_values(w)?, (m, k, n));
        let b = bias.map(f32_values).transpose()?;
        for (i, v) in y.iter_mut().enumerate() {
            if let Some(b) = &b {
                *v += b[i % n];
            }
            if let Some(a) = &self.activation {
                *v = activate(a, *v);
            }
        }
        let mut dims = x.shape()[..x.shape().len() - 1].to_vec();
        dims.push(n);
        Ok(vec![Tensor::from_vec(&dims, y)?])
    }

    /// `2·rows·K·N`, plus one per output element for the bias and one for the activation.
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        let extra = u64::from(ins.get(2).copied().flatten().is_some()) + u64::from(self.activation.is_some());
        layer_flops(ins, outs, extra)
    }
}

/// A gated MLP: inputs `x` [..., H] (f32, leading dims may be symbolic), `W_gate` [H, F],
/// `W_up` [H, F], `W_down` [F, H2] (f32, static); output [..., H2] =
/// `(act(x·W_gate) ⊙ (x·W_up))·W_down`. SwiGLU (Llama, Qwen) is `activation` Silu, GeGLU is
/// Gelu; the activation must be one [`Dense`] accepts. The [rows, F] intermediate is never
/// materialized by the kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedMlp {
    /// Applied to the gate product.
    pub activation: UnaryOp,
}

impl FusedMlp {
    fn check(&self, x: &TypeInfo, wg: &TypeInfo, wu: &TypeInfo, wd: &TypeInfo) -> Result<TypeInfo, OpError> {
        check_activation("FusedMlp", &self.activation)?;
        let (h, f) = weight_dims("FusedMlp", "W_gate", wg)?;
        if weight_dims("FusedMlp", "W_up", wu)? != (h, f) {
            return Err(invalid(format!("FusedMlp W_up {} must match W_gate [{h}, {f}]", wu.shape)));
        }
        let (f2, h2) = weight_dims("FusedMlp", "W_down", wd)?;
        if f2 != f {
            return Err(invalid(format!("FusedMlp W_down {} must have F = {f} rows (W_gate's columns)", wd.shape)));
        }
        let mut out = rows_of("FusedMlp", x, h)?;
        out.push(Dim::Known(h2));
        Ok(TypeInfo::new(DType::F32, Shape(out)))
    }
}

impl OpDef for FusedMlp {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 4, 4)?;
        Ok(vec![self.check(req(ins, 0)?.ty, req(ins, 1)?.ty, req(ins, 2)?.ty, req(ins, 3)?.ty)?])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 4, 4)?;
        let (x, wg, wu, wd) = (req(ins, 0)?, req(ins, 1)?, req(ins, 2)?, req(ins, 3)?);
        let ty = |t: &Tensor| TypeInfo::new(t.dtype(), t.static_shape());
        self.check(&ty(x), &ty(wg), &ty(wu), &ty(wd))?;
        let (h, f, h2) = (wg.shape()[0], wg.shape()[1], wd.shape()[1]);
        let lead = &x.shape()[..x.shape().len() - 1];
        let m: usize = lead.iter().product();
        let xv = f32_values(x)?;
        let gate = product(&xv, &f32_values(wg)?, (m, h, f));
        let up = product(&xv, &f32_values(wu)?, (m, h, f));
        let hidden: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| activate(&self.activation, g) * u).collect();
        let y = product(&hidden, &f32_values(wd)?, (m, f, h2));
        let mut dims = lead.to_vec();
        dims.push(h2);
        Ok(vec![Tensor::from_vec(&dims, y)?])
    }

    /// `2·rows·H·F` twice, `2·rows·F·H2`, and two per hidden element (activation and gating).
    fn flops(&self, ins: &[Option<&TypeInfo>], outs: &[TypeInfo]) -> u64 {
        let dims = |i: usize| {
            ins.get(i)
                .copied()
                .flatten()
                .and_then(|w| w.shape.as_known())
                .and_then(|d| if let [a, b] = d[..] { Some((a, b)) } else { None })
                .unwrap_or((0, 0))
        };
        let ((h, f), (_, h2)) = (dims(1), dims(3));
        let out = outs.first().and_then(|t| t.shape.numel_upper()).unwrap_or(0) as u64;
        let rows = out.checked_div(h2 as u64).unwrap_or(0);
        (2 * product_flops(rows, h, f))
            .saturating_add(product_flops(rows, f, h2))
            .saturating_add(rows.saturating_mul(2 * f as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;

    fn infer(op: &dyn OpDef, shapes: &[&str]) -> Result<Vec<TypeInfo>, OpError> {
        let tys: Vec<TypeInfo> = shapes.iter().map(|s| TypeInfo::new(DType::F32, Shape::parse(s).unwrap())).collect();
        op.infer(&tys.iter().map(|ty| Some(InferIn { ty, value: None, sym: None })).collect::<Vec<_>>())
    }

    #[test]
    fn dense_is_the_activation_of_the_biased_product() {
        // x [2, 2] · W [2, 3] + b, by hand.
        let x = t(&[2, 2], vec![1.0, 2.0, -3.0, 0.5]);
        let w = t(&[2, 3], vec![1.0, 0.0, -1.0, 2.0, 1.0, 0.5]);
        let b = t(&[3], vec![0.5, -4.0, 0.0]);
        let xw_b = [5.5, -2.0, 0.0, -1.5, -3.5, 3.25];
        let plain = Dense { activation: None }.eval(&[Some(&x), Some(&w), Some(&b)]).unwrap();
        assert_eq!(f32s(&plain[0]), xw_b);
        let relu = Dense { activation: Some(UnaryOp::Relu) }.eval(&[Some(&x), Some(&w), Some(&b)]).unwrap();
        assert_eq!(f32s(&relu[0]), [5.5, 0.0, 0.0, 0.0, 0.0, 3.25]);
        let silu = Dense { activation: Some(UnaryOp::Silu) }.eval(&[Some(&x), Some(&w), None]).unwrap();
        let want: Vec<f32> =
            [5.0f64, 2.0, 0.0, -2.0, 0.5, 3.25].iter().map(|&v| (v / (1.0 + (-v).exp())) as f32).collect();
        assert_eq!(f32s(&silu[0]), want);
        assert_eq!(silu[0].shape(), &[2, 3]);
    }

    #[test]
    fn dense_keeps_leading_dims_and_a_vector_input() {
        let x = t(&[2, 1, 2], vec![1.0, 1.0, 2.0, -1.0]);
        let w = t(&[2, 1], vec![3.0, 4.0]);
        let y = Dense { activation: Some(UnaryOp::Tanh) }.eval(&[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y[0].shape(), &[2, 1, 1]);
        assert_eq!(f32s(&y[0]), [7f64.tanh() as f32, 2f64.tanh() as f32]);
        let v = t(&[2], vec![1.0, -1.0]);
        let y = Dense { activation: None }.eval(&[Some(&v), Some(&w)]).unwrap();
        assert_eq!((y[0].shape(), f32s(&y[0])), (&[1usize][..], vec![-1.0]));
    }

    #[test]
    fn fused_mlp_gates_the_up_projection() {
        // H = 2, F = 2, H2 = 1: hidden = silu(x·Wg) ⊙ (x·Wu), y = hidden·Wd.
        let x = t(&[1, 2], vec![1.0, -2.0]);
        let wg = t(&[2, 2], vec![1.0, 0.0, 0.0, 1.0]);
        let wu = t(&[2, 2], vec![2.0, 1.0, 1.0, 1.0]);
        let wd = t(&[2, 1], vec![1.0, 10.0]);
        let y = FusedMlp { activation: UnaryOp::Silu }.eval(&[Some(&x), Some(&wg), Some(&wu), Some(&wd)]).unwrap();
        let silu = |v: f64| (v / (1.0 + (-v).exp())) as f32;
        let want = -10.0 * silu(-2.0);
        assert_eq!(f32s(&y[0]), [want]);
        let relu = FusedMlp { activation: UnaryOp::Relu }.eval(&[Some(&x), Some(&wg), Some(&wu), Some(&wd)]).unwrap();
        assert_eq!(f32s(&relu[0]), [0.0]);
    }

    #[test]
    fn inference_accepts_symbolic_rows_and_names_errors() {
        let d = Dense { activation: Some(UnaryOp::Gelu { tanh_approx: true }) };
        let y = infer(&d, &["[b, s<=16, 8]", "[8, 5]", "[5]"]).unwrap();
        assert_eq!(y[0].to_string(), "f32[b, s<=16, 5]");
        let e = |r: Result<Vec<TypeInfo>, OpError>| r.unwrap_err().to_string();
        assert!(e(infer(&d, &["[3, 7]", "[8, 5]"])).contains("must end in the weight's K = 8"));
        assert!(e(infer(&d, &["[3, 8]", "[8, 5]", "[4]"])).contains("bias must be [5]"));
        assert!(e(infer(&d, &["[3, 8]", "[k<=8, 5]"])).contains("static 2-D"));
        let exp = Dense { activation: Some(UnaryOp::Exp) };
        assert!(e(infer(&exp, &["[3, 8]", "[8, 5]"])).contains("activation Exp is not fusable"));
        let m = FusedMlp { activation: UnaryOp::Silu };
        let y = infer(&m, &["[1, s<=32, 8]", "[8, 12]", "[8, 12]", "[12, 6]"]).unwrap();
        assert_eq!(y[0].to_string(), "f32[1, s<=32, 6]");
        assert!(e(infer(&m, &["[2, 8]", "[8, 12]", "[8, 11]", "[12, 6]"])).contains("W_up"));
        assert!(e(infer(&m, &["[2, 8]", "[8, 12]", "[8, 12]", "[11, 6]"])).contains("F = 12"));
        assert!(
            e(infer(&FusedMlp { activation: UnaryOp::Abs }, &["[2, 8]", "[8, 12]", "[8, 12]", "[12, 6]"]))
                .contains("not fusable")
        );
    }

    #[test]
    fn flops_count_the_products() {
        let ty = |s: &str| TypeInfo::new(DType::F32, Shape::parse(s).unwrap());
        let (x, w, b, y) = (ty("[3, 8]"), ty("[8, 5]"), ty("[5]"), ty("[3, 5]"));
        let d = Dense { activation: Some(UnaryOp::Relu) };
        assert_eq!(d.flops(&[Some(&x), Some(&w), Some(&b)], std::slice::from_ref(&y)), 2 * 3 * 8 * 5 + 2 * 15);
        let (wg, wd, y) = (ty("[8, 12]"), ty("[12, 6]"), ty("[3, 6]"));
        let m = FusedMlp { activation: UnaryOp::Silu };
        assert_eq!(
            m.flops(&[Some(&x), Some(&wg), Some(&wg), Some(&wd)], &[y]),
            2 * (2 * 3 * 8 * 12) + 2 * 3 * 12 * 6 + 3 * 24
        );
    }
}
