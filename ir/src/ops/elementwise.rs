//! Elementwise operators: unary math and activations, binary arithmetic, comparison and logic
//! (with broadcasting), Clip, Where and Cast.
//!
//! Evaluation is plain: floats are computed in f32 (binary arithmetic, as NumPy does for f16)
//! or f64 (math functions) and rounded back to the input's dtype; integers are computed on
//! sign-extended i64 values with wrapping arithmetic and wrapped back to their width, which
//! equals wrapping arithmetic at that width.

use super::broadcast::{broadcast_all, broadcast_dims, broadcast_shapes, view_as};
use super::{InferIn, OpDef, arity, check_alloc, opt, req};
use crate::error::invalid;
use crate::{DType, Element, OpError, Shape, Tensor, TypeInfo};
use half::f16;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};
use std::f64::consts::{FRAC_2_SQRT_PI, PI};

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by `reduce` and `norm`).

/// Builds an array from row-major `data`, which must hold exactly the elements of `dims`.
pub(crate) fn array<T>(dims: &[usize], data: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(dims), data)
        .map_err(|e| invalid(format!("internal error: cannot build a {dims:?} array: {e}")))
}

/// Applies `f` to `a` and `b` elementwise with broadcasting, stopping at the first error.
pub(crate) fn zip2<A: Copy, B: Copy, R>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    mut f: impl FnMut(A, B) -> Result<R, OpError>,
) -> Result<ArrayD<R>, OpError> {
    let dims = broadcast_dims(a.shape(), b.shape())?;
    check_alloc(&dims, size_of::<R>())?;
    let (va, vb) = (view_as(a, &dims)?, view_as(b, &dims)?);
    let data = va.iter().zip(vb.iter()).map(|(&x, &y)| f(x, y)).collect::<Result<Vec<R>, _>>()?;
    array(&dims, data)
}

/// The elements of an integer or bool tensor as i64 (bools as 0/1), keeping the shape.
pub(crate) fn to_i64_array(t: &Tensor) -> Result<ArrayD<i64>, OpError> {
    Ok(match t {
        Tensor::I8(a) => a.mapv(i64::from),
        Tensor::U8(a) => a.mapv(i64::from),
        Tensor::I32(a) => a.mapv(i64::from),
        Tensor::I64(a) => a.clone(),
        Tensor::Bool(a) => a.mapv(i64::from),
        Tensor::F32(_) | Tensor::F16(_) => {
            return Err(invalid(format!("expected an integer or bool tensor, got {}", t.dtype())));
        }
    })
}

/// Truncates toward zero to i32 as x86's `cvttss2si`/`cvttsd2si` do (and so NumPy's `astype`
/// on x86): NaN and values whose truncation is out of range give `i32::MIN`.
fn trunc_i32(x: f64) -> i32 {
    if x.is_nan() || x >= 2_147_483_648.0 || x <= -2_147_483_649.0 { i32::MIN } else { x as i32 }
}

/// Like [`trunc_i32`] for i64: NaN and out-of-range values give `i64::MIN`.
fn trunc_i64(x: f64) -> i64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x.is_nan() || !(-TWO_63..TWO_63).contains(&x) { i64::MIN } else { x as i64 }
}

/// Converts float values to `to` with ONNX Cast semantics, matching NumPy's `astype` on x86:
/// to floats rounds to nearest even (to f16 through f32, as NumPy's f16 math does); to bool is
/// `x != 0` (NaN is true); to integers truncates toward zero, where NaN and out-of-range
/// values become `i32::MIN`/`i64::MIN` for i32/i64 and, for i8/u8, the low 8 bits of the i32
/// conversion (so NaN and ±inf give 0, 300.5 gives 44).
pub(crate) fn cast_f64(a: &ArrayD<f64>, to: DType) -> Tensor {
    match to {
        DType::F32 => Tensor::F32(a.mapv(|v| v as f32)),
        DType::F16 => Tensor::F16(a.mapv(|v| f16::from_f32(v as f32))),
        DType::I8 => Tensor::I8(a.mapv(|v| trunc_i32(v) as i8)),
        DType::U8 => Tensor::U8(a.mapv(|v| trunc_i32(v) as u8)),
        DType::I32 => Tensor::I32(a.mapv(trunc_i32)),
        DType::I64 => Tensor::I64(a.mapv(trunc_i64)),
        DType::Bool => Tensor::Bool(a.mapv(|v| v != 0.0)),
    }
}

/// Converts integer values to `to` with ONNX Cast semantics: integers wrap (keep the low
/// bits, two's complement); floats round to nearest even; bool is `v != 0`.
pub(crate) fn cast_i64(a: &ArrayD<i64>, to: DType) -> Tensor {
    match to {
        DType::F32 => Tensor::F32(a.mapv(|v| v as f32)),
        // Exact through f32 below 2^24; beyond, both roundings overflow f16 to infinity.
        DType::F16 => Tensor::F16(a.mapv(|v| f16::from_f32(v as f32))),
        DType::I8 => Tensor::I8(a.mapv(|v| v as i8)),
        DType::U8 => Tensor::U8(a.mapv(|v| v as u8)),
        DType::I32 => Tensor::I32(a.mapv(|v| v as i32)),
        DType::I64 => Tensor::I64(a.clone()),
        DType::Bool => Tensor::Bool(a.mapv(|v| v != 0)),
    }
}

/// Converts `t` to `to` with ONNX Cast semantics; see [`cast_f64`] and [`cast_i64`].
pub(crate) fn cast(t: &Tensor, to: DType) -> Result<Tensor, OpError> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    check_alloc(t.shape(), to.size())?;
    match t {
        Tensor::F32(_) | Tensor::F16(_) => Ok(cast_f64(&t.to_f64(), to)),
        _ => Ok(cast_i64(&to_i64_array(t)?, to)),
    }
}

/// `v` clamped to `lo..=hi`; NaN stays NaN, and `hi` wins when `lo > hi`.
fn clamp<T: PartialOrd>(v: T, lo: T, hi: T) -> T {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// The Gauss error function in f64 (a few ulp): the positive-term series
/// `erf x = 2/√π · e^(-x²) · Σ 2ⁿx^(2n+1)/(1·3·…·(2n+1))` below 2.5, where it has no
/// cancellation, and `1 - erfc x` with Laplace's continued fraction for erfc above. The
/// reference the interpreter computes with, and the oracle codegen's f32 `erf` is measured
/// against.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a < 2.5 { erf_series(a) } else { 1.0 - erfc_cf(a) };
    r.copysign(x)
}

fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term > sum * 1e-17 && n < 500.0 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

/// `erfc x = e^(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …))))`, evaluated backward;
/// 60 terms reach f64 precision for x ≥ 2.5.
fn erfc_cf(x: f64) -> f64 {
    let f = (1..=60).rev().fold(x, |f, k| x + f64::from(k) / 2.0 / f);
    (-x * x).exp() / (PI.sqrt() * f)
}

/// True when `dt` is a number type (not bool).
fn is_numeric(dt: DType) -> bool {
    dt != DType::Bool
}

// ---------------------------------------------------------------------------------------------
// Unary.

/// Elementwise operators of one input. Output dtype equals the input's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// Copy.
    Identity,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// Square root.
    Sqrt,
    /// `1/x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Gauss error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// Sine (radians).
    Sin,
    /// Cosine (radians).
    Cos,
    /// `1/(1+e^-x)`.
    Sigmoid,
    /// SiLU (swish with β = 1): `x·sigmoid(x)`.
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// Logical not (bool).
    Not,
    /// GELU, exact (erf) or with the tanh approximation.
    Gelu {
        /// Use `0.5x(1+tanh(√(2/π)(x+0.044715x³)))`.
        tanh_approx: bool,
    },
    /// `max(0, min(1, alpha·x + beta))`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
}

