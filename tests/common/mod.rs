//! Helpers shared by the CLI tests that write ONNX models by hand (`mod common;`).

use slmtvm_frontend::onnx::proto::{
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as DimValue, type_proto,
};
use std::path::PathBuf;

/// ONNX's FLOAT element type.
pub const F32: i32 = 1;

/// An empty folder for one test: `<tmp>/slmtvm-<prefix>-<pid>-<tag>`, removed first if left over.
pub fn fresh_dir(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("slmtvm-{prefix}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A graph input or output: an f32 tensor of static `dims`.
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims.iter().map(|&d| Dimension { value: Some(DimValue::DimValue(d)), ..Default::default() }).collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(F32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}
