//! ONNX operators → IR operators. Each arm resolves the ONNX attribute defaults and opset
//! differences, so IR operators carry one meaning.

use super::Importer;
use super::attr::Attrs;
use super::proto::NodeProto;
use super::qlinear;
use crate::{Error, Result};
use slmtvm_ir::ops::*;
use slmtvm_ir::{DType, Op, Scalar, Tensor, ValueId};

/// What one ONNX node becomes.
pub(crate) enum Lowered {
    /// An operator with its (possibly rearranged) inputs.
    Op(Op, Vec<Option<ValueId>>),
    /// A constant (the `Constant` operator).
    Const(Tensor),
    /// A node decomposed into several IR nodes by this function, which defines its outputs.
    Expanded(super::Expand, Vec<Option<ValueId>>),
}

/// Every ONNX `ai.onnx` operator type the importer maps (the one list of them: `inspect`'s
/// unsupported-op report reads it through [`is_supported`]), with the opset versions at which
/// its definition changed (ONNX's `since_version`s, from
/// `onnx.defs.get_all_schemas_with_history()` of onnx 1.23.2). A node
/// in a model older than [`super::MIN_OPSET`] is accepted only when its operator has not
/// changed between that opset and opset 13, since the mappings implement opsets 13 and later.
pub const SINCE_VERSIONS: &[(&str, &[i64])] = &[
    ("Abs", &[1, 6, 13]),
    ("Add", &[1, 6, 7, 13, 14]),
    ("And", &[1, 7]),
    ("Attention", &[23, 24, 25]),
    ("AveragePool", &[1, 7, 10, 11, 19, 22]),
    ("BatchNormalization", &[1, 6, 7, 9, 14, 15]),
    ("Cast", &[1, 6, 9, 13, 19, 21, 23, 24, 25, 28]),
    ("CastLike", &[15, 19, 21, 23, 24, 25]),
    ("Clip", &[1, 6, 11, 12, 13]),
    ("Concat", &[1, 4, 11, 13]),
    ("Constant", &[1, 9, 11, 12, 13, 19, 21, 23, 24, 25]),
    ("ConstantOfShape", &[9, 20, 21, 23, 24, 25]),
    ("Conv", &[1, 11, 22]),
    ("ConvInteger", &[10]),
    ("Cos", &[7, 22]),
    ("CumSum", &[11, 14]),
    ("DequantizeLinear", &[10, 13, 19, 21, 23, 24, 25, 28]),
    ("Div", &[1, 6, 7, 13, 14]),
    ("DynamicQuantizeLinear", &[11]),
    ("Equal", &[1, 7, 11, 13, 19]),
    ("Erf", &[9, 13]),
    ("Exp", &[1, 6, 13]),
    ("Expand", &[8, 13]),
    ("Flatten", &[1, 9, 11, 13, 21, 23, 24, 25]),
    ("Gather", &[1, 11, 13]),
    ("GatherND", &[11, 12, 13]),
    ("Gelu", &[20]),
    ("Gemm", &[1, 6, 7, 9, 11, 13]),
    ("GlobalAveragePool", &[1, 22]),
    ("Greater", &[1, 7, 9, 13]),
    ("GreaterOrEqual", &[12, 16]),
    ("HardSigmoid", &[1, 6, 22]),
    ("Identity", &[1, 13, 14, 16, 19, 21, 23, 24, 25]),
    ("IsInf", &[10, 20]),
    ("IsNaN", &[9, 13, 20]),
    ("LayerNormalization", &[17]),
    ("Less", &[1, 7, 9, 13]),
    ("LessOrEqual", &[12, 16]),
    ("Log", &[1, 6, 13]),
    ("MatMul", &[1, 9, 13]),
    ("MatMulInteger", &[10]),
    ("Max", &[1, 6, 8, 12, 13]),
    ("MaxPool", &[1, 8, 10, 11, 12, 22]),
    ("Mean", &[1, 6, 8, 13]),
    ("Min", &[1, 6, 8, 12, 13]),
    ("Mod", &[10, 13, 28]),
    ("Mul", &[1, 6, 7, 13, 14]),
    ("Neg", &[1, 6, 13]),
    ("Not", &[1]),
    ("Or", &[1, 7]),
    ("Pow", &[1, 7, 12, 13, 15]),
    ("QLinearConv", &[10]),
    ("QLinearMatMul", &[10, 21]),
    ("QuantizeLinear", &[10, 13, 19, 21, 23, 24, 25, 28]),
    ("Range", &[11, 27]),
    ("Reciprocal", &[1, 6, 13]),
    ("ReduceL2", &[1, 11, 13, 18]),
    ("ReduceMax", &[1, 11, 12, 13, 18, 20]),
    ("ReduceMean", &[1, 11, 13, 18]),
    ("ReduceSum", &[1, 11, 13]),
    ("Relu", &[1, 6, 13, 14]),
    ("Reshape", &[1, 5, 13, 14, 19, 21, 23, 24, 25]),
    ("RMSNormalization", &[23]),
    ("RotaryEmbedding", &[23]),
    ("Shape", &[1, 13, 15, 19, 21, 23, 24, 25]),
    ("Shrink", &[9]),
    ("Sigmoid", &[1, 6, 13]),
    ("Sin", &[7, 22]),
    ("Size", &[1, 13, 19, 21, 23, 24, 25]),
    ("Slice", &[1, 10, 11, 13]),
    ("Softmax", &[1, 11, 13]),
    ("Split", &[1, 2, 11, 13, 18]),
    ("Sqrt", &[1, 6, 13]),
    ("Squeeze", &[1, 11, 13, 21, 23, 24, 25]),
    ("Sub", &[1, 6, 7, 13, 14]),
    ("Sum", &[1, 6, 8, 13]),
    ("Tanh", &[1, 6, 13]),
    ("Transpose", &[1, 13, 21, 23, 24, 25]),
    ("Trilu", &[14]),
    ("Unsqueeze", &[1, 11, 13, 21, 23, 24, 25]),
    ("Where", &[9, 16]),
];

