//! Reductions and normalizations: Reduce (Mean, Sum, Max, L2), Softmax, LayerNorm, RmsNorm,
//! BatchNorm (inference mode) and GlobalAveragePool.
//!
//! Floats (f32 and f16) accumulate in f32 where the reference accumulates in f64, so sums
//! differ from it by rounding only (a few ulp of f32 for well-conditioned data). Integer
//! reductions follow the reference exactly: sums wrap (in 64 bits, then at the dtype's width
//! when stored), Mean divides the sum wrapped to the dtype as an f64 and truncates, L2
//! truncates the f64 `sqrt` of the sum of squares wrapped to the dtype, and a truncation of
//! NaN or an out-of-range value gives `i32::MIN`/`i64::MIN` as the reference's cast does.
//! Max propagates NaN. Where the reference divides per element, the kernels multiply by a
//! reciprocal computed once per row (Softmax: `e · (1/Σe)`; LayerNorm: `(x - mean) · (1/σ)`;
//! RmsNorm: `x · (1/rms)`; BatchNorm: `(x - mean) · (scale/σ) + bias`), within an ulp or two of the reference.
//!
//! Rows whose reduced axes are the innermost contiguous ones are folded with four `F32X4`
//! accumulators and a scalar tail; reductions whose innermost axis is kept are vectorized
//! across four adjacent outputs; everything else is a strided scalar loop nest with the
//! output index outside and the reduced indices inside.

use super::NodeCtx;
use crate::Result;
use crate::emit::math::exp;
use crate::emit::{Kb, lane_flags, strides_of};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, StackSlotData, StackSlotKind, Value, types};
use cranelift_frontend::Variable;
use slmtvm_ir::ops::{BatchNorm, LayerNorm, Reduce, ReduceKind, RmsNorm, Softmax};
use slmtvm_ir::{DType, Op};

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: a reduction, Softmax, LayerNorm or RmsNorm over a symbolic axis folds its
/// run-time extent (Mean and the norms divide by the run-time count; `reduce_runtime`,
/// `softmax_runtime`, `norm_runtime`), and GlobalAveragePool over symbolic spatial axes is
/// the Mean over them. The norms' rows over static axes run to the run-time extents of
/// their symbolic leading axes; everything else works position-wise over the physical
/// extents. Reduction axes given at run time are refused.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    if cx.is_symbolic() {
        let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
        let rank = cx.g.ty(x).shape.rank();
        let sym = |axes: std::ops::Range<usize>| axes.clone().any(|a| cx.axis_symbolic(x, a));
        match &cx.node.op {
            Op::Softmax(sm) => {
                let a = norm_axis(cx, sm.axis, rank)?;
                if cx.axis_symbolic(x, a) {
                    return softmax_runtime(kb, cx, a);
                }
            }
            Op::Reduce(r) => {
                let axes: Vec<usize> = match &r.axes {
                    Some(ax) => ax.iter().map(|&a| norm_axis(cx, a, rank)).collect::<Result<_>>()?,
                    None if cx.in_id(1).is_some() => {
                        return Err(cx.refuse_symbolic("reduction axes given at run time"));
                    }
                    None => (0..rank).collect(),
                };
                if axes.iter().any(|&a| cx.axis_symbolic(x, a)) {
                    return reduce_runtime(kb, cx, r.kind, &axes);
                }
            }
            Op::LayerNorm(ln) => {
                let a = norm_axis(cx, ln.axis, rank)?;
                if sym(a..rank) {
                    return norm_runtime(kb, cx, a, ln.epsilon, true);
                }
            }
            Op::RmsNorm(rn) => {
                let a = norm_axis(cx, rn.axis, rank)?;
                if sym(a..rank) {
                    return norm_runtime(kb, cx, a, rn.epsilon, false);
                }
            }
            Op::GlobalAveragePool(_) if sym(2..rank) => {
                return reduce_runtime(kb, cx, ReduceKind::Mean, &(2..rank).collect::<Vec<_>>());
            }
            _ => {}
        }
    }
    match &cx.node.op {
        Op::Reduce(r) => reduce(kb, cx, r),
        Op::Softmax(sm) => softmax(kb, cx, sm),
        Op::LayerNorm(ln) => layer_norm(kb, cx, ln),
        Op::RmsNorm(rn) => rms_norm(kb, cx, rn),
        Op::BatchNorm(bn) => batch_norm(kb, cx, bn),
        Op::GlobalAveragePool(_) => global_average_pool(kb, cx),
        _ => Err(cx.error("not a reduction or normalization")),
    }
}

