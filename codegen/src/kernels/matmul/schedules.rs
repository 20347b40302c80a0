//! The register-tiled Cranelift schedules (broadcast, dot, scalar) and the epilogue each
//! stored value goes through.

use super::blocks::{End, col_blocks, loop_carry, row_blocks};
use super::{Acc, Bound, Cols, Epilogue, Mat, Problem, col_tiles};
use crate::emit::{Kb, flags, storage_type};
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use slmtvm_ir::DType;

/// A scalar element of `dtype` at `addr + off` in the accumulator type.
fn load_scalar(kb: &mut Kb, acc: Acc, dtype: DType, addr: Value, off: i32) -> Value {
    let raw = kb.load(storage_type(dtype), addr, off);
    match (acc, dtype) {
        (Acc::F32, DType::F16) => kb.f16_to_f32(raw),
        (Acc::I32, DType::I8) => kb.b.ins().sextend(types::I32, raw),
        (Acc::I32, DType::U8) => kb.b.ins().uextend(types::I32, raw),
        (Acc::I64, _) => kb.widen(dtype, raw),
        _ => raw,
    }
}

/// Four elements of `dtype` at `addr + off` as a vector of the accumulator type (f32, or
/// when `pair`, eight i8/u8 widened to two `I32X4`).
fn load_vectors(kb: &mut Kb, acc: Acc, dtype: DType, addr: Value, off: i32, pair: bool) -> Vec<Value> {
    if acc != Acc::I32 {
        let mut v = vec![kb.load(types::F32X4, addr, off)];
        if pair {
            v.push(kb.load(types::F32X4, addr, off + 16));
        }
        return v;
    }
    let h = if dtype == DType::I8 {
        kb.b.ins().sload8x8(flags(), addr, off)
    } else {
        kb.b.ins().uload8x8(flags(), addr, off)
    };
    let lo = kb.b.ins().swiden_low(h);
    let hi = kb.b.ins().swiden_high(h);
    vec![lo, hi]
}

/// `acc + a·b` in the accumulator type (scalar or vector).
fn mac(kb: &mut Kb, acc: Acc, a: Value, b: Value, c: Value) -> Value {
    match acc {
        Acc::F32 => kb.mul_add(a, b, c),
        _ => {
            let m = kb.b.ins().imul(a, b);
            kb.b.ins().iadd(m, c)
        }
    }
}

pub(super) fn zero(kb: &mut Kb, ty: Type) -> Value {
    let s = if ty.lane_type() == types::F32 { kb.b.ins().f32const(0.0) } else { kb.b.ins().iconst(ty.lane_type(), 0) };
    if ty.is_vector() { kb.b.ins().splat(ty, s) } else { s }
}

/// The broadcast schedule: tiles of `mr` rows × `nr` vector columns (`nr == 0`: the scalar
/// schedule, 4 × 4 scalar accumulators).
pub(super) fn broadcast(kb: &mut Kb, p: &Problem, o: &Bound, mr: usize, nr: usize) {
    let int = p.acc == Acc::I32 && nr > 0;
    let tiles = col_tiles(p.n, nr, int);
    row_blocks(kb, p.m, p.m_run, mr, &mut |kb, i0, rows| {
        col_blocks(kb, &tiles, p.n_run, &mut |kb, j0, cols| bcast_tile(kb, p, o, i0, j0, rows, cols));
    });
}