/// The version of `op` in force at `opset`.
fn version_in_force(op: &str, opset: i64) -> Option<i64> {
    let (_, vs) = SINCE_VERSIONS.iter().find(|(o, _)| *o == op)?;
    vs.iter().copied().filter(|&v| v <= opset).max()
}

/// The operators of ONNX Runtime's `com.microsoft` domain that are imported, with the
/// versions of their definitions (every one of them is imported).
pub const MICROSOFT_VERSIONS: &[(&str, &[i64])] = &[
    ("MatMulNBits", &[1]),
    ("QGemm", &[1]),
    ("QLinearAdd", &[1]),
    ("QLinearConcat", &[1]),
    ("QLinearGlobalAveragePool", &[1]),
    ("QLinearLeakyRelu", &[1]),
    ("QLinearMul", &[1]),
    ("QLinearSigmoid", &[1]),
    ("QLinearSoftmax", &[1]),
];

/// True when `op_type` in `domain` is supported.
pub fn is_supported(domain: &str, op_type: &str) -> bool {
    ((domain.is_empty() || domain == "ai.onnx") && mapped(op_type))
        || (domain == "com.microsoft" && MICROSOFT_VERSIONS.iter().any(|(o, _)| *o == op_type))
}

/// True when the importer maps `op_type` (an `ai.onnx` operator).
fn mapped(op_type: &str) -> bool {
    SINCE_VERSIONS.iter().any(|(o, _)| *o == op_type)
}

fn op(o: Op, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    Ok(Lowered::Op(o, ins))
}

/// Input `i` must be a constant integer tensor (axes, split sizes); returns its values.
fn const_ints(
    imp: &Importer,
    node: &str,
    op_type: &str,
    ins: &[Option<ValueId>],
    i: usize,
    what: &str,
) -> Result<Option<Vec<i64>>> {
    let Some(Some(v)) = ins.get(i) else { return Ok(None) };
    let t = imp.const_of(Some(*v)).ok_or_else(|| Error::Unsupported {
        context: format!("node '{node}'"),
        msg: format!("{op_type} with a non-constant '{what}' input"),
    })?;
    t.to_i64_vec().map(Some).map_err(|m| Error::Node {
        node: node.into(),
        op: op_type.into(),
        msg: format!("'{what}' input: {m}"),
    })
}

fn auto_pad(a: &Attrs) -> Result<AutoPad> {
    Ok(match a.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") => AutoPad::NotSet,
        Some("SAME_UPPER") => AutoPad::SameUpper,
        Some("SAME_LOWER") => AutoPad::SameLower,
        Some("VALID") => AutoPad::Valid,
        Some(other) => {
            return Err(Error::Attribute {
                node: String::new(),
                attr: "auto_pad".into(),
                msg: format!("unknown value '{other}'"),
            });
        }
    })
}

