//! Errors of the importers.

use thiserror::Error;

/// Why a model could not be imported.
#[derive(Debug, Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {msg}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        msg: String,
    },
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("{what} is not a valid ONNX protobuf ({msg})")]
    Decode {
        /// What was being decoded (file name).
        what: String,
        /// The decoder's message.
        msg: String,
    },
    /// The model is well-formed ONNX but uses something slmtvm does not support.
    #[error("node '{node}': unsupported operator {op} (domain '{domain}', opset {opset})")]
    UnsupportedOp {
        /// The node's name.
        node: String,
        /// The ONNX op_type.
        op: String,
        /// The op's domain.
        domain: String,
        /// The opset version in force for the domain.
        opset: i64,
    },
    /// A valid feature slmtvm does not support (dtype, opset, attribute value).
    #[error("{context}: unsupported: {msg}")]
    Unsupported {
        /// The node or tensor at fault.
        context: String,
        /// What is unsupported.
        msg: String,
    },
    /// A node's attribute is missing, mistyped or out of range.
    #[error("node '{node}': attribute '{attr}': {msg}")]
    Attribute {
        /// The node's name.
        node: String,
        /// The attribute's name.
        attr: String,
        /// What is wrong.
        msg: String,
    },
    /// A node is malformed (wrong input count, non-constant input that must be constant).
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        /// The node's name.
        node: String,
        /// The op_type.
        op: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor (initializer, input, output, value_info) is malformed.
    #[error("tensor '{name}': {msg}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor's data do not fit its dims and dtype.
    #[error("tensor '{name}': {source}")]
    TensorData {
        /// The tensor's name.
        name: String,
        /// How they differ.
        source: slmtvm_ir::DataShapeError,
    },
    /// An external-data reference is invalid or points outside the model's folder.
    #[error("tensor '{name}': external data: {msg}")]
    ExternalData {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The model is structurally invalid.
    #[error("model: {0}")]
    Model(String),
    /// The IR rejected the graph (shape inference, validation).
    #[error(transparent)]
    Ir(#[from] slmtvm_ir::Error),
}

impl Error {
    /// True when the model is valid but uses a feature slmtvm does not support (as opposed to
    /// a malformed model).
    pub fn is_unsupported(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedOp { .. }
                | Error::Unsupported { .. }
                | Error::Ir(slmtvm_ir::Error::Node { source: slmtvm_ir::OpError::Unsupported(_), .. })
        )
    }
}

/// Result with the importer's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