/// `axis` (may be negative) as an index below `rank`.
fn norm_axis(cx: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(cx.error(format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// An f32 value splat to `lanes` (a vector stays as it is).
fn splat(kb: &mut Kb, v: Value, lanes: usize) -> Value {
    if lanes == 4 && kb.lanes(v) == 1 { kb.b.ins().splat(types::F32X4, v) } else { v }
}

/// Emits `body(i, lanes)` for `i` in `0..n`: steps of 4 lanes while 4 remain (when `vector`
/// and the target has vectors), then single elements.
fn for_lanes(kb: &mut Kb, n: usize, vector: bool, body: &mut dyn FnMut(&mut Kb, Value, usize)) {
    let vec_end = if vector && kb.caps.vector { n / 4 * 4 } else { 0 };
    if vec_end > 0 {
        kb.for_const(0, vec_end as i64, 4, |kb, i| body(kb, i, 4));
    }
    if vec_end < n {
        kb.for_const(vec_end as i64, n as i64, 1, |kb, i| body(kb, i, 1));
    }
}

/// [`for_lanes`] with four vectors (16 elements) a loop step while 16 remain, then vectors,
/// then single elements: for bodies as cheap as the loop's own counter, compare and branch.
fn for_lanes_x4(kb: &mut Kb, n: usize, vector: bool, body: &mut dyn FnMut(&mut Kb, Value, usize)) {
    let vec = vector && kb.caps.vector;
    let n16 = if vec { n / 16 * 16 } else { 0 };
    let n4 = if vec { n / 4 * 4 } else { 0 };
    if n16 > 0 {
        kb.for_const(0, n16 as i64, 16, |kb, i| {
            for k in 0..4 {
                let ik = if k == 0 { i } else { kb.b.ins().iadd_imm_s(i, 4 * k) };
                body(kb, ik, 4);
            }
        });
    }
    if n4 > n16 {
        kb.for_const(n16 as i64, n4 as i64, 4, |kb, i| body(kb, i, 4));
    }
    if n4 < n {
        kb.for_const(n4 as i64, n as i64, 1, |kb, i| body(kb, i, 1));
    }
}

/// The address of element `index` of `base` (elements of `dtype`), computed here, once, for the
/// loops that follow (see [`pin`]): their accesses then need no index arithmetic of their own.
fn row_ptr(kb: &mut Kb, base: Value, index: Value, dtype: DType) -> Value {
    let p = kb.addr(base, index, dtype.size());
    pin(kb, p)
}

/// How a row is folded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    Add,
    /// IEEE maximum: NaN propagates.
    Max,
    /// `if b > a { b } else { a }` (one `maxps` on x86): the largest value of a row without
    /// NaN; with a NaN the result is unspecified (Softmax gives NaN for such rows anyway).
    PMax,
}

impl Fold {
    fn init(self) -> f32 {
        match self {
            Fold::Add => 0.0,
            Fold::Max | Fold::PMax => f32::NEG_INFINITY,
        }
    }

    fn apply(self, kb: &mut Kb, a: Value, b: Value) -> Value {
        match self {
            Fold::Add => kb.b.ins().fadd(a, b),
            Fold::Max => kb.b.ins().fmax(a, b),
            Fold::PMax => {
                // The operand order x86's `maxps` pattern wants: (a < b) ? b : a.
                let lt = kb.b.ins().fcmp(FloatCC::LessThan, a, b);
                if kb.lanes(a) == 4 {
                    let mask = kb.b.ins().bitcast(types::F32X4, lane_flags(), lt);
                    kb.b.ins().bitselect(mask, b, a)
                } else {
                    kb.b.ins().select(lt, b, a)
                }
            }
        }
    }

    /// The fold of the 4 lanes of an `F32X4`.
    fn horizontal(self, kb: &mut Kb, v: Value) -> Value {
        match self {
            Fold::Add => kb.hsum(v),
            Fold::Max => kb.hmax(v),
            Fold::PMax => {
                let l: Vec<Value> = (0..4).map(|k| kb.b.ins().extractlane(v, k)).collect();
                let a = self.apply(kb, l[0], l[1]);
                let c = self.apply(kb, l[2], l[3]);
                self.apply(kb, a, c)
            }
        }
    }
}

/// Folds `f(i)` over `i` in `0..n` into one f32 with `fold` (its identity for `n == 0`);
/// `f(i, lanes)` gives the f32 values of elements `i..i + lanes`. With `vector` (and a vector
/// target) four `F32X4` accumulators take 16 elements per step (one only when `f` is costly
/// itself, as `exp` is: its temporaries need the registers), then one takes 4 per step,
/// then a scalar tail.
fn fold_row(
    kb: &mut Kb,
    n: usize,
    fold: Fold,
    vector: bool,
    f: &mut dyn FnMut(&mut Kb, Value, usize) -> Value,
) -> Value {
    fold_row_with(kb, n, fold, vector, true, f)
}

/// [`fold_row`], with four accumulators only when `unroll`.
fn fold_row_with(
    kb: &mut Kb,
    n: usize,
    fold: Fold,
    vector: bool,
    unroll: bool,
    f: &mut dyn FnMut(&mut Kb, Value, usize) -> Value,
) -> Value {
    let init = kb.fconst(fold.init(), 1);
    let total = kb.var(init);
    let mut done = 0;
    if vector && kb.caps.vector && n >= 4 {
        let (n16, n4) = (if unroll { n / 16 * 16 } else { 0 }, n / 4 * 4);
        let used = if n16 > 0 { 4 } else { 1 };
        // The IEEE maximum costs ~9 instructions per vector on x86; the plain one and a mask
        // of NaN lanes cost 3.
        let (vfold, nan) = match fold {
            Fold::Max => {
                let z = kb.b.ins().iconst(types::I32, 0);
                let z = kb.b.ins().splat(types::I32X4, z);
                (Fold::PMax, Some(kb.var(z)))
            }
            _ => (fold, None),
        };
        let accs: Vec<Variable> = (0..used)
            .map(|_| {
                let z = kb.fconst(fold.init(), 4);
                kb.var(z)
            })
            .collect();
        let mut step = |kb: &mut Kb, acc: Variable, i: Value| {
            let v = f(kb, i, 4);
            let a = kb.b.use_var(acc);
            let a = vfold.apply(kb, a, v);
            kb.b.def_var(acc, a);
            if let Some(m) = nan {
                let uno = kb.b.ins().fcmp(FloatCC::Unordered, v, v);
                let old = kb.b.use_var(m);
                let new = kb.b.ins().bor(old, uno);
                kb.b.def_var(m, new);
            }
        };
        if n16 > 0 {
            kb.for_const(0, n16 as i64, 16, |kb, i| {
                for (k, &acc) in accs.iter().enumerate() {
                    let ik = kb.b.ins().iadd_imm_s(i, 4 * k as i64);
                    step(kb, acc, ik);
                }
            });
        }
        if n4 > n16 {
            kb.for_const(n16 as i64, n4 as i64, 4, |kb, i| step(kb, accs[0], i));
        }
        let vals: Vec<Value> = accs.iter().map(|&a| kb.b.use_var(a)).collect();
        let mut v = vals[0];
        if used == 4 {
            let a = vfold.apply(kb, vals[0], vals[1]);
            let b = vfold.apply(kb, vals[2], vals[3]);
            v = vfold.apply(kb, a, b);
        }
        let mut h = vfold.horizontal(kb, v);
        if let Some(m) = nan {
            let m = kb.b.use_var(m);
            let any = kb.b.ins().vany_true(m);
            let qnan = kb.fconst(f32::NAN, 1);
            h = kb.b.ins().select(any, qnan, h);
        }
        kb.b.def_var(total, h);
        done = n4;
    }
    if done < n {
        kb.for_const(done as i64, n as i64, 1, |kb, i| {
            let v = f(kb, i, 1);
            let t = kb.b.use_var(total);
            let t = fold.apply(kb, t, v);
            kb.b.def_var(total, t);
        });
    }
    let t = kb.b.use_var(total);
    pin(kb, t)
}

/// Makes sure `v` is computed here, once. Cranelift places a pure value at its first use and
/// did not hoist a row statistic out of the loop that follows the loop defining its operands,
/// so it would be recomputed on every element (an `hsum` and a division per vector). A store
/// of `v` to a stack slot is a side effect at this point, so `v` is computed before it and
/// reused below.
fn pin(kb: &mut Kb, v: Value) -> Value {
    let slot = kb.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 4));
    let ptr = kb.caps.ptr;
    kb.b.ins().stack_store(ptr, v, slot, 0);
    v
}

/// A per-row f32 scalar and its 4-lane splat, both pinned before the loops that use them.
#[derive(Clone, Copy)]
struct Bc {
    s: Value,
    v: Value,
}

impl Bc {
    fn new(kb: &mut Kb, s: Value) -> Bc {
        let s = pin(kb, s);
        let v = if kb.caps.vector {
            let v = kb.b.ins().splat(types::F32X4, s);
            pin(kb, v)
        } else {
            s
        };
        Bc { s, v }
    }

    fn at(self, lanes: usize) -> Value {
        if lanes == 4 { self.v } else { self.s }
    }
}

/// `v` (I64) wrapped to the width of integer dtype `dt` and extended back.
fn wrap(kb: &mut Kb, dt: DType, v: Value) -> Value {
    match dt {
        DType::I8 => {
            let r = kb.b.ins().ireduce(types::I8, v);
            kb.b.ins().sextend(types::I64, r)
        }
        DType::U8 => {
            let r = kb.b.ins().ireduce(types::I8, v);
            kb.b.ins().uextend(types::I64, r)
        }
        DType::I32 => {
            let r = kb.b.ins().ireduce(types::I32, v);
            kb.b.ins().sextend(types::I64, r)
        }
        _ => v,
    }
}