impl UnaryOp {
    /// The operator's name (`Relu`, `Gelu`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Identity => "Identity",
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Erf => "Erf",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Silu => "Silu",
            UnaryOp::Relu => "Relu",
            UnaryOp::Not => "Not",
            UnaryOp::Gelu { .. } => "Gelu",
            UnaryOp::HardSigmoid { .. } => "HardSigmoid",
        }
    }

    /// Checks the input dtype (which is also the output's).
    fn check(&self, dt: DType) -> Result<(), OpError> {
        use DType::*;
        let ok = match self {
            UnaryOp::Identity => true,
            UnaryOp::Not => dt == Bool,
            UnaryOp::Neg | UnaryOp::Relu => matches!(dt, F32 | F16 | I8 | I32 | I64),
            UnaryOp::Abs => matches!(dt, F32 | F16 | I8 | U8 | I32 | I64),
            _ => dt.is_float(),
        };
        if ok { Ok(()) } else { Err(invalid(format!("{} does not accept {dt} input", self.name()))) }
    }

    /// The operator on one float value.
    pub fn apply_f64(&self, x: f64) -> f64 {
        match self {
            UnaryOp::Identity | UnaryOp::Not => x,
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Erf => erf(x),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Silu => x / (1.0 + (-x).exp()),
            UnaryOp::Relu => clamp(x, 0.0, f64::INFINITY),
            UnaryOp::Gelu { tanh_approx: false } => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
            UnaryOp::Gelu { tanh_approx: true } => {
                0.5 * x * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            }
            UnaryOp::HardSigmoid { alpha, beta } => clamp(f64::from(*alpha) * x + f64::from(*beta), 0.0, 1.0),
        }
    }

    /// The operator on one integer value (sign-extended; the result wraps to the width).
    fn apply_i64(&self, x: i64) -> i64 {
        match self {
            UnaryOp::Neg => x.wrapping_neg(),
            UnaryOp::Abs => x.wrapping_abs(),
            UnaryOp::Relu => x.max(0),
            _ => x,
        }
    }
}

impl OpDef for UnaryOp {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let t = req(ins, 0)?.ty;
        self.check(t.dtype)?;
        Ok(vec![t.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        self.check(x.dtype())?;
        let out = match x {
            _ if *self == UnaryOp::Identity => x.clone(),
            Tensor::Bool(a) => Tensor::Bool(a.mapv(|v| !v)),
            Tensor::F32(_) | Tensor::F16(_) => cast_f64(&x.to_f64().mapv(|v| self.apply_f64(v)), x.dtype()),
            _ => cast_i64(&to_i64_array(x)?.mapv(|v| self.apply_i64(v)), x.dtype()),
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------------
// Binary.

/// Elementwise operators of two inputs with multidirectional broadcasting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integers truncate toward zero).
    Div,
    /// `a ^ b`; the exponent may have another numeric dtype.
    Pow,
    /// `a == b` → bool.
    Equal,
    /// `a < b` → bool.
    Less,
    /// `a <= b` → bool.
    LessOrEqual,
    /// `a > b` → bool.
    Greater,
    /// `a >= b` → bool.
    GreaterOrEqual,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
    /// The larger of `a` and `b`. For floats NaN propagates and `-0.0 < +0.0` (IEEE 754-2019
    /// `maximum`, as Cranelift's `fmax`; NumPy's `maximum` leaves the order of zeros to the
    /// platform).
    Max,
    /// The smaller of `a` and `b`; NaN propagates and `-0.0 < +0.0` (IEEE 754-2019 `minimum`).
    Min,
    /// Remainder of `a / b` (ONNX `Mod`).
    Mod {
        /// `true`: C `fmod`, the sign of the dividend (truncated division). `false`: the sign
        /// of the divisor (floored division, Python's `%` and NumPy's `mod`, also for floats).
        /// Integer remainders by zero give 0, as the ONNX reference's `nan_to_num` does;
        /// float ones give NaN.
        fmod: bool,
    },
}

impl BinaryOp {
    /// The operator's name (`Add`, `Less`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
            BinaryOp::Mod { .. } => "Mod",
        }
    }

    fn is_comparison(&self) -> bool {
        use BinaryOp::*;
        matches!(self, Equal | Less | LessOrEqual | Greater | GreaterOrEqual)
    }

    /// Checks the input dtypes and gives the output dtype.
    fn out_dtype(&self, a: DType, b: DType) -> Result<DType, OpError> {
        use DType::*;
        let name = self.name();
        match self {
            BinaryOp::Pow => {
                if !matches!(a, F32 | F16 | I32 | I64) {
                    return Err(invalid(format!("Pow base must be f32, f16, i32 or i64, got {a}")));
                }
                if !is_numeric(b) {
                    return Err(invalid(format!("Pow exponent must be numeric, got {b}")));
                }
                return Ok(a);
            }
            _ if a != b => {
                return Err(invalid(format!("{name} needs inputs of one dtype, got {a} and {b}")));
            }
            BinaryOp::And | BinaryOp::Or if a != Bool => {
                return Err(invalid(format!("{name} needs bool inputs, got {a}")));
            }
            BinaryOp::And | BinaryOp::Or | BinaryOp::Equal => return Ok(Bool),
            _ if a == Bool => return Err(invalid(format!("{name} does not accept bool inputs"))),
            _ => {}
        }
        Ok(if self.is_comparison() { Bool } else { a })
    }

    fn holds<T: PartialOrd>(&self, x: T, y: T) -> bool {
        match self {
            BinaryOp::Equal => x == y,
            BinaryOp::Less => x < y,
            BinaryOp::LessOrEqual => x <= y,
            BinaryOp::Greater => x > y,
            BinaryOp::GreaterOrEqual => x >= y,
            _ => false,
        }
    }

    fn float_arith(&self, x: f32, y: f32) -> f32 {
        match self {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Max => float_max(x, y),
            BinaryOp::Min => -float_max(-x, -y),
            BinaryOp::Mod { fmod: true } => x % y,
            BinaryOp::Mod { fmod: false } => float_floor_mod(x, y),
            _ => x / y,
        }
    }

    fn int_arith(&self, x: i64, y: i64) -> Result<i64, OpError> {
        Ok(match self {
            BinaryOp::Add => x.wrapping_add(y),
            BinaryOp::Sub => x.wrapping_sub(y),
            BinaryOp::Mul => x.wrapping_mul(y),
            BinaryOp::Max => x.max(y),
            BinaryOp::Min => x.min(y),
            BinaryOp::Mod { .. } if y == 0 => 0,
            BinaryOp::Mod { fmod: true } => x.wrapping_rem(y),
            BinaryOp::Mod { fmod: false } => {
                let r = x.wrapping_rem(y);
                if r != 0 && (r < 0) != (y < 0) { r + y } else { r }
            }
            _ if y == 0 => return Err(invalid(format!("integer division by zero ({x} / 0)"))),
            _ => x.wrapping_div(y),
        })
    }

    fn compare(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        let r = if a.dtype().is_float() {
            zip2(&a.to_f64(), &b.to_f64(), |x, y| Ok(self.holds(x, y)))?
        } else {
            zip2(&to_i64_array(a)?, &to_i64_array(b)?, |x, y| Ok(self.holds(x, y)))?
        };
        Ok(Tensor::Bool(r))
    }

    fn logic(&self, a: &Tensor, b: &Tensor) -> Result<Tensor, OpError> {
        let and = *self == BinaryOp::And;
        match (a, b) {
            (Tensor::Bool(x), Tensor::Bool(y)) => {
                Ok(Tensor::Bool(zip2(x, y, |p, q| Ok(if and { p && q } else { p || q }))?))
            }
            _ => Err(invalid(format!("{} needs bool inputs", self.name()))),
        }
    }

    fn arith(&self, a: &Tensor, b: &Tensor, dt: DType) -> Result<Tensor, OpError> {
        if dt.is_float() {
            let r = zip2(&a.to_f32(), &b.to_f32(), |x, y| Ok(self.float_arith(x, y)))?;
            Ok(Tensor::from_f32(dt, r))
        } else {
            let r = zip2(&to_i64_array(a)?, &to_i64_array(b)?, |x, y| self.int_arith(x, y))?;
            Ok(cast_i64(&r, dt))
        }
    }
}

/// IEEE 754-2019 `maximum`: NaN if either is NaN, else the larger, with `-0.0 < +0.0`.
fn float_max(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else if x == y {
        if x.is_sign_positive() { x } else { y }
    } else if x > y {
        x
    } else {
        y
    }
}

/// The remainder with the divisor's sign, as NumPy's `mod` (`npy_divmod`): `fmod(x, y)`, plus
/// `y` when it is nonzero and its sign differs from `y`'s; a zero remainder takes `y`'s sign.
/// `y == 0` and an infinite `x` give NaN; a finite `x` with an infinite `y` gives `x`, or
/// `y` when their signs differ.
fn float_floor_mod(x: f32, y: f32) -> f32 {
    let r = x % y;
    if y == 0.0 {
        r
    } else if r == 0.0 {
        0f32.copysign(y)
    } else if (y < 0.0) != (r < 0.0) {
        r + y
    } else {
        r
    }
}

/// `base ^ exp` for a float or i32/i64 base and any numeric exponent, in the base's dtype.
/// Float math is done in f64; an integer base with a float exponent is truncated like a Cast.
fn pow(base: &Tensor, exp: &Tensor) -> Result<Tensor, OpError> {
    let dt = base.dtype();
    if dt.is_float() || exp.dtype().is_float() {
        let r = zip2(&base.to_f64(), &exp.to_f64(), |x, y| Ok(x.powf(y)))?;
        return Ok(cast_f64(&r, dt));
    }
    let r = zip2(&to_i64_array(base)?, &to_i64_array(exp)?, int_pow)?;
    Ok(cast_i64(&r, dt))
}

/// Integer power with wrapping. A negative exponent gives the truncated value of `1/b^-e`
/// (what C's `pow` cast back to int gives); `0` to a negative power is an error, like a
/// division by zero.
fn int_pow(b: i64, e: i64) -> Result<i64, OpError> {
    if e < 0 {
        return match b {
            0 => Err(invalid(format!("integer 0 raised to the negative power {e}"))),
            1 => Ok(1),
            -1 => Ok(if e % 2 == 0 { 1 } else { -1 }),
            _ => Ok(0),
        };
    }
    let (mut b, mut e, mut r) = (b, e as u64, 1i64);
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    Ok(r)
}

impl OpDef for BinaryOp {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 2, 2)?;
        let (a, b) = (req(ins, 0)?.ty, req(ins, 1)?.ty);
        let dt = self.out_dtype(a.dtype, b.dtype)?;
        Ok(vec![TypeInfo::new(dt, broadcast_shapes(&a.shape, &b.shape)?)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 2, 2)?;
        let (a, b) = (req(ins, 0)?, req(ins, 1)?);
        let dt = self.out_dtype(a.dtype(), b.dtype())?;
        let out = match self {
            BinaryOp::Pow => pow(a, b)?,
            BinaryOp::And | BinaryOp::Or => self.logic(a, b)?,
            _ if self.is_comparison() => self.compare(a, b)?,
            _ => self.arith(a, b, dt)?,
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------------
// Float classification.

/// Elementwise tests of a float input (f32 or f16) giving bool: IsNaN, IsInf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FloatClass {
    /// `x` is NaN.
    Nan,
    /// `x` is an infinity of a selected sign.
    Inf {
        /// Detect `+inf`.
        positive: bool,
        /// Detect `-inf`.
        negative: bool,
    },
}

impl FloatClass {
    /// The operator's name (`IsNaN`, `IsInf`).
    pub fn name(&self) -> &'static str {
        match self {
            FloatClass::Nan => "IsNaN",
            FloatClass::Inf { .. } => "IsInf",
        }
    }

    /// Whether `x` is in the class.
    pub fn holds(&self, x: f32) -> bool {
        match *self {
            FloatClass::Nan => x.is_nan(),
            FloatClass::Inf { positive, negative } => {
                (positive && x == f32::INFINITY) || (negative && x == f32::NEG_INFINITY)
            }
        }
    }

    /// Checks the input dtype; the output is bool of the input's shape.
    fn check(&self, dt: DType) -> Result<(), OpError> {
        if dt.is_float() { Ok(()) } else { Err(invalid(format!("{} needs a float input, got {dt}", self.name()))) }
    }
}

impl OpDef for FloatClass {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        let t = req(ins, 0)?.ty;
        self.check(t.dtype)?;
        Ok(vec![TypeInfo::new(DType::Bool, t.shape.clone())])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        let x = req(ins, 0)?;
        self.check(x.dtype())?;
        Ok(vec![Tensor::Bool(x.to_f32().mapv(|v| self.holds(v)))])
    }
}

