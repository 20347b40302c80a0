//! Inline approximations of the math functions (no libm, no calls), written once for every
//! backend; each states its maximum error. The lowest layer of the crate: nothing here depends
//! on the rest of codegen (the Cranelift backend lives beside [`crate::emit::Kb`], the
//! assembled one in [`crate::asm::vmath`]).
//!
//! Every algorithm is written once, generic over [`Ops`] (f32 arithmetic, compares and
//! selects, bit casts and integer operations on the bits), and has two implementations:
//! [`crate::emit::math::Clif`] emits Cranelift IR through a [`crate::emit::Kb`] (scalar or 4 lanes) and [`Mirror`] evaluates
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
//! | [`exp`](crate::emit::math::exp) | Cody–Waite `x = n·ln2 + r`, Taylor degree 7 on `|r| ≤ ln2/2`, scale by `2^n` in two steps (subnormal results rounded once, not flushed) | 0.87 / 1.15 | all f32 |
//! | [`log`](crate::emit::math::log) | `x = 2^k·m`, `m ∈ [√½, √2)`, `s = (m-1)/(m+1)`, FreeBSD `logf`'s degree-8 minimax in `s`, `k·ln2` in two parts; subnormals normalized by `2^23` first | 0.78 / 0.78 | all f32 |
//! | [`tanh`](crate::emit::math::tanh) | odd; `|x| < 0.625`: `x + x³·P(x²)` (Cephes degree 11); else `1 - 2/(e^(2|x|)+1)` on [`exp`](crate::emit::math::exp), `|x|` clamped to 10 | 1.33 / 1.26 | all f32 |
//! | [`erf`](crate::emit::math::erf) | odd; `|x| < 1`: `x + x·Q(x²)` (degree-6 minimax); else `1 - e^(-x²)·R(|x| - 2.5)` (degree-9 fit of `erfc·e^(x²)` on `[1, 4]`), `|x|` clamped to 4 | 0.86 / 1.1 | all f32 |
//! | [`sin`](crate::emit::math::sin), [`cos`](crate::emit::math::cos) | `j = round(|x|·2/π)`, Cody–Waite `r = |x| - j·π/2` with π/2 in four parts (exact products for `j < 2^13`), minimax `r + r³·S(r²)` / `1 - r²/2 + r⁴·C(r²)` by quadrant, the reduction's rounding error carried into the sine polynomial | sin 1.22 / 1.44, cos 1.18 / 1.51 | `|x| <` [`TRIG_ACCURATE_LIMIT`] (12867), arguments nearest every multiple of π/2 included; beyond, accuracy degrades (past `6.5·10^6` the result is meaningless) but stays in `[-1, 1]`; ±inf and NaN give NaN |
//! | [`pow`](crate::emit::math::pow) | `2^(y·log2|x|)` with `log2|x| = k + log2(1+f)` and `y·log2|x|` carried as two f32 (two-products, two-sums), [`exp`](crate::emit::math::exp)'s polynomial and scaling; C99 special cases (negative `x` with integral `y`, `±0`, `±inf`, NaN, `x^0 = 1^y = 1`) | `1.3 + |y|/40` (measured 1.0 / 1.23 for `|y| ≤ 15`, 5.7 at `y = 257`) | all f32 `x` and `y` (the `|y|/40` term: the f32 polynomial part of the logarithm, relative error `~10^-9`, is scaled by `y`) |
//! | [`sigmoid`](crate::emit::math::sigmoid) | `e = e^-|x|` by [`exp`](crate::emit::math::exp); `1/(1+e)` for `x ≥ 0`, `e/(1+e)` for `x < 0` | 2.2 / 2.2 | all f32 (subnormal results for `x < -87.3` rounded, not flushed) |
//! | [`silu`](crate::emit::math::silu) | `h = e^(-|x|/2)` by [`exp`](crate::emit::math::exp), `e = h·h`; `x/(1+e)` for `x ≥ 0`, `(x·h)·h/(1+e)` for `x < 0` (so `e` is never subnormal where the result is normal) | 4.05 / 3.97 | all f32 but `-inf` (NaN, as the reference's `x/(1+e^-x)`); subnormal results rounded, not flushed |
//!
//! Errors are measured against f64 `std` (or a careful f64 series for `erf`) on every
//! 512th bit pattern of f32 (8.4 million arguments, low bits varied) plus special values and
//! hand-picked hard cases (for `sin`/`cos` the f32 nearest every multiple of π/2 below the
//! limit, the arguments with the smallest reduced value); `pow` on every 2^15-th pattern of
//! `x` times 59 values of `y` up to `|y| = 3·10^7` and a table of special operands checked
//! against f64 `powf` (C semantics). "ulp" is the spacing of f32 at the exact result
//! (subnormal spacing `2^-149` below `2^-126`); the unit tests assert these bounds for both
//! `mul_add` modes, and `tests/tests/kernels_math.rs` checks that the CLIF of every function
//! (vector loop, scalar tail and scalar-only kernels) equals the mirror bit for bit on every
//! target preset and imports no symbol. Subnormal arguments and results are computed, never
//! flushed.

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
    /// Whether [`Ops::mul_add`] is fused (one rounding).
    fn fused(&self) -> bool;
}

