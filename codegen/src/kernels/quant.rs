//! Quantization kernels: QuantizeLinear, DequantizeLinear and the pair fused as
//! QuantizeDequantize (per tensor, per axis, blocked) and DynamicQuantizeLinear, with the
//! reference interpreter's arithmetic step for step (the same f32 divisions, rounding half to
//! even, saturation), so integer outputs match exactly.
//!
//! Scale and zero point are addressed through loop nests whose parameter strides encode the
//! granularity (0 along axes that share one parameter), so every granularity gets vector code
//! along its contiguous innermost axis: broadcast parameters are splat, per-element ones
//! loaded as vectors.

use super::NodeCtx;
use crate::Result;
use crate::emit::{Kb, lane_flags, strides_of};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use slmtvm_ir::{DType, Op};

/// How scale and zero point map onto the elements of `x` (as `ir::ops::quant` decides it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Granularity {
    Tensor,
    Axis(usize),
    Blocked { axis: usize, block: usize },
}

/// The granularity of a scale of `scale` dims over `x` dims (shapes were checked by inference).
fn granularity(cx: &NodeCtx, x: &[usize], scale: &[usize], axis: i64, block: usize) -> Result<Granularity> {
    if scale.iter().all(|&d| d == 1) {
        return Ok(Granularity::Tensor);
    }
    let r = x.len() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if !(0..r).contains(&a) {
        return Err(cx.error(format!("axis {axis} is out of range for rank {r}")));
    }
    let a = a as usize;
    let fits = if block == 0 {
        scale.len() == 1 && scale[0] == x[a]
    } else {
        scale.len() == x.len()
            && scale.iter().zip(x).enumerate().all(|(i, (&s, &d))| s == if i == a { d.div_ceil(block) } else { d })
    };
    if !fits {
        return Err(cx.error(format!("scale of shape {scale:?} does not fit x of shape {x:?}")));
    }
    Ok(if block == 0 { Granularity::Axis(a) } else { Granularity::Blocked { axis: a, block } })
}

/// One loop nest over part of `x`: extents, element strides of `x` (and `y`) and of the
/// parameters (scale and zero point), and the starting element of each.
#[derive(Clone, Debug, PartialEq)]
struct Seg {
    dims: Vec<usize>,
    xs: Vec<i64>,
    ps: Vec<i64>,
    x0: i64,
    p0: i64,
}

impl Seg {
    /// Drops extents of 1 and merges adjacent loops that both operands walk as one.
    fn simplified(self) -> Seg {
        let mut out = Seg { dims: vec![], xs: vec![], ps: vec![], x0: self.x0, p0: self.p0 };
        for k in 0..self.dims.len() {
            let (d, xs, ps) = (self.dims[k], self.xs[k], self.ps[k]);
            if d == 1 {
                continue;
            }
            if let (Some(&ld), Some(&lx), Some(&lp)) = (out.dims.last(), out.xs.last(), out.ps.last())
                && lx == xs * d as i64
                && lp == ps * d as i64
            {
                let n = out.dims.len() - 1;
                out.dims[n] = ld * d;
                out.xs[n] = xs;
                out.ps[n] = ps;
                continue;
            }
            out.dims.push(d);
            out.xs.push(xs);
            out.ps.push(ps);
        }
        if out.dims.is_empty() {
            out.dims.push(1);
            out.xs.push(1);
            out.ps.push(0);
        }
        out
    }
}

/// The loop nests that cover `x` (dims `xd`) once, with parameter strides for `g`.
fn segments(xd: &[usize], g: Granularity) -> Vec<Seg> {
    let numel: usize = xd.iter().product();
    let segs = match g {
        Granularity::Tensor => vec![Seg { dims: vec![numel], xs: vec![1], ps: vec![0], x0: 0, p0: 0 }],
        Granularity::Axis(a) => {
            let (pre, n, post) = split3(xd, a);
            vec![Seg {
                dims: vec![pre, n, post],
                xs: vec![(n * post) as i64, post as i64, 1],
                ps: vec![0, 1, 0],
                x0: 0,
                p0: 0,
            }]
        }
        Granularity::Blocked { axis, block } => {
            let (pre, n, post) = split3(xd, axis);
            let (nb, full, rem) = (n.div_ceil(block), n / block, n % block);
            let (xrow, prow) = ((n * post) as i64, (nb * post) as i64);
            let mut v = Vec::new();
            if full > 0 {
                v.push(Seg {
                    dims: vec![pre, full, block, post],
                    xs: vec![xrow, (block * post) as i64, post as i64, 1],
                    ps: vec![prow, post as i64, 0, 1],
                    x0: 0,
                    p0: 0,
                });
            }
            if rem > 0 {
                v.push(Seg {
                    dims: vec![pre, rem, post],
                    xs: vec![xrow, post as i64, 1],
                    ps: vec![prow, 0, 1],
                    x0: (full * block * post) as i64,
                    p0: (full * post) as i64,
                });
            }
            v
        }
    };
    segs.into_iter().filter(|s| !s.dims.contains(&0)).map(Seg::simplified).collect()
}

