//! Attention: fused scaled dot-product attention, one query row at a time, with no S×T
//! intermediate in memory.
//!
//! For every (batch, query head, query row): the scores of the visible keys (a 4-lane dot
//! product over D with a scalar tail, times the scale, plus the mask) go to a stack slot of T
//! floats while their maximum is kept; then each `p = exp(s - max)` ([`super::math::exp`]) is
//! summed and `p·V[j]` accumulated into the output row, which is finally multiplied by
//! `1/Σp` (within an ulp or two of the reference's division). Grouped-query heads read K/V
//! head `h / (Hq/Hkv)`.
//!
//! Symbolic dims: the kernel always loops over the run-time extents of S (query rows) and T
//! (keys), read with [`NodeCtx::extent`], and addresses every tensor with its physical (bound)
//! strides, so a symbolic S or T needs no other kernel; the causal limit `i + T − S` uses the
//! run-time values. The batch runs over its physical extent (position-wise). The head counts
//! and head sizes must be static.

use super::NodeCtx;
use super::math::exp;
use crate::Result;
use crate::emit::{Kb, strides_of};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use slmtvm_ir::{DType, Op};

/// Strides of a tensor of physical `dims` broadcast (right-aligned) to rank 4: 0 on size-1
/// and missing axes.
fn broadcast4(dims: &[usize]) -> [i64; 4] {
    let st = strides_of(dims);
    let mut out = [0i64; 4];
    for k in 0..dims.len().min(4) {
        let (axis, a) = (3 - k, dims.len() - 1 - k);
        out[axis] = if dims[a] == 1 { 0 } else { st[a] };
    }
    out
}