/// Plain Rust f32 evaluation of the same operation sequence as [`crate::emit::math::Clif`].
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
    fn fused(&self) -> bool {
        self.fused
    }
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
    let x = clamp(o, x, -104.0, 88.8);
    let (z, r) = exp_reduce(o, x);
    exp_finish(o, z, r)
}

/// [`exp_with`] for arguments known to lie in `[-87, 88]` or to be NaN (no clamp needed, and
/// the results are normal): `2^n` (`-126 ≤ n ≤ 127`, a normal float) applied in one
/// multiplication, exact there as [`exp_with`]'s two are, so the result equals its bit for
/// bit.
fn exp_normal<O: Ops>(o: &mut O, x: O::F) -> O::F {
    let (z, r) = exp_reduce(o, x);
    let p = exp_poly(o, r);
    let zb = o.bits(z);
    let shb = o.i(SHIFTER.to_bits() as i32);
    let ni = o.isub(zb, shb);
    let s = pow2i(o, ni);
    o.mul(p, s)
}

/// `x = n·ln2 + r` for [`exp_with`]: `z = n + SHIFTER` (the integer `n` in its low mantissa
/// bits) and `r`.
fn exp_reduce<O: Ops>(o: &mut O, x: O::F) -> (O::F, O::F) {
    const INV_LN2: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // 0x1.62e4p-1, 16 significant bits
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI
    let inv = o.f(INV_LN2);
    let sh = o.f(SHIFTER);
    let z = o.mul_add(x, inv, sh);
    let n = o.sub(z, sh);
    let c = o.f(-LN2_HI);
    let r = o.mul_add(n, c, x);
    let c = o.f(-LN2_LO);
    (z, o.mul_add(n, c, r))
}

/// `e^r` for `|r| ≤ 0.35`: Taylor's polynomial of degree 7.
fn exp_poly<O: Ops>(o: &mut O, r: O::F) -> O::F {
    const C: [f32; 8] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    horner(o, r, &C)
}

/// `2^n·e^r` for `|r| ≤ 0.35` and the integer `n` held by `z = n + SHIFTER`, as [`exp_with`]
/// does it.
fn exp_finish<O: Ops>(o: &mut O, z: O::F, r: O::F) -> O::F {
    let p = exp_poly(o, r);
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

/// `|x|` and the sign bit of `x`.
fn abs_sign<O: Ops>(o: &mut O, x: O::F) -> (O::F, O::I) {
    let b = o.bits(x);
    let m = o.i(i32::MAX);
    let a = o.iand(b, m);
    let s = o.ixor(b, a);
    (o.float(a), s)
}

/// `a` (non-negative) with the sign bit `s` set when it is.
fn with_sign<O: Ops>(o: &mut O, a: O::F, s: O::I) -> O::F {
    let b = o.bits(a);
    let b = o.ior(b, s);
    o.float(b)
}

/// Horner's rule: `c[0]·t^(n-1) + … + c[n-1]` with `mul_add`.
fn horner<O: Ops>(o: &mut O, t: O::F, c: &[f32]) -> O::F {
    let mut p = o.f(c[0]);
    for &c in &c[1..] {
        let c = o.f(c);
        p = o.mul_add(p, t, c);
    }
    p
}

/// The integer `k` (`|k| < 2^22`) as a float, by the shifter trick.
fn int_to_float<O: Ops>(o: &mut O, k: O::I) -> O::F {
    let shb = o.i(SHIFTER.to_bits() as i32);
    let b = o.iadd(k, shb);
    let f = o.float(b);
    let sh = o.f(SHIFTER);
    o.sub(f, sh)
}

/// `ln x` for finite `x > 0` (subnormals included), without the special cases: `x = 2^k·m`
/// with `m` in `[√½, √2)`, `f = m - 1`, `s = f/(2+f)`, `ln(1+f) = f - f²/2 + s·(f²/2 + R(s²))`
/// with the degree-8 minimax `R` of FreeBSD's `logf`, then `+ k·ln2` in two parts.
fn log_core<O: Ops>(o: &mut O, x: O::F) -> O::F {
    const LN2_HI: f32 = 6.931_381e-1; // 0x3f317180
    const LN2_LO: f32 = 9.058_001e-6; // 0x3717f7d1
    let (k, f) = log_reduce(o, x);
    let dk = int_to_float(o, k);
    let (hfsq, sr) = log_tail(o, f);
    let lo = o.f(LN2_LO);
    let klo = o.mul(dk, lo);
    let y = o.add(sr, klo);
    let y = o.sub(y, hfsq);
    let y = o.add(y, f);
    let hi = o.f(LN2_HI);
    o.mul_add(dk, hi, y)
}

/// `x = 2^k·(1 + f)` with `1 + f` in `[√½, √2)` (exact), for finite `x > 0`.
fn log_reduce<O: Ops>(o: &mut O, x: O::F) -> (O::I, O::F) {
    let tiny = o.f(f32::MIN_POSITIVE);
    let is_sub = o.lt(x, tiny);
    let scale = o.f(8_388_608.0); // 2^23
    let xs = o.mul(x, scale);
    let x = o.sel(is_sub, xs, x);
    let m23 = o.i(-23);
    let z0 = o.i(0);
    let kadj = o.seli(is_sub, m23, z0);
    let ix = o.bits(x);
    let c = o.i(0x3f80_0000 - 0x3f35_04f3);
    let ix = o.iadd(ix, c);
    let k = o.sra(ix, 23);
    let c = o.i(-127);
    let k = o.iadd(k, c);
    let k = o.iadd(k, kadj);
    let c = o.i(0x007f_ffff);
    let ix = o.iand(ix, c);
    let c = o.i(0x3f35_04f3);
    let ix = o.iadd(ix, c);
    let m = o.float(ix);
    let one = o.f(1.0);
    let f = o.sub(m, one);
    (k, f)
}

/// `(f²/2, s·(f²/2 + R(s²)))` with `s = f/(2+f)`: `ln(1+f) = f - f²/2 + s·(f²/2 + R)`.
fn log_tail<O: Ops>(o: &mut O, f: O::F) -> (O::F, O::F) {
    const LG: [f32; 4] = [0.242_790_79, 0.284_987_87, 0.400_009_72, 0.666_666_6];
    let two = o.f(2.0);
    let d = o.add(two, f);
    let s = o.div(f, d);
    let z = o.mul(s, s);
    let w = o.mul(z, z);
    let c4 = o.f(LG[0]);
    let c2 = o.f(LG[2]);
    let t1 = o.mul_add(w, c4, c2);
    let t1 = o.mul(w, t1);
    let c3 = o.f(LG[1]);
    let c1 = o.f(LG[3]);
    let t2 = o.mul_add(w, c3, c1);
    let t2 = o.mul(z, t2);
    let r = o.add(t2, t1);
    let half = o.f(0.5);
    let hf = o.mul(half, f);
    let hfsq = o.mul(hf, f);
    let a = o.add(hfsq, r);
    let sr = o.mul(s, a);
    (hfsq, sr)
}

/// `ln x`: the reduction and polynomial of `log_core` (see the module table), then
/// `ln(±0) = -inf`, `ln(x<0) = NaN`, `ln(+inf) = +inf`, `ln(NaN) = NaN`.
pub fn log_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    let r = log_core(o, x);
    let zero = o.f(0.0);
    let neg = o.lt(x, zero);
    let nan = o.f(f32::NAN);
    let r = o.sel(neg, nan, r);
    let is_zero = o.eq(x, zero);
    let ninf = o.f(f32::NEG_INFINITY);
    let r = o.sel(is_zero, ninf, r);
    let inf = o.f(f32::INFINITY);
    let is_inf = o.eq(x, inf);
    let is_nan = o.uno(x, x);
    let pass = o.or_m(is_inf, is_nan);
    let xx = o.add(x, x);
    o.sel(pass, xx, r)
}

