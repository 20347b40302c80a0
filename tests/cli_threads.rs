//! `--threads N` through the binary: recorded in the manifest and the header, the object
//! exports `NAME_run_parallel`, bad counts are refused with one clear error; `run` with the
//! harness's thread pool gives the serial build's bits natively (also with the pool's size
//! from `SLMTVM_THREADS`) and under qemu-user on aarch64 and riscv64 with vectors.

use prost::Message;
use slmtvm_frontend::onnx::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{F32, value_info};

fn slmtvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slmtvm")).args(args).output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fresh(tag: &str) -> PathBuf {
    common::fresh_dir("threads", tag)
}

/// `y = relu(x·W + b)` with x [65, 130], W [130, 131]: 2.2 MFLOP, above the split threshold
/// (a Dense after the optimizer, split into row blocks with an edge).
fn model_file(dir: &Path) -> PathBuf {
    let (k, n) = (130usize, 131usize);
    let w: Vec<f32> = (0..k * n).map(|i| ((i * 7919) % 97) as f32 / 97.0 - 0.5).collect();
    let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1).collect();
    let tensor = |name: &str, dims: &[i64], v: Vec<f32>| TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(F32),
        float_data: v,
        ..Default::default()
    };
    let node = |name: &str, op: &str, ins: &[&str], out: &str| NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        ..Default::default()
    };
    let g = GraphProto {
        name: Some("dense".into()),
        node: vec![
            node("mm", "MatMul", &["x", "w"], "p"),
            node("add", "Add", &["p", "b"], "q"),
            node("relu", "Relu", &["q"], "y"),
        ],
        initializer: vec![tensor("w", &[k as i64, n as i64], w), tensor("b", &[n as i64], b)],
        input: vec![value_info("x", &[65, k as i64])],
        output: vec![value_info("y", &[65, n as i64])],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(g),
        ..Default::default()
    };
    let p = dir.join("dense.onnx");
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn manifest(d: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(d.join("dense.json")).unwrap()).unwrap()
}

#[test]
fn threads_flag_is_recorded_and_bad_counts_are_refused() {
    let dir = fresh("flag");
    let m = model_file(&dir);
    let (one, three) = (dir.join("one"), dir.join("three"));
    ok(&slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", "-o", one.to_str().unwrap()]));
    let out = ok(&slmtvm(&[
        "build",
        m.to_str().unwrap(),
        "--target",
        "x86_64",
        "--threads",
        "3",
        "-o",
        three.to_str().unwrap(),
    ]));
    assert!(out.contains("1 split into 3 tasks"), "{out}");
    assert_eq!(manifest(&one)["threads"], 1);
    assert_eq!(manifest(&three)["threads"], 3);
    let tasks: Vec<(String, u64)> = manifest(&three)["kernel_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["op"].as_str().unwrap().to_string(), k["tasks"].as_u64().unwrap()))
        .collect();
    assert_eq!(tasks, [("Dense".to_string(), 3)]);
    let h1 = std::fs::read_to_string(one.join("dense.h")).unwrap();
    let h3 = std::fs::read_to_string(three.join("dense.h")).unwrap();
    assert!(h1.contains("#define DENSE_THREADS 1 ") && !h1.contains("int dense_run_parallel"), "{h1}");
    assert!(h3.contains("#define DENSE_THREADS 3 "), "{h3}");
    assert!(
        h3.contains(
            "int dense_run_parallel(const void* const* inputs, void* const* outputs, void* workspace, slmtvm_parallel_for_fn pf, void* ctx);"
        ),
        "{h3}"
    );
    assert!(h3.contains("#ifndef SLMTVM_PARALLEL_FOR"), "{h3}");
    {
        use object::{Object, ObjectSymbol};
        for (d, want) in [
            (&one, &["dense_run", "dense_workspace_size"][..]),
            (&three, &["dense_run", "dense_run_parallel", "dense_workspace_size"]),
        ] {
            let bytes = std::fs::read(d.join("dense.o")).unwrap();
            let f = object::File::parse(bytes.as_slice()).unwrap();
            let mut g: Vec<&str> =
                f.symbols().filter(|s| s.is_global() && s.is_definition()).map(|s| s.name().unwrap()).collect();
            g.sort();
            assert_eq!(g, want);
            assert!(f.symbols().all(|s| !s.is_undefined() || s.name().unwrap_or("").is_empty()), "an import");
        }
    }
    for bad in ["0", "257", "x", "-2"] {
        let flag = format!("--threads={bad}");
        let o = slmtvm(&["build", m.to_str().unwrap(), "--target", "x86_64", &flag, "-o", three.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--threads {bad}: {err}");
        assert!(err.contains("1 to 256") && err.contains(bad), "--threads {bad}: {err}");
    }
}

#[test]
fn threaded_runs_give_the_serial_bits_natively_and_under_qemu() {
    let dir = fresh("run");
    let m = model_file(&dir);
    // Natively or under qemu-user, as this machine can (a skip prints why; CI=true fails).
    let native = slmtvm_tests::cross::native_preset();
    let targets = [("x86_64", "x86_64"), ("aarch64", "aarch64"), ("riscv64", "riscv64-v")];
    for (arch, cpu) in targets.into_iter().filter(|(_, cpu)| slmtvm_tests::cross::runnable(cpu).is_some()) {
        let mut outs = Vec::new();
        for threads in ["1", "2", "3"] {
            let o = dir.join(format!("{cpu}-{threads}"));
            let args = [
                "run",
                m.to_str().unwrap(),
                "--target",
                arch,
                "--cpu",
                cpu,
                "--random-inputs",
                "5",
                "--threads",
                threads,
                "-o",
                o.to_str().unwrap(),
            ];
            ok(&slmtvm(&args));
            outs.push(std::fs::read(o.join("y.npy")).unwrap());
        }
        assert!(outs.iter().all(|o| *o == outs[0]), "{cpu}: threaded outputs differ");
        if arch == native {
            // The harness's pool size from the environment (run natively): 1 (a NULL
            // parallel_for), 4 (more threads than tasks); a bad value is refused.
            let b = dir.join(format!("{cpu}-3")).join("build");
            for n in ["1", "4"] {
                let o = dir.join(format!("env-{n}"));
                std::fs::create_dir_all(&o).unwrap();
                let r = Command::new(b.join("dense.run"))
                    .env("SLMTVM_THREADS", n)
                    .arg(b.join("inputs"))
                    .arg(&o)
                    .output()
                    .unwrap();
                ok(&r);
                assert_eq!(std::fs::read(o.join("y.npy")).unwrap(), outs[0], "SLMTVM_THREADS={n}");
            }
            let r = Command::new(b.join("dense.run"))
                .env("SLMTVM_THREADS", "0")
                .arg(b.join("inputs"))
                .arg(&dir)
                .output()
                .unwrap();
            assert_eq!(r.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&r.stderr).contains("SLMTVM_THREADS=0"), "{r:?}");
        }
    }
}
