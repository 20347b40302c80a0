//! Kernels of Max, Min, Mod (both `fmod` modes), IsNaN/IsInf, CumSum and Shrink compiled for every
//! target preset and compared exactly with the reference interpreter: odd sizes (vector steps
//! with scalar tails), broadcasting of either operand and rank 0, NaN, ±inf, signed zeros
//! (checked through a Reciprocal, which turns `-0`/`+0` into `-inf`/`+inf`), integer extremes,
//! huge quotients, remainders by zero, every CumSum axis and mode, and Shrink on every dtype.

use slmtvm_ir::ops::{BinaryOp, Cast, FloatClass, Shrink, UnaryOp};
use slmtvm_ir::{DType, Element, Op, Tensor};
use slmtvm_tests::cross::Build;

fn t<T: Element>(dims: &[usize], v: Vec<T>) -> Tensor {
    Tensor::from_vec(dims, v).unwrap()
}

/// `n` f32 values cycling through `pool`, each cycle scaled differently so operands differ.
fn cycle(pool: &[f32], n: usize, shift: usize) -> Vec<f32> {
    (0..n).map(|i| pool[(i * 7 + shift) % pool.len()] * if i % 5 == 4 { -1.5 } else { 1.0 }).collect()
}

const FLOATS: [f32; 17] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -0.0,
    0.0,
    1e30,
    -3e-30,
    1e-40,
    2.5,
    -2.5,
    3.0,
    -7.25,
    0.1,
    65504.0,
    -4.3,
    2.1,
    1.0,
];

/// `vals` as a tensor of float dtype `dt` (rounded to nearest by the interpreter's Cast).
fn ft(dt: DType, dims: &[usize], vals: Vec<f32>) -> Tensor {
    let x = t(dims, vals);
    Op::Cast(Cast { to: dt, saturate: true }).eval(&[Some(&x)]).unwrap().remove(0)
}

/// Every binary operator of `ops` on float operands of several broadcast shapes.
fn float_binary(name: &str, ops: &[BinaryOp]) {
    let mut b = Build::new(name, 1);
    for dt in [DType::F32, DType::F16] {
        let shapes: [(&[usize], &[usize]); 5] =
            [(&[3, 7], &[3, 7]), (&[3, 7], &[7]), (&[3, 7], &[3, 1]), (&[13], &[]), (&[], &[2, 5])];
        for (sa, sb) in shapes {
            let (na, nb) = (sa.iter().product(), sb.iter().product());
            let x = b.input(vec![ft(dt, sa, cycle(&FLOATS, na, 0))]);
            let y = b.input(vec![ft(dt, sb, cycle(&FLOATS, nb, 3))]);
            for op in ops {
                b.node(Op::Binary(op.clone()), vec![Some(x), Some(y)], 1);
            }
        }
        // All pairs of a few edge values, and the sign of each zero result.
        let pairs = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0, 0.0, 2.0, -2.0, 1e-40, -3.0];
        let xs: Vec<f32> = pairs.iter().flat_map(|&p| pairs.iter().map(move |_| p)).collect();
        let ys: Vec<f32> = pairs.iter().flat_map(|_| pairs.iter().copied()).collect();
        let n = xs.len();
        let x = b.input(vec![ft(dt, &[n], xs)]);
        let y = b.input(vec![ft(dt, &[n], ys)]);
        for op in ops {
            let r = b.node(Op::Binary(op.clone()), vec![Some(x), Some(y)], 1)[0];
            b.node(Op::Unary(UnaryOp::Reciprocal), vec![Some(r)], 1);
        }
    }
    b.check(0.0, 0.0);
}

