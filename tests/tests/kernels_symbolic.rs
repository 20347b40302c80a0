//! Kernels over bounded symbolic dims, run at several run-time sizes of one object on every
//! preset against the interpreter. The cross driver fills the padding beyond each input's
//! run-time extent (and the whole workspace) with NaN bytes, so a kernel that reads padding as
//! data, or folds over the bound instead of the run-time extent, fails here.
//!
//! Covers the folds over a symbolic axis (CumSum forward, reversed and exclusive; Reduce of
//! every kind, with and without keepdims, over one or several axes or all; LayerNorm and
//! RmsNorm normalizing over a symbolic axis; GlobalAveragePool over a symbolic spatial axis;
//! Softmax; DynamicQuantizeLinear's range), the same operators over static axes with symbolic
//! leading axes (rows to the run-time extent), MatMulInteger with symbolic rows, and the nodes
//! that are refused with an error naming them.

use slmtvm_ir::ops::{
    AutoPad, BinaryOp, Cast, Concat, CumSum, DequantizeLinear, DynamicQuantizeLinear, Expand, Gemm, GlobalAveragePool,
    LayerNorm, MatMul, MatMulInteger, Pool, PoolKind, QuantizeLinear, Reduce, ReduceKind, Reshape, RmsNorm, Slice,
    Softmax, Split, UnaryOp, Where,
};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, ValueId};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::check_against_interpreter;

fn ty(dt: DType, s: &str) -> TypeInfo {
    TypeInfo::new(dt, Shape::parse(s).unwrap())
}

/// Adds node `name` and makes its outputs graph outputs.
fn out(g: &mut Graph, name: &str, op: Op, ins: &[ValueId], outs: usize) {
    let names: Vec<String> = (0..outs).map(|k| format!("{name}:{k}")).collect();
    let o = g.add_node(name, op, ins.iter().map(|&v| Some(v)).collect(), &names);
    g.outputs.extend(o);
}

fn ints(rng: &mut Lcg, dims: &[usize], lo: i64, hi: i64) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<i64> = (0..n).map(|_| lo + rng.below((hi - lo + 1) as u64) as i64).collect();
    Tensor::from_vec(dims, v).unwrap()
}

fn bytes(rng: &mut Lcg, dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let v: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
    Tensor::from_vec(dims, v).unwrap()
}

fn reduce(kind: ReduceKind, axes: Option<Vec<i64>>, keepdims: bool) -> Op {
    Op::Reduce(Reduce { kind, axes, keepdims })
}

