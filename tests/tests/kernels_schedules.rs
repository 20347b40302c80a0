//! Schedules as data: every register tile of the matrix products' Cranelift broadcast schedule
//! (`4x8`-style, mr 1..8 × nr 4..16) on every target preset, and a grid of the assembled AVX2
//! and AVX-512 microkernels' tiles and K blocks (`avx512:14x32x16`) on the presets that have
//! them, computes the interpreter's bits over odd and edge shapes (1, 3, 17, 63, 64, 65, 127)
//! for MatMul (also batched with two inputs), Gemm (alpha, beta, C), Dense (bias and activation
//! epilogue), FusedMlp and Attention (which run products over slices), and weights shared by
//! several nodes (the assembled tiles read constant B packed: [`slmtvm_codegen::pack`]). Data are multiples of
//! 1/4, so every product and partial sum is exact in f32 and any tile order gives the same bits:
//! zero tolerance for the products (the fused ops' exp/GELU get a small one).

use slmtvm_codegen::Options;
use slmtvm_ir::ops::{Attention, Dense, FusedMlp, Gemm, MatMul, UnaryOp};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, ValueId};
use slmtvm_targets::{Microkernel, Schedule};
use slmtvm_tests::Lcg;
use slmtvm_tests::compare;
use slmtvm_tests::cross::{Job, run_batch_with, runnable_presets};

struct G {
    g: Graph,
    data: Vec<Tensor>,
    rng: Lcg,
}

impl G {
    fn exact(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| ((self.rng.bits() >> 22) % 9) as f32 * 0.25 - 1.0).collect();
        Tensor::from_vec(shape, v).unwrap()
    }
    fn input(&mut self, shape: &[usize]) -> ValueId {
        let t = self.exact(shape);
        let v = self.g.add_input(format!("x{}", self.g.values.len()), TypeInfo::new(DType::F32, Shape::known(shape)));
        self.data.push(t);
        v
    }
    fn constant(&mut self, shape: &[usize]) -> ValueId {
        let t = self.exact(shape);
        self.g.add_const(format!("c{}", self.g.values.len()), t)
    }
    fn node(&mut self, op: Op, ins: Vec<ValueId>) {
        let n = self.g.nodes.len();
        let y = self.g.add_node(format!("n{n}"), op, ins.into_iter().map(Some).collect(), &[format!("y{n}")])[0];
        self.g.outputs.push(y);
    }
}

/// The graph: products of every odd/edge size in every position, a Dense with bias and Relu,
/// a FusedMlp and an Attention.
fn graph() -> G {
    let mut g = G { g: Graph::new("schedules"), data: Vec::new(), rng: Lcg(7) };
    for (m, k, n) in
        [(1, 1, 1), (3, 17, 63), (17, 63, 3), (64, 65, 127), (65, 64, 64), (127, 3, 17), (63, 127, 65), (2, 5, 12)]
    {
        let (a, b) = (g.input(&[m, k]), g.constant(&[k, n]));
        g.node(Op::MatMul(MatMul {}), vec![a, b]);
    }
    let (a, b) = (g.input(&[2, 17, 33]), g.input(&[2, 33, 19]));
    g.node(Op::MatMul(MatMul {}), vec![a, b]);
    let (a, b, c) = (g.input(&[21, 30]), g.constant(&[30, 41]), g.constant(&[21, 41]));
    g.node(Op::Gemm(Gemm { alpha: 0.5, beta: 0.25, trans_a: false, trans_b: false }), vec![a, b, c]);
    let (x, w, b) = (g.input(&[2, 17, 33]), g.constant(&[33, 65]), g.constant(&[65]));
    g.node(Op::Dense(Dense { activation: Some(UnaryOp::Relu) }), vec![x, w, b]);
    shared_weights(&mut g);
    let (x, wg, wu, wd) = (g.input(&[5, 12]), g.constant(&[12, 40]), g.constant(&[12, 40]), g.constant(&[40, 9]));
    g.node(Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }), vec![x, wg, wu, wd]);
    let (q, k, v) = (g.input(&[1, 2, 7, 16]), g.input(&[1, 2, 19, 16]), g.input(&[1, 2, 19, 12]));
    g.node(Op::Attention(Attention { scale: Some(0.25), causal: true }), vec![q, k, v]);
    g.g.infer().unwrap();
    g
}

/// Weights read by several nodes: `W1` [33, 20] by a MatMul (packed on the assembled path)
/// and an Add (in place), `W2` [40, 24] by a MatMul and a Dense (packed once for both, never
/// in place). Returns them.
fn shared_weights(g: &mut G) -> (ValueId, ValueId) {
    let (a, w1) = (g.input(&[5, 33]), g.constant(&[33, 20]));
    g.node(Op::MatMul(MatMul {}), vec![a, w1]);
    let x = g.input(&[33, 20]);
    g.node(Op::Binary(slmtvm_ir::ops::BinaryOp::Add), vec![x, w1]);
    let (a, w2) = (g.input(&[7, 40]), g.constant(&[40, 24]));
    g.node(Op::MatMul(MatMul {}), vec![a, w2]);
    let (x, b) = (g.input(&[2, 3, 40]), g.constant(&[24]));
    g.node(Op::Dense(Dense { activation: None }), vec![x, w2, b]);
    (w1, w2)
}

