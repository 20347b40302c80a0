//! Matrix products: MatMul (NumPy batching and 1-D promotion), Gemm (transposes, alpha, beta,
//! broadcast C) and MatMulInteger (i8/u8 operands, zero points, i32 result).
//!
//! Every product is lowered to one description (`Problem`): batch dims, M, K, N, and each
//! operand's element strides (row, column and one per batch dim, 0 where it broadcasts), so
//! transposes, 1-D operands, broadcast batches and zero points are all just strides. The batch
//! loops are outermost (folded into M when only A walks the batch, as activations times a
//! shared weight do); inside, one of three register-tiled schedules computes an M×N matrix:
//!
//! - **broadcast** (B contiguous along N): tiles of 4 rows × 8 columns held in 8 `F32X4`
//!   accumulators; per step of K, two vector loads of a B row, one splat A element per row and
//!   8 `mul_add`s (fma where native). Column edges use one vector (4 columns) then scalars; row
//!   edges use fewer rows. MatMulInteger uses the same tiling in `I32X4` (8 i8/u8 of B widened
//!   per load).
//! - **dot** (A contiguous along K and B along K: Gemm with `transB`, the legacy exporter's
//!   Linear layers, or a 1-D B): tiles of 2 rows × 4 columns of `F32X4` dot products along K,
//!   reduced with `hsum` and finished by a scalar K tail.
//! - **scalar**: the broadcast tiling with scalar accumulators (4 × 4), for targets without
//!   vectors (never a vector type there), f16 and integer operands, and both-transposed Gemm.
//!
//! Floats accumulate in f32 (f16 converted exactly on load, rounded on store); the vector
//! schedules reassociate nothing except the dot schedule, which sums K in four partial sums.
//! Integer products accumulate wrapping in the output width (i32 or i64), which equals the
//! reference's wrapping i64 accumulation truncated to the output dtype.
//!
//! Files: this one holds the description (`Problem`, its operands and epilogues), the batch
//! loops and the choice of schedule; `problem` reads MatMul, Gemm and MatMulInteger nodes into
//! a `Problem`; `schedules` the Cranelift register tiles and the epilogue of each store;
//! `blocks` the row-block and column-tile loops (run-time extents, a split kernel's share);
//! `assembled` the x86 microkernel path; `integer` QDense's x86 `vpmaddwd` path; `fused` the
//! `Product` fused kernels run.

mod assembled;
mod blocks;
mod fused;
mod integer;
mod problem;
mod schedules;

pub(crate) use blocks::{RowShare, row_blocks};
pub(crate) use fused::{F32Mat, Product};
use problem::{gemm, matmul, matmul_integer, qdense};
use schedules::{Tile, activate_tile, broadcast, dot, reload_tile, store};

use super::NodeCtx;
use crate::Result;
use crate::emit::Kb;
use crate::pack::{PackedRead, Packing};
use cranelift_codegen::ir::{Type, Value, types};
use slmtvm_ir::ops::UnaryOp;
use slmtvm_ir::{DType, Op};
use slmtvm_targets::{Microkernel, Schedule};

/// Emits the kernel of `cx.node`.
///
/// Symbolic dims: the rows (and columns) of the output run to their run-time extents, batch
/// dims position-wise over the physical ones. A symbolic contraction axis on one operand
/// against a static one on the other takes the static K (the symbolic operand's physical
/// extent, its bound, is only its layout); symbolic on both, the K loop runs to the run-time
/// extent (`Problem::k_run`, on the broadcast schedule).
pub fn emit(kb: &mut Kb, cx: &NodeCtx) -> Result<()> {
    let a = cx.in_id(0).ok_or_else(|| cx.error("input 0 is required"))?;
    let b = cx.in_id(1).ok_or_else(|| cx.error("input 1 is required"))?;
    let (ra, rb) = (cx.g.ty(a).shape.rank(), cx.g.ty(b).shape.rank());
    // The contraction axes of A and B.
    let (ka, kb_axis) = match &cx.node.op {
        Op::Gemm(g) => (usize::from(!g.trans_a), usize::from(g.trans_b)),
        _ => (ra.saturating_sub(1), rb.saturating_sub(2)),
    };
    let sym = (cx.axis_symbolic(a, ka), cx.axis_symbolic(b, kb_axis));
    let mut p = match &cx.node.op {
        Op::MatMul(_) => matmul(cx, sym)?,
        Op::Gemm(g) => gemm(cx, g, sym)?,
        Op::MatMulInteger(_) => matmul_integer(cx, sym)?,
        Op::QDense(d) => qdense(cx, d, sym)?,
        _ => return Err(cx.error("not a matrix product")),
    };
    if sym.0 && sym.1 {
        p.k_run = Some(cx.extent(kb, a, ka)?);
        p.pack = None;
    }
    // Symbolic output rows (the last axis when B is 1-D) and columns: only the run-time ones
    // are computed.
    let out = cx.out_id(0);
    let ro = cx.g.ty(out).shape.rank();
    let m_axis = if rb >= 2 { ro.checked_sub(2) } else { ro.checked_sub(1) };
    if let Some(ax) = m_axis.filter(|&ax| ra >= 2 && cx.axis_symbolic(out, ax)) {
        p.m_run = Some(cx.extent(kb, out, ax)?);
    }
    if rb >= 2 && ro >= 1 && cx.axis_symbolic(out, ro - 1) {
        p.n_run = Some(cx.extent(kb, out, ro - 1)?);
    }
    if let Some(r) = emit_problem(kb, &p) {
        cx.read_packed(r);
    }
    Ok(())
}