/// Maps one node. `ins` are its inputs with trailing absent ones removed.
pub(crate) fn map_node(
    imp: &Importer,
    n: &NodeProto,
    name: &str,
    a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<Lowered> {
    let ty = n.op_type();
    if n.domain() == "com.microsoft" && is_supported(n.domain(), ty) {
        return map_microsoft(name, ty, a, ins);
    }
    let opset = check_domain_and_version(imp, n, name)?;
    let unary = |u: UnaryOp| op(Op::Unary(u), ins.clone());
    let binary = |b: BinaryOp| op(Op::Binary(b), ins.clone());
    match ty {
        "Identity" => unary(UnaryOp::Identity),
        "Neg" => unary(UnaryOp::Neg),
        "Abs" => unary(UnaryOp::Abs),
        "Sqrt" => unary(UnaryOp::Sqrt),
        "Reciprocal" => unary(UnaryOp::Reciprocal),
        "Exp" => unary(UnaryOp::Exp),
        "Log" => unary(UnaryOp::Log),
        "Erf" => unary(UnaryOp::Erf),
        "Tanh" => unary(UnaryOp::Tanh),
        "Sin" => unary(UnaryOp::Sin),
        "Cos" => unary(UnaryOp::Cos),
        "Sigmoid" => unary(UnaryOp::Sigmoid),
        "Relu" => unary(UnaryOp::Relu),
        "Not" => unary(UnaryOp::Not),
        "Gelu" => unary(gelu(a, name)?),
        "HardSigmoid" => unary(hard_sigmoid(a)?),
        "Add" => binary(BinaryOp::Add),
        "Sub" => binary(BinaryOp::Sub),
        "Mul" => binary(BinaryOp::Mul),
        "Div" => binary(BinaryOp::Div),
        "Pow" => binary(BinaryOp::Pow),
        "Equal" => binary(BinaryOp::Equal),
        "Less" => binary(BinaryOp::Less),
        "LessOrEqual" => binary(BinaryOp::LessOrEqual),
        "Greater" => binary(BinaryOp::Greater),
        "GreaterOrEqual" => binary(BinaryOp::GreaterOrEqual),
        "And" => binary(BinaryOp::And),
        "Or" => binary(BinaryOp::Or),
        "Mod" => binary(BinaryOp::Mod { fmod: a.flag_or("fmod", false)? }),
        "Max" | "Min" | "Sum" | "Mean" => Ok(Lowered::Expanded(variadic, ins)),
        "IsNaN" => op(Op::FloatClass(FloatClass::Nan), ins),
        "IsInf" => is_inf(a, ins),
        "Clip" => op(Op::Clip(Clip {}), ins),
        "Where" => op(Op::Where(Where {}), ins),
        "Cast" => cast(a, name, ins),
        "CastLike" => cast_like(imp, a, name, ins),
        "MatMul" => op(Op::MatMul(MatMul {}), ins),
        "Gemm" => gemm(a, ins),
        "MatMulInteger" => op(Op::MatMulInteger(MatMulInteger {}), ins),
        "QLinearMatMul" => Ok(Lowered::Expanded(qlinear::qlinear_matmul, ins)),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceL2" => reduce(imp, name, ty, opset, a, ins),
        "Softmax" => op(Op::Softmax(Softmax { axis: a.int_or("axis", -1)? }), ins),
        "LayerNormalization" => layer_norm(a, name, ins),
        "BatchNormalization" => batch_norm(a, name, ins),
        "Conv" => op(Op::Conv(conv_attrs(a, name)?), ins),
        "ConvInteger" => op(Op::ConvInteger(ConvInteger { conv: conv_attrs(a, name)? }), ins),
        "QLinearConv" => Ok(Lowered::Expanded(qlinear::qlinear_conv, ins)),
        "MaxPool" | "AveragePool" => pool(n, name, ty, a, ins),
        "GlobalAveragePool" => op(Op::GlobalAveragePool(GlobalAveragePool {}), ins),
        "QuantizeLinear" => quantize_linear(imp, name, a, ins),
        "DequantizeLinear" => dequantize_linear(imp, name, a, ins),
        "DynamicQuantizeLinear" => op(Op::DynamicQuantizeLinear(DynamicQuantizeLinear {}), ins),
        "Reshape" => op(Op::Reshape(Reshape { allowzero: a.flag_or("allowzero", false)? }), ins),
        "Flatten" => op(Op::Flatten(Flatten { axis: a.int_or("axis", 1)? }), ins),
        "Squeeze" => squeeze(imp, name, ty, ins),
        "Unsqueeze" => unsqueeze(imp, name, ty, ins),
        "Transpose" => op(Op::Transpose(Transpose { perm: a.usizes("perm")? }), ins),
        "Concat" => concat(a, ins),
        "Split" => split(imp, n, name, ty, a, ins),
        "Slice" => op(Op::Slice(Slice {}), ins),
        "Gather" => op(Op::Gather(Gather { axis: a.int_or("axis", 0)? }), ins),
        "Expand" => op(Op::Expand(Expand {}), ins),
        "Shape" => op(Op::Shape(ShapeOf { start: a.int_or("start", 0)?, end: a.int("end")? }), ins),
        "Size" => op(Op::Size(Size {}), ins),
        "Range" => op(Op::Range(Range {}), ins),
        "ConstantOfShape" => constant_of_shape(imp, name, a, ins),
        "Attention" => Ok(Lowered::Expanded(super::attention::import, ins)),
        "RMSNormalization" => Ok(Lowered::Expanded(super::rms_norm::import, ins)),
        "RotaryEmbedding" => Ok(Lowered::Expanded(super::rotary::import, ins)),
        "GatherND" => Ok(Lowered::Expanded(super::gather_nd::import, ins)),
        "CumSum" => cum_sum(imp, name, ty, a, ins),
        "Trilu" => op(Op::Trilu(Trilu { upper: a.flag_or("upper", true)? }), ins),
        "Shrink" => op(Op::Shrink(Shrink { bias: a.float_or("bias", 0.0)?, lambd: a.float_or("lambd", 0.5)? }), ins),
        "Constant" => constant(imp, a, name).map(Lowered::Const),
        _ => Err(Error::UnsupportedOp { node: name.into(), op: ty.into(), domain: n.domain().into(), opset }),
    }
}

/// Checks that node `n` is in the `ai.onnx` domain and that the model's opset has the operator
/// definition the mapping implements; returns that opset.
fn check_domain_and_version(imp: &Importer, n: &NodeProto, name: &str) -> Result<i64> {
    let ty = n.op_type();
    let domain = n.domain();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(Error::UnsupportedOp {
            node: name.into(),
            op: ty.into(),
            domain: domain.into(),
            opset: imp.domain_version(domain).unwrap_or(0),
        });
    }
    let opset = imp.opset.ok_or_else(|| {
        Error::Model(format!("node '{name}' uses the ai.onnx domain, but the model imports no ai.onnx opset"))
    })?;
    if opset < super::MIN_OPSET && mapped(ty) && version_in_force(ty, opset) != version_in_force(ty, super::MIN_OPSET) {
        return Err(Error::Unsupported {
            context: format!("node '{name}'"),
            msg: format!(
                "{ty} as defined at opset {opset} (version {}); slmtvm implements the opset {}+ definition",
                version_in_force(ty, opset).unwrap_or(0),
                super::MIN_OPSET
            ),
        });
    }
    Ok(opset)
}

