//! Elementwise kernels (Unary, Binary, Clip, Where, Cast) compiled for every target preset and
//! compared with the reference interpreter: every operator × every dtype it accepts, on odd
//! sizes, rank 0, size-0 dims, [1]-shaped operands and broadcasting of each operand, with edge
//! values (NaN, ±inf, -0.0, huge values, integer extremes). Many graphs share one executable
//! per preset (`run_batch`), so each test links once per preset.
//!
//! Integer division by zero, which the interpreter refuses, is checked against expected values.

use slmtvm_ir::ops::{BinaryOp, Cast, Clip, UnaryOp, Where};
use slmtvm_ir::{DType, Graph, Op, Tensor, TypeInfo, ValueId};
use slmtvm_tests::compare;
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};

const ALL: [DType; 7] = [DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool];
const NUMERIC: [DType; 6] = [DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64];

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// What values a generated tensor holds.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Random values with edge values mixed in (every few elements).
    Edge,
    /// Like `Edge` without zeros (integer divisors).
    NonZero,
    /// Few distinct values, so comparisons meet equal operands.
    Pool,
    /// Moderate values only: floats in [-4, 4], integers in [-20, 20] (u8: [0, 20]).
    Tame,
}

const F32_EDGES: [f32; 22] = [
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    -0.0,
    0.0,
    1e30,
    -1e30,
    1e-30,
    0.5,
    -2.5,
    3.0,
    300.5,
    -300.5,
    3e9,
    -2_147_483_648.0,
    2_147_483_648.0,
    2_147_483_520.0,
    9.3e18,
    -9.3e18,
    255.9,
    65519.0,
    70000.0,
];

const F16_EDGES: [u16; 12] =
    [0x7e00, 0x7c00, 0xfc00, 0x8000, 0x0000, 0x7bff, 0xfbff, 0x0001, 0x3800, 0xc100, 0x4200, 0x03ff];

fn i64_edges(dt: DType) -> Vec<i64> {
    match dt {
        DType::I8 => vec![-128, 127, -1, 0, 1],
        DType::U8 => vec![0, 255, 1, 128, 127],
        DType::I32 => vec![i32::MIN as i64, i32::MAX as i64, -1, 0, 1],
        _ => vec![i64::MIN, i64::MAX, -1, 0, 1, 1 << 40],
    }
}

/// The raw f16 bits of a random moderate value (|x| in [2^-5, 2^5)).
fn f16_bits(rng: &mut Rng) -> u16 {
    let sign = (rng.below(2) as u16) << 15;
    let exp = (10 + rng.below(10) as u16) << 10;
    sign | exp | rng.below(1024) as u16
}

fn f16_of(v: f32) -> u16 {
    // Exact for the values used here (small integers and halves).
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a == 0 {
        return sign;
    }
    let exp = ((a >> 23) as i32 - 127 + 15) as u16;
    sign | (exp << 10) | ((a >> 13) & 0x3ff) as u16
}

