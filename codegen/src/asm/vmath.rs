//! Assembled AVX-512 vector math: the approximations of `kernels::math` (the same algorithms,
//! written once over [`Ops`]) on 16-lane `zmm` registers, four times Cranelift's `F32X4`.
//!
//! An algorithm is first recorded (`Recorder`, an [`Ops`] whose values are numbered
//! nodes), then emitted as straight-line code: constants become embedded-broadcast memory
//! operands of a table after the code (`{1to16}`, no register), comparison masks live in
//! `k1..k7`, values in `zmm` registers allocated by last use. The arithmetic is the same
//! IEEE operation sequence with fused multiply-adds, so the results equal the Cranelift code's
//! on an FMA target bit for bit (the kernels' tests compare them).
//!
//! Functions (System V, six `int64_t` arguments like the microkernels):
//! - [`Act`] `act(float *y, int64_t ld, int64_t rows, const float *bias, _, _)`: for each of
//!   `rows` rows `ld` bytes apart, its `cols` floats (fixed per variant) become
//!   `f(y + bias)` in place (bias: `cols` floats, or none): Dense's epilogue over a tile.
//! - [`ExpSum`] `exp_sum(float *x, int64_t n, const float *max, float *sum, _, _)`: `x[j] =
//!   e^(x[j] - *max)` for `j < n` and `*sum = Σ x[j]` (softmax's second pass); with
//!   [`Scores`], `exp_sum(float *x, int64_t n, const float *mask, float *sum, _, _)` first
//!   makes `x[j] = x[j]·scale + mask[j]` (or `+ *mask`, or no mask) and takes their maximum
//!   (attention's whole softmax row but the division).
//! - [`Map`] `map(const float *x, int64_t n, const float *u, float *y, _, _)`: `y[j] = f(x[j])`
//!   (or, gated, `f(x[j])·u[j]`) for `j < n` (`y` may be `x`): elementwise kernels and
//!   FusedMlp's gate.

use super::x86::{YMM, ZMM, load_vec, store_vec};
use crate::math::{self, Ops};
use iced_x86::IcedError;
use iced_x86::code_asm::*;
use slmtvm_targets::Microkernel;

/// The most vectors [`Map`] and [`ExpSum`] evaluate at once, interleaved
/// ([`Program::interleave`]).
const GROUP: usize = 4;

/// A function of one f32 the assembled path computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VFn {
    /// `e^x`.
    Exp,
    /// `tanh x`.
    Tanh,
    /// `erf x`.
    Erf,
    /// `1/(1+e^-x)`.
    Sigmoid,
    /// `x·sigmoid(x)`.
    Silu,
    /// `0.5·x·(1 + erf(x/√2))`.
    Gelu,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    GeluTanh,
}

impl VFn {
    /// The function of a unary operator, when it has an assembled form.
    pub fn of(op: &slmtvm_ir::ops::UnaryOp) -> Option<VFn> {
        use slmtvm_ir::ops::UnaryOp as U;
        Some(match op {
            U::Exp => VFn::Exp,
            U::Tanh => VFn::Tanh,
            U::Erf => VFn::Erf,
            U::Sigmoid => VFn::Sigmoid,
            U::Silu => VFn::Silu,
            U::Gelu { tanh_approx: false } => VFn::Gelu,
            U::Gelu { tanh_approx: true } => VFn::GeluTanh,
            _ => return None,
        })
    }

    /// Its lower-case name (in symbols).
    pub fn name(self) -> &'static str {
        match self {
            VFn::Exp => "exp",
            VFn::Tanh => "tanh",
            VFn::Erf => "erf",
            VFn::Sigmoid => "sigmoid",
            VFn::Silu => "silu",
            VFn::Gelu => "gelu",
            VFn::GeluTanh => "gelu_tanh",
        }
    }

    /// `f(x)` in `o`'s operations, the sequence `kernels::elementwise` emits.
    pub fn eval<O: Ops>(self, o: &mut O, x: O::F) -> O::F {
        match self {
            VFn::Exp => math::exp_with(o, x),
            VFn::Tanh => math::tanh_with(o, x),
            VFn::Erf => math::erf_with(o, x),
            VFn::Sigmoid => math::sigmoid_with(o, x),
            VFn::Silu => math::silu_with(o, x),
            VFn::Gelu => {
                let k = o.f(std::f32::consts::FRAC_1_SQRT_2);
                let kx = o.mul(k, x);
                let t = math::erf_with(o, kx);
                gelu_tail(o, x, t)
            }
            VFn::GeluTanh => {
                let x2 = o.mul(x, x);
                let (c, one) = (o.f(0.044715), o.f(1.0));
                let p = o.mul_add(c, x2, one);
                let k = o.f((2.0 / std::f32::consts::PI).sqrt());
                let kx = o.mul(k, x);
                let inner = o.mul(kx, p);
                let t = math::tanh_with(o, inner);
                gelu_tail(o, x, t)
            }
        }
    }
}

/// `0.5·x·(1 + t)`.
fn gelu_tail<O: Ops>(o: &mut O, x: O::F, t: O::F) -> O::F {
    let (half, one) = (o.f(0.5), o.f(1.0));
    let hx = o.mul(half, x);
    let s = o.add(one, t);
    o.mul(hx, s)
}

/// The activation epilogue over a tile (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Act {
    /// The instruction set ([`Microkernel::Avx2`] or [`Microkernel::Avx512`]).
    pub kernel: Microkernel,
    /// The function.
    pub f: VFn,
    /// Floats per row.
    pub cols: usize,
    /// Add a bias row first.
    pub bias: bool,
}

/// `f` over a contiguous run of floats of run-time length, optionally times a second run
/// (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Map {
    /// The instruction set ([`Microkernel::Avx2`] or [`Microkernel::Avx512`]).
    pub kernel: Microkernel,
    /// The function.
    pub f: VFn,
    /// Multiply by the second run (FusedMlp's `act(gate)·up`).
    pub gate: bool,
}

/// Softmax's exponentials and their sum over one row (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpSum {
    /// The instruction set ([`Microkernel::Avx2`] or [`Microkernel::Avx512`]).
    pub kernel: Microkernel,
    /// Softmax's first pass as well (attention's scores): the row is scaled and masked and its
    /// maximum found in the same function, which then takes the mask where the maximum was.
    pub scores: Option<Scores>,
}

