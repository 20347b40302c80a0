//! Symbolic evaluation of shape computations: the value of a small integer tensor computed
//! from symbolic shapes (`Shape` → `Gather` → `Concat` → …), one [`Poly`] per element.
//!
//! Exported models compute the targets of `Reshape`, `Expand`, `Range`, `Slice` and
//! `ConstantOfShape` from `Shape` at run time. Knowing those values as polynomials of the input
//! symbols lets inference give the outputs symbolic dims (`past+seq`) instead of unknown ones,
//! which the code generator needs to plan memory for the symbols' bounds.

use crate::ops::{BinaryOp, InferIn, Op, UnaryOp};
use crate::{DType, Poly};

/// Largest tensor (in elements) whose symbolic value is tracked.
pub const SYM_MAX_ELEMENTS: usize = 64;

/// One input's value as polynomials: a constant integer tensor or a tracked symbolic value.
fn polys(i: &InferIn<'_>) -> Option<Vec<Poly>> {
    if let Some(s) = i.sym {
        return Some(s.to_vec());
    }
    let t = i.value?;
    if !(t.dtype().is_int() || t.dtype() == DType::Bool) || t.len() > SYM_MAX_ELEMENTS {
        return None;
    }
    Some(t.to_i64_vec().ok()?.into_iter().map(Poly::constant).collect())
}

