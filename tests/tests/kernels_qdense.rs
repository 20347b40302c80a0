//! The QDense kernel (the fused integer product with its f32 dequantization, bias and
//! activation) on every target preset against the reference interpreter: u8 and i8
//! operands, zero points absent, per tensor and (b) per column, a scale per tensor or per row,
//! b's per tensor or per column, with and without bias, batched and 1-D activations, odd
//! sizes (vector edges along N, row edges, odd K, several row blocks of x86_64-v3's
//! `vpmaddwd` path), run-time and constant weights. Without an
//! activation the kernel performs the interpreter's operations (exact integer sum, one
//! conversion, the scale product, one multiplication, one addition), so it must be bit-exact;
//! with one, within the activations' polynomial error.

use slmtvm_ir::ops::{QDense, UnaryOp};
use slmtvm_ir::{DType, Op, Tensor};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::Build;

/// Random u8 or i8 values over the whole range.
fn q8(rng: &mut Lcg, dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
    match dtype {
        DType::I8 => Tensor::from_vec(shape, v.into_iter().map(|x| x as i8).collect()).unwrap(),
        _ => Tensor::from_vec(shape, v).unwrap(),
    }
}

/// Random positive scales (like a quantizer's) of `shape`.
fn scales(rng: &mut Lcg, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (0..n).map(|_| (1e-3 + rng.unit() * 0.02) as f32).collect()).unwrap()
}

/// One case: a's shape (last dim K), N, dtypes, which optional parts are present.
struct Case {
    a: Vec<usize>,
    n: usize,
    a_dt: DType,
    b_dt: DType,
    zero_points: usize,
    row_scales: bool,
    column_scales: bool,
    bias: bool,
}

fn cases() -> Vec<Case> {
    let c = |a: &[usize], n, a_dt, b_dt, zero_points, row_scales, column_scales, bias| Case {
        a: a.to_vec(),
        n,
        a_dt,
        b_dt,
        zero_points,
        row_scales,
        column_scales,
        bias,
    };
    use DType::{I8, U8};
    vec![
        // ONNX Runtime's quantize_dynamic form: u8 activations with a zero point, i8 weights
        // with a zero point per column, scales per tensor and per column, a bias.
        c(&[2, 7, 40], 24, U8, I8, 2, false, true, true),
        // --quantize int8's: i8 activations with a scale per row, no zero points.
        c(&[2, 5, 33], 19, I8, I8, 0, true, true, false),
        c(&[13, 64], 37, I8, I8, 0, true, true, true),
        // Per-tensor everything, u8 weights, odd N (scalar columns), a 1-D activation.
        c(&[29], 11, U8, U8, 1, false, false, true),
        c(&[9, 17], 3, U8, I8, 1, false, false, false),
        // Wide N (several column tiles and an 8-column vector edge), rows beyond a tile.
        c(&[1, 3, 96], 72, U8, I8, 2, true, true, true),
        // A long odd K: x86_64-v3's A scratch holds 24 rows, so 50 rows take three blocks.
        c(&[50, 4001], 21, U8, I8, 2, false, true, true),
    ]
}

fn build(name: &str, act: Option<UnaryOp>, weights_as_inputs: bool) -> Build {
    let mut b = Build::new(name, 2);
    let mut rng = Lcg(0x5eed_0d0e);
    for c in cases() {
        let k = *c.a.last().unwrap();
        let a = b.input(vec![q8(&mut rng, c.a_dt, &c.a), q8(&mut rng, c.a_dt, &c.a)]);
        let wt = q8(&mut rng, c.b_dt, &[k, c.n]);
        let w = if weights_as_inputs { b.input(vec![wt]) } else { b.cst(wt) };
        let az = (c.zero_points >= 1).then(|| b.cst(q8(&mut rng, c.a_dt, &[])));
        let bz = match c.zero_points {
            0 => None,
            1 => Some(b.cst(q8(&mut rng, c.b_dt, &[1]))),
            _ => Some(b.cst(q8(&mut rng, c.b_dt, &[c.n]))),
        };
        let mut sa_shape = c.a.clone();
        *sa_shape.last_mut().unwrap() = 1;
        let sa = if c.row_scales {
            b.input(vec![scales(&mut rng, &sa_shape), scales(&mut rng, &sa_shape)])
        } else {
            b.input(vec![scales(&mut rng, &[]), scales(&mut rng, &[])])
        };
        let sb_shape = if c.column_scales { [c.n] } else { [1] };
        let sb = b.cst(scales(&mut rng, &sb_shape));
        let bias = c.bias.then(|| {
            let v: Vec<f32> = (0..c.n).map(|_| (rng.unit() * 4.0 - 2.0) as f32).collect();
            b.cst(Tensor::from_vec(&[c.n], v).unwrap())
        });
        let mut ins = vec![Some(a), Some(w), az, bz, Some(sa), Some(sb)];
        if bias.is_some() {
            ins.push(bias);
        }
        b.node(Op::QDense(QDense { activation: act.clone() }), ins, 1);
    }
    b
}

#[test]
fn qdense_is_bit_exact_on_every_preset() {
    build("qdense", None, false).check(0.0, 0.0);
}

#[test]
fn qdense_with_run_time_weights_is_bit_exact() {
    build("qdense_in", None, true).check(0.0, 0.0);
}

#[test]
fn qdense_with_activations() {
    build("qdense_gelu", Some(UnaryOp::Gelu { tanh_approx: false }), false).check(1e-5, 1e-6);
    build("qdense_relu", Some(UnaryOp::Relu), false).check(0.0, 0.0);
}
