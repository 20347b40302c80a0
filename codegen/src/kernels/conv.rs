//! Convolution and pooling kernels (Conv, MaxPool, AveragePool) over 1-D, 2-D and N-D spatial
//! dims: direct loop nests that share one window walker.
//!
//! The window geometry (output sizes, auto padding, ceil mode) comes from
//! `slmtvm_ir::ops::conv`, so it is the interpreter's. No tap is ever tested against the
//! padding: along every outer spatial axis the range of kernel taps that fall on the input is
//! computed once per output row, and along the innermost axis the output positions split into
//! an interior, where every tap is on the input (compile-time bounds; vector steps of 4 output
//! positions on targets with vectors), and the borders, with bounds computed per position.
//! Conv computes 4 output channels at a time, so each input load (a gather of 4 when the row
//! is strided) feeds 4 accumulators; pooling takes vector steps on stride-1 rows only.
//!
//! Floats (f32, f16) compute in f32; ConvInteger (i8/u8 operands less their zero points)
//! accumulates exactly in i32, four output positions per `I32X4` on stride-1 rows; MaxPool on
//! i8/u8 compares integers. Max pooling skips padding and NaN and gives the dtype's lowest
//! value for a window with no input tap; average pooling sums the taps in kernel order (as the interpreter does) and divides by the taps on
//! the input, plus the padded ones with `count_include_pad` (never those past the end padding).

use super::NodeCtx;
use crate::Result;
use crate::emit::{Kb, lane_flags};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value, types};
use slmtvm_ir::ops::conv::{WindowAttrs, axis_window};
use slmtvm_ir::ops::{Conv, ConvInteger, Pool, PoolKind};
use slmtvm_ir::{DType, Op};

/// The geometry of one spatial axis, in elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    /// Input size.
    i: i64,
    /// Output size.
    o: i64,
    /// Kernel taps.
    k: i64,
    /// Stride.
    s: i64,
    /// Dilation.
    d: i64,
    /// Padding before and after the input.
    pb: i64,
    pe: i64,
}

impl Axis {
    /// The output positions `[lo, hi)` whose every tap is on the input.
    fn interior(&self) -> (i64, i64) {
        let lo = ((self.pb + self.s - 1) / self.s).min(self.o);
        let last = self.i - 1 + self.pb - (self.k - 1) * self.d;
        let hi = if last < 0 { lo } else { (last / self.s + 1).min(self.o).max(lo) };
        (lo, hi)
    }

    /// Taps on the input of output position `o`, and taps before the end of the end padding:
    /// `(lo, hi, counted)` as in `ir::ops::conv`'s window taps.
    fn taps_at(&self, o: i64) -> (i64, i64, i64) {
        let base = o * self.s - self.pb;
        let cdiv = |v: i64| if v <= 0 { 0 } else { (v + self.d - 1) / self.d };
        let lo = cdiv(-base).min(self.k);
        let hi = cdiv(self.i - base).min(self.k);
        let counted = cdiv(self.i + self.pe - base).min(self.k);
        (lo, hi, counted)
    }
}

/// Resolves the window attributes over `x`'s spatial dims, checking the output dims.
fn geometry(cx: &NodeCtx, attrs: &WindowAttrs, spatial: &[usize], out: &[usize]) -> Result<Vec<Axis>> {
    if attrs.axes.len() != spatial.len() || out.len() != spatial.len() {
        return Err(cx.error("window attributes do not match the input's spatial rank"));
    }
    let mut axes = Vec::with_capacity(spatial.len());
    for ((p, &n), &o) in attrs.axes.iter().zip(spatial).zip(out) {
        let w = axis_window(n, p, attrs.auto_pad, attrs.ceil_mode).map_err(|e| cx.error(e))?;
        if w.out != o {
            return Err(cx.error(format!("window output size {} differs from the inferred {o}", w.out)));
        }
        let v = [n, w.out, p.kernel, p.stride, p.dilation, w.pad_begin, w.pad_end];
        let [i, o, k, s, d, pb, pe] = v.map(|x| i64::try_from(x).unwrap_or(i64::MAX));
        if v.iter().any(|&x| x > (1 << 31)) {
            return Err(cx.unsupported("window attributes beyond 2^31"));
        }
        axes.push(Axis { i, o, k, s, d, pb, pe });
    }
    Ok(axes)
}

