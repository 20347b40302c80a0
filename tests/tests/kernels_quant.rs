//! QuantizeLinear, DequantizeLinear, their fused pair QuantizeDequantize and
//! DynamicQuantizeLinear kernels on every target preset
//! against the reference interpreter: per tensor, per axis (negative axes too) and blocked
//! (partial last blocks), i8/u8 with and without zero points, f32/f16/i32 inputs, f16 scales,
//! values on .5 boundaries, beyond the saturation range, infinities and NaN. Integer outputs
//! must match exactly.

use slmtvm_ir::ops::{DequantizeLinear, DynamicQuantizeLinear, QuantizeDequantize, QuantizeLinear};
use slmtvm_ir::{DType, Op, Tensor};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::Build;

/// Deterministic pseudo-random values in `[lo, hi)`.
fn rand(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = Lcg(seed);
    rng.bits();
    (0..n).map(|_| lo + (hi - lo) * ((rng.bits() >> 29) as f32 / (1u64 << 24) as f32)).collect()
}

/// An f16 scalar.
fn f16s(v: f32) -> Tensor {
    Tensor::from_f32(DType::F16, Tensor::scalar(v).to_f32())
}

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

/// `n` values that are multiples of `step / 2` (so `x / step` lands on .5 ties), spread over
/// and beyond the range of 8-bit integers, with infinities, NaN and signed zeros mixed in.
fn ties(seed: u64, n: usize, step: f32) -> Vec<f32> {
    let special = [f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.0, 1e30, -1e30, 3e9];
    rand(seed, n, -700.0, 700.0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 11 == 5 { special[(i / 11) % special.len()] } else { v.round() * step / 2.0 })
        .collect()
}

fn ql(axis: i64, block_size: usize, output_dtype: DType) -> Op {
    Op::QuantizeLinear(QuantizeLinear { axis, block_size, output_dtype })
}

fn dql(axis: i64, block_size: usize) -> Op {
    Op::DequantizeLinear(DequantizeLinear { axis, block_size })
}

fn u8t(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, rand(seed, n, 0.0, 256.0).into_iter().map(|v| v as u8).collect()).unwrap()
}

fn i8t(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(shape, rand(seed, n, -128.0, 128.0).into_iter().map(|v| v.floor() as i8).collect()).unwrap()
}

fn scales(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    // Powers of two (exact ties) and awkward values.
    let pick = [0.5f32, 1.0, 2.0, 0.25, 0.1, 3.0, 0.37, 4.0];
    let v = rand(seed, n, 0.0, 8.0).into_iter().map(|r| pick[r as usize]).collect();
    f32t(shape, v)
}

