//! The optimizer through the binary: `--explain` reports the rewrites with counts, the cost
//! before and after and the stop reason; `--opt-level 0` turns it off; the manifest records it;
//! optimized builds stay byte-identical from run to run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn slmtvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).current_dir(env!("CARGO_MANIFEST_DIR")).args(args).output().unwrap()
}

fn fresh(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-opt-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn model(m: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models").join(m).join("model.onnx").to_string_lossy().into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn explain_reports_rewrites_cost_and_stop_reason() {
    let out = fresh("explain");
    let o = out.to_str().unwrap();
    let text = ok(&slmtvm(&["build", &model("llama_tiny"), "--target", "x86_64", "-o", o, "--explain"]));
    assert!(text.contains("optimizer: level 1, stop: saturated"), "{text}");
    // llama_tiny's exporter casts int64 masks to int64 and chains reshapes: both simplify.
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("cast-noop") && l.trim_end().ends_with(|c: char| c.is_ascii_digit())),
        "{text}"
    );
    let nodes = text.lines().find(|l| l.starts_with("nodes: ")).unwrap();
    let n: Vec<usize> = nodes.trim_start_matches("nodes: ").split(" -> ").map(|x| x.parse().unwrap()).collect();
    assert!(n[1] < n[0], "{nodes}");
    let cost = text.lines().find(|l| l.starts_with("cost: ")).unwrap();
    let c: Vec<f64> = cost
        .trim_start_matches("cost: ")
        .split(" (")
        .next()
        .unwrap()
        .split(" -> ")
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(c[1] < c[0], "{cost}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(j["optimizer"]["level"], 1);
    assert_eq!(j["optimizer"]["stop"], "saturated");
    assert!(j["optimizer"]["applied"]["cast-noop"].as_u64().unwrap() > 0);
}

#[test]
fn opt_level_zero_turns_the_optimizer_off_and_bad_levels_are_refused() {
    let out = fresh("o0");
    let o = out.to_str().unwrap();
    let text =
        ok(&slmtvm(&["build", &model("llama_tiny"), "--target", "x86_64", "-o", o, "--opt-level", "0", "--explain"]));
    assert!(text.contains("optimizer: off (--opt-level 0)"), "{text}");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(j["optimizer"]["nodes_before"], j["optimizer"]["nodes_after"]);
    let r = slmtvm(&["build", &model("llama_tiny"), "--target", "x86_64", "-o", o, "--opt-level", "7"]);
    assert_eq!(r.status.code(), Some(2));
}

#[test]
fn optimized_builds_are_reproducible() {
    let (a, b) = (fresh("ra"), fresh("rb"));
    for d in [&a, &b] {
        ok(&slmtvm(&[
            "build",
            &model("gpt2_tiny"),
            "--target",
            "aarch64",
            "--dim",
            "batch=2",
            "--dim",
            "sequence=12",
            "-o",
            d.to_str().unwrap(),
        ]));
    }
    for f in ["model.o", "model.h", "model.json"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f} differs between builds");
    }
}

/// The count after `name` in `--explain`'s line starting with `prefix` (0 when absent):
/// rule counts are `  rule   N` lines, operator counts `operators after: Kind N, …`.
fn explained(text: &str, name: &str) -> (usize, usize) {
    let rule = text
        .lines()
        .find_map(|l| {
            l.trim_start().strip_prefix(name).filter(|r| r.starts_with(' ')).map(|r| r.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let ops = text.lines().find_map(|l| l.strip_prefix("operators after: ")).unwrap_or_else(|| panic!("{text}"));
    let op = ops
        .split(", ")
        .find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).map(|n| n.parse().unwrap()))
        .unwrap_or(0);
    (rule, op)
}

#[test]
fn explain_counts_the_fused_ops_of_the_llama_style_decoder() {
    // Two layers: one Attention per layer, one RMSNorm per norm (2 per layer + final), one SiLU
    // and one FusedMlp per layer (gate, up and down products with the SiLU); no Softmax left.
    let out = fresh("llama");
    let text =
        ok(&slmtvm(&["build", &model("llama_tiny"), "--target", "x86_64", "-o", out.to_str().unwrap(), "--explain"]));
    assert_eq!(explained(&text, "attention").0, 2, "{text}");
    assert_eq!(explained(&text, "rmsnorm").0, 5, "{text}");
    assert_eq!(explained(&text, "Attention").1, 2, "{text}");
    assert_eq!(explained(&text, "RmsNorm").1, 5, "{text}");
    assert_eq!(explained(&text, "Softmax").1, 0, "{text}");
    assert_eq!((explained(&text, "gated-mlp").0, explained(&text, "FusedMlp").1), (2, 2), "{text}");
}

#[test]
fn explain_counts_the_fused_ops_of_the_minilm_class_encoder() {
    // Six layers: one Attention per layer, LayerNorms 2 per layer + the embeddings', six
    // matrix products per layer as Dense kernels (the FFN's first with its GELU); no Softmax.
    let m = slmtvm_tests::cached_model_path("minilm");
    let out = fresh("minilm");
    let text =
        ok(&slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", "-o", out.to_str().unwrap(), "--explain"]));
    assert_eq!(explained(&text, "attention").0, 6, "{text}");
    let n = |k: &str| explained(&text, k).1;
    assert_eq!((n("Attention"), n("LayerNorm"), n("Dense"), n("Softmax"), n("Gelu")), (6, 13, 36, 0, 0), "{text}");
    assert_eq!(explained(&text, "dense-gelu").0, 6, "{text}");
    assert!(text.contains("stop: saturated"), "{text}");
}