/// A range of kernel taps along one axis, with the number of taps counted by an average pool
/// that includes padding; `konst` when the bounds are known at compile time.
#[derive(Clone, Copy)]
struct Taps {
    lo: Value,
    hi: Value,
    counted: Value,
    konst: Option<(i64, i64)>,
}

/// One output point (or 4 consecutive along the innermost axis) to compute.
struct Point {
    /// Per outer axis: `o·s − pad_begin` and the taps on the input.
    outer: Vec<(Value, Taps)>,
    /// Innermost axis: `o·s − pad_begin` and the taps.
    inner: (Value, Taps),
    /// Element offset of the output within its plane.
    out: Value,
    /// 4 (a vector of consecutive outputs along the innermost axis) or 1.
    lanes: usize,
}

fn smax(kb: &mut Kb, a: Value, b: Value) -> Value {
    let c = kb.b.ins().icmp(IntCC::SignedGreaterThan, a, b);
    kb.b.ins().select(c, a, b)
}

fn smin(kb: &mut Kb, a: Value, b: Value) -> Value {
    let c = kb.b.ins().icmp(IntCC::SignedLessThan, a, b);
    kb.b.ins().select(c, a, b)
}

/// `min(ceil(max(v, 0) / d), k)` at run time.
fn taps_below(kb: &mut Kb, v: Value, d: i64, k: i64) -> Value {
    let zero = kb.iconst(0);
    let v = smax(kb, v, zero);
    let q = if d == 1 {
        v
    } else {
        let v = kb.b.ins().iadd_imm_s(v, d - 1);
        kb.b.ins().udiv_imm_s(v, d)
    };
    let k = kb.iconst(k);
    smin(kb, q, k)
}

/// The base `o·s − pad_begin` and taps of output position `o` (a run-time value) on `ax`.
fn taps_dyn(kb: &mut Kb, ax: &Axis, o: Value) -> (Value, Taps) {
    let os = kb.b.ins().imul_imm_s(o, ax.s);
    let base = kb.b.ins().iadd_imm_s(os, -ax.pb);
    let neg = kb.b.ins().ineg(base);
    let lo = taps_below(kb, neg, ax.d, ax.k);
    let r = kb.b.ins().iadd_imm_s(neg, ax.i);
    let hi = taps_below(kb, r, ax.d, ax.k);
    let r = kb.b.ins().iadd_imm_s(neg, ax.i + ax.pe);
    let counted = taps_below(kb, r, ax.d, ax.k);
    (base, Taps { lo, hi, counted, konst: None })
}

/// The base and taps of output position `o` (a compile-time constant) on `ax`.
fn taps_const(kb: &mut Kb, ax: &Axis, o: i64) -> (Value, Taps) {
    let (lo, hi, counted) = ax.taps_at(o);
    let base = kb.iconst(o * ax.s - ax.pb);
    let (l, h, c) = (kb.iconst(lo), kb.iconst(hi), kb.iconst(counted));
    (base, Taps { lo: l, hi: h, counted: c, konst: Some((lo, hi)) })
}

/// Emits the output points of one plane: loops over the outer spatial axes, then the
/// innermost axis as borders (scalar, per-position bounds) and interior (full kernel; steps
/// of 4 consecutive outputs when `vector`).
fn walk_points(kb: &mut Kb, geo: &[Axis], vector: bool, point: &mut dyn FnMut(&mut Kb, &Point)) {
    if geo.iter().any(|a| a.o == 0) {
        return;
    }
    let zero = kb.iconst(0);
    let mut outer = Vec::new();
    walk_outer(kb, geo, vector, 0, zero, &mut outer, point);
}

