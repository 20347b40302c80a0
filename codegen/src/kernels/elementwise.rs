//! Elementwise kernels: Unary, Binary, Clip, Where, Cast, FloatClass, over broadcast loop nests.
//!
//! Every kernel walks the output once in row-major order ([`broadcast_nest`] merges the axes
//! that all operands walk contiguously or broadcast together), reading element `i` of each
//! operand before writing element `i` of the output, so the output may alias a same-shaped
//! input (the memory planner's in-place reuse).
//!
//! Semantics follow the reference interpreter (`slmtvm_ir::ops::elementwise`): floats (f32,
//! f16) are computed in f32 and rounded to the output dtype; integers and bools in i64 with
//! wrapping arithmetic, narrowed on store. Integer division by zero (which the interpreter
//! refuses) gives 0, and `i64::MIN / -1` wraps to `i64::MIN`, so no kernel traps; `0` raised to
//! a negative integer power gives 0 likewise. Integer Mod by zero gives 0 (as the interpreter
//! and the ONNX reference do); float Mod is an exact `fmod` (a loop over the exponent
//! difference in f64), by zero NaN.
//!
//! Where the kernels differ from the interpreter (which computes math functions in f64):
//! - Exp, Log, Erf, Tanh, Sin, Cos, Sigmoid, Silu and Gelu use [`math`]'s f32 approximations (a
//!   few ulp; Sin/Cos accurate for `|x| < 12867`, see its table), HardSigmoid computes
//!   `alpha·x + beta` in f32 (fused where the target has fma).
//! - Pow with a float operand uses [`math::pow`] (C `pow` semantics, a few ulp), or for a
//!   constant exponent 1, 2, 3, -1 or 0.5 a multiplication, division or square root. An
//!   integer base with a float exponent goes through f64: integral and half-integral exponents
//!   by square-and-multiply of `b` or `√b` (exact while the power is below `2^53`), other
//!   exponents through [`math::pow`], so a truncated result may be one less than the
//!   interpreter's when such a power is an exact integer (`8^(1/3)`).
//!
//! Vector code (`F32X4`/`I32X4`, only when [`crate::emit::Caps::vector`]) covers the f32
//! paths of Unary, Binary arithmetic and Pow, and Clip; i32 Add/Sub/Mul, Neg/Abs/Relu and
//! Clip; Where and copies of 4-byte elements, with scalar tails; operands broadcast along the
//! innermost loop are splat. Everything else is scalar.

use super::NodeCtx;
use crate::Result;
use crate::asm::AsmFn;
use crate::asm::vmath::{Map, VFn};
use crate::emit::math;
use crate::emit::{Kb, lane_flags};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};
use slmtvm_ir::ops::{BinaryOp, FloatClass, Shrink, UnaryOp};
use slmtvm_ir::{DType, Op};

/// Dims and per-operand element strides of an elementwise loop nest, after merging adjacent
/// axes that every operand walks contiguously (or broadcasts) together.
#[derive(Clone, Debug, PartialEq)]
pub struct Nest {
    /// Loop extents, outermost first.
    pub dims: Vec<usize>,
    /// For each operand, its element stride per loop (0 = broadcast).
    pub strides: Vec<Vec<usize>>,
    /// The output axis each loop starts at (the outermost of the axes merged into it).
    pub first: Vec<usize>,
}

/// The loop nest that walks `out` dims, with each operand of `shapes` broadcast into it.
pub fn broadcast_nest(out: &[usize], shapes: &[&[usize]]) -> Nest {
    broadcast_nest_with(out, shapes, &[])
}

