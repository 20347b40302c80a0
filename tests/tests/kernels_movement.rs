//! Data-movement and generator kernels (codegen/src/kernels/movement.rs) on every target
//! preset against the reference interpreter, bit for bit: Transpose, Concat, Split, Slice,
//! Gather, Expand, Trilu, Range, Shape, Size, ConstantOfShape, and Reshape / Flatten /
//! Squeeze / Unsqueeze as graph outputs (the nodes that get a copy kernel), in every dtype.
//!
//! Each test builds a few graphs with many nodes (one link per preset and graph). Data are
//! deterministic pseudo-random bytes, so floats include NaNs, infinities and subnormals;
//! sizes include odd extents, size-1 and size-0 dims, and rows long enough for the copy loops.

use slmtvm_ir::ops::{
    Concat, ConstantOfShape, Expand, Flatten, Gather, Range, Reshape, ShapeOf, Size, Slice, Split, Squeeze, Transpose,
    Trilu, Unsqueeze,
};
use slmtvm_ir::{DType, Graph, Op, Scalar, Shape, Tensor, TypeInfo, ValueId};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::{Job, check_against_interpreter, run_batch, runnable_presets};

/// A Split case: input dims, axis, sizes, the operator's outputs, the outputs the node uses.
type SplitCase = (&'static [usize], i64, Option<Vec<usize>>, usize, usize);
/// A Slice case: data dims, starts, ends, axes, steps.
type SliceCase = (&'static [usize], &'static [i64], &'static [i64], Option<&'static [i64]>, Option<&'static [i64]>);

const ALL: [DType; 7] = [DType::F32, DType::F16, DType::I8, DType::U8, DType::I32, DType::I64, DType::Bool];

/// Most graph inputs a compiled test model may have (the runner's limit is 64).
const MAX_INPUTS: usize = 40;

/// A graph under construction with the data sets of its run-time inputs.
struct G {
    g: Graph,
    /// Per data set, the inputs in order.
    sets: Vec<Vec<Tensor>>,
    rng: Lcg,
    n: usize,
}

impl G {
    fn new(name: &str, sets: usize) -> G {
        G { g: Graph::new(name), sets: vec![Vec::new(); sets], rng: Lcg(0x9e37_79b9_7f4a_7c15), n: 0 }
    }

    fn name(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what}{}", self.n)
    }

    /// Pseudo-random bytes as a tensor of `dt` and `dims`.
    fn random(&mut self, dt: DType, dims: &[usize]) -> Tensor {
        let n: usize = dims.iter().product::<usize>() * dt.size();
        let bytes: Vec<u8> = (0..n).map(|_| (self.rng.bits() >> 45) as u8).collect();
        Tensor::from_le_bytes(dt, dims, &bytes).unwrap()
    }

    /// Data of `dt` and `dims`: a run-time input (random per data set) while there is room,
    /// else a constant.
    fn data(&mut self, dt: DType, dims: &[usize]) -> ValueId {
        if self.g.inputs.len() >= MAX_INPUTS {
            let t = self.random(dt, dims);
            return self.konst(t);
        }
        let name = self.name("x");
        let id = self.g.add_input(name, TypeInfo::new(dt, Shape::known(dims)));
        for k in 0..self.sets.len() {
            let t = self.random(dt, dims);
            self.sets[k].push(t);
        }
        id
    }

    /// A run-time input with the given value in each data set.
    fn input(&mut self, per_set: Vec<Tensor>) -> ValueId {
        assert_eq!(per_set.len(), self.sets.len());
        let name = self.name("in");
        let t = &per_set[0];
        let id = self.g.add_input(name, TypeInfo::new(t.dtype(), t.static_shape()));
        for (s, t) in self.sets.iter_mut().zip(per_set) {
            s.push(t);
        }
        id
    }

    fn konst(&mut self, t: Tensor) -> ValueId {
        let name = self.name("c");
        self.g.add_const(name, t)
    }

    fn i64s(&mut self, v: &[i64]) -> ValueId {
        self.konst(Tensor::from_vec(&[v.len()], v.to_vec()).unwrap())
    }

    /// Adds a node with `n_out` outputs, all of them graph outputs.
    fn node(&mut self, op: Op, inputs: Vec<Option<ValueId>>, n_out: usize) -> Vec<ValueId> {
        let name = self.name("n");
        let outs: Vec<String> = (0..n_out).map(|k| format!("{name}_{k}")).collect();
        let ids = self.g.add_node(name, op, inputs, &outs);
        self.g.outputs.extend(&ids);
        ids
    }

    /// Adds a node whose outputs are not graph outputs (so they live in the arena).
    fn hidden(&mut self, op: Op, inputs: &[ValueId], n_out: usize) -> Vec<ValueId> {
        let name = self.name("h");
        let outs: Vec<String> = (0..n_out).map(|k| format!("{name}_{k}")).collect();
        self.g.add_node(name, op, inputs.iter().map(|&i| Some(i)).collect(), &outs)
    }

    fn one(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        self.node(op, inputs.iter().map(|&i| Some(i)).collect(), 1)[0]
    }

    /// Infers, then compiles and runs on every preset; panics on any difference.
    fn check(mut self) {
        assert!(self.g.outputs.len() <= 64, "{} outputs", self.g.outputs.len());
        self.g.infer().unwrap();
        self.check_inferred();
    }

    fn check_inferred(self) {
        let failures = check_against_interpreter(&self.g, &self.sets, 0.0, 0.0);
        assert!(failures.is_empty(), "{}: {} failures:\n{}", self.g.name, failures.len(), failures.join("\n"));
    }
}

fn transpose(perm: Option<&[usize]>) -> Op {
    Op::Transpose(Transpose { perm: perm.map(<[usize]>::to_vec) })
}

#[test]
fn transposes_of_every_rank_and_dtype() {
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("transpose{gi}"), 2);
        for &dt in dts {
            let cases: [(&[usize], Option<&[usize]>); 12] = [
                (&[7], None),
                (&[3, 5], None),
                (&[17, 19], Some(&[1, 0])),
                (&[2, 3, 4], Some(&[2, 0, 1])),
                (&[2, 3, 4], Some(&[1, 0, 2])),
                (&[2, 3, 4], None),
                // Attention: [B,S,H,D] → [B,H,S,D] and the K transpose [B,S,H,D] → [B,H,D,S].
                (&[2, 3, 4, 33], Some(&[0, 2, 1, 3])),
                (&[2, 5, 3, 8], Some(&[0, 2, 3, 1])),
                (&[2, 1, 3, 2, 3], Some(&[4, 2, 0, 3, 1])),
                (&[1, 4, 1, 6], Some(&[3, 2, 1, 0])),
                (&[0, 3], None),
                (&[], None),
            ];
            for (dims, perm) in cases {
                let x = g.data(dt, dims);
                g.one(transpose(perm), &[x]);
            }
        }
        g.check();
    }
}

