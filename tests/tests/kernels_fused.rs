//! The fused operators the optimizer produces — RmsNorm, Silu and Attention — compiled for every
//! runnable target preset and compared with the reference interpreter (many nodes share one
//! graph, so one compile, link and run per preset checks them all; the largest error per
//! preset is printed), and their reference semantics checked against the decomposed IR
//! graphs they replace, on random values.

use slmtvm_ir::ops::{Attention, BinaryOp, Cast, MatMul, Reduce, ReduceKind, RmsNorm, Softmax, Transpose, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Tensor, TypeInfo, ValueId, interp};
use slmtvm_tests::cross::{Build, Job, run_batch, runnable_presets};
use slmtvm_tests::{Lcg, compare, target_dir};

/// A deterministic pseudo-random generator.
/// Test tensors of a dtype (f32, or f16 through the interpreter's Cast).
trait TensorOf {
    /// A tensor of `dt` with elements uniform in [-a, a).
    fn tensor_of(&mut self, dt: DType, dims: &[usize], a: f32) -> Tensor;
}

impl TensorOf for Lcg {
    fn tensor_of(&mut self, dt: DType, dims: &[usize], a: f32) -> Tensor {
        let t = self.tensor(dims, a);
        match dt {
            DType::F32 => t,
            _ => Op::Cast(Cast { to: dt, saturate: false }).eval(&[Some(&t)]).unwrap().remove(0),
        }
    }
}

/// Runs `b`'s graph on every runnable preset against the interpreter; prints the largest
/// absolute error per preset and panics with every mismatch.
fn check(b: Build, rtol: f64, atol: f64) {
    let mut b = b;
    b.g.infer().unwrap();
    check_graph(&b.g, &b.sets, rtol, atol);
}

/// [`check`] of an inferred graph and its data sets (of any shapes its symbols allow).
fn check_graph(g: &Graph, sets: &[Vec<Tensor>], rtol: f64, atol: f64) {
    let sets = sets.to_vec();
    let want: Vec<Vec<Tensor>> = sets.iter().map(|s| interp::run(g, s).unwrap()).collect();
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target can be linked and run here");
    let mut failures = Vec::new();
    for t in presets {
        let dir = target_dir().join("slmtvm-cross").join(format!("{}-{}-{}", g.name, t.name(), std::process::id()));
        let res = run_batch(&t, &[Job { graph: g, data: sets.clone() }], &dir);
        assert_eq!(res[0].len(), sets.len());
        let mut max_err = 0f64;
        for (d, (got, want)) in res[0].iter().zip(&want).enumerate() {
            let got = match got {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{} data set {d}: {e}", t.name()));
                    continue;
                }
            };
            for (k, (w, o)) in want.iter().zip(got).enumerate() {
                for (x, y) in w.to_f64().iter().zip(o.to_f64().iter()) {
                    if x.is_finite() && y.is_finite() {
                        max_err = max_err.max((x - y).abs());
                    }
                }
                if let Err(m) = compare(w, o, rtol, atol) {
                    let node = g.nodes.iter().find(|n| n.outputs.contains(&g.outputs[k])).unwrap();
                    let ins: Vec<String> = node.inputs.iter().flatten().map(|&v| g.ty(v).to_string()).collect();
                    failures.push(format!("{} data set {d}: {:?} on {ins:?}: {m}", t.name(), node.op));
                }
            }
        }
        eprintln!("{} {}: max abs error {max_err:.3e}", g.name, t.name());
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

fn rms(b: &mut Build, rng: &mut Lcg, dt: DType, dims: &[usize], axis: i64, sdims: &[usize]) {
    let x = b.input((0..2).map(|_| rng.tensor_of(dt, dims, 4.0)).collect());
    let s = b.input((0..2).map(|_| rng.tensor_of(dt, sdims, 2.0)).collect());
    b.node(Op::RmsNorm(RmsNorm { axis, epsilon: 1e-5 }), vec![Some(x), Some(s)], 1);
}

#[test]
fn rms_norm_shapes_axes_and_scales() {
    let mut rng = Lcg(1);
    let mut b = Build::new("rmsnorm", 2);
    // 16, 21, 63, 65: the output pass's 16-element steps, its 4-lane steps and scalar tail.
    for n in [1usize, 3, 4, 5, 16, 17, 21, 63, 64, 65, 384] {
        rms(&mut b, &mut rng, DType::F32, &[3, n], -1, &[n]);
    }
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 5], -2, &[3, 5]);
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 5], -2, &[5]);
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 5], -2, &[3, 1]);
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 8], -1, &[1]);
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 8], -1, &[2, 3, 8]);
    rms(&mut b, &mut rng, DType::F32, &[2, 3, 7], 0, &[7]);
    rms(&mut b, &mut rng, DType::F32, &[7], 0, &[7]);
    rms(&mut b, &mut rng, DType::F32, &[3, 0], -1, &[0]);
    rms(&mut b, &mut rng, DType::F32, &[0, 4], -1, &[4]);
    check(b, 1e-5, 1e-5);
}

