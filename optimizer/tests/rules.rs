//! One start ⇒ goal test per algebra rule: a small graph where the rule applies, the operator
//! counts after optimization, and the reference interpreter's outputs before and after on
//! random values of random shapes (proptest).

use proptest::prelude::*;
use slmtvm_ir::ops::{BinaryOp, Cast, Reshape, Transpose, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, interp};
use slmtvm_optimizer::{Options, optimize};

fn count(g: &Graph, kind: &str) -> usize {
    g.nodes.iter().filter(|n| n.op.kind_name() == kind).count()
}

fn f32s(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(shape, v).unwrap()
}

/// Optimizes `g` (fused attention costed as a vectorized kernel, so that fusions are
/// extracted), checks the rule fired and the outputs are unchanged (up to `tol`).
fn check(g: &Graph, rule: &str, inputs: &[Tensor], tol: f64) -> Graph {
    let (o, r) = optimize(g, &Options::default()).unwrap();
    assert!(r.applied.get(rule).copied().unwrap_or(0) > 0 || rule == "fold", "{rule} did not fire: {}", r.text());
    let a = interp::run(g, inputs).unwrap();
    let b = interp::run(&o, inputs).unwrap();
    for (x, y) in a.iter().zip(&b) {
        slmtvm_tests::compare(x, y, 0.0, tol).unwrap_or_else(|e| panic!("{rule}: outputs differ: {e}"));
    }
    o
}

fn input(g: &mut Graph, dims: &[usize]) -> slmtvm_ir::ValueId {
    g.add_input("x", TypeInfo::new(DType::F32, Shape::known(dims)))
}

fn finish(mut g: Graph, out: slmtvm_ir::ValueId) -> Graph {
    g.outputs = vec![out];
    g.infer().unwrap();
    g
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn transpose_pairs_compose(d0 in 1usize..4, d1 in 1usize..4, d2 in 1usize..4, seed in 0u64..1000, inverse in any::<bool>()) {
        let mut g = Graph::new("t");
        let x = input(&mut g, &[d0, d1, d2]);
        let p2 = if inverse { vec![2, 0, 1] } else { vec![1, 0, 2] };
        let a = g.add_node("t1", Op::Transpose(Transpose { perm: Some(vec![1, 2, 0]) }), vec![Some(x)], &["a".into()])[0];
        let b = g.add_node("t2", Op::Transpose(Transpose { perm: Some(p2) }), vec![Some(a)], &["b".into()])[0];
        let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(b)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "transpose-transpose", &[f32s(&[d0, d1, d2], seed)], 0.0);
        // [1,2,0] then [2,0,1] is the identity: no transpose left; otherwise one.
        prop_assert_eq!(count(&o, "Transpose"), if inverse { 0 } else { 1 });
    }

    #[test]
    fn view_chains_become_one_reshape(d0 in 1usize..5, d1 in 1usize..5, seed in 0u64..1000) {
        let mut g = Graph::new("r");
        let x = input(&mut g, &[d0, d1]);
        let a = g.add_node("u", Op::Unsqueeze(slmtvm_ir::ops::Unsqueeze { axes: vec![0] }), vec![Some(x)], &["a".into()])[0];
        let s = g.add_const("s", Tensor::from_vec(&[1], vec![(d0 * d1) as i64]).unwrap());
        let b = g.add_node("r", Op::Reshape(Reshape { allowzero: false }), vec![Some(a), Some(s)], &["b".into()])[0];
        let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(b)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "reshape-chain", &[f32s(&[d0, d1], seed)], 0.0);
        prop_assert_eq!(count(&o, "Reshape") + count(&o, "Unsqueeze"), 1);
    }

    #[test]
    fn neutral_constants_disappear(n in 1usize..9, seed in 0u64..1000, which in 0usize..3) {
        let mut g = Graph::new("n");
        let x = input(&mut g, &[2, n]);
        let (op, v, rule) = [(BinaryOp::Mul, 1.0f32, "mul-one"), (BinaryOp::Add, 0.0, "add-zero"), (BinaryOp::Sub, 0.0, "sub-zero")][which].clone();
        let c = g.add_const("c", Tensor::from_vec(&[n], vec![v; n]).unwrap());
        let a = g.add_node("op", Op::Binary(op), vec![Some(x), Some(c)], &["a".into()])[0];
        let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(a)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, rule, &[f32s(&[2, n], seed)], 0.0);
        prop_assert_eq!(o.nodes.len(), 1);
    }

    #[test]
    fn division_by_a_constant_multiplies(n in 1usize..9, seed in 0u64..1000, k in 1i32..9) {
        let mut g = Graph::new("d");
        let x = input(&mut g, &[n]);
        let c = g.add_const("c", Tensor::scalar(k as f32 * 0.75));
        let y = g.add_node("div", Op::Binary(BinaryOp::Div), vec![Some(x), Some(c)], &["y".into()])[0];
        let g = finish(g, y);
        let xs = f32s(&[n], seed);
        let o = check(&g, "div-by-constant", &[xs], 1e-6);
        prop_assert_eq!(count(&o, "Div"), 0);
        prop_assert_eq!(count(&o, "Mul"), 1);
    }
}

#[test]
fn exact_cast_pairs_fold_and_lossy_ones_stay() {
    // i32 -> i64 -> i32 is the identity; f32 -> f16 -> f32 rounds and must stay.
    let mut g = Graph::new("c");
    let x = g.add_input("x", TypeInfo::new(DType::I32, Shape::known(&[4])));
    let a = g.add_node("c1", Op::Cast(Cast { to: DType::I64, saturate: true }), vec![Some(x)], &["a".into()])[0];
    let b = g.add_node("c2", Op::Cast(Cast { to: DType::I32, saturate: true }), vec![Some(a)], &["b".into()])[0];
    let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(b)], &["y".into()])[0];
    let g = finish(g, y);
    let o = check(&g, "cast-cast", &[Tensor::from_vec(&[4], vec![1i32, -7, i32::MAX, 0]).unwrap()], 0.0);
    assert_eq!(count(&o, "Cast"), 0);

    let mut g = Graph::new("lossy");
    let x = input(&mut g, &[4]);
    let a = g.add_node("c1", Op::Cast(Cast { to: DType::F16, saturate: true }), vec![Some(x)], &["a".into()])[0];
    let b = g.add_node("c2", Op::Cast(Cast { to: DType::F32, saturate: true }), vec![Some(a)], &["b".into()])[0];
    let g = finish(g, b);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert_eq!(count(&o, "Cast"), 2, "{}", r.text());
}

#[test]
fn constant_subgraphs_fold_and_level_zero_is_off() {
    let mut g = Graph::new("f");
    let x = input(&mut g, &[3]);
    let c1 = g.add_const("c1", Tensor::from_vec(&[3], vec![1f32, 2., 3.]).unwrap());
    let c2 = g.add_const("c2", Tensor::from_vec(&[3], vec![0.5f32, 0.25, 2.]).unwrap());
    let k = g.add_node("k", Op::Binary(BinaryOp::Mul), vec![Some(c1), Some(c2)], &["k".into()])[0];
    let y = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(x), Some(k)], &["y".into()])[0];
    let g = finish(g, y);
    let o = check(&g, "fold", &[f32s(&[3], 7)], 0.0);
    assert_eq!(o.nodes.len(), 1, "{}", slmtvm_ir::text::print(&o));
    let (z, r) = optimize(&g, &Options { level: 0, ..Options::default() }).unwrap();
    assert_eq!(z, g);
    assert_eq!(r.stop, "off");
    assert!(r.text().contains("off"));
}