/// Chains of movement kernels whose intermediates live in the (64-byte aligned) arena, so
/// that runs take both the aligned and the misaligned paths.
#[test]
fn chains_through_the_arena() {
    let mut g = G::new("chain", 2);
    for dt in ALL {
        let x = g.data(dt, &[5, 13]);
        let t = g.hidden(transpose(None), &[x], 1)[0];
        let c = g.hidden(Op::Concat(Concat { axis: 1 }), &[t, t], 1)[0];
        let (st, en, ax) = (g.i64s(&[1]), g.i64s(&[12]), g.i64s(&[0]));
        let s = g.hidden(Op::Slice(Slice {}), &[c, st, en, ax], 1)[0];
        let idx = g.i64s(&[0, -1, 4]);
        let ga = g.hidden(Op::Gather(Gather { axis: 0 }), &[s, idx], 1)[0];
        let shape = g.i64s(&[2, 3, 10]);
        let ex = g.hidden(Op::Expand(Expand {}), &[ga, shape], 1)[0];
        let tr = g.hidden(Op::Trilu(Trilu { upper: true }), &[ex], 1)[0];
        let sp = g.hidden(Op::Split(Split { axis: 2, sizes: Some(vec![3, 7]), num_outputs: 2 }), &[tr], 2);
        let shape = g.i64s(&[6, 7]);
        let r = g.hidden(Op::Reshape(Reshape { allowzero: false }), &[sp[1], shape], 1)[0];
        g.one(transpose(None), &[r]);
        g.one(Op::Concat(Concat { axis: 0 }), &[sp[0], sp[0]]);
        let value = Scalar::first_of(&g.random(dt, &[1])).unwrap();
        let shape = g.i64s(&[4, 9]);
        let k = g.hidden(Op::ConstantOfShape(ConstantOfShape { value }), &[shape], 1)[0];
        let wide = g.hidden(Op::Concat(Concat { axis: 1 }), &[k, k], 1)[0];
        g.one(Op::Concat(Concat { axis: 1 }), &[wide, k]);
    }
    g.check();
}

