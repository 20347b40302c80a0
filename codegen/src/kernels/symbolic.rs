//! Nodes with symbolic dims (see [`crate::layout`] for the bound layout).
//!
//! [`emit`] decides, per operator, whether the ordinary kernel run over the physical (bound)
//! extents is correct for every run-time value of the symbols — position-wise work, where
//! what lies beyond the valid prefix of an axis never reaches a valid element — or whether the
//! run-time extent is needed. For the latter it emits the kernels here, which read the symbol
//! values: `Shape`/`Size` (the values themselves), `Softmax` along a symbolic axis, `MatMul`
//! contracting a symbolic axis, and `Slice` with run-time ends. (`Attention` needs the
//! run-time S and T too; its ordinary kernel reads them itself.) Every other case that would
//! need a run-time extent is refused with an error naming the node and the axis.

use super::NodeCtx;
use super::math::exp;
use crate::Result;
use crate::emit::{Kb, strides_of};
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::Variable;
use slmtvm_ir::{DType, Dim, Op, Poly};

/// Emits `cx.node`'s kernel when it needs the symbols' run-time values (returns true); returns
/// false when the ordinary kernel over the physical extents is correct.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<bool> {
    let g = cx.g;
    let sh = |v: slmtvm_ir::ValueId| &g.ty(v).shape.0;
    let out0 = sh(cx.out_id(0));
    let axis_sym = |v: slmtvm_ir::ValueId, a: usize| sh(v).get(a).is_some_and(|d| d.known().is_none());
    let refuse = |what: String| Err(cx.unsupported(format!("{what} (symbolic dims: run-time extent needed)")));
    match &cx.node.op {
        // Position-wise: every input dim is the output's or 1.
        Op::Unary(_) | Op::Binary(_) | Op::Clip(_) | Op::Where(_) | Op::Cast(_) | Op::FloatClass(_) | Op::Expand(_) => {
            let r = out0.len();
            let data_inputs = if matches!(cx.node.op, Op::Expand(_)) { 1 } else { cx.num_inputs() };
            for i in 0..data_inputs {
                let Some(v) = cx.in_id(i) else { continue };
                let s = sh(v);
                for (k, d) in s.iter().enumerate() {
                    let o = &out0[r - s.len() + k];
                    if *d != Dim::Known(1) && d.poly() != o.poly() {
                        return refuse(format!("input {i} dim {d} broadcast against {o}"));
                    }
                }
            }
            Ok(false)
        }
        Op::Transpose(_)
        | Op::Trilu(_)
        | Op::Range(_)
        | Op::ConstantOfShape(_)
        | Op::Reshape(_)
        | Op::Flatten(_)
        | Op::Squeeze(_)
        | Op::Unsqueeze(_)
        | Op::LayerNorm(_)
        | Op::RmsNorm(_) => {
            let norm_axis = match &cx.node.op {
                Op::LayerNorm(ln) => Some(ln.axis),
                Op::RmsNorm(rn) => Some(rn.axis),
                _ => None,
            };
            if let Some(axis) = norm_axis {
                let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
                let a = slmtvm_ir::shape::normalize_axis(axis, sh(x).len()).map_err(|m| cx.error(m))?;
                if (a..sh(x).len()).any(|k| axis_sym(x, k)) {
                    return refuse(format!("normalizing over symbolic axes {:?}", &sh(x)[a..]));
                }
            }
            if let Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) = &cx.node.op {
                let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
                if !crate::layout::view_keeps_layout(sh(x), out0) {
                    repack(kb, cx)?;
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Op::CumSum(c) => {
            let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
            let a = cx
                .in_const(1)
                .and_then(|t| t.to_i64_vec().ok())
                .and_then(|v| v.first().copied())
                .ok_or_else(|| cx.unsupported("the axis must be a constant"))?;
            let a = slmtvm_ir::shape::normalize_axis(a, sh(x).len()).map_err(|m| cx.error(m))?;
            if c.reverse && axis_sym(x, a) {
                refuse(format!("a reverse running sum along symbolic axis {a}"))
            } else {
                Ok(false)
            }
        }
        // Gather wraps negative indices with the run-time extent of a symbolic axis.
        Op::Gather(_) => Ok(false),
        // The ordinary Attention kernel loops over the run-time extents of S and T itself.
        Op::Attention(_) => Ok(false),
        // Dense and FusedMlp compute the run-time rows of x's symbolic leading dims themselves.
        Op::Dense(_) | Op::FusedMlp(_) => Ok(false),
        Op::Concat(c) => {
            let a = slmtvm_ir::shape::normalize_axis(c.axis, out0.len()).map_err(|m| cx.error(m))?;
            let n = cx.num_inputs();
            let shifted = (0..n.saturating_sub(1)).any(|i| cx.in_id(i).is_some_and(|v| axis_sym(v, a)));
            if shifted {
                concat_runtime(kb, cx, a)?;
                return Ok(true);
            }
            Ok(false)
        }
        Op::Split(s) => {
            let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
            let a = slmtvm_ir::shape::normalize_axis(s.axis, sh(x).len()).map_err(|m| cx.error(m))?;
            if axis_sym(x, a) { refuse(format!("splitting along symbolic axis {a}")) } else { Ok(false) }
        }
        Op::Gemm(_) => {
            let a = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
            if sh(a).iter().any(|d| d.known().is_none())
                && sh(cx.in_id(1).unwrap_or(a)).iter().any(|d| d.known().is_none())
            {
                return refuse("Gemm with symbolic dims on both operands".into());
            }
            Ok(false)
        }
        Op::MatMul(_) => {
            let (a, b) = (
                cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?,
                cx.in_id(1).ok_or_else(|| cx.error("input 1 is required"))?,
            );
            let ra = sh(a).len();
            if ra >= 1 && axis_sym(a, ra - 1) {
                matmul_runtime_k(kb, cx)?;
                return Ok(true);
            }
            let _ = b;
            Ok(false)
        }
        Op::Softmax(smx) => {
            let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
            let a = slmtvm_ir::shape::normalize_axis(smx.axis, sh(x).len()).map_err(|m| cx.error(m))?;
            if !axis_sym(x, a) {
                return Ok(false);
            }
            softmax_runtime(kb, cx, a)?;
            Ok(true)
        }
        Op::Reduce(r) => {
            let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
            let rank = sh(x).len();
            let axes: Vec<usize> = match &r.axes {
                Some(ax) => ax.iter().filter_map(|&a| slmtvm_ir::shape::normalize_axis(a, rank).ok()).collect(),
                None if cx.in_id(1).is_some() => return refuse("reduction axes given at run time".into()),
                None => (0..rank).collect(),
            };
            if axes.iter().any(|&a| axis_sym(x, a)) {
                return refuse(format!("reducing over symbolic axes of {}", g.ty(x).shape));
            }
            Ok(false)
        }
        Op::Shape(_) | Op::Size(_) => {
            shape_runtime(kb, cx)?;
            Ok(true)
        }
        Op::Slice(_) => {
            slice_runtime(kb, cx)?;
            Ok(true)
        }
        Op::BatchNorm(_) => Ok(false),
        other => refuse(format!("{} on symbolic shapes", other.kind_name())),
    }
}

/// Emits loops over the run-time `extents` (outermost first), calling `body` with the indices.
pub(crate) fn nest_runtime(
    kb: &mut Kb,
    extents: &[Value],
    idx: &mut Vec<Value>,
    body: &mut dyn FnMut(&mut Kb, &[Value]),
) {
    if idx.len() == extents.len() {
        body(kb, idx);
        return;
    }
    let zero = kb.iconst(0);
    let hi = extents[idx.len()];
    kb.for_range(zero, hi, 1, |kb, i| {
        idx.push(i);
        nest_runtime(kb, extents, idx, body);
        idx.pop();
    });
}

/// A reshape that moves a symbolic dim within its group of axes: copies the logical elements
/// in row-major order from the input's physical layout to the output's (an odometer over the
/// output's run-time dims gives each element's place).
fn repack(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let y = cx.out_id(0);
    let (rx, ry) = (cx.g.ty(x).shape.rank(), cx.g.ty(y).shape.rank());
    let ex: Vec<Value> = (0..rx).map(|a| cx.extent(kb, x, a)).collect::<Result<_>>()?;
    let ey: Vec<Value> = (0..ry).map(|a| cx.extent(kb, y, a)).collect::<Result<_>>()?;
    let (sx, sy) = (strides_of(&cx.dims(x)?), strides_of(&cx.dims(y)?));
    let e = cx.out_dtype(0).size();
    let ty = match e {
        1 => types::I8,
        2 => types::I16,
        4 => types::I32,
        _ => types::I64,
    };
    let (xp, yp) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let odo: Vec<Variable> = (0..ry)
        .map(|_| {
            let z = kb.iconst(0);
            kb.var(z)
        })
        .collect();
    nest_runtime(kb, &ex, &mut Vec::new(), &mut |kb, idx| {
        let src = kb.linear(0, idx, &sx);
        let ps = kb.addr(xp, src, e);
        let v = kb.load(ty, ps, 0);
        let o: Vec<Value> = odo.iter().map(|&w| kb.b.use_var(w)).collect();
        let dst = kb.linear(0, &o, &sy);
        let pd = kb.addr(yp, dst, e);
        kb.store(v, pd, 0);
        let mut carry = kb.iconst(1);
        for j in (0..ry).rev() {
            let t = kb.b.ins().iadd(o[j], carry);
            let wrap = kb.b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, t, ey[j]);
            let zero = kb.iconst(0);
            let n = kb.b.ins().select(wrap, zero, t);
            kb.b.def_var(odo[j], n);
            carry = kb.b.ins().uextend(types::I64, wrap);
        }
    });
    Ok(())
}