/// Maps a `com.microsoft` node (one of [`MICROSOFT_VERSIONS`]).
fn map_microsoft(name: &str, ty: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let size = |attr: &str| -> Result<usize> {
        let v = a.required(attr, a.int(attr)?)?;
        usize::try_from(v).map_err(|_| Error::Attribute {
            node: name.into(),
            attr: attr.into(),
            msg: format!("must not be negative, got {v}"),
        })
    };
    match ty {
        "MatMulNBits" => {
            let bits = match a.int("bits")? {
                None => 4,
                Some(_) => size("bits")?,
            };
            let nb = MatMulNBits { k: size("K")?, n: size("N")?, bits, block_size: size("block_size")? };
            // accuracy_level lets ONNX Runtime compute in lower precision (4: activations
            // quantized to int8); the operator here is the exact dequantized product whatever
            // it says, which is ONNX Runtime's own result at levels 0 and 1.
            let _ = a.int("accuracy_level")?;
            op(Op::MatMulNBits(nb), ins)
        }
        "QGemm" => Ok(Lowered::Expanded(qlinear::qgemm, ins)),
        "QLinearAdd" => Ok(Lowered::Expanded(qlinear::qlinear_add, ins)),
        "QLinearMul" => Ok(Lowered::Expanded(qlinear::qlinear_mul, ins)),
        "QLinearSoftmax" => Ok(Lowered::Expanded(qlinear::qlinear_softmax, ins)),
        "QLinearConcat" => Ok(Lowered::Expanded(qlinear::qlinear_concat, ins)),
        "QLinearSigmoid" => Ok(Lowered::Expanded(qlinear::qlinear_sigmoid, ins)),
        "QLinearLeakyRelu" => Ok(Lowered::Expanded(qlinear::qlinear_leaky_relu, ins)),
        "QLinearGlobalAveragePool" => Ok(Lowered::Expanded(qlinear::qlinear_global_average_pool, ins)),
        _ => Err(Error::UnsupportedOp { node: name.into(), op: ty.into(), domain: "com.microsoft".into(), opset: 1 }),
    }
}

// Elementwise.

/// `Gelu`: the `approximate` attribute ("none" or "tanh").
fn gelu(a: &Attrs, name: &str) -> Result<UnaryOp> {
    let tanh_approx = match a.string("approximate")?.as_deref() {
        None | Some("none") => false,
        Some("tanh") => true,
        Some(o) => {
            return Err(Error::Attribute {
                node: name.into(),
                attr: "approximate".into(),
                msg: format!("unknown value '{o}'"),
            });
        }
    };
    Ok(UnaryOp::Gelu { tanh_approx })
}

/// `HardSigmoid` with its `alpha` and `beta` defaults.
fn hard_sigmoid(a: &Attrs) -> Result<UnaryOp> {
    Ok(UnaryOp::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? })
}

/// `IsInf`, detecting both signs by default.
fn is_inf(a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    op(
        Op::FloatClass(FloatClass::Inf {
            positive: a.flag_or("detect_positive", true)?,
            negative: a.flag_or("detect_negative", true)?,
        }),
        ins,
    )
}

/// `Cast` to the required `to` dtype.
fn cast(a: &Attrs, name: &str, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let to = a.required("to", a.int("to")?)?;
    let to = super::tensor::dtype_from_onnx(to as i32, &format!("{name}: Cast target"))?;
    op(Op::Cast(Cast { to, saturate: a.flag_or("saturate", true)? }), ins)
}

/// `CastLike`: a Cast to the dtype of the second input (`target_type`, typed at import; its
/// values are not read).
fn cast_like(imp: &Importer, a: &Attrs, name: &str, mut ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let like = ins.get(1).copied().flatten().ok_or_else(|| Error::Node {
        node: name.into(),
        op: "CastLike".into(),
        msg: "input 1 (target_type) is required".into(),
    })?;
    let to = imp.g.ty(like).dtype;
    ins.truncate(1);
    op(Op::Cast(Cast { to, saturate: a.flag_or("saturate", true)? }), ins)
}

// Linear algebra and reductions.

/// `Gemm` with its `alpha`, `beta` and transpose flags.
fn gemm(a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    op(
        Op::Gemm(Gemm {
            alpha: a.float_or("alpha", 1.0)?,
            beta: a.float_or("beta", 1.0)?,
            trans_a: a.flag_or("transA", false)?,
            trans_b: a.flag_or("transB", false)?,
        }),
        ins,
    )
}