/// Attention's first softmax pass over a score row: `x[j] = x[j]·scale (+ mask)`, the
/// maximum kept (a multiply, then an add: the Cranelift pass's operations, so the same bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scores {
    /// The scale's bits.
    pub scale: u32,
    /// The additive f32 mask row.
    pub mask: RowMask,
}

/// How an additive f32 mask row is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowMask {
    /// No mask.
    None,
    /// One float per key, contiguous.
    Keys,
    /// One float for the whole row (a mask broadcast along the keys).
    Scalar,
}

impl ExpSum {
    /// Its name in symbols.
    pub fn name(&self) -> String {
        let Some(sc) = self.scores else { return format!("expsum_{}", self.kernel) };
        let mask = match sc.mask {
            RowMask::None => "",
            RowMask::Keys => "_mask",
            RowMask::Scalar => "_mask1",
        };
        format!("softmax_{}_s{:08x}{mask}", self.kernel, sc.scale)
    }
}

/// A recorded operation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Node {
    /// Input vector `c` (of [`Program::interleave`]'s copies; 0 for one evaluation).
    Input(usize),
    /// A constant (its bits, in every lane).
    Const(u32),
    /// A binary vector operation.
    Bin(Bin, usize, usize),
    /// `a·b + c`, fused.
    Fma(usize, usize, usize),
    /// A shift by an immediate.
    Shift(Shift, usize, u32),
    /// `m ? a : b`.
    Sel(usize, usize, usize),
    /// A float comparison into a mask (the `vcmpps` predicate).
    Cmp(i32, usize, usize),
    /// A signed integer comparison into a mask (the `vpcmpd` predicate).
    ICmp(i32, usize, usize),
    /// Both / either mask.
    MaskAnd(usize, usize),
    /// Either mask.
    MaskOr(usize, usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    IAdd,
    ISub,
    IAnd,
    IOr,
    IXor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shift {
    Shl,
    Sra,
    Srl,
}

/// Records an algorithm's operations as numbered nodes (floats and their bits share a node:
/// a bit cast is free).
#[derive(Default)]
struct Recorder {
    nodes: Vec<Node>,
}

impl Recorder {
    fn push(&mut self, n: Node) -> usize {
        if let Node::Const(_) = n
            && let Some(i) = self.nodes.iter().position(|&m| m == n)
        {
            return i;
        }
        self.nodes.push(n);
        self.nodes.len() - 1
    }
}

impl Ops for Recorder {
    type F = usize;
    type I = usize;
    type M = usize;
    fn f(&mut self, v: f32) -> usize {
        self.push(Node::Const(v.to_bits()))
    }
    fn i(&mut self, v: i32) -> usize {
        self.push(Node::Const(v as u32))
    }
    fn add(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::Add, a, b))
    }
    fn sub(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::Sub, a, b))
    }
    fn mul(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::Mul, a, b))
    }
    fn div(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::Div, a, b))
    }
    fn mul_add(&mut self, a: usize, b: usize, c: usize) -> usize {
        self.push(Node::Fma(a, b, c))
    }
    fn lt(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Cmp(0x11, a, b)) // LT_OQ
    }
    fn le(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Cmp(0x12, a, b)) // LE_OQ
    }
    fn eq(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Cmp(0x00, a, b)) // EQ_OQ
    }
    fn uno(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Cmp(0x03, a, b)) // UNORD_Q
    }
    fn ilt(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::ICmp(1, a, b)) // LT
    }
    fn ieq(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::ICmp(0, a, b)) // EQ
    }
    fn and_m(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::MaskAnd(a, b))
    }
    fn or_m(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::MaskOr(a, b))
    }
    fn sel(&mut self, m: usize, a: usize, b: usize) -> usize {
        self.push(Node::Sel(m, a, b))
    }
    fn seli(&mut self, m: usize, a: usize, b: usize) -> usize {
        self.push(Node::Sel(m, a, b))
    }
    fn bits(&mut self, a: usize) -> usize {
        a
    }
    fn float(&mut self, a: usize) -> usize {
        a
    }
    fn iadd(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::IAdd, a, b))
    }
    fn isub(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::ISub, a, b))
    }
    fn iand(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::IAnd, a, b))
    }
    fn ior(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::IOr, a, b))
    }
    fn ixor(&mut self, a: usize, b: usize) -> usize {
        self.push(Node::Bin(Bin::IXor, a, b))
    }
    fn shl(&mut self, a: usize, k: u32) -> usize {
        self.push(Node::Shift(Shift::Shl, a, k))
    }
    fn sra(&mut self, a: usize, k: u32) -> usize {
        self.push(Node::Shift(Shift::Sra, a, k))
    }
    fn srl(&mut self, a: usize, k: u32) -> usize {
        self.push(Node::Shift(Shift::Srl, a, k))
    }
    fn fused(&self) -> bool {
        true
    }
}

/// Where a recorded value lives while the code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// A `zmm` register.
    Z(usize),
    /// A mask register `k1..k7`.
    K(usize),
    /// Constant `i` of the table.
    C(usize),
}

/// A recorded function ready to emit: nodes, each one's last use, the constant table.
struct Program {
    nodes: Vec<Node>,
    last_use: Vec<usize>,
    /// The result of each evaluation.
    outs: Vec<usize>,
    consts: Vec<u32>,
    /// Table index of each constant node.
    const_index: Vec<Option<usize>>,
}

impl Program {
    fn record(f: VFn) -> Program {
        let mut r = Recorder::default();
        let x = r.push(Node::Input(0));
        let out = f.eval(&mut r, x);
        Program::build(r.nodes, vec![out])
    }

    /// `n` independent evaluations of this program, interleaved node by node (constants
    /// shared): an out-of-order core then overlaps their dependency chains, where one
    /// evaluation is a chain of tens of dependent operations. Inputs and outputs are numbered
    /// by copy.
    fn interleave(&self, n: usize) -> Program {
        let mut nodes = Vec::new();
        let mut map = vec![vec![0; self.nodes.len()]; n];
        for (i, node) in self.nodes.iter().enumerate() {
            if let Node::Const(_) = node {
                nodes.push(*node);
                map.iter_mut().for_each(|m| m[i] = nodes.len() - 1);
                continue;
            }
            for (c, m) in map.iter_mut().enumerate() {
                let new = match *node {
                    Node::Input(_) => Node::Input(c),
                    other => remap(&other, |v| m[v]),
                };
                nodes.push(new);
                m[i] = nodes.len() - 1;
            }
        }
        let outs = map.iter().flat_map(|m| self.outs.iter().map(|&o| m[o])).collect();
        Program::build(nodes, outs)
    }

