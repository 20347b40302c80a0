//! Assembled AVX-512 vector math: the approximations of `kernels::math` (the same algorithms,
//! written once over [`Ops`]) on 16-lane `zmm` registers, four times Cranelift's `F32X4`.
//!
//! An algorithm is first recorded ([`Recorder`], an [`Ops`] whose values are numbered
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
//!   e^(x[j] - *max)` for `j < n` and `*sum = Σ x[j]` (softmax's second pass).

use super::x86::ZMM;
use crate::kernels::math::{self, Ops};
use iced_x86::IcedError;
use iced_x86::code_asm::*;

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
    /// The function.
    pub f: VFn,
    /// Floats per row.
    pub cols: usize,
    /// Add a bias row first.
    pub bias: bool,
}

/// Softmax's exponentials and their sum over one row (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExpSum;

/// A recorded operation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Node {
    /// The input vector.
    Input,
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
    out: usize,
    consts: Vec<u32>,
    /// Table index of each constant node.
    const_index: Vec<Option<usize>>,
}

impl Program {
    fn record(f: VFn) -> Program {
        let mut r = Recorder::default();
        let x = r.push(Node::Input);
        let out = f.eval(&mut r, x);
        let nodes = r.nodes;
        let mut last_use = vec![0; nodes.len()];
        for (i, n) in nodes.iter().enumerate() {
            for a in operands(n) {
                last_use[a] = i;
            }
        }
        last_use[out] = usize::MAX;
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
        Program { nodes, last_use, out, consts, const_index }
    }
}

fn operands(n: &Node) -> Vec<usize> {
    match *n {
        Node::Input | Node::Const(_) => vec![],
        Node::Bin(_, a, b) | Node::Cmp(_, a, b) | Node::ICmp(_, a, b) | Node::MaskAnd(a, b) | Node::MaskOr(a, b) => {
            vec![a, b]
        }
        Node::Fma(a, b, c) | Node::Sel(a, b, c) => vec![a, b, c],
        Node::Shift(_, a, _) => vec![a],
    }
}

/// Register allocation and emission of one evaluation of a [`Program`].
struct Emitter<'p> {
    p: &'p Program,
    loc: Vec<Option<Loc>>,
    free_z: Vec<usize>,
    free_k: Vec<usize>,
    /// One label per constant of the table (iced-x86 takes no displacement from a label).
    table: &'p [CodeLabel],
}

