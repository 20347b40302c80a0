//! The QOperator form of quantized models: ONNX `QLinearMatMul`, `QLinearConv` and ONNX Runtime's
//! `com.microsoft` `QGemm`, `QLinearAdd`, `QLinearMul`, `QLinearSoftmax`, `QLinearConcat`,
//! `QLinearSigmoid`, `QLinearLeakyRelu` and `QLinearGlobalAveragePool` (what
//! `onnxruntime.quantization.quantize_static(quant_format=QOperator)` writes).
//!
//! Each is decomposed into IR primitives that compute what ONNX Runtime's CPU kernels compute,
//! in the same order, so that the integer results agree with them:
//!
//! ```text
//! QLinearMatMul  y = Q(f32(MatMulInteger(a, b, a_zp, b_zp)) · ((a_scale·b_scale)/y_scale), y_zp)
//! QLinearConv    y = Q(f32(ConvInteger(x, w, x_zp, w_zp) + B) · ((x_scale·w_scale)/y_scale), y_zp)
//! QGemm          acc = MatMulInteger(A', B', a_zp, b_zp) [+ C]     (A', B' transposed as asked)
//!                y = f32(acc) · ((alpha·a_scale)·b_scale [/ y_scale]), then Q(·, y_zp) with y_zp
//! QLinearAdd     c = QuantizeLinear((a − a_zp)·a_scale + (b − b_zp)·b_scale, c_scale, c_zp)
//! QLinearMul     c = Q((a − a_zp)·(b − b_zp)·((a_scale·b_scale)/c_scale), c_zp)
//! QLinearGlobalAveragePool
//!                y = Q(Σ(x − x_zp) · (x_scale/(y_scale·count)), y_zp)   (sum over the spatial axes)
//! QLinearSoftmax, QLinearSigmoid, QLinearLeakyRelu, QLinearConcat
//!                y = QuantizeLinear(f(DequantizeLinear(x, x_scale, x_zp)), y_scale, y_zp)
//! ```
//!
//! where `Q(v, zp)` is `QuantizeLinear(v, 1, zp)`: round half to even, add the zero point,
//! saturate to the zero point's type. The integer differences and products are exact in f32
//! (|a − zp| ≤ 255), as are the pooling sums up to 65,793 elements per channel. ONNX Runtime
//! computes the elementwise functions through 256-entry tables of `Q(f(dequantize(i)))`, which
//! is this per element; only the float function itself (its exp) may differ by an ulp.
//! QLinearAdd is the operator's documented formula, which ONNX Runtime's portable kernel
//! computes; its x86 and Arm vector kernels approximate the two scale ratios by 22-bit
//! fixed-point multipliers instead, so they can differ from it by one step.
//! Scales and zero points that the operators define per tensor must have one element; a
//! missing zero point is 0 of the quantized type.

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::subgraph::{Sub, at_most, required, single_output};
use crate::Result;
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Dim, Op, Tensor, ValueId};

/// True for the 8-bit quantized types these operators take.
fn is_q8(d: DType) -> bool {
    matches!(d, DType::U8 | DType::I8)
}

/// The quantized tensor input `i`: u8 or i8.
fn quantized(b: &Sub, ins: &[Option<ValueId>], i: usize, what: &str) -> Result<ValueId> {
    let v = required(b, ins, i, what)?;
    let d = b.dtype(v);
    if !is_q8(d) {
        return Err(b.err(format!("input {i} ('{what}') must be uint8 or int8, got {d}")));
    }
    Ok(v)
}

/// Checks that `v` has one element and reshapes it to a scalar.
fn one_element(b: &mut Sub, v: ValueId, i: usize, what: &str) -> Result<ValueId> {
    let dims = b.dims(v);
    if dims.iter().any(|d| *d != Dim::Known(1)) {
        return Err(b.err(format!(
            "input {i} ('{what}') must have one element (per-tensor quantization), got shape {}",
            b.ty(v).shape
        )));
    }
    if dims.is_empty() { Ok(v) } else { b.reshape(v, &[]) }
}

