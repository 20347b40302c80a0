//! The Llama-class decoder of `.cache/llama` quantized at build time (`--quantize`), compiled
//! for the host: its greedy choices against ONNX Runtime's f32 ones. `scripts/make_greedy.py`
//! (run by the test set-up) records four random prompts of 16 tokens, each followed by the 32
//! tokens f32 greedy decoding picks one step at a time; the causal prefill graph then gives,
//! in one run over a whole recorded sequence, the quantized model's choice at every step with
//! the same prefix (teacher forcing). The share of the 4 × 32 steps where it picks the
//! recorded token is the agreement; the first step where it would not is where free-running
//! quantized decoding leaves the f32 one.

use slmtvm_frontend::npy;
use slmtvm_ir::{Graph, Tensor};
use slmtvm_optimizer::quantize::{Scheme, quantize};
use slmtvm_optimizer::{CostModel, Options, optimize};
use slmtvm_targets::Target;
use slmtvm_tests::cross::{Job, run_batch};
use slmtvm_tests::{cached_model, repo_root, target_dir};

const PROMPT: usize = 16;
const STEPS: usize = 32;

/// The recorded sequences, [prompts, PROMPT + STEPS].
fn greedy_tokens() -> Vec<Vec<i64>> {
    let f = repo_root().join(".cache/llama/greedy/tokens.npy");
    assert!(
        f.is_file(),
        "{} is missing: python3 scripts/make_greedy.py .cache/llama (scripts/test.sh does)",
        f.display()
    );
    let t = npy::read_npy(&f).unwrap();
    let len = t.shape()[1];
    assert_eq!(len, PROMPT + STEPS);
    let v = t.to_i64_vec().unwrap();
    v.chunks(len).map(<[i64]>::to_vec).collect()
}

/// (agreement over all steps, first disagreeing step per prompt) of `g` compiled for the host.
fn agreement(g: &Graph, tag: &str) -> (f64, Vec<usize>) {
    let rows = greedy_tokens();
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
    let out = target_dir().join("slmtvm-cross").join(format!("llama-quant-{tag}-{}", std::process::id()));
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

fn check(scheme: Scheme, tag: &str, least: f64) {
    let (g, _) = cached_model("llama");
    let q = quantize(&g, scheme, None).unwrap();
    assert!(q.skipped.is_empty(), "{:?}", q.skipped);
    let bytes = |g: &Graph| g.consts.values().map(Tensor::byte_len).sum::<usize>() as f64;
    let (share, first) = agreement(&q.graph, tag);
    eprintln!(
        "llama {tag}: greedy agreement {:.1}% of {} steps; free-running decoding would first differ at steps {first:?}; weights {:.3}x the f32 bytes",
        100.0 * share,
        first.len() * STEPS,
        bytes(&q.graph) / bytes(&g)
    );
    assert!(share >= least, "{tag}: {share}");
}

#[test]
fn f32_build_reproduces_the_recorded_greedy_tokens() {
    // The check itself: the compiled f32 model picks every recorded token (ONNX Runtime's).
    let (g, _) = cached_model("llama");
    let (share, first) = agreement(&g, "f32");
    assert_eq!(share, 1.0, "first differing steps {first:?}");
}

#[test]
fn int8_greedy_tokens_agree_with_f32() {
    // 90.6 % on this random-weight model, whose flat logits make every step sensitive.
    check(Scheme::Int8, "int8", 0.85);
}