/// An f64 truncated toward zero to the I64 compute value of integer dtype `dt`, as the
/// reference's cast does: NaN and values out of range give `i64::MIN` for i64 and
/// `i32::MIN` otherwise (the narrow store keeps its low bits for i8/u8).
fn trunc_f64(kb: &mut Kb, dt: DType, f: Value) -> Value {
    let (lo, hi, bad, lo_cc) = if dt == DType::I64 {
        (-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_808.0, i64::MIN, FloatCC::GreaterThanOrEqual)
    } else {
        (-2_147_483_649.0, 2_147_483_648.0, i64::from(i32::MIN), FloatCC::GreaterThan)
    };
    let lo = kb.b.ins().f64const(lo);
    let hi = kb.b.ins().f64const(hi);
    let above = kb.b.ins().fcmp(lo_cc, f, lo);
    let below = kb.b.ins().fcmp(FloatCC::LessThan, f, hi);
    let ok = kb.b.ins().band(above, below);
    let t = kb.b.ins().fcvt_to_sint_sat(types::I64, f);
    let bad = kb.b.ins().iconst(types::I64, bad);
    kb.b.ins().select(ok, t, bad)
}

/// One Reduce: its kind, the input dtype and the number of reduced elements per output.
#[derive(Clone, Copy)]
struct Red {
    kind: ReduceKind,
    dt: DType,
    /// Elements per output: a constant, or a pointer-width value computed at run time.
    n: Count,
}

/// A count known at compile time or only at run time.
#[derive(Clone, Copy)]
enum Count {
    Static(usize),
    Runtime(Value),
}

impl Count {
    /// The count as `lanes` f32 lanes.
    fn f32(self, kb: &mut Kb, lanes: usize) -> Value {
        match self {
            Count::Static(n) => kb.fconst(n as f32, lanes),
            Count::Runtime(v) => {
                let f = kb.b.ins().fcvt_from_sint(types::F32, v);
                splat(kb, f, lanes)
            }
        }
    }

    /// The count as an f64.
    fn f64(self, kb: &mut Kb) -> Value {
        match self {
            Count::Static(n) => kb.b.ins().f64const(n as f64),
            Count::Runtime(v) => kb.b.ins().fcvt_from_sint(types::F64, v),
        }
    }
}

impl Red {
    fn float(&self) -> bool {
        self.dt.is_float()
    }

    fn fold(&self) -> Fold {
        if self.kind == ReduceKind::Max { Fold::Max } else { Fold::Add }
    }

    /// The accumulator's initial value.
    fn init(&self, kb: &mut Kb, lanes: usize) -> Value {
        if self.float() {
            return kb.fconst(self.fold().init(), lanes);
        }
        let v = if self.kind == ReduceKind::Max { int_min(self.dt) } else { 0 };
        kb.b.ins().iconst(types::I64, v)
    }

    /// What one loaded element contributes.
    fn elem(&self, kb: &mut Kb, x: Value) -> Value {
        match (self.kind, self.float()) {
            (ReduceKind::L2, true) => kb.b.ins().fmul(x, x),
            (ReduceKind::L2, false) => {
                let sq = kb.b.ins().imul(x, x);
                wrap(kb, self.dt, sq)
            }
            _ => x,
        }
    }

    fn combine(&self, kb: &mut Kb, acc: Value, v: Value) -> Value {
        if self.float() {
            return self.fold().apply(kb, acc, v);
        }
        if self.kind == ReduceKind::Max {
            let gt = kb.b.ins().icmp(IntCC::SignedGreaterThan, v, acc);
            kb.b.ins().select(gt, v, acc)
        } else {
            kb.b.ins().iadd(acc, v)
        }
    }

    /// The output value (compute type) from the accumulator.
    fn finish(&self, kb: &mut Kb, acc: Value, lanes: usize) -> Value {
        match (self.kind, self.float()) {
            (ReduceKind::Sum | ReduceKind::Max, _) => acc,
            (ReduceKind::Mean, true) => {
                let n = self.n.f32(kb, lanes);
                kb.b.ins().fdiv(acc, n)
            }
            (ReduceKind::L2, true) => kb.b.ins().sqrt(acc),
            (ReduceKind::Mean, false) => {
                let s = wrap(kb, self.dt, acc);
                let s = kb.b.ins().fcvt_from_sint(types::F64, s);
                let n = self.n.f64(kb);
                let m = kb.b.ins().fdiv(s, n);
                trunc_f64(kb, self.dt, m)
            }
            (ReduceKind::L2, false) => {
                let s = kb.b.ins().fcvt_from_sint(types::F64, acc);
                let r = kb.b.ins().sqrt(s);
                trunc_f64(kb, self.dt, r)
            }
        }
    }

    /// The output of an empty reduction (compute type).
    fn empty(&self, kb: &mut Kb) -> Value {
        if self.float() {
            let v = match self.kind {
                ReduceKind::Sum | ReduceKind::L2 => 0.0,
                ReduceKind::Mean => f32::NAN,
                ReduceKind::Max => f32::NEG_INFINITY,
            };
            return kb.fconst(v, 1);
        }
        let v = match self.kind {
            ReduceKind::Sum | ReduceKind::L2 => 0,
            ReduceKind::Mean if self.dt == DType::I64 => i64::MIN,
            ReduceKind::Mean => i64::from(i32::MIN),
            ReduceKind::Max => int_min(self.dt),
        };
        kb.b.ins().iconst(types::I64, v)
    }

    /// Folds the elements at `x[off + Σ idx·stride]` over the loop nest `red` (size, input
    /// stride), `lanes` adjacent outputs at once, and gives the finished value.
    fn reduce_one(&self, kb: &mut Kb, x: Value, off: Value, red: &[(usize, i64)], lanes: usize) -> Value {
        let (sizes, strides): (Vec<usize>, Vec<i64>) = red.iter().copied().unzip();
        let sizes: Vec<Value> = sizes.iter().map(|&n| kb.iconst(n as i64)).collect();
        self.reduce_nest(kb, x, off, &sizes, &strides, lanes)
    }

    /// [`Red::reduce_one`] over the run-time `sizes`.
    fn reduce_nest(&self, kb: &mut Kb, x: Value, off: Value, sizes: &[Value], strides: &[i64], lanes: usize) -> Value {
        let init = self.init(kb, lanes);
        let acc = kb.var(init);
        kb.nest_runtime(sizes, &mut |kb, idx| {
            let r = kb.linear(0, idx, strides);
            let i = kb.b.ins().iadd(off, r);
            let v = kb.load_lanes(self.dt, x, i, lanes);
            let v = self.elem(kb, v);
            let a = kb.b.use_var(acc);
            let a = self.combine(kb, a, v);
            kb.b.def_var(acc, a);
        });
        let a = kb.b.use_var(acc);
        self.finish(kb, a, lanes)
    }
}

/// The lowest value of dtype `dt` as an I64 compute value (bool: false).
fn int_min(dt: DType) -> i64 {
    match dt {
        DType::I8 => i8::MIN.into(),
        DType::I32 => i32::MIN.into(),
        DType::I64 => i64::MIN,
        _ => 0,
    }
}