/// The type products accumulate in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Acc {
    F32,
    I32,
    I64,
}

impl Acc {
    fn ty(self) -> Type {
        match self {
            Acc::F32 => types::F32,
            Acc::I32 => types::I32,
            Acc::I64 => types::I64,
        }
    }

    fn vec_ty(self) -> Type {
        match self {
            Acc::I32 => types::I32X4,
            _ => types::F32X4,
        }
    }
}

/// One operand (or zero point, or Gemm C) as strides: element (batch idx, r, c) is at
/// `ptr + (Σ idx·batch + r·rs + c·cs) · size`.
#[derive(Clone, Debug)]
struct Operand {
    ptr: Value,
    dtype: DType,
    batch: Vec<i64>,
    rs: i64,
    cs: i64,
}

/// What happens to an accumulated sum before it is stored.
#[derive(Clone, Debug)]
enum Epilogue {
    /// Stored as is (narrowed to the output dtype).
    Plain,
    /// Float Gemm: `alpha·acc + beta·C` (each factor skipped when 1, C when absent).
    GemmF { alpha: f32, beta: f32, c: Option<Operand> },
    /// Integer Gemm: exact `acc + C` when alpha and beta are 1, else through f64 as the
    /// reference does.
    GemmI { alpha: f32, beta: f32, c: Option<Operand> },
    /// Dense (f32): `act(acc + bias[column])`, the bias (a row, `rs` 0) as the bound C added
    /// before each store, the activation (the elementwise kernels' code) over each stored tile
    /// while it is in L1 ([`activate_tile`]).
    Dense { bias: Option<Operand>, act: Option<UnaryOp> },
    /// QDense (i32 accumulators, f32 output): `act(f32(acc)·(sa[row]·sb[column]) + bias[column])`
    /// with each operation rounded as the unfused graph rounds it (no fused multiply-add); the
    /// bias is the bound C, the scales the bound `scales`, the activation as Dense's.
    Scaled { sa: Operand, sb: Operand, bias: Option<Operand>, act: Option<UnaryOp> },
}

/// A batched matrix product with every operand as strides.
#[derive(Clone, Debug)]
struct Problem {
    batch: Vec<usize>,
    m: usize,
    /// The run-time row count when the output's rows are a symbolic dim (rows past it, up to
    /// the next row block, are computed but never valid; see [`crate::layout`]).
    m_run: Option<Value>,
    /// The run-time column count when the output's columns are a symbolic dim.
    n_run: Option<Value>,
    k: usize,
    /// The run-time contraction extent when A's and B's are both symbolic (the loops along K
    /// stop there; `k` is then only the physical bound).
    k_run: Option<Value>,
    n: usize,
    acc: Acc,
    a: Operand,
    b: Operand,
    za: Option<Operand>,
    zb: Option<Operand>,
    out: Operand,
    epi: Epilogue,
    /// Set when B is a constant f32 weight (or a slice of one: [`Pack`]): the assembled path
    /// then reads it packed ([`crate::pack`]) and reports it.
    pack: Option<Pack>,
}

/// B of a product as (a slice of) a constant weight packed in panels ([`crate::pack`]): the
/// weight is input `input`, `[k, n]` as a whole. B's pointer is where the slice starts in the
/// packed layout (its first column a multiple of the schedule's `nr`); the panels are `k·nr`
/// elements apart whatever rows of them the product reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pack {
    /// The weight's position among the node's inputs.
    pub input: usize,
    /// Rows of the whole weight.
    pub k: usize,
    /// Columns of the whole weight.
    pub n: usize,
}

/// An operand inside one batch: its base pointer there, strides, element size.
#[derive(Clone, Copy, Debug)]
struct Mat {
    ptr: Value,
    dtype: DType,
    rs: i64,
    cs: i64,
    size: i64,
}

impl Mat {
    /// The element (r, c) of the matrix `self` points at, relative to `base`: an address and
    /// an immediate offset.
    fn at(&self, kb: &mut Kb, base: Value, r: i64, c: i64) -> (Value, i32) {
        imm(kb, base, (r * self.rs + c * self.cs) * self.size)
    }

