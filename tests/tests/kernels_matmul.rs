//! MatMul, Gemm and MatMulInteger kernels on every target preset against the interpreter.
//!
//! Many products go into each graph (one output each) so one link and one run per target
//! serve them all. Float data are small multiples of 1/4, so every product and partial sum is
//! exact in f32 and any summation order gives the reference's bits: those checks use zero
//! tolerance. One check uses irrational-looking data with a relative tolerance.

use slmtvm_ir::ops::{Gemm, MatMul, MatMulInteger};
use slmtvm_ir::{DType, Graph, Op, Shape, Tensor, TypeInfo, ValueId};
use slmtvm_tests::Lcg;
use slmtvm_tests::cross::check_against_interpreter;

/// A graph under construction with its one data set.
struct G {
    g: Graph,
    data: Vec<Tensor>,
    rng: Lcg,
}

impl G {
    fn new(name: &str) -> G {
        G { g: Graph::new(name), data: Vec::new(), rng: Lcg(1) }
    }

    fn next(&mut self) -> u64 {
        self.rng.bits() >> 22
    }

    /// Exact data: multiples of 1/4 in [-1, 1].
    fn exact(&mut self, shape: &[usize], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (self.next() % 9) as f32 * 0.25 - 1.0).collect();
        let t = Tensor::from_vec(shape, v).unwrap();
        if dtype == DType::F32 { t } else { Tensor::from_f32(dtype, t.to_f32()) }
    }

    /// Inexact data in (-1, 1).
    fn noisy(&mut self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (self.next() % 100_003) as f32 / 50_001.5 - 1.0).collect();
        Tensor::from_vec(shape, v).unwrap()
    }

    /// Integers of `dtype`: the full range for i8/u8, large values (products wrap) otherwise.
    fn ints(&mut self, shape: &[usize], dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        match dtype {
            DType::I8 => Tensor::from_vec(shape, (0..n).map(|_| self.next() as i8).collect()).unwrap(),
            DType::U8 => Tensor::from_vec(shape, (0..n).map(|_| self.next() as u8).collect()).unwrap(),
            DType::I32 => Tensor::from_vec(shape, (0..n).map(|_| (self.next() as i32) << 9).collect()).unwrap(),
            _ => Tensor::from_vec(shape, (0..n).map(|_| (self.next() as i64) << 30).collect()).unwrap(),
        }
    }

    fn input(&mut self, t: Tensor) -> ValueId {
        let name = format!("x{}", self.g.values.len());
        let v = self.g.add_input(name, TypeInfo::new(t.dtype(), Shape::known(t.shape())));
        self.data.push(t);
        v
    }

    fn constant(&mut self, t: Tensor) -> ValueId {
        let name = format!("c{}", self.g.values.len());
        self.g.add_const(name, t)
    }

    /// Input or constant.
    fn operand(&mut self, t: Tensor, constant: bool) -> ValueId {
        if constant { self.constant(t) } else { self.input(t) }
    }

    fn node(&mut self, op: Op, ins: Vec<Option<ValueId>>) {
        let n = self.g.nodes.len();
        let y = self.g.add_node(format!("n{n}"), op, ins, &[format!("y{n}")])[0];
        self.g.outputs.push(y);
    }

    fn check(mut self, rtol: f64, atol: f64) {
        assert!(self.g.inputs.len() <= 64 && self.g.outputs.len() <= 64, "the driver takes at most 64 of each");
        self.g.infer().unwrap();
        let failures = check_against_interpreter(&self.g, &[self.data], rtol, atol);
        assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    }
}

const SIZES: [usize; 12] = [1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 33];

fn mm() -> Op {
    Op::MatMul(MatMul {})
}

/// (M, K, N) triples: every size in every position, against varied partners.
fn triples() -> Vec<(usize, usize, usize)> {
    let mut t = Vec::new();
    for (i, &s) in SIZES.iter().enumerate() {
        let o1 = SIZES[(i + 5) % SIZES.len()];
        let o2 = SIZES[(i + 8) % SIZES.len()];
        t.push((s, o1, o2));
        t.push((o2, s, o1));
        t.push((o1, o2, s));
    }
    t.extend([(4, 4, 8), (8, 8, 16), (12, 3, 24), (1, 33, 1), (33, 1, 33), (64, 96, 80)]);
    t
}

