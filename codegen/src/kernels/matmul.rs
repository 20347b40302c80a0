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

mod assembled;

use super::NodeCtx;
use crate::Result;
use crate::emit::{Kb, flags, storage_type};
use crate::pack::PackedRead;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value, types};
use slmtvm_ir::ops::broadcast::broadcast_dims;
use slmtvm_ir::ops::matmul::operand_dims;
use slmtvm_ir::ops::{Gemm, UnaryOp};
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

/// The contraction extent of physical extents `ka` (A) and `kb` (B), `sym` saying which are
/// symbolic: the static one when only one is (the symbolic operand's bound must be at least
/// it), else the smaller (both symbolic: a bound the run-time K loop never passes). Static
/// extents are checked equal by the caller.
fn contraction(cx: &NodeCtx, ka: usize, kb: usize, sym: (bool, bool)) -> Result<usize> {
    let k = match sym {
        (true, false) => kb,
        (false, _) => ka,
        (true, true) => ka.min(kb),
    };
    if ka < k || kb < k {
        return Err(cx.error(format!("a static contraction extent {k} exceeds the symbolic one's bound")));
    }
    Ok(k)
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

/// Element strides of data of `data` dims right-aligned into `shape` (0 where it broadcasts).
fn aligned_strides(shape: &[usize], data: &[usize]) -> Vec<i64> {
    let mut st = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for k in 0..data.len().min(shape.len()) {
        let d = data[data.len() - 1 - k];
        if d != 1 {
            st[shape.len() - 1 - k] = acc;
        }
        acc *= d as i64;
    }
    st
}

/// Maps an operand of `shape` (with per-axis strides `st`) onto (batch strides over
/// `batch_rank` dims, row stride, column stride); a 1-D A is a row, a 1-D B a column.
fn layout(st: &[i64], is_a: bool, batch_rank: usize) -> (Vec<i64>, i64, i64) {
    let r = st.len();
    if r == 1 {
        let (rs, cs) = if is_a { (0, st[0]) } else { (st[0], 0) };
        return (vec![0; batch_rank], rs, cs);
    }
    let mut batch = vec![0i64; batch_rank.saturating_sub(r - 2)];
    batch.extend_from_slice(&st[..r - 2]);
    batch.truncate(batch_rank);
    (batch, st[r - 2], st[r - 1])
}

/// NumPy-style dims of a product of `a` and `b`: (batch, m, k, n). Unlike the IR's inference
/// it reads physical dims, whose K may differ when either operand is symbolic along it (`sym`:
/// [`contraction`] then takes the run-time K); the split and the batch broadcast are the IR's.
fn product_dims(
    cx: &NodeCtx,
    a: &[usize],
    b: &[usize],
    sym: (bool, bool),
) -> Result<(Vec<usize>, usize, usize, usize)> {
    let (ab, m, ka) = operand_dims(a, true).ok_or_else(|| cx.error("operand a is a scalar"))?;
    let (bb, kb, n) = operand_dims(b, false).ok_or_else(|| cx.error("operand b is a scalar"))?;
    if sym == (false, false) && ka != kb {
        return Err(cx.error(format!("inner dims differ: {a:?} and {b:?}")));
    }
    let k = contraction(cx, ka, kb, sym)?;
    let batch =
        broadcast_dims(ab, bb).map_err(|_| cx.error(format!("batch dims do not broadcast: {a:?} and {b:?}")))?;
    Ok((batch, m, k, n))
}

/// The operand bound to input `i` of `shape`, its data of `data` dims broadcast into it.
fn operand(cx: &NodeCtx, i: usize, shape: &[usize], data: &[usize], is_a: bool, batch_rank: usize) -> Result<Operand> {
    let (batch, rs, cs) = layout(&aligned_strides(shape, data), is_a, batch_rank);
    Ok(Operand { ptr: cx.in_ptr(i)?, dtype: cx.in_dtype(i)?, batch, rs, cs })
}

/// The row-major output operand of a product with `batch` dims and an M×N matrix.
fn output(cx: &NodeCtx, batch: &[usize], m: usize, n: usize) -> Operand {
    let mut st = crate::emit::strides_of(&[batch, &[m, n]].concat());
    let cs = st.pop().unwrap_or(1);
    let rs = st.pop().unwrap_or(0);
    Operand { ptr: cx.out_ptr(0), dtype: cx.out_dtype(0), batch: st, rs, cs }
}

fn matmul(cx: &NodeCtx, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (batch, m, k, n) = product_dims(cx, &ad, &bd, sym)?;
    let dtype = cx.in_dtype(0)?;
    if cx.in_dtype(1)? != dtype || cx.out_dtype(0) != dtype {
        return Err(cx.error("operands and result must share a dtype"));
    }
    let acc = match dtype {
        DType::F32 | DType::F16 => Acc::F32,
        DType::I32 => Acc::I32,
        DType::I64 => Acc::I64,
        other => return Err(cx.unsupported(format!("dtype {other}"))),
    };
    let r = batch.len();
    Ok(Problem {
        a: operand(cx, 0, &ad, &ad, true, r)?,
        b: operand(cx, 1, &bd, &bd, false, r)?,
        za: None,
        zb: None,
        out: output(cx, &batch, m, n),
        batch,
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc,
        epi: Epilogue::Plain,
        pack: (bd.len() == 2 && cx.in_const(1).is_some()).then_some(Pack { input: 1, k, n }),
    })
}

fn gemm(cx: &NodeCtx, g: &Gemm, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (&[a0, a1], &[b0, b1]) = (ad.as_slice(), bd.as_slice()) else {
        return Err(cx.error("Gemm operands must be 2-D"));
    };
    let dtype = cx.in_dtype(0)?;
    if cx.in_dtype(1)? != dtype || cx.out_dtype(0) != dtype {
        return Err(cx.error("operands and result must share a dtype"));
    }
    let (m, k) = if g.trans_a { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if g.trans_b { (b1, b0) } else { (b0, b1) };
    if sym == (false, false) && k != kb {
        return Err(cx.error(format!("inner dims differ: {ad:?} and {bd:?}")));
    }
    let k = contraction(cx, k, kb, sym)?;
    let (ars, acs) = if g.trans_a { (1, a1 as i64) } else { (a1 as i64, 1) };
    let (brs, bcs) = if g.trans_b { (1, b1 as i64) } else { (b1 as i64, 1) };
    let a = Operand { ptr: cx.in_ptr(0)?, dtype, batch: vec![], rs: ars, cs: acs };
    let b = Operand { ptr: cx.in_ptr(1)?, dtype, batch: vec![], rs: brs, cs: bcs };
    let c = match cx.in_ptr_opt(2) {
        Some(ptr) if g.beta != 0.0 => {
            let cd = cx.in_dims(2)?;
            if cx.in_dtype(2)? != dtype {
                return Err(cx.error("C must share the operands' dtype"));
            }
            if cd.len() > 2 || cd.iter().rev().zip([n, m]).any(|(&d, o)| d != 1 && d != o) {
                return Err(cx.error(format!("C of shape {cd:?} does not broadcast to [{m}, {n}]")));
            }
            let st = aligned_strides(&[m, n], &cd);
            Some(Operand { ptr, dtype, batch: vec![], rs: st[0], cs: st[1] })
        }
        _ => None,
    };
    let (alpha, beta) = (g.alpha, g.beta);
    let (acc, epi) = match dtype {
        DType::F32 | DType::F16 => (Acc::F32, Epilogue::GemmF { alpha, beta, c }),
        DType::I32 => (Acc::I32, Epilogue::GemmI { alpha, beta, c }),
        DType::I64 => (Acc::I64, Epilogue::GemmI { alpha, beta, c }),
        other => return Err(cx.unsupported(format!("dtype {other}"))),
    };
    Ok(Problem {
        batch: vec![],
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc,
        a,
        b,
        za: None,
        zb: None,
        out: output(cx, &[], m, n),
        epi,
        pack: (!g.trans_b && cx.in_const(1).is_some()).then_some(Pack { input: 1, k, n }),
    })
}

fn matmul_integer(cx: &NodeCtx, sym: (bool, bool)) -> Result<Problem> {
    let (ad, bd) = (cx.in_dims(0)?, cx.in_dims(1)?);
    let (batch, m, k, n) = product_dims(cx, &ad, &bd, sym)?;
    for i in 0..2 {
        if !matches!(cx.in_dtype(i)?, DType::I8 | DType::U8) {
            return Err(cx.error("operands must be i8 or u8"));
        }
    }
    if cx.out_dtype(0) != DType::I32 {
        return Err(cx.error("the result must be i32"));
    }
    let r = batch.len();
    let zero_point = |i: usize, shape: &[usize], per_row: bool| -> Result<Option<Operand>> {
        if cx.in_ptr_opt(i).is_none() {
            return Ok(None);
        }
        if cx.in_dtype(i)? != cx.in_dtype(i - 2)? {
            return Err(cx.error("a zero point must share its operand's dtype"));
        }
        let zd = cx.in_dims(i)?;
        let aligned = if zd.iter().all(|&d| d == 1) {
            vec![]
        } else if zd.len() == 1 && per_row {
            if shape.len() < 2 {
                return Err(cx.error("a per-row zero point needs a of rank ≥ 2"));
            }
            vec![zd[0], 1]
        } else {
            zd
        };
        if aligned.len() > shape.len() || aligned.iter().rev().zip(shape.iter().rev()).any(|(&z, &s)| z != 1 && z != s)
        {
            return Err(cx.error(format!("zero point {aligned:?} does not broadcast to {shape:?}")));
        }
        Ok(Some(operand(cx, i, shape, &aligned, per_row, r)?))
    };
    Ok(Problem {
        a: operand(cx, 0, &ad, &ad, true, r)?,
        b: operand(cx, 1, &bd, &bd, false, r)?,
        za: zero_point(2, &ad, true)?,
        zb: zero_point(3, &bd, false)?,
        out: output(cx, &batch, m, n),
        batch,
        m,
        m_run: None,
        n_run: None,
        k,
        k_run: None,
        n,
        acc: Acc::I32,
        epi: Epilogue::Plain,
        pack: None,
    })
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
    // A's batch strides must be those of a row-major [batch..., M, K] (any where the extent is 1).
    let mut want = p.a.rs * p.m as i64;
    for (d, &s) in p.batch.iter().zip(&p.a.batch).rev() {
        if *d != 1 && s != want {
            return None;
        }
        want *= *d as i64;
    }
    let mut q = p.clone();
    q.m = p.m * p.batch.iter().product::<usize>();
    q.batch.clear();
    for o in [Some(&mut q.a), Some(&mut q.b), q.za.as_mut(), q.zb.as_mut(), Some(&mut q.out)].into_iter().flatten() {
        o.batch.clear();
    }
    Some(q)
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
            Epilogue::GemmF { c, .. } | Epilogue::GemmI { c, .. } | Epilogue::Dense { bias: c, .. } => {
                c.as_ref().map(|c| bind(kb, c, &[]))
            }
            Epilogue::Plain => None,
        };
        let bound = Bound {
            a: bind(kb, &p.a, idx),
            b: bind(kb, &p.b, idx),
            za: p.za.as_ref().map(|z| bind(kb, z, idx)),
            zb: p.zb.as_ref().map(|z| bind(kb, z, idx)),
            c,
            out: bind(kb, &p.out, idx),
        };
        packed = matrix(kb, p, &bound);
    });
    packed
}