/// One tile of the broadcast schedule: rows `i0..i0 + rows`, columns from `j0`.
fn bcast_tile(kb: &mut Kb, p: &Problem, o: &Bound, i0: Value, j0: Value, rows: usize, cols: Cols) {
    let acc = p.acc;
    let pa = o.a.offset(kb, Some(i0), None);
    let pb = o.b.offset(kb, None, Some(j0));
    let za = o.za.map(|z| (z, z.offset(kb, Some(i0), None)));
    let zb = o.zb.map(|z| (z, z.offset(kb, None, Some(j0))));
    // Zero points constant along K are loaded once per tile.
    let za_fixed: Option<Vec<Value>> = za.filter(|(z, _)| z.cs == 0).map(|(z, base)| {
        (0..rows as i64)
            .map(|r| {
                let (addr, off) = z.at(kb, base, r, 0);
                load_scalar(kb, acc, z.dtype, addr, off)
            })
            .collect()
    });
    let zb_cols = |kb: &mut Kb, z: &Mat, base: Value| -> (Vec<Value>, Vec<Value>) {
        let mut vs = Vec::new();
        for v in 0..cols.vecs / 2 {
            let (addr, off) = z.at(kb, base, 0, 8 * v as i64);
            if z.cs == 1 {
                vs.extend(load_vectors(kb, acc, z.dtype, addr, off, true));
            } else {
                let s = load_scalar(kb, acc, z.dtype, addr, off);
                let s = kb.b.ins().splat(acc.vec_ty(), s);
                vs.extend([s, s]);
            }
        }
        if cols.vecs % 2 == 1 {
            // Only f32 uses single vectors, and f32 has no zero points.
            let (addr, off) = z.at(kb, base, 0, 8 * (cols.vecs / 2) as i64);
            vs.extend(load_vectors(kb, acc, z.dtype, addr, off, false));
        }
        let ss = (0..cols.scalars)
            .map(|c| {
                let (addr, off) = z.at(kb, base, 0, (4 * cols.vecs + c) as i64);
                load_scalar(kb, acc, z.dtype, addr, off)
            })
            .collect();
        (vs, ss)
    };
    let zb_fixed = match zb {
        Some((z, base)) if z.rs == 0 => Some(zb_cols(kb, &z, base)),
        _ => None,
    };

    // Loop state: moving pointers, then accumulators.
    let nacc = rows * (cols.vecs + cols.scalars);
    let mut state = vec![pa, pb];
    let moving_za = za.filter(|(z, _)| z.cs != 0);
    let moving_zb = zb.filter(|(z, _)| z.rs != 0);
    state.extend(moving_za.map(|(_, b)| b));
    state.extend(moving_zb.map(|(_, b)| b));
    let nptr = state.len();
    for _ in 0..rows {
        for _ in 0..cols.vecs {
            let z = zero(kb, acc.vec_ty());
            state.push(z);
        }
        for _ in 0..cols.scalars {
            let z = zero(kb, acc.ty());
            state.push(z);
        }
    }
    let (a, b) = (o.a, o.b);
    let step = |kb: &mut Kb, st: &[Value]| {
        let (pa, pb) = (st[0], st[1]);
        let mut at = 2;
        let pza = moving_za.map(|_| {
            at += 1;
            st[at - 1]
        });
        let pzb = moving_zb.map(|_| {
            at += 1;
            st[at - 1]
        });
        // B: vectors and scalars of this row of K.
        let mut bv = Vec::new();
        for v in 0..cols.vecs / 2 {
            let (addr, off) = b.at(kb, pb, 0, 8 * v as i64);
            bv.extend(load_vectors(kb, acc, b.dtype, addr, off, true));
        }
        if cols.vecs % 2 == 1 {
            let (addr, off) = b.at(kb, pb, 0, 8 * (cols.vecs / 2) as i64);
            bv.extend(load_vectors(kb, acc, b.dtype, addr, off, false));
        }
        let mut bs: Vec<Value> = (0..cols.scalars)
            .map(|c| {
                let (addr, off) = b.at(kb, pb, 0, (4 * cols.vecs + c) as i64);
                load_scalar(kb, acc, b.dtype, addr, off)
            })
            .collect();
        let zbk = match (&zb_fixed, pzb, o.zb) {
            (Some(f), _, _) => Some(f.clone()),
            (None, Some(base), Some(z)) => Some(zb_cols(kb, &z, base)),
            _ => None,
        };
        if let Some((zv, zs)) = zbk {
            for (x, z) in bv.iter_mut().zip(&zv) {
                *x = kb.b.ins().isub(*x, *z);
            }
            for (x, z) in bs.iter_mut().zip(&zs) {
                *x = kb.b.ins().isub(*x, *z);
            }
        }
        let mut next = Vec::with_capacity(st.len());
        for r in 0..rows {
            let (addr, off) = a.at(kb, pa, r as i64, 0);
            let mut x = load_scalar(kb, acc, a.dtype, addr, off);
            let zr = match (&za_fixed, pza, o.za) {
                (Some(f), _, _) => Some(f[r]),
                (None, Some(base), Some(z)) => {
                    let (addr, off) = z.at(kb, base, r as i64, 0);
                    Some(load_scalar(kb, acc, z.dtype, addr, off))
                }
                _ => None,
            };
            if let Some(z) = zr {
                x = kb.b.ins().isub(x, z);
            }
            let xs = if cols.vecs > 0 { Some(kb.b.ins().splat(acc.vec_ty(), x)) } else { None };
            let row = &st[nptr + r * (cols.vecs + cols.scalars)..];
            for (v, &bvv) in bv.iter().enumerate() {
                next.push(mac(kb, acc, xs.unwrap_or(x), bvv, row[v]));
            }
            for (c, &bss) in bs.iter().enumerate() {
                next.push(mac(kb, acc, x, bss, row[cols.vecs + c]));
            }
        }
        let mut ptrs = vec![kb.addr_const(pa, a.cs * a.size), kb.addr_const(pb, b.rs * b.size)];
        if let (Some(p), Some(z)) = (pza, o.za) {
            ptrs.push(kb.addr_const(p, z.cs * z.size));
        }
        if let (Some(p), Some(z)) = (pzb, o.zb) {
            ptrs.push(kb.addr_const(p, z.rs * z.size));
        }
        ptrs.extend(next);
        ptrs
    };
    let fin = match p.k_run {
        None => loop_carry(kb, 0, End::At(p.k as i64), 1, state, step),
        Some(k) => loop_carry(kb, 0, End::Run(k), 1, state, step),
    };
    let accs = &fin[nptr..];
    debug_assert_eq!(accs.len(), nacc);
    let tile = Tile { i0, j0 };
    for r in 0..rows {
        let row = &accs[r * (cols.vecs + cols.scalars)..][..cols.vecs + cols.scalars];
        for (c, &v) in row.iter().enumerate() {
            // Vectors hold 4 columns each, then one column per scalar.
            let col = if c < cols.vecs { 4 * c } else { 4 * cols.vecs + (c - cols.vecs) };
            store(kb, p, o, &tile, r as i64, col as i64, v);
        }
    }
    activate_tile(kb, p, o, &tile, rows, cols);
}