/// `(Π dims[..a], dims[a], Π dims[a+1..])`.
fn split3(d: &[usize], a: usize) -> (usize, usize, usize) {
    (d[..a].iter().product(), d[a], d[a + 1..].iter().product())
}

/// A step of a quantization loop: element indices of `x`/`y` and of the parameters, lanes,
/// and whether the parameters are the same for every lane.
#[derive(Clone, Copy)]
struct Step {
    xi: Value,
    pi: Value,
    lanes: usize,
    p_splat: bool,
}

/// Emits the loops of `seg`, calling `body` per step; vector steps of 4 along the innermost
/// loop when `vector` and both operands walk it contiguously (or the parameters broadcast).
fn walk(kb: &mut Kb, seg: &Seg, vector: bool, body: &mut dyn FnMut(&mut Kb, Step)) {
    let (xi, pi) = (kb.iconst(seg.x0), kb.iconst(seg.p0));
    walk_level(kb, seg, 0, xi, pi, vector, body);
}

fn walk_level(
    kb: &mut Kb,
    seg: &Seg,
    level: usize,
    xi: Value,
    pi: Value,
    vector: bool,
    body: &mut dyn FnMut(&mut Kb, Step),
) {
    let (n, xs, ps) = (seg.dims[level], seg.xs[level], seg.ps[level]);
    let advance = |kb: &mut Kb, base: Value, i: Value, s: i64| -> Value {
        if s == 0 {
            base
        } else {
            let t = if s == 1 { i } else { kb.b.ins().imul_imm_s(i, s) };
            kb.b.ins().iadd(base, t)
        }
    };
    if level + 1 < seg.dims.len() {
        kb.for_const(0, n as i64, 1, |kb, i| {
            let (x2, p2) = (advance(kb, xi, i, xs), advance(kb, pi, i, ps));
            walk_level(kb, seg, level + 1, x2, p2, vector, body);
        });
        return;
    }
    // Steps of 16 lanes (four vectors: independent chains, one 16-byte store of the 8-bit
    // side), then of 4, then single elements.
    let contiguous = vector && xs == 1 && ps <= 1;
    let wide_end = if contiguous { n / 16 * 16 } else { 0 };
    let vec_end = if contiguous { n / 4 * 4 } else { 0 };
    if wide_end > 0 {
        kb.for_const(0, wide_end as i64, 16, |kb, i| {
            let (x2, p2) = (advance(kb, xi, i, xs), advance(kb, pi, i, ps));
            body(kb, Step { xi: x2, pi: p2, lanes: 16, p_splat: ps == 0 });
        });
    }
    if vec_end > wide_end {
        kb.for_const(wide_end as i64, vec_end as i64, 4, |kb, i| {
            let (x2, p2) = (advance(kb, xi, i, xs), advance(kb, pi, i, ps));
            body(kb, Step { xi: x2, pi: p2, lanes: 4, p_splat: ps == 0 });
        });
    }
    if vec_end < n {
        if n - vec_end == 1 {
            let i = kb.iconst(vec_end as i64);
            let (x2, p2) = (advance(kb, xi, i, xs), advance(kb, pi, i, ps));
            body(kb, Step { xi: x2, pi: p2, lanes: 1, p_splat: true });
        } else {
            kb.for_const(vec_end as i64, n as i64, 1, |kb, i| {
                let (x2, p2) = (advance(kb, xi, i, xs), advance(kb, pi, i, ps));
                body(kb, Step { xi: x2, pi: p2, lanes: 1, p_splat: true });
            });
        }
    }
}

/// `base + index · size(dtype)`.
fn at(kb: &mut Kb, base: Value, index: Value, dtype: DType) -> Value {
    kb.addr(base, index, dtype.size())
}

