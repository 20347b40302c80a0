//! examples/generate end to end: `build.sh` compiles the prefill and decode models of a
//! KV-cache graph with the slmtvm binary and links the C greedy loop; its 32 tokens equal
//! ONNX Runtime's (recorded in tests/models/<m>/greedy.json) natively and under qemu-user.
//! The KV cache is one buffer per layer passed as both past input and present output.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap().to_string()).collect()
}

fn generate(model: &str, target: &str) -> Option<(Vec<String>, Vec<String>, String)> {
    // Natively or under qemu-user, as this machine can (a skip prints why; CI=true fails).
    let t = slmtvm_tests::cross::runnable(target)?;
    let dir = root().join("tests/models").join(model);
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("greedy.json")).unwrap()).unwrap();
    let out = std::env::temp_dir().join(format!("slmtvm-gen-{}-{model}-{target}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let b = Command::new("bash")
        .arg(root().join("examples/generate/build.sh"))
        .args([dir.join("model.onnx").to_str().unwrap(), target, out.to_str().unwrap()])
        .env("SLMTVM", env!("CARGO_BIN_EXE_slmtvm"))
        .output()
        .unwrap();
    assert!(
        b.status.success(),
        "build.sh: {}{}",
        String::from_utf8_lossy(&b.stdout),
        String::from_utf8_lossy(&b.stderr)
    );
    let exe = out.join("generate");
    let prompt = ids(&g["prompt"]);
    let mut cmd = t.command(&exe).unwrap();
    let r = cmd.arg("-n").arg("32").args(&prompt).output().unwrap();
    let stdout = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(r.status.success(), "generate: {stdout}{}", String::from_utf8_lossy(&r.stderr));
    let got: Vec<String> =
        stdout.lines().next().unwrap().strip_prefix("tokens:").unwrap().split_whitespace().map(String::from).collect();
    let h = std::fs::read_to_string(out.join("decode.h")).unwrap();
    assert!(h.contains("#define DECODE_NUM_IN_PLACE 4"), "every past/present pair is updated in place");
    Some((got, ids(&g["generated"]), stdout))
}

fn check(model: &str) {
    for target in ["x86_64", "aarch64", "riscv64"] {
        if let Some((got, want, out)) = generate(model, target) {
            assert_eq!(got.len(), 32, "{model} {target}: {out}");
            assert_eq!(got, want, "{model} on {target}: greedy tokens differ from ONNX Runtime's");
            assert!(out.contains("tokens/s"), "{out}");
            println!("{model} {target}: {}", out.lines().skip(1).collect::<Vec<_>>().join("; "));
        }
    }
}

#[test]
fn llama_style_greedy_tokens_equal_onnx_runtime() {
    check("llama_kv");
}

#[test]
fn gpt2_style_greedy_tokens_equal_onnx_runtime() {
    check("gpt2_kv");
}

#[test]
fn mismatched_cache_layouts_are_refused() {
    // A decode model built for another total length than the prefill model: the cache
    // layouts differ and generate refuses to run.
    // Built for this machine and run natively.
    let native = slmtvm_tests::cross::native_preset();
    let dir = root().join("tests/models/llama_kv");
    let out = std::env::temp_dir().join(format!("slmtvm-gen-{}-mismatch", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let b = Command::new("bash")
        .arg(root().join("examples/generate/build.sh"))
        .args([dir.join("model.onnx").to_str().unwrap(), native, out.to_str().unwrap(), "64", "16"])
        .env("SLMTVM", env!("CARGO_BIN_EXE_slmtvm"))
        .output()
        .unwrap();
    assert!(b.status.success());
    let slm = env!("CARGO_BIN_EXE_slmtvm");
    let d = Command::new(slm)
        .args(["build", dir.join("model.onnx").to_str().unwrap(), "--target", native, "--name", "decode", "-o"])
        .arg(&out)
        .args(["--dim", "batch=1", "--dim", "sequence=1", "--bound", "past_sequence=40"])
        .output()
        .unwrap();
    assert!(d.status.success());
    let exe = out.join("generate2");
    let cc = Command::new("gcc")
        .args(["-O2", "-std=c99", "-D_POSIX_C_SOURCE=200809L", "-I"])
        .arg(&out)
        .arg(root().join("examples/generate/generate.c"))
        .arg(out.join("prefill.o"))
        .arg(out.join("decode.o"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let r = Command::new(&exe).args(["-n", "4", "1", "2"]).output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("does not lay it out as the decode model does"), "{e}");
}