/// The objects import nothing but memcpy and memset (the cross tests link against libc, so
/// a libcall such as `fmaf` would not show there).
#[test]
fn objects_import_only_memcpy_and_memset() {
    let mut g = G::new("imports", 1);
    for dt in ALL {
        let x = g.data(dt, &[3, 5, 19]);
        let t = g.one(transpose(Some(&[2, 0, 1])), &[x]);
        g.one(Op::Concat(Concat { axis: 1 }), &[x, x]);
        g.node(Op::Split(Split { axis: 2, sizes: Some(vec![1, 18]), num_outputs: 2 }), vec![Some(x)], 2);
        let (s, e, a, st) = (g.i64s(&[-1]), g.i64s(&[i64::MIN]), g.i64s(&[2]), g.i64s(&[-2]));
        g.one(Op::Slice(Slice {}), &[t, s, e, a, st]);
        let idx = g.i64s(&[2, -1]);
        g.one(Op::Gather(Gather { axis: 2 }), &[x, idx]);
        let shape = g.i64s(&[2, 3, 5, 19]);
        g.one(Op::Expand(Expand {}), &[x, shape]);
        g.node(Op::Trilu(Trilu { upper: false }), vec![Some(x), None], 1);
        let shape = g.i64s(&[7, 3]);
        let value = Scalar::first_of(&g.random(dt, &[1])).unwrap();
        g.one(Op::ConstantOfShape(ConstantOfShape { value }), &[shape]);
    }
    let args = [g.konst(Tensor::scalar(0.5f32)), g.konst(Tensor::scalar(4f32)), g.konst(Tensor::scalar(0.5f32))];
    g.one(Op::Range(Range {}), &args);
    let args = [g.konst(Tensor::scalar(-3i32)), g.konst(Tensor::scalar(9i32)), g.konst(Tensor::scalar(2i32))];
    g.one(Op::Range(Range {}), &args);
    let args = [g.konst(f16_scalar(1.0)), g.konst(f16_scalar(3.0)), g.konst(f16_scalar(0.25))];
    g.one(Op::Range(Range {}), &args);
    g.g.infer().unwrap();
    let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!("movement-imports-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, _) in slmtvm_targets::presets() {
        let target = slmtvm_targets::Target::from_spec(name).unwrap();
        let c = slmtvm_codegen::compile(&g.g, "m", &target).unwrap_or_else(|e| panic!("{name}: {e}"));
        let obj = dir.join(format!("{name}.o"));
        std::fs::write(&obj, &c.object).unwrap();
        let out = std::process::Command::new("readelf").arg("-sW").arg(&obj).output().expect("readelf");
        let text = String::from_utf8_lossy(&out.stdout);
        let undefined: Vec<&str> = text
            .lines()
            .filter(|l| l.split_whitespace().nth(6) == Some("UND"))
            .filter_map(|l| l.split_whitespace().nth(7))
            .filter(|s| !["memcpy", "memset"].contains(s))
            .collect();
        assert!(undefined.is_empty(), "{name} imports {undefined:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concats_along_every_axis() {
    for (gi, dts) in [&ALL[..3], &ALL[3..5], &ALL[5..]].into_iter().enumerate() {
        let mut g = G::new(&format!("concat{gi}"), 2);
        for &dt in dts {
            let cases: [(i64, &[&[usize]]); 8] = [
                (0, &[&[2, 3, 4], &[1, 3, 4]]),
                (1, &[&[2, 3, 4], &[2, 0, 4], &[2, 5, 4]]),
                (2, &[&[2, 3, 4], &[2, 3, 1], &[2, 3, 7], &[2, 3, 2]]),
                (-1, &[&[3, 5], &[3, 1]]),
                (-2, &[&[2, 3, 4], &[2, 2, 4]]),
                // A KV cache: [B, H, past, D] ++ [B, H, 1, D].
                (2, &[&[1, 2, 9, 8], &[1, 2, 1, 8]]),
                (0, &[&[5], &[0], &[40], &[3]]),
                (0, &[&[0, 2], &[0, 2]]),
            ];
            for (axis, shapes) in cases {
                let ins: Vec<ValueId> = shapes.iter().map(|s| g.data(dt, s)).collect();
                g.one(Op::Concat(Concat { axis }), &ins);
            }
        }
        g.check();
    }
}

#[test]
fn splits_with_uneven_sizes_and_unused_outputs() {
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("split{gi}"), 2);
        for &dt in dts {
            let cases: [SplitCase; 6] = [
                (&[10, 3], 0, Some(vec![3, 0, 7]), 3, 3),
                (&[2, 9], 1, None, 4, 2),
                (&[2, 3, 11], -1, Some(vec![4, 7]), 2, 2),
                (&[4, 5, 6], 1, None, 5, 3),
                (&[3, 50], 1, Some(vec![17, 33]), 2, 2),
                (&[6], 0, None, 3, 1),
            ];
            for (dims, axis, sizes, num_outputs, used) in cases {
                let x = g.data(dt, dims);
                g.node(Op::Split(Split { axis, sizes, num_outputs }), vec![Some(x)], used);
            }
        }
        g.check();
    }
}