#[test]
fn rms_norm_f16() {
    let mut rng = Lcg(2);
    let mut b = Build::new("rmsnorm_f16", 2);
    for n in [1usize, 5, 17, 64] {
        rms(&mut b, &mut rng, DType::F16, &[3, n], -1, &[n]);
        rms(&mut b, &mut rng, DType::F16, &[2, 3, n], -2, &[3, n]);
    }
    check(b, 4e-3, 4e-3);
}

#[test]
fn silu_f32_and_f16() {
    let mut rng = Lcg(3);
    let mut b = Build::new("silu", 2);
    for (dt, dims) in
        [(DType::F32, vec![1usize]), (DType::F32, vec![3, 7]), (DType::F32, vec![2, 64]), (DType::F16, vec![5, 9])]
    {
        let x = b.input((0..2).map(|_| rng.tensor_of(dt, &dims, 12.0)).collect());
        b.node(Op::Unary(UnaryOp::Silu), vec![Some(x)], 1);
    }
    // Edge values: zeros, infinities, NaN, and the ranges where e^x is subnormal.
    let edge = vec![0.0f32, -0.0, f32::INFINITY, f32::NAN, 1e-30, -1e-30, -88.0, -95.0, -103.0, -150.0, 20.0, 100.0];
    let x = b.input(vec![Tensor::from_vec(&[edge.len()], edge).unwrap()]);
    b.node(Op::Unary(UnaryOp::Silu), vec![Some(x)], 1);
    check(b, 1e-5, 1e-6);
}

/// One-input or two-input graph helpers for the decomposition equivalences.
fn node(g: &mut Graph, op: Op, ins: &[ValueId]) -> ValueId {
    let name = format!("n{}", g.nodes.len());
    g.add_node(name.clone(), op, ins.iter().map(|&v| Some(v)).collect(), &[name])[0]
}

#[test]
fn rms_norm_equals_its_decomposition() {
    let mut rng = Lcg(4);
    for (dims, axis, sdims) in [
        (vec![3usize, 5], -1i64, vec![5usize]),
        (vec![2, 3, 4], 1, vec![3, 4]),
        (vec![2, 3, 4], -1, vec![1]),
        (vec![4, 17], 0, vec![17]),
    ] {
        let eps = 1e-3f32;
        let fused = {
            let mut g = Graph::new("fused");
            let x = g.add_input("x", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&dims)));
            let s = g.add_input("s", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&sdims)));
            let y = node(&mut g, Op::RmsNorm(RmsNorm { axis, epsilon: eps }), &[x, s]);
            g.outputs = vec![y];
            g.infer().unwrap();
            g
        };
        let decomposed = {
            let mut g = Graph::new("decomposed");
            let x = g.add_input("x", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&dims)));
            let s = g.add_input("s", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&sdims)));
            let rank = dims.len() as i64;
            let first = if axis < 0 { axis + rank } else { axis };
            let sq = node(&mut g, Op::Binary(BinaryOp::Mul), &[x, x]);
            let mean = node(
                &mut g,
                Op::Reduce(Reduce { kind: ReduceKind::Mean, axes: Some((first..rank).collect()), keepdims: true }),
                &[sq],
            );
            let e = g.add_const("eps", Tensor::scalar(eps));
            let me = node(&mut g, Op::Binary(BinaryOp::Add), &[mean, e]);
            let r = node(&mut g, Op::Unary(UnaryOp::Sqrt), &[me]);
            let n = node(&mut g, Op::Binary(BinaryOp::Div), &[x, r]);
            let n = node(&mut g, Op::Cast(Cast { to: DType::F32, saturate: false }), &[n]);
            let y = node(&mut g, Op::Binary(BinaryOp::Mul), &[n, s]);
            g.outputs = vec![y];
            g.infer().unwrap();
            g
        };
        for _ in 0..4 {
            let ins = vec![rng.tensor_of(DType::F32, &dims, 3.0), rng.tensor_of(DType::F32, &sdims, 2.0)];
            let a = interp::run(&fused, &ins).unwrap();
            let b = interp::run(&decomposed, &ins).unwrap();
            compare(&b[0], &a[0], 1e-6, 1e-6).unwrap_or_else(|m| panic!("{dims:?} axis {axis}: {m}"));
        }
    }
}

