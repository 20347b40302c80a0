//! Data-movement and generator kernels: Reshape, Flatten, Squeeze and Unsqueeze (copies, for
//! the nodes the memory planner could not make views of their input: graph outputs),
//! Transpose, Concat, Split, Slice, Gather, Expand, Trilu, Shape, Size, Range and
//! ConstantOfShape.
//!
//! # How elements move
//! Every operator here but Range moves elements without looking at them, so the kernels copy
//! raw bits with integer types of the element's width (1, 2, 4 or 8 bytes), never converting.
//! Index maps are strided copies (`strided_copy`): per output axis an element stride into
//! the source (negative for reversed slices, 0 for broadcast axes) and a base offset; size-1
//! axes are dropped and adjacent axes that both sides walk contiguously are merged, so that
//! a Transpose `[B,S,H,D]→[B,H,S,D]` copies rows of `D` elements and a whole-tensor copy is
//! one run. Contiguous runs of static length are copied in chunks of the widest type the
//! target allows (16-byte `I8X16` with vectors, else 8-byte `I64`), the last chunk
//! overlapping its predecessor instead of a tail of narrower ones (aligned scalar runs end
//! with halving chunks instead, see below); runs of eight chunks and
//! more loop over four chunks a step. Concat and Split walk the output (input) row by row and
//! copy each part's run; Gather copies one run of `inner` elements per index.
//!
//! # Out-of-range gather indices
//! The interpreter rejects an index outside `-n..n` for an axis of size `n`; a kernel cannot
//! fail, so it wraps negative indices by adding `n` and then clamps to `0..=n-1`: an index
//! below `-n` reads row 0, one at or above `n` reads row `n-1`. It never reads out of bounds.
//! (Gathering from an empty axis into a non-empty output writes zeros.)
//!
//! # Alignment
//! Buffers are only guaranteed element alignment. Vector chunks (`I8X16`, byte lanes) and
//! element-wide accesses need no more; scalar chunks wider than an element (whole runs on
//! targets without vectors, runs under 16 bytes on the others) are taken only after a
//! run-time check that the run's pointers are aligned to them, else the run is copied element
//! by element, since some cores (riscv64 without Zicclsm) trap on misaligned accesses.

use super::NodeCtx;
use crate::Result;
use crate::emit::{Kb, compute_type, strides_of};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use cranelift_frontend::Variable;
use slmtvm_ir::shape::normalize_axis;
use slmtvm_ir::{DType, Dim, Op, Poly, Scalar, ValueId};

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims (see [`crate::layout`]): Transpose, Trilu, Range, ConstantOfShape and Gather
/// work position-wise over the physical extents (Transpose's copies loop over the run-time
/// extents of the output's symbolic axes, Gather over those of its indices and wraps negative
/// indices by the run-time extent of the data's axis); Expand is the elementwise walk's copy
/// (broadcasting static 1s, and symbolic dims when they are 1 at run time); a Reshape-like
/// view that moves a symbolic dim within its group of axes is repacked element by element;
/// Concat along an axis that is symbolic before the last input places each input at its
/// run-time offset, and Split along a symbolic axis takes each part from there likewise; Slice
/// copies from constant starts (any step along static axes); Shape and Size report the
/// run-time values.
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    if cx.is_symbolic() {
        let x = cx.in_id(0);
        match &cx.node.op {
            Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => {
                let x = x.ok_or_else(|| cx.error("input 0 is required"))?;
                if !crate::layout::view_keeps_layout(&cx.g.ty(x).shape.0, &cx.g.ty(cx.out_id(0)).shape.0) {
                    return repack(kb, cx);
                }
            }
            Op::Expand(_) => {
                cx.position_wise(1)?;
                return super::elementwise::expand_runtime(kb, cx);
            }
            Op::Concat(c) => {
                let y = cx.out_id(0);
                let a = axis_of(cx, c.axis, cx.g.ty(y).shape.rank())?;
                let n = cx.num_inputs();
                let ins: Vec<ValueId> = (0..n).filter_map(|i| cx.in_id(i)).collect();
                if ins[..ins.len().saturating_sub(1)].iter().any(|&v| cx.axis_symbolic(v, a))
                    || !same_layout_but(cx, &ins, y, a)?
                {
                    return join_runtime(kb, cx, a, true);
                }
            }
            Op::Split(s) => {
                let x = x.ok_or_else(|| cx.error("input 0 is required"))?;
                let a = axis_of(cx, s.axis, cx.g.ty(x).shape.rank())?;
                let outs: Vec<ValueId> = (0..cx.num_outputs()).map(|k| cx.out_id(k)).collect();
                if cx.axis_symbolic(x, a) || !same_layout_but(cx, &outs, x, a)? {
                    return join_runtime(kb, cx, a, false);
                }
            }
            Op::Shape(_) | Op::Size(_) => return shape_runtime(kb, cx),
            Op::Slice(_) => return slice_runtime(kb, cx),
            _ => {}
        }
    }
    match &cx.node.op {
        Op::Reshape(_) | Op::Flatten(_) | Op::Squeeze(_) | Op::Unsqueeze(_) => whole_copy(kb, cx),
        Op::Transpose(t) => transpose(kb, cx, t.perm.as_deref()),
        Op::Concat(c) => concat(kb, cx, c.axis),
        Op::Split(s) => split(kb, cx, s.axis),
        Op::Slice(_) => slice(kb, cx),
        Op::Gather(g) => gather(kb, cx, g.axis),
        Op::Expand(_) => expand(kb, cx),
        Op::Trilu(t) => trilu(kb, cx, t.upper),
        Op::Shape(_) | Op::Size(_) => shape_of(kb, cx),
        Op::Range(_) => range(kb, cx),
        Op::ConstantOfShape(c) => constant_of_shape(kb, cx, &c.value),
        other => Err(cx.unsupported(format!("{} is not a data-movement operator", other.kind_name()))),
    }
}

// ---------------------------------------------------------------------------------------
// Runs: contiguous byte ranges copied or filled in wide chunks.

/// The type of a `w`-byte chunk: an integer of that width, `I8X16` for 16 bytes.
fn chunk_ty(w: usize) -> Type {
    match w {
        1 => types::I8,
        2 => types::I16,
        4 => types::I32,
        8 => types::I64,
        _ => types::I8X16,
    }
}

/// The widest chunk the target allows: 16 bytes with vectors, else 8.
fn max_chunk(kb: &Kb) -> usize {
    if kb.caps.vector { 16 } else { 8 }
}