fn walk_outer(
    kb: &mut Kb,
    geo: &[Axis],
    vector: bool,
    level: usize,
    out: Value,
    outer: &mut Vec<(Value, Taps)>,
    point: &mut dyn FnMut(&mut Kb, &Point),
) {
    let ax = geo[level];
    let ostride: i64 = geo[level + 1..].iter().map(|a| a.o).product();
    if level + 1 < geo.len() {
        let mut body = |kb: &mut Kb, o: Value, t: (Value, Taps)| {
            let off = kb.b.ins().imul_imm_s(o, ostride);
            let off = kb.b.ins().iadd(out, off);
            outer.push(t);
            walk_outer(kb, geo, vector, level + 1, off, outer, point);
            outer.pop();
        };
        if ax.o == 1 {
            let o = kb.iconst(0);
            let t = taps_const(kb, &ax, 0);
            body(kb, o, t);
        } else {
            kb.for_const(0, ax.o, 1, |kb, o| {
                let t = taps_dyn(kb, &ax, o);
                body(kb, o, t);
            });
        }
        return;
    }
    let (lo, hi) = ax.interior();
    let mut emit_at = |kb: &mut Kb, o: Value, t: (Value, Taps), lanes: usize| {
        let off = kb.b.ins().iadd(out, o);
        point(kb, &Point { outer: outer.clone(), inner: t, out: off, lanes });
    };
    // Borders: a few positions unrolled with constant bounds, else a loop.
    let mut border = |kb: &mut Kb, from: i64, to: i64| {
        if to - from <= 2 {
            for o in from..to {
                let ov = kb.iconst(o);
                let t = taps_const(kb, &ax, o);
                emit_at(kb, ov, t, 1);
            }
        } else {
            kb.for_const(from, to, 1, |kb, o| {
                let t = taps_dyn(kb, &ax, o);
                emit_at(kb, o, t, 1);
            });
        }
    };
    border(kb, 0, lo);
    border(kb, hi, ax.o);
    // Interior: every tap on the input.
    let full = |kb: &mut Kb, o: Value| -> (Value, Taps) {
        let os = kb.b.ins().imul_imm_s(o, ax.s);
        let base = kb.b.ins().iadd_imm_s(os, -ax.pb);
        let (l, h) = (kb.iconst(0), kb.iconst(ax.k));
        (base, Taps { lo: l, hi: h, counted: h, konst: Some((0, ax.k)) })
    };
    let vec_end = if vector { lo + (hi - lo) / 4 * 4 } else { lo };
    if vec_end > lo {
        kb.for_const(lo, vec_end, 4, |kb, o| {
            let t = full(kb, o);
            emit_at(kb, o, t, 4);
        });
    }
    if hi - vec_end == 1 {
        let o = kb.iconst(vec_end);
        let t = full(kb, o);
        emit_at(kb, o, t, 1);
    } else if hi > vec_end {
        kb.for_const(vec_end, hi, 1, |kb, o| {
            let t = full(kb, o);
            emit_at(kb, o, t, 1);
        });
    }
}

/// Loops `k` over `t` (unrolled when the bounds are constant and few).
fn for_taps(kb: &mut Kb, t: &Taps, body: &mut dyn FnMut(&mut Kb, Value)) {
    match t.konst {
        Some((lo, hi)) if hi - lo <= 8 => {
            for k in lo..hi {
                let kv = kb.iconst(k);
                body(kb, kv);
            }
        }
        _ => kb.for_range(t.lo, t.hi, 1, |kb, k| body(kb, k)),
    }
}

/// Calls `tap(x_index, k_index)` for every tap of `p` on the input, in row-major kernel order:
/// the element index into the input plane (starting at `x0`) and into the kernel (at `k0`).
fn walk_taps(kb: &mut Kb, geo: &[Axis], p: &Point, x0: Value, k0: Value, tap: &mut dyn FnMut(&mut Kb, Value, Value)) {
    taps_level(kb, geo, p, 0, x0, k0, tap);
}