#[test]
fn silu_equals_x_times_sigmoid() {
    let mut rng = Lcg(5);
    let mut fused = Graph::new("silu");
    let x = fused.add_input("x", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&[257])));
    let y = node(&mut fused, Op::Unary(UnaryOp::Silu), &[x]);
    fused.outputs = vec![y];
    fused.infer().unwrap();
    let mut dec = Graph::new("x_sigmoid");
    let x = dec.add_input("x", TypeInfo::new(DType::F32, slmtvm_ir::Shape::known(&[257])));
    let s = node(&mut dec, Op::Unary(UnaryOp::Sigmoid), &[x]);
    let y = node(&mut dec, Op::Binary(BinaryOp::Mul), &[x, s]);
    dec.outputs = vec![y];
    dec.infer().unwrap();
    for _ in 0..4 {
        let ins = vec![rng.tensor_of(DType::F32, &[257], 30.0)];
        let a = interp::run(&fused, &ins).unwrap();
        let b = interp::run(&dec, &ins).unwrap();
        compare(&b[0], &a[0], 1e-6, 1e-30).unwrap();
    }
}

/// One Attention node: Q [b, hq, s, d], K [b, hkv, t, d], V [b, hkv, t, dv], and a mask of
/// `mask` dims (f32 uniform in [-2, 2), or bool with about one key in four hidden).
fn attn(
    b: &mut Build,
    rng: &mut Lcg,
    dims: [usize; 7],
    scale: Option<f32>,
    causal: bool,
    mask: Option<(DType, &[usize])>,
) {
    let [nb, hq, hkv, s, t, d, dv] = dims;
    let q = b.input((0..2).map(|_| rng.tensor_of(DType::F32, &[nb, hq, s, d], 2.0)).collect());
    let k = b.input((0..2).map(|_| rng.tensor_of(DType::F32, &[nb, hkv, t, d], 2.0)).collect());
    let v = b.input((0..2).map(|_| rng.tensor_of(DType::F32, &[nb, hkv, t, dv], 3.0)).collect());
    let m = mask.map(|(dt, md)| {
        let sets = (0..2)
            .map(|_| match dt {
                DType::Bool => {
                    let n: usize = md.iter().product();
                    Tensor::from_vec(md, (0..n).map(|_| rng.uniform(1.0) > -0.5).collect::<Vec<bool>>()).unwrap()
                }
                _ => rng.tensor_of(dt, md, 2.0),
            })
            .collect();
        b.input(sets)
    });
    b.node(Op::Attention(Attention { scale, causal }), vec![Some(q), Some(k), Some(v), m], 1);
}

