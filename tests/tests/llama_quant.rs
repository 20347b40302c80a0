//! The Llama-class decoder of `.cache/llama` quantized at build time (`--quantize`), compiled
//! for the host: its greedy choices against ONNX Runtime's f32 ones. `scripts/make_greedy.py`
//! (run by the test set-up) records four random prompts of 16 tokens, each followed by the 32
//! tokens f32 greedy decoding picks one step at a time; the causal prefill graph then gives,
//! in one run over a whole recorded sequence, the quantized model's choice at every step with
//! the same prefix (teacher forcing). The share of the 4 × 32 steps where it picks the
//! recorded token is the agreement; the first step where it would not is where free-running
//! quantized decoding leaves the f32 one.
//!
//! The random-weight decoder's flat logits make every step sensitive; `.cache/trained`
//! (`scripts/make_trained.py`: a small decoder trained on learnable synthetic sequences until
//! its predictions are confident, with ONNX Runtime's f32 greedy tokens on held-out prompts
//! and its own quantizers' agreement) is where the quantizers are held to ≥ 98 % (int8) and
//! ≥ 90 % (int4) and to no less than ONNX Runtime's quantize_dynamic and MatMulNBitsQuantizer.

use slmtvm_frontend::{LoadOptions, load_onnx, npy};
use slmtvm_ir::{Graph, Tensor};
use slmtvm_optimizer::quantize::{Scheme, quantize};
use slmtvm_optimizer::{CostModel, Options, optimize};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Job, run_batch};
use slmtvm_tests::{cached_model, cached_model_path, repo_root, target_dir};

const PROMPT: usize = 16;
const STEPS: usize = 32;

/// The recorded sequences of `.cache/MODEL`, [prompts, PROMPT + STEPS].
fn greedy_tokens(model: &str) -> Vec<Vec<i64>> {
    let f = repo_root().join(".cache").join(model).join("greedy/tokens.npy");
    assert!(f.is_file(), "{} is missing: scripts/test.sh records it", f.display());
    let t = npy::read_npy(&f).unwrap();
    let len = t.shape()[1];
    assert_eq!(len, PROMPT + STEPS);
    let v = t.to_i64_vec().unwrap();
    v.chunks(len).map(<[i64]>::to_vec).collect()
}

/// (agreement over all steps, first disagreeing step per prompt) of `g` compiled for the host,
/// on the sequences recorded for `.cache/MODEL`.
fn agreement(model: &str, g: &Graph, tag: &str) -> (f64, Vec<usize>) {
    let rows = greedy_tokens(model);
    let seq = 64;
    let sets: Vec<Vec<Tensor>> = rows
        .iter()
        .map(|r| {
            let mut ids = vec![0i64; seq];
            let mut mask = vec![0i64; seq];
            ids[..r.len()].copy_from_slice(r);
            mask[..r.len()].fill(1);
            vec![Tensor::from_vec(&[1, seq], ids).unwrap(), Tensor::from_vec(&[1, seq], mask).unwrap()]
        })
        .collect();
    let opts = Options { cost: CostModel { lanes: 4.0, fma: true, ..CostModel::default() }, ..Options::default() };
    let (o, _) = optimize(g, &opts).unwrap();
    let host = Target::host().unwrap();
    let out = target_dir().join("slmtvm-cross").join(format!("llama-quant-{model}-{tag}-{}", std::process::id()));
    let res = run_batch(&host, &[Job { graph: &o, data: sets }], &out);
    let _ = std::fs::remove_dir_all(&out);
    let (mut agree, mut first) = (0usize, Vec::new());
    for (r, got) in rows.iter().zip(&res[0]) {
        let logits = got.as_ref().unwrap_or_else(|e| panic!("{tag}: {e}"))[0].to_f32();
        let vocab = logits.shape()[2];
        let flat: Vec<f32> = logits.iter().copied().collect();
        let pick = |p: usize| {
            let row = &flat[p * vocab..(p + 1) * vocab];
            (0..vocab).fold(0, |b, i| if row[i] > row[b] { i } else { b }) as i64
        };
        let same: Vec<bool> = (0..STEPS).map(|j| pick(PROMPT + j - 1) == r[PROMPT + j]).collect();
        agree += same.iter().filter(|&&s| s).count();
        first.push(same.iter().position(|s| !s).unwrap_or(STEPS));
    }
    (agree as f64 / (rows.len() * STEPS) as f64, first)
}