/// The chunk width for a static run of `n > 0` bytes: the largest power of two that is at
/// most `n` and the target's widest chunk.
fn chunk_width(kb: &Kb, n: usize) -> usize {
    let mut w = max_chunk(kb);
    while w > n {
        w /= 2;
    }
    w
}

/// What a run's chunks do: `chunk(kb, ty, off, imm)` accesses a `ty` at byte `off + imm`.
type Chunk<'a> = dyn FnMut(&mut Kb, Type, Value, i32) + 'a;

/// Calls `chunk` for chunks of `w` bytes covering bytes `0..n` of a run (`w <= n`, `n` a
/// multiple of the element size, which divides `w`): a loop of four chunks a step when the
/// run has eight chunks or more, then the rest unrolled, the last chunk overlapping the one
/// before when `n` is not a multiple of `w` (so chunks start on element boundaries but not
/// necessarily on multiples of `w`).
fn run_chunks(kb: &mut Kb, n: usize, w: usize, chunk: &mut Chunk) {
    let ty = chunk_ty(w);
    let looped = looped_chunks(kb, n, w, chunk);
    if looped < n {
        let base = kb.iconst(looped as i64);
        let mut off = looped;
        while off + w <= n {
            chunk(kb, ty, base, (off - looped) as i32);
            off += w;
        }
        if off < n {
            chunk(kb, ty, base, (n as i64 - w as i64 - looped as i64) as i32);
        }
    }
}

/// Like [`run_chunks`], but every chunk starts on a multiple of its width: `w`-byte chunks,
/// then halving widths down to the element size for the tail.
fn aligned_chunks(kb: &mut Kb, n: usize, w: usize, chunk: &mut Chunk) {
    let looped = looped_chunks(kb, n, w, chunk);
    if looped < n {
        let base = kb.iconst(looped as i64);
        let mut off = looped;
        let mut c = w;
        while off < n && c > 0 {
            if off + c <= n {
                chunk(kb, chunk_ty(c), base, (off - looped) as i32);
                off += c;
            } else {
                c /= 2;
            }
        }
    }
}

/// The loop of four `w`-byte chunks a step over the first bytes of an `n`-byte run, when the
/// run has eight chunks or more; returns the bytes it covers.
fn looped_chunks(kb: &mut Kb, n: usize, w: usize, chunk: &mut Chunk) -> usize {
    let block = 4 * w;
    if n < 2 * block {
        return 0;
    }
    let looped = n / block * block;
    let ty = chunk_ty(w);
    kb.for_const(0, looped as i64, block as i64, |kb, i| {
        for k in 0..4 {
            chunk(kb, ty, i, (k * w) as i32);
        }
    });
    looped
}

/// Emits the chunks of a static run of `n` bytes of `e`-byte elements whose pointers are
/// `ptrs`. Vector chunks and element-wide ones need no alignment; scalar chunks wider than an
/// element are used only when every pointer is aligned to them (checked at run time), as
/// some cores (riscv64 without Zicclsm) trap on misaligned accesses. `prepare(kb, w)` runs
/// before the chunks of width `w` are emitted, outside any loop.
fn emit_run(
    kb: &mut Kb,
    ptrs: &[Value],
    n: usize,
    e: usize,
    prepare: &mut dyn FnMut(&mut Kb, usize),
    chunk: &mut Chunk,
) {
    if n == 0 {
        return;
    }
    let w = chunk_width(kb, n);
    if w <= e || chunk_ty(w).is_vector() {
        prepare(kb, w);
        run_chunks(kb, n, w, chunk);
        return;
    }
    if_aligned(kb, ptrs, w, &mut |kb, aligned| {
        if aligned {
            prepare(kb, w);
            aligned_chunks(kb, n, w, chunk);
        } else {
            prepare(kb, e);
            run_chunks(kb, n, e, chunk);
        }
    });
}

/// Emits `body(kb, true)` where every pointer of `ptrs` is aligned to `w` bytes (checked at run
/// time) and `body(kb, false)` otherwise, then continues after both.
fn if_aligned(kb: &mut Kb, ptrs: &[Value], w: usize, body: &mut dyn FnMut(&mut Kb, bool)) {
    let mut any = ptrs[0];
    for &p in &ptrs[1..] {
        any = kb.b.ins().bor(any, p);
    }
    let low = kb.b.ins().band_imm_s(any, w as i64 - 1);
    let (aligned, unaligned, done) = (kb.b.create_block(), kb.b.create_block(), kb.b.create_block());
    kb.b.ins().brif(low, unaligned, &[], aligned, &[]);
    kb.b.switch_to_block(aligned);
    body(kb, true);
    kb.b.ins().jump(done, &[]);
    kb.b.switch_to_block(unaligned);
    body(kb, false);
    kb.b.ins().jump(done, &[]);
    kb.b.switch_to_block(done);
}

/// Copies `n` bytes (a static count) of `e`-byte elements from `src` to `dst` (not
/// overlapping).
pub(crate) fn copy_run(kb: &mut Kb, dst: Value, src: Value, n: usize, e: usize) {
    emit_run(kb, &[dst, src], n, e, &mut |_, _| {}, &mut |kb, ty, off, imm| {
        let s = kb.b.ins().iadd(src, off);
        let v = kb.load(ty, s, imm);
        let d = kb.b.ins().iadd(dst, off);
        kb.store(v, d, imm);
    });
}

/// `v` (an element of `e` bytes, as the integer of that width) repeated to fill a chunk of
/// `w >= e` bytes.
fn pattern(kb: &mut Kb, v: Value, e: usize, w: usize) -> Value {
    if w == e {
        return v;
    }
    if w == 16 {
        let lanes = match e {
            1 => types::I8X16,
            2 => types::I16X8,
            4 => types::I32X4,
            _ => types::I64X2,
        };
        return kb.b.ins().splat(lanes, v);
    }
    let x = kb.b.ins().uextend(types::I64, v);
    let ones: u64 = match e {
        1 => 0x0101_0101_0101_0101,
        2 => 0x0001_0001_0001_0001,
        _ => 0x0000_0001_0000_0001,
    };
    let p = kb.b.ins().imul_imm_s(x, ones as i64);
    if w == 8 { p } else { kb.b.ins().ireduce(chunk_ty(w), p) }
}

