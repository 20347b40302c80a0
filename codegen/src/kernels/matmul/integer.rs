//! The assembled path of QDense on x86_64 with AVX2 (`x86_64-v3`/`-v4` schedules): the
//! integer product on `vpmaddwd`, exact.
//!
//! ```text
//! for each block of rows (as many as fit a 192 KB stack scratch of A pairs)
//!   A's rows of the block, less a's zero point, widened to i16 into the scratch (K padded
//!   to even with a 0); their sums when b has zero points
//!   for each tile of 16 columns            (the packed weight's panel, [`Packing::Pairs`])
//!     for each tile of 6 rows              (fewer at the edge)
//!       iukr(A pairs, B panel) → i32 sums in the output tile
//!       epilogue over the tile: − b_zp[column]·rowsum(a − a_zp)[row], then QDense's f32
//!       epilogue ([`super::store`]: scale product, multiply, bias) and activation
//! ```
//!
//! `vpmaddwd` multiplies pairs of i16 exactly and sums each pair in i32 (|a − a_zp| ≤ 255,
//! |b| ≤ 255: no overflow); the weight stays 8-bit (packed in pairs at compile time, widened
//! as it is loaded) and without its zero point, which the epilogue subtracts through the row
//! sums:
//! `Σ (a − a_zp)(b − b_zp) = Σ (a − a_zp)·b − b_zp·Σ (a − a_zp)`, all modulo 2³² as the
//! reference's i32 result is. So the results equal the interpreter's bit for bit.

use super::{Acc, Bound, Cols, Epilogue, Problem, RowShare, Tile, activate_tile, row_blocks, store};
use crate::asm::vmath::{Act, VFn};
use crate::asm::{AsmFn, IUkr};
use crate::emit::Kb;
use crate::pack::{PackedRead, Packing};
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use slmtvm_ir::DType;
use slmtvm_targets::Microkernel;

/// Columns per tile (two vectors of 8 i32).
const NR: usize = 16;
/// Rows per tile (12 accumulators, 2 B vectors, the broadcast and a temporary: 16 `ymm`).
const MR: usize = 6;
/// Bound of the stack scratch of one row block's A pairs (the hosts of the assembled path
/// have megabyte stacks, as FusedMlp's scratch assumes).
const SCRATCH: usize = 192 * 1024;

/// Whether this path computes `p`: QDense with a constant weight (read packed), A contiguous
/// along K, a's zero point per tensor, b's per tensor or per column, on an assembled schedule.
pub(super) fn applies(kb: &Kb, p: &Problem, o: &Bound) -> bool {
    kb.caps.schedule.kernel != Microkernel::Cranelift
        && p.acc == Acc::I32
        && matches!(p.epi, Epilogue::Scaled { .. })
        && p.pack.is_some()
        && p.k_run.is_none()
        && p.n_run.is_none()
        && p.k > 0
        && o.a.cs == 1
        && o.out.cs == 1
        && matches!(o.a.dtype, DType::I8 | DType::U8)
        && o.za.is_none_or(|z| z.rs == 0 && z.cs == 0)
        && o.zb.is_none_or(|z| z.rs == 0)
        && pair_bytes(p.k) <= SCRATCH
}

/// Bytes of one row of A as pairs of i16.
fn pair_bytes(k: usize) -> usize {
    k.div_ceil(2) * 4
}

