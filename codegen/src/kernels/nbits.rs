//! MatMulNBits with 4-bit weights: `Y = A · W (+ bias)` where `W[k, n] = (q − zp) · scale`
//! per block of K ([`slmtvm_ir::ops::MatMulNBits`]).
//!
//! The weights stay 4-bit in `.rodata`, packed at compile time as rows of K
//! ([`crate::pack::nbits_rows`]: 16 columns in 8 bytes), with the scales and zero points as
//! f32 `[n_blocks][N₁₆]` ([`crate::pack::Packing::Nbits`]). The kernel walks the weight in
//! tiles of `kc` rows (whole blocks) × `cw` columns: each tile is unpacked into a stack
//! scratch of f32 — per 16 columns and row one 8-byte load widened to 16 lanes (`uload8x8`,
//! the nibbles masked and shifted, converted, `(q − zp) · scale` with the block's scale and
//! zero point held in registers over the block) — and multiplied into the output with the f32
//! products' schedules (the assembled microkernels on x86_64 hosts), accumulating over the K
//! tiles. Every weight is unpacked once per call whatever the row count, so the unpacking
//! costs `K·N` against the product's `M·K·N`. Without vectors (riscv64), the same tiles are
//! unpacked with scalars.
//!
//! The dequantized weight is exactly the reference's (`q − zp` is exact in f32, then one
//! rounding of the product with the scale); the product sums K in tile order, as a MatMul of
//! the dequantized weight does.

use super::dense::rows;
use super::matmul::{F32Mat, Product};
use super::{NodeCtx, first_then_rest};
use crate::Result;
use crate::emit::Kb;
use crate::pack::{NbitsPart, PackedRead, Packing, nbits_cols};
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use slmtvm_ir::{DType, Op};

/// Bytes of the stack scratch one tile of unpacked weights takes at most (every block size the
/// kernel takes, up to 256, fits: 32 columns × 256 rows at 256).
pub const SCRATCH_BYTES: usize = 32 * 1024;

/// Emits the kernel of `cx.node`.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let Op::MatMulNBits(op) = &cx.node.op else { return Err(cx.error("not a MatMulNBits node")) };
    let (k, n, block) = (op.k, op.n, op.block_size);
    if op.bits != 4 {
        return Err(cx.unsupported(format!("MatMulNBits with {}-bit weights (the kernel takes 4)", op.bits)));
    }
    // ONNX Runtime's own CPU kernel takes blocks of 16 to 256; past 512 one tile of whole
    // blocks outgrows the scratch (64 KB at 1024, 4 MB at 65536).
    if block > 256 {
        return Err(cx.unsupported(format!("MatMulNBits with blocks of {block} (the kernel takes 16 to 256)")));
    }
    if cx.in_dtype(0)? != DType::F32 {
        return Err(cx.unsupported(format!("MatMulNBits of {} A (the kernel takes f32)", cx.in_dtype(0)?)));
    }
    for (i, what) in [(1, "B"), (2, "scales"), (3, "zero_points")] {
        if cx.in_id(i).is_some() && cx.in_const(i).is_none() {
            return Err(cx.unsupported(format!("MatMulNBits with a non-constant {what}")));
        }
    }
    if cx.in_id(4).is_some() {
        return Err(cx.unsupported("MatMulNBits with g_idx"));
    }
    let bias = cx.in_ptr_opt(5);
    let (m, m_run) = rows(kb, cx, k)?;
    let (ap, yp) = (cx.in_ptr(0)?, cx.out_ptr(0));
    if m == 0 || n == 0 {
        return Ok(());
    }
    let vector = kb.caps.vector;
    // The output starts as the bias (or zero, when K is 0) and every tile accumulates.
    if bias.is_some() || k == 0 {
        fill_rows(kb, yp, m, n, bias, vector);
    }
    if k == 0 {
        return Ok(());
    }
    let part = |part| Packing::Nbits { part, k, n, bits: 4, block };
    cx.read_packed(PackedRead { input: 1, packing: part(NbitsPart::Weights) });
    cx.read_packed(PackedRead { input: 2, packing: part(NbitsPart::Scales) });
    let zp = cx.in_ptr_opt(3);
    if zp.is_some() {
        cx.read_packed(PackedRead { input: 3, packing: part(NbitsPart::ZeroPoints) });
    }
    let w = Weights { q: cx.in_ptr(1)?, s: cx.in_ptr(2)?, z: zp, np: nbits_cols(n), block };
    let (cw, kc) = tile(n, k, block);
    let slot = kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, (kc * cw * 4) as u32, 4));
    // One column chunk (columns c0..c0 + cols): the K tiles, unpacked then multiplied in.
    let chunk = |kb: &mut Kb, c0: Value, cols: usize| {
        let ccp = cols.div_ceil(16) * 16;
        let mut ktile = |kb: &mut Kb, k0: Value, rows_k: usize, first: bool| {
            let scratch = kb.b.ins().stack_addr(kb.caps.ptr, slot, 0);
            unpack(kb, &w, k0, rows_k, c0, ccp, scratch);
            let a = F32Mat { ptr: kb.addr(ap, k0, 4), rs: k as i64, cs: 1 };
            let b = F32Mat { ptr: scratch, rs: ccp as i64, cs: 1 };
            let y = F32Mat { ptr: kb.addr(yp, c0, 4), rs: n as i64, cs: 1 };
            let accumulate = !first || bias.is_some();
            Product { m_run, accumulate, ..Product::new(a, b, y, (m, rows_k, cols)) }.emit(kb);
        };
        first_then_rest(kb, k, kc, &mut ktile);
    };
    let full = n / cw;
    if full == 1 {
        let z = kb.iconst(0);
        chunk(kb, z, cw);
    } else if full > 1 {
        kb.for_const(0, (full * cw) as i64, cw as i64, |kb, c0| chunk(kb, c0, cw));
    }
    if n % cw > 0 {
        let c0 = kb.iconst((full * cw) as i64);
        chunk(kb, c0, n % cw);
    }
    Ok(())
}