#[test]
fn matmul_f32_2d_shapes() {
    let all = triples();
    for (part, chunk) in all.chunks(all.len().div_ceil(2)).enumerate() {
        let mut g = G::new(&format!("mm_f32_{part}"));
        for (i, &(m, k, n)) in chunk.iter().enumerate() {
            let a = g.exact(&[m, k], DType::F32);
            let a = g.input(a);
            let b = g.exact(&[k, n], DType::F32);
            let b = g.operand(b, i % 2 == 0);
            g.node(mm(), vec![Some(a), Some(b)]);
        }
        g.check(0.0, 0.0);
    }
}

#[test]
fn matmul_f32_noisy_data_within_tolerance() {
    let mut g = G::new("mm_noisy");
    for (m, k, n) in [(64, 96, 80), (13, 384, 9), (17, 33, 5), (1, 128, 33)] {
        let a = g.noisy(&[m, k]);
        let a = g.input(a);
        let b = g.noisy(&[k, n]);
        let b = g.constant(b);
        g.node(mm(), vec![Some(a), Some(b)]);
        // The same product as a Linear layer: Gemm with transB.
        let bt = g.noisy(&[n, k]);
        let bt = g.constant(bt);
        let bias = g.noisy(&[n]);
        let bias = g.constant(bias);
        g.node(
            Op::Gemm(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: true }),
            vec![Some(a), Some(bt), Some(bias)],
        );
    }
    g.check(1e-5, 1e-5);
}

#[test]
fn matmul_1d_operands_and_batch_broadcasting() {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![7], vec![7, 9]),
        (vec![9], vec![9, 3]),
        (vec![5, 7], vec![7]),
        (vec![13, 16], vec![16]),
        (vec![7], vec![7]),
        (vec![1], vec![1]),
        (vec![5], vec![2, 5, 9]),
        (vec![2, 3, 4, 5], vec![5]),
        (vec![2, 1, 5, 8], vec![1, 3, 8, 9]),
        (vec![1, 3, 5, 8], vec![2, 1, 8, 9]),
        (vec![3, 13, 9], vec![9, 17]),
        (vec![13, 9], vec![3, 9, 17]),
        (vec![1, 4, 9], vec![3, 9, 8]),
        (vec![3, 4, 9], vec![1, 9, 8]),
        (vec![2, 3, 4, 7], vec![3, 7, 5]),
        (vec![3, 1, 5, 6], vec![4, 6, 2]),
        (vec![2, 0, 5, 6], vec![6, 3]),
        (vec![4, 0], vec![0, 5]),
        (vec![4, 3], vec![3, 0]),
    ];
    let mut g = G::new("mm_bcast");
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let a = g.exact(sa, DType::F32);
        let a = g.input(a);
        let b = g.exact(sb, DType::F32);
        let b = g.operand(b, i % 3 == 1);
        g.node(mm(), vec![Some(a), Some(b)]);
    }
    // Empty K: Gemm gives beta·C, MatMulInteger zeros.
    let (a, b, c) = (g.exact(&[0, 3], DType::F32), g.exact(&[4, 0], DType::F32), g.exact(&[4], DType::F32));
    let (a, b, c) = (g.input(a), g.input(b), g.input(c));
    g.node(Op::Gemm(Gemm { alpha: 2.0, beta: 0.5, trans_a: true, trans_b: true }), vec![Some(a), Some(b), Some(c)]);
    let (a, b) = (g.ints(&[3, 0], DType::U8), g.ints(&[0, 9], DType::I8));
    let (a, b) = (g.input(a), g.input(b));
    g.node(Op::MatMulInteger(MatMulInteger {}), vec![Some(a), Some(b)]);
    g.check(0.0, 0.0);
}

#[test]
fn matmul_f16_and_integers() {
    let mut g = G::new("mm_dtypes");
    let shapes: [(Vec<usize>, Vec<usize>); 6] = [
        (vec![5, 7], vec![7, 9]),
        (vec![4, 8], vec![8, 17]),
        (vec![7], vec![7, 3]),
        (vec![3, 5], vec![5]),
        (vec![2, 1, 3, 5], vec![3, 5, 8]),
        (vec![13, 16], vec![16, 33]),
    ];
    for (i, (sa, sb)) in shapes.iter().enumerate() {
        let a = g.exact(sa, DType::F16);
        let a = g.input(a);
        let b = g.exact(sb, DType::F16);
        let b = g.operand(b, i % 2 == 0);
        g.node(mm(), vec![Some(a), Some(b)]);
        for dtype in [DType::I32, DType::I64] {
            let a = g.ints(sa, dtype);
            let a = g.input(a);
            let b = g.ints(sb, dtype);
            let b = g.operand(b, i % 2 == 1);
            g.node(mm(), vec![Some(a), Some(b)]);
        }
    }
    g.check(0.0, 0.0);
}