/// The symbolic value of the (first) output of `op` applied to `ins`, when the output is a
/// small integer tensor that is a polynomial function of its inputs' shapes and values (all
/// constant when, say, an `Equal` of sizes is decided). `out_len` is the output's element
/// count.
pub fn sym_eval(op: &Op, ins: &[Option<InferIn<'_>>], out_len: usize) -> Option<Vec<Poly>> {
    if out_len > SYM_MAX_ELEMENTS {
        return None;
    }
    let arg = |k: usize| ins.get(k).copied().flatten();
    let v = |k: usize| arg(k).and_then(|i| polys(&i));
    // Values are flat lists: Concat is evaluated on vectors and scalars only, Binary and Where
    // on vectors and scalars or on equal shapes.
    let shapes: Vec<&crate::Shape> = ins.iter().flatten().map(|i| &i.ty.shape).collect();
    let vectors = shapes.iter().all(|s| s.rank() <= 1);
    let same = shapes.windows(2).all(|w| w[0] == w[1]);
    match op {
        Op::Concat(_) if !vectors => return None,
        Op::Binary(_) | Op::Where(_) if !(vectors || same) => return None,
        _ => {}
    }
    let r: Vec<Poly> = match op {
        Op::Shape(s) => {
            let dims = &arg(0)?.ty.shape.0;
            dims[s.range(dims.len())].iter().map(crate::Dim::poly).collect()
        }
        Op::Size(_) => {
            vec![arg(0)?.ty.shape.0.iter().fold(Poly::constant(1), |a, d| a.mul(&d.poly()))]
        }
        Op::Unary(UnaryOp::Identity) | Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => v(0)?,
        Op::Cast(c) if c.to.is_int() && arg(0)?.ty.dtype.is_int() => v(0)?,
        Op::Concat(_) => {
            let mut all = Vec::new();
            for k in 0..ins.len() {
                all.extend(v(k)?);
            }
            all
        }
        Op::Gather(g) => {
            let data = v(0)?;
            let (dt, it) = (arg(0)?.ty, arg(1)?.ty);
            if dt.shape.rank() != 1 || (g.axis != 0 && g.axis != -1) {
                return None;
            }
            let n = data.len() as i64;
            let idx = arg(1)?.value?.to_i64_vec().ok()?;
            let _ = it;
            idx.iter()
                .map(|&i| {
                    let j = if i < 0 { i + n } else { i };
                    usize::try_from(j).ok().and_then(|j| data.get(j).cloned())
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Slice(_) => {
            let data = v(0)?;
            if arg(0)?.ty.shape.rank() != 1 {
                return None;
            }
            let c = |k: usize| arg(k).map(|i| i.value.and_then(|t| t.to_i64_vec().ok()));
            let (starts, ends) = (c(1)??, c(2)??);
            let steps = match c(4) {
                Some(s) => s?,
                None => vec![1],
            };
            if starts.len() != 1 || ends.len() != 1 || steps.len() != 1 {
                return None;
            }
            let s = crate::ops::AxisSlice::new(data.len(), starts[0], ends[0], steps[0]).ok()?;
            (0..s.len as i128).map(|i| data[(s.start + i * s.step) as usize].clone()).collect()
        }
        Op::Binary(b) => {
            let (x, y) = (v(0)?, v(1)?);
            let n = x.len().max(y.len());
            if !(x.len() == n || x.len() == 1) || !(y.len() == n || y.len() == 1) {
                return None;
            }
            let pick = |a: &[Poly], i: usize| if a.len() == 1 { a[0].clone() } else { a[i].clone() };
            (0..n)
                .map(|i| {
                    let (p, q) = (pick(&x, i), pick(&y, i));
                    match b {
                        BinaryOp::Add => Some(p.add(&q)),
                        BinaryOp::Sub => Some(p.sub(&q)),
                        BinaryOp::Mul => Some(p.mul(&q)),
                        BinaryOp::Div => p.div_exact(&q),
                        BinaryOp::Equal => decide_equal(&p, &q).map(|e| Poly::constant(i64::from(e))),
                        BinaryOp::Max | BinaryOp::Min => {
                            let d = p.sub(&q);
                            let p_ge = match d.as_const() {
                                Some(c) => c >= 0,
                                None if d.is_nonneg() => true,
                                None if d.scale(-1).is_nonneg() => false,
                                None => return None,
                            };
                            Some(if p_ge == matches!(b, BinaryOp::Max) { p } else { q })
                        }
                        _ => None,
                    }
                })
                .collect::<Option<Vec<_>>>()?
        }
        Op::Where(_) => {
            let (c, x, y) = (v(0)?, v(1)?, v(2)?);
            let n = c.len().max(x.len()).max(y.len());
            let pick = |a: &[Poly], i: usize| a.get(if a.len() == 1 { 0 } else { i }).cloned();
            (0..n)
                .map(|i| match pick(&c, i)?.as_const()? {
                    0 => pick(&y, i),
                    _ => pick(&x, i),
                })
                .collect::<Option<Vec<_>>>()?
        }
        _ => return None,
    };
    (r.len() == out_len).then_some(r)
}

/// Whether `p == q` for every value of the symbols, when that is decided: equal polynomials,
/// or a difference that is a non-zero constant, or positive for all non-negative symbols.
fn decide_equal(p: &Poly, q: &Poly) -> Option<bool> {
    let d = p.sub(q);
    match d.as_const() {
        Some(c) => Some(c == 0),
        None if d.is_nonneg() && d.terms().any(|(m, c)| m.is_empty() && c > 0) => Some(false),
        None if d.scale(-1).is_nonneg() && d.terms().any(|(m, c)| m.is_empty() && c < 0) => Some(false),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Concat, Gather, ShapeOf};
    use crate::{Shape, Tensor, TypeInfo};

    #[test]
    fn shape_gather_concat_give_polynomials() {
        let x = TypeInfo::new(DType::F32, Shape::parse("[batch, past+seq, 64]").unwrap());
        let shape = sym_eval(
            &Op::Shape(ShapeOf { start: 0, end: None }),
            &[Some(InferIn { ty: &x, value: None, sym: None })],
            3,
        )
        .unwrap();
        assert_eq!(shape.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["batch", "past+seq", "64"]);
        let sty = TypeInfo::new(DType::I64, Shape::known(&[3]));
        let idx = Tensor::scalar(-2i64);
        let ity = TypeInfo::new(DType::I64, Shape(vec![]));
        let g = sym_eval(
            &Op::Gather(Gather { axis: 0 }),
            &[
                Some(InferIn { ty: &sty, value: None, sym: Some(&shape) }),
                Some(InferIn { ty: &ity, value: Some(&idx), sym: None }),
            ],
            1,
        )
        .unwrap();
        assert_eq!(g[0].to_string(), "past+seq");
        let minus1 = Tensor::from_vec(&[1], vec![-1i64]).unwrap();
        let one = TypeInfo::new(DType::I64, Shape::known(&[1]));
        let c = sym_eval(
            &Op::Concat(Concat { axis: 0 }),
            &[
                Some(InferIn { ty: &one, value: Some(&minus1), sym: None }),
                Some(InferIn { ty: &one, value: None, sym: Some(&g) }),
            ],
            2,
        )
        .unwrap();
        assert_eq!(c.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["-1", "past+seq"]);
    }

    #[test]
    fn equality_is_decided_only_when_certain() {
        let p = |s: &str| Poly::parse(s).unwrap();
        assert_eq!(decide_equal(&p("seq"), &p("seq")), Some(true));
        assert_eq!(decide_equal(&p("seq"), &p("-1")), Some(false));
        assert_eq!(decide_equal(&p("seq+1"), &p("0")), Some(false));
        assert_eq!(decide_equal(&p("seq"), &p("1")), None);
        assert_eq!(decide_equal(&p("seq"), &p("past")), None);
    }
}