/// Fills `n` bytes (a static multiple of `e`) at `dst` with the `e`-byte element `v` (the
/// integer of that width).
fn fill_run(kb: &mut Kb, dst: Value, n: usize, e: usize, v: Value) {
    // The pattern of every chunk width, made where the chunks of that width begin.
    let pats_ref: std::cell::RefCell<Vec<(Type, Value)>> = std::cell::RefCell::new(Vec::new());
    emit_run(
        kb,
        &[dst],
        n,
        e,
        &mut |kb, w| {
            let mut pats = pats_ref.borrow_mut();
            pats.clear();
            let mut c = w;
            while c >= e {
                let p = pattern(kb, v, e, c);
                pats.push((chunk_ty(c), p));
                c /= 2;
            }
        },
        &mut |kb, ty, off, imm| {
            let pats = pats_ref.borrow();
            let p = pats.iter().find(|(t, _)| *t == ty).map_or(v, |&(_, p)| p);
            let d = kb.b.ins().iadd(dst, off);
            kb.store(p, d, imm);
        },
    );
}

/// Calls `chunk(kb, ty, off, 0)` for chunks covering a run of `n` bytes, a run-time multiple
/// of `e`, with pointers `ptrs`: the widest chunks while they fit, then single elements. As in
/// [`emit_run`], scalar chunks wider than an element only where every pointer is aligned.
fn dyn_run(kb: &mut Kb, ptrs: &[Value], n: Value, e: usize, chunk: &mut Chunk) {
    let w = max_chunk(kb);
    let zero = kb.iconst(0);
    let wide = |kb: &mut Kb, chunk: &mut Chunk| {
        let wide_end = kb.b.ins().band_imm_s(n, -(w as i64));
        kb.for_range(zero, wide_end, w as i64, |kb, i| chunk(kb, chunk_ty(w), i, 0));
        kb.for_range(wide_end, n, e as i64, |kb, i| chunk(kb, chunk_ty(e), i, 0));
    };
    if chunk_ty(w).is_vector() || w <= e {
        wide(kb, chunk);
        return;
    }
    if_aligned(kb, ptrs, w, &mut |kb, aligned| {
        if aligned {
            wide(kb, chunk);
        } else {
            kb.for_range(zero, n, e as i64, |kb, i| chunk(kb, chunk_ty(e), i, 0));
        }
    });
}

/// Copies a run of `n` bytes (a run-time multiple of `e`) from `src` to `dst`.
fn copy_dyn(kb: &mut Kb, dst: Value, src: Value, n: Value, e: usize) {
    dyn_run(kb, &[dst, src], n, e, &mut |kb, ty, off, _| {
        let s = kb.b.ins().iadd(src, off);
        let v = kb.load(ty, s, 0);
        let d = kb.b.ins().iadd(dst, off);
        kb.store(v, d, 0);
    });
}

/// Zeroes a run of `n` bytes (a run-time multiple of `e`) at `dst`.
fn zero_dyn(kb: &mut Kb, dst: Value, n: Value, e: usize) {
    dyn_run(kb, &[dst], n, e, &mut |kb, ty, off, _| {
        let z = if ty.is_vector() {
            let b = kb.b.ins().iconst(types::I8, 0);
            kb.b.ins().splat(ty, b)
        } else {
            kb.b.ins().iconst(ty, 0)
        };
        let d = kb.b.ins().iadd(dst, off);
        kb.store(z, d, 0);
    });
}

/// `lo.max(v).min(hi)` for a signed pointer-width `v` and constant bounds `lo <= hi`.
fn clamp(kb: &mut Kb, v: Value, lo: i64, hi: i64) -> Value {
    let (l, h) = (kb.iconst(lo), kb.iconst(hi));
    let below = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, lo);
    let v = kb.b.ins().select(below, l, v);
    let above = kb.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, v, hi);
    kb.b.ins().select(above, h, v)
}

// ---------------------------------------------------------------------------------------
// Strided copies.

/// One loop of a strided copy: its extent and the element strides of destination and source.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    n: usize,
    dst: i64,
    src: i64,
}

/// The loops of a copy over `dims` with the given element strides: size-1 axes dropped and
/// each axis merged into the one before when both sides walk the pair as one axis. `None`
/// when the copy is empty.
fn merge_axes(dims: &[usize], dst: &[i64], src: &[i64]) -> Option<Vec<Axis>> {
    if dims.contains(&0) {
        return None;
    }
    let mut out: Vec<Axis> = Vec::new();
    for a in 0..dims.len() {
        let (n, d, s) = (dims[a], dst[a], src[a]);
        if n == 1 {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.dst == d * n as i64 && last.src == s * n as i64 => {
                *last = Axis { n: last.n * n, dst: d, src: s };
            }
            _ => out.push(Axis { n, dst: d, src: s }),
        }
    }
    Some(out)
}

/// Copies `dims` elements of `e` bytes: element `idx` is read at element
/// `src_off + Σ idx·src_st` of `src` and written at element `Σ idx·dst_st` of `dst`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn strided_copy(
    kb: &mut Kb,
    dst: Value,
    src: Value,
    e: usize,
    dims: &[usize],
    dst_st: &[i64],
    src_st: &[i64],
    src_off: i64,
) {
    let Some(axes) = merge_axes(dims, dst_st, src_st) else { return };
    let e64 = e as i64;
    let src = kb.addr_const(src, src_off * e64);
    let split = |axes: &[Axis]| -> (Vec<usize>, Vec<i64>, Vec<i64>) {
        (
            axes.iter().map(|a| a.n).collect(),
            axes.iter().map(|a| a.dst * e64).collect(),
            axes.iter().map(|a| a.src * e64).collect(),
        )
    };
    let at = |kb: &mut Kb, idx: &[Value], ds: &[i64], ss: &[i64]| {
        let d = kb.linear(0, idx, ds);
        let s = kb.linear(0, idx, ss);
        (kb.b.ins().iadd(dst, d), kb.b.ins().iadd(src, s))
    };
    match axes.last().copied() {
        Some(Axis { n, dst: 1, src: 1 }) => {
            // Contiguous rows on both sides.
            let (outer, ds, ss) = split(&axes[..axes.len() - 1]);
            kb.nest(&outer, &mut |kb, idx| {
                let (d, s) = at(kb, idx, &ds, &ss);
                copy_run(kb, d, s, n * e, e);
            });
        }
        Some(Axis { n, dst: 1, src: 0 }) => {
            // A broadcast element fills each row.
            let (outer, ds, ss) = split(&axes[..axes.len() - 1]);
            kb.nest(&outer, &mut |kb, idx| {
                let (d, s) = at(kb, idx, &ds, &ss);
                let v = kb.load(chunk_ty(e), s, 0);
                fill_run(kb, d, n * e, e, v);
            });
        }
        Some(inner) => {
            // Element by element along a strided innermost axis.
            let (outer, ds, ss) = split(&axes[..axes.len() - 1]);
            kb.nest(&outer, &mut |kb, idx| {
                let (d, s) = at(kb, idx, &ds, &ss);
                strided_row(kb, d, s, e, inner.n, inner.dst * e64, inner.src * e64);
            });
        }
        None => {
            let v = kb.load(chunk_ty(e), src, 0);
            kb.store(v, dst, 0);
        }
    }
}

