//! Reduce, Softmax, LayerNorm, BatchNorm and GlobalAveragePool kernels on every target preset
//! against the reference interpreter: many shapes (rows of 1 to 384 elements, rank 0 to 4,
//! size-0 axes), every axis combination, keepdims both ways and every accepted dtype. Many
//! nodes share one graph so that one compile, link and run per preset checks them all.

use slmtvm_ir::ops::{BatchNorm, GlobalAveragePool, LayerNorm, Reduce, ReduceKind, Softmax};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, ValueId, interp};
use slmtvm_tests::cross::{Job, run_batch, runnable_presets};
use slmtvm_tests::{Lcg, compare, target_dir};
use std::collections::BTreeMap;

const KINDS: [ReduceKind; 4] = [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max, ReduceKind::L2];

/// IEEE binary16 bits of `v`, which must be exactly representable (or 0, ±inf, NaN).
fn f16_bits(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7e00;
    }
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    if v.is_infinite() {
        return sign | 0x7c00;
    }
    let e = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if e <= 0 {
        // Subnormal: a multiple of 2^-24.
        let k = f64::from(v.abs()) * f64::from(1u32 << 24);
        assert!(k.fract() == 0.0 && k < 1024.0, "{v} is not an exact f16");
        return sign | k as u16;
    }
    assert!(e < 31 && b & 0x1fff == 0, "{v} is not an exact normal f16");
    sign | ((e as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// A tensor of float `dt` from values that are exact in it.
fn float_tensor(dt: DType, dims: &[usize], v: &[f64]) -> Tensor {
    match dt {
        DType::F32 => Tensor::from_vec(dims, v.iter().map(|&x| x as f32).collect()).unwrap(),
        DType::F16 => {
            let bytes: Vec<u8> = v.iter().flat_map(|&x| f16_bits(x as f32).to_le_bytes()).collect();
            Tensor::from_le_bytes(DType::F16, dims, &bytes).unwrap()
        }
        other => panic!("{other} is not a float"),
    }
}

/// What data an input gets.
#[derive(Clone, Copy, PartialEq)]
enum Data {
    /// Per data set: floats on a grid of 1/8 (exact f32/f16 sums), random floats (f16: a 1/64
    /// grid), floats with NaN and infinities sprinkled in; small integers, then two sets of
    /// full-range ones.
    Mixed,
    /// Floats in [0.25, 2.25] (variances).
    Positive,
    /// The mixed floats times 20 (exp overflows without the max subtracted).
    Large,
    /// Multiples of 2^-20 below 2^-14 (f16 subnormals).
    Tiny,
}

/// Input data of `dt` and `dims` for data set `set`.
fn data(dt: DType, dims: &[usize], set: usize, kind: Data, rng: &mut Lcg) -> Tensor {
    let n: usize = dims.iter().product();
    if dt.is_float() {
        let v: Vec<f64> = (0..n)
            .map(|_| match (kind, set, dt) {
                (Data::Positive, _, _) => 0.25 + rng.below(17) as f64 / 8.0,
                (_, 0, _) => rng.below(81) as f64 / 8.0 - 5.0,
                (_, 1, DType::F16) => rng.below(513) as f64 / 64.0 - 4.0,
                (_, 1, _) => rng.unit() * 2.0,
                _ => match rng.below(400) {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    _ => rng.below(81) as f64 / 8.0 - 5.0,
                },
            })
            .collect();
        let v: Vec<f64> = match kind {
            Data::Large => v.iter().map(|x| x * 20.0).collect(),
            Data::Tiny => (0..n).map(|_| (rng.below(127) as f64 - 63.0) / f64::from(1u32 << 20)).collect(),
            _ => v,
        };
        return float_tensor(dt, dims, &v);
    }
    let full = |r: &mut Lcg| r.bits().wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64;
    let v: Vec<i64> = (0..n).map(|_| if set == 0 { rng.below(101) as i64 - 50 } else { full(rng) }).collect();
    match dt {
        DType::I8 => Tensor::from_vec(dims, v.iter().map(|&x| x as i8).collect()).unwrap(),
        DType::U8 => Tensor::from_vec(dims, v.iter().map(|&x| x as u8).collect()).unwrap(),
        DType::I32 => Tensor::from_vec(dims, v.iter().map(|&x| x as i32).collect()).unwrap(),
        DType::I64 => Tensor::from_vec(dims, v).unwrap(),
        DType::Bool => Tensor::from_vec(dims, v.iter().map(|&x| x & 1 == 1).collect()).unwrap(),
        _ => unreachable!(),
    }
}

/// An input of a [`Case`]: its index among the case's inputs.
type In = usize;

/// A graph being filled, its data sets, and where each case input sits in it.
type Packing = (Graph, Vec<Vec<Tensor>>, BTreeMap<In, ValueId>);

/// Most outputs (and inputs) per graph: the cross runner's driver takes at most 64.
const MAX_VALUES: usize = 60;

/// Nodes to check, with their inputs and data sets; packed into graphs of at most
/// [`MAX_VALUES`] inputs and outputs, all run in one batch per target preset.
struct Case {
    name: String,
    inputs: Vec<(TypeInfo, Vec<Tensor>)>,
    nodes: Vec<(Op, Vec<Option<In>>, usize)>,
    rng: Lcg,
}

impl Case {
    fn new(name: &str) -> Case {
        Case { name: name.into(), inputs: Vec::new(), nodes: Vec::new(), rng: Lcg(name.len() as u64 * 7919 + 1) }
    }

    fn input_as(&mut self, dt: DType, dims: &[usize], kind: Data) -> In {
        let sets = (0..3).map(|s| data(dt, dims, s, kind, &mut self.rng)).collect();
        self.inputs.push((TypeInfo::new(dt, Shape::known(dims)), sets));
        self.inputs.len() - 1
    }

    fn input(&mut self, dt: DType, dims: &[usize]) -> In {
        self.input_as(dt, dims, Data::Mixed)
    }

    /// Adds a node whose first `outputs` outputs are graph outputs.
    fn node(&mut self, op: Op, inputs: Vec<Option<In>>, outputs: usize) {
        self.nodes.push((op, inputs, outputs));
    }

    fn reduce(&mut self, x: In, kind: ReduceKind, axes: Option<Vec<i64>>, keepdims: bool) {
        self.node(Op::Reduce(Reduce { kind, axes, keepdims }), vec![Some(x)], 1);
    }

    /// The nodes packed into graphs, each with its data sets.
    fn graphs(&self) -> Vec<(Graph, Vec<Vec<Tensor>>)> {
        let mut out: Vec<(Graph, Vec<Vec<Tensor>>)> = Vec::new();
        let mut cur: Option<Packing> = None;
        for (k, (op, ins, nout)) in self.nodes.iter().enumerate() {
            let fresh = ins.iter().flatten().filter(|i| cur.as_ref().is_none_or(|c| !c.2.contains_key(i))).count();
            let full = cur
                .as_ref()
                .is_some_and(|c| c.0.outputs.len() + nout > MAX_VALUES || c.0.inputs.len() + fresh > MAX_VALUES);
            if full || cur.is_none() {
                if let Some((mut g, sets, _)) = cur.take() {
                    g.infer().unwrap();
                    out.push((g, sets));
                }
                let g = Graph::new(format!("{}{}", self.name, out.len()));
                cur = Some((g, vec![Vec::new(); 3], BTreeMap::new()));
            }
            let (g, sets, map) = cur.as_mut().unwrap();
            let mut vins = Vec::new();
            for i in ins {
                vins.push(i.map(|i| {
                    *map.entry(i).or_insert_with(|| {
                        let (ty, data) = &self.inputs[i];
                        sets.iter_mut().zip(data).for_each(|(s, d)| s.push(d.clone()));
                        g.add_input(format!("in{i}"), ty.clone())
                    })
                }));
            }
            let names: Vec<String> = (0..*nout).map(|o| format!("n{k}_{o}")).collect();
            let outs = g.add_node(format!("n{k}"), op.clone(), vins, &names);
            g.outputs.extend(&outs);
        }
        if let Some((mut g, sets, _)) = cur {
            g.infer().unwrap();
            out.push((g, sets));
        }
        out
    }

    /// Runs every graph on every preset; panics with every mismatch against the interpreter.
    fn check(self, rtol: f64, atol: f64) {
        let graphs = self.graphs();
        let jobs: Vec<Job> = graphs.iter().map(|(g, d)| Job { graph: g, data: d.clone() }).collect();
        let want: Vec<Vec<Vec<Tensor>>> =
            graphs.iter().map(|(g, d)| d.iter().map(|s| interp::run(g, s).unwrap()).collect()).collect();
        let presets = runnable_presets();
        assert!(!presets.is_empty(), "no target can be linked and run here");
        let mut failures = Vec::new();
        for t in presets {
            let dir =
                target_dir().join("slmtvm-cross").join(format!("{}-{}-{}", self.name, t.name(), std::process::id()));
            let res = run_batch(&t, &jobs, &dir);
            for ((got, want), (g, _)) in res.iter().zip(&want).zip(&graphs) {
                for (d, (got, want)) in got.iter().zip(want).enumerate() {
                    let got = match got {
                        Ok(o) => o,
                        Err(e) => {
                            failures.push(format!("{} {}: data set {d}: {e}", t.name(), g.name));
                            continue;
                        }
                    };
                    for (k, (w, o)) in want.iter().zip(got).enumerate() {
                        let (r, a) = if w.dtype().is_float() { (rtol, atol) } else { (0.0, 0.0) };
                        if let Err(m) = compare(w, o, r, a) {
                            let node = &g.nodes.iter().find(|n| n.outputs.contains(&g.outputs[k])).unwrap();
                            let ins: Vec<String> = node.inputs.iter().flatten().map(|&v| g.ty(v).to_string()).collect();
                            failures.push(format!("{} data set {d}: {:?} on {ins:?}: {m}", t.name(), node.op));
                        }
                    }
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

/// Every subset of `0..rank` (as `Some`, written with negative axes for odd subsets), and
/// `None`.
fn axis_sets(rank: usize) -> Vec<Option<Vec<i64>>> {
    let mut out = vec![None];
    for m in 0..1usize << rank {
        let axes: Vec<i64> = (0..rank)
            .filter(|&a| m >> a & 1 == 1)
            .map(|a| if m % 2 == 1 { a as i64 - rank as i64 } else { a as i64 })
            .collect();
        out.push(Some(axes));
    }
    out
}

#[test]
fn reduce_every_axis_combination_of_rank_3() {
    let mut c = Case::new("red_rank3");
    for dims in [[3usize, 4, 5], [2, 1, 6], [4, 8, 2]] {
        let x = c.input(DType::F32, &dims);
        for axes in axis_sets(3) {
            for keepdims in [false, true] {
                for kind in KINDS {
                    c.reduce(x, kind, axes.clone(), keepdims);
                }
            }
        }
    }
    c.check(1e-6, 1e-6);
}

#[test]
fn reduce_rows_and_columns_of_many_lengths() {
    let mut c = Case::new("red_rows");
    for n in [1usize, 3, 4, 5, 17, 64, 384] {
        let shapes: [(&[usize], Option<Vec<i64>>); 7] = [
            (&[3, n], Some(vec![-1])),
            (&[n], None),
            (&[2, n, 3], Some(vec![1])),
            (&[2, n, 8], Some(vec![1])),
            (&[n, 5], Some(vec![0])),
            (&[2, n, 6], Some(vec![0, 2])),
            (&[3, 2, n], Some(vec![0, 2])),
        ];
        for (dims, axes) in shapes {
            let x = c.input(DType::F32, dims);
            for kind in KINDS {
                c.reduce(x, kind, axes.clone(), kind == ReduceKind::Mean);
            }
        }
    }
    c.check(1e-5, 1e-4);
}

#[test]
fn reduce_rank_0_rank_4_and_empty_sets() {
    let mut c = Case::new("red_edges");
    let s = c.input(DType::F32, &[]);
    let r4 = c.input(DType::F32, &[2, 3, 4, 5]);
    let e = c.input(DType::F32, &[2, 0, 4]);
    let e1 = c.input(DType::F32, &[0]);
    for kind in KINDS {
        for keepdims in [false, true] {
            c.reduce(s, kind, None, keepdims);
            c.reduce(s, kind, Some(vec![]), keepdims);
            for axes in [vec![1, 3], vec![0, 2], vec![-1, -2], vec![2, 3], vec![0, 1], vec![1, 2, 3], vec![]] {
                c.reduce(r4, kind, Some(axes), keepdims);
            }
            c.reduce(r4, kind, None, keepdims);
            for axes in [vec![1], vec![0, 1], vec![2], vec![0], vec![]] {
                c.reduce(e, kind, Some(axes), keepdims);
            }
            c.reduce(e, kind, None, keepdims);
            c.reduce(e1, kind, None, keepdims);
        }
    }
    c.check(1e-5, 1e-4);
}

#[test]
fn reduce_integer_and_bool_dtypes() {
    let mut c = Case::new("red_ints");
    for dt in [DType::I32, DType::I64] {
        for dims in [&[3usize, 5, 4][..], &[2, 17], &[1, 1]] {
            let x = c.input(dt, dims);
            for axes in axis_sets(dims.len()) {
                for kind in KINDS {
                    c.reduce(x, kind, axes.clone(), false);
                }
            }
        }
        let e = c.input(dt, &[3, 0]);
        for kind in KINDS {
            c.reduce(e, kind, Some(vec![1]), true);
        }
    }
    for dt in [DType::I8, DType::U8, DType::Bool] {
        let x = c.input(dt, &[3, 5, 4]);
        for axes in axis_sets(3) {
            c.reduce(x, ReduceKind::Max, axes, true);
        }
        let e = c.input(dt, &[0, 2]);
        c.reduce(e, ReduceKind::Max, Some(vec![0]), false);
    }
    c.check(0.0, 0.0);
}

#[test]
fn reduce_f16() {
    let mut c = Case::new("red_f16");
    for dims in [&[3usize, 5, 4][..], &[2, 17], &[2, 64]] {
        let x = c.input(DType::F16, dims);
        for axes in axis_sets(dims.len()) {
            for kind in KINDS {
                c.reduce(x, kind, axes.clone(), true);
            }
        }
    }
    let e = c.input(DType::F16, &[2, 0]);
    for kind in KINDS {
        c.reduce(e, kind, Some(vec![1]), false);
    }
    c.check(2e-3, 2e-3);
}

#[test]
fn reduce_f16_subnormals() {
    let mut c = Case::new("red_f16_tiny");
    for dims in [&[3usize, 5, 4][..], &[2, 17], &[2, 64]] {
        let x = c.input_as(DType::F16, dims, Data::Tiny);
        for axes in [None, Some(vec![-1]), Some(vec![0]), Some(vec![])] {
            for kind in [ReduceKind::Sum, ReduceKind::Max] {
                c.reduce(x, kind, axes.clone(), false);
            }
        }
        c.node(Op::Softmax(Softmax { axis: -1 }), vec![Some(x)], 1);
    }
    c.check(2e-3, 0.0);
}

fn layer_norm(c: &mut Case, dt: DType, dims: &[usize], axis: i64, pdims: &[usize], bias: bool, outputs: usize) {
    let x = c.input(dt, dims);
    let s = c.input(dt, pdims);
    let b = bias.then(|| c.input(dt, pdims));
    c.node(Op::LayerNorm(LayerNorm { axis, epsilon: 1e-5 }), vec![Some(x), Some(s), b], outputs);
}

#[test]
fn layer_norm_axes_parameters_and_statistics() {
    let mut c = Case::new("layernorm");
    // 16, 21, 63, 65: the output pass's 16-element steps, its 4-lane steps and scalar tail.
    for n in [1usize, 3, 4, 5, 16, 17, 21, 63, 64, 65, 384] {
        layer_norm(&mut c, DType::F32, &[3, n], -1, &[n], true, 1);
        layer_norm(&mut c, DType::F32, &[2, 2, n], -1, &[n], false, 3);
    }
    // Axis -2, parameters over both normalized axes, over the last only, size 1, full shape.
    layer_norm(&mut c, DType::F32, &[2, 3, 5], -2, &[3, 5], true, 3);
    layer_norm(&mut c, DType::F32, &[2, 3, 5], -2, &[5], true, 2);
    layer_norm(&mut c, DType::F32, &[2, 3, 5], -2, &[3, 1], true, 3);
    layer_norm(&mut c, DType::F32, &[2, 3, 8], -1, &[1], false, 1);
    layer_norm(&mut c, DType::F32, &[2, 3, 8], -1, &[2, 3, 8], true, 1);
    layer_norm(&mut c, DType::F32, &[2, 3, 8], -1, &[3, 1], true, 1);
    layer_norm(&mut c, DType::F32, &[2, 3, 8], 0, &[8], true, 3);
    layer_norm(&mut c, DType::F32, &[4, 6], 1, &[6], true, 3);
    layer_norm(&mut c, DType::F32, &[7], 0, &[7], false, 3);
    // Empty rows and an empty batch.
    layer_norm(&mut c, DType::F32, &[3, 0], -1, &[0], true, 3);
    layer_norm(&mut c, DType::F32, &[0, 4], -1, &[4], true, 3);
    c.check(1e-5, 1e-5);
}

#[test]
fn layer_norm_f16() {
    let mut c = Case::new("layernorm_f16");
    for n in [1usize, 5, 17, 21, 64, 65] {
        layer_norm(&mut c, DType::F16, &[3, n], -1, &[n], true, 3);
        layer_norm(&mut c, DType::F16, &[2, 3, n], -2, &[3, n], false, 1);
    }
    c.check(4e-3, 4e-3);
}

#[test]
fn batch_norm_ranks_2_to_4() {
    let shapes: [&[usize]; 8] =
        [&[3, 4], &[5, 9], &[2, 7, 1], &[2, 3, 5], &[2, 3, 17], &[2, 4, 3, 3], &[1, 2, 8, 8], &[0, 3, 2]];
    let pairs =
        [[(DType::F32, DType::F32), (DType::F32, DType::F16)], [(DType::F16, DType::F32), (DType::F16, DType::F16)]];
    for (name, pairs, tol) in [("batchnorm", pairs[0], 1e-5), ("batchnorm_f16", pairs[1], 2e-3)] {
        let mut c = Case::new(name);
        for (k, dims) in shapes.iter().enumerate() {
            for (dt, pdt) in pairs {
                let x = c.input(dt, dims);
                let ch = [dims[1]];
                let mut ins: Vec<Option<In>> = vec![Some(x)];
                ins.extend((0..3).map(|_| Some(c.input(pdt, &ch))));
                ins.push(Some(c.input_as(pdt, &ch, Data::Positive)));
                c.node(Op::BatchNorm(BatchNorm { epsilon: 1e-3 * k as f32 }), ins, 1);
            }
        }
        c.check(tol, tol);
    }
}

#[test]
fn global_average_pool_ranks_2_to_4() {
    let shapes: [&[usize]; 7] =
        [&[2, 3], &[2, 3, 17], &[1, 4, 64], &[2, 4, 5, 5], &[1, 8, 7, 7], &[2, 3, 0], &[0, 3, 4]];
    for (name, dt, tol) in [("gap", DType::F32, 1e-5), ("gap_f16", DType::F16, 2e-3)] {
        let mut c = Case::new(name);
        for dims in shapes {
            let x = c.input(dt, dims);
            c.node(Op::GlobalAveragePool(GlobalAveragePool {}), vec![Some(x)], 1);
        }
        c.check(tol, tol);
    }
}

#[test]
fn softmax_every_axis() {
    let shapes: [&[usize]; 14] = [
        &[1],
        &[3],
        &[4, 5],
        &[3, 17],
        &[2, 21],
        &[2, 63],
        &[2, 64],
        &[3, 65],
        &[2, 3, 384],
        &[1, 2, 5, 5],
        &[2, 17, 8],
        &[3, 5, 3],
        &[2, 4, 6, 5],
        &[0, 3],
    ];
    for (name, dt, tol) in [("softmax", DType::F32, 1e-5), ("softmax_f16", DType::F16, 2e-3)] {
        let mut c = Case::new(name);
        for dims in shapes {
            let x = c.input(dt, dims);
            let big = c.input_as(dt, dims, Data::Large);
            for axis in 0..dims.len() as i64 {
                let axis = if axis % 2 == 1 { axis - dims.len() as i64 } else { axis };
                c.node(Op::Softmax(Softmax { axis }), vec![Some(x)], 1);
                c.node(Op::Softmax(Softmax { axis }), vec![Some(big)], 1);
            }
        }
        c.check(tol, 1e-7);
    }
}
