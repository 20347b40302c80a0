//! Attention: fused scaled dot-product attention over blocks of query rows, with no
//! [S, T] intermediate in the arena.
//!
//! For every (batch, query head) and block of `R` query rows (`R` chosen so the block's
//! scores take at most [`SCRATCH_BYTES`] of stack):
//! 1. the block's scores `Q·Kᵀ` go to a stack scratch of R×T floats through the matrix
//!    product schedules (`matmul::Product`): the broadcast schedule over the head's keys
//!    transposed once into a ≤ [`KEYS_BYTES`] scratch, or, when they do not fit, the dot
//!    schedule reading K in place;
//! 2. each row is scaled, the mask added and the row maximum kept (4 lanes at a time, a
//!    scalar tail; a bool mask row by scalars), then `p = exp(s − max)`
//!    ([`crate::emit::math::exp`], vectorized) is stored and summed; keys past a causal limit get
//!    `p = 0`. With an assembled microkernel the row is one assembled AVX2 / AVX-512
//!    function ([`crate::asm::vmath::ExpSum`] with its scores pass, for no mask or an f32 one
//!    along the keys or broadcast over them; other masks keep the Cranelift first pass);
//! 3. `P·V` runs as register tiles of 4 rows × 8 columns (two `F32X4` per row) over the
//!    run-time keys (causal: only those the tile's last row sees), and each output row is
//!    multiplied by `1/Σp` as it is stored (so a row that sees no key is NaN, as the
//!    reference's softmax of such a row is). With an assembled microkernel and static keys,
//!    `P·V` is instead one `Product` over all keys (causal rows' probabilities past their
//!    limit are 0) and the rows are scaled after.
//!
//! Grouped-query heads read K/V head `h / (Hq/Hkv)`. Symbolic dims: S and T loop over their
//! run-time extents ([`NodeCtx::extent`]; whole query blocks up to S run, rows past it are
//! garbage in the physical padding, see [`crate::layout`]), and every tensor is addressed with
//! its physical (bound) strides; the causal limit `i + T − S` uses the run-time values. The
//! batch runs over its physical extent (position-wise). Head counts and head sizes must be
//! static.

use super::NodeCtx;
use super::matmul::{F32Mat, Product, row_blocks};
use crate::Result;
use crate::asm::AsmFn;
use crate::asm::vmath::{ExpSum, RowMask, Scores};
use crate::emit::math::exp;
use crate::emit::{Kb, strides_of};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, StackSlot, StackSlotData, StackSlotKind, Value, types};
use slmtvm_ir::{DType, Op};
use slmtvm_targets::Microkernel;

/// The most stack one query block's scores may take.
pub const SCRATCH_BYTES: usize = 16 * 1024;

/// The most stack a head's transposed keys may take (beyond it, `Q·Kᵀ` reads K in place).
pub const KEYS_BYTES: usize = 32 * 1024;

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

/// Query rows per block for `s` query rows and `t` keys: as many as fit [`SCRATCH_BYTES`]
/// (at most 64, a multiple of 4 when 4 or more), at least 1.
fn block_rows(s: usize, t: usize) -> usize {
    let fit = (SCRATCH_BYTES / (4 * t.max(1))).clamp(1, 64);
    let r = if fit >= 4 { fit / 4 * 4 } else { fit };
    r.min(s.max(1))
}

/// What every block of a node's kernel shares.
struct Plan {
    d: usize,
    dv: usize,
    tp: usize,
    scale: f32,
    causal: bool,
    /// Run-time S and T.
    s_rt: Value,
    t_rt: Value,
    t_sym: bool,
    /// Mask pointer, dtype and rank-4 broadcast strides.
    mask: Option<(Value, DType, [i64; 4])>,
    /// Q, K, V and output pointers.
    ptrs: [Value; 4],
    scores: StackSlot,
    sums: StackSlot,
    /// Scratch for the head's keys transposed to [D, T] (so `Q·Kᵀ` runs the broadcast
    /// schedule, vectorized along keys), when they fit [`KEYS_BYTES`] and vectors exist.
    keys_t: Option<StackSlot>,
}