/// Copies `n` elements of `e` bytes, element `i` from `src + i·ss` to `dst + i·ds` (byte
/// strides): four elements a loop step for rows of eight and more, the rest unrolled.
fn strided_row(kb: &mut Kb, dst: Value, src: Value, e: usize, n: usize, ds: i64, ss: i64) {
    let ty = chunk_ty(e);
    let one = |kb: &mut Kb, d: Value, s: Value, k: i64| {
        let (sa, da) = (kb.addr_const(s, k * ss), kb.addr_const(d, k * ds));
        let v = kb.load(ty, sa, 0);
        kb.store(v, da, 0);
    };
    let main = if n >= 8 { n / 4 * 4 } else { 0 };
    if main > 0 {
        kb.for_const(0, main as i64, 4, |kb, i| {
            let so = kb.b.ins().imul_imm_s(i, ss);
            let s = kb.b.ins().iadd(src, so);
            let d_o = kb.b.ins().imul_imm_s(i, ds);
            let d = kb.b.ins().iadd(dst, d_o);
            for k in 0..4 {
                one(kb, d, s, k);
            }
        });
    }
    for k in main..n {
        one(kb, dst, src, k as i64);
    }
}

// ---------------------------------------------------------------------------------------
// Operators.

/// The byte size of one element of output 0.
fn elem(cx: &NodeCtx) -> usize {
    cx.out_dtype(0).size()
}

/// Checks that input 0 and output 0 have one dtype (these kernels copy bits).
fn same_dtype(cx: &NodeCtx) -> Result<()> {
    let (i, o) = (cx.in_dtype(0)?, cx.out_dtype(0));
    if i != o {
        return Err(cx.error(format!("input dtype {i} differs from output dtype {o}")));
    }
    Ok(())
}

fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

/// Reshape, Flatten, Squeeze, Unsqueeze into their own buffer: one run of the whole tensor.
fn whole_copy(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    same_dtype(cx)?;
    let (i, o) = (numel(&cx.in_dims(0)?), numel(&cx.out_dims(0)?));
    if i != o {
        return Err(cx.error(format!("input has {i} elements, output {o}")));
    }
    copy_run(kb, cx.out_ptr(0), cx.in_ptr(0)?, o * elem(cx), elem(cx));
    Ok(())
}

fn transpose(kb: &mut Kb, cx: &NodeCtx, perm: Option<&[usize]>) -> Result<()> {
    same_dtype(cx)?;
    let x = cx.in_dims(0)?;
    let out = cx.out_dims(0)?;
    let r = x.len();
    let perm: Vec<usize> = perm.map_or_else(|| (0..r).rev().collect(), <[usize]>::to_vec);
    let mut seen = vec![false; r];
    let valid = perm.len() == r && perm.iter().all(|&p| p < r && !std::mem::replace(&mut seen[p], true));
    if !valid || perm.iter().map(|&p| x[p]).ne(out.iter().copied()) {
        return Err(cx.error(format!("perm {perm:?} does not map input {x:?} to output {out:?}")));
    }
    let xs = strides_of(&x);
    let src: Vec<i64> = perm.iter().map(|&p| xs[p]).collect();
    output_copy(kb, cx, cx.in_ptr(0)?, &out, &src)
}

/// Copies into the node's output (physical dims `out`, row-major) from `src` with per-axis
/// source element strides `src_st`. Loops over the output's symbolic axes, and every axis
/// outside them, take run-time extents; the static axes inside the last symbolic one are one
/// [`strided_copy`] per iteration.
fn output_copy(kb: &mut Kb, cx: &NodeCtx, src: Value, out: &[usize], src_st: &[i64]) -> Result<()> {
    let e = elem(cx);
    let dst_st = strides_of(out);
    let y = cx.out_id(0);
    let last_sym = cx.g.ty(y).shape.0.iter().rposition(|d| d.known().is_none());
    let Some(l) = last_sym.filter(|_| cx.is_symbolic()) else {
        strided_copy(kb, cx.out_ptr(0), src, e, out, &dst_st, src_st, 0);
        return Ok(());
    };
    let exts: Vec<Value> = (0..=l).map(|a| cx.extent(kb, y, a)).collect::<Result<_>>()?;
    let dst = cx.out_ptr(0);
    let inner = &out[l + 1..];
    kb.nest_runtime(&exts, &mut |kb, idx| {
        let d = kb.linear(0, idx, &dst_st[..=l]);
        let s = kb.linear(0, idx, &src_st[..=l]);
        let (dp, sp) = (kb.addr(dst, d, e), kb.addr(src, s, e));
        if inner.is_empty() {
            copy_run(kb, dp, sp, e, e);
        } else {
            strided_copy(kb, dp, sp, e, inner, &dst_st[l + 1..], &src_st[l + 1..], 0);
        }
    });
    Ok(())
}

/// The normalized `axis` of a rank-`rank` tensor, or an error about this node.
fn axis_of(cx: &NodeCtx, axis: i64, rank: usize) -> Result<usize> {
    normalize_axis(axis, rank).map_err(|m| cx.error(m))
}

/// One part of a Concat or Split row: its base pointer, bytes per row and offset in the
/// joined row.
struct Part {
    ptr: Value,
    run: usize,
    off: usize,
}