/// Stores the compute value `v` into elements `0..n` of `base`.
fn fill(kb: &mut Kb, dtype: DType, base: Value, n: usize, v: Value) {
    kb.for_const(0, n as i64, 1, |kb, i| kb.store_lanes(dtype, base, i, v, 1));
}

fn reduce(kb: &mut Kb, cx: &NodeCtx, r: &Reduce) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    let rank = dims.len();
    let axes: Vec<usize> = match &r.axes {
        None => (0..rank).collect(),
        Some(a) => a.iter().map(|&a| norm_axis(cx, a, rank)).collect::<Result<_>>()?,
    };
    let n_red: usize = axes.iter().map(|&a| dims[a]).product();
    let n_out: usize = (0..rank).filter(|a| !axes.contains(a)).map(|a| dims[a]).product();
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    if n_out == 0 {
        return Ok(());
    }
    let red = Red { kind: r.kind, dt, n: Count::Static(n_red) };
    if n_red == 0 {
        let v = red.empty(kb);
        fill(kb, dt, y, n_out, v);
        return Ok(());
    }
    // Merge adjacent axes of the same class (size-1 axes vanish): (size, input stride, reduced).
    let strides = strides_of(&dims);
    let mut groups: Vec<(usize, i64, bool)> = Vec::new();
    for a in 0..rank {
        if dims[a] == 1 {
            continue;
        }
        let reduced = axes.contains(&a);
        match groups.last_mut() {
            Some(g) if g.2 == reduced => {
                g.0 *= dims[a];
                g.1 = strides[a];
            }
            _ => groups.push((dims[a], strides[a], reduced)),
        }
    }
    let kept: Vec<(usize, i64)> = groups.iter().filter(|g| !g.2).map(|g| (g.0, g.1)).collect();
    let redg: Vec<(usize, i64)> = groups.iter().filter(|g| g.2).map(|g| (g.0, g.1)).collect();
    let (ksizes, kstrides): (Vec<usize>, Vec<i64>) = kept.iter().copied().unzip();
    let ostrides = strides_of(&ksizes);
    let inner_reduced = groups.last().is_some_and(|g| g.2);
    let vec = dt.is_float() && kb.caps.vector;

    if inner_reduced && red.float() {
        // Contiguous rows (the last reduced group), folded with vector accumulators.
        let (row, outer) = redg.split_last().map(|(l, o)| (l.0, o.to_vec())).unwrap_or((1, Vec::new()));
        let (rsizes, rstrides): (Vec<usize>, Vec<i64>) = outer.into_iter().unzip();
        let fold = red.fold();
        kb.nest(&ksizes, &mut |kb, kidx| {
            let base = kb.linear(0, kidx, &kstrides);
            let init = kb.fconst(fold.init(), 1);
            let total = kb.var(init);
            kb.nest(&rsizes, &mut |kb, ridx| {
                let r = kb.linear(0, ridx, &rstrides);
                let off = kb.b.ins().iadd(base, r);
                let s = fold_row(kb, row, fold, true, &mut |kb, i, lanes| {
                    let i = kb.b.ins().iadd(off, i);
                    let v = kb.load_lanes(dt, x, i, lanes);
                    red.elem(kb, v)
                });
                let t = kb.b.use_var(total);
                let t = fold.apply(kb, t, s);
                kb.b.def_var(total, t);
            });
            let t = kb.b.use_var(total);
            let v = red.finish(kb, t, 1);
            let o = kb.linear(0, kidx, &ostrides);
            kb.store_lanes(dt, y, o, v, 1);
        });
        return Ok(());
    }
    if let (true, Some((&(last, _), outer))) = (vec && !inner_reduced, kept.split_last()) {
        // The innermost axis is kept: four adjacent outputs per vector, then a scalar tail.
        let (osizes, ostr): (Vec<usize>, Vec<i64>) = outer.iter().copied().unzip();
        let oout = &ostrides[..outer.len()];
        kb.nest(&osizes, &mut |kb, kidx| {
            let base = kb.linear(0, kidx, &ostr);
            let obase = kb.linear(0, kidx, oout);
            for_lanes(kb, last, true, &mut |kb, j, lanes| {
                let off = kb.b.ins().iadd(base, j);
                let v = red.reduce_one(kb, x, off, &redg, lanes);
                let o = kb.b.ins().iadd(obase, j);
                kb.store_lanes(dt, y, o, v, lanes);
            });
        });
        return Ok(());
    }
    // Anything else: one scalar fold per output.
    kb.nest(&ksizes, &mut |kb, kidx| {
        let off = kb.linear(0, kidx, &kstrides);
        let v = red.reduce_one(kb, x, off, &redg, 1);
        let o = kb.linear(0, kidx, &ostrides);
        kb.store_lanes(dt, y, o, v, 1);
    });
    Ok(())
}

/// Softmax: `e = exp(x - max)` along the axis, then `e · (1 / Σe)`. f32 rows keep `e` in the
/// output between the passes; f16 rows recompute it. Rows along the innermost axis are
/// contiguous (vector folds); along another axis, four adjacent lanes go together.
fn softmax(kb: &mut Kb, cx: &NodeCtx, sm: &Softmax) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    let axis = norm_axis(cx, sm.axis, dims.len())?;
    let outer: usize = dims[..axis].iter().product();
    let l = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    if outer * l * inner == 0 {
        return Ok(());
    }
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let f32s = dt == DType::F32;
    // Rows to the run-time extents of symbolic leading axes.
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let rows = cx.row_loops(kb, xv, axis)?;
    if inner == 1 {
        kb.nest_runtime(&rows.0, &mut |kb, idx| {
            let o = kb.linear(0, idx, &rows.1);
            let row = kb.b.ins().imul_imm_s(o, l as i64);
            let (xr, yr) = (row_ptr(kb, x, row, dt), row_ptr(kb, y, row, dt));
            let m = fold_row(kb, l, Fold::PMax, true, &mut |kb, i, lanes| kb.load_lanes(dt, xr, i, lanes));
            let m = Bc::new(kb, m);
            let s = fold_row_with(kb, l, Fold::Add, true, false, &mut |kb, i, lanes| {
                let v = kb.load_lanes(dt, xr, i, lanes);
                let d = kb.b.ins().fsub(v, m.at(lanes));
                let e = exp(kb, d);
                if f32s {
                    kb.store_lanes(dt, yr, i, e, lanes);
                }
                e
            });
            let one = kb.fconst(1.0, 1);
            let r = kb.b.ins().fdiv(one, s);
            let r = Bc::new(kb, r);
            for_lanes_x4(kb, l, true, &mut |kb, i, lanes| {
                let e = if f32s {
                    kb.load_lanes(dt, yr, i, lanes)
                } else {
                    let v = kb.load_lanes(dt, xr, i, lanes);
                    let d = kb.b.ins().fsub(v, m.at(lanes));
                    exp(kb, d)
                };
                let p = kb.b.ins().fmul(e, r.at(lanes));
                kb.store_lanes(dt, yr, i, p, lanes);
            });
        });
        return Ok(());
    }
    kb.nest_runtime(&rows.0, &mut |kb, idx| {
        let o = kb.linear(0, idx, &rows.1);
        let base = kb.b.ins().imul_imm_s(o, (l * inner) as i64);
        for_lanes(kb, inner, true, &mut |kb, j, lanes| {
            let base = kb.b.ins().iadd(base, j);
            let at = |kb: &mut Kb, k: Value| {
                let off = kb.b.ins().imul_imm_s(k, inner as i64);
                kb.b.ins().iadd(base, off)
            };
            let init = kb.fconst(f32::NEG_INFINITY, lanes);
            let mv = kb.var(init);
            kb.for_const(0, l as i64, 1, |kb, k| {
                let i = at(kb, k);
                let v = kb.load_lanes(dt, x, i, lanes);
                let m = kb.b.use_var(mv);
                let m = Fold::PMax.apply(kb, m, v);
                kb.b.def_var(mv, m);
            });
            let m = kb.b.use_var(mv);
            let m = pin(kb, m);
            let zero = kb.fconst(0.0, lanes);
            let sv = kb.var(zero);
            kb.for_const(0, l as i64, 1, |kb, k| {
                let i = at(kb, k);
                let v = kb.load_lanes(dt, x, i, lanes);
                let d = kb.b.ins().fsub(v, m);
                let e = exp(kb, d);
                if f32s {
                    kb.store_lanes(dt, y, i, e, lanes);
                }
                let s = kb.b.use_var(sv);
                let s = kb.b.ins().fadd(s, e);
                kb.b.def_var(sv, s);
            });
            let s = kb.b.use_var(sv);
            let one = kb.fconst(1.0, lanes);
            let r = kb.b.ins().fdiv(one, s);
            let r = pin(kb, r);
            kb.for_const(0, l as i64, 1, |kb, k| {
                let i = at(kb, k);
                let e = if f32s {
                    kb.load_lanes(dt, y, i, lanes)
                } else {
                    let v = kb.load_lanes(dt, x, i, lanes);
                    let d = kb.b.ins().fsub(v, m);
                    exp(kb, d)
                };
                let p = kb.b.ins().fmul(e, r);
                kb.store_lanes(dt, y, i, p, lanes);
            });
        });
    });
    Ok(())
}