/// Every Gemm attribute combination with every C shape, for one (M, K, N) and `trans_a`.
fn gemm_graph(name: &str, (m, k, n): (usize, usize, usize), trans_a: bool, dtype: DType) -> G {
    let mut g = G::new(name);
    let sa = if trans_a { [k, m] } else { [m, k] };
    let a = g.exact(&sa, dtype);
    let a = g.input(a);
    let mut bs = Vec::new();
    for trans_b in [false, true] {
        let sb = if trans_b { [n, k] } else { [k, n] };
        let b = g.exact(&sb, dtype);
        bs.push((trans_b, g.operand(b, trans_b)));
    }
    let c_shapes: [&[usize]; 6] = [&[], &[1], &[n], &[1, n], &[m, 1], &[m, n]];
    let cs: Vec<ValueId> = c_shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let c = g.exact(s, dtype);
            g.operand(c, i % 2 == 0)
        })
        .collect();
    for (trans_b, b) in bs {
        for (alpha, beta) in [(1.0, 1.0), (0.5, 1.0), (1.0, -1.5), (0.5, 0.0), (-2.0, 0.25)] {
            let op = Op::Gemm(Gemm { alpha, beta, trans_a, trans_b });
            for &c in &cs {
                g.node(op.clone(), vec![Some(a), Some(b), Some(c)]);
            }
        }
        for alpha in [1.0, 0.5] {
            g.node(Op::Gemm(Gemm { alpha, beta: 1.0, trans_a, trans_b }), vec![Some(a), Some(b)]);
        }
    }
    g
}

#[test]
fn gemm_f32_every_attribute_and_c_shape() {
    for (shape, trans_a) in [((5, 7, 9), false), ((5, 7, 9), true), ((13, 17, 33), false), ((13, 17, 33), true)] {
        gemm_graph(&format!("gemm_{}_{}", shape.0, trans_a), shape, trans_a, DType::F32).check(0.0, 0.0);
    }
}

#[test]
fn gemm_f16_and_integers() {
    for trans_a in [false, true] {
        gemm_graph(&format!("gemm_f16_{trans_a}"), (3, 5, 6), trans_a, DType::F16).check(0.0, 0.0);
    }
    for dtype in [DType::I32, DType::I64] {
        let (m, k, n) = (5, 7, 9);
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut g = G::new(&format!("gemm_{dtype}_{trans_a}_{trans_b}"));
            let a = g.ints(&(if trans_a { [k, m] } else { [m, k] }), dtype);
            let a = g.input(a);
            let b = g.ints(&(if trans_b { [n, k] } else { [k, n] }), dtype);
            let b = g.input(b);
            let (c1, cn, cmn) = (g.ints(&[m, 1], dtype), g.ints(&[n], dtype), g.ints(&[m, n], dtype));
            let cs = [g.input(c1), g.constant(cn), g.input(cmn)];
            for (alpha, beta) in [(1.0, 1.0), (1.0, 0.0), (0.5, 0.0), (1.0, 2.0), (0.5, 0.25), (-1.0, 1.0)] {
                let op = Op::Gemm(Gemm { alpha, beta, trans_a, trans_b });
                g.node(op.clone(), vec![Some(a), Some(b)]);
                for &c in &cs {
                    g.node(op.clone(), vec![Some(a), Some(b), Some(c)]);
                }
            }
            g.check(0.0, 0.0);
        }
        let mut g = G::new(&format!("gemm_{dtype}_small"));
        // Small values: the f64 path scales exactly representable products.
        let a = Tensor::from_vec(&[2, 3], vec![1i32, -2, 3, 4, 5, -6]).unwrap();
        let a = Tensor::from_f32(dtype, a.to_f32());
        let a = g.input(a);
        let b = Tensor::from_f32(dtype, Tensor::from_vec(&[3, 2], vec![7i32, 1, -3, 2, 5, 9]).unwrap().to_f32());
        let b = g.input(b);
        g.node(Op::Gemm(Gemm { alpha: 0.3, beta: 0.0, trans_a: false, trans_b: false }), vec![Some(a), Some(b)]);
        g.check(0.0, 0.0);
    }
}