/// Copies between a joined tensor (rows of `row` bytes at `joined`, looped over as `rows`
/// gives them: [`NodeCtx::row_loops`]) and its parts; `gather` copies parts into the joined
/// rows (Concat), else the joined rows out to the parts (Split).
fn join_rows(
    kb: &mut Kb,
    joined: Value,
    row: usize,
    rows: &(Vec<Value>, Vec<i64>),
    e: usize,
    parts: &[Part],
    gather: bool,
) {
    if row == 0 || parts.is_empty() {
        return;
    }
    kb.nest_runtime(&rows.0, &mut |kb, idx| {
        let o = kb.linear(0, idx, &rows.1);
        let j = kb.addr(joined, o, row);
        for p in parts {
            let at = kb.addr(p.ptr, o, p.run);
            let here = kb.addr_const(j, p.off as i64);
            if gather {
                copy_run(kb, here, at, p.run, e);
            } else {
                copy_run(kb, at, here, p.run, e);
            }
        }
    });
}

fn concat(kb: &mut Kb, cx: &NodeCtx, axis: i64) -> Result<()> {
    let out = cx.out_dims(0)?;
    let ax = axis_of(cx, axis, out.len())?;
    let e = elem(cx);
    let inner = numel(&out[ax + 1..]);
    let mut parts = Vec::new();
    let mut off = 0;
    for i in 0..cx.num_inputs() {
        let d = cx.in_dims(i)?;
        if cx.in_dtype(i)? != cx.out_dtype(0) || d.len() != out.len() {
            return Err(cx.error(format!("input {i} does not match the output's dtype and rank")));
        }
        let run = d[ax] * inner * e;
        if run > 0 {
            parts.push(Part { ptr: cx.in_ptr(i)?, run, off });
        }
        off += run;
    }
    let row = out[ax] * inner * e;
    if off != row {
        return Err(cx.error(format!("inputs along axis {ax} do not add up to the output's {}", out[ax])));
    }
    let rows = cx.row_loops(kb, cx.out_id(0), ax)?;
    join_rows(kb, cx.out_ptr(0), row, &rows, e, &parts, true);
    Ok(())
}

fn split(kb: &mut Kb, cx: &NodeCtx, axis: i64) -> Result<()> {
    let x = cx.in_dims(0)?;
    let ax = axis_of(cx, axis, x.len())?;
    let e = cx.in_dtype(0)?.size();
    let inner = numel(&x[ax + 1..]);
    let mut parts = Vec::new();
    let mut off = 0;
    for k in 0..cx.num_outputs() {
        let d = cx.out_dims(k)?;
        if cx.out_dtype(k) != cx.in_dtype(0)? || d.len() != x.len() {
            return Err(cx.error(format!("output {k} does not match the input's dtype and rank")));
        }
        let run = d[ax] * inner * e;
        if run > 0 {
            parts.push(Part { ptr: cx.out_ptr(k), run, off });
        }
        off += run;
    }
    let row = x[ax] * inner * e;
    if off > row {
        return Err(cx.error(format!("outputs along axis {ax} exceed the input's {}", x[ax])));
    }
    let xv = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let rows = cx.row_loops(kb, xv, ax)?;
    join_rows(kb, cx.in_ptr(0)?, row, &rows, e, &parts, false);
    Ok(())
}

fn slice(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    same_dtype(cx)?;
    let x = cx.in_dims(0)?;
    let out = cx.out_dims(0)?;
    let r = x.len();
    const NAMES: [&str; 5] = ["data", "starts", "ends", "axes", "steps"];
    let arg = |i: usize| -> Result<Option<Vec<i64>>> {
        if cx.in_id(i).is_none() {
            return Ok(None);
        }
        let t = cx.in_const(i).ok_or_else(|| cx.unsupported(format!("{} must be a constant", NAMES[i])))?;
        t.to_i64_vec().map(Some).map_err(|m| cx.error(m))
    };
    let starts = arg(1)?.ok_or_else(|| cx.error("starts is required"))?;
    let ends = arg(2)?.ok_or_else(|| cx.error("ends is required"))?;
    let k = starts.len();
    let axes = arg(3)?.unwrap_or_else(|| (0..k as i64).collect());
    let steps = arg(4)?.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k || steps.contains(&0) {
        return Err(cx.error("starts, ends, axes and steps must have one length and non-zero steps"));
    }
    let xs = strides_of(&x);
    let mut src = xs.clone();
    let mut off = 0i64;
    let mut dims = x.clone();
    let mut done = vec![false; r];
    for i in 0..k {
        let a = axis_of(cx, axes[i], r)?;
        if std::mem::replace(&mut done[a], true) {
            return Err(cx.error(format!("axis {} is repeated", axes[i])));
        }
        let slmtvm_ir::ops::AxisSlice { start: s, step, len } =
            slmtvm_ir::ops::AxisSlice::new(x[a], starts[i], ends[i], steps[i]).map_err(|e| cx.error(e))?;
        dims[a] = len;
        if len > 0 {
            // In range: 0 <= s < n, and |step| < n when len > 1.
            off += s as i64 * xs[a];
            src[a] = if len > 1 { step as i64 * xs[a] } else { 0 };
        }
    }
    if dims != out {
        return Err(cx.error(format!("slice of {x:?} gives {dims:?}, the output is {out:?}")));
    }
    if numel(&out) == 0 {
        return Ok(());
    }
    strided_copy(kb, cx.out_ptr(0), cx.in_ptr(0)?, elem(cx), &out, &strides_of(&out), &src, off);
    Ok(())
}