#[test]
fn attention_shapes_heads_masks_and_causality() {
    let mut rng = Lcg(6);
    let mut b = Build::new("attention", 2);
    // [B, Hq, Hkv, S, T, D, Dv]
    attn(&mut b, &mut rng, [1, 1, 1, 1, 1, 4, 4], None, false, None);
    attn(&mut b, &mut rng, [2, 3, 3, 5, 7, 3, 5], None, false, None);
    attn(&mut b, &mut rng, [1, 4, 2, 3, 9, 16, 8], Some(0.3), false, None);
    attn(&mut b, &mut rng, [2, 4, 1, 4, 6, 7, 3], None, false, None);
    attn(&mut b, &mut rng, [1, 2, 2, 6, 6, 8, 8], None, true, None);
    attn(&mut b, &mut rng, [1, 4, 2, 3, 8, 5, 6], None, true, None);
    attn(&mut b, &mut rng, [1, 4, 2, 3, 8, 5, 6], None, false, Some((DType::F32, &[3, 8])));
    attn(&mut b, &mut rng, [2, 4, 1, 3, 8, 5, 6], None, false, Some((DType::F32, &[2, 4, 3, 8])));
    attn(&mut b, &mut rng, [2, 2, 2, 3, 5, 4, 4], None, false, Some((DType::F32, &[2, 1, 1, 5])));
    attn(&mut b, &mut rng, [2, 2, 2, 3, 5, 4, 4], None, true, Some((DType::F32, &[1, 2, 3, 1])));
    attn(&mut b, &mut rng, [1, 4, 2, 5, 7, 6, 3], None, false, Some((DType::Bool, &[1, 4, 5, 7])));
    attn(&mut b, &mut rng, [1, 4, 4, 2, 9, 12, 5], None, true, Some((DType::Bool, &[9])));
    attn(&mut b, &mut rng, [1, 2, 1, 4, 11, 33, 17], Some(0.125), true, Some((DType::F32, &[4, 11])));
    // Several query blocks and register tiles: 37 rows (blocks of 4·k rows and an edge),
    // Dv = 28 (three 8-column tiles, one 4-column vector and scalars), one decode row, and a
    // key count whose scores fill the scratch so blocks hold 2 rows.
    attn(&mut b, &mut rng, [2, 2, 1, 37, 70, 32, 28], None, true, Some((DType::F32, &[2, 1, 1, 70])));
    attn(&mut b, &mut rng, [1, 3, 3, 1, 33, 8, 19], None, false, Some((DType::F32, &[1, 1, 1, 33])));
    attn(&mut b, &mut rng, [1, 1, 1, 5, 1500, 4, 8], None, false, None);
    check(b, 1e-5, 1e-5);
}