/// `v` rounded to the nearest integer, ties to even (f32 scalar or `F32X4`): `nearest` where it
/// is one instruction ([`crate::emit::Caps::native_nearest`]), else `(|v| + 2^23) − 2^23` with
/// the sign of `v`, exact below 2^23 in the default rounding mode
/// (larger magnitudes, infinities and NaN are already integral and pass through). Plain
/// arithmetic on purpose: Cranelift's `nearest` is a libcall on x86 without SSE4.1, and on
/// riscv64 its vector form swaps the `frm` CSR, which qemu 7.2 (Debian 12) trips over
/// (`decode_save_opc` assertion).
fn round_even(kb: &mut Kb, v: Value) -> Value {
    if kb.caps.native_nearest {
        return kb.b.ins().nearest(v);
    }
    let lanes = kb.lanes(v);
    let magic = kb.fconst(8_388_608.0, lanes);
    let a = kb.b.ins().fabs(v);
    let r = kb.b.ins().fadd(a, magic);
    let r = kb.b.ins().fsub(r, magic);
    let small = kb.b.ins().fcmp(FloatCC::LessThan, a, magic);
    if lanes == 1 {
        let r = kb.b.ins().fcopysign(r, v);
        return kb.b.ins().select(small, r, v);
    }
    let vi = kb.b.ins().bitcast(types::I32X4, lane_flags(), v);
    let ri = kb.b.ins().bitcast(types::I32X4, lane_flags(), r);
    let sign = kb.b.ins().iconst(types::I32, 0x8000_0000u32 as i32 as i64);
    let sign = kb.b.ins().splat(types::I32X4, sign);
    let sign = kb.b.ins().band(vi, sign);
    let ri = kb.b.ins().bor(ri, sign);
    let r = kb.b.ins().bitcast(types::F32X4, lane_flags(), ri);
    let mask = kb.b.ins().bitcast(types::F32X4, lane_flags(), small);
    kb.b.ins().bitselect(mask, r, v)
}

/// `min(max(v, lo), hi)` for floats, NaN propagating (scalar or `F32X4`).
fn fclamp(kb: &mut Kb, v: Value, lo: f32, hi: f32, lanes: usize) -> Value {
    let (l, h) = (kb.fconst(lo, lanes), kb.fconst(hi, lanes));
    let v = kb.b.ins().fmax(v, l);
    kb.b.ins().fmin(v, h)
}

/// `min(max(v, lo), hi)` for signed integers of type `ty` (I64 or I32X4).
fn iclamp(kb: &mut Kb, v: Value, lo: i64, hi: i64, ty: Type) -> Value {
    if ty.is_vector() {
        let (l, h) = (kb.b.ins().iconst(types::I32, lo), kb.b.ins().iconst(types::I32, hi));
        let (l, h) = (kb.b.ins().splat(ty, l), kb.b.ins().splat(ty, h));
        let v = kb.b.ins().smax(v, l);
        return kb.b.ins().smin(v, h);
    }
    let below = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, lo);
    let l = kb.b.ins().iconst(ty, lo);
    let v = kb.b.ins().select(below, l, v);
    let above = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, v, hi);
    let h = kb.b.ins().iconst(ty, hi);
    kb.b.ins().select(above, h, v)
}

/// Four lanes of an f32 scale at `addr`: one value splat (`splat`, the scale is shared along
/// the vector) or four consecutive ones, from the `j`-th group of four.
fn param_f32x4(kb: &mut Kb, addr: Value, splat: bool, j: usize) -> Value {
    if splat {
        let v = kb.load(types::F32, addr, 0);
        kb.b.ins().splat(types::F32X4, v)
    } else {
        kb.load(types::F32X4, addr, 16 * j as i32)
    }
}

/// Four lanes of an i8/u8/i32 zero point at `addr` as an `I32X4`: one value splat or four
/// consecutive ones from the `j`-th group of four, as [`param_f32x4`].
fn param_i32x4(kb: &mut Kb, dtype: DType, addr: Value, splat: bool, j: usize) -> Value {
    if splat {
        let z = kb.load_elem(dtype, addr);
        let z = kb.b.ins().ireduce(types::I32, z);
        kb.b.ins().splat(types::I32X4, z)
    } else {
        let a = if j == 0 { addr } else { kb.b.ins().iadd_imm_s(addr, (4 * j * dtype.size()) as i64) };
        load4_int(kb, dtype, a)
    }
}

/// Four consecutive i8/u8/i32 elements at `addr` as an `I32X4`.
pub(super) fn load4_int(kb: &mut Kb, dtype: DType, addr: Value) -> Value {
    if dtype == DType::I32 {
        return kb.load(types::I32X4, addr, 0);
    }
    let w = kb.load(types::I32, addr, 0);
    let v = kb.b.ins().scalar_to_vector(types::I32X4, w);
    let v = kb.b.ins().bitcast(types::I8X16, lane_flags(), v);
    if dtype == DType::I8 {
        let v = kb.b.ins().swiden_low(v);
        kb.b.ins().swiden_low(v)
    } else {
        let v = kb.b.ins().uwiden_low(v);
        kb.b.ins().uwiden_low(v)
    }
}