/// Scale input `i` as f32 (float16 and bfloat16 scales widen exactly).
fn scale(b: &mut Sub, ins: &[Option<ValueId>], i: usize, what: &str) -> Result<ValueId> {
    let s = required(b, ins, i, what)?;
    let d = b.dtype(s);
    if !d.is_float() {
        return Err(b.err(format!("input {i} ('{what}') must be a float tensor, got {d}")));
    }
    b.cast(s, DType::F32)
}

/// A per-tensor scale: input `i` as an f32 scalar.
fn scalar_scale(b: &mut Sub, ins: &[Option<ValueId>], i: usize, what: &str) -> Result<ValueId> {
    let s = scale(b, ins, i, what)?;
    one_element(b, s, i, what)
}

/// Zero point input `i` of the quantized type `dt`, or a 0 of that type when it is absent;
/// `scalar` requires one element (and returns a scalar).
fn zero_point(b: &mut Sub, ins: &[Option<ValueId>], i: usize, what: &str, dt: DType, scalar: bool) -> Result<ValueId> {
    let Some(z) = ins.get(i).copied().flatten() else {
        return Ok(b.konst(Tensor::zeros(dt, &[])));
    };
    if b.dtype(z) != dt {
        return Err(b.err(format!("input {i} ('{what}') is {} but its tensor is {dt}", b.dtype(z))));
    }
    if scalar { one_element(b, z, i, what) } else { Ok(z) }
}

/// The output's zero point, input `i`, as a scalar; its 8-bit type gives the output's, and
/// when it is absent the output has type `default` and zero point 0.
fn output_zero_point(b: &mut Sub, ins: &[Option<ValueId>], i: usize, what: &str, default: DType) -> Result<ValueId> {
    let dt = ins.get(i).copied().flatten().map_or(default, |z| b.dtype(z));
    if !is_q8(dt) {
        return Err(b.err(format!("input {i} ('{what}') must be uint8 or int8, got {dt}")));
    }
    zero_point(b, ins, i, what, dt, true)
}

/// `x − zp` in f32 (exact: both are 8-bit integers).
fn centered(b: &mut Sub, x: ValueId, zp: ValueId) -> Result<ValueId> {
    let (xf, zf) = (b.cast(x, DType::F32)?, b.cast(zp, DType::F32)?);
    b.binary(BinaryOp::Sub, xf, zf)
}

/// `QuantizeLinear(v, 1, zp)` as the node's output `out`: `v` rounded half to even, plus the
/// zero point, saturated to its type.
fn requantize(b: &mut Sub, v: ValueId, zp: ValueId, out: &str) -> Result<()> {
    let one = b.konst(Tensor::scalar(1.0f32));
    let q = QuantizeLinear { axis: 1, block_size: 0, output_dtype: b.dtype(zp) };
    b.output(Op::QuantizeLinear(q), vec![v, one, zp], out)
}

/// `QuantizeLinear(v, scale, zp)` as the node's output `out`.
fn quantize(b: &mut Sub, v: ValueId, scale: ValueId, zp: ValueId, out: &str) -> Result<()> {
    let q = QuantizeLinear { axis: 1, block_size: 0, output_dtype: b.dtype(zp) };
    b.output(Op::QuantizeLinear(q), vec![v, scale, zp], out)
}

/// `DequantizeLinear(x, scale, zp)` for per-tensor parameters.
fn dequantize(b: &mut Sub, x: ValueId, scale: ValueId, zp: ValueId) -> Result<ValueId> {
    b.node(Op::DequantizeLinear(DequantizeLinear { axis: 1, block_size: 0 }), vec![x, scale, zp])
}