/// [`broadcast_nest`], where every axis `a` with `own_loop[a]` starts a loop of its own (is not
/// merged into the axis before it; a symbolic axis, whose loop takes its run-time extent).
pub fn broadcast_nest_with(out: &[usize], shapes: &[&[usize]], own_loop: &[bool]) -> Nest {
    let r = out.len();
    let strides: Vec<Vec<usize>> = shapes
        .iter()
        .map(|s| {
            let mut st = vec![0; r];
            let mut acc = 1;
            for k in 0..s.len().min(r) {
                let axis = r - 1 - k;
                let d = s[s.len() - 1 - k];
                st[axis] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        })
        .collect();
    // Merge axis a into a+1 when, for every operand, stride[a] == stride[a+1] * dims[a+1].
    let mut dims: Vec<usize> = Vec::new();
    let mut first: Vec<usize> = Vec::new();
    let mut merged: Vec<Vec<usize>> = vec![Vec::new(); shapes.len()];
    for a in 0..r {
        if out[a] == 1 {
            continue;
        }
        let can_merge = !dims.is_empty()
            && !own_loop.get(a).copied().unwrap_or(false)
            && strides.iter().zip(&merged).all(|(st, m)| m[m.len() - 1] == st[a] * out[a]);
        if can_merge {
            let last = dims.len() - 1;
            dims[last] *= out[a];
            for (st, m) in strides.iter().zip(merged.iter_mut()) {
                let l = m.len() - 1;
                m[l] = st[a];
            }
        } else {
            dims.push(out[a]);
            first.push(a);
            for (st, m) in strides.iter().zip(merged.iter_mut()) {
                m.push(st[a]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        first.push(0);
        merged.iter_mut().for_each(|m| m.push(0));
    }
    Nest { dims, strides: merged, first }
}

/// One operand of a walk: base pointer, dims (broadcast into the output's), element bytes and
/// the axes it broadcasts along only when their run-time extent is 1 ([`runtime_ones`]).
#[derive(Clone)]
struct Operand<'a> {
    ptr: Value,
    dims: &'a [usize],
    elem: usize,
    ones: Vec<RunOne>,
}

impl<'a> Operand<'a> {
    /// An operand whose dims the walk takes as they are (an output, or an input of static
    /// dims or the output's).
    fn new(ptr: Value, dims: &'a [usize], elem: usize) -> Operand<'a> {
        Operand { ptr, dims, elem, ones: vec![] }
    }

    /// Input `i` of `cx` of `dims` (its physical dims), with its run-time broadcasts.
    fn input(kb: &mut Kb, cx: &NodeCtx, i: usize, dims: &'a [usize], elem: usize) -> Result<Operand<'a>> {
        Ok(Operand { ptr: cx.in_ptr(i)?, dims, elem, ones: runtime_ones(kb, cx, i)? })
    }
}

/// An axis along which an operand broadcasts only at run time: its dim is symbolic and not the
/// output's, so its run-time extent is either 1 (the operand broadcasts) or the output's.
#[derive(Clone, Copy, Debug)]
struct RunOne {
    /// The output axis.
    axis: usize,
    /// True (non-zero) when the operand's run-time extent there is 1.
    is_one: Value,
    /// The operand's last physical index along the axis (reads are clamped to it).
    last: i64,
}

/// The [`RunOne`]s of input `i`: every symbolic dim that is not the output's (an operand dim
/// `s` against a static output dim `4`, which inference gives when `s` broadcasts against 4).
fn runtime_ones(kb: &mut Kb, cx: &NodeCtx, i: usize) -> Result<Vec<RunOne>> {
    let Some(v) = cx.in_id(i) else { return Ok(vec![]) };
    let (dims, out) = (&cx.g.ty(v).shape.0, &cx.g.ty(cx.out_id(0)).shape.0);
    let phys = cx.dims(v)?;
    let pad = out.len().saturating_sub(dims.len());
    let mut ones = Vec::new();
    for (k, d) in dims.iter().enumerate() {
        if d.known().is_none() && out.get(pad + k).is_none_or(|o| o.poly() != d.poly()) {
            let n = cx.extent(kb, v, k)?;
            let is_one = kb.b.ins().icmp_imm_s(IntCC::Equal, n, 1);
            ones.push(RunOne { axis: pad + k, is_one, last: phys[k].saturating_sub(1) as i64 });
        }
    }
    Ok(ones)
}

/// One step of a walk: each operand's element address, the lanes (4 for a vector step, 1 for
/// a scalar one) and, per operand, whether it is broadcast along the innermost loop (so a
/// vector step must splat its one element).
struct Step<'a> {
    at: &'a [Value],
    lanes: usize,
    bcast: &'a [bool],
}

/// How the innermost vector loop of a walk is unrolled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unroll {
    /// One vector step per loop step.
    One,
    /// Two vector steps per loop step, one after the other: for bodies cheap next to the loop's
    /// own counter, compare and branches (not the longer polynomials, whose two copies spill
    /// on x86's 16 vector registers: Erf ran 9 % slower twice unrolled).
    Twice,
}

/// Emits the loops over `out` dims with `ops` (the output last) broadcast into them, calling
/// `body` once per step. Vector steps are used when `vector` is set (and the target has
/// vectors) and every operand is contiguous or broadcast along the innermost loop. An empty
/// output emits nothing; the first error of `body` is returned.
fn walk(
    kb: &mut Kb,
    runs: &Runs,
    out: &[usize],
    ops: &[Operand],
    vector: bool,
    body: &mut dyn FnMut(&mut Kb, &Step) -> Result<()>,
) -> Result<()> {
    walk_with(kb, runs, out, ops, vector, Unroll::One, body)
}

/// [`walk`], with the innermost vector loop unrolled as `unroll` says.
fn walk_with(
    kb: &mut Kb,
    runs: &Runs,
    out: &[usize],
    ops: &[Operand],
    vector: bool,
    unroll: Unroll,
    body: &mut dyn FnMut(&mut Kb, &Step) -> Result<()>,
) -> Result<()> {
    if out.contains(&0) {
        return Ok(());
    }
    let shapes: Vec<&[usize]> = ops.iter().map(|o| o.dims).collect();
    let mut own: Vec<bool> = (0..out.len()).map(|a| runs.get(a).is_some_and(Option::is_some)).collect();
    // An axis broadcast at run time is a loop of its own: neither merged into the loop outside
    // it nor holding the next axis (of more than one element) merged into it.
    for r in ops.iter().flat_map(|o| &o.ones) {
        own[r.axis] = true;
        if let Some(next) = (r.axis + 1..out.len()).find(|&a| out[a] != 1) {
            own[next] = true;
        }
    }
    let nest = broadcast_nest_with(out, &shapes, &own);
    let ones: Vec<Vec<Option<RunOne>>> = nest
        .first
        .iter()
        .map(|&a| ops.iter().map(|o| o.ones.iter().find(|r| r.axis == a).copied()).collect())
        .collect();
    // A loop that starts at a symbolic axis runs over its run-time extent (times the static
    // axes merged into the loop).
    let counts: Vec<Option<Value>> = nest
        .first
        .iter()
        .zip(&nest.dims)
        .map(|(&a, &d)| {
            let v = runs.get(a).copied().flatten()?;
            let scale = d / out[a].max(1);
            Some(if scale == 1 { v } else { kb.b.ins().imul_imm_s(v, scale as i64) })
        })
        .collect();
    let bases: Vec<Value> = ops.iter().map(|o| o.ptr).collect();
    let elems: Vec<usize> = ops.iter().map(|o| o.elem).collect();
    let bcast: Vec<bool> = nest.strides.iter().map(|s| s[s.len() - 1] == 0).collect();
    let mut err = None;
    let mut f = |kb: &mut Kb, at: &[Value], lanes: usize| {
        if err.is_none()
            && let Err(e) = body(kb, &Step { at, lanes, bcast: &bcast })
        {
            err = Some(e);
        }
    };
    let w = Walk { nest: &nest, elems: &elems, vector: vector && kb.caps.vector, counts, unroll, ones };
    w.level(kb, 0, bases, &mut f);
    err.map_or(Ok(()), Err)
}

struct Walk<'a> {
    nest: &'a Nest,
    elems: &'a [usize],
    vector: bool,
    /// Run-time trip count of each loop that starts at a symbolic axis.
    counts: Vec<Option<Value>>,
    /// How the static innermost vector loop is unrolled.
    unroll: Unroll,
    /// Per loop, per operand: the run-time broadcast of the loop's axis, if any.
    ones: Vec<Vec<Option<RunOne>>>,
}

/// The run-time extent of every symbolic axis of the output (None for static axes).
type Runs = Vec<Option<Value>>;

/// [`Runs`] of the node's output.
fn outer_run(kb: &mut Kb, cx: &NodeCtx) -> Result<Runs> {
    let out = cx.out_id(0);
    let dims = cx.g.ty(out).shape.0.clone();
    dims.iter()
        .enumerate()
        .map(|(a, d)| if d.known().is_none() { cx.extent(kb, out, a).map(Some) } else { Ok(None) })
        .collect()
}

impl Walk<'_> {
    /// Each operand's address at index `i` of loop `level` (`strides` its strides there): an
    /// operand broadcast at run time along the loop stays at index 0 when its extent is 1.
    fn offsets(&self, kb: &mut Kb, level: usize, bases: &[Value], strides: &[usize], i: Value) -> Vec<Value> {
        let mut at = Vec::with_capacity(bases.len());
        for (k, ((&b, &s), &e)) in bases.iter().zip(strides).zip(self.elems).enumerate() {
            if s == 0 {
                at.push(b);
                continue;
            }
            let idx = match self.ones[level][k] {
                Some(r) => {
                    let last = kb.iconst(r.last);
                    let j = kb.b.ins().umin(i, last);
                    let zero = kb.iconst(0);
                    kb.b.ins().select(r.is_one, zero, j)
                }
                None => i,
            };
            at.push(kb.addr(b, idx, s * e));
        }
        at
    }

    /// True when loop `level` may take vector steps: every operand contiguous or broadcast
    /// along it, none broadcast at run time.
    fn vectorizable(&self, level: usize, strides: &[usize]) -> bool {
        self.vector && strides.iter().all(|&s| s <= 1) && self.ones[level].iter().all(Option::is_none)
    }

    fn level(&self, kb: &mut Kb, level: usize, bases: Vec<Value>, body: &mut dyn FnMut(&mut Kb, &[Value], usize)) {
        let n = self.nest.dims[level];
        let strides: Vec<usize> = self.nest.strides.iter().map(|s| s[level]).collect();
        if let Some(count) = self.counts[level] {
            return self.runtime_level(kb, level, count, bases, &strides, body);
        }
        if level + 1 < self.nest.dims.len() {
            kb.for_const(0, n as i64, 1, |kb, i| {
                let next = self.offsets(kb, level, &bases, &strides, i);
                self.level(kb, level + 1, next, body);
            });
            return;
        }
        // Innermost loop: vector steps where every operand is contiguous or broadcast.
        let vectorizable = self.vectorizable(level, &strides);
        let vec_end = if vectorizable { n / 4 * 4 } else { 0 };
        // Two vectors a loop step while 8 remain (see [`Unroll`]), then one.
        let pair_end = if vectorizable && self.unroll == Unroll::Twice { n / 8 * 8 } else { 0 };
        if pair_end > 0 {
            kb.for_const(0, pair_end as i64, 8, |kb, i| {
                for k in 0..2 {
                    let ik = if k == 0 { i } else { kb.b.ins().iadd_imm_s(i, 4) };
                    let at = self.offsets(kb, level, &bases, &strides, ik);
                    body(kb, &at, 4);
                }
            });
        }
        if vec_end > pair_end {
            kb.for_const(pair_end as i64, vec_end as i64, 4, |kb, i| {
                let at = self.offsets(kb, level, &bases, &strides, i);
                body(kb, &at, 4);
            });
        }
        if vec_end < n {
            if n == 1 {
                body(kb, &bases, 1);
                return;
            }
            kb.for_const(vec_end as i64, n as i64, 1, |kb, i| {
                let at = self.offsets(kb, level, &bases, &strides, i);
                body(kb, &at, 1);
            });
        }
    }
}

impl Walk<'_> {
    /// Loop `level` with a run-time trip count: an outer loop, or (the innermost) vector steps
    /// while 4 remain, then single elements.
    fn runtime_level(
        &self,
        kb: &mut Kb,
        level: usize,
        count: Value,
        bases: Vec<Value>,
        strides: &[usize],
        body: &mut dyn FnMut(&mut Kb, &[Value], usize),
    ) {
        let zero = kb.iconst(0);
        if level + 1 < self.nest.dims.len() {
            kb.for_range(zero, count, 1, |kb, i| {
                let next = self.offsets(kb, level, &bases, strides, i);
                self.level(kb, level + 1, next, body);
            });
            return;
        }
        let vectorizable = self.vectorizable(level, strides);
        kb.for_lanes(zero, count, vectorizable, &mut |kb, i, lanes| {
            let at = self.offsets(kb, level, &bases, strides, i);
            body(kb, &at, lanes);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Loads, stores and small helpers.

/// Loads operand `k` of `step` in its compute type: for a vector step 4 lanes of an f32 or
/// i32 operand (`F32X4` / `I32X4`: a vector load, or a splat of a broadcast element), else
/// one element widened by [`Kb::load_elem`].
fn load_in(kb: &mut Kb, dt: DType, step: &Step, k: usize) -> Value {
    let addr = step.at[k];
    if step.lanes == 4 {
        let (st, vt) = if dt == DType::I32 { (types::I32, types::I32X4) } else { (types::F32, types::F32X4) };
        if step.bcast[k] {
            let s = kb.load(st, addr, 0);
            kb.b.ins().splat(vt, s)
        } else {
            kb.load(vt, addr, 0)
        }
    } else {
        kb.load_elem(dt, addr)
    }
}

/// Stores the result of a step at operand `k` (the output): a vector, or one element.
fn store_out(kb: &mut Kb, dt: DType, v: Value, step: &Step, k: usize) {
    if step.lanes == 4 { kb.store(v, step.at[k], 0) } else { kb.store_elem(dt, v, step.at[k]) }
}

/// `v` splat to 4 lanes when `lanes == 4`.
fn splat_to(kb: &mut Kb, v: Value, lanes: usize) -> Value {
    if lanes == 4 { kb.b.ins().splat(types::F32X4, v) } else { v }
}

/// An f32 constant with the lanes of `like`.
fn fconst_like(kb: &mut Kb, v: f32, like: Value) -> Value {
    let lanes = kb.lanes(like);
    kb.fconst(v, lanes)
}

/// `c ? a : b` for a float comparison result `c` (an `I8` for scalars, a lane mask for
/// vectors).
fn fsel(kb: &mut Kb, c: Value, a: Value, b: Value) -> Value {
    if kb.lanes(a) == 1 {
        kb.b.ins().select(c, a, b)
    } else {
        let ty = kb.ty(a);
        let m = kb.b.ins().bitcast(ty, lane_flags(), c);
        kb.b.ins().bitselect(m, a, b)
    }
}

/// `v` clamped to `lo..=hi` as the reference does: `v < lo` gives `lo`, then `v > hi` gives
/// `hi` (so `hi` wins when `lo > hi`, and NaN stays NaN). Either bound may be absent.
fn fclamp(kb: &mut Kb, v: Value, lo: Option<Value>, hi: Option<Value>) -> Value {
    let mut v = v;
    if let Some(lo) = lo {
        let c = kb.b.ins().fcmp(FloatCC::LessThan, v, lo);
        v = fsel(kb, c, lo, v);
    }
    if let Some(hi) = hi {
        let c = kb.b.ins().fcmp(FloatCC::GreaterThan, v, hi);
        v = fsel(kb, c, hi, v);
    }
    v
}

/// [`fclamp`] for i64 values.
fn iclamp(kb: &mut Kb, v: Value, lo: Option<Value>, hi: Option<Value>) -> Value {
    let mut v = v;
    if let Some(lo) = lo {
        let c = kb.b.ins().icmp(IntCC::SignedLessThan, v, lo);
        v = kb.b.ins().select(c, lo, v);
    }
    if let Some(hi) = hi {
        let c = kb.b.ins().icmp(IntCC::SignedGreaterThan, v, hi);
        v = kb.b.ins().select(c, hi, v);
    }
    v
}

/// A condition (`I8` 0/1) as an I64 0/1, the compute type of bool.
fn bool64(kb: &mut Kb, c: Value) -> Value {
    kb.b.ins().uextend(types::I64, c)
}

/// An I64 bool compute value normalized to an `I8` condition (any nonzero is true).
fn truthy(kb: &mut Kb, v: Value) -> Value {
    kb.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
}

/// `x / y` on i64 values, truncating toward zero; `y == 0` gives 0 and `y == -1` gives the
/// wrapping negation (so `i64::MIN / -1` does not trap).
fn sdiv_safe(kb: &mut Kb, x: Value, y: Value) -> Value {
    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
    let minus1 = kb.b.ins().icmp_imm_s(IntCC::Equal, y, -1);
    let special = kb.b.ins().bor(zero, minus1);
    let one = kb.b.ins().iconst(types::I64, 1);
    let d = kb.b.ins().select(special, one, y);
    let q = kb.b.ins().sdiv(x, d);
    let neg = kb.b.ins().ineg(x);
    let q = kb.b.ins().select(minus1, neg, q);
    let z = kb.b.ins().iconst(types::I64, 0);
    kb.b.ins().select(zero, z, q)
}

/// `b ^ e` by square-and-multiply over the bits of `e` (an i64, `>= 0`), in the type of `b`
/// (I64 wrapping, or F64).
fn square_multiply(kb: &mut Kb, b: Value, e: Value) -> Value {
    let ty = kb.ty(b);
    let float = ty == types::F64;
    let one = if float { kb.b.ins().f64const(1.0) } else { kb.b.ins().iconst(types::I64, 1) };
    let header = kb.b.create_block();
    let body = kb.b.create_block();
    let exit = kb.b.create_block();
    kb.b.append_block_param(header, ty);
    kb.b.append_block_param(header, ty);
    kb.b.append_block_param(header, types::I64);
    kb.b.append_block_param(exit, ty);
    kb.b.ins().jump(header, &[one.into(), b.into(), e.into()]);
    kb.b.switch_to_block(header);
    let p = kb.b.block_params(header).to_vec();
    let (r, bb, ee) = (p[0], p[1], p[2]);
    kb.b.ins().brif(ee, body, &[], exit, &[r.into()]);
    kb.b.switch_to_block(body);
    let bit = kb.b.ins().band_imm_u(ee, 1);
    let (m, b2) = if float {
        (kb.b.ins().fmul(r, bb), kb.b.ins().fmul(bb, bb))
    } else {
        (kb.b.ins().imul(r, bb), kb.b.ins().imul(bb, bb))
    };
    let r2 = kb.b.ins().select(bit, m, r);
    let e2 = kb.b.ins().ushr_imm_u(ee, 1);
    kb.b.ins().jump(header, &[r2.into(), b2.into(), e2.into()]);
    kb.b.switch_to_block(exit);
    kb.b.block_params(exit)[0]
}

/// `b ^ e` on i64 values as the reference's `int_pow`: wrapping exponentiation by squaring
/// for `e >= 0`; for `e < 0`, 1 for `b == 1`, ±1 for `b == -1`, else 0 (also for `b == 0`,
/// which the interpreter refuses).
fn int_pow(kb: &mut Kb, b: Value, e: Value) -> Value {
    let i64t = types::I64;
    let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, e, 0);
    let z = kb.b.ins().iconst(i64t, 0);
    let e0 = kb.b.ins().select(neg, z, e);
    let pos = square_multiply(kb, b, e0);
    // Negative exponents.
    let one = kb.b.ins().iconst(i64t, 1);
    let is1 = kb.b.ins().icmp_imm_s(IntCC::Equal, b, 1);
    let ism1 = kb.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
    let odd = kb.b.ins().band_imm_u(e, 1);
    let m1 = kb.b.ins().iconst(i64t, -1);
    let sign = kb.b.ins().select(odd, m1, one);
    let r = kb.b.ins().select(ism1, sign, z);
    let r = kb.b.ins().select(is1, one, r);
    kb.b.ins().select(neg, r, pos)
}

/// `b ^ y` for an integer base (i64) and an f32 exponent, truncated to `to` (I32 or I64) as
/// the reference's f64 `powf` then Cast: integer and half-integer exponents (`|y| < 2^30`)
/// by square-and-multiply in f64 of `b` or `√b` (exact while the power is below `2^53`),
/// other exponents by [`math::pow`].
fn int_base_float_pow(kb: &mut Kb, b: Value, y: Value, to: DType) -> Value {
    let bf = kb.b.ins().fcvt_from_sint(types::F64, b);
    // Is 2y an integer n2 (|n2| < 2^31)? Then b^y = b^(n2/2), or √b^n2 for an odd n2.
    let y2 = kb.b.ins().fadd(y, y);
    let ay2 = kb.b.ins().fabs(y2);
    let lim = kb.b.ins().f32const(2_147_483_648.0);
    let small = kb.b.ins().fcmp(FloatCC::LessThan, ay2, lim);
    let n2 = kb.b.ins().fcvt_to_sint_sat(types::I64, y2);
    let back = kb.b.ins().fcvt_from_sint(types::F32, n2);
    let same = kb.b.ins().fcmp(FloatCC::Equal, back, y2);
    let halves = kb.b.ins().band(small, same);
    let odd = kb.b.ins().band_imm_u(n2, 1);
    let sq = kb.b.ins().sqrt(bf);
    let base = kb.b.ins().select(odd, sq, bf);
    let half_n = kb.b.ins().sshr_imm_u(n2, 1);
    let n = kb.b.ins().select(odd, n2, half_n);
    let zero = kb.b.ins().iconst(types::I64, 0);
    let n = kb.b.ins().select(halves, n, zero);
    let an = kb.b.ins().iabs(n);
    let p = square_multiply(kb, base, an);
    let one = kb.b.ins().f64const(1.0);
    let inv = kb.b.ins().fdiv(one, p);
    let negn = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, n, 0);
    let pi = kb.b.ins().select(negn, inv, p);
    // Other exponents.
    let xf = kb.b.ins().fcvt_from_sint(types::F32, b);
    let pf = math::pow(kb, xf, y);
    let pf = kb.b.ins().fpromote(types::F64, pf);
    let r = kb.b.ins().select(halves, pi, pf);
    // Truncate as Cast from f64 does.
    let (ty, lo, hi, oob) = if to == DType::I64 {
        (types::I64, -9_223_372_036_854_775_808.0, 9_223_372_036_854_775_808.0, i64::MIN)
    } else {
        (types::I32, -2_147_483_649.0, 2_147_483_648.0, i64::from(i32::MIN))
    };
    let (lo, hi) = (kb.b.ins().f64const(lo), kb.b.ins().f64const(hi));
    let cond_lo = if to == DType::I64 { FloatCC::GreaterThanOrEqual } else { FloatCC::GreaterThan };
    let ge = kb.b.ins().fcmp(cond_lo, r, lo);
    let lt = kb.b.ins().fcmp(FloatCC::LessThan, r, hi);
    let ok = kb.b.ins().band(ge, lt);
    let c = kb.b.ins().fcvt_to_sint_sat(ty, r);
    let c = if ty == types::I64 { c } else { kb.b.ins().sextend(types::I64, c) };
    let m = kb.b.ins().iconst(types::I64, oob);
    kb.b.ins().select(ok, c, m)
}

/// A compute value of `from` converted to the compute value of `to` with the reference's
/// Cast semantics (`cast_f64` / `cast_i64`): floats to i32/i8/u8 truncate toward zero with NaN
/// and out-of-range values giving `i32::MIN` (i8/u8 then keep its low byte when stored), to
/// i64 likewise with `i64::MIN`; floats to bool are `x != 0` (NaN true); integers to floats
/// round to nearest even; integers wrap when stored.
fn cast_value(kb: &mut Kb, from: DType, to: DType, v: Value) -> Value {
    match (from.is_float(), to) {
        (true, DType::F32 | DType::F16) => v,
        (true, DType::Bool) => {
            let z = kb.b.ins().f32const(0.0);
            let c = kb.b.ins().fcmp(FloatCC::NotEqual, v, z);
            bool64(kb, c)
        }
        (true, DType::I64) => {
            let two63 = 9_223_372_036_854_775_808.0f32;
            trunc_float(kb, v, types::I64, two63, i64::MIN)
        }
        (true, DType::I32 | DType::I8 | DType::U8) => {
            trunc_float(kb, v, types::I32, 2_147_483_648.0, i64::from(i32::MIN))
        }
        (false, DType::F32 | DType::F16) => kb.b.ins().fcvt_from_sint(types::F32, v),
        (false, DType::Bool) => {
            let c = truthy(kb, v);
            bool64(kb, c)
        }
        (false, _) => v,
    }
}

/// An f32 truncated toward zero to an integer of type `ty` (I32 or I64), as an i64; NaN and
/// values outside `-lim..lim` give `oob`.
fn trunc_float(kb: &mut Kb, v: Value, ty: Type, lim: f32, oob: i64) -> Value {
    let lo = kb.b.ins().f32const(-lim);
    let hi = kb.b.ins().f32const(lim);
    let ge = kb.b.ins().fcmp(FloatCC::GreaterThanOrEqual, v, lo);
    let lt = kb.b.ins().fcmp(FloatCC::LessThan, v, hi);
    let ok = kb.b.ins().band(ge, lt);
    let c = kb.b.ins().fcvt_to_sint_sat(ty, v);
    let c = if ty == types::I64 { c } else { kb.b.ins().sextend(types::I64, c) };
    let m = kb.b.ins().iconst(types::I64, oob);
    kb.b.ins().select(ok, c, m)
}

// ---------------------------------------------------------------------------------------------
// Operators on compute values.

/// `op` on an f32 (or F32X4) value (math functions on [`math`]'s approximations).
pub(crate) fn unary_float(kb: &mut Kb, op: &UnaryOp, x: Value) -> Value {
    match op {
        UnaryOp::Identity | UnaryOp::Not => x,
        UnaryOp::Neg => kb.b.ins().fneg(x),
        UnaryOp::Abs => kb.b.ins().fabs(x),
        UnaryOp::Sqrt => kb.b.ins().sqrt(x),
        UnaryOp::Reciprocal => {
            let one = fconst_like(kb, 1.0, x);
            kb.b.ins().fdiv(one, x)
        }
        UnaryOp::Relu => {
            // x < 0 ? 0 : x keeps NaN and -0.0, as the reference does.
            let zero = fconst_like(kb, 0.0, x);
            fclamp(kb, x, Some(zero), None)
        }
        UnaryOp::HardSigmoid { alpha, beta } => {
            let a = fconst_like(kb, *alpha, x);
            let b = fconst_like(kb, *beta, x);
            let t = kb.mul_add(a, x, b);
            let (zero, one) = (fconst_like(kb, 0.0, x), fconst_like(kb, 1.0, x));
            fclamp(kb, t, Some(zero), Some(one))
        }
        UnaryOp::Exp => math::exp(kb, x),
        UnaryOp::Log => math::log(kb, x),
        UnaryOp::Tanh => math::tanh(kb, x),
        UnaryOp::Sigmoid => math::sigmoid(kb, x),
        UnaryOp::Silu => math::silu(kb, x),
        UnaryOp::Erf => math::erf(kb, x),
        UnaryOp::Sin => math::sin(kb, x),
        UnaryOp::Cos => math::cos(kb, x),
        UnaryOp::Gelu { tanh_approx } => gelu(kb, x, *tanh_approx),
    }
}

/// GELU: `0.5·x·(1 + erf(x/√2))`, or with the tanh approximation
/// Whether `op`'s vector body is short enough to unroll twice ([`Unroll::Twice`]): no
/// polynomial but [`math::exp`]'s.
fn cheap_unary(op: &UnaryOp) -> bool {
    !matches!(
        op,
        UnaryOp::Erf
            | UnaryOp::Gelu { .. }
            | UnaryOp::Tanh
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Log
            | UnaryOp::Sigmoid
            | UnaryOp::Silu
    )
}

/// `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`.
fn gelu(kb: &mut Kb, x: Value, tanh_approx: bool) -> Value {
    let t = if tanh_approx {
        let x2 = kb.b.ins().fmul(x, x);
        let (c, one) = (fconst_like(kb, 0.044715, x), fconst_like(kb, 1.0, x));
        let p = kb.mul_add(c, x2, one);
        let k = fconst_like(kb, (2.0 / std::f32::consts::PI).sqrt(), x);
        let kx = kb.b.ins().fmul(k, x);
        let inner = kb.b.ins().fmul(kx, p);
        math::tanh(kb, inner)
    } else {
        let k = fconst_like(kb, std::f32::consts::FRAC_1_SQRT_2, x);
        let kx = kb.b.ins().fmul(k, x);
        math::erf(kb, kx)
    };
    gelu_tail(kb, x, t)
}

/// `0.5·x·(1 + t)`.
fn gelu_tail(kb: &mut Kb, x: Value, t: Value) -> Value {
    let (half, one) = (fconst_like(kb, 0.5, x), fconst_like(kb, 1.0, x));
    let hx = kb.b.ins().fmul(half, x);
    let s = kb.b.ins().fadd(one, t);
    kb.b.ins().fmul(hx, s)
}

/// `op` on an i64 value (integer dtypes).
fn unary_int(kb: &mut Kb, op: &UnaryOp, x: Value) -> Value {
    match op {
        UnaryOp::Neg => kb.b.ins().ineg(x),
        UnaryOp::Abs => {
            let n = kb.b.ins().ineg(x);
            let c = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, x, 0);
            kb.b.ins().select(c, n, x)
        }
        UnaryOp::Relu => {
            let z = kb.b.ins().iconst(types::I64, 0);
            iclamp(kb, x, Some(z), None)
        }
        _ => x,
    }
}

/// Neg, Abs or Relu on an `I32X4` (wrapping, as the i64 path narrowed to i32).
fn unary_i32x4(kb: &mut Kb, op: &UnaryOp, x: Value) -> Value {
    match op {
        UnaryOp::Neg => kb.b.ins().ineg(x),
        UnaryOp::Abs => kb.b.ins().iabs(x),
        _ => {
            let z = kb.b.ins().iconst(types::I32, 0);
            let z = kb.b.ins().splat(types::I32X4, z);
            kb.b.ins().smax(x, z)
        }
    }
}

/// The float comparison of a comparison operator.
fn float_cc(op: &BinaryOp) -> FloatCC {
    match op {
        BinaryOp::Less => FloatCC::LessThan,
        BinaryOp::LessOrEqual => FloatCC::LessThanOrEqual,
        BinaryOp::Greater => FloatCC::GreaterThan,
        BinaryOp::GreaterOrEqual => FloatCC::GreaterThanOrEqual,
        _ => FloatCC::Equal,
    }
}

/// The integer comparison of a comparison operator.
fn int_cc(op: &BinaryOp) -> IntCC {
    match op {
        BinaryOp::Less => IntCC::SignedLessThan,
        BinaryOp::LessOrEqual => IntCC::SignedLessThanOrEqual,
        BinaryOp::Greater => IntCC::SignedGreaterThan,
        BinaryOp::GreaterOrEqual => IntCC::SignedGreaterThanOrEqual,
        _ => IntCC::Equal,
    }
}

/// Arithmetic `op` (Add, Sub, Mul, Div, Max, Min, Mod) on f32 values (or F32X4 ones for all
/// but Mod). Cranelift's `fmax`/`fmin` are IEEE 754-2019 `maximum`/`minimum` (NaN propagates,
/// `-0 < +0`), the reference's semantics.
fn arith_float(kb: &mut Kb, op: &BinaryOp, a: Value, b: Value) -> Value {
    match op {
        BinaryOp::Add => kb.b.ins().fadd(a, b),
        BinaryOp::Sub => kb.b.ins().fsub(a, b),
        BinaryOp::Mul => kb.b.ins().fmul(a, b),
        BinaryOp::Max => kb.b.ins().fmax(a, b),
        BinaryOp::Min => kb.b.ins().fmin(a, b),
        BinaryOp::Mod { fmod } => {
            let r = fmod_f32(kb, a, b);
            if *fmod { r } else { floor_mod_adjust_f32(kb, r, b) }
        }
        _ => kb.b.ins().fdiv(a, b),
    }
}

/// Arithmetic `op` on i64 values (or Add, Sub, Mul, Max, Min on `I32X4`), wrapping; division
/// and remainder by zero give 0.
fn arith_int(kb: &mut Kb, op: &BinaryOp, a: Value, b: Value) -> Value {
    match op {
        BinaryOp::Add => kb.b.ins().iadd(a, b),
        BinaryOp::Sub => kb.b.ins().isub(a, b),
        BinaryOp::Mul => kb.b.ins().imul(a, b),
        BinaryOp::Max | BinaryOp::Min if kb.lanes(a) == 4 => {
            if *op == BinaryOp::Max {
                kb.b.ins().smax(a, b)
            } else {
                kb.b.ins().smin(a, b)
            }
        }
        BinaryOp::Max | BinaryOp::Min => {
            let cc = if *op == BinaryOp::Max { IntCC::SignedGreaterThan } else { IntCC::SignedLessThan };
            let c = kb.b.ins().icmp(cc, a, b);
            kb.b.ins().select(c, a, b)
        }
        BinaryOp::Mod { fmod } => {
            let r = srem_safe(kb, a, b);
            if *fmod {
                r
            } else {
                // Floored: add the divisor to a nonzero remainder of the other sign.
                let rneg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
                let bneg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, b, 0);
                let differ = kb.b.ins().bxor(rneg, bneg);
                let nz = kb.b.ins().icmp_imm_s(IntCC::NotEqual, r, 0);
                let fix = kb.b.ins().band(differ, nz);
                let sum = kb.b.ins().iadd(r, b);
                kb.b.ins().select(fix, sum, r)
            }
        }
        _ => sdiv_safe(kb, a, b),
    }
}