    /// The pointer to element (i, j) for runtime `i` and `j` (None for 0).
    fn offset(&self, kb: &mut Kb, i: Option<Value>, j: Option<Value>) -> Value {
        let mut p = self.ptr;
        for (x, s) in [(i, self.rs), (j, self.cs)] {
            if let Some(x) = x
                && s != 0
            {
                p = kb.addr(p, x, (s * self.size) as usize);
            }
        }
        p
    }
}

/// `base + off` as an address and a 32-bit immediate.
fn imm(kb: &mut Kb, base: Value, off: i64) -> (Value, i32) {
    match i32::try_from(off) {
        Ok(o) => (base, o),
        Err(_) => (kb.addr_const(base, off), 0),
    }
}

/// Every operand of a problem bound to one batch.
struct Bound {
    a: Mat,
    b: Mat,
    za: Option<Mat>,
    zb: Option<Mat>,
    c: Option<Mat>,
    /// QDense's a and b scales (`Epilogue::Scaled`).
    scales: Option<(Mat, Mat)>,
    out: Mat,
}

/// `p` with its batch folded into M when only A walks the batch, row after row (`[B, S, K]`
/// times a `[K, N]` weight is one `[B·S, K]` product): fewer, fuller tiles.
fn fold_batch(p: &Problem) -> Option<Problem> {
    let flat = |o: &Operand| o.batch.iter().all(|&s| s == 0);
    if p.batch.is_empty() || !flat(&p.b) || !p.zb.as_ref().is_none_or(flat) {
        return None;
    }
    if !p.za.as_ref().is_none_or(|z| flat(z) && z.rs == 0) {
        return None;
    }
    // A per-row scale must walk the batch as A's rows do (contiguous, one per row).
    if let Epilogue::Scaled { sa, .. } = &p.epi
        && !(flat(sa) && sa.rs == 0)
        && !(sa.rs == 1 && row_major_batch(&p.batch, &sa.batch, p.m as i64))
    {
        return None;
    }
    // A's batch strides must be those of a row-major [batch..., M, K] (any where the extent is 1).
    if !row_major_batch(&p.batch, &p.a.batch, p.a.rs * p.m as i64) {
        return None;
    }
    let mut q = p.clone();
    q.m = p.m * p.batch.iter().product::<usize>();
    q.batch.clear();
    let sa = match &mut q.epi {
        Epilogue::Scaled { sa, .. } => Some(sa),
        _ => None,
    };
    for o in [Some(&mut q.a), Some(&mut q.b), q.za.as_mut(), q.zb.as_mut(), Some(&mut q.out), sa].into_iter().flatten()
    {
        o.batch.clear();
    }
    Some(q)
}

/// Whether batch strides `st` over `batch` dims are those of row-major data whose innermost
/// batch is `inner` elements apart (any stride where the extent is 1).
fn row_major_batch(batch: &[usize], st: &[i64], inner: i64) -> bool {
    let mut want = inner;
    for (d, &s) in batch.iter().zip(st).rev() {
        if *d != 1 && s != want {
            return false;
        }
        want *= *d as i64;
    }
    true
}

/// Emits `p`; returns B's packed read when the product reads B packed.
fn emit_problem(kb: &mut Kb, p: &Problem) -> Option<PackedRead> {
    if p.m == 0 || p.n == 0 || p.batch.contains(&0) {
        return None;
    }
    if let Some(q) = fold_batch(p).filter(|_| p.m_run.is_none()) {
        return emit_problem(kb, &q);
    }
    let bind = |kb: &mut Kb, o: &Operand, idx: &[Value]| -> Mat {
        let size = o.dtype.size() as i64;
        let off = kb.linear(0, idx, &o.batch);
        let ptr = if o.batch.iter().all(|&s| s == 0) { o.ptr } else { kb.addr(o.ptr, off, size as usize) };
        Mat { ptr, dtype: o.dtype, rs: o.rs, cs: o.cs, size }
    };
    // A split kernel divides the batches when there are at least as many as row blocks, else
    // the rows of every batch (in `row_blocks`).
    let batches: usize = p.batch.iter().product();
    let nest = if batches >= p.m.div_ceil(kb.caps.schedule.mr) { Kb::nest_split } else { Kb::nest };
    let mut packed = None;
    nest(kb, &p.batch, &mut |kb, idx| {
        let c = match &p.epi {
            Epilogue::GemmF { c, .. }
            | Epilogue::GemmI { c, .. }
            | Epilogue::Dense { bias: c, .. }
            | Epilogue::Scaled { bias: c, .. } => c.as_ref().map(|c| bind(kb, c, &[])),
            Epilogue::Plain => None,
        };
        let scales = match &p.epi {
            Epilogue::Scaled { sa, sb, .. } => Some((bind(kb, sa, idx), bind(kb, sb, &[]))),
            _ => None,
        };
        let bound = Bound {
            a: bind(kb, &p.a, idx),
            b: bind(kb, &p.b, idx),
            za: p.za.as_ref().map(|z| bind(kb, z, idx)),
            zb: p.zb.as_ref().map(|z| bind(kb, z, idx)),
            c,
            scales,
            out: bind(kb, &p.out, idx),
        };
        packed = matrix(kb, p, &bound);
    });
    packed
}