fn taps_level(
    kb: &mut Kb,
    geo: &[Axis],
    p: &Point,
    level: usize,
    xi: Value,
    ki: Value,
    tap: &mut dyn FnMut(&mut Kb, Value, Value),
) {
    let ax = geo[level];
    let xstride: i64 = geo[level + 1..].iter().map(|a| a.i).product();
    let kstride: i64 = geo[level + 1..].iter().map(|a| a.k).product();
    let (base, t) = if level + 1 < geo.len() { p.outer[level] } else { p.inner };
    for_taps(kb, &t, &mut |kb, k| {
        let kd = kb.b.ins().imul_imm_s(k, ax.d);
        let pos = kb.b.ins().iadd(base, kd);
        let pos = kb.b.ins().imul_imm_s(pos, xstride);
        let x2 = kb.b.ins().iadd(xi, pos);
        let kk = kb.b.ins().imul_imm_s(k, kstride);
        let k2 = kb.b.ins().iadd(ki, kk);
        if level + 1 < geo.len() {
            taps_level(kb, geo, p, level + 1, x2, k2, tap);
        } else {
            tap(kb, x2, k2);
        }
    });
}

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: only the batch axis may be symbolic (batches are position-wise over the
/// physical extent); a window sliding along a symbolic spatial axis would read the padding
/// beyond the run-time extent, so such nodes are refused.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    if cx.is_symbolic() {
        let vals = cx.node.inputs.iter().flatten().chain(&cx.node.outputs);
        for &v in vals {
            if let Some(a) = (1..cx.g.ty(v).shape.rank()).find(|&a| cx.axis_symbolic(v, a)) {
                let what = cx.g.value(v).name.clone();
                return Err(
                    cx.refuse_symbolic(format!("'{what}' is symbolic along axis {a}; only the batch axis may be"))
                );
            }
        }
    }
    match &cx.node.op {
        Op::Conv(c) => conv(kb, cx, c),
        Op::ConvInteger(c) => conv_integer(kb, cx, c),
        Op::Pool(p) => pool(kb, cx, p),
        _ => Err(cx.unsupported("not a convolution or pooling operator")),
    }
}

/// Four f32 elements at element `index` of `base` and every `stride`-th after it, as an
/// `F32X4`.
fn gather4(kb: &mut Kb, base: Value, index: Value, stride: i64) -> Value {
    let a = kb.addr(base, index, 4);
    let v = kb.load(types::F32, a, 0);
    let mut v = kb.b.ins().scalar_to_vector(types::F32X4, v);
    for j in 1..4u8 {
        // The byte offset fits a load's immediate unless the stride is absurdly large.
        let off = i64::from(j) * stride * 4;
        let l = match i32::try_from(off) {
            Ok(imm) => kb.load(types::F32, a, imm),
            Err(_) => {
                let aj = kb.addr_const(a, off);
                kb.load(types::F32, aj, 0)
            }
        };
        v = kb.b.ins().insertlane(v, l, j);
    }
    v
}

/// Output channels computed together (sharing every input load).
const MB: i64 = 4;

/// `y[n, m, o...] = b[m] + Σ_{c in group, taps} x[n, c, o·s + k·d − p...] · w[m, c, k...]`.
/// The arithmetic of a convolution kernel: floats (f32 or f16 storage, f32 compute; Conv) or
/// integers (ConvInteger: i8/u8 operands less their zero points, exact `i32` accumulators).
#[derive(Clone, Copy)]
enum Arith {
    Float(DType),
    /// With x's zero point (an `I32`, loaded once).
    Int {
        x: DType,
        w: DType,
        x_zp: Value,
    },
}

/// `x`'s zero point of a ConvInteger (input 2) as an `I32`, 0 when absent.
fn x_zero_point(kb: &mut Kb, cx: &NodeCtx, x: DType) -> Value {
    match cx.in_ptr_opt(2) {
        Some(p) => {
            let z = kb.load_elem(x, p);
            kb.b.ins().ireduce(types::I32, z)
        }
        None => kb.b.ins().iconst(types::I32, 0),
    }
}

/// Element `idx` of the i8/u8 tensor at `base` as an `I32`, less `zp`.
fn centered(kb: &mut Kb, dtype: DType, base: Value, idx: Value, zp: Value) -> Value {
    let a = kb.addr(base, idx, 1);
    let v = kb.load_elem(dtype, a);
    let v = kb.b.ins().ireduce(types::I32, v);
    kb.b.ins().isub(v, zp)
}