/// Integer extremes of `dt` and small values, `n` of them starting at `shift`.
fn ints(dt: DType, n: usize, shift: usize) -> Tensor {
    let (lo, hi) = match dt {
        DType::I8 => (i64::from(i8::MIN), i64::from(i8::MAX)),
        DType::U8 => (0, 255),
        DType::I32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    let pool = [lo, hi, 0, 1, -1, 7, -7, 3, -3, 5, 2, -2, lo + 1, hi - 1, 100, -100, 13];
    let v: Vec<i64> = (0..n).map(|i| pool[(i * 5 + shift) % pool.len()].clamp(lo, hi)).collect();
    let dims = [n];
    match dt {
        DType::I8 => t(&dims, v.iter().map(|&x| x as i8).collect()),
        DType::U8 => t(&dims, v.iter().map(|&x| x as u8).collect()),
        DType::I32 => t(&dims, v.iter().map(|&x| x as i32).collect()),
        _ => t(&dims, v),
    }
}

/// Every binary operator of `ops` on integer operands, including zero and -1 divisors.
fn int_binary(name: &str, ops: &[BinaryOp]) {
    let mut b = Build::new(name, 1);
    for dt in [DType::I8, DType::U8, DType::I32, DType::I64] {
        let pool_len = 17;
        // Every pair of pool values: x repeats each value, y cycles.
        let x = b.input(vec![ints(dt, pool_len, 0)]);
        let y = b.input(vec![ints(dt, pool_len, 0)]);
        let xr = b.cst(Tensor::from_vec(&[2], vec![pool_len as i64, 1]).unwrap());
        let yr = b.cst(Tensor::from_vec(&[2], vec![1, pool_len as i64]).unwrap());
        let xm = b.node(Op::Reshape(slmtvm_ir::ops::Reshape { allowzero: false }), vec![Some(x), Some(xr)], 1)[0];
        let ym = b.node(Op::Reshape(slmtvm_ir::ops::Reshape { allowzero: false }), vec![Some(y), Some(yr)], 1)[0];
        for op in ops {
            b.node(Op::Binary(op.clone()), vec![Some(xm), Some(ym)], 1);
        }
        // Contiguous odd sizes (i32 vector steps and tails), and a scalar operand.
        let p = b.input(vec![ints(dt, 13, 2)]);
        let q = b.input(vec![ints(dt, 13, 9)]);
        let s = b.input(vec![ints(dt, 1, 5)]);
        let s0 = b.cst(Tensor::from_vec(&[0], Vec::<i64>::new()).unwrap());
        let s = b.node(Op::Reshape(slmtvm_ir::ops::Reshape { allowzero: false }), vec![Some(s), Some(s0)], 1)[0];
        for op in ops {
            b.node(Op::Binary(op.clone()), vec![Some(p), Some(q)], 1);
            b.node(Op::Binary(op.clone()), vec![Some(s), Some(q)], 1);
        }
    }
    b.check(0.0, 0.0);
}

const MODS: [BinaryOp; 2] = [BinaryOp::Mod { fmod: false }, BinaryOp::Mod { fmod: true }];

#[test]
fn max_min_float() {
    float_binary("maxmin_f", &[BinaryOp::Max, BinaryOp::Min]);
}

#[test]
fn max_min_int() {
    int_binary("maxmin_i", &[BinaryOp::Max, BinaryOp::Min]);
}

#[test]
fn mod_float() {
    float_binary("mod_f", &MODS);
}

#[test]
fn mod_int_with_zero_divisors() {
    int_binary("mod_i", &MODS);
}

#[test]
fn mod_float_huge_quotients() {
    // fmod must be exact however many times the divisor fits.
    let xs = vec![3.4e38f32, -3.4e38, 1e30, 16777217.0, 1.0, 7.0, -1e-38, 1e-45, 123456.78, 1e20];
    let ys = vec![1e-45f32, 3.0, 1e-30, 0.1, 1e-45, 1e-38, 3e-39, 7e-46, -0.001, -3.3];
    let n = xs.len();
    let mut b = Build::new("mod_huge", 1);
    let x = b.input(vec![t(&[n], xs)]);
    let y = b.input(vec![t(&[n], ys)]);
    for op in MODS {
        b.node(Op::Binary(op), vec![Some(x), Some(y)], 1);
    }
    b.check(0.0, 0.0);
}

#[test]
fn float_class() {
    let mut b = Build::new("floatclass", 1);
    for dt in [DType::F32, DType::F16] {
        for dims in [vec![3usize, 7], vec![], vec![0, 2]] {
            let n = dims.iter().product();
            let x = b.input(vec![ft(dt, &dims, cycle(&FLOATS, n, 1))]);
            let classes = [
                FloatClass::Nan,
                FloatClass::Inf { positive: true, negative: true },
                FloatClass::Inf { positive: true, negative: false },
                FloatClass::Inf { positive: false, negative: true },
                FloatClass::Inf { positive: false, negative: false },
            ];
            for c in classes {
                b.node(Op::FloatClass(c), vec![Some(x)], 1);
            }
        }
    }
    b.check(0.0, 0.0);
}

#[test]
fn cumsum_every_axis_mode_and_dtype() {
    let shapes: [&[usize]; 4] = [&[3, 7, 5], &[13], &[2, 9], &[4, 1, 6]];
    for dt in [DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64] {
        let mut b = Build::new(&format!("cumsum_{dt}"), 1);
        for dims in shapes {
            let n: usize = dims.iter().product();
            let x = if dt.is_float() {
                let pool = [0.5f32, -1.25, 3.0, 1e-3, 2048.0, -7.0, 1.0, 0.1];
                ft(dt, dims, cycle(&pool, n, 0))
            } else {
                let v = ints(dt, n, 1);
                Op::Reshape(slmtvm_ir::ops::Reshape { allowzero: false })
                    .eval(&[Some(&v), Some(&t(&[dims.len()], dims.iter().map(|&d| d as i64).collect()))])
                    .unwrap()
                    .remove(0)
            };
            let x = b.input(vec![x]);
            for axis in (0..dims.len() as i64).chain([-1]) {
                for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
                    let op = slmtvm_ir::ops::CumSum { axis, exclusive, reverse };
                    b.node(Op::CumSum(op), vec![Some(x)], 1);
                }
            }
        }
        // With NaN and infinities, and an empty tensor.
        if dt.is_float() {
            let x = b.input(vec![ft(dt, &[3, 6], cycle(&FLOATS, 18, 2))]);
            b.node(Op::CumSum(slmtvm_ir::ops::CumSum { axis: 0, exclusive: false, reverse: false }), vec![Some(x)], 1);
            b.node(Op::CumSum(slmtvm_ir::ops::CumSum { axis: 1, exclusive: true, reverse: true }), vec![Some(x)], 1);
        }
        let e = b.input(vec![ft(DType::F32, &[0, 5], Vec::new())]);
        b.node(Op::CumSum(slmtvm_ir::ops::CumSum { axis: 1, exclusive: false, reverse: false }), vec![Some(e)], 1);
        b.check(0.0, 0.0);
    }
}

#[test]
fn shrink_every_dtype() {
    // Hard, soft, negative bias (integers past the element range wrap), a lambd that is not an
    // f16 (rounded first) and a zero band; floats with NaN, ±inf, signed zeros and band edges.
    let attrs = [(0.0, 1.5), (1.5, 1.5), (-10.5, 1.0), (0.1, 0.1), (2.0, 0.0)];
    let mut b = Build::new("shrink", 1);
    for dt in [DType::F32, DType::F16] {
        for dims in [vec![3usize, 7], vec![], vec![0, 2]] {
            let n = dims.iter().product();
            let x = b.input(vec![ft(dt, &dims, cycle(&FLOATS, n, 2))]);
            for (bias, lambd) in attrs {
                b.node(Op::Shrink(Shrink { bias, lambd }), vec![Some(x)], 1);
            }
        }
    }
    for dt in [DType::I8, DType::U8, DType::I32, DType::I64] {
        let x = b.input(vec![ints(dt, 17, 0)]);
        for (bias, lambd) in attrs {
            b.node(Op::Shrink(Shrink { bias, lambd }), vec![Some(x)], 1);
        }
    }
    b.check(0.0, 0.0);
}