/// Element offsets of one (batch, head) in Q, K, V, the output and the mask.
struct Head {
    q: Value,
    k: Value,
    v: Value,
    o: Value,
    m: Option<Value>,
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
    let (qs, ks, vs) = (strides_of(&qd), strides_of(&kd), strides_of(&vd));
    let os = strides_of(&[nb, hq, sp, dv]);
    let mask = match cx.in_ptr_opt(3) {
        Some(p) => Some((p, cx.in_dtype(3)?, broadcast4(&cx.in_dims(3)?))),
        None => None,
    };
    let rows = block_rows(sp, tp);
    let slot = |kb: &mut Kb, bytes: usize| {
        kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes.max(4) as u32, 4))
    };
    let plan = Plan {
        d,
        dv,
        tp,
        scale: at.scale.unwrap_or((1.0 / (d as f64).sqrt()) as f32),
        causal: at.causal,
        s_rt: cx.extent(kb, q, 2)?,
        t_rt: cx.extent(kb, k, 2)?,
        t_sym: cx.g.ty(k).shape.0[2].known().is_none(),
        mask,
        ptrs: [cx.in_ptr(0)?, cx.in_ptr(1)?, cx.in_ptr(2)?, cx.out_ptr(0)],
        scores: slot(kb, rows * tp * 4),
        sums: slot(kb, rows * 4),
        keys_t: (kb.caps.vector && d * tp * 4 <= KEYS_BYTES && tp >= 4).then(|| slot(kb, d * tp * 4)),
    };
    let s_run = cx.g.ty(q).shape.0[2].known().is_none().then_some(plan.s_rt);
    // A split kernel divides the (batch, head) pairs when there are at least as many as query
    // blocks, else the query blocks of every head (in `row_blocks`).
    let nest = if nb * hq >= sp.div_ceil(rows) { Kb::nest_split } else { Kb::nest };
    nest(kb, &[nb, hq], &mut |kb, idx| {
        let (b, h) = (idx[0], idx[1]);
        let g = if group == 1 { h } else { kb.b.ins().udiv_imm_u(h, group as i64) };
        let head = Head {
            q: kb.linear(0, &[b, h], &qs[..2]),
            k: kb.linear(0, &[b, g], &ks[..2]),
            v: kb.linear(0, &[b, g], &vs[..2]),
            o: kb.linear(0, &[b, h], &os[..2]),
            m: plan.mask.map(|(_, _, ms)| kb.linear(0, &[b, h], &ms[..2])),
        };
        if let Some(kt) = plan.keys_t {
            transpose_keys(kb, &plan, &head, kt);
        }
        row_blocks(kb, sp, s_run, rows, &mut |kb, i0, n| block(kb, &plan, &head, i0, n));
    });
    Ok(())
}

/// Query rows `i0..i0 + n` of one head.
fn block(kb: &mut Kb, pl: &Plan, hd: &Head, i0: Value, n: usize) {
    let ptr = kb.caps.ptr;
    let [qp, kp, vp, yp] = pl.ptrs;
    let sbase = kb.b.ins().stack_addr(ptr, pl.scores, 0);
    let qoff = kb.b.ins().imul_imm_s(i0, pl.d as i64);
    let qoff = kb.b.ins().iadd(hd.q, qoff);
    let a = F32Mat { ptr: kb.addr(qp, qoff, 4), rs: pl.d as i64, cs: 1 };
    let kt = match pl.keys_t {
        Some(slot) => F32Mat { ptr: kb.b.ins().stack_addr(ptr, slot, 0), rs: pl.tp as i64, cs: 1 },
        None => F32Mat { ptr: kb.addr(kp, hd.k, 4), rs: 1, cs: pl.d as i64 },
    };
    let s = F32Mat { ptr: sbase, rs: pl.tp as i64, cs: 1 };
    Product { n_run: pl.t_sym.then_some(pl.t_rt), ..Product::new(a, kt, s, (n, pl.d, pl.tp)) }.emit(kb);
    kb.for_const(0, n as i64, 1, |kb, r| {
        let i = kb.b.ins().iadd(i0, r);
        softmax_row(kb, pl, hd, i, r);
    });
    let vbase = kb.addr(vp, hd.v, 4);
    let ooff = kb.b.ins().imul_imm_s(i0, pl.dv as i64);
    let ooff = kb.b.ins().iadd(hd.o, ooff);
    let obase = kb.addr(yp, ooff, 4);
    if kb.caps.schedule.kernel != Microkernel::Cranelift && !pl.t_sym {
        // Static keys: P·V over all of them on the assembled microkernels (causal: the
        // probabilities past each row's limit are 0), then each row times 1/Σp.
        let p = F32Mat { ptr: sbase, rs: pl.tp as i64, cs: 1 };
        let v = F32Mat { ptr: vbase, rs: pl.dv as i64, cs: 1 };
        let o = F32Mat { ptr: obase, rs: pl.dv as i64, cs: 1 };
        Product::new(p, v, o, (n, pl.tp, pl.dv)).emit(kb);
        scale_rows(kb, pl, obase, n);
    } else {
        probs_times_v(kb, pl, [sbase, vbase, obase], i0, n);
    }
}

