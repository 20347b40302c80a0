//! Inline approximations of the math functions (no libm, no calls): each works on an `F32`
//! or an `F32X4` value (chosen by the value's type) and states its maximum error.
//!
//! Every algorithm is written once, generic over [`Ops`] (f32 arithmetic, compares and
//! selects, bit casts and integer operations on the bits), and has two implementations:
//! [`Clif`] emits Cranelift IR through a [`Kb`] (scalar or 4 lanes) and [`Mirror`] evaluates
//! the same operation sequence in plain Rust f32, with `mul_add` fused or not as the target
//! does ([`crate::emit::Caps::native_fma`]). The emitted code equals the mirror bit for bit
//! (NaN payloads aside) on every target, and the mirror is swept over the full f32 range
//! against f64 references in the unit tests below.
//!
//! Only IEEE-exact operations are used (add, sub, mul, div, fused or unfused multiply-add,
//! compares, bit operations): no `nearest`, `sqrt` or float/int conversion instructions, so
//! every backend lowers them without libcalls. Rounding to an integer uses the `1.5·2^23`
//! shifter trick; integers become floats through the same trick in reverse.
//!
//! | function | algorithm | max error (ulp), fused / unfused | range of that error |
//! |---|---|---|---|
//! | [`exp`] | Cody–Waite `x = n·ln2 + r`, Taylor degree 7 on `|r| ≤ ln2/2`, scale by `2^n` in two steps (subnormal results rounded once, not flushed) | 0.87 / 1.15 | all f32 |
//!
//! Errors are measured against f64 `std` (or a careful f64 series for `erf`) on every
//! 512th bit pattern of f32 plus special values; "ulp" is the spacing of f32 at the exact
//! result (subnormal spacing `2^-149` below `2^-126`).

use crate::emit::{Kb, lane_flags};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};