/// `x % y` on i64 values, truncated (the dividend's sign); `y == 0` and `y == -1` give 0 (so
/// neither traps).
fn srem_safe(kb: &mut Kb, x: Value, y: Value) -> Value {
    let zero = kb.b.ins().icmp_imm_s(IntCC::Equal, y, 0);
    let minus1 = kb.b.ins().icmp_imm_s(IntCC::Equal, y, -1);
    let special = kb.b.ins().bor(zero, minus1);
    let one = kb.b.ins().iconst(types::I64, 1);
    let d = kb.b.ins().select(special, one, y);
    kb.b.ins().srem(x, d)
}

/// C `fmod(x, y)` of f32 values, exactly: in f64, `|x|` is reduced by `|y|·2^k` for the
/// largest such multiple below it (each subtraction exact by Sterbenz's lemma) until it is
/// below `|y|`, then takes `x`'s sign. NaN operands, an infinite `x` or `y == 0` give NaN; an
/// infinite `y` gives `x`.
fn fmod_f32(kb: &mut Kb, x: Value, y: Value) -> Value {
    let (f64t, i64t) = (types::F64, types::I64);
    let xd = kb.b.ins().fpromote(f64t, x);
    let yd = kb.b.ins().fpromote(f64t, y);
    let (ax, ay) = (kb.b.ins().fabs(xd), kb.b.ins().fabs(yd));
    let (inf, zero) = (kb.b.ins().f64const(f64::INFINITY), kb.b.ins().f64const(0.0));
    let finite = kb.b.ins().fcmp(FloatCC::LessThan, ax, inf);
    let pos = kb.b.ins().fcmp(FloatCC::GreaterThan, ay, zero);
    let ok = kb.b.ins().band(finite, pos);
    let nan = kb.b.ins().f64const(f64::NAN);
    let r0 = kb.b.ins().select(ok, ax, nan);
    let header = kb.b.create_block();
    let body = kb.b.create_block();
    let exit = kb.b.create_block();
    kb.b.append_block_param(header, f64t);
    kb.b.append_block_param(exit, f64t);
    kb.b.ins().jump(header, &[r0.into()]);
    kb.b.switch_to_block(header);
    let r = kb.b.block_params(header)[0];
    let more = kb.b.ins().fcmp(FloatCC::GreaterThanOrEqual, r, ay);
    kb.b.ins().brif(more, body, &[], exit, &[r.into()]);
    kb.b.switch_to_block(body);
    let rb = kb.b.ins().bitcast(i64t, MemFlagsData::new(), r);
    let yb = kb.b.ins().bitcast(i64t, MemFlagsData::new(), ay);
    let er = kb.b.ins().ushr_imm_u(rb, 52);
    let ey = kb.b.ins().ushr_imm_u(yb, 52);
    let k = kb.b.ins().isub(er, ey);
    let k = kb.b.ins().iadd_imm_s(k, 1023);
    let k = kb.b.ins().ishl_imm_u(k, 52);
    let scale = kb.b.ins().bitcast(f64t, MemFlagsData::new(), k);
    let t = kb.b.ins().fmul(ay, scale);
    let half = kb.b.ins().f64const(0.5);
    let th = kb.b.ins().fmul(t, half);
    let over = kb.b.ins().fcmp(FloatCC::GreaterThan, t, r);
    let t = kb.b.ins().select(over, th, t);
    let r2 = kb.b.ins().fsub(r, t);
    kb.b.ins().jump(header, &[r2.into()]);
    kb.b.switch_to_block(exit);
    let r = kb.b.block_params(exit)[0];
    let r = kb.b.ins().fcopysign(r, xd);
    kb.b.ins().fdemote(types::F32, r)
}

