//! The assembled AVX-512 vector math (`codegen::asm::vmath`: Dense's activation epilogue with
//! the bias folded in) computes the same IEEE operation sequence as the Cranelift kernels, so
//! an x86_64-v4 build (AVX-512 products and activations) must equal an x86_64-v3 build (AVX2
//! products — the same FMA order per element — and Cranelift `F32X4` activations) bit for bit,
//! on inputs wide enough to reach every branch of the polynomials (exp's clamps, erf's two
//! ranges, tanh's saturation, sigmoid and SiLU far into both tails), and tile edges of 1 to 16
//! lanes; both also match the interpreter.

use slmtvm_ir::Tensor;
use slmtvm_ir::ops::{Dense, UnaryOp};
use slmtvm_targets::Target;
use slmtvm_tests::compare;
use slmtvm_tests::cross::{Build, Job, run_batch_with};

struct Lcg(u64);

impl Lcg {
    fn tensor(&mut self, dims: &[usize], a: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let v = (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * f64::from(a)) as f32
            })
            .collect::<Vec<f32>>();
        Tensor::from_vec(dims, v).unwrap()
    }
}

#[test]
fn avx512_activations_equal_the_cranelift_bits() {
    let v4 = Target::from_spec("x86_64-v4").unwrap();
    if let Err(e) = v4.check_tools() {
        eprintln!("not checked: {e}");
        return;
    }
    let v3 = Target::from_spec("x86_64-v3").unwrap();
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
    b.g.infer().unwrap();
    let want = slmtvm_ir::interp::run(&b.g, &b.sets[0]).unwrap();
    let jobs = [Job { graph: &b.g, data: b.sets.clone() }];
    let dir = slmtvm_tests::target_dir().join("slmtvm-cross").join(format!("vmath-{}", std::process::id()));
    let opts = [slmtvm_codegen::Options::default()];
    let wide = run_batch_with(&v4, &jobs, &dir.join("v4"), &opts).remove(0).remove(0).expect("x86_64-v4 run");
    let narrow = run_batch_with(&v3, &jobs, &dir.join("v3"), &opts).remove(0).remove(0).expect("x86_64-v3 run");
    let _ = std::fs::remove_dir_all(&dir);
    let mut failures = Vec::new();
    for (k, ((w, a), c)) in wide.iter().zip(&narrow).zip(&want).enumerate() {
        let (wv, av): (Vec<f32>, Vec<f32>) =
            (w.to_f32().iter().copied().collect(), a.to_f32().iter().copied().collect());
        if let Some(e) = wv.iter().zip(&av).position(|(x, y)| x.to_bits() != y.to_bits()) {
            failures.push(format!("output {k}: element {e}: avx512 {} vs cranelift {}", wv[e], av[e]));
        }
        if let Err(m) = compare(c, w, 1e-4, 1e-4) {
            failures.push(format!("output {k} vs the interpreter: {m}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