/// `ReduceMean`, `ReduceSum`, `ReduceMax` and `ReduceL2` (`ty`), their axes from the attribute
/// or the input as `opset` has them.
fn reduce(
    imp: &Importer,
    name: &str,
    ty: &str,
    opset: i64,
    a: &Attrs,
    mut ins: Vec<Option<ValueId>>,
) -> Result<Lowered> {
    let kind = match ty {
        "ReduceMean" => ReduceKind::Mean,
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMax" => ReduceKind::Max,
        _ => ReduceKind::L2,
    };
    let keepdims = a.flag_or("keepdims", true)?;
    // Axes moved from attribute to input in opset 13 (ReduceSum) and 18 (the rest).
    let axes_as_input = ty == "ReduceSum" || opset >= 18;
    let axes = if axes_as_input {
        let noop = a.flag_or("noop_with_empty_axes", false)?;
        let axes = const_ints(imp, name, ty, &ins, 1, "axes")?.filter(|v| !v.is_empty());
        if axes.is_none() && noop {
            // The data input alone (none: the Identity's arity check names the node).
            ins.truncate(1);
            return op(Op::Unary(UnaryOp::Identity), ins);
        }
        axes
    } else {
        a.ints("axes")?.filter(|v| !v.is_empty())
    };
    ins.truncate(1);
    op(Op::Reduce(Reduce { kind, axes, keepdims }), ins)
}

// Normalization.

/// `LayerNormalization`; only `stash_type` 1 (float32) is supported.
fn layer_norm(a: &Attrs, name: &str, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let stash = a.int_or("stash_type", 1)?;
    if stash != 1 {
        return Err(Error::Unsupported {
            context: format!("node '{name}'"),
            msg: format!("LayerNormalization stash_type {stash}"),
        });
    }
    op(Op::LayerNorm(LayerNorm { axis: a.int_or("axis", -1)?, epsilon: a.float_or("epsilon", 1e-5)? }), ins)
}

/// `BatchNormalization` in inference mode.
fn batch_norm(a: &Attrs, name: &str, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let _ = a.float_or("momentum", 0.9)?;
    if a.flag_or("training_mode", false)? {
        return Err(Error::Unsupported {
            context: format!("node '{name}'"),
            msg: "BatchNormalization in training mode".into(),
        });
    }
    op(Op::BatchNorm(BatchNorm { epsilon: a.float_or("epsilon", 1e-5)? }), ins)
}

// Convolution and pooling.

/// `Conv` with a positive `group`.
/// The attributes of `Conv`, `ConvInteger` and `QLinearConv`.
pub(crate) fn conv_attrs(a: &Attrs, name: &str) -> Result<Conv> {
    Ok(Conv {
        group: usize::try_from(a.int_or("group", 1)?).ok().filter(|&g| g > 0).ok_or_else(|| Error::Attribute {
            node: name.into(),
            attr: "group".into(),
            msg: "must be positive".into(),
        })?,
        kernel_shape: a.usizes("kernel_shape")?,
        strides: a.usizes("strides")?,
        dilations: a.usizes("dilations")?,
        pads: a.usizes("pads")?,
        auto_pad: auto_pad(a).map_err(|e| with_node(e, name))?,
    })
}

/// `MaxPool` or `AveragePool` (`ty`); MaxPool without `storage_order` 1 or its Indices output.
fn pool(n: &NodeProto, name: &str, ty: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let kind = if ty == "MaxPool" { PoolKind::Max } else { PoolKind::Average };
    if kind == PoolKind::Max {
        if a.int_or("storage_order", 0)? != 0 {
            return Err(Error::Unsupported {
                context: format!("node '{name}'"),
                msg: "MaxPool storage_order 1".into(),
            });
        }
        if n.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(Error::Unsupported {
                context: format!("node '{name}'"),
                msg: "MaxPool's Indices output".into(),
            });
        }
    }
    let kernel_shape = a.required("kernel_shape", a.usizes("kernel_shape")?)?;
    let count_include_pad = if kind == PoolKind::Average { a.flag_or("count_include_pad", false)? } else { false };
    op(
        Op::Pool(Pool {
            kind,
            kernel_shape,
            strides: a.usizes("strides")?,
            dilations: a.usizes("dilations")?,
            pads: a.usizes("pads")?,
            auto_pad: auto_pad(a).map_err(|e| with_node(e, name))?,
            ceil_mode: a.flag_or("ceil_mode", false)?,
            count_include_pad,
        }),
        ins,
    )
}

// Quantization.

/// `QuantizeLinear` to int8 or uint8 (from `output_dtype`, else the zero point's dtype, else uint8).
fn quantize_linear(imp: &Importer, name: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let zp_dtype = ins.get(2).copied().flatten().map(|z| imp.g.ty(z).dtype);
    let attr_dtype = match a.int_or("output_dtype", 0)? {
        0 => None,
        code => Some(super::tensor::dtype_from_onnx(code as i32, &format!("{name}: output_dtype"))?),
    };
    let output_dtype = attr_dtype.or(zp_dtype).unwrap_or(DType::U8);
    if !matches!(output_dtype, DType::I8 | DType::U8) {
        return Err(Error::Unsupported {
            context: format!("node '{name}'"),
            msg: format!("QuantizeLinear to {output_dtype}"),
        });
    }
    let _ = a.flag_or("saturate", true)?;
    let _ = a.int("precision")?;
    op(
        Op::QuantizeLinear(QuantizeLinear {
            axis: a.int_or("axis", 1)?,
            block_size: block_size(a, name)?,
            output_dtype,
        }),
        ins,
    )
}