/// The floored remainder from C's `fmod` result `r` and the divisor `y` (f32), as NumPy's
/// `mod`: a zero remainder takes `y`'s sign, a nonzero one of the other sign gets `y` added.
fn floor_mod_adjust_f32(kb: &mut Kb, r: Value, y: Value) -> Value {
    let zero = kb.b.ins().f32const(0.0);
    let is_zero = kb.b.ins().fcmp(FloatCC::Equal, r, zero);
    let yneg = kb.b.ins().fcmp(FloatCC::LessThan, y, zero);
    let rneg = kb.b.ins().fcmp(FloatCC::LessThan, r, zero);
    let differ = kb.b.ins().bxor(yneg, rneg);
    let sum = kb.b.ins().fadd(r, y);
    let adj = kb.b.ins().select(differ, sum, r);
    let signed_zero = kb.b.ins().fcopysign(zero, y);
    kb.b.ins().select(is_zero, signed_zero, adj)
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: every operand dim is the output's, 1, or symbolic ([`NodeCtx::position_wise`];
/// a symbolic dim that is not the output's is read at index 0 when its run-time extent is 1,
/// `runtime_ones`); loops that start at a symbolic axis of the output run to its run-time
/// extent.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    if cx.is_symbolic() {
        cx.position_wise(cx.num_inputs())?;
    }
    match &cx.node.op {
        Op::Unary(u) => emit_unary(kb, cx, u),
        Op::Binary(b) => emit_binary(kb, cx, b),
        Op::Clip(_) => emit_clip(kb, cx),
        Op::Where(_) => emit_where(kb, cx),
        Op::Cast(c) => emit_cast(kb, cx, c.to),
        Op::FloatClass(c) => emit_float_class(kb, cx, c),
        Op::Shrink(sh) => emit_shrink(kb, cx, sh),
        _ => Err(cx.error("not an elementwise operator")),
    }
}