fn conv_integer(kb: &mut Kb, cx: &NodeCtx, c: &ConvInteger) -> Result<()> {
    let (x, w) = (cx.in_dtype(0)?, cx.in_dtype(1)?);
    if !matches!(x, DType::I8 | DType::U8) || !matches!(w, DType::I8 | DType::U8) || cx.out_dtype(0) != DType::I32 {
        return Err(cx.unsupported(format!("ConvInteger of {x} by {w}")));
    }
    let x_zp = x_zero_point(kb, cx, x);
    conv_with(kb, cx, &c.conv, Arith::Int { x, w, x_zp })
}

fn conv(kb: &mut Kb, cx: &NodeCtx, c: &Conv) -> Result<()> {
    let dt = cx.in_dtype(0)?;
    if !dt.is_float() || cx.in_dtype(1)? != dt || cx.out_dtype(0) != dt {
        return Err(cx.unsupported(format!("dtype {dt}")));
    }
    conv_with(kb, cx, c, Arith::Float(dt))
}

/// The direct convolution of [`conv`] and [`conv_integer`].
fn conv_with(kb: &mut Kb, cx: &NodeCtx, c: &Conv, arith: Arith) -> Result<()> {
    let (xd, wd, yd) = (cx.in_dims(0)?, cx.in_dims(1)?, cx.out_dims(0)?);
    if xd.len() < 3 || wd.len() != xd.len() || yd.len() != xd.len() || c.group == 0 {
        return Err(cx.error("inconsistent shapes"));
    }
    let kernel = c.kernel_shape.clone().unwrap_or_else(|| wd[2..].to_vec());
    let attrs =
        WindowAttrs::new(&kernel, c.strides.as_deref(), c.dilations.as_deref(), c.pads.as_deref(), c.auto_pad, false)
            .map_err(|e| cx.error(e))?;
    let geo = geometry(cx, &attrs, &xd[2..], &yd[2..])?;
    let (n, ch, m, g) = (xd[0] as i64, xd[1] as i64, wd[0] as i64, c.group as i64);
    let (cg, mg) = (ch / g, m / g);
    if cg * g != ch || mg * g != m || wd[1] as i64 != cg || yd[1] as i64 != m || kernel != wd[2..] {
        return Err(cx.error("inconsistent channels, groups or kernel"));
    }
    let in_len: i64 = geo.iter().map(|a| a.i).product();
    let out_len: i64 = geo.iter().map(|a| a.o).product();
    let k_len: i64 = geo.iter().map(|a| a.k).product();
    let (xp, wp, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.out_ptr(0));
    // Conv's bias; ConvInteger's zero points (x's per tensor, w's per tensor or per output
    // channel), x's loaded once.
    let (bp, w_zp) = match arith {
        Arith::Float(_) => (cx.in_ptr_opt(2), None),
        Arith::Int { .. } => {
            let per_channel = cx.in_id(3).is_some_and(|z| cx.g.ty(z).shape.numel() != Some(1));
            (None, cx.in_ptr_opt(3).map(|p| (p, per_channel)))
        }
    };
    // Vector steps along the innermost axis; a strided one gathers its 4 inputs (floats),
    // then shares them among the block's output channels.
    let xs = geo.last().map_or(1, |a| a.s);
    let vector = kb.caps.vector
        && match arith {
            Arith::Float(dt) => dt == DType::F32 && xs <= 1 << 20,
            Arith::Int { .. } => xs == 1,
        };
    let x_zp4 = match arith {
        Arith::Int { x_zp, .. } if vector => Some(kb.b.ins().splat(types::I32X4, x_zp)),
        _ => None,
    };
    // A per-tensor w zero point, loaded once (a per-channel one is loaded per block).
    let w_zp_tensor = match (arith, w_zp) {
        (Arith::Int { w, .. }, Some((p, false))) => {
            let z = kb.load_elem(w, p);
            Some(kb.b.ins().ireduce(types::I32, z))
        }
        (Arith::Int { .. }, None) => Some(kb.b.ins().iconst(types::I32, 0)),
        _ => None,
    };
    // Output channels in blocks of up to MB: each input load feeds MB accumulators.
    let (full, rem) = (mg / MB, mg % MB);
    kb.nest(&[n as usize, g as usize], &mut |kb, idx| {
        let (ni, gi) = (idx[0], idx[1]);
        // First input channel of the group.
        let nc = kb.b.ins().imul_imm_s(ni, ch);
        let gc = kb.b.ins().imul_imm_s(gi, cg);
        let c0 = kb.b.ins().iadd(nc, gc);
        let gm = kb.b.ins().imul_imm_s(gi, mg);
        let block = |kb: &mut Kb, m0: Value, nb: usize| {
            let nm = kb.b.ins().imul_imm_s(ni, m);
            let plane = kb.b.ins().iadd(nm, m0);
            let y0 = kb.b.ins().imul_imm_s(plane, out_len);
            let bias: Vec<Value> = (0..nb)
                .map(|j| match (arith, bp) {
                    (Arith::Float(dt), Some(bp)) => {
                        let mj = kb.b.ins().iadd_imm_s(m0, j as i64);
                        let a = kb.addr(bp, mj, dt.size());
                        kb.load_elem(dt, a)
                    }
                    (Arith::Float(_), None) => kb.fconst(0.0, 1),
                    (Arith::Int { .. }, _) => kb.b.ins().iconst(types::I32, 0),
                })
                .collect();
            // w's zero point of each of the block's output channels.
            let w_zps: Vec<Value> = (0..nb)
                .filter_map(|j| match (arith, w_zp, w_zp_tensor) {
                    (_, _, Some(z)) => Some(z),
                    (Arith::Int { w, .. }, Some((p, true)), None) => {
                        let mj = kb.b.ins().iadd_imm_s(m0, j as i64);
                        let a = kb.addr(p, mj, 1);
                        let z = kb.load_elem(w, a);
                        Some(kb.b.ins().ireduce(types::I32, z))
                    }
                    _ => None,
                })
                .collect();
            walk_points(kb, &geo, vector, &mut |kb, p| {
                let ty = match (arith, p.lanes) {
                    (Arith::Float(_), 4) => types::F32X4,
                    (Arith::Float(_), _) => types::F32,
                    (Arith::Int { .. }, 4) => types::I32X4,
                    (Arith::Int { .. }, _) => types::I32,
                };
                let acc: Vec<_> = bias
                    .iter()
                    .map(|&b| {
                        let v = kb.b.declare_var(ty);
                        let init = if p.lanes == 4 { kb.b.ins().splat(ty, b) } else { b };
                        kb.b.def_var(v, init);
                        v
                    })
                    .collect();
                let per_channel = |kb: &mut Kb, ci: Value| {
                    let cc = kb.b.ins().iadd(c0, ci);
                    let x0 = kb.b.ins().imul_imm_s(cc, in_len);
                    let mc = kb.b.ins().imul_imm_s(m0, cg);
                    let mc = kb.b.ins().iadd(mc, ci);
                    let k0 = kb.b.ins().imul_imm_s(mc, k_len);
                    walk_taps(kb, &geo, p, x0, k0, &mut |kb, xi, ki| {
                        let xv = match (arith, p.lanes, x_zp4) {
                            (Arith::Float(_), 4, _) if xs != 1 => gather4(kb, xp, xi, xs),
                            (Arith::Float(dt), lanes, _) => kb.load_lanes(dt, xp, xi, lanes),
                            (Arith::Int { x, .. }, 4, Some(z4)) => {
                                let a = kb.addr(xp, xi, 1);
                                let v = super::quant::load4_int(kb, x, a);
                                kb.b.ins().isub(v, z4)
                            }
                            (Arith::Int { x, x_zp, .. }, ..) => centered(kb, x, xp, xi, x_zp),
                        };
                        for (j, &v) in acc.iter().enumerate() {
                            let kj = kb.b.ins().iadd_imm_s(ki, j as i64 * cg * k_len);
                            let mut wv = match arith {
                                Arith::Float(dt) => kb.load_lanes(dt, wp, kj, 1),
                                Arith::Int { w, .. } => centered(kb, w, wp, kj, w_zps[j]),
                            };
                            if p.lanes == 4 {
                                wv = kb.b.ins().splat(ty, wv);
                            }
                            let a = kb.b.use_var(v);
                            let a = match arith {
                                Arith::Float(_) => kb.mul_add(wv, xv, a),
                                Arith::Int { .. } => {
                                    let m = kb.b.ins().imul(wv, xv);
                                    kb.b.ins().iadd(a, m)
                                }
                            };
                            kb.b.def_var(v, a);
                        }
                    });
                };
                if cg == 1 {
                    let z = kb.iconst(0);
                    per_channel(kb, z);
                } else {
                    kb.for_const(0, cg, 1, |kb, ci| per_channel(kb, ci));
                }
                for (j, &v) in acc.iter().enumerate() {
                    let a = kb.b.use_var(v);
                    let yi = kb.b.ins().iadd(y0, p.out);
                    let yi = kb.b.ins().iadd_imm_s(yi, j as i64 * out_len);
                    match arith {
                        Arith::Float(dt) => kb.store_lanes(dt, yp, yi, a, p.lanes),
                        Arith::Int { .. } => {
                            let addr = kb.addr(yp, yi, 4);
                            kb.store(a, addr, 0);
                        }
                    }
                }
            });
        };
        if full == 1 {
            block(kb, gm, MB as usize);
        } else if full > 1 {
            kb.for_const(0, full * MB, MB, |kb, mb| {
                let m0 = kb.b.ins().iadd(gm, mb);
                block(kb, m0, MB as usize);
            });
        }
        if rem > 0 {
            let m0 = kb.b.ins().iadd_imm_s(gm, full * MB);
            block(kb, m0, rem as usize);
        }
    });
    Ok(())
}

