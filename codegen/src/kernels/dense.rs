//! The fused matrix-product layers: Dense and FusedMlp.
//!
//! - **Dense** (`act(x·W + b)`): x is viewed as a [rows, K] matrix and run on matmul's
//!   schedules (`matmul::Product::dense`) with an epilogue that adds the bias before each
//!   store and applies the activation to each register tile just stored, while it is in L1
//!   (the elementwise kernels' code, so the same polynomial approximations of [`crate::math`]).
//! - **FusedMlp** (`(act(x·W_gate) ⊙ (x·W_up))·W_down`): for each block of at most
//!   [`MLP_ROWS`] rows ([`MLP_ROWS_ASSEMBLED`] on the assembled microkernels) and each chunk of
//!   F columns, the gate and up products of the block go to a stack scratch of at most
//!   [`MLP_SCRATCH_BYTES`] ([`MLP_SCRATCH_ASSEMBLED`]) (chunk width chosen from the block's
//!   rows), `act(gate)·up` is formed in place, and `chunk·W_down[chunk]` is added into the
//!   block's output rows (the first chunk stores, the others accumulate). No [rows, F]
//!   intermediate exists anywhere. On the assembled path the three weights are read packed
//!   ([`crate::pack`]): chunks are then whole panels wide, and `W_down`'s rows of a chunk are
//!   rows of every panel.
//!
//! Symbolic leading dims of x: when the rows past the run-time ones form a suffix of the
//! physical rows (the dims before the first symbolic one are 1 and the ones after it are
//! static), only the run-time rows (rounded up to a tile) are computed; otherwise every
//! physical row is (rows are independent, so that is correct, only slower).

use super::matmul::{F32Mat, Pack, Product, row_blocks};
use super::{NodeCtx, first_then_rest};
use crate::Result;
use crate::asm::AsmFn;
use crate::asm::vmath::{Map, VFn};
use crate::emit::Kb;
use crate::pack::{PackedRead, Packing};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use slmtvm_ir::ops::UnaryOp;
use slmtvm_ir::{DType, Dim, Op};
use slmtvm_targets::Microkernel;

/// Rows of x per FusedMlp block.
pub const MLP_ROWS: usize = 16;
/// Bound of FusedMlp's stack scratch (gate and up chunks of one row block).
pub const MLP_SCRATCH_BYTES: usize = 16 * 1024;
/// Rows per FusedMlp block on the assembled microkernels: each block streams the three
/// weights once, so taller blocks read them fewer times (a 64-row prefill once instead of
/// four times). A split kernel's blocks are at most `rows / tasks` tall, so every task has
/// one. Llama-class prefill (seq 64): 16 → 32 rows 12.8–13.3 ms → 12.1–12.4 ms on one thread
/// (7.7–8.9 → 7.3 ms on two); 32 → 64 rows 0.96× the time (paired runs).
pub const MLP_ROWS_ASSEMBLED: usize = 64;
/// The stack scratch bound on the assembled microkernels (x86_64 hosts, where stacks are
/// megabytes): 384-column chunks for 64-row blocks.
pub const MLP_SCRATCH_ASSEMBLED: usize = 192 * 1024;

/// Emits the kernel of `cx.node`.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    match &cx.node.op {
        Op::Dense(d) => dense(kb, cx, d.activation.clone()),
        Op::FusedMlp(f) => fused_mlp(kb, cx, &f.activation),
        _ => Err(cx.error("not a Dense or FusedMlp node")),
    }
}

/// Checks input `i` is a static f32 matrix; gives its dims.
fn weight(cx: &NodeCtx, i: usize, what: &str) -> Result<(usize, usize)> {
    let v = cx.in_id(i).ok_or_else(|| cx.error(format!("{what} is required")))?;
    match (cx.g.ty(v).dtype, cx.g.ty(v).shape.as_known().as_deref()) {
        (DType::F32, Some(&[r, c])) => Ok((r, c)),
        _ => Err(cx.error(format!("{what} must be a static f32 matrix, got {}", cx.g.ty(v)))),
    }
}

/// x's physical rows (the product of its leading dims) and K (its static last dim), and the
/// run-time row count when the valid rows are a prefix of the physical ones.
pub(super) fn rows(kb: &mut Kb, cx: &NodeCtx, k: usize) -> Result<(usize, Option<Value>)> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("x is required"))?;
    let (ty, phys) = (cx.g.ty(x), cx.dims(x)?);
    if ty.dtype != DType::F32 || ty.shape.0.last().and_then(Dim::known) != Some(k) {
        return Err(cx.error(format!("x must be f32 ending in K = {k}, got {ty}")));
    }
    let lead = &ty.shape.0[..ty.shape.rank() - 1];
    let m: usize = phys[..lead.len()].iter().product();
    let Some(first) = lead.iter().position(|d| *d != Dim::Known(1)) else { return Ok((m, None)) };
    if lead[first].known().is_some() || lead[first + 1..].iter().any(|d| d.known().is_none()) {
        return Ok((m, None));
    }
    let inner: usize = phys[first + 1..lead.len()].iter().product();
    let e = cx.extent(kb, x, first)?;
    Ok((m, Some(kb.b.ins().imul_imm_s(e, inner as i64))))
}