// ---------------------------------------------------------------------------------------------
// Clip.

/// Clamp: inputs `x`, optional scalar `min`, optional scalar `max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Clip {}

/// Checks Clip's input dtype, and each present bound's dtype and (when known) that it has
/// exactly one element.
fn check_clip(x: DType, bounds: [Option<(DType, Shape)>; 2]) -> Result<(), OpError> {
    if !is_numeric(x) {
        return Err(invalid("Clip does not accept bool input"));
    }
    for (b, which) in bounds.into_iter().zip(["min", "max"]) {
        let Some((dt, shape)) = b else { continue };
        if dt != x {
            return Err(invalid(format!("Clip {which} has dtype {dt} but the input has {x}")));
        }
        if matches!(shape.numel(), Some(n) if n != 1) {
            return Err(invalid(format!("Clip {which} must be a scalar (one element), got shape {shape}")));
        }
    }
    Ok(())
}

impl OpDef for Clip {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 3)?;
        let x = req(ins, 0)?.ty;
        let bound = |i| opt(ins, i).map(|b: InferIn<'_>| (b.ty.dtype, b.ty.shape.clone()));
        check_clip(x.dtype, [bound(1), bound(2)])?;
        Ok(vec![x.clone()])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 3)?;
        let x = req(ins, 0)?;
        let (lo, hi) = (opt(ins, 1), opt(ins, 2));
        let bound = |b: Option<&Tensor>| b.map(|t| (t.dtype(), t.static_shape()));
        check_clip(x.dtype(), [bound(lo), bound(hi)])?;
        let out = if x.dtype().is_float() {
            let first = |t: Option<&Tensor>, d: f64| t.and_then(|t| t.to_f64().first().copied()).unwrap_or(d);
            let (lo, hi) = (first(lo, f64::NEG_INFINITY), first(hi, f64::INFINITY));
            cast_f64(&x.to_f64().mapv(|v| clamp(v, lo, hi)), x.dtype())
        } else {
            let first = |t: Option<&Tensor>, d: i64| -> Result<i64, OpError> {
                Ok(match t {
                    Some(t) => to_i64_array(t)?.first().copied().unwrap_or(d),
                    None => d,
                })
            };
            let (lo, hi) = (first(lo, i64::MIN)?, first(hi, i64::MAX)?);
            cast_i64(&to_i64_array(x)?.mapv(|v| clamp(v, lo, hi)), x.dtype())
        };
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------------
// Where.

/// Inputs `cond` (bool), `x`, `y`; all three broadcast.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Where {}

/// Matches two tensors of the same variant, binding their arrays; `$other` otherwise.
macro_rules! same_variant {
    ($a:expr, $b:expr, |$x:ident, $y:ident| $body:expr, $other:expr) => {
        match ($a, $b) {
            (Tensor::F32($x), Tensor::F32($y)) => $body,
            (Tensor::F16($x), Tensor::F16($y)) => $body,
            (Tensor::I8($x), Tensor::I8($y)) => $body,
            (Tensor::U8($x), Tensor::U8($y)) => $body,
            (Tensor::I32($x), Tensor::I32($y)) => $body,
            (Tensor::I64($x), Tensor::I64($y)) => $body,
            (Tensor::Bool($x), Tensor::Bool($y)) => $body,
            _ => $other,
        }
    };
}

