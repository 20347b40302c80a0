//! A thin layer over Cranelift's `FunctionBuilder` for writing kernels: counted loops and loop
//! nests, element addressing, typed loads and stores with conversion to a compute type, and
//! constants. Every kernel family in [`crate::kernels`] writes its CLIF through this.
//!
//! # Compute types
//! Kernels compute floats (f32 and f16) in `F32` and integers and bools in `I64`
//! ([`compute_type`]): [`Kb::load_elem`] widens a stored element (f16 by an exact bit
//! conversion, i8/i32 sign-extended, u8/bool zero-extended) and [`Kb::store_elem`] narrows it
//! back (f16 rounded to nearest even, integers wrapped to their width). Wrapping integer
//! arithmetic in 64 bits then truncating equals wrapping arithmetic at the narrow width.

pub mod math;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Endianness, ExtFuncData, ExternalName, FuncRef, InstBuilder, MemFlagsData, Signature, Type,
    UserExternalName, UserExternalNameRef, Value, types,
};
use cranelift_frontend::FunctionBuilder;
use slmtvm_ir::DType;

/// What a kernel may use of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Pointer type (I64 on every target here).
    pub ptr: Type,
    /// Use `F32X4` (and other 128-bit) vectors.
    pub vector: bool,
    /// Vector/scalar `fma` is a native instruction (else mul + add).
    pub native_fma: bool,
    /// The matrix products' register tile.
    pub schedule: slmtvm_targets::Schedule,
    /// `nearest` (round half to even) is one instruction, scalar and `F32X4`: x86_64 with
    /// SSE4.1 (`roundps`; every vector preset has it) and aarch64 (`frintn`). Not riscv64,
    /// whose vector form swaps the `frm` CSR, which qemu 7.2 trips over.
    pub native_nearest: bool,
}

impl Caps {
    /// The capabilities of `target`: vectors where it has them, fma where it is native.
    pub fn of(target: &slmtvm_targets::Target) -> Caps {
        Caps {
            ptr: types::I64,
            vector: target.vector().is_some(),
            native_fma: target.vector().is_some_and(|v| v.fma),
            schedule: target.schedule(),
            native_nearest: target.vector().is_some() && target.arch() != slmtvm_targets::Arch::Riscv64,
        }
    }
}

/// A kernel under construction.
pub struct Kb<'a> {
    /// The Cranelift builder.
    pub b: FunctionBuilder<'a>,
    /// Target capabilities.
    pub caps: Caps,
    /// The assembled microkernels this function calls (see [`UkrUse`]).
    pub ukrs: Vec<UkrUse>,
    /// Set when this kernel instance computes one task of a split kernel: the first loop that
    /// asks ([`Kb::take_share`]) runs only this task's share of its iterations; loops inside
    /// it, or emitted after it took the split, run whole.
    pub split: Option<Split>,
}

/// Which task of a split kernel an instance computes (see [`Kb::take_share`]).
#[derive(Clone, Copy, Debug)]
pub struct Split {
    /// This instance's task, a run-time value in `0..count`.
    pub index: Value,
    /// How many tasks the kernel is split into.
    pub count: usize,
}

/// A microkernel a function calls: its calls use the placeholder name `name` (namespace
/// [`UKR_NAMESPACE`], index = position in [`Kb::ukrs`]), which the object builder points at
/// the microkernel's function once the body is built.
#[derive(Clone, Copy, Debug)]
pub struct UkrUse {
    /// The function.
    pub f: crate::asm::AsmFn,
    /// The placeholder name.
    pub name: UserExternalNameRef,
    /// The function reference calls use.
    pub func: FuncRef,
}

/// The namespace of the placeholder names of microkernel calls (module functions are 0).
pub const UKR_NAMESPACE: u32 = 1;