/// An f32 matrix as a base pointer and element strides (row, column): a slice of a fused
/// kernel's operand or scratch, for [`Product`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32Mat {
    /// Address of element (0, 0).
    pub ptr: Value,
    /// Elements from one row to the next.
    pub rs: i64,
    /// Elements from one column to the next.
    pub cs: i64,
}

/// A product of f32 matrices for fused kernels that run products over slices (Attention's
/// `Q·Kᵀ` and `P·V`, Dense, FusedMlp's projections): `out[m×n] = a[m×k]·b[k×n]` on the
/// schedules MatMul uses (broadcast when `b` is contiguous along n, dot when `a` and `b` are
/// contiguous along k). Build it with [`Product::new`] and set the optional fields, then emit it
/// with [`Product::emit`] or, with a bias and activation, [`Product::dense`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Product {
    /// The left operand, `m×k`.
    pub a: F32Mat,
    /// The right operand, `k×n`. When it is (a slice of) a constant weight read packed
    /// (`pack`), its strides are those of the weight in place (row-major) and its pointer the
    /// slice's start in the layout it is read in.
    pub b: F32Mat,
    /// The result, `m×n`.
    pub out: F32Mat,
    /// `(m, k, n)`.
    pub mkn: (usize, usize, usize),
    /// Run-time row count, as for a symbolic MatMul output (whole tiles up to it are computed).
    pub m_run: Option<Value>,
    /// Run-time column count, likewise.
    pub n_run: Option<Value>,
    /// `out += a·b` instead of `out = a·b` (a fused kernel summing products: FusedMlp's down
    /// projection over chunks).
    pub accumulate: bool,
    /// `b` is (a slice of, [`Pack`]) a constant weight the assembled path reads packed.
    pub pack: Option<Pack>,
}