/// `DequantizeLinear`; an `output_dtype` must be the scale's dtype.
fn dequantize_linear(imp: &Importer, name: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    if let Some(code) = a.int("output_dtype")?.filter(|&c| c != 0) {
        let want = super::tensor::dtype_from_onnx(code as i32, &format!("{name}: output_dtype"))?;
        let scale = ins.get(1).copied().flatten().map(|s| imp.g.ty(s).dtype);
        if scale != Some(want) {
            return Err(Error::Unsupported {
                context: format!("node '{name}'"),
                msg: "DequantizeLinear output_dtype other than the scale's".into(),
            });
        }
    }
    op(Op::DequantizeLinear(DequantizeLinear { axis: a.int_or("axis", 1)?, block_size: block_size(a, name)? }), ins)
}

// Shape and movement.

/// `Squeeze` with its optional constant `axes` input.
fn squeeze(imp: &Importer, name: &str, ty: &str, mut ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let axes = const_ints(imp, name, ty, &ins, 1, "axes")?;
    ins.truncate(1);
    op(Op::Squeeze(Squeeze { axes }), ins)
}

/// `Unsqueeze` with its required constant `axes` input.
fn unsqueeze(imp: &Importer, name: &str, ty: &str, mut ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let axes = const_ints(imp, name, ty, &ins, 1, "axes")?.ok_or_else(|| Error::Node {
        node: name.into(),
        op: ty.into(),
        msg: "the 'axes' input is required".into(),
    })?;
    ins.truncate(1);
    op(Op::Unsqueeze(Unsqueeze { axes }), ins)
}

/// `Concat` along the required `axis`; of one input, an Identity.
fn concat(a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let axis = a.required("axis", a.int("axis")?)?;
    // A Concat of one input is that input (the exporters emit it building KV caches);
    // as an Identity it becomes a view.
    if ins.len() == 1 {
        return op(Op::Unary(slmtvm_ir::ops::UnaryOp::Identity), ins);
    }
    op(Op::Concat(Concat { axis }), ins)
}

/// `Split` by the constant `split` sizes, else into `num_outputs` (or as many as `n` has) parts.
fn split(
    imp: &Importer,
    n: &NodeProto,
    name: &str,
    ty: &str,
    a: &Attrs,
    mut ins: Vec<Option<ValueId>>,
) -> Result<Lowered> {
    let sizes = const_ints(imp, name, ty, &ins, 1, "split")?
        .map(|v| {
            v.iter()
                .map(|&x| {
                    usize::try_from(x).map_err(|_| Error::Node {
                        node: name.into(),
                        op: ty.into(),
                        msg: format!("negative split size {x}"),
                    })
                })
                .collect::<Result<Vec<usize>>>()
        })
        .transpose()?;
    let attr_n = a.int("num_outputs")?;
    let num_outputs = match (&sizes, attr_n) {
        (Some(s), _) => s.len(),
        (None, Some(k)) => usize::try_from(k).ok().filter(|&k| k > 0).ok_or_else(|| Error::Attribute {
            node: name.into(),
            attr: "num_outputs".into(),
            msg: format!("must be positive, got {k}"),
        })?,
        (None, None) => n.output.len(),
    };
    ins.truncate(1);
    op(Op::Split(Split { axis: a.int_or("axis", 0)?, sizes, num_outputs }), ins)
}

// Generators and scans.

/// `ConstantOfShape` filled with its one-element `value` (float32 0 by default).
fn constant_of_shape(imp: &Importer, name: &str, a: &Attrs, ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let value = match a.tensor("value", imp.base_dir)? {
        None => Scalar::F32(0.0),
        Some(t) => {
            if t.len() != 1 {
                return Err(Error::Attribute {
                    node: name.into(),
                    attr: "value".into(),
                    msg: format!("must hold one element, holds {}", t.len()),
                });
            }
            Scalar::first_of(&t).unwrap_or(Scalar::F32(0.0))
        }
    };
    op(Op::ConstantOfShape(ConstantOfShape { value }), ins)
}

/// `CumSum` along its constant one-integer `axis` input.
fn cum_sum(imp: &Importer, name: &str, ty: &str, a: &Attrs, mut ins: Vec<Option<ValueId>>) -> Result<Lowered> {
    let axis = match const_ints(imp, name, ty, &ins, 1, "axis")?.as_deref() {
        Some(&[axis]) => axis,
        _ => {
            return Err(Error::Node {
                node: name.into(),
                op: ty.into(),
                msg: "the 'axis' input must be a constant holding one integer".into(),
            });
        }
    };
    let (exclusive, reverse) = (a.flag_or("exclusive", false)?, a.flag_or("reverse", false)?);
    ins.truncate(1);
    op(Op::CumSum(CumSum { axis, exclusive, reverse }), ins)
}