#[test]
fn attention_equals_its_decomposition() {
    // Softmax(Q·Kᵀ·scale + mask)·V with K/V heads repeated for the grouped queries, built from
    // IR ops; Hq = Hkv here and the causal part as an additive mask.
    let mut rng = Lcg(7);
    for (nb, h, s, t, d, dv, causal) in
        [(1usize, 2usize, 3usize, 5usize, 4usize, 3usize, false), (2, 1, 4, 6, 5, 2, true)]
    {
        let shape = |v: &[usize]| slmtvm_ir::Shape::known(v);
        let mut fused = Graph::new("fused");
        let q = fused.add_input("q", TypeInfo::new(DType::F32, shape(&[nb, h, s, d])));
        let k = fused.add_input("k", TypeInfo::new(DType::F32, shape(&[nb, h, t, d])));
        let v = fused.add_input("v", TypeInfo::new(DType::F32, shape(&[nb, h, t, dv])));
        let m = fused.add_input("m", TypeInfo::new(DType::F32, shape(&[s, t])));
        let y = node(&mut fused, Op::Attention(Attention { scale: None, causal }), &[q, k, v, m]);
        fused.outputs = vec![y];
        fused.infer().unwrap();
        let mut dec = Graph::new("decomposed");
        let q = dec.add_input("q", TypeInfo::new(DType::F32, shape(&[nb, h, s, d])));
        let k = dec.add_input("k", TypeInfo::new(DType::F32, shape(&[nb, h, t, d])));
        let v = dec.add_input("v", TypeInfo::new(DType::F32, shape(&[nb, h, t, dv])));
        let m = dec.add_input("m", TypeInfo::new(DType::F32, shape(&[s, t])));
        let kt = node(&mut dec, Op::Transpose(Transpose { perm: Some(vec![0, 1, 3, 2]) }), &[k]);
        let sc = node(&mut dec, Op::MatMul(MatMul {}), &[q, kt]);
        let f = dec.add_const("scale", Tensor::scalar(1.0 / (d as f32).sqrt()));
        let sc = node(&mut dec, Op::Binary(BinaryOp::Mul), &[sc, f]);
        let mut sc = node(&mut dec, Op::Binary(BinaryOp::Add), &[sc, m]);
        if causal {
            let c: Vec<f32> = (0..s * t).map(|x| if x % t > x / t + t - s { f32::NEG_INFINITY } else { 0.0 }).collect();
            let c = dec.add_const("causal", Tensor::from_vec(&[s, t], c).unwrap());
            sc = node(&mut dec, Op::Binary(BinaryOp::Add), &[sc, c]);
        }
        let p = node(&mut dec, Op::Softmax(Softmax { axis: -1 }), &[sc]);
        let y = node(&mut dec, Op::MatMul(MatMul {}), &[p, v]);
        dec.outputs = vec![y];
        dec.infer().unwrap();
        for _ in 0..3 {
            let ins = vec![
                rng.tensor_of(DType::F32, &[nb, h, s, d], 2.0),
                rng.tensor_of(DType::F32, &[nb, h, t, d], 2.0),
                rng.tensor_of(DType::F32, &[nb, h, t, dv], 3.0),
                rng.tensor_of(DType::F32, &[s, t], 1.0),
            ];
            let a = interp::run(&fused, &ins).unwrap();
            let b = interp::run(&dec, &ins).unwrap();
            compare(&b[0], &a[0], 1e-5, 1e-6).unwrap_or_else(|e| panic!("causal {causal}: {e}"));
        }
    }
}

#[test]
fn attention_with_a_symbolic_key_length() {
    // One object built for t <= 16, run at t = 5 and t = 16: a static query block over the
    // keys with a float mask [3, t] and the causal offset t - 3, and causal self-attention
    // whose output [1, 2, t, 3] is itself symbolic.
    let mut rng = Lcg(8);
    let mut g = Graph::new("attention_sym");
    let ty = |s: &str| TypeInfo::new(DType::F32, slmtvm_ir::Shape::parse(s).unwrap());
    let q1 = g.add_input("q1", ty("[1, 4, 3, 6]"));
    let k1 = g.add_input("k1", ty("[1, 2, t<=16, 6]"));
    let v1 = g.add_input("v1", ty("[1, 2, t<=16, 5]"));
    let m1 = g.add_input("m1", ty("[3, t<=16]"));
    let q2 = g.add_input("q2", ty("[1, 2, t<=16, 4]"));
    let k2 = g.add_input("k2", ty("[1, 2, t<=16, 4]"));
    let v2 = g.add_input("v2", ty("[1, 2, t<=16, 3]"));
    let y1 = node(&mut g, Op::Attention(Attention { scale: None, causal: true }), &[q1, k1, v1, m1]);
    let y2 = node(&mut g, Op::Attention(Attention { scale: Some(0.4), causal: true }), &[q2, k2, v2]);
    g.outputs = vec![y1, y2];
    g.infer().unwrap();
    assert_eq!(g.ty(y2).to_string(), "f32[1, 2, t<=16, 3]");
    let sets: Vec<Vec<Tensor>> = [5usize, 16]
        .iter()
        .map(|&t| {
            [
                vec![1, 4, 3, 6],
                vec![1, 2, t, 6],
                vec![1, 2, t, 5],
                vec![3, t],
                vec![1, 2, t, 4],
                vec![1, 2, t, 4],
                vec![1, 2, t, 3],
            ]
            .iter()
            .map(|d| rng.tensor_of(DType::F32, d, 2.0))
            .collect()
        })
        .collect();
    check_graph(&g, &sets, 1e-5, 1e-5);
}