#[test]
fn slices_with_clamping_and_negative_steps() {
    const MAX: i64 = i64::MAX;
    const MIN: i64 = i64::MIN;
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("slice{gi}"), 2);
        for &dt in dts {
            let cases: [SliceCase; 9] = [
                (&[5, 6], &[1, -100], &[100, -1], None, None),
                (&[5, 6], &[-1], &[MIN], Some(&[1]), Some(&[-1])),
                (&[4, 5, 6], &[3, 4], &[0, -100], Some(&[0, -1]), Some(&[-2, -3])),
                (&[4, 5, 6], &[1000], &[1000], Some(&[1]), None),
                (&[3, 40], &[0, 2], &[3, 38], None, Some(&[1, 1])),
                (&[7], &[2], &[7], Some(&[0]), Some(&[2])),
                (&[2, 3, 4], &[MAX, -1], &[MIN, MIN], Some(&[1, 2]), Some(&[-1, -2])),
                (&[5], &[-1], &[MIN], Some(&[0]), Some(&[MIN])),
                (&[2, 3, 4], &[0, -5], &[MAX, 5], Some(&[2, 0]), Some(&[3, 1])),
            ];
            for (dims, s, e, a, st) in cases {
                let x = g.data(dt, dims);
                let mut ins = vec![Some(x), Some(g.i64s(s)), Some(g.i64s(e))];
                ins.push(a.map(|a| g.i64s(a)));
                if let Some(st) = st {
                    ins.push(Some(g.i64s(st)));
                }
                g.node(Op::Slice(Slice {}), ins, 1);
            }
            // i32 arguments, and steps given with axes absent.
            let x = g.data(dt, &[3, 4]);
            let i32s = |v: &[i32]| Tensor::from_vec(&[v.len()], v.to_vec()).unwrap();
            let (s, e, st) = (g.konst(i32s(&[2, 3])), g.konst(i32s(&[-4, 0])), g.konst(i32s(&[-1, -1])));
            g.node(Op::Slice(Slice {}), vec![Some(x), Some(s), Some(e), None, Some(st)], 1);
        }
        g.check();
    }
}

