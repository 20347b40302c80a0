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