    fn build(nodes: Vec<Node>, outs: Vec<usize>) -> Program {
        let mut last_use = vec![0; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for a in operands(n) {
                last_use[a] = i;
            }
        }
        for &o in &outs {
            last_use[o] = usize::MAX;
        }
        let mut consts = Vec::new();
        let const_index = nodes
            .iter()
            .map(|n| match n {
                Node::Const(b) => {
                    consts.push(*b);
                    Some(consts.len() - 1)
                }
                _ => None,
            })
            .collect();
        Program { nodes, last_use, outs, consts, const_index }
    }

    /// This program interleaved for the most evaluations up to `most` whose code fits the
    /// vector registers `regs` plus the inputs ([`group_inputs`]), and that count.
    fn grouped(&self, wide: bool, regs: &std::ops::Range<usize>, most: usize) -> (Program, usize) {
        for n in (2..=most).rev() {
            let p = self.interleave(n);
            let Ok(mut dry) = CodeAssembler::new(64) else { break };
            let table: Vec<CodeLabel> = p.consts.iter().map(|_| dry.create_label()).collect();
            if Emitter::new(&p, wide, regs.clone(), &table).emit(&mut dry, &group_inputs(regs, n)).is_ok() {
                return (p, n);
            }
        }
        (self.interleave(1), 1)
    }
}

/// A program emitted over a strip of vectors from `rdi`: up to [`Strips::g`] at once,
/// interleaved ([`Program::grouped`]), or one.
struct Strips {
    grouped: Program,
    g: usize,
    single: Program,
    regs: std::ops::Range<usize>,
    wide: bool,
    /// Bytes per vector (one strip step).
    vb: i32,
}

impl Strips {
    fn new(p: &Program, wide: bool, regs: std::ops::Range<usize>) -> Strips {
        let (grouped, g) = p.grouped(wide, &regs, GROUP);
        Strips { grouped, g, single: p.interleave(1), regs, wide, vb: if wide { 64 } else { 32 } }
    }

    /// Loads `count` (1 or `g`) consecutive vectors from `rdi` (masked when `partial`), each
    /// then through `pre`, evaluates the program on them; returns the results' registers.
    fn eval(
        &self,
        a: &mut CodeAssembler,
        table: &[CodeLabel],
        count: usize,
        partial: bool,
        pre: &mut dyn FnMut(&mut CodeAssembler, usize) -> Result<(), IcedError>,
    ) -> Result<Vec<usize>, VErr> {
        let inputs = group_inputs(&self.regs, count);
        for (c, &x) in inputs.iter().enumerate() {
            load_vec(a, self.wide, partial, x, rdi + c as i32 * self.vb)?;
            pre(a, x)?;
        }
        let prog = if count == 1 { &self.single } else { &self.grouped };
        Emitter::new(prog, self.wide, self.regs.clone(), table).emit(a, &inputs)
    }
}

/// The input registers of `n` interleaved evaluations: register 0, then the top `n - 1` of
/// `regs` (which the emitter then leaves out of its pool).
fn group_inputs(regs: &std::ops::Range<usize>, n: usize) -> Vec<usize> {
    std::iter::once(0).chain(regs.clone().rev().take(n - 1)).collect()
}

/// `n` with every operand `v` replaced by `f(v)`.
fn remap(n: &Node, f: impl Fn(usize) -> usize) -> Node {
    match *n {
        Node::Input(_) | Node::Const(_) => *n,
        Node::Bin(op, a, b) => Node::Bin(op, f(a), f(b)),
        Node::Fma(a, b, c) => Node::Fma(f(a), f(b), f(c)),
        Node::Shift(op, a, k) => Node::Shift(op, f(a), k),
        Node::Sel(m, a, b) => Node::Sel(f(m), f(a), f(b)),
        Node::Cmp(p, a, b) => Node::Cmp(p, f(a), f(b)),
        Node::ICmp(p, a, b) => Node::ICmp(p, f(a), f(b)),
        Node::MaskAnd(a, b) => Node::MaskAnd(f(a), f(b)),
        Node::MaskOr(a, b) => Node::MaskOr(f(a), f(b)),
    }
}

fn operands(n: &Node) -> Vec<usize> {
    match *n {
        Node::Input(_) | Node::Const(_) => vec![],
        Node::Bin(_, a, b) | Node::Cmp(_, a, b) | Node::ICmp(_, a, b) | Node::MaskAnd(a, b) | Node::MaskOr(a, b) => {
            vec![a, b]
        }
        Node::Fma(a, b, c) | Node::Sel(a, b, c) => vec![a, b, c],
        Node::Shift(_, a, _) => vec![a],
    }
}

/// A second source operand: a register or a constant of the table.
#[derive(Clone, Copy)]
enum Src {
    R(usize),
    C(usize),
}

/// `d = x OP y` on `zmm` (AVX-512, constants broadcast from memory) or `ymm` (AVX2, constants
/// as 32-byte table entries).
macro_rules! op3 {
    ($e:expr, $a:expr, $ins:ident, $d:expr, $x:expr, $y:expr) => {
        op3!($e, $a, $ins / $ins, $d, $x, $y)
    };
    ($e:expr, $a:expr, $wide:ident / $narrow:ident, $d:expr, $x:expr, $y:expr) => {
        match ($e.wide, $y) {
            (true, Src::R(r)) => $a.$wide(ZMM[$d], ZMM[$x], ZMM[r])?,
            (true, Src::C(c)) => $a.$wide(ZMM[$d], ZMM[$x], dword_bcst(ptr($e.table[c])))?,
            (false, Src::R(r)) => $a.$narrow(YMM[$d], YMM[$x], YMM[r])?,
            (false, Src::C(c)) => $a.$narrow(YMM[$d], YMM[$x], ymmword_ptr($e.table[c]))?,
        }
    };
}

/// Register allocation and emission of one evaluation of a [`Program`].
struct Emitter<'p> {
    p: &'p Program,
    /// `zmm` (AVX-512: masks in `k` registers) or `ymm` (AVX2: masks are vectors).
    wide: bool,
    loc: Vec<Option<Loc>>,
    free_z: Vec<usize>,
    free_k: Vec<usize>,
    /// One label per constant of the table (iced-x86 takes no displacement from a label).
    table: &'p [CodeLabel],
}