/// Concat along axis `a` where an input before the last is symbolic along it: input `i` goes
/// at the run-time offset `Σ_{j<i} extent_j`, row by row over its run-time extent. When input
/// 0 and the output are the same buffer (a KV cache updated in place, see
/// [`crate::layout::Layout::in_place`]), input 0 is already where it belongs and is not copied.
fn concat_runtime(kb: &mut Kb, cx: &NodeCtx, a: usize) -> Result<()> {
    use cranelift_codegen::ir::condcodes::IntCC;
    let y = cx.out_id(0);
    let dy = cx.dims(y)?;
    let e = cx.out_dtype(0).size();
    let outer: usize = dy[..a].iter().product();
    let inner: usize = dy[a + 1..].iter().product();
    let yp = cx.out_ptr(0);
    let mut off = kb.iconst(0);
    for i in 0..cx.num_inputs() {
        let Some(v) = cx.in_id(i) else { continue };
        let dx = cx.dims(v)?;
        if dx[..a] != dy[..a] || dx[a + 1..] != dy[a + 1..] {
            return Err(cx.error(format!("input {i} of physical shape {dx:?} does not concatenate into {dy:?}")));
        }
        let ext = cx.extent(kb, v, a)?;
        let xp = cx.in_ptr(i)?;
        let (ra, rx) = (dy[a], dx[a]);
        let copy = |kb: &mut Kb, off: Value| {
            kb.for_const(0, outer as i64, 1, |kb, o| {
                let zero = kb.iconst(0);
                kb.for_range(zero, ext, 1, |kb, r| {
                    let srow = kb.b.ins().imul_imm_s(o, rx as i64);
                    let srow = kb.b.ins().iadd(srow, r);
                    let sidx = kb.b.ins().imul_imm_s(srow, inner as i64);
                    let src = kb.addr(xp, sidx, e);
                    let drow = kb.b.ins().imul_imm_s(o, ra as i64);
                    let drow = kb.b.ins().iadd(drow, off);
                    let drow = kb.b.ins().iadd(drow, r);
                    let didx = kb.b.ins().imul_imm_s(drow, inner as i64);
                    let dst = kb.addr(yp, didx, e);
                    super::movement::copy_run(kb, dst, src, inner * e, e);
                });
            });
        };
        if i == 0 && rx == ra {
            // Skip the copy when the caller passes the output buffer as input 0.
            let same = kb.b.ins().icmp(IntCC::Equal, xp, yp);
            let (copy_b, done) = (kb.b.create_block(), kb.b.create_block());
            kb.b.ins().brif(same, done, &[], copy_b, &[]);
            kb.b.switch_to_block(copy_b);
            copy(kb, off);
            kb.b.ins().jump(done, &[]);
            kb.b.switch_to_block(done);
        } else {
            copy(kb, off);
        }
        off = kb.b.ins().iadd(off, ext);
    }
    Ok(())
}