/// The tile of unpacked weights: `cw` columns (a multiple of 16) × `kc` rows (whole blocks),
/// within [`SCRATCH_BYTES`] when a block allows.
fn tile(n: usize, k: usize, block: usize) -> (usize, usize) {
    let cw = (SCRATCH_BYTES / (4 * block) / 16 * 16).clamp(16, 64).min(nbits_cols(n));
    let blocks = (SCRATCH_BYTES / (4 * cw * block)).max(1);
    (cw, (blocks * block).min(k.div_ceil(block) * block))
}

/// The packed weights' base pointers.
struct Weights {
    q: Value,
    s: Value,
    z: Option<Value>,
    /// Columns of the packed layouts (N rounded up to 16).
    np: usize,
    block: usize,
}

/// Unpacks rows `k0..k0 + rows` (k0 a multiple of the block) of columns `c0..c0 + ccp` into
/// `dst`, `ccp` f32 per row.
fn unpack(kb: &mut Kb, w: &Weights, k0: Value, rows: usize, c0: Value, ccp: usize, dst: Value) {
    let (np, block) = (w.np, w.block);
    let half = kb.b.ins().ushr_imm_u(c0, 1);
    let qrow = kb.addr(w.q, k0, np / 2);
    let q0 = kb.b.ins().iadd(qrow, half);
    let blk0 = kb.b.ins().udiv_imm_u(k0, block as i64);
    let prow = kb.b.ins().imul_imm_s(blk0, (np * 4) as i64);
    let pcol = kb.b.ins().imul_imm_s(c0, 4);
    let poff = kb.b.ins().iadd(prow, pcol);
    let s0 = kb.b.ins().iadd(w.s, poff);
    let z0 = w.z.map(|z| kb.b.ins().iadd(z, poff));
    // One block: `brows` rows from relative row `r0` (a Value), its parameters at block `j`.
    let blk = |kb: &mut Kb, j: Value, r0: Value, brows: usize| {
        let po = kb.b.ins().imul_imm_s(j, (np * 4) as i64);
        let (sp, zp) = (kb.b.ins().iadd(s0, po), z0.map(|z| kb.b.ins().iadd(z, po)));
        if kb.caps.vector {
            for g in 0..ccp / 16 {
                let off = (g * 64) as i32;
                let s: Vec<Value> = (0..4).map(|v| kb.load(types::F32X4, sp, off + 16 * v)).collect();
                let z: Vec<Value> = match zp {
                    Some(zp) => (0..4).map(|v| kb.load(types::F32X4, zp, off + 16 * v)).collect(),
                    None => vec![kb.fconst(8.0, 4); 4],
                };
                let (zero, end) = (kb.iconst(0), kb.iconst(brows as i64));
                kb.for_range(zero, end, 1, |kb, r| {
                    let row = kb.b.ins().iadd(r0, r);
                    let src = kb.addr(q0, row, np / 2);
                    let bytes = kb.b.ins().uload8x8(crate::emit::flags(), src, (g * 8) as i32);
                    let mask = kb.b.ins().iconst(types::I16, 15);
                    let mask = kb.b.ins().splat(types::I16X8, mask);
                    let lo = kb.b.ins().band(bytes, mask);
                    let hi = kb.b.ins().ushr_imm_u(bytes, 4);
                    let lanes = [
                        kb.b.ins().uwiden_low(lo),
                        kb.b.ins().uwiden_high(lo),
                        kb.b.ins().uwiden_low(hi),
                        kb.b.ins().uwiden_high(hi),
                    ];
                    let out = kb.addr(dst, row, ccp * 4);
                    for (v, q) in lanes.into_iter().enumerate() {
                        let f = kb.b.ins().fcvt_from_sint(types::F32X4, q);
                        let c = kb.b.ins().fsub(f, z[v]);
                        let x = kb.b.ins().fmul(c, s[v]);
                        kb.store(x, out, (g * 64 + 16 * v) as i32);
                    }
                });
            }
            return;
        }
        let (zero, end) = (kb.iconst(0), kb.iconst(brows as i64));
        kb.for_range(zero, end, 1, |kb, r| {
            let row = kb.b.ins().iadd(r0, r);
            let src = kb.addr(q0, row, np / 2);
            let out = kb.addr(dst, row, ccp * 4);
            let (gz, gend) = (kb.iconst(0), kb.iconst((ccp / 16) as i64));
            kb.for_range(gz, gend, 1, |kb, g| {
                let sg = kb.addr(sp, g, 64);
                let zg = zp.map(|zp| kb.addr(zp, g, 64));
                let qg = kb.addr(src, g, 8);
                let og = kb.addr(out, g, 64);
                for j in 0..16i32 {
                    let byte = kb.b.ins().uload8(types::I32, crate::emit::flags(), qg, j % 8);
                    let sh = if j < 8 { byte } else { kb.b.ins().ushr_imm_u(byte, 4) };
                    let q = kb.b.ins().band_imm_u(sh, 15);
                    let f = kb.b.ins().fcvt_from_sint(types::F32, q);
                    let z = match zg {
                        Some(zg) => kb.load(types::F32, zg, 4 * j),
                        None => kb.fconst(8.0, 1),
                    };
                    let s = kb.load(types::F32, sg, 4 * j);
                    let c = kb.b.ins().fsub(f, z);
                    let x = kb.b.ins().fmul(c, s);
                    kb.store(x, og, 4 * j);
                }
            });
        });
    };
    let full = rows / block;
    if full > 0 {
        kb.for_const(0, full as i64, 1, |kb, j| {
            let r0 = kb.b.ins().imul_imm_s(j, block as i64);
            blk(kb, j, r0, block);
        });
    }
    if !rows.is_multiple_of(block) {
        let (j, r0) = (kb.iconst(full as i64), kb.iconst((full * block) as i64));
        blk(kb, j, r0, rows % block);
    }
}