impl<'p> Emitter<'p> {
    /// An emitter using vector registers `regs` and (AVX-512) masks `k2..k7` (`k1` is the
    /// caller's edge mask).
    fn new(p: &'p Program, wide: bool, regs: std::ops::Range<usize>, table: &'p [CodeLabel]) -> Emitter<'p> {
        Emitter {
            p,
            wide,
            loc: vec![None; p.nodes.len()],
            free_z: regs.rev().collect(),
            free_k: (2..8).rev().collect(),
            table,
        }
    }

    fn z(&self, v: usize) -> Result<usize, VErr> {
        match self.loc[v] {
            Some(Loc::Z(r)) => Ok(r),
            other => Err(VErr::msg(if other.is_none() { "value not computed" } else { "not a vector register" })),
        }
    }

    fn src(&self, v: usize) -> Result<Src, VErr> {
        match self.loc[v] {
            Some(Loc::C(c)) => Ok(Src::C(c)),
            _ => Ok(Src::R(self.z(v)?)),
        }
    }

    fn is_c(&self, v: usize) -> bool {
        matches!(self.loc[v], Some(Loc::C(_)))
    }

    fn alloc_z(&mut self) -> Result<usize, VErr> {
        self.free_z.pop().ok_or_else(|| VErr::msg("out of vector registers"))
    }

    /// Frees the registers of `n`'s operands whose last use is node `i`.
    fn release(&mut self, i: usize, n: &Node) {
        for a in operands(n) {
            if self.p.last_use[a] == i {
                match self.loc[a] {
                    Some(Loc::Z(r)) if !self.free_z.contains(&r) => self.free_z.push(r),
                    Some(Loc::K(k)) if !self.free_k.contains(&k) => self.free_k.push(k),
                    _ => {}
                }
            }
        }
    }

    /// A register holding `v`: its own, or (a constant) a fresh temporary pushed on `temps`.
    fn reg(&mut self, a: &mut CodeAssembler, v: usize, temps: &mut Vec<usize>) -> Result<usize, VErr> {
        if let Some(Loc::C(c)) = self.loc[v] {
            let r = self.alloc_z()?;
            if self.wide {
                a.vbroadcastss(ZMM[r], dword_ptr(self.table[c]))?;
            } else {
                a.vmovups(YMM[r], ymmword_ptr(self.table[c]))?;
            }
            temps.push(r);
            return Ok(r);
        }
        self.z(v)
    }

    /// Releases node `i`'s dead operands and the temporaries, then takes the result register.
    fn result(&mut self, i: usize, n: &Node, temps: &[usize]) -> Result<usize, VErr> {
        self.release(i, n);
        for &t in temps {
            if !self.free_z.contains(&t) {
                self.free_z.push(t);
            }
        }
        self.alloc_z()
    }

    /// Emits the program on the inputs in vector registers `inputs` (one per evaluation,
    /// taken out of the pool); returns the results' registers.
    fn emit(&mut self, a: &mut CodeAssembler, inputs: &[usize]) -> Result<Vec<usize>, VErr> {
        let p = self.p;
        self.free_z.retain(|r| !inputs.contains(r));
        for (i, n) in p.nodes.iter().enumerate() {
            let mut temps = Vec::new();
            let loc = match *n {
                Node::Const(_) => {
                    self.loc[i] = p.const_index[i].map(Loc::C);
                    continue;
                }
                Node::Input(c) => Loc::Z(*inputs.get(c).ok_or_else(|| VErr::msg("missing input"))?),
                Node::Bin(op, x, y) => {
                    let commutes = matches!(op, Bin::Add | Bin::Mul | Bin::IAdd | Bin::IAnd | Bin::IOr | Bin::IXor);
                    let (x, y) = if commutes && self.is_c(x) && !self.is_c(y) { (y, x) } else { (x, y) };
                    let rx = self.reg(a, x, &mut temps)?;
                    let sy = self.src(y)?;
                    let d = self.result(i, n, &temps)?;
                    match op {
                        Bin::Add => op3!(self, a, vaddps, d, rx, sy),
                        Bin::Sub => op3!(self, a, vsubps, d, rx, sy),
                        Bin::Mul => op3!(self, a, vmulps, d, rx, sy),
                        Bin::Div => op3!(self, a, vdivps, d, rx, sy),
                        Bin::IAdd => op3!(self, a, vpaddd, d, rx, sy),
                        Bin::ISub => op3!(self, a, vpsubd, d, rx, sy),
                        Bin::IAnd => op3!(self, a, vpandd / vpand, d, rx, sy),
                        Bin::IOr => op3!(self, a, vpord / vpor, d, rx, sy),
                        Bin::IXor => op3!(self, a, vpxord / vpxor, d, rx, sy),
                    }
                    Loc::Z(d)
                }
                Node::Fma(x, y, c) => {
                    // d = x·y + c: d is x (in place when x dies here) or a copy of it, then
                    // `vfmadd213ps d, y, c` with c from memory when it is a constant.
                    let (x, y) = if self.is_c(x) && !self.is_c(y) { (y, x) } else { (x, y) };
                    let rx = self.reg(a, x, &mut temps)?;
                    let ry = self.reg(a, y, &mut temps)?;
                    let sc = self.src(c)?;
                    let rc = if let Src::R(r) = sc { Some(r) } else { None };
                    // The copy is taken before the operands are released: it must not
                    // overwrite y or c.
                    let x_dies = temps.contains(&rx) || p.last_use[x] == i;
                    let d = if x_dies && Some(rx) != rc && rx != ry {
                        rx
                    } else {
                        let d = self.alloc_z()?;
                        if self.wide {
                            a.vmovaps(ZMM[d], ZMM[rx])?;
                        } else {
                            a.vmovaps(YMM[d], YMM[rx])?;
                        }
                        d
                    };
                    op3!(self, a, vfmadd213ps, d, ry, sc);
                    self.release(i, n);
                    for &t in &temps {
                        if t != d && !self.free_z.contains(&t) {
                            self.free_z.push(t);
                        }
                    }
                    self.free_z.retain(|&r| r != d);
                    Loc::Z(d)
                }
                Node::Shift(op, x, k) => {
                    let rx = self.reg(a, x, &mut temps)?;
                    let d = self.result(i, n, &temps)?;
                    match (op, self.wide) {
                        (Shift::Shl, true) => a.vpslld(ZMM[d], ZMM[rx], k)?,
                        (Shift::Sra, true) => a.vpsrad(ZMM[d], ZMM[rx], k)?,
                        (Shift::Srl, true) => a.vpsrld(ZMM[d], ZMM[rx], k)?,
                        (Shift::Shl, false) => a.vpslld(YMM[d], YMM[rx], k)?,
                        (Shift::Sra, false) => a.vpsrad(YMM[d], YMM[rx], k)?,
                        (Shift::Srl, false) => a.vpsrld(YMM[d], YMM[rx], k)?,
                    }
                    Loc::Z(d)
                }
                Node::Sel(m, x, y) => {
                    // d = m ? x : y: `vpblendmd d{k}, y, x` / `vblendvps d, y, x, m`.
                    let ry = self.reg(a, y, &mut temps)?;
                    let sx = self.src(x)?;
                    let mloc = self.loc[m];
                    let d = self.result(i, n, &temps)?;
                    match (mloc, sx) {
                        (Some(Loc::K(k)), Src::R(rx)) => a.vpblendmd(masked(ZMM[d], k), ZMM[ry], ZMM[rx])?,
                        (Some(Loc::K(k)), Src::C(c)) => {
                            a.vpblendmd(masked(ZMM[d], k), ZMM[ry], dword_bcst(ptr(self.table[c])))?
                        }
                        (Some(Loc::Z(mr)), Src::R(rx)) => a.vblendvps(YMM[d], YMM[ry], YMM[rx], YMM[mr])?,
                        (Some(Loc::Z(mr)), Src::C(c)) => {
                            a.vblendvps(YMM[d], YMM[ry], ymmword_ptr(self.table[c]), YMM[mr])?
                        }
                        _ => return Err(VErr::msg("select mask")),
                    }
                    Loc::Z(d)
                }
                Node::Cmp(pred, x, y) | Node::ICmp(pred, x, y) => {
                    let int = matches!(n, Node::ICmp(..));
                    // A constant first operand: swap the operands and the predicate, so the
                    // constant is the memory operand.
                    let (pred, x, y) = if self.is_c(x) && !self.is_c(y) {
                        let swapped = match (int, pred) {
                            (false, 0x11) => 0x1e, // LT_OQ -> GT_OQ
                            (false, 0x12) => 0x1d, // LE_OQ -> GE_OQ
                            (true, 1) => 6,        // LT -> NLE (GT)
                            (_, p) => p,           // EQ, UNORD: symmetric
                        };
                        (swapped, y, x)
                    } else {
                        (pred, x, y)
                    };
                    if self.wide {
                        let rx = self.reg(a, x, &mut temps)?;
                        let sy = self.src(y)?;
                        self.release(i, n);
                        for &t in &temps {
                            self.free_z.push(t);
                        }
                        let k = self.free_k.pop().ok_or_else(|| VErr::msg("out of mask registers"))?;
                        let (kr, xz) = (k_reg(k), ZMM[rx]);
                        match (sy, int) {
                            (Src::R(ry), false) => a.vcmpps(kr, xz, ZMM[ry], pred)?,
                            (Src::R(ry), true) => a.vpcmpd(kr, xz, ZMM[ry], pred)?,
                            (Src::C(c), false) => a.vcmpps(kr, xz, dword_bcst(ptr(self.table[c])), pred)?,
                            (Src::C(c), true) => a.vpcmpd(kr, xz, dword_bcst(ptr(self.table[c])), pred)?,
                        }
                        Loc::K(k)
                    } else if !int {
                        let rx = self.reg(a, x, &mut temps)?;
                        let sy = self.src(y)?;
                        let d = self.result(i, n, &temps)?;
                        match sy {
                            Src::R(ry) => a.vcmpps(YMM[d], YMM[rx], YMM[ry], pred)?,
                            Src::C(c) => a.vcmpps(YMM[d], YMM[rx], ymmword_ptr(self.table[c]), pred)?,
                        }
                        Loc::Z(d)
                    } else {
                        // AVX2 has only "equal" and "greater than": x < y is y > x.
                        let (first, second) = if pred == 1 { (y, x) } else { (x, y) };
                        let rf = self.reg(a, first, &mut temps)?;
                        let s2 = self.src(second)?;
                        let d = self.result(i, n, &temps)?;
                        match (pred, s2) {
                            (0, Src::R(r)) => a.vpcmpeqd(YMM[d], YMM[rf], YMM[r])?,
                            (0, Src::C(c)) => a.vpcmpeqd(YMM[d], YMM[rf], ymmword_ptr(self.table[c]))?,
                            (_, Src::R(r)) => a.vpcmpgtd(YMM[d], YMM[rf], YMM[r])?,
                            (_, Src::C(c)) => a.vpcmpgtd(YMM[d], YMM[rf], ymmword_ptr(self.table[c]))?,
                        }
                        Loc::Z(d)
                    }
                }
                Node::MaskAnd(x, y) | Node::MaskOr(x, y) => {
                    let and = matches!(n, Node::MaskAnd(..));
                    match (self.loc[x], self.loc[y]) {
                        (Some(Loc::K(kx)), Some(Loc::K(ky))) => {
                            self.release(i, n);
                            let k = self.free_k.pop().ok_or_else(|| VErr::msg("out of mask registers"))?;
                            if and {
                                a.kandw(k_reg(k), k_reg(kx), k_reg(ky))?;
                            } else {
                                a.korw(k_reg(k), k_reg(kx), k_reg(ky))?;
                            }
                            Loc::K(k)
                        }
                        (Some(Loc::Z(rx)), Some(Loc::Z(ry))) => {
                            let d = self.result(i, n, &temps)?;
                            if and {
                                a.vpand(YMM[d], YMM[rx], YMM[ry])?;
                            } else {
                                a.vpor(YMM[d], YMM[rx], YMM[ry])?;
                            }
                            Loc::Z(d)
                        }
                        _ => return Err(VErr::msg("mask operands")),
                    }
                }
            };
            self.loc[i] = Some(loc);
        }
        p.outs.iter().map(|&o| self.z(o)).collect()
    }
}