/// Shape / Size: the run-time dims (or their product).
fn shape_runtime(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let dims = &cx.g.ty(x).shape.0;
    let polys: Vec<Poly> = match &cx.node.op {
        Op::Shape(s) => dims[s.range(dims.len())].iter().map(Dim::poly).collect(),
        _ => vec![dims.iter().fold(Poly::constant(1), |a, d| a.mul(&d.poly()))],
    };
    let dst = cx.out_ptr(0);
    for (i, p) in polys.iter().enumerate() {
        let v = cx.size_value(kb, p, i64::MAX as usize)?;
        let at = kb.addr_const(dst, 8 * i as i64);
        kb.store(v, at, 0);
    }
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
    nest_runtime(kb, &exts, &mut Vec::new(), &mut |kb, idx| {
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

/// MatMul whose contraction axis is symbolic: `y[.., m, n] = Σ_{k < K} a[.., m, k]·b[.., k, n]`
/// over the run-time K, for every physical m and n; batch dims broadcast.
fn matmul_runtime_k(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let (av, bv) = (cx.in_id(0).ok_or_else(|| cx.error("input 0"))?, cx.in_id(1).ok_or_else(|| cx.error("input 1"))?);
    let (da, db, dy) = (cx.dims(av)?, cx.dims(bv)?, cx.out_dims(0)?);
    if da.len() < 2 || db.len() < 2 || cx.in_dtype(0)? != DType::F32 || cx.in_dtype(1)? != DType::F32 {
        return Err(cx.unsupported("a symbolic contraction needs f32 operands of rank >= 2"));
    }
    let (kphys, n) = (da[da.len() - 1], db[db.len() - 1]);
    if db[db.len() - 2] != kphys {
        return Err(cx.error(format!("contraction extents {kphys} and {} differ", db[db.len() - 2])));
    }
    let k = cx.extent(kb, av, da.len() - 1)?;
    let yv = cx.out_id(0);
    let m_run = cx.extent(kb, yv, dy.len() - 2)?;
    let batch = &dy[..dy.len() - 2];
    let bstr = |d: &[usize]| -> Vec<i64> {
        let st = strides_of(d);
        let off = batch.len() - (d.len() - 2);
        (0..batch.len()).map(|i| if i < off || d[i - off] == 1 { 0 } else { st[i - off] }).collect()
    };
    let (sa, sb, sy) = (bstr(&da), bstr(&db), strides_of(&dy));
    let (ap, bp, yp) = (cx.in_ptr(0)?, cx.in_ptr(1)?, cx.out_ptr(0));
    let vec = kb.caps.vector;
    let n4 = if vec { n / 4 * 4 } else { 0 };
    kb.nest(batch, &mut |kb, bi| {
        let a0 = kb.linear(0, bi, &sa);
        let b0 = kb.linear(0, bi, &sb);
        let y0 = kb.linear(0, bi, &sy[..batch.len()]);
        let zero = kb.iconst(0);
        kb.for_range(zero, m_run, 1, |kb, mi| {
            let arow = kb.b.ins().imul_imm_s(mi, kphys as i64);
            let arow = kb.b.ins().iadd(a0, arow);
            let yrow = kb.b.ins().imul_imm_s(mi, n as i64);
            let yrow = kb.b.ins().iadd(y0, yrow);
            let col = |kb: &mut Kb, j: Value, lanes: usize| {
                let z = kb.fconst(0.0, lanes);
                let acc = kb.var(z);
                let zero = kb.iconst(0);
                kb.for_range(zero, k, 1, |kb, kk| {
                    let ai = kb.b.ins().iadd(arow, kk);
                    let pa = kb.addr(ap, ai, 4);
                    let x = kb.load(types::F32, pa, 0);
                    let x = if lanes == 4 { kb.b.ins().splat(types::F32X4, x) } else { x };
                    let bi = kb.b.ins().imul_imm_s(kk, n as i64);
                    let bi = kb.b.ins().iadd(b0, bi);
                    let bi = kb.b.ins().iadd(bi, j);
                    let pb = kb.addr(bp, bi, 4);
                    let w = kb.load(if lanes == 4 { types::F32X4 } else { types::F32 }, pb, 0);
                    let old = kb.b.use_var(acc);
                    let new = kb.mul_add(x, w, old);
                    kb.b.def_var(acc, new);
                });
                let yi = kb.b.ins().iadd(yrow, j);
                let py = kb.addr(yp, yi, 4);
                let v = kb.b.use_var(acc);
                kb.store(v, py, 0);
            };
            if n4 > 0 {
                kb.for_const(0, n4 as i64, 4, |kb, j| col(kb, j, 4));
            }
            if n4 < n {
                kb.for_const(n4 as i64, n as i64, 1, |kb, j| col(kb, j, 1));
            }
        });
    });
    Ok(())
}

/// Slice of a tensor with symbolic dims or run-time ends: step 1 and constant, non-negative
/// starts (or starts that are symbolic sizes); copies the output's physical extent (limited
/// to what the input holds) from the start offsets.
fn slice_runtime(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let (dx, dy) = (cx.dims(x)?, cx.out_dims(0)?);
    let r = dx.len();
    let konst = |i: usize| cx.in_const(i).and_then(|t| t.to_i64_vec().ok());
    let starts = konst(1).ok_or_else(|| cx.unsupported("starts computed at run time"))?;
    let axes = match cx.in_id(3) {
        None => (0..starts.len() as i64).collect(),
        Some(_) => konst(3).ok_or_else(|| cx.unsupported("axes computed at run time"))?,
    };
    if let Some(st) = cx.in_id(4).map(|_| konst(4)) {
        let st = st.ok_or_else(|| cx.unsupported("steps computed at run time"))?;
        if st.iter().any(|&s| s != 1) {
            return Err(cx.unsupported("a step other than 1 on symbolic shapes"));
        }
    }
    let mut off = vec![0usize; r];
    for (i, &a) in axes.iter().enumerate() {
        let a = slmtvm_ir::shape::normalize_axis(a, r).map_err(|m| cx.error(m))?;
        let s = starts.get(i).copied().ok_or_else(|| cx.error("starts and axes differ in length"))?;
        let sym = cx.g.ty(x).shape.0[a].known().is_none();
        off[a] = match s {
            s if s >= 0 => (s as usize).min(dx[a]),
            s if !sym => (dx[a] as i64 + s).max(0) as usize,
            _ => return Err(cx.unsupported(format!("a negative start on symbolic axis {a}"))),
        };
    }
    let copy: Vec<usize> = (0..r).map(|a| dy[a].min(dx[a] - off[a])).collect();
    if copy.contains(&0) {
        return Ok(());
    }
    let xs = strides_of(&dx);
    let start: i64 = off.iter().zip(&xs).map(|(&o, &s)| o as i64 * s).sum();
    let e = cx.out_dtype(0).size();
    super::movement::strided_copy(kb, cx.out_ptr(0), cx.in_ptr(0)?, e, &copy, &strides_of(&dy), &xs, start);
    Ok(())
}