/// A per-row (`a`) scale or zero point of a matrix product: a 1-D tensor of more than one
/// element becomes a column `[M, 1]`; per-tensor and N-D forms broadcast as they are.
fn per_row(b: &mut Sub, v: ValueId) -> Result<ValueId> {
    match b.dims(v).as_slice() {
        [d] if *d != Dim::Known(1) => b.unsqueeze(v, &[1]),
        _ => Ok(v),
    }
}

/// ONNX `QLinearMatMul` (opset 10 and 21): inputs a, a_scale, a_zero_point, b, b_scale,
/// b_zero_point, y_scale, y_zero_point; `a`'s parameters per tensor or per row, `b`'s per
/// tensor or per column, `y`'s per tensor.
pub(crate) fn qlinear_matmul(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    _a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 8, "a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale and y_zero_point")?;
    let x = quantized(&b, &ins, 0, "a")?;
    let w = quantized(&b, &ins, 3, "b")?;
    let (xs, ws) = (scale(&mut b, &ins, 1, "a_scale")?, scale(&mut b, &ins, 4, "b_scale")?);
    let (x_dt, w_dt) = (b.dtype(x), b.dtype(w));
    let xz = zero_point(&mut b, &ins, 2, "a_zero_point", x_dt, false)?;
    let wz = zero_point(&mut b, &ins, 5, "b_zero_point", w_dt, false)?;
    let ys = scalar_scale(&mut b, &ins, 6, "y_scale")?;
    let yz = output_zero_point(&mut b, &ins, 7, "y_zero_point", x_dt)?;
    let acc = b.node(Op::MatMulInteger(MatMulInteger {}), vec![x, w, xz, wz])?;
    let xs = per_row(&mut b, xs)?;
    let s = b.binary(BinaryOp::Mul, xs, ws)?;
    let m = b.binary(BinaryOp::Div, s, ys)?;
    let accf = b.cast(acc, DType::F32)?;
    let v = b.binary(BinaryOp::Mul, accf, m)?;
    requantize(&mut b, v, yz, &out)
}

/// ONNX `QLinearConv`: inputs x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale,
/// y_zero_point, optional B (int32 `[M]`, added to the accumulator); `w`'s parameters per
/// tensor or per output channel, the others per tensor; Conv's attributes.
///
/// `y = Q(f32(ConvInteger(x, w, x_zp, w_zp) + B) · ((x_scale·w_scale)/y_scale), y_zp)`, the
/// per-channel factors along axis 1.
pub(crate) fn qlinear_conv(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let conv = super::ops::conv_attrs(a, name)?;
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 9, "x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point and B")?;
    let x = quantized(&b, &ins, 0, "x")?;
    let w = quantized(&b, &ins, 3, "w")?;
    let (x_dt, w_dt) = (b.dtype(x), b.dtype(w));
    let rank = b.rank(x);
    if rank < 3 {
        return Err(b.err(format!("x must be [N, C, D...], got shape {}", b.ty(x).shape)));
    }
    let xs = scalar_scale(&mut b, &ins, 1, "x_scale")?;
    let xz = zero_point(&mut b, &ins, 2, "x_zero_point", x_dt, true)?;
    let ws = scale(&mut b, &ins, 4, "w_scale")?;
    let wz = zero_point(&mut b, &ins, 5, "w_zero_point", w_dt, false)?;
    let ys = scalar_scale(&mut b, &ins, 6, "y_scale")?;
    let yz = output_zero_point(&mut b, &ins, 7, "y_zero_point", x_dt)?;
    if b.rank(ws) > 1 {
        return Err(b.err(format!("input 4 ('w_scale') must be a scalar or 1-D, got shape {}", b.ty(ws).shape)));
    }
    let wz =
        if b.dims(wz).iter().all(|d| *d == Dim::Known(1)) { one_element(&mut b, wz, 5, "w_zero_point")? } else { wz };
    let mut acc = b.node(Op::ConvInteger(ConvInteger { conv }), vec![x, w, xz, wz])?;
    // Per-channel values [M] broadcast along axis 1 of [N, M, D...] as [M, 1, ...].
    let spatial: Vec<i64> = (1..rank as i64 - 1).collect();
    if let Some(bias) = ins.get(8).copied().flatten() {
        if b.dtype(bias) != DType::I32 || b.rank(bias) != 1 {
            return Err(b.err(format!("input 8 ('B') must be a 1-D int32 tensor, got {}", b.ty(bias))));
        }
        let bias = b.unsqueeze(bias, &spatial)?;
        acc = b.binary(BinaryOp::Add, acc, bias)?;
    }
    let s = b.binary(BinaryOp::Mul, xs, ws)?;
    let m = b.binary(BinaryOp::Div, s, ys)?;
    let m = if b.rank(m) == 1 { b.unsqueeze(m, &spatial)? } else { m };
    let accf = b.cast(acc, DType::F32)?;
    let v = b.binary(BinaryOp::Mul, accf, m)?;
    requantize(&mut b, v, yz, &out)
}