fn dense(kb: &mut Kb, cx: &NodeCtx, act: Option<UnaryOp>) -> Result<()> {
    let (k, n) = weight(cx, 1, "W")?;
    let (m, m_run) = rows(kb, cx, k)?;
    let bias = match cx.in_ptr_opt(2) {
        Some(p) => {
            if cx.in_dtype(2)? != DType::F32 || cx.in_dims(2)? != [n] {
                return Err(cx.error(format!("bias must be f32 [{n}]")));
            }
            Some(p)
        }
        None => None,
    };
    let a = F32Mat { ptr: cx.in_ptr(0)?, rs: k as i64, cs: 1 };
    let b = F32Mat { ptr: cx.in_ptr(1)?, rs: n as i64, cs: 1 };
    let out = F32Mat { ptr: cx.out_ptr(0), rs: n as i64, cs: 1 };
    let pack = cx.in_const(1).map(|_| Pack { input: 1, k, n });
    let product = Product { m_run, pack, ..Product::new(a, b, out, (m, k, n)) };
    if let Some(r) = product.dense(kb, bias, act) {
        cx.read_packed(r);
    }
    Ok(())
}

/// The FusedMlp chunk width for blocks of `rows` rows: the gate and up chunks fit the
/// scratch bound, a multiple of `unit` columns (8, the vector tile, or the packed panels'
/// `nr`, so that every chunk starts at a panel) unless F itself is smaller.
fn chunk_width(rows: usize, f: usize, unit: usize, scratch: usize) -> usize {
    let most = scratch / (2 * 4 * rows.max(1));
    f.min((most / unit * unit).max(unit))
}

