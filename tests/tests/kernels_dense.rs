//! Dense and FusedMlp kernels on every runnable target preset against the reference
//! interpreter: odd shapes (1, 3, 17, 33, 64, 65 …), every fusable activation, with and without
//! bias, several row blocks and F chunks, and symbolic leading dims run at several sizes.

use slmtvm_ir::ops::{Dense, FusedMlp, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::{Build, check_against_interpreter};

const ACTS: [Option<UnaryOp>; 7] = [
    None,
    Some(UnaryOp::Relu),
    Some(UnaryOp::Gelu { tanh_approx: false }),
    Some(UnaryOp::Gelu { tanh_approx: true }),
    Some(UnaryOp::Silu),
    Some(UnaryOp::Sigmoid),
    Some(UnaryOp::Tanh),
];

/// A Dense node over x of `xdims` (two data sets) and a constant W [K, N] (and bias [N]).
fn dense(b: &mut Build, rng: &mut Lcg, xdims: &[usize], n: usize, act: Option<UnaryOp>, bias: bool) {
    let k = *xdims.last().unwrap();
    let x = b.input((0..2).map(|_| rng.tensor(xdims, 2.0)).collect());
    let w = b.cst(rng.tensor(&[k, n], 1.0));
    let bias = bias.then(|| b.cst(rng.tensor(&[n], 1.0)));
    b.node(Op::Dense(Dense { activation: act }), vec![Some(x), Some(w), bias], 1);
}

#[test]
fn dense_shapes_activations_and_bias() {
    let mut rng = Lcg(11);
    let mut b = Build::new("dense", 2);
    for (i, act) in ACTS.iter().enumerate() {
        // (x dims, N): rows 1, 3, 17, 33, 65; K 1, 3, 17, 64, 65; N 1, 3, 8, 17, 33, 64, 65.
        let shapes: [(&[usize], usize); 6] =
            [(&[1, 17], 33), (&[3, 64], 65), (&[17, 3], 8), (&[2, 5, 33], 17), (&[65, 65], 3), (&[33, 1], 64)];
        for (j, (xd, n)) in shapes.iter().enumerate() {
            dense(&mut b, &mut rng, xd, *n, act.clone(), (i + j) % 2 == 0);
        }
    }
    dense(&mut b, &mut rng, &[7], 5, Some(UnaryOp::Relu), true);
    dense(&mut b, &mut rng, &[4, 9], 1, Some(UnaryOp::Silu), false);
    b.check(1e-4, 1e-4);
}

/// A FusedMlp node: x of `xdims` [.., H], constant weights [H, F], [H, F], [F, H2].
fn mlp(b: &mut Build, rng: &mut Lcg, xdims: &[usize], f: usize, h2: usize, act: UnaryOp) {
    let h = *xdims.last().unwrap();
    let x = b.input((0..2).map(|_| rng.tensor(xdims, 2.0)).collect());
    let wg = b.cst(rng.tensor(&[h, f], 1.0));
    let wu = b.cst(rng.tensor(&[h, f], 1.0));
    let wd = b.cst(rng.tensor(&[f, h2], 0.5));
    b.node(Op::FusedMlp(FusedMlp { activation: act }), vec![Some(x), Some(wg), Some(wu), Some(wd)], 1);
}

#[test]
fn fused_mlp_blocks_chunks_and_activations() {
    let mut rng = Lcg(12);
    let mut b = Build::new("fused_mlp", 2);
    // Rows 1, 3, 17 (one block and an edge), 33, 70; F within one chunk, at a chunk's multiple, and
    // spanning several chunks with an edge (16 rows: 128-column chunks; 1 row: 2048).
    mlp(&mut b, &mut rng, &[1, 16], 64, 16, UnaryOp::Silu);
    mlp(&mut b, &mut rng, &[3, 17], 33, 5, UnaryOp::Silu);
    mlp(&mut b, &mut rng, &[17, 8], 300, 65, UnaryOp::Silu);
    mlp(&mut b, &mut rng, &[1, 33, 12], 256, 12, UnaryOp::Gelu { tanh_approx: false });
    mlp(&mut b, &mut rng, &[2, 3, 5], 7, 3, UnaryOp::Gelu { tanh_approx: true });
    mlp(&mut b, &mut rng, &[5, 4], 129, 1, UnaryOp::Relu);
    mlp(&mut b, &mut rng, &[4, 3], 24, 4, UnaryOp::Sigmoid);
    mlp(&mut b, &mut rng, &[1, 64], 1, 64, UnaryOp::Tanh);
    mlp(&mut b, &mut rng, &[9], 2100, 3, UnaryOp::Silu);
    // Two blocks on the assembled microkernels too (64 rows, then 6).
    mlp(&mut b, &mut rng, &[70, 8], 40, 9, UnaryOp::Silu);
    b.check(1e-4, 1e-4);
}

#[test]
fn dense_and_fused_mlp_with_symbolic_rows() {
    // One object for s <= 40 run at s = 1, 5 and 40: x [1, s, 8] (run-time rows), x [s, 2, 8]
    // (rows s·2) and x [2, s, 8] (every physical row computed).
    let mut rng = Lcg(13);
    let mut g = Graph::new("dense_sym");
    let ty = |s: &str| TypeInfo::new(DType::F32, Shape::parse(s).unwrap());
    let shapes = ["[1, s<=40, 8]", "[s<=40, 2, 8]", "[2, s<=40, 8]"];
    let xs: Vec<_> = shapes.iter().enumerate().map(|(i, s)| g.add_input(format!("x{i}"), ty(s))).collect();
    let w = g.add_const("w", rng.tensor(&[8, 19], 1.0));
    let bias = g.add_const("b", rng.tensor(&[19], 1.0));
    let (wg, wu, wd) = (
        g.add_const("wg", rng.tensor(&[8, 40], 1.0)),
        g.add_const("wu", rng.tensor(&[8, 40], 1.0)),
        g.add_const("wd", rng.tensor(&[40, 6], 0.5)),
    );
    for (i, &x) in xs.iter().enumerate() {
        let d = g.add_node(
            format!("d{i}"),
            Op::Dense(Dense { activation: Some(UnaryOp::Gelu { tanh_approx: false }) }),
            vec![Some(x), Some(w), Some(bias)],
            &[format!("d{i}")],
        );
        let m = g.add_node(
            format!("m{i}"),
            Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }),
            vec![Some(x), Some(wg), Some(wu), Some(wd)],
            &[format!("m{i}")],
        );
        g.outputs.extend([d[0], m[0]]);
    }
    g.infer().unwrap();
    let sets: Vec<Vec<Tensor>> = [1usize, 5, 40]
        .iter()
        .map(|&s| vec![rng.tensor(&[1, s, 8], 2.0), rng.tensor(&[s, 2, 8], 2.0), rng.tensor(&[2, s, 8], 2.0)])
        .collect();
    let failures = check_against_interpreter(&g, &sets, 1e-4, 1e-4);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