#[test]
fn quantize_per_tensor_per_axis_and_blocked() {
    let mut b = Build::new("quantize", 2);
    // Per tensor over an odd length, every zero point kind.
    let x = b.input(vec![f32t(&[37], ties(1, 37, 1.0)), f32t(&[37], ties(2, 37, 1.0))]);
    for (s, zp, out) in [
        (0.5f32, Some(Tensor::scalar(128u8)), DType::U8),
        (1.0, Some(Tensor::from_vec(&[1], vec![-3i8]).unwrap()), DType::I8),
        (2.0, None, DType::U8),
        (0.25, None, DType::I8),
        (0.1, Some(Tensor::scalar(0i8)), DType::I8),
        (1.0, Some(Tensor::scalar(255u8)), DType::U8),
    ] {
        let sc = b.cst(Tensor::scalar(s));
        let z = zp.map(|z| b.cst(z));
        b.node(ql(0, 0, out), vec![Some(x), Some(sc), z], 1);
    }
    // Per axis: the middle, the last (negative), the first; scale and zero point as inputs.
    let x = b.input(vec![f32t(&[3, 5, 4], ties(3, 60, 0.5)), f32t(&[3, 5, 4], ties(4, 60, 2.0))]);
    let s = b.cst(scales(&[5], 5));
    let z = b.cst(u8t(&[5], 6));
    b.node(ql(1, 0, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[4], 7));
    let z = b.cst(i8t(&[4], 8));
    b.node(ql(-1, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.input(vec![scales(&[3], 9), scales(&[3], 10)]);
    let z = b.input(vec![i8t(&[3], 11), i8t(&[3], 12)]);
    b.node(ql(-3, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[3], 13));
    b.node(ql(0, 0, DType::U8), vec![Some(x), Some(s)], 1);
    // Blocked, with partial last blocks, along the last and the first axis.
    let x = b.input(vec![f32t(&[4, 7], ties(14, 28, 1.0)), f32t(&[4, 7], ties(15, 28, 0.25))]);
    let s = b.cst(scales(&[4, 3], 16));
    let z = b.cst(i8t(&[4, 3], 17));
    b.node(ql(1, 3, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[2, 7], 18));
    let z = b.cst(u8t(&[2, 7], 19));
    b.node(ql(0, 2, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[4, 1], 20));
    b.node(ql(-1, 8, DType::U8), vec![Some(x), Some(s)], 1);
    let x = b.input(vec![f32t(&[2, 3, 9], ties(21, 54, 1.0))]);
    let s = b.cst(scales(&[2, 3, 3], 22));
    let z = b.cst(u8t(&[2, 3, 3], 23));
    b.node(ql(-1, 4, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[2, 2, 9], 24));
    b.node(ql(1, 2, DType::I8), vec![Some(x), Some(s)], 1);
    // Blocks along the last axis with block 4 exactly dividing it (vector steps per block).
    let x = b.input(vec![f32t(&[3, 16], ties(25, 48, 1.0))]);
    let s = b.cst(scales(&[3, 4], 26));
    let z = b.cst(i8t(&[3, 4], 27));
    b.node(ql(1, 4, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    // Steps of 16 lanes with parameters per element (per axis along the last axis) and per
    // block of 32 along a row of 70 (two 16-lane steps, a 4-lane one, a scalar tail).
    let x = b.input(vec![f32t(&[3, 37], ties(43, 111, 1.0)), f32t(&[3, 37], ties(44, 111, 0.5))]);
    let s = b.cst(scales(&[37], 45));
    let z = b.cst(u8t(&[37], 46));
    b.node(ql(-1, 0, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let z = b.cst(i8t(&[37], 47));
    b.node(ql(1, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let x = b.input(vec![f32t(&[2, 70], ties(48, 140, 1.0))]);
    let s = b.cst(scales(&[2, 3], 49));
    let z = b.cst(i8t(&[2, 3], 50));
    b.node(ql(1, 32, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    // ONNX test_quantizelinear: one vector step and a 2-element tail.
    let x = b.input(vec![f32t(&[6], vec![0., 2., 3., 1000., -254., -1000.])]);
    let s = b.cst(Tensor::scalar(2.0f32));
    let z = b.cst(Tensor::scalar(128u8));
    b.node(ql(0, 0, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    // A scalar x, an empty x, and a one-element axis.
    let x = b.input(vec![Tensor::scalar(2.5f32), Tensor::scalar(-7.5f32)]);
    let s = b.cst(Tensor::scalar(1.0f32));
    b.node(ql(0, 0, DType::I8), vec![Some(x), Some(s)], 1);
    let x = b.input(vec![f32t(&[0, 3], vec![])]);
    let s = b.cst(scales(&[3], 28));
    b.node(ql(1, 0, DType::U8), vec![Some(x), Some(s)], 1);
    b.check(0.0, 0.0);
}

#[test]
fn quantize_f16_and_i32_inputs_and_f16_scales() {
    let mut b = Build::new("quantize_types", 2);
    // An f16 scale divides in f16: 2.5002 becomes a tie.
    let mut v = ties(30, 21, 1.0);
    v.extend([2.5002, 3.4998, -2.5002, 0.7, 1000.4]);
    let x = b.input(vec![f32t(&[26], v), f32t(&[26], ties(31, 26, 0.5))]);
    for (s, zp) in [(1.0f32, Some(Tensor::scalar(3u8))), (0.3, None)] {
        let sc = b.cst(f16s(s));
        let z = zp.map(|z| b.cst(z));
        b.node(ql(0, 0, DType::U8), vec![Some(x), Some(sc), z], 1);
    }
    // f16 scale per axis.
    let x2 = b.input(vec![f32t(&[2, 13], ties(32, 26, 1.0))]);
    let s = b.cst(Tensor::from_f32(DType::F16, scales(&[13], 33).to_f32()));
    let z = b.cst(i8t(&[13], 34));
    b.node(ql(1, 0, DType::I8), vec![Some(x2), Some(s), Some(z)], 1);
    // f16 x with an f32 scale.
    let xh = |seed| Tensor::from_f32(DType::F16, f32t(&[5, 6], ties(seed, 30, 1.0)).to_f32());
    let x = b.input(vec![xh(35), xh(36)]);
    let s = b.cst(scales(&[6], 37));
    let z = b.cst(u8t(&[6], 38));
    b.node(ql(-1, 0, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(Tensor::scalar(0.5f32));
    b.node(ql(0, 0, DType::I8), vec![Some(x), Some(s)], 1);
    // f16 x with an f16 scale, per axis.
    let s = b.cst(Tensor::from_f32(DType::F16, scales(&[6], 41).to_f32()));
    let z = b.cst(i8t(&[6], 42));
    b.node(ql(1, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    // i32 x, including values that f32 rounds.
    let iv = |seed| {
        let mut v: Vec<i32> = rand(seed, 19, -1000.0, 1000.0).into_iter().map(|v| v as i32).collect();
        v.extend([i32::MAX, i32::MIN, 16_777_217, -3, 3]);
        Tensor::from_vec(&[24], v).unwrap()
    };
    let x = b.input(vec![iv(39), iv(40)]);
    let s = b.cst(Tensor::scalar(2.0f32));
    let z = b.cst(Tensor::scalar(-3i8));
    b.node(ql(0, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(f16s(0.75));
    b.node(ql(0, 0, DType::U8), vec![Some(x), Some(s)], 1);
    b.check(0.0, 0.0);
}

#[test]
fn quantize_dequantize_pairs_per_tensor_per_axis_and_blocked() {
    // The fused pair gives the interpreter's bits (its reference is the two operators' evals),
    // over ties, saturation, infinities and NaN (which dequantizes to 0).
    let qdq =
        |axis, block_size, output_dtype| Op::QuantizeDequantize(QuantizeDequantize { axis, block_size, output_dtype });
    let mut b = Build::new("quantize_dequantize", 2);
    let x = b.input(vec![f32t(&[37], ties(80, 37, 1.0)), f32t(&[37], ties(81, 37, 0.5))]);
    for (s, zp, dt) in [
        (0.5f32, Some(Tensor::scalar(128u8)), DType::U8),
        (1.0, Some(Tensor::from_vec(&[1], vec![-3i8]).unwrap()), DType::I8),
        (2.0, None, DType::U8),
        (0.25, None, DType::I8),
    ] {
        let sc = b.cst(Tensor::scalar(s));
        let z = zp.map(|z| b.cst(z));
        b.node(qdq(1, 0, dt), vec![Some(x), Some(sc), z], 1);
    }
    let x = b.input(vec![f32t(&[3, 37], ties(82, 111, 1.0))]);
    let s = b.cst(scales(&[37], 83));
    let z = b.cst(u8t(&[37], 84));
    b.node(qdq(-1, 0, DType::U8), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[3], 85));
    let z = b.cst(i8t(&[3], 86));
    b.node(qdq(0, 0, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let x = b.input(vec![f32t(&[2, 70], ties(87, 140, 1.0))]);
    let s = b.cst(scales(&[2, 3], 88));
    let z = b.cst(i8t(&[2, 3], 89));
    b.node(qdq(1, 32, DType::I8), vec![Some(x), Some(s), Some(z)], 1);
    let x = b.input(vec![Tensor::scalar(2.5f32)]);
    let s = b.cst(Tensor::scalar(1.0f32));
    b.node(qdq(0, 0, DType::U8), vec![Some(x), Some(s)], 1);
    b.check(0.0, 0.0);
}

#[test]
fn dequantize_per_tensor_per_axis_and_blocked() {
    let mut b = Build::new("dequantize", 2);
    let x = b.input(vec![u8t(&[37], 50), u8t(&[37], 51)]);
    let s = b.cst(Tensor::scalar(2.0f32));
    let z = b.cst(Tensor::scalar(128u8));
    b.node(dql(0, 0), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(Tensor::scalar(0.37f32));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    // Per axis, i8 and u8, axes in both spellings; parameters as inputs too.
    let x = b.input(vec![i8t(&[3, 5, 4], 52), i8t(&[3, 5, 4], 53)]);
    let s = b.cst(scales(&[5], 54));
    let z = b.cst(i8t(&[5], 55));
    b.node(dql(1, 0), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.input(vec![scales(&[4], 56)]);
    let z = b.input(vec![i8t(&[4], 57)]);
    b.node(dql(-1, 0), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[3], 58));
    b.node(dql(-3, 0), vec![Some(x), Some(s)], 1);
    // Blocked with partial blocks.
    let x = b.input(vec![u8t(&[4, 7], 59)]);
    let s = b.cst(scales(&[4, 3], 60));
    let z = b.cst(u8t(&[4, 3], 61));
    b.node(dql(1, 3), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(scales(&[2, 7], 62));
    b.node(dql(0, 3), vec![Some(x), Some(s)], 1);
    let x = b.input(vec![i8t(&[3, 16], 63)]);
    let s = b.cst(scales(&[3, 4], 64));
    let z = b.cst(i8t(&[3, 4], 65));
    b.node(dql(1, 4), vec![Some(x), Some(s), Some(z)], 1);
    // Steps of 16 lanes: per axis along the last axis (i8 and u8), per block of 32, i32 x.
    let x = b.input(vec![i8t(&[3, 37], 69), i8t(&[3, 37], 70)]);
    let s = b.cst(scales(&[37], 71));
    let z = b.cst(i8t(&[37], 72));
    b.node(dql(-1, 0), vec![Some(x), Some(s), Some(z)], 1);
    let x = b.input(vec![u8t(&[2, 70], 73)]);
    let s = b.cst(scales(&[2, 3], 74));
    let z = b.cst(u8t(&[2, 3], 75));
    b.node(dql(1, 32), vec![Some(x), Some(s), Some(z)], 1);
    let z = b.cst(u8t(&[70], 76));
    let s = b.cst(scales(&[70], 77));
    b.node(dql(1, 0), vec![Some(x), Some(s), Some(z)], 1);
    let iv: Vec<i32> = rand(78, 37, -1e6, 1e6).into_iter().map(|v| v as i32).collect();
    let x = b.input(vec![Tensor::from_vec(&[37], iv).unwrap()]);
    let s = b.cst(Tensor::scalar(0.25f32));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    // i32 x with no zero point or a zero one.
    let iv = Tensor::from_vec(&[9], vec![-3i32, 1 << 20, i32::MAX, i32::MIN, 0, 7, 16_777_217, -1, 5]).unwrap();
    let x = b.input(vec![iv]);
    let s = b.cst(Tensor::scalar(0.5f32));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    let z = b.cst(Tensor::scalar(0i32));
    b.node(dql(0, 0), vec![Some(x), Some(s), Some(z)], 1);
    // f16 scale: f16 output rounded once.
    let x = b.input(vec![i8t(&[11], 66)]);
    let s = b.cst(f16s(0.1));
    let z = b.cst(Tensor::scalar(1i8));
    b.node(dql(0, 0), vec![Some(x), Some(s), Some(z)], 1);
    let s = b.cst(Tensor::from_f32(DType::F16, scales(&[11], 67).to_f32()));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    // Scalar and empty x.
    let x = b.input(vec![Tensor::scalar(3u8)]);
    let s = b.cst(Tensor::scalar(1.5f32));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    let x = b.input(vec![Tensor::from_vec(&[2, 0], Vec::<i8>::new()).unwrap()]);
    let s = b.cst(scales(&[2], 68));
    b.node(dql(0, 0), vec![Some(x), Some(s)], 1);
    b.check(0.0, 0.0);
}

#[test]
fn dynamic_quantize_ranges_and_output_prefixes() {
    let op = || Op::DynamicQuantizeLinear(DynamicQuantizeLinear {});
    let sets = |shape: &[usize], seed: u64| -> Vec<Tensor> {
        let n: usize = shape.iter().product();
        let mixed = rand(seed, n, -3.0, 5.0);
        let pos: Vec<f32> = rand(seed + 1, n, 0.5, 9.0);
        let neg: Vec<f32> = rand(seed + 2, n, -7.0, -0.25);
        let zeros = vec![0.0; n];
        let mut nan = rand(seed + 3, n, -1.0, 2.0);
        nan[n / 2] = f32::NAN;
        // Ties: a range of 2.55 gives scale 0.01, so multiples of 0.005 are near .5 steps.
        let mut tie: Vec<f32> = (0..n).map(|i| (i as f32 * 0.005) - 0.5).collect();
        tie[0] = 2.05;
        let mut inf = rand(seed + 4, n, -1.0, 2.0);
        inf[n - 1] = f32::INFINITY;
        // Both infinities: an infinite scale and a NaN zero point, which saturates to 0.
        let mut infs = rand(seed + 5, n, -1.0, 2.0);
        infs[0] = f32::NEG_INFINITY;
        infs[n - 1] = f32::INFINITY;
        [mixed, pos, neg, zeros, nan, tie, inf, infs].into_iter().map(|v| f32t(shape, v)).collect()
    };
    let mut b = Build::new("dynquant", 8);
    for (k, shape) in [vec![6], vec![3, 4], vec![2, 3, 7], vec![1], vec![67]].iter().enumerate() {
        let x = b.input(sets(shape, 70 + 10 * k as u64));
        b.node(op(), vec![Some(x)], 3);
    }
    // Prefixes of the outputs.
    let x = b.input(sets(&[13], 130));
    b.node(op(), vec![Some(x)], 1);
    b.node(op(), vec![Some(x)], 2);
    b.check(0.0, 0.0);
}

#[test]
fn dynamic_quantize_of_an_empty_tensor() {
    let mut b = Build::new("dynquant_empty", 1);
    let x = b.input(vec![f32t(&[0, 3], vec![])]);
    b.node(Op::DynamicQuantizeLinear(DynamicQuantizeLinear {}), vec![Some(x)], 3);
    b.check(0.0, 0.0);
}