/// Memory flags of every kernel access: in bounds by construction, so they never trap.
pub fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Flags for `bitcast` between vector types (lane order must be stated; every target here is
/// little-endian).
pub fn lane_flags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// The type kernels compute `dtype` in: `F32` for floats, `I64` for integers and bool.
pub fn compute_type(dtype: DType) -> Type {
    if dtype.is_float() { types::F32 } else { types::I64 }
}

/// The Cranelift type of one stored element of `dtype` (f16 as its `I16` bits).
pub fn storage_type(dtype: DType) -> Type {
    match dtype {
        DType::F32 => types::F32,
        DType::F16 => types::I16,
        DType::I8 | DType::U8 | DType::Bool => types::I8,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
    }
}

impl Kb<'_> {
    /// A kernel builder over `b` for `caps`, calling no microkernel yet.
    pub fn new(b: FunctionBuilder<'_>, caps: Caps) -> Kb<'_> {
        Kb { b, caps, ukrs: Vec::new(), split: None }
    }

    /// Calls the assembled function `u` with `args` (for a microkernel `a, lda, b, ldb, c,
    /// ldc`; see [`crate::asm`]).
    pub fn call_asm(&mut self, u: crate::asm::AsmFn, args: &[Value; 6]) {
        let f = match self.ukrs.iter().find(|k| k.f == u) {
            Some(k) => k.func,
            None => {
                let index = self.ukrs.len() as u32;
                let name =
                    self.b.func.declare_imported_user_function(UserExternalName { namespace: UKR_NAMESPACE, index });
                let mut sig = Signature::new(self.b.func.signature.call_conv);
                sig.params.extend([AbiParam::new(types::I64); 6]);
                let signature = self.b.import_signature(sig);
                let func = self.b.import_function(ExtFuncData {
                    name: ExternalName::User(name),
                    signature,
                    colocated: true,
                    patchable: false,
                });
                self.ukrs.push(UkrUse { f: u, name, func });
                func
            }
        };
        self.b.ins().call(f, args);
    }

    /// An integer constant of pointer width.
    pub fn iconst(&mut self, v: i64) -> Value {
        let ptr = self.caps.ptr;
        self.b.ins().iconst(ptr, v)
    }

    /// An f32 constant, splat to 4 lanes when `lanes == 4`.
    pub fn fconst(&mut self, v: f32, lanes: usize) -> Value {
        let s = self.b.ins().f32const(v);
        if lanes == 4 { self.b.ins().splat(types::F32X4, s) } else { s }
    }

    /// A fresh variable of `init`'s type, defined as `init` here.
    pub fn var(&mut self, init: Value) -> cranelift_frontend::Variable {
        let ty = self.ty(init);
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    /// The type of value `v`.
    pub fn ty(&self, v: Value) -> Type {
        self.b.func.dfg.value_type(v)
    }

    /// Lanes of `v` (1 for scalars).
    pub fn lanes(&self, v: Value) -> usize {
        self.ty(v).lane_count() as usize
    }

    /// `base + index * elem_bytes`.
    pub fn addr(&mut self, base: Value, index: Value, elem_bytes: usize) -> Value {
        let off = if elem_bytes == 1 { index } else { self.b.ins().imul_imm_s(index, elem_bytes as i64) };
        self.b.ins().iadd(base, off)
    }

    /// `base + k` bytes for a constant `k`.
    pub fn addr_const(&mut self, base: Value, k: i64) -> Value {
        if k == 0 { base } else { self.b.ins().iadd_imm_s(base, k) }
    }

    /// Loads a `ty` at `addr + offset`.
    pub fn load(&mut self, ty: Type, addr: Value, offset: i32) -> Value {
        self.b.ins().load(ty, flags(), addr, offset)
    }

    /// Stores `v` at `addr + offset`.
    pub fn store(&mut self, v: Value, addr: Value, offset: i32) {
        self.b.ins().store(flags(), v, addr, offset);
    }

    /// Loads `lanes` f32 values (4 lanes: of an f32 or f16 tensor) or one element of `dtype`
    /// widened to its compute type, at element index `idx` of `base`.
    pub fn load_lanes(&mut self, dtype: DType, base: Value, idx: Value, lanes: usize) -> Value {
        let addr = self.addr(base, idx, dtype.size());
        match (lanes, dtype) {
            (4, DType::F16) => self.f16x4_to_f32x4(addr),
            (4, _) => self.load(types::F32X4, addr, 0),
            _ => self.load_elem(dtype, addr),
        }
    }

    /// Stores `v` (`lanes` f32 values, or one compute-type value of `dtype`) at element index
    /// `idx` of `base`. Four f16 lanes are rounded and stored one by one.
    pub fn store_lanes(&mut self, dtype: DType, base: Value, idx: Value, v: Value, lanes: usize) {
        let addr = self.addr(base, idx, dtype.size());
        match (lanes, dtype) {
            (4, DType::F16) => {
                for k in 0..4u8 {
                    let s = self.b.ins().extractlane(v, k);
                    let a = self.addr_const(addr, 2 * i64::from(k));
                    self.store_elem(DType::F16, s, a);
                }
            }
            (4, _) => self.store(v, addr, 0),
            _ => self.store_elem(dtype, v, addr),
        }
    }

    /// Four IEEE binary16 values at `addr` as an `F32X4`, exactly: [`Kb::f16_to_f32`] on the
    /// lanes of a zero-extending load.
    fn f16x4_to_f32x4(&mut self, addr: Value) -> Value {
        let kb = self;
        let h = kb.b.ins().uload16x4(flags(), addr, 0);
        let c = |kb: &mut Kb, v: i64| {
            let s = kb.b.ins().iconst(types::I32, v);
            kb.b.ins().splat(types::I32X4, s)
        };
        let m = c(kb, 0x8000);
        let sign = kb.b.ins().band(h, m);
        let sign = kb.b.ins().ishl_imm_u(sign, 16);
        let m = c(kb, 0x7fff);
        let mag = kb.b.ins().band(h, m);
        let shifted = kb.b.ins().ishl_imm_u(mag, 13);
        // Normals and subnormals: reinterpret and scale by 2^112 (exact).
        let f = kb.b.ins().bitcast(types::F32X4, lane_flags(), shifted);
        let scale = kb.fconst(f32::from_bits(0x7780_0000), 4);
        let scaled = kb.b.ins().fmul(f, scale);
        let scaled = kb.b.ins().bitcast(types::I32X4, lane_flags(), scaled);
        // Infinities and NaN: exponent all ones.
        let e = c(kb, 0x7f80_0000);
        let special_bits = kb.b.ins().bor(shifted, e);
        let lim = c(kb, 0x7bff);
        let is_special = kb.b.ins().icmp(IntCC::SignedGreaterThan, mag, lim);
        let bits = kb.b.ins().bitselect(is_special, special_bits, scaled);
        let bits = kb.b.ins().bor(bits, sign);
        kb.b.ins().bitcast(types::F32X4, lane_flags(), bits)
    }

    /// Loads one element of `dtype` at `addr`, widened to [`compute_type`].
    pub fn load_elem(&mut self, dtype: DType, addr: Value) -> Value {
        let raw = self.load(storage_type(dtype), addr, 0);
        self.widen(dtype, raw)
    }

    /// Stores a [`compute_type`] value as one element of `dtype` at `addr`.
    pub fn store_elem(&mut self, dtype: DType, v: Value, addr: Value) {
        let raw = self.narrow(dtype, v);
        self.store(raw, addr, 0);
    }

    /// A stored element (of [`storage_type`]) converted to [`compute_type`].
    pub fn widen(&mut self, dtype: DType, raw: Value) -> Value {
        match dtype {
            DType::F32 | DType::I64 => raw,
            DType::F16 => self.f16_to_f32(raw),
            DType::I8 | DType::I32 => self.b.ins().sextend(types::I64, raw),
            DType::U8 | DType::Bool => self.b.ins().uextend(types::I64, raw),
        }
    }

    /// A [`compute_type`] value converted to the [`storage_type`] of `dtype`.
    pub fn narrow(&mut self, dtype: DType, v: Value) -> Value {
        match dtype {
            DType::F32 | DType::I64 => v,
            DType::F16 => self.f32_to_f16(v),
            DType::I8 | DType::U8 | DType::Bool => self.b.ins().ireduce(types::I8, v),
            DType::I32 => self.b.ins().ireduce(types::I32, v),
        }
    }

    /// IEEE binary16 bits (`I16`) to the f32 of the same value, exactly (subnormals, infinities
    /// and NaN included), with integer operations only.
    pub fn f16_to_f32(&mut self, h: Value) -> Value {
        let h = self.b.ins().uextend(types::I32, h);
        let sign = self.b.ins().band_imm_u(h, 0x8000);
        let sign = self.b.ins().ishl_imm_u(sign, 16);
        let mag = self.b.ins().band_imm_u(h, 0x7fff);
        let shifted = self.b.ins().ishl_imm_u(mag, 13);
        // Normals and subnormals: reinterpret and scale by 2^112 (exact).
        let f = self.b.ins().bitcast(types::F32, MemFlagsData::new(), shifted);
        let scale = self.b.ins().f32const(f32::from_bits(0x7780_0000)); // 2^112
        let scaled = self.b.ins().fmul(f, scale);
        let scaled = self.b.ins().bitcast(types::I32, MemFlagsData::new(), scaled);
        // Infinities and NaN: exponent all ones.
        let special_bits = self.b.ins().bor_imm_u(shifted, 0x7f80_0000);
        let is_special = self.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, mag, 0x7c00);
        let bits = self.b.ins().select(is_special, special_bits, scaled);
        let bits = self.b.ins().bor(bits, sign);
        self.b.ins().bitcast(types::F32, MemFlagsData::new(), bits)
    }

    /// An f32 rounded to nearest even as IEEE binary16 bits (`I16`); overflow gives infinity,
    /// NaN a quiet NaN.
    pub fn f32_to_f16(&mut self, x: Value) -> Value {
        let f = self.b.ins().bitcast(types::I32, MemFlagsData::new(), x);
        let sign = self.b.ins().band_imm_u(f, 0x8000_0000);
        let a = self.b.ins().bxor(f, sign);
        // Overflow to infinity, or NaN.
        let is_nan = self.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, a, 0x7f80_0000);
        let nan = self.b.ins().iconst(types::I32, 0x7e00);
        let inf = self.b.ins().iconst(types::I32, 0x7c00);
        let big = self.b.ins().select(is_nan, nan, inf);
        // Subnormal results: add a magic float so the FPU rounds at the right bit.
        let magic_bits = ((127 - 15) + (23 - 10) + 1) << 23;
        let af = self.b.ins().bitcast(types::F32, MemFlagsData::new(), a);
        let magic = self.b.ins().f32const(f32::from_bits(magic_bits));
        let sum = self.b.ins().fadd(af, magic);
        let sum = self.b.ins().bitcast(types::I32, MemFlagsData::new(), sum);
        let sub = self.b.ins().iadd_imm_s(sum, -(magic_bits as i64));
        // Normal results: rebias the exponent and round to nearest even.
        let odd = self.b.ins().ushr_imm_u(a, 13);
        let odd = self.b.ins().band_imm_u(odd, 1);
        let n = self.b.ins().iadd_imm_s(a, (((15 - 127) << 23) + 0xfff) as i64);
        let n = self.b.ins().iadd(n, odd);
        let norm = self.b.ins().ushr_imm_u(n, 13);
        let is_big = self.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThanOrEqual, a, (127 + 16) << 23);
        let is_sub = self.b.ins().icmp_imm_u(IntCC::UnsignedLessThan, a, 113 << 23);
        let small = self.b.ins().select(is_sub, sub, norm);
        let o = self.b.ins().select(is_big, big, small);
        let s16 = self.b.ins().ushr_imm_u(sign, 16);
        let o = self.b.ins().bor(o, s16);
        self.b.ins().ireduce(types::I16, o)
    }

    /// A [`compute_type`] value of `from` converted to the compute type of `to` (value
    /// conversion, not storage: see [`Kb::narrow`] for that). Floats to integers truncate
    /// toward zero saturating (NaN gives 0); integers to floats round to nearest; to bool is
    /// `!= 0`.
    pub fn convert(&mut self, from: DType, to: DType, v: Value) -> Value {
        match (from.is_float(), to.is_float(), to) {
            (true, true, _) => v,
            (false, false, DType::Bool) => {
                let nz = self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0);
                self.b.ins().uextend(types::I64, nz)
            }
            (false, false, _) => v,
            (false, true, _) => self.b.ins().fcvt_from_sint(types::F32, v),
            (true, false, DType::Bool) => {
                let z = self.b.ins().f32const(0.0);
                let nz = self.b.ins().fcmp(FloatCC::NotEqual, v, z);
                self.b.ins().uextend(types::I64, nz)
            }
            (true, false, _) => self.b.ins().fcvt_to_sint_sat(types::I64, v),
        }
    }

    /// Emits `for i in (lo..hi).step_by(step) { body(i) }` with `lo`, `hi` as pointer-width
    /// values; the body is emitted once.
    pub fn for_range(&mut self, lo: Value, hi: Value, step: i64, body: impl FnOnce(&mut Self, Value)) {
        let ptr = self.caps.ptr;
        let header = self.b.create_block();
        let inner = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, ptr);
        self.b.ins().jump(header, &[lo.into()]);
        self.b.switch_to_block(header);
        let i = self.b.block_params(header)[0];
        let go = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        self.b.ins().brif(go, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        body(self, i);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.ins().jump(header, &[next.into()]);
        self.b.switch_to_block(exit);
    }

    /// Runs `body(kb, i, lanes)` for `i` in `lo..hi`: 4 lanes at a time while 4 remain (when
    /// `vector`), then one at a time (`lanes` = 1).
    pub fn for_lanes(&mut self, lo: Value, hi: Value, vector: bool, body: &mut dyn FnMut(&mut Self, Value, usize)) {
        let mut tail = lo;
        if vector {
            let len = self.b.ins().isub(hi, lo);
            let len4 = self.b.ins().band_imm_s(len, -4);
            let hi4 = self.b.ins().iadd(lo, len4);
            self.for_range(lo, hi4, 4, |kb, i| body(kb, i, 4));
            tail = hi4;
        }
        self.for_range(tail, hi, 1, |kb, i| body(kb, i, 1));
    }

    /// Emits `if cond { body }` (`cond` an integer value, true when non-zero); the body is
    /// emitted once.
    pub fn when(&mut self, cond: Value, body: impl FnOnce(&mut Self)) {
        let (then, done) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, then, &[], done, &[]);
        self.b.switch_to_block(then);
        body(self);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
    }

    /// [`Kb::for_range`] over constant bounds.
    pub fn for_const(&mut self, lo: i64, hi: i64, step: i64, body: impl FnOnce(&mut Self, Value)) {
        let (lo, hi) = (self.iconst(lo), self.iconst(hi));
        self.for_range(lo, hi, step, body);
    }

    /// Takes this kernel's split (see [`Kb::split`]) for a loop over `n` items (blocks of rows,
    /// batches, heads; `n` a pointer-width value): this task's items `lo..hi`, with
    /// `lo = ⌊index·n/count⌋` and `hi = ⌊(index + 1)·n/count⌋`, so the tasks' ranges are
    /// contiguous, disjoint, cover `0..n` and differ in length by at most one. `None` when the
    /// kernel is not split or the split was taken already (the loop then runs whole). A loop
    /// that takes the split must hold every write of the kernel: it is the only work the tasks
    /// divide. Callers split whole items (a register tile's row block, a batch, a head), so
    /// every element is computed by one task with the arithmetic of the unsplit kernel.
    pub fn take_share(&mut self, n: Value) -> Option<(Value, Value)> {
        let s = self.split.take()?;
        let at = |kb: &mut Self, i: Value| {
            let t = kb.b.ins().imul(i, n);
            kb.b.ins().udiv_imm_u(t, s.count as i64)
        };
        let lo = at(self, s.index);
        let next = self.b.ins().iadd_imm_s(s.index, 1);
        let hi = at(self, next);
        Some((lo, hi))
    }

    /// [`Kb::nest`], except that when the kernel is split ([`Kb::take_share`]) and the nest
    /// has more than one iteration, it runs this task's share of the flattened iterations (one
    /// loop, the indices recovered by division).
    pub fn nest_split(&mut self, dims: &[usize], body: &mut dyn FnMut(&mut Self, &[Value])) {
        let total: usize = dims.iter().product();
        if self.split.is_none() || total <= 1 {
            return self.nest(dims, body);
        }
        let n = self.iconst(total as i64);
        let Some((lo, hi)) = self.take_share(n) else { return self.nest(dims, body) };
        self.for_range(lo, hi, 1, |kb, flat| {
            let mut idx = vec![flat; dims.len()];
            let mut inner = 1usize;
            for (k, &d) in dims.iter().enumerate().rev() {
                idx[k] = if d == 1 {
                    kb.iconst(0)
                } else {
                    let q = if inner == 1 { flat } else { kb.b.ins().udiv_imm_u(flat, inner as i64) };
                    if k == 0 { q } else { kb.b.ins().urem_imm_u(q, d as i64) }
                };
                inner *= d;
            }
            body(kb, &idx);
        });
    }

    /// Emits a loop nest over the run-time `extents` (pointer-width values, outermost first)
    /// and calls `body` once, inside the innermost loop, with the index of every loop.
    pub fn nest_runtime(&mut self, extents: &[Value], body: &mut dyn FnMut(&mut Self, &[Value])) {
        let mut idx = Vec::with_capacity(extents.len());
        self.nest_runtime_level(extents, &mut idx, body);
    }

    fn nest_runtime_level(
        &mut self,
        extents: &[Value],
        idx: &mut Vec<Value>,
        body: &mut dyn FnMut(&mut Self, &[Value]),
    ) {
        if idx.len() == extents.len() {
            body(self, idx);
            return;
        }
        let zero = self.iconst(0);
        let hi = extents[idx.len()];
        self.for_range(zero, hi, 1, |kb, i| {
            idx.push(i);
            kb.nest_runtime_level(extents, idx, body);
            idx.pop();
        });
    }

    /// Emits a loop nest over `dims` (outermost first) and calls `body` once, inside the
    /// innermost loop, with the index of every loop. Extents of 1 get no loop (their index is
    /// the constant 0); an empty `dims` calls `body` once with no indices.
    pub fn nest(&mut self, dims: &[usize], body: &mut dyn FnMut(&mut Self, &[Value])) {
        let mut idx = Vec::with_capacity(dims.len());
        self.nest_level(dims, &mut idx, body);
    }

    fn nest_level(&mut self, dims: &[usize], idx: &mut Vec<Value>, body: &mut dyn FnMut(&mut Self, &[Value])) {
        let level = idx.len();
        if level == dims.len() {
            body(self, idx);
            return;
        }
        if dims[level] == 1 {
            let z = self.iconst(0);
            idx.push(z);
            self.nest_level(dims, idx, body);
            idx.pop();
            return;
        }
        self.for_const(0, dims[level] as i64, 1, |kb, i| {
            idx.push(i);
            kb.nest_level(dims, idx, body);
            idx.pop();
        });
    }

    /// `base + Σ idx[k]·strides[k]` (pointer-width, in whatever unit the strides are).
    pub fn linear(&mut self, base: i64, idx: &[Value], strides: &[i64]) -> Value {
        let mut acc = self.iconst(base);
        for (&i, &s) in idx.iter().zip(strides) {
            if s == 0 {
                continue;
            }
            let t = if s == 1 { i } else { self.b.ins().imul_imm_s(i, s) };
            acc = self.b.ins().iadd(acc, t);
        }
        acc
    }

    /// `a * b + c`, fused where the target has a native fma.
    pub fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.caps.native_fma {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }

    /// The sum of the 4 lanes of an `F32X4`, as a scalar f32 (lanes added pairwise).
    pub fn hsum(&mut self, v: Value) -> Value {
        let l: Vec<Value> = (0..4).map(|k| self.b.ins().extractlane(v, k)).collect();
        let a = self.b.ins().fadd(l[0], l[1]);
        let c = self.b.ins().fadd(l[2], l[3]);
        self.b.ins().fadd(a, c)
    }

    /// The largest of the 4 lanes of an `F32X4` (NaN propagates), as a scalar f32.
    pub fn hmax(&mut self, v: Value) -> Value {
        let l: Vec<Value> = (0..4).map(|k| self.b.ins().extractlane(v, k)).collect();
        let a = self.b.ins().fmax(l[0], l[1]);
        let c = self.b.ins().fmax(l[2], l[3]);
        self.b.ins().fmax(a, c)
    }
}

/// Row-major element strides of `dims`.
pub fn strides_of(dims: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; dims.len()];
    let mut acc = 1i64;
    for k in (0..dims.len()).rev() {
        s[k] = acc;
        acc *= dims[k] as i64;
    }
    s
}
