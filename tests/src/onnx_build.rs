//! Small ONNX protobuf builders for tests that write their own one-node models.

use slmtvm_frontend::onnx::proto::attribute_proto::AttributeType;
use slmtvm_frontend::onnx::proto::tensor_shape_proto::{Dimension, dimension};
use slmtvm_frontend::onnx::proto::{AttributeProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto};

/// A tensor value's name and type: ONNX element type `elem` (1 = f32, 7 = i64, 10 = f16, …)
/// and `dims`, where a negative dim is the symbol `batch`.
pub fn value_info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| {
            let value = if d < 0 { dimension::Value::DimParam("batch".into()) } else { dimension::Value::DimValue(d) };
            Dimension { value: Some(value), ..Default::default() }
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}