/// Emits `p` (see the module docs); returns the packed read of its weight.
pub(super) fn emit(kb: &mut Kb, p: &Problem, o: &Bound) -> Option<PackedRead> {
    let pk = p.pack?;
    let (kp, row_bytes) = (p.k.div_ceil(2), pair_bytes(p.k));
    let block = (SCRATCH / row_bytes).min(p.m).max(1);
    let block = if block >= MR { block / MR * MR } else { block };
    let slot = |kb: &mut Kb, bytes: usize| {
        kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes as u32, 4))
    };
    let a_slot = slot(kb, block * row_bytes);
    let sum_slot = o.zb.is_some().then(|| slot(kb, block * 4));
    let x_zp = o.za.map(|z| {
        let v = kb.load_elem(z.dtype, z.ptr);
        kb.b.ins().ireduce(types::I16, v)
    });
    let share = RowShare::take(kb, p.m, p.m_run, block);
    let mut rows_block = |kb: &mut Kb, i0: Value, rows: usize| {
        let a2 = kb.b.ins().stack_addr(kb.caps.ptr, a_slot, 0);
        let sums = sum_slot.map(|s| kb.b.ins().stack_addr(kb.caps.ptr, s, 0));
        widen_rows(kb, o, i0, rows, p.k, x_zp, a2, sums);
        tiles(kb, p.n, NR, &mut |kb, j0, cols| {
            let nv = cols.div_ceil(8);
            let last = cols - (nv - 1) * 8;
            // Tile j0's panel starts j0·kp pairs (of 2 bytes) into the packed weight.
            let pb = kb.addr(o.b.ptr, j0, kp * 2);
            tiles(kb, rows, MR, &mut |kb, r0, mr| {
                let pa = kb.addr(a2, r0, row_bytes);
                let i = kb.b.ins().iadd(i0, r0);
                let pc = o.out.offset(kb, Some(i), Some(j0));
                let strides = [row_bytes as i64, (NR * 2) as i64, o.out.rs * 4].map(|v| kb.iconst(v));
                let u = IUkr { mr, nv, last, kc: kp, signed_b: o.b.dtype == DType::I8 };
                kb.call_asm(AsmFn::IUkr(u), &[pa, strides[0], pb, strides[1], pc, strides[2]]);
                let sums = sums.map(|s| kb.addr(s, r0, 4));
                epilogue(kb, p, o, &Tile { i0: i, j0 }, sums, mr, cols);
            });
        });
    };
    match &share {
        Some(sh) => sh.run(kb, &mut rows_block),
        None => row_blocks(kb, p.m, p.m_run, block, &mut rows_block),
    }
    Some(PackedRead { input: pk.input, packing: Packing::Pairs { nr: NR, k: pk.k, n: pk.n } })
}

/// Tiles of `step` over `0..n`: a loop over the full ones, then the static edge.
fn tiles(kb: &mut Kb, n: usize, step: usize, f: &mut dyn FnMut(&mut Kb, Value, usize)) {
    let full = n / step * step;
    if full == step {
        let z = kb.iconst(0);
        f(kb, z, step);
    } else if full > 0 {
        kb.for_const(0, full as i64, step as i64, |kb, j| f(kb, j, step));
    }
    if n > full {
        let j = kb.iconst(full as i64);
        f(kb, j, n - full);
    }
}

/// A's rows `i0..i0 + rows` less `x_zp`, widened to i16 at `a2` (rows of [`pair_bytes`]), K
/// padded with a 0 when odd; with `sums`, each row's sum as an i32 there.
#[allow(clippy::too_many_arguments)]
fn widen_rows(
    kb: &mut Kb,
    o: &Bound,
    i0: Value,
    rows: usize,
    k: usize,
    x_zp: Option<Value>,
    a2: Value,
    sums: Option<Value>,
) {
    let signed = o.a.dtype == DType::I8;
    let z8 = x_zp.map(|z| kb.b.ins().splat(types::I16X8, z));
    let vec_k = k / 8 * 8;
    kb.for_const(0, rows as i64, 1, |kb, r| {
        let i = kb.b.ins().iadd(i0, r);
        let src = o.a.offset(kb, Some(i), None);
        let dst = kb.addr(a2, r, pair_bytes(k));
        let zero4 = {
            let z = kb.b.ins().iconst(types::I32, 0);
            kb.b.ins().splat(types::I32X4, z)
        };
        let acc = kb.var(zero4);
        if vec_k > 0 {
            kb.for_const(0, vec_k as i64, 8, |kb, c| {
                let s = kb.addr(src, c, 1);
                let flags = crate::emit::flags();
                let mut v = if signed { kb.b.ins().sload8x8(flags, s, 0) } else { kb.b.ins().uload8x8(flags, s, 0) };
                if let Some(z) = z8 {
                    v = kb.b.ins().isub(v, z);
                }
                let d = kb.addr(dst, c, 2);
                kb.store(v, d, 0);
                if sums.is_some() {
                    let (lo, hi) = (kb.b.ins().swiden_low(v), kb.b.ins().swiden_high(v));
                    let s = kb.b.use_var(acc);
                    let s = kb.b.ins().iadd(s, lo);
                    let s = kb.b.ins().iadd(s, hi);
                    kb.b.def_var(acc, s);
                }
            });
        }
        let mut tail = kb.b.ins().iconst(types::I32, 0);
        for c in vec_k..k {
            let at = kb.addr_const(src, c as i64);
            let e = kb.load_elem(o.a.dtype, at);
            let mut e = kb.b.ins().ireduce(types::I16, e);
            if let Some(z) = x_zp {
                e = kb.b.ins().isub(e, z);
            }
            kb.store(e, dst, (2 * c) as i32);
            let e32 = kb.b.ins().sextend(types::I32, e);
            tail = kb.b.ins().iadd(tail, e32);
        }
        if k % 2 == 1 {
            let z = kb.b.ins().iconst(types::I16, 0);
            kb.store(z, dst, (2 * k) as i32);
        }
        if let Some(sums) = sums {
            let v = kb.b.use_var(acc);
            let mut total = tail;
            for l in 0..4u8 {
                let x = kb.b.ins().extractlane(v, l);
                total = kb.b.ins().iadd(total, x);
            }
            let at = kb.addr(sums, r, 4);
            kb.store(total, at, 0);
        }
    });
}

