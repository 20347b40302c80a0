//! Errors of the IR crate.

use thiserror::Error;

/// An error raised by an operator's shape inference or evaluation; the graph wraps it with the
/// node's name.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OpError {
    /// The inputs or attributes violate the operator's contract.
    #[error("{0}")]
    Invalid(String),
    /// A valid case this implementation does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Shorthand for an [`OpError::Invalid`].
pub fn invalid(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// Shorthand for an [`OpError::Unsupported`].
pub fn unsupported(msg: impl Into<String>) -> OpError {
    OpError::Unsupported(msg.into())
}

impl From<String> for OpError {
    fn from(s: String) -> OpError {
        OpError::Invalid(s)
    }
}

/// Data that do not make a tensor of the given shape ([`crate::Tensor::from_vec`],
/// [`crate::Tensor::from_le_bytes`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DataShapeError {
    /// The element count differs from the shape's.
    #[error("data has {have} elements but shape {shape:?} needs {need}")]
    Elements {
        /// Elements given.
        have: usize,
        /// The shape asked for.
        shape: Vec<usize>,
        /// Elements it needs.
        need: usize,
    },
    /// The byte count differs from the shape's at the dtype's size.
    #[error("data has {have} bytes but shape {shape:?} of {dtype} needs {need}")]
    Bytes {
        /// Bytes given.
        have: usize,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The element type.
        dtype: crate::DType,
        /// Bytes it needs.
        need: usize,
    },
    /// The shape's element or byte count does not fit in `usize`.
    #[error("shape {0:?} overflows")]
    Overflow(Vec<usize>),
}

/// A shape's or a dim's text form that does not parse ([`crate::Shape::parse`]).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ShapeParseError {
    /// Not written as `[d0, d1, ...]`.
    #[error("shape `{0}` must be written as [d0, d1, ...]")]
    NotBracketed(String),
    /// A bound (`seq<=N`) that is not a size.
    #[error("bad bound in dim `{0}`")]
    BadBound(String),
    /// Neither a size, nor a symbol, nor a polynomial of symbols.
    #[error("bad dim `{0}`: expected a size, a symbol name or a polynomial of symbols")]
    BadDim(String),
    /// A constant polynomial that is negative (`-1`).
    #[error("bad dim `{0}`: a constant must be a non-negative size")]
    Negative(String),
}

impl From<DataShapeError> for OpError {
    fn from(e: DataShapeError) -> OpError {
        OpError::Invalid(e.to_string())
    }
}

/// Errors of graph construction, inference, interpretation and the text form.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// An operator failed on a node.
    #[error("node '{node}' ({op}): {source}")]
    Node {
        /// The node's name.
        node: String,
        /// The operator's name.
        op: String,
        /// What went wrong.
        source: OpError,
    },
    /// A value or tensor is malformed.
    #[error("tensor '{name}': {msg}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What went wrong.
        msg: String,
    },
    /// The graph's structure is malformed (dangling reference, cycle, duplicate name).
    #[error("graph: {0}")]
    Graph(String),
    /// The text form could not be parsed.
    #[error("text form, line {line}: {msg}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What went wrong.
        msg: String,
    },
}

impl Error {
    /// A [`Error::Tensor`] error.
    pub fn tensor(name: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Tensor { name: name.into(), msg: msg.into() }
    }
}

/// Result with the IR crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