/// Max, Min, Sum or Mean of one or more inputs as a fold of Max, Min or Add (Mean then divides
/// by the input count, in the inputs' float dtype).
fn variadic(
    imp: &mut Importer,
    n: &super::proto::NodeProto,
    name: &str,
    _a: &Attrs,
    ins: Vec<Option<ValueId>>,
) -> Result<()> {
    let mut b = super::subgraph::Sub::new(imp, n, name);
    let out = match n.output.as_slice() {
        [o] if !o.is_empty() => o.clone(),
        _ => return Err(b.err("must have exactly one output")),
    };
    let vals = ins.iter().map(|v| v.ok_or_else(|| b.err("inputs may not be absent"))).collect::<Result<Vec<_>>>()?;
    let Some((&first, rest)) = vals.split_first() else { return Err(b.err("needs at least one input")) };
    let fold = match n.op_type() {
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    };
    let mean = n.op_type() == "Mean" && !rest.is_empty();
    let count = if mean {
        let k = vals.len() as f32;
        Some(match b.dtype(first) {
            DType::F32 => Tensor::scalar(k),
            DType::F16 => Tensor::scalar(half::f16::from_f32(k)),
            dt => return Err(b.err(format!("Mean needs float inputs, got {dt}"))),
        })
    } else {
        None
    };
    let Some((&last, middle)) = rest.split_last() else {
        return b.output(Op::Unary(UnaryOp::Identity), vec![first], &out);
    };
    let mut acc = first;
    for &v in middle {
        acc = b.binary(fold.clone(), acc, v)?;
    }
    match count {
        None => b.output(Op::Binary(fold), vec![acc, last], &out),
        Some(c) => {
            let sum = b.binary(fold, acc, last)?;
            let c = b.konst(c);
            b.output(Op::Binary(BinaryOp::Div), vec![sum, c], &out)
        }
    }
}

fn block_size(a: &Attrs, name: &str) -> Result<usize> {
    let b = a.int_or("block_size", 0)?;
    usize::try_from(b).map_err(|_| Error::Attribute {
        node: name.into(),
        attr: "block_size".into(),
        msg: format!("must be non-negative, got {b}"),
    })
}

fn with_node(e: Error, name: &str) -> Error {
    match e {
        Error::Attribute { attr, msg, .. } => Error::Attribute { node: name.into(), attr, msg },
        e => e,
    }
}

/// The value of a `Constant` node.
fn constant(imp: &Importer, a: &Attrs, name: &str) -> Result<Tensor> {
    let bad = |attr: &str, m: String| Error::Attribute { node: name.into(), attr: attr.into(), msg: m };
    if let Some(t) = a.tensor("value", imp.base_dir)? {
        return Ok(t);
    }
    if let Some(f) = a.floats("value_floats")? {
        return Tensor::from_vec(&[f.len()], f).map_err(|m| bad("value_floats", m.to_string()));
    }
    if let Some(v) = a.ints("value_ints")? {
        return Tensor::from_vec(&[v.len()], v).map_err(|m| bad("value_ints", m.to_string()));
    }
    if a.has("value_float") {
        return Ok(Tensor::scalar(a.float_or("value_float", 0.0)?));
    }
    if let Some(v) = a.int("value_int")? {
        return Ok(Tensor::scalar(v));
    }
    for unsupported in ["value_string", "value_strings", "sparse_value"] {
        if a.has(unsupported) {
            return Err(Error::Unsupported {
                context: format!("node '{name}'"),
                msg: format!("Constant with {unsupported}"),
            });
        }
    }
    Err(bad("value", "a Constant needs one of value, value_float(s), value_int(s)".into()))
}

#[cfg(test)]
mod tests {
    use super::super::proto::{
        GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto, ValueInfoProto, tensor_shape_proto,
        type_proto,
    };
    use crate::{LoadOptions, load_onnx_bytes};
    use prost::Message;
    use slmtvm_ir::{Graph, Op, ops::BinaryOp};