impl<'p> Emitter<'p> {
    /// An emitter using `zmm` registers `regs` and masks `k2..k7` (`k1` is the caller's edge
    /// mask).
    fn new(p: &'p Program, regs: std::ops::Range<usize>, table: &'p [CodeLabel]) -> Emitter<'p> {
        Emitter {
            p,
            loc: vec![None; p.nodes.len()],
            free_z: regs.rev().collect(),
            free_k: (2..8).rev().collect(),
            table,
        }
    }

    fn cmem(&self, i: usize) -> AsmMemoryOperand {
        dword_bcst(ptr(self.table[i]))
    }

    fn z(&self, v: usize) -> Result<usize, VErr> {
        match self.loc[v] {
            Some(Loc::Z(r)) => Ok(r),
            other => Err(VErr::msg(if other.is_none() { "value not computed" } else { "not a vector register" })),
        }
    }

    fn alloc_z(&mut self) -> Result<usize, VErr> {
        self.free_z.pop().ok_or_else(|| VErr::msg("out of zmm registers"))
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

    /// A register holding `v` (a constant is broadcast into a fresh one).
    fn reg(&mut self, a: &mut CodeAssembler, v: usize) -> Result<usize, VErr> {
        if let Some(Loc::C(c)) = self.loc[v] {
            let r = self.alloc_z()?;
            a.vbroadcastss(ZMM[r], dword_ptr(self.table[c]))?;
            return Ok(r);
        }
        self.z(v)
    }

    /// Emits the program on the input in `zmm[input]`; returns the register of the result.
    fn emit(&mut self, a: &mut CodeAssembler, input: usize) -> Result<usize, VErr> {
        let p = self.p;
        for (i, n) in p.nodes.iter().enumerate() {
            if let Node::Const(_) = n {
                self.loc[i] = p.const_index[i].map(Loc::C);
                continue;
            }
            if let Node::Input = n {
                self.loc[i] = Some(Loc::Z(input));
                continue;
            }
            // Operands that are constants but must sit in a register.
            let mut temps = Vec::new();
            let mut regof = |s: &mut Self, a: &mut CodeAssembler, v: usize| -> Result<usize, VErr> {
                let was_const = matches!(s.loc[v], Some(Loc::C(_)));
                let r = s.reg(a, v)?;
                if was_const {
                    temps.push(r);
                }
                Ok(r)
            };
            let is_c = |s: &Self, v: usize| matches!(s.loc[v], Some(Loc::C(_)));
            let loc = match *n {
                Node::Bin(op, x, y) => {
                    let commutes = matches!(op, Bin::Add | Bin::Mul | Bin::IAdd | Bin::IAnd | Bin::IOr | Bin::IXor);
                    let (x, y) = if commutes && is_c(self, x) && !is_c(self, y) { (y, x) } else { (x, y) };
                    let rx = regof(self, a, x)?;
                    self.release(i, n);
                    for &t in &temps {
                        self.free_z.push(t);
                    }
                    let d = self.alloc_z()?;
                    let (dz, xz) = (ZMM[d], ZMM[rx]);
                    if let Some(Loc::C(c)) = self.loc[y] {
                        let m = self.cmem(c);
                        match op {
                            Bin::Add => a.vaddps(dz, xz, m)?,
                            Bin::Sub => a.vsubps(dz, xz, m)?,
                            Bin::Mul => a.vmulps(dz, xz, m)?,
                            Bin::Div => a.vdivps(dz, xz, m)?,
                            Bin::IAdd => a.vpaddd(dz, xz, m)?,
                            Bin::ISub => a.vpsubd(dz, xz, m)?,
                            Bin::IAnd => a.vpandd(dz, xz, m)?,
                            Bin::IOr => a.vpord(dz, xz, m)?,
                            Bin::IXor => a.vpxord(dz, xz, m)?,
                        }
                    } else {
                        let yz = ZMM[self.z(y)?];
                        match op {
                            Bin::Add => a.vaddps(dz, xz, yz)?,
                            Bin::Sub => a.vsubps(dz, xz, yz)?,
                            Bin::Mul => a.vmulps(dz, xz, yz)?,
                            Bin::Div => a.vdivps(dz, xz, yz)?,
                            Bin::IAdd => a.vpaddd(dz, xz, yz)?,
                            Bin::ISub => a.vpsubd(dz, xz, yz)?,
                            Bin::IAnd => a.vpandd(dz, xz, yz)?,
                            Bin::IOr => a.vpord(dz, xz, yz)?,
                            Bin::IXor => a.vpxord(dz, xz, yz)?,
                        }
                    }
                    Loc::Z(d)
                }
                Node::Fma(x, y, c) => {
                    // d = x·y + c: d starts as a copy of x (or y), then `vfmadd213ps d, other, c`
                    // with c from memory when it is a constant.
                    let (x, y) = if is_c(self, x) && !is_c(self, y) { (y, x) } else { (x, y) };
                    let rx = regof(self, a, x)?;
                    let ry = regof(self, a, y)?;
                    let rc = if is_c(self, c) { None } else { Some(self.z(c)?) };
                    // In place when x dies here (or is a temporary) and is not also y or c;
                    // else into a fresh register, taken before the operands are released (the
                    // copy must not overwrite y or c).
                    let x_dies = temps.contains(&rx) || p.last_use[x] == i;
                    let in_place = x_dies && Some(rx) != rc && rx != ry;
                    let d = if in_place {
                        rx
                    } else {
                        let d = self.alloc_z()?;
                        a.vmovaps(ZMM[d], ZMM[rx])?;
                        d
                    };
                    self.release(i, n);
                    self.free_z.retain(|&r| r != d);
                    match (rc, self.loc[c]) {
                        (Some(rc), _) => a.vfmadd213ps(ZMM[d], ZMM[ry], ZMM[rc])?,
                        (None, Some(Loc::C(k))) => a.vfmadd213ps(ZMM[d], ZMM[ry], self.cmem(k))?,
                        _ => return Err(VErr::msg("fma addend")),
                    }
                    for &t in &temps {
                        if t != d && !self.free_z.contains(&t) {
                            self.free_z.push(t);
                        }
                    }
                    Loc::Z(d)
                }
                Node::Shift(op, x, k) => {
                    let rx = regof(self, a, x)?;
                    self.release(i, n);
                    for &t in &temps {
                        self.free_z.push(t);
                    }
                    let d = self.alloc_z()?;
                    match op {
                        Shift::Shl => a.vpslld(ZMM[d], ZMM[rx], k)?,
                        Shift::Sra => a.vpsrad(ZMM[d], ZMM[rx], k)?,
                        Shift::Srl => a.vpsrld(ZMM[d], ZMM[rx], k)?,
                    }
                    Loc::Z(d)
                }
                Node::Sel(m, x, y) => {
                    // d = m ? x : y = vblendmps d{k}, y, x.
                    let Some(Loc::K(k)) = self.loc[m] else { return Err(VErr::msg("select mask")) };
                    let ry = regof(self, a, y)?;
                    let rx = if is_c(self, x) { None } else { Some(self.z(x)?) };
                    self.release(i, n);
                    for &t in &temps {
                        self.free_z.push(t);
                    }
                    let d = self.alloc_z()?;
                    let dk = masked(ZMM[d], k);
                    match (rx, self.loc[x]) {
                        (Some(rx), _) => a.vpblendmd(dk, ZMM[ry], ZMM[rx])?,
                        (None, Some(Loc::C(c))) => a.vpblendmd(dk, ZMM[ry], self.cmem(c))?,
                        _ => return Err(VErr::msg("select operand")),
                    }
                    Loc::Z(d)
                }
                Node::Cmp(pred, x, y) | Node::ICmp(pred, x, y) => {
                    let int = matches!(n, Node::ICmp(..));
                    // A constant first operand: swap the operands and the predicate, so the
                    // constant is the memory operand.
                    let (pred, x, y) = if is_c(self, x) && !is_c(self, y) {
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
                    let rx = regof(self, a, x)?;
                    let yc = if is_c(self, y) { None } else { Some(self.z(y)?) };
                    self.release(i, n);
                    for &t in &temps {
                        self.free_z.push(t);
                    }
                    let k = self.free_k.pop().ok_or_else(|| VErr::msg("out of mask registers"))?;
                    let (kr, xz) = (k_reg(k), ZMM[rx]);
                    match (yc, self.loc[y], int) {
                        (Some(ry), _, false) => a.vcmpps(kr, xz, ZMM[ry], pred)?,
                        (Some(ry), _, true) => a.vpcmpd(kr, xz, ZMM[ry], pred)?,
                        (None, Some(Loc::C(c)), false) => a.vcmpps(kr, xz, self.cmem(c), pred)?,
                        (None, Some(Loc::C(c)), true) => a.vpcmpd(kr, xz, self.cmem(c), pred)?,
                        _ => return Err(VErr::msg("compare operand")),
                    }
                    Loc::K(k)
                }
                Node::MaskAnd(x, y) | Node::MaskOr(x, y) => {
                    let (Some(Loc::K(kx)), Some(Loc::K(ky))) = (self.loc[x], self.loc[y]) else {
                        return Err(VErr::msg("mask operands"));
                    };
                    self.release(i, n);
                    let k = self.free_k.pop().ok_or_else(|| VErr::msg("out of mask registers"))?;
                    if matches!(n, Node::MaskAnd(..)) {
                        a.kandw(k_reg(k), k_reg(kx), k_reg(ky))?;
                    } else {
                        a.korw(k_reg(k), k_reg(kx), k_reg(ky))?;
                    }
                    Loc::K(k)
                }
                Node::Input | Node::Const(_) => unreachable!("handled above"),
            };
            self.loc[i] = Some(loc);
        }
        self.z(p.out)
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
    let p = Program::record(act.f);
    let mut a = CodeAssembler::new(64)?;
    let table: Vec<CodeLabel> = p.consts.iter().map(|_| a.create_label()).collect();
    let nv = act.cols.div_ceil(16);
    let last = act.cols - (nv - 1) * 16;
    if last < 16 {
        a.mov(eax, (1u32 << last) - 1)?;
        a.kmovw(k1, eax)?;
    }
    let mut top = a.create_label();
    let mut done = a.create_label();
    a.test(rdx, rdx)?;
    a.jle(done)?;
    a.set_label(&mut top)?;
    for v in 0..nv {
        let m = rdi + (64 * v) as i32;
        let partial = v + 1 == nv && last < 16;
        // zmm0 is the input; the program allocates from zmm1 up.
        if partial {
            a.vmovups(ZMM[0].k1().z(), zmmword_ptr(m))?;
        } else {
            a.vmovups(ZMM[0], zmmword_ptr(m))?;
        }
        if act.bias {
            let bm = rcx + (64 * v) as i32;
            if partial {
                a.vmovups(ZMM[31].k1().z(), zmmword_ptr(bm))?;
            } else {
                a.vmovups(ZMM[31], zmmword_ptr(bm))?;
            }
            a.vaddps(ZMM[0], ZMM[0], ZMM[31])?;
        }
        let mut e = Emitter::new(&p, 1..31, &table);
        let y = e.emit(&mut a, 0)?;
        if partial {
            a.vmovups(zmmword_ptr(m).k1(), ZMM[y])?;
        } else {
            a.vmovups(zmmword_ptr(m), ZMM[y])?;
        }
    }
    a.add(rdi, rsi)?;
    a.dec(rdx)?;
    a.jne(top)?;
    a.set_label(&mut done)?;
    a.vzeroupper()?;
    a.ret()?;
    finish(a, &p, table)
}

/// The code of [`ExpSum`] (see the module docs).
pub fn exp_sum() -> Result<Vec<u8>, VErr> {
    let p = Program::record(VFn::Exp);
    let mut a = CodeAssembler::new(64)?;
    let table: Vec<CodeLabel> = p.consts.iter().map(|_| a.create_label()).collect();
    // zmm31: the maximum; zmm30: the running sum; zmm0: x - max.
    a.vbroadcastss(ZMM[31], dword_ptr(rdx))?;
    a.vpxord(ZMM[30], ZMM[30], ZMM[30])?;
    let mut full = a.create_label();
    let mut tail = a.create_label();
    let mut done = a.create_label();
    a.cmp(rsi, 16)?;
    a.jl(tail)?;
    a.set_label(&mut full)?;
    a.vmovups(ZMM[0], zmmword_ptr(rdi))?;
    a.vsubps(ZMM[0], ZMM[0], ZMM[31])?;
    let y = Emitter::new(&p, 1..30, &table).emit(&mut a, 0)?;
    a.vmovups(zmmword_ptr(rdi), ZMM[y])?;
    a.vaddps(ZMM[30], ZMM[30], ZMM[y])?;
    a.add(rdi, 64)?;
    a.sub(rsi, 16)?;
    a.cmp(rsi, 16)?;
    a.jge(full)?;
    a.set_label(&mut tail)?;
    a.test(rsi, rsi)?;
    a.jle(done)?;
    // The last n < 16 lanes: mask = (1 << n) - 1.
    a.mov(eax, 1)?;
    a.shlx(eax, eax, esi)?;
    a.dec(eax)?;
    a.kmovw(k1, eax)?;
    a.vmovups(ZMM[0].k1().z(), zmmword_ptr(rdi))?;
    a.vsubps(ZMM[0], ZMM[0], ZMM[31])?;
    let y = Emitter::new(&p, 1..30, &table).emit(&mut a, 0)?;
    a.vmovups(zmmword_ptr(rdi).k1(), ZMM[y])?;
    a.vaddps(ZMM[30].k1(), ZMM[30], ZMM[y])?;
    a.set_label(&mut done)?;
    // Horizontal sum of zmm30 into xmm0, stored at *sum.
    a.vmovaps(ZMM[0], ZMM[30])?;
    a.vextractf64x4(ymm1, ZMM[0], 1)?;
    a.vaddps(ymm0, ymm0, ymm1)?;
    a.vextractf128(xmm1, ymm0, 1)?;
    a.vaddps(xmm0, xmm0, xmm1)?;
    a.vmovhlps(xmm1, xmm1, xmm0)?;
    a.vaddps(xmm0, xmm0, xmm1)?;
    a.vmovshdup(xmm1, xmm0)?;
    a.vaddss(xmm0, xmm0, xmm1)?;
    a.vmovss(dword_ptr(rcx), xmm0)?;
    a.vzeroupper()?;
    a.ret()?;
    finish(a, &p, table)
}

/// Appends the constant table of `p` (one label per constant) and assembles.
fn finish(mut a: CodeAssembler, p: &Program, mut table: Vec<CodeLabel>) -> Result<Vec<u8>, VErr> {
    for (label, &c) in table.iter_mut().zip(&p.consts) {
        a.set_label(label)?;
        a.dd(&[c])?;
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
                    let code = act(&Act { f, cols, bias }).unwrap_or_else(|e| panic!("{f:?} {cols}: {e}"));
                    // One evaluation per vector of a row, each tens of instructions.
                    assert!(code.len() > 100 * cols.div_ceil(16), "{f:?} {cols}: {} bytes", code.len());
                }
            }
        }
        assert!(exp_sum().is_ok());
    }

    #[test]
    fn constants_are_recorded_once_and_bit_casts_are_free() {
        let p = Program::record(VFn::Exp);
        let mut seen = p.consts.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), p.consts.len());
        assert!(p.consts.contains(&std::f32::consts::LOG2_E.to_bits()));
        assert!(p.nodes.iter().all(|n| !matches!(n, Node::Input) || p.nodes[0] == Node::Input));
    }
}