fn gather(kb: &mut Kb, cx: &NodeCtx, axis: i64) -> Result<()> {
    same_dtype(cx)?;
    let data = cx.in_dims(0)?;
    let ids = cx.in_dims(1)?;
    let out = cx.out_dims(0)?;
    let ax = axis_of(cx, axis, data.len())?;
    let id_ty = match cx.in_dtype(1)? {
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        other => return Err(cx.unsupported(format!("indices of dtype {other}"))),
    };
    let e = elem(cx);
    let (outer, n, inner, p) = (numel(&data[..ax]), data[ax], numel(&data[ax + 1..]), numel(&ids));
    if outer * p * inner != numel(&out) {
        return Err(cx.error(format!("gather of {data:?} by {ids:?} does not give {out:?}")));
    }
    if numel(&out) == 0 {
        return Ok(());
    }
    let dst = cx.out_ptr(0);
    if n == 0 {
        let z = kb.b.ins().iconst(chunk_ty(e), 0);
        fill_run(kb, dst, numel(&out) * e, e, z);
        return Ok(());
    }
    let (dp, ip) = (cx.in_ptr(0)?, cx.in_ptr(1)?);
    let run = inner * e;
    let n64 = n as i64;
    // Negative indices count from the run-time end of a symbolic axis.
    let data_id = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let n_run = cx.extent(kb, data_id, ax)?;
    // Indices with symbolic dims: only their run-time extents are gathered (at their physical
    // places in the flattened index and output).
    let ids_id = cx.in_id(1).ok_or_else(|| cx.error("input 1 is required"))?;
    let (id_ext, id_st) = if cx.g.ty(ids_id).shape.is_known() {
        (vec![kb.iconst(p as i64)], vec![1])
    } else {
        (cx.extents(kb, ids_id, 0..ids.len())?, strides_of(&ids))
    };
    let outer = kb.iconst(outer as i64);
    kb.nest_runtime(&[&[outer][..], &id_ext].concat(), &mut |kb, idx| {
        let o = idx[0];
        let j = kb.linear(0, &idx[1..], &id_st);
        let at = kb.addr(ip, j, id_ty.bytes() as usize);
        let raw = kb.load(id_ty, at, 0);
        let v = if id_ty == types::I64 { raw } else { kb.b.ins().sextend(types::I64, raw) };
        let neg = kb.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, 0);
        let wrapped = kb.b.ins().iadd(v, n_run);
        let v = kb.b.ins().select(neg, wrapped, v);
        let v = clamp(kb, v, 0, n64 - 1);
        let row = kb.b.ins().imul_imm_s(o, n64);
        let row = kb.b.ins().iadd(row, v);
        let s = kb.addr(dp, row, run);
        let orow = kb.b.ins().imul_imm_s(o, p as i64);
        let orow = kb.b.ins().iadd(orow, j);
        let d = kb.addr(dst, orow, run);
        copy_run(kb, d, s, run, e);
    });
    Ok(())
}

fn expand(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    same_dtype(cx)?;
    let x = cx.in_dims(0)?;
    let out = cx.out_dims(0)?;
    let bad = || cx.error(format!("input {x:?} does not broadcast to the output {out:?}"));
    let pad = out.len().checked_sub(x.len()).ok_or_else(bad)?;
    let xs = strides_of(&x);
    let mut src = vec![0i64; out.len()];
    for (k, &d) in x.iter().enumerate() {
        if d != out[pad + k] && d != 1 {
            return Err(bad());
        }
        src[pad + k] = if d == 1 { 0 } else { xs[k] };
    }
    output_copy(kb, cx, cx.in_ptr(0)?, &out, &src)
}

fn trilu(kb: &mut Kb, cx: &NodeCtx, upper: bool) -> Result<()> {
    same_dtype(cx)?;
    let x = cx.in_dims(0)?;
    let r = x.len();
    if r < 2 || x != cx.out_dims(0)? {
        return Err(cx.error(format!("input {x:?} must have rank >= 2 and the output's shape")));
    }
    let (rows, cols) = (x[r - 2], x[r - 1]);
    let batch = numel(&x[..r - 2]);
    if batch * rows * cols == 0 {
        return Ok(());
    }
    let e = elem(cx);
    let k = match cx.in_ptr_opt(1) {
        Some(p) => {
            if cx.in_dtype(1)? != DType::I64 {
                return Err(cx.error("k must be i64"));
            }
            kb.load(types::I64, p, 0)
        }
        None => kb.iconst(0),
    };
    // Offsets beyond the matrix act like the matrix's edge; clamping keeps `i + k` in range.
    let k = clamp(kb, k, -(rows as i64) - 1, cols as i64 + 1);
    let k = if upper { k } else { kb.b.ins().iadd_imm_s(k, 1) };
    let (src, dst) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let row = cols * e;
    kb.nest(&[batch, rows], &mut |kb, idx| {
        let (b, i) = (idx[0], idx[1]);
        let flat = kb.b.ins().imul_imm_s(b, rows as i64);
        let flat = kb.b.ins().iadd(flat, i);
        let s = kb.addr(src, flat, row);
        let d = kb.addr(dst, flat, row);
        // Columns before `c` are zeroed (upper) or kept (lower).
        let c = kb.b.ins().iadd(i, k);
        let c = clamp(kb, c, 0, cols as i64);
        let head = kb.b.ins().imul_imm_s(c, e as i64);
        let total = kb.iconst(row as i64);
        let tail = kb.b.ins().isub(total, head);
        let (s_tail, d_tail) = (kb.b.ins().iadd(s, head), kb.b.ins().iadd(d, head));
        if upper {
            zero_dyn(kb, d, head, e);
            copy_dyn(kb, d_tail, s_tail, tail, e);
        } else {
            copy_dyn(kb, d, s, head, e);
            zero_dyn(kb, d_tail, tail, e);
        }
    });
    Ok(())
}

/// Shape and Size: the output depends only on the input's static shape, so it is stored as
/// constants.
fn shape_of(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let dims = cx.in_dims(0)?;
    let t = cx.node.op.eval_on_shape(&dims).ok_or_else(|| cx.error("not a shape operator"))?;
    let vals = t.to_i64_vec().map_err(|m| cx.error(m))?;
    if cx.out_dtype(0) != DType::I64 || vals.len() != numel(&cx.out_dims(0)?) {
        return Err(cx.error("the output must be i64 of the value's shape"));
    }
    let dst = cx.out_ptr(0);
    for (i, &v) in vals.iter().enumerate() {
        let c = kb.b.ins().iconst(types::I64, v);
        let at = kb.addr_const(dst, 8 * i as i64);
        kb.store(c, at, 0);
    }
    Ok(())
}

