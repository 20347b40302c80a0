//! The assembled path of the f32 products ([`crate::asm`]): when the schedule's microkernel is
//! an assembled one and the operands allow it (A contiguous along K, B and the output along
//! the columns, K > 0), the product is a loop nest of microkernel calls:
//!
//! ```text
//! for each block of kc steps of K          (unrolled: the first stores, the others accumulate)
//!   for each tile of nr columns            (full tiles, then the edge: a masked last vector)
//!     for each tile of mr rows             (full tiles, then the edge: fewer rows)
//!       ukr(A[i0, k0], lda, B[k0, j0], ldb, C[i0, j0], ldc)
//!       after the last block: the epilogue over the tile, while it is in L1
//! ```
//!
//! The B panel of a column tile (kc × nr) is reused from L1 by every row tile. A split kernel
//! (`--threads`) gives each task whole column tiles when there are at least as many as tasks
//! (each task then streams only its share of the weight), else whole row blocks. A constant B
//! (a weight) is read packed ([`crate::pack`]): the panel of tile `j0` at `j0·K` elements, its
//! rows `nr` apart, so `ldb = nr·4` and each tile's B is one contiguous run (the strides of
//! `o.b` say so; the loop nest is the same). Accumulating
//! microkernels start from C, so every element sums K in order whatever kc is: the same bits as
//! an unblocked product. Epilogues (Gemm's `alpha`/`beta·C`, Dense's bias and activation) run
//! over each finished tile with the Cranelift code of the other schedules ([`super::store`],
//! [`super::activate_tile`]); a product that accumulates into its output (`Product` with
//! `accumulate`) uses accumulating microkernels from the first block instead.

use super::{Bound, Cols, Epilogue, Problem, RowShare, Tile, activate_tile, reload_tile, row_blocks, store};
use crate::asm::vmath::{Act, VFn};
use crate::asm::{AsmFn, Ukr};
use crate::emit::Kb;
use cranelift_codegen::ir::Value;
use slmtvm_targets::Microkernel;

/// Whether the assembled path computes `p` (the caller checked it is an all-f32 product).
pub(super) fn applies(p: &Problem, o: &Bound) -> bool {
    o.a.cs == 1 && o.b.cs == 1 && o.out.cs == 1 && p.k > 0
}

/// Whether `p` adds its product into its output (Gemm with `alpha = beta = 1` and C the
/// output itself).
fn accumulates(p: &Problem, o: &Bound) -> bool {
    let Epilogue::GemmF { alpha, beta, c: Some(_) } = &p.epi else { return false };
    let same = o.c.is_some_and(|c| c.ptr == o.out.ptr && c.rs == o.out.rs && c.cs == o.out.cs);
    *alpha == 1.0 && *beta == 1.0 && same
}

/// Emits `p` as microkernel calls (see the module docs).
pub(super) fn emit(kb: &mut Kb, p: &Problem, o: &Bound) {
    let s = kb.caps.schedule;
    let lanes = s.kernel.lanes();
    let kc = if s.kc == 0 { p.k } else { s.kc.min(p.k) };
    let accumulate = accumulates(p, o);
    let post = !accumulate && !matches!(p.epi, Epilogue::Plain);
    let blocks: Vec<(usize, usize)> = (0..p.k).step_by(kc).map(|k0| (k0, kc.min(p.k - k0))).collect();
    let (lda, ldb, ldc) = (o.a.rs * 4, o.b.rs * 4, o.out.rs * 4);
    // A split kernel's tasks own whole column tiles when there are enough of them (each task
    // then streams only its share of B, the weight, usually the larger operand), else whole
    // row blocks; the share is taken once, for every K block.
    let by_cols = kb.split.is_some_and(|sp| p.n.div_ceil(s.nr) >= sp.count) && p.n_run.is_none();
    let col_share = if by_cols { RowShare::take(kb, p.n, None, s.nr) } else { None };
    let share = RowShare::take(kb, p.m, p.m_run, s.mr);
    // A packed weight's next panel is `K·nr` floats on: prefetched while this one computes.
    let pf = if p.pack.is_some() { i32::try_from(o.b.cs * s.nr as i64 * 4).unwrap_or(0) } else { 0 };
    for (bi, &(k0, steps)) in blocks.iter().enumerate() {
        let last_block = bi + 1 == blocks.len();
        let mut col_tile = |kb: &mut Kb, j0: Value, cols: usize| {
            let nv = cols.div_ceil(lanes);
            let last = cols - (nv - 1) * lanes;
            let mut tile = |kb: &mut Kb, i0: Value, rows: usize| {
                let u = Ukr { kernel: s.kernel, mr: rows, nv, last, kc: steps, acc: accumulate || bi > 0, pf };
                let pa = o.a.offset(kb, Some(i0), None);
                let pa = kb.addr_const(pa, k0 as i64 * 4);
                let pb = o.b.offset(kb, None, Some(j0));
                let pb = kb.addr_const(pb, k0 as i64 * ldb);
                let pc = o.out.offset(kb, Some(i0), Some(j0));
                let strides = [lda, ldb, ldc].map(|v| kb.iconst(v));
                kb.call_asm(AsmFn::Ukr(u), &[pa, strides[0], pb, strides[1], pc, strides[2]]);
                if last_block && post {
                    epilogue(kb, p, o, &Tile { i0, j0 }, rows, cols);
                }
            };
            match &share {
                Some(sh) => sh.run(kb, &mut tile),
                None => row_blocks(kb, p.m, p.m_run, s.mr, &mut tile),
            }
        };
        match &col_share {
            Some(sh) => sh.run(kb, &mut col_tile),
            None => row_blocks(kb, p.n, p.n_run, s.nr, &mut col_tile),
        }
    }
}

/// The epilogue over a finished tile of `rows` × `cols`: each raw sum loaded back, finished by
/// [`store`] (alpha, beta·C, bias), then Dense's activation — or, for a Dense activation the
/// assembled vector math has ([`VFn`]), one assembled pass adding the bias and activating.
fn epilogue(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, rows: usize, cols: usize) {
    if let Epilogue::Dense { act: Some(act), .. } = &p.epi
        && kb.caps.schedule.kernel != Microkernel::Cranelift
        && let Some(f) = VFn::of(act)
        && o.c.is_none_or(|c| c.rs == 0 && c.cs == 1)
    {
        let y = o.out.offset(kb, Some(t.i0), Some(t.j0));
        let bias = o.c.map(|c| c.offset(kb, None, Some(t.j0)));
        let (ld, n, zero) = (kb.iconst(o.out.rs * 4), kb.iconst(rows as i64), kb.iconst(0));
        let act = Act { kernel: kb.caps.schedule.kernel, f, cols, bias: bias.is_some() };
        kb.call_asm(AsmFn::Act(act), &[y, ld, n, bias.unwrap_or(zero), zero, zero]);
        return;
    }
    let layout = Cols { vecs: cols / 4, scalars: cols % 4 };
    reload_tile(kb, o, t, rows, layout, &mut |kb, r, col, v, _, _| store(kb, p, o, t, r, col, v));
    activate_tile(kb, p, o, t, rows, layout);
}