fn fused_mlp(kb: &mut Kb, cx: &NodeCtx, act: &UnaryOp) -> Result<()> {
    let (h, f) = weight(cx, 1, "W_gate")?;
    if weight(cx, 2, "W_up")? != (h, f) {
        return Err(cx.error("W_up must match W_gate"));
    }
    let (f2, h2) = weight(cx, 3, "W_down")?;
    if f2 != f {
        return Err(cx.error(format!("W_down must have {f} rows")));
    }
    let (m, m_run) = rows(kb, cx, h)?;
    let (xp, wg, wu, wd, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.in_ptr(2)?, cx.in_ptr(3)?, cx.out_ptr(0));
    if m == 0 || h2 == 0 {
        return Ok(());
    }
    let assembled = kb.caps.schedule.kernel != slmtvm_targets::Microkernel::Cranelift;
    let (most_rows, scratch) =
        if assembled { (MLP_ROWS_ASSEMBLED, MLP_SCRATCH_ASSEMBLED) } else { (MLP_ROWS, MLP_SCRATCH_BYTES) };
    let tasks = kb.split.map_or(1, |sp| sp.count);
    let rb = m.min(most_rows).min(m.div_ceil(tasks));
    // Constant weights are read packed on the assembled path: the products then take every
    // chunk of the packed layouts (the gate/up chunk at c0 is panel c0/nr; W_down's rows c0..
    // are rows of every panel). Whether the products take that path is theirs to say: one that
    // does not is an internal error below, never a read of the wrong layout.
    let s = kb.caps.schedule;
    let packed = kb.caps.vector
        && s.kernel != slmtvm_targets::Microkernel::Cranelift
        && h > 0
        && (1..=3).all(|i| cx.in_const(i).is_some());
    let nr = s.nr;
    let cw = chunk_width(rb, f, if packed { nr } else { 8 }, scratch);
    let packs = packed.then_some([
        Pack { input: 1, k: h, n: f },
        Pack { input: 2, k: h, n: f },
        Pack { input: 3, k: f, n: h2 },
    ]);
    let agreed = std::cell::Cell::new(true);
    let half = (rb * cw.max(1) * 4) as u32;
    let slot = kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 2 * half, 4));
    let vector = kb.caps.vector;
    // One row block (rows i0..i0 + rows; `run` of them valid at run time, if symbolic).
    let block = |kb: &mut Kb, i0: Value, rows: usize, run: Option<Value>| {
        let xa = F32Mat { ptr: kb.addr(xp, i0, h * 4), rs: h as i64, cs: 1 };
        let ya = F32Mat { ptr: kb.addr(yp, i0, h2 * 4), rs: h2 as i64, cs: 1 };
        if f == 0 {
            fill_zero(kb, ya.ptr, rows * h2, vector);
            return;
        }
        // Chunk of `cc` columns of F from c0: gate and up into the scratch, gated in place,
        // then times W_down's rows c0..c0 + cc into the output (stored or accumulated).
        let mut chunk = |kb: &mut Kb, c0: Value, cc: usize, first: bool| {
            let ptr = kb.caps.ptr;
            let g = kb.b.ins().stack_addr(ptr, slot, 0);
            let u = kb.b.ins().stack_addr(ptr, slot, half as i32);
            let (gm, um) = (F32Mat { ptr: g, rs: cc as i64, cs: 1 }, F32Mat { ptr: u, rs: cc as i64, cs: 1 });
            // Bytes per column of F in W_gate/W_up and per row of F in W_down, in the layout read.
            let (gate_col, down_row) = if packed { (h * 4, nr * 4) } else { (4, h2 * 4) };
            let wgc = F32Mat { ptr: kb.addr(wg, c0, gate_col), rs: f as i64, cs: 1 };
            let wuc = F32Mat { ptr: kb.addr(wu, c0, gate_col), rs: f as i64, cs: 1 };
            let pk = |i: usize| packs.map(|p| p[i]);
            let rg = Product { m_run: run, pack: pk(0), ..Product::new(xa, wgc, gm, (rows, h, cc)) }.emit(kb);
            let ru = Product { m_run: run, pack: pk(1), ..Product::new(xa, wuc, um, (rows, h, cc)) }.emit(kb);
            gate(kb, act, g, u, rows * cc, vector);
            let wdc = F32Mat { ptr: kb.addr(wd, c0, down_row), rs: h2 as i64, cs: 1 };
            let down = Product::new(gm, wdc, ya, (rows, cc, h2));
            let rd = Product { m_run: run, accumulate: !first, pack: pk(2), ..down }.emit(kb);
            if [rg, ru, rd].iter().any(|r| r.is_some() != packed) {
                agreed.set(false);
            }
        };
        first_then_rest(kb, f, cw, &mut chunk);
    };
    row_blocks(kb, m, None, rb, &mut |kb, i0, rows| {
        let Some(mr) = m_run else { return block(kb, i0, rows, None) };
        // Blocks wholly past the run-time rows are skipped; a block's products stop at the
        // run-time rows within it (rounded up to their tiles).
        let live = kb.b.ins().icmp(IntCC::SignedLessThan, i0, mr);
        kb.when(live, |kb| {
            let left = kb.b.ins().isub(mr, i0);
            let cap = kb.iconst(rows as i64);
            let run = kb.b.ins().smin(left, cap);
            block(kb, i0, rows, Some(run));
        });
    });
    if !agreed.get() {
        return Err(cx.error("internal: a product of a packed weight did not take the assembled path"));
    }
    for p in packs.into_iter().flatten() {
        cx.read_packed(PackedRead { input: p.input, packing: Packing::Panels { nr, k: p.k, n: p.n } });
    }
    Ok(())
}

/// `g[i] = act(g[i])·u[i]` for `i < n` (f32; 4 lanes at a time when `vector`, then scalars;
/// with an assembled microkernel and an activation the vector math has, one assembled pass).
fn gate(kb: &mut Kb, act: &UnaryOp, g: Value, u: Value, n: usize, vector: bool) {
    let kernel = kb.caps.schedule.kernel;
    if let (true, Some(f)) = (kernel != Microkernel::Cranelift, VFn::of(act)) {
        let (len, zero) = (kb.iconst(n as i64), kb.iconst(0));
        kb.call_asm(AsmFn::Map(Map { kernel, f, gate: true }), &[g, len, u, g, zero, zero]);
        return;
    }
    let (zero, end) = (kb.iconst(0), kb.iconst(n as i64));
    kb.for_lanes(zero, end, vector, &mut |kb, i, lanes| {
        let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
        let ga = kb.addr(g, i, 4);
        let ua = kb.addr(u, i, 4);
        let gv = kb.load(ty, ga, 0);
        let uv = kb.load(ty, ua, 0);
        let a = super::elementwise::unary_float(kb, act, gv);
        let y = kb.b.ins().fmul(a, uv);
        kb.store(y, ga, 0);
    });
}

/// Zeroes `n` f32 at `p`.
fn fill_zero(kb: &mut Kb, p: Value, n: usize, vector: bool) {
    let (zero, end) = (kb.iconst(0), kb.iconst(n as i64));
    kb.for_lanes(zero, end, vector, &mut |kb, i, lanes| {
        let z = kb.fconst(0.0, lanes);
        let a = kb.addr(p, i, 4);
        kb.store(z, a, 0);
    });
}