/// The value a max window with no input tap yields (the interpreter's), in compute type.
fn lowest(kb: &mut Kb, dtype: DType) -> Value {
    match dtype {
        DType::F32 => kb.fconst(f32::MIN, 1),
        DType::F16 => kb.fconst(-65504.0, 1),
        DType::I8 => kb.iconst(-128),
        _ => kb.iconst(0),
    }
}

/// Max or average over each window, per (n, c) plane.
fn pool(kb: &mut Kb, cx: &NodeCtx, p: &Pool) -> Result<()> {
    let (xd, yd) = (cx.in_dims(0)?, cx.out_dims(0)?);
    let dt = cx.in_dtype(0)?;
    let ok = match p.kind {
        PoolKind::Max => matches!(dt, DType::F32 | DType::F16 | DType::I8 | DType::U8),
        PoolKind::Average => dt.is_float(),
    };
    if !ok || cx.out_dtype(0) != dt {
        return Err(cx.unsupported(format!("{:?} pooling of {dt}", p.kind)));
    }
    if xd.len() < 3 || yd.len() != xd.len() || yd[..2] != xd[..2] {
        return Err(cx.error("inconsistent shapes"));
    }
    let attrs = WindowAttrs::new(
        &p.kernel_shape,
        p.strides.as_deref(),
        p.dilations.as_deref(),
        p.pads.as_deref(),
        p.auto_pad,
        p.ceil_mode,
    )
    .map_err(|e| cx.error(e))?;
    let geo = geometry(cx, &attrs, &xd[2..], &yd[2..])?;
    let planes = (xd[0] * xd[1]) as i64;
    let in_len: i64 = geo.iter().map(|a| a.i).product();
    let out_len: i64 = geo.iter().map(|a| a.o).product();
    let (xp, yp) = (cx.in_ptr(0)?, cx.out_ptr(0));
    // Strided rows would need gathers, which cost more than the scalar max or sum saves.
    let vector = kb.caps.vector && dt == DType::F32 && geo.last().is_some_and(|a| a.s == 1);
    let (kind, include_pad) = (p.kind, p.count_include_pad);
    kb.nest(&[planes as usize], &mut |kb, idx| {
        let x0 = kb.b.ins().imul_imm_s(idx[0], in_len);
        let y0 = kb.b.ins().imul_imm_s(idx[0], out_len);
        walk_points(kb, &geo, vector, &mut |kb, pt| {
            let lanes = pt.lanes;
            let ty = if lanes == 4 {
                types::F32X4
            } else if dt.is_float() {
                types::F32
            } else {
                types::I64
            };
            let acc = kb.b.declare_var(ty);
            let init = match kind {
                PoolKind::Max => lowest(kb, dt),
                PoolKind::Average => kb.fconst(0.0, 1),
            };
            let init = if lanes == 4 { kb.b.ins().splat(ty, init) } else { init };
            kb.b.def_var(acc, init);
            let k0 = kb.iconst(0);
            walk_taps(kb, &geo, pt, x0, k0, &mut |kb, xi, _| {
                let v = kb.load_lanes(dt, xp, xi, lanes);
                let a = kb.b.use_var(acc);
                let r = match kind {
                    PoolKind::Average => kb.b.ins().fadd(a, v),
                    PoolKind::Max if lanes == 4 => {
                        let c = kb.b.ins().fcmp(FloatCC::GreaterThan, v, a);
                        let c = kb.b.ins().bitcast(types::F32X4, lane_flags(), c);
                        kb.b.ins().bitselect(c, v, a)
                    }
                    PoolKind::Max if dt.is_float() => {
                        let c = kb.b.ins().fcmp(FloatCC::GreaterThan, v, a);
                        kb.b.ins().select(c, v, a)
                    }
                    PoolKind::Max => {
                        let c = kb.b.ins().icmp(IntCC::SignedGreaterThan, v, a);
                        kb.b.ins().select(c, v, a)
                    }
                };
                kb.b.def_var(acc, r);
            });
            let mut r = kb.b.use_var(acc);
            if kind == PoolKind::Average {
                let mut count = kb.iconst(1);
                for (_, t) in pt.outer.iter().chain([&pt.inner]) {
                    let c = if include_pad { t.counted } else { kb.b.ins().isub(t.hi, t.lo) };
                    count = kb.b.ins().imul(count, c);
                }
                let mut cf = kb.b.ins().fcvt_from_sint(types::F32, count);
                if lanes == 4 {
                    cf = kb.b.ins().splat(ty, cf);
                }
                r = kb.b.ins().fdiv(r, cf);
            }
            let yi = kb.b.ins().iadd(y0, pt.out);
            kb.store_lanes(dt, yp, yi, r, lanes);
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ax(i: i64, o: i64, k: i64, s: i64, d: i64, pb: i64, pe: i64) -> Axis {
        Axis { i, o, k, s, d, pb, pe }
    }

    /// The interior and the per-position taps agree with a brute-force count.
    #[test]
    fn interior_and_taps_match_brute_force() {
        for i in 0..7 {
            for k in 1..4 {
                for s in 1..4 {
                    for d in 1..3 {
                        for pb in 0..3 {
                            for pe in 0..3 {
                                let ext = (k - 1) * d + 1;
                                if i + pb + pe < ext {
                                    continue;
                                }
                                let o = (i + pb + pe - ext) / s + 1;
                                let a = ax(i, o, k, s, d, pb, pe);
                                let (lo, hi) = a.interior();
                                for p in 0..o {
                                    let on: Vec<i64> =
                                        (0..k).filter(|&t| (0..i).contains(&(p * s + t * d - pb))).collect();
                                    let counted = (0..k).filter(|&t| p * s + t * d < i + pb + pe).count() as i64;
                                    let (l, h, c) = a.taps_at(p);
                                    assert_eq!(h - l, on.len() as i64, "{a:?} at {p}");
                                    if let Some(&first) = on.first() {
                                        assert_eq!(l, first, "{a:?} at {p}");
                                    }
                                    assert_eq!(c, counted, "{a:?} at {p}");
                                    assert_eq!((lo..hi).contains(&p), on.len() as i64 == k, "{a:?} at {p}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