/// Multiplies each of the block's `n` output rows (at `obase`) by its `1/Σp`.
fn scale_rows(kb: &mut Kb, pl: &Plan, obase: Value, n: usize) {
    let ptr = kb.caps.ptr;
    let vector = kb.caps.vector;
    kb.for_const(0, n as i64, 1, |kb, r| {
        let sums = kb.b.ins().stack_addr(ptr, pl.sums, 0);
        let sa = kb.addr(sums, r, 4);
        let inv = kb.load(types::F32, sa, 0);
        let inv4 = if vector { kb.b.ins().splat(types::F32X4, inv) } else { inv };
        let roff = kb.b.ins().imul_imm_s(r, (pl.dv * 4) as i64);
        let orow = kb.b.ins().iadd(obase, roff);
        let (zero, end) = (kb.iconst(0), kb.iconst(pl.dv as i64));
        kb.for_lanes(zero, end, vector, &mut |kb, j, lanes| {
            let a = kb.addr(orow, j, 4);
            let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
            let y = kb.load(ty, a, 0);
            let y = kb.b.ins().fmul(y, if lanes == 4 { inv4 } else { inv });
            kb.store(y, a, 0);
        });
    });
}

/// Copies the run-time keys of one head, K [T, D], to the scratch `slot` as [D, Tp].
fn transpose_keys(kb: &mut Kb, pl: &Plan, hd: &Head, slot: StackSlot) {
    let ptr = kb.caps.ptr;
    let base = kb.b.ins().stack_addr(ptr, slot, 0);
    let kbase = kb.addr(pl.ptrs[1], hd.k, 4);
    let zero = kb.iconst(0);
    kb.for_range(zero, pl.t_rt, 1, |kb, j| {
        let roff = kb.b.ins().imul_imm_s(j, (pl.d * 4) as i64);
        let krow = kb.b.ins().iadd(kbase, roff);
        let col = kb.addr(base, j, 4);
        for c in 0..pl.d {
            let x = kb.load(types::F32, krow, (4 * c) as i32);
            kb.store(x, col, (4 * c * pl.tp) as i32);
        }
    });
}