#[test]
fn reports_say_why_saturation_stopped() {
    let mut g = Graph::new("s");
    let x = input(&mut g, &[2, 3]);
    let a = g.add_node("t1", Op::Transpose(Transpose { perm: None }), vec![Some(x)], &["a".into()])[0];
    let b = g.add_node("t2", Op::Transpose(Transpose { perm: None }), vec![Some(a)], &["b".into()])[0];
    let y = g.add_node("neg", Op::Unary(UnaryOp::Neg), vec![Some(b)], &["y".into()])[0];
    let g = finish(g, y);
    let (_, r) = optimize(&g, &Options::default()).unwrap();
    assert_eq!(r.stop, "saturated", "{}", r.text());
    let (_, r) = optimize(&g, &Options { iter_limit: 1, ..Options::default() }).unwrap();
    assert!(r.stop.starts_with("iteration limit") || r.stop == "saturated", "{}", r.text());
    assert!(r.text().contains("transpose-transpose"));
    // The time limit is a guard: reaching it fails, naming the flag, instead of giving a graph
    // that depends on the machine's speed.
    let e = optimize(&g, &Options { time_limit: std::time::Duration::ZERO, ..Options::default() }).unwrap_err();
    assert!(matches!(e, slmtvm_optimizer::Error::TimeLimit { .. }), "{e}");
    assert!(e.to_string().contains("--opt-time-limit"), "{e}");
}

/// `0.5·x·(1 + erf(x/√2))` in the two operand orders the exporters use.
fn gelu_erf_graph(n: usize, half_first: bool) -> Graph {
    let mut g = Graph::new("gelu");
    let x = input(&mut g, &[3, n]);
    let k = g.add_const("sqrt2", Tensor::scalar(std::f32::consts::SQRT_2));
    let one = g.add_const("one", Tensor::scalar(1f32));
    let half = g.add_const("half", Tensor::scalar(0.5f32));
    let d = g.add_node("div", Op::Binary(BinaryOp::Div), vec![Some(x), Some(k)], &["d".into()])[0];
    let e = g.add_node("erf", Op::Unary(UnaryOp::Erf), vec![Some(d)], &["e".into()])[0];
    let a = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(e), Some(one)], &["a".into()])[0];
    let y = if half_first {
        let h = g.add_node("h", Op::Binary(BinaryOp::Mul), vec![Some(half), Some(x)], &["h".into()])[0];
        g.add_node("m", Op::Binary(BinaryOp::Mul), vec![Some(h), Some(a)], &["y".into()])[0]
    } else {
        let m = g.add_node("m", Op::Binary(BinaryOp::Mul), vec![Some(x), Some(a)], &["m".into()])[0];
        g.add_node("m2", Op::Binary(BinaryOp::Mul), vec![Some(m), Some(half)], &["y".into()])[0]
    };
    finish(g, y)
}