/// `tanh x`, odd: on `a = |x|`, below 0.625 `a + a·z·P(z)` with `z = a²` (Cephes `tanhf`),
/// else `1 - 2/(e^(2a) + 1)` with `a` clamped to 10 (where the result is 1); the sign of `x`
/// restored. NaN passes through.
pub fn tanh_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    const P: [f32; 5] = [-5.704_988_7e-3, 2.063_909e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1];
    let (a, sign) = abs_sign(o, x);
    let z = o.mul(a, a);
    let p = horner(o, z, &P);
    let az = o.mul(a, z);
    let small = o.mul_add(az, p, a);
    let ten = o.f(10.0);
    let big = o.lt(ten, a);
    let ac = o.sel(big, ten, a);
    let a2 = o.add(ac, ac);
    // `2a` is in [0, 20] (or NaN).
    let e = exp_normal(o, a2);
    let one = o.f(1.0);
    let d = o.add(e, one);
    let two = o.f(2.0);
    let q = o.div(two, d);
    let large = o.sub(one, q);
    let lim = o.f(0.625);
    let is_small = o.lt(a, lim);
    let r = o.sel(is_small, small, large);
    with_sign(o, r, sign)
}

/// `1/(1+e^-x)`: with `e = e^-|x|`, `1/(1+e)` for `x ≥ 0` and `e/(1+e)` for `x < 0` (so tiny
/// results keep their relative accuracy down to the subnormals). NaN passes through.
pub fn sigmoid_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    let (a, _) = abs_sign(o, x);
    let zero = o.f(0.0);
    let na = o.sub(zero, a);
    let e = exp_with(o, na);
    let one = o.f(1.0);
    let d = o.add(one, e);
    let neg = o.lt(x, zero);
    let num = o.sel(neg, e, one);
    o.div(num, d)
}