fn tensor(dt: DType, shape: &[usize], kind: Kind, rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let edge = |rng: &mut Rng| kind == Kind::Edge || kind == Kind::NonZero && rng.below(4) == 0;
    match dt {
        DType::F32 => {
            let v = (0..n)
                .map(|_| match kind {
                    Kind::Pool => [-1.0, 0.0, -0.0, 1.0, 2.5, f32::NAN, f32::INFINITY][rng.below(7) as usize],
                    Kind::Tame => rng.uniform(-4.0, 4.0),
                    _ if rng.below(4) == 0 => {
                        let e = F32_EDGES[rng.below(F32_EDGES.len() as u64) as usize];
                        if kind == Kind::NonZero && e == 0.0 { 1.5 } else { e }
                    }
                    _ => rng.uniform(-8.0, 8.0),
                })
                .collect();
            Tensor::from_vec(shape, v).unwrap()
        }
        DType::F16 => {
            let bits: Vec<u16> = (0..n)
                .map(|_| match kind {
                    Kind::Pool => [0xbc00, 0x0000, 0x8000, 0x3c00, 0x4100, 0x7e00, 0x7c00][rng.below(7) as usize],
                    Kind::Tame => f16_of((rng.below(33) as f32 - 16.0) / 4.0),
                    _ if rng.below(4) == 0 => F16_EDGES[rng.below(F16_EDGES.len() as u64) as usize],
                    _ => f16_bits(rng),
                })
                .map(|b| if kind == Kind::NonZero && b & 0x7fff == 0 { 0x3c00 } else { b })
                .collect();
            let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
            Tensor::from_le_bytes(DType::F16, shape, &bytes).unwrap()
        }
        DType::Bool => Tensor::from_vec(shape, (0..n).map(|_| rng.below(2) == 1).collect()).unwrap(),
        _ => {
            let edges = i64_edges(dt);
            let v: Vec<i64> = (0..n)
                .map(|_| {
                    let x = match kind {
                        Kind::Pool => rng.below(5) as i64 - 2,
                        Kind::Tame => rng.below(41) as i64 - 20,
                        _ if edge(rng) => edges[rng.below(edges.len() as u64) as usize],
                        _ => rng.next() as i64,
                    };
                    let x = if dt == DType::U8 { x.rem_euclid(256) } else { x };
                    if kind == Kind::NonZero && x == 0 { 3 } else { x }
                })
                .collect();
            ints(dt, shape, v)
        }
    }
}

/// An integer tensor of `dt` from i64 values (wrapped to the width).
fn ints(dt: DType, shape: &[usize], v: Vec<i64>) -> Tensor {
    match dt {
        DType::I8 => Tensor::from_vec(shape, v.iter().map(|&x| x as i8).collect()).unwrap(),
        DType::U8 => Tensor::from_vec(shape, v.iter().map(|&x| x as u8).collect()).unwrap(),
        DType::I32 => Tensor::from_vec(shape, v.iter().map(|&x| x as i32).collect()).unwrap(),
        DType::I64 => Tensor::from_vec(shape, v).unwrap(),
        DType::Bool => Tensor::from_vec(shape, v.iter().map(|&x| x != 0).collect()).unwrap(),
        _ => panic!("not an integer dtype"),
    }
}

/// A graph under construction with its one data set.
struct G {
    g: Graph,
    data: Vec<Tensor>,
    rtol: f64,
    atol: f64,
}

impl G {
    fn new(name: &str, rtol: f64, atol: f64) -> G {
        G { g: Graph::new(name), data: Vec::new(), rtol, atol }
    }

    fn input(&mut self, t: Tensor) -> ValueId {
        let name = format!("in{}", self.g.inputs.len());
        let id = self.g.add_input(name, TypeInfo::new(t.dtype(), t.static_shape()));
        self.data.push(t);
        id
    }

    fn cst(&mut self, t: Tensor) -> ValueId {
        let name = format!("c{}", self.g.consts.len());
        self.g.add_const(name, t)
    }

    fn node(&mut self, op: Op, ins: Vec<Option<ValueId>>) -> ValueId {
        let k = self.g.nodes.len();
        self.g.add_node(format!("n{k}"), op, ins, &[format!("v{k}")])[0]
    }

    fn out(&mut self, op: Op, ins: Vec<Option<ValueId>>) {
        let v = self.node(op, ins);
        self.g.outputs.push(v);
    }

    fn done(mut self) -> (Graph, Vec<Tensor>, f64, f64) {
        assert!(self.g.inputs.len() <= 64 && self.g.outputs.len() <= 64, "{}: too many values", self.g.name);
        self.g.infer().unwrap_or_else(|e| panic!("{}: {e}", self.g.name));
        (self.g, self.data, self.rtol, self.atol)
    }
}