/// `com.microsoft::QGemm`: A, a_scale, a_zero_point, B, b_scale, b_zero_point, optional C
/// (int32, added to the accumulator), optional y_scale and y_zero_point; attributes alpha,
/// transA, transB. Without y_zero_point the output is f32.
pub(crate) fn qgemm(imp: &mut Importer, n: &NodeProto, name: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<()> {
    let alpha = a.float_or("alpha", 1.0)?;
    let (trans_a, trans_b) = (a.flag_or("transA", false)?, a.flag_or("transB", false)?);
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 9, "A, a_scale, a_zero_point, B, b_scale, b_zero_point, C, y_scale and y_zero_point")?;
    let x = quantized(&b, &ins, 0, "A")?;
    let w = quantized(&b, &ins, 3, "B")?;
    for (v, what) in [(x, "A"), (w, "B")] {
        if b.rank(v) != 2 {
            return Err(b.err(format!("{what} must be 2-D, got shape {}", b.ty(v).shape)));
        }
    }
    let (x_dt, w_dt) = (b.dtype(x), b.dtype(w));
    let xs = scalar_scale(&mut b, &ins, 1, "a_scale")?;
    let xz = zero_point(&mut b, &ins, 2, "a_zero_point", x_dt, true)?;
    let ws = scale(&mut b, &ins, 4, "b_scale")?;
    let wz = zero_point(&mut b, &ins, 5, "b_zero_point", w_dt, false)?;
    for (v, i, what) in [(ws, 4, "b_scale"), (wz, 5, "b_zero_point")] {
        if b.rank(v) > 1 {
            return Err(b.err(format!("input {i} ('{what}') must be a scalar or 1-D, got shape {}", b.ty(v).shape)));
        }
    }
    let x = if trans_a { b.transpose(x, &[1, 0])? } else { x };
    let w = if trans_b { b.transpose(w, &[1, 0])? } else { w };
    let mut acc = b.node(Op::MatMulInteger(MatMulInteger {}), vec![x, w, xz, wz])?;
    if let Some(c) = ins.get(6).copied().flatten() {
        if b.dtype(c) != DType::I32 {
            return Err(b.err(format!("input 6 ('C') must be int32, got {}", b.dtype(c))));
        }
        acc = b.binary(BinaryOp::Add, acc, c)?;
    }
    let alpha = b.konst(Tensor::scalar(alpha));
    let s = b.binary(BinaryOp::Mul, alpha, xs)?;
    let mut m = b.binary(BinaryOp::Mul, s, ws)?;
    if ins.get(7).copied().flatten().is_some() {
        let ys = scalar_scale(&mut b, &ins, 7, "y_scale")?;
        m = b.binary(BinaryOp::Div, m, ys)?;
    }
    let accf = b.cast(acc, DType::F32)?;
    match ins.get(8).copied().flatten() {
        Some(z) => {
            let zdt = b.dtype(z);
            let yz = output_zero_point(&mut b, &ins, 8, "y_zero_point", zdt)?;
            let v = b.binary(BinaryOp::Mul, accf, m)?;
            requantize(&mut b, v, yz, &out)
        }
        None => b.output(Op::Binary(BinaryOp::Mul), vec![accf, m], &out),
    }
}

