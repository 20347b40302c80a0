//! Bad input through the CLI: every malformed or hostile model gets exactly one clear error line
//! that names the node or tensor at fault, and exit code 2 — never a panic, never a read
//! outside the model's folder.

use prost::Message;
use slmtvm_frontend::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    attribute_proto::AttributeType, tensor_proto::DataLocation,
};
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{F32, value_info};

fn tmpdir(tag: &str) -> PathBuf {
    common::fresh_dir("bad", tag)
}

fn node(name: &str, op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(F32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A model `y = x + w` with `x`, `w` of shape [2, 3], after `edit` has changed it.
fn model(edit: impl FnOnce(&mut GraphProto)) -> Vec<u8> {
    let mut g = GraphProto {
        name: Some("g".into()),
        node: vec![node("add0", "Add", &["x", "w"], &["y"], vec![])],
        initializer: vec![f32_tensor("w", &[2, 3], vec![0; 24])],
        input: vec![value_info("x", &[2, 3])],
        output: vec![value_info("y", &[2, 3])],
        ..Default::default()
    };
    edit(&mut g);
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Runs `slmtvm inspect` and `slmtvm run` on the model file and checks both fail with exit
/// code 2 and one error line containing every `needles` string.
fn assert_one_clear_error(path: &Path, needles: &[&str]) {
    let out_dir = path.with_extension("out");
    let runs = [
        vec!["inspect".to_string(), path.display().to_string()],
        vec![
            "run".into(),
            path.display().to_string(),
            "--target".into(),
            "reference".into(),
            "--random-inputs".into(),
            "1".into(),
            "--output-dir".into(),
            out_dir.display().to_string(),
        ],
    ];
    for args in runs {
        let o = Command::new(env!("CARGO_BIN_EXE_slmtvm")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: expected exit 2, stderr: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: expected one error line, got: {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        for n in needles {
            assert!(lines[0].contains(n), "{args:?}: error line lacks `{n}`: {err}");
        }
    }
    assert!(!out_dir.exists(), "no output may be written for a bad model");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn the_unmodified_model_runs() {
    let d = tmpdir("ok");
    let p = write(&d, "ok.onnx", &model(|_| {}));
    let o = Command::new(env!("CARGO_BIN_EXE_slmtvm"))
        .args(["run", p.to_str().unwrap(), "--random-inputs", "3", "--output-dir", d.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.join("out/y.npy").exists());
}

#[test]
fn truncated_corrupted_and_empty_files() {
    let d = tmpdir("trunc");
    let good = model(|_| {});
    let p = write(&d, "trunc.onnx", &good[..good.len() / 2]);
    assert_one_clear_error(&p, &["not a valid ONNX protobuf"]);
    let mut bad = good.clone();
    bad[0] = 0xff;
    bad[1] = 0xff;
    let p = write(&d, "corrupt.onnx", &bad);
    assert_one_clear_error(&p, &["not a valid ONNX protobuf"]);
    let p = write(&d, "empty.onnx", b"");
    assert_one_clear_error(&p, &["empty"]);
    assert_one_clear_error(&d.join("missing.onnx"), &["missing.onnx"]);
}

#[test]
fn wrong_typed_attribute_names_node_and_attribute() {
    let d = tmpdir("attr");
    let bytes = model(|g| {
        let attr = AttributeProto {
            name: Some("axis".into()),
            r#type: Some(AttributeType::Float as i32),
            f: Some(1.0),
            ..Default::default()
        };
        g.node.push(node("soft0", "Softmax", &["y"], &["z"], vec![attr]));
        g.output = vec![value_info("z", &[2, 3])];
    });
    assert_one_clear_error(&write(&d, "attr.onnx", &bytes), &["soft0", "axis", "expected type INT"]);
}

#[test]
fn inconsistent_shapes_name_the_node_or_tensor() {
    let d = tmpdir("shape");
    let bytes = model(|g| g.initializer = vec![f32_tensor("w", &[4], vec![0; 16])]);
    assert_one_clear_error(&write(&d, "bcast.onnx", &bytes), &["add0", "broadcast"]);
    let bytes = model(|g| g.output = vec![value_info("y", &[2, 4])]);
    assert_one_clear_error(&write(&d, "decl.onnx", &bytes), &["'y'", "inconsistent"]);
    let bytes = model(|g| g.output = vec![value_info("y", &[])]);
    assert_one_clear_error(&write(&d, "scalar.onnx", &bytes), &["'y'", "f32[]", "inconsistent"]);
}

#[test]
fn unsupported_operator_is_named() {
    let d = tmpdir("unsup");
    let bytes = model(|g| {
        g.node.push(node("weird0", "FancyOp", &["y"], &["z"], vec![]));
        g.output = vec![value_info("z", &[2, 3])];
    });
    assert_one_clear_error(&write(&d, "unsup.onnx", &bytes), &["weird0", "FancyOp"]);
}

#[test]
fn overflowing_negative_and_absurd_dims() {
    let d = tmpdir("dims");
    let huge = 1i64 << 40;
    let bytes = model(|g| g.initializer = vec![f32_tensor("w", &[huge, huge], vec![])]);
    assert_one_clear_error(&write(&d, "overflow.onnx", &bytes), &["'w'", "too large"]);
    let bytes = model(|g| g.initializer = vec![f32_tensor("w", &[-2, 3], vec![])]);
    assert_one_clear_error(&write(&d, "neg.onnx", &bytes), &["'w'", "negative"]);
    let bytes = model(|g| g.input = vec![value_info("x", &[2, -7])]);
    assert_one_clear_error(&write(&d, "neg_in.onnx", &bytes), &["'x'", "negative"]);
    let bytes = model(|g| g.input = vec![value_info("x", &[1_000_000_000_000, 3])]);
    assert_one_clear_error(&write(&d, "absurd.onnx", &bytes), &["'x'", "too large"]);
}

#[test]
fn data_length_must_match_dims() {
    let d = tmpdir("len");
    let bytes = model(|g| g.initializer = vec![f32_tensor("w", &[2, 3], vec![0; 20])]);
    assert_one_clear_error(&write(&d, "raw.onnx", &bytes), &["'w'", "20 bytes", "needs 24"]);
    let bytes = model(|g| {
        g.initializer = vec![TensorProto {
            name: Some("w".into()),
            dims: vec![2, 3],
            data_type: Some(F32),
            float_data: vec![1.0; 5],
            ..Default::default()
        }]
    });
    assert_one_clear_error(&write(&d, "floats.onnx", &bytes), &["'w'", "5 values"]);
}

fn external(location: &str) -> Vec<u8> {
    model(|g| {
        g.initializer = vec![TensorProto {
            name: Some("w".into()),
            dims: vec![2, 3],
            data_type: Some(F32),
            data_location: Some(DataLocation::External as i32),
            external_data: vec![StringStringEntryProto { key: Some("location".into()), value: Some(location.into()) }],
            ..Default::default()
        }]
    })
}

#[test]
fn external_data_stays_inside_the_model_folder() {
    let root = tmpdir("ext");
    let models = root.join("models");
    std::fs::create_dir_all(&models).unwrap();
    // A real file outside the model's folder that a hostile model would like to read.
    let secret = root.join("secret.bin");
    std::fs::write(&secret, [7u8; 24]).unwrap();
    let p = write(&models, "dotdot.onnx", &external("../secret.bin"));
    assert_one_clear_error(&p, &["'w'", "external data", ".."]);
    let p = write(&models, "abs.onnx", &external(secret.to_str().unwrap()));
    assert_one_clear_error(&p, &["'w'", "external data", "relative"]);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, models.join("link.bin")).unwrap();
        let p = write(&models, "link.onnx", &external("link.bin"));
        assert_one_clear_error(&p, &["'w'", "outside the model's folder"]);
    }
    // The same data inside the folder is read, and a short file is an error.
    std::fs::write(models.join("w.bin"), [0u8; 24]).unwrap();
    let p = write(&models, "inside.onnx", &external("w.bin"));
    let o = Command::new(env!("CARGO_BIN_EXE_slmtvm")).args(["inspect", p.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(models.join("short.bin"), [0u8; 10]).unwrap();
    let p = write(&models, "short.onnx", &external("short.bin"));
    assert_one_clear_error(&p, &["'w'", "has only 10"]);
}

/// A model of one `com.microsoft::MatMulNBits` (x [2, 32] f32 → y [2, 3]; K 32, N 3, 4 bits,
/// one block of 32 per column) whose packed weight has `b_bytes` bytes per block and whose
/// packed zero points have `zp_bytes` bytes, plus the nodes `extra` after it.
fn nbits_model(b_bytes: i64, zp_bytes: i64, extra: Vec<NodeProto>) -> Vec<u8> {
    let int = |name: &str, v: i64| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    };
    let u8_tensor = |name: &str, dims: &[i64]| TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(2),
        raw_data: Some(vec![0x88; dims.iter().product::<i64>() as usize]),
        ..Default::default()
    };
    let mut mm = node(
        "nbits0",
        "MatMulNBits",
        &["x", "b", "s", "zp"],
        &["y"],
        vec![int("K", 32), int("N", 3), int("bits", 4), int("block_size", 32)],
    );
    mm.domain = Some("com.microsoft".into());
    let last = extra.last().map_or("y".to_string(), |n| n.output[0].clone());
    let mut nodes = vec![mm];
    nodes.extend(extra);
    let g = GraphProto {
        name: Some("g".into()),
        node: nodes,
        initializer: vec![
            u8_tensor("b", &[3, 1, b_bytes]),
            f32_tensor("s", &[3], 0.5f32.to_le_bytes().repeat(3)),
            u8_tensor("zp", &[zp_bytes]),
        ],
        input: vec![value_info("x", &[2, 32])],
        output: vec![value_info(&last, &[2, 3])],
        ..Default::default()
    };
    let opset = |d: &str, v: i64| OperatorSetIdProto { domain: Some(d.into()), version: Some(v) };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![opset("", 17), opset("com.microsoft", 1)],
        graph: Some(g),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn bad_quantized_operators_are_named() {
    let d = tmpdir("nbits");
    // The well-formed model runs.
    let p = write(&d, "ok.onnx", &nbits_model(16, 3, vec![]));
    let o = Command::new(env!("CARGO_BIN_EXE_slmtvm"))
        .args(["run", p.to_str().unwrap(), "--random-inputs", "1", "--output-dir", d.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // 15 bytes per block of 32 4-bit weights (16 are needed).
    let p = write(&d, "b.onnx", &nbits_model(15, 3, vec![]));
    assert_one_clear_error(&p, &["nbits0", "MatMulNBits", "B must be"]);
    // Four bytes of packed zero points for 3 columns of one block (3 are needed).
    let p = write(&d, "zp.onnx", &nbits_model(16, 4, vec![]));
    assert_one_clear_error(&p, &["nbits0", "zero_points must be 3 bytes"]);
    // An operator of the com.microsoft domain that is not implemented.
    let mut q = node("qattn0", "QAttention", &["y"], &["z"], vec![]);
    q.domain = Some("com.microsoft".into());
    let p = write(&d, "unknown.onnx", &nbits_model(16, 3, vec![q]));
    assert_one_clear_error(&p, &["qattn0", "QAttention", "com.microsoft"]);
}