/// Runs every graph on every runnable preset (one executable per preset) and compares each
/// output with the interpreter's; panics listing every mismatch.
fn check(cases: Vec<(Graph, Vec<Tensor>, f64, f64)>) {
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target can be linked and run here");
    let want: Vec<Vec<Tensor>> = cases
        .iter()
        .map(|(g, d, _, _)| slmtvm_ir::interp::run(g, d).unwrap_or_else(|e| panic!("{}: interpreter: {e}", g.name)))
        .collect();
    let jobs: Vec<Job> = cases.iter().map(|(g, d, _, _)| Job { graph: g, data: vec![d.clone()] }).collect();
    let mut failures = Vec::new();
    for t in presets {
        let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!(
            "ew-{}-{}-{}",
            cases[0].0.name,
            t.name(),
            std::process::id()
        ));
        let res = run_batch(&t, &jobs, &dir);
        for ((r, (g, _, rtol, atol)), w) in res.iter().zip(&cases).zip(&want) {
            match &r[0] {
                Err(e) => failures.push(format!("{} {}: {e}", t.name(), g.name)),
                Ok(got) => {
                    for (k, (w, o)) in w.iter().zip(got).enumerate() {
                        let (rt, at) = if w.dtype().is_float() { (*rtol, *atol) } else { (0.0, 0.0) };
                        if let Err(m) = compare(w, o, rt, at) {
                            let node = g.nodes.iter().find(|n| n.outputs[0] == g.outputs[k]).unwrap();
                            let ins: Vec<String> =
                                node.inputs.iter().map(|i| i.map_or("-".into(), |v| format!("{}", g.ty(v)))).collect();
                            failures.push(format!(
                                "{} {}: output {k} ({:?} on {}): {m}",
                                t.name(),
                                g.name,
                                node.op,
                                ins.join(", ")
                            ));
                        }
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

const UNARY_SHAPES: [&[usize]; 7] = [&[], &[1], &[7], &[2, 3, 5], &[0, 4], &[4, 1, 9], &[17]];

fn unary_graph(name: &str, dt: DType, ops: &[UnaryOp], kind: Kind, rtol: f64, atol: f64, rng: &mut Rng) -> G {
    let mut g = G::new(name, rtol, atol);
    for s in UNARY_SHAPES {
        let x = g.input(tensor(dt, s, kind, rng));
        for op in ops {
            g.out(Op::Unary(op.clone()), vec![Some(x)]);
        }
    }
    g
}

#[test]
fn unary_every_op_and_dtype() {
    let mut rng = Rng(1);
    let float_ops = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Relu,
        UnaryOp::HardSigmoid { alpha: 0.2, beta: 0.5 },
        UnaryOp::HardSigmoid { alpha: -1.5, beta: 0.25 },
    ];
    let mut cases = vec![
        unary_graph("un_f32", DType::F32, &float_ops, Kind::Edge, 1e-6, 1e-7, &mut rng).done(),
        // f16: the f32 result of HardSigmoid may round to the neighbouring f16.
        unary_graph("un_f16", DType::F16, &float_ops, Kind::Edge, 1e-3, 1e-7, &mut rng).done(),
    ];
    let mut g = G::new("un_int", 0.0, 0.0);
    for dt in ALL.into_iter().filter(|d| !d.is_float()) {
        let ops: Vec<UnaryOp> = match dt {
            DType::Bool => vec![UnaryOp::Not],
            DType::U8 => vec![UnaryOp::Abs],
            _ => vec![UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Relu],
        };
        for s in [&[][..], &[1], &[13], &[3, 0], &[2, 9]] {
            let x = g.input(tensor(dt, s, Kind::Edge, &mut rng));
            for op in &ops {
                g.out(Op::Unary(op.clone()), vec![Some(x)]);
            }
        }
    }
    cases.push(g.done());
    // Identity of every dtype, on a computed value (an input's own view is no kernel).
    let mut g = G::new("un_identity", 0.0, 0.0);
    for dt in ALL {
        let x = g.input(tensor(dt, &[11], Kind::Edge, &mut rng));
        let y = g.input(tensor(dt, &[11], Kind::Edge, &mut rng));
        let c = g.input(tensor(DType::Bool, &[11], Kind::Edge, &mut rng));
        let w = g.node(Op::Where(Where {}), vec![Some(c), Some(x), Some(y)]);
        g.out(Op::Unary(UnaryOp::Identity), vec![Some(w)]);
    }
    cases.push(g.done());
    check(cases);
}

#[test]
fn unary_math_functions_f32_and_f16() {
    let mut rng = Rng(9);
    let ops = [
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Erf,
        UnaryOp::Gelu { tanh_approx: true },
        UnaryOp::Gelu { tanh_approx: false },
    ];
    let mut cases = Vec::new();
    for (name, kind) in [("edge", Kind::Edge), ("tame", Kind::Tame)] {
        cases.push(unary_graph(&format!("math_f32_{name}"), DType::F32, &ops, kind, 1e-5, 1e-6, &mut rng).done());
        // f16: an f32 result one ulp off may round to the neighbouring f16.
        cases.push(unary_graph(&format!("math_f16_{name}"), DType::F16, &ops, kind, 1e-3, 1e-6, &mut rng).done());
    }
    // Sin and Cos within their accurate range (|x| < 12867), with the hardest arguments
    // near multiples of π/2.
    let mut g = G::new("trig", 1e-5, 2e-6);
    let mut v: Vec<f32> = vec![0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-30, -1e-8];
    let pi = std::f32::consts::PI;
    v.extend([pi / 2.0, pi, -1.5 * pi, 2.0 * pi, 3.5 * pi, 12_000.0, -4000.0 * pi, 355.0, 1e4]);
    v.extend((0..60).map(|_| rng.uniform(-100.0, 100.0)));
    let n = v.len();
    let x = g.input(Tensor::from_vec(&[n], v).unwrap());
    let y = g.input(tensor(DType::F32, &[3, 5], Kind::Tame, &mut rng));
    let h = g.input(tensor(DType::F16, &[2, 9], Kind::Tame, &mut rng));
    for op in [UnaryOp::Sin, UnaryOp::Cos] {
        for v in [x, y, h] {
            g.out(Op::Unary(op.clone()), vec![Some(v)]);
        }
    }
    cases.push(g.done());
    check(cases);
}

/// `(a, b)` shape pairs: equal, broadcast of either operand along any axis, rank 0, [1],
/// size 0.
const PAIRS: [(&[usize], &[usize]); 10] = [
    (&[2, 3, 5], &[2, 3, 5]),
    (&[2, 3, 5], &[5]),
    (&[2, 3, 5], &[3, 1]),
    (&[1], &[4, 7]),
    (&[], &[6]),
    (&[9], &[]),
    (&[2, 1, 4], &[1, 3, 1]),
    (&[0, 3], &[3]),
    (&[4, 1], &[1, 0]),
    (&[3, 8], &[1, 8]),
];

#[test]
fn binary_arithmetic_every_dtype_and_broadcast() {
    let mut rng = Rng(2);
    let mut cases = Vec::new();
    for dt in NUMERIC {
        // f32 and f16 arithmetic is computed in f32 on both sides: exact.
        let mut g = G::new(&format!("arith_{dt}"), 0.0, 0.0);
        for (sa, sb) in PAIRS {
            let a = g.input(tensor(dt, sa, Kind::Edge, &mut rng));
            let b = g.input(tensor(dt, sb, Kind::NonZero, &mut rng));
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                g.out(Op::Binary(op), vec![Some(a), Some(b)]);
            }
        }
        cases.push(g.done());
    }
    // A constant operand, and an operand that is both inputs.
    let mut g = G::new("arith_const", 0.0, 0.0);
    let x = g.input(tensor(DType::F32, &[5, 6], Kind::Edge, &mut rng));
    let c = g.cst(tensor(DType::F32, &[6], Kind::Tame, &mut rng));
    g.out(Op::Binary(BinaryOp::Mul), vec![Some(x), Some(c)]);
    g.out(Op::Binary(BinaryOp::Sub), vec![Some(c), Some(x)]);
    g.out(Op::Binary(BinaryOp::Add), vec![Some(x), Some(x)]);
    let i = g.input(tensor(DType::I32, &[7], Kind::Edge, &mut rng));
    let ci = g.cst(ints(DType::I32, &[1], vec![-7]));
    g.out(Op::Binary(BinaryOp::Div), vec![Some(i), Some(ci)]);
    cases.push(g.done());
    check(cases);
}

#[test]
fn comparisons_and_logic_every_dtype() {
    let mut rng = Rng(3);
    let mut cases = Vec::new();
    let cmps = [BinaryOp::Equal, BinaryOp::Less, BinaryOp::LessOrEqual, BinaryOp::Greater, BinaryOp::GreaterOrEqual];
    for dt in ALL {
        let mut g = G::new(&format!("cmp_{dt}"), 0.0, 0.0);
        for (k, (sa, sb)) in PAIRS.iter().enumerate() {
            let kind = if k % 2 == 0 { Kind::Pool } else { Kind::Edge };
            let a = g.input(tensor(dt, sa, kind, &mut rng));
            let b = g.input(tensor(dt, sb, kind, &mut rng));
            let ops: Vec<BinaryOp> =
                if dt == DType::Bool { vec![BinaryOp::Equal, BinaryOp::And, BinaryOp::Or] } else { cmps.to_vec() };
            for op in ops {
                g.out(Op::Binary(op), vec![Some(a), Some(b)]);
            }
        }
        cases.push(g.done());
    }
    check(cases);
}

#[test]
fn integer_pow_every_exponent_dtype() {
    let mut rng = Rng(4);
    let mut g = G::new("pow_int", 0.0, 0.0);
    for base in [DType::I32, DType::I64] {
        for exp in [DType::I8, DType::U8, DType::I32, DType::I64] {
            for (sa, sb) in [(&[3, 7][..], &[3, 7][..]), (&[], &[9]), (&[5, 1], &[4])] {
                let n: usize = sa.iter().product();
                // Nonzero bases (0 to a negative power is an error in the interpreter).
                let bv: Vec<i64> = (0..n)
                    .map(|_| match rng.below(4) {
                        0 => [-1, 1, 2, -2, 3][rng.below(5) as usize],
                        1 => (rng.next() as i64) | 1,
                        _ => rng.below(13) as i64 - 6,
                    })
                    .map(|v| if v == 0 { 5 } else { v })
                    .collect();
                let m: usize = sb.iter().product();
                let ev: Vec<i64> = (0..m)
                    .map(|_| if exp == DType::U8 { rng.below(70) as i64 } else { rng.below(80) as i64 - 10 })
                    .collect();
                let b = g.input(ints(base, sa, bv));
                let e = g.input(ints(exp, sb, ev));
                g.out(Op::Binary(BinaryOp::Pow), vec![Some(b), Some(e)]);
            }
        }
    }
    check(vec![g.done()]);
}

#[test]
fn float_pow_every_exponent_dtype() {
    let mut rng = Rng(10);
    let mut cases = Vec::new();
    let pairs: [(&[usize], &[usize]); 4] = [(&[3, 7], &[3, 7]), (&[], &[9]), (&[5, 1], &[4]), (&[13], &[1])];
    for base in [DType::F32, DType::F16] {
        let rtol = if base == DType::F16 { 1e-3 } else { 1e-6 };
        let mut g = G::new(&format!("pow_{base}"), rtol, 1e-6);
        for exp in NUMERIC {
            for (k, (sa, sb)) in pairs.iter().enumerate() {
                let ek = if k % 2 == 0 { Kind::Pool } else { Kind::Tame };
                let b = g.input(tensor(base, sa, if k == 3 { Kind::Tame } else { Kind::Edge }, &mut rng));
                let e = g.input(tensor(exp, sb, ek, &mut rng));
                g.out(Op::Binary(BinaryOp::Pow), vec![Some(b), Some(e)]);
            }
        }
        cases.push(g.done());
    }
    // Constant exponents that need no exp/log (1, 2, 3, -1, 0.5), of several dtypes and
    // shapes (one broadcasting the output), and a non-uniform one.
    let mut g = G::new("pow_const", 1e-6, 0.0);
    let f16s = |v: &[u16]| {
        let b: Vec<u8> = v.iter().flat_map(|b| b.to_le_bytes()).collect();
        Tensor::from_le_bytes(DType::F16, &[v.len()], &b).unwrap()
    };
    let exps = [
        Tensor::from_vec(&[], vec![2.0f32]).unwrap(),
        ints(DType::I64, &[1], vec![2]),
        f16s(&[0x4200]),
        Tensor::from_vec(&[], vec![-1.0f32]).unwrap(),
        Tensor::from_vec(&[1, 1], vec![0.5f32]).unwrap(),
        ints(DType::I32, &[], vec![1]),
        Tensor::from_vec(&[2, 1, 1], vec![2.0f32, 2.0]).unwrap(),
        Tensor::from_vec(&[2], vec![0.5f32, 3.0]).unwrap(),
    ];
    for base in [DType::F32, DType::F16] {
        let x = g.input(tensor(base, &[3, 2], Kind::Edge, &mut rng));
        let y = g.input(tensor(base, &[19], Kind::Edge, &mut rng));
        for e in &exps {
            let c = g.cst(e.clone());
            g.out(Op::Binary(BinaryOp::Pow), vec![Some(x), Some(c)]);
            if e.shape().len() < 2 && e.shape().iter().product::<usize>() == 1 {
                g.out(Op::Binary(BinaryOp::Pow), vec![Some(y), Some(c)]);
            }
        }
    }
    cases.push(g.done());
    // Integer bases with float exponents, truncated like a Cast (no exponent that makes an
    // exact integer of an inexact power).
    let mut g = G::new("pow_int_float", 0.0, 0.0);
    let exps = [
        2.0f32,
        3.0,
        -1.0,
        0.0,
        -0.0,
        1.3,
        -0.7,
        2.7,
        0.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        31.0,
        40.0,
        63.0,
        1.0,
    ];
    for base in [DType::I32, DType::I64] {
        for (sa, sb) in [(&[5, 16][..], &[16][..]), (&[], &[16]), (&[4, 1], &[1, 16]), (&[2, 16], &[16])] {
            let n: usize = sa.iter().product();
            let bv: Vec<i64> = if sa == [2, 16] {
                // Perfect squares (exact half-integer powers) and their negatives.
                (0..32).map(|k: i64| if k < 16 { k * k } else { -(k - 16) * (k - 16) }).collect()
            } else {
                (0..n).map(|_| rng.below(41) as i64 - 20).collect()
            };
            let b = g.input(ints(base, sa, bv));
            let e = g.input(Tensor::from_vec(sb, exps.to_vec()).unwrap());
            g.out(Op::Binary(BinaryOp::Pow), vec![Some(b), Some(e)]);
            let bytes: Vec<u8> = [0x4000u16, 0x3c00, 0xbc00, 0x0000, 0x3800, 0x7e00, 0x4b00, 0x5000]
                .iter()
                .flat_map(|b| b.to_le_bytes())
                .collect();
            let h = g.input(Tensor::from_le_bytes(DType::F16, &[8], &bytes).unwrap());
            let b8 = g.input(ints(base, &[3, 1], vec![3, -2, 7]));
            g.out(Op::Binary(BinaryOp::Pow), vec![Some(b8), Some(h)]);
        }
    }
    cases.push(g.done());
    check(cases);
}

#[test]
fn clip_every_dtype_with_constant_and_runtime_bounds() {
    let mut rng = Rng(5);
    let mut cases = Vec::new();
    for dt in NUMERIC {
        let mut g = G::new(&format!("clip_{dt}"), 0.0, 0.0);
        for s in [&[3, 7][..], &[], &[9], &[0, 2]] {
            let x = g.input(tensor(dt, s, Kind::Edge, &mut rng));
            let (lo, hi) = match dt {
                DType::F32 => {
                    (Tensor::from_vec(&[], vec![-1.5f32]).unwrap(), Tensor::from_vec(&[], vec![2.0f32]).unwrap())
                }
                DType::F16 => {
                    let t = |b: u16| Tensor::from_le_bytes(DType::F16, &[], &b.to_le_bytes()).unwrap();
                    (t(0xbe00), t(0x4000))
                }
                DType::U8 => (ints(dt, &[], vec![10]), ints(dt, &[], vec![200])),
                _ => (ints(dt, &[], vec![-100]), ints(dt, &[], vec![90])),
            };
            let clo = g.cst(lo.clone());
            let chi = g.cst(hi.clone());
            let clip = || Op::Clip(Clip {});
            g.out(clip(), vec![Some(x)]);
            g.out(clip(), vec![Some(x), Some(clo)]);
            g.out(clip(), vec![Some(x), None, Some(chi)]);
            g.out(clip(), vec![Some(x), Some(clo), Some(chi)]);
            // Runtime bounds, [1]-shaped, with lo > hi (hi wins).
            let rlo = g.input(tensor(dt, &[1], Kind::Tame, &mut rng));
            let rhi = g.input(tensor(dt, &[], Kind::Tame, &mut rng));
            g.out(clip(), vec![Some(x), Some(rlo), Some(rhi)]);
            g.out(clip(), vec![Some(x), Some(chi), Some(clo)]);
        }
        cases.push(g.done());
    }
    check(cases);
}

#[test]
fn where_every_dtype_and_three_way_broadcast() {
    let mut rng = Rng(6);
    let triples: [(&[usize], &[usize], &[usize]); 7] = [
        (&[2, 3, 8], &[2, 3, 8], &[2, 3, 8]),
        (&[8], &[2, 3, 8], &[]),
        (&[2, 1, 1], &[3], &[2, 1]),
        (&[], &[5, 4], &[4]),
        (&[1], &[0, 3], &[3]),
        (&[3, 1], &[1, 9], &[3, 9]),
        (&[13], &[1], &[13]),
    ];
    let mut cases = Vec::new();
    for dt in ALL {
        let mut g = G::new(&format!("where_{dt}"), 0.0, 0.0);
        for (sc, sx, sy) in triples {
            let c = g.input(tensor(DType::Bool, sc, Kind::Edge, &mut rng));
            let x = g.input(tensor(dt, sx, Kind::Edge, &mut rng));
            let y = g.input(tensor(dt, sy, Kind::Edge, &mut rng));
            g.out(Op::Where(Where {}), vec![Some(c), Some(x), Some(y)]);
            // A constant condition.
            let k = g.cst(tensor(DType::Bool, sc, Kind::Edge, &mut rng));
            g.out(Op::Where(Where {}), vec![Some(k), Some(x), Some(y)]);
        }
        cases.push(g.done());
    }
    check(cases);
}

#[test]
fn cast_every_dtype_pair() {
    let mut rng = Rng(7);
    let mut cases = Vec::new();
    for (k, shape) in [&[37][..], &[2, 0], &[]].into_iter().enumerate() {
        let mut g = G::new(&format!("cast{k}"), 0.0, 0.0);
        for from in ALL {
            let x = g.input(tensor(from, shape, Kind::Edge, &mut rng));
            for to in ALL {
                g.out(Op::Cast(Cast { to, saturate: true }), vec![Some(x)]);
            }
        }
        cases.push(g.done());
    }
    // Every f32 edge value, and exact f16 ties, once each.
    let mut g = G::new("cast_edges", 0.0, 0.0);
    let mut v = F32_EDGES.to_vec();
    v.extend([-0.9, 0.9, 127.5, -128.7, 255.5, 256.0, -1.0, 65520.0, 1e-8, 0.1, 2049.0, 2051.0, 6e-8, 3e-8]);
    let n = v.len();
    let x = g.input(Tensor::from_vec(&[n], v).unwrap());
    for to in ALL {
        g.out(Op::Cast(Cast { to, saturate: true }), vec![Some(x)]);
    }
    let e: Vec<u8> = F16_EDGES.iter().flat_map(|b| b.to_le_bytes()).collect();
    let h = g.input(Tensor::from_le_bytes(DType::F16, &[F16_EDGES.len()], &e).unwrap());
    for to in ALL {
        g.out(Op::Cast(Cast { to, saturate: true }), vec![Some(h)]);
    }
    let big = vec![i64::MIN, i64::MAX, (1 << 24) + 1, 65520, 65519, 70000, -(1 << 40) - 3, 300, -129];
    let l = g.input(ints(DType::I64, &[big.len()], big));
    for to in ALL {
        g.out(Op::Cast(Cast { to, saturate: true }), vec![Some(l)]);
    }
    cases.push(g.done());
    check(cases);
}

#[test]
fn in_place_chains() {
    let mut rng = Rng(8);
    let mut g = G::new("chain", 1e-6, 1e-7);
    for dt in [DType::F32, DType::F16, DType::I32, DType::I8] {
        let x = g.input(tensor(dt, &[5, 9], Kind::Edge, &mut rng));
        let y = g.input(tensor(dt, &[9], Kind::NonZero, &mut rng));
        let c = g.input(tensor(DType::Bool, &[5, 9], Kind::Edge, &mut rng));
        let lo = g.input(tensor(dt, &[], Kind::Tame, &mut rng));
        let a = g.node(Op::Unary(UnaryOp::Neg), vec![Some(x)]);
        let b = g.node(Op::Unary(UnaryOp::Relu), vec![Some(a)]);
        let d = g.node(Op::Binary(BinaryOp::Add), vec![Some(b), Some(y)]);
        let e = g.node(Op::Binary(BinaryOp::Mul), vec![Some(x), Some(d)]);
        let f = g.node(Op::Clip(Clip {}), vec![Some(e), Some(lo)]);
        let h = g.node(Op::Where(Where {}), vec![Some(c), Some(f), Some(x)]);
        let k = g.node(Op::Binary(BinaryOp::Div), vec![Some(h), Some(y)]);
        g.out(Op::Binary(BinaryOp::Sub), vec![Some(k), Some(x)]);
    }
    check(vec![g.done()]);
}

/// Integer division by zero and `0 ^ -n` (errors in the interpreter) give 0; `MIN / -1` wraps.
#[test]
fn integer_division_by_zero_gives_zero() {
    let mut g = Graph::new("divzero");
    let mut data = Vec::new();
    let mut want = Vec::new();
    // (dtype, dividend, divisor, expected quotient)
    type Div = (DType, Vec<i64>, Vec<i64>, Vec<i64>);
    let cases: [Div; 4] = [
        (DType::I32, vec![7, -7, i32::MIN as i64, 5, 0], vec![0, 0, -1, 2, 0], vec![0, 0, i32::MIN as i64, 2, 0]),
        (DType::I64, vec![i64::MIN, 9, -9, i64::MAX], vec![-1, 0, 4, -1], vec![i64::MIN, 0, -2, -i64::MAX]),
        (DType::I8, vec![-128, 5, 100], vec![-1, 0, -3], vec![-128, 0, -33]),
        (DType::U8, vec![200, 7, 255], vec![0, 2, 0], vec![0, 3, 0]),
    ];
    for (k, (dt, a, b, w)) in cases.into_iter().enumerate() {
        let n = a.len();
        let x = g.add_input(format!("a{k}"), TypeInfo::new(dt, slmtvm_ir::Shape::known(&[n])));
        let y = g.add_input(format!("b{k}"), TypeInfo::new(dt, slmtvm_ir::Shape::known(&[n])));
        data.push(ints(dt, &[n], a));
        data.push(ints(dt, &[n], b));
        let q = g.add_node(format!("div{k}"), Op::Binary(BinaryOp::Div), vec![Some(x), Some(y)], &[format!("q{k}")]);
        g.outputs.push(q[0]);
        want.push(ints(dt, &[n], w));
    }
    let x = g.add_input("pb", TypeInfo::new(DType::I32, slmtvm_ir::Shape::known(&[4])));
    let y = g.add_input("pe", TypeInfo::new(DType::I64, slmtvm_ir::Shape::known(&[4])));
    data.push(ints(DType::I32, &[4], vec![0, 0, 2, -1]));
    data.push(ints(DType::I64, &[4], vec![-1, -2, -1, -3]));
    let p = g.add_node("pow", Op::Binary(BinaryOp::Pow), vec![Some(x), Some(y)], &["p".into()]);
    g.outputs.push(p[0]);
    want.push(ints(DType::I32, &[4], vec![0, 0, 0, -1]));
    g.infer().unwrap();
    let mut failures = Vec::new();
    for t in runnable_presets() {
        let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!(
            "ew-divzero-{}-{}",
            t.name(),
            std::process::id()
        ));
        let res = run_batch(&t, &[Job { graph: &g, data: vec![data.clone()] }], &dir);
        match &res[0][0] {
            Err(e) => failures.push(format!("{}: {e}", t.name())),
            Ok(got) => {
                for (k, (w, o)) in want.iter().zip(got).enumerate() {
                    if let Err(m) = compare(w, o, 0.0, 0.0) {
                        failures.push(format!("{}: output {k}: {m}", t.name()));
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