/// Emits the kernel of `cx.node`.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let Op::Attention(at) = &cx.node.op else { return Err(cx.error("not an Attention node")) };
    let id = |i: usize| cx.in_id(i).ok_or_else(|| cx.error(format!("input {i} is required")));
    let (q, k, v) = (id(0)?, id(1)?, id(2)?);
    for (val, what) in [(q, "Q"), (k, "K"), (v, "V")] {
        let sh = &cx.g.ty(val).shape.0;
        if sh.len() != 4 || sh[1].known().is_none() || sh[3].known().is_none() {
            return Err(
                cx.unsupported(format!("{what} of shape {}: head counts and sizes must be static", cx.g.ty(val).shape))
            );
        }
    }
    let (qd, kd, vd) = (cx.dims(q)?, cx.dims(k)?, cx.dims(v)?);
    let (nb, hq, sp, d) = (qd[0], qd[1], qd[2], qd[3]);
    let (hkv, tp, dv) = (kd[1], kd[2], vd[3]);
    if hkv == 0 || hq % hkv != 0 {
        return Err(cx.error(format!("query heads {hq} are not a multiple of key/value heads {hkv}")));
    }
    if nb * hq * sp * dv == 0 {
        return Ok(());
    }
    let group = hq / hkv;
    let scale = at.scale.unwrap_or((1.0 / (d as f64).sqrt()) as f32);
    let (qs, ks, vs) = (strides_of(&qd), strides_of(&kd), strides_of(&vd));
    let os = strides_of(&[nb, hq, sp, dv]);
    let mask = match cx.in_ptr_opt(3) {
        Some(p) => Some((p, cx.in_dtype(3)?, broadcast4(&cx.in_dims(3)?))),
        None => None,
    };
    let (qp, kp, vp, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.in_ptr(2)?, cx.out_ptr(0));
    let s_rt = cx.extent(kb, q, 2)?;
    let t_rt = cx.extent(kb, k, 2)?;
    let slot = kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, (tp.max(1) * 4) as u32, 4));
    let vector = kb.caps.vector;
    let (d4, dv4) = if vector { (d / 4 * 4, dv / 4 * 4) } else { (0, 0) };
    let causal = at.causal;
    kb.nest(&[nb, hq], &mut |kb, idx| {
        let (b, h) = (idx[0], idx[1]);
        let gc = kb.iconst(group as i64);
        let g = kb.b.ins().udiv(h, gc);
        let qh = kb.linear(0, &[b, h], &qs[..2]);
        let kh = kb.linear(0, &[b, g], &ks[..2]);
        let vh = kb.linear(0, &[b, g], &vs[..2]);
        let oh = kb.linear(0, &[b, h], &os[..2]);
        let mh = mask.map(|(_, _, ms)| kb.linear(0, &[b, h], &ms[..2]));
        let zero = kb.iconst(0);
        kb.for_range(zero, s_rt, 1, |kb, i| {
            let qrow = kb.b.ins().imul_imm_s(i, d as i64);
            let qrow = kb.b.ins().iadd(qh, qrow);
            let orow = kb.b.ins().imul_imm_s(i, dv as i64);
            let orow = kb.b.ins().iadd(oh, orow);
            let lim = if causal {
                // Keys j <= i + T - S: j < min(T, i + T - S + 1).
                let a = kb.b.ins().iadd(i, t_rt);
                let a = kb.b.ins().isub(a, s_rt);
                let a = kb.b.ins().iadd_imm_s(a, 1);
                kb.b.ins().smin(a, t_rt)
            } else {
                t_rt
            };
            let ptr = kb.caps.ptr;
            let sbase = kb.b.ins().stack_addr(ptr, slot, 0);
            let ninf = kb.fconst(f32::NEG_INFINITY, 1);
            let m = kb.var(ninf);
            let zero = kb.iconst(0);
            kb.for_range(zero, lim, 1, |kb, j| {
                let krow = kb.b.ins().imul_imm_s(j, d as i64);
                let krow = kb.b.ins().iadd(kh, krow);
                let dot = dot(kb, qp, qrow, kp, krow, d, d4);
                let sc = kb.fconst(scale, 1);
                let mut s = kb.b.ins().fmul(dot, sc);
                if let (Some((mp, mdt, ms)), Some(mh)) = (mask, mh) {
                    let mi = kb.linear(0, &[i, j], &ms[2..]);
                    let mi = kb.b.ins().iadd(mh, mi);
                    if mdt == DType::Bool {
                        let a = kb.addr(mp, mi, 1);
                        let keep = kb.load(types::I8, a, 0);
                        let z = kb.b.ins().iconst(types::I8, 0);
                        let off = kb.b.ins().icmp(IntCC::Equal, keep, z);
                        let ninf = kb.fconst(f32::NEG_INFINITY, 1);
                        s = kb.b.ins().select(off, ninf, s);
                    } else {
                        let a = kb.addr(mp, mi, 4);
                        let mv = kb.load(types::F32, a, 0);
                        s = kb.b.ins().fadd(s, mv);
                    }
                }
                let a = kb.addr(sbase, j, 4);
                kb.store(s, a, 0);
                let old = kb.b.use_var(m);
                let new = kb.b.ins().fmax(old, s);
                kb.b.def_var(m, new);
            });
            let mx = kb.b.use_var(m);
            row_op(kb, yp, orow, dv, dv4, &mut |kb, _, lanes| kb.fconst(0.0, lanes));
            let zf = kb.fconst(0.0, 1);
            let sum = kb.var(zf);
            kb.for_range(zero, lim, 1, |kb, j| {
                let a = kb.addr(sbase, j, 4);
                let s = kb.load(types::F32, a, 0);
                let x = kb.b.ins().fsub(s, mx);
                let p = exp(kb, x);
                let old = kb.b.use_var(sum);
                let new = kb.b.ins().fadd(old, p);
                kb.b.def_var(sum, new);
                let pv = if vector { kb.b.ins().splat(types::F32X4, p) } else { p };
                let vrow = kb.b.ins().imul_imm_s(j, dv as i64);
                let vrow = kb.b.ins().iadd(vh, vrow);
                row_op(kb, yp, orow, dv, dv4, &mut |kb, c, lanes| {
                    let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
                    let vi = kb.b.ins().iadd(vrow, c);
                    let va = kb.addr(vp, vi, 4);
                    let vv = kb.load(ty, va, 0);
                    let oi = kb.b.ins().iadd(orow, c);
                    let oa = kb.addr(yp, oi, 4);
                    let acc = kb.load(ty, oa, 0);
                    kb.mul_add(if lanes == 4 { pv } else { p }, vv, acc)
                });
            });
            let total = kb.b.use_var(sum);
            let one = kb.fconst(1.0, 1);
            let r = kb.b.ins().fdiv(one, total);
            let rv = if vector { kb.b.ins().splat(types::F32X4, r) } else { r };
            row_op(kb, yp, orow, dv, dv4, &mut |kb, c, lanes| {
                let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
                let oi = kb.b.ins().iadd(orow, c);
                let oa = kb.addr(yp, oi, 4);
                let acc = kb.load(ty, oa, 0);
                kb.b.ins().fmul(acc, if lanes == 4 { rv } else { r })
            });
        });
    });
    Ok(())
}