/// How a tile's columns are held: `vecs` vectors of 4 columns, then `scalars` single columns.
#[derive(Clone, Copy, Debug)]
struct Cols {
    vecs: usize,
    scalars: usize,
}

/// One M×N matrix of a batch: picks the schedule. On the assembled path with a constant B
/// (`p.pack`), B is read packed (panels of the schedule's `nr` columns, [`crate::pack`]) and
/// the read is returned, for the object builder to pass the packed copy: the one place that
/// decides whether a weight is read packed is this choice of path.
fn matrix(kb: &mut Kb, p: &Problem, o: &Bound) -> Option<PackedRead> {
    let all_f32 =
        [Some(&o.a), Some(&o.b), o.c.as_ref(), Some(&o.out)].into_iter().flatten().all(|m| m.dtype == DType::F32);
    let vf32 = kb.caps.vector && p.acc == Acc::F32 && all_f32;
    // A run-time K runs on the broadcast schedule (its K loop is the one that takes it).
    let static_k = p.k_run.is_none();
    let dot_ok = static_k && vf32 && o.a.cs == 1 && o.b.rs == 1 && p.k >= 4;
    let bcast_ok = vf32 && o.b.cs == 1 && p.n >= 4;
    let int_ok = kb.caps.vector
        && p.acc == Acc::I32
        && matches!(o.a.dtype, DType::I8 | DType::U8)
        && o.b.cs == 1
        && p.n >= 8
        && o.zb.is_none_or(|z| z.cs <= 1);
    let s = kb.caps.schedule;
    if integer::applies(kb, p, o) {
        return integer::emit(kb, p, o);
    }
    if static_k && vf32 && s.kernel != Microkernel::Cranelift && assembled::applies(p, o) {
        let Some(pk) = p.pack else {
            assembled::emit(kb, p, o);
            return None;
        };
        // Packed: column j0's panel at j0·K elements, its rows nr apart (j0 is a multiple of nr).
        let b = Mat { rs: s.nr as i64, cs: pk.k as i64, ..o.b };
        assembled::emit(kb, p, &Bound { b, a: o.a, za: o.za, zb: o.zb, c: o.c, scales: o.scales, out: o.out });
        return Some(PackedRead { input: pk.input, packing: Packing::Panels { nr: s.nr, k: pk.k, n: pk.n } });
    } else if bcast_ok {
        // Products the assembled path does not take run on the default Cranelift tile.
        let s = if s.kernel == Microkernel::Cranelift { s } else { Schedule::default_for(Microkernel::Cranelift) };
        broadcast(kb, p, o, s.mr, s.nr);
    } else if dot_ok {
        dot(kb, p, o);
    } else if int_ok {
        broadcast(kb, p, o, 4, 8);
    } else {
        broadcast(kb, p, o, 4, 0);
    }
    None
}

/// Splits `n` columns into tiles: full tiles of `nr` (vector columns, `nr == 0` for a scalar
/// schedule), then the edge. Returns (tile width, count, layout) triples.
fn col_tiles(n: usize, nr: usize, int: bool) -> Vec<(usize, usize, Cols)> {
    let mut out = Vec::new();
    if nr == 0 {
        if n >= 4 {
            out.push((4, n / 4, Cols { vecs: 0, scalars: 4 }));
        }
        if !n.is_multiple_of(4) {
            out.push((n % 4, 1, Cols { vecs: 0, scalars: n % 4 }));
        }
        return out;
    }
    if n >= nr {
        out.push((nr, n / nr, Cols { vecs: nr / 4, scalars: 0 }));
    }
    let mut rem = n % nr;
    if rem >= 4 {
        // Vectors of 4 columns (integer loads widen 8 bytes at a time, so one pair there,
        // then scalars).
        let w = if int { 8.min(rem / 8 * 8) } else { rem / 4 * 4 };
        if w > 0 {
            out.push((w, 1, Cols { vecs: w / 4, scalars: 0 }));
            rem -= w;
        }
        if int && rem >= 4 {
            out.push((4, 1, Cols { vecs: 0, scalars: 4 }));
            rem -= 4;
        }
    }
    if rem > 0 {
        out.push((rem, 1, Cols { vecs: 0, scalars: rem }));
    }
    out
}
