//! MatMulNBits (`com.microsoft`, 4-bit block-quantized weights): the kernel on every target
//! preset against the reference interpreter over odd shapes, every zero-point form, biases,
//! partial blocks and several weight tiles; and the MiniLM-class encoder as quantized by ONNX
//! Runtime's `MatMulNBitsQuantizer` (`.cache/minilm_q4`: blocks of 32 with zero points;
//! `.cache/minilm_q4s`: blocks of 128, symmetric), compiled and compared with ONNX Runtime's
//! own outputs.

use slmtvm_ir::ops::MatMulNBits;
use slmtvm_ir::{Op, Tensor};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Build, Job, run_batch};
use slmtvm_tests::{Lcg, cached_model, repo_root, target_dir};

/// How a case gives its zero points.
#[derive(Clone, Copy)]
enum Zp {
    Absent,
    Packed,
    Float,
}

/// A's leading dims, K, N, block, zero points, bias.
type Case = (&'static [usize], usize, usize, usize, Zp, bool);

#[test]
fn matmul_nbits_on_every_target_matches_the_interpreter() {
    let mut b = Build::new("nbits", 2);
    let mut rng = Lcg(7);
    // (A's leading dims, K, N, block, zero points, bias)
    let cases: &[Case] = &[
        (&[1], 16, 1, 16, Zp::Absent, false),
        (&[3], 40, 17, 16, Zp::Packed, true),
        (&[2, 5], 130, 65, 32, Zp::Float, false),
        (&[17], 256, 64, 128, Zp::Packed, true),
        (&[4], 64, 200, 64, Zp::Absent, true),
        (&[2, 3], 1024, 33, 32, Zp::Packed, false),
        (&[9], 300, 130, 16, Zp::Packed, true),
        (&[2], 0, 5, 16, Zp::Absent, true),
    ];
    for &(lead, k, n, block, zp, bias) in cases {
        let op = MatMulNBits { k, n, bits: 4, block_size: block };
        let nb = op.blocks();
        let dims: Vec<usize> = lead.iter().copied().chain([k]).collect();
        let a = b.input(vec![rng.tensor(&dims, 1.0), rng.tensor(&dims, 2.0)]);
        let bytes: Vec<u8> = (0..n * nb * op.blob()).map(|_| rng.below(256) as u8).collect();
        let bq = b.cst(Tensor::from_vec(&[n, nb, op.blob()], bytes).unwrap());
        let scales = b.cst(rng.tensor(&[n * nb], 0.1));
        let z = match zp {
            Zp::Absent => None,
            Zp::Packed => {
                let zb: Vec<u8> = (0..n * op.zp_row_bytes()).map(|_| rng.below(256) as u8).collect();
                Some(b.cst(Tensor::from_vec(&[n * op.zp_row_bytes()], zb).unwrap()))
            }
            Zp::Float => {
                let zf: Vec<f32> = (0..n * nb).map(|_| rng.below(16) as f32).collect();
                Some(b.cst(Tensor::from_vec(&[n * nb], zf).unwrap()))
            }
        };
        let bias = bias.then(|| b.input(vec![rng.tensor(&[n], 1.0)]));
        b.node(Op::MatMulNBits(op), vec![Some(a), Some(bq), Some(scales), z, None, bias], 1);
    }
    b.check(1e-4, 1e-4);
}

/// `a` and `b` as f64 slices.
fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64().iter().copied().collect()
}

#[test]
fn onnx_runtime_matmul_nbits_minilm_matches_onnx_runtime() {
    let (f32_model, _) = cached_model("minilm");
    let host = Target::from_spec("x86_64").unwrap();
    let fp32 = slmtvm_codegen::compile(&f32_model, "minilm", &host).unwrap();
    for kind in ["minilm_q4", "minilm_q4s"] {
        let (g, inputs) = cached_model(kind);
        let f = repo_root().join(".cache").join(kind).join("ort/last_hidden_state.npy");
        let ort = slmtvm_frontend::npy::read_npy(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let nbits: Vec<&MatMulNBits> =
            g.nodes.iter().filter_map(|n| if let Op::MatMulNBits(m) = &n.op { Some(m) } else { None }).collect();
        assert_eq!(nbits.len(), 36, "{kind}: six layers of six weight products");
        // The 4-bit weights as stored (the baseline x86_64 packs nothing else): ≤ 0.3× their
        // f32 bytes.
        let c = slmtvm_codegen::compile(&g, kind, &host).unwrap();
        let f32_bytes: usize = nbits.iter().map(|m| m.k * m.n * 4).sum();
        let ratio = c.manifest.packed_weights_bytes as f64 / f32_bytes as f64;
        eprintln!(
            "{kind}: 4-bit weights {} bytes = {ratio:.3}× their f32 bytes; whole object's weights {} bytes = {:.3}× the fp32 model's (embeddings stay f32)",
            c.manifest.packed_weights_bytes,
            c.manifest.weights_bytes,
            c.manifest.weights_bytes as f64 / fp32.manifest.weights_bytes as f64
        );
        assert!(ratio <= 0.3, "{kind}: 4-bit weights take {ratio:.3}× their f32 bytes");
        let want = values(&ort);
        let norm = want.iter().map(|v| v * v).sum::<f64>().sqrt();
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // The portable kernel (x86_64 baseline, aarch64, scalar riscv64 under qemu-user) and
        // the assembled microkernels (x86_64-v3), where this host can run them.
        for preset in ["x86_64", "x86_64-v3", "aarch64", "riscv64"] {
            let Some(t) = slmtvm_tests::cross::runnable(preset) else { continue };
            let out = target_dir().join("slmtvm-cross").join(format!("{kind}-{preset}-{}", std::process::id()));
            let res = run_batch(&t, &[Job { graph: &g, data: vec![inputs.clone()] }], &out);
            let got = res[0][0].as_ref().unwrap_or_else(|e| panic!("{kind} on {preset}: {e}"));
            let got = values(&got[0]);
            assert_eq!(got.len(), want.len());
            let diff = got.iter().zip(&want).map(|(g, w)| (g - w) * (g - w)).sum::<f64>().sqrt();
            let max = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs()));
            eprintln!("{kind} on {preset}: relative L2 {:.2e}, max abs {max:.2e} vs ONNX Runtime", diff / norm);
            assert!(
                diff <= 1e-3 * norm && max <= 1e-3 * scale,
                "{kind} on {preset}: relative L2 {:.2e}, max abs {max:.2e}",
                diff / norm
            );
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}

#[test]
fn blocks_beyond_the_kernels_range_are_refused_naming_the_node() {
    use slmtvm_ir::{DType, Graph, Shape, TypeInfo};
    let op = MatMulNBits { k: 512, n: 4, bits: 4, block_size: 512 };
    let mut g = Graph::new("g");
    let a = g.add_input("a", TypeInfo::new(DType::F32, Shape::known(&[2, 512])));
    let b = g.add_const("b", Tensor::from_vec(&[4, 1, op.blob()], vec![0x88u8; 4 * op.blob()]).unwrap());
    let s = g.add_const("s", Tensor::from_vec(&[4], vec![0.5f32; 4]).unwrap());
    g.outputs = g.add_node("big_blocks", Op::MatMulNBits(op), vec![Some(a), Some(b), Some(s)], &["y".into()]);
    g.infer().unwrap();
    let e = slmtvm_codegen::compile(&g, "m", &Target::from_spec("x86_64").unwrap()).unwrap_err().to_string();
    assert!(e.contains("big_blocks") && e.contains("blocks of 512"), "{e}");
}