/// The agreement of `model` quantized by `scheme`, printed with where decoding would leave
/// the f32 tokens and the weight bytes against f32's.
fn quantized_agreement(model: &str, scheme: Scheme, tag: &str) -> f64 {
    let (g, _) = cached_model(model);
    let q = quantize(&g, scheme, None).unwrap();
    assert!(q.skipped.is_empty(), "{:?}", q.skipped);
    let bytes = |g: &Graph| g.consts.values().map(Tensor::byte_len).sum::<usize>() as f64;
    let (share, first) = agreement(model, &q.graph, tag);
    eprintln!(
        "{model} {tag}: greedy agreement {:.1}% of {} steps; free-running decoding would first differ at steps {first:?}; weights {:.3}x the f32 bytes",
        100.0 * share,
        first.len() * STEPS,
        bytes(&q.graph) / bytes(&g)
    );
    share
}

#[test]
fn f32_build_reproduces_the_recorded_greedy_tokens() {
    // The check itself: the compiled f32 model picks every recorded token (ONNX Runtime's).
    for model in ["llama", "trained"] {
        let (g, _) = cached_model(model);
        let (share, first) = agreement(model, &g, "f32");
        assert_eq!(share, 1.0, "{model}: first differing steps {first:?}");
    }
}

#[test]
fn int8_greedy_tokens_agree_with_f32() {
    // 90.6 % on this random-weight model, whose flat logits make every step sensitive.
    let share = quantized_agreement("llama", Scheme::Int8, "int8");
    assert!(share >= 0.85, "{share}");
}

/// ONNX Runtime's own quantizers' agreement on the trained decoder (recorded by
/// `scripts/make_trained.py`): `int8` (quantize_dynamic) and `q4` (MatMulNBitsQuantizer).
fn ort_agreement(kind: &str) -> f64 {
    let f = repo_root().join(".cache/trained/greedy/ort_agreement.json");
    let text =
        std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e} (scripts/test.sh writes it)", f.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[kind].as_f64().unwrap_or_else(|| panic!("{}: no {kind}", f.display()))
}

#[test]
fn trained_decoder_int8_keeps_its_greedy_tokens() {
    // The trained decoder's confident predictions: --quantize int8 keeps ≥ 98 % of the f32
    // greedy tokens, and no fewer than ONNX Runtime's quantize_dynamic keeps.
    let share = quantized_agreement("trained", Scheme::Int8, "int8");
    let ort = ort_agreement("int8");
    eprintln!("trained: ONNX Runtime's quantize_dynamic keeps {:.1}%", 100.0 * ort);
    assert!(share >= 0.98 && share >= ort, "int8 {share} (ONNX Runtime's {ort})");
}

#[test]
fn trained_decoder_int4_keeps_its_greedy_tokens() {
    // --quantize int4 (groups of 32): ≥ 90 %, and no fewer than MatMulNBitsQuantizer (block 32).
    let ort = ort_agreement("q4");
    eprintln!("trained: ONNX Runtime's MatMulNBitsQuantizer keeps {:.1}%", 100.0 * ort);
    for f16_scales in [false, true] {
        let tag = if f16_scales { "int4-f16" } else { "int4" };
        let share = quantized_agreement("trained", Scheme::Int4 { group: 32, f16_scales }, tag);
        assert!(share >= 0.9 && share >= ort, "int4 (f16 scales {f16_scales}) {share} (ONNX Runtime's {ort})");
    }
}

#[test]
fn trained_decoder_quantized_by_onnx_runtime_keeps_its_agreement() {
    // The models ONNX Runtime's quantizers wrote, compiled by slmtvm: as faithful to the f32
    // tokens as ONNX Runtime's own runs of them (one step of slack for a rounding flip).
    for kind in ["int8", "q4"] {
        let path = cached_model_path(&format!("trained/ort_{kind}"));
        let g = load_onnx(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (share, first) = agreement("trained", &g, &format!("ort-{kind}"));
        let ort = ort_agreement(kind);
        eprintln!(
            "trained, ONNX Runtime's {kind} model compiled: {:.1}% (ONNX Runtime {:.1}%), first differing steps {first:?}",
            100.0 * share,
            100.0 * ort
        );
        assert!(share >= ort - 1.0 / (4 * STEPS) as f64, "{kind}: {share} against ONNX Runtime's {ort}");
    }
}