/// The three operands of `QLinearAdd`/`QLinearMul`: (A, scale, zp), (B, scale, zp), and C's
/// (scale, zp), every parameter per tensor.
struct Binary {
    a: (ValueId, ValueId, ValueId),
    b: (ValueId, ValueId, ValueId),
    c: (ValueId, ValueId),
}

fn binary_operands(b: &mut Sub, ins: &[Option<ValueId>]) -> Result<Binary> {
    at_most(b, ins, 8, "A, A_scale, A_zero_point, B, B_scale, B_zero_point, C_scale and C_zero_point")?;
    let x = quantized(b, ins, 0, "A")?;
    let y = quantized(b, ins, 3, "B")?;
    let dt = b.dtype(x);
    if b.dtype(y) != dt {
        return Err(b.err(format!("A is {dt} but B is {}", b.dtype(y))));
    }
    let xs = scalar_scale(b, ins, 1, "A_scale")?;
    let xz = zero_point(b, ins, 2, "A_zero_point", dt, true)?;
    let ys = scalar_scale(b, ins, 4, "B_scale")?;
    let yz = zero_point(b, ins, 5, "B_zero_point", dt, true)?;
    let zs = scalar_scale(b, ins, 6, "C_scale")?;
    let zz = zero_point(b, ins, 7, "C_zero_point", dt, true)?;
    Ok(Binary { a: (x, xs, xz), b: (y, ys, yz), c: (zs, zz) })
}

/// `com.microsoft::QLinearAdd` (NumPy broadcasting).
pub(crate) fn qlinear_add(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    _a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    qlinear_arith(imp, n, name, ins, BinaryOp::Add)
}

/// `com.microsoft::QLinearMul` (NumPy broadcasting).
pub(crate) fn qlinear_mul(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    _a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    qlinear_arith(imp, n, name, ins, BinaryOp::Mul)
}

/// QLinearAdd (`op` Add) or QLinearMul (Mul), by the formulas in the module docs.
fn qlinear_arith(imp: &mut Importer, n: &NodeProto, name: &str, ins: Vec<Option<ValueId>>, op: BinaryOp) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    let Binary { a: (x, xs, xz), b: (y, ys, yz), c: (zs, zz) } = binary_operands(&mut b, &ins)?;
    let (xc, yc) = (centered(&mut b, x, xz)?, centered(&mut b, y, yz)?);
    if op == BinaryOp::Add {
        let (vx, vy) = (b.binary(BinaryOp::Mul, xc, xs)?, b.binary(BinaryOp::Mul, yc, ys)?);
        let v = b.binary(BinaryOp::Add, vx, vy)?;
        return quantize(&mut b, v, zs, zz, &out);
    }
    let p = b.binary(BinaryOp::Mul, xc, yc)?;
    let s = b.binary(BinaryOp::Mul, xs, ys)?;
    let m = b.binary(BinaryOp::Div, s, zs)?;
    let v = b.binary(BinaryOp::Mul, p, m)?;
    requantize(&mut b, v, zz, &out)
}

/// The operands of the unary operators: X, X_scale, X_zero_point, Y_scale, Y_zero_point, all
/// per tensor, Y's zero point of X's type; returns `(x, f32 dequantized x, y_scale, y_zp)`.
fn unary_operands(b: &mut Sub, ins: &[Option<ValueId>]) -> Result<(ValueId, ValueId, ValueId, ValueId)> {
    at_most(b, ins, 5, "X, X_scale, X_zero_point, Y_scale and Y_zero_point")?;
    let x = quantized(b, ins, 0, "X")?;
    let dt = b.dtype(x);
    let xs = scalar_scale(b, ins, 1, "X_scale")?;
    let xz = zero_point(b, ins, 2, "X_zero_point", dt, true)?;
    let ys = scalar_scale(b, ins, 3, "Y_scale")?;
    let yz = zero_point(b, ins, 4, "Y_zero_point", dt, true)?;
    let xf = dequantize(b, x, xs, xz)?;
    Ok((x, xf, ys, yz))
}