/// Element strides of a tensor of `p` dims broadcast (unidirectionally, right-aligned) to
/// `dims`: 0 on broadcast axes.
fn broadcast_strides(p: &[usize], dims: &[usize]) -> Vec<i64> {
    let r = dims.len();
    let ps = strides_of(p);
    let mut st = vec![0i64; r];
    for k in 0..p.len().min(r) {
        let (axis, pa) = (r - 1 - k, p.len() - 1 - k);
        st[axis] = if p[pa] == 1 { 0 } else { ps[pa] };
    }
    st
}

/// How a LayerNorm parameter varies along a normalized row.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RowParam {
    /// Absent (bias only): 0.
    Zero,
    /// One value per row.
    Splat,
    /// Element `i` of the row at parameter offset `row_offset + i`.
    Contiguous,
    /// Anything else (needs the multi-index).
    General,
}

fn row_param(inner: &[usize], pstr: &[i64]) -> RowParam {
    let rs = strides_of(inner);
    let live = || inner.iter().zip(pstr).zip(&rs).filter(|((d, _), _)| **d != 1);
    if live().all(|((_, &s), _)| s == 0) {
        RowParam::Splat
    } else if live().all(|((_, &s), &r)| s == r) {
        RowParam::Contiguous
    } else {
        RowParam::General
    }
}

/// `1 / sqrt(v + eps)` (scalar f32): the norms' inverse deviation.
fn inv_sqrt_eps(kb: &mut Kb, v: Value, eps: f32) -> Value {
    let e = kb.fconst(eps, 1);
    let ve = kb.b.ins().fadd(v, e);
    let sd = kb.b.ins().sqrt(ve);
    let one = kb.fconst(1.0, 1);
    kb.b.ins().fdiv(one, sd)
}

/// Loops over the rows of input 0 (its leading dims `outer`, physical): to the run-time
/// extents of the symbolic ones when the node has symbolic dims, so a short run does not
/// normalize the padding rows.
fn rows_nest(kb: &mut Kb, cx: &NodeCtx, outer: &[usize], body: &mut dyn FnMut(&mut Kb, &[Value])) -> Result<()> {
    if !cx.is_symbolic() {
        kb.nest(outer, body);
        return Ok(());
    }
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let ext = cx.extents(kb, x, 0..outer.len())?;
    kb.nest_runtime(&ext, body);
    Ok(())
}