#[test]
fn matmul_integer_dtypes_and_zero_points() {
    let combos = [(DType::U8, DType::U8), (DType::U8, DType::I8), (DType::I8, DType::U8), (DType::I8, DType::I8)];
    for (part, shapes) in [
        [(vec![5, 7], vec![7, 13]), (vec![4, 16], vec![16, 8])],
        [(vec![2, 3, 5, 9], vec![3, 9, 17]), (vec![7], vec![7, 20])],
    ]
    .into_iter()
    .enumerate()
    {
        let mut g = G::new(&format!("mmi_{part}"));
        for (sa, sb) in &shapes {
            let (m, n) = (if sa.len() >= 2 { sa[sa.len() - 2] } else { 1 }, sb[sb.len() - 1]);
            for (da, db) in combos {
                let a = g.ints(sa, da);
                let a = g.input(a);
                let b = g.ints(sb, db);
                let b = g.operand(b, da == db);
                let op = Op::MatMulInteger(MatMulInteger {});
                g.node(op.clone(), vec![Some(a), Some(b)]);
                // Scalar zero points.
                let (za, zb) = (g.ints(&[], da), g.ints(&[1], db));
                let (za, zb) = (g.constant(za), g.input(zb));
                g.node(op.clone(), vec![Some(a), Some(b), Some(za)]);
                g.node(op.clone(), vec![Some(a), Some(b), None, Some(zb)]);
                g.node(op.clone(), vec![Some(a), Some(b), Some(za), Some(zb)]);
                // Per-row of A, per-column of B.
                let zbn = g.ints(&[n], db);
                let zbn = g.constant(zbn);
                if sa.len() >= 2 {
                    let zam = g.ints(&[m], da);
                    let zam = g.input(zam);
                    g.node(op.clone(), vec![Some(a), Some(b), Some(zam), Some(zbn)]);
                } else {
                    g.node(op.clone(), vec![Some(a), Some(b), Some(za), Some(zbn)]);
                }
            }
        }
        g.check(0.0, 0.0);
    }
}

#[test]
fn matmul_integer_broadcast_zero_points() {
    let mut g = G::new("mmi_nd");
    let op = Op::MatMulInteger(MatMulInteger {});
    // N-D zero points per batch and row / column, and zero points along K.
    let a = g.ints(&[2, 3, 5, 9], DType::U8);
    let a = g.input(a);
    let b = g.ints(&[3, 9, 17], DType::U8);
    let b = g.input(b);
    let za = g.ints(&[3, 5, 1], DType::U8);
    let za = g.input(za);
    let zb = g.ints(&[3, 1, 17], DType::U8);
    let zb = g.input(zb);
    g.node(op.clone(), vec![Some(a), Some(b), Some(za), Some(zb)]);
    let zak = g.ints(&[1, 9], DType::U8);
    let zak = g.input(zak);
    let zbk = g.ints(&[9, 1], DType::U8);
    let zbk = g.input(zbk);
    g.node(op.clone(), vec![Some(a), Some(b), Some(zak), Some(zbk)]);
    let zfull = g.ints(&[2, 3, 5, 9], DType::U8);
    let zfull = g.input(zfull);
    let zbfull = g.ints(&[3, 9, 17], DType::U8);
    let zbfull = g.constant(zbfull);
    g.node(op.clone(), vec![Some(a), Some(b), Some(zfull), Some(zbfull)]);
    // 1-D B with a zero point per K.
    let bv = g.ints(&[9], DType::I8);
    let bv = g.input(bv);
    let zbv = g.ints(&[9], DType::I8);
    let zbv = g.input(zbv);
    let ai = g.ints(&[4, 9], DType::I8);
    let ai = g.input(ai);
    g.node(op.clone(), vec![Some(ai), Some(bv), None, Some(zbv)]);
    g.check(0.0, 0.0);
}