/// Turns score row `r` of the block (query row `i`) into unnormalized probabilities
/// `exp(s·scale + mask − max)` over the visible keys, zeros past the causal limit, and stores
/// `1/Σp` in the row's sum slot.
fn softmax_row(kb: &mut Kb, pl: &Plan, hd: &Head, i: Value, r: Value) {
    let ptr = kb.caps.ptr;
    let sbase = kb.b.ins().stack_addr(ptr, pl.scores, 0);
    let roff = kb.b.ins().imul_imm_s(r, (pl.tp * 4) as i64);
    let srow = kb.b.ins().iadd(sbase, roff);
    let zero = kb.iconst(0);
    let lim = if pl.causal {
        // Keys j <= i + T - S: j < min(T, i + T - S + 1), at least 0.
        let a = kb.b.ins().iadd(i, pl.t_rt);
        let a = kb.b.ins().isub(a, pl.s_rt);
        let a = kb.b.ins().iadd_imm_s(a, 1);
        let a = kb.b.ins().smin(a, pl.t_rt);
        kb.b.ins().smax(a, zero)
    } else {
        pl.t_rt
    };
    let vector = kb.caps.vector;
    let fty = |lanes: usize| if lanes == 4 { types::F32X4 } else { types::F32 };
    let mrow = match (pl.mask, hd.m) {
        (Some((_, _, ms)), Some(mh)) => {
            let o = kb.b.ins().imul_imm_s(i, ms[2]);
            Some(kb.b.ins().iadd(mh, o))
        }
        _ => None,
    };
    let kernel = kb.caps.schedule.kernel;
    let sums = kb.b.ins().stack_addr(ptr, pl.sums, 0);
    let sa = kb.addr(sums, r, 4);
    // With an assembled microkernel and an f32 mask read along the keys (or none), the whole
    // row is one assembled function: scale, mask, maximum, exponentials, sum.
    let row_mask = match (pl.mask, mrow) {
        (None, _) => Some((RowMask::None, None)),
        (Some((mp, DType::F32, ms)), Some(mrow)) if ms[3] <= 1 => {
            Some((if ms[3] == 0 { RowMask::Scalar } else { RowMask::Keys }, Some(kb.addr(mp, mrow, 4))))
        }
        _ => None,
    };
    if let (true, Some((mask, mptr))) = (kernel != Microkernel::Cranelift, row_mask) {
        let scores = Some(Scores { scale: pl.scale.to_bits(), mask });
        let z = kb.iconst(0);
        kb.call_asm(AsmFn::ExpSum(ExpSum { kernel, scores }), &[srow, lim, mptr.unwrap_or(z), sa, z, z]);
        finish_row(kb, pl, srow, lim, sa);
        return;
    }
    // Pass 1: scale, mask, maximum.
    let ninf4 = kb.fconst(f32::NEG_INFINITY, if vector { 4 } else { 1 });
    let mv = kb.var(ninf4);
    let ninf = kb.fconst(f32::NEG_INFINITY, 1);
    let ms_ = kb.var(ninf);
    let bool_mask = matches!(pl.mask, Some((_, DType::Bool, _)));
    kb.for_lanes(zero, lim, vector && !bool_mask, &mut |kb, j, lanes| {
        let a = kb.addr(srow, j, 4);
        let s = kb.load(fty(lanes), a, 0);
        let sc = kb.fconst(pl.scale, lanes);
        let mut s = kb.b.ins().fmul(s, sc);
        if let (Some((mp, mdt, ms)), Some(mrow)) = (pl.mask, mrow) {
            let mi = if ms[3] == 0 {
                mrow
            } else {
                let o = kb.b.ins().imul_imm_s(j, ms[3]);
                kb.b.ins().iadd(mrow, o)
            };
            if mdt == DType::Bool {
                let ma = kb.addr(mp, mi, 1);
                let keep = kb.load(types::I8, ma, 0);
                let z = kb.b.ins().iconst(types::I8, 0);
                let off = kb.b.ins().icmp(IntCC::Equal, keep, z);
                s = kb.b.ins().select(off, ninf, s);
            } else {
                let ma = kb.addr(mp, mi, 4);
                let mv = if ms[3] == 0 && lanes == 4 {
                    let x = kb.load(types::F32, ma, 0);
                    kb.b.ins().splat(types::F32X4, x)
                } else {
                    kb.load(fty(lanes), ma, 0)
                };
                s = kb.b.ins().fadd(s, mv);
            }
        }
        kb.store(s, a, 0);
        let var = if lanes == 4 { mv } else { ms_ };
        let old = kb.b.use_var(var);
        let new = kb.b.ins().fmax(old, s);
        kb.b.def_var(var, new);
    });
    let mut mx = kb.b.use_var(ms_);
    if vector {
        let v = kb.b.use_var(mv);
        let h = kb.hmax(v);
        mx = kb.b.ins().fmax(mx, h);
    }
    // Through the row's sum slot (a load stays where it is): Cranelift would otherwise
    // recompute the maximum of the first loop's result inside the next loop.
    kb.store(mx, sa, 0);
    let mx = kb.load(types::F32, sa, 0);
    // Pass 2: p = exp(s - max), summed (with an assembled microkernel, one assembled pass).
    if kernel != Microkernel::Cranelift {
        let z = kb.iconst(0);
        kb.call_asm(AsmFn::ExpSum(ExpSum { kernel, scores: None }), &[srow, lim, sa, sa, z, z]);
        finish_row(kb, pl, srow, lim, sa);
        return;
    }
    let z4 = kb.fconst(0.0, if vector { 4 } else { 1 });
    let sv = kb.var(z4);
    let z1 = kb.fconst(0.0, 1);
    let ss = kb.var(z1);
    let mx4 = if vector { kb.b.ins().splat(types::F32X4, mx) } else { mx };
    kb.for_lanes(zero, lim, vector, &mut |kb, j, lanes| {
        let a = kb.addr(srow, j, 4);
        let s = kb.load(fty(lanes), a, 0);
        let x = kb.b.ins().fsub(s, if lanes == 4 { mx4 } else { mx });
        let p = exp(kb, x);
        kb.store(p, a, 0);
        let var = if lanes == 4 { sv } else { ss };
        let old = kb.b.use_var(var);
        let new = kb.b.ins().fadd(old, p);
        kb.b.def_var(var, new);
    });
    if pl.causal {
        zero_past(kb, srow, lim, pl.t_rt);
    }
    let mut total = kb.b.use_var(ss);
    if vector {
        let v = kb.b.use_var(sv);
        let h = kb.hsum(v);
        total = kb.b.ins().fadd(h, total);
    }
    let one = kb.fconst(1.0, 1);
    let inv = kb.b.ins().fdiv(one, total);
    let sums = kb.b.ins().stack_addr(ptr, pl.sums, 0);
    let a = kb.addr(sums, r, 4);
    kb.store(inv, a, 0);
}