fn layer_norm(kb: &mut Kb, cx: &NodeCtx, ln: &LayerNorm) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    let axis = norm_axis(cx, ln.axis, dims.len())?;
    let (outer_dims, inner_dims) = dims.split_at(axis);
    let outer: usize = outer_dims.iter().product();
    let n: usize = inner_dims.iter().product();
    let x = cx.in_ptr(0)?;
    let stats: Vec<Value> = (1..cx.num_outputs()).map(|k| cx.out_ptr(k)).collect();
    if outer == 0 {
        return Ok(());
    }
    if n == 0 {
        let nan = kb.fconst(f32::NAN, 1);
        for &p in &stats {
            fill(kb, DType::F32, p, outer, nan);
        }
        return Ok(());
    }
    let y = cx.out_ptr(0);
    let scale = (cx.in_ptr(1)?, cx.in_dtype(1)?, broadcast_strides(&cx.in_dims(1)?, &dims));
    let bias = match cx.in_ptr_opt(2) {
        Some(p) => Some((p, cx.in_dtype(2)?, broadcast_strides(&cx.in_dims(2)?, &dims))),
        None => None,
    };
    let smode = row_param(inner_dims, &scale.2[axis..]);
    let bmode = bias.as_ref().map_or(RowParam::Zero, |b| row_param(inner_dims, &b.2[axis..]));
    let general = smode == RowParam::General || bmode == RowParam::General;
    let vector = true;
    let stat_strides = strides_of(outer_dims);
    let eps = ln.epsilon;
    rows_nest(kb, cx, outer_dims, &mut |kb, oidx| {
        let o = kb.linear(0, oidx, &stat_strides);
        let row = kb.b.ins().imul_imm_s(o, n as i64);
        let (xr, yr) = (row_ptr(kb, x, row, dt), row_ptr(kb, y, row, dt));
        let s = fold_row(kb, n, Fold::Add, vector, &mut |kb, i, lanes| kb.load_lanes(dt, xr, i, lanes));
        let nf = kb.fconst(n as f32, 1);
        let mean = kb.b.ins().fdiv(s, nf);
        let mean = Bc::new(kb, mean);
        let ss = fold_row(kb, n, Fold::Add, vector, &mut |kb, i, lanes| {
            let v = kb.load_lanes(dt, xr, i, lanes);
            let d = kb.b.ins().fsub(v, mean.at(lanes));
            kb.b.ins().fmul(d, d)
        });
        let var = kb.b.ins().fdiv(ss, nf);
        let inv = inv_sqrt_eps(kb, var, eps);
        let inv = Bc::new(kb, inv);
        if let Some(&p) = stats.first() {
            kb.store_lanes(DType::F32, p, o, mean.s, 1);
        }
        if let Some(&p) = stats.get(1) {
            kb.store_lanes(DType::F32, p, o, inv.s, 1);
        }
        let soff = kb.linear(0, oidx, &scale.2[..axis]);
        let boff = match &bias {
            Some(b) => kb.linear(0, oidx, &b.2[..axis]),
            None => kb.iconst(0),
        };
        // Parameters constant along the row: loaded once.
        let ssplat = (smode == RowParam::Splat).then(|| {
            let v = kb.load_lanes(scale.1, scale.0, soff, 1);
            Bc::new(kb, v)
        });
        let bsplat = match &bias {
            Some(b) if bmode == RowParam::Splat => {
                let v = kb.load_lanes(b.1, b.0, boff, 1);
                Some(Bc::new(kb, v))
            }
            _ => None,
        };
        // y = (x - mean) · inv · scale + bias at row element `i`, the parameters at element
        // `si` of `sp` and `bi` of `bp`.
        let out = |kb: &mut Kb, i: Value, (sp, si): (Value, Value), (bp, bi): (Value, Value), lanes: usize| {
            let v = kb.load_lanes(dt, xr, i, lanes);
            let d = kb.b.ins().fsub(v, mean.at(lanes));
            let t = kb.b.ins().fmul(d, inv.at(lanes));
            let param = |kb: &mut Kb, p: Value, pdt: DType, idx: Value, pinned: Option<Bc>| match pinned {
                Some(c) => c.at(lanes),
                None => kb.load_lanes(pdt, p, idx, lanes),
            };
            let sv = param(kb, sp, scale.1, si, ssplat);
            let res = match &bias {
                Some(b) => {
                    let bv = param(kb, bp, b.1, bi, bsplat);
                    kb.mul_add(t, sv, bv)
                }
                None => kb.b.ins().fmul(t, sv),
            };
            kb.store_lanes(dt, yr, i, res, lanes);
        };
        let bptr = bias.as_ref().map_or(scale.0, |b| b.0);
        if general {
            let rs = strides_of(inner_dims);
            let bstr = bias.as_ref().map(|b| b.2[axis..].to_vec()).unwrap_or_default();
            kb.nest(inner_dims, &mut |kb, iidx| {
                let i = kb.linear(0, iidx, &rs);
                let si = kb.linear(0, iidx, &scale.2[axis..]);
                let si = kb.b.ins().iadd(soff, si);
                let bi = kb.linear(0, iidx, &bstr);
                let bi = kb.b.ins().iadd(boff, bi);
                out(kb, i, (scale.0, si), (bptr, bi), 1);
            });
        } else {
            // Contiguous parameters from their row's first element, as `x` and `y`.
            let srow = if smode == RowParam::Contiguous { row_ptr(kb, scale.0, soff, scale.1) } else { scale.0 };
            let brow = match &bias {
                Some(b) if bmode == RowParam::Contiguous => row_ptr(kb, b.0, boff, b.1),
                _ => bptr,
            };
            for_lanes_x4(kb, n, vector, &mut |kb, i, lanes| {
                let s = if smode == RowParam::Contiguous { (srow, i) } else { (scale.0, soff) };
                let b = if bmode == RowParam::Contiguous { (brow, i) } else { (bptr, boff) };
                out(kb, i, s, b, lanes);
            });
        }
    })?;
    Ok(())
}

/// RmsNorm: per row, the sum of squares in one vector fold, `inv = 1 / sqrt(Σx²/n + eps)`
/// once, then `y = x · inv · scale` (f16 rows computed in f32 and rounded once on store).
fn rms_norm(kb: &mut Kb, cx: &NodeCtx, rn: &RmsNorm) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    let axis = norm_axis(cx, rn.axis, dims.len())?;
    let (outer_dims, inner_dims) = dims.split_at(axis);
    let outer: usize = outer_dims.iter().product();
    let n: usize = inner_dims.iter().product();
    if outer == 0 || n == 0 {
        return Ok(());
    }
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let (sp, sdt) = (cx.in_ptr(1)?, cx.in_dtype(1)?);
    let sstr = broadcast_strides(&cx.in_dims(1)?, &dims);
    let smode = row_param(inner_dims, &sstr[axis..]);
    let row_strides = strides_of(outer_dims);
    let eps = rn.epsilon;
    rows_nest(kb, cx, outer_dims, &mut |kb, oidx| {
        let o = kb.linear(0, oidx, &row_strides);
        let row = kb.b.ins().imul_imm_s(o, n as i64);
        let (xr, yr) = (row_ptr(kb, x, row, dt), row_ptr(kb, y, row, dt));
        let ss = fold_row(kb, n, Fold::Add, true, &mut |kb, i, lanes| {
            let v = kb.load_lanes(dt, xr, i, lanes);
            kb.b.ins().fmul(v, v)
        });
        let nf = kb.fconst(n as f32, 1);
        let ms = kb.b.ins().fdiv(ss, nf);
        let inv = inv_sqrt_eps(kb, ms, eps);
        let inv = Bc::new(kb, inv);
        let soff = kb.linear(0, oidx, &sstr[..axis]);
        let ssplat = (smode == RowParam::Splat).then(|| {
            let v = kb.load_lanes(sdt, sp, soff, 1);
            Bc::new(kb, v)
        });
        let out = |kb: &mut Kb, i: Value, (sp, si): (Value, Value), lanes: usize| {
            let v = kb.load_lanes(dt, xr, i, lanes);
            let t = kb.b.ins().fmul(v, inv.at(lanes));
            let sv = match ssplat {
                Some(c) => c.at(lanes),
                None => kb.load_lanes(sdt, sp, si, lanes),
            };
            let res = kb.b.ins().fmul(t, sv);
            kb.store_lanes(dt, yr, i, res, lanes);
        };
        if smode == RowParam::General {
            let rs = strides_of(inner_dims);
            kb.nest(inner_dims, &mut |kb, iidx| {
                let i = kb.linear(0, iidx, &rs);
                let si = kb.linear(0, iidx, &sstr[axis..]);
                let si = kb.b.ins().iadd(soff, si);
                out(kb, i, (sp, si), 1);
            });
        } else {
            let srow = if smode == RowParam::Contiguous { row_ptr(kb, sp, soff, sdt) } else { sp };
            for_lanes_x4(kb, n, true, &mut |kb, i, lanes| {
                let s = if smode == RowParam::Contiguous { (srow, i) } else { (sp, soff) };
                out(kb, i, s, lanes);
            });
        }
    })?;
    Ok(())
}