    /// The one list of supported operators and the mapping agree: every listed operator
    /// reaches a mapping (a one-node model of it fails, if at all, on its inputs or attributes,
    /// never as an unknown operator), and the list is sorted without repeats.
    #[test]
    fn every_listed_operator_is_mapped() {
        for (op, _) in super::SINCE_VERSIONS {
            for n in 1..=3 {
                if let Err(crate::Error::UnsupportedOp { .. }) = load(op, n, 1) {
                    panic!("{op} is listed but not mapped");
                }
            }
        }
        let names: Vec<String> = super::SINCE_VERSIONS.iter().map(|(o, _)| o.to_ascii_lowercase()).collect();
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "SINCE_VERSIONS is sorted (case-insensitively), without repeats"
        );
        assert!(!super::is_supported("", "NoSuchOp") && !super::is_supported("com.example", "Add"));
        assert!(super::is_supported("ai.onnx", "CumSum"));
    }

    /// A float input of shape `[3]` (ONNX elem type `elem`).
    fn input(name: &str, elem: i32) -> ValueInfoProto {
        let dim = tensor_shape_proto::Dimension {
            value: Some(tensor_shape_proto::dimension::Value::DimValue(3)),
            ..Default::default()
        };
        let shape = super::super::proto::TensorShapeProto { dim: vec![dim] };
        let tensor = type_proto::Tensor { elem_type: Some(elem), shape: Some(shape) };
        let ty = TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() };
        ValueInfoProto { name: Some(name.into()), r#type: Some(ty), ..Default::default() }
    }

    /// A model of one `op_type` node over inputs `x0..x{n-1}` of elem type `elem`.
    fn load(op_type: &str, n: usize, elem: i32) -> crate::Result<Graph> {
        let names: Vec<String> = (0..n).map(|i| format!("x{i}")).collect();
        let node = NodeProto {
            input: names.clone(),
            output: vec!["y".into()],
            name: Some("v".into()),
            op_type: Some(op_type.into()),
            ..Default::default()
        };
        let graph = GraphProto {
            node: vec![node],
            input: names.iter().map(|s| input(s, elem)).collect(),
            output: vec![ValueInfoProto { name: Some("y".into()), ..Default::default() }],
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(graph),
            ..Default::default()
        };
        load_onnx_bytes(&model.encode_to_vec(), None, &LoadOptions::default())
    }

    fn ops(g: &Graph) -> Vec<String> {
        g.nodes.iter().map(|n| n.op.kind_name().to_string()).collect()
    }

    #[test]
    fn variadic_ops_fold_onto_binary_nodes() {
        let g = load("Max", 3, 1).unwrap();
        assert_eq!(ops(&g), ["Max", "Max"]);
        // Nodes are named after the ONNX node ("v/Max2"); the last one computes its output.
        assert!(g.nodes.iter().all(|n| n.name.starts_with("v/")), "{:?}", g.nodes);
        assert_eq!(g.value(g.nodes[1].outputs[0]).name, "y");
        assert_eq!(g.nodes[1].inputs[0], Some(g.nodes[0].outputs[0]));
        assert_eq!(ops(&load("Sum", 1, 1).unwrap()), ["Identity"]);
        assert_eq!(ops(&load("Min", 2, 6).unwrap()), ["Min"]);
        let g = load("Mean", 3, 10).unwrap();
        assert_eq!(ops(&g), ["Add", "Add", "Div"]);
        assert!(matches!(g.nodes[2].op, Op::Binary(BinaryOp::Div)));
        let e = load("Mean", 2, 6).expect_err("integer Mean is refused").to_string();
        assert!(e.contains("'v'") && e.contains("float"), "{e}");
        assert!(load("Max", 0, 1).is_err());
    }

    #[test]
    fn cumsum_needs_a_constant_axis() {
        let e = load("CumSum", 2, 1).expect_err("a graph-input axis is refused").to_string();
        assert!(e.contains("'v'") && e.contains("axis"), "{e}");
    }

    #[test]
    fn a_noop_reduce_without_inputs_is_an_error_naming_the_node() {
        use crate::onnx::build::{import_err, int_attr};
        let e = import_err("ReduceSum", vec![], vec![int_attr("noop_with_empty_axes", 1)]);
        assert!(e.contains("'n0'"), "{e}");
    }

    #[test]
    fn castlike_casts_to_the_second_inputs_dtype() {
        use crate::onnx::build::{import_err, import_one, value_info};
        use slmtvm_ir::ops::Cast;
        // FLOAT (1) like an INT32 (6) tensor of another shape: a Cast to i32 of x's shape.
        let g = import_one("CastLike", vec![value_info("x", 1, &[2, 3]), value_info("like", 6, &[5])], vec![]).unwrap();
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].op, Op::Cast(Cast { to: slmtvm_ir::DType::I32, saturate: true }));
        assert_eq!(g.nodes[0].inputs.len(), 1);
        assert_eq!(g.ty(g.outputs[0]).to_string(), "i32[2, 3]");
        let e = import_err("CastLike", vec![value_info("x", 1, &[2])], vec![]);
        assert!(e.contains("'n0'") && e.contains("target_type"), "{e}");
    }

    #[test]
    fn matmulnbits_imports_from_com_microsoft_and_bad_ones_are_named() {
        use crate::onnx::build::{import_one_in, int_attr, value_info};
        // A [2, 32] f32, B [3 columns, 1 block, 16 bytes] u8, 3 scales: Y [2, 3].
        let ins = |k: i64| vec![value_info("a", 1, &[2, k]), value_info("b", 2, &[3, 1, 16]), value_info("s", 1, &[3])];
        let attrs = |k: i64| vec![int_attr("K", k), int_attr("N", 3), int_attr("bits", 4), int_attr("block_size", 32)];
        let g = import_one_in("com.microsoft", "MatMulNBits", ins(32), attrs(32)).unwrap();
        assert_eq!(
            g.nodes[0].op,
            Op::MatMulNBits(slmtvm_ir::ops::MatMulNBits { k: 32, n: 3, bits: 4, block_size: 32 })
        );
        assert_eq!(g.ty(g.outputs[0]).to_string(), "f32[2, 3]");
        let e = import_one_in("com.microsoft", "MatMulNBits", ins(32), attrs(-1)).unwrap_err().to_string();
        assert!(e.contains("'n0'") && e.contains("'K'") && e.contains("negative"), "{e}");
        // B's bytes disagree with K = 64 (two blocks per column).
        let e = import_one_in("com.microsoft", "MatMulNBits", ins(64), attrs(64)).unwrap_err().to_string();
        assert!(e.contains("n0") && e.contains("B must be u8"), "{e}");
        let e = import_one_in("com.microsoft", "QAttention", ins(32), vec![]).unwrap_err().to_string();
        assert!(e.contains("n0") && e.contains("QAttention") && e.contains("com.microsoft"), "{e}");
    }
}