/// After an assembled pass left `Σp` at `sa`: zeros past a causal limit, `1/Σp` at `sa`.
fn finish_row(kb: &mut Kb, pl: &Plan, srow: Value, lim: Value, sa: Value) {
    if pl.causal {
        zero_past(kb, srow, lim, pl.t_rt);
    }
    let total = kb.load(types::F32, sa, 0);
    let one = kb.fconst(1.0, 1);
    let inv = kb.b.ins().fdiv(one, total);
    kb.store(inv, sa, 0);
}

/// Zeros the probabilities of keys `lim..t` (past a causal limit) of the row at `srow`.
fn zero_past(kb: &mut Kb, srow: Value, lim: Value, t: Value) {
    kb.for_range(lim, t, 1, |kb, j| {
        let a = kb.addr(srow, j, 4);
        let z = kb.fconst(0.0, 1);
        kb.store(z, a, 0);
    });
}

/// `out[r, :] = (Σ_{j < T} P[r, j]·V[j, :]) · (1/Σp)[r]` for the block's `n` rows (query rows
/// from `i0`): tiles of up to 4 rows × (8 vector columns, then 4, then single columns),
/// accumulated in registers over the run-time keys — with `causal`, only up to the keys the
/// tile's last row sees (the probabilities past each row's own limit are 0).
fn probs_times_v(kb: &mut Kb, pl: &Plan, [pbase, vbase, obase]: [Value; 3], i0: Value, n: usize) {
    let dv = pl.dv;
    let (dv8, rest) = if kb.caps.vector { (dv / 8 * 8, dv % 8) } else { (0, dv) };
    // Column tiles: (first column, count of tiles, vectors, scalars).
    let mut cols: Vec<(usize, usize, usize, usize)> = Vec::new();
    if dv8 > 0 {
        cols.push((0, dv8 / 8, 2, 0));
    }
    let mut c = dv8;
    if kb.caps.vector && rest >= 4 {
        cols.push((c, 1, 1, 0));
        c += 4;
    }
    while c < dv {
        let w = (dv - c).min(4);
        cols.push((c, 1, 0, w));
        c += w;
    }
    let full = n / 4 * 4;
    let row_tile = |kb: &mut Kb, r0: Value, rows: usize| {
        let keys = if pl.causal {
            // Keys j < min(T, i + T - S + 1) for the tile's last query row i, at least 0.
            let last = kb.b.ins().iadd(i0, r0);
            let a = kb.b.ins().iadd(last, pl.t_rt);
            let a = kb.b.ins().isub(a, pl.s_rt);
            let a = kb.b.ins().iadd_imm_s(a, rows as i64);
            let a = kb.b.ins().smin(a, pl.t_rt);
            let zero = kb.iconst(0);
            kb.b.ins().smax(a, zero)
        } else {
            pl.t_rt
        };
        for &(c0, count, vecs, scalars) in &cols {
            let w = 4 * vecs + scalars;
            let tile =
                |kb: &mut Kb, c: Value| pv_tile(kb, pl, [pbase, vbase, obase], (r0, rows), keys, c, (vecs, scalars));
            if count == 1 {
                let c = kb.iconst(c0 as i64);
                tile(kb, c);
            } else {
                kb.for_const(c0 as i64, (c0 + w * count) as i64, w as i64, |kb, c| tile(kb, c));
            }
        }
    };
    if full > 0 {
        kb.for_const(0, full as i64, 4, |kb, r0| row_tile(kb, r0, 4));
    }
    if n > full {
        let r0 = kb.iconst(full as i64);
        row_tile(kb, r0, n - full);
    }
}