fn emit_unary(kb: &mut Kb, cx: &NodeCtx, op: &UnaryOp) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (dt, out) = (cx.in_dtype(0)?, cx.out_dims(0)?);
    let (x, y) = (cx.in_dims(0)?, cx.out_ptr(0));
    let ops = [Operand::input(kb, cx, 0, &x, dt.size())?, Operand::new(y, &out, dt.size())];
    if *op == UnaryOp::Identity {
        return copy(kb, &r0, &out, &ops);
    }
    // Static f32 exp/erf/tanh/sigmoid/SiLU/GELU with an assembled microkernel: one pass of the
    // assembled vector math over the contiguous elements (the same operations, wider).
    let kernel = kb.caps.schedule.kernel;
    if let (Some(f), DType::F32, false, true) =
        (VFn::of(op), dt, cx.is_symbolic(), kernel != slmtvm_targets::Microkernel::Cranelift)
    {
        let n: usize = out.iter().product();
        let (len, zero) = (kb.iconst(n as i64), kb.iconst(0));
        kb.call_asm(AsmFn::Map(Map { kernel, f, gate: false }), &[ops[0].ptr, len, zero, y, zero, zero]);
        return Ok(());
    }
    let int_vector = dt == DType::I32 && matches!(op, UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu);
    let unroll = if cheap_unary(op) { Unroll::Twice } else { Unroll::One };
    walk_with(kb, &r0, &out, &ops, dt == DType::F32 || int_vector, unroll, &mut |kb, s| {
        let v = load_in(kb, dt, s, 0);
        let r = if s.lanes == 4 && dt == DType::I32 {
            unary_i32x4(kb, op, v)
        } else if dt.is_float() {
            unary_float(kb, op, v)
        } else if *op == UnaryOp::Not {
            let c = kb.b.ins().icmp_imm_s(IntCC::Equal, v, 0);
            bool64(kb, c)
        } else {
            unary_int(kb, op, v)
        };
        store_out(kb, dt, r, s, 1);
        Ok(())
    })
}