/// Stores the four lanes of `q` (an `I32X4` already within the range of `dtype`, i8 or u8)
/// as four bytes at `addr`.
fn store4_bytes(kb: &mut Kb, dtype: DType, q: Value, addr: Value) {
    let h = kb.b.ins().snarrow(q, q);
    let b = if dtype == DType::I8 { kb.b.ins().snarrow(h, h) } else { kb.b.ins().unarrow(h, h) };
    let w = kb.b.ins().bitcast(types::I32X4, lane_flags(), b);
    let w = kb.b.ins().extractlane(w, 0);
    kb.store(w, addr, 0);
}

/// Stores the sixteen lanes of `q` (four `I32X4`, already within the range of `dtype`, i8 or
/// u8) as sixteen bytes at `addr`.
fn store16_bytes(kb: &mut Kb, dtype: DType, q: [Value; 4], addr: Value) {
    let lo = kb.b.ins().snarrow(q[0], q[1]);
    let hi = kb.b.ins().snarrow(q[2], q[3]);
    let b = if dtype == DType::I8 { kb.b.ins().snarrow(lo, hi) } else { kb.b.ins().unarrow(lo, hi) };
    kb.store(b, addr, 0);
}

/// Sixteen consecutive i8/u8 elements at `addr` as four `I32X4`.
fn load16_int(kb: &mut Kb, dtype: DType, addr: Value) -> [Value; 4] {
    let v = kb.load(types::I8X16, addr, 0);
    let signed = dtype == DType::I8;
    let widen = |kb: &mut Kb, v: Value, high: bool| match (signed, high) {
        (true, false) => kb.b.ins().swiden_low(v),
        (true, true) => kb.b.ins().swiden_high(v),
        (false, false) => kb.b.ins().uwiden_low(v),
        (false, true) => kb.b.ins().uwiden_high(v),
    };
    let (lo, hi) = (widen(kb, v, false), widen(kb, v, true));
    [widen(kb, lo, false), widen(kb, lo, true), widen(kb, hi, false), widen(kb, hi, true)]
}

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: QuantizeLinear and DequantizeLinear are position-wise over the physical
/// extents, with scales and zero points per tensor, per block along a static axis, or per
/// axis (a symbolic axis too: the parameters then have that axis's dim, laid out alike);
/// DynamicQuantizeLinear takes its range over the run-time extents only.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let (axis, block) = match &cx.node.op {
        Op::QuantizeLinear(q) => (q.axis, q.block_size),
        Op::QuantizeDequantize(q) => (q.axis, q.block_size),
        Op::DequantizeLinear(d) => (d.axis, d.block_size),
        _ => (0, 0),
    };
    if let Some(x) = cx.in_id(0).filter(|_| cx.is_symbolic()) {
        let xs = &cx.g.ty(x).shape;
        for i in 1..cx.num_inputs() {
            let Some(p) = cx.in_id(i) else { continue };
            let ps = &cx.g.ty(p).shape;
            if ps.is_known() {
                continue;
            }
            let a = slmtvm_ir::shape::normalize_axis(axis, xs.rank()).map_err(|m| cx.error(m))?;
            // Each symbolic parameter dim is x's along the same axis (per axis: the quantized
            // axis; per block: any other than the blocked one), so both share a layout.
            let same = |k: usize, xa: usize| xs.0.get(xa).is_some_and(|d| d.poly() == ps.0[k].poly());
            let fits = match block {
                0 => ps.rank() == 1 && same(0, a),
                _ => {
                    ps.rank() == xs.rank()
                        && (0..ps.rank()).all(|k| ps.0[k].known().is_some() || (k != a && same(k, k)))
                }
            };
            if !fits {
                return Err(cx.refuse_symbolic(format!(
                    "input {i} (scale or zero point) of symbolic shape {ps} that is not x's along its axes"
                )));
            }
        }
    }
    match &cx.node.op {
        Op::QuantizeLinear(q) => quantize(kb, cx, q.axis, q.block_size, None),
        Op::QuantizeDequantize(q) => quantize(kb, cx, q.axis, q.block_size, Some(q.output_dtype)),
        Op::DequantizeLinear(d) => dequantize(kb, cx, d.axis, d.block_size),
        Op::DynamicQuantizeLinear(_) => dynamic_quantize(kb, cx),
        _ => Err(cx.unsupported("not a quantization operator")),
    }
}

