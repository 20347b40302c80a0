//! Errors of the code generator.

use thiserror::Error;

/// Why a graph could not be compiled.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// A symbolic dim without an upper bound.
    #[error("symbol {symbol} has no upper bound: give one with --bound {symbol}=N (or fix it with --dim {symbol}=N)")]
    Unbounded {
        /// The symbol (or polynomial of symbols).
        symbol: String,
    },
    /// A dim computed at run time that is not a polynomial of the inputs' symbols.
    #[error(
        "tensor '{tensor}': dim {dim} is computed at run time (symbol {symbol} is not a dim of any input); fix the inputs' symbols with --dim"
    )]
    RuntimeDim {
        /// The tensor.
        tensor: String,
        /// The dim.
        dim: String,
        /// The symbol not among the inputs'.
        symbol: String,
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

/// Result with the code generator's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
