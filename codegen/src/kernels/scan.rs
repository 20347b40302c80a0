//! CumSum: running sums along one axis.
//!
//! The tensor is walked as `[outer, n, inner]` around the scanned axis (extent `n`): for each
//! outer index and each inner index one accumulator runs over the axis, forward or reversed,
//! storing before (exclusive) or after (inclusive) adding each element. The inner axis is
//! contiguous, so f32 and i32 tensors scan 4 inner positions at once in `F32X4`/`I32X4` lanes
//! (when [`crate::emit::Caps::vector`]), with scalar steps for the remaining positions.
//!
//! Sums follow the reference interpreter (`slmtvm_ir::ops::cumsum`): f32 in f32, f16 in f32
//! rounded to f16 after every step, integers wrapping (in i64, narrowed on store). Element `k`
//! is read before it is written, so the output may alias the input.

use super::NodeCtx;
use crate::Result;
use crate::emit::Kb;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use slmtvm_ir::ops::CumSum;
use slmtvm_ir::{DType, Op};

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: the leading axes and the scanned one run to their run-time extents (a
/// reversed scan starts at the run-time end of its axis, so the padding beyond it is never
/// summed in); the inner axes are position-wise over the physical extents.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let Op::CumSum(c) = &cx.node.op else { return Err(cx.error("not a scan operator")) };
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let (dt, dims) = (cx.in_dtype(0)?, cx.in_dims(0)?);
    let axis = c.axis_of(dt, dims.len()).map_err(|e| cx.error(e))?;
    if dims.contains(&0) {
        return Ok(());
    }
    let inner: usize = dims[axis + 1..].iter().product();
    // Leading loops: one over all rows, or to the run-time extents of symbolic leading axes.
    let (lead, lead_rows) = cx.row_loops(kb, xv, axis)?;
    let lead_strides: Vec<i64> = lead_rows.iter().map(|&r| r * (dims[axis] * inner) as i64).collect();
    let n = cx.extent(kb, xv, axis)?;
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let vector = kb.caps.vector && matches!(dt, DType::F32 | DType::I32) && inner >= 4;
    let vec_end = if vector { inner / 4 * 4 } else { 0 };
    let s = Scan { c, dt, n, inner, x, y };
    kb.nest_runtime(&lead, &mut |kb, lidx| {
        let row = kb.linear(0, lidx, &lead_strides);
        if vec_end > 0 {
            kb.for_const(0, vec_end as i64, 4, |kb, i| s.column(kb, row, i, 4));
        }
        if vec_end < inner {
            kb.for_const(vec_end as i64, inner as i64, 1, |kb, i| s.column(kb, row, i, 1));
        }
    });
    Ok(())
}

struct Scan<'a> {
    c: &'a CumSum,
    dt: DType,
    /// Extent of the scanned axis (pointer-width, run-time for a symbolic axis).
    n: Value,
    inner: usize,
    x: Value,
    y: Value,
}

impl Scan<'_> {
    /// The compute type of `lanes` lanes.
    fn ty(&self, lanes: usize) -> Type {
        match (lanes, self.dt) {
            (4, DType::F32) => types::F32X4,
            (4, _) => types::I32X4,
            (_, dt) => crate::emit::compute_type(dt),
        }
    }

    /// Scans the `lanes` adjacent columns starting at inner index `i` of the row at element
    /// `row` (the element of index 0 along the axis).
    fn column(&self, kb: &mut Kb, row: Value, i: Value, lanes: usize) {
        let ty = self.ty(lanes);
        let zero = if self.dt.is_float() {
            kb.fconst(0.0, lanes)
        } else if lanes == 4 {
            let z = kb.b.ins().iconst(types::I32, 0);
            kb.b.ins().splat(types::I32X4, z)
        } else {
            kb.b.ins().iconst(types::I64, 0)
        };
        let acc = kb.b.declare_var(ty);
        kb.b.def_var(acc, zero);
        let inner = self.inner as i64;
        // Element index of (row, 0, i); the axis steps by `inner` elements.
        let start = kb.b.ins().iadd(row, i);
        let last = kb.b.ins().iadd_imm_s(self.n, -1);
        let zero = kb.iconst(0);
        kb.for_range(zero, self.n, 1, |kb, k| {
            let k = if self.c.reverse { kb.b.ins().isub(last, k) } else { k };
            let off = kb.b.ins().imul_imm_s(k, inner);
            let idx = kb.b.ins().iadd(start, off);
            let size = self.dt.size();
            let (xa, ya) = (kb.addr(self.x, idx, size), kb.addr(self.y, idx, size));
            let v = if lanes == 4 { kb.load(ty, xa, 0) } else { kb.load_elem(self.dt, xa) };
            let a = kb.b.use_var(acc);
            let sum = if self.dt.is_float() { kb.b.ins().fadd(a, v) } else { kb.b.ins().iadd(a, v) };
            let sum = if self.dt == DType::F16 {
                let h = kb.narrow(DType::F16, sum);
                kb.widen(DType::F16, h)
            } else {
                sum
            };
            let out = if self.c.exclusive { a } else { sum };
            if lanes == 4 {
                kb.store(out, ya, 0)
            } else {
                kb.store_elem(self.dt, out, ya)
            }
            kb.b.def_var(acc, sum);
        });
    }
}
