//! Conv, MaxPool and AveragePool kernels on every target preset against the reference
//! interpreter: 1-D, 2-D and 3-D, groups (depthwise too), strides, dilations, asymmetric pads,
//! every auto_pad mode, with and without bias, odd sizes (vector tails), windows partly or
//! entirely on the padding; pools with ceil_mode, count_include_pad, dilations, NaN inputs, and
//! f16, i8 and u8 inputs; ConvInteger on the same geometries (u8/i8 operands, zero points per
//! tensor and per output channel), bit-exact.

use slmtvm_ir::ops::{AutoPad, Conv, ConvInteger, Pool, PoolKind};
use slmtvm_ir::{DType, Op, Tensor};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::Build;

/// Deterministic pseudo-random values in `[lo, hi)`.
fn rand(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = Lcg(seed);
    rng.bits();
    (0..n).map(|_| lo + (hi - lo) * ((rng.bits() >> 29) as f32 / (1u64 << 24) as f32)).collect()
}

fn f32t(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

fn randt(shape: &[usize], seed: u64) -> Tensor {
    f32t(shape, rand(seed, shape.iter().product(), -1.0, 1.0))
}

fn conv(group: usize, strides: &[usize], dilations: &[usize], pads: &[usize], auto_pad: AutoPad) -> Op {
    let opt = |v: &[usize]| if v.is_empty() { None } else { Some(v.to_vec()) };
    Op::Conv(Conv {
        group,
        kernel_shape: None,
        strides: opt(strides),
        dilations: opt(dilations),
        pads: opt(pads),
        auto_pad,
    })
}

/// One convolution case: x and w shapes, attributes, bias.
struct Case {
    x: Vec<usize>,
    w: Vec<usize>,
    op: Op,
    bias: bool,
}

fn case(x: &[usize], w: &[usize], op: Op, bias: bool) -> Case {
    Case { x: x.to_vec(), w: w.to_vec(), op, bias }
}

fn conv_cases() -> Vec<Case> {
    use AutoPad::*;
    vec![
        // 1-D.
        case(&[2, 3, 11], &[4, 3, 3], conv(1, &[], &[], &[1, 1], NotSet), true),
        case(&[1, 4, 10], &[4, 1, 5], conv(4, &[2], &[], &[2, 1], NotSet), false),
        case(&[1, 2, 9], &[3, 2, 2], conv(1, &[], &[3], &[], SameUpper), true),
        case(&[1, 2, 9], &[3, 2, 4], conv(1, &[2], &[], &[], SameLower), false),
        case(&[1, 2, 8], &[2, 2, 3], conv(1, &[3], &[], &[], Valid), true),
        case(&[1, 1, 1], &[1, 1, 1], conv(1, &[], &[], &[], NotSet), true),
        case(&[1, 3, 17], &[2, 3, 3], conv(1, &[], &[2], &[0, 3], NotSet), false),
        // 2-D.
        case(&[1, 3, 7, 9], &[5, 3, 3, 3], conv(1, &[], &[], &[1, 1, 1, 1], NotSet), true),
        case(&[2, 4, 6, 5], &[6, 2, 3, 2], conv(2, &[2, 1], &[], &[1, 0, 2, 1], NotSet), false),
        case(&[1, 6, 8, 8], &[6, 1, 3, 3], conv(6, &[2, 2], &[], &[], SameUpper), true),
        case(&[1, 2, 9, 10], &[4, 2, 3, 3], conv(1, &[], &[2, 3], &[2, 3, 1, 0], NotSet), true),
        case(&[1, 3, 5, 5], &[2, 3, 1, 1], conv(1, &[], &[], &[], NotSet), false),
        case(&[1, 2, 7, 6], &[3, 2, 5, 4], conv(1, &[1, 2], &[], &[], SameLower), true),
        case(&[1, 1, 3, 3], &[1, 1, 5, 5], conv(1, &[], &[], &[2, 2, 2, 2], NotSet), false),
        case(&[1, 2, 4, 13], &[2, 2, 2, 3], conv(1, &[], &[], &[], Valid), true),
        case(&[1, 1, 3, 4], &[1, 1, 2, 2], conv(1, &[], &[], &[3, 3, 3, 3], NotSet), true),
        case(&[1, 8, 5, 6], &[4, 2, 3, 3], conv(4, &[], &[], &[1, 1, 1, 1], NotSet), true),
        case(&[1, 2, 6, 21], &[3, 2, 3, 5], conv(1, &[2, 1], &[1, 2], &[1, 4, 0, 3], NotSet), false),
        case(&[1, 3, 5, 7], &[3, 1, 3, 3], conv(3, &[], &[], &[], SameUpper), true),
        // Output channels in two full blocks and a remainder, with and without groups.
        case(&[1, 3, 6, 7], &[9, 3, 3, 3], conv(1, &[], &[], &[1, 1, 1, 1], NotSet), true),
        case(&[2, 4, 5, 9], &[18, 2, 3, 1], conv(2, &[1, 2], &[], &[0, 0, 2, 0], NotSet), false),
        // Strided rows wide enough for vector steps (gathered inputs).
        case(&[1, 3, 5, 23], &[5, 3, 3, 3], conv(1, &[1, 2], &[], &[1, 1, 1, 1], NotSet), true),
        case(&[1, 2, 40], &[4, 2, 4], conv(1, &[3], &[2], &[], NotSet), false),
        case(&[1, 4, 3, 30], &[4, 1, 1, 3], conv(4, &[1, 2], &[], &[], SameLower), true),
        // 3-D.
        case(&[1, 2, 5, 6, 7], &[3, 2, 3, 3, 3], conv(1, &[], &[], &[1, 1, 1, 1, 1, 1], NotSet), true),
        case(&[1, 4, 4, 5, 6], &[4, 2, 2, 3, 2], conv(2, &[2, 1, 2], &[1, 2, 1], &[], SameUpper), false),
        case(&[1, 3, 3, 4, 9], &[3, 1, 1, 2, 3], conv(3, &[], &[], &[], Valid), true),
        // Empty batch.
        case(&[0, 2, 5], &[3, 2, 3], conv(1, &[], &[], &[1, 1], NotSet), true),
    ]
}

fn build_convs(name: &str, dtype: DType, weights_as_inputs: bool) -> Build {
    let mut b = Build::new(name, 2);
    let cast = |t: Tensor| if dtype == DType::F32 { t } else { Tensor::from_f32(dtype, t.to_f32()) };
    for (k, c) in conv_cases().into_iter().enumerate() {
        let seed = 100 * k as u64;
        let x = b.input(vec![cast(randt(&c.x, seed)), cast(randt(&c.x, seed + 1))]);
        let w = if weights_as_inputs {
            b.input(vec![cast(randt(&c.w, seed + 2))])
        } else {
            b.cst(cast(randt(&c.w, seed + 2)))
        };
        let bias = c.bias.then(|| b.cst(cast(randt(&c.w[..1], seed + 3))));
        b.node(c.op, vec![Some(x), Some(w), bias], 1);
    }
    b
}

#[test]
fn conv_f32_1d_2d_3d_groups_strides_dilations_pads() {
    build_convs("conv_f32", DType::F32, false).check(1e-4, 1e-5);
}

#[test]
fn conv_f32_with_weights_as_inputs() {
    build_convs("conv_f32_in", DType::F32, true).check(1e-4, 1e-5);
}

#[test]
fn conv_f16() {
    build_convs("conv_f16", DType::F16, false).check(2e-3, 2e-3);
}

/// A random i8 or u8 tensor over the type's whole range.
fn rand_q8(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let v = rand(seed, shape.iter().product(), 0.0, 256.0);
    match dtype {
        DType::I8 => Tensor::from_vec(shape, v.iter().map(|x| (*x as i32 - 128) as i8).collect()).unwrap(),
        _ => Tensor::from_vec(shape, v.iter().map(|x| *x as u8).collect()).unwrap(),
    }
}

/// Every convolution case as ConvInteger of `x` by `w` (run-time inputs or constant weights):
/// without zero points, with per-tensor ones, and with one per output channel for w.
fn build_conv_integers(name: &str, x_dt: DType, w_dt: DType, weights_as_inputs: bool) -> Build {
    let mut b = Build::new(name, 2);
    for (k, c) in conv_cases().into_iter().enumerate() {
        let Op::Conv(conv) = c.op else { unreachable!("conv_cases are Conv") };
        let seed = 300 + 100 * k as u64;
        let x = b.input(vec![rand_q8(&c.x, x_dt, seed), rand_q8(&c.x, x_dt, seed + 1)]);
        let wt = rand_q8(&c.w, w_dt, seed + 2);
        let w = if weights_as_inputs { b.input(vec![wt]) } else { b.cst(wt) };
        let (xz, wz) = match k % 3 {
            0 => (None, None),
            1 => (Some(rand_q8(&[], x_dt, seed + 3)), Some(rand_q8(&[1], w_dt, seed + 4))),
            _ => (Some(rand_q8(&[1], x_dt, seed + 3)), Some(rand_q8(&c.w[..1], w_dt, seed + 4))),
        };
        let xz = xz.map(|t| b.cst(t));
        let wz = wz.map(|t| b.cst(t));
        b.node(Op::ConvInteger(ConvInteger { conv }), vec![Some(x), Some(w), xz, wz], 1);
    }
    b
}

#[test]
fn conv_integer_u8_by_i8_is_exact() {
    build_conv_integers("convint_u8i8", DType::U8, DType::I8, false).check(0.0, 0.0);
}

#[test]
fn conv_integer_i8_by_u8_and_u8_by_u8_with_weights_as_inputs_are_exact() {
    build_conv_integers("convint_i8u8", DType::I8, DType::U8, true).check(0.0, 0.0);
    build_conv_integers("convint_u8u8", DType::U8, DType::U8, true).check(0.0, 0.0);
}

fn pool(kind: PoolKind, k: &[usize], s: &[usize], d: &[usize], pads: &[usize], auto_pad: AutoPad, ceil: bool) -> Pool {
    let opt = |v: &[usize]| if v.is_empty() { None } else { Some(v.to_vec()) };
    Pool {
        kind,
        kernel_shape: k.to_vec(),
        strides: opt(s),
        dilations: opt(d),
        pads: opt(pads),
        auto_pad,
        ceil_mode: ceil,
        count_include_pad: false,
    }
}

/// Pooling geometries: input shape and a max pool with the window attributes.
fn pool_cases() -> Vec<(Vec<usize>, Pool)> {
    use AutoPad::*;
    use PoolKind::Max;
    vec![
        (vec![2, 3, 11], pool(Max, &[3], &[2], &[], &[1, 1], NotSet, false)),
        (vec![2, 3, 11], pool(Max, &[3], &[2], &[], &[1, 1], NotSet, true)),
        (vec![1, 2, 12], pool(Max, &[2], &[], &[3], &[2, 0], NotSet, false)),
        (vec![1, 2, 7, 9], pool(Max, &[3, 3], &[], &[], &[1, 1, 1, 1], NotSet, false)),
        (vec![1, 2, 7, 9], pool(Max, &[2, 2], &[2, 2], &[], &[], NotSet, false)),
        (vec![1, 2, 7, 9], pool(Max, &[2, 2], &[2, 2], &[], &[], NotSet, true)),
        (vec![1, 2, 7, 8], pool(Max, &[3, 3], &[2, 2], &[], &[1, 1, 1, 1], NotSet, true)),
        (vec![1, 1, 2, 2], pool(Max, &[3, 3], &[3, 3], &[], &[1, 1, 1, 1], NotSet, true)),
        (vec![1, 2, 8, 9], pool(Max, &[2, 2], &[], &[2, 2], &[1, 0, 1, 2], NotSet, false)),
        (vec![1, 2, 7, 8], pool(Max, &[3, 2], &[2, 3], &[], &[], SameUpper, false)),
        (vec![1, 2, 7, 8], pool(Max, &[3, 2], &[2, 3], &[], &[], SameLower, false)),
        (vec![1, 1, 5, 5], pool(Max, &[5, 5], &[], &[], &[2, 2, 2, 2], NotSet, false)),
        (vec![1, 1, 3, 3], pool(Max, &[2, 2], &[], &[], &[2, 2, 2, 2], NotSet, false)),
        (vec![1, 2, 5, 13], pool(Max, &[1, 3], &[], &[], &[], NotSet, false)),
        (vec![1, 2, 6, 19], pool(Max, &[3, 4], &[1, 1], &[1, 2], &[1, 2, 1, 3], NotSet, true)),
        (vec![1, 2, 5, 6, 7], pool(Max, &[2, 3, 3], &[2, 2, 1], &[], &[0, 1, 1, 1, 1, 0], NotSet, true)),
        (vec![1, 1, 4, 4, 4], pool(Max, &[2, 2, 2], &[], &[2, 2, 2], &[], NotSet, true)),
        (vec![1, 2, 3, 4, 5], pool(Max, &[3, 3, 3], &[1, 2, 1], &[], &[], SameUpper, false)),
        (vec![0, 2, 5], pool(Max, &[2], &[], &[], &[], NotSet, false)),
    ]
}

/// Every pooling case as a max pool and as average pools with and without padding counted.
fn build_pools(name: &str, dtype: DType, kinds: &[(PoolKind, bool)]) -> Build {
    let mut b = Build::new(name, 2);
    for (k, (shape, p)) in pool_cases().into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let seed = 1000 + 10 * k as u64;
        let vals = |seed: u64, nan: bool| -> Tensor {
            let mut v = rand(seed, n, -4.0, 4.0);
            if nan && n > 3 {
                v[n / 3] = f32::NAN;
            }
            match dtype {
                DType::I8 => Tensor::from_vec(&shape, v.iter().map(|x| (x * 32.0) as i8).collect()).unwrap(),
                DType::U8 => Tensor::from_vec(&shape, v.iter().map(|x| (x * 32.0 + 128.0) as u8).collect()).unwrap(),
                _ => Tensor::from_f32(dtype, f32t(&shape, v).to_f32()),
            }
        };
        let x = b.input(vec![vals(seed, false), vals(seed + 1, true)]);
        for &(kind, include) in kinds {
            let op = Pool { kind, count_include_pad: include, ..p.clone() };
            b.node(Op::Pool(op), vec![Some(x)], 1);
        }
    }
    b
}

const ALL_POOLS: [(PoolKind, bool); 3] =
    [(PoolKind::Max, false), (PoolKind::Average, false), (PoolKind::Average, true)];

#[test]
fn pool_f32_max_and_average() {
    build_pools("pool_f32", DType::F32, &ALL_POOLS).check(1e-6, 1e-6);
}

#[test]
fn pool_f16_max_and_average() {
    build_pools("pool_f16", DType::F16, &ALL_POOLS).check(1e-3, 1e-3);
}

#[test]
fn max_pool_i8_and_u8() {
    build_pools("pool_i8", DType::I8, &[(PoolKind::Max, false)]).check(0.0, 0.0);
    build_pools("pool_u8", DType::U8, &[(PoolKind::Max, false)]).check(0.0, 0.0);
}