/// `c ? x : y` elementwise with three-way broadcasting.
fn select<T: Element>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<Tensor, OpError> {
    let dims = broadcast_dims(&broadcast_dims(c.shape(), x.shape())?, y.shape())?;
    check_alloc(&dims, size_of::<T>())?;
    let (vc, vx, vy) = (view_as(c, &dims)?, view_as(x, &dims)?, view_as(y, &dims)?);
    let data = vc.iter().zip(vx.iter().zip(vy.iter())).map(|(&c, (&a, &b))| if c { a } else { b });
    Ok(T::wrap(array(&dims, data.collect())?))
}

impl OpDef for Where {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 3, 3)?;
        let (c, x, y) = (req(ins, 0)?.ty, req(ins, 1)?.ty, req(ins, 2)?.ty);
        if c.dtype != DType::Bool {
            return Err(invalid(format!("Where condition must be bool, got {}", c.dtype)));
        }
        if x.dtype != y.dtype {
            return Err(invalid(format!("Where inputs have dtypes {} and {}", x.dtype, y.dtype)));
        }
        Ok(vec![TypeInfo::new(x.dtype, broadcast_all(&[&c.shape, &x.shape, &y.shape])?)])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 3, 3)?;
        let (c, x, y) = (req(ins, 0)?, req(ins, 1)?, req(ins, 2)?);
        let Tensor::Bool(c) = c else {
            return Err(invalid(format!("Where condition must be bool, got {}", c.dtype())));
        };
        let out = same_variant!(x, y, |a, b| select(c, a, b)?, {
            return Err(invalid(format!("Where inputs have dtypes {} and {}", x.dtype(), y.dtype())));
        });
        Ok(vec![out])
    }
}

// ---------------------------------------------------------------------------------------------
// Cast.

/// Converts to another dtype with ONNX Cast semantics.
///
/// Float → integer truncates toward zero as NumPy's `astype` does; NaN and out-of-range
/// values follow NumPy on x86 (`i32::MIN`/`i64::MIN` for i32/i64, the low byte of the i32
/// conversion for i8/u8 — so NaN gives 0). Float → bool is `x != 0` (NaN is true); bool →
/// number is 0/1; integer → integer wraps; f32 → f16 rounds to nearest even.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cast {
    /// Target dtype.
    pub to: crate::DType,
    /// Saturate on out-of-range float → 8-bit float casts (unused for the IR's dtypes but kept).
    pub saturate: bool,
}

impl OpDef for Cast {
    fn infer(&self, ins: &[Option<InferIn<'_>>]) -> Result<Vec<TypeInfo>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![TypeInfo::new(self.to, req(ins, 0)?.ty.shape.clone())])
    }

    fn eval(&self, ins: &[Option<&Tensor>]) -> Result<Vec<Tensor>, OpError> {
        arity(ins, 1, 1)?;
        Ok(vec![cast(req(ins, 0)?, self.to)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dim;
    use crate::ops::test_util::unravel;
    use crate::ops::test_util::*;
    use proptest::prelude::*;

    fn run(op: &impl OpDef, ins: &[&Tensor]) -> Result<Tensor, OpError> {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|&t| Some(t)).collect();
        let mut out = op.eval(&ins)?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    fn infer(op: &impl OpDef, tys: &[TypeInfo]) -> Result<TypeInfo, OpError> {
        let ins: Vec<_> = tys.iter().map(|ty| Some(InferIn { ty, value: None, sym: None })).collect();
        Ok(op.infer(&ins)?.remove(0))
    }

    fn ty(dt: DType, s: &str) -> TypeInfo {
        TypeInfo::new(dt, Shape::parse(s).unwrap())
    }

    fn close(got: &[f32], want: &[f32], rel: f32) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= rel * w.abs().max(1e-6), "{got:?} vs {want:?}");
        }
    }

    const XS: [f32; 6] = [-3.0, -0.5, 0.0, 0.5, 1.0, 2.5];

    #[test]
    fn float_unary_values_match_numpy() {
        let x = t(&[6], XS.to_vec());
        let cases: [(UnaryOp, [f32; 6]); 8] = [
            (UnaryOp::Silu, [-0.14227762, -0.18877034, 0.0, 0.31122967, 0.7310586, 2.3103545]),
            (UnaryOp::Sin, [-0.14112, -0.47942555, 0.0, 0.47942555, 0.841471, 0.5984722]),
            (UnaryOp::Cos, [-0.9899925, 0.87758255, 1.0, 0.87758255, 0.5403023, -0.8011436]),
            (UnaryOp::Sigmoid, [0.047425874, 0.37754068, 0.5, 0.62245935, 0.7310586, 0.9241418]),
            (UnaryOp::Tanh, [-0.9950548, -0.4621172, 0.0, 0.4621172, 0.7615942, 0.9866143]),
            (UnaryOp::Gelu { tanh_approx: false }, [-0.004049694, -0.15426877, 0.0, 0.34573123, 0.8413448, 2.4844759]),
            (UnaryOp::Gelu { tanh_approx: true }, [-0.003637392, -0.154286, 0.0, 0.345714, 0.841192, 2.4849157]),
            (UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 }, [0.0, 0.4, 0.5, 0.6, 0.7, 1.0]),
        ];
        for (op, want) in cases {
            close(&f32s(&run(&op, &[&x]).unwrap()), &want, 1e-6);
        }
        let y = run(&UnaryOp::Sqrt, &[&t(&[3], vec![4.0f32, 2.0, -1.0])]).unwrap();
        let y = f32s(&y);
        assert_eq!(&y[..2], &[2.0, std::f32::consts::SQRT_2]);
        assert!(y[2].is_nan());
        let y = run(&UnaryOp::Log, &[&t(&[2], vec![0.0f32, 1.0])]).unwrap();
        assert_eq!(f32s(&y), vec![f32::NEG_INFINITY, 0.0]);
        let y = run(&UnaryOp::Reciprocal, &[&t(&[2], vec![0.0f32, 4.0])]).unwrap();
        assert_eq!(f32s(&y), vec![f32::INFINITY, 0.25]);
        let y = run(&UnaryOp::Relu, &[&t(&[3], vec![-1.0f32, f32::NAN, 2.0])]).unwrap();
        let y = f32s(&y);
        assert!(y[0] == 0.0 && y[1].is_nan() && y[2] == 2.0);
    }

