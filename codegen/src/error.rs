//! Errors of the code generator.

use thiserror::Error;

/// Why a graph could not be compiled.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A tensor's shape is not static.
    #[error("tensor '{name}': shape {shape} is not static; fix its symbolic dims with --shape")]
    SymbolicShape {
        /// The tensor.
        name: String,
        /// Its shape.
        shape: String,
    },
    /// No kernel handles this node's operator with these dtypes or attributes.
    #[error("node '{node}' ({op}): not supported by code generation: {what}")]
    Unsupported {
        /// The node.
        node: String,
        /// Its operator.
        op: String,
        /// What is missing.
        what: String,
    },
    /// The graph is malformed for code generation, or Cranelift refused a function.
    #[error("{0}")]
    Graph(String),
}

/// Result with the code generator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