/// Why assembling a vector-math function failed.
#[derive(Debug)]
pub struct VErr(String);

impl VErr {
    fn msg(m: &str) -> VErr {
        VErr(m.to_string())
    }
}

impl From<IcedError> for VErr {
    fn from(e: IcedError) -> VErr {
        VErr(e.to_string())
    }
}

impl std::fmt::Display for VErr {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `z{k}` (merge-masked by `k1..k7`).
fn masked(z: AsmRegisterZmm, k: usize) -> AsmRegisterZmm {
    match k {
        1 => z.k1(),
        2 => z.k2(),
        3 => z.k3(),
        4 => z.k4(),
        5 => z.k5(),
        6 => z.k6(),
        _ => z.k7(),
    }
}

fn k_reg(k: usize) -> AsmRegisterK {
    [k0, k1, k2, k3, k4, k5, k6, k7][k]
}

/// The code of `act` (see the module docs).
pub fn act(act: &Act) -> Result<Vec<u8>, VErr> {
    let wide = act.kernel == Microkernel::Avx512;
    let lanes = act.kernel.lanes();
    let p = Program::record(act.f);
    let mut a = CodeAssembler::new(64)?;
    let table: Vec<CodeLabel> = p.consts.iter().map(|_| a.create_label()).collect();
    let mut edge = a.create_label();
    let nv = act.cols.div_ceil(lanes);
    let last = act.cols - (nv - 1) * lanes;
    let bytes = (lanes * 4) as i32;
    // The edge mask: k1 (AVX-512) or ymm15 (AVX2). Bias lanes go through zmm31 / ymm14.
    if last < lanes {
        if wide {
            a.mov(eax, (1u32 << last) - 1)?;
            a.kmovw(k1, eax)?;
        } else {
            a.vmovups(YMM[15], ymmword_ptr(edge))?;
        }
    }
    let (regs, bias_reg) = if wide { (1..31, 31) } else { (1..14, 14) };
    // A row's vectors are evaluated together, interleaved, as many as the registers allow.
    let (pg, g) = p.grouped(wide, &regs, nv);
    let single = p.interleave(1);
    let mut top = a.create_label();
    let mut done = a.create_label();
    a.test(rdx, rdx)?;
    a.jle(done)?;
    a.set_label(&mut top)?;
    for v0 in (0..nv).step_by(g) {
        let count = g.min(nv - v0);
        let inputs = group_inputs(&regs, count);
        for (c, &x) in inputs.iter().enumerate() {
            let v = v0 + c;
            let partial = v + 1 == nv && last < lanes;
            load_vec(&mut a, wide, partial, x, rdi + v as i32 * bytes)?;
            if act.bias {
                load_vec(&mut a, wide, partial, bias_reg, rcx + v as i32 * bytes)?;
                if wide {
                    a.vaddps(ZMM[x], ZMM[x], ZMM[bias_reg])?;
                } else {
                    a.vaddps(YMM[x], YMM[x], YMM[bias_reg])?;
                }
            }
        }
        let prog = if count == g {
            &pg
        } else if count == 1 {
            &single
        } else {
            &p.interleave(count)
        };
        let ys = Emitter::new(prog, wide, regs.clone(), &table).emit(&mut a, &inputs)?;
        for (c, &y) in ys.iter().enumerate() {
            let v = v0 + c;
            store_vec(&mut a, wide, v + 1 == nv && last < lanes, y, rdi + v as i32 * bytes)?;
        }
    }
    a.add(rdi, rsi)?;
    a.dec(rdx)?;
    a.jne(top)?;
    a.set_label(&mut done)?;
    a.vzeroupper()?;
    a.ret()?;
    if !wide && last < lanes {
        a.set_label(&mut edge)?;
        let m: Vec<u32> = (0..8).map(|l| if l < last { u32::MAX } else { 0 }).collect();
        a.dd(&m)?;
    }
    finish(a, &p, table, wide)
}

/// The loop over `rsi` floats from `rdi` of [`Map`] and [`ExpSum`]: `body(a, group, false)`
/// per `group` full vectors (then `rdi` and the registers `advance` move on and `rsi` down),
/// then `body(a, 1, false)` per full vector left, then `body(a, 1, true)` once for a last
/// partial vector under the tail mask ([`tail_mask`]).
fn strip(
    a: &mut CodeAssembler,
    wide: bool,
    lanes: i32,
    masks: CodeLabel,
    advance: &[AsmRegister64],
    group: usize,
    body: &mut dyn FnMut(&mut CodeAssembler, usize, bool) -> Result<(), VErr>,
) -> Result<(), VErr> {
    let singles = a.create_label();
    let mut tail = a.create_label();
    let mut done = a.create_label();
    let grouped = (group > 1).then(|| (group, a.create_label(), singles));
    for (count, mut top, exit) in grouped.into_iter().chain([(1, singles, tail)]) {
        let floats = lanes * count as i32;
        a.set_label(&mut top)?;
        a.cmp(rsi, floats)?;
        a.jl(exit)?;
        body(a, count, false)?;
        for &r in std::iter::once(&rdi).chain(advance) {
            a.add(r, 4 * floats)?;
        }
        a.sub(rsi, floats)?;
        a.jmp(top)?;
    }
    a.set_label(&mut tail)?;
    a.test(rsi, rsi)?;
    a.jle(done)?;
    tail_mask(a, wide, masks)?;
    body(a, 1, true)?;
    a.set_label(&mut done)?;
    Ok(())
}

/// The code of [`Map`] (see the module docs).
pub fn map(m: &Map) -> Result<Vec<u8>, VErr> {
    let wide = m.kernel == Microkernel::Avx512;
    let lanes = m.kernel.lanes() as i32;
    let p = Program::record(m.f);
    let mut a = CodeAssembler::new(64)?;
    let table: Vec<CodeLabel> = p.consts.iter().map(|_| a.create_label()).collect();
    let mut masks = a.create_label();
    // Register 31 / 14: the gate's u; 15 (AVX2): the tail mask.
    let (ureg, regs) = if wide { (31, 1..31) } else { (14, 1..14) };
    let strips = Strips::new(&p, wide, regs);
    let mut body = |a: &mut CodeAssembler, count: usize, partial: bool| -> Result<(), VErr> {
        let ys = strips.eval(a, &table, count, partial, &mut |_, _| Ok(()))?;
        for (c, &y) in ys.iter().enumerate() {
            if m.gate {
                load_vec(a, wide, partial, ureg, rdx + c as i32 * strips.vb)?;
                if wide {
                    a.vmulps(ZMM[y], ZMM[y], ZMM[ureg])?;
                } else {
                    a.vmulps(YMM[y], YMM[y], YMM[ureg])?;
                }
            }
            store_vec(a, wide, partial, y, rcx + c as i32 * strips.vb)?;
        }
        Ok(())
    };
    strip(&mut a, wide, lanes, masks, &[rdx, rcx], strips.g, &mut body)?;
    a.vzeroupper()?;
    a.ret()?;
    if !wide {
        mask_table(&mut a, &mut masks)?;
    }
    finish(a, &p, table, wide)
}

/// Sets the mask of the last `rsi < lanes` lanes: k1 (AVX-512) or ymm15 (AVX2, 8 dwords of
/// `masks` from `4·(8 - n)`; clobbers rax and r8).
fn tail_mask(a: &mut CodeAssembler, wide: bool, masks: CodeLabel) -> Result<(), VErr> {
    if wide {
        a.mov(eax, 1)?;
        a.shlx(eax, eax, esi)?;
        a.dec(eax)?;
        a.kmovw(k1, eax)?;
    } else {
        a.lea(rax, ptr(masks))?;
        a.mov(r8, 8i64)?;
        a.sub(r8, rsi)?;
        a.vmovups(YMM[15], ymmword_ptr(rax + r8 * 4))?;
    }
    Ok(())
}

/// The AVX2 tail masks' table: 8 dwords of all ones, 8 of zeros.
fn mask_table(a: &mut CodeAssembler, masks: &mut CodeLabel) -> Result<(), VErr> {
    a.set_label(masks)?;
    let m: Vec<u32> = (0..16).map(|l| if l < 8 { u32::MAX } else { 0 }).collect();
    a.dd(&m)?;
    Ok(())
}

/// The code of [`ExpSum`] (see the module docs).
pub fn exp_sum(e: &ExpSum) -> Result<Vec<u8>, VErr> {
    let wide = e.kernel == Microkernel::Avx512;
    let lanes = e.kernel.lanes() as i32;
    let p = Program::record(VFn::Exp);
    let mut a = CodeAssembler::new(64)?;
    let table: Vec<CodeLabel> = p.consts.iter().map(|_| a.create_label()).collect();
    let mut masks = a.create_label();
    // Register 13 (AVX2) / 31: the maximum; 12 / 30: the running sum; 0: x - max; 15 (AVX2):
    // the tail mask.
    let (mx, sum, regs) = if wide { (31, 30, 1..30) } else { (13, 12, 1..12) };
    let mut extra = [a.create_label(), a.create_label()];
    if let Some(sc) = e.scores {
        scale_mask_max(&mut a, wide, lanes, masks, sc, &extra, mx)?;
    } else if wide {
        a.vbroadcastss(ZMM[mx], dword_ptr(rdx))?;
    } else {
        a.vbroadcastss(YMM[mx], dword_ptr(rdx))?;
    }
    if wide {
        a.vpxord(ZMM[sum], ZMM[sum], ZMM[sum])?;
    } else {
        a.vxorps(YMM[sum], YMM[sum], YMM[sum])?;
    }
    let strips = Strips::new(&p, wide, regs);
    let mut sub_max = |a: &mut CodeAssembler, x: usize| -> Result<(), IcedError> {
        if wide { a.vsubps(ZMM[x], ZMM[x], ZMM[mx]) } else { a.vsubps(YMM[x], YMM[x], YMM[mx]) }
    };
    let mut body = |a: &mut CodeAssembler, count: usize, partial: bool| -> Result<(), VErr> {
        let ys = strips.eval(a, &table, count, partial, &mut sub_max)?;
        for (c, &y) in ys.iter().enumerate() {
            store_vec(a, wide, partial, y, rdi + c as i32 * strips.vb)?;
            // The tail's masked-off lanes (x = 0, so e^-max) are not summed.
            match (wide, partial) {
                (true, false) => a.vaddps(ZMM[sum], ZMM[sum], ZMM[y])?,
                (true, true) => a.vaddps(ZMM[sum].k1(), ZMM[sum], ZMM[y])?,
                (false, partial) => {
                    if partial {
                        a.vandps(YMM[y], YMM[y], YMM[15])?;
                    }
                    a.vaddps(YMM[sum], YMM[sum], YMM[y])?;
                }
            }
        }
        Ok(())
    };
    strip(&mut a, wide, lanes, masks, &[], strips.g, &mut body)?;
    reduce_lanes(&mut a, wide, sum, false)?;
    a.vmovss(dword_ptr(rcx), xmm0)?;
    a.vzeroupper()?;
    a.ret()?;
    if !wide {
        mask_table(&mut a, &mut masks)?;
    }
    if let Some(sc) = e.scores {
        // The scale and -inf, broadcast from one float each.
        for (label, v) in extra.iter_mut().zip([sc.scale, f32::NEG_INFINITY.to_bits()]) {
            a.set_label(label)?;
            a.dd(&[v])?;
        }
    }
    finish(a, &p, table, wide)
}

/// Reduces vector register `src` across its lanes (their sum, or with `max` their maximum)
/// into the first lane of xmm0; clobbers xmm0 and xmm1.
fn reduce_lanes(a: &mut CodeAssembler, wide: bool, src: usize, max: bool) -> Result<(), IcedError> {
    let op = |a: &mut CodeAssembler, x: AsmRegisterYmm, y: AsmRegisterYmm| {
        if max { a.vmaxps(x, x, y) } else { a.vaddps(x, x, y) }
    };
    let opx = |a: &mut CodeAssembler, x: AsmRegisterXmm, y: AsmRegisterXmm| {
        if max { a.vmaxps(x, x, y) } else { a.vaddps(x, x, y) }
    };
    if wide {
        a.vmovaps(ZMM[0], ZMM[src])?;
        a.vextractf64x4(ymm1, ZMM[0], 1)?;
        op(a, ymm0, ymm1)?;
    } else {
        a.vmovaps(ymm0, YMM[src])?;
    }
    a.vextractf128(xmm1, ymm0, 1)?;
    opx(a, xmm0, xmm1)?;
    a.vmovhlps(xmm1, xmm1, xmm0)?;
    opx(a, xmm0, xmm1)?;
    a.vmovshdup(xmm1, xmm0)?;
    if max { a.vmaxss(xmm0, xmm0, xmm1) } else { a.vaddss(xmm0, xmm0, xmm1) }
}

/// [`ExpSum`]'s first pass with [`Scores`]: over `rsi` floats from `rdi` (both restored
/// after), `x = x·scale (+ mask from rdx)` stored and its maximum broadcast into vector
/// register `mx`. Registers: AVX-512 `zmm31` scale, `zmm30` the running maximum, `zmm29` a
/// scalar mask; AVX2 `ymm13`, `ymm12`, `ymm11` and `ymm10` = -inf (for the tail's lanes);
/// `extra` labels the scale and -inf. Clobbers r10, r11 (and what `strip` does).
fn scale_mask_max(
    a: &mut CodeAssembler,
    wide: bool,
    lanes: i32,
    masks: CodeLabel,
    sc: Scores,
    extra: &[CodeLabel; 2],
    mx: usize,
) -> Result<(), VErr> {
    let (scale, max, scalar, ninf) = if wide { (31, 30, 29, 0) } else { (13, 12, 11, 10) };
    let bcast = |a: &mut CodeAssembler, r: usize, m: AsmMemoryOperand| -> Result<(), IcedError> {
        if wide { a.vbroadcastss(ZMM[r], dword_ptr(m)) } else { a.vbroadcastss(YMM[r], dword_ptr(m)) }
    };
    bcast(a, scale, ptr(extra[0]))?;
    bcast(a, max, ptr(extra[1]))?;
    if !wide {
        bcast(a, ninf, ptr(extra[1]))?;
    }
    if sc.mask == RowMask::Scalar {
        bcast(a, scalar, rdx + 0)?;
    }
    a.mov(r10, rdi)?;
    a.mov(r11, rsi)?;
    let mut one = |a: &mut CodeAssembler, _: usize, partial: bool| -> Result<(), VErr> {
        load_vec(a, wide, partial, 1, rdi + 0)?;
        if wide {
            a.vmulps(ZMM[1], ZMM[1], ZMM[scale])?;
        } else {
            a.vmulps(YMM[1], YMM[1], YMM[scale])?;
        }
        let m = match sc.mask {
            RowMask::None => None,
            RowMask::Keys => {
                load_vec(a, wide, partial, 2, rdx + 0)?;
                Some(2)
            }
            RowMask::Scalar => Some(scalar),
        };
        if let Some(m) = m {
            if wide {
                a.vaddps(ZMM[1], ZMM[1], ZMM[m])?;
            } else {
                a.vaddps(YMM[1], YMM[1], YMM[m])?;
            }
        }
        store_vec(a, wide, partial, 1, rdi + 0)?;
        // The tail's masked-off lanes do not take part in the maximum.
        match (wide, partial) {
            (true, false) => a.vmaxps(ZMM[max], ZMM[max], ZMM[1])?,
            (true, true) => a.vmaxps(ZMM[max].k1(), ZMM[max], ZMM[1])?,
            (false, partial) => {
                if partial {
                    a.vblendvps(YMM[1], YMM[ninf], YMM[1], YMM[15])?;
                }
                a.vmaxps(YMM[max], YMM[max], YMM[1])?;
            }
        }
        Ok(())
    };
    let advance: &[AsmRegister64] = if sc.mask == RowMask::Keys { &[rdx] } else { &[] };
    strip(a, wide, lanes, masks, advance, 1, &mut one)?;
    // The horizontal maximum, broadcast into `mx`.
    reduce_lanes(a, wide, max, true)?;
    if wide {
        a.vbroadcastss(ZMM[mx], xmm0)?;
    } else {
        a.vbroadcastss(YMM[mx], xmm0)?;
    }
    a.mov(rdi, r10)?;
    a.mov(rsi, r11)?;
    Ok(())
}

/// Appends the constant table of `p` (one label per constant; AVX2 entries hold 8 copies)
/// and assembles.
fn finish(mut a: CodeAssembler, p: &Program, mut table: Vec<CodeLabel>, wide: bool) -> Result<Vec<u8>, VErr> {
    for (label, &c) in table.iter_mut().zip(&p.consts) {
        a.set_label(label)?;
        if wide {
            a.dd(&[c])?;
        } else {
            a.dd(&[c; 8])?;
        }
    }
    Ok(a.assemble(0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [VFn; 7] = [VFn::Exp, VFn::Tanh, VFn::Erf, VFn::Sigmoid, VFn::Silu, VFn::Gelu, VFn::GeluTanh];

    #[test]
    fn every_function_fits_the_registers_at_every_width() {
        for f in ALL {
            for cols in [1, 5, 16, 17, 32, 37, 64] {
                for bias in [false, true] {
                    for kernel in [Microkernel::Avx2, Microkernel::Avx512] {
                        let code = act(&Act { kernel, f, cols, bias })
                            .unwrap_or_else(|e| panic!("{kernel} {f:?} {cols}: {e}"));
                        // One evaluation per vector of a row, each tens of instructions.
                        assert!(code.len() > 100 * cols.div_ceil(16), "{f:?} {cols}: {} bytes", code.len());
                    }
                }
            }
        }
        for kernel in [Microkernel::Avx2, Microkernel::Avx512] {
            assert!(exp_sum(&ExpSum { kernel, scores: None }).is_ok(), "{kernel}");
            for mask in [RowMask::None, RowMask::Keys, RowMask::Scalar] {
                let scores = Some(Scores { scale: 0.125f32.to_bits(), mask });
                assert!(exp_sum(&ExpSum { kernel, scores }).is_ok(), "{kernel} {mask:?}");
            }
            for f in ALL {
                for gate in [false, true] {
                    map(&Map { kernel, f, gate }).unwrap_or_else(|e| panic!("{kernel} {f:?} map: {e}"));
                }
            }
        }
    }

    #[test]
    fn evaluations_interleave_as_far_as_the_registers_go() {
        let exp = Program::record(VFn::Exp);
        assert_eq!(exp.grouped(true, &(1..30), GROUP).1, 4);
        assert!(exp.grouped(false, &(1..12), GROUP).1 >= 2);
        let p = exp.interleave(3);
        assert_eq!(p.outs.len(), 3);
        assert_eq!(p.consts, exp.consts, "constants are shared by the copies");
        let inputs: Vec<usize> =
            p.nodes.iter().filter_map(|n| if let Node::Input(c) = n { Some(*c) } else { None }).collect();
        assert_eq!(inputs, [0, 1, 2]);
        // Erf needs more registers than AVX2 has for two evaluations at once: one.
        assert_eq!(Program::record(VFn::Erf).grouped(false, &(1..12), GROUP).1, 1);
    }

    #[test]
    fn constants_are_recorded_once_and_bit_casts_are_free() {
        let p = Program::record(VFn::Exp);
        let mut seen = p.consts.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), p.consts.len());
        assert!(p.consts.contains(&std::f32::consts::LOG2_E.to_bits()));
        assert!(p.nodes.iter().all(|n| !matches!(n, Node::Input(_)) || p.nodes[0] == Node::Input(0)));
    }
}