    #[test]
    fn erf_known_values() {
        let known = [
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (-2.0, -0.9953222650189527),
            (3.0, 0.9999779095030014),
            (1e-3, 0.0011283787909692365),
            (0.1, 0.1124629160182849),
            (2.4999, 0.9995928300996666),
            (2.5, 0.999593047982555),
            (4.0, 0.9999999845827421),
            (6.0, 1.0),
        ];
        for (x, want) in known {
            let got = erf(x);
            assert!(((got - want) / want).abs() < 1e-14, "erf({x}) = {got}, want {want}");
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f64::INFINITY), 1.0);
        assert_eq!(erf(f64::NEG_INFINITY), -1.0);
        assert!(erf(f64::NAN).is_nan());
        let y = run(&UnaryOp::Erf, &[&t(&[2], vec![0.5f32, -2.0])]).unwrap();
        assert_eq!(f32s(&y), vec![0.5204998778130465f64 as f32, -0.9953222650189527f64 as f32]);
    }

    #[test]
    fn integer_unary_wraps_like_numpy() {
        let x = t(&[4], vec![-128i8, -3, 0, 5]);
        assert_eq!(run(&UnaryOp::Neg, &[&x]).unwrap(), t(&[4], vec![-128i8, 3, 0, -5]));
        assert_eq!(run(&UnaryOp::Abs, &[&x]).unwrap(), t(&[4], vec![-128i8, 3, 0, 5]));
        assert_eq!(run(&UnaryOp::Relu, &[&x]).unwrap(), t(&[4], vec![0i8, 0, 0, 5]));
        let u = t(&[2], vec![0u8, 255]);
        assert_eq!(run(&UnaryOp::Abs, &[&u]).unwrap(), u);
        let l = t(&[2], vec![i64::MIN, -7]);
        assert_eq!(run(&UnaryOp::Abs, &[&l]).unwrap(), t(&[2], vec![i64::MIN, 7]));
        let b = t(&[2], vec![true, false]);
        assert_eq!(run(&UnaryOp::Not, &[&b]).unwrap(), t(&[2], vec![false, true]));
        assert_eq!(run(&UnaryOp::Identity, &[&b]).unwrap(), b);
    }

    #[test]
    fn unary_dtype_errors() {
        let u = t(&[1], vec![1u8]);
        assert!(matches!(run(&UnaryOp::Neg, &[&u]), Err(OpError::Invalid(m)) if m.contains("Neg")));
        assert!(run(&UnaryOp::Relu, &[&u]).is_err());
        assert!(run(&UnaryOp::Sqrt, &[&t(&[1], vec![4i32])]).is_err());
        assert!(run(&UnaryOp::Not, &[&t(&[1], vec![1.0f32])]).is_err());
        assert!(run(&UnaryOp::Abs, &[&t(&[1], vec![true])]).is_err());
        assert!(infer(&UnaryOp::Exp, &[ty(DType::I64, "[2]")]).is_err());
        assert!(UnaryOp::Exp.eval(&[]).is_err());
        assert!(UnaryOp::Exp.eval(&[None]).is_err());
        let x = t(&[1], vec![1.0f32]);
        assert!(UnaryOp::Exp.eval(&[Some(&x), Some(&x)]).is_err());
    }

    #[test]
    fn f16_unary_rounds_back() {
        let x = t(&[3], vec![f16::from_f32(1.0), f16::from_f32(-1.0), f16::from_f32(12.0)]);
        let y = run(&UnaryOp::Exp, &[&x]).unwrap();
        // numpy: np.exp(np.float16([1, -1, 12])) = [2.719, 0.3679, inf]
        let want = [f16::from_f32(2.719), f16::from_f32(0.3679), f16::INFINITY];
        assert_eq!(y, t(&[3], want.to_vec()));
        assert_eq!(infer(&UnaryOp::Exp, &[ty(DType::F16, "[n, 3]")]).unwrap(), ty(DType::F16, "[n, 3]"));
    }

    #[test]
    fn binary_arithmetic() {
        let a = t(&[2, 1], vec![1.0f32, 2.0]);
        let b = t(&[3], vec![10.0f32, 20.0, 30.0]);
        let y = run(&BinaryOp::Add, &[&a, &b]).unwrap();
        assert_eq!(y, t(&[2, 3], vec![11.0f32, 21.0, 31.0, 12.0, 22.0, 32.0]));
        let y = run(&BinaryOp::Sub, &[&a, &b]).unwrap();
        assert_eq!(y, t(&[2, 3], vec![-9.0f32, -19.0, -29.0, -8.0, -18.0, -28.0]));
        let i8s = t(&[2], vec![100i8, -100]);
        assert_eq!(run(&BinaryOp::Add, &[&i8s, &i8s]).unwrap(), t(&[2], vec![-56i8, 56]));
        let (p, q) = (t(&[1], vec![3u8]), t(&[1], vec![5u8]));
        assert_eq!(run(&BinaryOp::Sub, &[&p, &q]).unwrap(), t(&[1], vec![254u8]));
        let big = t(&[1], vec![i64::MAX]);
        assert_eq!(run(&BinaryOp::Mul, &[&big, &t(&[1], vec![2i64])]).unwrap(), t(&[1], vec![-2i64]));
        let s = t(&[], vec![2.0f32]);
        assert_eq!(run(&BinaryOp::Mul, &[&s, &s]).unwrap(), t(&[], vec![4.0f32]));
    }

    #[test]
    fn division() {
        let x = t(&[4], vec![-3i32, 3, -3, 3]);
        let y = t(&[4], vec![2i32, 2, -2, -2]);
        assert_eq!(run(&BinaryOp::Div, &[&x, &y]).unwrap(), t(&[4], vec![-1i32, 1, 1, -1]));
        let m = t(&[1], vec![-128i8]);
        assert_eq!(run(&BinaryOp::Div, &[&m, &t(&[1], vec![-1i8])]).unwrap(), m);
        let zero = t(&[1], vec![0i32]);
        assert!(
            matches!(run(&BinaryOp::Div, &[&x, &zero]), Err(OpError::Invalid(m)) if m.contains("division by zero"))
        );
        // No element is divided when the broadcast output is empty.
        let empty = t(&[0, 1], Vec::<i32>::new());
        assert_eq!(run(&BinaryOp::Div, &[&empty, &zero]).unwrap().shape(), &[0, 1]);
        let f = t(&[2], vec![1.0f32, -1.0]);
        assert_eq!(
            run(&BinaryOp::Div, &[&f, &t(&[1], vec![0.0f32])]).unwrap(),
            t(&[2], vec![f32::INFINITY, f32::NEG_INFINITY])
        );
        // numpy: np.float16([0.1, 0.2, 1000]) / np.float16([3, 3, 0.001])
        let h = |v: &[f32]| t(&[v.len()], v.iter().map(|&x| f16::from_f32(x)).collect());
        let y = run(&BinaryOp::Div, &[&h(&[0.1, 0.2, 1000.0]), &h(&[3.0, 3.0, 0.001])]).unwrap();
        assert_eq!(y, h(&[273.0 / 8192.0, 273.0 / 4096.0, f32::INFINITY]));
    }

    #[test]
    fn comparisons_and_logic() {
        let a = t(&[3], vec![1.0f32, f32::NAN, 3.0]);
        let b = t(&[1], vec![1.0f32]);
        let want = |v: [bool; 3]| t(&[3], v.to_vec());
        assert_eq!(run(&BinaryOp::Equal, &[&a, &b]).unwrap(), want([true, false, false]));
        assert_eq!(run(&BinaryOp::Less, &[&a, &b]).unwrap(), want([false, false, false]));
        assert_eq!(run(&BinaryOp::LessOrEqual, &[&a, &b]).unwrap(), want([true, false, false]));
        assert_eq!(run(&BinaryOp::Greater, &[&a, &b]).unwrap(), want([false, false, true]));
        assert_eq!(run(&BinaryOp::GreaterOrEqual, &[&a, &b]).unwrap(), want([true, false, true]));
        let u = t(&[2], vec![200u8, 3]);
        assert_eq!(run(&BinaryOp::Greater, &[&u, &t(&[], vec![100u8])]).unwrap(), t(&[2], vec![true, false]));
        let p = t(&[4], vec![true, true, false, false]);
        let q = t(&[4], vec![true, false, true, false]);
        assert_eq!(run(&BinaryOp::Equal, &[&p, &q]).unwrap(), t(&[4], vec![true, false, false, true]));
        assert_eq!(run(&BinaryOp::And, &[&p, &q]).unwrap(), t(&[4], vec![true, false, false, false]));
        assert_eq!(run(&BinaryOp::Or, &[&p, &q]).unwrap(), t(&[4], vec![true, true, true, false]));
        assert!(run(&BinaryOp::Less, &[&p, &q]).is_err());
        assert!(run(&BinaryOp::Add, &[&p, &q]).is_err());
        assert!(run(&BinaryOp::And, &[&u, &u]).is_err());
    }

    #[test]
    fn binary_dtype_and_shape_errors() {
        let f = t(&[2], vec![1.0f32, 2.0]);
        let i = t(&[2], vec![1i32, 2]);
        assert!(matches!(run(&BinaryOp::Add, &[&f, &i]), Err(OpError::Invalid(m)) if m.contains("f32 and i32")));
        assert!(run(&BinaryOp::Add, &[&f, &t(&[3], vec![1.0f32; 3])]).is_err());
        assert!(BinaryOp::Add.eval(&[Some(&f)]).is_err());
        assert!(BinaryOp::Add.eval(&[Some(&f), None]).is_err());
        assert!(infer(&BinaryOp::Mul, &[ty(DType::F32, "[2, 3]"), ty(DType::F32, "[4]")]).is_err());
        assert!(infer(&BinaryOp::Less, &[ty(DType::F32, "[2]"), ty(DType::F16, "[2]")]).is_err());
    }

    #[test]
    fn binary_inference() {
        let y = infer(&BinaryOp::Add, &[ty(DType::F32, "[b, 1, 4]"), ty(DType::F32, "[s, 1]")]).unwrap();
        assert_eq!(y, ty(DType::F32, "[b, s, 4]"));
        let y = infer(&BinaryOp::Less, &[ty(DType::I64, "[seq]"), ty(DType::I64, "[]")]).unwrap();
        assert_eq!(y, ty(DType::Bool, "[seq]"));
        let y = infer(&BinaryOp::Pow, &[ty(DType::I32, "[3]"), ty(DType::F32, "[1]")]).unwrap();
        assert_eq!(y, ty(DType::I32, "[3]"));
        let y = infer(&BinaryOp::Sub, &[ty(DType::F32, "[a]"), ty(DType::F32, "[b]")]).unwrap();
        assert!(y.shape.0[0].is_unknown());
        assert_eq!(y.shape.0.len(), 1);
        assert_ne!(y.shape.0[0], Dim::Known(1));
    }

    #[test]
    fn pow_dtypes() {
        let f = t(&[3], vec![1.0f32, 2.0, 3.0]);
        let l = t(&[3], vec![4i64, 5, 6]);
        let want_f = t(&[3], vec![1.0f32, 32.0, 729.0]);
        assert_eq!(run(&BinaryOp::Pow, &[&f, &l]).unwrap(), want_f);
        assert_eq!(run(&BinaryOp::Pow, &[&f, &t(&[3], vec![4u8, 5, 6])]).unwrap(), want_f);
        assert_eq!(run(&BinaryOp::Pow, &[&f, &t(&[3], vec![4.0f32, 5.0, 6.0])]).unwrap(), want_f);
        let il = t(&[3], vec![1i64, 2, 3]);
        assert_eq!(
            run(&BinaryOp::Pow, &[&il, &t(&[3], vec![4.0f32, 5.0, 6.0])]).unwrap(),
            t(&[3], vec![1i64, 32, 729])
        );
        assert_eq!(run(&BinaryOp::Pow, &[&il, &l]).unwrap(), t(&[3], vec![1i64, 32, 729]));
        // numpy: np.power(np.int32([2, -3, 5]), np.int32([31, 3, 0])) wraps.
        let b = t(&[3], vec![2i32, -3, 5]);
        assert_eq!(run(&BinaryOp::Pow, &[&b, &t(&[3], vec![31i32, 3, 0])]).unwrap(), t(&[3], vec![i32::MIN, -27, 1]));
        // numpy: np.power(np.int64([2, 3]), np.float32([0.5, -1])).astype(np.int64)
        let y = run(&BinaryOp::Pow, &[&t(&[2], vec![2i64, 3]), &t(&[2], vec![0.5f32, -1.0])]).unwrap();
        assert_eq!(y, t(&[2], vec![1i64, 0]));
        let neg = t(&[4], vec![-1i64, -2, -3, -1]);
        let y = run(&BinaryOp::Pow, &[&t(&[4], vec![1i64, 2, -1, -1]), &neg]).unwrap();
        assert_eq!(y, t(&[4], vec![1i64, 0, -1, -1]));
        assert!(run(&BinaryOp::Pow, &[&t(&[1], vec![0i64]), &t(&[1], vec![-1i64])]).is_err());
        assert!(run(&BinaryOp::Pow, &[&t(&[1], vec![2u8]), &t(&[1], vec![2u8])]).is_err());
        assert!(run(&BinaryOp::Pow, &[&f, &t(&[1], vec![true])]).is_err());
        let h = t(&[1], vec![f16::from_f32(3.0)]);
        assert_eq!(run(&BinaryOp::Pow, &[&h, &t(&[1], vec![2.0f32])]).unwrap(), t(&[1], vec![f16::from_f32(9.0)]));
    }

    #[test]
    fn max_min_propagate_nan_and_order_zeros() {
        let a = t(&[5], vec![f32::NAN, 1.0, -0.0, 0.0, f32::NEG_INFINITY]);
        let b = t(&[5], vec![2.0f32, f32::NAN, 0.0, -0.0, -3.0]);
        let mx = f32s(&run(&BinaryOp::Max, &[&a, &b]).unwrap());
        let mn = f32s(&run(&BinaryOp::Min, &[&a, &b]).unwrap());
        assert!(mx[0].is_nan() && mx[1].is_nan() && mn[0].is_nan() && mn[1].is_nan());
        assert!(mx[2].to_bits() == 0 && mx[3].to_bits() == 0);
        assert!(mn[2].to_bits() == (-0.0f32).to_bits() && mn[3].to_bits() == (-0.0f32).to_bits());
        assert_eq!((mx[4], mn[4]), (-3.0, f32::NEG_INFINITY));
        let i = t(&[2, 1], vec![i64::MIN, 5]);
        let j = t(&[3], vec![i64::MAX, -1, 5]);
        assert_eq!(run(&BinaryOp::Max, &[&i, &j]).unwrap(), t(&[2, 3], vec![i64::MAX, -1, 5, i64::MAX, 5, 5]));
        assert_eq!(
            run(&BinaryOp::Min, &[&i, &j]).unwrap(),
            t(&[2, 3], vec![i64::MIN; 3].into_iter().chain([5, -1, 5]).collect())
        );
        let u = t(&[2], vec![200u8, 3]);
        assert_eq!(run(&BinaryOp::Max, &[&u, &t(&[], vec![100u8])]).unwrap(), t(&[2], vec![200u8, 100]));
        assert!(run(&BinaryOp::Max, &[&t(&[1], vec![true]), &t(&[1], vec![false])]).is_err());
        assert!(infer(&BinaryOp::Min, &[ty(DType::I8, "[2]"), ty(DType::U8, "[2]")]).is_err());
        assert_eq!(
            infer(&BinaryOp::Max, &[ty(DType::F16, "[n, 1]"), ty(DType::F16, "[3]")]).unwrap(),
            ty(DType::F16, "[n, 3]")
        );
    }

    #[test]
    fn integer_mod_both_signs_and_zero_divisors() {
        let x = t(&[8], vec![-4i32, 7, 5, 4, -7, 8, 3, i32::MIN]);
        let y = t(&[8], vec![2i32, -3, 8, -2, 3, 5, 0, -1]);
        // numpy: np.mod and np.fmod; by zero 0 (the ONNX reference's nan_to_num).
        let floor = run(&BinaryOp::Mod { fmod: false }, &[&x, &y]).unwrap();
        assert_eq!(floor, t(&[8], vec![0i32, -2, 5, 0, 2, 3, 0, 0]));
        let trunc = run(&BinaryOp::Mod { fmod: true }, &[&x, &y]).unwrap();
        assert_eq!(trunc, t(&[8], vec![0i32, 1, 5, 0, -1, 3, 0, 0]));
        let u = run(&BinaryOp::Mod { fmod: false }, &[&t(&[3], vec![250u8, 7, 9]), &t(&[], vec![7u8])]).unwrap();
        assert_eq!(u, t(&[3], vec![5u8, 0, 2]));
        let m = run(&BinaryOp::Mod { fmod: false }, &[&t(&[1], vec![i8::MIN]), &t(&[1], vec![i8::MAX])]).unwrap();
        assert_eq!(m, t(&[1], vec![126i8]));
    }

    #[test]
    fn float_mod_matches_numpy_edge_cases() {
        let inf = f32::INFINITY;
        let x = t(&[14], vec![0.0f32, -0.0, 0.0, -0.0, -3.0, 3.0, -1.0, 1.0, inf, -inf, 1.0, 1.0, -4.3, 7.2]);
        let y = t(&[14], vec![-2.0f32, 2.0, 2.0, -2.0, inf, inf, -inf, -inf, 2.0, 2.0, 0.0, -0.0, 2.1, -3.4]);
        // The ONNX node test test_mod_float_edge_cases_fmod_0_float32 (np.mod), and mixed signs.
        let got = f32s(&run(&BinaryOp::Mod { fmod: false }, &[&x, &y]).unwrap());
        let want = [-0.0f32, 0.0, 0.0, -0.0, inf, 3.0, -1.0, -inf];
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.to_bits(), w.to_bits(), "{got:?}");
        }
        assert!(got[8..12].iter().all(|v| v.is_nan()));
        assert_eq!(&got[12..], &[1.9999995, -3.0000005]);
        let got = f32s(&run(&BinaryOp::Mod { fmod: true }, &[&x, &y]).unwrap());
        assert_eq!(got[4..8].to_vec(), vec![-3.0, 3.0, -1.0, 1.0]);
        assert!(got[8..12].iter().all(|v| v.is_nan()));
        assert_eq!(&got[12..], &[-0.10000038, 0.39999962]);
        assert_eq!(got[1].to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn float_class_gives_bool() {
        let x = t(&[5], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e38]);
        let b = |v: [bool; 5]| t(&[5], v.to_vec());
        assert_eq!(run(&FloatClass::Nan, &[&x]).unwrap(), b([true, false, false, false, false]));
        let inf = |positive, negative| run(&FloatClass::Inf { positive, negative }, &[&x]).unwrap();
        assert_eq!(inf(true, true), b([false, true, true, false, false]));
        assert_eq!(inf(true, false), b([false, true, false, false, false]));
        assert_eq!(inf(false, true), b([false, false, true, false, false]));
        assert_eq!(inf(false, false), b([false; 5]));
        let h = t(&[2], vec![f16::NAN, f16::INFINITY]);
        assert_eq!(run(&FloatClass::Nan, &[&h]).unwrap(), t(&[2], vec![true, false]));
        assert_eq!(infer(&FloatClass::Nan, &[ty(DType::F16, "[n, 2]")]).unwrap(), ty(DType::Bool, "[n, 2]"));
        assert!(
            matches!(run(&FloatClass::Nan, &[&t(&[1], vec![1i32])]), Err(OpError::Invalid(m)) if m.contains("IsNaN"))
        );
        assert!(infer(&FloatClass::Nan, &[ty(DType::I64, "[2]")]).is_err());
    }

    #[test]
    fn huge_broadcast_is_refused_before_allocating() {
        let a = t(&[1 << 18, 1], vec![0u8; 1 << 18]);
        let b = t(&[1, 1 << 18], vec![0u8; 1 << 18]);
        assert!(run(&BinaryOp::Add, &[&a, &b]).is_err());
        let c = Tensor::Bool(ArrayD::from_elem(IxDyn(&[1, 1, 1 << 18]), true));
        assert!(run(&Where {}, &[&c, &a, &b]).is_err());
    }

    #[test]
    fn clip() {
        let x = t(&[3], vec![-2.0f32, 0.0, 2.0]);
        let (lo, hi) = (t(&[], vec![-1.0f32]), t(&[], vec![1.0f32]));
        assert_eq!(run(&Clip {}, &[&x, &lo, &hi]).unwrap(), t(&[3], vec![-1.0f32, 0.0, 1.0]));
        // min > max: everything becomes max.
        let y =
            run(&Clip {}, &[&t(&[3], vec![-2.0f32, 0.0, 6.0]), &t(&[], vec![2.0f32]), &t(&[], vec![1.0f32])]).unwrap();
        assert_eq!(y, t(&[3], vec![1.0f32; 3]));
        // Only max, via an absent min.
        let y = Clip {}.eval(&[Some(&x), None, Some(&hi)]).unwrap().remove(0);
        assert_eq!(y, t(&[3], vec![-2.0f32, 0.0, 1.0]));
        assert_eq!(run(&Clip {}, &[&x]).unwrap(), x);
        let n = run(&Clip {}, &[&t(&[1], vec![f32::NAN]), &lo, &hi]).unwrap();
        assert!(f32s(&n)[0].is_nan());
        let i = t(&[4], vec![-128i8, -1, 0, 127]);
        assert_eq!(run(&Clip {}, &[&i, &t(&[], vec![0i8])]).unwrap(), t(&[4], vec![0i8, 0, 0, 127]));
        let h = t(&[2], vec![f16::from_f32(-3.5), f16::from_f32(0.25)]);
        let y = run(&Clip {}, &[&h, &t(&[1], vec![f16::from_f32(-1.0)])]).unwrap();
        assert_eq!(y, t(&[2], vec![f16::from_f32(-1.0), f16::from_f32(0.25)]));
    }

    #[test]
    fn clip_errors() {
        let x = t(&[3], vec![-2.0f32, 0.0, 2.0]);
        assert!(run(&Clip {}, &[&x, &t(&[2], vec![0.0f32, 1.0])]).is_err());
        assert!(run(&Clip {}, &[&x, &t(&[], vec![0i64])]).is_err());
        assert!(run(&Clip {}, &[&t(&[1], vec![true])]).is_err());
        assert!(infer(&Clip {}, &[ty(DType::F32, "[n]"), ty(DType::F32, "[3]")]).is_err());
        assert_eq!(infer(&Clip {}, &[ty(DType::F32, "[n]"), ty(DType::F32, "[m]")]).unwrap(), ty(DType::F32, "[n]"));
    }

    #[test]
    fn where_broadcasts_three_ways() {
        let c = t(&[2, 2], vec![true, false, true, true]);
        let x = t(&[2, 2], vec![1i64, 2, 3, 4]);
        let y = t(&[2, 2], vec![9i64, 8, 7, 6]);
        assert_eq!(run(&Where {}, &[&c, &x, &y]).unwrap(), t(&[2, 2], vec![1i64, 8, 3, 4]));
        let c = t(&[2, 1, 1], vec![true, false]);
        let x = t(&[3], vec![1.0f32, 2.0, 3.0]);
        let y = t(&[2, 1], vec![-1.0f32, -2.0]);
        let out = run(&Where {}, &[&c, &x, &y]).unwrap();
        let want = [1.0f32, 2.0, 3.0, 1.0, 2.0, 3.0, -1.0, -1.0, -1.0, -2.0, -2.0, -2.0];
        assert_eq!(out, t(&[2, 2, 3], want.to_vec()));
        let tys = [ty(DType::Bool, "[2, 1, 1]"), ty(DType::F32, "[3]"), ty(DType::F32, "[n, 1]")];
        assert_eq!(infer(&Where {}, &tys).unwrap(), ty(DType::F32, "[2, n, 3]"));
        assert!(run(&Where {}, &[&x, &x, &y]).is_err());
        assert!(run(&Where {}, &[&c, &x, &t(&[1], vec![1i32])]).is_err());
        assert!(run(&Where {}, &[&c, &x, &t(&[2], vec![1.0f32; 2])]).is_err());
    }

    #[test]
    fn cast_float_to_int_matches_numpy_on_x86() {
        let v = vec![
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            3.7,
            -3.7,
            300.5,
            -300.5,
            1e10,
            -1e10,
            255.9,
            128.0,
            -129.0,
            3e9,
        ];
        let x = t(&[13], v.clone());
        let cast = |to| run(&Cast { to, saturate: true }, &[&x]).unwrap();
        let i8s = vec![0i8, 0, 0, 3, -3, 44, -44, 0, 0, -1, -128, 127, 0];
        assert_eq!(cast(DType::I8), t(&[13], i8s));
        let u8s = vec![0u8, 0, 0, 3, 253, 44, 212, 0, 0, 255, 128, 127, 0];
        assert_eq!(cast(DType::U8), t(&[13], u8s));
        let m = i32::MIN;
        let i32s = vec![m, m, m, 3, -3, 300, -300, m, m, 255, 128, -129, m];
        assert_eq!(cast(DType::I32), t(&[13], i32s));
        let m = i64::MIN;
        let i64s = vec![m, m, m, 3, -3, 300, -300, 10_000_000_000, -10_000_000_000, 255, 128, -129, 3_000_000_000];
        assert_eq!(cast(DType::I64), t(&[13], i64s));
        assert_eq!(cast(DType::Bool), t(&[13], vec![true; 13]));
        let z = run(&Cast { to: DType::Bool, saturate: true }, &[&t(&[2], vec![0.0f32, -0.0])]).unwrap();
        assert_eq!(z, t(&[2], vec![false, false]));
        let h = t(&[2], vec![f16::NAN, f16::from_f32(-2.5)]);
        let y = run(&Cast { to: DType::I64, saturate: true }, &[&h]).unwrap();
        assert_eq!(y, t(&[2], vec![i64::MIN, -2]));
    }

    #[test]
    fn cast_other_pairs() {
        let c = |x: &Tensor, to| run(&Cast { to, saturate: true }, &[x]).unwrap();
        let l = t(&[6], vec![-1i64, 200, -129, 70000, (1 << 40) + 5, -(1 << 40) - 3]);
        assert_eq!(c(&l, DType::I8), t(&[6], vec![-1i8, -56, 127, 112, 5, -3]));
        assert_eq!(c(&l, DType::U8), t(&[6], vec![255u8, 200, 127, 112, 5, 253]));
        assert_eq!(c(&l, DType::I32), t(&[6], vec![-1i32, 200, -129, 70000, 5, -3]));
        assert_eq!(c(&l, DType::Bool), t(&[6], vec![true; 6]));
        let big = t(&[2], vec![(1i64 << 24) + 1, i64::MAX]);
        assert_eq!(c(&big, DType::F32), t(&[2], vec![16777216.0f32, 9.223372e18]));
        let h = t(&[3], vec![70000i64, 65520, 65519]);
        assert_eq!(c(&h, DType::F16), t(&[3], vec![f16::INFINITY, f16::INFINITY, f16::from_f32(65504.0)]));
        let f = t(&[5], vec![70000.0f32, 65520.0, 65519.0, 1e-8, 0.1]);
        let want = [f16::INFINITY, f16::INFINITY, f16::from_f32(65504.0), f16::ZERO, f16::from_f32(1638.0 / 16384.0)];
        assert_eq!(c(&f, DType::F16), t(&[5], want.to_vec()));
        let b = t(&[2], vec![true, false]);
        assert_eq!(c(&b, DType::F32), t(&[2], vec![1.0f32, 0.0]));
        assert_eq!(c(&b, DType::I64), t(&[2], vec![1i64, 0]));
        assert_eq!(c(&t(&[2], vec![0u8, 7]), DType::Bool), t(&[2], vec![false, true]));
        assert_eq!(c(&t(&[1], vec![f16::from_f32(0.5)]), DType::F32), t(&[1], vec![0.5f32]));
        let e = t(&[0, 3], Vec::<f32>::new());
        assert_eq!(c(&e, DType::I8).shape(), &[0, 3]);
        assert_eq!(
            infer(&Cast { to: DType::I8, saturate: true }, &[ty(DType::F32, "[n]")]).unwrap(),
            ty(DType::I8, "[n]")
        );
    }

    /// Shapes `(out, a, b)` where `a` and `b` broadcast to `out`.
    fn broadcast_case() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
        prop::collection::vec((1usize..4, any::<bool>(), any::<bool>()), 0..4)
            .prop_flat_map(|axes| {
                let rank = axes.len();
                (Just(axes), 0..=rank, 0..=rank)
            })
            .prop_map(|(axes, ra, rb)| {
                let pick = |r: usize, one: fn(&(usize, bool, bool)) -> bool| {
                    axes[axes.len() - r..].iter().map(|a| if one(a) { 1 } else { a.0 }).collect::<Vec<_>>()
                };
                let (da, db) = (pick(ra, |a| a.1), pick(rb, |a| a.2));
                let r = ra.max(rb);
                let dim = |d: &[usize], k: usize| if k < d.len() { d[d.len() - 1 - k] } else { 1 };
                let out = (0..r).rev().map(|k| dim(&da, k).max(dim(&db, k))).collect();
                (out, da, db)
            })
    }

    /// The row-major offset into `dims` of output index `idx` under broadcasting.
    fn offset(idx: &[usize], dims: &[usize]) -> usize {
        let skip = idx.len() - dims.len();
        dims.iter().zip(&idx[skip..]).fold(0, |o, (&d, &i)| o * d + if d == 1 { 0 } else { i })
    }

    proptest! {
        #[test]
        fn broadcast_arith_matches_index_reference(
            (out, da, db) in broadcast_case(),
            seed in prop::collection::vec(any::<i32>(), 128),
        ) {
            let n = |d: &[usize]| d.iter().product::<usize>();
            let va: Vec<i32> = seed[..n(&da)].to_vec();
            let vb: Vec<i32> = seed[64..64 + n(&db)].iter().map(|&v| if v == 0 { 1 } else { v }).collect();
            let (a, b) = (t(&da, va.clone()), t(&db, vb.clone()));
            for op in [BinaryOp::Add, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Less] {
                let got = run(&op, &[&a, &b]).unwrap();
                prop_assert_eq!(got.shape(), &out[..]);
                for k in 0..n(&out) {
                    let idx = unravel(k, &out);
                    let (x, y) = (va[offset(&idx, &da)], vb[offset(&idx, &db)]);
                    let want = match op {
                        BinaryOp::Add => i64::from(x.wrapping_add(y)),
                        BinaryOp::Mul => i64::from(x.wrapping_mul(y)),
                        BinaryOp::Div => i64::from(x.wrapping_div(y)),
                        _ => i64::from(x < y),
                    };
                    prop_assert_eq!(to_i64_array(&got).unwrap().iter().nth(k).copied(), Some(want));
                }
            }
        }

        #[test]
        fn cast_int_to_int_keeps_low_bits(v in any::<i64>()) {
            let x = t(&[1], vec![v]);
            let c = |to| to_i64_array(&run(&Cast { to, saturate: true }, &[&x]).unwrap()).unwrap()[0];
            let low = |bits: u32| i128::from(v).rem_euclid(1i128 << bits);
            prop_assert_eq!(i128::from(c(DType::U8)), low(8));
            prop_assert_eq!(i128::from(c(DType::I8)).rem_euclid(256), low(8));
            prop_assert_eq!(i128::from(c(DType::I32)).rem_euclid(1 << 32), low(32));
            prop_assert!((-128..128).contains(&c(DType::I8)));
        }

        #[test]
        fn cast_f32_to_i32_truncates(v in -3.0e9f32..3.0e9) {
            let got = run(&Cast { to: DType::I32, saturate: true }, &[&t(&[1], vec![v])]).unwrap();
            let tr = f64::from(v).trunc();
            let want = if tr.abs() < 2147483648.0 || tr == -2147483648.0 { tr as i32 } else { i32::MIN };
            prop_assert_eq!(got, t(&[1], vec![want]));
        }

        #[test]
        fn erf_matches_simpson_integral(x in -5.0f64..5.0) {
            // erf x = 2/√π ∫₀ˣ e^(-t²) dt by composite Simpson with 2000 panels.
            let n = 2000;
            let h = x / n as f64;
            let f = |t: f64| (-t * t).exp();
            let s: f64 = (0..=n).map(|i| {
                let w = if i == 0 || i == n { 1.0 } else if i % 2 == 1 { 4.0 } else { 2.0 };
                w * f(i as f64 * h)
            }).sum();
            let want = FRAC_2_SQRT_PI * s * h / 3.0;
            prop_assert!((erf(x) - want).abs() < 1e-12, "erf({}) = {} vs {}", x, erf(x), want);
            prop_assert_eq!(erf(-x), -erf(x));
        }
    }
}