/// Range: `start + i·delta` for the output's static length, read from the run-time scalars.
/// Integers wrap in 64 bits then narrow (as the interpreter's exact values do, when they fit);
/// floats are computed as the interpreter does, in f64 (`start + i as f64 * delta`, no fused
/// multiply-add), then rounded to f32, and for f16 from that f32 to f16. That double rounding
/// is what the interpreter's `half::f16::from_f64` does on x86 hosts with F16C; its software
/// fallback (and a direct f64→f16 rounding) can differ in the last bit for values within
/// 2^-13 ulp of an f16 halfway point.
fn range(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let dt = cx.out_dtype(0);
    for i in 0..3 {
        if cx.in_dtype(i)? != dt {
            return Err(cx.error("start, limit and delta must have the output's dtype"));
        }
    }
    let n = match cx.out_dims(0)?.as_slice() {
        [n] => *n,
        d => return Err(cx.error(format!("output shape {d:?} is not 1-D"))),
    };
    if n == 0 {
        return Ok(());
    }
    let (sp, dp, dst) = (cx.in_ptr(0)?, cx.in_ptr(2)?, cx.out_ptr(0));
    let e = dt.size();
    let start = kb.load_elem(dt, sp);
    let delta = kb.load_elem(dt, dp);
    match dt {
        DType::I32 | DType::I64 => {
            kb.for_const(0, n as i64, 1, |kb, i| {
                let step = kb.b.ins().imul(i, delta);
                let v = kb.b.ins().iadd(start, step);
                let at = kb.addr(dst, i, e);
                kb.store_elem(dt, v, at);
            });
        }
        DType::F32 | DType::F16 => {
            debug_assert_eq!(compute_type(dt), types::F32);
            let start = kb.b.ins().fpromote(types::F64, start);
            let delta = kb.b.ins().fpromote(types::F64, delta);
            kb.for_const(0, n as i64, 1, |kb, i| {
                let fi = kb.b.ins().fcvt_from_sint(types::F64, i);
                let step = kb.b.ins().fmul(fi, delta);
                let v = kb.b.ins().fadd(start, step);
                let v = kb.b.ins().fdemote(types::F32, v);
                let at = kb.addr(dst, i, e);
                kb.store_elem(dt, v, at);
            });
        }
        other => return Err(cx.unsupported(format!("Range of dtype {other}"))),
    }
    Ok(())
}

fn constant_of_shape(kb: &mut Kb, cx: &NodeCtx, value: &Scalar) -> Result<()> {
    let dt = cx.out_dtype(0);
    if value.dtype() != dt {
        return Err(cx.error(format!("value of dtype {} for an output of {dt}", value.dtype())));
    }
    let e = dt.size();
    let bytes = value.fill(&[]).to_le_bytes();
    let bits = bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let v = kb.b.ins().iconst(chunk_ty(e), bits as i64);
    fill_run(kb, cx.out_ptr(0), numel(&cx.out_dims(0)?) * e, e, v);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Symbolic dims: the kernels that read the run-time extents.

/// A reshape that moves a symbolic dim within its group of axes: copies the logical elements
/// in row-major order from the input's physical layout to the output's (an odometer over the
/// output's run-time dims gives each element's place).
fn repack(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let y = cx.out_id(0);
    let (rx, ry) = (cx.g.ty(x).shape.rank(), cx.g.ty(y).shape.rank());
    let (ex, ey) = (cx.extents(kb, x, 0..rx)?, cx.extents(kb, y, 0..ry)?);
    let (sx, sy) = (strides_of(&cx.dims(x)?), strides_of(&cx.dims(y)?));
    let e = cx.out_dtype(0).size();
    let ty = chunk_ty(e);
    let (xp, yp) = (cx.in_ptr(0)?, cx.out_ptr(0));
    let odo: Vec<Variable> = (0..ry)
        .map(|_| {
            let z = kb.iconst(0);
            kb.var(z)
        })
        .collect();
    kb.nest_runtime(&ex, &mut |kb, idx| {
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
            let wrap = kb.b.ins().icmp(IntCC::Equal, t, ey[j]);
            let zero = kb.iconst(0);
            let n = kb.b.ins().select(wrap, zero, t);
            kb.b.def_var(odo[j], n);
            carry = kb.b.ins().uextend(types::I64, wrap);
        }
    });
    Ok(())
}