#[test]
fn gathers_with_run_time_negative_and_scalar_indices() {
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("gather{gi}"), 2);
        let i64s = |d: &[usize], v: &[i64]| Tensor::from_vec(d, v.to_vec()).unwrap();
        let i32s = |d: &[usize], v: &[i32]| Tensor::from_vec(d, v.to_vec()).unwrap();
        // Run-time indices, different in each data set.
        let rows = g.input(vec![i64s(&[2, 3], &[0, -1, 5, 10, -11, 3]), i64s(&[2, 3], &[-2, 7, 7, 0, 1, -5])]);
        let cols = g.input(vec![i32s(&[4], &[-1, 0, 4, -5]), i32s(&[4], &[2, 2, -3, 1])]);
        let last = g.input(vec![i64s(&[2, 2], &[3, -4, 0, 1]), i64s(&[2, 2], &[-1, -1, 2, 2])]);
        let one = g.input(vec![i64s(&[], &[-2]), i64s(&[], &[1])]);
        let one32 = g.input(vec![i32s(&[], &[3]), i32s(&[], &[-4])]);
        let none = g.konst(i64s(&[0], &[]));
        let five = g.input(vec![i64s(&[3], &[4, -5, 0]), i64s(&[3], &[-1, 2, 1])]);
        for &dt in dts {
            // An embedding table: whole rows of 40 elements per index.
            let table = g.data(dt, &[11, 40]);
            g.one(Op::Gather(Gather { axis: 0 }), &[table, rows]);
            let x = g.data(dt, &[3, 5, 4]);
            g.one(Op::Gather(Gather { axis: 1 }), &[x, cols]);
            g.one(Op::Gather(Gather { axis: -1 }), &[x, last]);
            g.one(Op::Gather(Gather { axis: 0 }), &[x, one]);
            g.one(Op::Gather(Gather { axis: 2 }), &[x, one32]);
            g.one(Op::Gather(Gather { axis: -2 }), &[x, one]);
            g.one(Op::Gather(Gather { axis: 1 }), &[x, none]);
            let v = g.data(dt, &[5]);
            g.one(Op::Gather(Gather { axis: 0 }), &[v, five]);
        }
        g.check();
    }
}

/// Indices outside `-n..n` (the interpreter rejects them) are clamped to the axis's ends.
#[test]
fn gather_clamps_out_of_range_indices() {
    let mut g = Graph::new("gather_clamp");
    let table = g.add_input("t", TypeInfo::new(DType::F32, Shape::known(&[4, 3])));
    let idx = g.add_input("i", TypeInfo::new(DType::I64, Shape::known(&[5])));
    let y = g.add_node("g", Op::Gather(Gather { axis: 0 }), vec![Some(table), Some(idx)], &["y".into()])[0];
    g.outputs = vec![y];
    g.infer().unwrap();
    let t = Tensor::from_vec(&[4, 3], (0..12).map(|v| v as f32).collect()).unwrap();
    let i = Tensor::from_vec(&[5], vec![4i64, -5, i64::MAX, i64::MIN, -1]).unwrap();
    let want: Vec<f32> = [3, 0, 3, 0, 3].iter().flat_map(|&r| (0..3).map(move |c| (r * 3 + c) as f32)).collect();
    let want = Tensor::from_vec(&[5, 3], want).unwrap();
    let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!("gather-clamp-{}", std::process::id()));
    for target in runnable_presets() {
        let res = run_batch(&target, &[Job { graph: &g, data: vec![vec![t.clone(), i.clone()]] }], &dir);
        let got = res[0][0].as_ref().unwrap_or_else(|e| panic!("{}: {e}", target.name()));
        assert_eq!(got[0], want, "{}", target.name());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn expands_broadcasting_several_axes() {
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("expand{gi}"), 2);
        for &dt in dts {
            let cases: [(&[usize], &[i64]); 9] = [
                (&[3, 1], &[2, 1, 6]),
                (&[1, 4], &[3, 4]),
                (&[2, 1, 3, 1], &[2, 5, 3, 4]),
                (&[], &[2, 3]),
                (&[5], &[2, 1, 1]),
                (&[1, 1, 33], &[2, 3, 33]),
                (&[3, 1], &[3, 37]),
                (&[4, 5], &[1, 1]),
                (&[2, 1], &[0, 2, 3]),
            ];
            for (dims, shape) in cases {
                let x = g.data(dt, dims);
                let s = g.i64s(shape);
                g.one(Op::Expand(Expand {}), &[x, s]);
            }
        }
        g.check();
    }
}