/// Expand over symbolic dims: input 0 copied into the output, broadcast along its static 1s and
/// along its symbolic dims whose run-time extent is 1.
pub(crate) fn expand_runtime(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (x, out, elem) = (cx.in_dims(0)?, cx.out_dims(0)?, cx.in_dtype(0)?.size());
    if cx.out_dtype(0).size() != elem {
        return Err(cx.error("the output must share the input's dtype"));
    }
    let ops = [Operand::input(kb, cx, 0, &x, elem)?, Operand::new(cx.out_ptr(0), &out, elem)];
    copy(kb, &r0, &out, &ops)
}

/// Copies operand 0 into operand 1 (same dtype; operand 0 broadcast into operand 1's dims),
/// raw bits.
fn copy(kb: &mut Kb, r0: &Runs, out: &[usize], ops: &[Operand]) -> Result<()> {
    let elem = ops[0].elem;
    walk(kb, r0, out, ops, elem == 4, &mut |kb, s| {
        let v = if s.lanes == 4 && s.bcast[0] {
            let x = kb.load(types::I32, s.at[0], 0);
            kb.b.ins().splat(types::I32X4, x)
        } else {
            kb.load(if s.lanes == 4 { types::I32X4 } else { raw_type(elem) }, s.at[0], 0)
        };
        kb.store(v, s.at[1], 0);
        Ok(())
    })
}