/// One `P·V` tile: rows `r0..r0 + rows` of the block, over keys `0..keys`, columns from `c0`:
/// `vecs` vectors of 4 columns then `scalars` single columns.
fn pv_tile(
    kb: &mut Kb,
    pl: &Plan,
    [pbase, vbase, obase]: [Value; 3],
    (r0, rows): (Value, usize),
    keys: Value,
    c0: Value,
    (vecs, scalars): (usize, usize),
) {
    let ptr = kb.caps.ptr;
    let width = vecs + scalars;
    let z4 = if vecs > 0 { Some(kb.fconst(0.0, 4)) } else { None };
    let z1 = kb.fconst(0.0, 1);
    let accs: Vec<cranelift_frontend::Variable> =
        (0..rows * width).map(|e| kb.var(if e % width < vecs { z4.unwrap_or(z1) } else { z1 })).collect();
    // P[r0 + r, j] at `prow + r·Tp·4` and V[j, c0..] at `vrow`, both advanced by one key per
    // step, so every load takes an immediate offset.
    let poff = kb.b.ins().imul_imm_s(r0, (pl.tp * 4) as i64);
    let prow0 = kb.b.ins().iadd(pbase, poff);
    let vcol = kb.addr(vbase, c0, 4);
    let zero = kb.iconst(0);
    let (pv, vv_) = (kb.var(prow0), kb.var(vcol));
    kb.for_range(zero, keys, 1, |kb, _j| {
        let prow = kb.b.use_var(pv);
        let vrow = kb.b.use_var(vv_);
        let vv: Vec<Value> = (0..width)
            .map(|e| {
                if e < vecs {
                    kb.load(types::F32X4, vrow, (16 * e) as i32)
                } else {
                    kb.load(types::F32, vrow, (16 * vecs + 4 * (e - vecs)) as i32)
                }
            })
            .collect();
        for r in 0..rows {
            let p = kb.load(types::F32, prow, (r * pl.tp * 4) as i32);
            let p4 = if vecs > 0 { Some(kb.b.ins().splat(types::F32X4, p)) } else { None };
            for (e, &v) in vv.iter().enumerate() {
                let var = accs[r * width + e];
                let old = kb.b.use_var(var);
                let pe = if e < vecs { p4.unwrap_or(p) } else { p };
                let new = kb.mul_add(pe, v, old);
                kb.b.def_var(var, new);
            }
        }
        let next = kb.b.ins().iadd_imm_s(prow, 4);
        kb.b.def_var(pv, next);
        let next = kb.b.ins().iadd_imm_s(vrow, (pl.dv * 4) as i64);
        kb.b.def_var(vv_, next);
    });
    let sums = kb.b.ins().stack_addr(ptr, pl.sums, 0);
    for r in 0..rows {
        let row = kb.b.ins().iadd_imm_s(r0, r as i64);
        let sa = kb.addr(sums, row, 4);
        let inv = kb.load(types::F32, sa, 0);
        let inv4 = if vecs > 0 { Some(kb.b.ins().splat(types::F32X4, inv)) } else { None };
        let ooff = kb.b.ins().imul_imm_s(row, pl.dv as i64);
        let ooff = kb.b.ins().iadd(ooff, c0);
        let orow = kb.addr(obase, ooff, 4);
        for e in 0..width {
            let acc = kb.b.use_var(accs[r * width + e]);
            let y = kb.b.ins().fmul(acc, if e < vecs { inv4.unwrap_or(inv) } else { inv });
            let off = if e < vecs { 16 * e } else { 16 * vecs + 4 * (e - vecs) };
            kb.store(y, orow, off as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_blocks_fit_the_scratch() {
        assert_eq!(block_rows(128, 128), 32);
        assert_eq!(block_rows(7, 128), 7);
        assert_eq!(block_rows(1, 4096), 1);
        assert_eq!(block_rows(512, 1500), 2);
        assert_eq!(block_rows(64, 8), 64);
        assert_eq!(block_rows(0, 0), 1);
    }

    #[test]
    fn masks_broadcast_right_aligned_to_rank_4() {
        assert_eq!(broadcast4(&[3, 7]), [0, 0, 7, 1]);
        assert_eq!(broadcast4(&[2, 1, 3, 7]), [21, 0, 7, 1]);
        assert_eq!(broadcast4(&[7]), [0, 0, 0, 1]);
        assert_eq!(broadcast4(&[1, 4, 1, 1]), [0, 1, 0, 0]);
    }
}