/// Outputs computed exactly (the products and the Add; the last two, FusedMlp and Attention,
/// use exp).
const EXACT: usize = 15;

/// The Cranelift tiles, then the assembled microkernels' (tiles at their register limits,
/// one vector to four, K blocks with and without a tail of the unrolled loop).
fn grid() -> Vec<Schedule> {
    let mut v = Vec::new();
    for mr in [1, 2, 3, 4, 5, 6, 8] {
        for nr in [4, 8, 12, 16] {
            v.push(Schedule::cranelift(mr, nr));
        }
    }
    let avx2 = [(1, 8, 0), (13, 8, 5), (3, 16, 0), (6, 16, 16), (3, 24, 4), (2, 32, 0)];
    let avx512 = [(1, 16, 0), (15, 16, 7), (14, 32, 0), (12, 32, 16), (9, 48, 5), (7, 64, 0), (4, 32, 4)];
    for (kernel, tiles) in [(Microkernel::Avx2, &avx2[..]), (Microkernel::Avx512, &avx512[..])] {
        for &(mr, nr, kc) in tiles {
            v.push(Schedule { kernel, mr, nr, kc });
        }
    }
    v
}

#[test]
fn every_register_tile_computes_the_interpreter_bits_on_every_target() {
    let g = graph();
    let want = slmtvm_ir::interp::run(&g.g, &g.data).unwrap();
    let presets = runnable_presets();
    assert!(!presets.is_empty(), "no target can be linked and run here");
    let mut failures = Vec::new();
    let mut assembled = 0;
    for t in &presets {
        let have = t.microkernels();
        let schedules: Vec<Schedule> = grid().into_iter().filter(|s| have.contains(&s.kernel)).collect();
        assembled += schedules.iter().filter(|s| s.kernel != Microkernel::Cranelift).count();
        let jobs: Vec<Job> = schedules.iter().map(|_| Job { graph: &g.g, data: vec![g.data.clone()] }).collect();
        let opts: Vec<Options> =
            schedules.iter().map(|&s| Options { schedule: Some(s), ..Options::default() }).collect();
        let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!(
            "schedules-{}-{}",
            t.name(),
            std::process::id()
        ));
        let res = run_batch_with(t, &jobs, &dir, &opts);
        for (s, r) in schedules.iter().zip(&res) {
            match &r[0] {
                Err(e) => failures.push(format!("{} {s:?}: {e}", t.name())),
                Ok(got) => {
                    for (k, (w, o)) in want.iter().zip(got).enumerate() {
                        // The products are exact; the fused ops' exp/sigmoid are not.
                        let tol = if k < EXACT { 0.0 } else { 1e-5 };
                        if let Err(m) = compare(w, o, tol, tol) {
                            failures.push(format!("{} {s:?}: output {k}: {m}", t.name()));
                        }
                    }
                }
            }
        }
        eprintln!("{}: {} schedules checked", t.name(), schedules.len());
        let _ = std::fs::remove_dir_all(&dir);
    }
    if assembled == 0 {
        eprintln!("no assembled microkernel checked: no runnable preset here has AVX2 or AVX-512");
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn invalid_schedules_are_refused() {
    let g = graph();
    let t = slmtvm_targets::Target::from_spec("x86_64").unwrap();
    let bad = [
        Schedule::cranelift(0, 8),
        Schedule::cranelift(9, 8),
        Schedule::cranelift(4, 6),
        Schedule::cranelift(4, 20),
        Schedule { kernel: Microkernel::Avx2, mr: 7, nr: 16, kc: 0 },
        Schedule { kernel: Microkernel::Avx512, mr: 8, nr: 64, kc: 0 },
        Schedule { kernel: Microkernel::Avx512, mr: 4, nr: 24, kc: 0 },
        Schedule { kernel: Microkernel::Avx512, mr: 4, nr: 32, kc: 2 },
        // Valid tiles on a CPU that lacks the microkernel.
        Schedule { kernel: Microkernel::Avx2, mr: 6, nr: 16, kc: 0 },
    ];
    for s in bad {
        let e = slmtvm_codegen::compile_with(&g.g, "m", &t, &Options { schedule: Some(s), ..Options::default() })
            .err()
            .unwrap_or_else(|| panic!("{s:?} was accepted"));
        assert!(e.to_string().contains("schedule"), "{e}");
    }
    // The default is the target's and valid.
    assert_eq!(t.schedule().validate(), Ok(Schedule::cranelift(4, 8)));
    for (spec, want) in [("x86_64-v3", "avx2:6x16"), ("x86_64-v4", "avx512:12x32"), ("aarch64", "4x8")] {
        let t = slmtvm_targets::Target::from_spec(spec).unwrap();
        assert_eq!(t.schedule().to_string(), want, "{spec}");
        assert_eq!(t.schedule().validate(), Ok(t.schedule()));
    }
}

/// The weights' data objects: a constant read packed and in place is in `.rodata` in both
/// layouts, one read packed by two products once, each packed copy `⌈N/nr⌉·K·nr·4` bytes
/// (zero-padded panels) at a 64-byte boundary; the Cranelift schedule packs nothing.
#[test]
fn weights_are_stored_packed_once_per_panel_width() {
    use object::{Object, ObjectSymbol};
    let mut g = G { g: Graph::new("packs"), data: Vec::new(), rng: Lcg(3) };
    let (w1, w2) = shared_weights(&mut g);
    g.g.infer().unwrap();
    let index = |v: ValueId| g.g.consts.keys().position(|&c| c == v).unwrap();
    let (k1, k2) = (index(w1), index(w2));
    let plain: usize = g.g.consts.values().map(|t| t.to_le_bytes().len()).sum();
    for (spec, nr) in [("x86_64-v3", 16), ("x86_64-v4", 32), ("x86_64", 0)] {
        let t = slmtvm_targets::Target::from_spec(spec).unwrap();
        let c = slmtvm_codegen::compile(&g.g, "packs", &t).unwrap();
        let file = object::File::parse(&*c.object).unwrap();
        let sizes: std::collections::BTreeMap<String, (u64, u64)> = file
            .symbols()
            .filter(|s| {
                s.name().is_ok_and(|n| {
                    n.strip_prefix("packs_w").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                })
            })
            .map(|s| (s.name().unwrap().to_string(), (s.size(), s.address())))
            .collect();
        let packed = |k: usize, n: usize| n.div_ceil(nr) * k * nr * 4;
        if nr == 0 {
            assert_eq!(c.manifest.packed_weights_bytes, 0, "{spec}");
            assert_eq!(c.manifest.weights_bytes, plain, "{spec}");
            assert!(sizes.keys().all(|s| !s.contains("_p")), "{spec}: {sizes:?}");
            continue;
        }
        let (p1, p2) = (format!("packs_w{k1}_p{nr}"), format!("packs_w{k2}_p{nr}"));
        assert_eq!(sizes[&format!("packs_w{k1}")].0, 33 * 20 * 4, "{spec}: W1 in place for the Add");
        assert_eq!(sizes[&p1].0 as usize, packed(33, 20), "{spec}: W1 packed for the MatMul");
        assert!(!sizes.contains_key(&format!("packs_w{k2}")), "{spec}: W2 is only read packed: {sizes:?}");
        assert_eq!(sizes[&p2].0 as usize, packed(40, 24), "{spec}: W2 packed once for two products");
        assert_eq!(sizes.keys().filter(|s| s.contains("_p")).count(), 2, "{spec}: {sizes:?}");
        assert!(sizes.values().all(|&(_, a)| a % 64 == 0), "{spec}: {sizes:?}");
        assert_eq!(c.manifest.packed_weights_bytes, packed(33, 20) + packed(40, 24), "{spec}");
        assert_eq!(c.manifest.weights_bytes, plain - 40 * 24 * 4 + c.manifest.packed_weights_bytes, "{spec}");
    }
}

/// FusedMlp's three weights are read packed (its chunked products take panels of them): only
/// the packed copies are in `.rodata` on the assembled presets, none on the baseline.
#[test]
fn fused_mlp_weights_are_stored_packed() {
    let mut g = G { g: Graph::new("mlp"), data: Vec::new(), rng: Lcg(5) };
    let (x, wg, wu, wd) = (g.input(&[5, 12]), g.constant(&[12, 40]), g.constant(&[12, 40]), g.constant(&[40, 9]));
    g.node(Op::FusedMlp(FusedMlp { activation: UnaryOp::Silu }), vec![x, wg, wu, wd]);
    g.g.infer().unwrap();
    for (spec, nr) in [("x86_64-v3", 16), ("x86_64-v4", 32), ("x86_64", 0)] {
        let t = slmtvm_targets::Target::from_spec(spec).unwrap();
        let c = slmtvm_codegen::compile(&g.g, "mlp", &t).unwrap();
        let packed = |k: usize, n: usize| if nr == 0 { 0 } else { n.div_ceil(nr) * k * nr * 4 };
        let want = 2 * packed(12, 40) + packed(40, 9);
        assert_eq!(c.manifest.packed_weights_bytes, want, "{spec}");
        let plain = (2 * 12 * 40 + 40 * 9) * 4;
        assert_eq!(c.manifest.weights_bytes, if nr == 0 { plain } else { want }, "{spec}");
    }
}