/// True when every value of `parts` has `whole`'s physical dims on every axis but `a` (so the
/// row-wise Concat and Split apply; else a symbolic dim meets a static one there).
fn same_layout_but(cx: &NodeCtx, parts: &[ValueId], whole: ValueId, a: usize) -> Result<bool> {
    let dw = cx.dims(whole)?;
    for &v in parts {
        let d = cx.dims(v)?;
        if d.len() != dw.len() || (0..d.len()).any(|k| k != a && d[k] != dw[k]) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One part of a Concat or Split over symbolic dims: `ext` rows along axis `a` copied from
/// `src` (physical dims `sd`, starting `src_off` rows along `a`) to `dst` (physical dims `dd`,
/// starting `dst_off` rows along `a`), the axes before `a` to their run-time extents `outer`,
/// the axes after it whole (the smaller physical extent of the two sides: a symbolic dim
/// there is the other side's static one at run time).
#[allow(clippy::too_many_arguments)]
fn copy_part(
    kb: &mut Kb,
    e: usize,
    (dst, dd, dst_off): (Value, &[usize], Value),
    (src, sd, src_off): (Value, &[usize], Value),
    outer: &[Value],
    ext: Value,
    a: usize,
) {
    let (ds, ss) = (strides_of(dd), strides_of(sd));
    let inner: Vec<usize> = (a + 1..dd.len()).map(|k| dd[k].min(sd[k])).collect();
    if inner.contains(&0) {
        return;
    }
    let mut exts = outer.to_vec();
    exts.push(ext);
    kb.nest_runtime(&exts, &mut |kb, idx| {
        let at = |kb: &mut Kb, st: &[i64], off: Value| {
            let base = kb.linear(0, &idx[..a], &st[..a]);
            let row = kb.b.ins().iadd(idx[a], off);
            let row = kb.b.ins().imul_imm_s(row, st[a]);
            kb.b.ins().iadd(base, row)
        };
        let (d, s) = (at(kb, &ds, dst_off), at(kb, &ss, src_off));
        let (dp, sp) = (kb.addr(dst, d, e), kb.addr(src, s, e));
        if inner.is_empty() {
            copy_run(kb, dp, sp, e, e);
        } else {
            strided_copy(kb, dp, sp, e, &inner, &ds[a + 1..], &ss[a + 1..], 0);
        }
    });
}

/// Concat (`gather`: the inputs into the output) or Split (the input out to the outputs) over
/// symbolic dims along axis `a`: each part's run-time rows at the run-time offset where the
/// earlier parts' end (static part sizes, or parts of a symbolic size), each part in its own
/// physical layout (which differs from the joined tensor's where a symbolic dim meets a static
/// one). When a Concat's input 0 and its output are the same buffer (a KV cache updated in
/// place, see [`crate::layout::Layout::in_place`]), input 0 is already where it belongs and
/// is not copied.
fn join_runtime(kb: &mut Kb, cx: &NodeCtx, a: usize, gather: bool) -> Result<()> {
    let (whole, wp) = if gather {
        (cx.out_id(0), cx.out_ptr(0))
    } else {
        (cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?, cx.in_ptr(0)?)
    };
    let dw = cx.dims(whole)?;
    let dtype = cx.g.ty(whole).dtype;
    let outer = cx.extents(kb, whole, 0..a)?;
    // (position, value, pointer) of each part.
    let parts: Vec<(usize, ValueId, Value)> = if gather {
        let present = (0..cx.num_inputs()).filter_map(|i| Some((i, cx.in_id(i)?)));
        present.map(|(i, v)| Ok((i, v, cx.in_ptr(i)?))).collect::<Result<_>>()?
    } else {
        (0..cx.num_outputs()).map(|k| (k, cx.out_id(k), cx.out_ptr(k))).collect()
    };
    let mut off = kb.iconst(0);
    for (k, v, p) in parts {
        let dp = cx.dims(v)?;
        if cx.g.ty(v).dtype != dtype || dp.len() != dw.len() {
            let what = if gather { "input" } else { "output" };
            return Err(cx.error(format!("{what} {k} does not match the joined tensor's dtype and rank")));
        }
        let ext = cx.extent(kb, v, a)?;
        let zero = kb.iconst(0);
        let (joined, part) = ((wp, &dw[..], off), (p, &dp[..], zero));
        let (dst, src) = if gather { (joined, part) } else { (part, joined) };
        let e = dtype.size();
        if gather && k == 0 && dp == dw {
            // Skip the copy when the caller passes the output buffer as input 0.
            let other = kb.b.ins().icmp(IntCC::NotEqual, p, wp);
            kb.when(other, |kb| copy_part(kb, e, dst, src, &outer, ext, a));
        } else {
            copy_part(kb, e, dst, src, &outer, ext, a);
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

/// Slice of a tensor with symbolic dims or run-time ends: step 1 and constant, non-negative
/// starts (or starts that are symbolic sizes); copies the output from the start offsets, over
/// the run-time extents of its symbolic axes (over its physical extent, limited to what the
/// input holds, when that is smaller).
fn slice_runtime(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let x = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let (dx, dy) = (cx.dims(x)?, cx.out_dims(0)?);
    let r = dx.len();
    let konst = |i: usize| cx.in_const(i).and_then(|t| t.to_i64_vec().ok());
    let starts = konst(1).ok_or_else(|| cx.unsupported("starts computed at run time"))?;
    let ends = konst(2);
    let axes = match cx.in_id(3) {
        None => (0..starts.len() as i64).collect(),
        Some(_) => konst(3).ok_or_else(|| cx.unsupported("axes computed at run time"))?,
    };
    let steps = match cx.in_id(4) {
        None => vec![1; axes.len()],
        Some(_) => konst(4).ok_or_else(|| cx.unsupported("steps computed at run time"))?,
    };
    // Per axis: the first index read, the step, and the count copied.
    let mut off = vec![0usize; r];
    let mut step = vec![1i64; r];
    let mut copy: Vec<Option<usize>> = vec![None; r];
    for (i, &a) in axes.iter().enumerate() {
        let a = slmtvm_ir::shape::normalize_axis(a, r).map_err(|m| cx.error(m))?;
        let s = starts.get(i).copied().ok_or_else(|| cx.error("starts and axes differ in length"))?;
        let st = steps.get(i).copied().ok_or_else(|| cx.error("steps and axes differ in length"))?;
        let sym = cx.g.ty(x).shape.0[a].known().is_none();
        match ends.as_ref().and_then(|e| e.get(i)) {
            // A static axis with constant arguments: the interpreter's clamping, any step.
            Some(&e) if !sym => {
                let sl = slmtvm_ir::ops::AxisSlice::new(dx[a], s, e, st).map_err(|m| cx.error(m))?;
                if sl.len != dy[a] {
                    return Err(cx.error(format!("axis {a} slices {} elements into {}", sl.len, dy[a])));
                }
                (off[a], step[a], copy[a]) = (sl.start as usize, st, Some(sl.len));
            }
            _ if st != 1 => return Err(cx.unsupported(format!("a step other than 1 along symbolic axis {a}"))),
            _ => {
                off[a] = match s {
                    s if s >= 0 => (s as usize).min(dx[a]),
                    s if !sym => (dx[a] as i64 + s).max(0) as usize,
                    _ => return Err(cx.unsupported(format!("a negative start on symbolic axis {a}"))),
                };
            }
        }
    }
    let copy: Vec<usize> = (0..r).map(|a| copy[a].unwrap_or_else(|| dy[a].min(dx[a] - off[a]))).collect();
    if copy.contains(&0) {
        return Ok(());
    }
    let xs = strides_of(&dx);
    let start: i64 = off.iter().zip(&xs).map(|(&o, &s)| o as i64 * s).sum();
    let src: Vec<i64> = xs.iter().zip(&step).map(|(&s, &st)| s * st).collect();
    let e = cx.out_dtype(0).size();
    if copy == dy {
        // Loops over the output's symbolic axes run to their run-time extents.
        let p = kb.addr_const(cx.in_ptr(0)?, start * e as i64);
        return output_copy(kb, cx, p, &dy, &src);
    }
    strided_copy(kb, cx.out_ptr(0), cx.in_ptr(0)?, e, &copy, &strides_of(&dy), &src, start);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_merge_when_both_sides_are_contiguous() {
        // [B,S,H,D] → [B,H,S,D]: rows of D stay whole.
        let (b, s, h, d) = (2, 3, 4, 5);
        let x = strides_of(&[b, s, h, d]);
        let out = [b, h, s, d];
        let src = [x[0], x[2], x[1], x[3]];
        let axes = merge_axes(&out, &strides_of(&out), &src).unwrap();
        assert_eq!(axes.len(), 4);
        assert_eq!(axes[3], Axis { n: d, dst: 1, src: 1 });
        // A plain copy is one axis; size-1 axes vanish; empty copies are None.
        assert_eq!(merge_axes(&[2, 1, 3], &[3, 3, 1], &[3, 3, 1]).unwrap(), vec![Axis { n: 6, dst: 1, src: 1 }]);
        assert_eq!(merge_axes(&[2, 0], &[0, 1], &[0, 1]), None);
        // Reversing both axes of a matrix is one reversed axis.
        assert_eq!(merge_axes(&[2, 3], &[3, 1], &[-3, -1]).unwrap(), vec![Axis { n: 6, dst: 1, src: -1 }]);
    }
}
