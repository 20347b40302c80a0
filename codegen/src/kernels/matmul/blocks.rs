//! The loops around the register tiles: row blocks (with run-time row counts and, in a split
//! kernel, this task's share of them), column tiles, and loops that carry values.

use super::Cols;
use crate::emit::Kb;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};

/// Runs `tile(kb, i0, mr)` over row blocks of `mr` rows, then the `m % mr` edge. With a
/// run-time row count `m_run`, the full blocks stop at the first block at or past it (a last
/// block that would hold at most `mr / 2` valid rows is a tile of `mr / 2` rows), and the
/// static edge (fewer than `mr` rows) runs only when `m_run` reaches into it: as many passes
/// over B as a build for exactly `m_run` rows makes. In a split kernel ([`Kb::take_share`]),
/// only this task's share of the blocks (the edge the last block).
pub(crate) fn row_blocks(
    kb: &mut Kb,
    m: usize,
    m_run: Option<Value>,
    mr: usize,
    tile: &mut dyn FnMut(&mut Kb, Value, usize),
) {
    let full = m / mr * mr;
    if kb.split.is_some() && m > 0 {
        return row_blocks_share(kb, m, m_run, mr, tile);
    }
    if let (Some(v), true) = (m_run, full > 0) {
        // Full blocks up to the run-time rows, the last one partial; when that one would hold
        // at most half a block, it is a tile of `half` rows instead (fewer rows computed for
        // the short prompts a bound build also serves).
        let half = mr / 2;
        let floor = kb.b.ins().udiv_imm_u(v, mr as i64);
        let floor = kb.b.ins().imul_imm_s(floor, mr as i64);
        let left = kb.b.ins().isub(v, floor);
        let small = if half > 0 {
            let le = kb.b.ins().icmp_imm_s(IntCC::SignedLessThanOrEqual, left, half as i64);
            let inside = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, floor, full as i64);
            kb.b.ins().band(le, inside)
        } else {
            kb.b.ins().iconst(types::I8, 0)
        };
        let up = kb.b.ins().iadd_imm_s(v, mr as i64 - 1);
        let up = kb.b.ins().udiv_imm_u(up, mr as i64);
        let up = kb.b.ins().imul_imm_s(up, mr as i64);
        let up = kb.b.ins().select(small, floor, up);
        let cap = kb.iconst(full as i64);
        let hi = kb.b.ins().umin(up, cap);
        let zero = kb.iconst(0);
        kb.for_range(zero, hi, mr as i64, |kb, i| tile(kb, i, mr));
        if half > 0 {
            let some = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, left, 0);
            let go = kb.b.ins().band(small, some);
            kb.when(go, |kb| tile(kb, hi, half));
        }
        if m > full {
            let past = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, v, full as i64);
            kb.when(past, |kb| {
                let i = kb.iconst(full as i64);
                tile(kb, i, m - full);
            });
        }
        return;
    }
    if full > 0 {
        if full == mr {
            let z = kb.iconst(0);
            tile(kb, z, mr);
        } else {
            kb.for_const(0, full as i64, mr as i64, |kb, i| tile(kb, i, mr));
        }
    }
    if m > full {
        let i = kb.iconst(full as i64);
        tile(kb, i, m - full);
    }
}

/// [`row_blocks`] in a split kernel: the same blocks (full ones up to the run-time rows, then
/// the static edge), this task's share of them.
fn row_blocks_share(
    kb: &mut Kb,
    m: usize,
    m_run: Option<Value>,
    mr: usize,
    tile: &mut dyn FnMut(&mut Kb, Value, usize),
) {
    if let Some(share) = RowShare::take(kb, m, m_run, mr) {
        share.run(kb, tile);
    }
}

/// A split kernel's share of the blocks of [`row_blocks`] (taken once, with
/// [`Kb::take_share`], and run as often as needed: the assembled products run it once per K
/// block, over row blocks or column tiles).
#[derive(Clone, Copy)]
pub(crate) struct RowShare {
    /// First and end row of this task's full blocks.
    a: Value,
    b: Value,
    /// The static edge block (its first row, its rows) and whether it is this task's.
    edge: Option<(usize, usize, Value)>,
    mr: usize,
}