#[test]
fn trilu_upper_and_lower_with_run_time_k() {
    let ks = [0i64, 2, -1, 7, -9, 4, i64::MAX, i64::MIN];
    let mut g = G::new("trilu", ks.len());
    let k = g.input(ks.iter().map(|&k| Tensor::scalar(k)).collect());
    let neg = g.input(ks.iter().map(|&k| Tensor::scalar(k.wrapping_neg())).collect());
    for dt in ALL {
        for upper in [true, false] {
            let op = || Op::Trilu(Trilu { upper });
            let m = g.data(dt, &[4, 5]);
            g.node(op(), vec![Some(m), None], 1);
            g.one(op(), &[m, k]);
            let b = g.data(dt, &[2, 3, 6, 37]);
            g.one(op(), &[b, neg]);
        }
    }
    g.check();
}

#[test]
fn ranges_with_run_time_arguments() {
    // Per dtype, per data set (start, limit, delta): every set gives 8 elements, so the output
    // shape is static.
    let cases: [(DType, [[f64; 3]; 3]); 4] = [
        (DType::F32, [[-3.5, 0.5, 0.5], [10.0, 6.0, -0.5], [0.1, 0.9, 0.1]]),
        (DType::F16, [[1.0, 5.0, 0.5], [-2.0, -6.0, -0.5], [0.25, 2.25, 0.25]]),
        (DType::I32, [[-3.0, 5.0, 1.0], [10.0, -30.0, -5.0], [7.0, 23.0, 2.0]]),
        (DType::I64, [[0.0, 8.0, 1.0], [-1.0, -25.0, -3.0], [5.0, 45.0, 5.0]]),
    ];
    let mut g = G::new("range", 3);
    let mut run_time = Vec::new();
    for (dt, sets) in cases {
        let scalar = |v: f64| match dt {
            DType::F32 => Tensor::scalar(v as f32),
            DType::I32 => Tensor::scalar(v as i32),
            DType::I64 => Tensor::scalar(v as i64),
            _ => f16_scalar(v as f32),
        };
        let tensors: Vec<[Tensor; 3]> = sets.iter().map(|s| s.map(scalar)).collect();
        for t in &tensors {
            let v: Vec<f64> = t.iter().map(|t| t.to_f64().iter().copied().next().unwrap()).collect();
            assert_eq!(((v[1] - v[0]) / v[2]).ceil(), 8.0, "{dt} {v:?}");
        }
        let args: Vec<ValueId> = (0..3).map(|a| g.input(tensors.iter().map(|t| t[a].clone()).collect())).collect();
        run_time.push(g.one(Op::Range(Range {}), &args));
        // The same with constant arguments.
        let c: Vec<ValueId> = (0..3).map(|a| g.konst(tensors[1][a].clone())).collect();
        g.one(Op::Range(Range {}), &c);
    }
    g.g.infer().unwrap();
    for y in run_time {
        g.g.values[y.index()].ty.shape = Shape::known(&[8]);
    }
    g.check_inferred();
}