/// Sets each of the `m` rows of `n` f32 at `y` to the bias (`n` f32), or to zero.
fn fill_rows(kb: &mut Kb, y: Value, m: usize, n: usize, bias: Option<Value>, vector: bool) {
    kb.for_const(0, m as i64, 1, |kb, r| {
        let row = kb.addr(y, r, n * 4);
        let (zero, end) = (kb.iconst(0), kb.iconst(n as i64));
        kb.for_lanes(zero, end, vector, &mut |kb, i, lanes| {
            let ty = if lanes == 4 { types::F32X4 } else { types::F32 };
            let v = match bias {
                Some(b) => {
                    let at = kb.addr(b, i, 4);
                    kb.load(ty, at, 0)
                }
                None => kb.fconst(0.0, lanes),
            };
            let at = kb.addr(row, i, 4);
            kb.store(v, at, 0);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiles fit the scratch, hold whole blocks and never exceed the weight's rounded size.
    #[test]
    fn tiles_fit_the_scratch() {
        for (n, k, block) in
            [(384usize, 384usize, 32usize), (1536, 384, 128), (5, 40, 16), (64, 1024, 256), (17, 3, 16)]
        {
            let (cw, kc) = tile(n, k, block);
            assert!(cw % 16 == 0 && cw >= 16 && cw <= nbits_cols(n), "{n} {k} {block}: cw {cw}");
            assert!(kc % block == 0 && kc >= block, "{n} {k} {block}: kc {kc}");
            assert!(kc <= k.div_ceil(block) * block);
            assert!(kc * cw * 4 <= SCRATCH_BYTES, "{n} {k} {block}: {kc}×{cw}");
        }
    }
}