/// The integer type of an element of `bytes` bytes.
fn raw_type(bytes: usize) -> Type {
    match bytes {
        1 => types::I8,
        2 => types::I16,
        4 => types::I32,
        _ => types::I64,
    }
}

fn emit_binary(kb: &mut Kb, cx: &NodeCtx, op: &BinaryOp) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (da, db, dy) = (cx.in_dtype(0)?, cx.in_dtype(1)?, cx.out_dtype(0));
    let (a, b, out) = (cx.in_dims(0)?, cx.in_dims(1)?, cx.out_dims(0)?);
    let ops = [
        Operand::input(kb, cx, 0, &a, da.size())?,
        Operand::input(kb, cx, 1, &b, db.size())?,
        Operand::new(cx.out_ptr(0), &out, dy.size()),
    ];
    if *op == BinaryOp::Pow
        && da.is_float()
        && let Some(e) = cx.in_const(1).and_then(|t| small_exponent(&t.to_f64().iter().copied().collect::<Vec<_>>()))
    {
        // x^e for a constant small exponent, without exp and log.
        return walk(kb, &r0, &out, &[ops[0].clone(), ops[2].clone()], da == DType::F32, &mut |kb, s| {
            let x = load_in(kb, da, s, 0);
            let r = pow_small(kb, x, e);
            store_out(kb, dy, r, s, 1);
            Ok(())
        });
    }
    let comparison = matches!(
        op,
        BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual
    );
    let int_arith = matches!(op, BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min);
    let float_vector = !matches!(op, BinaryOp::Mod { .. });
    let vector = da == db && da == dy && (da == DType::F32 && float_vector || da == DType::I32 && int_arith);
    let unroll = if *op == BinaryOp::Pow { Unroll::One } else { Unroll::Twice };
    walk_with(kb, &r0, &out, &ops, vector, unroll, &mut |kb, s| {
        let x = load_in(kb, da, s, 0);
        let y = load_in(kb, db, s, 1);
        let r = match op {
            BinaryOp::And | BinaryOp::Or => {
                let (p, q) = (truthy(kb, x), truthy(kb, y));
                let c = if *op == BinaryOp::And { kb.b.ins().band(p, q) } else { kb.b.ins().bor(p, q) };
                bool64(kb, c)
            }
            _ if comparison => {
                let c =
                    if da.is_float() { kb.b.ins().fcmp(float_cc(op), x, y) } else { kb.b.ins().icmp(int_cc(op), x, y) };
                bool64(kb, c)
            }
            BinaryOp::Pow if da.is_float() => {
                let yf = if db.is_float() { y } else { kb.b.ins().fcvt_from_sint(types::F32, y) };
                math::pow(kb, x, yf)
            }
            BinaryOp::Pow if db.is_float() => int_base_float_pow(kb, x, y, dy),
            BinaryOp::Pow => int_pow(kb, x, y),
            _ if dy.is_float() => arith_float(kb, op, x, y),
            _ => arith_int(kb, op, x, y),
        };
        store_out(kb, dy, r, s, 2);
        Ok(())
    })
}

/// The exponent [`pow_small`] handles, when every element of a constant exponent is it.
fn small_exponent(v: &[f64]) -> Option<f64> {
    let e = *v.first()?;
    (v.iter().all(|&x| x == e) && [1.0, 2.0, 3.0, -1.0, 0.5].contains(&e)).then_some(e)
}

/// `x^e` for `e` in {1, 2, 3, -1, 0.5} by multiplication, division or square root, as C `pow`
/// gives them (`x²`, `1/x` and `√x` correctly rounded like the interpreter's f64 `powf`
/// rounded to f32; `x³` within 1 ulp; `(-0)^0.5 = +0`, `(-inf)^0.5 = +inf`).
fn pow_small(kb: &mut Kb, x: Value, e: f64) -> Value {
    if e == 1.0 {
        x
    } else if e == 2.0 {
        kb.b.ins().fmul(x, x)
    } else if e == 3.0 {
        let x2 = kb.b.ins().fmul(x, x);
        kb.b.ins().fmul(x2, x)
    } else if e == -1.0 {
        let one = fconst_like(kb, 1.0, x);
        kb.b.ins().fdiv(one, x)
    } else {
        let r = kb.b.ins().sqrt(x);
        let zero = fconst_like(kb, 0.0, x);
        let r = kb.b.ins().fadd(r, zero);
        let (ninf, inf) = (fconst_like(kb, f32::NEG_INFINITY, x), fconst_like(kb, f32::INFINITY, x));
        let c = kb.b.ins().fcmp(FloatCC::Equal, x, ninf);
        fsel(kb, c, inf, r)
    }
}

fn emit_clip(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (dt, out) = (cx.in_dtype(0)?, cx.out_dims(0)?);
    let x = cx.in_dims(0)?;
    // The bounds hold one element each (checked by inference); read them before any write.
    let bound = |kb: &mut Kb, i: usize| -> Result<Option<Value>> {
        let Some(p) = cx.in_ptr_opt(i) else { return Ok(None) };
        if cx.in_dims(i)?.iter().product::<usize>() != 1 {
            return Err(cx.error(format!("bound {i} must hold exactly one element")));
        }
        Ok(Some(kb.load_elem(dt, p)))
    };
    let (lo, hi) = (bound(kb, 1)?, bound(kb, 2)?);
    let vector = matches!(dt, DType::F32 | DType::I32) && kb.caps.vector;
    let splat4 = |kb: &mut Kb, v: Value| {
        if dt == DType::I32 {
            let n = kb.b.ins().ireduce(types::I32, v);
            kb.b.ins().splat(types::I32X4, n)
        } else {
            splat_to(kb, v, 4)
        }
    };
    let (lo4, hi4) = if vector { (lo.map(|v| splat4(kb, v)), hi.map(|v| splat4(kb, v))) } else { (None, None) };
    let ops = [Operand::input(kb, cx, 0, &x, dt.size())?, Operand::new(cx.out_ptr(0), &out, dt.size())];
    walk(kb, &r0, &out, &ops, vector, &mut |kb, s| {
        let v = load_in(kb, dt, s, 0);
        let r = if s.lanes == 4 && dt == DType::I32 {
            // v < lo ? lo : v, then v > hi ? hi : v: max then min.
            let v = lo4.map_or(v, |lo| kb.b.ins().smax(v, lo));
            hi4.map_or(v, |hi| kb.b.ins().smin(v, hi))
        } else if s.lanes == 4 {
            fclamp(kb, v, lo4, hi4)
        } else if dt.is_float() {
            fclamp(kb, v, lo, hi)
        } else {
            iclamp(kb, v, lo, hi)
        };
        store_out(kb, dt, r, s, 1);
        Ok(())
    })
}

