//! Assembled microkernels: the register-tiled inner loops of the f32 matrix products, written
//! as machine code where Cranelift's vectors cap a kernel well below the CPU's peak (x86_64:
//! Cranelift has 128-bit vectors only, and no `vfmadd231ps`, so each FMA costs a register
//! copy). The bytes are placed in the object as local functions (cranelift-module's
//! `define_function_bytes`) and called from the Cranelift kernels, which keep the loops over
//! tiles, K blocks and the epilogues (see `kernels::matmul`'s assembled path).
//!
//! One microkernel computes `C[mr × cols] = A[mr × kc] · B[kc × cols]` (or `C +=` when it
//! accumulates: the accumulators start from C, so a K-blocked product sums in the same order
//! as an unblocked one and gives the same bits), `cols = (nv - 1)·lanes + last`. Operands are
//! row-major f32 with byte strides: A contiguous along K, B and C along the columns. C ABI
//! (System V):
//!
//! ```c
//! void ukr(const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc);
//! ```
//!
//! Everything else (rows, vectors, valid lanes of the last vector, kc, accumulate) is fixed in
//! the code of each variant ([`Ukr`]); a model's object holds the variants its products need,
//! each once. [`vmath`] holds the vector math (activation epilogues, softmax's exponentials)
//! on the same footing: every assembled function is an [`AsmFn`] with the same six-argument
//! C signature.

pub mod vmath;
pub mod x86;

use slmtvm_targets::Microkernel;

/// One microkernel variant (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ukr {
    /// The instruction set (never [`Microkernel::Cranelift`]).
    pub kernel: Microkernel,
    /// Rows of the tile.
    pub mr: usize,
    /// Vectors per row.
    pub nv: usize,
    /// Valid lanes of the last vector (1 to the vector's lanes; fewer use masked loads and
    /// stores of B and C, which never touch memory past the columns).
    pub last: usize,
    /// Steps of K.
    pub kc: usize,
    /// Start from C (`C += A·B`) instead of zero.
    pub acc: bool,
    /// Prefetch distance in bytes (0: none): with every line of B it reads, the microkernel
    /// asks for the line `pf` bytes further into L2 (`prefetcht1`), so the next column tile's
    /// B (a packed weight's next panel) streams in while this one computes instead of stalling
    /// the next tile's first row tile.
    pub pf: i32,
}

impl Ukr {
    /// Columns of the tile.
    pub fn cols(&self) -> usize {
        (self.nv - 1) * self.kernel.lanes() + self.last
    }

    /// The local symbol of this variant in an object whose symbols start with `prefix`.
    pub fn symbol(&self, prefix: &str) -> String {
        format!(
            "{prefix}_ukr_{}_{}x{}_k{}{}{}",
            self.kernel,
            self.mr,
            self.cols(),
            self.kc,
            if self.acc { "_acc" } else { "" },
            if self.pf != 0 { format!("_pf{}", self.pf) } else { String::new() }
        )
    }

    /// Its machine code (position independent, no relocations).
    pub fn assemble(&self) -> crate::Result<Vec<u8>> {
        x86::microkernel(self).map_err(|e| crate::Error::Assemble { what: self.symbol("ukr"), message: e.to_string() })
    }
}

/// One integer microkernel variant ([`x86::int_microkernel`]): `mr` rows, `nv` vectors of 8
/// i32 columns (the last with `last` valid lanes), `kc` pair steps of K; same C signature as
/// [`Ukr`], with A as i16 pairs, B packed 8-bit pairs and C i32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IUkr {
    /// Rows of the tile.
    pub mr: usize,
    /// Vectors per row (1 or 2).
    pub nv: usize,
    /// Valid lanes of the last vector (1 to 8).
    pub last: usize,
    /// Pair steps of K.
    pub kc: usize,
    /// B is i8 (else u8).
    pub signed_b: bool,
}

/// Any assembled function: all take six `int64_t` (or pointer) arguments and return nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AsmFn {
    /// A matrix-product microkernel.
    Ukr(Ukr),
    /// An integer matrix-product microkernel.
    IUkr(IUkr),
    /// An activation epilogue over a tile ([`vmath::Act`]).
    Act(vmath::Act),
    /// Softmax's exponentials and sum over a row ([`vmath::ExpSum`]).
    ExpSum(vmath::ExpSum),
    /// A function over a run of floats ([`vmath::Map`]).
    Map(vmath::Map),
}

impl AsmFn {
    /// Its local symbol in an object whose symbols start with `prefix`.
    pub fn symbol(&self, prefix: &str) -> String {
        match self {
            AsmFn::Ukr(u) => u.symbol(prefix),
            AsmFn::IUkr(u) => {
                let b = if u.signed_b { "s8" } else { "u8" };
                format!("{prefix}_iukr_{b}_{}x{}_k{}", u.mr, (u.nv - 1) * 8 + u.last, u.kc)
            }
            AsmFn::Act(a) => {
                format!("{prefix}_act_{}_{}_{}{}", a.kernel, a.f.name(), a.cols, if a.bias { "_bias" } else { "" })
            }
            AsmFn::ExpSum(e) => format!("{prefix}_{}", e.name()),
            AsmFn::Map(m) => format!("{prefix}_map_{}_{}{}", m.kernel, m.f.name(), if m.gate { "_gate" } else { "" }),
        }
    }

    /// Its machine code (position independent, no relocations).
    pub fn assemble(&self) -> crate::Result<Vec<u8>> {
        let code = match self {
            AsmFn::Ukr(u) => return u.assemble(),
            AsmFn::IUkr(u) => {
                return x86::int_microkernel(u)
                    .map_err(|e| crate::Error::Assemble { what: self.symbol("f"), message: e.to_string() });
            }
            AsmFn::Act(a) => vmath::act(a),
            AsmFn::ExpSum(e) => vmath::exp_sum(e),
            AsmFn::Map(m) => vmath::map(m),
        };
        code.map_err(|e| crate::Error::Assemble { what: self.symbol("f"), message: e.to_string() })
    }
}