/// `com.microsoft::QLinearSigmoid`.
pub(crate) fn qlinear_sigmoid(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    _a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    qlinear_unary(imp, n, name, ins, &mut |b, _, xf| b.node(Op::Unary(UnaryOp::Sigmoid), vec![xf]))
}

/// `com.microsoft::QLinearLeakyRelu`: `alpha·x` where the dequantized x is negative.
pub(crate) fn qlinear_leaky_relu(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let alpha = a.float_or("alpha", 0.01)?;
    qlinear_unary(imp, n, name, ins, &mut |b, _, xf| {
        let (zero, alpha) = (b.konst(Tensor::scalar(0.0f32)), b.konst(Tensor::scalar(alpha)));
        let neg = b.binary(BinaryOp::Less, xf, zero)?;
        let scaled = b.binary(BinaryOp::Mul, xf, alpha)?;
        b.node(Op::Where(Where {}), vec![neg, scaled, xf])
    })
}

/// A unary QOperator node: `QuantizeLinear(f(x, DequantizeLinear(x)), Y_scale, Y_zero_point)`.
fn qlinear_unary(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    ins: Vec<Option<ValueId>>,
    f: &mut dyn FnMut(&mut Sub, ValueId, ValueId) -> Result<ValueId>,
) -> Result<()> {
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    let (x, xf, ys, yz) = unary_operands(&mut b, &ins)?;
    let v = f(&mut b, x, xf)?;
    quantize(&mut b, v, ys, yz, &out)
}

/// `com.microsoft::QLinearSoftmax`: attributes axis (default -1) and opset, the ONNX opset
/// whose Softmax it follows (before 13 the axes from `axis` on are flattened into one).
pub(crate) fn qlinear_softmax(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let axis = a.int_or("axis", -1)?;
    let opset = a.required("opset", a.int("opset")?)?;
    qlinear_unary(imp, n, name, ins, &mut |b, x, xf| {
        let rank = b.rank(x) as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        if !(0..rank.max(1)).contains(&ax) {
            return Err(b.err(format!("axis {axis} is out of range for X of rank {rank}")));
        }
        if opset < 13 && ax != rank - 1 {
            // Softmax over the flattened axes [axis, rank), then back to X's shape.
            let flat = b.node(Op::Flatten(Flatten { axis: ax }), vec![xf])?;
            let s = b.node(Op::Softmax(Softmax { axis: 1 }), vec![flat])?;
            let shape = b.node(Op::Shape(ShapeOf { start: 0, end: None }), vec![xf])?;
            b.node(Op::Reshape(Reshape { allowzero: false }), vec![s, shape])
        } else {
            b.node(Op::Softmax(Softmax { axis: ax }), vec![xf])
        }
    })
}

/// `com.microsoft::QLinearConcat`: inputs Y_scale, Y_zero_point, then (X, X_scale,
/// X_zero_point) per concatenated tensor; attribute axis.
pub(crate) fn qlinear_concat(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let axis = a.required("axis", a.int("axis")?)?;
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    if ins.len() < 5 || !(ins.len() - 2).is_multiple_of(3) {
        return Err(b.err(format!(
            "has {} inputs; QLinearConcat takes Y_scale, Y_zero_point and a (X, X_scale, X_zero_point) triple per tensor",
            ins.len()
        )));
    }
    let ys = scalar_scale(&mut b, &ins, 0, "Y_scale")?;
    let zdt = b.dtype(required(&b, &ins, 1, "Y_zero_point")?);
    let yz = output_zero_point(&mut b, &ins, 1, "Y_zero_point", zdt)?;
    let dt = b.dtype(yz);
    let mut parts = Vec::new();
    for i in (2..ins.len()).step_by(3) {
        let x = quantized(&b, &ins, i, "X")?;
        if b.dtype(x) != dt {
            return Err(b.err(format!("input {i} is {} but Y_zero_point is {dt}", b.dtype(x))));
        }
        let xs = scalar_scale(&mut b, &ins, i + 1, "X_scale")?;
        let xz = zero_point(&mut b, &ins, i + 2, "X_zero_point", dt, true)?;
        parts.push(dequantize(&mut b, x, xs, xz)?);
    }
    let v = b.node(Op::Concat(Concat { axis }), parts)?;
    quantize(&mut b, v, ys, yz, &out)
}

