//! Every product as one [`Problem`](super::Problem): MatMul, Gemm and MatMulInteger nodes read
//! into batch dims, M, K, N and each operand's element strides.

use super::{Acc, Epilogue, Operand, Pack, Problem};
use crate::Result;
use crate::kernels::NodeCtx;
use slmtvm_ir::DType;
use slmtvm_ir::ops::Gemm;
use slmtvm_ir::ops::broadcast::broadcast_dims;
use slmtvm_ir::ops::matmul::operand_dims;

/// The contraction extent of physical extents `ka` (A) and `kb` (B), `sym` saying which are
/// symbolic: the static one when only one is (the symbolic operand's bound must be at least
/// it), else the smaller (both symbolic: a bound the run-time K loop never passes). Static
/// extents are checked equal by the caller.
pub(super) fn contraction(cx: &NodeCtx, ka: usize, kb: usize, sym: (bool, bool)) -> Result<usize> {
    let k = match sym {
        (true, false) => kb,
        (false, _) => ka,
        (true, true) => ka.min(kb),
    };
    if ka < k || kb < k {
        return Err(cx.error(format!("a static contraction extent {k} exceeds the symbolic one's bound")));
    }
    Ok(k)
}

/// Element strides of data of `data` dims right-aligned into `shape` (0 where it broadcasts).
fn aligned_strides(shape: &[usize], data: &[usize]) -> Vec<i64> {
    let mut st = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for k in 0..data.len().min(shape.len()) {
        let d = data[data.len() - 1 - k];
        if d != 1 {
            st[shape.len() - 1 - k] = acc;
        }
        acc *= d as i64;
    }
    st
}

/// Maps an operand of `shape` (with per-axis strides `st`) onto (batch strides over
/// `batch_rank` dims, row stride, column stride); a 1-D A is a row, a 1-D B a column.
pub(super) fn layout(st: &[i64], is_a: bool, batch_rank: usize) -> (Vec<i64>, i64, i64) {
    let r = st.len();
    if r == 1 {
        let (rs, cs) = if is_a { (0, st[0]) } else { (st[0], 0) };
        return (vec![0; batch_rank], rs, cs);
    }
    let mut batch = vec![0i64; batch_rank.saturating_sub(r - 2)];
    batch.extend_from_slice(&st[..r - 2]);
    batch.truncate(batch_rank);
    (batch, st[r - 2], st[r - 1])
}

/// NumPy-style dims of a product of `a` and `b`: (batch, m, k, n). Unlike the IR's inference
/// it reads physical dims, whose K may differ when either operand is symbolic along it (`sym`:
/// [`contraction`] then takes the run-time K); the split and the batch broadcast are the IR's.
fn product_dims(
    cx: &NodeCtx,
    a: &[usize],
    b: &[usize],
    sym: (bool, bool),
) -> Result<(Vec<usize>, usize, usize, usize)> {
    let (ab, m, ka) = operand_dims(a, true).ok_or_else(|| cx.error("operand a is a scalar"))?;
    let (bb, kb, n) = operand_dims(b, false).ok_or_else(|| cx.error("operand b is a scalar"))?;
    if sym == (false, false) && ka != kb {
        return Err(cx.error(format!("inner dims differ: {a:?} and {b:?}")));
    }
    let k = contraction(cx, ka, kb, sym)?;
    let batch =
        broadcast_dims(ab, bb).map_err(|_| cx.error(format!("batch dims do not broadcast: {a:?} and {b:?}")))?;
    Ok((batch, m, k, n))
}

/// The operand bound to input `i` of `shape`, its data of `data` dims broadcast into it.
pub(super) fn operand(
    cx: &NodeCtx,
    i: usize,
    shape: &[usize],
    data: &[usize],
    is_a: bool,
    batch_rank: usize,
) -> Result<Operand> {
    let (batch, rs, cs) = layout(&aligned_strides(shape, data), is_a, batch_rank);
    Ok(Operand { ptr: cx.in_ptr(i)?, dtype: cx.in_dtype(i)?, batch, rs, cs })
}