/// SiLU `x/(1+e^-x)`: with `h = e^(-|x|/2)` and `e = h·h`, `x/(1+e)` for `x ≥ 0` and
/// `(x·h)·h/(1+e)` for `x < 0`. Halving the exponent keeps `h` normal down to `x = -174`,
/// where the result is already below the subnormals, so no precision is lost to a subnormal
/// `e^x` while `x·e^x` is still normal. NaN passes through.
pub fn silu_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    let (a, _) = abs_sign(o, x);
    let mhalf = o.f(-0.5);
    let na = o.mul(a, mhalf);
    let h = exp_with(o, na);
    let e = o.mul(h, h);
    let one = o.f(1.0);
    let d = o.add(one, e);
    let xh = o.mul(x, h);
    let xe = o.mul(xh, h);
    let zero = o.f(0.0);
    let neg = o.lt(x, zero);
    let num = o.sel(neg, xe, x);
    o.div(num, d)
}

/// `erf x`, odd: on `a = |x|`, below 1 `a + a·Q(a²)` (`Q` the degree-6 minimax of
/// `erf(a)/a - 1` in `a²`, relative error `1.2·10^-9`), else `1 - e^(-a²)·R(a - 2.5)` with `a`
/// clamped to 4 (where the result is 1) and `R` the degree-9 polynomial fitted to
/// `erfc(a)·e^(a²)` on `[1, 4]` weighted by `e^(-a²)` (absolute error of `erfc`
/// `4.5·10^-10`); the sign of `x` restored. NaN passes through.
pub fn erf_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    const Q: [f32; 7] = [7.85402e-05, -0.0008010246, 0.0051883343, -0.026853817, 0.112835854, -0.37612626, 0.12837917];
    // -R, highest power first.
    const NEG_R: [f32; 10] = [
        2.7994702e-05,
        5.7781403e-05,
        0.00013621173,
        -0.00022366885,
        0.00064916705,
        -0.0025207081,
        0.008000191,
        -0.024929535,
        0.07434938,
        -0.21080634,
    ];
    let (a, sign) = abs_sign(o, x);
    let z = o.mul(a, a);
    let q = horner(o, z, &Q);
    let small = o.mul_add(a, q, a);
    let four = o.f(4.0);
    let big = o.lt(four, a);
    let ac = o.sel(big, four, a);
    let mid = o.f(2.5);
    let t = o.sub(ac, mid);
    let nr = horner(o, t, &NEG_R);
    let zero = o.f(0.0);
    let sq = o.mul(ac, ac);
    let nsq = o.sub(zero, sq);
    // `-a²` is in [-16, 0] (or NaN).
    let e = exp_normal(o, nsq);
    let one = o.f(1.0);
    let large = o.mul_add(e, nr, one);
    let is_small = o.lt(a, one);
    let r = o.sel(is_small, small, large);
    with_sign(o, r, sign)
}

/// Below this `|x|` the Cody–Waite products `j·P1..P3` of [`sin_with`] are exact
/// (`j < 2^13`) and the stated error holds.
pub const TRIG_ACCURATE_LIMIT: f32 = 12_867.0;

/// `x` clamped to `[lo, hi]` (NaN passes through).
fn clamp<O: Ops>(o: &mut O, x: O::F, lo: f32, hi: f32) -> O::F {
    let hi = o.f(hi);
    let lo = o.f(lo);
    let over = o.lt(hi, x);
    let x = o.sel(over, hi, x);
    let under = o.lt(x, lo);
    o.sel(under, lo, x)
}

/// A value carried as a head and a tail (`x + xl`) clamped to `[lo, hi]`: beyond a bound the
/// head is the bound and the tail 0.
fn clamp_pair<O: Ops>(o: &mut O, (x, xl): (O::F, O::F), lo: f32, hi: f32) -> (O::F, O::F) {
    let hi = o.f(hi);
    let lo = o.f(lo);
    let zero = o.f(0.0);
    let over = o.lt(hi, x);
    let x = o.sel(over, hi, x);
    let xl = o.sel(over, zero, xl);
    let under = o.lt(x, lo);
    let x = o.sel(under, lo, x);
    let xl = o.sel(under, zero, xl);
    (x, xl)
}

/// `a - b` as `(hi, lo)` with `hi + lo` exact (Knuth's two-sum).
fn two_diff<O: Ops>(o: &mut O, a: O::F, b: O::F) -> (O::F, O::F) {
    let h = o.sub(a, b);
    let bb = o.sub(h, a);
    let t1 = o.sub(h, bb);
    let t1 = o.sub(a, t1);
    let t2 = o.add(b, bb);
    (h, o.sub(t1, t2))
}