/// `com.microsoft::QLinearGlobalAveragePool`: the mean over the spatial axes (2.. for NCHW,
/// 1..rank−1 with `channels_last`), kept as size-1 axes.
pub(crate) fn qlinear_global_average_pool(
    imp: &mut Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let channels_last = a.flag_or("channels_last", false)?;
    let mut b = Sub::new(imp, n, name);
    let out = single_output(&b, n)?;
    at_most(&b, &ins, 5, "X, x_scale, x_zero_point, y_scale and y_zero_point")?;
    let x = quantized(&b, &ins, 0, "X")?;
    let dt = b.dtype(x);
    let rank = b.rank(x);
    if rank < 3 {
        return Err(b.err(format!("X must have rank 3 or more (N, C and spatial axes), got shape {}", b.ty(x).shape)));
    }
    let xs = scalar_scale(&mut b, &ins, 1, "x_scale")?;
    let xz = zero_point(&mut b, &ins, 2, "x_zero_point", dt, true)?;
    let ys = scalar_scale(&mut b, &ins, 3, "y_scale")?;
    let yz = zero_point(&mut b, &ins, 4, "y_zero_point", dt, true)?;
    let axes: Vec<usize> = if channels_last { (1..rank - 1).collect() } else { (2..rank).collect() };
    let mut count = 1usize;
    for &ax in &axes {
        count = count.saturating_mul(b.known_dim(x, ax, "spatial axis")?);
    }
    if count == 0 || count > 65_793 {
        return Err(b.unsupported(format!("QLinearGlobalAveragePool over {count} elements per channel (1 to 65,793)")));
    }
    let xc = centered(&mut b, x, xz)?;
    let axes = axes.iter().map(|&v| v as i64).collect();
    let sum = b.node(Op::Reduce(Reduce { kind: ReduceKind::Sum, axes: Some(axes), keepdims: true }), vec![xc])?;
    let cnt = b.konst(Tensor::scalar(count as f32));
    let d = b.binary(BinaryOp::Mul, ys, cnt)?;
    let m = b.binary(BinaryOp::Div, xs, d)?;
    let v = b.binary(BinaryOp::Mul, sum, m)?;
    requantize(&mut b, v, yz, &out)
}

#[cfg(test)]
mod tests {
    use crate::onnx::build::{import_one, import_one_in, int_attr, value_info};
    use crate::onnx::proto::{AttributeProto, ValueInfoProto};
    use slmtvm_ir::Op;

    const MS: &str = "com.microsoft";
    // ONNX element types.
    const F32: i32 = 1;
    const U8: i32 = 2;
    const I8: i32 = 3;
    const I32: i32 = 6;