/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` as GPT-2's exporter writes it.
fn gelu_tanh_graph(n: usize) -> Graph {
    let mut g = Graph::new("gelu_new");
    let x = input(&mut g, &[2, n]);
    let c = |g: &mut Graph, name: &str, v: f32| g.add_const(name, Tensor::scalar(v));
    let (half, three, a3, k, one) = (
        c(&mut g, "half", 0.5),
        c(&mut g, "three", 3.0),
        c(&mut g, "a", 0.044715),
        c(&mut g, "k", 0.7978846),
        c(&mut g, "one", 1.0),
    );
    let bin = |g: &mut Graph, name: &str, op: BinaryOp, a, b| {
        g.add_node(name, Op::Binary(op), vec![Some(a), Some(b)], &[name.into()])[0]
    };
    let hx = bin(&mut g, "hx", BinaryOp::Mul, x, half);
    let p = bin(&mut g, "p", BinaryOp::Pow, x, three);
    let q = bin(&mut g, "q", BinaryOp::Mul, p, a3);
    let s = bin(&mut g, "s", BinaryOp::Add, x, q);
    let t = bin(&mut g, "t", BinaryOp::Mul, s, k);
    let th = g.add_node("tanh", Op::Unary(UnaryOp::Tanh), vec![Some(t)], &["th".into()])[0];
    let u = bin(&mut g, "u", BinaryOp::Add, th, one);
    let y = bin(&mut g, "y", BinaryOp::Mul, hx, u);
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn gelu_forms_are_recognized(n in 1usize..9, seed in 0u64..1000, half_first in any::<bool>()) {
        let g = gelu_erf_graph(n, half_first);
        let o = check(&g, "gelu-erf", &[f32s(&[3, n], seed)], 1e-6);
        prop_assert_eq!(o.nodes.len(), 1);
        let erf_gelu = o.nodes[0].op == Op::Unary(UnaryOp::Gelu { tanh_approx: false });
        prop_assert!(erf_gelu, "not a Gelu: {:?}", o.nodes[0].op);
        let g = gelu_tanh_graph(n);
        let o = check(&g, "gelu-tanh", &[f32s(&[2, n], seed)], 1e-6);
        prop_assert_eq!(o.nodes.len(), 1);
        let tanh_gelu = o.nodes[0].op == Op::Unary(UnaryOp::Gelu { tanh_approx: true });
        prop_assert!(tanh_gelu, "not a tanh Gelu: {:?}", o.nodes[0].op);
    }
}

#[test]
fn almost_gelu_is_left_alone() {
    // Erf of x/2 instead of x/√2 is not GELU.
    let mut g = gelu_erf_graph(4, false);
    let k = g.find("sqrt2").unwrap();
    g.consts.insert(k, Tensor::scalar(2f32));
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("gelu-erf"), "{}", r.text());
    assert_eq!(count(&o, "Erf"), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn matmul_plus_bias_becomes_one_dense(rank3 in any::<bool>(), m in 1usize..5, k in 1usize..7, n in 1usize..7, seed in 0u64..1000, bias_first in any::<bool>()) {
        let mut g = Graph::new("dense");
        let xd: Vec<usize> = if rank3 { vec![2, m, k] } else { vec![m, k] };
        let x = input(&mut g, &xd);
        let w = g.add_const("w", f32s(&[k, n], seed + 1));
        let b = g.add_const("b", f32s(&[n], seed + 2));
        let mm = g.add_node("mm", Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(x), Some(w)], &["mm".into()])[0];
        let ins = if bias_first { vec![Some(b), Some(mm)] } else { vec![Some(mm), Some(b)] };
        let y = g.add_node("add", Op::Binary(BinaryOp::Add), ins, &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "dense", &[f32s(&xd, seed)], 1e-5);
        prop_assert_eq!(count(&o, "Dense"), 1);
        prop_assert_eq!(count(&o, "MatMul") + count(&o, "Add"), 0);
    }
}

#[test]
fn a_bias_along_another_axis_is_not_fused() {
    let mut g = Graph::new("nofuse");
    let x = input(&mut g, &[3, 4]);
    let w = g.add_const("w", f32s(&[4, 5], 1));
    let b = g.add_const("b", f32s(&[3, 1], 2));
    let mm = g.add_node("mm", Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(x), Some(w)], &["mm".into()])[0];
    let y = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(mm), Some(b)], &["y".into()])[0];
    let g = finish(g, y);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("dense"), "{}", r.text());
    assert_eq!(count(&o, "MatMul"), 1);
}

/// `w · x · (1 / sqrt(mean(x², -1) + eps))`, as the Llama exporters write RMSNorm.
fn rms_graph(n: usize, reciprocal: bool) -> Graph {
    let mut g = Graph::new("rms");
    let x = input(&mut g, &[2, 3, n]);
    let two = g.add_const("two", Tensor::scalar(2f32));
    let eps = g.add_const("eps", Tensor::scalar(1e-5f32));
    let one = g.add_const("one", Tensor::scalar(1f32));
    let w = g.add_const("w", f32s(&[n], 5));
    let bin = |g: &mut Graph, name: &str, op: BinaryOp, a, b| {
        g.add_node(name, Op::Binary(op), vec![Some(a), Some(b)], &[name.into()])[0]
    };
    let p = bin(&mut g, "p", BinaryOp::Pow, x, two);
    let red = slmtvm_ir::ops::Reduce { kind: slmtvm_ir::ops::ReduceKind::Mean, axes: Some(vec![-1]), keepdims: true };
    let m = g.add_node("m", Op::Reduce(red), vec![Some(p)], &["m".into()])[0];
    let a = bin(&mut g, "a", BinaryOp::Add, m, eps);
    let s = g.add_node("s", Op::Unary(UnaryOp::Sqrt), vec![Some(a)], &["s".into()])[0];
    let inv = if reciprocal {
        g.add_node("r", Op::Unary(UnaryOp::Reciprocal), vec![Some(s)], &["r".into()])[0]
    } else {
        bin(&mut g, "r", BinaryOp::Div, one, s)
    };
    let xn = bin(&mut g, "xn", BinaryOp::Mul, x, inv);
    let y = bin(&mut g, "y", BinaryOp::Mul, w, xn);
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn rmsnorm_and_silu_are_recognized(n in 1usize..9, seed in 0u64..1000, reciprocal in any::<bool>()) {
        let g = rms_graph(n, reciprocal);
        let o = check(&g, "rmsnorm", &[f32s(&[2, 3, n], seed)], 1e-5);
        prop_assert_eq!(count(&o, "RmsNorm"), 1);
        prop_assert_eq!(o.nodes.len(), 1);

        let mut g = Graph::new("silu");
        let x = input(&mut g, &[n, 2]);
        let s = g.add_node("sig", Op::Unary(UnaryOp::Sigmoid), vec![Some(x)], &["s".into()])[0];
        let y = g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(s), Some(x)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "silu", &[f32s(&[n, 2], seed)], 1e-6);
        prop_assert_eq!(o.nodes.len(), 1);
        prop_assert_eq!(count(&o, "Silu"), 1);
    }
}

#[test]
fn a_mean_over_a_leading_axis_is_not_rmsnorm() {
    let mut g = rms_graph(4, false);
    let m = g.nodes.iter().position(|n| n.name == "m").unwrap();
    g.nodes[m].op = Op::Reduce(slmtvm_ir::ops::Reduce {
        kind: slmtvm_ir::ops::ReduceKind::Mean,
        axes: Some(vec![0]),
        keepdims: true,
    });
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("rmsnorm"), "{}", r.text());
    assert_eq!(count(&o, "RmsNorm"), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn scaled_dot_product_attention_becomes_one_op(s in 1usize..6, t in 1usize..7, d in 1usize..6, heads in 1usize..3, masked in any::<bool>(), seed in 0u64..1000) {
        // q [1,H,S,D], kᵀ [1,H,D,T] (as exporters transpose K), v [1,H,T,D].
        let mut g = Graph::new("sdpa");
        let q = g.add_input("q", TypeInfo::new(DType::F32, Shape::known(&[1, heads, s, d])));
        let k = g.add_input("k", TypeInfo::new(DType::F32, Shape::known(&[1, heads, t, d])));
        let v = g.add_input("v", TypeInfo::new(DType::F32, Shape::known(&[1, heads, t, d])));
        let kt = g.add_node("kt", Op::Transpose(Transpose { perm: Some(vec![0, 1, 3, 2]) }), vec![Some(k)], &["kt".into()])[0];
        let mm = slmtvm_ir::ops::MatMul {};
        let sc = g.add_node("qk", Op::MatMul(mm.clone()), vec![Some(q), Some(kt)], &["sc".into()])[0];
        let scale = g.add_const("scale", Tensor::scalar(0.37f32));
        let z = g.add_node("mul", Op::Binary(BinaryOp::Mul), vec![Some(sc), Some(scale)], &["z".into()])[0];
        let z = if masked {
            let m = g.add_const("mask", f32s(&[1, 1, s, t], seed + 9));
            g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(z), Some(m)], &["zm".into()])[0]
        } else {
            z
        };
        let p = g.add_node("sm", Op::Softmax(slmtvm_ir::ops::Softmax { axis: -1 }), vec![Some(z)], &["p".into()])[0];
        let y = g.add_node("pv", Op::MatMul(mm), vec![Some(p), Some(v)], &["y".into()])[0];
        let g = finish(g, y);
        let ins = [f32s(&[1, heads, s, d], seed), f32s(&[1, heads, t, d], seed + 1), f32s(&[1, heads, t, d], seed + 2)];
        let o = check(&g, "attention", &ins, 1e-5);
        prop_assert_eq!(count(&o, "Attention"), 1);
        prop_assert_eq!(count(&o, "Softmax") + count(&o, "MatMul") + count(&o, "Transpose"), 0);
    }
}

/// The fusable activations with the rule that fuses each into a Dense.
fn activation(which: usize) -> (UnaryOp, &'static str) {
    [
        (UnaryOp::Relu, "dense-relu"),
        (UnaryOp::Gelu { tanh_approx: false }, "dense-gelu"),
        (UnaryOp::Gelu { tanh_approx: true }, "dense-gelu"),
        (UnaryOp::Silu, "dense-silu"),
        (UnaryOp::Sigmoid, "dense-sigmoid"),
        (UnaryOp::Tanh, "dense-tanh"),
    ][which]
        .clone()
}

/// `act(MatMul(x, W) [+ b])` over x of `xd` with `w` (a constant unless `w_input`).
fn dense_graph(xd: &[usize], n: usize, act: UnaryOp, bias: bool, w_input: bool, seed: u64) -> Graph {
    let mut g = Graph::new("dense_act");
    let x = input(&mut g, xd);
    let k = *xd.last().unwrap();
    let w = if w_input {
        g.add_input("w", TypeInfo::new(DType::F32, Shape::known(&[k, n])))
    } else {
        g.add_const("w", f32s(&[k, n], seed + 1))
    };
    let mut y = g.add_node("mm", Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(x), Some(w)], &["mm".into()])[0];
    if bias {
        let b = g.add_const("b", f32s(&[n], seed + 2));
        y = g.add_node("add", Op::Binary(BinaryOp::Add), vec![Some(y), Some(b)], &["z".into()])[0];
    }
    let y = g.add_node("act", Op::Unary(act), vec![Some(y)], &["y".into()])[0];
    finish(g, y)
}

/// `MatMul(act(MatMul(x, W_gate)) ⊙ MatMul(x, W_up), W_down)`; SiLU written as x·sigmoid(x)
/// when `silu_decomposed` (else `act`), the product's operands swapped when `up_first`.
#[derive(Clone)]
struct Mlp {
    xd: Vec<usize>,
    f: usize,
    h2: usize,
    act: Option<UnaryOp>,
    up_first: bool,
    up_input: bool,
    act_after_mul: bool,
    seed: u64,
}

fn mlp_graph(m: &Mlp) -> Graph {
    let mut g = Graph::new("mlp");
    let x = input(&mut g, &m.xd);
    let h = *m.xd.last().unwrap();
    let mm = |g: &mut Graph, name: &str, a, b| {
        g.add_node(name, Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(a), Some(b)], &[name.into()])[0]
    };
    let bin = |g: &mut Graph, name: &str, op: BinaryOp, a, b| {
        g.add_node(name, Op::Binary(op), vec![Some(a), Some(b)], &[name.into()])[0]
    };
    let act = |g: &mut Graph, name: &str, v| match &m.act {
        Some(a) => g.add_node(name, Op::Unary(a.clone()), vec![Some(v)], &[name.into()])[0],
        None => {
            let s =
                g.add_node(format!("{name}_sig"), Op::Unary(UnaryOp::Sigmoid), vec![Some(v)], &[format!("{name}_s")])
                    [0];
            bin(g, name, BinaryOp::Mul, v, s)
        }
    };
    let wg = g.add_const("wg", f32s(&[h, m.f], m.seed + 1));
    let wu = if m.up_input {
        g.add_input("wu", TypeInfo::new(DType::F32, Shape::known(&[h, m.f])))
    } else {
        g.add_const("wu", f32s(&[h, m.f], m.seed + 2))
    };
    let wd = g.add_const("wd", f32s(&[m.f, m.h2], m.seed + 3));
    let gate = mm(&mut g, "gate", x, wg);
    let up = mm(&mut g, "up", x, wu);
    let hidden = if m.act_after_mul {
        let p = bin(&mut g, "p", BinaryOp::Mul, gate, up);
        act(&mut g, "hidden", p)
    } else {
        let a = act(&mut g, "a", gate);
        let (l, r) = if m.up_first { (up, a) } else { (a, up) };
        bin(&mut g, "hidden", BinaryOp::Mul, l, r)
    };
    let y = mm(&mut g, "down", hidden, wd);
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn matmul_bias_and_activation_become_one_dense(rank3 in any::<bool>(), m in 1usize..5, k in 1usize..7, n in 1usize..7, which in 0usize..6, bias in any::<bool>(), seed in 0u64..1000) {
        let xd: Vec<usize> = if rank3 { vec![2, m, k] } else { vec![m, k] };
        let (act, rule) = activation(which);
        let g = dense_graph(&xd, n, act, bias, false, seed);
        let o = check(&g, rule, &[f32s(&xd, seed)], 1e-5);
        prop_assert_eq!(count(&o, "Dense"), 1);
        prop_assert_eq!(o.nodes.len(), 1, "{}", slmtvm_ir::text::print(&o));
    }

    #[test]
    fn gated_mlp_becomes_one_fused_mlp(rank3 in any::<bool>(), m in 1usize..4, h in 1usize..6, f in 1usize..7, h2 in 1usize..5, which in 0usize..3, up_first in any::<bool>(), seed in 0u64..1000) {
        let xd: Vec<usize> = if rank3 { vec![1, m, h] } else { vec![m, h] };
        let act = [None, Some(UnaryOp::Silu), Some(UnaryOp::Gelu { tanh_approx: false })][which].clone();
        let g = mlp_graph(&Mlp { xd: xd.clone(), f, h2, act, up_first, up_input: false, act_after_mul: false, seed });
        let o = check(&g, "gated-mlp", &[f32s(&xd, seed)], 1e-4);
        prop_assert_eq!(count(&o, "FusedMlp"), 1);
        prop_assert_eq!(o.nodes.len(), 1, "{}", slmtvm_ir::text::print(&o));
    }
}

#[test]
fn dense_leaves_unfusable_activations_and_variable_weights() {
    // Exp is no Dense activation: the biased product fuses, Exp stays.
    let mut g = dense_graph(&[3, 4], 5, UnaryOp::Relu, true, false, 1);
    let act = g.nodes.iter().position(|n| n.name == "act").unwrap();
    g.nodes[act].op = Op::Unary(UnaryOp::Exp);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert_eq!((count(&o, "Dense"), count(&o, "Exp")), (1, 1), "{}", r.text());
    // A weight that is a graph input is not a Dense weight.
    let g = dense_graph(&[3, 4], 5, UnaryOp::Relu, false, true, 1);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("dense-relu"), "{}", r.text());
    assert_eq!((count(&o, "MatMul"), count(&o, "Relu"), count(&o, "Dense")), (1, 1, 0));
}

#[test]
fn gated_mlp_needs_constant_weights_and_the_activation_on_the_gate() {
    let base =
        Mlp { xd: vec![3, 4], f: 6, h2: 2, act: None, up_first: false, up_input: false, act_after_mul: false, seed: 3 };
    for (what, m) in [
        ("a variable W_up", Mlp { up_input: true, ..base.clone() }),
        ("the activation after the product", Mlp { act_after_mul: true, act: Some(UnaryOp::Silu), ..base }),
    ] {
        let g = mlp_graph(&m);
        let (o, r) = optimize(&g, &Options::default()).unwrap();
        assert!(!r.applied.contains_key("gated-mlp"), "{what}: {}", r.text());
        assert_eq!(count(&o, "FusedMlp"), 0, "{what}");
        assert_eq!(count(&o, "MatMul") + count(&o, "Dense"), 3, "{what}: {}", slmtvm_ir::text::print(&o));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn gemm_and_activation_become_one_dense(m in 1usize..5, k in 1usize..7, n in 1usize..7, trans_b in any::<bool>(), bias in any::<bool>(), which in 0usize..6, seed in 0u64..1000) {
        let mut g = Graph::new("gemm_act");
        let x = input(&mut g, &[m, k]);
        let wd = if trans_b { [n, k] } else { [k, n] };
        let w = g.add_const("w", f32s(&wd, seed + 1));
        let b = bias.then(|| g.add_const("b", f32s(&[1, n], seed + 2)));
        let gemm = slmtvm_ir::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b };
        let z = g.add_node("gemm", Op::Gemm(gemm), vec![Some(x), Some(w), b], &["z".into()])[0];
        let (act, rule) = activation(which);
        let y = g.add_node("act", Op::Unary(act), vec![Some(z)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, rule, &[f32s(&[m, k], seed)], 1e-5);
        prop_assert_eq!(count(&o, "Dense"), 1);
        prop_assert_eq!(o.nodes.len(), 1, "{}", slmtvm_ir::text::print(&o));
    }
}

#[test]
fn a_scaled_gemm_is_not_a_dense() {
    let mut g = Graph::new("scaled");
    let x = input(&mut g, &[3, 4]);
    let w = g.add_const("w", f32s(&[4, 5], 1));
    let gemm = slmtvm_ir::ops::Gemm { alpha: 0.5, beta: 1.0, trans_a: false, trans_b: false };
    let z = g.add_node("gemm", Op::Gemm(gemm), vec![Some(x), Some(w)], &["z".into()])[0];
    let y = g.add_node("act", Op::Unary(UnaryOp::Relu), vec![Some(z)], &["y".into()])[0];
    let g = finish(g, y);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("dense-gemm"), "{}", r.text());
    assert_eq!((count(&o, "Gemm"), count(&o, "Relu"), count(&o, "Dense")), (1, 1, 0));
}

#[test]
fn products_used_elsewhere_are_not_fused_away() {
    // The product is also a graph output: fusing the activation would compute it twice.
    let mut g = dense_graph(&[3, 4], 5, UnaryOp::Relu, false, false, 1);
    let mm = g.find("mm").unwrap();
    g.outputs.push(mm);
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("dense-relu"), "{}", r.text());
    assert_eq!((count(&o, "MatMul"), count(&o, "Relu"), count(&o, "Dense")), (1, 1, 0));
    // The same for the biased product, and for a gated MLP's gate product.
    let mut g = dense_graph(&[3, 4], 5, UnaryOp::Relu, true, false, 1);
    let mm = g.find("mm").unwrap();
    g.outputs.push(mm);
    g.infer().unwrap();
    let (_, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("dense"), "{}", r.text());
    let mut g = mlp_graph(&Mlp {
        xd: vec![3, 4],
        f: 6,
        h2: 2,
        act: None,
        up_first: false,
        up_input: false,
        act_after_mul: false,
        seed: 3,
    });
    let gate = g.find("gate").unwrap();
    g.outputs.push(gate);
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("gated-mlp"), "{}", r.text());
    assert_eq!(count(&o, "FusedMlp"), 0);
}

fn unary(g: &mut Graph, name: &str, op: Op, x: slmtvm_ir::ValueId) -> slmtvm_ir::ValueId {
    g.add_node(name, op, vec![Some(x)], &[name.into()])[0]
}

fn binary(g: &mut Graph, name: &str, op: BinaryOp, a: slmtvm_ir::ValueId, b: slmtvm_ir::ValueId) -> slmtvm_ir::ValueId {
    g.add_node(name, Op::Binary(op), vec![Some(a), Some(b)], &[name.into()])[0]
}

fn neg(g: &mut Graph, x: slmtvm_ir::ValueId) -> slmtvm_ir::ValueId {
    unary(g, "neg", Op::Unary(UnaryOp::Neg), x)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn identity_like_ops_disappear(d0 in 1usize..5, d1 in 1usize..5, seed in 0u64..1000, which in 0usize..4) {
        // transpose-identity, reshape-noop, identity, cast-noop: each leaves only the Neg.
        let mut g = Graph::new("id");
        let x = input(&mut g, &[d0, d1]);
        let s = g.add_const("s", Tensor::from_vec(&[2], vec![d0 as i64, d1 as i64]).unwrap());
        let (a, rule) = match which {
            0 => (unary(&mut g, "t", Op::Transpose(Transpose { perm: Some(vec![0, 1]) }), x), "transpose-identity"),
            1 => (g.add_node("r", Op::Reshape(Reshape { allowzero: false }), vec![Some(x), Some(s)], &["r".into()])[0], "reshape-noop"),
            2 => (unary(&mut g, "i", Op::Unary(UnaryOp::Identity), x), "identity"),
            _ => (unary(&mut g, "c", Op::Cast(Cast { to: DType::F32, saturate: true }), x), "cast-noop"),
        };
        let y = neg(&mut g, a);
        let g = finish(g, y);
        let o = check(&g, rule, &[f32s(&[d0, d1], seed)], 0.0);
        prop_assert_eq!(o.nodes.len(), 1);
    }

    #[test]
    fn view_chains_of_each_kind_become_one_reshape(d0 in 1usize..5, d1 in 1usize..5, seed in 0u64..1000, which in 0usize..3) {
        let mut g = Graph::new("views");
        let x = input(&mut g, &[1, d0, d1]);
        let (b, rule) = match which {
            0 => {
                let a = unary(&mut g, "s1", Op::Squeeze(slmtvm_ir::ops::Squeeze { axes: Some(vec![0]) }), x);
                (unary(&mut g, "s2", Op::Unsqueeze(slmtvm_ir::ops::Unsqueeze { axes: vec![2] }), a), "unsqueeze-chain")
            }
            1 => {
                let a = unary(&mut g, "u", Op::Unsqueeze(slmtvm_ir::ops::Unsqueeze { axes: vec![3] }), x);
                (unary(&mut g, "s", Op::Squeeze(slmtvm_ir::ops::Squeeze { axes: Some(vec![0]) }), a), "squeeze-chain")
            }
            _ => {
                let a = unary(&mut g, "s", Op::Squeeze(slmtvm_ir::ops::Squeeze { axes: Some(vec![0]) }), x);
                (unary(&mut g, "f", Op::Flatten(slmtvm_ir::ops::Flatten { axis: 0 }), a), "flatten-chain")
            }
        };
        let y = neg(&mut g, b);
        let g = finish(g, y);
        let o = check(&g, rule, &[f32s(&[1, d0, d1], seed)], 0.0);
        // One Reshape before the Neg, or none when the chain ends in the input's own shape.
        let same = g.ty(g.inputs[0]) == g.ty(g.outputs[0]);
        prop_assert_eq!(o.nodes.len(), if same { 1 } else { 2 });
        prop_assert_eq!(count(&o, "Reshape"), if same { 0 } else { 1 });
    }
}

/// `[γ ·] (x − mean(x)) / sqrt(mean((x − mean(x))²) + eps) [+ β]` over the last axis.
fn layernorm_graph(dims: &[usize], scale: bool, bias: bool, square_by_mul: bool, seed: u64) -> Graph {
    let mut g = Graph::new("ln");
    let x = input(&mut g, dims);
    let n = *dims.last().unwrap();
    let two = g.add_const("two", Tensor::scalar(2f32));
    let eps = g.add_const("eps", Tensor::scalar(1e-5f32));
    let mean = |axes| {
        Op::Reduce(slmtvm_ir::ops::Reduce { kind: slmtvm_ir::ops::ReduceKind::Mean, axes: Some(axes), keepdims: true })
    };
    let m = unary(&mut g, "mean", mean(vec![-1]), x);
    let d = binary(&mut g, "sub", BinaryOp::Sub, x, m);
    let p = if square_by_mul {
        binary(&mut g, "sq", BinaryOp::Mul, d, d)
    } else {
        binary(&mut g, "sq", BinaryOp::Pow, d, two)
    };
    let v = unary(&mut g, "var", mean(vec![dims.len() as i64 - 1]), p);
    let a = binary(&mut g, "add_eps", BinaryOp::Add, v, eps);
    let s = unary(&mut g, "sqrt", Op::Unary(UnaryOp::Sqrt), a);
    let mut y = binary(&mut g, "div", BinaryOp::Div, d, s);
    if scale {
        let w = g.add_const("gamma", f32s(&[n], seed + 3));
        y = binary(&mut g, "scale", BinaryOp::Mul, w, y);
    }
    if bias {
        let b = g.add_const("beta", f32s(&[n], seed + 4));
        y = binary(&mut g, "bias", BinaryOp::Add, y, b);
    }
    finish(g, y)
}

/// `exp(x − max(x)) / sum(exp(x − max(x)))` (or `exp(x) / sum(exp(x))`) along `axis`.
fn softmax_graph(dims: &[usize], axis: i64, sum_axis: i64, stable: bool) -> Graph {
    let mut g = Graph::new("sm");
    let x = input(&mut g, dims);
    let red = |kind, a| Op::Reduce(slmtvm_ir::ops::Reduce { kind, axes: Some(vec![a]), keepdims: true });
    let z = if stable {
        let m = unary(&mut g, "max", red(slmtvm_ir::ops::ReduceKind::Max, axis), x);
        binary(&mut g, "sub", BinaryOp::Sub, x, m)
    } else {
        x
    };
    let e = unary(&mut g, "exp", Op::Unary(UnaryOp::Exp), z);
    let s = unary(&mut g, "sum", red(slmtvm_ir::ops::ReduceKind::Sum, sum_axis), e);
    let y = binary(&mut g, "div", BinaryOp::Div, e, s);
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn layernorm_is_recognized(rows in 1usize..4, n in 2usize..9, seed in 0u64..1000, form in 0usize..3, square_by_mul in any::<bool>()) {
        let (scale, bias, rule) = [(false, false, "layernorm"), (true, false, "layernorm-scale"), (true, true, "layernorm-affine")][form];
        let dims = [2, rows, n];
        let g = layernorm_graph(&dims, scale, bias, square_by_mul, seed);
        let o = check(&g, rule, &[f32s(&dims, seed)], 1e-4);
        prop_assert_eq!(count(&o, "LayerNorm"), 1);
        prop_assert_eq!(count(&o, "Reduce") + count(&o, "Sqrt") + count(&o, "Div"), 0);
    }

    #[test]
    fn softmax_is_recognized(d0 in 1usize..4, d1 in 1usize..6, seed in 0u64..1000, axis in 0i64..2, stable in any::<bool>()) {
        let g = softmax_graph(&[d0, d1], axis, axis, stable);
        let o = check(&g, "softmax", &[f32s(&[d0, d1], seed)], 1e-6);
        prop_assert_eq!(o.nodes.len(), 1);
        prop_assert_eq!(&o.nodes[0].op, &Op::Softmax(slmtvm_ir::ops::Softmax { axis }));
    }
}

#[test]
fn near_layernorms_and_softmaxes_are_left_alone() {
    // The variance's mean over another axis than the centering mean's: not a LayerNorm.
    let mut g = layernorm_graph(&[2, 3, 4], true, true, false, 1);
    let v = g.nodes.iter().position(|n| n.name == "var").unwrap();
    g.nodes[v].op = Op::Reduce(slmtvm_ir::ops::Reduce {
        kind: slmtvm_ir::ops::ReduceKind::Mean,
        axes: Some(vec![1, 2]),
        keepdims: true,
    });
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.keys().any(|k| k.starts_with("layernorm")), "{}", r.text());
    assert_eq!(count(&o, "LayerNorm"), 0);
    // A sum over all axes is not a softmax along one.
    let mut g = softmax_graph(&[2, 3], 1, 1, false);
    let s = g.nodes.iter().position(|n| n.name == "sum").unwrap();
    g.nodes[s].op =
        Op::Reduce(slmtvm_ir::ops::Reduce { kind: slmtvm_ir::ops::ReduceKind::Sum, axes: None, keepdims: true });
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("softmax"), "{}", r.text());
    assert_eq!(count(&o, "Softmax"), 0);
}

fn gemm(trans_a: bool, trans_b: bool) -> Op {
    Op::Gemm(slmtvm_ir::ops::Gemm { alpha: 1.0, beta: 1.0, trans_a, trans_b })
}

fn t2() -> Op {
    Op::Transpose(Transpose { perm: Some(vec![1, 0]) })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn transposed_matmul_operands_fold_into_gemm(m in 1usize..6, k in 1usize..40, n in 1usize..6, seed in 0u64..1000, side_a in any::<bool>()) {
        // MatMul(Transpose(a), b) → Gemm(transA); MatMul(a, Transpose(b)) → Gemm(transB) (the
        // dot schedule, cheaper than the copy when the operand is large next to the output).
        let mut g = Graph::new("mt");
        let (ad, bd) = if side_a { (vec![k, m], vec![k, n]) } else { (vec![m, k], vec![n, k]) };
        let a = g.add_input("a", TypeInfo::new(DType::F32, Shape::known(&ad)));
        let b = g.add_input("b", TypeInfo::new(DType::F32, Shape::known(&bd)));
        let mm = slmtvm_ir::ops::MatMul {};
        let y = if side_a {
            let at = unary(&mut g, "t", t2(), a);
            g.add_node("mm", Op::MatMul(mm), vec![Some(at), Some(b)], &["y".into()])[0]
        } else {
            let bt = unary(&mut g, "t", t2(), b);
            g.add_node("mm", Op::MatMul(mm), vec![Some(a), Some(bt)], &["y".into()])[0]
        };
        let g = finish(g, y);
        let rule = if side_a { "matmul-transpose-a" } else { "matmul-transpose-b" };
        let o = check(&g, rule, &[f32s(&ad, seed), f32s(&bd, seed + 1)], 1e-5);
        if side_a {
            prop_assert_eq!(count(&o, "Gemm"), 1);
            prop_assert_eq!(count(&o, "Transpose"), 0);
        } else {
            prop_assert_eq!(count(&o, "Gemm") + count(&o, "MatMul"), 1);
        }
    }

    #[test]
    fn gemm_transposes_flip_the_flags(m in 1usize..6, k in 1usize..6, n in 1usize..6, seed in 0u64..1000, side_a in any::<bool>(), flag in any::<bool>()) {
        // Gemm(Transpose(a), b, c) with transA = flag → Gemm(a, b, c) with transA = !flag; same for B.
        let mut g = Graph::new("gt");
        let (ta, tb) = if side_a { (flag, false) } else { (false, flag) };
        // Shapes of the Gemm's operands as written (before the transpose is folded).
        let ad = if ta { vec![k, m] } else { vec![m, k] };
        let bd = if tb { vec![n, k] } else { vec![k, n] };
        let (ain, bin) = if side_a { (vec![ad[1], ad[0]], bd.clone()) } else { (ad.clone(), vec![bd[1], bd[0]]) };
        let a = g.add_input("a", TypeInfo::new(DType::F32, Shape::known(&ain)));
        let b = g.add_input("b", TypeInfo::new(DType::F32, Shape::known(&bin)));
        let c = g.add_const("c", f32s(&[n], seed + 2));
        let (a2, b2) = if side_a { (unary(&mut g, "t", t2(), a), b) } else { (a, unary(&mut g, "t", t2(), b)) };
        let y = g.add_node("gemm", gemm(ta, tb), vec![Some(a2), Some(b2), Some(c)], &["y".into()])[0];
        let g = finish(g, y);
        let rule = if side_a { "gemm-transpose-a" } else { "gemm-transpose-b" };
        let o = check(&g, rule, &[f32s(&ain, seed), f32s(&bin, seed + 1)], 1e-5);
        prop_assert_eq!(count(&o, "Gemm"), 1);
        prop_assert_eq!(count(&o, "Transpose"), 0);
    }

    #[test]
    fn constant_weights_read_with_trans_b_are_packed(m in 1usize..6, k in 1usize..12, n in 1usize..12, seed in 0u64..1000) {
        let mut g = Graph::new("linear");
        let x = input(&mut g, &[m, k]);
        let w = g.add_const("w", f32s(&[n, k], seed + 1));
        let b = g.add_const("b", f32s(&[n], seed + 2));
        let y = g.add_node("gemm", gemm(false, true), vec![Some(x), Some(w), Some(b)], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "gemm-pack-weight", &[f32s(&[m, k], seed)], 1e-5);
        prop_assert_eq!(&o.nodes[0].op, &gemm(false, false));
        let packed = &o.consts[&o.nodes[0].inputs[1].unwrap()];
        prop_assert_eq!(packed.shape(), &[k, n][..]);
    }
}

#[test]
fn layout_rules_leave_batched_and_activation_operands_alone() {
    // Rank-3 MatMul(q, Transpose(k)): no rule applies (MatMul has no transpose flags).
    let mut g = Graph::new("bmm");
    let q = g.add_input("q", TypeInfo::new(DType::F32, Shape::known(&[2, 3, 4])));
    let k = g.add_input("k", TypeInfo::new(DType::F32, Shape::known(&[2, 5, 4])));
    let kt = unary(&mut g, "t", Op::Transpose(Transpose { perm: Some(vec![0, 2, 1]) }), k);
    let y = g.add_node("mm", Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(q), Some(kt)], &["y".into()])[0];
    let g = finish(g, y);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.keys().any(|k| k.starts_with("matmul-transpose")), "{}", r.text());
    assert_eq!(count(&o, "Transpose"), 1);
    // Gemm(x, W) with transB and a W that is not a constant: nothing to pack.
    let mut g = Graph::new("act");
    let x = input(&mut g, &[3, 4]);
    let w = g.add_input("w", TypeInfo::new(DType::F32, Shape::known(&[5, 4])));
    let y = g.add_node("gemm", gemm(false, true), vec![Some(x), Some(w)], &["y".into()])[0];
    let g = finish(g, y);
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert!(!r.applied.contains_key("gemm-pack-weight"), "{}", r.text());
    assert_eq!(o.nodes[0].op, gemm(false, true));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn repeated_kv_heads_are_shared(s in 1usize..4, t in 1usize..5, d in 1usize..5, rep in 2usize..4, seed in 0u64..1000) {
        // repeat_kv: Reshape(Expand(Unsqueeze(k, [2]), [1, 1, rep, T, D]), [1, rep, T, D]).
        let mut g = Graph::new("gqa");
        let q = g.add_input("q", TypeInfo::new(DType::F32, Shape::known(&[1, rep, s, d])));
        let k = g.add_input("k", TypeInfo::new(DType::F32, Shape::known(&[1, 1, t, d])));
        let v = g.add_input("v", TypeInfo::new(DType::F32, Shape::known(&[1, 1, t, d])));
        let e = g.add_const("e", Tensor::from_vec(&[5], vec![1i64, 1, rep as i64, t as i64, d as i64]).unwrap());
        let r = g.add_const("r", Tensor::from_vec(&[4], vec![1i64, rep as i64, t as i64, d as i64]).unwrap());
        let repeat = |g: &mut Graph, x, p: &str| {
            let u = unary(g, &format!("{p}u"), Op::Unsqueeze(slmtvm_ir::ops::Unsqueeze { axes: vec![2] }), x);
            let x = g.add_node(format!("{p}e"), Op::Expand(slmtvm_ir::ops::Expand {}), vec![Some(u), Some(e)], &[format!("{p}e")])[0];
            g.add_node(format!("{p}r"), Op::Reshape(Reshape { allowzero: false }), vec![Some(x), Some(r)], &[format!("{p}r")])[0]
        };
        let (kr, vr) = (repeat(&mut g, k, "k"), repeat(&mut g, v, "v"));
        let kt = unary(&mut g, "kt", Op::Transpose(Transpose { perm: Some(vec![0, 1, 3, 2]) }), kr);
        let mm = slmtvm_ir::ops::MatMul {};
        let sc = g.add_node("qk", Op::MatMul(mm.clone()), vec![Some(q), Some(kt)], &["sc".into()])[0];
        let p = unary(&mut g, "sm", Op::Softmax(slmtvm_ir::ops::Softmax { axis: -1 }), sc);
        let y = g.add_node("pv", Op::MatMul(mm), vec![Some(p), Some(vr)], &["y".into()])[0];
        let g = finish(g, y);
        let ins = [f32s(&[1, rep, s, d], seed), f32s(&[1, 1, t, d], seed + 1), f32s(&[1, 1, t, d], seed + 2)];
        let o = check(&g, "attention-gqa", &ins, 1e-5);
        prop_assert_eq!(count(&o, "Attention"), 1);
        prop_assert_eq!(count(&o, "Expand"), 0);
        let a = o.nodes.iter().find(|n| n.op.kind_name() == "Attention").unwrap();
        prop_assert_eq!(a.inputs[1], Some(o.inputs[1]));
    }
}

/// ONNX Runtime's `quantize_dynamic` product over x of `xd` (f32, quantized at run time by
/// DynamicQuantizeLinear) with constant int8 weights [K, N] and zero points per column:
/// `[b +] Cast(MatMulInteger(xq, W, xz, Wz))·(xs·Ws)`, then `act`; the scale product's and the
/// bias' operands in either order.
fn qdense_graph(xd: &[usize], n: usize, act: Option<UnaryOp>, bias: bool, swap: bool, seed: u64) -> Graph {
    let mut g = Graph::new("qdense");
    let x = input(&mut g, xd);
    let k = *xd.last().unwrap();
    let q8 = |shape: &[usize], s: u64| {
        let v: Vec<i8> = f32s(shape, s).to_f32().iter().map(|v| (v * 63.0) as i8).collect();
        Tensor::from_vec(shape, v).unwrap()
    };
    let w = g.add_const("w", q8(&[k, n], seed + 1));
    let wz = g.add_const("wz", q8(&[n], seed + 2));
    let ws = g.add_const(
        "ws",
        Tensor::from_vec(
            &[n],
            f32s(&[n], seed + 3).to_f32().iter().map(|v| 0.01 + v.abs() * 0.01).collect::<Vec<f32>>(),
        )
        .unwrap(),
    );
    let dql = Op::DynamicQuantizeLinear(slmtvm_ir::ops::DynamicQuantizeLinear {});
    let q = g.add_node("dql", dql, vec![Some(x)], &["xq".into(), "xs".into(), "xz".into()]);
    let mmi = Op::MatMulInteger(slmtvm_ir::ops::MatMulInteger {});
    let acc = g.add_node("mmi", mmi, vec![Some(q[0]), Some(w), Some(q[2]), Some(wz)], &["acc".into()])[0];
    let accf =
        g.add_node("cast", Op::Cast(Cast { to: DType::F32, saturate: true }), vec![Some(acc)], &["accf".into()])[0];
    let (sa, sb) = if swap { (ws, q[1]) } else { (q[1], ws) };
    let s = binary(&mut g, "scales", BinaryOp::Mul, sa, sb);
    let (p0, p1) = if swap { (s, accf) } else { (accf, s) };
    let mut y = binary(&mut g, "mul", BinaryOp::Mul, p0, p1);
    if bias {
        let b = g.add_const("b", f32s(&[n], seed + 4));
        let (a0, a1) = if swap { (y, b) } else { (b, y) };
        y = binary(&mut g, "add", BinaryOp::Add, a0, a1);
    }
    if let Some(act) = act {
        y = unary(&mut g, "act", Op::Unary(act), y);
    }
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn dynamically_quantized_products_become_one_qdense(rank3 in any::<bool>(), m in 1usize..5, k in 1usize..9, n in 1usize..7, bias in any::<bool>(), swap in any::<bool>(), act in any::<bool>(), seed in 0u64..1000) {
        let xd: Vec<usize> = if rank3 { vec![2, m, k] } else { vec![m, k] };
        let act = act.then_some(UnaryOp::Relu);
        let g = qdense_graph(&xd, n, act.clone(), bias, swap, seed);
        let rule = if bias { "qdense-bias" } else { "qdense" };
        // The fused form performs the unfused graph's operations: bit-exact.
        let o = check(&g, rule, &[f32s(&xd, seed)], 0.0);
        prop_assert_eq!(count(&o, "QDense"), 1, "{}", slmtvm_ir::text::print(&o));
        prop_assert_eq!(count(&o, "MatMulInteger") + count(&o, "Cast") + count(&o, "Mul") + count(&o, "Relu"), 0);
        prop_assert_eq!(o.nodes.len(), 2, "{}", slmtvm_ir::text::print(&o));
    }
}

#[test]
fn a_quantized_product_used_elsewhere_is_not_fused() {
    // The integer product also feeds a second output: fusing would compute it twice.
    let mut g = qdense_graph(&[3, 5], 4, None, false, false, 7);
    let acc = g.values.iter().position(|v| v.name == "acc").unwrap();
    g.outputs.push(slmtvm_ir::ValueId(acc as u32));
    g.infer().unwrap();
    let (o, r) = optimize(&g, &Options::default()).unwrap();
    assert_eq!(count(&o, "QDense"), 0, "{}", r.text());
    assert_eq!(count(&o, "MatMulInteger"), 1);
}

/// The QDQ form of a quantized product over x of `xd` (`quantize_static(quant_format=QDQ)`):
/// `[b +] MatMul(DQ(Q(x, xs, xz)), DQ(W, ws[, wz]))` with u8 activations per tensor and
/// constant int8 weights [K, N] per column (`per_column`) or per tensor, with or without
/// zero points.
fn qdq_graph(xd: &[usize], n: usize, per_column: bool, zero_points: bool, bias: bool, seed: u64) -> Graph {
    let mut g = Graph::new("qdq");
    let x = input(&mut g, xd);
    let k = *xd.last().unwrap();
    let wv: Vec<i8> = f32s(&[k, n], seed + 1).to_f32().iter().map(|v| (v * 63.0) as i8).collect();
    let w = g.add_const("w", Tensor::from_vec(&[k, n], wv).unwrap());
    let nn = if per_column { n } else { 1 };
    let scales: Vec<f32> = f32s(&[nn], seed + 2).to_f32().iter().map(|v| 0.01 + v.abs() * 0.01).collect();
    let ws = g.add_const("ws", Tensor::from_vec(&[nn], scales).unwrap());
    let xs = g.add_const("xs", Tensor::scalar(4.0f32 / 255.0));
    let xz = g.add_const("xz", Tensor::from_vec(&[], vec![128u8]).unwrap());
    let q = Op::QuantizeLinear(slmtvm_ir::ops::QuantizeLinear { axis: 1, block_size: 0, output_dtype: DType::U8 });
    let xq = g.add_node("q", q, vec![Some(x), Some(xs), Some(xz)], &["xq".into()])[0];
    let dq = || Op::DequantizeLinear(slmtvm_ir::ops::DequantizeLinear { axis: 1, block_size: 0 });
    let zpa = zero_points.then_some(xz);
    let xd_ = g.add_node("dq", dq(), vec![Some(xq), Some(xs), zpa], &["xd".into()])[0];
    let wz = zero_points.then(|| {
        let z: Vec<i8> = (0..nn).map(|i| (i % 5) as i8 - 2).collect();
        g.add_const("wz", Tensor::from_vec(&[nn], z).unwrap())
    });
    let wd = g.add_node("wdq", dq(), vec![Some(w), Some(ws), wz], &["wd".into()])[0];
    let mut y = g.add_node("mm", Op::MatMul(slmtvm_ir::ops::MatMul {}), vec![Some(xd_), Some(wd)], &["p".into()])[0];
    if bias {
        let b = g.add_const("b", f32s(&[n], seed + 4));
        y = binary(&mut g, "add", BinaryOp::Add, b, y);
    }
    finish(g, y)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn qdq_products_become_one_qdense(rank3 in any::<bool>(), m in 1usize..5, k in 4usize..12, n in 1usize..7, per_column in any::<bool>(), zero_points in any::<bool>(), bias in any::<bool>(), seed in 0u64..1000) {
        let xd: Vec<usize> = if rank3 { vec![2, m, k] } else { vec![m, k] };
        let g = qdq_graph(&xd, n, per_column, zero_points, bias, seed);
        // Integer sums scaled once against f32 sums of dequantized products: f32 rounding.
        // (K ≥ 4: on a product of one or two terms the cost model may keep the f32 form.)
        let o = check(&g, "qdq-dense", &[f32s(&xd, seed)], 1e-5);
        prop_assert_eq!(count(&o, "QDense"), 1, "{}", slmtvm_ir::text::print(&o));
        prop_assert_eq!(count(&o, "DequantizeLinear") + count(&o, "MatMul") + count(&o, "Add"), 0);
    }

    #[test]
    fn gathers_of_dequantized_tables_gather_the_quantized_rows(rows in 8usize..40, cols in 1usize..5, ids in 1usize..4, per_column in any::<bool>(), matrix_ids in any::<bool>(), seed in 0u64..1000) {
        // The table is an input (a constant this small would fold to f32), u8, per column or
        // per tensor with a zero point; the ids [ids] or [2, ids], one negative, fewer than the
        // rows (else dequantizing the table first costs the same).
        let mut g = Graph::new("embedding");
        let idd: Vec<usize> = if matrix_ids { vec![2, ids] } else { vec![ids] };
        let id = g.add_input("ids", TypeInfo::new(DType::I64, Shape::known(&idd)));
        let t = g.add_input("t", TypeInfo::new(DType::U8, Shape::known(&[rows, cols])));
        let nn = if per_column { cols } else { 1 };
        let s: Vec<f32> = f32s(&[nn], seed).to_f32().iter().map(|v| 0.01 + v.abs()).collect();
        let s = g.add_const("s", Tensor::from_vec(&[nn], s).unwrap());
        let z = g.add_const("z", Tensor::from_vec(&[nn], (0..nn).map(|i| (i * 37 % 256) as u8).collect::<Vec<u8>>()).unwrap());
        let dq = Op::DequantizeLinear(slmtvm_ir::ops::DequantizeLinear { axis: -1, block_size: 0 });
        let td = g.add_node("dq", dq, vec![Some(t), Some(s), Some(z)], &["td".into()])[0];
        let y = g.add_node("gather", Op::Gather(slmtvm_ir::ops::Gather { axis: 0 }), vec![Some(td), Some(id)], &["y".into()])[0];
        let g = finish(g, y);
        let n: usize = idd.iter().product();
        let idv: Vec<i64> = (0..n).map(|i| ((seed as usize + i * 7) % rows) as i64 - if i == 0 { rows as i64 } else { 0 }).collect();
        let tv: Vec<u8> = (0..rows * cols).map(|i| ((seed as usize + i * 31) % 256) as u8).collect();
        let inputs = [Tensor::from_vec(&idd, idv).unwrap(), Tensor::from_vec(&[rows, cols], tv).unwrap()];
        // Exact: the same dequantization of the same elements.
        let o = check(&g, "gather-dequantize", &inputs, 0.0);
        let gather = o.nodes.iter().find(|n| n.op.kind_name() == "Gather").unwrap();
        prop_assert_eq!(gather.inputs[0], Some(o.inputs[1]), "{}", slmtvm_ir::text::print(&o));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn quantize_dequantize_pairs_become_one_operator(d0 in 1usize..4, d1 in 1usize..9, per_axis in any::<bool>(), signed in any::<bool>(), zero_point in any::<bool>(), seed in 0u64..1000) {
        // Q → DQ with the same parameters (per tensor, or per axis along the last axis), the
        // quantized value read by nothing else: exact.
        let mut g = Graph::new("qdq_pair");
        let x = input(&mut g, &[d0, d1]);
        let n = if per_axis { d1 } else { 1 };
        let s: Vec<f32> = f32s(&[n], seed).to_f32().iter().map(|v| 0.01 + v.abs() * 0.05).collect();
        let s = g.add_const("s", Tensor::from_vec(&[n], s).unwrap());
        let dt = if signed { DType::I8 } else { DType::U8 };
        let z = zero_point.then(|| {
            let t = if signed {
                Tensor::from_vec(&[n], (0..n).map(|i| (i as i8) * 7 - 10).collect::<Vec<i8>>()).unwrap()
            } else {
                Tensor::from_vec(&[n], (0..n).map(|i| (i as u8) * 13 + 100).collect::<Vec<u8>>()).unwrap()
            };
            g.add_const("z", t)
        });
        let q = Op::QuantizeLinear(slmtvm_ir::ops::QuantizeLinear { axis: 1, block_size: 0, output_dtype: dt });
        let xq = g.add_node("q", q, vec![Some(x), Some(s), z], &["xq".into()])[0];
        let dq = Op::DequantizeLinear(slmtvm_ir::ops::DequantizeLinear { axis: -1, block_size: 0 });
        let y = g.add_node("dq", dq, vec![Some(xq), Some(s), z], &["y".into()])[0];
        let g = finish(g, y);
        let o = check(&g, "quantize-dequantize", &[f32s(&[d0, d1], seed + 1)], 0.0);
        prop_assert_eq!(count(&o, "QuantizeDequantize"), 1);
        prop_assert_eq!(o.nodes.len(), 1, "{}", slmtvm_ir::text::print(&o));
    }
}