/// `Σ_c a[ai + c]·b[bi + c]` over `c < n` (f32): 4 lanes for `c < n4`, then a scalar tail.
fn dot(kb: &mut Kb, a: Value, ai: Value, b: Value, bi: Value, n: usize, n4: usize) -> Value {
    // acc += a[ai + c]·b[bi + c] for c in lo..hi by step, with loads of type `ty`.
    let run = |kb: &mut Kb, init: Value, lo: usize, hi: usize, step: i64, ty: types::Type| -> Value {
        let acc = kb.var(init);
        kb.for_const(lo as i64, hi as i64, step, |kb, c| {
            let x = kb.b.ins().iadd(ai, c);
            let x = kb.addr(a, x, 4);
            let x = kb.load(ty, x, 0);
            let y = kb.b.ins().iadd(bi, c);
            let y = kb.addr(b, y, 4);
            let y = kb.load(ty, y, 0);
            let old = kb.b.use_var(acc);
            let new = kb.mul_add(x, y, old);
            kb.b.def_var(acc, new);
        });
        kb.b.use_var(acc)
    };
    let mut total = kb.fconst(0.0, 1);
    if n4 > 0 {
        let z = kb.fconst(0.0, 4);
        let v = run(kb, z, 0, n4, 4, types::F32X4);
        total = kb.hsum(v);
    }
    if n4 < n {
        total = run(kb, total, n4, n, 1, types::F32);
    }
    total
}

/// Stores `f(c, lanes)` at `y[row + c]` for `c < n`: 4 lanes for `c < n4`, then single ones.
fn row_op(kb: &mut Kb, y: Value, row: Value, n: usize, n4: usize, f: &mut dyn FnMut(&mut Kb, Value, usize) -> Value) {
    if n4 > 0 {
        kb.for_const(0, n4 as i64, 4, |kb, c| {
            let v = f(kb, c, 4);
            let i = kb.b.ins().iadd(row, c);
            let a = kb.addr(y, i, 4);
            kb.store(v, a, 0);
        });
    }
    if n4 < n {
        kb.for_const(n4 as i64, n as i64, 1, |kb, c| {
            let v = f(kb, c, 1);
            let i = kb.b.ins().iadd(row, c);
            let a = kb.addr(y, i, 4);
            kb.store(v, a, 0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_broadcast_right_aligned_to_rank_4() {
        assert_eq!(broadcast4(&[3, 7]), [0, 0, 7, 1]);
        assert_eq!(broadcast4(&[2, 1, 3, 7]), [21, 0, 7, 1]);
        assert_eq!(broadcast4(&[7]), [0, 0, 0, 1]);
        assert_eq!(broadcast4(&[1, 4, 1, 1]), [0, 1, 0, 0]);
    }
}