    fn err(domain: &str, op: &str, ins: Vec<ValueInfoProto>, attrs: Vec<AttributeProto>) -> String {
        match import_one_in(domain, op, ins, attrs) {
            Ok(_) => panic!("the import of a bad {op} succeeded"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn qlinear_matmul_and_qgemm_become_integer_products() {
        // Run-time scales and zero points; a per-row a_scale and a per-column b_scale.
        let ins = vec![
            value_info("a", U8, &[2, 5]),
            value_info("as", F32, &[2]),
            value_info("az", U8, &[]),
            value_info("b", I8, &[5, 3]),
            value_info("bs", F32, &[3]),
            value_info("bz", I8, &[3]),
            value_info("ys", F32, &[]),
            value_info("yz", I8, &[1]),
        ];
        let g = import_one("QLinearMatMul", ins, vec![]).unwrap();
        assert_eq!(g.ty(g.outputs[0]).to_string(), "i8[2, 3]");
        assert!(g.nodes.iter().any(|n| matches!(n.op, Op::MatMulInteger(_))));
        // QGemm without y_scale and y_zero_point: f32, B transposed, an int32 bias.
        let ins = vec![
            value_info("a", U8, &[4, 6]),
            value_info("as", F32, &[]),
            value_info("az", U8, &[]),
            value_info("b", U8, &[7, 6]),
            value_info("bs", F32, &[]),
            value_info("bz", U8, &[]),
            value_info("c", I32, &[7]),
        ];
        let g = import_one_in(MS, "QGemm", ins, vec![int_attr("transB", 1)]).unwrap();
        assert_eq!(g.ty(g.outputs[0]).to_string(), "f32[4, 7]");
    }

    #[test]
    fn bad_qoperator_nodes_are_named() {
        let elementwise = |cz: i32, cs: &[i64]| {
            vec![
                value_info("a", U8, &[3]),
                value_info("as", F32, &[]),
                value_info("az", U8, &[]),
                value_info("b", U8, &[3]),
                value_info("bs", F32, &[]),
                value_info("bz", U8, &[]),
                value_info("cs", F32, cs),
                value_info("cz", cz, &[]),
            ]
        };
        assert!(import_one_in(MS, "QLinearAdd", elementwise(U8, &[]), vec![]).is_ok());
        let e = err(MS, "QLinearAdd", elementwise(I8, &[]), vec![]);
        assert!(e.contains("'n0'") && e.contains("C_zero_point") && e.contains("i8"), "{e}");
        let e = err(MS, "QLinearMul", elementwise(U8, &[3]), vec![]);
        assert!(e.contains("'n0'") && e.contains("C_scale") && e.contains("one element"), "{e}");
        // A float tensor where a quantized one belongs.
        let mut ins = elementwise(U8, &[]);
        ins[0] = value_info("a", F32, &[3]);
        let e = err(MS, "QLinearAdd", ins, vec![]);
        assert!(e.contains("'n0'") && e.contains("'A'") && e.contains("uint8 or int8"), "{e}");
        // QLinearSoftmax needs its opset attribute; QLinearConcat its triples.
        let unary = vec![
            value_info("x", U8, &[2, 4]),
            value_info("xs", F32, &[]),
            value_info("xz", U8, &[]),
            value_info("ys", F32, &[]),
            value_info("yz", U8, &[]),
        ];
        let e = err(MS, "QLinearSoftmax", unary.clone(), vec![]);
        assert!(e.contains("'n0'") && e.contains("opset"), "{e}");
        let e = err(MS, "QLinearConcat", unary[..4].to_vec(), vec![int_attr("axis", 0)]);
        assert!(e.contains("'n0'") && e.contains("triple"), "{e}");
        let e = err(MS, "QLinearGlobalAveragePool", unary, vec![]);
        assert!(e.contains("'n0'") && e.contains("rank 3"), "{e}");
        // QGemm takes matrices.
        let ins = vec![
            value_info("a", U8, &[2, 4, 6]),
            value_info("as", F32, &[]),
            value_info("az", U8, &[]),
            value_info("b", I8, &[6, 7]),
            value_info("bs", F32, &[]),
            value_info("bz", I8, &[]),
        ];
        let e = err(MS, "QGemm", ins, vec![]);
        assert!(e.contains("'n0'") && e.contains("2-D"), "{e}");
        let e = err(MS, "QLinearAveragePool", vec![value_info("x", U8, &[1, 1, 2, 2])], vec![]);
        assert!(e.contains("n0") && e.contains("QLinearAveragePool") && e.contains("com.microsoft"), "{e}");
    }
}