impl RowShare {
    /// Takes the kernel's split for the row blocks of an `m`-row product (`None` when the kernel
    /// is not split or the split was taken).
    pub(crate) fn take(kb: &mut Kb, m: usize, m_run: Option<Value>, mr: usize) -> Option<RowShare> {
        kb.split?;
        let nfull = m / mr;
        let fulls = match m_run {
            Some(v) if nfull > 0 => {
                let up = kb.b.ins().iadd_imm_s(v, mr as i64 - 1);
                let up = kb.b.ins().udiv_imm_u(up, mr as i64);
                let cap = kb.iconst(nfull as i64);
                kb.b.ins().umin(up, cap)
            }
            _ => kb.iconst(nfull as i64),
        };
        let has_edge = m > nfull * mr;
        let total = if has_edge { kb.b.ins().iadd_imm_s(fulls, 1) } else { fulls };
        let (lo, hi) = kb.take_share(total)?;
        let end = kb.b.ins().umin(hi, fulls);
        let (a, b) = (kb.b.ins().imul_imm_s(lo, mr as i64), kb.b.ins().imul_imm_s(end, mr as i64));
        // The edge is block `fulls`, the last: this task's when its share ends past the full ones.
        let edge = has_edge.then(|| {
            let mine = kb.b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::UnsignedGreaterThan, hi, fulls);
            (nfull * mr, m - nfull * mr, mine)
        });
        Some(RowShare { a, b, edge, mr })
    }

    /// Runs `tile(kb, i0, rows)` over this task's blocks.
    pub(crate) fn run(&self, kb: &mut Kb, tile: &mut dyn FnMut(&mut Kb, Value, usize)) {
        let mr = self.mr;
        kb.for_range(self.a, self.b, mr as i64, |kb, i| tile(kb, i, mr));
        if let Some((first, rows, mine)) = self.edge {
            kb.when(mine, |kb| {
                let i = kb.iconst(first as i64);
                tile(kb, i, rows);
            });
        }
    }
}

/// Runs `tile(kb, j0, cols)` over the column tiles of `col_tiles`. With a run-time column
/// count `n_run`, the leading run of tiles stops at the first tile at or past it (the static
/// edge tiles, narrower, still run).
pub(super) fn col_blocks(
    kb: &mut Kb,
    tiles: &[(usize, usize, Cols)],
    n_run: Option<Value>,
    tile: &mut dyn FnMut(&mut Kb, Value, Cols),
) {
    let mut j = 0usize;
    for (t, &(w, count, cols)) in tiles.iter().enumerate() {
        if let (0, Some(v)) = (t, n_run) {
            let up = kb.b.ins().iadd_imm_s(v, w as i64 - 1);
            let up = kb.b.ins().udiv_imm_u(up, w as i64);
            let up = kb.b.ins().imul_imm_s(up, w as i64);
            let cap = kb.iconst((w * count) as i64);
            let hi = kb.b.ins().umin(up, cap);
            let zero = kb.iconst(0);
            kb.for_range(zero, hi, w as i64, |kb, j0| tile(kb, j0, cols));
        } else if count == 1 {
            let j0 = kb.iconst(j as i64);
            tile(kb, j0, cols);
        } else {
            kb.for_const(j as i64, (j + w * count) as i64, w as i64, |kb, j0| tile(kb, j0, cols));
        }
        j += w * count;
    }
}

/// Where a [`loop_carry`] stops: a constant, or a run-time value.
#[derive(Clone, Copy)]
pub(super) enum End {
    At(i64),
    Run(Value),
}

/// `for p in (lo..end).step_by(step)`, carrying `state`; returns the final state. A constant
/// end makes no loop for one trip and nothing for none; a run-time end checks for no trip
/// first.
pub(super) fn loop_carry(
    kb: &mut Kb,
    lo: i64,
    end: End,
    step: i64,
    state: Vec<Value>,
    body: impl FnOnce(&mut Kb, &[Value]) -> Vec<Value>,
) -> Vec<Value> {
    if let End::At(hi) = end {
        if lo >= hi {
            return state;
        }
        if lo + step >= hi {
            return body(kb, &state);
        }
    }
    let ptr = kb.caps.ptr;
    let blk = kb.b.create_block();
    let exit = kb.b.create_block();
    kb.b.append_block_param(blk, ptr);
    for &v in &state {
        let t = kb.ty(v);
        kb.b.append_block_param(blk, t);
        kb.b.append_block_param(exit, t);
    }
    let lo_v = kb.iconst(lo);
    let first: Vec<_> = std::iter::once(lo_v).chain(state.iter().copied()).map(Into::into).collect();
    match end {
        End::At(_) => {
            kb.b.ins().jump(blk, &first);
        }
        End::Run(hi) => {
            let enter = kb.b.ins().icmp(IntCC::SignedLessThan, lo_v, hi);
            let skip: Vec<_> = state.iter().copied().map(Into::into).collect();
            kb.b.ins().brif(enter, blk, &first, exit, &skip);
        }
    }
    kb.b.switch_to_block(blk);
    let params = kb.b.block_params(blk).to_vec();
    let new = body(kb, &params[1..]);
    let next = kb.b.ins().iadd_imm_s(params[0], step);
    let go = match end {
        End::At(hi) => kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, next, hi),
        End::Run(hi) => kb.b.ins().icmp(IntCC::SignedLessThan, next, hi),
    };
    let back: Vec<_> = std::iter::once(next).chain(new.iter().copied()).map(Into::into).collect();
    let out: Vec<_> = new.iter().copied().map(Into::into).collect();
    kb.b.ins().brif(go, blk, &back, exit, &out);
    kb.b.switch_to_block(exit);
    kb.b.block_params(exit).to_vec()
}