impl Product {
    /// `out = a·b` of static sizes `mkn`, `b` read in place.
    pub fn new(a: F32Mat, b: F32Mat, out: F32Mat, mkn: (usize, usize, usize)) -> Product {
        Product { a, b, out, mkn, m_run: None, n_run: None, accumulate: false, pack: None }
    }

    /// Emits the product; returns the packed read of `b` if the assembled path reads it packed
    /// ([`crate::pack`]).
    pub fn emit(self, kb: &mut Kb) -> Option<PackedRead> {
        let epi = if self.accumulate {
            let c = Operand { ptr: self.out.ptr, dtype: DType::F32, batch: vec![], rs: self.out.rs, cs: self.out.cs };
            Epilogue::GemmF { alpha: 1.0, beta: 1.0, c: Some(c) }
        } else {
            Epilogue::Plain
        };
        self.with_epilogue(kb, epi)
    }

    /// The Dense kernel: `out = act(a·b + bias)` (bias: `n` contiguous f32, or none), the bias
    /// and activation applied before each store; `accumulate` and `n_run` are not used.
    pub fn dense(self, kb: &mut Kb, bias: Option<Value>, act: Option<UnaryOp>) -> Option<PackedRead> {
        let bias = bias.map(|ptr| Operand { ptr, dtype: DType::F32, batch: vec![], rs: 0, cs: 1 });
        Product { n_run: None, ..self }.with_epilogue(kb, Epilogue::Dense { bias, act })
    }