#[test]
fn shape_size_and_constant_of_shape() {
    let mut g = G::new("generate", 1);
    let x = g.data(DType::F16, &[3, 4, 5]);
    for (start, end) in [(0, None), (1, None), (-1, None), (0, Some(-1)), (-10, Some(10)), (2, Some(1))] {
        g.one(Op::Shape(ShapeOf { start, end }), &[x]);
    }
    g.one(Op::Size(Size {}), &[x]);
    let s = g.data(DType::Bool, &[]);
    g.one(Op::Shape(ShapeOf { start: 0, end: None }), &[s]);
    g.one(Op::Size(Size {}), &[s]);
    let e = g.data(DType::I32, &[2, 0]);
    g.one(Op::Size(Size {}), &[e]);
    let values = [
        Scalar::F32(-2.75),
        Scalar::F32(f32::NAN),
        Scalar::I8(-7),
        Scalar::U8(200),
        Scalar::I32(-123_456),
        Scalar::I64(-(1 << 40) - 3),
        Scalar::Bool(true),
        Scalar::Bool(false),
    ];
    let f16v = Scalar::first_of(&f16_scalar(-1.5)).unwrap();
    for value in values.into_iter().chain([f16v]) {
        for shape in [&[2i64, 3][..], &[0], &[], &[5, 37], &[1, 1, 1]] {
            let s = g.i64s(shape);
            g.one(Op::ConstantOfShape(ConstantOfShape { value }), &[s]);
        }
    }
    g.check();
}

/// The binary16 bits of `v`, a normal f32 exactly representable in f16.
fn f16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let (sign, exp, man) = (b >> 31, ((b >> 23) & 0xff) as i32 - 127 + 15, b & 0x7f_ffff);
    assert!((1..31).contains(&exp) && man & 0x1fff == 0, "{v} is not an f16 normal");
    ((sign << 15) | ((exp as u32) << 10) | (man >> 13)) as u16
}

/// An f16 scalar tensor of `v` (exactly representable).
fn f16_scalar(v: f32) -> Tensor {
    Tensor::from_le_bytes(DType::F16, &[], &f16_bits(v).to_le_bytes()).unwrap()
}

#[test]
fn reshapes_as_graph_outputs() {
    for (gi, dts) in [&ALL[..4], &ALL[4..]].into_iter().enumerate() {
        let mut g = G::new(&format!("reshape{gi}"), 2);
        for &dt in dts {
            let x = g.data(dt, &[2, 3, 1, 37]);
            let s = g.i64s(&[6, -1]);
            g.one(Op::Reshape(Reshape { allowzero: false }), &[x, s]);
            g.one(Op::Flatten(Flatten { axis: 2 }), &[x]);
            g.one(Op::Squeeze(Squeeze { axes: Some(vec![-2]) }), &[x]);
            g.one(Op::Squeeze(Squeeze { axes: None }), &[x]);
            g.one(Op::Unsqueeze(Unsqueeze { axes: vec![0, 5] }), &[x]);
            let small = g.data(dt, &[3]);
            g.one(Op::Unsqueeze(Unsqueeze { axes: vec![0] }), &[small]);
            let empty = g.data(dt, &[0, 4]);
            let s = g.i64s(&[4, 0]);
            g.one(Op::Reshape(Reshape { allowzero: true }), &[empty, s]);
            // A view that is not a graph output feeding one that is.
            let r = g.i64s(&[3, 2, 37]);
            let name = g.name("v");
            let v =
                g.g.add_node(name.clone(), Op::Reshape(Reshape { allowzero: false }), vec![Some(x), Some(r)], &[name])
                    [0];
            g.one(transpose(Some(&[2, 0, 1])), &[v]);
        }
        g.check();
    }
}
