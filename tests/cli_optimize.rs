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

#[test]
fn explain_counts_the_fused_ops_of_the_llama_style_decoder() {
    // Two layers: one Attention per layer, one RMSNorm per norm (2 per layer + final), one SiLU
    // and one fused gated MLP per layer.
    let out = fresh("llama");
    let text =
        ok(&slmtvm(&["build", &model("llama_tiny"), "--target", "x86_64", "-o", out.to_str().unwrap(), "--explain"]));
    let count = |rule: &str| -> usize {
        text.lines()
            .find_map(|l| {
                l.trim_start().strip_prefix(rule).filter(|r| r.starts_with(' ')).map(|r| r.trim().parse().unwrap())
            })
            .unwrap_or(0)
    };
    assert_eq!((count("attention"), count("rmsnorm"), count("silu"), count("gated-mlp")), (2, 5, 2, 2), "{text}");
}