/// The output range of a quantized dtype.
fn int_range(cx: &NodeCtx, dtype: DType) -> Result<(i64, i64)> {
    match dtype {
        DType::I8 => Ok((-128, 127)),
        DType::U8 => Ok((0, 255)),
        other => Err(cx.unsupported(format!("quantized dtype {other}"))),
    }
}

/// `q + z` (when there is a zero point) saturated to `range` (I64 or `I32X4`).
fn offset_saturate(kb: &mut Kb, q: Value, z: Option<Value>, (lo, hi): (i64, i64), ty: Type) -> Value {
    let q = if let Some(z) = z { kb.b.ins().iadd(q, z) } else { q };
    iclamp(kb, q, lo, hi, ty)
}

/// `(q − z)·scale` as the float type `fty` (F32 or `F32X4`; `q`, `z` the matching integers):
/// DequantizeLinear's arithmetic (the integer difference is exact, as the interpreter's f32
/// one is: 8-bit operands, or an i32 x whose zero point must be 0).
fn dequantize_value(kb: &mut Kb, q: Value, z: Option<Value>, scale: Value, fty: Type) -> Value {
    let d = if let Some(z) = z { kb.b.ins().isub(q, z) } else { q };
    let d = kb.b.ins().fcvt_from_sint(fty, d);
    kb.b.ins().fmul(d, scale)
}