/// The row-major output operand of a product with `batch` dims and an M×N matrix.
pub(super) fn output(cx: &NodeCtx, batch: &[usize], m: usize, n: usize) -> Operand {
    let mut st = crate::emit::strides_of(&[batch, &[m, n]].concat());
    let cs = st.pop().unwrap_or(1);
    let rs = st.pop().unwrap_or(0);
    Operand { ptr: cx.out_ptr(0), dtype: cx.out_dtype(0), batch: st, rs, cs }
}

pub(super) fn matmul(cx: &NodeCtx, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (batch, m, k, n) = product_dims(cx, &ad, &bd, sym)?;
    let dtype = cx.in_dtype(0)?;
    if cx.in_dtype(1)? != dtype || cx.out_dtype(0) != dtype {
        return Err(cx.error("operands and result must share a dtype"));
    }
    let acc = match dtype {
        DType::F32 | DType::F16 => Acc::F32,
        DType::I32 => Acc::I32,
        DType::I64 => Acc::I64,
        other => return Err(cx.unsupported(format!("dtype {other}"))),
    };
    let r = batch.len();
    Ok(Problem {
        a: operand(cx, 0, &ad, &ad, true, r)?,
        b: operand(cx, 1, &bd, &bd, false, r)?,
        za: None,
        zb: None,
        out: output(cx, &batch, m, n),
        batch,
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc,
        epi: Epilogue::Plain,
        pack: (bd.len() == 2 && cx.in_const(1).is_some()).then_some(Pack { input: 1, k, n }),
    })
}

pub(super) fn gemm(cx: &NodeCtx, g: &Gemm, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (&[a0, a1], &[b0, b1]) = (ad.as_slice(), bd.as_slice()) else {
        return Err(cx.error("Gemm operands must be 2-D"));
    };
    let dtype = cx.in_dtype(0)?;
    if cx.in_dtype(1)? != dtype || cx.out_dtype(0) != dtype {
        return Err(cx.error("operands and result must share a dtype"));
    }
    let (m, k) = if g.trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if g.trans_b { (b1, b0) } else { (b0, b1) };
    if sym == (false, false) && k != kb {
        return Err(cx.error(format!("inner dims differ: {ad:?} and {bd:?}")));
    }
    let k = contraction(cx, k, kb, sym)?;
    let (ars, acs) = if g.trans_a { (1, a1 as i64) } else { (a1 as i64, 1) };
    let (brs, bcs) = if g.trans_b { (1, b1 as i64) } else { (b1 as i64, 1) };
    let a = Operand { ptr: cx.in_ptr(0)?, dtype, batch: vec![], rs: ars, cs: acs };
    let b = Operand { ptr: cx.in_ptr(1)?, dtype, batch: vec![], rs: brs, cs: bcs };
    let c = match cx.in_ptr_opt(2) {
        Some(ptr) if g.beta != 0.0 => {
            let cd = cx.in_dims(2)?;
            if cx.in_dtype(2)? != dtype {
                return Err(cx.error("C must share the operands' dtype"));
            }
            if cd.len() > 2 || cd.iter().rev().zip([n, m]).any(|(&d, o)| d != 1 && d != o) {
                return Err(cx.error(format!("C of shape {cd:?} does not broadcast to [{m}, {n}]")));
            }
            let st = aligned_strides(&[m, n], &cd);
            Some(Operand { ptr, dtype, batch: vec![], rs: st[0], cs: st[1] })
        }
        _ => None,
    };
    let (alpha, beta) = (g.alpha, g.beta);
    let (acc, epi) = match dtype {
        DType::F32 | DType::F16 => (Acc::F32, Epilogue::GemmF { alpha, beta, c }),
        DType::I32 => (Acc::I32, Epilogue::GemmI { alpha, beta, c }),
        DType::I64 => (Acc::I64, Epilogue::GemmI { alpha, beta, c }),
        other => return Err(cx.unsupported(format!("dtype {other}"))),
    };
    Ok(Problem {
        batch: vec![],
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc,
        a,
        b,
        za: None,
        zb: None,
        out: output(cx, &[], m, n),
        epi,
        pack: (!g.trans_b && cx.in_const(1).is_some()).then_some(Pack { input: 1, k, n }),
    })
}

