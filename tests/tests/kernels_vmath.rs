//! The assembled vector math (`codegen::asm::vmath`: Dense's activation epilogue with the bias
//! folded in, FusedMlp's gate and elementwise Exp/Erf/Tanh/Sigmoid/SiLU/GELU nodes, on AVX2 `ymm` and AVX-512 `zmm`) computes the same IEEE operation sequence as the
//! Cranelift kernels, so an x86_64-v4 build (AVX-512 products and activations), an x86_64-v3
//! build (AVX2) and an x86_64-v3 build on the Cranelift schedule `4x8` (`F32X4` products — the
//! same FMA order per element — and activations) must be equal bit for bit, on inputs wide
//! enough to reach every branch of the polynomials (exp's clamps, erf's two ranges, tanh's
//! saturation, sigmoid and SiLU far into both tails), and tile edges of 1 to 16 lanes; all
//! also match the interpreter.

use slmtvm_ir::Tensor;
use slmtvm_ir::ops::{Dense, FusedMlp, UnaryOp};
use slmtvm_targets::Target;
use slmtvm_tests::Lcg;
use slmtvm_tests::compare;
use slmtvm_tests::cross::{Build, Job, run_batch_with};

#[test]
fn assembled_activations_equal_the_cranelift_bits() {
    let v3 = Target::from_spec("x86_64-v3").unwrap();
    if let Err(e) = v3.check_tools() {
        eprintln!("not checked: {e}");
        return;
    }
    let mut rng = Lcg(5);
    let mut b = Build::new("vmath", 1);
    let acts = [
        UnaryOp::Gelu { tanh_approx: false },
        UnaryOp::Gelu { tanh_approx: true },
        UnaryOp::Silu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
    ];
    for (i, act) in acts.iter().enumerate() {
        // N: one partial vector, two full ones, 32 + 5 (an edge tile of 5 lanes), 1.
        for (j, &(m, k, n)) in [(13, 7, 9), (3, 5, 32), (17, 4, 37), (2, 3, 1)].iter().enumerate() {
            let x = b.input(vec![rng.tensor(&[m, k], 4.0)]);
            let w = b.cst(rng.tensor(&[k, n], 6.0));
            let bias = ((i + j) % 2 == 0).then(|| b.cst(rng.tensor(&[n], 3.0)));
            b.node(slmtvm_ir::Op::Dense(Dense { activation: Some(act.clone()) }), vec![Some(x), Some(w), bias], 1);
        }
    }
    // FusedMlp's gate, act(x·W_gate)·(x·W_up), over one chunk of F (several chunks sum the
    // down product in a different order on the two paths): F = 100 with a 4-lane tail.
    for act in [UnaryOp::Silu, UnaryOp::Gelu { tanh_approx: false }] {
        let x = b.input(vec![rng.tensor(&[5, 12], 2.0)]);
        let wg = b.cst(rng.tensor(&[12, 100], 1.0));
        let wu = b.cst(rng.tensor(&[12, 100], 1.0));
        let wd = b.cst(rng.tensor(&[100, 7], 0.5));
        b.node(slmtvm_ir::Op::FusedMlp(FusedMlp { activation: act }), vec![Some(x), Some(wg), Some(wu), Some(wd)], 1);
    }
    // Elementwise nodes: the whole tensor in one pass (a 5-lane / 13-lane tail), inputs over
    // [-100, 100] (exp's clamps, the far tails of sigmoid and SiLU).
    for op in [
        UnaryOp::Exp,
        UnaryOp::Erf,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Gelu { tanh_approx: false },
        UnaryOp::Gelu { tanh_approx: true },
    ] {
        let x = b.input(vec![rng.tensor(&[3, 37], 100.0)]);
        b.node(slmtvm_ir::Op::Unary(op), vec![Some(x)], 1);
    }
    b.g.infer().unwrap();
    let want = slmtvm_ir::interp::run(&b.g, &b.sets[0]).unwrap();
    let jobs = [Job { graph: &b.g, data: b.sets.clone() }];
    let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!("vmath-{}", std::process::id()));
    let run = |t: &Target, schedule: Option<&str>, sub: &str| {
        let opts = [slmtvm_codegen::Options { schedule: schedule.map(|s| s.parse().unwrap()), ..Default::default() }];
        run_batch_with(t, &jobs, &dir.join(sub), &opts).remove(0).remove(0).unwrap_or_else(|e| panic!("{sub}: {e}"))
    };
    let reference = run(&v3, Some("4x8"), "cranelift");
    let mut builds = vec![("avx2", run(&v3, None, "avx2"))];
    let v4 = Target::from_spec("x86_64-v4").unwrap();
    match v4.check_tools() {
        Ok(()) => builds.push(("avx512", run(&v4, None, "avx512"))),
        Err(e) => eprintln!("AVX-512 not checked: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    let bits = |t: &Tensor| t.to_f32().iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut failures = Vec::new();
    for (name, got) in &builds {
        for (k, ((g, r), w)) in got.iter().zip(&reference).zip(&want).enumerate() {
            let (gb, rb) = (bits(g), bits(r));
            if let Some(e) = gb.iter().zip(&rb).position(|(x, y)| x != y) {
                failures.push(format!(
                    "{name}: output {k}: element {e}: {} vs cranelift {}",
                    f32::from_bits(gb[e]),
                    f32::from_bits(rb[e])
                ));
            }
            if let Err(m) = compare(w, g, 1e-4, 1e-4) {
                failures.push(format!("{name}: output {k} vs the interpreter: {m}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