    /// The product with epilogue `epi` (whose operand, if any, is bound as C).
    fn with_epilogue(self, kb: &mut Kb, epi: Epilogue) -> Option<PackedRead> {
        let Product { a, b, out, mkn: (m, k, n), m_run, n_run, pack, .. } = self;
        if m == 0 || n == 0 {
            return None;
        }
        let op = |x: F32Mat| Operand { ptr: x.ptr, dtype: DType::F32, batch: vec![], rs: x.rs, cs: x.cs };
        let c = match &epi {
            Epilogue::GemmF { c, .. } | Epilogue::Dense { bias: c, .. } => {
                c.as_ref().map(|c| Mat { ptr: c.ptr, dtype: DType::F32, rs: c.rs, cs: c.cs, size: 4 })
            }
            _ => None,
        };
        let p = Problem {
            batch: vec![],
            m,
            m_run,
            n_run,
            k,
            k_run: None,
            n,
            acc: Acc::F32,
            a: op(a),
            b: op(b),
            za: None,
            zb: None,
            out: op(out),
            epi,
            pack,
        };
        let mat = |x: F32Mat| Mat { ptr: x.ptr, dtype: DType::F32, rs: x.rs, cs: x.cs, size: 4 };
        let bound = Bound { a: mat(a), b: mat(b), za: None, zb: None, c, out: mat(out) };
        matrix(kb, &p, &bound)
    }
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
    if static_k && vf32 && s.kernel != Microkernel::Cranelift && assembled::applies(p, o) {
        let Some(pk) = p.pack else {
            assembled::emit(kb, p, o);
            return None;
        };
        // Packed: column j0's panel at j0·K elements, its rows nr apart (j0 is a multiple of nr).
        let b = Mat { rs: s.nr as i64, cs: pk.k as i64, ..o.b };
        assembled::emit(kb, p, &Bound { b, a: o.a, za: o.za, zb: o.zb, c: o.c, out: o.out });
        return Some(PackedRead { input: pk.input, nr: s.nr, k: pk.k, n: pk.n });
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
fn col_blocks(
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
enum End {
    At(i64),
    Run(Value),
}

/// `for p in (lo..end).step_by(step)`, carrying `state`; returns the final state. A constant
/// end makes no loop for one trip and nothing for none; a run-time end checks for no trip
/// first.
fn loop_carry(
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

fn zero(kb: &mut Kb, ty: Type) -> Value {
    let s = if ty.lane_type() == types::F32 { kb.b.ins().f32const(0.0) } else { kb.b.ins().iconst(ty.lane_type(), 0) };
    if ty.is_vector() { kb.b.ins().splat(ty, s) } else { s }
}

/// The broadcast schedule: tiles of `mr` rows × `nr` vector columns (`nr == 0`: the scalar
/// schedule, 4 × 4 scalar accumulators).
fn broadcast(kb: &mut Kb, p: &Problem, o: &Bound, mr: usize, nr: usize) {
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
fn activate_tile(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, rows: usize, cols: Cols) {
    let Epilogue::Dense { act: Some(act), .. } = &p.epi else { return };
    reload_tile(kb, o, t, rows, cols, &mut |kb, _, _, v, addr, off| {
        let y = super::elementwise::unary_float(kb, act, v);
        kb.store(y, addr, off);
    });
}

/// A visitor of a tile's reloaded values: `(kb, row, column, value, addr, offset)`.
type TileVisit<'f> = dyn FnMut(&mut Kb, i64, i64, Value, Value, i32) + 'f;

/// Loads back every stored value of a tile (`rows` rows, columns as `cols`: vectors of 4, then
/// scalars) and hands it to `f(kb, row, column, value, addr, offset)`.
fn reload_tile(kb: &mut Kb, o: &Bound, t: &Tile, rows: usize, cols: Cols, f: &mut TileVisit) {
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
struct Tile {
    i0: Value,
    j0: Value,
}

/// Applies the epilogue to `v` (scalar or vector of 4 columns) for output (i0 + r, j0 + c) and
/// stores it.
fn store(kb: &mut Kb, p: &Problem, o: &Bound, t: &Tile, r: i64, c: i64, v: Value) {
    let lanes = kb.lanes(v);
    let vty = kb.ty(v);
    let load_c = |kb: &mut Kb, cm: &Mat| -> Value {
        let base = cm.offset(kb, Some(t.i0), Some(t.j0));
        let (addr, off) = cm.at(kb, base, r, c);
        if lanes == 4 && cm.cs == 1 {
            kb.load(types::F32X4, addr, off)
        } else {
            let s = load_scalar(kb, p.acc, cm.dtype, addr, off);
            if lanes == 4 { kb.b.ins().splat(vty, s) } else { s }
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
fn dot(kb: &mut Kb, p: &Problem, o: &Bound) {
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