/// Shrink with the IR's numeric contract ([`Shrink`]): floats in f32 (four lanes for f32)
/// against the attributes rounded to the input's precision; integers in f64, truncated
/// toward zero to i64 (saturating) and wrapped to the element width by the store.
fn emit_shrink(kb: &mut Kb, cx: &NodeCtx, sh: &Shrink) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (dt, out) = (cx.in_dtype(0)?, cx.out_dims(0)?);
    let x = cx.in_dims(0)?;
    let vector = dt == DType::F32 && kb.caps.vector;
    let ops = [Operand::input(kb, cx, 0, &x, dt.size())?, Operand::new(cx.out_ptr(0), &out, dt.size())];
    let (bias, lambd) = sh.attrs_for(dt);
    walk(kb, &r0, &out, &ops, vector, &mut |kb, s| {
        let v = load_in(kb, dt, s, 0);
        // x < -lambd ? x + bias : (x > lambd ? x - bias : 0), in the compute type `c`.
        let shrink = |kb: &mut Kb, v: Value, c: [Value; 4]| {
            let [bias, lo, hi, zero] = c;
            let below = kb.b.ins().fcmp(FloatCC::LessThan, v, lo);
            let above = kb.b.ins().fcmp(FloatCC::GreaterThan, v, hi);
            let plus = kb.b.ins().fadd(v, bias);
            let minus = kb.b.ins().fsub(v, bias);
            let r = fsel(kb, above, minus, zero);
            fsel(kb, below, plus, r)
        };
        let r = if dt.is_float() {
            let c = [bias, -lambd, lambd, 0.0].map(|k| kb.fconst(k, s.lanes));
            shrink(kb, v, c)
        } else {
            let f = kb.b.ins().fcvt_from_sint(types::F64, v);
            let c = [sh.bias, -sh.lambd, sh.lambd, 0.0].map(|k| kb.b.ins().f64const(f64::from(k)));
            let y = shrink(kb, f, c);
            kb.b.ins().fcvt_to_sint_sat(types::I64, y)
        };
        store_out(kb, dt, r, s, 1);
        Ok(())
    })
}

fn emit_where(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (dt, out) = (cx.out_dtype(0), cx.out_dims(0)?);
    let (c, x, y) = (cx.in_dims(0)?, cx.in_dims(1)?, cx.in_dims(2)?);
    let elem = dt.size();
    let ops = [
        Operand::input(kb, cx, 0, &c, 1)?,
        Operand::input(kb, cx, 1, &x, elem)?,
        Operand::input(kb, cx, 2, &y, elem)?,
        Operand::new(cx.out_ptr(0), &out, elem),
    ];
    walk(kb, &r0, &out, &ops, elem == 4, &mut |kb, s| {
        if s.lanes == 4 {
            let mask = cond_mask4(kb, s);
            let load = |kb: &mut Kb, k: usize| {
                if s.bcast[k] {
                    let v = kb.load(types::I32, s.at[k], 0);
                    kb.b.ins().splat(types::I32X4, v)
                } else {
                    kb.load(types::I32X4, s.at[k], 0)
                }
            };
            let (a, b) = (load(kb, 1), load(kb, 2));
            let r = kb.b.ins().bitselect(mask, a, b);
            kb.store(r, s.at[3], 0);
        } else {
            let cb = kb.load(types::I8, s.at[0], 0);
            let cond = kb.b.ins().icmp_imm_s(IntCC::NotEqual, cb, 0);
            let ty = raw_type(elem);
            let a = kb.load(ty, s.at[1], 0);
            let b = kb.load(ty, s.at[2], 0);
            let r = kb.b.ins().select(cond, a, b);
            kb.store(r, s.at[3], 0);
        }
        Ok(())
    })
}

/// The `I32X4` lane mask (all ones where true) of the 4 bools at operand 0 of a vector step
/// (one bool splat when it is broadcast), read byte by byte.
fn cond_mask4(kb: &mut Kb, s: &Step) -> Value {
    let zero = kb.b.ins().iconst(types::I32, 0);
    let zeros = kb.b.ins().splat(types::I32X4, zero);
    let v = if s.bcast[0] {
        let b = kb.b.ins().uload8(types::I32, crate::emit::flags(), s.at[0], 0);
        kb.b.ins().splat(types::I32X4, b)
    } else {
        let mut v = zeros;
        for l in 0..4u8 {
            let b = kb.b.ins().uload8(types::I32, crate::emit::flags(), s.at[0], i32::from(l));
            v = kb.b.ins().insertlane(v, b, l);
        }
        v
    };
    kb.b.ins().icmp(IntCC::NotEqual, v, zeros)
}

fn emit_cast(kb: &mut Kb, cx: &NodeCtx, to: DType) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (from, out) = (cx.in_dtype(0)?, cx.out_dims(0)?);
    let x = cx.in_dims(0)?;
    let ops = [Operand::input(kb, cx, 0, &x, from.size())?, Operand::new(cx.out_ptr(0), &out, to.size())];
    if from == to {
        return copy(kb, &r0, &out, &ops);
    }
    walk(kb, &r0, &out, &ops, false, &mut |kb, s| {
        let v = kb.load_elem(from, s.at[0]);
        let r = cast_value(kb, from, to, v);
        kb.store_elem(to, r, s.at[1]);
        Ok(())
    })
}

/// IsNaN / IsInf: a bool per element (scalar steps).
fn emit_float_class(kb: &mut Kb, cx: &NodeCtx, c: &FloatClass) -> Result<()> {
    let r0 = outer_run(kb, cx)?;
    let (dt, out) = (cx.in_dtype(0)?, cx.out_dims(0)?);
    let x = cx.in_dims(0)?;
    let ops = [Operand::input(kb, cx, 0, &x, dt.size())?, Operand::new(cx.out_ptr(0), &out, 1)];
    walk(kb, &r0, &out, &ops, false, &mut |kb, s| {
        let v = kb.load_elem(dt, s.at[0]);
        let hit = match *c {
            FloatClass::Nan => kb.b.ins().fcmp(FloatCC::Unordered, v, v),
            FloatClass::Inf { positive, negative } => {
                let mut hit = kb.b.ins().iconst(types::I8, 0);
                for (on, inf) in [(positive, f32::INFINITY), (negative, f32::NEG_INFINITY)] {
                    if on {
                        let k = kb.b.ins().f32const(inf);
                        let e = kb.b.ins().fcmp(FloatCC::Equal, v, k);
                        hit = kb.b.ins().bor(hit, e);
                    }
                }
                hit
            }
        };
        let r = bool64(kb, hit);
        kb.store_elem(DType::Bool, r, s.at[1]);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nests_merge_contiguous_axes_and_keep_broadcasts() {
        // [2,3,4] + [4]: the bias repeats every 4 elements.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 3, 4], &[4], &[2, 3, 4]]);
        assert_eq!(n.dims, vec![6, 4]);
        assert_eq!(n.strides, vec![vec![4, 1], vec![0, 1], vec![4, 1]]);
        // Same shapes collapse to one loop.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 3, 4], &[2, 3, 4]]);
        assert_eq!((n.dims.clone(), n.strides.clone()), (vec![24], vec![vec![1], vec![1]]));
        // [2,1,4] against [2,3,4]: the middle axis is broadcast.
        let n = broadcast_nest(&[2, 3, 4], &[&[2, 1, 4], &[2, 3, 4]]);
        assert_eq!(n.dims, vec![2, 3, 4]);
        assert_eq!(n.strides, vec![vec![4, 0, 1], vec![12, 4, 1]]);
        // A scalar.
        let n = broadcast_nest(&[], &[&[], &[]]);
        assert_eq!(n.dims, vec![1]);
    }
}
