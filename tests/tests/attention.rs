//! The ONNX `Attention` decomposition on small hand-built models: values of the causal,
//! grouped-query 3-D and fully masked cases, and one clear error naming the node for bad input.

use slmtvm_frontend::onnx::build::{int_attr, value_info};
use slmtvm_frontend::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
};
use slmtvm_frontend::{LoadOptions, load_onnx_bytes};
use slmtvm_ir::{Graph, Tensor, interp};

const FLOAT: i32 = 1;
const BOOL: i32 = 9;

/// A model of one Attention node named `att`; `inputs` are (name, elem type, dims).
fn model(inputs: &[(&str, i32, &[i64])], outputs: &[&str], attrs: Vec<AttributeProto>) -> Vec<u8> {
    use prost::Message;
    let node = NodeProto {
        name: Some("att".into()),
        op_type: Some("Attention".into()),
        input: inputs.iter().map(|(n, _, _)| n.to_string()).collect(),
        output: outputs.iter().map(|o| o.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    };
    let graph = GraphProto {
        name: Some("attention".into()),
        node: vec![node],
        input: inputs.iter().map(|(n, e, d)| value_info(n, *e, d)).collect(),
        output: outputs.iter().map(|o| ValueInfoProto { name: Some(o.to_string()), ..Default::default() }).collect(),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(23) }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

fn load(bytes: &[u8]) -> Result<Graph, String> {
    load_onnx_bytes(bytes, None, &LoadOptions::default()).map_err(|e| e.to_string())
}

fn f32s(shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape, v).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_f32().iter().copied().collect()
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
}

#[test]
fn causal_4d_attends_to_the_past_only() {
    let g = load(&model(
        &[("Q", FLOAT, &[1, 1, 2, 2]), ("K", FLOAT, &[1, 1, 2, 2]), ("V", FLOAT, &[1, 1, 2, 2])],
        &["Y"],
        vec![int_attr("is_causal", 1)],
    ))
    .unwrap();
    let zeros = f32s(&[1, 1, 2, 2], vec![0.0; 4]);
    let v = f32s(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let out = interp::run(&g, &[zeros.clone(), zeros, v]).unwrap();
    assert_eq!(out[0].shape(), &[1, 1, 2, 2]);
    // Equal scores: query 0 sees key 0 only, query 1 averages keys 0 and 1.
    close(&values(&out[0]), &[1.0, 2.0, 2.0, 3.0]);
}

#[test]
fn grouped_query_3d_with_present_key() {
    let g = load(&model(
        &[("Q", FLOAT, &[1, 1, 4]), ("K", FLOAT, &[1, 2, 2]), ("V", FLOAT, &[1, 2, 2])],
        &["Y", "present_key"],
        vec![int_attr("q_num_heads", 2), int_attr("kv_num_heads", 1)],
    ))
    .unwrap();
    let q = f32s(&[1, 1, 4], vec![0.0; 4]);
    let k = f32s(&[1, 2, 2], vec![5.0, 6.0, 7.0, 8.0]);
    let v = f32s(&[1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let out = interp::run(&g, &[q, k, v]).unwrap();
    assert_eq!(out[0].shape(), &[1, 1, 4]);
    close(&values(&out[0]), &[2.0, 3.0, 2.0, 3.0]);
    assert_eq!(out[1].shape(), &[1, 1, 2, 2]);
    close(&values(&out[1]), &[5.0, 6.0, 7.0, 8.0]);
}

#[test]
fn fully_masked_row_is_zero() {
    let g = load(&model(
        &[("Q", FLOAT, &[1, 1, 2, 2]), ("K", FLOAT, &[1, 1, 2, 2]), ("V", FLOAT, &[1, 1, 2, 2]), ("M", BOOL, &[2, 2])],
        &["Y"],
        vec![],
    ))
    .unwrap();
    let zeros = f32s(&[1, 1, 2, 2], vec![0.0; 4]);
    let v = f32s(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let m = Tensor::from_vec(&[2, 2], vec![false, false, false, true]).unwrap();
    let out = interp::run(&g, &[zeros.clone(), zeros, v, m]).unwrap();
    close(&values(&out[0]), &[0.0, 0.0, 3.0, 4.0]);
}

#[test]
fn bad_rank_is_one_error_naming_the_node() {
    let e = load(&model(&[("Q", FLOAT, &[2, 4]), ("K", FLOAT, &[2, 4]), ("V", FLOAT, &[2, 4])], &["Y"], vec![]))
        .unwrap_err();
    assert!(e.contains("'att'") && e.contains("3-D or all 4-D"), "{e}");
}

#[test]
fn absurd_causal_mask_is_one_error_naming_the_node() {
    // Q and K are small (4 MiB each), but the causal mask would be 2^20 x 2^20.
    let big: &[i64] = &[1, 1, 1 << 20, 1];
    let e = load(&model(
        &[("Q", FLOAT, big), ("K", FLOAT, big), ("V", FLOAT, big)],
        &["Y"],
        vec![int_attr("is_causal", 1)],
    ))
    .unwrap_err();
    assert!(e.contains("att") && e.contains("too large") && e.lines().count() == 1, "{e}");
}

#[test]
fn kv_heads_not_dividing_q_heads_is_one_error_naming_the_node() {
    let e = load(&model(
        &[("Q", FLOAT, &[1, 2, 6]), ("K", FLOAT, &[1, 2, 4]), ("V", FLOAT, &[1, 2, 4])],
        &["Y"],
        vec![int_attr("q_num_heads", 3), int_attr("kv_num_heads", 2)],
    ))
    .unwrap_err();
    assert!(e.contains("'att'") && e.contains("do not divide"), "{e}");
}

#[test]
fn hidden_size_not_divisible_by_heads_is_one_error_naming_the_node() {
    let e = load(&model(
        &[("Q", FLOAT, &[1, 2, 6]), ("K", FLOAT, &[1, 2, 6]), ("V", FLOAT, &[1, 2, 6])],
        &["Y"],
        vec![int_attr("q_num_heads", 4), int_attr("kv_num_heads", 4)],
    ))
    .unwrap_err();
    assert!(e.contains("'att'") && e.contains("not divisible"), "{e}");
}

#[test]
fn missing_heads_for_3d_is_one_error_naming_the_node() {
    let e =
        load(&model(&[("Q", FLOAT, &[1, 2, 6]), ("K", FLOAT, &[1, 2, 6]), ("V", FLOAT, &[1, 2, 6])], &["Y"], vec![]))
            .unwrap_err();
    assert!(e.contains("'att'") && e.contains("q_num_heads"), "{e}");
}

#[test]
fn symbolic_batch_keeps_a_symbolic_output_and_runs() {
    let g = load(&model(
        &[("Q", FLOAT, &[-1, 1, 4]), ("K", FLOAT, &[-1, 2, 2]), ("V", FLOAT, &[-1, 2, 2])],
        &["Y"],
        vec![int_attr("q_num_heads", 2), int_attr("kv_num_heads", 1), int_attr("is_causal", 1)],
    ))
    .unwrap();
    let y = g.ty(g.outputs[0]).shape.clone();
    assert_eq!(y.rank(), 3);
    assert_eq!(y.0[0].known(), None);
    assert_eq!((y.0[1].known(), y.0[2].known()), (Some(1), Some(4)));
    let q = f32s(&[2, 1, 4], vec![0.0; 8]);
    let k = f32s(&[2, 2, 2], vec![0.0; 8]);
    let v = f32s(&[2, 2, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let out = interp::run(&g, &[q, k, v]).unwrap();
    // One query against two keys, causal: it sees key 0 only.
    close(&values(&out[0]), &[1.0, 2.0, 1.0, 2.0, 5.0, 6.0, 5.0, 6.0]);
}
