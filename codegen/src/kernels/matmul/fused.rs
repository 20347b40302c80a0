//! Products inside fused kernels (Attention, Dense, FusedMlp): f32 matrices as pointers and
//! strides ([`F32Mat`]), run on MatMul's schedules ([`Product`]).

use super::{Acc, Bound, Epilogue, Mat, Operand, Pack, Problem, matrix};
use crate::emit::Kb;
use crate::pack::PackedRead;
use cranelift_codegen::ir::Value;
use slmtvm_ir::DType;
use slmtvm_ir::ops::UnaryOp;

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
        let bound = Bound { a: mat(a), b: mat(b), za: None, zb: None, c, scales: None, out: mat(out) };
        matrix(kb, &p, &bound)
    }
}