/// `sin` or `cos`: see [`sin_with`].
fn sincos<O: Ops>(o: &mut O, x: O::F, cosine: bool) -> O::F {
    const P: [f32; 4] = [1.570_312_5, 4.837_513e-4, 7.549_533_6e-8, 2.563_344e-12];
    const S: [f32; 3] = [-0.00019502132, 0.008332063, -0.16666654];
    const C: [f32; 3] = [2.4418125e-05, -0.0013887185, 0.04166664];
    let (a, sign) = abs_sign(o, x);
    let inv = o.f(std::f32::consts::FRAC_2_PI);
    let sh = o.f(SHIFTER);
    let z = o.mul_add(a, inv, sh);
    let j = o.sub(z, sh);
    // a - j·(P1 + P2) is exact; the last two steps keep their rounding errors in `rl`.
    let mut r = a;
    for p in &P[..2] {
        let c = o.f(-p);
        r = o.mul_add(j, c, r);
    }
    let mut rl = o.f(0.0);
    for p in &P[2..] {
        let c = o.f(*p);
        let u = o.mul(j, c);
        let (h, e) = two_diff(o, r, u);
        r = h;
        rl = o.add(rl, e);
    }
    let (r, rl) = clamp_pair(o, (r, rl), -0.8, 0.8);
    let r2 = o.mul(r, r);
    let sp = horner(o, r2, &S);
    let t = o.mul(r2, sp);
    // sin(r + rl) = sin r + rl·(1 - r²/2) to first order.
    let mh = o.f(-0.5);
    let hrl = o.mul(rl, mh);
    let rl = o.mul_add(hrl, r2, rl);
    let st = o.mul_add(r, t, rl);
    let sv = o.add(r, st);
    let cp = horner(o, r2, &C);
    let cc = o.mul_add(r2, cp, mh);
    let one = o.f(1.0);
    let cv = o.mul_add(r2, cc, one);
    let zb = o.bits(z);
    let shb = o.i(SHIFTER.to_bits() as i32);
    let mut q = o.isub(zb, shb);
    if cosine {
        let c1 = o.i(1);
        q = o.iadd(q, c1);
    }
    let c1 = o.i(1);
    let odd = o.iand(q, c1);
    let odd = o.ieq(odd, c1);
    let v = o.sel(odd, cv, sv);
    let c2 = o.i(2);
    let neg = o.iand(q, c2);
    let mut flip = o.shl(neg, 30);
    if !cosine {
        flip = o.ixor(flip, sign);
    }
    let vb = o.bits(v);
    let vb = o.ixor(vb, flip);
    let v = o.float(vb);
    let d = o.sub(x, x);
    let bad = o.uno(d, d);
    let nan = o.f(f32::NAN);
    o.sel(bad, nan, v)
}

/// `sin x` (and [`cos_with`]): on `a = |x|`, `j = round(a·2/π)` by the shifter,
/// `r = a - j·π/2` with `π/2` split in four parts (three of 11 significant bits, so `j·Pk` is
/// exact for `j < 2^13`, then the rest; residual `8·10^-20`; the rounding errors of the last
/// two steps are summed in `rl` and added to the sine as `rl·(1 - r²/2)`), `r` clamped to `[-0.8, 0.8]`
/// (`|r|` exceeds π/4 by at most `10^-3` from rounding `j`; the clamp only matters beyond
/// [`TRIG_ACCURATE_LIMIT`], where it keeps the result in `[-1, 1]`), minimax polynomials
/// `r + r³·S(r²)` and `1 - r²/2 + r⁴·C(r²)` (relative errors `4.4·10^-9` and `1.4·10^-10` on
/// `|r| ≤ 0.8`), chosen and negated by the quadrant `j mod 4` (plus one for `cos`); `sin`
/// takes the sign of `x`. Infinities and NaN give NaN.
pub fn sin_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    sincos(o, x, false)
}

/// `cos x`, as [`sin_with`] with the quadrant advanced by one.
pub fn cos_with<O: Ops>(o: &mut O, x: O::F) -> O::F {
    sincos(o, x, true)
}

/// `a·b` exactly as `(hi, lo)`: `lo` by one fused multiply-add where `mul_add` is fused,
/// else by Veltkamp splitting and Dekker's product (`|a|, |b| < 2^100`).
fn two_prod<O: Ops>(o: &mut O, a: O::F, b: O::F) -> (O::F, O::F) {
    let p = o.mul(a, b);
    if o.fused() {
        let zero = o.f(0.0);
        let np = o.sub(zero, p);
        let e = o.mul_add(a, b, np);
        return (p, e);
    }
    let split = |o: &mut O, v: O::F| {
        let k = o.f(4097.0);
        let c = o.mul(v, k);
        let d = o.sub(c, v);
        let h = o.sub(c, d);
        let l = o.sub(v, h);
        (h, l)
    };
    let (ah, al) = split(o, a);
    let (bh, bl) = split(o, b);
    let t = o.mul(ah, bh);
    let e = o.sub(t, p);
    let t = o.mul(ah, bl);
    let e = o.add(e, t);
    let t = o.mul(al, bh);
    let e = o.add(e, t);
    let t = o.mul(al, bl);
    let e = o.add(e, t);
    (p, e)
}