/// Dense's activation over a stored tile (`rows` rows, columns as `cols` from the tile's
/// origin): each stored value is loaded back (from L1), activated and stored again. Done after
/// all of the tile's stores, when its accumulators are dead, so the activation's polynomial has
/// the registers to itself (applied before each store, with the other accumulators live, it
/// spilled: MiniLM's Dense+GELU ran at half the speed of the product and a separate GELU).
pub(super) fn activate_tile(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, rows: usize, cols: Cols) {
    let (Epilogue::Dense { act: Some(act), .. } | Epilogue::Scaled { act: Some(act), .. }) = &p.epi else { return };
    reload_tile(kb, o, t, rows, cols, &mut |kb, _, _, v, addr, off| {
        let y = crate::kernels::elementwise::unary_float(kb, act, v);
        kb.store(y, addr, off);
    });
}

/// A visitor of a tile's reloaded values: `(kb, row, column, value, addr, offset)`.
type TileVisit<'f> = dyn FnMut(&mut Kb, i64, i64, Value, Value, i32) + 'f;

/// Loads back every stored value of a tile (`rows` rows, columns as `cols`: vectors of 4, then
/// scalars) and hands it to `f(kb, row, column, value, addr, offset)`.
pub(super) fn reload_tile(kb: &mut Kb, o: &Bound, t: &Tile, rows: usize, cols: Cols, f: &mut TileVisit) {
    let base = o.out.offset(kb, Some(t.i0), Some(t.j0));
    for r in 0..rows as i64 {
        for c in 0..cols.vecs + cols.scalars {
            let (col, ty) =
                if c < cols.vecs { (4 * c, types::F32X4) } else { (4 * cols.vecs + (c - cols.vecs), types::F32) };
            let (addr, off) = o.out.at(kb, base, r, col as i64);
            let v = kb.load(ty, addr, off);
            f(kb, r, col as i64, v, addr, off);
        }
    }
}