/// `y = saturate(round_half_even(x / scale) + zero_point)`; with an f16 scale, `x` is rounded
/// to f16 and the quotient too (the division in the scale's precision, as the reference does
/// it). NaN gives the zero point. With `dequantized` (QuantizeDequantize: `q`'s dtype) the
/// quantized value is not stored but dequantized, `y = (q − zero_point)·scale` in f32.
fn quantize(kb: &mut Kb, cx: &NodeCtx, axis: i64, block: usize, dequantized: Option<DType>) -> Result<()> {
    let (xd, sd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (xt, st, yt) = (cx.in_dtype(0)?, cx.in_dtype(1)?, cx.out_dtype(0));
    if !matches!(xt, DType::F32 | DType::F16 | DType::I32) || !st.is_float() {
        return Err(cx.unsupported(format!("x {xt} with scale {st}")));
    }
    if dequantized.is_some() && (xt, st, yt) != (DType::F32, DType::F32, DType::F32) {
        return Err(cx.unsupported(format!("QuantizeDequantize of {xt} with scale {st}")));
    }
    let (lo, hi) = int_range(cx, dequantized.unwrap_or(yt))?;
    let zp = match cx.in_ptr_opt(2) {
        Some(p) => {
            let zt = cx.in_dtype(2)?;
            int_range(cx, zt)?;
            Some((p, zt))
        }
        None => None,
    };
    let g = granularity(cx, &xd, &sd, axis, block)?;
    let (xp, sp, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.out_ptr(0));
    let vector = kb.caps.vector && xt == DType::F32 && st == DType::F32;
    for seg in segments(&xd, g) {
        walk(kb, &seg, vector, &mut |kb, s| {
            let (xa, sa, ya) = (at(kb, xp, s.xi, xt), at(kb, sp, s.pi, st), at(kb, yp, s.xi, yt));
            if s.lanes >= 4 {
                let za = zp.map(|(zptr, zt)| (at(kb, zptr, s.pi, zt), zt));
                let mut q = [None; 4];
                for (j, qj) in q.iter_mut().enumerate().take(s.lanes / 4) {
                    let v = kb.load(types::F32X4, xa, 16 * j as i32);
                    let sc = param_f32x4(kb, sa, s.p_splat, j);
                    let r = kb.b.ins().fdiv(v, sc);
                    let r = round_even(kb, r);
                    // Saturating conversion (NaN → 0, so NaN gives the zero point), then an
                    // integer clamp that keeps the zero point's addition from wrapping: two
                    // instructions where a NaN-propagating float clamp takes sixteen on x86.
                    let c = kb.b.ins().fcvt_to_sint_sat(types::I32X4, r);
                    let c = iclamp(kb, c, -1024, 1024, types::I32X4);
                    let z = za.map(|(za, zt)| param_i32x4(kb, zt, za, s.p_splat, j));
                    let c = offset_saturate(kb, c, z, (lo, hi), types::I32X4);
                    if dequantized.is_some() {
                        let y = dequantize_value(kb, c, z, sc, types::F32X4);
                        kb.store(y, ya, 16 * j as i32);
                    }
                    *qj = Some(c);
                }
                match q {
                    _ if dequantized.is_some() => {}
                    [Some(a), Some(b), Some(c), Some(d)] => store16_bytes(kb, yt, [a, b, c, d], ya),
                    [Some(a), ..] => store4_bytes(kb, yt, a, ya),
                    _ => {}
                }
                return;
            }
            let v = kb.load_elem(xt, xa);
            let mut v = kb.convert(xt, DType::F32, v);
            let sc = kb.load_elem(st, sa);
            if st == DType::F16 {
                let h = kb.f32_to_f16(v);
                v = kb.f16_to_f32(h);
            }
            let mut r = kb.b.ins().fdiv(v, sc);
            if st == DType::F16 {
                let h = kb.f32_to_f16(r);
                r = kb.f16_to_f32(h);
            }
            let r = round_even(kb, r);
            let r = fclamp(kb, r, -1024.0, 1024.0, 1);
            let q = kb.b.ins().fcvt_to_sint_sat(types::I64, r);
            let z = zp.map(|(zptr, zt)| {
                let za = at(kb, zptr, s.pi, zt);
                kb.load_elem(zt, za)
            });
            let q = offset_saturate(kb, q, z, (lo, hi), types::I64);
            if dequantized.is_some() {
                let y = dequantize_value(kb, q, z, sc, types::F32);
                kb.store_elem(yt, y, ya);
                return;
            }
            kb.store_elem(yt, q, ya);
        });
    }
    Ok(())
}

/// `y = (x − zero_point) · scale` in f32, rounded once to the scale's dtype.
fn dequantize(kb: &mut Kb, cx: &NodeCtx, axis: i64, block: usize) -> Result<()> {
    let (xd, sd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (xt, st, yt) = (cx.in_dtype(0)?, cx.in_dtype(1)?, cx.out_dtype(0));
    if !matches!(xt, DType::I8 | DType::U8 | DType::I32) || !st.is_float() || yt != st {
        return Err(cx.unsupported(format!("x {xt} with scale {st}")));
    }
    let zp = match cx.in_ptr_opt(2) {
        Some(p) => Some((p, cx.in_dtype(2)?)),
        None => None,
    };
    let g = granularity(cx, &xd, &sd, axis, block)?;
    let (xp, sp, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.out_ptr(0));
    let vector = kb.caps.vector && st == DType::F32;
    for seg in segments(&xd, g) {
        walk(kb, &seg, vector, &mut |kb, s| {
            let (xa, sa, ya) = (at(kb, xp, s.xi, xt), at(kb, sp, s.pi, st), at(kb, yp, s.xi, yt));
            if s.lanes >= 4 {
                let xs: Vec<Value> = if s.lanes == 16 && xt != DType::I32 {
                    load16_int(kb, xt, xa).to_vec()
                } else {
                    (0..s.lanes / 4)
                        .map(|j| {
                            let a = if j == 0 { xa } else { kb.b.ins().iadd_imm_s(xa, (4 * j * xt.size()) as i64) };
                            load4_int(kb, xt, a)
                        })
                        .collect()
                };
                let za = zp.map(|(zptr, zt)| (at(kb, zptr, s.pi, zt), zt));
                for (j, x) in xs.into_iter().enumerate() {
                    let z = za.map(|(za, zt)| param_i32x4(kb, zt, za, s.p_splat, j));
                    let sc = param_f32x4(kb, sa, s.p_splat, j);
                    let y = dequantize_value(kb, x, z, sc, types::F32X4);
                    kb.store(y, ya, 16 * j as i32);
                }
                return;
            }
            let v = kb.load_elem(xt, xa);
            let z = zp.map(|(zptr, zt)| {
                let za = at(kb, zptr, s.pi, zt);
                kb.load_elem(zt, za)
            });
            let sc = kb.load_elem(st, sa);
            let y = dequantize_value(kb, v, z, sc, types::F32);
            kb.store_elem(yt, y, ya);
        });
    }
    Ok(())
}

/// `m` replaced by `v` where `v > m` (NaN never replaces), scalar or `F32X4`.
fn keep_greater(kb: &mut Kb, v: Value, m: Value, greater: bool) -> Value {
    // `m < v` (not `v > m`) for the greater: the vector forms are then the patterns x86 lowers
    // to one `maxps`/`minps` (which return `m` when `v` is NaN, as this does).
    let c = if greater { kb.b.ins().fcmp(FloatCC::LessThan, m, v) } else { kb.b.ins().fcmp(FloatCC::LessThan, v, m) };
    if kb.ty(v).is_vector() {
        let mask = kb.b.ins().bitcast(types::F32X4, lane_flags(), c);
        kb.b.ins().bitselect(mask, v, m)
    } else {
        kb.b.ins().select(c, v, m)
    }
}

/// Four f32 lanes `r = x / scale` quantized to u8 values (an `I32X4`) with the zero point
/// `zf` (an integral f32 in [0, 255], splat): `r` clamped to `[−zf, 255 − zf]` (`neg`, `hi`,
/// splat) first (a NaN
/// to `−zf`, so it gives 0), which commutes with rounding as the bounds are integers, then
/// rounded half to even by adding 1.5·2²³ (|r| ≤ 255), the zero point added exactly, and the
/// integer read from the float's low mantissa bits: the reference's
/// `clamp(round(x / scale) + zp, 0, 255)` in a few instructions (one `maxps` and one
/// `minps` on x86). A NaN zero point (a range with both infinities) gives 0 everywhere:
/// `valid` is all ones, or zeros when `zf` is NaN.
fn quantize_u8x4(kb: &mut Kb, r: Value, zf: Value, (neg, hi, valid): (Value, Value, Value)) -> Value {
    let r = keep_greater(kb, r, neg, true);
    let r = keep_greater(kb, r, hi, false);
    let magic = kb.fconst(12_582_912.0, 4);
    let u = kb.b.ins().fadd(r, magic);
    let u = kb.b.ins().fadd(u, zf);
    let bits = kb.b.ins().bitcast(types::I32X4, lane_flags(), u);
    let m = kb.b.ins().iconst(types::I32, 0x4B40_0000);
    let m = kb.b.ins().splat(types::I32X4, m);
    let q = kb.b.ins().isub(bits, m);
    kb.b.ins().band(q, valid)
}

/// The range `[min(0, min x), max(0, max x)]` (NaN skipped), `scale = range / 255` (or
/// `1/255` for an empty range), `zero_point = round(clamp(−min / scale, 0, 255))`,
/// `y = clamp(round(x / scale) + zero_point, 0, 255)`, all in f32 as the reference does; NaN
/// results saturate to 0. The node may use a prefix of the three outputs.
fn dynamic_quantize(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    if cx.in_dtype(0)? != DType::F32 {
        return Err(cx.unsupported(format!("x {}", cx.in_dtype(0)?)));
    }
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let dims = cx.in_dims(0)?;
    let r = dims.len();
    // The elements walked: the whole tensor as one run, or with symbolic dims every row (the
    // run-time extents of the leading axes) to the run-time extent of the last axis, so the
    // padding beyond them never enters the range.
    let (rows, rstrides, len) = if cx.is_symbolic() && r > 0 {
        (cx.extents(kb, xv, 0..r - 1)?, strides_of(&dims)[..r - 1].to_vec(), cx.extent(kb, xv, r - 1)?)
    } else {
        (Vec::new(), Vec::new(), kb.iconst(dims.iter().product::<usize>() as i64))
    };
    let walk = |kb: &mut Kb, body: &mut dyn FnMut(&mut Kb, Value, usize)| {
        let vector = kb.caps.vector;
        kb.nest_runtime(&rows, &mut |kb, idx| {
            let base = kb.linear(0, idx, &rstrides);
            let end = kb.b.ins().iadd(base, len);
            kb.for_lanes(base, end, vector, body);
        });
    };
    let xp = cx.in_ptr(0)?;
    // Pass 1: the range, lane-wise then across lanes, starting from 0.
    let (vmax, vmin) = (kb.b.declare_var(types::F32X4), kb.b.declare_var(types::F32X4));
    let (smax, smin) = (kb.b.declare_var(types::F32), kb.b.declare_var(types::F32));
    let (z4, z1) = (kb.fconst(0.0, 4), kb.fconst(0.0, 1));
    for (v, z) in [(vmax, z4), (vmin, z4), (smax, z1), (smin, z1)] {
        kb.b.def_var(v, z);
    }
    walk(kb, &mut |kb, i, lanes| {
        let a = kb.addr(xp, i, 4);
        let (ty, hi, lo) = if lanes == 4 { (types::F32X4, vmax, vmin) } else { (types::F32, smax, smin) };
        let v = kb.load(ty, a, 0);
        let m = kb.b.use_var(hi);
        let m = keep_greater(kb, v, m, true);
        kb.b.def_var(hi, m);
        let m = kb.b.use_var(lo);
        let m = keep_greater(kb, v, m, false);
        kb.b.def_var(lo, m);
    });
    let (mut maxv, mut minv) = (kb.b.use_var(smax), kb.b.use_var(smin));
    if kb.caps.vector {
        let (vm, vn) = (kb.b.use_var(vmax), kb.b.use_var(vmin));
        for k in 0..4 {
            let l = kb.b.ins().extractlane(vm, k);
            maxv = keep_greater(kb, l, maxv, true);
            let l = kb.b.ins().extractlane(vn, k);
            minv = keep_greater(kb, l, minv, false);
        }
    }
    // Scale and zero point.
    let range = kb.b.ins().fsub(maxv, minv);
    let empty = kb.b.ins().fcmp(FloatCC::Equal, maxv, minv);
    let one = kb.fconst(1.0, 1);
    let range = kb.b.ins().select(empty, one, range);
    let c255 = kb.fconst(255.0, 1);
    let scale = kb.b.ins().fdiv(range, c255);
    let neg = kb.b.ins().fneg(minv);
    let zf = kb.b.ins().fdiv(neg, scale);
    let zf = fclamp(kb, zf, 0.0, 255.0, 1);
    let zf = round_even(kb, zf);
    if cx.num_outputs() > 1 {
        kb.store(scale, cx.out_ptr(1), 0);
    }
    if cx.num_outputs() > 2 {
        let zi = kb.b.ins().fcvt_to_sint_sat(types::I32, zf);
        let zb = kb.b.ins().ireduce(types::I8, zi);
        kb.store(zb, cx.out_ptr(2), 0);
    }
    // Pass 2: quantize.
    let yp = cx.out_ptr(0);
    let (s4, z4) = if kb.caps.vector {
        (kb.b.ins().splat(types::F32X4, scale), kb.b.ins().splat(types::F32X4, zf))
    } else {
        (scale, zf)
    };
    let bounds = {
        let neg = kb.b.ins().fneg(z4);
        let c255 = kb.fconst(255.0, kb.lanes(z4));
        let ordered = kb.b.ins().fcmp(FloatCC::Equal, z4, z4);
        let valid = if kb.caps.vector { kb.b.ins().bitcast(types::I32X4, lane_flags(), ordered) } else { ordered };
        (neg, kb.b.ins().fsub(c255, z4), valid)
    };
    walk(kb, &mut |kb, i, lanes| {
        let a = kb.addr(xp, i, 4);
        let ya = kb.b.ins().iadd(yp, i);
        let (ty, s, z, qty) =
            if lanes == 4 { (types::F32X4, s4, z4, types::I32X4) } else { (types::F32, scale, zf, types::I32) };
        let v = kb.load(ty, a, 0);
        let r = kb.b.ins().fdiv(v, s);
        if lanes == 4 {
            let q = quantize_u8x4(kb, r, z, bounds);
            store4_bytes(kb, DType::U8, q, ya);
        } else {
            let r = round_even(kb, r);
            let r = kb.b.ins().fadd(r, z);
            let r = fclamp(kb, r, 0.0, 255.0, lanes);
            let q = kb.b.ins().fcvt_to_sint_sat(qty, r);
            let q = kb.b.ins().ireduce(types::I8, q);
            kb.store(q, ya, 0);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cover_each_element_once() {
        // Per axis on the middle axis of [2, 3, 4].
        let s = segments(&[2, 3, 4], Granularity::Axis(1));
        assert_eq!(s, vec![Seg { dims: vec![2, 3, 4], xs: vec![12, 4, 1], ps: vec![0, 1, 0], x0: 0, p0: 0 }]);
        // Per axis on the last axis merges the leading axes.
        let s = segments(&[2, 3, 4], Granularity::Axis(2));
        assert_eq!(s, vec![Seg { dims: vec![6, 4], xs: vec![4, 1], ps: vec![0, 1], x0: 0, p0: 0 }]);
        // Blocks of 2 over 5 columns: two full blocks and a partial one.
        let s = segments(&[3, 5], Granularity::Blocked { axis: 1, block: 2 });
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], Seg { dims: vec![3, 2, 2], xs: vec![5, 2, 1], ps: vec![3, 1, 0], x0: 0, p0: 0 });
        assert_eq!(s[1], Seg { dims: vec![3], xs: vec![5], ps: vec![3], x0: 4, p0: 2 });
        // Empty tensors have no loops; a scalar has one step.
        assert!(segments(&[0, 4], Granularity::Tensor).is_empty());
        assert_eq!(segments(&[], Granularity::Tensor)[0].dims, vec![1]);
    }
}