#[test]
fn folds_over_symbolic_axes_read_only_the_run_time_extent() {
    let mut rng = Lcg(29);
    let mut g = Graph::new("sym_folds");
    // x: f32 [b, s, 5]; t: i64 [b, s]; p: f32 [2, 3, s] (spatial s); q: u8 [s, 6].
    let x = g.add_input("x", ty(DType::F32, "[b<=3, s<=12, 5]"));
    let t = g.add_input("t", ty(DType::I64, "[b<=3, s<=12]"));
    let p = g.add_input("p", ty(DType::F32, "[2, 3, s<=12]"));
    let q = g.add_input("q", ty(DType::U8, "[s<=12, 6]"));
    let scale = g.add_const("scale", rng.tensor(&[5], 1.0));
    let bias = g.add_const("bias", rng.tensor(&[5], 1.0));
    let w =
        g.add_const("w", Tensor::from_vec(&[6, 4], (0..24).map(|i| ((i * 37 % 200) - 100) as i8).collect()).unwrap());

    // CumSum along s (forward, reversed, exclusive), along b, and along the static axis.
    for (k, (v, axis, exclusive, reverse)) in [
        (t, 1, false, false),
        (t, -1, false, true),
        (x, 1, true, true),
        (x, 1, false, false),
        (x, 0, false, true),
        (x, 2, true, false),
    ]
    .into_iter()
    .enumerate()
    {
        out(&mut g, &format!("cumsum{k}"), Op::CumSum(CumSum { axis, exclusive, reverse }), &[v], 1);
    }
    // Reductions over s, over (b, s), over everything, and over the static axis.
    for kind in [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max, ReduceKind::L2] {
        let n = format!("{kind:?}").to_lowercase();
        out(&mut g, &format!("{n}_s"), reduce(kind, Some(vec![1]), true), &[x], 1);
        out(&mut g, &format!("{n}_bs"), reduce(kind, Some(vec![0, -2]), false), &[x], 1);
        out(&mut g, &format!("{n}_all"), reduce(kind, None, false), &[x], 1);
        out(&mut g, &format!("{n}_c"), reduce(kind, Some(vec![2]), false), &[x], 1);
        out(&mut g, &format!("{n}_int"), reduce(kind, Some(vec![1]), false), &[t], 1);
    }
    // Norms over [s, 5] (symbolic) and over [5] (symbolic rows), with LayerNorm's statistics.
    for (k, axis) in [1i64, -1].into_iter().enumerate() {
        let ln = Op::LayerNorm(LayerNorm { axis, epsilon: 1e-5 });
        out(&mut g, &format!("layernorm{k}"), ln, &[x, scale, bias], 3);
        out(&mut g, &format!("rmsnorm{k}"), Op::RmsNorm(RmsNorm { axis, epsilon: 1e-6 }), &[x, scale], 1);
        out(&mut g, &format!("softmax{k}"), Op::Softmax(Softmax { axis }), &[x], 1);
    }
    out(&mut g, "gap", Op::GlobalAveragePool(GlobalAveragePool {}), &[p], 1);
    out(&mut g, "mmi", Op::MatMulInteger(MatMulInteger {}), &[q, w], 1);
    // The range of a dynamically quantized tensor: the run-time elements only.
    out(&mut g, "dql", Op::DynamicQuantizeLinear(DynamicQuantizeLinear {}), &[x], 3);
    g.infer().unwrap();
    for name in ["sum_s:0", "layernorm0:0", "gap:0", "mmi:0"] {
        let v = g.values.iter().find(|v| v.name == name).unwrap();
        assert!(!v.ty.shape.is_known() || name == "gap:0", "{name} stays symbolic: {}", v.ty.shape);
    }
    // s = 1, 5, 12 (the bound) and 0 (empty folds) at batch 1, 3, 2, 2.
    let sets: Vec<Vec<Tensor>> = [(1usize, 1usize), (3, 5), (2, 12), (2, 0)]
        .iter()
        .map(|&(b, s)| {
            vec![
                rng.tensor(&[b, s, 5], 2.0),
                ints(&mut rng, &[b, s], -50, 50),
                rng.tensor(&[2, 3, s], 2.0),
                bytes(&mut rng, &[s, 6]),
            ]
        })
        .collect();
    let failures = check_against_interpreter(&g, &sets, 1e-4, 1e-4);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Products whose contraction axis is symbolic on both operands run their K loop to the
/// run-time extent (K = 0 included: Gemm then gives beta·C); every layout of the contraction is
/// covered: MatMul with 2-D and 1-D operands (rank 0 result), Gemm with each transpose, alpha,
/// beta and a broadcast C, MatMulInteger with zero points (per-row on A, its rows symbolic
/// too), f16 operands; and a symbolic K against a static one (the static extent is the K).
#[test]
fn products_contract_symbolic_axes_to_their_run_time_extent() {
    let mut rng = Lcg(31);
    let mut g = Graph::new("sym_k");
    let a = g.add_input("a", ty(DType::F32, "[m<=5, s<=9]"));
    let b = g.add_input("b", ty(DType::F32, "[s<=9, 7]"));
    let at = g.add_input("at", ty(DType::F32, "[s<=9, m<=5]"));
    let bt = g.add_input("bt", ty(DType::F32, "[13, s<=9]"));
    let v = g.add_input("v", ty(DType::F32, "[s<=9]"));
    let q = g.add_input("q", ty(DType::U8, "[m<=5, s<=9]"));
    let w = g.add_input("w", ty(DType::U8, "[s<=9, 10]"));
    let h32 = g.add_input("h", ty(DType::F32, "[2, m<=5, s<=9]"));
    let hb32 = g.add_input("hb", ty(DType::F32, "[s<=9, 3]"));
    let f16 = |g: &mut Graph, x: ValueId, name: &str| {
        g.add_node(name, Op::Cast(Cast { to: DType::F16, saturate: true }), vec![Some(x)], &[format!("{name}:0")])[0]
    };
    let (h, hb) = (f16(&mut g, h32, "h16"), f16(&mut g, hb32, "hb16"));
    let c7 = g.add_const("c7", rng.tensor(&[7], 1.0));
    let c13 = g.add_const("c13", rng.tensor(&[1, 13], 1.0));
    let zq = g.add_input("zq", ty(DType::U8, "[m<=5]"));
    let zw = g.add_const("zw", Tensor::from_vec(&[10], (0..10).map(|i| (i * 23 % 256) as u8).collect()).unwrap());
    let wide = g.add_const("wide", rng.tensor(&[4, 6], 1.0));
    let x4 = g.add_input("x4", ty(DType::F32, "[m<=5, t<=9]"));
    let a3 = g.add_input("a3", ty(DType::F32, "[b<=3, m<=5, s<=9]"));
    let gemm = |alpha, beta, trans_a, trans_b| Op::Gemm(Gemm { alpha, beta, trans_a, trans_b });
    out(&mut g, "mm", Op::MatMul(MatMul {}), &[a, b], 1);
    out(&mut g, "mm_vb", Op::MatMul(MatMul {}), &[v, b], 1);
    out(&mut g, "mm_av", Op::MatMul(MatMul {}), &[a, v], 1);
    out(&mut g, "mm_vv", Op::MatMul(MatMul {}), &[v, v], 1);
    out(&mut g, "gemm", gemm(0.5, 2.0, false, false), &[a, b, c7], 1);
    out(&mut g, "gemm_ta", gemm(1.0, 1.0, true, false), &[at, b, c7], 1);
    out(&mut g, "gemm_tb", gemm(-1.5, 0.25, false, true), &[a, bt, c13], 1);
    out(&mut g, "gemm_tab", gemm(1.0, 0.0, true, true), &[at, bt], 1);
    out(&mut g, "mmi", Op::MatMulInteger(MatMulInteger {}), &[q, w, zq, zw], 1);
    out(&mut g, "mm_f16", Op::MatMul(MatMul {}), &[h, hb], 1);
    // x4's symbolic t (4 at run time) is contracted against wide's static 4.
    out(&mut g, "mm_static", Op::MatMul(MatMul {}), &[x4, wide], 1);
    // A batched A times a 1-D B: the rows are the result's last axis.
    out(&mut g, "mm_bav", Op::MatMul(MatMul {}), &[a3, v], 1);
    g.infer().unwrap();
    // (b, m, s) = (1, 1, 1), (2, 3, 9) (s at the bound), (3, 5, 4), (2, 2, 0) (an empty
    // contraction).
    let sets: Vec<Vec<Tensor>> = [(1usize, 1usize, 1usize), (2, 3, 9), (3, 5, 4), (2, 2, 0)]
        .iter()
        .map(|&(b, m, s)| {
            vec![
                rng.tensor(&[m, s], 1.0),
                rng.tensor(&[s, 7], 1.0),
                rng.tensor(&[s, m], 1.0),
                rng.tensor(&[13, s], 1.0),
                rng.tensor(&[s], 1.0),
                bytes(&mut rng, &[m, s]),
                bytes(&mut rng, &[s, 10]),
                rng.tensor(&[2, m, s], 1.0),
                rng.tensor(&[s, 3], 1.0),
                bytes(&mut rng, &[m]),
                rng.tensor(&[m, 4], 1.0),
                rng.tensor(&[b, m, s], 1.0),
            ]
        })
        .collect();
    let failures = check_against_interpreter(&g, &sets, 1e-4, 1e-3);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A symbolic dim broadcast against a static one (or another symbol) is 1 or that extent at
/// run time: the elementwise walk and Expand read it at index 0 when its run-time extent is 1,
/// else along it; on an outer axis (followed by merged static axes), on the innermost one
/// (scalar steps), in Where's condition, and in Expand.
#[test]
fn symbolic_dims_broadcast_when_they_are_one_at_run_time() {
    let mut rng = Lcg(37);
    let mut g = Graph::new("sym_bcast");
    let a = g.add_input("a", ty(DType::F32, "[p<=6, 4]"));
    let cond = g.add_input("cond", ty(DType::Bool, "[q<=6, 1]"));
    let r = g.add_input("r", ty(DType::F32, "[2, r<=6]"));
    let u = g.add_input("u", ty(DType::F32, "[v<=7, 3, 5]"));
    let e = g.add_input("e", ty(DType::I64, "[w<=6]"));
    let f = g.add_input("f", ty(DType::F32, "[t<=5]"));
    let e2 = g.add_input("e2", ty(DType::F32, "[w<=6, 1]"));
    let c44 = g.add_const("c44", rng.tensor(&[4, 4], 1.0));
    let c43 = g.add_const("c43", rng.tensor(&[4, 3], 1.0));
    let c24 = g.add_const("c24", rng.tensor(&[2, 4], 1.0));
    let c435 = g.add_const("c435", rng.tensor(&[4, 3, 5], 1.0));
    let one = g.add_const("one", Tensor::from_vec(&[1], vec![-2.0f32]).unwrap());
    out(&mut g, "add", Op::Binary(BinaryOp::Add), &[a, c44], 1);
    out(&mut g, "where", Op::Where(Where {}), &[cond, c43, one], 1);
    out(&mut g, "mul_inner", Op::Binary(BinaryOp::Mul), &[r, c24], 1);
    out(&mut g, "sub_outer", Op::Binary(BinaryOp::Sub), &[c435, u], 1);
    let shape = g.add_const("shape", Tensor::from_vec(&[2], vec![2i64, 3]).unwrap());
    out(&mut g, "expand", Op::Expand(Expand {}), &[e, shape], 1);
    out(&mut g, "neg", Op::Unary(UnaryOp::Neg), &[f], 1);
    // [w, 1] to [3, 8]: w at run time, the static 1 splat into vector steps.
    let shape2 = g.add_const("shape2", Tensor::from_vec(&[2], vec![3i64, 8]).unwrap());
    out(&mut g, "expand2", Op::Expand(Expand {}), &[e2, shape2], 1);
    g.infer().unwrap();
    for (name, want) in [("add:0", "[4, 4]"), ("sub_outer:0", "[4, 3, 5]"), ("expand:0", "[2, 3]")] {
        let v = g.values.iter().find(|v| v.name == name).unwrap();
        assert_eq!(v.ty.shape.to_string(), want, "{name}");
    }
    // (p, q, r, v, w, t): each symbol 1 or the extent it broadcasts against (t is free).
    let sets: Vec<Vec<Tensor>> = [(4, 4, 4, 4, 3, 3), (1, 1, 1, 1, 1, 5), (1, 4, 4, 1, 3, 5), (4, 1, 1, 4, 1, 1)]
        .iter()
        .map(|&(p, q, r, v, w, t)| {
            let bools: Vec<bool> = (0..q).map(|_| rng.below(2) == 1).collect();
            vec![
                rng.tensor(&[p, 4], 1.0),
                Tensor::from_vec(&[q, 1], bools).unwrap(),
                rng.tensor(&[2, r], 1.0),
                rng.tensor(&[v, 3, 5], 1.0),
                ints(&mut rng, &[w], -9, 9),
                rng.tensor(&[t], 1.0),
                rng.tensor(&[w, 1], 1.0),
            ]
        })
        .collect();
    let failures = check_against_interpreter(&g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Slices of a tensor with a symbolic axis: any step along its static axes (even and odd
/// lanes of an interleaved rotary embedding, a reversal, a step of 3 from a negative start)
/// with the symbolic axis whole or cut from a constant start.
#[test]
fn slices_step_along_the_static_axes_of_symbolic_tensors() {
    let mut rng = Lcg(41);
    let mut g = Graph::new("sym_slice");
    let x = g.add_input("x", ty(DType::F32, "[b<=3, s<=7, 8]"));
    let list =
        |g: &mut Graph, name: &str, v: &[i64]| g.add_const(name, Tensor::from_vec(&[v.len()], v.to_vec()).unwrap());
    // (starts, ends, axes, steps) per slice.
    type Args = (&'static [i64], &'static [i64], &'static [i64], &'static [i64]);
    let cases: [Args; 5] = [
        (&[0], &[i64::MAX], &[2], &[2]),
        (&[1], &[i64::MAX], &[-1], &[2]),
        (&[-1], &[i64::MIN], &[2], &[-1]),
        (&[1, -2], &[i64::MAX, -9], &[1, 2], &[1, -3]),
        (&[6, 0], &[0, i64::MAX], &[2, 1], &[-2, 1]),
    ];
    for (k, (st, en, ax, sp)) in cases.iter().enumerate() {
        let ins = [
            x,
            list(&mut g, &format!("st{k}"), st),
            list(&mut g, &format!("en{k}"), en),
            list(&mut g, &format!("ax{k}"), ax),
            list(&mut g, &format!("sp{k}"), sp),
        ];
        out(&mut g, &format!("slice{k}"), Op::Slice(Slice {}), &ins, 1);
    }
    g.infer().unwrap();
    let shapes: Vec<String> = g.outputs.iter().map(|&o| g.value(o).ty.shape.to_string()).collect();
    assert_eq!(
        shapes,
        ["[b<=3, s<=7, 4]", "[b<=3, s<=7, 4]", "[b<=3, s<=7, 8]", "[b<=3, s-1<=6, 3]", "[b<=3, s<=7, 3]"]
    );
    let sets: Vec<Vec<Tensor>> =
        [(1usize, 1usize), (3, 7), (2, 4)].iter().map(|&(b, s)| vec![rng.tensor(&[b, s, 8], 1.0)]).collect();
    let failures = check_against_interpreter(&g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// QuantizeLinear and DequantizeLinear per axis along a symbolic axis (scales and zero points
/// of that axis's dim, given at run time), per block along a static axis of a tensor with
/// symbolic rows, and per tensor.
#[test]
fn quantization_parameters_follow_a_symbolic_axis() {
    let mut rng = Lcg(43);
    let mut g = Graph::new("sym_quant");
    let x = g.add_input("x", ty(DType::F32, "[s<=7, 6]"));
    let scale = g.add_input("scale", ty(DType::F32, "[s<=7]"));
    let zp = g.add_input("zp", ty(DType::U8, "[s<=7]"));
    let q = g.add_input("q", ty(DType::I8, "[2, s<=7]"));
    let bscale = g.add_input("bscale", ty(DType::F32, "[s<=7, 3]"));
    let one = g.add_const("one", Tensor::from_vec(&[], vec![0.05f32]).unwrap());
    let ql = |axis, block_size| Op::QuantizeLinear(QuantizeLinear { axis, block_size, output_dtype: DType::U8 });
    let dql = |axis, block_size| Op::DequantizeLinear(DequantizeLinear { axis, block_size });
    out(&mut g, "q_axis", ql(0, 0), &[x, scale, zp], 1);
    out(&mut g, "dq_axis", dql(-1, 0), &[q, scale], 1);
    out(&mut g, "q_block", ql(1, 2), &[x, bscale], 1);
    out(&mut g, "dq_tensor", dql(0, 0), &[q, one], 1);
    g.infer().unwrap();
    let sets: Vec<Vec<Tensor>> = [1usize, 7, 4]
        .iter()
        .map(|&s| {
            let sc: Vec<f32> = (0..s).map(|i| 0.01 + 0.02 * i as f32).collect();
            let qs: Vec<i8> = (0..2 * s).map(|_| rng.below(256) as u8 as i8).collect();
            vec![
                rng.tensor(&[s, 6], 2.0),
                Tensor::from_vec(&[s], sc).unwrap(),
                bytes(&mut rng, &[s]),
                Tensor::from_vec(&[2, s], qs).unwrap(),
                Tensor::from_vec(&[s, 3], (0..3 * s).map(|i| 0.03 + 0.01 * i as f32).collect::<Vec<f32>>()).unwrap(),
            ]
        })
        .collect();
    let failures = check_against_interpreter(&g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Sizes that are no polynomial of the symbols (atoms: `min`, `floordiv`), computed at run time:
/// a slice to a constant end of a symbolic axis (`min(s,3)`), equal parts of a symbolic axis
/// (`floordiv(s+2,3)` each, the last the rest) and static parts of one, and a Reshape whose
/// -1 is the quotient by a constant.
#[test]
fn sizes_computed_at_run_time_min_and_floor_division() {
    let mut rng = Lcg(47);
    let mut g = Graph::new("sym_atoms");
    let x = g.add_input("x", ty(DType::F32, "[b<=2, s<=13, 4]"));
    let y = g.add_input("y", ty(DType::F32, "[t<=9, 6]"));
    let list =
        |g: &mut Graph, name: &str, v: &[i64]| g.add_const(name, Tensor::from_vec(&[v.len()], v.to_vec()).unwrap());
    let ins = [x, list(&mut g, "st", &[1]), list(&mut g, "en", &[4]), list(&mut g, "ax", &[1])];
    out(&mut g, "head", Op::Slice(Slice {}), &ins, 1);
    out(&mut g, "thirds", Op::Split(Split { axis: 1, sizes: None, num_outputs: 3 }), &[x], 3);
    out(&mut g, "parts", Op::Split(Split { axis: 0, sizes: Some(vec![2, 3]), num_outputs: 2 }), &[y], 2);
    let shape = list(&mut g, "shape", &[-1, 3]);
    out(&mut g, "rows", Op::Reshape(Reshape { allowzero: false }), &[y, shape], 1);
    // The sums of parts are whole again: the run-time offsets of the parts are right.
    g.infer().unwrap();
    let shapes: Vec<String> = g.outputs.iter().map(|&o| g.value(o).ty.shape.to_string()).collect();
    assert_eq!(
        shapes,
        [
            "[b<=2, min(4,s)-1<=3, 4]",
            "[b<=2, floordiv(s+2,3)<=5, 4]",
            "[b<=2, floordiv(s+2,3)<=5, 4]",
            "[b<=2, -2*floordiv(s+2,3)+s<=13, 4]",
            "[2, 6]",
            "[3, 6]",
            "[2*t<=18, 3]",
        ]
    );
    // (b, s, t): s from 1 to the bound, some not divisible by 3; t = 5 for the static parts.
    let sets: Vec<Vec<Tensor>> = [(1usize, 2usize), (2, 13), (2, 7), (1, 3), (2, 4)]
        .iter()
        .map(|&(b, s)| vec![rng.tensor(&[b, s, 4], 1.0), rng.tensor(&[5, 6], 1.0)])
        .collect();
    let failures = check_against_interpreter(&g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Concat whose inputs have a symbolic dim where the output has the static size it must equal
/// at run time (each input read with its own physical layout), before and along the axis.
#[test]
fn concat_reads_each_input_in_its_own_layout() {
    let mut rng = Lcg(53);
    let mut g = Graph::new("sym_concat");
    let a = g.add_input("a", ty(DType::F32, "[2, 3, 2]"));
    let b = g.add_input("b", ty(DType::F32, "[s<=5, u<=4, t<=7]"));
    let c = g.add_input("c", ty(DType::F32, "[s<=5, u<=4, 2]"));
    let d = g.add_input("d", ty(DType::F32, "[v<=6, 3, 2]"));
    out(&mut g, "cat_last", Op::Concat(Concat { axis: 2 }), &[a, b], 1);
    out(&mut g, "cat_first", Op::Concat(Concat { axis: -1 }), &[c, a], 1);
    out(&mut g, "cat_rows", Op::Concat(Concat { axis: 0 }), &[c, a, c], 1);
    out(&mut g, "cat_inner", Op::Concat(Concat { axis: 1 }), &[d, a], 1);
    g.infer().unwrap();
    let shapes: Vec<String> = g.outputs.iter().map(|&o| g.value(o).ty.shape.to_string()).collect();
    assert_eq!(shapes, ["[2, 3, t+2<=9]", "[2, 3, 4]", "[2*s+2<=12, 3, 2]", "[2, 6, 2]"]);
    // s, u and v must be 2, 3 and 2 (the static sizes they meet); t is free.
    let sets: Vec<Vec<Tensor>> = [1usize, 7, 0]
        .iter()
        .map(|&t| {
            vec![
                rng.tensor(&[2, 3, 2], 1.0),
                rng.tensor(&[2, 3, t], 1.0),
                rng.tensor(&[2, 3, 2], 1.0),
                rng.tensor(&[2, 3, 2], 1.0),
            ]
        })
        .collect();
    let failures = check_against_interpreter(&g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Compiling `g` for the host is refused with an error naming `node` and `what`.
fn refused(g: &Graph, node: &str, what: &str) {
    let target = slmtvm_targets::Target::from_spec("x86_64").unwrap();
    match slmtvm_codegen::compile(g, "m", &target) {
        Ok(_) => panic!("{node}: compiled"),
        Err(e) => {
            let m = e.to_string();
            assert!(m.contains(&format!("'{node}'")) && m.contains(what), "{node}: {m}");
        }
    }
}

#[test]
fn nodes_that_need_a_static_size_are_refused_by_name() {
    let one = |op: Op, x: TypeInfo, outs: usize| {
        let mut g = Graph::new("refused");
        let v = g.add_input("x", x);
        out(&mut g, "n", op, &[v], outs);
        g.infer().unwrap();
        g
    };
    let pool = Pool {
        kind: PoolKind::Max,
        kernel_shape: vec![2],
        strides: None,
        dilations: None,
        pads: None,
        auto_pad: AutoPad::SameUpper,
        ceil_mode: false,
        count_include_pad: false,
    };
    // A window sliding along a symbolic axis (SAME padding keeps the output's size s).
    refused(&one(Op::Pool(pool.clone()), ty(DType::F32, "[1, 2, s<=9]"), 1), "n", "symbolic along axis 2");
    // Two different symbols broadcast against each other: the size is unknown (it is the
    // larger one, or 0 when either is), no bounded size: the layout refuses it, naming it.
    let mut g = Graph::new("two_symbols");
    let a = g.add_input("a", ty(DType::F32, "[s<=4]"));
    let b = g.add_input("b", ty(DType::F32, "[t<=5]"));
    out(&mut g, "n", Op::Binary(BinaryOp::Add), &[a, b], 1);
    g.infer().unwrap();
    refused(&g, "n:0", "computed at run time");
    // A symbolic batch alone is position-wise: it compiles.
    let target = slmtvm_targets::Target::from_spec("x86_64").unwrap();
    slmtvm_codegen::compile(&one(Op::Pool(pool), ty(DType::F32, "[b<=4, 2, 9]"), 1), "m", &target).unwrap();
}