/// The origin of a tile.
pub(super) struct Tile {
    pub(super) i0: Value,
    pub(super) j0: Value,
}

/// Applies the epilogue to `v` (scalar or vector of 4 columns) for output (i0 + r, j0 + c) and
/// stores it.
pub(super) fn store(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, r: i64, c: i64, v: Value) {
    let lanes = kb.lanes(v);
    let vty = kb.ty(v);
    let load_c = |kb: &mut Kb, cm: &Mat| -> Value {
        let base = cm.offset(kb, Some(t.i0), Some(t.j0));
        let (addr, off) = cm.at(kb, base, r, c);
        if lanes == 4 && cm.cs == 1 {
            kb.load(types::F32X4, addr, off)
        } else {
            let s = load_scalar(kb, p.acc, cm.dtype, addr, off);
            // QDense's f32 scales and bias beside its i32 accumulators splat as f32.
            let sty = if cm.dtype == DType::F32 { types::F32X4 } else { vty };
            if lanes == 4 { kb.b.ins().splat(sty, s) } else { s }
        }
    };
    let y = match &p.epi {
        Epilogue::Plain => v,
        Epilogue::GemmF { alpha, beta, .. } => {
            let mut y = v;
            if *alpha != 1.0 {
                let a = kb.fconst(*alpha, lanes);
                y = kb.b.ins().fmul(a, y);
            }
            if let Some(cm) = &o.c {
                let mut cv = load_c(kb, cm);
                if *beta != 1.0 {
                    let b = kb.fconst(*beta, lanes);
                    cv = kb.b.ins().fmul(b, cv);
                }
                y = kb.b.ins().fadd(y, cv);
            }
            y
        }
        Epilogue::Dense { .. } => {
            let mut y = v;
            if let Some(cm) = &o.c {
                let bv = load_c(kb, cm);
                y = kb.b.ins().fadd(y, bv);
            }
            y
        }
        Epilogue::Scaled { .. } => {
            let fty = if lanes == 4 { types::F32X4 } else { types::F32 };
            let mut y = kb.b.ins().fcvt_from_sint(fty, v);
            if let Some((sa, sb)) = &o.scales {
                let (sa, sb) = (load_c(kb, sa), load_c(kb, sb));
                let scale = kb.b.ins().fmul(sa, sb);
                y = kb.b.ins().fmul(y, scale);
            }
            if let Some(cm) = &o.c {
                let bv = load_c(kb, cm);
                y = kb.b.ins().fadd(y, bv);
            }
            y
        }
        Epilogue::GemmI { alpha, beta, .. } => {
            let ty = p.acc.ty();
            match &o.c {
                None if *alpha == 1.0 => v,
                Some(cm) if *alpha == 1.0 && *beta == 1.0 => {
                    let cv = load_c(kb, cm);
                    kb.b.ins().iadd(v, cv)
                }
                c => {
                    let pf = kb.b.ins().fcvt_from_sint(types::F64, v);
                    let a = kb.b.ins().f64const(f64::from(*alpha));
                    let mut y = kb.b.ins().fmul(a, pf);
                    if let Some(cm) = c {
                        let cv = load_c(kb, cm);
                        let cf = kb.b.ins().fcvt_from_sint(types::F64, cv);
                        let b = kb.b.ins().f64const(f64::from(*beta));
                        let bc = kb.b.ins().fmul(b, cf);
                        y = kb.b.ins().fadd(y, bc);
                    }
                    kb.b.ins().fcvt_to_sint_sat(ty, y)
                }
            }
        }
    };
    let base = o.out.offset(kb, Some(t.i0), Some(t.j0));
    let (addr, off) = o.out.at(kb, base, r, c);
    if o.out.dtype == DType::F16 {
        let h = kb.f32_to_f16(y);
        kb.store(h, addr, off);
    } else {
        kb.store(y, addr, off);
    }
}