fn batch_norm(kb: &mut Kb, cx: &NodeCtx, bn: &BatchNorm) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    if dims.len() < 2 {
        return Err(cx.error("BatchNorm needs an input of rank 2 or more"));
    }
    let (nb, c) = (dims[0], dims[1]);
    let inner: usize = dims[2..].iter().product();
    if nb * c * inner == 0 {
        return Ok(());
    }
    let params = (1..5).map(|i| Ok((cx.in_ptr(i)?, cx.in_dtype(i)?))).collect::<Result<Vec<_>>>()?;
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let eps = bn.epsilon;
    // Per channel (`lanes` adjacent channels from `ch`): mean, `scale / sqrt(var + eps)`, bias.
    let channel = |kb: &mut Kb, ch: Value, lanes: usize| {
        let p: Vec<Value> = params.iter().map(|&(ptr, pdt)| kb.load_lanes(pdt, ptr, ch, lanes)).collect();
        let e = kb.fconst(eps, lanes);
        let ve = kb.b.ins().fadd(p[3], e);
        let sd = kb.b.ins().sqrt(ve);
        let a = kb.b.ins().fdiv(p[0], sd);
        (p[2], a, p[1])
    };
    let pinned = |kb: &mut Kb, (m, a, b): (Value, Value, Value)| {
        let (m, a, b) = (Bc::new(kb, m), Bc::new(kb, a), Bc::new(kb, b));
        move |lanes: usize| (m.at(lanes), a.at(lanes), b.at(lanes))
    };
    let apply = |kb: &mut Kb, xi: Value, (m, a, b): (Value, Value, Value), lanes: usize| {
        let xv = kb.load_lanes(dt, x, xi, lanes);
        let mv = splat(kb, m, lanes);
        let d = kb.b.ins().fsub(xv, mv);
        let av = splat(kb, a, lanes);
        let bv = splat(kb, b, lanes);
        let r = kb.mul_add(d, av, bv);
        kb.store_lanes(dt, y, xi, r, lanes);
    };
    if inner == 1 {
        // [N, C] (or trailing 1s): vectors across channels when every operand is f32.

        kb.for_const(0, nb as i64, 1, |kb, n| {
            let row = kb.b.ins().imul_imm_s(n, c as i64);
            for_lanes(kb, c, true, &mut |kb, ch, lanes| {
                let p = channel(kb, ch, lanes);
                let xi = kb.b.ins().iadd(row, ch);
                apply(kb, xi, p, lanes);
            });
        });
        return Ok(());
    }
    kb.nest(&[nb, c], &mut |kb, idx| {
        let p = channel(kb, idx[1], 1);
        let p = pinned(kb, p);
        let row = kb.linear(0, idx, &[(c * inner) as i64, inner as i64]);
        for_lanes(kb, inner, true, &mut |kb, i, lanes| {
            let xi = kb.b.ins().iadd(row, i);
            apply(kb, xi, p(lanes), lanes);
        });
    });
    Ok(())
}

