//! The Cranelift backend of the math approximations ([`crate::math`]): [`Clif`] implements
//! [`Ops`] by emitting CLIF through a [`Kb`], on `F32` or `F32X4` values, and one function per
//! approximation (`exp`, `log`, ...) emits it for a value.

use super::{Kb, lane_flags};
use crate::math::*;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};

/// Emits the operations as CLIF through a [`Kb`], on `F32` or `F32X4` values (their bits as
/// `I32` / `I32X4`; masks as `I8` / `I32X4`).
pub struct Clif<'k, 'a> {
    kb: &'k mut Kb<'a>,
    vector: bool,
}

impl<'k, 'a> Clif<'k, 'a> {
    /// Operations on values shaped like `like`: an `F32`, or an `F32X4` (only where
    /// `kb.caps.vector`); any other type fails Cranelift's verifier.
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
            // A float-typed select of a compare's lanes: x86 lowers `lt(a, b) ? a : b` to one
            // `minps` and `lt(b, a) ? a : b` to one `maxps` (same results, NaN included), other
            // selects to one blend.
            let m = self.kb.b.ins().bitcast(types::F32X4, lane_flags(), m);
            self.kb.b.ins().bitselect(m, a, b)
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
    fn fused(&self) -> bool {
        self.kb.caps.native_fma
    }
}

/// `e^x` (see the module table for its error).
pub fn exp(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    exp_with(&mut o, x)
}

/// The natural logarithm (see the module table for its error).
pub fn log(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    log_with(&mut o, x)
}

/// The hyperbolic tangent (see the module table for its error).
pub fn tanh(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    tanh_with(&mut o, x)
}

/// The Gauss error function (see the module table for its error).
pub fn erf(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    erf_with(&mut o, x)
}

/// The sine of `x` radians (see the module table for its error and range).
pub fn sin(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    sin_with(&mut o, x)
}

/// The cosine of `x` radians (see the module table for its error and range).
pub fn cos(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    cos_with(&mut o, x)
}

/// `x^y` with the special cases of C's `powf` (see the module table for its error); `x` and
/// `y` of the same type.
pub fn pow(kb: &mut Kb, x: Value, y: Value) -> Value {
    let mut o = Clif::new(kb, x);
    pow_with(&mut o, x, y)
}

/// The logistic function `1/(1+e^-x)` (see the module table for its error).
pub fn sigmoid(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    sigmoid_with(&mut o, x)
}

/// SiLU `x·sigmoid(x)` (see the module table for its error).
pub fn silu(kb: &mut Kb, x: Value) -> Value {
    let mut o = Clif::new(kb, x);
    silu_with(&mut o, x)
}