/// `x^y` as C's `powf`. The core, for finite `x ≠ 0`: `|x| = 2^k·(1+f)`,
/// `ln(1+f) = f - f²/2 + s·(f²/2 + R)` (`log_tail`) with `f²/2` exact and the sums kept as
/// two f32, times `log2(e)` in two parts, then `t = y·k + y·log2(1+f)` as `th + tl` by
/// two-products and a two-sum (`y` clamped to `±2^40`: beyond, the result is 0, 1 or inf
/// anyway), and `2^t = 2^n·e^((th - n + tl)·ln2)` by [`exp_with`]'s polynomial and two-step
/// scaling, `th` clamped to `[-160, 150]`. The error grows as `|y|/40` ulp because the
/// polynomial part of the logarithm has only f32 accuracy. Then the sign (`x < 0` with odd
/// integral `y`), NaN for `x < 0` finite with non-integral `y`, and C99 F.9.4.4: `x^±0 = 1`
/// and `1^y = 1` (even for NaN), `±0^y` and `±inf^y` by the sign of `y`, NaN otherwise
/// propagated.
pub fn pow_with<O: Ops>(o: &mut O, x: O::F, y: O::F) -> O::F {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LOG2_E_LO: f32 = 1.925_963e-8; // log2(e) - LOG2_E
    let (ax, _) = abs_sign(o, x);
    let (ay, _) = abs_sign(o, y);
    // The core.
    let yc = clamp(o, y, -1.099_511_6e12, 1.099_511_6e12); // ±2^40
    let (k, f) = log_reduce(o, ax);
    let dk = int_to_float(o, k);
    // ln(1+f) = f - f²/2 + sr as nh + nl (f²/2 exact; fast two-sums, |f| ≥ f²/2 ≥ |sr|).
    let (_, sr) = log_tail(o, f);
    let half = o.f(0.5);
    let hf = o.mul(half, f);
    let (hh, hl) = two_prod(o, hf, f);
    let a = o.sub(f, hh);
    let ea = o.sub(f, a);
    let ea = o.sub(ea, hh);
    let nh = o.add(a, sr);
    let e2 = o.sub(a, nh);
    let e2 = o.add(e2, sr);
    let nl = o.add(ea, e2);
    let nl = o.sub(nl, hl);
    // log2(1+f) = (nh + nl)·log2(e) as lh + ll.
    let l2eh = o.f(LOG2_E);
    let l2el = o.f(LOG2_E_LO);
    let (lh, ll) = two_prod(o, nh, l2eh);
    let t = o.mul(nl, l2eh);
    let ll = o.mul_add(nh, l2el, ll);
    let ll = o.add(ll, t);
    // t = y·k + y·log2(1+f) as th + tl.
    let (ph, pl) = two_prod(o, yc, dk);
    let (qh, ql) = two_prod(o, yc, lh);
    let ql = o.mul_add(yc, ll, ql);
    let th = o.add(ph, qh);
    let bb = o.sub(th, ph);
    let t1 = o.sub(th, bb);
    let t1 = o.sub(ph, t1);
    let t2 = o.sub(qh, bb);
    let tl = o.add(t1, t2);
    let tl = o.add(tl, pl);
    let tl = o.add(tl, ql);
    let (th, tl) = clamp_pair(o, (th, tl), -160.0, 150.0);
    let zero = o.f(0.0);
    let sh = o.f(SHIFTER);
    let z = o.add(th, sh);
    let n = o.sub(z, sh);
    let r = o.sub(th, n);
    let r = o.add(r, tl);
    let ln2 = o.f(std::f32::consts::LN_2);
    let w = o.mul(r, ln2);
    let core = exp_finish(o, z, w);
    // Zero and infinite x: 0 or inf by the sign of y.
    let inf = o.f(f32::INFINITY);
    let yneg = o.lt(y, zero);
    let at_zero = o.sel(yneg, inf, zero);
    let at_inf = o.sel(yneg, zero, inf);
    let is0 = o.eq(ax, zero);
    let r = o.sel(is0, at_zero, core);
    let isinf = o.eq(ax, inf);
    let r = o.sel(isinf, at_inf, r);
    // Integral and odd y.
    let ysh = o.add(ay, sh);
    let yround = o.sub(ysh, sh);
    let p23 = o.f(8_388_608.0);
    let p24 = o.f(16_777_216.0);
    let int_small = o.eq(yround, ay);
    let int_big = o.le(p23, ay);
    let yint = o.or_m(int_small, int_big);
    let one_i = o.i(1);
    let zero_i = o.i(0);
    let b = o.bits(ysh);
    let odd_small = o.iand(b, one_i);
    let b = o.bits(ay);
    let odd_mid = o.iand(b, one_i);
    let below23 = o.lt(ay, p23);
    let odd = o.seli(below23, odd_small, odd_mid);
    let below24 = o.lt(ay, p24);
    let odd = o.seli(below24, odd, zero_i);
    let odd = o.seli(yint, odd, zero_i);
    // The sign of x for odd y.
    let flip = o.shl(odd, 31);
    let xb = o.bits(x);
    let flip = o.iand(flip, xb);
    let rb = o.bits(r);
    let rb = o.ixor(rb, flip);
    let r = o.float(rb);
    // Negative finite x with non-integral y: NaN.
    let nan = o.f(f32::NAN);
    let ninf = o.f(f32::NEG_INFINITY);
    let xneg = o.lt(x, zero);
    let xfin = o.lt(ninf, x);
    let xnegfin = o.and_m(xneg, xfin);
    let if_nonint = o.sel(xnegfin, nan, r);
    let r = o.sel(yint, r, if_nonint);
    // NaN operands, then x^0 = 1^y = 1.
    let anynan = o.uno(x, y);
    let xy = o.add(x, y);
    let r = o.sel(anynan, xy, r);
    let one = o.f(1.0);
    let y0 = o.eq(y, zero);
    let x1 = o.eq(x, one);
    let unit = o.or_m(y0, x1);
    o.sel(unit, one, r)
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
    fn exp_normal_equals_exp_on_its_range() {
        for fused in [true, false] {
            let mut m = Mirror { fused };
            let mut args: Vec<f32> = vec![-87.0, 88.0, 0.0, -0.0, 1e-30, -1e-30, 0.346_573_6, -0.346_573_6];
            // Every 97th bit pattern of each sign (both ends and the subnormals included).
            args.extend((0..0x7f80_0000u32).step_by(97).flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)]));
            for x in args.into_iter().filter(|x| (-87.0..=88.0).contains(x)) {
                let (a, b) = (exp_normal(&mut m, x), exp_with(&mut m, x));
                assert_eq!(a.to_bits(), b.to_bits(), "x = {x:e} (fused {fused}): {a:e} against {b:e}");
            }
            assert!(exp_normal(&mut m, f32::NAN).is_nan());
        }
    }

    #[test]
    fn exp_error() {
        let hard = [88.72283, 88.72284, 88.7229, -87.33654, -87.33655, -103.972_08, -103.972_09, -104.0, 0.346_573_6];
        check("exp", max_err(exp_with, f64::exp, &hard), 1.2);
        let mut m = Mirror { fused: false };
        assert_eq!(exp_with(&mut m, 0.0), 1.0);
        assert_eq!(exp_with(&mut m, f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_with(&mut m, f32::NEG_INFINITY), 0.0);
        assert!(exp_with(&mut m, f32::NAN).is_nan());
    }

    #[test]
    fn log_error() {
        let hard = [
            f32::from_bits(1),
            f32::from_bits(0x007f_ffff),
            f32::from_bits(0x3f35_04f2),
            f32::from_bits(0x3f35_04f3),
            f32::from_bits(0x3fb5_04f3),
            1.000_000_1,
            0.999_999_94,
        ];
        check("log", max_err(log_with, f64::ln, &hard), 1.0);
        let mut m = Mirror { fused: true };
        assert_eq!(log_with(&mut m, 1.0).to_bits(), 0);
        assert_eq!(log_with(&mut m, 0.0), f32::NEG_INFINITY);
        assert_eq!(log_with(&mut m, -0.0), f32::NEG_INFINITY);
        assert_eq!(log_with(&mut m, f32::INFINITY), f32::INFINITY);
        assert!(log_with(&mut m, -1.0).is_nan());
        assert!(log_with(&mut m, f32::NEG_INFINITY).is_nan());
        assert!(log_with(&mut m, f32::NAN).is_nan());
    }

    #[test]
    fn tanh_error() {
        let hard = [0.624_999_94, 0.625, 1e-30, -1e-30, 9.0, 9.1, -9.1, 10.0, 1e-3];
        check("tanh", max_err(tanh_with, f64::tanh, &hard), 1.5);
        let mut m = Mirror { fused: false };
        assert_eq!(tanh_with(&mut m, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(tanh_with(&mut m, f32::INFINITY), 1.0);
        assert_eq!(tanh_with(&mut m, f32::NEG_INFINITY), -1.0);
        assert_eq!(tanh_with(&mut m, f32::from_bits(1)), f32::from_bits(1));
    }

    #[test]
    fn sigmoid_error() {
        let hard = [-88.0, -88.8, -103.0, -103.9, -104.0, 17.0, 16.6];
        check("sigmoid", max_err(sigmoid_with, |x| 1.0 / (1.0 + (-x).exp()), &hard), 2.5);
        let mut m = Mirror { fused: false };
        assert_eq!(sigmoid_with(&mut m, 0.0), 0.5);
        assert_eq!(sigmoid_with(&mut m, f32::INFINITY), 1.0);
        assert_eq!(sigmoid_with(&mut m, f32::NEG_INFINITY), 0.0);
        assert!(sigmoid_with(&mut m, f32::NAN).is_nan());
    }

    #[test]
    fn silu_error() {
        let hard = [-88.0, -92.0, -100.0, -103.9, -104.0, -120.0, -174.0, -180.0, -208.0, 17.0, 16.6, -1e-30];
        check("silu", max_err(silu_with, |x| x / (1.0 + (-x).exp()), &hard), 4.2);
        let mut m = Mirror { fused: false };
        assert_eq!(silu_with(&mut m, 0.0), 0.0);
        assert_eq!(silu_with(&mut m, f32::INFINITY), f32::INFINITY);
        assert_eq!(silu_with(&mut m, -1000.0), 0.0);
        assert!(silu_with(&mut m, f32::NAN).is_nan());
    }

    #[test]
    fn erf_error() {
        let hard = [0.999_999_94, 1.0, 1.000_000_1, 3.92, 3.93, 3.999_999_8, 4.0, 4.000_001, 1e-30, -1e-38, 0.5];
        // Against the reference interpreter's f64 erf.
        check("erf", max_err(erf_with, slmtvm_ir::ops::elementwise::erf, &hard), 1.2);
        let mut m = Mirror { fused: false };
        assert_eq!(erf_with(&mut m, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(erf_with(&mut m, f32::INFINITY), 1.0);
        assert_eq!(erf_with(&mut m, f32::NEG_INFINITY), -1.0);
        assert!(erf_with(&mut m, f32::NAN).is_nan());
    }

    /// `x` and its two neighbours for the f32 nearest to every multiple of π/2 up to `limit`:
    /// the arguments whose reduced value is smallest.
    fn near_multiples_of_half_pi(limit: f32) -> Vec<f32> {
        let mut v = Vec::new();
        let mut k = 1.0f64;
        while k * std::f64::consts::FRAC_PI_2 < f64::from(limit) {
            let c = (k * std::f64::consts::FRAC_PI_2) as f32;
            for b in [c.to_bits() - 1, c.to_bits(), c.to_bits() + 1] {
                v.push(f32::from_bits(b));
                v.push(-f32::from_bits(b));
            }
            k += 1.0;
        }
        v
    }

    /// Max error of `f` over the arguments with `|x| < limit` of the sweep and `extra`.
    fn max_err_below(
        f: impl Fn(&mut Mirror, f32) -> f32,
        reference: impl Fn(f64) -> f64,
        extra: &[f32],
        limit: f32,
    ) -> [(f64, f32); 2] {
        let mut out = [(0.0, 0.0); 2];
        for (k, fused) in [true, false].into_iter().enumerate() {
            let mut m = Mirror { fused };
            for x in sweep(extra).filter(|x| x.is_nan() || x.abs() < limit) {
                let e = ulp_err(f(&mut m, x), reference(f64::from(x)));
                if e > out[k].0 || e.is_nan() {
                    out[k] = (e, x);
                }
            }
        }
        out
    }

    #[test]
    fn sin_cos_error() {
        let hard = near_multiples_of_half_pi(TRIG_ACCURATE_LIMIT);
        check("sin", max_err_below(sin_with, f64::sin, &hard, TRIG_ACCURATE_LIMIT), 1.6);
        check("cos", max_err_below(cos_with, f64::cos, &hard, TRIG_ACCURATE_LIMIT), 1.6);
        for fused in [false, true] {
            let mut m = Mirror { fused };
            assert_eq!(sin_with(&mut m, -0.0).to_bits(), (-0.0f32).to_bits());
            assert_eq!(sin_with(&mut m, f32::from_bits(0x8000_0001)), f32::from_bits(0x8000_0001));
            assert_eq!(cos_with(&mut m, 0.0), 1.0);
            for x in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                assert!(sin_with(&mut m, x).is_nan() && cos_with(&mut m, x).is_nan());
            }
            // Beyond the accurate range: finite, within [-1, 1].
            for x in sweep(&[]).filter(|x| x.is_finite() && x.abs() >= TRIG_ACCURATE_LIMIT) {
                for y in [sin_with(&mut m, x), cos_with(&mut m, x)] {
                    assert!(y.abs() <= 1.0, "x = {x:e}: {y}");
                }
            }
        }
    }

    #[test]
    fn pow_special_cases_match_c() {
        let vals = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -0.5,
            2.0,
            -2.0,
            3.0,
            -3.0,
            2.5,
            -2.5,
            1e-45,
            -1e-45,
            1e30,
            -1e30,
            8_388_609.0,
            -8_388_609.0,
            16_777_218.0,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for fused in [false, true] {
            let mut m = Mirror { fused };
            for &x in &vals {
                for &y in &vals {
                    let got = pow_with(&mut m, x, y);
                    let want = f64::from(x).powf(f64::from(y));
                    let e = ulp_err(got, want);
                    let exact_zero = want == 0.0 && got.to_bits() != (want as f32).to_bits();
                    assert!(e <= 2.0 && !exact_zero, "pow({x:e}, {y:e}) = {got:e}, want {want:e} (fused {fused})");
                }
            }
        }
    }

    #[test]
    fn pow_error() {
        let ys: Vec<f32> = [0.5, -0.5, 1.0, 2.0, -2.0, 3.0, -1.0, 1.5, 0.333_333_34, -3.7, 4.0]
            .into_iter()
            .chain((0..40).map(|k| (k as f32 - 20.0) * 0.77))
            .chain([31.7, -63.1, 100.0, 257.3, -1000.9, 12_345.6, 1e6 + 1.0, -3e7])
            .collect();
        for fused in [true, false] {
            let mut m = Mirror { fused };
            let mut worst = (0.0f64, 0.0f32, 0.0f32);
            for &y in &ys {
                for k in 0u32..1 << 17 {
                    let x = f32::from_bits((k << 15) | (k.wrapping_mul(2_654_435_761) >> 17));
                    let want = f64::from(x).powf(f64::from(y));
                    // Relative to the documented bound, which grows with |y|.
                    let e = ulp_err(pow_with(&mut m, x, y), want) / (1.3 + f64::from(y.abs()) / 40.0);
                    if e > worst.0 {
                        worst = (e, x, y);
                    }
                }
            }
            eprintln!(
                "pow (fused {fused}): max error / (1.3 + |y|/40) ulp = {:.3} at x = {:e}, y = {:e}",
                worst.0, worst.1, worst.2
            );
            assert!(worst.0 <= 1.0, "pow: {worst:?}");
        }
    }
}