fn global_average_pool(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let dt = cx.in_dtype(0)?;
    if dims.len() < 2 {
        return Err(cx.error("GlobalAveragePool needs an input [N, C, ...]"));
    }
    let rows = dims[0] * dims[1];
    let spatial: usize = dims[2..].iter().product();
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    if rows == 0 {
        return Ok(());
    }
    kb.for_const(0, rows as i64, 1, |kb, r| {
        let base = kb.b.ins().imul_imm_s(r, spatial as i64);
        let s = fold_row(kb, spatial, Fold::Add, true, &mut |kb, i, lanes| {
            let i = kb.b.ins().iadd(base, i);
            kb.load_lanes(dt, x, i, lanes)
        });
        let n = kb.fconst(spatial as f32, 1);
        let m = kb.b.ins().fdiv(s, n);
        kb.store_lanes(dt, y, r, m, 1);
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Symbolic dims: folds over run-time extents.

/// Reduce `kind` over `axes` of input 0 when one of them is symbolic (also GlobalAveragePool,
/// as the Mean over its spatial axes): every output over the run-time extents of the kept
/// axes folds the run-time extents of the reduced ones, and Mean divides by their run-time
/// product (an empty fold gives what [`Red::empty`] gives: the formulas meet at a count of 0).
/// When the innermost axis is kept and static, four adjacent f32 outputs fold at once.
fn reduce_runtime(kb: &mut Kb, cx: &NodeCtx, kind: ReduceKind, axes: &[usize]) -> Result<()> {
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let (dims, dt, ydims) = (cx.dims(xv)?, cx.in_dtype(0)?, cx.out_dims(0)?);
    let rank = dims.len();
    let keep: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    let ys = strides_of(&ydims);
    let ostr: Vec<i64> = match ydims.len() {
        r if r == rank => keep.iter().map(|&a| ys[a]).collect(),
        r if r == keep.len() => ys,
        _ => return Err(cx.error(format!("output {ydims:?} is not {dims:?} reduced over axes {axes:?}"))),
    };
    let xs = strides_of(&dims);
    let kstr: Vec<i64> = keep.iter().map(|&a| xs[a]).collect();
    let rstr: Vec<i64> = axes.iter().map(|&a| xs[a]).collect();
    let rext: Vec<Value> = axes.iter().map(|&a| cx.extent(kb, xv, a)).collect::<Result<_>>()?;
    let mut count = kb.iconst(1);
    for &e in &rext {
        count = kb.b.ins().imul(count, e);
    }
    let red = Red { kind, dt, n: Count::Runtime(count) };
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let lanes_over = match keep.last() {
        Some(&a) if a == rank - 1 && !cx.axis_symbolic(xv, a) && dt.is_float() && kb.caps.vector => Some(dims[a]),
        _ => None,
    };
    let outer = keep.len() - usize::from(lanes_over.is_some());
    let kext: Vec<Value> = keep[..outer].iter().map(|&a| cx.extent(kb, xv, a)).collect::<Result<_>>()?;
    kb.nest_runtime(&kext, &mut |kb, kidx| {
        let xo = kb.linear(0, kidx, &kstr[..outer]);
        let yo = kb.linear(0, kidx, &ostr[..outer]);
        let mut one = |kb: &mut Kb, j: Value, lanes: usize| {
            let (xj, yj) = (kb.b.ins().iadd(xo, j), kb.b.ins().iadd(yo, j));
            let v = red.reduce_nest(kb, x, xj, &rext, &rstr, lanes);
            kb.store_lanes(dt, y, yj, v, lanes);
        };
        match lanes_over {
            Some(n) => for_lanes(kb, n, true, &mut one),
            None => {
                let zero = kb.iconst(0);
                one(kb, zero, 1);
            }
        }
    });
    Ok(())
}

/// LayerNorm (`layer`; with its optional mean and inverse-deviation outputs) or RmsNorm
/// normalizing over axes `axis..` of which one is symbolic: per row (the run-time extents of
/// the leading axes) the statistics over the run-time extents of the normalized axes, divided
/// by their run-time count, then every normalized element; scalar code.
fn norm_runtime(kb: &mut Kb, cx: &NodeCtx, axis: usize, eps: f32, layer: bool) -> Result<()> {
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let (dims, dt) = (cx.dims(xv)?, cx.in_dtype(0)?);
    let rank = dims.len();
    let xs = strides_of(&dims);
    let outer = cx.extents(kb, xv, 0..axis)?;
    let inner = cx.extents(kb, xv, axis..rank)?;
    let mut count = kb.iconst(1);
    for &e in &inner {
        count = kb.b.ins().imul(count, e);
    }
    let n = Count::Runtime(count).f32(kb, 1);
    let param = |i: usize| -> Result<Option<(Value, DType, Vec<i64>)>> {
        match cx.in_ptr_opt(i) {
            Some(p) => Ok(Some((p, cx.in_dtype(i)?, broadcast_strides(&cx.in_dims(i)?, &dims)))),
            None => Ok(None),
        }
    };
    let scale = param(1)?.ok_or_else(|| cx.error("scale is required"))?;
    let bias = if layer { param(2)? } else { None };
    let stats: Vec<Value> = if layer { (1..cx.num_outputs()).map(|k| cx.out_ptr(k)).collect() } else { Vec::new() };
    let stat_strides = strides_of(&dims[..axis]);
    let (x, y) = (cx.in_ptr(0)?, cx.out_ptr(0));
    kb.nest_runtime(&outer, &mut |kb, oidx| {
        let row = kb.linear(0, oidx, &xs[..axis]);
        let at = |kb: &mut Kb, iidx: &[Value]| {
            let i = kb.linear(0, iidx, &xs[axis..]);
            kb.b.ins().iadd(row, i)
        };
        let sum = |kb: &mut Kb, term: &dyn Fn(&mut Kb, Value) -> Value| {
            let z = kb.fconst(0.0, 1);
            let acc = kb.var(z);
            kb.nest_runtime(&inner, &mut |kb, iidx| {
                let i = at(kb, iidx);
                let v = kb.load_lanes(dt, x, i, 1);
                let t = term(kb, v);
                let a = kb.b.use_var(acc);
                let a = kb.b.ins().fadd(a, t);
                kb.b.def_var(acc, a);
            });
            kb.b.use_var(acc)
        };
        let mean = if layer {
            let s = sum(kb, &|_, v| v);
            kb.b.ins().fdiv(s, n)
        } else {
            kb.fconst(0.0, 1)
        };
        let ss = sum(kb, &|kb, v| {
            let d = kb.b.ins().fsub(v, mean);
            kb.b.ins().fmul(d, d)
        });
        let var = kb.b.ins().fdiv(ss, n);
        let inv = inv_sqrt_eps(kb, var, eps);
        let o = kb.linear(0, oidx, &stat_strides);
        for (&p, v) in stats.iter().zip([mean, inv]) {
            kb.store_lanes(DType::F32, p, o, v, 1);
        }
        kb.nest_runtime(&inner, &mut |kb, iidx| {
            let i = at(kb, iidx);
            let full: Vec<Value> = oidx.iter().chain(iidx).copied().collect();
            let v = kb.load_lanes(dt, x, i, 1);
            let d = kb.b.ins().fsub(v, mean);
            let t = kb.b.ins().fmul(d, inv);
            let si = kb.linear(0, &full, &scale.2);
            let sv = kb.load_lanes(scale.1, scale.0, si, 1);
            let r = match &bias {
                Some((bp, bdt, bs)) => {
                    let bi = kb.linear(0, &full, bs);
                    let bv = kb.load_lanes(*bdt, *bp, bi, 1);
                    kb.mul_add(t, sv, bv)
                }
                None => kb.b.ins().fmul(t, sv),
            };
            kb.store_lanes(dt, y, i, r, 1);
        });
    });
    Ok(())
}

/// Softmax along symbolic axis `a`: max, sum of exponentials and normalization over the
/// run-time extent of the axis, for every physical position of the other axes.
fn softmax_runtime(kb: &mut Kb, cx: &NodeCtx, a: usize) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let dt = cx.in_dtype(0)?;
    if dt != DType::F32 {
        return Err(cx.unsupported(format!("Softmax of {dt} along a symbolic axis")));
    }
    let dims = cx.dims(x)?;
    let inner: usize = dims[a + 1..].iter().product();
    let stride = inner as i64;
    let l = cx.extent(kb, x, a)?;
    // Rows: every leading axis at its run-time extent; then the static inner positions.
    let mut exts: Vec<Value> = (0..a).map(|k| cx.extent(kb, x, k)).collect::<Result<_>>()?;
    exts.push(kb.iconst(inner as i64));
    let st = strides_of(&dims);
    let (xp, yp) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let e = dt.size();
    kb.nest_runtime(&exts, &mut |kb, idx| {
        let mut base = kb.linear(0, &idx[..a], &st[..a]);
        base = kb.b.ins().iadd(base, idx[a]);
        let at = |kb: &mut Kb, k: Value| {
            let off = kb.b.ins().imul_imm_s(k, stride);
            kb.b.ins().iadd(base, off)
        };
        let zero = kb.iconst(0);
        let ninf = kb.fconst(f32::NEG_INFINITY, 1);
        let m = kb.var(ninf);
        kb.for_range(zero, l, 1, |kb, k| {
            let i = at(kb, k);
            let p = kb.addr(xp, i, e);
            let v = kb.load_elem(dt, p);
            let old = kb.b.use_var(m);
            let n = kb.b.ins().fmax(old, v);
            kb.b.def_var(m, n);
        });
        let mx = kb.b.use_var(m);
        let zf = kb.fconst(0.0, 1);
        let s = kb.var(zf);
        kb.for_range(zero, l, 1, |kb, k| {
            let i = at(kb, k);
            let p = kb.addr(xp, i, e);
            let v = kb.load_elem(dt, p);
            let d = kb.b.ins().fsub(v, mx);
            let ex = exp(kb, d);
            let q = kb.addr(yp, i, e);
            kb.store_elem(DType::F32, ex, q);
            let old = kb.b.use_var(s);
            let n = kb.b.ins().fadd(old, ex);
            kb.b.def_var(s, n);
        });
        let sum = kb.b.use_var(s);
        let one = kb.fconst(1.0, 1);
        let r = kb.b.ins().fdiv(one, sum);
        kb.for_range(zero, l, 1, |kb, k| {
            let i = at(kb, k);
            let q = kb.addr(yp, i, e);
            let ex = kb.load_elem(DType::F32, q);
            let p = kb.b.ins().fmul(ex, r);
            kb.store_elem(dt, p, q);
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_broadcast_right_aligned() {
        assert_eq!(broadcast_strides(&[384], &[2, 3, 384]), vec![0, 0, 1]);
        assert_eq!(broadcast_strides(&[3, 1], &[2, 3, 5]), vec![0, 1, 0]);
        assert_eq!(broadcast_strides(&[2, 3, 5], &[2, 3, 5]), vec![15, 5, 1]);
        assert_eq!(broadcast_strides(&[1], &[4]), vec![0]);
    }

    #[test]
    fn row_parameters_are_classified() {
        assert!(row_param(&[384], &[1]) == RowParam::Contiguous);
        assert!(row_param(&[3, 5], &[5, 1]) == RowParam::Contiguous);
        assert!(row_param(&[3, 5], &[0, 1]) == RowParam::General);
        assert!(row_param(&[3, 5], &[1, 0]) == RowParam::General);
        assert!(row_param(&[3, 5], &[0, 0]) == RowParam::Splat);
        // Size-1 axes do not matter.
        assert!(row_param(&[1, 8], &[0, 1]) == RowParam::Contiguous);
        assert!(row_param(&[8, 1], &[0, 0]) == RowParam::Splat);
    }

    #[test]
    fn lowest_values() {
        assert_eq!(int_min(DType::I8), -128);
        assert_eq!(int_min(DType::U8), 0);
        assert_eq!(int_min(DType::Bool), 0);
        assert_eq!(int_min(DType::I32), i64::from(i32::MIN));
        assert_eq!(int_min(DType::I64), i64::MIN);
    }
}