/// The f32 operations the approximations are written in: a float type `F`, its bits as a
/// signed 32-bit integer `I`, and a comparison mask `M` (per lane for vectors).
pub trait Ops {
    /// A float (one f32 or 4 lanes).
    type F: Copy;
    /// Its bits (i32 or 4 lanes).
    type I: Copy;
    /// A comparison result.
    type M: Copy;
    /// A float constant.
    fn f(&mut self, v: f32) -> Self::F;
    /// An integer constant.
    fn i(&mut self, v: i32) -> Self::I;
    /// `a + b`.
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b`.
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a / b`.
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, fused or not as the target does.
    fn mul_add(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a < b` (false with NaN).
    fn lt(&mut self, a: Self::F, b: Self::F) -> Self::M;
    /// `a <= b` (false with NaN).
    fn le(&mut self, a: Self::F, b: Self::F) -> Self::M;
    /// `a == b` (false with NaN).
    fn eq(&mut self, a: Self::F, b: Self::F) -> Self::M;
    /// `a` or `b` is NaN.
    fn uno(&mut self, a: Self::F, b: Self::F) -> Self::M;
    /// Signed `a < b` on integers.
    fn ilt(&mut self, a: Self::I, b: Self::I) -> Self::M;
    /// Integer `a == b`.
    fn ieq(&mut self, a: Self::I, b: Self::I) -> Self::M;
    /// Both masks.
    fn and_m(&mut self, a: Self::M, b: Self::M) -> Self::M;
    /// Either mask.
    fn or_m(&mut self, a: Self::M, b: Self::M) -> Self::M;
    /// `m ? a : b` on floats.
    fn sel(&mut self, m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// `m ? a : b` on integers.
    fn seli(&mut self, m: Self::M, a: Self::I, b: Self::I) -> Self::I;
    /// The bits of `a`.
    fn bits(&mut self, a: Self::F) -> Self::I;
    /// The float with bits `a`.
    fn float(&mut self, a: Self::I) -> Self::F;
    /// Wrapping `a + b`.
    fn iadd(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Wrapping `a - b`.
    fn isub(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a & b`.
    fn iand(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a | b`.
    fn ior(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a ^ b`.
    fn ixor(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// `a << k`.
    fn shl(&mut self, a: Self::I, k: u32) -> Self::I;
    /// Arithmetic `a >> k`.
    fn sra(&mut self, a: Self::I, k: u32) -> Self::I;
    /// Logical `a >> k`.
    fn srl(&mut self, a: Self::I, k: u32) -> Self::I;
}

/// Plain Rust f32 evaluation of the same operation sequence as [`Clif`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mirror {
    /// `mul_add` is one fused operation (else a rounded multiply, then a rounded add).
    pub fused: bool,
}

impl Ops for Mirror {
    type F = f32;
    type I = i32;
    type M = bool;
    fn f(&mut self, v: f32) -> f32 {
        v
    }
    fn i(&mut self, v: i32) -> i32 {
        v
    }
    fn add(&mut self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(&mut self, a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(&mut self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn div(&mut self, a: f32, b: f32) -> f32 {
        a / b
    }
    fn mul_add(&mut self, a: f32, b: f32, c: f32) -> f32 {
        if self.fused { a.mul_add(b, c) } else { a * b + c }
    }
    fn lt(&mut self, a: f32, b: f32) -> bool {
        a < b
    }
    fn le(&mut self, a: f32, b: f32) -> bool {
        a <= b
    }
    fn eq(&mut self, a: f32, b: f32) -> bool {
        a == b
    }
    fn uno(&mut self, a: f32, b: f32) -> bool {
        a.is_nan() || b.is_nan()
    }
    fn ilt(&mut self, a: i32, b: i32) -> bool {
        a < b
    }
    fn ieq(&mut self, a: i32, b: i32) -> bool {
        a == b
    }
    fn and_m(&mut self, a: bool, b: bool) -> bool {
        a && b
    }
    fn or_m(&mut self, a: bool, b: bool) -> bool {
        a || b
    }
    fn sel(&mut self, m: bool, a: f32, b: f32) -> f32 {
        if m { a } else { b }
    }
    fn seli(&mut self, m: bool, a: i32, b: i32) -> i32 {
        if m { a } else { b }
    }
    fn bits(&mut self, a: f32) -> i32 {
        a.to_bits() as i32
    }
    fn float(&mut self, a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    fn iadd(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    fn isub(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    fn iand(&mut self, a: i32, b: i32) -> i32 {
        a & b
    }
    fn ior(&mut self, a: i32, b: i32) -> i32 {
        a | b
    }
    fn ixor(&mut self, a: i32, b: i32) -> i32 {
        a ^ b
    }
    fn shl(&mut self, a: i32, k: u32) -> i32 {
        a.wrapping_shl(k)
    }
    fn sra(&mut self, a: i32, k: u32) -> i32 {
        a.wrapping_shr(k)
    }
    fn srl(&mut self, a: i32, k: u32) -> i32 {
        (a as u32).wrapping_shr(k) as i32
    }
}

/// Emits the operations as CLIF through a [`Kb`], on `F32` or `F32X4` values (their bits as
/// `I32` / `I32X4`; masks as `I8` / `I32X4`).
pub struct Clif<'k, 'a> {
    kb: &'k mut Kb<'a>,
    vector: bool,
}

impl<'k, 'a> Clif<'k, 'a> {
    /// Operations on values shaped like `like` (an `F32` or `F32X4`).
    pub fn new(kb: &'k mut Kb<'a>, like: Value) -> Self {
        let vector = kb.ty(like) == types::F32X4;
        Clif { kb, vector }
    }

    fn ity(&self) -> Type {
        if self.vector { types::I32X4 } else { types::I32 }
    }

    fn fty(&self) -> Type {
        if self.vector { types::F32X4 } else { types::F32 }
    }

    fn cast_flags(&self) -> MemFlagsData {
        if self.vector { lane_flags() } else { MemFlagsData::new() }
    }
}

impl Ops for Clif<'_, '_> {
    type F = Value;
    type I = Value;
    type M = Value;
    fn f(&mut self, v: f32) -> Value {
        let lanes = if self.vector { 4 } else { 1 };
        self.kb.fconst(v, lanes)
    }
    fn i(&mut self, v: i32) -> Value {
        let s = self.kb.b.ins().iconst(types::I32, i64::from(v as u32));
        if self.vector { self.kb.b.ins().splat(types::I32X4, s) } else { s }
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fdiv(a, b)
    }
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        self.kb.mul_add(a, b, c)
    }
    fn lt(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fcmp(FloatCC::LessThan, a, b)
    }
    fn le(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fcmp(FloatCC::LessThanOrEqual, a, b)
    }
    fn eq(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fcmp(FloatCC::Equal, a, b)
    }
    fn uno(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().fcmp(FloatCC::Unordered, a, b)
    }
    fn ilt(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().icmp(IntCC::SignedLessThan, a, b)
    }
    fn ieq(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().icmp(IntCC::Equal, a, b)
    }
    fn and_m(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().band(a, b)
    }
    fn or_m(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().bor(a, b)
    }
    fn sel(&mut self, m: Value, a: Value, b: Value) -> Value {
        if self.vector {
            let (a, b) = (self.bits(a), self.bits(b));
            let r = self.kb.b.ins().bitselect(m, a, b);
            self.float(r)
        } else {
            self.kb.b.ins().select(m, a, b)
        }
    }
    fn seli(&mut self, m: Value, a: Value, b: Value) -> Value {
        if self.vector { self.kb.b.ins().bitselect(m, a, b) } else { self.kb.b.ins().select(m, a, b) }
    }
    fn bits(&mut self, a: Value) -> Value {
        let (t, fl) = (self.ity(), self.cast_flags());
        self.kb.b.ins().bitcast(t, fl, a)
    }
    fn float(&mut self, a: Value) -> Value {
        let (t, fl) = (self.fty(), self.cast_flags());
        self.kb.b.ins().bitcast(t, fl, a)
    }
    fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().iadd(a, b)
    }
    fn isub(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().isub(a, b)
    }
    fn iand(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().band(a, b)
    }
    fn ior(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().bor(a, b)
    }
    fn ixor(&mut self, a: Value, b: Value) -> Value {
        self.kb.b.ins().bxor(a, b)
    }
    fn shl(&mut self, a: Value, k: u32) -> Value {
        let k = self.kb.b.ins().iconst(types::I32, i64::from(k));
        self.kb.b.ins().ishl(a, k)
    }
    fn sra(&mut self, a: Value, k: u32) -> Value {
        let k = self.kb.b.ins().iconst(types::I32, i64::from(k));
        self.kb.b.ins().sshr(a, k)
    }
    fn srl(&mut self, a: Value, k: u32) -> Value {
        let k = self.kb.b.ins().iconst(types::I32, i64::from(k));
        self.kb.b.ins().ushr(a, k)
    }
}

/// `e^x` (see the module table for its error).
pub fn exp(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    exp_with(&mut o, x)
}

// ---------------------------------------------------------------------------------------------
// The algorithms, generic over `Ops`.

/// `1.5·2^23`: adding it rounds a float of magnitude below `2^22` to an integer (nearest
/// even), which then sits in the low mantissa bits.
const SHIFTER: f32 = 12_582_912.0;

/// `2^k` for integer `k` in the normal range `[-126, 127]`.
fn pow2i<O: Ops>(o: &mut O, k: O::I) -> O::F {
    let bias = o.i(127);
    let e = o.iadd(k, bias);
    let e = o.shl(e, 23);
    o.float(e)
}

/// `e^x`: `n = round(x/ln2)`, `r = x - n·ln2` in two Cody–Waite steps (`n·LN2_HI` exact for
/// `|n| ≤ 256`), `e^r` by Taylor's polynomial of degree 7 (truncation below `6·10^-9`
/// relative on `|r| ≤ 0.35`), then `2^n` applied as `2^(n>>1)·2^(n-(n>>1))` so that both
/// factors are normal and results in the subnormal range are rounded once. `x` is clamped to
/// `[-104, 88.8]` first (beyond, the result is 0 or +inf anyway); NaN passes through.
pub fn exp_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    const INV_LN2: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // 0x1.62e4p-1, 16 significant bits
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
    let hi = o.f(88.8);
    let lo = o.f(-104.0);
    let big = o.lt(hi, x);
    let x = o.sel(big, hi, x);
    let small = o.lt(x, lo);
    let x = o.sel(small, lo, x);
    let inv = o.f(INV_LN2);
    let sh = o.f(SHIFTER);
    let z = o.mul_add(x, inv, sh);
    let n = o.sub(z, sh);
    let c = o.f(-LN2_HI);
    let r = o.mul_add(n, c, x);
    let c = o.f(-LN2_LO);
    let r = o.mul_add(n, c, r);
    const C: [f32; 8] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let mut p = o.f(C[0]);
    for &c in &C[1..] {
        let c = o.f(c);
        p = o.mul_add(p, r, c);
    }
    let zb = o.bits(z);
    let shb = o.i(SHIFTER.to_bits() as i32);
    let ni = o.isub(zb, shb);
    let n1 = o.sra(ni, 1);
    let n2 = o.isub(ni, n1);
    let s1 = pow2i(o, n1);
    let s2 = pow2i(o, n2);
    let p = o.mul(p, s1);
    o.mul(p, s2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spacing of f32 at the magnitude of `t` (subnormal spacing below `2^-126`).
    fn ulp_of(t: f64) -> f64 {
        let a = t.abs();
        if a < f64::from(f32::MIN_POSITIVE) {
            return 2f64.powi(-149);
        }
        let e = a.log2().floor() as i32;
        // log2 may be off by one right at powers of two.
        let e = if 2f64.powi(e) > a {
            e - 1
        } else if 2f64.powi(e + 1) <= a {
            e + 1
        } else {
            e
        };
        2f64.powi(e.min(127) - 23)
    }

    /// Error of `got` against the exact `want`, in ulp of f32; special results must match
    /// exactly (NaN for NaN, the same infinity, the same sign of zero where `want` is zero).
    fn ulp_err(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        if got.is_nan() {
            return f64::INFINITY;
        }
        let rounded = want as f32;
        if rounded.is_infinite() || got.is_infinite() {
            return if got == rounded { 0.0 } else { f64::INFINITY };
        }
        (f64::from(got) - want).abs() / ulp_of(want)
    }

    /// About 8.4 million f32 bit patterns covering the whole range (every 512th pattern with
    /// varying low bits), then special values and `extra`.
    fn sweep(extra: &[f32]) -> impl Iterator<Item = f32> + '_ {
        let specials = [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x8000_0001),
            f32::MAX,
            f32::MIN,
            1.0,
            -1.0,
            f32::EPSILON,
        ];
        (0u32..1 << 23)
            .map(|k| f32::from_bits((k << 9) | (k.wrapping_mul(2_654_435_761) >> 23)))
            .chain(specials)
            .chain(extra.iter().copied())
    }

    /// Largest ulp error of `f` (mirror, fused and unfused) against `reference` over the sweep.
    fn max_err(f: impl Fn(&mut Mirror, f32) -> f32, reference: impl Fn(f64) -> f64, extra: &[f32]) -> [(f64, f32); 2] {
        let mut out = [(0.0, 0.0); 2];
        for (k, fused) in [true, false].into_iter().enumerate() {
            let mut m = Mirror { fused };
            for x in sweep(extra) {
                let e = ulp_err(f(&mut m, x), reference(f64::from(x)));
                if e > out[k].0 || e.is_nan() {
                    out[k] = (e, x);
                }
            }
        }
        out
    }

    fn check(name: &str, got: [(f64, f32); 2], bound: f64) {
        eprintln!(
            "{name}: max error fused {:.3} ulp at {:e}, unfused {:.3} ulp at {:e}",
            got[0].0, got[0].1, got[1].0, got[1].1
        );
        for (e, x) in got {
            assert!(e <= bound, "{name}: {e} ulp at x = {x:e} ({:#x}), bound {bound}", x.to_bits());
        }
    }

    #[test]
    fn exp_error() {
        let hard = [88.72283, 88.72284, 88.7229, -87.33654, -87.33655, -103.972_08, -103.972_09, -104.0, 0.346_573_6];
        check("exp", max_err(|m, x| exp_with(m, x), f64::exp, &hard), 1.2);
        let mut m = Mirror { fused: false };
        assert_eq!(exp_with(&mut m, 0.0), 1.0);
        assert_eq!(exp_with(&mut m, f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_with(&mut m, f32::NEG_INFINITY), 0.0);
        assert!(exp_with(&mut m, f32::NAN).is_nan());
    }
}