/// The epilogue over a tile of `rows` × `cols` i32 sums stored in the output: b's zero point
/// times the row sums at `sums` subtracted, then QDense's f32 epilogue and activation.
fn epilogue(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, sums: Option<Value>, rows: usize, cols: usize) {
    let vecs = cols / 4;
    // b's zero point per column vector and per edge column (or one, splat).
    let zb = o.zb.map(|z| {
        let base = z.offset(kb, None, Some(t.j0));
        let mut v = Vec::new();
        for c in 0..vecs {
            if z.cs == 1 {
                let a = kb.addr_const(base, 4 * c as i64);
                v.push(crate::kernels::quant::load4_int(kb, z.dtype, a));
            } else {
                let e = kb.load_elem(z.dtype, base);
                let e = kb.b.ins().ireduce(types::I32, e);
                v.push(kb.b.ins().splat(types::I32X4, e));
            }
        }
        let s: Vec<Value> = (4 * vecs..cols)
            .map(|c| {
                let a = if z.cs == 1 { kb.addr_const(base, c as i64) } else { base };
                let e = kb.load_elem(z.dtype, a);
                kb.b.ins().ireduce(types::I32, e)
            })
            .collect();
        (v, s)
    });
    let base = o.out.offset(kb, Some(t.i0), Some(t.j0));
    for r in 0..rows {
        let rsum = sums.map(|s| kb.load(types::I32, s, (4 * r) as i32));
        for c in 0..cols {
            if c < 4 * vecs && c % 4 != 0 {
                continue;
            }
            let vector = c < 4 * vecs;
            let (addr, off) = o.out.at(kb, base, r as i64, c as i64);
            let mut v = kb.load(if vector { types::I32X4 } else { types::I32 }, addr, off);
            if let (Some((zv, zs)), Some(rsum)) = (&zb, rsum) {
                let (z, s) =
                    if vector { (zv[c / 4], kb.b.ins().splat(types::I32X4, rsum)) } else { (zs[c - 4 * vecs], rsum) };
                let m = kb.b.ins().imul(z, s);
                v = kb.b.ins().isub(v, m);
            }
            store(kb, p, o, t, r as i64, c as i64, v);
        }
    }
    // The activation: one assembled pass over the tile where the vector math has it (the
    // same bits as the Cranelift code), else the Cranelift pass.
    if let Epilogue::Scaled { act: Some(act), .. } = &p.epi
        && let Some(f) = VFn::of(act)
    {
        let y = o.out.offset(kb, Some(t.i0), Some(t.j0));
        let (ld, n, zero) = (kb.iconst(o.out.rs * 4), kb.iconst(rows as i64), kb.iconst(0));
        let act = Act { kernel: kb.caps.schedule.kernel, f, cols, bias: false };
        kb.call_asm(AsmFn::Act(act), &[y, ld, n, zero, zero, zero]);
    } else {
        activate_tile(kb, p, o, t, rows, Cols { vecs, scalars: cols % 4 });
    }
}