/// The dot schedule (f32, A and B contiguous along K): tiles of 2 rows × 4 columns of vector
/// dot products.
pub(super) fn dot(kb: &mut Kb, p: &Problem, o: &Bound) {
    let tiles: Vec<(usize, usize, Cols)> = {
        let mut t = Vec::new();
        if p.n >= 4 {
            t.push((4, p.n / 4, Cols { vecs: 0, scalars: 4 }));
        }
        if !p.n.is_multiple_of(4) {
            t.push((p.n % 4, 1, Cols { vecs: 0, scalars: p.n % 4 }));
        }
        t
    };
    row_blocks(kb, p.m, p.m_run, 2, &mut |kb, i0, rows| {
        col_blocks(kb, &tiles, p.n_run, &mut |kb, j0, cols| dot_tile(kb, p, o, i0, j0, rows, cols.scalars));
    });
}

/// One step along K of a dot tile: `ty` (`F32X4` or `F32`) values of `rows` A rows and `ncols`
/// B columns at the pointers `st[0]`, `st[1]`, multiplied into the accumulators `st[2..]`;
/// returns the pointers advanced by one `ty` and the new accumulators.
fn dot_step(kb: &mut Kb, a: &Mat, b: &Mat, rows: usize, ncols: usize, ty: Type, st: &[Value]) -> Vec<Value> {
    let (pa, pb) = (st[0], st[1]);
    let av: Vec<Value> = (0..rows as i64)
        .map(|r| {
            let (addr, off) = a.at(kb, pa, r, 0);
            kb.load(ty, addr, off)
        })
        .collect();
    let mut next = st[2..].to_vec();
    for c in 0..ncols {
        let (addr, off) = b.at(kb, pb, 0, c as i64);
        let bv = kb.load(ty, addr, off);
        for r in 0..rows {
            next[r * ncols + c] = kb.mul_add(av[r], bv, next[r * ncols + c]);
        }
    }
    let lanes = i64::from(ty.lane_count());
    let mut out = vec![kb.addr_const(pa, lanes * a.size), kb.addr_const(pb, lanes * b.size)];
    out.extend(next);
    out
}

fn dot_tile(kb: &mut Kb, p: &Problem, o: &Bound, i0: Value, j0: Value, rows: usize, ncols: usize) {
    let (a, b) = (o.a, o.b);
    let pa = a.offset(kb, Some(i0), None);
    let pb = b.offset(kb, None, Some(j0));
    let k4 = p.k / 4 * 4;
    let mut state = vec![pa, pb];
    for _ in 0..rows * ncols {
        let z = zero(kb, types::F32X4);
        state.push(z);
    }
    let fin =
        loop_carry(kb, 0, End::At(k4 as i64), 4, state, |kb, st| dot_step(kb, &a, &b, rows, ncols, types::F32X4, st));
    let mut state = vec![fin[0], fin[1]];
    for &v in &fin[2..] {
        let s = if k4 > 0 { kb.hsum(v) } else { kb.b.ins().f32const(0.0) };
        state.push(s);
    }
    let fin = loop_carry(kb, k4 as i64, End::At(p.k as i64), 1, state, |kb, st| {
        dot_step(kb, &a, &b, rows, ncols, types::F32, st)
    });
    let tile = Tile { i0, j0 };
    for r in 0..rows {
        for c in 0..ncols {
            store(kb, p, o, &tile, r as i64, c as i64, fin[2 + r * ncols + c]);
        }
    }
    activate_tile(kb, p, o, &tile, rows, Cols { vecs: 0, scalars: ncols });
}
