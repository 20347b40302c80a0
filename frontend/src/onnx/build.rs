//! Builders of small ONNX models (protobuf values) for tests: value infos with known or
//! symbolic dims, attributes, and one-node models imported in one call.

use crate::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
    attribute_proto::AttributeType, tensor_shape_proto::Dimension, tensor_shape_proto::dimension::Value as DimValue,
    type_proto,
};
use crate::{LoadOptions, Result, load_onnx_bytes};
use prost::Message;
use slmtvm_ir::Graph;

/// An input's dim: a size or a symbol.
#[derive(Clone, Copy)]
pub enum D {
    /// A known size.
    N(i64),
    /// A named symbol.
    S(&'static str),
}

/// A graph input or output of ONNX element type `elem` and `dims`.
pub fn vi(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match *d {
                D::N(n) => DimValue::DimValue(n),
                D::S(s) => DimValue::DimParam(s.into()),
            }),
            ..Default::default()
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

/// An INT attribute.
pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

/// Imports an opset-23 model of one node `op_type` named "n0", with graph inputs `ins`
/// (empty names are absent inputs) and the output "y" (undeclared type).
pub fn import_one(op_type: &str, ins: Vec<ValueInfoProto>, attrs: Vec<AttributeProto>) -> Result<Graph> {
    import_one_in("", op_type, ins, attrs)
}

/// [`import_one`] of an operator of `domain` (imported at version 1 beside ai.onnx 23).
pub fn import_one_in(
    domain: &str,
    op_type: &str,
    ins: Vec<ValueInfoProto>,
    attrs: Vec<AttributeProto>,
) -> Result<Graph> {
    let node = NodeProto {
        name: Some("n0".into()),
        domain: (!domain.is_empty()).then(|| domain.to_string()),
        op_type: Some(op_type.into()),
        input: ins.iter().map(|v| v.name().to_string()).collect(),
        output: vec!["y".into()],
        attribute: attrs,
        ..Default::default()
    };
    let g = GraphProto {
        name: Some("g".into()),
        node: vec![node],
        input: ins.into_iter().filter(|v| !v.name().is_empty()).collect(),
        output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: Some(10),
        opset_import: [("", 23), (domain, 1)]
            .into_iter()
            .filter(|&(d, v)| v == 23 || !d.is_empty())
            .map(|(d, v)| OperatorSetIdProto { domain: Some(d.to_string()), version: Some(v) })
            .collect(),
        graph: Some(g),
        ..Default::default()
    };
    load_onnx_bytes(&m.encode_to_vec(), None, &LoadOptions::default())
}

/// The message of an import that must fail.
pub fn import_err(op_type: &str, ins: Vec<ValueInfoProto>, attrs: Vec<AttributeProto>) -> String {
    match import_one(op_type, ins, attrs) {
        Ok(_) => panic!("the import of a bad {op_type} succeeded"),
        Err(e) => e.to_string(),
    }
}

/// [`vi`] with dims as numbers, a negative one being the symbol `batch`.
pub fn value_info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let dims: Vec<D> = dims.iter().map(|&d| if d < 0 { D::S("batch") } else { D::N(d) }).collect();
    vi(name, elem, &dims)
}