pub(super) fn matmul_integer(cx: &NodeCtx, sym: (bool, bool)) -> Result<Problem> {
    if cx.out_dtype(0) != DType::I32 {
        return Err(cx.error("the result must be i32"));
    }
    integer_product(cx, sym)
}

/// QDense: the integer product of inputs 0–3 with the scaled epilogue of inputs 4–6
/// (`a_scale` per tensor or per row, `b_scale` per tensor or per column, optional bias).
pub(super) fn qdense(cx: &NodeCtx, d: &slmtvm_ir::ops::QDense, sym: (bool, bool)) -> Result<Problem> {
    if cx.out_dtype(0) != DType::F32 {
        return Err(cx.error("the result must be f32"));
    }
    let mut p = integer_product(cx, sym)?;
    let (ad, r) = (cx.in_dims(0)?, p.batch.len());
    for i in [4, 5] {
        if cx.in_dtype(i)? != DType::F32 {
            return Err(cx.error("the scales must be f32"));
        }
    }
    let sd = cx.in_dims(4)?;
    let sd = if sd.iter().all(|&v| v == 1) { vec![] } else { sd };
    let sa = operand(cx, 4, &ad, &sd, true, r)?;
    let per_column = cx.in_dims(5)?.iter().product::<usize>() != 1;
    let sb = Operand { ptr: cx.in_ptr(5)?, dtype: DType::F32, batch: vec![], rs: 0, cs: i64::from(per_column) };
    let bias = cx.in_ptr_opt(6).map(|ptr| Operand { ptr, dtype: DType::F32, batch: vec![], rs: 0, cs: 1 });
    p.epi = Epilogue::Scaled { sa, sb, bias, act: d.activation.clone() };
    // Zero points that are constant zeros (symmetric quantization) are no zero points.
    let zero = |i: usize| cx.in_const(i).is_some_and(|t| t.to_f64().iter().all(|&v| v == 0.0));
    if zero(2) {
        p.za = None;
    }
    if zero(3) {
        p.zb = None;
    }
    // A constant weight is read packed on the assembled path.
    let bd = cx.in_dims(1)?;
    if bd.len() == 2 && cx.in_const(1).is_some() {
        p.pack = Some(Pack { input: 1, k: bd[0], n: bd[1] });
    }
    Ok(p)
}

/// The integer product of inputs 0 and 1 with their zero points (inputs 2 and 3), stored as
/// the output's dtype by the caller's epilogue.
fn integer_product(cx: &NodeCtx, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (batch, m, k, n) = product_dims(cx, &ad, &bd, sym)?;
    for i in 0..2 {
        if !matches!(cx.in_dtype(i)?, DType::I8 | DType::U8) {
            return Err(cx.error("operands must be i8 or u8"));
        }
    }
    let r = batch.len();
    let zero_point = |i: usize, shape: &[usize], per_row: bool| -> Result<Option<Operand>> {
        if cx.in_ptr_opt(i).is_none() {
            return Ok(None);
        }
        if cx.in_dtype(i)? != cx.in_dtype(i - 2)? {
            return Err(cx.error("a zero point must share its operand's dtype"));
        }
        let zd = cx.in_dims(i)?;
        let aligned = if zd.iter().all(|&d| d == 1) {
            vec![]
        } else if zd.len() == 1 && per_row {
            if shape.len() < 2 {
                return Err(cx.error("a per-row zero point needs a of rank ≥ 2"));
            }
            vec![zd[0], 1]
        } else {
            zd
        };
        if aligned.len() > shape.len() || aligned.iter().rev().zip(shape.iter().rev()).any(|(&z, &s)| z != 1 && z != s)
        {
            return Err(cx.error(format!("zero point {aligned:?} does not broadcast to {shape:?}")));
        }
        Ok(Some(operand(cx, i, shape, &aligned, per_row, r)?))
    };
    Ok(Problem {
        a: operand(cx, 0, &ad, &ad, true, r)?,
        b: operand(cx, 1, &bd, &bd, false, r)?,
        za: zero_point(2, &ad, true)?,
        zb: zero_point(3, &bd, false)?,
        out: output(cx, &batch, m, n),
        batch,
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc: Acc::I32,
        epi: Epilogue::Plain,
        pack: None,
    })
}