/// The f32 micro-kernels are vector fma loops on aarch64 (the broadcast and the dot schedule
/// alike), and no object imports anything. With `SLMTVM_DUMP_ASM=<dir>` the disassembly and
/// the x86_64 objects of both products are written there (for timing them by hand).
#[test]
fn aarch64_kernels_use_vector_fma() {
    use slmtvm_targets::Target;
    let mut g = G::new("mm_asm");
    let a = g.noisy(&[128, 384]);
    let a = g.input(a);
    let b = g.noisy(&[384, 384]);
    let b = g.constant(b);
    g.node(mm(), vec![Some(a), Some(b)]);
    let g0 = {
        let mut g0 = g.g.clone();
        g0.infer().unwrap();
        g0
    };
    let bt = g.noisy(&[384, 384]);
    let bt = g.constant(bt);
    g.g.nodes.clear();
    g.g.outputs.clear();
    g.node(Op::Gemm(Gemm { alpha: 1.0, beta: 0.0, trans_a: false, trans_b: true }), vec![Some(a), Some(bt)]);
    g.g.infer().unwrap();
    let dir = slmtvm_tests::target_dir().join(format!("kernels_matmul_asm_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, graph) in [("broadcast", &g0), ("dot", &g.g)] {
        let t = Target::from_spec("aarch64").unwrap();
        let c = slmtvm_codegen::compile(graph, "mm", &t).unwrap();
        let obj = dir.join(format!("{name}.o"));
        std::fs::write(&obj, &c.object).unwrap();
        let Ok(out) = std::process::Command::new("aarch64-linux-gnu-objdump").arg("-d").arg(&obj).output() else {
            eprintln!("aarch64-linux-gnu-objdump not found; skipping the disassembly check");
            return;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        if let Ok(d) = std::env::var("SLMTVM_DUMP_ASM") {
            std::fs::write(format!("{d}/{name}.s"), text.as_bytes()).unwrap();
            for spec in ["x86_64", "x86_64-v3"] {
                let c = slmtvm_codegen::compile(graph, "mm", &Target::from_spec(spec).unwrap()).unwrap();
                std::fs::write(format!("{d}/{name}-{spec}.o"), &c.object).unwrap();
            }
        }
        let fmla = text.lines().filter(|l| l.contains("fmla") && l.contains(".4s")).count();
        assert!(fmla >= 8, "{name}: {fmla} vector fmla instructions:\n{text}");
        let nm = std::process::Command::new("aarch64-linux-gnu-nm").arg("-u").arg(&obj).output().unwrap();
        let undefined = String::from_utf8_lossy(&nm.stdout);
        assert!(undefined.lines().all(|l| l.contains("memcpy") || l.contains("memset")), "{name}: {undefined}");
    }
    // MatMulInteger: I32X4 multiply-accumulate of widened bytes.
    let mut g = G::new("mmi_asm");
    let a = g.ints(&[16, 64], DType::U8);
    let a = g.input(a);
    let b = g.ints(&[64, 32], DType::I8);
    let b = g.constant(b);
    let (za, zb) = (g.ints(&[], DType::U8), g.ints(&[32], DType::I8));
    let (za, zb) = (g.input(za), g.constant(zb));
    g.node(Op::MatMulInteger(MatMulInteger {}), vec![Some(a), Some(b), Some(za), Some(zb)]);
    g.g.infer().unwrap();
    let c = slmtvm_codegen::compile(&g.g, "mm", &Target::from_spec("aarch64").unwrap()).unwrap();
    let obj = dir.join("mmi.o");
    std::fs::write(&obj, &c.object).unwrap();
    let out = std::process::Command::new("aarch64-linux-gnu-objdump").arg("-d").arg(&obj).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if let Ok(d) = std::env::var("SLMTVM_DUMP_ASM") {
        std::fs::write(format!("{d}/mmi.s"), text.as_bytes()).unwrap();
    }
    let vmul = text.lines().filter(|l| (l.contains("\tmul\t") || l.contains("\tmla\t")) && l.contains(".4s")).count();
    assert!(vmul >= 8, "MatMulInteger: {vmul} vector multiplies:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Symbolic rows with a constant weight (read packed on the assembled presets, its last panel
/// zero-padded): x [s, 33] and x [2, s, 33] (the batch walked with run-time rows) times W
/// [33, 37], one object for s <= 40 run at s = 1, 5 and 40, exact data, zero tolerance.
#[test]
fn matmul_with_symbolic_rows_and_a_constant_weight() {
    let mut g = G::new("matmul_sym");
    let w = g.exact(&[33, 37], DType::F32);
    let w = g.constant(w);
    let ty = |s: &str| TypeInfo::new(DType::F32, Shape::parse(s).unwrap());
    let xs = [g.g.add_input("x0", ty("[s<=40, 33]")), g.g.add_input("x1", ty("[2, s<=40, 33]"))];
    for (i, &x) in xs.iter().enumerate() {
        let y = g.g.add_node(format!("m{i}"), Op::MatMul(MatMul {}), vec![Some(x), Some(w)], &[format!("y{i}")]);
        g.g.outputs.push(y[0]);
    }
    g.g.infer().unwrap();
    // Every run-time edge of the row blocks (mr 4 to 12): a last block of at most half a tile
    // (1, 2, 3, 9, 13, 26), of more (5, 10, 23), none (12, 24), the static edge (37, 40) and 0.
    let sets: Vec<Vec<Tensor>> = [1usize, 2, 3, 5, 9, 10, 12, 13, 23, 24, 26, 37, 40, 0]
        .iter()
        .map(|&s| vec![g.exact(&[s, 33], DType::F32), g.exact(&[2, s, 33], DType::F32)])
        .collect();
    let failures = check_against_interpreter(&g.g, &sets, 0.0, 0.0);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
